"""The convolution engine: one entry point, four evaluation methods, one chooser.

Pure and typed: arrays in, arrays out; no files, no printing, no Click.

Model
-----
``x`` has channels last: ``(n, C)`` for signals, ``(H, W, C)`` for images;
the kernel has one axis per signal axis — shared by every channel — or a
leading channel axis ``(C, ...)`` for depthwise (one kernel per channel).

Every method computes the same thing: the input is extended by the boundary
rule (reflect, mirror, nearest, wrap or zero) by as many samples as the mode
needs, then *linearly* convolved and only the positions where the kernel
fits are kept. ``full`` extends by ``M - 1`` on each side, ``same`` by
``M // 2`` before and ``(M - 1) // 2`` after (the centre of
``scipy.signal.convolve(mode="same")``, which for odd ``M`` is the centre of
``scipy.ndimage.convolve``), ``valid`` not at all. Zero extension is never
materialised by the FFT paths: it is the FFT's own zero padding.

Methods
-------
``direct``     sliding sums (``scipy.ndimage``), cost ~ outputs · taps.
``fft``        one real FFT over all signal axes and all channels at once,
               kernel spectrum broadcast (or one per channel); cost ~ P log P.
``oa``         overlap-add along the first axis: blocks of the (long) input
               transformed in one batched call; cost ~ N log(block).
``separable``  a rank-r kernel as r sums of 1-D passes, each pass direct or
               FFT; cost ~ outputs · (kh + kw) · r.

:func:`choose_method` owns the choice; see its docstring for the model.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pwfilter import _fitted, fft
from pwfilter.errors import PwfilterError

MODES = ("full", "same", "valid")
BOUNDARIES = ("reflect", "mirror", "nearest", "wrap", "zero")
METHODS = ("auto", "direct", "fft", "oa", "separable")
_NUMPY_PAD = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
              "zero": "constant"}


def default_workers() -> int:
    return os.cpu_count() or 1


# ----------------------------------------------------------------- kernels


@dataclass(frozen=True)
class Separable:
    """A rank-1 2-D kernel kept as its factors: ``k = outer(col, row)``.

    Gaussian and box blurs are built this way, so a sigma-1000 blur never
    materialises a 8001 x 8001 array: the separable path uses the factors,
    the FFT path multiplies their 1-D spectra, and only the direct path (small
    kernels) builds the dense array. ``numpy.asarray`` gives the dense kernel.
    """

    col: np.ndarray
    row: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.col.shape[0], self.row.shape[0])

    ndim = 2

    @property
    def dtype(self):
        return np.result_type(self.col, self.row)

    @property
    def nbytes(self) -> int:
        return self.col.nbytes + self.row.nbytes

    def dense(self) -> np.ndarray:
        return np.outer(self.col, self.row)

    def __array__(self, dtype=None, copy=None):
        d = self.dense()
        return d if dtype is None else d.astype(dtype)

    def astype(self, dtype) -> Separable:
        return Separable(self.col.astype(dtype), self.row.astype(dtype))

    def flipped(self) -> Separable:
        return Separable(self.col[::-1].copy(), self.row[::-1].copy())

    def scaled(self, factor: float) -> Separable:
        return Separable(self.col / factor, self.row)


# ----------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """Sizes of one convolution problem, shared by the chooser and the methods."""

    shape: tuple[int, ...]          # input signal axes (without channels)
    channels: int
    ksize: tuple[int, ...]          # kernel signal axes
    per_channel: bool
    pad: tuple[tuple[int, int], ...]  # extension before/after, per axis
    itemsize: int

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(n + a + b - m + 1 for n, (a, b), m in zip(self.shape, self.pad, self.ksize))

    @property
    def padded(self) -> tuple[int, ...]:
        return tuple(n + a + b for n, (a, b) in zip(self.shape, self.pad))

    @property
    def outputs(self) -> int:
        return math.prod(self.out_shape) * self.channels

    @property
    def taps(self) -> int:
        return math.prod(self.ksize)


def mode_padding(ksize: tuple[int, ...], mode: str) -> tuple[tuple[int, int], ...]:
    if mode == "full":
        return tuple((m - 1, m - 1) for m in ksize)
    if mode == "same":
        return tuple((m // 2, (m - 1) // 2) for m in ksize)
    if mode == "valid":
        return tuple((0, 0) for _ in ksize)
    raise PwfilterError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")


def kernel_layout(x_shape: tuple[int, ...], k_shape: tuple[int, ...]) -> bool:
    """Check kernel against input; return True for one kernel per channel."""
    nd = len(x_shape) - 1
    channels = x_shape[-1]
    if len(k_shape) == nd:
        return False
    if len(k_shape) == nd + 1:
        if k_shape[0] == 1:
            return False
        if k_shape[0] == channels:
            return True
        raise PwfilterError(
            f"kernel of shape {k_shape} has {k_shape[0]} per-channel kernels but the input "
            f"of shape {x_shape} has {channels} channels")
    want = "(M,) or (C, M)" if nd == 1 else "(kh, kw) or (C, kh, kw)"
    raise PwfilterError(f"kernel of shape {k_shape} does not fit an input of shape {x_shape} "
                        f"(expected {want})")


def geometry(x_shape, k_shape, mode: str, itemsize: int = 4) -> Geometry:
    per_channel = kernel_layout(tuple(x_shape), tuple(k_shape))
    nd = len(x_shape) - 1
    ksize = tuple(k_shape[-nd:])
    if any(m < 1 for m in ksize):
        raise PwfilterError(f"empty kernel of shape {tuple(k_shape)}")
    g = Geometry(tuple(x_shape[:-1]), int(x_shape[-1]), ksize, per_channel,
                 mode_padding(ksize, mode), itemsize)
    if any(n < 1 for n in g.out_shape):
        raise PwfilterError(f"mode 'valid' needs the input {tuple(x_shape[:-1])} to be at least "
                            f"as large as the kernel {ksize} on every axis")
    return g


# ----------------------------------------------------------------- choosing


@dataclass(frozen=True)
class Plan:
    """What :func:`choose_method` decided: the method and every candidate's predicted cost."""

    method: str
    costs: dict[str, float]
    reason: str
    rank: int = 0
    block: int = 0
    memory: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        parts = ", ".join(f"{m} {c * 1e3:.1f} ms" for m, c in sorted(self.costs.items(),
                                                                       key=lambda kv: kv[1]))
        return f"method {self.method} ({self.reason}); predicted: {parts}"


