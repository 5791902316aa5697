"""The one media layer: every file becomes one array model, and back.

Every input — image, audio or ``.npy`` — becomes a :class:`Media`: an array
with channels last (image ``(H, W, C)``, audio ``(n, C)``) whose values are
normalized (images to [0, 1], audio to [-1, 1]; 8- and 16-bit images are kept
as decoded integers with the factor that normalizes them) and the metadata
needed to write the result back in the same format, bit depth, mode, rate
and subtype.

This module sniffs formats, loads and writes ``.npy`` arrays itself, and
hands images to :mod:`pwfilter.imagefile` and audio to
:mod:`pwfilter.audiofile` (libsndfile's private corners are in
:mod:`pwfilter.sndfile`). No other module opens a media file.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import stat
import sys
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from pwfilter.errors import PwfilterError
from pwfilter.limits import Limits

IMAGE_FORMATS = {"PNG", "JPEG", "TIFF", "BMP", "WEBP"}
IMAGE_SUFFIXES = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
    ".bmp": "BMP", ".webp": "WEBP",
}
FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp",
                 "NPY": ".npy", "WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg", "AIFF": ".aiff",
                 "MP3": ".mp3", "W64": ".w64", "RF64": ".wav", "CAF": ".caf", "ZARR": ".zarr"}
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
#: Normalizing factors of integer image samples.
INTEGER_SCALE = {np.uint8: 1.0 / 255.0, np.uint16: 1.0 / 65535.0}
DEFAULT_QUALITY = 92


@dataclass(frozen=True)
class Media:
    """A decoded file: samples with channels last, plus metadata.

    Attributes
    ----------
    samples : (H, W, C) for images, (n, C) for audio and 1-/2-D arrays: normalized
        floats, or for 8- and 16-bit images the decoded integers (``scale``
        normalizes them), so that filters convert them on the way instead of
        holding a float copy of the whole image.
    data : the samples as normalized floats (made once, when first asked for).
    kind : ``"image"`` or ``"audio"`` (a 1-D/2-D ``.npy`` is a signal: ``"audio"``).
    format : container, e.g. ``"PNG"``, ``"WAV"``, ``"NPY"``.
    bits : image bit depth (8 or 16; 0 for float ``.npy`` images).
    rate : audio sample rate in Hz (0 when unknown, as for ``.npy``).
    subtype : libsndfile subtype of audio (``"PCM_16"``, ``"FLOAT"``, ...).
    name : how the source is named in messages.
    """

    samples: np.ndarray
    kind: str
    format: str
    bits: int = 0
    rate: int = 0
    subtype: str = ""
    name: str = ""

    @property
    def scale(self) -> float:
        """What ``samples`` are multiplied by to be normalized (1/255 for 8-bit integers)."""
        return INTEGER_SCALE.get(self.samples.dtype.type, 1.0)

    @functools.cached_property
    def data(self) -> np.ndarray:
        if self.samples.dtype.kind == "f":
            return self.samples
        out = np.empty(self.samples.shape, np.float32)
        np.multiply(self.samples, np.float32(self.scale), out=out)
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return self.samples.shape

    @property
    def channels(self) -> int:
        return int(self.samples.shape[-1])

    @property
    def mode(self) -> str:
        return MODES.get(self.channels, f"{self.channels}ch")

    @property
    def has_alpha(self) -> bool:
        """Images with 2 or 4 channels (LA, RGBA); a ``.npy`` array is raw data, never alpha."""
        return self.kind == "image" and self.format != "NPY" and self.channels in (2, 4)

    def replace(self, **changes) -> Media:
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------- loading


def read_source(source: str | os.PathLike, name: str) -> bytes | None:
    """Bytes of stdin for ``"-"``; for a path, check it is a readable, non-empty file."""
    if str(source) == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise PwfilterError(f"{name}: empty input")
        return data
    path = os.fspath(source)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise PwfilterError(f"{name}: no such file") from None
    except OSError as exc:
        raise PwfilterError(f"{name}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise PwfilterError(f"{name}: is a directory")
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO would wait for a writer for ever; a device never ends.
        raise PwfilterError(f"{name}: not a regular file (a FIFO, device or socket); "
                            "give a file, or - for standard input")
    if st.st_size == 0:
        raise PwfilterError(f"{name}: empty file")
    if not os.access(path, os.R_OK):
        raise PwfilterError(f"{name}: permission denied")
    return None


def sniff_format(head: bytes, filename: str = "") -> str | None:
    """Container format from a file's first bytes (the extension is not trusted)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head.startswith(b"fLaC"):
        return "FLAC"
    if head.startswith(b"OggS"):
        return "OGG"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head.startswith(b"\x93NUMPY"):
        return "NPY"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
                                   and filename.lower().endswith(".mp3")):
        return "MP3"
    return None


