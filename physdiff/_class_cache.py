"""Class-conditional evaluations shared between a sampler and an online classifier.

:class:`physdiff.information.OnlineClassifier` updates ``p(c | x)`` from step ``t`` to
``s`` with the ``K`` class-conditional denoisers evaluated at the previous state
``(y_t, delta_t)``. A sampler evaluates its model at exactly that state: the first (or
only) stage of an Euler, Euler-Maruyama, DDIM or DDPM-ancestral step is at the grid state.
For a Gaussian mixture the unconditional denoiser is itself the posterior-weighted sum of
the ``K`` conditional ones,

    E[x0 | y] = sum_k p(k | y) E[x0 | y, k],

so a sampler on the mixture already computes everything the classifier needs, and
evaluating it again doubles the cost of the run. :class:`ClassCache` is a score model that
computes the ``K`` conditional denoisers (and the posterior) once per ``(y, delta)``, returns
the mixture's ``denoise``/``score`` to the sampler, and keeps the last few evaluations so
that its class views (:meth:`ClassCache.class_models`, given to the classifier) answer
from memory. For a class-conditional network (a :class:`physdiff.nn.NetworkScoreModel`
with ``n_classes``) it evaluates the unconditional (null-label) and the ``K`` conditional
denoisers in one batched network call of ``(K + 1) n`` rows instead of ``K + 1`` calls.

Usage::

    cache = ClassCache(mixture)                          # or a conditional network
    clf = OnlineClassifier(cache.class_models(), process, start=...)
    sampling.sample(cache, n, rng, method="ddpm", process=process, record=clf.recorder())

A cache hit requires the same ``delta`` (a scalar) and a bitwise-equal ``y``; the sampler
and the classifier both form ``y = x / alpha(t)`` from the same ``x`` and ``alpha(t)``, so
they hit. Anything else (another point, a per-point ``delta``) is computed directly, so
the views are always correct, only slower. ``hits`` and ``misses`` count the lookups.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ._validate import as_points, delta_for_batch
from .ensembles.gaussian import Gaussian
from .ensembles.mixture import GaussianMixture
from .errors import InputError
from .information import OnlineClassifier

__all__ = ["ClassCache", "CachedOnlineClassifier"]


class _Entry:
    __slots__ = ("y", "delta", "post", "den", "sc")

    def __init__(self, y, delta, post, den, sc):
        self.y, self.delta, self.post, self.den, self.sc = y, delta, post, den, sc


class ClassCache:
    """A score model that evaluates all class-conditional denoisers once per state.

    ``model``: a :class:`~physdiff.ensembles.GaussianMixture` (classes = components) or a
    class-conditional network model with ``n_classes``, ``conditional(k)``, ``denoiser``,
    ``dtype``, ``device`` and ``batch_size`` (:class:`physdiff.nn.NetworkScoreModel`).
    ``keep``: how many recent evaluations are kept (a Heun step evaluates twice).
    """

    def __init__(self, model, *, keep: int = 4):
        if isinstance(model, GaussianMixture):
            self._kind = "mixture"
            self.n_classes = model.n_components
        elif getattr(model, "n_classes", None) and hasattr(model, "denoiser"):
            self._kind = "network"
            self.n_classes = int(model.n_classes)
        else:
            raise InputError(
                "ClassCache needs a GaussianMixture or a class-conditional network "
                "(physdiff.nn.NetworkScoreModel with n_classes)"
            )
        self.model = model
        self._entries: deque[_Entry] = deque(maxlen=max(1, int(keep)))
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return int(self.model.dim)

    # -- the sampler's side ----------------------------------------------------------------
    def denoise(self, y, delta) -> np.ndarray:
        """The model's ``E[x0 | y]``; keeps the class-conditional denoisers."""
        if np.ndim(delta) != 0:
            return self.model.denoise(y, delta)
        e = self._evaluate(y, float(delta), want="den")
        return self._uncond(e, "den")

    def score(self, y, delta) -> np.ndarray:
        """The model's score; keeps the class-conditional scores."""
        if np.ndim(delta) != 0:
            return self.model.score(y, delta)
        e = self._evaluate(y, float(delta), want="sc")
        return self._uncond(e, "sc")

    def posterior(self, y, delta) -> np.ndarray:
        """``p(k | y)`` of a mixture (from the cache when it holds this state)."""
        if self._kind != "mixture":
            return self.model.posterior(y, delta)
        if np.ndim(delta) != 0:
            return self.model.posterior(y, delta)
        return np.ascontiguousarray(self._evaluate(y, float(delta), want="den").post.T)

    # -- the classifier's side --------------------------------------------------------------
    def class_models(self) -> list:
        """The ``K`` class-conditional models, answering from the cache. For a mixture of
        Gaussians they are :class:`~physdiff.ensembles.Gaussian` instances (the
        components), so the online classifier keeps its exact kernel."""
        return [self.conditional(k) for k in range(self.n_classes)]

    def conditional(self, k: int):
        """Class ``k``'s model, answering ``denoise``/``score`` from the cache on a hit."""
        if not 0 <= int(k) < self.n_classes:
            raise InputError(f"class index {k} out of range [0, {self.n_classes - 1}]")
        if self._kind == "mixture":
            comp = self.model.components[int(k)]
            if isinstance(comp, Gaussian):
                view = object.__new__(_CachedGaussian)
                view.__dict__.update(comp.__dict__)
                view._cache, view._k, view._base = self, int(k), comp
                return view
        return _CachedClass(self, int(k))

    def lookup(self, y, delta: float, k: int, what: str) -> np.ndarray | None:
        """Class ``k``'s cached ``den`` or ``sc`` at ``(y, delta)``, or ``None``."""
        e = self._find(y, delta)
        if e is None:
            self.misses += 1
            return None
        self.hits += 1
        return self._values(e, what)[k]

    def lookup_all(self, y, delta: float, what: str = "den") -> np.ndarray | None:
        """All ``K`` classes' cached ``den`` or ``sc`` at ``(y, delta)``, ``(K, n, d)``
        (do not write into it), or ``None``."""
        e = self._find(y, delta)
        if e is None:
            self.misses += 1
            return None
        self.hits += 1
        return self._values(e, what)[: self.n_classes]

    @staticmethod
    def _values(e: _Entry, what: str) -> np.ndarray:
        """``(K(+1), n, d)`` denoisers or scores of an entry (the other by Tweedie)."""
        if what == "den":
            return e.den if e.den is not None else e.y + e.delta * e.sc
        return e.sc if e.sc is not None else (e.den - e.y) / e.delta

    # -- internals ---------------------------------------------------------------------------
    def _find(self, y, delta: float) -> _Entry | None:
        y = np.asarray(y)
        for e in reversed(self._entries):
            if e.delta == delta and e.y.shape == y.shape and np.array_equal(e.y, y):
                return e
        return None

    def _evaluate(self, y, delta: float, want: str) -> _Entry:
        e = self._find(y, delta)
        if e is not None and getattr(e, want) is not None:
            return e
        y = as_points(y, self.dim, "y", dtype=np.float64)
        if self._kind == "mixture":
            e = self._mixture(y, delta, want)
        else:
            e = self._network(y, delta, want)
        self._entries.append(e)
        return e

    def _mixture(self, y, delta, want) -> _Entry:
        dcol = delta_for_batch(delta, y.shape[0])
        # the mixture's own posterior and component values, (K, n) and K x (n, d): one pass
        # over each component's coordinates, bitwise the mixture's posterior/denoise/score
        post, vals = self.model._posterior_rows(y, dcol, "denoise" if want == "den" else "score")
        vals = np.stack(vals)  # (K, n, d)
        y = y.copy()
        y.flags.writeable = False
        return _Entry(
            y, delta, post, vals if want == "den" else None, vals if want == "sc" else None
        )

    def _network(self, y, delta, want) -> _Entry:
        import torch

        net = self.model
        K, n = self.n_classes, y.shape[0]
        fn = net.denoiser if want == "den" else getattr(net.denoiser, "score", None)
        # label K is the null (unconditional) label. On a GPU all K + 1 labels go through
        # the network in shared batches; on a CPU one label at a time is as fast (the cost
        # per row is compute bound and larger batches only spill the caches)
        labels = np.repeat(np.arange(K + 1), n)
        rows = np.tile(y, (K + 1, 1))
        bs = int(getattr(net, "batch_size", 4096))
        if torch.device(net.device).type == "cpu":
            bounds = [
                (k * n + s, k * n + min(n, s + bs)) for k in range(K + 1) for s in range(0, n, bs)
            ]
        else:
            bounds = [(s, min(rows.shape[0], s + bs)) for s in range(0, rows.shape[0], bs)]
        out = np.empty_like(rows)
        with torch.no_grad():
            for a, b in bounds:
                yt = torch.as_tensor(rows[a:b], dtype=net.dtype, device=net.device)
                dt = torch.full((b - a,), delta, dtype=net.dtype, device=net.device)
                lab = torch.as_tensor(labels[a:b], dtype=torch.long, device=net.device)
                if fn is None:  # a denoiser without score(): Tweedie
                    res = (net.denoiser(yt, dt, lab) - yt) / dt[:, None]
                else:
                    res = fn(yt, dt, lab)
                out[a:b] = res.double().cpu().numpy()
        vals = out.reshape(K + 1, n, -1)  # (K + 1, n, d); the last one unconditional
        y = y.copy()
        y.flags.writeable = False
        den, sc = (vals, None) if want == "den" else (None, vals)
        return _Entry(y, delta, None, den, sc)

    def _uncond(self, e: _Entry, what: str) -> np.ndarray:
        vals = getattr(e, what)
        if self._kind == "network":
            return np.array(vals[-1])
        return GaussianMixture._weighted(e.post, vals)


