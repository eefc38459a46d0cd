"""Samplers: convergence orders against the exact Gaussian flow, exact moment recursions,
Monte Carlo agreement with the data distribution, Ho et al.'s DDPM update, late
initialisation, the recorder and the errors.

For Gaussian data N(mu, C) everything is exact: the marginal at time t is
N(alpha mu, alpha^2 C + sigma^2 I), and the probability-flow ODE maps the VE coordinate as
(y - mu) -> U diag(sqrt((lam + delta_s)/(lam + delta_t))) U^T (y - mu) (C = U diag(lam) U^T).
Every sampler is affine in the particles plus Gaussian noise on such data, so the mean and
covariance of its chain can be propagated exactly with matrices (the "moment twins" below).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from physdiff.ensembles import Gaussian, GaussianMixture
from physdiff.errors import DomainError, InputError, PhysdiffError, ShapeError
from physdiff.processes import DDPM, EDM, OU, VE, Process, VPCosine, VPLinear
from physdiff.sampling import (
    METHODS,
    GaussianStart,
    PosteriorStep,
    RungeKutta,
    SampleResult,
    ddim,
    ddpm_ancestral,
    euler_maruyama,
    euler_ode,
    gaussian_start,
    heun,
    sample,
)

MU = np.array([1.0, -0.5])
C = np.array([[1.0, 0.3], [0.3, 0.5]])
GAUSS = Gaussian(MU, C)
MIX = GaussianMixture.isotropic([0.3, 0.7], [[-2.0], [1.5]], [0.3, 0.5])
I2 = np.eye(2)
NS = np.array([64, 128, 256, 512])


def _slope(ns, errs) -> float:
    """Order of convergence: minus the slope of log(error) against log(n_steps)."""
    return -float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


def _exact_flow(proc: Process, x: np.ndarray, t: float, s: float) -> np.ndarray:
    """The Gaussian probability-flow map from time t to s, in the process frame."""
    lam, U = GAUSS.eigen
    y = x / proc.alpha(t)
    r = ((y - MU) @ U) * np.sqrt((lam + proc.delta(s)) / (lam + proc.delta(t)))
    return proc.alpha(s) * (MU + r @ U.T)


def _exact_marginal(proc: Process, t: float):
    a, s = proc.alpha(t), proc.sigma(t)
    return a * MU, a * a * C + s * s * I2


def _karras_times(
    proc: Process, n_steps: int, t_start: float | None = None, rho: float = 7.0
) -> np.ndarray:
    """A grid uniform in sqrt(delta)^(1/rho) (Karras et al. 2022, Eq. 5) for any process,
    from t_start (default t_max); processes that reach delta = 0 get sqrt(delta) down to
    0.002, then t_min."""
    t0 = proc.t_max if t_start is None else t_start
    smax, smin = np.sqrt(proc.delta(t0)), max(np.sqrt(proc.delta_min), 2e-3)
    to_zero = proc.delta_min < smin**2
    u = np.linspace(0.0, 1.0, n_steps if to_zero else n_steps + 1)
    sig = (smax ** (1 / rho) + u * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    t = np.asarray(proc.time_of_delta(np.minimum(sig**2, proc.delta(t0))))
    t[0] = t0
    return np.append(t, proc.t_min) if to_zero else t


# ---------------------------------------------------------------------------------------
# moment twins: the samplers' chains on Gaussian data, propagated exactly
# ---------------------------------------------------------------------------------------
def _em_moments(proc: Process, grid):
    """Euler-Maruyama x_s = M x + b + sqrt(g^2 h) z with score_t(x) = -(C + D)^-1 (x - a mu)/a^2."""
    m, S = _exact_marginal(proc, grid[0])
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        h, a, D = t - s, proc.alpha(t), proc.delta(t)
        f, g2 = proc.drift_coefficient(t), proc.diffusion(t) ** 2
        P = np.linalg.inv(C + D * I2)
        M = (1 - h * f) * I2 - (h * g2 / a**2) * P
        m = M @ m + (h * g2 / a) * P @ MU
        S = M @ S @ M.T + g2 * h * I2
    return m, S


def _posterior_moments(proc: Process, grid, eta: float):
    """DDIM(eta) in the VE frame: y_s - mu = [(1 - k) K + k I](y_t - mu) + c z with
    K = C (C + D_t)^-1, k = sqrt((D_s - c^2)/D_t), c^2 = eta^2 D_s (D_t - D_s)/D_t."""
    m, S = np.zeros(2), C + proc.delta(grid[0]) * I2
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        Dt, Ds = proc.delta(t), proc.delta(s)
        c2 = eta**2 * Ds * (Dt - Ds) / Dt
        k = np.sqrt((Ds - c2) / Dt)
        A = (1 - k) * C @ np.linalg.inv(C + Dt * I2) + k * I2
        m, S = A @ m, A @ S @ A.T + c2 * I2
    a = proc.alpha(grid[-1])
    return a * (m + MU), a * a * S


def _weak_error(proc, grid, moments):
    m, S = moments
    me, Se = _exact_marginal(proc, grid[-1])
    return np.abs(m - me).max() + np.abs(S - Se).max()


# ---------------------------------------------------------------------------------------
# convergence orders
# ---------------------------------------------------------------------------------------
ODE_PROCS = {
    "ou": (OU(), None),
    "vp-linear": (VPLinear(), None),
    "vp-cosine": (VPCosine(), None),
    "ve": (VE(), None),
    "edm": (EDM(), None),
}


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("ddim", 1)])
@pytest.mark.parametrize("pname", list(ODE_PROCS))
def test_deterministic_order_against_exact_gaussian_flow(method, order, pname):
    proc, t_end = ODE_PROCS[pname]
    if method == "ddim" and pname == "ou":
        t_end = 0.05  # see test_ddim_on_ou_down_to_delta_zero_is_slower_than_first_order
    x0 = gaussian_start(GAUSS, None, proc, proc.t_max)(64, np.random.default_rng(1))
    errs = []
    for n in NS:
        res = sample(
            GAUSS,
            None,
            np.random.default_rng(0),
            method=method,
            process=proc,
            n_steps=int(n),
            t_end=t_end,
            x_start=x0,
        )
        errs.append(np.max(np.abs(res.x - _exact_flow(proc, x0, res.times[0], res.times[-1]))))
    assert errs[-1] < errs[0]
    assert _slope(NS, errs) == pytest.approx(order, abs=0.25)


def test_ddim_on_ou_down_to_delta_zero_is_slower_than_first_order():
    """DDIM is Euler in (y, sqrt(delta)) and sqrt(delta(t)) ~ sqrt(2t) is not smooth at the
    data end of a grid uniform in OU time: the error behaves like h log(1/h), so the
    observed order is below 1 at practical step counts (about 0.75 here), and tends to 1."""
    proc = OU()
    x0 = gaussian_start(GAUSS, None, proc, proc.t_max)(64, np.random.default_rng(1))
    errs = [
        np.max(
            np.abs(
                ddim(
                    GAUSS,
                    None,
                    np.random.default_rng(0),
                    process=proc,
                    times=proc.time_grid(int(n)),  # uniform in t, not OU's default grid
                    x_start=x0,
                ).x
                - _exact_flow(proc, x0, proc.t_max, 0.0)
            )
        )
        for n in NS
    ]
    assert 0.55 < _slope(NS, errs) < 0.95
    assert np.all(np.diff(errs) < 0)


def test_heun_on_every_ddpm_step_is_accurate():
    """The DDPM process is piecewise in t (log abar interpolated linearly between steps);
    the stepper takes the SDE coefficients from inside each step, so Heun on the integer
    grid is accurate (taking f at the knot from the interval above gives errors ~3e-3)."""
    proc = DDPM()
    x0 = gaussian_start(GAUSS, None, proc, proc.t_max)(64, np.random.default_rng(1))
    res = heun(GAUSS, None, np.random.default_rng(0), process=proc, n_steps=999, x_start=x0)
    assert res.times.shape == (1000,)
    np.testing.assert_allclose(res.x, _exact_flow(proc, x0, 999.0, 0.0), atol=2e-5)


def test_ddim_equals_euler_on_edm():
    """With alpha = 1 and sigma = t, DDIM is the Euler method (Karras et al. 2022, Sec. 3)."""
    x0 = gaussian_start(MIX, None, "edm", 80.0)(50, np.random.default_rng(2))
    a = ddim(MIX, None, np.random.default_rng(0), process="edm", n_steps=20, x_start=x0)
    b = euler_ode(MIX, None, np.random.default_rng(0), process="edm", n_steps=20, x_start=x0)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-10, atol=1e-10)


WEAK_CASES = [
    # (twin, process, order). EM on the geometric VE process shows order 2: the O(h) term
    # of its weak error is proportional to delta_min / (lam + delta_min)^2 ~ 1e-4 here.
    ("em", OU(), 1),
    ("em", VPLinear(), 1),
    ("em", VPCosine(), 1),
    ("em", EDM(), 1),
    ("em", VE(), 2),
    ("ddpm", VPLinear(), 1),
    ("ddpm", VE(), 1),
    ("ddpm", EDM(), 1),
    ("ddim(0.5)", VPCosine(), 1),
]


@pytest.mark.parametrize(
    "twin,proc,order", WEAK_CASES, ids=[f"{c[0]}-{c[1].name}" for c in WEAK_CASES]
)
def test_weak_order_from_exact_moment_recursion(twin, proc, order):
    errs = []
    for n in NS:
        grid = proc.time_grid(int(n))
        mom = (
            _em_moments(proc, grid)
            if twin == "em"
            else _posterior_moments(proc, grid, 1.0 if twin == "ddpm" else 0.5)
        )
        errs.append(_weak_error(proc, grid, mom))
    assert _slope(NS, errs) == pytest.approx(order, abs=0.25)


def _from_marginal(model, method, proc: Process, grid: np.ndarray, n: int, seed: int):
    """``n`` samples of ``model`` by ``method`` on ``proc`` over ``grid``, started from the
    exact Gaussian marginal of ``model`` at ``grid[0]``."""
    return sample(
        model,
        n,
        np.random.default_rng(seed),
        method=method,
        process=proc,
        times=grid,
        x_start=gaussian_start(model, None, proc, grid[0]),
    )


@pytest.mark.parametrize(
    "method,proc",
    [
        (METHODS["euler-maruyama"], VPLinear()),
        (METHODS["euler-maruyama"], EDM()),
        (METHODS["ddpm"], OU(horizon=4.0)),
        (PosteriorStep(0.5), VE()),
    ],
)
def test_stochastic_samples_follow_their_moment_recursion(method, proc):
    """On a coarse grid the sampler's moments are far from the data's but equal the exact
    moments of its own chain: the twin is what the samples must match."""
    n, grid = 40_000, proc.time_grid(12)
    twin = (
        _em_moments(proc, grid)
        if method.name == "euler-maruyama"
        else _posterior_moments(proc, grid, method.eta)
    )
    x = _from_marginal(GAUSS, method, proc, grid, n, seed=3).x
    m, S = twin
    se_m = np.sqrt(np.diag(S) / n)
    se_S = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n)
    assert np.all(np.abs(x.mean(0) - m) < 4.5 * se_m)
    assert np.all(np.abs(np.cov(x.T) - S) < 4.5 * se_S)
    # the check has power: the discretisation bias is many standard errors
    me, Se = _exact_marginal(proc, grid[-1])
    assert np.max(np.abs(S - Se) / se_S) > 10


# ---------------------------------------------------------------------------------------
# Monte Carlo: every sampler samples the data
# ---------------------------------------------------------------------------------------
MC_STEPS = {"heun": 100, "euler": 1000, "ddim": 1000, "ddpm": 1000, "euler-maruyama": 1000}
MC_PROCS = [OU(), VPLinear(), VE(), EDM(), DDPM()]


def _mc_grid(proc: Process, n_steps: int) -> np.ndarray:
    if isinstance(proc, DDPM):  # its own integer grid: every step
        return proc.time_grid(min(n_steps, proc.n_steps - 1))
    return _karras_times(proc, n_steps)


@pytest.mark.parametrize("method", list(MC_STEPS))
@pytest.mark.parametrize("proc", MC_PROCS, ids=[p.name for p in MC_PROCS])
def test_samples_match_gaussian_data(method, proc):
    n = 2000
    res = _from_marginal(GAUSS, method, proc, _mc_grid(proc, MC_STEPS[method]), n, seed=11)
    cov = C + res.deltas[-1] * I2  # the exact VE-frame marginal at the last grid time
    z_mean = (res.y.mean(0) - MU) / np.sqrt(np.diag(cov) / n)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    z_cov = (np.cov(res.y.T) - cov) / se_cov
    assert np.max(np.abs(z_mean)) < 4.5
    assert np.max(np.abs(z_cov)) < 4.5


@pytest.mark.parametrize("method", list(MC_STEPS))
@pytest.mark.parametrize("proc", MC_PROCS, ids=[p.name for p in MC_PROCS])
def test_samples_match_two_component_mixture(method, proc):
    n = 2000
    res = _from_marginal(MIX, method, proc, _mc_grid(proc, MC_STEPS[method]), n, seed=11)
    x = res.y[:, 0]
    w, means, var_k = MIX.weights, MIX.means[:, 0], np.array([0.3, 0.5]) + res.deltas[-1]
    mean = w @ means
    var = w @ (var_k + means**2) - mean**2
    p_right = w @ norm.sf(0.0, loc=means, scale=np.sqrt(var_k))  # the weight of the right mode
    m4 = np.mean((x - x.mean()) ** 4)
    assert abs(x.mean() - mean) < 4.5 * np.sqrt(var / n)
    assert abs(x.var(ddof=1) - var) < 4.5 * np.sqrt((m4 - var**2) / n)
    assert abs(np.mean(x > 0) - p_right) < 4.5 * np.sqrt(p_right * (1 - p_right) / n)


def test_default_prior_is_n0_sigma2():
    """Default start N(0, sigma(t0)^2 I): N(0, I) for VP processes, N(0, 50^2 I) for VE."""
    for proc, sd in [(OU(), 1.0), (VE(), 50.0)]:
        res = sample(
            GAUSS,
            20_000,
            np.random.default_rng(4),
            method="heun",
            process=proc,
            n_steps=2,
            record=lambda t, x: x.copy(),
        )
        x = res.records[0]
        assert sd == pytest.approx(proc.sigma(proc.t_max), rel=1e-6)
        assert np.all(np.abs(x.mean(0)) < 4.5 * sd / np.sqrt(x.shape[0]))
        assert np.all(np.abs(x.std(0) / sd - 1) < 4.5 / np.sqrt(2 * x.shape[0]))
    # from the default prior, Heun on OU samples the data (the prior's error is ~alpha^2)
    res = heun(GAUSS, 4000, np.random.default_rng(5), process="ou", times=_karras_times(OU(), 100))
    assert np.all(np.abs(res.y.mean(0) - MU) < 4.5 * np.sqrt(np.diag(C) / 4000))


# ---------------------------------------------------------------------------------------
# late initialisation
# ---------------------------------------------------------------------------------------
def test_gaussian_start_is_the_exact_noised_marginal():
    for proc, t in [(OU(), 0.7), (VPLinear(), 0.3), (VE(), 0.5), (EDM(), 3.0), (DDPM(), 250)]:
        st_ = gaussian_start(GAUSS, None, proc, t)
        me, Se = _exact_marginal(proc, t)
        np.testing.assert_allclose(st_.mean, me, rtol=1e-12)
        np.testing.assert_allclose(st_.covariance, Se, rtol=1e-12, atol=1e-14)
        x = st_(50_000, np.random.default_rng(6))
        se = np.sqrt((np.outer(np.diag(Se), np.diag(Se)) + Se**2) / x.shape[0])
        assert np.all(np.abs(np.cov(x.T) - Se) < 4.5 * se)
    # mean and cov arrays are taken from an Ensemble, or given explicitly
    a = gaussian_start(MU, C, "ou", 1.0)
    b = gaussian_start(GAUSS, None, "ou", 1.0)
    np.testing.assert_allclose(a.covariance, b.covariance)
    assert isinstance(a, GaussianStart) and a.t == 1.0


@pytest.mark.parametrize("method", ["heun", "ddpm", "euler-maruyama"])
@pytest.mark.parametrize(
    "proc,t", [(OU(), 1.0), (VPLinear(), 0.4), (DDPM(), 300.0)], ids=["ou", "vp-linear", "ddpm"]
)
def test_late_initialisation_from_gaussian_start_samples_the_data(method, proc, t):
    """For Gaussian data the Gaussian start IS the marginal: starting late changes nothing."""
    n = 4000
    start = gaussian_start(GAUSS, None, proc, t)
    steps = 100 if method == "heun" else 1000
    if isinstance(proc, DDPM):  # its own grid; the start time comes from the GaussianStart
        res = sample(
            GAUSS,
            n,
            np.random.default_rng(8),
            method=method,
            process=proc,
            n_steps=min(steps, int(t)),
            x_start=start,
        )
        assert res.times[0] == t
    else:
        res = sample(
            GAUSS,
            n,
            np.random.default_rng(8),
            method=method,
            process=proc,
            times=_karras_times(proc, steps, t),
            x_start=start,
        )
    cov = C + res.deltas[-1] * I2
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(res.y.mean(0) - MU) < 4.5 * np.sqrt(np.diag(cov) / n))
    assert np.all(np.abs(np.cov(res.y.T) - cov) < 4.5 * se_cov)


def test_late_heun_is_the_exact_flow_from_any_start_time():
    proc = VPLinear()
    x0 = gaussian_start(GAUSS, None, proc, 0.35)(32, np.random.default_rng(9))
    res = heun(
        GAUSS, None, np.random.default_rng(0), process=proc, t_start=0.35, n_steps=400, x_start=x0
    )
    np.testing.assert_allclose(res.x, _exact_flow(proc, x0, 0.35, 0.0), atol=1e-5)


# ---------------------------------------------------------------------------------------
# DDPM ancestral = Ho et al. 2020
# ---------------------------------------------------------------------------------------
def _ho_step(proc: DDPM, model, x, k, z):
    """Ho et al. 2020, Eq. 11 and Algorithm 2, line 4, from step k to k - 1 (0-indexed)."""
    beta, abar = proc.betas[k], proc.alpha_bars[k]
    eps = -np.sqrt(1 - abar) * model.score(x / np.sqrt(abar), proc.deltas[k]) / np.sqrt(abar)
    mu = (x - beta / np.sqrt(1 - abar) * eps) / np.sqrt(1 - beta)
    return mu if z is None else mu + np.sqrt(proc.beta_tilde(k)) * z


def test_ddpm_ancestral_equals_ho_update_on_consecutive_steps():
    proc = DDPM()
    x0 = np.random.default_rng(0).standard_normal((64, 1)) * 0.6
    for k0 in (999, 500, 40, 5):
        res = ddpm_ancestral(
            MIX,
            None,
            np.random.default_rng(1),
            process=proc,
            times=np.arange(k0, k0 - 5, -1.0),
            x_start=x0,
        )
        rng, x = np.random.default_rng(1), x0
        for k in range(k0, k0 - 4, -1):
            x = _ho_step(proc, MIX, x, k, rng.standard_normal(x.shape))
        np.testing.assert_allclose(res.x, x, rtol=1e-10, atol=1e-12)


def test_ddpm_ancestral_with_final_denoise_is_ho_algorithm_2():
    proc = DDPM()
    res = ddpm_ancestral(
        MIX, 16, np.random.default_rng(2), process=proc, n_steps=999, final_denoise=True
    )
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 1)) * proc.sigma(999)
    for k in range(999, 0, -1):
        x = _ho_step(proc, MIX, x, k, rng.standard_normal(x.shape))
    np.testing.assert_allclose(res.x, x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.samples, _ho_step(proc, MIX, x, 0, None), rtol=1e-9, atol=1e-12)
    assert res.denoised is res.samples and res.n_evals == 1000


def test_ddim_eta_one_is_ddpm_and_eta_zero_draws_nothing():
    x0 = np.random.default_rng(0).standard_normal((10, 2))
    a = ddim(GAUSS, None, np.random.default_rng(3), eta=1.0, process="vp-linear", x_start=x0)
    b = ddpm_ancestral(GAUSS, None, np.random.default_rng(3), process="vp-linear", x_start=x0)
    np.testing.assert_array_equal(a.x, b.x)
    for method in ("heun", "euler", "ddim"):
        rng = np.random.default_rng(3)
        before = rng.bit_generator.state
        sample(GAUSS, None, rng, method=method, process="vp-linear", x_start=x0)
        assert rng.bit_generator.state == before


@settings(max_examples=40, deadline=None)
@given(
    u=st.floats(0.05, 1.0),
    v=st.floats(0.0, 0.95),
    lam=st.floats(0.0, 4.0),
    eta=st.sampled_from([0.0, 1.0]),
    proc=st.sampled_from([OU(), VPLinear(), VPCosine(), VE(), EDM(), DDPM()]),
)
def test_one_posterior_step_closed_form(u, v, lam, eta, proc):
    """One step on N(0.3, lam) in the VE frame: DDIM (eta=0) maps y - mu by
    (lam + sqrt(Ds Dt))/(lam + Dt); DDPM (eta=1) draws from the posterior around x0_hat,
    mean factor (lam + Ds)/(lam + Dt) and variance Ds (Dt - Ds)/Dt."""
    t = proc.t_min + u * (proc.t_max - proc.t_min)
    s = proc.t_min + v * (t - proc.t_min)
    model = Gaussian([0.3], [[lam]])
    x = np.array([[-1.0], [0.2], [2.5]]) * proc.sigma(t) + proc.alpha(t) * 0.3
    res = ddim(
        model, None, np.random.default_rng(0), eta=eta, process=proc, times=[t, s], x_start=x
    )
    Dt, Ds = proc.delta(t), proc.delta(s)
    y = x / proc.alpha(t) - 0.3
    if eta == 0:
        expect = 0.3 + (lam + np.sqrt(Ds * Dt)) / (lam + Dt) * y
    else:
        z = np.random.default_rng(0).standard_normal(x.shape) if Ds > 0 else 0.0
        expect = 0.3 + (lam + Ds) / (lam + Dt) * y + np.sqrt(Ds * (Dt - Ds) / Dt) * z
    np.testing.assert_allclose(res.y, expect, rtol=1e-9, atol=1e-9 * (1 + np.sqrt(Ds)))


# ---------------------------------------------------------------------------------------
# the recorder, the result and the errors
# ---------------------------------------------------------------------------------------
def test_recorder_trajectory_and_result():
    calls = []

    def rec(t, x):
        calls.append((t, x.shape))
        with pytest.raises(ValueError):
            x[0, 0] = 1.0  # the recorder sees read-only particles
        return float(np.mean(x[:, 0]))

    res = euler_maruyama(
        GAUSS,
        7,
        np.random.default_rng(0),
        process="ve",
        n_steps=5,
        record=rec,
        return_trajectory=True,
    )
    assert isinstance(res, SampleResult)
    assert [c[0] for c in calls] == list(res.times) and len(calls) == 6
    assert all(c[1] == (7, 2) for c in calls)
    assert res.records == tuple(np.mean(res.trajectory[:, :, 0], axis=1))
    assert res.trajectory.shape == (6, 7, 2)
    np.testing.assert_array_equal(res.trajectory[-1], res.x)
    assert res.samples is res.x and res.denoised is None
    np.testing.assert_allclose(res.y, res.x / VE().alpha(res.times[-1]))
    np.testing.assert_allclose(res.deltas, VE().delta(res.times))
    assert res.n_evals == 5 and res.method == "euler-maruyama"
    assert "euler-maruyama" in repr(res)
    plain = euler_maruyama(GAUSS, 7, np.random.default_rng(0), process="ve", n_steps=5)
    assert plain.records is None and plain.trajectory is None
    np.testing.assert_array_equal(plain.x, res.x)


def test_final_denoise_and_heun_evaluation_count():
    res = heun(GAUSS, 5, np.random.default_rng(0), process="ou", n_steps=10, final_denoise=True)
    assert res.n_evals == 2 * 10 - 1  # the last step reaches delta = 0: Euler
    np.testing.assert_array_equal(res.samples, res.y)  # E[x0 | y] = y at delta = 0
    res = heun(GAUSS, 5, np.random.default_rng(0), process="edm", n_steps=10, final_denoise=True)
    assert res.n_evals == 2 * 10 + 1
    np.testing.assert_allclose(res.samples, GAUSS.denoise(res.y, EDM().delta(EDM().t_min)))


class _NaNBelow:
    """A model that breaks down (returns NaN) below delta = 1."""

    dim = 1

    def score(self, y, delta):
        return np.where(delta < 1.0, np.nan, -y / (1 + delta))

    def denoise(self, y, delta):
        return y + delta * self.score(y, delta)


def test_errors_name_the_argument():
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="strictly decreasing"):
        heun(GAUSS, 3, rng, process="ou", times=[0.5, 1.0, 0.0])
    with pytest.raises(DomainError, match="times"):
        heun(GAUSS, 3, rng, process="ou", times=[11.0, 0.0])
    with pytest.raises(ShapeError, match="times"):
        heun(GAUSS, 3, rng, process="ou", times=[1.0])
    with pytest.raises(InputError, match="times"):
        heun(GAUSS, 3, rng, process="ou", times=[1.0, 0.0], n_steps=4)
    with pytest.raises(DomainError, match="n must"):
        heun(GAUSS, 0, rng)
    with pytest.raises(InputError, match="n must"):
        heun(GAUSS, 2.5, rng)
    with pytest.raises(InputError, match="rng"):
        heun(GAUSS, 3, np.random.RandomState(0))
    with pytest.raises(InputError, match="rng"):
        heun(GAUSS, 3, 42)
    with pytest.raises(ShapeError, match="x_start"):
        heun(GAUSS, 3, rng, x_start=np.zeros((3, 1)))
    with pytest.raises(ShapeError, match="x_start"):
        heun(GAUSS, 4, rng, x_start=np.zeros((3, 2)))
    with pytest.raises(ShapeError, match="x_start"):
        heun(GAUSS, 4, rng, x_start=lambda n, r: np.zeros((n + 1, 2)))
    with pytest.raises(InputError, match="x_start"):
        heun(GAUSS, None, rng, x_start=np.full((3, 2), np.nan))
    with pytest.raises(InputError, match="n must"):
        heun(GAUSS, None, rng)
    with pytest.raises(InputError, match="model"):
        heun(object(), 3, rng)
    with pytest.raises(InputError, match="method"):
        sample(GAUSS, 3, rng, method="rk45")
    with pytest.raises(InputError, match="eta"):
        ddim(GAUSS, 3, rng, eta=1.5)
    with pytest.raises(DomainError, match="t_start"):
        heun(GAUSS, 3, rng, process="ve", t_start=2.0)
    with pytest.raises(InputError, match="process"):
        heun(GAUSS, 3, rng, process="vp-quadratic")
    start = gaussian_start(GAUSS, None, "ou", 1.0)
    with pytest.raises(InputError, match="x_start"):
        heun(GAUSS, 3, rng, process="ou", t_start=2.0, x_start=start)
    with pytest.raises(InputError, match="x_start"):
        heun(GAUSS, 3, rng, process="vp-linear", x_start=start)
    with pytest.raises(ShapeError, match="x_start"):
        heun(MIX, 3, rng, process="ou", x_start=start)
    with pytest.raises(InputError, match="cov"):
        gaussian_start(GAUSS, C, "ou", 1.0)
    with pytest.raises(InputError, match="cov"):
        gaussian_start(MU, -C, "ou", 1.0)
    with pytest.raises(DomainError, match="t must"):
        gaussian_start(GAUSS, None, "ou", 11.0)
    with pytest.raises(InputError, match="b must"):
        RungeKutta("bad", (0.0, 1.0), ((), (1.0,)), (0.5, 0.6), order=2)


def test_non_finite_model_output_names_the_step():
    # OU grid of 10 steps from t = 1: delta = e^{2t} - 1 falls below 1 at t < 0.347
    # (Heun's second stage of step 6 already ends at t = 0.3)
    for method, step in (("heun", 6), ("ddim", 7), ("euler-maruyama", 7)):
        with pytest.raises(PhysdiffError, match=rf"step {step} \(t=0\.3"):
            sample(
                _NaNBelow(),
                4,
                np.random.default_rng(0),
                method=method,
                process="ou",
                times=OU().time_grid(10, t_start=1.0),  # uniform in t
            )
