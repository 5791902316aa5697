"""What to do with any input: steps as a user names them, resolved into stages per input.

A step holds a command's options — a kernel named by text, a matrix preset,
``--groups``... — independent of any file. :meth:`Step.resolve` turns it into
a :class:`pwfilter.stages.Stage` for one input once its kind, channels, alpha
and rate are known: the kernel parsed (an impulse response decoded, at most
once per job and rate), checked against the memory limit and normalised, the
matrix expanded, the medium's default mode and boundary chosen. A
:class:`Job` is the steps of one command (``chain``: several); the runner
resolves it for each input and runs the resulting chain, in memory or
streamed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pwfilter import ops, specs
from pwfilter.errors import PwfilterError
from pwfilter.stages import Chain, Stage


@dataclass(frozen=True)
class FilterOptions:
    """The ``[filter]`` options. ``mode``/``boundary`` None means the medium's default."""

    mode: str | None = None
    boundary: str | None = None
    method: str = "auto"
    scale: float = 1.0
    bias: float = 0.0
    dry: float = 0.0
    wet: float = 1.0
    normalize: bool = False
    correlate: bool = False
    workers: int | None = None

    def resolved(self, kind: str, default_mode: str | None = None) -> tuple[str, str]:
        """Mode and boundary: images same/reflect; audio full/zero; full always zero."""
        mode = self.mode or default_mode or ("same" if kind == "image" else "full")
        if self.boundary:
            boundary = self.boundary
        else:
            boundary = "reflect" if kind == "image" and mode != "full" else "zero"
        return mode, boundary


@dataclass
class Context:
    """What resolving needs beyond the input: the memory limit, a way to decode an impulse
    response, and the kernels already loaded (an impulse response is decoded once)."""

    limits: object = None
    load_audio: Callable | None = None
    kernels: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Input:
    """The facts about an input a step needs (a :class:`pwfilter.media.Media` has them)."""

    kind: str
    channels: int
    has_alpha: bool = False
    rate: int = 0
    shape: tuple[int, ...] = ()
    itemsize: int = 4
    name: str = ""

    @classmethod
    def of(cls, media, frames: int | None = None) -> Input:
        """The facts of ``media``; ``frames`` for audio known by its header only."""
        from pwfilter.engine import float_type

        shape = tuple(media.shape) if frames is None else (frames, media.channels)
        return cls(media.kind, media.channels, media.has_alpha, media.rate, shape,
                   np.dtype(float_type(media.samples)).itemsize, media.name)

    def after(self, stage: Stage) -> Input:
        """The input of the next stage: ``stage``'s output."""
        shape = stage.out_shape(self.shape) if self.shape else ()
        return Input(self.kind, stage.c_out, stage.alpha_out, self.rate, shape, self.itemsize,
                     self.name)


# ----------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    """A command's options for one operation; :meth:`resolve` makes its stage."""

    name: str = ""
    normalize: bool = False

    def resolve(self, src: Input, ctx: Context) -> Stage:
        raise NotImplementedError

    def files(self) -> tuple[str, ...]:
        """The files this step reads besides the input (kernels, matrices, impulse
        responses): no output may replace them."""
        return ()


def _filter_stage(name: str, src: Input, kernel, opts: FilterOptions,
                  default_mode: str | None, ctx: Context,
                  remix: ops.Remix | None = None) -> Stage:
    mode, boundary = opts.resolved(src.kind, default_mode)
    if opts.correlate and kernel is not None:
        kernel = _flipped(kernel, 1 if src.kind != "image" else 2)
    budget = ctx.limits.memory if ctx.limits is not None else 0
    if budget and src.shape:
        _check_memory(src, kernel, mode, opts.method, budget)
    return Stage(name, src.kind, src.channels, src.has_alpha, kernel, mode, boundary,
                 opts.method, opts.scale, opts.bias, remix, opts.dry, opts.wet, opts.workers,
                 budget)


def _check_memory(src: Input, kernel, mode: str, method: str, budget: int) -> None:
    """Refuse, before any work, a convolution no allowed method can do within ``budget``.

    An image's shape is known here: a forced method must fit, or for ``auto`` the
    least demanding of sliding sums and the FFT (separable passes need what sliding sums
    do; the plan chooses among those that fit when it runs). Audio may stream, in
    blocks a few times the kernel's length: here only that least need is
    checked; in memory, its plan meets the budget before it runs.
    """
    from pwfilter import engine, spectral
    from pwfilter.limits import format_bytes

    if src.kind == "image":
        g = engine.geometry(src.shape, kernel.shape, mode, src.itemsize)
        forced = method != "auto"
        if not forced and engine.method_memory(g, "direct") <= budget:
            return  # the cheapest check first: sliding sums fit, so some method does
        engine.fitting(g, (method,) if forced else ("direct", "fft"), budget, forced=forced)
        return
    m = int(kernel.shape[-1])
    nfft = spectral.oa_block(m, max(src.shape[0], 1))
    need = 4 * nfft * src.channels * src.itemsize + 2 * spectral.BATCH_SAMPLES * src.itemsize
    if need > budget:
        raise PwfilterError(f"a kernel of {m:,} taps needs about {format_bytes(need)} of "
                            f"working memory even streamed, more than the limit of "
                            f"{format_bytes(budget)} (raise it with --max-memory)")


def _flipped(kernel, nd: int):
    from pwfilter.engine import Separable

    if isinstance(kernel, Separable):
        return kernel.flipped()
    return np.ascontiguousarray(np.flip(kernel, axis=tuple(range(kernel.ndim - nd, kernel.ndim))))


