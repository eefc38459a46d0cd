"""Symmetry breaking, speciation and cloning (docs/theory.md section 2).

At high noise the generative dynamics have one stable fixed point near the data mean; at
a critical noise level it loses stability and the trajectories commit to one part of the
data (spontaneous symmetry breaking: Raya & Ambrogioni 2023; speciation: Biroli et al.
2024). Which noise level is "critical" depends on the criterion, and this module names it
every time.

**One mechanism for both dynamical criteria.** Write the generative (reverse-time) drift
of a process, ``-f x + g^2 score_t(x)``, in the VE frame ``x = alpha y``. With
``g^2 = alpha^2 d delta/dt`` it vanishes where

    score(y, delta) = c y,        c(delta) = f / (d delta/dt),

and its stability matrix there is ``J(y) - c I`` (``J`` the score Jacobian). The potential
whose negative gradient is that field is ``U(y) = -log p_delta(y) + c |y|^2 / 2``.

* Criterion (a), the log-density (the denoiser, the rescaled dynamics): ``c = 0``. The
  centre loses stability when the top eigenvalue of ``J`` crosses 0, i.e. when
  ``delta = lambda``, ``lambda`` the top eigenvalue of ``Cov(x0 | y = centre)``. Two deltas
  at +-m: ``delta_c = m^2``.
* Criterion (b), the raw SDE drift of a process (Raya & Ambrogioni's potential
  ``u = beta (-x^2/4 - log p_t)`` for VP processes). For every variance-preserving process
  ``c = -alpha^2/2 = -1/(2 (1 + delta))``; the centre loses stability when
  ``-1/delta + lambda/delta^2 = -1/(2 (1 + delta))``, which for a constant ``lambda`` gives
  ``delta_c = lambda - 1 + sqrt(lambda^2 + 1)``, i.e. ``theta^4 + 2 lambda theta^2 - 1 = 0``
  with ``theta = alpha`` and OU time ``t_c = asinh(lambda)/2``. Its fixed points obey
  ``(1 + theta^2) x* = 2 theta E[x0 | x*]``. Processes with zero drift (VE, EDM) have
  ``c = 0``: criterion (b) is then criterion (a) and is refused as ill-posed.
* Speciation (Biroli et al. 2024, Eq. 9): ``Lambda e^{-2 t_S} = 1``, ``t_S = log(Lambda)/2``
  in OU time, ``Lambda`` the top eigenvalue of the data covariance; as a noise level
  ``delta_S = e^{2 t_S} - 1 = Lambda - 1``.

**Cloning** (Biroli et al. 2024, section 3): for the symmetric mixture of two Gaussians
``N(+-m, s^2 I)``, two copies of the reverse process started from the same ``x_t`` end in
the same class with probability ``phi = (1 + E_z tanh(q + sqrt(q) z))/2``, with the
signal-to-noise ratio ``q = |m|^2 theta^2 / Gamma_t``, ``Gamma_t = 1 - e^{-2t} + s^2 e^{-2t}``;
in the VE frame ``q = |m|^2 / (s^2 + delta)`` (schedule free).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._fixed_point import (
    FixedPoint,
    _stability_eigenvalues,
    drift_field,
    find_fixed_point,
    stability_matrix,
)
from ._validate import (
    as_points,
    covariance_spectrum,
    finite_array,
    integer,
    positive,
    positive_grid,
)
from .ensembles.base import Ensemble, ScoreModel
from .errors import DomainError, InputError, NoSymmetryBreaking, PhysdiffError
from .examples import symmetric_pair
from .processes import DDPM, OU, PRESETS, Process, get_process

__all__ = [
    "CRITERIA",
    "NoSymmetryBreaking",
    "CriticalPoint",
    "drift_constant",
    "drift_field",
    "potential",
    "stability_matrix",
    "fixed_points_1d",
    "bifurcation_diagram",
    "BifurcationDiagram",
    "find_fixed_point",
    "FixedPoint",
    "critical_two_deltas",
    "critical_from_eigenvalue",
    "critical_point",
    "CriticalTable",
    "critical_table",
    "speciation_time",
    "cloning_probability",
    "measure_cloning",
    "CloningMeasurement",
    "DataStatistics",
    "data_statistics",
    "LowRankStart",
    "late_start_delta",
    "late_start",
]

CRITERIA = ("log-density", "sde-drift", "speciation")
"""The criteria: (a) log-density, (b) the raw SDE drift of a process, Biroli's speciation."""

_SOURCES = {
    "log-density": "criterion (a): log-density / denoiser (Raya & Ambrogioni 2023; "
    "docs/theory.md section 2)",
    "sde-drift": "criterion (b): raw SDE drift potential (Raya & Ambrogioni 2023, Eq. 7; "
    "docs/theory.md section 2)",
    "speciation": "speciation Lambda e^{-2 t_S} = 1 (Biroli et al. 2024, Eq. 9)",
}


def _criterion(criterion: str) -> str:
    c = str(criterion).lower()
    aliases = {
        "a": "log-density",
        "b": "sde-drift",
        "vp-drift": "sde-drift",
        "biroli": "speciation",
    }
    c = aliases.get(c, c)
    if c not in CRITERIA:
        raise InputError(f"criterion must be one of {CRITERIA} (or 'a', 'b'); got {criterion!r}")
    return c


