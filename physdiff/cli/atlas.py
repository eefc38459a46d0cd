"""``physdiff atlas``: every registered figure as PNG + PDF with an index
(:func:`physdiff.atlas.build_atlas`).

    physdiff atlas --out gallery
    physdiff atlas --out gallery --only phase-diagram --format svg
"""

from __future__ import annotations

import sys

from . import figures
from ._args import UsageError, add_command, add_flag, option

NAME = "atlas"
HELP = "build the figure gallery (PNG + PDF per figure, index.html, index.md)"

DESCRIPTION = """\
Render every registered figure (modules of physdiff.figures) into a folder, with index.html
and index.md. A figure that fails is reported; the others are still built and the exit
status is 1."""


def register(subparsers) -> None:
    p = add_command(subparsers, NAME, HELP, DESCRIPTION)
    add_flag(p, "out")
    option(p, "--only", "NAME", "build only these figures", type=None, nargs="+")
    option(
        p,
        "--format",
        "FMT",
        "file formats: png, pdf, svg (default: png pdf)",
        type=None,
        nargs="+",
        dest="formats",
        default=["png", "pdf"],
        choices=["png", "pdf", "svg"],
    )
    add_flag(p, "dpi", default=150)
    p.add_argument("--list", action="store_true", help="list the registered figures and exit")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    if args.list:
        return figures.run(args)
    if not args.out:
        raise UsageError("argument --out: required (the folder to write the figures into)")
    from ..atlas import build_atlas
    from ..errors import InputError

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
        raise UsageError(
            f"argument --only: {msg}" if msg.startswith("unknown figure") else msg
        ) from None
    except OSError as exc:
        raise OSError(f"cannot write to {args.out!r}: {exc}") from None
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
        return 1
    return 0
