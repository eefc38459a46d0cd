"""REM collapse of the empirical score (docs/theory.md section 3), derived symbolically.

* Gaussian mutual information: for ``x0 ~ N(0, s^2)`` and ``y = x0 + sqrt(Delta) z``,
  ``I = h(y) - h(y | x0) = 1/2 log((s^2 + Delta)/Delta)`` per dimension.
* Collapse ``alpha_n = I/d`` for isotropic data: ``Delta_C = s^2/(n^{2/d} - 1)`` and, with
  ``Delta = e^{2t} - 1``, Biroli et al.'s ``t_C = 1/2 log(1 + s^2/(n^{2/d} - 1))``.
* Their excess entropy in OU time, ``f = alpha_n + 1/2 log(Delta_t/(Delta_t + s^2 e^{-2t}))``
  with ``Delta_t = 1 - e^{-2t}``, equals ``alpha_n - I`` in the VE frame.
* Anisotropic sum rule: ``log n = sum_i 1/2 log(1 + lambda_i/Delta)``; equal eigenvalues
  reduce it to the isotropic rule; zero eigenvalues contribute nothing.
* Empirical score Jacobian: ``d/dy [(sum_mu w_mu a_mu - y)/Delta] = -I/Delta +
  Cov_w(a)/Delta^2`` with softmax weights ``w_mu ~ exp(-|y - a_mu|^2/(2 Delta))``.
"""

from __future__ import annotations

import sympy as sp

s2, delta, t, n, d, alpha = sp.symbols("s2 Delta t n d alpha", positive=True)


def gaussian_mutual_information():
    """Per-dimension I(x0; y) from differential entropies of Gaussians."""
    h_y = sp.log(2 * sp.pi * sp.E * (s2 + delta)) / 2
    h_noise = sp.log(2 * sp.pi * sp.E * delta) / 2
    return sp.simplify(h_y - h_noise)


def collapse_delta_isotropic():
    """Solve alpha_n = I for Delta, alpha_n = log(n)/d."""
    sol = sp.solve(sp.Eq(sp.log(n) / d, gaussian_mutual_information()), delta)
    return sp.simplify(sol[0])


def collapse_time_isotropic():
    return sp.simplify(sp.log(1 + collapse_delta_isotropic()) / 2)


def biroli_f_minus_ve_form():
    """Biroli's f(t) minus (alpha_n - I) with Delta = e^{2t} - 1: simplifies to 0."""
    dt = 1 - sp.exp(-2 * t)
    f_ou = alpha + sp.log(dt / (dt + s2 * sp.exp(-2 * t))) / 2
    i_ve = gaussian_mutual_information().subs(delta, sp.exp(2 * t) - 1)
    return sp.simplify(sp.expand_log(f_ou - (alpha - i_ve), force=True))


def sum_rule(eigenvalues):
    """``sum_i 1/2 log(1 + lambda_i/Delta)`` for explicit eigenvalues."""
    return sum(sp.log(1 + lam / delta) / 2 for lam in eigenvalues)


def empirical_score_jacobian(points, y_sym):
    """Symbolic Jacobian of the empirical score for explicit 1-D points, and the
    claimed form ``-1/Delta + Var_w(a)/Delta^2``; returns their difference."""
    logits = [-((y_sym - a) ** 2) / (2 * delta) for a in points]
    z = sum(sp.exp(lg) for lg in logits)
    w = [sp.exp(lg) / z for lg in logits]
    mean = sum(wi * a for wi, a in zip(w, points, strict=True))
    var = sum(wi * a**2 for wi, a in zip(w, points, strict=True)) - mean**2
    score = (mean - y_sym) / delta
    return sp.diff(score, y_sym) - (-1 / delta + var / delta**2)
