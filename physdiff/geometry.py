"""Geometric memorisation: tangent directions lost one by one (docs/theory.md section 4).

Source: Achilli, Ventura, Silvestri, Pham, Raya, Krotov, Lucibello, Ambrogioni, "Losing
dimensions: geometric memorization in generative diffusion" (arXiv 2410.08727). Data lie on
an m-dimensional linear manifold with stds ``s_1..s_m`` along an orthonormal basis
``b_1..b_m`` (:class:`physdiff.ensembles.LinearManifold`); a score model trained on n of
them is probed at ``y = x0 + sqrt(delta) z`` (VE frame, ``delta = sigma^2``).

What is measured
----------------
The score Jacobian is ``J = -I/delta + Cov(x0 | y)/delta^2`` (Tweedie, docs/theory.md
section 1). Along a unit vector ``b`` its quadratic form is

    b^T J b = -1/delta + q_b / delta,      q_b = b^T Cov(x0 | y) b / delta,

so ``q_b`` places the eigenvalue between the normal bulk (``q = 0``: ``-1/delta``) and zero.
For Gaussian data of variance ``s^2`` along ``b`` the posterior variance is
``delta s^2/(s^2 + delta)`` and the eigenvalue ``-1/(s^2 + delta)``. Two per-direction
criteria follow, both read off the posterior variance ``V_i = E_y[b_i^T Cov(x0|y) b_i]``:

* ``"retained"``: the retained fraction ``r_i = V_i / V_i^pop`` of the population
  (n -> infinity) posterior variance; ``r_i = 1`` generalises, ``r_i = 0`` memorises (the
  eigenvalue has joined the normal bulk). Direction i is lost below the ``delta`` where
  ``r_i`` falls to ``level`` (default 1/2). This separates memorisation from the plain
  signal-to-noise fading of a direction at ``delta >~ s_i^2``.
* ``"jacobian"``: ``q_i = V_i / delta`` (the eigenvalue of ``delta J`` plus one); a
  direction is resolved by the spectrum while ``q_i > level`` (default 1/2: the eigenvalue
  of ``delta J`` lies above ``-1/2``). It is resolved only in a window; the lower end is the
  memorisation threshold returned here (``inf`` if never resolved).

The same rule counts the local dimension from the spectrum (:func:`local_dimension`).

Models of the per-direction threshold
-------------------------------------
(a) ``"gated-rem"``, the authors' Gaussian-energy REM (rebuilt from their code; docs/theory.md
section 4), in the VE noise variance ``t = delta``: per direction

    t_{c,i}(t) = sqrt((g S4/2 + t s_i^2) / (2 ln n)),    S4 = sum_j s_j^4,

gate ``g = 0`` for norm-normalised data (``|a|^2`` is the same for every training point, so
its fluctuation drops out of the energy) and ``g = 1`` otherwise; global
``t_{c0} = t_{c,i}(0) = sqrt(g S4 / (4 ln n))``. It is the Gaussian REM rule "condensed when
the energy std reaches sqrt(2 ln n)", with the energy ``|y - a|^2/(2t)`` of a training point
``a`` whose variance over the training set is ``(g S4/2 + t s_i^2)/t^2`` when ``y_i^2 ~ t``
and only direction i is kept in the ``y.a`` term. Direction i is condensed at noise ``t``
when ``t < t_{c,i}(t)``; since ``t_{c,i}`` grows like ``sqrt(t)``, this holds exactly
below the self-consistent root ``t_i = t_{c,i}(t_i)``:

    2 ln n t^2 - s_i^2 t - g S4/2 = 0,  t_i = (s_i^2 + sqrt(s_i^4 + 4 g S4 ln n)) / (4 ln n);

for ``g = 0`` this is ``t*_i = s_i^2/(2 ln n)``. Both gates order the directions the same
way (``t_i`` increases with ``s_i``: high variance lost first), ``g = 1`` compresses the
spread towards ``t_{c0}``. A qualitative model: it ignores that all directions share one
posterior over training points. It is kept as the paper's model; the exact empirical score
refutes it (tests/test_lost_dimensions.py, the paper's data d = 30, stds 1 / 0.3 / 0.01,
n = 1000: ``delta_measured / t_i`` = 0.69 / 0.80 / 0.81 on Gaussian data, which it also
orders the wrong way round, and 6.3 / 82 / 7e4 on unit-norm data).

(b) ``"effective-sample-size"``, derived from the exact empirical score. For ``y`` drawn
around training point ``nu`` (``y ~ P^e``), the posterior weight of ``nu`` against the
other ``n - 1`` points is, at its typical (annealed) value, ``1 / n_eff`` with

    n_eff(delta) = 1 + (n - 1) exp(-I(delta)),    I = I(x0; y)

(``log(Z_bulk / w_nu) = log(n - 1) + log E_a N(y; a, delta) - log N(y; a_nu, delta)``, whose
mean over ``y`` is ``log(n - 1) - I``; Biroli et al. 2024's collapse ``I = log n`` is
``n_eff ~ 2``). The posterior is then carried by ``n_eff`` roughly equally weighted draws from
the population posterior, and the weighted covariance of ``k`` i.i.d. draws with weights
``w`` has mean ``(1 - sum w^2)`` times the population one, ``1 - 1/k`` for equal weights:

    V_i(delta) = (1 - 1/n_eff(delta)) V_i^pop(delta),   r_i = 1 - 1/n_eff = expit(log(n-1) - I).

So under ``"retained"`` every direction is lost at the same noise level,
``I(delta) = log(n - 1) - logit(level)`` (the REM sum rule over the tangent spectrum,
``I = sum_j 1/2 log(1 + s_j^2/delta)`` for Gaussian data); under ``"jacobian"`` direction i
is lost where ``V_i^pop/delta * (1 - 1/n_eff) = level``, which for Gaussian data reads
``s_i^2/(s_i^2 + delta) (1 - 1/n_eff) = level``: the low-variance directions are lost first
(at larger delta), the opposite of (a)'s ordering. For norm-normalised data with unequal
stds ``I`` and ``V^pop`` come from a reference sample (:func:`manifold_population`).

(b) is the library's prediction, derived step by step in ``theory/geometry.py``
(docs/theory.md section 4). Its one approximation is the annealing: the bulk's log mean
weight and ``sum w^2`` are replaced by their typical values. At the threshold the bulk holds
``(n - 1) e^{-I} ~ 1`` effective points, where the quenched log mean lies below the annealed
one, so the point a query came from keeps more weight than ``1/n_eff``: a direction the
weights ignore keeps exactly ``1 - E[sum w^2]`` of its variance, which falls to 1/2 at a
noise 0.1-0.2 higher in ``log delta`` than (b) says; the informative directions agree within
0.04 (tests/test_lost_dimensions.py, the paper's data, Gaussian and unit-norm).

The measurement (:func:`retained_variance`) runs the same estimator on any score model:
the exact empirical score (posterior weights, Rao-Blackwellised), an exact ensemble
(closed-form posterior covariance) or a trained network (autograd Jacobian).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import as_points, delta_for_batch, finite_array, integer, positive, positive_grid
from .ensembles.base import Ensemble
from .ensembles.empirical import Empirical
from .ensembles.manifold import LinearManifold
from .errors import DomainError, InputError, NotSupportedError, ShapeError
from .memorization import _n_points as _n
from .memorization import _solve_log_collapse, mutual_information_gaussian

__all__ = [
    "gated_rem_direction_noise",
    "gated_rem_global_noise",
    "gated_rem_critical_noise",
    "mutual_information_manifold",
    "effective_sample_size",
    "ess_retained_fraction",
    "ManifoldPopulation",
    "manifold_population",
    "DirectionThresholds",
    "gated_rem_thresholds",
    "ess_thresholds",
    "direction_thresholds",
    "directional_posterior_variance",
    "RetainedVariance",
    "retained_variance",
    "measured_thresholds",
    "probe_points",
    "jacobian_spectrum",
    "LocalDimension",
    "local_dimension",
    "gaussian_jacobian_eigenvalue",
]

MODELS = ("effective-sample-size", "gated-rem")
CRITERIA = ("retained", "jacobian")


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------
def _stds(stds, name: str = "stds") -> np.ndarray:
    s = finite_array(stds, name).reshape(-1)
    if s.size == 0:
        raise InputError(f"{name} must hold at least one standard deviation")
    if np.any(s <= 0):
        raise DomainError(f"{name} must be > 0 (tangent stds); got min {s.min():.6g}")
    return s


def _level(level) -> float:
    lev = float(level)
    if not 0.0 < lev < 1.0:
        raise DomainError(f"level must lie in (0, 1); got {level!r}")
    return lev


def _criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise InputError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    return criterion


def _basis(basis, d: int) -> np.ndarray:
    b = finite_array(basis, "basis")
    if b.ndim == 1:
        b = b[:, None]
    if b.ndim != 2 or b.shape[0] != d or not 1 <= b.shape[1] <= d:
        raise ShapeError(f"basis must have shape ({d}, k) with 1 <= k <= {d}; got {b.shape}")
    if np.max(np.abs(b.T @ b - np.eye(b.shape[1]))) > 1e-8:
        raise InputError("basis must have orthonormal columns (basis.T @ basis = I)")
    return b


def _gate(normalized: bool) -> float:
    return 0.0 if bool(normalized) else 1.0


# ---------------------------------------------------------------------------------------
# (a) the authors' gated Gaussian-energy REM
# ---------------------------------------------------------------------------------------
def gated_rem_direction_noise(t, stds, n, *, normalized: bool = False):
    """``t_{c,i}(t) = sqrt((g S4/2 + t s_i^2) / (2 ln n))``, shape ``t.shape + (m,)``.

    Achilli et al. 2024 (code; docs/theory.md section 4), VE noise variance ``t = delta``,
    ``S4 = sum_j s_j^4``, gate ``g = 0`` if ``normalized`` else 1. Direction i is condensed
    at noise ``t`` when ``t < t_{c,i}(t)``.
    """
    s = _stds(stds)
    tt = positive(t, "t", allow_zero=True)
    ln_n = float(np.log(_n(n)))
    s4 = float(np.sum(s**4))
    return np.sqrt((_gate(normalized) * s4 / 2 + tt[..., None] * s**2) / (2 * ln_n))


def gated_rem_global_noise(stds, n, *, normalized: bool = False):
    """``t_{c0} = sqrt(g sum_j s_j^4 / (4 ln n))`` (0 for normalised data); vectorised over
    ``n``. Equals ``t_{c,i}(0)`` for every i."""
    s = _stds(stds)
    ln_n = np.log(_n(n))
    out = np.sqrt(_gate(normalized) * np.sum(s**4) / (4 * ln_n))
    return float(out) if out.ndim == 0 else out


def gated_rem_critical_noise(stds, n, *, normalized: bool = False):
    """Self-consistent per-direction threshold of the gated REM: the positive root of
    ``t = t_{c,i}(t)``, i.e. of ``2 ln n t^2 - s_i^2 t - g S4/2 = 0``:

        t_i = (s_i^2 + sqrt(s_i^4 + 4 g S4 ln n)) / (4 ln n)

    (``g = 0``: ``t*_i = s_i^2/(2 ln n)``). Direction i is lost for ``delta < t_i``. Shape
    ``n.shape + (m,)``; the ``g = 0`` branch is evaluated without the square root so that it
    equals ``s_i^2/(2 ln n)`` to rounding.
    """
    s = _stds(stds)
    ln_n = np.log(_n(n))[..., None]
    s2 = s**2
    g = _gate(normalized)
    if g == 0.0:
        return s2 / (2 * ln_n)
    disc = np.sqrt(s2**2 + 4 * g * np.sum(s2**2) * ln_n)
    return (s2 + disc) / (4 * ln_n)


# ---------------------------------------------------------------------------------------
# (b) the effective-sample-size model of the exact empirical score
# ---------------------------------------------------------------------------------------
def gaussian_jacobian_eigenvalue(variance, delta):
    """Score-Jacobian eigenvalue of a Gaussian direction of variance ``s^2``:
    ``-1/(s^2 + delta)`` (``-1/delta`` for a normal direction, ``s^2 = 0``)."""
    s2 = positive(variance, "variance", allow_zero=True)
    dl = positive(delta, "delta")
    out = -1.0 / (s2 + dl)
    return float(out) if np.ndim(out) == 0 else out


def mutual_information_manifold(delta, stds) -> np.ndarray | float:
    """``I(x0; y) = sum_j 1/2 log(1 + s_j^2/delta)`` for Gaussian data on a linear manifold
    (normal directions carry no information), vectorised over ``delta``: docs/theory.md
    section 3, :func:`physdiff.memorization.mutual_information_gaussian` with the
    tangent spectrum ``s_j^2``."""
    return mutual_information_gaussian(delta, _stds(stds) ** 2)


def _ess_from_information(n, information):
    return 1.0 + np.exp(np.log(n - 1.0) - information)


def effective_sample_size(delta, n, stds):
    """``n_eff = 1 + (n - 1) exp(-I(delta))`` for Gaussian manifold data (model (b)):
    the annealed number of training points carrying the posterior at ``y ~ P^e``. Compare
    with the measured participation ratio ``1/sum w^2``."""
    nn = _n(n)
    out = _ess_from_information(nn, np.asarray(mutual_information_manifold(delta, stds)))
    return float(out) if np.ndim(out) == 0 else out


def ess_retained_fraction(delta, n, stds):
    """Model (b)'s retained fraction ``r = 1 - 1/n_eff = expit(log(n - 1) - I(delta))``,
    the same for every tangent direction (Gaussian manifold data)."""
    from scipy.special import expit

    nn = _n(n)
    out = expit(np.log(nn - 1.0) - np.asarray(mutual_information_manifold(delta, stds)))
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class ManifoldPopulation:
    """The n -> infinity (population) quantities of a manifold on a grid of noise levels:
    ``information`` ``I(x0; y)`` (nats) and ``mmse`` ``(len(deltas), m)``, the posterior
    variance ``E_y[b_i^T Cov(x0|y) b_i]`` along each basis vector, with standard errors
    (zero when exact). ``reference_participation`` is the mean participation ratio of the
    reference sample (Monte Carlo only): the estimates are reliable when it is >> 1."""

    deltas: np.ndarray
    information: np.ndarray
    information_se: np.ndarray
    mmse: np.ndarray
    mmse_se: np.ndarray
    exact: bool
    reference_participation: np.ndarray | None = None

    def at(self, deltas) -> tuple[np.ndarray, np.ndarray]:
        """``(I, mmse)`` interpolated log-linearly at ``deltas`` (inside the grid)."""
        dl = positive_grid(deltas, "deltas")
        lo, hi = self.deltas.min(), self.deltas.max()
        if np.any(dl < lo * (1 - 1e-12)) or np.any(dl > hi * (1 + 1e-12)):
            raise DomainError(
                f"deltas must lie in the population grid [{lo:g}, {hi:g}]; got "
                f"[{dl.min():g}, {dl.max():g}]"
            )
        x, xq = np.log(self.deltas), np.log(dl)
        info = np.interp(xq, x, self.information)
        mm = np.stack([np.exp(np.interp(xq, x, np.log(c))) for c in self.mmse.T], axis=1)
        return info, mm


def manifold_population(
    manifold: LinearManifold,
    deltas,
    rng: np.random.Generator | None = None,
    *,
    n_reference: int = 20000,
    n_probe: int = 2000,
    method: str = "auto",
) -> ManifoldPopulation:
    """Population mutual information and per-direction posterior variance of a manifold.

    Gaussian data: exact, ``I = sum_j 1/2 log(1 + s_j^2/delta)``, ``mmse_i = delta s_i^2 /
    (s_i^2 + delta)``. Norm-normalised data: Monte Carlo with a reference sample of
    ``n_reference`` points in tangent coordinates (normal directions cancel from every
    posterior) through the streaming empirical kernel, on fresh probes
    ``y = x0 + sqrt(delta) z`` (x0 independent of the reference):

        I    ~ E[-|z|^2/2 - logsumexp_k(-|y - a_k|^2/(2 delta)) + log n_ref]
        mmse ~ E[(x0_i - E_ref[x0_i | y])^2]

    Both carry a bias from the finite reference of order ``1/PR_ref`` (the mean
    participation ratio of the reference sample, reported as ``reference_participation``).
    ``method``: ``"auto"`` (exact for Gaussian data, else Monte Carlo), ``"exact"`` or
    ``"monte-carlo"`` (the brute-force twin of the closed form, for Gaussian data too).
    """
    methods = ("auto", "exact", "monte-carlo")
    if method not in methods:
        raise InputError(f"method must be one of {methods}; got {method!r}")
    if method == "exact" and manifold.normalized:
        raise NotSupportedError("norm-normalised data have no closed-form population here")
    if not isinstance(manifold, LinearManifold):
        raise InputError(f"manifold must be a LinearManifold; got {type(manifold).__name__}")
    dl = positive_grid(deltas, "deltas")
    s = manifold.stds
    if not manifold.normalized and method != "monte-carlo":
        info = np.asarray(mutual_information_manifold(dl, s)).reshape(-1)
        mm = dl[:, None] * s**2 / (s**2 + dl[:, None])
        return ManifoldPopulation(dl, info, np.zeros_like(info), mm, np.zeros_like(mm), True)
    if not isinstance(rng, np.random.Generator):
        raise InputError("rng (a numpy Generator) is needed for the Monte Carlo population")
    n_reference = integer(n_reference, "n_reference", 2, 10**8)
    n_probe = integer(n_probe, "n_probe", 2, 10**8)
    basis, mu = manifold.basis, manifold.mean
    ref = (manifold.sample(n_reference, rng) - mu) @ basis
    emp = Empirical(ref)
    m = s.size
    info = np.empty(dl.size)
    info_se = np.empty(dl.size)
    mm = np.empty((dl.size, m))
    mm_se = np.empty((dl.size, m))
    prs = np.empty(dl.size)
    for k, d_k in enumerate(dl):
        x0 = (manifold.sample(n_probe, rng) - mu) @ basis
        z = rng.standard_normal(x0.shape)
        y = x0 + math.sqrt(d_k) * z
        den, lse, pr = emp.stats(y, d_k)
        vals = -0.5 * np.einsum("ij,ij->i", z, z) - lse + math.log(n_reference)
        err = (x0 - den) ** 2
        info[k], info_se[k] = vals.mean(), vals.std(ddof=1) / math.sqrt(n_probe)
        mm[k], mm_se[k] = err.mean(0), err.std(0, ddof=1) / math.sqrt(n_probe)
        prs[k] = pr.mean()
    return ManifoldPopulation(dl, info, info_se, mm, mm_se, False, prs)


# ---------------------------------------------------------------------------------------
# (c) per-direction thresholds under each model
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DirectionThresholds:
    """Per-direction critical noise levels (VE ``delta = sigma^2``): direction i is lost to
    memorisation for ``delta < deltas[i]``. ``inf``: never resolved (``"jacobian"``
    criterion). ``NaN`` (measured thresholds only): the crossing lies outside the measured
    grid, so the threshold is unknown; it propagates into :attr:`group_deltas` and
    :attr:`group_stderr`, :meth:`lost` reports such a direction as not lost and
    :meth:`order` puts it last. ``stderr`` is given for measured thresholds (else zeros)."""

    model: str
    criterion: str
    level: float
    stds: np.ndarray
    deltas: np.ndarray
    stderr: np.ndarray
    n: float
    normalized: bool

    @property
    def groups(self) -> np.ndarray:
        """The distinct stds (variance groups), in decreasing order."""
        return np.unique(self.stds)[::-1]

    @property
    def group_deltas(self) -> np.ndarray:
        """Mean critical noise of each group (order of :attr:`groups`)."""
        return np.array([self.deltas[self.stds == g].mean() for g in self.groups])

    @property
    def group_stderr(self) -> np.ndarray:
        """Standard error of :attr:`group_deltas` (from the per-direction errors)."""
        out = []
        for g in self.groups:
            e = self.stderr[self.stds == g]
            if np.any(np.isnan(e)):
                out.append(np.nan)
            else:
                out.append(math.sqrt(np.sum(e**2)) / e.size if np.all(np.isfinite(e)) else np.inf)
        return np.array(out)

    def lost(self, delta) -> np.ndarray:
        """Boolean mask of the directions lost at noise level ``delta``."""
        return float(positive(delta, "delta")) < self.deltas

    def order(self) -> np.ndarray:
        """Direction indices in the order they are lost as the noise decreases."""
        return np.argsort(-self.deltas, kind="stable")


def _manifold_args(manifold, normalized) -> tuple[np.ndarray, bool]:
    if isinstance(manifold, LinearManifold):
        if normalized is not None and bool(normalized) != manifold.normalized:
            raise InputError("normalized contradicts manifold.normalized; leave it out")
        return manifold.stds, manifold.normalized
    return _stds(manifold), bool(normalized)


def gated_rem_thresholds(manifold, n, *, normalized: bool | None = None) -> DirectionThresholds:
    """Model (a) thresholds ``t_i`` (:func:`gated_rem_critical_noise`) for a
    :class:`LinearManifold` or an array of stds (then pass ``normalized``)."""
    s, norm = _manifold_args(manifold, normalized)
    nn = float(_n(n))
    t = gated_rem_critical_noise(s, nn, normalized=norm)
    return DirectionThresholds("gated-rem", "condensation", 0.0, s, t, np.zeros_like(t), nn, norm)


def _crossing(x: np.ndarray, y: np.ndarray, se: np.ndarray, level: float, first: bool):
    """Up-crossing of ``level`` by ``y(x)`` (x ascending) by linear interpolation: the
    first (``first``) or last one; ``(x_c, se_x)`` or ``None`` when there is none."""
    up = np.flatnonzero((y[:-1] < level) & (y[1:] >= level))
    if up.size == 0:
        return None
    k = up[0] if first else up[-1]
    dy = y[k + 1] - y[k]
    xc = x[k] + (level - y[k]) * (x[k + 1] - x[k]) / dy
    # propagate the standard errors of the two bracketing values
    a = (x[k + 1] - x[k]) / dy
    g0 = -a * (y[k + 1] - level) / dy
    g1 = -a * (level - y[k]) / dy
    return xc, math.sqrt((g0 * se[k]) ** 2 + (g1 * se[k + 1]) ** 2)


def ess_thresholds(
    manifold,
    n,
    *,
    normalized: bool | None = None,
    criterion: str = "retained",
    level: float = 0.5,
    population: ManifoldPopulation | None = None,
) -> DirectionThresholds:
    """Model (b) thresholds (effective sample size, see the module docstring).

    Gaussian data (exact roots in ``log delta``): ``"retained"``, every direction at
    ``I(delta) = log(n - 1) - logit(level)`` (``inf`` if ``log(n-1) <= logit(level)``);
    ``"jacobian"``, the lower root of ``s_i^2/(s_i^2 + delta) expit(log(n-1) - I) = level``
    (``inf`` where the maximum over delta stays below ``level``). Norm-normalised data need
    ``population`` (:func:`manifold_population`); the crossings are then interpolated on its
    grid (``DomainError`` if a crossing lies outside it).
    """
    from scipy.special import expit, logit

    s, norm = _manifold_args(manifold, normalized)
    crit = _criterion(criterion)
    lev = _level(level)
    nn = float(_n(n))
    m = s.size
    out = np.empty(m)
    if population is None:
        if norm:
            raise InputError(
                "norm-normalised data need population=manifold_population(manifold, "
                "deltas, rng): I and the posterior variance have no closed form"
            )
        target = math.log(nn - 1.0) - float(logit(lev))

        def info(u):
            return 0.5 * float(np.sum(np.log1p(s**2 * math.exp(-u))))

        if crit == "retained":
            if target <= 0:
                out[:] = np.inf
            else:
                # I(delta) = target is the collapse equation of memorization (docs/theory.md
                # section 3) with log n -> target: its safeguarded Newton solver in log delta
                u, _ = _solve_log_collapse(2 * np.log(s), np.array([target]), 1e-13)
                out[:] = math.exp(float(u[0]))
        else:
            from scipy.optimize import brentq

            for i, si in enumerate(s):

                def h(u, si=si):
                    return si**2 / (si**2 + math.exp(u)) * expit(math.log(nn - 1) - info(u))

                # h rises from 0 (memorised, small delta) to a maximum and falls to 0
                # (noise-dominated, delta >> s_i^2): the first up-crossing on a fine grid in
                # log delta brackets the memorisation root, refined by Brent's method
                grid = np.linspace(2 * math.log(si) - 40.0, 2 * math.log(si) + 10.0, 2001)
                info_g = 0.5 * np.sum(np.log1p(s**2 * np.exp(-grid)[:, None]), axis=1)
                hv = si**2 / (si**2 + np.exp(grid)) * expit(math.log(nn - 1) - info_g)
                up = np.flatnonzero((hv[:-1] < lev) & (hv[1:] >= lev))
                if up.size == 0:
                    out[i] = np.inf
                    continue
                j = up[0]
                out[i] = math.exp(
                    brentq(lambda u, h=h: h(u) - lev, grid[j], grid[j + 1], xtol=1e-14)
                )
        return DirectionThresholds(
            "effective-sample-size", crit, lev, s, out, np.zeros(m), nn, norm
        )

    if not isinstance(population, ManifoldPopulation):
        raise InputError("population must come from manifold_population()")
    if population.mmse.shape[1] != m:
        raise ShapeError(f"population has {population.mmse.shape[1]} directions; stds has {m}")
    order = np.argsort(population.deltas)
    dl = population.deltas[order]
    r = expit(math.log(nn - 1.0) - population.information[order])
    x = np.log(dl)
    zero = np.zeros_like(x)
    for i in range(m):
        y = r if crit == "retained" else r * population.mmse[order, i] / dl
        hit = _crossing(x, y, zero, lev, first=(crit == "jacobian"))
        if hit is None:
            if crit == "jacobian" and np.all(y < lev):
                out[i] = np.inf
                continue
            raise DomainError(
                f"model (b) for direction {i} does not cross level {lev:g} on the population "
                f"grid [{dl[0]:g}, {dl[-1]:g}]; extend it"
            )
        out[i] = math.exp(hit[0])
    return DirectionThresholds("effective-sample-size", crit, lev, s, out, np.zeros(m), nn, norm)


def direction_thresholds(
    manifold,
    n,
    *,
    model: str = "effective-sample-size",
    normalized: bool | None = None,
    criterion: str = "retained",
    level: float = 0.5,
    population: ManifoldPopulation | None = None,
) -> DirectionThresholds:
    """Per-direction (and, through :attr:`DirectionThresholds.groups`, per-group) critical
    noise levels of a manifold with ``n`` training points under ``model``:
    ``"effective-sample-size"`` (b, :func:`ess_thresholds`; the default, the library's
    prediction, tests/test_lost_dimensions.py) or ``"gated-rem"`` (a, the paper's model,
    :func:`gated_rem_thresholds`; ``criterion`` and ``level`` do not apply; refuted by the
    exact score, docs/theory.md section 4). The measured counterpart is
    :func:`measured_thresholds`."""
    if model == "gated-rem":
        return gated_rem_thresholds(manifold, n, normalized=normalized)
    if model == "effective-sample-size":
        return ess_thresholds(
            manifold,
            n,
            normalized=normalized,
            criterion=criterion,
            level=level,
            population=population,
        )
    raise InputError(f"model must be one of {MODELS}; got {model!r}")


# ---------------------------------------------------------------------------------------
# measurement: posterior variance along given directions, on any score model
# ---------------------------------------------------------------------------------------
def _chunk(n_points: int, per: int, budget: int = 2**22) -> int:
    return max(1, budget // max(1, n_points * per))


def _empirical_directional(emp: Empirical, basis: np.ndarray, y: np.ndarray, dl: np.ndarray):
    pts = emp.points.astype(np.float64, copy=False)
    coords = (pts - emp.mean) @ basis  # (n, k), centred: less cancellation below
    n, k = coords.shape
    var = np.empty((y.shape[0], k))
    pr = np.empty(y.shape[0])
    step = _chunk(n, k)
    for s in range(0, y.shape[0], step):
        w = emp.posterior(y[s : s + step], dl[s : s + step])  # (c, n)
        mean = w @ coords
        diff = coords[None] - mean[:, None]  # (c, n, k): exact centring at the posterior mean
        var[s : s + step] = np.einsum("cn,cnk->ck", w, diff * diff)
        pr[s : s + step] = 1.0 / np.einsum("cn,cn->c", w, w)
    return var, pr


def directional_posterior_variance(model, basis, y, delta) -> np.ndarray:
    """``b_i^T Cov(x0 | y) b_i`` for each query and basis column, shape ``(len(y), k)``.

    :class:`Empirical`: from the posterior weights, ``sum_mu w_mu (c_mu - c_bar)_i^2`` with
    ``c = B^T a`` (never forms a d x d matrix); other exact ensembles: their closed-form
    posterior covariance; any other score model (a trained network): Tweedie's second
    order, ``delta + delta^2 b^T J b`` with ``J`` its score Jacobian (autograd for
    :class:`physdiff.nn.NetworkScoreModel`; only the symmetric part of J enters).
    """
    d = int(model.dim)
    b = _basis(basis, d)
    y = as_points(y, d, "y", dtype=np.float64)
    dl = delta_for_batch(delta, y.shape[0])[:, 0]
    if isinstance(model, Empirical):
        return _empirical_directional(model, b, y, dl)[0]
    if isinstance(model, Ensemble):
        cov = model.posterior_covariance(y, dl)
        return np.einsum("ik,nij,jk->nk", b, cov, b)
    jac = _score_jacobian(model, y, dl)
    quad = np.einsum("ik,nij,jk->nk", b, jac, b)
    return dl[:, None] + dl[:, None] ** 2 * quad


def _score_jacobian(model, y, dl) -> np.ndarray:
    fn = getattr(model, "score_jacobian", None)
    if not callable(fn):
        raise NotSupportedError(f"{type(model).__name__} has no score_jacobian")
    return np.asarray(fn(y, dl), dtype=np.float64)


@dataclass(frozen=True)
class RetainedVariance:
    """Posterior variance along each basis vector at each noise level, averaged over probes
    ``y = x0 + sqrt(delta) z``: ``variance`` ``(len(deltas), k)`` with standard errors, the
    ``reference`` (population) variance, ``ratio = variance/reference`` (the retained
    fraction ``r``) and ``visible = variance/delta`` (``q``: the eigenvalue of ``delta J``
    along the direction, plus one). ``participation`` is the mean participation ratio for
    an :class:`Empirical` model (else ``None``)."""

    deltas: np.ndarray
    variance: np.ndarray
    stderr: np.ndarray
    reference: np.ndarray
    reference_se: np.ndarray
    participation: np.ndarray | None
    n_probe: int

    @property
    def ratio(self) -> np.ndarray:
        return self.variance / self.reference

    @property
    def ratio_stderr(self) -> np.ndarray:
        rel = np.hypot(
            self.stderr / np.maximum(self.variance, 1e-300), self.reference_se / self.reference
        )
        return np.abs(self.ratio) * rel

    @property
    def visible(self) -> np.ndarray:
        return self.variance / self.deltas[:, None]

    def critical_deltas(
        self, criterion: str = "retained", level: float = 0.5, *, strict: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-direction critical noise and its standard error, by log-linear interpolation
        between the two grid points that bracket the crossing (the error propagates the
        standard errors of those two points).

        ``"retained"``: the last up-crossing of ``ratio`` through ``level`` (delta
        ascending); ``"jacobian"``: the first up-crossing of ``visible`` (the memorisation
        end of the window where the direction is resolved).

        Directions without a crossing on the grid do not stop the others:

        * ``inf`` (error ``inf``), ``"jacobian"`` only: never resolved, ``visible`` stays
          below ``level`` at every noise level of the grid (lost throughout);
        * ``NaN`` (error ``NaN``): the crossing lies outside the grid, below it (already
          above ``level`` at the smallest delta) or, under ``"retained"``, above it (the
          ratio never reaches ``level``): extend the grid to measure it.

        ``strict=True`` raises :class:`~physdiff.errors.DomainError` for the ``NaN`` case
        instead.
        """
        crit = _criterion(criterion)
        lev = _level(level)
        order = np.argsort(self.deltas)
        x = np.log(self.deltas[order])
        if crit == "retained":
            val, se = self.ratio[order], self.ratio_stderr[order]
        else:
            val, se = self.visible[order], (self.stderr / self.deltas[:, None])[order]
        k = val.shape[1]
        out, err = np.empty(k), np.empty(k)
        for i in range(k):
            hit = None
            if val[0, i] >= lev:
                why = (
                    f"direction {i} is still above level {lev:g} at the smallest delta "
                    f"{np.exp(x[0]):g}; extend the grid downwards"
                )
            else:
                hit = _crossing(x, val[:, i], se[:, i], lev, first=(crit == "jacobian"))
                if hit is None and crit == "jacobian":  # never resolved
                    out[i], err[i] = np.inf, np.inf
                    continue
                why = (
                    f"the retained fraction of direction {i} never reaches {lev:g} on "
                    f"[{np.exp(x[0]):g}, {np.exp(x[-1]):g}]; extend the grid upwards"
                )
            if hit is None:  # the crossing lies outside the grid
                if strict:
                    raise DomainError(why)
                out[i], err[i] = np.nan, np.nan
                continue
            out[i] = math.exp(hit[0])
            err[i] = out[i] * hit[1]
        return out, err


