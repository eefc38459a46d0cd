"""Class decisions of trained conditional networks: per-class entropy rates and critical points.

Class-conditional score networks (:class:`physdiff.nn.ScoreMLP` with ``n_classes``, EDM
preconditioning, a null label for the unconditional model) are trained on

* a four-class Gaussian mixture in R^d (d = 8): classes at ``(-A, -+B-)`` and
  ``(+A, -+B+)`` in the first two coordinates with ``A = 5``, ``B- = 1.5``, ``B+ = 3`` and
  variance ``s^2 = 0.25`` (two sides whose members are decided at different noise levels),
  whose class information is exact (:class:`physdiff.ensembles.GaussianMixture`);
* the 8x8 digits (:func:`physdiff.data.load_digits`, 10 classes, standardised), where
  nothing is exact.

Time is the DDPM step ``k`` (linear schedule, 1000 steps; rates per step at half-integer
steps as in ``entropy_rates``). From each network (docs/theory.md section 6;
:mod:`physdiff.information`):

* **online classifier**: the network's unconditional model generates trajectories (DDPM
  ancestral sampling from the prior) while an online Bayes classifier with the network's
  ``K`` conditional denoisers tracks ``p(c | x_k)`` (Gaussian kernels without the
  posterior-covariance term, the network form; every ``stride``-th DDPM step). Per class
  ``k``, two definitions: the one-vs-rest entropy ``H(1[C = k] | x_k)`` (all trajectories)
  and the class-restricted entropy ``E[H(C | x_k) | C = k]`` (trajectories weighted by
  their final posterior ``p(k | x_0)``; exact because ``C - x_0 - x_k`` is a Markov chain).
  Rates are central differences of the mean entropies along the steps.
* **score gap**: ``1/2 E_{y | k} |s(y | k) - s(y)|^2`` with the network's conditional and
  unconditional (null-label) scores at ``y`` drawn from class ``k``'s noised data: the rate
  of the class-restricted surprisal ``E[-log p(k | y) | C = k]`` (de Bruijn's identity for
  ``KL(p(y | k) || p(y))``; the surprisals average, with the class weights, to ``H(C | y)``).

Exact references on the mixture: the one-vs-rest rate by the library's score-gap
estimator, the class-restricted entropy's rate by finite differences of its Monte Carlo
estimate (common random numbers), the surprisal rate by the exact score gap. Verdict rows
(mixture): for every class, definition and significant maximum of the exact rate, over
the window of ``window`` steps around it, where the decision happens (the rate-weighted
mean step) and how much is decided (the integral of the rate, in nats), network against
exact (bootstrap errors of both, added in quadrature), with the tolerances
``tolerance_step`` and ``tolerance_rel`` claimed for a network of this size. (The vertex
of a broad maximum of a noisy rate is poorly determined; these integrals are not.)

**Decisions and critical points.** A binary decision between two groups whose centre of
mass loses stability at ``delta_c`` (criterion (a), :func:`physdiff.symmetry.critical_point`
of the two groups' mixture) is predicted to peak, per unit ``log delta``, at
``delta_c * 0.663``: the two-point-mass (binary channel) value, computed here from the
quadrature of ``GaussianMixture.two_deltas``. Rows: the coarse decision (the whole
mixture's critical point) and the two within-side decisions (each pair's critical point),
for the exact model (score gap with partitions, common random numbers) and for the
network's online classifier, rule ``|log delta_peak - log(0.663 delta_c)| <= k s.e. +
tolerance_log_delta``. Digits: the 10-way rate per ``log delta`` from the network's online
classifier is a broad hump (the ten classes separate over a decade of noise); its
parabola vertex within ``window_log_delta_digits`` is compared with ``log(0.663 delta_c)``,
``delta_c`` from criterion (a) on the top eigenvalue of the between-class covariance of
the class means (:func:`physdiff.symmetry.critical_from_eigenvalue`), with the looser
``tolerance_log_delta_digits``; the speciation point and every maximum are in ``extra``.
The network's score gap on noised digits is reported but not judged: the network's
conditional and unconditional denoisers disagree by ~1e-3 at low noise, which the score
gap divides by ``delta^2``, so it grows toward step 0 instead of vanishing (on a network,
trust the score gap only at moderate and high noise).

``prediction_shift`` moves predicted steps by ``1000 * shift``, multiplies heights by
``1 + shift`` and adds ``shift`` to predicted ``log delta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physdiff import information as I
from physdiff.ensembles import GaussianMixture
from physdiff.errors import InputError
from physdiff.processes import DDPM

from ..config import ExperimentConfig, NetConfig, TrainingConfig, VerdictConfig
from ..curves import bootstrap_peak, significant_maxima
from ..result import Result, Rule, judge, saved_figure
from ..stats import difference
from ..training import NetSpec, TrainSpec
from . import RunContext, experiment_run

__all__ = [
    "Config",
    "PRESETS",
    "run",
    "check",
    "four_classes",
    "TwoPointOffset",
    "network_online",
]

NAME = "class_decisions"


NET = NetConfig()
TRAINING = TrainingConfig(
    steps=4000,
    batch_size=512,
    train_process="ddpm",  # noise levels drawn uniformly over DDPM steps
)


@dataclass(frozen=True)
class Verdict(VerdictConfig):
    """The rules' settings (:class:`validation.config.VerdictConfig`) and the tolerances;
    ``prediction_shift`` moves the predictions: steps + 1000 shift, heights (1 + shift),
    log delta + shift."""

    REASONS = {  # why each fixed slack is there (docs/validation.md)
        "tolerance_step": (
            "stated accuracy of a trained network's decision window in DDPM steps (a claim about "
            "finite training; the cpu run finds 0.3-2.6 steps)"
        ),
        "tolerance_rel": (
            "stated relative accuracy of the entropy a trained network decides in the window (a "
            "claim; the score gap reads about 5% high, docs/validation.md)"
        ),
        "tolerance_log_delta": (
            "model error of the point-mass reduction: 0.663 delta_c is exact for two point masses "
            "(docs/theory.md section 2), the groups here have width and members; stated, not "
            "derived"
        ),
        "tolerance_log_delta_digits": (
            "model error: digits are no two-group mixture, delta_c from the top between-class "
            "eigenvalue is a proxy (stated, not derived)"
        ),
    }

    tolerance_step: float = 20.0
    tolerance_rel: float = 0.15
    tolerance_log_delta: float = 0.25
    tolerance_log_delta_digits: float = 0.5


@dataclass(frozen=True)
class Config(ExperimentConfig):
    # the mixture
    dim: int = 8
    side: float = 5.0  # A: the sides at +-A e1
    members: tuple[float, float] = (1.5, 3.0)  # B-, B+: the members at +-B e2 on each side
    variance: float = 0.25
    # networks
    net: NetConfig = NET
    training: TrainingConfig = TRAINING
    digits: bool = True
    digits_net: str = "mlp"  # "mlp" or "unet"
    digits_hidden: int = 256
    digits_depth: int = 3
    digits_channels: int = 32
    digits_steps: int = 4000
    digits_batch: int = 256
    # evaluation
    n_traj: int = 2400  # mixture: trajectories of the network's online classifier
    n_traj_batches: int = 12  # trajectories are split into this many bootstrap batches
    stride: int = 2  # mixture: DDPM steps per sampler step
    digits_n_traj: int = 400
    digits_stride: int = 5
    online_half_span: int = 4  # rates: differences over 2j + 1 grid intervals
    n_exact: int = 3000  # per batch and level: the exact references
    n_batches: int = 8
    n_gap: int = 1500  # per batch and level: the network's score gap
    n_gap_batches: int = 4
    level_stride: int = 20  # steps between levels of the Monte Carlo curves
    digits_noise_draws: int = 3  # noised copies of each training digit per level
    window: int = 80  # half-width (steps) of the window around a maximum
    window_log_delta: float = 0.9  # half-width in log delta of the critical-point parabolas
    min_peak: float = 0.05  # maxima below this fraction of the largest are not judged
    min_prominence: float = 0.05  # ... or standing less than this fraction above the dips
    n_boot: int = 200
    verdict: Verdict = Verdict()
    critical_decisions: tuple[str, ...] = ("coarse", "0-vs-1", "2-vs-3")
    window_log_delta_digits: float = 1.6  # the 10-way rate is a broad hump in log delta
    blas_threads: int = 1  # numpy BLAS threads in this process (0: leave them)


PRESETS: dict[str, Config] = Config.presets(
    smoke=dict(
        digits=False,
        n_traj=300,
        n_traj_batches=6,
        stride=5,
        online_half_span=2,
        n_exact=500,
        n_batches=4,
        n_gap=300,
        n_gap_batches=2,
        level_stride=40,
        window=160,
        window_log_delta=1.2,
        min_peak=0.3,
        min_prominence=0.3,
        n_boot=60,
        critical_decisions=("coarse",),
        net=NET.replace(hidden=64, depth=2, embed_dim=32),
        training=TRAINING.replace(steps=300, batch_size=256, ema_decay=0.9, workers=1),
        verdict=Verdict(tolerance_step=150.0, tolerance_rel=1.0, tolerance_log_delta=1.5),
    ),
    cpu=dict(),
    gpu=dict(
        digits_net="unet",
        digits_channels=64,
        digits_steps=8000,
        digits_batch=512,
        n_traj=8000,
        stride=1,
        digits_n_traj=3000,
        digits_stride=1,
        n_exact=4000,
        n_batches=8,
        n_gap=5000,
        n_gap_batches=8,
        level_stride=20,
        n_boot=300,
        net=NET.replace(hidden=512, depth=4),
        training=TRAINING.replace(steps=8000, batch_size=2048, workers=2),
        verdict=Verdict(tolerance_step=10.0, tolerance_rel=0.08),
    ),
)


# ---------------------------------------------------------------------------------------
# the mixture, the offset of a binary decision
# ---------------------------------------------------------------------------------------
def four_classes(config: Config) -> GaussianMixture:
    """Classes 0..3 at ``(-A, -B-), (-A, +B-), (+A, -B+), (+A, +B+)`` in the first two
    coordinates of R^d, variance ``s^2``, equal weights: two sides, whose members are
    decided at two different noise levels."""
    means = np.zeros((4, config.dim))
    bm, bp = config.members
    for k, (a, b) in enumerate(((-1, -bm), (-1, bm), (1, -bp), (1, bp))):
        means[k, 0], means[k, 1] = a * config.side, b
    return GaussianMixture.isotropic([0.25] * 4, means, [config.variance] * 4)


class TwoPointOffset:
    """``log(delta_peak / delta_c)`` of the binary channel: two equal point masses at
    ``+-m`` have ``delta_c = m^2`` (criterion (a)) and the peak of ``dH/d log delta`` at
    ``delta = 0.663 m^2`` (quadrature; it depends on nothing else)."""

    _value: float | None = None

    @classmethod
    def value(cls) -> float:
        if cls._value is None:
            dl = np.geomspace(0.05, 20.0, 4000)
            two = GaussianMixture.two_deltas(1.0)
            xs, _ = I.local_maxima(np.log(dl), I.entropy_rate_quadrature(two, dl) * dl)
            cls._value = float(xs[np.argmax(np.interp(xs, np.log(dl), dl))])
        return cls._value


def _levels(proc: DDPM, stride: int) -> np.ndarray:
    return np.arange(0, proc.n_steps - 1, stride, dtype=float) + 0.5


def _per_step(proc: DDPM, steps) -> tuple[np.ndarray, np.ndarray]:
    dl = np.asarray(proc.delta(steps))
    return dl, np.asarray(I.rate_in_time(np.ones_like(dl), dl, proc))


# ---------------------------------------------------------------------------------------
# exact references (mixture)
# ---------------------------------------------------------------------------------------
def _exact_curves(mix: GaussianMixture, proc: DDPM, steps, config: Config, seed: int) -> dict:
    """Per class: ``(B, L)`` rates per step of the one-vs-rest entropy (library score gap),
    the class-restricted entropy (finite differences, common random numbers) and the
    surprisal (exact score gap)."""
    dl, fac = _per_step(proc, steps)
    K, B, n = mix.n_components, config.n_batches, config.n_exact
    out = {d: np.empty((K, B, steps.size)) for d in ("one-vs-rest", "restricted", "surprisal")}
    comps = mix.components
    h = 0.02
    for k in range(K):
        part = I.one_vs_rest(k, K)
        for b in range(B):
            g = np.random.default_rng([seed, 21, k, b])
            x0 = comps[k].sample(n, g)
            z = g.standard_normal(x0.shape)
            for i, d in enumerate(dl):
                r, _ = I.entropy_rate_score_gap(
                    mix, [d], n, np.random.default_rng([seed, 22, k, b]), part
                )
                out["one-vs-rest"][k, b, i] = r[0] * fac[i]
                y = x0 + math.sqrt(d) * z
                s_k = comps[k].score(y, d)
                s = mix.score(y, d)
                out["surprisal"][k, b, i] = 0.5 * np.mean(np.sum((s_k - s) ** 2, axis=1)) * fac[i]
                hs = []
                for f in (1 + h, 1 - h):
                    yf = x0 + math.sqrt(d * f) * z
                    hs.append(I.entropy(mix.posterior(yf, d * f)).mean())
                out["restricted"][k, b, i] = (hs[0] - hs[1]) / (2 * h * d) * fac[i]
    return out


def _network_gap(net, data_of_class, proc: DDPM, steps, n_batches: int, seed: int, K: int):
    """Per class ``(K, B, L)``: ``1/2 |s_net(y | k) - s_net(y)|^2`` per step at ``y`` from
    ``data_of_class(k, b, rng) -> x0``, the same ``x0, z`` at every level (per batch)."""
    dl, fac = _per_step(proc, steps)
    out = np.empty((K, n_batches, steps.size))
    uncond = net.conditional(None)
    for k in range(K):
        cond = net.conditional(k)
        for b in range(n_batches):
            g = np.random.default_rng([seed, 31, k, b])
            x0 = data_of_class(k, b, g)
            z = g.standard_normal(x0.shape)
            for i, d in enumerate(dl):
                y = x0 + math.sqrt(d) * z
                gap = cond.score(y, d) - uncond.score(y, d)
                out[k, b, i] = 0.5 * np.mean(np.sum(gap**2, axis=1)) * fac[i]
    return out


def _exact_decision_peak(mix, part, config: Config, seed: int, center: float):
    """``(log delta, se)`` of the exact decision's ``dH/d log delta`` peak near ``center``
    (score gap with common random numbers, bootstrap over batches)."""
    ld = center + np.linspace(-config.window_log_delta, config.window_log_delta, 15)
    cur = np.empty((config.n_batches, ld.size))
    for b in range(config.n_batches):
        for i, x in enumerate(ld):
            d = math.exp(x)
            r, _ = I.entropy_rate_score_gap(
                mix, [d], config.n_exact, np.random.default_rng([seed, 41, b]), part
            )
            cur[b, i] = r[0] * d
    xp, _, sx, _ = bootstrap_peak(ld, cur, np.random.default_rng([seed, 42]), config.n_boot)
    return xp, sx


# ---------------------------------------------------------------------------------------
# the network's online classifier
# ---------------------------------------------------------------------------------------
def network_online(net, proc: DDPM, n: int, stride: int, rng: np.random.Generator):
    """Generate ``n`` trajectories with the network's unconditional model (DDPM ancestral
    steps every ``stride`` DDPM steps, from the prior) while the online classifier with its
    conditional models tracks ``p(c | x_k)``. Returns ``(steps, posteriors (S, n, K))``,
    steps increasing: ``posteriors[0]`` is the final ``p(c | x_0)``."""
    from physdiff import sampling
    from physdiff.classes import NetworkClasses

    T = proc.n_steps
    grid = np.arange(T - 1, -1, -stride, dtype=float)
    if grid[-1] != 0:
        grid = np.append(grid, 0.0)
    classes = NetworkClasses(net)
    clf = I.OnlineClassifier(classes, proc)
    sampling.sample(classes, n, rng, method="ddpm", process=proc, times=grid, record=clf.recorder())
    post = np.stack(clf.history)[::-1]
    return grid[::-1].copy(), post


def _batch_means(values: np.ndarray, weights: np.ndarray | None, n_batches: int) -> np.ndarray:
    """``values (S, n)``, optional ``weights (n,)`` -> ``(n_batches, S)`` weighted means over
    contiguous batches of trajectories."""
    n = values.shape[1]
    idx = np.array_split(np.arange(n), n_batches)
    w = np.ones(n) if weights is None else weights
    return np.stack([values[:, i] @ w[i] / max(w[i].sum(), 1e-300) for i in idx])


def _rates(steps: np.ndarray, H: np.ndarray, j: int, x_of=None) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of ``H (B, S)`` over ``2j + 1`` grid intervals; ``x_of`` maps
    steps to the differentiation variable (default: the step itself)."""
    xv = steps if x_of is None else x_of(steps)
    i = np.arange(j, steps.size - 1 - j)
    num = H[:, i + 1 + j] - H[:, i - j]
    den = xv[i + 1 + j] - xv[i - j]
    mid = 0.5 * (steps[i] + steps[i + 1])
    return mid, num / den


