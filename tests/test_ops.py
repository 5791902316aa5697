"""Operations on arrays through the Python API (blur, alpha, FIR, scale/bias/dry/wet,
dsconv) and the remix machinery.

References are SciPy filters (``gaussian_filter``, ``uniform_filter``,
``convolve``), NumPy matrix products written out here, and hand values.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage, signal

import pwfilter
from pwfilter import ops, specs
from pwfilter.errors import PwfilterError
from pwfilter.specs import MatrixSpec
from pwfilter.stages import Stage

NDIMAGE_MODE = {"reflect": "reflect", "mirror": "mirror", "nearest": "nearest",
                "wrap": "wrap", "zero": "constant"}


def rng(seed):
    return np.random.default_rng(seed)


def per_channel_ndimage(x, k, boundary="reflect"):
    return np.stack([ndimage.convolve(x[..., c].astype(np.float64), k,
                                      mode=NDIMAGE_MODE[boundary])
                     for c in range(x.shape[-1])], axis=-1)


# ----------------------------------------------------------------- blur references


@pytest.mark.parametrize("method", ["auto", "direct", "fft", "separable"])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 3.3])
def test_gaussian_blur_equals_gaussian_filter(sigma, method):
    x = rng(1).random((37, 41, 3))
    k = ops.blur_kernel("gaussian", 2, sigma)
    y = pwfilter.convolve(x, k, method=method)
    ref = ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect", truncate=4.0)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)


def test_gaussian_blur_float32():
    x = rng(2).random((60, 50, 3)).astype(np.float32)
    k = ops.blur_kernel("gaussian", 2, 2.0).astype(np.float32)
    y = pwfilter.convolve(x, k)
    assert y.dtype == np.float32
    ref = ndimage.gaussian_filter(x.astype(np.float64), sigma=(2, 2, 0), mode="reflect",
                                  truncate=4.0)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)


def test_gaussian_blur_audio_equals_gaussian_filter1d():
    x = rng(3).standard_normal((500, 2))
    k = ops.blur_kernel("gaussian", 1, 3.0)
    y = pwfilter.convolve(x, k, mode="same")
    ref = ndimage.gaussian_filter1d(x, 3.0, axis=0, mode="constant", truncate=4.0)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("boundary", ["reflect", "mirror", "nearest", "wrap", "zero"])
@pytest.mark.parametrize("radius", [0, 1, 2, 5])
def test_box_blur_equals_uniform_filter(radius, boundary):
    x = rng(4).random((30, 33, 3))
    k = ops.blur_kernel("box", 2, radius=radius)
    y = pwfilter.convolve(x, k, boundary=boundary)
    size = 2 * radius + 1
    ref = ndimage.uniform_filter(x, size=(size, size, 1), mode=NDIMAGE_MODE[boundary])
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)


def test_blur_kernel_errors():
    with pytest.raises(PwfilterError):
        ops.blur_kernel("median", 2)
    with pytest.raises(PwfilterError):
        ops.blur_kernel("box", 2, radius=-1)
    with pytest.raises(PwfilterError):
        ops.blur_kernel("gaussian", 2, sigma=0)


# ----------------------------------------------------------------- alpha


def rgba_constant_colour(seed=5, size=48):
    """Constant colour where alpha > 0 (varying alpha), transparent black elsewhere —
    how PNGs usually store fully transparent pixels."""
    r = rng(seed)
    alpha = np.zeros((size, size))
    alpha[10:34, 12:40] = r.uniform(0.05, 1.0, (24, 28))
    alpha[20:26, 4:46] = 0.5
    colour = np.array([0.9, 0.2, 0.6])
    rgb = np.where(alpha[..., None] > 0, colour, 0.0)
    return np.concatenate([rgb, alpha[..., None]], axis=-1), colour, alpha


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["auto", "direct", "fft"])
def test_alpha_blur_keeps_colour_no_dark_fringe(method, dtype):
    img, colour, alpha = rgba_constant_colour()
    k = ops.blur_kernel("gaussian", 2, 2.0)
    y = pwfilter.convolve(img.astype(dtype), k.astype(dtype), alpha=True, method=method)
    assert y.shape == img.shape
    out_alpha = y[..., 3]
    # alpha is the blurred alpha
    ref_alpha = ndimage.gaussian_filter(alpha, 2.0, mode="reflect", truncate=4.0)
    tol = 1e-9 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out_alpha, ref_alpha, rtol=0, atol=tol)
    # wherever there is (non-negligible) alpha, the colour is the constant colour
    where = (alpha > 0) | (ref_alpha > 1e-3)
    assert where.sum() > alpha.astype(bool).sum()  # the fringe is included
    err = np.abs(y[..., :3][where] - colour).max()
    assert err < (1e-9 if dtype == np.float64 else 1e-4), err


def test_alpha_blur_straight_blur_would_darken():
    """Sanity of the test image: a straight (non-premultiplied) blur darkens the edge."""
    img, colour, alpha = rgba_constant_colour()
    straight = ndimage.gaussian_filter(img, (2, 2, 0), mode="reflect", truncate=4.0)
    edge = (alpha > 0) & (ndimage.gaussian_filter(alpha, 2.0) < 0.9 * alpha.max())
    assert np.abs(straight[..., :3][edge] - colour).max() > 0.1


def test_alpha_with_sharpen_premultiplied_by_hand():
    """Premultiplied filtering by hand: colour*alpha and alpha convolved, then divided."""
    r = rng(6)
    img = r.random((20, 22, 4))
    img[..., 3] = r.uniform(0.2, 1.0, (20, 22))
    k = np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]])
    y = pwfilter.convolve(img, k, alpha=True)
    a = ndimage.convolve(img[..., 3], k, mode="reflect")
    pre = per_channel_ndimage(img[..., :3] * img[..., 3:], k)
    ok = np.abs(a) > 1e-3
    np.testing.assert_allclose(y[..., 3], a, rtol=0, atol=1e-10)
    np.testing.assert_allclose(y[..., :3][ok], (pre / a[..., None])[ok], rtol=1e-9, atol=1e-9)


def test_la_image_alpha():
    img, colour, alpha = rgba_constant_colour()
    la = img[..., [0, 3]]
    y = pwfilter.convolve(la, ops.blur_kernel("box", 2, radius=2), alpha=True)
    out_alpha = y[..., 1]
    where = out_alpha > 1e-3
    np.testing.assert_allclose(y[..., 0][where], colour[0], rtol=0, atol=1e-9)


# ----------------------------------------------------------------- FIR designs


RATE = 8000


def tone(freq, seconds=1.0):
    t = np.arange(int(RATE * seconds)) / RATE
    return np.sin(2 * np.pi * freq * t)[:, None]


def filtered_gain_db(spec, freq):
    ks = specs.load_kernel(spec, kind="audio", channels=1, rate=RATE)
    x = tone(freq)
    y = pwfilter.convolve(x, ks.array, mode=ks.default_mode)
    assert y.shape == x.shape  # same: the file keeps its length
    mid = slice(len(x) // 4, 3 * len(x) // 4)

    def rms(v):
        return np.sqrt(np.mean(v[mid] ** 2))

    return 20 * np.log10(rms(y) / rms(x)), x, y


def test_lowpass_1000():
    passed, x, y = filtered_gain_db("lowpass:1000", 200)
    assert abs(passed) < 0.5
    # linear phase, centred: the passband tone is in time (no delay) in the middle
    mid = slice(len(x) // 4, 3 * len(x) // 4)
    assert np.abs(y[mid] - x[mid]).max() < 0.06
    stopped, _, _ = filtered_gain_db("lowpass:1000", 3000)
    assert stopped < -40


def test_highpass_1000():
    passed, x, y = filtered_gain_db("highpass:1000", 3000)
    assert abs(passed) < 0.5
    mid = slice(len(x) // 4, 3 * len(x) // 4)
    assert np.abs(y[mid] - x[mid]).max() < 0.06
    stopped, _, _ = filtered_gain_db("highpass:1000", 200)
    assert stopped < -40


def test_bandpass_500_1500():
    passed, _, _ = filtered_gain_db("bandpass:500:1500", 1000)
    assert abs(passed) < 0.5
    for f in (100, 3000):
        stopped, _, _ = filtered_gain_db("bandpass:500:1500", f)
        assert stopped < -40, (f, stopped)


def test_fir_stereo_keeps_length_and_filters_each_channel():
    ks = specs.load_kernel("lowpass:1000", kind="audio", channels=2, rate=RATE)
    x = np.concatenate([tone(200), tone(3000)], axis=1)
    y = pwfilter.convolve(x, ks.array, mode=ks.default_mode)
    assert y.shape == x.shape
    ref = np.stack([signal.convolve(x[:, c], ks.array, mode="same") for c in range(2)], -1)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)


# ----------------------------------------------------------------- filter options


def test_audio_default_is_full_zero():
    x = rng(7).standard_normal((100, 2))
    k = rng(8).standard_normal(17)
    y = pwfilter.convolve(x, k)
    ref = np.stack([signal.convolve(x[:, c], k) for c in range(2)], -1)
    assert y.shape == (116, 2)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)


def test_image_default_is_same_reflect():
    x = rng(9).random((12, 14, 3))
    k = rng(10).standard_normal((3, 5))
    y = pwfilter.convolve(x, k)
    np.testing.assert_allclose(y, per_channel_ndimage(x, k, "reflect"), rtol=0, atol=1e-10)


def test_scale_bias_dry_wet_full_mode():
    """out = dry*x + wet*(scale*(x*k) + bias), the dry signal zero-padded at the end."""
    x = rng(11).standard_normal((80, 2))
    k = rng(12).standard_normal(9)
    y = pwfilter.convolve(x, k, scale=2.0, bias=0.1, dry=0.7, wet=0.5)
    conv = np.stack([signal.convolve(x[:, c], k) for c in range(2)], -1)
    ref = 0.5 * (2.0 * conv + 0.1)
    ref[:80] += 0.7 * x
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)


def test_residual_same_mode_image():
    x = rng(13).random((10, 12, 3))
    k = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    y = pwfilter.convolve(x, k, dry=1.0, wet=1.0)
    np.testing.assert_allclose(y, x + per_channel_ndimage(x, k), rtol=0, atol=1e-10)


def test_normalize_scales_to_peak_one():
    x = rng(14).standard_normal((60, 1))
    k = np.array([1.0, 2.0, 3.0])
    y = pwfilter.convolve(x, k, normalize=True)
    conv = signal.convolve(x[:, 0], k)
    np.testing.assert_allclose(y[:, 0], conv / np.abs(conv).max(), rtol=0, atol=1e-12)


def test_correlate_option():
    x = rng(15).random((11, 13, 2))
    k = rng(16).standard_normal((3, 5))
    y = pwfilter.convolve(x, k, correlate=True)
    ref = np.stack([ndimage.correlate(x[..., c], k, mode="reflect") for c in range(2)], -1)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)


# ----------------------------------------------------------------- remix


def remix(x, matrix, *, kind, has_alpha=False, **kw):
    spec = matrix if isinstance(matrix, MatrixSpec) else MatrixSpec(np.asarray(matrix, float),
                                                                    None, "test")
    r = ops.resolve_remix(spec, channels=x.shape[-1], kind=kind, has_alpha=has_alpha, **kw)
    return ops.remix_array(x, r)


def test_inline_matrix_equals_matmul():
    x = rng(20).random((9, 7, 3))
    spec = specs.load_matrix("0.1 -0.2 0.3; 1.5 0.5 -1", kind="image", channels=3)
    y = remix(x, spec, kind="image")
    m = np.array([[0.1, -0.2, 0.3], [1.5, 0.5, -1.0]])
    np.testing.assert_allclose(y, np.einsum("oi,hwi->hwo", m, x), rtol=0, atol=1e-14)
    # written out per output channel
    np.testing.assert_allclose(y[..., 0], 0.1 * x[..., 0] - 0.2 * x[..., 1] + 0.3 * x[..., 2],
                               rtol=0, atol=1e-14)


def test_gray_preset_is_rec601():
    x = rng(21).random((5, 6, 3))
    y = remix(x, specs.load_matrix("gray", kind="image", channels=3), kind="image")
    assert y.shape == (5, 6, 1)
    np.testing.assert_allclose(y[..., 0], 0.299 * x[..., 0] + 0.587 * x[..., 1]
                               + 0.114 * x[..., 2], rtol=0, atol=1e-14)


def test_invert_preset_with_alpha():
    x = rng(22).random((5, 6, 4)).astype(np.float32)
    y = remix(x, specs.load_matrix("invert", kind="image", channels=4), kind="image",
              has_alpha=True)
    np.testing.assert_allclose(y[..., :3], 1 - x[..., :3], rtol=0, atol=1e-6)
    assert np.array_equal(y[..., 3], x[..., 3])


def test_bias_is_added():
    x = rng(23).random((4, 3))
    y = remix(x, MatrixSpec(np.array([[1.0, 1.0, 0.0]]), None, "m"), kind="audio",
              bias=np.array([0.25]))
    np.testing.assert_allclose(y[:, 0], x[:, 0] + x[:, 1] + 0.25, rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_permutation_and_identity_are_bit_exact(dtype):
    x = rng(24).standard_normal((50, 4)).astype(dtype)
    perm = [2, 0, 3, 1]
    m = np.eye(4)[perm]
    y = remix(x, m, kind="audio")
    assert y.dtype == dtype
    assert np.array_equal(y, x[:, perm])
    assert np.array_equal(remix(x, np.eye(4), kind="audio"), x)
    img = rng(25).random((6, 5, 3)).astype(dtype)
    assert np.array_equal(remix(img, specs.load_matrix("bgr", kind="image", channels=3),
                                kind="image"), img[..., ::-1])


def test_swap_preset_bit_exact():
    x = rng(26).standard_normal((30, 2)).astype(np.float32)
    y = remix(x, specs.load_matrix("swap", kind="audio", channels=2), kind="audio")
    assert np.array_equal(y, x[:, ::-1])


def test_mid_side_round_trip():
    x = rng(27).uniform(-1, 1, (1000, 2)).astype(np.float32)
    ms = remix(x, specs.load_matrix("mid-side", kind="audio", channels=2), kind="audio")
    np.testing.assert_allclose(ms[:, 0], (x[:, 0] + x[:, 1]) / 2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ms[:, 1], (x[:, 0] - x[:, 1]) / 2, rtol=0, atol=1e-6)
    back = remix(ms, specs.load_matrix("side-mid", kind="audio", channels=2), kind="audio")
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-6)


def test_eight_to_two_downmix():
    """7.1 (L R C LFE Ls Rs Lb Rb) to stereo, each output written out by hand."""
    g = 0.7071
    m = np.array([[1, 0, g, 0, g, 0, g, 0],
                  [0, 1, g, 0, 0, g, 0, g]], dtype=float)
    x = rng(28).uniform(-1, 1, (300, 8))
    y = remix(x, m, kind="audio")
    left = x[:, 0] + g * x[:, 2] + g * x[:, 4] + g * x[:, 6]
    right = x[:, 1] + g * x[:, 2] + g * x[:, 5] + g * x[:, 7]
    assert y.shape == (300, 2)
    np.testing.assert_allclose(y[:, 0], left, rtol=0, atol=1e-13)
    np.testing.assert_allclose(y[:, 1], right, rtol=0, atol=1e-13)
    mono = remix(x, specs.load_matrix("mono", kind="audio", channels=8), kind="audio")
    np.testing.assert_allclose(mono[:, 0], x.mean(axis=1), rtol=0, atol=1e-14)


def test_rgba_with_three_column_matrix_keeps_alpha():
    x = rng(29).random((8, 9, 4)).astype(np.float32)
    m = np.array([[0.5, 0.2, 0.3], [0.1, 0.9, 0.0], [0.3, 0.3, 0.4]])
    y = remix(x, m, kind="image", has_alpha=True)
    assert y.shape == (8, 9, 4)
    assert np.array_equal(y[..., 3], x[..., 3])
    np.testing.assert_allclose(y[..., :3], np.einsum("oi,hwi->hwo", m, x[..., :3]),
                               rtol=0, atol=1e-6)


def test_rgba_with_four_column_matrix_mixes_alpha():
    x = rng(30).random((4, 5, 4))
    m = np.array([[0.0, 0.0, 0.0, 1.0]])  # alpha to gray
    y = remix(x, m, kind="image", has_alpha=True)
    assert y.shape == (4, 5, 1)
    np.testing.assert_array_equal(y[..., 0], x[..., 3])


@pytest.mark.parametrize("cols, channels, has_alpha", [(5, 3, False), (2, 3, False),
                                                       (5, 4, True), (4, 7, False)])
def test_wrong_column_count_names_both_counts(cols, channels, has_alpha):
    x = np.zeros((2, 2, channels))
    with pytest.raises(PwfilterError) as info:
        remix(x, np.ones((2, cols)), kind="image", has_alpha=has_alpha)
    msg = str(info.value)
    assert re.search(rf"\b{cols}\b", msg) and re.search(rf"\b{channels}\b", msg), msg


def block_diag(*blocks):
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols))
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r += b.shape[0]
        c += b.shape[1]
    return out


def test_grouped_weight_is_torchs_convention():
    """A 2-D matrix with --groups G is the weight (C_out, C_in/G) of a grouped 1x1
    convolution (torch.nn.Conv2d(groups=G)): 6 channels, G = 3, a (3, 2) matrix gives 3
    outputs, output g reading input channels 2g and 2g + 1 only."""
    m = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]])
    x = rng(30).standard_normal((30, 6))
    y = remix(x, MatrixSpec(m, None, "m"), kind="audio", groups=3)
    want = np.stack([x[:, 2 * g] * m[g, 0] + x[:, 2 * g + 1] * m[g, 1] for g in range(3)], -1)
    assert y.shape == (30, 3)
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-13)
    # Two rows per group: (4, 3) with G = 2 on 6 channels gives 4 outputs.
    m4 = np.arange(12.0).reshape(4, 3)
    y4 = remix(x, MatrixSpec(m4, None, "m"), kind="audio", groups=2)
    np.testing.assert_allclose(y4, np.concatenate([x[:, :3] @ m4[:2].T, x[:, 3:] @ m4[2:].T],
                                                  -1), rtol=0, atol=1e-12)
    with pytest.raises(PwfilterError, match="rows"):
        ops.effective_matrix(MatrixSpec(m, None, "m"), 4, 2)  # 3 rows in 2 groups


def test_grouped_shared_matrix_is_block_diagonal():
    """--groups 2 with one (1, C_out/G, C_in/G) block shared by both groups."""
    m = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    x = rng(31).standard_normal((40, 4))
    spec = MatrixSpec(m[None], None, "m")
    full = block_diag(m, m)
    np.testing.assert_array_equal(ops.effective_matrix(spec, 4, 2), full)
    y = remix(x, spec, kind="audio", groups=2)
    assert y.shape == (40, 6)
    np.testing.assert_allclose(y, x @ full.T, rtol=0, atol=1e-13)
    # group 0's outputs do not see group 1's inputs
    x2 = x.copy()
    x2[:, 2:] = rng(32).standard_normal((40, 2))
    np.testing.assert_array_equal(remix(x2, spec, kind="audio", groups=2)[:, :3], y[:, :3])


def test_grouped_per_group_blocks_are_block_diagonal():
    spec = specs.load_matrix("1 0 2; 0 1 0 | 0.5 0.5 0; 0 0 -1", kind="audio", channels=6)
    b0 = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    b1 = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, -1.0]])
    full = block_diag(b0, b1)
    for groups in (1, 2):  # the blocks carry their group count
        np.testing.assert_array_equal(ops.effective_matrix(spec, 6, groups), full)
    x = rng(33).standard_normal((25, 6))
    np.testing.assert_allclose(remix(x, spec, kind="audio", groups=2), x @ full.T,
                               rtol=0, atol=1e-13)


def test_grouped_errors():
    spec = MatrixSpec(np.ones((1, 2, 2)), None, "m")
    with pytest.raises(PwfilterError):
        ops.effective_matrix(spec, 5, 2)  # 5 channels do not split in 2 groups
    with pytest.raises(PwfilterError):
        ops.effective_matrix(MatrixSpec(np.ones((2, 3)), None, "m"), 4, 2)
    with pytest.raises(PwfilterError):
        ops.effective_matrix(spec, 4, 0)


def test_shuffle_order():
    np.testing.assert_array_equal(ops.shuffle_order(4, 2), [0, 2, 1, 3])
    np.testing.assert_array_equal(ops.shuffle_order(6, 3), [0, 2, 4, 1, 3, 5])
    np.testing.assert_array_equal(ops.shuffle_order(6, 2), [0, 3, 1, 4, 2, 5])
    np.testing.assert_array_equal(ops.shuffle_order(5, 1), [0, 1, 2, 3, 4])
    with pytest.raises(PwfilterError):
        ops.shuffle_order(5, 2)


@pytest.mark.parametrize("channels, groups", [(4, 2), (6, 3), (6, 2), (8, 4)])
def test_shuffle_is_shufflenets_view_transpose_flatten(channels, groups):
    """Identity remix + shuffle = x viewed as (G, C/G), transposed, flattened."""
    x = rng(34).standard_normal((10, channels))
    y = remix(x, np.eye(channels), kind="audio", shuffle=groups)
    ref = x.reshape(10, groups, channels // groups).transpose(0, 2, 1).reshape(10, channels)
    np.testing.assert_array_equal(y, ref)


def test_shuffle_carries_an_impulse_to_the_other_group():
    """Two grouped remixes (G = 2, 4 channels): without a shuffle between them a unit
    impulse in group 1 never reaches group 2; with one it does."""
    spec = MatrixSpec(np.ones((1, 2, 2)), None, "all-in-group")
    x = np.zeros((1, 4))
    x[0, 0] = 1.0  # channel 0: group 1
    plain = remix(remix(x, spec, kind="audio", groups=2), spec, kind="audio", groups=2)
    np.testing.assert_array_equal(plain[0, 2:], [0.0, 0.0])
    shuffled = remix(x, spec, kind="audio", groups=2, shuffle=2)
    # grouped sums give [1, 1, 0, 0]; the shuffle (order 0 2 1 3) moves one 1 to group 2
    np.testing.assert_array_equal(shuffled[0], [1.0, 0.0, 1.0, 0.0])
    after = remix(shuffled, spec, kind="audio", groups=2)
    assert after[0, 2] > 0 and after[0, 3] > 0


def test_dry_wet_in_remix():
    x = rng(35).standard_normal((20, 2))
    m = np.array([[0.0, 1.0], [1.0, 0.0]])
    y = remix(x, m, kind="audio", dry=1.0, wet=0.5)
    np.testing.assert_allclose(y, x + 0.5 * x[:, ::-1], rtol=0, atol=1e-15)
    with pytest.raises(PwfilterError):
        remix(x, np.ones((1, 2)), kind="audio", dry=1.0)


# ----------------------------------------------------------------- dsconv


@pytest.mark.parametrize("c_out", [2, 3, 4])
@pytest.mark.parametrize("per_channel", [False, True])
def test_dsconv_image_equals_convolve_then_remix(per_channel, c_out):
    r = rng(40 + c_out)
    x = r.random((17, 19, 3))
    k = r.standard_normal((3, 5, 5) if per_channel else (5, 5))
    m = r.standard_normal((c_out, 3))
    y = pwfilter.dsconv(x, k, m)
    conv = np.stack([ndimage.convolve(x[..., c], k[c] if per_channel else k, mode="reflect")
                     for c in range(3)], axis=-1)
    np.testing.assert_allclose(y, np.einsum("oi,hwi->hwo", m, conv), rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_dsconv_audio_equals_convolve_then_remix(mode):
    r = rng(50)
    x = r.standard_normal((400, 4))
    k = r.standard_normal(33)
    m = r.standard_normal((2, 4))
    bias = np.array([0.5, -0.25])
    rem = ops.resolve_remix(MatrixSpec(m, bias, "m"), channels=4, kind="audio", has_alpha=False)
    # A matrix's own bias (as the invert preset has): the stage itself, below the API.
    y, _ = Stage("dsconv", "audio", 4, kernel=k, mode=mode, boundary="zero", remix=rem).run(x)
    conv = np.stack([signal.convolve(x[:, c], k, mode=mode) for c in range(4)], axis=-1)
    np.testing.assert_allclose(y, conv @ m.T + bias, rtol=0, atol=1e-10)


def test_dsconv_audio_per_channel_kernels():
    r = rng(51)
    x = r.standard_normal((300, 2))
    k = r.standard_normal((2, 20))
    m = np.array([[0.5, 0.5], [0.5, -0.5]])
    y = pwfilter.dsconv(x, k, m)
    conv = np.stack([signal.convolve(x[:, c], k[c]) for c in range(2)], axis=-1)
    np.testing.assert_allclose(y, conv @ m.T, rtol=0, atol=1e-10)


def test_dsconv_rgba_keeps_blurred_alpha_and_colour():
    img, colour, alpha = rgba_constant_colour()
    m = np.array([[0.299, 0.587, 0.114]])
    y = pwfilter.dsconv(img, ops.blur_kernel("gaussian", 2, 1.5), m, alpha=True)
    assert y.shape == (48, 48, 2)
    ref_alpha = ndimage.gaussian_filter(alpha, 1.5, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(y[..., 1], ref_alpha, rtol=0, atol=1e-10)
    where = ref_alpha > 1e-3
    np.testing.assert_allclose(y[..., 0][where], float((m @ colour)[0]), rtol=0, atol=1e-9)
