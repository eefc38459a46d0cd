"""Closed-form fast path of a Gaussian mixture whose components are isotropic (point masses
included) or share one covariance: every quantity through a few matrix products over all
components at once, instead of one pass per component.

With ``C_k = s_k^2 I`` (isotropic) or ``C_k = C = U diag(lam) U^T`` for all k (shared,
``U`` ``(d, r)`` orthonormal, zero variance on the complement ``P_perp = I - U U^T``), and
``v = s_k^2 + delta`` (resp. ``v = lam + delta``), the log joint of component k is
(docs/theory.md section 1, Gaussian noised marginals)::

    l_k(y) = log w_k - 1/2 [d log 2 pi + log det(C_k + delta I) + Q_k(y)]
    Q_k(y) = |y - mu_k|^2 / v_k                                   (isotropic)
           = sum_j (z_j - nu_kj)^2 / v_j + |y_perp - mu_k,perp|^2 / delta   (shared)

with ``z = U^T y``, ``nu_k = U^T mu_k``; with a complement the shared form is evaluated as
``Q_k = |y - mu_k|^2 / delta - sum_j a_j (z_j - nu_kj)^2``, ``a = lam / (delta v)``
(``= 1/delta - 1/v``), so that ``y_perp`` is never formed. Expanding the squares, ``Q``
is one matrix product ``y . mu_k`` (resp. ``(z / v) . nu_k``) plus norms; coordinates are
centred at the mean of the component means first. Then, with ``p = softmax_k(l_k)``::

    E[x0 | y] = sum_k p_k [mu_k + c_k (y - mu_k)],   c_k = s_k^2 / v_k          (isotropic)
              = sum_k p_k mu_k + U diag(lam / v) (z - sum_k p_k nu_k)           (shared)
    score(y)  = -sum_k p_k (y - mu_k) / v_k                                    (isotropic)
              = -U ((z - p nu) / v) - (y_perp - p mu_perp) / delta             (shared)
              = -(y - p mu) / delta + U ((z - p nu) a)         (the same, as computed)
    Cov(x0|y) = sum_k p_k S_k + sum_k p_k (m_k - m)(m_k - m)^T,  J = sum_k p_k J_k + B / delta^2

(law of total covariance; ``S_k = delta c_k I`` resp. ``U diag(delta lam / v) U^T``,
``J_k = -I / v_k`` resp. ``-U diag(1/v) U^T - P_perp / delta``).

Accuracy. The expansion ``|y|^2 + |mu|^2 - 2 y.mu`` cancels when ``y`` is close to
``mu_k`` relative to their norms. As in the empirical kernel (:mod:`physdiff._kernels`),
each row gets the bound ``e = (c_G |y| max|mu| + c_N max|mu|^2 + 4 u |y|^2) / (2 v_min)``
on the error of its quadratic forms (``c_G = 2 k u + 4 u``, ``c_N = (k + 4) u``,
``k = min(d, 8 sqrt(d))``, ``u = 2^-53``; twice that for a shared covariance with a
complement, whose log joint is two expanded forms of at most that size); rows with
``e > 1e-9`` (small delta, point masses, data far from the centre) are handed back to the
caller, which computes them with the per-component formulas from direct differences.
(The shared score and Jacobian with a complement take their tangent part ``-1/v`` as
``a - 1/delta``: an error of ``u / delta``, ``u`` of their scale ``1/delta``.) Elsewhere
each log joint is right to ``1e-9`` absolute, so the posteriors to ``2e-9`` relative, the
log density to ``1e-9`` absolute and the denoiser, score and covariances to a few ``1e-9`` of their
scale; where the log joints or the log density are the result, rows are handed back
unless ``e <= 1e-11 max(1, |value|)`` (relative accuracy of a direct
evaluation). (``1e-11`` absolute, the empirical kernel's float64 tolerance, would hand
back every row at ``d = 3072``, ``delta = 1``: there ``e`` is about ``2e-10`` for
unit-scale means.)
"""

from __future__ import annotations

import math

import numpy as np

_LOG_2PI = float(np.log(2 * np.pi))
_U64 = 2.0**-53
_TOL = 1e-9  # largest admitted error bound of a row's log joints (absolute)
_TOL_LOG = 1e-11  # the same, relative, where the log joints or log density are the result
_CHUNK = 1 << 22  # elements of a (rows, K, d) block in the covariance products


def _softmax_rows(a: np.ndarray) -> np.ndarray:
    """Softmax over the rows of ``a`` ``(K, n)`` (components first), in place."""
    a -= np.max(a, axis=0)
    np.exp(a, out=a)
    a /= np.sum(a, axis=0)
    return a


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    top = np.max(a, axis=0)
    return np.log(np.sum(np.exp(a - top), axis=0)) + top


