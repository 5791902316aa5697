"""The stage model: one step of a job, run on a whole array or on a stream of blocks.

A :class:`Stage` is one operation resolved for one input (its kind, channel
count, alpha and rate known):

    out = dry·x + wet·R(scale·(x ⊛ k) + bias)

with the convolution ``k`` (convolve, blur) and the remix ``R`` (remix) each
optional — dsconv has both. The same object runs a whole array in memory
(:meth:`Stage.run`) and long audio block by block (:meth:`Stage.blocks`,
a :class:`pwfilter.stream.StreamFilter`), so both paths compute one
formula, and its post-processing lives in :mod:`pwfilter.ops` once.

A :class:`Chain` is stages run one after another in float, quantised once at
the end by the writer; ``normalize`` (scaling the result to its peak) acts
on the chain's output. Pure: arrays in, arrays out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pwfilter import engine, ops
from pwfilter.errors import PwfilterError


@dataclass(frozen=True)
class Stage:
    """One operation resolved for an input of ``channels`` channels (see the module doc).

    ``kernel`` is the convolution kernel (already flipped for ``--correlate``):
    ``(M,)``/``(kh, kw)`` shared, ``(C, ...)`` one per channel, or an
    :class:`engine.Separable`; None for a remix alone, whose ``dry``/``wet``
    are folded into its matrix. ``mode``/``boundary`` are resolved.
    """

    name: str
    kind: str
    channels: int
    has_alpha: bool = False
    kernel: object = None
    mode: str = "same"
    boundary: str = "reflect"
    method: str = "auto"
    scale: float = 1.0
    bias: float = 0.0
    remix: ops.Remix | None = None
    dry: float = 0.0
    wet: float = 1.0
    workers: int | None = None
    budget: int = 0  # bytes the convolution may use (0: no limit); see engine.method_memory

    def __post_init__(self):
        if (self.dry or self.wet != 1.0) and self.c_out != self.channels:
            raise PwfilterError(f"--dry/--wet need as many output channels as input channels "
                                f"({self.c_out} vs {self.channels})")

    # ------------------------------------------------------------- shape

    @property
    def c_out(self) -> int:
        return self.channels if self.remix is None else self.remix.c_out

    @property
    def alpha_out(self) -> bool:
        """The output's last channel is alpha (filtered or passed through, never mixed)."""
        if self.remix is not None:
            return self.remix.keep_alpha
        return self.has_alpha

    @property
    def taps(self) -> int:
        """The kernel's length along the first axis (1 without a convolution)."""
        return 1 if self.kernel is None else int(self.kernel.shape[-1 if self._signal else -2])

    @property
    def _signal(self) -> bool:
        return self.kind != "image"

    def out_length(self, n: int) -> int:
        """Output length along the first axis for an input of ``n``."""
        m = self.taps
        return {"full": n + m - 1, "same": n, "valid": n - m + 1}[self.mode]

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output's shape for an input of ``shape`` (channels last)."""
        if self.kernel is None:
            return (*shape[:-1], self.c_out)
        return (*engine.geometry(shape, self.kernel.shape, self.mode).out_shape, self.c_out)

    # ------------------------------------------------------------- whole arrays

    def plan(self, x: np.ndarray) -> engine.Plan | None:
        """The method the convolution will use on ``x`` (None without one)."""
        if self.kernel is None:
            return None
        return engine.plan(x, self.kernel, mode=self.mode, method=self.method,
                           budget=self.budget)

    def run(self, x: np.ndarray, scale: float = 1.0, to_uint8: bool = False
            ) -> tuple[np.ndarray, engine.Plan | None]:
        """Apply to a whole array: normalized floats, or integer samples ``scale`` normalizes.
        Returns a new float array and the convolution's plan; with ``to_uint8`` perhaps
        8-bit samples instead (``rint(255·y)``, where that is exact and faster: a plain
        convolution, nothing after it — the caller checks the type)."""
        if to_uint8 and self.kernel is not None and self._plain():
            return self._convolve(x, scale, to_uint8=True)
        if self.kernel is None:
            return ops.remix_array(x, self.remix, scale, self.workers), None
        if self._remix_first():
            # Both steps are linear: with fewer outputs than inputs, mix first and
            # convolve fewer channels.
            mixed = ops.remix_array(x, ops.Remix(self.remix.matrix, None, False), scale,
                                    self.workers)
            y, plan = self._convolve(mixed, 1.0)
            if self.remix.bias is not None:
                y += self.remix.bias.astype(y.dtype)
        else:
            y, plan = self._convolve(x, scale)
            if self.remix is not None:
                y = ops.remix_array(y, self.remix, workers=self.workers)
        if self.dry or self.wet != 1.0:
            color = y[..., :-1] if self.alpha_out else y
            source = ops.normalized(x[..., :-1] if self.alpha_out else x, scale, y.dtype)
            nd = x.ndim - 1
            ops.blend(color, ops.aligned_input(source, self.kernel.shape[-nd:], self.mode,
                                               color.shape), self.dry, self.wet)
        return y, plan

    def _plain(self) -> bool:
        """Only the convolution: no scale, bias, remix, dry/wet or premultiplied alpha."""
        return (self.scale == 1.0 and not self.bias and self.remix is None and not self.dry
                and self.wet == 1.0 and not self.has_alpha)

    def _remix_first(self) -> bool:
        shared = self.kernel.ndim == (1 if self._signal else 2)
        return (self.remix is not None and shared and not self.has_alpha and not self.bias
                and self.remix.matrix.shape[0] < self.remix.matrix.shape[1])

    def _convolve(self, x: np.ndarray, scale: float, to_uint8: bool = False
                  ) -> tuple[np.ndarray, engine.Plan]:
        """scale·(x ⊛ k) + bias, images with alpha and a shared kernel premultiplied
        (``to_uint8``: a plain stage's result perhaps as 8-bit samples, see :meth:`run`)."""
        x, k = engine.prepare(x, self.kernel)
        premultiply = self.has_alpha and not self._signal and k.ndim == 2
        src, src_scale = (ops.premultiplied(x, scale), 1.0) if premultiply else (x, scale)
        plan = engine.plan(src, k, mode=self.mode, method=self.method, budget=self.budget)
        y = engine.convolve(src, k, mode=self.mode, boundary=self.boundary, chosen=plan,
                            workers=self.workers, scale=src_scale, to_uint8=to_uint8)
        del src
        if y.dtype == np.uint8:
            return y, plan
        if premultiply:
            ops.unpremultiply(y)
        ops.affine(y[..., :-1] if self.has_alpha else y, self.scale, self.bias)
        return y, plan

    # ------------------------------------------------------------- streams

    def blocks(self, frames: int, dtype):
        """The stage as a block filter for a signal of ``frames`` (zero boundary only),
        or None where only the whole-array path applies."""
        from pwfilter.stream import StreamFilter

        if not self._signal:
            return None
        k = self.kernel
        if k is not None and (self.boundary != "zero"
                              or (self.mode == "valid" and frames < k.shape[-1])):
            return None
        return StreamFilter(self.channels, frames, None if k is None else np.asarray(k),
                            mode=self.mode, scale=self.scale, bias=self.bias, dry=self.dry,
                            wet=self.wet,
                            matrix=None if self.remix is None else self.remix.matrix,
                            matrix_bias=None if self.remix is None else self.remix.bias,
                            dtype=dtype, workers=self.workers)


