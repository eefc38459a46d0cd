"""Score fidelity: an MLP trained on a two-Gaussian mixture recovers its exact score.

The data are ``p0 = 1/2 N(+mu, s^2 I) + 1/2 N(-mu, s^2 I)`` in R^d with
``mu = m (1, ..., 1) / sqrt(d)`` (``|mu| = m``), whose score is exact at every noise level
(docs/theory.md section 1; :class:`physdiff.ensembles.GaussianMixture`). A
:class:`physdiff.nn.ScoreMLP` behind an EDM-preconditioned :class:`physdiff.nn.Denoiser`
(Karras et al. 2022, Table 1) is trained by denoising score matching on fresh samples of
``p0`` every batch, so the optimum of its loss is the exact denoiser (Vincent 2011): with
enough capacity and training it reproduces the exact score. Measured, for each ``delta`` of
a grid, at ``y`` drawn from the noised marginal ``p_delta = p0 * N(0, delta I)``:

    R(delta) = E |s_net(y) - s(y)|^2 / E |s(y)|^2      (relative score error)

as a ratio of Monte Carlo means with a delta-method standard error
(:func:`validation.stats.ratio_of_means`). Prediction: ``R = 0``. Verdict per dimension at
the mid-range ``delta_verdict = 1`` (the data scale, where the posterior over the two
components is neither saturated nor flat, so the mixture's structure matters) with the
rule ``|R - 0| <= k * s.e. + tolerance``; the tolerance is the accuracy claimed for a
network of the preset's size and training budget. The whole curve ``R(delta)`` is in the
figure and in each row's ``extra["curve"]`` (the error is largest at small delta, where the
network must resolve a score of size ``1/sqrt(delta)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physdiff.errors import InputError

from ..config import ExperimentConfig, NetConfig, TrainingConfig, VerdictConfig
from ..models import symmetric_pair
from ..result import Result, judge, saved_figure
from ..stats import ratio_of_means
from ..training import NetSpec
from . import RunContext, experiment_run

__all__ = ["Config", "PRESETS", "run", "check", "relative_error"]

NAME = "score_fidelity"


NET = NetConfig()
TRAINING = TrainingConfig(steps=3000, batch_size=512)


@dataclass(frozen=True)
class Verdict(VerdictConfig):
    """The rules' settings (:class:`validation.config.VerdictConfig`) and the tolerances."""

    REASONS = {  # why each fixed slack is there (docs/validation.md)
        "tolerance": (
            "the claimed accuracy of a trained network's relative score error at delta = 1 (R = 0 "
            "is the optimum; a claim about finite training)"
        ),
    }

    tolerance: float = 0.02  # the claimed accuracy of R at delta_verdict


@dataclass(frozen=True)
class Config(ExperimentConfig):
    dims: tuple[int, ...] = (2, 16, 64)
    separation: float = 2.0  # m = |mu|: the component means are +-mu
    component_variance: float = 0.5  # s^2
    deltas: tuple[float, ...] = tuple(float(x) for x in np.logspace(-2, 2, 9))
    delta_verdict: float = 1.0
    n_eval: int = 4000  # Monte Carlo points per delta
    net: NetConfig = NET
    training: TrainingConfig = TRAINING
    verdict: Verdict = Verdict()


PRESETS: dict[str, Config] = Config.presets(
    smoke=dict(
        dims=(2,),
        deltas=(0.1, 1.0, 10.0),
        n_eval=500,
        net=NET.replace(hidden=32, depth=2, embed_dim=16),
        training=TRAINING.replace(steps=150, batch_size=128, ema_decay=0.9, workers=1),
        verdict=Verdict(tolerance=0.5),
    ),
    cpu=dict(),
    gpu=dict(
        dims=(2, 16, 64, 256),
        n_eval=20000,
        net=NET.replace(hidden=512, depth=4),
        training=TRAINING.replace(steps=12000, batch_size=2048, workers=4),
        verdict=Verdict(tolerance=0.02),
    ),
)


