"""Models with classes: one abstraction for an exact mixture and a class-conditional network.

A model with classes (:class:`ClassConditional`) is an unconditional score model ``p(y)``
together with one score model per class, ``p(y | c)``, ``c = 0, ..., C - 1``, all in the VE
frame (``y = x0 + sqrt(delta) z``, docs/design.md "One convention for noise"), and, where it
is known, the class posterior ``p(c | y)`` and the class probabilities ``P(C = c)``. It is
itself a :class:`~physdiff.ensembles.ScoreModel` (its ``denoise`` and ``score`` are the
unconditional model's), so every sampler runs on it, and it evaluates all classes at once
(:meth:`ClassConditional.denoise_all`, :meth:`ClassConditional.score_all`): what the
guidance transforms (:mod:`physdiff.guidance`, :mod:`physdiff.negative_guidance`) and the
online classifier (:class:`physdiff.information.OnlineClassifier`) consume.

* :class:`MixtureClasses`: the classes of a :class:`~physdiff.ensembles.GaussianMixture`
  (a class is a component, or a group of components). Everything is exact: ``p(c | y) =
  sum_{k in c} p(k | y)`` (docs/theory.md section 1) and
  ``E[x0 | y] = sum_c p(c | y) E[x0 | y, c]``.
* :class:`NetworkClasses`: a class-conditional network (``n_classes``, ``conditional(c)``
  and the null label ``unconditional()``, the one network of classifier-free guidance, Ho &
  Salimans 2022), such as :class:`physdiff.nn.NetworkScoreModel`.
* :class:`ModelClasses`: explicit score models, optionally with an exact posterior.

:func:`as_conditional` is the one place that decides what a "model with classes" is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from ._validate import as_points, delta_for_batch, finite_array, integer
from .ensembles.base import ScoreModel, stored
from .ensembles.mixture import GaussianMixture, _softmax
from .ensembles.mixture import _logsumexp as _lse
from .errors import InputError, NotSupportedError, ShapeError

__all__ = [
    "Posterior",
    "ClassValues",
    "ConditionalNetwork",
    "ClassConditional",
    "MixtureClasses",
    "NetworkClasses",
    "ModelClasses",
    "as_conditional",
]

Posterior = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``posterior(y, delta) -> (n, C)`` class posteriors in the VE frame (rows sum to one)."""


class ClassValues(NamedTuple):
    """The unconditional model and every class evaluated at one batch (VE frame)."""

    unconditional: np.ndarray
    """``(n, d)``: the unconditional model's denoiser (or score)."""
    classes: np.ndarray
    """``(C, n, d)``: the same for each class, in class order."""


@runtime_checkable
class ConditionalNetwork(Protocol):
    """What a class-conditional network offers (:class:`physdiff.nn.NetworkScoreModel`):
    ``n_classes`` (``None`` for an unconditional network), ``conditional(label)`` (the
    network conditioned on a class; ``None``: the null label) and ``dim``."""

    @property
    def dim(self) -> int: ...

    @property
    def n_classes(self) -> int | None: ...

    def conditional(self, label: int | None) -> ScoreModel: ...


