#!/usr/bin/env python
"""Fuzz pwfilter in-process for a given time and report each distinct finding.

Three targets, chosen at random for every execution (a plain seeded random
loop: it runs several times more executions per second than Hypothesis's
engine here, where each execution is a whole command):

1. media loaders: valid PNG (8-bit RGB, RGBA, 16-bit gray, palette), JPEG,
   TIFF, BMP, WebP, WAV (PCM 16, float), RF64, W64, CAF, FLAC, AIFF and NPY
   files made in a temporary folder, mutated (bit flips, interesting integers
   over header fields, insertions, deletions, duplicated ranges, truncations,
   splices, PNG chunks with their CRCs recomputed, .npy headers rewritten),
   through ``pwfilter.cli.main(["blur", path, "-o", out])`` and
   ``main(["info", path])``;
2. the kernel and matrix parsers of ``pwfilter/specs.py`` (``parse_rows``,
   ``named_kernel``, ``load_kernel``, ``load_matrix``, ``parse_bias``) with
   random text made of numbers, names, separators and odd characters;
3. the command line with random option combinations (every command, plausible
   and hostile values, outputs into a folder, onto the input, to stdout).

The property: the only outcomes allowed are success, or SystemExit with
status 1 or 2 — for 1 exactly one ``pwfilter: error:`` line on stderr, for 2
Click's usage message; never ``internal error``, never a traceback, never an
exception out of ``main``, never a hang, nothing on stdout after a failure,
no leftover (temporary or partial) file in the output folder, the inputs
byte-identical. The parsers may only return a finite, non-empty array or
raise ``PwfilterError``.

    python fuzz/fuzz_pwfilter.py --minutes 10 --save /tmp/fuzz-findings
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

EXEC_TIMEOUT = 30.0  # seconds for one execution (tiny inputs: a correct run takes < 1 s)
ADDRESS_SPACE = 6 << 30  # RLIMIT_AS of the fuzzing process: huge allocations fail fast


HUNG = 3  # a worker's exit status after a hang


class FuzzTimeout(BaseException):
    """Raised by SIGALRM in the main thread (not an Exception: pwfilter must not catch it)."""


def _alarm(signum, frame):
    raise FuzzTimeout


# ============================================================================ seeds


def _png(arr) -> bytes:
    import imagecodecs

    return imagecodecs.png_encode(arr)


def _pil(arr, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(arr)
    if kw.pop("palette", False):
        img = img.convert("P")
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _audio(fmt: str, subtype: str, frames=300, channels=2, rate=8000) -> bytes:
    import soundfile as sf

    data = np.random.default_rng(5).uniform(-0.9, 0.9, (frames, channels))
    buf = io.BytesIO()
    sf.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _tiled_tiff(arr) -> bytes:
    """A tiled, deflated TIFF (16x16 tiles): the chunked path's region reader."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, tile=(16, 16), compression="zlib", photometric="rgb")
    return buf.getvalue()


def make_seeds() -> dict[str, tuple[str, bytes]]:
    """name -> (suffix, bytes) of small valid files."""
    import imagecodecs

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    gray16 = rng.integers(0, 65536, (10, 13), dtype=np.uint16)
    return {
        "png-rgb8": (".png", _png(rgb)),
        "png-rgba8": (".png", _png(rgba)),
        "png-gray16": (".png", _png(gray16)),
        "png-palette": (".png", _pil(rgb, "PNG", palette=True)),
        "jpeg": (".jpg", _pil(rgb, "JPEG", quality=85)),
        "jpeg-progressive": (".jpg", _pil(rgb, "JPEG", quality=70, progressive=True)),
        "tiff": (".tif", imagecodecs.tiff_encode(rgb)),
        "tiff-pil-deflate": (".tif", _pil(rgb, "TIFF", compression="tiff_adobe_deflate")),
        "tiff-tiled-deflate": (".tif", _tiled_tiff(rng.integers(0, 256, (40, 36, 3),
                                                                dtype=np.uint8))),
        "bmp": (".bmp", _pil(rgb, "BMP")),
        "webp": (".webp", _pil(rgb, "WEBP", quality=80)),
        "wav-pcm16": (".wav", _audio("WAV", "PCM_16")),
        "wav-float": (".wav", _audio("WAV", "FLOAT", channels=1)),
        "rf64": (".wav", _audio("RF64", "PCM_24")),
        "w64": (".w64", _audio("W64", "PCM_16")),
        "caf": (".caf", _audio("CAF", "PCM_16")),
        "flac": (".flac", _audio("FLAC", "PCM_16")),
        "aiff": (".aiff", _audio("AIFF", "PCM_16", channels=3)),
        "npy-image": (".npy", _npy(rng.random((8, 9, 3), dtype=np.float32))),
        "npy-signal": (".npy", _npy(rng.uniform(-1, 1, (200, 2)))),
        "npy-1d": (".npy", _npy(rng.uniform(-1, 1, 150).astype(np.float32))),
        "npy-u8": (".npy", _npy(rgb)),
    }


# ============================================================================ mutations

