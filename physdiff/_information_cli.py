"""The ``physdiff entropy`` and ``physdiff guide`` subcommands (THEORY.md sections 6-7).

    physdiff entropy --means=-8,-4,6,8 --process ddpm --json
    physdiff entropy --means=-8,-4,6,8 --stds 0 --partition pairwise:2,3 --out profile.json
    physdiff entropy --means=-2,0,2 --weights 0.2,0.3,0.5 --partition coarse:0/1,2
    physdiff guide --mixture four-1d --method dng-exact --remove 2 --scale 1 --json
    physdiff guide --mixture square-2d --method np --remove 3 --scale 2 --out samples.npy

``entropy`` computes the conditional entropy ``H(G | y)`` of a decision of a 1-D Gaussian
mixture and its rate at ``--levels`` noise levels by Gauss-Hermite quadrature
(:func:`physdiff.information.conditional_entropy_quadrature`,
:func:`~physdiff.information.entropy_rate_quadrature`) and reports every local maximum of the
rate (:func:`~physdiff.information.local_maxima`), both of the rate in the process's time
``dH/dt`` and of the schedule-free ``dH/d log delta``, each in ``delta``, in the process's
time and (DDPM) as a step. ``guide`` samples a named mixture with a guidance method of
:mod:`physdiff.guidance` and measures the removal (:func:`physdiff.guidance.guidance_metrics`).

Wiring: :func:`add_parser` adds both subcommands to the ``physdiff`` parser; each runs
through its ``run`` function. Bad input gives one line on stderr naming the argument and
exit status 2. Nothing heavy (scipy, the guidance module) is imported until a command runs.
"""

from __future__ import annotations

import math

__all__ = [
    "add_parser",
    "run_entropy",
    "run_guide",
    "entropy_profile",
    "guide",
    "parse_partition",
    "named_mixture",
    "MIXTURES",
    "METHODS",
]

from ._cli_args import UsageError as _Usage
from ._cli_args import choice as _choice
from ._cli_args import floats as _floats
from ._cli_args import integer as _int
from ._cli_args import json_number as _num
from ._cli_args import number as _number
from ._cli_args import process_name as _process
from ._cli_args import run_command, write_json, write_output

EXIT_OK, EXIT_USAGE = 0, 2

MIXTURES: dict[str, dict] = {
    "four-1d": {
        "means": [[-8.0], [-4.0], [6.0], [8.0]],
        "variance": 0.25,
        "weights": [0.25, 0.25, 0.25, 0.25],
        "about": "1-D, four Gaussian classes (variance 0.25) at -8, -4, 6, 8, equal weights "
        "(the mixture of validation/experiments/guidance.py)",
    },
    "three-1d": {
        "means": [[-3.0], [0.0], [3.0]],
        "variance": 0.16,
        "weights": [0.2, 0.3, 0.5],
        "about": "1-D, three Gaussian classes (variance 0.16) at -3, 0, 3, weights 0.2, 0.3, 0.5",
    },
    "square-2d": {
        "means": [[-3.0, -3.0], [3.0, -3.0], [-3.0, 3.0], [3.0, 3.0]],
        "variance": 0.2,
        "weights": [0.1, 0.2, 0.3, 0.4],
        "about": "2-D, four isotropic Gaussian classes (variance 0.2) at the corners "
        "(+-3, +-3), weights 0.1, 0.2, 0.3, 0.4",
    },
}
"""The named mixtures of ``physdiff guide`` (one class per component)."""

METHODS = ("cfg", "np", "dng", "dng-exact")


