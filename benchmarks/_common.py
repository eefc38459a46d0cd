"""What the benchmark scripts share: timing, the environment block of a results file
(library versions, machine, load averages) and the atomic write of the results.

The scripts run from the repository root as ``python -m benchmarks.NAME`` (docs/design.md:
results are written atomically, timings are medians reported with the machine's load).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from physdiff.atomic import atomic_write_text

__all__ = [
    "timeit",
    "timeit_interleaved",
    "load_average",
    "format_load",
    "environment_lines",
    "write_atomic",
]


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


write_atomic = atomic_write_text
"""Write ``text`` to ``path`` atomically (:func:`physdiff.atomic.atomic_write_text`: a synced
temporary file in the same folder renamed over ``path``; the folder is created if missing)."""