def _online_profiles(post: np.ndarray, config: Config, n_batches: int) -> dict:
    """Per class: batch-mean one-vs-rest and class-restricted entropies ``(B, S)``."""
    K = post.shape[2]
    final = post[0]  # the posterior at step 0, p(C | x_0)
    Hall = I.entropy(post)  # (S, n)
    out = {"one-vs-rest": [], "restricted": []}
    for k in range(K):
        p = post[:, :, k]
        hb = I.entropy(np.stack([p, 1 - p], axis=-1))
        out["one-vs-rest"].append(_batch_means(hb, None, n_batches))
        out["restricted"].append(_batch_means(Hall, final[:, k], n_batches))
    out["all"] = _batch_means(Hall, None, n_batches)
    return {key: np.array(v) for key, v in out.items()}


def _decision_entropy(post: np.ndarray, part: I.Partition, n_batches: int) -> np.ndarray:
    """Batch means ``(B, S)`` of a decision's entropy along the trajectories, conditioned on
    its classes (the library's weights ``p(U | x_0)``, from the final posterior ``post[0]``:
    :func:`physdiff.information.decision_entropies`)."""
    h, w = I.decision_entropies(post, part, final=post[0])
    return _batch_means(h, w, n_batches)


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
def check(config: Config) -> None:
    if config.digits_net not in ("mlp", "unet"):
        raise InputError(f"digits_net must be 'mlp' or 'unet'; got {config.digits_net!r}")
    if config.digits:
        from physdiff.data import load_digits

        load_digits()  # scikit-learn must be importable
    if min(config.n_batches, config.n_traj_batches) < 2:
        raise InputError("n_batches and n_traj_batches must be >= 2 (bootstrap errors)")
    bad = set(config.critical_decisions) - {"coarse", "0-vs-1", "2-vs-3"}
    if bad:
        raise InputError(f"critical_decisions must be among coarse, 0-vs-1, 2-vs-3; got {bad}")