INTERESTING_INTS = [0, 1, 2, 3, 7, 8, 15, 16, 24, 32, 64, 127, 128, 255, 256, 1000, 4095, 4096,
                    32767, 32768, 65535, 65536, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def _crc_fixed_png(b: bytes) -> bytes:
    """Recompute every chunk's CRC (as far as the lengths hold), so that mutations get past
    libpng's CRC check into the decoder."""
    if not b.startswith(b"\x89PNG\r\n\x1a\n"):
        return b
    out = bytearray(b[:8])
    i = 8
    while i + 8 <= len(b):
        n = struct.unpack(">I", b[i:i + 4])[0]
        end = i + 8 + n
        if end + 4 > len(b):
            out += b[i:]
            return bytes(out)
        out += b[i:end] + struct.pack(">I", zlib.crc32(b[i + 4:end]) & 0xFFFFFFFF)
        i = end + 4
    out += b[i:]
    return bytes(out)


def _png_chunk_edit(rnd: random.Random, b: bytes) -> tuple[bytes, str]:
    """Rewrite IHDR fields or inject a chunk (iCCP, tRNS, PLTE, a second IHDR, a huge
    IDAT of zeros), with valid CRCs."""
    if not b.startswith(b"\x89PNG\r\n\x1a\n") or len(b) < 33:
        return b, "png-edit(skip)"

    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    what = rnd.choice(["ihdr", "inject", "bigidat"])
    if what == "ihdr":
        w, h, depth, color, comp, filt, inter = struct.unpack(">IIBBBBB", b[16:29])
        field_ = rnd.randrange(7)
        vals = [w, h, depth, color, comp, filt, inter]
        vals[field_] = rnd.choice(INTERESTING_INTS) if field_ < 2 else rnd.choice(
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 255])
        ihdr = struct.pack(">IIBBBBB", *vals)
        return b[:8] + chunk(b"IHDR", ihdr) + b[33:], f"ihdr[{field_}]={vals[field_]}"
    if what == "inject":
        kind = rnd.choice([b"iCCP", b"tRNS", b"PLTE", b"IHDR", b"sBIT", b"gAMA", b"IEND",
                           b"zTXt", b"eXIf", b"acTL", b"fcTL"])
        payload = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 3, 6, 13, 40])))
        return b[:33] + chunk(kind, payload) + b[33:], f"inject {kind.decode()}({len(payload)})"
    z = zlib.compressobj(6)
    body = z.compress(b"\x00" * (1 << rnd.choice([16, 20, 23]))) + z.flush()
    i = b.find(b"IDAT")
    if i < 4:
        return b, "png-edit(skip)"
    return b[:i - 4] + chunk(b"IDAT", body) + b[i - 4:], f"extra IDAT({len(body)})"


def _npy_header_edit(rnd: random.Random, b: bytes) -> tuple[bytes, str]:
    if not b.startswith(b"\x93NUMPY") or len(b) < 12:
        return b, "npy-edit(skip)"
    descr = rnd.choice(["<f4", "<f8", ">f4", "<f2", "|u1", "<i8", "<c8", "|O", "|b1", "<U3",
                        "<M8[s]", "|V4", "<f16", "f4", "xyz", "<f4'"])
    shape = rnd.choice(["()", "(0,)", "(3,)", "(0, 3)", "(100000, 100000, 3)", "(-1, 3)",
                        "(2, 2, 2, 2)", "(1, 1, 1)", "(3, 3)", "(2**40,)", "(1,) * 5",
                        "(8, 9, 3)", "(200, 2)", "(9999999999, 2)", "('a',)", "(1.5, 2)"])
    fortran = rnd.choice(["False", "True", "'yes'", "0", "None"])
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    header = header + " " * ((-(len(header) + 11)) % 64) + "\n"
    hlen = struct.unpack("<H", b[8:10])[0] if b[6] == 1 else struct.unpack("<I", b[8:12])[0]
    start = (10 if b[6] == 1 else 12) + hlen
    data = b[start:]
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data,
            f"npy header {descr} {fortran} {shape}")


def mutate(rnd: random.Random, blob: bytes, seeds: dict) -> tuple[bytes, list[str]]:
    b = bytearray(blob)
    ops = []
    for _ in range(rnd.choice([1, 1, 1, 2, 2, 3, 4])):
        if not b:
            b = bytearray(b"\x00")
        n = len(b)
        # header fields matter most: most positions fall in the first 128 bytes
        pos = rnd.randrange(min(n, 128)) if rnd.random() < 0.6 else rnd.randrange(n)
        op = rnd.choice(["flip", "flip", "byte", "int", "int", "insert", "delete", "dup",
                         "truncate", "splice", "png", "npy", "crcfix"])
        if op == "flip":
            b[pos] ^= 1 << rnd.randrange(8)
            ops.append(f"flip@{pos}")
        elif op == "byte":
            b[pos] = rnd.choice([0, 0xFF, 0x7F, 0x80, 0x01, 0x20])
            ops.append(f"byte@{pos}={b[pos]}")
        elif op == "int":
            v = rnd.choice(INTERESTING_INTS + [n, n - 1, n + 1, n * 2])
            width = rnd.choice([2, 4])
            endian = rnd.choice("<>")
            v &= (1 << (8 * width)) - 1
            b[pos:pos + width] = struct.pack(endian + ("H" if width == 2 else "I"), v)
            ops.append(f"int{width}{endian}@{pos}={v}")
        elif op == "insert":
            k = rnd.choice([1, 2, 4, 16, 64, 1024])
            b[pos:pos] = bytes(rnd.randrange(256) for _ in range(k))
            ops.append(f"insert{k}@{pos}")
        elif op == "delete":
            k = rnd.choice([1, 2, 4, 16, 64])
            del b[pos:pos + k]
            ops.append(f"delete{k}@{pos}")
        elif op == "dup":
            k = rnd.choice([4, 16, 64, 256])
            b[pos:pos] = b[pos:pos + k] * rnd.choice([1, 2, 8])
            ops.append(f"dup{k}@{pos}")
        elif op == "truncate":
            cut = rnd.randrange(n)
            del b[cut:]
            ops.append(f"truncate@{cut}")
        elif op == "splice":
            other = rnd.choice(list(seeds.values()))[1]
            cut = rnd.randrange(n)
            b = b[:cut] + other[rnd.randrange(len(other)):]
            ops.append(f"splice@{cut}")
        elif op == "png":
            nb, what = _png_chunk_edit(rnd, bytes(b))
            b = bytearray(nb)
            ops.append(what)
        elif op == "npy":
            nb, what = _npy_header_edit(rnd, bytes(b))
            b = bytearray(nb)
            ops.append(what)
        else:
            b = bytearray(_crc_fixed_png(bytes(b)))
            ops.append("crcfix")
    return bytes(b), ops


