"""What every ``physdiff`` subcommand shares: argument types, the common flags, the one
error path and the one JSON envelope.

* Argument types raise :class:`argparse.ArgumentTypeError` naming the valid range, so
  argparse reports ``argument --flag: <message>`` in one line (exit status 2).
* One spelling per concept across the commands, one concept per spelling: the flags
  several commands share are defined once, in :data:`SHARED` (:func:`add_flag`), with the
  same type and help text in each; old spellings that were renamed still work, hidden,
  with a note on stderr (:data:`RENAMED`, :func:`add_renamed`).
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
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
    "Flag",
    "SHARED",
    "RENAMED",
    "add_flag",
    "add_renamed",
    "single",
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
# the flags several commands share: one concept, one spelling, one definition
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flag:
    """A flag that means one thing in every command that has it: its one ``spelling``, and
    the type, number of values and help text it has everywhere (``{presets}`` in ``help``
    stands for the process presets, filled in when the flag is added). What may differ
    between commands is only the default (``%(default)s`` in ``help``) and whether it is
    required; what the command does with the value belongs in its description."""

    spelling: str
    help: str
    type: Callable[[str], Any] | None = None
    nargs: str | None = None
    metavar: str | None = None
    action: str | None = None

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments (``--n-train``: ``n_train``)."""
        return self.spelling.lstrip("-").replace("-", "_")

    def kwargs(self) -> dict:
        """The keyword arguments of ``add_argument`` that make this flag (less the default)."""
        text = self.help
        if "{presets}" in text:  # the process presets, only now (physdiff.processes)
            text = text.replace("{presets}", ", ".join(process_names()))
        kw = {"type": self.type, "nargs": self.nargs, "metavar": self.metavar}
        kw = {k: v for k, v in kw.items() if v is not None}
        return {**kw, "help": text, **({"action": self.action} if self.action else {})}


SHARED: dict[str, Flag] = {
    "dimension": Flag("--d", "ambient dimension d of the data", dimension, metavar="D"),
    "variance": Flag(
        "--variance",
        "variance of the data per direction (of each component, for a mixture)",
        number,
        metavar="S2",
    ),
    "top_eigenvalue": Flag(
        "--top-eigenvalue", "top eigenvalue Lambda of the data covariance (>= 0)", number, None, "L"
    ),
    "intrinsic_dim": Flag(
        "--intrinsic-dim",
        "data on an M-dimensional linear manifold: --variance on M directions, 0 on the other "
        "D - M",
        dimension,
        metavar="M",
    ),
    "spectrum_file": Flag(
        "--spectrum-file",
        "a covariance spectrum: .npy array or text file of eigenvalues (all >= 0)",
        metavar="F",
    ),
    "n_train": Flag(
        "--n-train",
        "number(s) n of training points (>= 2; 2e4 is accepted)",
        number,
        "+",
        "N",
    ),
    "n_samples": Flag(
        "--n-samples", "number of samples generated (%(default)s)", bounded(1, 10**7), None, "N"
    ),
    "time": Flag(
        "--t",
        "time(s) t of a process: of --from in convert, of --process elsewhere",
        number,
        "+",
        "T",
    ),
    "process": Flag(
        "--process",
        "the forward process ({presets}; default %(default)s)",
        process_name,
        metavar="PROC",
    ),
    "seed": Flag(
        "--seed",
        "seed of the random draws, data and sampler (%(default)s)",
        bounded(0, None),
        metavar="S",
    ),
    "steps": Flag("--steps", "sampler steps (%(default)s)", bounded(1, 10**5), metavar="S"),
    "dpi": Flag("--dpi", "PNG resolution (default %(default)s)", bounded(10, 2400)),
    "out": Flag("--out", "output folder (created if missing)", metavar="DIR"),
    "out_file": Flag(
        "--out-file",
        "also write the data behind the result to FILE, atomically (which data and format: "
        "see the description)",
        metavar="FILE",
    ),
    "json": Flag("--json", "print the result as JSON (the physdiff envelope)", action="store_true"),
}
"""Each concept several commands share, by name, with its one spelling (:class:`Flag`).
A command adds one with :func:`add_flag`; ``tests/test_cli_flags.py`` checks the parser
against this table."""

