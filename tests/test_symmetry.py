"""Symmetry breaking: closed forms = numerical fixed-point analysis = sympy; errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from physdiff import symmetry as S
from physdiff.ensembles import Gaussian, GaussianMixture
from physdiff.errors import DomainError, InputError
from physdiff.processes import DDPM, OU, VPCosine, VPLinear
from theory import symmetry as th


# -- sympy derivations equal the numeric functions ---------------------------------------
def test_sympy_criterion_a_is_m_squared():
    assert th.critical_delta_a() == [th.m**2]
    curv = th.curvature_log_density()
    assert sp.simplify(curv - (th.delta - th.m**2) / th.delta**2) == 0
    model = GaussianMixture.two_deltas(1.3)
    for dv in (0.5, 1.69, 3.0):
        J = model.score_jacobian(np.zeros((1, 1)), dv)[0, 0, 0]
        assert -J == pytest.approx(float(curv.subs({th.m: 1.3, th.delta: dv})), rel=1e-12)


def test_sympy_criterion_b_polynomial_and_time():
    assert sp.expand(th.critical_condition_b() - (th.theta**4 + 2 * th.m**2 * th.theta**2 - 1)) == 0
    tc = th.critical_time_b()
    assert sp.simplify(tc - sp.asinh(th.m**2) / 2) == 0 or all(
        abs(float((tc - sp.asinh(th.m**2) / 2).subs(th.m, v))) < 1e-13 for v in (0.5, 1, 2.5)
    )
    for mv in (0.5, 1.0, 2.5):
        cp = S.critical_two_deltas(mv, "sde-drift", OU())
        assert cp.ou_time == pytest.approx(float(tc.subs(th.m, mv)), rel=1e-13)
        assert cp.ou_time == pytest.approx(math.asinh(mv**2) / 2, rel=1e-13)


def test_published_theta_c_two_deltas():
    """Raya & Ambrogioni 2023: two deltas at +-1 break at theta_c = sqrt(sqrt(2) - 1)."""
    cp = S.critical_two_deltas(1.0, "b", "ou")
    assert math.sqrt(1 / (1 + cp.delta)) == pytest.approx(math.sqrt(math.sqrt(2) - 1), rel=1e-14)


def test_sympy_fixed_point_equation():
    drift, resid = th.fixed_point_residual()
    for vals in ({th.x: 0.3, th.theta: 0.6, th.m: 1.2}, {th.x: -1.7, th.theta: 0.2, th.m: 0.7}):
        assert abs(float(resid.subs(vals))) < 1e-12
    # numeric fixed points of criterion (b) satisfy (1 + theta^2) x = 2 theta E[x0|x]
    model = GaussianMixture.two_deltas(1.0)
    for dv in (0.3, 1.0):
        c = S.drift_constant(dv, "b", OU())
        pts, _ = S.fixed_points_1d(model, dv, c)
        th_ = 1 / math.sqrt(1 + dv)
        xs = pts * th_  # process frame
        post = model.denoise(pts[:, None], dv)[:, 0]
        np.testing.assert_allclose((1 + th_**2) * xs, 2 * th_ * post, atol=1e-10)


def test_sympy_cloning_q():
    assert th.cloning_q_ou_equals_ve() == 0


# -- closed forms equal the numerical fixed-point analysis -------------------------------
@pytest.mark.parametrize("m", [0.5, 1.0, 3.0])
@pytest.mark.parametrize(
    "crit,proc",
    [
        ("log-density", None),
        ("sde-drift", OU()),
        ("sde-drift", VPLinear()),
        ("sde-drift", VPCosine()),
        ("sde-drift", DDPM()),
    ],
)
def test_two_deltas_closed_form_equals_numeric(m, crit, proc):
    model = GaussianMixture.two_deltas(m)
    closed = S.critical_two_deltas(m, crit, proc)
    numeric = S.critical_point(model, crit, proc, delta_range=(1e-3, 1e3))
    # every VP process (DDPM's piecewise schedule too) has c = -1/(2 (1 + delta)) exactly
    assert numeric.delta == pytest.approx(closed.delta, rel=1e-9)


def test_gaussian_mixture_criterion_a_closed_form():
    """Symmetric mixture N(+-m, s^2): J(0) = -1/(s^2 + D) + m^2/(s^2 + D)^2 = 0 at D = m^2 - s^2."""
    m, s2 = 2.0, 0.3
    mix = GaussianMixture.isotropic([0.5, 0.5], [[-m], [m]], [s2, s2])
    assert S.critical_point(mix, "a").delta == pytest.approx(m * m - s2, rel=1e-10)
    # in d dimensions the same along the class direction
    mix3 = GaussianMixture.isotropic([0.5, 0.5], [[-m, 0, 0], [m, 0, 0]], [s2, s2])
    assert S.critical_point(mix3, "a").delta == pytest.approx(m * m - s2, rel=1e-10)


def test_bifurcation_diagram_pitchfork():
    model = GaussianMixture.two_deltas(1.0)
    deltas = np.array([0.25, 0.5, 0.99, 1.01, 2.0])
    diag = S.bifurcation_diagram(model, deltas)
    np.testing.assert_array_equal(diag.n_stable(), [2, 2, 2, 1, 1])
    # stable branch: y = tanh(y/D) (the mean-field equation)
    for i in range(3):
        y = diag.stable(i)
        np.testing.assert_allclose(y, np.tanh(y / deltas[i]), atol=1e-12)
        assert diag.unstable(i) == pytest.approx([0.0], abs=1e-12)


def test_newton_fixed_point_in_d_dimensions():
    model = GaussianMixture.two_deltas(1.0, d=4)
    y, eig = S.find_fixed_point(model, [0.5, 0.1, -0.1, 0.0], 0.5)
    assert y[0] == pytest.approx(math.tanh(y[0] / 0.5), abs=1e-12)
    np.testing.assert_allclose(y[1:], 0.0, atol=1e-12)
    assert np.all(eig < 0)


def test_speciation_time():
    assert S.speciation_time([7.66, 1.0, 0.3]) == pytest.approx(0.5 * math.log(7.66))
    mix = GaussianMixture.isotropic([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], [0.5, 0.5])
    cp = S.critical_point(mix, "speciation")
    assert cp.ou_time == pytest.approx(0.5 * math.log(4.5))  # Lambda = m^2 + s^2


# -- cloning -------------------------------------------------------------------------------
def test_cloning_probability_closed_form_vs_monte_carlo_integral():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(400_000)
    for dv, m, s2 in ((0.5, 1.0, 0.0), (3.0, 2.0, 0.5)):
        q = m * m / (s2 + dv)
        mc = 0.5 * (1 + np.tanh(q + math.sqrt(q) * z))
        assert S.cloning_probability(dv, m, s2) == pytest.approx(mc.mean(), abs=4 * mc.std() / 632)
    # limits: phi -> 1 at low noise, 1/2 at high noise
    assert S.cloning_probability(1e-6, 1.0) == pytest.approx(1.0)
    assert S.cloning_probability(1e8, 1.0) == pytest.approx(0.5, abs=1e-7)


def test_measured_cloning_matches_theory_with_exact_score():
    m, s2 = 1.5, 0.25
    mix = GaussianMixture.isotropic([0.5, 0.5], [[-m, 0.0], [m, 0.0]], [s2, s2])
    proc = OU()
    rng = np.random.default_rng(3)
    for t in (0.4, 1.0):
        x_t = mix.in_frame(proc, t).sample(1500, rng)
        meas = S.measure_cloning(
            mix, lambda x: np.sign(x[:, 0]), x_t, t, rng, process=proc, n_steps=150
        )
        pred = S.cloning_probability(proc.delta(t), m, s2)
        assert abs(meas.phi - pred) <= 4 * meas.stderr + 0.01  # 0.01: discretisation bias


# -- bad input ---------------------------------------------------------------------------
def test_errors():
    with pytest.raises(DomainError, match="spectrum must be >= 0"):
        S.critical_from_eigenvalue([1.0, -0.5], "a")
    with pytest.raises(S.NoSymmetryBreaking, match="no symmetry to break"):
        S.critical_point(Gaussian([0.0], [[2.0]]), "a")
    with pytest.raises(InputError, match="no SDE drift"):
        S.critical_two_deltas(1.0, "b", "ve")
    with pytest.raises(InputError, match="no SDE drift"):
        S.critical_point(GaussianMixture.two_deltas(1.0), "b", "edm")
    with pytest.raises(InputError, match="criterion must be one of"):
        S.critical_two_deltas(1.0, "c")
    with pytest.raises(S.NoSymmetryBreaking):
        S.critical_from_eigenvalue(0.5, "speciation")


def test_critical_from_eigenvalue_accepts_rounding_negatives():
    """eigvalsh of a rank-one covariance gives zeros as ~ -1e-14: accepted as 0; a
    negative entry above the machine-precision tolerance still raises."""
    v = np.random.default_rng(0).standard_normal(50)
    lam = np.linalg.eigvalsh(np.outer(v, v))
    assert lam.min() < 0  # the rounding this test is about
    cp = S.critical_from_eigenvalue(lam, "speciation")
    assert cp.delta == pytest.approx(v @ v - 1.0, rel=1e-12)
    assert S.critical_from_eigenvalue([2.0, 1.0, -1e-15], "a").delta == 2.0
    with pytest.raises(
        DomainError, match=r"^eigenvalue: .*spectrum must be >= 0.*\[-1\.07e-14, inf\)"
    ):
        S.critical_from_eigenvalue([2.0, 1.0, -1e-12], "a")  # bound 8 k eps max = 1.07e-14
    with pytest.raises(DomainError, match="spectrum must be >= 0"):
        S.critical_from_eigenvalue(-1e-15, "a")  # nothing to be rounding of
    with pytest.raises(S.NoSymmetryBreaking):
        S.critical_from_eigenvalue([0.0, 0.0], "a")


def test_tracked_critical_point_slides_for_unequal_groups():
    """The docstring's claim: unequal weights, the tracked point slides and stays stable."""
    gm = GaussianMixture.isotropic([0.6, 0.4], [[1.0], [-1.0]], [0.05])
    with pytest.raises(S.NoSymmetryBreaking):
        S.critical_point(gm, "a")
    assert S.critical_point(gm, "a", track=False).delta == pytest.approx(0.775, abs=1e-3)
    pts, eig = S.fixed_points_1d(gm, 0.6, bounds=(-3, 3))
    assert pts.size == 3 and np.sum(eig < 0) == 2  # the second well, from a saddle-node


