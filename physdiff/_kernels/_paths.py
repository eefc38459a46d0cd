"""The two paths of :func:`empirical_stats` (direct differences below ``d = 12``, matrix
products above), their task layout and block sizes, the candidates of exact recomputation
and the float32 move to dgemm (the package docstring of :mod:`physdiff._kernels` gives
the formulas and the accuracy argument).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from . import _compiled as C
from ._compiled import _FLOOR32, _FLOOR64, _U64
from ._numpy import _common
from ._threads import _BLAS, _NUM_THREADS, _parallel, _run_tasks

# -- tuning constants --------------------------------------------------------------------
_DIRECT_MAX_D = 12  # below this dimension the direct path beats the matrix products
_F32_GEMM_MIN_D = 32  # float32 below this dimension runs the float64 matrix-product path
_DIRECT_QB = 64  # queries per task on the direct path
_DIRECT_PB = 512  # points per transposed cache block on the direct path
_GEMM_QB = 256  # queries per block on the matrix-product path
_GEMM_PB = 2048  # points per block on the matrix-product path
_GEMM_PAR_MIN_PAIRS = 1 << 22  # matrix-product path: fewer query-point pairs run serially,
_GEMM_PAR_MIN_POINTS = 1 << 25  # unless the training set holds more numbers than this
_GEMM_SERIAL_BLOCK = 1 << 20  # serial matrix-product path: logits per (queries x points) block
_LAMBDA = 8.0  # probabilistic rounding-error bound: lambda sqrt(d) u (Higham & Mary 2019)
_TOL = {np.dtype(np.float64): 1e-11, np.dtype(np.float32): 2e-6}
_FALLBACK = True  # float32: redo in dgemm the queries with many candidates in a block
_FLAG_DIV = 16  # float32: more than 1/16 of a block's pairs as candidates -> dgemm
_CANDIDATES = 512  # per query: buffered pairs awaiting exact recomputation
# W A over the nonzero weights alone when 12 nnz (d + 256) + 2 (pairs) <= (pairs) d: a
# gathered axpy element costs about 12 GEMM multiply-adds on one core, plus a fixed cost
# per nonzero weight worth 256 elements, and the scan about 2 a pair (fitted at d = 64-3072,
# n = 1e3-1e4 on 2 cores); twice that where BLAS has both cores to itself
_SPARSE_AXPY = 12
_SPARSE_FIXED = 256
_SPARSE_SCAN = 2
_DROP_MIN_D = 32  # from this dimension on, weights the error budget allows are dropped


def squared_norms(x: np.ndarray) -> np.ndarray:
    """``|x_i|^2`` for each row, accumulated in float64 (what ``sq_norms`` expects)."""
    C._jit()
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = np.empty(x.shape[0])
    _parallel(
        C._sq_norms_kernel, x.shape[0], (x, out), pieces=1 if x.size < 1 << 16 else 2 * _NUM_THREADS
    )
    return out


def empirical_stats(
    y: np.ndarray, points: np.ndarray, delta: np.ndarray, *, sq_norms: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean, log-sum-exp and participation ratio of the empirical measure.

    docs/theory.md section 1, empirical score: with ``l_{i,mu} = -|y_i - a_mu|^2 / (2 delta_i)``
    and ``w_{i,mu} = softmax_mu(l_{i,mu})``, returns

    * ``denoised`` ``(m, d)`` in the input dtype: ``sum_mu w_{i,mu} a_mu = E[x0 | y_i]``;
    * ``lse`` ``(m,)`` float64: ``log sum_mu exp(l_{i,mu})`` (without ``-log n``);
    * ``pr`` ``(m,)`` float64: ``1 / sum_mu w_{i,mu}^2``, between 1 and ``n``.

    Streams over the training set with an online log-sum-exp and never forms an ``m x n``
    array (see the module docstring for the two paths and their accuracy). Agrees with
    :func:`empirical_stats_numpy` to ~1e-12 relative in float64 and ~1e-6 in float32.

    Parameters
    ----------
    y : (m, d) float32 or float64 queries.
    points : (n, d) training set, same dtype (mixed dtypes are promoted to float64).
    delta : (m,) float64 noise-to-signal variances ``> 0`` (a scalar is broadcast);
        validated by the caller.
    sq_norms : optional (n,) float64 ``|a_mu|^2`` computed in float64 (for example by
        :func:`squared_norms`), cached by an ``Empirical`` ensemble; used by the
        matrix-product path only.
    """
    return _empirical(y, points, delta, sq_norms, None)


