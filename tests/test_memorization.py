"""REM collapse: closed forms = numerical roots = sympy; Monte Carlo f^e; errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from physdiff import memorization as M
from physdiff._validate import spectrum_rounding_tolerance
from physdiff.ensembles import Empirical, GaussianMixture
from physdiff.errors import DomainError
from physdiff.processes import DDPM, OU
from theory import memorization as th


def test_sympy_gaussian_collapse_equals_physdiff():
    assert sp.simplify(th.gaussian_mutual_information() - sp.log(1 + th.s2 / th.delta) / 2) == 0
    dc = th.collapse_delta_isotropic()
    tc = th.collapse_time_isotropic()
    for nv, dv, sv in ((20000, 256, 1.0), (100, 3, 2.5), (1e6, 784, 0.3)):
        sub = {th.n: nv, th.d: dv, th.s2: sv}
        assert float(dc.subs(sub)) == pytest.approx(
            M.collapse_delta_isotropic(nv, dv, sv), rel=1e-12
        )
        assert float(tc.subs(sub)) == pytest.approx(
            0.5 * math.log(1 + sv / (nv ** (2 / dv) - 1)), rel=1e-12
        )
        assert float(tc.subs(sub)) == pytest.approx(
            M.collapse_time(nv, np.full(int(dv), sv), OU()), rel=1e-10
        )


def test_sympy_biroli_f_is_ve_form():
    assert th.biroli_f_minus_ve_form() == 0


def test_sympy_empirical_jacobian():
    y = sp.Symbol("y", real=True)
    diff = th.empirical_score_jacobian([-1, sp.Rational(1, 2), 2], y)
    for yv, dv in ((0.3, 0.7), (-2.0, 0.1)):
        assert abs(float(diff.subs({y: yv, th.delta: dv}))) < 1e-12
    emp = Empirical(np.array([[-1.0], [0.5], [2.0]]))
    J = emp.score_jacobian(np.array([[0.3]]), 0.7)[0, 0, 0]
    lg = [-((0.3 - a) ** 2) / 1.4 for a in (-1, 0.5, 2)]
    w = np.exp(lg) / np.sum(np.exp(lg))
    a = np.array([-1, 0.5, 2])
    assert J == pytest.approx(-1 / 0.7 + (w @ a**2 - (w @ a) ** 2) / 0.49, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(n=st.floats(2.0, 1e12), d=st.integers(1, 3072), s2=st.floats(0.01, 100.0))
def test_spectrum_formula_reduces_to_isotropic(n, d, s2):
    assert M.collapse_delta(n, np.full(d, s2)) == pytest.approx(
        M.collapse_delta_isotropic(n, d, s2), rel=1e-10
    )


@settings(max_examples=40, deadline=None)
@given(n=st.floats(2.0, 1e9), seed=st.integers(0, 1000))
def test_collapse_root_solves_the_sum_rule(n, seed):
    lam = np.random.default_rng(seed).exponential(size=20)
    dc = M.collapse_delta(n, lam)
    assert M.mutual_information_gaussian(dc, lam) == pytest.approx(math.log(n), rel=1e-10)
    # and against a direct bracketing root of the criterion
    from scipy.optimize import brentq

    root = math.exp(
        brentq(
            lambda u: 0.5 * np.sum(np.log1p(lam / math.exp(u))) - math.log(n), -60, 60, xtol=1e-14
        )
    )
    assert dc == pytest.approx(root, rel=1e-9)


def test_normal_directions_drop_out():
    lam = np.r_[np.full(10, 4.0), np.zeros(500)]
    assert M.collapse_delta(1000, lam) == pytest.approx(M.collapse_delta_isotropic(1000, 10, 4.0))


def test_asymptotics():
    for a in (1e-3, 1e-2):
        assert M.collapse_delta_asymptotic(a, 2.0, "small") == pytest.approx(
            2.0 / math.expm1(2 * a), rel=10 * a * a
        )
    for a in (10.0, 20.0):
        assert M.collapse_delta_asymptotic(a, 2.0, "large") == pytest.approx(
            2.0 / math.expm1(2 * a), rel=1e-8
        )


def test_vectorised_over_n_and_published_example():
    ns = np.array([10.0, 1e3, 1e5])
    np.testing.assert_allclose(
        M.collapse_delta(ns, np.ones(50)),
        [M.collapse_delta_isotropic(v, 50, 1.0) for v in ns],
        rtol=1e-12,
    )
    # the example: d = 256, n = 20000, unit variance, OU time
    tc = M.collapse_time(20000, np.ones(256), "ou")
    assert tc == pytest.approx(0.5 * math.log(1 + 1 / (20000 ** (2 / 256) - 1)), rel=1e-12)
    step = DDPM().step_of_ou_time(tc)
    assert DDPM().ou_times[step] == pytest.approx(tc, abs=0.01)


def test_mixture_collapse_by_monte_carlo_reduces_to_gaussian():
    """A one-component mixture is Gaussian: the MC root equals the closed form."""
    g = GaussianMixture.isotropic([1.0], [[0.0, 0.0, 0.0]], [1.5])
    rng = np.random.default_rng(0)
    dc = M.collapse_delta_ensemble(g, 50.0, rng, n_samples=20000)
    assert dc == pytest.approx(M.collapse_delta_isotropic(50.0, 3, 1.5), rel=0.03)


def test_excess_entropy_mc_converges_to_theory_as_d_grows():
    """f^e at fixed alpha_n approaches max(0, alpha_n - I/d) as d grows (finite-d
    corrections shrink); checked at a noise level well above and well below delta_C."""
    rng = np.random.default_rng(1)
    errs = []
    for d in (10, 40, 80):
        n = int(round(math.exp(0.1 * d)))
        x = rng.standard_normal((n, d))
        dc = M.collapse_delta_isotropic(n, d, 1.0)
        dls = np.array([dc * 8, dc / 8])
        fe = M.excess_entropy_empirical(x, dls, 300, rng)
        th_ = np.maximum(M.excess_entropy_gaussian(dls, n, np.ones(d)), 0.0)
        errs.append(np.max(np.abs(fe.f - th_)))
        assert np.all(fe.f > -4 * fe.stderr - 1e-12)  # f^e >= 0 up to Monte Carlo error
    assert errs[-1] < errs[0]
    assert errs[-1] < 0.03


def _fe_quadrature(pts: np.ndarray, delta: float, order: int) -> float:
    """Exact ``f^e`` of a tiny training set by tensor Gauss-Hermite quadrature:
    ``f^e = E_y[lse_mu(-|y - a_mu|^2 / (2 delta))]/d + 1/2``, ``y = a_nu + sqrt(delta) z``."""
    from scipy.special import logsumexp

    n, d = pts.shape
    x, w = np.polynomial.hermite_e.hermegauss(order)
    z = np.stack([g.ravel() for g in np.meshgrid(*([x] * d), indexing="ij")], axis=1)
    wz = np.prod(np.meshgrid(*([w / w.sum()] * d), indexing="ij"), axis=0).ravel()
    tot = 0.0
    for a in pts:
        y = a + math.sqrt(delta) * z
        tot += wz @ logsumexp(-0.5 * np.sum((y[:, None] - pts[None]) ** 2, axis=2) / delta, axis=1)
    return tot / (n * d) + 0.5


@pytest.mark.parametrize(("d", "n", "order"), [(1, 3, 150), (2, 5, 60)])
def test_excess_entropy_estimator_is_unbiased(d, n, order):
    """The self-term-subtracted estimator has the exact (quadrature) mean."""
    pts = np.random.default_rng(10 + d).standard_normal((n, d))
    dc = M.collapse_delta_isotropic(n, d, 1.0)
    dls = dc * np.array([0.1, 1.0, 10.0])
    exact = [_fe_quadrature(pts, dl, order) for dl in dls]
    fe = M.excess_entropy_empirical(pts, dls, 20000, np.random.default_rng(d))
    assert np.all(np.abs(fe.f - exact) < 4 * fe.stderr)
    assert np.all(fe.f >= -1e-12) and np.all(fe.f <= math.log(n) / d + 1e-12)


def test_excess_entropy_self_term_cuts_the_variance():
    """Averaging ``lse/d + 1/2`` has per-sample spread ~ 1/sqrt(2d) (the chi-square
    self-logit) at every noise level; with the self term subtracted the spread shrinks
    near the collapse and vanishes below it."""
    d, n, m = 32, 100, 2000
    emp = Empirical(np.random.default_rng(3).standard_normal((n, d)))
    dc = M.collapse_delta_isotropic(n, d, 1.0)
    fe = M.excess_entropy_empirical(
        emp, dc * np.array([0.05, 0.2, 1.0]), m, np.random.default_rng(4)
    )
    spread = fe.stderr * math.sqrt(m) * math.sqrt(2 * d)  # 1 for the plain estimator
    assert spread[0] < 1e-6 and spread[1] < 0.05 and spread[2] < 0.6


def test_measured_collapse_from_fe_and_trajectories():
    rng = np.random.default_rng(2)
    d, n = 40, 60
    x = rng.standard_normal((n, d))
    dls = np.geomspace(0.05, 20, 25)
    fe = M.excess_entropy_empirical(x, dls, 200, rng)
    dm = M.measured_collapse_delta(fe)
    dc = M.collapse_delta_isotropic(n, d, 1.0)
    assert dc / 4 < dm < dc * 4  # finite d: same scale, the deviation is shown in validation
    tr = M.collapse_along_trajectories(Empirical(x), "ou", 200, rng, n_steps=150)
    assert tr.frozen[-1] == 1.0 and tr.participation[-1] < 1.01
    assert dc / 8 < tr.collapse_delta() < dc * 8


def test_phase_diagram_regimes():
    lam = np.r_[5.0, np.ones(99)]
    pd_ = M.phase_diagram(lam, np.linspace(0.01, 1, 50), np.linspace(0, 3, 60), "ou")
    assert pd_.t_speciation == pytest.approx(0.5 * math.log(5.0))
    for j, tc in enumerate(pd_.t_collapse):
        col = pd_.regime[:, j]
        assert np.all(col[pd_.times < tc] == 0)
        assert np.all(col[(pd_.times >= tc) & (pd_.times >= pd_.t_speciation)] == 2)


def test_phase_diagram_without_speciation_is_brownian_above_collapse():
    """Lambda <= 1: no speciation, so no point is labelled speciated (regime 1)."""
    for lam in (np.ones(10), np.full(10, 0.5)):
        pd_ = M.phase_diagram(lam, np.linspace(0.1, 1, 20), np.linspace(0, 3, 40), "ou")
        assert pd_.t_speciation is None
        assert set(np.unique(pd_.regime)) == {0, 2}
        below = pd_.times[:, None] < pd_.t_collapse[None, :]
        assert np.array_equal(pd_.regime == 0, below)


@pytest.mark.filterwarnings("error")
def test_phase_diagram_and_collapse_work_in_log_n():
    """alpha_n d ~ 1000 > log(float max): no overflow, no NaN, the closed form in logs."""
    d = 1000
    alphas = np.array([0.5, 1.0, 2.0])
    pd_ = M.phase_diagram(np.ones(d), alphas, np.linspace(0, 3, 30), "ou")
    np.testing.assert_array_equal(pd_.log_n, alphas * d)
    # isotropic: delta_C = 1/expm1(2 alpha_n), t_C = 1/2 log(1 + delta_C)
    np.testing.assert_allclose(pd_.t_collapse, 0.5 * np.log1p(1 / np.expm1(2 * alphas)), rtol=1e-12)
    assert np.all(np.isfinite(pd_.t_collapse))
    log_dc = M.log_collapse_delta(alphas * d, np.ones(d))
    np.testing.assert_allclose(log_dc, -np.log(np.expm1(2 * alphas)), rtol=1e-12)
    # d = 1, log n = 1000: delta_C = e^-2000 (underflows as a float; its log does not)
    assert M.log_collapse_delta(1000.0, [1.0]) == pytest.approx(-2000.0, rel=1e-14)
    assert M.log_collapse_delta(math.log(1e3), np.ones(5)) == pytest.approx(
        math.log(M.collapse_delta(1e3, np.ones(5))), rel=1e-13
    )
    pd1 = M.phase_diagram([2.0], [1000.0], [0.0, 0.5], "ddpm")
    assert np.all(np.isfinite(pd1.t_collapse)) and pd1.t_collapse[0] == DDPM().t_min
    with pytest.raises(DomainError, match="log n"):
        M.n_of_alpha(1.0, 1000)
    with pytest.raises(DomainError, match="log_n must be >= log 2"):
        M.log_collapse_delta(0.5, np.ones(3))


def test_errors():
    with pytest.raises(DomainError, match="n must be >= 2"):
        M.collapse_delta(1, np.ones(3))
    with pytest.raises(DomainError, match="spectrum must be >= 0"):
        M.collapse_delta(10, [1.0, -1.0])
    with pytest.raises(DomainError, match="t must lie in|times must lie in"):
        M.phase_diagram(np.ones(3), [0.5], [-1.0], "ou")
    with pytest.raises(DomainError, match="n >= 2"):
        M.excess_entropy_empirical(np.ones((1, 3)), [1.0], 10, np.random.default_rng(0))


# -- covariance spectra with rounding, and the root solver ---------------------------------
def test_rounding_negatives_in_a_spectrum_count_as_zero():
    """eigvalsh of a rank-5 covariance in R^40 gives its 35 zeros as +-1e-16-ish numbers
    (the shared rule of physdiff._validate.covariance_spectrum): accepted, and the result
    is that of the exact spectrum with zeros."""
    x = np.random.default_rng(0).standard_normal((5, 40))
    lam = np.linalg.eigvalsh(x.T @ x / 5)
    assert lam.min() < 0
    exact = np.where(np.abs(lam) <= spectrum_rounding_tolerance(lam), 0.0, lam)
    assert M.collapse_delta(1e3, lam) == M.collapse_delta(1e3, exact)
    assert M.mutual_information_gaussian(0.3, lam) == M.mutual_information_gaussian(0.3, exact)
    pd_ = M.phase_diagram(lam, [0.5, 1.0], [0.1, 1.0], "ou")
    assert pd_.d == 5  # the rank: rounding of either sign is a normal direction
    np.testing.assert_array_equal(
        pd_.t_collapse, M.phase_diagram(exact, [0.5, 1.0], [0.1, 1.0], "ou").t_collapse
    )


def test_genuine_negative_spectrum_raises_naming_the_argument():
    for call in (
        lambda: M.collapse_delta(10, [1.0, 2.0, -1e-9]),
        lambda: M.log_collapse_delta(3.0, [1.0, -1.0]),
        lambda: M.phase_diagram([5.0, -0.1], [0.5], [0.5]),
    ):
        with pytest.raises(DomainError, match=r"^spectrum: .*must be >= 0.*must lie in \[-"):
            call()


def _mp_log_collapse(log_n: float, lam: np.ndarray) -> float:
    """The root of the sum rule in 40-digit arithmetic (mpmath), as the reference."""
    import mpmath as mp

    with mp.workdps(40):
        ll = [mp.mpf(float(v)) for v in lam]
        target = mp.mpf(float(log_n))
        u0 = float(M.log_collapse_delta(log_n, lam))

        def g(u):
            return mp.fsum(mp.log1p(v * mp.exp(-u)) for v in ll) / 2 - target

        return float(mp.findroot(g, mp.mpf(u0) + mp.mpf("1e-3"), tol=mp.mpf("1e-35")))


@pytest.mark.parametrize(
    ("lam", "log_n"),
    [
        (np.r_[5.0, np.ones(99)], [0.7, 5.0, 30.0, 100.0, 600.0]),  # spiked, d = 100
        (1.0 / np.arange(1, 3073), [1.0, 50.0, 600.0]),  # power law, d = 3072
        (np.r_[1e-8, 1.0, 1e6], [0.7, 10.0, 1000.0]),  # 14 decades of eigenvalues
    ],
)
def test_collapse_root_equals_a_40_digit_reference(lam, log_n):
    """The safeguarded Newton keeps the accuracy of the bisection it replaced: log delta_C
    within tol = 1e-13 (relative, of max(1, |log delta_C|)) of the mpmath root."""
    got = np.asarray(M.log_collapse_delta(np.array(log_n), lam))
    ref = np.array([_mp_log_collapse(v, lam) for v in log_n])
    assert np.all(np.abs(got - ref) <= 2e-13 * np.maximum(1.0, np.abs(ref)))


def test_collapse_root_takes_few_iterations():
    """The docstring's count: 8-9 Newton iterations for 1000 alpha_n at once (the strict
    bracket test it replaced took 53-54; benchmarks/bench_memorization.py times both)."""
    for lam in (np.r_[5.0, np.ones(99)], 1.0 / np.arange(1, 3073)):
        m = lam.size
        alphas = np.geomspace(max(1.001 * math.log(2) / m, 0.01 * min(1.0, 600 / m)), 1, 1000)
        log_n = alphas * m if m <= 600 else alphas * 600
        u, iters = M._solve_log_collapse(np.log(lam), log_n, 1e-13)
        assert iters <= 10
        np.testing.assert_allclose(M.mutual_information_gaussian(np.exp(u), lam), log_n, 1e-12)
