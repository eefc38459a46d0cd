"""Gaussian data, possibly degenerate (supported on a subspace).

``N(mu, C)`` noised in the VE frame is ``N(mu, C + delta I)`` (docs/theory.md section 1). The
covariance is stored by its eigen-decomposition restricted to the positive eigenvalues,
``C = U diag(lam) U^T`` with ``U`` of shape ``(d, r)``; the complement of ``span(U)`` has
zero variance. That one representation covers full-rank Gaussians, point masses
(``r = 0``) and Gaussian data on a linear manifold, and gives every quantity without
cancellation at small delta:

    score(y)    = -U diag(1/(lam + delta)) U^T (y - mu) - P_perp (y - mu) / delta
    E[x0 | y]   = mu + U diag(lam/(lam + delta)) U^T (y - mu)
    Cov(x0 | y) = U diag(delta lam/(lam + delta)) U^T
    J(y)        = -U diag(1/(lam + delta)) U^T - P_perp / delta
    log p(y)    = -1/2 sum_i [log 2 pi (lam_i + delta) + r_i^2/(lam_i + delta)]
                  - (d - r)/2 log(2 pi delta) - |P_perp (y - mu)|^2 / (2 delta)

with ``r_i = u_i . (y - mu)`` and ``P_perp = I - U U^T``.
"""

from __future__ import annotations

import numpy as np

from .._validate import finite_array, positive
from ..errors import InputError, ShapeError
from .base import Ensemble, extent, stored

__all__ = ["Gaussian"]

_LOG_2PI = float(np.log(2 * np.pi))


