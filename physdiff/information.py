"""Information dynamics of class decisions (docs/theory.md section 6).

The conditional entropy of the class given the noisy state, ``H(C | y)`` (VE frame
``y = x0 + sqrt(delta) z``), falls from ``H(C)`` at high noise to 0 on clean data; its
rate locates the "decisions" of the generative process (Handke, Koulischer, Raya &
Ambrogioni 2025). Everything here is schedule free: a rate ``dH/d delta`` becomes a rate
in any process's time by ``dH/dt = dH/d delta * d delta/dt`` (:func:`rate_in_time`).

* Exact posteriors ``p(c | y)`` for ensembles with components (``GaussianMixture``).
* Decision problems over a partition of the classes: coarse (sum the posteriors over each
  group), pairwise (renormalise over two classes) and one-vs-rest.
* ``H(C | y)`` by Gauss-Hermite quadrature in 1-D (per component, all noise levels at once)
  and Monte Carlo in d-D with standard errors.
* The entropy rate three ways: finite differences of the Monte Carlo estimate; the
  score-gap identity ``dH(C | y)/d delta = 1/2 E |score(y | c) - score(y)|^2`` (nats; the
  class version of de Bruijn's identity, since ``I(C; y) = H(C) - H(C | y)``); and the
  online Bayes classifier along generated trajectories.
* The online classifier (exact for any pair of states): with the forward process Markov,
  ``p(c | y_s) = p(c | y_s, y_t) ∝ p(c | y_t) p(y_s | y_t, c)``, and the reverse kernel
  given the class is the forward bridge ``N(x0 + r (y_t - x0), v I)`` (``r = delta_s /
  delta_t``, ``v = delta_s (delta_t - delta_s)/delta_t``) averaged over ``x0 | y_t, c``:
  a Gaussian with mean ``m_c + r (y_t - m_c)`` (``m_c`` the conditional denoiser) and
  covariance ``v I + (1 - r)^2 Cov(x0 | y_t, c)``. With Gaussian components that
  covariance is known and the classifier is exact; for a network only ``v I`` is used
  (the DDPM kernel ``beta~_k`` of Ho et al. on consecutive steps).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._validate import as_points, finite_array, integer, positive, positive_grid
from .classes import ClassConditional, as_conditional
from .ensembles.mixture import GaussianMixture, _logsumexp, _softmax
from .errors import DomainError, InputError, ShapeError
from .processes import Process, get_process
from .sampling import StepRecord, StepRecorder

__all__ = [
    "Partition",
    "coarse",
    "pairwise",
    "one_vs_rest",
    "parse_partition",
    "class_posterior",
    "entropy",
    "conditional_entropy_quadrature",
    "entropy_rate_quadrature",
    "conditional_entropy_mc",
    "entropy_rate_score_gap",
    "entropy_rate_finite_difference",
    "rate_in_time",
    "local_maxima",
    "class_restricted_entropy_quadrature",
    "decision_entropies",
    "OnlineClassifier",
]


# ---------------------------------------------------------------------------------------
# decision problems
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    """A decision problem: ``groups`` are disjoint tuples of class indices; classes in no
    group are conditioned away (the posterior is renormalised over the groups' union)."""

    groups: tuple[tuple[int, ...], ...]
    n_classes: int
    name: str = ""

    def __post_init__(self):
        seen: set[int] = set()
        if len(self.groups) < 2:
            raise InputError(f"a partition needs at least two groups; got {self.groups!r}")
        for g in self.groups:
            if not g:
                raise InputError("every group of a partition must be non-empty")
            for c in g:
                if not 0 <= c < self.n_classes:
                    raise InputError(f"class index {c} out of range [0, {self.n_classes - 1}]")
                if c in seen:
                    raise InputError(f"class {c} appears in two groups: not a partition")
                seen.add(c)

    @property
    def matrix(self) -> np.ndarray:
        """``(K, G)`` 0/1 matrix mapping classes to groups."""
        m = np.zeros((self.n_classes, len(self.groups)))
        for j, g in enumerate(self.groups):
            m[list(g), j] = 1.0
        return m

    @property
    def union(self) -> np.ndarray:
        """The classes of the decision (the groups' union), in group order."""
        return np.concatenate([np.array(g, dtype=int) for g in self.groups])

    def group_posterior(self, post: np.ndarray) -> np.ndarray:
        """Posterior over the groups, renormalised over their union: ``(n, G)``,
        ``p(g | y, C in U) = sum_{k in g} p(k | y) / sum_{k in U} p(k | y)``.

        Never NaN for valid input: each row is scaled by its largest group mass before the
        division (subnormal masses keep their ratio), and a row with no mass at all on the
        union ``U`` (the point is certainly in a class outside the decision, or the masses
        underflowed) gets the uniform ``1/G``: the decision is uninformed there. Such a
        point has zero weight in the decision's conditional average (see
        :meth:`OnlineClassifier.entropy_profile`), so the convention does not bias it.
        """
        post = finite_array(post, "posteriors")
        if post.ndim != 2 or post.shape[1] != self.n_classes:
            raise ShapeError(f"posteriors must have shape (n, {self.n_classes}); got {post.shape}")
        if np.any(post < 0):
            raise InputError("posteriors must be non-negative")
        if not np.allclose(post.sum(axis=1), 1.0, atol=1e-8):
            raise InputError("posteriors must sum to one over the classes")
        g = post @ self.matrix
        top = g.max(axis=1, keepdims=True)
        empty = top[:, 0] <= 0
        if np.any(empty):
            g[empty] = 1.0
            top[empty] = 1.0
        g /= top  # the largest group is 1: the sum below is in [1, G], no 0/0, no overflow
        g /= g.sum(axis=1, keepdims=True)
        return g


def coarse(groups: Sequence[Sequence[int]], n_classes: int) -> Partition:
    """Coarse decision: which group (the posteriors summed within each group)."""
    return Partition(tuple(tuple(int(c) for c in g) for g in groups), int(n_classes), "coarse")


def pairwise(a: int, b: int, n_classes: int) -> Partition:
    """Pairwise decision between classes ``a`` and ``b`` (renormalised over the two)."""
    return Partition(((int(a),), (int(b),)), int(n_classes), f"{a}-vs-{b}")


def one_vs_rest(k: int, n_classes: int) -> Partition:
    """One-vs-rest decision ``1[C = k]``."""
    rest = tuple(c for c in range(int(n_classes)) if c != int(k))
    return Partition(((int(k),), rest), int(n_classes), f"{k}-vs-rest")


# ---------------------------------------------------------------------------------------
# posteriors and entropies
# ---------------------------------------------------------------------------------------
def class_posterior(model: GaussianMixture, y, delta) -> np.ndarray:
    """Exact ``p(c | y)`` of a mixture's components, ``(n, K)``."""
    if not isinstance(model, GaussianMixture):
        raise InputError(
            "exact class posteriors need a GaussianMixture; for networks use OnlineClassifier"
        )
    return model.posterior(y, delta)


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats, ``-sum p log p`` with ``0 log 0 = 0``, of the distributions
    along ``axis``.

    ``p`` must be a probability vector (or a batch of them): finite, non-negative, and
    summing to 1 along ``axis`` within ``1e-6`` (rounding of a float32 softmax); anything
    else raises (an unnormalised vector has no entropy, and normalising it silently would
    hide a bug upstream).
    """
    p = finite_array(p, "p")
    if p.ndim == 0 or p.shape[axis] == 0:
        raise ShapeError(f"p must hold at least one probability along axis {axis}; got {p.shape}")
    if np.any(p < 0):
        raise DomainError(
            f"p must be non-negative (a distribution); its smallest entry is {p.min():g}"
        )
    total = p.sum(axis=axis)
    if np.any(np.abs(total - 1.0) > 1e-6):
        worst = float(np.max(np.abs(total - 1.0)))
        raise DomainError(
            f"p must sum to 1 along axis {axis} (a distribution); a sum is off by {worst:.3g}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -np.sum(t, axis=axis)


def _check_partition(model, partition) -> Partition | None:
    """``partition`` (``None`` or a :class:`Partition`) checked against the mixture
    ``model``: one class per component, and positive probability on the decision's union
    (else the rejection sampler below never ends and the union's posterior is 0/0)."""
    if not isinstance(model, GaussianMixture):
        raise InputError(f"model must be a GaussianMixture; got {type(model).__name__}")
    if partition is None:
        return None
    if not isinstance(partition, Partition):
        raise InputError(
            f"partition must be a Partition (coarse, pairwise, one_vs_rest) or None; "
            f"got {type(partition).__name__}"
        )
    if partition.n_classes != model.n_components:
        raise ShapeError(
            f"partition is over {partition.n_classes} classes but the model has "
            f"{model.n_components} components"
        )
    if not model.weights[partition.union].sum() > 0:
        raise DomainError(
            f"partition: the classes {partition.union.tolist()} of the decision have "
            "zero probability in the model"
        )
    return partition


def _group_log_joint(lj: np.ndarray, partition: Partition) -> np.ndarray:
    """``log sum_{k in g} w_k N_k`` per group ``(n, G)`` from the log joint ``(n, K)``
    (a group of zero-weight classes gives ``-inf``, not NaN)."""
    return np.stack([_logsumexp(lj[:, list(g)]) for g in partition.groups], axis=1)


def _group_post(model, y, delta, partition):
    """Posterior over the classes, or over the partition's groups computed in log space
    (renormalised over the union without 0/0 where every union class underflows)."""
    if partition is None:
        return model.posterior(y, delta)
    y, dl = model._prep(y, delta)
    return _softmax(_group_log_joint(model._log_joint(y, dl), partition))


def _nodes(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite (probabilists') nodes and weights normalised to sum to one, for
    ``E f(Z)`` with ``Z ~ N(0, 1)``. Cached per order (``hermegauss`` solves an eigenvalue
    problem of size ``order``); the arrays are read-only."""
    return _nodes_cached(integer(order, "order", 2, 300))


@functools.lru_cache(maxsize=32)
def _nodes_cached(order: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


def _check_1d_mixture(model) -> GaussianMixture:
    if not isinstance(model, GaussianMixture) or model.dim != 1:
        raise InputError("quadrature needs a 1-D GaussianMixture")
    mu = model.means[:, 0]
    sd = np.sqrt([float(c.covariance[0, 0]) for c in model.components])
    spread = float(np.max(mu) - np.min(mu) + np.max(sd))
    if not spread <= _MAX_SPREAD:
        # the integrands square score gaps ~ spread / delta: beyond this they overflow
        raise DomainError(
            f"means: the mixture's spread (max - min of the means, plus the largest std) "
            f"must be at most {_MAX_SPREAD:g} for the quadrature (squared score gaps overflow "
            f"float64 beyond); got {spread:.3g}"
        )
    return model


_MAX_SPREAD = 1e100


def _quadrature_points(model: GaussianMixture, deltas: np.ndarray, order: int, partition=None):
    """Per component k (of the partition's union) and noise level: nodes
    ``m_k + sqrt(s_k^2 + delta) x_j`` with weights ``w_k * w_j`` renormalised over the union.
    Returns flat arrays y, delta and the weights ``(L, K J)``."""
    x, w = _nodes(order)
    comps = np.arange(model.n_components) if partition is None else partition.union
    means = model.means[comps, 0]
    var = np.array([float(model.components[k].covariance[0, 0]) for k in comps])
    wk = model.weights[comps] / model.weights[comps].sum()
    K, L, J = comps.size, deltas.size, x.size
    sd = np.sqrt(var[None, :, None] + deltas[:, None, None])  # (L, K, 1)
    y = means[None, :, None] + sd * x[None, None, :]  # (L, K, J)
    wt = wk[None, :, None] * w[None, None, :] * np.ones((L, 1, 1))
    dl = np.broadcast_to(deltas[:, None, None], (L, K, J))
    return y.reshape(-1, 1), dl.reshape(-1), wt.reshape(L, -1)


def conditional_entropy_quadrature(
    model: GaussianMixture, deltas, partition=None, *, order: int = 200
) -> np.ndarray:
    """``H(C | y)`` (nats) of a 1-D Gaussian mixture at every noise level, by Gauss-Hermite
    quadrature of each component's noised marginal (all levels in one vectorised call)."""
    model = _check_1d_mixture(model)
    partition = _check_partition(model, partition)
    dl = positive_grid(deltas, "deltas")
    y, d_flat, wt = _quadrature_points(model, dl, order, partition)
    h = entropy(_group_post(model, y, d_flat, partition)).reshape(wt.shape)
    return np.sum(wt * h, axis=1)


def _score_gap_sq(model, y, delta, partition):
    """``|score(y | G) - score(y)|^2`` for each point, G the group (class) of the point's
    source, averaged over that group's posterior: returns E_{G|y}|s_G - s|^2 ``(n,)``
    (the integrand of the score-gap identity, docs/theory.md section 6)."""
    dcol = np.reshape(delta, (-1, 1)) * np.ones((y.shape[0], 1))
    lj, vals = model._log_joint_rows(y, dcol, "score")  # (K, n), K x (n, d): one pass
    lj, scores = lj.T, np.stack(vals, axis=1)  # (n, K), (n, K, d)
    if partition is not None:
        union = partition.union
        s_all = np.einsum("nk,nkd->nd", _softmax(lj[:, union]), scores[:, union])
        gp = _softmax(_group_log_joint(lj, partition))
        gap = np.zeros(y.shape[0])
        for j, g in enumerate(partition.groups):
            idx = np.array(g)
            live = gp[:, j] > 0  # a group of zero weight at a point: no term (not 0 * NaN)
            if not np.any(live):
                continue
            s_g = np.einsum("nk,nkd->nd", _softmax(lj[live][:, idx]), scores[live][:, idx])
            gap[live] += gp[live, j] * np.sum((s_g - s_all[live]) ** 2, axis=1)
        return gap
    post = _softmax(lj)
    s = np.einsum("nk,nkd->nd", post, scores)
    return np.einsum("nk,nk->n", post, np.sum((scores - s[:, None, :]) ** 2, axis=2))


def entropy_rate_quadrature(
    model: GaussianMixture, deltas, partition=None, *, order: int = 200
) -> np.ndarray:
    """``dH(C | y)/d delta = 1/2 E |score(y | c) - score(y)|^2`` (the score-gap identity,
    docs/theory.md section 6) of a 1-D mixture, the expectation by Gauss-Hermite quadrature
    (the reference for the other estimators)."""
    model = _check_1d_mixture(model)
    partition = _check_partition(model, partition)
    dl = positive_grid(deltas, "deltas")
    y, d_flat, wt = _quadrature_points(model, dl, order, partition)
    gap = _score_gap_sq(model, y, d_flat, partition).reshape(wt.shape)
    return 0.5 * np.sum(wt * gap, axis=1)


def _sample_union(model, n, delta, rng, partition):
    x0, lab = model.sample_with_labels(n, rng)
    if partition is not None:
        union = partition.union
        ok = np.isin(lab, union)
        while ok.sum() < n:  # rejection: condition on the union of the groups
            x1, l1 = model.sample_with_labels(n, rng)
            x0, lab = np.concatenate([x0[ok], x1]), np.concatenate([lab[ok], l1])
            ok = np.isin(lab, union)
        x0, lab = x0[ok][:n], lab[ok][:n]
    y = x0 + math.sqrt(delta) * rng.standard_normal(x0.shape)
    return y, lab


def _mc_over_deltas(model, deltas, n, rng, partition, value) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo mean and standard error of ``value(y, delta, partition)`` (one number per
    draw) at each noise level, ``y`` drawn from the noised data conditioned on the
    partition's classes (``n`` draws per level)."""
    partition = _check_partition(model, partition)
    dl = positive_grid(deltas, "deltas")
    n = integer(n, "n", 2, 10**9)
    mean, se = np.empty(dl.size), np.empty(dl.size)
    for i, d in enumerate(dl):
        y, _ = _sample_union(model, n, float(d), rng, partition)
        v = value(y, float(d), partition)
        mean[i], se[i] = v.mean(), v.std(ddof=1) / math.sqrt(n)
    return mean, se


def conditional_entropy_mc(
    model: GaussianMixture, deltas, n: int, rng: np.random.Generator, partition=None
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo ``H(C | y)`` at each noise level with its standard error (``y`` drawn
    from the noised data, conditioned on the partition's classes)."""

    def value(y, d, part):
        return entropy(_group_post(model, y, d, part))

    return _mc_over_deltas(model, deltas, n, rng, partition, value)


def entropy_rate_score_gap(
    model: GaussianMixture, deltas, n: int, rng: np.random.Generator, partition=None
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo of the score-gap identity ``dH/d delta = 1/2 E|s(y|c) - s(y)|^2``,
    with standard errors."""

    def value(y, d, part):
        return 0.5 * _score_gap_sq(model, y, d, part)

    return _mc_over_deltas(model, deltas, n, rng, partition, value)


def entropy_rate_finite_difference(
    model: GaussianMixture,
    deltas,
    n: int,
    rng: np.random.Generator,
    partition=None,
    *,
    rel_step: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Central finite differences of the Monte Carlo ``H(C | y)`` in ``log delta`` on common
    random numbers (the same draws at ``delta (1 +- h)``), with standard errors."""
    partition = _check_partition(model, partition)
    dl = positive_grid(deltas, "deltas")
    h = float(positive(rel_step, "rel_step"))
    n = integer(n, "n", 2, 10**9)
    r, se = np.empty(dl.size), np.empty(dl.size)
    for i, d in enumerate(dl):
        seed = int(rng.integers(2**63))
        vals = []
        for f in (1 + h, 1 - h):
            g = np.random.default_rng(seed)
            x0, lab = model.sample_with_labels(n, g)
            z = g.standard_normal(x0.shape)
            if partition is not None:
                keep = np.isin(lab, partition.union)
                x0, z = x0[keep], z[keep]
            y = x0 + math.sqrt(d * f) * z
            vals.append(entropy(_group_post(model, y, d * f, partition)))
        diff = (vals[0] - vals[1]) / (2 * h * d)
        r[i], se[i] = diff.mean(), diff.std(ddof=1) / math.sqrt(diff.size)
    return r, se


def rate_in_time(rate_delta, deltas, process: Process | str):
    """``dH/dt = dH/d delta * d delta/dt`` at the process's time of each delta."""
    proc = get_process(process)
    t = proc.time_of_delta(np.asarray(deltas))
    return np.asarray(rate_delta) * np.asarray(proc.ddelta_dt(t))


def local_maxima(x, y, *, rel_height: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Every interior local maximum of ``y(x)`` (plateaus counted once), refined by a
    parabola through the three points around it: ``(x_max, y_max)``.

    ``rel_height``: a maximum is reported when its height above the curve's minimum is at
    least ``rel_height`` times the curve's range ``max(y) - min(y)`` (for a rate, whose
    minimum is about 0: ``rel_height`` of the global maximum). The default ``1e-6`` drops
    the "maxima" of rounding noise where a rate has decayed to ~1e-85 (quadrature at tiny
    noise) and keeps every maximum a plot or a table could show; ``0`` reports them all.
    """
    x = finite_array(x, "x").reshape(-1)
    y = finite_array(y, "y").reshape(-1)
    if x.size != y.size or x.size < 3:
        raise ShapeError("x and y must have the same length >= 3")
    rel = float(finite_array(rel_height, "rel_height"))
    if not 0 <= rel <= 1:
        raise InputError(f"rel_height must lie in [0, 1]; got {rel!r}")
    lo, hi = float(y.min()), float(y.max())
    floor = lo + rel * (hi - lo)
    dy = np.sign(np.diff(y))
    # propagate zero slopes so plateaus count once
    for i in range(1, dy.size):
        if dy[i] == 0:
            dy[i] = dy[i - 1]
    idx = np.flatnonzero((dy[:-1] > 0) & (dy[1:] < 0)) + 1
    if rel > 0:
        idx = idx[y[idx] >= floor]
    xs, ys = [], []
    for i in idx:
        x0, x1, x2 = x[i - 1], x[i], x[i + 1]
        y0, y1, y2 = y[i - 1], y[i], y[i + 1]
        den = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
        b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / den
        if a < 0:
            xv = -b / (2 * a)
            if min(x0, x2) <= xv <= max(x0, x2):
                c = y1 - a * x1**2 - b * x1
                xs.append(xv)
                ys.append(a * xv**2 + b * xv + c)
                continue
        xs.append(x1)
        ys.append(y1)
    return np.array(xs), np.array(ys)


def class_restricted_entropy_quadrature(
    model: GaussianMixture, deltas, k: int, *, order: int = 200
) -> np.ndarray:
    """Per-class profile ``E[H(C | y) | C = k]`` (the class-restricted entropy) of a 1-D
    mixture by quadrature over component k's noised marginal. The other per-class
    definition, the one-vs-rest entropy ``H(1[C = k] | y)``, is
    ``conditional_entropy_quadrature(model, deltas, one_vs_rest(k, K))``."""
    model = _check_1d_mixture(model)
    if not 0 <= int(k) < model.n_components:
        raise InputError(f"k must lie in [0, {model.n_components - 1}]; got {k}")
    dl = positive_grid(deltas, "deltas")
    x, w = _nodes(order)
    mk = model.means[int(k), 0]
    vk = float(model.components[int(k)].covariance[0, 0])
    y = (mk + np.sqrt(vk + dl)[:, None] * x[None, :]).reshape(-1, 1)
    h = entropy(model.posterior(y, np.repeat(dl, x.size))).reshape(dl.size, x.size)
    return h @ w


# ---------------------------------------------------------------------------------------
# decisions along trajectories
# ---------------------------------------------------------------------------------------
def decision_entropies(
    posteriors, partition: Partition | None = None, *, final=None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-trajectory entropies of a decision and the weights that condition their average
    on the decision's classes: ``(H (S, n), w (n,))``, ``sum_i w_i = 1``.

    ``posteriors``: ``(S, n, K)``, or a sequence of ``S`` arrays ``(n, K)`` (such as
    :attr:`OnlineClassifier.history`), the class posteriors of ``n`` trajectories at ``S``
    times. ``H[s, i]`` is the entropy of trajectory ``i``'s posterior over the partition's
    groups, renormalised over their union ``U`` (:meth:`Partition.group_posterior`; the
    class posterior itself for ``partition=None``), and

        w_i = p(U | x_0^(i)) / sum_j p(U | x_0^(j)),

    ``p(U | x_0)`` the mass of ``final`` (the posterior at the end of each trajectory,
    ``x_0``; default: the last of ``posteriors``) on ``U``. ``C -> x_0 -> x_t`` is a Markov
    chain, so ``p(C in U | x_0, x_t) = p(C in U | x_0)`` and ``sum_i w_i H[s, i]``
    estimates ``H(G | x_t, C in U)`` (see :meth:`OnlineClassifier.entropy_profile`). For
    ``partition=None`` or a partition of all the classes every ``w_i = 1/n``.
    Batch means, bootstrap errors and the like are weighted means over subsets of the
    trajectories: ``H[:, idx] @ w[idx] / w[idx].sum()``.
    """
    post = [np.asarray(p) for p in posteriors]
    if not post:
        raise InputError("no posteriors: feed the classifier a trajectory first")
    hs = np.array(
        [entropy(p) if partition is None else entropy(partition.group_posterior(p)) for p in post]
    )  # (S, n)
    n = hs.shape[1]
    if partition is None or partition.union.size == partition.n_classes:
        return hs, np.full(n, 1.0 / n)
    last = post[-1] if final is None else finite_array(final, "final")
    if last.shape != (n, partition.n_classes):
        raise ShapeError(f"final must have shape ({n}, {partition.n_classes}); got {last.shape}")
    w = last[:, partition.union].sum(axis=1)
    if not w.sum() > 0:
        raise InputError(
            f"no trajectory ends in the classes {partition.union.tolist()} of the decision"
        )
    return hs, w / w.sum()


# ---------------------------------------------------------------------------------------
# the online Bayes classifier
# ---------------------------------------------------------------------------------------
class OnlineClassifier:
    """Tracks ``p(c | x_t)`` along trajectories by the exact Bayes update (module docstring).

    ``models``: a model with classes (a :class:`~physdiff.classes.ClassConditional`, or
    anything :func:`~physdiff.classes.as_conditional` takes: a ``GaussianMixture``, a
    class-conditional network), or a list of class-conditional score models. With Gaussian
    ensembles as classes (the components of a mixture) the kernel includes ``(1 - r)^2
    Cov(x0 | y_t, c)`` and the update is exact. Use :meth:`recorder` as the ``record`` of a
    sampler, or call :meth:`update` yourself. Posteriors start from ``start`` (an ``(n, K)``
    array, e.g. the exact posterior at the start state) or from the ``prior``.

    The update at ``s`` needs the ``K`` class denoisers at the previous state ``(y_t,
    delta_t)``, where the sampler evaluated its model for the step ``t -> s``. When the
    sampled model is this classifier's :attr:`classes` (``sample(classes, ..., record=
    clf.recorder())``), the recorder asks the sampler to evaluate every class with it (for
    a mixture in the same pass: ``E[x0 | y] = sum_k p(k | y) E[x0 | y, k]``) and reads them
    from the step's :class:`~physdiff.sampling.StepRecord`; otherwise it evaluates the class
    models itself. :attr:`n_read` and :attr:`n_computed` count the two cases; the
    posteriors are the same either way.

    The update from ``(t, y_t)`` to ``(s, y_s)`` adds to ``log p(c | .)``

        -|u_c|^2/(2 v) + 1/2 sum_j (u_c . e_j)^2 c_j / (v (v + c_j)) - 1/2 sum_j log(1 + c_j/v),
        u_c = y_s - (m_c + r (y_t - m_c)),       c_j = (1 - r)^2 delta_t lam_j/(lam_j + delta_t),

    the log-density of ``N(m_c + r (y_t - m_c), v I + (1 - r)^2 Cov(x0 | y_t, c))`` up to
    a constant common to the classes: for a Gaussian class with covariance ``sum_j lam_j
    e_j e_j^T``, ``Cov(x0 | y_t, c) = sum_j delta_t lam_j/(lam_j + delta_t) e_j e_j^T`` does
    not depend on ``y_t``, and the Woodbury identity gives the quadratic form and the
    determinant through the component's eigenbasis (no Cholesky factorisation or solve per
    class and step). Without the exact kernel (networks) the ``c_j`` terms vanish.

    Layout, for speed only: the log-posterior is kept as ``(K, n)`` (normalisations over the
    classes reduce over contiguous rows; numpy reduces a short last axis of an ``(n, K)``
    array some 100x slower), the kernel residuals of all classes are one flat ``(K, n d)``
    array reused across steps, and the schedule is read without per-call validation.
    :attr:`log_post` and every entry of :attr:`history` are ``(n, K)`` (transposed views).

    ``keep_history=False`` tracks the posterior without recording it: :attr:`history` and
    :attr:`times` stay empty, :meth:`update` (and the recorder) return ``None``, no
    posterior is formed during the run and :attr:`posterior` gives the current one. A full
    history of ``S`` steps holds ``S n K`` float64 numbers (320 MB for 10,000 particles, 4
    classes and 1000 steps), whose first writes cost about as much as the update itself.
    """

    def __init__(
        self,
        models,
        process: Process | str,
        *,
        prior=None,
        start=None,
        exact_kernel: bool | None = None,
        keep_history: bool = True,
    ):
        if isinstance(models, Sequence):
            self.classes: ClassConditional | None = None
            self.models = list(models)
        else:
            self.classes = as_conditional(models)
            self.models = self.classes.class_models()
        if len(self.models) < 2:
            raise InputError("an online classifier needs at least two class models")
        self.process = get_process(process)
        K = len(self.models)
        if prior is None:
            prior = np.full(K, 1.0 / K)
        prior = finite_array(prior, "prior").reshape(-1)
        if prior.size != K or np.any(prior < 0) or abs(prior.sum() - 1) > 1e-9:
            raise InputError(f"prior must be {K} non-negative numbers summing to one")
        self.prior = prior
        self.start = None if start is None else finite_array(start, "start")
        from .ensembles.gaussian import Gaussian

        gauss = all(isinstance(m, Gaussian) for m in self.models)
        self.exact_kernel = gauss if exact_kernel is None else bool(exact_kernel)
        if self.exact_kernel and not gauss:
            raise InputError("exact_kernel needs Gaussian class models")
        dims = {int(m.dim) for m in self.models}
        if len(dims) != 1:
            raise ShapeError(f"the class models must share one dimension; got {sorted(dims)}")
        self.dim = dims.pop()
        self.keep_history = bool(keep_history)
        self._gauss = [isinstance(m, Gaussian) for m in self.models]
        # Gaussian classes with covariance lam I (full rank, one variance): their exact
        # kernel is isotropic, (v + c) I
        self._isotropic = [
            g and m._lam.size == self.dim and bool(np.all(m._lam == m._lam[0]))
            for m, g in zip(self.models, self._gauss, strict=True)
        ]
        # 1-D Gaussian classes: (means, variances, e^2) for the closed-form denoisers
        self._line = None
        if gauss and self.dim == 1:
            self._line = (
                np.array([float(m._mean[0]) for m in self.models]),
                np.array([float(m._lam[0]) if m._lam.size else 0.0 for m in self.models]),
                np.array([float(m._U[0, 0]) ** 2 if m._lam.size else 0.0 for m in self.models]),
            )
        self._lp: np.ndarray | None = None  # (K, n)
        self._prev: tuple[float, np.ndarray] | None = None
        self._d_prev: float | None = None
        self._work: tuple[np.ndarray, np.ndarray] | None = None
        self.history: list[np.ndarray] = []
        self.times: list[float] = []
        self.n_read = 0  # updates whose class denoisers came from the sampler's evaluation
        self.n_computed = 0  # updates that evaluated the class models here

    # -- state -----------------------------------------------------------------------------
    @property
    def log_post(self) -> np.ndarray | None:
        """The log-posterior ``(n, K)``, up to a constant per particle (a view)."""
        return None if self._lp is None else self._lp.T

    @log_post.setter
    def log_post(self, value) -> None:
        self._lp = None if value is None else np.ascontiguousarray(np.asarray(value, float).T)

    @property
    def posterior(self) -> np.ndarray:
        """The current posterior ``p(c | x)``, ``(n, K)``."""
        lp = self._lp
        if lp is None:
            raise InputError("no posterior yet: feed the classifier a state first")
        p = np.exp(lp - lp.max(axis=0))
        p /= p.sum(axis=0)
        return p.T

    def reset(self, n: int):
        K = len(self.models)
        if self.start is not None:
            if self.start.shape != (n, K):
                raise ShapeError(f"start must have shape ({n}, {K}); got {self.start.shape}")
            if not np.allclose(self.start.sum(axis=1), 1.0, atol=1e-8):
                raise InputError("start posteriors must sum to one")
            with np.errstate(divide="ignore"):
                self._lp = np.ascontiguousarray(np.log(self.start).T)
        else:
            with np.errstate(divide="ignore"):
                self._lp = np.repeat(np.log(self.prior)[:, None], n, axis=1)
        self._prev, self._d_prev, self._work = None, None, None
        self.history, self.times = [], []

    # -- the update ------------------------------------------------------------------------
    def _schedule(self, t: float) -> tuple[float, float]:
        """``(delta(t), alpha(t))``, bitwise equal to ``process.delta(t)`` and
        ``process.alpha(t)`` (the sampler's values: the recorder compares them with the
        step's evaluation) without their per-call validation (about 25 us each)."""
        proc = self.process
        if not proc.t_min <= t <= proc.t_max:
            proc.check_time(t, "t")  # raises, naming the range
        tt = np.asarray(t, dtype=np.float64)
        return float(proc._delta(tt)), float(np.exp(proc._log_alpha(tt)))

    def _scaled_means(
        self, out: np.ndarray, y_t: np.ndarray, d_t: float, f: float, given=None
    ) -> None:
        """``out[k] = f m_k(y_t, d_t)`` (flat rows of ``(K, n d)``), ``m_k`` class k's
        denoiser; ``y_t`` was validated when it was fed; ``given``: the ``(K, n, d)`` class
        denoisers at that state, already evaluated (by the sampler).

        A Gaussian class ``N(mu, U diag(lam) U^T)`` in closed form, ``Gaussian._denoise``
        written into ``out`` without temporaries: ``m = mu + (y - mu) U diag(s) U^T``,
        ``s = lam/(lam + delta)``, as ``y B + (mu - mu B)`` with the ``d x d`` matrix
        ``B = U diag(s) U^T`` when that is cheaper (``d r + n d < 2 n r``, e.g. isotropic
        classes) and through the ``r`` eigendirections otherwise; in 1-D all classes at once
        (``m_k = mu_k + s_k (y - mu_k)``, ``s_k = 0`` for a point mass). Other models:
        their ``denoise``."""
        if given is not None:
            self.n_read += 1
            np.multiply(given.reshape(out.shape), f, out=out)
            return
        self.n_computed += 1
        if self._line is not None:
            mu, lam, e2 = self._line
            s = e2 * lam / (lam + d_t)
            np.multiply(y_t.reshape(1, -1), (f * s)[:, None], out=out)
            out += (f * (1.0 - s) * mu)[:, None]
            return
        n, d = y_t.shape
        for k, (m, g) in enumerate(zip(self.models, self._gauss, strict=True)):
            if not g:
                np.multiply(np.reshape(m.denoise(y_t, d_t), -1), f, out=out[k])
                continue
            ok = out[k].reshape(n, d)
            lam, U, mu = m._lam, m._U, m._mean
            r = lam.size
            if r == 0:  # a point mass: its denoiser is its point
                ok[:] = f * mu
                continue
            fs = f * lam / (lam + d_t)
            if d * r + n * d < 2 * n * r:
                B = (U * fs) @ U.T
                np.matmul(y_t, B, out=ok)
                ok += f * mu - mu @ B
            else:
                proj = y_t - mu
                proj = proj @ U
                proj *= fs
                np.matmul(proj, U.T, out=ok)
                ok += f * mu

    def _buffers(self, K: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Work arrays reused across steps: ``(K, n d)`` and ``(n,)``."""
        w = self._work
        if w is None or w[0].shape != (K, n * d):
            w = self._work = (np.empty((K, n * d)), np.empty(n))
        return w

    def update(self, t: float, x, *, class_denoised=None) -> np.ndarray | None:
        """Feed the particles ``x`` (process frame) at the next grid time ``t``; returns the
        posterior ``(n, K)`` (``None`` with ``keep_history=False``). ``class_denoised``: the
        ``K`` class denoisers ``(K, n, d)`` at the previous state, when they were evaluated
        already (otherwise the class models are evaluated here)."""
        x = as_points(x, self.dim, "x", dtype=np.float64)
        n, d = x.shape
        if self._lp is None or self._lp.shape[1] != n:
            self.reset(n)
        t = float(t)
        d_s, a_s = self._schedule(t)
        y_s = x / a_s
        if self._prev is not None and d_s <= 0:
            # at delta = 0 the kernel is degenerate; the class is read off the clean point
            if not self.keep_history:
                return None
            self.history.append(self.posterior)
            self.times.append(t)
            return self.history[-1]
        lp = self._lp
        K = lp.shape[0]
        if self._prev is not None:
            t_prev, y_t = self._prev
            d_t = self._d_prev if self._d_prev is not None else self._schedule(t_prev)[0]
            if not d_t > d_s:
                raise InputError("times must decrease along the trajectory")
            r = d_s / d_t
            v = d_s * (d_t - d_s) / d_t
            u, m = self._buffers(K, n, d)
            # u_c / sqrt(2 v) = ((r - 1) m_c + y_s - r y_t) / sqrt(2 v), all classes in flat
            # (K, n d) rows (numpy broadcasts a short trailing axis ~10x slower)
            sc = math.sqrt(0.5 / v)
            if class_denoised is not None:
                class_denoised = np.asarray(class_denoised, dtype=np.float64)
                if class_denoised.shape != (K, n, d):
                    raise ShapeError(
                        f"class_denoised must have shape ({K}, {n}, {d}); got "
                        f"{class_denoised.shape}"
                    )
            self._scaled_means(u, y_t, d_t, (r - 1) * sc, class_denoised)
            c = y_s - r * y_t
            c *= sc
            u += c.reshape(1, -1)
            # the exact kernel's Woodbury terms need u before it is squared in place
            corr = []
            half_logdet = np.zeros(K)
            if self.exact_kernel:
                for k, comp in enumerate(self.models):
                    lam = comp._lam
                    if not lam.size:
                        continue
                    ck = (1 - r) ** 2 * d_t * lam / (lam + d_t)
                    half_logdet[k] = 0.5 * np.sum(np.log1p(ck / v))
                    if self._isotropic[k]:
                        # covariance (v + c) I: scale the residual, |u|^2 / (2 (v + c))
                        u[k] *= math.sqrt(v / (v + float(ck[0])))
                        continue
                    proj = u[k].reshape(n, d) @ comp._U  # (u_c . e_j) / sqrt(2 v)
                    # + (u.e_j)^2 c_j / (2 v (v + c_j))
                    corr.append((k, (proj * proj) @ (ck / (v + ck))))
            if d == 1:
                lp -= np.square(u, out=u)  # (K, n): |u_c|^2 / (2 v)
            else:
                lp -= np.einsum("knd,knd->kn", u.reshape(K, n, d), u.reshape(K, n, d))
            for k, quad in corr:
                lp[k] += quad
            if self.exact_kernel:
                lp -= half_logdet[:, None]  # - 1/2 sum_j log(1 + c_j / v)
        else:
            m = np.empty(n)
        np.max(lp, axis=0, out=m)
        lp -= m
        self._prev, self._d_prev = (t, y_s), d_s
        if not self.keep_history:
            return None
        # a new posterior per step (the history keeps it); the columns of lp have maximum 0,
        # so exp(lp) lies in (0, 1] with a 1 in every column
        p = np.exp(lp)
        np.sum(p, axis=0, out=m)
        np.reciprocal(m, out=m)
        p *= m
        post = p.T
        self.history.append(post)
        self.times.append(t)
        return post

    def recorder(self) -> StepRecorder:
        """A recorder for :func:`physdiff.sampling.sample` that updates and returns the
        posterior at every grid time (``None`` with ``keep_history=False``), reading the
        class denoisers from the step's evaluation when the sampled model is
        :attr:`classes`."""
        self._lp = None
        return StepRecorder(self._observe, wants_classes=self.classes is not None)

    def _observe(self, record: StepRecord) -> np.ndarray | None:
        ev, prev = record.evaluation, self._prev
        given = None
        if (
            ev is not None
            and ev.classes is not None
            and ev.model is self.classes
            and prev is not None
            and ev.t == prev[0]
            and ev.delta == self._d_prev
            and np.array_equal(ev.y, prev[1])
        ):
            given = ev.class_denoised
        return self.update(record.t, record.x, class_denoised=given)

    def entropy_profile(self, partition: Partition | None = None):
        """``(times, mean entropy, standard error)`` of the tracked posteriors, an estimate
        of ``H(G | x_t, C in U)`` along the grid.

        ``partition=None`` (or any partition of all ``K`` classes): the plain mean over the
        trajectories of the entropy of the (grouped) posterior. A decision between a subset
        ``U`` of the classes (pairwise, or coarse groups that leave classes out) is
        conditional on the class lying in ``U``:

            H(G | x_t, C in U) = E[ H(p(G | x_t, C in U)) 1[C in U] ] / P(C in U)
                               ~ sum_i w_i H_i(t) / sum_i w_i,     w_i = p(U | x_0^(i)),

        the entropy of each trajectory's posterior renormalised over ``U``
        (:meth:`Partition.group_posterior`), weighted by its final posterior mass on ``U``
        (the last entry of :attr:`history`; ``C -> x_0 -> x_t`` is a Markov chain, so
        ``p(C in U | x_0, x_t) = p(C in U | x_0)``); :func:`decision_entropies` gives the
        per-trajectory values and weights. This is the quantity
        :func:`conditional_entropy_quadrature` computes for the same partition when the
        trajectories end near ``delta = 0`` and start from the exact marginal. The standard
        error is the weighted one, ``sqrt(n/(n-1) sum_i w_i^2 (H_i - H)^2)`` with
        ``sum_i w_i = 1``.
        """
        if not self.history:
            raise InputError(
                "no history: feed the classifier a trajectory first (with keep_history=True)"
            )
        hs, w = decision_entropies(self.history, partition)
        n = hs.shape[1]
        times = np.array(self.times)
        if partition is None or partition.union.size == len(self.models):
            return times, hs.mean(axis=1), hs.std(axis=1, ddof=1) / math.sqrt(n)
        mean = hs @ w
        var = (np.square(hs - mean[:, None]) @ np.square(w)) * (n / max(n - 1, 1))
        return times, mean, np.sqrt(var)


def parse_partition(spec: str, n_classes: int) -> Partition | None:
    """The decision written as ``spec`` over ``n_classes`` classes, or ``None`` for ``all``
    (the K-way decision): ``all``; ``pairwise:a,b``; ``one-vs-rest:k``; ``coarse:0,1/2,3``
    (groups separated by ``/``, classes by ``,``; classes in no group are conditioned
    away). Raises :class:`~physdiff.errors.InputError` naming ``partition`` on a malformed
    spec, a class index out of range or groups that are not a partition."""
    s = spec.strip().lower()
    if s == "all":
        return None
    kind, sep, rest = s.partition(":")
    usage = f"partition: unknown decision {spec!r}; use all, pairwise:a,b, one-vs-rest:k or "
    if not sep or kind not in ("pairwise", "one-vs-rest", "coarse"):
        raise InputError(usage + "coarse:0,1/2,3")

    def ints(text: str) -> list[int]:
        try:
            vals = [int(v) for v in text.split(",") if v.strip() != ""]
        except ValueError:
            raise InputError(
                f"partition: class indices must be integers; got {text!r} in {spec!r}"
            ) from None
        if not vals:
            raise InputError(f"partition: an empty group of classes in {spec!r}")
        return vals

    try:
        if kind == "pairwise":
            ab = ints(rest)
            if len(ab) != 2 or ab[0] == ab[1]:
                raise InputError(f"pairwise needs two different classes a,b; got {spec!r}")
            return pairwise(ab[0], ab[1], n_classes)
        if kind == "one-vs-rest":
            k = ints(rest)
            if len(k) != 1:
                raise InputError(f"one-vs-rest needs one class k; got {spec!r}")
            return one_vs_rest(k[0], n_classes)
        return coarse([ints(g) for g in rest.split("/")], n_classes)
    except InputError as exc:
        msg = str(exc)
        raise InputError(msg if msg.startswith("partition: ") else f"partition: {msg}") from None