def test_critical_point_table_converts_to_every_process():
    cp = S.critical_two_deltas(1.0, "a")
    tab = cp.table()
    assert tab["times"]["ou"] == pytest.approx(math.log(2) / 2)
    assert tab["ddpm_step"]["floor"] == DDPM().step_of_delta(1.0, "floor")
    assert cp.time("vp-linear") == pytest.approx(VPLinear().time_of_delta(1.0))


# -- Gaussian late initialisation --------------------------------------------------------
def test_data_statistics_low_rank_plus_diagonal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 6)) @ rng.standard_normal((6, 6))
    full = S.data_statistics(x)
    np.testing.assert_allclose(full.covariance(), np.cov(x.T, bias=True), atol=1e-10)
    low = S.data_statistics(x, rank=2)
    np.testing.assert_allclose(np.diag(low.covariance()), np.var(x, axis=0), rtol=1e-10)
    assert low.top_eigenvalue == pytest.approx(full.top_eigenvalue)
    ens = GaussianMixture.isotropic([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], [0.5, 0.5])
    np.testing.assert_allclose(S.data_statistics(ens).covariance(), ens.covariance, atol=1e-12)


def test_late_start_samples_noised_statistics_and_runs_every_sampler():
    from physdiff import sampling

    g = Gaussian([1.0, -1.0], [[2.0, 0.5], [0.5, 1.0]])
    start = S.late_start(g, "vp-linear", 0.4)
    x = start(200_000, np.random.default_rng(1))
    np.testing.assert_allclose(x.mean(0), start.mean, atol=5 * np.sqrt(3 / 200_000))
    np.testing.assert_allclose(np.cov(x.T), start.covariance, atol=0.03)
    a, s = VPLinear().alpha(0.4), VPLinear().sigma(0.4)
    np.testing.assert_allclose(start.covariance, a * a * g.covariance + s * s * np.eye(2))
    for name in sampling.METHODS:
        out = sampling.sample(
            g,
            4000,
            np.random.default_rng(2),
            method=name,
            process="vp-linear",
            x_start=start,
            n_steps=60,
        )
        assert out.times[0] == pytest.approx(0.4)
        # Gaussian data: the start is the exact marginal, so samples have the data moments
        assert np.all(np.abs(out.samples.mean(0) - g.mean) < 5 * np.sqrt(2.0 / 4000) + 0.02)


