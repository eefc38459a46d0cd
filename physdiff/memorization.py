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

from ._validate import covariance_spectrum, finite_array, integer, positive, positive_grid
from .ensembles.base import Ensemble
from .ensembles.empirical import Empirical
from .errors import DomainError, InputError
from .processes import Process, get_process
from .spectra import SpectrumSummary, model_spectrum, spectrum_summary

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
    "collapse_asymptotics",
    "CollapseTable",
    "collapse_table",
    "PhaseDiagramData",
    "phase_diagram_data",
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
    dl = positive_grid(deltas, "deltas")
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
    """Run the exact empirical score backwards and record, at every time of a grid uniform
    in the process's time (``process.time_grid(n_steps)`` down to ``t_end``), the mean
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

    # records on a grid uniform in the process's time (the measurement reads "the earliest
    # time from which ..." off it), not the sampler's default grid (log-spaced on OU)
    times = proc.time_grid(n_steps, t_end=t_end)
    out = sample(train, n, rng, method=method, process=proc, times=times, record=rec)
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

    def to_labelled(self) -> dict:
        """The diagram over named coordinates ``t`` and ``alpha_n``
        (:func:`physdiff.labelled.labelled`; ``xarray.Dataset.from_dict`` reads it)."""
        from .labelled import labelled

        return labelled(
            {"t": self.times, "alpha_n": self.alphas},
            {
                "regime": (["t", "alpha_n"], self.regime),
                "t_collapse": (["alpha_n"], np.asarray(self.t_collapse, dtype=float)),
                "log_n": (["alpha_n"], self.log_n),
            },
            {
                "process": self.process,
                "d": int(self.d),
                "t_speciation": self.t_speciation,
                "regime_labels": list(self.LABELS),
            },  # fmt: skip
        )


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
    al = positive_grid(alphas, "alphas")
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


# ---------------------------------------------------------------------------------------
# the collapse table and the phase-diagram data (``physdiff collapse``, ``phase-diagram``)
# ---------------------------------------------------------------------------------------
def _times_in(proc: Process, t, name: str) -> np.ndarray:
    """``t`` as an array inside ``proc``'s range, or a DomainError naming ``name``."""
    arr = np.atleast_1d(np.asarray(t, dtype=float))
    bad = arr[(arr < proc.t_min) | (arr > proc.t_max) | ~np.isfinite(arr)]
    if bad.size:
        raise DomainError(
            f"{name}: must lie in [{proc.t_min:g}, {proc.t_max:g}] for process {proc.name}; "
            f"got {bad[0]:g}"
        )
    return arr


def _collapse_times(proc: Process, delta: float) -> tuple[float | None, dict | None, str | None]:
    """The time of ``delta`` in ``proc`` (None outside its range), the DDPM steps (None
    outside DDPM's range) and a note."""
    from .processes import DDPM, PRESETS

    note = None
    try:
        t = float(proc.time_of_delta(delta))
    except DomainError:
        t = None
        note = (
            f"delta_C = {delta:.6g} is outside the range [{proc.delta_min:.6g}, "
            f"{proc.delta_max:.6g}] that {proc.name} reaches"
        )
    ddpm = PRESETS["ddpm"]
    assert isinstance(ddpm, DDPM)
    steps = None
    if ddpm.delta_min <= delta <= ddpm.delta_max:
        steps = {r: int(ddpm.step_of_delta(delta, r)) for r in ("floor", "nearest", "ceil")}
    return t, steps, note


def collapse_asymptotics(log_n, spectrum) -> tuple[np.ndarray, np.ndarray]:
    """The small- and large-alpha_n approximations of ``delta_C`` for any spectrum (they
    reduce to :func:`collapse_delta_asymptotic` for an isotropic one):

    * small alpha_n (large delta): expand ``1/2 log(1 + x) = x/2 - x^2/4``:
      ``delta_C ~ S1/(2 log n) - S2/(2 S1)``, ``S1 = sum lambda``, ``S2 = sum lambda^2``;
    * large alpha_n (small delta): ``1/2 log(lambda/delta)`` per direction:
      ``delta_C ~ G exp(-2 log(n)/m)``, ``G`` the geometric mean of the m positive
      eigenvalues.
    """
    pos = _spectrum(spectrum)
    log_n = np.asarray(log_n, dtype=float)
    s1 = float(pos.sum())
    small = s1 / (2 * log_n) - 0.5 * float(np.sum(pos * (pos / s1)))  # S2/S1 without S2
    large = float(np.exp(np.mean(np.log(pos)))) * np.exp(-2 * log_n / pos.size)
    return small, large


