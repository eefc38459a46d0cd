"""Uniform data on a sphere in an m-dimensional subspace (norm-normalised, equal stds).

``x0 = mu + R B u`` with ``B`` ``(d, m)`` orthonormal columns and ``u`` uniform on the unit
sphere ``S^{m-1}`` of ``R^m``: the ``normalized=True`` :class:`LinearManifold` with equal
stds (Achilli et al. 2024, arXiv 2410.08727; docs/theory.md sections 1 and 4).

The noised marginal (VE frame, ``y = x0 + sqrt(delta) z``)
---------------------------------------------------------------
Split ``c = y - mu`` into ``c_par = B^T c`` (``r = |c_par|``, ``v = c_par / r``) and
``c_perp = c - B c_par``. The normal part is ``N(c_perp; 0, delta I_{d-m})``. Along the
subspace, averaging the Gaussian kernel over the sphere,

    p(c_par) = (2 pi delta)^{-m/2} exp(-(r^2 + R^2)/(2 delta)) E_u[exp(kappa u.v)],
    kappa = R r / delta,
    E_u[exp(kappa u.v)] = Gamma(m/2) (2/kappa)^nu I_nu(kappa) = 0F1(; m/2; kappa^2/4),
    nu = m/2 - 1,

the normaliser of the von Mises-Fisher law (Mardia & Jupp 2000, Sec. 9.3; DLMF 10.25.2).
With the scaled log-normaliser ``G(kappa) = log E_u exp(kappa u.v) - kappa`` (``<= 0``),

    log p(y) = -d/2 log(2 pi delta) - |c_perp|^2/(2 delta) - (r - R)^2/(2 delta) + G(kappa),

a sum of non-positive terms (no cancellation of ``r^2 + R^2`` against ``kappa``).

Posterior
---------
Given ``y``, ``u`` is von Mises-Fisher on ``S^{m-1}`` with mean direction ``v`` and
concentration ``kappa``. With the Bessel ratio ``A = A_m(kappa) = I_{m/2}(kappa) /
I_{m/2-1}(kappa) = d log 0F1 / d kappa`` (mean resultant length):

    E[u | y]     = A v,
    E[u u^T | y] = (A/kappa) I + (1 - m A/kappa) v v^T,
    Cov(u | y)   = (A/kappa) (I - v v^T) + V v v^T,
    V = Var(u.v | y) = dA/dkappa = 1 - A^2 - (m - 1) A/kappa,

so ``E[x0 | y] = mu + R A B v``, ``Cov(x0 | y) = R^2 B Cov(u | y) B^T`` and the score is
``(E[x0 | y] - y)/delta`` (Tweedie). Written per direction, without the cancellation
of ``-I/delta`` against ``Cov/delta^2`` at small delta:

    score(y)   = -c_perp/delta + h c_par,      h = (R A - r)/(r delta)
                                                 = ((R - r) - R (1 - A))/(r delta),
    J(y)       = -P_perp/delta + h B (I - v v^T) B^T + J_r B v v^T B^T,
    J_r        = -1/delta + R^2 V / delta^2.

``1 - A`` and ``V`` are computed directly (not as differences of numbers near 1). Limits:
``kappa -> 0``: ``A ~ kappa/m``, ``A/kappa -> 1/m``, ``V -> 1/m`` (the centre of the
sphere, or huge delta: ``E[x0 | y] -> mu``); ``kappa -> inf``: ``1 - A ~ (m-1)/(2 kappa)``,
``V ~ (m-1)/(2 kappa^2)`` (small delta: the denoiser projects radially onto the sphere).
Special cases: ``m = 1`` is two point masses at ``mu +- R b`` (``A = tanh kappa``,
``G = log cosh kappa - kappa``), ``m = 2`` the circle (von Mises), ``m = 3``
``A = coth kappa - 1/kappa``.

Numerics of ``G``, ``A``, ``1 - A``, ``V`` (``m >= 2``, ``nu = m/2 - 1``)
-------------------------------------------------------------------------
* ``kappa^2 <= nu + 1``: the power series of ``0F1(; nu + 1; kappa^2/4)`` and its
  derivatives (terms shrink by at least 4x; all positive).
* ``nu >= 20``: Debye's uniform expansion ``I_nu(nu z) ~ e^{nu eta} /
  (sqrt(2 pi nu) (1 + z^2)^{1/4}) sum_k u_k(p)/nu^k`` (DLMF 10.41.3, A&S 9.7.7) with
  ``u_1 .. u_12`` (DLMF 10.41.9), Stirling's series folded in analytically so that
  ``G`` carries no cancellation; ``log A`` and ``d log A / d kappa`` are formed from the
  differences between orders ``nu + 1`` and ``nu`` in closed form.
* ``nu < 20``, ``kappa >= max(25, nu^2)``: Hankel's expansion of ``e^{-kappa} I_nu(kappa)``
  (DLMF 10.40.1), with the series of ``I_nu - I_{nu+1}`` formed term by term.
* ``nu < 20`` in between: Debye at order ``nu + n >= 20``, then the stable downward
  recurrence ``A_mu = kappa / (2 (mu + 1) + kappa A_{mu+1})`` (Gauss's continued fraction),
  carried for ``1 - A``, ``V`` and ``G`` too.
``m = 1`` uses its closed forms. Against mpmath (50 digits) the relative error of every
statistic is below 5e-15 for m = 1..3000 and kappa in [0, 1e12], region boundaries
included (tests/test_sphere.py asserts 1e-13).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numpy.polynomial import polynomial as npoly
from scipy.special import expit, gammaln

from .._validate import finite_array, positive
from ..errors import DomainError, InputError, ShapeError
from .base import SubspaceEnsemble, stored

__all__ = ["UniformSphere", "SphereStats", "sphere_stats", "log_sphere_mgf", "bessel_ratio"]

_LOG_2PI = math.log(2 * math.pi)
_LOG2 = math.log(2.0)
_NU_DEBYE = 20.0  # orders from which Debye's expansion (u_1..u_12) is accurate to ~1e-16
_DEBYE_TERMS = 12
_HANKEL_TERMS = 40
_SERIES_TERMS = 30


class SphereStats(NamedTuple):
    """Statistics of ``t = u.v`` for ``u`` von Mises-Fisher on ``S^{m-1}`` at ``kappa``.

    ``log_mgf = log E_unif[exp(kappa u.v)]`` (the log-normaliser) and ``log_mgf_scaled =
    log_mgf - kappa``, each computed without cancellation; ``ratio = A = E[t] =
    I_{m/2}/I_{m/2-1}``, ``complement = 1 - A``, ``ratio_over_kappa = A/kappa`` (``1/m`` at
    0) and ``variance = Var(t) = dA/dkappa``.
    """

    log_mgf: np.ndarray
    log_mgf_scaled: np.ndarray
    ratio: np.ndarray
    complement: np.ndarray
    ratio_over_kappa: np.ndarray
    variance: np.ndarray


# -- Debye polynomials and Stirling's series -------------------------------------------------
@lru_cache(maxsize=1)
def _debye_polynomials() -> tuple[tuple[Fraction, ...], ...]:
    """Coefficients (ascending powers of p) of u_0..u_K (DLMF 10.41.9, exact rationals):
    ``u_{k+1}(p) = p^2 (1 - p^2) u_k'(p)/2 + 1/8 int_0^p (1 - 5 t^2) u_k(t) dt``."""
    polys = [[Fraction(1)]]
    for _ in range(_DEBYE_TERMS):
        u = polys[-1]
        nxt = [Fraction(0)] * (len(u) + 3)
        for i, c in enumerate(u):
            if i:  # p^2 (1 - p^2) * i c p^{i-1} / 2
                nxt[i + 1] += c * i / 2
                nxt[i + 3] -= c * i / 2
            nxt[i + 1] += c / (8 * (i + 1))  # 1/8 int_0^p t^i dt
            nxt[i + 3] -= 5 * c / (8 * (i + 3))  # -5/8 int_0^p t^{i+2} dt
        polys.append(nxt)
    return tuple(tuple(u) for u in polys)


