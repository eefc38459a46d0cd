"""Exact finite-(n, d) excess entropy of Gaussian data (physdiff.finite_size), derived.

The quantity: ``H = E log(1 + S)``, ``S = sum_{mu != nu} e^{L_mu}``,
``L_mu = (delta |z|^2 - |y - a_mu|^2)/(2 delta)``, ``y = a_nu + sqrt(delta) z``, the
``a_mu ~ N(0, diag(lambda))`` iid (any covariance, in its eigenbasis; isotropic data are
``lambda_i = s^2``). The theory is the library's own (docs/theory.md section 3, "Finite
size"); the large-d limit it reduces to is Biroli et al. 2024. Steps, each checked here:

1. Frullani: ``int_0^oo (e^{-u} - e^{-u(1 + S)})/u du = log(1 + S)``
   (:func:`frullani`); with ``u = e^{-v}`` it is an integral over ``v`` in R.
2. Given the query the other points are iid, so ``E e^{-u S} = phi(u)^{n-1}``
   (independence; no algebra), and ``1 - E exp(-e^{L - v}) = P(L + G > v)`` for a standard
   Gumbel ``G`` (CDF ``exp(-e^{-g})``): :func:`gumbel_identity`.
3. Conditional laws of the Gaussian query, per coordinate (:func:`query_posterior` for
   variance ``s^2``, :func:`query_posterior_coordinate` for ``lambda_i``): ``z_i | y ~
   N(sqrt(delta) y_i/(lambda_i + delta), lambda_i/(lambda_i + delta))``, so ``|z|^2 =
   sum_i w_i chi'^2_1(nc_i)`` with ``w_i = lambda_i/(lambda_i + delta)``, ``nc_i = delta
   y_i^2/(lambda_i (lambda_i + delta))``; ``y_i - a'_i ~ N(y_i, lambda_i)`` gives ``|y -
   a'|^2 = sum_i lambda_i chi'^2_1(y_i^2/lambda_i)``; ``y_i ~ N(0, lambda_i + delta)``.
   Isotropic: ``|z|^2 (1 + delta/s^2) ~ chi'^2_d(delta |y|^2/(s^2 (s^2 + delta)))``,
   ``|y - a'|^2/s^2 ~ chi'^2_d(|y|^2/s^2)``, ``|y|^2 ~ (s^2 + delta) chi^2_d``.
4. A zero-variance (normal) direction drops out of ``L``: its ``a`` is 0, so
   ``(y - a)_perp = sqrt(delta) z_perp`` and ``delta z_perp^2 - (y - a)_perp^2 = 0``
   (:func:`normal_direction_term`).
5. The two-point, one-dimensional case as an explicit double integral
   (:func:`pair_entropy_integrand`), the reference of tests/test_finite_size.py.
6. The laws of step 3 in closed form, through moment generating functions (their values
   at ``s = alpha + i t`` are the characteristic functions the code inverts):
   ``E e^{s lambda (x + mu)^2} = (1 - 2 s lambda)^{-1/2} exp(s lambda mu^2/(1 - 2 s
   lambda))`` for ``x ~ N(0, 1)`` (:func:`noncentral_chi2_mgf`; a sum over independent
   coordinates multiplies them), and ``E e^{s G} = Gamma(1 - s)`` for the Gumbel law, whose
   log-derivative at 0 is the Euler-Mascheroni constant, the Gumbel mean
   (:func:`gumbel_mgf`).
7. The inversion kernel: ``int_u^oo e^{-(alpha + i t) v} dv = e^{-(alpha + i t) u}/(alpha +
   i t)`` for ``alpha > 0`` (:func:`survival_kernel`), so ``P(T > u) = (1/2pi) int
   E[e^{(alpha + i t) T}] e^{-(alpha + i t) u}/(alpha + i t) dt`` (and ``P(T <= u)`` is
   minus the same integral at ``alpha < 0``).
"""

from __future__ import annotations

import sympy as sp

u, S, v, L, g = sp.symbols("u S v L g", real=True)
s2, delta = sp.symbols("s2 Delta", positive=True)
y, z, b = sp.symbols("y z b", real=True)


def frullani():
    """``int_0^oo (e^{-u} - e^{-u(1+S)})/u du - log(1 + S)`` for ``S > 0``: 0."""
    Sp = sp.Symbol("S", positive=True)
    up = sp.Symbol("u", positive=True)
    val = sp.integrate((sp.exp(-up) - sp.exp(-up * (1 + Sp))) / up, (up, 0, sp.oo))
    return sp.simplify(val - sp.log(1 + Sp))


def gumbel_identity():
    """``P(L + G > v) - (1 - exp(-e^{L - v}))`` with the Gumbel CDF ``exp(-e^{-g})``: 0."""
    cdf = sp.exp(-sp.exp(-g))
    p_exceed = 1 - cdf.subs(g, v - L)
    return sp.simplify(p_exceed - (1 - sp.exp(-sp.exp(L - v))))


