"""Lost dimensions: which variance group of a manifold is lost first, exact score and networks.

**Linear manifolds** (Achilli et al. 2024, arXiv 2410.08727; docs/theory.md section 4). Data on a
random m-dimensional subspace of R^d with two variance groups (stds ``s_hi`` and ``s_lo``),
Gaussian or norm-normalised (:class:`physdiff.ensembles.LinearManifold`), ``n`` training
points. For each tangent direction ``b_i`` the posterior variance ``V_i(delta) =
E_y b_i^T Cov(x0 | y) b_i`` at probes ``y = a_nu + sqrt(delta) z`` is measured
(:func:`physdiff.geometry.retained_variance`) on

* the exact empirical score of the training set (posterior weights, Rao-Blackwellised), and
* a trained network on the same training set (Tweedie's second order through its
  autograd score Jacobian, :class:`physdiff.nn.NetworkScoreModel`),

and read with both criteria of :mod:`physdiff.geometry`: ``"retained"`` (``V_i`` falls to
half the population value; population by :func:`physdiff.geometry.manifold_population`,
exact for Gaussian data, Monte Carlo for normalised data) and ``"jacobian"`` (the
eigenvalue of ``delta J`` along ``b_i`` falls below ``-1/2``, i.e. ``V_i/delta < 1/2``: the
direction joins the normal bulk of the spectrum). Per-direction thresholds come from
:func:`physdiff.geometry.measured_thresholds` and are averaged per group in ``log delta``.
A direction without a crossing on the grid is a censored value, a bound
(:mod:`validation.result`): never resolved (its ``V/delta`` stays below 1/2 at every noise
level: lost everywhere) or never reaching the retained level is lost above the grid,
``> log delta_max``; one still retained (visible) at the smallest noise level (a network
that generalises) is lost below it, ``< log delta_min``. The prediction is the library's
model, (b) the effective-sample-size model of the exact empirical score
(:func:`physdiff.geometry.ess_thresholds`, per criterion; docs/theory.md section 4).
Model (a), the authors' gated REM (:func:`physdiff.geometry.gated_rem_thresholds`: the
same threshold for both criteria), is the paper's model: its rows are reference rows
(reported, no verdict) with the measured factor ``delta_measured / delta_(a)``, by which
the exact score refutes it (3-8x at n = 200 and 2000, Gaussian data).

**8x8 digits** (:func:`physdiff.data.load_digits`, standardised, d = 64): networks trained
on nested subsets of growing size; the spectrum of the symmetric part of the score
Jacobian (:func:`physdiff.geometry.jacobian_spectrum`) at probes ``x0 + sqrt(delta) z``
around the subset's images, and the local dimension (:func:`physdiff.geometry.
local_dimension`, rule ``"half"``: eigenvalues of ``delta J`` above ``-1/2``) at a few
noise levels. Its prediction is the exact empirical score of the same subset (the
optimum of the training loss, whose posterior has collapsed at these noise levels); the
local dimension of the Gaussian with the full training split's covariance (the number of
its variances above ``delta``) is reported alongside as a generalising reference.

Verdict rows (``|measured - predicted| <= k * s.e. + tolerance``; group thresholds in
``log delta`` with ``tolerance_log``, local dimensions with ``tolerance_dim``):

* per source (exact score at each of ``ns_exact``; networks at each of ``n_networks``,
  criteria ``network_criteria``), data kind and criterion: ``log delta`` of the high- and
  of the low-variance group vs model (b) (where model (b) says a group is never resolved,
  the peak over the grid of its ``V/delta`` vs model (b)'s peak instead, ``tolerance_peak``),
  and, with ``judge_gated_rem``, reference rows: the high group's ``log delta`` and the
  ordering ``log(delta_lo/delta_hi)`` (positive: the low-variance group is lost first) vs
  model (a) (no ordering row where both groups are censored on the same side: it is
  undefined);
* digits: network local dimension vs the exact empirical score's, per subset and delta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physdiff import geometry as G
from physdiff.ensembles import Empirical, LinearManifold
from physdiff.errors import DomainError, InputError

from ..config import ExperimentConfig, NetConfig, TrainingConfig, VerdictConfig
from ..result import Result, judge, saved_figure
from ..stats import difference
from ..training import NetSpec, TrainSpec
from . import RunContext, experiment_run

__all__ = ["Config", "PRESETS", "run", "check", "thresholds"]

NAME = "lost_dimensions"

KINDS = ("gaussian", "normalized")
CRITERIA = ("retained", "jacobian")


NET = NetConfig(hidden=256)
TRAINING = TrainingConfig(steps=3000)


@dataclass(frozen=True)
class Verdict(VerdictConfig):
    """The rules' settings (:class:`validation.config.VerdictConfig`) and the tolerances."""

    REASONS = {  # why each fixed slack is there (docs/validation.md)
        "tolerance_log": (
            "model error of the effective-sample-size model (b) (docs/theory.md section 4: an "
            "approximation of the exact empirical score); stated, the cpu run finds it within "
            "about 0.1"
        ),
        "tolerance_peak": (
            "model error of model (b) on the peak V/delta of a never-resolved group; stated, not "
            "derived"
        ),
        "tolerance_dim": (
            "a local dimension counts eigenvalues above -1/2 (integers per probe) of a trained "
            "network's noisy Jacobian; stated accuracy"
        ),
    }

    tolerance_log: float = 0.35
    tolerance_peak: float = 0.1  # on the peak of V/delta of a never-resolved group
    tolerance_dim: float = 2.0


