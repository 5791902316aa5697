"""Hostile input: hundreds of generated error cases, every command, one contract.

For every case (corrupt and truncated media, decompression bombs, special
files, ``.npy`` tricks, bad kernels, matrices and options, output faults):

- the exit status is 1 or 2 (2 exactly where the case is a usage error:
  a bad option value, a missing argument);
- exit 1: stderr is exactly one line ``pwfilter: error: ...`` (naming the
  file where the case names one); exit 2: Click's usage message;
- no traceback and no ``internal error`` anywhere, nothing on stdout;
- the working folder is exactly as before: no new file (temporaries
  included), every input, kernel, matrix and impulse response byte-identical.

Every case is a genuine error. The media cases are generated from valid
files by seeded mutations, and a mutation is kept only when independent
readers (Pillow, imagecodecs, soundfile, NumPy) refuse the result too, or
when it is a truncation the specification calls an error; the commands they
run are checked to succeed on the unmutated files
(``test_commands_accept_the_valid_files``). Most cases run in this process
through ``pwfilter.cli.main`` (Python's stderr captured, Python warnings
counted as the stderr lines they would be); those that need a real process
(FIFOs, ``/dev/zero``, stdin, stdout on ``/dev/full``, memory-hungry kernels)
run ``python -m pwfilter`` with a timeout and resource limits, and so do a
few damaged files of every format, where native libraries' own messages on
descriptor 2 would break the one-line rule.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import resource
import stat
import struct
import subprocess
import sys
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import imagecodecs
import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, png_chunk
from pwfilter.cli import main

SEED = 20261201
RATE = 8000
FRAMES = 1000


# ======================================================================= valid media


def _rgb8(shape=(20, 24, 3), seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _stereo16(frames=FRAMES, seed=2) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, (frames, 2), dtype=np.int16)


def _audio_bytes(data: np.ndarray, fmt: str, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, RATE, format=fmt, subtype=subtype)
    return buf.getvalue()


def _pillow_bytes(arr: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


@dataclass(frozen=True)
class Format:
    """A valid file of one format and how to run every command on it."""

    key: str
    suffix: str
    kind: str      # image | audio
    matrix: str    # a remix matrix that fits its channels
    make: Callable[[], bytes]


FORMATS = {f.key: f for f in [
    Format("png8", ".png", "image", "gray", lambda: imagecodecs.png_encode(_rgb8())),
    Format("png16", ".png", "image", "1", lambda: imagecodecs.png_encode(
        np.random.default_rng(3).integers(0, 65536, (20, 24), dtype=np.uint16))),
    Format("jpeg", ".jpg", "image", "gray", lambda: _pillow_bytes(_rgb8((24, 32, 3), 4), "JPEG",
                                                                 quality=90)),
    Format("tiff", ".tif", "image", "gray", lambda: imagecodecs.tiff_encode(_rgb8((16, 20, 3), 5))),
    Format("wav", ".wav", "audio", "mono", lambda: _audio_bytes(_stereo16(), "WAV")),
    Format("flac", ".flac", "audio", "mono", lambda: _audio_bytes(_stereo16(), "FLAC")),
    Format("aiff", ".aiff", "audio", "mono", lambda: _audio_bytes(_stereo16(), "AIFF")),
    Format("npy", ".npy", "image", "gray", lambda: _npy_bytes(
        np.random.default_rng(6).random((12, 10, 3), dtype=np.float32))),
]}


@functools.cache
def valid(key: str) -> bytes:
    return FORMATS[key].make()


GOOD_WAV = "good.wav"  # the input when the file under test is used as an impulse response


def _commands(fmt: Format, f: str) -> dict[str, list[str]]:
    """The command lines a file of ``fmt`` named ``f`` is run through (all valid on a valid
    file; see ``test_commands_accept_the_valid_files``)."""
    m = fmt.matrix
    cmds = {
        "blur": ["blur", f, "--sigma", "1"],
        "convolve": ["convolve", f, "gaussian:1"],
        "remix": ["remix", f, "--matrix", m],
        "dsconv": ["dsconv", f, "--depthwise", "gaussian:1", "--pointwise", m],
        "chain": ["chain", f, "--", "blur", "--sigma", "1", "+", "remix", "--matrix", m],
        "info": ["info", f],
    }
    if fmt.kind == "audio":
        cmds["ir"] = ["convolve", GOOD_WAV, f]
    return cmds


def _write_good_wav(d: Path) -> None:
    (d / GOOD_WAV).write_bytes(_audio_bytes(_stereo16(400, seed=7), "WAV"))


# ======================================================================= oracles


@contextlib.contextmanager
def _quiet():
    """The independent readers complain (warnings, soundfile's seek callback) while they
    refuse damaged files: keep that out of the test report."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _info: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.unraisablehook = hook


def _pillow_rejects(blob: bytes, header_only: bool = False) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as im:
            if not header_only:
                im.load()
    except Exception:  # noqa: BLE001 - any refusal counts
        return True
    return False


def _imagecodecs_rejects(blob: bytes) -> bool:
    try:
        imagecodecs.imread(blob)
    except Exception:  # noqa: BLE001
        return True
    return False


def _audio_read(blob: bytes):
    try:
        data, _ = sf.read(io.BytesIO(blob), dtype="int16")
    except Exception:  # noqa: BLE001
        return None
    return data


def _audio_header_rejects(blob: bytes) -> bool:
    """libsndfile refuses the header, or the header promises more frames than the file holds
    (libsndfile then clamps the frame count to what is there)."""
    try:
        info = sf.info(io.BytesIO(blob))
    except Exception:  # noqa: BLE001
        return True
    return info.frames < FRAMES and info.format != "FLAC"


def _npy_header(blob: bytes):
    """(shape, dtype, data offset) from a .npy header, or None when it does not parse."""
    f = io.BytesIO(blob)
    try:
        version = np.lib.format.read_magic(f)
        reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, _fortran, dtype = reader(f)
    except Exception:  # noqa: BLE001
        return None
    return shape, dtype, f.tell()


def _npy_rejects(blob: bytes) -> bool:
    """NumPy refuses it, or it breaks the specification's rules for a .npy input."""
    try:
        arr = np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception:  # noqa: BLE001
        return True
    return (arr.dtype.kind not in "iuf" or arr.ndim not in (1, 2, 3) or arr.size == 0
            or not np.isfinite(arr.astype(np.float64)).all())


def _npy_header_rejects(blob: bytes) -> bool:
    """The header does not parse or promises more data than the file holds."""
    header = _npy_header(blob)
    if header is None:
        return True
    shape, dtype, offset = header
    return int(np.prod(shape)) * dtype.itemsize > len(blob) - offset


def rejected(key: str, blob: bytes, truncation: bool) -> tuple[bool, bool]:
    """(is the blob a genuine error for the processing commands, and for ``info`` too).

    ``info`` describes audio and images from their headers, so it only counts
    header-level damage. A truncation is an error whenever an independent reader
    notices it; a flipped file only when every independent reader refuses it."""
    with _quiet():
        return _rejected(key, blob, truncation)


def _rejected(key: str, blob: bytes, truncation: bool) -> tuple[bool, bool]:
    kind = FORMATS[key].kind
    if key == "npy":
        return _npy_rejects(blob), _npy_header_rejects(blob)
    if kind == "image":
        votes = [_pillow_rejects(blob), _imagecodecs_rejects(blob)]
        bad = any(votes) if truncation else all(votes)
        return bad, bad and _pillow_rejects(blob, header_only=True)
    data = _audio_read(blob)
    if truncation:
        bad = data is None or len(data) < FRAMES
    else:
        bad = data is None
    return bad, bad and _audio_header_rejects(blob)


# ======================================================================= cases


@dataclass
class Ctx:
    d: Path
    cleanups: list = field(default_factory=list)

    def write(self, name: str, blob: bytes) -> str:
        (self.d / name).write_bytes(blob)
        return name


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Ctx], list]  # writes the files into the folder, returns the arguments
    name: str | None = None       # what the one error line must name
    code: int | None = None       # the exact status when known (2: a usage error)
    proc: bool = False            # needs a real process
    stdout: str | None = None     # the real process's stdout (e.g. /dev/full)
    stdin: bytes | None = None
    timeout: float = 20
    by_limit: bool = False        # refused by a limit before the work, not by running out


