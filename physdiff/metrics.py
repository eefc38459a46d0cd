"""Metrics of a class removal: safety, balance and quality (Koulischer et al. 2025,
Sec. 5; docs/theory.md section 7), and their trade-off against the guidance scale.

* safety: the share of samples classified into the removed class (:func:`removed_share`,
  a binomial standard error);
* balance: the KL divergence from the target class distribution over the kept classes to
  the generated one (:func:`class_kl`, additively smoothed, hence finite);
* quality: the sliced Wasserstein distance to data from the kept classes
  (:func:`sliced_wasserstein`, bootstrap error bars).

:func:`guidance_metrics` measures all three on one sample; :func:`tradeoff_curve` runs a
guided sampler (:mod:`physdiff.guidance`, :mod:`physdiff.negative_guidance`) at every scale
and measures each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import finite_array, integer
from .errors import DomainError, InputError, ShapeError
from .negative_guidance import TrackedDNG
from .processes import Process
from .sampling import sample

__all__ = [
    "Classifier",
    "removed_share",
    "ClassBalance",
    "class_kl",
    "sliced_wasserstein",
    "GuidanceMetrics",
    "guidance_metrics",
    "TradeoffCurve",
    "tradeoff_curve",
]

Classifier = Callable[[np.ndarray], np.ndarray]
"""``classify(x) -> (n,)`` integer class labels of data-space samples."""


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

    ``target``: the class probabilities ``(C,)`` (e.g.
    :attr:`physdiff.classes.MixtureClasses.class_weights`);
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
    :meth:`physdiff.classes.MixtureClasses.classify` for an exact mixture.
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