class _CachedClass:
    """Class ``k`` of a :class:`ClassCache` (networks, non-Gaussian components)."""

    def __init__(self, cache: ClassCache, k: int):
        self._cache, self._k = cache, k
        base = cache.model
        self._base = base.components[k] if cache._kind == "mixture" else base.conditional(k)

    @property
    def dim(self) -> int:
        return self._cache.dim

    def denoise(self, y, delta) -> np.ndarray:
        if np.ndim(delta) == 0:
            hit = self._cache.lookup(y, float(delta), self._k, "den")
            if hit is not None:
                return np.array(hit)
        return self._base.denoise(y, delta)

    def score(self, y, delta) -> np.ndarray:
        if np.ndim(delta) == 0:
            hit = self._cache.lookup(y, float(delta), self._k, "sc")
            if hit is not None:
                return np.array(hit)
        return self._base.score(y, delta)

    def __repr__(self) -> str:
        return f"ClassCache view of class {self._k} ({self._base!r})"


class _CachedGaussian(Gaussian):
    """A Gaussian component answering ``denoise``/``score`` from a :class:`ClassCache`; it
    is the component in every other respect (built by copying its state)."""

    _cache: ClassCache
    _k: int
    _base: Gaussian

    def denoise(self, y, delta) -> np.ndarray:
        if np.ndim(delta) == 0:
            hit = self._cache.lookup(y, float(delta), self._k, "den")
            if hit is not None:
                return np.array(hit)
        return super().denoise(y, delta)

    def score(self, y, delta) -> np.ndarray:
        if np.ndim(delta) == 0:
            hit = self._cache.lookup(y, float(delta), self._k, "sc")
            if hit is not None:
                return np.array(hit)
        return super().score(y, delta)


