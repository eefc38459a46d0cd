"""Gaussian late initialisation on 8x8 digits: the best start step of few-step samplers.

Raya & Ambrogioni (2023) start the reverse process at an intermediate time from the
Gaussian with the exact noised data statistics, ``N(alpha mu0, alpha^2 C0 + sigma^2 I)``
(DDPM: ``alpha^2 = abar``), instead of ``N(0, I)`` at ``T``, and choose the start before the
symmetry breaks (docs/theory.md section 2). :func:`physdiff.symmetry.late_start_delta` makes
that choice from the data alone: ``margin * delta_c``, ``delta_c`` the critical noise level
of criterion (a) for the top eigenvalue of the data covariance (by default ``margin = 2``).

Setup: scikit-learn's 8x8 digits (:func:`physdiff.data.load_digits`: 1438 training and 359
held-out images, globally standardised), one :class:`physdiff.nn.ScoreMLP` denoiser
trained on the training images with DDPM's noise levels (a :mod:`validation.training` job,
reused by reruns). Sampling on the DDPM process (linear beta, 1000 steps) with ``n_steps``
steps from a start step ``k0`` to step 0 (the strided grid
``DDPM.time_grid(n_steps, k0, 0)``) plus the final denoise, i.e. the same ``n_steps + 1``
network evaluations at every ``k0``, with deterministic DDIM and with DDPM ancestral
sampling (:mod:`physdiff.sampling`), each from

* the vanilla start ``N(0, sigma(k0)^2 I)`` (the prior, truncated at ``k0``), and
* the Gaussian late start :func:`physdiff.symmetry.late_start` with the training set's
  mean and covariance at ``k0``.

Quality: the sliced Wasserstein-2 distance between ``n_gen`` samples and the held-out
images (``n_proj`` random directions, the 1-D distances from quantile functions at 512
levels), in standardised pixel units, repeated ``reps`` times with fresh samples and fresh
directions; every condition of a repetition shares its directions, so differences between
conditions are paired. Two references: the training images against the held-out ones (the
floor of a perfect model at this sample size) and DDPM ancestral sampling with
``ref_steps`` steps from ``T``.

Verdict, per sampler, with the Gaussian start: the theory's start step
(``late_start_delta(train, "log-density", margin=margin)`` as a DDPM step, always part of the
sweep) is among the best, i.e. ``SW(theory step) - SW(best step) <= k * s.e.`` with ``k = 2``
and the standard error of the paired difference over the repetitions. Rule:
``|measured - predicted| <= k * s.e. + tolerance``, predicted the best step's mean,
measured the theory step's mean. The steps of criterion (a) with ``margin = 1``, of
criterion (b) and of speciation (margins 1 and 2) are in the sweep too and reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physdiff.errors import InputError
from physdiff.processes import DDPM
from physdiff.symmetry import late_start, late_start_delta

from ..config import ExperimentConfig, NetConfig, TrainingConfig, VerdictConfig
from ..result import Result, judge, saved_figure
from ..training import NetSpec
from . import RunContext, experiment_run

__all__ = ["Config", "PRESETS", "run", "check", "sliced_wasserstein", "theory_steps"]

NAME = "late_init"
SAMPLERS = ("ddim", "ddpm")


NET = NetConfig(hidden=192)
TRAINING = TrainingConfig(steps=5000, lr=1e-3, train_process="ddpm", workers=1)


@dataclass(frozen=True)
class Verdict(VerdictConfig):
    """The rules' settings (:class:`validation.config.VerdictConfig`) and the tolerances."""

    REASONS = {  # why each fixed slack is there (docs/validation.md)
        "tolerance": (
            "smoke only: a loose SW slack for tiny networks that exercise the code path; "
            "the cpu and gpu rules have none"
        ),
    }

    k: float = 2.0
    tolerance: float = 0.0  # in SW units (standardised pixels)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    start_steps: tuple[int, ...] = (
        999,
        800,
        700,
        600,
        550,
        500,
        450,
        400,
        350,
        300,
        250,
        200,
        100,
    )  # the theory's steps are added to these
    n_steps: int = 10  # sampler steps from k0 to 0 (then one final denoise)
    n_gen: int = 800
    reps: int = 5
    n_proj: int = 256
    ref_steps: int = 200  # DDPM ancestral reference from T (0: none)
    criterion: str = "log-density"
    margin: float = 2.0
    net: NetConfig = NET
    training: TrainingConfig = TRAINING
    verdict: Verdict = Verdict()
    blas_threads: int = 1


