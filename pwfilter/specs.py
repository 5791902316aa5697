"""Kernel and matrix specifications: parsing, named kernels, presets, FIR designs.

A user names a kernel or a remix matrix with one string: a file (``.npy``,
``.txt``/``.csv``, an audio impulse response), inline rows (``"1 2 1; 2 4 2;
1 2 1"``) or a registered name (``gaussian:2``, ``sharpen``, ``mid-side``).
Each registry below maps a name to a small function; adding a kernel or a
preset touches one table.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pwfilter.errors import PwfilterError

_SEP = re.compile(r"[,\s]+")


def parse_rows(text: str, what: str) -> np.ndarray:
    """Parse rows of numbers: rows split by ``;`` or newlines, numbers by spaces or commas.

    ``#`` starts a comment. Returns a 2-D float64 array; ragged rows,
    non-numbers, NaN/Inf and empty input are errors.
    """
    rows = []
    for line in text.replace(";", "\n").splitlines():
        line = line.split("#", 1)[0].strip().strip(",")
        if not line:
            continue
        if re.search(r",\s*,", line):
            raise PwfilterError(f"{what}: an empty value between commas in {line!r}")
        try:
            rows.append([number(v) for v in _SEP.split(line) if v])
        except ValueError:
            bad = next(v for v in _SEP.split(line) if v and not _is_number(v))
            raise PwfilterError(f"{what}: {bad!r} is not a number") from None
    if not rows:
        raise PwfilterError(f"{what}: no numbers")
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise PwfilterError(f"{what}: rows of different lengths {sorted(widths)}")
    arr = np.array(rows, dtype=np.float64)
    check_finite(arr, what)
    return arr


#: A number as written in kernels, matrices and names: ASCII decimal or scientific notation
#: (Python's ``float`` would also take "1_000" and other scripts' digits), or inf/nan (then
#: refused as not finite, with that reason).
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan)",
                     re.ASCII | re.IGNORECASE)


def number(text: str) -> float:
    """``float(text)`` for plain ASCII numbers only (ValueError otherwise)."""
    if not _NUMBER.fullmatch(text.strip()):
        raise ValueError(f"not a number: {text!r}")
    return float(text)


def _is_number(v: str) -> bool:
    return bool(_NUMBER.fullmatch(v.strip()))


MAX_ABS = 1e30
"""Larger weights overflow float32 sums; no real kernel or matrix needs them."""


def check_finite(arr: np.ndarray, what: str) -> None:
    if not np.isfinite(arr).all():
        raise PwfilterError(f"{what}: holds NaN or Inf values")
    if arr.size and np.abs(arr).max() > MAX_ABS:
        raise PwfilterError(f"{what}: values beyond ±{MAX_ABS:g} would overflow")


def _load_array_file(path: str, what: str) -> np.ndarray:
    if path.lower().endswith(".npy"):
        arr = load_npy(path, f"{what} {path}")
        if arr.dtype.kind not in "biuf" or arr.size == 0:
            raise PwfilterError(f"{what} {path}: needs a non-empty numeric array, "
                                f"got {arr.dtype} of shape {arr.shape}")
        arr = arr.astype(np.float64)
        check_finite(arr, f"{what} {path}")
        return arr
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise PwfilterError(f"{what} {path}: cannot read ({exc})") from None
    return parse_rows(text, f"{what} {path}")


def _check_regular(spec: str, what: str) -> None:
    """A kernel or matrix named by a path that exists must be a regular file (a FIFO would
    block the reader for ever)."""
    if os.path.exists(spec) and not (os.path.isfile(spec) or os.path.isdir(spec)):
        raise PwfilterError(f"{what} {spec}: not a regular file (a FIFO, device or socket)")


def files_read(spec) -> tuple[str, ...]:
    """The file a kernel or matrix SPEC reads, if it names one (for the rule that no output
    may replace a file the command reads)."""
    if isinstance(spec, str) and not looks_inline(spec) and os.path.isfile(spec):
        return (spec,)
    return ()


def load_npy(source, what: str) -> np.ndarray:
    """``np.load`` of one ``.npy`` array (a path or file object), never unpickling: an
    ``.npz`` archive, a pickle or a damaged file is an error naming ``what``."""
    try:
        arr = np.load(source, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises many types for bad files
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PwfilterError(f"{what}: not a readable .npy array ({detail})") from None
    if not isinstance(arr, np.ndarray):
        with contextlib.suppress(Exception):
            arr.close()
        raise PwfilterError(f"{what}: an .npz archive, not one .npy array")
    return arr


# ----------------------------------------------------------------- kernels

#: Most taps along one axis of a named kernel (a 1-D float64 array of 1 GiB): larger ones
#: are refused when named, before anything is built; memory limits apply below it.
MAX_TAPS = 1 << 27


@dataclass(frozen=True)
class KernelSpec:
    """A kernel and how it was named.

    ``array`` is float64: ``(M,)``/``(kh, kw)`` for every channel or with a
    leading channel axis, one per channel. ``default_mode`` is set by FIR
    designs (``same``: the filtered file keeps its length and timing).
    """

    array: np.ndarray
    name: str
    default_mode: str | None = None
    design: FirDesign | None = None


#: Transition width of a Hamming-window FIR design: 3.3 / taps in cycles per sample (the
#: window's main lobe, 6.6·π/N rad/sample, as in Oppenheim & Schafer's table of windows).
HAMMING_TRANSITION = 3.3


@dataclass(frozen=True)
class FirDesign:
    """What an FIR design was asked for: its kind, cut-offs (Hz), tap count and rate.

    The response analysis takes its passband and stopband edges from here, so
    that ripple and attenuation are measured where the design promises them.
    """

    kind: str
    cutoffs: tuple[float, ...]
    taps: int
    rate: int

    @property
    def transition(self) -> float:
        """Width in Hz of each transition band (Hamming window: 3.3 · rate / taps)."""
        return HAMMING_TRANSITION * self.rate / self.taps

    def bands(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Passbands and stopbands in Hz: each cut-off ± half the transition width.

        A band that the transitions leave no room for is left out (a lowpass
        at 50 Hz with 961 taps at 48 kHz has no measurable passband).
        """
        nyq, half = self.rate / 2, self.transition / 2
        if self.kind == "lowpass":
            (fc,) = self.cutoffs
            passes, stops = [(0.0, fc - half)], [(fc + half, nyq)]
        elif self.kind == "highpass":
            (fc,) = self.cutoffs
            passes, stops = [(fc + half, nyq)], [(0.0, fc - half)]
        else:
            lo, hi = self.cutoffs
            passes, stops = [(lo + half, hi - half)], [(0.0, lo - half), (hi + half, nyq)]

        def keep(bands):
            return [(max(a, 0.0), min(b, nyq)) for a, b in bands if min(b, nyq) > max(a, 0.0)]

        return keep(passes), keep(stops)


