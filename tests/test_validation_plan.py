"""validation.plan: a preset's trainings found without training, and their counted cost."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from validation import plan  # noqa: E402
from validation.training import NetSpec, TrainSpec, make_job  # noqa: E402


def test_planned_jobs_are_the_runs_trainings_and_nothing_is_trained(tmp_path, monkeypatch):
    import validation.training as T

    trained = []
    monkeypatch.setattr(T, "train_ensemble_job", lambda ens: trained.append(ens))
    jobs = plan.planned_jobs("memorization_sanity", "smoke")
    config = plan.experiments.load("memorization_sanity").PRESETS["smoke"]
    assert trained == []
    assert len(jobs) == 2
    assert {j.train.steps for j in jobs} == {config.training.steps}
    assert plan.planned_jobs("collapse_exact", "smoke") is None  # trains nothing


def test_job_cost_counts_the_mlp_products():
    """Each Linear layer of in x out costs 2 in out FLOPs forward and 2 in out for its
    weight gradient, plus 2 in out for its input gradient wherever that is needed (not
    for the first layers, whose inputs are data): between 4 and 6 times the MACs."""
    import torch

    net = NetSpec(dim=6, hidden=16, depth=2, embed_dim=8)
    job = make_job("x", net, TrainSpec(steps=10, batch_size=4), None, seed=0, device="cpu",
                   root="/tmp")  # fmt: skip
    cost = plan.job_cost(job)
    den = net.build(0)
    macs = sum(m.in_features * m.out_features for m in den.modules()
               if isinstance(m, torch.nn.Linear))  # fmt: skip
    assert 4 * macs <= cost.flops_per_sample <= 6 * macs
    assert cost.samples == 40 and cost.flops == cost.flops_per_sample * 40
    assert cost.parameters == sum(p.numel() for p in den.parameters())
