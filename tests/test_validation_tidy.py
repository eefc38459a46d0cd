"""Tidy results: strict JSON with the non-finite values named, structured conditions,
the CSV beside result.json, Result.to_frame, labelled arrays."""

from __future__ import annotations

import csv
import io
import json
import math
import sys

import numpy as np
import pytest

from validation.result import Result, Rule, judge, new_result
from validation.tidy import labelled, parse_conditions, restore, strict


def _refuse(token):
    raise ValueError(f"non-standard JSON token {token}")


def _result():
    rule = Rule(k=2.0, tolerance=0.1)
    rows = [
        judge("t_C", 0.5, 0.52, 0.01, rule, condition="d=8, n=64 (alpha_n=0.520)", n_seen=3),
        judge("t_C", math.inf, 0.4, 0.02, rule, condition="d=16, n=64, criterion=jacobian"),
        judge("rate", 1.0, math.nan, 0.1, rule, condition="digits, K = 2, 6", width=-math.inf,
              conditions={"K": [2, 6], "data": "digits"}),
    ]  # fmt: skip
    return new_result("demo", "cpu", rows, {"a": 1.5, "b": math.nan}, seed=0, device="cpu",
                      started=0.0)  # fmt: skip


def test_strict_json_names_the_non_finite_values_and_round_trips(tmp_path):
    res = _result()
    text = res.to_json()
    d = json.loads(text, parse_constant=_refuse)  # strict: no NaN/Infinity tokens
    assert d["rows"][1]["predicted"] is None and d["rows"][2]["measured"] is None
    assert d["non_finite"] == {
        "/rows/1/predicted": "inf",
        "/rows/2/measured": "nan",
        "/rows/2/extra/width": "-inf",
        "/config/b": "nan",
    }
    back = Result.from_dict(d)
    assert back.rows[1].predicted == math.inf and math.isnan(back.rows[2].measured)
    assert back.rows[2].extra["width"] == -math.inf and math.isnan(back.config["b"])
    assert back.rows[0] == res.rows[0] and back.verdict == res.verdict
    path = res.write(tmp_path)
    assert Result.load(path).rows[1].predicted == math.inf


def test_strict_and_restore_are_inverse():
    obj = {"a": [1.0, math.nan, {"b/c": math.inf}], "d~": -math.inf, "e": "x"}
    clean, nf = strict(obj)
    assert clean == {"a": [1.0, None, {"b/c": None}], "d~": None, "e": "x"}
    assert nf == {"/a/1": "nan", "/a/2/b~1c": "inf", "/d~0": "-inf"}
    back = restore(json.loads(json.dumps(clean)), nf)
    assert math.isnan(back["a"][1]) and back["a"][2]["b/c"] == math.inf and back["d~"] < 0
    with pytest.raises(ValueError, match="non_finite"):
        restore({"a": None}, {"/a": "huge"})


def test_conditions_are_structured():
    res = _result()
    assert res.rows[0].conditions == {"d": 8, "n": 64, "alpha_n": 0.52}
    assert res.rows[1].conditions == {"d": 16, "n": 64, "criterion": "jacobian"}
    assert res.rows[2].conditions == {"K": [2, 6], "data": "digits"}  # given, not parsed
    assert parse_conditions("digits, K = 2, 6, 16") == {}  # a list is not read as K = 2
    assert parse_conditions("mixture |m|=2, s2=0.25, lambda = 1") == {"s2": 0.25, "lambda": 1}
    # an old result.json without the field gets it from the text
    d = json.loads(res.to_json())
    del d["rows"][0]["conditions"]
    assert Result.from_dict(d).rows[0].conditions["alpha_n"] == 0.52


def test_csv_beside_result_json(tmp_path):
    res = _result()
    res.write(tmp_path)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "result.csv").read_text())))
    assert len(rows) == 3
    assert rows[0]["experiment"] == "demo" and rows[0]["quantity"] == "t_C"
    assert float(rows[0]["condition.d"]) == 8 and float(rows[0]["extra.n_seen"]) == 3
    assert rows[1]["predicted"] == "inf" and rows[2]["measured"] == "nan"
    assert rows[1]["condition.criterion"] == "jacobian" and rows[0]["condition.criterion"] == ""
    assert "condition.K" not in rows[0]  # lists stay in result.json


def test_to_frame():
    pd = pytest.importorskip("pandas")
    df = _result().to_frame()
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert list(df["condition.d"].iloc[:2]) == [8, 16]
    assert df["verdict"].iloc[0] == "agree"


def test_to_frame_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="needs pandas"):
        _result().to_frame()


def test_labelled_dataset():
    ds = labelled(
        {"alpha_n": [0.1, 0.2], "t": [0.0, 1.0, 2.0]},
        {"regime": (["alpha_n", "t"], np.zeros((2, 3))), "t_c": (["alpha_n"], [1.0, 2.0])},
        {"process": "ou"},
    )
    assert ds["coords"]["t"] == {"dims": ["t"], "data": [0.0, 1.0, 2.0]}
    assert ds["data_vars"]["regime"]["dims"] == ["alpha_n", "t"]
    json.dumps(ds)
    xr = pytest.importorskip("xarray")
    assert xr.Dataset.from_dict(ds)["regime"].dims == ("alpha_n", "t")


def test_labelled_checks_shapes():
    with pytest.raises(ValueError, match=r"data_vars\['v'\] must have shape \(2,\)"):
        labelled({"x": [1, 2]}, {"v": (["x"], [1, 2, 3])})
    with pytest.raises(ValueError, match="unknown coordinates"):
        labelled({"x": [1, 2]}, {"v": (["y"], [1, 2])})


def test_committed_results_are_strict_json_with_a_csv():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "validation" / "results"
    files = sorted(root.glob("*/*/result.json"))
    assert files
    for f in files:
        d = json.loads(f.read_text(), parse_constant=_refuse)
        assert (f.parent / "result.csv").is_file(), f
        assert len(Result.from_dict(d).rows) == len(d["rows"])