def retained_variance(
    model,
    basis,
    x0,
    deltas,
    rng: np.random.Generator,
    *,
    n_probe: int = 1000,
    reference: ManifoldPopulation | np.ndarray | None = None,
    stds=None,
) -> RetainedVariance:
    """Measure the per-direction posterior variance of ``model`` at each noise level.

    Probes ``y = x0[j] + sqrt(delta) z`` with ``j`` uniform over the rows of ``x0`` (the
    training set gives ``y ~ P^e``, docs/theory.md section 4; generated samples give the
    probe of the spectrum at generated points). The variance along ``b_i`` comes from
    :func:`directional_posterior_variance`; its mean over probes carries a standard error.
    The reference (the population posterior variance) is, in order of precedence:
    ``reference`` (a :class:`ManifoldPopulation`, interpolated, or an array
    ``(len(deltas), k)``), the Gaussian value ``delta s_i^2/(s_i^2 + delta)`` for ``stds``,
    or the same with ``s_i^2`` the variance of ``x0`` along ``b_i`` (the linear-estimator
    value: exact for Gaussian data, an upper bound otherwise, since MMSE <= LMMSE).
    """
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    d = int(model.dim)
    b = _basis(basis, d)
    x0 = as_points(x0, d, "x0", dtype=np.float64)
    dl = positive_grid(deltas, "deltas")
    n_probe = integer(n_probe, "n_probe", 2, 10**8)
    k = b.shape[1]
    if isinstance(reference, ManifoldPopulation):
        if reference.mmse.shape[1] != k:
            raise ShapeError(f"reference has {reference.mmse.shape[1]} directions; basis has {k}")
        ref = reference.at(dl)[1]
        ref_se = np.zeros_like(ref)
        if not reference.exact:
            x = np.log(reference.deltas)
            ref_se = np.stack([np.interp(np.log(dl), x, c) for c in reference.mmse_se.T], axis=1)
    elif reference is not None:
        ref = positive(reference, "reference")
        if ref.shape != (dl.size, k):
            raise ShapeError(f"reference must have shape ({dl.size}, {k}); got {ref.shape}")
        ref_se = np.zeros_like(ref)
    else:
        if stds is not None:
            v = _stds(stds)
            if v.size != k:
                raise ShapeError(f"stds must hold {k} values (one per basis column)")
            v = v**2
        else:
            c = (x0 - x0.mean(0)) @ b
            v = np.mean(c * c, axis=0)
            if np.any(v <= 0):
                raise DomainError("x0 has zero variance along a basis vector; pass stds")
        ref = dl[:, None] * v / (v + dl[:, None])
        ref_se = np.zeros_like(ref)
    var = np.empty((dl.size, k))
    se = np.empty((dl.size, k))
    prs = np.empty(dl.size) if isinstance(model, Empirical) else None
    for i, d_i in enumerate(dl):
        idx = rng.integers(0, x0.shape[0], size=n_probe)
        y = x0[idx] + math.sqrt(d_i) * rng.standard_normal((n_probe, d))
        if isinstance(model, Empirical):
            vals, pr = _empirical_directional(model, b, y, np.full(n_probe, d_i))
            prs[i] = pr.mean()
        else:
            vals = directional_posterior_variance(model, b, y, d_i)
        var[i] = vals.mean(0)
        se[i] = vals.std(0, ddof=1) / math.sqrt(n_probe)
    return RetainedVariance(dl, var, se, ref, ref_se, prs, n_probe)