# ---------------------------------------------------------------------------------------
# small numerics
# ---------------------------------------------------------------------------------------
def _weighted(logw: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """``sum_k softmax(logw)_k vals[:, k]`` for ``logw (n, k)``, ``vals (n, k, d)``."""
    return np.einsum("nk,nkd->nd", _softmax(logw), vals)


def _prep(y, delta, d: int) -> tuple[np.ndarray, np.ndarray]:
    y = as_points(y, d, "y", dtype=np.float64)
    return y, delta_for_batch(delta, y.shape[0])


def _check_posteriors(p, n: int, n_classes: int, what: str) -> np.ndarray:
    """``p`` checked as ``(n, C)`` class posteriors (finite, in [0, 1], rows summing to 1)."""
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


def _class_weights(w, n: int) -> np.ndarray | None:
    if w is None:
        return None
    w = finite_array(w, "class_weights").reshape(-1)
    if w.shape[0] != n or np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
        raise InputError(f"class_weights must be {n} non-negative numbers summing to 1; got {w}")
    return w


class _Parts(NamedTuple):
    """What a guidance transform needs at one batch (VE frame, ``(n, d)`` / ``(n,)``)."""

    s: np.ndarray  # unconditional score
    s_c: np.ndarray  # score of the class
    p: np.ndarray | None  # p(c | y)
    q: np.ndarray | None  # 1 - p(c | y), computed without cancellation
    s_rest: np.ndarray | None  # score of the mixture of the other classes (exact models)


# ---------------------------------------------------------------------------------------
# the abstraction
# ---------------------------------------------------------------------------------------
class ClassConditional(ABC):
    """A score model with classes: its unconditional model, one model per class and, for
    exact models, the class posteriors ``p(c | y)``.

    Subclasses give :attr:`n_classes`, :attr:`unconditional` and :meth:`class_model`; the
    rest has generic definitions that they may make faster (:meth:`denoise_all`) or exact
    (:meth:`class_posterior`). It is a :class:`~physdiff.ensembles.ScoreModel`: ``denoise``
    and ``score`` are the unconditional model's.
    """

    @property
    def dim(self) -> int:
        """Dimension d of the data."""
        return int(self.unconditional.dim)

    @property
    @abstractmethod
    def n_classes(self) -> int:
        """Number of classes C."""

    @property
    @abstractmethod
    def unconditional(self) -> ScoreModel:
        """The unconditional model ``p(y)`` (the null label of a CFG network)."""

    @abstractmethod
    def class_model(self, label: int) -> ScoreModel:
        """The class-conditional model ``p(y | c)`` of class ``label``."""

    def class_models(self) -> list[ScoreModel]:
        """The ``C`` class-conditional models, in class order."""
        return [self.class_model(c) for c in range(self.n_classes)]

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
            "(TrackedDNG, OnlineClassifier) or pass posterior= to DynamicNegativeGuidance"
        )

    def check_label(self, label, name: str = "label") -> int:
        """``label`` as a class index in ``[0, C - 1]`` (a clear error naming ``name``)."""
        return integer(label, name, 0, self.n_classes - 1)

    # -- the score model -------------------------------------------------------------------
    def denoise(self, y, delta) -> np.ndarray:
        """The unconditional posterior mean ``E[x0 | y]``."""
        return self.unconditional.denoise(y, delta)

    def score(self, y, delta) -> np.ndarray:
        """The unconditional score ``grad log p_delta(y)``."""
        return self.unconditional.score(y, delta)

    def class_score(self, label: int, y, delta) -> np.ndarray:
        """The class-conditional score ``grad log p_delta(y | c)`` of class ``label``."""
        return self.class_model(self.check_label(label)).score(y, delta)

    # -- every class at once ---------------------------------------------------------------
    def denoise_all(self, y, delta) -> ClassValues:
        """``E[x0 | y]`` and ``E[x0 | y, c]`` for every class at once: ``(n, d)`` and
        ``(C, n, d)``. Generic: one call per model (a network may batch its labels,
        :class:`NetworkClasses`)."""
        return self._all(y, delta, "denoise")

    def score_all(self, y, delta) -> ClassValues:
        """The unconditional score and every class's score at once (see :meth:`denoise_all`)."""
        return self._all(y, delta, "score")

    def _all(self, y, delta, what: str) -> ClassValues:
        y = as_points(y, self.dim, "y", dtype=np.float64)
        u = np.asarray(getattr(self.unconditional, what)(y, delta), dtype=np.float64)
        cls = np.stack(
            [np.asarray(getattr(m, what)(y, delta), dtype=np.float64) for m in self.class_models()]
        )
        return ClassValues(u, cls)

    # -- what the guidance transforms read ---------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# an exact mixture