@dataclass(frozen=True)
class Config(ExperimentConfig):
    d: int = 24
    stds: tuple[float, ...] = (2.0, 2.0, 2.0, 1.0, 1.0, 1.0)
    kinds: tuple[str, ...] = KINDS
    ns_exact: tuple[int, ...] = (20, 200, 2000)
    n_networks: tuple[int, ...] = (20, 200)
    network_kinds: tuple[str, ...] = KINDS
    network_criteria: tuple[str, ...] = ("jacobian",)
    deltas: tuple[float, float, int] = (1e-3, 10.0, 25)  # log grid: lo, hi, points
    n_probe: int = 500  # exact score probes per noise level
    n_probe_network: int = 300
    n_reference: int = 20000  # Monte Carlo population of normalised data
    n_probe_reference: int = 1000
    judge_gated_rem: bool = True
    # digits
    digits_subsets: tuple[int, ...] = (16, 128, 1024)
    digits_deltas: tuple[float, ...] = (0.1, 0.3, 1.0)
    digits_probe: int = 100
    # networks
    net: NetConfig = NET
    training: TrainingConfig = TRAINING
    digits_hidden: int = 256
    digits_steps: int = 3000
    verdict: Verdict = Verdict()


PRESETS: dict[str, Config] = {
    "smoke": Config(
        preset="smoke",
        d=12,
        stds=(2.0, 2.0, 1.0, 1.0),
        ns_exact=(200,),
        n_networks=(),
        network_kinds=(),
        deltas=(5e-3, 5.0, 13),
        n_probe=200,
        n_probe_network=50,
        n_reference=5000,
        n_probe_reference=400,
        judge_gated_rem=False,
        digits_subsets=(16,),
        digits_deltas=(20.0,),
        digits_probe=20,
        digits_hidden=32,
        digits_steps=150,
        net=NET.replace(hidden=32, depth=2, embed_dim=16),
        training=TRAINING.replace(steps=150, batch_size=64, ema_decay=0.9, workers=1),
        verdict=Verdict(tolerance_log=0.6, tolerance_dim=1.0),
    ),
    "cpu": Config(preset="cpu"),
    "gpu": Config(
        preset="gpu",
        d=32,
        stds=(2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0),
        ns_exact=(20, 100, 1000, 10000),
        n_networks=(20, 100, 1000),
        n_probe=2000,
        n_probe_network=1000,
        n_reference=100000,
        n_probe_reference=4000,
        digits_subsets=(16, 64, 256, 1024, 1438),
        digits_deltas=(0.1, 0.3, 1.0, 3.0),
        digits_probe=400,
        digits_hidden=512,
        digits_steps=12000,
        net=NET.replace(hidden=512, depth=4),
        training=TRAINING.replace(steps=12000, batch_size=1024, workers=7),
    ),
}