# ============================================================================ random text

NUMBERS = ["0", "1", "-1", "2", "3", "0.5", "-0.25", "1e-3", "10", "255", "1000", "65535",
           "1e308", "-1e308", "1e400", "-1e400", "1e-400", "nan", "-nan", "NaN", "inf", "-inf",
           "Infinity", "1e30", "1e31", "3.", "-.5", ".", "+2", "0x10", "1_000", "1e20",
           "2147483648", "4294967297", "-0", "9" * 400, "1e5", "31", "4000", "7999", "8000",
           "\u0661", "\u0663.5", "\uff11", "1e", "e1", "--1", "1-", "1.2.3"]
NAMES = ["gaussian", "box", "identity", "sharpen", "laplacian", "sobel-x", "sobel-y", "emboss",
         "lowpass", "highpass", "bandpass", "gray", "sepia", "bgr", "invert", "mono", "stereo",
         "swap", "mid-side", "side-mid", "GAUSSIAN", "Box", " gray ", "identity "]
SEPS = [" ", " ", ",", ", ", ";", "; ", "|", "\n", "\t", ":", "#", ",,", ";;", "||", "  ", "\r",
        "\x00", "\u00a0", "\u2003", "\r\n", " | ", ": "]
ODD = ["x", "-", "--", "e", ".", "/", "k.npy", "a.txt", "\u00e9", "(", ")", "[", "]", "'", '"',
       "\\", "\U0001f600", "\ufeff", "\u200b", "*", "%", "$HOME", "~"]


def random_spec(rnd: random.Random) -> str:
    kind = rnd.random()
    if kind < 0.3:  # name[:args]
        name = rnd.choice(NAMES)
        args = [rnd.choice(NUMBERS + ["", "x"]) for _ in range(rnd.choice([0, 1, 1, 2, 3]))]
        return ":".join([name, *args])
    parts = []
    for _ in range(rnd.randint(1, 14)):
        r = rnd.random()
        parts.append(rnd.choice(NUMBERS) if r < 0.7 else rnd.choice(NAMES) if r < 0.8
                     else rnd.choice(ODD))
        parts.append(rnd.choice(SEPS))
    if rnd.random() < 0.5:
        parts.pop()
    return "".join(parts)


# option values: (mostly) plausible ones, and hostile ones
FLOATS = (["1", "0.5", "2", "1.5", "0.3", "-1", "0"],
          ["1e3", "1e5", "nan", "inf", "-inf", "1e400", "-0", "abc", "", "3e38", "1e-320",
           "0x1p3", "1_0"])
INTS = (["1", "2", "3", "4", "7"],
        ["0", "-1", "100", "65536", "1e3", "x", "2147483648", "99999999999999999999", ""])
SIZES = (["512M", "8G", "1G", "64M", "0"],
         ["1", "1K", "-5", "1e400", "nanG", "abc", "1T", "1e20", "0.5", "", "inf", "1KiB",
          "2GB", "12 M", "9" * 30])
FORMATS = (["png", "tif", "wav", "flac", "npy", "jpg"],
           ["bmp", "webp", "aiff", "ogg", "w64", "caf", "txt", "xyz", "", ".png", "PNG"])


def _pick(rnd, table, p: float = 0.2) -> list[str]:
    """A random subset of an option table: (flag,) or (flag, (good values, bad values))."""
    out = []
    for entry in table:
        if rnd.random() < p:
            if len(entry) == 1:
                out.append(entry[0])
            else:
                good, bad = entry[1]
                out += [entry[0], rnd.choice(good if rnd.random() < 0.75 else bad)]
    return out


def _choices(good, bad=()):
    return (list(good), list(bad) or list(good))


COMMON = [("--overwrite",), ("--json",), ("-q",), ("-v",), ("--jobs", INTS),
          ("--quality", _choices(["50", "92", "1", "100"], INTS[1])),
          ("--compression", _choices(["0", "6", "9"], INTS[1])),
          ("--max-pixels", _choices(["100000", "1000000", "50"], INTS[1])),
          ("--max-memory", SIZES), ("--stream-above", SIZES), ("--format", FORMATS)]
FILTER = [("--method", _choices(["auto", "direct", "fft", "oa", "separable"], ["x", ""])),
          ("--mode", _choices(["same", "full", "valid"], ["x"])),
          ("--boundary", _choices(["reflect", "mirror", "nearest", "wrap", "zero"], ["x"])),
          ("--scale", FLOATS), ("--bias", FLOATS), ("--dry", FLOATS), ("--wet", FLOATS),
          ("--normalize",)]
BLUR = [("--sigma", _choices(["0.3", "1", "2", "4", "30"], FLOATS[1] + ["0", "-1"])),
        ("--kind", _choices(["gaussian", "box"], ["median"])),
        ("--radius", _choices(["0", "1", "5", "40"], INTS[1]))]
KOPTS = [("--correlate",), ("--normalize-kernel", _choices(["sum", "l1", "energy", "peak"],
                                                           ["x"])),
         ("--resample-ir",)]
