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
  transformed many at a time, by the :class:`BlockConvolver` that also
  convolves streamed audio block by block).
"""

from __future__ import annotations

import math
import sys
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


def image_kernel_memory(rows: int, g: Geometry) -> int:
    """Bytes of the kernel's spectrum shared by every block (one channel unless the
    kernels are per channel)."""
    nv = fast_len(rows + g.ksize[0] - 1)
    bins = fast_len(g.padded[1]) // 2 + 1
    return nv * bins * (g.channels if g.per_channel else 1) * 2 * g.itemsize


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
    # (nv, bins, 1) for a shared kernel, broadcast over the channels by the product: a
    # copy per channel would hold C spectra (measured: 2.4 GB for an 8001-tap blur).
    kspec = kernel_spectrum(kernel, (nv, nh), g.per_channel, 2, threads).astype(
        complex_type, copy=False)
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


def oa_valid(x: np.ndarray, kernel: np.ndarray, g: Geometry, nfft: int,
             workers: int) -> np.ndarray:
    """The valid part of the full overlap-add convolution for geometry ``g`` (a signal,
    ``x`` unextended for the zero boundary, explicitly extended otherwise): the
    streaming path's :class:`BlockConvolver`, given the whole signal."""
    m = kernel.shape[-1]
    nfft = max(nfft, 1 << math.ceil(math.log2(2 * m)))  # forced oa on a short input
    # Batches twice a stream's: memory is spent on the whole signal anyway (measured:
    # 60 s stereo (x) 1 s, 59 ms against 72 ms with a stream's batches).
    full = BlockConvolver(kernel, x.shape[1], x.dtype, nfft=nfft, workers=workers,
                          batch=2 * BATCH_SAMPLES).whole(x)
    (a, _), = g.pad
    m, = g.ksize
    n, = g.out_shape
    return full[m - 1 - a: m - 1 - a + n]


#: Samples per batched transform (16 MiB of float32): four steps of 2^19 for stereo.
#: Measured on 10 min stereo (x) 3 s: as fast as eight steps, with 60 MB less peak memory.
BATCH_SAMPLES = 1 << 22


# Reusable arrays. A stream's stages hand blocks on without copying: the filter's
# outputs are views into its inverse-transform buffer. Allocating a fresh buffer
# per batch costs the kernel's page faults and zeroing of new memory (measured
# ~8 % of a long stream's CPU time, on the FFT thread). A buffer is handed out
# again once every view of it is gone, which CPython's reference count tells
# exactly (every view holds a reference to the array owning its memory).


def _refs(buffers: list, i: int) -> int:
    return sys.getrefcount(buffers[i])


#: What :func:`_refs` counts for an array that only its pool's list refers to.
_IDLE = _refs([np.empty(0)], 0)


class BufferPool:
    """Arrays of one shape and type, reused once released; at most ``keep`` are kept.

    When all kept buffers are in use (a consumer holding many blocks), ``take``
    returns a new array that is not kept: correct, just not reused.
    """

    def __init__(self, shape: tuple[int, ...], dtype, keep: int = 4):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.keep = keep
        self.buffers: list[np.ndarray] = []

    def take(self) -> np.ndarray:
        """A buffer nobody else refers to (contents undefined)."""
        for i in range(len(self.buffers)):
            if _refs(self.buffers, i) == _IDLE:
                return self.buffers[i]
        buf = np.empty(self.shape, self.dtype)
        if len(self.buffers) < self.keep:
            self.buffers.append(buf)
        return buf


