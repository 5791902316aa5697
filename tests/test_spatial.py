"""Sliding-sum convolution (:mod:`pwfilter.spatial`) against independent references.

``spatial`` evaluates the methods ``direct`` and ``separable`` with OpenCV
(``cv2.filter2D`` / ``cv2.sepFilter2D``), with its own border handling, row
strips in threads, kernels cut in bands and signals laid out as rows; SciPy's
ndimage is the fallback. Every expected value here comes from NumPy/SciPy
(``numpy.pad`` then a valid ``scipy.signal`` convolution, ``scipy.ndimage``)
or hand arithmetic, never from pwfilter.

Which backend runs is decided by each test, not by the environment: the
fixtures replace ``spatial.opencv`` with the real, checked ``cv2`` module
(wrapped in a spy that records its calls, so a test can also assert that
OpenCV computed the result rather than a silent fallback) or with ``None``
(the ndimage fallback). So running this file with ``PWFILTER_OPENCV=0`` tests
exactly the same things, and still passes: the OpenCV tests are skipped only
when ``cv2`` cannot be imported or fails pwfilter's own hand-worked check.
The switch itself (``PWFILTER_OPENCV=0``, a missing or wrong ``cv2``) is
tested on its own, in this process and in real subprocesses whose
environment the tests build themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import zlib
from pathlib import Path
from unittest import mock

import imagecodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage, signal

from pwfilter import engine, spatial

ROOT = Path(__file__).resolve().parents[1]

BOUNDARIES = ("reflect", "mirror", "nearest", "wrap", "zero")
MODES = ("same", "full", "valid")
METHODS = ("direct", "separable")
# pwfilter boundary -> numpy.pad mode / scipy.ndimage mode (module docstring of spatial)
NUMPY_PAD = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
             "zero": "constant"}
NDIMAGE_MODE = {"reflect": "reflect", "mirror": "mirror", "nearest": "nearest", "wrap": "wrap",
                "zero": "constant"}


def rng(*key) -> np.random.Generator:
    """A generator seeded by the test case's name (reproducible, different per case)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ----------------------------------------------------------------- references


def pad_widths(ksize, mode: str) -> list[tuple[int, int]]:
    """pwfilter's extension per axis: full M-1 each side, same M//2 before and (M-1)//2 after."""
    if mode == "full":
        return [(m - 1, m - 1) for m in ksize]
    if mode == "same":
        return [(m // 2, (m - 1) // 2) for m in ksize]
    return [(0, 0) for _ in ksize]


def extend(x: np.ndarray, ksize, mode: str, boundary: str) -> np.ndarray:
    """``x`` (channels last) extended by ``numpy.pad`` as the mode and boundary say."""
    return np.pad(x, pad_widths(ksize, mode) + [(0, 0)], mode=NUMPY_PAD[boundary])


def reference(x, k, mode: str, boundary: str, *, correlate: bool = False) -> np.ndarray:
    """float64: ``numpy.pad`` extension, then a valid direct-sum convolution (or correlation)
    by ``scipy.signal`` on each channel; ``k`` shared or one per channel (leading axis)."""
    x = np.asarray(x, np.float64)
    k = np.asarray(k, np.float64)
    nd = x.ndim - 1
    xp = extend(x, k.shape[-nd:], mode, boundary)
    if nd == 2:
        f = signal.correlate2d if correlate else signal.convolve2d
    else:
        f = signal.correlate if correlate else signal.convolve
    cols = []
    for c in range(x.shape[-1]):
        kc = k[c] if k.ndim > nd else k
        cols.append(f(xp[..., c], kc, mode="valid"))
    return np.stack(cols, axis=-1)


def reference_separable(x, col, row, mode: str, boundary: str) -> np.ndarray:
    """float64 convolution by ``outer(col, row)``: extension, then a valid column pass and a
    valid row pass by ``scipy.signal.convolve2d`` (the dense kernel is never built)."""
    x = np.asarray(x, np.float64)
    xp = extend(x, (len(col), len(row)), mode, boundary)
    cols = []
    for c in range(x.shape[-1]):
        t = signal.convolve2d(xp[..., c], np.asarray(col, np.float64)[:, None], mode="valid")
        cols.append(signal.convolve2d(t, np.asarray(row, np.float64)[None, :], mode="valid"))
    return np.stack(cols, axis=-1)


def signal_reference(x, k, mode: str, boundary: str) -> np.ndarray:
    """Signals: ``scipy.signal.convolve(mode=...)`` per channel for the zero boundary (its
    ``same`` is pwfilter's, even kernels included), ``numpy.pad`` then ``valid`` otherwise."""
    if boundary != "zero":
        return reference(x, k, mode, boundary)
    x = np.asarray(x, np.float64)
    k = np.asarray(k, np.float64)
    cols = [signal.convolve(x[:, c], k[c] if k.ndim == 2 else k, mode=mode, method="direct")
            for c in range(x.shape[1])]
    return np.stack(cols, axis=-1)


def assert_close(y, ref, dtype, what=""):
    """float64: within 1e-10 absolute; float32: within 1e-5 of the reference's scale."""
    assert y.shape == ref.shape, (what, y.shape, ref.shape)
    assert y.dtype == np.dtype(dtype), (what, y.dtype)
    assert np.all(np.isfinite(y)), what
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10, err_msg=what)
    else:
        scale = max(float(np.abs(ref).max()), 1e-30)
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * scale, err_msg=what)