# ---------------------------------------------------------------------------------------
# the critical point as a noise level, convertible to any process
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CriticalPoint:
    """A critical noise-to-signal variance ``delta`` and the criterion that defined it.

    ``process`` is the process a process-dependent criterion (b) was computed for (the
    critical ``delta`` is then specific to that process's drift).
    """

    criterion: str
    delta: float
    source: str = ""
    process: str | None = None
    details: dict = field(default_factory=dict, compare=False)

    def time(self, process: Process | str = "ou") -> float:
        """The critical time in ``process``'s own time (a DDPM step index for ``ddpm``)."""
        return float(get_process(process).time_of_delta(self.delta))

    @property
    def ou_time(self) -> float:
        """``t = log(1 + delta)/2``."""
        return 0.5 * math.log1p(self.delta)

    def ddpm_step(self, rounding: str = "nearest", ddpm: DDPM | None = None) -> int:
        """The DDPM step at this noise level (see :meth:`DDPM.step_of_delta`)."""
        return int((ddpm or DDPM()).step_of_delta(self.delta, rounding))

    def table(self, processes=None) -> dict:
        """Delta, OU time, the time in each process (``None`` if out of its range) and the
        DDPM steps: a JSON-ready dict."""
        out: dict = {
            "criterion": self.criterion,
            "delta": self.delta,
            "ou_time": self.ou_time,
            "source": self.source,
            "process": self.process,
            "times": {},
        }
        for name, proc in (processes or PRESETS).items():
            proc = get_process(proc)
            try:
                out["times"][name] = self.time(proc)
            except DomainError:
                out["times"][name] = None
        ddpm = DDPM()
        if ddpm.delta_min <= self.delta <= ddpm.delta_max:
            out["ddpm_step"] = {r: self.ddpm_step(r, ddpm) for r in ("floor", "nearest", "ceil")}
        else:
            out["ddpm_step"] = None
        return out


# ---------------------------------------------------------------------------------------
# the drift, its potential and its stability, for any criterion
# ---------------------------------------------------------------------------------------
def drift_constant(delta, criterion: str = "log-density", process: Process | str | None = None):
    """``c(delta) = f / (d delta/dt)``: the generative drift vanishes where ``score = c y``.

    ``0`` for criterion (a); for criterion (b), the value of ``process`` (``-1/(2(1+delta))``
    for every variance-preserving process). Raises for a process without drift.
    """
    crit = _criterion(criterion)
    delta = positive(delta, "delta")
    if crit == "log-density":
        return np.zeros_like(delta) if delta.ndim else 0.0
    if crit == "speciation":
        raise InputError("speciation is a criterion on the data spectrum, not a drift")
    if process is None:
        raise InputError("criterion 'sde-drift' needs a process (e.g. 'ou' or 'vp-linear')")
    proc = get_process(process)
    t = proc.time_of_delta(delta)
    f = np.asarray(proc.drift_coefficient(t))
    if np.all(f == 0):
        raise InputError(
            f"process {proc!r} has no SDE drift (f = 0), so criterion (b) equals criterion (a); "
            "use a variance-preserving process (ou, vp-linear, vp-cosine, ddpm)"
        )
    c = f / np.asarray(proc.ddelta_dt(t))
    return float(c) if c.ndim == 0 else c


def potential(model: Ensemble, y, delta, c=0.0) -> np.ndarray:
    """``U(y) = -log p_delta(y) + c |y|^2 / 2`` (criterion (a): ``c = 0``), whose negative
    gradient is :func:`drift_field`."""
    y = np.asarray(y, dtype=float)
    return -model.log_density(y, delta) + 0.5 * np.reshape(c, (-1,)) * np.sum(y * y, axis=1)


# ---------------------------------------------------------------------------------------
# fixed points
# ---------------------------------------------------------------------------------------
def fixed_points_1d(
    model: ScoreModel,
    delta: float,
    c: float = 0.0,
    *,
    bounds: tuple[float, float] | None = None,
    grid: int = 401,
):
    """All fixed points of the 1-D drift ``score(y) - c y`` in ``bounds``, with stability.

    Brackets every sign change on a grid of ``grid`` points (re-sampled finer where two
    roots may hide between grid points, see :func:`bifurcation_diagram`) and refines each
    by bisection to machine precision. Returns ``(points, slopes)``: the roots and the
    drift's slope ``J - c`` there (negative = stable).
    """
    diag = bifurcation_diagram(model, [delta], c=[c], bounds=bounds, grid=grid)
    return diag.points[0], diag.slopes[0]


@dataclass(frozen=True)
class BifurcationDiagram:
    """Fixed points of a 1-D drift over noise levels: ``points[i]`` and ``slopes[i]`` are
    arrays for ``deltas[i]`` (slope < 0: stable)."""

    deltas: np.ndarray
    points: list
    slopes: list

    def stable(self, i: int) -> np.ndarray:
        return self.points[i][self.slopes[i] < 0]

    def unstable(self, i: int) -> np.ndarray:
        return self.points[i][self.slopes[i] >= 0]

    def n_stable(self) -> np.ndarray:
        return np.array([np.sum(s < 0) for s in self.slopes])


def _default_bounds(model) -> tuple[float, float]:
    try:
        mu = float(np.asarray(model.mean).reshape(-1)[0])
        sd = math.sqrt(float(np.asarray(model.covariance).reshape(-1)[0]))
    except Exception:  # noqa: BLE001 - models without moments: a generic window
        return (-10.0, 10.0)
    half = 4 * sd + 4.0
    return (mu - half, mu + half)