@lru_cache(maxsize=64)
def _debye_sum_coeffs(mu: float) -> tuple[np.ndarray, np.ndarray]:
    """Ascending coefficients in p of ``U_mu(p) - 1 = sum_{k>=1} u_k(p)/mu^k`` and of its
    p-derivative."""
    polys = _debye_polynomials()
    coef = np.zeros(len(polys[-1]))
    for k in range(1, len(polys)):
        scale = mu**-k
        for i, c in enumerate(polys[k]):
            if c:
                coef[i] += float(c) * scale
    return coef, npoly.polyder(coef)


def _stirling(nu: float) -> float:
    """``log Gamma(nu + 1) - ((nu + 1/2) log nu - nu + log(2 pi)/2)`` for nu >= 10."""
    b = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)
    return sum(c * nu ** -(2 * j + 1) for j, c in enumerate(b))


# -- the regions -------------------------------------------------------------------------------
def _closed_m1(k):
    """m = 1: u = +-1, E exp(kappa u) = cosh kappa."""
    a = np.tanh(k)
    b = 2.0 * expit(-2.0 * k)
    with np.errstate(invalid="ignore", divide="ignore"):
        aok = np.where(k > 0, a / np.where(k > 0, k, 1.0), 1.0)
    small = k < 1.0
    lf = np.log1p(2.0 * np.sinh(0.5 * np.minimum(k, 1.0)) ** 2)  # log cosh k, k < 1
    g = np.where(small, lf - k, np.log1p(np.exp(-2.0 * k)) - _LOG2)
    return np.where(small, lf, g + k), g, a, b, aok, b * (2.0 - b)


