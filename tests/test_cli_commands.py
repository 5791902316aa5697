"""The commands end to end: real files in, real files out, checked against NumPy/SciPy."""

from __future__ import annotations

import json
import subprocess
import sys

import imagecodecs
import numpy as np
import pytest
import soundfile as sf
from scipy import ndimage

from pwfilter.cost import conv_cost


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pwfilter", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def write_png(path, arr):
    path.write_bytes(imagecodecs.png_encode(arr))


def read_png(path):
    return imagecodecs.png_decode(path.read_bytes())


@pytest.fixture
def rgb8(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    p = tmp_path / "rgb.png"
    write_png(p, a)
    return p, a


@pytest.fixture
def rgb16(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 65536, (30, 20, 3), dtype=np.uint16)
    p = tmp_path / "rgb16.png"
    write_png(p, a)
    return p, a


# ----------------------------------------------------------------- remix


def test_remix_inline_matrix_equals_numpy_within_1_lsb(rgb8, tmp_path):
    p, a = rgb8
    m = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    out = tmp_path / "o.png"
    r = run("remix", p, "--matrix", "0.2 0.5 0.3; 0.1 0.1 0.8", "-o", out)
    assert r.returncode == 0, r.stderr
    got = read_png(out)
    assert got.shape == (40, 50, 2)  # two channels save as LA
    ref = np.clip(np.rint(a / 255.0 @ m.T * 255), 0, 255)
    assert np.abs(got.astype(int) - ref).max() <= 1


def test_remix_16bit_within_2_lsb_and_permutation_exact(rgb16, tmp_path):
    p, a = rgb16
    m = np.array([[0.299, 0.587, 0.114]])
    out = tmp_path / "g.png"
    assert run("remix", p, "--matrix", "gray", "-o", out).returncode == 0
    got = read_png(out)
    assert got.dtype == np.uint16 and got.ndim == 2
    ref = np.clip(np.rint((a / 65535.0 @ m.T)[..., 0] * 65535), 0, 65535)
    assert np.abs(got.astype(np.int64) - ref).max() <= 2
    perm = tmp_path / "bgr.png"
    assert run("remix", p, "--matrix", "bgr", "-o", perm).returncode == 0
    assert np.array_equal(read_png(perm), a[..., ::-1])
    ident = tmp_path / "id.png"
    assert run("remix", p, "--matrix", "1 0 0; 0 1 0; 0 0 1", "-o", ident).returncode == 0
    assert np.array_equal(read_png(ident), a)


@pytest.mark.parametrize("subtype,dtype", [("PCM_16", "int16"), ("PCM_24", "int32")])
def test_remix_permutation_bit_exact_on_pcm(tmp_path, subtype, dtype):
    rng = np.random.default_rng(2)
    info_max = 2**15 if subtype == "PCM_16" else 2**23
    ints = rng.integers(-info_max, info_max, (5000, 3))
    src = tmp_path / "in.wav"
    sf.write(src, (ints / info_max).astype(np.float64), 44100, subtype=subtype)
    raw, _ = sf.read(src, dtype=dtype)
    out = tmp_path / "out.wav"
    r = run("remix", src, "--matrix", "0 0 1; 1 0 0; 0 1 0", "-o", out)
    assert r.returncode == 0, r.stderr
    got, rate = sf.read(out, dtype=dtype)
    assert rate == 44100 and sf.info(out).subtype == subtype
    assert np.array_equal(got, raw[:, [2, 0, 1]])


def test_mid_side_round_trip_float_wav(tmp_path):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((8000, 2)) * 0.3).astype(np.float32)
    src = tmp_path / "s.wav"
    sf.write(src, x, 48000, subtype="FLOAT")
    ms, back = tmp_path / "ms.wav", tmp_path / "back.wav"
    assert run("remix", src, "--matrix", "mid-side", "-o", ms).returncode == 0
    m, _ = sf.read(ms, dtype="float32")
    np.testing.assert_allclose(m[:, 0], (x[:, 0] + x[:, 1]) / 2, atol=1e-7)
    np.testing.assert_allclose(m[:, 1], (x[:, 0] - x[:, 1]) / 2, atol=1e-7)
    assert run("remix", ms, "--matrix", "side-mid", "-o", back).returncode == 0
    y, _ = sf.read(back, dtype="float32")
    assert np.abs(y - x).max() < 1e-6


