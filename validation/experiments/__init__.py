"""The experiments, one module each, listed explicitly in :data:`EXPERIMENTS`.

Every module defines

* ``Config``: a frozen dataclass whose first field ``preset`` names the preset;
* ``PRESETS = {"smoke": Config(...), "cpu": Config(...), "gpu": Config(...)}``;
* ``run(config, *, device, out_dir, seed, engine=None) -> validation.result.Result``,
  writing its figures into ``out_dir`` and its trainings under ``out_dir / "train"``;
* optionally ``check(config) -> None``, which validates inputs (a data file, say) before
  anything is written, raising :class:`physdiff.errors.InputError`;
* a module docstring whose first line is the one-line summary shown by ``list``.

To add an experiment, add its module and its name to :data:`EXPERIMENTS`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from physdiff.errors import InputError

__all__ = ["EXPERIMENTS", "PRESET_NAMES", "load", "summary"]

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
