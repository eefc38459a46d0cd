"""Exact finite-(n, d) excess entropy of Gaussian data (physdiff.finite_size), derived.

The quantity: ``H = E log(1 + S)``, ``S = sum_{mu != nu} e^{L_mu}``,
``L_mu = (delta |z|^2 - |y - a_mu|^2)/(2 delta)``, ``y = a_nu + sqrt(delta) z``, the
``a_mu ~ N(0, s^2 I_d)`` iid. Steps, each checked here:

1. Frullani: ``int_0^oo (e^{-u} - e^{-u(1 + S)})/u du = log(1 + S)``
   (:func:`frullani`); with ``u = e^{-v}`` it is an integral over ``v`` in R.
2. Given the query the other points are iid, so ``E e^{-u S} = phi(u)^{n-1}``
   (independence; no algebra), and ``1 - E exp(-e^{L - v}) = P(L + G > v)`` for a standard
   Gumbel ``G`` (CDF ``exp(-e^{-g})``): :func:`gumbel_identity`.
3. Conditional laws of the isotropic Gaussian query, per coordinate
   (:func:`query_posterior`): ``z | y ~ N(sqrt(delta) y/(s^2 + delta), s^2/(s^2 + delta))``,
   so ``|z|^2 (1 + delta/s^2)`` is a noncentral chi-square with noncentrality
   ``delta |y|^2 / (s^2 (s^2 + delta))``; ``y - a' ~ N(y, s^2)`` gives
   ``|y - a'|^2 / s^2 ~ chi'^2_d(|y|^2/s^2)``; ``|y|^2 ~ (s^2 + delta) chi^2_d``.
4. A zero-variance (normal) direction drops out of ``L``: its ``a`` is 0, so
   ``(y - a)_perp = sqrt(delta) z_perp`` and ``delta z_perp^2 - (y - a)_perp^2 = 0``
   (:func:`normal_direction_term`).
5. The two-point, one-dimensional case as an explicit double integral
   (:func:`pair_entropy_integrand`), the reference of tests/test_finite_size.py.
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
