"""Big images read by region and written by rows of chunks, never whole.

Sources (:func:`open_source`): TIFF, tiled or striped, BigTIFF included
(tifffile parses the directory; each tile or strip is read with ``pread``
and decoded by tifffile's decoder — imagecodecs — so threads read at once);
``.npy`` (rows read with ``pread``); Zarr arrays and the full-resolution
level of an OME-Zarr image (the optional ``zarr`` package). A source knows
its shape, sample type and layout without reading a pixel.

Writers take the output by bands of whole rows, in order: a tiled TIFF
(BigTIFF past 4 GB; tifffile writes the tiles as they come), ``.npy``
(header, then rows) or Zarr. Files go through the same atomic temporary as
every output; a Zarr folder is built under a temporary name and renamed.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field

import numpy as np

from pwfilter.errors import PwfilterError, TruncatedFile
from pwfilter.output import open_new

#: Output tile edge of tiled TIFF.
TILE = 256
#: Bytes of samples above which a TIFF is written as BigTIFF (classic TIFF's offsets are
#: 32-bit; the margin leaves room for the directory and tile tables).
BIGTIFF_ABOVE = 2 ** 32 - 2 ** 25
REGION_FORMATS = ("TIFF", "NPY", "ZARR")
_OPEN_LOCK = threading.Lock()  # a source's files are opened once, by the first reader
_SAMPLES = (np.uint8, np.uint16, np.float32, np.float64)


def is_zarr(path: str) -> bool:
    """A Zarr array or group folder (v2 or v3 metadata)."""
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, meta)) for meta in ("zarr.json", ".zarray", ".zgroup"))


def _detail(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    return text if len(text) > 3 else f"{type(exc).__name__} {text}".strip()


@dataclass
class Source:
    """A big image read by region: ``shape`` (H, W, C), samples of ``dtype`` as stored."""

    path: str
    name: str
    format: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    layout: str  # "tiled" (square chunks) or "rows" (strips, .npy: whole-width bands)
    tile: tuple[int, int]
    facts: dict = field(default_factory=dict)

    @property
    def bits(self) -> int:
        return 8 * self.dtype.itemsize

    @property
    def scale(self) -> float:
        """What the stored samples are multiplied by to be normalized."""
        return {np.dtype(np.uint8): 1 / 255, np.dtype(np.uint16): 1 / 65535}.get(self.dtype, 1.0)

    @property
    def has_alpha(self) -> bool:
        return self.format != "NPY" and self.shape[2] in (2, 4)

    @property
    def segment_bytes(self) -> int:
        """Bytes of the unit decoded whole for any read touching it (tile, strip, chunk)."""
        return self.tile[0] * self.tile[1] * self.shape[2] * self.dtype.itemsize

    def __getstate__(self):  # open handles stay behind: a Dask worker reopens the file
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def _once(self, key: str, make):
        """``make()`` run once per source and process (threads of a chunked job share it)."""
        value = self.__dict__.get(key)
        if value is None:
            with _OPEN_LOCK:
                value = self.__dict__.get(key)
                if value is None:
                    value = self.__dict__[key] = make()
        return value

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        raise NotImplementedError


class TiffSource(Source):
    def _opened(self):
        """The first page's decoder and a descriptor for ``pread``."""
        def make():
            import tifffile

            tif = tifffile.TiffFile(self.path)
            return tif, tif.pages.first, os.open(self.path, os.O_RDONLY)

        _, page, fd = self._once("_opened_state", make)
        return page, fd

    def read(self, r0, r1, c0, c1):
        page, fd = self._opened()
        th, tw = self.tile
        out = np.zeros((r1 - r0, c1 - c0, self.shape[2]), self.dtype)
        across = -(-self.shape[1] // tw)
        for ty in range(r0 // th, (r1 - 1) // th + 1):
            for tx in range(c0 // tw, (c1 - 1) // tw + 1):
                index = ty * across + tx
                count = int(page.databytecounts[index])
                if not count:
                    continue  # a sparse tile: zeros, as TIFF readers fill it
                data = os.pread(fd, count, int(page.dataoffsets[index]))
                if len(data) != count:
                    raise PwfilterError(f"{self.name}: truncated TIFF (tile {index} ends past "
                                        "the end of the file)")
                try:
                    seg, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
                except Exception as exc:  # noqa: BLE001 - codecs raise many types
                    raise PwfilterError(f"{self.name}: corrupt TIFF tile {index} "
                                        f"({_detail(exc)})") from None
                if seg is None:
                    continue
                seg = seg.reshape(seg.shape[-3], seg.shape[-2], -1)
                y0, x0 = ty * th, tx * tw
                a, b = max(r0, y0), min(r1, y0 + seg.shape[0], self.shape[0])
                c, d = max(c0, x0), min(c1, x0 + seg.shape[1], self.shape[1])
                if a < b and c < d:
                    out[a - r0:b - r0, c - c0:d - c0] = seg[a - y0:b - y0, c - x0:d - x0]
        return out


class NpySource(Source):
    def read(self, r0, r1, c0, c1):
        fd = self._once("_fd", lambda: os.open(self.path, os.O_RDONLY))
        h, w, c = self.shape
        stored = np.dtype(self.facts["stored"])
        row = w * c * stored.itemsize
        want = (r1 - r0) * row
        data = os.pread(fd, want, self.facts["offset"] + r0 * row)
        if len(data) != want:
            raise PwfilterError(f"{self.name}: truncated .npy (rows {r0}-{r1} missing)")
        rows = np.frombuffer(data, stored).reshape(r1 - r0, w, c)[:, c0:c1]
        out = rows.astype(self.dtype)
        if not np.isfinite(out).all():
            raise PwfilterError(f"{self.name}: the array holds NaN or Inf values")
        return out


class ZarrSource(Source):
    def read(self, r0, r1, c0, c1):
        arr = self._once("_arr", lambda: _zarr_array(self.path, self.name)[0])
        order = self.facts["order"]  # axis positions of y, x, c in the stored array
        index = [0] * arr.ndim
        index[order[0]] = slice(r0, r1)
        index[order[1]] = slice(c0, c1)
        if order[2] is not None:
            index[order[2]] = slice(None)
        try:
            block = np.asarray(arr[tuple(index)])
        except Exception as exc:  # noqa: BLE001 - codec and store errors
            raise PwfilterError(f"{self.name}: corrupt Zarr chunk ({_detail(exc)})") from None
        kept = [a for a in order if a is not None]
        block = np.moveaxis(block, [sorted(kept).index(a) for a in kept], range(len(kept)))
        if order[2] is None:
            block = block[..., None]
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise PwfilterError(f"{self.name}: the array holds NaN or Inf values")
        return block.astype(self.dtype, copy=False)


# --------------------------------------------------------------------- opening


def open_source(path: str, name: str, fmt: str) -> Source:
    """``path`` as a region source (``fmt``: ``TIFF``, ``NPY`` or ``ZARR``); every
    refusal is one line naming the file."""
    from pwfilter.imagefile import quiet_codec_logs

    quiet_codec_logs()
    path = os.path.abspath(path)  # chunks may be read by a cluster's other workers
    if fmt == "TIFF":
        return _open_tiff(path, name)
    if fmt == "NPY":
        return _open_npy(path, name)
    return _open_zarr(path, name)


def _open_tiff(path: str, name: str) -> TiffSource:
    """A TIFF's first image as a region source, checked against its file: every refusal,
    however the directory is damaged, is one line naming the file."""
    try:
        return _tiff_source(path, name)
    except PwfilterError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged directory fails in many ways
        raise PwfilterError(f"{name}: corrupt or truncated TIFF ({_detail(exc)})") from None


def _tiff_source(path: str, name: str) -> TiffSource:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        shape, dtype = tuple(int(n) for n in page.shape), np.dtype(page.dtype)
        tiled = bool(page.is_tiled)
        chunk = tuple(int(n) for n in page.chunks)
        planar, samples = int(page.planarconfig), int(page.samplesperpixel)
        code = int(page.compression)
        try:
            compression = tifffile.COMPRESSION(code).name
        except ValueError:
            compression = f"compression {code}"
        depth = int(page.imagedepth)
        bigtiff = tif.is_bigtiff
        starts = np.asarray(page.dataoffsets, np.int64)
        counts = np.asarray(page.databytecounts, np.int64)
        size = os.fstat(tif.filehandle.fileno()).st_size
    if dtype.type not in (np.uint8, np.uint16, np.float32):
        raise PwfilterError(f"{name}: {dtype} samples are not supported (8- or 16-bit "
                            "integers, or 32-bit float)")
    if depth > 1 or (samples > 1 and planar != 1):
        raise PwfilterError(f"{name}: only contiguous 2-D TIFF images can be read by region "
                            "(this one is planar or a volume)")
    if len(shape) not in (2, 3) or min(shape) < 1 or len(chunk) < 2 or min(chunk[:2]) < 1:
        raise PwfilterError(f"{name}: corrupt TIFF (image {shape}, tiles or strips {chunk})")
    h, w = shape[0], shape[1]
    c = 1 if len(shape) == 2 else shape[2]
    if c not in (1, 2, 3, 4):
        raise PwfilterError(f"{name}: unsupported image layout {shape}")
    tile = (chunk[0], chunk[1])
    expected = -(-h // tile[0]) * -(-w // tile[1])
    if len(starts) != expected or len(counts) != expected:
        raise PwfilterError(f"{name}: corrupt TIFF ({len(starts)} tiles or strips listed, "
                            f"{expected} expected)")
    if np.any(starts < 0) or np.any(counts < 0) or np.any(starts + counts > size):
        raise TruncatedFile(f"{name}: truncated TIFF (tile or strip data past the end of the "
                            "file)")
    if compression.lower() == "none":  # uncompressed: each segment's size is known
        whole = tile[0] * tile[1] * c * dtype.itemsize
        if tiled:
            need = np.full(expected, whole, np.int64)
        else:
            rows = np.minimum(tile[0], h - tile[0] * np.arange(expected, dtype=np.int64))
            need = rows * w * c * dtype.itemsize
        short = np.nonzero((counts > 0) & (counts < need))[0]
        if short.size:
            i = int(short[0])
            raise TruncatedFile(f"{name}: truncated TIFF ({'tile' if tiled else 'strip'} {i} "
                                f"holds {int(counts[i]):,} bytes of {int(need[i]):,})")
    return TiffSource(path, name, "TIFF", (h, w, c), dtype, "tiled" if tiled else "rows", tile,
                      {"tiling": f"tiles of {tile[0]}x{tile[1]}" if tiled
                       else f"strips of {tile[0]} rows",
                       "compression": compression.lower(), "bigtiff": bool(bigtiff)})


def npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and type from a ``.npy`` header (``fh`` left at the data)."""
    version = np.lib.format.read_magic(fh)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy version {version}")
    return read(fh, max_header_size=1 << 20)


def _open_npy(path: str, name: str) -> NpySource:
    with open(path, "rb") as fh:
        try:
            shape, fortran, stored = npy_header(fh)
        except Exception as exc:  # noqa: BLE001
            raise PwfilterError(f"{name}: corrupt .npy header ({_detail(exc)})") from None
        offset = fh.tell()
        size = os.fstat(fh.fileno()).st_size
    if len(shape) != 3 or stored.kind not in "biuf" or 0 in shape or fortran:
        raise PwfilterError(f"{name}: a big .npy image must hold a C-order (H, W, C) numeric "
                            f"array, got shape {shape} of {stored}")
    if offset + int(np.prod(shape)) * stored.itemsize > size:
        raise PwfilterError(f"{name}: truncated .npy (the header promises more data)")
    dtype = np.dtype(np.float64 if stored == np.float64 else np.float32)
    return NpySource(path, name, "NPY", tuple(int(n) for n in shape), dtype, "rows",
                     (1, int(shape[1])), {"stored": stored.str, "offset": offset})


def _zarr_array(path: str, name: str):
    """The array at ``path`` (or the full-resolution level of an OME-Zarr image there),
    and the names of its axes (None when the store does not say)."""
    zarr = zarr_module(name)
    try:
        node = zarr.open(path, mode="r")
        axes = None
        if not hasattr(node, "shape"):  # a group: OME-Zarr's multiscales, level 0
            attrs = dict(node.attrs)
            ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
            if not ms:
                raise PwfilterError(f"{name}: a Zarr group without an OME-Zarr image "
                                    "(no multiscales)")
            level = ms[0]["datasets"][0]["path"]
            axes = [a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", [])]
            node = node[level]
        return node, axes
    except PwfilterError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PwfilterError(f"{name}: not a readable Zarr array ({_detail(exc)})") from None


def _open_zarr(path: str, name: str) -> ZarrSource:
    arr, axes = _zarr_array(path, name)
    shape = tuple(int(n) for n in arr.shape)
    dtype = np.dtype(arr.dtype)
    if axes and len(axes) == len(shape):
        pos = {a: i for i, a in enumerate(axes)}
        if "y" not in pos or "x" not in pos:
            raise PwfilterError(f"{name}: OME-Zarr axes {axes} have no y and x")
        extra = [i for i, a in enumerate(axes) if a not in ("y", "x", "c") and shape[i] != 1]
        if extra:
            raise PwfilterError(f"{name}: only 2-D images are filtered (axes {axes}, shape "
                                f"{shape}); the t and z axes must have size 1")
        order = (pos["y"], pos["x"], pos.get("c"))
    elif len(shape) in (2, 3):
        order = (0, 1, 2 if len(shape) == 3 else None)
    else:
        raise PwfilterError(f"{name}: a Zarr image must be (H, W) or (H, W, C), got {shape}")
    c = shape[order[2]] if order[2] is not None else 1
    if dtype.type not in _SAMPLES or c > 4 and dtype.kind == "u":
        raise PwfilterError(f"{name}: {dtype} samples with {c} channels are not supported")
    chunks = tuple(int(n) for n in arr.chunks)
    h, w = shape[order[0]], shape[order[1]]
    return ZarrSource(path, name, "ZARR", (h, w, c), dtype, "tiled",
                      (chunks[order[0]], chunks[order[1]]),
                      {"order": order, "tiling": f"chunks of {chunks[order[0]]}x"
                       f"{chunks[order[1]]}", "axes": axes})


def region_format(path: str) -> str | None:
    """``TIFF``, ``NPY`` or ``ZARR`` when ``path`` can be read by region, else None."""
    if is_zarr(path):
        return "ZARR"
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"\x93NUMPY"):
        return "NPY"
    return None


# --------------------------------------------------------------------- writing


def write_tiff(path: str, shape, dtype, bands, *, compression: int | None,
               has_alpha: bool) -> None:
    """A tiled TIFF from ``bands`` — for each row of chunks, its (c0, c1, samples)
    pieces, in order — tile by tile; BigTIFF when the file may pass 4 GB.
    ``compression``: None (uncompressed) or a deflate level."""
    import tifffile

    h, w, c = shape
    dtype = np.dtype(dtype)

    def tiles():
        carry = None
        for pieces in bands:
            rows = pieces[0][2].shape[0]
            if carry is None and rows % TILE == 0 and all(
                    (c1 - c0) % TILE == 0 or c1 == w for c0, c1, _ in pieces):
                for t0 in range(0, rows, TILE):  # tiles straight from the chunks
                    for _, _, samples in pieces:
                        yield from _row_of_tiles(samples[t0:t0 + TILE], samples.shape[1])
                continue
            band = np.concatenate([p for _, _, p in pieces], axis=1)
            carry = band if carry is None else np.concatenate([carry, band])
            while carry.shape[0] >= TILE:
                yield from _row_of_tiles(carry[:TILE], w)
                carry = carry[TILE:]
        if carry is not None and carry.shape[0]:
            yield from _row_of_tiles(carry, w)

    extra = {"extrasamples": [2]} if has_alpha else {}
    kwargs = {"compression": ("zlib", compression)} if compression is not None else {}
    big = h * w * c * dtype.itemsize > BIGTIFF_ABOVE
    with open_new(path) as fh:
        tifffile.imwrite(fh, tiles(), shape=(h, w, c) if c > 1 else (h, w), dtype=dtype,
                         tile=(TILE, TILE), photometric="rgb" if c >= 3 else "minisblack",
                         planarconfig="contig", bigtiff=big, metadata=None, **extra, **kwargs)


def _row_of_tiles(rows: np.ndarray, w: int):
    """Full TILE x TILE tiles across ``rows`` (zero-padded at the bottom and right edge)."""
    if rows.shape[0] < TILE or w % TILE:
        padded = np.zeros((TILE, -(-w // TILE) * TILE, rows.shape[2]), rows.dtype)
        padded[:rows.shape[0], :w] = rows
        rows = padded
    for c0 in range(0, rows.shape[1], TILE):
        tile = rows[:, c0:c0 + TILE]
        yield tile if tile.shape[2] > 1 else tile[:, :, 0]


def write_npy(path: str, shape, dtype, bands) -> None:
    """A ``.npy`` written row band by row band (float32)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)}
    with open_new(path) as fh:
        if len(repr(header)) > 65000:  # version 1.0 headers hold at most 64 KiB
            np.lib.format.write_array_header_2_0(fh, header)
        else:
            np.lib.format.write_array_header_1_0(fh, header)
        for pieces in bands:
            fh.write(np.ascontiguousarray(_joined(pieces), dtype=dtype).data)


def _joined(pieces) -> np.ndarray:
    if len(pieces) == 1:
        return pieces[0][2]
    return np.concatenate([samples for _, _, samples in pieces], axis=1)


def zarr_module(name: str):
    """The zarr package, or the one-line error naming its extra."""
    try:
        import zarr
    except ImportError:
        raise PwfilterError(f'{name}: Zarr needs the zarr package: pip install "pwfilter[zarr]"'
                            ) from None
    return zarr


def write_zarr(path: str, shape, dtype, bands, chunk: tuple[int, int]) -> None:
    """A Zarr array in the folder ``path`` (a new, empty folder), row band by row band."""
    from pwfilter.output import folder_write

    zarr = zarr_module(path)
    with folder_write():
        arr = zarr.create_array(store=path, shape=tuple(shape), dtype=np.dtype(dtype),
                                chunks=(chunk[0], chunk[1], shape[2]), zarr_format=3)
    r0 = 0
    for pieces in bands:
        rows = pieces[0][2].shape[0]
        with folder_write():
            for c0, c1, samples in pieces:
                arr[r0:r0 + rows, c0:c1] = samples
        r0 += rows


class ArraySource(Source):
    """An array in memory (or any array-like with slicing: a NumPy memmap, a Zarr or
    Dask array) as a region source."""

    def __init__(self, array, name: str = "<array>"):
        a = array if array.ndim == 3 else array[:, :, None]
        dtype = np.dtype(a.dtype)
        super().__init__("", name, "ARRAY", tuple(int(n) for n in a.shape), dtype, "tiled",
                         (a.shape[0], a.shape[1]), {"array": a})

    @property
    def has_alpha(self) -> bool:
        return False

    def read(self, r0, r1, c0, c1):
        return np.asarray(self.facts["array"][r0:r1, c0:c1])


def write_output(fmt: str, target: str, overwrite: bool, shape, dtype, bands, *,
                 chunk: tuple[int, int], compression: int | None = None,
                 has_alpha: bool = False) -> None:
    """Write rows of chunks as ``fmt`` (``TIFF``, ``NPY`` or ``ZARR``) to ``target``,
    atomically: a file through :func:`pwfilter.output.atomic_path`, a Zarr store through
    :func:`pwfilter.output.atomic_dir`."""
    from pwfilter.output import atomic_dir, atomic_path

    if fmt == "ZARR":
        zarr_module(target)  # before any work when the extra is missing
        with atomic_dir(target, overwrite) as tmp:
            write_zarr(tmp, shape, dtype, bands, chunk)
        return
    with atomic_path(target, overwrite) as tmp:
        if fmt == "NPY":
            write_npy(tmp, shape, dtype, bands)
        else:
            write_tiff(tmp, shape, dtype, bands, compression=compression, has_alpha=has_alpha)
