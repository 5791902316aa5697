"""Pictures of a kernel's response (``pwfilter kernel SPEC --plot FILE``): PNG or SVG.

1-D kernels: the magnitude response in dB on a log-frequency axis up to
Nyquist, beside the impulse response (and, for an impulse response file,
its energy decay with the RT60 fit). 2-D kernels: the kernel as a heat map
beside the magnitude of its 2-D spectrum. Per-channel kernels: one curve per
channel (1-D) or one row of panels per channel (2-D).

matplotlib is an optional extra (``pip install "pwfilter[plot]"``); only this
module imports it, with no pyplot and no global backend (a bare ``Figure``
draws with Agg for PNG and with the SVG backend for SVG).
"""

from __future__ import annotations

import math

import numpy as np

from pwfilter import response
from pwfilter.errors import PwfilterError

FORMATS = {".png": "png", ".svg": "svg"}

#: Lowest level drawn, below the highest peak (dB).
FLOOR_DB = 120.0
#: The log-frequency axis starts (at least) this many decades below Nyquist.
DECADES = 3
#: Points along a drawn curve: longer data are drawn as min/max envelopes per bin, which is
#: what the full curve would show at this size.
CURVE_POINTS = 1500
#: Channels drawn (curves or rows of panels); the title says when there are more.
MAX_CHANNELS = 8
#: Kernels up to this many taps a side show their values in the heat map's cells.
ANNOTATE_SIDE = 7


def plot_format(path: str) -> str:
    """``png`` or ``svg`` from the file's extension (anything else is an error)."""
    for ext, fmt in FORMATS.items():
        if path.lower().endswith(ext):
            return fmt
    raise PwfilterError(f"--plot {path}: the extension says the format: .png or .svg")


def require_matplotlib():
    """matplotlib, or an error naming the install command when the ``plot`` extra is
    missing."""
    try:
        import matplotlib
    except ImportError:
        raise PwfilterError('--plot needs matplotlib: pip install "pwfilter[plot]"') from None
    return matplotlib


def draw(kernel, fh, fmt: str) -> None:
    """Draw the response of a :class:`pwfilter.specs.StandaloneKernel` into the binary file
    object ``fh`` as ``fmt`` (``png`` or ``svg``)."""
    matplotlib = require_matplotlib()
    from matplotlib.figure import Figure

    channels = response.channels_of(kernel)
    shown = channels[:MAX_CHANNELS]
    more = (f" (channels 1-{len(shown)} of {len(channels)})" if len(channels) > len(shown)
            else "")
    # SVG text as text (searchable, small), ids stable from run to run
    with matplotlib.rc_context({"svg.hashsalt": "pwfilter", "svg.fonttype": "none",
                                "font.size": 9,
                                "axes.titlesize": 10, "image.interpolation": "nearest"}):
        if kernel.axes == 1:
            ir = kernel.source == "impulse response" and kernel.rate
            fig = Figure(figsize=(15 if ir else 11, 4.2), layout="constrained")
            axes = fig.subplots(1, 3 if ir else 2, width_ratios=[3, 2, 2] if ir else [3, 2])
            _magnitude(axes[0], shown, kernel.rate)
            _impulse(axes[1], shown, kernel.rate)
            if ir:
                _decay(axes[2], shown, kernel.rate)
        else:
            fig = Figure(figsize=(10, 4.2 * len(shown)), layout="constrained")
            axes = np.atleast_2d(fig.subplots(len(shown), 2))
            for i, k in enumerate(shown):
                who = f"channel {i + 1}: " if kernel.per_channel else ""
                _heat_map(fig, axes[i, 0], k, who)
                _spectrum(fig, axes[i, 1], k, who)
        fig.suptitle(_title(kernel) + more, fontsize=11)
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(fh, format=fmt, dpi=100, metadata=metadata)


def _title(kernel) -> str:
    """The figure's title: the kernel's name as given (a ``$`` kept literal, not read as
    matplotlib's math), what it is, its size and rate."""
    name = kernel.name.replace("$", r"\$")
    shape = kernel.array.shape
    if kernel.axes == 2:
        size = f"{shape[-2]}x{shape[-1]}"
        return f"{name}: 2-D kernel {size}" + (
            f", one per channel ({shape[0]})" if kernel.per_channel else "")
    taps = f"{shape[-1]} taps"
    rate = f" at {kernel.rate} Hz" if kernel.rate else ""
    what = {"design": "FIR design", "impulse response": "impulse response"}.get(
        kernel.source, "kernel")
    return f"{name}: {what}, {taps}{rate}" + (
        f", {shape[0]} channels" if kernel.per_channel else "")


