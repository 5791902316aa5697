"""Sliding-sum evaluation of a convolution: OpenCV where it loads, SciPy's ndimage otherwise.

Both ``direct`` (any kernel: ``cv2.filter2D``) and ``separable`` (a rank-r
kernel as r pairs of 1-D passes: ``cv2.sepFilter2D``) compute the valid part
of the convolution of the boundary-extended input, as every method of
:mod:`pwfilter.engine` does. OpenCV correlates, so kernels are flipped here;
its anchor places the kernel as pwfilter's modes do (``same``: ``M // 2``
samples before), and its borders are pwfilter's boundaries:

============  ======================  ===============
pwfilter      OpenCV                  ``numpy.pad``
============  ======================  ===============
reflect       ``BORDER_REFLECT``      ``symmetric``
mirror        ``BORDER_REFLECT_101``  ``reflect``
nearest       ``BORDER_REPLICATE``    ``edge``
wrap          extended first          ``wrap``
zero          ``BORDER_CONSTANT``     ``constant``
============  ======================  ===============

``filter2D`` refuses ``BORDER_WRAP``, and ``full`` outputs are larger than
the input: those cases extend the input first (``cv2.copyMakeBorder``) and
keep the valid part. ``filter2D`` also switches to its own DFT for kernels of
130 taps or more (50 unless both sides are float32); ``direct`` means
sliding sums, so larger kernels are applied in bands of rows that stay under
that size and summed. Signals (audio) are filtered as one-row images.

OpenCV is checked on hand-worked values when first loaded; where it is
missing or fails the check (or ``PWFILTER_OPENCV=0``), SciPy's ndimage
computes the same sums, more slowly.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pwfilter.engine import Geometry

#: Most channels OpenCV filters in one array (OpenCV 5 takes 128, 4.x 512): more
#: channels are filtered in groups of this many.
MAX_CHANNELS = 128


def _works(cv2) -> bool:
    """The calls made below, on values worked by hand.

    Image [[1, 2, 3], [4, 5, 6]]: correlating with [1, 10] anchored on its
    first tap gives x[i, j] + 10·x[i, j+1], the border column reflected
    (x[i, 3] = x[i, 2]): [[21, 32, 33], [54, 65, 66]]. The same through
    ``sepFilter2D`` with the column [1, 0] (rows unchanged), and from uint8
    to float32; a BORDER_REFLECT_101 pass [1, 1, 1] on the row [1, 2, 3]
    gives [2+1+2, 1+2+3, 2+3+2] = [5, 6, 7].
    """
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    want = np.array([[21, 32, 33], [54, 65, 66]], np.float32)
    k = np.array([[1, 10]], np.float32)
    a = cv2.filter2D(x, -1, k, anchor=(0, 0), borderType=cv2.BORDER_REFLECT)
    b = cv2.sepFilter2D(x.astype(np.uint8), cv2.CV_32F, k[0], np.array([1, 0], np.float32),
                        anchor=(0, 0), borderType=cv2.BORDER_REFLECT)
    c = cv2.filter2D(np.array([[1, 2, 3]], np.float32), -1, np.ones((1, 3), np.float32),
                     borderType=cv2.BORDER_REFLECT_101)
    return (np.array_equal(a, want) and np.array_equal(b, want)
            and np.array_equal(c, np.array([[5, 6, 7]], np.float32)))


@functools.cache
def opencv():
    """OpenCV's module, checked, or None (then ndimage is used)."""
    if os.environ.get("PWFILTER_OPENCV", "1") == "0":
        return None
    try:
        import cv2

        return cv2 if _works(cv2) else None
    except Exception:  # noqa: BLE001 - missing, broken or wrong: use ndimage
        return None


def backend() -> str:
    return "opencv" if opencv() is not None else "ndimage"


@contextlib.contextmanager
def _threads(cv2, workers: int):
    """OpenCV's own thread count for the calls inside, restored after."""
    old, want = cv2.getNumThreads(), max(1, workers)
    if old == want:  # changing it rebuilds OpenCV's pool: calls in other threads wait
        yield
        return
    cv2.setNumThreads(want)
    try:
        yield
    finally:
        cv2.setNumThreads(old)


