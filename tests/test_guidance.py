"""physdiff.classes, physdiff.guidance, physdiff.negative_guidance and physdiff.metrics: models
with classes, CFG, negative prompting, dynamic negative guidance and their metrics, against
exact mixtures and the sympy derivations of theory/guidance.py."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from physdiff import DDPM, GaussianMixture, get_process
from physdiff import classes as C
from physdiff import guidance as G
from physdiff import metrics as M
from physdiff import negative_guidance as NG
from physdiff.ensembles import FrameView, ScoreModel
from physdiff.errors import DomainError, InputError, NotSupportedError, ShapeError
from physdiff.sampling import Dynamics, PosteriorStep, sample
from theory import guidance as th

R = sp.Rational


def _mix1() -> GaussianMixture:
    """1-D, three classes, one a point mass."""
    return GaussianMixture.isotropic([0.2, 0.3, 0.5], [[-2.0], [0.5], [3.0]], [0.3, 0.0, 0.5])


def _mix2() -> GaussianMixture:
    """2-D, three classes with full covariances."""
    covs = [
        np.array([[0.5, 0.2], [0.2, 0.3]]),
        np.array([[0.2, -0.1], [-0.1, 0.4]]),
        0.3 * np.eye(2),
    ]
    return GaussianMixture([0.25, 0.35, 0.4], [[-2.0, 0.0], [1.0, 1.5], [1.5, -1.5]], covs)


def _separated1() -> GaussianMixture:
    """1-D, well separated: class shares are read off without misclassification."""
    return GaussianMixture.isotropic([0.2, 0.3, 0.5], [[-3.0], [0.0], [3.0]], [0.16] * 3)


def _separated2() -> GaussianMixture:
    means = [[-3.0, -3.0], [3.0, -3.0], [-3.0, 3.0], [3.0, 3.0]]
    return GaussianMixture.isotropic([0.1, 0.2, 0.3, 0.4], means, [0.2] * 4)


def _rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


class FakeNet:
    """A class-conditional 'network' (the duck type of physdiff.nn.NetworkScoreModel) that
    returns a mixture's exact scores; the null label is the whole mixture."""

    def __init__(self, mix: GaussianMixture, label: int | None = None):
        self.mix, self.label = mix, label
        self.n_classes, self.dim = mix.n_components, mix.dim

    def conditional(self, label):
        return FakeNet(self.mix, label)

    def unconditional(self):
        return FakeNet(self.mix, None)

    def _m(self):
        return self.mix if self.label is None else self.mix.component(self.label)

    def score(self, y, delta):
        return self._m().score(y, delta)

    def denoise(self, y, delta):
        return self._m().denoise(y, delta)


# -- the exact negative-conditional score --------------------------------------------------------
@pytest.mark.parametrize("mix", [_mix1(), _mix2()], ids=["1d", "2d"])
@pytest.mark.parametrize("dl", [0.05, 0.5, 3.0])
def test_negative_score_is_kept_mixture_score(mix, dl):
    mc = C.MixtureClasses(mix)
    rng = np.random.default_rng(0)
    _, y = mix.sample_noised(400, dl, rng)
    y = np.concatenate([y, 4 * rng.standard_normal((100, mix.dim))])  # far points too
    for c in range(mc.n_classes):
        kept = mc.kept_model(c)
        assert np.allclose(kept.weights, np.delete(mix.weights, c) / (1 - mix.weights[c]))
        ref = kept.score(y, dl)
        # the transform, at lambda = 1 with the exact posterior: everywhere, p(c|y) -> 1 included
        got = NG.DynamicNegativeGuidance(mix, c, 1.0).score(y, dl)
        assert _rel(got, ref) < 1e-10
        # the textbook form s - p/(1-p) (s_c - s), where it does not cancel (p < 0.9)
        p = mc.class_posterior(y, dl)[:, c]
        ok = p < 0.9
        s, s_c = mix.score(y[ok], dl), mix.component(c).score(y[ok], dl)
        assert _rel(NG.negative_conditional_score(s, s_c, p[ok]), ref[ok]) < 1e-10
        # the same form through a generic model with a posterior callable
        generic = C.ModelClasses(
            mix, mix.components, class_weights=mix.weights, posterior=mc.class_posterior
        )
        assert _rel(NG.DynamicNegativeGuidance(generic, c).score(y[ok], dl), ref[ok]) < 1e-10
        # Tweedie: the guided denoiser
        den = NG.DynamicNegativeGuidance(mix, c).denoise(y, dl)
        assert _rel(den, kept.denoise(y, dl)) < 1e-10


