"""Run the independent jobs of a sweep (many trainings over n, d, seeds) on an engine.

The same job function and the same job objects go to every engine; a job must be a
picklable object and the function a module-level function of an importable module.

* ``"serial"``: in this process, one after the other (debugging, a single job, or
  ``workers=1``).
* ``"local"`` (default): :class:`concurrent.futures.ProcessPoolExecutor` with the
  ``spawn`` start method (safe with torch and CUDA; each worker imports what it needs).
  Each worker's BLAS/OpenMP pools get ``cpu_count // workers`` threads
  (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` unless already set),
  so that parallel workers do not oversubscribe the cores.
* ``"slurm"``: a SLURM cluster through submitit (``submitit.AutoExecutor``; Rapin &
  contributors, https://github.com/facebookincubator/submitit), one SLURM job per sweep
  job, submitted as one job array. submitit is imported only for this engine; the
  scheduler's options (``slurm_partition``, ``timeout_min``, ``gpus_per_node``,
  ``cpus_per_task``, ...) are passed through ``Engine.options``. Run from the checkout
  root on a filesystem the nodes share (the jobs import ``validation`` from there and
  write their checkpoints under the ``--out`` folder). See docs/validation.md.

* ``"executor"``: any :class:`concurrent.futures.Executor` the caller made and owns
  (``Engine(executor=pool)``): a ``ProcessPoolExecutor``, Dask's
  ``distributed.Client(...).get_executor()``, Ray's or loky's executors, or a submitit
  executor (anything with ``submit`` returning futures, or submitit's ``map_array``). The
  engine submits every job, waits for the first failure or for all, and never shuts the
  executor down. Python only: the command line's engines are :data:`ENGINES`.

The ``"slurm"`` engine refuses to start when SLURM is absent (no ``sbatch`` on ``PATH``):
submitit's ``AutoExecutor`` would otherwise fall back to running every job locally, which
on a login node is the wrong thing done silently.

Each job writes its own outputs (a checkpoint folder); the engine only returns the job
function's (small, picklable) return value. A failed job raises in :func:`map_jobs` after
the other running jobs are cancelled or finished; finished trainings are kept and are
reused by the next run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from physdiff.errors import InputError

__all__ = ["Engine", "ENGINES", "map_jobs"]

J = TypeVar("J")
R = TypeVar("R")

EngineKind = Literal["serial", "local", "slurm", "executor"]
ENGINES: tuple[str, ...] = ("serial", "local", "slurm")
"""The engines the command line names (``"executor"`` takes an object: Python only)."""


@dataclass(frozen=True)
class Engine:
    """Where a sweep's jobs run.

    ``workers``: parallel local processes (0: one per CPU core, capped by the number of
    jobs). ``folder``: submitit's log folder (SLURM only; default ``<out>/slurm``).
    ``options``: keyword arguments of ``submitit.AutoExecutor.update_parameters``.
    ``executor``: a caller-owned :class:`concurrent.futures.Executor` (or submitit
    executor); giving one makes the kind ``"executor"``.
    """

    kind: EngineKind = "local"
    workers: int = 0
    folder: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    executor: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.executor is not None:
            if self.kind not in ("local", "executor"):
                raise InputError(f"executor goes with kind 'executor'; got kind={self.kind!r}")
            if not (
                callable(getattr(self.executor, "submit", None)) or _is_submitit(self.executor)
            ):
                raise InputError(
                    "executor must be a concurrent.futures.Executor (submit -> futures) or a "
                    f"submitit executor; got {type(self.executor).__name__}"
                )
            object.__setattr__(self, "kind", "executor")
        elif self.kind == "executor":
            raise InputError("the 'executor' engine needs executor= (an Executor instance)")
        elif self.kind not in ENGINES:
            raise InputError(f"engine must be one of {ENGINES}; got {self.kind!r}")
        if not (isinstance(self.workers, int) and self.workers >= 0):
            raise InputError(f"workers must be an integer >= 0; got {self.workers!r}")

    def n_workers(self, n_jobs: int) -> int:
        """Parallel workers for ``n_jobs`` local jobs (an executor's own count is its own)."""
        w = self.workers or (os.cpu_count() or 1)
        return max(1, min(w, n_jobs))

    def check(self) -> None:
        """Refuse an engine that cannot run here before anything runs: ``"slurm"`` without
        submitit or without SLURM (``sbatch`` not on ``PATH``)."""
        if self.kind == "slurm":
            _slurm_available()


def _is_submitit(executor: Any) -> bool:
    return callable(getattr(executor, "map_array", None))


def _slurm_available() -> None:
    try:
        import submitit  # noqa: F401
    except ImportError as err:
        raise InputError(
            "the 'slurm' engine needs submitit: install it with `pip install submitit` "
            "(or the cluster extra: pip install -e '.[cluster]')"
        ) from err
    if shutil.which("sbatch") is None:
        raise InputError(
            "the 'slurm' engine needs SLURM, but sbatch is not on PATH here: run from a "
            "SLURM login node, or use --engine local (submitit would otherwise run every "
            "job on this machine)"
        )


def map_jobs(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    engine: Engine | None = None,
    *,
    desc: str = "jobs",
    progress: bool = True,
) -> list[R]:
    """``[fn(job) for job in jobs]``, run on ``engine``; results in the order of ``jobs``."""
    engine = engine or Engine()
    jobs = list(jobs)
    if not jobs:
        return []
    if engine.kind == "slurm":
        return _slurm(fn, jobs, engine)
    if engine.kind == "executor":
        if _is_submitit(engine.executor):
            return [job.result() for job in engine.executor.map_array(fn, jobs)]
        return _collect([engine.executor.submit(fn, j) for j in jobs], desc, progress)
    if engine.kind == "serial" or engine.n_workers(len(jobs)) == 1:
        return [fn(j) for j in _bar(jobs, desc, progress)]
    return _local(fn, jobs, engine.n_workers(len(jobs)), desc, progress)


def _bar(it, desc: str, progress: bool, total: int | None = None):
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, leave=False)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _worker_threads(threads: int) -> Iterator[None]:
    """Set the thread-count variables (those not set already) while workers are spawned."""
    added = [v for v in _THREAD_VARS if v not in os.environ]
    for v in added:
        os.environ[v] = str(threads)
    try:
        yield
    finally:
        for v in added:
            os.environ.pop(v, None)


def _local(fn, jobs, workers: int, desc: str, progress: bool) -> list:
    ctx = mp.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        with _worker_threads(threads):  # spawned workers inherit the environment
            futures = [pool.submit(fn, j) for j in jobs]
        return _collect(futures, desc, progress)


def _collect(futures: list, desc: str, progress: bool) -> list:
    """The futures' results in order; the first failure cancels the pending ones and raises."""
    bar = _bar(None, desc, progress, total=len(futures)) if progress else None
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            if bar is not None:
                bar.update(len(done))
            for f in done:
                if f.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise f.exception()  # type: ignore[misc]
    finally:
        if bar is not None:
            bar.close()
    return [f.result() for f in futures]


def _slurm(fn, jobs, engine: Engine) -> list:
    _slurm_available()
    import submitit

    folder = Path(engine.folder or "slurm-logs").resolve()
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    if engine.options:
        executor.update_parameters(**dict(engine.options))
    submitted = executor.map_array(fn, jobs)  # one SLURM job array
    return [job.result() for job in submitted]
