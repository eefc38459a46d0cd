"""Geometric memorisation (docs/theory.md section 4), derived symbolically.

* Gated REM (Achilli et al. 2024, arXiv 2410.08727, code): ``t_{c,i}(t) = sqrt((g S4/2 +
  t s_i^2)/(2 L))`` with ``L = ln n``. Direction i is condensed at ``t < t_{c,i}(t)``;
  squaring the fixed point ``t = t_{c,i}(t)`` gives ``2 L t^2 - s_i^2 t - g S4/2 = 0``, whose
  positive root is ``t_i = (s_i^2 + sqrt(s_i^4 + 4 g S4 L))/(4 L)``; ``g = 0`` gives
  ``s_i^2/(2 L)``; ``t_{c0} = t_{c,i}(0)``.
* Ordering: at fixed ``S4`` (one manifold) ``dt_i/ds_i^2 > 0`` for ``g = 0`` and ``g = 1``
  (the high-variance directions are lost first, at the larger noise). The ratio of two
  thresholds is ``s_a^2/s_b^2`` for ``g = 0`` and tends to 1 as ``L -> infinity`` for
  ``g = 1`` (the gate compresses the spread).
* Gaussian direction: the score ``-y/(s^2 + Delta)`` has Jacobian ``-1/(s^2 + Delta)``, equal
  to ``-1/Delta + Var(x0|y)/Delta^2`` with ``Var(x0|y) = Delta s^2/(s^2 + Delta)``.
* Effective-sample-size model: ``n_eff = 1 + (n - 1) e^{-I}``, ``r = 1 - 1/n_eff``;
  ``r = level`` at ``I = log(n - 1) - logit(level)`` (``I = log(n - 1)`` for 1/2). It rests on
  ``E[sum_k w_k (a_k - abar_w)^2] = (1 - sum_k w_k^2) sigma^2`` for i.i.d. ``a_k`` of
  variance ``sigma^2`` and fixed weights summing to one.
"""

from __future__ import annotations

import sympy as sp

t, s2, S4, L, delta, sigma2, mu = sp.symbols("t s2 S4 L Delta sigma2 mu", positive=True)
g = sp.Symbol("g", nonnegative=True)
y = sp.Symbol("y", real=True)
n, info, level = sp.symbols("n I level", positive=True)


def gated_direction_noise(gate=g):
    """``t_{c,i}(t)`` of the gated REM."""
    return sp.sqrt((gate * S4 / 2 + t * s2) / (2 * L))


def gated_global_noise(gate=g):
    """``t_{c0} = sqrt(g S4/(4 L))``."""
    return sp.sqrt(gate * S4 / (4 * L))


def gated_threshold(gate=g):
    """The positive root of ``t = t_{c,i}(t)`` (squared: ``2 L t^2 - s2 t - g S4/2 = 0``)."""
    roots = sp.solve(sp.Eq(t**2, gated_direction_noise(gate) ** 2), t)
    # for g > 0 the other root, (s2 - sqrt(s2^2 + 4 g S4 L))/(4L), is negative; for g = 0
    # sympy (t > 0) returns s2/(2L) alone
    pos = [r for r in roots if sp.sign(r.subs({s2: 1, S4: 2, L: 3, g: 1})) > 0]
    (root,) = pos
    return sp.simplify(root)


def gated_fixed_point_residual(gate=g):
    """``t_{c,i}(t_i)^2 - t_i^2``: zero; both sides are positive, so ``t_{c,i}(t_i) = t_i``
    (the positive root of the squared equation solves the fixed point itself)."""
    ti = gated_threshold(gate)
    return sp.simplify(sp.expand(gated_direction_noise(gate).subs(t, ti) ** 2 - ti**2))


def gated_g0_limit_residual():
    """``t_i(g = 0) - s2/(2 L)``: simplifies to 0."""
    return sp.simplify(gated_threshold(0) - s2 / (2 * L))


def gated_global_is_direction_at_zero():
    """``t_{c,i}(0) - t_{c0}``: simplifies to 0."""
    return sp.simplify(gated_direction_noise().subs(t, 0) - gated_global_noise())


def gated_threshold_slope(gate):
    """``d t_i / d s2`` at fixed S4 (one manifold)."""
    return sp.simplify(sp.diff(gated_threshold(gate), s2))


def gated_threshold_ratio_limit(gate, sa2, sb2):
    """``lim_{L -> inf} t_a/t_b`` at fixed S4, for two variances ``sa2``, ``sb2``."""
    th = gated_threshold(gate)
    return sp.limit(th.subs(s2, sa2) / th.subs(s2, sb2), L, sp.oo)


def gaussian_jacobian_eigenvalue():
    """``d/dy`` of the score of ``N(0, s2)`` noised to variance ``s2 + Delta``."""
    score = sp.diff(-(y**2) / (2 * (s2 + delta)), y)
    return sp.simplify(sp.diff(score, y))


def gaussian_jacobian_tweedie_residual():
    """``-1/Delta + Var(x0|y)/Delta^2 - (-1/(s2 + Delta))`` with the posterior variance
    ``1/(1/s2 + 1/Delta)``: simplifies to 0."""
    post_var = 1 / (1 / s2 + 1 / delta)
    return sp.simplify(-1 / delta + post_var / delta**2 - gaussian_jacobian_eigenvalue())


def ess_retained(information=info):
    """``r = 1 - 1/n_eff`` with ``n_eff = 1 + (n - 1) e^{-I}``."""
    n_eff = 1 + (n - 1) * sp.exp(-information)
    return sp.simplify(1 - 1 / n_eff)


def ess_critical_information(lev=level):
    """Solve ``r(I) = level`` for I: ``log(n - 1) - logit(level)``."""
    (sol,) = sp.solve(sp.Eq(ess_retained(), lev), info)
    return sp.simplify(sol)


def weighted_variance_identity(k: int = 3):
    """``E[sum_j w_j (a_j - abar_w)^2] - (1 - sum w_j^2) sigma^2`` for ``k`` i.i.d. values
    with ``E a = mu``, ``Var a = sigma^2`` and weights ``w_j`` summing to 1; returns 0."""
    ws = sp.symbols(f"w0:{k}", positive=True)
    a = sp.symbols(f"a0:{k}", real=True)
    wsub = {ws[-1]: 1 - sum(ws[:-1])}
    abar = sum(wj * aj for wj, aj in zip(ws, a, strict=True))
    expr = sp.expand(sum(wj * (aj - abar) ** 2 for wj, aj in zip(ws, a, strict=True)))
    # expectation of a polynomial of degree 2 in independent a_j: replace monomials
    poly = sp.Poly(expr, *a)
    total = 0
    for monom, coeff in poly.terms():
        term = coeff
        for p in monom:
            if p == 1:
                term *= mu
            elif p == 2:
                term *= sigma2 + mu**2
        total += term
    target = (1 - sum(wj**2 for wj in ws)) * sigma2
    return sp.simplify(sp.expand((total - target).subs(wsub)))


if __name__ == "__main__":  # pragma: no cover
    print("t_i        =", gated_threshold())
    print("t_i(g=0)   =", gated_threshold(0))
    print("dt/ds2 g=1 =", gated_threshold_slope(1))
    print("Gaussian J =", gaussian_jacobian_eigenvalue())
    print("ESS I_c    =", ess_critical_information())
