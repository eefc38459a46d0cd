"""Memorisation as a random-energy-model collapse (docs/theory.md section 3).

With ``n = e^{alpha_n d}`` training points, the exact empirical score reproduces them: at
low noise the posterior over training points condenses on one point. Biroli et al. 2024
(section 4) locate the collapse with the excess entropy of the empirical measure ``P^e``,

    f^e = <(1/d) log P^e(y)>_{y ~ P^e} + alpha_n + 1/2 log(2 pi e delta),

written here in the VE frame (``y = x0 + sqrt(delta) z``; in OU time ``delta = e^{2t} - 1``
gives their formula, because the rescaling cancels between the density and the noise
entropy). Since ``log n + d/2 log(2 pi e delta)`` bounds the entropy of an n-component
mixture of noise balls, ``d f^e = log n - I(x0; y) = E_y[H(w(y))] >= 0``: the mean entropy
(in nats) of the posterior ``w`` over training points. It vanishes when the posterior
has condensed.

In the large-d limit the empirical mutual information follows the population one until
it saturates at ``log n``, so the collapse is where

    alpha_n = I(x0; y) / d,      I = sum_i 1/2 log(1 + lambda_i / delta)

for a covariance spectrum ``lambda_i`` (Gaussian data; normal directions of a manifold,
``lambda = 0``, drop out, so the intrinsic dimension m sets ``alpha_n = log(n)/m``). For
isotropic variance ``s^2``: ``delta_C = s^2 / (n^{2/d} - 1)``, i.e.
``t_C = 1/2 log(1 + s^2/(n^{2/d} - 1))`` (Biroli et al. 2024, Eq. 15). For any ensemble
with a log-density (Gaussian mixtures), ``I = h(y) - d/2 log(2 pi e delta)`` is estimated
by Monte Carlo with its standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import covariance_spectrum, finite_array, integer, positive
from .ensembles.base import Ensemble
from .ensembles.empirical import Empirical
from .errors import DomainError, InputError
from .processes import Process, get_process

__all__ = [
    "alpha_n",
    "n_of_alpha",
    "mutual_information_gaussian",
    "excess_entropy_gaussian",
    "collapse_delta",
    "log_collapse_delta",
    "collapse_delta_isotropic",
    "log_collapse_delta_isotropic",
    "collapse_delta_asymptotic",
    "collapse_time",
    "mutual_information_mc",
    "collapse_delta_ensemble",
    "ExcessEntropy",
    "excess_entropy_empirical",
    "excess_entropy_samples",
    "measured_collapse_delta",
    "TrajectoryCollapse",
    "collapse_along_trajectories",
    "PhaseDiagram",
    "phase_diagram",
]

_LOG_2PI_E = math.log(2 * math.pi * math.e)
_LOG_FLOAT_MAX = math.log(np.finfo(np.float64).max)


def _spectrum(spectrum, name: str = "spectrum") -> np.ndarray:
    """The positive eigenvalues of ``spectrum``: negatives from rounding (down to ``-8 k eps
    max|lambda|``, :func:`physdiff._validate.covariance_spectrum`) count as 0, and zeros
    (normal directions) drop out."""
    lam = covariance_spectrum(spectrum, name)
    lam = lam[lam > 0]
    if lam.size == 0:
        raise DomainError(f"{name} has no positive eigenvalue: the data are one point")
    return lam


def _n_points(n, name: str = "n") -> np.ndarray:
    arr = finite_array(n, name)
    if np.any(arr < 2):
        raise DomainError(f"{name} must be >= 2 (training points); got min {arr.min():g}")
    return arr


def alpha_n(n, d):
    """``alpha_n = log(n)/d`` (REM notation, docs/theory.md section 0)."""
    n = _n_points(n)
    d = positive(d, "d")
    out = np.log(n) / d
    return float(out) if out.ndim == 0 else out


def n_of_alpha(alpha, d):
    """``n = e^{alpha d}`` (real-valued). ``alpha d`` beyond ``log`` of the largest float
    (about 709.78) is a :class:`~physdiff.errors.DomainError`: work with ``log n = alpha d``
    there (:func:`log_collapse_delta`, :func:`phase_diagram` do)."""
    a = positive(alpha, "alpha")
    log_n = a * positive(d, "d")
    if np.any(log_n > _LOG_FLOAT_MAX):
        raise DomainError(
            f"n = e^(alpha d) overflows a float for alpha d > {_LOG_FLOAT_MAX:.6g}; got alpha d "
            f"= {np.max(log_n):.6g}: use log n = alpha d instead"
        )
    out = np.exp(log_n)
    return float(out) if out.ndim == 0 else out


def mutual_information_gaussian(delta, spectrum) -> np.ndarray | float:
    """``I(x0; y) = sum_i 1/2 log(1 + lambda_i/delta)`` for Gaussian data (nats, total)."""
    lam = _spectrum(spectrum)
    dl = positive(delta, "delta")
    out = 0.5 * np.sum(np.log1p(lam / dl[..., None]), axis=-1)
    return float(out) if out.ndim == 0 else out


def excess_entropy_gaussian(delta, n, spectrum, d: int | None = None):
    """Large-d excess entropy ``f = alpha_n - I/d`` of Gaussian data, ``d`` the ambient
    dimension (default: ``len(spectrum)``); Biroli et al. 2024, Eq. 14 in the VE frame:
    isotropic ``f = alpha_n + 1/2 log(delta/(delta + s^2))``."""
    lam_all = finite_array(spectrum, "spectrum").reshape(-1)
    d = lam_all.size if d is None else integer(d, "d", 1, 10**9)
    return alpha_n(n, d) - np.asarray(mutual_information_gaussian(delta, lam_all)) / d


def collapse_delta_isotropic(n, d, variance=1.0):
    """``delta_C = s^2 / (n^{2/d} - 1)`` (computed as ``s^2 / expm1(2 log(n)/d)``, in logs
    where ``expm1`` would overflow: the result then underflows to 0 without a warning)."""
    n = _n_points(n)
    d = positive(d, "d")
    s2 = positive(variance, "variance")
    out = np.exp(np.log(s2) - _log_expm1(2 * np.log(n) / d))
    return float(out) if out.ndim == 0 else out


def log_collapse_delta_isotropic(log_n, d, variance=1.0):
    """``log delta_C = log s^2 - log(e^{2 log(n)/d} - 1)`` for ``log n >= log 2`` of any
    size (the isotropic closed form of :func:`collapse_delta_isotropic`, in logs)."""
    ln = _log_n(log_n)
    d = positive(d, "d")
    s2 = positive(variance, "variance")
    out = np.log(s2) - _log_expm1(2 * ln / d)
    return float(out) if out.ndim == 0 else out


def collapse_delta_asymptotic(alpha, variance=1.0, regime: str = "small"):
    """Asymptotics of the isotropic ``delta_C = s^2/expm1(2 alpha_n)``: ``'small'`` alpha_n:
    ``s^2/(2 alpha_n) - s^2/2``; ``'large'``: ``s^2 e^{-2 alpha_n}``."""
    a = positive(alpha, "alpha")
    s2 = positive(variance, "variance")
    if regime == "small":
        out = s2 / (2 * a) - s2 / 2
    elif regime == "large":
        out = s2 * np.exp(-2 * a)
    else:
        raise InputError(f"regime must be 'small' or 'large'; got {regime!r}")
    return float(out) if np.ndim(out) == 0 else out


def _log_expm1(x: np.ndarray) -> np.ndarray:
    """``log(e^x - 1)`` for ``x > 0`` without overflow (``x + log(1 - e^-x)`` for large x)."""
    big = x > 1.0
    return np.where(
        big, x + np.log(-np.expm1(-np.where(big, x, 1.0))), np.log(np.expm1(np.minimum(x, 1.0)))
    )


def _log_n(log_n, name: str = "log_n") -> np.ndarray:
    arr = finite_array(log_n, name)
    if np.any(arr < math.log(2)):
        raise DomainError(
            f"{name} must be >= log 2 (n >= 2 training points); got min {arr.min():g}"
        )
    return arr


def log_collapse_delta(log_n, spectrum, *, tol: float = 1e-13):
    """``log delta_C``: the root ``u = log delta`` of ``log n = sum_i 1/2 log(1 +
    lambda_i e^{-u})``, vectorised over ``log_n`` (which may exceed ``log`` of the largest
    float: nothing here forms ``n`` or ``delta``, so ``alpha_n d ~ 1000`` neither overflows
    nor underflows; ``delta_C = e^u`` itself underflows to 0 below ``u ~ -745``).

    The right side decreases monotonically (and convexly) from +inf to 0 in ``u``, so the
    root is unique. It is found by safeguarded Newton in ``u`` over all ``log_n`` at once:
    the terms written as ``softplus(log lambda_i - u)`` and their derivatives as logistic
    functions, from the middle of a bracket that holds the root, each iteration shrinking
    the bracket to the side of the root; a Newton step that leaves the bracket is replaced
    by a bisection step, one that lands *on* a bracket end is kept (it is the converged
    iterate). It stops when every step is below ``tol * max(1, |u|)``. Zero eigenvalues
    (normal directions) drop out.

    Iterations (each one evaluation of the ``len(log_n) x len(spectrum)`` sum): 8 for
    1000 values of ``alpha_n`` on the spiked ``d = 100`` spectrum and 9 on the power law
    ``lambda_i = 1/i``, ``d = 3072`` (``benchmarks/bench_memorization.py``). The strict
    bracket test this solver had before, which turned each converged Newton step into a
    bisection step, took 51 and 52 to the same roots (53 and 54 with the absolute stopping
    rule of the version before that). Where the two differ, the Newton root is within an
    ulp or two of a 40-digit (mpmath) root and the bisection-converged one off by up to
    ``tol`` (2.7e-13 in ``log delta``).
    """
    log_lam = np.log(_spectrum(spectrum))
    target = _log_n(log_n)
    u, _ = _solve_log_collapse(log_lam, np.atleast_1d(target).astype(float), tol)
    return float(u[0]) if target.ndim == 0 else u


_MAX_ITER = 200  # a safety net: bisection alone would reach tol = 1e-13 in about 60


def _solve_log_collapse(
    log_lam: np.ndarray, target: np.ndarray, tol: float
) -> tuple[np.ndarray, int]:
    """The root ``u`` of ``sum_i 1/2 softplus(log_lam_i - u) = target`` for each entry of
    ``target`` (1-D), and the number of iterations taken (:func:`log_collapse_delta`)."""
    from scipy.special import expit

    # bracket in u: I(u) - target changes sign between lo and hi
    k = log_lam.size
    lo = log_lam.min() - 2 * target / k - 1.0  # I >= k/2 log(1 + lmin/delta) > target
    hi = np.logaddexp.reduce(log_lam) - _log_expm1(2 * target / k) + 1.0  # I < target
    lo = np.minimum(lo, hi - 1.0)
    u = 0.5 * (lo + hi)
    it = 0
    while it < _MAX_ITER:
        it += 1
        v = log_lam - u[:, None]
        g = 0.5 * np.sum(np.logaddexp(0.0, v), axis=1) - target
        dg = -0.5 * np.sum(expit(v), axis=1)  # dI/du
        lo = np.where(g > 0, u, lo)
        hi = np.where(g > 0, hi, u)
        u_new = u - g / dg
        bad = ~((u_new >= lo) & (u_new <= hi))  # keep a Newton step that lands on a bracket end
        u_new = np.where(bad, 0.5 * (lo + hi), u_new)
        done = np.abs(u_new - u) <= tol * np.maximum(1.0, np.abs(u))
        u = u_new
        if np.all(done):
            break
    return u, it


def collapse_delta(n, spectrum, *, tol: float = 1e-13):
    """Solve ``log n = sum_i 1/2 log(1 + lambda_i/delta)`` for ``delta``, vectorised over
    ``n``: ``exp`` of :func:`log_collapse_delta` at ``log n`` (use that one directly when
    ``n`` or ``delta_C`` do not fit a float)."""
    out = np.exp(log_collapse_delta(np.log(_n_points(n)), spectrum, tol=tol))
    return float(out) if np.ndim(out) == 0 else out


def collapse_time(n, spectrum, process: Process | str = "ou"):
    """The collapse time ``t_C`` in ``process``'s time (OU: ``1/2 log(1 + delta_C)``)."""
    return get_process(process).time_of_delta(collapse_delta(n, spectrum))


