"""Reliability: one regression test per defect a hostile-input review found, and the
guarantees under signals (nothing hangs, nothing is lost, nothing is left behind).

Each test makes its own files; results are checked against SciPy/NumPy or against
the inputs' own bytes, never against pwfilter alone.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import soundfile as sf

from conftest import (ROOT, assert_one_error_line, png_chunk, rand_u8, read_png, run,
                      snapshot, wait_until_writing, write_png)


def pwfilter_process(*args, env=None, **kwargs) -> subprocess.Popen:
    environ = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "pwfilter", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=environ, **kwargs)


#: Runs a command and reports its exit status, stderr, seconds and peak RSS. A small
#: process of its own starts it: a child's peak RSS counts the memory of the process it
#: was forked from (pytest's, hundreds of MB) until it executes the command.
_MEASURE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), err.decode("utf-8", "replace"),
                  time.perf_counter() - start, usage.ru_maxrss * 1024]))
"""


def run_measured(*args, timeout: float = 60) -> tuple[int, str, float, int]:
    """Exit status, stderr, seconds and peak RSS (bytes) of one pwfilter process."""
    import json

    out = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "pwfilter",
                          *map(str, args)], capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    code, err, seconds, rss = json.loads(out.stdout)
    return code, err, seconds, rss


# ------------------------------------------------------------------ 1. special files


@pytest.mark.parametrize("command", [
    ["blur", "{fifo}", "-o", "{out}"],
    ["blur", "{fifo}", "-o", "-"],
    ["convolve", "{fifo}", "box:3", "-o", "{out}"],
    ["remix", "{fifo}", "--matrix", "1 0; 0 1", "-o", "{out}"],
    ["dsconv", "{fifo}", "--depthwise", "box:3", "--pointwise", "1 0; 0 1", "-o", "{out}"],
    ["info", "{fifo}"],
    ["convolve", "{wav}", "{fifo}", "-o", "{out}"],
], ids=["blur", "blur-stdout", "convolve", "remix", "dsconv", "info", "fifo-as-kernel"])
def test_a_fifo_is_refused_without_opening_it(tmp_path, command):
    fifo = tmp_path / "f.wav"
    os.mkfifo(fifo)
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros((100, 2), np.float32), 8000)
    args = [a.format(fifo=fifo, out=tmp_path / "o.wav", wav=wav) for a in command]
    r = run(*args, timeout=20)  # opening the FIFO would block for ever
    assert r.code == 1
    assert_one_error_line(r.stderr, "f.wav")
    assert "not a regular file" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["f.wav", "in.wav"]


# ------------------------------------------------------------------ 2. truncated audio


@pytest.mark.parametrize("fmt,suffix", [("WAV", ".wav"), ("RF64", ".wav"), ("W64", ".w64"),
                                        ("AIFF", ".aiff"), ("AU", ".au"), ("WAVEX", ".wav")])
@pytest.mark.parametrize("command", ["info", "blur"])
def test_truncated_audio_in_every_container_is_refused(tmp_path, fmt, suffix, command):
    full = tmp_path / f"full{suffix}"
    sf.write(full, np.zeros((20_000, 2), np.float32), 48_000, format=fmt, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 3])
    full.unlink()
    before = snapshot(tmp_path)
    args = ["info", cut] if command == "info" else ["blur", cut, "-o", tmp_path / "o.wav"]
    r = run(*args)
    assert r.code == 1
    assert_one_error_line(r.stderr, "cut")
    assert "truncated" in r.stderr
    assert snapshot(tmp_path) == before


