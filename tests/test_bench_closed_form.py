"""The numpy baselines of benchmarks/bench_ensembles.py (--closed-form) and
benchmarks/bench_sampling.py compute what the library computes: the closed forms against the
mixture's per-component formulas (the general path, not the fast path they are timed
against), and the numpy sampler loop against physdiff.sampling.sample."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_ensembles as BE
from benchmarks import bench_sampling as BS
from physdiff import sampling
from physdiff.processes import get_process

METHODS = ("posterior", "score", "denoise", "score_jacobian")


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("structure", ["isotropic", "shared rank d/4"])
def test_closed_form_baselines_match_the_per_component_formulas(structure):
    lib, ref, y = BE.closed_form_case(structure, 24, 5, np.random.default_rng(4))
    y = y[:40]
    dl = np.full((40, 1), BE.DELTA)
    for method in METHODS:
        want = getattr(lib, "_general_" + method)(y, dl)
        assert _rel(getattr(ref, method)(y, BE.DELTA), want) < 1e-10, method


def test_per_component_baseline_matches_the_closed_form():
    _, ref = BS.model(16)
    pc = BS.PerComponent(ref)
    y = 2.0 * np.random.default_rng(0).standard_normal((50, 16))
    for method in ("score", "denoise"):
        assert _rel(getattr(pc, method)(y, 0.3), getattr(ref, method)(y, 0.3)) < 1e-12


@pytest.mark.parametrize("method", BS.METHODS)
def test_numpy_loop_follows_the_library_sampler(method):
    lib, ref = BS.model(16)
    process = get_process("ou")
    grid = np.asarray(process.sampling_grid(12), dtype=float)
    x = np.random.default_rng(1).standard_normal((200, 16))
    got = BS.numpy_loop(ref, method, x, grid, BS.schedule(process, grid), 7)
    res = sampling.sample(
        lib, None, np.random.default_rng(7), method=method, process=process, times=grid, x_start=x
    )
    assert _rel(got, res.x) < 1e-9
    # and a different update rule would be visible
    other = "ddpm" if method != "ddpm" else "euler"
    wrong = BS.numpy_loop(ref, other, x, grid, BS.schedule(process, grid), 7)
    assert _rel(wrong, res.x) > 1e-3