CASES: list[Case] = []


def case(id_, make, **kw):
    CASES.append(Case(id_, make, **kw))


def _media_case(id_, key, blob, cmd, stem, header_bad=True, proc=False):
    fmt = FORMATS[key]
    fname = stem + fmt.suffix

    def make(ctx, blob=blob, cmd=cmd, fname=fname):
        ctx.write(fname, blob)
        if cmd == "ir":
            _write_good_wav(ctx.d)
        return _commands(fmt, fname)[cmd]

    case(id_, make, name=fname, proc=proc)


def _rotation(key: str, header_bad: bool, i: int) -> str:
    cmds = list(_commands(FORMATS[key], "x"))
    if not header_bad:
        cmds.remove("info")
    return cmds[i % len(cmds)]


# ---------------------------------------------------------------- 1. corrupt media

def _truncations(key: str, blob: bytes):
    n = len(blob)
    offsets = sorted({1, 3, 7, 12, 20, 30, 45, 70} | {int(n * f) for f in
                                                      (0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 0.97)})
    for off in offsets:
        if 0 < off < n:
            cut = blob[:off]
            bad, header_bad = rejected(key, cut, truncation=True)
            if bad:
                yield f"cut{off}", cut, header_bad


def _flips(key: str, blob: bytes, want: int = 6):
    rng = np.random.default_rng(SEED + sum(map(ord, key)))
    found = 0
    for _ in range(400):
        b = bytearray(blob)
        nflips = int(rng.integers(1, 4))
        # mostly in the headers, where damage is structural
        hi = min(len(b), 160) if rng.random() < 0.75 else len(b)
        spots = sorted(int(p) for p in rng.integers(0, hi, nflips))
        for p in spots:
            b[p] ^= int(rng.integers(1, 256))
        bad, header_bad = rejected(key, bytes(b), truncation=False)
        if bad:
            found += 1
            yield "flip" + "+".join(map(str, spots)), bytes(b), header_bad
            if found == want:
                return


MAGIC = {  # a valid file's first bytes followed by junk
    "png8": b"\x89PNG\r\n\x1a\n", "png16": b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    "jpeg": b"\xff\xd8\xff\xe0", "tiff": b"II*\x00\x08\x00\x00\x00",
    "wav": b"RIFF\x24\x10\x00\x00WAVEfmt ", "flac": b"fLaC\x00\x00\x00\x22",
    "aiff": b"FORM\x00\x00\x10\x00AIFFCOMM", "npy": b"\x93NUMPY\x01\x00",
}


def _corrupt_media_cases():
    junk = np.random.default_rng(SEED).bytes
    for k, key in enumerate(FORMATS):
        blob = valid(key)
        variants = list(_truncations(key, blob)) + list(_flips(key, blob))
        for i, (label, mutated, header_bad) in enumerate(variants):
            cmd = _rotation(key, header_bad, i + k)
            _media_case(f"corrupt-{key}-{label}-{cmd}", key, mutated, cmd, f"{key}_{label}",
                        header_bad)
        # a real process too (native libraries write to descriptor 2): the last
        # truncation and the last two flips, through blur
        for label, mutated, header_bad in [v for v in variants if v[0].startswith("cut")][-1:] + [
                v for v in variants if v[0].startswith("flip")][-2:]:
            _media_case(f"corrupt-{key}-{label}-blur-process", key, mutated, "blur",
                        f"{key}_{label}", header_bad, proc=True)
        cmds = list(_commands(FORMATS[key], "x"))
        _media_case(f"corrupt-{key}-empty-{cmds[k % len(cmds)]}", key, b"",
                    cmds[k % len(cmds)], f"{key}_empty")
        _media_case(f"corrupt-{key}-junk-{cmds[(k + 1) % len(cmds)]}", key, junk(3000),
                    cmds[(k + 1) % len(cmds)], f"{key}_junk")
        _media_case(f"corrupt-{key}-magic+junk-{cmds[(k + 2) % len(cmds)]}", key,
                    MAGIC[key] + junk(2000), cmds[(k + 2) % len(cmds)], f"{key}_magicjunk")
        _media_case(f"corrupt-{key}-magic-only-info", key, MAGIC[key], "info", f"{key}_magic")


_corrupt_media_cases()


# wrong extensions: the content is valid, but the default output (beside the input, with
# the input's suffix) would be a format that cannot hold it; or the content is damaged too
WRONG_EXT = [
    ("wav", "sound.png", "blur"), ("wav", "sound2.jpg", "remix"), ("flac", "sound3.tif", "dsconv"),
    ("png8", "pic.wav", "blur"), ("png8", "pic2.flac", "convolve"), ("jpeg", "pic3.aiff", "chain"),
    ("npy", "arr.wav", "remix"), ("png16", "pic4.wav", "dsconv"),
]
for _key, _fname, _cmd in WRONG_EXT:
    def _make(ctx, key=_key, fname=_fname, cmd=_cmd):
        ctx.write(fname, valid(key))
        return _commands(FORMATS[key], fname)[cmd]
    case(f"wrongext-{_key}-as-{_fname}-{_cmd}", _make, name=_fname.split(".")[0])

