"""Exact ensembles: identities (hypothesis), brute-force twins, limits, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from physdiff.ensembles import Empirical, Gaussian, GaussianMixture, LinearManifold
from physdiff.errors import DomainError, InputError, NotSupportedError, ShapeError
from physdiff.processes import DDPM, EDM, OU, VE, VPCosine, VPLinear
from tests._checks import assert_is_gradient, fd_gradient


def _models():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 3))
    cov = a @ a.T + 0.1 * np.eye(3)
    return {
        "gaussian": Gaussian(rng.standard_normal(3), cov),
        "gaussian-degenerate": Gaussian(np.zeros(3), np.diag([2.0, 0.5, 0.0])),
        "mixture": GaussianMixture(
            [0.2, 0.5, 0.3],
            rng.standard_normal((3, 3)) * 2,
            np.stack([cov, np.diag([1.0, 0.0, 0.3]), 0.2 * np.eye(3)]),
        ),
        "two-deltas": GaussianMixture.two_deltas(1.3, d=3),
        "empirical": Empirical(rng.standard_normal((7, 3)) * 1.5),
        "manifold": LinearManifold.random(3, [2.0, 0.4], rng, mean=np.ones(3)),
    }


MODELS = _models()
NAMES = list(MODELS)

points = st.lists(st.floats(-3, 3), min_size=3, max_size=3).map(lambda v: np.array([v]))
deltas = st.floats(0.05, 5.0)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(y=points, delta=deltas)
def test_score_is_gradient_of_log_density(name, y, delta):
    m = MODELS[name]
    assert_is_gradient(m.score(y, delta), lambda z: m.log_density(z, delta), y, 1e-5 * delta**0.5)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(y=points, delta=deltas)
def test_tweedie(name, y, delta):
    m = MODELS[name]
    np.testing.assert_allclose(
        m.denoise(y, delta), y + delta * m.score(y, delta), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(y=points, delta=deltas)
def test_jacobian_is_derivative_of_score(name, y, delta):
    m = MODELS[name]
    J = m.score_jacobian(y, delta)
    assert_is_gradient(J, lambda z: m.score(z, delta), y, 1e-5 * np.sqrt(delta))
    # J = -I/delta + Cov(x0 | y)/delta^2 (docs/theory.md section 1)
    cov = m.posterior_covariance(y, delta)
    np.testing.assert_allclose(J, -np.eye(3) / delta + cov / delta**2, rtol=1e-8, atol=1e-8 / delta)
    np.testing.assert_allclose(J, np.swapaxes(J, 1, 2), atol=1e-10 / delta)


@pytest.mark.parametrize("name", NAMES)
def test_per_point_delta_equals_scalar_calls(name):
    m = MODELS[name]
    rng = np.random.default_rng(3)
    y = rng.standard_normal((5, 3))
    d = np.array([0.01, 0.1, 1.0, 10.0, 100.0])
    batch = m.score(y, d)
    for i in range(5):
        np.testing.assert_allclose(batch[i], m.score(y[i : i + 1], d[i])[0], rtol=1e-12)


@pytest.mark.parametrize("delta", [0.3, 2.0])
@pytest.mark.parametrize("name", ["gaussian", "mixture", "two-deltas", "empirical"])
def test_density_integrates_to_one_in_1d_marginal(name, delta):
    """Brute force: the 1-D analogue integrated by quadrature has mass 1."""
    full = MODELS[name]
    m1 = _one_d(full)
    val, err = integrate.quad(
        lambda x: np.exp(m1.log_density(np.array([[x]]), delta))[0],
        -40,
        40,
        limit=400,
        points=[0.0],
    )
    assert val == pytest.approx(1.0, abs=1e-8)


def _one_d(m):
    rng = np.random.default_rng(5)
    if isinstance(m, Empirical):
        return Empirical(rng.standard_normal((6, 1)))
    if isinstance(m, GaussianMixture):
        return GaussianMixture.isotropic(
            m.weights, rng.standard_normal((m.n_components, 1)), np.linspace(0, 0.5, m.n_components)
        )
    return Gaussian([0.3], [[1.7]])


def test_two_deltas_tanh_formula():
    """score(y) = (m tanh(m y / delta) - y) / delta (docs/theory.md section 2)."""
    m = 1.7
    model = GaussianMixture.two_deltas(m)
    y = np.linspace(-5, 5, 41)[:, None]
    for delta in (1e-3, 0.5, 30.0):
        np.testing.assert_allclose(
            model.score(y, delta)[:, 0],
            (m * np.tanh(m * y[:, 0] / delta) - y[:, 0]) / delta,
            rtol=1e-12,
            atol=1e-12,
        )


def test_one_component_mixture_equals_gaussian():
    g = MODELS["gaussian"]
    mix = GaussianMixture([1.0], g.mean[None], g.covariance[None])
    y = np.random.default_rng(0).standard_normal((6, 3))
    for fn in ("score", "denoise", "log_density", "score_jacobian"):
        np.testing.assert_allclose(
            getattr(mix, fn)(y, 0.4), getattr(g, fn)(y, 0.4), rtol=1e-10, atol=1e-12
        )
    np.testing.assert_allclose(mix.posterior(y, 0.4), 1.0)


def test_one_point_empirical_equals_point_mass():
    a = np.array([[0.5, -1.0, 2.0]])
    emp, pm = Empirical(a), Gaussian.point_mass(a[0])
    y = np.random.default_rng(0).standard_normal((6, 3)) * 3
    for fn in ("score", "denoise", "log_density", "score_jacobian"):
        np.testing.assert_allclose(
            getattr(emp, fn)(y, 0.7), getattr(pm, fn)(y, 0.7), rtol=1e-10, atol=1e-12
        )
    np.testing.assert_allclose(emp.participation_ratio(y, 0.7), 1.0)


def test_empirical_equals_point_mass_mixture():
    """The training set is the equal-weight mixture of its points' Dirac masses."""
    pts = np.random.default_rng(2).standard_normal((9, 4))
    emp, mix = Empirical(pts), GaussianMixture(np.full(9, 1 / 9), pts)
    y = np.random.default_rng(3).standard_normal((8, 4)) * 2
    for delta in (0.05, 1.0, 50.0):
        for fn in ("score", "denoise", "log_density", "posterior", "score_jacobian"):
            np.testing.assert_allclose(
                getattr(emp, fn)(y, delta), getattr(mix, fn)(y, delta), rtol=1e-9, atol=1e-10
            )