class Gaussian(Ensemble):
    """Gaussian ``N(mean, cov)``; ``cov`` symmetric positive semi-definite.

    Eigenvalues below ``rank_tol * max(eigenvalue)`` count as exact zeros (a degenerate
    direction); a negative eigenvalue beyond that tolerance is an error.
    """

    def __init__(self, mean, cov, *, rank_tol: float = 1e-12):
        mean = finite_array(mean, "mean")
        if mean.ndim != 1 or mean.shape[0] < 1:
            raise ShapeError(f"mean must have shape (d,) with d >= 1; got shape {mean.shape}")
        d = mean.shape[0]
        cov = finite_array(cov, "cov")
        if cov.shape != (d, d):
            raise ShapeError(f"cov must have shape ({d}, {d}) to match mean; got {cov.shape}")
        scale = max(float(np.max(np.abs(cov))), np.finfo(float).tiny)
        if np.max(np.abs(cov - cov.T)) > 1e-10 * scale:
            raise InputError(
                "cov must be symmetric; cov - cov.T has entries up to "
                f"{np.max(np.abs(cov - cov.T)):.3g}"
            )
        lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
        tol = rank_tol * max(float(lam[-1]), 0.0) + np.finfo(float).tiny
        if lam[0] < -max(tol, 1e-12 * scale):
            raise InputError(
                "cov must be positive semi-definite (eigenvalues >= 0); its smallest "
                f"eigenvalue is {lam[0]:.6g}"
            )
        keep = lam > tol
        self._init(mean, vec[:, keep], lam[keep])

    @classmethod
    def from_eigen(cls, mean, basis, variances) -> Gaussian:
        """Gaussian with variances ``variances`` (all > 0) along the orthonormal columns of
        ``basis`` ``(d, r)`` and zero variance elsewhere."""
        obj = cls.__new__(cls)
        mean = finite_array(mean, "mean")
        basis = finite_array(basis, "basis")
        if mean.ndim != 1 or basis.ndim != 2 or basis.shape[0] != mean.shape[0]:
            raise ShapeError(
                f"basis must have shape ({mean.shape[0]}, r) to match mean; got {basis.shape}"
            )
        variances = positive(variances, "variances").reshape(-1)
        if variances.shape[0] != basis.shape[1]:
            raise ShapeError(
                f"variances must have shape ({basis.shape[1]},) (one per basis "
                f"column); got {variances.shape}"
            )
        gram = basis.T @ basis
        if basis.shape[1] and np.max(np.abs(gram - np.eye(basis.shape[1]))) > 1e-8:
            raise InputError("basis must have orthonormal columns (basis.T @ basis = I)")
        obj._init(mean, basis, variances)
        return obj

    @classmethod
    def isotropic(cls, mean, variance: float) -> Gaussian:
        """``N(mean, variance I)``."""
        mean = finite_array(mean, "mean").reshape(-1)
        v = float(positive(variance, "variance"))
        obj = cls.__new__(cls)  # from_eigen without its d^3 orthonormality check of I
        obj._init(mean, np.eye(mean.shape[0]), np.full(mean.shape[0], v))
        return obj

    @classmethod
    def point_mass(cls, point) -> Gaussian:
        """A Dirac mass at ``point`` (zero covariance)."""
        point = finite_array(point, "point").reshape(-1)
        return cls.from_eigen(point, np.zeros((point.shape[0], 0)), np.zeros(0))

    def _with_mean(self, mean, lam=None) -> Gaussian:
        """The same covariance about another mean, sharing this one's arrays (no checks: for
        :meth:`GaussianMixture.shared_covariance`); with ``lam``, other variances along the
        same basis (for :meth:`GaussianMixture.isotropic`: one ``d x d`` identity for all)."""
        obj = type(self).__new__(type(self))
        obj._init(mean, self._U, self._lam if lam is None else lam)
        obj._V = self._V
        return obj

    def _init(self, mean, basis, lam):
        self._mean = np.array(mean, dtype=float)
        self._U = np.ascontiguousarray(basis, dtype=float)
        self._lam = np.array(lam, dtype=float)
        self._V = None

    # -- properties ------------------------------------------------------------------------
    dim = extent("_mean", 0, "Dimension d of the data.")
    rank = extent("_lam", 0, "Number of directions with positive variance.")
    mean = stored("_mean", "Mean of the data distribution, ``(d,)`` (a copy).", copy=True)

    @property
    def covariance(self) -> np.ndarray:
        return (self._U * self._lam) @ self._U.T

    @property
    def eigen(self) -> tuple[np.ndarray, np.ndarray]:
        """``(variances, basis)`` of the positive part of the covariance."""
        return self._lam.copy(), self._U.copy()

    def __repr__(self) -> str:
        return f"Gaussian(d={self.dim}, rank={self.rank})"

    # -- the exact formulas ------------------------------------------------------------------
    # Each quantity is a function of the coordinates ``r = U^T (y - mu)`` (and, for the
    # score and the density, of ``P_perp (y - mu)``): the ``*_from`` forms take them, so that
    # a mixture computes them once per component for its log joint and its denoiser or score.
    def _coords(self, y):
        return (y - self._mean) @ self._U

    def _split(self, y):
        c = y - self._mean
        r = c @ self._U
        perp = c - r @ self._U.T
        return r, perp

    def _denoise(self, y, delta):
        # only r: the complement has zero variance, so it never enters E[x0 | y]
        return self._denoise_from(self._coords(y), delta)

    def _denoise_from(self, r, delta):
        return self._mean + (r * (self._lam / (self._lam + delta))) @ self._U.T

    def _score(self, y, delta):
        return self._score_from(*self._split(y), delta)

    def _score_from(self, r, perp, delta):
        return -(r / (self._lam + delta)) @ self._U.T - perp / delta

    def _log_density(self, y, delta):
        return self._log_density_from(*self._split(y), delta)

    def _log_density_from(self, r, perp, delta):
        lv = self._lam + delta
        d, k = self.dim, self.rank
        out = -0.5 * np.sum(np.log(lv) + r * r / lv, axis=1)
        out -= 0.5 * (d - k) * np.log(delta[:, 0]) + 0.5 * np.sum(perp * perp, axis=1) / delta[:, 0]
        return out - 0.5 * d * _LOG_2PI

    def _posterior_covariance(self, y, delta):
        w = delta * self._lam / (self._lam + delta)  # (n, r)
        return np.einsum("ir,nr,jr->nij", self._U, w, self._U)

    def _score_jacobian(self, y, delta):
        # -U diag(1/(lam + delta)) U^T - V V^T / delta, V an orthonormal basis of the
        # zero-variance complement: both terms exact, no -I/delta + Cov/delta^2 cancellation
        tangent = np.einsum("ir,nr,jr->nij", self._U, 1.0 / (self._lam + delta), self._U)
        V = self._complement
        if V.shape[1] == 0:
            return -tangent
        return -tangent - (V @ V.T)[None] / delta[:, :, None]

    @property
    def _complement(self) -> np.ndarray:
        if getattr(self, "_V", None) is None:
            d, r = self.dim, self.rank
            if r == d:
                self._V = np.zeros((d, 0))
            else:
                q = np.linalg.svd(self._U, full_matrices=True)[0] if r else np.eye(d)
                self._V = np.ascontiguousarray(q[:, r:])
        return self._V

    def _sample(self, n, rng):
        z = rng.standard_normal((n, self.rank))
        return self._mean + (z * np.sqrt(self._lam)) @ self._U.T
