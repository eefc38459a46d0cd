"""The experiments, one module each, listed explicitly in :data:`EXPERIMENTS`.

Every module defines

* ``Config``: a frozen dataclass subclassing :class:`validation.config.ExperimentConfig`,
  whose first field ``preset`` names the preset;
* ``PRESETS = {"smoke": Config(...), "cpu": Config(...), "gpu": Config(...)}``, as a rule
  ``Config.presets(smoke=dict(...), cpu=dict(...), gpu=dict(...))``;
* ``NAME``, the experiment's name;
* ``run(config, *, device, out_dir, seed, engine=None) -> validation.result.Result``,
  writing its figures into ``out_dir`` and its trainings under ``out_dir / "train"``:
  a body ``run(config, ctx)`` decorated with :func:`experiment_run`, which times the run,
  checks the config, applies its thread limits and hands the body a :class:`RunContext`;
* optionally ``check(config) -> None``, which validates inputs (a data file, say) before
  anything is written, raising :class:`physdiff.errors.InputError`; :func:`experiment_run`
  calls it once per run (not the body), and :func:`validation.runner.prepare` calls it
  before anything is written, handing ``checked=True`` on;
* a module docstring whose first line is the one-line summary shown by ``list``.

To add an experiment, add its module and its name to :data:`EXPERIMENTS`.
"""

from __future__ import annotations

import functools
import importlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from physdiff.errors import InputError

__all__ = ["EXPERIMENTS", "PRESET_NAMES", "load", "summary", "experiment_run", "RunContext"]

EXPERIMENTS: tuple[str, ...] = (
    "score_fidelity",
    "memorization_sanity",
    "collapse_exact",
    "collapse_networks",
    "lost_dimensions",
    "associative_memory",
    "symmetry_dynamics",
    "symmetry_networks",
    "late_init",
    "entropy_rates",
    "class_decisions",
    "guidance",
    "network_memorization",
)
"""Every experiment, in the order ``run-all`` and the report use."""

PRESET_NAMES: tuple[str, ...] = ("smoke", "cpu", "gpu")


def load(name: str) -> ModuleType:
    """The module of experiment ``name`` (:class:`InputError` for an unknown name)."""
    if name not in EXPERIMENTS:
        raise InputError(
            f"unknown experiment {name!r}; the experiments are: {', '.join(EXPERIMENTS)}"
        )
    return importlib.import_module(f"{__name__}.{name}")


def summary(module: ModuleType) -> str:
    """The first line of the module's docstring."""
    doc = (module.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True)
class RunContext:
    """What an experiment's body receives besides its config (see :func:`experiment_run`).

    ``engine`` is the sweep engine for the trainings: the one passed to ``run``, or by
    default ``Engine("local", workers=config.training.workers)`` for a config with a
    ``training`` field (``None`` for an experiment that trains nothing). ``started`` is the
    ``time.perf_counter()`` value when the run began."""

    name: str
    config: Any
    device: str
    out_dir: Path
    seed: int
    engine: Any
    started: float

    def job(self, name: str, net: Any, data: Any, *, seed: int, train: Any = None, **options: Any):
        """:func:`validation.training.make_job` on this run's device, with the checkpoint under
        ``out_dir / "train"`` and the config's ``training.threads``; ``train`` (a
        :class:`validation.training.TrainSpec`) defaults to the config's own
        (``TrainSpec.of(config)``); ``options``: ``progress``, ``labels``."""
        from ..training import TrainSpec, make_job

        return make_job(
            name,
            net,
            TrainSpec.of(self.config) if train is None else train,
            data,
            seed=seed,
            device=self.device,
            root=self.out_dir / "train",
            threads=self.config.training.threads,
            **options,
        )

    def in_process(self, n_jobs: int) -> bool:
        """Whether this run's engine trains ``n_jobs`` jobs one after another in this process
        (:func:`validation.training.in_process`): then a job may show its progress bar."""
        from ..training import in_process

        return in_process(self.engine, n_jobs)

    def train(self, jobs: Sequence[Any]) -> list:
        """Train ``jobs`` on this run's engine (:func:`validation.training.train_jobs`, the
        progress named after the experiment); their summaries, in order."""
        from ..training import train_jobs

        return train_jobs(jobs, self.engine, desc=f"{self.name}: training")

    def network(self, job: Any):
        """The trained network of ``job`` on this run's device
        (:func:`validation.training.load_network`)."""
        from ..training import load_network

        return load_network(job, self.device)

    def result(self, rows: Sequence[Any], figures: Sequence[str] = ()) -> Any:
        """The run's :class:`~validation.result.Result` (:func:`validation.result.new_result`:
        versions, git revision, wall time since :attr:`started`)."""
        from ..result import new_result

        return new_result(
            self.name,
            self.config.preset,
            rows,
            self.config,
            seed=self.seed,
            device=self.device,
            started=self.started,
            figures=figures,
        )


def experiment_run(body: Callable) -> Callable:
    """Make an experiment's ``run(config, *, device, out_dir, seed, engine=None)`` from its
    body ``body(config, ctx) -> Result`` (``ctx`` a :class:`RunContext`, named after the
    module's ``NAME``). The clock starts, the module's ``check(config)`` runs (once;
    ``checked=True`` skips it for a config that :func:`validation.runner.prepare` has
    checked), the default engine is made, and the body runs under the config's ``threads``
    (torch) and ``blas_threads`` (numpy's BLAS) limits
    (:func:`validation.training.limited_threads`; a config without one of the fields leaves
    that pool alone). The body's name and docstring are kept."""
    from ..training import limited_threads

    @functools.wraps(body)
    def run(config, *, device: str, out_dir, seed: int, engine=None, checked: bool = False):
        started = time.perf_counter()
        module = sys.modules[body.__module__]
        check = getattr(module, "check", None)
        if check is not None and not checked:
            check(config)
        training = getattr(config, "training", None)
        if engine is None and training is not None:
            from ..sweep import Engine

            engine = Engine("local", workers=training.workers)
        ctx = RunContext(module.NAME, config, device, Path(out_dir), seed, engine, started)
        with limited_threads(config):
            return body(config, ctx)

    return run
