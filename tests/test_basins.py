"""Basins of attraction (physdiff.basins): the two definitions' closed forms = sympy
(theory/association.py) and brute force, and each against the simulation
(``basin_size`` with the reverse SDE and with the probability-flow ODE).

Measured here (Empirical score, VE, tolerance 0.5 or s/4, 1000 trials per level):

* two memories at D = 2, delta = 0.3 / 1 / 3: ODE (Heun, 40 steps) 0.958 / 0.849 / 0.731
  against ``Phi(D/(2 sqrt delta))`` 0.966 / 0.841 / 0.718; SDE (Euler-Maruyama, 100
  steps) 0.949 / 0.783 / 0.645 against ``E[w_a]`` 0.949 / 0.775 / 0.629 (all within 1.3
  standard errors);
* six random memories in 2-D (stds 1.5), delta = (0.05, 0.15, 0.4) d_min^2: the SDE
  agrees with ``E[w_a]`` (Monte Carlo over z) within 1 standard error; the ODE sits up to
  0.04 below the Voronoi-cell mass at 0.4 d_min^2 (0.742 +- 0.014 vs 0.782 for one memory,
  0.834 vs 0.861 at 0.15 d_min^2 for another): the Voronoi cell is the flow's basin only
  when the bisectors are mirrors of the set (tested exactly on regular simplices), and its
  small-noise limit otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit, ndtr

from physdiff import association as A
from physdiff import basins as B
from physdiff.ensembles import Empirical
from physdiff.errors import DomainError, InputError, ShapeError
from theory import association as th


# ---------------------------------------------------------------------------------------
# closed forms = sympy = brute force
# ---------------------------------------------------------------------------------------
def test_sympy_identities():
    assert th.two_memory_log_odds_residual() == 0
    assert th.reversal_failure_substitution_residual() == 0
    assert th.two_memory_flow_on_bisector() == 0
    assert th.simplex_projection_correlation() == pytest.approx(0.5)
    ratio, sech_int = th.reversal_to_flow_failure_ratio_limit()
    assert ratio == th.sp.pi / 2 and sech_int == 2 * th.sp.pi
    lo, hi = th.harmonic_bounds_residuals()
    q, x = sorted(lo.free_symbols, key=str)[0], sorted(lo.free_symbols, key=str)[1]
    assert lo.subs({q: 1, x: 0.3}) > 0 and hi.subs({q: 1, x: 0.3}) > 0


def test_reversal_closed_form_against_series_and_monte_carlo():
    series = th.reversal_small_kappa_series()
    for k in (0.05, 0.2):
        ref = float(series.subs(th.kappa, k))
        # the series is cut at kappa^6: its error is below kappa^6
        assert B.two_memory_reversal_recovery(4.0 / k**2, 2.0) == pytest.approx(ref, abs=k**6)
    rng = np.random.default_rng(0)
    u = rng.standard_normal(400000)
    for k in (0.5, 2.0, 4.0):
        vals = expit(k * k / 2 + k * u)  # E[w_a]: the log-odds kappa^2/2 + kappa u
        se = vals.std() / math.sqrt(u.size)
        assert abs(B.two_memory_reversal_recovery(1.0 / k**2, 1.0) - vals.mean()) < 4 * se


def test_reversal_between_flow_bounds_and_pi_over_two():
    kap = np.geomspace(0.05, 60, 40)
    dl = 1.0 / kap**2
    fail_rev = np.asarray(B.two_memory_reversal_recovery(dl, 1.0, complement=True))
    fail_flow = np.asarray(B.two_memory_flow_recovery(dl, 1.0, complement=True))
    assert np.allclose(fail_flow, ndtr(-kap / 2), rtol=1e-12)
    assert np.allclose(1 - fail_rev, B.two_memory_reversal_recovery(dl, 1.0), rtol=1e-14)
    # Phi(-kappa/2) <= 1 - P_rev <= 2 Phi(-kappa/2), both probabilities fall to 1/2
    assert np.all(fail_rev >= fail_flow * (1 - 1e-9)) and np.all(fail_rev <= 2 * fail_flow)
    assert np.all(np.diff(fail_rev) < 0)
    # small noise: the ratio tends to pi/2 (O(1/kappa^2) corrections)
    r = fail_rev[kap > 30] / ndtr(-kap[kap > 30] / 2)
    assert np.allclose(r, math.pi / 2, rtol=0.01)


def test_basin_delta_inverts_the_recovery():
    pairs = (("ode", B.two_memory_flow_recovery), ("sde", B.two_memory_reversal_recovery))
    for sampler, fn in pairs:
        for lev in (0.6, 0.9, 0.99):
            db = B.two_memory_basin_delta(3.0, lev, sampler=sampler)
            assert fn(db, 3.0) == pytest.approx(lev, abs=1e-10)
        assert B.two_memory_basin_delta(3.0, 0.4, sampler=sampler) == math.inf
    # the stochastic reversal's basin is the smaller one
    assert B.two_memory_basin_delta(3.0, 0.9, sampler="sde") < B.two_memory_basin_delta(3.0, 0.9)


def test_simplex_flow_recovery():
    dl = np.array([0.1, 1.0, 5.0])
    assert np.allclose(B.simplex_flow_recovery(dl, 2.0, 2), B.two_memory_flow_recovery(dl, 2.0))
    # n = 3 (equilateral triangle): Monte Carlo of the Voronoi cell = the 1-D integral
    tri = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, math.sqrt(3.0)]])
    mc = B.flow_recovery(tri, 0, dl, np.random.default_rng(1), n_samples=40000)
    exact = B.simplex_flow_recovery(dl, 2.0, 3)
    assert np.all(np.abs(mc.probability - exact) < 4 * mc.stderr + 1e-12)
    assert np.all(mc.lower <= exact + 1e-12) and np.all(exact <= mc.upper + 1e-12)


def test_n_memory_recovery_bounds_and_two_memory_exact():
    pts = np.random.default_rng(3).standard_normal((5, 3))
    dl = np.array([0.05, 0.5, 3.0])
    for fn in (B.reversal_recovery, B.flow_recovery):
        r = fn(pts, 2, dl, np.random.default_rng(4), n_samples=20000)
        assert not r.exact
        assert np.all(r.lower - 4 * r.stderr <= r.probability)
        assert np.all(r.probability <= r.upper + 4 * r.stderr)
        two = fn(pts[:2], 1, dl)
        assert two.exact and np.all(two.stderr == 0)
    d = float(np.linalg.norm(pts[0] - pts[1]))
    assert np.allclose(
        B.reversal_recovery(pts[:2], 0, dl).probability, B.two_memory_reversal_recovery(dl, d)
    )


# ---------------------------------------------------------------------------------------
# closed forms against the simulation
# ---------------------------------------------------------------------------------------
TWO = np.array([[-1.0, 0.0], [1.0, 0.0]])


@pytest.mark.parametrize(("sampler", "n_steps"), [("ode", 40), ("sde", 100)])
def test_two_memory_simulation_matches_closed_form(sampler, n_steps):
    rng = np.random.default_rng(0)
    dl = np.array([0.3, 1.0, 3.0])
    b = B.basin_size(
        Empirical(TWO),
        TWO[1],
        dl,
        rng,
        n_trials=600,
        tolerance=0.5,
        sampler=sampler,
        n_steps=n_steps,
    )
    assert b.sampler == sampler
    fn = B.two_memory_flow_recovery if sampler == "ode" else B.two_memory_reversal_recovery
    ref = fn(dl, 2.0)
    # Monte Carlo error only (the discretisation error, measured at 1000 trials, is below
    # one standard error at these step counts)
    assert np.all(np.abs(b.probability - ref) < 4 * b.stderr)


def test_the_two_definitions_differ_in_simulation():
    # at delta = 3 (kappa = 1.15) the flow recovers 0.72, the reversal 0.63: the difference
    # is resolved by the simulation
    rng = np.random.default_rng(1)
    kw = {"n_trials": 1500, "tolerance": 0.5}
    ode = B.basin_size(Empirical(TWO), TWO[0], [3.0], rng, sampler="ode", **kw)
    sde = B.basin_size(Empirical(TWO), TWO[0], [3.0], rng, sampler="sde", n_steps=100, **kw)
    gap = ode.probability[0] - sde.probability[0]
    assert gap > 4 * math.hypot(ode.stderr[0], sde.stderr[0])


def test_random_memories_simulation():
    pts = np.random.default_rng(1).standard_normal((6, 2)) * 1.5
    emp = Empirical(pts)
    rng = np.random.default_rng(5)
    for idx in (0, 3):
        dmin = np.sort(np.linalg.norm(pts - pts[idx], axis=1))[1]
        dl = dmin**2 * np.array([0.05, 0.15, 0.4])
        sde = B.basin_size(emp, pts[idx], dl, rng, n_trials=600, sampler="sde", n_steps=200)
        rev = B.reversal_recovery(pts, idx, dl, rng, n_samples=40000)
        tot = np.hypot(sde.stderr, rev.stderr)
        assert np.all(np.abs(sde.probability - rev.probability) < 4 * tot)
        ode = B.basin_size(emp, pts[idx], dl, rng, n_trials=600, sampler="ode")
        vor = B.flow_recovery(pts, idx, dl, rng, n_samples=40000)
        tot = np.hypot(ode.stderr, vor.stderr)
        # the Voronoi cell is the flow basin's small-noise limit: measured deviation up to
        # 0.04 at 0.4 d_min^2 (module docstring)
        assert np.all(np.abs(ode.probability - vor.probability) < 0.05 + 3 * tot)


def test_regular_simplex_flow_simulation():
    # 4 memories on a regular tetrahedron (side 2): every bisector is a mirror, the flow's
    # basin is the Voronoi cell exactly
    tet = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float) / math.sqrt(2)
    dl = np.array([0.2, 0.6])
    b = B.basin_size(Empirical(tet), tet[0], dl, np.random.default_rng(6), n_trials=800)
    exact = B.simplex_flow_recovery(dl, 2.0, 4)
    assert np.all(np.abs(b.probability - exact) < 4 * b.stderr)


# ---------------------------------------------------------------------------------------
# the move, bad input
# ---------------------------------------------------------------------------------------
def test_association_reexports_basins():
    assert A.basin_size is B.basin_size and A.Basin is B.Basin
    from physdiff.association import basin_size  # noqa: F401


def test_bad_input():
    with pytest.raises(DomainError, match="delta"):
        B.two_memory_flow_recovery(0.0, 1.0)
    with pytest.raises(DomainError, match="distance"):
        B.two_memory_reversal_recovery(1.0, -1.0)
    with pytest.raises(DomainError, match="level"):
        B.two_memory_basin_delta(1.0, 1.0)
    with pytest.raises(InputError, match="sampler"):
        B.two_memory_basin_delta(1.0, 0.9, sampler="x")
    with pytest.raises(InputError, match="sampler"):
        B.basin_size(Empirical(TWO), TWO[0], [1.0], np.random.default_rng(0), sampler="x")
    with pytest.raises(ShapeError, match="points"):
        B.reversal_recovery(np.zeros((1, 2)), 0, [1.0])
    with pytest.raises(DomainError, match="index"):
        B.flow_recovery(TWO, 2, [1.0])
    with pytest.raises(InputError, match="distinct"):
        B.flow_recovery(np.zeros((3, 2)), 0, [1.0])
    with pytest.raises(InputError, match="rng"):
        B.reversal_recovery(np.eye(3), 0, [1.0])
    with pytest.raises(DomainError, match="n must"):
        B.simplex_flow_recovery(1.0, 1.0, 1)
