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


_EMAX = 16.0  # logit error bound above which the candidates are chosen pair by pair
# a guessed cut is kept if its candidates cost less to recompute (~(d + 40) / 2 ns each)
# than the histogram that would find the fewest (~1 ns a pair)


def _rescale_row(i, sc, srun, s2run, acc, budget):
    """Multiply the state of row ``i`` by ``sc`` (``sc^2`` for the squared sums), when its
    reference maximum rises: every sum is kept relative to it (``budget[i, 4]``, a logit,
    is not)."""
    srun[i] *= sc
    s2run[i] *= sc * sc
    acci = acc[i]
    for c in range(acci.shape[0]):
        acci[c] *= sc
    budget[i, 0] *= sc
    budget[i, 1] *= sc * sc
    budget[i, 2] *= sc
    budget[i, 3] *= sc * sc


def _fold_candidates(i, yb, pts, s, floor, cidx, cnum, mrun, srun, s2run, acc, budget, nexact):
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
    budget[i, 4] = max(budget[i, 4], bm)  # an exact logit: a lower bound of the maximum
    mx = mrun[i]
    # a new maximum; or, while nothing is kept yet, the exact one if close (so that one
    # dominant point gets weight exactly 1; never far below, where weights would overflow)
    if bm > mx or (srun[i] == 0.0 and bm > mx - 1.0):
        _rescale_row(i, math.exp(mx - bm), srun, s2run, acc, budget)  # 0 when mx = -inf
        mx = bm
        mrun[i] = mx
    acci = acc[i]
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


def _log2_floor(v):  # pragma: no cover - compiled
    """``floor(log2 v)`` of a positive normal float64, from its exponent bits."""
    return ((np.float64(v).view(np.int64) >> 52) & 0x7FF) - 1023


def _budget_cut(wrow, nb, room1, room2, hs, hs2, hc):
    """The weight at and above which the pairs of a block become candidates, so that the
    kept ones (below it) sum to at most ``room1`` and their squares to at most ``room2``;
    and the number of candidates. Weights below ``2^k0 <= c0`` fit whatever their number
    (``nb c0 <= room1``, ``nb c0^2 <= room2``); the others go to a histogram by their
    binary exponent (``hs``, ``hs2``, ``hc``: sums, sums of squares, counts), and the cut
    is the lowest power of two ``2^(k0 + k)`` that it allows."""
    nbin = hs.shape[0]
    c0 = max(1e-290, min(room1 / nb, math.sqrt(max(room2, 0.0) / nb)))
    k0 = _log2_floor(c0)
    lo = 2.0**k0
    m1 = 0.0
    m2 = 0.0
    for t in range(nbin):
        hs[t] = 0.0
        hs2[t] = 0.0
        hc[t] = 0
    for j in range(nb):
        v = np.float64(wrow[j])
        if v < lo:
            m1 += v
            m2 += v * v
        else:
            t = min(nbin - 1, _log2_floor(v) - k0)
            hs[t] += v
            hs2[t] += v * v
            hc[t] += 1
    cut = 0
    while cut < nbin - 1 and m1 + hs[cut] <= room1 and m2 + hs2[cut] <= room2:
        m1 += hs[cut]
        m2 += hs2[cut]
        cut += 1
    ncand = 0
    for t in range(cut, nbin):
        ncand += hc[t]
    return lo * 2.0**cut, ncand


def _sums_below(wrow, nb, g):  # pragma: no cover - compiled
    """Over the stored weights (float64): sum and sum of squares of all of them and of
    those below ``g``, the number at or above ``g`` and the number of nonzero ones."""
    b1 = 0.0
    b2 = 0.0
    k1 = 0.0
    k2 = 0.0
    nc = 0
    nz = 0
    for j in range(nb):
        v = np.float64(wrow[j])
        b1 += v
        b2 += v * v
        kv = 0.0 if v >= g else v
        k1 += kv
        k2 += kv * kv
        nc += v >= g
        nz += v != 0.0
    return b1, b2, k1, k2, nc, nz