PRESETS: dict[str, Config] = Config.presets(
    smoke=dict(
        start_steps=(999, 200),
        n_steps=5,
        n_gen=120,
        reps=2,
        n_proj=32,
        ref_steps=0,
        net=NET.replace(hidden=32, depth=2, embed_dim=16),
        training=TRAINING.replace(steps=200, batch_size=128, ema_decay=0.9),
        verdict=Verdict(tolerance=1.0),
    ),
    cpu=dict(),
    gpu=dict(
        start_steps=(999, *range(950, 49, -50)),
        n_gen=2000,
        reps=10,
        n_proj=512,
        ref_steps=1000,
        net=NET.replace(hidden=512, depth=4),
        training=TRAINING.replace(steps=20000, batch_size=512),
    ),
)


def check(config: Config) -> None:
    """The digits need scikit-learn; every start step must be a DDPM step >= n_steps."""
    if config.criterion not in ("log-density", "sde-drift", "speciation"):
        raise InputError(
            f"criterion must be log-density, sde-drift or speciation; got {config.criterion!r}"
        )
    try:
        import sklearn  # noqa: F401
    except ImportError as err:
        raise InputError(f"late_init needs scikit-learn for the digits: {err}") from err
    ddpm = DDPM()
    bad = [k for k in config.start_steps if not config.n_steps <= k <= ddpm.n_steps - 1]
    if bad:
        raise InputError(
            f"start_steps must lie in [{config.n_steps}, {ddpm.n_steps - 1}]; got {bad}"
        )


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """Sliced Wasserstein-2 distance ``sqrt(mean_u W2(a.u, b.u)^2)`` over the unit columns of
    ``directions`` ``(d, n_proj)``; each 1-D ``W2^2 = int_0^1 (F_a^-1 - F_b^-1)^2`` by the
    midpoint rule on 512 quantile levels (samples of different sizes are fine)."""
    u = (np.arange(512) + 0.5) / 512
    qa = np.quantile(a @ directions, u, axis=0)
    qb = np.quantile(b @ directions, u, axis=0)
    return float(np.sqrt(np.mean((qa - qb) ** 2)))


def theory_steps(train: np.ndarray, ddpm: DDPM) -> dict[str, int]:
    """The DDPM start steps of :func:`physdiff.symmetry.late_start_delta` per criterion
    (``a``, ``b`` for the DDPM process, ``S``) and margin (1 and 2), ``nearest`` rounding."""
    out = {}
    for key, crit in (("a", "log-density"), ("b", "sde-drift"), ("S", "speciation")):
        for margin in (1.0, 2.0):
            dl = late_start_delta(train, crit, ddpm if crit == "sde-drift" else None, margin=margin)
            dl = min(max(dl, ddpm.delta_min), ddpm.delta_max)
            out[f"{key}x{margin:g}"] = int(ddpm.step_of_delta(dl))
    return out


