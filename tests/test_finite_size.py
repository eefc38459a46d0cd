"""physdiff.finite_size (exact finite-(n, d) excess entropy) against its derivation
(theory/finite_size.py) and brute-force Monte Carlo over training sets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy as sp

import theory.finite_size as T
from physdiff import memorization as M
from physdiff.ensembles import Empirical
from physdiff.errors import DomainError, InputError
from physdiff.finite_size import (
    LOG2,
    finite_size_collapse,
    finite_size_entropy,
    finite_size_entropy_error,
)


def test_derivation_steps_vanish():
    assert T.frullani() == 0
    assert T.gumbel_identity() == 0
    assert T.query_posterior() == (0, 0)
    assert T.normal_direction_term() == 0
    assert T.query_posterior_coordinate() == (0, 0, 0)
    assert T.noncentral_chi2_mgf() == 0
    assert T.gumbel_mgf() == (0, 0, 0)
    assert T.survival_kernel() == 0


@pytest.mark.parametrize("dl, s2", [(0.5, 1.0), (2.0, 3.0)])
def test_pair_in_one_dimension_equals_double_integral(dl, s2):
    from scipy.integrate import dblquad

    expr, (b, z) = T.pair_entropy_integrand()
    f = sp.lambdify((b, z), expr.subs({T.delta: dl, T.s2: s2}), "math")
    ref, _ = dblquad(
        lambda zz, bb: f(bb, zz), -12 * math.sqrt(2 * s2), 12 * math.sqrt(2 * s2), -12, 12
    )
    # d = 1 was the hardest case of the old nested-table code (5e-4 nats); the
    # characteristic-function inversion is exact to rounding here
    assert finite_size_entropy(dl, 2, 1, s2) == pytest.approx(ref, abs=1e-9)
    assert finite_size_entropy(dl, 2, 1, s2, step=0.25) == pytest.approx(ref, abs=1e-9)


def _brute(n, d, dl, sets, probes, seed, s2=1.0, m=None, lam=None):
    """Mean of log(1 + S) over ``sets`` training sets (``probes`` queries each), with the
    standard error of the mean over sets; points ``sqrt(lam) * N(0, I)`` for a spectrum
    ``lam`` (``d`` is then ``len(lam)``)."""
    rng = np.random.default_rng(seed)
    scale = math.sqrt(s2) if lam is None else np.sqrt(np.asarray(lam, float))
    d = d if lam is None else len(lam)
    means = []
    for _ in range(sets):
        pts = scale * rng.standard_normal((n, d))
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


TWO = [4.0] * 2 + [0.25] * 6  # two variance groups
THREE = [1.0] * 10 + [0.09] * 10 + [1e-4] * 10  # stds 1, 0.3, 0.01 in d = 30
POWER16 = list(1.0 / np.arange(1, 17))


@pytest.mark.parametrize(
    "lam, n, dl",
    [
        (TWO, 2, 5.0),
        (TWO, 1000, 0.12),
        ([1.0, 0.1], 10, 0.04),  # d = 2, two groups of one
        (THREE, 100, 0.8),  # RQMC from here on
        (POWER16, 1000, 0.12),
    ],
)
def test_spectrum_against_monte_carlo(lam, n, dl):
    h, se_h = finite_size_entropy_error(dl, n, spectrum=lam)
    mean, se = _brute(n, None, dl, sets=60, probes=100, seed=n + len(lam), lam=lam)
    assert abs(h - mean) <= 4 * math.hypot(se, se_h)


@pytest.mark.slow
@pytest.mark.parametrize(
    "lam, n, dl",
    [(THREE, 10000, 0.27), (list(1.0 / np.arange(1, 257)), 10000, 0.26)],
)
def test_spectrum_against_monte_carlo_large(lam, n, dl):
    h, se_h = finite_size_entropy_error(dl, n, spectrum=lam)
    mean, se = _brute(n, None, dl, sets=30, probes=100, seed=11, lam=lam)
    assert abs(h - mean) <= 4 * math.hypot(se, se_h)


def test_rqmc_against_exact_two_groups():
    exact, zero = finite_size_entropy_error(0.5, 100, spectrum=TWO)
    assert zero == 0.0
    h, se = finite_size_entropy_error(0.5, 100, spectrum=TWO, quadrature="rqmc", seed=5)
    assert 0 < se < 2e-3
    assert abs(h - exact) <= 4 * se
    # reproducible: the same seed, the same number; another seed, another scrambling
    assert finite_size_entropy(0.5, 100, spectrum=TWO, quadrature="rqmc", seed=5) == h
    assert finite_size_entropy(0.5, 100, spectrum=TWO, quadrature="rqmc", seed=6) != h


def test_spectrum_invariances():
    lam = np.array([2.0, 0.5, 0.5, 0.1])  # three distinct values: the RQMC path

    def h(dl, spec):
        return finite_size_entropy(dl, 50, spectrum=spec, points=16)

    h0 = h(0.3, lam)
    # only delta / scale matters
    assert h(1.2, 4 * lam) == pytest.approx(h0, rel=1e-10)
    # zeros are normal directions; the order of the eigenvalues is no information
    assert h(0.3, [0.0, *lam, 0.0]) == pytest.approx(h0, rel=1e-12)
    assert h(0.3, lam[::-1]) == pytest.approx(h0, rel=1e-12)
    # an equal-eigenvalue spectrum is the isotropic case
    assert finite_size_entropy(0.3, 50, spectrum=[0.5] * 6) == pytest.approx(
        finite_size_entropy(0.3, 50, 6, 0.5), rel=1e-12
    )
    # the two-group quadrature is converged in its node count
    assert finite_size_entropy(0.5, 100, spectrum=TWO, step=0.25) == pytest.approx(
        finite_size_entropy(0.5, 100, spectrum=TWO), abs=1e-8
    )


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


def test_collapse_for_a_spectrum():
    r = finite_size_collapse(1000, spectrum=[*TWO, 0.0], curve=[0.05, 0.1, 0.2])
    assert r.d == 8 and r.variance == pytest.approx(np.mean(TWO))
    assert r.delta_large_d == pytest.approx(M.collapse_delta(1000, TWO), rel=1e-12)
    assert finite_size_entropy(r.delta, 1000, spectrum=TWO) == pytest.approx(LOG2, abs=1e-4)
    assert np.all(np.diff(r.entropy) > 0)
    json.dumps(r.to_dict(), allow_nan=False)


def test_collapse_error_by_rqmc():
    # a third eigenvalue a hair from the second: the same data, but the RQMC path; its
    # crossing must sit within its own standard error of the exact two-group one
    exact = finite_size_collapse(100, spectrum=TWO, curve=[0.1])
    assert exact.log_delta_error == 0.0 and exact.entropy_error[0] == 0.0
    near = [*TWO[:-1], TWO[-1] * (1 + 1e-9)]
    r = finite_size_collapse(100, spectrum=near, curve=[0.1])
    assert 0 < r.log_delta_error < 0.01 and r.entropy_error[0] > 0
    assert abs(math.log(r.delta / exact.delta)) <= 4 * r.log_delta_error
    d = r.to_dict()
    assert d["log_delta_error"] == r.log_delta_error and len(d["curve"]["d_fe_error"]) == 1


def test_bad_input():
    with pytest.raises(InputError, match="spectrum alone"):
        finite_size_entropy(1.0, 10, 4, spectrum=[1.0, 1.0])
    with pytest.raises(InputError, match="spectrum alone"):
        finite_size_collapse(10, 4, spectrum=[1.0, 1.0])
    with pytest.raises(DomainError):
        finite_size_entropy(-1.0, 10, 4)
    with pytest.raises(InputError):
        finite_size_entropy(1.0, 1, 4)
    for bad in ([1.0, -2.0], [1.0, float("nan")], [0.0, 0.0]):
        with pytest.raises((DomainError, InputError), match="spectrum"):
            finite_size_entropy(1.0, 10, spectrum=bad)
    with pytest.raises(InputError, match="quadrature"):
        finite_size_entropy(1.0, 10, spectrum=THREE, quadrature="exact")
    with pytest.raises(InputError, match="quadrature"):
        finite_size_entropy(1.0, 10, 4, quadrature="gauss")
    with pytest.raises(DomainError):
        finite_size_collapse(4, 4, level=2.0)


def test_huge_delta_is_log_n_or_a_clear_error():
    # dl * |y|^2 overflowed to NaN here once; E[d f^e] -> log n as delta -> inf
    for spec in ([1.0] * 4, [1.0, 2.0, 3.0]):
        assert finite_size_entropy(1e300, 10, spectrum=spec) == pytest.approx(
            math.log(10), abs=1e-12
        )
    with pytest.raises(DomainError, match="delta"):
        finite_size_entropy(1.7e308, 10, 4)


def test_bad_seed_is_a_clear_error():
    for seed in (-1, 2.5, float("nan")):
        with pytest.raises(InputError, match="seed"):
            finite_size_entropy(0.5, 10, spectrum=[1.0, 2.0, 3.0], seed=seed)


def test_collapse_bad_xtol_is_a_clear_error():
    for xtol in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="xtol"):
            finite_size_collapse(10, 4, xtol=xtol)
