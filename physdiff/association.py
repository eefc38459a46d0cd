"""Diffusion models as associative memories (docs/theory.md section 5; Pham, Raya, Negri, Zaki,
Ambrogioni & Krotov 2025, arXiv 2505.21777).

**Energy.** In the VE frame at noise ``sigma^2 = delta`` the empirical density of patterns
``xi_mu`` gives the dense-associative-memory energy

    E(y) = -2 delta log p_delta(y) + const = -(1/beta) log sum_mu exp(-beta |y - xi_mu|^2),
    beta = 1 / (2 delta),

whose minima are the retrieved memories. For a network, ``E`` is the line integral of
``-2 delta * score`` (:func:`energy_line_integral`), with its quadrature error estimated by
comparing two resolutions.

**Merging.** Two equal memories at distance ``D`` form one minimum iff ``beta D^2 <= 2``
(the curvature ``E''(0) = 2 - beta D^2`` at their midpoint). Patterns spread uniformly on
the unit circle have the continuum energy ``E(R) = R^2 + 1 - (1/beta) log I0(2 beta R)``.

**Attractors and classification.** Deterministic generation (probability-flow ODE, then
the iterated denoiser ``y <- E[x0 | y]`` at small noise) ends at fixed points; they are
deduplicated and their stability is read from the score Jacobian. A generated sample is
*memorised* if a training point lies within ``delta_m``, *spurious* if it is not
memorised but at least ``min_neighbours`` other non-memorised generated samples collapse
onto it within ``delta_s``, and *generalised* otherwise; both thresholds are multiples of
the training set's median nearest-neighbour spacing, and ``min_neighbours`` is the count
that samples spread like the data reach by chance (it depends on the number of samples,
the number of training points and the data's intrinsic dimension,
:func:`intrinsic_dimension`).

**Basins** (:mod:`physdiff.basins`, re-exported here): the recovery probability of a point
noised forward and generated back, under the stochastic reversal (reverse SDE; for the
exact empirical score the mean posterior weight) and under the deterministic flow
(probability-flow ODE; ``Phi(D/(2 sqrt delta))`` for two memories), their closed forms and
the simulation :func:`basin_size`; the basin extends to the largest noise level with
recovery probability at least 0.9.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ._validate import as_points, finite_array, integer, positive
from .basins import Basin, basin_size  # moved to physdiff.basins; importable from here
from .ensembles.base import ScoreModel
from .ensembles.empirical import Empirical
from .errors import ConvergenceWarning, DomainError, InputError
from .processes import Process, get_process

__all__ = [
    "dam_energy",
    "energy",
    "energy_line_integral",
    "merge_threshold",
    "two_memory_curvature",
    "circle_energy",
    "circle_merge_count_pairwise",
    "circle_pattern_stability",
    "circle_merge_count",
    "nearest_neighbour_spacing",
    "intrinsic_dimension",
    "Attractors",
    "find_attractors",
    "end_delta",
    "refine_fixed_points",
    "fixed_point_converged",
    "deduplicate",
    "Classification",
    "classify_samples",
    "chance_neighbours",
    "Basin",
    "basin_size",
    "AttractorReport",
    "attractor_report",
]


# ---------------------------------------------------------------------------------------
# energies
# ---------------------------------------------------------------------------------------
def dam_energy(y, patterns, beta) -> np.ndarray:
    """``E(y) = -(1/beta) log sum_mu exp(-beta |y - xi_mu|^2)`` (streaming kernel); docs/theory.md
    section 5, Pham et al. 2025 (arXiv 2505.21777), the dense associative memory energy."""
    b = float(positive(beta, "beta"))
    emp = patterns if isinstance(patterns, Empirical) else Empirical(patterns)
    _, lse, _ = emp.stats(y, 1.0 / (2 * b))  # lse = logsumexp(-|y - xi|^2 / (2 delta))
    return -lse / b


def energy(model, y, delta) -> np.ndarray:
    """``E(y) = -2 delta log p_delta(y)`` of any model with a log-density (VE frame)."""
    dl = float(positive(delta, "delta"))
    return -2 * dl * model.log_density(y, dl)


def energy_line_integral(
    model: ScoreModel, y, delta, y_ref=None, *, n_points: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """``E(y) - E(y_ref) = -2 delta int_0^1 score(y_ref + s (y - y_ref)) . (y - y_ref) ds`` for
    a model with only a score (a network), by Gauss-Legendre quadrature on ``n_points``
    nodes. Returns ``(energy differences, error estimate)``; the error is the difference to
    the same rule with half the nodes. (For a network the score need not be a gradient:
    the value then depends on the path, here the straight segment.)"""
    dl = float(positive(delta, "delta"))
    d = int(model.dim)
    y = as_points(y, d, "y", dtype=np.float64)
    ref = np.zeros(d) if y_ref is None else finite_array(y_ref, "y_ref").reshape(d)
    seg = y - ref

    def rule(k):
        s, w = np.polynomial.legendre.leggauss(k)
        s, w = 0.5 * (s + 1), 0.5 * w
        pts = ref + s[:, None, None] * seg[None]  # (k, n, d)
        sc = model.score(pts.reshape(-1, d), dl).reshape(k, -1, d)
        return -2 * dl * np.einsum("k,knd,nd->n", w, sc, seg)

    n_points = integer(n_points, "n_points", 4, 10**5)
    fine, coarse_ = rule(n_points), rule(max(2, n_points // 2))
    return fine, np.abs(fine - coarse_)


def merge_threshold(distance) -> float:
    """The ``beta`` at which two equal memories at ``distance`` merge: ``beta D^2 = 2``
    (docs/theory.md section 5; derived in ``theory/association.py``)."""
    D = float(positive(distance, "distance"))
    return 2.0 / (D * D)


def two_memory_curvature(beta, distance) -> float:
    """``E''`` at the midpoint of two equal memories: ``2 - beta D^2`` (positive: merged;
    docs/theory.md section 5, derived in ``theory/association.py``)."""
    return 2.0 - float(positive(beta, "beta")) * float(positive(distance, "distance")) ** 2


def circle_energy(R, beta) -> np.ndarray:
    """Continuum energy of patterns uniform on the unit circle at radius ``R``:
    ``R^2 + 1 - (1/beta) log I0(2 beta R)`` (``log I0`` via the scaled Bessel function;
    docs/theory.md section 5, Pham et al. 2025)."""
    from scipy.special import i0e

    b = float(positive(beta, "beta"))
    R = positive(R, "R", allow_zero=True)
    x = 2 * b * R
    return R * R + 1 - (np.log(i0e(x)) + x) / b


def circle_merge_count_pairwise(beta) -> float:
    """Neighbouring memories among K equally spaced on the unit circle merge pairwise when
    ``beta (2 sin(pi/K))^2 = 2``: ``K = pi / asin(1/sqrt(2 beta))`` (real-valued; K >= 2
    needs ``beta >= 1/2``)."""
    b = float(positive(beta, "beta"))
    if b < 0.5:
        return 2.0
    return math.pi / math.asin(1 / math.sqrt(2 * b))


def _circle_patterns(K: int) -> np.ndarray:
    th = 2 * np.pi * np.arange(K) / K
    return np.stack([np.cos(th), np.sin(th)], axis=1)


def circle_pattern_stability(K: int, beta: float) -> tuple[float, float]:
    """For K equally spaced unit-circle patterns: the radius ``R*`` of the energy minimum on
    the ray through pattern 0 and the tangential curvature of the DAM energy there
    (positive: pattern 0 is its own minimum; non-positive: neighbours have merged)."""
    from scipy.optimize import minimize_scalar

    K = integer(K, "K", 2, 10**6)
    b = float(positive(beta, "beta"))
    pats = _circle_patterns(K)

    def e(pt):
        d2 = np.sum((pt[None, :] - pats) ** 2, axis=1)
        a = -b * d2
        top = a.max()
        return -(top + math.log(np.exp(a - top).sum())) / b

    res = minimize_scalar(
        lambda r: e(np.array([r, 0.0])),
        bounds=(0.0, 2.0),
        method="bounded",
        options={"xatol": 1e-12},
    )
    R = float(res.x)
    # tangential curvature: exact Hessian of the log-sum-exp at (R, 0)
    d = np.array([R, 0.0]) - pats
    a = -b * np.sum(d * d, axis=1)
    w = np.exp(a - a.max())
    w /= w.sum()
    m = w @ d
    cov = (d * w[:, None]).T @ d - np.outer(m, m)
    hess = 2 * np.eye(2) - 4 * b * cov  # Hessian of E = -(1/b) lse(-b |x - xi|^2)
    return R, float(hess[1, 1])


def circle_merge_count(beta: float, rel: float = 0.01, K_max: int = 100000) -> int:
    """The smallest K for which K equally spaced unit-circle memories have merged into a
    ring at ``beta``, by a stated rule: the tangential curvature at a pattern's minimum
    has fallen below ``rel`` times that of an isolated memory (2 in these units).

    For a discrete ring the curvature stays positive but decays exponentially in K, so
    some threshold is needed; the pairwise rule ``beta (2 sin(pi/K))^2 = 2``
    (:func:`circle_merge_count_pairwise`) is the analytic approximation."""
    b = float(positive(beta, "beta"))
    rel = float(positive(rel, "rel"))
    lo, hi = 2, integer(K_max, "K_max", 3, 10**7)

    def merged(K):
        return circle_pattern_stability(K, b)[1] <= 2.0 * rel

    if merged(lo):
        return lo
    if not merged(hi):
        raise DomainError(f"memories stay separate up to K_max={hi}; raise K_max")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if merged(mid):
            hi = mid
        else:
            lo = mid
    return hi


# ---------------------------------------------------------------------------------------
# attractors
# ---------------------------------------------------------------------------------------
_BLOCK = 2**22  # numbers per distance block (32 MiB in float64)


def _knn(pts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index, distance)`` of the ``k`` nearest *other* points of each point, each
    ``(K, k)`` and sorted by distance.

    Candidates come from the norm expansion ``|a|^2 + |b|^2 - 2 a.b`` (one matrix product
    per block) on coordinates centred at the mean, and their distances are then recomputed
    from the direct differences ``a_i - a_j``: the expansion alone cancels
    catastrophically for a set far from the origin (docs/design.md, performance notes), while
    a wrong candidate can only be chosen when its distance ties the true one to rounding.
    """
    K, d = pts.shape
    c = pts - pts.mean(axis=0)
    sq = np.einsum("ij,ij->i", c, c)
    idx = np.empty((K, k), dtype=np.int64)
    out = np.empty((K, k))
    step = max(1, _BLOCK // max(K, k * d))
    for s in range(0, K, step):
        q = c[s : s + step]
        b = q.shape[0]
        d2 = sq[s : s + step, None] - 2 * (q @ c.T) + sq[None]
        d2[np.arange(b), np.arange(s, s + b)] = np.inf
        j = np.argpartition(d2, k - 1, axis=1)[:, :k]
        diff = pts[s : s + step, None, :] - pts[j]
        e = np.sqrt(np.einsum("bkd,bkd->bk", diff, diff))
        order = np.argsort(e, axis=1, kind="stable")
        idx[s : s + step] = np.take_along_axis(j, order, axis=1)
        out[s : s + step] = np.take_along_axis(e, order, axis=1)
    return idx, out


def _count_within(pts: np.ndarray, radius: float) -> np.ndarray:
    """Number of *other* points within ``radius`` (inclusive) of each point, ``(K,)``.

    The norm expansion on centred coordinates decides every pair outside a band of
    ``2 (d + 2) eps (|a|^2 + |b|^2)`` (a bound on its rounding error) around ``radius^2``;
    the pairs inside the band are decided by their direct differences, so the count is
    that of the exact distances (the brute-force twin in the tests)."""
    K, d = pts.shape
    if K == 0:
        return np.zeros(0, dtype=np.int64)
    c = pts - pts.mean(axis=0)
    sq = np.einsum("ij,ij->i", c, c)
    r2 = radius * radius
    tol = 2 * (d + 2) * np.finfo(np.float64).eps
    count = np.zeros(K, dtype=np.int64)
    step = max(1, _BLOCK // max(K, 1))
    for s in range(0, K, step):
        q = c[s : s + step]
        d2 = sq[s : s + step, None] - 2 * (q @ c.T) + sq[None]
        band = tol * (sq[s : s + step, None] + sq[None])
        count[s : s + step] = np.sum(d2 <= r2 - band, axis=1)
        ii, jj = np.nonzero(np.abs(d2 - r2) < band)
        pc = max(1, _BLOCK // d)
        for p in range(0, ii.shape[0], pc):
            a, b = ii[p : p + pc], jj[p : p + pc]
            diff = pts[s + a] - pts[b]
            np.add.at(count, s + a, np.einsum("ij,ij->i", diff, diff) <= r2)
    return count - 1  # each point is within radius of itself


def nearest_neighbour_spacing(points) -> float:
    """Median distance from each point to its nearest other point (the scale for every
    threshold here); the distances are exact differences (:func:`_knn`), so the result
    does not depend on where the set sits."""
    pts = finite_array(points, "points")
    if pts.ndim != 2 or pts.shape[0] < 2:
        raise InputError(f"points must have shape (K, d) with K >= 2; got {pts.shape}")
    return float(np.median(_knn(pts, 1)[1][:, 0]))


def intrinsic_dimension(points, *, k1: int = 2, k2: int = 8) -> float:
    """Nearest-neighbour estimate of the dimension of the set the points are drawn from.

    For points of a Poisson process in m dimensions, ``E log T_k = psi(k)/m + const``
    with ``T_k`` the distance to the k-th nearest neighbour (Pettis et al. 1979; Levina
    & Bickel 2005 use all ``j < k``), so

        m = (psi(k2) - psi(k1)) / mean_i log(T_k2(i) / T_k1(i)),

    with ``k2`` capped at ``K/2`` (the neighbourhood stays local: a small set on a curve
    does not see the curve close; at least ``k1 + 1``, at most ``K - 1``). ``k1 = 2``
    rather than 1 so that the tie between the two neighbours of an evenly spaced curve
    cancels: 16 equally spaced points on a circle give 1.24 (with ``k1 = 1``: 2.7); random
    points on a circle 1.0-1.3, a 2-D Gaussian
    1.9-2.1 (K = 100-400), the standardised 8x8 digits about 7.5 (K = 1438). The value
    is real; :func:`classify_samples` rounds it. Needs ``K >= k1 + 2`` points; returns
    ``inf`` when every ``T_k2`` equals ``T_k1`` (a grid with many ties) and the ambient
    dimension is then the only bound."""
    from scipy.special import digamma

    pts = finite_array(points, "points")
    if pts.ndim != 2:
        raise InputError(f"points must have shape (K, d); got {pts.shape}")
    k1 = integer(k1, "k1", 1, 10**6)
    if pts.shape[0] < k1 + 2:
        raise InputError(
            f"points must hold at least k1 + 2 = {k1 + 2} points to estimate a dimension; "
            f"got {pts.shape[0]}"
        )
    K = pts.shape[0]
    k2 = min(integer(k2, "k2", k1 + 1, 10**6), max(k1 + 1, K // 2), K - 1)
    T = _knn(pts, k2)[1]
    t1, t2 = T[:, k1 - 1], T[:, k2 - 1]
    ok = t1 > 0  # duplicated points carry no scale information
    if not ok.any():
        raise InputError("points are all duplicated; no dimension can be estimated")
    r = float(np.mean(np.log(t2[ok] / t1[ok])))
    return math.inf if r <= 0 else float((digamma(k2) - digamma(k1)) / r)


def refine_fixed_points(
    model: ScoreModel,
    y,
    delta: float,
    *,
    tol: float = 1e-10,
    max_iter: int = 1000,
    atol: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Iterate the denoiser ``y <- E[x0 | y]`` at noise ``delta`` (a fixed point is a
    critical point of ``log p_delta``; the iteration climbs it).

    A point stops once its last update is at most ``atol + tol (1 + |y|)``; at most
    ``max_iter`` iterations (``max_iter = 0``: no iteration; the update one iteration would
    make is measured without moving the points). Returns ``(points, moved)``, ``moved``
    the size of the last update of each point: a point with ``moved`` above its threshold
    has not converged (:func:`fixed_point_converged`). On a trained network, below the
    noise levels it was trained on, the iteration need not converge: it can drift along
    the learned manifold (docs/association.md)."""
    dl = float(positive(delta, "delta"))
    tol = float(positive(tol, "tol", allow_zero=True))
    atol = float(positive(atol, "atol", allow_zero=True))
    max_iter = integer(max_iter, "max_iter", 0, 10**7)
    y = as_points(y, int(model.dim), "y", dtype=np.float64).copy()
    if max_iter == 0:
        return y, np.linalg.norm(model.denoise(y, dl) - y, axis=1)
    moved = np.full(y.shape[0], np.inf)
    active = np.ones(y.shape[0], dtype=bool)
    for _ in range(max_iter):
        if not active.any():
            break
        new = model.denoise(y[active], dl)
        step = np.linalg.norm(new - y[active], axis=1)
        y[active] = new
        moved[active] = step
        active[active] = step > atol + tol * (1 + np.linalg.norm(new, axis=1))
    return y, moved


def fixed_point_converged(points, moved, *, tol: float = 1e-10, atol: float = 0.0) -> np.ndarray:
    """Which points of :func:`refine_fixed_points` met its criterion,
    ``moved <= atol + tol (1 + |y|)``."""
    pts = np.asarray(points, dtype=np.float64)
    return np.asarray(moved) <= atol + tol * (1 + np.linalg.norm(pts, axis=1))


def deduplicate(points, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy clustering: ``(unique points, label of each input point)``; points within
    ``radius`` of an earlier representative share its label."""
    pts = finite_array(points, "points")
    if pts.ndim != 2:
        raise InputError(f"points must have shape (N, d); got {pts.shape}")
    r = float(positive(radius, "radius"))
    # representatives grow in place (no list re-stacked into an array per point)
    reps = np.empty_like(pts)
    k = 0
    labels = np.empty(pts.shape[0], dtype=np.int64)
    for i, p in enumerate(pts):
        if k:
            dist = np.linalg.norm(reps[:k] - p, axis=1)
            j = int(np.argmin(dist))
            if dist[j] <= r:
                labels[i] = j
                continue
        labels[i] = k
        reps[k] = p
        k += 1
    return reps[:k].copy(), labels


@dataclass(frozen=True)
class Attractors:
    """End points of deterministic generation, refined and deduplicated.

    ``converged[i]``: the refinement of end point ``i`` met the tolerance within
    ``max_iter`` iterations (its last update at most ``refine_tol * scale``); ``residual``:
    the size of that last update. Points that did not converge are still deduplicated
    and counted: look at them before reading their attractor as a fixed point."""

    points: np.ndarray  # (A, d) unique attractors
    counts: np.ndarray  # (A,) how many samples ended at each
    stable: np.ndarray  # (A,) all score-Jacobian eigenvalues < 0
    top_eigenvalue: np.ndarray  # (A,)
    samples: np.ndarray  # (N, d) the refined end points
    labels: np.ndarray  # (N,) attractor index of each sample
    delta: float
    converged: np.ndarray  # (N,) refinement met its tolerance
    residual: np.ndarray  # (N,) size of the last refinement update

    @property
    def n_unconverged(self) -> int:
        """How many end points the refinement left unconverged."""
        return int(np.sum(~self.converged))


_END_ROUNDING = 1e-12
"""Relative distance within which a ``delta_end`` counts as the process's end point."""


def end_delta(
    process: Process | str, delta_end: float | None, default: float, who: str = "find_attractors"
) -> float:
    """The final noise level of a search on ``process``: ``delta_end`` if given (an
    :class:`InputError` naming it and the valid range if the process does not reach it),
    else ``default``, raised to the process's smallest noise level with a warning (never
    silently) when it lies below."""
    proc = get_process(process)
    lo, hi = float(proc.delta_min), float(proc.delta_max)
    if delta_end is not None:
        de = float(positive(delta_end, "delta_end"))
        # the process's own end points come out of exp/log with a few ulps of rounding
        # (VE's sigma_min = 0.01 gives delta_min = 1.0000000000000009e-4): a delta_end that
        # names an end point up to that rounding is that end point, not out of range
        if abs(de - lo) <= _END_ROUNDING * lo:
            de = lo
        elif abs(de - hi) <= _END_ROUNDING * hi:
            de = hi
        if not lo <= de <= hi:
            raise InputError(
                f"delta_end must lie in [{lo:.4g}, {hi:.4g}], the noise levels that {proc} "
                f"reaches; got {de:.4g} (a smaller delta_end needs a process with a smaller "
                "delta_min, e.g. process='edm' reaches 4e-06)"
            )
        return de
    de = float(default)
    if de < lo:
        hint = "" if lo <= 4.0001e-6 else "process='edm' (delta_min 4e-06), "
        warnings.warn(
            f"{who}: the default delta_end = {de:.3g} lies below the smallest noise level "
            f"of {proc}, {lo:.3g}; the search stops at {lo * 1.0001:.4g}, where memories "
            f"closer than about {2 * math.sqrt(lo):.3g} merge into one attractor. Use "
            f"{hint}a process with a smaller delta_min, or pass delta_end explicitly.",
            UserWarning,
            stacklevel=3,
        )
        return lo * 1.0001
    return min(de, hi)


def find_attractors(
    model: ScoreModel,
    n: int,
    rng: np.random.Generator,
    *,
    process: Process | str = "edm",
    n_steps: int = 60,
    delta_end: float | None = None,
    scale: float | None = None,
    x_start=None,
    dedup: float = 0.05,
    check_stability: bool = True,
    refine_tol: float = 1e-8,
    max_iter: int = 1000,
    warn: bool = True,
) -> Attractors:
    """Run ``n`` probability-flow (Heun) trajectories in ONE sampler call down to noise
    ``delta_end``, refine the end points with the iterated denoiser there, deduplicate
    within ``dedup * scale`` (``scale``: the training set's nearest-neighbour spacing when
    the model is an :class:`Empirical`, else 1) and test stability by the Jacobian.

    ``delta_end`` defaults to ``(0.05 scale)^2``; on the default process ``edm``
    (``delta_min = 4e-6``) that is reached for spacings down to 0.04. A ``delta_end``
    outside the process's range raises :class:`InputError`; a default below it is raised
    to ``delta_min`` with a ``UserWarning`` (memories closer than ``2 sqrt(delta_min)``
    then merge).

    Refinement: a point stops when its last update is at most ``refine_tol * scale``, after
    at most ``max_iter`` iterations (0: no refinement, the sampler's end points are kept
    and only the update one iteration would make is measured). ``Attractors.converged``
    flags the points that met the tolerance. On a trained network the iteration at noise
    levels below its training range can drift instead of converging: keep ``max_iter``
    small there and check ``converged``. Refinement that leaves points unconverged warns
    with :class:`~physdiff.errors.ConvergenceWarning` (``warn=False``: silent; no
    refinement asked, ``max_iter = 0``, never warns)."""
    from .sampling import sample

    proc = get_process(process)
    if scale is None:
        scale = (
            nearest_neighbour_spacing(model.points)
            if isinstance(model, Empirical) and model.n_points >= 2
            else 1.0
        )
    scale = float(positive(scale, "scale"))
    refine_tol = float(positive(refine_tol, "refine_tol"))
    max_iter = integer(max_iter, "max_iter", 0, 10**7)
    delta_end = end_delta(proc, delta_end, (0.05 * scale) ** 2)
    t_end = float(proc.time_of_delta(delta_end))
    out = sample(
        model, n, rng, method="heun", process=proc, n_steps=n_steps, t_end=t_end, x_start=x_start
    )
    atol = refine_tol * scale
    y, moved = refine_fixed_points(model, out.y, delta_end, tol=0.0, atol=atol, max_iter=max_iter)
    converged = fixed_point_converged(y, moved, tol=0.0, atol=atol)
    if max_iter > 0 and warn and not converged.all():
        bad = ~converged
        warnings.warn(
            f"find_attractors: {int(bad.sum())} of {converged.size} end points did not "
            f"converge in max_iter={max_iter} refinement steps (last update up to "
            f"{float(np.max(moved[bad])):.3g} > {atol:.3g}; |y| up to "
            f"{float(np.max(np.linalg.norm(y[bad], axis=1))):.3g}); they are flagged in "
            "Attractors.converged",
            ConvergenceWarning,
            stacklevel=2,
        )
    reps, labels = deduplicate(y, float(positive(dedup, "dedup")) * scale)
    counts = np.bincount(labels, minlength=reps.shape[0])
    if check_stability and hasattr(model, "score_jacobian"):
        top = np.array(
            [np.linalg.eigvalsh(0.5 * (J + J.T))[-1] for J in model.score_jacobian(reps, delta_end)]
        )
    else:
        top = np.full(reps.shape[0], np.nan)
    return Attractors(reps, counts, top < 0, top, y, labels, float(delta_end), converged, moved)


# ---------------------------------------------------------------------------------------
# classification of generated samples
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Classification:
    """Fractions of memorised / spurious / generalised samples with binomial standard
    errors; ``labels``: 0 memorised, 1 spurious, 2 generalised. ``intrinsic_dim`` and
    ``chance_neighbours`` (the Poisson mean ``lambda``) are those behind the default
    ``min_neighbours`` (``nan`` when ``min_neighbours`` was given)."""

    labels: np.ndarray
    fractions: dict
    stderr: dict
    spacing: float
    delta_m: float
    delta_s: float
    min_neighbours: int
    intrinsic_dim: float
    chance_neighbours: float

    LABELS = ("memorised", "spurious", "generalised")


def chance_neighbours(N: int, K: int, c_s: float, intrinsic_dim: float) -> float:
    """Upper bound on the expected number of the other ``N - 1`` samples within
    ``c_s s`` of a sample when the N samples are spread like the data:
    ``lambda = (N - 1) min(1, (2 c_s)^m / K)``, ``m`` the intrinsic dimension.

    A ball of radius ``s/2`` around each of K points whose nearest neighbours are ``s``
    apart are disjoint, so on a uniform m-dimensional set each holds at most ``1/K`` of the
    mass and a ball of radius ``c_s s`` at most ``(2 c_s)^m / K``; equal for points evenly
    spaced on a curve (m = 1). For K points drawn at random from the data, with ``s`` their
    median nearest-neighbour distance, the mass is about ``ln 2 c_s^m / K``, smaller by
    ``2^m / ln 2``: the bound is conservative there."""
    m = float(positive(intrinsic_dim, "intrinsic_dim"))
    return (N - 1) * min(1.0, (2 * c_s) ** m / K)


def classify_samples(
    samples,
    train,
    *,
    c_m: float = 0.25,
    c_s: float = 0.25,
    min_neighbours: int | None = None,
    intrinsic_dim: float | None = None,
    false_rate: float = 0.01,
) -> Classification:
    """Memorised if the nearest training point is within ``delta_m = c_m * s`` (``s`` the
    training set's median nearest-neighbour spacing; Euclidean distance, for images on
    the standardised pixels); spurious if not memorised but at least ``min_neighbours``
    other *non-memorised* samples lie within ``delta_s = c_s * s`` (memorised samples
    collapse onto a training point, not onto it); generalised otherwise.

    ``min_neighbours`` corrects for chance: by default it is the smallest count that a
    Poisson number of mean ``lambda`` (:func:`chance_neighbours`, the expected number of
    other samples within ``delta_s`` if the N samples were spread like the data, from N,
    the number K of training points and the intrinsic dimension m) reaches with
    probability below ``false_rate``, and at least 2. Fresh samples of the data
    distribution that are not memorised are then called spurious at a rate of at most
    about ``false_rate`` (1%).

    ``intrinsic_dim``: m; by default :func:`intrinsic_dimension` of the training set,
    rounded to an integer and clipped to ``[1, d]`` (a manifold's dimension is an
    integer; rounding absorbs the estimator's bias on evenly spaced sets). With fewer
    than 4 training points no estimate is possible and m = 1 is used, the choice that
    calls the fewest samples spurious: pass ``intrinsic_dim`` (or ``min_neighbours``)
    for such sets."""
    x = finite_array(samples, "samples")
    tr = finite_array(train, "train")
    if x.ndim != 2 or tr.ndim != 2 or x.shape[1] != tr.shape[1]:
        raise InputError(
            f"samples and train must be (N, d) and (K, d) with the same d; got "
            f"{x.shape} and {tr.shape}"
        )
    if tr.shape[0] < 2:
        raise InputError("train must hold at least two points")
    c_m = float(positive(c_m, "c_m"))
    c_s = float(positive(c_s, "c_s"))
    false_rate = float(positive(false_rate, "false_rate"))
    if false_rate >= 1:
        raise DomainError(f"false_rate must lie in (0, 1); got {false_rate}")
    s = nearest_neighbour_spacing(tr)
    dm, ds = c_m * s, c_s * s
    N, d = x.shape
    K = tr.shape[0]
    m_used, lam = math.nan, math.nan
    if min_neighbours is None:
        from scipy.stats import poisson

        if intrinsic_dim is not None:
            m_used = float(positive(intrinsic_dim, "intrinsic_dim"))
        elif K >= 4:
            est = intrinsic_dimension(tr)
            m_used = float(min(max(round(est), 1), d)) if math.isfinite(est) else float(d)
        else:
            m_used = 1.0
        lam = chance_neighbours(N, K, c_s, m_used)
        min_neighbours = max(2, int(poisson.isf(false_rate, lam)) + 1)
    elif intrinsic_dim is not None:
        raise InputError("give either min_neighbours or intrinsic_dim, not both")
    min_neighbours = integer(min_neighbours, "min_neighbours", 1, 10**9)
    # centred: Empirical.nearest picks its candidate by the norm expansion, which
    # cancels for sets far from the origin (its distance is then recomputed directly)
    mu = tr.mean(axis=0)
    _, dist = Empirical(tr - mu).nearest(x - mu)
    mem = dist <= dm
    # neighbours among the non-memorised samples only
    neigh = np.zeros(N, dtype=np.int64)
    neigh[~mem] = _count_within(x[~mem], ds)
    spur = ~mem & (neigh >= min_neighbours)
    labels = np.where(mem, 0, np.where(spur, 1, 2))
    frac = {name: float(np.mean(labels == k)) for k, name in enumerate(Classification.LABELS)}
    se = {k: math.sqrt(max(v * (1 - v), 1.0 / N) / N) for k, v in frac.items()}
    return Classification(labels, frac, se, s, dm, ds, min_neighbours, m_used, lam)


# ---------------------------------------------------------------------------------------
# the attractors of one model, classified (``physdiff attractors``)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttractorReport:
    """What :func:`attractor_report` found: the search's settings and counts, the
    classification of the end points (``None`` without a training set) and one
    JSON-ready row per attractor, most visited first (``count``, ``stable``, the score
    Jacobian's ``top_eigenvalue``, ``point`` and, with a training set, its ``class``,
    ``nearest_training_point`` and ``distance``)."""

    dim: int
    n: int
    process: str
    steps: int
    delta_end: float
    scale: float
    dedup_radius: float
    n_stable: int
    max_iter: int
    n_unconverged: int
    classification: dict | None
    attractors: tuple
    note: str = ""

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("dim", "n", "process", "steps", "delta_end")}
        out.update(scale=self.scale, dedup_radius=self.dedup_radius)
        out.update(n_attractors=len(self.attractors), n_stable=self.n_stable)
        out.update(max_iter=self.max_iter, n_unconverged=self.n_unconverged)
        if self.classification is not None:
            out["classification"] = dict(self.classification)
        out["attractors"] = [dict(a) for a in self.attractors]
        if self.note:
            out["note"] = self.note
        return out


def _finite_or_none(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def attractor_report(
    model,
    train=None,
    *,
    n: int = 512,
    seed: int = 0,
    process: str = "edm",
    steps: int = 60,
    delta_end: float | None = None,
    dedup: float = 0.05,
    c_m: float = 0.25,
    c_s: float = 0.25,
    min_neighbours: int | None = None,
    max_iter: int = 1000,
    refine_tol: float = 1e-8,
) -> AttractorReport:
    """The attractors of deterministic generation (:func:`find_attractors` with the
    training set's nearest-neighbour spacing ``s`` as scale; 1 without one) and the
    classification of the refined end points against ``train``
    (:func:`classify_samples`; docs/theory.md section 5). The sampler's generator is
    ``numpy.random.default_rng([seed, 1])``. A warning of the search becomes the
    report's ``note``."""
    scale = nearest_neighbour_spacing(train) if train is not None else 1.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        att = find_attractors(
            model,
            n,
            np.random.default_rng([seed, 1]),
            process=process,
            n_steps=steps,
            delta_end=delta_end,
            scale=scale,
            dedup=dedup,
            max_iter=max_iter,
            refine_tol=refine_tol,
        )
    notes = []
    if delta_end is None and att.delta > 1.001 * (0.05 * scale) ** 2:
        notes.append(
            f"delta_end = (0.05 s)^2 = {(0.05 * scale) ** 2:.3g} is below the smallest noise "
            f"of {process}; the search stopped at {att.delta:.3g}, where memories closer "
            f"than about {2 * math.sqrt(att.delta):.3g} merge"
            + (" (process edm reaches 4e-06)" if process != "edm" else "")
        )
    else:  # any other warning of the search is passed on as a note
        notes += [str(c.message) for c in caught if issubclass(c.category, UserWarning)]
    if att.n_unconverged:
        notes.append(
            f"{att.n_unconverged} of {n} end points did not converge within max_iter = "
            f"{max_iter} denoiser iterations (last update above {refine_tol:g} s); on a trained "
            "network (float32) raise refine_tol to about 1e-5; the iteration can also "
            "drift along the learned manifold: try a small max_iter, or 0"
        )
    cls = labels = nearest = dist = None
    if train is not None:
        cl = classify_samples(att.samples, train, c_m=c_m, c_s=c_s, min_neighbours=min_neighbours)
        labels = cl.labels
        cls = {
            "fractions": cl.fractions,
            "stderr": cl.stderr,
            "spacing": cl.spacing,
            "delta_m": cl.delta_m,
            "delta_s": cl.delta_s,
            "min_neighbours": cl.min_neighbours,
            "intrinsic_dim": _finite_or_none(cl.intrinsic_dim),
            "chance_neighbours": _finite_or_none(cl.chance_neighbours),
        }
        nearest, dist = Empirical(train).nearest(att.points)
    rows = []
    for i in np.argsort(-att.counts, kind="stable"):
        row: dict = {
            "count": int(att.counts[i]),
            "stable": bool(att.stable[i]),
            "top_eigenvalue": _finite_or_none(att.top_eigenvalue[i]),
            "point": [float(v) for v in att.points[i]],
        }
        if labels is not None:
            lab = np.bincount(labels[att.labels == i], minlength=3)
            row["class"] = Classification.LABELS[int(np.argmax(lab))]
            row["nearest_training_point"] = int(nearest[i])
            row["distance"] = float(dist[i])
        rows.append(row)
    return AttractorReport(
        int(model.dim),
        int(n),
        process,
        int(steps),
        att.delta,
        scale,
        dedup * scale,
        int(np.sum(att.stable)),
        int(max_iter),
        att.n_unconverged,
        cls,
        tuple(rows),
        "; ".join(notes),
    )