def bifurcation_diagram(
    model: ScoreModel, deltas, c=0.0, *, bounds=None, grid: int = 401, refine: int = 60
) -> BifurcationDiagram:
    """Fixed points and their stability for every noise level in ``deltas`` (1-D models).

    The drift ``f(y) = score(y) - c y`` and its slope ``f'`` are evaluated once on the
    ``(delta, y)`` mesh (``grid`` points per noise level over ``bounds``); every sign change
    of ``f`` between neighbours brackets a root. A cell where ``f`` is not monotone (its end
    slopes disagree with each other or with the secant) and comes within about one slope
    step of zero may hide a pair of roots closer than the grid spacing (near a fold or a
    pitchfork): it is re-sampled 8 times finer, recursively, down to ``1e-11`` of the window.
    All brackets are then refined together by bisection (at most ``refine`` halvings,
    stopping at adjacent floating-point numbers). A 1-D :class:`GaussianMixture` (point
    masses included) is evaluated by its closed form, ``f = sum_k p_k(y) a_k - c y`` and
    ``f' = sum_k p_k (a_k^2 - 1/s_k) - (sum_k p_k a_k)^2 - c`` with ``s_k = v_k + delta`` and
    ``a_k = (mu_k - y)/s_k``, without per-call overhead; any other model through
    ``model.score`` (its slope on the mesh by central differences, at the roots by
    ``model.score_jacobian``). ``c`` is a scalar or one value per delta
    (criterion (b): :func:`drift_constant`).
    """
    from .ensembles.mixture import GaussianMixture

    _require_model(model, "model", ("dim", "score"))
    if int(model.dim) != 1:
        raise InputError(f"bifurcation_diagram needs a 1-D model; got dim={model.dim}")
    deltas = positive_grid(deltas, "deltas")
    cs = np.broadcast_to(finite_array(c, "c"), deltas.shape).astype(float)
    grid = integer(grid, "grid", 3, 10**7)
    lo, hi = (float(v) for v in (bounds if bounds is not None else _default_bounds(model)))
    if not hi > lo:
        raise InputError(f"bounds must satisfy lo < hi; got {bounds!r}")
    nd = deltas.shape[0]

    if isinstance(model, GaussianMixture) and type(model)._score is GaussianMixture._score:
        mus = model.means[:, 0]
        vs = np.array([float(g.covariance.reshape(-1)[0]) for g in model.components])
        with np.errstate(divide="ignore"):
            logw = np.log(model.weights)

        def drift(y, dl, cc, slope=False):  # broadcastable arguments; closed form
            # components on the leading axis: reductions over it stay vectorised
            s = vs.reshape((-1,) + (1,) * np.ndim(y)) + dl
            a = (mus.reshape(s.shape[:1] + (1,) * (s.ndim - 1)) - y) / s
            logit = logw.reshape(s.shape[:1] + (1,) * (s.ndim - 1)) - 0.5 * (
                np.log(s) + (a * a) * s
            )
            p = np.exp(logit - logit.max(axis=0))
            p /= np.sum(p, axis=0)
            f = np.sum(p * a, axis=0)
            if not slope:
                return f - cc * y
            return f - cc * y, np.sum(p * (a * a - 1.0 / s), axis=0) - f * f - cc

    else:

        def drift(y, dl, cc, slope=False):  # through the model; slope by differences
            y, dl, cc = np.broadcast_arrays(y, dl, cc)
            if not slope:
                return model.score(y.reshape(-1, 1), dl.reshape(-1))[:, 0].reshape(y.shape) - cc * y
            eps = 1e-7 * (hi - lo)
            pts = np.stack([y, y - eps, y + eps])
            s = model.score(pts.reshape(-1, 1), np.tile(dl.reshape(-1), 3))[:, 0]
            s = s.reshape(pts.shape) - cc * pts
            return s[0], (s[2] - s[1]) / (2 * eps)

    zero_d, zero_y = [], []  # exact zeros at sample points
    br_d, br_a, br_b, br_fa = [], [], [], []  # sign-change brackets
    h_min = 1e-11 * (hi - lo)
    ys = np.linspace(lo, hi, grid)
    F, D = drift(ys[None, :], deltas[:, None], cs[:, None], slope=True)
    floor = 1e-13 * np.max(np.abs(F), axis=1)  # variation below this is round-off
    r, i = np.nonzero(F == 0)
    zero_d.append(r)
    zero_y.append(ys[i])
    # the cells, flattened: row (delta index), ends, values and slopes at the ends
    rows = np.repeat(np.arange(nd), grid - 1)
    A, B = np.tile(ys[:-1], nd), np.tile(ys[1:], nd)
    FA, FB, DA, DB = (X.ravel() for X in (F[:, :-1], F[:, 1:], D[:, :-1], D[:, 1:]))
    sub = np.linspace(0.0, 1.0, 9)
    while rows.size:
        h = B - A
        sec = FB - FA
        dmax = np.maximum(np.abs(DA), np.abs(DB))
        wavy = (DA * DB < 0) | (DA * sec < 0) | (DB * sec < 0)
        hide = (
            wavy
            & (np.minimum(np.abs(FA), np.abs(FB)) <= 2.0 * h * dmax)
            & (h * dmax > floor[rows])
            & (h > h_min)
        )
        ch = (np.sign(FA) * np.sign(FB) < 0) & ~hide
        br_d.append(rows[ch])
        br_a.append(A[ch])
        br_b.append(B[ch])
        br_fa.append(FA[ch])
        if not np.any(hide):
            break
        rows, A, B = rows[hide], A[hide], B[hide]
        Y = A[:, None] + (B - A)[:, None] * sub
        Y[:, -1] = B
        F, D = drift(Y, deltas[rows][:, None], cs[rows][:, None], slope=True)
        F[:, 0], F[:, -1] = FA[hide], FB[hide]  # the parent's ends, as sampled
        D[:, 0], D[:, -1] = DA[hide], DB[hide]
        r, i = np.nonzero(F[:, 1:-1] == 0)
        zero_d.append(rows[r])
        zero_y.append(Y[r, i + 1])
        k = sub.size - 1
        rows = np.repeat(rows, k)
        A, B = Y[:, :-1].ravel(), Y[:, 1:].ravel()
        FA, FB, DA, DB = (X.ravel() for X in (F[:, :-1], F[:, 1:], D[:, :-1], D[:, 1:]))

    i_d = np.concatenate(br_d)
    a, b, fa = np.concatenate(br_a), np.concatenate(br_b), np.concatenate(br_fa)
    dl_r, c_r = deltas[i_d], cs[i_d]
    sfa = np.sign(fa)
    for _ in range(refine):
        mid = 0.5 * (a + b)
        if not np.any((mid > a) & (mid < b)):
            break  # every bracket is two adjacent floating-point numbers
        left = np.sign(drift(mid, dl_r, c_r)) == sfa
        a = np.where(left, mid, a)
        b = np.where(left, b, mid)
    roots = np.concatenate([0.5 * (a + b), *zero_y])
    owner = np.concatenate([i_d, *zero_d])
    if roots.size:
        J = model.score_jacobian(roots.reshape(-1, 1), deltas[owner])[:, 0, 0] - cs[owner]
    else:
        J = roots
    order = np.lexsort((roots, owner))
    roots, owner, J = roots[order], owner[order], J[order]
    cut = np.searchsorted(owner, np.arange(1, nd))
    return BifurcationDiagram(deltas, np.split(roots, cut), np.split(J, cut))