def check(config: Config) -> None:
    """Reject bad kinds, criteria, sizes and grids before anything runs."""
    for k in (*config.kinds, *config.network_kinds):
        if k not in KINDS:
            raise InputError(f"kinds must be among {KINDS}; got {k!r}")
    for c in config.network_criteria:
        if c not in CRITERIA:
            raise InputError(f"network_criteria must be among {CRITERIA}; got {c!r}")
    s = np.asarray(config.stds, float)
    if s.size < 2 or s.size > config.d or np.unique(s).size != 2 or np.any(s <= 0):
        raise InputError("stds must hold two distinct positive values, at most d of them")
    if any(n < 2 for n in (*config.ns_exact, *config.n_networks, *config.digits_subsets)):
        raise InputError("every training set needs n >= 2 points")
    if max(config.digits_subsets, default=0) > 1438:
        raise InputError("the digits training split holds 1438 images")
    lo, hi, m = config.deltas
    if not (0 < lo < hi and m >= 3):
        raise InputError(f"deltas must be (lo, hi, points), 0 < lo < hi; got {config.deltas}")


# ---------------------------------------------------------------------------------------
# thresholds with a per-direction fallback
# ---------------------------------------------------------------------------------------
def thresholds(
    rv: G.RetainedVariance, stds: np.ndarray, n: int, normalized: bool, criterion: str
) -> G.DirectionThresholds:
    """:func:`physdiff.geometry.measured_thresholds`, with directions whose crossing lies
    outside the grid (never lost on it, or lost above it) set to NaN instead of failing all
    (``inf``, never resolved under ``"jacobian"``, is kept)."""
    try:
        return G.measured_thresholds(rv, stds, n, normalized=normalized, criterion=criterion)
    except DomainError:
        pass
    dc, se = np.full(stds.size, np.nan), np.full(stds.size, np.nan)
    for i in range(stds.size):
        one = G.RetainedVariance(
            rv.deltas,
            rv.variance[:, [i]],
            rv.stderr[:, [i]],
            rv.reference[:, [i]],
            rv.reference_se[:, [i]],
            rv.participation,
            rv.n_probe,
        )
        try:
            c, e = one.critical_deltas(criterion)
        except DomainError:
            continue
        dc[i], se[i] = c[0], e[0]
    return G.DirectionThresholds("measured", criterion, 0.5, stds, dc, se, float(n), normalized)


NEVER = "never resolved"
OUTSIDE = "not lost on the grid"
ABOVE = "lost above the grid"
MIXED = "censored on both sides"
FLIP = {"": "", "upper": "lower", "lower": "upper"}


def censoring(rv: G.RetainedVariance, th: G.DirectionThresholds, criterion: str) -> list[str]:
    """Per direction, how its threshold is known: ``""`` a crossing; ``"lower"`` lost above
    the grid (``+inf``: never resolved; or a retained fraction that never reaches the
    level), ``"upper"`` still retained/visible at the smallest noise level (the crossing
    lies below the grid)."""
    order = np.argsort(rv.deltas)
    val = (rv.ratio if criterion == "retained" else rv.visible)[order]
    out = []
    for i, x in enumerate(th.deltas):
        if np.isfinite(x):
            out.append("")
        elif np.isposinf(x) or val[0, i] < th.level:
            out.append("lower")
        else:
            out.append("upper")
    return out