def _plot(table, steps, refs, th, main_key, images, config: Config, path: Path) -> None:
    from matplotlib import colormaps

    from physdiff.plot import OKABE_ITO

    colors = {"a": OKABE_ITO["vermillion"], "b": OKABE_ITO["blue"], "S": OKABE_ITO["green"]}
    lo = 0.9 * min(refs["floor"][0], min(v[0] for v in table.values()))
    with saved_figure(path, (12.0, 3.6)) as fig:
        axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1]})
        for ax, meth in zip(axes[:2], SAMPLERS, strict=True):
            for start, mk, fill in (("gauss", "o", True), ("vanilla", "s", False)):
                v = np.array([table[(meth, start, k)] for k in steps])  # (n_k, 2)
                ax.errorbar(
                    steps,
                    v[:, 0],
                    yerr=v[:, 1],
                    fmt=mk + "-",
                    ms=3.5,
                    lw=1,
                    capsize=1.5,
                    mfc=None if fill else "white",
                    color=OKABE_ITO["black"] if fill else "0.5",
                    label="Gaussian late start" if fill else r"vanilla $N(0, \sigma^2 I)$",
                )
            ax.axhline(
                refs["floor"][0],
                color=OKABE_ITO["purple"],
                lw=1,
                ls="--",
                label="training vs held-out images",
            )
            if "ref" in refs:
                ax.axhline(
                    refs["ref"][0],
                    color=OKABE_ITO["orange"],
                    lw=1,
                    ls="-.",
                    label=f"DDPM ancestral, {config.ref_steps} steps from T",
                )
            for key, k in th.items():
                ax.axvline(
                    k,
                    color=colors[key[0]],
                    ls="-" if key == main_key else ":",
                    lw=1.3 if key == main_key else 0.9,
                )
            ax.set_yscale("log")
            ax.set_ylim(lo, 0.35)
            ax.set_xlabel("start step $k_0$ (DDPM, of 1000)")
            ax.set_title(f"{meth.upper()}, {config.n_steps} steps + final denoise", fontsize=9)
            ax.set_xlim(1010, 0)
        axes[0].set_ylabel("sliced W2 to held-out digits")
        axes[0].legend(frameon=False, fontsize=6.5, loc="upper left")
        ax = axes[2]
        # one row of 8 images per label, one blank pixel between images
        pad = np.full((len(images) * 9 - 1, 8 * 9 - 1), np.nan)
        for i, (_, imgs) in enumerate(images):
            for j, img in enumerate(imgs[:8]):
                pad[9 * i : 9 * i + 8, 9 * j : 9 * j + 8] = img
        cmap = colormaps["gray_r"].with_extremes(bad="white")
        ax.imshow(pad, cmap=cmap, interpolation="nearest", aspect="equal", vmin=-1.0, vmax=2.5)
        ax.set_xticks([])
        ax.set_yticks([9 * i + 3.5 for i in range(len(images))], [lbl for lbl, _ in images])
        ax.tick_params(axis="y", labelsize=6.5, length=0)
        ax.set_title("samples", fontsize=9)
        fig.suptitle(
            "Late initialisation on 8x8 digits; vertical lines: theory start steps "
            "(red (a), blue (b), green speciation; solid = the prediction judged) "
            f"({config.preset})",
            fontsize=8.5,
        )


