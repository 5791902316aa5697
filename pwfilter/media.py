"""The one media layer: every file becomes one array model, and back.

Every input — image, audio or ``.npy`` — becomes a :class:`Media`: an array
with channels last (image ``(H, W, C)``, audio ``(n, C)``) whose values are
normalized (images to [0, 1], audio to [-1, 1]; 8- and 16-bit images are kept
as decoded integers with the factor that normalizes them) and the metadata
needed to write the result back in the same format, bit depth, mode, rate
and subtype.

Codecs: PNG decoding and TIFF go through imagecodecs (16-bit RGB/RGBA kept
exactly), PNG encoding through :mod:`pwfilter.png` (parallel, several times
faster than libpng's fastest settings at a smaller size), JPEG/BMP/WebP and
palette or 1-bit PNGs through Pillow, audio through libsndfile (soundfile).
PCM is converted to float here, not by libsndfile, so that load -> save is
bit-exact. No other module opens a media file.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import io
import os
import re
import struct
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
                 "MP3": ".mp3", "W64": ".w64", "RF64": ".wav", "CAF": ".caf"}
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
#: Normalizing factors of integer image samples.
INTEGER_SCALE = {np.uint8: 1.0 / 255.0, np.uint16: 1.0 / 65535.0}
DEFAULT_QUALITY = 92
# Integer PCM subtypes: (dtype read from libsndfile, scale to [-1, 1), float dtype kept).
_PCM = {
    "PCM_S8": ("int16", 2.0**-15, np.float32),
    "PCM_U8": ("int16", 2.0**-15, np.float32),
    "PCM_16": ("int16", 2.0**-15, np.float32),
    "PCM_24": ("int32", 2.0**-31, np.float32),
    "PCM_32": ("int32", 2.0**-31, np.float64),
}
_PCM_STEP = {"PCM_S8": 2.0**-7, "PCM_U8": 2.0**-7, "PCM_16": 2.0**-15, "PCM_24": 2.0**-23,
             "PCM_32": 2.0**-31}


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


def _read_source(source: str | os.PathLike, name: str) -> bytes | None:
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
    if os.path.isdir(path):
        raise PwfilterError(f"{name}: is a directory")
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
    blob = _read_source(source, name)
    return _decode(source, blob, name, limits)


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
        data = blob if blob is not None else _read_bytes(source)
        return _load_image(data, fmt, name, limits)
    return _load_audio(source if blob is None else io.BytesIO(blob), name, limits)


def _read_bytes(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _sniff_soundfile(source, blob) -> str | None:
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(blob) if blob is not None else os.fspath(source))
    except Exception:  # noqa: BLE001 - any libsndfile refusal means "not audio"
        return None
    return info.format


def _load_npy(source, blob, name: str, limits: Limits) -> Media:
    try:
        arr = np.load(io.BytesIO(blob) if blob is not None else source, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises many types for bad files
        raise PwfilterError(f"{name}: not a readable .npy array ({exc})") from None
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


def _png_header(data: bytes, name: str) -> tuple[int, int, int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise PwfilterError(f"{name}: corrupt PNG (no IHDR header)")
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color


def _load_image(data: bytes, fmt: str, name: str, limits: Limits) -> Media:
    from PIL import Image

    try:
        if fmt == "PNG":
            width, height, depth, color = _png_header(data, name)
            _check_decode(limits, width, height, {0: 1, 2: 3, 4: 2}.get(color, 4), name)
            if color != 3 and depth >= 8:
                import imagecodecs

                return _image_from_array(imagecodecs.png_decode(data), fmt, name)
        if fmt == "TIFF":
            # Pillow cannot open some TIFFs imagecodecs decodes (16-bit LA): size from the IFD.
            import imagecodecs

            _check_decode(limits, *_tiff_size(data), 4, name)
            return _image_from_array(imagecodecs.tiff_decode(data), fmt, name)
        Image.MAX_IMAGE_PIXELS = None  # our own limit applies, before decoding
        with Image.open(io.BytesIO(data)) as im:
            _check_decode(limits, im.width, im.height, min(len(im.getbands()) + 1, 4), name)
            return _image_from_array(_pillow_array(im), fmt, name)
    except PwfilterError:
        raise
    except MemoryError:
        raise PwfilterError(f"{name}: not enough memory to decode the image") from None
    except Exception as exc:  # noqa: BLE001 - codecs raise many types for corrupt data
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PwfilterError(f"{name}: corrupt or truncated {fmt} ({detail})") from None


def _check_decode(limits: Limits, width: int, height: int, channels: int, name: str) -> None:
    """Refuse before decoding: too many pixels, or more working memory than allowed
    (:func:`pwfilter.limits.image_bytes`)."""
    from pwfilter.limits import image_bytes

    limits.check_pixels(width, height, name)
    limits.check_memory(image_bytes(int(width) * int(height), channels), name)


def _tiff_size(data: bytes) -> tuple[int, int]:
    """Width and height from a TIFF's (or BigTIFF's) first image directory, without decoding."""
    bo = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(bo + "H", data, 2)[0] == 43
    offset = struct.unpack_from(bo + ("Q" if big else "I"), data, 8 if big else 4)[0]
    count = struct.unpack_from(bo + ("Q" if big else "H"), data, offset)[0]
    first, step, value_at = offset + (8 if big else 2), (20 if big else 12), (12 if big else 8)
    value_types = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
    size = {}
    for i in range(min(count, 4096)):
        entry = first + i * step
        tag, kind = struct.unpack_from(bo + "HH", data, entry)
        if tag in (256, 257) and kind in value_types:
            size[tag] = struct.unpack_from(bo + value_types[kind], data, entry + value_at)[0]
    if len(size) != 2:
        raise ValueError("no image width and height in the first directory")
    return size[256], size[257]


def _pillow_array(im) -> np.ndarray:
    """Decode a Pillow image to uint8/uint16 L, LA, RGB or RGBA."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im).astype(np.uint16)
    elif mode == "I":
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise PwfilterError("32-bit integer images are not supported")
        return arr.astype(np.uint16)
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in mode else "RGB")
    return np.asarray(im)


