"""REM collapse: closed forms = numerical roots = sympy; Monte Carlo f^e; errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from physdiff import memorization as M
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
        assert np.all(fe.f > -4 * fe.stderr)  # f^e >= 0 up to Monte Carlo error
    assert errs[-1] < errs[0]
    assert errs[-1] < 0.03


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


def test_errors():
    with pytest.raises(DomainError, match="n must be >= 2"):
        M.collapse_delta(1, np.ones(3))
    with pytest.raises(DomainError, match="spectrum must be >= 0"):
        M.collapse_delta(10, [1.0, -1.0])
    with pytest.raises(DomainError, match="t must lie in|times must lie in"):
        M.phase_diagram(np.ones(3), [0.5], [-1.0], "ou")
    with pytest.raises(DomainError, match="n >= 2"):
        M.excess_entropy_empirical(np.ones((1, 3)), [1.0], 10, np.random.default_rng(0))