def measured_thresholds(
    measurement: RetainedVariance,
    stds,
    n,
    *,
    normalized: bool = False,
    criterion: str = "retained",
    level: float = 0.5,
    strict: bool = False,
) -> DirectionThresholds:
    """The measured per-direction thresholds (:meth:`RetainedVariance.critical_deltas`)
    as a :class:`DirectionThresholds` named ``"measured"``, comparable with the models:
    ``NaN`` where a direction's crossing lies outside the measured grid (``strict=True``
    raises instead), ``inf`` where it is never resolved (``"jacobian"``)."""
    s = _stds(stds)
    if s.size != measurement.variance.shape[1]:
        raise ShapeError(f"stds must hold {measurement.variance.shape[1]} values")
    dc, se = measurement.critical_deltas(criterion, level, strict=strict)
    return DirectionThresholds(
        "measured", criterion, _level(level), s, dc, se, float(_n(n)), bool(normalized)
    )


# ---------------------------------------------------------------------------------------
# score-Jacobian spectra and the local dimension
# ---------------------------------------------------------------------------------------
def probe_points(x0, delta, n_probe: int, rng: np.random.Generator) -> np.ndarray:
    """``n_probe`` probes ``x0[j] + sqrt(delta) z`` with ``j`` uniform over the rows of
    ``x0`` (docs/theory.md section 4: the spectrum of J at ``x0 + sigma * probe``)."""
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    x0 = finite_array(x0, "x0")
    if x0.ndim != 2:
        raise ShapeError(f"x0 must have shape (N, d); got {x0.shape}")
    n_probe = integer(n_probe, "n_probe", 1, 10**9)
    dl = float(positive(delta, "delta"))
    idx = rng.integers(0, x0.shape[0], size=n_probe)
    return x0[idx] + math.sqrt(dl) * rng.standard_normal((n_probe, x0.shape[1]))


