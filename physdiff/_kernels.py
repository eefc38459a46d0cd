"""Private numba kernels, array-in array-out, each with a plain numpy twin (DESIGN.md).

The empirical (memorising) score
--------------------------------
For a training set ``A = {a_mu}`` ``(n, d)`` and queries ``y_i`` ``(m, d)`` with a
noise-to-signal variance ``delta_i > 0`` each, in the variance-exploding frame
``y = x0 + sqrt(delta) z`` (THEORY.md section 1, empirical score)::

    l_{i,mu}   = -|y_i - a_mu|^2 / (2 delta_i)                (logits)
    lse_i      = log sum_mu exp(l_{i,mu})                      (no -log n)
    w_{i,mu}   = exp(l_{i,mu} - lse_i)                         (posterior weights)
    denoised_i = sum_mu w_{i,mu} a_mu = E[x0 | y_i]            (Tweedie posterior mean)
    pr_i       = 1 / sum_mu w_{i,mu}^2                         (participation ratio, 1..n)

and the score is ``(denoised_i - y_i) / delta_i`` (the caller forms it).

:func:`empirical_stats` streams over the training set with an *online* log-sum-exp: for
each query it keeps the running maximum ``M`` of the logits seen so far and the sums
``S = sum exp(l - M)``, ``S2 = sum exp(2 (l - M))`` and ``acc = sum exp(l - M) a``; when
a new block of points raises the maximum to ``M'`` the sums are rescaled by
``exp(M - M')`` (``exp(2 (M - M'))`` for ``S2``). At the end ``denoised = acc / S``,
``lse = M + log S`` and ``pr = S^2 / S2``. Because every weight is taken relative to the
current maximum, no exponential overflows, and a query far from every training point
(where a naive softmax gives ``0 / 0``) is handled like any other. The ``m x n`` matrix of
logits or weights is never formed: only blocks of fixed size.

Weights below the exponent floor are set to exactly zero so that no subnormal number
reaches a multiply (subnormals slow a matrix product 10-30x, DESIGN.md): ``exp(l - M) <
e^-350`` for float64 weights (so that ``w^2`` stays normal too) and ``< e^-87`` for float32
weights. The dropped mass is below ``n e^-87``, far under any rounding error.

Two paths, chosen by the dimension:

* **direct** (``d < 12``; both dtypes): differences ``y - a`` formed directly with float64
  accumulators. Tasks = (block of 64 queries) x (chunk of the training set, so that a few
  queries still fill every core); a task copies 512 points at a time into a transposed
  float64 block that stays in cache, so the distances, the exponentials and the weighted
  sums vectorise over points. The exponential is a branch-free polynomial
  (:func:`_exp_into`) that LLVM vectorises, 2-3x faster than ``np.exp`` per core (numba
  from PyPI calls a scalar ``exp``).
* **matrix product** (``d >= 12``): tasks = (block of 256 queries) x (chunk of the training
  set). A task streams its chunk 2048 points at a time: ``G = Y_b A_b^T`` by BLAS (dgemm /
  sgemm), a fused numba pass (:func:`_gemm_update`, ~1 ns per pair) turns ``G`` into
  weights relative to the running maximum (online log-sum-exp, flush to zero, float64 sums
  ``S``, ``S2``), and a second BLAS call adds ``W_b A_b`` to a float64 ``(256, d)``
  accumulator. The 4 m n d flops run in BLAS.

Both paths end with one partial state ``(M, S, S2, acc)`` per chunk, merged by the same
online rule (:func:`_merge_kernel`). Tasks run on the calling thread plus a small pool of
Python threads (one per core), each taking the next task when free, so a core slowed by
other work takes fewer. The kernels are serial and release the GIL; on the
matrix-product path the BLAS numpy calls is limited to one thread while the tasks run
(:class:`_BlasThreads`): there two one-thread tasks reached 110-119 GFLOP/s against 95-107
for one task at a time on OpenBLAS's two threads, whose spinning workers also starve the
numba passes. (Numba's ``prange`` with its OpenMP layer was 5-10x slower still whenever
it alternated with OpenBLAS.) So the cores are never oversubscribed. Small problems on the
matrix-product path (fewer than 2^22 query-point pairs and a training set of at most 2^25
numbers) skip the pool: one stream, query blocks of up to 2^20 logits, BLAS on its own
threads. There the pool's hand-offs, a straggling task and OpenBLAS workers still spinning
after an earlier BLAS call cost more than running the numba passes on one core (1.0-1.9x
at n = 1000-5000, m = 512 on 2 cores).

Accuracy of the matrix-product path
-----------------------------------
``|y - a|^2 = |y|^2 + |a|^2 - 2 y.a`` cancels when ``y`` lies near ``a`` relative to their
norms (DESIGN.md: 1e-3 relative error in float32 at d = 2, delta = 1e-4), and a logit
error ``e`` multiplies a weight by ``exp(e)``. Errors common to all pairs of a query
(the rounding of ``|y|^2``) cancel in the softmax; the kernel bounds the rest, for every
pair of a block, by::

    e = (c_G |y| max|a| + c_N max|a|^2 + 4 u |y|^2) / (2 delta),
    c_G = 2 k u_G + 4 u,   c_N = (k + 4) u,   k = min(d, 8 sqrt(d)),

``u = 2^-53`` and ``u_G`` the unit roundoff of the GEMM: ``k u |y| |a|`` bounds the error
of an inner product (``d u`` deterministically; ``8 sqrt(d) u`` with probability above
``1 - 2 e^-32`` under the model of Higham and Mary, SIAM J. Sci. Comput. 2019), the rest
covers the float64 norms and the sum. When ``e`` exceeds the tolerance ``tol`` (1e-11 for
float64 inputs, 2e-6 for float32), every pair whose weight could exceed ``rho = tol / n``
of the largest (``l~ + e >= low + log rho``, ``low`` a running lower bound of the largest
logit over all pairs seen so far) is a *candidate*: it leaves the block's weights and waits
in a per-query buffer. A candidate is dropped as soon as a larger maximum shows it
negligible, and recomputed exactly from the differences with float64 accumulators (then
added to the state by the online rule) at the end of the stream or when the buffer
overflows. So each kept weight is right to a factor ``exp(tol)`` and the dropped ones sum
to less than ``tol`` of the largest: ``denoised`` (relative to the size of the points),
``pr`` and ``lse`` (relative) are accurate to a few ``tol``. At small ``delta`` only the
nearest points are recomputed (the weights concentrate on them); at large ``delta``
``e < tol`` and nothing is. Logits carry in any case the rounding ``~u |l|`` of any direct
evaluation, as in the numpy twin.

In float32 the inner products come from sgemm, whose bound is ``2^29`` times larger:
accurate enough only where the weights concentrate (few candidates) or ``delta`` is large
(``e < tol``). A query with more than 1/32 of a block's pairs as candidates (moderate
``delta``, many significant points; e.g. 1 < delta < 1e3 at d = 784 for unit-variance
data) has its inner products redone, for the rest of the stream, in dgemm on float64 copies
of the blocks (exact products of float32 numbers, float64 sums). The weighted sum ``W A``
stays in sgemm with float32 weights (relative error of order ``sqrt(2048) u_32`` per
block, float64 across blocks). There float32 is at most 4/3 faster than float64.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["empirical_stats", "empirical_stats_numpy", "empirical_weights", "squared_norms"]

# -- tuning constants --------------------------------------------------------------------
_DIRECT_MAX_D = 12  # below this dimension the direct path beats the matrix products
_DIRECT_QB = 64  # queries per task on the direct path
_DIRECT_PB = 512  # points per transposed cache block on the direct path
_GEMM_QB = 256  # queries per block on the matrix-product path
_GEMM_PB = 2048  # points per block on the matrix-product path
_GEMM_PAR_MIN_PAIRS = 1 << 22  # matrix-product path: fewer query-point pairs run serially,
_GEMM_PAR_MIN_POINTS = 1 << 25  # unless the training set holds more numbers than this
_GEMM_SERIAL_BLOCK = 1 << 20  # serial matrix-product path: logits per (queries x points) block
_LAMBDA = 8.0  # probabilistic rounding-error bound: lambda sqrt(d) u (Higham & Mary 2019)
_TOL = {np.dtype(np.float64): 1e-11, np.dtype(np.float32): 2e-6}
_FALLBACK = True  # float32: redo in dgemm the queries whose candidates overflow the buffer
_CANDIDATES = 256  # per query: buffered pairs awaiting exact recomputation
_PROBE = 512  # float32: points in the first block of a task (finds the queries needing dgemm)
_FLOOR64 = -350.0  # float64 weights below e^-350 are zero (w^2 would be subnormal)
_FLOOR32 = -87.0  # float32 weights below e^-87 are zero (float32 normal range)
_U64 = 2.0**-53

# -- exp constants (Cody-Waite reduction, Taylor polynomial to degree 13 on |r| <= ln2/2) --
_LN2_HI = 0.6931471803691238  # high part of ln 2 with 11 trailing zero bits: k * _LN2_HI exact
_LN2_LO = 1.9082149292705877e-10
_INV_LN2 = 1.4426950408889634

_FM_FAST = {"nsz", "contract", "reassoc", "arcp"}  # reductions vectorise; no nnan/ninf
_FM_EXACT = {"nsz", "contract"}  # no reassociation: keeps the Cody-Waite reduction exact


# ======================================================================================
# numba kernels: written as plain functions, compiled on first use by _jit()
# ======================================================================================


def _exp_into(src, n, shift, floor, dst, short):  # pragma: no cover - compiled
    """``dst[j] = exp(src[j] - shift)`` for ``j < n``, zero where the argument is below
    ``floor`` (``>= -708``); the arguments are ``<= 0``.

    ``exp(x) = 2^k exp(r)``, ``k = round(x / ln 2)``, ``r = x - k ln 2`` in two parts
    (Cody-Waite) so that ``r`` is exact, ``exp(r)`` by its Taylor series and ``2^k`` built
    from its bits. Degree 13 (relative error 2e-16), or 7 with ``short`` (7e-9, for weights
    stored in float32, 25% faster). Without branches or calls the loop vectorises (numba
    from PyPI calls a scalar ``exp``): ~0.4 ns per value and core, 2-3x ``np.exp``.
    """
    if short:
        for j in range(n):
            x = src[j] - shift
            keep = x >= floor
            x = x if keep else floor
            k = np.round(x * _INV_LN2)
            r = (x - k * _LN2_HI) - k * _LN2_LO
            p = 1.0 / 5040.0
            p = p * r + 1.0 / 720.0
            p = p * r + 1.0 / 120.0
            p = p * r + 1.0 / 24.0
            p = p * r + 1.0 / 6.0
            p = p * r + 0.5
            p = p * r + 1.0
            p = p * r + 1.0
            two_k = np.int64(np.int64(k) + 1023) << 52
            v = p * np.int64(two_k).view(np.float64)
            dst[j] = v if keep else 0.0
        return
    for j in range(n):
        x = src[j] - shift
        keep = x >= floor
        x = x if keep else floor
        k = np.round(x * _INV_LN2)
        r = (x - k * _LN2_HI) - k * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        two_k = np.int64(np.int64(k) + 1023) << 52
        v = p * np.int64(two_k).view(np.float64)
        dst[j] = v if keep else 0.0


def _max_into(x, n):  # pragma: no cover - compiled
    """``max(x[:n])`` (``-inf`` for ``n == 0``) with eight independent lanes so it vectorises."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = -np.inf
    n8 = n - n % 8
    for j in range(0, n8, 8):
        m0 = max(m0, x[j])
        m1 = max(m1, x[j + 1])
        m2 = max(m2, x[j + 2])
        m3 = max(m3, x[j + 3])
        m4 = max(m4, x[j + 4])
        m5 = max(m5, x[j + 5])
        m6 = max(m6, x[j + 6])
        m7 = max(m7, x[j + 7])
    m = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for j in range(n8, n):
        m = max(m, x[j])
    return m


