"""Kernel and matrix specifications: parsing, named kernels, normalisation, FIR designs.

Expected values are hand-written from the specification or computed with
SciPy/NumPy (the Gaussian is the one ``scipy.ndimage.gaussian_filter`` uses,
obtained by filtering a unit impulse).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage, signal

from pwfilter import specs
from pwfilter.errors import PwfilterError

# ----------------------------------------------------------------- parse_rows


def test_parse_rows_inline():
    arr = specs.parse_rows("1 2 1; 2 4 2; 1 2 1", "kernel")
    assert arr.dtype == np.float64
    np.testing.assert_array_equal(arr, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_parse_rows_commas_comments_blank_lines_and_number_forms():
    text = "# a header\n1, 2,3\n\n  4 ,5, 6   # trailing comment\n# only a comment\n-1e-3 +2.5 .5\n"
    arr = specs.parse_rows(text, "kernel")
    np.testing.assert_array_equal(arr, [[1, 2, 3], [4, 5, 6], [-0.001, 2.5, 0.5]])


def test_parse_rows_single_row_is_2d():
    arr = specs.parse_rows("0.299 0.587 0.114", "matrix")
    assert arr.shape == (1, 3)


@pytest.mark.parametrize("text, word", [("1 x 2", "x"), ("1 2; 3 abc", "abc"),
                                        ("1 2 3,,4 y", "y")])
def test_parse_rows_non_number_is_an_error_naming_it(text, word):
    with pytest.raises(PwfilterError) as info:
        specs.parse_rows(text, "kernel")
    assert word in str(info.value)


def test_parse_rows_ragged_rows_are_an_error():
    with pytest.raises(PwfilterError) as info:
        specs.parse_rows("1 2 3; 4 5", "kernel")
    assert "3" in str(info.value) and "2" in str(info.value)


@pytest.mark.parametrize("text", ["1 nan 1", "1 2; inf 3", "-inf", "1 NaN"])
def test_parse_rows_non_finite_is_an_error(text):
    with pytest.raises(PwfilterError):
        specs.parse_rows(text, "kernel")


@pytest.mark.parametrize("text", ["", "   ", "# nothing here\n", ";;", "\n\n"])
def test_parse_rows_empty_is_an_error(text):
    with pytest.raises(PwfilterError):
        specs.parse_rows(text, "kernel")


# ----------------------------------------------------------------- load_kernel: files, inline


def test_load_kernel_inline_image():
    ks = specs.load_kernel("1 2 1; 2 4 2; 1 2 1", kind="image", channels=3)
    np.testing.assert_array_equal(ks.array, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    assert ks.default_mode is None


def test_load_kernel_inline_audio_row():
    ks = specs.load_kernel("0.5 0.25 0.125", kind="audio", channels=2)
    np.testing.assert_array_equal(ks.array, [0.5, 0.25, 0.125])


def test_load_kernel_txt_with_comments_and_commas(tmp_path):
    path = tmp_path / "k.txt"
    path.write_text("# edge kernel\n-1, 0, 1\n-2,0,2   # middle row\n-1 0 1\n")
    ks = specs.load_kernel(str(path), kind="image", channels=1)
    np.testing.assert_array_equal(ks.array, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def test_load_kernel_csv(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("1,2\n3,4\n")
    ks = specs.load_kernel(str(path), kind="image", channels=3)
    np.testing.assert_array_equal(ks.array, [[1, 2], [3, 4]])


def test_load_kernel_npy_shared_and_per_channel(tmp_path):
    k2 = np.arange(9.0).reshape(3, 3)
    np.save(tmp_path / "k2.npy", k2)
    ks = specs.load_kernel(str(tmp_path / "k2.npy"), kind="image", channels=3)
    np.testing.assert_array_equal(ks.array, k2)
    assert ks.array.dtype == np.float64

    k3 = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    np.save(tmp_path / "k3.npy", k3)
    ks = specs.load_kernel(str(tmp_path / "k3.npy"), kind="image", channels=3)
    np.testing.assert_array_equal(ks.array, k3.astype(np.float64))

    ka = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.save(tmp_path / "ka.npy", ka)
    ks = specs.load_kernel(str(tmp_path / "ka.npy"), kind="audio", channels=2)
    np.testing.assert_array_equal(ks.array, ka)


def test_load_kernel_npy_integer_dtype(tmp_path):
    np.save(tmp_path / "k.npy", np.array([[1, 2], [3, 4]], dtype=np.int16))
    ks = specs.load_kernel(str(tmp_path / "k.npy"), kind="image", channels=1)
    np.testing.assert_array_equal(ks.array, [[1.0, 2.0], [3.0, 4.0]])


def test_wrong_per_channel_count_image_names_both_shapes(tmp_path):
    np.save(tmp_path / "k.npy", np.ones((2, 3, 3)))
    with pytest.raises(PwfilterError) as info:
        specs.load_kernel(str(tmp_path / "k.npy"), kind="image", channels=3)
    msg = str(info.value)
    assert "(2, 3, 3)" in msg
    assert "(3, kh, kw)" in msg or re.search(r"\b3 channel", msg)


def test_wrong_per_channel_count_audio_names_both_shapes(tmp_path):
    np.save(tmp_path / "k.npy", np.ones((2, 5)))
    with pytest.raises(PwfilterError) as info:
        specs.load_kernel(str(tmp_path / "k.npy"), kind="audio", channels=3)
    msg = str(info.value)
    assert "(2, 5)" in msg
    assert "(3, M)" in msg or re.search(r"\b3 channel", msg)


def test_npy_non_finite_is_an_error(tmp_path):
    np.save(tmp_path / "k.npy", np.array([1.0, np.inf, 1.0]))
    with pytest.raises(PwfilterError):
        specs.load_kernel(str(tmp_path / "k.npy"), kind="audio", channels=1)


def test_npy_empty_is_an_error(tmp_path):
    np.save(tmp_path / "k.npy", np.zeros((0, 3)))
    with pytest.raises(PwfilterError):
        specs.load_kernel(str(tmp_path / "k.npy"), kind="image", channels=1)


def test_npy_non_numeric_is_an_error(tmp_path):
    np.save(tmp_path / "k.npy", np.array(["a", "b"]))
    with pytest.raises(PwfilterError):
        specs.load_kernel(str(tmp_path / "k.npy"), kind="audio", channels=1)


def test_corrupt_npy_is_an_error(tmp_path):
    (tmp_path / "k.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(PwfilterError):
        specs.load_kernel(str(tmp_path / "k.npy"), kind="audio", channels=1)


def test_txt_ragged_nonnumber_empty_are_errors(tmp_path):
    for name, text in [("ragged.txt", "1 2 3\n4 5\n"), ("word.txt", "1 2\n3 four\n"),
                       ("empty.txt", "# nothing\n"), ("nan.txt", "1 nan\n2 3\n")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(PwfilterError):
            specs.load_kernel(str(tmp_path / name), kind="image", channels=1)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(PwfilterError) as info:
        specs.load_kernel(str(tmp_path / "nope.npy"), kind="image", channels=1)
    assert "nope.npy" in str(info.value)


@pytest.mark.parametrize("spec", ["foo", "gaussian", "box:2:3", "blurry:3"])
def test_unknown_kernel_name_is_an_error(spec):
    with pytest.raises(PwfilterError):
        specs.load_kernel(spec, kind="image", channels=3)


@pytest.mark.parametrize("spec", ["1 nan 1", "1 2; inf 3"])
@pytest.mark.parametrize("what", ["kernel", "matrix"])
def test_inline_non_finite_error_says_so(spec, what):
    """NaN/Inf written inline is "a clear error" (SPEC, untrusted input): the message
    should say the values are not finite, not that a kernel/matrix name is unknown."""
    with pytest.raises(PwfilterError) as info:
        if what == "kernel":
            specs.load_kernel(spec, kind="image", channels=1)
        else:
            specs.load_matrix(spec, kind="audio", channels=2)
    msg = str(info.value)
    assert re.search(r"NaN|Inf|finite|not a number", msg), msg


@pytest.mark.parametrize("spec", ["1 x 1", "1 2 1; 2 y 2"])
def test_inline_with_a_word_is_an_error(spec):
    with pytest.raises(PwfilterError):
        specs.load_kernel(spec, kind="image", channels=1)


# ----------------------------------------------------------------- named kernels


def scipy_gaussian_1d(sigma):
    """The weights scipy.ndimage.gaussian_filter1d uses (truncate 4): filter an impulse."""
    radius = int(4.0 * sigma + 0.5)
    delta = np.zeros(2 * radius + 1 + 20)
    centre = radius + 10
    delta[centre] = 1.0
    out = ndimage.gaussian_filter1d(delta, sigma, mode="constant", truncate=4.0)
    # nothing may leak beyond the radius (that is the kernel's full support)
    assert np.all(out[: centre - radius] == 0) and np.all(out[centre + radius + 1:] == 0)
    return out[centre - radius: centre + radius + 1]


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 1.3, 2.0, 3.7])
def test_gaussian_audio_is_scipys_kernel(sigma):
    ks = specs.load_kernel(f"gaussian:{sigma}", kind="audio", channels=1)
    ref = scipy_gaussian_1d(sigma)
    assert ks.array.shape == ref.shape
    np.testing.assert_allclose(ks.array, ref, rtol=0, atol=1e-15)
    assert abs(ks.array.sum() - 1) < 1e-14


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 2.6])
def test_gaussian_image_is_scipys_kernel(sigma):
    ks = specs.load_kernel(f"gaussian:{sigma}", kind="image", channels=3)
    radius = int(4.0 * sigma + 0.5)
    size = 2 * radius + 1
    delta = np.zeros((size, size))
    delta[radius, radius] = 1.0
    ref = ndimage.gaussian_filter(delta, sigma, mode="constant", truncate=4.0)
    assert ks.array.shape == (size, size)
    np.testing.assert_allclose(ks.array, ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize("bad", ["gaussian:0", "gaussian:-1", "gaussian:nan", "gaussian:inf",
                                 "gaussian:abc"])
def test_gaussian_bad_sigma_is_an_error(bad):
    with pytest.raises(PwfilterError):
        specs.load_kernel(bad, kind="image", channels=1)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_box(n):
    ks = specs.load_kernel(f"box:{n}", kind="audio", channels=1)
    assert ks.array.shape == (n,)
    np.testing.assert_allclose(ks.array, 1.0 / n, rtol=0, atol=1e-16)
    ks = specs.load_kernel(f"box:{n}", kind="image", channels=1)
    assert ks.array.shape == (n, n)
    np.testing.assert_allclose(ks.array, 1.0 / (n * n), rtol=0, atol=1e-16)


@pytest.mark.parametrize("bad", ["box:0", "box:-2", "box:2.5", "box:x"])
def test_box_bad_size_is_an_error(bad):
    with pytest.raises(PwfilterError):
        specs.load_kernel(bad, kind="image", channels=1)


def test_identity():
    a = specs.load_kernel("identity", kind="audio", channels=2).array
    i = specs.load_kernel("identity", kind="image", channels=2).array
    assert a.ndim == 1 and i.ndim == 2
    # one 1 at the centre and zeros elsewhere
    assert a.sum() == 1 and a[a.shape[0] // 2] == 1 and np.count_nonzero(a) == 1
    assert i.sum() == 1 and i[i.shape[0] // 2, i.shape[1] // 2] == 1 and np.count_nonzero(i) == 1


def test_sharpen_and_laplacian_values():
    lap = specs.load_kernel("laplacian", kind="image", channels=1).array
    sharp = specs.load_kernel("sharpen", kind="image", channels=1).array
    np.testing.assert_array_equal(lap, [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    np.testing.assert_array_equal(sharp, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    assert sharp.sum() == 1
    assert lap.sum() == 0


def test_sobel_responds_positively_to_rising_brightness():
    """README: sobel-x/y are defined for convolution; brightness rising to the right
    (downwards) gives a positive response (+8 per unit step for a unit-slope ramp)."""
    sx = specs.load_kernel("sobel-x", kind="image", channels=1).array
    sy = specs.load_kernel("sobel-y", kind="image", channels=1).array
    ramp_right = np.tile(np.arange(7.0), (7, 1))
    ramp_down = ramp_right.T
    inner = (slice(1, -1), slice(1, -1))
    assert np.all(ndimage.convolve(ramp_right, sx)[inner] == 8)
    assert np.all(ndimage.convolve(ramp_down, sx)[inner] == 0)
    assert np.all(ndimage.convolve(ramp_down, sy)[inner] == 8)
    assert np.all(ndimage.convolve(ramp_right, sy)[inner] == 0)
    assert np.abs(sx).sum() == 8 and np.abs(sy).sum() == 8


def test_emboss_is_a_3x3_image_kernel():
    k = specs.load_kernel("emboss", kind="image", channels=1).array
    assert k.shape == (3, 3)
    assert np.isfinite(k).all()


@pytest.mark.parametrize("name", ["sharpen", "laplacian", "sobel-x", "sobel-y", "emboss"])
def test_image_only_kernels_are_errors_on_audio(name):
    with pytest.raises(PwfilterError):
        specs.load_kernel(name, kind="audio", channels=1)


def test_named_kernels_are_case_insensitive():
    np.testing.assert_array_equal(specs.load_kernel("Sharpen", kind="image", channels=1).array,
                                  specs.load_kernel("sharpen", kind="image", channels=1).array)


# ----------------------------------------------------------------- FIR designs


def gain_db(h, f, rate):
    w, resp = signal.freqz(h, worN=[f], fs=rate)
    return 20 * np.log10(abs(resp[0]))


@pytest.mark.parametrize("spec", ["lowpass:1000", "highpass:1000", "bandpass:500:1500",
                                  "lowpass:3000:101", "highpass:200:41"])
def test_fir_is_odd_linear_phase_and_same_mode(spec):
    ks = specs.load_kernel(spec, kind="audio", channels=1, rate=8000)
    h = ks.array
    assert h.ndim == 1 and h.shape[0] % 2 == 1
    np.testing.assert_allclose(h, h[::-1], rtol=0, atol=1e-15)  # symmetric: linear phase
    assert ks.default_mode == "same"


def test_fir_tap_count_is_honoured():
    assert specs.load_kernel("lowpass:1000:101", kind="audio", channels=1,
                             rate=8000).array.shape == (101,)
    assert specs.load_kernel("bandpass:500:1500:63", kind="audio", channels=1,
                             rate=8000).array.shape == (63,)


def test_fir_responses_at_the_design_rate():
    """Measured on the kernel's own frequency response (scipy.signal.freqz)."""
    rate = 8000
    lp = specs.load_kernel("lowpass:1000", kind="audio", channels=1, rate=rate).array
    hp = specs.load_kernel("highpass:1000", kind="audio", channels=1, rate=rate).array
    bp = specs.load_kernel("bandpass:500:1500", kind="audio", channels=1, rate=rate).array
    assert abs(lp.sum() - 1) < 0.01          # DC passes
    assert abs(hp.sum()) < 0.01              # DC blocked
    assert abs(gain_db(lp, 200, rate)) < 0.5 and gain_db(lp, 3000, rate) < -40
    assert abs(gain_db(hp, 3000, rate)) < 0.5 and gain_db(hp, 200, rate) < -40
    assert abs(gain_db(bp, 1000, rate)) < 0.5
    assert gain_db(bp, 100, rate) < -40 and gain_db(bp, 3000, rate) < -40