def quantize(y, top: int) -> np.ndarray:
    """What an image writer stores: ``clip(rint(y * top), 0, top)``."""
    return np.clip(np.rint(y * top), 0, top).astype(np.int64)


def gaussian(sigma: float) -> np.ndarray:
    """A sampled Gaussian truncated at 4 sigma, summing to 1 (a test kernel)."""
    radius = int(4 * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


# ----------------------------------------------------------------- backends


class CvSpy:
    """The cv2 module, recording the kernels it is given (so a test knows OpenCV ran, and
    with how many taps per ``filter2D`` call)."""

    def __init__(self, cv2):
        self._cv2 = cv2
        self.filter2d_taps: list[int] = []
        self.sep_calls = 0

    def __getattr__(self, name):
        return getattr(self._cv2, name)

    def filter2D(self, src, ddepth, kernel, *args, **kwargs):  # noqa: N802 - cv2's name
        self.filter2d_taps.append(int(np.asarray(kernel).size))
        return self._cv2.filter2D(src, ddepth, kernel, *args, **kwargs)

    def sepFilter2D(self, *args, **kwargs):  # noqa: N802 - cv2's name
        self.sep_calls += 1
        return self._cv2.sepFilter2D(*args, **kwargs)

    @property
    def calls(self) -> int:
        return len(self.filter2d_taps) + self.sep_calls


_REAL_OPENCV = spatial.opencv  # the cached loader, before any test replaces it


@pytest.fixture(scope="module")
def cv2_checked():
    """The real cv2 module, if it imports and passes pwfilter's check (else skip)."""
    try:
        import cv2
    except Exception as exc:  # noqa: BLE001 - pwfilter treats any failure as "no OpenCV"
        pytest.skip(f"cv2 cannot be imported ({type(exc).__name__}: {exc})")
    if not spatial._works(cv2):
        pytest.skip("cv2 fails pwfilter's hand-worked check: pwfilter would not use it")
    return cv2


@pytest.fixture
def opencv(cv2_checked, monkeypatch) -> CvSpy:
    """Force the OpenCV backend (whatever PWFILTER_OPENCV says); returns the spy."""
    spy = CvSpy(cv2_checked)
    monkeypatch.setattr(spatial, "opencv", lambda: spy)
    return spy


class Backend:
    """The backend a test runs on; ``spy`` records OpenCV's calls (None for ndimage)."""

    def __init__(self, name: str, spy: CvSpy | None):
        self.name, self.spy = name, spy

    def assert_used(self, taps: int = 2):
        """With OpenCV forced, the result came from OpenCV calls (no silent fallback)."""
        if self.spy is not None and taps > 1:
            assert self.spy.calls > 0, "OpenCV was never called"


@pytest.fixture(params=["opencv", "ndimage"])
def backend(request, monkeypatch) -> Backend:
    """Each test twice: on OpenCV (forced, spied) and on the ndimage fallback (forced)."""
    if request.param == "opencv":
        spy = CvSpy(request.getfixturevalue("cv2_checked"))
        monkeypatch.setattr(spatial, "opencv", lambda: spy)
        return Backend("opencv", spy)
    monkeypatch.setattr(spatial, "opencv", lambda: None)
    return Backend("ndimage", None)


# ----------------------------------------------------------------- the references themselves


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shape,ksize", [((6, 7, 2), (3, 5)), ((4, 3, 2), (9, 7)),
                                          ((1, 1, 1), (5, 3)), ((2, 9, 1), (7, 1))])
def test_reference_is_ndimage_for_odd_kernels(shape, ksize, boundary):
    """The numpy.pad reference used below equals scipy.ndimage.convolve/correlate for odd
    kernels in mode same (the documented equivalence), also when the kernel is larger than
    the image: it validates the boundary mapping used for every other reference."""
    r = rng("ref", shape, ksize, boundary)
    x = r.standard_normal(shape)
    k = r.standard_normal(ksize)
    for correlate, f in ((False, ndimage.convolve), (True, ndimage.correlate)):
        want = np.stack([f(x[..., c], k, mode=NDIMAGE_MODE[boundary], cval=0.0)
                         for c in range(shape[-1])], axis=-1)
        got = reference(x, k, "same", boundary, correlate=correlate)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["direct", "auto"])