def test_rf64_whose_ds64_promises_a_terabyte(tmp_path):
    """The review's case: an RF64 header promising 2^40 data bytes, 200 frames present."""
    src = tmp_path / "in.wav"
    sf.write(src, np.zeros((200, 1), np.float32), 8000, format="RF64", subtype="PCM_16")
    data = bytearray(src.read_bytes())
    at = data.index(b"ds64") + 8
    struct.pack_into("<QQQ", data, at, 1 << 40, 1 << 40, (1 << 40) // 2)  # riff, data, frames
    src.write_bytes(bytes(data))
    for args in (["info", src], ["blur", src, "-o", tmp_path / "o.wav"]):
        r = run(*args)
        assert r.code == 1 and "truncated" in r.stderr, r.stderr
        assert_one_error_line(r.stderr, "in.wav")
    assert sorted(os.listdir(tmp_path)) == ["in.wav"]


# ------------------------------------------------------------------ 3. files the command reads


def test_no_output_replaces_a_kernel_matrix_or_impulse_response(tmp_path):
    png = write_png(tmp_path / "in.png", rand_u8((8, 9, 3), seed=3))
    wav = tmp_path / "in.wav"
    sf.write(wav, np.random.default_rng(1).standard_normal((800, 2)).astype(np.float32) * 0.1,
             8000)
    ir = tmp_path / "ir.wav"
    sf.write(ir, np.array([[1.0, 1.0], [0.5, 0.5]], np.float32), 8000)
    np.save(tmp_path / "k.npy", np.full((3, 3), 1 / 9, np.float32))
    np.save(tmp_path / "m.npy", np.full((1, 3), 1 / 3, np.float32))
    (tmp_path / "k.txt").write_text("1 2 1\n")
    before = snapshot(tmp_path)
    cases = [
        ["convolve", wav, ir, "-o", ir],
        ["convolve", png, tmp_path / "k.npy", "-o", tmp_path / "k.npy"],
        ["convolve", png, tmp_path / "k.txt", "-o", tmp_path / "k.txt"],
        ["remix", png, "--matrix", tmp_path / "m.npy", "-o", tmp_path / "m.npy"],
        ["dsconv", png, "--depthwise", tmp_path / "k.npy", "--pointwise", tmp_path / "m.npy",
         "-o", tmp_path / "m.npy"],
        ["chain", png, "-o", tmp_path / "k.npy", "--", "convolve", tmp_path / "k.npy"],
    ]
    for args in cases:
        r = run(*args, "--overwrite") if args[0] != "chain" else \
            run(*args[:4], "--overwrite", *args[4:])
        assert r.code == 1, (args, r.stderr)
        assert "refusing to write over a file this command reads" in r.stderr, r.stderr
        assert snapshot(tmp_path) == before, args


# ------------------------------------------------------------------ 4. kernel sizes


def test_the_kernel_command_has_a_memory_limit(tmp_path):
    for name, out, limit in (("box:20000", "b.npy", "1G"), ("gaussian:3000", "g.txt", "2G")):
        code, err, seconds, rss = run_measured("kernel", name, "-o", tmp_path / out,
                                               "--max-memory", limit)
        assert code == 1, err
        assert_one_error_line(err, name)
        assert "limit of" in err and "--max-memory" in err
        assert seconds < 10 and rss < 500 << 20  # refused before anything is built
    assert os.listdir(tmp_path) == []


def test_the_kernel_command_writes_what_it_may(tmp_path):
    r = run("kernel", "box:300", "-o", tmp_path / "b.npy", "--max-memory", "64M")
    assert r.code == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), np.full((300, 300), 1 / 300**2),
                               rtol=1e-14)


@pytest.mark.parametrize("kernel", ["gaussian:1e6", "box:100000"])
def test_huge_named_kernels_meet_the_memory_estimate(tmp_path, kernel):
    png = write_png(tmp_path / "in.png", rand_u8((24, 32, 3)))
    code, err, seconds, rss = run_measured("convolve", png, kernel, "-o", tmp_path / "o.png",
                                           "--max-memory", "4G")
    assert code == 1
    assert_one_error_line(err, "in.png")
    assert "limit of 4.0 GiB" in err and "out of memory" not in err
    assert rss < 1 << 30
    assert sorted(os.listdir(tmp_path)) == ["in.png"]


