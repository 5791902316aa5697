"""The convolution engine against independent references.

Every expected value comes from SciPy (``scipy.ndimage``, ``scipy.signal``),
NumPy or hand arithmetic, never from pwfilter itself. Inputs are made here.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy import ndimage, signal

from pwfilter import engine
from pwfilter.errors import PwfilterError

# pwfilter boundary -> scipy.ndimage mode (SPEC "Convolution semantics")
NDIMAGE_MODE = {"reflect": "reflect", "mirror": "mirror", "nearest": "nearest",
                "wrap": "wrap", "zero": "constant"}
BOUNDARIES = tuple(NDIMAGE_MODE)
IMAGE_METHODS = ("direct", "fft", "separable", "auto")
AUDIO_METHODS = ("direct", "fft", "auto")


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def ndimage_per_channel(x, k, boundary, *, correlate=False):
    """``scipy.ndimage.convolve``/``correlate`` on each channel, in float64."""
    f = ndimage.correlate if correlate else ndimage.convolve
    x = np.asarray(x, np.float64)
    k = np.asarray(k, np.float64)
    out = np.empty(x.shape, np.float64)
    for c in range(x.shape[-1]):
        kc = k[c] if k.ndim == x.ndim else k
        out[..., c] = f(x[..., c], kc, mode=NDIMAGE_MODE[boundary], cval=0.0)
    return out


def signal_per_channel(x, k, mode, *, correlate=False):
    """``scipy.signal.convolve``/``correlate`` (direct sums) on each channel, in float64."""
    f = signal.correlate if correlate else signal.convolve
    x = np.asarray(x, np.float64)
    k = np.asarray(k, np.float64)
    cols = []
    for c in range(x.shape[-1]):
        kc = k[c] if k.ndim == x.ndim else k
        cols.append(f(x[..., c], kc, mode=mode, method="direct"))
    return np.stack(cols, axis=-1)


def assert_close(y, ref, dtype):
    """float64: within 1e-10 absolute; float32: within 1e-5 of the result's scale."""
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert np.all(np.isfinite(y))
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)
    else:
        scale = max(float(np.abs(ref).max()), 1e-30)
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * scale)


# Shared 2-D kernels (odd sizes, asymmetric so a flip or a shift shows) and one
# per-channel (C, kh, kw) kernel set.
IMAGE_KERNELS = {
    "3x3": lambda r: r.standard_normal((3, 3)),
    "5x7": lambda r: r.standard_normal((5, 7)),
    "1x5": lambda r: r.standard_normal((1, 5)),
    "rank1-9x7": lambda r: np.outer(r.standard_normal(9), r.standard_normal(7)),
    "per-channel-3x5x5": lambda r: r.standard_normal((3, 5, 5)),
    "per-channel-3x3x1": lambda r: r.standard_normal((3, 3, 1)),
}


# ----------------------------------------------------------------- same vs scipy.ndimage


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", IMAGE_METHODS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kname", sorted(IMAGE_KERNELS))
def test_same_equals_ndimage_convolve(kname, boundary, method, dtype):
    r = rng(zlib.crc32(f"{kname}/{boundary}".encode()))
    x = r.standard_normal((23, 19, 3)).astype(dtype)
    k = IMAGE_KERNELS[kname](r).astype(dtype)
    y = engine.convolve(x, k, mode="same", boundary=boundary, method=method)
    assert y.dtype == dtype
    assert_close(y, ndimage_per_channel(x, k, boundary), dtype)


