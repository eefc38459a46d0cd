"""The sympy derivations of theory/processes.py equal physdiff's numeric processes."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from physdiff.processes import OU, VE, VPLinear
from theory import processes as th


@pytest.mark.parametrize("model", [th.ou, th.vp_linear, th.ve])
def test_g2_is_alpha2_ddelta(model):
    alpha, sigma2, _, _ = model()
    var = th.s if model is th.vp_linear else th.t
    assert th.g2_equals_alpha2_ddelta(alpha, sigma2, var)


def test_ou_matches():
    alpha, sigma2, delta, inverse = th.ou()
    p = OU()
    f, g2 = th.sde_coefficients(alpha, sigma2, th.t)
    for tv in (0.01, 0.7, 3.0):
        assert float(delta.subs(th.t, tv)) == pytest.approx(p.delta(tv), rel=1e-13)
        assert float(f.subs(th.t, tv)) == p.drift_coefficient(tv)
        assert float(g2.subs(th.t, tv)) == pytest.approx(p.diffusion(tv) ** 2, rel=1e-13)
    assert len(inverse) == 1
    for dv in (1e-3, 1.0, 50.0):
        assert float(inverse[0].subs(th.D, dv)) == pytest.approx(p.time_of_delta(dv), rel=1e-13)


def test_vp_linear_matches():
    alpha, sigma2, delta, root = th.vp_linear()
    p = VPLinear()
    vals = {th.b0: 0.1, th.b1: 20.0}
    f, g2 = th.sde_coefficients(alpha, sigma2, th.s)
    for sv in (0.05, 0.5, 0.95):
        sub = {**vals, th.s: sv}
        assert float(alpha.subs(sub)) == pytest.approx(p.alpha(sv), rel=1e-13)
        assert float(delta.subs(sub)) == pytest.approx(p.delta(sv), rel=1e-12)
        assert float(f.subs(sub)) == pytest.approx(p.drift_coefficient(sv), rel=1e-13)
        assert float(g2.subs(sub)) == pytest.approx(p.diffusion(sv) ** 2, rel=1e-12)
    for dv in (1e-4, 1.0, 1e3):
        assert float(root.subs({**vals, th.D: dv})) == pytest.approx(p.time_of_delta(dv), rel=1e-12)


def test_ve_matches():
    _, _, delta, inverse = th.ve()
    p = VE(0.01, 50.0)
    vals = {th.smin: sp.Rational(1, 100), th.smax: 50}
    for tv in (0.0, 0.3, 1.0):
        assert float(delta.subs({**vals, th.t: tv})) == pytest.approx(p.delta(tv), rel=1e-13)
    for dv in (1e-3, 1.0, 100.0):
        assert float(inverse[0].subs({**vals, th.D: dv})) == pytest.approx(
            p.time_of_delta(dv), rel=1e-12, abs=1e-14
        )
    assert np.isfinite(p.time_of_delta(1.0))
