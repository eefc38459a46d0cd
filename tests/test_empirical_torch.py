"""The torch path of the empirical score (physdiff._kernels._torch, Empirical on torch)
against the numpy twin, on CPU torch.

docs/theory.md section 1, empirical score: l = -|y - a_mu|^2 / (2 delta), w = softmax(l),
denoised = sum w a, lse = logsumexp(l), pr = 1 / sum w^2. Error measures as in
tests/test_kernels.py: ``denoised`` relative to the size of the points (or their spread),
``lse`` relative to ``max(1, |lse|)``, ``pr`` relative. Bounds: 1e-12 in float64, 1e-4 in
float32 (the float32 reference is the float64 computation on the float32 numbers).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from physdiff import _kernels as K
from physdiff.ensembles import Empirical
from physdiff.errors import DomainError, InputError, ShapeError
from tests._checks import adversarial_kernel_case, kernel_errors, twin_cases

torch = pytest.importorskip("torch")
from physdiff._kernels import _torch as T  # noqa: E402

TOL = {np.float64: 1e-12, np.float32: 1e-4}
DELTAS = np.array([1e-8, 1e-4, 1.0, 1e8])


_errors = kernel_errors


def _queries(rng, points, m, kind):
    n, d = points.shape
    if kind == "near":
        return points[rng.integers(0, n, m)] + 0.3 * rng.standard_normal((m, d))
    if kind == "far":
        return 1e3 * np.ones((m, d)) + rng.standard_normal((m, d))
    return 2.0 * rng.standard_normal((m, d))


def _stats(points, y, delta, chunk=1 << 14):
    emp = Empirical(torch.from_numpy(points), chunk=chunk)
    return emp.stats(torch.from_numpy(y), torch.from_numpy(delta))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d, n, m", [(1, 3000, 40), (2, 7, 5), (17, 3000, 50), (300, 1200, 60)])
def test_torch_matches_numpy_twin(dtype, d, n, m):
    for kind, points, y, delta in twin_cases(_queries, DELTAS, d, n, m, dtype):
        got = _stats(points, y, delta)
        assert got[0].dtype == (torch.float32 if dtype == np.float32 else torch.float64)
        assert got[1].dtype == torch.float64 and got[2].dtype == torch.float64
        assert all(bool(torch.isfinite(v).all()) for v in got)
        errs = _errors(got, K.empirical_stats_numpy(y, points, delta), points)
        assert max(errs) < TOL[dtype], (kind, errs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_offset_data_against_its_spread(dtype):
    # points far from the origin: the norm expansion cancels; centring and the exact
    # recomputation keep the error small against the spread (scale 1), not the size (50)
    rng = np.random.default_rng(7)
    points = (50.0 + rng.standard_normal((1500, 300))).astype(dtype)
    y = (points[rng.integers(0, 1500, 40)] + 0.5 * rng.standard_normal((40, 300))).astype(dtype)
    for delta in (1e-3, 1.0, 30.0):
        dl = np.full(40, delta)
        ref = K.empirical_stats_numpy(y, points, dl)
        errs = _errors(_stats(points, y, dl), ref, points, scale=1.0)
        assert max(errs) < TOL[dtype], (delta, errs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_near_duplicate_points_at_tiny_delta(dtype):
    # pairs 1e-3 apart and a delta at which the weight splits within each pair: only the
    # exact recomputation from the differences can tell the two apart. Against the pair's
    # gap; float64 to 1e-10 as the numba kernel (the logits themselves carry u |l| ~ 1e-11).
    # The kernel's float64 denoiser against the twin on float64 copies (both round to
    # float32 for float32 data, an error of u_32 |a| ~ 2e-4 eps here)
    rng = np.random.default_rng(8)
    eps, d = 1e-3, 100
    base = rng.standard_normal((400, d))
    v = rng.standard_normal((400, d))
    points = np.concatenate([base + 0.5 * eps * v, base - 0.5 * eps * v]).astype(dtype)
    y = (base[rng.integers(0, 400, 30)] + 0.3 * eps * rng.standard_normal((30, d))).astype(dtype)
    delta = np.full(30, 0.5 * eps**2 * np.sqrt(d))
    ref = K.empirical_stats_numpy(y.astype(np.float64), points.astype(np.float64), delta)
    assert np.median(ref[2]) > 1.05  # the weight really splits between the pair
    tp = T.TorchPoints(torch.from_numpy(points))
    got = T.empirical_stats_torch(torch.from_numpy(y), tp, torch.from_numpy(delta), chunk=5000)
    assert got[0].dtype == torch.float64
    errs = _errors(got, ref, points, scale=eps)
    assert max(errs) < (1e-10 if dtype == np.float64 else 1e-4), errs


def _counted(points, y, delta, chunk=1 << 22):
    """The torch kernel's ``(denoised, lse, pr)`` and its recomputation counts."""
    counts: dict = {}
    tp = T.TorchPoints(torch.from_numpy(points))
    yt, dt = torch.from_numpy(y), torch.from_numpy(np.broadcast_to(delta, (y.shape[0],)).copy())
    return T.empirical_stats_torch(yt, tp, dt, chunk=chunk, counts=counts), counts