def _kernel(spec: str, src: Input, ctx: Context, normalize: str | None, resample_ir: bool):
    """A kernel for ``src``: parsed (cached per job: an impulse response is decoded once),
    normalised. Its memory is checked with the stage (:func:`_check_memory`)."""
    key = (spec, src.kind, src.channels, src.rate, resample_ir) if isinstance(spec, str) else None
    ks = ctx.kernels.get(key) if key else None
    if ks is None:
        ks = specs.load_kernel(spec, kind=src.kind, channels=src.channels, rate=src.rate,
                               resample_ir=resample_ir, load_audio=ctx.load_audio)
        if key:
            ctx.kernels[key] = ks
    k = ks.array
    if normalize:
        k = specs.normalize_kernel(k, normalize,
                                   per_channel=k.ndim > (2 if src.kind == "image" else 1))
    return k, ks.default_mode


@dataclass(frozen=True)
class BlurStep(Step):
    """``blur``: a Gaussian (``sigma``) or box (``radius``) kernel, separable."""

    name: str = "blur"
    kind: str = "gaussian"
    sigma: float = 2.0
    radius: int = 1
    opts: FilterOptions = FilterOptions()

    def resolve(self, src: Input, ctx: Context) -> Stage:
        k = ops.blur_kernel(self.kind, 1 if src.kind != "image" else 2, sigma=self.sigma,
                            radius=self.radius)
        return _filter_stage(self.name, src, k, self.opts, "same", ctx)


@dataclass(frozen=True)
class ConvolveStep(Step):
    """``convolve KERNEL``."""

    name: str = "convolve"
    kernel: object = "identity"
    normalize_kernel: str | None = None
    resample_ir: bool = False
    opts: FilterOptions = FilterOptions()

    def resolve(self, src: Input, ctx: Context) -> Stage:
        k, default_mode = _kernel(self.kernel, src, ctx, self.normalize_kernel,
                                  self.resample_ir)
        return _filter_stage(self.name, src, k, self.opts, default_mode, ctx)

    def files(self) -> tuple[str, ...]:
        return specs.files_read(self.kernel)


@dataclass(frozen=True)
class RemixStep(Step):
    """``remix --matrix SPEC``: dry/wet, groups, shuffle and bias folded into the matrix."""

    name: str = "remix"
    matrix: object = ""
    bias: object = None
    groups: int = 1
    shuffle: int = 0
    dry: float = 0.0
    wet: float = 1.0
    workers: int | None = None

    def resolve(self, src: Input, ctx: Context) -> Stage:
        r = _remix(self.matrix, src, self.groups, self.shuffle, self.bias, self.dry, self.wet)
        return Stage(self.name, src.kind, src.channels, src.has_alpha, remix=r,
                     workers=self.workers)

    def files(self) -> tuple[str, ...]:
        return specs.files_read(self.matrix)


def _remix(matrix, src: Input, groups: int, shuffle: int, bias, dry, wet) -> ops.Remix:
    spec = specs.load_matrix(matrix, kind=src.kind, channels=src.channels)
    return ops.resolve_remix(spec, channels=src.channels, kind=src.kind,
                             has_alpha=src.has_alpha, groups=groups, shuffle=shuffle, bias=bias,
                             dry=dry, wet=wet)


@dataclass(frozen=True)
class DSConvStep(Step):
    """``dsconv --depthwise KERNEL --pointwise SPEC``: scale and bias on the depthwise
    result, dry/wet after the pointwise step (a residual connection)."""

    name: str = "dsconv"
    depthwise: object = "identity"
    pointwise: object = ""
    groups: int = 1
    shuffle: int = 0
    normalize_kernel: str | None = None
    resample_ir: bool = False
    opts: FilterOptions = FilterOptions()

    def resolve(self, src: Input, ctx: Context) -> Stage:
        k, default_mode = _kernel(self.depthwise, src, ctx, self.normalize_kernel,
                                  self.resample_ir)
        r = _remix(self.pointwise, src, self.groups, self.shuffle, None, 0.0, 1.0)
        return _filter_stage(self.name, src, k, self.opts, default_mode, ctx, r)

    def files(self) -> tuple[str, ...]:
        return specs.files_read(self.depthwise) + specs.files_read(self.pointwise)


def with_workers(step: Step, workers: int | None) -> Step:
    """``step`` computing with ``workers`` threads (``--jobs``)."""
    from dataclasses import replace

    if workers is None:
        return step
    if hasattr(step, "opts"):
        return replace(step, opts=replace(step.opts, workers=workers))
    return replace(step, workers=workers)


@dataclass(frozen=True)
class Job:
    """The steps of one command, applied to every input; ``normalize`` (the last step's)
    scales the result to its peak."""

    steps: tuple[Step, ...]
    name: str = ""

    def __post_init__(self):
        for i, step in enumerate(self.steps[:-1]):
            if step.normalize:
                raise PwfilterError(f"stage {i + 1} ({step.name}): --normalize belongs to the "
                                    "last stage (it scales the result to its peak)")

    def files(self) -> tuple[str, ...]:
        """Every file the steps read besides the inputs."""
        return tuple(f for step in self.steps for f in step.files())

    @property
    def chained(self) -> bool:
        return len(self.steps) > 1 or self.name == "chain"

    def resolve(self, src: Input, ctx: Context) -> Chain:
        """The chain of stages for one input; an error names its stage in a chain."""
        stages = []
        for i, step in enumerate(self.steps):
            try:
                stage = step.resolve(src, ctx)
            except PwfilterError as exc:
                raise self.stage_error(exc, i) from None
            stages.append(stage)
            src = src.after(stage)
        return Chain(tuple(stages), self.steps[-1].normalize)

    def stage_error(self, exc: PwfilterError, i: int) -> PwfilterError:
        if not self.chained:
            return exc
        return PwfilterError(f"stage {i + 1} ({self.steps[i].name}): {exc}")