def test_downmix_8_to_2_equals_reference(tmp_path):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((6000, 8)) * 0.1).astype(np.float32)
    src = tmp_path / "8ch.wav"
    sf.write(src, x, 48000, subtype="FLOAT")
    m = rng.uniform(-0.5, 0.5, (2, 8))
    mfile = tmp_path / "m.txt"
    np.savetxt(mfile, m)
    out = tmp_path / "st.wav"
    r = run("remix", src, "--matrix", mfile, "-o", out)
    assert r.returncode == 0, r.stderr
    y, _ = sf.read(out, dtype="float64")
    np.testing.assert_allclose(y, x.astype(np.float64) @ m.T, atol=1e-6)


def test_rgba_three_column_matrix_keeps_alpha_byte_identical(tmp_path):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    p = tmp_path / "rgba.png"
    write_png(p, a)
    out = tmp_path / "o.png"
    assert run("remix", p, "--matrix", "sepia", "-o", out).returncode == 0
    got = read_png(out)
    assert got.shape == (16, 16, 4)
    assert np.array_equal(got[..., 3], a[..., 3])


def test_remix_wrong_column_count_names_both_counts(rgb8, tmp_path):
    p, _ = rgb8
    r = run("remix", p, "--matrix", "1 0; 0 1", "-o", tmp_path / "o.png")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwfilter: error:")
    assert "2" in lines[0] and "3" in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_grouped_remix_and_shuffle_cli(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((100, 4)).astype(np.float32)
    src = tmp_path / "four.npy"
    np.save(src, x)
    out = tmp_path / "g.npy"
    # A 2-D matrix is the grouped weight (C_out, C_in/G): row 0 reads group 0, row 1 group 1.
    r = run("remix", src, "--matrix", "0.5 0.5; 0.5 -0.5", "--groups", "2", "-o", out)
    assert r.returncode == 0, r.stderr
    want = np.stack([0.5 * x[:, 0] + 0.5 * x[:, 1], 0.5 * x[:, 2] - 0.5 * x[:, 3]], -1)
    np.testing.assert_allclose(np.load(out), want, atol=1e-6)
    # One block followed by | is shared by every group: block-diagonal, 4 outputs.
    shared = tmp_path / "shared.npy"
    r = run("remix", src, "--matrix", "0.5 0.5; 0.5 -0.5 |", "--groups", "2", "-o", shared)
    assert r.returncode == 0, r.stderr
    blk = np.array([[0.5, 0.5], [0.5, -0.5]])
    full = np.zeros((4, 4))
    full[:2, :2] = blk
    full[2:, 2:] = blk
    np.testing.assert_allclose(np.load(shared), x @ full.T, atol=1e-6)
    sh = tmp_path / "s.npy"
    assert run("remix", src, "--matrix", "1 0 0 0; 0 1 0 0; 0 0 1 0; 0 0 0 1",
               "--shuffle", "2", "-o", sh).returncode == 0
    np.testing.assert_array_equal(np.load(sh), x[:, [0, 2, 1, 3]])


# ----------------------------------------------------------------- convolve / blur / dsconv


def test_convolve_16bit_stays_16bit_within_2_lsb(rgb16, tmp_path):
    p, a = rgb16
    k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    out = tmp_path / "c.png"
    r = run("convolve", p, "1 2 1; 2 4 2; 1 2 1", "--normalize-kernel", "-o", out)
    assert r.returncode == 0, r.stderr
    got = read_png(out)
    assert got.dtype == np.uint16
    ref = np.stack([ndimage.convolve(a[..., c] / 65535.0, k, mode="reflect")
                    for c in range(3)], -1)
    assert np.abs(got.astype(np.int64) - np.rint(ref * 65535)).max() <= 2


def test_blur_matches_gaussian_filter_8bit(rgb8, tmp_path):
    p, a = rgb8
    out = tmp_path / "b.png"
    assert run("blur", p, "--sigma", "1.5", "-o", out).returncode == 0
    ref = np.stack([ndimage.gaussian_filter(a[..., c] / 255.0, 1.5, mode="reflect")
                    for c in range(3)], -1)
    assert np.abs(read_png(out).astype(int) - np.rint(ref * 255)).max() <= 1


def test_dsconv_equals_convolve_then_remix(rgb8, tmp_path):
    p, a = rgb8
    ds, cv = tmp_path / "ds.npy", tmp_path / "cv.npy"
    assert run("dsconv", p, "--depthwise", "box:3", "--pointwise", "gray", "-o", ds
               ).returncode == 0
    assert run("convolve", p, "box:3", "-o", cv).returncode == 0
    conv = np.load(cv)
    ref = conv @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(np.load(ds)[..., 0], ref, atol=1e-5)


def test_dsconv_audio_equals_convolve_then_remix(tmp_path):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((3000, 2)) * 0.1).astype(np.float32)
    src = tmp_path / "a.wav"
    sf.write(src, x, 16000, subtype="FLOAT")
    out = tmp_path / "o.wav"
    r = run("dsconv", src, "--depthwise", "0.5 0.25 0.125", "--pointwise", "mono", "-o", out)
    assert r.returncode == 0, r.stderr
    y, _ = sf.read(out, dtype="float64")
    ref = np.stack([np.convolve(x[:, c], [0.5, 0.25, 0.125]) for c in range(2)], -1).mean(1)
    np.testing.assert_allclose(y, ref, atol=1e-6)


