"""Bad input and usage errors, each through a real ``python -m pwfilter`` process.

Every failure: exit status 1, exactly one ``pwfilter: error:`` line on stderr
naming the file, no traceback, no output file, the input left byte-identical.
Usage errors exit 2.
"""

from __future__ import annotations

import io
import struct

import imagecodecs
import numpy as np
import pytest
import soundfile as sf

from conftest import (assert_one_error_line, bomb_png, identity_matrix, rand_pcm, rand_u8,
                      read_png, run, snapshot, write_audio, write_png)
from pwfilter.errors import PwfilterError
from pwfilter.media import load_media


def _valid_png() -> bytes:
    # level 0: no compression, so half the file is surely missing image data
    return imagecodecs.png_encode(rand_u8((40, 50, 3), seed=60), level=0)


def _wav_bytes(fmt="WAV", subtype="PCM_16", frames=2000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, rand_pcm(frames, 2, 16, seed=61), 8000, format=fmt, subtype=subtype)
    return buf.getvalue()


def _pillow_bytes(fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rand_u8((40, 50, 3), seed=59)).save(buf, format=fmt)
    return buf.getvalue()


def _tiff_header_bomb() -> bytes:
    """A TIFF whose first directory claims 100000 x 100000 pixels and holds no data."""
    entries = [(256, 4, 1, 100_000), (257, 4, 1, 100_000), (258, 3, 1, 8), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, 100_000), (279, 4, 1, 10)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


