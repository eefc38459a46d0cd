"""``physdiff collapse`` and ``physdiff phase-diagram``: JSON equals the library, the files
written, bad input exits 2 naming the argument."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import json_result, run_command, strict_json

from physdiff import memorization as M
from physdiff.processes import DDPM


def collapse(**kw) -> dict:
    return M.collapse_table(**kw).to_dict()


def phase_diagram_data(**kw):
    res = M.phase_diagram_data(**kw)
    return res.diagram, res.to_dict()


_strict_json = strict_json
run = run_command


def collapse_json(capsys, *argv):
    return json_result(capsys, "collapse", *argv)


# -- collapse ----------------------------------------------------------------------------------


def test_issue_example_equals_the_closed_form(capsys):
    res = collapse_json(
        capsys, "--d", "256", "--n-train", "20000", "--variance", "1", "--process", "ou"
    )
    (r,) = res["results"]
    t_c = 0.5 * math.log(1 + 1 / (20000 ** (2 / 256) - 1))
    assert r["time"] == pytest.approx(t_c, rel=1e-13)
    assert r["ou_time"] == pytest.approx(t_c, rel=1e-13)
    assert r["delta"] == pytest.approx(float(M.collapse_delta_isotropic(20000, 256, 1.0)), 1e-13)
    assert r["delta"] == pytest.approx(float(M.collapse_delta(20000, np.ones(256))), rel=1e-15)
    assert r["alpha_n"] == pytest.approx(float(M.alpha_n(20000, 256)), rel=1e-15)
    assert r["n"] == 20000 and r["log_n"] == pytest.approx(math.log(20000))
    ddpm = DDPM()
    assert r["ddpm_step"] == {
        k: int(ddpm.step_of_delta(r["delta"], k)) for k in ("floor", "nearest", "ceil")
    }
    assert ddpm.deltas[r["ddpm_step"]["floor"]] <= r["delta"] <= ddpm.deltas[r["ddpm_step"]["ceil"]]
    iso = r["isotropic_closed_form"]
    assert iso["delta"] == pytest.approx(r["delta"], rel=1e-12)
    # the asymptotics reduce to the library's isotropic ones
    a = r["alpha_n"]
    for regime in ("small", "large"):
        lib = float(M.collapse_delta_asymptotic(a, 1.0, regime))
        got = r["asymptotic"][f"{regime}_alpha"]
        assert got["delta"] == pytest.approx(lib, rel=1e-12)
        assert got["rel_error"] == pytest.approx(lib / r["delta"] - 1, rel=1e-9, abs=1e-15)
    # the excess-entropy inputs
    f = res["excess_entropy_formula"]
    assert f["d"] == 256 and f["intrinsic_dim"] == 256
    s = res["spectrum"]
    assert s["trace"] == 256 and s["isotropic"] and s["top_eigenvalue"] == 1.0


def test_several_n_spectrum_file_and_times(tmp_path, capsys):
    lam = 7.66 / np.arange(1, 101)
    f = tmp_path / "spec.npy"
    np.save(f, lam)
    argv = ["--n-train", "1e3", "1e5", "--process", "ddpm", "--t", "300"]
    res = collapse_json(capsys, "--spectrum-file", str(f), *argv)
    assert res["source"] == {"spectrum_size": 100}
    ns = [r["n"] for r in res["results"]]
    assert ns == [1000, 100000]
    dcs = M.collapse_delta(np.array([1e3, 1e5]), lam)
    for r, dc in zip(res["results"], dcs, strict=True):
        assert r["delta"] == pytest.approx(dc, rel=1e-15)
        assert r["time"] == pytest.approx(float(DDPM().time_of_delta(dc)), rel=1e-14)
        assert "isotropic_closed_form" not in r
        (e,) = r["excess_entropy"]
        dl = float(DDPM().delta(300.0))
        info = float(M.mutual_information_gaussian(dl, lam))
        assert e["delta"] == pytest.approx(dl) and e["mutual_information"] == pytest.approx(info)
        assert e["f"] == pytest.approx(
            float(M.excess_entropy_gaussian(dl, r["n"], lam)), rel=1e-12, abs=1e-15
        )
        assert e["collapsed"] == (dl < dc)
        # general-spectrum asymptotics: exact in their own limits (checked loosely here)
        assert r["asymptotic"]["large_alpha"]["delta"] > 0
    # more points collapse later (smaller delta)
    assert res["results"][1]["delta"] < res["results"][0]["delta"]
    txt = tmp_path / "spec.txt"
    np.savetxt(txt, lam)
    res2 = collapse_json(capsys, "--spectrum-file", str(txt), *argv)
    assert res2["results"] == res["results"]


def test_manifold_normal_directions_drop_out(capsys):
    res = collapse_json(capsys, "--d", "784", "--intrinsic-dim", "12", "--n-train", "60000")
    (r,) = res["results"]
    assert r["delta"] == pytest.approx(float(M.collapse_delta_isotropic(60000, 12, 1.0)), 1e-12)
    assert r["alpha_n_intrinsic"] == pytest.approx(math.log(60000) / 12)
    assert r["alpha_n"] == pytest.approx(math.log(60000) / 784)
    assert res["spectrum"]["intrinsic_dim"] == 12 and res["spectrum"]["d"] == 784


def test_top_eigenvalue_and_table(capsys):
    lam = np.r_[5.0, np.ones(99)]
    res = collapse_json(capsys, "--d", "100", "--top-eigenvalue", "5", "--n-train", "1000")
    assert res["results"][0]["delta"] == pytest.approx(float(M.collapse_delta(1000, lam)))
    assert res["spectrum"]["top_eigenvalue"] == 5.0 and not res["spectrum"]["isotropic"]
    rc, out, err = run(
        capsys, "collapse", "--d", "100", "--top-eigenvalue", "5", "--n-train", "1000"
    )
    assert rc == 0 and err == ""
    row = next(ln.split() for ln in out.splitlines() if ln.split()[:1] == ["1000"])
    assert float(row[2]) == pytest.approx(res["results"][0]["delta"], rel=1e-5)


def test_out_of_range_process_is_a_note_not_an_error():
    # delta_C = 1e6/(3^{2/2} - 1) = 5e5, beyond VE's sigma_max^2 = 2500 and DDPM's range
    res = collapse(n=[3.0], d=2, variance=1e6, process="ve")
    (r,) = res["results"]
    assert r["delta"] == pytest.approx(5e5, rel=1e-12)
    assert r["time"] is None and r["ddpm_step"] is None
    assert "outside" in r["note"] and "DDPM" in r["note"]
    assert r["ou_time"] == pytest.approx(0.5 * math.log1p(5e5))
    json.dumps(res, allow_nan=False)


D256 = ["--d", "256", "--n-train", "20000"]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--d", "256", "--n-train", "1"], "--n-train"),
        ([*D256, "1.5"], "--n-train"),
        ([*D256, "--t", "11"], "--t"),
        ([*D256, "--t", "0"], "--t"),
        ([*D256, "--process", "nope"], "--process"),
        ([*D256, "--variance", "-1"], "--variance"),
        (["--d", "10", "--n-train", "20", "--intrinsic-dim", "11"], "--intrinsic-dim"),
        (["--d", "10", "--n-train", "20", "--top-eigenvalue", "-2"], "--top-eigenvalue"),
        (["--d", "0", "--n-train", "20"], "--d"),
        (["--n-train", "20"], "--d"),
        (["--d", "10"], "--n-train"),
    ],
)
def test_bad_input_exits_2_naming_the_argument(capsys, argv, flag):
    rc, out, err = run(capsys, "collapse", *argv)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and flag in err


def test_negative_spectrum_file(tmp_path, capsys):
    f = tmp_path / "neg.npy"
    np.save(f, np.array([1.0, -2.0, 3.0]))
    rc, out, err = run(capsys, "collapse", "--spectrum-file", str(f), "--n-train", "10")
    assert rc == 2 and "--spectrum-file" in err and "negative" in err
    rc, out, err = run(capsys, "collapse", "--spectrum-file", str(f), "--d", "3", "--n-train", "10")
    assert rc == 2 and "--spectrum-file" in err  # read first, then refused
    np.save(f, np.array([1.0, 2.0]))
    rc, out, err = run(capsys, "collapse", "--spectrum-file", str(f), "--d", "3", "--n-train", "10")
    assert rc == 2 and "--d" in err and "goes without" in err


# -- phase-diagram ---------------------------------------------------------------------------


def test_phase_diagram_writes_matching_files(tmp_path, capsys):
    out = tmp_path / "pd"
    argv = ["phase-diagram", "--d", "100", "--top-eigenvalue", "5", "--variance", "1"]
    argv += ["--process", "ou", "--out", str(out), "--n-alpha", "60", "--n-t", "50"]
    rc, stdout, err = run(capsys, *argv, "--dpi", "40", "--json")
    assert rc == 0, err
    summary = _strict_json(stdout)["result"]
    for ext in ("png", "pdf", "npz", "json"):
        f = out / f"phase-diagram.{ext}"
        assert f.is_file() and f.stat().st_size > 200
        assert summary["files"][ext] == str(f)
    assert (out / "phase-diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "phase-diagram.pdf").read_bytes()[:5] == b"%PDF-"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries
    z = np.load(out / "phase-diagram.npz")
    data = _strict_json((out / "phase-diagram.json").read_text())
    assert z["alphas"].shape == (60,) and z["times"].shape == (50,)
    assert z["regime"].shape == (50, 60) and z["t_collapse"].shape == (60,)
    assert np.array_equal(z["regime"], np.array(data["regime"]))
    assert np.allclose(z["alphas"], data["alphas"]) and np.allclose(z["times"], data["times"])
    assert data["t_speciation"] == pytest.approx(0.5 * math.log(5.0), rel=1e-14)
    assert float(z["t_speciation"]) == pytest.approx(0.5 * math.log(5.0), rel=1e-14)
    # the library's phase diagram on the same grids
    lam = np.r_[5.0, np.ones(99)]
    lib = M.phase_diagram(lam, z["alphas"], z["times"], "ou")
    assert np.array_equal(lib.regime, z["regime"])
    assert np.allclose(lib.t_collapse, z["t_collapse"], rtol=1e-14)
    assert data["labels"] == {"0": "collapsed", "1": "speciated", "2": "Brownian"}
    assert set(np.unique(z["regime"])) == {0, 1, 2}


def test_phase_diagram_manifold_and_ddpm(tmp_path):
    pdiag, data = phase_diagram_data(
        d=784, intrinsic_dim=10, process="ddpm", n_alpha=20, n_t=30, alpha_max=2.0
    )
    assert data["m"] == 10 and data["t_speciation"] is None
    # no speciation (Lambda = 1): above t_C is Brownian, in the library and the data
    assert pdiag.regime.shape == (30, 20) and set(np.unique(pdiag.regime)) == {0, 2}
    lib = M.phase_diagram(np.ones(10), data["alphas"], data["times"], "ddpm")
    assert np.array_equal(pdiag.regime, lib.regime)
    assert np.array_equal(np.array(data["regime"]), lib.regime)
    assert "regime_note" not in data
    assert "none when Lambda <= 1" in data["criterion"]["speciation"]
    assert data["alphas"][0] == pytest.approx(math.log(2) / 10, rel=1e-6)
    assert data["times"][-1] <= DDPM().t_max


@pytest.mark.filterwarnings("error")
def test_phase_diagram_and_collapse_beyond_float_n():
    """alpha_n m ~ 2000 (n = e^2000) and delta_C = e^-1381: no overflow, NaN or crash."""
    pdiag, data = phase_diagram_data(d=100, alpha_max=20.0, n_alpha=15, n_t=20)
    assert data["log_n"][-1] == pytest.approx(2000.0)
    assert np.all(np.isfinite(pdiag.t_collapse))
    json.dumps(data, allow_nan=False)
    lib = M.phase_diagram(np.ones(100), data["alphas"], data["times"], "ou")
    assert np.array_equal(pdiag.regime, lib.regime)
    np.testing.assert_allclose(
        data["log_delta_collapse"], -np.log(np.expm1(2 * np.array(data["alphas"]))), rtol=1e-12
    )
    res = collapse(d=1, n=[1e300, 1e4])
    json.dumps(res, allow_nan=False)
    r = res["results"][0]
    assert r["log_delta"] == pytest.approx(-2 * math.log(1e300), rel=1e-13)
    assert r["delta"] == 0.0 and "underflows" in r["note"]
    assert r["log_snr"] == pytest.approx(2 * math.log(1e300), rel=1e-13)
    assert res["results"][1]["asymptotic"]["large_alpha"]["rel_error"] == pytest.approx(
        0.0, abs=1e-6
    )


def test_phase_diagram_text_says_when_there_is_no_speciation(tmp_path, capsys):
    argv = ["phase-diagram", "--d", "10", "--out", str(tmp_path), "--n-t", "20", "--n-alpha", "10"]
    rc, out, err = run(capsys, *argv, "--dpi", "30")
    assert rc == 0, err
    assert "t_S = none (top eigenvalue <= 1: no speciated regime, Brownian above t_C)" in out
    data = _strict_json((tmp_path / "phase-diagram.json").read_text())
    assert data["regimes_present"] == ["collapsed", "Brownian"]


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--t-max", "20"], "--t-max"),
        (["--t-min", "-1"], "--t-min"),
        (["--t-min", "2", "--t-max", "1"], "--t-min"),
        (["--alpha-min", "0.001"], "--alpha-min"),
        (["--alpha-max", "0.001"], "--alpha-max"),  # below log(2)/m: n < 2
        (["--process", "nope"], "--process"),
        (["--n-t", "1"], "--n-t"),
        (["--name", "a/b"], "--name"),
    ],
)
def test_phase_diagram_bad_input(tmp_path, capsys, extra, flag):
    argv = ["phase-diagram", "--d", "100", "--top-eigenvalue", "5", "--out", str(tmp_path)]
    rc, out, err = run(capsys, *argv, *extra)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and flag in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_help_mentions_the_commands_and_stays_light():
    heavy = ("matplotlib", "numba", "scipy", "physdiff.figures", "physdiff.memorization")
    code = (
        "import sys\nfrom physdiff.cli import main\nrc = main(['collapse', '--help'])\n"
        "main(['phase-diagram', '--help'])\n"
        f"print('LOADED=' + ','.join(m for m in {heavy!r} if m in sys.modules))\n"
        "sys.exit(rc)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--spectrum-file" in r.stdout and "--intrinsic-dim" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "LOADED="


# -- --log-n and spectra with rounding -------------------------------------------------------


def test_log_n_agrees_with_the_library_and_with_n(capsys):
    """--log-n reaches n = e^1000 (beyond a float) through the library's log_collapse_delta;
    at log(20000) it gives what --n-train 20000 gives."""
    ln = math.log(20000)
    res = collapse_json(capsys, "--d", "256", "--log-n", repr(ln), "1000", "--process", "ou")
    r0, r1 = res["results"]
    lib = M.log_collapse_delta(np.array([ln, 1000.0]), np.ones(256))
    assert [r0["log_delta"], r1["log_delta"]] == pytest.approx(list(lib), rel=1e-15)
    assert r1["log_n"] == 1000.0 and r1["alpha_n"] == pytest.approx(1000 / 256, rel=1e-15)
    assert r1["n"] is None  # e^1000 does not fit a float; log_n is there
    iso = M.log_collapse_delta_isotropic(1000.0, 256, 1.0)
    assert r1["isotropic_closed_form"]["delta"] == pytest.approx(math.exp(iso), rel=1e-13)
    assert r1["delta"] == pytest.approx(math.exp(lib[1]), rel=1e-13)
    (ref,) = collapse_json(capsys, "--d", "256", "--n-train", "20000", "--process", "ou")["results"]
    assert r0["n"] == pytest.approx(20000, rel=1e-14)
    for key in ("log_delta", "delta", "time", "alpha_n"):
        assert r0[key] == pytest.approx(ref[key], rel=1e-13), key
    assert r0["ddpm_step"] == ref["ddpm_step"]


def test_log_n_table(capsys):
    rc, out, err = run(capsys, "collapse", "--d", "1", "--log-n", "1000")
    assert rc == 0 and err == ""
    assert "e^1000" in out and "underflows" in out  # delta_C = e^-2000


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--n-train", "10", "--log-n", "3"], ["--log-n", "not allowed with", "--n-train"]),
        (["--log-n", "3", "--n-train", "10"], ["--n-train", "not allowed with", "--log-n"]),
        ([], ["--n-train", "--log-n", "required"]),
        (["--log-n", "0.5"], ["--log-n", ">= log 2"]),
        (["--log-n", "nan"], ["--log-n"]),
    ],
)
def test_log_n_bad_input_exits_2(capsys, argv, words):
    rc, out, err = run(capsys, "collapse", "--d", "3", *argv)
    assert rc == 2 and out == ""
    for w in words:
        assert w in err


def test_spectrum_file_with_rounding_negatives(tmp_path, capsys):
    """The spectrum of a rank-deficient covariance, as np.linalg.eigvalsh returns it (its
    zeros as +-1e-16-ish numbers), is accepted by collapse and phase-diagram; a negative
    beyond the rounding bound 8 k eps max|lambda| is still refused, naming the range."""
    x = np.random.default_rng(1).standard_normal((4, 30))
    lam = np.linalg.eigvalsh(x.T @ x / 4)
    assert lam.min() < 0
    f = tmp_path / "eig.npy"
    np.save(f, lam)
    res = collapse_json(capsys, "--spectrum-file", str(f), "--n-train", "100")
    assert res["spectrum"]["intrinsic_dim"] == 4  # the rank: rounding of either sign is 0
    assert res["results"][0]["delta"] == pytest.approx(
        float(M.collapse_delta(100, np.clip(lam, 0, None))), rel=1e-15
    )
    pdiag, data = phase_diagram_data(spectrum=lam, n_alpha=5, n_t=5)
    assert min(data["eigenvalues"]) == 0.0
    rc, out, _ = run(
        capsys,
        "phase-diagram",
        "--spectrum-file",
        str(f),
        "--out",
        str(tmp_path / "pd"),
        "--n-alpha",
        "5",
        "--n-t",
        "5",
        "--dpi",
        "20",
    )
    assert rc == 0
    lam[0] = -1e-9  # far beyond rounding
    np.save(f, lam)
    rc, out, err = run(capsys, "collapse", "--spectrum-file", str(f), "--n-train", "100")
    assert rc == 2 and out == ""
    assert "--spectrum-file" in err and "must lie in [-" in err and "negative" in err


# -- collapse --finite-size ----------------------------------------------------------------------


def test_finite_size_equals_the_library(capsys):
    from physdiff.finite_size import LOG2, finite_size_collapse

    res = collapse_json(
        capsys, "--d", "4", "--n-train", "30", "--finite-size", "--curve", "0.1", "0.3"
    )
    fs = res["finite_size"]
    assert fs["level"] == LOG2
    (got,) = fs["results"]
    lib = finite_size_collapse(30, 4, 1.0, level=LOG2, curve=[0.1, 0.3]).to_dict()
    assert got["delta"] == pytest.approx(lib["delta"], rel=1e-12)
    assert got["log_offset"] == pytest.approx(lib["log_offset"], rel=1e-12)
    assert got["curve"]["d_fe"] == pytest.approx(lib["curve"]["d_fe"], rel=1e-12)
    assert got["delta_large_d"] == pytest.approx(res["results"][0]["delta"], rel=1e-12)
    rc, out, err = run(
        capsys, "collapse", "--d", "4", "--n-train", "30", "--finite-size", "--curve", "0.1"
    )
    assert rc == 0 and "delta_fs" in out and "log(delta_fs/delta_C)" in out


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--level", "0"], "--level"),
        (["--level", "nan"], "--level"),
        (["--level", "3.5"], "--level"),  # >= log 30
        (["--log-n", "4"], "--finite-size"),
    ],
)
def test_finite_size_bad_input(capsys, argv, flag):
    from cli_helpers import assert_usage_error

    base = ["collapse", "--d", "4", "--finite-size"]
    if "--log-n" not in argv:
        base += ["--n-train", "30"]
    assert_usage_error(*run(capsys, *base, *argv), flag)


def test_level_goes_with_finite_size(capsys):
    from cli_helpers import assert_usage_error

    assert_usage_error(
        *run(capsys, "collapse", "--d", "4", "--n-train", "30", "--level", "1"), "--level"
    )
