"""Exact finite-(n, d) excess entropy of the empirical score of Gaussian data.

The REM collapse (:mod:`physdiff.memorization`, Biroli et al. 2024) is a large-d
statement. At finite ``n`` and ``d`` the quantity the validation measures is the posterior
entropy over training points averaged over queries and over training sets,

    H(delta) = E[d f^e(delta)] = E log(1 + S),   S = sum_{mu != nu} e^{L_mu},
    L_mu = l_mu - l_nu = (delta |z|^2 - |y - a_mu|^2) / (2 delta),

with ``a_mu ~ N(0, s^2 I_d)`` iid and the query ``y = a_nu + sqrt(delta) z``
(:func:`physdiff.memorization.excess_entropy_samples` averages the same ``log(1 + S)``).
This module computes ``H`` with no large-d limit (derivation: ``theory/finite_size.py``):

1. Frullani: ``log(1 + S) = int_R e^{-e^{-v}} (1 - e^{-e^{-v} S}) dv``.
2. Given the query, the ``n - 1`` other points are iid, so ``E e^{-e^{-v} S} =
   (1 - p(v))^{n-1}`` with ``p(v) = E[1 - exp(-e^{L - v})] = P(L + G > v)``, ``G`` a
   standard Gumbel variable independent of everything (``1 - exp(-e^x)`` is the Gumbel
   survival function at ``-x``).
3. ``L = |z|^2/2 - X/(2 delta)`` with ``X = |y - a'|^2``, so ``|z|^2`` only shifts ``v``;
   averaging it out given ``y`` turns the Gumbel CDF ``e^{-e^{-v}}`` into the CDF of
   ``G - |z|^2/2``:

       H = E_rho int_R F_{G - r/2}(u) [1 - (1 - S_{G - X/(2 delta)}(u))^{n-1}] du,

   ``rho = |y|^2 ~ (s^2 + delta) chi^2_d``; given ``rho``, ``X/s^2 ~ chi'^2_d(rho/s^2)``
   and ``r (1 + delta/s^2) ~ chi'^2_d((delta/s^2) rho / (s^2 + delta))`` (noncentral
   chi-squares; isotropy leaves only norms).

Every piece is a one-dimensional integral: the law of ``G - c chi'^2`` on a grid (Gumbel
nodes against the noncentral chi-square CDF when the chi-square is the wider of the two,
chi-square nodes against the Gumbel survival function otherwise), the ``u`` integral by
the trapezoid rule (both factors are smooth on the unit scale of the Gumbel law), and the
``rho`` average by the trapezoid rule in ``log rho`` (where the chi-square density is
smooth and decays doubly exponentially). Accuracy about 1e-5 nats for d >= 4, 3e-5 at
d = 2 and 5e-4 at d = 1 (``step=0.25``: 2e-4) (tests/test_finite_size.py
against brute-force Monte Carlo over training sets, d = 2..256, n = 2..1e4).

Data on an m-dimensional linear manifold with equal variances (the ``intrinsic_dim``
argument): normal directions cancel exactly in ``L`` (``delta |z_perp|^2`` against
``|y_perp - a_perp|^2 = delta |z_perp|^2``), so ``H`` is the isotropic ``H`` in ``m``
dimensions. A general anisotropic spectrum needs the law of a weighted noncentral
chi-square per query and an outer integral over ``d`` query coordinates; that is not
implemented (:func:`finite_size_entropy` raises for unequal nonzero eigenvalues).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import covariance_spectrum, integer, positive, positive_grid
from .errors import DomainError, InputError

__all__ = [
    "finite_size_entropy",
    "finite_size_collapse",
    "FiniteSizeCollapse",
    "LOG2",
]

LOG2 = math.log(2.0)

# Gumbel nodes (trapezoid in g; the density e^{-g - e^{-g}} is entire, so the rule converges
# geometrically): P(G < -4) = e^{-e^4} ~ 2e-24, P(G > 38) ~ 3e-17
_G = np.arange(-4.0, 38.0 + 1e-9, 0.1)
_GW = np.exp(-_G - np.exp(-_G))
_GW /= _GW.sum()
_DU = 0.2  # u-grid step (unit-scale smooth integrand)
_TABLE = 6001  # points of a noncentral chi-square CDF table


def _survival_shifted(u: np.ndarray, k: int, lam: float, c: float) -> np.ndarray:
    """``P(G - c X > u)`` for a standard Gumbel ``G`` and ``X ~ chi'^2_k(lam)`` (independent),
    at each ``u``."""
    from scipy.special import chndtr

    mu = k + lam
    sd = math.sqrt(2.0 * (k + 2.0 * lam))
    lo = max(0.0, mu - 12.0 * sd)
    hi = mu + 14.0 * sd + 60.0  # the right tail decays like e^{-x/2}
    if c * sd >= 1.0:
        # the chi-square is the wider law: Gumbel nodes against its CDF (tabulated)
        # tabulated on a grid in sqrt(x), where the CDF (~ x^{k/2} at 0) is smooth for every k
        t = np.linspace(math.sqrt(lo), math.sqrt(hi), _TABLE)
        cdf = chndtr(t * t, k, lam) if lam > 0 else chndtr(t * t, k, 1e-300)
        arg = np.sqrt(np.maximum((_G[None, :] - u[:, None]) / c, 0.0))
        return np.interp(arg, t, cdf, left=0.0, right=1.0) @ _GW
    # the Gumbel law is the wider: chi-square cells (exact masses from the CDF, so the
    # boundary at x = 0 costs nothing) against the Gumbel survival function at their middles
    edges = np.linspace(lo, hi, int(math.ceil((hi - lo) / (sd / 32.0))) + 1)
    cdf = chndtr(edges, k, lam) if lam > 0 else chndtr(edges, k, 1e-300)
    w = np.diff(cdf)
    w /= w.sum()
    mid = 0.5 * (edges[1:] + edges[:-1])
    t = np.maximum(u[:, None] + c * mid[None, :], -700.0)
    return (-np.expm1(-np.exp(-t))) @ w


def _h_given_rho(rho: float, n: int, d: int, dl: float) -> float:
    """``E[log(1 + S) | |y|^2 = rho]`` (unit variance, noise ``dl``)."""
    lam_r = dl * rho / (1.0 + dl)
    mu_r = (d + lam_r) / (1.0 + dl)
    sd_r = math.sqrt(2.0 * (d + 2.0 * lam_r)) / (1.0 + dl)
    r_max = mu_r + 24.0 * sd_r + 80.0 / (1.0 + dl)
    u = np.arange(-0.5 * r_max - 8.0, math.log(n) + 40.0 + _DU, _DU)
    cdf_m = 1.0 - _survival_shifted(u, d, lam_r, 0.5 / (1.0 + dl))  # F_{G - r/2}(u)
    surv = _survival_shifted(u, d, rho, 0.5 / dl)  # S_{G - X/(2 delta)}(u)
    with np.errstate(divide="ignore"):
        bracket = -np.expm1((n - 1) * np.log1p(-np.minimum(surv, 1.0)))
    f = np.clip(cdf_m, 0.0, 1.0) * bracket
    return float(_DU * (f.sum() - 0.5 * (f[0] + f[-1])))


def _rho_nodes(d: int, dl: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``rho = (1 + dl) chi^2_d``: trapezoid in ``s = log(rho/(2(1 +
    dl)))``, where ``x = e^s ~ Gamma(d/2)`` has the smooth density ``e^{(d/2) s - e^s} /
    Gamma(d/2)`` (entire: the rule converges geometrically), with spacing ``step`` times
    its standard deviation ``sqrt(psi'(d/2))`` (at most 0.6), cut where it is below
    ``e^{-30}`` of its peak (the integrand is bounded by ``log n``)."""
    from scipy.optimize import brentq
    from scipy.special import polygamma

    a = 0.5 * d
    mode = math.log(a)
    peak = a * mode - a

    def drop(s):
        return peak - (a * s - math.exp(s)) - 30.0

    s_lo = brentq(drop, mode - 30.0 / a - 50.0, mode)
    s_hi = brentq(drop, mode, mode + 10.0)
    h = step * min(math.sqrt(float(polygamma(1, a))), 0.6)  # capped: d = 1, 2 need it
    s = np.linspace(s_lo, s_hi, max(5, int(math.ceil((s_hi - s_lo) / h)) + 1))
    logw = a * s - np.exp(s)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    return 2.0 * (1.0 + dl) * np.exp(s), w


