"""The settings every experiment shares, as nested frozen dataclasses.

An experiment's ``Config`` (a subclass of :class:`ExperimentConfig`, whose one field
``preset`` names the preset) holds its own fields (the model, the grids, the sample sizes)
and, nested, the shared groups: ``config.net`` (:class:`NetConfig`, the score network),
``config.training`` (:class:`TrainingConfig`, the optimiser and the sweep's resources)
and ``config.verdict`` (a :class:`VerdictConfig`: the ``k`` standard errors of every
rule, the ``prediction_shift`` that tests a verdict, and, in the experiment's subclass,
its named tolerances). :func:`validation.result.jsonable` writes them into
``result.json`` as nested objects. Each experiment keeps its defaults in module
constants (``NET``, ``TRAINING``) and a preset changes them with :meth:`Settings.replace`,
so that a preset names only what it changes (:meth:`ExperimentConfig.presets`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from physdiff.errors import InputError

from .result import Rule

C = TypeVar("C")

__all__ = [
    "Settings",
    "ExperimentConfig",
    "NetConfig",
    "TrainingConfig",
    "VerdictConfig",
    "presets",
    "with_verdict",
]


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
    prediction: non-zero only to test that a wrong prediction disagrees.

    ``REASONS`` (a class attribute of the subclass, not a setting): for every named
    tolerance, why that fixed slack is there (a stated model error with its source, or a
    computed finite-size or grid effect); :meth:`rule` writes it into the rows
    (``slack_reason``) and refuses a tolerance without one."""

    REASONS: ClassVar[Mapping[str, str]] = {}

    k: float = 3.0
    prediction_shift: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float | int) and not math.isfinite(v):
                raise InputError(f"verdict.{f.name} must be finite; got {v!r}")
        if self.k < 0:
            raise InputError(f"verdict.k must be >= 0; got {self.k!r}")

    def rule(
        self,
        tolerance: str | float | None = None,
        *,
        scale: float = 1.0,
        k: float | None = None,
        reason: str | None = None,
    ) -> Rule:
        """The :class:`~validation.result.Rule` ``k`` s.e. (default :attr:`k`) plus the
        named tolerance field times ``scale`` (``None``: no fixed slack), with its reason
        from ``REASONS`` (or ``reason``, which a tolerance given as a number must have)."""
        kk = self.k if k is None else float(k)
        if tolerance is None:
            return Rule(k=kk, tolerance=0.0, reason=reason or "")
        if not isinstance(tolerance, str):
            if not reason and float(tolerance) * scale != 0:
                raise InputError("a tolerance given as a number needs its reason")
            return Rule(k=kk, tolerance=float(tolerance) * scale, reason=reason or "")
        if tolerance not in {f.name for f in dataclasses.fields(self)}:
            raise InputError(f"{type(self).__name__} has no tolerance field {tolerance!r}")
        why = reason if reason is not None else type(self).REASONS.get(tolerance)
        if not why and float(getattr(self, tolerance)) * scale != 0:
            raise InputError(
                f"{type(self).__name__}.REASONS must say why {tolerance!r} is there "
                "(docs/validation.md, tolerance audit)"
            )
        return Rule(k=kk, tolerance=float(getattr(self, tolerance)) * scale, reason=why or "")


def presets(config: Callable[..., C], **fields: Mapping[str, Any]) -> dict[str, C]:
    """An experiment's presets, ``{name: config(preset=name, **fields[name])}`` in the order
    given (``smoke``, ``cpu``, ``gpu``): a preset's key and its ``preset`` field cannot
    disagree."""
    return {name: config(preset=name, **changes) for name, changes in fields.items()}


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of one preset of an experiment (every field is written into the result):
    the base of each experiment's frozen ``Config`` dataclass, whose fields follow
    ``preset``."""

    preset: str

    @classmethod
    def presets(cls, **fields: Mapping[str, Any]) -> dict[str, Any]:
        """The experiment's presets, ``{name: cls(preset=name, **fields[name])}`` in the order
        given (``smoke``, ``cpu``, ``gpu``; :func:`presets`)."""
        return presets(cls, **fields)


def with_verdict(config: Any, **changes: Any) -> Any:
    """``config`` with ``changes`` to its nested ``verdict`` (``prediction_shift=...``;
    a config without one takes them as its own fields)."""
    if not hasattr(config, "verdict"):
        return dataclasses.replace(config, **changes)
    return dataclasses.replace(config, verdict=config.verdict.replace(**changes))
