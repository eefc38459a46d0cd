"""The ``network_memorization`` experiment: its smoke rows and its own estimators (the
boundary crossing with its censored bounds and error, the capacity exponent fit, the
parameter count). The checks every experiment gets (smoke
agrees, a shifted prediction disagrees in every row, trainings are reused) are in
tests/test_validation.py; the smoke run is the session fixture ``smoke`` (conftest.py).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("torch")

from physdiff.errors import InputError  # noqa: E402
from validation import experiments  # noqa: E402
from validation.experiments import network_memorization as NM  # noqa: E402
from validation.training import NetSpec  # noqa: E402


def test_registered():
    assert "network_memorization" in experiments.EXPERIMENTS
    assert experiments.load("network_memorization") is NM
    assert set(NM.PRESETS) == {"smoke", "cpu", "gpu"}
    for cfg in NM.PRESETS.values():
        NM.check(cfg)


@pytest.mark.parametrize(
    "bad",
    [
        {"ns": (4,)},  # one size: no boundary
        {"ns": (16, 4)},  # not increasing
        {"variance": 0.0},
        {"widths": ()},
        {"level": 1.0},
        {"dims": (), "digits": False},
        {"digits": True, "digits_ns": (4, 2000)},  # more than the 1797 digits
    ],
)
def test_check_rejects_bad_input(bad):
    with pytest.raises(InputError):
        NM.check(dataclasses.replace(NM.PRESETS["smoke"], **bad))


def test_smoke_rows(smoke):
    _, results = smoke
    cfg = NM.PRESETS["smoke"]
    rows = results["network_memorization"].rows
    exact = [r for r in rows if r.quantity.startswith("exact")]
    cap = [r for r in rows if "capacity line n* d = P" in r.quantity]
    expo = [r for r in rows if r.quantity.startswith("boundary exponent")]
    assert len(exact) == len(cfg.dims) * len(cfg.ns)  # collapse predicted at every n
    assert len(cap) == len(cfg.dims) * len(cfg.widths)
    assert len(rows) == len(exact) + len(cap) + len(expo)
    assert not expo  # two widths: no exponent row (needs three located boundaries)
    for r in exact:
        assert r.predicted == 1.0 and r.extra["delta_C"] > 4e-6
    for r in cap:
        e = r.extra
        assert r.predicted == pytest.approx(math.log(e["parameters"] / cfg.dims[0]))
        assert e["parameters"] == NM.parameter_count(
            NetSpec(cfg.dims[0], e["hidden"], cfg.net.depth, cfg.net.embed_dim)
        )
        assert e["censored"] in ("", ">", "<") and math.isfinite(r.measured)
        assert e["ratio_P_over_nd"] == pytest.approx(e["parameters"] / (e["n_star"] * cfg.dims[0]))
        assert len(e["curve"]["network"]) == len(cfg.ns)
        assert all(0 <= f <= 1 for f in e["curve"]["network"] + e["curve"]["fresh"])
        # the tolerance is half the bracketing log-n step (2 grid points: the whole grid)
        assert f"+ {0.5 * math.log(cfg.ns[1] / cfg.ns[0]):g}" in r.rule


# ---------------------------------------------------------------------------------------
# the boundary
# ---------------------------------------------------------------------------------------
def test_boundary_interpolates_in_log_n():
    ns = np.array([1.0, 10.0, 100.0, 1000.0])
    f = np.array([1.0, 0.9, 0.3, 0.0])
    bd = NM.boundary(ns, f, np.zeros(4), 0.5)
    # between n = 10 and 100: log n* = log 10 + (0.5 - 0.9)/(0.3 - 0.9) log 10
    assert bd.located and bd.censored == ""
    assert bd.log_n == pytest.approx(math.log(10) * (1 + 2 / 3))
    assert bd.n == pytest.approx(10 ** (5 / 3))
    assert bd.se == 0.0 and bd.step == pytest.approx(math.log(10))


def test_boundary_takes_the_last_down_crossing():
    ns = [2, 4, 8, 16, 32]
    bd = NM.boundary(ns, [0.9, 0.4, 0.8, 0.1, 0.0], [0.01] * 5)
    # between n = 8 and 16: log 8 + (0.5 - 0.8)/(0.1 - 0.8) log 2
    assert bd.log_n == pytest.approx(math.log(8) + 3 / 7 * math.log(2))
    # a dip below the level at the smallest n only: still located, not "< n_min"
    assert NM.boundary(ns, [0.3, 0.9, 0.9, 0.2, 0.0], [0.01] * 5).located


def test_boundary_censored_bounds_are_finite():
    ns = [4, 16, 64]
    up = NM.boundary(ns, [1.0, 0.9, 0.6], [0.02] * 3)
    assert up.censored == ">" and up.log_n == pytest.approx(math.log(64))
    assert up.step == pytest.approx(math.log(4)) and up.se == 0.0 and not up.located
    assert "n* > 64" in up.text
    down = NM.boundary(ns, [0.4, 0.1, 0.0], [0.02] * 3)
    assert down.censored == "<" and down.log_n == pytest.approx(math.log(4))
    assert "n* < 4" in down.text
    # exactly at the level counts as no longer memorising: the crossing is that grid point
    at = NM.boundary(ns, [1.0, 0.5, 0.5], [0.0] * 3)
    assert at.located and at.log_n == pytest.approx(math.log(16))
    assert NM.boundary(ns, [0.5, 0.2, 0.0], [0.0] * 3).censored == "<"


def test_boundary_error_matches_finite_differences():
    """The propagated error against its brute-force twin: numerical derivatives of the
    crossing in the two bracketing fractions."""
    ns = np.array([3.0, 20.0, 90.0, 400.0])
    f = np.array([0.95, 0.7, 0.2, 0.05])
    se = np.array([0.01, 0.03, 0.05, 0.01])
    bd = NM.boundary(ns, f, se, 0.5)
    h = 1e-7
    grads = []
    for k in (1, 2):
        fp = f.copy()
        fp[k] += h
        grads.append((NM.boundary(ns, fp, se, 0.5).log_n - bd.log_n) / h)
    assert bd.se == pytest.approx(math.hypot(grads[0] * se[1], grads[1] * se[2]), rel=1e-5)


def test_boundary_error_matches_the_spread_of_replicates():
    """Monte Carlo twin: binomial fractions drawn around a known curve; the spread of the
    located crossing matches the propagated error (first order)."""
    rng = np.random.default_rng(3)
    ns = np.array([10.0, 100.0])
    p = np.array([0.8, 0.2])
    m = 2000
    xs, ses = [], []
    for _ in range(2000):
        k = rng.binomial(m, p)
        f = k / m
        s = np.sqrt(f * (1 - f) / m)
        bd = NM.boundary(ns, f, s, 0.5)
        xs.append(bd.log_n)
        ses.append(bd.se)
    assert np.mean(xs) == pytest.approx(math.log(10) * 1.5, abs=0.01)
    assert np.std(xs) == pytest.approx(np.median(ses), rel=0.1)


def test_boundary_rejects_bad_input():
    with pytest.raises(ValueError):
        NM.boundary([4], [1.0], [0.0])
    with pytest.raises(ValueError):
        NM.boundary([4, 2], [1.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError):
        NM.boundary([2, 4], [1.0, np.nan], [0.0, 0.0])


# ---------------------------------------------------------------------------------------
# the capacity exponent
# ---------------------------------------------------------------------------------------
def test_power_fit_recovers_an_exact_line():
    x = np.log([1e3, 1e4, 1e5, 1e6])
    y = 0.7 * x - 2.0
    fit = NM.power_fit(x, y, np.full(4, 0.1))
    assert fit.exponent == pytest.approx(0.7) and fit.log_prefactor == pytest.approx(-2.0)
    assert fit.chi2 == pytest.approx(0.0, abs=1e-20) and fit.dof == 2
    # known errors, no excess scatter: se(b) = 1 / sqrt(sum w (x - xbar)^2)
    assert fit.exponent_se == pytest.approx(0.1 / math.sqrt(np.sum((x - x.mean()) ** 2)))


def test_power_fit_weights_and_two_points():
    # two points: the line through them, errors from the stated ones only
    fit = NM.power_fit([0.0, 1.0], [1.0, 3.0], [0.1, 0.2])
    assert fit.exponent == pytest.approx(2.0) and fit.dof == 0 and fit.birge == 1.0
    assert fit.exponent_se == pytest.approx(math.hypot(0.1, 0.2))
    # a heavily down-weighted outlier barely moves the slope
    fit = NM.power_fit([0, 1, 2, 3], [0, 1, 2, 30], [0.01, 0.01, 0.01, 1e4])
    assert fit.exponent == pytest.approx(1.0, abs=1e-6)


def test_power_fit_errors_match_the_spread_of_replicates():
    """Monte Carlo twin: the slope's spread over replicated noisy lines equals its
    standard error, both when the stated errors are right and when they are too small by
    a factor 3 (the Birge ratio rescales them)."""
    rng = np.random.default_rng(5)
    x = np.linspace(7.0, 12.0, 6)
    s = np.array([0.1, 0.2, 0.1, 0.3, 0.2, 0.1])
    for scale in (1.0, 3.0):
        b, se = [], []
        for _ in range(3000):
            y = 1.0 + 0.5 * x + scale * s * rng.standard_normal(x.size)
            fit = NM.power_fit(x, y, s)
            b.append(fit.exponent)
            se.append(fit.exponent_se)
        assert np.mean(b) == pytest.approx(0.5, abs=0.01)
        # with scale 1 the Birge factor max(1, .) inflates slightly: within 15%
        assert np.std(b) == pytest.approx(np.mean(se), rel=0.15)


def test_power_fit_rejects_bad_input():
    with pytest.raises(ValueError):
        NM.power_fit([1.0, 1.0], [0.0, 1.0], [1.0, 1.0])  # one distinct x
    with pytest.raises(ValueError):
        NM.power_fit([1.0, 2.0], [0.0, 1.0], [1.0, 0.0])  # a zero error
    with pytest.raises(ValueError):
        NM.power_fit([1.0], [0.0], [1.0])


# ---------------------------------------------------------------------------------------
# the parameter count
# ---------------------------------------------------------------------------------------
def test_parameter_count_of_the_mlp():
    # input (d+1) w, noise conditioning e w + w + w^2 + w, blocks 3 (w^2 + w) + 2 w
    # (three linear maps and a layer norm) each, output layer norm 2 w, output (w + 1) d
    d, w, depth, e = 3, 8, 2, 4
    block = 3 * (w * w + w) + 2 * w
    want = (d + 1) * w + (e * w + w + w * w + w) + depth * block + 2 * w + (w + 1) * d
    assert NM.parameter_count(NetSpec(d, w, depth, e)) == want
