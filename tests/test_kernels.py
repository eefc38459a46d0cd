"""The empirical-score kernel (physdiff._kernels) against its numpy twin and closed forms.

docs/theory.md section 1, empirical score: l = -|y - a_mu|^2 / (2 delta), w = softmax(l),
denoised = sum w a, lse = logsumexp(l), pr = 1 / sum w^2.

Error measures: ``denoised`` is a convex combination of the training points, so its
error is measured relative to their size (or their spread where they sit far from the
origin); ``lse`` relative to ``max(1, |lse|)``; ``pr`` relative.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from physdiff import _kernels as K
from physdiff._kernels import _compiled as C
from physdiff._kernels import _paths as P
from tests._checks import adversarial_kernel_case, kernel_errors, twin_cases

TOL = {np.float64: 1e-10, np.float32: 1e-4}
DELTAS = np.array([1e-8, 1e-4, 1.0, 1e8])


_errors = kernel_errors


def _textbook(y, points, delta):
    """Brute force in float64: explicit pairwise distances, scipy's logsumexp."""
    y = np.asarray(y, np.float64)
    a = np.asarray(points, np.float64)
    logits = np.array(
        [[-np.sum((yi - aj) ** 2) / (2 * di) for aj in a] for yi, di in zip(y, delta, strict=True)]
    )
    lse = logsumexp(logits, axis=1)
    w = np.exp(logits - lse[:, None])
    return w @ a, lse, 1.0 / np.sum(w**2, axis=1)


def _queries(rng, points, m, kind):
    n, d = points.shape
    if kind == "near":  # noisy training points: the weights concentrate at small delta
        return points[rng.integers(0, n, m)] + 0.3 * rng.standard_normal((m, d))
    if kind == "far":  # far from every point: a naive softmax underflows to 0/0
        return 1e3 * np.ones((m, d)) + rng.standard_normal((m, d))
    return 2.0 * rng.standard_normal((m, d))


# -- the kernel against its numpy twin -----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "d, n, m",
    [
        (1, 1, 9),
        (1, 3000, 40),
        (2, 7, 5),
        (2, 20000, 6),
        (3, 2500, 600),
        (17, 1, 3),
        (17, 3000, 50),
        (64, 1, 4),
        (64, 5000, 70),
        (300, 7, 9),
        (300, 2500, 530),
    ],
)
def test_kernel_matches_numpy_twin(dtype, d, n, m):
    for kind, points, y, delta in twin_cases(_queries, DELTAS, d, n, m, dtype):
        got = K.empirical_stats(y, points, delta)
        ref = K.empirical_stats_numpy(y, points, delta)
        assert got[0].dtype == dtype and got[0].shape == (m, d)
        assert got[1].dtype == np.float64 and got[2].dtype == np.float64
        assert all(np.all(np.isfinite(v)) for v in got)
        errs = _errors(got, ref, points)
        assert max(errs) < TOL[dtype], (kind, errs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [2, 40, 300])
@pytest.mark.parametrize("delta", DELTAS)
def test_each_delta_including_far_queries(dtype, d, delta):
    rng = np.random.default_rng(d)
    points = rng.standard_normal((3000, d)).astype(dtype)
    y = np.concatenate([_queries(rng, points, 8, k) for k in ("near", "far", "random")])
    y = y.astype(dtype)
    dl = np.full(len(y), delta)
    errs = _errors(K.empirical_stats(y, points, dl), K.empirical_stats_numpy(y, points, dl), points)
    assert max(errs) < TOL[dtype], errs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [3, 300])
def test_offset_data_against_its_spread(dtype, d):
    # points far from the origin: |y|^2 + |a|^2 - 2 y.a cancels badly; the kernel must
    # recompute the pairs that matter, so the error is small even against the spread
    rng = np.random.default_rng(7)
    points = (50.0 + rng.standard_normal((2500, d))).astype(dtype)
    y = (points[rng.integers(0, 2500, 40)] + 0.5 * rng.standard_normal((40, d))).astype(dtype)
    for delta in (1e-3, 1.0, 30.0):
        dl = np.full(40, delta)
        errs = _errors(
            K.empirical_stats(y, points, dl),
            K.empirical_stats_numpy(y, points, dl),
            points,
            scale=1.0,
        )
        assert max(errs) < TOL[dtype], (delta, errs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [2, 300])
