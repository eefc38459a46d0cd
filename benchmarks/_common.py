"""What the benchmark scripts share: timing, the environment block of a results file
(library versions, machine, load averages) and the atomic write of the results.

The scripts run from the repository root as ``python -m benchmarks.NAME`` (docs/design.md:
results are written atomically, timings are medians reported with the machine's load).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from physdiff.atomic import atomic_write_text

__all__ = [
    "timeit",
    "timeit_interleaved",
    "load_average",
    "format_load",
    "environment_lines",
    "write_atomic",
    "MACHINE_NOTE",
    "with_machine_note",
    "arguments",
    "publish",
    "table",
]

MACHINE_NOTE = (
    "The machine has two cores shared with other work: single numbers move by tens of "
    "percent from run to run (see the load averages); compare the ratios within one run."
)
"""The closing caveat of every results file timed on the shared development machine."""


def with_machine_note(lines: Sequence[str]) -> str:
    """The results file: ``lines``, then :data:`MACHINE_NOTE` as the closing paragraph."""
    return "\n".join([*lines, "", MACHINE_NOTE, ""])


def arguments(doc: str | None, results: Path, quick: str) -> argparse.ArgumentParser:
    """The parser every benchmark starts from: its description is the first line of the
    script's docstring ``doc``; ``--out`` the results file (default ``results``) and
    ``--quick`` a shorter run (``quick`` says what it shortens)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    ap.add_argument("--out", type=Path, default=results, help="results file (markdown)")
    ap.add_argument("--quick", action="store_true", help=quick)
    return ap


def publish(path: Path, text: str) -> int:
    """Write the results file atomically, say where, and return the exit status 0."""
    write_atomic(path, text)
    print(f"\nwritten: {path}")
    return 0


def timeit(fn: Callable[[], object], reps: int, *, warmup: bool = True) -> dict:
    """Median and best wall time of ``reps`` calls (after one untimed warm-up call)."""
    if warmup:
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "best": min(times), "reps": reps}


def timeit_interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, dict]:
    """Median and best wall time of each function, one untimed warm-up each, then ``reps``
    rounds calling every function once in turn (interleaved, so that a change of load
    falls on every variant alike)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {
        k: {"median": statistics.median(v), "best": min(v), "reps": reps} for k, v in times.items()
    }


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages, or None where the platform has none."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def format_load(load: Sequence[float] | None) -> str:
    """``"1.02, 0.95, 0.80"`` (``"?"`` when unknown)."""
    return "?" if load is None else ", ".join(f"{x:.2f}" for x in load)


def environment_lines(
    *,
    load_start: Sequence[float] | None = None,
    load_end: Sequence[float] | None = None,
    libraries: str | None = None,
) -> list[str]:
    """The markdown bullet lines that describe where a benchmark ran: ``libraries`` (default
    ``numpy X``), the Python version, the machine and its logical cores, and the load
    average at the start (measured now unless given) and, if given, at the end."""
    libs = f"numpy {np.__version__}" if libraries is None else libraries
    start = load_average() if load_start is None else load_start
    lines = [
        f"- {libs}, Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} logical cores",
    ]
    if load_end is None:
        lines.append(f"- load average at start (1, 5, 15 min): {format_load(start)}")
    else:
        lines.append(
            f"- load average at start / end (1, 5, 15 min): {format_load(start)} / "
            f"{format_load(load_end)}"
        )
    return lines


def table(header: str, rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """The lines of a markdown table: ``header`` (the column names, ``"a | b"``), the rule
    (``align``, one letter per column: ``l`` left ``---``, ``r`` right ``---:``; default
    every column left), then one line ``| x | y |`` per row of ``rows``: a sequence of cells
    (each written by ``str``) or a string ``"x | y"``."""
    n = header.count("|") + 1
    align = align or "l" * n
    if len(align) != n or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one of 'l', 'r' per column ({n}); got {align!r}")
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    cells = (r if isinstance(r, str) else " | ".join(map(str, r)) for r in rows)
    return [f"| {header} |", rule, *(f"| {c} |" for c in cells)]


write_atomic = atomic_write_text
"""Write ``text`` to ``path`` atomically (:func:`physdiff.atomic.atomic_write_text`: a synced
temporary file in the same folder renamed over ``path``; the folder is created if missing)."""
