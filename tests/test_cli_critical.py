"""``physdiff critical``: JSON equals the library, per-criterion reasons, bad input exits 2."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cli_helpers import assert_usage_error, json_result, run_command, strict_json

from physdiff import symmetry as S
from physdiff.cli import main
from physdiff.ensembles import GaussianMixture
from physdiff.processes import DDPM, OU, VPLinear

_strict_json = strict_json


def run(capsys, *argv):
    return run_command(capsys, "critical", *argv)


def run_json(capsys, *argv):
    return json_result(capsys, "critical", *argv)


# -- the examples of the issue ----------------------------------------------------------------


def test_two_deltas_ddpm_json_equals_the_library(capsys):
    res = run_json(capsys, "--ensemble", "two-deltas", "--m", "1", "--process", "ddpm")
    assert res["process"] == "ddpm" and res["source"] == {"ensemble": "two-deltas", "m": 1.0}
    a, b, sp = (res["criteria"][c] for c in ("log-density", "sde-drift", "speciation"))
    ddpm = DDPM()
    # criterion (a): delta_c = m^2 = 1
    assert a["delta"] == pytest.approx(1.0, rel=1e-15)
    assert a["ou_time"] == pytest.approx(math.log(2) / 2, rel=1e-15)
    assert a["time"] == pytest.approx(float(ddpm.time_of_delta(1.0)), rel=1e-14)
    assert a["ddpm_step"] == {
        r: int(ddpm.step_of_delta(1.0, r)) for r in ("floor", "nearest", "ceil")
    }
    # criterion (b): t_c = asinh(1)/2, theta_c = sqrt(sqrt(2) - 1) (Raya & Ambrogioni 2023)
    assert b["ou_time"] == pytest.approx(math.asinh(1.0) / 2, rel=1e-14)
    assert b["theta"] == pytest.approx(math.sqrt(math.sqrt(2) - 1), rel=1e-14)
    assert b["process"] == "ddpm"
    lib = S.critical_two_deltas(1.0, "sde-drift", "ddpm")
    assert b["delta"] == pytest.approx(lib.delta, rel=1e-15)
    assert b["time"] == pytest.approx(lib.time("ddpm"), rel=1e-14)
    assert b["ddpm_step"]["nearest"] == lib.ddpm_step()
    # speciation at Lambda = 1 is t_S = 0: not a symmetry breaking; reported, not raised
    assert sp["delta"] is None and sp["time"] is None and "Lambda > 1" in sp["reason"]


def test_top_eigenvalue_table_and_json(capsys):
    rc, out, err = run(capsys, "--top-eigenvalue", "7.66", "--process", "ou")
    assert rc == 0 and err == ""
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split()}
    for crit in S.CRITERIA:
        assert crit in rows
    assert float(rows["log-density"][1]) == pytest.approx(7.66)
    res = run_json(capsys, "--top-eigenvalue", "7.66", "--process", "ou")
    lam = 7.66
    c = res["criteria"]
    assert c["log-density"]["delta"] == pytest.approx(lam)
    assert c["sde-drift"]["delta"] == pytest.approx(lam - 1 + math.hypot(lam, 1), rel=1e-14)
    assert c["sde-drift"]["ou_time"] == pytest.approx(math.asinh(lam) / 2, rel=1e-14)
    assert c["speciation"]["ou_time"] == pytest.approx(math.log(lam) / 2, rel=1e-14)
    for crit in S.CRITERIA:
        assert c[crit]["time"] == pytest.approx(c[crit]["ou_time"], rel=1e-14)  # process ou
        assert c[crit]["method"].startswith("closed form")
    assert res["top_eigenvalue"] == lam


def test_mixture_numeric_continuation(capsys):
    res = run_json(
        capsys, "--ensemble", "mixture", "--m", "2", "--variance", "0.3", "--process", "vp-linear"
    )
    m, s2 = 2.0, 0.3
    c = res["criteria"]
    # criterion (a) of N(+-m, s^2): J(0) = 0 at delta = m^2 - s^2
    assert c["log-density"]["delta"] == pytest.approx(m * m - s2, rel=1e-9)
    assert c["log-density"]["method"] == "numeric"
    mix = GaussianMixture.isotropic([0.5, 0.5], [[-m], [m]], [s2, s2])
    lib_b = S.critical_point(mix, "sde-drift", "vp-linear")
    assert c["sde-drift"]["delta"] == pytest.approx(lib_b.delta, rel=1e-12)
    assert c["sde-drift"]["time"] == pytest.approx(float(VPLinear().time_of_delta(lib_b.delta)))
    # speciation: Lambda = m^2 + s^2
    assert c["speciation"]["delta"] == pytest.approx(m * m + s2 - 1, rel=1e-12)
    assert res["top_eigenvalue"] == pytest.approx(m * m + s2)


def test_spectrum_file(tmp_path, capsys):
    spec = np.linspace(0.0, 7.66, 3072)
    f = tmp_path / "spec.npy"
    np.save(f, spec)
    res = run_json(capsys, "--spectrum-file", str(f), "--process", "ddpm")
    assert res["source"] == {"spectrum_size": 3072}
    assert res["criteria"]["log-density"]["delta"] == pytest.approx(7.66)
    txt = tmp_path / "spec.txt"
    np.savetxt(txt, spec[::-1])
    res2 = run_json(capsys, "--spectrum-file", str(txt), "--process", "ddpm")
    assert res2["criteria"] == res["criteria"]


def test_no_drift_and_no_symmetry_are_reported_per_criterion(capsys):
    res = run_json(capsys, "--ensemble", "two-deltas", "--m", "1", "--process", "ve")
    b = res["criteria"]["sde-drift"]
    assert b["delta"] is None and "no SDE drift" in b["reason"]
    assert res["criteria"]["log-density"]["delta"] == 1.0
    rc, out, err = run(capsys, "--ensemble", "two-deltas", "--m", "1", "--process", "edm")
    assert rc == 0 and "sde-drift: not defined: " in out and "no SDE drift" in out
    # m^2 < s^2: the centre never loses stability under (a) or (b)
    res = run_json(
        capsys, "--ensemble", "mixture", "--m", "0.5", "--variance", "1", "--process", "ou"
    )
    for crit in ("log-density", "sde-drift"):
        assert res["criteria"][crit]["delta"] is None
        assert "no symmetry to break" in res["criteria"][crit]["reason"]
    assert res["criteria"]["speciation"]["delta"] == pytest.approx(0.25)
    res = run_json(capsys, "--ensemble", "two-deltas", "--m", "0")
    assert all(r["delta"] is None for r in res["criteria"].values())


def test_out_of_range_time_is_null_with_a_note(capsys):
    res = run_json(capsys, "--top-eigenvalue", "1e6", "--process", "ddpm")
    a = res["criteria"]["log-density"]
    assert a["delta"] == 1e6 and a["time"] is None and a["ddpm_step"] is None and a["note"]


def test_function_matches_command(capsys):
    res = S.critical_table(top_eigenvalue=2.0, process="ou").to_dict()
    assert res == run_json(capsys, "--top-eigenvalue", "2", "--process", "ou")
    assert res["criteria"]["sde-drift"]["ou_time"] == pytest.approx(
        S.critical_from_eigenvalue(2.0, "b", OU()).ou_time
    )


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "arg"),
    [
        ([], "--ensemble"),
        (["--top-eigenvalue", "-1"], "--top-eigenvalue"),
        (["--top-eigenvalue", "nan"], "--top-eigenvalue"),
        (["--top-eigenvalue", "x"], "--top-eigenvalue"),
        (["--top-eigenvalue", "2", "--ensemble", "two-deltas"], "--ensemble"),
        (["--ensemble", "three-deltas"], "--ensemble"),
        (["--ensemble", "two-deltas", "--m", "-1"], "--m"),
        (["--ensemble", "two-deltas", "--m", "inf"], "--m"),
        (["--ensemble", "two-deltas", "--variance", "0.3"], "--variance"),
        (["--ensemble", "mixture", "--m", "2"], "--variance"),
        (["--ensemble", "mixture", "--m", "2", "--variance", "-0.1"], "--variance"),
        (["--top-eigenvalue", "2", "--m", "1"], "--m"),
        (["--top-eigenvalue", "2", "--process", "nope"], "--process"),
        (["--spectrum-file", "/nonexistent/spec.npy"], "--spectrum-file"),
    ],
)
def test_bad_input_exits_2_naming_the_argument(capsys, argv, arg):
    assert_usage_error(*run(capsys, *argv), arg)


@pytest.mark.parametrize(
    "values",
    [[3.0, -1.0, 0.5], [], [1.0, np.nan], [[2.0, 0.5], [0.5, 1.0]]],
    ids=["negative", "empty", "nan", "matrix"],
)
def test_bad_spectrum_exits_2(tmp_path, capsys, values):
    f = tmp_path / "bad.npy"
    np.save(f, np.asarray(values, dtype=float))
    rc, out, err = run(capsys, "--spectrum-file", str(f))
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--spectrum-file" in err
    if values and values[1] == -1.0:
        assert "[-" in err and "inf)" in err  # the valid range, rounding tolerance included
    if np.ndim(values) == 2:
        assert "1-D" in err


def test_spectrum_file_rounding_negatives_count_as_zero(tmp_path, capsys):
    # eigvalsh of a rank-deficient covariance: its zero eigenvalues come out near -1e-16
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 12))
    spec = np.linalg.eigvalsh(np.cov(x, rowvar=False))
    assert spec.min() < 0  # the case the tolerance exists for
    f = tmp_path / "eig.npy"
    np.save(f, spec)
    rc, out, err = run(capsys, "--spectrum-file", str(f), "--json")
    assert rc == 0 and err == ""
    res = json.loads(out)["result"]
    assert res["source"]["spectrum_size"] == 12
    assert res["criteria"]["log-density"]["delta"] == pytest.approx(spec.max(), rel=1e-12)


def test_unreadable_spectrum_file_exits_2(tmp_path, capsys):
    f = tmp_path / "garbage.txt"
    f.write_text("not a number\n")
    rc, _, err = run(capsys, "--spectrum-file", str(f))
    assert rc == 2 and "--spectrum-file" in err and len(err.strip().splitlines()) == 1


def test_help(capsys):
    assert main(["critical", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: physdiff critical" in out and "--top-eigenvalue" in out


def test_criteria_come_from_the_library(capsys):
    res = run_json(capsys, "--top-eigenvalue", "3")
    assert tuple(res["criteria"]) == S.CRITERIA


def test_overflowing_mixture_is_a_reason_not_a_crash(capsys):
    res = run_json(capsys, "--ensemble", "mixture", "--m", "1e300", "--variance", "1")
    assert res["top_eigenvalue"] is None and "overflows" in res["note"]
    assert all(r["delta"] is None and "m^2" in r["reason"] for r in res["criteria"].values())
    rc, out, err = run(capsys, "--ensemble", "mixture", "--m", "1e300", "--variance", "1")
    assert rc == 0 and err == "" and "Lambda = inf" in out