# ---------------------------------------------------------------------------------------
class MixtureClasses(ClassConditional):
    """The classes of a :class:`~physdiff.ensembles.GaussianMixture`: class ``c`` is the
    mixture of the components ``k`` with ``labels[k] == c`` (default: one class per
    component), with weights renormalised inside the class; a class of one component is
    that component (whatever its weight).

    Everything is exact: ``p(c | y) = sum_{k in c} p(k | y)`` (docs/theory.md section 1), the
    class scores, and the score of the mixture without a class (:meth:`kept_model`), which
    makes the negative-conditional score exact without cancellation. In :meth:`denoise_all`
    and :meth:`score_all` the unconditional part is the mixture's own ``denoise`` /
    ``score`` (bitwise: sampling the classes is sampling the mixture) and each class is its
    component's (or sub-mixture's) closed form; for one-component classes at one noise
    level :meth:`denoise_all` forms all of them at once from the coordinates of a shared
    basis (``GaussianMixture._component_denoisers``; equal to each component's own
    ``denoise`` to rounding, not bitwise).
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
        self._models: tuple | None = None
        w = mixture.weights
        self._weights = np.array([w[m].sum() for m in self._members])

    mixture = stored("_mixture", "The mixture whose components the classes group.")
    labels = stored("_labels", "The class of each component, ``(K,)`` (a copy).", copy=True)
    unconditional = stored("_mixture", "The unconditional model: the mixture itself.")
    class_weights = stored("_weights", "``P(C = c)``, the summed component weights.", copy=True)

    @property
    def n_classes(self) -> int:
        return len(self._members)

    def _sub(self, idx: np.ndarray, what: str) -> GaussianMixture:
        w = self._mixture.weights[idx]
        if idx.size == 0 or w.sum() <= 0:
            raise InputError(f"{what} has zero probability in this mixture")
        comps = [self._mixture.component(int(k)) for k in idx]
        return GaussianMixture.from_components(w / w.sum(), comps)

    def class_model(self, label: int):
        """``p(y | c)``: the component of a one-component class (a
        :class:`~physdiff.ensembles.Gaussian`, so that the online classifier keeps its exact
        kernel), else the mixture of the class's components, weights renormalised."""
        c = self.check_label(label)
        members = self._members[c]
        if members.size == 1:
            return self._mixture.component(int(members[0]))
        return self._sub(members, f"class {c}")

    def class_models(self) -> list:
        """The class models in class order (built once: the mixture is immutable)."""
        if self._models is None:
            self._models = tuple(self.class_model(c) for c in range(self.n_classes))
        return list(self._models)

    def kept_model(self, label: int) -> GaussianMixture:
        """``p(y | not c)``: the mixture with class ``label`` removed and the remaining
        weights renormalised (the target of a class removal)."""
        c = self.check_label(label)
        rest = np.flatnonzero(self._labels != c)
        return self._sub(rest, f"the complement of class {c}")

    def _all(self, y, delta, what: str) -> ClassValues:
        # one-component classes at one noise level (every sampler step): all K component
        # denoisers at once from the shared coordinates (GaussianMixture._component_denoisers)
        if what == "denoise" and all(m.size == 1 for m in self._members):
            y, dl = _prep(y, delta, self.dim)
            if y.shape[0] and np.all(dl == dl[0, 0]):
                u = np.asarray(self._mixture.denoise(y, delta), dtype=np.float64)
                comp = self._mixture._component_denoisers(y, float(dl[0, 0]))
                order = np.array([m[0] for m in self._members])
                return ClassValues(
                    u, comp if np.all(order == np.arange(order.size)) else comp[order]
                )
        return super()._all(y, delta, what)

    def _class_log_joint(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        lj = self._mixture._log_joint(y, dl)
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


# ---------------------------------------------------------------------------------------
# a class-conditional network and explicit models
# ---------------------------------------------------------------------------------------
class NetworkClasses(ClassConditional):
    """A class-conditional network (:class:`ConditionalNetwork`, such as
    :class:`physdiff.nn.NetworkScoreModel`): class ``c`` is ``net.conditional(c)``, the
    unconditional model the null label ``net.unconditional()`` (or ``conditional(None)``;
    the one network of classifier-free guidance, Ho & Salimans 2022).

    :meth:`denoise_all` hands all ``C + 1`` labels to the network in one batched call when
    it offers ``denoise_labels(y, delta, labels)`` (``labels``: the class indices, ``None``
    for the null label; ``score_labels`` likewise), as :class:`physdiff.nn.NetworkScoreModel`
    does, else one call per label."""

    def __init__(self, network: Any, class_weights: Sequence[float] | None = None):
        if not isinstance(network, ConditionalNetwork) or network.n_classes is None:
            raise InputError("network must be class-conditional (n_classes and conditional())")
        self._net = network
        self._n = integer(network.n_classes, "network.n_classes", 1, 1 << 24)
        self._uncond = (
            network.unconditional()
            if callable(getattr(network, "unconditional", None))
            else network.conditional(None)
        )
        self._cache: dict[int, ScoreModel] = {}
        self._weights = _class_weights(class_weights, self._n)

    network = stored("_net", "The class-conditional network.")
    n_classes = stored("_n", "Number of classes C (the network's ``n_classes``).")
    unconditional = stored("_uncond", "The null label's model.")
    class_weights = stored("_weights", "``P(C = c)`` when given (``None`` otherwise).", copy=True)

    def class_model(self, label: int) -> ScoreModel:
        c = self.check_label(label)
        if c not in self._cache:
            self._cache[c] = self._net.conditional(c)
        return self._cache[c]

    def _all(self, y, delta, what: str) -> ClassValues:
        batched = getattr(self._net, f"{what}_labels", None)
        if not callable(batched):
            return super()._all(y, delta, what)
        # labels 0..C-1 and the null label (None) last
        y = _prep(y, delta, self.dim)[0]
        out = np.asarray(batched(y, delta, [*range(self._n), None]), dtype=np.float64)
        if out.shape != (self._n + 1, *y.shape):
            raise ShapeError(
                f"the network's {what}_labels must return shape {(self._n + 1, *y.shape)} "
                f"(C + 1 labels, n points, d); got {out.shape}"
            )
        return ClassValues(out[-1], out[:-1])

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

    unconditional = stored("_u", "The unconditional model.")
    class_weights = stored("_weights", "``P(C = c)`` when given (``None`` otherwise).", copy=True)

    @property
    def n_classes(self) -> int:
        return len(self._models)

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


def as_conditional(model: Any, labels: Sequence[int] | None = None) -> ClassConditional:
    """The :class:`ClassConditional` view of ``model``: the one decision of what a model
    with classes is.

    A :class:`ClassConditional` is returned as is; a ``GaussianMixture`` becomes
    :class:`MixtureClasses` (``labels`` groups components into classes, default one class per
    component); a class-conditional network (:class:`ConditionalNetwork` with ``n_classes``
    not ``None``) becomes :class:`NetworkClasses`.
    """
    if isinstance(model, ClassConditional):
        if labels is not None:
            raise InputError("labels can only be given with a GaussianMixture")
        return model
    if isinstance(model, GaussianMixture):
        return MixtureClasses(model, labels)
    if labels is not None:
        raise InputError("labels can only be given with a GaussianMixture")
    if isinstance(model, ConditionalNetwork) and model.n_classes is not None:
        return NetworkClasses(model)
    raise InputError(
        "model must be a GaussianMixture, a class-conditional network (n_classes, "
        f"conditional()) or a ClassConditional; got {type(model).__name__}"
    )
