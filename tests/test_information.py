"""Class information: quadrature = Monte Carlo = score gap = finite differences = online
classifier; exact online updates; partitions; sympy; errors."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp

from physdiff import information as I
from physdiff import sampling
from physdiff.classes import as_conditional
from physdiff.ensembles import GaussianMixture
from physdiff.errors import InputError
from physdiff.examples import four_classes_1d
from theory import information as th

FOUR = four_classes_1d()  # point masses at -8, -4, 6, 8 (physdiff.examples)


def _phi(u):
    return mpmath.exp(-u * u / 2) / mpmath.sqrt(2 * mpmath.pi)


def test_sympy_posterior_and_binary_channel_against_physdiff():
    assert th.posterior_is_logistic() == 0
    two = GaussianMixture.two_deltas(1.5)
    for dv in (0.3, 2.0, 20.0):
        sub = {th.m: 1.5, th.delta: dv}
        f = sp.lambdify(th.z, th.conditional_entropy_integrand().subs(sub), "mpmath")
        g = sp.lambdify(th.z, th.score_gap_integrand().subs(sub), "mpmath")
        with mpmath.workdps(60):
            H = float(mpmath.quad(lambda u, f=f: f(u) * _phi(u), [-10, 0, 10]))
            R = float(mpmath.quad(lambda u, g=g: g(u) * _phi(u), [-10, 0, 10]))
        # Gauss-Hermite converges slowly on the steep posterior at small delta: order 300
        hq = I.conditional_entropy_quadrature(two, [dv], order=300)[0]
        rq = I.entropy_rate_quadrature(two, [dv], order=300)[0]
        assert hq == pytest.approx(H, rel=1e-7, abs=1e-12)
        assert rq == pytest.approx(R, rel=1e-6, abs=1e-12)  # the rate's bump is steeper
        # and the identity: dH/dDelta equals the score-gap integral (finite difference of H)
        h = 1e-5 * dv
        dH = (
            I.conditional_entropy_quadrature(two, [dv + h])[0]
            - I.conditional_entropy_quadrature(two, [dv - h])[0]
        ) / (2 * h)
        assert dH == pytest.approx(R, rel=1e-5)


@pytest.mark.parametrize(
    "partition",
    [None, I.coarse([[0, 1], [2, 3]], 4), I.pairwise(2, 3, 4), I.one_vs_rest(1, 4)],
    ids=["four-way", "coarse", "pairwise", "one-vs-rest"],
)
def test_three_estimators_agree_with_quadrature(partition):
    rng = np.random.default_rng(0)
    dls = np.array([0.5, 4.0, 40.0])
    hq = I.conditional_entropy_quadrature(FOUR, dls, partition)
    rq = I.entropy_rate_quadrature(FOUR, dls, partition)
    hm, hse = I.conditional_entropy_mc(FOUR, dls, 20000, rng, partition)
    rs, rse = I.entropy_rate_score_gap(FOUR, dls, 20000, rng, partition)
    rf, rfe = I.entropy_rate_finite_difference(FOUR, dls, 20000, rng, partition, rel_step=0.02)
    assert np.all(np.abs(hm - hq) <= 4 * hse + 1e-9)
    assert np.all(np.abs(rs - rq) <= 4 * rse + 1e-9)
    # finite differences carry an O(h^2) bias besides the Monte Carlo error
    assert np.all(np.abs(rf - rq) <= 4 * rfe + 2e-3 * rq + 1e-9)


def test_rate_is_derivative_of_quadrature_entropy():
    dls = np.geomspace(0.05, 500, 400)
    H = I.conditional_entropy_quadrature(FOUR, dls)
    R = I.entropy_rate_quadrature(FOUR, dls)
    dH = np.gradient(H, dls)
    np.testing.assert_allclose(dH[5:-5], R[5:-5], rtol=2e-2, atol=1e-6)
    assert H[0] < 1e-4 and np.all(np.diff(H) > 0) and H[-1] < math.log(4)
    assert I.conditional_entropy_quadrature(FOUR, [1e6])[0] == pytest.approx(math.log(4), abs=1e-3)


def test_local_maxima_reports_every_peak():
    x = np.linspace(0, 10, 2001)
    y = np.exp(-((x - 3) ** 2)) + 0.5 * np.exp(-((x - 7) ** 2) / 0.5)
    xs, ys = I.local_maxima(x, y)
    np.testing.assert_allclose(xs, [3.0, 7.0], atol=1e-4)
    # the four-class rate in log-delta has its decisions as separate peaks
    dls = np.geomspace(0.05, 2000, 1500)
    xs, _ = I.local_maxima(np.log(dls), I.entropy_rate_quadrature(FOUR, dls) * dls)
    assert xs.size >= 2


def test_per_class_profiles():
    dls = np.geomspace(0.05, 500, 50)
    restricted = [I.class_restricted_entropy_quadrature(FOUR, dls, k) for k in range(4)]
    np.testing.assert_allclose(
        np.mean(restricted, axis=0), I.conditional_entropy_quadrature(FOUR, dls), rtol=1e-10
    )
    # the isolated class -4 vs the close pair (6, 8): 6 and 8 stay confused longer
    ovr = [I.conditional_entropy_quadrature(FOUR, [4.0], I.one_vs_rest(k, 4))[0] for k in range(4)]
    assert ovr[2] > ovr[1] and ovr[3] > ovr[1]


@pytest.mark.parametrize("process", ["ou", "vp-linear", "ddpm"])
def test_online_classifier_is_exact_on_gaussian_components(process):
    mix = GaussianMixture.isotropic(
        [0.2, 0.3, 0.5], [[-3.0, 0.0], [0.0, 2.0], [2.5, -1.0]], [0.3, 0.0, 0.8]
    )
    rng = np.random.default_rng(2)
    from physdiff.processes import get_process

    proc = get_process(process)
    t0 = 0.8 * proc.t_max if process != "ddpm" else 600.0
    view = mix.in_frame(proc, t0)
    x0 = view.sample(300, rng)
    clf = I.OnlineClassifier(as_conditional(mix).class_models(), proc, start=view.posterior(x0))
    t1 = proc.time_of_delta(1e-3) if process != "ddpm" else 1.0
    grid = (
        proc.time_grid(60, t_start=t0, t_end=t1) if process != "ddpm" else np.arange(600.0, 0, -10)
    )
    out = sampling.sample(
        mix, 300, rng, method="ddpm", process=proc, times=grid, x_start=x0, record=clf.recorder()
    )
    exact = mix.in_frame(proc, float(out.times[-1])).posterior(out.x)
    np.testing.assert_allclose(clf.posterior, exact, atol=1e-10)


def test_online_classifier_along_trajectories_gives_the_entropy_profile():
    rng = np.random.default_rng(4)
    t0 = 3.0
    view = FOUR.in_frame("ou", t0)
    x0 = view.sample(4000, rng)
    clf = I.OnlineClassifier(as_conditional(FOUR).class_models(), "ou", start=view.posterior(x0))
    sampling.sample(
        FOUR,
        4000,
        rng,
        method="euler-maruyama",
        process="ou",
        times=np.linspace(t0, 0.05, 120),
        x_start=x0,
        record=clf.recorder(),
    )
    times, h, se = clf.entropy_profile()
    hq = I.conditional_entropy_quadrature(FOUR, np.expm1(2 * times))
    # Euler-Maruyama trajectories: marginals exact up to the discretisation error
    assert np.all(np.abs(h - hq) <= 4 * se + 0.02)


def test_errors():
    with pytest.raises(InputError, match="out of range"):
        I.one_vs_rest(4, 4)
    with pytest.raises(InputError, match="not a partition"):
        I.coarse([[0, 1], [1, 2]], 4)
    with pytest.raises(InputError, match="at least two groups"):
        I.coarse([[0, 1, 2, 3]], 4)
    with pytest.raises(InputError, match="sum to one"):
        I.coarse([[0], [1]], 2).group_posterior(np.array([[0.3, 0.3]]))
    with pytest.raises(InputError, match="prior"):
        I.OnlineClassifier(as_conditional(FOUR).class_models(), "ou", prior=[0.5, 0.5, 0.5, 0.5])
    with pytest.raises(InputError, match="k must lie"):
        I.class_restricted_entropy_quadrature(FOUR, [1.0], 7)


# ---------------------------------------------------------------------------------------
# regressions of the defects fixed after the first version
# ---------------------------------------------------------------------------------------
def _ou_classifier(n: int, seed: int, t0: float = 3.0, t_end: float = 0.05, steps: int = 120):
    rng = np.random.default_rng(seed)
    view = FOUR.in_frame("ou", t0)
    x0 = view.sample(n, rng)
    clf = I.OnlineClassifier(as_conditional(FOUR).class_models(), "ou", start=view.posterior(x0))
    sampling.sample(
        FOUR,
        n,
        rng,
        method="euler-maruyama",
        process="ou",
        times=np.linspace(t0, t_end, steps),
        x_start=x0,
        record=clf.recorder(),
    )
    return clf


@pytest.mark.parametrize(
    "partition",
    [I.pairwise(2, 3, 4), I.pairwise(0, 1, 4), I.coarse([[0], [2, 3]], 4)],
    ids=["pairwise-2-3", "pairwise-0-1", "coarse-subset"],
)
def test_entropy_profile_of_a_subset_decision_is_conditional_on_its_classes(partition):
    # a decision between a subset U of the classes is H(G | y, C in U): each trajectory
    # counts with its final posterior mass on U (before the fix: a plain mean over all
    # trajectories, about half the quadrature value for a pairwise decision)
    clf = _ou_classifier(4000, 11)
    times, h, se = clf.entropy_profile(partition)
    hq = I.conditional_entropy_quadrature(FOUR, np.expm1(2 * times), partition)
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(se)) and np.all(se >= 0)
    assert np.all(np.abs(h - hq) <= 4 * se + 0.02)
    # where the decision is still open the error is small against the value itself
    open_ = hq > 0.2
    assert open_.sum() > 10
    np.testing.assert_allclose(h[open_], hq[open_], rtol=0.1)


def test_entropy_profile_full_partition_is_the_plain_mean():
    clf = _ou_classifier(500, 12, steps=30)
    t1, h1, s1 = clf.entropy_profile()
    t2, h2, s2 = clf.entropy_profile(I.coarse([[0], [1], [2], [3]], 4))
    np.testing.assert_allclose(h1, h2, atol=1e-12)
    np.testing.assert_allclose(s1, s2, atol=1e-12)


def test_group_posterior_is_never_nan():
    part = I.pairwise(2, 3, 4)
    post = np.array([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.2, 0.2, 0.3, 0.3]])
    with np.errstate(all="raise"):
        g = part.group_posterior(post)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g.sum(axis=1), 1.0)
    np.testing.assert_allclose(g[2], [0.5, 0.5])
    # no mass on the decision's classes: the decision is uninformed (uniform over groups)
    np.testing.assert_allclose(g[:2], 0.5)
    # subnormal masses keep their ratio
    tiny = np.array([[1.0 - 4e-320, 0.0, 1e-320, 3e-320]])
    np.testing.assert_allclose(part.group_posterior(tiny)[0], [0.25, 0.75], rtol=1e-3)
    # point masses at the end of a chain: the pairwise profile of a delta mixture is finite
    rng = np.random.default_rng(0)
    y = FOUR.sample(50, rng)
    p = FOUR.posterior(y, 1e-6)
    assert np.all(np.isfinite(part.group_posterior(p)))


def test_gauss_hermite_nodes_are_cached_and_read_only():
    a = I._nodes(200)
    b = I._nodes(200)
    assert a[0] is b[0] and a[1] is b[1]
    assert not a[0].flags.writeable and not a[1].flags.writeable
    with pytest.raises(ValueError):
        a[0][0] = 1.0
    assert I._nodes(200.0)[0] is a[0]  # an integral float is the same order
    with pytest.raises(InputError):
        I._nodes(2.5)


def test_local_maxima_ignores_noise_far_below_the_peaks():
    x = np.linspace(0, 10, 2001)
    y = np.exp(-4 * (x - 3) ** 2) + 0.5 * np.exp(-8 * (x - 7) ** 2)
    noisy = y.copy()
    noisy[:10] = 1e-85 * np.array([1, 3, 1, 3, 1, 3, 1, 3, 1, 3])  # rounding noise
    noisy[1950:1953] = [1e-12, 5e-12, 1e-12]
    xs, ys = I.local_maxima(x, noisy)
    np.testing.assert_allclose(xs, [3.0, 7.0], atol=1e-4)
    # every local maximum with the filter off
    xs0, _ = I.local_maxima(x, noisy, rel_height=0.0)
    assert xs0.size == 2 + 4 + 1
    # a genuine small maximum (1e-4 of the largest) is still reported by default
    small = y + 1e-4 * np.exp(-((x - 9.5) ** 2) / 0.01)
    assert I.local_maxima(x, small)[0].size == 3
    # the quadrature rate of the point-mass mixture: no maxima from rounding noise
    dls = np.geomspace(1e-3, 1e4, 1000)
    r = I.entropy_rate_quadrature(FOUR, dls) * dls
    xs, ys = I.local_maxima(np.log(dls), r)
    assert np.all(ys >= 1e-6 * r.max())
    with pytest.raises(InputError, match="rel_height"):
        I.local_maxima(x, y, rel_height=-1.0)


# ---------------------------------------------------------------------------------------
# the update's fast path (closed-form kernels, (K, n) layout) against the formula
# ---------------------------------------------------------------------------------------
def _straightforward_posteriors(models, proc, start, xs, exact):
    """The Bayes update as docs/theory.md writes it, one class at a time: the kernel
    ``N(m_c + r (y_t - m_c), v I + (1 - r)^2 Cov(x0 | y_t, c))`` by a Cholesky factor and
    a triangular solve per class and step, the posterior by log-sum-exp over (n, K)."""
    lp = np.log(start)
    out = [start]
    for (t_prev, x_prev), (t, x) in zip(xs[:-1], xs[1:], strict=True):
        d_t, d_s = float(proc.delta(t_prev)), float(proc.delta(t))
        y_t, y_s = x_prev / float(proc.alpha(t_prev)), x / float(proc.alpha(t))
        r, v = d_s / d_t, d_s * (d_t - d_s) / d_t
        d = x.shape[1]
        ll = np.empty((x.shape[0], len(models)))
        for k, m in enumerate(models):
            m_c = m.denoise(y_t, d_t)
            diff = y_s - (m_c + r * (y_t - m_c))
            cov = v * np.eye(d)
            if exact:
                cov = cov + (1 - r) ** 2 * m.posterior_covariance(y_t[:1], d_t)[0]
            L = np.linalg.cholesky(cov)
            sol = np.linalg.solve(L, diff.T).T
            ll[:, k] = -0.5 * np.sum(sol**2, axis=1) - np.sum(np.log(np.diag(L)))
        lp = lp + ll
        top = lp.max(axis=1, keepdims=True)
        lp = lp - (top + np.log(np.exp(lp - top).sum(axis=1, keepdims=True)))
        out.append(np.exp(lp))
    return np.stack(out)


class _Opaque:
    """A class model the classifier knows only by ``dim`` and ``denoise`` (a network's
    interface): it takes the generic path."""

    def __init__(self, base):
        self.base, self.dim = base, base.dim

    def denoise(self, y, delta):
        return self.base.denoise(y, delta)


def _mixtures():
    from physdiff.ensembles import Gaussian

    rng = np.random.default_rng(8)
    a = rng.standard_normal((3, 3))
    line = GaussianMixture.from_components(
        [0.2, 0.3, 0.5],
        [Gaussian.point_mass([-2.0]), Gaussian([0.5], [[0.5]]), Gaussian([2.5], [[2.0]])],
    )
    space = GaussianMixture.from_components(
        [0.3, 0.2, 0.3, 0.2],
        [
            Gaussian([1.0, -1.0, 0.0], a @ a.T + 0.1 * np.eye(3)),  # anisotropic, full rank
            Gaussian.from_eigen([-1.0, 1.0, 0.5], [[0.6], [0.8], [0.0]], [1.5]),  # rank 1
            Gaussian.point_mass([0.0, 0.0, -1.5]),
            Gaussian([0.5, -0.5, 1.0], 0.7 * np.eye(3)),  # isotropic
        ],
    )
    return {"1-D": line, "3-D": space}


@pytest.mark.parametrize("dim", ["1-D", "3-D"])
@pytest.mark.parametrize("kernel", ["exact", "isotropic", "generic"])
def test_online_update_fast_path_equals_the_straightforward_formula(dim, kernel):
    mix = _mixtures()[dim]
    from physdiff.processes import DDPM

    proc = DDPM()
    grid = np.arange(700.0, 0.0, -9.0)
    view = mix.in_frame(proc, float(grid[0]))
    x0 = view.sample(400, np.random.default_rng(1))
    start = view.posterior(x0)
    xs = []

    def keep(t, x):
        xs.append((t, x.copy()))

    sampling.sample(
        mix, 400, np.random.default_rng(2), method="ddpm", process=proc, times=grid, x_start=x0,
        record=keep,
    )  # fmt: skip
    models = as_conditional(mix).class_models()
    if kernel == "generic":
        models = [_Opaque(m) for m in models]
    exact = kernel == "exact"
    clf = I.OnlineClassifier(models, proc, start=start, exact_kernel=exact)
    for t, x in xs:
        clf.update(t, x)
    ref = _straightforward_posteriors(as_conditional(mix).class_models(), proc, start, xs, exact)
    np.testing.assert_allclose(np.stack(clf.history), ref, rtol=0, atol=1e-12)
    assert clf.times == [float(t) for t, _ in xs]
    # without the history: the same final posterior, nothing recorded
    lean = I.OnlineClassifier(models, proc, start=start, exact_kernel=exact, keep_history=False)
    assert all(lean.update(t, x) is None for t, x in xs)
    assert lean.history == [] and lean.times == []
    np.testing.assert_allclose(lean.posterior, ref[-1], rtol=0, atol=1e-12)
    if exact:  # the exact kernel gives the exact posterior at the end of the chain
        end = mix.in_frame(proc, float(xs[-1][0])).posterior(xs[-1][1])
        np.testing.assert_allclose(clf.posterior, end, atol=1e-9)


def test_online_classifier_refuses_nan_and_wrong_shapes():
    from physdiff.errors import ShapeError

    clf = I.OnlineClassifier(as_conditional(FOUR).class_models(), "ou")
    with pytest.raises(InputError, match="no posterior"):
        clf.posterior  # noqa: B018
    clf.update(2.0, np.zeros((5, 1)))
    with pytest.raises((InputError, ValueError)):
        clf.update(1.0, np.array([[0.0], [np.nan], [0.0], [0.0], [0.0]]))
    with pytest.raises(ShapeError):
        clf.update(1.0, np.zeros((5, 2)))
    with pytest.raises(InputError, match="decrease"):
        clf.update(2.5, np.zeros((5, 1)))


def test_zero_weight_classes_in_a_decision_give_their_exact_limit_not_nan():
    # a class of zero weight is absent: the decision 0-vs-2 is certain (H = 0, rate 0) and
    # the coarse decision {0, 2} vs {1} is the two-component mixture's (brute-force twin)
    m3 = GaussianMixture.isotropic([0.5, 0.5, 0.0], [[-1.0], [1.0], [3.0]], [0.1, 0.1, 0.1])
    m2 = GaussianMixture.isotropic([0.5, 0.5], [[-1.0], [1.0]], [0.1, 0.1])
    deltas = [0.1, 1.0]
    with np.errstate(all="raise"):
        assert np.array_equal(
            I.conditional_entropy_quadrature(m3, deltas, I.pairwise(0, 2, 3)), [0, 0]
        )
        assert np.array_equal(I.entropy_rate_quadrature(m3, deltas, I.pairwise(0, 2, 3)), [0, 0])
        coarse = I.entropy_rate_quadrature(m3, deltas, I.coarse([[0, 2], [1]], 3))
    np.testing.assert_allclose(coarse, I.entropy_rate_quadrature(m2, deltas), rtol=1e-12)


def test_partition_must_fit_the_mixture():
    from physdiff.errors import DomainError, ShapeError

    m = GaussianMixture.isotropic([0.5, 0.5, 0.0, 0.0], [[-1.0], [1.0], [3.0], [4.0]], [0.1] * 4)
    rng = np.random.default_rng(0)
    estimators = [
        lambda p: I.conditional_entropy_quadrature(m, [0.1], p),
        lambda p: I.entropy_rate_quadrature(m, [0.1], p),
        lambda p: I.conditional_entropy_mc(m, [0.1], 10, rng, p),
        lambda p: I.entropy_rate_score_gap(m, [0.1], 10, rng, p),
        lambda p: I.entropy_rate_finite_difference(m, [0.1], 10, rng, p),
    ]
    for f in estimators:
        with pytest.raises(ShapeError, match="partition is over 5 classes"):
            f(I.pairwise(0, 1, 5))
        # zero probability on the union: the MC rejection sampler used to loop forever
        with pytest.raises(DomainError, match=r"partition: the classes \[2, 3\]"):
            f(I.pairwise(2, 3, 4))
        with pytest.raises(InputError, match="partition must be a Partition"):
            f("pairwise:0,1")


def test_mixture_classes_are_the_mixture():
    from physdiff.classes import MixtureClasses

    mix = GaussianMixture.isotropic(
        [0.3, 0.7, 0.0], [[-1.0, 0.0], [1.0, 0.5], [3.0, 1.0]], [0.2, 0.0, 0.1]
    )
    y = np.random.default_rng(1).normal(size=(50, 2)) * 3
    classes = MixtureClasses(mix)
    with np.errstate(all="raise"):
        for what in ("denoise", "score"):
            both = getattr(classes, f"{what}_all")(y, 0.3)
            assert np.array_equal(both.unconditional, getattr(mix, what)(y, 0.3))
            assert np.array_equal(getattr(classes, what)(y, 0.3), getattr(mix, what)(y, 0.3))
            for k, view in enumerate(classes.class_models()):
                # denoise_all forms every component's denoiser from the shared coordinates
                # y U (b_k + U diag(g) U^T y): equal to the component's own to rounding
                want = getattr(mix.components[k], what)(y, 0.3)
                if what == "denoise":
                    np.testing.assert_allclose(both.classes[k], want, rtol=0, atol=1e-14)
                else:
                    assert np.array_equal(both.classes[k], want)
                assert np.array_equal(
                    getattr(view, what)(y, 0.3), getattr(mix.components[k], what)(y, 0.3)
                )


@pytest.mark.parametrize(
    "make",
    [
        # isotropic: one shared identity basis, unequal variances, a point mass among them
        lambda m: GaussianMixture.isotropic([0.2, 0.3, 0.1, 0.4], m, [0.3, 0.7, 0.0, 0.3]),
        # one shared low-rank covariance
        lambda m: GaussianMixture.shared_covariance(
            [0.25] * 4, m, np.diag([2.0, 1.0, 0.5] + [0.0] * 3)
        ),
        # four different covariances: nothing shared
        lambda m: GaussianMixture(
            [0.25] * 4, m, [np.diag(np.linspace(0.1, 1.0, 6) * (k + 1)) for k in range(4)]
        ),
    ],
)
def test_mixture_classes_denoise_all_equals_each_class(make):
    from physdiff.classes import MixtureClasses

    rng = np.random.default_rng(4)
    mix = make(3.0 * rng.standard_normal((4, 6)))
    y = 5.0 * rng.standard_normal((50, 6))
    for order in (None, [2, 0, 3, 1]):  # classes in component order and permuted
        cls = MixtureClasses(mix, order)
        for delta in (0.3, np.full(50, 0.3), np.linspace(0.1, 2.0, 50)):
            got = cls.denoise_all(y, delta)
            assert np.array_equal(got.unconditional, mix.denoise(y, delta))
            for c in range(4):
                want = cls.class_model(c).denoise(y, delta)
                np.testing.assert_allclose(got.classes[c], want, rtol=0, atol=1e-12)