def test_even_kernel_same_mode_by_hand(backend, method):
    """Even kernels in mode same, worked by hand: x = [1, 2, 3, 4], k = [1, 10] (M = 2:
    one sample before, none after). reflect extends to [1 | 1 2 3 4]; convolution gives
    y[i] = xp[i+1] + 10·xp[i] = [11, 12, 23, 34], correlation (kernel unflipped)
    y[i] = xp[i] + 10·xp[i+1] = [11, 21, 32, 43]. In 2-D, the 2x2 kernel
    [[1, 10], [100, 1000]] on the 1x4 image (row -1 reflected = row 0) sums both kernel
    rows on the same image row: 101 · [11, 12, 23, 34]."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = engine.convolve(x, np.array([1.0, 10.0]), mode="same", boundary="reflect",
                        method=method)
    np.testing.assert_allclose(y[:, 0], [11, 12, 23, 34], rtol=1e-12)
    np.testing.assert_allclose(reference(x, np.array([1.0, 10.0]), "same", "reflect")[:, 0],
                               [11, 12, 23, 34], rtol=1e-12)
    yc = engine.convolve(x, np.array([1.0, 10.0]), mode="same", boundary="reflect",
                         method=method, correlate=True)
    np.testing.assert_allclose(yc[:, 0], [11, 21, 32, 43], rtol=1e-12)
    img = x[None, :, :]  # 1 x 4 image
    k2 = np.array([[1.0, 10.0], [100.0, 1000.0]])
    for m in ("direct", "separable"):
        y2 = engine.convolve(img, k2, mode="same", boundary="reflect", method=m)
        np.testing.assert_allclose(y2[0, :, 0], np.array([11, 12, 23, 34]) * 101, rtol=1e-12)
    backend.assert_used()


# ----------------------------------------------------------------- 1. OpenCV vs references


IMAGE_KERNELS = {"3x3": ((3, 3), 1), "4x6": ((4, 6), 3), "1x5": ((1, 5), 2),
                 "5x1": ((5, 1), 4), "8x8": ((8, 8), 6), "rank1-5x4": ((5, 4), 3)}


def make_kernel(r, name, shape):
    if name.startswith("rank1"):
        return np.outer(r.standard_normal(shape[0]), r.standard_normal(shape[1]))
    return r.standard_normal(shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kname", IMAGE_KERNELS)
def test_opencv_matches_reference(opencv, kname, boundary, mode, method, dtype):
    """OpenCV direct/separable vs numpy.pad + scipy.signal, for every boundary and mode,
    odd and even kernel sizes (asymmetric random kernels, so a flip or a one-sample shift
    of the anchor shows), 1 to 6 channels. Separable full-rank kernels run as min(kh, kw)
    SVD terms."""
    ksize, channels = IMAGE_KERNELS[kname]
    r = rng(kname, boundary, mode)
    x = r.standard_normal((13, 17, channels)).astype(dtype)
    k = make_kernel(r, kname, ksize).astype(dtype)
    x0 = x.copy()
    y = engine.convolve(x, k, mode=mode, boundary=boundary, method=method)
    assert_close(y, reference(x, k, mode, boundary), dtype)
    assert opencv.calls > 0
    np.testing.assert_array_equal(x, x0)  # the input is left alone


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per-channel"])
@pytest.mark.parametrize("channels", range(1, 7))
def test_opencv_channel_counts_and_per_channel_kernels(opencv, channels, per_channel, method,
                                                      dtype):
    """1 to 6 channels with a shared (4, 3) kernel or one (4, 3) kernel per channel
    (C, kh, kw); every boundary and mode. Per-channel kernels must act on their own
    channel only (the reference applies k[c] to channel c)."""
    r = rng("channels", channels, per_channel)
    x = r.standard_normal((9, 11, channels)).astype(dtype)
    k = r.standard_normal(((channels,) if per_channel else ()) + (4, 3)).astype(dtype)
    for boundary in BOUNDARIES:
        for mode in MODES:
            y = engine.convolve(x, k, mode=mode, boundary=boundary, method=method)
            assert_close(y, reference(x, k, mode, boundary), dtype, f"{boundary}/{mode}")
    assert opencv.calls > 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_opencv_correlate(opencv, boundary, mode, method):
    """``correlate=True``: the kernel is applied unflipped (scipy.signal.correlate2d on
    the same extension), for even and odd, shared and per-channel kernels."""
    r = rng("correlate", boundary, mode)
    cases = [(np.float64, (4, 6), 2), (np.float32, (3, 3, 4), 3), (np.float64, (3, 5, 2), 3)]
    for dtype, kshape, channels in cases:
        x = r.standard_normal((10, 12, channels)).astype(dtype)
        k = r.standard_normal(kshape).astype(dtype)
        want = reference(x, k, mode, boundary, correlate=True)
        # the case distinguishes correlation from convolution
        assert not np.allclose(want, reference(x, k, mode, boundary), atol=1e-3)
        y = engine.convolve(x, k, mode=mode, boundary=boundary, method=method, correlate=True)
        assert_close(y, want, dtype, f"{kshape} {dtype.__name__}")
    assert opencv.calls > 0


# ----------------------------------------------------------------- 2. integer samples


INT_KERNELS = {
    "blur5x5": lambda r: (lambda k: k / k.sum())(r.random((5, 5)) + 0.2),
    "sharpen": lambda r: np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float64),
    "box4x4": lambda r: np.full((4, 4), 1 / 16),
    "per-channel-3x2": lambda r: r.random((3, 3, 2)) / 3,
}


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kname", INT_KERNELS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bits", [8, 16])
def test_integer_samples_as_the_commands_decode_them(backend, bits, method, kname, boundary):
    """uint8 with scale 1/255 and uint16 with scale 1/65535 (as decoded images are passed):
    the float32 result is within 1e-5 of the float64 reference on the normalized input,
    and once quantized as an image writer does, within 1 LSB (8-bit) / 2 LSB (16-bit).
    The sharpen kernel overshoots [0, 1], so clipping is exercised too."""
    top = 255 if bits == 8 else 65535
    r = rng("int", bits, kname, boundary)
    x = r.integers(0, top + 1, (19, 23, 3)).astype(np.uint8 if bits == 8 else np.uint16)
    x[0, 0], x[-1, -1] = 0, top
    k = INT_KERNELS[kname](r)
    lsb = 1 if bits == 8 else 2
    for mode in MODES:
        y = engine.convolve(x, k, mode=mode, boundary=boundary, method=method, scale=1 / top)
        want = reference(x / top, k, mode, boundary)
        assert_close(y, want, np.float32, mode)
        diff = np.abs(quantize(y, top) - quantize(want, top)).max()
        assert diff <= lsb, (mode, diff)
    backend.assert_used()


# ----------------------------------------------------------------- 3. tiny images


SMALL_CASES = {
    "9x7-on-4x3": ((4, 3, 2), (9, 7)),
    "13x13-on-4x3": ((4, 3, 2), (13, 13)),       # 169 taps: in bands on OpenCV
    "3x5-on-1x1": ((1, 1, 2), (3, 5)),
    "8x8-on-1x1": ((1, 1, 3), (8, 8)),
    "6x1-on-1x4": ((1, 4, 1), (6, 1)),
    "per-channel-2x7x9-on-2x3": ((2, 3, 2), (2, 7, 9)),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("case", SMALL_CASES)
def test_kernel_larger_than_image(backend, case, boundary, method):
    """Kernels larger than the image and 1x1-pixel images: the extension runs past the
    image several times over (numpy.pad repeats the boundary rule as far as needed), in
    modes same and full, float64 and float32."""
    shape, kshape = SMALL_CASES[case]
    r = rng("small", case, boundary)
    for dtype in (np.float64, np.float32):
        x = r.standard_normal(shape).astype(dtype)
        k = r.standard_normal(kshape).astype(dtype)
        for mode in ("same", "full"):
            y = engine.convolve(x, k, mode=mode, boundary=boundary, method=method)
            assert_close(y, reference(x, k, mode, boundary), dtype, f"{mode} {dtype.__name__}")
    backend.assert_used()


# ----------------------------------------------------------------- 4. large images (strips)


LARGE_IMAGES = {"400x500x3": (400, 500, 3), "1100x1000x1": (1100, 1000, 1)}
_large_refs: dict = {}


def large_case(image: str, kname: str, boundary: str, mode: str = "same"):
    """Input, kernel, method and float64 reference of one large-image case (references
    cached: both backends compare with the same one)."""
    shape = LARGE_IMAGES[image]
    r = rng("large", image)
    x = r.random(shape).astype(np.float32)
    if kname == "7x5":
        k = rng("large-k").standard_normal((7, 5))
        method = "direct"
    else:  # a separable Gaussian, kept as its factors
        g = gaussian(1.5)
        k = engine.Separable(g, g * np.linspace(0.5, 1.5, len(g)))  # not symmetric: flips show
        method = "separable"
    key = (image, kname, boundary, mode)
    if key not in _large_refs:
        _large_refs[key] = (reference(x, k, mode, boundary) if kname == "7x5"
                            else reference_separable(x, k.col, k.row, mode, boundary))
    return x, k, method, _large_refs[key]


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kname", ["7x5", "gaussian"])
@pytest.mark.parametrize("image", LARGE_IMAGES)
def test_large_images(backend, image, kname, boundary):
    """Images large enough for OpenCV's threading decisions: 400x500 RGB (2^17 <= pixels <
    2^20: pwfilter splits the rows into strips filtered in threads of its own) and
    1100x1000 (above 2^20: one call, OpenCV threads itself). Mode same, a 7x5 kernel
    (direct) and a separable Gaussian (separable), 3 workers so the strips are uneven."""
    x, k, method, want = large_case(image, kname, boundary)
    y = engine.convolve(x, k, mode="same", boundary=boundary, method=method, workers=3)
    assert_close(y, want, np.float32)
    backend.assert_used()


@pytest.mark.parametrize("mode", ["full", "valid"])
@pytest.mark.parametrize("boundary", ["reflect", "wrap", "zero"])
@pytest.mark.parametrize("kname", ["7x5", "gaussian"])
def test_large_image_full_and_valid(backend, kname, boundary, mode):
    """The strips of an input extended first (full mode, wrap) or not at all (valid)."""
    x, k, method, want = large_case("400x500x3", kname, boundary, mode)
    y = engine.convolve(x, k, mode=mode, boundary=boundary, method=method, workers=3)
    assert_close(y, want, np.float32)
    backend.assert_used()


@pytest.mark.parametrize("kname", ["7x5", "gaussian"])
def test_strips_are_used_between_the_thresholds(opencv, monkeypatch, kname):
    """The large-image tests above do exercise the threaded strips: with 3 workers the
    400x500 image is filtered in 3 strips, the 1100x1000 one (OpenCV's own threading
    size) in a single call. Guards the other tests against a silent change of the sizes."""
    assert spatial.SPLIT_PIXELS <= 400 * 500 < spatial.OPENCV_PARALLEL_PIXELS <= 1100 * 1000
    made = []
    real = spatial._strips

    def recording(*args):
        out = real(*args)
        made.append(len(out))
        return out

    monkeypatch.setattr(spatial, "_strips", recording)
    for image, want in (("400x500x3", 3), ("1100x1000x1", 1)):
        made.clear()
        x, k, method, _ = large_case(image, kname, "reflect")
        engine.convolve(x, k, mode="same", boundary="reflect", method=method, workers=3)
        assert made and max(made) == want, (image, made)


@pytest.mark.parametrize("boundary", ["reflect", "wrap"])
@pytest.mark.parametrize("method", METHODS)
def test_large_uint8_image_in_strips(backend, method, boundary):
    """A decoded 8-bit 400x500 RGB image (scale 1/255) through the threaded strips: the
    separable path hands the uint8 rows to OpenCV unconverted, the direct one converts
    first; both within 1 LSB of the quantized reference."""
    x = rng("large-u8").integers(0, 256, (400, 500, 3)).astype(np.uint8)
    g = gaussian(1.2)
    k = np.outer(g, g[::-1] * np.linspace(0.8, 1.2, len(g)))
    y = engine.convolve(x, k, mode="same", boundary=boundary, method=method, workers=3,
                        scale=1 / 255)
    want = reference(x / 255.0, k, "same", boundary)
    assert_close(y, want, np.float32)
    assert np.abs(quantize(y, 255) - quantize(want, 255)).max() <= 1
    backend.assert_used()


@pytest.mark.parametrize("layout", ["image-direct", "image-separable", "signal-direct",
                                    "image-per-channel"])
@pytest.mark.parametrize("channels", [128, 129, 512, 513])
def test_many_channels(backend, channels, layout):
    """Inputs with many channels (a .npy stack; multichannel audio). OpenCV 5 takes at
    most 128 channels in one array (4.x 512): pwfilter sends ``spatial.MAX_CHANNELS``
    at a time, so every count works, through OpenCV where it is present; per-channel
    kernels are filtered one channel at a time."""
    r = rng("many", channels, layout)
    if layout.startswith("signal"):
        x = r.standard_normal((300, channels))
        k = r.standard_normal(5)
    else:
        x = r.standard_normal((5, 6, channels))
        k = r.standard_normal(((channels,) if layout == "image-per-channel" else ()) + (3, 2))
    method = "separable" if layout == "image-separable" else "direct"
    y = engine.convolve(x, k, mode="same", boundary="reflect", method=method)
    assert_close(y, reference(x, k, "same", "reflect"), np.float64)
    if backend.spy is not None:
        groups = -(-channels // spatial.MAX_CHANNELS) if layout != "image-per-channel" \
            else channels
        assert backend.spy.calls >= groups  # OpenCV did the work, in groups


# ----------------------------------------------------------------- 5. kernels in bands


BIG_KERNELS = {"13x13": (13, 13), "3x60": (3, 60), "per-channel-2x13x13": (2, 13, 13),
               "1x150": (1, 150), "2x140": (2, 140)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kname", BIG_KERNELS)
def test_kernels_over_129_taps_direct(backend, kname, boundary, mode):
    """Kernels of more than 129 taps (49 in float64) with method direct: OpenCV would
    switch to its DFT, so pwfilter applies them in bands of rows/columns and sums. Every
    boundary and mode, float32 and float64, against references; with OpenCV, no
    filter2D call may get more taps than ``band_limit`` and there must be several."""
    kshape = BIG_KERNELS[kname]
    r = rng("big", kname, boundary, mode)
    for dtype in (np.float32, np.float64):
        x = r.standard_normal((15, 152, 2)).astype(dtype)
        k = r.standard_normal(kshape).astype(dtype)
        if backend.spy is not None:
            backend.spy.filter2d_taps.clear()
        x0 = x.copy()
        y = engine.convolve(x, k, mode=mode, boundary=boundary, method="direct")
        assert_close(y, reference(x, k, mode, boundary), dtype, dtype.__name__)
        np.testing.assert_array_equal(x, x0)  # bands add into their own buffer
        if backend.spy is not None:
            taps = backend.spy.filter2d_taps
            assert len(taps) > 1 and max(taps) <= spatial.band_limit(dtype), taps
            assert sum(taps) == np.prod(kshape), taps  # the bands tile the kernel(s)


@pytest.mark.parametrize("dtype,kshape", [
    pytest.param(dt, ks, id=f"{dt.__name__}-{'x'.join(map(str, ks))}")
    for dt, ks in [(np.float32, (3, 43)), (np.float32, (10, 13)), (np.float32, (13, 13)),
                   (np.float64, (7, 7)), (np.float64, (5, 10)), (np.float64, (13, 13)),
                   (np.float32, (200,)), (np.float64, (50,))]])
@pytest.mark.parametrize("boundary", ["reflect", "wrap", "zero"])
def test_direct_is_sliding_sums_exact_on_integers(backend, dtype, kshape, boundary):
    """``direct`` means sliding sums: on small integer data and kernels every partial sum
    is an integer below 2^24, so the result must equal the reference exactly. OpenCV's
    own DFT (which filter2D switches to at 130 taps in float32, 50 in float64, and which
    leaves ~1e-14 errors) would fail this; kernels of exactly the limit, one tap over it
    and far over it (bands, signal pieces) are checked."""
    r = rng("exact", dtype, kshape, boundary)
    x = r.integers(0, 4, (30, 3) if len(kshape) == 1 else (17, 45, 2)).astype(dtype)
    k = r.integers(-2, 3, kshape).astype(dtype)
    for mode in MODES:
        if mode == "valid" and len(kshape) == 1 and x.shape[0] < kshape[0]:
            continue
        y = engine.convolve(x, k, mode=mode, boundary=boundary, method="direct")
        np.testing.assert_array_equal(y, reference(x, k, mode, boundary), err_msg=mode)
    backend.assert_used()


# ----------------------------------------------------------------- 6. signals


def _signal_cases():
    cases = []
    for n in (3, 777, 30000):
        for m in (1, 2, 7, 200):
            combos = ([("same", b) for b in BOUNDARIES] + [("full", "zero"), ("full", "mirror"),
                                                           ("valid", "zero")])
            for mode, boundary in combos:
                if mode == "valid" and n < m:
                    continue
                cases.append((n, m, mode, boundary))
    # long enough that the rows of 8192 samples are filtered in threaded strips (2^17 samples)
    cases += [(140000, 7, "same", "reflect"), (140000, 200, "full", "zero"),
              (140000, 200, "same", "wrap")]
    return cases


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per-channel"])
@pytest.mark.parametrize("n,m,mode,boundary", _signal_cases())
def test_signals_direct(backend, n, m, mode, boundary, per_channel):
    """(n, C) float64 signals, method direct, vs scipy.signal.convolve per channel (zero
    boundary) or numpy.pad + valid convolution: kernels of 1, 2, 7 and 200 taps (200 is
    cut in pieces), signals from 3 samples (shorter than the kernel) to 140000 (many rows
    of 8192 samples, whose row ends are recomputed across rows)."""
    r = rng("signal", n, m, mode, boundary, per_channel)
    channels = 3 if per_channel else 2
    x = r.standard_normal((n, channels))
    k = r.standard_normal((channels, m) if per_channel else (m,))
    x0 = x.copy()
    y = engine.convolve(x, k, mode=mode, boundary=boundary, method="direct")
    assert_close(y, signal_reference(x, k, mode, boundary), np.float64)
    np.testing.assert_array_equal(x, x0)
    backend.assert_used(m)


@pytest.mark.parametrize("mode,boundary", [("full", "zero"), ("same", "reflect"),
                                           ("valid", "zero"), ("same", "mirror")])
@pytest.mark.parametrize("m", [130, 200])
def test_signals_float32_in_pieces(backend, m, mode, boundary):
    """float32 signals with kernels just over 129 taps (two pieces on OpenCV), over
    several rows of 8192 samples."""
    r = rng("signal32", m, mode, boundary)
    x = r.standard_normal((20000, 2)).astype(np.float32)
    k = r.standard_normal(m).astype(np.float32)
    y = engine.convolve(x, k, mode=mode, boundary=boundary, method="direct")
    assert_close(y, signal_reference(x, k, mode, boundary), np.float32)
    if backend.spy is not None:
        assert max(backend.spy.filter2d_taps) <= spatial.band_limit(np.float32)


# ----------------------------------------------------------------- 7. OpenCV vs ndimage


@st.composite
def spatial_problems(draw):
    """Random small problems for the spatial functions themselves."""
    nd = draw(st.sampled_from([1, 2]))
    channels = draw(st.integers(1, 4))
    if nd == 2:  # up to 81 taps: in bands in float64 (49)
        ksize = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    else:  # up to 60 taps: in pieces in float64
        ksize = (draw(st.integers(1, 60)),)
    mode = draw(st.sampled_from(MODES))
    boundary = draw(st.sampled_from(BOUNDARIES))
    if nd == 1 and draw(st.integers(0, 4)) == 0:  # sometimes several rows of 8192
        shape = (draw(st.integers(8000, 20000)),)
    elif mode == "valid":
        shape = tuple(draw(st.integers(m, m + 12)) for m in ksize)
    else:
        shape = tuple(draw(st.integers(1, 12 if nd == 2 else 40)) for _ in range(nd))
    per_channel = draw(st.booleans()) and channels > 1
    rank1 = nd == 2 and draw(st.booleans())
    source = draw(st.sampled_from(["float64", "float32", "uint8", "uint16"]))
    workers = draw(st.integers(1, 3))
    r = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if source.startswith("uint"):
        top = 255 if source == "uint8" else 65535
        x = r.integers(0, top + 1, shape + (channels,)).astype(source)
        scale = 1.0 / top
    else:
        x = r.standard_normal(shape + (channels,)).astype(source)
        scale = draw(st.sampled_from([1.0, 0.375]))  # engine's scale applies to floats too
    kshape = ((channels,) if per_channel else ()) + ksize
    if rank1:
        k = (r.standard_normal(kshape[:-1] + (1,)) * r.standard_normal(kshape[:-2] + (1,)
                                                                        + kshape[-1:]))
    else:
        k = r.standard_normal(kshape)
    return x, scale, k, mode, boundary, per_channel, rank1, workers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spatial_problems())
def test_opencv_agrees_with_the_ndimage_fallback(cv2_checked, problem):
    """``spatial.direct``/``spatial.separable`` on OpenCV equal the SciPy fallback
    ``_ndimage_direct``/``_ndimage_separable`` given the same (convolution) kernel and
    geometry, for random shapes, kernels, modes, boundaries, channel layouts, float and
    integer samples (scale applied on the way) and worker counts."""
    x, scale, k, mode, boundary, per_channel, rank1, workers = problem
    dtype = np.dtype(np.float64 if x.dtype == np.float64 else np.float32)
    k = k.astype(dtype)
    g = engine.geometry(x.shape, k.shape, mode, dtype.itemsize)
    xf = np.multiply(x, dtype.type(scale), dtype=dtype)
    eps = 1e-10 if dtype == np.float64 else 1e-5
    xmax = max(float(np.abs(xf).max()), 1e-300)
    spy = CvSpy(cv2_checked)

    def l1(a):  # largest per-kernel L1 norm
        a = np.abs(np.asarray(a, np.float64))
        return float(a.reshape(a.shape[0], -1).sum(axis=1).max() if per_channel else a.sum())

    with mock.patch.object(spatial, "opencv", lambda: spy):
        y = spatial.direct(x, k, g, boundary, scale, dtype, workers)
    want = spatial._ndimage_direct(xf, 1.0, k, g, boundary, workers)
    assert spy.calls > 0
    assert y.shape == want.shape == g.out_shape + (x.shape[-1],)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, rtol=0, atol=eps * xmax * l1(k))
    if g.ndim == 2:
        rank = 1 if rank1 else min(g.ksize)
        terms = engine.separable_factors(k, rank)
        with mock.patch.object(spatial, "opencv", lambda: spy):
            y = spatial.separable(x, terms, g, boundary, scale, dtype, workers)
        want = spatial._ndimage_separable(xf, 1.0, terms, g, boundary, workers)
        assert spy.sep_calls > 0
        assert y.shape == want.shape and y.dtype == dtype
        bound = sum(l1(c) * l1(r) for c, r in terms)
        np.testing.assert_allclose(y, want, rtol=0, atol=eps * xmax * bound)


# ----------------------------------------------------------------- 8. OpenCV missing or wrong


def test_opencv_loader_switch_missing_and_wrong(cv2_checked, monkeypatch):
    """``spatial.opencv()`` in this process: PWFILTER_OPENCV=0 gives None (backend
    "ndimage"); otherwise the checked module; None when ``import cv2`` fails, and None
    for a cv2 that imports but whose filter2D returns wrong numbers (``_works``)."""
    wrong = types.ModuleType("cv2")
    for i, name in enumerate(["BORDER_CONSTANT", "BORDER_REPLICATE", "BORDER_REFLECT",
                              "BORDER_WRAP", "BORDER_REFLECT_101", "CV_32F", "CV_64F"]):
        setattr(wrong, name, i)
    wrong.filter2D = lambda src, ddepth, kernel, **kw: np.asarray(src, np.float32) + 1
    wrong.sepFilter2D = lambda src, ddepth, kx, ky, **kw: np.asarray(src, np.float32) + 1
    assert spatial._works(cv2_checked)
    assert not spatial._works(wrong)
    try:
        monkeypatch.setenv("PWFILTER_OPENCV", "0")
        _REAL_OPENCV.cache_clear()
        assert _REAL_OPENCV() is None
        monkeypatch.setattr(spatial, "opencv", _REAL_OPENCV)
        assert spatial.backend() == "ndimage"
        monkeypatch.setenv("PWFILTER_OPENCV", "1")
        _REAL_OPENCV.cache_clear()
        assert _REAL_OPENCV() is cv2_checked
        assert spatial.backend() == "opencv"
        monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
        _REAL_OPENCV.cache_clear()
        assert _REAL_OPENCV() is None
        monkeypatch.setitem(sys.modules, "cv2", wrong)
        _REAL_OPENCV.cache_clear()
        assert _REAL_OPENCV() is None
    finally:
        _REAL_OPENCV.cache_clear()  # recomputed from the restored environment when next used


FAKE_MISSING = '''\
"""A cv2 that is not installed: importing it fails (and leaves a mark)."""
import os
with open(os.environ["FAKECV_MARK"], "a") as fh:
    fh.write("import\\n")
raise ImportError("fake cv2: OpenCV is not installed")
'''

FAKE_WRONG = '''\
"""A cv2 that imports but computes wrong sums (each call leaves a mark)."""
import os
import numpy as np

BORDER_CONSTANT, BORDER_REPLICATE, BORDER_REFLECT, BORDER_WRAP, BORDER_REFLECT_101 = 0, 1, 2, 3, 4
CV_32F, CV_64F = 5, 6


def _mark(what):
    with open(os.environ["FAKECV_MARK"], "a") as fh:
        fh.write(what + "\\n")


def filter2D(src, ddepth, kernel, dst=None, anchor=(-1, -1), delta=0, borderType=4):
    _mark("filter2D")
    return np.asarray(src, np.float32) + 1


def sepFilter2D(src, ddepth, kernelX, kernelY, dst=None, anchor=(-1, -1), delta=0,
                borderType=4):
    _mark("sepFilter2D")
    return np.asarray(src, np.float32) + 1


def copyMakeBorder(*args, **kwargs):
    _mark("copyMakeBorder")
    raise AssertionError("fake cv2 used for real work")


def getNumThreads():
    return 1


def setNumThreads(n):
    pass
'''


def launch(args, tmp_path: Path, *, fake: str | None = None, env: dict | None = None,
           module: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m pwfilter ARGS`` (or ``python -c ARGS[0] ARGS[1:]``) with an
    environment built here: PYTHONPATH is [fake cv2 dir], the repository, the caller's;
    PWFILTER_OPENCV is removed unless ``env`` sets it."""
    e = dict(os.environ)
    e.pop("PWFILTER_OPENCV", None)
    paths = [str(ROOT)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else [])
    if fake is not None:
        pkg = tmp_path / "fakecv" / "cv2"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(fake)
        paths.insert(0, str(tmp_path / "fakecv"))
    e["PYTHONPATH"] = os.pathsep.join(paths)
    e["FAKECV_MARK"] = str(tmp_path / "fakecv.log")
    e.update(env or {})
    cmd = [sys.executable, "-m", "pwfilter", *map(str, args)] if module else \
        [sys.executable, "-c", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=e,
                          cwd=tmp_path)