# ---------------------------------------------------------------------------------------
# the online classifier reading the cache
# ---------------------------------------------------------------------------------------
class CachedOnlineClassifier(OnlineClassifier):
    """:class:`~physdiff.information.OnlineClassifier` reading its ``K`` class denoisers
    from a :class:`ClassCache`.

    The Bayes update is the library's (one implementation: the ``(K, n)`` layout, the
    closed-form exact kernel of Gaussian classes, ``keep_history``); the only difference is
    where the ``K`` conditional denoisers at the previous state come from: one lookup in
    the cache when the models are its views (``models`` may be the cache itself), which
    the sampler filled when it evaluated the same state. On a miss (another sampler,
    another point) they are computed directly, so the result is the same either way.
    """

    def __init__(self, models, process, *, keep_history: bool = True, **kwargs):
        cache = models if isinstance(models, ClassCache) else None
        if cache is not None:
            models = cache.class_models()
        else:
            models = list(models)
            caches = {id(getattr(m, "_cache", None)) for m in models}
            first = getattr(models[0], "_cache", None) if models else None
            if isinstance(first, ClassCache) and len(caches) == 1:
                cache = first
        super().__init__(models, process, keep_history=keep_history, **kwargs)
        self.cache = cache
        if cache is not None and [getattr(m, "_k", None) for m in self.models] != list(
            range(cache.n_classes)
        ):
            self.cache = None  # not the cache's classes in order: evaluate each model

    def _scaled_means(
        self, out: np.ndarray, y_t: np.ndarray, d_t: float, f: float, given=None
    ) -> None:
        if given is None and self.cache is not None:
            vals = self.cache.lookup_all(y_t, d_t, "den")
            if vals is not None:
                np.multiply(vals.reshape(out.shape), f, out=out)
                return
        super()._scaled_means(out, y_t, d_t, f, given)