def _fast_len(n: int) -> int:
    return fft.next_fast_len(n)


def _fft_sizes(g: Geometry) -> tuple[int, ...]:
    """Transform sizes: long enough that circular wrap-around never reaches a kept output."""
    return tuple(_fast_len(n + max(a, b)) for n, (a, b) in zip(g.shape, g.pad))


def _nlogn(sizes, batch: float) -> float:
    total = math.prod(sizes)
    return batch * total * math.log2(max(total, 2))


def _cost_direct(g: Geometry) -> float:
    c = _fitted.DIRECT_1D if g.ndim == 1 else _fitted.DIRECT_ND
    padded = math.prod(g.padded) * g.channels
    return c["per_mac"] * padded * g.taps + c["per_sample"] * padded + c["fixed"]


def _cost_fft(g: Geometry) -> float:
    c = _fitted.FFT
    sizes = _fft_sizes(g)
    spectra = g.channels
    kernel = (g.channels if g.per_channel else 1)
    return (c["per_nlogn"] * (_nlogn(sizes, spectra) + _nlogn(sizes, kernel))
            + c["per_sample"] * math.prod(sizes) * g.channels + c["fixed"])


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
    return min(_fast_len(size), _fast_len(n + m - 1))


def _cost_oa(g: Geometry) -> tuple[float, int]:
    m0, n0 = g.ksize[0], g.padded[0]
    nfft = oa_block(m0, n0)
    step = nfft - m0 + 1
    blocks = math.ceil((n0 + m0 - 1) / step)
    rest = _fft_sizes(g)[1:]
    c = _fitted.FFT
    cost = (c["per_nlogn"] * _nlogn((nfft, *rest), g.channels * blocks)
            + c["per_sample"] * blocks * nfft * math.prod(rest) * g.channels * 2 + c["fixed"])
    return cost, nfft


