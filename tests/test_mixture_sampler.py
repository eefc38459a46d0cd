"""The fused mixture sampler (physdiff/ensembles/_mixture_sampler.py): the same particles
as the generic stepper to rounding, for every method, structure and process it takes; the
fall-back to the generic stepper elsewhere; and the non-finite guard."""

from __future__ import annotations

import numpy as np
import pytest

from physdiff import sampling
from physdiff.ensembles import Gaussian, GaussianMixture
from physdiff.ensembles import _mixture_sampler as fused
from physdiff.errors import PhysdiffError
from physdiff.processes import OU, VE
from physdiff.sampling import PosteriorStep, RungeKutta, StepRecorder

METHODS = ["euler", "heun", "ddpm", "euler-maruyama", "ddim", PosteriorStep(0.5, "ddim(0.5)")]


def _mixtures():
    rng = np.random.default_rng(3)
    d, K = 6, 4
    w = rng.dirichlet(np.ones(K))
    mu = 2.0 * rng.standard_normal((K, d)) / np.sqrt(d)
    A = rng.standard_normal((d, d))
    B = rng.standard_normal((d, 2))
    return {
        # different variances and a point mass
        "isotropic": GaussianMixture.isotropic(w, mu, [0.3, 0.0, 1.2, 0.05]),
        "shared full": GaussianMixture.shared_covariance(w, mu, A @ A.T / d + 0.05 * np.eye(d)),
        "shared low rank": GaussianMixture.shared_covariance(w, mu, B @ B.T / 2),
    }


MIXTURES = _mixtures()


def _run(mode, monkeypatch, model, method, **kw):
    monkeypatch.setattr(fused, "MODE", mode)
    rng = np.random.default_rng(11)
    res = sampling.sample(model, kw.pop("n", 300), rng, method=method, **kw)
    return res, rng.standard_normal()  # the generator's state after the run


def _spy(monkeypatch):
    """The fused calls of the next runs: a step index per :meth:`FusedRun.advance`,
    ``"run"`` per whole run (:meth:`FusedRun.run`)."""
    calls = []
    advance, run = fused.FusedRun.advance, fused.FusedRun.run

    def spy_advance(self, i, x):
        calls.append(i)
        return advance(self, i, x)

    def spy_run(self, x):
        calls.append("run")
        return run(self, x)

    monkeypatch.setattr(fused.FusedRun, "advance", spy_advance)
    monkeypatch.setattr(fused.FusedRun, "run", spy_run)
    return calls


@pytest.mark.parametrize("name", list(MIXTURES))
@pytest.mark.parametrize("method", METHODS, ids=str)
@pytest.mark.parametrize("process", ["ou", "ve"])
def test_fused_equals_generic(name, method, process, monkeypatch):
    model = MIXTURES[name]
    gen, g_next = _run("generic", monkeypatch, model, method, process=process, n_steps=25)
    calls = _spy(monkeypatch)
    fus, f_next = _run("fused", monkeypatch, model, method, process=process, n_steps=25)
    noisy = method in ("ddpm", "euler-maruyama") or str(method).startswith("Posterior")
    # deterministic runs take every step in one call, stochastic ones step by step
    assert calls == (list(range(25)) if noisy else ["run"])
    assert fus.x.shape == gen.x.shape == (300, model.dim)
    scale = np.max(np.abs(gen.x))
    np.testing.assert_allclose(fus.x, gen.x, rtol=0, atol=1e-10 * scale)
    assert fus.n_evals == gen.n_evals
    assert f_next == g_next  # the same noise drawn, no more, no less


@pytest.mark.parametrize("method", ["heun", "ddpm"])
def test_grid_down_to_delta_zero(method, monkeypatch):
    """OU's grid to t = 0: Heun's last step stays Euler, the posterior step lands on x0."""
    model = MIXTURES["isotropic"]
    times = np.concatenate([np.geomspace(3.0, 1e-3, 20), [0.0]])
    gen, _ = _run("generic", monkeypatch, model, method, process=OU(), times=times)
    fus, _ = _run("fused", monkeypatch, model, method, process=OU(), times=times)
    np.testing.assert_allclose(fus.x, gen.x, rtol=0, atol=1e-10 * np.max(np.abs(gen.x)))
    assert fus.n_evals == gen.n_evals


def test_trajectory_recorder_and_final_denoise(monkeypatch):
    """Every grid state is kept intact (no buffer of a recorded step is reused)."""
    model = MIXTURES["shared low rank"]
    out = {}
    for mode in ("generic", "fused"):
        seen = []
        res, _ = _run(
            mode,
            monkeypatch,
            model,
            "ddpm",
            process=VE(),
            n_steps=12,
            record=lambda t, x, seen=seen: seen.append(x),
            return_trajectory=True,
            final_denoise=True,
        )
        out[mode] = (res, np.stack(seen))
    (g, _), (f, fseen) = out["generic"], out["fused"]
    assert f.trajectory.shape == (13, 300, model.dim)
    np.testing.assert_allclose(f.trajectory, g.trajectory, atol=1e-10)
    np.testing.assert_allclose(fseen, f.trajectory, atol=0)
    np.testing.assert_allclose(f.samples, g.samples, atol=1e-10)
    assert f.n_evals == g.n_evals == 13


