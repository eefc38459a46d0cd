"""The numba kernels of the empirical score, written as plain functions and compiled on
first use by :func:`_jit` (importing this module does not import numba).

Array-in array-out, serial, releasing the GIL: the drivers in :mod:`._paths` run them on
the small thread pool of :mod:`._threads`. The formulas and the accuracy argument are in
the package docstring (:mod:`physdiff._kernels`).
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import numpy as np

_FLOOR64 = -350.0  # float64 weights below e^-350 are zero (w^2 would be subnormal)
_FLOOR32 = -87.0  # float32 weights below e^-87 are zero (float32 normal range)
_U64 = 2.0**-53

# -- exp constants (Cody-Waite reduction, Taylor polynomial to degree 13 on |r| <= ln2/2) --
_LN2_HI = 0.6931471803691238  # high part of ln 2 with 11 trailing zero bits: k * _LN2_HI exact
_LN2_LO = 1.9082149292705877e-10
_INV_LN2 = 1.4426950408889634
_TAYLOR13 = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))  # 1/13!, ..., 1/0!
_TAYLOR7 = _TAYLOR13[6:]  # 1/7!, ..., 1/0!

_FM_FAST = {"nsz", "contract", "reassoc", "arcp"}  # reductions vectorise; no nnan/ninf
_FM_EXACT = {"nsz", "contract"}  # no reassociation: keeps the Cody-Waite reduction exact

# ======================================================================================
# numba kernels: written as plain functions, compiled on first use by _jit()
# ======================================================================================


def _poly_exp(r, short):  # pragma: no cover - compiled
    """``exp(r)`` on ``|r| <= ln2/2`` by its Taylor series (Horner) to degree 13 (relative
    error 2e-16), or to degree 7 with ``short`` (7e-9)."""
    p = 0.0
    if short:
        for c in _TAYLOR7:
            p = p * r + c
    else:
        for c in _TAYLOR13:
            p = p * r + c
    return p


def _exp_into(src, n, shift, floor, dst, short):  # pragma: no cover - compiled
    """``dst[j] = exp(src[j] - shift)`` for ``j < n``, zero where the argument is below
    ``floor`` (``>= -708``); the arguments are ``<= 0``.

    ``exp(x) = 2^k exp(r)``, ``k = round(x / ln 2)``, ``r = x - k ln 2`` in two parts
    (Cody-Waite) so that ``r`` is exact, ``exp(r)`` by its Taylor series and ``2^k`` built
    from its bits. Degree 13 (relative error 2e-16), or 7 with ``short`` (7e-9, for weights
    stored in float32, 25% faster). Without branches or calls the loop vectorises (numba
    from PyPI calls a scalar ``exp``; the test of ``short`` does not depend on ``j``, so
    LLVM hoists it out of the loop): ~0.4 ns per value and core, 2-3x ``np.exp``.
    """
    for j in range(n):
        x = src[j] - shift
        keep = x >= floor
        x = x if keep else floor
        k = np.round(x * _INV_LN2)
        r = (x - k * _LN2_HI) - k * _LN2_LO
        p = _poly_exp(r, short)
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


def _fold_candidates(i, yb, pts, s, floor, cidx, cnum, mrun, srun, s2run, acc, nexact):
    """Recompute the buffered candidate pairs of row ``i`` exactly and add them to its state
    (online log-sum-exp: the state is rescaled if one of them raises the maximum);
    ``nexact[0]`` counts the pairs recomputed."""
    k = cnum[i]
    if k == 0:
        return
    nexact[0] += k
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
    When ``e > tol`` the pairs with ``l~ + e >= low + logrho - log(1 - e^-e)`` (``low`` a
    running lower bound of the max logit over all pairs seen so far) become candidates:
    a pair below keeps its approximate weight, whose error ``|e^l~ - e^l| <= e^(l~ + e)
    (1 - e^-e)`` is then below ``exp(logrho)`` of the largest weight. Candidates leave the
    block's weights and wait in a buffer (``cidx``; ``cup`` holds their upper bounds
    ``l~ + e``), to be dropped once a larger maximum shows their weight below
    ``exp(logrho)`` of the largest, or recomputed exactly from the differences
    (:func:`_fold_candidates`). The other weights, relative to the running max ``mrun``,
    go to ``wout`` (the caller adds ``wout @ A_b`` to ``acc``, which this function has
    rescaled). When the block's candidates would overflow the buffer even after dropping the
    negligible ones, the row is left untouched and flagged if ``may_flag`` (the caller redoes
    it with dgemm inner products), else the buffer is recomputed and emptied.
    """
    mrun, lowrun, srun, s2run, acc, cidx, cup, cnum, nexact = state
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
            # candidate: l~ + e >= low + logrho - log(1 - e^-e); the others are kept with
            # their approximate weights, each off by less than exp(logrho) of the largest
            thr = low + logrho - math.log(-math.expm1(-e)) - e
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
                                    i,
                                    yb,
                                    pts,
                                    s,
                                    floor,
                                    cidx,
                                    cnum,
                                    mrun,
                                    srun,
                                    s2run,
                                    acc,
                                    nexact,
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
    mrun, lowrun, srun, s2run, acc, cidx, cup, cnum, nexact = state
    for i in range(r0, r1):
        _prune_candidates(i, lowrun[i] + logrho, cidx, cup, cnum)
        _fold_candidates(i, yb, pts, inv2d[i], floor, cidx, cnum, mrun, srun, s2run, acc, nexact)


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
    ("_poly_exp", _FM_EXACT),
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


def _new_lock_after_fork() -> None:
    """In a forked child a thread of the parent may have held the lock: start afresh."""
    global _jit_lock
    _jit_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _jit() -> None:
    """Wrap the kernels above in ``numba.njit(cache=True, nogil=True)``, once, on first use.

    Importing this module compiles nothing and does not import numba; the first call loads
    the compiled kernels from numba's cache (``__pycache__``) or compiles them (lazily,
    per dtype signature).

    The kernels are serial and release the GIL; parallelism comes from a small pool of
    Python threads (:func:`._threads._parallel`). Numba's own ``prange`` (OpenMP layer) spins its
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
