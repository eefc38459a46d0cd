"""The ``physdiff`` command.

    physdiff convert --delta 1 --to ddpm --json    # where Delta = 1 falls in DDPM (and OU)
    physdiff convert --t 0.5 --from vp-linear      # a time of one process in all the others
    physdiff convert --step 250                    # a DDPM step (= --t 250 --from ddpm)
    physdiff atlas --out gallery                   # every registered figure, PNG + PDF + index
    physdiff list-figures                          # the registered figures
    physdiff critical --ensemble two-deltas --m 1 --process ddpm --json
    physdiff critical --top-eigenvalue 7.66        # every criterion's critical point

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

__all__ = ["main", "build_parser", "convert", "critical"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block, no traceback), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _process_names() -> list[str]:
    from .processes import PRESETS

    return list(PRESETS)


def _process_name(value: str) -> str:
    names = _process_names()
    v = value.strip().lower()
    if v not in names:
        raise argparse.ArgumentTypeError(
            f"unknown process {value!r}; choose from {', '.join(names)}"
        )
    return v


def _target_name(value: str) -> str:
    return "all" if value.strip().lower() == "all" else _process_name(value)


def _finite_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be finite; got {value!r}")
    return x


_ENSEMBLES = ("two-deltas", "mixture")


def _ensemble_name(value: str) -> str:
    v = value.strip().lower()
    if v not in _ENSEMBLES:
        raise argparse.ArgumentTypeError(
            f"unknown ensemble {value!r}; choose from {', '.join(_ENSEMBLES)}"
        )
    return v


def _dpi(value: str) -> int:
    try:
        x = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 10 <= x <= 2400:
        raise argparse.ArgumentTypeError(f"must be an integer in [10, 2400]; got {value!r}")
    return x


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
    return p


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


def _num(x: float | None) -> float | None:
    """A JSON-safe float: +-inf and NaN become None (the caller adds a note)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


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
    if args.json:
        print(json.dumps(res, indent=2, allow_nan=False))
    else:
        print(_table(res))
    return EXIT_OK


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
        import numpy as np

        spec = np.squeeze(np.asarray(spectrum, dtype=float))
        if spec.ndim > 1:
            raise InputError(
                f"--spectrum-file: expected a 1-D array of eigenvalues; got shape {spec.shape} "
                "(for a covariance matrix C, save np.linalg.eigvalsh(C))"
            )
        spec = spec.reshape(-1)
        if spec.size == 0:
            raise InputError("--spectrum-file: the spectrum is empty")
        if not np.all(np.isfinite(spec)):
            raise InputError("--spectrum-file: the spectrum must be finite (no NaN or inf)")
        if np.any(spec < 0):
            raise DomainError(
                f"--spectrum-file: a covariance spectrum must be >= 0; "
                f"{int(np.sum(spec < 0))} entries are negative (min {spec.min():.6g})"
            )
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
        msg = str(exc)
        raise _UsageError(f"argument {msg}" if msg.startswith("--") else msg) from None
    if args.json:
        print(json.dumps(res, indent=2, allow_nan=False))
    else:
        print(_critical_table(res))
    return EXIT_OK


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