# ---------------------------------------------------------------------------------------
# the decision spec
# ---------------------------------------------------------------------------------------
def parse_partition(spec: str, n_classes: int):
    """The decision ``spec`` over ``n_classes`` classes as a
    :class:`~physdiff.information.Partition`, or ``None`` for ``all`` (the K-way decision).

    ``all``; ``pairwise:a,b``; ``one-vs-rest:k``; ``coarse:0,1/2,3`` (groups separated by
    ``/``, classes by ``,``; classes in no group are conditioned away). Raises
    :class:`~physdiff.errors.InputError` on a malformed spec, a class index out of range or
    groups that are not a partition.
    """
    from . import information as I
    from .errors import InputError

    s = spec.strip().lower()
    if s == "all":
        return None
    kind, sep, rest = s.partition(":")
    if not sep:
        raise InputError(
            f"unknown decision {spec!r}; use all, pairwise:a,b, one-vs-rest:k or coarse:0,1/2,3"
        )

    def ints(text: str) -> list[int]:
        try:
            vals = [int(v) for v in text.split(",") if v.strip() != ""]
        except ValueError:
            raise InputError(f"class indices must be integers; got {text!r} in {spec!r}") from None
        if not vals:
            raise InputError(f"an empty group of classes in {spec!r}")
        return vals

    if kind == "pairwise":
        ab = ints(rest)
        if len(ab) != 2:
            raise InputError(f"pairwise needs two classes a,b; got {spec!r}")
        if ab[0] == ab[1]:
            raise InputError(f"pairwise needs two different classes; got {spec!r}")
        return I.pairwise(ab[0], ab[1], n_classes)
    if kind == "one-vs-rest":
        k = ints(rest)
        if len(k) != 1:
            raise InputError(f"one-vs-rest needs one class k; got {spec!r}")
        return I.one_vs_rest(k[0], n_classes)
    if kind == "coarse":
        return I.coarse([ints(g) for g in rest.split("/")], n_classes)
    raise InputError(
        f"unknown decision {spec!r}; use all, pairwise:a,b, one-vs-rest:k or coarse:0,1/2,3"
    )