def _jobs(ctx: RunContext, serial: bool):
    config, seed = ctx.config, ctx.seed
    mix = four_classes(config)
    net = NetSpec.of(config, config.dim, n_classes=4)
    jobs = [ctx.job("mixture", net, mix, seed=seed * 1000, progress=serial)]
    digits = None
    if config.digits:
        from physdiff.data import load_digits

        digits = load_digits()
        dnet = NetSpec(
            digits.dim,
            config.digits_hidden,
            config.digits_depth,
            config.net.embed_dim,
            kind=config.digits_net,
            n_classes=10,
            base_channels=config.digits_channels,
        )
        dtrain = TrainSpec.of(config, steps=config.digits_steps, batch_size=config.digits_batch)
        jobs.append(
            ctx.job(
                "digits",
                dnet,
                np.asarray(digits.train),
                seed=seed * 1000 + 1,
                train=dtrain,
                progress=serial,
                labels=np.asarray(digits.train_labels),
            )
        )
    return mix, digits, jobs


def window_stats(x, curves, lo: float, hi: float) -> tuple[float, float]:
    """``(centroid, decided)`` of a rate curve over ``[lo, hi]``: the rate-weighted mean
    position ``int x r / int r`` and the entropy decided there ``int r`` (trapezoids through
    the mean of ``curves (B, L)`` at the points inside; the curve is clipped at 0)."""
    x = np.asarray(x, dtype=float)
    sel = (x >= lo) & (x <= hi)
    xs, r = x[sel], np.clip(np.asarray(curves, dtype=float).mean(axis=0)[sel], 0.0, None)
    if xs.size < 2:
        return math.nan, math.nan
    area = float(np.trapezoid(r, xs))
    return (float(np.trapezoid(xs * r, xs)) / area if area > 0 else math.nan), area