def test_near_duplicate_points_at_tiny_delta(dtype, d):
    # pairs of training points 1e-3 apart, queries between them, delta so small that the
    # weight splits within each pair: the norms-plus-product distances cannot tell the two
    # apart (their error is far above the gap), the exact recomputation must
    rng = np.random.default_rng(8)
    eps = 1e-3
    base = rng.standard_normal((400, d))
    v = rng.standard_normal((400, d))
    points = np.concatenate([base + 0.5 * eps * v, base - 0.5 * eps * v]).astype(dtype)
    pick = rng.integers(0, 400, 30)
    y = base[pick] + 0.3 * eps * rng.standard_normal((30, d))
    y = y.astype(dtype)
    delta = np.full(30, 0.5 * eps**2 * np.sqrt(d))
    ref = K.empirical_stats_numpy(y, points, delta)
    assert np.median(ref[2]) > 1.05  # the weight really splits between the pair
    errs = _errors(K.empirical_stats(y, points, delta), ref, points, scale=eps)
    assert max(errs) < TOL[dtype], errs


@pytest.mark.parametrize("fallback", [True, False])
def test_float32_dgemm_fallback_and_exact_recomputation(monkeypatch, fallback):
    # moderate delta: many points matter and sgemm's inner products are too coarse; the
    # kernel either redoes the queries in dgemm (as soon as their candidates overflow a
    # buffer made small here) or, with the fallback off, recomputes every candidate exactly
    monkeypatch.setattr(P, "_FALLBACK", fallback)
    monkeypatch.setattr(P, "_CANDIDATES", 16)
    rng = np.random.default_rng(3)
    points = rng.standard_normal((4500, 300)).astype(np.float32)
    y = _queries(rng, points, 37, "random").astype(np.float32)
    delta = np.geomspace(3.0, 300.0, 37)
    errs = _errors(
        K.empirical_stats(y, points, delta), K.empirical_stats_numpy(y, points, delta), points
    )
    assert max(errs) < 1e-5, errs


def test_float32_recomputes_few_pairs_on_standard_data():
    # standard normal data, queries near training points at delta = 1 (the benchmark's
    # setting): pairs are recomputed only as far as the error budget needs (the kept
    # weights' error bounds sum below tol of the mass); a per-pair cut at tol / n of the
    # largest weight redid half the pairs of this case in dgemm (52%)
    rng = np.random.default_rng(12)
    for d, n in ((64, 10_000), (256, 4000), (784, 3000)):
        points = rng.standard_normal((n, d))
        y = points[rng.integers(0, n, 64)] + rng.standard_normal((64, d))
        c = P.recompute_counts(y.astype(np.float32), points.astype(np.float32), 1.0)
        assert c["pairs"] == 64 * n
        assert c["exact_fraction"] + c["dgemm_fraction"] < 0.05, (d, n, c)
        c64 = P.recompute_counts(y, points, 1.0)
        assert c64["dgemm"] == 0 and c64["exact_fraction"] < 0.01, (d, n, c64)
    # the direct path (d < 12) computes every pair from the differences
    assert P.recompute_counts(y[:, :3], points[:, :3], 1.0)["exact"] == 0


def test_float32_budget_at_small_dimension():
    # d = 32, delta = 1: the sgemm error bound (~1e-4) is far above tol (2e-6) and the
    # weights spread over many points; the error budget recomputes what the mass needs
    # (under 1% of the pairs), and the result keeps the float32 accuracy
    rng = np.random.default_rng(21)
    n, d, m = 10_000, 32, 96
    points = rng.standard_normal((n, d)).astype(np.float32)
    y = (points[rng.integers(0, n, m)] + rng.standard_normal((m, d))).astype(np.float32)
    c = P.recompute_counts(y, points, 1.0)
    assert c["dgemm"] == 0 and 0 < c["exact_fraction"] < 0.03, c
    ref = K.empirical_stats_numpy(y, points, np.ones(m))
    errs = _errors(K.empirical_stats(y, points, np.ones(m)), ref, points)
    assert max(errs) < 1e-5, errs


