"""Fixtures shared by the test files."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """``(out, results)``: the smoke preset of every validation experiment, run once per test
    session into one results folder (one process, serial sweeps), so that every validation
    test file reads the same runs and reuses their trainings."""
    pytest.importorskip("torch")
    from validation import experiments
    from validation.runner import run_experiment
    from validation.sweep import Engine

    out = tmp_path_factory.mktemp("results")
    results = {
        name: run_experiment(name, "smoke", device="cpu", out=out, seed=0, engine=Engine("serial"))
        for name in experiments.EXPERIMENTS
    }
    return out, results


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread (tiny matrices: one thread is fastest, and immune to
    OpenMP oversubscription), restoring the thread count afterwards."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