def recompute_counts(
    y: np.ndarray, points: np.ndarray, delta: np.ndarray, *, sq_norms: np.ndarray | None = None
) -> dict:
    """How much of :func:`empirical_stats` on these inputs is redone in float64: the number
    of query-point pairs (``pairs = m n``), of pairs recomputed exactly from the differences
    (``exact``) and of pairs whose inner products came from dgemm on float64 copies
    (``dgemm``, float32 inputs only), with their fractions of ``pairs``. The direct path
    (``d < 12``) computes every pair from the differences and reports none."""
    counts = np.zeros(2, np.int64)
    _empirical(y, points, delta, sq_norms, counts)
    pairs = int(np.shape(y)[0]) * int(np.shape(points)[0])
    exact, dgemm = int(counts[0]), int(counts[1])
    return {
        "pairs": pairs,
        "exact": exact,
        "dgemm": dgemm,
        "exact_fraction": exact / max(1, pairs),
        "dgemm_fraction": dgemm / max(1, pairs),
    }


def _empirical(y, points, delta, sq_norms, counts):
    y, points, delta = _common(y, points, delta)
    m, d = y.shape
    n = points.shape[0]
    if m == 0 or d == 0:
        return _trivial(y, points, delta)
    C._jit()
    inv2d = 0.5 / delta
    if d < _DIRECT_MAX_D:
        return _stats_direct(y, points, inv2d)
    if sq_norms is None:
        an = squared_norms(points)
    else:
        an = np.ascontiguousarray(sq_norms, dtype=np.float64)
        if an.shape != (n,):
            raise ValueError(f"sq_norms must have shape ({n},); got {an.shape}")
    if y.dtype == np.float32 and d < _F32_GEMM_MIN_D:
        # sgemm's inner products are too coarse here for most pairs that matter (the
        # budget would recompute or move to dgemm a large share): float64 from the start
        den, lse, pr = _stats_gemm(y.astype(np.float64), points.astype(np.float64), inv2d, an)
        if counts is not None:
            counts[1] += m * n
        return den.astype(np.float32), lse, pr
    return _stats_gemm(y, points, inv2d, an, counts)


def _trivial(y, points, delta):
    """No queries, or d = 0 (every distance is 0: uniform weights)."""
    m, d = y.shape
    n = points.shape[0]
    return np.zeros((m, d), y.dtype), np.full(m, math.log(n)), np.full(m, float(n))


