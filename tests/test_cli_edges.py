"""Mistakes and edge cases a real user runs into, through the real command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import imagecodecs
import numpy as np
import pytest
import soundfile as sf
from scipy import ndimage


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pwfilter", *map(str, args)],
                          capture_output=True, **kw)


@pytest.fixture
def png(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    p = tmp_path / "photo.png"
    p.write_bytes(imagecodecs.png_encode(a))
    return p, a


def one_error_line(r) -> str:
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwfilter: error:"), r.stderr
    return lines[0]


def test_a_folder_named_like_a_preset_does_not_shadow_it(png, tmp_path):
    p, a = png
    (tmp_path / "gray").mkdir()
    r = run("remix", p.name, "--matrix", "gray", "-o", "g.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = imagecodecs.png_decode((tmp_path / "g.png").read_bytes())
    ref = np.rint(a / 255.0 @ np.array([0.299, 0.587, 0.114]) * 255)
    assert np.abs(got.astype(int) - ref).max() <= 1


def test_overwrite_never_replaces_a_fifo(png, tmp_path):
    p, _ = png
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = run("blur", p, "-o", fifo, "--overwrite", "--format", "png")
    assert r.returncode == 1 and "not a regular file" in one_error_line(r)
    assert not os.path.isfile(fifo)


def test_two_inputs_with_one_name_into_one_folder(png, tmp_path):
    p, _ = png
    other = tmp_path / "sub"
    other.mkdir()
    (other / "photo.png").write_bytes(p.read_bytes())
    out = tmp_path / "out"
    r = run("blur", p, other / "photo.png", "-o", f"{out}/", "--overwrite")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "already written by this run" in err and "1 of 2 files failed" in err
    assert os.listdir(out) == ["photo.png"]


def test_json_goes_to_stderr_when_the_data_goes_to_stdout(png):
    p, a = png
    r = run("blur", p, "-o", "-", "--json")
    assert r.returncode == 0
    assert imagecodecs.png_decode(r.stdout).shape == a.shape  # clean PNG bytes
    assert json.loads(r.stderr.decode())["output"] == "-"


def test_kernel_as_text_and_to_stdout(png, tmp_path):
    p, a = png
    txt = tmp_path / "g.txt"
    r = run("kernel", "gaussian:1", "-o", txt)
    assert r.returncode == 0, r.stderr
    impulse = np.zeros((9, 9))
    impulse[4, 4] = 1
    np.testing.assert_allclose(np.loadtxt(txt), ndimage.gaussian_filter(impulse, 1.0), atol=1e-15)
    out = tmp_path / "c.png"
    assert run("convolve", p, txt, "-o", out).returncode == 0
    r = run("kernel", "box:3", "-o", "-")
    assert r.returncode == 0
    np.testing.assert_array_equal(np.load(io.BytesIO(r.stdout)), np.full((3, 3), 1 / 9))


def test_normalize_does_not_report_the_peak_as_clipped(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "a.wav"
    sf.write(src, (rng.standard_normal((4000, 2)) * 0.1).astype(np.float32), 8000,
             subtype="PCM_16")
    r = run("convolve", src, "0.5 0.3 0.2", "--normalize", "-o", tmp_path / "n.wav")
    assert r.returncode == 0
    assert b"clipped" not in r.stderr
    y, _ = sf.read(tmp_path / "n.wav", dtype="int16")
    assert np.abs(y.astype(int)).max() >= 32767


@pytest.mark.parametrize("cmd", [["blur"], ["remix", "--matrix", "gray"]])
def test_max_memory_is_enforced_before_decoding(tmp_path, cmd):
    big = tmp_path / "big.png"
    big.write_bytes(imagecodecs.png_encode(np.zeros((1000, 1000, 3), np.uint8)))
    r = run(cmd[0], big, *cmd[1:], "--max-memory", "1M", "-o", tmp_path / "o.png")
    assert r.returncode == 1 and "--max-memory" in one_error_line(r)
    assert not (tmp_path / "o.png").exists()


def test_missing_input_is_named_as_missing(tmp_path):
    r = run("blur", tmp_path / "nowhere" / "photo.png")
    assert r.returncode == 1 and "no such file" in one_error_line(r)


def test_non_finite_option_values_and_missing_kernel_are_usage_errors(png):
    p, _ = png
    for args in (["blur", p, "--sigma", "nan"], ["blur", p, "--scale", "inf"],
                 ["convolve", p], ["blur", p, "-o", ""]):
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
    assert b"KERNEL" in run("convolve", p).stderr


def test_cost_says_more_when_separable_costs_more():
    r = run("cost", "--cin", "3", "--cout", "3", "-k", "1")
    assert r.returncode == 0 and b"% more" in r.stdout


def test_dsconv_normalize_kernel_and_correlate(png, tmp_path):
    p, a = png
    out = tmp_path / "d.npy"
    r = run("dsconv", p, "--depthwise", "1 2 1; 2 4 2; 1 2 1", "--normalize-kernel",
            "--pointwise", "gray", "-o", out)
    assert r.returncode == 0, r.stderr
    k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    conv = np.stack([ndimage.convolve(a[..., c] / 255.0, k, mode="reflect") for c in range(3)],
                    -1)
    np.testing.assert_allclose(np.load(out)[..., 0], conv @ [0.299, 0.587, 0.114], atol=1e-5)
    asym = "0 0 0; 0 0 1; 0 0 0"
    out2 = tmp_path / "c.npy"
    assert run("dsconv", p, "--depthwise", asym, "--correlate", "--pointwise", "1 0 0; 0 1 0; 0 0 1",
               "--boundary", "nearest", "-o", out2).returncode == 0
    # correlation with a right-neighbour tap shifts the image left by one
    y = np.load(out2)
    np.testing.assert_allclose(y[:, :-1], a[:, 1:] / 255.0, atol=1e-6)


def test_info_on_a_text_file_and_summary(tmp_path):
    t = tmp_path / "notes.txt"
    t.write_text("hello\n")
    w = tmp_path / "a.wav"
    sf.write(w, np.zeros((10, 1)), 8000)
    r = run("info", t, w)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "not a recognised image, audio or .npy file" in err and "1 of 2 files failed" in err
    assert b"a.wav" in r.stdout


def test_version_is_answered_without_loading_click_or_the_array_stack():
    """`--version` and `-V` skip Click (and so NumPy, SciPy, codecs); the wording is Click's."""
    from click.testing import CliRunner

    from pwfilter.cli import cli

    said_by_click = CliRunner().invoke(cli, ["--version"], prog_name="pwfilter").output
    code = ("import sys\nimport pwfilter\npwfilter.main()\n"
            "print(sorted(m for m in ('click', 'numpy', 'scipy', 'PIL', 'soundfile',"
            " 'imagecodecs', 'cv2', 'tifffile', 'zarr', 'isal', 'zlib_ng', 'matplotlib',"
            " 'dask', 'distributed') if m in sys.modules))\n")
    for flag in ("--version", "-V"):
        r = subprocess.run([sys.executable, "-c", code, flag], capture_output=True, text=True,
                           check=True)
        version, loaded = r.stdout.splitlines()
        assert version + "\n" == said_by_click
        assert loaded == "[]"
    r = run("--version", text=True)  # and through `python -m pwfilter`
    assert r.returncode == 0 and r.stdout == said_by_click
