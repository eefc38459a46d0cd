"""The association figures draw library values (that every figure builds, deterministically,
with a caption, is tested for all of them in tests/test_atlas.py)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import poisson

from physdiff import association as A
from physdiff.ensembles import Empirical


def test_poisson_threshold_is_the_scipy_tail():
    from physdiff.figures.association import poisson_threshold

    for lam in (0.01, 0.7, 3.0, 15.6, 80.0):
        assert poisson_threshold(lam) == max(2, int(poisson.isf(0.01, lam)) + 1)


def test_voronoi_recovery_is_exact_for_two_patterns():
    """Two patterns at +-1: the probability-flow ODE keeps the bisector, so recovery is
    P(start on the right side) = Phi(1 / sqrt(delta)) (Monte Carlo, 3 standard errors)."""
    from physdiff.figures.association import voronoi_recovery

    pts = np.array([[-1.0], [1.0]])
    rng = np.random.default_rng(0)
    b = A.basin_size(Empirical(pts), pts[1], [0.5, 2.0], rng, n_trials=400, tolerance=0.5)
    pred = voronoi_recovery(b.deltas, 2.0, 2)
    assert np.all(np.abs(b.probability - pred) <= 3 * b.stderr + 1e-12)


def test_energy_panels_ring_and_memories():
    """The landscapes of the first figure: at beta = 0.7 one attractor at the centre
    (continuum curvature 2 (1 - beta) > 0), at beta = 30 one per pattern."""
    from physdiff.figures.association import circle_patterns

    pats = circle_patterns(8)
    emp = Empirical(pats)
    s = A.nearest_neighbour_spacing(pats)
    rng = np.random.default_rng(0)
    one = A.find_attractors(emp, 100, rng, delta_end=1 / 1.4, n_steps=30, scale=s)
    assert one.points.shape[0] == 1 and np.linalg.norm(one.points[0]) < 1e-6
    eight = A.find_attractors(emp, 200, rng, delta_end=1 / 60, n_steps=30, scale=s)
    assert eight.points.shape[0] == 8 and np.all(eight.stable)
    assert A.circle_merge_count(1.5) < 8 < A.circle_merge_count(30.0)
    # the continuum energy has its minimum at the centre for beta < 1 and off it above
    R = np.linspace(0, 1.5, 301)
    assert R[np.argmin(A.circle_energy(R, 0.7))] == 0.0
    assert 0.5 < R[np.argmin(A.circle_energy(R, 1.5))] < 1.0
    assert math.isclose(A.circle_merge_count_pairwise(20.0), 19.7858, rel_tol=1e-4)
