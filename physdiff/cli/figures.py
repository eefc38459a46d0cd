"""``physdiff list-figures``: the registered figures of :mod:`physdiff.figures`."""

from __future__ import annotations

import sys

from ._args import add_command, add_flag, emit

NAME = "list-figures"
HELP = "list the registered figures"


def register(subparsers) -> None:
    p = add_command(subparsers, NAME, HELP, "The registered figures.")
    add_flag(p, "json")


def figure_list() -> tuple[dict, dict]:
    """``({"figures": [...]}, import errors by module)`` of the figure registry."""
    from ..figures import discover, registry

    errors = discover()
    figs = [
        {"name": s.name, "title": s.title, "module": s.module, "caption": s.caption}
        for s in registry
    ]
    return {"figures": figs}, errors


def run(args) -> int:
    res, errors = figure_list()
    emit(NAME, args, res, table)
    for mod, exc in errors.items():
        print(
            f"physdiff: could not import figure module {mod}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
    return 1 if errors else 0


def table(res: dict) -> str:
    figs = res["figures"]
    width = max((len(f["name"]) for f in figs), default=4)
    return "\n".join(f"{f['name']:<{width}}  {f['title']}  [{f['module']}]" for f in figs)