def _entropy_one(dl: float, n: int, d: int, step: float) -> float:
    rho, w = _rho_nodes(d, dl, step)
    return float(sum(wi * _h_given_rho(float(r), n, d, dl) for r, wi in zip(rho, w, strict=True)))


def _dimension(d: int, spectrum, intrinsic_dim) -> tuple[int, float]:
    """The effective dimension and variance: isotropic in ``d`` (or ``intrinsic_dim``), or
    an equal-eigenvalue ``spectrum`` (zeros are normal directions and drop out)."""
    if spectrum is not None:
        lam = covariance_spectrum(spectrum, "spectrum")
        lam = lam[lam > 0]
        if lam.size == 0:
            raise DomainError("spectrum has no positive eigenvalue: the data are one point")
        if np.ptp(lam) > 1e-12 * lam.max():
            raise InputError(
                "spectrum: the exact finite-size entropy is implemented for equal nonzero "
                "eigenvalues (isotropic data, or isotropic on a linear manifold); got "
                f"eigenvalues from {lam.min():g} to {lam.max():g}"
            )
        return int(lam.size), float(lam.mean())
    m = integer(d, "d", 1, 10**6)
    if intrinsic_dim is not None:
        m = integer(intrinsic_dim, "intrinsic_dim", 1, m)
    return m, 1.0


