"""The diffusers bridge on real (tiny, random, local) diffusers models: physdiff's DDIM on
``model.process`` against diffusers' own DDIMScheduler loop, pipelines and saved folders,
class labels, clipping, EDM schedulers and refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from physdiff import sampling  # noqa: E402
from physdiff.errors import DomainError, InputError, NotSupportedError  # noqa: E402
from physdiff.nn import DiffusersModel, load_diffusers  # noqa: E402
from physdiff.processes import DDPM, EDM  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unet(n_classes=None, seed=0):
    torch.manual_seed(seed)
    return (
        diffusers.UNet2DModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            layers_per_block=1,
            block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
            num_class_embeds=n_classes,
        )
        .double()
        .eval()
    )


@pytest.fixture(scope="module")
def unet():
    return _unet()


def _ddim_loop(unet, sched, x, n, **step):
    sched.set_timesteps(n)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x, eta=0.0, **step).prev_sample
    return x.reshape(x.shape[0], -1).numpy()


def _float64_tables(sched):
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.final_alpha_cumprod = torch.as_tensor(sched.final_alpha_cumprod).double()
    return sched


@pytest.mark.parametrize(
    "kw",
    [
        {"beta_schedule": "linear"},
        {"beta_schedule": "squaredcos_cap_v2"},
        {"beta_schedule": "linear", "timestep_spacing": "trailing"},
        {"beta_schedule": "scaled_linear", "set_alpha_to_one": False, "steps_offset": 1},
    ],
    ids=["linear", "cosine", "trailing", "no-alpha-to-one"],
)
def test_ddim_reproduces_diffusers_loop(unet, kw):
    n = 10
    x0 = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, clip_sample=False, **kw)
    model = load_diffusers(unet, sched, device="cpu")
    assert isinstance(model.process, DDPM) and model.process.n_steps == 1000
    opts = model.sampling_options(n)
    np.testing.assert_array_equal(opts["times"][:n], _set(sched, n))
    start = x0.reshape(3, -1).numpy()
    ours = sampling.ddim(model, None, np.random.default_rng(0), x_start=start, **opts).samples
    # diffusers as it is: its step takes sqrt(abar) and 1 - abar in float32, so the two
    # loops differ by float32 rounding of the coefficients (~6e-8 relative a step)
    theirs = _ddim_loop(unet, sched, x0.clone(), n)
    scale = np.abs(theirs).max()
    assert np.abs(ours - theirs).max() <= 1e-6 * scale
    # with the same table widened to float64 in diffusers too, the loops are one computation
    exact = _ddim_loop(unet, _float64_tables(sched), x0.clone(), n)
    assert np.abs(ours - exact).max() <= 1e-12 * scale


def _set(sched, n):
    sched.set_timesteps(n)
    return sched.timesteps.numpy()


def test_model_process_serves_every_sampler(unet):
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000)
    with pytest.warns(UserWarning, match="clip_sample=True"):
        model = load_diffusers(unet, sched, device="cpu")
    rng = np.random.default_rng(0)
    for method in ("heun", "ddpm", "euler-maruyama"):
        res = sampling.sample(model, 2, rng, method=method, process=model.process, n_steps=4)
        assert np.all(np.isfinite(res.samples))
    # the scheduler's own float32 deltas, at both ends
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.score(rng.standard_normal((1, 64)), model.process.delta_of_step(0))
        model.score(rng.standard_normal((1, 64)), model.process.delta_of_step(999))
    with pytest.raises(DomainError, match="delta must lie in"):
        model.score(rng.standard_normal((1, 64)), 1e-9)


def test_pipeline_and_saved_folder(unet, tmp_path):
    sched = diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False)
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=sched)
    y = np.random.default_rng(2).standard_normal((2, 64))
    d = 0.3
    ref = load_diffusers(unet, sched, device="cpu").score(y, d)
    np.testing.assert_array_equal(load_diffusers(pipe, device="cpu").score(y, d), ref)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = load_diffusers(tmp_path / "pipe", device="cpu", dtype=torch.float64)
    assert loaded.process == DDPM.from_diffusers(sched)
    np.testing.assert_allclose(loaded.score(y, d), ref, rtol=1e-12)
    unet.save_pretrained(tmp_path / "unet")
    with pytest.raises(InputError, match="no scheduler_config.json"):
        load_diffusers(str(tmp_path / "unet"))
    sched.save_pretrained(tmp_path / "unet")
    alone = load_diffusers(str(tmp_path / "unet"), device="cpu", dtype=torch.float64)
    np.testing.assert_allclose(alone.score(y, d), ref, rtol=1e-12)
    with pytest.raises(InputError, match="save_pretrained"):
        load_diffusers(tmp_path / "nothing")
    with pytest.raises(InputError, match="scheduler must be given"):
        load_diffusers(unet)


def test_class_conditional_unet_has_a_null_label():
    net = _unet(n_classes=3)
    sched = diffusers.DDIMScheduler(clip_sample=False)
    model = load_diffusers(net, sched, device="cpu")
    assert model.n_classes == 2
    y = np.random.default_rng(3).standard_normal((2, 64))
    k, delta = 300, float(DDPM.from_diffusers(sched).delta_of_step(300))
    abar = float(sched.alphas_cumprod[k])

    def direct(label):
        x = torch.tensor(y).reshape(2, 1, 8, 8) * abar**0.5
        with torch.no_grad():
            eps = net(x, torch.full((2,), k), class_labels=torch.full((2,), label)).sample
        return -eps.reshape(2, 64).numpy() / delta**0.5

    np.testing.assert_allclose(model.unconditional().score(y, delta), direct(2), rtol=1e-9)
    np.testing.assert_allclose(model.conditional(1).score(y, delta), direct(1), rtol=1e-9)
    assert isinstance(model.conditional(0), DiffusersModel)
    first = load_diffusers(net, sched, device="cpu", null_label=0)
    np.testing.assert_allclose(first.unconditional().score(y, delta), direct(0), rtol=1e-9)
    np.testing.assert_allclose(first.conditional(0).score(y, delta), direct(1), rtol=1e-9)
    with pytest.raises(InputError, match="label must"):
        model.conditional(2)
    with pytest.raises(InputError, match="null_label"):
        load_diffusers(net, sched, null_label=3)
    with pytest.raises(InputError, match="null_label was given"):
        load_diffusers(_unet(), sched, null_label=0)


def test_clip_sample_is_the_clipped_model_output_loop(unet):
    sched = _float64_tables(diffusers.DDIMScheduler(clip_sample=True, clip_sample_range=0.5))
    model = load_diffusers(unet, sched, device="cpu", clip_sample=True)
    x0 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ours = sampling.ddim(
        model, None, np.random.default_rng(0), x_start=x0.reshape(2, -1).numpy(),
        **model.sampling_options(8),
    ).samples  # fmt: skip
    theirs = _ddim_loop(unet, sched, x0.clone(), 8, use_clipped_model_output=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-12 * np.abs(theirs).max())
    assert np.abs(ours).max() <= 0.5
    d = model.denoise(np.full((1, 64), 3.0), 0.01)
    assert np.abs(d).max() <= 0.5
    with pytest.raises(InputError, match="clip_sample must be"):
        load_diffusers(unet, sched, clip_sample="yes")


def test_edm_scheduler(unet):
    sched = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5)
    model = load_diffusers(unet, sched, device="cpu")
    assert model.process == EDM(0.002, 80.0, 7.0)
    sched.set_timesteps(12)
    # the scheduler computes its Karras grid in float64 and keeps it in float32
    np.testing.assert_allclose(model.timesteps(12), sched.sigmas[:-1].numpy(), rtol=6e-8)
    y = np.random.default_rng(5).standard_normal((2, 64))
    sigma = 1.7
    img = torch.tensor(y).reshape(2, 1, 8, 8)
    with torch.no_grad():
        out = unet(img / (sigma**2 + 0.25) ** 0.5, torch.full((2,), 0.25 * np.log(sigma))).sample
    c_skip, c_out = 0.25 / (sigma**2 + 0.25), sigma * 0.5 / (sigma**2 + 0.25) ** 0.5
    expect = (c_skip * img + c_out * out).reshape(2, 64).numpy()  # Karras et al. Table 1
    np.testing.assert_allclose(model.denoise(y, sigma**2), expect, rtol=1e-10)
    opts = model.sampling_options(6)
    assert opts["final_denoise"] and opts["times"].shape == (6,)


def test_unsupported_scheduler_is_refused(unet):
    with pytest.raises(NotSupportedError, match="FlowMatchEulerDiscreteScheduler"):
        load_diffusers(unet, diffusers.FlowMatchEulerDiscreteScheduler())
    with pytest.raises(InputError, match="prediction_type"):
        load_diffusers(unet, diffusers.DDIMScheduler(prediction_type="flow", clip_sample=False))
