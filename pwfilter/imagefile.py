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

import numpy as np

from pwfilter.errors import PwfilterError
from pwfilter.limits import Limits
from pwfilter.media import MODES, Media, SaveOptions, quantize


def _png_header(data: bytes, name: str) -> tuple[int, int, int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise PwfilterError(f"{name}: corrupt PNG (no IHDR header)")
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color



def load_image(data: bytes, fmt: str, name: str, limits: Limits) -> Media:
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
