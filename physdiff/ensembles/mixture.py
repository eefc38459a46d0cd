"""Gaussian mixtures, point masses included (the two-delta model is a mixture).

Responsibilities ``p(k | y) = softmax_k(log w_k + log N(y; mu_k, C_k + delta I))``
(docs/theory.md section 1), computed with log-sum-exp so that far-away points keep finite,
exact posteriors. With per-component posterior means ``m_k`` and covariances ``S_k``:

    E[x0 | y]   = sum_k p_k m_k
    Cov(x0 | y) = sum_k p_k (S_k + m_k m_k^T) - m m^T
    J(y)        = sum_k p_k J_k + (sum_k p_k m_k m_k^T - m m^T) / delta^2

the last form (law of total covariance) keeps the component Jacobians ``J_k`` exact at
small delta instead of cancelling ``-I/delta`` against ``Cov/delta^2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._validate import finite_array, integer, positive
from ..errors import InputError, ShapeError
from ._mixture_fast import structure
from .base import Ensemble
from .gaussian import Gaussian

__all__ = ["GaussianMixture"]


# Components run along the FIRST axis of every internal array, ``(K, n)``: numpy reduces a
# short last axis of an ``(n, K)`` array about 100x slower than the same reduction over the
# rows of ``(K, n)`` (``a.max(axis=1)`` on ``(10^4, 4)``: ~700 us; on ``(4, 10^4)``: ~4 us),
# and those reductions were most of the cost of a 1-D mixture score.


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """``log sum_k exp a[k]`` over the rows of ``a`` ``(K, n)`` (columns of -inf give -inf)."""
    top = np.max(a, axis=0)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(a - top), axis=0)) + top


def _softmax_rows(a: np.ndarray) -> np.ndarray:
    """Softmax over the rows of ``a`` ``(K, n)``, computed IN PLACE (returns ``a``)."""
    a -= np.max(a, axis=0)
    np.exp(a, out=a)
    a /= np.sum(a, axis=0)
    return a


def _inverse_times(c: Gaussian, v: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``S^-1 v`` row by row for the component ``c`` at noise ``delta`` ``(n, 1)``:
    ``S = U diag(lam + delta) U^T + delta (I - U U^T)``."""
    r = v @ c._U
    return -c._score_from(r, v - r @ c._U.T, delta)  # score of N(0, S) at v is -S^-1 v