def _boot_window(x, curves, lo, hi, rng, n_boot) -> tuple[float, float, float, float]:
    """:func:`window_stats` with bootstrap standard errors over the rows of ``curves``."""
    curves = np.asarray(curves, dtype=float)
    c, a = window_stats(x, curves, lo, hi)
    B = curves.shape[0]
    reps = np.array([window_stats(x, curves[rng.integers(0, B, B)], lo, hi) for _ in range(n_boot)])
    ok = np.all(np.isfinite(reps), axis=1)
    if ok.sum() < 10:
        return c, a, math.inf, math.inf
    return c, a, float(reps[ok, 0].std(ddof=1)), float(reps[ok, 1].std(ddof=1))


def _peak_rows(
    name: str,
    what: str,
    xs_exact,
    exact,
    xs_net,
    net,
    config: Config,
    rule_step: Rule,
    boot: np.random.Generator,
    extra: dict,
) -> list:
    """Rows for every significant maximum of the reference curve ``exact (B, L)``: over the
    window of ``config.window`` steps around it, the rate-weighted mean step (where the
    decision happens) and the entropy decided there (how much), reference against network.
    Both are integrals of the curve, far less noisy than the vertex of a noisy maximum."""
    rows = []
    mean = exact.mean(axis=0)
    idx = significant_maxima(xs_exact, mean, config.min_peak, config.min_prominence)
    shift = config.verdict.prediction_shift
    for i in idx:
        c = float(xs_exact[i])
        lo, hi = c - config.window, c + config.window
        pc, pa, psc, psa = _boot_window(xs_exact, exact, lo, hi, boot, config.n_boot)
        mc, ma, msc, msa = _boot_window(xs_net, net, lo, hi, boot, config.n_boot)
        cond = f"{name}, {what}, steps {max(lo, 0):.0f}-{hi:.0f} around the maximum at {c:.0f}"
        rows.append(
            judge(
                "rate-weighted mean step of the decision window (DDPM steps)",
                pc + 1000.0 * shift,
                mc,
                difference(psc, msc),
                rule_step,
                condition=cond,
                **extra,
            )
        )
        rows.append(
            judge(
                "entropy decided in the window (nats)",
                pa * (1.0 + shift),
                ma,
                difference(psa, msa),
                config.verdict.rule("tolerance_rel", scale=abs(pa)),
                condition=cond,
                **extra,
            )
        )
    return rows