def test_fir_is_designed_at_the_given_rate():
    """The design follows the rate it is given: lowpass:1000 passes 300 Hz and stops
    3 kHz at 8, 16 and 44.1 kHz alike."""
    for rate in (8000, 16000, 44100):
        lp = specs.load_kernel("lowpass:1000", kind="audio", channels=1, rate=rate).array
        assert abs(gain_db(lp, 300, rate)) < 0.5
        assert gain_db(lp, 3000, rate) < -40


@pytest.mark.parametrize("spec, rate", [
    ("lowpass:1000", 0),          # no rate
    ("lowpass:5000", 8000),       # above Nyquist
    ("lowpass:0", 8000),
    ("highpass:-3", 8000),
    ("lowpass:1000:100", 8000),   # even tap count
    ("lowpass:1000:1", 8000),
    ("bandpass:1500:500", 8000),  # low above high
    ("bandpass:1000", 8000),      # one frequency missing
    ("lowpass:abc", 8000),
])
def test_fir_bad_designs_are_errors(spec, rate):
    with pytest.raises(PwfilterError):
        specs.load_kernel(spec, kind="audio", channels=1, rate=rate)


def test_fir_on_an_image_is_an_error():
    with pytest.raises(PwfilterError):
        specs.load_kernel("lowpass:1000", kind="image", channels=3, rate=8000)


