"""The empirical score in torch, on a GPU or the CPU: the same computation and the same
accuracy contract as :func:`physdiff._kernels.empirical_stats` (the package docstring,
"Accuracy of the matrix-product path", gives the formulas and the argument), written as a
few large tensor operations per block so that it runs well on a GPU.

Imported only when asked for (torch stays optional). For queries ``Y`` ``(m, d)`` and a
training set ``A`` ``(n, d)``, both centred at the training mean ``c`` (translations leave
``|y - a|`` unchanged and shrink the norms the rounding bound below grows with), the work
runs over blocks of ``qb`` queries x ``pc`` points, ``qb pc <= chunk``:

* ``G = Y_b A_b^T`` by one GEMM in the working dtype (float32 or float64), logits
  ``l~ = -(|y|^2 + |a|^2 - 2 G) / (2 delta)`` (clamped at distance 0);
* online log-sum-exp over the blocks of points, state per query in float64: the reference
  ``M`` (the running maximum), ``S = sum e^(l - M)``, ``S2 = sum e^(2 (l - M))``, ``acc =
  sum e^(l - M) (a - c)`` and the error budget ``(E, E2, L, L2)`` below; a block raising
  the reference to ``M'`` rescales them by ``e^(M - M')`` (squares by its square); then
  ``W = e^(l~ - M')`` (flushed to zero below ``e^-87`` in float32, ``e^-350`` in float64),
  ``S += sum W``, ``S2 += sum W^2`` and ``acc += W A_b`` (a second GEMM; over the nonzero
  weights alone where few are left, and skipped where none is: large ``d``, small
  ``delta``);
* at the end ``denoised = c + acc / S``, ``lse = M + log S``, ``pr = S^2 / S2``.

So nothing larger than a block (``qb x pc`` logits, and copies of a block's rows) is ever
formed.

Accuracy (the error budget of the numba kernel). The part of a logit's error that differs
between the pairs of a query is bounded by

    e = (c_G |y| max|a| + c_N (|y| + max|a|)^2) / (2 delta),
    c_G = 2 k u_G + 8 u_W,   c_N = (k + 4) u + 8 u_W,   k = min(d, 8 sqrt(d)),

``u_G``, ``u_W`` the unit roundoffs of the GEMM and of the elementwise work (float32 GEMMs
allowed TF32 or bfloat16 by ``torch.set_float32_matmul_precision`` count with ``2^-11`` or
``2^-8``), ``u = 2^-53`` (the float64 norms; ``8 u_W`` covers the centring, the sums and
the rounding of a logit stored in the working dtype). A kept weight ``v`` is then off by at
most ``v (e^e - 1)`` and its true value is at least ``v e^-e``. Each query keeps ``E``, the
sum of these error bounds over the pairs kept with approximate weights, and ``L``, a lower
bound of ``S`` (``v e^-e`` over the kept pairs, the exact weight of the recomputed ones),
and the same for the squares (``E2``, ``L2``, twice the tolerance); the rule is ``E <= tol
L`` and ``E2 <= 2 tol L2`` after every block (``tol`` = 1e-12 for float64 inputs, 2e-6 for
float32), so ``S``, ``denoised`` (relative to the size of the centred points) and ``lse``
are right to about ``tol`` and ``pr`` to about ``4 tol``. A block whose weights do not fit
makes its largest weights *candidates*, recomputed exactly from the differences ``y - a``
of the original (uncentred) coordinates in float64 and added with float64 weights: the cut
is first the one that fits whatever the number of kept pairs (``v >= c0 = min(room / pc,
sqrt(room2 / pc))``, one comparison), and where that makes more than ``pc / 32``
candidates, the lowest power of two that a histogram of the block's weights by binary
exponent allows (:func:`_budget_cut`, the bins of ``_compiled._budget_cut``). Where ``e >
16`` (tiny ``delta``, far queries) the weights say nothing: the rule is per pair, every
pair with ``l~ + e >= low + log(tol / n)`` (``low`` a running lower bound of the largest
logit) is a candidate and the others, each below ``tol / n`` of the largest weight, are
dropped (at most ``tol`` of the mass, as keeping them would be). The numba kernel's other
refinements (the row's last cut as a first guess, the candidate buffer) save scalar work
that has no counterpart in a few tensor operations per block; the contract is the same.
Against the per-pair cut at ``tol / n`` that this module used before (CPU torch, one
thread, m = 256, delta = 1, interleaved medians): 1.3-1.7x faster in float32 at d = 64-3072
and 1.8-3.5x in float64 (the cut recomputed far more pairs, and sent half the float32
queries to float64 products at d = 64), and 5-15% slower at d <= 16 in float64, where
neither recomputes anything (the budget's bookkeeping); the budget keeps the simpler
rule's guarantee (the tests compare both dtypes with the numpy twin on adversarial data).

The block sums ``sum W`` and ``sum W^2`` of float32 weights are float32 reductions (torch's
cascade / tree sums, relative error ~``u_32 log2 pc``, under 1e-6), converted to float64;
``W A`` in float32 has the rounding of an sgemm (relative ~``sqrt(pc) u_32`` against the
size of the points), as in the numba kernel.

In float32 a query with more than ``pc / 16`` candidates in a block (moderate ``delta``,
many significant points) moves, for the rest of the stream and from that block on, to
float64 products (a float64 GEMM on float64-centred coordinates, with the float64 bound
and the float32 ``tol``); the first block of a float32 stream is a probe of ``pc / 16``
points (at least 512), so that such queries are found before a whole block's float32 work
is spent on them (on a GPU one block often holds the whole training set). Below ``d = 32``
float32 inputs run on float64 products from the start, as in the numba kernel: there the
sgemm bound is large against the spread of the logits and the budget sent 26-100% of the
queries to float64 products anyway (measured on CPU torch, standard normal data, delta =
1: d = 2 all of them, d = 16 a quarter to a half), so the float32 pass was wasted work (2-3x
slower than float64). Exact recomputation and the sparse ``W A`` run in
batches of at most ``chunk`` numbers. ``counts`` (a dict) receives how many pairs were
recomputed exactly and how many ran in float64 products, as
:func:`physdiff._kernels._paths.recompute_counts` reports for the numba kernel.
"""

