"""The samplers' default grids (Process.sampling_grid): on every process every
deterministic method converges on them, at the rate of its order, to the flow's end
points; OU's grid is uniform in log delta (its uniform-in-t grid was not accurate)."""

from __future__ import annotations

import numpy as np
import pytest

import physdiff as pd
from physdiff import sampling
from physdiff.processes import SAMPLING_FLOOR, log_delta_grid

# two separated classes with some width (nothing is exact for a posterior step), and two
# point masses (the stiffest data end there is)
MIX = pd.GaussianMixture.isotropic([0.3, 0.7], np.array([[-2.0], [1.5]]), [0.1, 0.3])
DELTAS = pd.GaussianMixture.two_deltas(m=1.0)
PROCESSES = ["ou", "vp-linear", "vp-cosine", "ve", "edm", "ddpm"]
DETERMINISTIC = ["heun", "euler", "ddim"]


def _end_points(model, process, method, n_steps, n=64):
    # the same start for every grid: the exact marginal at t_max, one seed
    return sampling.sample(
        model, n, np.random.default_rng(3), method=method, process=process, n_steps=n_steps
    ).samples


@pytest.fixture(scope="module")
def references():
    # the flow's end points by Heun on the finest grid (DDPM: every one of its steps)
    return {p: _end_points(MIX, p, "heun", 998 if p == "ddpm" else 6400) for p in PROCESSES}


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("method", DETERMINISTIC)
def test_deterministic_methods_converge_at_their_order(process, method, references):
    ns = (60, 120, 240) if process == "ddpm" else (100, 200, 400)
    ref = references[process]
    errs = [float(np.abs(_end_points(MIX, process, method, n) - ref).max()) for n in ns]
    order = sampling.METHODS[method].order
    # the observed order over each doubling, within 0.4 of the method's (pre-asymptotic
    # range and the max over 64 end points)
    for coarse, fine in zip(errs, errs[1:], strict=False):
        assert np.log2(coarse / fine) > order - 0.4, errs
    if order == 2:  # and accurate: within 1e-2 at 200 steps (EDM's own grid: 1.3e-3)
        assert errs[1] < 1e-2, errs


@pytest.mark.parametrize("process", ["ou", "vp-linear", "vp-cosine", "edm"])
def test_heun_reaches_point_masses_on_the_default_grid(process):
    # the data end is singular for point masses: the grid must resolve delta -> 0
    out = _end_points(DELTAS, process, "heun", 200)
    assert np.abs(np.abs(out) - 1.0).max() < 0.04


def test_the_uniform_grid_in_ou_time_was_not_accurate():
    # what OU's default replaced: Heun on a grid uniform in t lands 0.55 off at 200 steps
    ou = pd.get_process("ou")
    out = sampling.sample(
        DELTAS, 256, np.random.default_rng(0), method="heun", process=ou, times=ou.time_grid(200)
    ).samples
    assert np.abs(np.abs(out) - 1.0).max() > 0.3
    new = _end_points(DELTAS, ou, "heun", 200, n=256)
    assert np.abs(np.abs(new) - 1.0).max() < 1e-2


def test_log_delta_grid_is_log_uniform_down_to_the_floor_then_one_step():
    for name in ["ou", "vp-linear", "ve"]:
        proc = pd.get_process(name)
        t = log_delta_grid(proc, 40)
        assert t.shape == (41,) and np.all(np.diff(t) < 0)
        assert t[0] == proc.t_max and t[-1] == proc.t_min
        d = np.asarray(proc.delta(t), dtype=float)
        below = proc.delta_min < SAMPLING_FLOOR
        logs = np.log(d[:-1] if below else d)
        np.testing.assert_allclose(np.diff(logs), np.diff(logs)[0], rtol=1e-6)
        if below:
            assert d[-2] == pytest.approx(SAMPLING_FLOOR, rel=1e-9)
    ou = pd.get_process("ou")
    np.testing.assert_array_equal(log_delta_grid(ou, 1), [ou.t_max, ou.t_min])


def test_the_other_processes_sample_on_their_own_time_grid():
    for name in ["vp-linear", "vp-cosine", "ve", "edm", "ddpm"]:
        proc = pd.get_process(name)
        np.testing.assert_array_equal(proc.sampling_grid(50), proc.time_grid(50))
    ou = pd.get_process("ou")
    np.testing.assert_array_equal(ou.sampling_grid(50), log_delta_grid(ou, 50))
