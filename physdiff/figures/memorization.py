"""Figures: memorisation as a random-energy-model collapse, and dimensions lost one by one
(docs/theory.md sections 3-4; :mod:`physdiff.memorization`).

Closed forms come from :mod:`physdiff.memorization`; measurements run the exact empirical
score of a training set (:class:`physdiff.ensembles.Empirical`, the foundation's streaming
kernel for log-sum-exps, its posterior weights for covariances). Coordinates are the VE
frame ``y = x0 + sqrt(delta) z``; OU time ``t = log(1 + delta)/2``. Randomness comes from
fixed seeds, so every figure is deterministic.

:func:`draw_phase_diagram` and :func:`phase_diagram_figure` are also what
``physdiff phase-diagram`` draws.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D

from .. import memorization as M
from .. import plot
from ..ensembles import Empirical, LinearManifold
from ..errors import InputError
from ..processes import DDPM, OU
from . import register

__all__ = [
    "draw_phase_diagram",
    "phase_diagram_figure",
    "posterior_covariances",
]

_GRID = {"linewidth": 0.4, "alpha": 0.4}
_OI = plot.OKABE_ITO


def _pale(color: str, amount: float) -> tuple[float, float, float]:
    """``color`` mixed with white (``amount`` of the colour)."""
    c = np.asarray(to_rgb(color))
    return tuple(amount * c + (1 - amount) * np.ones(3))  # type: ignore[return-value]


REGIME_COLORS = {
    0: _pale(_OI["vermillion"], 0.30),  # collapsed
    1: _pale(_OI["green"], 0.22),  # speciated
    2: _pale(_OI["sky"], 0.22),  # Brownian
}
_COLLAPSE = _OI["vermillion"]
_SPECIATION = _OI["green"]


# ---------------------------------------------------------------------------------------
# the phase diagram (also drawn by `physdiff phase-diagram`)
# ---------------------------------------------------------------------------------------
def _time_label(process: str) -> str:
    if process == "ddpm":
        return "DDPM step $k$"
    if process == "ou":
        return r"OU time $t = \frac{1}{2}\log(1 + \Delta)$"
    return f"time $t$ ({process})"


_ALPHA_DRAWABLE = 1e200
"""Largest ``alpha_n * d`` (the natural log of ``n``) a phase-diagram axis is drawn to."""


def draw_phase_diagram(
    pdiag: M.PhaseDiagram,
    ax,
    *,
    log_alpha: bool | None = None,
    top_axis: bool = True,
    labels: bool = True,
    legend: bool = True,
    dim_symbol: str = "d",
):
    """Draw a :class:`physdiff.memorization.PhaseDiagram` on ``ax``: the three regimes
    filled (collapsed ``t < t_C``, speciated ``t_C <= t < t_S``, Brownian above both), the
    collapse line ``t_C(alpha_n)`` and the speciation line ``t_S``, regime names where each
    regime is widest, and on top an axis of ``log10 n`` (``n = e^{alpha_n d}``, ``d`` the
    diagram's, named ``dim_symbol`` on the axis: ``"m"`` for an intrinsic dimension).
    ``log_alpha`` (default: when the alphas are geometric) sets a log x-axis.
    Returns the collapse line (``Line2D``)."""
    a = np.asarray(pdiag.alphas, dtype=float)
    tc = np.asarray(pdiag.t_collapse, dtype=float)
    t0, t1 = float(pdiag.times[0]), float(pdiag.times[-1])
    ts = pdiag.t_speciation
    if log_alpha is None:
        la = np.diff(np.log(a))
        log_alpha = a.size > 2 and bool(np.allclose(la, la[0], rtol=1e-6))
    if a[-1] * max(float(pdiag.d), 1.0) > _ALPHA_DRAWABLE:
        # matplotlib's tickers place decades past the limits and overflow near 1e308 (a
        # traceback from its ticker for alpha_max = 1e290); the data have no such limit
        raise InputError(
            f"alpha_max: the figure draws alpha_n * d up to {_ALPHA_DRAWABLE:.0e} (ticks past "
            f"the axis overflow float64); got alpha_max = {a[-1]:.3g} with d = {pdiag.d}"
        )
    tcc = np.clip(tc, t0, t1)
    top = tcc if ts is None else np.clip(np.maximum(tc, ts), t0, t1)
    kw = {"linewidth": 0, "zorder": 0}
    ax.fill_between(a, t0, tcc, color=REGIME_COLORS[0], **kw)
    if ts is not None:
        ax.fill_between(a, tcc, top, color=REGIME_COLORS[1], **kw)
    ax.fill_between(a, top, t1, color=REGIME_COLORS[2], **kw)
    (line,) = ax.plot(a, tc, color=_COLLAPSE, linewidth=1.8, label=r"collapse $t_C(\alpha_n)$")
    if ts is not None and t0 <= ts <= t1:
        ax.axhline(ts, color=_SPECIATION, linewidth=1.6, linestyle="--", label="speciation $t_S$")
    if log_alpha:
        ax.set_xscale("log")
    ax.set_xlim(a[0], a[-1])
    ax.set_ylim(t0, t1)
    sym = dim_symbol
    ax.set_xlabel(rf"$\alpha_n = \log(n)/{sym}$  (${sym} = {pdiag.d}$)")
    ax.set_ylabel(_time_label(pdiag.process))
    if labels:
        _regime_labels(ax, a, t0, t1, tcc, top, ts, bool(log_alpha))
    if top_axis:
        d = float(pdiag.d)
        sec = ax.secondary_xaxis(
            "top",
            functions=(lambda x: x * d / math.log(10), lambda y: y * math.log(10) / d),
        )
        sec.set_xlabel(r"$\log_{10} n$")
        lo10, hi10 = a[0] * d / math.log(10), a[-1] * d / math.log(10)
        ticks = [v for v in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if lo10 <= v <= hi10]
        sec.set_xticks(ticks, [f"{v:g}" for v in ticks])
        sec.set_xticks([], minor=True)
    if legend:
        ax.legend(loc="upper right", frameon=True, framealpha=0.85, edgecolor="none")
    return line


def _regime_labels(ax, a, t0, t1, lo_c, hi_s, ts, log_alpha):
    """Each regime's name in the middle of its tallest free stretch (a column of the
    regime, split where the speciation line crosses it), away from the axis edges."""
    x = np.log(a) if log_alpha else a
    frac = (x - x[0]) / (x[-1] - x[0])
    # names off the edges, and the Brownian name off the legend at the upper right
    inner = {0: (frac > 0.12) & (frac < 0.62), 1: (frac > 0.1) & (frac < 0.95)}
    inner[2] = inner[0]
    spans = {0: (np.full_like(lo_c, t0), lo_c), 2: (hi_s, np.full_like(hi_s, t1))}
    if ts is not None:
        spans[1] = (lo_c, hi_s)
    for k, (lo, hi) in spans.items():
        lo, hi = lo.copy(), hi.copy()
        if ts is not None and k == 0:  # the speciation line cuts the collapsed region
            cut = (lo < ts) & (ts < hi)
            below, above = ts - lo, hi - ts
            hi = np.where(cut & (below >= above), ts, hi)
            lo = np.where(cut & (below < above), ts, lo)
        h = np.where(inner[k], hi - lo, -1.0)
        j = int(np.argmax(h))
        if h[j] < 0.08 * (t1 - t0):
            continue
        ax.text(
            a[j],
            0.5 * (lo[j] + hi[j]),
            M.PhaseDiagram.LABELS[k],
            ha="center",
            va="center",
            fontsize="small",
            fontstyle="italic",
            color="0.15",
            zorder=3,
        )


def phase_diagram_figure(
    pdiag: M.PhaseDiagram, *, title: str | None = None, dim_symbol: str = "d", figsize=(5.4, 3.9)
):
    """A pyplot-free ``Figure`` with one phase diagram (:func:`draw_phase_diagram`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_phase_diagram(pdiag, ax, dim_symbol=dim_symbol)
    if title:
        ax.set_title(title, fontsize="medium")
    return fig


_PD_D, _PD_TOP = 100, 5.0


def _spiked(d: int = _PD_D, top: float = _PD_TOP) -> np.ndarray:
    return np.r_[top, np.ones(d - 1)]


@register(
    "memorization-phase-diagram",
    "Phase diagram of memorisation: Brownian, speciated and collapsed regimes",
    "Gaussian data in d = 100 dimensions, unit variance except one direction of variance "
    "Lambda = 5 (the class direction), n = e^{alpha_n d} training points and the exact "
    "empirical score (physdiff.memorization.phase_diagram). Green dashed: speciation, "
    "Lambda e^{-2 t_S} = 1, t_S = log(Lambda)/2 (Biroli et al. 2024, Eq. 9; independent of "
    "n). Vermillion: the collapse time t_C where the mutual information per dimension of the "
    "population reaches alpha_n, log n = sum_i 1/2 log(1 + lambda_i/Delta_C) (Biroli et al. "
    "2024, Eq. 15 and its spectrum sum rule). Below t_C the posterior over training points "
    "has condensed: the reverse dynamics end on a training point (memorisation). Generation "
    "runs downwards (large t to small t). Where t_C > t_S the speciated regime vanishes: the "
    "trajectory commits to a training point before it commits to a class. (a) OU time; "
    "(b) the same diagram on the DDPM schedule (Ho et al. 2020, 1000 steps; continuous step "
    "index). Top axis: log10 n. Also `physdiff phase-diagram --d 100 --top-eigenvalue 5`.",
    figsize=(8.4, 3.4),
)
def memorization_phase_diagram(fig):
    lam = _spiked()
    alphas = np.geomspace(0.01, 1.0, 300)
    axes = fig.subplots(1, 2)
    for ax, proc, t_hi, letter in (
        (axes[0], OU(), 3.0, "a"),
        (axes[1], DDPM(), float(DDPM().time_of_delta(M.collapse_delta(math.e, lam) * 4)), "b"),
    ):
        times = np.linspace(proc.t_min, min(t_hi, proc.t_max), 300)
        pdiag = M.phase_diagram(lam, alphas, times, proc)
        draw_phase_diagram(pdiag, ax, legend=letter == "a")
        plot.panel_label(ax, letter).set_position((-0.14, 1.08))


# ---------------------------------------------------------------------------------------
# collapse time against alpha_n and n
# ---------------------------------------------------------------------------------------
_TC_DIMS = (16, 128, 1024)
_TC_COLORS = [_OI[c] for c in ("sky", "blue", "purple")]
_ISO_DIMS = (8, 32, 128, 784, 3072)
_ISO_COLORS = [_OI[c] for c in ("orange", "sky", "blue", "purple", "black")]


def _power_law(d: int) -> np.ndarray:
    """``lambda_i ~ 1/i``, normalised to mean 1 (trace d)."""
    lam = 1.0 / np.arange(1, d + 1)
    return lam * d / lam.sum()


@register(
    "memorization-collapse-time",
    "Collapse time against alpha_n and n, with its asymptotics",
    "(a) Collapse OU time t_C = log(1 + Delta_C)/2 against alpha_n = log(n)/d. Black: "
    "isotropic unit-variance data, Delta_C = 1/(n^{2/d} - 1) (Biroli et al. 2024, Eq. 15), "
    "a function of alpha_n alone, the same for every d; dashed, its asymptotics "
    "(physdiff.memorization.collapse_delta_asymptotic): small alpha_n, Delta_C ~ 1/(2 "
    "alpha_n) - 1/2 (blue), and large alpha_n, Delta_C ~ e^{-2 alpha_n} (vermillion). "
    "Coloured: a power-law spectrum lambda_i ~ 1/i with mean 1 at d = 16, 128, 1024 "
    "(physdiff.memorization.collapse_delta, the sum rule log n = sum_i 1/2 log(1 + "
    "lambda_i/Delta_C)): with unequal variances t_C depends on d at fixed alpha_n and is "
    "smaller (the collapse comes later in generation, at lower noise) than for isotropic "
    "data of the same trace, since sum_i log(1 + lambda_i/Delta) is concave in the spectrum. "
    "Log time axis: at large alpha_n, t_C ~ Delta_C/2 decays like e^{-2 alpha_n}. Right "
    "axis: DDPM step (Ho et al. 2020). (b) t_C against n for isotropic unit-variance data at "
    "d = 8, 32, 128, 784 (MNIST size) and 3072 (CIFAR-10 size): at fixed n the collapse moves to "
    "larger noise as d grows, because alpha_n = log(n)/d shrinks.",
    figsize=(8.4, 3.3),
)
def memorization_collapse_time(fig):
    ddpm = DDPM()
    ax1, ax2 = fig.subplots(1, 2)
    alphas = np.geomspace(3e-3, 3.0, 400)
    iso = 1.0 / np.expm1(2 * alphas)
    ax1.plot(alphas, 0.5 * np.log1p(iso), color=_OI["black"], linewidth=2.0, label="isotropic")
    for regime, color, sel in (
        ("small", _OI["blue"], alphas < 1.0),
        ("large", _OI["vermillion"], alphas > 0.1),
    ):
        asym = np.asarray(M.collapse_delta_asymptotic(alphas[sel], 1.0, regime))
        ok = asym > 0
        ax1.plot(
            alphas[sel][ok],
            0.5 * np.log1p(asym[ok]),
            color=color,
            linestyle="--",
            linewidth=1.2,
            label=rf"{regime} $\alpha_n$ asymptote",
        )
    for d, color in zip(_TC_DIMS, _TC_COLORS, strict=True):
        a = alphas[alphas * d >= math.log(2)]  # in log n = alpha_n d: no e^709 ceiling
        dcs = np.exp(M.log_collapse_delta(a * d, _power_law(d)))
        ax1.plot(a, 0.5 * np.log1p(dcs), color=color, linewidth=1.3, label=rf"$1/i$, $d={d}$")
    ax1.set_xscale("log")
    ax1.set_xlim(alphas[0], alphas[-1])
    ax1.set_yscale("log")
    ax1.set_ylim(1e-3, 5.0)
    ax1.set_xlabel(r"$\alpha_n = \log(n)/d$")
    ax1.set_ylabel(r"collapse OU time $t_C$")
    ax1.legend(loc="lower left", frameon=False, fontsize="x-small")
    sec = ax1.secondary_yaxis(
        "right",
        functions=(
            lambda t: np.interp(t, ddpm.ou_times, np.arange(ddpm.n_steps)),
            lambda k: np.interp(k, np.arange(ddpm.n_steps), ddpm.ou_times),
        ),
    )
    sec.set_ylabel("DDPM step")
    ticks = [10, 30, 100, 250, 500, 750]
    sec.set_yticks(ticks, [str(k) for k in ticks])
    sec.set_yticks([], minor=True)

    n = np.geomspace(2, 1e9, 400)
    for d, color in zip(_ISO_DIMS, _ISO_COLORS, strict=True):
        dcs = M.collapse_delta_isotropic(n, d, 1.0)
        ax2.plot(n, 0.5 * np.log1p(dcs), color=color, label=f"$d = {d}$")
    ax2.set_xscale("log")
    ax2.set_xlim(n[0], n[-1])
    ax2.set_ylim(0, None)
    ax2.set_xlabel("training points $n$")
    ax2.set_ylabel(r"collapse OU time $t_C$ (isotropic, $s^2 = 1$)")
    ax2.legend(loc="upper right", frameon=False, fontsize="x-small")
    for ax, letter in ((ax1, "a"), (ax2, "b")):
        ax.grid(True, which="major", **_GRID)
        plot.panel_label(ax, letter)


# ---------------------------------------------------------------------------------------
# excess entropy at finite d
# ---------------------------------------------------------------------------------------
_FE_ALPHA = 0.075
_FE_DIMS = (8, 32, 128)
_FE_COLORS = [_OI[c] for c in ("orange", "blue", "black")]
_FE_SAMPLES = 160


def _fe_sets():
    """``(d, n, train)``: n = round(e^{alpha d}) (at least 2) standard normal points."""
    out = []
    for d in _FE_DIMS:
        n = max(2, int(round(math.exp(_FE_ALPHA * d))))
        rng = np.random.default_rng(1000 + d)
        out.append((d, n, Empirical(rng.standard_normal((n, d)))))
    return out


@register(
    "memorization-excess-entropy",
    "Excess entropy f^e at finite d against the large-d closed form",
    "Standard normal training sets in d = 8, 32, 128 dimensions with n = round(e^{alpha d}) "
    "points at alpha = 0.075 (n = 2, 11, 14765; alpha_n = 0.087, 0.075, 0.075). (a) Monte "
    "Carlo excess entropy f^e = <(1/d) log P^e(y)> + alpha_n + 1/2 log(2 pi e Delta), y ~ P^e "
    "(a random training point plus noise), at 15 noise levels, 160 samples each, through the "
    "foundation's empirical-score kernel; d f^e is the mean entropy (nats) of the posterior "
    "over training points. Estimator: physdiff.memorization.excess_entropy_empirical, which "
    "subtracts the self-logit -|z|^2/2 (known mean -d/2): unbiased, 3-14x smaller variance "
    "around the collapse than averaging log P^e, none below it (bars: one standard error). "
    "Dashed: the large-d closed form max(0, alpha_n - I/d), "
    "I = d/2 log(1 + 1/Delta) (Biroli et al. 2024, Eq. 14), with its kink at the collapse "
    "Delta_C = 1/(n^{2/d} - 1) (dotted). (b) The finite-d deviation f^e - max(0, alpha_n - I/d) "
    "against Delta/Delta_C: the kink is rounded over a range of noise that narrows as d grows "
    "(f^e converges to the closed form, as the REM predicts): at finite d the measured "
    "posterior keeps entropy, f^e > 0, down to a fraction of Delta_C and lies above the "
    "closed form around it (d = 32 and 128 share alpha_n, hence one dashed curve).",
    figsize=(8.4, 3.3),
)
def memorization_excess_entropy(fig):
    rel = np.geomspace(1 / 20, 20, 15)
    fine = np.geomspace(1 / 20, 20, 300)
    ax1, ax2 = fig.subplots(1, 2)
    for (d, n, emp), color in zip(_fe_sets(), _FE_COLORS, strict=True):
        dc = float(M.collapse_delta_isotropic(n, d, 1.0))
        fe = M.excess_entropy_empirical(emp, dc * rel, _FE_SAMPLES, np.random.default_rng(d))
        f, se = fe.f, fe.stderr
        th = np.maximum(M.excess_entropy_gaussian(dc * rel, n, np.ones(d)), 0.0)
        th_f = np.maximum(M.excess_entropy_gaussian(dc * fine, n, np.ones(d)), 0.0)
        t = 0.5 * np.log1p(dc * rel)
        label = rf"$d = {d}$, $n = {n}$"
        ax1.plot(0.5 * np.log1p(dc * fine), th_f, color=color, linestyle="--", linewidth=1.0)
        plot.errorbars(ax1, t, f, se, color=color, label=label)
        ax1.axvline(0.5 * math.log1p(dc), color=color, linestyle=":", linewidth=0.8)
        plot.errorbars(ax2, rel, f - th, se, fmt="-o", color=color, linewidth=1.0, label=label)
    ax1.set_xlabel(r"OU time $t$")
    ax1.set_ylabel(r"excess entropy $f^e$ (nats per dimension)")
    ax1.set_ylim(-0.004, None)
    ax1.legend(loc="upper left", frameon=False, fontsize="x-small")
    ax2.set_xscale("log")
    ax2.axhline(0, color="0.5", linewidth=0.6)
    ax2.axvline(1.0, color="0.5", linewidth=0.6, linestyle=":")
    ax2.set_xlabel(r"$\Delta/\Delta_C$")
    ax2.set_ylabel(r"$f^e - \max(0, \alpha_n - I/d)$")
    ax2.legend(loc="upper right", frameon=False, fontsize="x-small")
    for ax, letter in ((ax1, "a"), (ax2, "b")):
        ax.grid(True, which="major", **_GRID)
        plot.panel_label(ax, letter)


# ---------------------------------------------------------------------------------------
# the finite-size collapse: exact curve, large-d closed form and measurement
# ---------------------------------------------------------------------------------------
_FS_D = 16
_FS_NS = (100, 1000, 10000)
_FS_REL = np.geomspace(0.35, 2.5, 9)  # curve points, in units of delta_C
_FS_MEASURED = slice(0, None, 2)  # the measurement at every other curve point
_FS_SETS = 5
_FS_SAMPLES = 128
_LOG2 = math.log(2.0)


def _log2_crossing(deltas: np.ndarray, values: np.ndarray) -> float:
    """Where ``values`` (increasing with ``deltas``) cross ``log 2``: linear interpolation of
    ``log values`` in ``log delta`` between the bracketing points (NaN if none)."""
    up = np.flatnonzero((values[:-1] < _LOG2) & (values[1:] >= _LOG2))
    if up.size == 0:
        return math.nan
    k = int(up[0])
    x, y = np.log(deltas[k : k + 2]), np.log(values[k : k + 2])
    return math.exp(x[0] + (math.log(_LOG2) - y[0]) * (x[1] - x[0]) / (y[1] - y[0]))


def finite_size_figure_data(n: int):
    """What figure ``memorization-finite-size`` draws for ``n`` points in ``d = 16``:
    ``(deltas, curve, mean, stderr)``, the exact finite-size ``E[d f^e]`` at the points
    (:func:`physdiff.finite_size.finite_size_entropy`) and, at ``deltas[_FS_MEASURED]``, the
    measured mean of ``log(1 + S)`` (:func:`physdiff.memorization.excess_entropy_samples`)
    over ``_FS_SETS`` seeded standard normal training sets, with its standard error over
    the sets."""
    from ..finite_size import finite_size_entropy

    deltas = float(M.collapse_delta_isotropic(n, _FS_D, 1.0)) * _FS_REL
    curve = np.asarray(finite_size_entropy(deltas, n, _FS_D), dtype=float)
    measured = deltas[_FS_MEASURED]
    per_set = np.empty((_FS_SETS, measured.size))
    for s in range(_FS_SETS):
        rng = np.random.default_rng([n, s])
        train = Empirical(rng.standard_normal((n, _FS_D)))
        for j, dl in enumerate(measured):
            h, _ = M.excess_entropy_samples(train, float(dl), _FS_SAMPLES, rng)
            per_set[s, j] = h.mean()
    mean = per_set.mean(axis=0)
    stderr = per_set.std(axis=0, ddof=1) / math.sqrt(_FS_SETS)
    return deltas, curve, mean, stderr


@register(
    "memorization-finite-size",
    "The collapse at finite n and d: exact curve, large-d closed form and measurement",
    "Mean posterior entropy over training points E[d f^e] (nats) against the noise Delta for "
    "standard normal data in d = 16 with n = 100, 1000, 10000 points. Solid: the exact "
    "finite-(n, d) value (physdiff.finite_size.finite_size_entropy, averaged over queries y "
    "= a_nu + sqrt(Delta) z and over training sets), at 9 noise levels from 0.35 to 2.5 "
    "Delta_C. Dashed: the large-d closed form d max(0, alpha_n - I/d) = max(0, log n - d/2 "
    "log(1 + 1/Delta)) (Biroli et al. 2024, Eq. 14), zero below the collapse Delta_C = "
    "1/(n^{2/d} - 1). Points: the measured mean of log(1 + sum_{mu != nu} e^{l_mu - l_nu}) "
    "(physdiff.memorization.excess_entropy_samples, the self-subtracted estimator) with the "
    "exact empirical score of 5 seeded training sets per n, 128 queries per set, at every "
    "other noise level; bars: one standard error over the sets. Grey: the level log 2 (one "
    "binary choice left). Markers on it: where each curve crosses log 2, the closed form at "
    "1/((n/2)^{2/d} - 1) (open diamond), the finite-size curve (filled diamond) and the "
    "measurement (circle), both interpolated between their points. At d = 16 the exact "
    "curve is smooth where the closed form kinks, and crosses log 2 at about 0.8 Delta_C, "
    "below the closed form's crossing; the measurement follows the exact curve.",
    figsize=(5.8, 3.8),
)
def memorization_finite_size(fig):
    fine = np.geomspace(0.3, 3.0, 300)
    ax = fig.subplots()
    for n, color in zip(_FS_NS, _FE_COLORS, strict=True):
        deltas, curve, mean, se = finite_size_figure_data(n)
        dc = float(M.collapse_delta_isotropic(n, _FS_D, 1.0))
        closed = _FS_D * np.maximum(M.excess_entropy_gaussian(dc * fine, n, np.ones(_FS_D)), 0)
        ax.plot(dc * fine, closed, color=color, linestyle="--", linewidth=1.0)
        ax.plot(deltas, curve, color=color, linewidth=1.4, label=f"$n = {n}$", gid=f"fs-{n}")
        measured = deltas[_FS_MEASURED]
        plot.errorbars(ax, measured, mean, se, color=color).lines[0].set_gid(f"measured-{n}")
        crossings = (
            (float(M.collapse_delta_isotropic(n / 2, _FS_D, 1.0)), "D", "white"),
            (_log2_crossing(deltas, curve), "D", color),
            (_log2_crossing(measured, mean), "o", color),
        )
        for x, marker, face in crossings:
            ax.plot(
                [x],
                [_LOG2],
                marker=marker,
                markersize=5.5,
                markerfacecolor=face,
                color=color,
                linestyle="none",
                zorder=4,
            )
    ax.axhline(_LOG2, color="0.55", linewidth=0.8, zorder=0)
    ax.text(
        0.99,
        _LOG2,
        r"$\log 2$",
        transform=ax.get_yaxis_transform(),
        ha="right",
        va="bottom",
        fontsize="x-small",
        color="0.4",
    )
    ax.set_xscale("log")
    ticks = (0.2, 0.5, 1.0, 2.0, 4.0)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xticks([], minor=True)
    ax.set_ylim(0, 5.2)
    ax.set_xlabel(r"$\Delta = \sigma^2/\alpha^2$")
    ax.set_ylabel(r"$E[d\,f^e]$ (nats)")
    dashed = Line2D([], [], color="0.3", linestyle="--", linewidth=1.0)
    dashed.set_label("large-$d$ closed form")
    measured = Line2D([], [], color="0.3", marker="o", markersize=3.2, linestyle="none")
    measured.set_label("measured (exact score)")
    handles = ax.get_legend_handles_labels()[0] + [dashed, measured]
    ax.legend(handles=handles, loc="upper left", frameon=False, fontsize="x-small")
    ax.grid(True, which="major", **_GRID)


# ---------------------------------------------------------------------------------------
# score-Jacobian spectra on a linear manifold
# ---------------------------------------------------------------------------------------
def posterior_covariances(train: Empirical, y: np.ndarray, delta: float) -> np.ndarray:
    """``Cov(x0 | y)`` ``(k, d, d)`` of the empirical measure at each query; the score
    Jacobian is ``J = -I/delta + Cov/delta^2`` (docs/theory.md section 1).

    One matrix product for a batch: with the points centred at their mean, ``W (a a^T)``
    (``k x n`` times ``n x d^2``) minus ``m m^T``, ``m = W a`` the posterior means (memory
    ``n d^2``: meant for the small d of these figures). The cancellation costs an absolute
    error of about ``1e-16 max|a|^2`` in ``Cov``, i.e. ``1e-16 max|a|^2/delta`` in the
    eigenvalues of ``delta J``. Weights below 1e-200 are set to 0 (dropped mass below
    ``n e-200``): subnormal weights slow a matrix product 10-30x (docs/design.md)."""
    w = train.posterior(y, delta)
    w[w < 1e-200] = 0.0
    a = train.points.astype(np.float64)
    a -= a.mean(axis=0)
    n, d = a.shape
    outer = (a[:, :, None] * a[:, None, :]).reshape(n, d * d)
    with _one_thread_blas():
        m = w @ a
        cov = (w @ outer).reshape(-1, d, d) - m[:, :, None] * m[:, None, :]
    return 0.5 * (cov + np.swapaxes(cov, 1, 2))


def _one_thread_blas():
    """One BLAS thread for small products: on this shared 2-core machine OpenBLAS's two
    spinning threads made a 64 x 5e4 x 64 product take 0.02-3 s under load, one thread a
    steady 0.02-0.03 s (threadpoolctl when installed, else nothing)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _probes(train: Empirical, delta: float, k: int, rng) -> np.ndarray:
    """``k`` points ``y ~ P^e_delta``: training points plus noise (what the exact
    empirical score generates, noised back to ``delta``)."""
    idx = rng.integers(0, train.n_points, k)
    return train.points[idx] + math.sqrt(delta) * rng.standard_normal((k, train.dim))


_MAN_D = 8
_MAN_VARS = np.array([4.0, 4.0, 1.0, 1.0])  # two variance groups on a 4-dimensional subspace
_GROUP_COLORS = (_OI["vermillion"], _OI["blue"])


def _manifold_set(n: int, seed: int) -> Empirical:
    man = LinearManifold.axis_aligned(_MAN_D, np.sqrt(_MAN_VARS))
    return Empirical(man.sample(n, np.random.default_rng(seed)))


@register(
    "memorization-jacobian-spectra",
    "Score-Jacobian spectra across the noise level: tangent directions join the normal bulk",
    "Exact empirical score of n = 30 (a) and n = 3000 (b) points on a 4-dimensional linear "
    "subspace of R^8 (physdiff.ensembles.LinearManifold, two variance groups: s^2 = 4 on two "
    "directions, s^2 = 1 on two). At each of 40 noise levels, 128 probes y ~ P^e_Delta (a "
    "training point plus noise, what the exact score generates); eigenvalues of Delta J, J = "
    "-I/Delta + Cov(x0|y)/Delta^2 (docs/theory.md section 1), sorted; line: median over probes of "
    "each ranked eigenvalue, band: 10-90 % quantiles. Ranks 1-2 vermillion, 3-4 blue "
    "(tangent), 5-8 grey (normal: exactly -1, the bulk). Dashed: the population (n -> "
    "infinity) values -Delta/(s^2 + Delta) of the two groups. Dotted: the collapse "
    "Delta_C, log n = sum_i 1/2 log(1 + s_i^2/Delta_C). At large Delta every direction sits "
    "near the bulk (noise dominates); as Delta falls the tangent eigenvalues rise towards 0 "
    "(the manifold is resolved), then, around and below Delta_C, fall back into the bulk "
    "once the posterior condenses on one training point: the tangent dimensions are lost "
    "to memorisation, at a noise level that falls as n grows. In between, probes lying "
    "between two training points see a bimodal posterior whose covariance exceeds Delta "
    "along their separation: Delta J > 0 there (a locally unstable direction, the choice "
    "between two points), hence the top band above 0. Grey dashed: the local-dimension "
    "threshold Delta lambda = -1/2.",
    figsize=(8.4, 3.4),
)
def memorization_jacobian_spectra(fig):
    k = 128  # probes per noise level
    deltas = np.geomspace(1e-3, 1e2, 40)
    fine = np.geomspace(1e-3, 1e2, 300)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, n, letter in zip(axes, (30, 3000), "ab", strict=True):
        emp = _manifold_set(n, seed=n)
        rng = np.random.default_rng(7)
        ev = np.empty((deltas.size, k, _MAN_D))
        for i, dl in enumerate(deltas):
            cov = posterior_covariances(emp, _probes(emp, dl, k, rng), dl)
            ev[i] = np.linalg.eigvalsh(cov)[:, ::-1] / dl - 1.0  # Delta * J
        for r in range(_MAN_D - 1, -1, -1):
            color = _GROUP_COLORS[0] if r < 2 else _GROUP_COLORS[1] if r < 4 else "0.55"
            lo, med, hi = np.quantile(ev[:, :, r], [0.1, 0.5, 0.9], axis=1)
            if r < 4:
                ax.fill_between(deltas, lo, hi, color=color, alpha=0.13, linewidth=0)
            ax.plot(deltas, med, color=color, linewidth=1.3 if r < 4 else 2.2)
        for s2, color in zip((4.0, 1.0), _GROUP_COLORS, strict=True):
            ax.plot(fine, -fine / (s2 + fine), color=color, linestyle="--", linewidth=1.0)
        dc = float(M.collapse_delta(n, _MAN_VARS))
        ax.axvline(dc, color="0.2", linestyle=":", linewidth=1.0)
        plot.line_note(ax, dc, rf"$\Delta_C = {dc:.2g}$", va="top", fontsize="x-small")
        ax.axhline(-0.5, color="0.6", linewidth=0.6, linestyle="--", zorder=0)
        ax.axhline(0.0, color="0.4", linewidth=0.6, zorder=0)
        ax.set_xscale("log")
        ax.set_xlim(deltas[0], deltas[-1])
        ax.set_ylim(-1.05, 1.0)
        ax.set_xlabel(r"$\Delta = \sigma^2/\alpha^2$")
        ax.set_title(f"$n = {n}$ training points", fontsize="medium")
        ax.grid(True, which="major", **_GRID)
        plot.panel_label(ax, letter)
    axes[0].set_ylabel(r"eigenvalues of $\Delta\,J$")
    handles = [
        Line2D([], [], color=_GROUP_COLORS[0], label="tangent, $s^2 = 4$ (ranks 1-2)"),
        Line2D([], [], color=_GROUP_COLORS[1], label="tangent, $s^2 = 1$ (ranks 3-4)"),
        Line2D([], [], color="0.55", linewidth=2.2, label="normal (ranks 5-8)"),
        Line2D([], [], color="0.3", linestyle="--", linewidth=1.0, label="population"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)


# ---------------------------------------------------------------------------------------
# lost dimensions against n
# ---------------------------------------------------------------------------------------
_LD_DELTAS = (0.05, 0.25, 0.8)
_LD_COLORS = [_OI[c] for c in ("purple", "green", "orange")]
_LD_NS = np.unique(np.round(np.geomspace(2, 5e4, 13)).astype(int))
_LD_PROBES = 64


def _lost_dimensions_data():
    """Per n and delta: local dimensions per probe ``(k,)`` and the mean retained
    fraction of each variance group (q / q_pop, q = b^T Cov b / delta)."""
    dims = np.empty((_LD_NS.size, len(_LD_DELTAS), _LD_PROBES))
    retained = np.empty((_LD_NS.size, len(_LD_DELTAS), 2))
    retained_se = np.empty_like(retained)
    for i, n in enumerate(_LD_NS):
        emp = _manifold_set(int(n), seed=int(n) + 11)
        rng = np.random.default_rng(int(n))
        for j, dl in enumerate(_LD_DELTAS):
            cov = posterior_covariances(emp, _probes(emp, dl, _LD_PROBES, rng), dl)
            v = np.linalg.eigvalsh(cov) / dl - 1.0  # Delta * J
            dims[i, j] = np.sum(v > -0.5, axis=1)
            q = np.einsum("kii->ki", cov)[:, : _MAN_VARS.size] / dl
            q_pop = _MAN_VARS / (_MAN_VARS + dl)
            r = q / q_pop
            for g, sel in enumerate((slice(0, 2), slice(2, 4))):
                rg = r[:, sel].mean(axis=1)
                retained[i, j, g] = rg.mean()
                retained_se[i, j, g] = rg.std(ddof=1) / math.sqrt(rg.size)
    return dims, retained, retained_se


@register(
    "memorization-lost-dimensions",
    "Local dimension against the number of training points",
    "Exact empirical score of n points (n = 2 to 5e4) on the 4-dimensional subspace of R^8 "
    "with two variance groups (s^2 = 4 on two directions, 1 on two; figure "
    "memorization-jacobian-spectra), probed at 64 points y ~ P^e_Delta per (n, Delta), at "
    "Delta = 0.05, 0.25, 0.8. (a) Local dimension by the rule: count the eigenvalues of Delta "
    "J above -1/2 (posterior variance above Delta/2 along the direction; a Gaussian "
    "direction of variance s^2 counts iff s^2 > Delta); mean over probes with one standard "
    "error. The population value is 4 at all three noise levels (dotted); dimensions are "
    "lost as n falls, first at the lowest noise. Dashed steps: the effective-sample-size "
    "model, direction i counted iff s_i^2/(s_i^2 + Delta) (1 - 1/n_eff) > 1/2 with n_eff = 1 + "
    "(n - 1) e^{-I(Delta)}, I = sum_i 1/2 log(1 + s_i^2/Delta) (the REM sum rule, physdiff."
    "geometry). (b) Retained posterior variance of each group, q/q_pop with q = b^T Cov(x0|y) "
    "b/Delta along the group's basis vectors and q_pop = s^2/(s^2 + Delta), for s^2 = 4 (solid) "
    "and s^2 = 1 (open, dashed); grey: 1 - 1/n_eff. Both groups lose the same fraction "
    "at the same n (one posterior over training points for all directions), so under the "
    "counting rule the low-variance group, whose q_pop is nearer 1/2, is lost first.",
    figsize=(8.4, 3.3),
)
def memorization_lost_dimensions(fig):
    dims, ret, ret_se = _lost_dimensions_data()
    ax1, ax2 = fig.subplots(1, 2)
    n = _LD_NS.astype(float)
    n_fine = np.geomspace(2, 5e4, 300)
    for j, (dl, color) in enumerate(zip(_LD_DELTAS, _LD_COLORS, strict=True)):
        mean = dims[:, j].mean(axis=1)
        se = dims[:, j].std(axis=1, ddof=1) / math.sqrt(_LD_PROBES)
        plot.errorbars(
            ax1, n, mean, se, fmt="-o", color=color, linewidth=1.2, label=rf"$\Delta = {dl:g}$"
        )
        info = float(M.mutual_information_gaussian(dl, _MAN_VARS))
        keep = 1.0 - 1.0 / (1.0 + (n_fine - 1.0) * math.exp(-info))
        q_pop = _MAN_VARS / (_MAN_VARS + dl)
        model_dim = np.sum(q_pop[None, :] * keep[:, None] > 0.5, axis=1)
        ax1.plot(n_fine, model_dim, color=color, linestyle="--", linewidth=0.9)
        for g, (fill, ls) in enumerate((("full", "-"), ("none", "--"))):
            plot.errorbars(
                ax2,
                n,
                ret[:, j, g],
                ret_se[:, j, g],
                linestyle=ls,
                color=color,
                markersize=3.4,
                fillstyle=fill,
                markerfacecolor=color if g == 0 else "white",
                linewidth=1.1,
                label=rf"$\Delta = {dl:g}$" if g == 0 else None,
            )
        ax2.plot(n_fine, keep, color="0.5", linewidth=0.8, zorder=0)
    ax1.axhline(4, color="0.5", linewidth=0.7, linestyle=":")
    ax1.set_ylabel("local dimension (rule: $\\Delta\\lambda > -1/2$)")
    ax1.set_ylim(-0.2, 4.4)
    h1, _ = ax1.get_legend_handles_labels()
    h1.append(Line2D([], [], color="0.4", linestyle="--", linewidth=0.9, label="ESS model"))
    ax1.legend(handles=h1, loc="upper left", frameon=False, fontsize="x-small")
    ax2.set_ylabel(r"retained variance $q/q_{\mathrm{pop}}$ per group")
    ax2.set_ylim(-0.05, 1.12)
    ax2.axhline(1.0, color="0.5", linewidth=0.7, linestyle=":")
    h2, _ = ax2.get_legend_handles_labels()
    h2 += [
        Line2D([], [], color="0.3", marker="o", markersize=3.4, label="$s^2 = 4$"),
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            markersize=3.4,
            markerfacecolor="white",
            linestyle="--",
            label="$s^2 = 1$",
        ),
        Line2D([], [], color="0.5", linewidth=0.8, label=r"$1 - 1/n_{\mathrm{eff}}$"),
    ]
    ax2.legend(handles=h2, loc="upper left", frameon=False, fontsize="x-small")
    for ax, letter in ((ax1, "a"), (ax2, "b")):
        ax.set_xscale("log")
        ax.set_xlim(1.5, 7e4)
        ax.set_xlabel("training points $n$")
        ax.grid(True, which="major", **_GRID)
        plot.panel_label(ax, letter)
