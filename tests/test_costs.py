"""The cost model's constants: shipped, stored by ``pwfilter calibrate``, used by ``auto``.

Checks that the stored file is where XDG says, that a damaged or outdated one is
ignored, that ``auto`` really decides with the stored constants, that the fit
recovers known constants, and the whole ``calibrate`` command in a subprocess.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from pwfilter import calibrate, costs, engine

from conftest import ROOT, write_png


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty XDG cache folder for this test; the model is re-read from it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    costs.current.cache_clear()
    yield tmp_path / "cache" / "pwfilter" / "costs.json"
    costs.current.cache_clear()


def _scaled(factor: dict[str, float]) -> dict:
    return {f: {t: v * factor.get(f, 1.0) for t, v in terms.items()}
            for f, terms in costs.SHIPPED.items()}


def test_cache_path_follows_xdg(cache):
    if os.name == "posix" and not os.uname().sysname == "Darwin":
        assert costs.cache_path() == str(cache)


def test_without_a_stored_model_the_shipped_one_is_used(cache):
    c = costs.current()
    assert c.constants == costs.SHIPPED and "shipped" in c.source


@pytest.mark.parametrize("body", ["{not json", json.dumps({"model": -1, "constants": {}}),
                                  json.dumps({"model": costs.MODEL_VERSION,
                                              "constants": {"fft_2d": {"per_nlogn": -1}}})])
def test_a_damaged_or_outdated_file_is_ignored_and_said(cache, body):
    cache.parent.mkdir(parents=True)
    cache.write_text(body)
    c = costs.current()
    assert c.constants == costs.SHIPPED
    assert str(cache) in c.source


def test_a_model_measured_with_other_libraries_is_ignored(cache, monkeypatch):
    """Constants timed with OpenCV do not describe ndimage's sliding sums (4x slower)."""
    costs.store(_scaled({"fft_2d": 1e-6}), "test")
    assert "calibrated" in costs.current().source
    stored = json.loads(cache.read_text())
    stored["backend"] = stored["backend"].replace("opencv", "ndimage").replace("ndimage", "x")
    cache.write_text(json.dumps(stored))
    costs.current.cache_clear()
    c = costs.current()
    assert c.constants == costs.SHIPPED and "was measured with" in c.source


def test_stored_constants_decide_auto(cache):
    """With FFTs made (falsely) free a 3x3 kernel goes to the FFT; with sliding sums made
    free a 31x31 kernel goes direct — so auto reads the stored file."""
    x = np.zeros((200, 300, 3), np.uint8)
    small, large = np.ones((3, 3)) + np.eye(3), np.random.default_rng(0).random((31, 31))
    assert engine.plan(x, small).method in ("direct", "separable")
    assert engine.plan(x, large).method == "fft"
    costs.store(_scaled({"fft_2d": 1e-6}), "test")
    p = engine.plan(x, small)
    assert p.method == "fft" and "calibrated" in p.model and "calibrated" in p.describe()
    costs.store(_scaled({"direct_2d": 1e-6}), "test")
    assert engine.plan(x, large).method == "direct"


def test_fit_recovers_known_constants():
    rng = np.random.default_rng(3)
    true = np.array([2e-10, 5e-9, 3e-4])
    rows = [(list(t), float(t @ true)) for t in
            (np.array([rng.uniform(1e5, 1e9), rng.uniform(1e4, 1e7), 1.0]) for _ in range(20))]
    np.testing.assert_allclose(calibrate._fit(rows), true, rtol=1e-6)


@pytest.mark.parametrize("method, shape, kshape", [
    ("direct", (300, 400, 3), (5, 5)), ("direct", (300, 400, 3), (13, 13)),
    ("separable", (300, 400, 3), (9, 9)), ("fft", (300, 400, 3), (31, 31)),
    ("direct", (48_000, 2), (255,)), ("fft", (48_000, 2), (1001,)), ("oa", (480_000, 2), (1001,))])
def test_calibration_terms_reproduce_the_engine_formulas(method, shape, kshape):
    """calibrate._terms, times any constants, is what engine predicts with them: the
    fit and the chooser use the same formulas."""
    rng = np.random.default_rng(4)
    constants = {f: {t: float(rng.uniform(1e-11, 1e-8)) for t in terms}
                 for f, terms in costs.TERMS.items()}
    model = costs.Costs(constants, "random")
    g = engine.geometry(shape, kshape, "full" if len(shape) == 2 else "same", 4)
    formula = {"direct": "direct_1d" if g.ndim == 1 else "direct_2d", "separable": "separable",
               "fft": "fft_1d" if g.ndim == 1 else "fft_2d", "oa": "oa_1d"}[method]
    terms = calibrate._terms(method, g, 1)
    predicted = sum(v * constants[formula][t] for v, t in zip(terms, costs.TERMS[formula]))
    allow = (method,)
    want = (engine._cost_separable(g, 1, model) if method == "separable"
            else engine.choose_method(g, rank=1, allow=allow, model=model).costs[method])
    assert math.isclose(predicted, want, rel_tol=1e-9)


def test_calibrate_command_stores_a_model_that_blur_then_uses(tmp_path):
    """``pwfilter calibrate --quick --json`` in a real process: every constant finite and
    not negative, the file written where XDG says, and ``-v`` names it afterwards."""
    import subprocess
    import sys

    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "c"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "pwfilter", "calibrate", "--quick", "--json"],
                       capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    stored = json.loads((tmp_path / "c" / "pwfilter" / "costs.json").read_text())
    assert out["path"] == str(tmp_path / "c" / "pwfilter" / "costs.json")
    assert stored["model"] == costs.MODEL_VERSION and costs.valid(stored["constants"])
    assert set(out["constants"]) == set(costs.TERMS)
    src = write_png(tmp_path / "in.png",
                    np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    r = subprocess.run([sys.executable, "-m", "pwfilter", "blur", str(src), "-o",
                        str(tmp_path / "o.png"), "-v"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "calibrated on this machine" in r.stderr, r.stderr