from __future__ import annotations

import math

_U64 = 2.0**-53
_U32 = 2.0**-24
_TOL = {"float64": 1e-12, "float32": 2e-6}
_FLOOR = {"float64": math.exp(-350.0), "float32": math.exp(-87.0)}  # weights below: zero
_LAMBDA = 8.0  # probabilistic inner-product bound lambda sqrt(d) u (Higham & Mary 2019)
_EMAX = 16.0  # logit error bound above which the candidates are chosen pair by pair
_FEW = 32  # the cut c0 is kept if it makes at most 1/_FEW of a block's pairs candidates
_HEAVY = 16  # float32: more than 1/_HEAVY of a block's pairs as candidates -> float64 GEMM
_NBIN = 64  # bins of the histogram by binary exponent (_budget_cut)
_SPARSE_MIN_D = 32  # W A over the nonzero weights considered from this dimension on
_SPARSE_DIV = {"cuda": 256, "cpu": 64}  # ... where at most pairs / this many are nonzero
CHUNK_CPU = 1 << 22  # query-point pairs per block on the CPU
CHUNK_MAX = 1 << 27  # at most this many pairs per block on a GPU
_QB_MAX = 8192  # queries per block at most
_WIDE_BELOW_D = 32  # float32 below this dimension: float64 products from the start


