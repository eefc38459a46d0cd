"""Associative memory: networks memorise few patterns and generalise many; exact scores memorise.

Pham, Raya, Negri, Zaki, Ambrogioni & Krotov 2025 (arXiv 2505.21777; docs/theory.md section 5):
a diffusion model trained on K patterns is an associative memory. Few patterns: one basin
per training point (memorisation); many: a continuum of new samples (generalisation); at
the boundary, spurious attractors (stable end points that are not training points).

Training sets (nested, one :class:`physdiff.nn.ScoreMLP` behind an EDM-preconditioned
:class:`physdiff.nn.Denoiser` per K, trained by denoising score matching; trainings are
jobs of :mod:`validation.training`, reused by reruns):

* **circle**: K points *equally spaced* on the unit circle (not samples of the ring), the
  case of :func:`physdiff.association.circle_merge_count`; the generalising limit is the
  uniform ring;
* **digits**: K of the 1438 standardised 8x8 training digits (:func:`physdiff.data.
  load_digits`; the first K of ``numpy.random.default_rng(seed).permutation(1438)``, the
  rule of ``physdiff attractors --points digits``), K up to the full set; the
  generalising limit is the held-out split (359 digits).

Generated samples: ``n_samples`` deterministic Heun probability-flow trajectories (EDM
schedule, final denoise; one sampler call per model), the same start noise for the network
and the exact empirical score of the same K points. The network's samples are *not* refined
by the iterated denoiser: on a trained network the iteration at small noise drifts along
the learned manifold (docs/association.md), so the sampler's end points are the generated
samples. The exact score's attractors are also found with
:func:`physdiff.association.find_attractors` (count, stability, all on training points).

Classification (:func:`physdiff.association.classify_samples`, Euclidean distance on the
standardised values, thresholds ``c_m s`` and ``c_s s`` with ``s`` the training set's
median nearest-neighbour spacing). The chance-neighbour count of the spurious rule is
computed for the data's geometry: on the circle from the Poisson tail of the number of
*uniform ring* samples within ``c_s s`` (``lambda = (N - 1) 2 asin(c_s s / 2) / pi``), for
the digits by ``classify_samples``' default. Memorisation is measured against a
generalising model: ``f_fresh`` is the memorised fraction of fresh data (the uniform ring,
exact; the held-out digits), and the normalised memorisation
``m = (f_mem - f_fresh) / (1 - f_fresh)`` is 1 for a memorising and 0 for a generalising
model. The transition ``K*`` is where ``m`` crosses 1/2 (linear in ``log K`` between the
bracketing K).

Theory and what it does (not) predict: the exact score's energy at the sampler's final noise
``delta_end = sigma_min^2`` is the dense-associative-memory energy at ``beta = 1 / (2
delta_end)``; equally spaced circle memories stay separate up to ``K =
circle_merge_count(beta)`` (2011 for ``sigma_min = 0.002``; 1571 by the pairwise rule), so
the exact score memorises every K tested. A trained network has no such closed form: its
transition is reported with the noise level ``delta_eff`` at which the DAM's memories would
merge at ``K*`` (pairwise rule, ``delta_eff = sin^2(pi/K*)``), i.e. the resolution the
network behaves as if it had, and where that level falls in the EDM training distribution of
noise levels; this is a description, not a verdict.

Basins (:func:`physdiff.association.basin_size`, level 0.9, recovery within ``c_m s``) of
training points for every K, for the network and the exact score, and of the spurious
states found (centres of clusters of spurious samples, recovery within ``c_s s``).

Verdicts (``|measured - predicted| <= k * s.e. + tolerance``), per data set:

1. exact score, all K pooled: memorised fraction, predicted 1 (``exact_tolerance``);
2. network at the smallest K: memorised fraction, predicted the exact score's;
3. network at the largest K: normalised memorisation, predicted 0, one-sided (a negative
   m, a network farther from the training points than fresh data, counts as 0: sample
   quality is score_fidelity's and memorization_sanity's business);
4. network at the smallest K: basin of a training point ``log10 delta_basin`` (the crossing
   of level 0.9 interpolated in ``log10 delta``; s.e. from the binomial error over the
   local slope), predicted the exact score's (``tolerance_log_basin``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physdiff import association as A
from physdiff.ensembles import Empirical
from physdiff.errors import InputError

from ..config import ExperimentConfig, NetConfig, TrainingConfig, VerdictConfig
from ..result import Result, judge, saved_figure
from ..samples import heun_samples
from ..stats import binomial_fraction, difference
from ..training import NetSpec
from . import RunContext, experiment_run

__all__ = [
    "Config",
    "PRESETS",
    "run",
    "check",
    "circle_points",
    "digits_points",
    "ring_fresh_fraction",
    "ring_min_neighbours",
    "normalised",
    "transition",
    "spurious_states",
]

NAME = "associative_memory"
EDM_SIGMA_MIN = 0.002  # physdiff.processes.EDM() default: the sampler's final noise
EDM_P_MEAN, EDM_P_STD = -1.2, 1.2  # the EDM training distribution of log sigma


TRAINING = TrainingConfig(steps=1500)


@dataclass(frozen=True)
class Verdict(VerdictConfig):
    """The rules' settings (:class:`validation.config.VerdictConfig`) and the tolerances."""

    REASONS = {  # why each fixed slack is there (docs/validation.md)
        "tolerance": (
            "stated accuracy of a trained network's memorised fraction and normalised m (a claim "
            "about finite training; its optimum, the exact empirical score, is judged with "
            "exact_tolerance)"
        ),
        "tolerance_log_basin": (
            "stated accuracy of a trained network's basin edge in log10 delta (a claim; the edge "
            "is interpolated between grid levels)"
        ),
    }

    tolerance: float = 0.1
    tolerance_log_basin: float = 0.25