def _groups(
    th: G.DirectionThresholds, side: list[str], grid: tuple[float, float]
) -> dict[str, tuple[float, float, str, str]]:
    """``{"hi": (log delta, se, status, bound), "lo": ...}``: the group mean of the
    per-direction thresholds in ``log delta`` with its standard error. A censored
    direction enters as its bound (``grid``: ``log delta`` of the grid's ends), and the
    group mean is then a bound of the same side (``status`` says why: ``NEVER`` when every
    direction is never resolved, ``OUTSIDE`` below the grid, ``ABOVE`` above it); with
    directions censored on both sides the mean is bounded by neither (``MIXED``: its
    error is half the grid's span)."""
    out = {}
    s = th.stds
    side = np.asarray(side, dtype=object)
    for key, g in (("hi", s.max()), ("lo", s.min())):
        sel = s == g
        dc, se, sd = th.deltas[sel], th.stderr[sel], side[sel]
        ok = sd == ""
        x = np.where(ok, np.log(np.where(ok, dc, 1.0)), np.where(sd == "upper", *grid))
        err = float(math.sqrt(np.sum((se[ok] / dc[ok]) ** 2)) / x.size)
        sides = set(sd[~ok])
        if not sides:
            out[key] = (float(x.mean()), err, "ok", "")
        elif len(sides) == 2:
            out[key] = (float(x.mean()), 0.5 * (grid[1] - grid[0]), MIXED, "")
        else:
            b = sides.pop()
            never = b == "lower" and np.all(np.isposinf(dc))
            status = NEVER if never else (OUTSIDE if b == "upper" else ABOVE)
            out[key] = (float(x.mean()), err, status, b)
    return out


def _model_groups(th: G.DirectionThresholds) -> dict[str, float]:
    """Group means of a model's thresholds in ``log delta`` (``+inf``: never resolved)."""
    s = th.stds
    out = {}
    for key, g in (("hi", s.max()), ("lo", s.min())):
        dc = th.deltas[s == g]
        out[key] = math.inf if np.all(np.isposinf(dc)) else float(np.mean(np.log(dc)))
    return out


def _order(g: dict) -> tuple[float, float, str] | None:
    """``log(delta_lo/delta_hi)`` with its standard error and its bound (a lower bound when
    the low group is lost above the grid, say); ``None`` when both groups are censored on
    the same side (the ordering is then undefined)."""
    lo, hi = g["lo"], g["hi"]
    sides = {b for b in (lo[3], FLIP[hi[3]]) if b}
    if len(sides) == 2:
        return None
    return lo[0] - hi[0], difference(lo[1], hi[1]), sides.pop() if sides else ""


def _peak(visible: np.ndarray, se: np.ndarray, sel: np.ndarray) -> tuple[float, float]:
    """Maximum over the grid of the group-mean ``V/delta`` and its standard error."""
    v = visible[:, sel].mean(1)
    k = int(np.argmax(v))
    return float(v[k]), float(math.sqrt(np.sum(se[k, sel] ** 2)) / sel.sum())


def model_b_visible(pop: G.ManifoldPopulation, n: int) -> np.ndarray:
    """Model (b)'s ``V_i/delta = (1 - 1/n_eff) mmse_i/delta`` on the population grid,
    ``(len(deltas), m)``."""
    from scipy.special import expit

    r = expit(math.log(n - 1.0) - pop.information)
    return r[:, None] * pop.mmse / pop.deltas[:, None]


# ---------------------------------------------------------------------------------------
# the manifold part
# ---------------------------------------------------------------------------------------
def _manifold(config: Config, kind: str, seed: int) -> LinearManifold:
    rng = np.random.default_rng([seed, 40])  # one subspace for both kinds
    return LinearManifold.random(config.d, config.stds, rng, normalized=(kind == "normalized"))


def _training_set(man: LinearManifold, n: int, kind: str, seed: int) -> np.ndarray:
    return man.sample(n, np.random.default_rng([seed, 41, KINDS.index(kind), n]))


def _measure(model, man, train, deltas, pop, m, rng) -> G.RetainedVariance:
    return G.retained_variance(model, man.basis, train, deltas, rng, n_probe=m, reference=pop)


def _factor_text(measured: float, predicted: float, bound: str) -> str:
    sign = {"": "", "upper": "< ", "lower": "> "}[bound]
    return f"{sign}{math.exp(measured - predicted):.3g}"


