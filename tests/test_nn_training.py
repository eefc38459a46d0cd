"""Training: accuracy on an exact mixture, seeding, interrupted runs resume to the same
weights, checkpoints, and bad input (issue 3, "What must hold")."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from physdiff import GaussianMixture  # noqa: E402
from physdiff.errors import InputError, PhysdiffError, ShapeError  # noqa: E402
from physdiff.nn import (  # noqa: E402
    Denoiser,
    NetworkScoreModel,
    ScoreMLP,
    ScoreUNet,
    TrainConfig,
    load_checkpoint,
    train,
    training,
)
from physdiff.nn.training import _to_device, _Trainer  # noqa: E402
from tests._checks import assert_same_weights, small_denoiser  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _two_gaussians() -> GaussianMixture:
    return GaussianMixture.isotropic([0.5, 0.5], [[1.5, 0.5], [-1.5, -0.5]], [0.1, 0.1])


def _small_denoiser(dim=2, n_classes=None, parametrisation="edm", seed=0) -> Denoiser:
    return small_denoiser(
        dim, hidden=32, n_classes=n_classes, parametrisation=parametrisation, seed=seed
    )


@pytest.mark.parametrize("parametrisation", ["edm", "eps"])
def test_trained_mlp_recovers_the_mixture_score(parametrisation):
    gm = _two_gaussians()
    den = Denoiser(ScoreMLP(2, hidden=64, depth=2, seed=0), parametrisation)
    cfg = TrainConfig(steps=600, batch_size=256, lr=2e-3, ema_decay=0.99, seed=1)
    res = train(den, gm, cfg, progress=False)
    assert res.steps == 600 and res.losses.shape == (600,) and np.all(np.isfinite(res.losses))
    assert res.losses[-100:].mean() < res.losses[:20].mean()
    model = NetworkScoreModel(res.denoiser, device="cpu")
    rng = np.random.default_rng(5)
    for delta, tol in ((1.0, 0.2), (0.3, 0.25)):
        _, y = gm.sample_noised(4000, delta, rng)
        exact = gm.score(y, delta)
        err = np.sqrt(
            np.mean(np.sum((model.score(y, delta) - exact) ** 2, axis=1))
            / np.mean(np.sum(exact**2, axis=1))
        )
        assert err < tol, (delta, err)


def test_seeded_runs_are_reproducible():
    gm = _two_gaussians()
    cfg = TrainConfig(steps=30, batch_size=64, seed=3, device="cpu")
    a = train(_small_denoiser(), gm, cfg, progress=False)
    b = train(_small_denoiser(), gm, cfg, progress=False)
    assert_same_weights(a.denoiser, b.denoiser)
    np.testing.assert_array_equal(a.losses, b.losses)
    c = train(
        _small_denoiser(),
        gm,
        TrainConfig(steps=30, batch_size=64, seed=4, device="cpu"),
        progress=False,
    )
    assert not np.array_equal(a.losses, c.losses)


class _Interrupt(Exception):
    pass


def _interrupt_at(step):
    def callback(k, loss):
        if k == step:
            raise _Interrupt(k)

    return callback


@pytest.mark.parametrize("source", ["ensemble", "array-labels"])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, source):
    gm = _two_gaussians()
    if source == "ensemble":
        data, labels, n_classes = gm, None, None
    else:  # conditional: label dropout and minibatch indices are in the resumed state too
        data, labels = gm.sample_with_labels(100, np.random.default_rng(0))
        n_classes = 2
    # bit-exact on CPU (GPU kernels such as the embedding backward need not be deterministic)
    cfg = TrainConfig(
        steps=40, batch_size=32, checkpoint_every=10, seed=7, p_uncond=0.3, device="cpu"
    )

    def run(folder, init_seed=0, callback=None):
        net = _small_denoiser(n_classes=n_classes, seed=init_seed)
        folder = tmp_path / folder
        return train(
            net, data, cfg, labels=labels, checkpoint_dir=folder, progress=False, callback=callback
        )

    full = run("full")
    with pytest.raises(_Interrupt):  # dies at step 25; the last checkpoint is step 20
        run("cut", callback=_interrupt_at(25))
    ck = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 20
    seen = []
    resumed = run("cut", init_seed=99, callback=lambda k, loss: seen.append(k))
    assert seen == list(range(21, 41))
    assert resumed.steps == 40
    assert_same_weights(resumed.denoiser, full.denoiser)
    assert_same_weights(resumed.raw, full.raw)
    np.testing.assert_array_equal(resumed.losses, full.losses)
    assert sorted(os.listdir(tmp_path / "cut")) == ["checkpoint.pt"]  # no temporary left


def test_finished_run_is_reused_and_loadable(tmp_path):
    gm = _two_gaussians()
    cfg = TrainConfig(steps=12, batch_size=16, checkpoint_every=5, seed=0, device="cpu")
    first = train(_small_denoiser(), gm, cfg, checkpoint_dir=tmp_path, progress=False)
    calls = []
    again = train(
        _small_denoiser(seed=5),
        gm,
        cfg,
        checkpoint_dir=tmp_path,
        progress=False,
        callback=lambda k, loss: calls.append(k),
    )
    assert calls == [] and again.steps == 12
    assert_same_weights(again.denoiser, first.denoiser)
    loaded = load_checkpoint(tmp_path, _small_denoiser(seed=6))
    assert_same_weights(loaded, first.denoiser)
    raw = load_checkpoint(tmp_path / "checkpoint.pt", _small_denoiser(seed=6), ema=False)
    assert_same_weights(raw, first.raw)
    # a longer run continues from the finished one
    longer = train(
        _small_denoiser(),
        gm,
        TrainConfig(steps=15, batch_size=16, checkpoint_every=5, seed=0, device="cpu"),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert longer.steps == 15 and longer.losses.shape == (15,)
    np.testing.assert_array_equal(longer.losses[:12], first.losses)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "nothing.pt", _small_denoiser())
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path, _small_denoiser())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="could not be read"):
        load_checkpoint(tmp_path / "junk.pt", _small_denoiser())
    gm = _two_gaussians()
    cfg = TrainConfig(steps=4, batch_size=8, seed=0)
    train(_small_denoiser(), gm, cfg, checkpoint_dir=tmp_path / "a", progress=False)
    with pytest.raises(InputError, match="architecture"):
        load_checkpoint(tmp_path / "a", Denoiser(ScoreMLP(2, hidden=16, depth=2)))
    with pytest.raises(InputError, match="'eps'"):
        load_checkpoint(tmp_path / "a", _small_denoiser(parametrisation="eps"))
    with pytest.raises(InputError, match="seed"):
        train(
            _small_denoiser(),
            gm,
            TrainConfig(steps=4, batch_size=8, seed=1),
            checkpoint_dir=tmp_path / "a",
            progress=False,
        )


def test_bad_training_input():
    gm = _two_gaussians()
    cfg = TrainConfig(steps=2, batch_size=8)
    data = gm.sample(50, np.random.default_rng(0))
    data[3, 1] = np.nan
    with pytest.raises(InputError, match="data"):
        train(_small_denoiser(), data, cfg, progress=False)
    with pytest.raises(ShapeError, match="data"):
        train(_small_denoiser(), np.zeros((10, 3)), cfg, progress=False)
    with pytest.raises(InputError, match="unconditional"):
        train(_small_denoiser(), np.zeros((10, 2)), cfg, labels=np.zeros(10, int), progress=False)
    with pytest.raises(InputError, match="labels"):
        train(
            _small_denoiser(n_classes=2),
            np.zeros((10, 2)),
            cfg,
            labels=np.full(10, 2),
            progress=False,
        )
    with pytest.raises(InputError, match="process"):
        TrainConfig(process="brownian")
    with pytest.raises(InputError, match="lr"):
        TrainConfig(lr=-1.0)
    with pytest.raises(InputError, match="steps"):
        TrainConfig(steps=1.5)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            train(_small_denoiser(), gm, TrainConfig(steps=2, device="cuda"), progress=False)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_read_only_data_trains_without_warning_and_is_not_modified(dtype):
    """physdiff.data returns read-only arrays: no "not writable" warning, same weights as
    from a writable copy, and the caller's arrays stay as they were."""
    gm = _two_gaussians()
    x, lab = gm.sample_with_labels(64, np.random.default_rng(0))
    x = x.astype(dtype)
    lab = np.asarray(lab, dtype=np.int64)
    ro_x, ro_lab = x.copy(), lab.copy()
    ro_x.flags.writeable = False
    ro_lab.flags.writeable = False
    cfg = TrainConfig(steps=3, batch_size=16, seed=0)
    a = train(_small_denoiser(n_classes=2), ro_x, cfg, labels=ro_lab, progress=False)
    b = train(_small_denoiser(n_classes=2), x, cfg, labels=lab, progress=False)
    assert_same_weights(a.raw, b.raw)
    np.testing.assert_array_equal(ro_x, x)