@pytest.mark.parametrize("kernel,reason", [
    ("gaussian:1e308", "a kernel may have"), ("box:1e20", "a kernel may have"),
    ("gaussian:1e9", "a kernel may have"),
    # 9. an empty value between commas is an error, not skipped
    ("1,,2", "empty value"), ("1, ,2", "empty value"), ("1 2,,3; 4 5 6", "empty value"),
])
def test_absurd_or_malformed_kernels_are_plain_errors(tmp_path, kernel, reason):
    png = write_png(tmp_path / "in.png", rand_u8((4, 5, 3)))
    r = run("convolve", png, kernel, "-o", tmp_path / "o.png")
    assert r.code == 1
    assert_one_error_line(r.stderr, "in.png")
    assert "internal error" not in r.stderr and reason in r.stderr
    assert os.listdir(tmp_path) == ["in.png"]


# ------------------------------------------------------------------ 5. forced methods


def reflect_reference(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """'same' convolution with the reflect (symmetric) boundary: np.pad + FFT, valid part."""
    from scipy import signal

    kh, kw = k.shape
    xp = np.pad(x, ((kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2), (0, 0)),
                mode="symmetric")
    return np.stack([signal.fftconvolve(xp[..., c], k, mode="valid")
                     for c in range(x.shape[2])], axis=-1)


@pytest.mark.parametrize("opencv", ["1", "0"])
def test_forced_direct_with_a_kernel_larger_than_the_image(tmp_path, opencv):
    """gaussian:40 (321x321 taps) on 24x32, by sliding sums: SciPy's n-D correlate would
    tabulate 10^10 offsets; pwfilter's fallback goes row by row."""
    from pwfilter.specs import gaussian_1d

    x = rand_u8((24, 32, 3), seed=8)
    png = write_png(tmp_path / "in.png", x)
    env = dict(os.environ, PWFILTER_OPENCV=opencv, PYTHONPATH=str(ROOT))
    out = tmp_path / "o.png"
    proc = subprocess.run([sys.executable, "-m", "pwfilter", "convolve", str(png), "gaussian:40",
                           "--method", "direct", "-o", str(out)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    g = gaussian_1d(40)
    ref = reflect_reference(x / 255.0, np.outer(g, g))
    assert np.abs(read_png(out) - np.clip(np.round(ref * 255), 0, 255)).max() <= 1


def test_a_forced_method_beyond_the_memory_limit_is_refused_before_it_runs(tmp_path):
    png = write_png(tmp_path / "in.png", rand_u8((600, 800, 3)))
    # Sliding sums extend the whole image by the kernel: (600+1000) x (800+1000) x 3 floats.
    code, err, seconds, _ = run_measured("convolve", png, "box:1001", "--method", "direct",
                                         "-o", tmp_path / "o.png", "--max-memory", "32M")
    assert code == 1
    assert_one_error_line(err, "in.png")
    assert "--method direct needs about 38.5 MiB" in err and "limit of 32.0 MiB" in err
    assert seconds < 10
    assert os.listdir(tmp_path) == ["in.png"]
    # auto picks a method that fits the limit (not the fastest, the FFT, which does not)
    r = run("convolve", png, "box:1001", "-o", tmp_path / "o.png", "--max-memory", "64M", "-v")
    assert r.code == 0, r.stderr
    assert "method separable" in r.stderr


# ------------------------------------------------------------------ 6. long names


def test_a_254_byte_output_name_is_written(tmp_path):
    png = write_png(tmp_path / "in.png", rand_u8((4, 5, 3), seed=4))
    out = tmp_path / ("x" * 250 + ".png")
    r = run("blur", png, "-o", out)
    assert r.code == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(["in.png", out.name])
    r = run("blur", png, "-o", out, "--sigma", "1", "--overwrite")
    assert r.code == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(["in.png", out.name])


# ------------------------------------------------------------------ 7. PNG


def small_png(extra: bytes = b"", width=10, height=10, idat: bytes | None = None) -> bytes:
    raw = b"".join(b"\x00" + bytes(range(3 * width)) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + extra + png_chunk(b"IDAT", zlib.compress(raw) if idat is None else idat)
            + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("extra", [
    png_chunk(b"iCCP", b"ab"),
    png_chunk(b"zTXt", b"key\x00\x00" + zlib.compress(b"hello" * 100)[:5]),
], ids=["iCCP-too-short", "zTXt-truncated"])
@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_libpng_warnings_do_not_reach_stderr(tmp_path, extra, quiet):
    src = tmp_path / "in.png"
    src.write_bytes(small_png(extra))
    r = run("blur", src, "-o", tmp_path / "o.png", *quiet)
    assert r.code == 0 and r.stderr == "", r.stderr
    assert read_png(tmp_path / "o.png").shape == (10, 10, 3)


@pytest.mark.parametrize("case", ["width-zero", "idat-beyond-deflate", "no-iend"])
def test_malformed_png_is_refused_before_decoding(tmp_path, case):
    src = tmp_path / "in.png"
    if case == "width-zero":
        data = small_png(width=0)
    elif case == "idat-beyond-deflate":
        raw = b"".join(b"\x00" + bytes(30) for _ in range(10))
        data = small_png(idat=zlib.compress(raw) + bytes(20_000_000))
    else:
        data = small_png()[:-12]
    src.write_bytes(data)
    for args in (["blur", src, "-o", tmp_path / "o.png"], ["info", src]):
        r = run(*args)
        assert r.code == 1
        assert_one_error_line(r.stderr, "in.png")
        assert "PNG" in r.stderr
    assert os.listdir(tmp_path) == ["in.png"]


# ------------------------------------------------------------------ 8. unhandled exceptions


@pytest.mark.parametrize("role", ["kernel", "matrix", "depthwise"])
def test_an_npz_archive_named_npy_is_an_error_per_file(tmp_path, role):
    a = write_png(tmp_path / "a.png", rand_u8((4, 5, 3), seed=1))
    b = write_png(tmp_path / "b.png", rand_u8((4, 5, 3), seed=2))
    np.savez(tmp_path / "k.npz", a=np.ones(3))
    os.rename(tmp_path / "k.npz", tmp_path / "k.npy")
    out = tmp_path / "out"
    head = {"kernel": ["convolve", a, b, tmp_path / "k.npy"],
            "matrix": ["remix", a, b, "--matrix", tmp_path / "k.npy"],
            "depthwise": ["dsconv", a, b, "--depthwise", tmp_path / "k.npy", "--pointwise",
                          "gray"]}[role]
    r = run(*head, "-o", f"{out}/")
    assert r.code == 1
    lines = r.stderr.splitlines()
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert len(lines) == 3, r.stderr  # one line per input (as they finish) and the summary
    assert all(".npz archive" in ln for ln in lines[:2])
    assert {os.path.basename(ln.split(": ")[2]) for ln in lines[:2]} == {"a.png", "b.png"}
    assert lines[2] == f"pwfilter: error: 2 of 2 files failed: {a}, {b}"
    assert not out.exists() or os.listdir(out) == []


def test_a_size_beyond_any_memory_is_a_usage_error(tmp_path):
    png = write_png(tmp_path / "in.png", rand_u8((4, 5, 3)))
    r = run("blur", png, "--max-memory", "1e400", "-o", tmp_path / "o.png")
    assert r.code == 2 and "Traceback" not in r.stderr
    assert "--max-memory" in r.stderr
    assert os.listdir(tmp_path) == ["in.png"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("command", [["blur", "{png}", "-o", "-"], ["kernel", "box:3", "-o", "-"]])
def test_standard_output_on_a_full_disk(tmp_path, command):
    png = write_png(tmp_path / "in.png", rand_u8((40, 50, 3)))
    args = [a.format(png=png) for a in command]
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "pwfilter", *map(str, args)], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwfilter: error: "), proc.stderr
    assert "standard output: cannot write (No space left on device)" in lines[0]


# ------------------------------------------------------------------ 9. messages


def test_a_newline_in_a_file_name_keeps_the_error_on_one_line(tmp_path):
    bad = tmp_path / "two\nlines.png"
    bad.write_bytes(b"not an image at all")
    r = run("blur", bad, "-o", tmp_path / "o.png")
    assert r.code == 1
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert "two\\nlines.png" in r.stderr


# ------------------------------------------------------------------ 10. info reads headers


def huge_png(path, width=15_000, height=15_000) -> None:
    """A 16-bit RGBA PNG of zeros (1.7 MB on disk, 1.8 GB decoded), compressed row by row."""
    c = zlib.compressobj(9)
    row = b"\x00" + bytes(width * 8)
    idat = b"".join(c.compress(row) for _ in range(height)) + c.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0))
                     + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def test_info_reads_headers_only_and_blur_is_refused_at_once(tmp_path):
    src = tmp_path / "huge.png"
    huge_png(src)
    code, err, seconds, rss = run_measured("info", "--json", src)
    assert code == 0, err
    assert seconds < 5 and rss < 300 << 20  # decoding would take 1.8 GB and seconds
    code, err, seconds, rss = run_measured("blur", src, "-o", tmp_path / "o.png",
                                           "--max-memory", "8G")
    assert code == 1
    assert_one_error_line(err, "huge.png")
    assert "limit of 8.0 GiB" in err
    assert seconds < 5 and rss < 300 << 20
    assert os.listdir(tmp_path) == ["huge.png"]


def test_info_from_headers_matches_the_decoded_image(tmp_path):
    """Header facts equal what decoding gives, for every image format and layout."""
    import imagecodecs
    from PIL import Image

    files = {
        "rgb16.png": lambda p: p.write_bytes(imagecodecs.png_encode(
            np.zeros((5, 6, 3), np.uint16))),
        "la.png": lambda p: Image.fromarray(np.zeros((5, 6, 2), np.uint8), "LA").save(p),
        "pal.png": lambda p: Image.fromarray(np.zeros((5, 6), np.uint8), "L").convert(
            "P").save(p, transparency=0),
        "gray.jpg": lambda p: Image.fromarray(np.zeros((5, 6), np.uint8)).save(p),
        "rgba16.tif": lambda p: p.write_bytes(imagecodecs.tiff_encode(
            np.zeros((5, 6, 4), np.uint16))),
        "rgb.bmp": lambda p: Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(p),
        "img.npy": lambda p: np.save(p, np.zeros((5, 6, 2), np.float32)),
        "sig.npy": lambda p: np.save(p, np.zeros((7,), np.float32)),
    }
    from pwfilter.media import describe, describe_file, load_media

    for name, make in files.items():
        make(tmp_path / name)
        header = describe_file(str(tmp_path / name))
        decoded = describe(load_media(str(tmp_path / name)))
        # A TIFF's header also tells its type, tiling and compression (decoding forgets them).
        assert {k: header[k] for k in decoded} == decoded, name
        assert set(header) - set(decoded) <= {"dtype", "tiling", "compression", "bigtiff"}


# ------------------------------------------------------------------ signals


def long_wav(path, minutes: int = 4) -> None:
    rng = np.random.default_rng(9)
    block = (rng.standard_normal((48_000 * 30, 2)) * 0.05).astype(np.float32)
    with sf.SoundFile(path, "w", 48_000, 2, subtype="FLOAT") as f:
        for _ in range(2 * minutes):
            f.write(block)


def test_sigkill_mid_write_of_a_stream_leaves_no_file(tmp_path):
    src = tmp_path / "long.wav"
    long_wav(src)
    ir = tmp_path / "ir.wav"
    sf.write(ir, np.random.default_rng(2).standard_normal((48_000, 2)).astype(np.float32)
             * 0.01, 48_000, subtype="FLOAT")
    out = tmp_path / "out"
    out.mkdir()
    proc = pwfilter_process("convolve", src, ir, "-o", out / "long.wav", "--stream-above", "0")
    wait_until_writing(proc, out)
    time.sleep(0.1)
    assert proc.poll() is None, "finished before it could be killed"
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert os.listdir(out) == []


def test_sigkill_mid_write_of_an_image_leaves_no_file_and_the_old_one_intact(tmp_path):
    src = write_png(tmp_path / "big.png", rand_u8((2000, 3000, 3), seed=5))
    out = tmp_path / "out"
    out.mkdir()
    (out / "big.png").write_bytes(b"the old result")
    # PNG level 9 on noise: the encoder writes for a second or more.
    proc = pwfilter_process("blur", src, "-o", out / "big.png", "--overwrite",
                            "--compression", "9")
    wait_until_writing(proc, out)
    assert proc.poll() is None, "finished before it could be killed"
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert os.listdir(out) == ["big.png"]
    assert (out / "big.png").read_bytes() == b"the old result"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("opencv", ["1", "0"])
def test_a_signal_during_one_long_computation_acts_within_a_second(tmp_path, sig, opencv):
    """One forced sliding-sum convolution of ~20 s (a single OpenCV or SciPy call per
    band): the signal is answered at once, exit 130, one line, nothing written."""
    src = write_png(tmp_path / "in.png", rand_u8((1500, 1500, 3), seed=6))
    out = tmp_path / "out"
    out.mkdir()
    proc = pwfilter_process("convolve", src, "box:101", "--method", "direct",
                            "-o", out / "o.png", env={"PWFILTER_OPENCV": opencv})
    time.sleep(1.5)  # imports and decoding done: computing
    assert proc.poll() is None
    start = time.perf_counter()
    proc.send_signal(sig)
    err = proc.communicate(timeout=30)[1]
    elapsed = time.perf_counter() - start
    assert proc.returncode == 130, err
    assert elapsed < 1.0, elapsed
    assert err.splitlines() == ["pwfilter: interrupted"]
    assert os.listdir(out) == []


def test_stale_named_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path):
    """Where unnamed temporaries are unavailable, a killed run's named temporary is
    removed by the next run into that folder (and a live process's is kept)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f".pwfilter-{int(dead.stdout)}-abcdefgh.tmp"
    stale.write_bytes(b"half a file")
    live = tmp_path / f".pwfilter-{os.getpid()}-abcdefgh.tmp"
    live.write_bytes(b"being written")
    src = write_png(tmp_path / "in.png", rand_u8((4, 5, 3)))
    r = run("blur", src, "-o", tmp_path / "o.png")
    assert r.code == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(["in.png", "o.png", live.name])


# ------------------------------------------------------------------ the fuzzer's findings


def test_tiff_output_with_a_compression_level(tmp_path):
    import imagecodecs

    x = rand_u8((20, 30, 3), seed=11)
    png = write_png(tmp_path / "in.png", x)
    r = run("remix", png, "--matrix", "1 0 0; 0 1 0; 0 0 1", "-o", tmp_path / "o.tif",
            "--compression", "6")
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(imagecodecs.tiff_decode((tmp_path / "o.tif").read_bytes()), x)


@pytest.mark.parametrize("option,value", [("--jobs", "2147483648"), ("--jobs", "1" + "0" * 20),
                                          ("--groups", "1" + "0" * 20),
                                          ("--shuffle", "1" + "0" * 20)])
def test_huge_counts_are_usage_errors(tmp_path, option, value):
    png = write_png(tmp_path / "in.png", rand_u8((4, 6, 2), seed=3))
    args = ["remix", png, "--matrix", "1 0; 0 1"] if option != "--jobs" else ["blur", png]
    r = run(*args, option, value, "-o", tmp_path / "o.png")
    assert r.code == 2, r.stderr
    assert "Traceback" not in r.stderr and option in r.stderr


def test_more_groups_than_channels_is_an_error(tmp_path):
    png = write_png(tmp_path / "in.png", rand_u8((4, 6, 3), seed=3))
    r = run("remix", png, "--matrix", "1 |", "--groups", "4", "-o", tmp_path / "o.png")
    assert r.code == 1
    assert_one_error_line(r.stderr, "--groups 4")


@pytest.mark.parametrize("text", ["gaussian:１", "gaussian:1_000", "box:٣", "1_0 2"])
def test_numbers_are_ascii_decimals(tmp_path, text):
    """Python's float() reads "1_000" and other scripts' digits; pwfilter does not."""
    r = run("kernel", text, "-o", tmp_path / "k.txt")
    if not text.startswith(("gaussian", "box")):
        png = write_png(tmp_path / "in.png", rand_u8((4, 6, 3)))
        r = run("convolve", png, text, "-o", tmp_path / "k.png")
    assert r.code == 1
    assert_one_error_line(r.stderr, "is not a number")
    assert not (tmp_path / "k.txt").exists() and not (tmp_path / "k.png").exists()


def test_audio_to_npy_is_computed_whole_rather_than_streamed(tmp_path):
    from scipy import signal as sps

    x = np.random.default_rng(5).uniform(-0.5, 0.5, (3000, 2))
    src = tmp_path / "in.flac"
    sf.write(src, x, 8000, subtype="PCM_16")
    decoded = sf.read(src)[0]
    r = run("convolve", src, "1 2 1", "-o", tmp_path / "o.npy", "--stream-above", "1KiB")
    assert r.code == 0, r.stderr
    ref = np.stack([sps.convolve(decoded[:, c], [1, 2, 1]) for c in range(2)], axis=-1)
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), ref, atol=1e-5)


def test_a_flac_header_promising_no_usable_length(tmp_path):
    import io as _io

    buf = _io.BytesIO()
    sf.write(buf, np.zeros((300, 2)), 8000, format="FLAC", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    data[24:28] = struct.pack(">I", 4096)  # STREAMINFO's sample count field, forged
    src = tmp_path / "in.flac"
    src.write_bytes(bytes(data))
    for args in (["blur", src, "-o", tmp_path / "o.wav"], ["info", src]):
        r = run(*args)
        assert r.code == 1
        assert_one_error_line(r.stderr, "in.flac")
        assert "internal error" not in r.stderr
    assert os.listdir(tmp_path) == ["in.flac"]


@pytest.mark.parametrize("rate,suffix", [(1_000_000, ".flac"), (139_072, ".flac"),
                                         (532_288, ".ogg"), (200_001, ".ogg")])
def test_rates_a_codec_cannot_encode_are_errors_not_crashes(tmp_path, rate, suffix):
    """libvorbis crashes the process above 200 kHz; libFLAC refuses some rates."""
    src = tmp_path / "in.wav"
    sf.write(src, np.zeros((300, 2), np.int16), rate, subtype="PCM_16")
    r = run("blur", src, "-o", tmp_path / f"o{suffix}")
    assert r.code == 1, r.stderr  # a crash would be -11
    assert_one_error_line(r.stderr, "in.wav")
    assert f"{rate:,} Hz" in r.stderr
    assert os.listdir(tmp_path) == ["in.wav"]


def test_the_highest_vorbis_rate_is_written(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, np.zeros((3000, 1), np.int16), 200_000, subtype="PCM_16")
    r = run("blur", src, "-o", tmp_path / "o.ogg")
    assert r.code == 0, r.stderr
    assert sf.info(tmp_path / "o.ogg").samplerate == 200_000


def test_library_warnings_stay_off_stderr(tmp_path):
    """Pillow's "Invalid APNG" (an acTL chunk claiming no frames) and NumPy's "created on
    Python 2" (a .npy header with 3L) were printed as extra lines."""
    from PIL import Image

    Image.fromarray(rand_u8((6, 7), seed=1)).convert("P").save(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    at = data.index(b"IDAT") - 4
    apng = data[:at] + png_chunk(b"acTL", struct.pack(">II", 0, 0)) + data[at:]
    (tmp_path / "a.png").write_bytes(apng)
    r = run("blur", tmp_path / "a.png", "-o", tmp_path / "o.png")
    assert r.stderr == "" or len(r.stderr.splitlines()) == 1, r.stderr
    assert "Warning" not in r.stderr
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 2L), }"
    header = header + " " * (118 - len(header)) + "\n"
    (tmp_path / "py2.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header))
                                       + header.encode() + bytes(24))
    r = run("info", tmp_path / "py2.npy")
    assert "Warning" not in r.stderr and len(r.stderr.splitlines()) <= 1, r.stderr


