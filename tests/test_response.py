"""The numbers of ``pwfilter kernel``: frequency responses against SciPy's ``freqz`` and
``group_delay`` on the same taps, and against hand-worked cases."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from pwfilter import response, specs
from pwfilter.engine import Separable

from conftest import assert_one_error_line, run, run_main


def freqz_edges(taps, ratio: float, fs: float = 1.0) -> list[float]:
    """Where |H| falls to ``ratio`` times its peak on either side of the peak, from
    ``scipy.signal.freqz`` on a dense grid and linear interpolation between its points."""
    w, h = signal.freqz(taps, worN=1 << 18, fs=fs)
    mag = np.abs(h)
    p = int(np.argmax(mag))
    level = mag[p] * ratio
    edges = []
    below = np.flatnonzero(mag[:p] < level)
    if below.size:
        i = below[-1]
        edges.append(np.interp(level, [mag[i], mag[i + 1]], [w[i], w[i + 1]]))
    above = np.flatnonzero(mag[p:] < level)
    if above.size:
        i = p + above[0]
        edges.append(np.interp(level, [mag[i], mag[i - 1]], [w[i], w[i - 1]]))
    return edges


HALF_POWER = 1 / np.sqrt(2)  # "-3 dB": half the power; "-6 dB": half the amplitude


def fir(spec: str, rate: int):
    return specs.standalone_kernel(spec, rate=rate)


# ---------------------------------------------------------------- against scipy.signal


@pytest.mark.parametrize("spec,rate", [
    ("lowpass:1000", 48000), ("highpass:300:101", 8000), ("bandpass:500:2000:401", 44100),
    ("lowpass:3000:31", 16000),
])
def test_fir_designs_match_freqz(spec, rate):
    k = fir(spec, rate)
    r = response.response_1d(k.array, rate, k.design)
    w, h = signal.freqz(k.array, worN=[0.0, rate / 2], fs=rate)
    assert r.dc_gain == pytest.approx(h[0].real, abs=1e-12)
    assert r.nyquist_gain == pytest.approx(h[1].real, abs=1e-12)
    for ratio, got in ((HALF_POWER, r.minus_3db), (0.5, r.minus_6db)):
        ref = freqz_edges(k.array, ratio, rate)
        assert len(got) == len(ref)
        # the reference's grid: rate/2 over 2^18 points; interpolation error well below 1e-3 Hz
        np.testing.assert_allclose(got, ref, atol=rate * 1e-6)
    assert r.linear_phase and r.group_delay_samples == (k.array.size - 1) / 2
    _, gd = signal.group_delay((k.array, [1.0]), w=[100.0, rate / 7], fs=rate)
    np.testing.assert_allclose(gd, r.group_delay_samples, atol=1e-6)


@pytest.mark.parametrize("spec,rate,cutoffs", [
    ("lowpass:1000", 48000, (1000,)), ("highpass:1000:301", 48000, (1000,)),
    ("bandpass:600:3000:501", 22050, (600, 3000)),
])
def test_ripple_and_attenuation_over_the_design_bands(spec, rate, cutoffs):
    """Bands worked out by hand: the cut-offs ± 1.65·rate/taps (Hamming's transition width
    is 3.3/N cycles per sample); ripple and attenuation from freqz over them."""
    k = fir(spec, rate)
    r = response.response_1d(k.array, rate, k.design)
    half = 1.65 * rate / k.array.size
    nyq = rate / 2
    if spec.startswith("lowpass"):
        passes, stops = [(0, cutoffs[0] - half)], [(cutoffs[0] + half, nyq)]
    elif spec.startswith("highpass"):
        passes, stops = [(cutoffs[0] + half, nyq)], [(0, cutoffs[0] - half)]
    else:
        passes = [(cutoffs[0] + half, cutoffs[1] - half)]
        stops = [(0, cutoffs[0] - half), (cutoffs[1] + half, nyq)]

    def db(bands):  # freqz at 20001 points per band, edges included
        w = np.concatenate([np.linspace(lo, hi, 20001) for lo, hi in bands])
        return 20 * np.log10(np.abs(signal.freqz(k.array, worN=w, fs=rate)[1]))

    p, s = db(passes), db(stops)
    assert r.passband_ripple_db == pytest.approx(p.max() - p.min(), abs=1e-3)
    assert r.stopband_attenuation_db == pytest.approx(p.max() - s.max(), abs=0.02)
    assert r.passband_ripple_db < 0.1 and r.stopband_attenuation_db > 45  # Hamming's promise


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_taps_match_freqz_and_group_delay(seed):
    """Random FIRs (no symmetry): gains, edges, and the group delay at the reported
    frequency as scipy.signal.group_delay computes it."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    taps = rng.standard_normal(n) * np.exp(-0.1 * np.arange(n))
    taps[0] += 3.0  # a main lobe around DC
    r = response.response_1d(taps)
    _, h = signal.freqz(taps, worN=[0.0, 0.5], fs=1.0)
    assert (r.dc_gain, r.nyquist_gain) == pytest.approx((h[0].real, h[1].real), abs=1e-12)
    for ratio, got in ((HALF_POWER, r.minus_3db), (0.5, r.minus_6db)):
        np.testing.assert_allclose(got, freqz_edges(taps, ratio), atol=1e-6)
    assert not r.linear_phase
    _, gd = signal.group_delay((taps, [1.0]), w=[r.group_delay_at], fs=1.0)
    assert r.group_delay_samples == pytest.approx(gd[0], abs=1e-8)
    assert r.energy_centroid_samples == pytest.approx(
        (np.arange(taps.size) * taps ** 2).sum() / (taps ** 2).sum())