@dataclass(frozen=True)
class Config(ExperimentConfig):
    circle_K: tuple[int, ...] = (2, 4, 8, 16, 32)
    digits_K: tuple[int, ...] = (2, 6, 16, 64, 1438)  # 1438: the full training split
    n_samples: int = 1000
    sampler_steps: int = 32
    c_m: float = 0.25
    c_s: float = 0.25
    circle_net: NetConfig = NetConfig(hidden=64, depth=2, embed_dim=32)
    digits_net: NetConfig = NetConfig(hidden=128, depth=2, embed_dim=32)
    training: TrainingConfig = TRAINING
    basin_levels: int = 13  # noise levels s^2 * geomspace(1e-3, 10, basin_levels)
    basin_trials: int = 32
    basin_steps: int = 24
    basin_points: int = 2  # training points (and spurious states) per K
    verdict: Verdict = Verdict()
    exact_tolerance: float = 0.005


PRESETS: dict[str, Config] = {
    "smoke": Config(
        preset="smoke",
        circle_K=(2, 32),
        digits_K=(2, 256),
        n_samples=200,
        sampler_steps=16,
        circle_net=NetConfig(hidden=32, depth=1, embed_dim=16),
        digits_net=NetConfig(hidden=128, depth=1, embed_dim=16),
        basin_levels=7,
        basin_trials=12,
        basin_steps=12,
        basin_points=1,
        training=TRAINING.replace(steps=400, batch_size=128, lr=1e-2, ema_decay=0.9, workers=1),
        verdict=Verdict(tolerance=0.2, tolerance_log_basin=0.5),
    ),
    "cpu": Config(preset="cpu"),
    "gpu": Config(
        preset="gpu",
        circle_K=(2, 4, 6, 8, 12, 16, 24, 32, 64, 128),
        digits_K=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1438),
        n_samples=4000,
        sampler_steps=40,
        circle_net=NetConfig(hidden=128, depth=3, embed_dim=64),
        digits_net=NetConfig(hidden=256, depth=4, embed_dim=64),
        basin_levels=15,
        basin_trials=64,
        basin_steps=32,
        basin_points=2,
        training=TRAINING.replace(steps=6000, batch_size=512, workers=8),
        verdict=Verdict(tolerance=0.05),
    ),
}


