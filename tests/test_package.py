"""Package-level facts: one version, the public names where users look for them, one
check per experiment run."""

from __future__ import annotations

import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

import physdiff

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_declared_once():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "physdiff.__version__"}
    assert metadata.version("physdiff") == physdiff.__version__


def test_uniform_sphere_is_exported_lazily():
    from physdiff import ensembles
    from physdiff.ensembles import sphere

    assert "UniformSphere" in ensembles.__all__
    assert ensembles.UniformSphere is sphere.UniformSphere
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        ensembles.Nope  # noqa: B018


def test_errors_live_in_errors_and_stay_importable():
    from physdiff import errors, figures, symmetry

    assert symmetry.NoSymmetryBreaking is errors.NoSymmetryBreaking
    assert figures.DuplicateFigureError is errors.DuplicateFigureError
    assert issubclass(errors.NoSymmetryBreaking, (errors.PhysdiffError, ValueError))
    assert issubclass(errors.DuplicateFigureError, errors.InputError)
    for name in errors.__all__:
        assert getattr(errors, name).__module__ == "physdiff.errors"


def test_runner_exports_execute():
    from validation import runner

    assert "execute" in runner.__all__ and callable(runner.execute)


def test_experiment_run_checks_the_config_once(tmp_path):
    from validation.experiments import RunContext, experiment_run

    calls = []
    mod = types.ModuleType("fake_experiment_for_check")
    mod.NAME = "fake"
    mod.check = lambda config: calls.append(("check", config))
    sys.modules[mod.__name__] = mod
    config = types.SimpleNamespace(preset="smoke")  # no training: no default engine
    try:

        def body(config, ctx):
            calls.append(("body", config))
            return ctx

        body.__module__ = mod.__name__
        run = experiment_run(body)
        ctx = run(config, device="cpu", out_dir=str(tmp_path), seed=3)
        assert isinstance(ctx, RunContext) and calls == [("check", config), ("body", config)]
        assert (ctx.name, ctx.device, ctx.out_dir, ctx.seed, ctx.engine) == (
            "fake",
            "cpu",
            tmp_path,
            3,
            None,
        )
        calls.clear()
        run(config, device="cpu", out_dir=tmp_path, seed=0, checked=True)
        assert calls == [("body", config)]
        mod.check = lambda config: (_ for _ in ()).throw(ValueError("bad config"))
        with pytest.raises(ValueError, match="bad config"):
            run(config, device="cpu", out_dir=tmp_path, seed=0)
    finally:
        del sys.modules[mod.__name__]


def test_experiment_run_makes_the_default_engine_and_the_result(tmp_path):
    from validation.experiments import experiment_run
    from validation.sweep import Engine

    mod = types.ModuleType("fake_experiment_for_engine")
    mod.NAME = "fake"
    sys.modules[mod.__name__] = mod
    config = types.SimpleNamespace(preset="cpu", training=types.SimpleNamespace(workers=3))
    try:

        def body(config, ctx):
            assert ctx.engine == Engine("local", workers=3)
            return ctx.result([], ["f.png"])

        body.__module__ = mod.__name__
        res = experiment_run(body)(config, device="cpu", out_dir=tmp_path, seed=5)
        assert (res.experiment, res.preset, res.seed, res.figures) == ("fake", "cpu", 5, ("f.png",))
        assert res.wall_seconds >= 0 and res.rows == ()
        serial = Engine("serial")

        def engine_of(config, ctx):
            return ctx.engine

        engine_of.__module__ = mod.__name__
        run = experiment_run(engine_of)
        assert run(config, device="cpu", out_dir=tmp_path, seed=0, engine=serial) is serial
    finally:
        del sys.modules[mod.__name__]


def test_presets_name_each_config_by_its_key():
    import dataclasses

    from validation.config import presets

    @dataclasses.dataclass(frozen=True)
    class Config:
        preset: str
        n: int = 1

    out = presets(Config, smoke=dict(n=2), cpu=dict(), gpu=dict(n=9))
    assert list(out) == ["smoke", "cpu", "gpu"]
    assert out == {"smoke": Config("smoke", 2), "cpu": Config("cpu"), "gpu": Config("gpu", 9)}
    with pytest.raises(TypeError):
        presets(Config, smoke=dict(preset="other"))  # the key is the name


def test_experiment_config_presets_and_the_context_job(tmp_path):
    import dataclasses

    import numpy as np

    from validation.config import ExperimentConfig, TrainingConfig
    from validation.experiments import RunContext
    from validation.training import NetSpec, TrainSpec

    @dataclasses.dataclass(frozen=True)
    class Config(ExperimentConfig):
        n: int = 1
        training: TrainingConfig = TrainingConfig(steps=7, batch_size=4)

    out = Config.presets(smoke=dict(n=2), cpu=dict(), gpu=dict(n=9))
    assert list(out) == ["smoke", "cpu", "gpu"] and out["gpu"] == Config("gpu", 9)
    assert [f.name for f in dataclasses.fields(Config)][:2] == ["preset", "n"]
    ctx = RunContext("fake", out["smoke"], "cpu", tmp_path, 0, None, 0.0)
    data = np.zeros((3, 2))
    job = ctx.job("a", NetSpec(2, 8, 1, 4), data, seed=5)
    assert job.train == TrainSpec.of(out["smoke"]) and job.train.steps == 7
    assert job.device == "cpu" and str(job.checkpoint_dir).startswith(str(tmp_path / "train"))
    other = TrainSpec.of(out["smoke"], steps=3)
    assert ctx.job("a", NetSpec(2, 8, 1, 4), data, seed=5, train=other).train == other
