"""``pwfilter calibrate``: time every method on this machine and fit the cost model.

Each formula of :func:`pwfilter.engine.choose_method` is linear in its
constants, so they are fitted by non-negative least squares on the measured
times of ``engine.convolve`` itself (threads, conversions, copies included),
every size weighted alike (relative errors). The problems are the ones the
commands meet: 8-bit RGB images from 0.1 to 12 MP with small and large
kernels, blurs, and stereo audio from one second to a minute with short
filters and long impulse responses. The whole run takes 10-30 s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from pwfilter import costs, engine


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _fit(rows: list[tuple[list[float], float]]) -> list[float]:
    from scipy.optimize import nnls

    a = np.array([f for f, _ in rows], dtype=np.float64)
    t = np.array([t for _, t in rows], dtype=np.float64)
    weight = 1.0 / t  # relative error: every size counts alike
    coef, _ = nnls(a * weight[:, None], t * weight)
    return [float(c) for c in coef]


def _terms(method: str, g: engine.Geometry, rank: int = 1, symmetric: bool = False
           ) -> list[float]:
    """The multipliers of each constant in ``method``'s formula for geometry ``g``
    (the formulas of :mod:`pwfilter.engine`, with every constant set to 1 in turn)."""
    unit = {name: dict.fromkeys(terms, 0.0) for name, terms in costs.TERMS.items()}
    formula = {"direct": "direct_1d" if g.ndim == 1 else "direct_2d", "separable": "separable",
               "fft": "fft_2d" if g.ndim == 2 else "fft_1d", "oa": "oa_1d"}[method]
    out = []
    for term in costs.TERMS[formula]:
        probe = {name: dict(v) for name, v in unit.items()}
        probe[formula][term] = 1.0
        model = costs.Costs(probe, "probe")
        if method == "direct":
            value = engine._cost_direct(g, model)
        elif method == "separable":
            value = engine._cost_separable(g, rank, model, symmetric)
        elif g.ndim == 2:
            value = engine._cost_fft_image(g, model)[0]
        elif method == "fft":
            value = engine._cost_fft_signal(g, model)
        else:
            value = engine._cost_oa(g, model)[0]
        out.append(value)
    return out


def measure(*, quick: bool = False, progress: Callable[[str], None] | None = None
            ) -> dict[str, list[tuple[list[float], float]]]:
    """Time the methods on this machine; return each formula's (terms, seconds) rows.

    Every problem is timed in every one of a few rounds, the problems taking
    turns in a rotating order, and its best time is kept: on a shared machine
    some runs are slowed down (never sped up), and slow spells then fall on
    all problems alike rather than on the few timed during them. Fast
    problems run several times per round.
    """
    rng = np.random.default_rng(0)
    rounds = 2 if quick else 3
    jobs: list[tuple[str, list[float], Callable[[], object]]] = []
    images = [(300, 400), (750, 1000), (1500, 2000)] + ([] if quick else [(3000, 4000)])

    def add(formula, method, x, kernel, mode, boundary, rank=1, scale=1.0):
        dtype = engine.float_type(x)
        g = engine.geometry(x.shape, kernel.shape, mode, np.dtype(dtype).itemsize)
        p = engine.plan(x, kernel, mode=mode, method=method)
        symmetric = rank == 1 and g.ndim == 2 and engine.symmetric_factors(kernel)
        jobs.append((formula, _terms(method, g, rank, symmetric),
                     lambda: engine.convolve(x, kernel, mode=mode, boundary=boundary, chosen=p,
                                             scale=scale)))

    for h, w in images:
        x = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        big = h * w > 3_000_000
        for k in (3, 5, 9, 15) if not big else (5,):
            kern = rng.random((k, k)).astype(np.float32) + 0.5
            add("direct_2d", "direct", x, kern, "same", "reflect", scale=1 / 255)
        for sigma in (1.0, 2.0, 5.0, 12.0) if not big else (2.0, 20.0):
            add("separable", "separable", x, _gaussian(sigma), "same", "reflect", scale=1 / 255)
        for rank, k in ((2, 5), (3, 9)) if not big else ():
            kern = sum(np.outer(rng.random(k), rng.random(k)) for _ in range(rank))
            add("separable", "separable", x, kern.astype(np.float32), "same", "reflect", rank,
                scale=1 / 255)
        for k in (15, 63) if not big else (31,):
            kern = rng.random((k, k)).astype(np.float32)
            add("fft_2d", "fft", x, kern, "same", "reflect", scale=1 / 255)
        add("fft_2d", "fft", x, _gaussian(8.0 if not big else 20.0), "same", "reflect",
            scale=1 / 255)
    for seconds in (1, 10, 60) if not quick else (1, 10):
        a = rng.standard_normal((48_000 * seconds, 2), dtype=np.float32)
        for taps in (7, 31, 129, 255, 511, 1001):
            add("direct_1d", "direct", a, rng.standard_normal(taps).astype(np.float32), "full",
                "zero")
        for taps in (255, 1001, 24_000):
            add("fft_1d", "fft", a, rng.standard_normal(taps).astype(np.float32), "full",
                "zero")
        for taps in (255, 1001, 4001, 24_000):
            add("oa_1d", "oa", a, rng.standard_normal(taps).astype(np.float32), "full", "zero")
    if progress:
        progress(f"{len(jobs)} problems: warm-up")
    best = [_timed(fn) for _, _, fn in jobs]  # also warms up: page faults, plans, threads
    runs = [max(1, math.ceil(0.02 / t)) for t in best]
    for r in range(rounds):
        if progress:
            progress(f"{len(jobs)} problems: round {r + 1} of {rounds}")
        shift = r * len(jobs) // rounds
        for i in list(range(shift, len(jobs))) + list(range(shift)):
            for _ in range(runs[i]):
                best[i] = min(best[i], _timed(jobs[i][2]))
    rows: dict[str, list] = {name: [] for name in costs.TERMS}
    for (formula, terms, _), t in zip(jobs, best):
        rows[formula].append((terms, t))
    return rows


def _gaussian(sigma: float) -> engine.Separable:
    from pwfilter.ops import blur_kernel

    return blur_kernel("gaussian", 2, sigma=sigma).astype(np.float32)


def fit(rows: dict[str, list[tuple[list[float], float]]]) -> dict[str, dict[str, float]]:
    """Constants of every formula from measured rows (shipped ones where none were measured)."""
    out = {}
    for formula, terms in costs.TERMS.items():
        if rows.get(formula):
            out[formula] = dict(zip(terms, _fit(rows[formula])))
        else:
            out[formula] = dict(costs.SHIPPED[formula])
    return out


def calibrate(*, quick: bool = False, progress: Callable[[str], None] | None = None
              ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Measure and fit; return the constants and each formula's worst relative error."""
    rows = measure(quick=quick, progress=progress)
    constants = fit(rows)
    errors = {}
    for formula, measured in rows.items():
        if not measured:
            continue
        c = constants[formula]
        pred = [sum(v * c[t] for v, t in zip(terms, costs.TERMS[formula]))
                for terms, _ in measured]
        errors[formula] = max(abs(p / t - 1) for p, (_, t) in zip(pred, measured))
    return constants, errors
