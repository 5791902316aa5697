"""Shared helpers for the media, output and error tests.

Every test makes its own small files in ``tmp_path`` and checks pwfilter's
results against independent readers (imagecodecs, Pillow, soundfile, NumPy)
or against hand-computed values, never against pwfilter alone.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from pwfilter.cli import cli, main

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ running pwfilter


@dataclass
class Run:
    """Outcome of one ``python -m pwfilter`` process."""

    code: int
    stdout: bytes
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()


def run(*args, cwd=None, stdin: bytes | None = None, timeout: float = 60) -> Run:
    """Run ``python -m pwfilter ARGS`` in a real subprocess (exit codes, files, streams)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "pwfilter", *map(str, args)], cwd=cwd,
                          input=stdin if stdin is not None else b"", capture_output=True,
                          timeout=timeout, env=env)
    return Run(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def invoke(*args, catch_exceptions: bool = True):
    """Call ``pwfilter.cli.cli`` through Click's runner; ``result.return_value`` is the status."""
    runner = CliRunner()
    return runner.invoke(cli, [str(a) for a in args], standalone_mode=False,
                         catch_exceptions=catch_exceptions)


def run_main(capsys, *args) -> tuple[int, str, str]:
    """Call the real entry point ``pwfilter.cli.main`` in this process (monkeypatches apply)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), captured.out, captured.err


def assert_one_error_line(stderr: str, name: str) -> None:
    """Exactly one ``pwfilter: error:`` line on stderr, naming ``name``, no traceback."""
    lines = stderr.splitlines()
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pwfilter: error: "), stderr
    assert name in lines[0], stderr


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden temporaries included) with its bytes."""
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            p = Path(dirpath, f)
            out[str(p.relative_to(folder))] = p.read_bytes() if not p.is_symlink() else b"->"
    return out


# ------------------------------------------------------------------ making test data


def rand_u8(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def rand_u16(shape, seed=0) -> np.ndarray:
    """Random 16-bit values with both extremes present."""
    a = np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)
    flat = a.reshape(-1)
    flat[0], flat[-1] = 0, 65535
    return a


def write_png(path: Path, arr: np.ndarray) -> Path:
    Path(path).write_bytes(imagecodecs.png_encode(arr))
    return Path(path)


def read_png(path: Path) -> np.ndarray:
    return imagecodecs.png_decode(Path(path).read_bytes())


def rand_pcm(n: int, channels: int, bits: int, seed=0) -> np.ndarray:
    """Integer PCM values of ``bits`` bits, extremes included, as int16/int32 as libsndfile
    returns them (24-bit values in the top bits of int32)."""
    rng = np.random.default_rng(seed)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    v = rng.integers(lo, hi + 1, (n, channels), dtype=np.int64)
    v[0, 0], v[-1, -1] = lo, hi
    if bits == 16:
        return v.astype(np.int16)
    return (v << (32 - bits)).astype(np.int32)


def write_audio(path: Path, data: np.ndarray, rate: int, subtype: str, fmt: str = "WAV") -> Path:
    sf.write(str(path), data, rate, format=fmt, subtype=subtype)
    return Path(path)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def bomb_png(path: Path, width=100_000, height=100_000) -> Path:
    """A tiny PNG whose IHDR (valid CRC) claims ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + png_chunk(b"IEND", b""))
    Path(path).write_bytes(body)
    return Path(path)


def identity_matrix(n: int) -> str:
    return "; ".join(" ".join("1" if i == j else "0" for j in range(n)) for i in range(n))


@pytest.fixture
def rgb_png(tmp_path) -> tuple[Path, np.ndarray]:
    arr = rand_u8((12, 16, 3), seed=11)
    return write_png(tmp_path / "photo.png", arr), arr


@pytest.fixture
def wav16(tmp_path) -> tuple[Path, np.ndarray]:
    data = rand_pcm(400, 2, 16, seed=12)
    return write_audio(tmp_path / "voice.wav", data, 22050, "PCM_16"), data


def writing_into(pid: int, folder) -> bool:
    """Whether process ``pid`` has a file open for its output in ``folder``: an unnamed
    temporary (``O_TMPFILE``, shown as ``folder/#inode (deleted)``) or a named one."""
    folder = os.path.realpath(folder)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if os.path.dirname(target) == folder and (target.endswith("(deleted)")
                                                  or "/.pwfilter-" in target):
            return True
    return False


def wait_until_writing(proc, folder, timeout: float = 30) -> None:
    """Wait until ``proc`` writes its output into ``folder`` (mid-write), or fail."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (status {proc.returncode}) before "
                                 "it was caught writing")
        if writing_into(proc.pid, folder):
            return
        time.sleep(0.01)
    raise AssertionError("the process never started writing its output")