def test_float32_moderate_delta_takes_float64_products():
    # many significant points and sgemm too coarse: the heavy rows go to a float64 GEMM
    rng = np.random.default_rng(3)
    points = rng.standard_normal((4500, 300)).astype(np.float32)
    y = (2.0 * rng.standard_normal((37, 300))).astype(np.float32)
    delta = np.geomspace(3.0, 300.0, 37)
    got, counts = _counted(points, y, delta)
    assert counts["dgemm"] > counts["pairs"] // 2, counts
    errs = _errors(got, K.empirical_stats_numpy(y, points, delta), points)
    assert max(errs) < 1e-5, errs


def test_budget_recomputes_few_pairs_on_standard_data():
    # the benchmark's setting (standard normal data, queries near training points, delta =
    # 1): the error budget recomputes what the mass needs, 0.1-1% of the pairs in float32
    # (a per-pair cut at tol / n of the largest weight took about half of them to float64
    # products at d = 64), and float64 products for float32 rows only where sgemm is too
    # coarse for the spread of the weights (d = 32: 1.6%)
    rng = np.random.default_rng(3)
    for d, n in ((32, 8000), (64, 10_000), (256, 4000), (784, 3000)):
        points = rng.standard_normal((n, d))
        y = points[rng.integers(0, n, 64)] + rng.standard_normal((64, d))
        for dtype in (np.float32, np.float64):
            p, q = points.astype(dtype), y.astype(dtype)
            got, c = _counted(p, q, np.ones(64))
            assert c["pairs"] == 64 * n
            frac = (c["exact"] + c["dgemm"]) / c["pairs"]
            assert frac < (0.05 if dtype == np.float32 else 0.002), (d, dtype, c)
            assert c["exact"] > 0, (d, dtype, c)  # the budget is spent: some are recomputed
            ref = K.empirical_stats_numpy(q, p, np.ones(64))
            # lse and pr to a few tol (2e-6 / 1e-12), the denoiser to the float32 W A's
            # rounding in float32
            e_den, e_lse, e_pr = _errors(got, ref, p)
            if dtype == np.float32:
                assert e_den < 1e-5 and e_lse < 4e-6 and e_pr < 1e-5, (d, e_den, e_lse, e_pr)
            else:
                assert max(e_den, e_lse, e_pr) < 5e-12, (d, e_den, e_lse, e_pr)


