"""The named example models: one home for the mixtures and training sets that the command,
the figures, validation and the tests use by name.

    from physdiff import examples
    examples.mixture("four-1d")                  # GaussianMixture, one class per component
    examples.symmetric_pair(2.0, 0.3)            # 1/2 N(+2, 0.3) + 1/2 N(-2, 0.3) in 1-D
    examples.point_set("circle", 12)             # a (12, 2) training set

Mixtures (:data:`MIXTURES`, :func:`mixture`) have exact noised marginals
(:class:`~physdiff.ensembles.GaussianMixture`); point sets (:data:`POINT_SETS`,
:func:`point_set`) are training sets whose exact empirical score
(:class:`~physdiff.ensembles.Empirical`) only memorises. numpy and the ensembles are all
this module imports (the digits are read when asked for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .ensembles import GaussianMixture
from .errors import InputError

__all__ = [
    "MixtureSpec",
    "MIXTURES",
    "FOUR_MEANS_1D",
    "GUIDE_MIXTURES",
    "mixture",
    "symmetric_pair",
    "line_mixture",
    "mixture_1d",
    "four_classes_1d",
    "POINT_SETS",
    "point_set",
    "three_blobs_2d",
]


@dataclass(frozen=True)
class MixtureSpec:
    """A named isotropic Gaussian mixture: component ``means`` ``(K, d)``, one
    ``variance`` per component, ``weights`` summing to one, and what it is (``about``)."""

    means: tuple[tuple[float, ...], ...]
    variances: tuple[float, ...]
    weights: tuple[float, ...]
    about: str

    @property
    def n_classes(self) -> int:
        return len(self.means)

    def model(self) -> GaussianMixture:
        """The mixture as a :class:`~physdiff.ensembles.GaussianMixture`."""
        return GaussianMixture.isotropic(
            list(self.weights), [list(m) for m in self.means], list(self.variances)
        )


def _spec(means, variance, weights, about: str) -> MixtureSpec:
    var = [variance] * len(means) if np.ndim(variance) == 0 else list(variance)
    return MixtureSpec(
        tuple(tuple(float(v) for v in m) for m in means),
        tuple(float(v) for v in var),
        tuple(float(w) for w in weights),
        about,
    )


FOUR_MEANS_1D = (-8.0, -4.0, 6.0, 8.0)
"""The four 1-D classes of the class-decision and guidance studies: two far groups, the
second a close pair (docs/theory.md sections 6-7)."""

MIXTURES: dict[str, MixtureSpec] = {
    "four-1d": _spec(
        [[m] for m in FOUR_MEANS_1D],
        0.25,
        [0.25] * 4,
        "1-D, four Gaussian classes (variance 0.25) at -8, -4, 6, 8, equal weights "
        "(the mixture of validation/experiments/guidance.py)",
    ),
    "four-points-1d": _spec(
        [[m] for m in FOUR_MEANS_1D],
        0.0,
        [0.25] * 4,
        "1-D, four equal point masses at -8, -4, 6, 8 (the information figures)",
    ),
    "three-1d": _spec(
        [[-3.0], [0.0], [3.0]],
        0.16,
        [0.2, 0.3, 0.5],
        "1-D, three Gaussian classes (variance 0.16) at -3, 0, 3, weights 0.2, 0.3, 0.5",
    ),
    "square-2d": _spec(
        [[-3.0, -3.0], [3.0, -3.0], [-3.0, 3.0], [3.0, 3.0]],
        0.2,
        [0.1, 0.2, 0.3, 0.4],
        "2-D, four isotropic Gaussian classes (variance 0.2) at the corners "
        "(+-3, +-3), weights 0.1, 0.2, 0.3, 0.4",
    ),
    "four-masses-1d": _spec(
        [[-3.0], [-2.0], [2.0], [3.0]],
        0.0,
        [0.25] * 4,
        "1-D, equal point masses at -3, -2, 2, 3: two scales, two generations of "
        "bifurcations (the symmetry figures)",
    ),
}
"""The named mixtures (one class per component)."""

GUIDE_MIXTURES = ("four-1d", "three-1d", "square-2d")
"""The mixtures ``physdiff guide`` samples."""


def mixture(name: str) -> GaussianMixture:
    """The named mixture of :data:`MIXTURES` as a
    :class:`~physdiff.ensembles.GaussianMixture`; an unknown name is an
    :class:`~physdiff.errors.InputError` listing the names."""
    if name not in MIXTURES:
        raise InputError(f"mixture: unknown mixture {name!r}; choose from {', '.join(MIXTURES)}")
    return MIXTURES[name].model()


def four_classes_1d(variance: float = 0.0) -> GaussianMixture:
    """Equal weights at -8, -4, 6, 8 (:data:`FOUR_MEANS_1D`), each with ``variance``
    (point masses by default)."""
    return line_mixture(FOUR_MEANS_1D, variance)


def symmetric_pair(m: float, variance: float, d: int = 1) -> GaussianMixture:
    """``1/2 N(+m e, variance I) + 1/2 N(-m e, variance I)``, ``e = (1, ..., 1)/sqrt(d)``:
    the two-class model of symmetry breaking and cloning (docs/theory.md section 2);
    ``variance = 0`` gives two deltas at distance ``2 |m|``."""
    mu = np.full(int(d), float(m) / math.sqrt(d))
    return GaussianMixture.isotropic([0.5, 0.5], np.stack([mu, -mu]), [variance, variance])


def line_mixture(means, variance: float) -> GaussianMixture:
    """The equal-weight 1-D mixture of ``means``, each component with ``variance``."""
    K = len(means)
    return GaussianMixture.isotropic(
        [1.0 / K] * K, [[float(m)] for m in means], [float(variance)] * K
    )


POINT_SETS = ("circle", "gaussian-points", "digits")
"""The named training sets of :func:`point_set`."""


def point_set(name: str, k: int, *, d: int | None = None, seed: int = 0) -> np.ndarray:
    """The named training set as a ``(k, d)`` float64 array.

    ``circle``: ``k`` equally spaced points on the unit circle (d = 2);
    ``gaussian-points``: ``k`` draws from ``N(0, I_d)`` with
    ``numpy.random.default_rng(seed)`` (``d`` defaults to 2); ``digits``: the first ``k``
    rows of the standardised digits training split (:func:`physdiff.data.load_digits`,
    1438 images, d = 64) after a permutation drawn with ``numpy.random.default_rng(seed)``
    (nested in ``k``). Raises :class:`~physdiff.errors.InputError` naming ``k`` or ``d``
    when they are out of range.
    """
    if name not in POINT_SETS:
        raise InputError(
            f"ensemble: unknown ensemble {name!r}; choose from {', '.join(POINT_SETS)}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise InputError(f"k: must be an integer >= 2 (classification needs two points); got {k}")
    k = int(k)
    if name != "gaussian-points" and d is not None:
        fixed = 2 if name == "circle" else 64
        if d != fixed:
            raise InputError(f"d: the {name} ensemble has d = {fixed}; got {d}")
    if name == "circle":
        if k > 10**6:
            raise InputError(f"k: must lie in [2, 10^6] for circle; got {k}")
        th = 2 * np.pi * np.arange(k) / k
        return np.stack([np.cos(th), np.sin(th)], axis=1)
    if name == "gaussian-points":
        d = 2 if d is None else int(d)
        if not 1 <= d <= 10**5:
            raise InputError(f"d: must lie in [1, 10^5]; got {d}")
        if k * d > 10**8:
            raise InputError(f"k: k times d must stay below 10^8; got {k} x {d}")
        return np.random.default_rng(seed).standard_normal((k, d))
    from .data import load_digits

    ds = load_digits()
    n = ds.train.shape[0]
    if k > n:
        raise InputError(f"k: must lie in [2, {n}] for digits (its training split); got {k}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.array(ds.train[perm[:k]], dtype=np.float64)


_STD_MAX = math.sqrt(np.finfo(np.float64).max)


def mixture_1d(means, stds=(1.0,), weights=None) -> GaussianMixture:
    """A 1-D mixture from its components' ``means`` (K >= 2), standard deviations
    ``stds`` (one for all or one per component, >= 0; 0 is a point mass) and ``weights``
    (> 0, renormalised; default equal). Two identical components (same mean and std) are
    refused: their classes cannot be told apart. Errors name ``means``, ``stds`` or
    ``weights``."""
    K = len(means)
    if K < 2:
        raise InputError(f"means: need at least two components; got {K}")
    if len(stds) not in (1, K):
        raise InputError(f"stds: give one value or {K} (one per mean); got {len(stds)}")
    if any(not s >= 0 for s in stds):
        raise InputError(f"stds: must be >= 0; got {min(stds):g}")
    if any(not s <= _STD_MAX for s in stds):  # the variance std^2 must be a finite float
        raise InputError(f"stds: must be at most {_STD_MAX:.3g} (std^2 finite); got {max(stds):g}")
    sd = np.broadcast_to(np.asarray(stds, dtype=float), (K,))
    if weights is None:
        w = np.full(K, 1.0 / K)
    else:
        if len(weights) != K:
            raise InputError(f"weights: need {K} (one per mean); got {len(weights)}")
        if any(not v > 0 for v in weights):
            raise InputError(f"weights: must all be > 0; got {min(weights):g}")
        w = np.asarray(weights, dtype=float) / sum(weights)
    pts = np.asarray(means, dtype=float)[:, None]
    for i in range(K):
        for j in range(i):
            if pts[i, 0] == pts[j, 0] and sd[i] == sd[j]:
                raise InputError(
                    f"means: components {j} and {i} are identical (mean {pts[i, 0]:g}, std "
                    f"{sd[i]:g}): their classes cannot be told apart"
                )
    return GaussianMixture.isotropic(w.tolist(), pts.tolist(), (sd**2).tolist())


def three_blobs_2d() -> GaussianMixture:
    """2-D, three Gaussian classes of unequal weights (0.45, 0.35, 0.20) with anisotropic,
    unequal covariances at (-1.3, -0.7), (1.3, -0.7) and (0, 1.4): the mixture of the
    ensembles figures (a score field with three basins of different shapes)."""
    means = [[-1.3, -0.7], [1.3, -0.7], [0.0, 1.4]]
    covs = [0.12 * np.eye(2), [[0.25, 0.10], [0.10, 0.08]], [[0.05, 0.0], [0.0, 0.20]]]
    return GaussianMixture([0.45, 0.35, 0.20], means, covs)