@pytest.mark.parametrize("method", IMAGE_METHODS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_same_kernel_larger_than_image(boundary, method):
    """A 9x7 kernel on a 4x3 image: the extension runs past the image on every side."""
    r = rng(3)
    x = r.standard_normal((4, 3, 2))
    k = r.standard_normal((9, 7))
    y = engine.convolve(x, k, mode="same", boundary=boundary, method=method)
    assert_close(y, ndimage_per_channel(x, k, boundary), np.float64)


@pytest.mark.parametrize("method", IMAGE_METHODS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_one_pixel_image(boundary, method):
    x = np.array([[[0.25, -2.0]]])
    k = rng(4).standard_normal((3, 5))
    y = engine.convolve(x, k, mode="same", boundary=boundary, method=method)
    assert_close(y, ndimage_per_channel(x, k, boundary), np.float64)


@pytest.mark.parametrize("kname", ["3x3", "rank1-9x7", "per-channel-3x5x5"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_same_overlap_add_on_a_tall_image(boundary, kname):
    """Forced overlap-add where the input is long enough for several blocks (> 2^14 rows)."""
    r = rng(5)
    x = r.standard_normal((17000, 4, 3))
    k = IMAGE_KERNELS[kname](r)
    y = engine.convolve(x, k, mode="same", boundary=boundary, method="oa")
    assert_close(y, ndimage_per_channel(x, k, boundary), np.float64)


@pytest.mark.parametrize("boundary", ["reflect", "zero"])
def test_forced_overlap_add_on_a_small_image(boundary):
    """``method="oa"`` is a documented choice of ``convolve``; forcing it must work
    (or at least give the same result) on any input, not only on long ones."""
    r = rng(6)
    x = r.standard_normal((40, 30, 3))
    k = r.standard_normal((5, 5))
    y = engine.convolve(x, k, mode="same", boundary=boundary, method="oa")
    assert_close(y, ndimage_per_channel(x, k, boundary), np.float64)


def test_forced_overlap_add_on_short_audio():
    r = rng(7)
    x = r.standard_normal((1000, 2))
    k = r.standard_normal(31)
    y = engine.convolve(x, k, mode="full", boundary="zero", method="oa")
    assert_close(y, signal_per_channel(x, k, "full"), np.float64)


# ----------------------------------------------------------------- audio vs scipy.signal


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", AUDIO_METHODS)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 7, 8, 33, 64])
def test_audio_equals_signal_convolve(m, mode, method, dtype):
    r = rng(100 + m)
    x = r.standard_normal((301, 2)).astype(dtype)
    k = r.standard_normal(m).astype(dtype)
    y = engine.convolve(x, k, mode=mode, boundary="zero", method=method)
    assert y.dtype == dtype
    assert_close(y, signal_per_channel(x, k, mode), dtype)


@pytest.mark.parametrize("method", ["direct", "fft", "oa", "auto"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("m", [4, 33, 257])
def test_long_audio_equals_signal_convolve(m, mode, method):
    """Long enough (> 2^14 samples) for overlap-add to use several blocks."""
    r = rng(200 + m)
    x = r.standard_normal((40000, 2))
    k = r.standard_normal(m)
    y = engine.convolve(x, k, mode=mode, boundary="zero", method=method)
    ref = np.stack([signal.oaconvolve(x[:, c], k, mode=mode) for c in range(2)], axis=-1)
    assert_close(y, ref, np.float64)


@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("m", [5, 6])
def test_audio_per_channel_kernels(m, mode, method):
    r = rng(300 + m)
    x = r.standard_normal((250, 3))
    k = r.standard_normal((3, m))
    y = engine.convolve(x, k, mode=mode, boundary="zero", method=method)
    assert_close(y, signal_per_channel(x, k, mode), np.float64)


def test_audio_same_centre_even_kernel_by_hand():
    """Even M in ``same``: the centre of scipy.signal.convolve(mode="same"), i.e. the
    output starts at index (M - 1) // 2 of the full convolution. Hand values:
    x = [1, 2, 3], k = [1, 10] -> full [1, 12, 23, 30], same [1, 12, 23];
    x = [1, 2, 3, 4], k = [1, 10, 100, 1000] -> full [1, 12, 123, 1234, 2340, 3400, 4000],
    same [12, 123, 1234, 2340]."""
    cases = [
        ([1.0, 2.0, 3.0], [1.0, 10.0], [1.0, 12.0, 23.0, 30.0], [1.0, 12.0, 23.0], [12.0, 23.0]),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 10.0, 100.0, 1000.0],
         [1.0, 12.0, 123.0, 1234.0, 2340.0, 3400.0, 4000.0], [12.0, 123.0, 1234.0, 2340.0],
         [1234.0]),
    ]
    for xs, ks, full, same, valid in cases:
        x = np.array(xs)[:, None]
        k = np.array(ks)
        for method in AUDIO_METHODS:
            for mode, want in (("full", full), ("same", same), ("valid", valid)):
                y = engine.convolve(x, k, mode=mode, boundary="zero", method=method)
                np.testing.assert_allclose(y[:, 0], want, rtol=0, atol=1e-9,
                                           err_msg=f"{mode} {method}")


@pytest.mark.parametrize("boundary", ["reflect", "mirror", "nearest", "wrap"])
@pytest.mark.parametrize("m", [4, 5])
def test_audio_same_with_boundary_extension(m, boundary):
    """``same`` with a boundary: the input extended by M//2 before and (M-1)//2 after
    (NumPy's pad modes symmetric/reflect/edge/wrap), then a valid convolution."""
    numpy_mode = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge",
                  "wrap": "wrap"}[boundary]
    r = rng(400 + m)
    x = r.standard_normal((50, 2))
    k = r.standard_normal(m)
    xp = np.pad(x, ((m // 2, (m - 1) // 2), (0, 0)), mode=numpy_mode)
    ref = signal_per_channel(xp, k, "valid")
    for method in AUDIO_METHODS:
        y = engine.convolve(x, k, mode="same", boundary=boundary, method=method)
        assert_close(y, ref, np.float64)
    if m % 2:  # odd: also the scipy.ndimage definition
        y = engine.convolve(x, k, mode="same", boundary=boundary)
        ref2 = np.stack([ndimage.convolve1d(x[:, c], k, mode=NDIMAGE_MODE[boundary])
                         for c in range(2)], axis=-1)
        assert_close(y, ref2, np.float64)


# ----------------------------------------------------------------- 2-D modes, even kernels


@pytest.mark.parametrize("method", IMAGE_METHODS)
@pytest.mark.parametrize("mode", ["same", "full", "valid"])
@pytest.mark.parametrize("ksize", [(2, 2), (4, 6), (3, 4), (6, 3), (5, 5)])
def test_2d_zero_boundary_equals_convolve2d(ksize, mode, method):
    r = rng(sum(ksize) * 7 + len(mode))
    x = r.standard_normal((21, 17, 2))
    k = r.standard_normal(ksize)
    y = engine.convolve(x, k, mode=mode, boundary="zero", method=method)
    ref = np.stack([signal.convolve2d(x[..., c], k, mode=mode, boundary="fill")
                    for c in range(2)], axis=-1)
    assert_close(y, ref, np.float64)
    ref_nd = signal_per_channel(x, k, mode)  # scipy.signal.convolve on each 2-D channel
    assert_close(y, ref_nd, np.float64)


@pytest.mark.parametrize("method", IMAGE_METHODS)
@pytest.mark.parametrize("mode", ["same", "full", "valid"])
def test_2d_per_channel_zero_boundary(mode, method):
    r = rng(500)
    x = r.standard_normal((15, 12, 3))
    k = r.standard_normal((3, 4, 3))
    y = engine.convolve(x, k, mode=mode, boundary="zero", method=method)
    assert_close(y, signal_per_channel(x, k, mode), np.float64)


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_valid_by_hand(method):
    """3x3 image of 1..9 with a 2x2 kernel of ones: valid sums of each 2x2 window."""
    x = np.arange(1.0, 10.0).reshape(3, 3, 1)
    y = engine.convolve(x, np.ones((2, 2)), mode="valid", boundary="zero", method=method)
    np.testing.assert_allclose(y[..., 0], [[12.0, 16.0], [24.0, 28.0]], rtol=0, atol=1e-12)


# ----------------------------------------------------------------- correlate


@pytest.mark.parametrize("method", IMAGE_METHODS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_correlate_equals_ndimage_correlate(per_channel, boundary, method):
    r = rng(600)
    x = r.standard_normal((16, 13, 3))
    k = r.standard_normal((3, 3, 5) if per_channel else (3, 5))
    y = engine.convolve(x, k, mode="same", boundary=boundary, method=method, correlate=True)
    assert_close(y, ndimage_per_channel(x, k, boundary, correlate=True), np.float64)
    # and it really is different from convolution for this asymmetric kernel
    assert np.abs(y - ndimage_per_channel(x, k, boundary)).max() > 1e-3


def test_correlate_by_hand():
    """Correlation applies the kernel unflipped: out[i] = sum_j k[j] x[i + j - 1]."""
    x = np.array([[0.0], [1.0], [0.0], [0.0]])
    k = np.array([1.0, 2.0, 3.0])
    y = engine.convolve(x, k, mode="same", boundary="zero", correlate=True)
    np.testing.assert_allclose(y[:, 0], [3.0, 2.0, 1.0, 0.0], atol=1e-12)
    y = engine.convolve(x, k, mode="same", boundary="zero")
    np.testing.assert_allclose(y[:, 0], [1.0, 2.0, 3.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("m", [5, 6])
def test_audio_correlate_equals_signal_correlate(m, mode):
    r = rng(700 + m)
    x = r.standard_normal((120, 2))
    k = r.standard_normal(m)
    for method in AUDIO_METHODS:
        y = engine.convolve(x, k, mode=mode, boundary="zero", method=method, correlate=True)
        assert_close(y, signal_per_channel(x, k, mode, correlate=True), np.float64)


# ----------------------------------------------------------------- dtypes and exactness


@pytest.mark.parametrize("xtype", [np.float32, np.uint8, np.uint16])
def test_float64_kernel_on_float32_or_integer_data_computes_in_float32(xtype):
    """The data's precision decides, not the kernel's (kernels are parsed as float64):
    float32 work and result, within float32 rounding of the float64 reference."""
    x = rng(800).standard_normal((10, 9, 1)).astype(np.float32)
    if xtype != np.float32:
        x = rng(800).integers(0, np.iinfo(xtype).max, (10, 9, 1)).astype(xtype)
    k = np.full((3, 3), 1 / 9)
    for method in ("direct", "fft", "auto"):
        y = engine.convolve(x, k, mode="same", boundary="reflect", method=method)
        assert y.dtype == np.float32
        assert_close(y, ndimage_per_channel(x, k, "reflect"), np.float32)


@pytest.mark.parametrize("method", ["auto", "separable"])
def test_nearly_rank_one_float64_kernel_is_not_truncated(method):
    """A float64 kernel = rank 1 + 1e-8 x another rank-1 term. It has exact rank 2;
    evaluating it as rank 1 drops a term of ~1e-8 relative size, which is not
    float64 rounding. auto (and the forced separable path) must still agree with
    scipy.ndimage within 1e-10 relative."""
    r = rng(900)
    u, v, u2, v2 = (r.standard_normal(5) for _ in range(4))
    k = np.outer(u, v) + 1e-8 * np.outer(u2, v2)
    x = r.standard_normal((300, 300, 1))
    ref = ndimage_per_channel(x, k, "reflect")
    y = engine.convolve(x, k, mode="same", boundary="reflect", method=method)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_thread_strips_match_single_thread():
    """Large enough for the direct path to split rows over threads."""
    r = rng(901)
    x = r.standard_normal((700, 60, 2))
    k = r.standard_normal((7, 7))
    ref = ndimage_per_channel(x, k, "mirror")
    for workers in (1, 2, 3):
        for method in ("direct", "separable"):
            y = engine.convolve(x, k, mode="same", boundary="mirror", method=method,
                                workers=workers)
            assert_close(y, ref, np.float64)


# ----------------------------------------------------------------- errors


def test_per_channel_count_mismatch_names_both_shapes():
    x = np.zeros((8, 8, 3))
    k = np.ones((2, 3, 3))
    with pytest.raises(PwfilterError) as info:
        engine.convolve(x, k)
    msg = str(info.value)
    assert "(2, 3, 3)" in msg and "(8, 8, 3)" in msg


def test_audio_per_channel_count_mismatch_names_both_shapes():
    x = np.zeros((100, 2))
    k = np.ones((3, 5))
    with pytest.raises(PwfilterError) as info:
        engine.convolve(x, k, mode="full")
    msg = str(info.value)
    assert "(3, 5)" in msg and "(100, 2)" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_kernel_is_an_error(bad):
    k = np.ones((3, 3))
    k[1, 2] = bad
    with pytest.raises(PwfilterError):
        engine.convolve(np.zeros((5, 5, 1)), k)


def test_kernel_of_wrong_rank_is_an_error():
    with pytest.raises(PwfilterError):
        engine.convolve(np.zeros((5, 5, 1)), np.ones((1, 2, 3, 3)))
    with pytest.raises(PwfilterError):
        engine.convolve(np.zeros((50, 1)), np.ones((2, 3, 3)))


def test_valid_needs_input_at_least_kernel_size():
    with pytest.raises(PwfilterError):
        engine.convolve(np.zeros((4, 10, 1)), np.ones((5, 3)), mode="valid")


@pytest.mark.parametrize("kw", [{"mode": "circular"}, {"boundary": "clamp"},
                                {"method": "winograd"}])
def test_unknown_option_values_are_errors(kw):
    with pytest.raises(PwfilterError):
        engine.convolve(np.zeros((6, 6, 1)), np.ones((3, 3)), **kw)


def test_empty_kernel_is_an_error():
    with pytest.raises(PwfilterError):
        engine.convolve(np.zeros((6, 6, 1)), np.ones((0, 3)))


# ----------------------------------------------------------------- large separable kernels


@pytest.mark.parametrize("method", ["separable", "auto", "fft"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_large_gaussian_equals_gaussian_filter(boundary, method):
    """A 97-tap Gaussian (sigma 12): long enough for the 1-D passes to use FFTs."""
    sigma = 12.0
    radius = int(4 * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    x = rng(1000).random((160, 130, 3))
    y = engine.convolve(x, np.outer(g, g), mode="same", boundary=boundary, method=method)
    ref = ndimage.gaussian_filter(x, (sigma, sigma, 0), mode=NDIMAGE_MODE[boundary],
                                  truncate=4.0)
    assert_close(y, ref, np.float64)


@pytest.mark.parametrize("method", ["separable", "auto"])
def test_large_per_channel_rank_one_kernels(method):
    r = rng(1001)
    x = r.standard_normal((150, 120, 3))
    k = r.standard_normal((3, 61, 1)) * r.standard_normal((3, 1, 57))
    y = engine.convolve(x, k, mode="same", boundary="nearest", method=method)
    assert_close(y, ndimage_per_channel(x, k, "nearest"), np.float64)


@pytest.mark.parametrize("method", ["separable", "auto"])
def test_large_rank_two_kernel(method):
    r = rng(1002)
    x = r.standard_normal((140, 110, 2))
    k = (np.outer(r.standard_normal(61), r.standard_normal(61))
         + np.outer(r.standard_normal(61), r.standard_normal(61)))
    y = engine.convolve(x, k, mode="same", boundary="reflect", method=method)
    assert_close(y, ndimage_per_channel(x, k, "reflect"), np.float64)


# ------------------------------------------------------------------ 8-bit results


def test_eight_bit_result_straight_from_the_separable_pass():
    """An 8-bit input, taps of one sign and gain at most 1: the result comes back as 8-bit
    samples, equal to rounding the float result (a tie may round either way: within 1)."""
    from pwfilter import ops
    from pwfilter.stages import Chain, Stage

    x = np.random.default_rng(3).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    k = ops.blur_kernel("gaussian", 2, sigma=2.0)
    fast = engine.convolve(x, k, boundary="reflect", scale=1 / 255, to_uint8=True)
    ref = ndimage.gaussian_filter(x.astype(np.float64), (2, 2, 0), mode="reflect", truncate=4.0)
    assert fast.dtype == np.uint8
    assert np.abs(fast.astype(float) - ref).max() <= 0.5 + 1e-3
    slow = engine.convolve(x, k, boundary="reflect", scale=1 / 255)
    rounded = np.clip(np.rint(slow.astype(np.float64) * 255), 0, 255)
    assert np.abs(fast - rounded).max() <= 1 and (fast != rounded).mean() < 1e-3
    # Where the result could leave [0, 255] or needs more steps: floats, as before.
    sharpen = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32)
    assert engine.convolve(x, sharpen, scale=1 / 255, to_uint8=True).dtype == np.float32
    g1 = ops.blur_kernel("gaussian", 2, sigma=1.0)
    twice = engine.Separable(g1.col * 2, g1.row)
    assert engine.convolve(x, twice, scale=1 / 255, to_uint8=True).dtype == np.float32
    biased = Chain((Stage("blur", "image", 3, kernel=k, bias=0.1),))
    assert biased.run(x, 1 / 255, to_uint8=True)[0].dtype == np.float32
    plain = Chain((Stage("blur", "image", 3, kernel=k),))
    assert plain.run(x, 1 / 255, to_uint8=True)[0].dtype == np.uint8
    assert Chain(plain.stages, normalize=True).run(x, 1 / 255, to_uint8=True)[0].dtype \
        == np.float32