def _empirical_spectrum(emp: Empirical, y: np.ndarray, dl: np.ndarray, rel_floor: float):
    """Eigenvalues of ``J = -I/delta + Cov_w/delta^2`` through the weighted Gram matrix of
    the active points: with ``X = diag(sqrt(w)) (A - m)`` (k x d), ``Cov_w = X^T X`` shares
    its nonzero eigenvalues with ``X X^T`` (k x k); the other ``d - k`` are 0."""
    from ._kernels import _BLAS

    pts = emp.points.astype(np.float64, copy=False)
    n, d = pts.shape
    out = np.empty((y.shape[0], d))
    step = _chunk(n, 1)
    # many small, tall-skinny products: one BLAS thread (OpenBLAS's threads make X^T X of a
    # 10^4 x 20 block 100-1000x slower when the cores are busy, measured here)
    with _BLAS.one_thread():
        for s in range(0, y.shape[0], step):
            w = emp.posterior(y[s : s + step], dl[s : s + step])
            for j, wj in enumerate(w):
                live = wj > rel_floor * wj.max()
                wl = wj[live] / wj[live].sum()
                a = pts[live]
                x = np.sqrt(wl)[:, None] * (a - wl @ a)
                kk = x.shape[0]
                lam = np.linalg.eigvalsh(x @ x.T if kk < d else x.T @ x)
                cov_eig = np.zeros(d)
                r = min(kk, d)
                cov_eig[:r] = np.maximum(lam[::-1][:r], 0.0)
                dd = dl[s + j]
                out[s + j] = -1.0 / dd + cov_eig / dd**2
    return out