# ---------------------------------------------------------------------------------------
# any ensemble: Monte Carlo mutual information
# ---------------------------------------------------------------------------------------
def mutual_information_mc(
    model: Ensemble, delta: float, n_samples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """``I(x0; y) = -E log p_delta(y) - d/2 log(2 pi e delta)`` by Monte Carlo over
    ``y ~ p_delta``; returns ``(I, standard error)`` in nats."""
    dl = float(positive(delta, "delta"))
    n_samples = integer(n_samples, "n_samples", 2, 10**9)
    _, y = model.sample_noised(n_samples, dl, rng)
    lp = model.log_density(y, dl)
    d = model.dim
    return (
        float(-lp.mean() - 0.5 * d * (_LOG_2PI_E + math.log(dl))),
        float(lp.std(ddof=1) / math.sqrt(n_samples)),
    )


def collapse_delta_ensemble(
    model: Ensemble,
    n,
    rng: np.random.Generator,
    *,
    n_samples: int = 4000,
    bracket=(1e-6, 1e6),
    xtol: float = 1e-4,
) -> float:
    """Collapse noise level of an ensemble with a log-density (e.g. a Gaussian mixture):
    the root of ``I(delta) = log n`` with ``I`` by Monte Carlo on common random numbers
    (the same base draws at every delta, so the estimate is smooth and monotone in
    practice). Relative accuracy is limited by the Monte Carlo error of ``I``."""
    from scipy.optimize import brentq

    n = float(_n_points(n))
    n_samples = integer(n_samples, "n_samples", 2, 10**9)
    seed = int(rng.integers(2**63))

    def g(log_d):
        return mutual_information_mc(
            model, math.exp(log_d), n_samples, np.random.default_rng(seed)
        )[0] - math.log(n)

    lo, hi = math.log(bracket[0]), math.log(bracket[1])
    if g(lo) < 0 or g(hi) > 0:
        raise DomainError(
            f"the collapse noise level of {model!r} for n={n:g} lies outside "
            f"the bracket {bracket}; widen it"
        )
    return math.exp(brentq(g, lo, hi, xtol=xtol))


# ---------------------------------------------------------------------------------------
# measurement on a training set
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExcessEntropy:
    """Monte Carlo ``f^e`` at each noise level, with standard errors; ``d * f^e`` is the
    mean posterior entropy scale over training points (nats)."""

    deltas: np.ndarray
    f: np.ndarray
    stderr: np.ndarray
    participation: np.ndarray
    n: int
    d: int

    @property
    def alpha_n(self) -> float:
        return math.log(self.n) / self.d


def excess_entropy_samples(
    train: Empirical | np.ndarray, delta: float, n_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The per-sample values of :func:`excess_entropy_empirical` at one noise level, in nats:
    ``h = lse(l) - l_nu = log(1 + sum_{mu != nu} e^{l_mu - l_nu}) >= 0`` for ``n_samples``
    queries ``y = a_nu + sqrt(delta) z``, whose mean is ``d f^e(delta)`` (the posterior
    entropy in nats), and the participation ratio of each query's weights. For statistics
    beyond the mean (bootstraps of a crossing, say)."""
    emp = train if isinstance(train, Empirical) else Empirical(train)
    if emp.n_points < 2:
        raise DomainError("the training set must hold n >= 2 points")
    dl = float(positive(delta, "delta"))
    n_samples = integer(n_samples, "n_samples", 2, 10**9)
    return _entropy_samples(emp, dl, n_samples, rng)


def _entropy_samples(emp: Empirical, delta: float, m: int, rng: np.random.Generator):
    # the draws of Empirical.sample_noised, keeping the index nu of each query
    idx = rng.integers(0, emp.n_points, size=m)
    x0 = emp.points[idx].astype(np.float64)
    y = (x0 + math.sqrt(delta) * rng.standard_normal(x0.shape)).astype(emp.dtype)
    _, lse, pr = emp.stats(y, delta)
    r = y.astype(np.float64) - x0  # the query as the kernel sees it (the set's dtype)
    self_logit = -0.5 * np.einsum("ij,ij->i", r, r) / delta
    return lse - self_logit, pr


def excess_entropy_empirical(
    train: Empirical | np.ndarray,
    deltas,
    n_samples: int,
    rng: np.random.Generator,
    *,
    progress: bool = False,
) -> ExcessEntropy:
    """Monte Carlo ``f^e(delta) = <(1/d) log P^e(y)> + alpha_n + 1/2 log(2 pi e delta)``,
    ``y ~ P^e``, at each noise level, through the streaming kernel (memory ``O(n d)``).
    Also returns the mean participation ratio.

    The estimator. With ``y = a_nu + sqrt(delta) z`` (``nu`` uniform, so ``y ~ P^e``) and
    logits ``l_mu = -|y - a_mu|^2 / (2 delta)``, ``(1/d) log P^e(y) + alpha_n +
    1/2 log(2 pi e delta) = lse(l)/d + 1/2``. Its fluctuation is dominated by the query's
    own (self) term ``l_nu = -|z|^2/2``, whose mean ``-d/2`` is known exactly; subtracting
    it leaves the per-sample value

        (lse(l) - l_nu)/d = (1/d) log(1 + sum_{mu != nu} e^{l_mu - l_nu}) >= 0,

    with the same mean (so the estimator stays unbiased) and a variance that vanishes in
    the collapsed phase. Measured against averaging ``lse/d + 1/2`` at the same cost
    (standard normal sets, d = 8..128): 3-14x smaller variance at ``delta_C``, 10-60x at
    ``20 delta_C``, 500x to 1e20x and more below ``delta_C / 5`` (see
    benchmarks/results/memorization.md). ``l_nu`` is computed from the query as the kernel
    sees it (rounded to the set's dtype).
    """
    emp = train if isinstance(train, Empirical) else Empirical(train)
    if emp.n_points < 2:
        raise DomainError("the training set must hold n >= 2 points")
    dl = positive(np.atleast_1d(deltas), "deltas").reshape(-1)
    n_samples = integer(n_samples, "n_samples", 2, 10**9)
    n, d = emp.n_points, emp.dim
    f = np.empty(dl.size)
    se = np.empty(dl.size)
    pr = np.empty(dl.size)
    it = range(dl.size)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="f^e", unit="delta")
    for i in it:
        h, p = _entropy_samples(emp, float(dl[i]), n_samples, rng)
        vals = h / d
        f[i] = vals.mean()
        se[i] = vals.std(ddof=1) / math.sqrt(n_samples)
        pr[i] = p.mean()
    return ExcessEntropy(dl, f, se, pr, n, d)


def measured_collapse_delta(fe: ExcessEntropy, level: float | None = None) -> float:
    """The noise level where the measured ``d f^e`` (mean posterior entropy) crosses
    ``level`` nats (default ``log 2``: one binary choice left), by log-linear
    interpolation between the two bracketing noise levels. Raises if it never crosses."""
    lev = math.log(2) if level is None else float(positive(level, "level"))
    order = np.argsort(fe.deltas)
    dl, h = fe.deltas[order], fe.d * fe.f[order]
    above = h > lev
    idx = np.flatnonzero(~above[:-1] & above[1:])
    if idx.size == 0:
        raise DomainError(
            f"d f^e never crosses {lev:g} nats on the noise levels given "
            f"[{dl[0]:g}, {dl[-1]:g}]; extend the range"
        )
    k = idx[0]
    x0, x1 = math.log(dl[k]), math.log(dl[k + 1])
    return math.exp(x0 + (lev - h[k]) * (x1 - x0) / (h[k + 1] - h[k]))


@dataclass(frozen=True)
class TrajectoryCollapse:
    """Along reverse trajectories: the mean participation ratio and the fraction of
    trajectories whose nearest training point already equals their final one."""

    times: np.ndarray
    deltas: np.ndarray
    participation: np.ndarray
    frozen: np.ndarray

    def collapse_delta(self, pr_level: float = 2.0) -> float:
        """Largest delta (earliest time) from which the mean participation ratio stays
        below ``pr_level``."""
        ok = self.participation < pr_level
        if not ok[-1]:
            raise DomainError("the participation ratio never drops below the level")
        k = len(ok) - 1
        while k > 0 and ok[k - 1]:
            k -= 1
        return float(self.deltas[k])


def collapse_along_trajectories(
    train: Empirical,
    process: Process | str,
    n: int,
    rng: np.random.Generator,
    *,
    method: str = "euler-maruyama",
    n_steps: int = 200,
    t_end: float | None = None,
) -> TrajectoryCollapse:
    """Run the exact empirical score backwards and record, at every grid time, the mean
    participation ratio ``1/sum w^2`` and the nearest-training-point index (one batched
    sampler call; memory ``O(n d)``)."""
    from .sampling import sample

    proc = get_process(process)
    if t_end is None:
        t_end = float(proc.time_of_delta(max(proc.delta_min, 1e-6)))

    def rec(t, x):
        dl = float(proc.delta(t))
        y = x / float(proc.alpha(t))
        pr = train.participation_ratio(y, dl).mean() if dl > 0 else 1.0
        return pr, train.nearest(y)[0]

    out = sample(
        train, n, rng, method=method, process=proc, n_steps=n_steps, t_end=t_end, record=rec
    )
    prs = np.array([r[0] for r in out.records])
    idx = np.stack([r[1] for r in out.records])
    frozen = (idx == idx[-1]).mean(axis=1)
    return TrajectoryCollapse(out.times, out.deltas, prs, frozen)


# ---------------------------------------------------------------------------------------
# phase diagram
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhaseDiagram:
    """Regimes in the (alpha_n, t) plane, t in the given process's time, ``regime`` of
    shape ``(len(times), len(alphas))``: 0 collapsed (t < t_C), 1 speciated
    (t_C <= t < t_S), 2 Brownian (t >= max(t_C, t_S)). Without speciation (top eigenvalue
    ``Lambda <= 1``, ``t_speciation`` None) there is no speciated regime: every point at or
    above the collapse line is Brownian."""

    alphas: np.ndarray
    times: np.ndarray
    t_speciation: float | None
    t_collapse: np.ndarray
    regime: np.ndarray
    process: str
    d: int

    LABELS = ("collapsed", "speciated", "Brownian")

    @property
    def log_n(self) -> np.ndarray:
        """``log n = alpha_n d`` for each alpha (``n`` itself may not fit a float)."""
        return self.alphas * self.d


def phase_diagram(
    spectrum, alphas, times, process: Process | str = "ou", d: int | None = None
) -> PhaseDiagram:
    """The phase diagram for a covariance spectrum: the speciation line
    ``t_S = time_of_delta(Lambda - 1)`` (Biroli et al. 2024, Eq. 9; independent of n; none
    when ``Lambda <= 1``) and the collapse line ``t_C(alpha_n)``, with ``log n = alpha_n d``
    (``d`` default: the number of positive eigenvalues, the intrinsic dimension). Works in
    ``log n`` throughout (:func:`log_collapse_delta`), so any ``alpha_n d >= log 2`` is
    valid, far beyond ``n = e^{709}``; a ``delta_C`` outside the process's range puts
    ``t_C`` at the range's end."""
    from .symmetry import NoSymmetryBreaking, critical_from_eigenvalue

    lam = _spectrum(spectrum)
    proc = get_process(process)
    al = positive(np.atleast_1d(alphas), "alphas").reshape(-1)
    ts = proc.check_time(np.atleast_1d(times), "times").reshape(-1)
    d = lam.size if d is None else integer(d, "d", 1, 10**9)
    log_n = al * d
    if np.any(log_n < math.log(2)):
        raise DomainError("alphas * d must be >= log 2 (at least two training points)")
    log_dc = np.asarray(log_collapse_delta(log_n, lam))
    lo, hi = math.log(proc.delta_min) if proc.delta_min > 0 else -np.inf, math.log(proc.delta_max)
    t_c = np.asarray(proc.time_of_delta(np.exp(np.clip(log_dc, lo, hi))))
    try:
        ds = critical_from_eigenvalue(lam, "speciation").delta
        t_s = float(proc.time_of_delta(min(max(ds, proc.delta_min), proc.delta_max)))
    except NoSymmetryBreaking:
        t_s = None
    tt = ts[:, None]
    if t_s is None:  # no speciation: Brownian all the way down to the collapse
        regime = np.full((ts.size, al.size), 2, dtype=np.int8)
    else:
        regime = np.ones((ts.size, al.size), dtype=np.int8)
        regime[np.broadcast_to(tt >= t_s, regime.shape)] = 2
    regime[tt < t_c[None, :]] = 0  # collapse wins where t_C > t_S
    return PhaseDiagram(al, ts, t_s, t_c, regime, proc.name, d)