def test_grouped_classes():
    """Classes made of several components: posteriors add, the kept model is the rest."""
    mix = _mix1()
    mc = C.MixtureClasses(mix, labels=[0, 0, 1])
    y = np.linspace(-4, 5, 31)[:, None]
    post = mc.class_posterior(y, 0.4)
    comp = mix.posterior(y, 0.4)
    assert np.allclose(post, np.stack([comp[:, 0] + comp[:, 1], comp[:, 2]], axis=1), atol=1e-14)
    assert np.allclose(mc.class_weights, [0.5, 0.5])
    assert (
        _rel(
            mc.class_model(0).score(y, 0.4),
            GaussianMixture.from_components([0.4, 0.6], mix.components[:2]).score(y, 0.4),
        )
        < 1e-13
    )
    got = NG.DynamicNegativeGuidance(mc, 0).score(y, 0.4)
    assert _rel(got, mix.component(2).score(y, 0.4)) < 1e-12
    assert np.array_equal(mc.classify(np.array([[-2.0], [0.5], [3.0]])), [0, 0, 1])
    with pytest.raises(InputError, match="labels"):
        C.MixtureClasses(mix, labels=[0, 2, 2])
    with pytest.raises(ShapeError, match="labels"):
        C.MixtureClasses(mix, labels=[0, 1])


# -- sympy ---------------------------------------------------------------------------------------
def test_theory_negative_score_identity():
    formula, target = th.negative_score_identity()
    assert sp.simplify(formula - target) == 0
    formula, rest = th.dng_rest_form()
    assert sp.simplify(formula - rest) == 0


def test_theory_mixture_matches_physdiff():
    W, M, V = [R(1, 5), R(3, 10), R(1, 2)], [-2, R(1, 2), 3], [R(3, 10), 0, R(1, 2)]
    mix = _mix1()
    for c in range(3):
        formula, kept, log_diff = th.mixture_negative_score(W, M, V, c)
        # 60-digit arithmetic (mpmath): the differences vanish to that precision
        f = sp.lambdify((th.x, th.delta), [formula - kept, log_diff - kept, kept], "mpmath")
        for xv, dv in [(-1, 0.5), (0.3, 2), (2, 0.1), (-3.5, 0.05)]:
            with mpmath.workdps(60):
                d1, d2, exact = f(mpmath.mpf(xv), mpmath.mpf(dv))
                assert abs(d1) < 1e-40 and abs(d2) < 1e-40
                exact = float(exact)
            y = np.array([[float(xv)]])
            assert NG.DynamicNegativeGuidance(mix, c).score(y, float(dv))[0, 0] == pytest.approx(
                exact, rel=1e-12, abs=1e-12
            )


def test_theory_ddpm_kernel_and_bayes_update():
    mean_ve, mean_ho, var_ve, beta_tilde = th.ddpm_kernel_mean()
    assert sp.simplify(mean_ve - mean_ho) == 0
    assert sp.simplify(var_ve - beta_tilde) == 0
    log_ratio, dng = th.bayes_update_exponent()
    assert sp.simplify(sp.expand_log(log_ratio - dng, force=True)) == 0


