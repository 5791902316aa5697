"""Array operations the stages are made of, beside the engine's convolution.

Pure: arrays in, arrays out. Premultiplied alpha, the input aligned with an
output for dry/wet mixing, the post-processing every path applies (scale and
bias, dry/wet, peak normalisation), blur kernels, and the 1x1 (pointwise)
remix with groups and shuffle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pwfilter import engine, parallel
from pwfilter.errors import PwfilterError
from pwfilter.specs import MatrixSpec


def normalized(x: np.ndarray, scale: float, dtype) -> np.ndarray:
    """``x * scale`` as a new ``dtype`` array (normalized samples)."""
    out = np.empty(x.shape, dtype)
    np.multiply(x, out.dtype.type(scale), out=out, casting="unsafe")
    return out


def premultiplied(x: np.ndarray, scale: float) -> np.ndarray:
    """Normalized colour times alpha, and alpha (the last channel), as one new array."""
    out = normalized(x, scale, engine.float_type(x))
    out[..., :-1] *= out[..., -1:]
    return out


def unpremultiply(y: np.ndarray) -> None:
    """Colour divided by the (filtered) alpha, in place; 0 where alpha is ~0."""
    alpha = y[..., -1:]
    color = y[..., :-1]
    opaque = np.abs(alpha) > 1e-7
    np.divide(color, alpha, out=color, where=opaque)
    np.multiply(color, opaque, out=color)


def aligned_input(x: np.ndarray, ksize, mode: str, out_shape) -> np.ndarray:
    """The input placed on the output's positions, for dry/wet mixing.

    ``same``: the input itself; ``full``: the input zero-padded at the end
    (an impulse response starting at t = 0 keeps dry and wet in time);
    ``valid``: the input under the kernel's centre.
    """
    if mode == "same":
        return x
    if mode == "full":
        out = np.zeros(out_shape, dtype=x.dtype)
        out[tuple(slice(0, n) for n in x.shape)] = x
        return out
    sl = tuple(slice(m // 2, m // 2 + n) for m, n in zip(ksize, out_shape[:-1]))
    return x[sl]


# ----------------------------------------------------------------- post-processing
# Every path (whole arrays and streamed blocks, every command) applies these.


def affine(y: np.ndarray, scale: float, bias: float) -> None:
    """``y = scale·y + bias``, in place."""
    if scale != 1.0:
        y *= y.dtype.type(scale)
    if bias:
        y += y.dtype.type(bias)


def blend(y: np.ndarray, dry_x: np.ndarray | None, dry: float, wet: float) -> None:
    """``y = wet·y + dry·dry_x`` (the input on the output's positions), in place."""
    if wet != 1.0:
        y *= y.dtype.type(wet)
    if dry and dry_x is not None:
        y += y.dtype.type(dry) * dry_x


def normalize_peak(y: np.ndarray, keep_alpha: bool = False) -> np.ndarray:
    """Scale ``y`` (its colour, without the alpha channel) by 1/max|y|, in place."""
    color = y[..., :-1] if keep_alpha else y
    peak = float(np.max(np.abs(color))) if color.size else 0.0
    if peak > 0:
        color *= color.dtype.type(1.0 / peak)
    return y


def blur_kernel(kind: str, ndim: int, sigma: float = 2.0, radius: int = 1
                ) -> np.ndarray | engine.Separable:
    """``gaussian`` (sigma) or ``box`` (2·radius + 1 taps) for ``ndim`` axes.

    In 2-D the kernel is an :class:`engine.Separable`: its 1-D factors, never
    the dense square.
    """
    from pwfilter.specs import box_1d, gaussian_1d

    if kind == "gaussian":
        v = gaussian_1d(sigma)
    elif kind == "box":
        if radius < 0:
            raise PwfilterError(f"box radius must be 0 or more, got {radius}")
        v = box_1d(2 * radius + 1)
    else:
        raise PwfilterError(f"unknown blur kind {kind!r} (gaussian or box)")
    return v if ndim == 1 else engine.Separable(v, v)


# ----------------------------------------------------------------- remix


def shuffle_order(channels: int, groups: int) -> np.ndarray:
    """ShuffleNet's channel shuffle: view as (G, C/G), transpose, flatten."""
    if groups < 1 or channels % groups:
        raise PwfilterError(f"--shuffle {groups}: {channels} channels do not split into "
                            f"{groups} equal groups")
    return np.arange(channels).reshape(groups, channels // groups).T.ravel()


def group_blocks(matrix: np.ndarray, groups: int = 1) -> np.ndarray:
    """A remix matrix as per-group blocks ``(G, C_out/G, C_in/G)``.

    A 2-D matrix with ``groups`` G is a grouped convolution's weight ``(C_out,
    C_in/G)``, as ``torch.nn.Conv2d(groups=G)`` with a 1x1 kernel: output rows
    g·C_out/G ... (g+1)·C_out/G − 1 read input group g. A 3-D matrix gives the
    blocks themselves (G, C_out/G, C_in/G); one block ``(1, ...)`` is shared by
    every group.
    """
    if groups < 1:
        raise PwfilterError(f"--groups must be at least 1, got {groups}")
    if matrix.ndim == 3:
        if matrix.shape[0] == 1:
            return np.broadcast_to(matrix, (groups, *matrix.shape[1:]))
        if groups not in (1, matrix.shape[0]):
            raise PwfilterError(f"{matrix.shape[0]} matrix blocks for {groups} groups")
        return matrix
    if matrix.shape[0] % groups:
        raise PwfilterError(f"--groups {groups}: the matrix's {matrix.shape[0]} rows (output "
                            f"channels) do not split into {groups} groups")
    return matrix.reshape(groups, matrix.shape[0] // groups, matrix.shape[1])


def effective_matrix(spec: MatrixSpec, c_in: int, groups: int = 1) -> np.ndarray:
    """The full (C_out, C_in) matrix: grouped forms (see :func:`group_blocks`) expanded to
    block-diagonal."""
    blocks = group_blocks(spec.matrix, groups)
    groups, rows, cols = blocks.shape
    if groups == 1:
        if cols != c_in:
            raise PwfilterError(f"matrix of shape {spec.matrix.shape} has {cols} columns but the "
                                f"input has {c_in} channels")
        return blocks[0]
    if c_in % groups:
        raise PwfilterError(f"--groups {groups}: {c_in} input channels do not split into "
                            f"{groups} equal groups")
    if cols != c_in // groups:
        raise PwfilterError(f"matrix blocks of shape {blocks.shape[1:]} have {cols} "
                            f"columns but each of the {groups} groups has {c_in // groups} "
                            f"of the input's {c_in} channels")
    full = np.zeros((groups * rows, groups * cols))
    for g in range(groups):
        full[g * rows:(g + 1) * rows, g * cols:(g + 1) * cols] = blocks[g]
    return full


@dataclass(frozen=True)
class Remix:
    """A resolved pointwise remix: ``y = matrix · x + bias`` over channels (C_out, C_in)."""

    matrix: np.ndarray
    bias: np.ndarray | None
    keep_alpha: bool  # the input's last channel (alpha) passes through

    @property
    def c_out(self) -> int:
        return self.matrix.shape[0] + (1 if self.keep_alpha else 0)


def resolve_remix(spec: MatrixSpec, *, channels: int, kind: str, has_alpha: bool,
                  groups: int = 1, shuffle: int = 0, bias: np.ndarray | str | None = None,
                  dry: float = 0.0, wet: float = 1.0) -> Remix:
    """Fold groups, shuffle, bias and dry/wet into one (C_out, C_in) matrix and bias.

    Alpha passes through when the matrix has one column fewer than the
    image's channels; a matrix with a column for alpha mixes it like any channel.
    ``bias`` — text (``--bias``), a number or one number per output — gives one
    value for every output channel or one each, the outputs counted once the
    groups are expanded.
    """
    from pwfilter.specs import parse_bias

    c_in = channels
    keep_alpha = False
    if groups > channels:
        raise PwfilterError(f"--groups {groups}: more groups than the input's {channels} "
                            "channel(s)")
    blocks = group_blocks(spec.matrix, groups)
    cols = blocks.shape[0] * blocks.shape[2]
    if kind == "image" and has_alpha and cols == channels - 1:
        c_in, keep_alpha = channels - 1, True
    elif cols != channels:
        raise PwfilterError(f"matrix of shape {spec.matrix.shape} takes {cols} input channels "
                            f"but the input has {channels}"
                            + (f" ({channels - 1} without alpha)" if has_alpha else ""))
    m = effective_matrix(spec, c_in, groups)
    if isinstance(bias, str):
        b = parse_bias(bias, m.shape[0])
    elif bias is not None:
        b = np.asarray(bias, dtype=np.float64).reshape(-1)
        b = np.full(m.shape[0], b[0]) if b.size == 1 else b
    else:
        b = spec.bias
    if b is not None and b.shape[0] != m.shape[0]:
        raise PwfilterError(f"bias: {b.shape[0]} values for {m.shape[0]} output channels")
    if dry or wet != 1.0:
        if m.shape[0] != c_in:
            raise PwfilterError(f"--dry/--wet need as many output channels as input channels "
                                f"({m.shape[0]} vs {c_in})")
        m = wet * m + dry * np.eye(c_in)
        b = None if b is None else wet * b
    if shuffle:
        order = shuffle_order(m.shape[0], shuffle)
        m = m[order]
        b = None if b is None else b[order]
    return Remix(m, b, keep_alpha)


#: Pixels (or samples) per remix strip: a strip's float copy and result stay in cache.
_REMIX_STRIP = 1 << 15


def remix_array(x: np.ndarray, r: Remix, scale: float = 1.0,
                workers: int | None = None) -> np.ndarray:
    """Apply a :class:`Remix` in one pass: ``y[..., o] = Σ_i M[o, i] x[..., i] + b[o]``.

    ``x`` holds normalized floats or integer samples that ``scale`` normalizes.
    Works in strips of pixels, in threads, so integer images are converted
    piece by piece (no float copy of the whole input).
    """
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    c_in = x.shape[-1]
    flat = x.reshape(-1, c_in)
    out = np.empty(x.shape[:-1] + (r.c_out,), dtype)
    flat_out = out.reshape(-1, r.c_out)
    rows = r.matrix.shape[0]
    select = np.argmax(r.matrix, axis=1) if _is_selection(r.matrix) else None
    weights = (r.matrix.T * scale).astype(dtype)
    bias = None if r.bias is None else r.bias.astype(dtype)

    def one(a: int) -> None:
        part = flat[a:a + _REMIX_STRIP]
        dst = flat_out[a:a + _REMIX_STRIP]
        if select is not None:
            # Permutations and channel copies move data, they need no arithmetic.
            np.multiply(part[:, select], dtype(scale), out=dst[:, :rows], casting="unsafe")
        else:
            src = part[:, :c_in - 1] if r.keep_alpha else part
            dst[:, :rows] = np.matmul(src.astype(dtype, copy=False), weights)
        if bias is not None:
            dst[:, :rows] += bias
        if r.keep_alpha:
            np.multiply(part[:, -1], dtype(scale), out=dst[:, -1], casting="unsafe")

    parallel.run(one, range(0, flat.shape[0], _REMIX_STRIP), workers or engine.default_workers())
    return out


def _is_selection(m: np.ndarray) -> bool:
    return bool(np.all((m == 0) | (m == 1)) and np.all(m.sum(axis=1) == 1))
