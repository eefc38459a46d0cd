"""Exact empirical score: the measured REM collapse against delta_C across d and n.

No training. The training set is ``n`` points from ``N(0, s^2 I_d)`` and the score model is
the exact empirical score (:class:`physdiff.ensembles.Empirical`), the optimum of denoising
score matching on it. Biroli et al. 2024 (Eq. 15; docs/theory.md section 3) predict that the
posterior over training points condenses at

    delta_C = s^2 / (n^{2/d} - 1),     t_C = 1/2 log(1 + delta_C)  (OU time),

a large-d statement at fixed ``alpha_n = log(n)/d`` (:func:`physdiff.memorization.
collapse_delta_isotropic`). It is measured three ways on every ``(d, n)`` case:

* **f^e** (:func:`physdiff.memorization.measured_collapse_delta`): the noise level where
  ``d f^e`` (the mean posterior entropy over training points, in nats) rises through
  ``log 2``. ``d f^e`` is estimated at ``y = a_nu + sqrt(delta) z`` by the surprisal
  ``-log w_nu(y)`` less its self term, ``log(1 + sum_{mu != nu} e^{l_mu - l_nu}) >= 0``,
  whose mean is ``E_y H(w(y)) = d f^e`` because ``nu`` given ``y`` is distributed as
  ``w(y)`` (:func:`physdiff.memorization.excess_entropy_samples`, the library's estimator;
  the self term carries the ``sqrt(d/2)``-nat spread of ``|z|^2/2``). Standard error of the
  crossing: bootstrap over the probes.
* **participation ratio** along reverse trajectories
  (:func:`physdiff.memorization.collapse_along_trajectories`, Euler-Maruyama on the OU
  process): the earliest time from which the mean ``1/sum w^2`` stays below 2;
* **frozen index** along the same trajectories: the earliest time from which at least half
  of the trajectories have their final nearest training point as their nearest one.

The trajectory estimates come from ``traj_batches`` independent batches (standard error:
spread over batches, with the time grid's quantisation error ``cell / sqrt(12)`` added in
quadrature, since a crossing is a grid time). Every crossing is an O(1) criterion (one
binary choice left, two active points, half the trajectories decided), so at finite d it
sits below delta_C; the deviation is the result, shown in the figure and in every row.

Verdict rows per case (``|measured - predicted| <= k * s.e. + tolerance``):

1-3. ``log delta`` of each measured collapse against ``log delta_C`` (``tolerance_log``,
     the same for every d: the deviation does not shrink over the d of the presets at
     fixed ``alpha_n``, see docs/validation.md);
4.   the library's own ``f^e`` (:func:`~physdiff.memorization.excess_entropy_empirical`) at
     ``delta_C`` against the large-d value 0, tolerance ``tolerance_f / sqrt(d)`` (a rule
     that tightens with d: measured ``f^e(delta_C) ~ 0.1-0.15 / sqrt(d)``).

Each row's condition gives the collapse in OU time and in DDPM steps (linear beta,
1000 steps; :meth:`physdiff.processes.DDPM.step_of_delta`), theory and measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physdiff import memorization as M
from physdiff.ensembles import Empirical
from physdiff.errors import DomainError, InputError
from physdiff.processes import DDPM, OU

from ..config import VerdictConfig
from ..result import Result, Rule, judge, save_figure
from . import RunContext, experiment_run

__all__ = [
    "Config",
    "PRESETS",
    "run",
    "check",
    "surprisal_samples",
    "collapse_index",
]

NAME = "collapse_exact"


@dataclass(frozen=True)
class Verdict(VerdictConfig):
    """The rules' settings (:class:`validation.config.VerdictConfig`) and the tolerances."""

    tolerance_log: float = 0.4  # on log delta
    tolerance_f: float = 0.3  # f^e(delta_C) within tolerance_f / sqrt(d)


@dataclass(frozen=True)
class Config:
    """Settings of one preset (every field is written into the result)."""

    preset: str
    cases: tuple[tuple[int, int], ...] = (
        (16, 100),
        (16, 1000),
        (16, 10000),
        (64, 100),
        (64, 1000),
        (64, 10000),
        (256, 100),
        (256, 1000),
        (256, 10000),
        (32, 25),  # alpha_n = 0.1 series: fixed alpha_n, growing d
        (96, 14765),
    )
    variance: float = 1.0  # s^2 of the isotropic Gaussian data
    grid: tuple[float, float] = (1 / 6, 3.0)  # f^e grid: delta_C times [lo, hi]
    n_deltas: int = 25
    n_samples: int = 1000  # probes per noise level for f^e
    n_boot: int = 200
    traj_batches: int = 5
    traj_per_batch: int = 40
    traj_steps: int = 150
    traj_max_n: int = 100_000  # larger training sets: no trajectory rows
    horizon_factor: float = 30.0  # OU horizon where delta = horizon_factor * delta_C
    pr_level: float = 2.0
    frozen_level: float = 0.5
    verdict: Verdict = Verdict()
    threads: int = 1


