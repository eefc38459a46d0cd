"""The score-model interface and the base class of the exact ensembles.

Every model works in the variance-exploding frame ``y = x0 + sqrt(delta) z`` (docs/theory.md
section 0): ``denoise(y, delta) = E[x0 | y]``, ``score(y, delta) = grad_y log p_delta(y)``,
related by Tweedie's formula ``E[x0 | y] = y + delta * score(y)``, and the score Jacobian
``J(y) = -I/delta + Cov(x0 | y)/delta^2`` (docs/theory.md section 1). Arrays are ``(n, d)``;
``delta`` is a positive scalar or one value per point, shape ``(n,)``.

A trained network (``physdiff.nn``) offers the same methods, so every sampler and
estimator runs on exact models and networks alike; :class:`ScoreModel` is that contract.
:meth:`Ensemble.in_frame` views any model in a process's own frame at time ``t``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np

from .._validate import as_points, delta_for_batch, integer
from ..errors import InputError, NotSupportedError
from ..processes import Process, get_process

__all__ = ["ScoreModel", "Ensemble", "FrameView"]


def stored(attr: str, doc: str | None = None, *, copy: bool = False) -> property:
    """A read-only property that returns the instance's attribute ``attr``, or with
    ``copy=True`` a copy of it (``None`` stays ``None``), so that a caller cannot change the
    model through the array it is given. The one way the models of physdiff expose what
    their constructor stored."""

    def get(self):
        value = getattr(self, attr)
        return value.copy() if copy and value is not None else value

    return property(get, doc=doc)


def extent(attr: str, axis: int, doc: str | None = None) -> property:
    """A read-only property: the length of the instance's array ``attr`` along ``axis``."""
    return property(lambda self: getattr(self, attr).shape[axis], doc=doc)


@runtime_checkable
class ScoreModel(Protocol):
    """What a sampler or estimator needs of a model (exact ensemble or trained network)."""

    @property
    def dim(self) -> int:
        """Dimension d of the data."""
        ...

    def denoise(self, y: np.ndarray, delta) -> np.ndarray:
        """Posterior mean ``E[x0 | y]`` in the VE frame, shape ``(n, d)``."""
        ...

    def score(self, y: np.ndarray, delta) -> np.ndarray:
        """``grad log p_delta(y)`` in the VE frame, shape ``(n, d)``."""
        ...