def test_reverse_kernel_is_ho_eq11_on_ddpm_steps():
    """Our VE-frame kernel, with eps from FrameView (eps = -sigma score_t), is Ho et al.'s
    mu = (x_k - beta_k / sqrt(1 - abar_k) eps) / sqrt(1 - beta_k), variance beta~_k; and it is
    exactly the kernel PosteriorStep(eta = 1) samples."""
    proc = DDPM()
    mix = _mix2()
    rng = np.random.default_rng(1)
    b, ab = proc.betas, proc.alpha_bars
    for k in (1, 7, 250, 999):
        fv = FrameView(mix, proc, k)
        x = fv.sample(16, rng)
        mean, var = NG.reverse_kernel(proc, x, fv.denoise(x), k, k - 1)
        ho = (x - b[k] / np.sqrt(1 - ab[k]) * fv.eps(x)) / np.sqrt(1 - b[k])
        assert _rel(mean, ho) < 1e-12
        assert var == pytest.approx(proc.beta_tilde(k), rel=1e-12)
        dyn = Dynamics(mix, proc)
        step, _ = PosteriorStep(1.0, "ddpm").step(dyn, x, k, k - 1, np.random.default_rng(5), None)
        z = np.random.default_rng(5).standard_normal(x.shape)
        assert _rel(step, mean + np.sqrt(var) * z) < 1e-12
    with pytest.raises(InputError, match="s must be earlier"):
        NG.reverse_kernel(proc, x, x, 3, 5)


def test_eps_language():
    """eps~ = eps - lambda p/(1-p) (eps_c - eps) in any process frame (FrameView)."""
    mix, c, lam = _mix1(), 2, 0.7
    mc = C.MixtureClasses(mix)
    proc = get_process("vp-linear")
    t = 0.3
    fv_u, fv_c = FrameView(mix, proc, t), FrameView(mix.component(c), proc, t)
    fv_g = FrameView(NG.DynamicNegativeGuidance(mix, c, lam), proc, t)
    x = fv_u.sample(200, np.random.default_rng(2))
    p = mc.class_posterior(x / fv_u.alpha, fv_u.delta)[:, c]
    ok = p < 0.9
    e, e_c = fv_u.eps(x[ok]), fv_c.eps(x[ok])
    assert _rel(fv_g.eps(x[ok]), e - (lam * p[ok] / (1 - p[ok]))[:, None] * (e_c - e)) < 1e-10


# -- CFG and negative prompting ------------------------------------------------------------------
def test_cfg_limits_on_mixture():
    mix = _mix2()
    y = mix.sample_noised(50, 0.7, np.random.default_rng(3))[1]
    for c in range(3):
        s, s_c = mix.score(y, 0.7), mix.component(c).score(y, 0.7)
        assert np.allclose(G.ClassifierFreeGuidance(mix, c, 0.0).score(y, 0.7), s, rtol=1e-13)
        assert np.allclose(G.ClassifierFreeGuidance(mix, c, 1.0).score(y, 0.7), s_c, rtol=1e-13)
        g = G.ClassifierFreeGuidance(mix, c, 3.0)
        assert isinstance(g, ScoreModel)
        assert np.allclose(g.score(y, 0.7), 3 * s_c - 2 * s, rtol=1e-12)
        assert np.allclose(g.denoise(y, 0.7), y + 0.7 * g.score(y, 0.7), rtol=1e-13)


def test_cfg_limits_on_network():
    torch = pytest.importorskip("torch")
    from physdiff.nn import Denoiser, NetworkScoreModel, ScoreMLP

    den = Denoiser(ScoreMLP(dim=2, hidden=16, depth=2, n_classes=3, seed=0)).to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random weights everywhere (the last layer starts at zero)
        for prm in den.parameters():
            prm.normal_(0.0, 0.5, generator=gen)
    net = NetworkScoreModel(den, device="cpu")
    y = np.random.default_rng(0).standard_normal((20, 2))
    u, c1 = net.unconditional().score(y, 0.5), net.conditional(1).score(y, 0.5)
    assert not np.allclose(u, c1)  # the label matters
    cond = C.as_conditional(net)
    assert isinstance(cond, C.NetworkClasses) and cond.n_classes == 3
    assert np.allclose(G.ClassifierFreeGuidance(net, 1, 0.0).score(y, 0.5), u, rtol=1e-12)
    assert np.allclose(G.ClassifierFreeGuidance(net, 1, 1.0).score(y, 0.5), c1, rtol=1e-12)
    assert np.allclose(G.NegativePrompt(net, 1, 2.0).score(y, 0.5), 3 * u - 2 * c1, rtol=1e-12)
    assert np.allclose(cond.class_score(1, y, 0.5), c1)
    with pytest.raises(NotSupportedError, match="exact class posterior"):
        NG.DynamicNegativeGuidance(net, 1)
    with pytest.raises(DomainError, match="label"):
        G.ClassifierFreeGuidance(net, 3, 1.0)


