"""physdiff.nn without training: networks, preconditioning, the adapter, diffusers.

The central check (issue 3, "What must hold"): replacing the network by a torch module
that wraps an exact ensemble's denoiser, with the preconditioning inverted, the adapter
reproduces the ensemble's score, score Jacobian, conditional scores and process frames
to float64 precision, for every parametrisation.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from physdiff import GaussianMixture, get_process  # noqa: E402
from physdiff.ensembles import ScoreModel  # noqa: E402
from physdiff.errors import DomainError, InputError, NotSupportedError, ShapeError  # noqa: E402
from physdiff.nn import (  # noqa: E402
    PARAMETRISATIONS,
    Denoiser,
    DiffusersDenoiser,
    NetworkScoreModel,
    ScoreMLP,
    ScoreUNet,
    default_device,
    load_diffusers,
    sample_delta,
)
from physdiff.processes import DDPM  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- an exact ensemble as a network ------------------------------------------------------------
class ExactMixtureNet(torch.nn.Module):
    """The raw network ``F(x_in, c_noise, labels)`` whose preconditioned output is the exact
    posterior mean of a Gaussian mixture (float64, differentiable).

    ``sigma = exp(4 c_noise)``, ``y = x_in sqrt(sigma^2 + sd^2)``; with the exact ``D(y)``,
    ``F`` inverts ``D = c_skip y + c_out F`` (Karras et al. 2022, Table 1) written out here
    independently of :class:`Denoiser`. Label ``k < K`` restricts to component ``k``; the
    null label (``K`` or ``None``) is the whole mixture.
    """

    def __init__(self, gm: GaussianMixture, parametrisation: str, sigma_data: float):
        super().__init__()
        self.dim = gm.dim
        self.n_classes = gm.n_components
        self.p = parametrisation
        self.sd = sigma_data
        self.means = torch.tensor(gm.means)
        self.covs = torch.tensor(np.stack([c.covariance for c in gm.components]))
        self.logw = torch.log(torch.tensor(gm.weights))

    def exact_denoise(self, y, delta, labels):
        d = self.dim
        eye = torch.eye(d, dtype=y.dtype)
        s = self.covs[None] + delta[:, None, None, None] * eye  # (n, K, d, d)
        r = y[:, None, :] - self.means[None]  # (n, K, d)
        sol = torch.linalg.solve(s, r.unsqueeze(-1)).squeeze(-1)
        logp = self.logw - 0.5 * (r * sol).sum(-1) - 0.5 * torch.logdet(s)
        if labels is not None:
            k = torch.arange(self.n_classes)[None, :]
            keep = (labels[:, None] == k) | (labels[:, None] == self.n_classes)
            logp = torch.where(keep, logp, torch.full_like(logp, -math.inf))
        p = torch.softmax(logp, dim=1)
        m = self.means[None] + torch.einsum("kij,nkj->nki", self.covs, sol)
        return (p[..., None] * m).sum(1)

    def forward(self, x_in, c_noise, labels=None):
        sigma = torch.exp(4 * c_noise)[:, None]
        delta = sigma**2
        y = x_in * torch.sqrt(delta + self.sd**2)
        dn = self.exact_denoise(y, delta[:, 0], labels)
        if self.p == "edm":
            c_skip = self.sd**2 / (delta + self.sd**2)
            c_out = sigma * self.sd / torch.sqrt(delta + self.sd**2)
            return (dn - c_skip * y) / c_out
        if self.p == "eps":
            return (y - dn) / sigma
        if self.p == "score":
            return (dn - y) / sigma
        return dn


def _mixture() -> GaussianMixture:
    rng = np.random.default_rng(3)
    d = 3
    covs = []
    for _ in range(3):
        a = rng.standard_normal((d, d)) * 0.4
        covs.append(a @ a.T + 0.05 * np.eye(d))
    covs[2] = np.zeros((d, d))  # a point mass
    means = rng.standard_normal((3, d)) * 1.5
    return GaussianMixture([0.3, 0.5, 0.2], means, covs)


def _queries(gm, n=40, seed=0):
    rng = np.random.default_rng(seed)
    delta = np.exp(rng.uniform(np.log(0.05), np.log(5.0), n))
    _, y = gm.sample_noised(n, delta, rng)
    return y, delta


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_adapter_reproduces_exact_mixture(parametrisation):
    gm = _mixture()
    sd = 0.7
    model = NetworkScoreModel(
        Denoiser(ExactMixtureNet(gm, parametrisation, sd), parametrisation, sigma_data=sd),
        device="cpu",
        batch_size=16,
    )
    assert isinstance(model, ScoreModel)
    assert model.dim == gm.dim and model.dtype == torch.float64
    y, delta = _queries(gm)
    assert _rel(model.score(y, delta), gm.score(y, delta)) < 1e-10
    assert _rel(model.denoise(y, delta), gm.denoise(y, delta)) < 1e-10
    assert _rel(model.score_jacobian(y, delta), gm.score_jacobian(y, delta)) < 1e-9
    # a scalar delta
    assert _rel(model.score(y, 0.4), gm.score(y, 0.4)) < 1e-10
    # class-conditional scores are the components' scores; the null label the mixture's
    for k in range(gm.n_components):
        ck = model.conditional(k)
        assert ck.label == k
        assert _rel(ck.score(y, delta), gm.component(k).score(y, delta)) < 1e-10
    assert _rel(model.conditional(1).unconditional().score(y, delta), gm.score(y, delta)) < 1e-10
    # seen in a process's own frame
    for proc, t in (("ou", 0.4), ("vp-linear", 0.3), (DDPM(), 250.0)):
        x = np.asarray(y) * get_process(proc).alpha(t)
        assert _rel(model.in_frame(proc, t).score(x), gm.in_frame(proc, t).score(x)) < 1e-10
        assert _rel(model.in_frame(proc, t).eps(x), gm.in_frame(proc, t).eps(x)) < 1e-10


@pytest.mark.parametrize(
    "method,process", [("heun", "ou"), ("ddpm", "ddpm"), ("euler-maruyama", "vp-linear")]
)
def test_samplers_run_unchanged_on_the_adapter(method, process):
    from physdiff import sampling

    gm = _mixture()
    model = NetworkScoreModel(Denoiser(ExactMixtureNet(gm, "eps", 1.0), "eps"), device="cpu")
    a = sampling.sample(
        gm, 30, np.random.default_rng(0), method=method, process=process, n_steps=15
    )
    b = sampling.sample(
        model, 30, np.random.default_rng(0), method=method, process=process, n_steps=15
    )
    np.testing.assert_allclose(b.samples, a.samples, rtol=1e-9, atol=1e-9)


def test_adapter_rejects_bad_input():
    gm = _mixture()
    model = NetworkScoreModel(Denoiser(ExactMixtureNet(gm, "edm", 1.0)), device="cpu")
    y, _ = _queries(gm, 5)
    with pytest.raises(DomainError, match="delta"):
        model.score(y, 0.0)
    with pytest.raises(DomainError, match="delta"):
        model.score(y, -np.ones(5))
    with pytest.raises(InputError, match="delta"):
        model.denoise(y, np.nan)
    with pytest.raises(ShapeError, match="delta"):
        model.score(y, np.ones(4))
    with pytest.raises(ShapeError, match="y"):
        model.score(y[:, :2], 1.0)
    with pytest.raises(ShapeError, match="y"):
        model.score(y[0], 1.0)
    bad = y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="y"):
        model.score(bad, 1.0)
    with pytest.raises(InputError, match="label"):
        model.conditional(gm.n_components)
    with pytest.raises(NotSupportedError):
        model.log_density(y, 1.0)
    plain = NetworkScoreModel(Denoiser(ScoreMLP(3, hidden=8, depth=1)), device="cpu")
    with pytest.raises(InputError, match="unconditional"):
        plain.conditional(0)
    with pytest.raises(InputError, match="Module"):
        NetworkScoreModel(object())


def test_score_jacobian_of_a_network_matches_finite_differences():
    net = ScoreMLP(4, hidden=16, depth=2, n_classes=2, seed=1).double()
    with torch.no_grad():  # non-zero output layers so the Jacobian is not trivial
        for p in net.parameters():
            p.add_(
                0.3
                * torch.randn(p.shape, generator=torch.Generator().manual_seed(0), dtype=p.dtype)
            )
    model = NetworkScoreModel(Denoiser(net, "edm", 0.5), device="cpu", batch_size=7).conditional(1)
    rng = np.random.default_rng(0)
    y = rng.standard_normal((5, 4))
    delta = np.array([0.01, 0.1, 1.0, 3.0, 10.0])
    jac = model.score_jacobian(y, delta)
    h = 1e-6
    fd = np.stack(
        [
            (model.score(y + h * e, delta) - model.score(y - h * e, delta)) / (2 * h)
            for e in np.eye(4)
        ],
        axis=2,
    )
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    # the direct score equals (D - y)/delta
    np.testing.assert_allclose(
        model.score(y, delta), (model.denoise(y, delta) - y) / delta[:, None], rtol=1e-9, atol=1e-12
    )


# -- every label in one pass (issue #16) -------------------------------------------------------
def _random_mlp(dim=3, n_classes=3, dtype=torch.float64) -> Denoiser:
    den = Denoiser(ScoreMLP(dim, hidden=16, depth=2, n_classes=n_classes, seed=0), "edm", 0.8)
    den = den.to(dtype)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # random weights everywhere (the last layer starts at zero)
        for prm in den.parameters():
            prm.copy_(torch.randn(prm.shape, generator=gen, dtype=torch.float64) * 0.5)
    return den


class _NullAsNone(torch.nn.Module):
    """A class-conditional module that is not a :class:`Denoiser` and, like a diffusers UNet
    behind its adapter, takes the null label only as ``labels=None``; it counts its calls."""

    def __init__(self, den: Denoiser):
        super().__init__()
        self.den, self.dim, self.n_classes, self.calls = den, den.dim, den.n_classes, []

    def forward(self, y, delta, labels=None):
        if labels is not None:
            assert int(labels.max()) < self.n_classes, "no null index in a label tensor"
        self.calls.append((y.shape[0], labels is None))
        return self.den(y, delta, labels)


def _net_calls(den: Denoiser) -> list[int]:
    sizes: list[int] = []
    den.net.register_forward_hook(lambda mod, args, out: sizes.append(args[0].shape[0]))
    return sizes


@pytest.mark.parametrize("what", ["denoise", "score"])
@pytest.mark.parametrize("kind", ["exact", "mlp", "null-as-none"])
def test_every_label_in_one_pass_equals_the_per_label_calls(what, kind):
    gm = _mixture()
    if kind == "exact":
        den = Denoiser(ExactMixtureNet(gm, "eps", 0.7), "eps", sigma_data=0.7)
    else:
        den = _random_mlp(gm.dim)
    module = _NullAsNone(den) if kind == "null-as-none" else den
    model = NetworkScoreModel(module, device="cpu", batch_size=16)
    y, delta = _queries(gm, 23)
    labels = [2, None, 0, 1, 1, None]
    ref = np.stack([getattr(model.conditional(c), what)(y, delta) for c in labels])
    for bs in (None, 1, 7, 23 * 6, 10**6):
        got = getattr(model, f"{what}_labels")(y, delta, labels, batch_size=bs)
        assert got.shape == (6, 23, gm.dim) and got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    if kind == "exact":  # and the values are the exact ones: components, null = mixture
        exact = [gm if c is None else gm.component(c) for c in labels]
        want = np.stack([getattr(m, what)(y, delta) for m in exact])
        assert _rel(got, want) < 1e-10
    # one point, a scalar delta
    one = getattr(model, f"{what}_labels")(y[:1], 0.3, labels)
    ref1 = np.stack([getattr(model.conditional(c), what)(y[:1], 0.3) for c in labels])
    np.testing.assert_allclose(one, ref1, rtol=1e-12, atol=1e-12 * np.abs(ref1).max())
    with pytest.raises(ShapeError, match="y"):  # (d,) is refused, as the per-label call does
        getattr(model, f"{what}_labels")(y[0], 0.3, labels)
    with pytest.raises(ShapeError, match="y"):
        getattr(model.conditional(0), what)(y[0], 0.3)


def test_every_label_in_one_pass_bounds_the_network_calls():
    den = _random_mlp()
    sizes = _net_calls(den)
    model = NetworkScoreModel(den, device="cpu", batch_size=4096)
    y = np.random.default_rng(0).standard_normal((20, 3))
    labels = [0, 1, 2, None]
    model.denoise_labels(y, 0.5, labels)
    assert sizes == [80]  # one network call for the 4 labels
    sizes.clear()
    for c in labels:
        model.conditional(c).denoise(y, 0.5)
    assert sizes == [20] * 4
    sizes.clear()
    model.score_labels(y, 0.5, labels, batch_size=7)
    assert sizes == [7] * 11 + [3]  # never more than batch_size rows
    # a module without the null index: the coded rows in one pass, the null ones in another
    wrapped = _NullAsNone(_random_mlp())
    other = NetworkScoreModel(wrapped, device="cpu")
    other.denoise_labels(y, 0.5, [None, 0, 1, None, 2])
    assert wrapped.calls == [(60, False), (20, True)]


def test_network_classes_use_the_batched_labels():
    from physdiff.classes import NetworkClasses

    den = _random_mlp()
    sizes = _net_calls(den)
    model = NetworkScoreModel(den, device="cpu")
    classes = NetworkClasses(model)
    y = np.random.default_rng(1).standard_normal((15, 3))
    both = classes.denoise_all(y, 0.7)
    assert sizes == [60]  # 3 classes and the null label, one call
    np.testing.assert_allclose(both.unconditional, model.denoise(y, 0.7), rtol=1e-12)
    for k in range(3):
        ref = model.conditional(k).score(y, 0.7)
        np.testing.assert_allclose(classes.score_all(y, 0.7).classes[k], ref, rtol=1e-12)
        np.testing.assert_allclose(both.classes[k], model.conditional(k).denoise(y, 0.7))


def test_network_classes_check_the_batched_shape():
    from physdiff.classes import NetworkClasses

    model = NetworkScoreModel(_random_mlp(), device="cpu")
    classes = NetworkClasses(model)
    y = np.random.default_rng(3).standard_normal((5, 3))
    # a network whose batched call leaves out the null label is refused, not mis-split
    model.denoise_labels = lambda y, delta, labels: np.zeros((len(labels) - 1, *y.shape))
    with pytest.raises(ShapeError, match="denoise_labels"):
        classes.denoise_all(y, 0.5)
    with pytest.raises(ShapeError, match="y"):  # y is checked before the network is called
        classes.denoise_all(y[0], 0.5)


def test_every_label_in_one_pass_in_float32():
    den = _random_mlp(dtype=torch.float32)
    model = NetworkScoreModel(den, device="cpu")
    assert model.dtype == torch.float32
    y = np.random.default_rng(2).standard_normal((30, 3))
    got = model.denoise_labels(y, 0.2, [None, 1])
    assert got.dtype == np.float64
    for j, c in enumerate([None, 1]):
        ref = model.conditional(c).denoise(y, 0.2)
        np.testing.assert_allclose(got[j], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_every_label_in_one_pass_rejects_bad_labels():
    model = NetworkScoreModel(_random_mlp(), device="cpu")
    y = np.zeros((4, 3))
    with pytest.raises(InputError, match="labels"):
        model.denoise_labels(y, 1.0, 2)
    with pytest.raises(InputError, match="labels"):
        model.denoise_labels(y, 1.0, "012")
    with pytest.raises(DomainError, match="labels"):
        model.score_labels(y, 1.0, [0, 3])
    with pytest.raises(InputError, match="labels"):
        model.score_labels(y, 1.0, [0.5])
    with pytest.raises(DomainError, match="batch_size"):
        model.denoise_labels(y, 1.0, [0], batch_size=0)
    with pytest.raises(DomainError, match="delta"):
        model.denoise_labels(y, 0.0, [0])
    assert model.denoise_labels(y, 1.0, []).shape == (0, 4, 3)
    plain = NetworkScoreModel(Denoiser(ScoreMLP(3, hidden=8, depth=1)), device="cpu")
    with pytest.raises(InputError, match="unconditional"):
        plain.denoise_labels(y, 1.0, [None, 0])
    np.testing.assert_array_equal(plain.denoise_labels(y, 1.0, [None])[0], plain.denoise(y, 1.0))


# -- networks and preconditioning -------------------------------------------------------------
def test_preconditioning_coefficients_follow_karras_table_1():
    delta = torch.tensor([1e-4, 0.3, 2.0, 400.0], dtype=torch.float64)
    sigma, sd = torch.sqrt(delta), 0.5
    co = Denoiser(ScoreMLP(2), "edm", sd).coefficients(delta)
    torch.testing.assert_close(co.c_skip[:, 0], sd**2 / (sigma**2 + sd**2))
    torch.testing.assert_close(co.c_out[:, 0], sigma * sd / torch.sqrt(sigma**2 + sd**2))
    torch.testing.assert_close(co.c_in[:, 0], 1 / torch.sqrt(sigma**2 + sd**2))
    torch.testing.assert_close(co.c_noise, torch.log(sigma) / 4)
    for p in PARAMETRISATIONS:
        co = Denoiser(ScoreMLP(2), p, sd).coefficients(delta)
        torch.testing.assert_close(co.one_minus_c_skip, 1 - co.c_skip)


@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_loss_is_weighted_denoising_error(parametrisation):
    net = ScoreMLP(3, hidden=8, depth=1, seed=0).double()
    with torch.no_grad():
        net.out.weight.normal_(generator=torch.Generator().manual_seed(1))
    den = Denoiser(net, parametrisation, 0.8)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(6, 3, generator=g, dtype=torch.float64)
    z = torch.randn(6, 3, generator=g, dtype=torch.float64)
    delta = torch.exp(torch.randn(6, generator=g, dtype=torch.float64))
    sigma = torch.sqrt(delta)[:, None]
    dn = den(x0 + sigma * z, delta)
    weight = {
        "edm": (sigma**2 + 0.64) / (sigma * 0.8) ** 2,
        "eps": 1 / sigma**2,
        "score": 1 / sigma**2,
        "x0": torch.ones_like(sigma),
    }[parametrisation]
    expect = (weight * (dn - x0) ** 2).mean(1)
    torch.testing.assert_close(den.loss(x0, z, delta), expect, rtol=1e-10, atol=1e-12)


def test_untrained_edm_denoiser_is_the_gaussian_optimum():
    # zero output layer: D = c_skip y, the exact denoiser of N(0, sd^2 I)
    den = Denoiser(ScoreMLP(3, hidden=8, depth=1), "edm", 1.3).double()
    y = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(den(y, 0.5), y * 1.3**2 / (1.3**2 + 0.5))


def test_networks_shapes_labels_and_seeding():
    state = torch.random.get_rng_state()
    a = ScoreMLP(5, hidden=16, depth=2, n_classes=3, seed=7)
    b = ScoreMLP(5, hidden=16, depth=2, n_classes=3, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # no global side effect
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    x, c = torch.randn(4, 5), torch.randn(4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    out_null = a(x, c, None)
    assert out_null.shape == (4, 5)
    torch.testing.assert_close(a(x, c, torch.full((4,), 3)), out_null)  # index 3 = null label
    assert not torch.allclose(a(x, c, torch.zeros(4, dtype=torch.long)), out_null)
    with pytest.raises(ShapeError):
        a(torch.randn(4, 6), c)
    with pytest.raises(InputError, match="unconditional"):
        ScoreMLP(5)(x, c, torch.zeros(4, dtype=torch.long))

    u = ScoreUNet((2, 8, 6), base_channels=8, n_classes=4, seed=0)
    assert u.dim == 2 * 8 * 6
    xu = torch.randn(3, u.dim)
    assert u(xu, torch.zeros(3), torch.tensor([0, 1, 4])).shape == (3, u.dim)
    with pytest.raises(InputError, match="even"):
        ScoreUNet((1, 7, 8))
    with pytest.raises(ShapeError):
        ScoreUNet((1, 8))


def test_unet_treats_batch_elements_independently():
    # needed by the replicate-and-backprop score Jacobian (GroupNorm, not BatchNorm)
    u = ScoreUNet((1, 8, 8), base_channels=8, seed=0).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in u.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    x = torch.randn(3, 64, dtype=torch.float64)
    c = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64)
    full = u(x, c)
    for i in range(3):
        torch.testing.assert_close(u(x[i : i + 1], c[i : i + 1]), full[i : i + 1])
    model = NetworkScoreModel(Denoiser(u), device="cpu", batch_size=100)
    jac = model.score_jacobian(x[:2].numpy(), 0.5)
    assert jac.shape == (2, 64, 64) and np.all(np.isfinite(jac))


def test_default_device():
    assert default_device("cpu") == torch.device("cpu")
    expect = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device().type == expect
    with pytest.raises(InputError, match="device"):
        default_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            default_device("cuda")
        with pytest.raises(InputError, match="CUDA is not available"):
            NetworkScoreModel(Denoiser(ScoreMLP(2)), device="cuda:0")


def test_sample_delta_per_process():
    g = torch.Generator().manual_seed(0)
    n = 20000
    d = sample_delta("edm", n, g)
    log_sigma = 0.5 * torch.log(d)
    se = 1.2 / math.sqrt(n)
    assert abs(float(log_sigma.mean()) + 1.2) < 5 * se
    assert abs(float(log_sigma.std()) - 1.2) < 0.03
    ddpm = DDPM()
    dd = sample_delta(ddpm, 500, g).numpy()
    assert np.all(np.isin(dd, ddpm.deltas))
    vp = get_process("vp-linear")
    dv = sample_delta(vp, 2000, g).numpy()
    assert dv.min() > 0 and dv.max() <= vp.delta_max
    t = vp.time_of_delta(dv)  # uniform times on (t_eps, 1]
    assert abs(t.mean() - 0.5) < 5 * math.sqrt(1 / 12 / 2000)
    dou = sample_delta("ou", 100, g).numpy()
    assert np.all(dou > 0) and np.all(np.isfinite(dou))


# -- diffusers --------------------------------------------------------------------------------
class FakeUNet(torch.nn.Module):
    """Stands in for a diffusers UNet2DModel: the exact eps of N(0, s2 I) data under the
    scheduler's schedule, with ``log abar`` interpolated linearly at fractional steps."""

    def __init__(
        self, abar: np.ndarray, s2: float, c=1, size=4, learned_variance=False, prediction="epsilon"
    ):
        super().__init__()
        self.config = SimpleNamespace(sample_size=size, in_channels=c, num_class_embeds=None)
        self.log_abar = np.log(abar)
        self.s2, self.learned, self.prediction = s2, learned_variance, prediction
        self.seen_t = None

    def forward(self, x, t, class_labels=None):
        self.seen_t = t.detach().clone()
        tn = t.double().numpy()
        abar = torch.from_numpy(
            np.exp(np.interp(tn, np.arange(self.log_abar.size), self.log_abar))
        )[:, None, None, None]
        a, s = torch.sqrt(abar), torch.sqrt(1 - abar)
        x0 = a * self.s2 * x / (abar * self.s2 + s**2)  # E[x0 | x_t]
        eps = s * x / (abar * self.s2 + s**2)  # E[z | x_t]
        out = {"epsilon": eps, "sample": x0, "v_prediction": a * eps - s * x0}[self.prediction]
        if self.learned:
            out = torch.cat([out, torch.zeros_like(out)], dim=1)
        return SimpleNamespace(sample=out)


