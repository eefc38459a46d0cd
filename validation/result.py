"""What an experiment reports: predictions, measurements, verdicts, provenance.

A :class:`Result` holds one or more :class:`Row` s. Each row compares one predicted value
with one measured value and its uncertainty (one standard error) under an explicit
:class:`Rule`:

    agree  iff  |measured - predicted| <= k * uncertainty + tolerance

``k`` (standard errors) absorbs Monte Carlo noise, ``tolerance`` is the stated modelling
slack (a trained network is never exact). Both are part of the experiment's config and are
written, as text, into every row, so that a reader sees the rule the verdict was judged by;
the row also carries the tolerance as a number and ``slack_reason``, why that fixed slack
is there (a stated model error with its source, a computed finite-size or grid effect, or
"none").

**Censored measurements.** A crossing not reached within the scanned range is not a
measurement of its value but a bound on it: ``bound="upper"`` (the true value is below
``measured``, shown ``< x``) or ``bound="lower"`` (above it, ``> x``). A bound agrees when
it is consistent with the prediction within the same slack,

    upper:  predicted <= measured + k * uncertainty + tolerance,
    lower:  predicted >= measured - k * uncertainty - tolerance,

(``uncertainty``: the error of the bound itself, e.g. that of the other terms of a
difference; 0 for a grid end). So no row needs a NaN for "never crossed".

**Reference rows** (``reference=True``, verdict ``"reported"``) carry a prediction of a
model the experiment does not test (a refuted published model, reported with its measured
factor); they are not counted as agreeing or disagreeing.

Results are strict JSON (``result.json``: a NaN or infinity is ``null``, named with its
value under ``non_finite``; :mod:`validation.tidy`) beside the same rows as a table
(``result.csv``), written atomically: the text goes to a temporary
file in the same folder, is flushed and fsynced, and replaces the target with
``os.replace`` (atomic on POSIX), so a reader never sees half a file (:mod:`physdiff.atomic`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from physdiff.atomic import atomic_write_bytes, atomic_write_text

from .tidy import parse_conditions, restore, rows_table, strict, to_frame, write_csv

__all__ = [
    "AGREE",
    "DISAGREE",
    "REPORTED",
    "BOUNDS",
    "Rule",
    "Row",
    "Result",
    "judge",
    "new_result",
    "software_versions",
    "git_revision",
    "atomic_write_text",
    "atomic_write_bytes",
    "save_figure",
    "saved_figure",
    "jsonable",
    "nan_to_none",
    "RESULT_FILE",
    "CSV_FILE",
]

AGREE = "agree"
DISAGREE = "disagree"
REPORTED = "reported"
BOUNDS = ("", "upper", "lower")
"""``bound`` of a row: ``""`` a measured value, ``"upper"`` the true value is below
``measured``, ``"lower"`` above it."""
NO_SLACK = "none: statistical error only"
RESULT_FILE = "result.json"
CSV_FILE = "result.csv"
SCHEMA = 1


@dataclass(frozen=True)
class Rule:
    """``|measured - predicted| <= k * uncertainty + tolerance`` with ``k, tolerance >= 0``
    (a bound: one-sided, module docstring); ``reason`` says why the fixed ``tolerance``
    is there (written into every row as ``slack_reason``)."""

    k: float = 3.0
    tolerance: float = 0.0
    reason: str = ""

    def __post_init__(self) -> None:
        for name in ("k", "tolerance"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"Rule.{name} must be a finite number >= 0; got {v!r}")

    def agrees(
        self, predicted: float, measured: float, uncertainty: float, bound: str = ""
    ) -> bool:
        """The verdict as a bool; a non-finite input never agrees. ``bound``: ``""`` (a
        value), ``"upper"`` or ``"lower"`` (``measured`` bounds the true value)."""
        _check_bound(bound)
        vals = (predicted, measured, uncertainty)
        if not all(math.isfinite(float(v)) for v in vals) or uncertainty < 0:
            return False
        slack = self.k * uncertainty + self.tolerance
        if bound == "upper":
            return predicted <= measured + slack
        if bound == "lower":
            return predicted >= measured - slack
        return abs(measured - predicted) <= slack

    @property
    def text(self) -> str:
        """The rule as a sentence, with its numbers."""
        return f"|measured - predicted| <= {self.k:g} * s.e. + {self.tolerance:g}"

    def text_for(self, bound: str = "") -> str:
        """:attr:`text`, or for a bound its one-sided form."""
        _check_bound(bound)
        if bound == "upper":
            return f"bound: predicted <= measured + {self.k:g} * s.e. + {self.tolerance:g}"
        if bound == "lower":
            return f"bound: predicted >= measured - {self.k:g} * s.e. - {self.tolerance:g}"
        return self.text

    @property
    def slack_reason(self) -> str:
        """``reason``; ``"none: statistical error only"`` for a zero tolerance."""
        if self.reason:
            return self.reason
        return NO_SLACK if self.tolerance == 0 else ""


def _check_bound(bound: str) -> None:
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}; got {bound!r}")


@dataclass(frozen=True)
class Row:
    """One comparison: ``quantity`` under ``condition``, predicted vs measured.

    ``uncertainty`` is one standard error of ``measured`` (including, where the prediction
    is itself a Monte Carlo estimate, its error added in quadrature). ``extra`` holds
    further numbers worth reporting (JSON-serialisable). ``conditions``: the condition as
    structured fields (``{"d": 8, "n": 64}``); by default the ``key=value`` pairs of the
    ``condition`` text (:func:`validation.tidy.parse_conditions`). ``bound``: ``""`` for a
    measured value, ``"upper"``/``"lower"`` when ``measured`` is a censored bound (module
    docstring). ``tolerance`` and ``slack_reason``: the rule's fixed slack and why it is
    there (``None``/``""`` in results written before they were recorded).
    """

    quantity: str
    condition: str
    predicted: float
    measured: float
    uncertainty: float
    verdict: str
    rule: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)
    bound: str = ""
    tolerance: float | None = None
    slack_reason: str = ""

    def __post_init__(self) -> None:
        _check_bound(self.bound)
        if not self.conditions and self.condition:  # structured fields of the condition text
            object.__setattr__(self, "conditions", parse_conditions(self.condition))

    @property
    def agrees(self) -> bool:
        return self.verdict == AGREE

    @property
    def judged(self) -> bool:
        """False for a reference row (verdict ``"reported"``)."""
        return self.verdict != REPORTED

    @property
    def measured_text(self) -> str:
        """``measured`` as a value, or ``"< x"`` / ``"> x"`` for a bound."""
        sign = {"": "", "upper": "< ", "lower": "> "}[self.bound]
        return f"{sign}{self.measured:.4g}"


def judge(
    quantity: str,
    predicted: float,
    measured: float,
    uncertainty: float,
    rule: Rule,
    *,
    condition: str = "",
    conditions: Mapping[str, Any] | None = None,
    bound: str = "",
    reference: bool = False,
    **extra: Any,
) -> Row:
    """A :class:`Row` with its verdict under ``rule``; ``bound="upper"``/``"lower"`` when
    ``measured`` is a censored bound; ``reference=True`` for a reported, unjudged row
    (verdict ``"reported"``; whether the rule would hold is in ``extra["rule_holds"]``)."""
    p, m, u = float(predicted), float(measured), float(uncertainty)
    holds = rule.agrees(p, m, u, bound)
    if reference:
        extra = {**extra, "rule_holds": holds}
    return Row(
        quantity=quantity,
        condition=condition,
        predicted=p,
        measured=m,
        uncertainty=u,
        verdict=REPORTED if reference else (AGREE if holds else DISAGREE),
        rule=rule.text_for(bound),
        extra=jsonable(extra),
        conditions=jsonable(dict(conditions or {})),
        bound=bound,
        tolerance=float(rule.tolerance),
        slack_reason=rule.slack_reason,
    )


@dataclass(frozen=True)
class Result:
    """Everything one run of one experiment at one preset reports.

    ``figures`` are paths relative to the folder holding ``result.json``.
    """

    experiment: str
    preset: str
    rows: tuple[Row, ...]
    config: Mapping[str, Any]
    seed: int
    device: str
    versions: Mapping[str, str]
    git_revision: str
    wall_seconds: float
    figures: tuple[str, ...] = ()
    created: str = ""
    schema: int = SCHEMA

    @property
    def verdict(self) -> str:
        """``"agree"`` when every judged row agrees (reference rows aside), else
        ``"disagree"``."""
        judged = [r for r in self.rows if r.judged]
        return AGREE if judged and all(r.agrees for r in judged) else DISAGREE

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON values: a non-finite float is ``None``, and ``non_finite`` maps its
        place (a JSON pointer) to ``"nan"``, ``"inf"`` or ``"-inf"`` (:func:`tidy.strict`)."""
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict
        d, non_finite = strict(jsonable(d))
        if non_finite:
            d["non_finite"] = non_finite
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def table(self) -> list[dict[str, Any]]:
        """One flat record per row (:func:`validation.tidy.rows_table`), with the
        experiment and preset."""
        return rows_table(self.rows, experiment=self.experiment, preset=self.preset)

    def to_frame(self):
        """:meth:`table` as a pandas DataFrame (pandas is optional)."""
        return to_frame(self.table())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Result:
        d = restore(copy.deepcopy(dict(d)), d.get("non_finite", {}))
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["rows"] = tuple(Row(**r) for r in d["rows"])
        kw["figures"] = tuple(d.get("figures", ()))
        return cls(**kw)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Result:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def write(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/result.json`` (strict JSON) and ``folder/result.csv`` (:meth:`table`)
        atomically; returns the JSON's path."""
        path = Path(folder) / RESULT_FILE
        atomic_write_text(path, self.to_json())
        atomic_write_text(path.with_name(CSV_FILE), write_csv(self.table()))
        return path


def jsonable(obj: Any) -> Any:
    """``obj`` with dataclasses, tuples, numpy scalars/arrays and paths made JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist") and type(obj).__module__ == "numpy":
        return jsonable(obj.tolist())
    if isinstance(obj, bool | int | float | str) or obj is None:
        return obj
    return repr(obj)


def nan_to_none(obj: Any) -> Any:
    """``obj`` (made JSON-ready by :func:`validation.result.jsonable`) with every float NaN
    replaced by ``None``: NaN never equals itself, so it would break the round trip of a
    result through ``result.json``."""
    obj = jsonable(obj)
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def software_versions() -> dict[str, str]:
    """Versions of python, numpy, scipy, torch (if importable) and physdiff."""
    import numpy
    import scipy

    import physdiff

    out = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "physdiff": physdiff.__version__,
    }
    try:
        import torch

        out["torch"] = torch.__version__
        if torch.cuda.is_available():
            out["cuda"] = str(torch.version.cuda)
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is needed by every experiment
        out["torch"] = "absent"
    return out


def git_revision(folder: str | os.PathLike | None = None) -> str:
    """``git rev-parse HEAD`` of the checkout (``+dirty`` with uncommitted changes), or
    ``"unknown"`` outside a git checkout."""
    cwd = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        rev = head.stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev + ("+dirty" if status.returncode == 0 and status.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def new_result(
    experiment: str,
    preset: str,
    rows: Sequence[Row],
    config: Any,
    *,
    seed: int,
    device: str,
    started: float,
    figures: Sequence[str] = (),
) -> Result:
    """A :class:`Result` stamped with versions, git revision, the wall time since
    ``started`` (a ``time.perf_counter()`` value) and the UTC creation time."""
    return Result(
        experiment=experiment,
        preset=preset,
        rows=tuple(rows),
        config=jsonable(config),
        seed=int(seed),
        device=str(device),
        versions=software_versions(),
        git_revision=git_revision(),
        wall_seconds=round(time.perf_counter() - started, 3),
        figures=tuple(figures),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically (small: ``dpi`` 100 by default), with the
    library's writer (:func:`physdiff.plot.save_figure`: reproducible metadata)."""
    from physdiff.plot import save_figure as save

    return save(fig, path, "png", dpi)


@contextmanager
def saved_figure(
    path: str | os.PathLike, figsize: tuple[float, float], *, dpi: int = 100
) -> Iterator[Any]:
    """A matplotlib ``Figure`` of ``figsize`` inches (constrained layout, an Agg canvas,
    no pyplot) drawn under :func:`physdiff.plot.style` and, when the block ends without an
    error, saved to ``path`` by :func:`save_figure` at ``dpi``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from physdiff.plot import style

    with style():
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig
        save_figure(fig, path, dpi=dpi)