def test_np_is_dng_with_constant_posterior():
    mix = _mix1()
    y = np.linspace(-4, 5, 40)[:, None]
    for lam in (0.5, 2.0):
        np_ = G.NegativePrompt(mix, 0, lam).score(y, 0.3)
        assert (
            _rel(NG.DynamicNegativeGuidance(mix, 0, lam, posterior=0.5).score(y, 0.3), np_) < 1e-13
        )
        p0 = 0.2  # p/(1-p) = 1/4
        got = NG.DynamicNegativeGuidance(mix, 0, 4 * lam, posterior=p0).score(y, 0.3)
        assert _rel(got, np_) < 1e-13


# -- sampling with guidance ----------------------------------------------------------------------
def _check_shares(mc: C.MixtureClasses, c: int, x: np.ndarray, k_se: float = 4.0):
    lab = mc.classify(x)
    n = lab.shape[0]
    # nothing in the removed class, up to discretisation (Heun at 100 steps leaves 3/8000)
    assert np.mean(lab == c) <= 1e-3
    target = np.delete(mc.class_weights, c)
    target /= target.sum()
    got = np.delete(np.bincount(lab, minlength=mc.n_classes), c) / n
    se = np.sqrt(target * (1 - target) / n)
    assert np.all(np.abs(got - target) < k_se * se), (got, target, se)
    return got, target, se


@pytest.mark.parametrize(
    "mixture, c, n, seed, method, process, n_steps",
    [
        # Heun on the probability-flow ODE (OU), and DDPM ancestral
        (_separated1, 1, 6000, 1, "heun", "ou", 100),
        (_separated2, 2, 4000, 4, "ddpm", "ddpm", 150),
    ],
    ids=["1d-heun-ou", "2d-ddpm"],
)
def test_dng_exact_samples_without_the_class(mixture, c, n, seed, method, process, n_steps):
    mix = mixture()
    res = sample(
        NG.DynamicNegativeGuidance(mix, c),
        n,
        np.random.default_rng(seed),
        method=method,
        process=process,
        n_steps=n_steps,
    )
    _check_shares(C.MixtureClasses(mix), c, res.y)


def test_dng_generic_posterior_samples_without_the_class_1d():
    mix = _separated1()
    mc = C.MixtureClasses(mix)
    # DDPM ancestral through the generic form (a posterior callable)
    generic = NG.DynamicNegativeGuidance(mix, 1, posterior=mc.class_posterior)
    res = sample(
        generic, 6000, np.random.default_rng(2), method="ddpm", process="ddpm", n_steps=150
    )
    _check_shares(mc, 1, res.y)
    # without guidance the class is there (the test can fail)
    res = sample(mix, 4000, np.random.default_rng(3), method="heun", process="ou", n_steps=50)
    assert np.mean(mc.classify(res.y) == 1) > 0.25