def _scheduler(prediction="epsilon"):
    betas = np.linspace(1e-4, 0.02, 1000)
    return SimpleNamespace(
        alphas_cumprod=torch.tensor(np.cumprod(1 - betas)),
        config=SimpleNamespace(prediction_type=prediction),
    )


@pytest.mark.parametrize(
    "prediction,learned",
    [("epsilon", False), ("epsilon", True), ("sample", False), ("v_prediction", False)],
)
def test_load_diffusers_with_fake_unet(prediction, learned):
    sched = _scheduler(prediction)
    s2 = 0.7
    unet = FakeUNet(
        sched.alphas_cumprod.numpy(), s2, c=2, learned_variance=learned, prediction=prediction
    )
    model = load_diffusers(unet, sched, device="cpu")
    assert isinstance(model, ScoreModel) and model.dim == 2 * 4 * 4
    ddpm = DDPM()  # same linear schedule
    rng = np.random.default_rng(0)
    y = rng.standard_normal((6, model.dim))
    # integer steps are served by that step exactly, fractional ones in between
    delta = np.array([ddpm.delta_of_step(k) for k in (0, 10, 250, 500, 999)] + [0.37])
    score = model.score(y, delta)
    np.testing.assert_allclose(score, -y / (s2 + delta[:, None]), rtol=1e-9)
    np.testing.assert_allclose(
        model.denoise(y, delta), s2 * y / (s2 + delta[:, None]), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(unet.seen_t[:5].numpy(), [0, 10, 250, 500, 999], atol=1e-8)
    np.testing.assert_allclose(float(unet.seen_t[5]), ddpm.time_of_delta(0.37), rtol=1e-10)
    jac = model.score_jacobian(y[:2], 0.5)
    np.testing.assert_allclose(
        jac, np.broadcast_to(-np.eye(model.dim) / (s2 + 0.5), jac.shape), atol=1e-10
    )
    with pytest.raises(DomainError, match="alphas_cumprod"):
        model.score(y, 1e-6)
    with pytest.raises(DomainError, match="alphas_cumprod"):
        model.score(y, 1e6)


def test_load_diffusers_rejects_foreign_objects():
    with pytest.raises(InputError, match="sample_size"):
        DiffusersDenoiser(SimpleNamespace(), _scheduler())
    unet = FakeUNet(_scheduler().alphas_cumprod.numpy(), 1.0)
    with pytest.raises(InputError, match="alphas_cumprod"):
        DiffusersDenoiser(unet, SimpleNamespace())
    with pytest.raises(InputError, match="decreasing"):
        DiffusersDenoiser(unet, SimpleNamespace(alphas_cumprod=torch.ones(10)))
    with pytest.raises(InputError, match="prediction_type"):
        DiffusersDenoiser(unet, _scheduler("flow"))


def test_load_diffusers_real_unet():
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    ).eval()
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000)
    model = load_diffusers(unet, sched, device="cpu")
    assert model.dim == 64
    k = 400
    abar = float(sched.alphas_cumprod[k])
    delta = 1 / abar - 1
    rng = np.random.default_rng(0)
    y = rng.standard_normal((3, 64))
    with torch.no_grad():
        xt = torch.tensor(y, dtype=torch.float32).reshape(3, 1, 8, 8) * math.sqrt(abar)
        eps = unet(xt, torch.full((3,), k)).sample.reshape(3, 64).double().numpy()
    np.testing.assert_allclose(model.score(y, delta), -eps / math.sqrt(delta), rtol=1e-4, atol=1e-5)