# ---------------------------------------------------------------------------------------
# data and the generalising references
# ---------------------------------------------------------------------------------------
def circle_points(K: int) -> np.ndarray:
    """K equally spaced points on the unit circle, ``(K, 2)``."""
    th = 2 * np.pi * np.arange(K) / K
    return np.stack([np.cos(th), np.sin(th)], axis=1)


def digits_points(K: int, seed: int, data=None) -> np.ndarray:
    """The first K rows of the standardised digits training split after
    ``numpy.random.default_rng(seed).permutation`` (nested in K)."""
    if data is None:
        from physdiff.data import load_digits

        data = load_digits()
    n = data.train.shape[0]
    if not 2 <= K <= n:
        raise InputError(f"digits_K must lie in [2, {n}] (the training split); got {K}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.array(data.train[perm[:K]], dtype=np.float64)


def ring_fresh_fraction(K: int, c_m: float) -> float:
    """Fraction of the uniform ring within ``c_m s`` (chord) of one of K equally spaced
    points, ``s = 2 sin(pi/K)``: ``min(1, K 2 asin(c_m s / 2) / pi)``."""
    s = 2 * math.sin(math.pi / K)
    return min(1.0, K * 2 * math.asin(min(1.0, c_m * s / 2)) / math.pi)


def ring_min_neighbours(N: int, K: int, c_s: float, p: float = 0.01) -> int:
    """Chance-neighbour threshold for N samples on the uniform ring: the smallest count
    that the Poisson number of other samples within ``c_s s`` (``lambda = (N - 1) 2
    asin(c_s s / 2) / pi``) exceeds with probability below ``p``; at least 2."""
    from scipy.stats import poisson

    s = 2 * math.sin(math.pi / K)
    lam = (N - 1) * 2 * math.asin(min(1.0, c_s * s / 2)) / math.pi
    return max(2, int(poisson.isf(p, lam)) + 1)


def normalised(f: float, se: float, f0: float, se0: float) -> tuple[float, float]:
    """``m = (f - f0) / (1 - f0)`` and its standard error (errors in quadrature)."""
    den = max(1.0 - f0, 1e-12)
    return (f - f0) / den, difference(se, se0) / den


def transition(Ks, m) -> dict:
    """Where ``m(K)`` first crosses 1/2 from above, linear in ``log K`` between the
    bracketing K; ``K_star = None`` when it does not cross."""
    Ks, m = np.asarray(Ks, dtype=float), np.asarray(m, dtype=float)
    for i in range(len(Ks) - 1):
        if m[i] >= 0.5 > m[i + 1]:
            u = (m[i] - 0.5) / (m[i] - m[i + 1])
            k = math.exp(math.log(Ks[i]) + u * (math.log(Ks[i + 1]) - math.log(Ks[i])))
            return {"K_star": k, "bracket": [float(Ks[i]), float(Ks[i + 1])]}
    side = "above" if m.size and m[-1] >= 0.5 else "below"
    return {"K_star": None, "bracket": None, "note": f"m stays {side} 1/2 over the K tested"}


def spurious_states(samples: np.ndarray, cl, limit: int) -> list[dict]:
    """Clusters of spurious samples (greedy, radius ``delta_s``) with at least
    ``min_neighbours + 1`` members, largest first: their centres (member means) and sizes."""
    sel = samples[cl.labels == 1]
    if sel.shape[0] == 0:
        return []
    _, lab = A.deduplicate(sel, cl.delta_s)
    sizes = np.bincount(lab)
    out = []
    for j in np.argsort(-sizes, kind="stable"):
        if sizes[j] < cl.min_neighbours + 1 or len(out) >= limit:
            break
        out.append({"centre": sel[lab == j].mean(axis=0), "size": int(sizes[j])})
    return out


def check(config: Config) -> None:
    """Inputs that must hold before anything is written."""
    if not config.circle_K or not config.digits_K:
        raise InputError("circle_K and digits_K must each hold at least one K")
    for name in ("circle_K", "digits_K"):
        ks = getattr(config, name)
        if any(k < 2 for k in ks) or list(ks) != sorted(set(ks)):
            raise InputError(f"{name} must be increasing integers >= 2; got {ks}")
    for name in ("c_m", "c_s"):
        if not getattr(config, name) > 0:
            raise InputError(f"{name} must be positive; got {getattr(config, name)!r}")
    from physdiff.data import load_digits

    n = load_digits().train.shape[0]
    if config.digits_K[-1] > n:
        raise InputError(
            f"digits_K must not exceed the training split ({n} digits); got {config.digits_K[-1]}"
        )


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
def _basin(model, point, s: float, tol: float, config: Config, rng) -> dict:
    deltas = s * s * np.geomspace(1e-3, 10.0, config.basin_levels)
    b = A.basin_size(
        model,
        point,
        deltas,
        rng,
        n_trials=config.basin_trials,
        tolerance=tol,
        process="edm",
        n_steps=config.basin_steps,
    )
    log_b, se = basin_crossing(b.deltas, b.probability, config.basin_trials, b.level)
    return {
        "delta_basin": b.delta_basin,
        "log10_delta_basin": log_b,
        "log10_delta_basin_se": se,
        "delta_basin_over_s2": 10**log_b / (s * s),
        "radius": b.radius,
        "probability": b.probability,
        "deltas": b.deltas,
        "unconverged_fraction": float(
            np.sum(b.unconverged) / (config.basin_trials * b.deltas.size)
        ),
    }


def basin_crossing(deltas, prob, n_trials: int, level: float = 0.9) -> tuple[float, float]:
    """``log10`` of the noise level where the recovery probability first falls below
    ``level``, linear in ``log10 delta`` between the bracketing grid levels (finer than
    ``basin_size``'s grid value), with its standard error: the binomial error of the
    probability at ``level`` over the local slope, at most one grid step. Below the grid:
    the first level minus one step; never below ``level``: the last level."""
    x = np.log10(np.asarray(deltas, dtype=float))
    p = np.asarray(prob, dtype=float)
    step = float(x[1] - x[0]) if x.size > 1 else 1.0
    below = np.flatnonzero(p < level)
    if below.size == 0:
        return float(x[-1]), step
    i = int(below[0])
    if i == 0:
        return float(x[0] - step), step
    slope = (p[i - 1] - p[i]) / (x[i] - x[i - 1])
    xc = x[i - 1] + (p[i - 1] - level) / slope
    se = math.sqrt(level * (1 - level) / n_trials) / slope
    return float(xc), float(min(se, step))


def _circle_theory(K_star: float | None, config: Config) -> dict:
    """The DAM numbers behind the circle's transition (module docstring)."""
    beta_end = 1.0 / (2 * EDM_SIGMA_MIN**2)
    out = {
        "delta_end": EDM_SIGMA_MIN**2,
        "dam_merge_count_at_delta_end": A.circle_merge_count(beta_end),
        "dam_merge_count_pairwise_at_delta_end": A.circle_merge_count_pairwise(beta_end),
    }
    if K_star is not None:
        d_eff = math.sin(math.pi / K_star) ** 2  # beta (2 sin(pi/K))^2 = 2, delta = 1/(2 beta)
        z = (0.5 * math.log(d_eff) - EDM_P_MEAN) / EDM_P_STD
        out.update(
            delta_eff=d_eff,
            sigma_eff=math.sqrt(d_eff),
            sigma_eff_training_quantile=0.5 * math.erfc(-z / math.sqrt(2)),
        )
    return out


@experiment_run
def run(config: Config, ctx: RunContext) -> Result:
    """Train one network per (data set, K), sample, classify, measure basins, judge, plot."""
    out_dir, seed = ctx.out_dir, ctx.seed
    from physdiff.data import load_digits

    digits = load_digits()
    held_out = np.asarray(digits.held_out, dtype=np.float64)
    sets: list[dict] = []
    for K in config.circle_K:
        sets.append({"data": "circle", "K": K, "train": circle_points(K)})
    for K in config.digits_K:
        sets.append({"data": "digits", "K": K, "train": digits_points(K, seed, digits)})

    serial = ctx.in_process(len(sets))
    jobs = []
    for i, s in enumerate(sets):
        circ = s["data"] == "circle"
        net = NetSpec.of(config.circle_net if circ else config.digits_net, s["train"].shape[1])
        name = f"{s['data']}-K{s['K']}"
        jobs.append(ctx.job(name, net, s["train"], seed=seed * 1000 + i, progress=serial))
    # the largest trainings first, so that parallel workers finish together
    order = sorted(range(len(jobs)), key=lambda j: -jobs[j].net.hidden * jobs[j].net.dim)
    done = ctx.train([jobs[j] for j in order])
    summaries = [None] * len(jobs)
    for j, summ in zip(order, done, strict=True):
        summaries[j] = summ

    N = config.n_samples
    for i, (s, job) in enumerate(zip(sets, jobs, strict=True)):
        x = s["train"]
        K = s["K"]
        emp = Empirical(x)
        net = ctx.network(job)
        y_net = heun_samples(net, N, config.sampler_steps, np.random.default_rng([seed, 20, i]))
        y_emp = heun_samples(emp, N, config.sampler_steps, np.random.default_rng([seed, 20, i]))
        if s["data"] == "circle":
            mn = ring_min_neighbours(N, K, config.c_s)
            f0, se0 = ring_fresh_fraction(K, config.c_m), 0.0
        else:
            mn = None
            sp = A.nearest_neighbour_spacing(x)
            _, dh = emp.nearest(held_out)
            f0, se0 = binomial_fraction(int(np.sum(dh <= config.c_m * sp)), dh.shape[0])
        kw = {"c_m": config.c_m, "c_s": config.c_s, "min_neighbours": mn}
        cl_net = A.classify_samples(y_net, x, **kw)
        cl_emp = A.classify_samples(y_emp, x, **kw)
        att = A.find_attractors(
            emp,
            min(N, 400),
            np.random.default_rng([seed, 21, i]),
            process="edm",
            n_steps=config.sampler_steps,
        )
        _, att_dist = emp.nearest(att.points)
        counts = {}
        for who, cl in (("network", cl_net), ("exact", cl_emp)):
            counts[who] = {
                lab: binomial_fraction(int(np.sum(cl.labels == j)), N)
                for j, lab in enumerate(A.Classification.LABELS)
            }
        f_net, se_net = counts["network"]["memorised"]
        m, se_m = normalised(f_net, se_net, f0, se0)
        # basins: training points (both models) and the network's spurious states
        spacing, dm, ds = cl_net.spacing, cl_net.delta_m, cl_net.delta_s
        rng_b = np.random.default_rng([seed, 22, i])
        idx = np.linspace(0, K - 1, min(K, config.basin_points)).round().astype(int)
        basins = {
            "network": [_basin(net, x[j], spacing, dm, config, rng_b) for j in idx],
            "exact": [_basin(emp, x[j], spacing, dm, config, rng_b) for j in idx],
        }
        states = spurious_states(y_net, cl_net, config.basin_points)
        for st in states:
            st["basin"] = _basin(net, st["centre"], spacing, ds, config, rng_b)
            st["nearest_training_distance_over_s"] = float(emp.nearest(st["centre"][None])[1][0])
            st["nearest_training_distance_over_s"] /= spacing
        summ = summaries[i]
        s.update(
            spacing=spacing,
            delta_m=dm,
            delta_s=ds,
            min_neighbours=cl_net.min_neighbours,
            intrinsic_dim=None if math.isnan(cl_net.intrinsic_dim) else cl_net.intrinsic_dim,
            fresh=(f0, se0),
            counts=counts,
            m=(m, se_m),
            basins=basins,
            spurious_states=states,
            attractors={
                "n": int(att.points.shape[0]),
                "n_stable": int(np.sum(att.stable)),
                "max_distance_to_training_point_over_s": float(att_dist.max() / spacing),
                "n_unconverged": att.n_unconverged,
            },
            training=summ.brief(),
            samples=y_net,
        )

    rows = []
    analysis = {}
    for data in ("circle", "digits"):
        sel = [s for s in sets if s["data"] == data]
        rows += _rows(data, sel, config, analysis)
    fig = "associative_memory.png"
    _plot(sets, analysis, config, out_dir / fig)
    return ctx.result(rows, [fig])


def _summary(s: dict) -> dict:
    """The per-K numbers written into the result."""
    return {
        "K": s["K"],
        "spacing": s["spacing"],
        "min_neighbours": s["min_neighbours"],
        "fresh_memorised": s["fresh"][0],
        "network": {k: v[0] for k, v in s["counts"]["network"].items()},
        "exact": {k: v[0] for k, v in s["counts"]["exact"].items()},
        "normalised_memorisation": s["m"][0],
        "normalised_memorisation_se": s["m"][1],
        "basin_over_s2_network": [b["delta_basin_over_s2"] for b in s["basins"]["network"]],
        "basin_over_s2_exact": [b["delta_basin_over_s2"] for b in s["basins"]["exact"]],
        # trials whose refinement (200 denoiser iterations) did not converge: on a network
        # the iteration can drift (docs/association.md)
        "basin_unconverged_network": [b["unconverged_fraction"] for b in s["basins"]["network"]],
        "basin_unconverged_exact": [b["unconverged_fraction"] for b in s["basins"]["exact"]],
        "intrinsic_dim": s["intrinsic_dim"],
        "spurious_states": [
            {
                "size": st["size"],
                "basin_over_s2": st["basin"]["delta_basin_over_s2"],
                "nearest_training_distance_over_s": st["nearest_training_distance_over_s"],
            }
            for st in s["spurious_states"]
        ],
        "exact_attractors": s["attractors"],
        "training": s["training"],
    }


def _rows(data: str, sel: list[dict], config: Config, analysis: dict) -> list:
    rule = config.verdict.rule("tolerance")
    exact_rule = config.verdict.rule(
        config.exact_tolerance,
        reason="the exact score's samples end at the sampler's final noise with a final "
        "denoise (ODE discretisation); stated, not derived",
    )
    basin_rule = config.verdict.rule("tolerance_log_basin")
    shift = config.verdict.prediction_shift
    N = config.n_samples
    Ks = [s["K"] for s in sel]
    tr = transition(Ks, [s["m"][0] for s in sel])
    spur = [s["counts"]["network"]["spurious"][0] for s in sel]
    common = {
        "per_K": [_summary(s) for s in sel],
        "transition": tr,
        "spurious_peak": {"K": Ks[int(np.argmax(spur))], "fraction": float(max(spur))},
    }
    if data == "circle":
        common["theory"] = _circle_theory(tr["K_star"], config)
    analysis[data] = common
    rows = []
    # 1. the exact score memorises at every K
    k_mem = sum(int(round(s["counts"]["exact"]["memorised"][0] * N)) for s in sel)
    f_ex, se_ex = binomial_fraction(k_mem, N * len(sel))
    rows.append(
        judge(
            "exact empirical score: memorised fraction (all K pooled)",
            1.0 + shift,
            f_ex,
            se_ex,
            exact_rule,
            condition=f"{data}, K = {', '.join(map(str, Ks))}",
            per_K={str(s["K"]): s["counts"]["exact"]["memorised"][0] for s in sel},
            exact_attractors={str(s["K"]): s["attractors"] for s in sel},
        )
    )
    # 2. the network memorises the smallest set like the exact score
    lo, hi = sel[0], sel[-1]
    fn, sen = lo["counts"]["network"]["memorised"]
    fe, see = lo["counts"]["exact"]["memorised"]
    rows.append(
        judge(
            "network: memorised fraction at the smallest K (vs exact score)",
            fe + shift,
            fn,
            difference(sen, see),
            rule,
            condition=f"{data}, K = {lo['K']}",
            **common,
        )
    )
    # 3. the network generalises the largest set (one-sided: m <= 0 counts as 0)
    m, se_m = hi["m"]
    rows.append(
        judge(
            "network: normalised memorisation m at the largest K (generalising: 0)",
            0.0 + shift,
            max(m, 0.0),
            se_m,
            rule,
            condition=f"{data}, K = {hi['K']}",
            m=m,
            fresh_memorised=hi["fresh"][0],
            network_memorised=hi["counts"]["network"]["memorised"][0],
        )
    )
    # 4. the network's basin of a training point at the smallest K equals the exact score's
    bn = [b["log10_delta_basin"] for b in lo["basins"]["network"]]
    be = [b["log10_delta_basin"] for b in lo["basins"]["exact"]]
    sn = [b["log10_delta_basin_se"] for b in lo["basins"]["network"]]
    sx = [b["log10_delta_basin_se"] for b in lo["basins"]["exact"]]
    b_net, b_ex = float(np.mean(bn)), float(np.mean(be))
    se_b = difference(
        float(np.sqrt(np.sum(np.square(sn)))) / len(sn),
        float(np.sqrt(np.sum(np.square(sx)))) / len(sx),
    )
    s2 = lo["spacing"] ** 2
    rows.append(
        judge(
            "network: log10 basin delta of a training point at the smallest K (vs exact)",
            b_ex + shift,
            b_net,
            se_b,
            basin_rule,
            condition=f"{data}, K = {lo['K']}",
            basin_over_s2_network=10**b_net / s2,
            basin_over_s2_exact=10**b_ex / s2,
            points=len(bn),
        )
    )
    return rows


# ---------------------------------------------------------------------------------------
# the figure
# ---------------------------------------------------------------------------------------
def _plot(sets: list[dict], analysis: dict, config: Config, path: Path) -> None:
    from physdiff.plot import OKABE_ITO

    colors = {
        "memorised": OKABE_ITO["blue"],
        "spurious": OKABE_ITO["vermillion"],
        "generalised": OKABE_ITO["green"],
    }
    with saved_figure(path, (10.0, 6.2)) as fig:
        axes = fig.subplots(2, 3)
        for row, data in enumerate(("circle", "digits")):
            sel = [s for s in sets if s["data"] == data]
            Ks = np.array([s["K"] for s in sel], dtype=float)
            ax = axes[row, 0]
            for lab, c in colors.items():
                v = np.array([s["counts"]["network"][lab] for s in sel])
                ax.errorbar(
                    Ks,
                    v[:, 0],
                    v[:, 1],
                    color=c,
                    marker="o",
                    ms=3.5,
                    capsize=2,
                    label=f"network: {lab}",
                )
            ex = np.array([s["counts"]["exact"]["memorised"][0] for s in sel])
            ax.plot(Ks, ex, "--", color=colors["memorised"], lw=1, label="exact score: memorised")
            fr = np.array([s["fresh"][0] for s in sel])
            ax.plot(Ks, fr, ":", color="0.4", lw=1, label="fresh data: memorised")
            tr = analysis[data]["transition"]
            if tr["K_star"] is not None:
                ax.axvline(tr["K_star"], color="0.3", lw=0.8, ls="-.")
                ax.annotate(
                    f"$K^* = {tr['K_star']:.3g}$",
                    (tr["K_star"], 0.75),
                    xytext=(3, 0),
                    textcoords="offset points",
                    fontsize=7,
                )
            _k_axis(ax, Ks)
            ax.set_ylim(-0.03, 1.05)
            ax.set_xlabel("training set size K")
            ax.set_ylabel("fraction of generated samples")
            ax.set_title(f"{data}: classification of {config.n_samples} samples")
            if row == 0:
                ax.legend(frameon=False, fontsize=6, loc="center left")
            # basins
            ax = axes[row, 1]
            for who, c, mk in (("network", OKABE_ITO["blue"], "o"), ("exact", "0.3", "s")):
                for j, s in enumerate(sel):
                    v = [b["delta_basin_over_s2"] for b in s["basins"][who]]
                    ax.plot(
                        [s["K"]] * len(v),
                        v,
                        mk,
                        color=c,
                        ms=4,
                        mfc="none" if who == "exact" else c,
                        label=f"training point ({who})" if j == 0 else None,
                    )
            first = True
            for s in sel:
                for st in s["spurious_states"]:
                    ax.plot(
                        [s["K"]],
                        [st["basin"]["delta_basin_over_s2"]],
                        "^",
                        color=OKABE_ITO["vermillion"],
                        ms=5,
                        label="spurious state (network)" if first else None,
                    )
                    first = False
            if data == "circle":
                kk = np.geomspace(2, Ks.max(), 100)
                ax.plot(
                    kk, _voronoi_basin(kk), ":", color="0.3", lw=1, label="Voronoi approximation"
                )
            # below (0.05 s)^2, the end noise of basin_size, recovery is 1 by construction
            ax.axhspan(1e-4, 2.5e-3 * 1.2, color="0.92", lw=0, zorder=0)
            ax.annotate(
                "no basin (below resolution)",
                (0.02, 0.02),
                xycoords="axes fraction",
                fontsize=6,
                color="0.4",
            )
            _k_axis(ax, Ks)
            ax.set_yscale("log")
            ax.set_ylim(1.5e-3, None)
            ax.set_xlabel("training set size K")
            ax.set_ylabel(r"basin $\Delta_{basin} / s^2$ (recovery $\geq$ 0.9)")
            ax.set_title(f"{data}: basins")
            ax.legend(frameon=False, fontsize=6, loc="center left")
        # samples of the circle networks around the transition, and a digits panel
        circ = [s for s in sets if s["data"] == "circle"]
        ax = axes[0, 2]
        show = circ[-2:] if len(circ) > 1 else circ
        for s, c in zip(show, (OKABE_ITO["sky"], OKABE_ITO["orange"]), strict=False):
            r = 1.0 if s is show[-1] else 0.82
            ax.scatter(
                r * s["samples"][:, 0],
                r * s["samples"][:, 1],
                s=1.5,
                color=c,
                alpha=0.5,
                label=f"K = {s['K']} (radius x {r:g})",
            )
            ax.plot(r * s["train"][:, 0], r * s["train"][:, 1], "x", color="k", ms=4)
        ax.set_aspect("equal")
        ax.set_title("circle: network samples (x: training points)")
        ax.legend(frameon=False, fontsize=6, loc="center")
        ax = axes[1, 2]
        _digit_strip(ax, [s for s in sets if s["data"] == "digits"])
        fig.suptitle(
            f"Associative memory ({config.preset}); dashed: exact empirical score", fontsize=9
        )


def _k_axis(ax, Ks) -> None:
    ax.set_xscale("log")
    ax.set_xticks(Ks, [str(int(k)) for k in Ks], fontsize=7)
    ax.minorticks_off()


def _voronoi_basin(K):
    """``delta_90 / s^2`` of the Voronoi approximation on the circle: recovery
    ``2 Phi(s / (2 sqrt(delta))) - 1 = 0.9`` (two neighbours; one for K = 2)."""
    K = np.asarray(K, dtype=float)
    z = np.where(K < 2.5, 1.2815515655446004, 1.6448536269514722)  # Phi^-1(0.9), Phi^-1(0.95)
    return 1.0 / (4 * z * z)


def _digit_strip(ax, sel: list[dict]) -> None:
    """A strip of network samples per K (rows) with their class colour border."""
    rows = []
    for s in sel:
        y = s["samples"][:8]
        rows.append(np.concatenate([im.reshape(8, 8) for im in y], axis=1))
        rows.append(np.full((1, rows[-1].shape[1]), np.nan))
    img = np.concatenate(rows[:-1], axis=0)
    ax.imshow(img, cmap="gray_r", interpolation="nearest", vmin=-1.0, vmax=2.5)
    ax.set_yticks([4 + 9 * i for i in range(len(sel))], [f"K={s['K']}" for s in sel])
    ax.set_xticks([])
    ax.set_title("digits: first 8 network samples per K")