@experiment_run
def run(config: Config, ctx: RunContext) -> Result:
    """Train one denoiser on the digits, sweep the start step, judge, plot."""
    out_dir, seed = ctx.out_dir, ctx.seed
    from physdiff import sampling
    from physdiff.data import load_digits

    ds = load_digits()
    train_x, held = np.asarray(ds.train), np.asarray(ds.held_out)
    d = train_x.shape[1]
    job = ctx.job(
        "digits", NetSpec.of(config, d), train_x, seed=seed * 1000, progress=ctx.in_process(1)
    )
    (summary,) = ctx.train([job])

    net = ctx.network(job)
    ddpm = DDPM()
    th = theory_steps(train_x, ddpm)
    short = {"log-density": "a", "sde-drift": "b", "speciation": "S"}[config.criterion]
    main_key = f"{short}x{config.margin:g}"
    main_delta = late_start_delta(
        train_x, config.criterion, ddpm if short == "b" else None, margin=config.margin
    )
    k_theory = int(ddpm.step_of_delta(min(main_delta, ddpm.delta_max)))
    steps = sorted({int(k) for k in config.start_steps} | set(th.values()) | {k_theory})[::-1]
    steps = [k for k in steps if config.n_steps <= k <= ddpm.n_steps - 1]

    # every repetition: fresh directions, one draw per condition, paired across conditions
    sw: dict[tuple, list[float]] = {}
    floor, ref = [], []
    keep: dict[str, np.ndarray] = {}
    for r in range(config.reps):
        rng_dir = np.random.default_rng([seed, 60, r])
        dirs = rng_dir.standard_normal((d, config.n_proj))
        dirs /= np.linalg.norm(dirs, axis=0)
        pick = rng_dir.choice(train_x.shape[0], min(config.n_gen, train_x.shape[0]), replace=False)
        floor.append(sliced_wasserstein(train_x[pick], held, dirs))
        if config.ref_steps > 0:
            out = sampling.sample(
                net,
                config.n_gen,
                np.random.default_rng([seed, 61, r]),
                method="ddpm",
                process=ddpm,
                times=ddpm.time_grid(config.ref_steps),
                final_denoise=True,
            )
            ref.append(sliced_wasserstein(out.samples, held, dirs))
        for meth in SAMPLERS:
            for k0 in steps:
                grid = ddpm.time_grid(config.n_steps, float(k0), 0.0)
                for start in ("gauss", "vanilla"):
                    x_start = late_start(train_x, ddpm, float(k0)) if start == "gauss" else None
                    out = sampling.sample(
                        net,
                        config.n_gen,
                        np.random.default_rng([seed, 62, r, k0]),
                        method=meth,
                        process=ddpm,
                        times=grid,
                        x_start=x_start,
                        final_denoise=True,
                    )
                    sw.setdefault((meth, start, k0), []).append(
                        sliced_wasserstein(out.samples, held, dirs)
                    )
                    if r == 0 and (k0, start) in ((k_theory, "gauss"), (999, "vanilla")):
                        keep[f"{meth} {start} {k0}"] = out.samples[:8]

    def mean_se(v):
        v = np.asarray(v, dtype=float)
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0

    table = {key: mean_se(v) for key, v in sw.items()}
    refs = {"floor": mean_se(floor)}
    if ref:
        refs["ref"] = mean_se(ref)
    rule = config.verdict.rule("tolerance")
    rows = []
    for meth in SAMPLERS:
        means = {k0: table[(meth, "gauss", k0)][0] for k0 in steps}
        best = min(means, key=means.get)
        diff = np.asarray(sw[(meth, "gauss", k_theory)]) - np.asarray(sw[(meth, "gauss", best)])
        se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else 0.0
        near = []
        for k0 in steps:
            dk = np.asarray(sw[(meth, "gauss", k0)]) - np.asarray(sw[(meth, "gauss", best)])
            sek = float(dk.std(ddof=1) / math.sqrt(dk.size)) if dk.size > 1 else 0.0
            if dk.mean() <= config.verdict.k * sek + config.verdict.tolerance:
                near.append(k0)
        curve = {
            "steps": steps,
            "gauss": [table[(meth, "gauss", k)] for k in steps],
            "vanilla": [table[(meth, "vanilla", k)] for k in steps],
        }
        rows.append(
            judge(
                f"sliced W2 to held-out digits at the theory's start step vs the best start "
                f"step ({meth.upper()}, Gaussian late start)",
                means[best] + config.verdict.prediction_shift,
                means[k_theory],
                se,
                rule,
                condition=f"{config.n_steps} steps, theory k0={k_theory}, best k0={best}",
                theory_step=k_theory,
                theory_delta=main_delta,
                best_step=best,
                steps_within_k_se_of_best=near,
                theory_steps_all=th,
                vanilla_at_999=table[(meth, "vanilla", 999)] if 999 in steps else None,
                vanilla_best=min(curve["vanilla"], key=lambda v: v[0]),
                references=refs,
                curve=curve,
                training=summary.brief(),
            )
        )
    images = [("held-out", held[:8].reshape(-1, 8, 8))]
    for meth in SAMPLERS:
        for key in (f"{meth} vanilla 999", f"{meth} gauss {k_theory}"):
            if key in keep:
                images.append((key, keep[key].reshape(-1, 8, 8)))
    fig = "late_init.png"
    _plot(table, steps, refs, th, main_key, images, config, out_dir / fig)
    return ctx.result(rows, [fig])