# ---------------------------------------------------------------------------------------
# critical points
# ---------------------------------------------------------------------------------------
def critical_two_deltas(
    m: float = 1.0, criterion: str = "log-density", process: Process | str | None = None
) -> CriticalPoint:
    """Closed forms for two point masses at ``+-m`` (``lambda = Lambda = m^2``)."""
    m = float(finite_array(m, "m"))
    if m == 0:
        raise NoSymmetryBreaking("two deltas at +-0 are one point: no symmetry to break")
    if not _M_MIN <= abs(m) <= _M_MAX:
        # lambda = m^2 must be a normal float64 (neither overflowing nor underflowing)
        raise DomainError(
            f"m must satisfy {_M_MIN:.3g} <= |m| <= {_M_MAX:.3g} (m^2 a finite, normal "
            f"float64); got m = {m:g}"
        )
    return critical_from_eigenvalue(m * m, criterion, process)


_M_MAX = math.sqrt(np.finfo(np.float64).max)
_M_MIN = math.sqrt(np.finfo(np.float64).tiny)


def critical_from_eigenvalue(
    eigenvalue, criterion: str = "log-density", process: Process | str | None = None
) -> CriticalPoint:
    """Closed forms in terms of a top eigenvalue.

    ``eigenvalue`` is a number (the top eigenvalue) or a whole spectrum (its maximum is
    used). For criteria (a) and (b) it is the top eigenvalue of the posterior covariance at
    the centre, taken as constant (exact for two deltas); for speciation, the top
    eigenvalue of the data covariance.

    Negative entries are rounding when ``|lambda| <= 8 k eps max_i |lambda_i|`` (``k``
    entries, ``eps`` the float64 machine epsilon): what ``numpy.linalg.eigvalsh`` returns
    for the zero eigenvalues of a rank-deficient covariance; they count as 0. More
    negative entries raise :class:`~physdiff.errors.DomainError` (the shared rule of
    :func:`physdiff._validate.covariance_spectrum`, which documents the bound).
    """
    crit = _criterion(criterion)
    spec = covariance_spectrum(eigenvalue, "eigenvalue")
    lam = float(spec.max())
    if lam == 0:
        raise NoSymmetryBreaking("a zero spectrum (a point mass) has no symmetry to break")
    if crit == "log-density":
        delta = lam
    elif crit == "sde-drift":
        proc = get_process(process if process is not None else OU())
        drift_constant(1.0, crit, proc)  # refuses processes without drift
        if not _is_variance_preserving(proc):
            return _critical_numeric_constant_lambda(lam, proc)
        delta = lam - 1.0 + math.hypot(lam, 1.0)
    else:
        if lam <= 1:
            raise NoSymmetryBreaking(
                f"speciation needs Lambda > 1 (t_S = log(Lambda)/2 > 0); got Lambda = {lam:g}"
            )
        delta = lam - 1.0
    return CriticalPoint(
        crit,
        float(delta),
        _SOURCES[crit],
        process=None
        if crit != "sde-drift"
        else get_process(process if process is not None else OU()).name,
        details={"eigenvalue": lam},
    )


