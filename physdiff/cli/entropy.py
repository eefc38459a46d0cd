"""``physdiff entropy``: class-decision entropy and entropy-rate profiles of a 1-D mixture,
every peak (:func:`physdiff.entropy_profile.entropy_profile`).

    physdiff entropy --means=-8,-4,6,8 --process ddpm --json
    physdiff entropy --means=-8,-4,6,8 --stds 0 --partition pairwise:2,3 --out-file profile.json
    physdiff entropy --means=-2,0,2 --weights 0.2,0.3,0.5 --partition coarse:0/1,2
"""

from __future__ import annotations

from . import _args as A
from ._args import emit, floats, integer, option

NAME = "entropy"
HELP = "class-decision entropy and entropy-rate profiles of a 1-D mixture, every peak"


def register(subparsers) -> None:
    p = A.add_command(
        subparsers,
        NAME,
        HELP,
        "The conditional entropy H(G | y) of a decision between the classes (components) "
        "of a 1-D Gaussian mixture, y = x0 + sqrt(delta) z, and its rate, by Gauss-Hermite "
        "quadrature at --levels noise levels spaced geometrically in delta; every local "
        "maximum of the rate in the time of --process, dH/dt, and of the schedule-free rate "
        "dH/d log delta, each reported in delta, in the time of --process and, for ddpm, as "
        "a step (docs/theory.md section 6; Handke et al. 2025). A decision between a subset "
        "of the classes is conditional on the class lying in it. --out-file FILE writes the "
        "full profile as JSON.",
        "Decisions: all (the K-way decision, default), pairwise:a,b, one-vs-rest:k, "
        "coarse:0,1/2,3 (groups separated by '/'). Classes are numbered by --means, from 0. "
        f"Processes: {', '.join(A.process_names())}. Write --means=-8,-4,6,8 (with '=') "
        "when the first mean is negative. Example: physdiff entropy --means=-8,-4,6,8 "
        "--process ddpm --json.",
    )
    option(p, "--means", "M1,M2,...", "the means (K >= 2)", type=floats, required=True)
    option(
        p,
        "--stds",
        "S[,S2,...]",
        "standard deviations: one for all or one per component, >= 0 (0: a point mass; default 1)",
        type=floats,
        default=[1.0],
    )
    option(
        p,
        "--weights",
        "W1,W2,...",
        "component weights, > 0, renormalised to sum to one (default equal)",
        type=floats,
    )
    A.add_flag(p, "process", default="ddpm")
    option(
        p,
        "--partition",
        "SPEC",
        "the decision: all, pairwise:a,b, one-vs-rest:k or coarse:0,1/2,3 (all)",
        type=None,
        default="all",
    )
    option(p, "--levels", "L", "noise levels (1000)", type=integer, default=1000)
    option(
        p,
        "--delta-min",
        "D",
        "smallest noise level (default: the process's smallest, at least 1e-4)",
    )
    option(p, "--delta-max", "D", "largest noise level (default: the process's largest)")
    option(p, "--order", "N", "Gauss-Hermite order (200)", type=integer, default=200)
    option(
        p,
        "--rel-height",
        "R",
        "report maxima at least R times the rate's range above its minimum (1e-6; 0: all, "
        "rounding noise included)",
        default=1e-6,
    )
    A.add_flag(p, "out_file")
    A.add_flag(p, "json")


def run(args) -> int:
    from ..entropy_profile import entropy_profile
    from ..examples import mixture_1d
    from ..information import parse_partition

    model = mixture_1d(args.means, args.stds, args.weights)
    part = parse_partition(args.partition, model.n_components)
    prof = entropy_profile(
        model,
        args.process,
        part,
        **A.pick(args, "levels", "delta_min", "delta_max", "order", "rel_height"),
    )
    K = model.n_components
    w = [1.0 / K] * K if args.weights is None else [v / sum(args.weights) for v in args.weights]
    head = {
        "mixture": {
            "means": list(args.means),
            "stds": list(args.stds) * K if len(args.stds) == 1 else list(args.stds),
            "weights": w,
        },
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
        "delta_range": [prof.profile["delta"][0], prof.profile["delta"][-1]],
        "rel_height": float(args.rel_height),
    }
    summary = prof.to_dict()
    res = {**head, **summary}
    if args.out_file is not None:
        data = {**head, "summary": summary, "profile": prof.profile}
        A.write_json(args.out_file, data, "--out-file")
        res["out"] = args.out_file
    return emit(NAME, args, res, table)


def table(res: dict) -> str:
    mix, part = res["mixture"], res["partition"]
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