def _series(nu, k):
    """``kappa^2 <= nu + 1``: 0F1(; b; w) with b = nu + 1, w = kappa^2/4 and its
    derivatives, all as sums of positive terms (ratio of terms <= 1/4)."""
    m = 2.0 * (nu + 1.0)
    b = nu + 1.0
    w = 0.25 * k * k
    t = np.ones_like(k)  # w^j / (j! (b)_j)
    r = np.ones_like(k)  # w^j / (j! (b + 1)_j)
    s0m1 = np.zeros_like(k)
    t1 = np.ones_like(k)
    t2 = np.ones_like(k)
    for j in range(1, _SERIES_TERMS + 1):
        t = t * w / (j * (b + j - 1))
        r = r * w / (j * (b + j))
        s0m1 += t
        t1 += r
        t2 += (2 * j + 1) * r
    s0 = 1.0 + s0m1
    aok = t1 / (m * s0)  # A/kappa = 0F1(; b+1; w) / (m 0F1(; b; w))
    a = k * aok
    et2 = t2 / (m * s0)  # E[t^2] = F''/F
    lf = np.log1p(s0m1)
    return lf, lf - k, a, 1.0 - a, aok, et2 - a * a


def _debye(nu, k):
    """Debye's expansion at orders nu and nu + 1 (nu >= 20, kappa > 0)."""
    n1 = nu + 1.0
    s0 = np.hypot(nu, k)
    s1 = np.hypot(n1, k)
    p0 = nu / s0
    p1 = n1 / s1
    c0, d0 = _debye_sum_coeffs(nu)
    c1, d1 = _debye_sum_coeffs(n1)
    um0 = npoly.polyval(p0, c0)  # U_nu(p0) - 1
    um1 = npoly.polyval(p1, c1)
    lu0 = np.log1p(um0)
    # log 0F1 with log Gamma(nu + 1) expanded (Stirling) and combined analytically:
    # log F = -nu log(1 + (s - nu)/(2 nu)) + (s - nu) + log(p)/2 + St(nu) + log U_nu(p),
    # and G = log F - kappa with s - nu - kappa = -kappa (nu + nu^2/(s + kappa))/(s + nu)
    s_nu = k * (k / (s0 + nu))
    rest = -nu * np.log1p(s_nu / (2 * nu)) + 0.5 * np.log(p0) + _stirling(nu) + lu0
    lf = rest + s_nu
    g = rest - (k / (s0 + nu)) * (nu + nu * nu / (s0 + k))
    # log A = log I_{nu+1} - log I_nu, each difference formed in closed form:
    #   (s1 - s0) - [(nu+1) asinh((nu+1)/k) - nu asinh(nu/k)] - log(s1/s0)/2 + dlog U
    two_nu1 = 2 * nu + 1
    ds = two_nu1 / (s0 + s1)
    dash = np.arcsinh(n1 / k) + nu * np.arcsinh(two_nu1 / (n1 * s0 + nu * s1))
    log_a = ds - dash - 0.25 * np.log1p(two_nu1 / (s0 * s0)) + np.log1p(um1) - lu0
    # d log A / d kappa: d/dk[s - mu asinh(mu/k)] = s/k, d/dk log s = k/s^2, dp/dk = -p k/s^2
    dlu0 = npoly.polyval(p0, d0) / (1.0 + um0) * (p0 * k / (s0 * s0))
    dlu1 = npoly.polyval(p1, d1) / (1.0 + um1) * (p1 * k / (s1 * s1))
    dlog_a = ds / k + 0.5 * two_nu1 * (k / s0) / s0 / (s1 * s1) - dlu1 + dlu0
    a = np.exp(log_a)
    return lf, g, a, -np.expm1(log_a), a / k, a * dlog_a


