"""Associative memory: DAM energy, merging, circle, attractors, classification, basins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

from physdiff import association as A
from physdiff.ensembles import Empirical, GaussianMixture
from physdiff.errors import DomainError, InputError
from theory import association as th


def test_sympy_identities():
    assert th.dam_minus_diffusion_energy() == 0
    assert sp.simplify(th.two_memory_curvature() - (2 - th.beta * th.D**2)) == 0
    assert th.merge_beta() == [2 / th.D**2]
    assert th.circle_average_integrand() == 0


def test_dam_energy_equals_diffusion_energy_up_to_a_constant():
    rng = np.random.default_rng(0)
    pats = rng.standard_normal((7, 3))
    y = rng.standard_normal((5, 3))
    for beta in (0.3, 4.0):
        e1 = A.dam_energy(y, pats, beta)
        e2 = A.energy(Empirical(pats), y, 1 / (2 * beta))
        np.testing.assert_allclose(np.diff(e1), np.diff(e2), rtol=1e-10, atol=1e-12)


def test_line_integral_energy_matches_exact_energy():
    rng = np.random.default_rng(1)
    emp = Empirical(rng.standard_normal((20, 2)) * 2)
    y = rng.standard_normal((4, 2))
    ref = np.array([0.3, -0.2])
    e, err = A.energy_line_integral(emp, y, 0.5, ref, n_points=96)
    exact = A.energy(emp, y, 0.5) - A.energy(emp, ref[None], 0.5)
    np.testing.assert_allclose(e, exact, atol=1e-8)
    assert np.all(err < 1e-6)


@pytest.mark.parametrize("D", [1.0, 2.0, 3.5])
def test_two_memories_merge_exactly_at_beta_d2_equal_2(D):
    emp = Empirical(np.array([[-D / 2], [D / 2]]))
    b_c = A.merge_threshold(D)
    assert b_c == pytest.approx(2 / D**2)
    rng = np.random.default_rng(2)
    for beta, n_expected in ((0.97 * b_c, 1), (1.03 * b_c, 2)):
        att = A.find_attractors(emp, 300, rng, delta_end=1 / (2 * beta), scale=D)
        assert att.points.shape[0] == n_expected
        assert np.all(att.stable)
        assert np.sign(A.two_memory_curvature(beta, D)) == (1 if n_expected == 1 else -1)


def test_circle_continuum_energy_is_the_angular_average():
    for R, beta in ((0.0, 1.0), (0.7, 3.0), (1.2, 0.5)):
        avg = integrate.quad(
            lambda th_, R=R, beta=beta: math.exp(
                -beta * ((R - math.cos(th_)) ** 2 + math.sin(th_) ** 2)
            ),
            0,
            2 * math.pi,
        )[0] / (2 * math.pi)
        assert A.circle_energy(R, beta) == pytest.approx(-math.log(avg) / beta, rel=1e-10)
    # many discrete patterns approach the continuum
    K, beta = 400, 5.0
    th_ = 2 * np.pi * np.arange(K) / K
    pats = np.stack([np.cos(th_), np.sin(th_)], 1)
    y = np.array([[0.6, 0.0]])
    disc = A.dam_energy(y, pats, beta)[0] + math.log(K) / beta
    assert disc == pytest.approx(float(A.circle_energy(0.6, beta)), rel=1e-8)


def test_circle_merge_count_rule_and_pairwise():
    for beta in (2.0, 20.0):
        K = A.circle_merge_count(beta)
        assert A.circle_pattern_stability(K, beta)[1] <= 0.02
        assert A.circle_pattern_stability(K - 1, beta)[1] > 0.02
        assert K >= A.circle_merge_count_pairwise(beta)  # pairwise merges first
    assert A.circle_merge_count_pairwise(20.0) == pytest.approx(
        math.pi / math.asin(1 / math.sqrt(40))
    )


def test_exact_empirical_score_only_memorises():
    rng = np.random.default_rng(3)
    tr = rng.standard_normal((30, 2)) * 3
    emp = Empirical(tr)
    att = A.find_attractors(emp, 300, rng)
    cl = A.classify_samples(att.samples, tr)
    assert cl.fractions["memorised"] == 1.0
    idx, dist = emp.nearest(att.points)
    assert np.all(dist < 1e-3 * cl.spacing)


def test_classification_on_constructed_cases():
    rng = np.random.default_rng(4)
    tr = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])  # spacing 10
    mem = tr[[0, 1]] + 0.1  # within 0.25 * 10
    spur = np.array([5.0, 5.0]) + 0.05 * rng.standard_normal((30, 2))  # a collapsed cluster
    new = np.array([[20.0, -7.0], [-13.0, 4.0], [3.0, 18.0]])
    cl = A.classify_samples(np.concatenate([mem, spur, new]), tr, min_neighbours=5)
    np.testing.assert_array_equal(cl.labels, [0] * 2 + [1] * 30 + [2] * 3)
    assert cl.spacing == pytest.approx(10.0)
    auto = A.classify_samples(np.concatenate([mem, spur, new]), tr)
    assert auto.min_neighbours >= 2 and np.all(auto.labels[2:32] == 1)


def test_basin_of_a_training_point():
    rng = np.random.default_rng(5)
    tr = np.array([[-2.0], [2.0]])
    emp = Empirical(tr)
    b = A.basin_size(emp, tr[1], np.geomspace(0.01, 50, 12), rng, n_trials=64)
    assert b.probability[0] == 1.0
    # far beyond the merge scale the return is a coin flip between the two memories
    assert b.probability[-1] < 0.9
    assert 0 < b.delta_basin < 50 and b.radius == pytest.approx(math.sqrt(b.delta_basin))


def test_errors():
    with pytest.raises(DomainError, match="c_m must lie"):
        A.classify_samples(np.zeros((3, 2)), np.eye(2), c_m=0.0)
    with pytest.raises(DomainError, match="c_s must lie"):
        A.classify_samples(np.zeros((3, 2)), np.eye(2), c_s=-1.0)
    with pytest.raises(InputError, match="at least two"):
        A.classify_samples(np.zeros((3, 2)), np.zeros((1, 2)))
    with pytest.raises(DomainError, match="distance must lie"):
        A.merge_threshold(0.0)
    with pytest.raises(InputError, match="tolerance must be given"):
        A.basin_size(GaussianMixture.two_deltas(1.0), [1.0], [1.0], np.random.default_rng(0))


# ---------------------------------------------------------------------------------------
# intrinsic dimension and the chance-neighbour threshold (issue 7, defect 1)
# ---------------------------------------------------------------------------------------
def _ring(n, rng):
    th = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(th), np.sin(th)], axis=1)


def _even_ring(K):
    th = 2 * np.pi * np.arange(K) / K
    return np.stack([np.cos(th), np.sin(th)], axis=1)


def test_intrinsic_dimension_on_known_sets():
    rng = np.random.default_rng(10)
    for K in (8, 16, 64):  # evenly spaced on a circle: ties, and the rounding absorbs them
        assert round(A.intrinsic_dimension(_even_ring(K))) == 1
    assert A.intrinsic_dimension(_ring(400, rng)) == pytest.approx(1.0, abs=0.15)
    assert A.intrinsic_dimension(rng.standard_normal((400, 2))) == pytest.approx(2.0, abs=0.25)
    assert A.intrinsic_dimension(rng.standard_normal((400, 5))) == pytest.approx(5.0, abs=0.6)
    # a 2-D plane embedded in 10 dimensions
    plane = rng.standard_normal((400, 2)) @ rng.standard_normal((2, 10))
    assert A.intrinsic_dimension(plane) == pytest.approx(2.0, abs=0.3)
    with pytest.raises(InputError, match="at least k1 \\+ 2"):
        A.intrinsic_dimension(np.zeros((3, 2)) + np.arange(3)[:, None])


@pytest.mark.parametrize(
    "case", ["even-ring-16", "even-ring-8", "random-ring-64", "gaussian-2d-100", "even-ring-2"]
)
def test_default_threshold_calls_fresh_samples_generalised(case):
    """Fresh samples of the data distribution are not spurious (at the stated 1% rate, with
    its binomial error): before the fix the evenly spaced ring of 16 gave 43%, the ring of
    2 gave 66%."""
    rng = np.random.default_rng(11)
    kind, K = case.rsplit("-", 1)
    K = int(K)
    if kind == "even-ring":
        train, fresh = _even_ring(K), _ring(1000, rng)
    elif kind == "random-ring":
        train, fresh = _ring(K, rng), _ring(1000, rng)
    else:
        train, fresh = rng.standard_normal((K, 2)), rng.standard_normal((1000, 2))
    spur = []
    for _ in range(4):
        cl = A.classify_samples(fresh, train)
        spur.append(cl.fractions["spurious"])
        fresh = _ring(1000, rng) if "ring" in kind else rng.standard_normal((1000, 2))
    assert np.mean(spur) <= 0.01 + 3 * math.sqrt(0.01 * 0.99 / 4000)
    assert cl.min_neighbours >= 2
    if kind != "gaussian-2d":
        assert cl.intrinsic_dim == 1.0


def test_default_threshold_depends_on_k_and_dimension():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1000, 2))
    few = A.classify_samples(x, rng.standard_normal((20, 2)))
    many = A.classify_samples(x, rng.standard_normal((500, 2)))
    assert few.intrinsic_dim == many.intrinsic_dim == 2.0
    assert few.min_neighbours > many.min_neighbours
    assert few.chance_neighbours == pytest.approx(A.chance_neighbours(1000, 20, 0.25, 2.0))
    assert A.chance_neighbours(1000, 16, 0.25, 1.0) == pytest.approx(999 / 32)
    # a given intrinsic dimension is used as is
    one = A.classify_samples(x, rng.standard_normal((500, 2)), intrinsic_dim=1.0)
    assert one.intrinsic_dim == 1.0 and one.min_neighbours > many.min_neighbours
    with pytest.raises(InputError, match="either min_neighbours or intrinsic_dim"):
        A.classify_samples(x, np.eye(2), min_neighbours=3, intrinsic_dim=1.0)
    with pytest.raises(DomainError, match="intrinsic_dim must lie"):
        A.classify_samples(x, np.eye(2), intrinsic_dim=0.0)


def test_default_classification_of_constructed_memorised_spurious_and_new_points():
    """A dense training set (K = 300 from a 2-D Gaussian) with an isolated close pair: its
    memorised copies, a collapsed cluster at the pair's midpoint (spurious) and fresh
    samples (new points), classified with the default threshold."""
    rng = np.random.default_rng(13)
    gauss = rng.standard_normal((300, 2))
    s0 = A.nearest_neighbour_spacing(gauss)
    pair = np.array([[7.0, 0.0], [7.0, 2 * s0]])  # isolated, 2 s apart
    train = np.concatenate([gauss, pair])
    s = A.nearest_neighbour_spacing(train)
    mem = train[rng.integers(0, 300, 150)] + 1e-3 * s * rng.standard_normal((150, 2))
    spur = pair.mean(axis=0) + 0.02 * s * rng.standard_normal((40, 2))
    new = rng.standard_normal((810, 2))
    cl = A.classify_samples(np.concatenate([mem, spur, new]), train)
    assert cl.intrinsic_dim == 2.0
    assert np.all(cl.labels[:150] == 0)
    assert np.all(cl.labels[150:190] == 1)
    lab_new = cl.labels[190:]
    _, dist = Empirical(train).nearest(new)
    np.testing.assert_array_equal(lab_new == 0, dist <= cl.delta_m)
    assert np.mean(lab_new == 1) <= 0.01 + 3 * math.sqrt(0.01 / 810)
    assert np.mean(lab_new == 2) > 0.5


def test_memorised_samples_do_not_make_their_neighbours_spurious():
    """A non-memorised sample just outside a memorised cluster has the cluster within
    delta_s; the cluster collapsed onto the training point, not onto it."""
    train = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])  # s = 10
    cluster = np.array([2.4, 0.0]) + np.zeros((20, 2))  # memorised (within 2.5)
    straggler = np.array([[2.6, 0.0]])  # not memorised, 0.2 from the cluster
    cl = A.classify_samples(np.concatenate([cluster, straggler]), train, min_neighbours=5)
    np.testing.assert_array_equal(cl.labels, [0] * 20 + [2])


# ---------------------------------------------------------------------------------------
# the search's final noise (defect 2) and the refinement's convergence (defect 3)
# ---------------------------------------------------------------------------------------
def test_find_attractors_resolves_dense_sets_by_default():
    """The default process (edm) reaches the default delta_end = (0.05 s)^2 on 64 evenly
    spaced circle memories without a word; 128 at random angles (s ~ 0.015) lie beyond
    every process's reach, which both processes now say (before the fix ve clipped
    silently): edm still memorises every end point, ve (delta_min = 1e-4) does not."""
    import warnings as w

    rng = np.random.default_rng(14)
    even = _even_ring(64)
    with w.catch_warnings():
        w.simplefilter("error")
        att = A.find_attractors(Empirical(even), 1000, rng)
    assert att.delta == pytest.approx((0.05 * A.nearest_neighbour_spacing(even)) ** 2)
    assert att.points.shape[0] == 64 and np.all(att.stable)
    assert np.all(att.converged) and att.n_unconverged == 0
    tr = _ring(128, rng)
    emp = Empirical(tr)
    with pytest.warns(UserWarning, match="delta_end .* below the smallest noise level"):
        edm = A.find_attractors(emp, 400, rng)
    with pytest.warns(UserWarning, match="delta_end .* below the smallest noise level"):
        ve = A.find_attractors(emp, 400, rng, process="ve")
    assert edm.delta == pytest.approx(4e-6, rel=1e-3) and ve.delta == pytest.approx(1e-4, rel=1e-3)
    f_edm = A.classify_samples(edm.samples, tr).fractions["memorised"]
    f_ve = A.classify_samples(ve.samples, tr).fractions["memorised"]
    assert f_edm == 1.0 and f_ve < 0.95
    with pytest.raises(InputError, match=r"delta_end must lie in \[0.0001, 2500\]"):
        A.find_attractors(emp, 10, rng, process="ve", delta_end=1e-6)
    with pytest.warns(UserWarning, match="basin_size: the default delta_end"):
        A.basin_size(emp, tr[0], [1e-3], rng, n_trials=4)


class _Drift:
    """A score model whose denoiser never has a fixed point: it shifts every point by a
    constant (the drift of a trained network's iterated denoiser along its manifold)."""

    dim = 2
    shift = np.array([1e-3, 0.0])

    def denoise(self, y, delta):
        return np.asarray(y, dtype=float) + self.shift

    def score(self, y, delta):
        return np.broadcast_to(
            self.shift / np.asarray(delta, dtype=float).reshape(-1, 1), np.shape(y)
        )


def test_refinement_reports_points_that_do_not_converge():
    model = _Drift()
    x0 = np.random.default_rng(15).standard_normal((20, 2))
    kw = {"scale": 1.0, "x_start": x0, "check_stability": False, "delta_end": 1e-3}
    rng = np.random.default_rng(0)
    raw = A.find_attractors(model, 20, rng, max_iter=0, **kw)
    ten = A.find_attractors(model, 20, rng, max_iter=10, **kw)
    assert raw.n_unconverged == ten.n_unconverged == 20 and not ten.converged.any()
    np.testing.assert_allclose(ten.samples - raw.samples, np.tile(10 * model.shift, (20, 1)))
    np.testing.assert_allclose(ten.residual, 1e-3)
    # a tolerance above the drift per step counts as converged after one iteration
    loose = A.find_attractors(model, 20, rng, max_iter=10, refine_tol=2e-3, **kw)
    assert loose.converged.all()
    np.testing.assert_allclose(loose.samples - raw.samples, np.tile(model.shift, (20, 1)))
    b = A.basin_size(model, [0.0, 0.0], [0.1, 1.0], rng, n_trials=8, tolerance=1.0, max_iter=5)
    np.testing.assert_array_equal(b.unconverged, [8, 8])
    emp = Empirical(np.array([[-2.0], [2.0]]))
    b = A.basin_size(emp, [2.0], [0.01, 1.0], rng, n_trials=16)
    np.testing.assert_array_equal(b.unconverged, [0, 0])
    with pytest.raises(DomainError, match="max_iter must lie"):
        A.find_attractors(emp, 4, rng, max_iter=-1)


# ---------------------------------------------------------------------------------------
# the Jacobians behind the stability test: Empirical's batched posterior covariance
# ---------------------------------------------------------------------------------------
def test_empirical_posterior_covariance_is_batched_and_drops_subnormal_weights(monkeypatch):
    import physdiff._kernels as kern

    rng = np.random.default_rng(16)
    pts = 50.0 + rng.standard_normal((40, 3))  # far from the origin: centring matters
    emp = Empirical(pts)
    # queries near a point at small noise: most weights underflow, some into subnormals
    y = pts[:7] + 0.3 * rng.standard_normal((7, 3))
    delta = np.array([0.02, 0.02, 0.05, 0.1, 1.0, 10.0, 0.0152])
    seen = []
    real = kern.empirical_weights

    def spy(*a, **k):
        w = real(*a, **k)
        seen.append(w)
        return w

    monkeypatch.setattr(kern, "empirical_weights", spy)
    cov = emp.posterior_covariance(y, delta)
    monkeypatch.undo()
    # brute-force twin: per point, all weights, centred at the posterior mean
    for i in range(7):
        w = real(y[i : i + 1], pts, delta[i : i + 1])[0]
        m = w @ pts
        c = pts - m
        np.testing.assert_allclose(cov[i], (c * w[:, None]).T @ c, rtol=1e-12, atol=1e-300)
    assert len(seen) == 1  # one batch
    w = seen[0]
    assert not np.any((w > 0) & (w < np.exp(-350.0)))  # no subnormal (or near) weights used
    assert np.any(real(y, pts, delta) < np.finfo(float).tiny)  # ... though there were some


def _brute_pairwise(x):
    """Brute-force twin: every pairwise distance from the direct differences."""
    diff = x[:, None, :] - x[None, :, :]
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    np.fill_diagonal(dist, np.inf)
    return dist


@pytest.mark.parametrize("offset", [0.0, 1e7])
def test_neighbour_distances_match_brute_force_far_from_the_origin(offset):
    # far from the origin the norm expansion |a|^2 + |b|^2 - 2ab alone cancels to noise
    # (spacings ~1e-3 at |a| ~ 1e7 need 20 digits); centring + direct differences keep it
    rng = np.random.default_rng(3)
    x = offset + 1e-2 * rng.standard_normal((60, 4))
    dist = _brute_pairwise(x)
    assert A.nearest_neighbour_spacing(x) == pytest.approx(
        float(np.median(dist.min(axis=1))), rel=1e-6
    )
    idx, knn = A._knn(x, 5)
    np.testing.assert_allclose(knn, np.sort(dist, axis=1)[:, :5], rtol=1e-6)
    np.testing.assert_allclose(dist[np.arange(60)[:, None], idx], knn, rtol=1e-6)
    for r in (0.005, 0.01, 0.02):
        np.testing.assert_array_equal(A._count_within(x, r), np.sum(dist <= r, axis=1))


def test_count_within_decides_pairs_at_the_radius_exactly():
    # a grid whose spacing equals the radius: every pair sits on the boundary
    x = np.arange(12, dtype=float)[:, None] * 0.1 + 3.0
    dist = _brute_pairwise(x)
    r = float(dist[0, 1])
    np.testing.assert_array_equal(A._count_within(x, r), np.sum(dist <= r, axis=1))
    assert A._count_within(np.empty((0, 2)), 1.0).shape == (0,)


def test_classification_does_not_depend_on_where_the_set_sits():
    rng = np.random.default_rng(4)
    train = rng.standard_normal((40, 3))
    samples = np.concatenate(
        [
            train[:5] + 1e-3,
            np.repeat(rng.standard_normal((1, 3)) * 3, 6, axis=0),
            rng.standard_normal((20, 3)),
        ]
    )
    a = A.classify_samples(samples, train, intrinsic_dim=3)
    b = A.classify_samples(samples + 1e6, train + 1e6, intrinsic_dim=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.spacing == pytest.approx(a.spacing, rel=1e-6)


def test_deduplicate_matches_the_greedy_definition():
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal((200, 2)), 1)  # many exact and near duplicates
    reps, labels = A.deduplicate(x, 0.15)
    # brute-force twin: each point joins the nearest earlier representative within r
    ref: list[np.ndarray] = []
    for i, p in enumerate(x):
        dist = [np.linalg.norm(q - p) for q in ref]
        if dist and min(dist) <= 0.15:
            assert labels[i] == int(np.argmin(dist))
        else:
            assert labels[i] == len(ref)
            ref.append(p)
    np.testing.assert_array_equal(reps, np.array(ref))
    assert A.deduplicate(np.empty((0, 3)), 1.0)[0].shape == (0, 3)
    with pytest.raises(InputError, match="points"):
        A.deduplicate(np.zeros(4), 1.0)
    with pytest.raises(DomainError, match="radius"):
        A.deduplicate(x, 0.0)
