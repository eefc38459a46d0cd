"""``physdiff convert``: a noise level, a time or a DDPM step in every process
(:func:`physdiff.conversion.convert`).

    physdiff convert --delta 1 --to ddpm --json
    physdiff convert --t 0.5 --from vp-linear
    physdiff convert --step 250
"""

from __future__ import annotations

from . import _args as A
from ._args import UsageError, cell, emit, option, process_name

NAME = "convert"
HELP = "convert a noise-to-signal variance, a time or a DDPM step between processes"


def _target(value: str) -> str:
    return "all" if value.strip().lower() == "all" else process_name(value)


def register(subparsers) -> None:
    names = ", ".join(A.process_names())
    p = A.add_command(
        subparsers,
        NAME,
        HELP,
        "Convert one point of the noise schedule between processes. Give exactly one of "
        "--delta, --t with --from, or --step. Every process is compared through Delta = "
        "sigma^2/alpha^2 = 1/SNR.",
        f"Processes: {names}. Example: physdiff convert --delta 1 --to ddpm --json",
    )
    src = p.add_mutually_exclusive_group(required=True)
    option(src, "--delta", "D", "noise-to-signal variance Delta = sigma^2/alpha^2 (> 0)")
    A.add_flag(src, "time")
    option(src, "--step", "K", "an integer DDPM step (same as --t K --from ddpm)")
    belongs = f"the process --t belongs to ({names})"
    option(p, "--from", "PROC", belongs, type=process_name, dest="from_")
    option(
        p,
        "--to",
        "PROC",
        "target process(es), or 'all' (default)",
        type=_target,
        nargs="+",
        default=["all"],
    )
    A.add_flag(p, "json")


def run(args) -> int:
    from ..conversion import convert

    A.single(args, "time")
    if args.t is not None and args.from_ is None:
        raise UsageError("argument --t: needs --from PROC (the process the time belongs to)")
    if args.from_ is not None and args.t is None:
        raise UsageError("argument --from: goes with --t (use --step K for a DDPM step)")
    res = convert(delta=args.delta, t=args.t, from_=args.from_, step=args.step, to=args.to)
    return emit(NAME, args, res, table)


def table(res: dict) -> str:
    src = res["source"]
    if "delta" in src:
        head = f"delta = {src['delta']:.6g}"
    else:  # a DDPM step, or a time of the process --from
        at = f"DDPM step {src['step']}" if "step" in src else f"t = {src['t']:.6g} in {src['from']}"
        head = f"{at}: delta = {res['delta']:.6g}"
    ls = res["log_snr"]
    lines = [
        f"{head}   log-SNR = {'+inf' if ls is None else f'{ls + 0.0:.6g}'}   "
        f"OU time = {res['ou_time']:.6g}",
        "",
    ]
    cols = ["process", "time", "delta", "alpha", "sigma", "log-SNR"]
    lines.append(f"{cols[0]:<10}" + "".join(" " + c.rjust(11) for c in cols[1:]))
    notes = []
    for name, e in res["targets"].items():
        lines.append(
            f"{name:<10}"
            + "".join(cell(e[k]) for k in ("time", "delta", "alpha", "sigma", "log_snr"))
        )
        if e.get("note"):
            notes.append(f"  {name}: {e['note']}")
        if e.get("steps"):
            parts = [f"{r} {s['step']} (delta {s['delta']:.6g})" for r, s in e["steps"].items()]
            notes.append(f"  {name} integer steps: " + ", ".join(parts))
    return "\n".join(lines + ([""] + notes if notes else []))