@experiment_run
def run(config: Config, ctx: RunContext) -> Result:
    """Train the conditional networks (a sweep), measure, judge, plot."""
    out_dir, seed = ctx.out_dir, ctx.seed
    n_jobs = 2 if config.digits else 1
    mix, digits, jobs = _jobs(ctx, ctx.in_process(n_jobs))
    summaries = ctx.train(jobs)
    proc = DDPM()
    boot = np.random.default_rng([seed, 5])
    rows: list = []
    plots: dict = {}
    train_info = {
        s.name: {"steps": s.steps, "seconds": round(s.seconds, 2), "final_loss": s.final_loss}
        for s in summaries
    }

    # --- the mixture ------------------------------------------------------------------
    net = ctx.network(jobs[0])
    steps = _levels(proc, config.level_stride)
    exact = _exact_curves(mix, proc, steps, config, seed)
    comps = mix.components
    n_gap = config.n_gap
    gap = _network_gap(
        net, lambda k, b, g: comps[k].sample(n_gap, g), proc, steps, config.n_gap_batches, seed, 4
    )
    grid, post = network_online(
        net, proc, config.n_traj, config.stride, np.random.default_rng([seed, 51])
    )
    prof = _online_profiles(post, config, config.n_traj_batches)
    j = config.online_half_span
    rule_step = config.verdict.rule("tolerance_step")
    online = {}
    for what in ("one-vs-rest", "restricted"):
        online[what] = [_rates(grid, prof[what][k], j) for k in range(4)]
    extra_mix = {"training": train_info["mixture"], "data": "mixture"}
    for k in range(4):
        for what, xs_n, cur_n in (
            ("one-vs-rest", *online["one-vs-rest"][k]),
            ("restricted", *online["restricted"][k]),
            ("surprisal (score gap)", steps, gap[k]),
        ):
            key = what.split(" ")[0]
            rows += _peak_rows(
                f"mixture class {k}",
                f"{what}, network {'online classifier' if key != 'surprisal' else 'score gap'}",
                steps,
                exact[key][k],
                xs_n,
                cur_n,
                config,
                rule_step,
                boot,
                {**extra_mix, "class": k, "definition": key},
            )
    plots["mixture"] = {"steps": steps, "exact": exact, "gap": gap, "online": online}

    # decisions against critical points
    from physdiff import symmetry as S

    off = TwoPointOffset.value()
    crit_rows = []
    all_decisions = {
        "coarse": (I.coarse([[0, 1], [2, 3]], 4), mix),
        "0-vs-1": (I.pairwise(0, 1, 4), GaussianMixture.from_components([0.5, 0.5], comps[:2])),
        "2-vs-3": (I.pairwise(2, 3, 4), GaussianMixture.from_components([0.5, 0.5], comps[2:])),
    }
    decisions = {d: all_decisions[d] for d in config.critical_decisions}
    rule_ld = config.verdict.rule("tolerance_log_delta")
    log_steps = np.log(np.asarray(proc.delta(grid)))
    for di, (dname, (part, sub)) in enumerate(decisions.items()):
        # the stability of the groups' centre of mass, held fixed (track=False): with
        # unequal members the mixture is not symmetric, and the followed fixed point would
        # slide into one side instead of breaking
        cp = S.critical_point(sub, "log-density", track=False)
        pred = math.log(cp.delta) + off
        ex, exse = _exact_decision_peak(mix, part, config, seed * 10 + di, pred)
        H = _decision_entropy(post, part, config.n_traj_batches)
        xs, rl = _rates(grid, H, j, x_of=lambda s: np.log(np.asarray(proc.delta(s))))
        lx = np.interp(xs, grid, log_steps)
        sel = np.abs(lx - pred) <= config.window_log_delta
        nx, _, nsx, _ = bootstrap_peak(lx[sel], rl[:, sel], boot, config.n_boot)
        extra = {
            "decision": dname,
            "critical_point": cp.table(),
            "two_point_offset": off,
            "training": train_info["mixture"],
        }
        for who, m, se in (("exact model", ex, exse), ("network, online classifier", nx, nsx)):
            crit_rows.append(
                judge(
                    "log delta of the decision's dH/dlog(delta) peak vs log(0.663 delta_c)",
                    pred + config.verdict.prediction_shift,
                    m,
                    se,
                    rule_ld,
                    condition=f"mixture, {dname}, {who} (delta_c = {cp.delta:.3g}, criterion a)",
                    **extra,
                )
            )
    rows += crit_rows

    # --- digits -------------------------------------------------------------------------
    if config.digits:
        dnet = ctx.network(jobs[1])
        rows += _digits(config, digits, dnet, seed, proc, boot, train_info, plots)

    fig = f"{NAME}.png"
    _plot(plots, config, out_dir / fig)
    return ctx.result(rows, [fig])


