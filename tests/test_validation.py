"""The validation harness: smoke presets, verdicts both ways, reports, CLI errors, sweeps.

The smoke preset of every experiment runs here (tiny networks, a few hundred steps, one
process); the cpu and gpu presets run through ``python -m validation`` (docs/validation.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from physdiff.errors import InputError
from validation import experiments
from validation.cli import main
from validation.config import with_verdict
from validation.report import write_report
from validation.result import AGREE, DISAGREE, Result, Rule, atomic_write_text, judge
from validation.stats import binomial_fraction, ratio_of_means
from validation.sweep import Engine, map_jobs

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SERIAL = Engine("serial")


# ---------------------------------------------------------------------------------------
# verdicts, statistics, result files
# ---------------------------------------------------------------------------------------
def test_rule_both_ways():
    rule = Rule(k=3.0, tolerance=0.1)
    assert rule.agrees(0.0, 0.35, 0.1)  # 0.35 <= 0.3 + 0.1
    assert not rule.agrees(0.0, 0.45, 0.1)
    assert not rule.agrees(0.0, float("nan"), 0.1)  # NaN never agrees
    assert not rule.agrees(0.0, 0.0, float("inf"))
    assert judge("q", 1.0, 1.05, 0.01, rule).verdict == AGREE
    row = judge("q", 1.0, 2.0, 0.01, rule, condition="c", note=np.float64(3.0))
    assert row.verdict == DISAGREE and row.rule == rule.text and row.extra == {"note": 3.0}
    with pytest.raises(ValueError):
        Rule(k=-1.0)


def test_ratio_and_binomial_errors():
    rng = np.random.default_rng(0)
    a, b = rng.exponential(1.0, 20000), rng.exponential(2.0, 20000)
    r, se = ratio_of_means(a, b)
    assert abs(r - 0.5) < 4 * se and 0 < se < 0.01
    p, se = binomial_fraction(0, 100)
    assert p == 0 and se > 0  # Agresti-Coull stays positive at the edges
    p, se = binomial_fraction(50, 100)
    assert p == 0.5 and abs(se - 0.5 / np.sqrt(104)) < 1e-12


def test_ratio_of_means_se_matches_the_spread_of_replicates():
    """The delta-method standard error (Cochran Eq. 6.9) against its brute-force twin: the
    standard deviation of R over many independent replicates."""
    rng = np.random.default_rng(1)
    n, reps = 400, 3000
    a = rng.gamma(2.0, 1.0, (reps, n))
    b = 0.5 * a + rng.exponential(1.0, (reps, n))  # correlated pairs
    rs, ses = np.array([ratio_of_means(x, y) for x, y in zip(a, b, strict=True)]).T
    assert abs(np.median(ses) / np.std(rs, ddof=1) - 1.0) < 0.06
    with pytest.raises(ValueError):
        ratio_of_means(np.ones(3), -np.ones(3))


def test_job_keys_are_canonical(tmp_path):
    """A job's key is the SHA-256 of the canonical JSON of its parameters: written out here
    by hand, equal for numpy scalars and Python numbers, and a finished checkpoint under the
    legacy (numpy-version dependent) key is still found."""
    import hashlib
    import json

    from validation.training import NetSpec, TrainSpec, job_key, legacy_job_key, make_job

    x = np.arange(12.0).reshape(4, 3)
    net, train = NetSpec(dim=3), TrainSpec()
    spec = {
        "net": {"dim": 3, "hidden": 256, "depth": 4, "embed_dim": 64,
                "parametrisation": "edm", "sigma_data": 1.0},
        "train": {"steps": 2000, "batch_size": 256, "lr": 0.002, "ema_decay": 0.999,
                  "process": "edm", "checkpoint_every": 500, "amp": True},
        "seed": 7,
        "data": {"data": {"array": hashlib.sha256(x.astype("<f8").tobytes()).hexdigest(),
                          "dtype": "<f8", "shape": [4, 3]}},
    }  # fmt: skip
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    assert '"lr":0.002' in text and '"sigma_data":1.0' in text  # floats by repr
    assert job_key(net, train, 7, x) == hashlib.sha256(text.encode()).hexdigest()[:12]
    numpy_typed = job_key(
        NetSpec(dim=np.int64(3), sigma_data=np.float64(1.0)),
        TrainSpec(lr=np.float64(0.002), ema_decay=np.float64(0.999)),
        np.int64(7),
        x.astype(np.float32).astype(np.float64),
    )
    assert numpy_typed == job_key(net, train, 7, x)
    assert job_key(net, TrainSpec(lr=0.0021), 7, x) != job_key(net, train, 7, x)
    assert job_key(net, train, 8, x) != job_key(net, train, 7, x)
    # the legacy keys (repr + pickle) of the checkpoints written before, unchanged
    assert legacy_job_key(net, train, 7, x) == "bd1bad6ca01b"
    cnet = NetSpec(dim=3, hidden=128, depth=3, n_classes=2)
    for labels, key in ((np.array([0, 1, 0, 1]), "a6c8f277d335"), (None, "0ccdf7f98a77")):
        assert legacy_job_key(cnet, train, 7, x, labels) == key
        job = make_job("c", cnet, train, x, seed=7, device="cpu", root=tmp_path, labels=labels)
        assert job.checkpoint_dir.endswith(f"c-{job_key(cnet, train, 7, x, labels)}")
        (tmp_path / f"c-{key}").mkdir()  # a finished legacy checkpoint is found again
        job = make_job("c", cnet, train, x, seed=7, device="cpu", root=tmp_path, labels=labels)
        assert job.checkpoint_dir.endswith(f"c-{key}")
    lab = np.array([0, 1, 0, 1])
    assert job_key(cnet, train, 7, x, lab) != job_key(cnet, train, 7, x, lab[::-1].copy())
    with pytest.raises(InputError):  # labels on an unconditional network
        job_key(NetSpec(dim=3), TrainSpec(), 7, x, labels=np.array([0, 1, 0, 1]))


def test_job_keys_of_ensembles_ignore_caches():
    import physdiff as pd
    from validation.training import NetSpec, TrainSpec, job_key

    def mix():
        return pd.GaussianMixture.isotropic([0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], [0.2, 0.3])

    m = mix()
    before = job_key(NetSpec(dim=2), TrainSpec(), 0, m)
    m.score(np.zeros((3, 2)), 0.5)  # whatever it caches
    assert (
        job_key(NetSpec(dim=2), TrainSpec(), 0, m)
        == before
        == job_key(NetSpec(dim=2), TrainSpec(), 0, mix())
    )
    other = pd.GaussianMixture.isotropic([0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], [0.2, 0.31])
    assert job_key(NetSpec(dim=2), TrainSpec(), 0, other) != before


def test_net_spec_builds_every_kind():
    """One spec type builds the unconditional and the class-conditional MLP and U-Net."""
    import torch

    from validation.training import NetSpec

    x = torch.zeros(2, 64)
    for spec in (
        NetSpec(dim=64, hidden=16, depth=1, embed_dim=8),
        NetSpec(dim=64, hidden=16, depth=1, embed_dim=8, n_classes=3),
        NetSpec(dim=64, kind="unet", base_channels=8, n_classes=3),
    ):
        den = spec.build(seed=1)
        labels = torch.tensor([0, 2]) if spec.conditional else None
        assert den(x, torch.ones(2), labels).shape == (2, 64)
        assert den.n_classes == (spec.n_classes or None)
    with pytest.raises(InputError):
        NetSpec(dim=3, kind="cnn")


def test_shared_training_helpers():
    """``NetSpec.of`` and ``TrainSummary.brief`` give what the experiments wrote inline
    (the same key order: the result files do not move)."""
    from validation.training import NetSpec, TrainSummary, in_process

    cfg = experiments.load("score_fidelity").PRESETS["smoke"]
    assert NetSpec.of(cfg, 5) == NetSpec(5, cfg.net.hidden, cfg.net.depth, cfg.net.embed_dim)
    assert NetSpec.of(cfg, 5, sigma_data=0.5).sigma_data == 0.5
    s = TrainSummary("a", "/c", 10, 1.234, 56.78, 0.5)
    assert list(s.brief().items()) == [("steps", 10), ("seconds", 1.23), ("final_loss", 0.5)]
    assert list(s.brief(rate=True)) == ["steps", "seconds", "samples_per_second", "final_loss"]
    assert in_process(SERIAL, 5) and in_process(Engine("local", workers=1), 5)
    assert not in_process(Engine("local", workers=2), 5)


def test_nested_configs():
    """The shared settings nest (``net``, ``training``, ``verdict``), serialise as nested
    objects, feed ``NetSpec.of``/``TrainSpec.of`` and reject bad values."""
    from validation.config import NetConfig, TrainingConfig, VerdictConfig
    from validation.result import jsonable
    from validation.training import NetSpec, TrainSpec

    cfg = experiments.load("class_decisions").PRESETS["smoke"]
    d = jsonable(cfg)
    assert d["net"] == {"hidden": 64, "depth": 2, "embed_dim": 32}
    assert d["training"]["train_process"] == "ddpm" and d["verdict"]["k"] == 3.0
    assert json.loads(json.dumps(d)) == d
    shifted = with_verdict(cfg, prediction_shift=2.0)
    assert shifted.verdict.prediction_shift == 2.0
    assert shifted.verdict.tolerance_step == cfg.verdict.tolerance_step == 150.0
    spec = TrainSpec.of(cfg)
    assert (spec.steps, spec.batch_size, spec.ema_decay, spec.process) == (300, 256, 0.9, "ddpm")
    assert TrainSpec.of(experiments.load("score_fidelity").PRESETS["smoke"]).process == "edm"
    assert NetSpec.of(NetConfig(hidden=8, depth=1, embed_dim=4), 3) == NetSpec(3, 8, 1, 4)
    for bad in (
        lambda: TrainingConfig(steps=0),
        lambda: TrainingConfig(ema_decay=1.0),
        lambda: NetConfig(hidden=0),
        lambda: VerdictConfig(k=-1.0),
        lambda: VerdictConfig(prediction_shift=math.inf),
    ):
        with pytest.raises(InputError):
            bad()


@pytest.mark.parametrize(
    "name, bad",
    [
        ("score_fidelity", {"component_variance": 0.0}),
        ("score_fidelity", {"dims": (0,)}),
        ("score_fidelity", {"deltas": (0.0, 1.0)}),
        ("score_fidelity", {"n_eval": 1}),
        ("symmetry_networks", {"separation": 0.4}),  # |m|^2 < s^2: no delta_a
        ("symmetry_networks", {"scan_points": 2}),
        ("symmetry_networks", {"clone_q": (0.0,)}),
        ("collapse_networks", {"variance": 0.0}),
    ],
)
def test_check_rejects_bad_input(name, bad):
    module = experiments.load(name)
    for preset in module.PRESETS.values():
        module.check(preset)
    with pytest.raises(InputError):
        module.check(dataclasses.replace(module.PRESETS["smoke"], **bad))


def test_atomic_write_leaves_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    assert os.listdir(tmp_path) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "hello"


# ---------------------------------------------------------------------------------------
# the smoke preset of every experiment (fixture `smoke` in conftest.py: run once per session)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", experiments.EXPERIMENTS)
def test_smoke_preset_runs_and_agrees(smoke, name):
    out, results = smoke
    res = results[name]
    folder = out / name / "smoke"
    on_disk = Result.load(folder / "result.json")
    assert on_disk == res
    assert res.experiment == name and res.preset == "smoke" and res.rows
    judged = [r for r in res.rows if r.judged]  # reference rows are reported, not judged
    assert judged and all(r.verdict == AGREE for r in judged), [
        (r.condition, r.measured) for r in judged
    ]
    for r in res.rows:  # no NaN measurement: a censored crossing is a bound
        assert np.isfinite(r.measured) and 0 <= r.uncertainty < np.inf
        assert ("<=" in r.rule) if r.bound != "lower" else (">=" in r.rule)
        assert r.tolerance is not None and r.slack_reason  # the tolerance audit
    for key in ("python", "numpy", "torch", "physdiff"):
        assert key in res.versions
    assert res.git_revision and res.wall_seconds > 0 and res.config["preset"] == "smoke"
    for f in res.figures:
        size = (folder / f).stat().st_size
        assert f.endswith(".png") and 0 < size < 200_000
    json.loads((folder / "result.json").read_text())  # plain JSON
    assert not [p for p in folder.rglob("*.tmp")]


NO_TRAINING = {"symmetry_dynamics", "collapse_exact", "entropy_rates"}  # exact-score experiments


@pytest.mark.parametrize("name", experiments.EXPERIMENTS)
def test_wrong_prediction_disagrees_and_trainings_are_reused(smoke, name, tmp_path):
    out, _ = smoke
    module = experiments.load(name)
    folder = out / name / "smoke" / "train"
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("checkpoint.pt")}
    trains = name not in NO_TRAINING
    assert bool(stamps) == trains  # experiments on exact scores train nothing
    wrong = with_verdict(module.PRESETS["smoke"], prediction_shift=5.0)
    res = module.run(wrong, device="cpu", out_dir=out / name / "smoke", seed=0, engine=SERIAL)
    # every judged row disagrees; a lower bound stays consistent with a higher prediction
    judged = [r for r in res.rows if r.judged and r.bound != "lower"]
    assert judged and all(r.verdict == DISAGREE for r in judged)
    assert res.verdict == DISAGREE
    # the finished trainings were found, not redone
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("checkpoint.pt")} == stamps


def test_report(smoke):
    out, results = smoke
    report, figures = write_report(out)
    text = report.read_text()
    n_all = sum(len(r.rows) for r in results.values())
    n_rows = sum(row.judged for r in results.values() for row in r.rows)
    assert text.count("| smoke |") >= n_all + len(results)  # comparison rows + run rows
    assert f"{n_rows} of {n_rows} comparisons agree" in text
    for name in experiments.EXPERIMENTS:
        assert name in text
    figs = figures.read_text()
    for name, res in results.items():
        for f in res.figures:
            assert f"]({name}/smoke/{f})" in figs
            assert (out / name / "smoke" / f).exists()


# ---------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------
def test_cli_list(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in experiments.EXPERIMENTS:
        assert name in text


def test_cli_run_and_report(smoke, capsys):
    out, _ = smoke  # the smoke trainings exist: this rerun only evaluates
    argv = [
        "run",
        "memorization_sanity",
        "--preset",
        "smoke",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--engine",
        "serial",
        "--seed",
        "0",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "memorization_sanity [smoke] agree" in text
    assert main(["report", "--out", str(out)]) == 0
    assert (out / "REPORT.md").is_file() and (out / "FIGURES.md").is_file()


def _fails(capsys, argv, match):
    status = main(argv)
    err = capsys.readouterr().err
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("validation: error:"), err
    assert match in lines[0], lines[0]


def test_cli_bad_input_writes_nothing(capsys, tmp_path):
    out = tmp_path / "out"
    _fails(capsys, ["run", "nope", "--out", str(out)], "unknown experiment 'nope'")
    _fails(
        capsys,
        ["run", "score_fidelity", "--preset", "huge", "--out", str(out)],
        "unknown preset 'huge'",
    )
    _fails(capsys, ["run", "score_fidelity", "--seed", "x", "--out", str(out)], "--seed")
    _fails(capsys, ["run", "score_fidelity", "--engine", "mpi", "--out", str(out)], "engine")
    _fails(
        capsys,
        ["run", "score_fidelity", "--data", str(tmp_path / "d.npz"), "--out", str(out)],
        "takes no data file",
    )
    _fails(
        capsys,
        [
            "run",
            "memorization_sanity",
            "--preset",
            "smoke",
            "--data",
            str(tmp_path / "missing.npz"),
            "--out",
            str(out),
        ],
        "does not exist",
    )
    bad = tmp_path / "bad.npz"
    imgs = np.zeros((10, 4, 4))
    imgs[3, 0, 0] = np.nan
    np.savez(bad, images=imgs)
    _fails(
        capsys,
        ["run", "memorization_sanity", "--preset", "smoke", "--data", str(bad), "--out", str(out)],
        "non-finite",
    )
    _fails(capsys, ["report", "--out", str(out)], "does not exist")
    _fails(capsys, ["frobnicate"], "invalid choice")
    assert not out.exists()


def test_cli_missing_cuda(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    out = tmp_path / "out"
    _fails(
        capsys,
        ["run", "score_fidelity", "--preset", "smoke", "--device", "cuda", "--out", str(out)],
        "CUDA is not available",
    )
    _fails(
        capsys,
        ["run-all", "--preset", "smoke", "--device", "cuda", "--out", str(out)],
        "CUDA is not available",
    )
    assert not out.exists()


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "validation", "run", "nope", "--out", str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "validation: error: unknown experiment 'nope'; the "
        "experiments are: " + ", ".join(experiments.EXPERIMENTS)
    )
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------
# sweeps: the local engine (process pool) and the SLURM engine's absence
# ---------------------------------------------------------------------------------------
def test_local_sweep_of_trainings(tmp_path):
    from validation.training import NetSpec, TrainSpec, make_job, train_job

    net = NetSpec(dim=2, hidden=16, depth=1, embed_dim=8)
    spec = TrainSpec(steps=20, batch_size=16, checkpoint_every=10)
    data = np.random.default_rng(0).standard_normal((8, 2))
    jobs = [
        make_job(f"j{i}", net, spec, data, seed=i, device="cpu", root=tmp_path, threads=1)
        for i in range(3)
    ]
    assert len({j.checkpoint_dir for j in jobs}) == 3
    out = map_jobs(train_job, jobs, Engine("local", workers=2), progress=False)
    assert [s.name for s in out] == ["j0", "j1", "j2"]
    assert all(s.steps == 20 and np.isfinite(s.final_loss) for s in out)
    for j in jobs:
        assert (Path(j.checkpoint_dir) / "checkpoint.pt").is_file()
    # in-process rerun finds the finished checkpoints and gives the same results
    again = map_jobs(train_job, jobs, SERIAL, progress=False)
    assert [s.final_loss for s in again] == [s.final_loss for s in out]


def test_slurm_engine_needs_submitit():
    try:
        import submitit  # noqa: F401
    except ImportError:
        from physdiff.errors import InputError

        with pytest.raises(InputError, match="pip install submitit"):
            map_jobs(abs, [1, 2], Engine("slurm"))
    else:  # pragma: no cover
        pytest.skip("submitit is installed")