def _gemm_update(
    g, rows, p0, yb, pts, yn, an, inv2d, blk, consts, may_flag, wout, flag, nzcnt, state
):
    """The fused softmax step of the matrix-product path for the block of points
    ``[p0, p0 + nb)`` and the rows ``rows`` of the block of queries ``yb``; returns the
    number of nonzero weights it wrote (the caller picks a dense or a sparse ``W A``).

    ``g[r, j] ~ y_{rows[r]} . a_{p0 + j}`` (from BLAS). Per row: approximate logits
    ``l~ = -(|y|^2 + |a|^2 - 2 g) / (2 delta)`` and their weights ``v = exp(l~ - M)``
    relative to the running maximum ``M``; ``e = (cg |y| max|a| + cn max|a|^2 + 4 u |y|^2)
    / (2 delta)`` bounds the part of a logit's error that differs between pairs, so a kept
    pair's weight is off by at most ``v (e^e - 1)``. The row's error budget (package
    docstring) keeps the sum of these below ``tol`` times ``L``, a lower bound of the final
    ``S`` (``L = sum of v e^-e`` over every pair seen), and the same for the squares; when
    the whole block does not fit, the pairs with the largest weights become candidates
    (:func:`_budget_cut`). Where ``e > _EMAX`` (tiny delta) the weights say little and the
    rule is per pair: a candidate is any pair with ``l~ + e >= low + log(tol / n)``
    (``low = budget[i, 4]``, a lower bound of the largest logit), so each kept pair
    weighs less than ``tol / n`` of the largest. Candidates leave the block's weights and
    wait in a buffer (``cidx``), recomputed exactly from the differences
    (:func:`_fold_candidates`) when it fills and at the end of the stream. A row with more
    than ``nb / flag_div`` candidates in the block is left untouched and flagged if
    ``may_flag`` (the caller redoes it with dgemm inner products). The kept weights go to
    ``wout`` (the caller adds ``wout @ A_b`` to ``acc``, which this function has rescaled to
    the new maximum).
    """
    mrun, srun, s2run, acc, budget, cidx, cnum, nexact = state
    a_norm_max, a_sq_max = blk
    cg, cn, tol, logrho, floor, short, flag_div, drop = consts
    nb = g.shape[1]
    lg = np.empty(nb)
    hist = (np.empty(64), np.empty(64), np.empty(64, np.int64))
    anb = an[p0 : p0 + nb]
    nnz = 0
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
        budget[i, 4] = max(budget[i, 4], bm - e)
        wrow = wout[i]
        if e > _EMAX:
            ok = _row_by_logit(
                i, lg, p0, e, logrho, yb, pts, s, floor, short, may_flag, flag_div, wrow, state
            )
        else:
            rc = (tol, logrho, floor, short, may_flag, flag_div, drop)
            ok = _row_by_budget(i, lg, bm, p0, e, yb, pts, s, rc, wrow, hist, state)
        if ok < 0:
            flag[i] = 1
            wrow[:] = 0.0
            nzcnt[i] = 0
        else:
            nzcnt[i] = ok
            nnz += ok
    return nnz


def _add_candidate(i, j, yb, pts, s, floor, state):
    """Put pair ``(i, j)`` in row ``i``'s buffer, recomputing the buffer first if full."""
    mrun, srun, s2run, acc, budget, cidx, cnum, nexact = state
    if cnum[i] == cidx.shape[1]:
        _fold_candidates(i, yb, pts, s, floor, cidx, cnum, mrun, srun, s2run, acc, budget, nexact)
    cidx[i, cnum[i]] = j
    cnum[i] += 1


def _raise_max(i, mx, state):
    """Make ``mx`` the reference of row ``i`` if it is above the running maximum,
    rescaling the state (online log-sum-exp)."""
    mrun, srun, s2run, acc, budget = state[0], state[1], state[2], state[3], state[4]
    if mrun[i] < mx:
        _rescale_row(i, math.exp(mrun[i] - mx), srun, s2run, acc, budget)  # 0 when -inf
        mrun[i] = mx


def _row_by_logit(i, lg, p0, e, logrho, yb, pts, s, floor, short, may_flag, flag_div, wrow, state):
    """One row of a block where ``e > _EMAX``: the pairs with ``l~ + e >= low + log(tol /
    n)`` are candidates, the others kept. Returns False (state untouched) when the row must
    move to dgemm (returns the number of nonzero kept weights, or -1)."""
    mrun, srun, s2run, budget = state[0], state[1], state[2], state[4]
    nb = lg.shape[0]
    thr = budget[i, 4] + logrho - e
    ncand = 0
    for j in range(nb):
        ncand += lg[j] >= thr
    if may_flag and ncand * flag_div > nb:
        return -1
    if ncand > 0:
        for j in range(nb):
            if lg[j] >= thr:
                _add_candidate(i, p0 + j, yb, pts, s, floor, state)
                lg[j] = -np.inf
    mx = max(mrun[i], _max_into(lg, nb))  # after the folds, which may raise mrun
    if mx == -np.inf:
        wrow[:] = 0.0
        return 0
    _exp_into(lg, nb, mx, floor, wrow, short)
    b1, b2, _, _, _, nz = _sums_below(wrow, nb, np.inf)
    _raise_max(i, mx, state)
    srun[i] += b1
    s2run[i] += b2
    budget[i, 2] += math.exp(-e) * b1  # kept under a per-pair rule: no budget spent
    budget[i, 3] += math.exp(-2.0 * e) * b2
    return nz


