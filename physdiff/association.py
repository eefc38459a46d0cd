"""Diffusion models as associative memories (THEORY.md section 5; Pham, Raya, Negri, Zaki,
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
memorised but at least ``min_neighbours`` other generated samples collapse onto it within
``delta_s``, and *generalised* otherwise; both thresholds are multiples of the training
set's median nearest-neighbour spacing.

**Basins.** The basin of a point ``a`` extends to the largest noise level at which
noising ``a`` forward and generating back returns to ``a`` (within ``delta_m``) with
probability at least 0.9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import as_points, finite_array, integer, positive
from .ensembles.base import ScoreModel
from .ensembles.empirical import Empirical
from .errors import DomainError, InputError
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
    "Attractors",
    "find_attractors",
    "refine_fixed_points",
    "deduplicate",
    "Classification",
    "classify_samples",
    "Basin",
    "basin_size",
]


# ---------------------------------------------------------------------------------------
# energies
# ---------------------------------------------------------------------------------------
def dam_energy(y, patterns, beta) -> np.ndarray:
    """``E(y) = -(1/beta) log sum_mu exp(-beta |y - xi_mu|^2)`` (streaming kernel)."""
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
    """The ``beta`` at which two equal memories at ``distance`` merge: ``beta D^2 = 2``."""
    D = float(positive(distance, "distance"))
    return 2.0 / (D * D)


def two_memory_curvature(beta, distance) -> float:
    """``E''`` at the midpoint of two equal memories: ``2 - beta D^2`` (positive: merged)."""
    return 2.0 - float(positive(beta, "beta")) * float(positive(distance, "distance")) ** 2


def circle_energy(R, beta) -> np.ndarray:
    """Continuum energy of patterns uniform on the unit circle at radius ``R``:
    ``R^2 + 1 - (1/beta) log I0(2 beta R)`` (``log I0`` via the scaled Bessel function)."""
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
def nearest_neighbour_spacing(points) -> float:
    """Median distance from each point to its nearest other point (the scale for every
    threshold here)."""
    pts = finite_array(points, "points")
    if pts.ndim != 2 or pts.shape[0] < 2:
        raise InputError(f"points must have shape (K, d) with K >= 2; got {pts.shape}")
    sq = np.sum(pts * pts, axis=1)
    out = np.empty(pts.shape[0])
    step = max(1, 2**22 // pts.shape[0])
    for s in range(0, pts.shape[0], step):
        q = pts[s : s + step]
        d2 = sq[s : s + step, None] - 2 * q @ pts.T + sq[None]
        d2[np.arange(q.shape[0]), np.arange(s, s + q.shape[0])] = np.inf
        out[s : s + step] = np.sqrt(np.maximum(d2.min(axis=1), 0))
    return float(np.median(out))


def refine_fixed_points(
    model: ScoreModel, y, delta: float, *, tol: float = 1e-10, max_iter: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Iterate the denoiser ``y <- E[x0 | y]`` at noise ``delta`` (a fixed point is a
    critical point of ``log p_delta``; the iteration climbs it). Returns ``(points, moved)``
    with the size of the last update of each point."""
    dl = float(positive(delta, "delta"))
    y = as_points(y, int(model.dim), "y", dtype=np.float64).copy()
    moved = np.full(y.shape[0], np.inf)
    active = np.ones(y.shape[0], dtype=bool)
    for _ in range(integer(max_iter, "max_iter", 1, 10**7)):
        if not active.any():
            break
        new = model.denoise(y[active], dl)
        step = np.linalg.norm(new - y[active], axis=1)
        y[active] = new
        moved[active] = step
        active[active] = step > tol * (1 + np.linalg.norm(new, axis=1))
    return y, moved


