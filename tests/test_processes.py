"""Processes: round trips, SDE coefficients against finite differences, DDPM tables, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physdiff.errors import DomainError, InputError
from physdiff.processes import DDPM, EDM, OU, PRESETS, VE, VPCosine, VPLinear, get_process

ALL = list(PRESETS.values()) + [
    OU(horizon=3.0),
    VPLinear(0.5, 10.0),
    VE(0.1, 10.0),
    EDM(0.01, 20.0),
    DDPM(1e-3, 0.05, 200),
    VPCosine(s=0.0),
]
IDS = [repr(p) for p in ALL]


def _times(proc, u):
    return proc.t_min + u * (proc.t_max - proc.t_min)


@pytest.mark.parametrize("proc", ALL, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(u=st.floats(0.0, 1.0))
def test_time_of_delta_inverts_delta(proc, u):
    t = _times(proc, u)
    assert proc.time_of_delta(proc.delta(t)) == pytest.approx(t, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("proc", ALL, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(u=st.floats(0.02, 0.98))
def test_sigma_alpha_delta_identities(proc, u):
    t = _times(proc, u)
    a, s, d = proc.alpha(t), proc.sigma(t), proc.delta(t)
    assert s**2 / a**2 == pytest.approx(d, rel=1e-12)
    assert proc.log_snr(t) == pytest.approx(-math.log(d), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("proc", ALL, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(u=st.floats(0.05, 0.95))
def test_sde_coefficients_match_finite_differences(proc, u):
    """f = d log alpha/dt and g^2 = d sigma^2/dt - 2 f sigma^2 (= alpha^2 d delta/dt)."""
    t = _times(proc, u)
    if isinstance(proc, DDPM):  # piecewise-linear log abar: stay inside one segment
        t = math.floor(t) + 0.5
    h = 1e-6 * max(1.0, proc.t_max - proc.t_min)
    dlog_a = (math.log(proc.alpha(t + h)) - math.log(proc.alpha(t - h))) / (2 * h)
    dsig2 = (proc.sigma(t + h) ** 2 - proc.sigma(t - h) ** 2) / (2 * h)
    f = proc.drift_coefficient(t)
    assert f == pytest.approx(dlog_a, rel=1e-5, abs=1e-8)
    g2 = proc.diffusion(t) ** 2
    assert g2 == pytest.approx(dsig2 - 2 * f * proc.sigma(t) ** 2, rel=1e-5, abs=1e-9)
    x = np.ones((3, 2))
    np.testing.assert_allclose(proc.drift(x, t), f * x)


def test_ou_closed_forms():
    p = OU()
    t = np.linspace(0, 5, 11)
    np.testing.assert_allclose(p.alpha(t), np.exp(-t))
    np.testing.assert_allclose(p.sigma(t) ** 2, 1 - np.exp(-2 * t), atol=1e-15)
    np.testing.assert_allclose(p.delta(t), np.exp(2 * t) - 1, rtol=1e-13)
    np.testing.assert_allclose(p.diffusion(t), np.sqrt(2))


def test_vp_linear_matches_song_et_al_marginal():
    """alpha(s) = exp(-s^2 (b1 - b0)/4 - s b0/2) (Song et al. 2021, Eq. 33)."""
    p = VPLinear()
    s = np.linspace(0, 1, 9)
    np.testing.assert_allclose(p.alpha(s), np.exp(-(s**2) * 19.9 / 4 - s * 0.05), rtol=1e-14)
    np.testing.assert_allclose(p.diffusion(s) ** 2, 0.1 + s * 19.9, rtol=1e-12)


def test_cosine_matches_nichol_dhariwal():
    p = VPCosine()
    t = np.linspace(0, 0.99, 7)
    f = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(p.alpha(t) ** 2, f / f[0], rtol=1e-13)
    # tiny delta keeps its digits (no cancellation near t = 0)
    assert p.time_of_delta(1e-14) == pytest.approx(1e-14 / p.ddelta_dt(0.0), rel=1e-6)


def test_ddpm_tables_match_ho_et_al():
    p = DDPM()
    beta = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1 - beta)
    np.testing.assert_allclose(p.alpha_bars, abar, rtol=1e-12)
    np.testing.assert_allclose(p.alpha(np.arange(1000.0)), np.sqrt(abar), rtol=1e-12)
    np.testing.assert_allclose(p.delta(np.arange(1000.0)), 1 / abar - 1, rtol=1e-10)
    np.testing.assert_allclose(p.ou_times, -0.5 * np.log(abar), rtol=1e-12)
    assert p.ou_times[-1] == pytest.approx(5.06, abs=0.01)  # docs/theory.md section 0
    k = np.arange(1, 1000)
    bt = (1 - abar[k - 1]) / (1 - abar[k]) * beta[k]
    np.testing.assert_allclose(p.beta_tilde(k), bt, rtol=1e-12)
    assert p.beta_tilde(0) == 0.0


@settings(max_examples=100, deadline=None)
@given(k=st.integers(0, 999))
def test_ddpm_step_round_trips(k):
    p = DDPM()
    for rounding in ("nearest", "floor", "ceil"):
        assert p.step_of_delta(p.delta_of_step(k), rounding) == k
        assert p.step_of_ou_time(p.ou_time_of_step(k), rounding) == k
    assert p.time_of_delta(p.delta_of_step(k)) == pytest.approx(k, abs=1e-8)


@settings(max_examples=100, deadline=None)
@given(delta=st.floats(2e-4, 2e4))
def test_ddpm_rounding_brackets_delta(delta):
    p = DDPM()
    lo, hi = p.step_of_delta(delta, "floor"), p.step_of_delta(delta, "ceil")
    assert p.deltas[lo] <= delta * (1 + 1e-12)
    assert p.deltas[hi] >= delta * (1 - 1e-12)
    assert hi - lo in (0, 1)
    assert p.step_of_delta(delta, "nearest") in (lo, hi)


def test_edm_grid_is_karras_rho_schedule():
    p = EDM()
    g = p.time_grid(18)
    i = np.arange(19)
    ref = (80 ** (1 / 7) + i / 18 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(g, ref, rtol=1e-12)


def test_ddpm_grid_is_integer_and_decreasing():
    g = DDPM().time_grid(50)
    assert np.all(np.diff(g) < 0) and np.all(g == np.round(g))
    assert g[0] == 999 and g[-1] == 0


@pytest.mark.parametrize("proc", ALL, ids=IDS)
def test_errors_name_the_argument(proc):
    with pytest.raises(DomainError, match="t must lie in"):
        proc.alpha(proc.t_max + 1.0)
    with pytest.raises(DomainError, match="t must lie in"):
        proc.delta(proc.t_min - 1.0)
    with pytest.raises(InputError, match="t must be finite"):
        proc.sigma(float("nan"))
    with pytest.raises(DomainError, match="delta must lie in"):
        proc.time_of_delta(-1.0)
    if math.isfinite(proc.delta_max):  # a zero-terminal-SNR table reaches every delta
        with pytest.raises(DomainError, match="delta must lie in"):
            proc.time_of_delta(proc.delta_max * 2)


def test_bad_parameters():
    with pytest.raises(DomainError, match="beta_min"):
        VPLinear(beta_min=-1.0)
    with pytest.raises(DomainError, match="sigma_min"):
        VE(sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(DomainError, match="n_steps"):
        DDPM(n_steps=1)
    with pytest.raises(InputError, match="process must be"):
        get_process("nope")
    with pytest.raises(InputError, match="rounding"):
        DDPM().step_of_delta(1.0, "up")
    with pytest.raises(DomainError, match="k must lie"):
        DDPM().delta_of_step(1000)
    with pytest.raises(InputError, match="k must be an integer"):
        DDPM().delta_of_step(2.5)
    with pytest.raises(InputError, match="t_start must exceed"):
        OU().time_grid(10, t_start=0.1, t_end=0.5)


def test_times_of_delta_one_call_for_every_process():
    from physdiff.processes import times_of_delta

    out = times_of_delta(1.0)
    assert set(out) == set(PRESETS)
    for name, r in out.items():
        assert PRESETS[name].delta(r.time) == pytest.approx(1.0, rel=1e-9)
    assert out["ddpm"].step == DDPM().step_of_delta(1.0)
    assert out["ou"].time == pytest.approx(math.log(2) / 2)
    far = times_of_delta(1e7)
    assert far["edm"].time is None and "outside" in far["edm"].note
