"""Associative memory: DAM energy, merging, circle, attractors, classification, basins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

from physdiff import association as A
from physdiff.ensembles import Empirical, GaussianMixture
from physdiff.errors import DomainError, InputError
from theory import association as th


def test_sympy_identities():
    assert th.dam_minus_diffusion_energy() == 0
    assert sp.simplify(th.two_memory_curvature() - (2 - th.beta * th.D**2)) == 0
    assert th.merge_beta() == [2 / th.D**2]
    assert th.circle_average_integrand() == 0


def test_dam_energy_equals_diffusion_energy_up_to_a_constant():
    rng = np.random.default_rng(0)
    pats = rng.standard_normal((7, 3))
    y = rng.standard_normal((5, 3))
    for beta in (0.3, 4.0):
        e1 = A.dam_energy(y, pats, beta)
        e2 = A.energy(Empirical(pats), y, 1 / (2 * beta))
        np.testing.assert_allclose(np.diff(e1), np.diff(e2), rtol=1e-10, atol=1e-12)


def test_line_integral_energy_matches_exact_energy():
    rng = np.random.default_rng(1)
    emp = Empirical(rng.standard_normal((20, 2)) * 2)
    y = rng.standard_normal((4, 2))
    ref = np.array([0.3, -0.2])
    e, err = A.energy_line_integral(emp, y, 0.5, ref, n_points=96)
    exact = A.energy(emp, y, 0.5) - A.energy(emp, ref[None], 0.5)
    np.testing.assert_allclose(e, exact, atol=1e-8)
    assert np.all(err < 1e-6)


@pytest.mark.parametrize("D", [1.0, 2.0, 3.5])
def test_two_memories_merge_exactly_at_beta_d2_equal_2(D):
    emp = Empirical(np.array([[-D / 2], [D / 2]]))
    b_c = A.merge_threshold(D)
    assert b_c == pytest.approx(2 / D**2)
    rng = np.random.default_rng(2)
    for beta, n_expected in ((0.97 * b_c, 1), (1.03 * b_c, 2)):
        att = A.find_attractors(emp, 300, rng, delta_end=1 / (2 * beta), scale=D)
        assert att.points.shape[0] == n_expected
        assert np.all(att.stable)
        assert np.sign(A.two_memory_curvature(beta, D)) == (1 if n_expected == 1 else -1)


def test_circle_continuum_energy_is_the_angular_average():
    for R, beta in ((0.0, 1.0), (0.7, 3.0), (1.2, 0.5)):
        avg = integrate.quad(
            lambda th_, R=R, beta=beta: math.exp(
                -beta * ((R - math.cos(th_)) ** 2 + math.sin(th_) ** 2)
            ),
            0,
            2 * math.pi,
        )[0] / (2 * math.pi)
        assert A.circle_energy(R, beta) == pytest.approx(-math.log(avg) / beta, rel=1e-10)
    # many discrete patterns approach the continuum
    K, beta = 400, 5.0
    th_ = 2 * np.pi * np.arange(K) / K
    pats = np.stack([np.cos(th_), np.sin(th_)], 1)
    y = np.array([[0.6, 0.0]])
    disc = A.dam_energy(y, pats, beta)[0] + math.log(K) / beta
    assert disc == pytest.approx(float(A.circle_energy(0.6, beta)), rel=1e-8)


def test_circle_merge_count_rule_and_pairwise():
    for beta in (2.0, 20.0):
        K = A.circle_merge_count(beta)
        assert A.circle_pattern_stability(K, beta)[1] <= 0.02
        assert A.circle_pattern_stability(K - 1, beta)[1] > 0.02
        assert K >= A.circle_merge_count_pairwise(beta)  # pairwise merges first
    assert A.circle_merge_count_pairwise(20.0) == pytest.approx(
        math.pi / math.asin(1 / math.sqrt(40))
    )


def test_exact_empirical_score_only_memorises():
    rng = np.random.default_rng(3)
    tr = rng.standard_normal((30, 2)) * 3
    emp = Empirical(tr)
    att = A.find_attractors(emp, 300, rng)
    cl = A.classify_samples(att.samples, tr)
    assert cl.fractions["memorised"] == 1.0
    idx, dist = emp.nearest(att.points)
    assert np.all(dist < 1e-3 * cl.spacing)


def test_classification_on_constructed_cases():
    rng = np.random.default_rng(4)
    tr = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])  # spacing 10
    mem = tr[[0, 1]] + 0.1  # within 0.25 * 10
    spur = np.array([5.0, 5.0]) + 0.05 * rng.standard_normal((30, 2))  # a collapsed cluster
    new = np.array([[20.0, -7.0], [-13.0, 4.0], [3.0, 18.0]])
    cl = A.classify_samples(np.concatenate([mem, spur, new]), tr, min_neighbours=5)
    np.testing.assert_array_equal(cl.labels, [0] * 2 + [1] * 30 + [2] * 3)
    assert cl.spacing == pytest.approx(10.0)
    auto = A.classify_samples(np.concatenate([mem, spur, new]), tr)
    assert auto.min_neighbours >= 2 and np.all(auto.labels[2:32] == 1)


def test_basin_of_a_training_point():
    rng = np.random.default_rng(5)
    tr = np.array([[-2.0], [2.0]])
    emp = Empirical(tr)
    b = A.basin_size(emp, tr[1], np.geomspace(0.01, 50, 12), rng, n_trials=64)
    assert b.probability[0] == 1.0
    # far beyond the merge scale the return is a coin flip between the two memories
    assert b.probability[-1] < 0.9
    assert 0 < b.delta_basin < 50 and b.radius == pytest.approx(math.sqrt(b.delta_basin))


def test_errors():
    with pytest.raises(DomainError, match="c_m must lie"):
        A.classify_samples(np.zeros((3, 2)), np.eye(2), c_m=0.0)
    with pytest.raises(DomainError, match="c_s must lie"):
        A.classify_samples(np.zeros((3, 2)), np.eye(2), c_s=-1.0)
    with pytest.raises(InputError, match="at least two"):
        A.classify_samples(np.zeros((3, 2)), np.zeros((1, 2)))
    with pytest.raises(DomainError, match="distance must lie"):
        A.merge_threshold(0.0)
    with pytest.raises(InputError, match="tolerance must be given"):
        A.basin_size(GaussianMixture.two_deltas(1.0), [1.0], [1.0], np.random.default_rng(0))
