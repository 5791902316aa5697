"""Blocks of an image extended by a boundary rule: the unit of blocked evaluation.

A method that works block by block (the FFT over row blocks today, chunks of
images bigger than memory next) needs, for a range of output rows, the input
rows under the kernel — real rows inside the image, rows made by the
boundary rule beyond its edges — with the columns extended the same way.
:func:`fill_block` builds exactly that block, converting integer samples to
normalized floats on the way, so no extended copy of the whole image is ever
made. The index rules are those of ``numpy.pad`` and ``scipy.ndimage``,
extension repeated as far as needed (a kernel may be larger than the image).
"""

from __future__ import annotations

import numpy as np


def boundary_index(positions: np.ndarray, n: int, boundary: str) -> np.ndarray:
    """Source index of each position of an axis of length ``n`` extended by ``boundary``.

    Positions inside ``[0, n)`` map to themselves; outside, ``reflect`` repeats
    ``dcba|abcd|dcba``, ``mirror`` ``dcb|abcd|cba``, ``nearest`` the edge,
    ``wrap`` the opposite side, and ``zero`` gives -1 (a zero sample).
    """
    p = np.asarray(positions, dtype=np.int64)
    if boundary == "zero":
        return np.where((p >= 0) & (p < n), p, -1)
    if boundary == "nearest":
        return np.clip(p, 0, n - 1)
    if boundary == "wrap":
        return np.mod(p, n)
    if boundary == "reflect":
        m = np.mod(p, 2 * n)
        return np.where(m >= n, 2 * n - 1 - m, m)
    if boundary == "mirror":
        if n == 1:
            return np.zeros_like(p)
        period = 2 * n - 2
        m = np.mod(p, period)
        return np.where(m >= n, period - m, m)
    raise ValueError(f"unknown boundary {boundary!r}")


def _convert(src: np.ndarray, scale: float, dst: np.ndarray) -> None:
    """``dst = src * scale`` in ``dst``'s float type, in one pass."""
    if scale == 1.0:
        np.copyto(dst, src, casting="unsafe")
    else:
        np.multiply(src, dst.dtype.type(scale), out=dst, casting="unsafe")


def fill_block(x: np.ndarray, first_row: int, rows: int, pad_cols: tuple[int, int],
               boundary: str, scale: float, out: np.ndarray) -> None:
    """Fill ``out[:rows, :W + before + after]`` with extended rows of ``x`` (H, W, C).

    Block row ``i`` is the extended input's row ``first_row + i`` (negative or
    past ``H`` beyond the image's edges); its columns run from ``-before`` to
    ``W + after``. Values are ``x * scale`` in ``out``'s float type. The rest
    of ``out`` (an FFT's zero padding) is left untouched.
    """
    h, w = x.shape[:2]
    before, after = pad_cols
    src_rows = boundary_index(np.arange(first_row, first_row + rows), h, boundary)
    body = out[:rows, before:before + w]
    # Consecutive source rows are converted in one slice (the whole block, away
    # from the image's edges); extension rows one by one.
    continues = (np.diff(src_rows) == 1) & (src_rows[:-1] >= 0)
    starts = np.flatnonzero(np.concatenate(([True], ~continues)))
    ends = np.append(starts[1:], rows)
    for a, b in zip(starts.tolist(), ends.tolist()):
        r = int(src_rows[a])
        if r < 0:
            body[a:b] = 0
        else:
            _convert(x[r: r + (b - a)], scale, body[a:b])
    for cols, idx in ((slice(0, before), np.arange(-before, 0)),
                      (slice(before + w, before + w + after), np.arange(w, w + after))):
        if cols.stop == cols.start:
            continue
        if boundary == "zero":
            out[:rows, cols] = 0
        else:
            out[:rows, cols] = out[:rows, before + boundary_index(idx, w, boundary)]
