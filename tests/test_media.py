"""The media layer: what files load as, and bit-exact load -> save round trips.

References are independent decoders (imagecodecs, Pillow, soundfile, NumPy)
and hand-computed normalizations; pwfilter's output is never its own oracle.
"""

from __future__ import annotations

import io
import os

import imagecodecs
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import (identity_matrix, rand_pcm, rand_u8, rand_u16, read_png, run, write_audio,
                      write_png)
from pwfilter.media import Media, load_media, write_media

IMAGE_SHAPES = {"L": (9, 13), "LA": (9, 13, 2), "RGB": (9, 13, 3), "RGBA": (9, 13, 4)}


def _decode_as(arr_shape):
    """The (H, W, C) shape pwfilter must report for an array written by imagecodecs."""
    return arr_shape if len(arr_shape) == 3 else (*arr_shape, 1)


# ------------------------------------------------------------------ images: load -> save


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_png_8bit_round_trip_is_bit_exact(tmp_path, mode):
    arr = rand_u8(IMAGE_SHAPES[mode], seed=1)
    src = write_png(tmp_path / "in.png", arr)
    m = load_media(src)
    assert m.kind == "image" and m.format == "PNG" and m.bits == 8
    assert m.data.shape == _decode_as(arr.shape) and m.data.dtype == np.float32
    assert m.mode == mode
    write_media(m, str(tmp_path / "out.png"), "PNG")
    out = read_png(tmp_path / "out.png")
    assert out.dtype == np.uint8 and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == mode and im.size == (arr.shape[1], arr.shape[0])


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_png_16bit_round_trip_is_bit_exact(tmp_path, mode):
    arr = rand_u16(IMAGE_SHAPES[mode], seed=2)
    src = write_png(tmp_path / "in16.png", arr)
    m = load_media(src)
    assert m.bits == 16 and m.data.shape == _decode_as(arr.shape)
    write_media(m, str(tmp_path / "out16.png"), "PNG")
    out = read_png(tmp_path / "out16.png")
    assert out.dtype == np.uint16, "16-bit PNG must stay 16-bit"
    np.testing.assert_array_equal(out, arr)


def test_png_16bit_every_value_survives(tmp_path):
    """All 65536 gray levels: load/save must not lose a single one."""
    arr = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    m = load_media(write_png(tmp_path / "ramp.png", arr))
    write_media(m, str(tmp_path / "ramp_out.png"), "PNG")
    np.testing.assert_array_equal(read_png(tmp_path / "ramp_out.png"), arr)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_round_trip_is_bit_exact(tmp_path, mode, dtype):
    arr = (rand_u16 if dtype == np.uint16 else rand_u8)(IMAGE_SHAPES[mode], seed=3)
    (tmp_path / "in.tif").write_bytes(imagecodecs.tiff_encode(arr))
    m = load_media(tmp_path / "in.tif")
    assert m.format == "TIFF" and m.bits == np.dtype(dtype).itemsize * 8
    assert m.data.shape == _decode_as(arr.shape)
    write_media(m, str(tmp_path / "out.tif"), "TIFF")
    out = imagecodecs.tiff_decode((tmp_path / "out.tif").read_bytes())
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_gray_alpha_round_trip(tmp_path, dtype):
    """LA TIFF: written as one H x W page with an alpha extra sample, not H pages of W x 2."""
    arr = (rand_u16 if dtype == np.uint16 else rand_u8)((7, 10, 2), seed=4)
    (tmp_path / "la.tif").write_bytes(imagecodecs.tiff_encode(
        arr, photometric="minisblack", planarconfig="contig", extrasample=2))
    m = load_media(tmp_path / "la.tif")
    assert m.data.shape == (7, 10, 2) and m.mode == "LA"
    write_media(m, str(tmp_path / "la_out.tif"), "TIFF")
    out = imagecodecs.tiff_decode((tmp_path / "la_out.tif").read_bytes())
    assert out.shape == (7, 10, 2) and out.dtype == dtype
    np.testing.assert_array_equal(out, arr)


def test_tiff_size_is_read_from_bigtiff_big_endian(tmp_path):
    arr = rand_u16((6, 9, 3), seed=5)
    blob = imagecodecs.tiff_encode(arr, bigtiff=True, byteorder=">")
    (tmp_path / "big.tif").write_bytes(blob)
    m = load_media(tmp_path / "big.tif")
    ref = imagecodecs.tiff_decode(blob)
    np.testing.assert_array_equal(np.rint(m.data * 65535).astype(np.uint16), ref)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("bits", [8, 16])