# ---------------------------------------------------------------------------------------
# the parsers
# ---------------------------------------------------------------------------------------
def add_parser(subparsers) -> None:
    """Add ``entropy`` and ``guide`` to the ``physdiff`` sub-parsers."""
    from .processes import PRESETS

    names = ", ".join(PRESETS)
    p = subparsers.add_parser(
        "entropy",
        help="class-decision entropy and entropy-rate profiles of a 1-D mixture, every peak",
        description="The conditional entropy H(G | y) of a decision between the classes "
        "(components) of a 1-D Gaussian mixture, y = x0 + sqrt(delta) z, and its rate, "
        "by Gauss-Hermite quadrature at --levels noise levels spaced geometrically in delta; "
        "every local maximum of the rate in the process's time, dH/dt, and of the "
        "schedule-free rate dH/d log delta, each reported in delta, in the process's time "
        "and, for ddpm, as a step (THEORY.md section 6; Handke et al. 2025). A decision "
        "between a subset of the classes is conditional on the class lying in it.",
        epilog="Decisions: all (the K-way decision, default), pairwise:a,b, one-vs-rest:k, "
        "coarse:0,1/2,3 (groups separated by '/'). Classes are numbered by --means, from 0. "
        f"Processes: {names}. Write --means=-8,-4,6,8 (with '=') when the first mean is "
        "negative. Example: physdiff entropy --means=-8,-4,6,8 --process ddpm --json.",
    )
    p.add_argument(
        "--means",
        type=_floats,
        required=True,
        metavar="M1,M2,...",
        help="the components' means (K >= 2)",
    )
    p.add_argument(
        "--stds",
        type=_floats,
        default=[1.0],
        metavar="S[,S2,...]",
        help="standard deviations: one for all or one per component, >= 0 (0: a point "
        "mass; default 1)",
    )
    p.add_argument(
        "--weights",
        type=_floats,
        metavar="W1,W2,...",
        help="component weights, > 0, renormalised to sum to one (default equal)",
    )
    p.add_argument(
        "--process",
        type=_process,
        default="ddpm",
        metavar="PROC",
        help=f"the process whose time the peaks are reported in ({names}; default ddpm)",
    )
    p.add_argument(
        "--partition",
        default="all",
        metavar="SPEC",
        help="the decision: all, pairwise:a,b, one-vs-rest:k or coarse:0,1/2,3 (all)",
    )
    p.add_argument("--levels", type=_int, default=1000, metavar="L", help="noise levels (1000)")
    p.add_argument(
        "--delta-min",
        type=_number,
        metavar="D",
        help="smallest noise level (default: the process's smallest, at least 1e-4)",
    )
    p.add_argument(
        "--delta-max",
        type=_number,
        metavar="D",
        help="largest noise level (default: the process's largest)",
    )
    p.add_argument("--order", type=_int, default=200, metavar="N", help="Gauss-Hermite order (200)")
    p.add_argument(
        "--rel-height",
        type=_number,
        default=1e-6,
        metavar="R",
        help="report maxima at least R times the rate's range above its minimum (1e-6; "
        "0: all, rounding noise included)",
    )
    p.add_argument(
        "--out", metavar="FILE", help="write the full profile as JSON to FILE (atomically)"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run_entropy)

    g = subparsers.add_parser(
        "guide",
        help="guided sampling of a named mixture: removed-class share, class KL, quality",
        description="Sample a named Gaussian mixture (exact scores) with a guidance method "
        "and measure the removal of class --remove (physdiff.guidance.guidance_metrics): "
        "the share of samples the exact Bayes classifier puts into the class, the smoothed "
        "KL divergence from the target class distribution over the kept classes to the "
        "generated one, and the sliced W2 distance to exact samples of the kept classes "
        "(with the same distance between two exact samples as its floor). Methods: cfg "
        "(classifier-free guidance toward the class: s + w (s_c - s)), np (negative "
        "prompting, s - lambda (s_c - s)), dng-exact (dynamic negative guidance with the "
        "exact posterior: lambda = 1 samples the mixture without the class), dng (tracked "
        "DNG: the posterior followed along the chain, the method for networks; "
        "physdiff.guidance.TrackedDNG). Sampler: DDPM ancestral steps.",
        epilog="Mixtures: "
        + "; ".join(f"{k}: {v['about']}" for k, v in MIXTURES.items())
        + ". For cfg the metrics still refer to --remove as 'the removed class': its share "
        "is the share of the class guided toward. Example: physdiff guide --mixture four-1d "
        "--method dng-exact --remove 2 --scale 1 --json.",
    )
    g.add_argument(
        "--mixture",
        type=_choice(tuple(MIXTURES), "mixture"),
        default="four-1d",
        metavar="NAME",
        help=f"a named mixture ({', '.join(MIXTURES)}; default four-1d)",
    )
    g.add_argument(
        "--method",
        type=_choice(METHODS, "method"),
        required=True,
        metavar="M",
        help=f"guidance method ({', '.join(METHODS)})",
    )
    g.add_argument(
        "--remove",
        type=_int,
        required=True,
        metavar="K",
        help="the class removed (cfg: the class guided toward)",
    )
    g.add_argument(
        "--scale", type=_number, default=1.0, metavar="S", help="guidance scale, >= 0 (1)"
    )
    g.add_argument("--n", type=_int, default=2000, metavar="N", help="samples (2000)")
    g.add_argument("--seed", type=_int, default=0, metavar="S", help="seed (0)")
    g.add_argument(
        "--process",
        type=_process,
        default="ddpm",
        metavar="PROC",
        help=f"the process of the sampler ({names}; default ddpm)",
    )
    g.add_argument("--steps", type=_int, default=500, metavar="S", help="sampler steps (500)")
    g.add_argument(
        "--prior",
        type=_number,
        metavar="P",
        help="dng: the posterior at the start (default: the class weight)",
    )
    g.add_argument("--tau", type=_number, default=1.0, metavar="T", help="dng: tau (1)")
    g.add_argument(
        "--p-max", type=_number, default=0.99, metavar="P", help="dng: the cap of p (0.99)"
    )
    g.add_argument(
        "--out", metavar="FILE", help="write the samples (n, d) to FILE as .npy (atomically)"
    )
    g.add_argument("--json", action="store_true", help="print machine-readable JSON")
    g.set_defaults(func=run_guide)


