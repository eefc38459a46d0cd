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

Each job writes its own outputs (a checkpoint folder); the engine only returns the job
function's (small, picklable) return value. A failed job raises in :func:`map_jobs` after
the other running jobs are cancelled or finished; finished trainings are kept and are
reused by the next run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
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

EngineKind = Literal["serial", "local", "slurm"]
ENGINES: tuple[str, ...] = ("serial", "local", "slurm")


@dataclass(frozen=True)
class Engine:
    """Where a sweep's jobs run.

    ``workers``: parallel local processes (0: one per CPU core, capped by the number of
    jobs). ``folder``: submitit's log folder (SLURM only; default ``<out>/slurm``).
    ``options``: keyword arguments of ``submitit.AutoExecutor.update_parameters``.
    """

    kind: EngineKind = "local"
    workers: int = 0
    folder: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise InputError(f"engine must be one of {ENGINES}; got {self.kind!r}")
        if not (isinstance(self.workers, int) and self.workers >= 0):
            raise InputError(f"workers must be an integer >= 0; got {self.workers!r}")

    def n_workers(self, n_jobs: int) -> int:
        w = self.workers or (os.cpu_count() or 1)
        return max(1, min(w, n_jobs))


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
    try:
        import submitit
    except ImportError as err:
        raise InputError(
            "the 'slurm' engine needs submitit: install it with `pip install submitit`"
        ) from err
    folder = Path(engine.folder or "slurm-logs").resolve()
    executor = submitit.AutoExecutor(folder=str(folder))
    if engine.options:
        executor.update_parameters(**dict(engine.options))
    submitted = executor.map_array(fn, jobs)  # one SLURM job array
    return [job.result() for job in submitted]