def test_magnitude_grid_matches_freqz():
    taps = specs.fir_design("bandpass", ["300", "900", "151"], 8000)
    f, mag = response.magnitude(taps, 4096)
    w, h = signal.freqz(taps, worN=2048, fs=1.0)  # 0, 1/4096, ... (Nyquist excluded)
    np.testing.assert_allclose(f[:2048], w, atol=1e-15)
    np.testing.assert_allclose(mag[:2048], np.abs(h), atol=1e-12)


# ---------------------------------------------------------------- hand-worked


def test_lowpass_1000_at_48k():
    """The issue's case: the -6 dB point within 2 % of 1000 Hz, at least 40 dB of stopband
    attenuation, and a linear-phase delay of (961 - 1)/2 = 480 samples (10 ms)."""
    k = fir("lowpass:1000", 48000)
    r = response.response_1d(k.array, 48000, k.design)
    assert len(r.minus_6db) == 1 and abs(r.minus_6db[0] - 1000) <= 20
    assert r.minus_3db[0] < r.minus_6db[0]
    assert r.stopband_attenuation_db >= 40
    assert r.group_delay_samples == 480 and r.linear_phase
    assert r.dc_gain == pytest.approx(1.0, abs=1e-3)


def test_box_5():
    """H(f) = sin(5πf) / (5 sin(πf)): DC gain 1, Nyquist gain 1/5 (Σ(-1)^n/5), first null
    at f = 1/5, i.e. fs/5; -3 dB where the ratio is 1/√2 (solved here by brentq)."""
    from scipy.optimize import brentq

    k = specs.standalone_kernel("box:5", rate=48000)
    assert k.axes == 1 and k.array.shape == (5,)
    r = response.response_1d(k.array, 48000)
    assert r.dc_gain == pytest.approx(1.0, abs=1e-15) and r.dc_gain_db == pytest.approx(0.0)
    assert r.nyquist_gain == pytest.approx(0.2, abs=1e-15)
    assert r.first_null == pytest.approx(48000 / 5, abs=1e-6)
    ratio = lambda f: np.sin(5 * np.pi * f) / (5 * np.sin(np.pi * f))  # noqa: E731
    f3 = brentq(lambda f: ratio(f) - 1 / np.sqrt(2), 0.01, 0.19)
    f6 = brentq(lambda f: ratio(f) - 0.5, 0.01, 0.19)
    assert r.minus_3db == pytest.approx([f3 * 48000], abs=1e-6)
    assert r.minus_6db == pytest.approx([f6 * 48000], abs=1e-6)
    assert r.group_delay_samples == 2.0 and r.linear_phase
    r = response.response_1d(k.array)  # no rate: cycles/sample
    assert r.first_null == pytest.approx(0.2, abs=1e-12)