def test_np_large_scale_distorts_kept_classes():
    """NP at a large scale removes the class too, but moves the kept classes (measured by the
    sliced W2 to kept-class data); DNG (lambda = 1, exact posterior) does not. Also the
    trade-off curve: at scale 0 the removed class keeps its weight."""
    mix = _separated1()
    mc = C.MixtureClasses(mix)
    c = 0
    ref = mc.kept_model(c).sample(4000, np.random.default_rng(5))
    opts = dict(
        classify=mc.classify,
        removed=c,
        target=mc.class_weights,
        reference=ref,
        method="heun",
        process="ou",
        n_steps=60,
    )
    np_curve = M.tradeoff_curve(
        lambda l: G.NegativePrompt(mix, c, l), [0.0, 3.0], 4000, np.random.default_rng(6), **opts
    )
    dng_curve = M.tradeoff_curve(
        lambda l: NG.DynamicNegativeGuidance(mix, c, l),
        [1.0],
        4000,
        np.random.default_rng(7),
        **opts,
    )
    assert np_curve.removed_share.shape == (2,) and len(np_curve.metrics) == 2
    f0, se0 = np_curve.removed_share[0], np_curve.removed_share_se[0]
    assert abs(f0 - 0.2) < 4 * se0
    assert np_curve.removed_share[1] < 0.005 and dng_curve.removed_share[0] < 0.005
    q_np, q_dng = np_curve.quality[1], dng_curve.quality[0]
    se = np.hypot(np_curve.quality_se[1], dng_curve.quality_se[0])
    assert q_np - q_dng > 10 * se, (q_np, q_dng, se)
    assert dng_curve.kl[0] < 10 * dng_curve.metrics[0].balance.floor + 1e-3
    assert np_curve.kl[1] > 0.1


# -- tracked DNG ---------------------------------------------------------------------------------
def test_tracked_dng_tracks_the_exact_posterior():
    """DDPM, 1000 ancestral steps, 1-D mixture, tau = 1: p^ starts at the prior (= the class
    weight, which is the exact posterior at the start up to 0.004 on average), stays in
    [p_min, p_max] and follows the exact p(c | x_t): observed mean |p^ - p| <= 0.004 at every
    step (0.04 with tau = 0.5)."""
    mix = _separated1()
    mc = C.MixtureClasses(mix)
    proc = DDPM()
    c = 0
    dng = NG.TrackedDNG(mix, c, 1.0, prior=0.2, tau=1.0)
    assert dng.stochastic and dng.name == "dng-tracked"

    def exact(t, x):
        return mc.class_posterior(x / proc.alpha(t), proc.delta(t))[:, c]

    res = dng.sample(1000, np.random.default_rng(0), n_steps=999, record=exact)
    H, E = res.state.history, np.stack(res.records)
    assert H.shape == E.shape == (1000, 1000)
    assert np.array_equal(res.state.history_times, res.times)
    assert np.all(H[0] == pytest.approx(0.2, rel=1e-14))
    assert np.all(H >= 1e-6 * (1 - 1e-12)) and np.all(H <= 0.99 * (1 + 1e-12))
    err = np.abs(H - E).mean(axis=1)
    assert err.max() < 0.01, err.max()
    assert res.n_evals == 2 * 999
    share = np.mean(mc.classify(res.y) == c)
    assert share < 0.02  # 0.0075 observed; p^ <= 0.99 caps the push at 99 times
    # a badly chosen temperature tracks worse
    bad = NG.TrackedDNG(mix, c, 1.0, tau=0.5)
    res2 = bad.sample(300, np.random.default_rng(0), n_steps=999, record=exact)
    assert np.abs(res2.state.history - np.stack(res2.records)).mean(axis=1).max() > 3 * err.max()


def test_tracked_dng_network_path_and_any_grid():
    """Through the network adapter (a duck-typed conditional model) the method gives the same
    chain as on the mixture; on an OU grid (VE-frame posterior step) it runs and tracks."""
    mix = _separated1()
    a = NG.TrackedDNG(mix, 0)
    b = NG.TrackedDNG(FakeNet(mix), 0)
    assert isinstance(b.conditional, C.NetworkClasses)
    ra = a.sample(300, np.random.default_rng(1), n_steps=100)
    rb = sample(
        b.unconditional, 300, np.random.default_rng(1), method=b, process="ddpm", n_steps=100
    )
    assert np.allclose(ra.x, rb.x, rtol=1e-10, atol=1e-12)
    assert np.allclose(ra.state.history, rb.state.history, rtol=1e-10, atol=1e-14)
    # a second run restarts at the prior
    rb2 = b.sample(50, np.random.default_rng(2), n_steps=10)
    assert rb2.state.history.shape == (11, 50)
    assert np.all(rb2.state.history[0] == pytest.approx(0.2))
    # OU process, uniform grid in time, ending at delta = 0: the last step keeps p^
    mc = C.MixtureClasses(mix)
    ou = get_process("ou")
    res = a.sample(
        1000,
        np.random.default_rng(3),
        process=ou,
        n_steps=400,
        record=lambda t, x: mc.class_posterior(x / ou.alpha(t), max(ou.delta(t), 1e-12))[:, 0],
    )
    H, E = res.state.history, np.stack(res.records)
    assert np.array_equal(H[-1], H[-2])
    assert np.abs(H - E)[:-1].mean(axis=1).max() < 0.02