def test_a_short_signal_with_a_huge_kernel_by_sliding_sums(tmp_path):
    """300 samples and 800,001 taps (gaussian sigma 1e5): sliding sums cost outputs x taps,
    as the chooser predicts, not the whole extended signal per band (once 30 s)."""
    from scipy import signal as sps

    from pwfilter.specs import gaussian_1d

    x = np.random.default_rng(0).uniform(-0.5, 0.5, (300, 2))
    src = tmp_path / "in.wav"
    sf.write(src, x, 8000, subtype="PCM_16")
    r = run("blur", src, "--sigma", "1e5", "--method", "direct", "-o", tmp_path / "o.wav",
            timeout=20)
    assert r.code == 0, r.stderr
    decoded = sf.read(src)[0]
    k = gaussian_1d(1e5)
    ref = np.stack([sps.fftconvolve(decoded[:, c], k, mode="same") for c in range(2)], -1)
    assert np.abs(sf.read(tmp_path / "o.wav")[0] - ref).max() <= 1 / 32768


def test_a_png_header_with_a_wrong_checksum(tmp_path):
    data = bytearray(small_png())
    data[29] ^= 0xFF  # IHDR's CRC
    (tmp_path / "in.png").write_bytes(bytes(data))
    for args in (["info", tmp_path / "in.png"], ["blur", tmp_path / "in.png", "-o",
                                                 tmp_path / "o.png"]):
        r = run(*args)
        assert r.code == 1
        assert_one_error_line(r.stderr, "checksum")


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_caf_missing_its_last_byte(tmp_path, subtype):
    src = tmp_path / "in.caf"
    sf.write(src, np.zeros((1000, 2), np.float32), 8000, format="CAF", subtype=subtype)
    src.write_bytes(src.read_bytes()[:-1])
    r = run("info", src)
    assert r.code == 1
    assert_one_error_line(r.stderr, "truncated")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args", [["info", "{png}"], ["info", "--json", "{png}"],
                                  ["cost", "--cin", "3", "--cout", "4", "-k", "3"]])