_COLLAPSE_FORMULAS = {
    "criterion": "large-d REM collapse (Biroli et al. 2024, Eqs. 14-15): the excess "
    "entropy f = alpha_n - I(x0; y)/d reaches 0, i.e. log n = I(delta_C)",
    "asymptotic_formulas": {
        "small_alpha": "delta_C ~ S1/(2 log n) - S2/(2 S1), S1 = trace, S2 = sum of "
        "squares (isotropic: s^2/(2 alpha_n) - s^2/2)",
        "large_alpha": "delta_C ~ G exp(-2 log(n)/m), G the geometric mean of the m "
        "positive eigenvalues (isotropic: s^2 exp(-2 alpha_n))",
    },
}


@dataclass(frozen=True)
class CollapseTable:
    """The collapse of the exact empirical score for each number of training points.

    ``source`` describes the spectrum (:func:`model_spectrum`), ``spectrum`` summarises it,
    ``rows`` holds one JSON-ready dict per n (see :func:`collapse_table`)."""

    source: dict
    process: str
    spectrum: SpectrumSummary
    rows: tuple

    def to_dict(self) -> dict:
        s = self.spectrum
        return {
            "source": dict(self.source),
            "process": self.process,
            "criterion": _COLLAPSE_FORMULAS["criterion"],
            "spectrum": s.to_dict(),
            "excess_entropy_formula": {
                "f": "log(n)/d - I(delta)/d",
                "I": "sum_i 1/2 log(1 + lambda_i/delta)  (nats; lambda_i = 0 drop out)",
                "d": s.d,
                "intrinsic_dim": s.intrinsic_dim,
                "meaning": "d f = E[posterior entropy over training points] in the large-d "
                "limit; collapse where it reaches 0",
            },
            "asymptotic_formulas": dict(_COLLAPSE_FORMULAS["asymptotic_formulas"]),
            "results": [dict(r) for r in self.rows],
        }


def _log_points(n=None, log_n=None) -> tuple[np.ndarray, list]:
    """``log n`` and the row labels ``n`` (None where n does not fit a float)."""
    if (n is None) == (log_n is None):
        raise InputError("n: give exactly one of n and log_n")
    if n is not None:
        ns = np.atleast_1d(np.asarray(n, dtype=float)).reshape(-1)
        if ns.size == 0 or not np.all(np.isfinite(ns)):
            raise InputError("n: give at least one finite number of training points")
        if np.any(ns < 2):
            raise DomainError(f"n: must be >= 2 (training points); got {ns.min():g}")
        return np.log(ns), [int(v) if v.is_integer() and v < 2**53 else float(v) for v in ns]
    log_ns = np.atleast_1d(np.asarray(log_n, dtype=float)).reshape(-1)
    if log_ns.size == 0 or not np.all(np.isfinite(log_ns)):
        raise InputError("log_n: give at least one finite log number of training points")
    if np.any(log_ns < math.log(2)):
        raise DomainError(
            f"log_n: must be >= log 2 = {math.log(2):.6g} (n >= 2 training points); "
            f"got {log_ns.min():g}"
        )
    with np.errstate(over="ignore"):
        n_big = np.exp(log_ns)
    return log_ns, [float(v) if np.isfinite(v) else None for v in n_big]


