"""Dense associative memory view of diffusion (docs/theory.md section 5), derived symbolically.

* ``-2 sigma^2 log p_t(x)`` of the empirical density equals the DAM energy
  ``-(1/beta) log sum_mu exp(-beta |x - xi_mu|^2)`` with ``beta = 1/(2 sigma^2)``, up to
  an additive constant.
* Two equal memories at +-D/2 in 1-D: ``E''(0) = 2 - beta D^2``; they merge iff
  ``beta D^2 <= 2``.
* Patterns uniform on the unit circle: averaging ``exp(-beta |x - xi|^2)`` over the angle
  gives ``E(R) = R^2 + 1 - (1/beta) log I0(2 beta R)``.
"""

from __future__ import annotations

import sympy as sp

x, R, theta = sp.symbols("x R theta", real=True)
beta, D, sigma = sp.symbols("beta D sigma", positive=True)


def dam_minus_diffusion_energy():
    """For two memories at +-D/2: -2 sigma^2 log p(x) - E_DAM(x) at beta = 1/(2 sigma^2) is a
    constant (its x-derivative vanishes)."""
    p = (
        sp.exp(-((x - D / 2) ** 2) / (2 * sigma**2)) + sp.exp(-((x + D / 2) ** 2) / (2 * sigma**2))
    ) / (2 * sp.sqrt(2 * sp.pi * sigma**2))
    b = 1 / (2 * sigma**2)
    e_dam = -(1 / b) * sp.log(sp.exp(-b * (x - D / 2) ** 2) + sp.exp(-b * (x + D / 2) ** 2))
    return sp.simplify(sp.diff(-2 * sigma**2 * sp.log(p) - e_dam, x))


def two_memory_curvature():
    e = -(1 / beta) * sp.log(sp.exp(-beta * (x - D / 2) ** 2) + sp.exp(-beta * (x + D / 2) ** 2))
    return sp.simplify(sp.diff(e, x, 2).subs(x, 0))


def merge_beta():
    return sp.solve(sp.Eq(two_memory_curvature(), 0), beta)


def circle_average_integrand():
    """exp(-beta |x - xi(theta)|^2) for x = (R, 0), xi = (cos theta, sin theta), rewritten
    as exp(-beta (R^2 + 1)) exp(2 beta R cos theta); its angular mean is
    exp(-beta (R^2 + 1)) I0(2 beta R)."""
    full = sp.exp(-beta * ((R - sp.cos(theta)) ** 2 + sp.sin(theta) ** 2))
    split = sp.exp(-beta * (R**2 + 1)) * sp.exp(2 * beta * R * sp.cos(theta))
    return sp.simplify(full - split)