def test_float32_below_d32_takes_the_float64_path():
    # d = 16: sgemm is too coarse for the pairs that matter; the float32 inputs run the
    # float64 path (every pair counted as dgemm) and come back in float32
    rng = np.random.default_rng(22)
    points = rng.standard_normal((3000, 16))
    y = points[rng.integers(0, 3000, 40)] + rng.standard_normal((40, 16))
    p32, y32 = points.astype(np.float32), y.astype(np.float32)
    got = K.empirical_stats(y32, p32, 1.0)
    want = K.empirical_stats(y32.astype(np.float64), p32.astype(np.float64), 1.0)
    assert got[0].dtype == np.float32
    np.testing.assert_array_equal(got[0], want[0].astype(np.float32))
    np.testing.assert_array_equal(got[2], want[2])
    assert P.recompute_counts(y32, p32, 1.0)["dgemm_fraction"] == 1.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kept_approximate_weights_on_adversarial_data(dtype):
    # large norms and delta from 0.03 to 300: the logit error bound e runs from far below
    # to far above 1, so pairs are kept with approximate weights under the budget, cut by
    # guess and by histogram, and chosen by the per-pair rule (e > 16); near-duplicate
    # points put two nearly equal weights at the top
    points, y, delta = adversarial_kernel_case(dtype)
    ref = K.empirical_stats_numpy(y, points, delta)
    errs = _errors(K.empirical_stats(y, points, delta), ref, points, scale=1.0)
    assert max(errs) < TOL[dtype], errs


def test_sq_norms_argument_and_scalar_delta():
    rng = np.random.default_rng(4)
    points = rng.standard_normal((700, 50))
    y = rng.standard_normal((20, 50))
    a = K.empirical_stats(y, points, 2.0)
    b = K.empirical_stats(y, points, np.full(20, 2.0), sq_norms=K.squared_norms(points))
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_allclose(K.squared_norms(points), np.sum(points**2, axis=1), rtol=1e-14)
    with pytest.raises(ValueError, match="sq_norms"):
        K.empirical_stats(y, points, 2.0, sq_norms=np.ones(3))


def test_concurrent_calls_and_fork(monkeypatch):
    # the kernels share one thread pool: concurrent callers and forked children still work
    # (problems this small run serially unless told otherwise)
    monkeypatch.setattr(P, "_GEMM_PAR_MIN_PAIRS", 0)
    rng = np.random.default_rng(6)
    points = rng.standard_normal((3000, 30))
    ys = [rng.standard_normal((300, 30)) for _ in range(4)]
    ref = [K.empirical_stats(y, points, 1.0)[0] for y in ys]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda y: K.empirical_stats(y, points, 1.0)[0], ys))
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g, r)
    # float32 with queries moved to dgemm: still independent of the task timing
    p32 = rng.standard_normal((4500, 300)).astype(np.float32)
    y32 = rng.standard_normal((40, 300)).astype(np.float32)
    first = K.empirical_stats(y32, p32, 30.0)
    for _ in range(2):
        for u, v in zip(K.empirical_stats(y32, p32, 30.0), first, strict=True):
            np.testing.assert_array_equal(u, v)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=lambda: q.put(K.empirical_stats(ys[0], points, 1.0)[0]))
    proc.start()
    child = q.get(timeout=30)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    np.testing.assert_array_equal(child, ref[0])