def _logsumexp(a: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp of ``a`` ``(n, K)`` (rows of -inf give -inf)."""
    return _logsumexp_rows(np.asarray(a).T)


def _softmax(a: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``a`` ``(n, K)`` (a new array)."""
    return np.ascontiguousarray(_softmax_rows(np.array(a, dtype=float).T).T)


class GaussianMixture(Ensemble):
    """Mixture ``sum_k w_k N(mu_k, C_k)``.

    ``covs`` is ``None`` (every component a point mass), an array ``(K, d, d)``, or a
    sequence of ``(d, d)`` arrays; ``weights`` are non-negative and sum to 1.
    """

    def __init__(self, weights, means, covs=None):
        means = finite_array(means, "means")
        if means.ndim != 2 or means.shape[0] < 1:
            raise ShapeError(f"means must have shape (K, d) with K >= 1; got {means.shape}")
        K, d = means.shape
        if covs is None:
            comps = [Gaussian.point_mass(m) for m in means]
        else:
            covs = finite_array(covs, "covs")
            if covs.shape != (K, d, d):
                raise ShapeError(f"covs must have shape ({K}, {d}, {d}); got {covs.shape}")
            comps = [Gaussian(m, c) for m, c in zip(means, covs, strict=True)]
        self._init(weights, comps)

    @classmethod
    def from_components(cls, weights, components: Sequence[Gaussian]) -> GaussianMixture:
        """Mixture of already built :class:`Gaussian` components."""
        comps = list(components)
        if not comps or not all(isinstance(c, Gaussian) for c in comps):
            raise InputError("components must be a non-empty sequence of Gaussian")
        if len({c.dim for c in comps}) != 1:
            raise ShapeError("components must all have the same dimension")
        obj = cls.__new__(cls)
        obj._init(weights, comps)
        return obj

    @classmethod
    def isotropic(cls, weights, means, variances) -> GaussianMixture:
        """Components ``N(mu_k, s_k^2 I)`` (``variances`` one per component; 0 = point mass)."""
        means = finite_array(means, "means")
        if means.ndim != 2:
            raise ShapeError(f"means must have shape (K, d); got {means.shape}")
        v = positive(np.broadcast_to(variances, means.shape[:1]), "variances", allow_zero=True)
        d = means.shape[1]
        base = None  # one identity basis shared by every Gaussian component (d^2 floats)
        comps = []
        for m, s in zip(means, v, strict=True):
            if s == 0:
                comps.append(Gaussian.point_mass(m))
            elif base is None:
                base = Gaussian.isotropic(m, s)
                comps.append(base)
            else:
                comps.append(base._with_mean(m, np.full(d, float(s))))
        return cls.from_components(weights, comps)

    @classmethod
    def shared_covariance(cls, weights, means, cov) -> GaussianMixture:
        """Components ``N(mu_k, cov)`` with one covariance ``cov`` ``(d, d)`` for all (a
        :class:`Gaussian` may stand for it). Its eigen-decomposition is computed once and
        the mixture runs on the closed-form fast path (:mod:`._mixture_fast`)."""
        means = finite_array(means, "means")
        if means.ndim != 2 or means.shape[0] < 1:
            raise ShapeError(f"means must have shape (K, d) with K >= 1; got {means.shape}")
        if isinstance(cov, Gaussian):
            if cov.dim != means.shape[1]:
                raise ShapeError(f"cov must have dimension {means.shape[1]}; got {cov.dim}")
            base = cov._with_mean(means[0])
        else:
            base = Gaussian(means[0], cov)
        return cls.from_components(weights, [base] + [base._with_mean(m) for m in means[1:]])

    @classmethod
    def two_deltas(cls, m: float = 1.0, d: int = 1) -> GaussianMixture:
        """Equal point masses at ``+-m e_1`` in R^d; in 1-D
        ``score(y) = (m tanh(m y/delta) - y)/delta`` (docs/theory.md section 2)."""
        m = float(finite_array(m, "m"))
        e = np.zeros((2, integer(d, "d", 1, 10**8)))
        e[0, 0], e[1, 0] = m, -m
        return cls([0.5, 0.5], e)

    def _init(self, weights, comps):
        w = finite_array(weights, "weights").reshape(-1)
        if w.shape[0] != len(comps):
            raise ShapeError(
                f"weights must have one entry per component ({len(comps)}); got {w.shape[0]}"
            )
        if np.any(w < 0):
            raise InputError(f"weights must be >= 0; got {w}")
        if abs(w.sum() - 1.0) > 1e-9 * max(1, len(comps)):
            raise InputError(f"weights must sum to 1; they sum to {w.sum()!r}")
        self._w = w / w.sum()
        with np.errstate(divide="ignore"):
            self._logw = np.log(self._w)
        self._comps = tuple(comps)
        self._fast = structure(self._logw, self._comps)

    # -- properties ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._comps[0].dim

    @property
    def weights(self) -> np.ndarray:
        return self._w.copy()

    @property
    def components(self) -> tuple[Gaussian, ...]:
        return self._comps

    @property
    def n_components(self) -> int:
        return len(self._comps)

    @property
    def means(self) -> np.ndarray:
        return np.stack([c.mean for c in self._comps])

    @property
    def mean(self) -> np.ndarray:
        return self._w @ self.means

    @property
    def covariance(self) -> np.ndarray:
        mu = self.means
        c = mu - self._w @ mu
        within = sum(w * g.covariance for w, g in zip(self._w, self._comps, strict=True))
        return within + (c.T * self._w) @ c

    def component(self, k: int) -> Gaussian:
        """Component ``k`` (the class-conditional model of class k), ``0 <= k < K``."""
        return self._comps[integer(k, "k", 0, self.n_components - 1)]

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, d={self.dim})"

    def _component_denoisers(self, y: np.ndarray, delta: float) -> np.ndarray:
        """``E[x0 | y, k]`` of every component at one noise level, ``(K, n, d)``
        (:class:`physdiff.classes.MixtureClasses` hands them to the sampler's step records).

        ``D_k(y) = mu_k + U_k diag(g_k) U_k^T (y - mu_k)``, ``g_k = lam_k / (lam_k + delta)``
        (docs/theory.md section 1), written as ``b_k + U_k diag(g_k) U_k^T y`` with the
        constant ``b_k = mu_k - U_k diag(g_k) U_k^T mu_k``: the coordinates ``y U`` of a
        basis that several components share (:meth:`isotropic`, :meth:`shared_covariance`)
        are computed once, and so is the product back when the ``g_k`` are equal or
        constant along the basis. Rounding: a few ``u (|y| + |mu_k|)``, as the direct form
        where the result is of the size of the data."""
        n, d = y.shape
        out = np.empty((len(self._comps), n, d))
        coords: dict = {}  # id(U) -> y U
        back: dict = {}  # (id(U), g) -> (y U diag(g)) U^T, or (y U) U^T for a constant g
        for k, c in enumerate(self._comps):
            U, lam = c._U, c._lam
            g = lam / (lam + delta)
            b = c._mean - ((c._mean @ U) * g) @ U.T
            if U.shape[1] == 0:  # a point mass: D_k = mu_k
                out[k] = b
                continue
            if id(U) not in coords:
                coords[id(U)] = y @ U
            flat = bool(np.all(g == g[0]))
            key = (id(U), None if flat else g.tobytes())
            if key not in back:
                r = coords[id(U)]
                back[key] = r @ U.T if flat else (r * g) @ U.T
            if flat:
                np.multiply(back[key], g[0], out=out[k])
            else:
                out[k] = back[key]
            out[k] += b
        return out

    # -- the exact formulas --------------------------------------------------------------------
    def _exact(self, what, y, delta):
        """``what`` by the closed-form fast path (:mod:`._mixture_fast`) where the components
        allow it and its error bound holds, by the per-component formulas (the methods
        ``_general_*``) for the other rows."""
        general = getattr(self, "_general_" + what)
        fast = self._fast
        if fast is None or y.shape[0] == 0:
            return general(y, delta)
        out, bad = fast.evaluate(what, y, delta)
        if out is None:
            return general(y, delta)
        if bad.any():
            out[bad] = general(y[bad], delta[bad])
        return out

    # Internally the components run along the first axis: log joints and posteriors are
    # (K, n), component denoisers and scores are K arrays (n, d) (see the note at the top).
    def _log_joint_rows(self, y, delta, want=None):
        """``log w_k + log N(y; mu_k, C_k + delta I)`` as ``(K, n)``; with ``want`` =
        ``"denoise"`` or ``"score"`` also the K component values ``(n, d)``, each component's
        coordinates computed once for both."""
        lj = np.empty((len(self._comps), y.shape[0]))
        vals = []
        for k, (lw, c) in enumerate(zip(self._logw, self._comps, strict=True)):
            r, perp = c._split(y)
            with np.errstate(over="ignore"):  # -inf far out: _posterior_rows takes over
                np.add(lw, c._log_density_from(r, perp, delta), out=lj[k])
            if want == "denoise":
                vals.append(c._denoise_from(r, delta))
            elif want == "score":
                vals.append(c._score_from(r, perp, delta))
        return lj, vals

    def _general_log_joint(self, y, delta):
        return self._log_joint_rows(y, delta)[0].T

    def _log_joint(self, y, delta):
        """``log w_k + log N(y; mu_k, C_k + delta I)`` as ``(n, K)`` (for callers that index
        by point)."""
        return self._exact("log_joint", y, delta)

    def _posterior_rows(self, y, delta, want=None):
        lj, vals = self._log_joint_rows(y, delta, want)
        bad = ~np.isfinite(np.max(lj, axis=0))
        if not np.any(bad):
            return _softmax_rows(lj), vals
        # every log-joint overflowed there: |y - mu_k|^2 / s_k beyond float64
        p = np.empty_like(lj)
        p[:, ~bad] = _softmax_rows(lj[:, ~bad])
        p[:, bad] = self._far_posterior(y[bad], delta[bad])
        return p, vals

    def _far_posterior(self, y, delta):
        """``p(k | y)`` ``(K, n)`` where every ``log N(y; mu_k, S_k)`` overflows (``|y|`` or
        ``|mu_k|`` beyond about ``1e154`` times the noise scale), from log-odds against a
        reference component ``j`` (the nearest in scaled Mahalanobis distance) instead of
        the log-joints themselves. With ``q_k = (y - mu_k)^T S_k^-1 (y - mu_k)``,
        ``log p_k / p_j = log w_k - log w_j - (log det S_k - log det S_j)/2 - (q_k - q_j)/2``:

        - equal covariances (point masses, equal isotropic variances, shared covariance):
          ``q_k - q_j = 2 (mu_j - mu_k)^T S^-1 (y - (mu_j + mu_k)/2)``, a difference of
          squares whose factors stay finite (two deltas at ``+-m``: ``4 m y / delta``);
        - unequal covariances: ``q = R^2 qt`` with ``R = max_k |y - mu_k|`` and the scaled
          ``qt`` finite, so ``q_k - q_j = R^2 (qt_k - qt_j)``, whose sign decides: as
          ``|y| -> inf`` the component with the broadest covariance along ``y`` takes all
          the mass (the asymptotics; ties of ``qt`` fall back on the weights).
        """
        comps = self._comps
        diff = [y - c._mean for c in comps]  # (n, d) each, finite for |y|, |mu| < 1e308
        scale = np.max([np.max(np.abs(v), axis=1) for v in diff], axis=0)
        scale = np.where(scale > 0, scale, 1.0)[:, None]
        qt = np.stack(
            [
                np.sum((v / scale) * _inverse_times(c, v / scale, delta), axis=1)
                for c, v in zip(comps, diff, strict=True)
            ]
        )  # (K, n), the scaled q_k / R^2
        logdet = np.stack(
            [
                np.sum(np.log(c._lam + delta), axis=1) + (c.dim - c.rank) * np.log(delta[:, 0])
                for c in comps
            ]
        )
        ref = np.argmin(qt, axis=0)
        rel = np.empty_like(qt)
        with np.errstate(over="ignore", invalid="ignore"):
            for j in np.unique(ref):
                at, cj = ref == j, comps[j]
                for k, ck in enumerate(comps):
                    if k == j:
                        dq = np.zeros(int(at.sum()))
                    elif np.array_equal(ck._U, cj._U) and np.array_equal(ck._lam, cj._lam):
                        a = np.broadcast_to(cj._mean - ck._mean, diff[k][at].shape)
                        mid = y[at] - (0.5 * cj._mean + 0.5 * ck._mean)  # no cancellation
                        dq = 2.0 * np.sum(_inverse_times(ck, a, delta[at]) * mid, axis=1)
                    else:
                        gap = qt[k, at] - qt[j, at]
                        with np.errstate(divide="ignore"):
                            dq = np.sign(gap) * np.exp(
                                2 * np.log(scale[at, 0]) + np.log(np.abs(gap))
                            )
                    rel[k, at] = (
                        self._logw[k]
                        - self._logw[j]
                        - 0.5 * (logdet[k, at] - logdet[j, at])
                        - 0.5 * dq
                    )
        rel[np.isnan(rel)] = -np.inf  # a zero weight against an infinite gap
        return _softmax_rows(rel)

    def _general_posterior(self, y, delta):
        return np.ascontiguousarray(self._posterior_rows(y, delta)[0].T)

    def _posterior(self, y, delta):
        return self._exact("posterior", y, delta)

    def posterior(self, y, delta) -> np.ndarray:
        """``p(k | y)`` for each component, shape ``(n, K)``."""
        return self._posterior(*self._prep(y, delta))

    def _general_log_density(self, y, delta):
        return _logsumexp_rows(self._log_joint_rows(y, delta)[0])

    def _log_density(self, y, delta):
        return self._exact("log_density", y, delta)

    @staticmethod
    def _weighted(p, vals):
        """``sum_k p[k][:, None] * vals[k]`` for ``p`` ``(K, n)``."""
        out = p[0][:, None] * vals[0]
        for k in range(1, len(vals)):
            out += p[k][:, None] * vals[k]
        return out

    def _general_denoise(self, y, delta):
        return self._weighted(*self._posterior_rows(y, delta, "denoise"))

    def _general_score(self, y, delta):
        return self._weighted(*self._posterior_rows(y, delta, "score"))

    def _denoise(self, y, delta):
        return self._exact("denoise", y, delta)

    def _score(self, y, delta):
        return self._exact("score", y, delta)

    def _moments(self, y, delta):
        p, ms = self._posterior_rows(y, delta, "denoise")  # (K, n), K x (n, d)
        m = self._weighted(p, ms)
        between = 0.0
        for pk, mk in zip(p, ms, strict=True):
            # sqrt(p_k) (m_k - m) on each side: a component without mass adds 0, also when
            # m_k - m is so large that its square overflows (0 * inf would be NaN)
            dm = np.sqrt(pk)[:, None] * (mk - m)
            between = between + np.einsum("ni,nj->nij", dm, dm)
        return p, between

    def _posterior_covariance(self, y, delta):
        return self._exact("posterior_covariance", y, delta)

    def _score_jacobian(self, y, delta):
        return self._exact("score_jacobian", y, delta)

    def _general_posterior_covariance(self, y, delta):
        p, between = self._moments(y, delta)
        within = sum(
            p[k][:, None, None] * c._posterior_covariance(y, delta)
            for k, c in enumerate(self._comps)
        )
        return within + between

    def _general_score_jacobian(self, y, delta):
        p, between = self._moments(y, delta)
        within = sum(
            p[k][:, None, None] * c._score_jacobian(y, delta) for k, c in enumerate(self._comps)
        )
        return within + between / delta[:, :, None] ** 2

    def _sample(self, n, rng):
        return self.sample_with_labels(n, rng)[0]

    def sample_with_labels(self, n: int, rng: np.random.Generator):
        """``(x0, labels)``: samples and the component each came from."""
        labels = rng.choice(self.n_components, size=n, p=self._w)
        x = np.empty((n, self.dim))
        for k, c in enumerate(self._comps):
            idx = np.flatnonzero(labels == k)
            if idx.size:
                x[idx] = c._sample(idx.size, rng)
        return x, labels
