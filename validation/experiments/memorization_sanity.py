"""Memorisation sanity: on a handful of points a network's samples sit on them; on many, not.

The denoising score-matching optimum for a finite training set ``{a_mu}`` is the
empirical score (docs/theory.md section 1; Biroli et al. 2024, Eq. 3), whose reverse dynamics
end on the training points: it only memorises (:class:`physdiff.ensembles.Empirical`). A
network trained on a handful of points reaches it; trained on many points from a
continuous distribution, a small network cannot resolve the empirical score's fine
structure and generalises (Biroli et al. 2024, section 4; Kadkhodaie et al. 2024).

Measured quantity: the fraction of generated samples whose nearest training point lies
within ``r = radius * h``, with ``h`` the median nearest-neighbour distance of the training
set (docs/theory.md section 5: thresholds scale with the spacing, never absolute). Every
sampler run is the same deterministic Heun probability-flow ODE on the EDM schedule
(Karras et al. 2022, Algorithm 1; :func:`physdiff.sampling.heun`) ending with the
denoiser at ``sigma_min``.

* Handful (n = 4..8): prediction = the fraction of the exact ``Empirical`` score's samples
  (about 1), measured = the network's fraction.
* Many (n >= 2000 from a Gaussian, or the training split of ``--data``): prediction = the
  fraction of *fresh* data points (new draws, or the held-out split) within ``r`` of the
  training set, which is what a generalising model gives; the exact ``Empirical`` score's
  fraction (about 1) is reported alongside.

Fractions carry Agresti-Coull standard errors; prediction and measurement errors add in
quadrature. Verdict: ``|measured - predicted| <= k * s.e. + tolerance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physdiff.association import nearest_neighbour_spacing
from physdiff.ensembles import Empirical, Gaussian
from physdiff.errors import InputError

from ..config import ExperimentConfig, NetConfig, TrainingConfig, VerdictConfig
from ..result import Result, judge, saved_figure
from ..samples import fraction_on_points, heun_samples
from ..stats import binomial_fraction, difference
from ..training import NetSpec
from . import RunContext, experiment_run

__all__ = ["Config", "PRESETS", "run", "check"]

NAME = "memorization_sanity"


NET = NetConfig()
TRAINING = TrainingConfig()


@dataclass(frozen=True)
class Verdict(VerdictConfig):
    """The rules' settings (:class:`validation.config.VerdictConfig`) and the tolerances."""

    REASONS = {  # why each fixed slack is there (docs/validation.md)
        "tolerance": (
            "stated accuracy of a trained network's memorised fraction against its optimum (a "
            "claim about finite training)"
        ),
    }

    tolerance: float = 0.1


@dataclass(frozen=True)
class Config(ExperimentConfig):
    handful: tuple[tuple[int, int], ...] = ((4, 2), (8, 2), (8, 8))  # (n, d) pairs
    many_n: int = 2048
    many_d: int = 2
    data: str | None = None  # .npz (physdiff.data.load_npz) replacing the "many" set
    data_held_out: float = 0.2  # held-out fraction of --data: the fresh points
    radius: float = 0.25  # r = radius * median nearest-neighbour distance
    n_samples: int = 2000
    sampler_steps: int = 40
    net: NetConfig = NET
    training: TrainingConfig = TRAINING
    verdict: Verdict = Verdict()


PRESETS: dict[str, Config] = Config.presets(
    smoke=dict(
        handful=((3, 2),),
        many_n=256,
        n_samples=100,
        sampler_steps=16,
        net=NET.replace(hidden=64, depth=2, embed_dim=16),
        training=TRAINING.replace(steps=300, batch_size=64, ema_decay=0.9, workers=1),
        verdict=Verdict(tolerance=0.2),
    ),
    cpu=dict(verdict=Verdict(tolerance=0.05)),
    gpu=dict(
        handful=((4, 2), (8, 2), (8, 8), (8, 32)),
        many_n=8192,
        n_samples=2000,
        sampler_steps=64,
        net=NET.replace(hidden=256, depth=4),
        training=TRAINING.replace(steps=10000, batch_size=1024, workers=5),
        verdict=Verdict(tolerance=0.05),
    ),
)


def check(config: Config) -> None:
    """Load ``config.data`` (if any) so a missing or bad file fails before anything runs."""
    if config.data is not None:
        _load_data(config)
    if any(n < 2 or d < 1 for n, d in config.handful) or config.many_n < 2:
        raise InputError("every training set needs n >= 2 points and d >= 1")


def _load_data(config: Config):
    from physdiff.data import load_npz

    ds = load_npz(config.data, held_out=config.data_held_out, seed=0)
    if ds.held_out.shape[0] < 1 or ds.train.shape[0] < 2:
        raise InputError(
            f"data set {config.data!r} needs >= 2 training and >= 1 held-out "
            f"images (held_out={config.data_held_out:g})"
        )
    return ds