def _manifold_rows(config: Config, meas: dict, a: dict, b: dict, b_peak) -> list:
    """Rows for one (source, kind, n, criterion): each group vs model (b), the prediction
    (its level, or, where (b) says the group is never resolved, its peak ``V/delta``);
    reference rows: the high group and the ordering vs model (a), with the measured factor
    in delta."""
    rule_log = config.verdict.rule("tolerance_log")
    rule_peak = config.verdict.rule("tolerance_peak")
    sh = config.verdict.prediction_shift
    g, src, cond = meas["groups"], meas["source"], meas["condition"]
    extra = {
        "measured_log_delta": {k: v[0] for k, v in g.items()},
        "measured_status": {k: v[2] for k, v in g.items()},
        "measured_bound": {k: v[3] for k, v in g.items()},
        "model_b_log_delta": b,
        "model_a_log_delta": a,
        "direction_thresholds": meas["per_direction"],
        "direction_censoring": meas["censoring"],
    }
    rows = []
    for key, label in (("hi", "high-variance"), ("lo", "low-variance")):
        if math.isinf(b[key]):  # model (b): never resolved at this n
            pk, pk_se = meas["peak"][key]
            rows.append(
                judge(
                    f"{src}: peak V/delta of the {label} group (model (b): never above 1/2)",
                    b_peak[key] + sh,
                    pk,
                    pk_se,
                    rule_peak,
                    condition=cond,
                    **extra,
                )
            )
            continue
        rows.append(
            judge(
                f"{src}: log(delta) where the {label} group is lost, vs model (b)",
                b[key] + sh,
                g[key][0],
                g[key][1],
                rule_log,
                condition=f"{cond}; {g[key][2]}" if g[key][3] else cond,
                bound=g[key][3],
                **extra,
            )
        )
    if config.judge_gated_rem:
        hi = g["hi"]
        factor = _factor_text(hi[0], a["hi"], hi[3])
        rows.append(
            judge(
                f"reference: {src}: log(delta) where the high-variance group is lost, vs "
                "model (a) (the paper's gated REM)",
                a["hi"] + sh,
                hi[0],
                hi[1],
                rule_log,
                condition=f"{cond}; delta_measured / delta_(a) = {factor}",
                bound=hi[3],
                reference=True,
                factor_measured_over_model_a=math.exp(hi[0] - a["hi"]),
                **extra,
            )
        )
        order = _order(g)
        if order is not None:
            rows.append(
                judge(
                    f"reference: {src}: log(delta_lo/delta_hi) (> 0: low-variance group lost "
                    "first), vs model (a) (the paper's gated REM)",
                    a["lo"] - a["hi"] + sh,
                    order[0],
                    order[1],
                    rule_log,
                    condition=cond,
                    bound=order[2],
                    reference=True,
                    measured_order=order[0],
                    **extra,
                )
            )
    return rows


# ---------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------
def _digits(config: Config):
    from physdiff.data import load_digits

    ds = load_digits()
    x = np.asarray(ds.train, dtype=np.float64)
    perm = np.random.default_rng(0).permutation(x.shape[0])
    return x, {n: x[perm[:n]].copy() for n in config.digits_subsets}


# ---------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------
def _half_level_axes(ax, top: float, ylabel: str) -> None:
    """A panel of a fraction against log delta: the level 1/2 marked, y from -0.05 to ``top``."""
    ax.axhline(0.5, color="0.4", lw=0.7)
    ax.set_xscale("log")
    ax.set_ylim(-0.05, top)
    ax.set_xlabel(r"$\Delta$")
    ax.set_ylabel(ylabel)


