"""Data on an m-dimensional linear subspace of R^d (Achilli et al. 2024; docs/theory.md section 1).

``x0 = mu + B (s * u)`` with ``B`` ``(d, m)`` orthonormal, stds ``s_1..s_m`` and either

* ``normalized=False``: ``u ~ N(0, I_m)``, i.e. the degenerate Gaussian
  ``N(mu, B diag(s^2) B^T)``, delegated to :class:`Gaussian` (zero variance normal to the
  subspace), or
* ``normalized=True``: the Gaussian sample rescaled to a fixed norm,
  ``x0 = mu + radius * B z / |z|`` with ``z ~ N(0, diag(s^2))`` and by default
  ``radius = sqrt(sum s_i^2)``. Its noised marginal is closed-form when the stds are
  equal (see :mod:`physdiff.ensembles.sphere`); otherwise only sampling is offered.
"""

from __future__ import annotations

import numpy as np

from .._validate import finite_array, positive
from ..errors import InputError, NotSupportedError, ShapeError
from .base import Ensemble, SubspaceEnsemble, stored
from .gaussian import Gaussian

__all__ = ["LinearManifold"]


class LinearManifold(SubspaceEnsemble):
    """Gaussian or norm-normalised data on the span of ``basis``."""

    def __init__(
        self, basis, stds, *, mean=None, normalized: bool = False, radius: float | None = None
    ):
        basis = finite_array(basis, "basis")
        if basis.ndim != 2 or basis.shape[1] < 1 or basis.shape[1] > basis.shape[0]:
            raise ShapeError(f"basis must have shape (d, m) with 1 <= m <= d; got {basis.shape}")
        d, m = basis.shape
        if np.max(np.abs(basis.T @ basis - np.eye(m))) > 1e-8:
            raise InputError("basis must have orthonormal columns (basis.T @ basis = I)")
        stds = positive(np.broadcast_to(stds, (m,)), "stds").copy()
        mean = np.zeros(d) if mean is None else finite_array(mean, "mean").reshape(-1)
        if mean.shape != (d,):
            raise ShapeError(f"mean must have shape ({d},); got {mean.shape}")
        self._B, self._s, self._mu = basis.copy(), stds, mean
        self.normalized = bool(normalized)
        if radius is None:
            radius = float(np.sqrt(np.sum(stds**2)))
        self.radius = float(positive(radius, "radius"))
        self._exact: Ensemble | None
        if not self.normalized:
            self._exact = Gaussian.from_eigen(mean, basis, stds**2)
        elif np.allclose(stds, stds[0], rtol=1e-12, atol=0):
            from .sphere import UniformSphere

            self._exact = UniformSphere(mean, basis, self.radius)
        else:
            self._exact = None

    @classmethod
    def axis_aligned(cls, d: int, stds, **kwargs) -> LinearManifold:
        """The subspace spanned by the first ``m = len(stds)`` coordinate axes of R^d."""
        stds = np.atleast_1d(np.asarray(stds, dtype=float))
        m = stds.shape[0]
        if not 1 <= m <= int(d):
            raise ShapeError(f"need 1 <= len(stds) <= d; got len(stds)={m}, d={d}")
        return cls(np.eye(int(d))[:, :m], stds, **kwargs)

    @classmethod
    def random(cls, d: int, stds, rng: np.random.Generator, **kwargs) -> LinearManifold:
        """A uniformly random m-dimensional subspace (QR of a Gaussian matrix)."""
        stds = np.atleast_1d(np.asarray(stds, dtype=float))
        m = stds.shape[0]
        if not 1 <= m <= int(d):
            raise ShapeError(f"need 1 <= len(stds) <= d; got len(stds)={m}, d={d}")
        q, r = np.linalg.qr(rng.standard_normal((int(d), m)))
        return cls(q * np.sign(np.diag(r)), stds, **kwargs)

    # -- properties --------------------------------------------------------------------------
    stds = stored("_s", "The standard deviations ``(m,)`` along the basis (a copy).", copy=True)

    @property
    def covariance(self) -> np.ndarray:
        if not self.normalized:
            return (self._B * self._s**2) @ self._B.T
        if self._exact is not None:
            return self._exact.covariance
        raise NotSupportedError(
            "the covariance of anisotropic normalised data has no closed "
            "form here; estimate it from samples"
        )

    def __repr__(self) -> str:
        kind = "normalized" if self.normalized else "gaussian"
        return f"LinearManifold(d={self.dim}, m={self.intrinsic_dim}, {kind})"

    # -- delegation ----------------------------------------------------------------------------
    def _model(self) -> Ensemble:
        if self._exact is None:
            raise NotSupportedError(
                "norm-normalised data with unequal stds has no closed-form noised marginal; "
                "use Empirical(manifold.sample(n, rng)) for its empirical score"
            )
        return self._exact

    def _denoise(self, y, delta):
        return self._model()._denoise(y, delta)

    def _score(self, y, delta):
        return self._model()._score(y, delta)

    def _log_density(self, y, delta):
        return self._model()._log_density(y, delta)

    def _posterior_covariance(self, y, delta):
        return self._model()._posterior_covariance(y, delta)

    def _score_jacobian(self, y, delta):
        return self._model()._score_jacobian(y, delta)

    def _sample(self, n, rng):
        z = rng.standard_normal((n, self.intrinsic_dim)) * self._s
        if self.normalized:
            norm = np.linalg.norm(z, axis=1, keepdims=True)
            z = self.radius * z / np.where(norm > 0, norm, 1.0)
        return self._mu + z @ self._B.T
