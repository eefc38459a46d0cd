"""``physdiff critical``: the critical point of symmetry breaking under every criterion
(:func:`physdiff.symmetry.critical_table`).

    physdiff critical --ensemble two-deltas --m 1 --process ddpm --json
    physdiff critical --top-eigenvalue 7.66
    physdiff critical --ensemble mixture --m 2 --variance 0.3 --process vp-linear
"""

from __future__ import annotations

from . import _args as A
from ._args import cell, choice, emit, option

NAME = "critical"
HELP = "critical noise level, time and DDPM step of symmetry breaking, per criterion"
FLAGS = {"spectrum": "--spectrum-file"}

DESCRIPTION = """\
The critical point of symmetry breaking (docs/theory.md section 2) under every criterion:
(a) log-density, (b) the raw SDE drift of --process, and Biroli's speciation. Each row gives
the critical noise-to-signal variance Delta, its time in --process, its OU time and its DDPM
step. Give exactly one data source: --ensemble (with --m, and --variance for a mixture),
--top-eigenvalue or --spectrum-file. A criterion that does not apply (no symmetry to break,
no SDE drift) is reported with its reason, not as an error."""
EPILOG = """\
Examples: physdiff critical --ensemble two-deltas --m 1 --process ddpm --json; physdiff
critical --top-eigenvalue 7.66 --process ou; physdiff critical --ensemble mixture --m 2
--variance 0.3 --process vp-linear. Criteria (a) and (b) take a top eigenvalue as the
posterior covariance at the centre, held constant (exact for two deltas); the mixture is
solved by numerical continuation."""


def register(subparsers) -> None:
    p = A.add_command(subparsers, NAME, HELP, DESCRIPTION, EPILOG)
    src = p.add_mutually_exclusive_group(required=True)
    option(
        src,
        "--ensemble",
        "NAME",
        "two-deltas (point masses at +-m, closed forms) or mixture (N(+-m, variance), 1-D, "
        "numerical continuation)",
        type=choice(("two-deltas", "mixture"), "ensemble"),
    )
    A.add_flag(src, "top_eigenvalue")
    A.add_flag(src, "spectrum_file")
    option(p, "--m", "M", "half-distance |m| of the two classes (1)")
    A.add_flag(p, "variance")
    A.add_flag(p, "process", default="ou")
    A.add_flag(p, "json")


def run(args) -> int:
    from ..symmetry import critical_table

    spectrum = None
    if args.spectrum_file is not None:
        spectrum = A.read_array(args.spectrum_file, "--spectrum-file")
    res = critical_table(
        ensemble=args.ensemble,
        m=args.m,
        variance=args.variance,
        top_eigenvalue=args.top_eigenvalue,
        spectrum=spectrum,
        process=args.process,
    )
    return emit(NAME, args, res, table)


def table(res: dict) -> str:
    src, proc = res["source"], res["process"]
    if src.get("ensemble") == "two-deltas":
        head = f"two deltas at +-{src['m']:g}"
    elif src.get("ensemble") == "mixture":
        head = f"mixture of N(+-{src['m']:g}, {src['variance']:g}) in 1-D"
    elif "top_eigenvalue" in src:
        head = f"top eigenvalue {src['top_eigenvalue']:g}"
    else:
        head = f"spectrum of {src['spectrum_size']} eigenvalues"
    lam = res["top_eigenvalue"]
    tcol = f"t in {proc}"
    w = max(12, len(tcol) + 1)
    cols = [("delta", 12), ("theta", 12), ("OU time", 12), (tcol, w), ("DDPM step", 11)]
    lines = [
        f"{head}: top data-covariance eigenvalue Lambda = "
        + ("inf" if lam is None else f"{lam:.6g}"),
        "",
        f"{'criterion':<12}" + "".join(" " + c.rjust(n - 1) for c, n in cols),
    ]
    notes = []
    for crit, row in res["criteria"].items():
        if row["delta"] is None:
            lines.append(f"{crit:<12}" + "".join(cell(None, n) for _, n in cols))
            notes.append(f"  {crit}: not defined: {row['reason']}")
            continue
        steps = row.get("ddpm_step")
        vals = [row["delta"], row["theta"], row["ou_time"], row["time"]]
        vals.append(None if steps is None else int(steps["nearest"]))
        lines.append(
            f"{crit:<12}" + "".join(cell(v, n) for v, (_, n) in zip(vals, cols, strict=True))
        )
        extra = f" for the {row['process']} drift" if row.get("process") else ""
        notes.append(f"  {crit}: {row['method']}{extra}; {row['source']}")
        if row.get("note"):
            notes.append(f"  {crit}: {row['note']}")
    notes.append(
        "  theta = 1/sqrt(1 + delta), the signal scale alpha of every variance-preserving "
        "process; DDPM step: nearest (the JSON has floor and ceil)"
    )
    return "\n".join(lines + ["", "criteria:"] + notes)