def test_non_contiguous_data_is_written_correctly(tmp_path, fmt, bits):
    """Results of channel selection or matmul are often not C-contiguous; encoders need C order."""
    top = 255 if bits == 8 else 65535
    arr = (rand_u8 if bits == 8 else rand_u16)((8, 11, 3), seed=6)
    base = arr.astype(np.float32) / np.float32(top)
    data = base[..., [2, 1, 0]]  # fancy indexing on the last axis: not C-contiguous
    assert not data.flags.c_contiguous
    buf = io.BytesIO()
    write_media(Media(data, "image", fmt, bits=bits), buf, fmt)
    decode = imagecodecs.png_decode if fmt == "PNG" else imagecodecs.tiff_decode
    np.testing.assert_array_equal(decode(buf.getvalue()), arr[..., ::-1])


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_bmp_round_trip_is_bit_exact(tmp_path, mode):
    arr = rand_u8(IMAGE_SHAPES[mode], seed=7)
    Image.fromarray(arr, mode=mode).save(tmp_path / "in.bmp")
    m = load_media(tmp_path / "in.bmp")
    write_media(m, str(tmp_path / "out.bmp"), "BMP")
    with Image.open(tmp_path / "out.bmp") as im:
        assert im.mode == mode
        np.testing.assert_array_equal(np.asarray(im), arr)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_keeps_size_and_mode(tmp_path, mode):
    shape = (21, 34) if mode == "L" else (21, 34, 3)
    Image.fromarray(rand_u8(shape, seed=8), mode=mode).save(tmp_path / "in.jpg", quality=90)
    m = load_media(tmp_path / "in.jpg")
    with Image.open(tmp_path / "in.jpg") as im:
        ref = np.asarray(im)
    assert m.format == "JPEG" and m.bits == 8 and m.data.shape == _decode_as(ref.shape)
    np.testing.assert_array_equal(np.rint(m.data * 255).astype(np.uint8).reshape(ref.shape), ref)
    write_media(m, str(tmp_path / "out.jpg"), "JPEG")
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.format == "JPEG" and im.mode == mode and im.size == (34, 21)


# ------------------------------------------------------------------ images: conversions on load


def _palette_image(seed=9):
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 16, (10, 14), dtype=np.uint8), mode="P")
    im.putpalette(rng.integers(0, 256, 48).tolist())
    return im