@lru_cache(maxsize=64)
def _hankel_coeffs(nu: float) -> tuple[np.ndarray, ...]:
    """Signed coefficients in w = 1/kappa of S_nu = sqrt(2 pi k) e^{-k} I_nu(k) (DLMF 10.40.1)
    and of D = S_nu - S_{nu+1}, formed term by term (no cancellation)."""
    j = np.arange(1, _HANKEL_TERMS + 1, dtype=float)
    odd2 = (2 * j - 1) ** 2
    x = (4 * nu * nu - odd2) / (8 * j)
    y = (4 * (nu + 1) ** 2 - odd2) / (8 * j)
    a = np.ones(_HANKEL_TERMS + 1)
    b = np.ones(_HANKEL_TERMS + 1)
    c = np.zeros(_HANKEL_TERMS + 1)
    for i in range(1, _HANKEL_TERMS + 1):
        a[i] = a[i - 1] * x[i - 1]
        b[i] = b[i - 1] * y[i - 1]
        # a_i - b_i = x_i (a_{i-1} - b_{i-1}) + b_{i-1} (x_i - y_i), x_i - y_i = -(2nu+1)/(2i)
        c[i] = x[i - 1] * c[i - 1] - b[i - 1] * (2 * nu + 1) / (2 * i)
    sign = (-1.0) ** np.arange(_HANKEL_TERMS + 1)
    jj = np.arange(_HANKEL_TERMS + 1)
    return sign * a, sign * c, sign * jj * a, sign * jj * c


def _hankel_min(nu: float) -> float:
    """Smallest kappa where the 40 Hankel terms decrease monotonically to below 1e-17
    (the first ratio is nu^2/(2 kappa) <= 1/2, so the alternating sum is well conditioned)."""
    return max(25.0, nu * nu)


def _hankel(nu, k):
    """Hankel's large-argument expansion (nu < 20, kappa >= max(25, nu^2))."""
    sa, sc, sja, sjc = _hankel_coeffs(nu)
    w = 1.0 / k
    s = npoly.polyval(w, sa)
    dd = npoly.polyval(w, sc)  # S_nu - S_{nu+1}
    sj = npoly.polyval(w, sja)
    dj = npoly.polyval(w, sjc)
    g = gammaln(nu + 1) + nu * np.log(2 * w) - 0.5 * (_LOG_2PI + np.log(k)) + np.log(s)
    b = dd / s
    a = 1.0 - b
    # V = -dB/dk = w (Dj S - D Sj) / S^2 with X_j = w dX/dw
    var = w * (dj * s - dd * sj) / (s * s)
    return g + k, g, a, b, a * w, var