def _image_from_array(arr: np.ndarray, fmt: str, name: str) -> Media:
    if arr.dtype not in (np.uint8, np.uint16):
        raise PwfilterError(f"{name}: {arr.dtype} samples are not supported (8- or 16-bit only)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise PwfilterError(f"{name}: unsupported image layout {arr.shape}")
    return Media(arr, "image", fmt, bits=8 * arr.itemsize, name=name)


_TRUNCATED = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def audio_info(source, name: str):
    """``soundfile.info`` with a check that the file holds the frames its header promises."""
    import soundfile as sf

    try:
        info = sf.info(source)
    except Exception as exc:  # noqa: BLE001 - libsndfile errors are RuntimeError/LibsndfileError
        raise PwfilterError(f"{name}: not a readable audio file ({_first_line(exc)})") from None
    if isinstance(source, io.IOBase):
        source.seek(0)
    m = _TRUNCATED.search(info.extra_info or "")
    if m:
        claimed, actual = int(m.group(2)), int(m.group(3))
        if claimed > actual and claimed not in (0xFFFFFFFF, 0x7FFFFFFF):
            raise PwfilterError(
                f"{name}: truncated audio (header promises {claimed:,} data bytes, "
                f"the file holds {actual:,})")
    if info.frames <= 0 or info.channels <= 0:
        raise PwfilterError(f"{name}: audio file holds no samples")
    return info


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def audio_read_dtype(subtype: str):
    """The dtype to ask libsndfile for, its scale to [-1, 1], and the float dtype kept."""
    if subtype in _PCM:
        return _PCM[subtype]
    if subtype == "DOUBLE":
        return "float64", 1.0, np.float64
    return "float32", 1.0, np.float32


def pcm_to_float(block: np.ndarray, subtype: str) -> np.ndarray:
    _, scale, out_dtype = audio_read_dtype(subtype)
    if block.dtype.kind == "f":
        return block.astype(out_dtype, copy=False)
    out = block.astype(out_dtype)
    out *= out_dtype(scale)
    return out


def _load_audio(source, name: str, limits: Limits) -> Media:
    import soundfile as sf

    info = audio_info(source, name)
    read_dtype, _, out_dtype = audio_read_dtype(info.subtype)
    from pwfilter.limits import audio_decode_bytes

    limits.check_memory(audio_decode_bytes(info.frames, info.channels,
                                           np.dtype(out_dtype).itemsize), name)
    try:
        raw, rate = sf.read(source, dtype=read_dtype, always_2d=True)
    except Exception as exc:  # noqa: BLE001
        raise PwfilterError(f"{name}: cannot decode audio ({_first_line(exc)})") from None
    if raw.shape[0] == 0:
        raise PwfilterError(f"{name}: audio file holds no samples")
    return Media(pcm_to_float(raw, info.subtype), "audio", info.format, rate=int(rate),
                 subtype=info.subtype, name=name)


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
        if not (t.min() >= lo - 1 and t.max() <= hi + 1):  # also false for NaN
            bad = ~np.isfinite(src) if src.dtype.kind == "f" else np.zeros(src.shape, bool)
            nbad = int(np.count_nonzero(bad))
            if nbad:
                t[bad] = 0
            clipped = int(np.count_nonzero((t < lo - 1) | (t > hi + 1))) + nbad
        np.rint(t, out=t)
        np.clip(t, lo, hi, out=t)
        out[a:a + step] = t
        return clipped

    from pwfilter import parallel

    return out, sum(parallel.run(one, starts, workers))


def image_bits_for(media: Media, fmt: str) -> int:
    if fmt in ("PNG", "TIFF") and media.bits == 16:
        return 16
    return 8


def image_samples(media: Media, bits: int, workers: int = 1) -> tuple[np.ndarray, int]:
    """The image's samples as ``bits``-bit integers, C order; and how many values clipped."""
    samples = media.samples
    target = np.uint16 if bits == 16 else np.uint8
    if samples.dtype == target:
        return np.ascontiguousarray(samples), 0
    top = 65535 if bits == 16 else 255
    return quantize(samples, 0, top, top * media.scale, target, workers)


def encode_image(media: Media, fmt: str, options: SaveOptions) -> tuple[list[bytes], int]:
    """Encode an image Media in ``fmt``; return the file (as pieces to write one after the
    other) and the clipped count."""
    shape = media.shape
    if len(shape) != 3 or shape[2] not in MODES:
        raise PwfilterError(
            f"cannot save {shape[-1]} channels as an image (1-4 channels: L, LA, RGB, RGBA); "
            "write .npy instead")
    workers = os.cpu_count() or 1
    arr, clipped = image_samples(media, image_bits_for(media, fmt), workers)
    if fmt == "PNG":
        from pwfilter import png

        return png.encode(arr, options.compression, workers), clipped
    arr = arr[:, :, 0] if arr.shape[2] == 1 else arr
    if fmt == "TIFF":
        import imagecodecs

        # Explicit layout: without it an (H, W, 2) LA array is written as H pages of W x 2.
        layout = {"photometric": "rgb" if media.channels >= 3 else "minisblack",
                  "planarconfig": "contig"}
        if media.channels in (2, 4):
            layout["extrasample"] = 2  # unassociated alpha
        if options.compression is None:
            return [imagecodecs.tiff_encode(arr, **layout)], clipped
        return [imagecodecs.tiff_encode(arr, compression="zlib", level=options.compression,
                                        **layout)], clipped
    from PIL import Image

    mode = MODES[media.channels]
    if fmt == "JPEG" and mode in ("LA", "RGBA"):
        raise PwfilterError("JPEG cannot store alpha: write .png, .tif or .webp instead")
    im = Image.fromarray(arr, mode=mode) if arr.ndim == 3 else Image.fromarray(arr)
    buf = io.BytesIO()
    kwargs = {"quality": options.quality} if fmt in ("JPEG", "WEBP") else {}
    try:
        im.save(buf, format=fmt, **kwargs)
    except (OSError, ValueError) as exc:
        raise PwfilterError(f"cannot write {mode} as {fmt} ({exc})") from None
    return [buf.getvalue()], clipped


def save_notes(source: Media, result: Media, fmt: str) -> list[str]:
    """What writing ``result`` as ``fmt`` changes that the user did not ask for."""
    notes = []
    if result.kind == "image" and source.bits == 16 and fmt in IMAGE_FORMATS \
            and image_bits_for(result, fmt) == 8:
        notes.append(f"{fmt} holds 8 bits per sample: the 16-bit result is reduced to 8 bits")
    if result.kind == "audio" and fmt not in ("NPY",) and not result.rate:
        notes.append("no sample rate in the input: the audio file is written at 48000 Hz")
    return notes


def audio_subtype_for(media: Media, fmt: str) -> str:
    """Keep the input's subtype where the output container supports it."""
    import soundfile as sf

    if media.subtype and sf.check_format(fmt, media.subtype):
        return media.subtype
    if fmt in ("WAV", "AIFF", "W64", "RF64", "CAF") and media.format == "NPY":
        return "FLOAT"
    return sf.default_subtype(fmt)


def float_to_pcm(data: np.ndarray, subtype: str) -> tuple[np.ndarray, int]:
    """Convert normalized float audio to what libsndfile writes bit-exactly for ``subtype``."""
    if subtype in ("PCM_16",):
        return quantize(data, -32768, 32767, 32768, np.int16)
    if subtype in ("PCM_S8", "PCM_U8"):
        q, clipped = quantize(data, -128, 127, 128, np.int16)
        return q * np.int16(256), clipped
    if subtype == "PCM_24":
        q, clipped = quantize(data, -(2**23), 2**23 - 1, 2**23, np.int32)
        return q << 8, clipped
    if subtype == "PCM_32":
        return quantize(data.astype(np.float64), -(2**31), 2**31 - 1, 2**31, np.int32)
    if subtype == "DOUBLE":
        return data.astype(np.float64, copy=False), 0
    return data.astype(np.float32, copy=False), 0


class AudioWriter:
    """Write float audio blocks to a file with the subtype's exact integer conversion.

    A path is opened by pwfilter itself (without truncating an empty file) and
    handed to libsndfile as a descriptor, so libsndfile writes straight from
    the sample buffers; it is closed without the fsync that soundfile's close
    does. Outputs are atomic through :func:`pwfilter.output.atomic_path` (a
    fresh temporary file, renamed), as images are, and a forced flush would
    only add the disk's latency to every command (ffmpeg and SoX do not sync
    either). A failing write (disk full) raises the system's OSError.
    """

    def __init__(self, target: str | BinaryIO, *, rate: int, channels: int, fmt: str,
                 subtype: str, options: SaveOptions):
        import soundfile as sf

        extra = {}
        if fmt == "FLAC" and options.compression is not None:
            extra["compression_level"] = min(max(options.compression, 0), 8) / 8
        self.subtype = subtype
        self.clipped = 0
        self._fd = None
        if isinstance(target, (str, os.PathLike)):
            # Truncating a file on ext4 makes its close flush everything written.
            self._fd = target = os.open(target, os.O_WRONLY | os.O_CREAT, 0o666)
            if os.fstat(self._fd).st_size:
                os.ftruncate(self._fd, 0)
        try:
            self._file = sf.SoundFile(target, "w", samplerate=rate, channels=channels,
                                      format=fmt, subtype=subtype, closefd=False, **extra)
        except BaseException as exc:
            self._close_own()
            if isinstance(exc, Exception):  # libsndfile writes the header when opening
                _raise_system_error(None)
            raise
        if subtype in ("FLOAT", "DOUBLE"):
            _no_peak_chunk(sf, self._file)

    def write(self, block: np.ndarray) -> None:
        out, clipped = float_to_pcm(block, self.subtype)
        self.clipped += clipped
        try:
            self._file.write(out)
        except Exception:
            _raise_system_error(self._file)
            raise

    def close(self) -> None:
        try:
            _close_without_sync(self._file)
        finally:
            self._close_own()

    def _close_own(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _raise_system_error(f) -> None:
    """Raise libsndfile's system error (disk full...) as the OSError it was, if it was one.

    ``f`` is the SoundFile that failed, or None when opening failed. libsndfile
    keeps the error as text, ``System error : <strerror>.``; the errno is found
    back by its message. Through soundfile's low-level handle; where that is
    missing, soundfile's own exception stands."""
    try:
        import soundfile as sf

        handle = sf._ffi.NULL if f is None else f._file
        text = sf._ffi.string(sf._snd.sf_strerror(handle)).decode(errors="replace")
    except (AttributeError, TypeError):
        return
    prefix = "System error : "
    if text.startswith(prefix):
        message = text[len(prefix):].rstrip(".")
        codes = [e for e in errno.errorcode if os.strerror(e) == message]
        raise OSError(codes[0] if codes else None, message) from None


def _close_without_sync(f) -> None:
    """Close without the fsync that soundfile's ``close`` does first (sf_write_sync):
    libsndfile still writes the final header. Where soundfile's internals differ,
    its own close is used."""
    try:
        import soundfile as sf

        handle, close = f._file, sf._snd.sf_close
    except AttributeError:
        f.close()
        return
    if handle is None:
        return
    f._file = None
    if close(handle):
        raise OSError(None, "cannot finish the audio file")


def _no_peak_chunk(sf, f) -> None:
    """Skip libsndfile's optional PEAK chunk for float files: keeping it scans every sample
    written, half the writer's time (ffmpeg and SoX write none). Through soundfile's
    low-level handle; where that is missing, the chunk is simply kept."""
    try:
        sf._snd.sf_command(f._file, 0x1050, sf._ffi.NULL, 0)  # SFC_SET_ADD_PEAK_CHUNK, off
    except (AttributeError, TypeError):
        pass


def write_media(media: Media, target: str | BinaryIO, fmt: str,
                options: SaveOptions = SaveOptions()) -> int:
    """Write ``media`` to a path or binary file object in ``fmt``; return the clipped count.

    The caller owns atomicity (see :mod:`pwfilter.output`): ``target`` is a
    temporary path or an in-memory buffer.
    """
    if fmt == "NPY":
        arr = np.ascontiguousarray(media.data, dtype=np.float32)
        if isinstance(target, (str, os.PathLike)):
            # np.save(path) would append ".npy" to the temporary name and leave it empty.
            with open(target, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
        else:
            np.save(target, arr, allow_pickle=False)
        return 0
    if fmt in IMAGE_FORMATS:
        pieces, clipped = encode_image(media, fmt, options)
        if isinstance(target, (str, os.PathLike)):
            with open(target, "wb") as fh:
                fh.writelines(pieces)
        else:
            target.writelines(pieces)
        return clipped
    if media.kind != "audio":
        raise PwfilterError(f"cannot write an image as {fmt} audio")
    subtype = audio_subtype_for(media, fmt)
    rate = media.rate or 48000
    with AudioWriter(target, rate=rate, channels=media.channels, fmt=fmt, subtype=subtype,
                     options=options) as writer:
        writer.write(media.data)
    return writer.clipped


def describe_file(source: str, *, limits: Limits = Limits()) -> dict:
    """Facts for ``pwfilter info``; audio is described from its header alone."""
    name = "<stdin>" if source == "-" else source
    blob = _read_source(source, name)
    head = blob[:64] if blob is not None else _read_head(source)
    fmt = sniff_format(head, name)
    if blob is None and fmt not in IMAGE_FORMATS | {"NPY"}:
        if fmt is None and _sniff_soundfile(source, None) is None:
            raise PwfilterError(f"{name}: not a recognised image, audio or .npy file")
        info = audio_info(source, name)
        return {"input": name, "kind": "audio", "format": info.format, "frames": info.frames,
                "channels": info.channels, "rate": info.samplerate, "subtype": info.subtype,
                "duration": round(info.frames / info.samplerate, 6)}
    return describe(_decode(source, blob, name, limits))


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


class AudioReader:
    """An audio file opened for block-by-block reading (streaming), header already checked."""

    def __init__(self, path: str, *, name: str | None = None, limits: Limits = Limits()):
        self.name = name or path
        self.path = path
        _read_source(path, self.name)
        info = audio_info(path, self.name)
        self.frames = int(info.frames)
        self.channels = int(info.channels)
        self.rate = int(info.samplerate)
        self.subtype = info.subtype
        self.format = info.format

    def meta(self) -> Media:
        """A Media with no samples but the file's channels and metadata (for planning)."""
        _, _, dtype = audio_read_dtype(self.subtype)
        return Media(np.zeros((0, self.channels), dtype), "audio", self.format, rate=self.rate,
                     subtype=self.subtype, name=self.name)

    def blocks(self, size: int):
        """Yield normalized float blocks of ``size`` frames (the last may be shorter)."""
        import soundfile as sf

        read_dtype, _, _ = audio_read_dtype(self.subtype)
        try:
            with sf.SoundFile(self.path) as f:
                while True:
                    raw = f.read(size, dtype=read_dtype, always_2d=True)
                    if not raw.shape[0]:
                        return
                    yield pcm_to_float(raw, self.subtype)
        except Exception as exc:  # noqa: BLE001 - libsndfile errors while decoding
            raise PwfilterError(f"{self.name}: cannot decode audio ({_first_line(exc)})") from None