def jacobian_spectrum(
    model, y, delta, *, kind: str = "auto", rel_floor: float = 1e-16
) -> np.ndarray:
    """Spectrum of the score Jacobian at each query, shape ``(len(y), d)``, sorted in
    decreasing order (tangent directions, near 0, first; normal ones near ``-1/delta``).

    ``kind``:

    * ``"auto"``: the eigenvalues of J for an exact model (J is symmetric: a Hessian of
      ``log p``), of its symmetric part ``(J + J^T)/2`` for any other model (a trained
      network's Jacobian is not exactly symmetric);
    * ``"symmetric"``: eigenvalues of the symmetric part, for every model;
    * ``"singular"``: singular values of J (>= 0, decreasing; normal ones near ``1/delta``).

    :class:`Empirical` (``"auto"``/``"symmetric"``): closed form through the kernel,
    ``J = -I/delta + Cov_w/delta^2`` (docs/theory.md section 1), with the nonzero eigenvalues of
    ``Cov_w`` from the ``k x k`` weighted Gram matrix of the ``k`` active points (weights
    above ``rel_floor`` times the largest) when ``k < d``, never a d x d matrix per point
    then. Other models use their ``score_jacobian`` (autograd for networks).
    """
    kinds = ("auto", "symmetric", "singular")
    if kind not in kinds:
        raise InputError(f"kind must be one of {kinds}; got {kind!r}")
    d = int(model.dim)
    y = as_points(y, d, "y", dtype=np.float64)
    dl = delta_for_batch(delta, y.shape[0])[:, 0]
    rel_floor = float(positive(rel_floor, "rel_floor"))
    if kind != "singular" and isinstance(model, Empirical):
        return _empirical_spectrum(model, y, dl, rel_floor)
    jac = _score_jacobian(model, y, dl)
    if kind == "singular":
        return np.linalg.svd(jac, compute_uv=False)
    sym = 0.5 * (jac + np.swapaxes(jac, 1, 2))
    return np.linalg.eigvalsh(sym)[:, ::-1]