PRESETS: dict[str, Config] = {
    "smoke": Config(
        preset="smoke",
        cases=((16, 100), (64, 100)),
        n_deltas=15,
        n_samples=300,
        n_boot=50,
        traj_batches=2,
        traj_per_batch=20,
        traj_steps=60,
        verdict=Verdict(tolerance_log=0.6),
    ),
    "cpu": Config(preset="cpu"),
    "gpu": Config(
        preset="gpu",
        cases=(
            (16, 100),
            (16, 1000),
            (16, 10000),
            (16, 100000),
            (64, 100),
            (64, 1000),
            (64, 10000),
            (64, 100000),
            (256, 100),
            (256, 1000),
            (256, 10000),
            (256, 100000),
            (1024, 1000),
            (1024, 100000),
            (32, 25),  # alpha_n = 0.1 series
            (64, 601),
            (96, 14765),
            (128, 362217),
        ),
        n_samples=4000,
        traj_batches=8,
        traj_per_batch=50,
        traj_steps=200,
        traj_max_n=20000,
    ),
}


def check(config: Config) -> None:
    """Reject cases without at least two points or dimension one."""
    for d, n in config.cases:
        if d < 1 or n < 2:
            raise InputError(f"every case needs d >= 1 and n >= 2; got (d, n) = ({d}, {n})")
    if config.traj_batches < 2:
        raise InputError("traj_batches must be >= 2 (their spread is the standard error)")


