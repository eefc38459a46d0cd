"""The associative-memory experiment's pieces: references, thresholds, transition, basins.

The experiment's smoke preset itself runs in tests/test_validation.py (with every other
experiment: verdicts agree, a shifted prediction disagrees, trainings are reused).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from physdiff import association as A
from physdiff.ensembles import Empirical
from physdiff.errors import InputError
from physdiff.examples import point_set as named_points
from validation.experiments import associative_memory as E


def test_ring_fresh_fraction_matches_monte_carlo():
    rng = np.random.default_rng(0)
    th = rng.uniform(0, 2 * np.pi, 20000)
    fresh = np.stack([np.cos(th), np.sin(th)], axis=1)
    for K in (2, 5, 16):
        pts = E.circle_points(K)
        s = A.nearest_neighbour_spacing(pts)
        assert s == pytest.approx(2 * math.sin(math.pi / K))
        _, dist = Empirical(pts).nearest(fresh)
        frac = float(np.mean(dist <= 0.25 * s))
        se = math.sqrt(frac * (1 - frac) / fresh.shape[0])
        assert abs(frac - E.ring_fresh_fraction(K, 0.25)) < 4 * se


def test_ring_min_neighbours_controls_chance_clusters():
    """Uniform ring samples (the generalising limit) are almost never called spurious with
    the ring threshold, nor with classify_samples' default (intrinsic dimension 1 estimated
    from the 16 training points, and K in the chance count); it equals the ring's."""
    rng = np.random.default_rng(1)
    N, K = 1000, 16
    th = rng.uniform(0, 2 * np.pi, N)
    fresh = np.stack([np.cos(th), np.sin(th)], axis=1)
    train = E.circle_points(K)
    mn = E.ring_min_neighbours(N, K, 0.25)
    ring = A.classify_samples(fresh, train, min_neighbours=mn)
    assert ring.fractions["spurious"] < 0.02
    assert ring.fractions["memorised"] == pytest.approx(E.ring_fresh_fraction(K, 0.25), abs=0.05)
    default = A.classify_samples(fresh, train)
    assert default.intrinsic_dim == 1.0
    assert abs(default.min_neighbours - mn) <= 1 and default.fractions["spurious"] < 0.02


def test_normalised_and_transition():
    m, se = E.normalised(0.75, 0.01, 0.5, 0.0)
    assert m == pytest.approx(0.5) and se == pytest.approx(0.02)
    tr = E.transition([2, 4, 8, 16], [1.0, 0.9, 0.7, 0.1])
    # crosses 1/2 between 8 and 16, a third of the way in log K
    assert tr["bracket"] == [8.0, 16.0]
    assert tr["K_star"] == pytest.approx(8 * 2 ** (1 / 3))
    none = E.transition([2, 4], [1.0, 0.8])
    assert none["K_star"] is None and "above" in none["note"]


def test_basin_crossing():
    deltas = np.geomspace(1e-3, 1e1, 5)  # one decade per step
    x, se = E.basin_crossing(deltas, [1.0, 1.0, 0.95, 0.85, 0.5], 100)
    assert x == pytest.approx(-1 + 0.5)  # halfway between 1e-1 and 1e0 in log10
    assert se == pytest.approx(0.03 / 0.1)
    x, se = E.basin_crossing(deltas, [1.0] * 5, 100)
    assert x == pytest.approx(1.0) and se == pytest.approx(1.0)
    x, _ = E.basin_crossing(deltas, [0.5] * 5, 100)
    assert x == pytest.approx(-4.0)


def test_spurious_states_on_a_constructed_case():
    rng = np.random.default_rng(2)
    train = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    cluster = np.array([5.0, 5.0]) + 0.05 * rng.standard_normal((30, 2))
    pair = np.array([[20.0, 20.0], [20.05, 20.0]])
    samples = np.concatenate([train[:2] + 0.1, cluster, pair])
    cl = A.classify_samples(samples, train, min_neighbours=1)
    states = E.spurious_states(samples, cl, limit=5)
    assert [st["size"] for st in states] == [30, 2]  # largest first
    assert np.allclose(states[0]["centre"], [5.0, 5.0], atol=0.05)
    assert len(E.spurious_states(samples, cl, limit=1)) == 1
    cl = A.classify_samples(samples, train, min_neighbours=2)
    assert [st["size"] for st in E.spurious_states(samples, cl, limit=5)] == [30]


def test_digits_subsets_are_nested_and_match_the_command():
    a = E.digits_points(8, seed=0)
    b = E.digits_points(32, seed=0)
    assert np.array_equal(b[:8], a)
    assert np.array_equal(named_points("digits", 32, seed=0), b)
    with pytest.raises(InputError, match="digits_K"):
        E.digits_points(5000, seed=0)


def test_check_refuses_bad_configs():
    base = E.PRESETS["smoke"]
    for bad in (
        {"digits_K": (2, 100000)},
        {"circle_K": (4, 2)},
        {"circle_K": (1, 4)},
        {"c_m": 0.0},
        {"digits_K": ()},
    ):
        with pytest.raises(InputError):
            E.check(dataclasses.replace(base, **bad))
    E.check(base)


def test_presets_scale_up():
    s, c, g = (E.PRESETS[p] for p in ("smoke", "cpu", "gpu"))
    assert (
        s.training.steps <= c.training.steps <= g.training.steps
        and s.n_samples <= c.n_samples <= g.n_samples
    )
    for cfg in (s, c, g):
        assert cfg.digits_K[0] == 2 and cfg.circle_K[0] == 2
    assert c.digits_K[-1] == g.digits_K[-1] == 1438  # the full training split


def test_circle_theory_numbers():
    th = E._circle_theory(11.0, E.PRESETS["cpu"])
    assert th["dam_merge_count_pairwise_at_delta_end"] == pytest.approx(
        math.pi / math.asin(E.EDM_SIGMA_MIN), rel=1e-9
    )
    assert th["dam_merge_count_at_delta_end"] >= th["dam_merge_count_pairwise_at_delta_end"]
    # delta_eff: the noise at which 11 equally spaced memories merge pairwise
    assert A.circle_merge_count_pairwise(1 / (2 * th["delta_eff"])) == pytest.approx(11.0)
    assert 0 < th["sigma_eff_training_quantile"] < 1
