"""``physdiff entropy`` and ``physdiff guide``: JSON output, peaks against
``information.local_maxima`` on the same grids, the profile file, bad input (exit 2, the
argument named)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cli_helpers import assert_usage_error

from physdiff import information as I
from physdiff.cli import main
from physdiff.ensembles import GaussianMixture
from physdiff.errors import InputError
from physdiff.examples import MIXTURES
from physdiff.examples import mixture as named_mixture
from physdiff.information import parse_partition
from physdiff.processes import get_process


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys, *argv) -> dict:
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    env = json.loads(out)
    assert env["command"] == argv[0]
    return env["result"]


def test_entropy_json_example_of_the_issue(capsys):
    res = _json(capsys, "entropy", "--means=-8,-4,6,8", "--process", "ddpm")
    assert res["process"] == "ddpm" and res["levels"] == 1000
    assert res["H_prior"] == pytest.approx(math.log(4))
    assert res["H_at_delta_min"] < res["H_at_delta_max"] <= math.log(4)
    assert res["peaks"] and res["peaks_log_delta"]
    proc = get_process("ddpm")
    for pk in res["peaks"] + res["peaks_log_delta"]:
        assert pk["step"] == round(pk["t"])
        assert pk["delta"] == pytest.approx(float(proc.delta(pk["t"])), rel=1e-6)
        assert pk["rate"] > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--means=-8,-4,6,8", "--stds", "0", "--process", "ddpm"],
        ["--means=-8,-4,6,8", "--stds", "0", "--process", "ou", "--partition", "pairwise:2,3"],
        ["--means=-3,0,4", "--stds", "0.3,0.5,0", "--weights", "1,2,3", "--process", "ve"],
        ["--means=-8,-4,6,8", "--process", "vp-linear", "--partition", "coarse:0,1/2,3"],
        ["--means=-8,-4,6,8", "--process", "edm", "--partition", "one-vs-rest:1"],
    ],
    ids=["ddpm-points", "ou-pairwise", "ve-weights", "vp-coarse", "edm-one-vs-rest"],
)
def test_entropy_peaks_are_local_maxima_of_the_written_profile(capsys, tmp_path, argv):
    out = tmp_path / "profile.json"
    res = _json(capsys, "entropy", *argv, "--levels", "400", "--out-file", str(out))
    assert res["out"] == str(out)
    data = json.loads(out.read_text())
    prof = data["profile"]
    assert data["summary"]["peaks"] == res["peaks"]
    assert len(prof["delta"]) == 400
    # the same quadrature at the same levels
    mix = data["mixture"]
    model = GaussianMixture.isotropic(
        mix["weights"], [[m] for m in mix["means"]], [s * s for s in mix["stds"]]
    )
    part = parse_partition(data["partition"]["spec"], len(mix["means"]))
    dl = np.array(prof["delta"])
    np.testing.assert_allclose(prof["H"], I.conditional_entropy_quadrature(model, dl, part))
    np.testing.assert_allclose(prof["rate_delta"], I.entropy_rate_quadrature(model, dl, part))
    # every peak is a local maximum of the profile on its grid, and nothing else is
    tg = prof["time_grid"]
    xs, ys = I.local_maxima(tg["t"], tg["rate_time"])
    np.testing.assert_allclose([p["t"] for p in res["peaks"]], xs)
    np.testing.assert_allclose([p["rate"] for p in res["peaks"]], ys)
    xs, ys = I.local_maxima(np.log(dl), prof["rate_log_delta"])
    np.testing.assert_allclose([p["delta"] for p in res["peaks_log_delta"]], np.exp(xs))
    np.testing.assert_allclose([p["rate"] for p in res["peaks_log_delta"]], ys)
    # the rate in time is the rate in delta times d delta/dt
    proc = get_process(data["process"])
    np.testing.assert_allclose(
        prof["rate_time"], I.rate_in_time(prof["rate_delta"], dl, proc), rtol=1e-12
    )


def test_entropy_ddpm_time_rate_on_half_steps(capsys, tmp_path):
    out = tmp_path / "p.json"
    _json(capsys, "entropy", "--means=-8,-4,6,8", "--out-file", str(out))
    t = np.array(json.loads(out.read_text())["profile"]["time_grid"]["t"])
    np.testing.assert_array_equal(t - np.floor(t), 0.5)
    np.testing.assert_array_equal(np.diff(t), 1.0)


def test_entropy_four_class_point_masses_have_separate_decisions(capsys):
    # the close pair (6, 8) splits late, the far groups early: two peaks in log delta
    res = _json(capsys, "entropy", "--means=-8,-4,6,8", "--stds", "0", "--process", "ou")
    deltas = [p["delta"] for p in res["peaks_log_delta"]]
    assert len(deltas) == 2 and deltas[0] < 5 < deltas[1]


def test_entropy_plain_table(capsys):
    code, out, _ = _run(capsys, "entropy", "--means=-1,1", "--stds", "0", "--levels", "200")
    assert code == 0
    assert "local maxima of dH/dt" in out and "step" in out
    assert "H(G) = 0.693147" in out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--means=1"], "--means"),
        (["--means=1,x"], "--means"),
        (["--means=1,nan"], "--means"),
        (["--means=1,2", "--stds", "1,2,3"], "--stds"),
        (["--means=1,2", "--stds=-1"], "--stds"),
        (["--means=1,2", "--weights", "1,0"], "--weights"),
        (["--means=1,2", "--weights", "1"], "--weights"),
        (["--means=1,2", "--partition", "pairwise:0,2"], "--partition"),
        (["--means=1,2,3", "--partition", "coarse:0,1/1,2"], "--partition"),
        (["--means=1,2,3", "--partition", "coarse:0,1,2"], "--partition"),
        (["--means=1,2", "--partition", "bogus"], "--partition"),
        (["--means=1,2", "--partition", "one-vs-rest:a"], "--partition"),
        (["--means=1,2", "--process", "nope"], "--process"),
        (["--means=1,2", "--levels", "2"], "--levels"),
        (["--means=1,2", "--levels", "1.5"], "--levels"),
        (["--means=1,2", "--delta-min", "0"], "--delta-min"),
        (["--means=1,2", "--delta-min", "10", "--delta-max", "1"], "--delta-max"),
        (["--means=1,2", "--delta-max", "1e12"], "--delta-max"),
        (["--means=1,2", "--order", "1"], "--order"),
        (["--means=1,1"], "--means"),
        (["--means=1,2", "--out-file", "/nonexistent/dir/p.json"], "--out-file"),
    ],
)
def test_entropy_bad_input_exits_2_naming_the_argument(capsys, argv, named):
    code, out, err = _run(capsys, "entropy", *argv)
    assert_usage_error(code, out, err, named)


def test_entropy_is_fast_enough_to_run_in_tests(capsys):
    # not a timing assertion (benchmarks/ measures speed): the default run completes
    code, _, _ = _run(capsys, "entropy", "--means=-8,-4,6,8", "--json")
    assert code == 0


# ---------------------------------------------------------------------------------------
# guide
# ---------------------------------------------------------------------------------------
def test_named_mixtures():
    for name in MIXTURES:
        mix = named_mixture(name)
        assert mix.n_components == MIXTURES[name].n_classes == len(MIXTURES[name].means)
        assert np.isclose(mix.weights.sum(), 1.0)
    assert named_mixture("square-2d").dim == 2
    with pytest.raises(InputError, match="unknown mixture"):
        named_mixture("nope")


def test_guide_dng_exact_removes_the_class_and_keeps_the_balance(capsys):
    res = _json(
        capsys, "guide", "--mixture", "four-1d", "--method", "dng-exact", "--remove", "2",
        "--n-samples", "3000", "--steps", "250",
    )  # fmt: skip
    assert res["method"] == "dng-exact" and res["remove"] == 2 and res["n"] == 3000
    # the Bayes classifier puts 0.8% of exact samples of p(x | not 2) into class 2
    assert res["removed_share"] < 0.02
    shares = np.array(res["class_shares"])
    kept = np.delete(shares, 2) / (1 - shares[2])
    se = math.sqrt(1 / 3 * 2 / 3 / 3000)
    assert np.all(np.abs(kept - 1 / 3) < 4 * se)
    assert res["kl_kept"] < 0.01 and not res["missing_classes"]
    assert sum(res["class_counts"]) == 3000


def test_guide_np_at_large_scale_distorts_and_cfg_concentrates(capsys, tmp_path):
    common = ["--mixture", "three-1d", "--remove", "0", "--n-samples", "1500", "--steps", "200"]
    np_ = _json(capsys, "guide", *common, "--method", "np", "--scale", "3")
    dng = _json(capsys, "guide", *common, "--method", "dng-exact", "--scale", "1")
    assert np_["removed_share"] < 0.01
    assert np_["quality_w2"] - dng["quality_w2"] > 5 * math.hypot(
        np_["quality_w2_se"], dng["quality_w2_se"]
    )
    out = tmp_path / "x.npy"
    cfg = _json(capsys, "guide", *common, "--method", "cfg", "--scale", "2", "--out-file", str(out))
    assert cfg["removed_share"] > 0.95  # cfg: the share of the class guided toward
    x = np.load(out)
    assert x.shape == (1500, 1)
    lab = named_mixture("three-1d")
    from physdiff.classes import MixtureClasses

    assert np.bincount(MixtureClasses(lab).classify(x), minlength=3).tolist() == cfg["class_counts"]


def test_guide_tracked_dng_2d_and_table(capsys):
    res = _json(
        capsys, "guide", "--mixture", "square-2d", "--method", "dng", "--remove", "3",
        "--n-samples", "800", "--steps", "200", "--p-max", "0.999",
    )  # fmt: skip
    assert res["dim"] == 2 and res["dng"]["p_max"] == 0.999
    assert res["dng"]["prior"] == pytest.approx(0.4)  # the class weight by default
    assert res["removed_share"] < 0.05
    code, out, _ = _run(
        capsys, "guide", "--mixture", "square-2d", "--method", "np", "--remove", "1", "--n-samples",
        "300", "--steps", "50",
    )  # fmt: skip
    assert code == 0 and "share of class 1" in out and "sliced W2" in out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--method", "np", "--remove", "4"], "--remove"),
        (["--method", "np", "--remove", "-1"], "--remove"),
        (["--method", "np", "--remove", "1.5"], "--remove"),
        (["--method", "bogus", "--remove", "1"], "--method"),
        (["--mixture", "nope", "--method", "np", "--remove", "1"], "--mixture"),
        (["--method", "np", "--remove", "1", "--scale", "-1"], "--scale"),
        (["--method", "np", "--remove", "1", "--n-samples", "1"], "--n-samples"),
        (["--method", "np", "--remove", "1", "--steps", "0"], "--steps"),
        (["--method", "np", "--remove", "1", "--tau", "0.5"], "--tau"),
        (["--method", "dng", "--remove", "1", "--p-max", "1"], "--p-max"),
        (["--method", "dng", "--remove", "1", "--prior", "0"], "--prior"),
        (["--method", "np", "--remove", "1", "--process", "nope"], "--process"),
        (["--method", "np", "--remove", "1", "--out-file", "/nonexistent/x.npy"], "--out-file"),
        (["--remove", "1"], "--method"),
    ],
)
def test_guide_bad_input_exits_2_naming_the_argument(capsys, argv, named):
    code, out, err = _run(capsys, "guide", *argv)
    assert_usage_error(code, out, err, named)


@pytest.mark.parametrize("method", ["cfg", "np", "dng", "dng-exact"])
def test_guide_table_prints_for_every_method(capsys, method):
    # the plain-text table must print whatever the metrics are (a guided-toward class
    # leaves no kept classes for cfg: the KL floor is undefined, shown as n/a)
    rc = main(
        [
            "guide",
            "--mixture",
            "square-2d",
            "--method",
            method,
            "--remove",
            "1",
            "--scale",
            "2",
            "--n-samples",
            "300",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "share of class 1" in out
    if method == "cfg":
        assert "noise floor n/a" in out
    else:
        row = next(r.split() for r in out.splitlines() if r.split()[:1] == ["1"])
        assert row[2] == "0.0000" and row[-1] == "<-"  # the removed class: target share 0