for _key, _ext, _cmd in [("png8", ".wav", "blur"), ("wav", ".png", "info"),
                         ("flac", ".npy", "blur"), ("npy", ".png", "info"),
                         ("jpeg", ".flac", "remix"), ("aiff", ".jpg", "convolve")]:
    def _make(ctx, key=_key, ext=_ext, cmd=_cmd):
        blob = valid(key)
        fname = f"cut_{key}{ext}"
        ctx.write(fname, blob[: len(blob) // 3])
        return _commands(FORMATS[key], fname)[cmd]
    case(f"wrongext-truncated-{_key}-as{_ext}-{_cmd}", _make, name=f"cut_{_key}")


# ---------------------------------------------------------------- 2. truncated audio

AUDIO_CONTAINERS = [("WAV", ".wav"), ("RF64", ".rf64.wav"), ("W64", ".w64"), ("AIFF", ".aiff"),
                    ("CAF", ".caf")]


@functools.cache
def _audio_with_span(fmt: str, subtype: str) -> tuple[bytes, int, int]:
    """A valid file and the byte span of its sample data (found by encoding two signals
    that differ only in their first and last frames)."""
    a = _stereo16(seed=8)
    a[FRAMES // 2, 0] = 30000  # the same peak in both (float formats store a PEAK chunk)
    b = a.copy()
    b[0] += 3
    b[-1] -= 3
    ea, eb = _audio_bytes(a, fmt, subtype), _audio_bytes(b, fmt, subtype)
    assert len(ea) == len(eb)
    diff = np.nonzero(np.frombuffer(ea, np.uint8) != np.frombuffer(eb, np.uint8))[0]
    return ea, int(diff[0]), int(diff[-1]) + 1


TRUNC_CMDS = ["blur", "info", "ir", "remix", "dsconv", "chain", "convolve", "info"]
_n = 0
for _fmt, _suffix in AUDIO_CONTAINERS:
    for _subtype in ("PCM_16", "PCM_24", "FLOAT"):
        for _where in ("5%", "40%", "90%", "-1byte"):
            _cmd = TRUNC_CMDS[_n % len(TRUNC_CMDS)]
            _n += 1
            _stem = f"t_{_fmt.lower()}_{_subtype.lower()}_{_where.replace('%', 'pc')}"

            def _make(ctx, fmt=_fmt, subtype=_subtype, where=_where, cmd=_cmd,
                      fname=_stem + _suffix):
                blob, start, end = _audio_with_span(fmt, subtype)
                if where == "-1byte":
                    cut = end - 1
                else:
                    cut = start + 4 + int((end - start - 8) * float(where[:-1]) / 100)
                ctx.write(fname, blob[:cut])
                if cmd == "ir":
                    _write_good_wav(ctx.d)
                return _commands(FORMATS["wav"], fname)[cmd]

            case(f"truncaudio-{_fmt}-{_subtype}-cut{_where}-{_cmd}", _make, name=_stem)


# ---------------------------------------------------------------- 3. decompression bombs


def _png_header(width, height, depth=8, color=2) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                                  depth, color, 0, 0, 0))


def _png_bomb(width, height, depth=8, color=2) -> bytes:
    return (_png_header(width, height, depth, color)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 65536)) + png_chunk(b"IEND", b""))


@functools.cache
def _png_huge_idat(mb: int = 64) -> bytes:
    """A 10x10 RGB PNG whose IDAT inflates to ``mb`` MiB (the image needs 310 bytes)."""
    z = zlib.compressobj(9)
    zero = b"\x00" * (1 << 20)
    body = b"".join(z.compress(zero) for _ in range(mb)) + z.flush()
    return _png_header(10, 10) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def _tiff_bomb() -> bytes:
    entries = [(256, 4, 1, 100_000), (257, 4, 1, 100_000), (258, 3, 1, 8), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, 100_000), (279, 4, 1, 10)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def _jpeg_bomb() -> bytes:
    """A valid JPEG whose frame header (SOF0) is patched to claim 65500x65500 pixels."""
    b = bytearray(valid("jpeg"))
    i = b.index(b"\xff\xc0")
    b[i + 5:i + 9] = struct.pack(">HH", 65500, 65500)
    return bytes(b)


def _bmp_bomb() -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, 100_000, 100_000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + b"\x00" * 64


