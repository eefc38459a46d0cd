"""What every ``physdiff`` subcommand shares: argument types, the common flags, the one
error path and the one JSON envelope.

* Argument types raise :class:`argparse.ArgumentTypeError` naming the valid range, so
  argparse reports ``argument --flag: <message>`` in one line (exit status 2).
* One spelling per flag across the commands (:func:`add_process`, :func:`add_spectrum`,
  ``--d`` for a dimension, ``--variance`` for a variance, ``--json``, ``--out``).
* :func:`usage` turns a library :class:`~physdiff.errors.InputError` (whose message starts
  with the name of the argument at fault, ``variance: must lie in (0, inf)``) into a
  :class:`UsageError` naming the flag (``argument --variance: must lie in (0, inf)``);
  :func:`physdiff.cli.main` prints it as one line on stderr, exit status 2.
* :func:`emit` prints a result as text or, with ``--json``, as the envelope
  ``{"command", "version", "input", "result"}`` in strict JSON (:func:`envelope`): a value
  that is not a finite number is written as ``null`` and listed, with what it was, under
  ``result["non_finite"]``.

Nothing heavy is imported here (no numpy): ``physdiff --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

__all__ = [
    "UsageError",
    "choice",
    "process_name",
    "number",
    "integer",
    "bounded",
    "floats",
    "dimension",
    "add_command",
    "option",
    "pick",
    "add_process",
    "add_seed",
    "add_steps",
    "add_json",
    "add_dpi",
    "add_spectrum",
    "process_names",
    "usage",
    "envelope",
    "dumps",
    "json_safe",
    "cell",
    "emit",
    "write_output",
    "write_json",
    "read_array",
]


class UsageError(Exception):
    """Bad command-line input: one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------------
# argument types
# ---------------------------------------------------------------------------------------
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


def process_names() -> list[str]:
    """The process presets of :data:`physdiff.processes.PRESETS`."""
    from ..processes import PRESETS

    return list(PRESETS)


def process_name(value: str) -> str:
    """A process preset name of :data:`physdiff.processes.PRESETS`."""
    return choice(process_names(), "process")(value)


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
    """An integer (``"1e3"`` is accepted, ``"2.5"`` is not) in ``[lo, hi]`` where given."""
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