# ---------------------------------------------------------------------------------------
# entropy
# ---------------------------------------------------------------------------------------
def _mixture_1d(means, stds, weights):
    import numpy as np

    from .ensembles import GaussianMixture

    K = len(means)
    if K < 2:
        raise _Usage(f"argument --means: need at least two components; got {K}")
    if len(stds) not in (1, K):
        raise _Usage(f"argument --stds: give one value or {K} (one per mean); got {len(stds)}")
    if any(s < 0 for s in stds):
        raise _Usage(f"argument --stds: must be >= 0; got {min(stds):g}")
    sd = np.broadcast_to(np.asarray(stds, dtype=float), (K,))
    if weights is None:
        w = np.full(K, 1.0 / K)
    else:
        if len(weights) != K:
            raise _Usage(f"argument --weights: need {K} (one per mean); got {len(weights)}")
        if any(not v > 0 for v in weights):
            raise _Usage(f"argument --weights: must all be > 0; got {min(weights):g}")
        w = np.asarray(weights, dtype=float) / sum(weights)
    pts = np.asarray(means, dtype=float)[:, None]
    for i in range(K):
        for j in range(i):
            if pts[i, 0] == pts[j, 0] and sd[i] == sd[j]:
                raise _Usage(
                    f"argument --means: components {j} and {i} are identical (mean "
                    f"{pts[i, 0]:g}, std {sd[i]:g}): their classes cannot be told apart"
                )
    return GaussianMixture.isotropic(w.tolist(), pts.tolist(), (sd**2).tolist()), sd, w