def _sq_norms_kernel(i0, i1, x, out):  # pragma: no cover - compiled
    """``out[i] = |x_i|^2`` for ``i0 <= i < i1``, float64 accumulation."""
    d = x.shape[1]
    for i in range(i0, i1):
        xi = x[i]
        s = 0.0
        for k in range(d):
            v = np.float64(xi[k])
            s += v * v
        out[i] = s


def _exact_sqdist(y, i, a, j):  # pragma: no cover - compiled
    """``|y_i - a_j|^2`` from the differences, float64 accumulation."""
    yi = y[i]
    aj = a[j]
    s = 0.0
    for k in range(yi.shape[0]):
        t = np.float64(yi[k]) - np.float64(aj[k])
        s += t * t
    return s


def _direct_kernel(t0, t1, y, pts, inv2d, qb, pb, nchunk, mp, sp, s2p, accp):  # pragma: no cover
    """Online log-sum-exp with direct differences (the small-d path), tasks ``[t0, t1)``.

    Task ``t`` handles queries ``[q0, q1)`` (a block of ``qb``) against chunk ``c`` of the
    training set and leaves the partial state ``(M, S, S2, acc)`` in ``mp[c]``, ``sp[c]``,
    ``s2p[c]``, ``accp[c]``; :func:`_merge_kernel` combines the chunks.
    """
    m, d = y.shape
    n = pts.shape[0]
    csize = (n + nchunk - 1) // nchunk
    for t in range(t0, t1):
        qi = t // nchunk
        c = t - qi * nchunk
        q0 = qi * qb
        q1 = min(m, q0 + qb)
        p0 = c * csize
        p1 = min(n, p0 + csize)
        bt = np.empty((d, pb))  # block of points, transposed, float64
        lg = np.empty(pb)  # distances, then logits
        w = np.empty(pb)  # weights
        for i in range(q0, q1):
            mp[c, i] = -np.inf
            sp[c, i] = 0.0
            s2p[c, i] = 0.0
            for k in range(d):
                accp[c, i, k] = 0.0
        for b0 in range(p0, p1, pb):
            nb = min(p1, b0 + pb) - b0
            for j in range(nb):
                for k in range(d):
                    bt[k, j] = pts[b0 + j, k]
            for i in range(q0, q1):
                yk = np.float64(y[i, 0])
                btk = bt[0]  # row views: 2-d indexing in the inner loops stops vectorising
                for j in range(nb):
                    u = yk - btk[j]
                    lg[j] = u * u
                for k in range(1, d):
                    yk = np.float64(y[i, k])
                    btk = bt[k]
                    for j in range(nb):
                        u = yk - btk[j]
                        lg[j] += u * u
                s = inv2d[i]
                for j in range(nb):
                    lg[j] = -lg[j] * s
                mx = mp[c, i]
                bm = _max_into(lg, nb)
                if bm > mx:
                    sc = math.exp(mx - bm)  # 0 on the first block (mx = -inf)
                    sp[c, i] *= sc
                    s2p[c, i] *= sc * sc
                    for k in range(d):
                        accp[c, i, k] *= sc
                    mx = bm
                    mp[c, i] = mx
                _exp_into(lg, nb, mx, _FLOOR64, w, False)
                s1 = 0.0
                s2 = 0.0
                for j in range(nb):
                    s1 += w[j]
                    s2 += w[j] * w[j]
                sp[c, i] += s1
                s2p[c, i] += s2
                for k in range(d):
                    btk = bt[k]
                    a = 0.0
                    for j in range(nb):
                        a += w[j] * btk[j]
                    accp[c, i, k] += a