BAD_INPUTS = {
    "missing.png": None,
    "empty.png": lambda: b"",
    "truncated.png": lambda: _valid_png()[: len(_valid_png()) // 2],
    "noise.png": lambda: np.random.default_rng(62).bytes(4000),
    "truncated.wav": lambda: _wav_bytes()[: len(_wav_bytes()) // 2],
    "truncated_one_byte.wav": lambda: _wav_bytes()[:-1],
    "truncated.aiff": lambda: _wav_bytes("AIFF")[: len(_wav_bytes("AIFF")) // 2],
    "truncated.flac": lambda: _wav_bytes("FLAC")[: len(_wav_bytes("FLAC")) // 2],
    "header_only.wav": lambda: _wav_bytes()[:44],
    "bomb.tif": _tiff_header_bomb,
    "truncated.tif": lambda: imagecodecs.tiff_encode(rand_u8((30, 30), seed=63))[:20],
    "truncated.jpg": lambda: _pillow_bytes("JPEG")[: len(_pillow_bytes("JPEG")) // 2],
    "truncated.bmp": lambda: _pillow_bytes("BMP")[: len(_pillow_bytes("BMP")) // 2],
    "truncated.webp": lambda: _pillow_bytes("WEBP")[: len(_pillow_bytes("WEBP")) // 2],
    "nan.npy": None,
    "pickle.npy": None,
    "four_d.npy": None,
}


def _make_bad(tmp_path, name):
    path = tmp_path / name
    maker = BAD_INPUTS[name]
    if name == "nan.npy":
        np.save(path, np.array([[0.5, np.nan], [0.1, 0.2]]))
    elif name == "pickle.npy":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif name == "four_d.npy":
        np.save(path, np.zeros((2, 2, 2, 2), dtype=np.float32))
    elif maker is not None:
        path.write_bytes(maker())
    return path


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_clear_error(tmp_path, name):
    path = _make_bad(tmp_path, name)
    before = snapshot(tmp_path)
    r = run("blur", path, "--sigma", "1")
    assert r.code == 1, (r.code, r.stderr)
    assert_one_error_line(r.stderr, name)
    assert r.stdout == b""
    assert snapshot(tmp_path) == before, "no output file; the input unchanged"


def test_bomb_png_is_refused_before_decoding(tmp_path):
    path = bomb_png(tmp_path / "bomb.png")
    before = snapshot(tmp_path)
    r = run("blur", path)
    assert r.code == 1, r.stderr
    assert_one_error_line(r.stderr, "bomb.png")
    assert "100000x100000" in r.stderr and "pixels" in r.stderr
    assert snapshot(tmp_path) == before


def test_bomb_png_refused_by_remix_and_info(tmp_path):
    path = bomb_png(tmp_path / "bomb.png")
    before = snapshot(tmp_path)
    for args in (["remix", path, "--matrix", "gray"], ["info", path]):
        r = run(*args)
        assert r.code == 1, r.stderr
        assert_one_error_line(r.stderr, "bomb.png")
    assert snapshot(tmp_path) == before


def test_max_pixels_option_applies(tmp_path):
    write_png(tmp_path / "p.png", rand_u8((20, 30, 3), seed=64))
    before = snapshot(tmp_path)
    r = run("blur", tmp_path / "p.png", "--max-pixels", "599")
    assert r.code == 1
    assert_one_error_line(r.stderr, "p.png")
    assert snapshot(tmp_path) == before
    assert run("blur", tmp_path / "p.png", "--max-pixels", "600").code == 0


def test_truncated_wav_is_detected_by_the_media_layer(tmp_path):
    """libsndfile reads a cut WAV silently (fewer frames); load_media must refuse it."""
    blob = _wav_bytes(frames=3000)
    (tmp_path / "cut.wav").write_bytes(blob[: len(blob) * 2 // 3])
    data, _ = sf.read(str(tmp_path / "cut.wav"))  # the silent read this guards against
    assert 0 < len(data) < 3000
    with pytest.raises(PwfilterError, match="cut.wav.*truncated"):
        load_media(tmp_path / "cut.wav")


def test_truncated_png_and_wav_for_info(tmp_path):
    (tmp_path / "t.png").write_bytes(_valid_png()[:100])
    (tmp_path / "t.wav").write_bytes(_wav_bytes()[:1000])
    for name in ("t.png", "t.wav"):
        r = run("info", tmp_path / name)
        assert r.code == 1
        assert_one_error_line(r.stderr, name)


def test_wrong_extension_audio_named_png(tmp_path):
    (tmp_path / "sound.png").write_bytes(_wav_bytes())
    before = snapshot(tmp_path)
    r = run("blur", tmp_path / "sound.png")
    assert r.code == 1
    assert_one_error_line(r.stderr, "sound.blur.png")
    assert snapshot(tmp_path) == before


def test_directory_as_input(tmp_path):
    (tmp_path / "folder.png").mkdir()
    r = run("blur", tmp_path / "folder.png")
    assert r.code == 1
    assert_one_error_line(r.stderr, "folder.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png"]


# ------------------------------------------------------------------ several inputs


def test_several_inputs_one_bad_every_file_attempted(tmp_path):
    good1 = rand_u8((6, 7, 3), seed=65)
    write_png(tmp_path / "a.png", good1)
    (tmp_path / "b.png").write_bytes(_valid_png()[:300])
    pcm = rand_pcm(300, 2, 16, seed=66)
    write_audio(tmp_path / "c.wav", pcm, 16000, "PCM_16")
    inputs = [tmp_path / "b.png", tmp_path / "a.png", tmp_path / "c.wav"]
    before = {k: v for k, v in snapshot(tmp_path).items()}
    r = run("remix", *inputs[:2], "--matrix", identity_matrix(3))
    assert r.code == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr_lines
    assert all(line.startswith("pwfilter: error:") for line in lines), r.stderr
    assert "b.png" in lines[0]
    assert not (tmp_path / "b.remix.png").exists()
    np.testing.assert_array_equal(read_png(tmp_path / "a.remix.png"), good1)
    # inputs unchanged
    after = snapshot(tmp_path)
    assert all(after[k] == v for k, v in before.items())

    r = run("blur", *inputs, "--sigma", "0.7")
    assert r.code == 1 and "Traceback" not in r.stderr
    assert "b.png" in r.stderr
    assert read_png(tmp_path / "a.blur.png").shape == good1.shape
    info = sf.info(str(tmp_path / "c.blur.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 2, "PCM_16")
    assert not (tmp_path / "b.blur.png").exists()


def test_several_inputs_one_missing_in_the_middle(tmp_path):
    a = rand_u8((4, 5), seed=67)
    c = rand_u8((4, 5), seed=68)
    write_png(tmp_path / "a.png", a)
    write_png(tmp_path / "c.png", c)
    r = run("remix", tmp_path / "a.png", tmp_path / "gone.png", tmp_path / "c.png",
            "--matrix", "1", "-o", str(tmp_path / "out") + "/")
    assert r.code == 1 and "Traceback" not in r.stderr
    assert "gone.png" in r.stderr_lines[0]
    np.testing.assert_array_equal(read_png(tmp_path / "out" / "a.png"), a)
    np.testing.assert_array_equal(read_png(tmp_path / "out" / "c.png"), c)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]


# ------------------------------------------------------------------ usage errors


@pytest.mark.parametrize("args", [
    ["blur", "{png}", "--no-such-option"],
    ["blur", "{png}", "--sigma", "abc"],
    ["blur", "{png}", "--sigma", "-1"],
    ["blur", "{png}", "--boundary", "sideways"],
    ["blur"],
    ["remix", "{png}"],
    ["convolve", "{png}"],
    ["no-such-command", "{png}"],
])
def test_usage_errors_exit_2(tmp_path, args):
    png = write_png(tmp_path / "u.png", rand_u8((4, 4, 3), seed=69))
    before = snapshot(tmp_path)
    r = run(*[a.format(png=png) for a in args])
    assert r.code == 2, (r.code, r.stderr)
    assert "Traceback" not in r.stderr
    assert "Usage:" in r.stderr or "Error:" in r.stderr
    assert snapshot(tmp_path) == before


def test_good_file_is_processed_after_usage_check(tmp_path):
    """Sanity: the same command without the bad option succeeds (the usage tests are fair)."""
    png = write_png(tmp_path / "u.png", rand_u8((4, 4, 3), seed=69))
    r = run("blur", png, "--sigma", "1")
    assert r.code == 0, r.stderr
    assert read_png(tmp_path / "u.blur.png").shape == (4, 4, 3)