def entropy_profile(
    model,
    process: str = "ddpm",
    partition=None,
    *,
    levels: int = 1000,
    delta_min: float | None = None,
    delta_max: float | None = None,
    order: int = 200,
    rel_height: float = 1e-6,
) -> tuple[dict, dict]:
    """The data behind ``physdiff entropy``: ``(summary, profile)``, both JSON-ready.

    The grid is ``np.geomspace(delta_min, delta_max, levels)`` (defaults: the process's
    range, the lower end at least 1e-4). ``profile`` holds per level ``delta``, the time
    ``t`` (``time_of_delta``), ``H`` (nats), ``rate_delta = dH/d delta``,
    ``rate_log_delta = delta dH/d delta`` and ``rate_time = dH/dt``; ``profile["time_grid"]``
    the grid of the rate in time, uniform in ``t`` between the times of the two ends
    (``levels`` points; DDPM: the half steps ``k + 1/2`` in that range, where the discrete
    schedule's ``d delta/dt`` is defined) with its ``delta`` and ``rate_time``.
    ``summary["peaks"]`` lists every local maximum of ``rate_time`` over ``t`` on the time
    grid, ``summary["peaks_log_delta"]`` every local maximum of ``rate_log_delta`` over
    ``log delta`` on the delta grid (:func:`~physdiff.information.local_maxima` with
    ``rel_height``), each with its ``delta``, ``t`` and (DDPM) nearest ``step``.
    """
    import numpy as np

    from . import information as I
    from .errors import InputError
    from .processes import DDPM, get_process

    proc = get_process(process)
    lo = max(proc.delta_min, 1e-4) if delta_min is None else float(delta_min)
    hi = proc.delta_max if delta_max is None else float(delta_max)
    for name, v in (("--delta-min", lo), ("--delta-max", hi)):
        if not v > 0:
            raise _Usage(f"argument {name}: must be > 0; got {v:g}")
        try:
            proc.check_delta(v, name)
        except InputError as exc:
            raise _Usage(f"argument {exc}") from None
    if not lo < hi:
        raise _Usage(f"argument --delta-max: must exceed --delta-min ({lo:g}); got {hi:g}")
    if not 3 <= levels <= 10**6:
        raise _Usage(f"argument --levels: must be an integer in [3, 10^6]; got {levels}")
    if not 2 <= order <= 300:
        raise _Usage(f"argument --order: must be an integer in [2, 300]; got {order}")
    if not 0 <= rel_height <= 1:
        raise _Usage(f"argument --rel-height: must lie in [0, 1]; got {rel_height:g}")
    deltas = np.geomspace(lo, hi, levels)
    deltas[0], deltas[-1] = lo, hi
    H = I.conditional_entropy_quadrature(model, deltas, partition, order=order)
    R = I.entropy_rate_quadrature(model, deltas, partition, order=order)
    t = np.asarray(proc.time_of_delta(deltas), dtype=float)
    Rt = np.asarray(I.rate_in_time(R, deltas, proc), dtype=float)
    Rl = R * deltas
    ddpm = isinstance(proc, DDPM)
    # dH/dt on a grid uniform in the process's time; for DDPM the half steps k + 1/2, where
    # d delta/dt (constant between steps of the discrete schedule) is defined: on any
    # finer grid its jumps at the integer steps make a staircase with spurious maxima
    t_lo, t_hi = float(t[0]), float(t[-1])
    if ddpm:
        tg = np.arange(math.floor(t_lo), math.ceil(t_hi)) + 0.5
        tg = tg[(tg >= t_lo) & (tg <= t_hi)]
        if tg.size < 3:
            raise _Usage(
                "argument --delta-max: the range spans fewer than 3 DDPM steps; widen "
                "--delta-min/--delta-max"
            )
    else:
        tg = np.linspace(t_lo, t_hi, levels)
    dg = np.asarray(proc.delta(tg), dtype=float)
    Rg = np.asarray(
        I.rate_in_time(I.entropy_rate_quadrature(model, dg, partition, order=order), dg, proc),
        dtype=float,
    )

    def where(delta: float, tt: float) -> dict:
        out = {"delta": float(delta), "t": float(tt)}
        if ddpm:
            out["step"] = int(np.clip(np.rint(tt), 0, proc.n_steps - 1))
        return out

    peaks = []
    for tp, rp in zip(*I.local_maxima(tg, Rg, rel_height=rel_height), strict=True):
        tp = float(np.clip(tp, proc.t_min, proc.t_max))
        peaks.append({**where(float(proc.delta(tp)), tp), "rate": float(rp)})
    peaks_ld = []
    for xp, rp in zip(*I.local_maxima(np.log(deltas), Rl, rel_height=rel_height), strict=True):
        dp = float(np.clip(np.exp(xp), lo, hi))
        peaks_ld.append({**where(dp, float(proc.time_of_delta(dp))), "rate": float(rp)})
    if partition is None:
        w = model.weights
    else:
        w = np.array([model.weights[list(g)].sum() for g in partition.groups])
    H_prior = float(I.entropy(w / w.sum()))
    half = None
    if H[0] < 0.5 * H_prior < H[-1]:
        i = int(np.flatnonzero(H >= 0.5 * H_prior)[0])  # the first crossing; i >= 1
        x0, x1 = np.log(deltas[i - 1]), np.log(deltas[i])
        f = (0.5 * H_prior - H[i - 1]) / (H[i] - H[i - 1])
        dh = float(np.exp(x0 + f * (x1 - x0)))
        half = where(dh, float(proc.time_of_delta(dh)))
    imax = int(np.argmax(Rg))
    summary = {
        "H_prior": H_prior,
        "H_at_delta_min": float(H[0]),
        "H_at_delta_max": float(H[-1]),
        "half_entropy": half,
        "largest_rate_on_grid": {**where(dg[imax], tg[imax]), "rate": float(Rg[imax])},
        "peaks": peaks,
        "peaks_log_delta": peaks_ld,
    }
    profile = {
        "delta": deltas.tolist(),
        "t": t.tolist(),
        "H": H.tolist(),
        "rate_delta": R.tolist(),
        "rate_log_delta": Rl.tolist(),
        "rate_time": Rt.tolist(),
    }
    if ddpm:
        profile["step"] = np.clip(np.rint(t), 0, proc.n_steps - 1).astype(int).tolist()
    profile["time_grid"] = {"t": tg.tolist(), "delta": dg.tolist(), "rate_time": Rg.tolist()}
    return summary, profile