def _is_variance_preserving(proc: Process) -> bool:
    t = np.linspace(proc.t_min, proc.t_max, 7)[1:-1]
    a, s = np.asarray(proc.alpha(t)), np.asarray(proc.sigma(t))
    return bool(np.allclose(a * a + s * s, 1.0, rtol=1e-9))


def _critical_numeric_constant_lambda(lam: float, proc: Process) -> CriticalPoint:
    from scipy.optimize import brentq

    def g(log_d):
        dl = math.exp(log_d)
        return -1 / dl + lam / dl**2 - drift_constant(dl, "sde-drift", proc)

    lo, hi = math.log(proc.delta_min * (1 + 1e-9) + 1e-300), math.log(proc.delta_max)
    x = brentq(g, lo, hi, xtol=1e-14)
    return CriticalPoint(
        "sde-drift", math.exp(x), _SOURCES["sde-drift"], proc.name, {"eigenvalue": lam}
    )


def critical_point(
    model: Ensemble | ScoreModel,
    criterion: str = "log-density",
    process: Process | str | None = None,
    *,
    centre=None,
    track: bool = True,
    delta_range: tuple[float, float] = (1e-6, 1e6),
    n_grid: int = 400,
) -> CriticalPoint:
    """The critical noise level of any ensemble, by the numerical fixed-point analysis.

    Criteria (a) and (b): the fixed point that exists alone at high noise (the centre,
    ``model.mean`` by default) is continued from high to low ``delta`` by Newton's method;
    the critical ``delta`` is the largest one where the top eigenvalue of its stability
    matrix ``J - c I`` reaches 0 (refined by Brent's method). Speciation: from the top
    eigenvalue of ``model.covariance``.

    ``track=False`` keeps the stability matrix at the fixed ``centre`` instead of following
    the fixed point: the right choice for a trained network, which is never exactly
    symmetric, so the followed point slides into one well and never destabilises.
    ``model`` then only needs ``score_jacobian`` (a :class:`~physdiff.nn.NetworkScoreModel`).

    Unequal groups slide too (``track=True``): with unequal weights the pitchfork is
    imperfect, the tracked point moves continuously into the heavier group and stays
    stable, while the other group's well appears elsewhere through a saddle-node pair that
    this continuation does not see; the call then raises :class:`NoSymmetryBreaking`.
    Measured on ``GaussianMixture.isotropic([0.6, 0.4], [[1], [-1]], [0.05])``: the
    tracked point goes from 0.22 (``delta = 10``) to 0.83 (``delta = 0.8``) to 1, its
    eigenvalue stays negative, and the stable point near -0.71 appears between
    ``delta = 0.7`` and 0.6; ``track=False`` reports ``delta = 0.775``, where the curvature
    at the (fixed) centre changes sign, which is not a bifurcation of a fixed point there.

    Raises :class:`NoSymmetryBreaking` when the centre stays stable over ``delta_range``.
    """
    from scipy.optimize import brentq

    crit = _criterion(criterion)
    if crit == "speciation":
        _require_model(model, "model", ("covariance",))
        lam = np.linalg.eigvalsh(np.asarray(model.covariance))
        return critical_from_eigenvalue(lam, crit)
    _require_model(
        model, "model", ("dim", "score_jacobian") + (("mean",) if centre is None else ())
    )
    n_grid = integer(n_grid, "n_grid", 2, 10**7)
    delta_range = _delta_window(delta_range)
    proc = None
    if crit == "sde-drift":
        proc = get_process(process if process is not None else OU())
        drift_constant(1.0, crit, proc)
        lo_p, hi_p = proc.delta_min, proc.delta_max
        delta_range = (max(delta_range[0], lo_p * (1 + 1e-9) + 1e-300), min(delta_range[1], hi_p))
    y = np.asarray(model.mean if centre is None else centre, dtype=float).reshape(-1)
    ldl = np.linspace(math.log(delta_range[1]), math.log(delta_range[0]), n_grid)

    def top(log_d, y_guess):
        dl = math.exp(log_d)
        c = drift_constant(dl, crit, proc)
        if not track:
            eig = _stability_eigenvalues(stability_matrix(model, y[None], dl, c)[0])
            return float(eig[-1]), y
        yp, eig = find_fixed_point(model, y_guess, dl, c)
        return float(eig[-1]), yp

    prev, y_prev = top(ldl[0], y)
    if prev >= 0:
        raise InputError(
            f"the centre is not stable at delta = {delta_range[1]:g}; widen delta_range"
        )
    for k in range(1, n_grid):
        val, y_k = top(ldl[k], y_prev)
        if val >= 0:
            guess = y_prev
            x = brentq(lambda s, g=guess: top(s, g)[0], ldl[k], ldl[k - 1], xtol=1e-13)
            dl = math.exp(x)
            return CriticalPoint(
                crit,
                dl,
                _SOURCES[crit],
                None if proc is None else proc.name,
                {"centre": top(x, y_prev)[1].tolist(), "method": "numeric"},
            )
        y_prev = y_k
    scale = _top_covariance_eigenvalue(model)
    if scale is not None and 0 < scale < delta_range[0]:
        # the posterior covariance at the centre is at most the data covariance, so a
        # crossing (delta_c <= lambda_max for log-density) can only lie below the window
        raise InputError(
            f"the central fixed point of {model!r} stays stable for delta in "
            f"[{delta_range[0]:g}, {delta_range[1]:g}], but the data covariance's top "
            f"eigenvalue {scale:g} lies below the window: widen delta_range downwards "
            f"(e.g. delta_range=({scale / 100:g}, {delta_range[1]:g}))"
        )
    raise NoSymmetryBreaking(
        f"the central fixed point of {model!r} stays stable for delta in "
        f"[{delta_range[0]:g}, {delta_range[1]:g}] under {crit}: no symmetry to break"
    )