def gaussian_1d(sigma: float) -> np.ndarray:
    """Sampled Gaussian truncated at 4 sigma, summing to 1 (as ``scipy.ndimage.gaussian_filter``)."""
    if not sigma > 0 or not math.isfinite(sigma):
        raise PwfilterError(f"gaussian sigma must be positive, got {sigma}")
    if 8 * sigma + 2 > MAX_TAPS:
        raise PwfilterError(f"gaussian sigma {sigma:g} is too wide: its 8·sigma taps exceed "
                            f"the most a kernel may have ({MAX_TAPS:,})")
    radius = int(4 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * (x / sigma) ** 2)
    return phi / phi.sum()


def box_1d(n: int) -> np.ndarray:
    if n < 1:
        raise PwfilterError(f"box size must be at least 1, got {n}")
    if n > MAX_TAPS:
        raise PwfilterError(f"box size {n:,} is more than the most taps a kernel may have "
                            f"({MAX_TAPS:,})")
    return np.full(n, 1.0 / n)


def _outer(v: np.ndarray):
    from pwfilter.engine import Separable

    return Separable(v, v)


_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
_IDENTITY3 = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float64)

# name -> (function of (args, ndim, rate), takes args?, 1-D allowed?)
_IMAGE_ONLY: dict[str, np.ndarray] = {
    "sharpen": _IDENTITY3 - _LAPLACIAN,
    "laplacian": _LAPLACIAN,
    # Convolution (flipped) convention: a brightness rising to the right/downwards
    # gives a positive response.
    "sobel-x": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64),
    "sobel-y": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64),
    "emboss": np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64),
}
KERNEL_NAMES = ("gaussian:SIGMA", "box:N", "identity", *_IMAGE_ONLY,
                "lowpass:HZ[:TAPS]", "highpass:HZ[:TAPS]", "bandpass:LO:HI[:TAPS]")