def test_empirical_far_points_and_extreme_delta_are_finite():
    emp = Empirical(np.random.default_rng(0).standard_normal((50, 3)))
    y = np.full((2, 3), 1e4)
    for delta in (1e-8, 1.0, 1e8):
        for out in (emp.score(y, delta), emp.denoise(y, delta), emp.log_density(y, delta)):
            assert np.all(np.isfinite(out))
    # tiny delta: the denoiser returns the nearest training point
    idx, _ = emp.nearest(y)
    np.testing.assert_allclose(emp.denoise(y, 1e-8), emp.points[idx])


def test_mixture_far_points_stay_finite_and_pick_nearest_component():
    mix = GaussianMixture.isotropic([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], [0.1, 0.1])
    y = np.array([[1e6, 0.0], [-1e6, 3.0]])
    p = mix.posterior(y, 1e-3)
    np.testing.assert_array_equal(p, [[0.0, 1.0], [1.0, 0.0]])
    assert np.all(np.isfinite(mix.score(y, 1e-3)))


def _random_mixture(rng, d, K, scale):
    """Weights, means, covariances of a mixture mixing point masses, full-rank anisotropic
    and rank-deficient components; means spread over ``scale``."""
    covs = []
    for k in range(K):
        kind = k % 3
        if kind == 0:
            covs.append(np.zeros((d, d)))  # point mass
        else:
            r = d if kind == 1 else max(1, d - 1)  # full rank / degenerate (d = 1: full)
            a = rng.standard_normal((d, r)) * np.exp(rng.uniform(-2, 1, r))  # anisotropic
            covs.append(a @ a.T)
    w = rng.uniform(0.05, 1.0, K)
    return w / w.sum(), scale * rng.standard_normal((K, d)), np.stack(covs)