def _merge_kernel(i0, i1, mp, sp, s2p, accp, den, lse, pr):  # pragma: no cover - compiled
    """Combine the partial states of the chunks and finish queries ``[i0, i1)``:
    ``den = acc / S``, ``lse = M + log S``, ``pr = S^2 / S2``."""
    nchunk = mp.shape[0]
    d = accp.shape[2]
    for i in range(i0, i1):
        mx = -np.inf
        for c in range(nchunk):
            mx = max(mx, mp[c, i])
        s = 0.0
        s2 = 0.0
        acc = np.zeros(d)
        for c in range(nchunk):
            if sp[c, i] > 0.0:
                f = math.exp(mp[c, i] - mx)
                s += sp[c, i] * f
                s2 += s2p[c, i] * f * f
                part = accp[c, i]
                for k in range(d):
                    acc[k] += part[k] * f
        deni = den[i]
        for k in range(d):
            deni[k] = acc[k] / s
        lse[i] = mx + math.log(s)
        pr[i] = s * s / s2


def _fold_candidates(i, yb, pts, s, floor, cidx, cnum, mrun, srun, s2run, acc):
    """Recompute the buffered candidate pairs of row ``i`` exactly and add them to its state
    (online log-sum-exp: the state is rescaled if one of them raises the maximum)."""
    k = cnum[i]
    if k == 0:
        return
    d = acc.shape[1]
    ls = np.empty(k)
    bm = -np.inf
    for t in range(k):
        ls[t] = -_exact_sqdist(yb, i, pts, cidx[i, t]) * s
        bm = max(bm, ls[t])
    mx = mrun[i]
    acci = acc[i]
    if bm > mx:
        sc = math.exp(mx - bm)  # 0 when mx = -inf
        srun[i] *= sc
        s2run[i] *= sc * sc
        for c in range(d):
            acci[c] *= sc
        mx = bm
        mrun[i] = mx
    for t in range(k):
        x = ls[t] - mx
        if x >= floor:
            v = math.exp(x)
            srun[i] += v
            s2run[i] += v * v
            pmu = pts[cidx[i, t]]
            for c in range(d):
                acci[c] += v * np.float64(pmu[c])
    cnum[i] = 0