def _db_range(peak: float) -> tuple[float, float]:
    """The dB scale: from a round number at least 3 dB above the peak down to a round
    number :data:`FLOOR_DB` below it (0 dB peak: +10 to -120 dB)."""
    peak = peak if math.isfinite(peak) else 0.0
    return 10 * math.ceil((peak + 3) / 10), 10 * math.floor((peak - FLOOR_DB) / 10)


def _label(kernel_count: int, i: int) -> str | None:
    return f"channel {i + 1}" if kernel_count > 1 else None


def _envelope(x: np.ndarray, y: np.ndarray, edges: np.ndarray):
    """Per bin of ``edges`` (on ``x``): the bins' centres, and y's min and max in each (empty
    bins are dropped), so that a long curve is drawn as what it would look like."""
    idx = np.searchsorted(x, edges)
    keep = idx[1:] > idx[:-1]
    # Empty bins have no width, so each kept bin runs exactly to the next kept one's start,
    # as reduceat reads it (the last to the end: no x lies beyond the last edge).
    starts = idx[:-1][keep]
    if not starts.size:
        return np.empty(0), np.empty(0), np.empty(0)
    centre = 0.5 * (edges[:-1] + edges[1:])[keep]
    return centre, np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)


def _magnitude(ax, kernels, rate: int) -> None:
    unit = "Hz" if rate else "cycles/sample"
    scale = rate or 1.0
    nyq = 0.5 * scale
    # Three decades, or down to a fifth of 1/taps for long kernels (whose main lobe is
    # that narrow), but not below the grid's first point. The grid is four times the
    # numbers' (up to 2^22 points): a log axis spreads its lowest bins wide.
    taps = max(h.size for h in kernels)
    n_fft = max(response.fft_size(taps), min(4 * response.fft_size(taps), 1 << 22))
    lowest = max(min(0.5 * 10 ** -DECADES, 0.2 / taps), 1 / n_fft) * scale
    edges = np.geomspace(lowest, nyq, CURVE_POINTS + 1)
    edges[0] *= 1 - 1e-12  # the first and last grid points belong to the bins at the ends
    edges[-1] *= 1 + 1e-12
    curves = []
    for h in kernels:
        f, mag = response.magnitude(h, n_fft)
        with np.errstate(divide="ignore"):
            db = 20 * np.log10(mag)
        curves.append(_envelope(f * scale, db, edges))
    peak = max((c[2].max() for c in curves if c[2].size), default=0.0)
    top, floor = _db_range(peak)
    for i, (x, lo, hi) in enumerate(curves):
        lo, hi = np.maximum(lo, floor - 1), np.maximum(hi, floor - 1)
        line, = ax.plot(x, hi, lw=1.0, label=_label(len(kernels), i))
        if (hi - lo).max(initial=0) > 0.5:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.3, lw=0)
    ax.set_xscale("log")
    ax.set_xlim(lowest, nyq)
    ax.set_ylim(floor, top)
    ax.set_xlabel(f"frequency ({unit})")
    ax.set_ylabel("magnitude (dB)")
    ax.set_title(f"magnitude response (Nyquist {nyq:g} {unit})")
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", alpha=0.15)
    if len(kernels) > 1:
        ax.legend(loc="lower left")


def _time_axis(n: int, rate: int) -> tuple[float, str]:
    """Scale from samples and the axis label: ms or s with a rate, samples without."""
    if not rate:
        return 1.0, "sample"
    return (1000.0 / rate, "time (ms)") if n / rate < 1 else (1.0 / rate, "time (s)")


