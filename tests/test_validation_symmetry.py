"""Validation experiments of symmetry breaking (docs/theory.md section 2): what the smoke runs of
``symmetry_dynamics``, ``symmetry_networks`` and ``late_init`` hold (fixture ``smoke``,
tests/conftest.py; verdicts both ways for every experiment are in tests/test_validation.py),
and the estimators they are built from, checked on cases with known answers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from validation.experiments import late_init, symmetry_dynamics, symmetry_networks
from validation.models import symmetric_pair

pytest.importorskip("torch")


def test_dynamics_records_every_criterion_against_every_measurable(smoke):
    _, results = smoke
    res = results["symmetry_dynamics"]
    first = res.rows[0].extra
    crits = {m["criterion"] for m in first["matrix"]}
    meas = {m["measurable"] for m in first["matrix"]}
    assert crits == {"a", "b", "S"}
    assert meas == set(symmetry_dynamics.MEASURABLES)
    # two deltas at +-4: delta_a = m^2, delta_S = m^2 - 1, delta_b = lambda - 1 + hypot(lambda, 1)
    assert first["criteria_delta"]["a"] == pytest.approx(16.0, rel=1e-9)
    assert first["criteria_delta"]["S"] == pytest.approx(15.0, rel=1e-9)
    assert first["criteria_delta"]["b"] == pytest.approx(15.0 + math.hypot(16.0, 1.0), rel=1e-6)


# ---------------------------------------------------------------------------------------
# the estimators, on cases with known answers
# ---------------------------------------------------------------------------------------
def test_commitment_probability_is_phi_of_sqrt_q():
    from physdiff.symmetry import cloning_probability

    z = np.linspace(-12, 12, 200001)
    w = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    for q in (0.1, 0.4549, 1.0, 3.0):
        by_tanh = 0.5 * (1 + np.sum(w * np.abs(np.tanh(q + math.sqrt(q) * z))))
        c = symmetry_dynamics.commitment_probability(4.0 / q - 0.25, 2.0, 0.25)
        assert c == pytest.approx(by_tanh, abs=1e-7)
    assert symmetry_dynamics.commitment_probability(1.0, 1.0) == pytest.approx(0.841344746, 1e-8)
    assert symmetry_dynamics.commitment_probability(1 / 0.45494, 1.0) == pytest.approx(0.75, 1e-4)
    assert symmetry_dynamics.PHI_Q1 == pytest.approx(float(cloning_probability(1.0, 1.0)))


def test_commitment_probability_by_monte_carlo():
    """Draw (class, y) from the noised mixture: P(sign(m.y) = class) = Phi(sqrt(q))."""
    rng = np.random.default_rng(3)
    ens = symmetric_pair(2.0, 0.25, 3)
    axis = np.full(3, 1 / math.sqrt(3))
    x0, labels = ens.sample_with_labels(40000, rng)
    y = x0 + math.sqrt(3.75) * rng.standard_normal(x0.shape)
    frac = np.mean(((y @ axis) > 0) == (labels == 0))
    c = symmetry_dynamics.commitment_probability(3.75, 2.0, 0.25)
    assert abs(frac - c) < 4 * math.sqrt(c * (1 - c) / 40000)


def test_steepest_point_of_the_exact_cloning_curve():
    """The Gompertz fit locates the steepest change of the closed-form phi to 0.05."""
    from physdiff.processes import OU
    from physdiff.symmetry import cloning_probability

    m, s2 = 2.0, 0.25
    q = np.geomspace(0.08, 8.0, 19)
    u = np.log(m * m / q - s2)
    phi = cloning_probability(np.exp(u), m, s2)
    s_log, s_t = symmetry_dynamics.steepest_points(u, phi, np.full(u.size, 0.01), OU())
    fine = np.linspace(u.min(), u.max(), 20001)
    exact = cloning_probability(np.exp(fine), m, s2)
    t = 0.5 * np.log1p(np.exp(fine))
    assert s_log == pytest.approx(fine[np.argmax(-np.gradient(exact, fine))], abs=0.05)
    assert s_t == pytest.approx(fine[np.argmax(-np.gradient(exact, t))], abs=0.05)


def test_jacobian_scan_on_the_exact_mixture_crosses_at_criterion_a():
    """The networks' estimator, run on the exact ensemble, finds delta_a = |m|^2 - s^2."""
    from physdiff.symmetry import critical_point

    ens = symmetric_pair(2.0, 0.25, 4)
    d_a = critical_point(ens, "log-density").delta
    assert d_a == pytest.approx(3.75, rel=1e-8)
    grid = np.geomspace(4 * d_a, d_a / 4, 41)
    scan = symmetry_networks.top_eigenvalue_curve(ens, np.zeros(4), grid)
    np.testing.assert_allclose((0.25 + grid) * scan["centre"], 4.0 / (0.25 + grid) - 1, atol=1e-9)
    np.testing.assert_allclose(scan["shift"], 0.0, atol=1e-9)
    assert symmetry_networks._cross(grid, scan["centre"]) == pytest.approx(math.log(d_a), abs=3e-3)
    assert symmetry_networks._cross(grid, scan["fixed_point"]) == pytest.approx(
        math.log(d_a), abs=3e-3
    )