def _prune_candidates(i, bound, cidx, cup, cnum):
    """Drop the buffered candidates of row ``i`` whose logit upper bound is below ``bound``
    (their weight is below ``tol / n`` of the largest)."""
    k = 0
    for t in range(cnum[i]):
        if cup[i, t] >= bound:
            cidx[i, k] = cidx[i, t]
            cup[i, k] = cup[i, t]
            k += 1
    cnum[i] = k


def _gemm_update(g, rows, p0, yb, pts, yn, an, inv2d, blk, consts, may_flag, wout, flag, state):
    """The fused softmax step of the matrix-product path for the block of points
    ``[p0, p0 + nb)`` and the rows ``rows`` of the block of queries ``yb``.

    ``g[r, j] ~ y_{rows[r]} . a_{p0 + j}`` (from BLAS). Per row: approximate logits
    ``l~ = -(|y|^2 + |a|^2 - 2 g) / (2 delta)``; ``e = (cg |y| max|a| + cn max|a|^2 +
    4 u |y|^2) / (2 delta)`` bounds the part of their error that differs between pairs.
    When ``e > tol`` the pairs whose weight could exceed ``exp(logrho)`` of the largest
    (``l~ + e >= low + logrho``, ``low`` a running lower bound of the max logit over all
    pairs seen so far) become candidates: they leave the block's weights and wait in a
    buffer (``cidx``; ``cup`` holds their upper bounds), to be dropped once a larger
    maximum shows them negligible, or recomputed exactly from the differences
    (:func:`_fold_candidates`). The other weights, relative to the running max ``mrun``,
    go to ``wout`` (the caller adds ``wout @ A_b`` to ``acc``, which this function has
    rescaled). When the block's candidates would overflow the buffer even after dropping the
    negligible ones, the row is left untouched and flagged if ``may_flag`` (the caller redoes
    it with dgemm inner products), else the buffer is recomputed and emptied.
    """
    mrun, lowrun, srun, s2run, acc, cidx, cup, cnum = state
    a_norm_max, a_sq_max = blk
    cg, cn, tol, logrho, floor, short = consts
    nb = g.shape[1]
    cap = cidx.shape[1]
    lg = np.empty(nb)
    d = acc.shape[1]
    anb = an[p0 : p0 + nb]
    for r in range(rows.shape[0]):
        i = rows[r]
        yni = yn[i]
        s = inv2d[i]
        grow = g[r]  # row views: 2-d indexing in the inner loops stops LLVM vectorising
        for j in range(nb):
            dd = yni + anb[j] - 2.0 * np.float64(grow[j])
            dd = max(dd, 0.0)
            lg[j] = -dd * s
        bm = _max_into(lg, nb)
        e = (cg * math.sqrt(yni) * a_norm_max + cn * a_sq_max + 4.0 * _U64 * yni) * s
        if e > tol:
            low = max(lowrun[i], bm - e)
            thr = low + logrho - e  # candidate: l~ + e >= low + logrho
            cnt = 0
            for j in range(nb):
                cnt += lg[j] >= thr
            if may_flag and cnum[i] + cnt > cap:
                _prune_candidates(i, low + logrho, cidx, cup, cnum)
            if may_flag and cnum[i] + cnt > cap:
                flag[i] = 1
                wout[i, :] = 0.0
                continue
            lowrun[i] = low
            if cnt > 0:
                for j in range(nb):
                    if lg[j] >= thr:
                        if cnum[i] == cap:
                            _prune_candidates(i, low + logrho, cidx, cup, cnum)
                            if cnum[i] == cap:
                                _fold_candidates(
                                    i, yb, pts, s, floor, cidx, cnum, mrun, srun, s2run, acc
                                )
                        cidx[i, cnum[i]] = p0 + j
                        cup[i, cnum[i]] = lg[j] + e
                        cnum[i] += 1
                        lg[j] = -np.inf
                bm = _max_into(lg, nb)
        else:
            lowrun[i] = max(lowrun[i], bm - e)
        if bm == -np.inf:  # every pair of the block is a candidate
            wout[i, :] = 0.0
            continue
        mx = mrun[i]
        if bm > mx:
            sc = math.exp(mx - bm)
            srun[i] *= sc
            s2run[i] *= sc * sc
            acci = acc[i]
            for c in range(d):
                acci[c] *= sc
            mx = bm
            mrun[i] = mx
        wrow = wout[i]
        _exp_into(lg, nb, mx, floor, wrow, short)
        s1 = 0.0
        s2 = 0.0
        for j in range(nb):
            v = np.float64(wrow[j])  # the weight as stored, so that S matches W A
            s1 += v
            s2 += v * v
        srun[i] += s1
        s2run[i] += s2


