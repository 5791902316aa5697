"""Property tests (hypothesis) of the convolution engine.

Shapes, kernels, modes, boundaries, methods and dtypes are drawn by
hypothesis; the values come from a NumPy generator seeded by hypothesis, so
every failure shrinks to a small, reproducible example. Sizes stay small so
the whole file runs in a few seconds.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

import pwfilter
from pwfilter import engine

BOUNDARIES = ("reflect", "mirror", "nearest", "wrap", "zero")
NDIMAGE_MODE = {"reflect": "reflect", "mirror": "mirror", "nearest": "nearest",
                "wrap": "wrap", "zero": "constant"}
MODES = ("same", "full", "valid")

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Problem:
    """One drawn convolution problem (arrays made from a seeded generator)."""

    def __init__(self, x, k, mode, boundary, per_channel):
        self.x, self.k, self.mode, self.boundary = x, k, mode, boundary
        self.per_channel = per_channel

    @property
    def nd(self):
        return self.x.ndim - 1

    def scale(self):
        """Bound of |output|: max|x| times the largest kernel L1 norm (for tolerances)."""
        kk = np.abs(self.k.astype(np.float64))
        l1 = kk.reshape(kk.shape[0], -1).sum(axis=1).max() if self.per_channel else kk.sum()
        return max(float(np.abs(self.x).max()) * float(l1), 1e-300)

    def __repr__(self):
        return (f"Problem(x.shape={self.x.shape}, x.dtype={self.x.dtype}, k.shape={self.k.shape}, "
                f"mode={self.mode!r}, boundary={self.boundary!r})")


def make_kernel(r, shape, kind):
    if kind == "random":
        return r.standard_normal(shape)
    if kind == "rank1":  # an outer product (per channel if 3-D)
        if len(shape) == 1:
            return r.standard_normal(shape)
        lead = shape[:-2]
        return r.standard_normal(lead + shape[-2:-1] + (1,)) * r.standard_normal(
            lead + (1,) + shape[-1:])
    if kind == "sparse":
        k = r.standard_normal(shape)
        k[r.random(shape) < 0.6] = 0.0
        return k
    if kind == "positive":
        return r.random(shape) + 0.05
    raise AssertionError(kind)


@st.composite
def problems(draw, nd=None, modes=MODES, boundaries=BOUNDARIES, kinds=("random", "rank1",
             "sparse"), dtypes=(np.float64, np.float32), per_channel=None, odd=False,
             long_first_axis=False):
    nd = draw(st.sampled_from([1, 2])) if nd is None else nd
    channels = draw(st.integers(1, 3))
    if odd:
        ksize = tuple(draw(st.sampled_from([1, 3, 5, 7])) for _ in range(nd))
    else:
        ksize = tuple(draw(st.integers(1, 7 if nd == 2 else 24)) for _ in range(nd))
    mode = draw(st.sampled_from(modes))
    biggest = 40 if nd == 1 else 13
    if mode == "valid":
        shape = tuple(draw(st.integers(m, m + biggest)) for m in ksize)
    else:
        shape = tuple(draw(st.integers(1, biggest)) for _ in range(nd))
    if long_first_axis:  # long enough (> 2^14) for overlap-add with two blocks or more
        shape = (draw(st.integers(16400, 17500)),) + shape[1:]
    pc = draw(st.booleans()) if per_channel is None else per_channel
    pc = pc and channels > 1
    boundary = draw(st.sampled_from(boundaries))
    dtype = draw(st.sampled_from(dtypes))
    kind = draw(st.sampled_from(kinds))
    r = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = r.standard_normal(shape + (channels,)).astype(dtype)
    k = make_kernel(r, ((channels,) if pc else ()) + ksize, kind).astype(dtype)
    return Problem(x, k, mode, boundary, pc)


def tolerance(p: Problem) -> float:
    eps = 1e-10 if p.x.dtype == np.float64 else 1e-5
    return eps * p.scale()


def methods_for(p: Problem):
    return ("direct", "fft", "auto") + (("separable",) if p.nd == 2 else ())


# ----------------------------------------------------------------- methods agree


@SETTINGS
@given(problems())
def test_forced_methods_agree(p):
    ref = engine.convolve(p.x, p.k, mode=p.mode, boundary=p.boundary, method="direct")
    for method in methods_for(p):
        y = engine.convolve(p.x, p.k, mode=p.mode, boundary=p.boundary, method=method)
        assert y.shape == ref.shape, (method, y.shape, ref.shape)
        assert y.dtype == ref.dtype
        np.testing.assert_allclose(y, ref, rtol=0, atol=tolerance(p), err_msg=method)


@FEW
@given(problems(long_first_axis=True, dtypes=(np.float64,)))
def test_overlap_add_agrees_with_direct_on_long_inputs(p):
    ref = engine.convolve(p.x, p.k, mode=p.mode, boundary=p.boundary, method="direct")
    y = engine.convolve(p.x, p.k, mode=p.mode, boundary=p.boundary, method="oa")
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=0, atol=tolerance(p))


@SETTINGS
@given(problems(modes=("same",), odd=True))
def test_same_with_odd_kernels_equals_ndimage(p):
    y = engine.convolve(p.x, p.k, mode="same", boundary=p.boundary)
    x64, k64 = p.x.astype(np.float64), p.k.astype(np.float64)
    for c in range(p.x.shape[-1]):
        kc = k64[c] if p.per_channel else k64
        ref = ndimage.convolve(x64[..., c], kc, mode=NDIMAGE_MODE[p.boundary], cval=0.0)
        np.testing.assert_allclose(y[..., c], ref, rtol=0, atol=tolerance(p))


# ----------------------------------------------------------------- algebra


@SETTINGS
@given(problems(dtypes=(np.float64,)), st.floats(-3, 3), st.floats(-3, 3),
       st.sampled_from(["direct", "fft", "auto", "separable"]), st.integers(0, 2**32 - 1))
def test_linearity(p, a, b, method, seed):
    if method == "separable" and p.nd != 2:
        method = "auto"
    other = np.random.default_rng(seed).standard_normal(p.x.shape)

    def conv(v):
        return engine.convolve(v, p.k, mode=p.mode, boundary=p.boundary, method=method)

    lhs = conv(a * p.x + b * other)
    rhs = a * conv(p.x) + b * conv(other)
    scale = p.scale() * (abs(a) + abs(b) + 1) * max(1.0, float(np.abs(other).max()))
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-10 * scale)


@SETTINGS
@given(problems(modes=("same",), odd=True, kinds=("random",)),
       st.sampled_from(["direct", "separable"]))
def test_centred_delta_kernel_is_bit_exact_with_sliding_sums(p, method):
    """A centred unit impulse (identity) kernel of any odd size returns the input bit
    for bit with the direct and separable evaluations."""
    if method == "separable" and p.nd != 2:
        method = "direct"
    k = np.zeros(p.k.shape[-p.nd:], dtype=p.x.dtype)
    k[tuple(m // 2 for m in k.shape)] = 1
    y = engine.convolve(p.x, k, mode="same", boundary=p.boundary, method=method)
    assert y.dtype == p.x.dtype
    assert np.array_equal(y, p.x)


@SETTINGS
@given(problems(modes=("same",)), st.sampled_from(["image", "audio"]))
def test_identity_kernel_is_bit_exact_by_default(p, kind):
    """The named ``identity`` kernel through the API with every default (method auto)
    leaves any input unchanged, bit for bit."""
    x = p.x if kind == "image" or p.nd == 1 else p.x[:, 0, :]
    if kind == "image" and x.ndim == 2:
        x = x[:, None, :]
    y = pwfilter.convolve(x, "identity")
    assert y.shape == x.shape
    assert np.array_equal(y, x)


@SETTINGS
@given(problems(modes=("same",), boundaries=("wrap",)), st.integers(-20, 20),
       st.integers(-20, 20), st.sampled_from(["direct", "fft", "auto", "separable"]))
def test_shift_equivariance_under_wrap(p, s0, s1, method):
    if method == "separable" and p.nd != 2:
        method = "auto"
    shift = (s0, s1)[:p.nd]
    axes = tuple(range(p.nd))
    y = engine.convolve(p.x, p.k, mode="same", boundary="wrap", method=method)
    y_of_rolled = engine.convolve(np.roll(p.x, shift, axis=axes), p.k, mode="same",
                                  boundary="wrap", method=method)
    np.testing.assert_allclose(y_of_rolled, np.roll(y, shift, axis=axes), rtol=0,
                               atol=2 * tolerance(p))


@SETTINGS
@given(problems(modes=("same", "valid"), boundaries=("reflect", "nearest", "mirror", "wrap"),
                kinds=("random", "positive", "rank1", "sparse"), dtypes=(np.float64,)),
       st.floats(-5, 5), st.sampled_from(["direct", "fft", "auto", "separable"]))
def test_constant_image_keeps_its_value_under_sum_normalized_kernels(p, value, method):
    if method == "separable" and p.nd != 2:
        method = "auto"
    k = p.k.astype(np.float64)
    axes = tuple(range(k.ndim - p.nd, k.ndim))
    sums = k.sum(axis=axes, keepdims=True)
    l1 = np.abs(k).sum(axis=axes, keepdims=True)
    # skip kernels whose sum nearly cancels (normalising them amplifies rounding)
    k = np.where(np.abs(sums) > 0.05 * l1, k, np.abs(k) + 0.01)
    k = k / k.sum(axis=axes, keepdims=True)
    x = np.full(p.x.shape, value)
    y = engine.convolve(x, k, mode=p.mode, boundary=p.boundary, method=method)
    l1 = float(np.abs(k).sum(axis=axes).max())
    np.testing.assert_allclose(y, value, rtol=0, atol=1e-12 * max(1.0, abs(value)) * l1 * 10)


@SETTINGS
@given(problems(per_channel=True), st.sampled_from(["direct", "fft", "auto", "separable"]))
def test_per_channel_kernels_act_per_channel(p, method):
    if method == "separable" and p.nd != 2:
        method = "auto"
    y = engine.convolve(p.x, p.k, mode=p.mode, boundary=p.boundary, method=method)
    kernels = p.k if p.per_channel else np.broadcast_to(p.k, (p.x.shape[-1],) + p.k.shape)
    for c in range(p.x.shape[-1]):
        alone = engine.convolve(p.x[..., c:c + 1], np.ascontiguousarray(kernels[c]),
                                mode=p.mode, boundary=p.boundary, method=method)
        np.testing.assert_allclose(y[..., c:c + 1], alone, rtol=0, atol=tolerance(p))


@SETTINGS
@given(problems())
def test_correlate_is_convolution_with_the_flipped_kernel(p):
    flipped = np.flip(p.k, axis=tuple(range(p.k.ndim - p.nd, p.k.ndim)))
    a = engine.convolve(p.x, p.k, mode=p.mode, boundary=p.boundary, correlate=True,
                        method="direct")
    b = engine.convolve(p.x, np.ascontiguousarray(flipped), mode=p.mode, boundary=p.boundary,
                        method="direct")
    np.testing.assert_allclose(a, b, rtol=0, atol=tolerance(p))


@SETTINGS
@given(problems(modes=("full",), boundaries=("zero",)))
def test_full_output_length_and_total_mass(p):
    """``full``: N + M - 1 per axis, and the sum of the output equals
    sum(x) * sum(k) per channel (convolution multiplies the DC terms)."""
    y = engine.convolve(p.x, p.k, mode="full", boundary="zero")
    ks = p.k.shape[-p.nd:]
    assert y.shape == tuple(n + m - 1 for n, m in zip(p.x.shape[:-1], ks)) + p.x.shape[-1:]
    x64, k64 = p.x.astype(np.float64), p.k.astype(np.float64)
    axes = tuple(range(p.nd))
    ksum = (k64.reshape(k64.shape[0], -1).sum(axis=1) if p.per_channel else k64.sum())
    want = x64.sum(axis=axes) * ksum
    got = y.astype(np.float64).sum(axis=axes)
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(p) * np.prod(p.x.shape[:-1]))