GROUPS = [("--groups", _choices(["1", "2", "3"], INTS[1])),
          ("--shuffle", _choices(["1", "2", "3"], INTS[1]))]
RATES = _choices(["8000", "44100", "48000"], INTS[1])
MATRICES = ["gray", "sepia", "bgr", "invert", "mono", "stereo", "swap", "mid-side", "side-mid",
            "1", "0.5 0.5", "1 0 0; 0 1 0; 0 0 1", "1 0 0 | 0 1 0", "0.5 0.5; 0.5 -0.5 |"]
KERNELS = ["gaussian:1", "box:3", "identity", "sharpen", "laplacian", "sobel-x", "emboss",
           "1 2 1", "1 2 1; 2 4 2; 1 2 1", "lowpass:1000", "highpass:500:31",
           "bandpass:300:2000", "gaussian:0.3", "box:1", "1"]


def _kernel(rnd) -> str:
    return rnd.choice(KERNELS) if rnd.random() < 0.7 else random_spec(rnd)


def _matrix(rnd) -> str:
    return rnd.choice(MATRICES) if rnd.random() < 0.7 else random_spec(rnd)


def stage(rnd) -> list[str]:
    name = rnd.choice(["blur", "convolve", "remix", "dsconv"])
    if name == "blur":
        return ["blur", *_pick(rnd, BLUR + FILTER)]
    if name == "convolve":
        return ["convolve", *_pick(rnd, KOPTS + FILTER), _kernel(rnd)]
    if name == "remix":
        return ["remix", "--matrix", _matrix(rnd), *_pick(rnd, GROUPS)]
    return ["dsconv", "--depthwise", _kernel(rnd), "--pointwise", _matrix(rnd),
            *_pick(rnd, GROUPS + KOPTS + FILTER)]


# ============================================================================ running


@dataclass
class Result:
    code: int | None = None
    out: bytes = b""
    err: str = ""
    exc: str = ""        # an exception out of main (not SystemExit)
    hung: bool = False


def call_main(argv: list[str], timeout: float = EXEC_TIMEOUT) -> Result:
    """``pwfilter.cli.main(argv)`` with Python's stdout/stderr captured (a real process
    keeps native libraries' stderr off by itself; here descriptor 2 is /dev/null)."""
    from pwfilter.cli import main

    res = Result()
    out_buf, err_buf = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_buf, encoding="utf-8", errors="replace", write_through=True)
    err = io.TextIOWrapper(err_buf, encoding="utf-8", errors="replace", write_through=True)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        main(list(argv))
        res.code = 0
    except SystemExit as exc:
        c = exc.code
        res.code = 0 if c is None else c if isinstance(c, int) else 1
    except FuzzTimeout:
        res.hung = True
    except BaseException as exc:  # noqa: BLE001 - a finding
        res.exc = f"{type(exc).__name__}: {exc}"
        res.exc_tb = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout, sys.stderr = saved
        try:
            out.flush()
            err.flush()
        except ValueError:
            pass
    res.out = out_buf.getvalue()
    res.err = err_buf.getvalue().decode("utf-8", "replace")
    return res


def check(res: Result, leftovers: list[str], changed: list[str], argv: list[str]) -> list[str]:
    """The violated properties, each as a short signature."""
    bad = []
    if res.hung:
        return [f"hang (> {EXEC_TIMEOUT:g} s)"]
    if res.exc:
        return [f"exception out of main: {res.exc}"]
    err = res.err
    lines = err.splitlines()
    verbose = "-v" in argv or "--verbose" in argv
    # what a command may print on stderr besides errors: notes ("pwfilter: ..."), the --json
    # objects when the result goes to stdout, and kernel's description (and the line naming
    # its plot) with -o -
    def kernel_line(ln: str) -> bool:
        return argv[:1] == ["kernel"] and (ln.startswith("-: ") or re.search(
            r": the response of .* drawn \([A-Z]+\)$", ln) is not None)

    notes = [ln for ln in lines if not (ln.startswith("pwfilter: ") or ln.startswith("{")
                                        or kernel_line(ln))]
    if res.code not in (0, 1, 2):
        bad.append(f"exit status {res.code}")
    if "Traceback" in err:
        bad.append("traceback on stderr")
    internal = [ln for ln in lines if "error: internal error" in ln]
    if internal:
        bad.append(internal[0][internal[0].index("internal error"):])
    errors = [ln for ln in lines if ln.startswith("pwfilter: error: ")]
    if res.code == 1:
        one = len(errors) == 1 and (len(lines) == 1 or (verbose and not notes
                                                       and lines[-1] == errors[0]))
        if not one:
            bad.append(f"exit 1 without exactly one error line ({len(lines)} lines)")
    elif res.code == 2:
        if "Error:" not in err or errors:
            bad.append("exit 2 without Click's usage message")
    elif res.code == 0:
        if notes:
            bad.append(f"stray stderr on success: {notes[0][:80]}")
        if errors:
            bad.append("error line with exit status 0")
    if res.code not in (0, None) and res.out:
        bad.append("stdout written by a failed command")
    if leftovers:
        bad.append(f"leftover file in the output folder after exit {res.code}")
    if changed:
        bad.append("input modified")
    return bad


def normalize(text: str, root: str) -> str:
    """A finding's signature: paths, numbers and quoted values abstracted."""
    text = text.replace(root, "<dir>")
    text = re.sub(r"<dir>/\S+", "<file>", text)
    text = re.sub(r"\b[\w.-]+\.(png|jpe?g|tiff?|bmp|webp|wav|w64|caf|flac|aiff?|npy|ogg|txt|"
                  r"csv|xyz)\b", "<file>", text, flags=re.I)
    text = re.sub(r"'[^']{0,80}'", "'…'", text)
    text = re.sub(r"\d[\d,._]*", "N", text)
    return text[:160]


