"""The convolution engine: one entry point, four evaluation methods, one chooser.

Pure and typed: arrays in, arrays out; no files, no printing, no Click.

Model
-----
``x`` has channels last: ``(n, C)`` for signals, ``(H, W, C)`` for images;
the kernel has one axis per signal axis — shared by every channel — or a
leading channel axis ``(C, ...)`` for depthwise (one kernel per channel).
``x`` may hold integer samples (8/16-bit images as decoded) with a ``scale``
that normalizes them; they are converted on the way, never copied whole.

Every method computes the same thing: the input is extended by the boundary
rule (reflect, mirror, nearest, wrap or zero) by as many samples as the mode
needs, then *linearly* convolved and only the positions where the kernel
fits are kept. ``full`` extends by ``M - 1`` on each side, ``same`` by
``M // 2`` before and ``(M - 1) // 2`` after (the centre of
``scipy.signal.convolve(mode="same")``, which for odd ``M`` is the centre of
``scipy.ndimage.convolve``), ``valid`` not at all.

Methods
-------
``direct``     sliding sums (OpenCV ``filter2D``, SciPy's ndimage without
               OpenCV), cost ~ outputs · taps; see :mod:`pwfilter.spatial`.
``separable``  a rank-r kernel as r pairs of 1-D passes (``sepFilter2D``),
               cost ~ outputs · (kh + kw) · r.
``fft``        real FFTs over all signal axes and all channels at once, kernel
               spectrum broadcast (or one per channel); images in row blocks
               that bound memory; cost ~ P log P. See :mod:`pwfilter.spectral`.
``oa``         overlap-add along the first axis: blocks of a long signal
               transformed many at a time (for images, the same as ``fft``).

:func:`choose_method` owns the choice; see its docstring for the model.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from pwfilter import costs, spatial, spectral
from pwfilter.errors import PwfilterError

MODES = ("full", "same", "valid")
BOUNDARIES = ("reflect", "mirror", "nearest", "wrap", "zero")
METHODS = ("auto", "direct", "fft", "oa", "separable")

#: Most bytes of one FFT row block's buffers (block and spectrum): measured on 3 and 12 MP
#: RGB, blocks a few times the kernel's height that fit this are faster than one whole
#: transform (cache), and they bound the memory of large images.
BLOCK_BYTES = 96 << 20


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
    model: str = ""

    def describe(self) -> str:
        parts = ", ".join(f"{m} {c * 1e3:.1f} ms" for m, c in sorted(self.costs.items(),
                                                                       key=lambda kv: kv[1]))
        model = f"; {self.model}" if self.model else ""
        return f"method {self.method} ({self.reason}); predicted: {parts}{model}"


def _nlogn(total: float) -> float:
    return total * math.log2(max(total, 2))


def _bands(g: Geometry, dtype_size: int) -> int:
    limit = spatial.band_limit(np.float32 if dtype_size == 4 else np.float64)
    kh, kw = (1, *g.ksize) if g.ndim == 1 else g.ksize
    return spatial.band_count(kh, kw, limit)


def _serial(g: Geometry) -> float:
    """How many times longer sliding sums take when too small to share out: below
    ``spatial.SPLIT_PIXELS`` they run on one thread of ``default_workers()``."""
    return float(default_workers()) if math.prod(g.padded) < spatial.SPLIT_PIXELS else 1.0


def _cost_direct(g: Geometry, c: costs.Costs) -> float:
    k = c["direct_1d" if g.ndim == 1 else "direct_2d"]
    bands = _bands(g, g.itemsize)
    # Every band is one OpenCV call and one pass over the data (the first also copies).
    return (_serial(g) * (k["per_mac"] * g.outputs * g.taps
                          + k["per_sample"] * g.outputs * (bands + 1))
            + k["fixed"] * (bands + 1))


def _cost_separable(g: Geometry, rank: int, c: costs.Costs, symmetric: bool = False) -> float:
    if g.ndim != 2 or rank < 1 or g.taps == 1:
        return math.inf
    k = c["separable"]
    # The row pass runs on the extended rows, the column pass on the output's; OpenCV
    # adds mirrored taps before multiplying when a factor is symmetric (blurs).
    rows_pass = g.padded[0] * g.out_shape[1] * g.channels * g.ksize[1]
    cols_pass = g.outputs * g.ksize[0]
    macs = (rows_pass + cols_pass) * (0.5 if symmetric else 1.0)
    return rank * (_serial(g) * (k["per_mac"] * macs + k["per_sample"] * g.outputs)
                   + k["fixed"])


def image_block_rows(g: Geometry) -> int:
    """Output rows per FFT block of an image: a power of two at or above three times the
    kernel's height (at least 64), halved while a block's buffers exceed
    :data:`BLOCK_BYTES`; the whole image when that is no more."""
    kh = g.ksize[0]
    rows = 1 << max(6, math.ceil(math.log2(max(3 * (kh - 1), 1))))
    while rows > max(kh, 16) and spectral.image_block_memory(rows, g) > BLOCK_BYTES:
        rows //= 2
    return min(rows, g.out_shape[0])


def _cost_fft_image(g: Geometry, c: costs.Costs) -> tuple[float, int]:
    k = c["fft_2d"]
    rows = image_block_rows(g)
    blocks = math.ceil(g.out_shape[0] / rows)
    size = spectral.fast_len(rows + g.ksize[0] - 1) * spectral.fast_len(g.padded[1])
    kernels = g.channels if g.per_channel else 1
    per_block = k["per_nlogn"] * g.channels * _nlogn(size) + k["per_sample"] * size * g.channels
    return blocks * per_block + k["per_nlogn"] * kernels * _nlogn(size) + k["fixed"], rows


#: log2 of the transform size beyond which a 1-D FFT leaves the cache and each
#: further doubling costs more (the ``per_spill`` term).
_CACHED_LOG2 = 17


def _cost_transforms_1d(k: dict[str, float], size: int, count: float) -> float:
    """``count`` real transforms of ``size`` points (with their products and copies)."""
    spill = size * max(0.0, math.log2(max(size, 2)) - _CACHED_LOG2)
    return count * (k["per_nlogn"] * _nlogn(size) + k["per_spill"] * spill
                     + k["per_sample"] * size)


def _cost_fft_signal(g: Geometry, c: costs.Costs) -> float:
    k = c["fft_1d"]
    kernels = g.channels if g.per_channel else 1
    size = math.prod(spectral.fft_sizes(g))
    return _cost_transforms_1d(k, size, 2 * g.channels + kernels) + k["fixed"]


def _cost_oa(g: Geometry, c: costs.Costs) -> tuple[float, int]:
    m0, n0 = g.ksize[0], g.padded[0]
    nfft = spectral.oa_block(m0, n0)
    step = nfft - m0 + 1
    blocks = math.ceil((n0 + m0 - 1) / step)
    kernels = g.channels if g.per_channel else 1
    k = c["oa_1d"]
    return (_cost_transforms_1d(k, nfft, 2 * g.channels * blocks + kernels)
            + k["per_block"] * blocks + k["fixed"]), nfft


def choose_method(g: Geometry, *, rank: int = 0, allow: tuple[str, ...] = METHODS[1:],
                  model: costs.Costs | None = None, symmetric: bool = False,
                  budget: int = 0) -> Plan:
    """Choose the fastest way to evaluate one convolution, from a fitted cost model.

    Each candidate's time is predicted from the problem's sizes with
    constants fitted on this machine by ``pwfilter calibrate`` (or shipped
    ones, fitted the same way on a 2-core machine; :mod:`pwfilter.costs`).
    P is the number of outputs (positions × channels):

    - direct:    ``s · (a · P · taps + b · P · (bands + 1)) + c · (bands + 1)`` —
      OpenCV's sliding sums, in bands of at most 129 taps (see
      :mod:`pwfilter.spatial`), each band a call and a pass over the data, and
      a copy of the input; s is the number of cores for inputs too small to
      share out (one thread does the work), 1 otherwise;
    - separable: for a 2-D kernel of numerical rank r ≤ 3 (rank 1 checked
      directly, otherwise an SVD with tolerance ``rank_tolerance(dtype)`` ·
      max(kh, kw) relative to the largest singular value — far below the
      computation's rounding), ``r · (s · (a · MACs + b · P) + c)``, the row and
      column passes' multiply-adds halved for symmetric factors (OpenCV adds
      mirrored taps first) — Gaussian and box blurs have r = 1 and are
      symmetric, so their cost is ~ (kh + kw) / 2 instead of kh · kw per
      output;
    - fft (images): ``blocks · (f · C · L log2 L + s · L · C) + f · K · L log2 L + c``,
      L the size of one row block's transform (blocks a few times the
      kernel's height, :func:`image_block_rows`), C input spectra, K = 1 or
      C kernel spectra — the convolution theorem with all channels in one
      call per block;
    - fft (signals): ``T · (f · N log2 N + q · N · max(0, log2 N - 17) + s · N) + c``
      for T = 2C + K transforms of N points (forward, inverse, kernel): the
      second term is the cost of transforms too large for the cache;
    - oa (signals): the same formula, with constants of its own (batches of
      blocks behave unlike one whole transform) and T = 2C per block of an
      overlap-add along the first axis, plus ``p · blocks`` (each block's
      own copies); blocks about 8x the kernel (2^14..2^19), which wins when
      the input is much longer than the kernel (long audio).

    A single tap is a scaling and always runs direct (bit-exact for the
    identity kernel).

    Like SciPy's ``choose_conv_method`` this compares predicted costs of
    whole methods rather than a single size threshold such as OpenCV's
    ``filter2D`` (direct below 11x11 taps, DFT above), because the
    crossover depends on the input size, the channel count and the rank.
    The cheapest candidate among ``allow`` wins; ``Plan.costs`` keeps every
    prediction so ``-v`` can show why, and ``Plan.model`` says which
    constants were used.
    """
    c = model or costs.current()
    found: dict[str, float] = {}
    block = 0
    if g.taps == 1 and "direct" in allow:
        # One tap is a scaling: exact (bit-exact for identity) and cheapest directly.
        return Plan("direct", {"direct": _cost_direct(g, c)}, "a single tap is a plain scaling",
                    model=c.source)
    forced = len(allow) == 1
    if "direct" in allow:
        found["direct"] = _cost_direct(g, c)
    if g.ndim == 2:
        if "fft" in allow or (forced and "oa" in allow):
            found[allow[0] if forced else "fft"], block = _cost_fft_image(g, c)
        if "separable" in allow and 1 <= rank <= 3:
            found["separable"] = _cost_separable(g, rank, c, symmetric)
    else:
        if "fft" in allow:
            found["fft"] = _cost_fft_signal(g, c)
        if "oa" in allow and (forced or spectral.oa_block(g.ksize[0], g.padded[0])
                              < spectral.fast_len(g.padded[0] + g.ksize[0] - 1)):
            found["oa"], block = _cost_oa(g, c)  # when it makes two blocks or more
    found = {k: v for k, v in found.items() if math.isfinite(v)}
    if not found:
        raise PwfilterError(f"no method can evaluate this convolution (allowed: {allow})")
    if budget:
        found = {m: found[m] for m in fitting(g, tuple(found), budget, block, forced)}
    method = min(found, key=found.get)
    if g.ndim == 2 and method in ("fft", "oa"):
        blocks = math.ceil(g.out_shape[0] / block)
        fft_why = (f"{g.taps} taps: FFTs are cheaper than sliding sums"
                   + (f", in {blocks} blocks of {block} rows" if blocks > 1 else ""))
    else:
        fft_why = f"{g.taps} taps: one batched FFT is cheaper than sliding sums"
    reason = {
        "direct": f"{g.taps} taps is small enough for sliding sums",
        "fft": fft_why,
        "oa": fft_why if g.ndim == 2 else
        f"input {g.padded[0]} long vs kernel {g.ksize[0]}: overlap-add blocks of {block}",
        "separable": f"kernel of rank {rank}: {rank} pair(s) of 1-D passes",
    }[method]
    if method == "separable" and not forced:
        block = 0
    return Plan(method, found, reason, rank=rank, block=block, model=c.source)


def method_memory(g: Geometry, method: str, block: int = 0, workers: int = 0) -> int:
    """Working memory (bytes) of ``method`` on problem ``g``, beyond the input itself.

    Counted from the arrays each method allocates: every method writes a float
    output (and per-channel kernels concatenate one more); sliding sums
    (direct, separable) may extend the whole input first (banded kernels,
    ``wrap``, ``full``, SciPy's fallback); the FFT of a signal holds its
    padded transforms (:func:`fft_memory`); an image's FFT holds one row
    block's buffers per thread and the kernel's spectrum; overlap-add holds the extended signal and its
    batches (:data:`spectral.BATCH_SAMPLES` samples per batch, two in flight).
    It does not count the input's decoding (see :mod:`pwfilter.limits`).
    """
    out = math.prod(g.out_shape) * g.channels * g.itemsize
    outputs = out * (2 if g.per_channel else 1)
    extended = math.prod(g.padded) * g.channels * g.itemsize
    if method in ("direct", "separable") or g.taps == 1:
        return outputs + extended
    if method == "fft" and g.ndim == 1:
        return outputs + fft_memory(g)
    if method == "oa" and g.ndim == 1:
        nfft = block or spectral.oa_block(g.ksize[0], g.padded[0])
        batch = max(2 * spectral.BATCH_SAMPLES, nfft * g.channels) * g.itemsize * 4
        return outputs + extended + batch
    rows = block or image_block_rows(g)
    threads = max(1, min(workers or default_workers(), math.ceil(g.out_shape[0] / rows)))
    return (outputs + threads * spectral.image_block_memory(rows, g)
            + spectral.image_kernel_memory(rows, g))


def fitting(g: Geometry, methods: tuple[str, ...], budget: int, block: int = 0,
            forced: bool = False) -> tuple[str, ...]:
    """The ``methods`` whose :func:`method_memory` fits ``budget``; an error naming the
    least demanding one when none does (``forced``: the user chose it)."""
    memory = {m: method_memory(g, m, block if m in ("fft", "oa") else 0) for m in methods}
    fits = tuple(m for m in methods if memory[m] <= budget)
    if not fits:
        least = min(memory, key=memory.get)
        who = f"--method {least}" if forced else f"every method (the least, {least},)"
        raise PwfilterError(f"a kernel of {' x '.join(map(str, g.ksize))} taps: {who} needs "
                            f"about {_bytes(memory[least])} of working memory, more than "
                            f"the limit of {_bytes(budget)} (raise it with --max-memory)")
    return fits


def fft_memory(g: Geometry) -> int:
    """Bytes of the FFT path's largest buffers for a whole-signal transform."""
    sizes = spectral.fft_sizes(g)
    spectrum = math.prod(sizes[:-1]) * (sizes[-1] // 2 + 1) * 2 * g.itemsize
    k = g.channels if g.per_channel else 1
    return spectrum * (g.channels + k) + math.prod(sizes) * g.channels * g.itemsize



# ----------------------------------------------------------------- kernel rank


def _bytes(n: int) -> str:
    from pwfilter.limits import format_bytes

    return format_bytes(n)


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



def symmetric_factors(kernel) -> bool:
    """Whether a rank-1 2-D kernel's column and row read the same backwards (every
    channel's, for per-channel kernels): Gaussians and boxes do."""
    terms = separable_factors(kernel, 1)
    col, row = terms[0]
    col, row = np.asarray(col, np.float64), np.asarray(row, np.float64)

    def same(v):
        return bool(np.allclose(v, v[..., ::-1], rtol=1e-6, atol=1e-12 * np.abs(v).max()))

    return same(col) and same(row)


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



# ----------------------------------------------------------------- entry point


def prepare(x: np.ndarray, kernel, *, correlate: bool = False):
    """The input in its computing type and the kernel to convolve with (flipped for
    correlation), both in :func:`float_type`. Integer samples stay as they are (see
    ``scale``)."""
    if x.ndim < 2:
        raise PwfilterError(f"input must have channels last, got shape {x.shape}")
    if x.dtype.kind not in "fiub":
        raise PwfilterError(f"input of {x.dtype} values: real numbers expected")
    dtype = float_type(x)
    if x.dtype.kind == "f" and x.dtype != dtype:
        x = x.astype(dtype)
    elif x.dtype.kind in "ib" and x.dtype not in (np.uint8, np.uint16):
        x = x.astype(dtype)
    nd = x.ndim - 1
    if isinstance(kernel, Separable):
        k = kernel.astype(dtype)
        if not (np.isfinite(k.col).all() and np.isfinite(k.row).all()):
            raise PwfilterError("the kernel holds NaN or Inf values")
        if nd != 2:
            raise PwfilterError("a 2-D kernel needs an image")
        return x, (k.flipped() if correlate else k)
    k = np.asarray(kernel, dtype=dtype)
    if not np.isfinite(k).all():
        raise PwfilterError("the kernel holds NaN or Inf values")
    if correlate:
        k = np.flip(k, axis=tuple(range(k.ndim - nd, k.ndim)))
    if k.ndim == nd + 1 and k.shape[0] == 1:
        k = k[0]
    return x, np.ascontiguousarray(k)


def float_type(x: np.ndarray) -> type:
    """The float type a convolution of ``x`` computes in: float64 for float64 data, float32
    otherwise (kernels are parameters: a float64 kernel does not double the work)."""
    return np.float64 if x.dtype == np.float64 else np.float32


def plan(x: np.ndarray, kernel, *, mode: str = "same", method: str = "auto",
         budget: int = 0) -> Plan:
    """The :class:`Plan` :func:`convolve` would follow for these arrays."""
    return plan_for(x.shape, np.dtype(float_type(x)).itemsize, kernel, mode=mode,
                    method=method, budget=budget)


def plan_for(shape: tuple[int, ...], itemsize: int, kernel, *, mode: str = "same",
             method: str = "auto", budget: int = 0) -> Plan:
    """The plan for an input of ``shape`` (channels last) computed with ``itemsize``-byte
    floats, known before the input is read. With a ``budget`` (bytes), methods whose
    :func:`method_memory` exceeds it are not chosen, and a forced one is refused.

    Plans are remembered for the last problems seen (a batch of same-sized files with
    one kernel plans once): the key holds the kernel's values, so equal kernels share."""
    key = _plan_key(shape, itemsize, kernel, mode, method, budget)
    found = _plans.get(key) if key is not None else None
    if found is None:
        found = _plan_for(shape, itemsize, kernel, mode, method, budget)
        if key is not None:
            if len(_plans) >= 64:
                _plans.pop(next(iter(_plans)))
            _plans[key] = found
    return found


_plans: dict = {}


def _plan_key(shape, itemsize, kernel, mode, method, budget):
    """A hashable key for a problem, or None for kernels too large to hash cheaply."""
    from pwfilter import costs

    if isinstance(kernel, Separable):
        parts = (kernel.col, kernel.row)
    else:
        parts = (np.asarray(kernel),)
    if sum(p.size for p in parts) > 1 << 16:
        return None
    values = tuple((p.dtype.str, p.shape, p.tobytes()) for p in parts)
    model = costs.current()  # (itself cached) the constants in use, and the back end
    return (tuple(shape), itemsize, isinstance(kernel, Separable), values, mode, method, budget,
            id(model), model.source, spatial.backend())


def _plan_for(shape, itemsize: int, kernel, mode: str, method: str, budget: int) -> Plan:
    g = geometry(shape, kernel.shape, mode, itemsize)
    rank = kernel_rank(kernel, g.ndim)[0] if g.ndim == 2 else 0
    symmetric = rank == 1 and symmetric_factors(kernel)
    if method == "auto":
        return choose_method(g, rank=rank, symmetric=symmetric, budget=budget)
    if method not in METHODS:
        raise PwfilterError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    if method == "separable" and g.ndim != 2:
        raise PwfilterError("the separable method needs a 2-D kernel")
    if method == "separable":
        rank = max(rank, 1)
        rank = rank if rank <= 3 else min(g.ksize)
        if budget:
            fitting(g, ("separable",), budget, forced=True)
        c = costs.current()
        return Plan("separable", {"separable": _cost_separable(g, rank, c, symmetric)},
                    "forced with --method", rank=rank, model=c.source)
    p = choose_method(g, rank=rank, allow=(method,), budget=budget)
    block = p.block or (spectral.oa_block(g.ksize[0], g.padded[0]) if method == "oa" else 0)
    return Plan(p.method, p.costs, "forced with --method", rank=p.rank, block=block,
                model=p.model)


def convolve(x: np.ndarray, kernel, *, mode: str = "same",
             boundary: str = "zero", method: str = "auto", correlate: bool = False,
             workers: int | None = None, chosen: Plan | None = None,
             scale: float = 1.0, to_uint8: bool = False) -> np.ndarray:
    """Convolve ``x`` (channels last) by ``kernel`` along every signal axis.

    Parameters
    ----------
    x : array ``(n, C)`` or ``(H, W, C)``: float32/float64, or uint8/uint16
        samples (multiplied by ``scale`` on the way).
    kernel : ``(M,)``/``(kh, kw)`` for all channels, or ``(C, M)``/``(C, kh, kw)``
        one per channel (depthwise); or a :class:`Separable` 2-D kernel.
    mode : ``"full"``, ``"same"`` or ``"valid"`` (see the module docstring).
    boundary : how the input is extended: ``reflect`` (``dcb|abcd|cba``),
        ``mirror`` (``dc|abcd|cb``), ``nearest``, ``wrap`` or ``zero``.
    method : ``"auto"`` (see :func:`choose_method`), ``"direct"``, ``"fft"``,
        ``"oa"`` or ``"separable"``; all give the same result within rounding.
    correlate : apply the kernel unflipped (correlation), as OpenCV's
        ``filter2D`` does.
    chosen : a :class:`Plan` from :func:`plan`, to avoid choosing twice.
    scale : factor applied to ``x``'s values (1/255 for 8-bit samples).
    to_uint8 : may return the result as 8-bit samples, ``rint(255·result)``, where
        that is exact and faster (see :func:`spatial.integer_output`): the caller
        checks the returned type.

    Returns
    -------
    A new array, float64 for float64 ``x``, float32 otherwise (or uint8, see
    ``to_uint8``).

    Examples
    --------
    >>> import numpy as np
    >>> convolve(np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 1.0]), mode="full")[:, 0].round(9)
    array([1., 3., 5., 3.])
    """
    if boundary not in BOUNDARIES:
        raise PwfilterError(f"unknown boundary {boundary!r} (choose from {', '.join(BOUNDARIES)})")
    workers = workers or default_workers()
    x, k = prepare(x, kernel, correlate=correlate)
    dtype = np.dtype(float_type(x))
    p = chosen or plan(x, k, mode=mode, method=method)
    g = geometry(x.shape, k.shape, mode, dtype.itemsize)
    if g.taps == 1:
        return _scaled(x, k, g, scale, dtype)
    if p.method == "separable":
        terms = separable_factors(k, p.rank)
        return spatial.separable(x, terms, g, boundary, scale, dtype, workers,
                                 to_uint8=to_uint8 and spatial.integer_output(x, terms, scale))
    if p.method == "direct":
        return spatial.direct(x, k.dense() if isinstance(k, Separable) else k, g, boundary,
                              scale, dtype, workers)
    if g.ndim == 2:
        rows = p.block or image_block_rows(g)
        return spectral.fft_image(x, k, g, boundary, scale, rows, workers, dtype)
    x = x if x.dtype == dtype and scale == 1.0 else np.multiply(x, dtype.type(scale),
                                                                dtype=dtype)
    if boundary == "zero":
        return (spectral.fft_valid(x, k, g, workers) if p.method == "fft"
                else spectral.oa_valid(x, k, g, p.block, workers))
    xp = spatial.extend(x, g, boundary)
    gp = geometry(xp.shape, k.shape, "valid", dtype.itemsize)
    return (spectral.fft_valid(xp, k, gp, workers) if p.method == "fft"
            else spectral.oa_valid(xp, k, gp, p.block, workers))


def _scaled(x: np.ndarray, k, g: Geometry, scale: float, dtype) -> np.ndarray:
    """A one-tap kernel (output positions = input positions in every mode): the input
    times the tap, per channel for depthwise kernels."""
    taps = np.asarray(k, dtype).reshape(-1) * dtype.type(scale)
    return np.multiply(x, taps if g.per_channel else taps[0], dtype=dtype)
