"""Collect every ``<out>/<experiment>/<preset>/result.json`` into ``REPORT.md`` and
``FIGURES.md`` (both written atomically into ``<out>``).

``REPORT.md`` holds one table with a row per comparison (experiment, preset, quantity,
condition, predicted, measured +- one standard error, verdict, rule; a censored bound is
shown ``< x`` or ``> x``, a reference row's verdict ``reported``), the tolerance audit
(:func:`tolerance_audit`: every fixed slack, its reason, and how many of its rows it
exceeds two standard errors in) and a table of the runs (seed, device, wall time, git
revision, software versions). ``FIGURES.md`` shows every
figure, linked relative to ``<out>``, so both pages render on GitHub.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from physdiff.errors import InputError

from .experiments import EXPERIMENTS, PRESET_NAMES
from .result import RESULT_FILE, Result, atomic_write_text

__all__ = ["collect", "write_report", "tolerance_audit", "REPORT_FILE", "FIGURES_FILE"]

REPORT_FILE = "REPORT.md"
FIGURES_FILE = "FIGURES.md"


def _order(path: Path) -> tuple:
    exp, preset = path.parent.parent.name, path.parent.name
    e = EXPERIMENTS.index(exp) if exp in EXPERIMENTS else len(EXPERIMENTS)
    p = PRESET_NAMES.index(preset) if preset in PRESET_NAMES else len(PRESET_NAMES)
    return (e, exp, p, preset)


def collect(out: str | os.PathLike) -> list[tuple[Path, Result]]:
    """Every result under ``out`` (``<out>/<name>/<preset>/result.json``), in a fixed order."""
    root = Path(out)
    if not root.is_dir():
        raise InputError(f"results folder {str(root)!r} does not exist")
    paths = sorted(root.glob(f"*/*/{RESULT_FILE}"), key=_order)
    return [(p, Result.load(p)) for p in paths]


def _num(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.3e}"


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _revision(rev: str) -> str:
    return rev if rev == "unknown" else rev[:10] + ("+dirty" if rev.endswith("+dirty") else "")


def _tolerance(row) -> float:
    """The row's fixed slack (recorded since the audit; parsed from the rule text of
    results written before)."""
    if row.tolerance is not None:
        return float(row.tolerance)
    m = re.search(r"s\.e\. [+-] ([0-9.eE+-]+)$", row.rule)
    return float(m.group(1)) if m else math.nan


def tolerance_audit(results) -> list[dict]:
    """One record per (experiment, preset, slack reason): how many judged rows carry that
    fixed slack (its range ``tolerance_min``-``tolerance_max``: a relative or computed slack
    differs per row) and in how many it exceeds two standard errors of the measurement
    (``tolerance > 2 s.e.``: there the slack, not the statistics, decides the verdict).
    Results written before the reasons were recorded are grouped by quantity."""
    groups: dict[tuple, dict] = {}
    for _, res in results:
        for row in res.rows:
            tol = _tolerance(row)
            if not row.judged or not tol > 0:
                continue
            key = (res.experiment, res.preset, row.slack_reason or row.quantity)
            g = groups.setdefault(
                key,
                {
                    "experiment": res.experiment,
                    "preset": res.preset,
                    "tolerance_min": tol,
                    "tolerance_max": tol,
                    "reason": row.slack_reason or "(not recorded in this result)",
                    "quantity": row.quantity,
                    "rows": 0,
                    "over_2se": 0,
                },
            )
            g["tolerance_min"] = min(g["tolerance_min"], tol)
            g["tolerance_max"] = max(g["tolerance_max"], tol)
            g["rows"] += 1
            g["over_2se"] += bool(tol > 2 * row.uncertainty)
    return list(groups.values())


def _range(g: dict) -> str:
    lo, hi = g["tolerance_min"], g["tolerance_max"]
    return _num(lo) if lo == hi else f"{_num(lo)}-{_num(hi)}"


def _measured(row) -> str:
    sign = {"": "", "upper": "< ", "lower": "> "}[row.bound]
    return f"{sign}{_num(row.measured)} +- {_num(row.uncertainty)}"


def write_report(out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``REPORT.md`` and ``FIGURES.md`` into ``out``; returns their paths."""
    root = Path(out)
    results = collect(root)
    if not results:
        raise InputError(f"no {RESULT_FILE} under {str(root)!r}: run an experiment first")
    n_rows = sum(row.judged for _, r in results for row in r.rows)
    n_ref = sum(not row.judged for _, r in results for row in r.rows)
    n_agree = sum(row.agrees for _, r in results for row in r.rows)
    ref = f"; {n_ref} reference row(s) reported without a verdict" if n_ref else ""
    lines = [
        "# Validation report: trained score networks against theory",
        "",
        "Written by `python -m validation report`. Each row compares a theoretical prediction",
        "with a measurement on trained networks; the uncertainty is one standard error",
        "(Monte Carlo) and the verdict follows the rule written in its row.",
        "",
        f"**{n_agree} of {n_rows} comparisons agree** across {len(results)} run(s){ref}.",
        "A measured value `< x` or `> x` is a censored bound (a crossing outside the scanned",
        "range); it agrees when it is consistent with the prediction within the rule's slack.",
        "",
        "| Experiment | Preset | Quantity | Condition | Predicted | Measured (+- s.e.) "
        "| Verdict | Rule |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for _, res in results:
        for row in res.rows:
            verdict = "reported" if not row.judged else "agree" if row.agrees else "**DISAGREE**"
            lines.append(
                f"| {res.experiment} | {res.preset} | {_cell(row.quantity)} | "
                f"{_cell(row.condition)} | {_num(row.predicted)} | "
                f"{_measured(row)} | {verdict} | {_cell(row.rule)} |"
            )
    lines += [
        "",
        "## Tolerance audit",
        "",
        "Every fixed slack of a rule (the `+ tolerance` term), why it is there, and in how",
        "many of its judged rows it exceeds two standard errors (where the slack, not the",
        "statistics, decides the verdict). docs/validation.md discusses each.",
        "",
        "| Experiment | Preset | Tolerance | Rows | Rows with tolerance > 2 s.e. | Example "
        "quantity | Reason |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for g in tolerance_audit(results):
        lines.append(
            f"| {g['experiment']} | {g['preset']} | {_range(g)} | {g['rows']} | "
            f"{g['over_2se']} | {_cell(g['quantity'])} | {_cell(g['reason'])} |"
        )
    lines += [
        "",
        "## Runs",
        "",
        "| Experiment | Preset | Seed | Device | Wall time (s) | Git revision | Versions "
        "| Created (UTC) |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    for _, res in results:
        vers = ", ".join(f"{k} {v}" for k, v in res.versions.items())
        lines.append(
            f"| {res.experiment} | {res.preset} | {res.seed} | {_cell(res.device)} | "
            f"{res.wall_seconds:.1f} | `{_revision(res.git_revision)}` | {_cell(vers)} | "
            f"{res.created} |"
        )
    lines += ["", f"Figures: [{FIGURES_FILE}]({FIGURES_FILE}).", ""]

    figs = ["# Validation figures", "", f"Companion of [{REPORT_FILE}]({REPORT_FILE}).", ""]
    for path, res in results:
        folder = path.parent.relative_to(root)
        figs += [
            f"## {res.experiment} ({res.preset})",
            "",
            f"Verdict: {res.verdict}; config: `{folder.as_posix()}/{RESULT_FILE}`.",
            "",
        ]
        for f in res.figures:
            rel = (folder / f).as_posix()
            figs += [f"![{res.experiment} {res.preset}]({rel})", ""]
    report, figures = root / REPORT_FILE, root / FIGURES_FILE
    atomic_write_text(report, "\n".join(lines))
    atomic_write_text(figures, "\n".join(figs))
    return report, figures