# ============================================================================ the fuzzer


class Fuzzer:
    """One worker process: fuzzes in-process until its time is up. Everything the
    supervisor needs survives a crash of this process: each new finding is appended to
    ``findings.jsonl``, the counts go to ``counts.json`` every few seconds, and the
    execution under way is described in ``current.json`` (its input stays in ``in/``)."""

    def __init__(self, seed: int, root: str):
        self.rnd = random.Random(seed)
        self.root = root
        self.inputs = os.path.join(self.root, "in")
        self.outdir = os.path.join(self.root, "out")
        self.cwd = os.path.join(self.root, "cwd")
        for d in (self.inputs, self.outdir, self.cwd):
            os.makedirs(d, exist_ok=True)
        os.chdir(self.cwd)
        self.seeds = make_seeds()
        self.hits: dict[str, int] = {}
        self.execs = {"media": 0, "specs": 0, "cli": 0}
        self._counts_written = 0.0

    # -------------------------------------------------------------- bookkeeping

    def _snapshot(self, folder) -> dict[str, str]:
        out = {}
        for dirpath, dirs, files in os.walk(folder):
            for name in dirs + files:
                p = os.path.join(dirpath, name)
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "rb") as fh:
                        out[os.path.relpath(p, folder)] = hashlib.sha1(fh.read()).hexdigest()
                else:
                    out[os.path.relpath(p, folder)] = "dir" if os.path.isdir(p) else "other"
        return out

    def _clear(self, folder) -> None:
        for name in os.listdir(folder):
            p = os.path.join(folder, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)

    def _current(self, target: str, argv: list[str], description: str,
                 files: dict[str, bytes] | None = None) -> None:
        """What runs now: read by the supervisor if this process dies."""
        state = {"target": target, "argv": argv, "description": description,
                 "files": _encode(files or {})}
        with open(os.path.join(self.root, "current.json"), "w") as fh:
            json.dump(state, fh)

    def write_counts(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._counts_written > 2:
            self._counts_written = now
            tmp = os.path.join(self.root, "counts.tmp")
            with open(tmp, "w") as fh:
                json.dump({"execs": self.execs, "hits": self.hits}, fh)
            os.replace(tmp, os.path.join(self.root, "counts.json"))

    def run(self, target: str, argv: list[str], description: str,
            allowed: set[str] = frozenset(), files: dict[str, bytes] | None = None) -> None:
        """Run one command; ``allowed``: the output names a success may leave in out/."""
        self._current(target, argv, description)
        before_in = self._snapshot(self.inputs)
        res = call_main(argv)
        self.execs[target] += 1
        if res.hung:
            # The command's thread still runs and cannot be stopped: this worker ends here
            # (the supervisor records the hang from current.json and starts another).
            self.write_counts(force=True)
            REPORT.flush()
            os._exit(HUNG)
        after_in = self._snapshot(self.inputs)
        produced = set(self._snapshot(self.outdir)) | {
            "cwd/" + n for n in self._snapshot(self.cwd)}
        if res.code == 0:
            # a success leaves its one output: the name asked for, or (-o DIR/) the input's
            # stem with the output format's suffix
            leftovers = sorted(n for n in produced if n not in allowed
                               and not ("in.*" in allowed and n.split(".")[0] == "in"))
        else:
            leftovers = sorted(produced)
        changed = sorted(k for k in set(before_in) | set(after_in)
                         if before_in.get(k) != after_in.get(k))
        for signature in check(res, leftovers, changed, argv):
            self._record(target, argv, description, res, signature, files)
        self._clear(self.outdir)
        self._clear(self.cwd)
        self.write_counts()

    def _record(self, target, argv, description, res, signature, files) -> None:
        command = argv[0] if argv else "?"
        key = f"{command}: {normalize(signature, self.root)}"
        if key in self.hits:
            self.hits[key] += 1
            return
        self.hits[key] = 1
        if files is None:
            files = {}
            for a in argv:
                if a.startswith(self.inputs) and os.path.isfile(a):
                    with open(a, "rb") as fh:
                        files[os.path.basename(a)] = fh.read()
        stderr = res.err if not res.exc else getattr(res, "exc_tb", res.exc)
        finding = {"signature": key, "target": target, "command": command,
                   "description": description, "stderr": stderr.strip(),
                   "argv": _relative(argv, self.root), "files": _encode(files)}
        with open(os.path.join(self.root, "findings.jsonl"), "a") as fh:
            fh.write(json.dumps(finding) + "\n")
        print(f"[fuzz] new finding: {key}", file=REPORT, flush=True)

    # -------------------------------------------------------------- targets

    def _write_input(self, name: str, blob: bytes) -> str:
        self._clear(self.inputs)
        path = os.path.join(self.inputs, name)
        with open(path, "wb") as fh:
            fh.write(blob)
        return path

    def _mutated(self) -> tuple[str, str, bytes, str]:
        """(seed name, suffix, bytes, description) of a mutated seed file."""
        name = self.rnd.choice(list(self.seeds))
        suffix, blob = self.seeds[name]
        mutated, ops = mutate(self.rnd, blob, self.seeds)
        if self.rnd.random() < 0.1:
            suffix = self.rnd.choice([s for s, _ in self.seeds.values()])
        return name, suffix, mutated, f"{name} mutated: {', '.join(ops)}"

    def media(self) -> None:
        name, suffix, blob, desc = self._mutated()
        path = self._write_input("m" + suffix, blob)
        files = {"m" + suffix: blob}
        out_name = "o.npy" if self.rnd.random() < 0.6 else "o" + self.seeds[name][0]
        self.run("media", ["blur", path, "-o", os.path.join(self.outdir, out_name)], desc,
                 {out_name}, files)
        if suffix in (".tif", ".npy"):  # the chunked path: regions read tile by tile
            chunked = "c.npy" if self.rnd.random() < 0.5 else "c.tif"
            self.run("media", ["blur", path, "--chunk", "16", "-o",
                               os.path.join(self.outdir, chunked)], desc, {chunked}, files)
        self.run("media", ["info", path], desc, set(), files)

    def specs(self) -> None:
        from pwfilter import specs
        from pwfilter.errors import PwfilterError

        text = random_spec(self.rnd)
        kind = self.rnd.choice(["image", "audio"])
        channels = self.rnd.choice([1, 2, 3, 4, 6])
        rate = self.rnd.choice([0, 8000, 44100])
        which = self.rnd.choice(["parse_rows", "named_kernel", "load_kernel", "load_kernel",
                                 "load_matrix", "load_matrix", "parse_bias"])
        call = {
            "parse_rows": lambda: specs.parse_rows(text, "kernel"),
            "named_kernel": lambda: specs.named_kernel(text, 1 if kind == "audio" else 2, rate),
            "load_kernel": lambda: specs.load_kernel(text, kind=kind, channels=channels,
                                                     rate=rate),
            "load_matrix": lambda: specs.load_matrix(text, kind=kind, channels=channels),
            "parse_bias": lambda: specs.parse_bias(text, channels),
        }[which]
        self._current("specs", [f"specs.{which}", text, f"kind={kind}",
                                f"channels={channels}", f"rate={rate}"],
                      f"{which}({text!r}, kind={kind}, channels={channels}, rate={rate})",
                      {"spec.txt": text.encode("utf-8", "surrogatepass")})
        self.execs["specs"] += 1
        problem = None
        signal.setitimer(signal.ITIMER_REAL, EXEC_TIMEOUT)
        try:
            value = call()
            problem = self._check_parsed(which, value)
        except PwfilterError:
            pass
        except FuzzTimeout:
            problem = f"hang (> {EXEC_TIMEOUT:g} s)"
        except BaseException as exc:  # noqa: BLE001
            problem = f"{type(exc).__name__}: {exc}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if problem:
            res = Result(code=None, err=problem)
            argv = [f"specs.{which}", text, f"kind={kind}", f"channels={channels}",
                    f"rate={rate}"]
            self._record("specs", argv, f"{which}({text!r}, kind={kind}, channels={channels}, "
                         f"rate={rate})", res, problem, {"spec.txt": text.encode("utf-8",
                                                                               "surrogatepass")})

    @staticmethod
    def _check_parsed(which, value) -> str | None:
        from pwfilter.engine import Separable

        if value is None:
            return None if which == "named_kernel" else f"{which} returned None"
        arrays = []
        if which in ("named_kernel", "load_kernel"):
            arr = value.array
            arrays = [arr.col, arr.row] if isinstance(arr, Separable) else [arr]
        elif which == "load_matrix":
            arrays = [value.matrix] + ([value.bias] if value.bias is not None else [])
        else:
            arrays = [value]
        for a in arrays:
            a = np.asarray(a)
            if a.size == 0:
                return f"{which} returned an empty array of shape {a.shape}"
            if a.dtype.kind not in "fiu" or not np.isfinite(a).all():
                return f"{which} returned non-finite or non-numeric values ({a.dtype})"
        return None

    def cli(self) -> None:
        rnd = self.rnd
        if rnd.random() < 0.8:
            name = rnd.choice(list(self.seeds))
            suffix, blob = self.seeds[name]
            desc = f"{name} (valid)"
        else:
            name, suffix, blob, desc = self._mutated()
        inp = self._write_input("in" + suffix, blob)
        files = {"in" + suffix: blob}
        command = rnd.choice(["blur", "convolve", "remix", "dsconv", "chain", "kernel", "info",
                              "cost"])
        # where the result goes, and which names a success may leave in out/
        r = rnd.random()
        if r < 0.55:
            out_name = "o" + rnd.choice([".png", ".jpg", ".tif", ".bmp", ".webp", ".wav",
                                         ".flac", ".aiff", ".npy", ".ogg", ".caf", ".txt",
                                         ".xyz", ""])
            output, allowed = ["-o", os.path.join(self.outdir, out_name)], {out_name}
        elif r < 0.7:
            output, allowed = ["-o", self.outdir + "/"], {"in.*"}
        elif r < 0.85:
            output, allowed = ["-o", "-"], set()
        elif r < 0.93:
            output, allowed = ["-o", inp, "--overwrite"], set()  # onto the input: refused
        else:
            output, allowed = ["-o", os.path.join(self.outdir, "no", "such", "o.png")], set()
        common = _pick(rnd, COMMON)
        if command == "blur":
            argv = ["blur", inp, *output, *common, *_pick(rnd, BLUR + FILTER)]
        elif command == "convolve":
            argv = ["convolve", *output, *common, *_pick(rnd, KOPTS + FILTER), "--", inp,
                    _kernel(rnd)]
        elif command == "remix":
            argv = ["remix", inp, *output, *common, "--matrix", _matrix(rnd),
                    *_pick(rnd, GROUPS + [("--bias", _choices(["0.1", "0.1 0.2 0.3"], FLOATS[1])),
                                          ("--normalize",), ("--dry", FLOATS),
                                          ("--wet", FLOATS)])]
        elif command == "dsconv":
            argv = ["dsconv", inp, *output, *common, "--depthwise", _kernel(rnd),
                    "--pointwise", _matrix(rnd), *_pick(rnd, GROUPS + KOPTS + FILTER)]
        elif command == "chain":
            stages = stage(rnd)
            for _ in range(rnd.choice([0, 0, 1, 2])):
                stages += ["+", *stage(rnd)]
            argv = ["chain", inp, *output, *common, "--", *stages]
        elif command == "kernel":
            out_name = rnd.choice(["k.npy", "k.txt", "k.csv", "k", "-"])
            target = "-" if out_name == "-" else os.path.join(self.outdir, out_name)
            spec = rnd.choice([_kernel(rnd), random_spec(rnd), inp])  # inp: a damaged IR
            argv = ["kernel", spec, "-o",
                    target, *_pick(rnd, [("--rate", RATES), ("--audio",), ("--overwrite",),
                                         ("--json",)], 0.4)]
            allowed = {out_name} - {"-"}
            if rnd.random() < 0.15:  # the plot too (matplotlib: slower, so not every time)
                plot = rnd.choice(["p.png", "p.svg", "p.pdf", "p.xyz", "no/p.png"])
                argv += ["--plot", os.path.join(self.outdir, plot)]
                allowed |= {plot}
        elif command == "info":
            argv = ["info", inp, *_pick(rnd, [("--json",), ("--max-pixels", INTS)], 0.4)]
            allowed = set()
        else:
            argv = ["cost", *_pick(rnd, [("--cin", INTS), ("--cout", INTS), ("-k", INTS),
                                         ("--groups", INTS), ("--height", INTS),
                                         ("--width", INTS), ("--json",)], 0.4)]
            if rnd.random() < 0.7:
                argv += ["--cin", "3", "--cout", "6", "-k", "3"]
            allowed = set()
        self.run("cli", argv, desc, allowed, files)

    # -------------------------------------------------------------- loop

    def loop(self, seconds: float) -> None:
        start = time.monotonic()
        targets = [self.media] * 45 + [self.specs] * 20 + [self.cli] * 35
        while time.monotonic() - start < seconds:
            self.rnd.choice(targets)()
        self.write_counts(force=True)


def _encode(files: dict[str, bytes]) -> dict[str, str]:
    return {name: base64.b64encode(blob).decode() for name, blob in files.items()}


def _relative(argv: list[str], root: str) -> list[str]:
    """Arguments as the saved reproducer runs them: inputs beside it, outputs in out/."""
    return [a.replace(os.path.join(root, "in") + "/", "").replace(os.path.join(root, "out"),
                                                                   "out") for a in argv]


# ============================================================================ supervisor


@dataclass
class Finding:
    signature: str
    target: str
    command: str
    description: str
    stderr: str
    argv: list[str]
    files: dict[str, str] = field(default_factory=dict)  # name -> base64
    hits: int = 0
    saved: str = ""


def run_worker(args) -> int:
    """``--worker``: fuzz in this process until the time is up."""
    global REPORT
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    signal.signal(signal.SIGALRM, _alarm)
    # Native libraries may print to descriptor 2 (a real pwfilter process sends that to
    # /dev/null itself); the worker's messages go to a copy of the real stderr.
    REPORT = os.fdopen(os.dup(2), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    fuzzer = Fuzzer(args.seed, args.state)
    try:
        fuzzer.loop(args.seconds)
    except BaseException:
        fuzzer.write_counts(force=True)
        print("[fuzz] the worker failed:\n" + traceback.format_exc(), file=REPORT, flush=True)
        os._exit(4)
    # (os._exit: a command thread left running would make the interpreter's exit abort)
    REPORT.flush()
    os._exit(0)


def supervise(args) -> int:
    """Run workers one after another until the time is up; a worker that dies (a crash in
    native code kills the process) becomes a finding, and the next one carries on."""
    deadline = time.monotonic() + args.minutes * 60
    start = time.monotonic()
    findings: dict[str, Finding] = {}
    execs = {"media": 0, "specs": 0, "cli": 0}
    seed = args.seed
    workers = 0
    last_progress = start
    base = tempfile.mkdtemp(prefix="pwfilter-fuzz-")
    print(f"[fuzz] seed {args.seed}, {args.minutes:g} min, findings saved to {args.save}",
          file=sys.stderr, flush=True)
    try:
        while time.monotonic() < deadline - 1:
            root = os.path.join(base, f"w{workers}")
            os.mkdir(root)
            workers += 1
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker",
                                     "--seed", str(seed), "--state", root, "--seconds",
                                     str(max(1.0, deadline - time.monotonic()))])
            while proc.poll() is None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() - last_progress > 60:
                    last_progress = time.monotonic()
                    done = _peek_counts(root, execs)
                    print(f"[fuzz] {time.monotonic() - start:5.0f} s  executions "
                          f"{sum(done.values())}  findings {len(set(findings) | _peek_new(root))}",
                          file=sys.stderr, flush=True)
                if time.monotonic() > deadline + EXEC_TIMEOUT + 30:
                    proc.kill()  # a worker stuck beyond its own timeouts
            _collect(root, proc.returncode, findings, execs)
            shutil.rmtree(root, ignore_errors=True)
            seed += 1
    except KeyboardInterrupt:
        print("[fuzz] interrupted", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    seconds = time.monotonic() - start
    if args.save:
        for n, f in enumerate(findings.values(), 1):
            _save(f, n, args.save)
    report(findings, execs, seconds, workers)
    return 1 if findings else 0


def _peek_counts(root: str, execs: dict) -> dict:
    try:
        with open(os.path.join(root, "counts.json")) as fh:
            now = json.load(fh)["execs"]
    except (OSError, ValueError):
        now = {}
    return {k: execs[k] + now.get(k, 0) for k in execs}


def _peek_new(root: str) -> set[str]:
    """The signatures the running worker has found so far."""
    try:
        with open(os.path.join(root, "findings.jsonl")) as fh:
            return {json.loads(line)["signature"] for line in fh if line.endswith("\n")}
    except (OSError, ValueError):
        return set()


def _collect(root: str, status: int, findings: dict, execs: dict) -> None:
    """Merge one worker's findings and counts; its death is a finding of its own."""
    try:
        with open(os.path.join(root, "counts.json")) as fh:
            counts = json.load(fh)
    except (OSError, ValueError):
        counts = {"execs": {}, "hits": {}}
    for k, v in counts["execs"].items():
        execs[k] += v
    try:
        with open(os.path.join(root, "findings.jsonl")) as fh:
            lines = [json.loads(line) for line in fh]
    except OSError:
        lines = []
    for item in lines:
        f = findings.setdefault(item["signature"], Finding(**item))
        f.hits += counts["hits"].get(item["signature"], 1)
    if status in (0, 4):
        return
    try:
        with open(os.path.join(root, "current.json")) as fh:
            cur = json.load(fh)
    except (OSError, ValueError):
        cur = {"target": "?", "argv": ["?"], "description": "?", "files": {}}
    how = (f"killed by {signal.Signals(-status).name}" if status < 0
           else f"worker exit status {status}")
    if status == HUNG:
        how = f"still running after {EXEC_TIMEOUT:g} s"
    files = dict(cur["files"])
    inputs = os.path.join(root, "in")
    if cur["target"] != "specs" and os.path.isdir(inputs):
        for name in os.listdir(inputs):
            with open(os.path.join(inputs, name), "rb") as fh:
                files[name] = base64.b64encode(fh.read()).decode()
    key = (f"{cur['argv'][0]}: hang: {how}" if status == HUNG
           else f"{cur['argv'][0]}: crash: the process was {how}")
    f = findings.setdefault(key, Finding(key, cur["target"], cur["argv"][0], cur["description"],
                                         f"(the process {'hung' if status == HUNG else 'died'}"
                                         f": {how})", _relative(cur["argv"], root), files))
    f.hits += 1
    execs[cur["target"]] = execs.get(cur["target"], 0) + 1


def _save(f: Finding, n: int, save: str) -> None:
    slug = re.sub(r"[^\w]+", "-", f.signature)[:60].strip("-")
    d = os.path.join(save, f"{n:03d}-{slug}")
    os.makedirs(d, exist_ok=True)
    for name, blob in f.files.items():
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(base64.b64decode(blob))
    with open(os.path.join(d, "repro.sh"), "w") as fh:
        fh.write("#!/bin/sh\n# " + f.signature.replace("\n", " ") + "\n"
                 + "# input: " + f.description.replace("\n", " ") + "\n")
        if f.target == "specs":
            which = f.argv[0].split(".", 1)[1]
            kw = dict(a.split("=", 1) for a in f.argv[2:])
            call = {"parse_rows": "specs.parse_rows(text, 'kernel')",
                    "named_kernel": f"specs.named_kernel(text, "
                                    f"{1 if kw['kind'] == 'audio' else 2}, {kw['rate']})",
                    "load_kernel": f"specs.load_kernel(text, kind={kw['kind']!r}, "
                                   f"channels={kw['channels']}, rate={kw['rate']})",
                    "load_matrix": f"specs.load_matrix(text, kind={kw['kind']!r}, "
                                   f"channels={kw['channels']})",
                    "parse_bias": f"specs.parse_bias(text, {kw['channels']})"}[which]
            fh.write('cd "$(dirname "$0")" && python -c "from pwfilter import specs; '
                     "text = open('spec.txt', encoding='utf-8').read(); print(repr("
                     f'{call}))"\n')
        else:
            fh.write('cd "$(dirname "$0")" && mkdir -p out && pwfilter '
                     + shlex.join(f.argv) + "\n")
    os.chmod(os.path.join(d, "repro.sh"), 0o755)
    with open(os.path.join(d, "stderr.txt"), "w") as fh:
        fh.write(f.stderr + "\n")
    f.saved = d


def report(findings: dict, execs: dict, seconds: float, workers: int) -> None:
    total = sum(execs.values())
    out = sys.stderr
    print(f"\n=== pwfilter fuzzing: {seconds / 60:.1f} min ({seconds:.0f} s), {total} executions "
          f"({total / max(seconds, 1e-9):.0f}/s; media {execs['media']}, specs "
          f"{execs['specs']}, cli {execs['cli']}) in {workers} worker process(es)", file=out)
    print(f"=== {len(findings)} distinct finding(s)", file=out)
    for i, f in enumerate(findings.values(), 1):
        print(f"\n[{i}] {f.signature}  ({f.hits} hit(s), target {f.target})", file=out)
        print(f"    command: {shlex.join(f.argv)[:400]}", file=out)
        print(f"    input:   {f.description[:300]}", file=out)
        for line in f.stderr.splitlines()[-6:]:
            print(f"    stderr:  {line[:300]}", file=out)
        if f.saved:
            print(f"    saved:   {f.saved}", file=out)
    out.flush()


REPORT = sys.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to fuzz (default 10)")
    ap.add_argument("--save", metavar="DIR", help="save each distinct finding (input, "
                                                  "repro.sh, stderr.txt) in DIR")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000, help="random seed")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return run_worker(args)
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        args.save = os.path.abspath(args.save)
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
