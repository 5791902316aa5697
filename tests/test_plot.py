"""``pwfilter kernel --plot``: valid PNG and SVG files for 1-D, 2-D and per-channel kernels;
the one-line error without matplotlib; no other command imports matplotlib."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import ROOT, assert_one_error_line, run_main, snapshot, write_png

pytest.importorskip("matplotlib")


def check_png(path, min_size=(600, 300)) -> None:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        # a picture, not a blank canvas: many distinct colours
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 50


def check_svg(path) -> list[str]:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text] + [
        c.text for c in root.iter() if c.tag.endswith("}title") and c.text]


@pytest.fixture
def kernels(tmp_path):
    """A 1-D design, a 2-D kernel, per-channel 1-D (a stereo impulse response) and
    per-channel 2-D (a (2, 5, 5) .npy)."""
    rate = 8000
    t = np.arange(2000) / rate
    rng = np.random.default_rng(0)
    ir = rng.standard_normal((2000, 2)) * 10 ** (-3 * t / 0.2)[:, None]
    sf.write(tmp_path / "ir.wav", (0.5 * ir / np.abs(ir).max()).astype(np.float32), rate,
             subtype="FLOAT")
    np.save(tmp_path / "two.npy", np.stack([np.full((5, 5), 1 / 25), np.eye(5)]))
    return {"1-D": ["lowpass:1000", "--rate", "48000"], "2-D": ["sharpen"],
            "per-channel 1-D": [tmp_path / "ir.wav"], "per-channel 2-D": [tmp_path / "two.npy"]}


@pytest.mark.parametrize("which", ["1-D", "2-D", "per-channel 1-D", "per-channel 2-D"])
def test_plot_writes_valid_png_and_svg(which, kernels, tmp_path, capsys):
    for ext in ("png", "svg"):
        out = tmp_path / f"plot.{ext}"
        code, stdout, err = run_main(capsys, "kernel", *kernels[which], "--plot", out)
        assert code == 0, err
        assert f"{out}: the response of" in stdout
        if ext == "png":
            check_png(out)
        else:
            texts = " ".join(check_svg(out))
            if which.endswith("1-D"):
                assert "magnitude (dB)" in texts and "impulse response" in texts
                assert "frequency (Hz)" in texts
            else:
                assert "cycles/pixel" in texts
                assert "kernel 5x5" in texts or "kernel 3x3" in texts
            if which.startswith("per-channel"):
                assert "channel 2" in texts
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".pwfilter-")]


def test_plot_axes_say_cycles_per_sample_without_a_rate(tmp_path, capsys):
    out = tmp_path / "b.svg"
    code, _, err = run_main(capsys, "kernel", "box:5", "--audio", "--plot", out)
    assert code == 0, err
    texts = " ".join(check_svg(out))
    assert "frequency (cycles/sample)" in texts and "Hz" not in texts


def test_plot_with_json_and_output(tmp_path, capsys):
    code, out, err = run_main(capsys, "kernel", "gaussian:2", "--plot", tmp_path / "g.png",
                              "-o", tmp_path / "g.npy", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["plot"] == str(tmp_path / "g.png") and d["output"] == str(tmp_path / "g.npy")
    check_png(tmp_path / "g.png")


def test_plot_errors(tmp_path, capsys):
    (tmp_path / "old.png").write_bytes(b"keep")
    before = snapshot(tmp_path)
    for args, name in [
        (["--plot", tmp_path / "x.gif"], ".png or .svg"),
        (["--plot", tmp_path / "old.png"], "--overwrite"),
        (["--plot", tmp_path / "k.png", "-o", tmp_path / "k.png"], "same file"),
        (["--plot", tmp_path / "nodir" / "k.png"], "does not exist"),
    ]:
        code, out, err = run_main(capsys, "kernel", "box:3", *args)
        assert code == 1, args
        assert_one_error_line(err, name)
        assert snapshot(tmp_path) == before


def test_plot_never_writes_over_the_kernel(tmp_path, capsys):
    k = tmp_path / "k.txt"
    k.write_text("1 2 1")
    os.symlink(k, tmp_path / "p.svg")  # the plot's name leads to the kernel file
    code, out, err = run_main(capsys, "kernel", k, "--plot", tmp_path / "p.svg", "--overwrite")
    assert code == 1
    assert_one_error_line(err, "refusing to write over a file this command reads")
    assert k.read_text() == "1 2 1"


def test_without_matplotlib_one_line_error(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = run_main(capsys, "kernel", "sharpen", "--plot", tmp_path / "s.png",
                              "-o", tmp_path / "s.npy")
    assert code == 1 and out == ""
    assert_one_error_line(err, 'pip install "pwfilter[plot]"')
    assert err.startswith("pwfilter: error: --plot needs matplotlib")
    assert os.listdir(tmp_path) == []  # nothing written, not even -o
    code, out, err = run_main(capsys, "kernel", "sharpen", "--json")  # the numbers need none
    assert code == 0 and json.loads(out)["channels"][0]["rank"] == 2


PROBE = """
import sys
from pwfilter.cli import main
try:
    main(sys.argv[2:])
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"
                    or m == "scipy.signal")
    with open(sys.argv[1], "w") as fh:
        fh.write(" ".join(loaded))
"""


def modules_loaded_by(tmp_path, *args) -> set[str]:
    """The matplotlib modules and scipy.signal that one real pwfilter process imported."""
    report = tmp_path / "modules.txt"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(report), *map(str, args)],
                          cwd=tmp_path, capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(report.read_text().split())


def test_only_plot_imports_matplotlib(tmp_path):
    png = write_png(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8))
    sf.write(tmp_path / "a.wav", np.zeros((100, 2), np.float32), 8000, subtype="FLOAT")
    for args in (["blur", png, "-o", "b.png"], ["remix", png, "--matrix", "gray", "-o", "r.png"],
                 ["convolve", "a.wav", "lowpass:500", "-o", "c.wav"],
                 ["kernel", "lowpass:1000", "--rate", "48000", "--json"]):
        loaded = modules_loaded_by(tmp_path, *args)
        assert not any(m.startswith("matplotlib") for m in loaded), (args, loaded)
        if not any("pass:" in str(a) for a in args):  # FIR designs need scipy's firwin
            assert "scipy.signal" not in loaded, args
    loaded = modules_loaded_by(tmp_path, "kernel", "box:5", "--audio", "--json")
    assert loaded == set()  # the numbers need neither matplotlib nor scipy.signal
    # and the probe sees them when they are imported
    assert "matplotlib" in modules_loaded_by(tmp_path, "kernel", "box:3", "--plot", "p.png")


def test_dollar_signs_in_a_name_are_not_math(tmp_path, capsys):
    """matplotlib reads $...$ as math (and fails on bad math): a file name is text."""
    k = tmp_path / "k$\\frac$.txt"
    k.write_text("1 2 1\n")
    out = tmp_path / "k.svg"
    code, _, err = run_main(capsys, "kernel", k, "--plot", out)
    assert code == 0, err
    assert any("k$\\frac$.txt: kernel, 3 taps" in t for t in check_svg(out))