RENAMED: dict[str, dict[str, str]] = {
    "collapse": {"--n": "--n-train"},
    "attractors": {"--k": "--n-train", "--n": "--n-samples", "--ensemble": "--points"},
    "guide": {"--n": "--n-samples", "--out": "--out-file"},
    "entropy": {"--out": "--out-file"},
}
"""Old spellings that still work, per command: old -> new. They are hidden from the help
and name the new spelling on stderr when used (:func:`add_renamed`)."""


def add_flag(parser, concept: str, **kw) -> argparse.Action:
    """The shared flag ``concept`` of :data:`SHARED` added to ``parser`` (a parser, an
    argument group or a mutually exclusive group); ``kw`` is only ``default`` or
    ``required``, the rest is the flag's own."""
    if not set(kw) <= {"default", "required"}:
        raise TypeError(f"add_flag: only default and required differ between commands; got {kw}")
    flag = SHARED[concept]
    return parser.add_argument(flag.spelling, **flag.kwargs(), **kw)


class _Renamed(argparse.Action):
    """An old spelling: stores into the new flag's attribute, with a note on stderr."""

    def __init__(self, option_strings, dest, new: str = "", **kw):
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(
            f"{parser.prog}: DeprecationWarning: {option_string} is deprecated; use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_renamed(parser, command: str) -> None:
    """The old spellings of ``command`` (:data:`RENAMED`) as hidden aliases of the new
    flags: same attribute, type and number of values, in the same mutually exclusive
    group (so that an old spelling satisfies a required choice); a new flag of no group gets
    one with its old spelling, drawn nowhere, so that the two together are refused rather
    than the last one kept."""
    for old, new in RENAMED.get(command, {}).items():
        action = next(a for a in parser._actions if new in a.option_strings)
        where = next(
            (g for g in parser._mutually_exclusive_groups if action in g._group_actions), parser
        )
        if where is parser:  # not drawn in the usage line: its actions do not stand together
            hidden = parser.add_mutually_exclusive_group()
            hidden._group_actions.append(action)
        kw = {"type": action.type, "metavar": action.metavar}
        if action.nargs is not None:
            kw["nargs"] = action.nargs
        alias = (hidden if where is parser else where).add_argument(
            old,
            action=_Renamed,
            new=new,
            dest=action.dest,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
            **kw,
        )
        if where is not parser:  # argparse draws a group's "(a | b)" in the usage line only
            acts = parser._actions  # where its actions stand together: put the alias after them
            acts.remove(alias)
            acts.insert(acts.index(where._group_actions[-2]) + 1, alias)


def single(args, concept: str) -> None:
    """A shared flag of several values (``nargs="+"``) in a command that takes one: its one
    value in ``args`` (a list of two or more is a :class:`UsageError`)."""
    flag = SHARED[concept]
    v = getattr(args, flag.dest)
    if v is not None:
        if len(v) != 1:
            raise UsageError(f"argument {flag.spelling}: takes one value here; got {len(v)}")
        setattr(args, flag.dest, v[0])


def add_spectrum(parser) -> None:
    """The covariance spectrum of ``collapse`` and ``phase-diagram``
    (:func:`physdiff.memorization.model_spectrum`)."""
    g = parser.add_argument_group(
        "data spectrum",
        "either --d (with --variance, default 1, and optionally --top-eigenvalue or "
        "--intrinsic-dim) or --spectrum-file (of length d); --top-eigenvalue puts one "
        "direction, the class direction of speciation, at that variance instead",
    )
    add_flag(g, "dimension")
    add_flag(g, "variance")
    add_flag(g, "top_eigenvalue")
    add_flag(g, "intrinsic_dim")
    add_flag(g, "spectrum_file")


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
