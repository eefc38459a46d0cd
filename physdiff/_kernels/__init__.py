"""Private numba kernels, array-in array-out, each with a plain numpy twin (docs/design.md).

Modules: :mod:`._compiled` (the numba kernels, compiled on first use), :mod:`._paths`
(the direct and matrix-product drivers), :mod:`._threads` (the thread pool and the BLAS
thread control), :mod:`._numpy` (the numpy twins) and :mod:`._torch` (the same
computation in torch, on a GPU or the CPU; imported only when asked for).

The empirical (memorising) score
--------------------------------
For a training set ``A = {a_mu}`` ``(n, d)`` and queries ``y_i`` ``(m, d)`` with a
noise-to-signal variance ``delta_i > 0`` each, in the variance-exploding frame
``y = x0 + sqrt(delta) z`` (docs/theory.md section 1, empirical score)::

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
reaches a multiply (subnormals slow a matrix product 10-30x, docs/design.md): ``exp(l - M) <
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
norms (docs/design.md: 1e-3 relative error in float32 at d = 2, delta = 1e-4), and a logit
error ``e`` multiplies a weight by ``exp(e)``. Errors common to all pairs of a query
(the rounding of ``|y|^2``) cancel in the softmax; the kernel bounds the rest, for every
pair of a block, by::

    e = (c_G |y| max|a| + c_N max|a|^2 + 4 u |y|^2) / (2 delta),
    c_G = 2 k u_G + 4 u,   c_N = (k + 4) u,   k = min(d, 8 sqrt(d)),

``u = 2^-53`` and ``u_G`` the unit roundoff of the GEMM: ``k u |y| |a|`` bounds the error
of an inner product (``d u`` deterministically; ``8 sqrt(d) u`` with probability above
``1 - 2 e^-32`` under the model of Higham and Mary, SIAM J. Sci. Comput. 2019), the rest
covers the float64 norms and the sum. A kept pair's weight ``v = e^l~`` is then off by at
most ``v (e^e - 1)``, and its true weight is at least ``v e^-e``. Each query keeps an
*error budget*: the sum ``E`` of these bounds over the pairs kept with approximate
weights, and ``L``, the sum of ``v e^-e`` over every pair seen (a lower bound of the final
``S``); the same for the squares (``E2``, ``L2``), with twice the tolerance. The rule is
``E <= tol L`` and ``E2 <= 2 tol L2`` after every block (``tol`` = 1e-11 for float64
inputs, 2e-6 for float32), so ``S``, ``denoised`` (relative to the size of the points) and
``lse`` are right to ``tol`` and ``pr`` to about ``4 tol``, summed over chunks alike. When
a block does not fit, its largest weights become *candidates*: first the query's last cut
(or, on its first such block, the per-pair cut ``l~ + e >= low + log(tol / n) - log(1 -
e^-e)``, ``low`` a running lower bound of the largest logit) if it fits and makes few
candidates, else the lowest power of two that a histogram of the block's weights by
binary exponent allows (``_compiled._budget_cut``). A budget in place of a per-pair cut
of ``tol / n`` of the largest weight recomputes what the *mass* needs: on unit-variance
data at d = 16, delta = 1, n = 1e4 in float32, 2% of the pairs against 20%. Where ``e >
16`` (tiny delta) the weights say nothing and the per-pair cut is used alone (each kept
pair below ``tol / n`` of the largest). A candidate leaves the block's weights and waits
in a per-query buffer (``_CANDIDATES`` pairs), recomputed exactly from the differences
with float64 accumulators (then added to the state by the online rule) when the buffer
is full and at the end of the stream. At small ``delta`` only the nearest points are
recomputed (the weights concentrate on them); at large ``delta`` ``e < tol`` and nothing
is. Logits carry in any case the rounding ``~u |l|`` of any direct evaluation, as in the
numpy twin.

Where the weights concentrate (few nonzero once the candidates leave and the floor has
flushed the rest: small ``delta`` or large ``d``), ``W A`` runs over the nonzero weights
alone (``_compiled._sparse_add``, when about 1% of them or fewer are left), and not at
all when none is left: at d = 784 and 3072, n = 1000, delta = 1 this halves the work.

In float32 below d = 32 (``_paths._F32_GEMM_MIN_D``) the inner products of sgemm are too
coarse for most of the pairs that matter at moderate delta (at d = 16, delta = 1 the
budget would recompute or move to dgemm a large share of them, and the float32 path ran
2-4x slower than float64): the inputs are copied to float64 and take the float64 path,
and the result is returned in float32. Above, the inner products come from sgemm, whose
bound is ``2^29`` times larger:
accurate enough only where the weights concentrate (few candidates) or ``delta`` is large
(``e < tol``). A query with more than 1/16 of a block's pairs as candidates (moderate
``delta`` and small ``d``, where the inner-product error is large against the spread of
the logits: at delta = 1 on unit-variance data about 10% of the queries at d = 16, none
at d >= 64; ``_paths.recompute_counts``) has its inner products
redone, for the rest of the stream, in dgemm on float64 copies
of the blocks (exact products of float32 numbers, float64 sums). The weighted sum ``W A``
stays in sgemm with float32 weights (relative error of order ``sqrt(2048) u_32`` per
block, float64 across blocks). There float32 is at most 4/3 faster than float64.
"""

from __future__ import annotations

from ._numpy import empirical_stats_numpy, empirical_weights
from ._paths import empirical_stats, squared_norms
from ._threads import _BLAS as _BLAS  # geometry limits BLAS threads with it

__all__ = ["empirical_stats", "empirical_stats_numpy", "empirical_weights", "squared_norms"]