class Ensemble(ABC):
    """A data distribution whose noised marginals are known exactly."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Dimension d of the data."""

    # -- what a subclass implements on validated input ---------------------------------
    @abstractmethod
    def _denoise(self, y: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """``E[x0 | y]``; ``y`` is ``(n, d)``, ``delta`` is ``(n, 1)``."""

    @abstractmethod
    def _log_density(self, y: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """``log p_delta(y)``, shape ``(n,)``."""

    @abstractmethod
    def _posterior_covariance(self, y: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """``Cov(x0 | y)``, shape ``(n, d, d)``."""

    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` clean data points."""

    def _score(self, y: np.ndarray, delta: np.ndarray) -> np.ndarray:
        # Tweedie; subclasses override where a direct form is more accurate
        return (self._denoise(y, delta) - y) / delta

    def _score_jacobian(self, y: np.ndarray, delta: np.ndarray) -> np.ndarray:
        d = self.dim
        cov = self._posterior_covariance(y, delta)
        dl = delta[:, :, None]
        return cov / dl**2 - np.eye(d)[None] / dl

    # -- public API ----------------------------------------------------------------------
    def _prep(self, y, delta, name: str = "y"):
        y = as_points(y, self.dim, name, dtype=np.float64)
        return y, delta_for_batch(delta, y.shape[0])

    def denoise(self, y, delta) -> np.ndarray:
        """Posterior mean ``E[x0 | y]`` at noise-to-signal variance ``delta`` (Tweedie)."""
        return self._denoise(*self._prep(y, delta))

    def score(self, y, delta) -> np.ndarray:
        """Score ``grad_y log p_delta(y) = (E[x0 | y] - y) / delta``."""
        return self._score(*self._prep(y, delta))

    def log_density(self, y, delta) -> np.ndarray:
        """``log p_delta(y)`` of the noised marginal ``p_delta = p_0 * N(0, delta I)``."""
        return self._log_density(*self._prep(y, delta))

    def posterior_covariance(self, y, delta) -> np.ndarray:
        """``Cov(x0 | y)``, shape ``(n, d, d)``."""
        return self._posterior_covariance(*self._prep(y, delta))

    def score_jacobian(self, y, delta) -> np.ndarray:
        """Exact Jacobian of the score, ``J = -I/delta + Cov(x0 | y)/delta^2``, ``(n, d, d)``."""
        return self._score_jacobian(*self._prep(y, delta))

    def posterior(self, y, delta) -> np.ndarray:
        """Posterior probabilities of the components given ``y``, shape ``(n, K)``."""
        raise NotSupportedError(f"{type(self).__name__} has no components")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` clean samples ``x0``, shape ``(n, d)``; ``rng`` is a numpy Generator."""
        n = integer(n, "n", 0, 10**9)
        if not isinstance(rng, np.random.Generator):
            raise InputError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        return self._sample(n, rng)

    def sample_noised(self, n: int, delta, rng: np.random.Generator):
        """Pairs ``(x0, y)`` with ``y = x0 + sqrt(delta) z`` (VE frame)."""
        x0 = self.sample(n, rng)
        dl = delta_for_batch(delta, n)
        return x0, x0 + np.sqrt(dl) * rng.standard_normal(x0.shape)

    @property
    def mean(self) -> np.ndarray:
        """Mean of the data distribution, ``(d,)``."""
        raise NotSupportedError(f"{type(self).__name__} does not give its mean")

    @property
    def covariance(self) -> np.ndarray:
        """Covariance of the data distribution, ``(d, d)``."""
        raise NotSupportedError(f"{type(self).__name__} does not give its covariance")

    def in_frame(self, process: Process | str, t: float) -> FrameView:
        """This model seen in ``process``'s own frame at time ``t``
        (``x_t = alpha x0 + sigma z``)."""
        return FrameView(self, get_process(process), t)


class SubspaceEnsemble(Ensemble):
    """An ensemble supported on the affine subspace ``mean + span(basis)`` (``self._mu``,
    ``(d,)``, and the orthonormal ``self._B``, ``(d, m)``), with their properties: the base
    of :class:`~physdiff.ensembles.LinearManifold` and
    :class:`~physdiff.ensembles.UniformSphere`."""

    dim = extent("_B", 0, "Dimension d of the data.")
    intrinsic_dim = extent("_B", 1, "Dimension m of the subspace.")
    basis = stored("_B", "The orthonormal basis ``(d, m)`` of the subspace (a copy).", copy=True)
    mean = stored("_mu", "Mean of the data distribution, ``(d,)`` (a copy).", copy=True)


class FrameView:
    """A score model seen in a process's frame at one time.

    With ``x = alpha y`` (docs/theory.md section 0, docs/design.md "One convention for noise"):
    ``score_t(x) = score(x/alpha, delta)/alpha``, ``E[x0 | x_t] = denoise(x/alpha, delta)``,
    ``eps(x) = -sigma score_t(x)`` (the noise a network in the eps parametrisation
    predicts), ``log p_t(x) = log p_delta(x/alpha) - d log alpha`` and the score Jacobian
    scales by ``1/alpha^2``.
    """

    def __init__(self, model: ScoreModel, process: Process, t: float):
        self.model = model
        self.process = process
        self.t = float(process.check_time(t))
        self.alpha = float(process.alpha(self.t))
        self.delta = float(process.delta(self.t))
        if not self.delta > 0:
            raise InputError(
                f"t must be above the data end of {process!r} (delta(t) = 0 there); got t={t!r}"
            )
        self.sigma = float(process.sigma(self.t))

    @property
    def dim(self) -> int:
        return self.model.dim

    def _y(self, x):
        return as_points(x, self.dim, "x") / self.alpha

    def score(self, x) -> np.ndarray:
        """``grad_x log p_t(x)``."""
        return self.model.score(self._y(x), self.delta) / self.alpha

    def denoise(self, x) -> np.ndarray:
        """``E[x0 | x_t = x]``."""
        return self.model.denoise(self._y(x), self.delta)

    def eps(self, x) -> np.ndarray:
        """``E[z | x_t = x] = -sigma score_t(x)``."""
        return -self.sigma * self.score(x)

    def log_density(self, x) -> np.ndarray:
        """``log p_t(x)`` (includes the ``-d log alpha`` Jacobian of the rescaling)."""
        return self.model.log_density(self._y(x), self.delta) - self.dim * np.log(self.alpha)

    def score_jacobian(self, x) -> np.ndarray:
        """``d score_t / dx``, shape ``(n, d, d)``."""
        return self.model.score_jacobian(self._y(x), self.delta) / self.alpha**2

    def posterior(self, x) -> np.ndarray:
        """Component posteriors given ``x_t = x``."""
        return self.model.posterior(self._y(x), self.delta)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Samples of ``x_t = alpha x0 + sigma z``."""
        x0 = self.model.sample(n, rng)
        return self.alpha * x0 + self.sigma * rng.standard_normal(x0.shape)

    def __repr__(self) -> str:
        return f"FrameView({self.model!r}, {self.process!r}, t={self.t:g})"
