"""The settings every experiment shares, as nested frozen dataclasses.

An experiment's ``Config`` holds its own fields (the model, the grids, the sample sizes)
and, nested, the shared groups: ``config.net`` (:class:`NetConfig`, the score network),
``config.training`` (:class:`TrainingConfig`, the optimiser and the sweep's resources)
and ``config.verdict`` (a :class:`VerdictConfig`: the ``k`` standard errors of every
rule, the ``prediction_shift`` that tests a verdict, and, in the experiment's subclass,
its named tolerances). :func:`validation.result.jsonable` writes them into
``result.json`` as nested objects. Each experiment keeps its defaults in module
constants (``NET``, ``TRAINING``) and a preset changes them with :meth:`Settings.replace`,
so that a preset names only what it changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from physdiff.errors import InputError

C = TypeVar("C")

__all__ = ["Settings", "NetConfig", "TrainingConfig", "VerdictConfig", "presets", "with_verdict"]


@dataclass(frozen=True)
class Settings:
    """A frozen group of settings."""

    def replace(self, **changes: Any):
        """A copy with ``changes`` (:func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class NetConfig(Settings):
    """The score network's size (:class:`validation.training.NetSpec`): the width and
    number of hidden layers of the MLP and the width of its time (and class) embedding."""

    hidden: int = 128
    depth: int = 3
    embed_dim: int = 64

    def __post_init__(self) -> None:
        if min(self.hidden, self.depth, self.embed_dim) < 1:
            raise InputError(f"hidden, depth and embed_dim must be >= 1; got {self}")


@dataclass(frozen=True)
class TrainingConfig(Settings):
    """Denoising score-matching training (:class:`validation.training.TrainSpec`) and the
    resources of the sweep that runs it: ``train_process`` picks the training noise levels
    (``None``: :class:`physdiff.nn.TrainConfig`'s default), ``threads`` are torch CPU
    threads in this process and in each training job (0: torch's default), ``workers`` the
    local worker processes of the sweep (0: one per core)."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    ema_decay: float = 0.999
    train_process: str | None = None
    threads: int = 1
    workers: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise InputError(f"steps and batch_size must be >= 1; got {self}")
        if not (self.lr > 0 and 0 <= self.ema_decay < 1):
            raise InputError(f"need lr > 0 and 0 <= ema_decay < 1; got {self}")
        if self.threads < 0 or self.workers < 0:
            raise InputError(f"threads and workers must be >= 0; got {self}")


@dataclass(frozen=True)
class VerdictConfig(Settings):
    """How rows are judged (:class:`validation.result.Rule`): ``k`` standard errors plus a
    tolerance; an experiment subclasses this with its named tolerances.
    ``prediction_shift`` is added to (or, as the experiment says, scales) every
    prediction: non-zero only to test that a wrong prediction disagrees."""

    k: float = 3.0
    prediction_shift: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float | int) and not math.isfinite(v):
                raise InputError(f"verdict.{f.name} must be finite; got {v!r}")
        if self.k < 0:
            raise InputError(f"verdict.k must be >= 0; got {self.k!r}")


def presets(config: Callable[..., C], **fields: Mapping[str, Any]) -> dict[str, C]:
    """An experiment's presets, ``{name: config(preset=name, **fields[name])}`` in the order
    given (``smoke``, ``cpu``, ``gpu``): a preset's key and its ``preset`` field cannot
    disagree."""
    return {name: config(preset=name, **changes) for name, changes in fields.items()}


def with_verdict(config: Any, **changes: Any) -> Any:
    """``config`` with ``changes`` to its nested ``verdict`` (``prediction_shift=...``;
    a config without one takes them as its own fields)."""
    if not hasattr(config, "verdict"):
        return dataclasses.replace(config, **changes)
    return dataclasses.replace(config, verdict=config.verdict.replace(**changes))
