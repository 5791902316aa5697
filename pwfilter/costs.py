"""The cost model's constants: this machine's own after ``pwfilter calibrate``, else shipped ones.

:func:`pwfilter.engine.choose_method` predicts each method's time from the
problem's sizes with a few constants per method (seconds per multiply-add,
per sample, per ``n log2 n`` of a transform, per call). They depend on the
machine: its cores, caches and vector units. ``pwfilter calibrate`` times the
methods here and stores the fitted constants in the user's cache folder
(``$XDG_CACHE_HOME/pwfilter/costs.json``, by default
``~/.cache/pwfilter/costs.json``); ``--method auto`` uses them when present,
the shipped defaults below otherwise (fitted on a 2-core x86-64 machine with
the same procedure).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass

#: Version of the model's formulas: constants stored for another version are ignored.
MODEL_VERSION = 6

#: Constant names of each formula (see :func:`pwfilter.engine.choose_method`).
TERMS = {
    "direct_2d": ("per_mac", "per_sample", "fixed"),
    "direct_1d": ("per_mac", "per_sample", "fixed"),
    "separable": ("per_mac", "per_sample", "fixed"),
    "fft_2d": ("per_nlogn", "per_sample", "fixed"),
    "fft_1d": ("per_nlogn", "per_spill", "per_sample", "fixed"),
    "oa_1d": ("per_nlogn", "per_spill", "per_sample", "per_block", "fixed"),
}

#: Fitted by benchmarks/fit_costs.py on a 2-core x86_64 (Intel(R) Xeon(R) Processor),
#: x86_64 opencv fft=pocketfft.
SHIPPED = {
    "direct_2d": {"per_mac": 2.249e-11, "per_sample": 2.951e-10, "fixed": 3.677e-04},
    "direct_1d": {"per_mac": 2.346e-11, "per_sample": 3.767e-10, "fixed": 3.295e-05},
    "separable": {"per_mac": 1.459e-11, "per_sample": 3.934e-10, "fixed": 1.506e-04},
    "fft_2d": {"per_nlogn": 2.000e-10, "per_sample": 0.000e+00, "fixed": 7.377e-04},
    "fft_1d": {
        "per_nlogn": 3.291e-10,
        "per_spill": 5.407e-10,
        "per_sample": 0.000e+00,
        "fixed": 0.000e+00,
    },
    "oa_1d": {
        "per_nlogn": 5.051e-11,
        "per_spill": 9.241e-10,
        "per_sample": 1.819e-09,
        "per_block": 0.000e+00,
        "fixed": 0.000e+00,
    },
}


@dataclass(frozen=True)
class Costs:
    """Constants of every formula, and where they come from (for ``-v``)."""

    constants: dict[str, dict[str, float]]
    source: str

    def __getitem__(self, formula: str) -> dict[str, float]:
        return self.constants[formula]


def cache_path() -> str:
    """Where ``pwfilter calibrate`` stores this machine's constants (XDG cache folder)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "pwfilter", "costs.json")


def valid(constants) -> bool:
    """Every formula's constants present, finite and not negative."""
    try:
        return all(all(float(constants[f][t]) >= 0 and float(constants[f][t]) < 1.0
                       for t in terms) for f, terms in TERMS.items())
    except (KeyError, TypeError, ValueError):
        return False


def backend() -> str:
    """What evaluates the methods here: the machine, the sliding sums' library, the FFT's."""
    import platform

    from pwfilter import fft, spatial

    return (f"{platform.machine()} {spatial.backend()} "
            f"fft={'pocketfft' if fft._pocketfft() is not None else 'scipy.fft'}")


@functools.cache
def current() -> Costs:
    """This machine's calibrated constants if stored (of this model, measured with the
    libraries in use now), else the shipped ones. The source says which, and why."""
    from pwfilter import spatial

    path = cache_path()
    here = backend()
    shipped = f"shipped cost model ({spatial.backend()})"
    try:
        with open(path, encoding="utf-8") as fh:
            stored = json.load(fh)
    except FileNotFoundError:
        return Costs(SHIPPED, shipped[:-1] + "; run 'pwfilter calibrate' to fit this machine)")
    except (OSError, ValueError):
        return Costs(SHIPPED, shipped[:-1] + f"; {path} is unreadable)")
    if stored.get("model") != MODEL_VERSION or not valid(stored.get("constants")):
        return Costs(SHIPPED, shipped[:-1] + f"; {path} is from another version: "
                              "run 'pwfilter calibrate' again)")
    if stored.get("backend", here) != here:
        return Costs(SHIPPED, shipped[:-1] + f"; {path} was measured with "
                              f"{stored['backend']}, not {here})")
    when = stored.get("date", "an earlier run")
    return Costs({f: {t: float(stored["constants"][f][t]) for t in terms}
                  for f, terms in TERMS.items()},
                 f"cost model calibrated on this machine {when} ({spatial.backend()})")


def store(constants: dict, date: str) -> str:
    """Write ``constants``, measured now with :func:`backend`, to the cache file
    (atomically); return its path."""
    from pwfilter.output import atomic_path, open_new

    path = cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = json.dumps({"model": MODEL_VERSION, "date": date, "backend": backend(),
                       "constants": constants}, indent=1)
    with atomic_path(path, overwrite=True) as tmp:
        with open_new(tmp, "w") as fh:
            fh.write(body + "\n")
    current.cache_clear()
    return path