def test_edges_of_simple_kernels():
    # first difference [1, -1]: |H| = 2 sin(πf), peak 2 at Nyquist; half power where
    # sin(πf) = 1/√2 (f = 1/4), half amplitude at f = 1/6; a null at DC; antisymmetric:
    # linear phase, delay 1/2.
    r = response.response_1d([1.0, -1.0])
    assert r.peak_frequency == 0.5 and r.minus_3db == pytest.approx([0.25], abs=1e-12)
    assert r.minus_6db == pytest.approx([1 / 6], abs=1e-12)
    assert r.first_null == 0.0 and r.linear_phase and r.group_delay_samples == 0.5
    # identity: flat, no edges, no null
    r = response.response_1d([1.0])
    assert r.minus_3db == [] and r.minus_6db == [] and r.first_null is None
    # a delayed symmetric kernel: still linear phase, delay 3 + 1
    r = response.response_1d([0, 0, 0, 1.0, 2.0, 1.0, 0])
    assert r.linear_phase and r.group_delay_samples == 4.0
    # all zeros: nothing is defined, nothing crashes
    r = response.response_1d([0.0, 0.0])
    assert r.dc_gain_db is None and r.group_delay_samples is None and r.minus_3db == []


def test_bandpass_has_two_edges():
    k = fir("bandpass:500:2000", 48000)
    r = response.response_1d(k.array, 48000, k.design)
    assert len(r.minus_6db) == 2
    assert r.minus_6db == pytest.approx([500, 2000], rel=0.02)