def test_printing_to_a_full_disk_is_one_error_line(tmp_path, args):
    png = write_png(tmp_path / "in.png", rand_u8((4, 5, 3)))
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "pwfilter",
                               *[a.format(png=png) for a in args]], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "pwfilter: error: standard output: cannot write (No space left on device)"]


def test_opencv_running_out_of_memory_is_reported_as_such(tmp_path):
    """Under an address-space limit OpenCV raises its own error, not MemoryError."""
    import resource

    np.save(tmp_path / "img.npy", np.random.default_rng(0).random((8, 9, 3), dtype=np.float32))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    proc = subprocess.run([sys.executable, "-m", "pwfilter", "blur", str(tmp_path / "img.npy"),
                           "-o", "-", "--sigma", "1e3", "--mode", "full", "--boundary",
                           "mirror", "--normalize"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=limit,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert_one_error_line(proc.stderr, "img.npy")
    assert "internal error" not in proc.stderr


@pytest.mark.parametrize("spec", ["lowpass:1000:" + "1" * 400, "bandpass:100:200:" + "9" * 30])
def test_a_tap_count_of_hundreds_of_digits(tmp_path, spec):
    """Found by the fuzzer: int(float(text)) overflowed on such a count."""
    src = tmp_path / "in.wav"
    sf.write(src, np.zeros((100, 1), np.float32), 48_000)
    r = run("convolve", src, spec, "-o", tmp_path / "o.wav")
    assert r.code == 1
    assert_one_error_line(r.stderr, "in.wav")
    assert "internal error" not in r.stderr