FIR_DESIGNS = ("lowpass", "highpass", "bandpass")


def kernel_words() -> list[tuple[str, str]]:
    """The named kernels as a shell completes them, with their forms: ``("gaussian:",
    "gaussian:SIGMA")``, ``("sharpen", "sharpen")``… (from :data:`KERNEL_NAMES`)."""
    return [(form.split(":")[0] + (":" if ":" in form else ""), form) for form in KERNEL_NAMES]


def _number(text: str, what: str, kind: Callable = float):
    try:
        if kind is int:
            if not re.fullmatch(r"[+-]?\d{1,18}", text.strip(), re.ASCII):
                raise ValueError(text)
            value = int(text)
        else:
            value = kind(number(text))
    except ValueError:
        raise PwfilterError(f"{what}: {text!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise PwfilterError(f"{what}: {text!r} is not finite")
    return value


def default_taps(rate: int) -> int:
    """Default FIR length: about rate/50 taps (transition ~170 Hz with a Hamming window)."""
    return max(31, int(rate // 50) | 1)


def fir_design(name: str, args: list[str], rate: int) -> np.ndarray:
    """Linear-phase FIR (window method, Hamming) at ``rate`` Hz."""
    return fir_taps(fir_parameters(name, args, rate))


def fir_parameters(name: str, args: list[str], rate: int) -> FirDesign:
    """Check an FIR design's name and arguments (``lowpass``, ``["1000", "301"]``)."""
    what = f"{name}:{':'.join(args)}"
    if not rate:
        raise PwfilterError(f"{what}: an FIR design needs the sample rate (--rate HZ)")
    nyq = rate / 2
    nfreq = 2 if name == "bandpass" else 1
    if len(args) not in (nfreq, nfreq + 1):
        form = "bandpass:LO:HI[:TAPS]" if name == "bandpass" else f"{name}:HZ[:TAPS]"
        raise PwfilterError(f"{what}: expected {form}")
    freqs = [_number(a, what) for a in args[:nfreq]]
    taps = _number(args[nfreq], what, int) if len(args) > nfreq else default_taps(rate)
    if taps > MAX_TAPS:
        raise PwfilterError(f"{what}: {taps:,} taps is more than the most a kernel may have "
                            f"({MAX_TAPS:,})")
    if taps < 3 or taps % 2 == 0:
        raise PwfilterError(f"{what}: the tap count must be odd and at least 3, got {taps}")
    if not all(0 < f < nyq for f in freqs):
        which = "the cutoff" if nfreq == 1 else "both edges"
        raise PwfilterError(f"{what}: {which} must lie strictly between 0 and {nyq:g} Hz "
                            f"(half the rate {rate} Hz)")
    if nfreq == 2 and not freqs[0] < freqs[1]:
        raise PwfilterError(f"{what}: the low edge {freqs[0]:g} Hz must be below the high "
                            f"edge {freqs[1]:g} Hz")
    return FirDesign(name, tuple(freqs), taps, rate)


def fir_taps(design: FirDesign) -> np.ndarray:
    """The taps of ``design``: ``scipy.signal.firwin`` with a Hamming window, unit gain at
    the centre of the passband."""
    from scipy import signal  # only FIR designs pay for scipy.signal's import

    cutoff = list(design.cutoffs) if len(design.cutoffs) == 2 else design.cutoffs[0]
    return signal.firwin(design.taps, cutoff, pass_zero=(design.kind == "lowpass"),
                         fs=design.rate)


def named_kernel(spec: str, ndim: int, rate: int = 0) -> KernelSpec | None:
    """A registered kernel for ``ndim`` signal axes, or None if ``spec`` names none."""
    name, *args = spec.strip().lower().split(":")
    if name in FIR_DESIGNS:
        if ndim != 1:
            raise PwfilterError(f"{spec}: FIR designs are for audio (1-D signals)")
        design = fir_parameters(name, args, rate)
        return KernelSpec(fir_taps(design), spec, default_mode="same", design=design)
    if name in ("gaussian", "box"):
        if len(args) != 1:
            raise PwfilterError(f"{spec}: expected {name}:{'SIGMA' if name == 'gaussian' else 'N'}")
        if name == "gaussian":
            v = gaussian_1d(_number(args[0], spec))
        else:
            size = _number(args[0], spec)
            if size > MAX_TAPS:
                raise PwfilterError(f"{spec}: box size {size:g} is more than the most taps a "
                                    f"kernel may have ({MAX_TAPS:,})")
            if size != int(size):
                raise PwfilterError(f"{spec}: the box size is a whole number of taps")
            v = box_1d(int(size))
        return KernelSpec(v if ndim == 1 else _outer(v), spec)
    if args:
        return None
    if name == "identity":
        return KernelSpec(np.ones((1,) * ndim), spec)
    if name in _IMAGE_ONLY:
        if ndim != 2:
            raise PwfilterError(f"{spec}: a 2-D kernel, for images only")
        return KernelSpec(_IMAGE_ONLY[name].copy(), spec)
    return None


def looks_inline(spec: str) -> bool:
    """Inline rows: numbers separated by spaces, commas, ``;`` or ``|`` — or a single
    number. A typo inside rows (``"1 2 x"``) still counts, so that it gets a clear
    "not a number" error rather than "unknown name"."""
    body = spec.split("#", 1)[0].strip()
    tokens = [t for t in re.split(r"[\s,;|]+", body) if t]
    if not tokens or os.path.exists(spec):
        return False
    if len(tokens) == 1:
        return _is_number(tokens[0])
    return any(_is_number(t) for t in tokens)


def load_kernel(spec, *, kind: str, channels: int, rate: int = 0,
                resample_ir: bool = False, load_audio: Callable | None = None) -> KernelSpec:
    """Resolve a kernel SPEC for an input of ``kind`` (``image``/``audio``).

    ``spec`` is text (a file, inline rows, a name) or an array (a
    :class:`pwfilter.engine.Separable` too). ``load_audio(path)`` returns a
    :class:`pwfilter.media.Media`; it is passed in so that this module stays
    free of media I/O.
    """
    from pwfilter.engine import Separable

    ndim = 2 if kind == "image" else 1
    if isinstance(spec, Separable):
        if ndim != 2:
            raise PwfilterError("a separable 2-D kernel needs an image")
        return KernelSpec(spec, "kernel")
    if not isinstance(spec, str):
        arr = np.asarray(spec, dtype=np.float64)
        check_finite(arr, "kernel")
        return KernelSpec(_fit_kernel(arr, ndim, channels, f"of shape {arr.shape}"), "kernel")
    if looks_inline(spec):
        arr = parse_rows(spec, "kernel")
        return KernelSpec(_fit_kernel(arr, ndim, channels, spec), spec)
    _check_regular(spec, "kernel")
    if os.path.isfile(spec):
        if load_audio is not None and not spec.lower().endswith((".npy", ".txt", ".csv")):
            return _impulse_response(spec, ndim, channels, rate, resample_ir, load_audio)
        return KernelSpec(_fit_kernel(_load_array_file(spec, "kernel"), ndim, channels, spec), spec)
    named = named_kernel(spec, ndim, rate)
    if named is None:
        if os.sep in spec or "." in os.path.basename(spec):
            raise PwfilterError(f"kernel {spec}: no such file")
        raise PwfilterError(f"unknown kernel {spec!r} (a file, inline rows such as "
                            f"\"1 2 1; 2 4 2; 1 2 1\", or one of: {', '.join(KERNEL_NAMES)})")
    return named


@dataclass(frozen=True)
class StandaloneKernel:
    """A kernel on its own, as ``pwfilter kernel`` reads it (there is no input to fit).

    ``array`` is float64: ``(M,)`` or ``(C, M)`` (one per channel) when ``axes``
    is 1; ``(kh, kw)``, ``(C, kh, kw)`` or a :class:`pwfilter.engine.Separable`
    when ``axes`` is 2. ``rate`` is 0 when unknown. ``source`` says where it
    came from: ``named``, ``design`` (an FIR design), ``file``, ``inline`` or
    ``impulse response`` (an audio file).
    """

    array: np.ndarray
    name: str
    axes: int
    per_channel: bool
    rate: int
    source: str
    design: FirDesign | None = None


def standalone_kernel(spec: str, *, rate: int = 0, audio: bool = False,
                      load_audio: Callable | None = None) -> StandaloneKernel:
    """Resolve any kernel SPEC on its own, for ``pwfilter kernel``.

    Without an input, the shape says what an array is: ``(M,)`` and a single
    row ``(1, M)`` are 1-D kernels; ``(kh, kw)`` is a 2-D kernel, or with
    ``audio`` one 1-D kernel per row ``(C, M)``; ``(C, kh, kw)`` is one 2-D
    kernel per channel. ``audio`` (or a ``rate``) also asks for the 1-D form of
    ``gaussian``, ``box`` and ``identity``. An audio file is an impulse response
    at its own rate (a different ``rate`` is an error); ``load_audio(path)``
    returns its :class:`pwfilter.media.Media`.
    """
    audio = audio or bool(rate)
    if looks_inline(spec):
        return _standalone_array(parse_rows(spec, "kernel"), spec, audio, rate, "inline")
    _check_regular(spec, "kernel")
    if os.path.isfile(spec):
        if load_audio is not None and not spec.lower().endswith((".npy", ".txt", ".csv")):
            return _standalone_ir(spec, rate, load_audio)
        return _standalone_array(_load_array_file(spec, "kernel"), spec, audio, rate, "file")
    fir = spec.strip().lower().split(":")[0] in FIR_DESIGNS
    named = named_kernel(spec, 1 if (audio or fir) else 2, rate)
    if named is None:
        if os.sep in spec or "." in os.path.basename(spec):
            raise PwfilterError(f"kernel {spec}: no such file")
        raise PwfilterError(f"unknown kernel {spec!r} (a file, inline rows such as "
                            f"\"1 2 1; 2 4 2; 1 2 1\", or one of: {', '.join(KERNEL_NAMES)})")
    axes = 1 if (audio or fir) else 2
    return StandaloneKernel(named.array, named.name, axes, False, rate if axes == 1 else 0,
                            "design" if fir else "named", named.design)


def _standalone_array(arr: np.ndarray, spec: str, audio: bool, rate: int,
                      source: str) -> StandaloneKernel:
    def made(a, axes, per_channel):
        return StandaloneKernel(a, spec, axes, per_channel, rate if axes == 1 else 0, source)

    if arr.ndim == 1:
        return made(arr, 1, False)
    if arr.ndim == 2 and arr.shape[0] == 1:
        return made(arr[0], 1, False)
    if arr.ndim == 2:
        return made(arr, 1, True) if audio else made(arr, 2, False)
    if arr.ndim == 3 and not audio:
        return made(arr[0], 2, False) if arr.shape[0] == 1 else made(arr, 2, True)
    want = "(M,) or (C, M) for audio" if audio else "(M,), (kh, kw) or (C, kh, kw)"
    raise PwfilterError(f"kernel {spec}: shape {arr.shape} is no kernel (expected {want})")


def _standalone_ir(path: str, rate: int, load_audio: Callable) -> StandaloneKernel:
    ir = load_audio(path)
    if ir.kind == "image":
        raise PwfilterError(f"kernel {path}: an image is not a kernel (give kernels as "
                            ".npy, .txt or inline rows)")
    if rate and ir.rate and ir.rate != rate:
        raise PwfilterError(f"kernel {path}: the impulse response's rate is {ir.rate} Hz, "
                            f"not --rate {rate}")
    data = ir.data.astype(np.float64)
    if data.shape[1] == 1:
        return StandaloneKernel(data[:, 0], path, 1, False, ir.rate or rate, "impulse response")
    return StandaloneKernel(np.ascontiguousarray(data.T), path, 1, True, ir.rate or rate,
                            "impulse response")


def _fit_kernel(arr: np.ndarray, ndim: int, channels: int, what: str) -> np.ndarray:
    """Shape a parsed array as a kernel for ``ndim`` axes: shared or one per channel."""
    if ndim == 1:
        if arr.ndim == 1:
            return arr
        if arr.ndim == 2 and arr.shape[0] == 1:
            return arr[0]
        if arr.ndim == 2 and arr.shape[0] == channels:
            return arr
        raise PwfilterError(f"kernel {what}: shape {arr.shape} does not fit audio with "
                            f"{channels} channel(s) (expected (M,) or ({channels}, M))")
    if arr.ndim == 1:
        return arr[None, :]
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[0] in (1, channels):
        return arr[0] if arr.shape[0] == 1 else arr
    raise PwfilterError(f"kernel {what}: shape {arr.shape} does not fit an image with "
                        f"{channels} channel(s) (expected (kh, kw) or ({channels}, kh, kw))")


def _impulse_response(path, ndim, channels, rate, resample_ir, load_audio) -> KernelSpec:
    ir = load_audio(path)
    if ir.kind == "image":
        raise PwfilterError(f"kernel {path}: an image is not a kernel (give kernels as "
                            ".npy, .txt or inline rows)")
    if ndim != 1:
        raise PwfilterError(f"kernel {path}: an audio impulse response needs an audio input")
    data = ir.data.astype(np.float64)
    if ir.rate and rate and ir.rate != rate:
        if not resample_ir:
            raise PwfilterError(f"kernel {path}: sample rate {ir.rate} Hz differs from the "
                                f"input's {rate} Hz (add --resample-ir to resample it)")
        from scipy import signal

        # The same continuous response at the new rate: resampling keeps the waveform's
        # values, and a filter's gain is the sum of its taps, so the taps scale by the
        # ratio of the rates (an 8 kHz IR at 48 kHz has six times as many taps).
        g = math.gcd(rate, ir.rate)
        data = signal.resample_poly(data, rate // g, ir.rate // g, axis=0) * (ir.rate / rate)
    if data.shape[1] == 1:
        return KernelSpec(data[:, 0], path)
    if data.shape[1] != channels:
        raise PwfilterError(f"kernel {path}: impulse response of shape {ir.data.shape} has "
                            f"{data.shape[1]} channels, the input has {channels}")
    return KernelSpec(np.ascontiguousarray(data.T), path)


NORMALIZE_KERNEL = ("sum", "l1", "energy", "peak")


def normalize_kernel(k: np.ndarray, how: str, per_channel: bool) -> np.ndarray:
    """Divide by the sum, Σ|k|, √Σk² or max|k|; per-channel kernels share one factor."""
    from pwfilter.engine import Separable

    if isinstance(k, Separable):
        factor = {"sum": lambda v: v.sum(), "l1": lambda v: np.abs(v).sum(),
                  "energy": lambda v: np.sqrt((v * v).sum()),
                  "peak": lambda v: np.abs(v).max()}.get(how)
        if factor is None:
            raise PwfilterError(f"unknown kernel normalisation {how!r} "
                                f"(choose from {', '.join(NORMALIZE_KERNEL)})")
        f = float(factor(k.col) * factor(k.row))
        if f == 0:
            raise PwfilterError(f"the kernel's {how} is zero, cannot normalise by it")
        return k.scaled(f)
    axes = tuple(range(1, k.ndim)) if per_channel else None
    if how == "sum":
        f = k.sum(axis=axes)
    elif how == "l1":
        f = np.abs(k).sum(axis=axes)
    elif how == "energy":
        f = np.sqrt((k * k).sum(axis=axes))
    elif how == "peak":
        f = np.abs(k).max(axis=axes)
    else:
        raise PwfilterError(f"unknown kernel normalisation {how!r} "
                            f"(choose from {', '.join(NORMALIZE_KERNEL)})")
    f = np.asarray(f, dtype=np.float64)
    factor = f.flat[np.argmax(np.abs(f))] if f.ndim else float(f)
    if abs(factor) < 1e-12 * max(np.abs(k).max(), 1e-300):
        hint = " (use l1, energy or peak)" if how == "sum" else ""
        raise PwfilterError(f"the kernel's {how} is zero, cannot normalise by it{hint}")
    return k / factor


# ----------------------------------------------------------------- matrices


@dataclass(frozen=True)
class MatrixSpec:
    """A remix: ``matrix`` (C_out, C_in), or (G, C_out/G, C_in/G) per group; optional bias."""

    matrix: np.ndarray
    bias: np.ndarray | None
    name: str
    alpha_aware: bool = True


def _preset(name: str, kind: str, c_in: int) -> MatrixSpec | None:
    eye = np.eye
    if kind == "image":
        color = c_in - 1 if c_in in (2, 4) else c_in
        table = {
            "gray": lambda: np.array([[0.299, 0.587, 0.114]]),
            "sepia": lambda: np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168],
                                       [0.272, 0.534, 0.131]]),
            "bgr": lambda: eye(3)[::-1].copy(),
        }
        if name == "invert":
            return MatrixSpec(-eye(color), np.ones(color), name)
        if name in table:
            return MatrixSpec(table[name](), None, name)
        return None
    table = {
        "mono": lambda: np.full((1, c_in), 1.0 / c_in),
        "stereo": lambda: np.full((2, c_in), 1.0 / c_in),
        "swap": lambda: np.array([[0.0, 1.0], [1.0, 0.0]]),
        "mid-side": lambda: np.array([[0.5, 0.5], [0.5, -0.5]]),
        "side-mid": lambda: np.array([[1.0, 1.0], [1.0, -1.0]]),
    }
    return MatrixSpec(table[name](), None, name) if name in table else None


IMAGE_PRESETS = ("gray", "sepia", "bgr", "invert")
AUDIO_PRESETS = ("mono", "stereo", "swap", "mid-side", "side-mid")


def load_matrix(spec, *, kind: str, channels: int) -> MatrixSpec:
    """Resolve ``--matrix SPEC``: inline rows (``|`` separates per-group blocks; one block
    followed by ``|`` is shared by every group), a file, a preset, or an array."""
    if not isinstance(spec, str):
        arr = np.asarray(spec, dtype=np.float64)
        check_finite(arr, "matrix")
        arr = arr[None, :] if arr.ndim == 1 else arr
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise PwfilterError(f"matrix: expected a 2-D (C_out, C_in) array, got shape "
                                f"{arr.shape}")
        return MatrixSpec(arr, None, "matrix")
    if looks_inline(spec):
        if spec.rstrip().endswith("|") and spec.count("|") == 1:
            # One block and a closing bar: the block every group shares, (1, C_out/G, C_in/G).
            return MatrixSpec(parse_rows(spec.rstrip()[:-1], "matrix")[None], None, spec)
        blocks = [parse_rows(b, "matrix") for b in spec.split("|")]
        if len(blocks) > 1:
            shapes = {b.shape for b in blocks}
            if len(shapes) > 1:
                raise PwfilterError(f"matrix: per-group blocks of different shapes {sorted(shapes)}")
            return MatrixSpec(np.stack(blocks), None, spec)
        return MatrixSpec(blocks[0], None, spec)
    _check_regular(spec, "matrix")
    if os.path.isfile(spec):
        arr = _load_array_file(spec, "matrix")
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim not in (2, 3):
            raise PwfilterError(f"matrix {spec}: expected a 2-D (C_out, C_in) array, "
                                f"got shape {arr.shape}")
        return MatrixSpec(arr, None, spec)
    preset = _preset(spec.strip().lower(), kind, channels)
    if preset is None:
        names = IMAGE_PRESETS if kind == "image" else AUDIO_PRESETS
        raise PwfilterError(f"unknown matrix {spec!r} (inline rows such as \"0.299 0.587 0.114\", "
                            f"a .npy/.txt file, or a preset for {kind}: {', '.join(names)})")
    return preset


def parse_bias(spec: str, c_out: int) -> np.ndarray:
    """``--bias``: one number for every output channel or one per channel."""
    arr = parse_rows(spec, "bias").ravel()
    if arr.size == 1:
        return np.full(c_out, arr[0])
    if arr.size != c_out:
        raise PwfilterError(f"bias: {arr.size} values for {c_out} output channels")
    return arr
