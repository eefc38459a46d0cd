"""theory/ensembles.py (sympy) against the numeric ensembles."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from physdiff.ensembles import GaussianMixture
from theory import ensembles as th

W, MU, V = [sp.Rational(1, 5), sp.Rational(4, 5)], [-1, sp.Rational(3, 2)], [sp.Rational(1, 2), 0]


def _numeric():
    return GaussianMixture.isotropic([0.2, 0.8], [[-1.0], [1.5]], [0.5, 0.0])


@pytest.mark.parametrize("yv,dv", [(-2.0, 0.1), (0.3, 1.0), (4.0, 7.0)])
def test_mixture_score_density_tweedie_jacobian(yv, dv):
    dens = th.mixture_density(W, MU, V)
    s = th.score(dens)
    mean, var = th.posterior_moments(W, MU, V)
    sub = {th.y: yv, th.delta: dv}
    num = _numeric()
    Y = np.array([[yv]])
    assert float(sp.log(dens).subs(sub)) == pytest.approx(num.log_density(Y, dv)[0], rel=1e-12)
    assert float(s.subs(sub)) == pytest.approx(num.score(Y, dv)[0, 0], rel=1e-11)
    # Tweedie, symbolically then numerically
    assert float((th.y + th.delta * s - mean).subs(sub)) == pytest.approx(0, abs=1e-12)
    assert float(mean.subs(sub)) == pytest.approx(num.denoise(Y, dv)[0, 0], rel=1e-11)
    jac = sp.diff(s, th.y)
    assert float(jac.subs(sub)) == pytest.approx(num.score_jacobian(Y, dv)[0, 0, 0], rel=1e-10)
    assert float((jac - (-1 / th.delta + var / th.delta**2)).subs(sub)) == pytest.approx(
        0, abs=1e-10
    )


def test_two_delta_score_is_tanh_form():
    s, target = th.two_delta_score()
    assert sp.simplify((s - target).rewrite(sp.exp)) == 0
    curv = th.two_delta_centre_curvature()
    assert sp.simplify(curv - (th.m**2 - th.delta) / th.delta**2) == 0
    num = GaussianMixture.two_deltas(1.3)
    for dv in (0.5, 1.69, 3.0):
        j = num.score_jacobian(np.zeros((1, 1)), dv)[0, 0, 0]
        assert j == pytest.approx(float(curv.subs({th.m: 1.3, th.delta: dv})), rel=1e-12)