def collapse_table(
    *,
    n=None,
    log_n=None,
    process: Process | str = "ou",
    t=None,
    **spectrum_args,
) -> CollapseTable:
    """The memorisation collapse (docs/theory.md section 3; Biroli et al. 2024) for each
    number of training points.

    The spectrum comes from ``spectrum_args`` (:func:`model_spectrum`: ``d``,
    ``variance``, ``top_eigenvalue``, ``intrinsic_dim`` or ``spectrum``). Give ``n`` or its
    natural log ``log_n`` (for n beyond a float, ``e^709.78``: everything works in
    ``log n``). Each row has ``alpha_n = log(n)/d`` (and ``/m``, m the number of positive
    eigenvalues), the collapse noise level ``delta_C`` solving ``log n = sum_i 1/2 log(1 +
    lambda_i/delta)`` (:func:`log_collapse_delta`), its time in ``process`` (None outside
    the range), OU time and DDPM steps, the asymptotics (:func:`collapse_asymptotics`),
    for an isotropic spectrum the closed form ``s^2/(n^{2/m} - 1)`` (Eq. 15), and at each
    time of ``t`` the large-d excess entropy ``f = alpha_n - I(delta)/d``.
    """
    proc = get_process(process)
    spec, source = model_spectrum(**spectrum_args)
    log_n, labels = _log_points(n, log_n)
    summ = spectrum_summary(spec)
    dim, m = summ.d, summ.intrinsic_dim
    ts = deltas_t = info_t = None
    if t is not None:
        ts = _times_in(proc, t, "t")
        deltas_t = np.atleast_1d(np.asarray(proc.delta(ts), dtype=float))
        if np.any(deltas_t <= 0):
            k = int(np.argmax(deltas_t <= 0))
            raise DomainError(
                f"t: delta(t) = 0 at t = {ts[k]:g} (the data end), where the excess "
                f"entropy is -inf; give t > {proc.t_min:g}"
            )
        info_t = np.atleast_1d(mutual_information_gaussian(deltas_t, spec[spec > 0]))
    # in log delta: delta_C underflows for large alpha_n (d = 1, n = 1e300: e^-1381)
    log_dc = np.atleast_1d(log_collapse_delta(log_n, spec))
    small, large = collapse_asymptotics(log_n, spec)
    rows = []
    for i, nv in enumerate(labels):
        dl = math.exp(float(log_dc[i]))
        time, steps, note = _collapse_times(proc, dl)
        row: dict = {
            "n": nv,
            "log_n": float(log_n[i]),
            "alpha_n": float(log_n[i] / dim),
            "alpha_n_intrinsic": float(log_n[i] / m),
            "delta": dl,
            "log_delta": float(log_dc[i]),
            "log_snr": -float(log_dc[i]) + 0.0,
            "ou_time": 0.5 * math.log1p(dl),
            "time": time,
            "ddpm_step": steps,
        }
        if summ.isotropic:
            iso = math.exp(log_collapse_delta_isotropic(log_n[i], m, summ.top_eigenvalue))
            row["isotropic_closed_form"] = {"delta": iso, "ou_time": 0.5 * math.log1p(iso)}
        asym = {}
        for key, val in (("small_alpha", small[i]), ("large_alpha", large[i])):
            val = float(val)
            # val/delta_C - 1 in logs (both may underflow); None where it is not finite
            rel = float(np.expm1(math.log(val) - log_dc[i])) if val > 0 else -1.0
            asym[key] = {
                "delta": val if val > 0 else None,
                "ou_time": 0.5 * math.log1p(val) if val > 0 else None,
                "rel_error": rel if math.isfinite(rel) else None,
            }
        row["asymptotic"] = asym
        if ts is not None:
            row["excess_entropy"] = [
                {
                    "t": float(tk),
                    "delta": float(dk),
                    "mutual_information": float(ik),
                    "f": float((log_n[i] - ik) / dim),
                    "f_intrinsic": float((log_n[i] - ik) / m),
                    "collapsed": bool(ik >= log_n[i]),
                }
                for tk, dk, ik in zip(ts, deltas_t, info_t, strict=True)
            ]
        notes = [note] if note else []
        if dl == 0.0:
            notes.append(f"delta_C = e^({float(log_dc[i]):.6g}) underflows a float (log_delta)")
        if steps is None:
            notes.append(f"delta_C = {dl:.6g} is outside the DDPM range")
        if notes:
            row["note"] = "; ".join(notes)
        rows.append(row)
    return CollapseTable(source, proc.name, summ, tuple(rows))


