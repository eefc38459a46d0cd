"""physdiff.finite_size (exact finite-(n, d) excess entropy) against its derivation
(theory/finite_size.py) and brute-force Monte Carlo over training sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import theory.finite_size as T
from physdiff import memorization as M
from physdiff.ensembles import Empirical
from physdiff.errors import DomainError, InputError
from physdiff.finite_size import LOG2, finite_size_collapse, finite_size_entropy


def test_derivation_steps_vanish():
    assert T.frullani() == 0
    assert T.gumbel_identity() == 0
    assert T.query_posterior() == (0, 0)
    assert T.normal_direction_term() == 0


@pytest.mark.parametrize("dl, s2", [(0.5, 1.0), (2.0, 3.0)])
def test_pair_in_one_dimension_equals_double_integral(dl, s2):
    from scipy.integrate import dblquad

    expr, (b, z) = T.pair_entropy_integrand()
    f = sp.lambdify((b, z), expr.subs({T.delta: dl, T.s2: s2}), "math")
    ref, _ = dblquad(
        lambda zz, bb: f(bb, zz), -12 * math.sqrt(2 * s2), 12 * math.sqrt(2 * s2), -12, 12
    )
    # d = 1 is the hardest case of the |y|^2 quadrature (chi^2_1 density singular at 0):
    # the default step is good to about 5e-4 nats there, step 0.25 to about 2e-4
    assert finite_size_entropy(dl, 2, 1, s2, step=0.25) == pytest.approx(ref, abs=2e-4)


def _brute(n, d, dl, sets, probes, seed, s2=1.0, m=None):
    """Mean of log(1 + S) over ``sets`` training sets (``probes`` queries each), with the
    standard error of the mean over sets."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(sets):
        pts = math.sqrt(s2) * rng.standard_normal((n, d))
        if m is not None:
            pts[:, m:] = 0.0
        h, _ = M.excess_entropy_samples(Empirical(pts), dl, probes, rng)
        means.append(h.mean())
    means = np.asarray(means)
    return means.mean(), means.std(ddof=1) / math.sqrt(sets)


@pytest.mark.parametrize(
    "n, d, dl",
    [(2, 2, 1.0), (10, 2, 0.3), (100, 16, 1.2), (1000, 64, 3.0), (10000, 8, 0.3)],
)
def test_against_monte_carlo_over_training_sets(n, d, dl):
    mean, se = _brute(n, d, dl, sets=60, probes=100, seed=n + d)
    assert abs(finite_size_entropy(dl, n, d) - mean) <= 4 * se


@pytest.mark.slow
@pytest.mark.parametrize("n, d, dl", [(100, 256, 27.0), (10000, 256, 13.0), (10000, 2, 1e-4)])
def test_against_monte_carlo_large(n, d, dl):
    mean, se = _brute(n, d, dl, sets=40, probes=200, seed=7)
    assert abs(finite_size_entropy(dl, n, d) - mean) <= 4 * se


def test_variance_and_manifold():
    # only delta / s^2 matters; normal directions drop out exactly
    assert finite_size_entropy(2.0, 50, 8, 4.0) == pytest.approx(
        finite_size_entropy(0.5, 50, 8), rel=1e-12
    )
    h = finite_size_entropy(0.7, 40, 10, intrinsic_dim=3)
    assert h == pytest.approx(finite_size_entropy(0.7, 40, 3), rel=1e-12)
    assert finite_size_entropy(0.7, 40, spectrum=[1, 1, 1, 0, 0]) == pytest.approx(h)
    mean, se = _brute(40, 10, 0.7, sets=60, probes=100, seed=3, m=3)
    assert abs(h - mean) <= 4 * se


def test_collapse_at_level_and_result():
    r = finite_size_collapse(100, 16, curve=[0.5, 1.0, 2.0])
    assert finite_size_entropy(r.delta, 100, 16) == pytest.approx(LOG2, abs=1e-4)
    assert np.all(np.diff(r.entropy) > 0)
    # the finite-size crossing sits below the large-d delta_C (validation: -0.21..-0.29)
    assert -0.35 < r.log_offset < -0.15
    d = r.to_dict()
    assert d["log_delta"] == pytest.approx(math.log(r.delta))
    assert len(d["curve"]["delta"]) == 3
    hi = finite_size_collapse(100, 16, level=1.5, curve=[1.0])
    assert hi.delta > r.delta


def test_bad_input():
    with pytest.raises(DomainError):
        finite_size_entropy(-1.0, 10, 4)
    with pytest.raises(InputError):
        finite_size_entropy(1.0, 1, 4)
    for bad in ([1.0, -2.0], [1.0, float("nan")], [0.0, 0.0]):
        with pytest.raises((DomainError, InputError), match="spectrum"):
            finite_size_entropy(1.0, 10, spectrum=bad)
    with pytest.raises(DomainError):
        finite_size_collapse(4, 4, level=2.0)
