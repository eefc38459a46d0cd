"""Symmetry breaking of the two-delta model (docs/theory.md section 2), derived symbolically.

Data: two point masses at +-m in 1-D. In OU time (alpha = theta = e^-t,
sigma^2 = 1 - theta^2) the noised density is ``p_t(x) = (N(x; theta m, sigma^2) +
N(x; -theta m, sigma^2))/2``.

* Criterion (a): the log-density potential ``-log p`` (VE frame) has curvature
  ``(Delta - m^2)/Delta^2`` at 0, which changes sign at ``Delta_c = m^2``.
* Criterion (b): Raya & Ambrogioni's raw VP-SDE potential ``u = beta (-x^2/4 - log p_t)``;
  ``u''(0) = 0`` gives ``theta^4 + 2 m^2 theta^2 - 1 = 0``, ``t_c = asinh(m^2)/2``.
* The fixed points of the raw drift ``x/2 + d log p_t/dx = 0`` satisfy
  ``(1 + theta^2) x = 2 theta E[x0 | x]``.
* Cloning (Biroli et al. 2024): ``q = m^2 theta^2 / Gamma_t`` with
  ``Gamma_t = 1 - theta^2 + s^2 theta^2`` equals ``m^2 / (s^2 + Delta)`` in the VE frame.
"""

from __future__ import annotations

import sympy as sp

x = sp.Symbol("x", real=True)
m, theta, delta, beta, s = sp.symbols("m theta Delta beta s", positive=True)
t = sp.Symbol("t", positive=True)


def _normal(z, mean, var):
    return sp.exp(-((z - mean) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)


def density_ou():
    """Two-delta density in the OU frame at scale theta."""
    var = 1 - theta**2
    return (_normal(x, theta * m, var) + _normal(x, -theta * m, var)) / 2


def density_ve():
    """Two-delta density in the VE frame at noise-to-signal variance Delta."""
    return (_normal(x, m, delta) + _normal(x, -m, delta)) / 2


def curvature_log_density():
    """d^2(-log p_Delta)/dx^2 at x = 0, simplified."""
    return sp.simplify(sp.diff(-sp.log(density_ve()), x, 2).subs(x, 0))


def critical_delta_a():
    return sp.solve(sp.Eq(curvature_log_density(), 0), delta)


def raw_potential():
    """u(x) = beta (-x^2/4 - log p_t(x))."""
    return beta * (-(x**2) / 4 - sp.log(density_ou()))


def curvature_raw_potential():
    return sp.simplify(sp.diff(raw_potential(), x, 2).subs(x, 0))


def critical_condition_b():
    """The numerator of u''(0) as a polynomial in theta: theta^4 + 2 m^2 theta^2 - 1."""
    num, _ = sp.fraction(sp.together(curvature_raw_potential() / beta))
    poly = sp.Poly(sp.expand(num), theta)
    return sp.expand(poly.as_expr() / poly.LC())


def critical_theta2_b():
    """Positive root for theta^2 of the condition (b)."""
    th2 = sp.Symbol("th2", positive=True)
    cond = critical_condition_b().subs(theta, sp.sqrt(th2))
    return [r for r in sp.solve(cond, th2) if r.is_positive is not False]


def critical_time_b():
    """t_c = -log(theta_c^2)/2, simplified to asinh(m^2)/2."""
    return sp.simplify(-sp.log(critical_theta2_b()[0]) / 2)


def fixed_point_residual():
    """(1 + theta^2) x - 2 theta E[x0 | x] against the raw drift x/2 + d/dx log p_t.

    Returns ``(drift, rescaled)`` where ``rescaled`` is the drift multiplied by
    ``2 (1 - theta^2)``; the claim is ``rescaled = 2 theta E[x0|x] - (1 + theta^2) x``.
    """
    drift = x / 2 + sp.diff(sp.log(density_ou()), x)
    post_mean = m * sp.tanh(theta * m * x / (1 - theta**2))  # E[x0 | x_t = x] for two deltas
    claim = 2 * theta * post_mean - (1 + theta**2) * x
    return drift, 2 * (1 - theta**2) * drift - claim


def cloning_q_ou_equals_ve():
    """q(t) of Biroli et al. in OU time minus m^2/(s^2 + Delta), with theta^2 = 1/(1 + Delta)."""
    gamma = 1 - theta**2 + s**2 * theta**2
    q_ou = m**2 * theta**2 / gamma
    return sp.simplify(q_ou.subs(theta, 1 / sp.sqrt(1 + delta)) - m**2 / (s**2 + delta))