def deduplicate(points, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy clustering: ``(unique points, label of each input point)``; points within
    ``radius`` of an earlier representative share its label."""
    pts = finite_array(points, "points")
    r = float(positive(radius, "radius"))
    reps: list[np.ndarray] = []
    labels = np.empty(pts.shape[0], dtype=np.int64)
    for i, p in enumerate(pts):
        if reps:
            dist = np.linalg.norm(np.asarray(reps) - p, axis=1)
            j = int(np.argmin(dist))
            if dist[j] <= r:
                labels[i] = j
                continue
        labels[i] = len(reps)
        reps.append(p)
    return np.asarray(reps), labels


@dataclass(frozen=True)
class Attractors:
    """End points of deterministic generation, refined and deduplicated."""

    points: np.ndarray  # (A, d) unique attractors
    counts: np.ndarray  # (A,) how many samples ended at each
    stable: np.ndarray  # (A,) all score-Jacobian eigenvalues < 0
    top_eigenvalue: np.ndarray  # (A,)
    samples: np.ndarray  # (N, d) the refined end points
    labels: np.ndarray  # (N,) attractor index of each sample
    delta: float


def find_attractors(
    model: ScoreModel,
    n: int,
    rng: np.random.Generator,
    *,
    process: Process | str = "ve",
    n_steps: int = 60,
    delta_end: float | None = None,
    scale: float | None = None,
    x_start=None,
    dedup: float = 0.05,
    check_stability: bool = True,
) -> Attractors:
    """Run ``n`` probability-flow (Heun) trajectories in ONE sampler call down to noise
    ``delta_end``, refine the end points with the iterated denoiser there, deduplicate
    within ``dedup * scale`` (``scale``: the training set's nearest-neighbour spacing when
    the model is an :class:`Empirical`, else 1) and test stability by the Jacobian."""
    from .sampling import sample

    proc = get_process(process)
    if scale is None:
        scale = (
            nearest_neighbour_spacing(model.points)
            if isinstance(model, Empirical) and model.n_points >= 2
            else 1.0
        )
    scale = float(positive(scale, "scale"))
    if delta_end is None:
        delta_end = max((0.05 * scale) ** 2, proc.delta_min * 1.0001)
    t_end = float(proc.time_of_delta(delta_end))
    out = sample(
        model, n, rng, method="heun", process=proc, n_steps=n_steps, t_end=t_end, x_start=x_start
    )
    y, _ = refine_fixed_points(model, out.y, delta_end)
    reps, labels = deduplicate(y, float(positive(dedup, "dedup")) * scale)
    counts = np.bincount(labels, minlength=reps.shape[0])
    if check_stability and hasattr(model, "score_jacobian"):
        top = np.array(
            [np.linalg.eigvalsh(0.5 * (J + J.T))[-1] for J in model.score_jacobian(reps, delta_end)]
        )
    else:
        top = np.full(reps.shape[0], np.nan)
    return Attractors(reps, counts, top < 0, top, y, labels, float(delta_end))


# ---------------------------------------------------------------------------------------
# classification of generated samples
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Classification:
    """Fractions of memorised / spurious / generalised samples with binomial standard
    errors; ``labels``: 0 memorised, 1 spurious, 2 generalised."""

    labels: np.ndarray
    fractions: dict
    stderr: dict
    spacing: float
    delta_m: float
    delta_s: float
    min_neighbours: int

    LABELS = ("memorised", "spurious", "generalised")


def classify_samples(
    samples, train, *, c_m: float = 0.25, c_s: float = 0.25, min_neighbours: int | None = None
) -> Classification:
    """Memorised if the nearest training point is within ``delta_m = c_m * s`` (``s`` the
    training set's median nearest-neighbour spacing; Euclidean distance, for images on
    the standardised pixels); spurious if not memorised but at least ``min_neighbours``
    other samples lie within ``delta_s = c_s * s``; generalised otherwise.

    ``min_neighbours`` corrects for the number N of generated samples: by default it is
    the smallest count that chance alone reaches with probability below 1% (the Poisson
    tail of ``lambda = (N - 1) (c_s / 2)^d``, the expected number of other samples within
    ``delta_s`` if the N samples were spread like the training set, where a ball of radius
    ``s/2`` holds about one point per training point), and at least 2."""
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
    s = nearest_neighbour_spacing(tr)
    dm, ds = c_m * s, c_s * s
    N, d = x.shape
    if min_neighbours is None:
        from scipy.stats import poisson

        lam = (N - 1) * (c_s / 2) ** d
        min_neighbours = max(2, int(poisson.isf(0.01, lam)) + 1)
    min_neighbours = integer(min_neighbours, "min_neighbours", 1, 10**9)
    _, dist = Empirical(tr).nearest(x)
    mem = dist <= dm
    sq = np.sum(x * x, axis=1)
    neigh = np.empty(N, dtype=np.int64)
    step = max(1, 2**22 // N)
    for i in range(0, N, step):
        q = x[i : i + step]
        d2 = sq[i : i + step, None] - 2 * q @ x.T + sq[None]
        neigh[i : i + step] = np.sum(d2 <= ds * ds, axis=1) - 1
    spur = ~mem & (neigh >= min_neighbours)
    labels = np.where(mem, 0, np.where(spur, 1, 2))
    frac = {name: float(np.mean(labels == k)) for k, name in enumerate(Classification.LABELS)}
    se = {k: math.sqrt(max(v * (1 - v), 1.0 / N) / N) for k, v in frac.items()}
    return Classification(labels, frac, se, s, dm, ds, min_neighbours)


# ---------------------------------------------------------------------------------------
# basins
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Basin:
    """Recovery probability of a point against the noise level; ``delta_basin``: the largest
    noise level with probability >= ``level``; ``radius = sqrt(d * delta_basin)``."""

    deltas: np.ndarray
    probability: np.ndarray
    stderr: np.ndarray
    delta_basin: float
    radius: float
    level: float


def basin_size(
    model: ScoreModel,
    point,
    deltas,
    rng: np.random.Generator,
    *,
    n_trials: int = 64,
    tolerance: float | None = None,
    process: Process | str = "ve",
    n_steps: int = 40,
    level: float = 0.9,
    delta_end: float | None = None,
) -> Basin:
    """Noise ``point`` forward to each ``delta`` (``y = a + sqrt(delta) z``), generate back
    deterministically (Heun) to ``delta_end``, refine with the denoiser and count returns
    within ``tolerance`` (default: a quarter of the nearest-neighbour spacing for an
    :class:`Empirical` model). All trials at all noise levels run as one batch per level."""
    from .sampling import sample

    proc = get_process(process)
    d = int(model.dim)
    a = finite_array(point, "point").reshape(d)
    dls = np.sort(positive(np.atleast_1d(deltas), "deltas").reshape(-1))
    n_trials = integer(n_trials, "n_trials", 1, 10**7)
    level = float(positive(level, "level"))
    if level > 1:
        raise DomainError(f"level must lie in (0, 1]; got {level}")
    if tolerance is None:
        if not isinstance(model, Empirical) or model.n_points < 2:
            raise InputError("tolerance must be given unless model is an Empirical set")
        tolerance = 0.25 * nearest_neighbour_spacing(model.points)
    tol = float(positive(tolerance, "tolerance"))
    if delta_end is None:
        delta_end = max((0.2 * tol) ** 2, proc.delta_min * 1.0001)
    prob, se = np.empty(dls.size), np.empty(dls.size)
    for i, dl in enumerate(dls):
        if dl <= delta_end:
            prob[i], se[i] = 1.0, 0.0
            continue
        t0 = float(proc.time_of_delta(min(dl, proc.delta_max)))
        x0 = float(proc.alpha(t0)) * (a + math.sqrt(dl) * rng.standard_normal((n_trials, d)))
        t1 = float(proc.time_of_delta(delta_end))
        out = sample(
            model,
            n_trials,
            rng,
            method="heun",
            process=proc,
            times=np.linspace(t0, t1, n_steps + 1),
            x_start=x0,
        )
        y, _ = refine_fixed_points(model, out.y, delta_end, max_iter=200)
        ok = np.linalg.norm(y - a, axis=1) <= tol
        prob[i] = ok.mean()
        se[i] = math.sqrt(max(prob[i] * (1 - prob[i]), 1.0 / n_trials) / n_trials)
    good = prob >= level
    k = 0
    while k < dls.size and good[k]:
        k += 1
    db = float(dls[k - 1]) if k > 0 else 0.0
    return Basin(dls, prob, se, db, math.sqrt(d * db), level)