def single_threaded() -> None:
    """OpenCV's calls on one thread from now on in this process (for many calls at once in
    threads, such as chunks: each call's ``_threads`` then changes nothing, where setting
    the count back and forth made concurrent calls wait for each other — measured: two
    chunk threads ran no faster than one)."""
    cv2 = opencv()
    if cv2 is not None and cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def _borders(cv2) -> dict[str, int]:
    return {"reflect": cv2.BORDER_REFLECT, "mirror": cv2.BORDER_REFLECT_101,
            "nearest": cv2.BORDER_REPLICATE, "wrap": cv2.BORDER_WRAP,
            "zero": cv2.BORDER_CONSTANT}


def _as_float(x: np.ndarray, scale: float, dtype) -> tuple[np.ndarray, float]:
    """``x`` as ``dtype`` with ``scale`` applied (a new array unless it already is)."""
    if x.dtype == dtype and scale == 1.0:
        return x, 1.0
    out = np.empty(x.shape, dtype)
    np.multiply(x, dtype.type(scale), out=out, casting="unsafe")
    return out, 1.0


#: OpenCV runs a filter call on one thread below this many pixels (measured: 2^20 - 1
#: pixels take twice as long per pixel as 2^20); smaller images, down to
#: SPLIT_PIXELS (below which threads cost more than they save), are split into
#: strips filtered in threads of our own.
OPENCV_PARALLEL_PIXELS = 1 << 20
SPLIT_PIXELS = 1 << 17