# ----------------------------------------------------------------- normalize_kernel


def test_normalize_sum_l1_energy_peak_by_hand():
    k = np.array([[1.0, 2.0], [-3.0, 4.0]])  # sum 4, l1 10, energy sqrt(30), peak 4
    np.testing.assert_allclose(specs.normalize_kernel(k, "sum", False), k / 4, rtol=1e-15)
    np.testing.assert_allclose(specs.normalize_kernel(k, "l1", False), k / 10, rtol=1e-15)
    np.testing.assert_allclose(specs.normalize_kernel(k, "energy", False), k / np.sqrt(30),
                               rtol=1e-15)
    np.testing.assert_allclose(specs.normalize_kernel(k, "peak", False), k / 4, rtol=1e-15)


def test_normalize_peak_uses_absolute_value():
    k = np.array([1.0, -5.0, 2.0])
    np.testing.assert_allclose(specs.normalize_kernel(k, "peak", False), k / 5, rtol=1e-15)


def test_normalize_per_channel_uses_one_common_factor():
    """Per-channel kernels share the largest factor, keeping the channels' balance."""
    k = np.stack([np.full((2, 2), 0.5), np.full((2, 2), 1.0)])  # sums 2 and 4
    out = specs.normalize_kernel(k, "sum", True)
    np.testing.assert_allclose(out, k / 4, rtol=1e-15)
    k = np.array([[3.0, 4.0], [0.0, 1.0]])  # audio (C, M): energies 5 and 1
    np.testing.assert_allclose(specs.normalize_kernel(k, "energy", True), k / 5, rtol=1e-15)
    np.testing.assert_allclose(specs.normalize_kernel(k, "l1", True), k / 7, rtol=1e-15)
    np.testing.assert_allclose(specs.normalize_kernel(k, "peak", True), k / 4, rtol=1e-15)


