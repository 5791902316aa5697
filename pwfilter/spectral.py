"""FFT evaluation of a convolution: whole transforms, row blocks, overlap-add.

The convolution theorem: a linear convolution is the product of zero-padded
spectra. Every function here computes the *valid* part of a convolution of
the boundary-extended input (see :mod:`pwfilter.engine`), with real FFTs in
the input's float type (pocketfft, through :mod:`pwfilter.fft`).

- Images go through :func:`fft_image`: row blocks, each block the rows under
  its outputs (extended by the boundary rule, built by
  :func:`pwfilter.blocks.fill_block`, integers converted on the way), one 2-D
  transform per block over all channels at once. One block is the whole
  image; several bound the memory and run in threads, one transform each.
- Signals (audio) go through :func:`fft_valid` (one transform of the whole
  signal) or :func:`oa_valid` (overlap-add: blocks of the long signal
  transformed many at a time).
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

import numpy as np

from pwfilter import fft, parallel
from pwfilter.blocks import fill_block

if TYPE_CHECKING:
    from pwfilter.engine import Geometry


def fast_len(n: int) -> int:
    return fft.next_fast_len(n)


def fft_sizes(g: Geometry) -> tuple[int, ...]:
    """Whole-signal transform sizes: long enough that circular wrap-around never
    reaches a kept output (the zero extension is the transform's own padding)."""
    return tuple(fast_len(n + max(a, b)) for n, (a, b) in zip(g.shape, g.pad))


def kernel_spectrum(kernel, sizes, per_channel: bool, nd: int, workers: int) -> np.ndarray:
    """The kernel's real spectrum at ``sizes``, channels last: ``(..., 1)`` shared or
    ``(..., C)`` one per channel."""
    from pwfilter.engine import Separable

    if isinstance(kernel, Separable):
        spec = (fft.fft(kernel.col, sizes[0])[:, None]
                * fft.rfft(kernel.row, sizes[1])[None, :])
        return spec[..., None]
    axes = tuple(range(kernel.ndim - nd, kernel.ndim))
    # Last axis first, on the kernel's few rows only; then the other axes on the
    # zero-padded half spectrum (rfftn would transform all the zero rows too).
    spec = fft.rfft(kernel, sizes[-1], -1, workers)
    if nd > 1:
        spec = fft.fftn(spec, sizes[:-1], axes[:-1], workers)
    return np.moveaxis(spec, 0, -1) if per_channel else spec[..., None]


# ----------------------------------------------------------------- images


def image_block_memory(rows: int, g: Geometry) -> int:
    """Bytes of one block's buffers: the extended block (reused for the result) and its
    half spectrum (complex, the same size)."""
    nv = fast_len(rows + g.ksize[0] - 1)
    nh = fast_len(g.padded[1])
    return 2 * nv * nh * g.channels * g.itemsize


def fft_image(x: np.ndarray, kernel, g: Geometry, boundary: str, scale: float, rows: int,
              workers: int, dtype) -> np.ndarray:
    """Valid convolution of the extended image ``x`` (H, W, C) in blocks of ``rows`` output rows.

    Each block is filled with the extended input under its outputs,
    transformed over both axes and all channels in one call, multiplied by
    the kernel's spectrum (shared by every block: all blocks have one
    transform size) and transformed back; its valid part is the block's
    output rows.
    Blocks run in ``workers`` threads with one-threaded transforms; a single
    block (the whole image) uses the threads inside its transforms instead.
    """
    kh, kw = g.ksize
    out_h, out_w = g.out_shape
    channels = g.channels
    pad_cols = g.pad[1]
    we = g.padded[1]
    rows = max(1, min(rows, out_h))
    nv, nh = fast_len(rows + kh - 1), fast_len(we)
    bins = nh // 2 + 1
    starts = list(range(0, out_h, rows))
    pool_size = max(1, min(workers, len(starts)))
    threads = max(1, workers // pool_size)
    complex_type = np.complex64 if np.dtype(dtype) == np.float32 else np.complex128
    kspec = kernel_spectrum(kernel, (nv, nh), g.per_channel, 2, threads)
    kspec = np.ascontiguousarray(
        np.broadcast_to(kspec, (nv, bins, channels))).astype(complex_type, copy=False)
    out = np.empty((out_h, out_w, channels), dtype)
    local = threading.local()

    def one(o0: int) -> None:
        if not hasattr(local, "block"):
            # Per-thread buffers, reused by every block the thread runs.
            local.block = np.empty((nv, nh, channels), dtype)
            local.spec = np.empty((nv, bins, channels), complex_type)
        n = min(rows, out_h - o0)
        he = n + kh - 1
        block, spec = local.block, local.spec
        fill_block(x, o0 - g.pad[0][0], he, pad_cols, boundary, scale, block)
        block[:he, we:] = 0  # zero padding (the buffer also holds the previous result)
        block[he:] = 0
        fft.rfftn(block, (nv, nh), (0, 1), threads, out=spec)
        spec *= kspec
        fft.ifft_inplace(spec, 0, threads)  # the spectrum's own buffer: no temporary
        y = fft.irfft(spec, nh, 1, threads, out=block)
        out[o0:o0 + n] = y[kh - 1:kh - 1 + n, kw - 1:kw - 1 + out_w]

    parallel.run(one, starts, pool_size)
    return out


# ----------------------------------------------------------------- signals


def fft_valid(x: np.ndarray, kernel: np.ndarray, g: Geometry, workers: int) -> np.ndarray:
    """Convolution by one batched real FFT over all signal axes and channels.

    ``x`` is the input, extended explicitly for non-zero boundaries (then
    ``g`` has no padding left) or not at all (zero boundary: the transform's
    own zero padding extends it).
    """
    nd = g.ndim
    axes = tuple(range(nd))
    sizes = fft_sizes(g)
    spec = fft.rfftn(x, sizes, axes, workers)
    spec *= kernel_spectrum(kernel, sizes, g.per_channel, nd, workers)
    full = fft.irfftn(spec, sizes, axes, workers)
    del spec
    sl = tuple(slice(m - 1 - a, m - 1 - a + n) for m, (a, _), n in
               zip(g.ksize, g.pad, g.out_shape))
    return full[sl]


def fft_batch(nfft: int, transforms_per_item: int, budget: int = 1 << 23) -> int:
    """How many overlap-add blocks to transform in one call.

    pocketfft transforms several strided 1-D arrays at once with SIMD (8 lanes
    of float32) and splits them over its threads, so a call wants at least
    16 transforms; beyond that, batches are capped at ``budget`` samples to
    stay cache- and memory-friendly (measured: 10 min stereo (x) 3 s IR takes
    0.91 s with 2 blocks of 2^19 per call, 0.38 s with 8).
    """
    want = -(-16 // max(transforms_per_item, 1))
    return max(1, min(want, budget // max(nfft * transforms_per_item, 1)))


def oa_block(m: int, n: int) -> int:
    """FFT size for overlap-add along an axis: ~8x the kernel, 2^14..2^19, not over the input."""
    target = min(max(8 * m, 1 << 14), 1 << 19)
    size = 1 << max(int(math.ceil(math.log2(target))), 1)
    while size < 2 * m:
        size *= 2
    return min(fast_len(size), fast_len(n + m - 1))


def _oa_full(x: np.ndarray, kernel: np.ndarray, per_channel: bool, nfft: int,
             workers: int) -> np.ndarray:
    """Full linear convolution of a signal (n, C) by overlap-add, blocks transformed together.

    The batch, spectrum and inverse buffers are made once and reused (fresh memory
    for every batch costs page faults, and makes the time erratic); each block's
    head is written once and the previous block's tail added onto it.
    """
    m0 = kernel.shape[-1]
    n0, channels = x.shape
    step = nfft - m0 + 1
    tail = m0 - 1
    blocks = -(-n0 // step)
    bins = nfft // 2 + 1
    kspec = kernel_spectrum(kernel, (nfft,), per_channel, 1, workers)
    kspec = np.ascontiguousarray(np.broadcast_to(kspec, (bins, channels)))
    group = min(blocks, fft_batch(nfft, channels))
    batch = np.zeros((group, nfft, channels), x.dtype)  # samples past a step stay zero
    spec = np.empty((group, bins, channels), np.result_type(kspec, np.complex64))
    back = np.empty((group, nfft, channels), x.dtype)
    out = np.empty((n0 + m0 - 1, channels), x.dtype)
    carry = np.zeros((tail, channels), x.dtype)
    for b0 in range(0, blocks, group):
        nb = min(blocks, b0 + group) - b0
        for i in range(nb):
            seg = x[(b0 + i) * step: (b0 + i + 1) * step]
            batch[i, :seg.shape[0]] = seg
            batch[i, seg.shape[0]:step] = 0  # the signal's end
        fft.rfftn(batch[:nb], (nfft,), (1,), workers, out=spec[:nb])
        spec[:nb] *= kspec
        y = fft.irfftn(spec[:nb], (nfft,), (1,), workers, out=back[:nb])
        for i in range(nb):
            start = (b0 + i) * step
            keep = min(step, out.shape[0] - start)
            out[start:start + keep] = y[i, :keep]
            overlap = min(tail, keep)
            out[start:start + overlap] += carry[:overlap]
            carry[:] = y[i, step:]
    end = blocks * step
    if end < out.shape[0]:
        out[end:] = carry[:out.shape[0] - end]
    return out


def oa_valid(x: np.ndarray, kernel: np.ndarray, g: Geometry, nfft: int,
             workers: int) -> np.ndarray:
    """The valid part of :func:`_oa_full` for geometry ``g`` (a signal, ``x`` unextended
    for the zero boundary, explicitly extended otherwise)."""
    full = _oa_full(x, kernel, g.per_channel, nfft, workers)
    (a, _), = g.pad
    m, = g.ksize
    n, = g.out_shape
    return full[m - 1 - a: m - 1 - a + n]