def _digits(config, digits, net, seed, proc, boot, train_info, plots) -> list:
    from physdiff import symmetry as S

    X, y = np.asarray(digits.train), np.asarray(digits.train_labels)
    K = 10
    w = np.bincount(y, minlength=K) / y.size
    steps = _levels(proc, config.level_stride)

    def data_of_class(k, b, g):
        xk = X[y == k]
        return np.repeat(xk, config.digits_noise_draws, axis=0)

    gap = _network_gap(net, data_of_class, proc, steps, 2, seed, K)  # (K, 2, L)
    # two independent noise batches per class; the 10-way rate is the weighted sum
    total_gap = np.einsum("k,kbl->bl", w, gap)
    grid, post = network_online(
        net, proc, config.digits_n_traj, config.digits_stride, np.random.default_rng([seed, 61])
    )
    prof = _online_profiles(post, config, config.n_traj_batches)
    xs_on, r_on = _rates(grid, prof["all"], max(1, config.online_half_span // config.digits_stride))
    # the class structure: the between-class covariance of the class means
    means = np.stack([X[y == k].mean(axis=0) for k in range(K)])
    mu = w @ means
    between = ((means - mu).T * w) @ (means - mu)
    lam = np.clip(np.linalg.eigvalsh(between)[::-1], 0.0, None)  # rank <= 9: zeros to rounding
    crit = {
        "log-density": S.critical_from_eigenvalue(lam, "log-density").table(),
        "speciation (data covariance)": S.critical_from_eigenvalue(
            np.clip(np.linalg.eigvalsh(np.cov(X.T)), 0.0, None), "speciation"
        ).table(),
        "between-class eigenvalues": lam[:5].tolist(),
    }
    # the 10-way rate per unit log delta: its maxima, and the parabola through the hump
    ld = np.log(np.asarray(proc.delta(grid)))
    xs_l, r_l = _rates(grid, prof["all"], 1, x_of=lambda s: np.log(np.asarray(proc.delta(s))))
    lx = np.interp(xs_l, grid, ld)
    mean_l = r_l.mean(axis=0)
    peaks_l = [
        {"step": float(xs_l[i]), "delta": float(np.exp(lx[i])), "rate": float(mean_l[i])}
        for i in significant_maxima(xs_l, mean_l, 0.2)
    ]
    off = TwoPointOffset.value()
    pred = math.log(crit["log-density"]["delta"]) + off
    sel = np.abs(lx - pred) <= config.window_log_delta_digits
    mx, _, msx, _ = bootstrap_peak(lx[sel], r_l[:, sel], boot, config.n_boot)
    gap_mean = total_gap.mean(axis=0)
    extra = {
        "training": train_info["digits"],
        "data": "digits (8x8, 10 classes, standardised)",
        "critical_points": crit,
        "two_point_offset": off,
        "online_maxima_per_log_delta": peaks_l,
        "score_gap_per_step": {
            "steps": steps.tolist(),
            "rate": gap_mean.tolist(),
            "note": "the network's conditional and unconditional denoisers disagree by "
            "~1e-3 at low noise, which the score gap divides by delta^2: it rises toward "
            "step 0 instead of falling to 0, so it has no interior maximum on digits",
        },
        "online_rate_per_step": {"steps": xs_on.tolist(), "rate": r_on.mean(axis=0).tolist()},
    }
    rows = [
        judge(
            "log delta of the 10-way dH/dlog(delta) peak vs log(0.663 delta_c)",
            pred + config.verdict.prediction_shift,
            mx,
            msx,
            config.verdict.rule("tolerance_log_delta_digits"),
            condition=(
                f"digits, network online classifier, delta_c = "
                f"{crit['log-density']['delta']:.3g} (criterion a, top eigenvalue of the "
                "between-class covariance)"
            ),
            **extra,
        )
    ]
    plots["digits"] = {
        "steps": steps,
        "gap": total_gap,
        "online": (xs_on, r_on),
        "crit": crit,
        "peaks_l": peaks_l,
    }
    return rows


def _plot(plots: dict, config: Config, path: Path) -> None:
    from physdiff.plot import OKABE_ITO

    colors = [OKABE_ITO["blue"], OKABE_ITO["sky"], OKABE_ITO["vermillion"], OKABE_ITO["orange"]]
    ncols = 4 if "digits" in plots else 3
    with saved_figure(path, (2.7 * ncols, 3.0)) as fig:
        axes = fig.subplots(1, ncols)
        m = plots["mixture"]
        titles = {
            "one-vs-rest": "mixture: one-vs-rest",
            "restricted": "mixture: class-restricted",
            "surprisal": "mixture: surprisal (score gap)",
        }
        for ax, key in zip(axes[:3], ("one-vs-rest", "restricted", "surprisal"), strict=True):
            for k in range(4):
                ex = m["exact"][key][k]
                ax.plot(m["steps"], 1e3 * ex.mean(axis=0), color=colors[k], lw=1.2)
                if key == "surprisal":
                    xs, cv = m["steps"], m["gap"][k]
                else:
                    xs, cv = m["online"][key][k]
                ax.plot(xs, 1e3 * cv.mean(axis=0), color=colors[k], lw=0.8, ls="--")
            ax.set_title(titles[key])
            ax.set_xlabel("DDPM step k")
            ax.set_ylim(bottom=0)
        axes[0].set_ylabel("rate (millinats/step)")
        axes[0].plot([], [], color="0.3", lw=1.2, label="exact")
        axes[0].plot([], [], color="0.3", lw=0.8, ls="--", label="network")
        for k in range(4):
            axes[0].plot([], [], color=colors[k], label=f"class {k}")
        axes[0].legend(frameon=False, fontsize=6)
        if "digits" in plots:
            dg = plots["digits"]
            ax = axes[3]
            ax.plot(dg["steps"], 1e3 * dg["gap"].mean(axis=0), color="k", lw=1.2,
                    label="network score gap (data)")  # fmt: skip
            xs, cv = dg["online"]
            ax.plot(xs, 1e3 * cv.mean(axis=0), color=OKABE_ITO["vermillion"], lw=0.9,
                    label="network online classifier")  # fmt: skip
            top = 1e3 * float(np.max(cv.mean(axis=0)))
            proc = DDPM()
            for name, ls in (("log-density", ":"), ("speciation (data covariance)", "-.")):
                d = dg["crit"][name]["delta"]
                if proc.delta_min <= d <= proc.delta_max:
                    ax.axvline(float(proc.time_of_delta(d)), color="0.5", ls=ls, lw=0.8,
                               label=f"critical: {name.split(' ')[0]}")  # fmt: skip
            ax.set_title("digits: 10-way rate")
            ax.set_xlabel("DDPM step k")
            ax.set_ylim(0, 2.2 * top)
            ax.legend(frameon=False, fontsize=6)
        fig.suptitle(f"Class decisions of conditional networks ({config.preset})", fontsize=9)
