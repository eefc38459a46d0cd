"""``physdiff attractors``: named ensembles, a trained checkpoint, one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from physdiff.cli import attractors as AC
from physdiff.cli import build_parser, main
from physdiff.examples import point_set


def cli(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``physdiff attractors ARGV``; with ``--json``
    stdout is the envelope's result."""
    rc = main(["attractors", *argv])
    out = capsys.readouterr()
    text = out.out
    if rc == 0 and "--json" in argv:
        env = json.loads(text)
        assert env["command"] == "attractors"
        text = json.dumps(env["result"])
    return rc, text, out.err


def test_circle_table(capsys):
    rc, out, err = cli(["--points", "circle", "--n-train", "12", "--n-samples", "240"], capsys)
    assert rc == 0, err
    assert "attractors: 12 (12 stable)" in out
    assert "memorised 1.000" in out and "spurious 0.000" in out
    assert out.count("memorised ") >= 12  # one table row per attractor


def test_gaussian_points_json(capsys):
    argv = ["--points", "gaussian-points", "--n-train", "20", "--d", "2", "--seed", "0", "--json"]
    rc, out, err = cli([*argv, "--n-samples", "400"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    train = np.random.default_rng(0).standard_normal((20, 2))
    assert res["source"] == {"ensemble": "gaussian-points", "k": 20, "seed": 0, "model": "exact"}
    assert res["n_stable"] == res["n_attractors"] <= 20
    assert res["classification"]["fractions"]["memorised"] == 1.0
    for a in res["attractors"]:
        assert a["class"] == "memorised" and a["stable"]
        assert np.min(np.linalg.norm(train - np.array(a["point"]), axis=1)) < 1e-6
    assert sum(a["count"] for a in res["attractors"]) == 400
    # the classification's thresholds scale with the spacing
    cl = res["classification"]
    assert cl["delta_m"] == pytest.approx(0.25 * cl["spacing"])


def test_options_reach_the_search(capsys):
    argv = [
        "--points",
        "circle",
        "--n-train",
        "6",
        "--json",
        "--n-samples",
        "50",
        "--process",
        "edm",
    ]
    rc, out, err = cli([*argv, "--steps", "20", "--delta-end", "0.01", "--c-m", "0.1"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert res["process"] == "edm" and res["steps"] == 20 and res["delta_end"] == 0.01
    assert res["classification"]["delta_m"] == pytest.approx(0.1)  # s = 1 for K = 6
    assert res["max_iter"] == 1000 and res["n_unconverged"] == 0
    assert res["classification"]["intrinsic_dim"] == 1.0  # evenly spaced on a circle


def test_refinement_options_and_unconverged_note(capsys):
    """--max-iter 0 keeps the sampler's end points (not fixed points to 1e-8 s: reported);
    a loose --refine-tol accepts them."""
    argv = [
        "--points",
        "circle",
        "--n-train",
        "6",
        "--n-samples",
        "40",
        "--steps",
        "10",
        "--max-iter",
        "0",
    ]
    rc, out, err = cli([*argv, "--json"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert res["max_iter"] == 0 and res["n_unconverged"] > 0
    assert "did not converge" in res["note"]
    rc, out, err = cli(argv, capsys)
    assert rc == 0 and "not converged" in out and "note:" in out
    rc, out, err = cli([*argv, "--json", "--refine-tol", "1"], capsys)
    assert rc == 0 and json.loads(out)["n_unconverged"] == 0


def test_dense_set_on_ve_is_noted_not_warned(capsys):
    argv = ["--points", "gaussian-points", "--n-train", "400", "--d", "1", "--n-samples", "20"]
    rc, out, err = cli([*argv, "--process", "ve", "--json", "--steps", "10"], capsys)
    assert rc == 0 and err == ""
    assert "below the smallest noise of ve" in json.loads(out)["note"]


CIRCLE8 = ["--points", "circle", "--n-train", "8"]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--points", "digits", "--n-train", "5000"], "--n-train"),
        (["--points", "circle", "--n-train", "1"], "--n-train"),
        (["--points", "circle"], "--n-train"),
        ([*CIRCLE8, "--c-m", "0"], "--c-m"),
        ([*CIRCLE8, "--c-s", "-1"], "--c-s"),
        ([*CIRCLE8, "--dedup", "0"], "--dedup"),
        ([*CIRCLE8, "--delta-end", "0"], "--delta-end"),
        ([*CIRCLE8, "--delta-end", "1e-9"], "--delta-end"),
        ([*CIRCLE8, "--n-samples", "0"], "--n-samples"),
        ([*CIRCLE8, "--d", "3"], "--d"),
        ([*CIRCLE8, "--min-neighbours", "0"], "--min-neighbours"),
        ([*CIRCLE8, "--max-iter", "-1"], "--max-iter"),
        ([*CIRCLE8, "--refine-tol", "0"], "--refine-tol"),
        (["--points", "nope", "--n-train", "8"], "--points"),
        ([*CIRCLE8, "--process", "nope"], "--process"),
        (["--n-train", "8"], "--n-train"),
        ([], "--points"),
        (["--checkpoint", "/no/such/place", "--arch", "mlp", "--d", "2"], "--checkpoint"),
        ([*CIRCLE8, "--arch", "mlp"], "--arch"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, names):
    rc, out, err = cli(argv, capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "error" in err and names in err, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny MLP trained on three points (checkpoint folder, training set file)."""
    torch = pytest.importorskip("torch")
    from physdiff.nn import Denoiser, ScoreMLP, TrainConfig, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread (two spin against other load)
    folder = tmp_path_factory.mktemp("net")
    pts = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    den = Denoiser(ScoreMLP(2, hidden=16, depth=1, embed_dim=8, seed=0))
    cfg = TrainConfig(steps=40, batch_size=32, seed=0, device="cpu")
    train(den, pts, cfg, checkpoint_dir=folder / "ck", progress=False)
    np.save(folder / "train.npy", pts)
    np.save(folder / "bad.npy", np.zeros((3, 5)))
    yield folder
    torch.set_num_threads(threads)


def test_checkpoint(capsys, checkpoint):
    argv = ["--checkpoint", str(checkpoint / "ck"), "--arch", "mlp", "--d", "2"]
    rc, out, err = cli(
        [*argv, "--train", str(checkpoint / "train.npy"), "--json", "--n-samples", "64"], capsys
    )
    assert rc == 0, err
    res = json.loads(out)
    assert res["source"]["arch"] == "mlp" and res["source"]["k"] == 3 and res["dim"] == 2
    assert sum(a["count"] for a in res["attractors"]) == 64
    assert set(res["classification"]["fractions"]) == {"memorised", "spurious", "generalised"}
    # without a training set: attractors and stability only
    rc, out, err = cli([*argv, "--n-samples", "16", "--steps", "10"], capsys)
    assert rc == 0, err and "attractors:" in out and "end points" not in out


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--d", "3"], "--d"),
        (["--d", "2", "--train", "TRAIN/bad.npy"], "--train"),
        (["--d", "2", "--train", "TRAIN/missing.npy"], "--train"),
        (["--d", "2", "--points", "digits", "--n-train", "4"], "--d"),
        (["--d", "2", "--parametrisation", "eps"], "--checkpoint"),
    ],
)
def test_checkpoint_errors(capsys, checkpoint, extra, names):
    extra = [e.replace("TRAIN", str(checkpoint)) for e in extra]
    rc, out, err = cli(["--checkpoint", str(checkpoint / "ck"), "--arch", "mlp", *extra], capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1 and names in err, err


def test_unet_checkpoint_architecture_from_the_weights(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    from physdiff.nn import Denoiser, NetworkScoreModel, ScoreUNet, TrainConfig, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pts = np.random.default_rng(0).standard_normal((4, 64))
        den = Denoiser(ScoreUNet((1, 8, 8), base_channels=8, attention=False, seed=0))
        cfg = TrainConfig(steps=2, batch_size=4, seed=0, device="cpu")
        res = train(den, pts, cfg, checkpoint_dir=tmp_path / "u", progress=False)
        argv = ["--checkpoint", str(tmp_path / "u"), "--arch", "unet"]
        net = AC.network(build_parser("attractors").parse_args(["attractors", *argv, "--d", "64"]))
        assert net.dim == 64 and net.denoiser.net.conv_in.out_channels == 8
        ref = NetworkScoreModel(res.denoiser, device="cpu")  # the EMA weights
        y = np.random.default_rng(1).standard_normal((3, 64))
        np.testing.assert_allclose(net.denoise(y, 0.5), ref.denoise(y, 0.5), atol=1e-6)
        # a wrong width or shape: one line, exit 2
        for extra, names in (
            (["--d", "64", "--base-channels", "16"], "--checkpoint"),
            (["--d", "63"], "--image-shape"),
            (["--d", "64", "--image-shape", "2,4,4"], "--image-shape"),
        ):
            rc, out, err = cli([*argv, *extra], capsys)
            assert rc == 2 and out == "" and err.count("\n") == 1 and names in err, err
    finally:
        torch.set_num_threads(threads)


def test_named_points():
    c = point_set("circle", 4)
    np.testing.assert_allclose(c, [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-15)
    g = point_set("gaussian-points", 5, d=3, seed=7)
    np.testing.assert_array_equal(g, np.random.default_rng(7).standard_normal((5, 3)))
    d10 = point_set("digits", 10, seed=1)
    d20 = point_set("digits", 20, seed=1)
    assert d10.shape == (10, 64) and np.array_equal(d20[:10], d10)  # nested in K


def test_import_is_light():
    code = (
        "import sys, physdiff.cli.attractors; "
        "print(any(m in sys.modules for m in ('torch', 'matplotlib', 'scipy.stats')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