@pytest.mark.parametrize("process", ["ddpm", "vp-linear", "ou", "ve"])
def test_training_under_each_process(process):
    gm = _two_gaussians()
    res = train(
        _small_denoiser(parametrisation="eps"),
        gm,
        TrainConfig(steps=5, batch_size=32, process=process),
        progress=False,
    )
    assert np.all(np.isfinite(res.losses))


def test_conditional_unet_on_small_images(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 64))
    labels = rng.integers(0, 3, 40)
    den = Denoiser(ScoreUNet((1, 8, 8), base_channels=8, n_classes=3, seed=0))
    res = train(
        den,
        x,
        TrainConfig(steps=6, batch_size=8, checkpoint_every=3),
        labels=labels,
        checkpoint_dir=tmp_path,
        progress=True,
    )
    assert np.all(np.isfinite(res.losses)) and res.samples_per_second > 0
    model = NetworkScoreModel(res.denoiser, device="cpu")
    assert model.conditional(2).score(x[:3], 0.5).shape == (3, 64)


# -- per-step overhead: the multi-tensor paths retrace the per-tensor ones bit for bit ---------
@pytest.mark.parametrize("ema_decay", [0.999, 0.5])
def test_foreach_ema_equals_the_per_tensor_loop(ema_decay):
    """``_ema_update`` (one ``torch._foreach_lerp_``) equals the loop of ``lerp_`` it
    replaced, to the bit, in warm-up (decay (1 + k)/(10 + k)) and after it."""
    den = Denoiser(ScoreUNet((1, 8, 8), base_channels=8, n_classes=3, seed=0))
    assert len(list(den.buffers())) > 0  # the buffers are copied too
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((40, 64)), rng.integers(0, 3, 40)
    cfg = TrainConfig(steps=100, batch_size=8, ema_decay=ema_decay, seed=0, device="cpu")
    tr = _Trainer(den, x, cfg, labels)
    for _ in range(12):
        ref = {k: v.clone() for k, v in tr.ema.state_dict().items()}
        k = tr.step
        tr.one_step()  # optimiser step, then the foreach EMA update at step k
        decay = min(ema_decay, (1.0 + k) / (10.0 + k))
        model = dict(tr.model.named_parameters())
        for name, pe in ref.items():
            if name in model:
                pe.lerp_(model[name].detach(), 1.0 - decay)
        got = tr.ema.state_dict()
        for name, want in ref.items():
            assert torch.equal(got[name], want), (k, name)