def test_late_start_time_is_before_the_break():
    model = GaussianMixture.two_deltas(1.0)
    dl = S.late_start_delta(model, margin=2.0)
    assert dl == pytest.approx(2.0)  # Lambda = m^2 = 1, delta_c = 1
    st = S.late_start(model, "ddpm")
    assert st.t == DDPM().step_of_delta(2.0, "ceil")  # a whole step, at or above delta = 2
    assert DDPM().delta(st.t - 1) < 2.0 <= DDPM().delta(st.t)
    from physdiff import sampling

    out = sampling.ddim(
        model, 200, np.random.default_rng(0), process="ddpm", x_start=st, n_steps=10
    )
    assert np.mean(np.abs(np.abs(out.samples) - 1.0) < 0.1) > 0.9
    with pytest.raises(DomainError, match="margin"):
        S.late_start_delta(model, margin=0.5)


def test_critical_point_at_a_fixed_centre():
    """track=False (for networks) equals the tracked analysis on a symmetric model."""
    model = GaussianMixture.two_deltas(1.0, d=2)
    for crit, proc in (("log-density", None), ("sde-drift", OU())):
        fixed = S.critical_point(model, crit, proc, track=False, delta_range=(1e-3, 1e3))
        assert fixed.delta == pytest.approx(S.critical_two_deltas(1.0, crit, proc).delta, rel=1e-9)
