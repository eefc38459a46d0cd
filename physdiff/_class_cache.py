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

import math
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
        m = self.model
        dcol = delta_for_batch(delta, y.shape[0])
        # classes along the first axis: reductions over K then run over contiguous rows
        # (a reduction over a short last axis of an (n, K) array is ~100x slower in numpy)
        lj = np.stack(
            [lw + c._log_density(y, dcol) for lw, c in zip(m._logw, m.components, strict=True)]
        )  # (K, n)
        lj -= lj.max(axis=0)
        post = np.exp(lj)
        post /= post.sum(axis=0)
        fn = "_denoise" if want == "den" else "_score"
        vals = np.stack([getattr(c, fn)(y, dcol) for c in m.components])  # (K, n, d)
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
        out = e.post[0][:, None] * vals[0]
        for k in range(1, vals.shape[0]):
            out += e.post[k][:, None] * vals[k]
        return out


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
# the online classifier, laid out for speed
# ---------------------------------------------------------------------------------------
class CachedOnlineClassifier(OnlineClassifier):
    """:class:`~physdiff.information.OnlineClassifier` with the same update, made cheap.

    The Bayes update and its kernels are those of the base class (to rounding), with
    three changes of layout only:

    * the log-posterior is kept as ``(K, n)`` so that the normalisations over the classes
      reduce over contiguous rows (numpy reduces a short last axis of an ``(n, K)`` array
      some 100x slower);
    * the ``K`` conditional denoisers at the previous state come from a :class:`ClassCache`
      in one lookup when the models are its views (``models`` may be the cache itself);
    * the exact kernel of a Gaussian class, covariance ``v I + (1 - r)^2 Cov(x0 | y_t, c)``
      with ``Cov(x0 | y_t, c) = U diag(delta_t lam/(lam + delta_t)) U^T`` independent of
      ``y_t``, is applied in closed form through the component's eigenbasis (Woodbury)
      instead of a Cholesky factorisation and a solve per class and step:

          quad = (|u|^2 - sum_j (u.U_j)^2 c_j / (v + c_j)) / v,
          log det = d log v + sum_j log(1 + c_j / v),      c_j = (1 - r)^2 w_j.

    ``log_post`` and every entry of ``history`` are ``(n, K)`` (transposed views).

    ``keep_history=False`` tracks the posterior without recording it: :attr:`history` and
    :attr:`times` stay empty, the recorder returns ``None`` at every grid time, no
    posterior is formed during the run (only the log-posterior is updated, in place) and
    :attr:`posterior` gives the current one. A full history of ``S`` steps holds ``S n K``
    float64 numbers (320 MB for 10,000 particles, 4 classes and 1000 steps): writing that
    much fresh memory costs about as much as the update itself, so use it when only the
    final posterior (or a few snapshots, via :meth:`update`'s return) is needed.
    """

    def __init__(self, models, process, *, keep_history: bool = True, **kwargs):
        self.keep_history = bool(keep_history)
        cache = models if isinstance(models, ClassCache) else None
        if cache is not None:
            models = cache.class_models()
        else:
            models = list(models)
            caches = {id(getattr(m, "_cache", None)) for m in models}
            first = getattr(models[0], "_cache", None) if models else None
            if isinstance(first, ClassCache) and len(caches) == 1:
                cache = first
        self._lp: np.ndarray | None = None
        self._d_prev: float | None = None
        self._work: tuple[np.ndarray, np.ndarray] | None = None
        super().__init__(models, process, **kwargs)
        self.cache = cache
        if cache is not None and [getattr(m, "_k", None) for m in self.models] != list(
            range(cache.n_classes)
        ):
            self.cache = None  # not the cache's classes in order: evaluate each model

    @property
    def log_post(self) -> np.ndarray | None:  # type: ignore[override]
        return None if self._lp is None else self._lp.T

    @log_post.setter
    def log_post(self, value) -> None:
        self._lp = None if value is None else np.ascontiguousarray(np.asarray(value, float).T)

    @property
    def posterior(self) -> np.ndarray:
        lp = self._lp
        p = np.exp(lp - lp.max(axis=0))
        p /= p.sum(axis=0)
        return p.T

    def _class_denoisers(self, y_t: np.ndarray, d_t: float) -> np.ndarray | list:
        if self.cache is not None:
            vals = self.cache.lookup_all(y_t, d_t, "den")
            if vals is not None:
                return vals
        return [m.denoise(y_t, d_t) for m in self.models]

    def reset(self, n: int):
        super().reset(n)
        self._d_prev = None
        self._work = None

    def _schedule(self, t: float) -> tuple[float, float]:
        """``(delta(t), alpha(t))``, bitwise equal to ``process.delta(t)`` and
        ``process.alpha(t)`` (the sampler's values, which the cache lookups compare) without
        their per-call validation (about 25 us each, a fifth of the update in 1-D)."""
        proc = self.process
        if not proc.t_min <= t <= proc.t_max:
            proc.check_time(t, "t")  # raises, naming the range
        tt = np.asarray(t, dtype=np.float64)
        return float(proc._delta(tt)), float(np.exp(proc._log_alpha(tt)))

    def _buffers(self, K: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Work arrays reused across steps: ``(K, n d)`` and ``(n,)``."""
        w = self._work
        if w is None or w[0].shape != (K, n * d):
            w = self._work = (np.empty((K, n * d)), np.empty(n))
        return w

    def update(self, t: float, x) -> np.ndarray | None:
        """Feed the particles ``x`` (process frame) at the next grid time ``t``; returns the
        posterior ``(n, K)`` (``None`` with ``keep_history=False``)."""
        x = as_points(x, self.models[0].dim, "x", dtype=np.float64)
        n, d = x.shape
        if self._lp is None or self._lp.shape[1] != n:
            self.reset(n)
        t = float(t)
        d_s, a_s = self._schedule(t)
        y_s = x / a_s
        if self._prev is not None and d_s <= 0:
            if not self.keep_history:
                return None
            self.history.append(self.posterior)
            self.times.append(t)
            return self.history[-1]
        lp = self._lp
        if self._prev is not None:
            t_prev, y_t = self._prev
            d_t = self._d_prev if self._d_prev is not None else self._schedule(t_prev)[0]
            if not d_t > d_s:
                raise InputError("times must decrease along the trajectory")
            r = d_s / d_t
            v = d_s * (d_t - d_s) / d_t
            vals = np.asarray(self._class_denoisers(y_t, d_t))
            K = vals.shape[0]
            u, m = self._buffers(K, n, d)
            # kernel means m_c + r (y_t - m_c) = (1 - r) m_c + r y_t, all classes at once;
            # flat (K, n d) rows: numpy broadcasts a short trailing axis ~10x slower
            # u_k / sqrt(2 v) = ((r - 1) m_k + y_s - r y_t) / sqrt(2 v), scaled in the same pass
            sc = math.sqrt(0.5 / v)
            np.multiply(vals.reshape(K, -1), (r - 1) * sc, out=u)
            c = y_s - r * y_t
            c *= sc
            u += c.reshape(1, -1)
            # the exact kernel's Woodbury terms need u before it is squared in place; log det:
            # d log v for every class (a common constant, dropped) plus sum_j log(1 + c_j/v)
            corr: dict[int, np.ndarray] = {}
            logdet = np.zeros(K)
            if self.exact_kernel:
                for k, comp in enumerate(self.models):
                    lam = comp._lam
                    if lam.size:
                        ck = (1 - r) ** 2 * d_t * lam / (lam + d_t)
                        proj = u[k].reshape(n, d) @ comp._U
                        corr[k] = (proj * proj) @ (ck / (v + ck))
                        logdet[k] = float(np.sum(np.log1p(ck / v)))
            if d == 1:
                lp -= np.square(u, out=u)  # (K, n): already |u|^2 / (2 v)
            else:
                lp -= np.einsum("knd,knd->kn", u.reshape(K, n, d), u.reshape(K, n, d))
            for k, ck in corr.items():
                lp[k] += ck
                lp[k] -= 0.5 * logdet[k]
        else:
            m = np.empty(n)
        np.max(lp, axis=0, out=m)
        lp -= m
        self._prev, self._d_prev = (t, y_s), d_s
        if not self.keep_history:
            return None
        # the posterior: a new array per step (the history keeps it); the columns of lp
        # have maximum 0, so exp(lp) is in (0, 1] with a 1 in every column
        p = np.exp(lp)
        np.sum(p, axis=0, out=m)
        np.reciprocal(m, out=m)
        p *= m
        post = p.T
        self.history.append(post)
        self.times.append(t)
        return post
