"""The ``python -m validation`` command.

    python -m validation list
    python -m validation run NAME [--preset smoke|cpu|gpu] [--device auto|cpu|cuda]
                                  [--out DIR] [--seed S] [--data FILE.npz]
                                  [--engine local|serial|slurm] [--workers N]
                                  [--slurm KEY=VALUE ...]
    python -m validation run-all [same options, no NAME]      (then writes the report)
    python -m validation report [--out DIR]

Bad input (unknown experiment or preset, a device that is not there, a missing data file
or one with NaN, ...) prints one line ``validation: error: ...`` on stderr and exits with
status 2 before anything is written. A run that fails on a physdiff error exits with 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from physdiff.errors import InputError, PhysdiffError

from . import experiments
from .report import write_report
from .runner import DEFAULT_OUT, execute, prepare
from .sweep import ENGINES, Engine

__all__ = ["main"]

PROG = "validation"


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise _Usage(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m {PROG}", description="Trained score networks against theory.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the experiments and their presets")

    def run_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--preset", default="cpu", help="smoke, cpu or gpu (default cpu)")
        sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        sp.add_argument("--out", default=str(DEFAULT_OUT), help="results folder")
        sp.add_argument("--seed", default="0", help="base seed (integer >= 0)")
        sp.add_argument("--engine", default=None, help=f"sweep engine: {', '.join(ENGINES)}")
        sp.add_argument("--workers", default=None, help="local worker processes (0: per core)")
        sp.add_argument(
            "--slurm",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="submitit/SLURM parameter, e.g. slurm_partition=gpu (repeatable)",
        )

    r = sub.add_parser("run", help="run one experiment")
    r.add_argument("name")
    run_options(r)
    r.add_argument("--data", default=None, help=".npz data set (experiments that take one)")
    ra = sub.add_parser("run-all", help="run every experiment, then write the report")
    run_options(ra)
    pl = sub.add_parser("plan", help="what a preset trains: networks, ensembles, FLOPs")
    pl.add_argument("names", nargs="*", help="experiments (default: all)")
    pl.add_argument("--preset", default="gpu", help="smoke, cpu or gpu (default gpu)")
    rep = sub.add_parser("report", help="collect the results into REPORT.md and FIGURES.md")
    rep.add_argument("--out", default=str(DEFAULT_OUT), help="results folder")
    return p


def _int(text: str, name: str, lo: int = 0) -> int:
    try:
        v = int(text)
    except ValueError:
        raise _Usage(f"{name} must be an integer; got {text!r}") from None
    if v < lo:
        raise _Usage(f"{name} must be >= {lo}; got {v}")
    return v


def _value(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _engine(args: argparse.Namespace, out: Path) -> Engine | None:
    if args.engine is None and args.workers is None and not args.slurm:
        return None
    kind = args.engine or ("slurm" if args.slurm else "local")
    if kind not in ENGINES:
        raise _Usage(f"--engine must be one of {', '.join(ENGINES)}; got {kind!r}")
    options = {}
    for item in args.slurm:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise _Usage(f"--slurm takes KEY=VALUE; got {item!r}")
        options[key] = _value(val)
    workers = 0 if args.workers is None else _int(args.workers, "--workers")
    return Engine(kind=kind, workers=workers, folder=str(out / "slurm-logs"), options=options)


def _list() -> int:
    for name in experiments.EXPERIMENTS:
        mod = experiments.load(name)
        presets = ", ".join(mod.PRESETS)
        print(f"{name:22s} {experiments.summary(mod)}  [presets: {presets}]")
    return 0


def _run(args: argparse.Namespace, names: Sequence[str]) -> int:
    out = Path(args.out).resolve()
    seed = _int(args.seed, "--seed")
    engine = _engine(args, out)
    data = getattr(args, "data", None)
    plans = [
        prepare(n, args.preset, device=args.device, out=out, seed=seed, engine=engine, data=data)
        for n in names
    ]  # check every input before writing anything
    for plan in plans:
        res = execute(plan)
        print(
            f"{res.experiment} [{res.preset}] {res.verdict} "
            f"({sum(r.agrees for r in res.rows)}/{len(res.rows)} rows agree, "
            f"{res.wall_seconds:.1f} s) -> {plan.out_dir}"
        )
        for row in res.rows:
            print(
                f"  {row.verdict:8s} {row.quantity} [{row.condition}]: predicted "
                f"{row.predicted:.4g}, measured {row.measured:.4g} +- {row.uncertainty:.2g}"
            )
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .plan import plan_rows

    names = args.names or list(experiments.EXPERIMENTS)
    for n in names:
        mod = experiments.load(n)  # unknown names: InputError
        if args.preset not in mod.PRESETS:
            raise _Usage(f"unknown preset {args.preset!r} for {n}")
    print(f"| experiment ({args.preset}) | networks | ensembles | parameters | samples | TFLOP |")
    print("|---|---:|---:|---:|---:|---:|")
    total = 0.0
    for r in plan_rows(names, args.preset):
        if not r["networks"]:
            print(f"| {r['experiment']} | 0 | 0 | - | - | - |")
            continue
        lo, hi = r["parameters"]
        total += r["flops"]
        print(
            f"| {r['experiment']} | {r['networks']} | {r['ensembles']} | "
            f"{lo:,} - {hi:,} | {r['samples']:,} | {r['flops'] / 1e12:,.2f} |"
        )
    print(f"| total | | | | | {total / 1e12:,.2f} |")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        if args.command == "list":
            return _list()
        if args.command == "run":
            return _run(args, [args.name])
        if args.command == "plan":
            return _plan(args)
        if args.command == "run-all":
            status = _run(args, experiments.EXPERIMENTS)
            report, _ = write_report(Path(args.out))
            print(f"report: {report}")
            return status
        report, figures = write_report(Path(args.out))
        print(f"report: {report}\nfigures: {figures}")
        return 0
    except _Usage as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except PhysdiffError as err:  # InputError (bad input): 2; a failed run: 1
        msg = " ".join(str(err).split())
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2 if isinstance(err, InputError) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