def test_kernel_command_writes_npy_and_reports(tmp_path):
    out = tmp_path / "g.npy"
    r = run("kernel", "gaussian:1", "-o", out)
    assert r.returncode == 0, r.stderr
    k = np.load(out)
    impulse = np.zeros((9, 9))
    impulse[4, 4] = 1
    np.testing.assert_allclose(k, ndimage.gaussian_filter(impulse, 1.0), atol=1e-12)
    assert "rank 1" in r.stdout and "(9, 9)" in r.stdout
    r = run("kernel", "lowpass:1000", "-o", tmp_path / "lp.npy")
    assert r.returncode == 1 and "--rate" in r.stderr


def test_json_output_is_one_object_per_file(rgb8, tmp_path):
    p, _ = rgb8
    r = run("blur", p, "--json", "-o", tmp_path / "j.png")
    assert r.returncode == 0
    obj = json.loads(r.stdout)
    assert obj["shape"] == [40, 50, 3] and obj["clipped"] == 0 and obj["method"]


def test_verbose_explains_the_choice(rgb8, tmp_path):
    p, _ = rgb8
    r = run("convolve", p, "sharpen", "-v", "-o", tmp_path / "v.png")
    assert r.returncode == 0
    assert "method" in r.stderr and "predicted" in r.stderr and "direct" in r.stderr


# ----------------------------------------------------------------- cost


def test_cost_example_from_the_spec():
    r = run("cost", "--cin", "192", "--cout", "384", "-k", "3")
    assert r.returncode == 0
    assert "663,552" in r.stdout and "75,456" in r.stdout and "88.6 % fewer" in r.stdout


def test_cost_second_case_by_hand():
    # k=5, C_in=32, C_out=64: standard 25*32*64 = 51,200; depthwise 25*32 = 800,
    # pointwise 32*64 = 2,048; separable 2,848; ratio 2848/51200 = 1/64 + 1/25.
    c = conv_cost(32, 64, 5, height=10, width=20)
    assert c["standard_macs"] == 51_200 and c["separable_macs"] == 2_848
    assert c["standard_params"] == 51_200 and c["separable_params"] == 2_848
    assert c["ratio"] == pytest.approx(1 / 64 + 1 / 25)
    assert c["standard_macs_per_image"] == 51_200 * 200
    r = run("cost", "--cin", "32", "--cout", "64", "-k", "5", "--json")
    assert json.loads(r.stdout)["separable_macs"] == 2_848


def test_cost_groups():
    # pointwise in 4 groups: 32*64/4 = 512; separable 800 + 512 = 1,312.
    assert conv_cost(32, 64, 5, groups=4)["separable_macs"] == 1_312
    r = run("cost", "--cin", "30", "--cout", "64", "-k", "3", "--groups", "4")
    assert r.returncode == 2 and "--groups 4 must divide" in r.stderr  # a usage error