def test_palette_png_loads_as_rgb(tmp_path):
    _palette_image().save(tmp_path / "p.png")
    m = load_media(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P"
        ref = np.asarray(im.convert("RGB"))
    assert m.mode == "RGB" and m.bits == 8 and m.data.shape == (10, 14, 3)
    np.testing.assert_array_equal(np.rint(m.data * 255).astype(np.uint8), ref)


@pytest.mark.parametrize("transparency", ["one-index", "per-index"])
def test_palette_png_with_transparency_loads_as_rgba(tmp_path, transparency):
    im = _palette_image()
    tr = 3 if transparency == "one-index" else bytes(range(0, 256, 16))
    im.save(tmp_path / "pt.png", transparency=tr)
    m = load_media(tmp_path / "pt.png")
    with Image.open(tmp_path / "pt.png") as im2:
        ref = np.asarray(im2.convert("RGBA"))
    assert ref[..., 3].min() < 255  # the reference really has transparent pixels
    assert m.mode == "RGBA" and m.data.shape == (10, 14, 4)
    np.testing.assert_array_equal(np.rint(m.data * 255).astype(np.uint8), ref)


def test_one_bit_png_loads_as_l(tmp_path):
    bits = np.random.default_rng(10).integers(0, 2, (9, 17)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "one.png")
    m = load_media(tmp_path / "one.png")
    with Image.open(tmp_path / "one.png") as im:
        assert im.mode == "1"
        ref = np.asarray(im.convert("L"))
    assert m.mode == "L" and m.bits == 8 and m.data.shape == (9, 17, 1)
    np.testing.assert_array_equal(m.data[..., 0], ref / 255.0)
    np.testing.assert_array_equal(m.data[..., 0] == 1.0, bits)


# ------------------------------------------------------------------ normalization


def test_8bit_normalizes_by_255(tmp_path):
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    m = load_media(write_png(tmp_path / "ramp8.png", arr))
    assert m.data.dtype == np.float32
    got = m.data[..., 0].astype(np.float64)
    np.testing.assert_allclose(got, arr / 255.0, rtol=2**-23, atol=0)
    assert got[0, 0] == 0.0 and got[-1, -1] == 1.0


def test_16bit_normalizes_by_65535(tmp_path):
    arr = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    m = load_media(write_png(tmp_path / "ramp16.png", arr))
    assert m.data.dtype == np.float32
    got = m.data[..., 0].astype(np.float64)
    np.testing.assert_allclose(got, arr / 65535.0, rtol=2**-23, atol=0)
    assert got[0, 0] == 0.0 and got[-1, -1] == 1.0
    # 256 is 8-bit's 1/255-step's neighbour: 16-bit must not be reduced to 8 bits
    assert got[0, 1] == pytest.approx(1 / 65535, rel=1e-6)


def test_pcm16_normalizes_by_32768(tmp_path):
    v = np.array([[-32768], [-1], [0], [1], [16384], [32767]], dtype=np.int16)
    m = load_media(write_audio(tmp_path / "p16.wav", v, 8000, "PCM_16"))
    assert m.data.dtype == np.float32 and m.data.shape == (6, 1)
    np.testing.assert_array_equal(m.data[:, 0], np.array([-1.0, -1 / 32768, 0.0, 1 / 32768,
                                                          0.5, 32767 / 32768]))


def test_pcm24_normalizes_by_2_pow_23(tmp_path):
    v = np.array([-(2**23), -1, 0, 1, 2**22, 2**23 - 1], dtype=np.int64)
    m = load_media(write_audio(tmp_path / "p24.wav", (v << 8).astype(np.int32)[:, None], 8000,
                               "PCM_24"))
    assert m.data.dtype == np.float32
    np.testing.assert_array_equal(m.data[:, 0], v / 2.0**23)


# ------------------------------------------------------------------ audio: load -> save

AUDIO_CASES = [("WAV", "PCM_16", 16), ("WAV", "PCM_24", 24), ("WAV", "FLOAT", 0),
               ("FLAC", "PCM_24", 24), ("FLAC", "PCM_16", 16)]


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("fmt,subtype,bits", AUDIO_CASES)
def test_audio_round_trip_is_bit_exact(tmp_path, fmt, subtype, bits, channels):
    n, rate = 257, 11025
    if bits:
        data = rand_pcm(n, channels, bits, seed=channels)
        read_dtype = "int16" if bits == 16 else "int32"
    else:
        rng = np.random.default_rng(channels)
        data = rng.uniform(-1, 1, (n, channels)).astype(np.float32)
        data[0, 0], data[1, 0] = -1.0, 1.0
        read_dtype = "float32"
    ext = fmt.lower()
    src = write_audio(tmp_path / f"in.{ext}", data, rate, subtype, fmt)
    m = load_media(src)
    assert m.kind == "audio" and m.format == fmt and m.subtype == subtype and m.rate == rate
    assert m.data.shape == (n, channels) and m.data.dtype == np.float32
    assert np.abs(m.data).max() <= 1.0
    write_media(m, str(tmp_path / f"out.{ext}"), fmt)
    info = sf.info(str(tmp_path / f"out.{ext}"))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == \
        (fmt, subtype, rate, channels, n)
    out, _ = sf.read(str(tmp_path / f"out.{ext}"), dtype=read_dtype, always_2d=True)
    np.testing.assert_array_equal(out, data)


def test_audio_values_match_soundfile(tmp_path):
    """Loaded PCM equals soundfile's own integer read divided by the full scale."""
    data = rand_pcm(300, 2, 24, seed=20)
    m = load_media(write_audio(tmp_path / "a.flac", data, 44100, "PCM_24", "FLAC"))
    ints, rate = sf.read(str(tmp_path / "a.flac"), dtype="int32", always_2d=True)
    assert rate == 44100
    np.testing.assert_array_equal(m.data, (ints >> 8) / 2.0**23)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "FLOAT"), ("WAV", "PCM_16"),
                                         ("FLAC", "PCM_24"), ("AIFF", "FLOAT")])