def test_tracked_dng_update_rule():
    """tau = 0, offset 0: p^ stays at the prior (then DNG is NP with lambda p/(1-p)); with an
    offset the first update is exactly exp(offset / (2 beta~))."""
    mix = _separated1()
    proc = DDPM()
    m = NG.TrackedDNG(mix, 0, 0.0, tau=0.0)
    h = m.sample(20, np.random.default_rng(0), n_steps=999).state.history
    assert np.all(h == pytest.approx(0.2, rel=1e-13))
    m = NG.TrackedDNG(mix, 0, 0.0, tau=0.0, offset=1e-4)
    h = m.sample(20, np.random.default_rng(0), times=[999.0, 998.0, 997.0]).state.history
    assert h[1] == pytest.approx(0.2 * np.exp(1e-4 / (2 * proc.beta_tilde(999))))
    # tau = 0 with the prior's weight is NP with lambda = p / (1 - p): same chain
    tr = NG.TrackedDNG(mix, 0, 2.0, tau=0.0, prior=0.2)
    r1 = tr.sample(200, np.random.default_rng(4), n_steps=50)
    r2 = sample(
        G.NegativePrompt(mix, 0, 0.5),
        200,
        np.random.default_rng(4),
        method="ddpm",
        process="ddpm",
        n_steps=50,
    )
    assert np.allclose(r1.x, r2.x, rtol=1e-9, atol=1e-12)


# -- metrics -------------------------------------------------------------------------------------
def test_class_kl_and_removed_share():
    lab = np.array([1] * 30 + [2] * 70)
    bal = M.class_kl(lab, [0.2, 0.3, 0.5], removed=0)
    assert bal.kl_plugin == pytest.approx(0.375 * np.log(0.375 / 0.3) + 0.625 * np.log(0.625 / 0.7))
    q = (np.array([30, 70]) + 0.5) / 101
    assert bal.kl == pytest.approx(0.375 * np.log(0.375 / q[0]) + 0.625 * np.log(0.625 / q[1]))
    assert bal.missing == () and bal.n_kept == 100 and bal.floor == pytest.approx(1 / 200)
    # a missing kept class: the plug-in is infinite, the smoothed estimate finite
    miss = M.class_kl(np.array([2] * 50 + [0] * 5), [0.2, 0.3, 0.5], removed=0)
    assert miss.kl_plugin == np.inf and np.isfinite(miss.kl) and miss.missing == (1,)
    assert M.removed_share(np.array([0, 0, 1, 2]), 0) == pytest.approx((0.5, 0.25))
    with pytest.raises(DomainError, match="labels"):
        M.class_kl(np.array([3]), [0.5, 0.5], removed=0)
    with pytest.raises(InputError, match="target"):
        M.class_kl(lab, [0.2, 0.3, 0.4], removed=0)


