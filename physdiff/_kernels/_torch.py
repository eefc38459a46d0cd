"""The empirical score in torch, on a GPU or the CPU: the same computation as
:func:`physdiff._kernels.empirical_stats` (the package docstring gives the formulas and the
accuracy argument), written as a few large tensor operations per block.

Imported only when asked for (torch stays optional). For queries ``Y`` ``(m, d)`` and a
training set ``A`` ``(n, d)``, both centred at the training mean ``c`` (translations leave
``|y - a|`` unchanged and shrink the norms the rounding bound below grows with), the work
runs over blocks of ``qb`` queries x ``pc`` points, ``qb pc <= chunk``:

* ``G = Y_b A_b^T`` by one GEMM in the working dtype (float32 or float64), logits
  ``l~ = -(|y|^2 + |a|^2 - 2 G) / (2 delta)``;
* online log-sum-exp over the blocks of points, state per query ``(M, S, S2, acc)`` in
  float64: a block raising the running maximum ``M`` to ``M'`` rescales ``S``, ``acc`` by
  ``exp(M - M')`` and ``S2`` by its square; then ``W = exp(l - M')``, ``S += sum W``,
  ``S2 += sum W^2`` and ``acc += W A_b`` (a second GEMM);
* at the end ``denoised = c + acc / S``, ``lse = M + log S``, ``pr = S^2 / S2``.

So nothing larger than a block (``qb x pc`` logits) is ever formed.

Accuracy (the rule of the numba kernel, physdiff._kernels): the part of a logit's error that
differs between the pairs of a query is bounded by

    e = (c_G |y| max|a| + c_N (|y| + max|a|)^2) / (2 delta),
    c_G = 2 k u_G + 8 u_W,   c_N = (k + 4) u + 8 u_W,   k = min(d, 8 sqrt(d)),

``u_G``, ``u_W`` the unit roundoffs of the GEMM and of the elementwise work, ``u = 2^-53``
(the float64 norms; ``8 u_W`` covers the centring, the sums and the rounding of a logit
stored in the working dtype). For a query with ``e > tol`` (1e-12 in float64, 2e-6 in
float32) the logits of its block are taken to float64 and every pair whose weight could
exceed ``rho = tol / n`` of the largest (``l~ + e >= low + log rho``, ``low`` a running
lower bound of the largest logit) is recomputed exactly from the differences ``y - a`` of
the original (uncentred) coordinates in float64. Pairs left out weigh less than ``rho``
of the largest, so kept weights are right to a factor ``exp(tol)`` and the rest sums below
``tol``. In float32 a query with more than 1/32 of a block's pairs as candidates (moderate
delta, many significant points) has that block's inner products redone in float64 (a
float64 GEMM on float64-centred coordinates), with the float64 bound, before its remaining
candidates are recomputed. Exact recomputation runs in batches of at most ``chunk`` numbers.
"""

from __future__ import annotations

import math

_U64 = 2.0**-53
_U32 = 2.0**-24
_TOL = {"float64": 1e-12, "float32": 2e-6}
_LAMBDA = 8.0  # probabilistic inner-product bound lambda sqrt(d) u (Higham & Mary 2019)
_HEAVY = 32  # float32: more than 1/_HEAVY of a block's pairs as candidates -> float64 GEMM
CHUNK_CPU = 1 << 22  # query-point pairs per block on the CPU
CHUNK_MAX = 1 << 27  # at most this many pairs per block on a GPU
_QB_MAX = 8192  # queries per block at most


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

    @property
    def device(self):
        return self.points.device

    @property
    def dtype(self):
        return self.points.dtype