def _plot(
    panels: list[dict], handful_pts: tuple, many_pts: tuple, config: Config, path: Path
) -> None:
    from physdiff.plot import OKABE_ITO

    with saved_figure(path, (9.6, 3.2)) as fig:
        ax0, ax1, ax2 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.6, 1, 1]})
        x = np.arange(len(panels))
        kinds = (
            ("network", "network", OKABE_ITO["blue"]),
            ("empirical", "exact Empirical", OKABE_ITO["vermillion"]),
            ("fresh", "fresh data", OKABE_ITO["green"]),
        )
        for j, (key, label, color) in enumerate(kinds):
            vals = [(p[key][0], p[key][1]) if key in p else (np.nan, 0.0) for p in panels]
            v = np.array(vals)
            ax0.bar(
                x + (j - 1) * 0.27,
                v[:, 0],
                width=0.27,
                yerr=v[:, 1],
                capsize=2,
                color=color,
                label=label,
            )
        ax0.set_xticks(x, [p["label"] for p in panels], fontsize=7)
        ax0.set_ylim(0, 1.05)
        ax0.set_ylabel(f"fraction within {config.radius:g} x NN spacing")
        ax0.legend(frameon=False, fontsize=7, loc="center right")
        for ax, (title, train, samp) in ((ax1, handful_pts), (ax2, many_pts)):
            if train is None:
                ax.set_axis_off()
                continue
            ax.scatter(
                train[:, 0],
                train[:, 1],
                s=4 if len(train) > 50 else 40,
                c="0.6" if len(train) > 50 else OKABE_ITO["vermillion"],
                marker="o" if len(train) > 50 else "x",
                label="training points",
            )
            ax.scatter(
                samp[:, 0], samp[:, 1], s=3, c=OKABE_ITO["blue"], alpha=0.6, label="network samples"
            )
            ax.set_title(title)
            ax.set_aspect("equal", adjustable="datalim")
        ax1.legend(frameon=False, fontsize=7)
        fig.suptitle(f"Memorisation sanity ({config.preset})", fontsize=9)


@experiment_run
def run(config: Config, ctx: RunContext) -> Result:
    """Train on each handful set and on the large set (a sweep), sample, count, judge, plot."""
    out_dir, seed = ctx.out_dir, ctx.seed
    # training sets: handful ones from N(0, I_d), the large one from N(0, I) or --data
    sets: list[dict] = []
    for i, (n, d) in enumerate(config.handful):
        pts = np.random.default_rng([seed, 10, i]).standard_normal((n, d))
        sets.append({"kind": "handful", "label": f"n={n}, d={d}", "train": pts})
    if config.data is not None:
        ds = _load_data(config)
        sets.append(
            {
                "kind": "many",
                "label": f"{Path(config.data).name} n={ds.train.shape[0]}",
                "train": np.asarray(ds.train),
                "fresh": np.asarray(ds.held_out),
            }
        )
    else:
        g = Gaussian.isotropic(np.zeros(config.many_d), 1.0)
        rng = np.random.default_rng([seed, 11])
        sets.append(
            {
                "kind": "many",
                "label": f"n={config.many_n}, d={config.many_d}",
                "train": g.sample(config.many_n, rng),
                "fresh": g.sample(config.n_samples, rng),
            }
        )

    serial = ctx.in_process(len(sets))
    jobs = [
        ctx.job(
            f"{s['kind']}{i}",
            NetSpec.of(config, s["train"].shape[1]),
            s["train"],
            seed=seed * 1000 + i,
            progress=serial,
        )
        for i, s in enumerate(sets)
    ]
    summaries = ctx.train(jobs)

    rule = config.verdict.rule("tolerance")
    rows, panels = [], []
    handful_pts = many_pts = (None, None, None)
    for i, (s, job) in enumerate(zip(sets, jobs, strict=True)):
        emp = Empirical(s["train"].copy())  # Empirical marks its array read-only
        r = config.radius * nearest_neighbour_spacing(s["train"])
        net = ctx.network(job)
        x_net = heun_samples(
            net, config.n_samples, config.sampler_steps, np.random.default_rng([seed, 20, i])
        )
        x_emp = heun_samples(
            emp, config.n_samples, config.sampler_steps, np.random.default_rng([seed, 20, i])
        )
        f_net = binomial_fraction(*fraction_on_points(x_net, emp, r))
        f_emp = binomial_fraction(*fraction_on_points(x_emp, emp, r))
        panel = {"label": s["label"], "network": f_net, "empirical": f_emp}
        summ = summaries[i]
        common = {
            "radius": r,
            "network_fraction": f_net[0],
            "empirical_fraction": f_emp[0],
            "training": summ.brief(),
        }
        if s["kind"] == "handful":  # judged against the exact score's samples
            against, ref, fresh = "exact Empirical score", f_emp, {}
            if s["train"].shape[1] == 2 and handful_pts[0] is None:
                handful_pts = (f"handful: {s['label']}", s["train"], x_net)
        else:  # the large set: against fresh data from the same distribution
            ref = binomial_fraction(*fraction_on_points(s["fresh"], emp, r))
            against, fresh = "fresh data", {"fresh_fraction": ref[0]}
            panel["fresh"] = ref
            if s["train"].shape[1] == 2:
                many_pts = (f"many: {s['label']}", s["train"], x_net)
        rows.append(
            judge(
                f"fraction of samples on a training point (vs {against})",
                ref[0] + config.verdict.prediction_shift,
                f_net[0],
                difference(f_net[1], ref[1]),
                rule,
                condition=s["label"],
                **fresh,
                **common,
            )
        )
        panels.append(panel)
    fig = "memorization_sanity.png"
    _plot(panels, handful_pts, many_pts, config, out_dir / fig)
    return ctx.result(rows, [fig])
