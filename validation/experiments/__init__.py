"""The experiments, one module each, listed explicitly in :data:`EXPERIMENTS`.

Every module defines

* ``Config``: a frozen dataclass whose first field ``preset`` names the preset;
* ``PRESETS = {"smoke": Config(...), "cpu": Config(...), "gpu": Config(...)}``;
* ``run(config, *, device, out_dir, seed, engine=None) -> validation.result.Result``,
  writing its figures into ``out_dir`` and its trainings under ``out_dir / "train"``
  (decorated with :func:`experiment_run`, which applies the config's thread limits);
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
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from physdiff.errors import InputError

__all__ = ["EXPERIMENTS", "PRESET_NAMES", "load", "summary", "experiment_run"]

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


def experiment_run(body: Callable) -> Callable:
    """Make an experiment's ``run`` from its body ``body(config, *, device, out_dir, seed,
    engine)``: the module's ``check(config)`` runs first (once; ``checked=True`` skips it
    for a config that :func:`validation.runner.prepare` has checked), then the body runs
    under the config's ``threads`` (torch) and ``blas_threads`` (numpy's BLAS) limits
    (:func:`validation.training.limited_threads`; a config without one of the fields leaves
    that pool alone), with ``out_dir`` as a :class:`~pathlib.Path`. The body's name and
    docstring are kept."""
    from ..training import limited_threads

    @functools.wraps(body)
    def run(config, *, device: str, out_dir, seed: int, engine=None, checked: bool = False):
        check = getattr(sys.modules[body.__module__], "check", None)
        if check is not None and not checked:
            check(config)
        with limited_threads(config):
            return body(config, device=device, out_dir=Path(out_dir), seed=seed, engine=engine)

    return run