def _reference(w, means, covs, y, delta):
    """The straightforward formulas, one component and one point at a time: log joints
    from slogdet/solve, posteriors by log-sum-exp softmax (scipy), moments by the law of
    total covariance."""
    from scipy.special import logsumexp

    n, d = y.shape
    K = w.shape[0]
    lj = np.empty((n, K))
    m = np.empty((n, K, d))
    S = np.empty((n, K, d, d))
    g = np.empty((n, K, d))
    for i in range(n):
        for k in range(K):
            A = covs[k] + delta[i] * np.eye(d)
            dy = y[i] - means[k]
            sol = np.linalg.solve(A, dy)
            lj[i, k] = np.log(w[k]) - 0.5 * (
                d * np.log(2 * np.pi) + np.linalg.slogdet(A)[1] + dy @ sol
            )
            g[i, k] = -sol
            m[i, k] = means[k] + covs[k] @ sol
            S[i, k] = covs[k] - covs[k] @ np.linalg.solve(A, covs[k])
    lse = logsumexp(lj, axis=1)
    p = np.exp(lj - lse[:, None])
    mean = np.einsum("nk,nkd->nd", p, m)
    dm = m - mean[:, None, :]
    cov = np.einsum("nk,nkij->nij", p, S) + np.einsum("nk,nki,nkj->nij", p, dm, dm)
    return {
        "posterior": p,
        "log_density": lse,
        "score": np.einsum("nk,nkd->nd", p, g),
        "denoise": mean,
        "posterior_covariance": cov,
        "lj": lj,
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("d", [1, 4])
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_mixture_matches_reference_logsumexp(seed, d, scale):
    """The (K, n) layout of the mixture internals gives the straightforward log-sum-exp
    answers: point masses, anisotropic and degenerate components, per-point deltas, and
    (scale 1e3, delta down to 1e-4) log joints of order -1e10 where a plain softmax would
    give 0/0."""
    rng = np.random.default_rng(100 * seed + d)
    K = int(rng.integers(2, 7))
    w, means, covs = _random_mixture(rng, d, K, scale)
    mix = GaussianMixture(w, means, covs)
    # points near each component and far from all of them
    y = np.concatenate(
        [
            means[rng.integers(0, K, 12)] + rng.standard_normal((12, d)),
            scale * 3 * rng.standard_normal((4, d)),
        ]
    )
    delta = np.exp(rng.uniform(np.log(1e-4), np.log(1e2), y.shape[0]))
    ref = _reference(w, means, covs, y, delta)
    if scale > 1:
        assert np.min(ref["lj"]) < -1e8  # exp() of these underflows: log-sum-exp matters
    post = mix.posterior(y, delta)
    assert post.shape == (y.shape[0], K) and post.flags.c_contiguous
    np.testing.assert_allclose(post, ref["posterior"], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(mix._log_joint(y, delta[:, None]), ref["lj"], rtol=1e-11)
    np.testing.assert_allclose(mix.log_density(y, delta), ref["log_density"], rtol=1e-11)
    for fn in ("score", "denoise"):
        got, want = getattr(mix, fn)(y, delta), ref[fn]
        tol = 1e-8 * np.max(np.abs(want), axis=1, keepdims=True) + 1e-12
        assert np.all(np.abs(got - want) <= tol), fn
    cov = mix.posterior_covariance(y, delta)
    scale_c = np.max(np.abs(ref["posterior_covariance"]), axis=(1, 2), keepdims=True)
    assert np.all(np.abs(cov - ref["posterior_covariance"]) <= 1e-7 * scale_c + 1e-12)
    J = mix.score_jacobian(y, delta)
    dl = delta[:, None, None]
    # J = -I/delta + Cov/delta^2, up to the cancellation of the two terms in the reference
    J_ref = -np.eye(d) / dl + ref["posterior_covariance"] / dl**2
    assert np.all(np.abs(J - J_ref) <= 1e-6 * (1 / dl + scale_c / dl**2))


def test_mixture_private_softmax_helpers_match_logsumexp():
    """The (n, K) helpers (kept for callers) equal scipy's log-sum-exp, rows of -inf too."""
    from scipy.special import logsumexp, softmax

    from physdiff.ensembles import mixture as MX

    a = np.random.default_rng(0).standard_normal((50, 5)) * 1e4
    a[3] = -np.inf
    a[4, :2] = -np.inf
    np.testing.assert_allclose(MX._logsumexp(a), logsumexp(a, axis=1), rtol=1e-14)
    ok = np.arange(50) != 3
    np.testing.assert_allclose(MX._softmax(a[ok]), softmax(a[ok], axis=1), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("kind", ["full", "degenerate", "point"])
def test_gaussian_denoise_uses_only_the_tangent_coordinates(kind):
    """_denoise skips the complement (it never enters E[x0 | y]) and gives exactly what the
    formula through _split gives, and the textbook mu + C (C + delta I)^-1 (y - mu)."""
    rng = np.random.default_rng(7)
    d = 4
    a = rng.standard_normal((d, {"full": d, "degenerate": 2, "point": 0}[kind]))
    cov = a @ a.T
    g = (
        Gaussian(rng.standard_normal(d), cov)
        if kind != "point"
        else Gaussian.point_mass(rng.standard_normal(d))
    )
    y = rng.standard_normal((9, d)) * 3
    dl = np.exp(rng.uniform(-5, 3, (9, 1)))
    r, perp = g._split(y)
    np.testing.assert_array_equal(g._denoise(y, dl), g._denoise_from(r, dl))
    want = np.stack(
        [
            g.mean + cov @ np.linalg.solve(cov + dl[i, 0] * np.eye(d), y[i] - g.mean)
            for i in range(9)
        ]
    )
    np.testing.assert_allclose(g._denoise(y, dl), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(g._score(y, dl), g._score_from(r, perp, dl))
    np.testing.assert_array_equal(g._log_density(y, dl), g._log_density_from(r, perp, dl))


def test_manifold_is_degenerate_gaussian():
    rng = np.random.default_rng(4)
    lm = LinearManifold.random(5, [1.5, 0.2], rng, mean=np.arange(5.0))
    g = Gaussian(lm.mean, lm.covariance)
    y = rng.standard_normal((7, 5))
    assert g.rank == 2
    for fn in ("score", "denoise", "log_density", "score_jacobian"):
        np.testing.assert_allclose(
            getattr(lm, fn)(y, 0.3), getattr(g, fn)(y, 0.3), rtol=1e-9, atol=1e-10
        )
    # normal directions: J = -1/delta exactly; tangent: -1/(s^2 + delta)
    J = lm.score_jacobian(y[:1], 1e-6)[0]
    B = lm.basis
    normal = np.linalg.svd(B, full_matrices=True)[0][:, 2:]
    np.testing.assert_allclose(
        normal.T @ J @ normal, -1e6 * np.eye(3), rtol=1e-10, atol=1e-12 * 1e6
    )
    np.testing.assert_allclose(
        B.T @ J @ B, -np.diag(1 / (lm.stds**2 + 1e-6)), rtol=1e-9, atol=1e-12 * 1e6
    )  # roundoff of B^T (I/delta) B


def test_normalised_anisotropic_manifold_samples_but_has_no_closed_form():
    lm = LinearManifold.axis_aligned(4, [1.0, 2.0], normalized=True)
    x = lm.sample(100, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), np.sqrt(5.0))
    np.testing.assert_allclose(x[:, 2:], 0.0)
    with pytest.raises(NotSupportedError, match="Empirical"):
        lm.score(x[:2], 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_sample_moments_match(name):
    m = MODELS[name]
    n = 200_000
    x = m.sample(n, np.random.default_rng(11))
    cov = m.covariance
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - m.mean) <= 5 * se_mean + 1e-12)
    # variance standard error, generous bound from the fourth moment estimate
    xc = x - x.mean(0)
    se_var = np.sqrt(np.var(xc**2, axis=0) / n)
    assert np.all(np.abs((xc**2).mean(0) - np.diag(cov)) <= 5 * se_var + 1e-12)


def test_sample_noised_is_the_ve_marginal():
    g = Gaussian([1.0, -1.0], [[1.0, 0.3], [0.3, 0.5]])
    x0, y = g.sample_noised(100_000, 2.0, np.random.default_rng(0))
    emp_cov = np.cov(y.T)
    np.testing.assert_allclose(emp_cov, g.covariance + 2.0 * np.eye(2), atol=0.05)


PROCS = [OU(), VPLinear(), VPCosine(), VE(), EDM(), DDPM()]


@pytest.mark.parametrize("proc", PROCS, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("name", ["mixture", "empirical", "manifold"])
def test_frame_view_matches_ve_frame(proc, name):
    m = MODELS[name]
    t = proc.t_min + 0.3 * (proc.t_max - proc.t_min)
    v = m.in_frame(proc, t)
    a, dl = proc.alpha(t), proc.delta(t)
    x = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_allclose(v.score(x), m.score(x / a, dl) / a, rtol=1e-12)
    np.testing.assert_allclose(v.denoise(x), m.denoise(x / a, dl), rtol=1e-12)
    np.testing.assert_allclose(v.eps(x), -proc.sigma(t) * v.score(x), rtol=1e-12)
    # the frame's score is the gradient of its own log-density
    h = 1e-5 * proc.sigma(t)
    fd = fd_gradient(v.log_density, x, h)
    np.testing.assert_allclose(v.score(x), fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())
    # Tweedie in the process frame: E[x0|x] = (x + sigma^2 score)/alpha
    np.testing.assert_allclose(
        v.denoise(x), (x + proc.sigma(t) ** 2 * v.score(x)) / a, rtol=1e-9, atol=1e-9
    )


def test_frame_view_density_normalised_1d():
    g = Gaussian([0.5], [[2.0]])
    v = g.in_frame(VPLinear(), 0.4)
    val, _ = integrate.quad(lambda x: np.exp(v.log_density(np.array([[x]])))[0], -30, 30)
    assert val == pytest.approx(1.0, abs=1e-9)


# -- bad input -------------------------------------------------------------------------------
def test_bad_inputs_name_the_argument():
    g = MODELS["gaussian"]
    y = np.zeros((2, 3))
    with pytest.raises(DomainError, match="delta must lie in"):
        g.score(y, 0.0)
    with pytest.raises(DomainError, match="delta must lie in"):
        g.score(y, -1.0)
    with pytest.raises(InputError, match="delta must be finite"):
        g.score(y, np.nan)
    with pytest.raises(InputError, match="y must be finite"):
        g.score(np.array([[np.inf, 0, 0]]), 1.0)
    with pytest.raises(ShapeError, match=r"y must have shape \(n, 3\)"):
        g.score(np.zeros((2, 4)), 1.0)
    with pytest.raises(ShapeError, match=r"y must have shape"):
        g.score(np.zeros(3), 1.0)
    with pytest.raises(ShapeError, match="delta must be a scalar or have shape"):
        g.score(y, np.ones(3))
    with pytest.raises(InputError, match="positive semi-definite"):
        Gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]])
    with pytest.raises(InputError, match="symmetric"):
        Gaussian([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ShapeError, match="cov must have shape"):
        Gaussian([0.0, 0.0], np.eye(3))
    with pytest.raises(InputError, match="weights must sum to 1"):
        GaussianMixture([0.5, 0.6], [[0.0], [1.0]])
    with pytest.raises(InputError, match="weights must be >= 0"):
        GaussianMixture([1.5, -0.5], [[0.0], [1.0]])
    with pytest.raises(ShapeError, match="weights must have one entry"):
        GaussianMixture([1.0], [[0.0], [1.0]])
    with pytest.raises(InputError, match="points must hold at least one"):
        Empirical(np.zeros((0, 3)))
    with pytest.raises(InputError, match="points must be finite"):
        Empirical(np.array([[0.0, np.nan]]))
    with pytest.raises(InputError, match="basis must have orthonormal"):
        LinearManifold(np.ones((3, 1)), [1.0])
    with pytest.raises(DomainError, match="stds must lie in"):
        LinearManifold.axis_aligned(3, [1.0, 0.0])
    with pytest.raises(InputError, match="rng must be a numpy"):
        g.sample(3, 0)
    with pytest.raises(NotSupportedError, match="no components"):
        g.posterior(y, 1.0)
    with pytest.raises(DomainError, match="t must lie in"):
        g.in_frame(OU(), -1.0)


def test_empirical_nearest_is_exact_far_from_the_origin():
    # the norm expansion cancels for a set far from the origin unless it is centred first;
    # brute force: the argmin of the direct distances
    rng = np.random.default_rng(11)
    for offset in (0.0, 1e9):  # at 1e9 the uncentred expansion errs by ~1e2 in d^2
        pts = offset + rng.standard_normal((300, 5))
        y = pts[rng.integers(0, 300, 50)] + 1e-3 * rng.standard_normal((50, 5))
        idx, dist = Empirical(pts).nearest(y)
        direct = np.linalg.norm(y[:, None, :] - pts[None], axis=2)
        np.testing.assert_array_equal(idx, direct.argmin(axis=1))
        np.testing.assert_array_equal(dist, np.linalg.norm(y - pts[idx], axis=1))