@dataclass(frozen=True)
class Chain:
    """Stages run one after another in float; ``normalize`` scales the output to its peak."""

    stages: tuple[Stage, ...]
    normalize: bool = False

    @property
    def c_out(self) -> int:
        return self.stages[-1].c_out

    @property
    def alpha_out(self) -> bool:
        return self.stages[-1].alpha_out

    @property
    def taps(self) -> int:
        """Taps of the whole chain along the first axis (its kernels' lengths combined)."""
        return sum(s.taps - 1 for s in self.stages) + 1

    def run(self, x: np.ndarray, scale: float = 1.0, on_stage=None, to_uint8: bool = False
            ) -> tuple[np.ndarray, list[engine.Plan | None]]:
        """Apply to a whole array; return the result and each stage's plan. ``on_stage(i)``
        is called before stage ``i`` (errors can then say which stage failed).
        ``to_uint8``: the result may come as 8-bit samples (see :meth:`Stage.run`)."""
        plans = []
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if on_stage:
                on_stage(i)
            x, plan = stage.run(x, scale, to_uint8=to_uint8 and i == last and not self.normalize)
            scale = 1.0
            plans.append(plan)
        if self.normalize:
            ops.normalize_peak(x, self.alpha_out)
        return x, plans

    def blocks(self, frames: int, dtype):
        """The chain as one block filter (every stage streamed), or None."""
        filters = []
        for stage in self.stages:
            f = stage.blocks(frames, dtype)
            if f is None:
                return None
            filters.append(f)
            frames = f.count
        return filters[0] if len(filters) == 1 else StreamChain(filters)


@dataclass
class StreamChain:
    """Block filters fed one into the next: the streamed form of a chain of stages."""

    filters: list = field(default_factory=list)

    @property
    def channels(self) -> int:
        return self.filters[0].channels

    @property
    def c_out(self) -> int:
        return self.filters[-1].c_out

    @property
    def dtype(self):
        return self.filters[0].dtype

    @property
    def m(self) -> int:
        return sum(f.m - 1 for f in self.filters) + 1

    @property
    def emitted(self) -> int:
        return self.filters[-1].emitted

    @property
    def conv(self):
        return next((f.conv for f in self.filters if f.conv is not None), None)

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        blocks = [block]
        for f in self.filters:
            blocks = [y for b in blocks for y in f.push(b)]
        return blocks

    def flush(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for f in self.filters:
            out = [y for b in out for y in f.push(b)] + f.flush()
        return out


def stage_index_error(exc: PwfilterError, index: int, stage_name: str) -> PwfilterError:
    """The error ``exc`` said of stage ``index`` (counted from 1) of a chain."""
    return PwfilterError(f"stage {index + 1} ({stage_name}): {exc}")


def chain_memory(chain: Chain, shape: tuple[int, ...], itemsize: int) -> int:
    """Floats held at once by an in-memory chain: its largest stage's input and output."""
    most, cur = 0, shape
    for stage in chain.stages:
        nxt = stage.out_shape(cur)
        most = max(most, math.prod(cur) + math.prod(nxt))
        cur = nxt
    return most * itemsize
