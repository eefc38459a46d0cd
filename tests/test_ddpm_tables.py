"""DDPM processes from any table: named schedules against diffusers' own tables, float32
tables taken as they are, zero terminal SNR, diffusers' timestep spacings, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physdiff import sampling
from physdiff._ddpm_tables import spaced_steps
from physdiff.ensembles import GaussianMixture
from physdiff.errors import DomainError, InputError, ShapeError
from physdiff.processes import DDPM, PRESETS, get_process, times_of_delta

torch = pytest.importorskip("torch")
schedulers = pytest.importorskip("diffusers.schedulers")


def _ddim(**kw):
    return schedulers.DDIMScheduler(num_train_timesteps=1000, **kw)


# float32 rounding of diffusers' tables: linspace in float32 is within a few ulps (6e-8 each)
F32 = 1e-6


@pytest.mark.parametrize(
    "preset,kw",
    [
        ("ddpm", {"beta_schedule": "linear"}),
        ("ddpm-scaled-linear",
         {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}),
        ("ddpm-cosine", {"beta_schedule": "squaredcos_cap_v2"}),
    ],
)  # fmt: skip
def test_named_schedules_are_diffusers_tables(preset, kw):
    ours = get_process(preset)
    theirs = _ddim(**kw)
    np.testing.assert_allclose(ours.betas, theirs.betas.double().numpy(), rtol=F32)
    # diffusers' float32 cumprod accumulates one rounding a step (1000 steps)
    np.testing.assert_allclose(
        ours.alpha_bars, theirs.alphas_cumprod.double().numpy(), rtol=1000 * 6e-8
    )


def test_zero_terminal_snr_is_lin_et_al_rescaling():
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    ours = PRESETS["ddpm-zero-snr"]
    base = PRESETS["ddpm-scaled-linear"]
    betas = rescale_zero_terminal_snr(torch.tensor(np.asarray(base.betas)))  # float64
    abar = torch.cumprod(1 - betas, 0).numpy()
    np.testing.assert_allclose(ours.alpha_bars[:-1], abar[:-1], rtol=1e-12)
    assert abar[-1] == 0 and ours.alpha_bars[-1] == 0
    assert ours.betas[-1] == 1.0
    T = ours.n_steps
    assert ours.delta(T - 1) == math.inf and ours.sigma(T - 1) == 1.0 and ours.alpha(T - 1) == 0
    assert ours.diffusion(T - 2.5) > 0 and math.isfinite(ours.diffusion(T - 2.5))
    assert ours.time_of_delta(math.inf) == T - 1
    for t in (T - 1.75, T - 1.5, T - 1.001, 500.25):  # the continuation inverts
        assert ours.time_of_delta(ours.delta(t)) == pytest.approx(t, rel=1e-12)
    assert ours.step_of_delta(1e12, "floor") == T - 2
    assert ours.step_of_delta(1e12, "ceil") == T - 1
    assert ours.last_finite_step == T - 2
    grid = ours.time_grid(10)
    assert grid[0] == T - 2 and grid[-1] == 0
    model = GaussianMixture.isotropic([0.5, 0.5], [[-1.0], [1.0]], [0.2, 0.2])
    res = sampling.ddim(model, 64, np.random.default_rng(0), process=ours, n_steps=20)
    assert np.all(np.isfinite(res.samples))
    with pytest.raises(DomainError, match="times must start where delta is finite"):
        sampling.ddim(model, 4, np.random.default_rng(0), process=ours, times=[T - 1, 10, 0])
    assert times_of_delta(1e9)["ddpm-zero-snr"].step is not None


def test_float32_table_is_taken_as_it_is():
    sched = _ddim(beta_schedule="squaredcos_cap_v2")
    table = sched.alphas_cumprod  # float32 tensor
    assert table.dtype == torch.float32
    proc = DDPM.from_alphas_cumprod(table)
    a = table.double().numpy()
    np.testing.assert_array_equal(proc.alpha_bars, a)
    # delta_k = (1 - a_k)/a_k; 1 - a_k is exact in float64 for a float32 a_k
    np.testing.assert_allclose(proc.deltas, (1 - a) / a, rtol=4e-16)
    for k in (0, 1, 500, 999):
        assert proc.delta_of_step(k) == pytest.approx((1 - a[k]) / a[k], rel=4e-16)
        assert proc.delta(float(k)) == pytest.approx((1 - a[k]) / a[k], rel=1e-14)
        assert proc.time_of_delta(proc.delta_of_step(k)) == pytest.approx(k, abs=1e-9)
    assert proc.step_of_delta(proc.delta_of_step(999), "floor") == 999
    assert proc.step_of_delta(proc.delta_of_step(0), "ceil") == 0
    # the float64 recomputation differs from the table by float32 rounding, so it is not it
    assert proc != get_process("ddpm-cosine")
    assert DDPM.from_diffusers(sched) == proc
    assert DDPM.from_alphas_cumprod(a) == proc and hash(DDPM.from_alphas_cumprod(a)) == hash(proc)
    assert "alphas_cumprod=<1000 steps, sha256" in repr(proc)


def test_betas_table_and_equality():
    p = DDPM()
    assert DDPM(betas=p.betas) == p
    np.testing.assert_allclose(DDPM(betas=p.betas).deltas, p.deltas, rtol=1e-15)
    assert repr(p) == "DDPM(beta_start=0.0001, beta_end=0.02, n_steps=1000)"  # checkpoints
    assert DDPM(1e-3, 0.05, 200) != p
    assert (
        DDPM(schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        == PRESETS["ddpm-scaled-linear"]
    )
    assert DDPM(betas=[0.1, 0.2, 1.0]).delta(2.0) == math.inf


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("n", [1, 7, 10, 50, 999])
@pytest.mark.parametrize("offset", [0, 1])
def test_spacings_are_diffusers(spacing, n, offset):
    sched = _ddim(timestep_spacing=spacing, steps_offset=offset)
    sched.set_timesteps(n)
    np.testing.assert_array_equal(
        spaced_steps(1000, n, spacing, offset if spacing == "leading" else 0),
        sched.timesteps.numpy(),
    )


def test_bad_tables_name_the_argument():
    with pytest.raises(DomainError, match="alphas_cumprod must be strictly decreasing"):
        DDPM.from_alphas_cumprod([0.9, 0.95, 0.5])
    with pytest.raises(DomainError, match="alphas_cumprod"):
        DDPM.from_alphas_cumprod([1.0, 0.5])
    with pytest.raises(ShapeError, match="alphas_cumprod must be a 1-D table"):
        DDPM.from_alphas_cumprod(np.ones((2, 2)) * 0.5)
    with pytest.raises(InputError, match="alphas_cumprod must be finite"):
        DDPM.from_alphas_cumprod([0.9, float("nan")])
    with pytest.raises(InputError, match="at least 2"):
        DDPM.from_alphas_cumprod([0.9])
    with pytest.raises(DomainError, match="betas must lie in"):
        DDPM(betas=[0.1, 1.0, 0.2])
    with pytest.raises(DomainError, match="betas must lie in"):
        DDPM(betas=[0.0, 0.2])
    with pytest.raises(InputError, match="betas is a whole table"):
        DDPM(betas=[0.1, 0.2], n_steps=2)
    with pytest.raises(InputError, match="schedule must be one of"):
        DDPM(schedule="sigmoid")
    with pytest.raises(InputError, match="from_alphas_cumprod"):
        DDPM(schedule="alphas_cumprod")
    with pytest.raises(InputError, match="already ends at abar = 0"):
        DDPM(betas=[0.1, 1.0], zero_terminal_snr=True)
    with pytest.raises(InputError, match="scheduler must have .alphas_cumprod"):
        DDPM.from_diffusers(object())
    with pytest.raises(InputError, match="timestep_spacing must be one of"):
        spaced_steps(1000, 10, "uniform")
    with pytest.raises(InputError, match="num_inference_steps"):
        spaced_steps(1000, 1001)
    with pytest.raises(InputError, match="steps_offset"):
        spaced_steps(1000, 2, "leading", 999)
