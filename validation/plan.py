"""What a preset will train, without training it: the sweep's networks, their ensembles
and the arithmetic they cost (``python -m validation plan --preset gpu``).

An experiment hands all its trainings to :func:`validation.training.train_jobs` in one
call, before it measures anything. :func:`planned_jobs` runs the experiment inside
:func:`validation.training.stop_before_training`, which makes that call raise
:class:`~validation.training.PlannedTrainings` with the jobs instead of training them, so
the plan is exactly what a run would train (the same configs, data sizes, seeds and
grouping into ensembles), found in the time the experiment takes to build its data.

The cost of a network is counted, not modelled: :class:`torch.utils.flop_counter.FlopCounterMode`
counts the floating-point operations of one training loss, forward and backward, on a
small batch of that network (matrix products, convolutions and attention; element-wise
work is left out, so the count is a lower bound on the work and says nothing about
overheads). Multiplied by ``steps * batch_size`` it is the training's arithmetic.
Turning that into seconds on a GPU needs a measured rate (``benchmarks/bench_training.py
--ensemble`` on that GPU); the plan reports FLOPs and samples, not a guessed time.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import experiments
from .training import PlannedTrainings, ensemble_jobs, stop_before_training

__all__ = ["JobCost", "planned_jobs", "job_cost", "plan_rows"]


@dataclass(frozen=True)
class JobCost:
    """One training's size: parameters, loss FLOPs per sample (forward + backward),
    samples seen (``steps * batch_size``) and their product."""

    name: str
    parameters: int
    flops_per_sample: float
    samples: int

    @property
    def flops(self) -> float:
        return self.flops_per_sample * self.samples


def planned_jobs(name: str, preset: str, seed: int = 0) -> list | None:
    """The training jobs of experiment ``name`` at ``preset`` (``None``: it trains none),
    found by running it up to its :func:`~validation.training.train_jobs` call in a
    temporary folder, on the CPU."""
    module = experiments.load(name)
    config = module.PRESETS[preset]
    if getattr(config, "training", None) is None:
        return None
    with tempfile.TemporaryDirectory() as tmp, stop_before_training():
        try:
            module.run(config, device="cpu", out_dir=Path(tmp), seed=seed)
        except PlannedTrainings as planned:
            return list(planned.jobs)
    return None  # it ran to the end without training


def job_cost(job: Any, batch: int = 8) -> JobCost:
    """Count one training's cost (module docstring) on a batch of ``batch`` samples."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    den = job.net.build(job.seed)
    dim = den.dim
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, dim, generator=gen)
    noise = torch.randn(batch, dim, generator=gen)
    delta = torch.exp(torch.randn(batch, generator=gen))
    labels = None
    if den.n_classes is not None:
        labels = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        den.loss(x0, noise, delta, labels).mean().backward()
    params = sum(p.numel() for p in den.parameters())
    return JobCost(
        name=job.name,
        parameters=int(params),
        flops_per_sample=counter.get_total_flops() / batch,
        samples=int(job.train.steps) * int(job.train.batch_size),
    )


def plan_rows(names: list[str], preset: str) -> list[dict]:
    """One row per experiment: networks, ensembles, parameter range, samples and FLOPs."""
    rows = []
    for name in names:
        jobs = planned_jobs(name, preset)
        if not jobs:
            rows.append({"experiment": name, "networks": 0})
            continue
        costs = [job_cost(j) for j in jobs]
        params = np.array([c.parameters for c in costs])
        rows.append(
            {
                "experiment": name,
                "networks": len(jobs),
                "ensembles": len(ensemble_jobs(jobs, check_finished=False)),
                "parameters": (int(params.min()), int(params.max())),
                "samples": int(sum(c.samples for c in costs)),
                "flops": float(sum(c.flops for c in costs)),
            }
        )
    return rows
