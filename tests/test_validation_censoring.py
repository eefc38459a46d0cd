"""Censored measurements (bounds), reference rows and the recorded slack of every rule."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from physdiff.errors import InputError
from validation import experiments
from validation.config import VerdictConfig
from validation.report import tolerance_audit, write_report
from validation.result import AGREE, DISAGREE, NO_SLACK, REPORTED, Result, Rule, judge


def test_upper_bound_agrees_only_with_a_prediction_below_it():
    rule = Rule(k=2.0, tolerance=0.1)
    # true value < 1.0: a prediction of 0.5 is consistent, 1.25 is within 2 * 0.05 + 0.1
    assert rule.agrees(0.5, 1.0, 0.05, "upper")
    assert rule.agrees(1.2, 1.0, 0.05, "upper")
    assert not rule.agrees(1.21, 1.0, 0.05, "upper")
    # the same numbers as a two-sided measurement: 0.5 is far off
    assert not rule.agrees(0.5, 1.0, 0.05)


def test_lower_bound_agrees_only_with_a_prediction_above_it():
    rule = Rule(k=3.0, tolerance=0.0)
    assert rule.agrees(5.0, 1.0, 0.1, "lower")
    assert rule.agrees(0.7, 1.0, 0.1, "lower")
    assert not rule.agrees(0.69, 1.0, 0.1, "lower")
    assert not rule.agrees(math.nan, 1.0, 0.1, "lower")
    with pytest.raises(ValueError, match="bound"):
        rule.agrees(0.0, 1.0, 0.1, "above")


def test_bound_rows_are_strict_json_and_shown_as_bounds(tmp_path):
    rule = Rule(k=3.0, tolerance=0.5, reason="stated model error")
    rows = [
        judge("crossing", -1.5, -6.9, 0.0, rule, condition="n=1024", bound="upper"),
        judge("crossing", 0.9, 2.3, 0.0, rule, condition="n=20", bound="lower"),
        judge("ref", 0.36, -1.7, 0.02, rule, condition="n=2000", reference=True),
        judge("plain", 1.0, 1.0, 0.01, Rule(k=3.0)),
    ]
    assert [r.verdict for r in rows] == [DISAGREE, DISAGREE, REPORTED, AGREE]
    assert rows[0].rule.startswith("bound: predicted <=") and rows[0].measured_text == "< -6.9"
    assert rows[1].measured_text == "> 2.3"
    assert rows[2].extra["rule_holds"] is False and not rows[2].judged
    assert rows[0].slack_reason == "stated model error" and rows[3].slack_reason == NO_SLACK
    res = Result("x", "cpu", tuple(rows), {}, 0, "cpu", {}, "unknown", 1.0)
    text = res.to_json()
    assert "NaN" not in text and "Infinity" not in text
    back = Result.from_dict(json.loads(text))
    assert back.rows == res.rows
    assert res.verdict == DISAGREE
    folder = tmp_path / "x" / "cpu"
    folder.mkdir(parents=True)
    res.write(folder)
    report, _ = write_report(tmp_path)
    md = report.read_text()
    assert "< -6.9 +- 0" in md and "> 2.3 +- 0" in md and "| reported |" in md
    assert "1 of 3 comparisons agree" in md and "1 reference row" in md
    audit = tolerance_audit([(folder / "result.json", res)])
    assert audit == [
        {
            "experiment": "x",
            "preset": "cpu",
            "tolerance_min": 0.5,
            "tolerance_max": 0.5,
            "reason": "stated model error",
            "quantity": "crossing",
            "rows": 2,
            "over_2se": 2,
        }
    ]


def test_a_reference_row_does_not_decide_the_result():
    rule = Rule(k=3.0)
    rows = (judge("a", 1.0, 1.0, 0.1, rule), judge("b", 0.0, 9.0, 0.1, rule, reference=True))
    res = Result("x", "cpu", rows, {}, 0, "cpu", {}, "unknown", 1.0)
    assert res.verdict == AGREE


def test_every_named_tolerance_has_a_reason():
    """The tolerance audit: a nonzero tolerance field of any experiment's verdict settings
    without a stated reason is refused by VerdictConfig.rule."""
    for name in experiments.EXPERIMENTS:
        mod = experiments.load(name)
        for preset, cfg in mod.PRESETS.items():
            v = cfg.verdict
            for f in dataclasses.fields(v):
                if f.name.startswith("tolerance") and getattr(v, f.name) != 0:
                    rule = v.rule(f.name)
                    assert rule.reason, (name, preset, f.name)
                    assert rule.tolerance == getattr(v, f.name)


def test_verdict_rule_refuses_a_slack_without_reason():
    @dataclasses.dataclass(frozen=True)
    class V(VerdictConfig):
        tolerance_x: float = 0.2

    with pytest.raises(InputError, match="REASONS"):
        V().rule("tolerance_x")
    with pytest.raises(InputError, match="no tolerance field"):
        V().rule("tolerance_y")
    with pytest.raises(InputError, match="reason"):
        V().rule(0.3)
    assert V().rule("tolerance_x", reason="grid", scale=2.0) == Rule(3.0, 0.4, "grid")
    assert V().rule().tolerance == 0.0 and V().rule().slack_reason == NO_SLACK