def load_media(source: str | os.PathLike, *, name: str | None = None,
               limits: Limits = Limits()) -> Media:
    """Load an image, audio file or ``.npy`` into a :class:`Media`.

    ``source`` may be ``"-"`` for standard input. Every failure — missing,
    empty, truncated, corrupt, unrecognised or too large — raises
    :class:`PwfilterError` naming the file.
    """
    name = name or ("<stdin>" if str(source) == "-" else os.fspath(source))
    if str(source) != "-" and os.path.isdir(source):
        from pwfilter.regions import is_zarr

        if is_zarr(os.fspath(source)):
            return _load_zarr(os.fspath(source), name, limits)
    blob = read_source(source, name)
    return _decode(source, blob, name, limits)


def _load_zarr(path: str, name: str, limits: Limits) -> Media:
    """A Zarr image store read whole (one that fits in memory; larger ones are filtered
    in chunks): 8- and 16-bit samples as integers, float samples as they are."""
    from pwfilter.regions import open_source

    src = open_source(path, name, "ZARR")
    h, w, c = src.shape
    limits.check_pixels(w, h, name)
    limits.check_memory(h * w * c * src.dtype.itemsize, name)
    samples = np.ascontiguousarray(src.read(0, h, 0, w))
    return Media(samples, "image", "ZARR", src.bits if samples.dtype.kind == "u" else 0,
                 name=name)


def _decode(source, blob: bytes | None, name: str, limits: Limits) -> Media:
    """Decode from ``blob`` when given (stdin), else from the file at ``source``."""
    head = blob[:64] if blob is not None else _read_head(source)
    fmt = sniff_format(head, name)
    if fmt is None:
        fmt = _sniff_soundfile(source, blob)
        if fmt is None:
            raise PwfilterError(f"{name}: not a recognised image, audio or .npy file")
    if fmt == "NPY":
        return _load_npy(source, blob, name, limits)
    if fmt in IMAGE_FORMATS:
        from pwfilter.imagefile import load_image

        return load_image(blob if blob is not None else _read_bytes(source, name, limits), fmt,
                          name, limits)
    from pwfilter.audiofile import load_audio

    return load_audio(source if blob is None else io.BytesIO(blob), name, limits)


def _read_bytes(path, name: str, limits: Limits) -> bytes:
    """A whole image file, read once its size is known to fit the memory budget."""
    with open(path, "rb") as fh:
        limits.check_memory(os.fstat(fh.fileno()).st_size, name)
        return fh.read()


def _sniff_soundfile(source, blob) -> str | None:
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(blob) if blob is not None else os.fspath(source))
    except Exception:  # noqa: BLE001 - any libsndfile refusal means "not audio"
        return None
    return info.format


def _load_npy(source, blob, name: str, limits: Limits) -> Media:
    from pwfilter.specs import load_npy

    arr = load_npy(io.BytesIO(blob) if blob is not None else source, name)
    if arr.dtype.kind not in "biuf" or arr.ndim not in (1, 2, 3) or arr.size == 0:
        raise PwfilterError(
            f"{name}: .npy must hold a non-empty 1-, 2- or 3-D numeric array, "
            f"got shape {arr.shape} of {arr.dtype}")
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    data = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(data).all():
        raise PwfilterError(f"{name}: the array holds NaN or Inf values")
    if data.ndim == 1:
        data = data[:, None]
    kind = "image" if data.ndim == 3 else "audio"
    if kind == "image":
        limits.check_pixels(data.shape[1], data.shape[0], name)
    return Media(data, kind, "NPY", name=name)


# --------------------------------------------------------------------- saving


@dataclass(frozen=True)
class SaveOptions:
    """How to encode: JPEG/WebP quality, PNG/TIFF/FLAC compression level."""

    quality: int = DEFAULT_QUALITY
    compression: int | None = None


def format_for_path(path: str, kind: str, default: str) -> str:
    """Output container from a file name's suffix (or the input's when it has none)."""
    suffix = os.path.splitext(path)[1].lower()
    if not suffix:
        return default
    try:
        return format_for_suffix(suffix, kind)
    except PwfilterError as exc:
        raise PwfilterError(f"{path}: {exc}") from None  # name the file in the one error line


def format_for_suffix(suffix: str, kind: str) -> str:
    suffix = suffix.lower() if suffix.startswith(".") else "." + suffix.lower()
    if suffix == ".npy":
        return "NPY"
    if suffix == ".zarr":
        if kind != "image":
            raise PwfilterError(f"cannot write {kind} as .zarr (an image store)")
        return "ZARR"
    if suffix in IMAGE_SUFFIXES:
        if kind != "image":
            raise PwfilterError(f"cannot write {kind} as {suffix} (an image format)")
        return IMAGE_SUFFIXES[suffix]
    import soundfile as sf

    fmt = {".aif": "AIFF", ".mp3": "MP3", ".oga": "OGG", ".opus": "OGG"}.get(
        suffix, suffix[1:].upper())
    if fmt in sf.available_formats():
        if kind != "audio":
            raise PwfilterError(f"cannot write an image as {suffix} (an audio format)")
        return fmt
    raise PwfilterError(f"unknown output format {suffix!r}")