def _recurrence(nu, k):
    """Debye at order nu + n >= 20, then n steps of the downward recurrence (nu < 20):
    ``A_mu = k/den``, ``1 - A_mu = (2(mu+1) - k (1 - A_{mu+1}))/den``,
    ``A_mu' = (2(mu+1) - k^2 A_{mu+1}')/den^2``, ``G_mu = G_{mu+1} + log1p(k A_{mu+1}/(2(mu+1)))``,
    ``den = 2(mu+1) + k A_{mu+1}``."""
    n = math.ceil(_NU_DEBYE - nu)
    lf, g, a, b, _, var = _debye(nu + n, k)
    for i in range(n - 1, -1, -1):
        mu1 = 2.0 * (nu + i + 1)
        ka = k * a
        den = mu1 + ka
        step = np.log1p(ka / mu1)
        lf, g = lf + step, g + step
        a, b, var = k / den, (mu1 - k * b) / den, (mu1 - k * (k * var)) / den / den
    return lf, g, a, b, a / k, var


def sphere_stats(m: int, kappa) -> SphereStats:
    """Von Mises-Fisher statistics on ``S^{m-1}`` at concentration ``kappa >= 0`` (array).

    See the module docstring for the formulas and the regions; relative accuracy is about
    1e-14 or better for ``m`` up to thousands and ``kappa`` from 0 to 1e12 and beyond.
    """
    if isinstance(m, bool) or not float(m).is_integer() or m < 1:
        raise DomainError(f"m must be an integer >= 1; got {m!r}")
    k = np.asarray(positive(kappa, "kappa", allow_zero=True), dtype=float)
    shape = k.shape
    k = k.reshape(-1)
    nu = float(m) / 2.0 - 1.0
    out = np.empty((6, k.shape[0]))
    with np.errstate(over="ignore", under="ignore"):
        if m == 1:
            out[:] = _closed_m1(k)
            return SphereStats(*(o.reshape(shape) for o in out))
        series = k <= math.sqrt(nu + 1.0)
        regions = [(series, _series)]
        if nu >= _NU_DEBYE:
            regions.append((~series, _debye))
        else:
            hank = ~series & (k >= _hankel_min(nu))
            regions += [(hank, _hankel), (~series & ~hank, _recurrence)]
        for mask, fn in regions:
            if mask.any():
                out[:, mask] = fn(nu, k[mask])
    return SphereStats(*(o.reshape(shape) for o in out))


def log_sphere_mgf(m: int, kappa, *, scaled: bool = False) -> np.ndarray:
    """``log E_u[exp(kappa u_1)]`` for ``u`` uniform on ``S^{m-1}`` (``kappa >= 0``):
    ``log[Gamma(m/2) (2/kappa)^{m/2-1} I_{m/2-1}(kappa)] = log 0F1(; m/2; kappa^2/4)``.

    ``scaled=True`` returns it minus ``kappa`` (finite for any kappa).
    """
    st = sphere_stats(m, kappa)
    return st.log_mgf_scaled if scaled else st.log_mgf


def bessel_ratio(m: int, kappa, *, complement: bool = False) -> np.ndarray:
    """``A_m(kappa) = I_{m/2}(kappa) / I_{m/2-1}(kappa)``, or ``1 - A_m`` with ``complement``."""
    st = sphere_stats(m, kappa)
    return st.complement if complement else st.ratio


