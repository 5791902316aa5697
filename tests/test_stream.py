"""Streaming audio: block-by-block results equal the in-memory path and SciPy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from scipy import signal as sps

from conftest import wait_until_writing

import pwfilter
from pwfilter.spectral import BlockConvolver
from pwfilter.stream import StreamFilter, should_stream, stream_nfft


def stream_all(f: StreamFilter, x: np.ndarray, block: int) -> np.ndarray:
    outs = []
    for i in range(0, x.shape[0], block):
        outs += f.push(x[i: i + block])
    outs += f.flush()
    return np.concatenate(outs) if outs else np.zeros((0, f.c_out))


def reference(x, k, mode):
    """Per-channel scipy.signal.convolve (k shared (M,) or per channel (C, M))."""
    ks = [k] * x.shape[1] if k.ndim == 1 else list(k)
    return np.stack([sps.convolve(x[:, c], ks[c], mode=mode) for c in range(x.shape[1])], -1)


CASES = [
    # frames, taps, read block, per-channel, mode, nfft (None: default)
    (5000, 1, 333, False, "full", None),          # one-sample IR
    (20000, 37, 1000, True, "full", None),        # IR much shorter than a block
    (20000, 3000, 700, False, "same", 8192),      # IR longer than a read block
    (20000, 3001, 70000, True, "same", 8192),     # read block longer than the input
    (30000, 4096, 4096, True, "valid", 8192),     # IR longer than an overlap-add step
    (3000, 2500, 100, False, "full", None),       # IR almost as long as the input
    (200000, 5000, 1 << 15, True, "same", None),  # many batches
]


@pytest.mark.parametrize("n,m,block,per_channel,mode,nfft", CASES)
def test_stream_equals_scipy_and_in_memory(n, m, block, per_channel, mode, nfft):
    rng = np.random.default_rng(n + m)
    x = rng.standard_normal((n, 2))
    k = rng.standard_normal((2, m) if per_channel else (m,))
    f = StreamFilter(2, n, k, mode=mode, dtype=np.float64)
    if nfft:
        f.conv = BlockConvolver(k, 2, np.float64, nfft=nfft)
    y = stream_all(f, x, block)
    ref = reference(x, k, mode)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-9 * np.abs(ref).max())
    mem = pwfilter.convolve(x, k, mode=mode)
    np.testing.assert_allclose(y, mem, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_stream_float32_within_1e6_of_in_memory_with_dry_wet_scale_bias(mode):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((50_000, 3)) * 0.2).astype(np.float32)
    k = (rng.standard_normal((3, 2049)) * np.exp(-np.arange(2049) / 400) * 0.05).astype(
        np.float32)
    mem = pwfilter.convolve(x, k, mode=mode, scale=0.8, bias=0.01, dry=0.5, wet=0.7)
    f = StreamFilter(3, x.shape[0], k, mode=mode, scale=0.8, bias=0.01, dry=0.5, wet=0.7)
    y = stream_all(f, x, 4321)
    assert y.dtype == np.float32
    assert y.shape == mem.shape
    assert np.abs(y - mem).max() < 1e-6


def test_stream_remix_only_and_dsconv_order():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10_000, 4))
    mat = rng.standard_normal((2, 4))
    bias = np.array([0.1, -0.2])
    f = StreamFilter(4, x.shape[0], None, matrix=mat, matrix_bias=bias, dtype=np.float64)
    np.testing.assert_allclose(stream_all(f, x, 999), x @ mat.T + bias, atol=1e-12)
    k = rng.standard_normal(33)
    f = StreamFilter(4, x.shape[0], k, mode="same", matrix=mat, dtype=np.float64)
    ref = reference(x, k, "same") @ mat.T
    np.testing.assert_allclose(stream_all(f, x, 1000), ref, atol=1e-10)


def small_batches(x, k):
    """A convolver with 16-sample batches of nfft 128 (92-sample steps): many batches."""
    conv = BlockConvolver(k, x.shape[1], np.float64, nfft=128)
    assert conv.steps * conv.step < x.shape[0] // 10
    return conv


def test_outputs_kept_by_the_consumer_are_never_overwritten():
    rng = np.random.default_rng(11)
    x, k = rng.standard_normal((30_000, 2)), rng.standard_normal(37)
    conv = small_batches(x, k)
    kept = []
    for i in range(0, x.shape[0], 500):
        kept += conv.push(x[i: i + 500])  # views, all still held
    kept += conv.flush()
    np.testing.assert_allclose(np.concatenate(kept), reference(x, k, "full"), atol=1e-10)


@pytest.mark.parametrize("held", [0, 1, 3])
def test_released_outputs_free_their_buffer_for_reuse(held):
    """A consumer that lets go of outputs (as the writer does) gets the same buffers back."""
    rng = np.random.default_rng(held)
    x, k = rng.standard_normal((30_000, 2)), rng.standard_normal((2, 50))
    conv = small_batches(x, k)
    copies, window = [], []
    for i in range(0, x.shape[0], 300):  # shorter than a batch: one transform per push
        window.append(conv.push(x[i: i + 300]))  # the last `held` pushes' outputs stay alive
        while len(window) > held:
            copies += [y.copy() for y in window.pop(0)]
    for outs in window:
        copies += [y.copy() for y in outs]
    copies += [y.copy() for y in conv.flush()]
    np.testing.assert_allclose(np.concatenate(copies), reference(x, k, "full"), atol=1e-10)
    assert 1 <= len(conv.outbufs.buffers) <= held + 1


def test_fft_size_covers_twice_the_kernel():
    for m in (1, 100, 144_000, 1_000_000):
        n = stream_nfft(m)
        assert n >= 2 * m and n & (n - 1) == 0
    with pytest.raises(ValueError):
        BlockConvolver(np.ones(100), 1, nfft=150)


def test_should_stream_by_budget():
    assert should_stream(48_000 * 600, 2, 144_000)[0]
    assert not should_stream(48_000, 2, 100)[0]
    want, why = should_stream(1000, 1, 1, budget=0)
    assert want and "budget" in why


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pwfilter", *args], capture_output=True,
                          text=True, **kw)


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_cli_stream_equals_in_memory(tmp_path, subtype):
    rng = np.random.default_rng(11)
    src, ir = tmp_path / "in.wav", tmp_path / "ir.wav"
    sf.write(src, (rng.standard_normal((30_000, 2)) * 0.1).astype(np.float32), 8000,
             subtype=subtype)
    sf.write(ir, (rng.standard_normal((700, 2)) * 0.05).astype(np.float32), 8000,
             subtype="FLOAT")
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    r1 = run("convolve", str(src), str(ir), "-o", str(a), "--stream-above", "0", "-v")
    r2 = run("convolve", str(src), str(ir), "-o", str(b), "--stream-above", "1G", "-v")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert "streaming" in r1.stderr and "in memory" in r2.stderr
    ya, ra = sf.read(a, dtype="float64")
    yb, rb = sf.read(b, dtype="float64")
    assert ra == rb == 8000 and sf.info(a).subtype == subtype
    assert ya.shape == yb.shape == (30_000 + 699, 2)
    tol = 1e-6 if subtype == "FLOAT" else 1.5 / 32768  # at most one LSB apart
    assert np.abs(ya - yb).max() <= tol


def test_cli_stream_normalize_two_pass(tmp_path):
    rng = np.random.default_rng(5)
    src = tmp_path / "in.wav"
    x = (rng.standard_normal((20_000, 1)) * 0.5).astype(np.float32)
    sf.write(src, x, 8000, subtype="PCM_24")
    out = tmp_path / "out.wav"
    r = run("convolve", str(src), "1 1 1 1", "-o", str(out), "--normalize", "--stream-above", "0")
    assert r.returncode == 0, r.stderr
    y, _ = sf.read(out, dtype="float64")
    xin, _ = sf.read(src, dtype="float64")
    ref = np.convolve(xin, np.ones(4))
    ref /= np.abs(ref).max()
    assert abs(np.abs(y).max() - 1.0) < 2**-22
    np.testing.assert_allclose(y, ref, atol=2**-22)
    assert sorted(os.listdir(tmp_path)) == ["in.wav", "out.wav"]  # the float temporary is gone


@pytest.mark.parametrize("extra", [[], ["--stream-above", "0"],
                                   ["--stream-above", "0", "--normalize"]])
def test_write_failing_midway_is_one_error_line_and_leaves_nothing(tmp_path, extra):
    """The system's error from libsndfile's own writes (here: a file size limit, EFBIG)."""
    import resource

    rng = np.random.default_rng(5)
    src, ir = tmp_path / "in.wav", tmp_path / "ir.wav"
    sf.write(src, (rng.standard_normal((48_000 * 5, 2)) * 0.1).astype(np.float32), 48_000,
             subtype="FLOAT")
    sf.write(ir, (rng.standard_normal((4800, 2)) * 0.01).astype(np.float32), 48_000,
             subtype="FLOAT")
    before = sorted(os.listdir(tmp_path))

    def limit_file_size():  # past 256 KiB, write() fails with EFBIG instead of a signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 18, 1 << 18))

    r = subprocess.run([sys.executable, "-m", "pwfilter", "convolve", str(src), str(ir),
                        "-o", str(tmp_path / "out.wav"), *extra], capture_output=True,
                       text=True, preexec_fn=limit_file_size)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"pwfilter: error: {src}: {tmp_path / 'out.wav'}: cannot write (File too large)"]
    assert sorted(os.listdir(tmp_path)) == before


def test_sigint_leaves_no_output_and_exits_130(tmp_path):
    rng = np.random.default_rng(9)
    src = tmp_path / "long.wav"
    with sf.SoundFile(src, "w", 48_000, 2, subtype="FLOAT") as f:
        block = (rng.standard_normal((48_000 * 30, 2)) * 0.05).astype(np.float32)
        for _ in range(8):  # 4 minutes
            f.write(block)
    ir = tmp_path / "ir.wav"
    sf.write(ir, (rng.standard_normal((48_000 * 4, 2)) * 0.01).astype(np.float32), 48_000,
             subtype="FLOAT")
    before = sorted(os.listdir(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "pwfilter", "convolve", str(src), str(ir),
                             "-o", str(tmp_path / "out.wav"), "--stream-above", "0"],
                            stderr=subprocess.PIPE, text=True)
    wait_until_writing(proc, tmp_path)  # the temporary output is open: mid-write
    time.sleep(0.05)
    # Stop it first, so it is surely still running (the whole job takes ~0.4 s), then
    # interrupt: the SIGINT is delivered when it continues.
    proc.send_signal(signal.SIGSTOP)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["pwfilter: interrupted"], err
    assert sorted(os.listdir(tmp_path)) == before