def marks(tmp_path: Path) -> list[str]:
    log = tmp_path / "fakecv.log"
    return log.read_text().split() if log.exists() else []


SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
GRAY = np.array([0.299, 0.587, 0.114])


def gaussian_blur(a, sigma):
    """scipy.ndimage.gaussian_filter (truncate 4, reflect) over the two image axes."""
    return ndimage.gaussian_filter(a, sigma=(sigma, sigma, 0), mode="reflect", truncate=4.0)


# command -> (arguments after IN.png, expected float64 image from the normalized input,
# whether it convolves, hence loads OpenCV)
COMMANDS = {
    "blur": ([], lambda a: gaussian_blur(a, 2.0), True),
    "convolve": (["1 2 1; 2 4 2; 1 2 1", "--normalize-kernel"],
                 lambda a: reference(a, np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,
                                     "same", "reflect"), True),
    "dsconv": (["--depthwise", "gaussian:1", "--pointwise", "gray"],
               lambda a: gaussian_blur(a, 1.0) @ GRAY, True),
    "remix": (["--matrix", "sepia"], lambda a: a @ SEPIA.T, False),
}


def check_png(path: Path, want: np.ndarray, what: str) -> None:
    """The written 8-bit PNG is the quantized reference within 1 LSB."""
    got = imagecodecs.png_decode(path.read_bytes()).astype(np.int64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    diff = np.abs(got - quantize(want, 255)).max()
    assert diff <= 1, (what, diff)


@pytest.fixture
def photo(tmp_path) -> tuple[Path, np.ndarray]:
    a = rng("photo").integers(0, 256, (23, 30, 3)).astype(np.uint8)
    path = tmp_path / "IN.png"
    path.write_bytes(imagecodecs.png_encode(a))
    return path, a


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_without_opencv(tmp_path, photo, command):
    """A fake cv2 package that raises ImportError comes first on PYTHONPATH: the commands
    still exit 0 and write the reference's pixels (SciPy's ndimage computes them); the
    mark shows pwfilter tried cv2 for the convolving commands."""
    path, a = photo
    extra, expected, convolves = COMMANDS[command]
    out = tmp_path / "OUT.png"
    proc = launch([command, path, *extra, "-o", out], tmp_path, fake=FAKE_MISSING)
    assert proc.returncode == 0, proc.stderr
    check_png(out, np.squeeze(expected(a / 255.0)), command)
    if convolves:
        assert marks(tmp_path) == ["import"], marks(tmp_path)


def test_blur_with_opencv_switched_off(tmp_path, photo):
    """PWFILTER_OPENCV=0 (OpenCV installed): blur still matches the reference."""
    path, a = photo
    out = tmp_path / "OUT.png"
    proc = launch(["blur", path, "-o", out], tmp_path, env={"PWFILTER_OPENCV": "0"})
    assert proc.returncode == 0, proc.stderr
    check_png(out, gaussian_blur(a / 255.0, 2.0), "blur")


@pytest.mark.parametrize("command", ["blur", "convolve"])
def test_wrong_opencv_is_detected_at_load(tmp_path, photo, command):
    """A cv2 that imports but whose filter2D returns wrong numbers: pwfilter's check
    (``spatial._works``) calls it, rejects it and falls back, so the output still matches
    the reference (the fake's +1 would show in every pixel otherwise)."""
    path, a = photo
    extra, expected, _ = COMMANDS[command]
    out = tmp_path / "OUT.png"
    proc = launch([command, path, *extra, "-o", out], tmp_path, fake=FAKE_WRONG)
    assert proc.returncode == 0, proc.stderr
    check_png(out, expected(a / 255.0), command)
    assert "filter2D" in marks(tmp_path)
    assert "copyMakeBorder" not in marks(tmp_path)


IMPORTS_SCRIPT = r'''
import json, sys
from pwfilter.cli import main
try:
    main(json.loads(sys.argv[1]))
    code = 0
except SystemExit as exc:
    code = exc.code or 0
loaded = {m: m in sys.modules for m in ("scipy.ndimage", "scipy.signal")}
from pwfilter import spatial
print(json.dumps({"code": code, "loaded": loaded, "backend": spatial.backend()}))
'''


@pytest.mark.parametrize("command", ["blur", "convolve-5x5", "convolve-31x31", "remix",
                                     "dsconv"])
def test_commands_with_opencv_do_not_import_scipy_ndimage_or_signal(cv2_checked, tmp_path,
                                                                    photo, command):
    """With OpenCV present (PWFILTER_OPENCV removed from the child's environment), the
    image commands neither import scipy.ndimage nor scipy.signal (their import time is
    what OpenCV saves), and still write the reference's pixels."""
    path, a = photo
    out = tmp_path / "OUT.png"
    if command.startswith("convolve"):
        size = int(command.split("-")[1].split("x")[0])
        k = rng("npy", size).random((size, size)) + 0.1
        k /= k.sum()
        np.save(tmp_path / "k.npy", k)
        argv = ["convolve", str(path), str(tmp_path / "k.npy")]
        expected = reference(a / 255.0, k, "same", "reflect")
    else:
        extra, fn, _ = COMMANDS[command]
        argv = [command, str(path), *extra]
        expected = np.squeeze(fn(a / 255.0))
    proc = launch([IMPORTS_SCRIPT, json.dumps(argv + ["-o", str(out)])], tmp_path,
                  module=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stderr
    assert report["backend"] == "opencv"
    assert report["loaded"] == {"scipy.ndimage": False, "scipy.signal": False}, report
    check_png(out, expected, command)
