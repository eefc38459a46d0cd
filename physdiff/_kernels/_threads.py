"""The threads the kernels run on: a small pool of Python threads (one per core, the caller
being the last) and the control of the BLAS that numpy calls (one thread while tasks run
one per core). See the package docstring of :mod:`physdiff._kernels` for the measurements
behind this design.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _default_threads() -> int:
    """``NUMBA_NUM_THREADS`` if set, else the CPUs this process may run on."""
    env = os.environ.get("NUMBA_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


_NUM_THREADS = _default_threads()


def _get_pool() -> ThreadPoolExecutor | None:
    """The worker threads (``_NUM_THREADS - 1``; the caller is the last), made on first use."""
    global _pool
    if _pool is None and _NUM_THREADS > 1:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(_NUM_THREADS - 1, thread_name_prefix="physdiff-kernel")
    return _pool


def _forget_pool() -> None:
    """In a forked child: the pool object survives but not its threads, and a lock may have
    been held by a thread of the parent; start afresh."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()
    if "_BLAS" in globals():
        _BLAS.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _run_tasks(fn, tasks: list[tuple]) -> None:
    """``fn(*task)`` for every task, on the calling thread and the pool's threads, which
    take the next task as they come free (a core slowed by other work simply takes fewer)."""
    pool = _get_pool() if len(tasks) > 1 else None
    if pool is None:
        for t in tasks:
            fn(*t)
        return
    lock = threading.Lock()
    it = iter(tasks)

    def worker():
        while True:
            with lock:
                t = next(it, None)
            if t is None:
                return
            fn(*t)

    futures = [pool.submit(worker) for _ in range(min(_NUM_THREADS, len(tasks)) - 1)]
    try:
        worker()
    finally:
        for f in futures:
            f.result()


def _parallel(fn, total: int, args: tuple, *, pieces: int | None = None) -> None:
    """``fn(lo, hi, *args)`` over ``[0, total)`` cut into ``pieces`` contiguous ranges
    (default two per thread), run by :func:`_run_tasks`."""
    if pieces is None:
        pieces = 2 * _NUM_THREADS
    pieces = max(1, min(pieces, total))
    bounds = [total * k // pieces for k in range(pieces + 1)]
    _run_tasks(fn, [(bounds[k], bounds[k + 1], *args) for k in range(pieces)])


class _BlasThreads:
    """Limits the BLAS that numpy calls to one thread while the kernels run one task per
    core (each task calls BLAS on its own blocks): measured here, two tasks each with a
    one-thread BLAS reach 110-119 GFLOP/s, against 95-107 for one task at a time with
    OpenBLAS's two threads (whose spinning workers also starve the numba passes).

    Calls ``openblas_set_num_threads`` (any symbol prefix or suffix) of the OpenBLAS
    libraries loaded in the process, found in ``/proc/self/maps`` (Linux). threadpoolctl is
    not used: its OpenBLAS controller obeys only the first Python thread that set a limit.
    Elsewhere (another BLAS, another OS) tasks run one at a time with BLAS's own threads.
    The limit is process-wide while a call runs (nested and concurrent calls are counted)
    and the previous setting is restored after the last one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._found = False
        self._ctl: list | None = None  # (get, set) functions of each OpenBLAS
        self._restore: list | None = None

    def _discover(self) -> None:
        self._found = True
        try:
            self._ctl = self._openblas_from_maps()
        except Exception:  # noqa: BLE001 - any failure only means "not controllable"
            self._ctl = None

    @classmethod
    def _openblas_from_maps(cls) -> list | None:
        import ctypes

        try:
            with open("/proc/self/maps") as f:
                paths = {ln.split()[-1] for ln in f if "openblas" in ln and ".so" in ln}
        except OSError:
            return None
        funcs = []
        for path in sorted(paths):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in ("openblas", "scipy_openblas"):
                for suffix in ("", "64_", "32_"):
                    get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                    put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype = ctypes.c_int
                        put.argtypes = [ctypes.c_int]
                        funcs.append((get, put))
                        break
                else:
                    continue
                break
        return funcs or None

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._restore = None

    def controllable(self) -> bool:
        if not self._found:
            with self._lock:
                if not self._found:
                    self._discover()
        return self._ctl is not None

    @contextlib.contextmanager
    def one_thread(self):
        if not self.controllable():
            yield
            return
        with self._lock:
            if self._depth == 0:
                self._restore = [get() for get, _ in self._ctl]
                for _, put in self._ctl:
                    put(1)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    for (_, put), k in zip(self._ctl, self._restore, strict=True):
                        put(k)
                    self._restore = None


_BLAS = _BlasThreads()