def test_kernel_larger_than_the_memory_limit_is_refused(rgb8, tmp_path):
    p, a = rgb8
    big = tmp_path / "big.npy"
    np.save(big, np.ones((301, 301)))
    out = tmp_path / "o.png"
    r = run("convolve", p, big, "--max-memory", "1M", "-o", out)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwfilter: error:")
    assert "--max-memory" in lines[0] and str(p) in lines[0]
    assert not out.exists()
    ok = run("convolve", p, big, "--normalize-kernel", "-o", out)  # the default limit allows it
    assert ok.returncode == 0, ok.stderr
    assert read_png(out).shape == a.shape


def test_bad_option_values_are_usage_errors(rgb8):
    p, _ = rgb8
    for args in (["blur", p, "--sigma", "-1"], ["blur", p, "--kind", "median"],
                 ["convolve", p], ["remix", p]):
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Usage:" in r.stderr and "Traceback" not in r.stderr


def test_npy_with_two_or_four_channels_is_raw_data_not_alpha(tmp_path):
    """A .npy array never has alpha: an (H, W, 2) array is convolved channel by channel,
    straight, as scipy.ndimage does (a gray + alpha image would be premultiplied)."""
    rng = np.random.default_rng(8)
    for channels in (2, 4):
        x = rng.random((15, 17, channels)).astype(np.float32)
        x[..., -1] = rng.random((15, 17)) * (rng.random((15, 17)) > 0.5)  # "alpha" with holes
        src = tmp_path / f"raw{channels}.npy"
        np.save(src, x)
        out = tmp_path / f"o{channels}.npy"
        k = "1 2 1; 2 4 2; 1 2 1"
        r = run("convolve", src, k, "-o", out)
        assert r.returncode == 0, r.stderr
        kern = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float64)
        ref = np.stack([ndimage.convolve(x[..., c].astype(np.float64), kern, mode="reflect")
                        for c in range(channels)], -1)
        np.testing.assert_allclose(np.load(out), ref, rtol=0, atol=1e-5)


def test_bias_with_per_group_blocks(tmp_path):
    """Per-group blocks (groups implied by the blocks) with --bias, on a 4-channel WAV."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((300, 4)) * 0.1).astype(np.float32)
    src = tmp_path / "four.wav"
    sf.write(src, x, 8000, subtype="FLOAT")
    out = tmp_path / "o.wav"
    r = run("remix", src, "--matrix", "1 0; 0 1 | 0 1; 1 0", "--bias", "0.1", "-o", out)
    assert r.returncode == 0, r.stderr
    y, rate = sf.read(out, dtype="float32")
    want = x[:, [0, 1, 3, 2]] + np.float32(0.1)
    assert rate == 8000 and y.shape == (300, 4)
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ir_rate, rate", [(8000, 22050), (48000, 16000)])
def test_resample_ir_keeps_the_impulse_response_s_gain(tmp_path, ir_rate, rate):
    """An impulse response at another rate, with --resample-ir, filters as it would at its
    own rate: a sine's gain is |H(f)| of the original taps (scipy.signal.freqz at the IR's
    rate), not that times the ratio of the rates."""
    from scipy import signal

    from conftest import write_audio

    taps = signal.firwin(63, 1500, fs=ir_rate) * 0.5  # passband gain 0.5
    ir = write_audio(tmp_path / "ir.wav", taps.astype(np.float32), ir_rate, "FLOAT")
    n = rate  # one second
    for f in (200.0, 3000.0):  # in the passband, and well into the stopband
        sine = 0.5 * np.sin(2 * np.pi * f * np.arange(n) / rate)
        src = write_audio(tmp_path / f"s{int(f)}.wav", sine.astype(np.float32), rate, "FLOAT")
        out = tmp_path / f"o{int(f)}.wav"
        r = run("convolve", src, ir, "--resample-ir", "-o", out)
        assert r.returncode == 0, r.stderr
        y, got_rate = sf.read(str(out))
        assert got_rate == rate
        middle = y[n // 4: 3 * n // 4]
        gain = np.sqrt(2) * np.sqrt(np.mean(middle ** 2)) / 0.5
        _, h = signal.freqz(taps, worN=[f], fs=ir_rate)
        assert gain == pytest.approx(abs(h[0]), abs=0.01 * 0.5)
