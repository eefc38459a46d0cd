"""Bad input to every subcommand: a one-line usage error naming the flag (exit status 2,
no traceback), or an answer in strict JSON checked against the library. The library's own
cases are in tests/test_bad_input.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cli_helpers import assert_usage_error, json_result, run_command

from physdiff import memorization, symmetry

# a valid, cheap invocation of each command and the numeric flags to spoil in it
BASES = {
    "convert": (["convert", "--delta", "1.0"], ["--delta", "--t"]),
    "critical": (["critical", "--ensemble", "two-deltas"], ["--m", "--variance"]),
    "collapse": (
        ["collapse", "--d", "16", "--n-train", "1000"],
        ["--d", "--n-train", "--variance"],
    ),
    "phase-diagram": (
        ["phase-diagram", "--d", "16", "--n-alpha", "10", "--n-t", "10"],
        ["--alpha-min", "--alpha-max", "--n-alpha", "--t-max", "--dpi"],
    ),
    "attractors": (
        [
            "attractors",
            "--points",
            "circle",
            "--n-train",
            "6",
            "--n-samples",
            "16",
            "--steps",
            "10",
        ],
        ["--n-train", "--n-samples", "--steps", "--delta-end", "--dedup"],
    ),
    "entropy": (
        ["entropy", "--means=-2,2", "--levels", "20", "--order", "20"],
        ["--stds", "--weights", "--levels", "--delta-min", "--rel-height"],
    ),
    "guide": (
        ["guide", "--method", "np", "--remove", "0", "--n-samples", "50", "--steps", "20"],
        ["--remove", "--scale", "--n-samples", "--steps", "--p-max"],
    ),
}
NOT_NUMBERS = ["nan", "inf", "-inf", "abc", ""]
CASES = [
    (cmd, flag, value)
    for cmd, (_, flags) in BASES.items()
    for flag in flags
    for value in NOT_NUMBERS
]


def _argv(cmd: str, flag: str, value: str, tmp_path) -> list[str]:
    base, _ = BASES[cmd]
    argv = list(base)
    if flag in argv:
        i = argv.index(flag)
        del argv[i : i + 2]
    if cmd == "phase-diagram":
        argv += ["--out", str(tmp_path / "pd")]
    return [*argv, f"{flag}={value}"]


@pytest.mark.parametrize(("cmd", "flag", "value"), CASES, ids=[f"{c}{f}={v}" for c, f, v in CASES])
def test_a_value_that_is_not_a_finite_number_names_its_flag(cmd, flag, value, tmp_path, capsys):
    assert_usage_error(*run_command(capsys, *_argv(cmd, flag, value, tmp_path)), flag)


# values the library cannot represent or compute: a clear error naming the flag
EXTREMES = [
    (["phase-diagram", "--d", "16", "--alpha-max", "1e300"], "--alpha-max"),
    (["entropy", "--means=-1e200,1e200"], "--means"),
    (["entropy", "--means=-2,2", "--stds", "1e300"], "--stds"),
    (
        ["guide", "--method", "np", "--remove", "0", "--n-samples", "50", "--scale", "1e300"],
        "--scale",
    ),
    (
        [
            "guide",
            "--method",
            "dng-exact",
            "--remove",
            "0",
            "--n-samples",
            "50",
            "--scale",
            "1e300",
        ],
        "--scale",
    ),
    (["phase-diagram", "--d", "16", "--out", "{file}"], "--out"),
]


@pytest.mark.parametrize(
    ("argv", "flag"), EXTREMES, ids=[" ".join(a[:2] + [f]) for a, f in EXTREMES]
)
def test_an_extreme_value_beyond_what_can_be_computed_names_its_flag(argv, flag, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    argv = [a.replace("{file}", str(blocker)) for a in argv]
    if argv[0] == "phase-diagram" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "pd")]
    assert_usage_error(*run_command(capsys, *argv), flag)


def test_critical_overflowing_m_answers_in_strict_json_with_reasons(capsys):
    res = json_result(capsys, "critical", "--ensemble", "two-deltas", "--m", "1e300")
    for row in res["criteria"].values():
        assert row["delta"] is None and "m must satisfy" in row["reason"]
    # inside the range the closed form itself: delta_c = m^2
    res = json_result(capsys, "critical", "--ensemble", "two-deltas", "--m", "1e100")
    assert res["criteria"]["log-density"]["delta"] == pytest.approx(1e200, rel=1e-12)
    assert res["criteria"]["log-density"]["delta"] == pytest.approx(
        symmetry.critical_two_deltas(1e100).delta, rel=1e-15
    )


def test_collapse_at_a_huge_variance_answers_as_the_library_does(capsys):
    res = json_result(capsys, "collapse", "--d", "64", "--variance", "1e300", "--n-train", "1e4")
    text = json.dumps(res)
    assert "NaN" not in text and "Infinity" not in text
    (row,) = res["results"]
    expected = float(memorization.collapse_delta(1e4, np.full(64, 1e300)))
    assert math.isfinite(expected)
    assert row["delta"] == pytest.approx(expected, rel=1e-12)
    assert row["time"] is None and "outside the range" in row["note"]  # beyond the process
    # the sum of squares (1e600) is what overflows: null, with its reason
    assert res["spectrum"]["sum_of_squares"] is None
    assert res["non_finite"]["result.spectrum.sum_of_squares"] == "inf"


def test_phase_diagram_data_file_is_strict_json_at_a_huge_variance(tmp_path, capsys):
    out = tmp_path / "pd"
    rc, _, err = run_command(
        capsys, "phase-diagram", "--d", "16", "--variance", "1e300", "--n-alpha", "10",
        "--n-t", "10", "--out", str(out),
    )  # fmt: skip
    assert rc == 0, err

    def refuse(c):
        raise ValueError(c)

    data = json.loads((out / "phase-diagram.json").read_text(), parse_constant=refuse)
    assert data["non_finite"] == {"data.spectrum.sum_of_squares": "inf"}