def test_empty_sets():
    with pytest.raises(ValueError, match="at least one"):
        K.empirical_stats(np.zeros((3, 2)), np.zeros((0, 2)), 1.0)
    den, lse, pr = K.empirical_stats(np.zeros((0, 4)), np.ones((5, 4)), np.ones(0))
    assert den.shape == (0, 4) and lse.shape == (0,) and pr.shape == (0,)
    den, lse, pr = K.empirical_stats(np.zeros((2, 0)), np.ones((5, 0)), np.ones(2))
    assert den.shape == (2, 0) and np.allclose(lse, np.log(5)) and np.allclose(pr, 5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.integers(1, 40),
    n=st.integers(1, 300),
    m=st.integers(1, 12),
    log_delta=st.floats(-8, 8),
    shift=st.floats(-100, 100),
    f32=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_kernel_matches_twin_property(d, n, m, log_delta, shift, f32, seed):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    points = (shift + rng.standard_normal((n, d))).astype(dtype)
    y = (shift + 1.5 * rng.standard_normal((m, d))).astype(dtype)
    delta = 10.0 ** (log_delta + rng.uniform(-1, 1, m))
    got = K.empirical_stats(y, points, delta)
    ref = K.empirical_stats_numpy(y, points, delta)
    errs = _errors(got, ref, points)
    assert max(errs) < TOL[dtype], errs
    assert np.all(got[2] >= 1 - 1e-12) and np.all(got[2] <= n * (1 + 1e-12))


# -- robustness: where a naive softmax fails --------------------------------------------------


@pytest.mark.parametrize("d", [2, 100])
def test_naive_softmax_is_nan_where_the_kernel_is_right(d):
    rng = np.random.default_rng(5)
    points = rng.standard_normal((500, d))
    y = 1e3 * np.ones((4, d)) + rng.standard_normal((4, d))
    delta = np.full(4, 1e-4)
    logits = -np.sum((y[:, None, :] - points[None]) ** 2, axis=-1) / (2 * delta[:, None])
    with np.errstate(all="ignore"):
        w = np.exp(logits)
        naive = (w @ points) / w.sum(axis=1, keepdims=True)
    assert np.all(np.isnan(naive))
    den, lse, pr = K.empirical_stats(y, points, delta)
    nearest = np.argmin(np.sum((y[:, None, :] - points[None]) ** 2, axis=-1), axis=1)
    np.testing.assert_allclose(den, points[nearest], rtol=0, atol=1e-12)
    np.testing.assert_allclose(pr, 1.0)
    np.testing.assert_allclose(lse, logits.max(axis=1), rtol=1e-14)
    assert np.all(np.isfinite(lse)) and np.all(lse < -1e9)


# -- the numpy twin against the textbook formula and closed forms ---------------------------


@pytest.mark.parametrize("d, n, m", [(1, 4, 3), (3, 25, 6), (20, 40, 5)])
def test_numpy_twin_against_textbook(d, n, m):
    rng = np.random.default_rng(d * n)
    points = rng.standard_normal((n, d))
    y = 1.5 * rng.standard_normal((m, d))
    delta = 10.0 ** rng.uniform(-1, 1, m)
    ref = _textbook(y, points, delta)
    got = K.empirical_stats_numpy(y, points, delta)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)
    # chunking (one query at a time, a few points at a time) changes nothing
    tiny = K.empirical_stats_numpy(y, points, delta, max_elems=7)
    for g, r in zip(tiny, ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)
    w = K.empirical_weights(y, points, delta)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(w @ points, ref[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(1.0 / np.sum(w**2, axis=1), ref[2], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [1, 5, 60])
def test_one_training_point(dtype, d):
    rng = np.random.default_rng(d)
    point = rng.standard_normal((1, d)).astype(dtype)
    y = (3 * rng.standard_normal((6, d))).astype(dtype)
    delta = np.geomspace(1e-8, 1e8, 6)
    den, lse, pr = K.empirical_stats(y, point, delta)
    np.testing.assert_array_equal(den, np.repeat(point, 6, axis=0))
    np.testing.assert_array_equal(pr, 1.0)
    dist = np.sum((y.astype(np.float64) - point.astype(np.float64)) ** 2, axis=1)
    # the logits are right to ~1e-12 (float64) or ~1e-6 (float32 inner products), absolute
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(lse, -dist / (2 * delta), rtol=tol, atol=tol)


@settings(max_examples=30, deadline=None)
@given(
    d=st.sampled_from([1, 3, 40]),
    mu=st.floats(0.1, 10.0),
    y1=st.floats(-20.0, 20.0),
    log_delta=st.floats(-3, 3),
)
def test_two_symmetric_points_give_tanh(d, mu, y1, log_delta):
    # points +-mu e_1: E[x0 | y]_1 = mu tanh(mu y_1 / delta), other components 0
    delta = 10.0**log_delta
    points = np.zeros((2, d))
    points[0, 0], points[1, 0] = mu, -mu
    y = np.zeros((1, d))
    y[0, 0] = y1
    if d > 1:
        y[0, 1:] = np.linspace(-1, 1, d - 1)
    den, lse, pr = K.empirical_stats(y, points, np.array([delta]))
    t = np.tanh(mu * y1 / delta)
    np.testing.assert_allclose(den[0, 0], mu * t, rtol=1e-12, atol=1e-12 * mu)
    np.testing.assert_array_equal(den[0, 1:], 0.0)
    # w = (1 +- t)/2, so pr = 2 / (1 + t^2)
    np.testing.assert_allclose(pr[0], 2.0 / (1.0 + t * t), rtol=1e-12)
    dist = np.sum((y - points) ** 2, axis=1)
    np.testing.assert_allclose(lse[0], logsumexp(-dist / (2 * delta)), rtol=1e-13, atol=1e-13)


# -- building blocks ----------------------------------------------------------------------------


def test_polynomial_exp_is_accurate_and_flushes_to_zero():
    C._jit()
    x = np.concatenate([-np.geomspace(1e-12, 800.0, 20001), [0.0, -349.99, -350.01]])
    out = np.empty_like(x)
    C._exp_into(x, x.size, 0.0, C._FLOOR64, out, False)
    keep = x >= C._FLOOR64
    np.testing.assert_allclose(out[keep], np.exp(x[keep]), rtol=1e-15)
    assert np.all(out[~keep] == 0.0)
    assert np.all((out == 0.0) | (out >= np.finfo(np.float64).tiny))  # no subnormal weights
    C._exp_into(x + 5.0, x.size, 5.0, C._FLOOR32, out, True)  # the shift is subtracted
    assert np.all(out[x < -87.0] == 0.0)
    assert np.all(out[x >= -87.0] >= np.finfo(np.float32).tiny)
    keep = x >= -87.0
    np.testing.assert_allclose(out[keep], np.exp(x[keep]), rtol=1e-8)  # short: degree 7


def test_import_compiles_nothing():
    code = "import sys, physdiff._kernels; print('numba' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_serial_and_pooled_gemm_paths_agree(monkeypatch, dtype):
    # small problems stream serially (BLAS's own threads) in large query blocks, larger ones
    # (many pairs, or a training set of more than _GEMM_PAR_MIN_POINTS numbers) run tasks of
    # _GEMM_QB queries on the pool: every path meets the twin's tolerance
    rng = np.random.default_rng(11)
    points = rng.standard_normal((1000, 40)).astype(dtype)
    y = _queries(rng, points, 300, "near").astype(dtype)
    delta = DELTAS[rng.integers(0, 4, 300)]
    ref = K.empirical_stats_numpy(y, points, delta)
    blocks: list[int] = []
    task = P._gemm_task

    def spy(p, yb, *args):
        blocks.append(yb.shape[0])
        task(p, yb, *args)

    monkeypatch.setattr(P, "_gemm_task", spy)
    pooled = P._NUM_THREADS > 1 and K._BLAS.controllable()
    for min_pairs, min_points, serial in (
        (1 << 60, 1 << 60, True),
        (0, 1 << 60, not pooled),
        (1 << 60, 0, not pooled),
    ):
        monkeypatch.setattr(P, "_GEMM_PAR_MIN_PAIRS", min_pairs)
        monkeypatch.setattr(P, "_GEMM_PAR_MIN_POINTS", min_points)
        blocks.clear()
        errs = _errors(K.empirical_stats(y, points, delta), ref, points)
        assert max(errs) < TOL[dtype], (min_pairs, min_points, errs)
        assert blocks == [300] if serial else max(blocks) <= P._GEMM_QB, blocks