def test_audio_writer_replaces_a_longer_file_whole(tmp_path, fmt, subtype):
    """Writing over an existing, longer file leaves only the new samples (nothing stale)."""
    from pwfilter.audiofile import AudioWriter
    from pwfilter.media import SaveOptions

    path = tmp_path / "out.bin"
    path.write_bytes(b"x" * 100_000)
    data = rand_pcm(500, 2, 16, seed=3) / 32768.0  # exact in every subtype here
    with AudioWriter(str(path), rate=8000, channels=2, fmt=fmt, subtype=subtype,
                     options=SaveOptions()) as w:
        w.write(data[:200])
        w.write(data[200:])
    out, rate = sf.read(str(path), dtype="float64", always_2d=True)
    assert rate == 8000
    np.testing.assert_array_equal(out, data)
    assert path.stat().st_size < 100_000


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_audio_writer_reports_a_full_disk_as_os_error(capfd, monkeypatch, subtype):
    """A failing write (here /dev/full: ENOSPC) surfaces as the system's error, not as a
    traceback printed from libsndfile's callback or an assertion."""
    import errno
    import sys

    from pwfilter.audiofile import AudioWriter
    from pwfilter.media import SaveOptions

    ignored = []  # exceptions raised inside C callbacks, which Python can only print
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    data = np.zeros((100_000, 2))
    with pytest.raises(OSError) as info:
        with AudioWriter("/dev/full", rate=8000, channels=2, fmt="WAV", subtype=subtype,
                         options=SaveOptions()) as w:
            w.write(data)
    assert info.value.errno == errno.ENOSPC
    assert not ignored
    assert "Traceback" not in capfd.readouterr().err


