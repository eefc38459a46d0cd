"""UniformSphere and its von Mises-Fisher special functions against brute-force twins.

Special functions: mpmath at 50 digits over m = 1..3000 and kappa = 0..1e12, including both
sides of every region boundary (series / Debye / Hankel / recurrence). The ensemble: m = 1
against the two-point GaussianMixture, m = 2 against quadrature over the circle, m >= 3
against Monte Carlo over the sphere and 1-D quadrature over t = u.v, plus the identities
(score = grad log p, Tweedie, Jacobian = d score), extreme delta, sampling, and the
LinearManifold(normalized=True) path.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.special import gammaln

from physdiff.ensembles import GaussianMixture, LinearManifold
from physdiff.ensembles.sphere import (
    UniformSphere,
    _debye_polynomials,
    _hankel_min,
    bessel_ratio,
    log_sphere_mgf,
    sphere_stats,
)
from physdiff.errors import DomainError, InputError, ShapeError
from tests._checks import assert_is_gradient

# -- special functions -------------------------------------------------------------------------

mpmath.mp.dps = 50


def _reference(m: int, k: float):
    """(log F, log F - k, A, 1 - A, A/k, Var) at 50 digits; F = 0F1(; m/2; k^2/4)."""
    nu = mpmath.mpf(m) / 2 - 1
    k = mpmath.mpf(k)
    if k == 0:
        return [0.0, 0.0, 0.0, 1.0, 1.0 / m, 1.0 / m]
    i0 = mpmath.besseli(nu, k, maxterms=10**6)
    i1 = mpmath.besseli(nu + 1, k, maxterms=10**6)
    if k < 1:  # the Bessel form cancels loggamma against nu log(2/k) here
        log_f = mpmath.log(mpmath.hyp0f1(nu + 1, k * k / 4))
    else:
        log_f = mpmath.loggamma(nu + 1) + nu * mpmath.log(2 / k) + mpmath.log(i0)
    a = i1 / i0
    b = 2 / (1 + mpmath.exp(2 * k)) if m == 1 else 1 - a  # 1 - tanh k is below 1e-50
    var = b * (2 - b) if m == 1 else 1 - a * a - (m - 1) * a / k
    return [float(x) for x in (log_f, log_f - k, a, b, a / k, var)]


def _kappas(m: int) -> np.ndarray:
    nu = m / 2 - 1
    ks = [
        0.0,
        1e-300,
        1e-12,
        1e-6,
        1e-3,
        0.05,
        0.3,
        1.0,
        2.0,
        5.0,
        12.0,
        40.0,
        150.0,
        700.0,
        3e3,
        2e4,
        1e6,
        1e9,
        1e12,
    ]
    for edge in (np.sqrt(nu + 1) if nu >= 0 else 0.0, 25.0, _hankel_min(nu), nu * nu, nu):
        if edge > 0:
            ks += [edge * (1 - 1e-12), edge * (1 + 1e-12)]
    return np.array(ks)


SPECIAL_MS = [1, 2, 3, 4, 5, 8, 17, 39, 40, 41, 42, 43, 64, 101, 1000, 2999, 3000]


@pytest.mark.parametrize("m", SPECIAL_MS)
def test_special_functions_match_mpmath(m):
    ks = _kappas(m)
    got = np.array(sphere_stats(m, ks))
    want = np.array([_reference(m, k) for k in ks]).T
    names = ["log_mgf", "log_mgf_scaled", "ratio", "complement", "ratio_over_kappa", "variance"]
    for name, g, w in zip(names, got, want, strict=True):
        ok = w != 0
        rel = np.abs(g[ok] - w[ok]) / np.abs(w[ok])
        assert rel.max() < 1e-13, (name, m, ks[ok][np.argmax(rel)], rel.max())
        assert np.all(g[~ok] == 0), (name, m)  # exact zeros (kappa = 0, underflow)
    # log[(2/k)^nu I_nu(k)] itself, relative
    nu = m / 2 - 1
    pos = ks > 1.0
    mine = got[0][pos] - gammaln(nu + 1)
    ref = np.array(
        [
            float(
                mpmath.log(mpmath.besseli(nu, k, maxterms=10**6))
                + nu * mpmath.log(2 / mpmath.mpf(k))
            )
            for k in ks[pos]
        ]
    )
    np.testing.assert_allclose(mine, ref, rtol=1e-13)


def test_random_orders_and_arguments_match_mpmath():
    rng = np.random.default_rng(7)
    worst = 0.0
    for m in [*rng.integers(2, 60, 6), *rng.integers(60, 3001, 4)]:
        ks = 10 ** rng.uniform(-4, 12, 12)
        got = np.array(sphere_stats(int(m), ks))
        want = np.array([_reference(int(m), k) for k in ks]).T
        worst = max(worst, float(np.max(np.abs(got - want) / np.abs(want))))
    assert worst < 1e-13


def test_closed_forms_and_public_wrappers():
    k = np.array([1e-9, 0.1, 1.0, 7.0, 30.0, 400.0])
    np.testing.assert_allclose(bessel_ratio(1, k), np.tanh(k), rtol=1e-15)
    # coth k - 1/k cancels for small k; its series there is k/3 - k^3/45
    np.testing.assert_allclose(bessel_ratio(3, k[1:]), 1 / np.tanh(k[1:]) - 1 / k[1:], rtol=1e-12)
    assert bessel_ratio(3, k[0]) == pytest.approx(k[0] / 3, rel=1e-15)
    log_cosh = [float(mpmath.log(mpmath.cosh(x))) for x in k]
    np.testing.assert_allclose(log_sphere_mgf(1, k), log_cosh, rtol=1e-15)
    np.testing.assert_allclose(
        log_sphere_mgf(3, k[2:], scaled=True),
        np.log(-np.expm1(-2 * k[2:]) / (2 * k[2:])),
        rtol=1e-14,
    )
    i1_i0 = mpmath.besseli(1, 3) / mpmath.besseli(0, 3)
    assert bessel_ratio(2, 3.0, complement=True) == pytest.approx(float(1 - i1_i0), rel=1e-14)
    assert np.shape(bessel_ratio(5, 2.0)) == ()
    assert log_sphere_mgf(7, np.ones((2, 3))).shape == (2, 3)


@pytest.mark.parametrize("m", [1, 2, 3, 10, 100, 3000])
def test_limits_at_zero_and_infinity(m):
    st0 = sphere_stats(m, 0.0)
    assert st0.ratio == 0 and st0.complement == 1
    assert st0.ratio_over_kappa == pytest.approx(1 / m, rel=1e-15)
    assert st0.variance == pytest.approx(1 / m, rel=1e-15)
    small = sphere_stats(m, 1e-8)
    assert small.ratio == pytest.approx(1e-8 / m, rel=1e-12)
    big = 1e12
    sti = sphere_stats(m, big)
    if m > 1:
        assert sti.complement * big == pytest.approx((m - 1) / 2, rel=1e-8)
        assert sti.variance * big**2 == pytest.approx((m - 1) / 2, rel=1e-8)
    for x in sphere_stats(m, np.array([1e150, 1e300, 1.7e308])):
        assert np.all(np.isfinite(x))


def test_debye_polynomials_match_dlmf():
    u = _debye_polynomials()
    f = Fraction
    assert u[1] == (0, f(3, 24), 0, f(-5, 24))
    assert u[2][2::2] == (f(81, 1152), f(-462, 1152), f(385, 1152))
    assert u[3][3::2] == (
        f(30375, 414720),
        f(-369603, 414720),
        f(765765, 414720),
        f(-425425, 414720),
    )
    assert sum(u[4]) == f(-571, 2488320)  # u_k(1) are Stirling's coefficients


def test_special_function_inputs_are_checked():
    with pytest.raises(DomainError, match="m"):
        sphere_stats(0, 1.0)
    with pytest.raises(DomainError, match="m"):
        sphere_stats(2.5, 1.0)
    with pytest.raises(DomainError, match="kappa"):
        sphere_stats(3, -1.0)
    with pytest.raises(InputError, match="kappa"):
        sphere_stats(3, np.nan)


# -- the ensemble ------------------------------------------------------------------------------


def _basis(d, m, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, m)))
    return q


def _sphere(d, m, radius=1.3, seed=0):
    rng = np.random.default_rng(100 + seed)
    return UniformSphere(rng.standard_normal(d), _basis(d, m, seed), radius)


MODELS = {m: _sphere(5, m, seed=m) for m in (1, 2, 3, 5)}
points = st.lists(st.floats(-3, 3), min_size=5, max_size=5).map(lambda v: np.array([v]))
deltas = st.floats(0.02, 5.0)


@pytest.mark.parametrize("m", list(MODELS))
@settings(max_examples=30, deadline=None)
@given(y=points, delta=deltas)
def test_score_tweedie_and_jacobian_identities(m, y, delta):
    model = MODELS[m]
    y = y + model.mean
    s = model.score(y, delta)
    assert_is_gradient(s, lambda z: model.log_density(z, delta), y, 1e-5 * np.sqrt(delta))
    np.testing.assert_allclose(model.denoise(y, delta), y + delta * s, rtol=1e-10, atol=1e-10)
    jac = model.score_jacobian(y, delta)[0]
    assert_is_gradient(jac, lambda z: model.score(z, delta)[0], y, 1e-5 * np.sqrt(delta))
    np.testing.assert_allclose(jac, jac.T, atol=1e-12 * np.abs(jac).max())
    cov = model.posterior_covariance(y, delta)[0]
    np.testing.assert_allclose(
        jac, -np.eye(5) / delta + cov / delta**2, rtol=1e-9, atol=1e-9 * np.abs(jac).max()
    )
    assert np.linalg.eigvalsh(cov).min() > -1e-12


@pytest.mark.parametrize("delta", [1e-3, 0.3, 4.0, 300.0])
def test_m1_is_the_two_point_mixture(delta):
    model = MODELS[1]
    b = model.basis[:, 0]
    mix = GaussianMixture(
        [0.5, 0.5], np.stack([model.mean + model.radius * b, model.mean - model.radius * b])
    )
    rng = np.random.default_rng(3)
    y = model.mean + rng.standard_normal((6, 5)) * 1.5
    y[0] = model.mean  # the centre: r = 0
    y[1] = model.mean + 0.7 * b
    for name in ("denoise", "score", "log_density", "posterior_covariance", "score_jacobian"):
        got, want = getattr(model, name)(y, delta), getattr(mix, name)(y, delta)
        np.testing.assert_allclose(
            got, want, rtol=1e-9, atol=1e-11 * (1 + np.abs(want).max()), err_msg=name
        )


def _circle_quadrature(model, y, delta):
    """log p(y) and E[x0 | y] by quadrature over the angle of the circle (m = 2)."""
    b, mu, R = model.basis, model.mean, model.radius

    def x0(th):
        return mu + R * (np.cos(th) * b[:, 0] + np.sin(th) * b[:, 1])

    def logk(th):
        return -np.sum((y - x0(th)) ** 2) / (2 * delta)

    peak = max(logk(th) for th in np.linspace(0, 2 * np.pi, 721))
    opts = {"epsabs": 1e-13, "epsrel": 1e-12, "limit": 400}
    z = integrate.quad(lambda th: np.exp(logk(th) - peak), 0, 2 * np.pi, **opts)[0]
    mean = [
        integrate.quad(lambda th, i=i: x0(th)[i] * np.exp(logk(th) - peak), 0, 2 * np.pi, **opts)[0]
        / z
        for i in range(y.shape[0])
    ]
    d = y.shape[0]
    logp = np.log(z / (2 * np.pi)) + peak - 0.5 * d * np.log(2 * np.pi * delta)
    return logp, np.array(mean)


@pytest.mark.parametrize("delta", [0.01, 0.5, 20.0])
def test_m2_matches_quadrature_over_the_circle(delta):
    model = _sphere(4, 2, radius=1.7, seed=5)
    rng = np.random.default_rng(1)
    ys = model.mean + rng.standard_normal((3, 4))
    ys[0] = model.mean + 1e-3 * model.basis[:, 0]  # near the centre
    for y in ys:
        logp, mean = _circle_quadrature(model, y, delta)
        assert model.log_density(y[None], delta)[0] == pytest.approx(logp, rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(model.denoise(y[None], delta)[0], mean, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("m", [3, 5, 40])
@pytest.mark.parametrize("delta", [0.05, 1.0])
def test_marginal_over_t_quadrature(m, delta):
    """u.v has density (1 - t^2)^{(m-3)/2} / B(1/2, (m-1)/2) on [-1, 1]."""
    d = m + 2
    model = _sphere(d, m, radius=2.0, seed=m)
    y = model.mean + np.random.default_rng(m).standard_normal(d) * 1.2
    c = y - model.mean
    cpar = model.basis.T @ c
    r, R = np.linalg.norm(cpar), model.radius
    k = R * r / delta
    logb = gammaln(0.5) + gammaln((m - 1) / 2) - gammaln(m / 2)

    def w(t, power=0):
        return t**power * (1 - t * t) ** ((m - 3) / 2) * np.exp(k * (t - 1) - logb)

    z = integrate.quad(w, -1, 1, epsabs=0, epsrel=1e-12, limit=200)[0]
    et = integrate.quad(w, -1, 1, args=(1,), epsabs=0, epsrel=1e-12, limit=200)[0] / z
    perp = c - model.basis @ cpar
    logp = (
        np.log(z)
        - (r - R) ** 2 / (2 * delta)
        - perp @ perp / (2 * delta)
        - d / 2 * np.log(2 * np.pi * delta)
    )
    assert model.log_density(y[None], delta)[0] == pytest.approx(logp, rel=1e-10)
    want = model.mean + R * et * model.basis @ (cpar / r)
    np.testing.assert_allclose(model.denoise(y[None], delta)[0], want, rtol=1e-9, atol=1e-11)


def test_m4_denoiser_and_covariance_match_monte_carlo():
    """Self-normalised importance sampling over u uniform on S^3 (independent of the class's
    sampler); pass within 5 standard errors (delta method for the ratio estimator)."""
    d, m, delta = 6, 4, 0.6
    model = _sphere(d, m, radius=1.5, seed=11)
    rng = np.random.default_rng(12)
    z = rng.standard_normal((400_000, m))
    x0 = model.mean + model.radius * (z / np.linalg.norm(z, axis=1, keepdims=True)) @ model.basis.T
    for y in model.mean + rng.standard_normal((3, d)):
        logw = -np.sum((y - x0) ** 2, axis=1) / (2 * delta)
        w = np.exp(logw - logw.max())
        wn = w / w.sum()
        mean = wn @ x0
        se = np.sqrt(np.sum(wn[:, None] ** 2 * (x0 - mean) ** 2, axis=0))
        got = model.denoise(y[None], delta)[0]
        assert np.all(np.abs(got - mean) < 5 * se + 1e-12), (got, mean, se)
        cov = (x0 - mean).T @ ((x0 - mean) * wn[:, None])
        np.testing.assert_allclose(
            model.posterior_covariance(y[None], delta)[0], cov, atol=0.02 * np.abs(cov).max()
        )
        # log p = log E_u N(y; x0, delta) - the plain Monte Carlo average, with its error
        logp = logw.max() + np.log(w.mean()) - d / 2 * np.log(2 * np.pi * delta)
        rel_se = w.std() / (w.mean() * np.sqrt(w.shape[0]))
        assert abs(model.log_density(y[None], delta)[0] - logp) < 5 * rel_se


def test_density_integrates_to_one_on_the_plane():
    """m = d = 2, centred: p depends on r only, so int p = int_0^inf p(r) 2 pi r dr."""
    model = UniformSphere(np.zeros(2), np.eye(2), 1.4)
    for delta in (0.02, 1.0, 30.0):

        def f(r, delta=delta):
            return 2 * np.pi * r * np.exp(model.log_density(np.array([[r, 0.0]]), delta)[0])

        total = integrate.quad(f, 0, 1.4 + 40 * np.sqrt(delta), points=[1.4], limit=200)[0]
        assert total == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("m", [1, 2, 3, 6])
def test_extreme_delta_is_finite_and_has_the_right_limits(m):
    model = _sphere(7, m, seed=m)
    rng = np.random.default_rng(m)
    on = model.sample(3, rng)
    ys = np.concatenate(
        [
            on,
            on + 0.1 * rng.standard_normal((3, 7)),
            model.mean[None],
            model.mean + 50 * rng.standard_normal((2, 7)),
        ]
    )
    for delta in (1e-8, 1e8):
        for name in ("denoise", "score", "log_density", "posterior_covariance", "score_jacobian"):
            assert np.all(np.isfinite(getattr(model, name)(ys, delta))), (name, delta)
    # delta -> inf: the posterior mean is the data mean; delta -> 0: radial projection
    np.testing.assert_allclose(
        model.denoise(ys[3:], 1e8), np.broadcast_to(model.mean, (6, 7)), atol=1e-6
    )
    np.testing.assert_allclose(model.denoise(on, 1e-8), on, atol=1e-6)
    np.testing.assert_allclose(model.denoise(model.mean[None], 1e-8), model.mean[None], atol=0)


@pytest.mark.parametrize("m", [2, 3, 10])
def test_small_delta_on_the_sphere_is_accurate(m):
    """On the sphere at delta = 1e-9 the tangent score-Jacobian eigenvalue is
    (R A - r)/(r delta) = -R (1 - A)/(r delta) -> -(m - 1)/(2 R^2): computing it as
    -1/delta + Cov/delta^2 would lose nine digits."""
    R = 1.3
    model = UniformSphere(np.zeros(m + 1), np.eye(m + 1)[:, :m], R)
    y = np.zeros((1, m + 1))
    y[0, 0] = R
    delta = 1e-9
    kappa = R * R / delta
    ref = _reference(m, kappa)
    tangent = -R * ref[3] / (R * delta)
    jac = model.score_jacobian(y, delta)[0]
    assert jac[1, 1] == pytest.approx(tangent, rel=1e-12)
    assert tangent == pytest.approx(-(m - 1) / (2 * R * R), rel=1e-8)
    assert model.score(y, delta)[0, 0] == pytest.approx(-R * ref[3] / delta, rel=1e-12)
    assert jac[-1, -1] == -1 / delta
    cov = model.posterior_covariance(y, delta)[0]
    assert cov[0, 0] == pytest.approx(R * R * ref[5], rel=1e-12)
    assert cov[1, 1] == pytest.approx(R * R * ref[4], rel=1e-12)


def test_per_point_delta_equals_scalar_calls():
    model = MODELS[3]
    rng = np.random.default_rng(4)
    y = model.mean + rng.standard_normal((4, 5))
    dl = np.array([1e-4, 0.1, 2.0, 1e4])
    for name in ("denoise", "score", "log_density", "score_jacobian"):
        batched = getattr(model, name)(y, dl)
        single = np.concatenate([getattr(model, name)(y[i : i + 1], dl[i]) for i in range(4)])
        np.testing.assert_allclose(batched, single, rtol=1e-14)


@pytest.mark.parametrize("m", [1, 3, 8])
def test_samples_lie_on_the_sphere_with_the_right_moments(m):
    model = _sphere(9, m, radius=2.2, seed=m)
    x = model.sample(40_000, np.random.default_rng(m))
    c = x - model.mean
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 2.2, rtol=1e-12)
    np.testing.assert_allclose(c - c @ model.basis @ model.basis.T, 0, atol=1e-12)
    se = 2.2 / np.sqrt(x.shape[0])
    assert np.all(np.abs(x.mean(0) - model.mean) < 5 * se)
    cov = np.cov(x.T)
    # each entry of the sample covariance has a standard error <= R^2 / sqrt(n)
    assert np.all(np.abs(cov - model.covariance) < 5 * 2.2**2 * se / 2.2)
    np.testing.assert_allclose(np.trace(model.covariance), 2.2**2, rtol=1e-14)


def test_normalised_equal_std_linear_manifold_uses_the_sphere():
    d, m, s = 6, 3, 0.8
    man = LinearManifold.axis_aligned(d, [s] * m, normalized=True)
    assert isinstance(man._exact, UniformSphere)
    ref = UniformSphere(np.zeros(d), np.eye(d)[:, :m], s * np.sqrt(m))
    rng = np.random.default_rng(2)
    y = rng.standard_normal((5, d))
    for name in ("denoise", "score", "log_density", "posterior_covariance", "score_jacobian"):
        np.testing.assert_allclose(
            getattr(man, name)(y, 0.3),
            getattr(ref, name)(y, 0.3),
            rtol=1e-14,
            atol=1e-14,
            err_msg=name,
        )
    np.testing.assert_allclose(
        man.covariance, s**2 * np.diag([1.0] * m + [0.0] * (d - m)), rtol=1e-14, atol=1e-15
    )
    x = man.sample(100, rng)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), s * np.sqrt(m), rtol=1e-12)


def test_properties_and_bad_inputs():
    model = _sphere(5, 3, radius=0.9, seed=2)
    assert model.dim == 5 and model.intrinsic_dim == 3 and model.radius == 0.9
    assert "m=3" in repr(model)
    with pytest.raises(InputError, match="orthonormal"):
        UniformSphere(np.zeros(3), np.ones((3, 2)), 1.0)
    with pytest.raises(DomainError, match="radius"):
        UniformSphere(np.zeros(3), np.eye(3)[:, :2], 0.0)
    with pytest.raises(ShapeError, match="basis"):
        UniformSphere(np.zeros(3), np.eye(4)[:, :2], 1.0)
    with pytest.raises(ShapeError, match="basis"):
        UniformSphere(np.zeros(2), np.eye(2, 3), 1.0)
    with pytest.raises(ShapeError, match="mean"):
        UniformSphere(np.zeros((2, 2)), np.eye(2), 1.0)
    with pytest.raises(ShapeError):
        model.score(np.zeros((2, 4)), 1.0)
    with pytest.raises(DomainError, match="delta"):
        model.score(np.zeros((2, 5)), 0.0)
