"""Run one experiment at one preset: check every input first, then run, then write.

:func:`prepare` does all the checking (experiment and preset names, the device, a data
file, the engine) and writes nothing; :func:`run_experiment` then creates
``<out>/<name>/<preset>/``, runs the experiment and writes ``result.json`` atomically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from physdiff.errors import InputError

from .experiments import PRESET_NAMES, load
from .result import Result
from .sweep import Engine

__all__ = ["DEFAULT_OUT", "Plan", "prepare", "execute", "run_experiment", "resolve_device"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
"""``validation/results`` of this checkout: the committed reports."""


@dataclass(frozen=True)
class Plan:
    """A checked run: everything :func:`execute` needs, nothing written yet."""

    name: str
    module: ModuleType
    config: Any
    device: str
    out_dir: Path
    seed: int
    engine: Engine | None


def resolve_device(device: str, engine: Engine | None = None) -> str:
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` checked to exist here
    (:class:`InputError` otherwise); on the SLURM engine and on a caller's executor (a Dask
    cluster, say) the device is the workers' and is passed through unchecked."""
    if engine is not None and engine.kind in ("slurm", "executor"):
        return device
    try:
        from physdiff.nn import default_device
    except ImportError as err:
        raise InputError(f"the experiments need torch and physdiff.nn: {err}") from err
    return str(default_device(device))


def prepare(
    name: str,
    preset: str = "cpu",
    *,
    device: str = "auto",
    out: str | Path = DEFAULT_OUT,
    seed: int = 0,
    engine: Engine | None = None,
    data: str | Path | None = None,
    config: Any = None,
) -> Plan:
    """Check a run without writing anything; raises :class:`InputError` on bad input."""
    module = load(name)
    if config is None:
        if preset not in module.PRESETS:
            raise InputError(
                f"unknown preset {preset!r} for {name}; the presets are: "
                f"{', '.join(p for p in PRESET_NAMES if p in module.PRESETS)}"
            )
        config = module.PRESETS[preset]
    if data is not None:
        if "data" not in {f.name for f in dataclasses.fields(config)}:
            raise InputError(f"experiment {name} takes no data file (--data)")
        config = dataclasses.replace(config, data=str(Path(data).resolve()))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be an integer >= 0; got {seed!r}")
    if engine is not None:
        engine.check()  # e.g. --engine slurm where there is no SLURM
    check = getattr(module, "check", None)
    if check is not None:
        check(config)
    dev = resolve_device(device, engine)
    out_dir = Path(out).resolve() / name / config.preset
    return Plan(name, module, config, dev, out_dir, seed, engine)


def execute(plan: Plan) -> Result:
    """Run a prepared plan and write ``result.json`` atomically."""
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    result = plan.module.run(
        plan.config,
        device=plan.device,
        out_dir=plan.out_dir,
        seed=plan.seed,
        engine=plan.engine,
        checked=True,  # prepare checked it
    )
    result.write(plan.out_dir)
    return result


def run_experiment(name: str, preset: str = "cpu", **kwargs: Any) -> Result:
    """:func:`prepare` then :func:`execute`; keyword arguments as in :func:`prepare`."""
    return execute(prepare(name, preset, **kwargs))
