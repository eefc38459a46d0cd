"""train_ensemble: each member retraces its own train() run, checkpoints resume bit for bit,
members come back as ordinary denoisers, bad input names the member (issue 11, part 1)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from physdiff import GaussianMixture  # noqa: E402
from physdiff.errors import InputError, PhysdiffError, ShapeError  # noqa: E402
from physdiff.nn import (  # noqa: E402
    Denoiser,
    NetworkScoreModel,
    ScoreUNet,
    TrainConfig,
    load_checkpoint,
    train,
    train_ensemble,
)
from physdiff.nn import ensemble as E  # noqa: E402
from tests._checks import assert_same_weights, small_denoiser, state_copy  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mlp(seed, dim=4, hidden=24, n_classes=None):
    return small_denoiser(dim, hidden=hidden, n_classes=n_classes, seed=seed)


def _sets(sizes, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, dim)) for n in sizes]


def _close_states(a, b, rtol):
    sa, sb = state_copy(a), state_copy(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        scale = float(sa[k].abs().max()) + 1e-3
        assert float((sa[k] - sb[k]).abs().max()) <= rtol * scale, k


def test_members_retrace_their_own_train_runs():
    """Different training-set sizes, seeds, learning rates, weight decays, EMA decays and
    noise-level processes: each member equals train() on its own to float rounding."""
    data = _sets((5, 60, 700))
    cfgs = [
        TrainConfig(steps=40, batch_size=32, seed=1, lr=2e-3),
        TrainConfig(steps=40, batch_size=32, seed=7, lr=1e-3, weight_decay=0.1, ema_decay=0.9),
        TrainConfig(steps=40, batch_size=32, seed=3, lr=3e-3, process="ddpm", grad_clip=0.05),
    ]
    solo = [train(_mlp(i), data[i], cfgs[i], progress=False) for i in range(3)]
    ens = train_ensemble([_mlp(i) for i in range(3)], data, cfgs, progress=False)
    for a, b in zip(solo, ens, strict=True):
        assert b.steps == 40 and b.losses.shape == (40,)
        np.testing.assert_allclose(b.losses, a.losses, rtol=1e-5)
        _close_states(a.raw, b.raw, 1e-4)
        _close_states(a.denoiser, b.denoiser, 1e-4)
    # the members really differ (different seeds and data), so the comparison is not vacuous
    assert not np.allclose(ens[0].losses, ens[1].losses)


def test_one_config_for_all_and_labelled_members():
    """One config shared by all members; class-conditional members with their own labels,
    and a member trained on an exact ensemble (fresh samples every step)."""
    gm = GaussianMixture.isotropic([0.5, 0.5], [[1.5, 0.5], [-1.5, -0.5]], [0.1, 0.1])
    cfg = TrainConfig(steps=25, batch_size=16, seed=5, p_uncond=0.3)
    x = _sets((30,), dim=2)[0]
    lab = np.arange(30) % 2
    solo = [
        train(_mlp(0, 2, n_classes=2), x, cfg, labels=lab, progress=False),
        train(_mlp(1, 2, n_classes=2), gm, cfg, progress=False),
    ]
    ens = train_ensemble(
        [_mlp(0, 2, n_classes=2), _mlp(1, 2, n_classes=2)],
        [x, gm],
        cfg,
        labels=[lab, None],
        progress=False,
    )
    for a, b in zip(solo, ens, strict=True):
        np.testing.assert_allclose(b.losses, a.losses, rtol=1e-5)
        _close_states(a.denoiser, b.denoiser, 1e-4)


def test_unet_members_compute_the_same_function():
    """U-Net members: the losses and the trained denoisers' outputs agree with train().

    Weights are compared through the function: a bias followed by a one-channel GroupNorm
    does not enter the loss, its exact gradient is zero and Adam turns the rounding noise
    of that zero into steps of size ~lr, so such weights wander differently in any two
    roundings (in train() itself too) while the network they define does not change."""
    data = _sets((12, 40), dim=16)
    labels = [np.arange(12) % 3, np.arange(40) % 3]
    cfgs = [TrainConfig(steps=12, batch_size=8, seed=s) for s in (1, 2)]

    def unet(seed):
        return Denoiser(ScoreUNet((1, 4, 4), base_channels=8, n_classes=3, seed=seed))

    solo = [train(unet(i), data[i], cfgs[i], labels=labels[i], progress=False) for i in (0, 1)]
    ens = train_ensemble([unet(0), unet(1)], data, cfgs, labels=labels, progress=False)
    y = torch.from_numpy(np.random.default_rng(3).standard_normal((20, 16)).astype(np.float32))
    lab = torch.arange(20) % 4  # label 3 is the null label
    for a, b in zip(solo, ens, strict=True):
        np.testing.assert_allclose(b.losses, a.losses, rtol=1e-5)
        with torch.no_grad():
            da, db = a.denoiser(y, 0.5, lab), b.denoiser(y, 0.5, lab)
        assert float((da - db).abs().max()) <= 1e-4 * float(da.abs().max())


def test_resume_is_bit_identical(tmp_path, monkeypatch):
    """Interrupted after a checkpoint and restarted: the same weights and losses, bit for
    bit, as the uninterrupted run; a finished run is returned without training."""
    data = _sets((20, 50))
    cfg = TrainConfig(steps=30, batch_size=16, checkpoint_every=10)
    full = train_ensemble([_mlp(0), _mlp(1)], data, cfg, progress=False)

    real = E._Ensemble.one_step

    def interrupted(self):
        if self.step == 17:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(E._Ensemble, "one_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_ensemble([_mlp(0), _mlp(1)], data, cfg, checkpoint_dir=tmp_path, progress=False)
    monkeypatch.setattr(E._Ensemble, "one_step", real)
    ck = torch.load(tmp_path / E.ENSEMBLE_CHECKPOINT, weights_only=True)
    assert ck["step"] == 10
    resumed = train_ensemble([_mlp(0), _mlp(1)], data, cfg, checkpoint_dir=tmp_path, progress=False)
    for a, b in zip(full, resumed, strict=True):
        np.testing.assert_array_equal(a.losses, b.losses)
        assert_same_weights(a.raw, b.raw)
        assert_same_weights(a.denoiser, b.denoiser)

    calls = []
    monkeypatch.setattr(E._Ensemble, "one_step", lambda self: calls.append(1))
    again = train_ensemble([_mlp(0), _mlp(1)], data, cfg, checkpoint_dir=tmp_path, progress=False)
    assert calls == []
    for a, b in zip(full, again, strict=True):
        np.testing.assert_array_equal(a.losses, b.losses)
        assert_same_weights(a.denoiser, b.denoiser)


def test_member_dirs_hold_train_checkpoints(tmp_path):
    """Each member's final state in train()'s format: train() on that folder finds a
    finished run (same EMA weights, no further steps), load_checkpoint loads it, and the
    member works behind NetworkScoreModel; continuing it for more steps matches a solo run
    of the longer length."""
    data = _sets((15, 40))
    cfg = TrainConfig(steps=20, batch_size=16, seed=4)
    dirs = [tmp_path / "a", tmp_path / "b"]
    ens = train_ensemble([_mlp(0), _mlp(1)], data, cfg, member_dirs=dirs, progress=False)
    for i, (res, folder) in enumerate(zip(ens, dirs, strict=True)):
        assert res.checkpoint == folder / "checkpoint.pt"
        again = train(_mlp(99), data[i], cfg, checkpoint_dir=folder, progress=False)
        assert again.steps == 20
        np.testing.assert_array_equal(again.losses, res.losses)
        assert_same_weights(again.denoiser, res.denoiser)
        assert_same_weights(load_checkpoint(folder, _mlp(98)), res.denoiser)
    net = NetworkScoreModel(ens[0].denoiser, device="cpu")
    assert net.score(np.zeros((3, 4)), 1.0).shape == (3, 4)
    # the exported optimiser and generator states continue as train() would have
    longer = TrainConfig(steps=30, batch_size=16, seed=4)
    cont = train(_mlp(0), data[0], longer, checkpoint_dir=dirs[0], progress=False)
    solo = train(_mlp(0), data[0], longer, progress=False)
    np.testing.assert_allclose(cont.losses, solo.losses, rtol=1e-5)
    _close_states(cont.denoiser, solo.denoiser, 1e-4)


def test_bad_input_names_the_member(tmp_path):
    cfg = TrainConfig(steps=3, batch_size=4)
    x = _sets((10, 10))
    with pytest.raises(InputError, match="empty"):
        train_ensemble([], [], cfg)
    with pytest.raises(InputError, match=r"denoisers\[1\].*ScoreUNet"):
        train_ensemble(
            [_mlp(0, 16), Denoiser(ScoreUNet((1, 4, 4), base_channels=4))],
            _sets((5, 5), dim=16),
            cfg,
        )
    with pytest.raises(InputError, match=r"denoisers\[1\].*shapes"):
        train_ensemble([_mlp(0), _mlp(1, hidden=16)], x, cfg)
    with pytest.raises(InputError, match=r"denoisers\[1\] works in R\^3"):
        train_ensemble([_mlp(0), _mlp(1, dim=3)], x, cfg)
    with pytest.raises(ShapeError, match="member 1"):
        train_ensemble([_mlp(0), _mlp(1)], [x[0], x[1][:, :3]], cfg)
    with pytest.raises(InputError, match=r"configs\[1\]\.batch_size"):
        train_ensemble([_mlp(0), _mlp(1)], x, [cfg, TrainConfig(steps=3, batch_size=8)])
    with pytest.raises(InputError, match="2 entries for 3"):
        train_ensemble([_mlp(0), _mlp(1), _mlp(2)], x, cfg)
    den = _mlp(0)
    with pytest.raises(InputError, match="same Denoiser object"):
        train_ensemble([den, den], x, cfg)
    with pytest.raises(InputError, match="member 0.*unconditional"):
        train_ensemble([_mlp(0), _mlp(1)], x, cfg, labels=[np.zeros(10, int), None])
    # a resume with a changed member setting, or another member count
    train_ensemble([_mlp(0), _mlp(1)], x, cfg, checkpoint_dir=tmp_path, progress=False)
    changed = [cfg, TrainConfig(steps=3, batch_size=4, lr=1e-4)]
    with pytest.raises(InputError, match="member 1 was trained with other settings.*lr"):
        train_ensemble([_mlp(0), _mlp(1)], x, changed, checkpoint_dir=tmp_path)
    with pytest.raises(InputError, match="2 members; 3 were given"):
        train_ensemble([_mlp(i) for i in range(3)], x + x[:1], cfg, checkpoint_dir=tmp_path)
    with pytest.raises(InputError, match=r"member_dirs\[1\] and member_dirs\[0\] are the same"):
        train_ensemble([_mlp(0), _mlp(1)], x, cfg, member_dirs=[tmp_path / "m", tmp_path / "m"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        train_ensemble([_mlp(0)], x[:1], cfg, checkpoint_dir=blocker)


def test_non_finite_loss_names_the_member():
    x = _sets((10, 10))
    x[1] = x[1] * 1e30  # member 1's loss overflows
    with pytest.raises(PhysdiffError, match="member 1: the training loss became non-finite"):
        train_ensemble([_mlp(0), _mlp(1)], x, TrainConfig(steps=5, batch_size=4), progress=False)


def test_bf16_autocast_loss_agrees_with_float32():
    """The bfloat16 autocast that train() uses on CUDA (amp=True), run here on the CPU:
    the loss agrees with float32 to bfloat16's precision (8 bits of mantissa, ~0.4% per
    rounding; a few percent over a 2-block network)."""
    den = _mlp(0, dim=8, hidden=64)
    with torch.no_grad():  # weights away from their zero initialisation
        for p in den.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(512, 8, generator=g), torch.randn(512, 8, generator=g)
    delta = torch.exp(torch.randn(512, generator=g))
    ref = den.loss(x0, noise, delta).mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = den.loss(x0, noise, delta).mean().detach()
    assert abs(float(low) - float(ref)) <= 0.03 * float(ref)
    assert float(low) != float(ref)  # autocast really ran in bfloat16


def test_compiled_ensemble_follows_the_eager_one():
    """compile=True runs the batched loss through torch.compile (a one-off compilation of
    a few seconds to ~25 s here): the same trajectory up to rounding."""
    data = _sets((9, 30))
    eager = TrainConfig(steps=6, batch_size=8, seed=2)
    compiled = TrainConfig(steps=6, batch_size=8, seed=2, compile=True)
    a = train_ensemble([_mlp(0), _mlp(1)], data, eager, progress=False)
    b = train_ensemble([_mlp(0), _mlp(1)], data, compiled, progress=False)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(y.losses, x.losses, rtol=1e-5)
        _close_states(x.denoiser, y.denoiser, 1e-4)
    with pytest.raises(InputError, match="compile must be True or False"):
        TrainConfig(compile="yes")
