"""The ``physdiff`` command: one module per subcommand, loaded when it runs.

    physdiff convert --delta 1 --to ddpm --json    # where Delta = 1 falls in DDPM (and OU)
    physdiff critical --top-eigenvalue 7.66        # every criterion's critical point
    physdiff collapse --d 256 --n-train 20000 --variance 1 --process ou --json
    physdiff phase-diagram --d 100 --top-eigenvalue 5 --variance 1 --process ou --out DIR
    physdiff attractors --points circle --n-train 12
    physdiff entropy --means=-8,-4,6,8 --process ddpm
    physdiff guide --mixture four-1d --method dng-exact --remove 2
    physdiff atlas --out gallery                   # every registered figure, PNG + PDF + index

Each subcommand is a module of this package with ``register(subparsers)`` (its flags) and
``run(args)`` (parse, call the library, print); :data:`COMMANDS` maps the command names to
those modules, and only the module of the command being run is imported (``physdiff
--help`` imports them all, but none imports its library before it runs). A flag several
commands share has one spelling, type and help text, defined once
(:data:`physdiff.cli._args.SHARED`); renamed spellings still work, hidden, with a note on
stderr (:data:`physdiff.cli._args.RENAMED`). Every ``--json``
output is the envelope ``{"command", "version", "input", "result"}`` in strict JSON
(:func:`physdiff.cli._args.envelope`). Bad input is one line on stderr naming the flag and
its valid range, exit status 2 (:func:`physdiff.cli._args.usage`); a file that cannot be
written is exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "main", "build_parser"]

COMMANDS: dict[str, str] = {
    "convert": "convert",
    "atlas": "atlas",
    "list-figures": "figures",
    "critical": "critical",
    "collapse": "collapse",
    "phase-diagram": "phase_diagram",
    "attractors": "attractors",
    "entropy": "entropy",
    "guide": "guide",
}
"""Command name -> module of :mod:`physdiff.cli` (``register``, ``run``)."""

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block, no traceback), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _module(name: str):
    return importlib.import_module(f".{COMMANDS[name]}", __name__)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every command, or only the command ``only``."""
    from .. import __version__
    from ._args import add_renamed

    p = _Parser(
        prog="physdiff",
        description="Statistical physics of generative diffusion models: conversions "
        "between noise schedules, critical points, memorisation, attractors, class "
        "decisions, guidance and the figure atlas.",
    )
    p.add_argument("--version", action="version", version=f"physdiff {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in [only] if only in COMMANDS else COMMANDS:
        mod = _module(name)
        mod.register(sub)
        add_renamed(sub.choices[name], name)  # old spellings, hidden
        sub.choices[name].set_defaults(func=mod.run)
    return p


def _command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (its first word that is not an option)."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in COMMANDS else None
        if a in ("-h", "--help", "--version"):
            return None
    return None


def _terminate_as_interrupt() -> Callable[[], None]:
    """Turn ``SIGTERM`` (``kill``, a scheduler's time limit) into the ``KeyboardInterrupt``
    path, so that a write in progress removes its temporary file
    (:func:`physdiff.atomic.atomic_write`) instead of leaving it behind. Only from the
    main thread (``signal`` refuses elsewhere); ``SIGKILL`` cannot be caught: the next run
    into the folder clears what it leaves (:func:`physdiff.atomic.output_folder`).
    Returns what puts the previous handler back (``main`` may run inside a program)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physdiff`` console script; returns the exit status."""
    from ..errors import PhysdiffError
    from ._args import UsageError, usage

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    flags = getattr(_module(args.command), "FLAGS", None)
    restore = _terminate_as_interrupt()
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"physdiff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PhysdiffError as exc:  # the library's word on bad input
        print(f"physdiff {args.command}: error: {usage(exc, args, flags)}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `physdiff ... | head`: the reader left; stop quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a killed writer
    except OSError as exc:  # an output that cannot be written
        print(f"physdiff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (_terminate_as_interrupt)
        print("physdiff: interrupted", file=sys.stderr)
        return 130
    finally:
        restore()