def _compute_entropy(args) -> dict:
    from .errors import InputError

    model, sd, w = _mixture_1d(args.means, args.stds, args.weights)
    try:
        part = parse_partition(args.partition, model.n_components)
    except InputError as exc:
        raise _Usage(f"argument --partition: {exc}") from None
    summary, profile = entropy_profile(
        model,
        args.process,
        part,
        levels=args.levels,
        delta_min=args.delta_min,
        delta_max=args.delta_max,
        order=args.order,
        rel_height=args.rel_height,
    )
    head = {
        "mixture": {"means": list(args.means), "stds": sd.tolist(), "weights": w.tolist()},
        "process": args.process,
        "partition": {
            "spec": args.partition.strip().lower(),
            "groups": [list(range(model.n_components))]
            if part is None
            else [list(g) for g in part.groups],
            "name": "all" if part is None else part.name,
        },
        "levels": int(args.levels),
        "order": int(args.order),
        "delta_range": [profile["delta"][0], profile["delta"][-1]],
        "rel_height": float(args.rel_height),
    }
    res = {**head, **summary}
    if args.out is not None:
        write_json(args.out, {**head, "summary": summary, "profile": profile})
        res["out"] = args.out
    return res


def run_entropy(args) -> int:
    """Execute ``physdiff entropy`` for parsed ``args``; returns the exit status."""
    return run_command("entropy", _compute_entropy, _entropy_table, args)