def test_sliced_wasserstein():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 1))
    assert M.sliced_wasserstein(a, a, rng)[0] == pytest.approx(0, abs=1e-14)
    assert M.sliced_wasserstein(a + 0.7, a, rng)[0] == pytest.approx(0.7, rel=1e-12)
    # unequal sizes, by hand: W2^2({0, 1}, {0, 1/2, 1}) = 1/12
    v, _ = M.sliced_wasserstein(np.array([[0.0], [1.0]]), np.array([[0.0], [0.5], [1.0]]), rng)
    assert v == pytest.approx(np.sqrt(1 / 12), rel=1e-12)
    # d-D translate by a: SW2^2 = E (theta . a)^2 = |a|^2 / d
    b = rng.standard_normal((400, 3))
    shift = np.array([1.0, -2.0, 0.5])
    v, se = M.sliced_wasserstein(b + shift, b, rng, n_projections=256)
    assert abs(v - np.linalg.norm(shift) / np.sqrt(3)) < 4 * se
    with pytest.raises(ShapeError):
        M.sliced_wasserstein(a, b, rng)


# -- bad input -----------------------------------------------------------------------------------
def test_bad_input():
    mix = _mix1()
    with pytest.raises(DomainError, match="label must lie in \\[0, 2\\]"):
        NG.DynamicNegativeGuidance(mix, 3)
    with pytest.raises(DomainError, match="label"):
        NG.TrackedDNG(mix, -1)
    with pytest.raises(DomainError, match="scale must lie in \\[0, inf\\)"):
        G.NegativePrompt(mix, 0, -1.0)
    with pytest.raises(DomainError, match="scale"):
        G.ClassifierFreeGuidance(mix, 0, -0.5)
    with pytest.raises(DomainError, match="p_min must be below p_max"):
        NG.TrackedDNG(mix, 0, p_min=0.5, p_max=0.5)
    with pytest.raises(DomainError, match="p_min must be below p_max"):
        NG.DynamicNegativeGuidance(mix, 0, p_min=0.9, p_max=0.1)
    with pytest.raises(DomainError, match="p_max"):
        NG.TrackedDNG(mix, 0, p_max=1.0)
    for prior in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(DomainError, match="prior must lie in \\(0, 1\\)"):
            NG.TrackedDNG(mix, 0, prior=prior)
    with pytest.raises(DomainError, match="prior must lie in \\[p_min, p_max\\]"):
        NG.TrackedDNG(mix, 0, prior=0.995)
    with pytest.raises(DomainError, match="tau"):
        NG.TrackedDNG(mix, 0, tau=-1.0)
    with pytest.raises(DomainError, match="eta"):
        NG.TrackedDNG(mix, 0, eta=0.0)
    with pytest.raises(InputError, match="model must be"):
        C.as_conditional(object())
    with pytest.raises(DomainError, match="scales"):
        M.tradeoff_curve(
            lambda l: G.NegativePrompt(mix, 0, l),
            [1.0, -1.0],
            10,
            np.random.default_rng(0),
            classify=C.MixtureClasses(mix).classify,
            removed=0,
            target=mix.weights,
            reference=np.zeros((5, 1)),
        )
    # a posterior estimate whose rows do not sum to one
    bad = NG.DynamicNegativeGuidance(mix, 0, posterior=lambda y, d: np.full((y.shape[0], 3), 0.5))
    with pytest.raises(InputError, match="sum to 1"):
        bad.score(np.zeros((2, 1)), 1.0)
    with pytest.raises(DomainError, match="p must lie in"):
        NG.negative_conditional_score(np.zeros((1, 1)), np.zeros((1, 1)), [1.0])
    with pytest.raises(InputError, match="zero probability"):
        G.ClassifierFreeGuidance(GaussianMixture([1.0, 0.0], [[0.0], [1.0]]), 1, 1.0)
    with pytest.raises(ShapeError, match="y must have shape"):
        NG.DynamicNegativeGuidance(mix, 0).score(np.zeros((3, 2)), 1.0)


def test_cfg_and_np_skip_the_posterior_and_kept_score():
    # another class of zero weight: CFG/NP need neither p(c | y) nor the kept-class score,
    # whose softmax over zero-weight components only would be 0/0
    mix = GaussianMixture.isotropic([1.0, 0.0], [[-1.0], [1.0]], [0.1, 0.1])
    y = np.array([[0.2], [1e3]])
    s, s_c = mix.score(y, 0.5), mix.components[0].score(y, 0.5)
    with np.errstate(all="raise"):
        np.testing.assert_allclose(
            G.ClassifierFreeGuidance(mix, 0, 2.0).score(y, 0.5), s + 2 * (s_c - s)
        )
        np.testing.assert_allclose(G.NegativePrompt(mix, 0, 2.0).score(y, 0.5), s - 2 * (s_c - s))


