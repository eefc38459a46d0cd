"""``physdiff phase-diagram``: the (alpha_n, t) phase diagram of memorisation, as a figure
(PNG + PDF) and data (``.npz``, ``.json``) (:func:`physdiff.memorization.phase_diagram_data`).

    physdiff phase-diagram --d 100 --top-eigenvalue 5 --variance 1 --process ou --out DIR
"""

from __future__ import annotations

from . import _args as A
from ._args import UsageError, bounded, emit, option
from .collapse import describe, spectrum_args

NAME = "phase-diagram"
HELP = "the (alpha_n, t) phase diagram of memorisation: figure (PNG + PDF) and data"
FLAGS = {"spectrum": "--spectrum-file", "log_alpha": "--linear-alpha"}

DESCRIPTION = """\
The phase diagram in the (alpha_n, t) plane for a covariance spectrum (docs/theory.md
section 3; Biroli et al. 2024): the speciation line t_S (top eigenvalue Lambda, delta_S =
Lambda - 1; absent when Lambda <= 1) and the collapse line t_C(alpha_n) split the Brownian,
speciated and collapsed regimes. alpha_n = log(n)/m with m the number of positive
eigenvalues (the intrinsic dimension; normal directions drop out). Writes NAME.png,
NAME.pdf, NAME.npz and NAME.json into --out, each atomically; the data hold alphas, times,
deltas, t_collapse, delta_collapse, t_speciation and regime (times x alphas; 0 collapsed, 1
speciated, 2 Brownian). With --json the result printed is a summary of what was written."""
EPILOG = """\
Example: physdiff phase-diagram --d 100 --top-eigenvalue 5 --variance 1 --process ou --out
DIR. Times are in --process's own clock (DDPM: step index)."""


def register(subparsers) -> None:
    p = A.add_command(subparsers, NAME, HELP, DESCRIPTION, EPILOG)
    A.add_spectrum(p)
    A.add_flag(p, "process", default="ou")
    A.add_flag(p, "out", required=True)
    p.add_argument("--name", default="phase-diagram", help="file stem (default: phase-diagram)")
    _axis(
        p,
        "alpha",
        "A",
        "alpha_n",
        "smallest alpha_n (default 0.01)",
        "largest alpha_n (default 1; any value: the diagram works in log n = alpha_n m)",
    )
    p.add_argument(
        "--linear-alpha", action="store_true", help="linear alpha_n grid and axis (default log)"
    )
    _axis(
        p,
        "t",
        "T",
        "time",
        "smallest time (default: t_min)",
        "largest time (default: where delta = 4 max(delta_C, delta_S), in range)",
    )
    A.add_flag(p, "dpi", default=200)
    A.add_flag(p, "json")


def _axis(p, name: str, sym: str, what: str, smallest: str, largest: str) -> None:
    """One axis of the grid: ``--NAME-min``, ``--NAME-max`` and ``--n-NAME`` (its size)."""
    option(p, f"--{name}-min", sym, smallest)
    option(p, f"--{name}-max", sym, largest)
    option(p, f"--n-{name}", "K", f"{what} grid size (400)", type=bounded(2, 20000), default=400)


def run(args) -> int:
    from ..memorization import phase_diagram_data

    if not args.name or any(c in args.name for c in "/\\") or args.name.startswith("."):
        raise UsageError(f"argument --name: must be a plain file stem; got {args.name!r}")
    res = phase_diagram_data(
        process=args.process,
        alpha_min=args.alpha_min,
        alpha_max=args.alpha_max,
        n_alpha=args.n_alpha,
        log_alpha=not args.linear_alpha,
        t_min=args.t_min,
        t_max=args.t_max,
        n_t=args.n_t,
        **spectrum_args(args),
    )
    data = res.to_dict()
    try:
        files = _write(args.out, args.name, res, data, args.dpi)
    except OSError as exc:  # exit status 1 (physdiff.cli.main): the input was fine
        raise OSError(f"cannot write to {args.out!r}: {exc}") from None
    tc = data["t_collapse"]
    summary = {
        "files": files,
        "process": data["process"],
        "grid": [len(data["times"]), len(data["alphas"])],
        "alpha_range": [data["alphas"][0], data["alphas"][-1]],
        "time_range": [data["times"][0], data["times"][-1]],
        "t_speciation": data["t_speciation"],
        "regimes_present": data["regimes_present"],
        "t_collapse_range": [min(tc), max(tc)],
        "m": data["m"],
        "description": describe(data["source"], data["spectrum"]),
    }
    return emit(NAME, args, summary, table)


def table(s: dict) -> str:
    ts, tc = s["t_speciation"], s["t_collapse_range"]
    return (
        f"physdiff phase-diagram: {s['description']}, {s['process']} time; t_S = "
        + (
            "none (top eigenvalue <= 1: no speciated regime, Brownian above t_C)"
            if ts is None
            else f"{ts:.6g}"
        )
        + f", t_C from {tc[1]:.6g} (alpha_n = {s['alpha_range'][0]:.3g}) to {tc[0]:.6g} "
        f"(alpha_n = {s['alpha_range'][1]:.3g}); wrote " + ", ".join(s["files"].values())
    )


def _write(out, name: str, res, data: dict, dpi: int) -> dict:
    """Figure (PNG, PDF), ``.npz`` and ``.json``, each written atomically, the set as one
    run's (:func:`physdiff.atomic.output_folder`: one writer per folder at a time)."""
    import numpy as np

    from .. import plot
    from ..atomic import atomic_write, output_folder
    from ..figures.memorization import phase_diagram_figure
    from ._args import dumps, json_safe

    files = {}
    with output_folder(out, name="--out") as folder, plot.style():
        summ = data["spectrum"]
        fig = phase_diagram_figure(
            res.diagram,
            title=describe(data["source"], summ),
            dim_symbol="m" if summ["intrinsic_dim"] < summ["d"] else "d",
        )
        for fmt in ("png", "pdf"):
            files[fmt] = str(plot.save_figure(fig, folder / f"{name}.{fmt}", fmt, dpi))
        fig.clear()
        path = folder / f"{name}.npz"
        atomic_write(path, lambda fh: np.savez(fh, **res.arrays()))
        files["npz"] = str(path)
        path = folder / f"{name}.json"
        atomic_write(path, lambda fh: fh.write(dumps(json_safe(data), indent=None).encode()))
        files["json"] = str(path)
    return files