def test_auto_mode_uses_the_kernel_on_large_runs_only(monkeypatch):
    model = MIXTURES["isotropic"]
    calls = _spy(monkeypatch)
    _run("auto", monkeypatch, model, "euler", n=20, n_steps=10)  # 1200 coordinate-steps
    assert calls == []
    _run("auto", monkeypatch, model, "euler", n=5000, n_steps=10)
    assert calls == ["run"]


def test_environment_forces_the_generic_stepper(monkeypatch):
    calls = _spy(monkeypatch)
    monkeypatch.setenv("PHYSDIFF_SAMPLER", "generic")
    _run("fused", monkeypatch, MIXTURES["isotropic"], "heun", n_steps=5)
    assert calls == []


class _OwnScore(GaussianMixture):
    def _score(self, y, delta):
        return 2.0 * super()._score(y, delta)


def _unshared():
    return GaussianMixture.from_components(
        [0.5, 0.5], [Gaussian(np.zeros(2), np.diag([1.0, 2.0])), Gaussian(np.ones(2), np.eye(2))]
    )


MIDPOINT = RungeKutta("midpoint", (0.0, 0.5), ((), (0.5,)), (0.0, 1.0), order=2)
RALSTON = RungeKutta("ralston", (0.0, 2 / 3), ((), (2 / 3,)), (0.25, 0.75), order=2)


@pytest.mark.parametrize(
    "model, method",
    [
        (_unshared(), "heun"),  # no fast structure
        (
            _OwnScore.isotropic([0.5, 0.5], np.eye(2), [0.1, 0.2]),
            "euler",
        ),  # a subclass with its own score
        (MIXTURES["isotropic"], MIDPOINT),  # a tableau the kernel does not take
        (MIXTURES["isotropic"], RALSTON),
        (Gaussian(np.zeros(3), np.eye(3)), "euler"),  # not a mixture
    ],
    ids=["unshared", "subclass", "midpoint", "ralston", "gaussian"],
)
def test_falls_back_to_the_generic_stepper(model, method, monkeypatch):
    calls = _spy(monkeypatch)
    res, _ = _run("fused", monkeypatch, model, method, n_steps=6)
    assert calls == []
    assert res.x.shape == (300, model.dim)


def test_step_recorder_takes_the_generic_stepper(monkeypatch):
    calls = _spy(monkeypatch)
    evals = []
    rec = StepRecorder(lambda r: evals.append(r.evaluation))
    _run("fused", monkeypatch, MIXTURES["isotropic"], "ddpm", n_steps=6, record=rec)
    assert calls == []
    assert evals[0] is None and all(e is not None for e in evals[1:])


@pytest.mark.parametrize("method", ["euler", "ddpm"])
def test_far_particle_is_redone_generically(method, monkeypatch):
    """A particle whose log joints overflow (|y| ~ 1e200): the step is redone by the
    generic method with the same noise, which handles it by the far-away posterior."""
    model = MIXTURES["isotropic"]
    x0 = np.random.default_rng(5).standard_normal((300, model.dim))
    x0[7] = 1e200
    times = np.geomspace(2.0, 0.05, 9)
    gen, g_next = _run("generic", monkeypatch, model, method, process=OU(), times=times, x_start=x0)
    calls = _spy(monkeypatch)
    fus, f_next = _run("fused", monkeypatch, model, method, process=OU(), times=times, x_start=x0)
    # flagged: the whole deterministic run is taken again step by step
    assert calls == (["run"] if method == "euler" else []) + list(range(8))
    assert np.all(np.isfinite(gen.x))
    np.testing.assert_allclose(fus.x, gen.x, rtol=1e-12, atol=1e-10)
    assert f_next == g_next


def test_non_finite_input_raises_as_the_generic_stepper(monkeypatch):
    """A particle whose VE-frame value x / alpha overflows: the fused step flags it, the
    generic redo raises the model's error, the same as without the kernel."""
    model = MIXTURES["shared full"]
    x0 = np.zeros((300, model.dim))
    x0[3, 0] = 1.5e308
    times = np.geomspace(2.0, 0.05, 5)
    messages = []
    for mode in ("generic", "fused"):
        calls = _spy(monkeypatch)
        with pytest.raises(PhysdiffError, match="non-finite") as err, np.errstate(over="ignore"):
            _run(mode, monkeypatch, model, "euler", process=OU(), times=times, x_start=x0)
        messages.append((type(err.value), str(err.value)))
        assert calls == (["run", 0] if mode == "fused" else [])
    assert messages[0] == messages[1]