def _take_candidates(i, wrow, nb, thr, p0, yb, pts, s, floor, state):
    """Move the pairs of row ``i`` whose weight is at least ``thr`` to its candidate buffer
    (their weights set to zero); returns how many. Runs of 16 weights are skipped on their
    maximum (one vectorised pass: the candidates are few)."""
    taken = 0
    for c0 in range(0, nb, 16):
        c1 = min(nb, c0 + 16)
        top = 0.0
        for j in range(c0, c1):
            top = max(top, np.float64(wrow[j]))
        if top >= thr:
            for j in range(c0, c1):
                if np.float64(wrow[j]) >= thr:
                    _add_candidate(i, p0 + j, yb, pts, s, floor, state)
                    wrow[j] = 0.0
                    taken += 1
    return taken


def _row_by_budget(i, lg, bm, p0, e, yb, pts, s, rc, wrow, hist, state):
    """One row of a block where ``e <= _EMAX``: weights relative to the new maximum, then
    the largest become candidates until the kept ones fit the row's error budget (the
    row's last cut, ``budget[i, 5]`` as a logit, if it still fits; else
    :func:`_budget_cut`). Returns the number of nonzero kept weights, or -1 (state
    untouched) when the row must move to dgemm."""
    tol, logrho, floor, short, may_flag, flag_div, drop = rc
    mrun, srun, s2run, budget = state[0], state[1], state[2], state[4]
    nb = lg.shape[0]
    d = yb.shape[1]
    mx = max(mrun[i], bm)
    _exp_into(lg, nb, mx, floor, wrow, short)
    ep1 = math.expm1(e)
    ep2 = math.expm1(2.0 * e)
    lo1 = math.exp(-e)
    lo2 = math.exp(-2.0 * e)
    # a first guess of the cut, as a weight: the row's last cut, else the per-pair rule
    # (each kept pair off by less than tol / n of the largest weight)
    guess = math.exp(budget[i, 5] - mx)  # inf on the first block that needs a cut
    b1, b2, k1, k2, nc, nz = _sums_below(wrow, nb, guess)
    thr = np.inf  # weights at or above it become candidates
    if ep1 > 0.0:
        sc = math.exp(mrun[i] - mx) if mrun[i] < mx else 1.0  # the state's scale after it
        room1 = (tol * (budget[i, 2] * sc + lo1 * b1) - budget[i, 0] * sc) / ep1
        # the squares (pr = S^2 / S2) get twice the budget: e^2e - 1 is twice e^e - 1
        room2 = (2.0 * tol * (budget[i, 3] * sc * sc + lo2 * b2) - budget[i, 1] * sc * sc) / ep2
        if b1 > room1 or b2 > room2:
            few = 2 * nb // (d + 40)
            if not (k1 <= room1 and k2 <= room2 and nc <= few):
                # the pairs within 2^-10 of the block's largest weight (at large d the
                # largest alone often holds nearly all of the block's mass)
                guess = math.exp(bm - mx) * 2.0**-10
                _, _, k1, k2, nc, _ = _sums_below(wrow, nb, guess)
            if not (k1 <= room1 and k2 <= room2 and nc <= few):
                # the per-pair rule: each kept pair off by less than tol / n of the largest
                guess = math.exp(budget[i, 4] + logrho - math.log(-math.expm1(-e)) - e - mx)
                _, _, k1, k2, nc, _ = _sums_below(wrow, nb, guess)
            if k1 <= room1 and k2 <= room2 and nc <= few:
                thr, ncand = guess, nc
            else:
                thr, ncand = _budget_cut(wrow, nb, room1, room2, hist[0], hist[1], hist[2])
            if may_flag and ncand * flag_div > nb:
                return -1
    _raise_max(i, mx, state)
    if thr < np.inf:
        budget[i, 5] = mx + math.log(thr)
        if thr != guess:  # a cut from the histogram: the kept sums below it
            _, _, k1, k2, _, _ = _sums_below(wrow, nb, thr)
        nz -= _take_candidates(i, wrow, nb, thr, p0, yb, pts, s, floor, state)
        f = math.exp(mx - mrun[i])  # where a fold moved the reference
        if f != 1.0:  # the block's weights follow it
            for j in range(nb):
                wrow[j] *= f
            k1, k2, _, _, _, _ = _sums_below(wrow, nb, np.inf)
            b1 *= f
            b2 *= f * f
    else:
        k1, k2 = b1, b2
    budget[i, 0] += ep1 * k1
    budget[i, 1] += ep2 * k2
    budget[i, 2] += lo1 * b1  # every pair counts in the lower bounds: the candidates are
    budget[i, 3] += lo2 * b2  # added exactly later
    if drop:
        # half the budget left drops the smallest weights (a dropped pair is off by its
        # whole weight, at most v e^e): the rest of the block is often empty then
        r1 = tol * budget[i, 2] - budget[i, 0]
        r2 = 2.0 * tol * budget[i, 3] - budget[i, 1]
        c = min(r1 / (2 * nb), math.sqrt(max(r2, 0.0) / (2 * nb))) * lo1
        if c > 0.0:
            md1, md2, nz = _drop_below(wrow, nb, c)
            k1 = max(0.0, k1 - md1)
            k2 = max(0.0, k2 - md2)
            budget[i, 0] += md1  # e^e v in all, of which (e^e - 1) v was charged above
            budget[i, 1] += md2
    srun[i] += k1
    s2run[i] += k2
    return nz