def test_float32_below_d32_runs_float64_products():
    # as the numba kernel: sgemm is too coarse against the spread of the logits at small d
    rng = np.random.default_rng(5)
    points = rng.standard_normal((3000, 16)).astype(np.float32)
    y = (points[rng.integers(0, 3000, 40)] + rng.standard_normal((40, 16))).astype(np.float32)
    got, c = _counted(points, y, np.ones(40))
    assert c["dgemm"] == c["pairs"] and c["exact"] == 0, c
    errs = _errors(got, K.empirical_stats_numpy(y, points, np.ones(40)), points)
    assert max(errs) < 1e-6, errs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kept_approximate_weights_on_adversarial_data(dtype):
    # large norms (data 30 sd from the origin), near-duplicate pairs 1e-3 apart and delta
    # from 0.03 to 300: the logit error bound runs from far below to far above 1, so the
    # budget, the histogram cut and the per-pair rule all see use; chunks of 1500 pairs
    points, y, delta = adversarial_kernel_case(dtype)
    ref = K.empirical_stats_numpy(y, points, delta)
    for chunk in (1500, 1 << 22):
        got, c = _counted(points, y, delta, chunk)
        assert c["exact"] > 0
        errs = _errors(got, ref, points, scale=1.0)
        assert max(errs) < TOL[dtype], (chunk, errs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_far_queries_and_extreme_delta(dtype):
    # queries 1e4 away at delta 1e-8 (logits ~ -1e16, e >> 16: the per-pair rule) and at
    # 1e8 (every weight kept): finite, and equal to the twin
    rng = np.random.default_rng(14)
    points = rng.standard_normal((2000, 40)).astype(dtype)
    y = np.concatenate([1e4 + rng.standard_normal((10, 40)), points[:10] + 1e-5])
    y = y.astype(dtype)
    for delta in (1e-8, 1e-2, 1e8):
        dl = np.full(20, delta)
        got, _ = _counted(points, y, dl, chunk=3000)
        assert all(bool(torch.isfinite(v).all()) for v in got)
        errs = _errors(got, K.empirical_stats_numpy(y, points, dl), points)
        assert max(errs) < TOL[dtype], (delta, errs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_never_more_than_a_chunk(dtype):
    # every tensor an operation makes during the call holds at most a few chunks of numbers
    # or a copy of the points (here m n = 24 chunks): the m x n matrix is never formed, on
    # any route (budget and histogram at d = 32, delta = 1; per-pair rule at delta = 1e-6;
    # float32 rows moved to float64 products at delta = 30)
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        most = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.most = max(self.most, t.numel())
            return out

    gen = torch.Generator().manual_seed(15)
    m, n, d, chunk = 192, 2048, 32, 1 << 14
    points = torch.randn(n, d, generator=gen, dtype=dtype)
    y = points[torch.randint(0, n, (m,), generator=gen)] + torch.randn(m, d, generator=gen)
    y = y.to(dtype)
    tp = T.TorchPoints(points)
    for delta in (1.0, 1e-6, 30.0):
        dl = torch.full((m,), delta, dtype=torch.float64)
        with Largest() as seen:
            got = T.empirical_stats_torch(y, tp, dl, chunk=chunk)
        # (a block's points in float64 are n d numbers here: qb = 8 queries a block)
        assert seen.most <= max(4 * chunk, n * d) < m * n // 4, (delta, seen.most)
        ref = K.empirical_stats_numpy(y.numpy(), points.numpy(), dl.numpy())
        errs = _errors(got, ref, points.numpy())
        assert max(errs) < TOL[np.float32 if dtype == torch.float32 else np.float64], errs


def test_tf32_matmul_precision_widens_the_bound():
    # a user who allows TF32 (or bfloat16) float32 products gets the wider roundoff in the
    # bound, so more pairs are recomputed, not a silently wrong answer
    assert T.gemm_unit(torch, torch.float32) == 2.0**-24
    assert T.gemm_unit(torch, torch.float64) == 2.0**-53
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert T.gemm_unit(torch, torch.float32) == 2.0**-11
        torch.set_float32_matmul_precision("medium")
        assert T.gemm_unit(torch, torch.float32) == 2.0**-8
        rng = np.random.default_rng(16)
        points = rng.standard_normal((2000, 64)).astype(np.float32)
        y = (points[rng.integers(0, 2000, 30)] + rng.standard_normal((30, 64))).astype(np.float32)
        got, c = _counted(points, y, np.ones(30))
        assert c["exact"] + c["dgemm"] > 0.02 * c["pairs"], c  # more than at 'highest'
        errs = _errors(got, K.empirical_stats_numpy(y, points, np.ones(30)), points)
        assert max(errs) < 1e-4, errs
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunking_invariance(dtype):
    # blocks of 50 .. 2^20 pairs (one query at a time up to all at once): the same answer
    rng = np.random.default_rng(9)
    points = rng.standard_normal((600, 40)).astype(dtype)
    y = _queries(rng, points, 60, "near").astype(dtype)
    delta = DELTAS[rng.integers(0, 4, 60)]
    ref = K.empirical_stats_numpy(y, points, delta)
    outs = [_stats(points, y, delta, chunk=c) for c in (50, 1000, 60 * 600, 1 << 20)]
    for got in outs:
        assert max(_errors(got, ref, points)) < TOL[dtype]
    for got in outs[1:]:  # blockings differ only by rounding
        assert max(_errors(got, [np.asarray(o) for o in outs[0]], points)) < TOL[dtype]


def test_public_methods_and_return_types():
    rng = np.random.default_rng(10)
    a = rng.standard_normal((400, 20))
    y = rng.standard_normal((25, 20))
    delta = rng.uniform(0.1, 2.0, 25)
    ref = Empirical(a)
    on_dev = Empirical(a, device="cpu")
    assert on_dev.device == torch.device("cpu") and "device=cpu" in repr(on_dev)
    for name in ("score", "denoise", "log_density", "participation_ratio"):
        want = getattr(ref, name)(y, delta)
        got_np = getattr(on_dev, name)(y, delta)  # numpy in, numpy float64 out
        got_t = getattr(ref, name)(torch.from_numpy(y), torch.from_numpy(delta))
        assert isinstance(got_np, np.ndarray) and got_np.dtype == np.float64
        assert torch.is_tensor(got_t) and got_t.dtype == torch.float64
        np.testing.assert_allclose(got_np, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_t.numpy(), want, rtol=1e-12, atol=1e-12)
    # float32: score and denoiser in float32, densities in float64
    e32 = Empirical(torch.from_numpy(a.astype(np.float32)))
    assert e32.dtype == np.float32
    s = e32.score(torch.from_numpy(y), 0.5)
    assert s.dtype == torch.float32 and e32.log_density(torch.from_numpy(y), 0.5).dtype == (
        torch.float64
    )
    want = Empirical(a.astype(np.float32), dtype=np.float32).score(y.astype(np.float32), 0.5)
    scale = float(np.max(np.abs(want)))
    assert float(np.max(np.abs(s.numpy() - want))) / scale < 1e-4


def test_score_is_tweedie_and_density_gradient():
    # score = (denoised - y) / delta and the gradient of log p by autograd-free differences
    rng = np.random.default_rng(11)
    a = rng.standard_normal((300, 5))
    emp = Empirical(torch.from_numpy(a))
    y = rng.standard_normal((4, 5))
    s = emp.score(torch.from_numpy(y), 0.3).numpy()
    h = 1e-5
    fd = np.empty_like(y)
    for k in range(5):
        e = np.zeros(5)
        e[k] = h
        up = emp.log_density(torch.from_numpy(y + e), 0.3).numpy()
        dn = emp.log_density(torch.from_numpy(y - e), 0.3).numpy()
        fd[:, k] = (up - dn) / (2 * h)
    np.testing.assert_allclose(s, fd, rtol=1e-6, atol=1e-7)


def test_bad_input_names_the_argument():
    a = np.random.default_rng(12).standard_normal((50, 3))
    emp = Empirical(a, device="cpu")
    with pytest.raises(ShapeError, match=r"y must have shape \(n, 3\)"):
        emp.score(torch.zeros(4, 2), 1.0)
    with pytest.raises(InputError, match="y must be finite"):
        emp.score(torch.tensor([[0.0, float("nan"), 0.0]]), 1.0)
    with pytest.raises(DomainError, match="y: coordinates must lie in"):
        emp.score(torch.full((1, 3), 1e200, dtype=torch.float64), 1.0)
    with pytest.raises(DomainError, match=r"delta must lie in \(0, inf\)"):
        emp.score(torch.zeros(2, 3), torch.tensor([1.0, -1.0]))
    with pytest.raises(ShapeError, match=r"delta must be a scalar or have shape \(2,\)"):
        emp.score(torch.zeros(2, 3), torch.ones(3))
    with pytest.raises(DomainError, match=r"chunk must lie in \[1, "):
        Empirical(a, chunk=0)
    with pytest.raises(InputError, match="device must be a torch device"):
        Empirical(a, device="no-such-device")
    with pytest.raises(InputError, match="device 'meta' is not usable"):
        Empirical(a, device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device 'cuda' is not usable"):
            Empirical(a, device="cuda")
    with pytest.raises(InputError, match="points must be finite"):
        Empirical(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(InputError, match="dtype must be float32 or float64"):
        Empirical(torch.zeros(3, 2), dtype=np.float16)
    assert Empirical(torch.zeros(3, 2, dtype=torch.float16)).dtype == np.float64  # cast up


def test_torch_queries_of_other_kinds():
    # queries that need grad, half precision or integers: cast to the kernel's dtype,
    # results without grad; a float32 training set with float64 queries runs in float32
    rng = np.random.default_rng(17)
    a = rng.standard_normal((300, 8))
    emp = Empirical(torch.from_numpy(a))
    y = torch.from_numpy(rng.standard_normal((5, 8))).requires_grad_()
    want = Empirical(a).score(y.detach().numpy(), 0.7)
    got = emp.score(y, torch.tensor(0.7, dtype=torch.float64))
    assert not got.requires_grad
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    half = emp.denoise(y.detach().half(), 0.7)
    assert half.dtype == torch.float64 and half.shape == (5, 8)
    ints = emp.log_density(torch.zeros(2, 8, dtype=torch.int64), 0.7)
    np.testing.assert_allclose(ints.numpy(), Empirical(a).log_density(np.zeros((2, 8)), 0.7))
    e32 = Empirical(torch.from_numpy(a.astype(np.float32)), device="cpu")
    assert e32.denoise(y.detach(), 0.7).dtype == torch.float32


def test_empty_query_batch_and_single_point():
    emp = Empirical(torch.ones(1, 4, dtype=torch.float64))
    den, lse, pr = emp.stats(torch.zeros(0, 4, dtype=torch.float64), 1.0)
    assert den.shape == (0, 4) and lse.shape == (0,) and pr.shape == (0,)
    den, lse, pr = emp.stats(torch.zeros(3, 4, dtype=torch.float64), 2.0)
    assert torch.equal(den, torch.ones(3, 4, dtype=torch.float64))
    assert torch.allclose(lse, torch.full((3,), -1.0, dtype=torch.float64))  # -|0 - 1|^2 d/4
    assert torch.equal(pr, torch.ones(3, dtype=torch.float64))


def test_import_without_torch_still_works():
    # torch stays optional: physdiff imports and the numpy path runs with torch unavailable
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, physdiff\n"
        "from physdiff.ensembles import Empirical\n"
        "e = Empirical(np.eye(3))\n"
        "print(e.score(np.zeros((2, 3)), 1.0).shape)\n"
        "try:\n    Empirical(np.eye(3), device='cpu')\n"
        "except ImportError as exc:\n    print('ImportError', 'physdiff[torch]' in str(exc))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["(2, 3)", "ImportError True"]


def test_default_chunk_on_cpu():
    assert T.default_chunk(torch.device("cpu"), torch.float32) == T.CHUNK_CPU
