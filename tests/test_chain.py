"""``pwfilter chain``: several stages in one pass, in float, quantised once.

References are NumPy/SciPy compositions in float64, quantised once; a chain of
one stage must give the very bytes of the command itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from scipy import ndimage, signal

import pwfilter
from conftest import rand_u8, read_png, run, write_png

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
GRAY = np.array([0.299, 0.587, 0.114])


def quantize8(y: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(y * 255), 0, 255)


def test_image_blur_then_sepia_within_one_lsb_of_the_float_reference(tmp_path):
    """The reference rounds once, at the end; two commands would round twice."""
    a = rand_u8((40, 50, 3), seed=1)
    src = write_png(tmp_path / "in.png", a)
    out = tmp_path / "out.png"
    r = run("chain", src, "-o", out, "--", "blur", "--sigma", "1.5", "+", "remix", "--matrix",
            "sepia")
    assert r.code == 0, r.stderr
    blurred = ndimage.gaussian_filter(a / 255.0, (1.5, 1.5, 0), mode="reflect", truncate=4.0)
    ref = quantize8(blurred @ SEPIA.T)
    got = read_png(out).astype(np.float64)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1


def test_channel_count_changes_between_stages(tmp_path):
    """RGB -> gray (1 channel) -> blur: the blur runs on the one channel, saved as L."""
    a = rand_u8((30, 33, 3), seed=2)
    src = write_png(tmp_path / "in.png", a)
    out = tmp_path / "out.png"
    r = run("chain", src, "-o", out, "--", "remix", "--matrix", "gray", "+", "blur", "--sigma",
            "2")
    assert r.code == 0, r.stderr
    gray = (a / 255.0) @ GRAY
    ref = quantize8(ndimage.gaussian_filter(gray, 2.0, mode="reflect", truncate=4.0))
    got = read_png(out)
    assert got.ndim == 2  # L
    assert np.abs(got.astype(np.float64) - ref).max() <= 1


def _reverb_reference(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """convolve IR --dry 1 --wet 0.5 (full: the dry signal zero-padded at the end), then
    mid-side, in float64."""
    wet = np.stack([signal.fftconvolve(x[:, c], ir) for c in range(2)], -1)
    y = 0.5 * wet
    y[: x.shape[0]] += x
    return np.stack([(y[:, 0] + y[:, 1]) / 2, (y[:, 0] - y[:, 1]) / 2], -1)


@pytest.mark.parametrize("stream", [False, True])
def test_audio_reverb_then_mid_side_in_memory_and_streamed(tmp_path, stream):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((30_000, 2)) * 0.1).astype(np.float32)
    ir = (rng.standard_normal(2_000) * np.exp(-np.arange(2_000) / 300) * 0.2).astype(np.float32)
    src, irp = tmp_path / "in.wav", tmp_path / "ir.wav"
    sf.write(src, x, 16000, subtype="FLOAT")
    sf.write(irp, ir, 16000, subtype="FLOAT")
    out = tmp_path / f"out{int(stream)}.wav"
    extra = ["--stream-above", "0"] if stream else []
    r = run("chain", src, "-o", out, "-v", *extra, "--", "convolve", irp, "--dry", "1",
            "--wet", "0.5", "+", "remix", "--matrix", "mid-side")
    assert r.code == 0, r.stderr
    assert (": streaming:" in r.stderr) == stream, r.stderr
    y, rate = sf.read(out, dtype="float64")
    ref = _reverb_reference(x.astype(np.float64), ir.astype(np.float64))
    assert rate == 16000 and y.shape == ref.shape
    assert np.abs(y - ref).max() < 1e-6


def test_streamed_and_in_memory_chains_agree(tmp_path):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((20_000, 2)) * 0.1).astype(np.float32)
    src = tmp_path / "in.wav"
    sf.write(src, x, 16000, subtype="FLOAT")
    outs = []
    for extra in ([], ["--stream-above", "0"]):
        out = tmp_path / f"o{len(extra)}.wav"
        r = run("chain", src, "-o", out, *extra, "--", "blur", "--sigma", "3", "+", "convolve",
                "lowpass:2000", "--scale", "0.9", "+", "remix", "--matrix", "swap")
        assert r.code == 0, r.stderr
        outs.append(sf.read(out, dtype="float64")[0])
    assert outs[0].shape == outs[1].shape == x.shape
    assert np.abs(outs[0] - outs[1]).max() < 1e-6


ONE_STAGE = {
    "blur": ["--sigma", "1.2"],
    "convolve": ["1 2 1; 0 0 0; -1 -2 -1", "--bias", "0.5"],
    "remix": ["--matrix", "sepia"],
    "dsconv": ["--depthwise", "gaussian:1", "--pointwise", "0.2 0.3 0.5; 0.5 0.3 0.2"],
}


@pytest.mark.parametrize("command", sorted(ONE_STAGE))
def test_a_one_stage_chain_gives_the_commands_bytes(tmp_path, command):
    a = rand_u8((24, 31, 3), seed=5)
    src = write_png(tmp_path / "in.png", a)
    direct, chained = tmp_path / "direct.png", tmp_path / "chained.png"
    args = ONE_STAGE[command]
    assert run(command, src, *args, "-o", direct).code == 0
    r = run("chain", src, "-o", chained, "--", command, *args)
    assert r.code == 0, r.stderr
    assert direct.read_bytes() == chained.read_bytes()


@pytest.mark.parametrize("command, args", [("blur", ["--sigma", "5"]),
                                           ("remix", ["--matrix", "mid-side"]),
                                           ("convolve", ["lowpass:1000"])])
def test_a_one_stage_chain_gives_the_commands_bytes_for_audio(tmp_path, command, args):
    rng = np.random.default_rng(6)
    src = tmp_path / "in.wav"
    sf.write(src, (rng.standard_normal((8000, 2)) * 0.1), 16000, subtype="PCM_16")
    direct, chained = tmp_path / "direct.wav", tmp_path / "chained.wav"
    assert run(command, src, *args, "-o", direct).code == 0
    assert run("chain", src, "-o", chained, "--", command, *args).code == 0
    assert direct.read_bytes() == chained.read_bytes()


def test_errors_name_the_stage_and_usage_errors_exit_2(tmp_path):
    src = write_png(tmp_path / "in.png", rand_u8((10, 12, 3), seed=7))
    r = run("chain", src, "-o", tmp_path / "o.png", "--", "blur", "+", "remix", "--matrix",
            "1 2")
    assert r.code == 1
    assert r.stderr_lines == [f"pwfilter: error: {src}: stage 2 (remix): matrix of shape "
                              "(1, 2) takes 2 input channels but the input has 3"]
    assert not (tmp_path / "o.png").exists()
    for stages, says in ((["frobnicate"], "unknown stage"), (["blur", "--sigmaa", "2"],
                                                             "--sigmaa"),
                         (["blur", "--normalize", "+", "remix", "--matrix", "gray"],
                          "--normalize belongs to the last stage"), ([], "no stages"),
                         (["blur", "+"], "stage 2 is empty"),
                         (["blur", "+", "remix", "--matrix", "gray", "-v"],
                          "stage 2 (remix): -v is an option of the chain: give it before --")):
        r = run("chain", src, "-o", tmp_path / "o.png", "--", *stages)
        assert r.code == 2 and says in r.stderr, (stages, r.stderr)
    assert not (tmp_path / "o.png").exists()


def test_verbose_and_json_report_every_stage(tmp_path):
    src = write_png(tmp_path / "in.png", rand_u8((20, 22, 3), seed=8))
    r = run("chain", src, "-o", tmp_path / "o.png", "-v", "--json", "--", "blur", "+", "remix",
            "--matrix", "gray", "+", "convolve", "sharpen")
    assert r.code == 0, r.stderr
    obj = json.loads(r.stdout)
    assert [s["stage"] for s in obj["stages"]] == ["blur", "remix", "convolve"]
    assert obj["stages"][1]["method"] == "pointwise" and obj["shape"] == [20, 22, 1]
    assert all("predicted" in obj["stages"][i] for i in (0, 2))
    for i, name in ((1, "blur"), (2, "remix"), (3, "convolve")):
        assert f"stage {i} ({name})" in r.stderr


def test_the_python_chain_equals_the_functions_one_after_another():
    x = np.random.default_rng(9).random((16, 18, 3))
    y = pwfilter.chain(x, "blur --sigma 1.5 + remix --matrix sepia", "convolve sharpen")
    z = pwfilter.convolve(pwfilter.remix(pwfilter.blur(x, sigma=1.5), "sepia"), "sharpen")
    np.testing.assert_allclose(y, z, rtol=0, atol=1e-12)
    with pytest.raises(pwfilter.errors.PwfilterError, match="stage 2"):
        pwfilter.chain(x, "blur", "remix --matrix '1 2'")