#: Values per quantization strip (1 MiB of float32): large enough that threads do not
#: wait on each other, small enough to stay in cache (measured 0.019 s for 12 MP RGB).
_QUANTIZE_STRIP = 1 << 18


def quantize(data: np.ndarray, lo: float, hi: float, scale: float, dtype,
             workers: int = 1) -> tuple[np.ndarray, int]:
    """Scale, round and clip to an integer grid; return the array and how many values clipped.

    Clipped: moved by more than one step of the grid (a peak of exactly +1.0
    written as PCM becomes the largest code, one step down: that is rounding);
    NaN and Inf values count as clipped and become 0; finite values too large
    for the float type once scaled clip to the range like any other. Works in strips (in ``workers``
    threads), so no temporary as large as ``data`` is made; ``data`` is not
    changed. Integer data are scaled in float32.
    """
    out = np.empty(data.shape, dtype)
    if not data.size:
        return out, 0
    work = np.float64 if data.dtype == np.float64 else np.float32
    per_row = max(1, data[0].size)
    step = max(1, _QUANTIZE_STRIP // per_row)
    starts = range(0, data.shape[0], step)

    def one(a: int) -> int:
        src = data[a:a + step]
        with np.errstate(over="ignore"):  # huge finite values become ±Inf: clipped below
            t = np.multiply(src, work(scale), dtype=work)
        clipped = 0
        least, most = t.min(), t.max()
        if not (least >= lo - 1 and most <= hi + 1):  # also false for NaN
            bad = ~np.isfinite(src) if src.dtype.kind == "f" else np.zeros(src.shape, bool)
            nbad = int(np.count_nonzero(bad))
            if nbad:
                t[bad] = 0
            clipped = int(np.count_nonzero((t < lo - 1) | (t > hi + 1))) + nbad
        np.rint(t, out=t)
        if not (least >= lo and most <= hi):  # within the range, rounding stays inside it
            np.clip(t, lo, hi, out=t)
        out[a:a + step] = t
        return clipped

    from pwfilter import parallel

    return out, sum(parallel.run(one, starts, workers))


def save_notes(source: Media, result: Media, fmt: str) -> list[str]:
    """What writing ``result`` as ``fmt`` changes that the user did not ask for."""
    notes = []
    from pwfilter.imagefile import image_bits_for

    if result.kind == "image" and source.bits == 16 and fmt in IMAGE_FORMATS \
            and image_bits_for(result, fmt) == 8:
        notes.append(f"{fmt} holds 8 bits per sample: the 16-bit result is reduced to 8 bits")
    if result.kind == "image" and source.bits == 32 and fmt in IMAGE_FORMATS \
            and image_bits_for(result, fmt) != 32:
        notes.append(f"{fmt} holds integers: the float result is quantized to "
                     f"{image_bits_for(result, fmt)} bits (values outside [0, 1] clip)")
    if result.kind == "audio" and fmt not in ("NPY",) and not result.rate:
        notes.append("no sample rate in the input: the audio file is written at 48000 Hz")
    return notes


def write_media(media: Media, target: str | BinaryIO, fmt: str,
                options: SaveOptions = SaveOptions()) -> int:
    """Write ``media`` to a path or binary file object in ``fmt``; return the clipped count.

    The caller owns atomicity (see :mod:`pwfilter.output`): ``target`` is a
    temporary path or an in-memory buffer.
    """
    from pwfilter.output import open_new

    if fmt == "NPY":
        arr = np.ascontiguousarray(media.data, dtype=np.float32)
        if isinstance(target, (str, os.PathLike)):
            # np.save(path) would append ".npy" to the temporary name and leave it empty.
            with open_new(target) as fh:
                np.save(fh, arr, allow_pickle=False)
        else:
            np.save(target, arr, allow_pickle=False)
        return 0
    if fmt in IMAGE_FORMATS:
        from pwfilter.imagefile import encode_image

        pieces, clipped = encode_image(media, fmt, options)
        if isinstance(target, (str, os.PathLike)):
            with open_new(target) as fh:
                fh.writelines(pieces)
        else:
            target.writelines(pieces)
        return clipped
    if media.kind != "audio":
        raise PwfilterError(f"cannot write an image as {fmt} audio")
    from pwfilter.audiofile import AudioWriter, audio_subtype_for

    subtype = audio_subtype_for(media, fmt)
    rate = media.rate or 48000
    with AudioWriter(target, rate=rate, channels=media.channels, fmt=fmt, subtype=subtype,
                     options=options) as writer:
        writer.write(media.data)
    return writer.clipped


def describe_file(source: str, *, limits: Limits = Limits()) -> dict:
    """Facts for ``pwfilter info``; audio is described from its header alone."""
    name = "<stdin>" if source == "-" else source
    from pwfilter import regions

    if source != "-" and regions.is_zarr(source):
        return _describe_region(regions.open_source(source, name, "ZARR"))
    blob = read_source(source, name)
    head = blob[:64] if blob is not None else _read_head(source)
    fmt = sniff_format(head, name)
    if fmt == "TIFF" and blob is None:
        return _describe_region(regions.open_source(source, name, "TIFF"))
    if blob is None and fmt not in IMAGE_FORMATS | {"NPY"}:
        if fmt is None and _sniff_soundfile(source, None) is None:
            raise PwfilterError(f"{name}: not a recognised image, audio or .npy file")
        from pwfilter.audiofile import audio_info

        info = audio_info(source, name)
        return {"input": name, "kind": "audio", "format": info.format, "frames": info.frames,
                "channels": info.channels, "rate": info.samplerate, "subtype": info.subtype,
                "duration": round(info.frames / info.samplerate, 6)}
    if fmt in IMAGE_FORMATS:
        from pwfilter.imagefile import image_header

        facts = image_header(blob if blob is not None else _read_bytes(source, name, limits),
                             fmt, name,
                             limits)
        return {"input": name, "kind": "image", "format": fmt, "width": facts["width"],
                "height": facts["height"], "channels": facts["channels"],
                "mode": facts["mode"], "bits": facts["bits"]}
    if fmt == "NPY" and blob is None:
        return _describe_npy(source, name, limits)
    return describe(_decode(source, blob, name, limits))


def _describe_region(src) -> dict:
    """Facts of a TIFF or Zarr image from its directory or metadata (no pixel is read)."""
    h, w, c = src.shape
    bits = src.bits
    out = {"input": src.name, "kind": "image", "format": src.format, "width": w,
           "height": h, "channels": c,
           "mode": MODES.get(c, f"{c}ch") if src.format == "TIFF" or c <= 4 else f"{c}ch",
           "bits": bits, "dtype": str(src.dtype), "tiling": src.facts.get("tiling")}
    for key in ("compression", "bigtiff", "axes"):
        if src.facts.get(key) is not None:
            out[key] = src.facts[key]
    return out


def _describe_npy(path, name: str, limits: Limits) -> dict:
    """Facts of a ``.npy`` from its header (the array is mapped, not read)."""
    from pwfilter.specs import load_npy

    with open(path, "rb") as fh:
        try:
            from pwfilter.regions import npy_header

            shape, _, dtype = npy_header(fh)
            short = fh.tell() + int(np.prod(shape)) * dtype.itemsize > \
                os.fstat(fh.fileno()).st_size
        except Exception:  # noqa: BLE001 - any damage: the full loader names it
            return describe(_load_npy(path, None, name, limits))
    if short:  # cut short: the full loader names the damage
        return describe(_load_npy(path, None, name, limits))
    if dtype.kind not in "biuf" or len(shape) not in (1, 2, 3) or 0 in shape:
        load_npy(path, name)  # an object array or the like: its error
        raise PwfilterError(f"{name}: .npy must hold a non-empty 1-, 2- or 3-D numeric array, "
                            f"got shape {shape} of {dtype}")
    if len(shape) == 3:
        limits.check_pixels(shape[1], shape[0], name)
        h, w, c = shape
        return {"input": name, "kind": "image", "format": "NPY", "width": w, "height": h,
                "channels": c, "mode": MODES.get(c, f"{c}ch"), "bits": 32}
    n, c = (shape[0], 1) if len(shape) == 1 else shape
    return {"input": name, "kind": "signal", "format": "NPY", "frames": n, "channels": c,
            "rate": 0, "subtype": "FLOAT", "duration": None}


def _read_head(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(64)


def describe(m: Media) -> dict:
    """Facts for ``pwfilter info`` about a loaded Media."""
    if m.kind == "image":
        h, w, c = m.shape
        return {"input": m.name, "kind": "image", "format": m.format, "width": w, "height": h,
                "channels": c, "mode": m.mode, "bits": m.bits or 32}
    n, c = m.shape
    out = {"input": m.name, "kind": "audio" if m.format != "NPY" else "signal",
           "format": m.format, "frames": n, "channels": c, "rate": m.rate,
           "subtype": m.subtype or "FLOAT"}
    out["duration"] = round(n / m.rate, 6) if m.rate else None
    return out