@dataclass(frozen=True)
class LocalDimension:
    """Local dimension read from Jacobian spectra at each probe point: ``dims`` per point,
    their ``mean`` and standard error ``stderr`` (``std/sqrt(N)``, the spread over probe
    points), and the ``rule`` used."""

    dims: np.ndarray
    mean: float
    stderr: float
    rule: str


def local_dimension(
    spectrum, delta, *, rule: str = "half", level: float = 0.5, singular: bool = False
) -> LocalDimension:
    """Local dimension from score-Jacobian spectra ``(N, d)`` at noise ``delta``.

    Rules (``v = delta * lambda``; for ``singular`` values ``v = -delta * sigma``):

    * ``"half"``: the number of eigenvalues with ``v > -level`` (default 1/2): directions
      whose posterior variance ``delta (1 + v)`` exceeds ``(1 - level) delta``, i.e. the
      eigenvalue lies nearer to 0 than to the normal bulk ``-1/delta``. A Gaussian
      direction of variance ``s^2`` counts iff ``s^2 > delta`` (level 1/2).
    * ``"gap"``: the position of the largest gap in the sorted ``log(max(-v, 1e-12))``
      (eigenvalues above the gap are tangent). Parameter-free, but with several variance
      groups the largest gap may fall between two tangent groups.
    """
    rules = ("half", "gap")
    if rule not in rules:
        raise InputError(f"rule must be one of {rules}; got {rule!r}")
    lev = _level(level)
    sp = finite_array(spectrum, "spectrum")
    if sp.ndim == 1:
        sp = sp[None]
    if sp.ndim != 2 or sp.shape[1] < 1:
        raise ShapeError(f"spectrum must have shape (N, d); got {sp.shape}")
    dl = delta_for_batch(delta, sp.shape[0])
    v = -dl * sp if singular else dl * sp
    if rule == "half":
        dims = np.sum(v > -lev, axis=1)
    else:
        if sp.shape[1] < 2:
            raise ShapeError("the gap rule needs at least two eigenvalues per point")
        lg = np.sort(np.log(np.maximum(-v, 1e-12)), axis=1)
        dims = np.argmax(np.diff(lg, axis=1), axis=1) + 1
    dims = dims.astype(np.int64)
    n = dims.size
    se = float(dims.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return LocalDimension(dims, float(dims.mean()), se, rule)