def bounded(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """:func:`integer` restricted to ``[lo, hi]``, as an argument type."""

    def parse(value: str) -> int:
        return integer(value, lo, hi)

    return parse


dimension = bounded(1, 10**7)
"""The type of ``--d`` (and ``--intrinsic-dim``): an integer in [1, 10^7]."""


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


# ---------------------------------------------------------------------------------------
# a command and its options
# ---------------------------------------------------------------------------------------
def add_command(
    subparsers, name: str, help: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of ``physdiff NAME``: ``help`` is its line in ``physdiff --help``,
    ``description`` and ``epilog`` frame its flags in ``physdiff NAME --help``. A command
    module's ``register(subparsers)`` calls this once and adds its own flags."""
    return subparsers.add_parser(name, help=help, description=description, epilog=epilog)


def option(parser, flag: str, metavar: str | None, help: str, type=number, **kw) -> None:
    """``flag VALUE``: an option taking a value (a finite float unless ``type`` says
    otherwise); ``kw`` goes to ``add_argument`` (``default``, ``nargs``, ``required``,
    ``choices``, ``dest``)."""
    parser.add_argument(flag, type=type, metavar=metavar, help=help, **kw)


def pick(args, *names: str) -> dict:
    """``{name: args.name}`` for the flags a command passes on unchanged to the library
    function of the same keyword arguments."""
    return {name: getattr(args, name) for name in names}


# ---------------------------------------------------------------------------------------
# the flags several commands share (one spelling each)
# ---------------------------------------------------------------------------------------
def add_process(parser, default: str, what: str) -> None:
    """``--process PROC``: a preset of :data:`physdiff.processes.PRESETS`."""
    parser.add_argument(
        "--process",
        type=process_name,
        default=default,
        metavar="PROC",
        help=f"{what} ({', '.join(process_names())}; default {default})",
    )


def add_seed(parser, what: str) -> None:
    """``--seed S``: an integer >= 0 (default 0)."""
    parser.add_argument("--seed", type=bounded(0, None), default=0, metavar="S", help=f"{what} (0)")


def add_steps(parser, default: int, what: str) -> None:
    """``--steps S``: the sampler's number of steps, an integer in [1, 10^5]."""
    parser.add_argument(
        "--steps", type=bounded(1, 10**5), default=default, metavar="S", help=f"{what} ({default})"
    )


def add_json(parser, what: str = "print the result as JSON (the physdiff envelope)") -> None:
    """``--json``: the strict-JSON envelope of :func:`envelope` instead of the table."""
    parser.add_argument("--json", action="store_true", help=what)


def add_dpi(parser, default: int) -> None:
    """``--dpi DPI``: the PNG resolution, an integer in [10, 2400]."""
    parser.add_argument(
        "--dpi", type=bounded(10, 2400), default=default, help=f"PNG resolution (default {default})"
    )


def add_spectrum(parser) -> None:
    """The covariance spectrum of ``collapse`` and ``phase-diagram``
    (:func:`physdiff.memorization.model_spectrum`)."""
    g = parser.add_argument_group(
        "data spectrum",
        "either --d (with --variance, and optionally --top-eigenvalue or --intrinsic-dim) "
        "or --spectrum-file",
    )
    g.add_argument("--d", type=dimension, metavar="D", help="ambient dimension of the data")
    g.add_argument(
        "--variance", type=number, metavar="S2", help="variance per data direction (> 0; default 1)"
    )
    g.add_argument(
        "--top-eigenvalue",
        type=number,
        metavar="L",
        help="one direction with this variance instead (>= 0): the class direction of speciation",
    )
    g.add_argument(
        "--intrinsic-dim",
        type=dimension,
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


# ---------------------------------------------------------------------------------------
# the one error path
# ---------------------------------------------------------------------------------------
_LEADING_NAME = re.compile(r"([A-Za-z_]\w*)(?::\s*|\s+)(.*)", re.S)
_NAME_WITH_UNDERSCORE = re.compile(r"\b[a-z]+_[a-z_]*\b")


def usage(exc: Exception, args=None, flags: Mapping[str, str] | None = None) -> UsageError:
    """A library error as a command-line error naming the flag.

    A message starting with a flag (``--delta-min: ...``) gets argparse's ``argument``
    prefix; one starting with the name of a library argument that the command fills from
    a flag (a key of ``flags``, or an attribute of ``args``: ``variance`` is ``--variance``,
    ``log_n`` is ``--log-n``) is reworded to name that flag, and so are the other
    argument names with an underscore in it (``t_max``). Only the first line of a message
    is kept (one line on stderr)."""
    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if msg.startswith("--"):
        return UsageError(f"argument {msg}")
    known = dict(flags or {})

    def flag_of(name: str) -> str | None:
        if name in known:
            return known[name]
        if args is not None and name in vars(args):
            return "--" + name.rstrip("_").replace("_", "-")
        return None

    def reword(text: str) -> str:  # t_max -> --t-max, from_ -> --from (names with "_" only)
        return _NAME_WITH_UNDERSCORE.sub(lambda m: flag_of(m.group(0)) or m.group(0), text)

    m = _LEADING_NAME.match(msg)
    if m is not None:
        name, rest = m.groups()
        flag = flag_of(name)
        if flag is not None:
            return UsageError(f"argument {flag}: {reword(rest)}")
    return UsageError(reword(msg))


# ---------------------------------------------------------------------------------------
# the one output path: text, or the strict-JSON envelope
# ---------------------------------------------------------------------------------------
_PRIVATE = {"func", "command", "json"}


def _json_safe(x: Any, path: str, bad: dict) -> Any:
    """``x`` with every non-finite float replaced by ``None`` (recorded in ``bad``)."""
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v, f"{path}.{k}", bad) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v, f"{path}[{i}]", bad) for i, v in enumerate(x)]
    if isinstance(x, bool) or x is None or isinstance(x, (str, int)):
        return x
    if hasattr(x, "to_dict"):
        return _json_safe(x.to_dict(), path, bad)
    if hasattr(x, "tolist"):  # numpy scalars and arrays
        return _json_safe(x.tolist(), path, bad)
    if isinstance(x, float):
        if math.isfinite(x):
            return x
        bad[path] = repr(x)
        return None
    return str(x)