def _stats_direct(y, points, inv2d):
    m, d = y.shape
    n = points.shape[0]
    nqb = -(-m // _DIRECT_QB)
    # split the training set too when there are too few query blocks to feed every thread
    want = 4 * _NUM_THREADS if m * n * (d + 8) >= 1 << 18 else 1
    nchunk = max(1, min(-(-want // nqb), -(-n // _DIRECT_PB)))
    mp = np.empty((nchunk, m))
    sp = np.empty((nchunk, m))
    s2p = np.empty((nchunk, m))
    accp = np.empty((nchunk, m, d))
    ntask = nqb * nchunk
    _parallel(
        C._direct_kernel,
        ntask,
        (y, points, inv2d, _DIRECT_QB, _DIRECT_PB, nchunk, mp, sp, s2p, accp),
        pieces=min(ntask, want),
    )
    den = np.empty((m, d), y.dtype)
    lse = np.empty(m)
    pr = np.empty(m)
    C._merge_kernel(0, m, mp, sp, s2p, accp, den, lse, pr)
    return den, lse, pr


def _stats_gemm(y, points, inv2d, an, counts=None):
    """The matrix-product path: tasks = (block of queries) x (chunk of the training set),
    each streaming its chunk block by block; partial states merged by :func:`_merge_kernel`.
    ``counts`` (two int64), if given, receives the pairs recomputed exactly and the pairs
    moved to dgemm (:func:`recompute_counts`)."""
    m, d = y.shape
    n = points.shape[0]
    p = _GemmParams(y.dtype, d, n)
    yn = squared_norms(y)
    # points per block: 2048, fewer at large d so that a block stays below 32 MB
    pb = min(n, _GEMM_PB, max(128, (1 << 22) // d // 128 * 128))
    # tasks on the pool only for large problems: below 2^22 pairs one stream with BLAS's own
    # threads was 1.0-1.9x faster (2 cores; m = 512, n = 1000-5000, d = 16-3072, and m = 2-128
    # with n d <= 2^25: the pool's hand-offs, a straggling task and OpenBLAS workers still
    # spinning after an earlier call cost more than the serial numba passes); a larger
    # training set streams faster from memory split over the cores (m = 4, n = 5e5, d = 784)
    parallel = (
        _NUM_THREADS > 1
        and m * n * d >= 1 << 22
        and (m * n >= _GEMM_PAR_MIN_PAIRS or n * d > _GEMM_PAR_MIN_POINTS)
        and _BLAS.controllable()
    )
    p.sparse = 1 if parallel else _NUM_THREADS  # the sparse W A runs on one core
    want = 2 * _NUM_THREADS if parallel else 1  # tasks: two per thread balance the load
    nchunk_max = _ceil_div(n, pb)
    # serially, larger query blocks (up to 2^20 logits per block): fewer, larger GEMMs
    qmax = _GEMM_QB if parallel else max(_GEMM_QB, _GEMM_SERIAL_BLOCK // pb)
    nqb = _ceil_div(m, qmax)
    if nqb * nchunk_max >= want:
        nchunk = max(1, min(_ceil_div(want, nqb), nchunk_max))
    else:  # few queries and points: smaller query blocks
        nchunk = nchunk_max
        nqb = max(nqb, min(_ceil_div(want, nchunk), _ceil_div(m, 16)))
    qb = _ceil_div(m, nqb)
    cb = _ceil_div(_ceil_div(n, nchunk), pb) * pb  # points per chunk, a multiple of pb
    nchunk = _ceil_div(n, cb)
    mp = np.full((nchunk, m), -np.inf)
    sp = np.zeros((nchunk, m))
    s2p = np.zeros((nchunk, m))
    accp = np.zeros((nchunk, m, d))
    tasks = [
        (q0, min(m, q0 + qb), c * cb, min(n, (c + 1) * cb))
        for q0 in range(0, m, qb)
        for c in range(nchunk)
    ]
    task_counts = np.zeros((len(tasks), 2), np.int64)

    def run(k):
        q0, q1, p0, p1 = tasks[k]
        c = p0 // cb
        state = (mp[c, q0:q1], sp[c, q0:q1], s2p[c, q0:q1], accp[c, q0:q1])
        qs = slice(q0, q1)
        _gemm_task(p, y[qs], yn[qs], inv2d[qs], points, an, pb, p0, p1, state, task_counts[k])

    if parallel:
        with _BLAS.one_thread():
            _run_tasks(run, [(k,) for k in range(len(tasks))])
    else:
        for k in range(len(tasks)):
            run(k)
    if counts is not None:
        counts += task_counts.sum(axis=0)
    den = np.empty((m, d), y.dtype)
    lse = np.empty(m)
    pr = np.empty(m)
    C._merge_kernel(0, m, mp, sp, s2p, accp, den, lse, pr)
    return den, lse, pr


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _GemmParams:
    """Constants of the matrix-product path for one dtype, dimension and training-set size
    (the error bound of the module docstring and the candidate threshold)."""

    def __init__(self, dt: np.dtype, d: int, n: int):
        self.is32 = dt == np.float32
        self.tol = _TOL[dt]
        self.floor = _FLOOR32 if self.is32 else _FLOOR64
        kd = min(float(d), _LAMBDA * math.sqrt(d))
        # logit error bound: (cg |y| max|a| + cn max|a|^2 + 4 u |y|^2) / (2 delta)
        self.cg = (2.0 * kd * float(np.finfo(dt).eps) / 2 + 4.0 * _U64) * 1.01
        self.cg64 = (2.0 * kd + 4.0) * _U64 * 1.01
        self.cn = (kd + 4.0) * _U64 * 1.01
        self.logrho = math.log(self.tol / n)
        self.flag_div = _FLAG_DIV if self.is32 and _FALLBACK else 0
        # drop the weights the budget allows where W A costs more than the pass doing it
        self.drop = d >= _DROP_MIN_D


_scratch_local = threading.local()
_SCRATCH_MAX = 1 << 25  # bytes kept per thread between calls


def _scratch(key: str, size: int, dtype) -> np.ndarray:
    """A flat work array of at least ``size`` elements, kept per thread between calls (so
    that large blocks are not page-faulted in afresh every call) when it is small enough."""
    cache = getattr(_scratch_local, "arrays", None)
    if cache is None:
        cache = _scratch_local.arrays = {}
    dtype = np.dtype(dtype)
    arr = cache.get((key, dtype))
    if arr is None or arr.size < size:
        arr = np.empty(size, dtype)
        if arr.nbytes <= _SCRATCH_MAX:
            cache[(key, dtype)] = arr
    return arr[:size]


def _gemm_task(p, yb, ynb, ivb, points, an, pb, p0, p1, state, counts):
    """Stream the points ``[p0, p1)`` for the queries ``yb`` (single-threaded; BLAS too when
    tasks run in parallel). ``state = (M, S, S2, acc)``, views of the partial states;
    ``counts`` (two int64) receives the pairs recomputed exactly and those done in dgemm.
    Each task decides alone which queries move to dgemm, so results do not depend on
    timing."""
    nq, d = yb.shape
    dt = yb.dtype
    mrun, srun, s2run, acc = state
    # per row: kept-weight error bounds E, E2; lower bounds L, L2 of S, S2; low, a lower
    # bound of the largest logit; the last candidate cut (a logit)
    budget = np.zeros((nq, 6))
    budget[:, 4] = -np.inf
    budget[:, 5] = np.inf  # the last candidate cut, a logit
    flag = np.zeros(nq, np.int8)
    cidx = np.empty((nq, _CANDIDATES), np.int64)
    cnum = np.zeros(nq, np.int64)
    st = (mrun, srun, s2run, acc, budget, cidx, cnum, counts[:1])
    nbmax = min(pb, p1 - p0)
    nzcnt = np.zeros(nq, np.int64)  # nonzero weights per row of the current block
    gbuf = _scratch("g", nq * nbmax, dt)
    wbuf = _scratch("w", nq * nbmax, dt)
    tbuf = _scratch("t", nq * d, dt)
    rows32 = np.arange(nq, dtype=np.int64)  # rows on inner products in the input dtype
    rows64 = rows32[:0]  # float32 only: rows moved to dgemm inner products
    y64 = a64buf = g64buf = None
    for b0 in range(p0, p1, pb):
        nb = min(p1 - b0, pb)
        ab = points[b0 : b0 + nb]
        bmax = float(an[b0 : b0 + nb].max())
        blk = (math.sqrt(bmax), bmax)
        w = wbuf[: nq * nb].reshape(nq, nb)
        nnz = 0
        if rows32.size:
            g = gbuf[: rows32.size * nb].reshape(rows32.size, nb)
            np.matmul(yb if rows32.size == nq else yb[rows32], ab.T, out=g)
            consts = (p.cg, p.cn, p.tol, p.logrho, p.floor, p.is32, p.flag_div, p.drop)
            nnz += C._gemm_update(
                g,
                rows32,
                b0,
                yb,
                points,
                ynb,
                an,
                ivb,
                blk,
                consts,
                p.flag_div > 0,
                w,
                flag,
                nzcnt,
                st,
            )
            if flag.any():
                keep = np.ones(nq, bool)
                keep[rows64] = False
                keep[flag != 0] = False
                flag[:] = 0
                rows32 = np.flatnonzero(keep)
                rows64 = np.flatnonzero(~keep)
                y64 = yb[rows64].astype(np.float64)
        if rows64.size:
            if a64buf is None:
                a64buf = _scratch("a64", nbmax * d, np.float64)
                g64buf = _scratch("g64", nq * nbmax, np.float64)
            a64 = a64buf[: nb * d].reshape(nb, d)
            np.copyto(a64, ab)
            g = g64buf[: rows64.size * nb].reshape(rows64.size, nb)
            np.matmul(y64, a64.T, out=g)
            consts = (p.cg64, p.cn, p.tol, p.logrho, p.floor, p.is32, 0, p.drop)
            nnz += C._gemm_update(
                g, rows64, b0, yb, points, ynb, an, ivb, blk, consts, False, w, flag, nzcnt, st
            )
            counts[1] += rows64.size * nb
        if nnz == 0:
            pass  # every weight of the block is a candidate or below the floor
        elif (
            p.sparse * (_SPARSE_AXPY * nnz * (d + _SPARSE_FIXED) + _SPARSE_SCAN * nq * nb)
            <= nq * nb * d
        ):
            C._sparse_add(acc, w, points, b0, nzcnt)
        else:
            t = tbuf[: nq * d].reshape(nq, d)
            np.matmul(w, ab, out=t)
            C._add_into(acc, t)
    C._gemm_settle(0, nq, yb, points, ivb, p.floor, st)


# ======================================================================================