def torch_module():
    """``torch``, or an :class:`ImportError` that says how to get it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed in the test env
        raise ImportError(
            "the torch path of Empirical needs torch: pip install 'physdiff[torch]'"
        ) from exc
    return torch


def default_chunk(device, dtype) -> int:
    """Query-point pairs per block: ``CHUNK_CPU`` on the CPU; on a CUDA device an eighth of
    the free memory over the bytes a pair takes in a block (logits, weights and their
    float64 copies), between ``CHUNK_CPU`` and ``CHUNK_MAX``."""
    torch = torch_module()
    if device.type != "cuda":
        return CHUNK_CPU
    free, _ = torch.cuda.mem_get_info(device)
    per_pair = 4 * torch.empty((), dtype=dtype).element_size() + 16
    return int(min(CHUNK_MAX, max(CHUNK_CPU, free // 8 // per_pair)))


def _bound_consts(d: int, work_u: float, gemm_u: float) -> tuple[float, float]:
    k = min(float(d), _LAMBDA * math.sqrt(d))
    return 2.0 * k * gemm_u + 8.0 * work_u, (k + 4.0) * _U64 + 8.0 * work_u


def gemm_unit(torch, dtype) -> float:
    """Unit roundoff of torch's matrix products in ``dtype``: ``2^-53`` in float64; in
    float32 ``2^-24``, or ``2^-11`` (TF32) / ``2^-8`` (bfloat16) where
    ``torch.set_float32_matmul_precision`` (or ``torch.backends.cuda.matmul.allow_tf32``)
    allows the faster formats."""
    if dtype == torch.float64:
        return _U64
    prec = torch.get_float32_matmul_precision()
    if prec == "medium":
        return 2.0**-8
    if prec == "high" or torch.backends.cuda.matmul.allow_tf32:
        return 2.0**-11
    return _U32


class TorchPoints:
    """A training set on one device, ready for :func:`empirical_stats_torch`: the original
    points ``(n, d)`` in the working dtype, the centre ``c`` (their float64 mean), the
    centred points and their float64 norms."""

    def __init__(self, points):
        torch = torch_module()
        self.points = points.contiguous()
        p64 = self.points.to(torch.float64)
        self.centre = p64.mean(dim=0)
        centred = p64 - self.centre
        self.centred = centred.to(self.points.dtype).contiguous()
        self.sq = (centred * centred).sum(dim=1)  # float64 |a - c|^2
        self.norm = self.sq.sqrt()
        self.sq_w = self.sq.to(self.points.dtype)
        # float32 below _WIDE_BELOW_D runs on float64 products: keep the float64 centring
        small = self.points.dtype != torch.float64 and self.points.shape[1] < _WIDE_BELOW_D
        self.centred64 = centred if small else None

    @property
    def device(self):
        return self.points.device

    @property
    def dtype(self):
        return self.points.dtype


def empirical_stats_torch(y, tp: TorchPoints, delta, *, chunk: int, counts: dict | None = None):
    """``(denoised, lse, pr)`` of the empirical measure on ``tp`` for queries ``y``.

    docs/theory.md section 1, empirical score: ``l = -|y - a_mu|^2 / (2 delta)``,
    ``w = softmax_mu(l)``; ``denoised = sum_mu w_mu a_mu`` ``(m, d)`` float64,
    ``lse = logsumexp_mu(l)`` ``(m,)`` float64 (without ``-log n``) and ``pr = 1 / sum_mu
    w_mu^2`` ``(m,)`` float64, all on ``tp``'s device. ``y`` ``(m, d)`` is in ``tp``'s
    dtype and ``delta`` ``(m,)`` float64 on the same device, both validated by the caller;
    ``chunk`` bounds the query-point pairs of a block. Accuracy: the module docstring.
    ``counts``, if given, gets ``pairs``, ``exact`` (pairs recomputed from the differences)
    and ``dgemm`` (pairs whose inner products came from float64 products, float32 only).
    """
    torch = torch_module()
    m, d = y.shape
    n = tp.points.shape[0]
    tally = {"pairs": m * n, "exact": 0, "dgemm": 0}
    if m == 0:
        z = torch.zeros(0, dtype=torch.float64, device=y.device)
        if counts is not None:
            counts.update(tally)
        return z.reshape(0, d), z, z.clone()
    qb = min(m, _QB_MAX, max(1, chunk // min(n, chunk)))
    pc = min(n, max(1, chunk // max(qb, 1)))
    cfg = _Config(torch, tp, d, n, chunk)
    den = torch.empty((m, d), dtype=torch.float64, device=y.device)
    lse = torch.empty(m, dtype=torch.float64, device=y.device)
    pr = torch.empty(m, dtype=torch.float64, device=y.device)
    for q0 in range(0, m, qb):
        q1 = min(m, q0 + qb)
        out = _stream(torch, y[q0:q1], tp, delta[q0:q1], pc, cfg, tally)
        den[q0:q1], lse[q0:q1], pr[q0:q1] = out
    if counts is not None:
        counts.update(tally)
    return den, lse, pr


class _Config:
    """What every block of a call shares: tolerance, bounds, floors and batch sizes."""

    def __init__(self, torch, tp, d, n, chunk):
        self.f32 = tp.dtype == torch.float32
        name = "float32" if self.f32 else "float64"
        self.tol = _TOL[name]
        self.logrho = math.log(self.tol / n)
        u_w = _U32 if self.f32 else _U64
        # [False]: the working dtype; [True]: float64 products of float32 inputs
        self.consts = {
            False: _bound_consts(d, u_w, gemm_unit(torch, tp.dtype)),
            True: _bound_consts(d, _U64, _U64),
        }
        self.floor = {False: _FLOOR[name], True: _FLOOR["float64"]}
        self.step = max(1, chunk // max(1, d))  # pairs per batch of exact recomputation
        self.sparse_div = _SPARSE_DIV["cuda" if tp.device.type == "cuda" else "cpu"]
        self.wide_all = self.f32 and d < _WIDE_BELOW_D


class _Queries:
    """One block of queries: original float64 coordinates, centred ones in the working dtype
    (and float64), float64 norms and the scale ``s = 1 / (2 delta)``."""

    def __init__(self, torch, y, tp, delta):
        self.y64 = y.to(torch.float64)
        self.c64 = self.y64 - tp.centre
        self.centred = self.c64.to(tp.dtype)
        self.sq = (self.c64 * self.c64).sum(dim=1)
        self.norm = self.sq.sqrt()
        self.s = 0.5 / delta
        self.sq_w = self.sq.to(tp.dtype)
        self.s_w = self.s.to(tp.dtype)


class _Block:
    """One block of training points ``[p0, p1)``: centred points in the working dtype (and,
    on demand, in float64 from the float64 centring), squared norms, largest norm."""

    def __init__(self, torch, tp, p0, p1):
        self.torch, self.tp, self.p0, self.p1 = torch, tp, p0, p1
        self.a = tp.centred[p0:p1]
        self.sq_w = tp.sq_w[p0:p1]
        self.sq64 = tp.sq[p0:p1]
        self.amax = tp.norm[p0:p1].max()
        self._a64 = None

    @property
    def a64(self):
        if self._a64 is None and self.tp.centred64 is not None:
            self._a64 = self.tp.centred64[self.p0 : self.p1]
        if self._a64 is None:
            self._a64 = self.tp.points[self.p0 : self.p1].to(self.torch.float64) - self.tp.centre
        return self._a64


_FIELDS = ("mx", "low", "s1", "s2", "e1", "e2", "l1", "l2", "acc")


class _State:
    """The per-query state of the online log-sum-exp and of the error budget (float64):
    reference ``mx``, lower bound ``low`` of the largest logit, sums ``s1``, ``s2``,
    ``acc`` and the budget ``e1``, ``e2`` (error bounds of the kept weights), ``l1``,
    ``l2`` (lower bounds of ``s1``, ``s2``); ``heavy``: float32 rows on float64 products."""

    def __init__(self, torch, m, d, dev):
        f = {"dtype": torch.float64, "device": dev}
        self.mx = torch.full((m,), -math.inf, **f)
        self.low = torch.full((m,), -math.inf, **f)
        for k in ("s1", "s2", "e1", "e2", "l1", "l2"):
            setattr(self, k, torch.zeros(m, **f))
        self.acc = torch.zeros((m, d), **f)
        self.heavy = torch.zeros(m, dtype=torch.bool, device=dev)

    def take(self, rows) -> dict:
        return {k: getattr(self, k) if rows is None else getattr(self, k)[rows] for k in _FIELDS}

    def put(self, torch, rows, new: dict, old: dict, ok) -> None:
        for k in _FIELDS:
            v = new[k]
            if ok is not None:
                v = torch.where(ok if v.ndim == 1 else ok.unsqueeze(1), v, old[k])
            if rows is None:
                setattr(self, k, v)
            else:
                getattr(self, k)[rows] = v


def _stream(torch, y, tp, delta, pc, cfg, tally):
    """The online log-sum-exp of one block of queries over the whole training set."""
    m, d = y.shape
    n = tp.points.shape[0]
    q = _Queries(torch, y, tp, delta)
    st = _State(torch, m, d, y.device)
    st.heavy[:] = cfg.wide_all
    for p0, p1 in _point_blocks(n, pc, cfg.f32 and not cfg.wide_all):
        blk = _Block(torch, tp, p0, p1)
        if not cfg.f32:
            _group(torch, st, None, q, blk, False, cfg, tally)
            continue
        heavy = torch.nonzero(st.heavy).flatten()
        if heavy.numel() < m:
            light = None if heavy.numel() == 0 else torch.nonzero(~st.heavy).flatten()
            newly = _group(torch, st, light, q, blk, False, cfg, tally)
            if newly.numel():
                st.heavy[newly] = True
                heavy = torch.nonzero(st.heavy).flatten()
        if heavy.numel():
            tally["dgemm"] += heavy.numel() * (blk.p1 - blk.p0)
            _group(torch, st, None if heavy.numel() == m else heavy, q, blk, True, cfg, tally)
    return tp.centre + st.acc / st.s1.unsqueeze(1), st.mx + torch.log(st.s1), st.s1**2 / st.s2


def _point_blocks(n, pc, probe):
    """The blocks ``[p0, p1)`` of the training set: ``pc`` points each, after a first block
    of ``pc / 16`` points (at least 512) with ``probe`` (float32), so that the queries that
    need float64 products are found before a whole block's float32 work is spent on them."""
    p0 = 0
    if probe and n > 512:
        p0 = min(n, pc, max(512, pc // 16))
        yield 0, p0
    for q0 in range(p0, n, pc):
        yield q0, min(n, q0 + pc)


def _round_down(torch, x, dtype):
    """``x`` (float64) in ``dtype``, rounded towards -inf (so ``v >= result`` holds for
    every ``v >= x``)."""
    xd = x.to(dtype)
    if dtype == torch.float64:
        return xd
    below = torch.nextafter(xd, torch.full_like(xd, -math.inf))
    return torch.where(xd.to(torch.float64) > x, below, xd)


def _group(torch, st, rows, q, blk, wide, cfg, tally):
    """One block of points for the query rows ``rows`` (indices into the query block, or
    None for all): GEMM, weights, error budget, candidates, sums. ``wide``: float64
    products of float32 inputs. Returns the rows (indices into the query block) that must
    move to float64 products; their state is left as it was."""
    f64 = torch.float64
    sel = (lambda t: t) if rows is None else (lambda t: t[rows])
    if wide:
        yc, ysq, s_w, a, asq = sel(q.c64), sel(q.sq), sel(q.s), blk.a64, blk.sq64
    else:
        yc, ysq, s_w, a, asq = sel(q.centred), sel(q.sq_w), sel(q.s_w), blk.a, blk.sq_w
    s, norm = sel(q.s), sel(q.norm)
    dt = yc.dtype
    # l~ = -(|y|^2 + |a|^2 - 2 y.a) s, clamped at distance 0, in the working dtype
    lg = torch.addmm(asq.unsqueeze(0), yc, a.T, alpha=-2.0)
    lg.add_(ysq.unsqueeze(1)).clamp_min_(0.0).mul_(-s_w.unsqueeze(1))
    r, nb = lg.shape
    cg, cn = cfg.consts[wide]
    e = (cg * norm * blk.amax + cn * (norm + blk.amax) ** 2) * s
    old = st.take(rows)
    bm = lg.amax(dim=1).to(f64)
    low = torch.maximum(old["low"], bm - e)
    big = e > _EMAX
    ref = torch.maximum(old["mx"], bm)
    if dt != f64:  # the float32 weights' reference must be a float32 number
        ref = ref.to(dt).to(f64)
    cands = []  # (row within the group, point within the block, exact logit)
    if bool(big.any()):  # the per-pair rule; the kept pairs of these rows are dropped
        thr = torch.where(big, low + cfg.logrho - e, math.inf)
        idx = torch.nonzero(lg >= _round_down(torch, thr, dt).unsqueeze(1))
        r_i, j = idx[:, 0], idx[:, 1]
        lex = _exact_logits(torch, q, rows, r_i, blk, j, cfg)
        top = torch.full((r,), -math.inf, dtype=f64, device=lg.device)
        top.scatter_reduce_(0, r_i, lex, "amax")
        ref = torch.where(big, torch.maximum(old["mx"], top), ref)
        cands.append((r_i, j, lex))
    # big rows: an infinite reference gives them zero approximate weights
    w = lg.sub_(torch.where(big, math.inf, ref).to(dt).unsqueeze(1)).exp_()
    torch.nn.functional.threshold_(w, cfg.floor[wide], 0.0)
    b1 = w.sum(dim=1).to(f64)
    b2 = torch.linalg.vector_norm(w, dim=1).to(f64) ** 2
    sc = torch.exp(old["mx"] - ref)  # 0 on the first block (mx = -inf)
    ep1, ep2 = torch.expm1(e), torch.expm1(2.0 * e)
    lo1, lo2 = torch.exp(-e), torch.exp(-2.0 * e)
    room1 = (cfg.tol * (old["l1"] * sc + lo1 * b1) - old["e1"] * sc) / ep1
    room2 = (2.0 * cfg.tol * (old["l2"] * sc * sc + lo2 * b2) - old["e2"] * sc * sc) / ep2
    room1 = torch.where(ep1 > 0, room1, math.inf)
    room2 = torch.where(ep2 > 0, room2, math.inf)
    bad = torch.nonzero(~big & ((b1 > room1) | (b2 > room2))).flatten()
    k1, k2 = b1, b2
    ok = flagged = None
    if bad.numel():
        wb = w if bad.numel() == r else w[bad]
        mask = _candidates(torch, wb, room1[bad], room2[bad])
        cnt = mask.sum(dim=1)
        if not wide and cfg.f32:
            hv = cnt * _HEAVY > nb
            if bool(hv.any()):
                flagged = bad[hv]
                ok = torch.ones(r, dtype=torch.bool, device=lg.device)
                ok[flagged] = False
                mask[hv] = False
        idx = torch.nonzero(mask)
        r_i, j = bad[idx[:, 0]], idx[:, 1]
        v = wb[idx[:, 0], j].to(f64)
        k1 = b1.index_add(0, r_i, v, alpha=-1.0).clamp_min_(0.0)
        k2 = b2.index_add(0, r_i, v * v, alpha=-1.0).clamp_min_(0.0)
        w[r_i, j] = 0.0
        cands.append((r_i, j, _exact_logits(torch, q, rows, r_i, blk, j, cfg)))
    new = _sums(torch, w, a, cands, ref, sc, k1, k2, q, rows, blk, cfg, old, tally)
    spent = torch.where(big, 0.0, 1.0)
    new["e1"] = old["e1"] * sc + spent * ep1 * k1
    new["e2"] = old["e2"] * sc * sc + spent * ep2 * k2
    new["l1"] = new["l1"] + lo1 * k1
    new["l2"] = new["l2"] + lo2 * k2
    top = new.pop("top")
    new["low"] = torch.maximum(low, top)
    _raise_reference(torch, new, top)
    st.put(torch, rows, new, old, ok)
    if flagged is None:
        return bad[:0]
    return flagged if rows is None else rows[flagged]


def _candidates(torch, w, room1, room2):
    """Mask of the candidates of the rows ``w`` of a block whose weights do not fit: those
    at or above ``c0 = min(room1 / pc, sqrt(room2 / pc))`` (below it any number of weights
    fits), or where that makes more than ``pc / _FEW`` of them, at or above the cut of
    :func:`_budget_cut`."""
    nb = w.shape[1]
    c0 = torch.minimum(room1 / nb, torch.sqrt(room2.clamp_min(0.0) / nb)).clamp_min_(1e-290)
    tiny = torch.finfo(w.dtype).tiny
    thr = _round_down(torch, c0.clamp_min(tiny), w.dtype)
    mask = w >= thr.unsqueeze(1)
    many = torch.nonzero(mask.sum(dim=1) * _FEW > nb).flatten()
    if many.numel() == w.shape[0]:
        cut = _budget_cut(torch, w, room1, room2)
        return w >= _round_down(torch, cut.clamp_min(tiny), w.dtype).unsqueeze(1)
    if many.numel():
        wm = w[many]
        cut = _budget_cut(torch, wm, room1[many], room2[many])
        mask[many] = wm >= _round_down(torch, cut.clamp_min(tiny), w.dtype).unsqueeze(1)
    return mask


def _budget_cut(torch, w, room1, room2):
    """The lowest power of two at and above which the weights ``w`` ``(r, pc)`` must become
    candidates so that the kept ones sum to at most ``room1`` and their squares to at most
    ``room2`` (per row): weights below ``lo = 2^k0 <= c0`` fit whatever their number; the
    others go to a histogram by binary exponent (bin ``t`` holds ``[lo 2^(t-1), lo 2^t)``,
    the last one everything above), and the cut is ``lo 2^(c-1)`` for the largest ``c``
    whose bins below fit (as ``_compiled._budget_cut``)."""
    f64 = torch.float64
    r, nb = w.shape
    c0 = torch.minimum(room1 / nb, torch.sqrt(room2.clamp_min(0.0) / nb)).clamp_min_(1e-290)
    k0 = torch.floor(torch.log2(c0))
    _, ex = torch.frexp(w)  # w = f 2^ex, f in [1/2, 1): floor(log2 w) = ex - 1
    t = (ex.to(torch.int64) - k0.to(torch.int64).unsqueeze(1)).clamp_(0, _NBIN - 1)
    # bin sums in the weights' dtype: a bin's rounding moves the cut's kept mass by a
    # relative u pc at most, far inside the budget's margins
    hs = torch.zeros((r, _NBIN), dtype=w.dtype, device=w.device).scatter_add_(1, t, w)
    hs2 = torch.zeros((r, _NBIN), dtype=w.dtype, device=w.device).scatter_add_(1, t, w * w)
    c1, c2 = hs.to(f64).cumsum(dim=1), hs2.to(f64).cumsum(dim=1)
    fits = (c1 <= room1.unsqueeze(1)) & (c2 <= room2.unsqueeze(1))
    cut = fits[:, : _NBIN - 1].sum(dim=1).to(f64)  # the bins kept (monotone prefix)
    return torch.exp2(k0 + cut - 1.0)


def _exact_logits(torch, q, rows, r_i, blk, j, cfg):
    """``-|y - a|^2 s`` from the differences of the original coordinates in float64, for
    the pairs (group row ``r_i``, block point ``j``), in batches of ``cfg.step``."""
    g = r_i if rows is None else rows[r_i]
    out = torch.empty(g.shape[0], dtype=torch.float64, device=g.device)
    pts = blk.tp.points
    for k0 in range(0, g.shape[0], cfg.step):
        gk = g[k0 : k0 + cfg.step]
        diff = q.y64[gk] - pts[blk.p0 + j[k0 : k0 + cfg.step]].to(torch.float64)
        out[k0 : k0 + cfg.step] = -(diff * diff).sum(dim=1) * q.s[gk]
    return out


def _sums(torch, w, a, cands, ref, sc, k1, k2, q, rows, blk, cfg, old, tally):
    """The new sums of a group: the old ones rescaled to ``ref``, the kept weights ``w``
    (``W A`` dense, over the nonzero weights or not at all) and the exact candidates."""
    f64 = torch.float64
    r, d = w.shape[0], a.shape[1]
    new = {
        "mx": ref,
        "s1": old["s1"] * sc + k1,
        "s2": old["s2"] * sc * sc + k2,
        "acc": old["acc"] * sc.unsqueeze(1),
        "l1": old["l1"] * sc,
        "l2": old["l2"] * sc * sc,
    }
    acc = new["acc"]
    nnz = None
    if d >= _SPARSE_MIN_D:
        nnz = int(torch.count_nonzero(w))
    if nnz is None or nnz * cfg.sparse_div > w.numel():
        acc += (w @ a).to(f64)
    elif nnz:
        idx = torch.nonzero(w)
        for k0 in range(0, idx.shape[0], cfg.step):
            r_i, j = idx[k0 : k0 + cfg.step].unbind(dim=1)
            acc.index_add_(0, r_i, w[r_i, j].to(f64).unsqueeze(1) * a[j].to(f64))
    top = torch.full((r,), -math.inf, dtype=f64, device=w.device)
    for r_i, j, lex in cands:
        if r_i.numel() == 0:
            continue
        tally["exact"] += r_i.numel()
        wc = torch.exp(lex - ref[r_i])
        for key, val in (("s1", wc), ("s2", wc * wc), ("l1", wc), ("l2", wc * wc)):
            new[key].index_add_(0, r_i, val)
        for k0 in range(0, r_i.shape[0], cfg.step):
            rk, jk = r_i[k0 : k0 + cfg.step], j[k0 : k0 + cfg.step]
            a64 = blk.tp.points[blk.p0 + jk].to(f64) - blk.tp.centre
            acc.index_add_(0, rk, wc[k0 : k0 + cfg.step].unsqueeze(1) * a64)
        top.scatter_reduce_(0, r_i, lex, "amax")
    new["top"] = top
    return new


def _raise_reference(torch, new, top):
    """Make the largest exact logit ``top`` the reference where it is above it (the state
    follows: sums by ``e^(M - M')``, squares by its square)."""
    top = torch.maximum(new["mx"], top)
    f = torch.exp(new["mx"] - top)
    f2 = f * f
    for key in ("s1", "e1", "l1"):
        new[key] = new[key] * f
    for key in ("s2", "e2", "l2"):
        new[key] = new[key] * f2
    new["acc"] = new["acc"] * f.unsqueeze(1)
    new["mx"] = top