def _require_model(model, name: str, attrs: tuple[str, ...]) -> None:
    """Refuse anything that is not a score model (a name, an array, ...) by name."""
    missing = [a for a in attrs if not hasattr(model, a)]
    if missing:
        raise InputError(
            f"{name} must be a score model (an ensemble such as GaussianMixture, or a network "
            f"from physdiff.nn) with {', '.join(attrs)}; got {type(model).__name__} "
            f"{model!r:.60} lacking {', '.join(missing)}"
        )


def _delta_window(delta_range) -> tuple[float, float]:
    """``delta_range`` as ``(lo, hi)`` with ``0 < lo < hi < inf``."""
    try:
        lo, hi = (float(v) for v in delta_range)
    except (TypeError, ValueError):
        raise InputError(
            f"delta_range must be a pair (lo, hi) of numbers; got {delta_range!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise DomainError(f"delta_range must satisfy 0 < lo < hi < inf; got ({lo:g}, {hi:g})")
    return lo, hi


def _top_covariance_eigenvalue(model) -> float | None:
    """The top eigenvalue of ``model.covariance`` when the model has one, else ``None``."""
    cov = getattr(model, "covariance", None)  # networks and score-only models have none
    if cov is None:
        return None
    cov = np.asarray(cov, dtype=float)
    if cov.ndim != 2 or not np.all(np.isfinite(cov)):
        return None
    return float(np.linalg.eigvalsh(cov)[-1])


def speciation_time(eigenvalues) -> float:
    """``t_S = log(Lambda)/2`` (OU time), ``Lambda`` the top data-covariance eigenvalue
    (Biroli et al. 2024, Eq. 9)."""
    return critical_from_eigenvalue(eigenvalues, "speciation").ou_time


# ---------------------------------------------------------------------------------------
# cloning
# ---------------------------------------------------------------------------------------
def cloning_probability(delta, m_norm: float, s2: float = 0.0, *, order: int = 80):
    """``phi = (1 + E_z tanh(q + sqrt(q) z))/2``, ``q = |m|^2 / (s^2 + delta)`` (VE frame).

    Biroli et al. 2024, Eq. 12, for the mixture ``N(+-m, s^2 I)``; ``E_z`` by Gauss-Hermite
    quadrature of ``order`` nodes. In OU time ``delta = e^{2t} - 1`` gives their
    ``q = |m|^2 e^{-2t} / Gamma_t``.
    """
    delta = positive(delta, "delta")
    m_norm = float(positive(m_norm, "m_norm"))
    s2 = float(positive(s2, "s2", allow_zero=True))
    x, w = np.polynomial.hermite_e.hermegauss(integer(order, "order", 2, 1000))
    w = w / w.sum()
    q = m_norm**2 / (s2 + np.asarray(delta))
    qq = q[..., None]
    phi = 0.5 * (1 + np.sum(w * np.tanh(qq + np.sqrt(qq) * x), axis=-1))
    return float(phi) if phi.ndim == 0 else phi


@dataclass(frozen=True)
class CloningMeasurement:
    """Measured same-class probability: ``phi`` with its binomial standard error."""

    t: float
    delta: float
    phi: float
    stderr: float
    n_pairs: int


def measure_cloning(
    model: ScoreModel,
    classify,
    x_t: np.ndarray,
    t: float,
    rng,
    *,
    process: Process | str = "ou",
    method: str = "euler-maruyama",
    n_steps: int = 200,
    t_end: float | None = None,
) -> CloningMeasurement:
    """Clone each ``x_t`` (process frame at time ``t``) twice, run both copies to ``t_end``
    with a stochastic sampler in ONE batched call, and count the pairs whose end points
    ``classify`` (``(n, d) -> labels``) puts in the same class."""
    from .sampling import sample

    proc = get_process(process)
    x_t = as_points(x_t, int(model.dim), "x_t")
    n = x_t.shape[0]
    if t_end is None:
        t_end = float(proc.time_of_delta(max(proc.delta_min, 1e-4)))
    out = sample(
        model,
        2 * n,
        rng,
        method=method,
        process=proc,
        times=np.linspace(t, t_end, n_steps + 1),
        x_start=np.concatenate([x_t, x_t]),
        final_denoise=True,
    )
    lab = np.asarray(classify(out.samples))
    same = lab[:n] == lab[n:]
    phi = float(same.mean())
    return CloningMeasurement(
        float(t), float(proc.delta(t)), phi, math.sqrt(max(phi * (1 - phi), 1.0 / n) / n), n
    )


# ---------------------------------------------------------------------------------------
# Gaussian late initialisation
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataStatistics:
    """Mean and covariance of a data set as low rank plus diagonal,
    ``C ~ U diag(lam) U^T + diag(resid)``, with ``resid`` chosen so that the diagonal of
    ``C`` is exact (``rank = d`` makes the whole covariance exact, ``resid = 0``)."""

    mean: np.ndarray
    basis: np.ndarray
    eigenvalues: np.ndarray
    residual: np.ndarray

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def top_eigenvalue(self) -> float:
        return float(self.eigenvalues[0]) if self.eigenvalues.size else 0.0

    def covariance(self) -> np.ndarray:
        """The represented covariance as a dense ``(d, d)`` array."""
        return (self.basis * self.eigenvalues) @ self.basis.T + np.diag(self.residual)


def data_statistics(data, rank: int | None = None) -> DataStatistics:
    """The start statistics of an ensemble (its exact ``mean`` and ``covariance``) or of a data
    set ``(n, d)``, keeping the top ``rank`` eigenpairs (default: all when ``d <= 512``,
    else 64) plus the residual diagonal. For a data set the top eigenpairs come from the SVD
    of the centred data, never forming ``d x d`` when ``rank < d``."""
    if isinstance(data, Ensemble):
        mean = np.asarray(data.mean, dtype=float)
        lam, vec = np.linalg.eigh(np.asarray(data.covariance, dtype=float))
        lam, vec = np.clip(lam[::-1], 0, None), vec[:, ::-1]
        var = np.clip(np.diag(np.asarray(data.covariance, dtype=float)), 0, None)
    else:
        x = finite_array(data, "data")
        if x.ndim != 2 or x.shape[0] < 2:
            raise InputError(f"data must have shape (n, d) with n >= 2; got {x.shape}")
        mean = x.mean(axis=0)
        xc = x - mean
        _, sv, vt = np.linalg.svd(xc, full_matrices=False)
        lam, vec = sv**2 / x.shape[0], vt.T
        var = np.mean(xc * xc, axis=0)
    d = mean.shape[0]
    r = (d if d <= 512 else 64) if rank is None else integer(rank, "rank", 0, d)
    lam, vec = lam[:r], np.ascontiguousarray(vec[:, :r])
    resid = np.clip(var - (vec * vec) @ lam, 0.0, None)
    return DataStatistics(mean, vec, lam, resid)


@dataclass(frozen=True, eq=False)
class LowRankStart:
    """Draws ``x_t ~ N(alpha mu, alpha^2 (U diag(lam) U^T + diag(resid)) + sigma^2 I)`` at time
    ``t`` of ``process`` in ``O(n d rank)``: Raya & Ambrogioni 2023's Gaussian late
    initialisation with the noised data statistics (docs/theory.md section 2). Pass it to any
    sampler of :mod:`physdiff.sampling` as ``x_start``; its ``t`` is the default start time."""

    process: Process
    t: float
    stats: DataStatistics

    def __call__(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = integer(n, "n", 0, 10**9)
        s = self.stats
        a, sig = float(self.process.alpha(self.t)), float(self.process.sigma(self.t))
        z1 = rng.standard_normal((n, s.eigenvalues.shape[0]))
        z2 = rng.standard_normal((n, s.dim))
        low = (z1 * np.sqrt(s.eigenvalues)) @ s.basis.T
        return a * (s.mean + low) + np.sqrt(a * a * s.residual + sig * sig) * z2

    @property
    def mean(self) -> np.ndarray:
        return float(self.process.alpha(self.t)) * self.stats.mean

    @property
    def covariance(self) -> np.ndarray:
        a, sig = float(self.process.alpha(self.t)), float(self.process.sigma(self.t))
        return a * a * self.stats.covariance() + sig * sig * np.eye(self.stats.dim)


def late_start_delta(
    data,
    criterion: str = "log-density",
    process: Process | str | None = None,
    *,
    margin: float = 2.0,
) -> float:
    """A start noise level before the symmetry breaks: ``margin * delta_c`` (``margin >= 1``).

    ``delta_c`` is the closed form of :func:`critical_from_eigenvalue` for the top
    eigenvalue of the data covariance (the posterior covariance at the centre at high
    noise). Above ``delta_c`` the centre is the only stable fixed point, so the Gaussian
    start loses no structure the dynamics would still create (Raya & Ambrogioni 2023).
    """
    margin = float(positive(margin, "margin"))
    if margin < 1:
        raise DomainError(f"margin must lie in [1, inf) (start before the break); got {margin}")
    stats = data if isinstance(data, DataStatistics) else data_statistics(data, rank=1)
    return margin * critical_from_eigenvalue(stats.top_eigenvalue, criterion, process).delta


def late_start(
    data,
    process: Process | str,
    t: float | None = None,
    *,
    rank: int | None = None,
    criterion: str = "log-density",
    margin: float = 2.0,
) -> LowRankStart:
    """The Gaussian late-initialisation start for an ensemble or a data set at time ``t``
    of ``process`` (default: the time of :func:`late_start_delta`, clipped to the process's
    range; for DDPM the first whole step at or above that noise level)."""
    proc = get_process(process)
    stats = data_statistics(data, rank)
    if t is None:
        dl = late_start_delta(
            stats, criterion, proc if criterion != "log-density" else None, margin=margin
        )
        dl = min(max(dl, proc.delta_min), proc.delta_max)
        if isinstance(proc, DDPM):  # whole steps: the first step at or above the start delta
            t = float(proc.step_of_delta(dl, "ceil"))
        else:
            t = float(proc.time_of_delta(dl))
    return LowRankStart(proc, float(proc.check_time(t, "t")), stats)


# ---------------------------------------------------------------------------------------
# every criterion's critical point for one data source (``physdiff critical``)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CriticalTable:
    """The critical point of each criterion of :data:`CRITERIA` for one data source.

    ``source`` names the data (``{"ensemble": "two-deltas", "m": 1.0}``,
    ``{"top_eigenvalue": L}`` or ``{"spectrum_size": D}``); ``top_eigenvalue`` is the top
    data-covariance eigenvalue ``Lambda`` (``None`` where it overflows a float, said in
    ``note``); ``criteria`` maps each criterion to its :meth:`CriticalPoint.table` plus
    ``time`` (in ``process``), ``theta = 1/sqrt(1 + delta)`` and ``method``, or, where it
    does not apply, ``delta = None`` with a ``reason``."""

    source: dict
    process: str
    top_eigenvalue: float | None
    criteria: dict
    note: str = ""

    def to_dict(self) -> dict:
        out = {
            "source": dict(self.source),
            "process": self.process,
            "top_eigenvalue": self.top_eigenvalue,
            "criteria": {k: dict(v) for k, v in self.criteria.items()},
        }
        if self.note:
            out["note"] = self.note
        return out


def critical_table(
    *,
    ensemble: str | None = None,
    m: float | None = None,
    variance: float | None = None,
    top_eigenvalue: float | None = None,
    spectrum=None,
    process: str = "ou",
) -> CriticalTable:
    """Every criterion's critical point (docs/theory.md section 2) for one data source.

    Exactly one source: ``ensemble`` (``'two-deltas'``, point masses at ``+-m``, closed
    forms; ``'mixture'``, ``N(+-m, variance)`` in 1-D, :func:`physdiff.examples.
    symmetric_pair`, numerical continuation), a ``top_eigenvalue`` (criteria (a) and (b)
    take it as the posterior covariance at the centre, held constant), or a ``spectrum``
    (eigenvalues; its maximum is used). ``m`` defaults to 1. A criterion that does not
    apply (no symmetry to break, no SDE drift in ``process``) gets its reason, not an
    error. Raises :class:`~physdiff.errors.InputError` naming the argument on bad input.
    """
    if sum(v is not None for v in (ensemble, top_eigenvalue, spectrum)) != 1:
        raise InputError("ensemble: give exactly one of ensemble, top_eigenvalue or spectrum")
    if process not in PRESETS:
        raise InputError(f"process: unknown process {process!r}; choose from {', '.join(PRESETS)}")
    if ensemble is None and (m is not None or variance is not None):
        raise InputError(f"{'m' if m is not None else 'variance'}: goes with ensemble")
    for name, v in (("m", m), ("variance", variance), ("top_eigenvalue", top_eigenvalue)):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise DomainError(f"{name}: must lie in [0, inf); got {v!r}")
    if ensemble is not None:
        if ensemble not in ("two-deltas", "mixture"):
            raise InputError(
                f"ensemble: unknown ensemble {ensemble!r}; choose from two-deltas, mixture"
            )
        m = 1.0 if m is None else float(m)
        if ensemble == "two-deltas":
            if variance is not None:
                raise InputError("variance: goes with ensemble mixture (two deltas have none)")
            source: dict = {"ensemble": ensemble, "m": m}
            lam = m * m
        else:
            if variance is None:
                raise InputError("variance: required with ensemble mixture (component variance)")
            source = {"ensemble": ensemble, "m": m, "variance": float(variance)}
            lam = m * m + variance
    elif top_eigenvalue is not None:
        source, lam = {"top_eigenvalue": float(top_eigenvalue)}, float(top_eigenvalue)
    else:
        spec = covariance_spectrum(spectrum, "spectrum")
        source, lam = {"spectrum_size": int(spec.size)}, float(spec.max())
    note = "" if math.isfinite(lam) else "Lambda = m^2 (+ variance) overflows a float64"
    rows = {crit: _critical_row(crit, source, lam, process) for crit in CRITERIA}
    return CriticalTable(source, process, lam if math.isfinite(lam) else None, rows, note)


def _critical_row(crit: str, source: dict, lam: float, process: str) -> dict:
    proc = process if crit == "sde-drift" else None
    kind = source.get("ensemble")
    try:
        if kind == "two-deltas":
            cp, method = critical_two_deltas(source["m"], crit, proc), "closed form"
        elif kind == "mixture":
            if source["m"] == 0:
                raise NoSymmetryBreaking("a mixture with m = 0 has one class: no symmetry to break")
            if not math.isfinite(lam):
                raise DomainError(f"m: m^2 must be a finite float64; got m = {source['m']:g}")
            cp = critical_point(symmetric_pair(source["m"], source["variance"]), crit, proc)
            method = "closed form (data covariance)" if crit == "speciation" else "numeric"
        else:
            cp = critical_from_eigenvalue(lam, crit, proc)
            held = "" if crit == "speciation" else " (top eigenvalue held constant)"
            method = "closed form" + held
    except (PhysdiffError, np.linalg.LinAlgError) as exc:
        return {"criterion": crit, "delta": None, "time": None, "reason": str(exc)}
    row = cp.table()
    row["method"] = method
    row["theta"] = 1.0 / math.sqrt(1.0 + cp.delta)  # alpha of every VP process
    try:
        row["time"] = float(cp.time(process))
    except DomainError:
        row["time"] = None
        row["note"] = f"delta = {cp.delta:.6g} is outside the range {process} reaches"
    if row.get("ddpm_step") is None:
        row.setdefault("note", f"delta = {cp.delta:.6g} is outside the DDPM range")
    return row
