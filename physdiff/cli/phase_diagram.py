"""``physdiff phase-diagram``: the (alpha_n, t) phase diagram of memorisation, as a figure
(PNG + PDF) and data (``.npz``, ``.json``) (:func:`physdiff.memorization.phase_diagram_data`).

    physdiff phase-diagram --d 100 --top-eigenvalue 5 --variance 1 --process ou --out DIR
"""

from __future__ import annotations

from ._args import UsageError, add_json, add_process, add_spectrum, bounded, emit, number
from .collapse import describe, spectrum_args

NAME = "phase-diagram"
HELP = "the (alpha_n, t) phase diagram of memorisation: figure (PNG + PDF) and data"
FLAGS = {"spectrum": "--spectrum-file", "log_alpha": "--linear-alpha"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        NAME,
        help=HELP,
        description="The phase diagram in the (alpha_n, t) plane for a covariance spectrum "
        "(docs/theory.md section 3; Biroli et al. 2024): the speciation line t_S (top "
        "eigenvalue Lambda, delta_S = Lambda - 1; absent when Lambda <= 1) and the collapse "
        "line t_C(alpha_n) split the Brownian, speciated and collapsed regimes. alpha_n = "
        "log(n)/m with m the number of positive eigenvalues (the intrinsic dimension; "
        "normal directions drop out). Writes NAME.png, NAME.pdf, NAME.npz and NAME.json "
        "into --out, each atomically; the data hold alphas, times, deltas, t_collapse, "
        "delta_collapse, t_speciation and regime (times x alphas; 0 collapsed, 1 "
        "speciated, 2 Brownian).",
        epilog="Example: physdiff phase-diagram --d 100 --top-eigenvalue 5 --variance 1 "
        "--process ou --out DIR. Times are in --process's own clock (DDPM: step index).",
    )
    add_spectrum(p)
    add_process(p, "ou", "the time axis")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (created)")
    p.add_argument("--name", default="phase-diagram", help="file stem (default: phase-diagram)")
    p.add_argument("--alpha-min", type=number, metavar="A", help="smallest alpha_n (default 0.01)")
    p.add_argument(
        "--alpha-max",
        type=number,
        metavar="A",
        help="largest alpha_n (default 1; any value: the diagram works in log n = alpha_n m)",
    )
    count = bounded(2, 20000)
    p.add_argument(
        "--n-alpha", type=count, default=400, metavar="K", help="alpha_n grid size (400)"
    )
    p.add_argument(
        "--linear-alpha", action="store_true", help="linear alpha_n grid and axis (default log)"
    )
    p.add_argument("--t-min", type=number, metavar="T", help="smallest time (default: t_min)")
    p.add_argument(
        "--t-max",
        type=number,
        metavar="T",
        help="largest time (default: where delta = 4 max(delta_C, delta_S), in range)",
    )
    p.add_argument("--n-t", type=count, default=400, metavar="K", help="time grid size (400)")
    p.add_argument(
        "--dpi", type=bounded(10, 2400), default=200, help="PNG resolution (default 200)"
    )
    add_json(p, "print a JSON summary of what was written (the physdiff envelope)")


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
