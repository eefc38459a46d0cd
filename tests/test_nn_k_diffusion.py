"""The k-diffusion bridge both ways, against an exact mixture and a sampler loop written
from Karras et al. 2022, Algorithm 1 (k-diffusion's sample_euler/sample_heun), without
k-diffusion itself (its 0.1.1 release pulls torchvision and more; when it is importable,
its own samplers are checked too)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from physdiff import sampling  # noqa: E402
from physdiff.ensembles import GaussianMixture  # noqa: E402
from physdiff.errors import InputError, ShapeError  # noqa: E402
from physdiff.nn import (  # noqa: E402
    Denoiser,
    NetworkScoreModel,
    ScoreMLP,
    from_k_diffusion,
    to_k_diffusion,
)
from physdiff.processes import DDPM, EDM  # noqa: E402

MIX = GaussianMixture.isotropic([0.3, 0.7], [[-1.5, 0.5], [1.0, -0.5]], [0.2, 0.4])


def _karras_sigmas(n, lo=0.002, hi=80.0, rho=7.0):
    """Karras et al. 2022, Eq. 5, with sigma_N = 0 appended (k-diffusion's get_sigmas_karras)."""
    r = np.linspace(0, 1, n)
    s = (hi ** (1 / rho) + r * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return torch.tensor(np.append(s, 0.0))


def _karras_loop(denoiser, x, sigmas, heun):
    """Karras et al. 2022, Algorithm 1 (sigma(t) = t, s(t) = 1): d = (x - D(x, sigma))/sigma,
    Euler step to the next sigma, Heun's correction unless the next sigma is 0."""
    ones = x.new_ones(x.shape[0])
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - denoiser(x, s * ones)) / s
        x_next = x + (s_next - s) * d
        if heun and s_next > 0:
            d2 = (x_next - denoiser(x_next, s_next * ones)) / s_next
            x_next = x + (s_next - s) * (d + d2) / 2
        x = x_next
    return x


@pytest.mark.parametrize("method,heun", [("heun", True), ("euler", False)])
def test_k_diffusion_samplers_equal_physdiff_on_edm(method, heun):
    sigmas = _karras_sigmas(12)
    rng = np.random.default_rng(0)
    x0 = 80.0 * rng.standard_normal((64, 2))
    k = _karras_loop(to_k_diffusion(MIX), torch.from_numpy(x0.copy()), sigmas, heun).numpy()
    ours = sampling.sample(
        MIX, None, rng, method=method, process=EDM(), times=sigmas[:-1].numpy(), x_start=x0,
        final_denoise=True,
    ).samples  # fmt: skip
    np.testing.assert_allclose(ours, k, rtol=1e-12, atol=1e-12)


def test_k_diffusion_package_samplers_when_importable():
    ks = pytest.importorskip("k_diffusion.sampling")
    sigmas = ks.get_sigmas_karras(12, 0.002, 80.0, 7.0).double()
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    den = to_k_diffusion(MIX)
    for fn, heun in ((ks.sample_heun, True), (ks.sample_euler, False)):
        theirs = fn(den, x0.clone(), sigmas, disable=True)
        ours = _karras_loop(den, x0.clone(), sigmas, heun)
        torch.testing.assert_close(theirs, ours, rtol=1e-12, atol=1e-12)


def _two_deltas(x, sigma, m=1.0):
    """The exact denoiser of point masses at +-m: E[x0 | x] = m tanh(m x / sigma^2)."""
    return m * torch.tanh(m * x / sigma.reshape(-1, 1, 1) ** 2)


def test_from_k_diffusion_is_the_exact_denoiser():
    model = from_k_diffusion(_two_deltas, (1, 1), device="cpu")
    exact = GaussianMixture.two_deltas(m=1.0)
    y = np.linspace(-3, 3, 13)[:, None]
    for delta in (0.05, 0.7, 4.0):
        np.testing.assert_allclose(model.denoise(y, delta), exact.denoise(y, delta), rtol=1e-14)
        np.testing.assert_allclose(model.score(y, delta), exact.score(y, delta), rtol=1e-12)
    assert model.process is None
    back = from_k_diffusion(to_k_diffusion(MIX, "edm"), (2,), device="cpu")
    y2 = np.random.default_rng(1).standard_normal((5, 2))
    np.testing.assert_allclose(back.denoise(y2, 0.3), MIX.denoise(y2, 0.3), rtol=1e-14)
    assert back.process == EDM()  # from the denoiser's sigma_min, sigma_max


def test_processes_and_sigmas():
    ddpm = DDPM()
    den = to_k_diffusion(MIX, ddpm)
    np.testing.assert_allclose(den.sigmas.numpy() ** 2, ddpm.deltas, rtol=1e-15)
    assert den.sigma_min == pytest.approx(ddpm.delta_min**0.5, rel=1e-15)
    model = from_k_diffusion(den, (2,), device="cpu")
    assert isinstance(model.process, DDPM)
    np.testing.assert_allclose(model.process.deltas, ddpm.deltas, rtol=1e-9)
    assert to_k_diffusion(MIX).sigma_max is None


def test_network_model_goes_through_torch():
    net = NetworkScoreModel(Denoiser(ScoreMLP(2, hidden=16, depth=2, seed=0)), device="cpu")
    den = to_k_diffusion(net)
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    out = den(x, torch.full((4,), 0.8, dtype=torch.float64))
    np.testing.assert_allclose(
        out.detach().numpy(), net.denoise(x.detach().numpy(), 0.64), rtol=1e-6, atol=1e-7
    )
    out.sum().backward()  # differentiable: k-diffusion's guidance can take gradients
    assert x.grad is not None and torch.all(torch.isfinite(x.grad))


def test_errors_name_the_argument():
    den = to_k_diffusion(MIX)
    with pytest.raises(ShapeError, match="x must have shape"):
        den(torch.zeros(3, 3, dtype=torch.float64), 1.0)
    with pytest.raises(InputError, match="sigma must be > 0"):
        den(torch.zeros(3, 2, dtype=torch.float64), 0.0)
    with pytest.raises(InputError, match="extra_args"):
        den(torch.zeros(3, 2, dtype=torch.float64), 1.0, cond=1)
    with pytest.raises(InputError, match="model must be a physdiff score model"):
        to_k_diffusion(object())
    with pytest.raises(InputError, match="denoiser must be callable"):
        from_k_diffusion(3, (2,))
    with pytest.raises(InputError, match="shape"):
        from_k_diffusion(_two_deltas, (0,))
    bad = from_k_diffusion(lambda x, s: x[:, :1], (2,), device="cpu")
    with pytest.raises(ShapeError, match="denoiser must return shape"):
        bad.denoise(np.zeros((2, 2)), 1.0)