@dataclass(frozen=True)
class PhaseDiagramData:
    """The phase diagram (:class:`PhaseDiagram`) on its grids with what it was computed
    from: ``source`` (:func:`model_spectrum`), the ``spectrum`` and its summary, the noise
    levels ``deltas`` of the times, ``log_delta_collapse`` of the alphas and
    ``delta_speciation`` (None without speciation)."""

    diagram: PhaseDiagram
    source: dict
    spectrum: np.ndarray
    summary: SpectrumSummary
    deltas: np.ndarray
    log_delta_collapse: np.ndarray
    delta_speciation: float | None

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the diagram, as written to an ``.npz`` file."""
        p = self.diagram
        ts = np.nan if p.t_speciation is None else p.t_speciation  # npz: NaN is "none"
        return {
            "alphas": p.alphas,
            "log_n": p.log_n,
            "times": p.times,
            "deltas": self.deltas,
            "t_collapse": np.asarray(p.t_collapse, dtype=float),
            "delta_collapse": np.exp(self.log_delta_collapse),
            "t_speciation": np.asarray(ts),
            "regime": p.regime.astype(np.int8),
            "spectrum": self.spectrum,
        }

    def to_dict(self) -> dict:
        p, m = self.diagram, self.summary.intrinsic_dim
        proc = get_process(p.process)
        dcs = np.exp(self.log_delta_collapse)
        return {
            "source": dict(self.source),
            "process": p.process,
            "spectrum": self.summary.to_dict(),
            "alpha_definition": f"alpha_n = log(n)/m, m = {m} positive eigenvalues (the "
            "intrinsic dimension; normal directions drop out)",
            "m": m,
            "criterion": {
                "collapse": "log n = sum_i 1/2 log(1 + lambda_i/delta_C) (Biroli et al. "
                "2024, Eq. 15 and its spectrum sum rule)",
                "speciation": "delta_S = Lambda - 1, Lambda the top eigenvalue (Biroli et "
                "al. 2024, Eq. 9); none when Lambda <= 1",
            },
            "labels": {str(k): v for k, v in enumerate(p.LABELS)},
            "regime_axes": ["times", "alphas"],
            "t_speciation": p.t_speciation,
            "delta_speciation": self.delta_speciation,
            "regimes_present": [p.LABELS[k] for k in range(len(p.LABELS)) if np.any(p.regime == k)],
            "alphas": p.alphas.tolist(),
            "log_n": (p.alphas * m).tolist(),
            "times": p.times.tolist(),
            "deltas": self.deltas.tolist(),
            "t_collapse": np.asarray(p.t_collapse, dtype=float).tolist(),
            "delta_collapse": dcs.tolist(),
            "log_delta_collapse": self.log_delta_collapse.tolist(),
            "t_collapse_clipped": ((dcs < proc.delta_min) | (dcs > proc.delta_max)).tolist(),
            "regime": p.regime.astype(int).tolist(),
            "eigenvalues": self.spectrum.tolist(),
        }


def phase_diagram_data(
    *,
    process: Process | str = "ou",
    alpha_min: float | None = None,
    alpha_max: float | None = None,
    n_alpha: int = 400,
    log_alpha: bool = True,
    t_min: float | None = None,
    t_max: float | None = None,
    n_t: int = 400,
    **spectrum_args,
) -> PhaseDiagramData:
    """The (alpha_n, t) phase diagram (:func:`phase_diagram`) on default grids.

    The spectrum comes from ``spectrum_args`` (:func:`model_spectrum`). ``alpha_n =
    log(n)/m`` (m the number of positive eigenvalues) on ``n_alpha`` points from
    ``alpha_min`` (default 0.01, at least ``log(2)/m``) to ``alpha_max`` (default 1),
    geometric with ``log_alpha``; times of ``process`` on ``n_t`` points from ``t_min``
    (default the process's start) to ``t_max`` (default: where ``delta = 4 max(delta_C
    (alpha_min), delta_S)``, inside the range). Raises :class:`~physdiff.errors.InputError`
    naming the argument.
    """
    proc = get_process(process)
    spec, source = model_spectrum(**spectrum_args)
    summ = spectrum_summary(spec)
    m = summ.intrinsic_dim
    n_alpha, n_t = integer(n_alpha, "n_alpha", 2, 20000), integer(n_t, "n_t", 2, 20000)
    lo = math.log(2) / m
    for name, v in (("alpha_min", alpha_min), ("alpha_max", alpha_max)):
        if v is not None and not (math.isfinite(v) and lo <= v):
            raise DomainError(
                f"{name}: must be finite and >= log(2)/m = {lo:.6g} for m = {m} "
                f"(n = e^(alpha_n m) >= 2); got {v!r}"
            )
    a_hi = 1.0 if alpha_max is None else float(alpha_max)
    a_lo = max(lo * (1 + 1e-9), min(0.01, a_hi / 100)) if alpha_min is None else float(alpha_min)
    if not a_lo < a_hi:
        raise DomainError(f"alpha_min: must be < alpha_max = {a_hi:g}; got {a_lo:g}")
    alphas = np.geomspace(a_lo, a_hi, n_alpha) if log_alpha else np.linspace(a_lo, a_hi, n_alpha)
    pos = spec[spec > 0]
    lam = float(pos.max())
    delta_s = lam - 1.0 if lam > 1 else None
    t0 = proc.t_min if t_min is None else float(_times_in(proc, t_min, "t_min")[0])
    if t_max is None:
        d_hi = 4.0 * max(math.exp(log_collapse_delta(a_lo * m, pos)), delta_s or 0.0)
        t1 = float(proc.time_of_delta(min(max(d_hi, proc.delta_min), proc.delta_max)))
        if t1 <= t0:
            t1 = proc.t_max
    else:
        t1 = float(_times_in(proc, t_max, "t_max")[0])
    if not t0 < t1:
        raise DomainError(f"t_min: must be < t_max = {t1:g}; got {t0:g}")
    times = np.linspace(t0, t1, n_t)
    return PhaseDiagramData(
        phase_diagram(pos, alphas, times, proc),
        source,
        spec,
        summ,
        np.asarray(proc.delta(times), dtype=float),
        np.asarray(log_collapse_delta(alphas * m, pos), dtype=float),
        delta_s,
    )