def finite_size_entropy(
    delta,
    n: int,
    d: int | None = None,
    variance: float = 1.0,
    *,
    intrinsic_dim: int | None = None,
    spectrum=None,
    step: float = 0.5,
) -> np.ndarray | float:
    """``E[d f^e(delta)]``: the mean posterior entropy over ``n`` training points (nats),
    averaged over queries ``y = a_nu + sqrt(delta) z`` and over training sets
    ``a_mu ~ N(0, variance I_d)``, exactly at finite ``n`` and ``d`` (module docstring;
    ``theory/finite_size.py``). ``intrinsic_dim`` (or an equal-eigenvalue ``spectrum``
    with zeros) gives data on a linear manifold. ``step``: spacing of the ``|y|^2``
    quadrature in standard deviations of ``log |y|^2`` (0.5: about 1e-6 nats)."""
    dls = positive(delta, "delta")
    n = integer(n, "n", 2, 10**12)
    if d is None and spectrum is None:
        raise InputError("give d (with variance) or spectrum")
    m, s2 = _dimension(d if d is not None else 1, spectrum, intrinsic_dim)
    if spectrum is None:
        s2 = float(positive(variance, "variance"))
    step = float(positive(step, "step"))
    if step > 2.0:
        raise InputError(f"step must be in (0, 2] standard deviations; got {step:g}")
    flat = np.atleast_1d(dls).reshape(-1) / s2
    out = np.array([_entropy_one(float(x), n, m, step) for x in flat]).reshape(dls.shape)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class FiniteSizeCollapse:
    """The finite-size collapse: where ``E[d f^e]`` crosses ``level`` nats, against the
    large-d closed form ``delta_C`` (:func:`physdiff.memorization.collapse_delta_isotropic`),
    with the curve ``E[d f^e](delta)`` on ``deltas``."""

    n: int
    d: int
    variance: float
    level: float
    delta: float
    delta_large_d: float
    deltas: np.ndarray
    entropy: np.ndarray

    @property
    def log_offset(self) -> float:
        """``log(delta / delta_C)``: how far the finite-size crossing sits from the limit."""
        return math.log(self.delta / self.delta_large_d)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "d": self.d,
            "variance": self.variance,
            "level": self.level,
            "delta": self.delta,
            "log_delta": math.log(self.delta),
            "delta_large_d": self.delta_large_d,
            "log_offset": self.log_offset,
            "curve": {"delta": self.deltas.tolist(), "d_fe": self.entropy.tolist()},
        }


def finite_size_collapse(
    n: int,
    d: int,
    variance: float = 1.0,
    *,
    level: float = LOG2,
    intrinsic_dim: int | None = None,
    curve=None,
    xtol: float = 1e-5,
) -> FiniteSizeCollapse:
    """The noise level where the exact ``E[d f^e]`` (:func:`finite_size_entropy`) rises
    through ``level`` nats (default ``log 2``, the level the validation reads), by Brent's
    method in ``log delta`` (``E[d f^e]`` increases with ``delta``), and the curve on
    ``curve`` (default: 13 levels from ``delta_C / 6`` to ``3 delta_C``)."""
    from scipy.optimize import brentq

    from .memorization import collapse_delta_isotropic

    n = integer(n, "n", 2, 10**12)
    m, _ = _dimension(d, None, intrinsic_dim)
    s2 = float(positive(variance, "variance"))
    lev = float(positive(level, "level"))
    if lev >= math.log(n):
        raise DomainError(f"level must be below log n = {math.log(n):g} nats; got {lev:g}")
    dc = float(collapse_delta_isotropic(n, m, s2))

    def g(x):
        return finite_size_entropy(math.exp(x), n, m, s2) - lev

    lo, hi = math.log(dc) - 1.0, math.log(dc) + 1.0
    for _ in range(60):
        if g(lo) < 0:
            break
        lo -= 1.0
    for _ in range(60):
        if g(hi) > 0:
            break
        hi += 1.0
    root = math.exp(brentq(g, lo, hi, xtol=xtol))
    grid = dc * np.geomspace(1 / 6, 3.0, 13) if curve is None else positive_grid(curve, "curve")
    ent = np.asarray(finite_size_entropy(grid, n, m, s2), dtype=float).reshape(-1)
    return FiniteSizeCollapse(n, m, s2, lev, root, dc, np.asarray(grid, float), ent)