def test_float_wav_has_no_peak_chunk(tmp_path):
    """The optional PEAK chunk (a scan of every sample) is not written; the samples are."""
    data = (rand_pcm(400, 2, 16, seed=4) / 32768.0).astype(np.float32)
    write_media(Media(data, "audio", "WAV", rate=8000, subtype="FLOAT"),
                str(tmp_path / "a.wav"), "WAV")
    blob = (tmp_path / "a.wav").read_bytes()
    assert b"PEAK" not in blob[:200] and blob[:4] == b"RIFF"
    out, _ = sf.read(str(tmp_path / "a.wav"), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(out, data)


# ------------------------------------------------------------------ .npy


def test_npy_1d_is_one_channel_signal(tmp_path):
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    m = load_media(tmp_path / "x.npy")
    assert m.kind == "audio" and m.format == "NPY" and m.data.shape == (50, 1)
    np.testing.assert_array_equal(m.data[:, 0], x)


def test_npy_2d_is_n_by_c_signal(tmp_path):
    x = np.random.default_rng(21).standard_normal((40, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    m = load_media(tmp_path / "x.npy")
    assert m.kind == "audio" and m.data.shape == (40, 3)
    np.testing.assert_array_equal(m.data, x)


@pytest.mark.parametrize("channels", [1, 3])
def test_npy_3d_is_hwc_image(tmp_path, channels):
    x = np.random.default_rng(22).random((5, 7, channels)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    m = load_media(tmp_path / "x.npy")
    assert m.kind == "image" and m.data.shape == (5, 7, channels)
    np.testing.assert_array_equal(m.data, x)


def test_npy_output_is_normalized_float32(tmp_path):
    arr = rand_u16((4, 6, 3), seed=23)
    m = load_media(write_png(tmp_path / "a.png", arr))
    write_media(m, str(tmp_path / "a.npy"), "NPY")
    out = np.load(tmp_path / "a.npy")
    assert out.dtype == np.float32 and out.shape == (4, 6, 3)
    np.testing.assert_allclose(out, arr / 65535.0, rtol=2**-23, atol=0)


def test_npy_integer_input_is_not_rescaled(tmp_path):
    np.save(tmp_path / "i.npy", np.array([[1, 2], [3, 4]], dtype=np.int16))
    m = load_media(tmp_path / "i.npy")
    np.testing.assert_array_equal(m.data, [[1.0, 2.0], [3.0, 4.0]])


# ------------------------------------------------------------------ the same through the CLI

CHANNEL_MATRIX = {"L": "1", "LA": "1", "RGB": identity_matrix(3), "RGBA": identity_matrix(3)}


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("bits", [8, 16])
def test_cli_identity_remix_png_is_bit_exact(tmp_path, mode, bits):
    arr = (rand_u8 if bits == 8 else rand_u16)(IMAGE_SHAPES[mode], seed=30)
    write_png(tmp_path / "img.png", arr)
    r = run("remix", tmp_path / "img.png", "--matrix", CHANNEL_MATRIX[mode])
    assert r.code == 0, r.stderr
    out = read_png(tmp_path / "img.remix.png")
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_cli_identity_kernel_16bit_is_bit_exact(tmp_path, ext):
    arr = rand_u16((10, 12, 4), seed=31)
    encode = imagecodecs.png_encode if ext == "png" else imagecodecs.tiff_encode
    decode = imagecodecs.png_decode if ext == "png" else imagecodecs.tiff_decode
    (tmp_path / f"img.{ext}").write_bytes(encode(arr))
    r = run("convolve", tmp_path / f"img.{ext}", "identity")
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(decode((tmp_path / f"img.convolve.{ext}").read_bytes()), arr)


def test_cli_identity_remix_tiff_16bit_rgb(tmp_path):
    arr = rand_u16((10, 12, 3), seed=32)
    (tmp_path / "img.tif").write_bytes(imagecodecs.tiff_encode(arr))
    r = run("remix", tmp_path / "img.tif", "--matrix", identity_matrix(3))
    assert r.code == 0, r.stderr
    out = imagecodecs.tiff_decode((tmp_path / "img.remix.tif").read_bytes())
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("fmt,subtype,bits,channels", [
    ("WAV", "PCM_16", 16, 2), ("WAV", "PCM_24", 24, 1), ("WAV", "FLOAT", 0, 2),
    ("FLAC", "PCM_24", 24, 6),
])
def test_cli_identity_audio_is_bit_exact(tmp_path, fmt, subtype, bits, channels):
    n, rate = 500, 16000
    if bits:
        data = rand_pcm(n, channels, bits, seed=33)
        read_dtype = "int16" if bits == 16 else "int32"
    else:
        data = np.random.default_rng(33).uniform(-1, 1, (n, channels)).astype(np.float32)
        read_dtype = "float32"
    ext = fmt.lower()
    write_audio(tmp_path / f"snd.{ext}", data, rate, subtype, fmt)
    r = run("remix", tmp_path / f"snd.{ext}", "--matrix", identity_matrix(channels))
    assert r.code == 0, r.stderr
    out_path = str(tmp_path / f"snd.remix.{ext}")
    info = sf.info(out_path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == \
        (fmt, subtype, rate, channels)
    out, _ = sf.read(out_path, dtype=read_dtype, always_2d=True)
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_24"), ("FLAC", "PCM_24")])
def test_cli_identity_kernel_audio_is_bit_exact(tmp_path, fmt, subtype):
    """convolve with the 1-tap identity kernel: same length in full mode, same samples."""
    data = rand_pcm(500, 2, 24, seed=35)
    ext = fmt.lower()
    write_audio(tmp_path / f"snd.{ext}", data, 16000, subtype, fmt)
    r = run("convolve", tmp_path / f"snd.{ext}", "identity")
    assert r.code == 0, r.stderr
    info = sf.info(str(tmp_path / f"snd.convolve.{ext}"))
    assert (info.format, info.subtype, info.samplerate) == (fmt, subtype, 16000)
    out, _ = sf.read(str(tmp_path / f"snd.convolve.{ext}"), dtype="int32", always_2d=True)
    np.testing.assert_array_equal(out, data)


def test_cli_unit_kernel_audio_is_bit_exact(tmp_path):
    """The 3-tap kernel "0 1 0" in same mode is the identity too (and avoids the 1-tap bug)."""
    data = rand_pcm(500, 2, 16, seed=36)
    write_audio(tmp_path / "snd.wav", data, 16000, "PCM_16")
    r = run("convolve", tmp_path / "snd.wav", "0 1 0", "--mode", "same")
    assert r.code == 0, r.stderr
    out, rate = sf.read(str(tmp_path / "snd.convolve.wav"), dtype="int16", always_2d=True)
    assert rate == 16000 and sf.info(str(tmp_path / "snd.convolve.wav")).subtype == "PCM_16"
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_cli_jpeg_keeps_size_and_mode(tmp_path, mode):
    shape = (20, 30) if mode == "L" else (20, 30, 3)
    Image.fromarray(rand_u8(shape, seed=34), mode=mode).save(tmp_path / "pic.jpg")
    r = run("blur", tmp_path / "pic.jpg", "--sigma", "1")
    assert r.code == 0, r.stderr
    with Image.open(tmp_path / "pic.blur.jpg") as im:
        assert im.format == "JPEG" and im.mode == mode and im.size == (30, 20)


def test_npy_written_to_a_path_without_npy_suffix(tmp_path):
    """The CLI writes to a temporary ``*.part`` path; np.save(path) would add ``.npy`` to it."""
    x = np.random.default_rng(24).random((6, 2)).astype(np.float32)
    write_media(Media(x, "audio", "NPY"), str(tmp_path / "out.npy.part"), "NPY")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy.part"]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy.part"), x)