# ---------------------------------------------------------------------------------------
# estimators shared with the other memorisation experiments
# ---------------------------------------------------------------------------------------
def surprisal_samples(
    emp: Empirical, delta: float, m: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(h, participation ratio)`` for ``m`` probes ``y = a_nu + sqrt(delta) z``, by
    :func:`physdiff.memorization.excess_entropy_samples`: ``h`` is the surprisal
    ``-log w_nu(y)`` less its self term, ``h >= 0``, mean ``d f^e`` (module docstring)."""
    return M.excess_entropy_samples(emp, delta, m, rng)


def collapse_index(ok: np.ndarray) -> int:
    """Index of the first grid time (in reverse-time order) from which ``ok`` holds to the
    end, or ``-1`` when it fails at the last time."""
    if not ok[-1]:
        return -1
    k = len(ok) - 1
    while k > 0 and ok[k - 1]:
        k -= 1
    return k


def _ou_and_step(delta: float) -> tuple[float, int]:
    t = float(OU().time_of_delta(delta))
    return t, int(DDPM().step_of_delta(delta))


# ---------------------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------------------
def _fe_curve(emp: Empirical, dls: np.ndarray, config: Config, rng: np.random.Generator):
    g = np.empty((dls.size, config.n_samples))
    pr = np.empty(dls.size)
    for i, dl in enumerate(dls):
        g[i], p = surprisal_samples(emp, float(dl), config.n_samples, rng)
        pr[i] = p.mean()
    return g, pr


def _fe_crossing(g: np.ndarray, dls: np.ndarray, pr: np.ndarray, n: int, d: int, config, rng):
    def cross(gg):
        fe = M.ExcessEntropy(dls, gg.mean(1) / d, gg.std(1, ddof=1) / d, pr, n, d)
        try:
            return math.log(M.measured_collapse_delta(fe))
        except DomainError:
            return math.nan

    est = cross(g)
    m = g.shape[1]
    boots = []
    for _ in range(config.n_boot):
        idx = rng.integers(0, m, size=(dls.size, m))
        boots.append(cross(np.take_along_axis(g, idx, axis=1)))
    boots = np.asarray(boots)
    boots = boots[np.isfinite(boots)]
    se = float(boots.std(ddof=1)) if boots.size > 2 else math.inf
    return est, se


def _trajectories(emp: Empirical, dc: float, config: Config, rng: np.random.Generator):
    horizon = float(OU().time_of_delta(config.horizon_factor * dc))
    proc = OU(horizon=horizon)
    batches = [
        M.collapse_along_trajectories(
            emp, proc, config.traj_per_batch, rng, n_steps=config.traj_steps
        )
        for _ in range(config.traj_batches)
    ]
    dls = batches[0].deltas
    out = {}
    for key, arr, level, below in (
        ("pr", "participation", config.pr_level, True),
        ("frozen", "frozen", config.frozen_level, False),
    ):
        curves = np.stack([getattr(b, arr) for b in batches])
        per = []
        for c in curves:
            k = collapse_index(c < level if below else c >= level)
            per.append(math.log(dls[k]) if k >= 0 else math.nan)
        pooled = curves.mean(0)
        k = collapse_index(pooled < level if below else pooled >= level)
        per = np.asarray(per)
        fin = per[np.isfinite(per)]
        se = float(fin.std(ddof=1) / math.sqrt(fin.size)) if fin.size >= 2 else math.inf
        # the crossing is a grid time: it is known only to within the grid cell, a
        # quantisation error of standard deviation (cell width)/sqrt(12) in log delta that
        # the batch spread misses when every batch lands on the same grid time (spread 0)
        se = math.hypot(se, _grid_cell(dls, k) / math.sqrt(12.0)) if k >= 0 else se
        out[key] = (math.log(dls[k]) if k >= 0 else math.nan, se, pooled)
    return dls, out


def _grid_cell(dls: np.ndarray, k: int) -> float:
    """Width in ``log delta`` of the grid cell that ends at grid point ``k`` (the cell
    towards the previous grid time, or the next one at the first)."""
    j = k - 1 if k > 0 else k + 1
    return abs(math.log(dls[k]) - math.log(dls[j]))


def _case(d: int, n: int, i: int, config: Config, seed: int) -> dict:
    rng = np.random.default_rng([seed, 1, i])
    s2 = config.variance
    train = math.sqrt(s2) * rng.standard_normal((n, d))
    emp = Empirical(train)
    dc = float(M.collapse_delta_isotropic(n, d, s2))
    dls = dc * np.geomspace(config.grid[0], config.grid[1], config.n_deltas)
    g, pr = _fe_curve(emp, dls, config, rng)
    fe_log, fe_se = _fe_crossing(g, dls, pr, n, d, config, rng)
    # the library's estimator at delta_C
    lib = M.excess_entropy_empirical(emp, [dc], config.n_samples, rng)
    out = {
        "d": d,
        "n": n,
        "alpha_n": math.log(n) / d,
        "delta_C": dc,
        "deltas": dls,
        "H": g.mean(1),
        "H_se": g.std(1, ddof=1) / math.sqrt(g.shape[1]),
        "fe": (fe_log, fe_se),
        "f_lib": (float(lib.f[0]), float(lib.stderr[0])),
    }
    if n <= config.traj_max_n:
        tdl, tr = _trajectories(emp, dc, config, rng)
        out["traj_deltas"] = tdl
        out["pr"], out["frozen"] = tr["pr"], tr["frozen"]
    return out


# ---------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------
def _plot(cases: list[dict], config: Config, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from physdiff.plot import OKABE_ITO, style

    dims = sorted({c["d"] for c in cases})
    palette = list(OKABE_ITO.values())[1:]
    colour = {d: palette[j % len(palette)] for j, d in enumerate(dims)}
    ns = sorted({c["n"] for c in cases})
    marker = {n: "osD^vP*X"[j % 8] for j, n in enumerate(ns)}
    with style():
        fig = Figure(figsize=(11.0, 3.4), layout="constrained")
        FigureCanvasAgg(fig)
        ax0, ax1, ax2 = fig.subplots(1, 3)
        for c in cases:
            ax0.plot(
                c["deltas"] / c["delta_C"],
                np.maximum(c["H"], 1e-3),
                color=colour[c["d"]],
                marker=marker[c["n"]],
                ms=2.5,
                lw=0.9,
                label=f"d={c['d']}, n={c['n']}",
            )
        ax0.axhline(math.log(2), color="0.3", ls="--", lw=0.8)
        ax0.axvline(1.0, color="0.6", ls=":", lw=0.8)
        ax0.set_xscale("log")
        ax0.set_yscale("log")
        ax0.set_xlabel(r"$\Delta / \Delta_C$")
        ax0.set_ylabel(r"$d\, f^e$ (posterior entropy, nats)")
        ax0.set_title("excess entropy (dashed: log 2)")
        ax0.legend(fontsize=5, ncol=2, frameon=False)
        shift = {"fe": -0.12, "pr": 0.0, "frozen": 0.12}
        style_of = {
            "fe": ("d f^e = log 2", "o"),
            "pr": (f"mean PR < {config.pr_level:g}", "s"),
            "frozen": (f"frozen >= {config.frozen_level:g}", "^"),
        }
        for key, (label, mk) in style_of.items():
            xs, ys, es = [], [], []
            for c in cases:
                if key not in c:
                    continue
                v, se = c[key][0], c[key][1]
                xs.append(c["d"] * math.exp(shift[key]))
                ys.append(v - math.log(c["delta_C"]))
                es.append(se if math.isfinite(se) else 0.0)
            ax1.errorbar(xs, ys, yerr=es, fmt=mk, ms=3, capsize=2, label=label)
        ax1.axhline(0.0, color="0.3", lw=0.8)
        for sgn in (-1, 1):
            ax1.axhline(sgn * config.verdict.tolerance_log, color="0.6", ls="--", lw=0.8)
        ax1.set_xscale("log")
        ax1.set_xlabel("d")
        ax1.set_ylabel(r"$\log(\Delta_{measured} / \Delta_C)$")
        ax1.set_title("finite-d deviation (dashed: tolerance)")
        ax1.legend(fontsize=6, frameon=False)
        dd = np.array([c["d"] for c in cases], float)
        f = np.array([c["f_lib"][0] for c in cases])
        fse = np.array([c["f_lib"][1] for c in cases])
        ax2.errorbar(dd, f, yerr=fse, fmt="o", ms=3, capsize=2, label="excess_entropy_empirical")
        dg = np.geomspace(dd.min() * 0.8, dd.max() * 1.25, 50)
        ax2.plot(
            dg,
            config.verdict.tolerance_f / np.sqrt(dg),
            color="0.4",
            ls="--",
            lw=0.8,
            label=f"tolerance {config.verdict.tolerance_f:g}/sqrt(d)",
        )
        ax2.axhline(0.0, color="0.3", lw=0.8)
        ax2.set_xscale("log")
        ax2.set_xlabel("d")
        ax2.set_ylabel(r"$f^e(\Delta_C)$")
        ax2.set_title(r"$f^e$ at the predicted collapse")
        ax2.legend(fontsize=6, frameon=False)
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        for ax in (ax1, ax2):
            ax.set_xticks(dims)
            ax.xaxis.set_major_formatter(ScalarFormatter())
        ax0.set_xticks([0.2, 0.5, 1.0, 2.0])
        ax0.xaxis.set_major_formatter(ScalarFormatter())
        for ax in (ax0, ax1, ax2):
            ax.xaxis.set_minor_formatter(NullFormatter())
        fig.suptitle(f"REM collapse of the exact empirical score ({config.preset})", fontsize=9)
        save_figure(fig, path)


# ---------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------
def _condition(c: dict, log_meas: float) -> str:
    t_th, k_th = _ou_and_step(c["delta_C"])
    if math.isfinite(log_meas):
        t_m, k_m = _ou_and_step(math.exp(log_meas))
        meas = f"{t_m:.3f} / {k_m}"
    else:
        meas = "none"
    return (
        f"d={c['d']}, n={c['n']} (alpha_n={c['alpha_n']:.3f}); t_C OU / DDPM step: "
        f"theory {t_th:.3f} / {k_th}, measured {meas}"
    )


@experiment_run
def run(config: Config, ctx: RunContext) -> Result:
    """Measure every case (no training; ``device`` and ``engine`` are not used)."""
    out_dir, seed = ctx.out_dir, ctx.seed
    rule_log = Rule(k=config.verdict.k, tolerance=config.verdict.tolerance_log)
    rows, cases = [], []
    for i, (d, n) in enumerate(config.cases):
        c = _case(d, n, i, config, seed)
        cases.append(c)
        pred = math.log(c["delta_C"]) + config.verdict.prediction_shift
        common = {"alpha_n": c["alpha_n"], "delta_C": c["delta_C"]}
        for key, what in (
            ("fe", "from f^e (d f^e = log 2)"),
            ("pr", f"from trajectories (mean PR < {config.pr_level:g})"),
            ("frozen", f"from trajectories (frozen index >= {config.frozen_level:g})"),
        ):
            if key not in c:
                continue
            v, se = c[key][0], c[key][1]
            rows.append(
                judge(
                    f"collapse log(delta) {what}",
                    pred,
                    v,
                    se,
                    rule_log,
                    condition=_condition(c, v),
                    log_ratio=v - math.log(c["delta_C"]),
                    **common,
                )
            )
        f, fse = c["f_lib"]
        rows.append(
            judge(
                "f^e at delta_C (excess_entropy_empirical; large-d limit 0)",
                0.0 + config.verdict.prediction_shift,
                f,
                fse,
                Rule(k=config.verdict.k, tolerance=config.verdict.tolerance_f / math.sqrt(d)),
                condition=f"d={d}, n={n} (alpha_n={c['alpha_n']:.3f})",
                sqrt_d_times_f=f * math.sqrt(d),
                **common,
            )
        )
    fig = "collapse_exact.png"
    _plot(cases, config, out_dir / fig)
    return ctx.result(rows, [fig])