def _entropy_table(res: dict) -> str:
    mix = res["mixture"]
    part = res["partition"]
    step = res["process"] == "ddpm"
    lines = [
        "1-D mixture: means "
        + ", ".join(f"{m:g}" for m in mix["means"])
        + "; stds "
        + ", ".join(f"{s:g}" for s in mix["stds"])
        + "; weights "
        + ", ".join(f"{w:.4g}" for w in mix["weights"]),
        f"decision: {part['spec']} (groups {part['groups']}); process {res['process']}; "
        f"{res['levels']} levels, delta in [{res['delta_range'][0]:.4g}, "
        f"{res['delta_range'][1]:.4g}]",
        f"H(G) = {res['H_prior']:.6g} nats; H(G | y) from {res['H_at_delta_min']:.4g} to "
        f"{res['H_at_delta_max']:.6g}",
    ]
    if res["half_entropy"] is not None:
        h = res["half_entropy"]
        lines.append(
            f"H = H(G)/2 at delta = {h['delta']:.6g}, t = {h['t']:.6g}"
            + (f" (step {h['step']})" if step else "")
        )
    for key, what in (
        ("peaks", "local maxima of dH/dt (the process's time)"),
        ("peaks_log_delta", "local maxima of dH/d log delta (schedule-free)"),
    ):
        lines += ["", f"{what}: {len(res[key])}"]
        if res[key]:
            lines.append(
                f"{'#':>3} {'delta':>12} {'t':>12}"
                + (f" {'step':>5}" if step else "")
                + f" {'rate':>12}"
            )
            for i, pk in enumerate(res[key]):
                lines.append(
                    f"{i:>3} {pk['delta']:>12.6g} {pk['t']:>12.6g}"
                    + (f" {pk['step']:>5d}" if step else "")
                    + f" {pk['rate']:>12.6g}"
                )
    if res.get("out"):
        lines += ["", f"profile written to {res['out']}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# guide
# ---------------------------------------------------------------------------------------
def named_mixture(name: str):
    """The named mixture of ``physdiff guide`` (:data:`MIXTURES`) as a
    :class:`~physdiff.ensembles.GaussianMixture`."""
    from .ensembles import GaussianMixture
    from .errors import InputError

    if name not in MIXTURES:
        raise InputError(f"unknown mixture {name!r}; choose from {', '.join(MIXTURES)}")
    m = MIXTURES[name]
    K = len(m["means"])
    return GaussianMixture.isotropic(m["weights"], m["means"], [m["variance"]] * K)


def guide(
    name: str,
    method: str,
    remove: int,
    scale: float = 1.0,
    *,
    n: int = 2000,
    seed: int = 0,
    process: str = "ddpm",
    steps: int = 500,
    prior: float | None = None,
    tau: float = 1.0,
    p_max: float = 0.99,
) -> tuple[dict, object]:
    """The data behind ``physdiff guide``: ``(JSON-ready result, samples (n, d))``.

    Samples ``n`` points of the named mixture with ``method`` (``cfg``, ``np``, ``dng``:
    :class:`~physdiff.guidance.TrackedDNG`, ``dng-exact``:
    :class:`~physdiff.guidance.DynamicNegativeGuidance` with the exact posterior) by DDPM
    ancestral steps on ``process`` (``steps`` steps), then measures the removal of class
    ``remove`` against ``n`` exact samples of the kept classes.
    """
    import numpy as np

    from . import guidance as G
    from .processes import get_process
    from .sampling import sample

    mix = named_mixture(name)
    cond = G.MixtureClasses(mix)
    proc = get_process(process)
    times = proc.time_grid(steps)
    rng = np.random.default_rng([seed, 0])
    r_sample, r_ref, r_floor, r_metric = rng.spawn(4)
    if method == "cfg":
        model = G.ClassifierFreeGuidance(cond, remove, scale)
    elif method == "np":
        model = G.NegativePrompt(cond, remove, scale)
    elif method == "dng-exact":
        model = G.DynamicNegativeGuidance(cond, remove, scale)
    else:
        p0 = float(cond.class_weights[remove]) if prior is None else prior
        p0 = min(max(p0, 1e-6), p_max)
        model = G.TrackedDNG(cond, remove, scale, prior=p0, tau=tau, p_max=p_max)
    if isinstance(model, G.TrackedDNG):
        res = model.sample(n, r_sample, process=proc, times=times)
    else:
        res = sample(model, n, r_sample, method="ddpm", process=proc, times=times)
    x = res.y
    kept = cond.kept_model(remove)
    reference = kept.sample(n, r_ref)
    m = G.guidance_metrics(
        x,
        classify=cond.classify,
        removed=remove,
        target=cond.class_weights,
        reference=reference,
        rng=r_metric,
    )
    floor, floor_se = G.sliced_wasserstein(kept.sample(n, r_floor), reference, r_metric)
    counts = np.bincount(cond.classify(x), minlength=cond.n_classes)
    out = {
        "mixture": name,
        "about": MIXTURES[name]["about"],
        "dim": int(mix.dim),
        "class_weights": cond.class_weights.tolist(),
        "target_shares": None if method == "cfg" else _kept_shares(cond.class_weights, remove),
        "method": method,
        "remove": int(remove),
        "scale": float(scale),
        "n": int(n),
        "seed": int(seed),
        "process": process,
        "steps": int(len(times) - 1),
        "sampler": "ddpm ancestral" + (" with the tracked posterior" if method == "dng" else ""),
        "class_counts": counts.tolist(),
        "class_shares": (counts / n).tolist(),
        "removed_share": m.removed_share,
        "removed_share_se": m.removed_share_se,
        "kl_kept": m.balance.kl,
        "kl_kept_plugin": _num(m.balance.kl_plugin),
        "kl_floor": _num(m.balance.floor),
        "missing_classes": list(m.balance.missing),
        "quality_w2": m.quality,
        "quality_w2_se": m.quality_se,
        "quality_w2_exact": floor,
        "quality_w2_exact_se": floor_se,
        "mean": np.mean(x, axis=0).tolist(),
    }
    if method == "dng":
        out["dng"] = {"prior": model.prior, "tau": model.tau, "p_max": model.p_max}
        out["final_posterior_mean"] = float(np.mean(model.posterior))
    return out, x


def _compute_guide(args) -> tuple[dict, object]:
    from .errors import PhysdiffError

    K = len(MIXTURES[args.mixture]["means"])
    if not 0 <= args.remove < K:
        raise _Usage(f"argument --remove: class index {args.remove} out of range [0, {K - 1}]")
    if not args.scale >= 0:
        raise _Usage(f"argument --scale: must be >= 0; got {args.scale:g}")
    for name, v, lo, hi in (("--n", args.n, 2, 10**7), ("--steps", args.steps, 1, 10**5)):
        if not lo <= v <= hi:
            raise _Usage(f"argument {name}: must be an integer in [{lo}, {hi}]; got {v}")
    if args.seed < 0:
        raise _Usage(f"argument --seed: must be an integer >= 0; got {args.seed}")
    if args.method != "dng":
        for opt, v, default in (("--prior", args.prior, None), ("--tau", args.tau, 1.0),
                                ("--p-max", args.p_max, 0.99)):  # fmt: skip
            if v != default:
                raise _Usage(f"argument {opt}: goes with --method dng")
    else:
        if not 0 < args.p_max < 1:
            raise _Usage(f"argument --p-max: must lie in (0, 1); got {args.p_max:g}")
        if args.prior is not None and not 0 < args.prior <= args.p_max:
            raise _Usage(f"argument --prior: must lie in (0, --p-max]; got {args.prior:g}")
        if not args.tau >= 0:
            raise _Usage(f"argument --tau: must be >= 0; got {args.tau:g}")
    try:
        return guide(
            args.mixture,
            args.method,
            args.remove,
            args.scale,
            n=args.n,
            seed=args.seed,
            process=args.process,
            steps=args.steps,
            prior=args.prior,
            tau=args.tau,
            p_max=args.p_max,
        )
    except PhysdiffError as exc:
        raise _Usage(str(exc).splitlines()[0]) from None


def run_guide(args) -> int:
    """Execute ``physdiff guide`` for parsed ``args``; returns the exit status."""

    def compute(args) -> dict:
        res, x = _compute_guide(args)
        if args.out is not None:
            _write_npy(args.out, x)
            res["out"] = args.out
        return res

    return run_command("guide", compute, _guide_table, args)


def _write_npy(path: str, x) -> None:
    import numpy as np

    write_output(path, lambda fh: np.save(fh, x, allow_pickle=False))


def _kept_shares(weights, removed: int) -> list[float]:
    """The class distribution a removal aims at: the weights without class ``removed``,
    renormalised."""
    w = [0.0 if k == removed else float(x) for k, x in enumerate(weights)]
    total = sum(w)
    return [x / total for x in w]


def _guide_table(res: dict) -> str:
    role = "guided toward" if res["method"] == "cfg" else "removed"
    lines = [
        f"{res['mixture']}: {res['about']}",
        f"{res['method']} at scale {res['scale']:g}, class {res['remove']} {role}; "
        f"{res['n']} samples, {res['sampler']} on {res['process']} ({res['steps']} steps), "
        f"seed {res['seed']}",
        "",
        f"{'class':>5} {'weight':>8} {'target':>8} {'share':>8}",
    ]
    target = res["target_shares"] or [None] * len(res["class_weights"])
    for k, (w, t, s) in enumerate(
        zip(res["class_weights"], target, res["class_shares"], strict=True)
    ):
        ts = f"{'-':>8}" if t is None else f"{t:>8.4f}"
        lines.append(f"{k:>5} {w:>8.4f} {ts} {s:>8.4f}" + ("  <-" if k == res["remove"] else ""))
    kl_pi = res["kl_kept_plugin"]
    lines += [
        "",
        f"share of class {res['remove']}: {res['removed_share']:.4f} +- "
        f"{res['removed_share_se']:.4f}",
        f"KL(target || generated) over the kept classes: {res['kl_kept']:.4g} (plug-in "
        + ("inf" if kl_pi is None else f"{kl_pi:.4g}")
        + ", noise floor "
        + ("n/a" if res["kl_floor"] is None else f"{res['kl_floor']:.2g}")
        + ")"
        + (f"; missing classes {res['missing_classes']}" if res["missing_classes"] else ""),
        f"sliced W2 to kept-class data: {res['quality_w2']:.4g} +- {res['quality_w2_se']:.2g} "
        f"(exact samples: {res['quality_w2_exact']:.4g} +- {res['quality_w2_exact_se']:.2g})",
    ]
    if res.get("out"):
        lines.append(f"samples written to {res['out']}")
    return "\n".join(lines)