def _plot(curves: dict, summary: list, digits: dict, config: Config, path: Path) -> None:
    from physdiff.plot import OKABE_ITO

    hi_col, lo_col = OKABE_ITO["blue"], OKABE_ITO["orange"]
    pal = [OKABE_ITO[c] for c in ("orange", "sky", "green", "vermillion", "purple", "blue")]
    stds = np.asarray(config.stds, float)
    sel = {"hi": stds == stds.max(), "lo": stds == stds.min()}
    shown = config.n_networks or config.ns_exact[:1]
    alpha = {
        n: 1.0 - 0.55 * (len(shown) - 1 - j) / max(1, len(shown) - 1) for j, n in enumerate(shown)
    }
    with saved_figure(path, (11.0, 6.3), dpi=80) as fig:  # many curves: keep the PNG under 200 kB
        axs = fig.subplots(2, 3)
        for j, kind in enumerate(config.kinds[:2]):
            ax = axs[0, j]
            for (src, knd, n), c in curves.items():
                if knd != kind or n not in alpha:
                    continue
                for key, col in (("hi", hi_col), ("lo", lo_col)):
                    s_g = stds[sel[key]][0]
                    ax.plot(
                        c["deltas"],
                        c["visible"][:, sel[key]].mean(1),
                        ls="-" if src == "exact" else "--",
                        color=col,
                        alpha=alpha[n],
                        lw=1.2,
                        label=f"{src} n={n}, s={s_g:g}",
                    )
                    if src == "exact":
                        ax.plot(
                            c["deltas"],
                            c["visible_b"][:, sel[key]].mean(1),
                            ls=":",
                            color=col,
                            alpha=alpha[n],
                            lw=1.0,
                        )
                        ax.axvline(
                            math.exp(c["a"][key]), color=col, ls="-.", lw=0.7, alpha=alpha[n]
                        )
            ylabel = r"$V_i/\Delta$ = 1 + eigenvalue of $\Delta J$ along the group"
            _half_level_axes(ax, 1.1, ylabel)
            ax.set_title(
                f"{kind}: exact -, network --, model (b) :, model (a) threshold -.",
                fontsize=6,
            )
            ax.legend(fontsize=5, frameon=False, loc="upper left")
        ax = axs[0, 2]
        labels = []
        lo_x = math.log(config.deltas[0]) - 0.5
        hi_x = math.log(config.deltas[1]) + 0.5
        for i, row in enumerate(summary):
            y = len(summary) - i
            labels.append(row["label"])
            for key, mk, col, dy in (("hi", "o", hi_col, 0.12), ("lo", "s", lo_col, -0.12)):
                v, se, status, bound = row["measured"][key]
                if not bound:
                    ax.errorbar(v, y + dy, xerr=min(se, 2.0), fmt=mk, color=col, ms=4, capsize=2)
                elif bound == "lower":
                    ax.plot(hi_x, y + dy, ">", color=col, ms=5)
                else:
                    ax.plot(lo_x, y + dy, "<", color=col, ms=5)
                bv = row["b"][key]
                ax.plot(bv if math.isfinite(bv) else hi_x, y + dy, "|", color=col, ms=9, mew=1.5)
                ax.plot(row["a"][key], y + dy, "x", color=col, ms=5)
        ax.set_yticks(range(len(summary), 0, -1), labels, fontsize=5)
        ax.set_xlabel(r"$\log \Delta$ where the group is lost")
        ax.set_title(
            "measured (o high, s low), model (b) |, model (a) x;\n"
            "> never resolved, < not lost on the grid",
            fontsize=7,
        )
        # digits
        ax = axs[1, 0]
        dl_plot = digits.get("spectrum_delta")
        for j, n in enumerate(config.digits_subsets):
            sp = digits["spectra"].get(n)
            if sp is None:
                continue
            kk = np.arange(1, sp["net"].shape[0] + 1)
            ax.plot(kk, sp["net"], color=pal[j % len(pal)], lw=1.2, label=f"network n={n}")
            ax.plot(kk, sp["emp"], color=pal[j % len(pal)], lw=0.8, ls="--")
        ax.axhline(-0.5, color="0.4", lw=0.7)
        ax.set_xlabel("eigenvalue index")
        ax.set_ylabel(r"$\Delta \lambda_k$ (mean over probes)")
        ax.set_title(f"digits: Jacobian spectrum at delta={dl_plot} (dashed: exact)", fontsize=8)
        ax.legend(fontsize=6, frameon=False)
        ax = axs[1, 1]
        ns = np.array(config.digits_subsets, float)
        for j, dl in enumerate(config.digits_deltas):
            col = pal[j % len(pal)]
            net = np.array([digits["ld"][(n, dl)]["net"] for n in config.digits_subsets])
            emp = np.array([digits["ld"][(n, dl)]["emp"] for n in config.digits_subsets])
            ax.errorbar(
                ns,
                net[:, 0],
                yerr=net[:, 1],
                fmt="o-",
                color=col,
                ms=3,
                capsize=2,
                label=f"delta={dl:g} (Gaussian ref. {digits['pca'][dl]})",
            )
            ax.plot(ns, emp[:, 0], "s--", color=col, ms=3, mfc="none")
        ax.set_xscale("log")
        ax.set_xlabel("training images n")
        ax.set_ylabel("local dimension (rule 'half')")
        ax.set_title("digits: network (o, solid), exact score (s, dashed)", fontsize=8)
        ax.legend(fontsize=6, frameon=False)
        ax = axs[1, 2]
        for (src, knd, n), c in curves.items():
            if src != "exact":
                continue
            for key, col in (("hi", hi_col), ("lo", lo_col)):
                ax.plot(
                    c["deltas"],
                    c["ratio"][:, sel[key]].mean(1),
                    ls="-" if knd == "gaussian" else "--",
                    color=col,
                    alpha=1.0
                    - 0.65
                    * (len(config.ns_exact) - 1 - config.ns_exact.index(n))
                    / max(1, len(config.ns_exact) - 1),
                    lw=1.0,
                    label=f"{knd[:4]} n={n} s={stds[sel[key]][0]:g}",
                )
        _half_level_axes(ax, 1.2, r"retained fraction $V / V_{pop}$")
        ax.set_title(
            "exact score, retained criterion (solid gaussian, dashed normalised)", fontsize=7
        )
        ax.legend(fontsize=4.5, frameon=False, ncol=2)
        fig.suptitle(f"Lost dimensions ({config.preset})", fontsize=9)


