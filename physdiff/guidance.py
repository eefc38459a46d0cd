"""Guidance as score transforms: classifier-free guidance, negative prompting and dynamic
negative guidance (docs/theory.md section 7), with the metrics of class removal.

Every guided model here is a :class:`physdiff.ensembles.ScoreModel` (``dim``,
``score(y, delta)``, ``denoise(y, delta) = y + delta * score``, VE frame), so it runs under
every sampler of :mod:`physdiff.sampling` and every estimator, on exact mixtures and trained
conditional networks alike. Writing ``s = score(y)`` (unconditional) and
``s_c = score(y | c)`` (class ``c``), all in the VE frame at the same ``delta``:

* classifier-free guidance (Ho & Salimans 2022, Eq. 6, with their ``w`` = our ``w - 1``)::

      s_cfg = s + w (s_c - s)                 w = 0: unconditional, w = 1: conditional;

* negative prompting (NP), a constant push away from class ``c``::

      s_np = s - lambda (s_c - s);

* the exact score of ``p(y | not c) = (p(y) - w_c p(y | c)) / (1 - w_c)`` (Koulischer et
  al. 2025, Eq. 5; docs/theory.md section 7; proved in ``theory/guidance.py``)::

      s_notc = s - p(c | y) / (1 - p(c | y)) (s_c - s);

* dynamic negative guidance (DNG; Koulischer, Deleu, Raya, Demeester, Ambrogioni, ICLR
  2025, arXiv 2410.14398, Eq. 7-8), the same with a scale ``lambda`` and an estimate
  ``p^`` of the class posterior::

      s_dng = s - lambda p^ / (1 - p^) (s_c - s),

  so that ``lambda = 1`` with the exact posterior samples ``p(x | not c)`` and NP is DNG
  with ``p^`` held at ``1/2`` (or any constant, with ``lambda`` rescaled by ``p/(1-p)``).

In the eps language of DDPM (``eps = -sigma score_t``, :class:`physdiff.ensembles.FrameView`)
each transform is the same linear combination of the eps predictions, e.g. DNG is
``eps~ = eps - lambda p^/(1 - p^) (eps_c - eps)`` followed by a DDPM step, because
``score_t(x) = score(x / alpha, delta) / alpha`` is linear in the score.

For a network the posterior ``p(c | x_t)`` is not available in closed form; DNG tracks it
along each trajectory by the online Bayes update of two Gaussian reverse kernels, which
makes it a property of a chain rather than of a score: :class:`TrackedDNG` is a sampler
method (:class:`physdiff.sampling.Method`) carrying ``p^`` per particle.

The metrics (:func:`guidance_metrics`, :func:`tradeoff_curve`) measure the safety, balance
and quality of a removal: the share of samples classified into the removed class, the KL
divergence from the target class distribution over the kept classes to the generated one
(additively smoothed, hence finite), and the sliced Wasserstein distance to data from the
kept classes (bootstrap error bars).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ._validate import as_points, delta_for_batch, finite_array, integer
from .ensembles.base import ScoreModel
from .ensembles.mixture import GaussianMixture, _softmax
from .ensembles.mixture import _logsumexp as _lse
from .errors import DomainError, InputError, NotSupportedError, PhysdiffError, ShapeError
from .processes import Process, get_process
from .sampling import Dynamics, SampleResult, sample

__all__ = [
    "ClassConditional",
    "MixtureClasses",
    "NetworkClasses",
    "ModelClasses",
    "as_conditional",
    "negative_conditional_score",
    "ClassifierFreeGuidance",
    "NegativePrompt",
    "DynamicNegativeGuidance",
    "reverse_kernel",
    "TrackedDNG",
    "removed_share",
    "ClassBalance",
    "class_kl",
    "sliced_wasserstein",
    "GuidanceMetrics",
    "guidance_metrics",
    "TradeoffCurve",
    "tradeoff_curve",
]

Posterior = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``posterior(y, delta) -> (n, C)`` class posteriors in the VE frame (rows sum to one)."""

Classifier = Callable[[np.ndarray], np.ndarray]
"""``classify(x) -> (n,)`` integer class labels of data-space samples."""