def query_posterior():
    """Mean and variance of ``z`` given ``y = a + sqrt(delta) z`` (``a ~ N(0, s2)``) from the
    joint Gaussian, minus the claimed ``sqrt(delta) y/(s2 + delta)`` and ``s2/(s2 +
    delta)``: ``(0, 0)``."""
    var_y = s2 + delta
    cov_zy = sp.sqrt(delta)
    mean = cov_zy / var_y * y
    var = 1 - cov_zy**2 / var_y
    return (
        sp.simplify(mean - sp.sqrt(delta) * y / (s2 + delta)),
        sp.simplify(var - s2 / (s2 + delta)),
    )


def normal_direction_term():
    """``delta z^2 - (y - a)^2`` along a normal direction (``a = 0``, ``y = sqrt(delta) z``)."""
    return sp.simplify(delta * z**2 - (sp.sqrt(delta) * z) ** 2)


def pair_entropy_integrand():
    """``(integrand, variables)`` of ``H`` for ``n = 2``, ``d = 1``: with ``b = a_nu - a_mu ~
    N(0, 2 s2)`` and ``z ~ N(0, 1)``, ``L = -(b^2 + 2 sqrt(delta) b z)/(2 delta)`` and
    ``H = E log(1 + e^L)``: the Gaussian densities times ``log(1 + e^L)``."""
    lval = (delta * z**2 - (b + sp.sqrt(delta) * z) ** 2) / (2 * delta)
    lval = sp.expand(lval)
    dens = (
        sp.exp(-(b**2) / (4 * s2))
        / sp.sqrt(4 * sp.pi * s2)
        * sp.exp(-(z**2) / 2)
        / sp.sqrt(2 * sp.pi)
    )
    return dens * sp.log(1 + sp.exp(lval)), (b, z)


def query_posterior_coordinate():
    """Step 3 for one coordinate of variance ``lambda`` (``a ~ N(0, lambda)``): the mean and
    variance of ``z`` given ``y = a + sqrt(delta) z`` minus ``sqrt(delta) y/(lambda +
    delta)`` and ``lambda/(lambda + delta)``, and the noncentrality of ``z^2`` in units of
    that variance minus ``delta y^2/(lambda (lambda + delta))``: ``(0, 0, 0)``."""
    lam = sp.Symbol("lambda", positive=True)
    var_y = lam + delta
    mean = sp.sqrt(delta) / var_y * y
    var = 1 - delta / var_y
    nc = mean**2 / var
    return (
        sp.simplify(mean - sp.sqrt(delta) * y / (lam + delta)),
        sp.simplify(var - lam / (lam + delta)),
        sp.simplify(nc - delta * y**2 / (lam * (lam + delta))),
    )


def noncentral_chi2_mgf():
    """``E exp(s lambda (x + mu)^2)`` for ``x ~ N(0, 1)`` by integration, minus ``(1 - 2 s
    lambda)^{-1/2} exp(s lambda mu^2/(1 - 2 s lambda))``, written in ``c = 1 - 2 s lambda >
    0`` (the closed form continues analytically to ``s = alpha + i t``): 0."""
    x, mu = sp.symbols("x mu", real=True)
    c = sp.Symbol("c", positive=True)
    s_lam = (1 - c) / 2
    val = sp.integrate(
        sp.exp(-(x**2) / 2 + s_lam * (x + mu) ** 2) / sp.sqrt(2 * sp.pi),
        (x, -sp.oo, sp.oo),
        conds="none",
    )
    return sp.simplify(val - c ** sp.Rational(-1, 2) * sp.exp(s_lam * mu**2 / c))


def gumbel_mgf():
    """``E e^{s G}`` for the standard Gumbel density ``e^{-g - e^{-g}}``: the substitution
    ``x = e^{-g}`` (its Jacobian checked), then ``int_0^oo x^{-s} e^{-x} dx`` minus
    ``Gamma(1 - s)``, and ``d/ds log Gamma(1 - s)`` at 0 minus the Euler-Mascheroni constant
    (the Gumbel mean): ``(0, 0, 0)``."""
    s = sp.Symbol("s", real=True)
    x = sp.Symbol("x", positive=True)
    dens = sp.exp(s * g) * sp.exp(-g - sp.exp(-g))
    jac = sp.simplify(dens.subs(g, -sp.log(x)) / x - x ** (-s) * sp.exp(-x))
    val = sp.integrate(x ** (-s) * sp.exp(-x), (x, 0, sp.oo), conds="none")
    mean = sp.diff(sp.loggamma(1 - s), s).subs(s, 0)
    return jac, sp.simplify(val - sp.gamma(1 - s)), sp.simplify(mean - sp.EulerGamma)


def survival_kernel():
    """``int_u^oo e^{-(alpha + i t) v} dv - e^{-(alpha + i t) u}/(alpha + i t)`` for
    ``alpha > 0``: 0."""
    a = sp.Symbol("alpha", positive=True)
    t, w = sp.symbols("t w", real=True)
    val = sp.integrate(sp.exp(-(a + sp.I * t) * w), (w, u, sp.oo), conds="none")
    return sp.simplify(val - sp.exp(-(a + sp.I * t) * u) / (a + sp.I * t))