def _drop_below(wrow, nb, c):  # pragma: no cover - compiled
    """Set the weights below ``c`` to zero; return their sum, the sum of their squares and
    the number of weights left (``c > 0``)."""
    m1 = 0.0
    m2 = 0.0
    nz = 0
    for j in range(nb):
        v = np.float64(wrow[j])
        small = v < c
        dv = v if small else 0.0
        m1 += dv
        m2 += dv * dv
        nz += not small
        wrow[j] = 0.0 if small else wrow[j]
    return m1, m2, nz


def _gemm_settle(r0, r1, yb, pts, inv2d, floor, state):  # pragma: no cover - compiled
    """End of a stream for rows ``[r0, r1)``: recompute the remaining candidates exactly and
    add them."""
    mrun, srun, s2run, acc, budget, cidx, cnum, nexact = state
    for i in range(r0, r1):
        _fold_candidates(
            i, yb, pts, inv2d[i], floor, cidx, cnum, mrun, srun, s2run, acc, budget, nexact
        )


def _sparse_add(acc, w, pts, p0, nzcnt):  # pragma: no cover - compiled
    """``acc += w @ pts[p0 : p0 + nb]`` over the nonzero weights only (float64 sums), for
    blocks where the weights concentrate on a few points; row ``i`` has ``nzcnt[i]`` of
    them (the scan of a row stops at the last)."""
    nq, nb = w.shape
    d = acc.shape[1]
    for i in range(nq):
        left = nzcnt[i]
        if left == 0:
            continue
        wi = w[i]
        ai = acc[i]
        for j in range(nb):
            if wi[j] != 0.0:
                v = np.float64(wi[j])
                aj = pts[p0 + j]
                for k in range(d):
                    ai[k] += v * np.float64(aj[k])
                left -= 1
                if left == 0:
                    break


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
    ("_rescale_row", _FM_FAST),
    ("_fold_candidates", _FM_FAST),
    ("_log2_floor", _FM_FAST),
    ("_budget_cut", _FM_FAST),
    ("_sums_below", _FM_FAST),
    ("_drop_below", _FM_FAST),
    ("_add_candidate", _FM_FAST),
    ("_raise_max", _FM_FAST),
    ("_take_candidates", _FM_FAST),
    ("_row_by_logit", _FM_FAST),
    ("_row_by_budget", _FM_FAST),
    ("_gemm_update", _FM_FAST),
    ("_gemm_settle", _FM_FAST),
    ("_sparse_add", _FM_FAST),
    ("_add_into", _FM_FAST),
)


class LazyJit:
    """``numba.njit(cache=True, nogil=True)`` over the named kernels of a module's
    namespace, once, on the first call (thread-safe); ``kernels`` holds ``(name, fastmath
    flags)`` pairs, callees before callers, ``first`` another ``LazyJit`` (or callable)
    whose kernels these call. Importing the module compiles nothing and does not import
    numba; the first call loads the compiled kernels from numba's cache (``__pycache__``)
    or compiles them (lazily, per dtype signature).

    The kernels are serial and release the GIL; parallelism comes from a small pool of
    Python threads (:func:`._threads._parallel`). Numba's own ``prange`` (OpenMP layer)
    spins its workers after a parallel region and, alternating with OpenBLAS's
    multi-threaded calls, made each of them 5-10x slower here; sleeping Python threads do
    not."""

    def __init__(self, namespace: dict, kernels, first=None, **options):
        self._ns = namespace
        self._kernels = tuple(kernels)
        self._first = first
        self._options = options
        self._done = False
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # a parent's thread may have held the lock
            os.register_at_fork(after_in_child=self._new_lock)

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self._done:
            return
        with self._lock:
            if self._done:
                return
            import numba

            if self._first is not None:
                self._first()
            for name, fm in self._kernels:
                self._ns[name] = numba.njit(cache=True, nogil=True, fastmath=fm, **self._options)(
                    self._ns[name]
                )
            self._done = True


_jit = LazyJit(globals(), _KERNELS)