def _impulse(ax, kernels, rate: int) -> None:
    n = max(h.size for h in kernels)
    scale, label = _time_axis(n, rate)
    for i, h in enumerate(kernels):
        t = np.arange(h.size) * scale
        name = _label(len(kernels), i)
        if h.size <= 128:
            marker = "o" if h.size <= 64 else None
            markers, stems, base = ax.stem(t, h, basefmt=" ", label=name)
            markers.set_markersize(3 if marker else 0)
            stems.set_linewidth(1.0)
            color = f"C{i}"
            markers.set_color(color)
            stems.set_color(color)
        elif h.size <= 4 * CURVE_POINTS:
            ax.plot(t, h, lw=0.8, label=name)
        else:
            edges = np.linspace(0, h.size, CURVE_POINTS + 1) * scale
            x, lo, hi = _envelope(t, h, edges)
            ax.fill_between(x, lo, hi, lw=0.4, alpha=0.6, label=name, color=f"C{i}")
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_xlabel(label)
    ax.set_ylabel("amplitude")
    ax.set_title("impulse response")
    ax.grid(True, alpha=0.4)
    if len(kernels) > 1:
        ax.legend(loc="upper right")


def _decay(ax, kernels, rate: int) -> None:
    n = max(h.size for h in kernels)
    scale, label = _time_axis(n, rate)
    for i, h in enumerate(kernels):
        d = response.rt60(h, rate)
        edc = response.energy_decay_db(h[:max(2, round(d.integrated_seconds * rate))])
        t = np.arange(edc.size) * scale
        step = max(1, edc.size // (4 * CURVE_POINTS))
        rt = "not measurable" if d.rt60_seconds is None else f"{d.rt60_seconds:.3g} s ({d.fit})"
        who = f"channel {i + 1}: " if len(kernels) > 1 else ""
        ax.plot(t[::step], np.maximum(edc[::step], -150), lw=1.0, color=f"C{i}",
                label=f"{who}RT60 {rt}")
        if d.rt60_seconds is not None:
            line_t = np.array([0.0, d.rt60_seconds])
            ax.plot(line_t * rate * scale, d.intercept_db + d.slope_db_per_second * line_t,
                    "--", lw=0.9, color=f"C{i}", alpha=0.8)
    ax.axhline(-60, color="0.5", lw=0.6, ls=":")
    ax.set_ylim(-100, 5)
    ax.set_xlim(0, n * scale)
    ax.set_xlabel(label)
    ax.set_ylabel("energy remaining (dB)")
    ax.set_title("energy decay (Schroeder) and its fit")
    ax.grid(True, alpha=0.4)
    ax.legend(loc="upper right")


def _sampled(kernel, side: int = 256):
    """The kernel's values for a heat map (every s-th tap when larger than ``side``) and
    the step s per axis."""
    from pwfilter.engine import Separable

    shape = kernel.shape
    steps = [max(1, math.ceil(n / side)) for n in shape]
    if isinstance(kernel, Separable):
        return np.outer(kernel.col[::steps[0]], kernel.row[::steps[1]]), steps
    return np.asarray(kernel, dtype=np.float64)[::steps[0], ::steps[1]], steps


def _heat_map(fig, ax, kernel, who: str) -> None:
    k, (sy, sx) = _sampled(kernel)
    kh, kw = kernel.shape
    limit = float(np.abs(k).max()) or 1.0
    im = ax.imshow(k, cmap="RdBu_r", vmin=-limit, vmax=limit,
                   extent=(-0.5, kw - 0.5, kh - 0.5, -0.5))
    if max(kh, kw) <= ANNOTATE_SIDE:
        for (r, c), v in np.ndenumerate(k):
            ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * limit else "black")
    fig.colorbar(im, ax=ax, shrink=0.85, label="weight")
    every = f" (every {sy}x{sx} taps shown)" if sy > 1 or sx > 1 else ""
    ax.set_title(f"{who}kernel {kh}x{kw}{every}")
    ax.set_xlabel("column (pixels)")
    ax.set_ylabel("row (pixels)")


def _spectrum(fig, ax, kernel, who: str) -> None:
    freqs, mag = response.spectrum_2d(kernel)
    with np.errstate(divide="ignore"):
        db = 20 * np.log10(mag)
    top, floor = _db_range(float(db.max()))
    db = np.maximum(db, floor)
    half = 0.5 / freqs.size
    extent = (freqs[0] - half, freqs[-1] + half, freqs[0] - half, freqs[-1] + half)
    im = ax.imshow(db, cmap="viridis", origin="lower", extent=extent,
                   vmin=floor, vmax=top)
    fig.colorbar(im, ax=ax, shrink=0.85, label="magnitude (dB)")
    ax.set_title(f"{who}magnitude of the 2-D response")
    ax.set_xlabel("horizontal frequency (cycles/pixel)")
    ax.set_ylabel("vertical frequency (cycles/pixel)")