def check(config: Config) -> None:
    """Reject a dimension below one, a non-positive component variance or noise level
    (the score is infinite or undefined there) and fewer than two Monte Carlo points."""
    if not config.dims or any(int(d) < 1 for d in config.dims):
        raise InputError(f"dims must be a non-empty tuple of integers >= 1; got {config.dims}")
    if not config.component_variance > 0:
        raise InputError(f"component_variance must be > 0; got {config.component_variance}")
    if not np.isfinite(config.separation):
        raise InputError(f"separation must be finite; got {config.separation}")
    if any(not delta > 0 for delta in (*config.deltas, config.delta_verdict)):
        raise InputError("every noise level (deltas, delta_verdict) must be > 0")
    if config.n_eval < 2:
        raise InputError(f"n_eval must be >= 2 (a standard error needs two); got {config.n_eval}")


def relative_error(
    model, exact, delta: float, n: int, rng: np.random.Generator
) -> tuple[float, float]:
    """``(R, se)``: ``E|s_model - s_exact|^2 / E|s_exact|^2`` at ``y ~ p_delta`` of ``exact``."""
    _, y = exact.sample_noised(n, delta, rng)
    s = exact.score(y, delta)
    s_net = np.asarray(model.score(y, delta), dtype=np.float64)
    return ratio_of_means(np.sum((s_net - s) ** 2, axis=1), np.sum(s**2, axis=1))


def _plot(curves: dict[int, np.ndarray], config: Config, path: Path) -> None:
    with saved_figure(path, (4.6, 3.3)) as fig:
        ax = fig.add_subplot()
        deltas = np.asarray(config.deltas)
        for d, rows in curves.items():
            r, se = rows[:, 0], rows[:, 1]
            ax.errorbar(
                deltas, np.maximum(r, 1e-6), yerr=se, marker="o", ms=3, capsize=2, label=f"d = {d}"
            )
        ax.axhline(
            config.verdict.tolerance,
            color="0.4",
            ls="--",
            lw=1,
            label=f"tolerance {config.verdict.tolerance:g}",
        )
        ax.axvline(config.delta_verdict, color="0.7", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"noise-to-signal variance $\Delta$")
        ax.set_ylabel(r"$E|s_\theta - s|^2 / E|s|^2$")
        ax.set_title(f"Score fidelity, two-Gaussian mixture ({config.preset})")
        ax.legend(frameon=False)


@experiment_run
def run(config: Config, ctx: RunContext) -> Result:
    """Train one network per dimension (a sweep), measure ``R(delta)``, judge, plot."""
    out_dir, seed = ctx.out_dir, ctx.seed
    serial = ctx.in_process(len(config.dims))
    ens = {d: symmetric_pair(config.separation, config.component_variance, d) for d in config.dims}
    jobs = [
        ctx.job(f"d{d}", NetSpec.of(config, d), ens[d], seed=seed * 1000 + i, progress=serial)
        for i, d in enumerate(config.dims)
    ]
    summaries = ctx.train(jobs)

    rule = config.verdict.rule("tolerance")
    curves: dict[int, np.ndarray] = {}
    rows = []
    for i, (d, job) in enumerate(zip(config.dims, jobs, strict=True)):
        net = ctx.network(job)
        rng = np.random.default_rng([seed, 1, i])
        curves[d] = np.array(
            [relative_error(net, ens[d], delta, config.n_eval, rng) for delta in config.deltas]
        )
        r, se = relative_error(net, ens[d], config.delta_verdict, config.n_eval, rng)
        s = summaries[i]
        rows.append(
            judge(
                "relative score error E|s_net - s|^2 / E|s|^2",
                0.0 + config.verdict.prediction_shift,
                r,
                se,
                rule,
                condition=f"d={d}, delta={config.delta_verdict:g}",
                curve={
                    "delta": list(config.deltas),
                    "R": curves[d][:, 0].tolist(),
                    "se": curves[d][:, 1].tolist(),
                },
                training=s.brief(rate=True),
            )
        )
    fig = "score_fidelity.png"
    _plot(curves, config, out_dir / fig)
    return ctx.result(rows, [fig])
