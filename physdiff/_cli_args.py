"""Argument types and output helpers shared by the ``physdiff`` subcommands.

Every parser here raises :class:`argparse.ArgumentTypeError` with a message that names the
valid range, so argparse reports ``argument --flag: <message>`` in one line (exit status 2).
:class:`UsageError` is the same for checks made after parsing. Nothing heavy is imported.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = [
    "UsageError",
    "choice",
    "process_name",
    "number",
    "integer",
    "floats",
    "json_number",
    "write_output",
    "write_json",
    "run_command",
]


class UsageError(Exception):
    """Bad command-line input found after parsing: one line on stderr, exit status 2."""


def choice(names: Sequence[str], what: str) -> Callable[[str], str]:
    """A parser accepting one of ``names`` (case-insensitive); ``what`` names the kind."""

    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {value!r}; choose from {', '.join(names)}"
            )
        return v

    return parse


def process_name(value: str) -> str:
    """A process preset name of :data:`physdiff.processes.PRESETS`."""
    from .processes import PRESETS

    return choice(tuple(PRESETS), "process")(value)


def number(value: str) -> float:
    """A finite float."""
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be finite; got {value!r}")
    return x


def integer(value: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (``"1e3"`` is accepted, ``"2.5"`` is not) in ``[lo, hi]`` where given;
    ``functools.partial(integer, lo=..., hi=...)`` makes a bounded argument type."""
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not (math.isfinite(x) and x.is_integer()):
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        lo_s = "-inf" if lo is None else str(lo)
        hi_s = "inf" if hi is None else str(hi)
        raise argparse.ArgumentTypeError(f"must be an integer in [{lo_s}, {hi_s}]; got {value!r}")
    return int(x)


def floats(value: str) -> list[float]:
    """Comma-separated finite floats."""
    out = []
    for p in (p.strip() for p in value.split(",")):
        try:
            x = float(p)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers; {p!r} is not a number"
            ) from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"must be finite; got {p!r}")
        out.append(x)
    return out


def json_number(x: Any) -> float | None:
    """A JSON-safe float: ``None``, +-inf and NaN become ``None`` (the caller says why)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def write_output(path: str, write: Callable[[IO[bytes]], Any], flag: str = "--out") -> None:
    """Write a file atomically with ``write(fh)``; a missing folder or an OS error is a
    :class:`UsageError` naming ``flag``."""
    from pathlib import Path

    from .atlas import atomic_write

    p = Path(path)
    if not p.parent.is_dir():
        raise UsageError(f"argument {flag}: no folder {str(p.parent)!r}")
    try:
        atomic_write(p, write)
    except OSError as exc:
        raise UsageError(f"argument {flag}: cannot write {path!r}: {exc.strerror or exc}") from None


def write_json(path: str, obj: Any, flag: str = "--out") -> None:
    """``obj`` as strict JSON (no NaN), written atomically (:func:`write_output`)."""
    data = json.dumps(obj, allow_nan=False).encode()
    write_output(path, lambda fh: fh.write(data), flag)


def run_command(
    name: str, compute: Callable[[Any], dict], table: Callable[[dict], str], args
) -> int:
    """Run ``physdiff NAME``: ``res = compute(args)``, printed as JSON with ``--json`` (strict:
    no NaN) or as ``table(res)``; a :class:`UsageError` is one line on stderr and exit
    status 2. Returns the exit status."""
    try:
        res = compute(args)
    except UsageError as exc:
        print(f"physdiff {name}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2, allow_nan=False) if args.json else table(res))
    return 0
