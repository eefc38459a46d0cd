"""Sweeps on any executor: concurrent.futures executors, submitit-like executors, the
SLURM engine refusing to run without SLURM."""

from __future__ import annotations

import operator
import sys
import types
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from physdiff.errors import InputError
from validation.runner import prepare
from validation.sweep import Engine, map_jobs
from validation.training import in_process


def _fail_on_three(x):
    if x == 3:
        raise ValueError("job 3 failed")
    return x


def test_any_concurrent_futures_executor():
    jobs = list(range(-3, 5))
    with ThreadPoolExecutor(2) as pool:
        eng = Engine(executor=pool)
        assert eng.kind == "executor" and not in_process(eng, 1)
        assert map_jobs(operator.neg, jobs, eng, progress=False) == [-j for j in jobs]
        with pytest.raises(ValueError, match="job 3 failed"):
            map_jobs(_fail_on_three, jobs, eng, progress=False)
        assert map_jobs(abs, [-2], eng, progress=False) == [2]  # the caller's pool stays open
    with ProcessPoolExecutor(2) as pool:  # a process pool, as Dask's get_executor() is used
        assert map_jobs(operator.neg, jobs, Engine("executor", executor=pool)) == [-j for j in jobs]


class _Job:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class _SubmititLike:
    """submitit's executor interface: map_array(fn, jobs) -> jobs with .result()."""

    def __init__(self):
        self.calls = 0

    def map_array(self, fn, jobs):
        self.calls += 1
        return [_Job(fn(j)) for j in jobs]


def test_submitit_like_executor():
    ex = _SubmititLike()
    assert map_jobs(operator.neg, [1, 2], Engine(executor=ex)) == [-1, -2]
    assert ex.calls == 1


def test_bad_engines_name_the_argument():
    with pytest.raises(InputError, match="executor must be a concurrent.futures.Executor"):
        Engine(executor=object())
    with pytest.raises(InputError, match="needs executor="):
        Engine("executor")
    with pytest.raises(InputError, match="executor goes with kind 'executor'"):
        Engine("slurm", executor=ThreadPoolExecutor(1))
    with pytest.raises(InputError, match="engine must be one of"):
        Engine("dask")


def test_slurm_engine_refuses_without_slurm(monkeypatch):
    """With submitit importable but no sbatch, the SLURM engine fails before any job runs
    (submitit's AutoExecutor would run them all locally)."""
    monkeypatch.setitem(sys.modules, "submitit", types.ModuleType("submitit"))
    monkeypatch.setattr("shutil.which", lambda name: None)
    ran = []
    with pytest.raises(InputError, match="sbatch is not on PATH"):
        map_jobs(ran.append, [1, 2], Engine("slurm"))
    assert ran == []
    with pytest.raises(InputError, match="sbatch is not on PATH"):
        Engine("slurm").check()
    with pytest.raises(InputError, match="sbatch is not on PATH"):  # before anything is written
        prepare("late_init", "smoke", engine=Engine("slurm"), device="cpu")