def test_normalize_sum_of_zero_sum_kernel_is_an_error_suggesting_another_mode():
    lap = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    with pytest.raises(PwfilterError) as info:
        specs.normalize_kernel(lap, "sum", False)
    assert re.search(r"l1|energy|peak", str(info.value))
    # the other modes work on it
    np.testing.assert_allclose(specs.normalize_kernel(lap, "l1", False), lap / 8, rtol=1e-15)


def test_normalize_zero_kernel_and_unknown_mode_are_errors():
    with pytest.raises(PwfilterError):
        specs.normalize_kernel(np.zeros((3, 3)), "peak", False)
    with pytest.raises(PwfilterError):
        specs.normalize_kernel(np.ones((3, 3)), "max", False)


# ----------------------------------------------------------------- load_matrix


def test_load_matrix_inline():
    m = specs.load_matrix("0 1; 1 0", kind="audio", channels=2)
    np.testing.assert_array_equal(m.matrix, [[0, 1], [1, 0]])
    assert m.bias is None
    m = specs.load_matrix("0.299 0.587 0.114", kind="image", channels=3)
    np.testing.assert_array_equal(m.matrix, [[0.299, 0.587, 0.114]])


def test_load_matrix_files(tmp_path):
    (tmp_path / "m.txt").write_text("# warm\n1.1, 0, 0\n0 1 0\n0,0,0.9\n")
    m = specs.load_matrix(str(tmp_path / "m.txt"), kind="image", channels=3)
    np.testing.assert_array_equal(m.matrix, [[1.1, 0, 0], [0, 1, 0], [0, 0, 0.9]])
    np.save(tmp_path / "m.npy", np.array([[0.5, 0.5]]))
    m = specs.load_matrix(str(tmp_path / "m.npy"), kind="audio", channels=2)
    np.testing.assert_array_equal(m.matrix, [[0.5, 0.5]])