def test_tracked_dng_runs_keep_their_own_state():
    """The method is frozen configuration: two runs stepped alternately (and a run nested
    inside another's recorder) each keep their own p^, equal to the run made alone."""
    mix = _separated1()
    dng = NG.TrackedDNG(mix, 0, 1.0)
    proc = DDPM()
    grid = np.arange(999.0, -1.0, -25.0)
    alone = [dng.sample(40 + 10 * i, np.random.default_rng(i), times=grid) for i in range(2)]
    rngs = [np.random.default_rng(i) for i in range(2)]
    dyns = [Dynamics(dng.unconditional, proc) for _ in range(2)]
    xs = [proc.sigma(grid[0]) * r.standard_normal((40 + 10 * i, 1)) for i, r in enumerate(rngs)]
    states = [dng.init(d, x, grid[0]) for d, x in zip(dyns, xs, strict=True)]
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        for i in range(2):
            xs[i], states[i] = dng.step(dyns[i], xs[i], t, s, rngs[i], states[i])
    for i in range(2):
        assert np.array_equal(xs[i], alone[i].x)
        assert np.array_equal(states[i].history, alone[i].state.history)
        assert states[i].history.shape == (grid.size, 40 + 10 * i)
    # a second run started from inside the first one's recorder does not disturb it
    inner = []

    def record(t, x):
        if not inner:
            inner.append(dng.sample(30, np.random.default_rng(7), times=grid))
        return None

    outer = dng.sample(40, np.random.default_rng(0), times=grid, record=record)
    assert np.array_equal(outer.state.history, alone[0].state.history)
    assert inner[0].state.history.shape == (grid.size, 30)
    with pytest.raises(InputError, match="state must be a TrackedDNGState"):
        dng.step(dyns[0], xs[0], grid[-2], grid[-1], rngs[0], None)


def test_step_records_hand_the_denoised_estimate_to_recorders():
    """A StepRecorder reads each step's record: the schedule, and the model's denoised
    estimate at the previous grid state (what the step used), equal to E[x0 | x_t]."""
    from physdiff.sampling import StepRecorder

    mix = _mix2()
    proc = DDPM()
    grid = np.arange(999.0, 0.0, -111.0)
    seen = []
    res = sample(mix, 20, np.random.default_rng(0), method="ddpm", process=proc, times=grid,
                 record=StepRecorder(seen.append), return_trajectory=True)  # fmt: skip
    plain = sample(mix, 20, np.random.default_rng(0), method="ddpm", process=proc, times=grid)
    assert np.array_equal(res.x, plain.x)
    assert seen[0].evaluation is None and seen[0].denoised is None
    for i, rec in enumerate(seen[1:], start=1):
        assert rec.index == i and rec.t == grid[i] and rec.coefficients.delta == proc.delta(grid[i])
        x_prev = res.trajectory[i - 1]
        want = mix.denoise(x_prev / proc.alpha(grid[i - 1]), proc.delta(grid[i - 1]))
        np.testing.assert_allclose(rec.denoised, want, rtol=0, atol=1e-12)
        assert rec.evaluation.t == grid[i - 1] and rec.evaluation.classes is None
    # a model with classes gives every class's estimate when the recorder asks for them
    cls = C.MixtureClasses(mix)
    seen.clear()
    sample(cls, 20, np.random.default_rng(0), method="ddpm", process=proc, times=grid,
           record=StepRecorder(seen.append, wants_classes=True))  # fmt: skip
    ev = seen[1].evaluation
    y, d = ev.y, ev.delta
    for k in range(3):
        np.testing.assert_allclose(
            ev.class_denoised[k], mix.components[k].denoise(y, d), atol=1e-12
        )