def envelope(command: str, args, result: Any) -> dict:
    """``{"command", "version", "input", "result"}``: the parsed flags as ``input`` (by
    their argparse names: ``--log-n`` is ``log_n``, ``--from`` is ``from``) and the result
    (its ``to_dict()``), JSON-safe. Values that are not finite numbers (an overflowing
    eigenvalue, say) become ``null``; ``result["non_finite"]`` then maps each one's place
    (``result.spectrum.sum_of_squares``) to what it was (``inf``), so that no value is
    dropped without a reason."""
    from .. import __version__

    bad: dict = {}
    inp = {k.rstrip("_"): v for k, v in vars(args).items() if k not in _PRIVATE}
    inp = _json_safe(inp, "input", bad)
    res = _json_safe(result, "result", bad)
    if not isinstance(res, dict):
        res = {"value": res}
    if bad:
        res["non_finite"] = bad
    return {"command": command, "version": __version__, "input": inp, "result": res}


def json_safe(obj: Mapping, root: str = "data") -> dict:
    """A mapping made strict-JSON-safe for a data file, the way :func:`envelope` does it:
    non-finite numbers become ``null``, listed with what they were under ``non_finite``."""
    bad: dict = {}
    out = _json_safe(obj, root, bad)
    if bad:
        out["non_finite"] = bad
    return out


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (``allow_nan=False``): a NaN here is a bug, never written as ``NaN``."""
    return json.dumps(obj, indent=indent, allow_nan=False)


def cell(x, width: int = 12) -> str:
    """A right-aligned table cell: ``-`` for None, an int as is, a float to 6 digits
    (round-off below 5e-13, e.g. a log-SNR of 1e-16 at delta = 1, shows as 0)."""
    if x is None:
        return "-".rjust(width)
    if isinstance(x, int):
        return " " + str(x).rjust(width - 1)
    if abs(x) < 5e-13:
        x = 0.0
    return " " + f"{x:.6g}".rjust(width - 1)


def emit(command: str, args, result: Any, table: Callable[[dict], str]) -> int:
    """Print ``result`` as ``table(result_dict)``, or its :func:`envelope` with ``--json``;
    exit status 0."""
    if getattr(args, "json", False):
        print(dumps(envelope(command, args, result)))
    else:
        print(table(result.to_dict() if hasattr(result, "to_dict") else result))
    return 0


# ---------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------
def write_output(path: str, write: Callable[[IO[bytes]], Any], flag: str = "--out") -> None:
    """Write a file atomically with ``write(fh)``; a missing folder or an OS error is a
    :class:`UsageError` naming ``flag``."""
    from pathlib import Path

    from ..atomic import atomic_write

    p = Path(path)
    if not p.parent.is_dir():
        raise UsageError(f"argument {flag}: no folder {str(p.parent)!r}")
    try:
        atomic_write(p, write)
    except OSError as exc:
        raise UsageError(f"argument {flag}: cannot write {path!r}: {exc.strerror or exc}") from None


def write_json(path: str, obj: Any, flag: str = "--out") -> None:
    """``obj`` as strict JSON, written atomically (:func:`write_output`)."""
    data = dumps(obj, indent=None).encode()
    write_output(path, lambda fh: fh.write(data), flag)


def read_array(path: str, flag: str, *, text: bool = True):
    """The array in ``path`` (``.npy``, or a text file of numbers where ``text``) as float64;
    an unreadable file is a :class:`UsageError` naming ``flag``."""
    import numpy as np

    try:
        if path.endswith(".npy") or not text:
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.loadtxt(path, dtype=float, ndmin=1)
        if not isinstance(arr, np.ndarray):
            raise ValueError("not a single array")
        return np.asarray(arr, dtype=float)
    except (OSError, ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"argument {flag}: cannot read {path!r}: {msg}") from None
