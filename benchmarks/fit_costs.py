"""Fit the cost model's constants (pwfilter/_fitted.py) on this machine.

    python benchmarks/fit_costs.py            # print the fitted constants
    python benchmarks/fit_costs.py --write    # and rewrite pwfilter/_fitted.py

Each method of the engine is timed on a grid of sizes through
``engine.convolve(method=...)`` itself (so padding, threads and copies are
included), and the constants of its cost formula (see
``engine.choose_method``) are fitted by non-negative least squares on
relative errors.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
from scipy.optimize import nnls

from pwfilter import _fitted, engine


def best_time(fn, repeat: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def fit(rows: list[tuple[list[float], float]]) -> np.ndarray:
    a = np.array([f for f, _ in rows], dtype=np.float64)
    t = np.array([t for _, t in rows], dtype=np.float64)
    w = 1.0 / t  # relative error: every size counts alike
    coef, _ = nnls(a * w[:, None], t * w)
    return coef


def measure(rng) -> dict:
    imgs = [(300, 400), (750, 1000), (1500, 2000)]
    out = {}

    def direct_rows(inputs, kernels, mode, boundary):
        rows = []
        for x in inputs:
            for kern in kernels:
                g = engine.geometry(x.shape, kern.shape, mode)
                t = best_time(lambda: engine.convolve(x, kern, mode=mode, boundary=boundary,
                                                      method="direct"))
                padded = math.prod(g.padded) * g.channels
                rows.append(([padded * g.taps, padded, 1.0], t))
        return rows

    out["DIRECT_ND"] = fit(direct_rows(
        [rng.random((h, w, 3), dtype=np.float32) for h, w in imgs],
        [rng.random((k, k)).astype(np.float32) + 0.5 for k in (3, 5, 9, 15)], "same", "reflect"))
    rows = direct_rows(
        [rng.random((n, 2), dtype=np.float32) for n in (48_000, 480_000, 2_880_000)],
        [rng.random(m).astype(np.float32) for m in (3, 15, 63, 255)], "full", "zero")
    out["DIRECT_1D"] = fit(rows)

    rows = []
    for h, w in imgs:
        x = rng.random((h, w, 3), dtype=np.float32)
        for k in (3, 9, 17, 33):
            v = rng.random(k) + 0.5
            kern = np.outer(v, v).astype(np.float32)
            g = engine.geometry(x.shape, kern.shape, "same")
            t = best_time(lambda: engine.convolve(x, kern, boundary="reflect",
                                                  method="separable"))
            samples0 = g.padded[0] * g.padded[1] * 3
            samples1 = g.out_shape[0] * g.padded[1] * 3
            rows.append(([samples0 * k + samples1 * k, samples0 + samples1, 1.0], t))
    out["DIRECT_SEP"] = fit(rows)

    rows = []
    for h, w in imgs + [(3000, 4000)]:
        x = rng.random((h, w, 3), dtype=np.float32)
        for sigma in (25, 50):
            v = np.exp(-0.5 * (np.arange(-4 * sigma, 4 * sigma + 1) / sigma) ** 2)
            kern = np.outer(v, v).astype(np.float32)
            k = kern.shape[0]
            g = engine.geometry(x.shape, kern.shape, "same")
            t = best_time(lambda: engine.convolve(x, kern, boundary="reflect",
                                                  method="separable"))
            samples0 = g.padded[0] * g.padded[1] * 3
            samples1 = g.out_shape[0] * g.padded[1] * 3
            nlogn = sum(s / n * engine._fast_len(n) * math.log2(engine._fast_len(n))
                        for s, n in ((samples0, g.padded[0]), (samples1, g.padded[1])))
            rows.append(([nlogn, samples0 + samples1], t))
            del k
    out["FFT_1D"] = fit(rows)

    rows = []
    for h, w in imgs + [(3000, 4000)]:
        x = rng.random((h, w, 3), dtype=np.float32)
        for k in (15, 63, 201):
            kern = rng.random((k, k)).astype(np.float32)
            g = engine.geometry(x.shape, kern.shape, "same")
            t = best_time(lambda: engine.convolve(x, kern, boundary="zero", method="fft"))
            sizes = engine._fft_sizes(g)
            rows.append(([engine._nlogn(sizes, g.channels) + engine._nlogn(sizes, 1),
                          math.prod(sizes) * g.channels, 1.0], t))
    for n in (48_000, 480_000, 2_880_000):
        x = rng.random((n, 2), dtype=np.float32)
        kern = rng.random(4801).astype(np.float32)
        g = engine.geometry(x.shape, kern.shape, "full")
        t = best_time(lambda: engine.convolve(x, kern, mode="full", method="fft"))
        sizes = engine._fft_sizes(g)
        rows.append(([engine._nlogn(sizes, g.channels) + engine._nlogn(sizes, 1),
                      math.prod(sizes) * g.channels, 1.0], t))
    out["FFT"] = fit(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite pwfilter/_fitted.py")
    args = ap.parse_args()
    coefs = measure(np.random.default_rng(0))
    names = {"DIRECT_ND": ("per_mac", "per_sample", "fixed"),
             "DIRECT_1D": ("per_mac", "per_sample", "fixed"),
             "DIRECT_SEP": ("per_mac", "per_sample", "fixed"),
             "FFT": ("per_nlogn", "per_sample", "fixed"),
             "FFT_1D": ("per_nlogn", "per_sample")}
    lines = []
    for key, c in coefs.items():
        body = ", ".join(f'"{n}": {v:.3e}' for n, v in zip(names[key], c))
        lines.append(f"{key} = {{{body}}}")
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = os.path.join(os.path.dirname(_fitted.__file__), "_fitted.py")
        doc = _fitted.__doc__.strip()
        with open(path, "w") as fh:
            fh.write(f'"""{doc}\n"""\n\n{text}\n')
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
