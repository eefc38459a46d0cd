"""The ``physdiff`` command: help, ``convert`` against the process functions, errors."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import assert_usage_error, json_result, run_command, strict_json

from physdiff import __version__
from physdiff.cli import COMMANDS
from physdiff.processes import DDPM, PRESETS

_strict_json = strict_json
run_main = run_command


def convert_json(capsys, *argv):
    return json_result(capsys, "convert", *argv)


# -- help and startup ----------------------------------------------------------------------


def test_help_via_main(capsys):
    rc, out, _ = run_main(capsys, "--help")
    assert rc == 0
    for cmd in COMMANDS:
        assert cmd in out


def test_import_loads_no_command():
    # the command table is lazy: importing the package imports no command module
    code = (
        "import sys, physdiff.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('physdiff.cli.')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_subcommand_help(capsys, cmd):
    rc, out, _ = run_main(capsys, cmd, "--help")
    assert rc == 0 and "usage: physdiff " + cmd in out


def test_help_via_subprocess():
    r = subprocess.run(
        [sys.executable, "-m", "physdiff.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "convert" in r.stdout and "atlas" in r.stdout


def test_console_script_help():
    exe = shutil.which(
        "physdiff", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    )
    if exe is None:
        pytest.skip("the physdiff console script is not installed (pip install -e .)")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "convert" in r.stdout


def test_no_command_is_a_usage_error(capsys):
    rc, out, err = run_main(capsys)
    assert rc == 2 and "usage" in err


def test_startup_and_help_import_no_heavy_module():
    heavy = ("matplotlib", "numba", "torch", "tqdm", "sympy", "physdiff.figures")
    code = (
        "import sys\nfrom physdiff.cli import main\nrc = main(['--help'])\n"
        "main(['convert', '--delta', '1', '--json'])\n"
        f"print('LOADED=' + ','.join(m for m in {heavy!r} if m in sys.modules))\n"
        "sys.exit(rc)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "LOADED="


# -- convert: numbers equal the process functions -------------------------------------------


def test_delta_one_to_ddpm(capsys):
    res = convert_json(capsys, "--delta", "1", "--to", "ddpm")
    ddpm = PRESETS["ddpm"]
    assert isinstance(ddpm, DDPM)
    e = res["targets"]["ddpm"]
    assert list(res["targets"]) == ["ddpm"]
    steps = e["steps"]
    kf, kc, kn = steps["floor"]["step"], steps["ceil"]["step"], steps["nearest"]["step"]
    assert ddpm.deltas[kf] <= 1.0 <= ddpm.deltas[kc]
    assert kc - kf == 1  # delta = 1 is no step's exact delta
    assert kn in (kf, kc)
    assert kn == ddpm.step_of_delta(1.0, "nearest")
    for r in ("floor", "ceil", "nearest"):
        k = steps[r]["step"]
        assert steps[r]["delta"] == ddpm.deltas[k]
        assert steps[r]["ou_time"] == ddpm.ou_times[k]
    # the nearest step is the one with the closer delta on the log scale here
    assert abs(math.log(ddpm.deltas[kn])) <= abs(math.log(ddpm.deltas[kf + kc - kn]))
    assert e["ou_time"] == pytest.approx(math.log(2) / 2, rel=1e-15)
    assert res["ou_time"] == pytest.approx(math.log(2) / 2, rel=1e-15)
    assert e["time"] == pytest.approx(ddpm.time_of_delta(1.0), rel=1e-14)
    assert kf <= e["time"] <= kc


def test_delta_one_to_all(capsys):
    res = convert_json(capsys, "--delta", "1")
    assert list(res["targets"]) == list(PRESETS)
    assert res["log_snr"] == 0.0
    assert res["targets"]["ou"]["time"] == pytest.approx(math.log(2) / 2, rel=1e-15)
    for name, proc in PRESETS.items():
        e = res["targets"][name]
        t = proc.time_of_delta(1.0)
        assert e["time"] == pytest.approx(t, rel=1e-14)
        assert e["delta"] == pytest.approx(1.0, rel=1e-12)
        assert e["alpha"] == pytest.approx(proc.alpha(t), rel=1e-14)
        assert e["sigma"] == pytest.approx(proc.sigma(t), rel=1e-14)
        assert e["log_snr"] == pytest.approx(0.0, abs=1e-12)
        assert ("steps" in e) == isinstance(proc, DDPM)


@pytest.mark.parametrize("name", list(PRESETS))
def test_time_from_each_process_round_trips(capsys, name):
    proc = PRESETS[name]
    t = proc.t_min + 0.37 * (proc.t_max - proc.t_min)
    res = convert_json(capsys, "--t", repr(t), "--from", name)
    d = proc.delta(t)
    assert res["delta"] == pytest.approx(d, rel=1e-14)
    assert res["targets"][name]["time"] == pytest.approx(t, rel=1e-10)
    assert res["ou_time"] == pytest.approx(0.5 * math.log1p(d), rel=1e-14)
    for other, p in PRESETS.items():
        e = res["targets"][other]
        if p.delta_min <= d <= p.delta_max:
            assert e["time"] == pytest.approx(p.time_of_delta(d), rel=1e-12)
            assert e["delta"] == pytest.approx(d, rel=1e-9)
        else:
            assert e["time"] is None and "outside" in e["note"]


def test_step_equals_t_from_ddpm(capsys):
    a = convert_json(capsys, "--step", "250")
    b = convert_json(capsys, "--t", "250", "--from", "ddpm")
    assert a["delta"] == b["delta"] == PRESETS["ddpm"].delta_of_step(250)
    assert a["targets"] == b["targets"]
    assert a["targets"]["ddpm"]["steps"]["floor"]["step"] == 250
    assert a["targets"]["ddpm"]["steps"]["ceil"]["step"] == 250
    assert a["source"] == {"step": 250, "from": "ddpm"}


def test_delta_outside_a_range_is_null_with_a_note(capsys):
    res = convert_json(capsys, "--delta", "1e-6")
    ve, ddpm, ou = res["targets"]["ve"], res["targets"]["ddpm"], res["targets"]["ou"]
    assert ve["time"] is None and ve["alpha"] is None and "outside the range" in ve["note"]
    assert ddpm["time"] is None and ddpm["steps"] is None and "outside" in ddpm["note"]
    assert ou["time"] == pytest.approx(0.5 * math.log1p(1e-6), rel=1e-14)


def test_data_end_gives_valid_json(capsys):
    res = convert_json(capsys, "--t", "0", "--from", "ou")
    assert res["delta"] == 0.0 and res["log_snr"] is None and "inf" in res["note"]
    assert res["targets"]["vp-cosine"]["time"] == 0.0
    assert res["targets"]["ou"]["log_snr"] is None


def test_multiple_targets_and_case(capsys):
    res = convert_json(capsys, "--delta", "3", "--to", "OU", "edm")
    assert list(res["targets"]) == ["ou", "edm"]
    assert res["targets"]["edm"]["time"] == pytest.approx(math.sqrt(3), rel=1e-15)


def test_table_output(capsys):
    rc, out, err = run_main(capsys, "convert", "--delta", "1")
    assert rc == 0 and err == ""
    for name in PRESETS:
        assert name in out
    ddpm = PRESETS["ddpm"]
    kf = ddpm.step_of_delta(1.0, "floor")
    assert f"floor {kf}" in out and f"ceil {kf + 1}" in out
    rc, out, _ = run_main(capsys, "convert", "--delta", "1e-6", "--to", "ve")
    assert rc == 0 and "outside the range" in out


# -- errors: exit 2, one line on stderr naming the argument, no traceback ------------------


@pytest.mark.parametrize(
    ("argv", "arg"),
    [
        (["--delta", "-1"], "--delta"),
        (["--delta=-1e-3"], "--delta"),
        (["--delta", "0"], "--delta"),
        (["--delta", "nan"], "--delta"),
        (["--delta", "abc"], "--delta"),
        (["--t", "2", "--from", "nope"], "--from"),
        (["--t", "2"], "--t"),
        (["--delta", "1", "--from", "ou"], "--from"),
        (["--t", "1.5", "--from", "vp-linear"], "--t"),
        (["--t", "-0.1", "--from", "ou"], "--t"),
        (["--step", "1000"], "--step"),
        (["--step", "2.5"], "--step"),
        (["--step", "-1"], "--step"),
        (["--delta", "1", "--to", "nope"], "--to"),
        (["--delta", "1", "--step", "3"], "--step"),
        ([], "--delta"),
    ],
)
def test_bad_input_exits_2_naming_the_argument(capsys, argv, arg):
    assert_usage_error(*run_main(capsys, "convert", *argv), arg)


def test_bad_input_via_subprocess_has_no_traceback():
    r = subprocess.run(
        [sys.executable, "-m", "physdiff.cli", "convert", "--delta", "-2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--delta" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_json_numbers_are_finite_over_a_sweep(capsys):
    # every value in the output is a finite number, null, string, int or container
    for d in np.geomspace(1e-7, 1e10, 9):
        res = convert_json(capsys, "--delta", repr(float(d)))
        stack = [res]
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)
            elif isinstance(x, float):
                assert math.isfinite(x)


# -- the envelope of every command's --json ------------------------------------------------

ENVELOPE_CASES = {
    "convert": ["--delta", "1"],
    "list-figures": [],
    "critical": ["--ensemble", "two-deltas", "--m", "1e300"],  # Lambda overflows: null
    "collapse": ["--d", "64", "--variance", "1e300", "--n-train", "1e4"],  # S2 overflows: null
    "phase-diagram": ["--d", "10", "--n-t", "5", "--n-alpha", "5", "--dpi", "20"],
    "attractors": ["--points", "circle", "--n-train", "4", "--n-samples", "8", "--steps", "5"],
    "entropy": ["--means=-1,1", "--levels", "20", "--order", "20"],
    "guide": ["--method", "np", "--remove", "1", "--n-samples", "20", "--steps", "5"],
}


def test_envelope_cases_cover_every_command():
    assert set(ENVELOPE_CASES) == set(COMMANDS) - {"atlas"}  # atlas writes files, no JSON


@pytest.mark.parametrize("cmd", sorted(ENVELOPE_CASES))
def test_every_json_output_is_the_strict_envelope(capsys, tmp_path, cmd):
    argv = [cmd, *ENVELOPE_CASES[cmd], "--json"]
    if cmd == "phase-diagram":
        argv += ["--out", str(tmp_path)]
    rc, out, err = run_main(capsys, *argv)
    assert rc == 0, err
    env = _strict_json(out)  # NaN or Infinity would raise here
    assert list(env) == ["command", "version", "input", "result"]
    assert env["command"] == cmd and env["version"] == __version__
    assert isinstance(env["input"], dict) and isinstance(env["result"], dict)
    assert "json" not in env["input"] and "func" not in env["input"]


def test_non_finite_values_are_null_with_the_reason(capsys):
    rc, out, err = run_main(capsys, "collapse", *ENVELOPE_CASES["collapse"], "--json")
    assert rc == 0, err
    res = _strict_json(out)["result"]
    assert res["spectrum"]["sum_of_squares"] is None
    assert res["non_finite"] == {"result.spectrum.sum_of_squares": "inf"}
    # the text mode answers too, with the same numbers
    rc, text, err = run_main(capsys, "collapse", *ENVELOPE_CASES["collapse"])
    assert rc == 0 and err == ""
    assert f"{res['results'][0]['delta']:.6g}" in text
    rc, out, err = run_main(capsys, "critical", *ENVELOPE_CASES["critical"], "--json")
    assert rc == 0, err
    res = _strict_json(out)["result"]
    assert res["top_eigenvalue"] is None and "overflows" in res["note"]
    assert all(r["delta"] is None and r["reason"] for r in res["criteria"].values())


def test_library_errors_name_the_flag(capsys):
    # the library names its argument (intrinsic_dim), the command the flag
    rc, out, err = run_main(
        capsys, "collapse", "--d", "10", "--n-train", "20", "--intrinsic-dim", "11"
    )
    assert rc == 2 and out == ""
    assert err.startswith("physdiff collapse: error: argument --intrinsic-dim: must be")
    assert "[1, d = 10]" in err