def _gemm_settle(r0, r1, yb, pts, inv2d, logrho, floor, state):  # pragma: no cover
    """End of a stream for rows ``[r0, r1)``: drop the candidates that the final lower
    bound of the max logit shows negligible, recompute the others exactly and add them."""
    mrun, lowrun, srun, s2run, acc, cidx, cup, cnum = state
    for i in range(r0, r1):
        _prune_candidates(i, lowrun[i] + logrho, cidx, cup, cnum)
        _fold_candidates(i, yb, pts, inv2d[i], floor, cidx, cnum, mrun, srun, s2run, acc)


def _add_into(acc, t):  # pragma: no cover - compiled
    """``acc += t`` (float64 accumulator, ``t`` in the input dtype)."""
    m, d = acc.shape
    for i in range(m):
        ai = acc[i]
        ti = t[i]
        for k in range(d):
            ai[k] += np.float64(ti[k])


# name -> fastmath flags; callees before callers
_KERNELS: tuple[tuple[str, Any], ...] = (
    ("_exp_into", _FM_EXACT),
    ("_max_into", _FM_FAST),
    ("_exact_sqdist", _FM_FAST),
    ("_sq_norms_kernel", _FM_FAST),
    ("_direct_kernel", _FM_FAST),
    ("_merge_kernel", _FM_FAST),
    ("_fold_candidates", _FM_FAST),
    ("_prune_candidates", _FM_FAST),
    ("_gemm_update", _FM_FAST),
    ("_gemm_settle", _FM_FAST),
    ("_add_into", _FM_FAST),
)
_jit_lock = threading.Lock()
_jitted = False
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


