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


# ---------------------------------------------------------------------------------------
# basins: stochastic reversal and deterministic flow (physdiff.basins)
# ---------------------------------------------------------------------------------------
kappa, delta_s = sp.symbols("kappa delta", positive=True)
u, v = sp.symbols("u v", real=True)
z1, z2 = sp.symbols("z1 z2", real=True)


def _phi(t):
    return sp.exp(-(t**2) / 2) / sp.sqrt(2 * sp.pi)


def two_memory_log_odds_residual():
    """Memories ``a = (D, 0)``, ``b = (0, 0)``, probe ``y = a + sqrt(delta) z`` in 2-D: the
    log-odds ``(|y - b|^2 - |y - a|^2)/(2 delta)`` minus ``kappa^2/2 + kappa u`` with
    ``kappa = D/sqrt(delta)``, ``u = z1`` (the component along ``a - b``): simplifies to 0,
    so the orthogonal component ``z2`` drops out."""
    y1, y2 = D + sp.sqrt(delta_s) * z1, sp.sqrt(delta_s) * z2
    log_odds = ((y1**2 + y2**2) - ((y1 - D) ** 2 + y2**2)) / (2 * delta_s)
    k = D / sp.sqrt(delta_s)
    return sp.simplify(log_odds - (k**2 / 2 + k * z1))


def reversal_failure_substitution_residual():
    """``phi(u) expit(-(kappa^2/2 + kappa u))`` at ``u = v - kappa/2`` minus
    ``e^{-kappa^2/8} phi(v) / (2 cosh(kappa v / 2))``: simplifies to 0 (the failure
    probability of the stochastic reversal, ``1 - E[w_a]``, is the symmetric integral)."""
    lhs = _phi(u) / (1 + sp.exp(kappa**2 / 2 + kappa * u))
    lhs = lhs.subs(u, v - kappa / 2)
    rhs = sp.exp(-(kappa**2) / 8) * _phi(v) / (2 * sp.cosh(kappa * v / 2))
    return sp.simplify((lhs - rhs).rewrite(sp.exp))


def reversal_small_kappa_series(order: int = 6):
    """``E[w_a] = 1 - (e^{-kappa^2/8}/2) E_v[sech(kappa v/2)]`` expanded in ``kappa``, the
    Gaussian moments ``E v^{2k} = (2k - 1)!!`` taken term by term: ``1/2 + kappa^2/8 +
    O(kappa^4)``."""
    sech_series = sp.series(sp.sech(kappa * v / 2), kappa, 0, order).removeO()
    poly = sp.Poly(sp.expand(sech_series), v)
    mean = sum(c * sp.factorial2(m[0] - 1) for m, c in poly.terms() if m[0] % 2 == 0)
    full = 1 - sp.exp(-(kappa**2) / 8) / 2 * mean
    return sp.series(full, kappa, 0, order).removeO()


def reversal_to_flow_failure_ratio_limit():
    """``lim_{kappa -> oo}`` of the reversal's failure over the flow's, using
    ``E_v[sech(kappa v/2)] ~ phi(0) int sech(s/2) ds / kappa = 2 pi phi(0)/kappa`` and
    ``Phi(-kappa/2) ~ 2 phi(kappa/2)/kappa``: ``pi/2``."""
    sech_int = sp.integrate(sp.sech(v / 2), (v, -sp.oo, sp.oo))  # 2 pi
    rev = sp.exp(-(kappa**2) / 8) / 2 * _phi(0) * sech_int / kappa
    flow = 2 * _phi(kappa / 2) / kappa
    return sp.simplify(sp.limit(rev / flow, kappa, sp.oo)), sp.simplify(sech_int)


def harmonic_bounds_residuals():
    """``p q/(p + q) - min(p, q)/2 >= 0`` and ``min(p, q) - p q/(p + q) >= 0`` for
    ``0 < q <= p`` (``min = q``): returned as expressions in ``p = q (1 + x)``, ``x >= 0``,
    whose numerators are ``q x/2 >= 0`` and ``q^2 ... >= 0``. With ``p = p_a``, ``q = p_b``
    integrated against ``dy`` they give ``Phi(-kappa/2) <= 1 - P_rev <= 2 Phi(-kappa/2)``."""
    q, x = sp.symbols("q x", positive=True)
    p = q * (1 + x)
    return sp.factor(sp.simplify(p * q / (p + q) - q / 2)), sp.factor(
        sp.simplify(q - p * q / (p + q))
    )


def two_memory_flow_on_bisector():
    """The VE probability-flow velocity ``(y - E[x0|y])/(2 delta)`` of two memories at
    ``(+-D/2, 0)`` at a point ``(0, y2)`` of their bisector: its component normal to the
    bisector (along ``x1``) is 0, so the bisector is invariant and the basin of ``a`` is
    its half-space: ``P_flow = P(D/2 + sqrt(delta) u > 0) = Phi(kappa/2)``."""
    y2 = sp.Symbol("y2", real=True)
    wa = sp.exp(-((0 - D / 2) ** 2 + y2**2) / (2 * delta_s))
    wb = sp.exp(-((0 + D / 2) ** 2 + y2**2) / (2 * delta_s))
    mean1 = (wa * D / 2 - wb * D / 2) / (wa + wb)
    return sp.simplify((0 - mean1) / (2 * delta_s))


def simplex_projection_correlation():
    """For a regular simplex of side ``D``, ``(a - b).(a - c) / D^2`` from the three side
    lengths: ``(|a-b|^2 + |a-c|^2 - |b-c|^2)/(2 D^2) = 1/2`` (equicorrelated projections
    ``u_b = (W0 + W_b)/sqrt 2``, which gives ``E_w[Phi(kappa/sqrt 2 + w)^(n-1)]``)."""
    return sp.simplify((D**2 + D**2 - D**2) / (2 * D**2))
