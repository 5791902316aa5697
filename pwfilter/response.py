"""What a kernel does to frequencies, as numbers: gains, band edges, ripple, delay, decay.

Pure functions on taps (and a sample rate) returning dataclasses; ``pwfilter
kernel`` prints them (a summary or ``--json``) and :mod:`pwfilter.plot` draws
the same spectra. Frequencies are in Hz when the rate is known, in cycles per
sample otherwise. The definitions (the README's "Seeing a filter" says the
same):

- Gains are the response's value at DC (the sum of the taps) and at Nyquist
  (``Σ h[n]·(-1)^n``), signed; their dB are of the magnitude.
- The passband peak is the largest magnitude on ``[0, Nyquist]``. The −3 dB
  and −6 dB frequencies are where the magnitude first falls to half the
  peak's power (1/√2, −3.01 dB) and to half its amplitude (−6.02 dB), going
  down and up from the peak's frequency: one edge for a lowpass or
  highpass, two for a bandpass, none when the response never falls that far.
- The first null is the lowest frequency where the magnitude has a local
  minimum at least 60 dB below the peak (a box of N taps: rate/N).
- For FIR designs, the passband and stopband edges are the cut-offs ± half
  the design's transition width (Hamming: 3.3·rate/taps); ripple is max − min
  in dB across the passband, stopband attenuation the passband peak less the
  largest gain in the stopbands.
- Group delay: a kernel whose taps are symmetric or antisymmetric (leading
  and trailing zeros aside) has linear phase and the constant delay
  ``first + (N − 1)/2`` samples. Otherwise it is the group delay
  ``Re(Σ n·h[n]·e^{-jωn} / H(ω))`` at the passband peak (at DC for a
  lowpass), and ``linear_phase`` is false. The energy centroid
  ``Σ n·h² / Σ h²`` is given for every kernel.
- RT60 of an impulse response: Schroeder's backward integral of h², in dB,
  fitted by least squares from −5 to −35 dB (T30) — or from −5 to −25 dB
  (T20) when the decay does not reach −35 dB — and extrapolated to −60 dB.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from pwfilter.errors import printable

#: The smallest frequency grid (bins from DC to Nyquist: half of it); longer kernels get
#: at least two bins per tap, so that no peak or null hides between bins.
MIN_FFT = 1 << 16

#: "-3 dB" and "-6 dB" as filter designers mean them: half the power (-3.01 dB) and half
#: the amplitude (-6.02 dB; a window-method FIR's cut-off is where its gain is 0.5).
HALF_POWER = 1 / math.sqrt(2)
HALF_AMPLITUDE = 0.5

#: A null: a local minimum this far below the passband peak (in dB).
NULL_DB = 60.0

#: Local minima refined before giving up on finding a null (each costs ~30 DTFTs).
MAX_NULL_CANDIDATES = 6

#: 2-D kernels get an exact SVD rank up to this size a side (about a second).
MAX_SVD_SIDE = 1024


# ----------------------------------------------------------------- spectra


def fft_size(taps: int) -> int:
    """Points of the frequency grid for ``taps`` taps (a power of two ≥ 2·taps, ≥ 2^16)."""
    return max(MIN_FFT, 1 << max(1, (2 * taps - 1).bit_length()))


def magnitude(taps: np.ndarray, n_fft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (cycles/sample, 0 … 0.5) and the magnitude response of 1-D ``taps``."""
    taps = np.asarray(taps, dtype=np.float64)
    n_fft = n_fft or fft_size(taps.size)
    h = np.abs(np.fft.rfft(taps, n_fft))
    return np.arange(h.size) / n_fft, h


def dtft(taps: np.ndarray, f: float) -> complex:
    """The response of ``taps`` at ``f`` cycles/sample, evaluated exactly (no grid)."""
    n = np.arange(taps.size)
    return complex(np.exp(-2j * math.pi * f * n) @ taps)


