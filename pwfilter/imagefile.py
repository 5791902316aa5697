"""Image files: decoding to samples and encoding from them.

PNG decoding and TIFF go through imagecodecs (16-bit RGB/RGBA kept exactly;
Pillow reads those as 8-bit), PNG encoding through :mod:`pwfilter.png`,
JPEG/BMP/WebP and palette or 1-bit PNGs through Pillow. Sizes are read from
the header and checked against the limits before anything is decoded.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib

import numpy as np

from pwfilter.errors import PwfilterError
from pwfilter.limits import Limits
from pwfilter.media import MODES, Media, SaveOptions, quantize


def _png_header(data: bytes, name: str) -> tuple[int, int, int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise PwfilterError(f"{name}: corrupt PNG (no IHDR header)")
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color



def quiet_codec_logs() -> None:
    """imagecodecs reports libpng's warnings ("PNG warning: iCCP: too short") through
    ``logging``, which prints them on stderr when nothing handles them: pwfilter reports
    every problem itself, in one line (``--debug`` shows them)."""
    import logging

    if "--debug" in sys.argv:
        return
    for name in ("imagecodecs", "tifffile"):  # tifffile: "invalid offset to first page"...
        log = logging.getLogger(name)
        if log.propagate:
            log.addHandler(logging.NullHandler())
            log.propagate = False


quiet_codec_logs()
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def check_png(data: bytes, name: str) -> tuple[int, int, int, int]:
    """A PNG's header, checked, and its chunks walked (no decoding): IHDR must be sane and
    the compressed image data (IDAT) no larger than deflate can make the image's rows —
    libpng would decode a 10x10 image from 300 MB of IDAT, warning only."""
    width, height, depth, color = _png_header(data, name)
    if struct.unpack_from(">I", data, 29)[0] != zlib.crc32(data[12:29]):
        raise PwfilterError(f"{name}: corrupt PNG (the IHDR header's checksum is wrong)")
    if width == 0 or height == 0 or width > 1 << 31 or height > 1 << 31:
        raise PwfilterError(f"{name}: corrupt PNG (image of {width}x{height} pixels)")
    if color not in _CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise PwfilterError(f"{name}: corrupt PNG (colour type {color}, bit depth {depth})")
    interlaced = len(data) > 28 and data[28] == 1
    row = (width * _CHANNELS[color] * depth + 7) // 8 + 1
    raw = height * row + (7 * height + 7 * 8 if interlaced else 0)
    # deflate's stored blocks: 5 bytes per 16 KB at worst, plus the zlib header and checksum.
    most = raw + 5 * (raw // 16383 + 1) + 64
    idat, pos, end = 0, 8, False
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            idat += length
        elif kind == b"IEND":
            end = True
            break
        pos += 12 + length
    if not end or pos + 12 > len(data) or idat == 0:
        raise PwfilterError(f"{name}: truncated PNG (its chunks end before the image's end)")
    if idat > most:
        raise PwfilterError(f"{name}: corrupt PNG ({idat:,} bytes of image data, more than "
                            f"a {width}x{height} image can need, {most:,})")
    return width, height, depth, color


def load_image(data: bytes, fmt: str, name: str, limits: Limits) -> Media:
    from PIL import Image

    try:
        if fmt == "PNG":
            width, height, depth, color = check_png(data, name)
            _check_whole(limits, width, height, {0: 1, 2: 3, 4: 2}.get(color, 4), name, fmt)
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
            _check_whole(limits, im.width, im.height, min(len(im.getbands()) + 1, 4), name,
                         fmt)
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


def _check_whole(limits: Limits, width: int, height: int, channels: int, name: str,
                 fmt: str) -> None:
    """:func:`_check_decode` for formats decoded only whole: a refusal says how to make
    the image a tiled TIFF, which is filtered in chunks."""
    try:
        _check_decode(limits, width, height, channels, name)
    except PwfilterError as exc:
        if "working memory" not in str(exc):
            raise
        raise PwfilterError(f"{exc}; a {fmt} is decoded whole: convert it to a tiled TIFF, "
                            "which is filtered in chunks (vips tiffsave IN OUT.tif --tile "
                            "--bigtiff)") from None



def image_header(data: bytes, fmt: str, name: str, limits: Limits) -> dict:
    """Width, height, channels and bits of an image as :func:`load_image` would decode it,
    read from its header alone (``pwfilter info``: no pixel is decoded)."""
    from PIL import Image

    try:
        if fmt == "PNG":
            width, height, depth, color = check_png(data, name)
            channels = _CHANNELS[color]
            if color == 3:
                channels = 4 if _png_has(data, b"tRNS") else 3
            bits = 16 if depth == 16 else 8
        elif fmt == "TIFF":
            tags = _tiff_tags(data)
            width, height = tags[256], tags[257]
            channels, bits = tags.get(277, 1), tags.get(258, 1)
        else:
            Image.MAX_IMAGE_PIXELS = None  # our own limit applies
            with Image.open(io.BytesIO(data)) as im:
                width, height, mode = im.width, im.height, im.mode
                info = im.info
            channels = {"P": 4 if "transparency" in info else 3, "PA": 4, "1": 1, "L": 1,
                        "LA": 2, "RGB": 3, "RGBA": 4, "I": 1, "I;16": 1, "I;16B": 1,
                        "I;16L": 1}.get(mode, 4 if "A" in mode else 3)
            bits = 16 if mode.startswith("I") else 8
    except PwfilterError:
        raise
    except Exception as exc:  # noqa: BLE001 - codecs raise many types for corrupt data
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PwfilterError(f"{name}: corrupt or truncated {fmt} ({detail})") from None
    limits.check_pixels(width, height, name)
    return {"width": int(width), "height": int(height), "channels": int(channels),
            "mode": MODES.get(int(channels), f"{channels}ch"), "bits": int(bits)}


def _png_has(data: bytes, kind: bytes) -> bool:
    pos = 8
    while pos + 8 <= len(data):
        length, chunk = struct.unpack_from(">I4s", data, pos)
        if chunk == kind:
            return True
        if chunk in (b"IDAT", b"IEND"):
            return False
        pos += 12 + length
    return False


def _tiff_size(data: bytes) -> tuple[int, int]:
    """Width and height from a TIFF's (or BigTIFF's) first image directory, without decoding."""
    tags = _tiff_tags(data)
    return tags[256], tags[257]


def _tiff_tags(data: bytes) -> dict[int, int]:
    """Width, height (required), bits per sample and samples per pixel from a TIFF's (or
    BigTIFF's) first image directory: the first value of each."""
    bo = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(bo + "H", data, 2)[0] == 43
    offset = struct.unpack_from(bo + ("Q" if big else "I"), data, 8 if big else 4)[0]
    count = struct.unpack_from(bo + ("Q" if big else "H"), data, offset)[0]
    first, step, value_at = offset + (8 if big else 2), (20 if big else 12), (12 if big else 8)
    value_types = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
    size: dict[int, int] = {}
    for i in range(min(count, 4096)):
        entry = first + i * step
        tag, kind, n = struct.unpack_from(bo + "HH" + ("Q" if big else "I"), data, entry)
        if tag in (256, 257, 258, 277) and kind in value_types:
            at = entry + value_at
            if tag == 258 and n * struct.calcsize(value_types[kind]) > (8 if big else 4):
                at = struct.unpack_from(bo + ("Q" if big else "I"), data, at)[0]  # an offset
            size[tag] = struct.unpack_from(bo + value_types[kind], data, at)[0]
    if 256 not in size or 257 not in size:
        raise ValueError("no image width and height in the first directory")
    return size



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
    if fmt == "TIFF" and arr.dtype == np.float32:
        if not np.isfinite(arr).all():
            raise PwfilterError(f"{name}: the image holds NaN or Inf values")
    elif arr.dtype not in (np.uint8, np.uint16):
        raise PwfilterError(f"{name}: {arr.dtype} samples are not supported (8- or 16-bit "
                            "integers; 32-bit float in TIFF)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise PwfilterError(f"{name}: unsupported image layout {arr.shape}")
    return Media(arr, "image", fmt, bits=8 * arr.itemsize, name=name)



def image_bits_for(media: Media, fmt: str) -> int:
    """8, 16 or 32 (float, TIFF only) bits per sample of ``media`` written as ``fmt``."""
    if fmt == "TIFF" and media.bits == 32:
        return 32
    if fmt in ("PNG", "TIFF") and media.bits == 16:
        return 16
    return 8



def image_samples(media: Media, bits: int, workers: int = 1) -> tuple[np.ndarray, int]:
    """The image's samples as ``bits``-bit integers, C order; and how many values clipped."""
    samples = media.samples
    if bits == 32:
        return np.ascontiguousarray(media.data, dtype=np.float32), 0
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
        return [imagecodecs.tiff_encode(arr, compression="deflate", level=options.compression,
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
