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
* Effective-sample-size model (docs/theory.md section 4), derived in three steps:

  (i) for ``y = a_nu + sqrt(Delta) z`` around training point ``nu``, the log ratio of the
  bulk's partition sum to ``nu``'s unnormalised weight is ``log(Z_bulk / w_nu) = log(n - 1)
  + log mean_{k != nu} N(y; a_k, Delta) - log N(y; a_nu, Delta)``; annealing the bulk mean
  (``E_a N(y; a, Delta) = N(y; 0, s^2 + Delta)`` for a Gaussian direction of variance
  ``s^2``) and averaging over ``y`` gives ``log(n - 1) - I`` with
  ``E_y[log N(y; a_nu, Delta) - log N(y; 0, s^2 + Delta)] = 1/2 log(1 + s^2/Delta) = I``
  (:func:`information_density_mean_residual`, :func:`bulk_log_ratio_mean_residual`);

  (ii) the posterior weight ``1/(1 + Z_bulk/w_nu)`` at that mean is the annealed weight
  ``1/n_eff`` with ``n_eff = 1 + (n - 1) e^{-I}`` (:func:`annealed_weight_residual`);

  (iii) ``E[sum_k w_k (a_k - abar_w)^2] = (1 - sum_k w_k^2) sigma^2`` for i.i.d. ``a_k`` of
  variance ``sigma^2`` and fixed weights summing to one (:func:`weighted_variance_identity`);
  with ``n_eff`` equal weights ``sum w^2 = 1/n_eff``, so the retained share is
  ``r = 1 - 1/n_eff`` (:func:`ess_chain_residual`), ``r = level`` at
  ``I = log(n - 1) - logit(level)`` (``I = log(n - 1)`` for 1/2).

  The two approximations are named: the bulk mean and the weights are replaced by their
  typical (annealed) values, so ``1 - E[sum w^2]`` (the exact retained share of a
  direction the weights do not depend on) is modelled by ``1 - 1/n_eff``.
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


def _gaussian_expectation(expr, pairs):
    """``E[expr]`` for a polynomial in independent zero-mean normals: ``pairs`` maps each
    variable to its variance (monomials replaced by the normal moments)."""
    syms = list(pairs)
    poly = sp.Poly(sp.expand(expr), *syms)
    total = 0
    for monom, coeff in poly.terms():
        term = coeff
        for v, p in zip(syms, monom, strict=True):
            if p % 2:
                term = 0
                break
            term *= sp.factorial2(p - 1) * pairs[v] ** (p // 2) if p else 1
        total += term
    return sp.simplify(total)


def log_normal(x, mean, var):
    """``log N(x; mean, var)`` (one dimension)."""
    return -sp.log(2 * sp.pi * var) / 2 - (x - mean) ** 2 / (2 * var)


def information_density_mean(variance=s2):
    """``E_y[log N(y; a, Delta) - log N(y; 0, s^2 + Delta)]`` with ``a ~ N(0, s^2)`` and
    ``y = a + sqrt(Delta) z`` (step (i)): the mean of the information density of one
    Gaussian direction."""
    a, z = sp.symbols("a z", real=True)
    yy = a + sp.sqrt(delta) * z
    dens = log_normal(yy, a, delta) - log_normal(yy, 0, variance + delta)
    logs = sp.expand_log(dens, force=True)
    # the log terms are constants; the rest is a polynomial in (a, z)
    const = sum(t for t in sp.Add.make_args(logs) if not t.has(a, z))
    poly = sp.expand(logs - const)
    return sp.simplify(const + _gaussian_expectation(poly, {a: variance, z: sp.Integer(1)}))


def information_density_mean_residual():
    """``information_density_mean() - 1/2 log(1 + s^2/Delta)``: simplifies to 0."""
    return sp.simplify(
        sp.expand_log(information_density_mean() - sp.log(1 + s2 / delta) / 2, force=True)
    )


def bulk_log_ratio_mean_residual(k: int = 3):
    """Step (i) for ``k`` Gaussian directions of variances ``s_j^2``: the mean over ``y`` of
    the annealed ``log(Z_bulk / w_nu) = log(n - 1) + sum_j [log N(y_j; 0, s_j^2 + Delta) -
    log N(y_j; a_j, Delta)]`` minus ``log(n - 1) - I`` with ``I = sum_j 1/2 log(1 +
    s_j^2/Delta)`` (the mutual information of docs/theory.md section 3); returns 0."""
    vs = sp.symbols(f"v0:{k}", positive=True)
    mean = sp.log(n - 1) - sum(information_density_mean(v) for v in vs)
    target = sp.log(n - 1) - sum(sp.log(1 + v / delta) / 2 for v in vs)
    return sp.simplify(sp.expand_log(mean - target, force=True))


def annealed_weight_residual(information=info):
    """Step (ii): the weight ``1/(1 + Z_bulk/w_nu)`` at ``log(Z_bulk/w_nu) = log(n - 1) - I``
    minus ``1/n_eff``, ``n_eff = 1 + (n - 1) e^{-I}``; simplifies to 0."""
    weight = 1 / (1 + sp.exp(sp.log(n - 1) - information))
    n_eff = 1 + (n - 1) * sp.exp(-information)
    return sp.simplify(weight - 1 / n_eff)


def ess_chain_residual(k: int = 4):
    """Step (iii) chained: :func:`weighted_variance_identity` holds for ``k`` weights (its
    residual is 0); for ``k`` equal weights the factor ``1 - sum w^2`` is ``1 - 1/k``, and at
    ``k = n_eff`` it is :func:`ess_retained`. Returns ``(1 - sum w^2)|_{w = 1/k} - (1 - 1/k)``
    plus ``(1 - 1/n_eff) - ess_retained()`` (0) if the identity holds, else raises."""
    if weighted_variance_identity(k) != 0:
        raise AssertionError("the weighted-variance identity fails")
    kk = sp.Symbol("k", positive=True)
    equal = (1 - sum(sp.Rational(1, k) ** 2 for _ in range(k))) - (1 - sp.Rational(1, k))
    n_eff = 1 + (n - 1) * sp.exp(-info)
    factor = (1 - 1 / kk).subs(kk, n_eff)
    return sp.simplify(equal + factor - ess_retained())


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
