"""pwfilter.fft: pocketfft loaded without scipy.fft's import, checked against numpy.fft."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pwfilter import fft


@pytest.fixture(params=["pocketfft", "scipy.fft"])
def backend(request, monkeypatch):
    """Run a test on the directly loaded module and on the scipy.fft fallback."""
    if request.param == "scipy.fft":
        monkeypatch.setattr(fft, "_pocketfft", lambda: None)
    else:
        assert fft._pocketfft() is not None, "SciPy's pocketfft module was not found"
    return request.param


SHAPES = [
    # input shape, s, axes
    ((64,), (64,), (0,)),
    ((50,), (81,), (-1,)),          # zero padding, odd size
    ((90,), (40,), (0,)),           # cropping
    ((7, 33, 3), (16, 40), (0, 1)),  # images: rows, columns, channels
    ((5, 12, 2), (12,), (1,)),      # a strided axis (channels interleaved)
    ((9, 6), (10, 9), (1, 0)),      # axes out of order: the last listed is the real one
]


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("shape,s,axes", SHAPES)
def test_rfftn_irfftn_fftn_match_numpy(backend, shape, s, axes, dtype, tol):
    rng = np.random.default_rng(len(shape) + sum(s))
    x = rng.standard_normal(shape).astype(dtype)
    ref = np.fft.rfftn(x.astype(np.float64), s, axes)
    got = fft.rfftn(x, s, axes, workers=-1)
    assert got.dtype == np.result_type(dtype, np.complex64)  # precision kept
    np.testing.assert_allclose(got, ref, atol=tol * np.abs(ref).max())

    back = fft.irfftn(got, s, axes, workers=2)
    ref_back = np.fft.irfftn(ref, s, axes)
    assert back.dtype == dtype
    np.testing.assert_allclose(back, ref_back, atol=tol * np.abs(ref_back).max())

    z = x + 1j * rng.standard_normal(shape)
    np.testing.assert_allclose(fft.fftn(z, s, axes), np.fft.fftn(z, s, axes),
                               atol=tol * np.abs(z).sum())


def test_one_axis_forms_and_inverse_cropping(backend):
    x = np.arange(12.0)
    np.testing.assert_allclose(fft.rfft(x, 16), np.fft.rfft(x, 16), atol=1e-12)
    np.testing.assert_allclose(fft.fft(x, 10), np.fft.fft(x, 10), atol=1e-12)
    spec = np.fft.rfft(x, 16)
    # A shorter inverse crops the half spectrum first, as numpy.fft does.
    np.testing.assert_allclose(fft.irfft(spec, 10), np.fft.irfft(spec, 10), atol=1e-12)
    np.testing.assert_allclose(fft.irfft(spec, 16)[:12], x, atol=1e-12)


def test_out_receives_the_result(backend):
    x = np.random.default_rng(3).standard_normal((4, 32, 2)).astype(np.float32)
    spec = np.empty((4, 17, 2), np.complex64)
    got = fft.rfft(x, 32, 1, out=spec)
    assert got is spec
    np.testing.assert_allclose(spec, np.fft.rfft(x, axis=1), atol=1e-4)
    y = np.full((4, 32, 2), np.nan, np.float32)
    assert fft.irfft(spec, 32, 1, out=y) is y
    np.testing.assert_allclose(y, x, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_ifft_inplace_overwrites_with_numpys_inverse(backend, dtype):
    """The inverse along one axis of a strided view, written over the view itself."""
    rng = np.random.default_rng(9)
    whole = (rng.standard_normal((12, 10, 3)) + 1j * rng.standard_normal((12, 10, 3))
             ).astype(dtype)
    view = whole[:, 2:7]
    want = np.fft.ifft(view.astype(np.complex128), axis=0)
    outside = whole[:, 7:].copy()
    got = fft.ifft_inplace(view, 0)
    assert np.shares_memory(got, whole)
    tol = 1e-5 if dtype == np.complex64 else 1e-12
    np.testing.assert_allclose(whole[:, 2:7], want, rtol=0, atol=tol)
    np.testing.assert_array_equal(whole[:, 7:], outside)


def test_next_fast_len_is_the_smallest_5_smooth_size(backend):
    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in list(range(1, 300)) + [1000001, 144000 * 2 + 1]:
        got = fft.next_fast_len(n)
        assert got >= n and smooth(got)
        assert not any(smooth(k) for k in range(n, got))


def test_a_module_that_misbehaves_is_not_used(monkeypatch):
    """A pocketfft module whose interface changed (here: a transform off by a sign) is
    caught by the check on load; scipy.fft computes instead."""
    real = fft._load()

    class Changed:
        good_size = staticmethod(real.good_size)
        c2r = staticmethod(real.c2r)
        c2c = staticmethod(real.c2c)

        @staticmethod
        def r2c(*args):
            return -real.r2c(*args)

    monkeypatch.setitem(sys.modules, fft._NAME, Changed)
    fft._pocketfft.cache_clear()
    try:
        assert fft._pocketfft() is None
        x = np.arange(6.0)
        np.testing.assert_allclose(fft.rfft(x, 8), np.fft.rfft(x, 8), atol=1e-12)
    finally:
        monkeypatch.undo()
        fft._pocketfft.cache_clear()
    assert fft._pocketfft() is real


def test_no_scipy_fft_import_and_one_module_for_both():
    """The module is loaded without scipy.fft, under its own name: scipy.fft reuses it."""
    code = (
        "import sys, numpy as np\n"
        "from pwfilter import fft\n"
        "y = fft.rfft(np.ones(8), 8)\n"
        "print('scipy.fft' in sys.modules, 'scipy.special' in sys.modules)\n"
        "import scipy.fft\n"
        "from scipy.fft._pocketfft import pypocketfft\n"
        "print(pypocketfft is fft._pocketfft())\n"
        "print(np.allclose(scipy.fft.rfft(np.arange(8.0)), np.fft.rfft(np.arange(8.0))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "True", "True"]