def _strips(n_out: int, min_rows: int, workers: int, pixels: int) -> list[tuple[int, int]]:
    """Output row ranges for calls in threads: one range unless the image is below
    OpenCV's own threading size; each range at least ``min_rows`` rows."""
    parts = workers if SPLIT_PIXELS <= pixels < OPENCV_PARALLEL_PIXELS else 1
    parts = max(1, min(parts, n_out // max(min_rows, 1)))
    bounds = np.linspace(0, n_out, parts + 1).astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def integer_output(x: np.ndarray, terms, scale: float) -> bool:
    """Whether :func:`separable` may write 8-bit samples directly: an 8-bit input, one
    term with taps of one sign whose gains make ``255·scale·|k|`` sum to at most 1, so
    every result lies in [0, 255] — nothing can clip (the count stays exact: 0)."""
    if x.dtype != np.uint8 or len(terms) != 1 or opencv() is None:
        return False
    col, row = (np.asarray(f, np.float64) for f in terms[0])
    if not ((col >= 0).all() or (col <= 0).all()) or not ((row >= 0).all() or (row <= 0).all()):
        return False
    if (col.sum(axis=-1) * row.sum(axis=-1) * scale < 0).any():
        return False
    gain = np.abs(col).sum(axis=-1) * np.abs(row).sum(axis=-1) * abs(scale) * 255.0
    return bool((gain <= 1.0 + 1e-6).all())


def _run(cv2, x: np.ndarray, g: Geometry, boundary: str, call, workers: int,
         out_dtype=None) -> np.ndarray:
    """The valid output of geometry ``g`` from ``call(src, anchor, border)``.

    ``call`` returns an array the size of ``src``, whose position (i, j) is the
    correlation with the kernel's (0, 0) tap at ``src[i - ay, j - ax]``. Small
    images run in row strips in threads (see :data:`OPENCV_PARALLEL_PIXELS`): a
    strip's rows and the kernel's reach above and below, real rows inside the
    image, OpenCV's border at its edges.
    """
    (pt, pb), (pl, pr) = g.pad
    kh, kw = g.ksize
    out_h, out_w = g.out_shape
    borders = _borders(cv2)
    if boundary != "wrap" and pt + pb == kh - 1 and pl + pr == kw - 1:
        src, anchor, border = x, (pl, pt), borders[boundary]  # OpenCV extends by itself
        above, below = pt, pb
        ax, ay = 0, 0
    else:
        src = x
        if pt or pb or pl or pr:
            src = cv2.copyMakeBorder(x, pt, pb, pl, pr, borders[boundary])
            src = src.reshape(src.shape[:2] + (x.shape[2],))
        # The kernel's centre as anchor, the outputs read shifted by it: OpenCV's fast path
        # for symmetric kernels needs a centred anchor (measured 2x faster than (0, 0)).
        anchor, border = (kw // 2, kh // 2), cv2.BORDER_CONSTANT
        above, below = 0, kh - 1
        ax, ay = anchor
    strips = _strips(out_h, max(2 * kh, 32), workers, src.shape[0] * src.shape[1])

    def strip(bounds):
        a, b = bounds
        s0, s1 = max(0, a - above), min(src.shape[0], b + below)
        y = call(src[s0:s1], anchor, border)
        return y.reshape(s1 - s0, -1, x.shape[2])[a - s0 + ay:b - s0 + ay, ax:ax + out_w]

    if len(strips) == 1:
        return strip(strips[0])
    out = np.empty((out_h, out_w, x.shape[2]), out_dtype or (
        np.float64 if x.dtype == np.float64 else np.float32))

    def fill(bounds):
        out[bounds[0]:bounds[1]] = strip(bounds)

    _each(fill, strips)
    return out


def _each(fn, items: list) -> None:
    """``fn`` on every item, in threads when there are several (OpenCV releases the GIL)."""
    from pwfilter import parallel

    parallel.run(fn, items, len(items))


def _per_channel(x: np.ndarray, g: Geometry, one) -> np.ndarray:
    """Apply ``one(channel_array, c)`` to each channel (a kernel each), or to all at once
    (in groups of at most :data:`MAX_CHANNELS`)."""
    if not g.per_channel:
        if g.channels <= MAX_CHANNELS:
            return one(x, None)
        return np.concatenate([one(np.ascontiguousarray(x[..., a:a + MAX_CHANNELS]), None)
                               for a in range(0, g.channels, MAX_CHANNELS)], axis=-1)
    parts = [one(np.ascontiguousarray(x[..., c:c + 1]), c) for c in range(g.channels)]
    return np.concatenate(parts, axis=-1)


def band_limit(dtype) -> int:
    """Most taps per ``filter2D`` call that OpenCV still evaluates by sliding sums."""
    return 129 if np.dtype(dtype) == np.float32 else 49


def band_count(kh: int, kw: int, limit: int) -> int:
    """``len(kernel_bands(kh, kw, limit))`` without listing them (huge kernels)."""
    if kh * kw <= limit:
        return 1
    cols = min(kw, limit)
    rows = max(1, limit // cols)
    return -(-kh // rows) * -(-kw // cols)


def kernel_bands(kh: int, kw: int, limit: int) -> list[tuple[slice, slice]]:
    """Rectangles of at most ``limit`` taps tiling a kh x kw kernel (rows first)."""
    if kh * kw <= limit:
        return [(slice(0, kh), slice(0, kw))]
    cols = min(kw, limit)
    rows = max(1, limit // cols)
    return [(slice(r, min(r + rows, kh)), slice(c, min(c + cols, kw)))
            for r in range(0, kh, rows) for c in range(0, kw, cols)]


def direct(x: np.ndarray, kernel: np.ndarray, g: Geometry, boundary: str, scale: float,
           dtype, workers: int) -> np.ndarray:
    """Valid convolution of the extended input by sliding sums (any kernel)."""
    dtype = np.dtype(dtype)
    cv2 = opencv()
    if cv2 is None:
        return _ndimage_direct(*_as_float(x, scale, dtype), kernel, g, boundary, workers)
    x, scale = _as_float(x, scale, dtype)
    kflip = np.flip(np.asarray(kernel, dtype), axis=-1 if g.ndim == 1 else (-2, -1))
    limit = band_limit(dtype)
    if g.ndim == 1:
        def one(src, c):
            return _signal_direct(cv2, src, kflip if c is None else kflip[c], g, boundary, limit,
                                  workers)
    else:
        bands = kernel_bands(*g.ksize, limit)

        def one(src, c):
            k = kflip if c is None else kflip[c]
            if len(bands) == 1:
                return _run(cv2, src, g, boundary,
                            lambda s, anchor, border: cv2.filter2D(s, -1, k, anchor=anchor,
                                                                   borderType=border),
                            workers)
            return _banded(cv2, src, k, g, boundary, bands)

    with _threads(cv2, workers):
        return _per_channel(x, g, one)


#: Outputs per row when a signal is filtered as an image: OpenCV works on rows in
#: parallel and in cache, so many short rows run ~3x faster than one long one.
SEGMENT = 1 << 13


def _signal_direct(cv2, x: np.ndarray, k: np.ndarray, g: Geometry, boundary: str,
                   limit: int, workers: int) -> np.ndarray:
    """Valid correlation of a signal (n, C), extended by ``g.pad``, with the 1-D ``k``.

    The extended signal is laid out as rows of ``L`` samples (a reshape, no copy)
    and filtered as an image: each row's outputs are right except its last
    ``M - 1``, which need the next row's first samples; those are computed
    again from windows across the row ends. Kernels longer than ``limit`` taps
    are applied in pieces whose results add up.
    """
    from pwfilter.blocks import boundary_index

    n, channels = x.shape
    (before, after), = g.pad
    m, = g.ksize
    n_out, = g.out_shape
    length = max(SEGMENT, 4 * m)
    rows = -(-n_out // length)
    if rows == 1:
        length = n_out + m - 1  # one row holding the whole extended signal
    xp = np.zeros((rows * length + m - 1, channels), x.dtype)  # zeros past the extension
    xp[before:before + n] = x
    if boundary != "zero":
        for dst, pos in ((slice(0, before), np.arange(-before, 0)),
                         (slice(before + n, before + n + after), np.arange(n, n + after))):
            xp[dst] = x[boundary_index(pos, n, boundary)]
    grid = xp[:rows * length].reshape(rows, length, channels)
    # Window r ends M - 1 samples past row r: the inputs of row r's last M - 1 outputs.
    ends = None
    if rows > 1 and m > 1:
        starts = np.arange(1, rows + 1) * length - (m - 1)
        ends = xp[starts[:, None] + np.arange(2 * m - 2)]
    parts = _strips(rows, 1, workers, rows * length)
    out = None
    width = n_out if rows == 1 else length  # outputs kept per row
    for first in range(0, m, limit):
        taps = k[first:first + limit][None, :]
        y = (np.zeros if first and rows > 1 else np.empty)((rows, width, channels), x.dtype)

        def fill(bounds, first=first, taps=taps, y=y):
            a, b = bounds
            if rows == 1:  # one row: only its first n_out outputs are wanted (M >> n_out)
                src = grid[a:b, first:first + n_out + taps.shape[1] - 1]
                y[a:b, :n_out] = cv2.filter2D(
                    src, -1, taps, anchor=(0, 0),
                    borderType=cv2.BORDER_CONSTANT).reshape(b - a, -1, channels)[:, :n_out]
                return
            y[a:b, :length - first] = cv2.filter2D(
                grid[a:b, first:], -1, taps, anchor=(0, 0),
                borderType=cv2.BORDER_CONSTANT).reshape(b - a, -1, channels)

        _each(fill, parts)
        if ends is not None:
            fix = cv2.filter2D(np.ascontiguousarray(ends[:, first:]), -1, taps, anchor=(0, 0),
                               borderType=cv2.BORDER_CONSTANT).reshape(rows, -1, channels)
            y[:, length - (m - 1):] = fix[:, :m - 1]
        out = y if out is None else np.add(out, y, out=out)
    return out.reshape(rows * width, channels)[:n_out]


def _banded(cv2, src: np.ndarray, k: np.ndarray, g: Geometry, boundary: str,
            bands) -> np.ndarray:
    """A large kernel as the sum of its bands, each correlated over the extended input."""
    (pt, pb), (pl, pr) = g.pad
    out_h, out_w = g.out_shape
    xp = cv2.copyMakeBorder(src, pt, pb, pl, pr, _borders(cv2)[boundary]) \
        if (pt or pb or pl or pr) else src
    xp = xp.reshape(xp.shape[:2] + (src.shape[2],))
    out = None
    for rows, cols in bands:
        part = xp[rows.start: rows.start + out_h + (rows.stop - rows.start) - 1,
                  cols.start: cols.start + out_w + (cols.stop - cols.start) - 1]
        y = cv2.filter2D(part, -1, k[rows, cols], anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
        y = y.reshape(part.shape)[:out_h, :out_w]
        if out is None:
            out = np.ascontiguousarray(y)
        else:
            out += y
    return out


def separable(x: np.ndarray, terms, g: Geometry, boundary: str, scale: float, dtype,
              workers: int, *, to_uint8: bool = False) -> np.ndarray:
    """Valid convolution by a sum of separable terms: ``terms`` lists (column, row) factors,
    ``(kh,)``/``(kw,)`` shared or ``(C, kh)``/``(C, kw)`` one per channel.

    ``to_uint8`` (an 8-bit ``x``, one term, OpenCV loaded): the result as 8-bit samples,
    ``rint(255·scale·(x ⊛ k))`` saturated, straight from OpenCV's float sums — no float
    image, no separate quantizing pass (see :func:`integer_output`)."""
    dtype = np.dtype(dtype)
    cv2 = opencv()
    if cv2 is None:
        return _ndimage_separable(*_as_float(x, scale, dtype), terms, g, boundary, workers)
    depth = cv2.CV_32F if dtype == np.float32 else cv2.CV_64F
    if to_uint8:
        depth, dtype, scale = cv2.CV_8U, np.dtype(np.float32), scale * 255.0
    elif x.dtype not in (np.uint8, np.uint16, dtype):
        x, scale = _as_float(x, scale, dtype)

    def one(src, c):
        out = None
        for col, row in terms:
            kc = np.ascontiguousarray((col if c is None else col[c])[::-1], dtype)
            kr = np.ascontiguousarray((row if c is None else row[c])[::-1] * scale, dtype)
            y = _run(cv2, src, g, boundary,
                     lambda s, anchor, border: cv2.sepFilter2D(s, depth, kr, kc, anchor=anchor,
                                                               borderType=border), workers,
                     np.uint8 if to_uint8 else None)
            out = y if out is None else np.add(out, y, out=out)
        return out

    with _threads(cv2, workers):
        return _per_channel(x, g, one)


# ----------------------------------------------------------------- SciPy fallback


def extend(x: np.ndarray, g: Geometry, boundary: str) -> np.ndarray:
    """``x`` extended by ``g.pad`` with the boundary rule (a copy; ``x`` when no padding)."""
    pads = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
            "zero": "constant"}
    if all(a == 0 and b == 0 for a, b in g.pad):
        return x
    return np.pad(x, list(g.pad) + [(0, 0)], mode=pads[boundary])


def _in_strips(fn, xp: np.ndarray, m0: int, n_out0: int, workers: int) -> np.ndarray:
    """Run ``fn`` (valid convolution along all axes) on row strips in threads
    (``scipy.ndimage`` releases the GIL, so two strips use two cores)."""
    from pwfilter import parallel

    strips = min(workers, max(1, n_out0 // 64))
    if strips <= 1:
        return fn(xp)
    bounds = np.linspace(0, n_out0, strips + 1).astype(int)
    parts = parallel.run(lambda ab: fn(xp[ab[0]: ab[1] + m0 - 1]),
                         zip(bounds[:-1], bounds[1:]), strips)
    return np.concatenate(parts, axis=0)


def _correlate_valid(xp: np.ndarray, w: np.ndarray, axis: int | None) -> np.ndarray:
    """Valid correlation of ``xp`` (channels last) by ``w`` along ``axis`` (all axes if None)."""
    from scipy import ndimage

    nd = xp.ndim - 1 if axis is None else 1
    axes = range(xp.ndim - 1) if axis is None else (axis,)
    if axis is None and nd == 2 and w.ndim == 2 and w.shape[0] > 1:
        # Row by row: ndimage's n-D correlate tabulates offsets for every border case,
        # taps x min(size, kernel) per axis — gigabytes for a 321x321 kernel on any image.
        kh = w.shape[0]
        rows = xp.shape[0] - kh + 1
        out = None
        for i in range(kh):
            y = _correlate_valid(xp[i:i + rows], w[i], 1)
            out = y if out is None else np.add(out, y, out=out)
        return out
    if axis is None:
        out = ndimage.correlate(xp, w.reshape(w.shape + (1,) * (xp.ndim - w.ndim)),
                                mode="constant")
    else:
        out = ndimage.correlate1d(xp, w, axis=axis, mode="constant")
    sl = [slice(None)] * xp.ndim
    for a, m in zip(axes, w.shape[-nd:]):
        sl[a] = slice(m // 2, m // 2 + xp.shape[a] - m + 1)
    return out[tuple(sl)]


def _ndimage_direct(x, scale, kernel, g: Geometry, boundary: str, workers: int) -> np.ndarray:
    xp = extend(x, g, boundary)
    w = np.flip(np.asarray(kernel, x.dtype), axis=tuple(range(-g.ndim, 0)))

    def fn(part):
        if not g.per_channel:
            return _correlate_valid(part, w, None)
        return np.concatenate([_correlate_valid(part[..., c:c + 1], w[c], None)
                               for c in range(g.channels)], axis=-1)

    return _in_strips(fn, xp, g.ksize[0], g.out_shape[0], workers)


def _ndimage_separable(x, scale, terms, g: Geometry, boundary: str, workers: int) -> np.ndarray:
    xp = extend(x, g, boundary)

    def fn(part):
        out = None
        for col, row in terms:
            y = part
            for axis, f in ((0, col), (1, row)):
                f = np.flip(np.asarray(f, part.dtype), axis=-1)
                if g.per_channel:
                    y = np.concatenate([_correlate_valid(y[..., c:c + 1], f[c], axis)
                                        for c in range(g.channels)], axis=-1)
                else:
                    y = _correlate_valid(y, f, axis)
            out = y if out is None else out + y
        return out

    return _in_strips(fn, xp, g.ksize[0], g.out_shape[0], workers)