def _npy_bomb() -> bytes:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (60000, 60000, 3), }"
    header += " " * (117 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 64


def _wav_bomb() -> bytes:
    """A WAV header promising 2^31 bytes of samples, followed by 100."""
    fmt = struct.pack("<HHIIHH", 1, 2, RATE, RATE * 4, 4, 16)
    return (b"RIFF" + struct.pack("<I", 0x7FFFFFF0) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", 0x7FFFFFC0) + b"\x01" * 100)


BOMBS = [
    ("png-100000x100000-rgb", ".png", lambda: _png_bomb(100_000, 100_000),
     ["blur", "info", "remix", "convolve", "dsconv", "chain"]),
    ("png-30000x30000-rgba16", ".png", lambda: _png_bomb(30_000, 30_000, 16, 6), ["blur", "info"]),
    ("png-1x300000000-gray", ".png", lambda: _png_bomb(300_000_000, 1, 8, 0), ["info", "convolve"]),
    ("png-10x10-idat-64MiB", ".png", _png_huge_idat, ["blur", "remix", "blur-process"]),
    ("tiff-100000x100000", ".tif", _tiff_bomb, ["blur", "info"]),
    ("jpeg-65500x65500", ".jpg", _jpeg_bomb, ["blur", "info"]),
    ("bmp-100000x100000", ".bmp", _bmp_bomb, ["remix", "info"]),
    ("npy-60000x60000x3", ".npy", _npy_bomb, ["blur", "info"]),
    ("wav-2GiB-promised", ".wav", _wav_bomb, ["blur", "info", "ir"]),
]
for _label, _suffix, _maker, _cmds in BOMBS:
    for _cmd in _cmds:
        def _make(ctx, maker=_maker, cmd=_cmd.removesuffix("-process"), fname="bomb" + _suffix,
                  suffix=_suffix):
            ctx.write(fname, maker())
            key = {".png": "png8", ".tif": "tiff", ".jpg": "jpeg", ".bmp": "png8",
                   ".npy": "npy", ".wav": "wav"}[suffix]
            if cmd == "ir":
                _write_good_wav(ctx.d)
            return _commands(FORMATS[key], fname)[cmd]
        case(f"bomb-{_label}-{_cmd}", _make, name="bomb" + _suffix,
             proc=_cmd.endswith("-process"))


# ---------------------------------------------------------------- 4. special files


def _image(ctx: Ctx, name="a.png") -> str:
    return ctx.write(name, valid("png8"))


def _wav(ctx: Ctx, name="music.wav") -> str:
    return ctx.write(name, valid("wav"))


def _fifo(ctx: Ctx, name="pipe.png") -> str:
    os.mkfifo(ctx.d / name)
    return name


def _dir(ctx: Ctx, name="folder.png") -> str:
    (ctx.d / name).mkdir()
    return name


# A FIFO must be refused, not opened (opening it for reading waits for a writer forever).
case("special-fifo-input-blur", lambda c: ["blur", _fifo(c), "--sigma", "1"], name="pipe.png",
     proc=True, timeout=10)
case("special-fifo-input-info", lambda c: ["info", _fifo(c)], name="pipe.png", proc=True,
     timeout=10)
case("special-fifo-kernel-convolve", lambda c: ["convolve", _image(c), _fifo(c, "k.npy")],
     name="k.npy", proc=True, timeout=10)
case("special-fifo-matrix-remix", lambda c: ["remix", _image(c), "--matrix", _fifo(c, "m.txt")],
     name="m.txt", proc=True, timeout=10)
case("special-fifo-ir-convolve", lambda c: ["convolve", _wav(c), _fifo(c, "ir.wav")],
     name="ir.wav", proc=True, timeout=10)
case("special-fifo-output-overwrite",
     lambda c: ["blur", _image(c), "-o", _fifo(c, "out.png"), "--overwrite"], name="out.png",
     proc=True, timeout=10)
case("special-devzero-input-blur", lambda c: ["blur", "/dev/zero"], name="/dev/zero", proc=True,
     timeout=10)
case("special-devzero-input-info", lambda c: ["info", "/dev/zero"], name="/dev/zero", proc=True,
     timeout=10)
case("special-devzero-kernel", lambda c: ["convolve", _image(c), "/dev/zero"], proc=True,
     timeout=10)
case("special-devzero-matrix", lambda c: ["remix", _image(c), "--matrix", "/dev/zero"],
     proc=True, timeout=10)
case("special-devnull-input-blur", lambda c: ["blur", "/dev/null", "-o", "out.png"],
     name="/dev/null")
case("special-devnull-input-info", lambda c: ["info", "/dev/null"], name="/dev/null")
case("special-devnull-input-chain", lambda c: ["chain", "/dev/null", "-o", "o.wav", "--",
                                               "blur"], name="/dev/null")
case("special-devnull-kernel", lambda c: ["convolve", _image(c), "/dev/null"])
case("special-devnull-matrix", lambda c: ["remix", _image(c), "--matrix", "/dev/null"])
case("special-dir-input-blur", lambda c: ["blur", _dir(c)], name="folder.png")
case("special-dir-input-info", lambda c: ["info", _dir(c)], name="folder.png")
case("special-dir-input-dsconv", lambda c: ["dsconv", _dir(c), "--depthwise", "box:3",
                                            "--pointwise", "gray"], name="folder.png")
case("special-dir-kernel", lambda c: ["convolve", _image(c), _dir(c, "k.npy")], name="k.npy")
case("special-dir-ir", lambda c: ["convolve", _wav(c), _dir(c, "ir.wav")], name="ir.wav")
case("special-dir-matrix", lambda c: ["remix", _image(c), "--matrix", _dir(c, "m.npy")],
     name="m.npy")
case("special-dir-pointwise", lambda c: ["dsconv", _image(c), "--depthwise", "box:3",
                                         "--pointwise", _dir(c, "m.txt")], name="m.txt")
case("special-stdin-empty", lambda c: ["blur", "-", "-o", "-", "--format", "png"], proc=True,
     stdin=b"")
case("special-stdin-junk", lambda c: ["blur", "-", "-o", "-", "--format", "png"], proc=True,
     stdin=np.random.default_rng(SEED).bytes(5000))
case("special-stdin-truncated-png", lambda c: ["remix", "-", "--matrix", "gray", "-o", "-",
                                               "--format", "png"], proc=True,
     stdin=valid("png8")[:300])
case("special-stdin-truncated-wav", lambda c: ["convolve", "-", "box:3", "-o", "-", "--format",
                                               "wav"], proc=True, stdin=valid("wav")[:2001])
case("special-stdin-truncated-wav-info", lambda c: ["info", "-"], proc=True,
     stdin=valid("wav")[:2001])


# ---------------------------------------------------------------- 5. .npy tricks


def _npy_header_blob(header: str, data: bytes = b"", version=(1, 0)) -> bytes:
    header = header + " " * ((-(len(header) + 11)) % 64) + "\n"
    size = struct.pack("<H", len(header)) if version == (1, 0) else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes(version) + size + header.encode("latin1") + data


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, k=np.ones((3, 3)))
    return buf.getvalue()


NPY_TRICKS = {
    "pickle": lambda: _npy_bytes(np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
    "complex": lambda: _npy_bytes(np.full((3, 3), 1 + 2j, np.complex64)),
    "zero-d": lambda: _npy_bytes(np.array(0.5)),
    "empty": lambda: _npy_bytes(np.zeros((0, 3), np.float32)),
    "nan": lambda: _npy_bytes(np.array([[0.5, np.nan, 0.1]] * 3)),
    "inf": lambda: _npy_bytes(np.array([[0.5, 0.2, -np.inf]] * 3)),
    "four-d": lambda: _npy_bytes(np.zeros((2, 2, 2, 2), np.float32)),
    "strings": lambda: _npy_bytes(np.array([["a", "b", "c"]] * 3)),
    "structured": lambda: _npy_bytes(np.zeros((3, 3), dtype=[("x", "<f4"), ("y", "<f4")])),
    "datetime": lambda: _npy_bytes(np.zeros((3, 3), dtype="datetime64[s]")),
    "huge-header-v1": lambda: b"\x93NUMPY\x01\x00\xff\xff{'descr': '<f4', " + b" " * 40,
    "huge-header-v2": lambda: b"\x93NUMPY\x02\x00\xf0\xff\xff\xff{'descr': '<f4', " + b" " * 40,
    "fortran-garbage": lambda: _npy_header_blob(
        "{'descr': '<f8', 'fortran_order': 'yes', 'shape': (3, 3), }", b"\x01" * 72),
    "fortran-truncated": lambda: _npy_header_blob(
        "{'descr': '<f8', 'fortran_order': True, 'shape': (3, 3), }", b"\x7f" * 10),
    "header-not-dict": lambda: _npy_header_blob("[1, 2, 3]", b"\x00" * 24),
    "bad-version": lambda: _npy_header_blob(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", b"\x00" * 12, (9, 9)),
    "npz-archive": _npz_bytes,
}
for _trick, _maker in NPY_TRICKS.items():
    _name = f"{_trick.replace('-', '_')}.npy"
    case(f"npy-{_trick}-as-input-blur",
         lambda c, m=_maker, n=_name: ["blur", c.write(n, m())], name=_name)
    case(f"npy-{_trick}-as-kernel-convolve",
         lambda c, m=_maker, n=_name: ["convolve", _image(c), c.write(n, m())], name=_name)
    case(f"npy-{_trick}-as-matrix-remix",
         lambda c, m=_maker, n=_name: ["remix", _image(c), "--matrix", c.write(n, m())], name=_name)
for _trick in ("pickle", "npz-archive", "complex", "fortran-truncated"):
    _name = f"{_trick.replace('-', '_')}.npy"
    case(f"npy-{_trick}-as-depthwise-dsconv",
         lambda c, m=NPY_TRICKS[_trick], n=_name: [
             "dsconv", _image(c), "--depthwise", c.write(n, m()), "--pointwise", "gray"],
         name=_name)
    case(f"npy-{_trick}-as-pointwise-chain",
         lambda c, m=NPY_TRICKS[_trick], n=_name: [
             "chain", _image(c), "--", "dsconv", "--depthwise", "box:3",
             "--pointwise", c.write(n, m())], name=_name)
    case(f"npy-{_trick}-as-input-info",
         lambda c, m=NPY_TRICKS[_trick], n=_name: ["info", c.write(n, m())], name=_name)


# ---------------------------------------------------------------- 6. kernels, matrices, options

BAD_IMAGE_KERNELS = [
    "nan", "1 nan 1", "inf", "-inf 1", "1e400", "1 2; 3", "1 2 x", "", " ", ";", "#", "1,,2",
    "gaussian:1e308", "box:1e20", "gaussian:-1", "gaussian:0", "gaussian:nan", "gaussian:inf",
    "gaussian:", "gaussian", "gaussian:1:2", "box:0", "box:-3", "box:2.5", "box:x", "box",
    "nosuchkernel", "sobel-x:3", "identity:2", "lowpass:1000", "bandpass:100:200",
    "missing.npy", "dir/missing.txt",
]
for _k in BAD_IMAGE_KERNELS:
    for _cmd in ("convolve", "dsconv", "chain"):
        def _make(c, k=_k, cmd=_cmd):
            img = _image(c)
            if cmd == "convolve":
                return ["convolve", img, "--", k]
            if cmd == "dsconv":
                return ["dsconv", img, "--depthwise", k, "--pointwise", "gray"]
            return ["chain", img, "--", "convolve", k]
        case(f"kernel-image-{_k!r}-{_cmd}", _make)

BAD_AUDIO_KERNELS = [
    "sharpen", "laplacian", "sobel-y", "emboss", "1 2; 3 4; 5 6", "lowpass:5000", "lowpass:0",
    "lowpass:-100", "lowpass:1000:4", "lowpass:1000:1", "lowpass:abc", "lowpass:nan",
    "highpass:100:1e9", "bandpass:2000:1000", "bandpass:1000", "bandpass:10:20:30:40",
    "highpass:4000", "nan 1", "1,,2", "0.5,,0.5; 1 1",
]
for _i, _k in enumerate(BAD_AUDIO_KERNELS):
    _cmd = ["convolve", "dsconv"][_i % 2]

    def _make(c, k=_k, cmd=_cmd):
        w = _wav(c)
        if cmd == "convolve":
            return ["convolve", w, "--", k]
        return ["dsconv", w, "--depthwise", k, "--pointwise", "mono"]
    case(f"kernel-audio-{_k!r}-{_cmd}", _make)


def _files_kernel(c: Ctx, name: str, blob: bytes, inp=_image) -> list[str]:
    return ["convolve", inp(c), c.write(name, blob)]


KERNEL_FILES = [
    ("ragged.txt", b"1 2 3\n4 5\n"), ("nan.txt", b"1 2\nnan 4\n"), ("inf.csv", b"1,inf\n2,3\n"),
    ("empty.txt", b""), ("comments.txt", b"# nothing\n# here\n"), ("words.csv", b"a,b\nc,d\n"),
    ("binary.txt", b"\xff\xfe\x00\x81\x00junk"), ("percent.txt", b"1 2%\n3 4\n"),
]
for _name, _blob in KERNEL_FILES:
    case(f"kernel-file-{_name}", lambda c, n=_name, b=_blob: _files_kernel(c, n, b), name=_name)
case("kernel-ir-rate-mismatch", lambda c: ["convolve", _wav(c), c.write(
    "ir44k.wav", _audio_bytes_rate(44100))], name="ir44k.wav")
case("kernel-ir-on-image", lambda c: ["convolve", _image(c), _wav(c, "ir.wav")], name="ir.wav")
case("kernel-image-as-ir", lambda c: ["convolve", _wav(c), _image(c, "k.png")], name="k.png")
case("kernel-3ch-ir-on-stereo", lambda c: ["convolve", _wav(c), c.write(
    "ir3.wav", _audio_bytes(np.zeros((50, 3), np.int16) + 100, "WAV"))], name="ir3.wav")
case("kernel-per-channel-count", lambda c: ["convolve", _image(c), c.write(
    "k2.npy", _npy_bytes(np.ones((2, 3, 3))))], name="k2.npy")
case("kernel-normalize-zero-sum", lambda c: ["convolve", _image(c), "laplacian",
                                             "--normalize-kernel"])
case("kernel-normalize-zero-sum-inline", lambda c: ["convolve", _image(c), "--normalize-kernel",
                                                    "sum", "--", "1 -1"])


def _audio_bytes_rate(rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _stereo16(100), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


BAD_IMAGE_MATRICES = [
    "nan", "1 inf 0", "", " ", "1 2; 3", "1 0", "1 0 0 0 0", "0.5 x 0.5", "nosuchpreset",
    "mono", "mid-side", "1 0 0 | 0 1", "|", "||", "1e400 0 0", "1,,0,0", "0.3,0.3,,0.3",
]
for _i, _m in enumerate(BAD_IMAGE_MATRICES):
    _cmd = ["remix", "dsconv", "chain"][_i % 3]

    def _make(c, m=_m, cmd=_cmd):
        img = _image(c)
        if cmd == "remix":
            return ["remix", img, "--matrix", m]
        if cmd == "dsconv":
            return ["dsconv", img, "--depthwise", "box:3", "--pointwise", m]
        return ["chain", img, "--", "remix", "--matrix", m]
    case(f"matrix-image-{_m!r}-{_cmd}", _make)

for _m in ["gray", "sepia", "invert", "1 0 0; 0 1 0; 0 0 1", "1 1 1", "swap3"]:
    case(f"matrix-audio-{_m!r}-remix", lambda c, m=_m: ["remix", _wav(c), "--matrix", m])

REMIX_OPTION_FAULTS = [
    ("groups-2-on-3ch", ["--matrix", "1", "--groups", "2"]),
    ("groups-4-on-3ch", ["--matrix", "1 0 0", "--groups", "4"]),
    ("shuffle-2-of-3", ["--matrix", "sepia", "--shuffle", "2"]),
    ("bias-2-for-3", ["--matrix", "sepia", "--bias", "0.1 0.2"]),
    ("bias-nan", ["--matrix", "sepia", "--bias", "nan"]),
    ("bias-junk", ["--matrix", "sepia", "--bias", "x"]),
    ("dry-with-1-output", ["--matrix", "gray", "--dry", "1"]),
    ("blocks-wrong-groups", ["--matrix", "1 0; 0 1 | 0 1; 1 0", "--groups", "3"]),
]
for _label, _opts in REMIX_OPTION_FAULTS:
    case(f"matrix-{_label}", lambda c, o=_opts: ["remix", _image(c), *o])

MATRIX_FILES = [("ragged.txt", b"1 0 0\n0 1\n"), ("nan.txt", b"nan 0 0\n"), ("empty.txt", b""),
                ("words.txt", b"gray\n"), ("cols4.npy", None), ("threed.npy", None)]
for _name, _blob in MATRIX_FILES:
    def _make(c, n=_name, b=_blob):
        if n == "cols4.npy":
            b = _npy_bytes(np.ones((3, 4)))
        elif n == "threed.npy":
            b = _npy_bytes(np.ones((2, 3, 3)))
        return ["remix", _image(c), "--matrix", c.write(n, b)]
    case(f"matrix-file-{_name}", _make)

# option values: Click usage errors, exit status 2
USAGE = [
    ("blur", ["--sigma", "nan"]), ("blur", ["--sigma", "inf"]), ("blur", ["--sigma", "-1"]),
    ("blur", ["--sigma", "0"]), ("blur", ["--sigma", "1e400"]), ("blur", ["--sigma", "abc"]),
    ("blur", ["--radius", "-1"]), ("blur", ["--radius", "1.5"]), ("blur", ["--kind", "median"]),
    ("blur", ["--method", "magic"]), ("blur", ["--mode", "half"]),
    ("blur", ["--boundary", "sideways"]), ("blur", ["--scale", "nan"]),
    ("blur", ["--bias", "inf"]), ("blur", ["--dry", "nan"]), ("blur", ["--wet", "x"]),
    ("blur", ["--jobs", "0"]), ("blur", ["--jobs", "-3"]), ("blur", ["--quality", "0"]),
    ("blur", ["--quality", "101"]), ("blur", ["--compression", "10"]),
    ("blur", ["--max-pixels", "0"]), ("blur", ["--max-memory", "1e400"]),
    ("blur", ["--max-memory", "abc"]), ("blur", ["--max-memory", "-5"]),
    ("blur", ["--max-memory", "nanG"]), ("blur", ["--stream-above", "x"]),
    ("blur", ["--no-such-option"]),
    ("convolve", ["--normalize-kernel", "median", "box:3"]), ("convolve", ["--scale", "inf",
                                                                           "box:3"]),
    ("remix", ["--matrix", "gray", "--groups", "0"]), ("remix", ["--matrix", "gray",
                                                                 "--shuffle", "0"]),
    ("remix", ["--matrix", "gray", "--dry", "inf"]), ("remix", []),
    ("dsconv", ["--depthwise", "box:3"]), ("dsconv", ["--pointwise", "gray"]),
    ("dsconv", ["--depthwise", "box:3", "--pointwise", "gray", "--method", "x"]),
    ("info", ["--max-pixels", "-1"]), ("info", ["--bogus"]),
    ("chain", ["--max-memory", "1e400", "--", "blur"]), ("chain", ["--quality", "x", "--",
                                                                   "blur"]),
]
for _i, (_cmd, _opts) in enumerate(USAGE):
    case(f"usage-{_cmd}-{' '.join(_opts) or 'missing-matrix'}",
         lambda c, cmd=_cmd, o=_opts: [cmd, _image(c), *o], code=2)

for _label, _args in [
    ("blur-no-input", ["blur"]), ("info-no-input", ["info"]), ("convolve-no-kernel", ["convolve"]),
    ("kernel-plot-no-file", ["kernel", "gaussian:1", "--plot"]), ("kernel-no-name", ["kernel"]),
    ("kernel-rate-0", ["kernel", "lowpass:100", "--rate", "0", "-o", "k.npy"]),
    ("no-such-command", ["sharpen", "a.png"]),
]:
    case(f"usage-{_label}", lambda c, a=_args: list(a), code=2)

CHAIN_FAULTS = [
    ("no-stages", []), ("empty-stage", ["--", "blur", "+", "+", "blur"]),
    ("trailing-plus", ["--", "blur", "+"]), ("unknown-stage", ["--", "sharpen"]),
    ("stage-bad-option", ["--", "blur", "--sigma", "-2"]),
    ("stage-unknown-option", ["--", "blur", "--frobnicate"]),
    ("chain-option-in-stage", ["--", "blur", "-o", "x.png"]),
    ("normalize-not-last", ["--", "blur", "--normalize", "+", "remix", "--matrix", "gray"]),
    ("stage-missing-kernel", ["--", "convolve"]), ("stage-missing-matrix", ["--", "remix"]),
    ("stage-input-given", ["--", "blur", "a.png"]),
]
for _label, _tail in CHAIN_FAULTS:
    case(f"usage-chain-{_label}", lambda c, t=_tail: ["chain", _image(c), *t], code=2)

KERNEL_COMMAND = [
    "nosuch", "gaussian:-1", "gaussian:0", "gaussian:nan", "gaussian:1e308", "box:1e20", "box:0",
    "box:-2", "box:2.5", "lowpass:1000", "nan", "1 2 x", "sharpen:1",
]
for _k in KERNEL_COMMAND:
    case(f"kernel-cmd-{_k!r}", lambda c, k=_k: ["kernel", k, "-o", "k.npy"])
for _label, _args in [
    ("lowpass-above-nyquist", ["lowpass:5000", "--rate", "8000", "-o", "k.npy"]),
    ("bandpass-reversed", ["bandpass:300:200", "--rate", "8000", "-o", "k.txt"]),
    ("even-taps", ["highpass:300:30", "--rate", "8000", "-o", "k.csv"]),
    ("sharpen-audio", ["sharpen", "--audio", "-o", "k.npy"]),
    ("laplacian-audio", ["laplacian", "--audio", "-o", "-"]),
    ("plot-gif", ["box:3", "--plot", "k.gif"]), ("plot-no-extension", ["box:3", "--plot", "k"]),
    ("plot-and-output-same", ["box:3", "--plot", "k.png", "-o", "k.png"]),
    ("rate-for-image-only", ["sharpen", "--rate", "8000", "--json"]),
]:
    case(f"kernel-cmd-{_label}", lambda c, a=_args: ["kernel", *a])

# Kernels larger than memory allows: a real process under an address-space limit.
HUGE = dict(proc=True, timeout=20, by_limit=True)
case("huge-kernel-cmd-box-20000", lambda c: ["kernel", "box:20000", "-o", "k.npy"], **HUGE)
case("huge-kernel-cmd-gaussian-1e6", lambda c: ["kernel", "gaussian:1e6", "-o", "k.txt"], **HUGE)
case("huge-kernel-direct-box-20000",
     lambda c: ["convolve", _image(c), "box:20000", "--method", "direct", "--max-memory", "1G"],
     **HUGE)
case("huge-kernel-direct-gaussian-3000",
     lambda c: ["blur", _image(c), "--sigma", "3000", "--method", "direct", "--max-memory", "1G"],
     **HUGE)
case("huge-kernel-npy-header",
     lambda c: ["convolve", _image(c), c.write("bigk.npy", _npy_bomb())], name="bigk.npy",
     proc=True, timeout=30)

# file names with a newline: still one line
case("name-newline-junk-input",
     lambda c: ["blur", c.write("bad\nname.png", b"junk" * 100)])
case("name-newline-missing-input", lambda c: ["info", "no\nsuch.png"])
case("name-newline-missing-kernel", lambda c: ["convolve", _image(c), "k\nk.npy"])


# ---------------------------------------------------------------- 7. output faults


def _make_readonly(c: Ctx, d: Path) -> None:
    """No one may create files in ``d`` (root ignores modes: then make it immutable)."""
    os.chmod(d, 0o555)
    c.cleanups.append(lambda: os.chmod(d, 0o755))
    if os.access(d, os.W_OK):
        r = subprocess.run(["chattr", "+i", str(d)], capture_output=True)
        assert r.returncode == 0, f"cannot make {d} read-only: {r.stderr!r}"
        c.cleanups.insert(0, lambda: subprocess.run(["chattr", "-i", str(d)], check=True))


def _readonly(c: Ctx, name="ro") -> str:
    (c.d / name).mkdir()
    _make_readonly(c, c.d / name)
    return name


def _in_readonly(c: Ctx) -> str:
    """ro/a.png in a read-only folder: the default output beside it cannot be written."""
    (c.d / "ro").mkdir()
    (c.d / "ro" / "a.png").write_bytes(valid("png8"))
    _make_readonly(c, c.d / "ro")
    return "ro/a.png"


def _link(c: Ctx, target: str, name: str, hard=False) -> str:
    (os.link if hard else os.symlink)(target, c.d / name)
    return name


def _npy_kernel(c: Ctx, name="k.npy") -> str:
    return c.write(name, _npy_bytes(np.full((3, 3), 1 / 9)))


def _npy_matrix(c: Ctx, name="m.npy") -> str:
    return c.write(name, _npy_bytes(np.array([[0.299, 0.587, 0.114]])))


OUTPUT_FAULTS = [
    ("readonly-folder-default-output", lambda c: ["blur", _in_readonly(c)], "a"),
    ("readonly-folder-o-file", lambda c: ["remix", _image(c), "--matrix", "gray", "-o",
                                          _readonly(c) + "/out.png"], "out.png"),
    ("readonly-folder-o-dir", lambda c: ["convolve", _image(c), "box:3", "-o", _readonly(c) + "/"],
     None),
    ("readonly-folder-kernel-cmd", lambda c: ["kernel", "box:3", "-o", _readonly(c) + "/k.npy"],
     "k.npy"),
    ("proc-folder", lambda c: ["blur", _image(c), "-o", "/proc/pwfilter-out.png"], "pwfilter-out"),
    ("default-output-is-dir", lambda c: [_dir(c, "a.blur.png") and "blur", _image(c)],
     "a.blur.png"),
    ("default-output-is-dir-overwrite",
     lambda c: [_dir(c, "a.remix.png") and "remix", _image(c), "--matrix", "gray", "--overwrite"],
     "a.remix.png"),
    ("o-dir-entry-is-dir", lambda c: [(c.d / "out" / "a.png").mkdir(parents=True) or "blur",
                                      _image(c), "-o", "out/", "--overwrite"], "a.png"),
    ("kernel-cmd-output-is-dir", lambda c: ["kernel", "box:3", "-o", _dir(c, "k.npy"),
                                            "--overwrite"], "k.npy"),
    ("onto-input", lambda c: ["blur", _image(c), "-o", "a.png", "--overwrite"], "a.png"),
    ("onto-input-no-overwrite", lambda c: ["blur", _image(c), "-o", "a.png"], "a.png"),
    ("onto-input-dot-slash", lambda c: ["convolve", _image(c), "box:3", "-o", "./a.png",
                                        "--overwrite"], "a.png"),
    ("onto-input-dotdot", lambda c: [_dir(c, "sub") and "remix", _image(c), "--matrix", "sepia",
                                     "-o", "sub/../a.png", "--overwrite"], "a.png"),
    ("onto-input-symlink", lambda c: ["dsconv", _image(c), "--depthwise", "box:3", "--pointwise",
                                      "sepia", "-o", _link(c, "a.png", "l.png"), "--overwrite"],
     "l.png"),
    ("onto-input-hardlink", lambda c: ["chain", _image(c), "-o", _link(c, "a.png", "h.png", True),
                                       "--overwrite", "--", "blur"], "h.png"),
    ("onto-input-audio", lambda c: ["blur", _wav(c), "-o", "music.wav", "--overwrite"],
     "music.wav"),
    ("onto-input-npy", lambda c: ["blur", c.write("x.npy", valid("npy")), "-o", "x.npy",
                                  "--overwrite"], "x.npy"),
    ("onto-kernel", lambda c: ["convolve", _image(c), _npy_kernel(c), "-o", "k.npy",
                               "--overwrite"], "k.npy"),
    ("onto-kernel-symlink", lambda c: ["convolve", _image(c), _npy_kernel(c), "-o",
                                       _link(c, "k.npy", "lk.npy"), "--overwrite"], "lk.npy"),
    ("onto-depthwise", lambda c: ["dsconv", _image(c), "--depthwise", _npy_kernel(c),
                                  "--pointwise", "gray", "-o", "k.npy", "--overwrite"], "k.npy"),
    ("onto-pointwise", lambda c: ["dsconv", _image(c), "--depthwise", "box:3", "--pointwise",
                                  _npy_matrix(c), "-o", "m.npy", "--overwrite"], "m.npy"),
    ("onto-matrix", lambda c: ["remix", _image(c), "--matrix", _npy_matrix(c), "-o", "m.npy",
                               "--overwrite"], "m.npy"),
    ("onto-matrix-dot-slash", lambda c: ["remix", _image(c), "--matrix", _npy_matrix(c), "-o",
                                         "./m.npy", "--overwrite"], "m.npy"),
    ("onto-chain-kernel", lambda c: ["chain", _image(c), "-o", "k.npy", "--overwrite", "--",
                                     "convolve", _npy_kernel(c)], "k.npy"),
    ("onto-chain-matrix", lambda c: ["chain", _image(c), "-o", "m.npy", "--overwrite", "--",
                                     "blur", "+", "remix", "--matrix", _npy_matrix(c)], "m.npy"),
    ("onto-ir", lambda c: ["convolve", _wav(c), _wav(c, "ir.wav"), "-o", "ir.wav",
                           "--overwrite"], "ir.wav"),
    ("onto-ir-hardlink", lambda c: ["convolve", _wav(c), _wav(c, "ir.wav"), "-o",
                                    _link(c, "ir.wav", "hir.wav", True), "--overwrite"],
     "hir.wav"),
    ("onto-chain-ir", lambda c: ["chain", _wav(c), "-o", "ir.wav", "--overwrite", "--",
                                 "convolve", _wav(c, "ir.wav")], "ir.wav"),
    ("missing-folder", lambda c: ["blur", _image(c), "-o", "nodir/out.png"], "nodir"),
    ("missing-folder-deep", lambda c: ["remix", _wav(c), "--matrix", "mono", "-o",
                                       "no/such/dir/out.wav"], "out.wav"),
    ("missing-folder-kernel-cmd", lambda c: ["kernel", "box:3", "-o", "nodir/k.npy"], "k.npy"),
    ("exists-no-overwrite", lambda c: ["blur", _image(c), "-o", _image(c, "out.png")], "out.png"),
    ("default-exists-no-overwrite", lambda c: ["blur", _image(c), _image(c, "a.blur.png") and "-q"],
     "a.blur.png"),
    ("kernel-cmd-exists", lambda c: ["kernel", "box:3", "-o", _npy_kernel(c)], "k.npy"),
    ("empty-output-path", lambda c: ["blur", _image(c), "-o", ""], None),
    ("one-file-for-two-inputs", lambda c: ["blur", _image(c), _image(c, "b.png"), "-o",
                                           "out.png"], "out.png"),
    ("image-to-wav", lambda c: ["blur", _image(c), "-o", "out.wav"], "out.wav"),
    ("audio-to-png", lambda c: ["remix", _wav(c), "--matrix", "mono", "-o", "out.png"],
     "out.png"),
    ("rgba-to-jpeg", lambda c: ["blur", c.write("rgba.png", imagecodecs.png_encode(
        _rgb8((8, 9, 4)))), "-o", "out.jpg"], "rgba.png"),
    ("unknown-suffix", lambda c: ["blur", _image(c), "-o", "out.xyz"], "out.xyz"),
    ("stdout-unknown-format", lambda c: ["blur", _image(c), "-o", "-", "--format", "xyz"], None),
    ("stdout-image-as-wav", lambda c: ["convolve", _image(c), "box:3", "-o", "-", "--format",
                                       "wav"], None),
    ("devnull-output", lambda c: ["blur", _image(c), "-o", "/dev/null"], "/dev/null"),
    ("devnull-output-overwrite", lambda c: ["blur", _image(c), "-o", "/dev/null", "--overwrite"],
     "/dev/null"),
]
for _label, _make, _name in OUTPUT_FAULTS:
    case(f"output-{_label}", _make, name=_name)

# stdout on /dev/full: writing the result (or the description) fails with ENOSPC
for _label, _args in [
    ("blur", lambda c: ["blur", _image(c), "-o", "-", "--format", "png"]),
    ("convolve-audio", lambda c: ["convolve", _wav(c), "box:3", "-o", "-"]),
    ("remix-npy", lambda c: ["remix", _image(c), "--matrix", "gray", "-o", "-", "--format",
                             "npy"]),
    ("dsconv", lambda c: ["dsconv", _image(c), "--depthwise", "box:3", "--pointwise", "gray",
                          "-o", "-", "--format", "tif"]),
    ("chain", lambda c: ["chain", _wav(c), "-o", "-", "--", "blur"]),
    ("kernel", lambda c: ["kernel", "gaussian:2", "-o", "-"]),
    ("info", lambda c: ["info", _image(c)]),
    ("info-json", lambda c: ["info", "--json", _wav(c)]),
]:
    case(f"output-devfull-{_label}", _args, proc=True, stdout="/dev/full")


# ======================================================================= running


def _snap(folder: Path) -> dict[str, object]:
    """Every entry below ``folder`` (hidden temporaries included): a regular file's bytes,
    or its type (FIFOs are never opened)."""
    out: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = p.lstat()
            key = str(p.relative_to(folder))
            if stat.S_ISREG(st.st_mode):
                out[key] = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                out[key] = ("symlink", os.readlink(p))
            else:
                out[key] = ("type", stat.S_IFMT(st.st_mode))
    return out


def _in_process(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``pwfilter.cli.main(argv)`` here; Python warnings count as the lines a real process
    would print for them on stderr (pytest would otherwise collect them silently)."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                   for w in caught if not issubclass(w.category, RuntimeWarning))
    return code, out, err


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))


def _process(c: Case, argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``python -m pwfilter ARGV`` (as conftest's ``run``), with a timeout, at most 6 GiB of
    address space and 256 MiB files; stdout to ``c.stdout`` when given."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out_fh = open(c.stdout, "wb") if c.stdout else subprocess.PIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "pwfilter", *map(str, argv)], cwd=cwd,
                              input=c.stdin if c.stdin is not None else b"", stdout=out_fh,
                              stderr=subprocess.PIPE, timeout=c.timeout, env=env,
                              preexec_fn=_limits)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hangs: no exit within {c.timeout} s; stderr: {exc.stderr!r}")
    finally:
        if c.stdout:
            out_fh.close()
    out = proc.stdout.decode("utf-8", "replace") if proc.stdout is not None else ""
    return proc.returncode, out, proc.stderr.decode("utf-8", "replace")


def check_outcome(c: Case, code: int, out: str, err: str) -> None:
    where = f"exit {code}; stderr: {err!r}"
    assert code in (1, 2), where
    if c.code is not None:
        assert code == c.code, where
    assert "Traceback" not in err and "Traceback" not in out, where
    assert "error: internal error" not in err, where
    assert out == "", f"stdout: {out[:200]!r}; {where}"
    if code == 1:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("pwfilter: error: "), where
        if c.name:
            assert c.name in lines[0], f"the error line does not name {c.name!r}: {where}"
        if c.by_limit:
            assert "out of memory" not in err, f"not refused by a limit before the work: {where}"
    else:
        assert "Error:" in err and "pwfilter: error:" not in err, where


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_clean_error(c: Case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ctx = Ctx(tmp_path)
    try:
        argv = c.make(ctx)
        before = _snap(tmp_path)
        if c.proc:
            code, out, err = _process(c, argv, tmp_path)
        else:
            code, out, err = _in_process(capsys, argv)
        after = _snap(tmp_path)
    finally:
        for undo in ctx.cleanups:
            undo()
    check_outcome(c, code, out, err)
    assert sorted(after) == sorted(before), "files appeared or vanished"
    changed = [k for k in before if after[k] != before[k]]
    assert not changed, f"changed: {changed}"


def test_there_are_enough_cases_for_every_command():
    assert len(CASES) >= 300
    assert len({c.id for c in CASES}) == len(CASES), "case ids are unique"
    for command in ("blur", "convolve", "remix", "dsconv", "chain", "kernel", "info"):
        assert sum(command in c.id for c in CASES) >= 10, command


# ======================================================================= fairness


@pytest.mark.parametrize("key", list(FORMATS))
def test_commands_accept_the_valid_files(key, tmp_path, monkeypatch, capsys):
    """Every command line the media cases run succeeds on the unmutated file, so the media
    cases fail only because of the damage."""
    monkeypatch.chdir(tmp_path)
    fmt = FORMATS[key]
    _write_good_wav(tmp_path)
    f = "ok" + fmt.suffix
    (tmp_path / f).write_bytes(valid(key))
    for name, argv in _commands(fmt, f).items():
        code, out, err = _in_process(capsys, [*argv, "-q"] if name != "info" and name != "chain"
                                     else argv)
        assert code == 0, (name, err)
        for p in tmp_path.iterdir():
            if p.name not in (f, GOOD_WAV):
                p.unlink()


@pytest.mark.parametrize("fmt,subtype", [(f, s) for f, _ in AUDIO_CONTAINERS
                                         for s in ("PCM_16", "PCM_24", "FLOAT")])
def test_audio_span_is_the_sample_data(fmt, subtype):
    """The truncated-audio cases cut inside the samples: the span found holds them all."""
    blob, start, end = _audio_with_span(fmt, subtype)
    width = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}[subtype]
    assert end - start >= (FRAMES - 1) * 2 * width
    assert start > 0 and end <= len(blob)