def _jit() -> None:
    """Wrap the kernels above in ``numba.njit(cache=True, nogil=True)``, once, on first use.

    Importing this module compiles nothing and does not import numba; the first call loads
    the compiled kernels from numba's cache (``__pycache__``) or compiles them (lazily,
    per dtype signature).

    The kernels are serial and release the GIL; parallelism comes from a small pool of
    Python threads (:func:`_parallel`). Numba's own ``prange`` (OpenMP layer) spins its
    workers after a parallel region and, alternating with OpenBLAS's multi-threaded calls,
    made each of them 5-10x slower here; sleeping Python threads do not.
    """
    global _jitted
    if _jitted:
        return
    with _jit_lock:
        if _jitted:
            return
        import numba

        g = globals()
        for name, fm in _KERNELS:
            g[name] = numba.njit(cache=True, nogil=True, fastmath=fm)(g[name])
        _jitted = True


def _get_pool() -> ThreadPoolExecutor | None:
    """The worker threads (``_NUM_THREADS - 1``; the caller is the last), made on first use."""
    global _pool
    if _pool is None and _NUM_THREADS > 1:
        with _jit_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(_NUM_THREADS - 1, thread_name_prefix="physdiff-kernel")
    return _pool


def _forget_pool() -> None:
    """In a forked child: the pool object survives but not its threads, and a lock may have
    been held by a thread of the parent; start afresh."""
    global _pool, _jit_lock
    _pool = None
    _jit_lock = threading.Lock()
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

    _NAMES = ("openblas", "scipy_openblas", "scipy_openblas64_", "scipy_openblas32_")

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


# ======================================================================================
# public functions
# ======================================================================================


