"""The ``physdiff`` command.

    physdiff convert --delta 1 --to ddpm --json    # where Delta = 1 falls in DDPM (and OU)
    physdiff convert --t 0.5 --from vp-linear      # a time of one process in all the others
    physdiff convert --step 250                    # a DDPM step (= --t 250 --from ddpm)
    physdiff atlas --out gallery                   # every registered figure, PNG + PDF + index
    physdiff list-figures                          # the registered figures
    physdiff critical --ensemble two-deltas --m 1 --process ddpm --json
    physdiff critical --top-eigenvalue 7.66        # every criterion's critical point
    physdiff collapse --d 256 --n 20000 --variance 1 --process ou --json
    physdiff collapse --spectrum-file eig.npy --n 1e4 1e5 1e6 --process ddpm
    physdiff phase-diagram --d 100 --top-eigenvalue 5 --variance 1 --process ou --out DIR

Startup stays light: matplotlib, tqdm and the figure modules are imported inside the
subcommands that need them, never at import time of this module. Invalid input gives a
one-line error on stderr naming the argument, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from ._cli_args import UsageError as _UsageError
from ._cli_args import choice, integer
from ._cli_args import json_number as _num
from ._cli_args import number as _finite_float
from ._cli_args import process_name as _process_name

__all__ = ["main", "build_parser", "convert", "critical", "collapse", "phase_diagram_data"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block, no traceback), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _process_names() -> list[str]:
    from .processes import PRESETS

    return list(PRESETS)


_ENSEMBLES = ("two-deltas", "mixture")


def _ensemble_name(value: str) -> str:
    return choice(_ENSEMBLES, "ensemble")(value)


def _dpi(value: str) -> int:
    return integer(value, 10, 2400)


def _count(value: str) -> int:
    return integer(value, 2, 20000)


def _dim(value: str) -> int:
    return integer(value, 1, 10**7)


def _target_name(value: str) -> str:
    return "all" if value.strip().lower() == "all" else _process_name(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (cheap to build: no heavy imports)."""
    names = ", ".join(_process_names())
    p = _Parser(
        prog="physdiff",
        description="Statistical physics of generative diffusion models: conversions "
        "between noise schedules, critical points and the figure atlas.",
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"physdiff {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser(
        "convert",
        help="convert a noise-to-signal variance, a time or a DDPM step between processes",
        description="Convert one point of the noise schedule between processes. Give "
        "exactly one of --delta, --t with --from, or --step. Every process "
        "is compared through Delta = sigma^2/alpha^2 = 1/SNR.",
        epilog=f"Processes: {names}. Example: physdiff convert --delta 1 --to ddpm --json",
    )
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--delta",
        type=_finite_float,
        metavar="D",
        help="noise-to-signal variance Delta = sigma^2/alpha^2 (> 0)",
    )
    src.add_argument(
        "--t", type=_finite_float, metavar="T", help="a time of the process named by --from"
    )
    src.add_argument(
        "--step",
        type=_finite_float,
        metavar="K",
        help="an integer DDPM step (same as --t K --from ddpm)",
    )
    c.add_argument(
        "--from",
        dest="from_",
        type=_process_name,
        metavar="PROC",
        help=f"the process --t belongs to ({names})",
    )
    c.add_argument(
        "--to",
        nargs="+",
        type=_target_name,
        default=["all"],
        metavar="PROC",
        help="target process(es), or 'all' (default)",
    )
    c.add_argument("--json", action="store_true", help="print machine-readable JSON")
    c.set_defaults(func=_cmd_convert)

    a = sub.add_parser(
        "atlas",
        help="build the figure gallery (PNG + PDF per figure, index.html, index.md)",
        description="Render every registered figure (modules of physdiff.figures) into a "
        "folder, with index.html and index.md. A figure that fails is "
        "reported; the others are still built and the exit status is 1.",
    )
    a.add_argument("--out", metavar="DIR", help="output folder (created if missing)")
    a.add_argument("--only", nargs="+", metavar="NAME", help="build only these figures")
    a.add_argument(
        "--format",
        nargs="+",
        dest="formats",
        default=["png", "pdf"],
        choices=["png", "pdf", "svg"],
        metavar="FMT",
        help="file formats: png, pdf, svg (default: png pdf)",
    )
    a.add_argument("--dpi", type=_dpi, default=150, help="PNG resolution (default 150)")
    a.add_argument("--list", action="store_true", help="list the registered figures and exit")
    a.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    a.set_defaults(func=_cmd_atlas)

    lf = sub.add_parser("list-figures", help="list the registered figures")
    lf.add_argument("--json", action="store_true", help="print machine-readable JSON")
    lf.set_defaults(func=_cmd_list_figures)

    k = sub.add_parser(
        "critical",
        help="critical noise level, time and DDPM step of symmetry breaking, per criterion",
        description="The critical point of symmetry breaking (THEORY.md section 2) under "
        "every criterion: (a) log-density, (b) the raw SDE drift of --process, and Biroli's "
        "speciation. Each row gives the critical noise-to-signal variance Delta, its time "
        "in --process, its OU time and its DDPM step. Give exactly one data source: "
        "--ensemble (with --m, and --s2 for a mixture), --top-eigenvalue or --spectrum-file. "
        "A criterion that does not apply (no symmetry to break, no SDE drift) is reported "
        "with its reason, not as an error.",
        epilog="Examples: physdiff critical --ensemble two-deltas --m 1 --process ddpm --json; "
        "physdiff critical --top-eigenvalue 7.66 --process ou; physdiff critical "
        "--ensemble mixture --m 2 --s2 0.3 --process vp-linear. Criteria (a) and (b) take "
        "a top eigenvalue as the posterior covariance at the centre, held constant (exact "
        "for two deltas); the mixture is solved by numerical continuation.",
    )
    ksrc = k.add_mutually_exclusive_group(required=True)
    ksrc.add_argument(
        "--ensemble",
        type=_ensemble_name,
        metavar="NAME",
        help="two-deltas (point masses at +-m, closed forms) or mixture "
        "(N(+-m, s2), 1-D, numerical continuation)",
    )
    ksrc.add_argument(
        "--top-eigenvalue",
        type=_finite_float,
        metavar="L",
        help="top eigenvalue of the data covariance (>= 0)",
    )
    ksrc.add_argument(
        "--spectrum-file",
        metavar="F",
        help="a covariance spectrum: .npy array or text file of eigenvalues (all >= 0)",
    )
    k.add_argument(
        "--m", type=_finite_float, metavar="M", help="half-distance |m| of the two classes (1)"
    )
    k.add_argument(
        "--s2", type=_finite_float, metavar="S2", help="variance of each mixture component"
    )
    k.add_argument(
        "--process",
        type=_process_name,
        default="ou",
        metavar="PROC",
        help=f"process for criterion (b) and the time column ({names}; default ou)",
    )
    k.add_argument("--json", action="store_true", help="print machine-readable JSON")
    k.set_defaults(func=_cmd_critical)

    co = sub.add_parser(
        "collapse",
        help="memorisation collapse time t_C of n training points, for a covariance spectrum",
        description="The random-energy-model collapse of the exact empirical score (THEORY.md "
        "section 3; Biroli et al. 2024): with n = e^{alpha_n d} training points the posterior "
        "over them condenses where the Gaussian mutual information per dimension reaches "
        "alpha_n, i.e. where log n = sum_i 1/2 log(1 + lambda_i/delta) (normal directions, "
        "lambda = 0, drop out). For each --n (or --log-n, its natural log, for n beyond a "
        "float) it gives alpha_n, the collapse noise-to-signal "
        "variance delta_C, t_C in --process, its OU time and DDPM steps (floor, nearest, ceil) "
        "when in range, the small- and large-alpha_n asymptotics, and the inputs of the "
        "excess-entropy formula f = alpha_n - I(delta)/d. Give the spectrum as --d with "
        "--variance (isotropic), plus --top-eigenvalue (one spiked direction) or "
        "--intrinsic-dim (a linear manifold), or as --spectrum-file.",
        epilog="Examples: physdiff collapse --d 256 --n 20000 --variance 1 --process ou --json; "
        "physdiff collapse --d 784 --intrinsic-dim 12 --n 6e4 --process ddpm; physdiff "
        "collapse --spectrum-file eig.npy --n 1e4 1e5 --t 0.5 1.0. The criterion is the "
        "large-d limit of the excess entropy; at finite d the measured crossover is smooth "
        "(see docs/memorization.md).",
    )
    _add_spectrum_args(co)
    con = co.add_mutually_exclusive_group(required=True)
    con.add_argument(
        "--n",
        nargs="+",
        type=_finite_float,
        metavar="N",
        help="number(s) of training points (>= 2; 2e4 is accepted)",
    )
    con.add_argument(
        "--log-n",
        nargs="+",
        type=_finite_float,
        metavar="LOG_N",
        help="natural log of the number(s) of training points instead (>= log 2), for n "
        "beyond a float (e^709.78): e.g. --log-n 1000",
    )
    co.add_argument(
        "--process",
        type=_process_name,
        default="ou",
        metavar="PROC",
        help=f"process for the time column ({names}; default ou)",
    )
    co.add_argument(
        "--t",
        nargs="+",
        type=_finite_float,
        metavar="T",
        help="also evaluate the excess entropy f = alpha_n - I/d at these times of --process",
    )
    co.add_argument("--json", action="store_true", help="print machine-readable JSON")
    co.set_defaults(func=_cmd_collapse)

    ph = sub.add_parser(
        "phase-diagram",
        help="the (alpha_n, t) phase diagram of memorisation: figure (PNG + PDF) and data",
        description="The phase diagram in the (alpha_n, t) plane for a covariance spectrum "
        "(THEORY.md section 3; Biroli et al. 2024): the speciation line t_S (top eigenvalue "
        "Lambda, delta_S = Lambda - 1; absent when Lambda <= 1) and the collapse line "
        "t_C(alpha_n) split the Brownian, speciated and collapsed regimes. alpha_n = log(n)/m "
        "with m the number of positive eigenvalues (the intrinsic dimension; normal "
        "directions drop out). Writes NAME.png, NAME.pdf, NAME.npz and NAME.json into --out, "
        "each atomically; the data hold alphas, times, deltas, t_collapse, delta_collapse, "
        "t_speciation and regime (times x alphas; 0 collapsed, 1 speciated, 2 Brownian).",
        epilog="Example: physdiff phase-diagram --d 100 --top-eigenvalue 5 --variance 1 "
        "--process ou --out DIR. Times are in --process's own clock (DDPM: step index).",
    )
    _add_spectrum_args(ph)
    ph.add_argument(
        "--process",
        type=_process_name,
        default="ou",
        metavar="PROC",
        help=f"the time axis ({names}; default ou)",
    )
    ph.add_argument("--out", metavar="DIR", required=True, help="output folder (created)")
    ph.add_argument("--name", default="phase-diagram", help="file stem (default: phase-diagram)")
    ph.add_argument(
        "--alpha-min", type=_finite_float, metavar="A", help="smallest alpha_n (default 0.01)"
    )
    ph.add_argument(
        "--alpha-max",
        type=_finite_float,
        metavar="A",
        help="largest alpha_n (default 1; any value: the diagram works in log n = alpha_n m)",
    )
    ph.add_argument(
        "--n-alpha", type=_count, default=400, metavar="K", help="alpha_n grid size (400)"
    )
    ph.add_argument(
        "--linear-alpha", action="store_true", help="linear alpha_n grid and axis (default log)"
    )
    ph.add_argument(
        "--t-min", type=_finite_float, metavar="T", help="smallest time (default: t_min)"
    )
    ph.add_argument(
        "--t-max",
        type=_finite_float,
        metavar="T",
        help="largest time (default: where delta = 4 max(delta_C, delta_S), in range)",
    )
    ph.add_argument("--n-t", type=_count, default=400, metavar="K", help="time grid size (400)")
    ph.add_argument("--dpi", type=_dpi, default=200, help="PNG resolution (default 200)")
    ph.add_argument("--json", action="store_true", help="print a JSON summary of what was written")
    ph.set_defaults(func=_cmd_phase_diagram)

    from ._attractors_cli import add_parser as _add_attractors

    _add_attractors(sub)
    from ._information_cli import add_parser as _add_information

    _add_information(sub)
    return p


