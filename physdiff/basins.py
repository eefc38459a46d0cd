"""Basins of attraction of memories: two definitions, their closed forms and the simulation
(docs/theory.md section 5; derivations in ``theory/association.py``).

A memory ``a`` (a training point of the exact empirical score, or any point of a score
model) is noised forward to ``y = a + sqrt(delta) z`` (VE frame) and generated back to the
end of the reverse process; its **recovery probability** is the chance of ending at ``a``.
The literature uses two generators, so two definitions:

**(i) Stochastic reversal** (reverse SDE). Run from ``y`` at noise ``delta``, the reverse
SDE of the exact empirical score samples the posterior ``p(x0 | y)`` over the training
points (the time reversal reproduces the forward process's conditional law), so the
recovery probability is the posterior weight's mean over the forward noise:

    P_rev(a, delta) = E_z[w_a(a + sqrt(delta) z)],  w_a(y) = softmax_mu(-|y - a_mu|^2/(2 delta))_a

Two memories at distance ``D``, ``kappa = D / sqrt(delta)``: the log-odds of ``a`` is
``kappa^2/2 + kappa u`` with ``u ~ N(0, 1)`` (only the component of ``z`` along ``a - b``
enters), and the substitution ``u = v - kappa/2`` turns the failure probability into a
symmetric integral,

    1 - P_rev = (e^{-kappa^2/8} / 2) E_v[ sech(kappa v / 2) ],   v ~ N(0, 1),

(:func:`two_memory_reversal_recovery`, by adaptive quadrature): ``P_rev = 1/2 + kappa^2/8 +
O(kappa^4)`` at large noise and ``1 - P_rev ~ (pi/2) Phi(-kappa/2)`` at small noise.
``n`` memories: ``P_rev`` is an ``(n - 1)``-dimensional Gaussian integral (the projections
of ``z`` on ``a - a_mu``), evaluated by Monte Carlo over ``z`` with the weight itself as the
estimator (:func:`reversal_recovery`, Rao-Blackwellised: no sampler), and bracketed by
the pairwise results, ``1 - sum_b (1 - P_2(D_ab)) <= P_rev <= min_b P_2(D_ab)``.

**(ii) Deterministic flow** (probability-flow ODE). For two memories the reflection through
their bisector maps the memory set onto itself, so the flow field is tangent to the
bisector and no trajectory crosses it: the basin is the half-space nearer to ``a``,

    P_flow = Phi(D / (2 sqrt(delta)))        (:func:`two_memory_flow_recovery`).

``n`` memories: the basin is the Voronoi cell of ``a`` exactly when every bisector between
``a`` and a Voronoi neighbour is a mirror symmetry of the set (a regular simplex, equally
spaced points on a circle), and approximately otherwise (the flow's basins tend to the
Voronoi cells at small noise): :func:`flow_recovery` gives the Gaussian mass of the
Voronoi cell, by Monte Carlo, bracketed by ``1 - sum_b Phi(-D_ab/(2 sqrt delta)) <= P <=
min_b Phi(D_ab/(2 sqrt delta))``; for ``n`` memories on a regular simplex of side ``D``
it is the 1-D integral ``E_w[Phi(kappa/sqrt 2 + w)^(n - 1)]`` (:func:`simplex_flow_recovery`;
the projections are equicorrelated with correlation 1/2).

Ordering: ``p_a p_b / (p_a + p_b)`` lies between ``min(p_a, p_b)/2`` and ``min(p_a,
p_b)``, so for two memories ``Phi(-kappa/2) <= 1 - P_rev <= 2 Phi(-kappa/2)``: the
stochastic reversal loses a memory at most twice as often as the flow, and ``pi/2`` times
as often at small noise.

The simulation (:func:`basin_size`) runs either generator on any score model
(``sampler="ode"``: Heun on the probability-flow ODE; ``"sde"``: Euler-Maruyama on the
reverse SDE) and reports the recovery probability with binomial errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import finite_array, integer, positive, positive_grid
from .ensembles.base import ScoreModel
from .ensembles.empirical import Empirical
from .errors import DomainError, InputError, ShapeError
from .processes import Process, get_process

__all__ = [
    "SAMPLERS",
    "two_memory_flow_recovery",
    "two_memory_reversal_recovery",
    "two_memory_basin_delta",
    "simplex_flow_recovery",
    "Recovery",
    "reversal_recovery",
    "flow_recovery",
    "Basin",
    "basin_size",
]

SAMPLERS = {"ode": "heun", "sde": "euler-maruyama"}
"""``basin_size``'s generators: the probability-flow ODE (Heun) and the reverse SDE
(Euler-Maruyama)."""


def _kappa(delta, distance) -> np.ndarray:
    dl = positive(delta, "delta")
    dd = positive(distance, "distance")
    return np.sqrt(dd * dd / dl)


def _scalar(x):
    return float(x) if np.ndim(x) == 0 else x


# ---------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------
def two_memory_flow_recovery(delta, distance, *, complement: bool = False):
    """Recovery probability of the probability-flow ODE for two memories at ``distance``
    ``D``: ``Phi(D / (2 sqrt(delta)))`` (the bisector is invariant; module docstring);
    ``complement=True`` returns the loss probability ``Phi(-D/(2 sqrt delta))`` without
    cancellation. Vectorised (broadcast) over ``delta`` and ``distance``."""
    from scipy.special import ndtr

    sign = -1.0 if complement else 1.0
    return _scalar(ndtr(sign * 0.5 * _kappa(delta, distance)))


def _sech_mean(kappa: float) -> float:
    """``E_v[sech(kappa v / 2)]`` for ``v ~ N(0, 1)``: adaptive quadrature of the even
    integrand on ``v >= 0``, in the variable ``s = kappa v / 2`` once the sech is narrower
    than the Gaussian (``kappa > 2``); ``sech(s) = 2 e^-s / (1 + e^-2s)`` never overflows."""
    from scipy.integrate import quad

    if kappa == 0.0:
        return 1.0
    h = 2.0 / kappa if kappa > 2.0 else 1.0  # v = h s
    c = h / math.sqrt(2.0 * math.pi)
    a = 0.5 * kappa * h

    def f(s):
        v = h * s
        e = math.exp(-a * s)
        return c * math.exp(-0.5 * v * v) * 2.0 * e / (1.0 + e * e)

    val, _ = quad(f, 0.0, 40.0 / h if h < 1.0 else 40.0, limit=200, epsabs=1e-15, epsrel=1e-12)
    return 2.0 * val


def two_memory_reversal_recovery(delta, distance, *, complement: bool = False):
    """Recovery probability of the stochastic reversal (reverse SDE of the exact empirical
    score) for two memories at ``distance`` ``D``: the mean posterior weight
    ``E_z[w_a(a + sqrt(delta) z)] = 1 - (e^{-kappa^2/8}/2) E_v[sech(kappa v/2)]``,
    ``kappa = D/sqrt(delta)`` (module docstring; ``theory/association.py``);
    ``complement=True`` returns the loss probability ``(e^{-kappa^2/8}/2) E_v[...]`` itself
    (no cancellation at small noise). Vectorised (broadcast) over ``delta`` and
    ``distance``."""
    kap = _kappa(delta, distance)
    flat = kap.reshape(-1)
    loss = np.empty(flat.shape)
    for i, k in enumerate(flat):
        k = float(k)
        loss[i] = 0.5 * math.exp(-k * k / 8.0) * _sech_mean(k) if k < 80.0 else 0.0
    out = loss if complement else 1.0 - loss
    return _scalar(out.reshape(kap.shape))


def two_memory_basin_delta(distance, level: float = 0.9, *, sampler: str = "ode") -> float:
    """The noise level at which the two-memory recovery probability falls to ``level``:
    ``(D / (2 Phi^-1(level)))^2`` for the flow (``sampler="ode"``), the root of
    :func:`two_memory_reversal_recovery` for the stochastic reversal (``"sde"``). Both
    probabilities fall from 1 to 1/2 as the noise grows, so ``level <= 1/2`` gives
    ``inf`` (recovered at every noise level). ``level`` must lie in (0, 1)."""
    from scipy.optimize import brentq
    from scipy.special import ndtri

    dd = float(positive(distance, "distance"))
    lev = float(level)
    if not 0.0 < lev < 1.0:
        raise DomainError(f"level must lie in (0, 1); got {level!r}")
    _sampler(sampler)
    if lev <= 0.5:
        return math.inf
    if sampler == "ode":
        return (dd / (2.0 * float(ndtri(lev)))) ** 2

    def g(logk):
        return 1.0 - 0.5 * math.exp(-math.exp(2 * logk) / 8.0) * _sech_mean(math.exp(logk)) - lev

    logk = brentq(g, math.log(1e-8), math.log(79.0), xtol=1e-13)
    return (dd / math.exp(logk)) ** 2


def simplex_flow_recovery(delta, distance, n: int):
    """Flow recovery probability of one of ``n`` memories on a regular simplex of side
    ``D`` (every bisector is a mirror of the set, so the basin is the Voronoi cell):
    ``E_w[Phi(kappa/sqrt(2) + w)^(n - 1)]``, ``w ~ N(0, 1)``, ``kappa = D/sqrt(delta)``
    (Gauss-Hermite quadrature, 80 nodes); ``n = 2`` is ``Phi(kappa/2)``."""
    from scipy.special import ndtr

    n = integer(n, "n", 2, 10**6)
    kap = _kappa(delta, distance)
    x, wt = np.polynomial.hermite_e.hermegauss(80)
    wt = wt / wt.sum()
    vals = ndtr(kap[..., None] / math.sqrt(2.0) + x) ** (n - 1)
    return _scalar(np.sum(vals * wt, axis=-1))


# ---------------------------------------------------------------------------------------
# n memories
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recovery:
    """Recovery probability of one memory against the noise level (closed form or Monte
    Carlo over the forward noise): ``probability`` with its standard error ``stderr``
    (zero when ``exact``), and the pairwise bounds ``lower <= probability <= upper``
    (module docstring). ``definition``: ``"reversal"`` or ``"flow"``."""

    deltas: np.ndarray
    probability: np.ndarray
    stderr: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    exact: bool
    definition: str


def _memories(points, index):
    pts = finite_array(points, "points")
    if pts.ndim != 2 or pts.shape[0] < 2:
        raise ShapeError(f"points must have shape (n, d) with n >= 2; got {pts.shape}")
    k = integer(index, "index", 0, pts.shape[0] - 1)
    dist = np.linalg.norm(np.delete(pts, k, axis=0) - pts[k], axis=1)
    if np.any(dist == 0):
        raise InputError(f"points must be distinct; memory {k} has a duplicate")
    return pts, k, dist


def _recovery(points, index, deltas, rng, n_samples, definition):
    pts, k, dist = _memories(points, index)
    dls = positive_grid(deltas, "deltas")
    pair = two_memory_reversal_recovery if definition == "reversal" else two_memory_flow_recovery
    p2 = np.asarray(pair(dls[:, None], dist[None, :])).reshape(dls.size, dist.size)
    lower = np.maximum(1.0 - np.sum(1.0 - p2, axis=1), 0.0)
    upper = p2.min(axis=1)
    if pts.shape[0] == 2:
        p = upper.copy()
        return Recovery(dls, p, np.zeros_like(p), p.copy(), p.copy(), True, definition)
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    n_samples = integer(n_samples, "n_samples", 2, 10**8)
    emp = Empirical(pts)
    others = np.delete(np.arange(pts.shape[0]), k)
    j = int(np.argmin(dist))  # the nearest other memory: the control variate's pair
    pair_pts = Empirical(pts[[k, others[j]]])
    prob, se = np.empty(dls.size), np.empty(dls.size)
    for i, dl in enumerate(dls):
        y = pts[k] + math.sqrt(dl) * rng.standard_normal((n_samples, pts.shape[1]))
        if definition == "reversal":
            vals = emp.posterior(y, dl)[:, k]
            ctrl = pair_pts.posterior(y, dl)[:, 0]
        else:
            vals = (emp.nearest(y)[0] == k).astype(float)
            ctrl = (pair_pts.nearest(y)[0] == 0).astype(float)
        prob[i], se[i] = _control_variate_mean(vals, ctrl, float(p2[i, j]))
    return Recovery(dls, prob, se, lower, upper, False, definition)


def _control_variate_mean(vals: np.ndarray, ctrl: np.ndarray, ctrl_mean: float):
    """The difference estimator ``ctrl_mean + mean(vals - ctrl)`` and its standard error:
    ``ctrl`` is the same quantity for the pair (memory, nearest neighbour), whose mean is
    known in closed form. The difference is <= 0 on every draw (a third memory only takes
    weight or volume away), so the estimate never exceeds the pair's value, and at small
    noise it is zero on almost every draw, which removes the rare-event noise of the plain
    mean. The error is floored at ``1/n`` (no difference seen in ``n`` draws)."""
    n = vals.size
    diff = vals - ctrl
    return float(ctrl_mean + diff.mean()), max(float(diff.std(ddof=1)) / math.sqrt(n), 1.0 / n)


def reversal_recovery(
    points, index: int, deltas, rng: np.random.Generator | None = None, *, n_samples=20000
) -> Recovery:
    """Definition (i): the stochastic-reversal recovery probability of memory ``index`` of
    ``points`` (the exact empirical score's training set), ``E_z[w_a(a + sqrt(delta) z)]``.
    Two memories: the closed form (:func:`two_memory_reversal_recovery`); more: Monte
    Carlo over ``z`` (``n_samples`` per noise level, ``rng`` needed) of the weight itself,
    with the pair (memory, nearest neighbour) in closed form as control variate, and the
    pairwise bounds."""
    return _recovery(points, index, deltas, rng, n_samples, "reversal")


def flow_recovery(
    points, index: int, deltas, rng: np.random.Generator | None = None, *, n_samples=20000
) -> Recovery:
    """Definition (ii): the probability-flow recovery probability of memory ``index``.
    Two memories: ``Phi(D/(2 sqrt delta))``, exact; more: the Gaussian mass of the Voronoi
    cell of ``a`` (Monte Carlo, ``n_samples`` per noise level), exact when the bisectors
    of ``a`` with its Voronoi neighbours are mirror symmetries of the set and the
    small-noise limit otherwise (module docstring), with the pairwise bounds."""
    return _recovery(points, index, deltas, rng, n_samples, "flow")


# ---------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------
def _sampler(sampler: str) -> str:
    if sampler not in SAMPLERS:
        raise InputError(f"sampler must be one of {tuple(SAMPLERS)}; got {sampler!r}")
    return SAMPLERS[sampler]


@dataclass(frozen=True)
class Basin:
    """Recovery probability of a point against the noise level; ``delta_basin``: the largest
    noise level with probability >= ``level``; ``radius = sqrt(d * delta_basin)``;
    ``unconverged``: per noise level, the trials whose refinement did not meet its
    tolerance within ``max_iter`` iterations (counted as returned or not by their final
    position all the same); ``sampler``: ``"ode"`` (probability-flow ODE, definition (ii))
    or ``"sde"`` (reverse SDE, definition (i))."""

    deltas: np.ndarray
    probability: np.ndarray
    stderr: np.ndarray
    delta_basin: float
    radius: float
    level: float
    unconverged: np.ndarray
    sampler: str = "ode"


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
    refine_tol: float = 1e-8,
    max_iter: int = 200,
    sampler: str = "ode",
) -> Basin:
    """Noise ``point`` forward to each ``delta`` (``y = a + sqrt(delta) z``), generate back
    to ``delta_end`` with ``sampler`` (``"ode"``: Heun on the probability-flow ODE;
    ``"sde"``: Euler-Maruyama on the reverse SDE, which needs more ``n_steps`` for the same
    accuracy), refine with the denoiser and count returns within ``tolerance`` (default: a
    quarter of the nearest-neighbour spacing for an :class:`Empirical` model). All trials
    at one noise level run as one batch. The closed forms it is tested against are
    :func:`two_memory_flow_recovery` / :func:`flow_recovery` (``"ode"``) and
    :func:`two_memory_reversal_recovery` / :func:`reversal_recovery` (``"sde"``).

    ``delta_end`` defaults to ``(0.2 tolerance)^2`` (raised to the process's smallest noise
    level with a warning if it lies below; an explicit value outside the process's range
    raises :class:`InputError`). The refinement of a trial stops when its last update is
    at most ``refine_tol * tolerance``, after at most ``max_iter`` iterations (0: none);
    ``Basin.unconverged`` counts the trials that did not converge. On a trained network
    the iteration can drift (docs/association.md): use a small ``max_iter`` there."""
    from .association import (
        end_delta,
        fixed_point_converged,
        nearest_neighbour_spacing,
        refine_fixed_points,
    )
    from .sampling import sample

    method = _sampler(sampler)
    proc = get_process(process)
    d = int(model.dim)
    a = finite_array(point, "point").reshape(d)
    dls = np.sort(positive_grid(deltas, "deltas"))
    n_trials = integer(n_trials, "n_trials", 1, 10**7)
    n_steps = integer(n_steps, "n_steps", 1, 10**7)
    level = float(positive(level, "level"))
    if level > 1:
        raise DomainError(f"level must lie in (0, 1]; got {level}")
    if tolerance is None:
        if not isinstance(model, Empirical) or model.n_points < 2:
            raise InputError("tolerance must be given unless model is an Empirical set")
        tolerance = 0.25 * nearest_neighbour_spacing(model.points)
    tol = float(positive(tolerance, "tolerance"))
    atol = float(positive(refine_tol, "refine_tol")) * tol
    max_iter = integer(max_iter, "max_iter", 0, 10**7)
    delta_end = end_delta(proc, delta_end, (0.2 * tol) ** 2, who="basin_size")
    prob, se = np.empty(dls.size), np.empty(dls.size)
    unconverged = np.zeros(dls.size, dtype=np.int64)
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
            method=method,
            process=proc,
            times=np.linspace(t0, t1, n_steps + 1),
            x_start=x0,
        )
        y, moved = refine_fixed_points(
            model, out.y, delta_end, tol=0.0, atol=atol, max_iter=max_iter
        )
        unconverged[i] = int(np.sum(~fixed_point_converged(y, moved, tol=0.0, atol=atol)))
        ok = np.linalg.norm(y - a, axis=1) <= tol
        prob[i] = ok.mean()
        se[i] = math.sqrt(max(prob[i] * (1 - prob[i]), 1.0 / n_trials) / n_trials)
    good = prob >= level
    k = 0
    while k < dls.size and good[k]:
        k += 1
    db = float(dls[k - 1]) if k > 0 else 0.0
    return Basin(dls, prob, se, db, math.sqrt(d * db), level, unconverged, sampler)