def _common(y, points, delta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C-contiguous ``y``, ``points`` of one float dtype and ``delta`` as ``(m,)`` float64."""
    y = np.asarray(y)
    points = np.asarray(points)
    dt = np.result_type(y.dtype, points.dtype)
    if dt != np.float32:
        dt = np.dtype(np.float64)
    y = np.ascontiguousarray(y, dtype=dt)
    points = np.ascontiguousarray(points, dtype=dt)
    if y.ndim != 2 or points.ndim != 2 or y.shape[1] != points.shape[1]:
        raise ValueError(f"y must be (m, d) and points (n, d); got {y.shape} and {points.shape}")
    if points.shape[0] == 0:
        raise ValueError("points must hold at least one training point; got n = 0")
    delta = np.ascontiguousarray(
        np.broadcast_to(np.asarray(delta, dtype=np.float64), (y.shape[0],))
    )
    return y, points, delta


def squared_norms(x: np.ndarray) -> np.ndarray:
    """``|x_i|^2`` for each row, accumulated in float64 (what ``sq_norms`` expects)."""
    _jit()
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = np.empty(x.shape[0])
    _parallel(
        _sq_norms_kernel, x.shape[0], (x, out), pieces=1 if x.size < 1 << 16 else 2 * _NUM_THREADS
    )
    return out


def empirical_stats(
    y: np.ndarray, points: np.ndarray, delta: np.ndarray, *, sq_norms: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean, log-sum-exp and participation ratio of the empirical measure.

    THEORY.md section 1, empirical score: with ``l_{i,mu} = -|y_i - a_mu|^2 / (2 delta_i)``
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
    y, points, delta = _common(y, points, delta)
    m, d = y.shape
    n = points.shape[0]
    if m == 0 or d == 0:
        return _trivial(y, points, delta)
    _jit()
    inv2d = 0.5 / delta
    if d < _DIRECT_MAX_D:
        return _stats_direct(y, points, inv2d)
    if sq_norms is None:
        an = squared_norms(points)
    else:
        an = np.ascontiguousarray(sq_norms, dtype=np.float64)
        if an.shape != (n,):
            raise ValueError(f"sq_norms must have shape ({n},); got {an.shape}")
    return _stats_gemm(y, points, inv2d, an)


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
        _direct_kernel,
        ntask,
        (y, points, inv2d, _DIRECT_QB, _DIRECT_PB, nchunk, mp, sp, s2p, accp),
        pieces=min(ntask, want),
    )
    den = np.empty((m, d), y.dtype)
    lse = np.empty(m)
    pr = np.empty(m)
    _merge_kernel(0, m, mp, sp, s2p, accp, den, lse, pr)
    return den, lse, pr


def _stats_gemm(y, points, inv2d, an):
    """The matrix-product path: tasks = (block of queries) x (chunk of the training set),
    each streaming its chunk block by block; partial states merged by :func:`_merge_kernel`."""
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

    def run(t):
        q0, q1, p0, p1 = t
        c = p0 // cb
        state = (mp[c, q0:q1], sp[c, q0:q1], s2p[c, q0:q1], accp[c, q0:q1])
        qs = slice(q0, q1)
        _gemm_task(p, y[qs], yn[qs], inv2d[qs], points, an, pb, p0, p1, state)

    if parallel:
        with _BLAS.one_thread():
            _run_tasks(run, [(t,) for t in tasks])
    else:
        for t in tasks:
            run(t)
    den = np.empty((m, d), y.dtype)
    lse = np.empty(m)
    pr = np.empty(m)
    _merge_kernel(0, m, mp, sp, s2p, accp, den, lse, pr)
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


def _gemm_task(p, yb, ynb, ivb, points, an, pb, p0, p1, state):
    """Stream the points ``[p0, p1)`` for the queries ``yb`` (single-threaded; BLAS too when
    tasks run in parallel). ``state = (M, S, S2, acc)``, views of the partial states. Each
    task decides alone which queries move to dgemm, so results do not depend on timing."""
    nq, d = yb.shape
    dt = yb.dtype
    mrun, srun, s2run, acc = state
    lowrun = np.full(nq, -np.inf)
    flag = np.zeros(nq, np.int8)
    cidx = np.empty((nq, _CANDIDATES), np.int64)
    cup = np.empty((nq, _CANDIDATES))
    cnum = np.zeros(nq, np.int64)
    st = (mrun, lowrun, srun, s2run, acc, cidx, cup, cnum)
    nbmax = min(pb, p1 - p0)
    gbuf = _scratch("g", nq * nbmax, dt)
    wbuf = _scratch("w", nq * nbmax, dt)
    tbuf = _scratch("t", nq * d, dt)
    rows32 = np.arange(nq, dtype=np.int64)  # rows on inner products in the input dtype
    rows64 = rows32[:0]  # float32 only: rows moved to dgemm inner products
    y64 = a64buf = g64buf = None
    # float32: a first block of _PROBE points finds the queries that need dgemm inner
    # products, so that little sgemm work is thrown away when they are redone
    b0 = p0
    while b0 < p1:
        nb = min(p1 - b0, _PROBE if p.is32 and b0 == p0 else pb)
        ab = points[b0 : b0 + nb]
        bmax = float(an[b0 : b0 + nb].max())
        blk = (math.sqrt(bmax), bmax)
        w = wbuf[: nq * nb].reshape(nq, nb)
        if rows32.size:
            g = gbuf[: rows32.size * nb].reshape(rows32.size, nb)
            np.matmul(yb if rows32.size == nq else yb[rows32], ab.T, out=g)
            may_flag = p.is32 and _FALLBACK
            consts = (p.cg, p.cn, p.tol, p.logrho, p.floor, p.is32)
            _gemm_update(
                g, rows32, b0, yb, points, ynb, an, ivb, blk, consts, may_flag, w, flag, st
            )
            if p.is32 and flag.any():
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
            consts = (p.cg64, p.cn, p.tol, p.logrho, p.floor, p.is32)
            _gemm_update(g, rows64, b0, yb, points, ynb, an, ivb, blk, consts, False, w, flag, st)
        t = tbuf[: nq * d].reshape(nq, d)
        np.matmul(w, ab, out=t)
        _add_into(acc, t)
        b0 += nb
    _gemm_settle(0, nq, yb, points, ivb, p.logrho, p.floor, st)


# ======================================================================================
# numpy twins
# ======================================================================================


def _sqdist_numpy(y64: np.ndarray, a64: np.ndarray, out: np.ndarray, max_elems: int) -> None:
    """``out[i, mu] = |y_i - a_mu|^2`` from the differences, ``max_elems`` at a time."""
    m, d = y64.shape
    n = a64.shape[0]
    pc = max(1, max_elems // max(1, m * d))
    for p0 in range(0, n, pc):
        diff = y64[:, None, :] - a64[None, p0 : p0 + pc, :]
        out[:, p0 : p0 + pc] = np.einsum("ijk,ijk->ij", diff, diff)


def empirical_stats_numpy(
    y: np.ndarray, points: np.ndarray, delta: np.ndarray, *, max_elems: int = 2**22
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The numpy twin of :func:`empirical_stats` (the reference the tests compare with).

    Same formulas (THEORY.md section 1, empirical score), computed in float64 from the
    direct differences ``y_i - a_mu`` and a max-shifted softmax, in chunks of queries so
    that a chunk's ``(c, n)`` logits and a ``(c, p, d)`` difference block hold at most
    ``max_elems`` numbers (one query at a time if ``n`` alone exceeds it).
    """
    y, points, delta = _common(y, points, delta)
    m, d = y.shape
    n = points.shape[0]
    a64 = points.astype(np.float64, copy=False)
    den = np.empty((m, d))
    lse = np.empty(m)
    pr = np.empty(m)
    qc = max(1, min(m, max_elems // n))
    for q0 in range(0, m, qc):
        yq = y[q0 : q0 + qc].astype(np.float64, copy=False)
        dist = np.empty((yq.shape[0], n))
        _sqdist_numpy(yq, a64, dist, max_elems)
        logits = -dist / (2.0 * delta[q0 : q0 + qc, None])
        lmax = logits.max(axis=1, keepdims=True)
        w = np.exp(logits - lmax)
        s = w.sum(axis=1)
        den[q0 : q0 + qc] = (w @ a64) / s[:, None]
        lse[q0 : q0 + qc] = lmax[:, 0] + np.log(s)
        pr[q0 : q0 + qc] = s**2 / np.einsum("ij,ij->i", w, w)
    return den.astype(y.dtype, copy=False), lse, pr


def empirical_weights(y: np.ndarray, points: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The posterior weights ``w_{i,mu} = softmax_mu(-|y_i - a_mu|^2 / (2 delta_i))`` as an
    ``(m, n)`` float64 array (numpy; for small problems, tests and Jacobians).

    THEORY.md section 1, empirical score. Direct differences in float64, max-shifted
    softmax, so rows sum to 1 even for queries far from every point.
    """
    y, points, delta = _common(y, points, delta)
    y64 = y.astype(np.float64, copy=False)
    a64 = points.astype(np.float64, copy=False)
    dist = np.empty((y.shape[0], points.shape[0]))
    _sqdist_numpy(y64, a64, dist, 2**22)
    logits = -dist / (2.0 * delta[:, None])
    logits -= logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(axis=1, keepdims=True)
    return w