def _add_spectrum_args(parser) -> None:
    """The covariance-spectrum source shared by ``collapse`` and ``phase-diagram``."""
    g = parser.add_argument_group(
        "data spectrum",
        "either --d (with --variance, and optionally --top-eigenvalue or --intrinsic-dim) "
        "or --spectrum-file",
    )
    g.add_argument("--d", type=_dim, metavar="D", help="ambient dimension of the data")
    g.add_argument(
        "--variance",
        type=_finite_float,
        metavar="S2",
        help="variance per data direction (> 0; default 1)",
    )
    g.add_argument(
        "--top-eigenvalue",
        type=_finite_float,
        metavar="L",
        help="one direction with this variance instead (>= 0): the class direction of speciation",
    )
    g.add_argument(
        "--intrinsic-dim",
        type=_dim,
        metavar="M",
        help="data on an M-dimensional linear manifold: --variance on M directions, 0 on the "
        "other D - M",
    )
    g.add_argument(
        "--spectrum-file",
        metavar="F",
        help="a covariance spectrum: .npy array or text file of eigenvalues (all >= 0); its "
        "length is d",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physdiff`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except _UsageError as exc:
        print(f"physdiff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("physdiff: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `physdiff ... | head`: the reader left; stop quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a killed writer


# --------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------


def convert(
    *,
    delta: float | None = None,
    t: float | None = None,
    from_: str | None = None,
    step: float | None = None,
    to: Sequence[str] = ("all",),
) -> dict:
    """The data behind ``physdiff convert`` (JSON-ready).

    Exactly one source: ``delta``; ``t`` with ``from_``; or a DDPM ``step``. Raises
    :class:`~physdiff.errors.InputError` (naming the command-line argument) on bad input.
    Targets whose range does not reach the source's delta get ``time = None`` and a note.
    """
    from .errors import DomainError, InputError
    from .processes import DDPM, PRESETS

    n_src = sum(v is not None for v in (delta, t, step))
    if n_src != 1:
        raise InputError("give exactly one of --delta, --t (with --from) or --step")
    if t is None and from_ is not None:
        raise InputError("--from goes with --t (it names the process --t belongs to)")

    if delta is not None:
        d = float(delta)
        if not (math.isfinite(d) and d > 0):
            raise DomainError(f"--delta must lie in (0, inf); got {delta!r}")
        source = {"delta": d}
    elif step is not None:
        ddpm = PRESETS["ddpm"]
        assert isinstance(ddpm, DDPM)
        k = float(step)
        if not k.is_integer():
            raise InputError(
                f"--step must be an integer DDPM step; got {step!r} "
                f"(use --t {step!r} --from ddpm for an interpolated step)"
            )
        if not 0 <= k <= ddpm.n_steps - 1:
            raise DomainError(f"--step must lie in [0, {ddpm.n_steps - 1}]; got {int(k)}")
        d = float(ddpm.delta_of_step(int(k)))
        source = {"step": int(k), "from": "ddpm"}
    else:
        if from_ is None:
            raise InputError("--t needs --from PROC (the process the time belongs to)")
        proc = PRESETS.get(from_)
        if proc is None:
            raise InputError(f"--from: unknown process {from_!r}; choose from {', '.join(PRESETS)}")
        try:
            d = float(proc.delta(t))
        except DomainError:
            raise DomainError(
                f"--t must lie in [{proc.t_min:g}, {proc.t_max:g}] for --from {from_}; got {t!r}"
            ) from None
        source = {"t": float(t), "from": from_}

    names = list(PRESETS) if "all" in to else list(dict.fromkeys(to))
    for n in names:
        if n not in PRESETS:
            raise InputError(f"--to: unknown process {n!r}; choose from all, {', '.join(PRESETS)}")
    log_snr = 0.0 - math.log(d) if d > 0 else math.inf
    notes = []
    if d == 0:
        notes.append("delta = 0 (the data end): log-SNR is +inf, given as null")
    out: dict = {
        "source": source,
        "delta": d,
        "log_snr": _num(log_snr),
        "ou_time": 0.5 * math.log1p(d),
        "targets": {},
    }
    if notes:
        out["note"] = "; ".join(notes)
    for name in names:
        out["targets"][name] = _target(name, PRESETS[name], d)
    return out


def _target(name: str, proc, d: float) -> dict:
    from .errors import DomainError
    from .processes import DDPM

    entry: dict = {
        "process": name,
        "spec": repr(proc),
        "t_range": [proc.t_min, proc.t_max],
        "delta_range": [proc.delta_min, proc.delta_max],
    }
    try:
        # time_of_delta can land a rounding error outside [t_min, t_max] (VPCosine at
        # delta = 0 gives -2e-15); clip so that the schedule functions accept it
        t = min(max(float(proc.time_of_delta(d)), proc.t_min), proc.t_max)
    except DomainError:
        entry.update(
            time=None,
            delta=None,
            alpha=None,
            sigma=None,
            log_snr=None,
            note=(
                f"delta = {d:.6g} is outside the range "
                f"[{proc.delta_min:.6g}, {proc.delta_max:.6g}] that {name} reaches "
                f"for t in [{proc.t_min:g}, {proc.t_max:g}]"
            ),
        )
        if isinstance(proc, DDPM):
            entry["steps"] = None
        return entry
    ls = float(proc.log_snr(t)) + 0.0  # + 0.0: no "-0.0"
    entry.update(
        time=t,
        delta=float(proc.delta(t)),
        alpha=float(proc.alpha(t)),
        sigma=float(proc.sigma(t)),
        log_snr=_num(ls),
    )
    if not math.isfinite(ls):
        entry["note"] = "log-SNR is +inf at delta = 0 (given as null)"
    if isinstance(proc, DDPM):
        entry["ou_time"] = 0.5 * math.log1p(d)
        steps = {}
        for rounding in ("nearest", "floor", "ceil"):
            k = int(proc.step_of_delta(d, rounding))
            steps[rounding] = {
                "step": k,
                "delta": float(proc.deltas[k]),
                "ou_time": float(proc.ou_times[k]),
                "alpha_bar": float(proc.alpha_bars[k]),
            }
        entry["steps"] = steps
    return entry


def _cmd_convert(args) -> int:
    from .errors import InputError

    if args.t is not None and args.from_ is None:
        raise _UsageError("argument --t: needs --from PROC (the process the time belongs to)")
    if args.from_ is not None and args.t is None:
        raise _UsageError("argument --from: goes with --t (use --step K for a DDPM step)")
    try:
        res = convert(delta=args.delta, t=args.t, from_=args.from_, step=args.step, to=args.to)
    except InputError as exc:
        raise _UsageError(str(exc)) from None
    return _emit(res, args.json, _table)


def _fmt(x, width: int = 12) -> str:
    if x is None:
        return "-".rjust(width)
    if isinstance(x, int):
        return " " + str(x).rjust(width - 1)
    if abs(x) < 5e-13:  # round-off of a conversion round trip, e.g. log-SNR at delta = 1
        x = 0.0
    return " " + f"{x:.6g}".rjust(width - 1)


def _table(res: dict) -> str:
    src = res["source"]
    if "delta" in src:
        head = f"delta = {src['delta']:.6g}"
    elif "step" in src:
        head = f"DDPM step {src['step']}: delta = {res['delta']:.6g}"
    else:
        head = f"t = {src['t']:.6g} in {src['from']}: delta = {res['delta']:.6g}"
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
            + "".join(_fmt(e[k]) for k in ("time", "delta", "alpha", "sigma", "log_snr"))
        )
        if e.get("note"):
            notes.append(f"  {name}: {e['note']}")
        if e.get("steps"):
            parts = [f"{r} {s['step']} (delta {s['delta']:.6g})" for r, s in e["steps"].items()]
            notes.append(f"  {name} integer steps: " + ", ".join(parts))
    return "\n".join(lines + ([""] + notes if notes else []))


# --------------------------------------------------------------------------------------
# critical
# --------------------------------------------------------------------------------------


def critical(
    *,
    ensemble: str | None = None,
    m: float | None = None,
    s2: float | None = None,
    top_eigenvalue: float | None = None,
    spectrum=None,
    process: str = "ou",
) -> dict:
    """The data behind ``physdiff critical`` (JSON-ready).

    Exactly one source: ``ensemble`` (``'two-deltas'`` with ``m``; ``'mixture'`` with ``m``
    and ``s2``), a ``top_eigenvalue``, or a ``spectrum`` (array of eigenvalues). Every
    criterion of :data:`physdiff.symmetry.CRITERIA` gets an entry: the
    :meth:`~physdiff.symmetry.CriticalPoint.table` of its critical point plus ``time`` (in
    ``process``), ``theta = 1/sqrt(1 + delta)`` and ``method``; or, where it does not apply,
    ``delta = None`` with a ``reason``. Raises :class:`~physdiff.errors.InputError` naming
    the command-line argument on bad input.
    """
    from .errors import DomainError, InputError
    from .processes import PRESETS

    n_src = sum(v is not None for v in (ensemble, top_eigenvalue, spectrum))
    if n_src != 1:
        raise InputError("give exactly one of --ensemble, --top-eigenvalue or --spectrum-file")
    if process not in PRESETS:
        raise InputError(
            f"--process: unknown process {process!r}; choose from {', '.join(PRESETS)}"
        )
    if ensemble is None and (m is not None or s2 is not None):
        raise InputError(f"--{'m' if m is not None else 's2'}: goes with --ensemble")
    for name, v in (("--m", m), ("--s2", s2), ("--top-eigenvalue", top_eigenvalue)):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise DomainError(f"{name}: must lie in [0, inf); got {v!r}")

    if ensemble is not None:
        if ensemble not in _ENSEMBLES:
            raise InputError(
                f"--ensemble: unknown ensemble {ensemble!r}; choose from {', '.join(_ENSEMBLES)}"
            )
        m = 1.0 if m is None else float(m)
        if ensemble == "two-deltas":
            if s2 is not None:
                raise InputError("--s2: goes with --ensemble mixture (two deltas have s2 = 0)")
            data = {"ensemble": ensemble, "m": m, "eigenvalue": m * m}
        else:
            if s2 is None:
                raise InputError("--s2: required with --ensemble mixture (component variance)")
            data = {"ensemble": ensemble, "m": m, "s2": float(s2), "eigenvalue": m * m + s2}
    elif top_eigenvalue is not None:
        data = {"top_eigenvalue": float(top_eigenvalue), "eigenvalue": float(top_eigenvalue)}
    else:
        spec = _spectrum_values(spectrum)
        data = {"spectrum_size": int(spec.size), "eigenvalue": float(spec.max())}

    rows = {}
    for crit in ("log-density", "sde-drift", "speciation"):
        rows[crit] = _critical_row(crit, data, process)
    return {
        "input": {k: v for k, v in data.items() if k != "eigenvalue"},
        "process": process,
        "top_eigenvalue": data["eigenvalue"],
        "criteria": rows,
    }


def _critical_row(crit: str, data: dict, process: str) -> dict:
    from . import symmetry as S
    from .errors import DomainError, PhysdiffError

    proc = process if crit == "sde-drift" else None
    try:
        if data.get("ensemble") == "mixture":
            from .ensembles import GaussianMixture

            m, s2 = data["m"], data["s2"]
            if m == 0:
                raise S.NoSymmetryBreaking(
                    "a mixture with m = 0 has one class: no symmetry to break"
                )
            mix = GaussianMixture.isotropic([0.5, 0.5], [[-m], [m]], [s2, s2])
            cp = S.critical_point(mix, crit, proc)
            method = "closed form (data covariance)" if crit == "speciation" else "numeric"
        elif data.get("ensemble") == "two-deltas":
            cp = S.critical_two_deltas(data["m"], crit, proc)
            method = "closed form"
        else:
            cp = S.critical_from_eigenvalue(data["eigenvalue"], crit, proc)
            method = (
                "closed form"
                if crit == "speciation"
                else "closed form (top eigenvalue held constant)"
            )
    except PhysdiffError as exc:
        return {"criterion": crit, "delta": None, "time": None, "reason": str(exc)}
    row = cp.table()
    row["method"] = method
    row["theta"] = 1.0 / math.sqrt(1.0 + cp.delta)  # alpha of every VP process
    try:
        row["time"] = _num(cp.time(process))
    except DomainError:
        row["time"] = None
        row["note"] = f"delta = {cp.delta:.6g} is outside the range {process} reaches"
    if row.get("ddpm_step") is None:
        row.setdefault("note", f"delta = {cp.delta:.6g} is outside the DDPM range")
    return row


def _read_spectrum(path: str):
    import numpy as np

    try:
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.loadtxt(path, dtype=float, ndmin=1)
        return np.asarray(arr, dtype=float)
    except (OSError, ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _UsageError(f"argument --spectrum-file: cannot read {path!r}: {msg}") from None


def _spectrum_values(spectrum):
    """The eigenvalues read from ``--spectrum-file`` as a checked 1-D float64 array: one axis
    (a ``(1, D)`` or ``(D, 1)`` array is accepted), not empty, finite, and >= 0 up to the
    rounding of ``eigvalsh`` (:func:`physdiff._validate.covariance_spectrum`: entries within
    rounding of 0 become 0). Raises :class:`~physdiff.errors.InputError` naming the flag."""
    import numpy as np

    from ._validate import covariance_spectrum
    from .errors import InputError

    spec = np.asarray(spectrum, dtype=float)
    if spec.ndim > 1 and sum(k > 1 for k in spec.shape) > 1:
        raise InputError(
            f"--spectrum-file: expected a 1-D array of eigenvalues; got shape {spec.shape} "
            "(for a covariance matrix C, save np.linalg.eigvalsh(C))"
        )
    spec = spec.reshape(-1)
    if spec.size == 0:
        raise InputError("--spectrum-file: the spectrum is empty")
    if not np.all(np.isfinite(spec)):
        raise InputError("--spectrum-file: the spectrum must be finite (no NaN or inf)")
    return covariance_spectrum(spec, "--spectrum-file")


def _usage(exc: Exception) -> _UsageError:
    """A library error about a flag (its message starts with ``--``) as argparse words it."""
    msg = str(exc)
    return _UsageError(f"argument {msg}" if msg.startswith("--") else msg)


def _emit(res, as_json: bool, table) -> int:
    """Print ``res`` as strict JSON (``--json``) or as ``table(res)``; exit status 0."""
    print(json.dumps(res, indent=2, allow_nan=False) if as_json else table(res))
    return EXIT_OK


def _cmd_critical(args) -> int:
    from .errors import InputError

    spectrum = _read_spectrum(args.spectrum_file) if args.spectrum_file is not None else None
    try:
        res = critical(
            ensemble=args.ensemble,
            m=args.m,
            s2=args.s2,
            top_eigenvalue=args.top_eigenvalue,
            spectrum=spectrum,
            process=args.process,
        )
    except InputError as exc:
        raise _usage(exc) from None
    return _emit(res, args.json, _critical_table)


def _critical_table(res: dict) -> str:
    inp, proc = res["input"], res["process"]
    if inp.get("ensemble") == "two-deltas":
        head = f"two deltas at +-{inp['m']:g}"
    elif inp.get("ensemble") == "mixture":
        head = f"mixture of N(+-{inp['m']:g}, {inp['s2']:g}) in 1-D"
    elif "top_eigenvalue" in inp:
        head = f"top eigenvalue {inp['top_eigenvalue']:g}"
    else:
        head = f"spectrum of {inp['spectrum_size']} eigenvalues"
    tcol = f"t in {proc}"
    w = max(12, len(tcol) + 1)
    cols = [("delta", 12), ("theta", 12), ("OU time", 12), (tcol, w), ("DDPM step", 11)]
    lines = [
        f"{head}: top data-covariance eigenvalue Lambda = {res['top_eigenvalue']:.6g}",
        "",
        f"{'criterion':<12}" + "".join(" " + c.rjust(n - 1) for c, n in cols),
    ]
    notes = []
    for crit, row in res["criteria"].items():
        if row["delta"] is None:
            lines.append(f"{crit:<12}" + "".join(_fmt(None, n) for _, n in cols))
            notes.append(f"  {crit}: not defined: {row['reason']}")
            continue
        steps = row.get("ddpm_step")
        vals = [row["delta"], row["theta"], row["ou_time"], row["time"]]
        vals.append(None if steps is None else int(steps["nearest"]))
        lines.append(
            f"{crit:<12}" + "".join(_fmt(v, n) for v, (_, n) in zip(vals, cols, strict=True))
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


# --------------------------------------------------------------------------------------
# collapse and phase-diagram (memorisation, THEORY.md section 3)
# --------------------------------------------------------------------------------------


def _spectrum_input(
    *,
    d: int | None = None,
    variance: float | None = None,
    top_eigenvalue: float | None = None,
    intrinsic_dim: int | None = None,
    spectrum=None,
):
    """The covariance spectrum ``(D,)`` named by the command-line arguments, and the input
    as a JSON-ready dict. Raises :class:`~physdiff.errors.InputError` naming the argument."""
    import numpy as np

    from .errors import DomainError, InputError

    if spectrum is not None:
        for flag, v in (
            ("--d", d),
            ("--variance", variance),
            ("--top-eigenvalue", top_eigenvalue),
            ("--intrinsic-dim", intrinsic_dim),
        ):
            if v is not None:
                raise InputError(
                    f"{flag}: goes without --spectrum-file (the file is the whole spectrum, "
                    "its length is d)"
                )
        spec = _spectrum_values(spectrum)
        if not np.any(spec > 0):
            raise DomainError("--spectrum-file: no positive eigenvalue (the data are one point)")
        return spec, {"spectrum_size": int(spec.size)}

    if d is None:
        raise InputError("--d: required (the ambient dimension), or give --spectrum-file")
    if isinstance(d, bool) or not float(d).is_integer() or not 1 <= d <= 10**7:
        raise DomainError(f"--d: must be an integer in [1, 10^7]; got {d!r}")
    d = int(d)
    s2 = 1.0 if variance is None else float(variance)
    if not (math.isfinite(s2) and s2 > 0):
        raise DomainError(f"--variance: must lie in (0, inf); got {variance!r}")
    m = d if intrinsic_dim is None else intrinsic_dim
    if isinstance(m, bool) or not float(m).is_integer() or not 1 <= m <= d:
        raise DomainError(f"--intrinsic-dim: must be an integer in [1, d = {d}]; got {m!r}")
    m = int(m)
    if top_eigenvalue is not None and not (math.isfinite(top_eigenvalue) and top_eigenvalue >= 0):
        raise DomainError(f"--top-eigenvalue: must lie in [0, inf); got {top_eigenvalue!r}")
    spec = np.zeros(d)
    spec[:m] = s2
    inp: dict = {"d": d, "variance": s2}
    if intrinsic_dim is not None:
        inp["intrinsic_dim"] = m
    if top_eigenvalue is not None:
        spec[0] = float(top_eigenvalue)
        inp["top_eigenvalue"] = float(top_eigenvalue)
        if not np.any(spec > 0):
            raise DomainError(
                "--top-eigenvalue: 0 on the only data direction leaves no variance at all"
            )
    return spec, inp


def _spectrum_summary(spec) -> dict:
    import numpy as np

    pos = spec[spec > 0]
    return {
        "d": int(spec.size),
        "intrinsic_dim": int(pos.size),
        "trace": float(pos.sum()),
        "sum_of_squares": float(np.sum(pos * pos)),
        "top_eigenvalue": float(pos.max()),
        "smallest_positive": float(pos.min()),
        "geometric_mean_positive": float(np.exp(np.mean(np.log(pos)))),
        "isotropic": bool(pos.max() == pos.min()),
    }


def _check_process(process: str):
    from .errors import InputError
    from .processes import PRESETS

    if process not in PRESETS:
        raise InputError(
            f"--process: unknown process {process!r}; choose from {', '.join(PRESETS)}"
        )
    return PRESETS[process]


def _check_times(proc, name: str, t, flag: str):
    """``t`` as an array inside ``proc``'s range, or a DomainError naming ``flag``."""
    import numpy as np

    from .errors import DomainError

    arr = np.atleast_1d(np.asarray(t, dtype=float))
    bad = arr[(arr < proc.t_min) | (arr > proc.t_max) | ~np.isfinite(arr)]
    if bad.size:
        raise DomainError(
            f"{flag}: must lie in [{proc.t_min:g}, {proc.t_max:g}] for --process {name}; "
            f"got {bad[0]:g}"
        )
    return arr


def _time_entry(proc, delta: float) -> tuple[float | None, dict | None, str | None]:
    """The time of ``delta`` in ``proc`` (None outside its range), the DDPM steps (None
    outside DDPM's range) and a note."""
    from .errors import DomainError
    from .processes import DDPM, PRESETS

    note = None
    try:
        t = float(proc.time_of_delta(delta))
    except DomainError:
        t = None
        note = (
            f"delta_C = {delta:.6g} is outside the range [{proc.delta_min:.6g}, "
            f"{proc.delta_max:.6g}] that {proc.name} reaches"
        )
    ddpm = PRESETS["ddpm"]
    assert isinstance(ddpm, DDPM)
    if ddpm.delta_min <= delta <= ddpm.delta_max:
        steps = {r: int(ddpm.step_of_delta(delta, r)) for r in ("floor", "nearest", "ceil")}
    else:
        steps = None
    return t, steps, note


def _asymptotics(log_n, summary: dict) -> tuple:
    """The small- and large-alpha_n approximations of delta_C for any spectrum (they reduce
    to :func:`physdiff.memorization.collapse_delta_asymptotic` for an isotropic one):

    * small alpha_n (large delta): expand ``1/2 log(1 + x) = x/2 - x^2/4``:
      ``delta_C ~ S1/(2 log n) - S2/(2 S1)``, ``S1 = sum lambda``, ``S2 = sum lambda^2``;
    * large alpha_n (small delta): ``1/2 log(lambda/delta)`` per direction:
      ``delta_C ~ G exp(-2 log(n)/m)``, ``G`` the geometric mean of the m positive
      eigenvalues.
    """
    import numpy as np

    s1, s2 = summary["trace"], summary["sum_of_squares"]
    small = s1 / (2 * log_n) - s2 / (2 * s1)
    large = summary["geometric_mean_positive"] * np.exp(-2 * log_n / summary["intrinsic_dim"])
    return small, large


def collapse(
    *,
    n=None,
    log_n=None,
    d: int | None = None,
    variance: float | None = None,
    top_eigenvalue: float | None = None,
    intrinsic_dim: int | None = None,
    spectrum=None,
    process: str = "ou",
    t=None,
) -> dict:
    """The data behind ``physdiff collapse`` (JSON-ready).

    The spectrum is ``spectrum`` (an array of eigenvalues), or ``d`` directions of
    ``variance`` (default 1) of which one has ``top_eigenvalue`` and only the first
    ``intrinsic_dim`` are non-zero. Give ``n`` or its natural log ``log_n`` (for n beyond
    a float, ``e^709.78``: everything works in ``log n``; the row's ``n`` is then None where
    it does not fit a float). For each ``n``: ``alpha_n = log(n)/d`` (and ``/m``, m
    the number of positive eigenvalues), the collapse noise level ``delta_C`` solving
    ``log n = sum_i 1/2 log(1 + lambda_i/delta)`` (:func:`physdiff.memorization.
    collapse_delta`), its time in ``process`` (None outside the process's range), its OU
    time and DDPM steps, the asymptotics (:func:`_asymptotics`), for an isotropic spectrum
    the closed form ``s^2/(n^{2/m} - 1)`` (Biroli et al. 2024, Eq. 15), and at each time of
    ``t`` the large-d excess entropy ``f = alpha_n - I(delta)/d``. Raises
    :class:`~physdiff.errors.InputError` naming the command-line argument on bad input.
    """
    import numpy as np

    from . import memorization as M
    from .errors import DomainError, InputError

    proc = _check_process(process)
    spec, inp = _spectrum_input(
        d=d,
        variance=variance,
        top_eigenvalue=top_eigenvalue,
        intrinsic_dim=intrinsic_dim,
        spectrum=spectrum,
    )
    if (n is None) == (log_n is None):
        raise InputError("--n: give exactly one of --n and --log-n")
    if n is not None:
        ns = np.atleast_1d(np.asarray(n, dtype=float)).reshape(-1)
        if ns.size == 0:
            raise InputError("--n: give at least one number of training points")
        if not np.all(np.isfinite(ns)):
            raise InputError("--n: must be finite")
        if np.any(ns < 2):
            raise DomainError(f"--n: must be >= 2 (training points); got {ns.min():g}")
        log_ns = np.log(ns)
        n_rows = [int(v) if v.is_integer() and v < 2**53 else float(v) for v in ns]
    else:
        log_ns = np.atleast_1d(np.asarray(log_n, dtype=float)).reshape(-1)
        if log_ns.size == 0:
            raise InputError("--log-n: give at least one log number of training points")
        if not np.all(np.isfinite(log_ns)):
            raise InputError("--log-n: must be finite")
        if np.any(log_ns < math.log(2)):
            raise DomainError(
                f"--log-n: must be >= log 2 = {math.log(2):.6g} (n >= 2 training points); "
                f"got {log_ns.min():g}"
            )
        with np.errstate(over="ignore"):
            n_big = np.exp(log_ns)
        # n itself only where it fits a float (log n <= 709.78); log_n is always there
        n_rows = [float(v) if np.isfinite(v) else None for v in n_big]
    summ = _spectrum_summary(spec)
    dim, m = summ["d"], summ["intrinsic_dim"]
    ts = deltas_t = info_t = None
    if t is not None:
        ts = _check_times(proc, process, t, "--t")
        deltas_t = np.atleast_1d(np.asarray(proc.delta(ts), dtype=float))
        if np.any(deltas_t <= 0):
            k = int(np.argmax(deltas_t <= 0))
            raise DomainError(
                f"--t: delta(t) = 0 at t = {ts[k]:g} (the data end), where the excess "
                f"entropy is -inf; give t > {proc.t_min:g}"
            )
        info_t = np.atleast_1d(M.mutual_information_gaussian(deltas_t, spec[spec > 0]))
    log_n = log_ns
    # in log delta: delta_C underflows for large alpha_n (d = 1, n = 1e300: e^-1381)
    log_dc = np.atleast_1d(M.log_collapse_delta(log_n, spec))
    small, large = _asymptotics(log_n, summ)
    rows = []
    for i, nv in enumerate(n_rows):
        dl = math.exp(float(log_dc[i]))
        time, steps, note = _time_entry(proc, dl)
        row: dict = {
            "n": nv,
            "log_n": float(log_n[i]),
            "alpha_n": float(log_n[i] / dim),
            "alpha_n_intrinsic": float(log_n[i] / m),
            "delta": dl,
            "log_delta": float(log_dc[i]),
            "log_snr": -float(log_dc[i]) + 0.0,
            "ou_time": 0.5 * math.log1p(dl),
            "time": time,
            "ddpm_step": steps,
        }
        if summ["isotropic"]:
            iso = math.exp(M.log_collapse_delta_isotropic(log_n[i], m, summ["top_eigenvalue"]))
            row["isotropic_closed_form"] = {"delta": iso, "ou_time": 0.5 * math.log1p(iso)}
        asym = {}
        for key, val in (("small_alpha", small[i]), ("large_alpha", large[i])):
            val = float(val)
            # val/delta_C - 1 in logs (both may underflow); None where it is not finite
            rel = float(np.expm1(math.log(val) - log_dc[i])) if val > 0 else -1.0
            asym[key] = {
                "delta": val if val > 0 else None,
                "ou_time": 0.5 * math.log1p(val) if val > 0 else None,
                "rel_error": rel if math.isfinite(rel) else None,
            }
        row["asymptotic"] = asym
        if ts is not None:
            row["excess_entropy"] = [
                {
                    "t": float(tk),
                    "delta": float(dk),
                    "mutual_information": float(ik),
                    "f": float((log_n[i] - ik) / dim),
                    "f_intrinsic": float((log_n[i] - ik) / m),
                    "collapsed": bool(ik >= log_n[i]),
                }
                for tk, dk, ik in zip(ts, deltas_t, info_t, strict=True)
            ]
        notes = [note] if note else []
        if dl == 0.0:
            notes.append(f"delta_C = e^({float(log_dc[i]):.6g}) underflows a float (log_delta)")
        if steps is None:
            notes.append(f"delta_C = {dl:.6g} is outside the DDPM range")
        if notes:
            row["note"] = "; ".join(notes)
        rows.append(row)
    return {
        "input": inp,
        "process": process,
        "criterion": "large-d REM collapse (Biroli et al. 2024, Eqs. 14-15): the excess "
        "entropy f = alpha_n - I(x0; y)/d reaches 0, i.e. log n = I(delta_C)",
        "spectrum": summ,
        "excess_entropy_formula": {
            "f": "log(n)/d - I(delta)/d",
            "I": "sum_i 1/2 log(1 + lambda_i/delta)  (nats; lambda_i = 0 drop out)",
            "d": dim,
            "intrinsic_dim": m,
            "meaning": "d f = E[posterior entropy over training points] in the large-d "
            "limit; collapse where it reaches 0",
        },
        "asymptotic_formulas": {
            "small_alpha": "delta_C ~ S1/(2 log n) - S2/(2 S1), S1 = trace, S2 = sum of "
            "squares (isotropic: s^2/(2 alpha_n) - s^2/2)",
            "large_alpha": "delta_C ~ G exp(-2 log(n)/m), G the geometric mean of the m "
            "positive eigenvalues (isotropic: s^2 exp(-2 alpha_n))",
        },
        "results": rows,
    }


def _describe(inp: dict, summ: dict) -> str:
    if "spectrum_size" in inp:
        return (
            f"spectrum of {summ['d']} eigenvalues ({summ['intrinsic_dim']} positive, "
            f"top {summ['top_eigenvalue']:.6g}, trace {summ['trace']:.6g})"
        )
    parts = [f"d = {inp['d']}"]
    if "intrinsic_dim" in inp:
        parts.append(f"manifold of dimension m = {inp['intrinsic_dim']}")
    parts.append(f"variance {inp['variance']:g}")
    if "top_eigenvalue" in inp:
        parts.append(f"top eigenvalue {inp['top_eigenvalue']:g}")
    return ", ".join(parts)


def _collapse_table(res: dict) -> str:
    proc = res["process"]
    summ = res["spectrum"]
    tcol = f"t_C in {proc}"
    w = max(12, len(tcol) + 1)
    cols = [
        ("n", 12),
        ("alpha_n", 12),
        ("delta_C", 12),
        ("OU time", 12),
        (tcol, w),
        ("DDPM step", 11),
    ]
    lines = [
        f"{_describe(res['input'], summ)}: collapse where log n = sum_i 1/2 log(1 + "
        f"lambda_i/delta)",
        "",
        "".join(c.rjust(k) for c, k in cols),
    ]
    notes = []
    for r in res["results"]:
        steps = r["ddpm_step"]
        # n beyond a float (given as --log-n) is written e^LOG_N
        nlab = f"{r['n']:g}" if r["n"] is not None else f"e^{r['log_n']:.6g}"
        vals = [
            r["n"] if r["n"] is not None else nlab,
            r["alpha_n"],
            r["delta"],
            r["ou_time"],
            r["time"],
            None if steps is None else int(steps["nearest"]),
        ]
        lines.append(
            "".join(
                " " + v.rjust(k - 1) if isinstance(v, str) else _fmt(v, k)
                for v, (_, k) in zip(vals, cols, strict=True)
            )
        )
        a = r["asymptotic"]
        sm, lg = a["small_alpha"], a["large_alpha"]
        sm_txt, lg_txt = (
            "-"
            if e["delta"] is None
            else f"{e['delta']:.6g}"
            + ("" if e["rel_error"] is None else f" ({e['rel_error']:+.1%})")
            for e in (sm, lg)
        )
        notes.append(
            f"  n = {nlab}: asymptotic delta_C: small alpha {sm_txt}, large alpha {lg_txt}"
        )
        if steps is not None:
            notes.append(
                f"  n = {nlab}: DDPM steps floor / nearest / ceil: {steps['floor']} / "
                f"{steps['nearest']} / {steps['ceil']}"
            )
        for e in r.get("excess_entropy", []):
            notes.append(
                f"  n = {nlab}: at t = {e['t']:g} (delta {e['delta']:.6g}): I/d = "
                f"{e['mutual_information'] / summ['d']:.6g}, f = {e['f']:.6g}"
                + (" (collapsed)" if e["collapsed"] else "")
            )
        if r.get("note"):
            notes.append(f"  n = {nlab}: {r['note']}")
    notes.append(
        f"  alpha_n = log(n)/d with d = {summ['d']}; intrinsic dimension m = "
        f"{summ['intrinsic_dim']} (alpha_n_intrinsic = log(n)/m in the JSON); large-d "
        "criterion (Biroli et al. 2024), the finite-d crossover is smooth"
    )
    return "\n".join(lines + ["", "notes:"] + notes)


def _cmd_collapse(args) -> int:
    from .errors import InputError

    spectrum = _read_spectrum(args.spectrum_file) if args.spectrum_file is not None else None
    try:
        res = collapse(
            n=args.n,
            log_n=args.log_n,
            d=args.d,
            variance=args.variance,
            top_eigenvalue=args.top_eigenvalue,
            intrinsic_dim=args.intrinsic_dim,
            spectrum=spectrum,
            process=args.process,
            t=args.t,
        )
    except InputError as exc:
        raise _usage(exc) from None
    return _emit(res, args.json, _collapse_table)


def phase_diagram_data(
    *,
    d: int | None = None,
    variance: float | None = None,
    top_eigenvalue: float | None = None,
    intrinsic_dim: int | None = None,
    spectrum=None,
    process: str = "ou",
    alpha_min: float | None = None,
    alpha_max: float | None = None,
    n_alpha: int = 400,
    log_alpha: bool = True,
    t_min: float | None = None,
    t_max: float | None = None,
    n_t: int = 400,
):
    """The data behind ``physdiff phase-diagram``: ``(PhaseDiagram, dict)``.

    The spectrum arguments are those of :func:`collapse`. ``alpha_n = log(n)/m`` (m the
    number of positive eigenvalues) on ``n_alpha`` points from ``alpha_min`` (default
    0.01, at least ``log(2)/m``) to ``alpha_max`` (default 1; everything works in
    ``log n = alpha_n m``, so n need not fit a float), geometric with ``log_alpha``;
    times of ``process`` on ``n_t`` points from ``t_min`` (default the process's start)
    to ``t_max`` (default: where ``delta = 4 max(delta_C(alpha_min), delta_S)``, inside
    the range). The dict is the JSON written
    next to the figure. Raises :class:`~physdiff.errors.InputError` naming the argument.
    """
    import numpy as np

    from . import memorization as M
    from .errors import DomainError

    proc = _check_process(process)
    spec, inp = _spectrum_input(
        d=d,
        variance=variance,
        top_eigenvalue=top_eigenvalue,
        intrinsic_dim=intrinsic_dim,
        spectrum=spectrum,
    )
    summ = _spectrum_summary(spec)
    m = summ["intrinsic_dim"]
    lo = math.log(2) / m
    for flag, v in (("--alpha-min", alpha_min), ("--alpha-max", alpha_max)):
        if v is not None and not (math.isfinite(v) and lo <= v):
            raise DomainError(
                f"{flag}: must be finite and >= log(2)/m = {lo:.6g} for m = {m} "
                f"(n = e^(alpha_n m) >= 2); got {v!r}"
            )
    a_hi = 1.0 if alpha_max is None else float(alpha_max)
    a_lo = max(lo * (1 + 1e-9), min(0.01, a_hi / 100)) if alpha_min is None else float(alpha_min)
    if not a_lo < a_hi:
        raise DomainError(f"--alpha-min: must be < --alpha-max = {a_hi:g}; got {a_lo:g}")
    alphas = np.geomspace(a_lo, a_hi, n_alpha) if log_alpha else np.linspace(a_lo, a_hi, n_alpha)

    pos = spec[spec > 0]
    lam = float(pos.max())
    delta_s = lam - 1.0 if lam > 1 else None
    t0 = proc.t_min if t_min is None else float(_check_times(proc, process, t_min, "--t-min")[0])
    if t_max is None:
        dc_max = math.exp(M.log_collapse_delta(a_lo * m, pos))
        d_hi = 4.0 * max(dc_max, delta_s or 0.0)
        t1 = float(proc.time_of_delta(min(max(d_hi, proc.delta_min), proc.delta_max)))
        if t1 <= t0:
            t1 = proc.t_max
    else:
        t1 = float(_check_times(proc, process, t_max, "--t-max")[0])
    if not t0 < t1:
        raise DomainError(f"--t-min: must be < --t-max = {t1:g}; got {t0:g}")
    times = np.linspace(t0, t1, n_t)
    pdiag = M.phase_diagram(pos, alphas, times, proc)
    log_dcs = np.asarray(M.log_collapse_delta(alphas * m, pos), dtype=float)
    dcs = np.exp(log_dcs)
    deltas = np.asarray(proc.delta(times), dtype=float)
    clipped = (dcs < proc.delta_min) | (dcs > proc.delta_max)
    data = {
        "input": inp,
        "process": process,
        "spectrum": summ,
        "alpha_definition": f"alpha_n = log(n)/m, m = {m} positive eigenvalues (the "
        "intrinsic dimension; normal directions drop out)",
        "m": m,
        "criterion": {
            "collapse": "log n = sum_i 1/2 log(1 + lambda_i/delta_C) (Biroli et al. 2024, "
            "Eq. 15 and its spectrum sum rule)",
            "speciation": "delta_S = Lambda - 1, Lambda the top eigenvalue (Biroli et al. "
            "2024, Eq. 9); none when Lambda <= 1",
        },
        "labels": {str(k): v for k, v in enumerate(pdiag.LABELS)},
        "regime_axes": ["times", "alphas"],
        "t_speciation": pdiag.t_speciation,
        "delta_speciation": delta_s,
        "regimes_present": [
            pdiag.LABELS[k] for k in range(len(pdiag.LABELS)) if np.any(pdiag.regime == k)
        ],
        "alphas": alphas.tolist(),
        "log_n": (alphas * m).tolist(),
        "times": times.tolist(),
        "deltas": deltas.tolist(),
        "t_collapse": np.asarray(pdiag.t_collapse, dtype=float).tolist(),
        "delta_collapse": dcs.tolist(),
        "log_delta_collapse": log_dcs.tolist(),
        "t_collapse_clipped": clipped.tolist(),
        "regime": pdiag.regime.astype(int).tolist(),
        "eigenvalues": spec.tolist(),
    }
    return pdiag, data


def _cmd_phase_diagram(args) -> int:
    from .errors import InputError

    spectrum = _read_spectrum(args.spectrum_file) if args.spectrum_file is not None else None
    if not args.name or any(c in args.name for c in "/\\") or args.name.startswith("."):
        raise _UsageError(f"argument --name: must be a plain file stem; got {args.name!r}")
    try:
        pdiag, data = phase_diagram_data(
            d=args.d,
            variance=args.variance,
            top_eigenvalue=args.top_eigenvalue,
            intrinsic_dim=args.intrinsic_dim,
            spectrum=spectrum,
            process=args.process,
            alpha_min=args.alpha_min,
            alpha_max=args.alpha_max,
            n_alpha=args.n_alpha,
            log_alpha=not args.linear_alpha,
            t_min=args.t_min,
            t_max=args.t_max,
            n_t=args.n_t,
        )
    except InputError as exc:
        raise _usage(exc) from None
    try:
        files = _write_phase_diagram(args.out, args.name, pdiag, data, args.dpi)
    except OSError as exc:
        print(
            f"physdiff phase-diagram: error: cannot write to {args.out!r}: {exc}", file=sys.stderr
        )
        return EXIT_FAIL
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
    }
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False))
    else:
        ts = data["t_speciation"]
        print(
            f"physdiff phase-diagram: {_describe(data['input'], data['spectrum'])}, "
            f"{data['process']} time; t_S = "
            + (
                "none (top eigenvalue <= 1: no speciated regime, Brownian above t_C)"
                if ts is None
                else f"{ts:.6g}"
            )
            + ", t_C from "
            f"{max(tc):.6g} (alpha_n = {data['alphas'][0]:.3g}) to {min(tc):.6g} "
            f"(alpha_n = {data['alphas'][-1]:.3g}); wrote " + ", ".join(files.values())
        )
    return EXIT_OK


def _write_phase_diagram(out, name: str, pdiag, data: dict, dpi: int) -> dict:
    """Figure (PNG, PDF), ``.npz`` and ``.json``, each written atomically."""
    from pathlib import Path

    import numpy as np

    from . import plot
    from .atlas import atomic_write
    from .figures.memorization import phase_diagram_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    with plot.style():
        summ = data["spectrum"]
        fig = phase_diagram_figure(
            pdiag,
            title=_describe(data["input"], summ),
            dim_symbol="m" if summ["intrinsic_dim"] < summ["d"] else "d",
        )
        for fmt in ("png", "pdf"):
            path = out / f"{name}.{fmt}"
            meta = {"CreationDate": None, "ModDate": None} if fmt == "pdf" else {}
            atomic_write(
                path,
                lambda fh, fmt=fmt, meta=meta: fig.savefig(fh, format=fmt, dpi=dpi, metadata=meta),
            )
            files[fmt] = str(path)
        fig.clear()
    arrays = {
        "alphas": np.asarray(data["alphas"]),
        "log_n": np.asarray(data["log_n"]),
        "times": np.asarray(data["times"]),
        "deltas": np.asarray(data["deltas"]),
        "t_collapse": np.asarray(data["t_collapse"]),
        "delta_collapse": np.asarray(data["delta_collapse"]),
        "t_speciation": np.asarray(
            np.nan if data["t_speciation"] is None else data["t_speciation"]
        ),
        "regime": pdiag.regime.astype(np.int8),
        "spectrum": np.asarray(data["eigenvalues"]),
    }
    path = out / f"{name}.npz"
    atomic_write(path, lambda fh: np.savez(fh, **arrays))
    files["npz"] = str(path)
    path = out / f"{name}.json"
    atomic_write(path, lambda fh: fh.write(json.dumps(data, allow_nan=False).encode()))
    files["json"] = str(path)
    return files


# --------------------------------------------------------------------------------------
# atlas and list-figures
# --------------------------------------------------------------------------------------


def _registry_with_errors():
    from .figures import discover, registry

    return registry, discover()


def _cmd_list_figures(args) -> int:
    registry, errors = _registry_with_errors()
    if getattr(args, "json", False):
        print(
            json.dumps(
                [
                    {"name": s.name, "title": s.title, "module": s.module, "caption": s.caption}
                    for s in registry
                ],
                indent=2,
            )
        )
    else:
        width = max((len(s.name) for s in registry), default=4)
        for s in registry:
            print(f"{s.name:<{width}}  {s.title}  [{s.module}]")
    for mod, exc in errors.items():
        print(
            f"physdiff: could not import figure module {mod}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
    return EXIT_FAIL if errors else EXIT_OK


def _cmd_atlas(args) -> int:
    if args.list:
        return _cmd_list_figures(args)
    if not args.out:
        raise _UsageError("argument --out: required (the folder to write the figures into)")
    from .atlas import build_atlas
    from .errors import InputError

    try:
        res = build_atlas(
            args.out,
            only=args.only,
            formats=args.formats,
            dpi=args.dpi,
            progress=False if args.no_progress else None,
        )
    except InputError as exc:
        msg = str(exc)
        if msg.startswith("unknown figure"):
            msg = f"argument --only: {msg}"
        raise _UsageError(msg) from None
    except OSError as exc:
        print(f"physdiff atlas: error: cannot write to {args.out!r}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    n_ok = sum(f.ok for f in res.figures)
    total = sum(f.seconds for f in res.figures)
    print(
        f"physdiff atlas: {n_ok}/{len(res.figures)} figure(s) written to {res.out} "
        f"in {total:.1f} s; index: {res.index_files[0]}"
    )
    for f in res.failed:
        print(f"--- {f.name} ({f.module}) failed ---\n{f.traceback}", file=sys.stderr)
    if not res.ok:
        print(
            f"physdiff atlas: {len(res.failed)} figure(s) and {len(res.import_errors)} "
            f"module(s) failed: "
            + ", ".join([f.name for f in res.failed] + list(res.import_errors)),
            file=sys.stderr,
        )
        return EXIT_FAIL
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