# ---------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------
def _jobs(ctx: RunContext, serial: bool, subsets: dict):
    config, seed = ctx.config, ctx.seed
    jobs = {}
    for i, kind in enumerate(config.network_kinds):
        man = _manifold(config, kind, seed)
        for j, n in enumerate(config.n_networks):
            x = _training_set(man, n, kind, seed)
            sd = float(np.sqrt(np.mean(x.var(axis=0))))
            net = NetSpec.of(config, config.d, sigma_data=sd)
            jobs[("manifold", kind, n)] = ctx.job(
                f"{kind}-n{n}", net, x, seed=seed * 1000 + 10 * i + j, progress=serial
            )
    dspec = TrainSpec.of(config, steps=config.digits_steps)
    dnet = NetSpec(64, config.digits_hidden, config.net.depth, config.net.embed_dim, sigma_data=1.0)
    for j, (n, sub) in enumerate(subsets.items()):
        jobs[("digits", n)] = ctx.job(
            f"digits-n{n}", dnet, sub, seed=seed * 1000 + 100 + j, train=dspec, progress=serial
        )
    return jobs


@experiment_run
def run(config: Config, ctx: RunContext) -> Result:
    """Train the manifold and digits networks (one sweep), measure, judge, plot."""
    out_dir, seed = ctx.out_dir, ctx.seed
    full, subsets = _digits(config) if config.digits_subsets else (None, {})
    n_jobs = len(config.network_kinds) * len(config.n_networks) + len(subsets)
    jobs = _jobs(ctx, ctx.in_process(max(1, n_jobs)), subsets)
    done = ctx.train(list(jobs.values()))
    summaries = dict(zip(jobs, done, strict=True))

    lo, hi, m = config.deltas
    deltas = np.geomspace(lo, hi, int(m))
    stds = np.asarray(config.stds, float)
    groups = {"hi": stds == stds.max(), "lo": stds == stds.min()}
    rows, curves, summary = [], {}, []
    for ki, kind in enumerate(config.kinds):
        man = _manifold(config, kind, seed)
        norm = kind == "normalized"
        rng = np.random.default_rng([seed, 42, ki])
        pop = G.manifold_population(
            man, deltas, rng, n_reference=config.n_reference, n_probe=config.n_probe_reference
        )
        sources = [("exact", n) for n in config.ns_exact]
        if kind in config.network_kinds:
            sources += [("network", n) for n in config.n_networks]
        for src, n in sources:
            train = _training_set(man, n, kind, seed)
            if src == "exact":
                model, mm, crits = Empirical(train), config.n_probe, CRITERIA
            else:
                model = ctx.network(jobs[("manifold", kind, n)])
                mm, crits = config.n_probe_network, config.network_criteria
            rv = _measure(model, man, train, deltas, pop, mm, rng)
            a = _model_groups(G.direction_thresholds(man, n, model="gated-rem"))
            vis_b = model_b_visible(pop, n)
            b_peak = {k: float(vis_b[:, sel].mean(1).max()) for k, sel in groups.items()}
            vis_se = rv.stderr / deltas[:, None]
            peak = {k: _peak(rv.visible, vis_se, sel) for k, sel in groups.items()}
            curves[(src, kind, n)] = {
                "deltas": deltas,
                "visible": rv.visible,
                "ratio": rv.ratio,
                "visible_b": vis_b,
                "a": a,
            }
            for crit in crits:
                th = thresholds(rv, stds, n, norm, crit)
                b_th = G.direction_thresholds(
                    man,
                    n,
                    model="effective-sample-size",
                    criterion=crit,
                    population=pop if norm else None,
                )
                b = _model_groups(b_th)
                side = censoring(rv, th, crit)
                g = _groups(th, side, (math.log(lo), math.log(hi)))
                summary.append(
                    {
                        "label": f"{src[:3]} {kind[:4]} n={n} {crit[:3]}",
                        "measured": g,
                        "b": b,
                        "a": a,
                    }
                )
                meas = {
                    "source": "exact score" if src == "exact" else "network",
                    "groups": g,
                    "peak": peak,
                    "condition": f"{kind}, d={config.d}, m={stds.size}, stds={config.stds}, "
                    f"n={n}, criterion={crit}",
                    "per_direction": th.deltas.tolist(),
                    "censoring": side,
                }
                rows.extend(_manifold_rows(config, meas, a, b, b_peak))

    # digits
    digits: dict = {"spectra": {}, "ld": {}, "pca": {}}
    if subsets:
        lam = np.linalg.eigvalsh(np.cov(full.T))
        rule_dim = config.verdict.rule("tolerance_dim")
        dl_plot = config.digits_deltas[len(config.digits_deltas) // 2]
        digits["spectrum_delta"] = dl_plot
        for dl in config.digits_deltas:
            digits["pca"][dl] = int(np.sum(lam > dl))
        for j, (n, sub) in enumerate(subsets.items()):
            net = ctx.network(jobs[("digits", n)])
            emp = Empirical(sub)
            summ = summaries[("digits", n)]
            for dl in config.digits_deltas:
                rng = np.random.default_rng([seed, 43, j, int(round(1e6 * dl))])
                y = G.probe_points(sub, dl, config.digits_probe, rng)
                sp_net = G.jacobian_spectrum(net, y, dl)
                sp_emp = G.jacobian_spectrum(emp, y, dl)
                ld_net = G.local_dimension(sp_net, dl, rule="half")
                ld_emp = G.local_dimension(sp_emp, dl, rule="half")
                digits["ld"][(n, dl)] = {
                    "net": (ld_net.mean, ld_net.stderr),
                    "emp": (ld_emp.mean, ld_emp.stderr),
                }
                if dl == dl_plot:
                    digits["spectra"][n] = {
                        "net": (dl * sp_net).mean(0),
                        "emp": (dl * sp_emp).mean(0),
                    }
                rows.append(
                    judge(
                        "digits: network local dimension (rule 'half') vs exact empirical score",
                        ld_emp.mean + config.verdict.prediction_shift,
                        ld_net.mean,
                        difference(ld_net.stderr, ld_emp.stderr),
                        rule_dim,
                        condition=f"8x8 digits, n={n} images, delta={dl:g}",
                        gaussian_reference_dim=digits["pca"][dl],
                        network_spectrum_top=(dl * sp_net).mean(0)[:12].tolist(),
                        exact_spectrum_top=(dl * sp_emp).mean(0)[:12].tolist(),
                        training=summ.brief(),
                    )
                )
    fig = "lost_dimensions.png"
    _plot(curves, summary, digits, config, out_dir / fig)
    return ctx.result(rows, [fig])