def rank_tolerance(dtype) -> float:
    """Relative size (times the kernel's side) below which a singular value counts as zero:
    well under the rounding of the computation's precision, so dropping it changes nothing."""
    return 1e-7 if np.dtype(dtype) == np.float32 else 1e-13


def _rank_one(k: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Column and row whose outer product is ``k``, if ``k`` is rank 1 (no SVD needed).

    The row and column through the largest entry determine a rank-1 matrix;
    the check is one outer product — cheap even for 401x401 Gaussians, whose
    SVD alone would cost more than the blur.
    """
    i, j = np.unravel_index(np.argmax(np.abs(k)), k.shape)
    peak = k[i, j]
    if peak == 0:
        return None
    col, row = k[:, j], k[i, :] / peak
    err = np.abs(np.outer(col, row) - k).max()
    return (col, row) if err <= tol * max(k.shape) * abs(peak) else None


def kernel_rank(kernel: np.ndarray, nd: int) -> tuple[int, float]:
    """Numerical rank of a 2-D kernel (the largest over channels) and its relative tolerance.

    Rank 1 is recognised directly; otherwise kernels up to 64 taps a side get
    an SVD, larger ones count as full rank (they go to the FFT anyway).
    """
    if nd != 2:
        return 0, 0.0
    if isinstance(kernel, Separable):
        return 1, 0.0
    base = rank_tolerance(kernel.dtype)
    k2 = kernel.reshape(-1, *kernel.shape[-2:]).astype(np.float64)
    tol = max(k2.shape[-2:]) * base
    if all(_rank_one(k, base) is not None for k in k2):
        return 1, tol
    if max(k2.shape[-2:]) > 64:
        return min(k2.shape[-2:]), tol
    s = np.linalg.svd(k2, compute_uv=False)
    ranks = (s > tol * s[:, :1]).sum(axis=1)
    return int(ranks.max()), tol


def _pass_costs(samples: int, n: int, m: int) -> tuple[float, float]:
    """Predicted (direct, fft) cost of a 1-D pass of m taps along an axis of length n.

    The FFT pass runs in cache-sized strips (see :func:`_pass_1d`), so it has
    constants of its own.
    """
    d = _fitted.DIRECT_SEP
    direct = d["per_mac"] * samples * m + d["per_sample"] * samples
    nfft = _fast_len(n)
    f = _fitted.FFT_1D
    by_fft = (f["per_nlogn"] * samples / n * nfft * math.log2(nfft) + f["per_sample"] * samples
              + _fitted.FFT["fixed"])  # a transform call's own overhead
    return direct, by_fft


def _cost_separable(g: Geometry, rank: int) -> float:
    if g.ndim != 2 or rank < 1 or g.taps == 1:
        return math.inf
    total = 0.0
    for axis in range(2):
        # a pass along `axis` on an array already valid-cropped on earlier axes
        shape = [g.out_shape[i] if i < axis else g.padded[i] for i in range(2)]
        total += min(_pass_costs(math.prod(shape) * g.channels, g.padded[axis], g.ksize[axis]))
    return rank * total + _fitted.DIRECT_SEP["fixed"]


def choose_method(g: Geometry, *, rank: int = 0, allow: tuple[str, ...] = METHODS[1:]) -> Plan:
    """Choose the fastest way to evaluate one convolution, from a fitted cost model.

    Each candidate's time is predicted from the problem's sizes with
    constants fitted on this kind of machine (``benchmarks/fit_costs.py``
    writes :mod:`pwfilter._fitted`):

    - direct:    ``a · P · taps + b · P``, P the extended input's samples
      (``scipy.ndimage``'s sliding sums, cost linear in the kernel size);
    - fft:       ``f · (C + K) · L log2 L + s · L · C``, L the product of the
      transform sizes (next fast lengths of input + extension), C spectra
      of the input, K = 1 or C kernel spectra — the convolution theorem with
      all channels in one batched call;
    - oa:        the same per block of an overlap-add along the first axis,
      blocks about 8x the kernel (2^14..2^19), which wins when the input is
      much longer than the kernel (long audio);
    - separable: for a 2-D kernel of numerical rank r ≤ 3 (rank 1 checked
      directly, otherwise an SVD with tolerance ``rank_tolerance(dtype)`` ·
      max(kh, kw) relative to the largest singular value — far below the
      computation's rounding), r · (pass along rows + pass along columns),
      each pass the cheaper of direct and 1-D FFT in cache-sized strips —
      Gaussian and box blurs have r = 1, so their cost is ~ kh + kw instead
      of kh · kw per output, and flat in sigma once the passes use FFTs.

    A single tap is a scaling and always runs direct (bit-exact for the
    identity kernel).

    Like SciPy's ``choose_conv_method`` this compares predicted costs of
    whole methods rather than a single size threshold such as OpenCV's
    ``filter2D`` (direct below 11x11 taps, DFT above), because the
    crossover depends on the input size, the channel count and the rank.
    The cheapest candidate among ``allow`` wins; ``Plan.costs`` keeps every
    prediction so ``-v`` can show why.
    """
    costs: dict[str, float] = {}
    block = 0
    if g.taps == 1 and "direct" in allow:
        # One tap is a scaling: exact (bit-exact for identity) and cheapest directly.
        return Plan("direct", {"direct": _cost_direct(g)}, "a single tap is a plain scaling")
    if "direct" in allow:
        costs["direct"] = _cost_direct(g)
    if "fft" in allow:
        costs["fft"] = _cost_fft(g)
    forced = len(allow) == 1
    if "oa" in allow and (forced or oa_block(g.ksize[0], g.padded[0])
                          < _fast_len(g.padded[0] + g.ksize[0] - 1)):
        costs["oa"], block = _cost_oa(g)  # when it makes two blocks or more
    if "separable" in allow and 1 <= rank <= 3 and g.ndim == 2:
        costs["separable"] = _cost_separable(g, rank)
    costs = {k: v for k, v in costs.items() if math.isfinite(v)}
    if not costs:
        raise PwfilterError(f"no method can evaluate this convolution (allowed: {allow})")
    method = min(costs, key=costs.get)
    reason = {
        "direct": f"{g.taps} taps is small enough for sliding sums",
        "fft": f"{g.taps} taps: one batched FFT is cheaper than sliding sums",
        "oa": f"input {g.padded[0]} long vs kernel {g.ksize[0]}: overlap-add blocks of {block}",
        "separable": f"kernel of rank {rank}: {rank} pair(s) of 1-D passes",
    }[method]
    return Plan(method, costs, reason, rank=rank, block=block,
                memory={"fft": fft_memory(g)})


def fft_memory(g: Geometry) -> int:
    """Bytes of the FFT path's largest buffers (input spectrum, its inverse, kernel spectra)."""
    sizes = _fft_sizes(g)
    spectrum = math.prod(sizes[:-1]) * (sizes[-1] // 2 + 1) * 2 * g.itemsize
    k = g.channels if g.per_channel else 1
    return spectrum * (g.channels + k) + math.prod(sizes) * g.channels * g.itemsize


# ----------------------------------------------------------------- methods


def _extend(x: np.ndarray, g: Geometry, boundary: str) -> np.ndarray:
    pad = list(g.pad) + [(0, 0)]
    if all(a == 0 and b == 0 for a, b in g.pad):
        return x
    return np.pad(x, pad, mode=_NUMPY_PAD[boundary])


def _valid_slices(g_padded: tuple[int, ...], ksize: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(m // 2, m // 2 + n - m + 1) for n, m in zip(g_padded, ksize))


def _in_strips(fn, xp: np.ndarray, m0: int, n_out0: int, workers: int) -> np.ndarray:
    """Run ``fn`` (valid convolution along all axes) on row strips in threads.

    ``scipy.ndimage`` releases the GIL, so two strips use two cores.
    """
    strips = min(workers, max(1, n_out0 // 64))
    if strips <= 1:
        return fn(xp)
    bounds = np.linspace(0, n_out0, strips + 1).astype(int)
    with ThreadPoolExecutor(strips) as pool:
        parts = list(pool.map(lambda ab: fn(xp[ab[0]: ab[1] + m0 - 1]),
                              zip(bounds[:-1], bounds[1:])))
    return np.concatenate(parts, axis=0)


def _direct_valid(xp: np.ndarray, kernel: np.ndarray, per_channel: bool) -> np.ndarray:
    """Valid convolution of an extended array by sliding sums."""
    from scipy import ndimage

    nd = xp.ndim - 1
    ksize = kernel.shape[-nd:]
    w = np.flip(kernel, axis=tuple(range(kernel.ndim - nd, kernel.ndim)))
    sl = _valid_slices(xp.shape[:-1], ksize)
    if not per_channel:
        if nd == 1:
            out = ndimage.correlate1d(xp, w, axis=0, mode="constant")
        else:
            out = ndimage.correlate(xp, w[..., None], mode="constant")
        return out[sl]
    out = np.empty(tuple(s.stop - s.start for s in sl) + (xp.shape[-1],), dtype=xp.dtype)
    for c in range(xp.shape[-1]):
        xc = np.ascontiguousarray(xp[..., c])
        if nd == 1:
            out[..., c] = ndimage.correlate1d(xc, w[c], axis=0, mode="constant")[sl]
        else:
            out[..., c] = ndimage.correlate(xc, w[c], mode="constant")[sl]
    return out


def _kernel_spectrum(kernel: np.ndarray, sizes, per_channel: bool, nd: int, workers: int):
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


def _fft_valid(x: np.ndarray, kernel: np.ndarray, g: Geometry, workers: int) -> np.ndarray:
    """Convolution by one batched real FFT over all signal axes and channels.

    ``x`` is the input, extended explicitly for non-zero boundaries (then
    ``g`` has no padding left) or not at all (zero boundary: the transform's
    own zero padding extends it).
    """
    nd = g.ndim
    axes = tuple(range(nd))
    sizes = _fft_sizes(g)
    spec = fft.rfftn(x, sizes, axes, workers)
    spec *= _kernel_spectrum(kernel, sizes, g.per_channel, nd, workers)
    full = fft.irfftn(spec, sizes, axes, workers)
    del spec
    sl = tuple(slice(m - 1 - a, m - 1 - a + n) for m, (a, _), n in
               zip(g.ksize, g.pad, g.out_shape))
    return full[sl]


def _oa_full(x: np.ndarray, kernel: np.ndarray, per_channel: bool, nfft: int,
             workers: int) -> np.ndarray:
    """Full linear convolution by overlap-add along axis 0, blocks transformed together.

    Other signal axes (images) are transformed whole at once with each block.
    """
    nd = x.ndim - 1
    m0 = kernel.shape[-nd]
    n0 = x.shape[0]
    step = nfft - m0 + 1
    blocks = -(-n0 // step)
    rest = tuple(_fast_len(n + m - 1) for n, m in zip(x.shape[1:-1], kernel.shape[-nd + 1:]))
    sizes = (nfft, *rest)
    kspec = _kernel_spectrum(kernel, sizes, per_channel, nd, workers)
    out_shape = (n0 + m0 - 1,) + tuple(n + m - 1 for n, m in
                                       zip(x.shape[1:-1], kernel.shape[-nd + 1:]))
    out = np.zeros((blocks * step + nfft,) + out_shape[1:] + (x.shape[-1],), dtype=x.dtype)
    group = fft_batch(nfft * math.prod(rest), x.shape[-1])
    axes = tuple(range(1, nd + 1))
    for b0 in range(0, blocks, group):
        b1 = min(blocks, b0 + group)
        seg = x[b0 * step: b1 * step]
        if seg.shape[0] < (b1 - b0) * step:
            seg = np.concatenate(
                [seg, np.zeros(((b1 - b0) * step - seg.shape[0],) + x.shape[1:], x.dtype)])
        seg = seg.reshape((b1 - b0, step) + x.shape[1:])
        spec = fft.rfftn(seg, sizes, axes, workers)
        spec *= kspec
        y = fft.irfftn(spec, sizes, axes, workers)
        del spec
        y = y[(slice(None), slice(None)) + tuple(slice(0, s) for s in out_shape[1:])]
        # Heads tile the output; tails (nfft - step = m0 - 1 samples) add onto the next blocks.
        head = y[:, :step].reshape((-1,) + y.shape[2:])
        out[b0 * step: b1 * step] += head
        tail = nfft - step
        if tail:
            for i in range(b1 - b0):
                start = (b0 + i + 1) * step
                out[start: start + tail] += y[i, step:]
    return out[: out_shape[0]]


def _oa_valid(x: np.ndarray, kernel: np.ndarray, g: Geometry, nfft: int,
              workers: int) -> np.ndarray:
    full = _oa_full(x, kernel, g.per_channel, nfft, workers)
    sl = tuple(slice(m - 1 - a, m - 1 - a + n) for m, (a, _), n in
               zip(g.ksize, g.pad, g.out_shape))
    return full[sl]


def separable_factors(kernel: np.ndarray, rank: int):
    """Rank-r factors of 2-D kernel(s): lists of (column, row) 1-D kernels per term.

    For a shared kernel each is ``(kh,)``/``(kw,)``; per channel ``(C, kh)``/``(C, kw)``.
    """
    if isinstance(kernel, Separable):
        return [(kernel.col, kernel.row)]
    base = rank_tolerance(kernel.dtype)
    k = kernel.astype(np.float64)
    if rank == 1:
        pairs = [_rank_one(kc, base) for kc in k.reshape(-1, *k.shape[-2:])]
        if all(p is not None for p in pairs):
            cols = np.stack([c for c, _ in pairs]).reshape(*k.shape[:-2], k.shape[-2])
            rows = np.stack([r for _, r in pairs]).reshape(*k.shape[:-2], k.shape[-1])
            return [(cols, rows)]
    u, s, vt = np.linalg.svd(k)
    terms = []
    for r in range(rank):
        scale = np.sqrt(s[..., r])
        col = u[..., :, r] * scale[..., None]
        row = vt[..., r, :] * scale[..., None]
        terms.append((col, row))
    return terms


def _pass_1d(xp: np.ndarray, w: np.ndarray, axis: int, per_channel: bool,
             workers: int) -> np.ndarray:
    """Valid 1-D convolution of a 2-D image along ``axis`` (0 or 1), direct or by FFT.

    The work is cut into strips run in threads (pocketfft and
    ``scipy.ndimage`` release the GIL). FFT strips lie across the other axis
    and are narrow (64 columns, 16 rows), so each strip's transforms stay in
    cache — measured 1.7x faster than one whole-array transform at 12 MP.
    Sliding sums use contiguous row strips (along axis 0 with an overlap of
    m - 1 rows).
    """
    from scipy import ndimage

    m = w.shape[-1]
    n = xp.shape[axis]
    n_out = n - m + 1
    direct, fft_cost = _pass_costs(xp.size, n, m)
    nfft = _fast_len(n)
    keep = [slice(None)] * xp.ndim
    if fft_cost < direct:
        kspec = fft.rfft(w.astype(xp.dtype), nfft)
        shape = [1] * xp.ndim
        shape[axis] = kspec.shape[-1]
        if per_channel:
            shape[-1] = xp.shape[-1]
            kspec = np.moveaxis(kspec, 0, -1)
        kspec = kspec.reshape(shape)
        keep[axis] = slice(m - 1, n)

        def compute(part):
            spec = fft.rfft(part, nfft, axis)
            spec *= kspec
            return fft.irfft(spec, nfft, axis)[tuple(keep)]

        along, width = 1 - axis, (64 if axis == 0 else 16)
    else:
        wf = np.flip(w, axis=-1).astype(xp.dtype)

        def compute(part):
            valid = [slice(None)] * part.ndim
            valid[axis] = slice(m // 2, m // 2 + part.shape[axis] - m + 1)
            if not per_channel:
                return ndimage.correlate1d(part, wf, axis=axis, mode="constant")[tuple(valid)]
            return np.stack([ndimage.correlate1d(part[..., c], wf[c], axis=axis,
                                                 mode="constant")[tuple(valid[:-1])]
                             for c in range(part.shape[-1])], axis=-1)

        along = 0
        width = max(16, -(-xp.shape[0] // (4 * workers)))
    out_shape = list(xp.shape)
    out_shape[axis] = n_out
    out = np.empty(out_shape, xp.dtype)
    pieces = []
    for start in range(0, out_shape[along], width):
        dst = [slice(None)] * xp.ndim
        dst[along] = slice(start, start + width)
        src = list(dst)
        if along == axis:
            src[axis] = slice(start, start + width + m - 1)
        pieces.append((tuple(dst), tuple(src)))

    def work(piece) -> None:
        dst, src = piece
        out[dst] = compute(xp[src])

    if workers > 1 and len(pieces) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, pieces))
    else:
        for piece in pieces:
            work(piece)
    return out


def _separable_valid(xp: np.ndarray, kernel: np.ndarray, g: Geometry, rank: int,
                     workers: int) -> np.ndarray:
    out = None
    for col, row in separable_factors(kernel, rank):
        y = _pass_1d(xp, col, 0, g.per_channel, workers)
        term = _pass_1d(y, row, 1, g.per_channel, workers)
        out = term if out is None else out + term
    return out


# ----------------------------------------------------------------- entry point


def prepare(x: np.ndarray, kernel: np.ndarray, *, correlate: bool = False):
    """Common dtype (float32 unless either side is float64) and the kernel to convolve with."""
    if x.ndim < 2:
        raise PwfilterError(f"input must have channels last, got shape {x.shape}")
    dtype = np.float64 if np.float64 in (x.dtype, kernel.dtype) else np.float32
    nd = x.ndim - 1
    if isinstance(kernel, Separable):
        k = kernel.astype(dtype)
        if not (np.isfinite(k.col).all() and np.isfinite(k.row).all()):
            raise PwfilterError("the kernel holds NaN or Inf values")
        if nd != 2:
            raise PwfilterError("a 2-D kernel needs an image")
        return np.asarray(x, dtype=dtype), (k.flipped() if correlate else k)
    k = np.asarray(kernel, dtype=dtype)
    if not np.isfinite(k).all():
        raise PwfilterError("the kernel holds NaN or Inf values")
    if correlate:
        k = np.flip(k, axis=tuple(range(k.ndim - nd, k.ndim)))
    if k.ndim == nd + 1 and k.shape[0] == 1:
        k = k[0]
    return np.asarray(x, dtype=dtype), np.ascontiguousarray(k)


def plan(x: np.ndarray, kernel: np.ndarray, *, mode: str = "same",
         method: str = "auto") -> Plan:
    """The :class:`Plan` :func:`convolve` would follow for these arrays."""
    g = geometry(x.shape, kernel.shape, mode, np.dtype(x.dtype).itemsize)
    rank = kernel_rank(kernel, g.ndim)[0] if g.ndim == 2 else 0
    if method == "auto":
        return choose_method(g, rank=rank)
    if method not in METHODS:
        raise PwfilterError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    if method == "separable" and g.ndim != 2:
        raise PwfilterError("the separable method needs a 2-D kernel")
    if method == "separable":
        rank = max(rank, 1)
        full_rank = min(g.ksize)
        rank = rank if rank <= 3 else full_rank
    p = choose_method(g, rank=rank, allow=(method,)) if method != "separable" else Plan(
        "separable", {"separable": _cost_separable(g, rank)}, "forced", rank=rank)
    if method == "oa" and not p.block:
        p = Plan("oa", p.costs, "forced", block=oa_block(g.ksize[0], g.padded[0]))
    return Plan(p.method, p.costs, "forced with --method", rank=p.rank, block=p.block,
                memory=p.memory)


def convolve(x: np.ndarray, kernel: np.ndarray, *, mode: str = "same",
             boundary: str = "zero", method: str = "auto", correlate: bool = False,
             workers: int | None = None, chosen: Plan | None = None) -> np.ndarray:
    """Convolve ``x`` (channels last) by ``kernel`` along every signal axis.

    Parameters
    ----------
    x : array ``(n, C)`` or ``(H, W, C)``, float32 or float64.
    kernel : ``(M,)``/``(kh, kw)`` for all channels, or ``(C, M)``/``(C, kh, kw)``
        one per channel (depthwise).
    mode : ``"full"``, ``"same"`` or ``"valid"`` (see the module docstring).
    boundary : how the input is extended: ``reflect`` (``dcb|abcd|cba``),
        ``mirror`` (``dc|abcd|cb``), ``nearest``, ``wrap`` or ``zero``.
    method : ``"auto"`` (see :func:`choose_method`), ``"direct"``, ``"fft"``,
        ``"oa"`` or ``"separable"``; all give the same result within rounding.
    correlate : apply the kernel unflipped (correlation), as OpenCV's
        ``filter2D`` does.
    chosen : a :class:`Plan` from :func:`plan`, to avoid choosing twice.

    Returns
    -------
    The result, float32 unless ``x`` or ``kernel`` is float64.

    Examples
    --------
    >>> import numpy as np
    >>> convolve(np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 1.0]), mode="full")[:, 0]
    array([1., 3., 5., 3.])
    """
    if boundary not in BOUNDARIES:
        raise PwfilterError(f"unknown boundary {boundary!r} (choose from {', '.join(BOUNDARIES)})")
    workers = workers or default_workers()
    x, k = prepare(x, kernel, correlate=correlate)
    p = chosen or plan(x, k, mode=mode, method=method)
    g = geometry(x.shape, k.shape, mode, x.itemsize)
    if p.method == "fft" and boundary == "zero":
        return _fft_valid(x, k, g, workers)
    xp = _extend(x, g, boundary)
    gp = geometry(xp.shape, k.shape, "valid", x.itemsize)
    if p.method == "fft":
        return _fft_valid(xp, k, gp, workers)
    if p.method == "oa":
        if boundary == "zero":
            return _oa_valid(x, k, g, p.block, workers)
        return _oa_valid(xp, k, gp, p.block, workers)
    if p.method == "separable":
        return _separable_valid(xp, k, gp, p.rank, workers)
    if isinstance(k, Separable):
        k = k.dense()
    return _in_strips(lambda part: _direct_valid(part, k, gp.per_channel), xp, gp.ksize[0],
                      gp.out_shape[0], workers)
