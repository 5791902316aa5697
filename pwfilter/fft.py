"""The engine's FFTs: pocketfft as SciPy ships it, without the cost of ``import scipy.fft``.

``import scipy.fft`` takes ~0.1 s: it loads SciPy's array-API layer, which
pulls in ``numpy.testing``, ``numpy.f2py`` and ``scipy.special``. That is a
sixth of a whole 10-minute streaming job. The transforms themselves are in
pocketfft's own Python module, ``pypocketfft``, which SciPy builds as
``scipy.fft._pocketfft.pypocketfft``; its interface (``r2c``, ``c2r``,
``c2c``, ``good_size``) is pocketfft's documented one, which SciPy's own
wrappers call. This module loads that extension by itself, under that same
name, so a later ``import scipy.fft`` reuses it rather than loading it twice,
and checks it on a tiny transform. If it cannot be found, loaded or checked,
``scipy.fft`` is imported and used instead: same library, same results, just
the slower import.

Conventions are SciPy's and NumPy's: forward transforms are unscaled, inverse
ones divide by the transform size; ``s`` pads with zeros or crops, as
``numpy.fft.rfftn(x, s, axes)`` does; ``workers=-1`` means all CPUs. ``out``,
where offered, is a buffer of exactly the result's shape and precision, not
overlapping the input, that receives the result (reusing buffers spares the
page faults of fresh memory on every call); the result is also returned.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from functools import cache

import numpy as np

_NAME = "scipy.fft._pocketfft.pypocketfft"


def _load():
    """SciPy's compiled pocketfft module, loaded without its parent packages."""
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.find_spec("scipy")  # locates the package without running it
    folder = os.path.join(spec.submodule_search_locations[0], "fft", "_pocketfft")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "pypocketfft" + suffix)
        if os.path.exists(path):
            break
    else:
        raise ImportError("no pypocketfft in SciPy's installation")
    loader = importlib.machinery.ExtensionFileLoader(_NAME, path)
    module = importlib.util.module_from_spec(
        importlib.util.spec_from_file_location(_NAME, path, loader=loader))
    loader.exec_module(module)
    sys.modules[_NAME] = module
    return module


def _works(p) -> bool:
    """The calls made below, on values worked by hand: the real spectrum of
    [1, 2, 0, 0] is [3, 1-2j, -1] (and back); the spectrum of [1, 1j] is [1+1j, 1-1j]."""
    x = np.array([1.0, 2.0, 0.0, 0.0])
    spec = p.r2c(x, (0,), True, 0, None, 1)
    return bool(np.allclose(spec, [3, 1 - 2j, -1])
                and np.allclose(p.c2r(spec, (0,), 4, False, 2, None, 1), x)
                and np.allclose(p.c2c(np.array([1, 1j]), (0,), True, 0, None, 1),
                                [1 + 1j, 1 - 1j])
                and p.good_size(7, True) == 8)


@cache
def _pocketfft():
    """pocketfft's module, checked, or ``None`` (then ``scipy.fft`` is used)."""
    try:
        p = _load()
        return p if _works(p) else None
    except Exception:  # noqa: BLE001 - any surprise means: use scipy.fft
        return None


def _threads(workers: int) -> int:
    return workers if workers > 0 else max(1, (os.cpu_count() or 1) + 1 + workers)


def _fit(x: np.ndarray, shape: Sequence[int], axes: Sequence[int]) -> np.ndarray:
    """``x`` zero-padded or cropped to ``shape`` along ``axes`` (``x`` itself when it fits)."""
    target = list(x.shape)
    for n, ax in zip(shape, axes):
        target[ax] = n
    if list(x.shape) == target:
        return x
    out = np.zeros(target, dtype=x.dtype)
    common = tuple(slice(0, min(a, b)) for a, b in zip(x.shape, target))
    out[common] = x[common]
    return out


def _real(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _complex(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype in (np.complex64, np.complex128):
        return x
    return x.astype(np.complex64 if x.dtype == np.float32 else np.complex128)


def _axes(x: np.ndarray, s, axes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    axes = tuple(a % x.ndim for a in axes)
    return tuple(int(n) for n in s), axes


def next_fast_len(n: int) -> int:
    """The smallest size >= ``n`` that real FFTs handle fast (2^a·3^b·5^c).

    The same as ``scipy.fft.next_fast_len(n, real=True)``.
    """
    p = _pocketfft()
    if p is None:
        import scipy.fft

        return scipy.fft.next_fast_len(int(n), real=True)
    return p.good_size(int(n), True)


def _by_scipy(name: str, x: np.ndarray, s, axes, workers: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """The fallback: the same transform through ``scipy.fft`` (result copied into ``out``)."""
    import scipy.fft

    result = getattr(scipy.fft, name)(x, s=s, axes=axes, workers=workers)
    if out is None:
        return result
    out[...] = result
    return out


def rfftn(x, s: Sequence[int], axes: Sequence[int], workers: int = 1,
          out: np.ndarray | None = None) -> np.ndarray:
    """Real-input FFT over ``axes`` (the last one halved), input padded or cropped to ``s``."""
    x = _real(x)
    s, axes = _axes(x, s, axes)
    p = _pocketfft()
    if p is None:
        return _by_scipy("rfftn", x, s, axes, workers, out)
    return p.r2c(_fit(x, s, axes), axes, True, 0, out, _threads(workers))


def irfftn(x, s: Sequence[int], axes: Sequence[int], workers: int = 1,
           out: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`rfftn`: real output of shape ``s`` along ``axes``."""
    x = _complex(x)
    s, axes = _axes(x, s, axes)
    p = _pocketfft()
    if p is None:
        return _by_scipy("irfftn", x, s, axes, workers, out)
    half = (*s[:-1], s[-1] // 2 + 1)
    return p.c2r(_fit(x, half, axes), axes, s[-1], False, 2, out, _threads(workers))


def fftn(x, s: Sequence[int], axes: Sequence[int], workers: int = 1) -> np.ndarray:
    """Complex FFT over ``axes``, input padded or cropped to ``s``."""
    x = _complex(x)
    s, axes = _axes(x, s, axes)
    p = _pocketfft()
    if p is None:
        return _by_scipy("fftn", x, s, axes, workers)
    return p.c2c(_fit(x, s, axes), axes, True, 0, None, _threads(workers))


def ifft_inplace(x: np.ndarray, axis: int, workers: int = 1) -> np.ndarray:
    """Inverse complex FFT of ``x`` along ``axis`` (divided by its length), written over
    ``x`` itself. A multi-axis :func:`irfftn` needs a temporary copy of the whole
    spectrum for this step; a spectrum that is no longer needed can spare it."""
    p = _pocketfft()
    if p is None:
        import scipy.fft

        x[...] = scipy.fft.ifft(x, axis=axis, workers=workers)
        return x
    return p.c2c(x, (axis % x.ndim,), False, 2, x, _threads(workers))


def rfft(x, n: int, axis: int = -1, workers: int = 1,
         out: np.ndarray | None = None) -> np.ndarray:
    """:func:`rfftn` along one axis."""
    return rfftn(x, (n,), (axis,), workers, out)


def irfft(x, n: int, axis: int = -1, workers: int = 1,
          out: np.ndarray | None = None) -> np.ndarray:
    """:func:`irfftn` along one axis."""
    return irfftn(x, (n,), (axis,), workers, out)


def fft(x, n: int, axis: int = -1, workers: int = 1) -> np.ndarray:
    """:func:`fftn` along one axis."""
    return fftn(x, (n,), (axis,), workers)