def spectrum_2d(kernel, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (cycles/pixel, −0.5 … 0.5, DC at the centre) and the magnitude of a 2-D
    kernel's response on a ``size`` × ``size`` grid.

    The transform is taken at least as large as the kernel (no aliasing in
    space) and the grid is every k-th of its bins, so each value is an exact
    sample of the response. A :class:`pwfilter.engine.Separable` is
    transformed by its factors.
    """
    from pwfilter.engine import Separable

    def axis(n_taps):
        n = max(size, 1 << max(1, (n_taps - 1).bit_length()))
        return n, n // size

    if isinstance(kernel, Separable):
        (nc, sc), (nr, sr) = axis(kernel.col.size), axis(kernel.row.size)
        hc = np.fft.fft(kernel.col, nc)[::sc]
        hr = np.fft.fft(kernel.row, nr)[::sr]
        h = np.abs(np.outer(hc, hr))
    else:
        k = np.asarray(kernel, dtype=np.float64)
        (nc, sc), (nr, sr) = axis(k.shape[0]), axis(k.shape[1])
        h = np.abs(np.fft.fft2(k, (nc, nr))[::sc, ::sr])
    freqs = np.fft.fftshift(np.fft.fftfreq(size))
    return freqs, np.fft.fftshift(h)


def energy_decay_db(h: np.ndarray) -> np.ndarray:
    """Schroeder's energy decay curve of ``h`` in dB (0 at the start; −inf after the last
    non-zero sample): ``10·log10(Σ_{k≥n} h[k]² / Σ h²)``."""
    e = np.cumsum((np.asarray(h, np.float64) ** 2)[::-1])[::-1]
    with np.errstate(divide="ignore"):
        return 10 * np.log10(e / e[0]) if e[0] > 0 else np.full(e.shape, -np.inf)


# ----------------------------------------------------------------- 1-D numbers


@dataclass(frozen=True)
class Decay:
    """An RT60 estimate: the energy decay curve's straight-line fit, extrapolated to −60 dB.

    ``rt60_seconds`` and ``fit`` are None when the decay does not rise at least
    35 dB above the noise floor (then neither T30 nor T20 can be measured).
    """

    rt60_seconds: float | None
    fit: str | None                       # "T30" (−5 to −35 dB) or "T20" (−5 to −25 dB)
    fit_range_db: tuple[float, float] | None
    slope_db_per_second: float | None
    intercept_db: float | None            # the fitted line at t = 0
    noise_floor_db: float | None          # the last tenth's level below the envelope's peak
    integrated_seconds: float             # where the backward integration starts


@dataclass(frozen=True)
class Response1D:
    """The numbers of one 1-D kernel; frequencies in Hz when ``rate``, else cycles/sample."""

    taps: int
    dc_gain: float
    dc_gain_db: float | None
    nyquist_gain: float
    nyquist_gain_db: float | None
    peak_gain_db: float | None
    peak_frequency: float
    minus_3db: list[float]
    minus_6db: list[float]
    first_null: float | None
    linear_phase: bool
    group_delay_samples: float | None
    group_delay_at: float | None          # None: the same at every frequency
    energy_centroid_samples: float | None
    passbands: list[tuple[float, float]] | None = None
    stopbands: list[tuple[float, float]] | None = None
    passband_ripple_db: float | None = None
    stopband_attenuation_db: float | None = None
    length_seconds: float | None = None
    decay: Decay | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decay"] = asdict(self.decay) if self.decay else None
        return d


def _db(x: float) -> float | None:
    return 20 * math.log10(abs(x)) if x else None


def response_1d(taps, rate: float = 0, design=None, impulse_response: bool = False
                ) -> Response1D:
    """The numbers of the 1-D kernel ``taps`` (see the module's definitions).

    ``design`` (a :class:`pwfilter.specs.FirDesign`) adds ripple and
    attenuation over its own bands; ``impulse_response`` adds the length in
    seconds and the RT60 estimate (both need ``rate``).
    """
    h = np.asarray(taps, dtype=np.float64)
    if h.ndim != 1 or h.size == 0:
        raise ValueError(f"expected a non-empty 1-D kernel, got shape {h.shape}")
    unit = rate or 1.0
    f, mag = magnitude(h)
    peak_i = int(np.argmax(mag))
    peak = float(mag[peak_i])
    signs = np.where(np.arange(h.size) % 2, -1.0, 1.0)
    dc, nyq = float(h.sum()), float(signs @ h)
    linear, delay, delay_at = _group_delay(h, float(f[peak_i]))
    energy = float(h @ h)
    centroid = float(np.arange(h.size) @ (h * h)) / energy if energy else None
    extra: dict = {}
    if design is not None and rate:
        extra = _bands(h, f * unit, mag, design)
    if impulse_response and rate:
        extra["length_seconds"] = h.size / rate
        extra["decay"] = rt60(h, rate)
    null = _first_null(h, f, mag, peak)
    return Response1D(
        taps=h.size, dc_gain=dc, dc_gain_db=_db(dc), nyquist_gain=nyq,
        nyquist_gain_db=_db(nyq), peak_gain_db=_db(peak), peak_frequency=float(f[peak_i]) * unit,
        minus_3db=[x * unit for x in _edges(h, f, mag, peak_i, HALF_POWER)],
        minus_6db=[x * unit for x in _edges(h, f, mag, peak_i, HALF_AMPLITUDE)],
        first_null=None if null is None else null * unit, linear_phase=linear,
        group_delay_samples=delay, group_delay_at=None if delay_at is None else delay_at * unit,
        energy_centroid_samples=centroid, **extra)


def _edges(h, f, mag, peak_i: int, ratio: float) -> list[float]:
    """Where the magnitude falls to ``ratio`` times the peak, below and above ``peak_i``:
    the grid brackets each crossing, bisection on the exact response finds it."""
    level = mag[peak_i] * ratio
    if level == 0:
        return []
    below = np.flatnonzero(mag[:peak_i] < level)
    above = np.flatnonzero(mag[peak_i:] < level)
    edges = []
    if below.size:
        i = int(below[-1])
        edges.append(_bisect(h, level, f[i], f[i + 1]))
    if above.size:
        i = peak_i + int(above[0])
        edges.append(_bisect(h, level, f[i], f[i - 1]))
    return edges


def _bisect(h, level: float, outside: float, inside: float, steps: int = 40) -> float:
    """The frequency between ``outside`` (magnitude below ``level``) and ``inside`` (at or
    above it) where the exact magnitude crosses ``level``."""
    for _ in range(steps):
        mid = 0.5 * (outside + inside)
        if abs(dtft(h, mid)) < level:
            outside = mid
        else:
            inside = mid
    return 0.5 * (outside + inside)


def _first_null(h, f, mag, peak: float) -> float | None:
    """The lowest local minimum of the magnitude at least :data:`NULL_DB` below the peak,
    located on the exact response (golden-section search between the grid's neighbours)."""
    if peak == 0:
        return None
    deep = peak * 10 ** (-NULL_DB / 20)
    # Grid minima within 20 dB of a null's depth (a null between bins can look that
    # shallow); a minimum at DC or Nyquist counts too.
    padded = np.concatenate(([np.inf], mag, [np.inf]))
    minima = np.flatnonzero((padded[1:-1] <= padded[:-2]) & (padded[1:-1] <= padded[2:])
                            & (mag < deep * 10))
    golden = (math.sqrt(5) - 1) / 2
    for i in minima[:MAX_NULL_CANDIDATES]:
        lo, hi = f[max(i - 1, 0)], f[min(i + 1, f.size - 1)]
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        fa, fb = abs(dtft(h, a)), abs(dtft(h, b))
        for _ in range(48):
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - golden * (hi - lo)
                fa = abs(dtft(h, a))
            else:
                lo, a, fa = a, b, fb
                b = lo + golden * (hi - lo)
                fb = abs(dtft(h, b))
        at, value = (a, fa) if fa < fb else (b, fb)
        if abs(dtft(h, f[i])) <= value * (1 + 1e-9):  # on the grid point itself (DC)
            at, value = f[i], abs(dtft(h, f[i]))
        if value <= deep:
            return float(at)
    return None


def _group_delay(h, peak_f: float) -> tuple[bool, float | None, float | None]:
    """(linear phase?, group delay in samples, the frequency it is taken at or None)."""
    nz = np.flatnonzero(h)
    if nz.size == 0:
        return True, None, None
    core = h[nz[0]:nz[-1] + 1]
    tol = 1e-9 * np.abs(core).max()
    if np.abs(core - core[::-1]).max() <= tol or np.abs(core + core[::-1]).max() <= tol:
        return True, nz[0] + (core.size - 1) / 2, None
    n = np.arange(h.size)
    e = np.exp(-2j * math.pi * peak_f * n)
    den = e @ h
    return False, float((e @ (n * h) / den).real), peak_f


def _bands(h, freqs, mag, design) -> dict:
    """Passband ripple and stopband attenuation over the design's own bands (Hz): the grid's
    points inside each band and the exact response at its edges (where the passband's
    lowest and the stopband's highest gain usually are)."""
    passes, stops = design.bands()

    def pick(bands):
        values = [mag[(freqs >= lo) & (freqs <= hi)] for lo, hi in bands]
        values += [np.array([abs(dtft(h, x / design.rate))]) for band in bands for x in band]
        with np.errstate(divide="ignore"):
            return 20 * np.log10(np.concatenate(values)) if values else np.empty(0)

    p, s = pick(passes), pick(stops)
    out: dict = {"passbands": passes, "stopbands": stops}
    if p.size:
        out["passband_ripple_db"] = float(p.max() - p.min())
        if s.size:
            out["stopband_attenuation_db"] = float(p.max() - s.max())
    return out


#: Windows of the energy envelope used to find the noise floor (seconds).
ENVELOPE_SECONDS = 0.01


def rt60(h, rate: float) -> Decay:
    """RT60 of the impulse response ``h`` at ``rate`` Hz from its energy decay.

    As ISO 3382-1 asks, the bottom of the fitted range lies at least 10 dB
    above the noise floor: the T30 fit (−5 to −35 dB) needs 45 dB between the
    envelope's peak and the floor, the T20 fit (−5 to −25 dB) 35 dB. The floor
    is the mean energy of the last tenth of ``h``; the backward integration
    starts where the envelope (10 ms windows) first comes within 5 dB of it,
    so that the noise does not lift the decay's end (a simplified Lundeby
    truncation).
    """
    e = np.asarray(h, np.float64) ** 2
    w = max(1, min(round(rate * ENVELOPE_SECONDS), e.size // 20))
    env = e[:e.size // w * w].reshape(-1, w).mean(axis=1)
    peak = env.max() if env.size else 0.0
    tail = e[e.size - max(1, e.size // 10):].mean()
    if peak == 0:
        return Decay(None, None, None, None, None, None, 0.0)
    with np.errstate(divide="ignore"):
        env_db = 10 * np.log10(env / peak)
        floor = 10 * math.log10(tail / peak) if tail > 0 else -math.inf
    top = int(np.argmax(env))
    reached = np.flatnonzero(env_db[top:] <= floor + 5)
    cut = (top + int(reached[0])) * w if reached.size else e.size
    cut = max(cut, 2)
    floor_db = None if floor == -math.inf else floor
    fit = "T30" if floor <= -45 else "T20" if floor <= -35 else None
    if fit is None:
        return Decay(None, None, None, None, None, floor_db, cut / rate)
    low = -35.0 if fit == "T30" else -25.0
    edc = energy_decay_db(e[:cut] ** 0.5)
    sel = np.flatnonzero((edc <= -5.0) & (edc >= low))
    if sel.size < 2:
        return Decay(None, None, None, None, None, floor_db, cut / rate)
    slope, intercept = np.polyfit(sel / rate, edc[sel], 1)
    seconds = float(-60.0 / slope) if slope < 0 else None
    return Decay(seconds, fit, (-5.0, low), float(slope), float(intercept), floor_db, cut / rate)


# ----------------------------------------------------------------- 2-D numbers


@dataclass(frozen=True)
class Response2D:
    """The numbers of one 2-D kernel."""

    shape: tuple[int, int]
    dc_gain: float
    dc_gain_db: float | None
    rank: int | None
    separable: bool | None

    def to_dict(self) -> dict:
        return asdict(self)


def response_2d(kernel) -> Response2D:
    """DC gain (the sum), numerical rank and whether the kernel is separable (rank ≤ 1:
    an outer product of a column and a row, run as two 1-D passes)."""
    from pwfilter.engine import Separable

    if isinstance(kernel, Separable):
        dc = float(kernel.col.sum() * kernel.row.sum())
        r = 1 if kernel.col.any() and kernel.row.any() else 0
        return Response2D(tuple(kernel.shape), dc, _db(dc), r, True)
    k = np.asarray(kernel, dtype=np.float64)
    dc = float(k.sum())
    r = kernel_rank(k)
    return Response2D(tuple(k.shape), dc, _db(dc), r, None if r is None else r <= 1)


def kernel_rank(k: np.ndarray) -> int | None:
    """Numerical rank of a 2-D array by SVD, with the engine's tolerance (singular values
    below 1e-13 · side · the largest count as zero). None above :data:`MAX_SVD_SIDE` a side,
    unless it is rank 1 (checked without an SVD)."""
    from pwfilter import engine

    if max(k.shape) > MAX_SVD_SIDE:
        return 1 if engine.kernel_rank(k, 2)[0] == 1 else None
    s = np.linalg.svd(k, compute_uv=False)
    if s.size == 0 or s[0] == 0:
        return 0
    tol = engine.rank_tolerance(np.float64) * max(k.shape)
    return int((s > tol * s[0]).sum())


# ----------------------------------------------------------------- reports


def analysis_bytes(kernel) -> int:
    """Working memory of :func:`describe` (and of the plot), estimated before the work:
    a 1-D kernel's frequency grid (padded taps, transform, magnitude: ~48 bytes a point);
    a 2-D kernel's transform at its own size or more (~24 bytes a point) and its SVD
    (a few copies of the kernel). Channels are analysed one after another."""
    from pwfilter.engine import Separable

    shape = tuple(kernel.array.shape)
    if kernel.axes == 1:  # the plot's grid: up to 4x finer, below 2^22 points
        n = fft_size(shape[-1])
        return max(n, min(4 * n, 1 << 22)) * 48
    if isinstance(kernel.array, Separable):
        return 256 * 256 * 24 + sum(shape) * 48
    grid = math.prod(max(256, 1 << max(1, (n - 1).bit_length())) for n in shape[-2:])
    return grid * 24 + math.prod(shape[-2:]) * 8 * 4


def channels_of(kernel) -> list:
    """The kernel of each channel (one item for a kernel shared by every channel)."""
    return list(kernel.array) if kernel.per_channel else [kernel.array]


def describe(kernel) -> dict:
    """The numbers of a :class:`pwfilter.specs.StandaloneKernel` as one JSON-ready dict:
    what it is, then ``channels``, one analysis per channel (one item when shared)."""
    one_d = kernel.axes == 1
    d = {
        "kernel": kernel.name, "source": kernel.source, "axes": kernel.axes,
        "shape": list(kernel.array.shape), "per_channel": kernel.per_channel,
        "rate": kernel.rate or None,
        "frequency_unit": ("Hz" if kernel.rate else "cycles/sample") if one_d else None,
    }
    if kernel.design is not None:
        dz = kernel.design
        d["design"] = {"kind": dz.kind, "cutoffs": list(dz.cutoffs), "taps": dz.taps,
                       "window": "hamming", "transition": dz.transition}
    if one_d:
        ir = kernel.source == "impulse response"
        d["channels"] = [response_1d(h, kernel.rate, kernel.design, ir).to_dict()
                         for h in channels_of(kernel)]
    else:
        d["channels"] = [response_2d(k).to_dict() for k in channels_of(kernel)]
    return d


def _num(x: float | None, digits: int = 4) -> str:
    return "none" if x is None else f"{x:.{digits}g}"


def _dbs(db: float | None) -> str:
    return "-inf dB" if db is None else f"{round(db, 2) + 0.0:+.2f} dB"  # no "-0.00"


def _gain(x: float, db: float | None) -> str:
    return f"{x:.6g} ({_dbs(db)})"


def summary(d: dict) -> str:
    """A few readable lines from :func:`describe`'s dict (the same numbers, rounded)."""
    what = {"design": "FIR design", "impulse response": "impulse response"}.get(
        d["source"], "kernel")
    if d["axes"] == 2:
        shape = "x".join(map(str, d["shape"][-2:]))
        each = f", one for each of {d['shape'][0]} channels" if d["per_channel"] else ""
        lines = [f"{printable(d['kernel'])}: 2-D {what} {shape}{each}"]
        for i, c in enumerate(d["channels"]):
            who = f"  channel {i + 1}: " if d["per_channel"] else "  "
            rank = "rank unknown (too large for an SVD)" if c["rank"] is None else \
                f"rank {c['rank']} ({'separable' if c['separable'] else 'not separable'})"
            lines.append(f"{who}DC gain {_gain(c['dc_gain'], c['dc_gain_db'])}, {rank}")
        return "\n".join(lines)
    unit = "Hz" if d["rate"] else "cycles/sample"
    rate = f" at {d['rate']} Hz" if d["rate"] else ""
    shape = (f"{d['shape'][0]} channels x {d['shape'][1]} taps" if d["per_channel"] else
             f"{d['shape'][0]} tap{'s' if d['shape'][0] != 1 else ''}")
    lines = [f"{printable(d['kernel'])}: 1-D {what}, {shape}{rate}"]

    def freq(v):
        return "none" if v is None else "DC" if v == 0 else f"{_num(v, 5)} {unit}"

    for i, c in enumerate(d["channels"]):
        pad = "  "
        if d["per_channel"]:
            lines.append(f"  channel {i + 1}:")
            pad = "    "
        lines.append(f"{pad}gain at DC {_gain(c['dc_gain'], c['dc_gain_db'])}, at Nyquist "
                     f"{_gain(c['nyquist_gain'], c['nyquist_gain_db'])}; peak "
                     f"{_dbs(c['peak_gain_db'])} at {freq(c['peak_frequency'])}")
        edges = [f"-{n} dB: " + (" and ".join(map(freq, c[key])) or "none")
                 for n, key in ((3, "minus_3db"), (6, "minus_6db"))]
        lines.append(f"{pad}{edges[0]}; {edges[1]}; first null: {freq(c['first_null'])}")
        if c.get("passband_ripple_db") is not None:
            band = "; ".join(f"{_num(lo, 5)}-{_num(hi, 5)}" for lo, hi in c["passbands"])
            att = c.get("stopband_attenuation_db")
            lines.append(f"{pad}passband {band} {unit}: ripple {c['passband_ripple_db']:.3f} dB"
                         + ("" if att is None else f"; stopband attenuation {att:.1f} dB"))
        if c["group_delay_samples"] is None:
            delay = "group delay undefined (all taps zero)"
        else:
            ms = f" ({c['group_delay_samples'] / d['rate'] * 1000:.4g} ms)" if d["rate"] else ""
            delay = (f"group delay {c['group_delay_samples']:.6g} samples{ms}, "
                     + ("linear phase" if c["linear_phase"] else
                        f"at {freq(c['group_delay_at'])} (not linear phase)"))
        lines.append(f"{pad}{delay}")
        if c.get("length_seconds") is not None:
            decay = c["decay"]
            if decay["rt60_seconds"] is not None:
                rt = (f"RT60 {decay['rt60_seconds']:.3f} s ({decay['fit']}: energy decay "
                      f"fitted from {decay['fit_range_db'][0]:g} to "
                      f"{decay['fit_range_db'][1]:g} dB)")
            else:
                floor = decay["noise_floor_db"]
                rt = ("RT60 not measurable (the decay spans "
                      f"{'no' if floor is None else f'{-floor:.0f}'} dB above its noise floor;"
                      " T20 needs 35 dB)")
            lines.append(f"{pad}length {c['taps']} samples ({c['length_seconds']:.4g} s); {rt}")
    return "\n".join(lines)