def make_decay(rt60: float, rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """White noise whose amplitude falls 60 dB in ``rt60`` seconds: an exponential decay
    with a known RT60."""
    t = np.arange(int(seconds * rate)) / rate
    return np.random.default_rng(seed).standard_normal(t.size) * 10 ** (-3 * t / rt60)


@pytest.mark.parametrize("rt60,rate", [(0.4, 48000), (1.5, 16000), (0.8, 22050)])
def test_rt60_of_an_exponential_decay(rt60, rate):
    d = response.rt60(make_decay(rt60, rate, 1.5 * rt60), rate)
    assert d.fit == "T30" and d.fit_range_db == (-5.0, -35.0)
    assert d.rt60_seconds == pytest.approx(rt60, rel=0.05)


def test_rt60_with_a_noise_floor_and_a_short_decay():
    rate, rt = 16000, 1.0
    ir = make_decay(rt, rate, 1.5)
    noisy = ir + 10 ** (-40 / 20) * np.random.default_rng(5).standard_normal(ir.size)
    d = response.rt60(noisy, rate)  # floor at -40 dB: too close for T30, T20 still fits
    assert d.fit == "T20" and d.rt60_seconds == pytest.approx(rt, rel=0.05)
    assert d.noise_floor_db == pytest.approx(-40, abs=2)
    d = response.rt60(make_decay(rt, rate, 0.5), rate)  # ends at -30 dB: nothing to fit
    assert d.rt60_seconds is None and d.fit is None


def test_energy_decay_curve_by_hand():
    # h = [2, 1, 1]: energies 4, 1, 1; backward sums 6, 2, 1 -> 0, 10·log10(1/3), 10·log10(1/6)
    np.testing.assert_allclose(response.energy_decay_db([2.0, 1.0, 1.0]),
                               [0.0, 10 * np.log10(2 / 6), 10 * np.log10(1 / 6)])


# ---------------------------------------------------------------- 2-D


def test_2d_numbers():
    r = response.response_2d(specs.standalone_kernel("box:3").array)
    assert r.dc_gain == pytest.approx(1.0) and r.rank == 1 and r.separable
    r = response.response_2d(specs.standalone_kernel("sharpen").array)
    assert r.dc_gain == 1.0 and r.rank == 2 and not r.separable  # centre 5, four arms of -1
    r = response.response_2d(specs.standalone_kernel("laplacian").array)
    assert r.dc_gain == 0.0 and r.dc_gain_db is None
    k = np.random.default_rng(3).standard_normal((5, 4))
    assert response.response_2d(k).rank == np.linalg.matrix_rank(k) == 4
    g = Separable(np.array([1.0, 2, 1]), np.array([1.0, 0, -1]))
    r = response.response_2d(g)
    assert (r.dc_gain, r.rank, r.separable) == (0.0, 1, True)


def test_2d_spectrum_samples_the_response():
    """|H(u, v)| of the 3x3 box at grid points, by hand: (1 + 2cos 2πu)(1 + 2cos 2πv)/9."""
    k = np.full((3, 3), 1 / 9)
    freqs, mag = response.spectrum_2d(k, 64)
    u = freqs[:, None]
    v = freqs[None, :]
    ref = np.abs((1 + 2 * np.cos(2 * np.pi * u)) * (1 + 2 * np.cos(2 * np.pi * v))) / 9
    np.testing.assert_allclose(mag, ref, atol=1e-12)
    f2, m2 = response.spectrum_2d(Separable(np.full(3, 1 / 3), np.full(3, 1 / 3)), 64)
    np.testing.assert_allclose(m2, ref, atol=1e-12)
    # a kernel larger than the grid is sampled without aliasing (every k-th bin)
    big = np.random.default_rng(0).standard_normal((100, 70))
    _, m3 = response.spectrum_2d(big, 32)
    ref3 = np.fft.fftshift(np.abs(np.fft.fft2(big, (128, 128))[::4, ::4]))
    np.testing.assert_allclose(m3, ref3, atol=1e-9)


# ---------------------------------------------------------------- the command


def kernel_json(capsys, *args) -> dict:
    code, out, err = run_main(capsys, "kernel", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_kernel_json_for_the_issue_cases(capsys):
    r = run("kernel", "lowpass:1000", "--rate", "48000", "--json")  # a real process
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["frequency_unit"] == "Hz" and d["axes"] == 1 and d["shape"] == [961]
    c = d["channels"][0]
    assert abs(c["minus_6db"][0] - 1000) <= 20 and c["stopband_attenuation_db"] >= 40
    assert c["linear_phase"] and c["group_delay_samples"] == 480
    ref = freqz_edges(specs.fir_design("lowpass", ["1000"], 48000), 0.5, 48000)
    assert c["minus_6db"] == pytest.approx(ref, abs=0.05)
    d = kernel_json(capsys, "box:5", "--audio")
    c = d["channels"][0]
    assert d["frequency_unit"] == "cycles/sample"
    assert c["dc_gain"] == pytest.approx(1.0) and c["first_null"] == pytest.approx(0.2)
    c = kernel_json(capsys, "box:5", "--rate", "48000")["channels"][0]
    assert c["first_null"] == pytest.approx(9600)


def test_kernel_summary_is_the_default(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "kernel", "lowpass:1000", "--rate", "48000")
    assert code == 0, err
    assert "-3 dB: 979.87 Hz; -6 dB: 999.9 Hz;" in out and "stopband attenuation 52.5 dB" in out
    assert "group delay 480 samples (10 ms), linear phase" in out
    code, out, err = run_main(capsys, "kernel", "sharpen")
    assert out.splitlines()[1] == "  DC gain 1 (+0.00 dB), rank 2 (not separable)"
    assert list(tmp_path.iterdir()) == []


def test_impulse_response_file(capsys, tmp_path):
    rate, rt = 16000, 0.6
    ir = np.stack([make_decay(rt, rate, 1.0, seed=1), make_decay(rt, rate, 1.0, seed=2)], -1)
    path = tmp_path / "room.wav"
    sf.write(path, (0.5 * ir / np.abs(ir).max()).astype(np.float32), rate, subtype="FLOAT")
    d = kernel_json(capsys, path)
    assert d["source"] == "impulse response" and d["rate"] == rate and d["per_channel"]
    assert d["shape"] == [2, rate]
    for c in d["channels"]:
        assert c["length_seconds"] == 1.0 and c["taps"] == rate
        assert c["decay"]["fit"] == "T30"
        assert c["decay"]["rt60_seconds"] == pytest.approx(rt, rel=0.05)
    code, out, err = run_main(capsys, "kernel", path)
    assert "RT60 0.59" in out or "RT60 0.60" in out or "RT60 0.61" in out, out
    assert "(T30: energy decay fitted from -5 to -35 dB)" in out
    code, out, err = run_main(capsys, "kernel", path, "--rate", "48000")
    assert code == 1
    assert_one_error_line(err, "16000 Hz")


def test_arrays_read_by_shape(capsys, tmp_path):
    """(M,) and (1, M) are 1-D; (R, M) is 2-D, or one 1-D kernel per row with --audio or a
    rate; (C, kh, kw) one 2-D kernel per channel."""
    rows = np.array([[1.0, 2, 1], [0, 1, 0]])
    np.save(tmp_path / "r.npy", rows)
    np.save(tmp_path / "c.npy", np.stack([rows, -rows]))
    d = kernel_json(capsys, tmp_path / "r.npy")
    assert (d["axes"], d["per_channel"]) == (2, False)
    assert d["channels"][0] == {"shape": [2, 3], "dc_gain": 5.0, "dc_gain_db": pytest.approx(
        20 * np.log10(5)), "rank": 2, "separable": False}
    d = kernel_json(capsys, tmp_path / "r.npy", "--audio")
    assert (d["axes"], d["per_channel"], len(d["channels"])) == (1, True, 2)
    assert [c["dc_gain"] for c in d["channels"]] == [4.0, 1.0]
    d = kernel_json(capsys, tmp_path / "c.npy")
    assert (d["axes"], d["per_channel"], [c["dc_gain"] for c in d["channels"]]) == \
        (2, True, [5.0, -5.0])
    d = kernel_json(capsys, "1 2 1")
    assert (d["axes"], d["shape"], d["source"]) == (1, [3], "inline")
    code, out, err = run_main(capsys, "kernel", tmp_path / "c.npy", "--audio")
    assert code == 1
    assert_one_error_line(err, "(2, 2, 3)")


def test_kernel_writes_any_source_and_reports_json(capsys, tmp_path):
    src = tmp_path / "k.txt"
    src.write_text("1 2 1\n2 4 2\n1 2 1\n")
    out = tmp_path / "k.npy"
    d = kernel_json(capsys, src, "-o", out)
    np.testing.assert_array_equal(np.load(out), [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    assert d["output"] == str(out) and d["channels"][0]["rank"] == 1
    r = run("kernel", "box:3", "-o", "-", "--json")  # the kernel on stdout, the JSON on stderr
    assert r.code == 0 and json.loads(r.stderr)["output"] == "-"
    np.testing.assert_allclose(np.load(io.BytesIO(r.stdout)), np.full((3, 3), 1 / 9))
    code, _, err = run_main(capsys, "kernel", src, "-o", src, "--overwrite")
    assert code == 1 and "refusing to write over a file this command reads" in err


def test_kernel_memory_limit_covers_the_analysis(capsys):
    code, out, err = run_main(capsys, "kernel", "box:3000000", "--audio", "--max-memory", "64M")
    assert code == 1
    assert_one_error_line(err, "--max-memory")


def test_kernel_lines_stay_one_line_with_a_newline_in_the_spec(tmp_path):
    """Found by fuzzing: inline rows with a newline printed the description on two lines."""
    from conftest import run

    r = run("kernel", "1000\n-0,", "-o", "-", "--audio")
    assert r.code == 0, r.stderr
    assert len(r.stderr_lines) == 1 and "\\n" in r.stderr, r.stderr
    s = run("kernel", "10\n0.5", "--audio")
    assert s.code == 0 and s.stdout.decode().splitlines()[0].startswith("10\\n0.5: 1-D"), s.stdout