class BlockConvolver:
    """Full linear convolution of an endless (n, C) stream by a kernel, by overlap-add.

    Input samples are gathered into a preallocated, zero-padded batch of
    ``steps`` blocks of ``nfft`` (``nfft - M + 1`` input samples each); a
    full batch is transformed in one call. ``push`` returns the output
    blocks that are final so far; ``flush`` the rest (the last partial batch
    and the M - 1 sample tail).
    """

    def __init__(self, kernel: np.ndarray, channels: int, dtype=np.float32, *, nfft: int,
                 workers: int | None = None, batch: int = BATCH_SAMPLES):
        self.per_channel = kernel.ndim == 2
        self.m = kernel.shape[-1]
        self.nfft = nfft
        if self.nfft < 2 * self.m:
            raise ValueError("the FFT size must be at least twice the kernel length")
        self.step = self.nfft - self.m + 1
        self.steps = fft_batch(self.nfft, channels, batch)
        self.dtype = np.dtype(dtype)
        self.workers = workers or -1
        k = np.asarray(kernel, dtype=self.dtype)
        spec = fft.rfft(k, self.nfft)
        bins = self.nfft // 2 + 1
        # (bins, C), contiguous: the product with the batch's spectrum then runs
        # without broadcasting over channels (measured 6x faster than (bins, 1)).
        self.kspec = np.ascontiguousarray(
            np.broadcast_to(spec.T if self.per_channel else spec[:, None], (bins, channels)))
        self.channels = channels
        self.inbuf = np.zeros((self.steps, self.nfft, channels), self.dtype)
        self.spec = np.empty((self.steps, bins, channels), spec.dtype)
        # Outputs are views into the inverse transform's buffer, handed on without
        # copies; a buffer is refilled once the consumer has let go of them.
        self.outbufs = BufferPool((self.steps, self.nfft, channels), self.dtype)
        self.filled = 0  # input samples in the current batch
        self.tail = np.zeros((self.m - 1, channels), self.dtype)  # overlap to add

    def _convolve(self, blocks: int, out: np.ndarray) -> np.ndarray:
        """The first ``blocks`` blocks of the batch convolved (whole, tails included) into
        ``out``: one batched real FFT, the product with the kernel's spectrum, back."""
        spec = fft.rfft(self.inbuf[:blocks], self.nfft, 1, self.workers, out=self.spec[:blocks])
        spec *= self.kspec
        return fft.irfft(spec, self.nfft, 1, self.workers, out=out[:blocks])

    def whole(self, x: np.ndarray) -> np.ndarray:
        """The full convolution of a whole signal (n, C), written straight into one array:
        the in-memory overlap-add (no blocks to hand on, so no pool and no final copy)."""
        n = x.shape[0]
        out = np.empty((n + self.m - 1, self.channels), self.dtype)
        back = np.empty((self.steps, self.nfft, self.channels), self.dtype)
        step, tail = self.step, self.m - 1
        blocks = -(-n // step)
        carry = np.zeros((tail, self.channels), self.dtype)
        for b0 in range(0, blocks, self.steps):
            count = min(blocks - b0, self.steps)
            for i in range(count):
                seg = x[(b0 + i) * step: (b0 + i + 1) * step]
                self.inbuf[i, :seg.shape[0]] = seg
                self.inbuf[i, seg.shape[0]:step] = 0  # the signal's end
            y = self._convolve(count, back)
            for i in range(count):
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

    def _transform(self, blocks: int) -> list[np.ndarray]:
        """Convolve the first ``blocks`` blocks of the batch; return their finished outputs.

        With ``nfft >= 2M`` a step is longer than the M - 1 sample tail, so
        each tail overlaps only the next block (or the next batch's first).
        The outputs are views into the inverse transform's buffer, with the
        tails added in place: no copies.
        """
        y = self._convolve(blocks, self.outbufs.take())
        tail = self.m - 1
        if tail:
            y[0, :tail] += self.tail
            for b in range(1, blocks):
                y[b, :tail] += y[b - 1, self.step:]
            self.tail = y[blocks - 1, self.step:].copy()
        return [y[b, : self.step] for b in range(blocks)]

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        pos, n = 0, block.shape[0]
        capacity = self.steps * self.step
        while pos < n:
            b, off = divmod(self.filled, self.step)
            take = min(self.step - off, n - pos)
            self.inbuf[b, off: off + take] = block[pos: pos + take]
            pos += take
            self.filled += take
            if self.filled == capacity:
                out += self._transform(self.steps)
                self.filled = 0
        return out

    def flush(self) -> list[np.ndarray]:
        if not self.filled:
            return [self.tail]
        b, off = divmod(self.filled, self.step)
        if off:
            self.inbuf[b, off: self.step] = 0  # stale samples of the previous batch
            b += 1
        n = self.filled
        self.filled = 0
        out = self._transform(b) + [self.tail]
        return [np.concatenate(out)[: n + self.m - 1]]