# ---------------------------------------------------------------------------------------
# small numerics
# ---------------------------------------------------------------------------------------
def _weighted(logw: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """``sum_k softmax(logw)_k vals[:, k]`` for ``logw (n, k)``, ``vals (n, k, d)``."""
    return np.einsum("nk,nkd->nd", _softmax(logw), vals)


def _nonneg(x, name: str) -> float:
    v = float(finite_array(x, name))
    if v < 0:
        raise DomainError(f"{name} must lie in [0, inf); got {v!r}")
    return v


def _prep(y, delta, d: int) -> tuple[np.ndarray, np.ndarray]:
    y = as_points(y, d, "y", dtype=np.float64)
    return y, delta_for_batch(delta, y.shape[0])


def _check_posteriors(p, n: int, n_classes: int, what: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n, n_classes):
        raise ShapeError(
            f"{what} must return class posteriors of shape ({n}, {n_classes}); got {p.shape}"
        )
    if not np.all(np.isfinite(p)) or np.any(p < -1e-12) or np.any(p > 1 + 1e-12):
        raise InputError(f"{what} must return probabilities in [0, 1]")
    err = np.max(np.abs(np.sum(p, axis=1) - 1.0)) if n else 0.0
    if err > 1e-6:
        raise InputError(
            f"{what} must return posteriors whose rows sum to 1; a row is off by {err:.3g}"
        )
    return np.clip(p, 0.0, 1.0)


# ---------------------------------------------------------------------------------------
# models with classes
# ---------------------------------------------------------------------------------------
class _Parts(NamedTuple):
    """What a guidance transform needs at one batch (VE frame, ``(n, d)`` / ``(n,)``)."""

    s: np.ndarray  # unconditional score
    s_c: np.ndarray  # score of the class
    p: np.ndarray | None  # p(c | y)
    q: np.ndarray | None  # 1 - p(c | y), computed without cancellation
    s_rest: np.ndarray | None  # score of the mixture of the other classes (exact models)


class ClassConditional:
    """A score model with classes: its unconditional model, one model per class and, for
    exact models, the class posteriors ``p(c | y)``.

    The adapter that lets every guidance method run on an exact mixture (class = component,
    or a group of components) and on a trained class-conditional network alike. Subclasses:
    :class:`MixtureClasses`, :class:`NetworkClasses`, :class:`ModelClasses`;
    :func:`as_conditional` picks one.
    """

    @property
    def dim(self) -> int:
        """Dimension d of the data."""
        return int(self.unconditional.dim)

    @property
    def n_classes(self) -> int:
        """Number of classes C."""
        raise NotImplementedError

    @property
    def unconditional(self) -> ScoreModel:
        """The unconditional model ``p(y)`` (the null label of a CFG network)."""
        raise NotImplementedError

    def class_model(self, label: int) -> ScoreModel:
        """The class-conditional model ``p(y | c)`` of class ``label``."""
        raise NotImplementedError

    @property
    def class_weights(self) -> np.ndarray | None:
        """The class probabilities ``P(C = c)`` when known (``None`` otherwise)."""
        return None

    @property
    def has_exact_posterior(self) -> bool:
        """Whether :meth:`class_posterior` is available."""
        return False

    def class_posterior(self, y, delta) -> np.ndarray:
        """``p(c | y)`` at noise-to-signal variance ``delta``, shape ``(n, C)`` (exact models)."""
        raise NotSupportedError(
            f"{type(self).__name__} has no exact class posterior: track it along the chain "
            "(TrackedDNG) or pass posterior= to DynamicNegativeGuidance"
        )

    def check_label(self, label, name: str = "label") -> int:
        """``label`` as a class index in ``[0, C - 1]`` (a clear error naming ``name``)."""
        return integer(label, name, 0, self.n_classes - 1)

    def score(self, y, delta) -> np.ndarray:
        """The unconditional score ``grad log p_delta(y)``."""
        return self.unconditional.score(y, delta)

    def class_score(self, label: int, y, delta) -> np.ndarray:
        """The class-conditional score ``grad log p_delta(y | c)`` of class ``label``."""
        return self.class_model(self.check_label(label)).score(y, delta)

    def _parts(self, c: int, y: np.ndarray, dl: np.ndarray, posterior: bool) -> _Parts:
        s = np.asarray(self.unconditional.score(y, dl[:, 0]), dtype=np.float64)
        s_c = np.asarray(self.class_model(c).score(y, dl[:, 0]), dtype=np.float64)
        p = q = None
        if posterior:
            post = _check_posteriors(
                self.class_posterior(y, dl[:, 0]), y.shape[0], self.n_classes, "class_posterior"
            )
            p = post[:, c]
            q = np.sum(np.delete(post, c, axis=1), axis=1)
        return _Parts(s, s_c, p, q, None)


class MixtureClasses(ClassConditional):
    """The classes of a :class:`~physdiff.ensembles.GaussianMixture`: class ``c`` is the
    mixture of the components ``k`` with ``labels[k] == c`` (default: one class per
    component), with weights renormalised inside the class.

    Everything is exact: ``p(c | y) = sum_{k in c} p(k | y)`` (docs/theory.md section 1), the
    class scores, and the score of the mixture without a class (:meth:`kept_model`), which
    makes the negative-conditional score exact without cancellation.
    """

    def __init__(self, mixture: GaussianMixture, labels: Sequence[int] | np.ndarray | None = None):
        if not isinstance(mixture, GaussianMixture):
            raise InputError(f"mixture must be a GaussianMixture; got {type(mixture).__name__}")
        K = mixture.n_components
        if labels is None:
            lab = np.arange(K)
        else:
            arr = finite_array(labels, "labels").reshape(-1)
            if arr.shape[0] != K:
                raise ShapeError(
                    f"labels must have one entry per component ({K}); got {arr.shape[0]}"
                )
            if np.any(arr != np.round(arr)) or np.any(arr < 0):
                raise InputError(f"labels must be non-negative integers; got {arr}")
            lab = arr.astype(int)
            missing = sorted(set(range(int(lab.max()) + 1)) - set(lab.tolist()))
            if missing:
                raise InputError(
                    f"labels must use every class 0..{int(lab.max())}; classes "
                    f"{missing} have no component"
                )
        self._mixture = mixture
        self._labels = lab
        self._members = [np.flatnonzero(lab == c) for c in range(int(lab.max()) + 1)]
        w = mixture.weights
        self._weights = np.array([w[m].sum() for m in self._members])

    @property
    def mixture(self) -> GaussianMixture:
        return self._mixture

    @property
    def labels(self) -> np.ndarray:
        """The class of each component, ``(K,)``."""
        return self._labels.copy()

    @property
    def n_classes(self) -> int:
        return len(self._members)

    @property
    def unconditional(self) -> GaussianMixture:
        return self._mixture

    @property
    def class_weights(self) -> np.ndarray:
        return self._weights.copy()

    def _sub(self, idx: np.ndarray, what: str) -> GaussianMixture:
        w = self._mixture.weights[idx]
        if idx.size == 0 or w.sum() <= 0:
            raise InputError(f"{what} has zero probability in this mixture")
        comps = [self._mixture.component(int(k)) for k in idx]
        return GaussianMixture.from_components(w / w.sum(), comps)

    def class_model(self, label: int) -> GaussianMixture:
        """``p(y | c)``: the components of class ``label``, weights renormalised."""
        c = self.check_label(label)
        return self._sub(self._members[c], f"class {c}")

    def kept_model(self, label: int) -> GaussianMixture:
        """``p(y | not c)``: the mixture with class ``label`` removed and the remaining
        weights renormalised (the target of a class removal)."""
        c = self.check_label(label)
        rest = np.flatnonzero(self._labels != c)
        return self._sub(rest, f"the complement of class {c}")

    def _log_joint(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        """``log w_k + log N(y; mu_k, C_k + delta I)``, ``(n, K)`` (the mixture's own)."""
        return self._mixture._log_joint(y, dl)

    def _class_log_joint(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        lj = self._log_joint(y, dl)
        return np.stack([_lse(lj[:, m]) for m in self._members], axis=1)

    @property
    def has_exact_posterior(self) -> bool:
        return True

    def class_posterior(self, y, delta) -> np.ndarray:
        """``p(c | y) = sum_{k in c} p(k | y)`` (log-sum-exp), ``(n, C)``."""
        y, dl = _prep(y, delta, self.dim)
        lc = self._class_log_joint(y, dl)
        return np.exp(lc - _lse(lc)[:, None])

    def classify(self, x, delta: float = 1e-8) -> np.ndarray:
        """The most probable class of each point, ``argmax_c p(c | x)`` at a small ``delta``:
        the Bayes classifier of the clean data for components with full-rank covariance,
        the nearest component (weighted) for point masses."""
        x, dl = _prep(x, delta, self.dim)
        return np.argmax(self._class_log_joint(x, dl), axis=1)

    def _parts(self, c: int, y: np.ndarray, dl: np.ndarray, posterior: bool) -> _Parts:
        # one pass over the components: log joint (n, K) and component scores (n, K, d)
        lj, vals = self._mixture._log_joint_rows(y, dl, "score")
        lj, S = lj.T, np.stack(vals, axis=1)
        inc = self._labels == c
        s = _weighted(lj, S)
        s_c = _weighted(lj[:, inc], S[:, inc])
        if not posterior or not np.any(~inc):  # CFG/NP need neither p nor s_rest
            return _Parts(s, s_c, None, None, None)
        s_rest = _weighted(lj[:, ~inc], S[:, ~inc])
        total = _lse(lj)
        p = np.exp(_lse(lj[:, inc]) - total)
        q = np.exp(_lse(lj[:, ~inc]) - total)
        return _Parts(s, s_c, p, q, s_rest)

    def __repr__(self) -> str:
        return f"MixtureClasses({self._mixture!r}, n_classes={self.n_classes})"


class NetworkClasses(ClassConditional):
    """A class-conditional network (anything with ``n_classes``, ``conditional(label)`` and
    ``unconditional()``, such as :class:`physdiff.nn.NetworkScoreModel`): class ``c`` is
    ``net.conditional(c)``, the unconditional model the null label ``net.unconditional()``
    (the one network of classifier-free guidance, Ho & Salimans 2022)."""

    def __init__(self, network: Any, class_weights: Sequence[float] | None = None):
        n = getattr(network, "n_classes", None)
        if n is None or not callable(getattr(network, "conditional", None)):
            raise InputError("network must be class-conditional (n_classes and conditional())")
        self._net = network
        self._n = integer(n, "network.n_classes", 1, 1 << 24)
        self._uncond = (
            network.unconditional()
            if callable(getattr(network, "unconditional", None))
            else network.conditional(None)
        )
        self._cache: dict[int, ScoreModel] = {}
        self._weights = _class_weights(class_weights, self._n)

    @property
    def network(self) -> Any:
        return self._net

    @property
    def n_classes(self) -> int:
        return self._n

    @property
    def unconditional(self) -> ScoreModel:
        return self._uncond

    @property
    def class_weights(self) -> np.ndarray | None:
        return None if self._weights is None else self._weights.copy()

    def class_model(self, label: int) -> ScoreModel:
        c = self.check_label(label)
        if c not in self._cache:
            self._cache[c] = self._net.conditional(c)
        return self._cache[c]

    def __repr__(self) -> str:
        return f"NetworkClasses({self._net!r})"


class ModelClasses(ClassConditional):
    """Classes given as explicit score models: ``unconditional`` and ``class_models[c]``,
    optionally with the class probabilities and an exact ``posterior(y, delta) -> (n, C)``."""

    def __init__(
        self,
        unconditional: ScoreModel,
        class_models: Sequence[ScoreModel],
        *,
        class_weights: Sequence[float] | None = None,
        posterior: Posterior | None = None,
    ):
        models = list(class_models)
        if (
            not isinstance(unconditional, ScoreModel)
            or not models
            or not all(isinstance(m, ScoreModel) for m in models)
        ):
            raise InputError(
                "unconditional and class_models must be ScoreModels (dim, score, "
                "denoise), with at least one class model"
            )
        d = int(unconditional.dim)
        if any(int(m.dim) != d for m in models):
            raise ShapeError(f"every class model must have dim {d}")
        if posterior is not None and not callable(posterior):
            raise InputError("posterior must be callable as posterior(y, delta) -> (n, C)")
        self._u = unconditional
        self._models = tuple(models)
        self._weights = _class_weights(class_weights, len(models))
        self._posterior = posterior

    @property
    def n_classes(self) -> int:
        return len(self._models)

    @property
    def unconditional(self) -> ScoreModel:
        return self._u

    @property
    def class_weights(self) -> np.ndarray | None:
        return None if self._weights is None else self._weights.copy()

    def class_model(self, label: int) -> ScoreModel:
        return self._models[self.check_label(label)]

    @property
    def has_exact_posterior(self) -> bool:
        return self._posterior is not None

    def class_posterior(self, y, delta) -> np.ndarray:
        if self._posterior is None:
            return super().class_posterior(y, delta)
        y, dl = _prep(y, delta, self.dim)
        return _check_posteriors(
            self._posterior(y, dl[:, 0]), y.shape[0], self.n_classes, "posterior"
        )


def _class_weights(w, n: int) -> np.ndarray | None:
    if w is None:
        return None
    w = finite_array(w, "class_weights").reshape(-1)
    if w.shape[0] != n or np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
        raise InputError(f"class_weights must be {n} non-negative numbers summing to 1; got {w}")
    return w


def as_conditional(model: Any, labels: Sequence[int] | None = None) -> ClassConditional:
    """The :class:`ClassConditional` view of ``model``.

    A :class:`ClassConditional` is returned as is; a ``GaussianMixture`` becomes
    :class:`MixtureClasses` (``labels`` groups components into classes, default one class per
    component); a class-conditional network (``n_classes``, ``conditional``) becomes
    :class:`NetworkClasses`.
    """
    if isinstance(model, ClassConditional):
        if labels is not None:
            raise InputError("labels can only be given with a GaussianMixture")
        return model
    if isinstance(model, GaussianMixture):
        return MixtureClasses(model, labels)
    if labels is not None:
        raise InputError("labels can only be given with a GaussianMixture")
    if getattr(model, "n_classes", None) is not None and callable(
        getattr(model, "conditional", None)
    ):
        return NetworkClasses(model)
    raise InputError(
        "model must be a GaussianMixture, a class-conditional network (n_classes, "
        f"conditional()) or a ClassConditional; got {type(model).__name__}"
    )


# ---------------------------------------------------------------------------------------
# score transforms
# ---------------------------------------------------------------------------------------
def negative_conditional_score(s, s_c, p) -> np.ndarray:
    """The score of ``p(y | not c)``: ``s - p / (1 - p) (s_c - s)``.

    ``s`` the unconditional score, ``s_c`` the score of class ``c`` (both ``(n, d)``), ``p``
    the posterior ``p(c | y)`` ``(n,)`` in ``[0, 1)``. Exact: ``p(y | not c) ∝ p(y) - w_c
    p(y | c)`` and ``w_c p(y | c) = p(c | y) p(y)`` (Koulischer et al. 2025, Eq. 5;
    docs/theory.md section 7; ``theory.guidance.negative_score_identity``). The form cancels
    when ``p -> 1``; :class:`DynamicNegativeGuidance` on a mixture avoids that.
    """
    s = finite_array(s, "s")
    s_c = finite_array(s_c, "s_c")
    p = finite_array(p, "p").reshape(-1)
    if s.ndim != 2 or s.shape != s_c.shape or p.shape[0] != s.shape[0]:
        raise ShapeError(
            f"s and s_c must have the same shape (n, d) and p shape (n,); got "
            f"{s.shape}, {s_c.shape} and {p.shape}"
        )
    if np.any(p < 0) or np.any(p >= 1):
        raise DomainError(
            "p must lie in [0, 1) (the score of p(y | not c) is undefined where p(c | y) = 1)"
        )
    return s - (p / (1.0 - p))[:, None] * (s_c - s)


class _Guided:
    """Base of the guided score models: a :class:`ClassConditional`, a class and a scale.

    ``score(y, delta)`` is the transform; ``denoise(y, delta) = y + delta * score(y, delta)``
    (Tweedie, docs/theory.md section 1), so the guided model is a ScoreModel.
    """

    def __init__(self, model: Any, label: int, scale: float):
        self.conditional = as_conditional(model)
        self.label = self.conditional.check_label(label)
        self.scale = _nonneg(scale, "scale")
        w = self.conditional.class_weights
        if w is not None and not w[self.label] > 0:
            raise InputError(f"label {self.label} has zero probability; nothing to guide by")

    @property
    def dim(self) -> int:
        return self.conditional.dim

    def _eval(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        """The guided score on validated ``y (n, d)``, ``dl (n, 1)``."""
        raise NotImplementedError

    def score(self, y, delta) -> np.ndarray:
        """The guided score at noise-to-signal variance ``delta``, ``(n, d)``."""
        return self._eval(*_prep(y, delta, self.dim))

    def denoise(self, y, delta) -> np.ndarray:
        """``y + delta * score(y, delta)``: the guided posterior mean (Tweedie)."""
        y, dl = _prep(y, delta, self.dim)
        return y + dl * self._eval(y, dl)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.conditional!r}, label={self.label}, scale={self.scale:g})"
        )


class ClassifierFreeGuidance(_Guided):
    """Classifier-free guidance ``s + w (s_c - s)`` (Ho & Salimans 2022, Eq. 6).

    ``scale = w >= 0``: ``w = 0`` is the unconditional model, ``w = 1`` the conditional one,
    ``w > 1`` sharpens toward class ``label``; Ho & Salimans' guidance strength is
    ``w - 1`` (their ``eps~ = (1 + w') eps_c - w' eps``). Equivalently
    ``grad log p(y) p(c | y)^w``.
    """

    def _eval(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        s, s_c, *_ = self.conditional._parts(self.label, y, dl, False)
        return s + self.scale * (s_c - s)


class NegativePrompt(_Guided):
    """Negative prompting ``s - lambda (s_c - s)`` with a constant ``lambda = scale >= 0``.

    The negative-prompt form of classifier-free guidance (a negative ``w``); it is DNG with
    the posterior held at ``p^ = 1/2`` (Koulischer et al. 2025, Sec. 3), so it pushes away
    from class ``label`` even where the sample is already far from it, which distorts the
    kept classes at large scales.
    """

    def _eval(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        s, s_c, *_ = self.conditional._parts(self.label, y, dl, False)
        return s - self.scale * (s_c - s)


class DynamicNegativeGuidance(_Guided):
    """Dynamic negative guidance as a score transform (Koulischer et al. 2025, Eq. 7-8):

        s_dng = s - lambda p~ / (1 - p~) (s_c - s),        p~ = clip(p(c | y), p_min, p_max).

    ``posterior``: ``None`` uses the model's exact class posterior (an exact mixture); a
    callable ``posterior(y, delta) -> (n, C)`` any other estimate (a noisy classifier); a
    number a constant ``p`` (``1/2`` gives :class:`NegativePrompt`). With ``scale = 1``, the
    exact posterior and no clipping, this is the exact score of ``p(y | not c)``.

    On a mixture (:class:`MixtureClasses`) with its exact posterior, the transform is
    evaluated through ``s_c - s = q (s_c - s_rest)`` (``q = 1 - p`` summed over the other
    classes, ``s_rest`` the score of the kept classes) as
    ``s - lambda p~ q / (1 - p~) (s_c - s_rest)``: no cancellation where ``p(c | y) -> 1``,
    and ``lambda = 1`` gives ``s_rest`` to rounding. Elsewhere the form above is used, and a
    posterior of exactly 1 without ``p_max < 1`` is an error.
    """

    def __init__(
        self,
        model: Any,
        label: int,
        scale: float = 1.0,
        *,
        posterior: Posterior | float | None = None,
        p_min: float = 0.0,
        p_max: float = 1.0,
    ):
        super().__init__(model, label, scale)
        if self.conditional.n_classes < 2:
            raise InputError("the model has a single class: nothing is left to sample")
        w = self.conditional.class_weights
        if w is not None and not 1.0 - w[self.label] > 0:
            raise InputError(f"the classes other than {self.label} have zero probability")
        self.p_min, self.p_max = _clip_range(p_min, p_max, strict=False)
        self._const: float | None = None
        self._callable: Posterior | None = None
        if callable(posterior):
            self._callable = posterior
        elif posterior is not None:
            v = float(finite_array(posterior, "posterior"))
            if not 0 <= v < 1:
                raise DomainError(f"posterior (a constant p) must lie in [0, 1); got {v!r}")
            self._const = v
        elif not self.conditional.has_exact_posterior:
            raise NotSupportedError(
                f"{type(self.conditional).__name__} has no exact class posterior: pass "
                "posterior= (a classifier) or use TrackedDNG, which tracks it along the chain"
            )

    def _eval(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        exact = self._const is None and self._callable is None
        s, s_c, p, q, s_rest = self.conditional._parts(self.label, y, dl, exact)
        if self._const is not None:
            p = np.full(y.shape[0], self._const)
            q = np.full(y.shape[0], 1.0 - self._const)
        elif self._callable is not None:
            post = _check_posteriors(
                self._callable(y, dl[:, 0]), y.shape[0], self.conditional.n_classes, "posterior"
            )
            p = post[:, self.label]
            q = np.sum(np.delete(post, self.label, axis=1), axis=1)
            s_rest = None
        assert p is not None and q is not None
        # p~ = clip(p), and 1 - p~ equal to q (no cancellation) where nothing was clipped
        pc = np.clip(p, self.p_min, self.p_max)
        qc = np.where(
            p > self.p_max, 1.0 - self.p_max, np.where(p < self.p_min, 1.0 - self.p_min, q)
        )
        if s_rest is not None and self._const is None:
            # s_c - s = q (s_c - s_rest): lambda p~/(1 - p~) (s_c - s) = lambda p~ q/(1 - p~) ...
            return s - (self.scale * pc * (q / qc))[:, None] * (s_c - s_rest)
        if np.any(qc <= 0):
            raise PhysdiffError(
                "p(c | y) = 1 at some points, where p/(1 - p) is infinite: set p_max < 1"
            )
        return s - (self.scale * pc / qc)[:, None] * (s_c - s)


def _clip_range(p_min, p_max, *, strict: bool) -> tuple[float, float]:
    lo = float(finite_array(p_min, "p_min"))
    hi = float(finite_array(p_max, "p_max"))
    if strict:
        if not 0 < lo < 1:
            raise DomainError(f"p_min must lie in (0, 1); got {lo!r}")
        if not 0 < hi < 1:
            raise DomainError(f"p_max must lie in (0, 1); got {hi!r}")
    else:
        if not 0 <= lo < 1:
            raise DomainError(f"p_min must lie in [0, 1); got {lo!r}")
        if not 0 < hi <= 1:
            raise DomainError(f"p_max must lie in (0, 1]; got {hi!r}")
    if not lo < hi:
        raise DomainError(f"p_min must be below p_max; got p_min={lo!r} >= p_max={hi!r}")
    return lo, hi


# ---------------------------------------------------------------------------------------
# the reverse kernel and tracked DNG
# ---------------------------------------------------------------------------------------
def _kernel(
    a_t: float, d_t: float, a_s: float, d_s: float, y: np.ndarray, x0: np.ndarray, e2: float
) -> tuple[np.ndarray, float]:
    """Mean (process frame) and variance of the posterior-step kernel from ``t`` to ``s``
    around the estimate ``x0``; ``y = x_t / alpha_t`` (see :func:`reverse_kernel`)."""
    r = d_s / d_t
    mean = a_s * (x0 + np.sqrt(r * ((1.0 - e2) + e2 * r)) * (y - x0))
    var = a_s**2 * e2 * d_s * (1.0 - r)
    return mean, var


def reverse_kernel(
    process: Process | str, x, x0_hat, t: float, s: float, eta: float = 1.0
) -> tuple[np.ndarray, float]:
    """Mean and variance of the reverse kernel ``x_s | x_t`` around ``x0_hat`` (process frame).

    The kernel of :class:`physdiff.sampling.PosteriorStep` (Song, Meng & Ermon 2021, Eq. 12
    and 16), written in the VE frame (``y = x / alpha``, ``D = delta``, ``r = D_s / D_t``)::

        mean = alpha_s (x0_hat + sqrt(r ((1 - eta^2) + eta^2 r)) (y_t - x0_hat)),
        var  = alpha_s^2 eta^2 D_s (1 - r).

    On consecutive steps ``k -> k-1`` of the DDPM process with ``eta = 1`` this is Ho et al.
    2020, Eq. 11: ``mean = (x_k - beta_k / sqrt(1 - abar_k) eps) / sqrt(1 - beta_k)`` with
    ``eps = (x_k - sqrt(abar_k) x0_hat) / sqrt(1 - abar_k)``, and ``var = beta~_k`` (Eq. 7)
    (``theory.guidance.ddpm_kernel_mean``).
    """
    process = get_process(process)
    t, s = float(process.check_time(t, "t")), float(process.check_time(s, "s"))
    if not s < t:
        raise InputError(f"s must be earlier than t (reverse time); got t={t:g}, s={s:g}")
    eta = float(finite_array(eta, "eta"))
    if not 0 <= eta <= 1:
        raise DomainError(f"eta must lie in [0, 1]; got {eta!r}")
    x = finite_array(x, "x")
    x0 = finite_array(x0_hat, "x0_hat")
    if x.shape != x0.shape or x.ndim != 2:
        raise ShapeError(
            f"x and x0_hat must have the same shape (n, d); got {x.shape} and {x0.shape}"
        )
    a_t, a_s = process.alpha(t), process.alpha(s)
    return _kernel(a_t, process.delta(t), a_s, process.delta(s), x / a_t, x0, eta * eta)


class TrackedDNG:
    """Dynamic negative guidance with the class posterior tracked along the chain: a sampler
    method (:class:`physdiff.sampling.Method`) for trained networks (Koulischer et al. 2025,
    Sec. 4 and their code; docs/theory.md section 7).

    At every step ``t -> s`` of a posterior (DDPM-ancestral) chain, with ``x0 = D(y_t)``,
    ``x0_c = D(y_t | c)`` and the current ``p^`` of each particle::

        x0~ = x0 - lambda p^/(1 - p^) (x0_c - x0)            (eps~ in the eps language)
        x_s ~ N(mu~, v),                    mu~, v = reverse_kernel(x0~),
        p^ <- clip(p^ exp((-tau (|x_s - mu_c|^2 - |x_s - mu|^2) + offset) / (2 v)),
                   p_min, p_max),

    with ``mu_c``, ``mu`` the kernel means of the conditional and unconditional predictions.
    On consecutive DDPM steps ``v = beta~_k`` and the means are Ho et al.'s
    ``(x_k - beta_k / sqrt(1 - abar_k) eps) / sqrt(1 - beta_k)``; on any other grid ``v`` is
    the posterior variance ``alpha_s^2 eta^2 delta_s (1 - delta_s / delta_t)``. With
    ``tau = 1``, ``offset = 0`` and no clipping the update is the Bayes rule
    ``p(c | x_s) = p(c | x_t) q(x_s | x_t, c) / q(x_s | x_t)`` for Gaussian kernels
    (docs/theory.md section 6), exact for any pair of states when the kernels are. A step whose
    kernel variance is zero (the last step of a VP process ending at ``delta = 0``, or
    ``eta = 0``) leaves ``p^`` unchanged. ``offset`` is the authors' ``delta`` (renamed: delta
    is the noise variance here).

    The right ``tau`` depends on the dimension: the log-update's noise has variance
    ``|mu - mu_c|^2 / v`` per step, which grows with ``d`` for a network's errors, so large
    images need ``tau < 1``. The defaults are the authors': prior 0.2, tau 1, offset 0,
    p_min 1e-6, p_max 0.99.

    Use it as ``sample(dng.unconditional, n, rng, method=dng, process="ddpm")`` (or
    :meth:`sample`): the model passed to the sampler is the unconditional one, and the
    method evaluates the class model itself (both count in ``n_evals``). The posterior of
    the last run is :attr:`posterior`; its history :attr:`history` ``(steps + 1, n)`` at
    :attr:`history_times`. The state is per run: a new run (a new ``Dynamics``) restarts
    at the prior.
    """

    name = "dng-tracked"

    def __init__(
        self,
        model: Any,
        label: int,
        scale: float = 1.0,
        *,
        prior: float = 0.2,
        tau: float = 1.0,
        offset: float = 0.0,
        p_min: float = 1e-6,
        p_max: float = 0.99,
        eta: float = 1.0,
        keep_history: bool = True,
    ):
        self.conditional = as_conditional(model)
        self.label = self.conditional.check_label(label)
        self.scale = _nonneg(scale, "scale")
        self.p_min, self.p_max = _clip_range(p_min, p_max, strict=True)
        prior = float(finite_array(prior, "prior"))
        if not 0 < prior < 1:
            raise DomainError(f"prior must lie in (0, 1); got {prior!r}")
        if not self.p_min <= prior <= self.p_max:
            raise DomainError(
                f"prior must lie in [p_min, p_max] = [{self.p_min:g}, "
                f"{self.p_max:g}]; got {prior!r}"
            )
        self.prior = prior
        self.tau = _nonneg(tau, "tau")
        self.offset = float(finite_array(offset, "offset"))
        eta = float(finite_array(eta, "eta"))
        if not 0 < eta <= 1:
            raise DomainError(
                f"eta must lie in (0, 1] (the update needs a stochastic kernel); got {eta!r}"
            )
        self.eta = eta
        self.keep_history = bool(keep_history)
        self.negative = self.conditional.class_model(self.label)
        self._dyn: Dynamics | None = None
        self._cdyn: Dynamics | None = None
        self._logp: np.ndarray | None = None
        self._hist: list[np.ndarray] = []
        self._times: list[float] = []

    @property
    def stochastic(self) -> bool:
        return True

    @property
    def unconditional(self) -> ScoreModel:
        """The model to pass to the sampler."""
        return self.conditional.unconditional

    @property
    def dim(self) -> int:
        return self.conditional.dim

    @property
    def posterior(self) -> np.ndarray:
        """``p^`` of each particle after the last step, ``(n,)``."""
        if self._logp is None:
            raise InputError("no run yet: sample with this method first")
        return np.exp(self._logp)

    @property
    def history(self) -> np.ndarray:
        """``p^`` at every grid time of the last run, ``(steps + 1, n)`` (``keep_history``)."""
        if not self._hist:
            raise InputError("no history: sample with this method first (keep_history=True)")
        return np.exp(np.stack(self._hist))

    @property
    def history_times(self) -> np.ndarray:
        """The grid times of :attr:`history`."""
        return np.asarray(self._times)

    def _start(self, dyn: Dynamics, n: int, t: float) -> None:
        if int(dyn.dim) != int(self.negative.dim):
            raise ShapeError(
                f"the sampled model has dim {dyn.dim} but the class model has "
                f"dim {self.negative.dim}"
            )
        self._dyn = dyn
        self._cdyn = Dynamics(self.negative, dyn.process)
        self._logp = np.full(n, np.log(self.prior))
        self._hist, self._times = [], []
        if self.keep_history:
            self._hist.append(self._logp.copy())
            self._times.append(t)

    def step(
        self, dyn: Dynamics, x: np.ndarray, t: float, s: float, rng: np.random.Generator
    ) -> np.ndarray:
        if dyn is not self._dyn:
            self._start(dyn, x.shape[0], t)
        assert self._logp is not None and self._cdyn is not None
        if x.shape[0] != self._logp.shape[0]:
            raise ShapeError(
                f"the number of particles changed during a run: {x.shape[0]} "
                f"vs {self._logp.shape[0]}"
            )
        ct, cs = dyn.at(t), dyn.at(s)
        y = x / ct.alpha
        x0 = dyn.denoise(x, ct)
        self._cdyn.step = dyn.step
        x0c = self._cdyn.denoise(x, ct)
        dyn.n_evals += 1
        p = np.exp(self._logp)
        ratio = p / -np.expm1(self._logp)  # p / (1 - p), p <= p_max < 1
        x0g = x0 - (self.scale * ratio)[:, None] * (x0c - x0)
        e2 = self.eta * self.eta
        sched = (ct.alpha, ct.delta, cs.alpha, cs.delta)
        mean, var = _kernel(*sched, y, x0g, e2)
        xs = mean + np.sqrt(var) * rng.standard_normal(x.shape) if var > 0 else mean
        if var > 0:
            mu, _ = _kernel(*sched, y, x0, e2)
            mu_c, _ = _kernel(*sched, y, x0c, e2)
            # |x - mu_c|^2 - |x - mu|^2 = (mu - mu_c) . (2 x - mu - mu_c), without cancellation
            gap = np.einsum("nd,nd->n", mu - mu_c, 2.0 * xs - mu - mu_c)
            logp = self._logp + (-self.tau * gap + self.offset) / (2.0 * var)
            self._logp = np.clip(logp, np.log(self.p_min), np.log(self.p_max))
        if self.keep_history:
            self._hist.append(self._logp.copy())
            self._times.append(s)
        return xs

    def sample(
        self,
        n: int | None,
        rng: np.random.Generator,
        *,
        process: Process | str = "ddpm",
        **options: Any,
    ) -> SampleResult:
        """``physdiff.sampling.sample(self.unconditional, n, rng, method=self, ...)``;
        ``options`` are those of :func:`physdiff.sampling.sample`."""
        return sample(self.unconditional, n, rng, method=self, process=process, **options)

    def __repr__(self) -> str:
        return (
            f"TrackedDNG({self.conditional!r}, label={self.label}, scale={self.scale:g}, "
            f"prior={self.prior:g}, tau={self.tau:g}, offset={self.offset:g}, "
            f"p_min={self.p_min:g}, p_max={self.p_max:g})"
        )


# ---------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------
def _labels(labels, n_classes: int | None = None) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ShapeError(f"labels must be 1-D (one class per sample); got shape {lab.shape}")
    if lab.dtype.kind not in "iu":
        f = finite_array(lab, "labels")
        if np.any(f != np.round(f)):
            raise InputError("labels must be integers (class indices)")
        lab = f.astype(int)
    if lab.size and lab.min() < 0:
        raise DomainError("labels must be non-negative class indices")
    if n_classes is not None and lab.size and lab.max() >= n_classes:
        raise DomainError(f"labels must lie in [0, {n_classes - 1}]; got {int(lab.max())}")
    return lab


def removed_share(labels, removed: int) -> tuple[float, float]:
    """Share of samples classified into class ``removed`` and its binomial standard error
    ``sqrt(f (1 - f) / n)``. With no such sample the error is 0; ``3/n`` is then the 95%
    upper limit ("rule of three")."""
    lab = _labels(labels)
    if lab.size == 0:
        raise InputError("labels must hold at least one sample")
    removed = integer(removed, "removed", 0, 1 << 30)
    f = float(np.mean(lab == removed))
    return f, float(np.sqrt(f * (1 - f) / lab.size))


@dataclass(frozen=True)
class ClassBalance:
    """KL divergence from the target class distribution over the kept classes to the
    generated one (:func:`class_kl`)."""

    kl: float
    """The smoothed estimate ``KL(pi || q_alpha)``, always finite."""
    kl_plugin: float
    """The plug-in ``KL(pi || q)`` with raw frequencies; ``inf`` when a kept class is missing."""
    missing: tuple[int, ...]
    """Kept classes (with positive target probability) that no sample fell into."""
    floor: float
    """``(K - 1) / (2 N)``: the expected plug-in KL when the generator is exactly on target."""
    pseudo_count: float
    n_kept: int
    """Number of samples in the kept classes (``N``)."""


def class_kl(labels, target, removed: int | None, *, pseudo_count: float = 0.5) -> ClassBalance:
    """``KL(pi || q) = sum_k pi_k log(pi_k / q_k)`` over the kept classes.

    ``target``: the class probabilities ``(C,)`` (e.g. :attr:`MixtureClasses.class_weights`);
    ``pi`` is it renormalised over the classes other than ``removed`` (``None``: all
    classes). ``q`` is the class distribution of the generated samples in the kept classes
    (samples in the removed class are excluded; their share is :func:`removed_share`),
    estimated with additive smoothing ``q_k = (n_k + alpha) / (N + alpha K)`` with the
    Krichevsky-Trofimov / Jeffreys pseudo-count ``alpha = 1/2`` (``pseudo_count``): finite
    when a kept class is missing (a missing class of target weight ``pi_k`` contributes
    about ``pi_k log(pi_k N / alpha)``), and consistent, the smoothing vanishing as
    ``N -> inf``. The plug-in value (``inf``
    when a class is missing) and the missing classes are reported alongside, with the
    noise floor ``(K - 1)/(2N)`` of the plug-in estimator (its expectation on target, from
    ``KL ~ chi^2 / 2``).
    """
    pi = finite_array(target, "target").reshape(-1)
    C = pi.shape[0]
    if C < 1 or np.any(pi < 0) or not abs(pi.sum() - 1) < 1e-6:
        raise InputError(
            f"target must be class probabilities (non-negative, summing to 1); got {pi}"
        )
    alpha = float(finite_array(pseudo_count, "pseudo_count"))
    if not alpha > 0:
        raise DomainError(f"pseudo_count must lie in (0, inf); got {alpha!r}")
    lab = _labels(labels, C)
    keep = np.ones(C, dtype=bool)
    if removed is not None:
        keep[integer(removed, "removed", 0, C - 1)] = False
    keep &= pi > 0
    if not keep.any():
        raise InputError("no kept class has positive target probability")
    pik = pi[keep] / pi[keep].sum()
    counts = np.bincount(lab, minlength=C)[keep].astype(float)
    N = float(counts.sum())
    K = int(keep.sum())
    qs = (counts + alpha) / (N + alpha * K)
    kl = float(np.sum(pik * (np.log(pik) - np.log(qs))))
    with np.errstate(divide="ignore"):
        plug = float(np.sum(pik * (np.log(pik) - np.log(counts / N)))) if N > 0 else np.inf
    missing = tuple(int(k) for k in np.flatnonzero(keep)[counts == 0])
    floor = (K - 1) / (2 * N) if N > 0 else np.inf
    return ClassBalance(kl, plug, missing, floor, alpha, int(N))


def _w2_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact squared W2 between the empirical 1-D distributions of each column of the
    sorted ``a (n, P)`` and ``b (m, P)``: ``int_0^1 |F_a^-1(u) - F_b^-1(u)|^2 du`` over the
    merged quantile breakpoints."""
    n, m = a.shape[0], b.shape[0]
    u = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    du = np.diff(np.concatenate([[0.0], u]))
    mid = u - du / 2
    ia = np.minimum((mid * n).astype(int), n - 1)
    ib = np.minimum((mid * m).astype(int), m - 1)
    return du @ (a[ia] - b[ib]) ** 2


def sliced_wasserstein(
    samples,
    reference,
    rng: np.random.Generator,
    *,
    n_projections: int = 64,
    n_bootstrap: int = 20,
) -> tuple[float, float]:
    """Sliced 2-Wasserstein distance and a bootstrap standard error.

    ``SW_2(a, b)^2 = E_theta W_2(theta . a, theta . b)^2`` over uniform directions on the
    sphere (Bonneel et al. 2015), each 1-D ``W_2`` exact between the empirical distributions
    (quantile functions on merged breakpoints; the sizes may differ); in 1-D the one
    direction is exact. The error bar is the standard deviation over ``n_bootstrap``
    replicates that resample both sets with replacement and draw fresh directions, so it
    covers the sampling and the projection noise. The estimator is biased upward by the
    finite samples (about ``n^-1/2`` in W2 units for smooth 1-D data): compare methods at
    equal sample sizes.
    """
    a = finite_array(samples, "samples")
    b = finite_array(reference, "reference")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[0] < 2 or b.shape[0] < 2:
        raise ShapeError(
            f"samples and reference must be (n, d) arrays of the same d with "
            f"n >= 2; got {a.shape} and {b.shape}"
        )
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    P = integer(n_projections, "n_projections", 1, 1 << 20)
    B = integer(n_bootstrap, "n_bootstrap", 2, 1 << 20)
    d = a.shape[1]

    def one(aa: np.ndarray, bb: np.ndarray) -> float:
        if d == 1:
            th = np.ones((1, 1))
        else:
            th = rng.standard_normal((d, P))
            th /= np.linalg.norm(th, axis=0, keepdims=True)
        return float(np.sqrt(np.mean(_w2_sorted(np.sort(aa @ th, 0), np.sort(bb @ th, 0)))))

    value = one(a, b)
    reps = [
        one(a[rng.integers(0, a.shape[0], a.shape[0])], b[rng.integers(0, b.shape[0], b.shape[0])])
        for _ in range(B)
    ]
    return value, float(np.std(reps, ddof=1))


@dataclass(frozen=True)
class GuidanceMetrics:
    """Safety, balance and quality of one guided sample (:func:`guidance_metrics`)."""

    n: int
    removed_share: float
    removed_share_se: float
    balance: ClassBalance
    quality: float
    """Sliced W2 distance of all samples to the kept-class reference data."""
    quality_se: float

    @property
    def kl(self) -> float:
        """The smoothed class KL (:attr:`ClassBalance.kl`)."""
        return self.balance.kl


def guidance_metrics(
    samples,
    *,
    classify: Classifier,
    removed: int,
    target,
    reference,
    rng: np.random.Generator,
    pseudo_count: float = 0.5,
    n_projections: int = 64,
    n_bootstrap: int = 20,
) -> GuidanceMetrics:
    """The three metrics of a class removal (Koulischer et al. 2025, Sec. 5; docs/theory.md
    section 7) on data-space ``samples`` ``(n, d)``:

    * safety: :func:`removed_share` of the samples that ``classify`` puts in ``removed``;
    * balance: :func:`class_kl` from ``target`` (class probabilities ``(C,)``) restricted to
      the kept classes to the generated class frequencies;
    * quality: :func:`sliced_wasserstein` from all samples to ``reference``, data of the
      kept classes (e.g. ``MixtureClasses.kept_model(c).sample(n, rng)``).

    ``classify(x) -> (n,)`` class labels: a trained classifier, or
    :meth:`MixtureClasses.classify` for an exact mixture.
    """
    x = finite_array(samples, "samples")
    if x.ndim != 2:
        raise ShapeError(f"samples must have shape (n, d); got {x.shape}")
    if not callable(classify):
        raise InputError("classify must be callable as classify(x) -> (n,) labels")
    C = finite_array(target, "target").reshape(-1).shape[0]
    lab = _labels(classify(x), C)
    if lab.shape[0] != x.shape[0]:
        raise ShapeError(
            f"classify must return one label per sample ({x.shape[0]}); got {lab.shape[0]}"
        )
    removed = integer(removed, "removed", 0, C - 1)
    share, se = removed_share(lab, removed)
    bal = class_kl(lab, target, removed, pseudo_count=pseudo_count)
    q, qse = sliced_wasserstein(
        x, reference, rng, n_projections=n_projections, n_bootstrap=n_bootstrap
    )
    return GuidanceMetrics(x.shape[0], share, se, bal, q, qse)


@dataclass(frozen=True)
class TradeoffCurve:
    """Metrics against the guidance scale (:func:`tradeoff_curve`); arrays ``(len(scales),)``."""

    scales: np.ndarray
    removed_share: np.ndarray
    removed_share_se: np.ndarray
    kl: np.ndarray
    kl_plugin: np.ndarray
    quality: np.ndarray
    quality_se: np.ndarray
    metrics: tuple[GuidanceMetrics, ...]


def tradeoff_curve(
    guide: Callable[[float], Any],
    scales: Sequence[float] | np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    classify: Classifier,
    removed: int,
    target,
    reference,
    method: Any = "ddpm",
    process: Process | str = "ddpm",
    final_denoise: bool = False,
    progress: bool = False,
    metric_options: dict[str, Any] | None = None,
    **sample_options: Any,
) -> TradeoffCurve:
    """Run a guided sampler at every scale and measure the three metrics.

    ``guide(scale)`` returns either a guided score model (e.g.
    ``lambda l: NegativePrompt(mix, c, l)``), sampled with ``method`` under ``process``, or a
    :class:`TrackedDNG` (its own method; ``method`` is then ignored). Each scale uses an
    independent stream spawned from ``rng``. Samples are taken in the data frame:
    ``y = x / alpha`` at the last grid time (``final_denoise=True``: ``E[x0 | x]``).
    ``sample_options`` go to :func:`physdiff.sampling.sample` (``n_steps``, ``times``, ...),
    ``metric_options`` to :func:`guidance_metrics`.
    """
    sc = finite_array(scales, "scales").reshape(-1)
    if sc.size == 0:
        raise InputError("scales must hold at least one scale")
    if np.any(sc < 0):
        raise DomainError(f"scales must lie in [0, inf); got {sc.min()!r}")
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    children = rng.spawn(len(sc))
    it: Any = sc
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(sc, desc="guidance scales")
    out = []
    for scale, child in zip(it, children, strict=True):
        g = guide(float(scale))
        if isinstance(g, TrackedDNG):
            res = g.sample(n, child, process=process, final_denoise=final_denoise, **sample_options)
        else:
            res = sample(
                g,
                n,
                child,
                method=method,
                process=process,
                final_denoise=final_denoise,
                **sample_options,
            )
        x = res.denoised if final_denoise else res.y
        out.append(
            guidance_metrics(
                x,
                classify=classify,
                removed=removed,
                target=target,
                reference=reference,
                rng=child,
                **(metric_options or {}),
            )
        )
    return TradeoffCurve(
        scales=sc,
        removed_share=np.array([m.removed_share for m in out]),
        removed_share_se=np.array([m.removed_share_se for m in out]),
        kl=np.array([m.balance.kl for m in out]),
        kl_plugin=np.array([m.balance.kl_plugin for m in out]),
        quality=np.array([m.quality for m in out]),
        quality_se=np.array([m.quality_se for m in out]),
        metrics=tuple(out),
    )