def test_load_matrix_per_group_blocks():
    m = specs.load_matrix("1 0; 0 1 | 0 1; 1 0", kind="audio", channels=4)
    np.testing.assert_array_equal(m.matrix, [[[1, 0], [0, 1]], [[0, 1], [1, 0]]])


@pytest.mark.parametrize("spec", ["1 2; 3", "1 x; 0 1", "1 2 | 3 4 5", "nonsense"])
def test_load_matrix_errors(spec):
    with pytest.raises(PwfilterError):
        specs.load_matrix(spec, kind="audio", channels=2)


def test_load_matrix_npy_nan_is_an_error(tmp_path):
    np.save(tmp_path / "m.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(PwfilterError):
        specs.load_matrix(str(tmp_path / "m.npy"), kind="audio", channels=2)


def test_image_presets():
    gray = specs.load_matrix("gray", kind="image", channels=3)
    np.testing.assert_array_equal(gray.matrix, [[0.299, 0.587, 0.114]])
    sepia = specs.load_matrix("sepia", kind="image", channels=3)
    np.testing.assert_array_equal(sepia.matrix, [[0.393, 0.769, 0.189],
                                                 [0.349, 0.686, 0.168],
                                                 [0.272, 0.534, 0.131]])
    bgr = specs.load_matrix("bgr", kind="image", channels=3)
    np.testing.assert_array_equal(bgr.matrix, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    inv = specs.load_matrix("invert", kind="image", channels=3)
    np.testing.assert_array_equal(inv.matrix, -np.eye(3))
    np.testing.assert_array_equal(inv.bias, [1, 1, 1])


def test_audio_presets():
    mono = specs.load_matrix("mono", kind="audio", channels=4)
    np.testing.assert_allclose(mono.matrix, [[0.25, 0.25, 0.25, 0.25]], rtol=1e-15)
    stereo = specs.load_matrix("stereo", kind="audio", channels=1)
    np.testing.assert_array_equal(stereo.matrix, [[1.0], [1.0]])
    swap = specs.load_matrix("swap", kind="audio", channels=2)
    np.testing.assert_array_equal(swap.matrix, [[0, 1], [1, 0]])
    ms = specs.load_matrix("mid-side", kind="audio", channels=2)
    np.testing.assert_array_equal(ms.matrix, [[0.5, 0.5], [0.5, -0.5]])
    sm = specs.load_matrix("side-mid", kind="audio", channels=2)
    np.testing.assert_array_equal(sm.matrix, [[1, 1], [1, -1]])
    np.testing.assert_array_equal(sm.matrix @ ms.matrix, np.eye(2))


def test_presets_belong_to_their_kind():
    with pytest.raises(PwfilterError):
        specs.load_matrix("gray", kind="audio", channels=3)
    with pytest.raises(PwfilterError):
        specs.load_matrix("mid-side", kind="image", channels=3)


def test_parse_bias():
    np.testing.assert_array_equal(specs.parse_bias("0.5", 3), [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(specs.parse_bias("1 2 3", 3), [1, 2, 3])
    with pytest.raises(PwfilterError):
        specs.parse_bias("1 2", 3)
    with pytest.raises(PwfilterError):
        specs.parse_bias("nan", 3)


@pytest.mark.parametrize("spec, message", [
    ("lowpass:-5", "lowpass:-5: the cutoff must lie strictly between 0 and 24000 Hz (half "
                   "the rate 48000 Hz)"),
    ("highpass:24000", "highpass:24000: the cutoff must lie strictly between 0 and 24000 Hz "
                       "(half the rate 48000 Hz)"),
    ("bandpass:0:100", "bandpass:0:100: both edges must lie strictly between 0 and 24000 Hz "
                       "(half the rate 48000 Hz)"),
    ("bandpass:500:100", "bandpass:500:100: the low edge 500 Hz must be below the high edge "
                         "100 Hz"),
])
def test_fir_frequency_errors_say_what_is_wrong(spec, message):
    with pytest.raises(PwfilterError) as info:
        specs.named_kernel(spec, 1, 48000)
    assert str(info.value) == message
