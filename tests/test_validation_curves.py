"""The validation harness's shared pieces: curve statistics (``validation.curves``), the
example models (``validation.models``), sample diagnostics (``validation.samples``) and
the NaN-free result values (``validation.result.nan_to_none``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from physdiff.ensembles import Empirical
from validation.curves import (
    bootstrap_peak,
    fit_peak,
    isotonic_increasing,
    last_up_crossing,
    monotone_crossing,
    significant_maxima,
)
from validation.models import line_mixture, symmetric_pair
from validation.result import nan_to_none
from validation.samples import fraction_on_points


# ---------------------------------------------------------------------------------------
# crossings
# ---------------------------------------------------------------------------------------
def test_isotonic_fit_and_monotone_crossing():
    iso = isotonic_increasing
    np.testing.assert_allclose(iso([1.0, 3.0, 2.0, 4.0]), [1.0, 2.5, 2.5, 4.0])
    np.testing.assert_allclose(iso([3.0, 2.0, 1.0], [1.0, 1.0, 2.0]), [1.75, 1.75, 1.75])
    x = np.linspace(0.0, 1.0, 11)
    assert monotone_crossing(x, x, 0.35) == pytest.approx(0.35)
    assert math.isnan(monotone_crossing(x, x, 2.0))
    assert math.isnan(monotone_crossing(x, x, -1.0))
    # a dip below the level is pooled away: the fit's first crossing, not the data's last
    y = np.array([0.0, 0.2, 0.6, 0.4, 0.8, 1.0])
    assert monotone_crossing(np.arange(6.0), y, 0.5) == pytest.approx(1.0 + 0.3 / 0.3)


def test_last_up_crossing():
    x = np.linspace(0.0, 1.0, 11)
    y = 2 * x
    xc, se = last_up_crossing(x, y, np.zeros_like(x), 0.5)
    assert xc == pytest.approx(0.25) and se == 0.0
    _, se = last_up_crossing(x, y, np.full_like(x, 0.1), 0.5)
    assert se == pytest.approx(0.05 * math.hypot(0.5, 0.5))  # dx/dy = 1/2 per end point
    assert last_up_crossing(x, y, np.zeros_like(x), 5.0) is None
    # the last of several up-crossings
    steps = np.array([0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1.0])
    assert last_up_crossing(x, steps, np.zeros(11), 0.5)[0] == pytest.approx(0.35)


def test_last_up_crossing_standard_error_matches_finite_differences():
    """The propagated error of the crossing against its brute-force twin: the numerical
    derivatives of the crossing in the two bracketing values (an asymmetric bracket)."""
    x = np.array([0.0, 0.3, 1.0, 1.4])
    y = np.array([0.0, 0.2, 0.9, 1.0])
    se = np.array([0.0, 0.03, 0.07, 0.0])
    xc, got = last_up_crossing(x, y, se, 0.6)
    h = 1e-7
    grads = []
    for k in (1, 2):
        yp = y.copy()
        yp[k] += h
        grads.append((last_up_crossing(x, yp, se, 0.6)[0] - xc) / h)
    assert got == pytest.approx(math.hypot(grads[0] * se[1], grads[1] * se[2]), rel=1e-5)


# ---------------------------------------------------------------------------------------
# maxima
# ---------------------------------------------------------------------------------------
def test_parabola_vertex_and_bootstrap():
    x = np.linspace(-3, 5, 17)
    y = 2.0 - 0.5 * (x - 1.25) ** 2
    assert fit_peak(x, y) == pytest.approx((1.25, 2.0), abs=1e-12)
    assert all(math.isnan(v) for v in fit_peak(x, -y))  # opens upward
    rng = np.random.default_rng(0)
    curves = y + 0.05 * rng.standard_normal((40, x.size))
    xp, yp, sx, sy = bootstrap_peak(x, curves, rng, 200)
    assert abs(xp - 1.25) < 4 * sx and abs(yp - 2.0) < 4 * sy and 0 < sx < 0.2


def test_bootstrap_peak_error_matches_the_spread_of_replicates():
    """The bootstrap error of the vertex against its brute-force twin: the spread of the
    vertex over independent replicates of the batches."""
    x = np.linspace(-2, 2, 9)
    y = 1.0 - 0.5 * x**2
    rng = np.random.default_rng(4)
    reps, ses = [], []
    for _ in range(150):
        curves = y + 0.1 * rng.standard_normal((20, x.size))
        xp, _, sx, _ = bootstrap_peak(x, curves, rng, 100)
        reps.append(xp)
        ses.append(sx)
    assert np.median(ses) / np.std(reps, ddof=1) == pytest.approx(1.0, abs=0.2)


def test_significant_maxima():
    x = np.linspace(0, 10, 401)
    y = np.exp(-((x - 3) ** 2)) + 0.5 * np.exp(-((x - 7) ** 2)) + 0.002 * np.sin(40 * x)
    idx = significant_maxima(x, y, 0.05)
    np.testing.assert_allclose(x[idx], [3.0, 7.0], atol=0.05)
    assert [x[i] for i in significant_maxima(x, y, 0.6)] == pytest.approx([3.0], abs=0.05)


# ---------------------------------------------------------------------------------------
# models, samples, results
# ---------------------------------------------------------------------------------------
def test_example_mixtures():
    pair = symmetric_pair(2.0, 0.25, 4)
    np.testing.assert_allclose(pair.means, [[1.0] * 4, [-1.0] * 4])
    np.testing.assert_allclose(pair.weights, [0.5, 0.5])
    line = line_mixture((-8.0, -4.0, 6.0), 0.5)
    assert line.dim == 1 and line.n_components == 3
    np.testing.assert_allclose(line.means[:, 0], [-8.0, -4.0, 6.0])
    x = line.sample(20000, np.random.default_rng(0))
    assert abs(x.var() - (np.var([-8.0, -4.0, 6.0]) + 0.5)) < 4 * x.var() * math.sqrt(2 / 20000)


def test_fraction_on_points_against_brute_force():
    rng = np.random.default_rng(2)
    train = rng.standard_normal((30, 3))
    samples = np.concatenate([train[:7] + 1e-3, rng.standard_normal((50, 3))])
    r = 0.3
    dist = np.sqrt(((samples[:, None] - train[None]) ** 2).sum(-1)).min(axis=1)
    assert fraction_on_points(samples, Empirical(train), r) == (int(np.sum(dist <= r)), 57)


def test_nan_to_none_round_trips_through_json():
    obj = {"a": math.nan, "b": [1.0, np.float64("nan"), (2, math.nan)], "c": np.arange(2.0)}
    out = nan_to_none(obj)
    assert out == {"a": None, "b": [1.0, None, [2, None]], "c": [0.0, 1.0]}
    assert json.loads(json.dumps(out)) == out