def _distinct(delta: np.ndarray) -> np.ndarray:
    """``delta[:, 0]`` ``(n,)``, or its one value ``(1,)`` when every row has the same (the
    usual case: a scalar delta), so that the arrays of ``v = s^2 + delta`` (resp.
    ``lam + delta``) are ``(K, 1)`` (resp. ``(1, r)``) and broadcast over the rows."""
    dl = delta[:, 0]
    return dl[:1] if dl.shape[0] and dl.min() == dl.max() else dl


def _pdot(p: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``sum_k p[k] c[k]`` for each row ``(n,)``; ``c`` is ``(K, n)`` or ``(K, 1)``."""
    if c.shape[1] == 1:
        return c[:, 0] @ p
    return np.einsum("kn,kn->n", p, c)


class _Fast:
    """The shared part: centred means, their norms, the error-bound constants."""

    spread = 1.0  # how many expanded quadratic forms of that size make up a log joint

    def __init__(self, logw: np.ndarray, means: np.ndarray):
        self.logw = np.asarray(logw, dtype=float)
        self.center = means.mean(axis=0)
        self.mu = np.ascontiguousarray(means - self.center)  # (K, d)
        self.musq = np.einsum("kd,kd->k", self.mu, self.mu)
        self.mu_max = math.sqrt(float(self.musq.max()))
        d = means.shape[1]
        kd = min(float(d), 8.0 * math.sqrt(d))
        self.cg = (2.0 * kd + 4.0) * _U64 * 1.01
        self.cn = (kd + 4.0) * _U64 * 1.01

    def bound(self, y: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """The error bound ``e`` ``(n,)`` of each row's log joints (module docstring)."""
        yc = y - self.center
        return self._bound(np.einsum("nd,nd->n", yc, yc), delta)

    def _bound(self, ysq: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """:meth:`bound` from the squared norms ``ysq`` ``(n,)`` of the centred rows."""
        e = self.cg * np.sqrt(ysq) * self.mu_max + self.cn * self.mu_max**2 + 4 * _U64 * ysq
        return e * (self.spread / 2.0) / self._vmin(delta[:, 0])

    def prepare(self, y: np.ndarray, delta: np.ndarray):
        """Log joints ``(K, n)``, the structure's auxiliary arrays and the centred ``y``."""
        yc = y - self.center
        return self._prepare(yc, np.einsum("nd,nd->n", yc, yc), delta)

    def evaluate(self, what: str, y: np.ndarray, delta: np.ndarray):
        """``(out, bad)``: ``what`` (log_joint ``(n, K)``, posterior ``(n, K)``, log_density,
        denoise, score, posterior_covariance, score_jacobian) for every row by the fast
        formulas, and the rows ``bad`` ``(n,)`` where the bound does not hold, which the
        caller must compute otherwise. The log joints and the log density are asked to be
        right to ``1e-11`` relative (of ``max(1, |value|)``), the rest to ``_TOL``."""
        yc = y - self.center  # centred once, for the bound and the formulas
        ysq = np.einsum("nd,nd->n", yc, yc)
        e = self._bound(ysq, delta)
        with np.errstate(over="ignore", invalid="ignore"):  # rows handed back may overflow
            if what in ("log_joint", "log_density"):
                lj = self._prepare(yc, ysq, delta)[0]
                if what == "log_joint":
                    out = np.ascontiguousarray(lj.T)
                    scale = np.min(np.abs(out), axis=1)
                else:
                    out = scale = _logsumexp_rows(lj)
                return out, ~(e <= _TOL_LOG * np.maximum(1.0, np.abs(scale)))
            bad = ~(e <= _TOL)
            if bad.all():
                return None, bad
            some = bad.any()
            if some:  # only the rows the bound admits (no copies when it admits all)
                good = ~bad
                yc, ysq, delta = yc[good], ysq[good], delta[good]
            lj, aux, yc = self._prepare(yc, ysq, delta)  # yc: scratch of the formulas
            p = _softmax_rows(lj)
            if what == "posterior":
                part = p.T
            else:
                part = getattr(self, what)(p, aux, yc, delta)
        if not some:
            return np.ascontiguousarray(part), bad
        out = np.empty((y.shape[0], *part.shape[1:]))
        out[good] = part
        return out, bad

    # -- quantities common to both structures, from the posterior and component means ----
    @staticmethod
    def _between(p, dm_fn, n, K, d, delta=None):
        """``sum_k p_k (m_k - m)(m_k - m)^T`` ``(n, d, d)``, divided by ``delta^2`` when
        ``delta`` ``(n, 1)`` is given (the factors scaled, no pass over the result);
        ``dm_fn(s)`` gives ``m_k - m`` ``(c, K, d)`` for the rows ``s`` (a slice)."""
        out = np.empty((n, d, d))
        step = max(1, _CHUNK // max(1, K * d))
        for s0 in range(0, n, step):
            s = slice(s0, min(n, s0 + step))
            f = np.sqrt(p[:, s].T)  # (c, K)
            if delta is not None:
                f = f / delta[s]
            dm = dm_fn(s) * f[:, :, None]  # (c, K, d)
            np.matmul(np.swapaxes(dm, 1, 2), dm, out=out[s])
        return out


class IsotropicFast(_Fast):
    """Components ``N(mu_k, s_k^2 I)``, ``s_k^2 >= 0``."""

    def __init__(self, logw, means, s2):
        super().__init__(logw, means)
        self.s2 = np.asarray(s2, dtype=float)

    def _prepare(self, yc, ysq, delta):
        """Log joints ``(K, n)``, ``v`` ``(K, n)`` (``(K, 1)`` for one delta) and the
        centred ``y``."""
        v = self.s2[:, None] + _distinct(delta)[None, :]  # (K, n) or (K, 1)
        q = self.mu @ yc.T  # (K, n)
        q *= -2.0
        q += ysq[None, :]
        q += self.musq[:, None]
        np.maximum(q, 0.0, out=q)
        lj = q / v
        lj += yc.shape[1] * np.log(v)
        lj *= -0.5
        lj += (self.logw - 0.5 * yc.shape[1] * _LOG_2PI)[:, None]
        return lj, v, yc

    def _vmin(self, dl):
        return self.s2.min() + dl

    def denoise(self, p, v, yc, delta):
        c = self.s2[:, None] / v  # (K, n) or (K, 1)
        a = _pdot(p, c)
        out = (p * (1.0 - c)).T @ self.mu
        out += np.multiply(yc, a[:, None], out=yc)  # yc is evaluate's scratch: no temporary
        out += self.center
        return out

    def score(self, p, v, yc, delta):
        pv = p / v
        out = pv.T @ self.mu
        out -= np.multiply(yc, pv.sum(axis=0)[:, None], out=yc)  # scratch, as in denoise
        return out

    def _dm(self, p, v, yc):
        c = np.broadcast_to(self.s2[:, None] / v, p.shape)  # (K, n)

        def dm_fn(s):
            # m_k = c_k y + (1 - c_k) mu_k (centred), minus its p-mean
            mk = c[:, s].T[:, :, None] * yc[s][:, None, :] + (1.0 - c[:, s].T)[:, :, None] * self.mu
            return mk - np.einsum("kc,ckd->cd", p[:, s], mk)[:, None, :]

        return dm_fn

    def posterior_covariance(self, p, v, yc, delta):
        n, d = yc.shape
        out = self._between(p, self._dm(p, v, yc), n, self.mu.shape[0], d)
        within = delta[:, 0] * _pdot(p, self.s2[:, None] / v)
        out[:, np.arange(d), np.arange(d)] += within[:, None]
        return out

    def score_jacobian(self, p, v, yc, delta):
        n, d = yc.shape
        out = self._between(p, self._dm(p, v, yc), n, self.mu.shape[0], d, delta)
        out[:, np.arange(d), np.arange(d)] -= _pdot(p, 1.0 / v)[:, None]
        return out


class SharedFast(_Fast):
    """Components ``N(mu_k, U diag(lam) U^T)`` sharing one covariance."""

    def __init__(self, logw, means, U, lam):
        super().__init__(logw, means)
        self.U = np.ascontiguousarray(U, dtype=float)
        self.lam = np.asarray(lam, dtype=float)
        self.r = self.lam.shape[0]
        self.nu = self.mu @ self.U  # (K, r)
        self.perp = self.r < means.shape[1]
        self.spread = 2.0 if self.perp else 1.0

    def _prepare(self, yc, ysq, delta):
        """Log joints ``(K, n)``, ``(v, z, a)`` and the centred ``y``: ``v = lam + delta``,
        ``z = U^T y`` and ``a = 1/delta - 1/v = lam / (delta v)`` ``(n, r)`` (``v`` and ``a``
        ``(1, r)`` for one delta).

        ``Q_k = |y - mu_k|^2 / delta - sum_j a_j (z_j - nu_kj)^2`` (the complement's
        ``|y_perp - mu_perp|^2 / delta`` without forming ``y_perp``), each square expanded:
        two forms within the bound, hence ``spread = 2`` with a complement."""
        n, d = yc.shape
        dl, du = delta[:, 0], _distinct(delta)
        z = yc @ self.U  # (n, r)
        v = self.lam[None, :] + du[:, None]  # (n, r) or (1, r)
        if self.perp:
            a = self.lam[None, :] / (du[:, None] * v)
            za = z * a
            q = self.mu @ yc.T  # (K, n)
            q *= -2.0
            q += ysq[None, :]
            q += self.musq[:, None]
            q /= dl[None, :]
            q += 2.0 * (self.nu @ za.T)
            q -= np.einsum("nr,nr->n", z, za)[None, :]
            q -= (self.nu * self.nu) @ a.T
        else:
            a = None
            zv = z / v
            q = (self.nu @ zv.T) * -2.0  # (K, n)
            q += np.einsum("nr,nr->n", z, zv)[None, :]
            q += (self.nu * self.nu) @ (1.0 / v).T
        np.maximum(q, 0.0, out=q)
        logdet = np.sum(np.log(v), axis=1) + (d - self.r) * np.log(dl)
        lj = -0.5 * (q + (logdet + d * _LOG_2PI)[None, :])
        lj += self.logw[:, None]
        return lj, (v, z, a), yc

    def _vmin(self, dl):
        vmin = self.lam.min() + dl
        return np.minimum(vmin, dl) if self.perp else vmin

    def denoise(self, p, aux, yc, delta):
        v, z, _ = aux
        out = p.T @ self.mu
        out += ((z - p.T @ self.nu) * (self.lam / v)) @ self.U.T
        out += self.center
        return out

    def score(self, p, aux, yc, delta):
        # -U (z - p nu) / v - (y_perp - p mu_perp) / delta, i.e. with a complement
        # -(y - p mu) / delta + U ((z - p nu) a): no (n, d) complement formed
        v, z, a = aux
        dz = z - p.T @ self.nu
        if not self.perp:
            return -((dz / v) @ self.U.T)
        out = p.T @ self.mu
        out -= yc
        out /= delta
        out += (dz * a) @ self.U.T
        return out

    def _dm(self, p, aux):
        v, z, _ = aux
        c = np.broadcast_to(self.lam / v, z.shape)  # (n, r)

        def dm_fn(s):
            pm = p[:, s].T @ self.mu  # (c, d)
            pn = p[:, s].T @ self.nu  # (c, r)
            dnu = (self.nu[None, :, :] - pn[:, None, :]) * c[s][:, None, :]  # (c, K, r)
            return (self.mu[None, :, :] - pm[:, None, :]) - dnu @ self.U.T

        return dm_fn

    @staticmethod
    def _add_per_delta(out, delta, block):
        """``out[i] += block(delta_i)`` ``(d, d)`` in place, ``block`` computed once per
        distinct value of ``delta`` (one matrix product each, usually one in all)."""
        values, inverse = np.unique(delta[:, 0], return_inverse=True)
        if values.shape[0] == 1:
            out += block(float(values[0]))[None]
            return out
        for j, value in enumerate(values):
            rows = np.flatnonzero(inverse == j)
            out[rows] += block(float(value))[None]
        return out

    def posterior_covariance(self, p, aux, yc, delta):
        n, d = yc.shape
        out = self._between(p, self._dm(p, aux), n, self.mu.shape[0], d)
        return self._add_per_delta(out, delta, self._within_covariance)

    def _within_covariance(self, dl: float) -> np.ndarray:
        """``U diag(delta lam / v) U^T`` ``(d, d)``."""
        return (self.U * (dl * self.lam / (self.lam + dl))) @ self.U.T

    def _within_jacobian(self, dl: float) -> np.ndarray:
        """``-U diag(1/v) U^T - P_perp / delta`` ``(d, d)``, written as
        ``U diag(lam / (delta v)) U^T - I / delta`` with a complement (``P_perp`` not formed)."""
        v = self.lam + dl
        if not self.perp:
            return (self.U * (-1.0 / v)) @ self.U.T
        out = (self.U * (self.lam / (dl * v))) @ self.U.T
        out.flat[:: out.shape[0] + 1] -= 1.0 / dl
        return out

    def score_jacobian(self, p, aux, yc, delta):
        n, d = yc.shape
        out = self._between(p, self._dm(p, aux), n, self.mu.shape[0], d, delta)
        return self._add_per_delta(out, delta, self._within_jacobian)


def structure(logw: np.ndarray, comps) -> _Fast | None:
    """The fast path for these components, or None when they are neither all isotropic
    (point masses included) nor all of one covariance."""
    d = comps[0].dim
    means = np.stack([c._mean for c in comps])
    s2 = []
    for c in comps:
        if c.rank == 0:
            s2.append(0.0)
        elif c.rank == d and np.ptp(c._lam) <= 1e-13 * c._lam.max():
            s2.append(float(c._lam.mean()))
        else:
            break
    else:
        return IsotropicFast(logw, means, s2)
    c0 = comps[0]
    for c in comps[1:]:
        same = c._U is c0._U or (c._U.shape == c0._U.shape and np.array_equal(c._U, c0._U))
        if not (same and np.array_equal(c._lam, c0._lam)):
            return None
    return SharedFast(logw, means, c0._U, c0._lam)