def test_decided_fraction_matches_its_loop_twin():
    rng = np.random.default_rng(3)
    for steps in (1, 7, 120):
        last_wrong = rng.integers(-1, steps, size=500)
        loop = np.array([(last_wrong < k).mean() for k in range(steps)])
        assert np.array_equal(symmetry_dynamics.decided_fraction(last_wrong, steps), loop)


@pytest.mark.parametrize(
    "bad",
    [
        {"models": ((0.0, 0.25, 1),)},  # no separation
        {"models": ((1.0, -0.1, 1),)},
        {"models": ((1.0, 0.25, 0),)},
        {"models": ((0.1, 1.0, 1),), "q_start": 0.5},  # starts below delta_end
        {"clone_q": (8.0, 0.08)},
        {"n_boot": 1},
    ],
)
def test_dynamics_check_rejects_bad_input(bad):
    from physdiff.errors import InputError

    for preset in symmetry_dynamics.PRESETS.values():
        symmetry_dynamics.check(preset)
    with pytest.raises(InputError):
        symmetry_dynamics.check(dataclasses.replace(symmetry_dynamics.PRESETS["smoke"], **bad))


def test_sliced_wasserstein_of_gaussians():
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((5, 64))
    dirs /= np.linalg.norm(dirs, axis=0)
    a = rng.standard_normal((4000, 5))
    assert late_init.sliced_wasserstein(a, a, dirs) == pytest.approx(0.0, abs=1e-12)
    # a shift by v: every projection moves by v.u, so SW^2 = mean (v.u)^2
    v = np.array([0.5, 0, 0, 0, 0])
    expected = math.sqrt(np.mean((v @ dirs) ** 2))
    assert late_init.sliced_wasserstein(a + v, a, dirs) == pytest.approx(expected, rel=1e-9)


def test_theory_steps_of_the_digits_and_bad_start_steps():
    pytest.importorskip("sklearn")
    from physdiff.data import load_digits
    from physdiff.errors import InputError
    from physdiff.processes import DDPM

    steps = late_init.theory_steps(np.asarray(load_digits().train), DDPM())
    # later margin, later step; (b) comes before (a), (a) before speciation
    assert steps["ax1"] < steps["ax2"] and steps["Sx1"] < steps["ax1"] < steps["bx1"]
    assert 300 < steps["ax2"] < 600
    bad = dataclasses.replace(late_init.PRESETS["smoke"], start_steps=(999, 3))
    with pytest.raises(InputError, match="start_steps"):
        late_init.check(bad)