def empirical_stats_torch(y, tp: TorchPoints, delta, *, chunk: int):
    """``(denoised, lse, pr)`` of the empirical measure on ``tp`` for queries ``y``.

    docs/theory.md section 1, empirical score: ``l = -|y - a_mu|^2 / (2 delta)``,
    ``w = softmax_mu(l)``; ``denoised = sum_mu w_mu a_mu`` ``(m, d)`` float64,
    ``lse = logsumexp_mu(l)`` ``(m,)`` float64 (without ``-log n``) and ``pr = 1 / sum_mu
    w_mu^2`` ``(m,)`` float64, all on ``tp``'s device. ``y`` ``(m, d)`` is in ``tp``'s
    dtype and ``delta`` ``(m,)`` float64 on the same device, both validated by the caller;
    ``chunk`` bounds the query-point pairs of a block. Accuracy: the module docstring.
    """
    torch = torch_module()
    m, d = y.shape
    n = tp.points.shape[0]
    if m == 0:
        z = torch.zeros(0, dtype=torch.float64, device=y.device)
        return z.reshape(0, d), z, z.clone()
    qb = min(m, _QB_MAX, max(1, chunk // min(n, chunk)))
    pc = min(n, max(1, chunk // max(qb, 1)))
    den = torch.empty((m, d), dtype=torch.float64, device=y.device)
    lse = torch.empty(m, dtype=torch.float64, device=y.device)
    pr = torch.empty(m, dtype=torch.float64, device=y.device)
    for q0 in range(0, m, qb):
        q1 = min(m, q0 + qb)
        out = _block(torch, y[q0:q1], tp, delta[q0:q1], pc, chunk)
        den[q0:q1], lse[q0:q1], pr[q0:q1] = out
    return den, lse, pr


class _Queries:
    """One block of queries: original float64 coordinates, centred ones in the working dtype
    (and float64 on demand), float64 norms and the scale ``1 / (2 delta)``."""

    def __init__(self, torch, y, tp, delta):
        self.y64 = y.to(torch.float64)
        self.c64 = self.y64 - tp.centre
        self.centred = self.c64.to(tp.dtype)
        self.sq = (self.c64 * self.c64).sum(dim=1)
        self.norm = self.sq.sqrt()
        self.s = 0.5 / delta
        self.sq_w = self.sq.to(tp.dtype)
        self.s_w = self.s.to(tp.dtype)


def _block(torch, y, tp, delta, pc, chunk):
    """The online log-sum-exp of one block of queries over the whole training set."""
    m, d = y.shape
    n = tp.points.shape[0]
    f32 = tp.dtype == torch.float32
    name = "float32" if f32 else "float64"
    tol = _TOL[name]
    logrho = math.log(tol / n)
    u_w = _U32 if f32 else _U64
    cg, cn = _bound_consts(d, u_w, u_w)
    q = _Queries(torch, y, tp, delta)
    dev = y.device
    mx = torch.full((m,), -math.inf, dtype=torch.float64, device=dev)
    low = torch.full((m,), -math.inf, dtype=torch.float64, device=dev)
    s1 = torch.zeros(m, dtype=torch.float64, device=dev)
    s2 = torch.zeros(m, dtype=torch.float64, device=dev)
    acc = torch.zeros((m, d), dtype=torch.float64, device=dev)
    for p0 in range(0, n, pc):
        p1 = min(n, p0 + pc)
        a_c = tp.centred[p0:p1]
        amax = tp.norm[p0:p1].max()
        # l~ = -(|y|^2 + |a|^2 - 2 y.a) s, clamped at distance 0, in the working dtype
        lg = torch.addmm(tp.sq_w[p0:p1].unsqueeze(0), q.centred, a_c.T, alpha=-2.0)
        lg.add_(q.sq_w.unsqueeze(1)).clamp_min_(0.0).mul_(-q.s_w.unsqueeze(1))
        e = (cg * q.norm * amax + cn * (q.norm + amax) ** 2) * q.s
        bm = lg.amax(dim=1).to(torch.float64)
        low = torch.maximum(low, bm - e)
        rows = torch.nonzero(e > tol).flatten()
        l64 = cand = None
        if rows.numel():
            l64, cand, heavy = _exact_rows(
                torch, lg, rows, q, tp, p0, p1, e, low, logrho, chunk, f32
            )
            bm[rows] = l64.amax(dim=1)
        new = torch.maximum(mx, bm)
        if f32:  # rows kept in float32 use a float32 maximum (the same in S and acc)
            rounded = new.to(torch.float32).to(torch.float64)
            if l64 is not None:
                rounded[rows] = new[rows]
            new = rounded
        sc = torch.exp(mx - new)  # 0 on the first block (mx = -inf)
        mx = new
        w = lg.sub_(new.to(tp.dtype).unsqueeze(1)).exp_()
        s1.mul_(sc)
        s2.mul_(sc * sc)
        acc.mul_(sc.unsqueeze(1))
        if l64 is not None:
            w[rows] = torch.exp(l64 - new[rows].unsqueeze(1)).to(tp.dtype)
            if f32:  # exact pairs and float64 rows leave the float32 sums for float64 ones
                _add_exact(torch, w, rows, cand, l64, new, tp, p0, chunk, (s1, s2, acc))
                if heavy is not None:
                    hr, a64 = rows[heavy[0]], heavy[1]
                    hw = torch.exp(l64[heavy[0]] - new[hr].unsqueeze(1))
                    w[hr] = 0.0
                    s1[hr] += hw.sum(dim=1)
                    s2[hr] += (hw * hw).sum(dim=1)
                    acc[hr] += hw @ a64
        s1 += w.sum(dim=1, dtype=torch.float64)
        s2 += torch.linalg.vector_norm(w, dim=1).to(torch.float64) ** 2
        acc += (w @ a_c).to(torch.float64)
    return tp.centre + acc / s1.unsqueeze(1), mx + torch.log(s1), s1 * s1 / s2


def _exact_rows(torch, lg, rows, q, tp, p0, p1, e, low, logrho, chunk, f32):
    """Float64 logits of the rows ``rows`` of the block ``lg``, with every pair that could
    weigh more than ``rho`` of the largest recomputed from the differences; also those
    pairs ``(k, 2)`` (row within ``rows``, point within the block) and, in float32, the
    rows moved to float64 products with the block's float64-centred points (or None)."""
    l64 = lg[rows].to(torch.float64)
    er = e[rows]
    thr = (low[rows] + logrho - er).unsqueeze(1)
    cand = l64 >= thr  # l~ + e >= low + log rho
    heavy_rows = None
    if f32:
        heavy = torch.nonzero(cand.sum(dim=1) * _HEAVY > (p1 - p0)).flatten()
        if heavy.numel():
            hr = rows[heavy]
            a64 = tp.points[p0:p1].to(torch.float64) - tp.centre
            an = (a64 * a64).sum(dim=1)
            g = q.c64[hr] @ a64.T
            lh = (an.unsqueeze(0) - 2.0 * g + q.sq[hr].unsqueeze(1)).clamp_min_(0.0)
            lh.mul_(-q.s[hr].unsqueeze(1))
            cg, cn = _bound_consts(q.y64.shape[1], _U64, _U64)
            amax = an.max().sqrt()
            eh = (cg * q.norm[hr] * amax + cn * (q.norm[hr] + amax) ** 2) * q.s[hr]
            l64[heavy] = lh
            cand[heavy] = lh >= (low[hr] + logrho - eh).unsqueeze(1)
            cand[heavy] &= (eh > _TOL["float32"]).unsqueeze(1)
            heavy_rows = (heavy, a64)
    idx = torch.nonzero(cand)  # (k, 2): row within rows, point within the block
    d = q.y64.shape[1]
    step = max(1, chunk // d)
    for k0 in range(0, idx.shape[0], step):
        r, j = idx[k0 : k0 + step].unbind(dim=1)
        diff = q.y64[rows[r]] - tp.points[p0 + j].to(torch.float64)
        l64[r, j] = -(diff * diff).sum(dim=1) * q.s[rows[r]]
    if heavy_rows is not None:  # their sums run in float64 over the whole row
        keep = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
        keep[heavy_rows[0]] = False
        idx = idx[keep[idx[:, 0]]]
    return l64, idx, heavy_rows


def _add_exact(torch, w, rows, idx, l64, new, tp, p0, chunk, sums):
    """Move the recomputed pairs ``idx`` of the rows ``rows`` out of the float32 weights
    ``w`` and add them to the float64 sums ``(S, S2, acc)`` with float64 weights and
    float64-centred points."""
    s1, s2, acc = sums
    d = acc.shape[1]
    step = max(1, chunk // d)
    for k0 in range(0, idx.shape[0], step):
        r, j = idx[k0 : k0 + step].unbind(dim=1)
        g = rows[r]
        wc = torch.exp(l64[r, j] - new[g])
        w[g, j] = 0.0
        s1.index_add_(0, g, wc)
        s2.index_add_(0, g, wc * wc)
        a64 = tp.points[p0 + j].to(torch.float64) - tp.centre
        acc.index_add_(0, g, wc.unsqueeze(1) * a64)
