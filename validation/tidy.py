"""Tidy forms of results: strict JSON, structured conditions, tables and labelled arrays.

* **Strict JSON.** JSON has no NaN or infinity (RFC 8259; Python writes the non-standard
  tokens ``NaN``/``Infinity`` unless told not to). :func:`strict` replaces every non-finite
  float by ``null`` and returns where it was and what it was (``{"/rows/3/predicted":
  "inf"}``, JSON-pointer paths, RFC 6901); :func:`restore` puts the values back, so a
  result survives the round trip through ``result.json`` exactly.
* **Conditions.** :func:`parse_conditions` reads the ``key=value`` pairs of a row's
  condition text (``"d=8, n=64 (alpha_n=0.520)"`` -> ``{"d": 8, "n": 64, "alpha_n": 0.52}``):
  numbers become numbers, single words stay strings; a value followed by a comma and
  another number (a list, ``K = 2, 6, 16``) is not read.
* **Tables.** :func:`rows_table` gives one flat record per row (the row's fields, its
  conditions as ``condition.<key>`` columns, its scalar ``extra`` numbers as
  ``extra.<key>``); :func:`write_csv` writes them as CSV and :func:`to_frame` as a pandas
  DataFrame (pandas optional).
* **Labelled arrays.** :func:`labelled` (from :mod:`physdiff.labelled`) builds the
  dictionary that ``xarray.Dataset.from_dict`` reads (named coordinates and variables
  with their dimensions), from plain numpy arrays, without importing xarray.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from physdiff.labelled import labelled

__all__ = [
    "strict",
    "restore",
    "parse_conditions",
    "rows_table",
    "write_csv",
    "to_frame",
    "labelled",
]


def _escape(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def strict(obj: Any, path: str = "") -> tuple[Any, dict[str, str]]:
    """``(obj with non-finite floats as None, {path: "nan" | "inf" | "-inf"})`` for JSON
    values (dicts, lists, scalars)."""
    found: dict[str, str] = {}

    def walk(o, p):
        if isinstance(o, float) and not math.isfinite(o):
            found[p] = repr(o)
            return None
        if isinstance(o, Mapping):
            return {k: walk(v, f"{p}/{_escape(k)}") for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [walk(v, f"{p}/{i}") for i, v in enumerate(o)]
        return o

    return walk(obj, path), found


def restore(obj: Any, non_finite: Mapping[str, str]) -> Any:
    """The inverse of :func:`strict`: every path of ``non_finite`` set back to its float."""
    for path, text in non_finite.items():
        if text not in ("nan", "inf", "-inf"):
            raise ValueError(f"non_finite[{path!r}] must be 'nan', 'inf' or '-inf'; got {text!r}")
        keys = [k.replace("~1", "/").replace("~0", "~") for k in path.split("/")[1:]]
        if not keys:
            return float(text)
        node = obj
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = float(text)
        else:
            node[last] = float(text)
    return obj


_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(
    r"(?<![\w.|])([A-Za-z_][A-Za-z0-9_]*)\s?=\s?"
    rf"(?:({_NUMBER})(?![\w.])(?!,\s*\d)|([A-Za-z][\w-]*)(?![\w.=]))"
)


def parse_conditions(text: str) -> dict[str, Any]:
    """The ``key=value`` pairs of a condition's text (the first of a repeated key)."""
    out: dict[str, Any] = {}
    for m in _PAIR.finditer(text or ""):
        key, num, word = m.groups()
        if key in out:
            continue
        if num is not None:
            out[key] = int(num) if re.fullmatch(r"-?\d+", num) else float(num)
        else:
            out[key] = word
    return out


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str)


def rows_table(rows: Sequence[Any], **context: Any) -> list[dict[str, Any]]:
    """One flat dict per row: ``context`` (``experiment``, ``preset``, ...), the row's own
    scalar fields, ``condition.<key>`` of its conditions and ``extra.<key>`` of its scalar
    extra numbers (lists and nested values are left to ``result.json``)."""
    out = []
    for r in rows:
        d = r if isinstance(r, Mapping) else {f: getattr(r, f) for f in r.__dataclass_fields__}
        rec: dict[str, Any] = dict(context)
        for k, v in d.items():
            if k in ("extra", "conditions"):
                continue
            if _scalar(v):
                rec[k] = v
        for k, v in (d.get("conditions") or {}).items():
            if _scalar(v):
                rec[f"condition.{k}"] = v
        for k, v in (d.get("extra") or {}).items():
            if _scalar(v):
                rec[f"extra.{k}"] = v
        out.append(rec)
    return out


def _columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for rec in records:
        cols.update(dict.fromkeys(rec))
    return list(cols)


def write_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """``records`` as CSV text (the union of their keys as columns, in first-seen order;
    a missing value and ``None`` are empty, non-finite floats ``nan``/``inf``)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_columns(records), lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    return buf.getvalue()


def to_frame(records: Sequence[Mapping[str, Any]]):
    """``records`` as a pandas DataFrame (pandas is optional: a clear ImportError)."""
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError(
            "Result.to_frame needs pandas (pip install pandas); the same table is in "
            "result.csv beside result.json, and Result.table() gives it as plain dicts"
        ) from err
    return pd.DataFrame.from_records(list(records), columns=_columns(records))