def test_foreach_adamw_retraces_the_per_tensor_adamw(monkeypatch):
    """AdamW(foreach=True), used since it is faster on the CPU too, gives the trajectory of
    torch's CPU default (the per-tensor loop) bit for bit, weight decay and clipping on."""
    gm = _two_gaussians()
    cfg = TrainConfig(steps=25, batch_size=32, seed=2, weight_decay=0.05, device="cpu")
    fast = train(_small_denoiser(), gm, cfg, progress=False)
    assert training._ADAMW_FOREACH is True
    monkeypatch.setattr(training, "_ADAMW_FOREACH", False)
    loop = train(_small_denoiser(), gm, cfg, progress=False)
    assert_same_weights(fast.raw, loop.raw)
    assert_same_weights(fast.denoiser, loop.denoiser)
    np.testing.assert_array_equal(fast.losses, loop.losses)


def test_resume_from_a_checkpoint_with_per_tensor_adamw(tmp_path):
    """Checkpoints written before AdamW ran foreach hold ``foreach=None`` in the optimiser's
    param groups; a run resumed from one uses foreach and still retraces the full run."""
    gm = _two_gaussians()
    cfg = TrainConfig(steps=20, batch_size=16, checkpoint_every=10, seed=1, device="cpu")
    full = train(_small_denoiser(), gm, cfg, checkpoint_dir=tmp_path / "full", progress=False)
    with pytest.raises(_Interrupt):
        train(
            _small_denoiser(),
            gm,
            cfg,
            checkpoint_dir=tmp_path / "cut",
            progress=False,
            callback=_interrupt_at(13),
        )
    path = tmp_path / "cut" / "checkpoint.pt"
    ck = torch.load(path, weights_only=True)
    for group in ck["optimizer"]["param_groups"]:
        assert group["foreach"] is True
        group["foreach"] = None  # as the per-tensor version wrote it
    torch.save(ck, path)
    resumed = train(_small_denoiser(), gm, cfg, checkpoint_dir=tmp_path / "cut", progress=False)
    assert_same_weights(resumed.raw, full.raw)
    assert_same_weights(resumed.denoiser, full.denoiser)
    np.testing.assert_array_equal(resumed.losses, full.losses)


def test_per_step_copies_to_cuda_go_through_pinned_memory():
    """The CUDA route cannot run here: check that it pins and copies without blocking, and
    that on the CPU the tensor itself comes back (no copy), as does a draw already made on
    the device (pinning a CUDA tensor would raise)."""

    class _Recorder:
        def __init__(self, device="cpu"):
            self.calls = []
            self.device = torch.device(device)

        def pin_memory(self):
            self.calls.append("pin_memory")
            return self

        def to(self, device, non_blocking=False):
            self.calls.append(("to", str(device), non_blocking))
            return self

    rec = _Recorder()
    assert _to_device(rec, torch.device("cuda")) is rec
    assert rec.calls == ["pin_memory", ("to", "cuda", True)]
    on_gpu = _Recorder("cuda:0")
    assert _to_device(on_gpu, torch.device("cuda")) is on_gpu
    assert _to_device(on_gpu, torch.device("cuda:0")) is on_gpu
    assert on_gpu.calls == []
    t = torch.arange(3)
    assert _to_device(t, torch.device("cpu")) is t


def test_non_finite_loss_stops_the_run_naming_the_step():
    data = np.full((16, 2), 1e30)  # finite, but its squared residual overflows float32
    with pytest.raises(PhysdiffError, match="non-finite at step 1"):
        train(_small_denoiser(), data, TrainConfig(steps=4, batch_size=8), progress=False)