# -- the ensemble ------------------------------------------------------------------------------
class UniformSphere(SubspaceEnsemble):
    """``x0 = mean + radius * basis @ u``, ``u`` uniform on the unit sphere of ``R^m``.

    ``basis`` is ``(d, m)`` with orthonormal columns, ``1 <= m <= d``; ``m = 1`` gives the
    two point masses ``mean +- radius * basis[:, 0]``. Formulas: module docstring.
    """

    def __init__(self, mean, basis, radius: float):
        mean = finite_array(mean, "mean")
        if mean.ndim != 1 or mean.shape[0] < 1:
            raise ShapeError(f"mean must have shape (d,) with d >= 1; got shape {mean.shape}")
        d = mean.shape[0]
        basis = finite_array(basis, "basis")
        if basis.ndim != 2 or basis.shape[0] != d or not 1 <= basis.shape[1] <= d:
            raise ShapeError(
                f"basis must have shape ({d}, m) with 1 <= m <= {d}; got {basis.shape}"
            )
        m = basis.shape[1]
        if np.max(np.abs(basis.T @ basis - np.eye(m))) > 1e-8:
            raise InputError("basis must have orthonormal columns (basis.T @ basis = I)")
        self._mu = mean.copy()
        self._B = np.ascontiguousarray(basis, dtype=float)
        self._R = float(positive(radius, "radius"))
        self._P = self._B @ self._B.T
        self._Pperp = np.eye(d) - self._P

    # -- properties --------------------------------------------------------------------------
    # dim, intrinsic_dim = m (the sphere is S^{m-1}), basis, mean: SubspaceEnsemble
    radius = stored("_R", "The radius R of the sphere.")

    @property
    def covariance(self) -> np.ndarray:
        """``R^2/m B B^T`` (``E[u u^T] = I/m`` for u uniform on ``S^{m-1}``)."""
        return self._R**2 / self.intrinsic_dim * self._P

    def __repr__(self) -> str:
        return f"UniformSphere(d={self.dim}, m={self.intrinsic_dim}, radius={self._R:g})"

    # -- the exact formulas ------------------------------------------------------------------
    def _parts(self, y, delta):
        dl = delta[:, 0]
        c = y - self._mu
        cpar = c @ self._B
        perp = c - cpar @ self._B.T
        r = np.linalg.norm(cpar, axis=1)
        with np.errstate(over="ignore"):  # cap: past 1e300 every statistic is asymptotic
            kappa = np.minimum(self._R * r / dl, 1e300)
        st = sphere_stats(self.intrinsic_dim, kappa)
        return dl, cpar, perp, r, kappa, st

    def _gain(self, dl, r, kappa, st):
        """``g = R A / r`` (the denoiser is ``mean + g B c_par``) and the tangent
        eigenvalue of the score Jacobian ``h = (g - 1)/delta``, both finite at r = 0."""
        R = self._R
        big = kappa > 1.0
        rs = np.where(big, r, 1.0)
        g = np.where(big, R * st.ratio / rs, R * (R * st.ratio_over_kappa / dl))
        h = np.where(big, ((R - r) - R * st.complement) / (rs * dl), (g - 1.0) / dl)
        return g, h

    def _denoise(self, y, delta):
        dl, cpar, _, r, kappa, st = self._parts(y, delta)
        g, _ = self._gain(dl, r, kappa, st)
        return self._mu + (g[:, None] * cpar) @ self._B.T

    def _score(self, y, delta):
        dl, cpar, perp, r, kappa, st = self._parts(y, delta)
        _, h = self._gain(dl, r, kappa, st)
        return (h[:, None] * cpar) @ self._B.T - perp / dl[:, None]

    def _log_density(self, y, delta):
        dl, _, perp, r, _, st = self._parts(y, delta)
        quad = (np.sum(perp * perp, axis=1) + (r - self._R) ** 2) / (2 * dl)
        return st.log_mgf_scaled - quad - 0.5 * self.dim * (_LOG_2PI + np.log(dl))

    def _direction(self, cpar, r):
        """Unit vector ``B v`` in R^d (zero where r = 0)."""
        pos = r > 0
        return (cpar / np.where(pos, r, 1.0)[:, None]) @ self._B.T, pos

    def _posterior_covariance(self, y, delta):
        _, cpar, _, r, _, st = self._parts(y, delta)
        w, pos = self._direction(cpar, r)
        radial = np.where(pos, st.variance - st.ratio_over_kappa, 0.0)
        cov = st.ratio_over_kappa[:, None, None] * self._P[None]
        cov = cov + radial[:, None, None] * (w[:, :, None] * w[:, None, :])
        return self._R**2 * cov

    def _score_jacobian(self, y, delta):
        dl, cpar, _, r, kappa, st = self._parts(y, delta)
        _, h = self._gain(dl, r, kappa, st)
        w, pos = self._direction(cpar, r)
        jr = (self._R / dl) * (self._R * st.variance / dl) - 1.0 / dl
        radial = np.where(pos, jr - h, 0.0)
        jac = h[:, None, None] * self._P[None] - self._Pperp[None] / dl[:, None, None]
        return jac + radial[:, None, None] * (w[:, :, None] * w[:, None, :])

    def _sample(self, n, rng):
        z = rng.standard_normal((n, self.intrinsic_dim))
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        u = z / np.where(norm > 0, norm, 1.0)
        return self._mu + self._R * u @ self._B.T
