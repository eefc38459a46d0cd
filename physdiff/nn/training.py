"""Denoising score-matching training with EMA weights, atomic checkpoints and exact resume.

One step (Karras et al. 2022, Algorithm/Section 5; Ho et al. 2020, Algorithm 1):

1. a minibatch ``x0`` (rows of the data array drawn with replacement, or fresh samples of an
   ensemble), and labels with probability ``p_uncond`` replaced by the null label
   (classifier-free guidance training, Ho & Salimans 2022);
2. noise levels ``delta`` drawn per :func:`sample_delta` from ``config.process``, noise
   ``z ~ N(0, I)``, ``y = x0 + sqrt(delta) z`` (VE frame, docs/theory.md section 0);
3. the weighted loss of :meth:`physdiff.nn.Denoiser.loss`, AdamW (Loshchilov & Hutter 2019),
   gradient-norm clipping, then the EMA update of the weights.

Randomness: a CPU :class:`torch.Generator` (noise, noise levels, label dropout) and a numpy
Generator (minibatch indices or ensemble samples), both seeded from ``config.seed``;
nothing touches a global seed. A checkpoint holds the weights, the EMA weights, the optimiser
state, the step, both generator states and the loss history, so a run interrupted after
any checkpoint and restarted on the same directory retraces the uninterrupted run (bit for
bit on CPU). Checkpoints are written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validate import finite_array, integer
from ..atomic import atomic_write
from ..ensembles.base import Ensemble
from ..errors import InputError, PhysdiffError, ShapeError
from ..processes import DDPM, EDM, Process, get_process
from ._device import default_device
from .denoiser import Denoiser

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "load_checkpoint",
    "sample_delta",
    "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "checkpoint.pt"
# AdamW's multi-tensor implementation (torch's default on CUDA already; its own default on
# the CPU is the per-tensor loop). Same trajectory on the CPU; see docs/nn.md.
_ADAMW_FOREACH = True
_FORMAT = "physdiff.nn.checkpoint/1"
# Fields that decide the trajectory: a resumed run must agree with the checkpoint on them.
_TRAJECTORY_FIELDS = (
    "batch_size",
    "lr",
    "ema_decay",
    "seed",
    "process",
    "p_uncond",
    "weight_decay",
    "grad_clip",
    "p_mean",
    "p_std",
    "t_eps",
)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (frozen; a preset is just an instance).

    ``process`` (a name of :data:`physdiff.processes.PRESETS` or a :class:`Process`) decides
    how training noise levels are drawn (:func:`sample_delta`). ``amp`` enables bfloat16
    autocast, on CUDA only (matrix products then run in bfloat16 with float32
    accumulation, so TF32 has nothing left to speed up; the loss agrees with float32 to
    bfloat16's 3 significant digits, tested on the CPU). ``compile``: run the loss (forward
    and backward) through :func:`torch.compile`; it costs a one-off compilation (about
    25 s for a small MLP on this project's CPU; 0-40% faster after it for an ensemble there,
    benchmarks/results/training_ensemble.md); the trajectory is the same up to
    floating-point rounding, so it is not a trajectory setting.
    The EMA decay at step k is ``min(ema_decay, (1 + k)/(10 + k))``
    (warmed up so that short runs are not dominated by the initial weights).
    ``p_mean``/``p_std``: EDM's log-normal noise levels; ``t_eps``: the fraction of a
    continuous process's time range cut off at its data end (Song et al. 2021 use ``1e-5``),
    which keeps ``delta > 0``.
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    compile: bool = False
    checkpoint_every: int = 500
    process: str | Process = "edm"
    p_uncond: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    p_mean: float = -1.2
    p_std: float = 1.2
    t_eps: float = 1e-5

    def __post_init__(self):
        integer(self.steps, "steps", 0, 10**12)
        integer(self.batch_size, "batch_size", 1, 10**9)
        integer(self.checkpoint_every, "checkpoint_every", 1, 10**12)
        integer(self.seed, "seed", 0, 2**63 - 1)
        _in_range(self.lr, "lr", 0.0, _LR_MAX, low_open=True)
        _in_range(self.ema_decay, "ema_decay", 0.0, 1.0, high_open=True)
        _in_range(self.p_uncond, "p_uncond", 0.0, 1.0)
        _in_range(self.weight_decay, "weight_decay", 0.0, math.inf)
        _in_range(self.grad_clip, "grad_clip", 0.0, math.inf)
        _in_range(self.p_std, "p_std", 0.0, math.inf)
        _in_range(self.t_eps, "t_eps", 0.0, 1.0, high_open=True)
        if not math.isfinite(float(self.p_mean)):
            raise InputError(f"p_mean must be finite; got {self.p_mean!r}")
        for name in ("amp", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False; got {getattr(self, name)!r}")
        get_process(self.process)  # unknown names raise InputError here, not mid-run
        if not isinstance(self.device, (str, torch.device)):
            raise InputError(f"device must be a string such as 'auto'; got {self.device!r}")

    def trajectory_key(self) -> dict[str, Any]:
        """The fields that decide the training trajectory, as plain values."""
        out = {}
        for name in _TRAJECTORY_FIELDS:
            v = getattr(self, name)
            out[name] = repr(get_process(v)) if name == "process" else v
        return out

    def as_dict(self) -> dict[str, Any]:
        """Every field as a plain value (the process by its repr)."""
        d = dataclasses.asdict(self)
        d["process"] = repr(get_process(self.process))
        d["device"] = str(self.device)
        return d


def writable_folder(path, what: str) -> Path:
    """``path`` as a folder that exists (created with its parents) and is writable; else an
    :class:`~physdiff.errors.InputError` naming ``what`` (a file in the way, a folder that
    cannot be created, no write permission)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{what} {str(folder)!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{what} {str(folder)!r} cannot be created: {err}") from None
    if not os.access(folder, os.W_OK):
        raise InputError(f"{what} {str(folder)!r} is not writable")
    return folder


_LR_MAX = float(np.finfo(np.float32).max)
"""The largest learning rate: what a float32 optimiser state can hold (torch refuses to
convert a larger one, and any lr near it diverges at the first step anyway)."""


def _in_range(x, name, lo, hi, *, low_open=False, high_open=False):
    v = float(x)
    ok = (
        math.isfinite(v)
        and (v > lo if low_open else v >= lo)
        and (v < hi if high_open else v <= hi)
    )
    if not ok:
        raise InputError(
            f"{name} must lie in {'(' if low_open else '['}{lo:g}, {hi:g}"
            f"{')' if high_open else ']'}; got {x!r}"
        )


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``denoiser``: the EMA weights in eval mode (use these); ``raw``: the optimised weights;
    ``losses``: the mean minibatch loss of every step since step 0 (resumed runs included);
    ``steps``: the step reached; ``seconds``: training wall time summed over all calls that
    built this run; ``samples_per_second = steps * batch_size / seconds``.
    """

    denoiser: Denoiser
    raw: Denoiser
    losses: np.ndarray
    steps: int
    seconds: float
    samples_per_second: float
    config: TrainConfig
    checkpoint: Path | None = field(default=None)


# -- noise levels ---------------------------------------------------------------------------
def sample_delta(
    process: str | Process,
    n: int,
    generator: torch.Generator,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    t_eps: float = 1e-5,
) -> torch.Tensor:
    """``n`` training noise-to-signal variances (float64, CPU), drawn as the process trains.

    * :class:`~physdiff.processes.EDM`: ``log sigma ~ N(p_mean, p_std^2)``, ``delta = sigma^2``
      (Karras et al. 2022, Table 1, training: ``P_mean = -1.2``, ``P_std = 1.2``).
    * :class:`~physdiff.processes.DDPM`: a step ``k`` uniform on ``{0, ..., T-1}``,
      ``delta = delta_k = 1/abar_k - 1`` (Ho et al. 2020, Algorithm 1).
    * any other process: ``t`` uniform on ``[t_min + t_eps (t_max - t_min), t_max]``,
      ``delta = process.delta(t)`` (Song et al. 2021, Eq. 7, with their ``eps = 1e-5``).
    """
    proc = get_process(process)
    if isinstance(proc, EDM):
        sigma = torch.exp(p_mean + p_std * torch.randn(n, generator=generator, dtype=torch.float64))
        return sigma * sigma
    if isinstance(proc, DDPM):
        k = torch.randint(0, proc.n_steps, (n,), generator=generator)
        return torch.from_numpy(np.asarray(proc.deltas)[k.numpy()].copy())
    u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
    return torch.from_numpy(_continuous_delta(proc, u, t_eps))


def _continuous_delta(proc: Process, u: np.ndarray, t_eps: float) -> np.ndarray:
    """``delta(t)`` at ``t`` uniform on ``[t_min + t_eps (t_max - t_min), t_max]`` given
    uniforms ``u`` on [0, 1) (float64)."""
    lo = proc.t_min + t_eps * (proc.t_max - proc.t_min)
    t = np.minimum(lo + u * (proc.t_max - lo), proc.t_max)
    delta = np.atleast_1d(np.asarray(proc.delta(t), dtype=np.float64))
    return np.maximum(delta, 1e-12)


# -- data -------------------------------------------------------------------------------------
def _tensor(a, dtype, device: torch.device, *, per_step: bool = False) -> torch.Tensor:
    """``a`` as a torch tensor of numpy ``dtype`` on ``device``, without torch's "not
    writable" warning: a read-only array (e.g. from :mod:`physdiff.data`) is copied, and
    only then (a dtype conversion copies anyway). ``per_step``: a small tensor made every
    step, copied as :func:`_to_device` does (the one-off copy of a whole data set is not
    staged in pinned memory, which torch's allocator would keep for the process's life)."""
    arr = np.asarray(a, dtype=dtype)
    if not arr.flags.writeable:
        arr = arr.copy()
    t = torch.from_numpy(arr)
    return _to_device(t, device) if per_step else t.to(device)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The CPU tensor ``t`` on ``device`` (``t`` itself on the CPU).

    To CUDA the copy is staged in pinned (page-locked) memory and issued with
    ``non_blocking=True``. A copy from ordinary pageable memory blocks the host until the GPU
    has drained its queue, and ``one_step`` makes three or four such copies (minibatch
    indices, noise levels, noise, label dropout): the host could never queue the next step
    while the GPU runs the current one. torch's caching host allocator keeps the pinned
    block until the copy has completed, so the temporary may be dropped at once. Standard
    torch usage; not measured on a GPU in this project (docs/nn.md).
    """
    if t.device.type == device.type and device.index in (None, t.device.index):
        return t  # already there (a draw made on the device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class _Batches:
    """Minibatches ``(x0, labels)`` on the device from an array or an ensemble."""

    def __init__(self, data, labels, dim: int, n_classes: int | None, device: torch.device):
        self.device = device
        self.n_classes = n_classes
        self.ensemble = None
        self.with_labels = False
        if isinstance(data, Ensemble) or (
            hasattr(data, "sample") and hasattr(data, "dim") and not isinstance(data, np.ndarray)
        ):
            if int(data.dim) != dim:
                raise ShapeError(
                    f"data is an ensemble in R^{data.dim} but the network works in R^{dim}"
                )
            if labels is not None:
                raise InputError(
                    "labels must be None when data is an ensemble (a "
                    "conditional network draws them with "
                    "ensemble.sample_with_labels)"
                )
            self.ensemble = data
            if n_classes is not None:
                if not hasattr(data, "sample_with_labels"):
                    raise InputError(
                        f"a class-conditional network needs labelled data; "
                        f"{type(data).__name__} has no sample_with_labels"
                    )
                self.with_labels = True
            return
        arr = np.asarray(data)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise InputError(
                f"data must be a numeric array (n, d) or an Ensemble; got "
                f"{type(data).__name__} of dtype {arr.dtype}"
            )
        arr = finite_array(arr, "data")
        if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] < 1:
            raise ShapeError(
                f"data must have shape (n, {dim}) with n >= 1 (the network works "
                f"in R^{dim}); got shape {arr.shape}"
            )
        self.n = arr.shape[0]
        self.x = _tensor(arr, np.float32, device)
        self.y = None
        if labels is not None:
            if n_classes is None:
                raise InputError(
                    "labels were given but the network is unconditional (build it with n_classes)"
                )
            lab = np.asarray(labels)
            if lab.shape != (self.n,):
                raise ShapeError(
                    f"labels must have shape ({self.n},) (one per row of data); "
                    f"got shape {lab.shape}"
                )
            if lab.dtype.kind not in "iu":
                labf = finite_array(lab, "labels")
                if np.any(labf != np.round(labf)):
                    raise InputError("labels must be integers")
                lab = labf.astype(np.int64)
            if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
                raise InputError(
                    f"labels must lie in [0, {n_classes - 1}] (n_classes = "
                    f"{n_classes}); got values in [{lab.min()}, {lab.max()}]"
                )
            self.y = _tensor(lab, np.int64, device)
            self.with_labels = True

    def __call__(self, batch: int, rng: np.random.Generator, gen: torch.Generator | None = None):
        """A minibatch; indices from ``gen`` (a device generator) when given, else ``rng``."""
        if self.ensemble is not None:
            if self.with_labels:
                x, lab = self.ensemble.sample_with_labels(batch, rng)
                return (
                    _tensor(x, np.float32, self.device, per_step=True),
                    _tensor(lab, np.int64, self.device, per_step=True),
                )
            x = self.ensemble.sample(batch, rng)
            return _tensor(x, np.float32, self.device, per_step=True), None
        if gen is not None:
            idx = torch.randint(0, self.n, (batch,), generator=gen, device=gen.device)
        else:
            idx = _to_device(torch.from_numpy(rng.integers(0, self.n, size=batch)), self.device)
        return self.x[idx], (self.y[idx] if self.y is not None else None)


class _NoiseLevels:
    """Training noise levels as float32 on the device, drawn per :func:`sample_delta`.

    On the CPU this is :func:`sample_delta` itself (then a float32 cast), so CPU
    trajectories are those of earlier versions. On CUDA the generator lives on the device
    and so do the draws: EDM's log-normal sigma and DDPM's uniform step (indexing a table
    of ``delta_k`` copied to the device once) never touch the host. A continuous process
    draws its time ``u`` on the device too, but its ``delta(t)`` is numpy code, so the
    times make one round trip to the host (one synchronisation a step; EDM and DDPM, the
    processes the validation trains with, have none).
    """

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config = config
        self.process = get_process(config.process)
        self.device = device
        self.table = None
        if device.type == "cuda" and isinstance(self.process, DDPM):
            self.table = torch.as_tensor(np.asarray(self.process.deltas), device=device)

    def __call__(self, n: int, gen: torch.Generator) -> torch.Tensor:
        cfg, proc = self.config, self.process
        if gen.device.type == "cpu":
            delta = sample_delta(proc, n, gen, p_mean=cfg.p_mean, p_std=cfg.p_std, t_eps=cfg.t_eps)
            # float64 -> float32 on the host (the same correctly rounded cast as on a device)
            return _to_device(delta.to(torch.float32), self.device)
        dev = gen.device
        if isinstance(proc, EDM):
            z = torch.randn(n, generator=gen, device=dev, dtype=torch.float64)
            sigma = torch.exp(cfg.p_mean + cfg.p_std * z)
            return (sigma * sigma).to(torch.float32)
        if self.table is not None:
            k = torch.randint(0, proc.n_steps, (n,), generator=gen, device=dev)
            return self.table[k].to(torch.float32)
        u = torch.rand(n, generator=gen, device=dev, dtype=torch.float64).cpu().numpy()
        delta = _continuous_delta(proc, u, cfg.t_eps)
        return _to_device(torch.from_numpy(delta).to(torch.float32), self.device)


class _Draws:
    """Everything random in one training step, from one seed: the minibatch (and its
    labels), the noise levels, the noise and the label dropout, in that order.

    On the CPU: minibatch indices (or ensemble samples) from a numpy Generator, the rest
    from a CPU :class:`torch.Generator`, both seeded with ``config.seed``. On CUDA the torch
    generator is on the device and draws the indices too (a data array lives on the
    device; an exact ensemble is still sampled by numpy on the host), so a step needs no
    host-device synchronisation. ``state()``/``restore()`` carry both generators through a
    checkpoint.
    """

    def __init__(self, batches: _Batches, config: TrainConfig, n_classes, device):
        self.batches = batches
        self.config = config
        self.n_classes = n_classes
        self.device = device
        self.gen_device = device if device.type == "cuda" else torch.device("cpu")
        self.gen = torch.Generator(device=self.gen_device).manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.levels = _NoiseLevels(config, device)

    def __call__(self):
        """``(x0, noise, delta, labels)`` on the device (labels ``None`` if unconditional)."""
        cfg = self.config
        on_gpu = self.gen_device.type == "cuda"
        x0, lab = self.batches(cfg.batch_size, self.rng, self.gen if on_gpu else None)
        delta = self.levels(cfg.batch_size, self.gen)
        noise = torch.randn(
            x0.shape, generator=self.gen, dtype=torch.float32, device=self.gen_device
        )
        if self.n_classes is not None:
            drop = torch.rand(cfg.batch_size, generator=self.gen, device=self.gen_device)
            drop = _to_device(drop < cfg.p_uncond, self.device)
            null = torch.full_like(drop, self.n_classes, dtype=torch.long)
            lab = null if lab is None else torch.where(drop, null, lab)
        return x0, _to_device(noise, self.device), delta, lab

    def state(self) -> dict:
        return {
            "torch_rng": self.gen.get_state(),
            "torch_rng_device": self.gen_device.type,
            "numpy_rng": self.rng.bit_generator.state,
        }

    def restore(self, ck: dict, where: str) -> None:
        saved = ck.get("torch_rng_device", "cpu")
        if saved != self.gen_device.type:
            raise InputError(
                f"checkpoint {where} was written by a run whose random stream was on the "
                f"{saved} and cannot continue on {self.gen_device.type}; resume it on the "
                "same kind of device or use a fresh checkpoint_dir"
            )
        self.gen.set_state(ck["torch_rng"].cpu())
        self.rng.bit_generator.state = ck["numpy_rng"]


def ema_decay_at(decay: float, step: int) -> float:
    """The EMA decay used in the update after ``step`` optimiser steps,
    ``min(decay, (1 + step) / (10 + step))``: warmed up so that short runs are not dominated
    by the initial weights (the ``num_updates`` rule of TensorFlow's
    ``tf.train.ExponentialMovingAverage``)."""
    return min(decay, (1.0 + step) / (10.0 + step))


def trajectory_mismatch(saved: dict, config: TrainConfig) -> str:
    """The trajectory settings on which a checkpoint's ``saved`` key and ``config`` differ,
    as ``"lr: checkpoint 0.001 vs config 0.002, ..."`` (empty when they agree)."""
    return ", ".join(
        f"{f}: checkpoint {saved.get(f)!r} vs config {v!r}"
        for f, v in config.trajectory_key().items()
        if saved.get(f) != v
    )


# -- checkpoints ------------------------------------------------------------------------------
def _atomic_save(obj: dict, path: Path) -> None:
    """``torch.save`` through :func:`physdiff.atomic.atomic_write` (a synced temporary file in
    the same folder, then ``os.replace``)."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def _read_checkpoint(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    *,
    fmt: str = _FORMAT,
    what: str = "physdiff.nn checkpoint",
) -> dict:
    """The checkpoint at ``path`` (a file, or a folder holding ``checkpoint.pt``) mapped to
    ``device``; a missing, unreadable or foreign file raises :class:`InputError`."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise InputError(f"checkpoint not found: {str(p)!r} (no such file)")
    try:
        ck = torch.load(p, map_location=device, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"checkpoint {str(p)!r} could not be read: {exc}") from None
    if not isinstance(ck, dict) or ck.get("format") != fmt:
        raise InputError(f"{str(p)!r} is not a {what}")
    return ck


def _check_denoiser_matches(ck: dict, denoiser: Denoiser, where: str) -> None:
    if ck["parametrisation"] != denoiser.parametrisation or not math.isclose(
        ck["sigma_data"], denoiser.sigma_data, rel_tol=1e-12
    ):
        raise InputError(
            f"checkpoint {where} holds a {ck['parametrisation']!r} denoiser with sigma_data="
            f"{ck['sigma_data']:g}; the denoiser given is {denoiser.parametrisation!r} with "
            f"sigma_data={denoiser.sigma_data:g}"
        )


def _load_state(module: torch.nn.Module, state: dict, where: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(
            f"checkpoint {where} does not fit this network (different architecture?): {exc}"
        ) from None


def load_checkpoint(path: str | os.PathLike, denoiser: Denoiser, *, ema: bool = True) -> Denoiser:
    """Load a checkpoint written by :func:`train` into ``denoiser`` (same architecture).

    ``path`` is the checkpoint file or the ``checkpoint_dir`` holding it. ``ema=True`` loads
    the EMA weights (the ones to evaluate), ``False`` the raw optimised ones. Returns
    ``denoiser`` in eval mode. A missing or unreadable file, or a mismatched architecture or
    parametrisation, raises :class:`physdiff.errors.InputError`.
    """
    ck = _read_checkpoint(path)
    _check_denoiser_matches(ck, denoiser, repr(str(path)))
    _load_state(denoiser, ck["ema" if ema else "model"], repr(str(path)))
    return denoiser.eval()


# -- the loop ---------------------------------------------------------------------------------
class _Trainer:
    """The training state and one optimisation step; :func:`train` drives it.

    Exposed (privately) so that ``benchmarks/bench_training.py`` times exactly this step.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        data: np.ndarray | Ensemble,
        config: TrainConfig,
        labels: np.ndarray | None = None,
    ):
        if not isinstance(denoiser, Denoiser):
            raise InputError(
                f"denoiser must be a physdiff.nn.Denoiser; got {type(denoiser).__name__}"
            )
        if not isinstance(config, TrainConfig):
            raise InputError(f"config must be a TrainConfig; got {type(config).__name__}")
        self.config = config
        self.device = default_device(config.device)
        self.use_amp = bool(config.amp) and self.device.type == "cuda"
        self.model = denoiser.to(self.device).train()
        self._loss = torch.compile(self.model.loss) if config.compile else self.model.loss
        self.n_classes = denoiser.n_classes
        self.batches = _Batches(data, labels, denoiser.dim, self.n_classes, self.device)
        self.process = get_process(config.process)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # the EMA pairs, listed once (load_state_dict copies into these same tensors)
        self._ema_params = list(self.ema.parameters())
        self._model_params = [p.detach() for p in self.model.parameters()]
        self._buffer_pairs = list(zip(self.ema.buffers(), self.model.buffers(), strict=True))
        self.opt = torch.optim.AdamW(
            self.params,
            lr=config.lr,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=config.weight_decay,
            foreach=_ADAMW_FOREACH,
        )
        self.draws = _Draws(self.batches, config, self.n_classes, self.device)
        self.step = 0
        self.losses: list[torch.Tensor] = []  # device scalars, synced lazily
        self.past_losses = np.zeros(0)
        self.seconds = 0.0

    # one optimisation step; the loss stays on the device (no sync)
    def one_step(self) -> torch.Tensor:
        cfg = self.config
        x0, noise, delta, lab = self.draws()
        with torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp
        ):
            loss = self._loss(x0, noise, delta, lab).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        self._ema_update()
        self.step += 1
        loss = loss.detach()
        self.losses.append(loss)
        return loss

    @torch.no_grad()
    def _ema_update(self) -> None:
        # One multi-tensor lerp, not a Python loop of ``lerp_``: on the CPU it runs the same
        # per-tensor kernel with the same scalar weight (bit-identical; a test compares the
        # two), on CUDA a few kernel launches instead of one per tensor.
        decay = ema_decay_at(self.config.ema_decay, self.step)
        if self._ema_params:
            torch._foreach_lerp_(self._ema_params, self._model_params, 1.0 - decay)
        for be, b in self._buffer_pairs:
            be.copy_(b)

    def all_losses(self) -> np.ndarray:
        if self.losses:
            new = torch.stack(self.losses).double().cpu().numpy()
            if not np.all(np.isfinite(new)):
                bad = self.step - len(new) + int(np.argmin(np.isfinite(new)))
                raise PhysdiffError(
                    f"the training loss became non-finite at step {bad + 1}; "
                    "lower lr or check the data scaling"
                )
            self.past_losses = np.concatenate([self.past_losses, new])
            self.losses = []
        return self.past_losses

    # -- checkpoint state ------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": _FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            **self.draws.state(),
            "losses": torch.from_numpy(self.all_losses().copy()),
            "seconds": float(self.seconds),
            "config": self.config.as_dict(),
            "trajectory": self.config.trajectory_key(),
            "parametrisation": self.model.parametrisation,
            "sigma_data": self.model.sigma_data,
            "torch_version": str(torch.__version__),
        }

    def restore(self, ck: dict, where: str) -> None:
        _check_denoiser_matches(ck, self.model, where)
        text = trajectory_mismatch(ck["trajectory"], self.config)
        if text:
            raise InputError(
                f"checkpoint {where} was written by a run with other settings "
                f"({text}); use a fresh checkpoint_dir or the same config"
            )
        if int(ck["step"]) > self.config.steps:
            raise InputError(
                f"checkpoint {where} is at step {int(ck['step'])}, beyond "
                f"config.steps = {self.config.steps}"
            )
        _load_state(self.model, ck["model"], where)
        _load_state(self.ema, ck["ema"], where)
        self.opt.load_state_dict(ck["optimizer"])
        for group in self.opt.param_groups:  # a checkpoint's param groups carry their own
            group["foreach"] = _ADAMW_FOREACH  # implementation flag; use this version's
        self.draws.restore(ck, where)
        self.step = int(ck["step"])
        self.past_losses = ck["losses"].double().cpu().numpy()
        self.losses = []
        self.seconds = float(ck["seconds"])


def drive(
    tr: Any,
    config: TrainConfig,
    ck_path: Path | None,
    *,
    progress: bool,
    desc: str,
    callback: Callable[[int, float], None] | None = None,
) -> None:
    """Run ``tr.one_step()`` until ``tr.step == config.steps``: the loop shared by
    :func:`train` and :func:`physdiff.nn.train_ensemble` (``tr`` a trainer or an ensemble:
    ``step``, ``seconds``, ``device``, ``one_step()`` returning the loss on the device, a
    scalar or one per member, ``all_losses()`` raising on a non-finite loss, ``state()``).

    One tqdm bar; the loss is read from the device (a GPU sync) once every
    ``max(1, min(50, steps // 100))`` steps, for the bar and the non-finite check, unless
    ``callback(step, loss)`` wants it every step; a checkpoint ``ck_path`` written
    atomically every ``config.checkpoint_every`` steps and at the end; the wall time
    accumulated in ``tr.seconds``.
    """
    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.steps,
        initial=tr.step,
        disable=not progress,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        leave=False,
    )
    refresh = max(1, min(50, config.steps // 100 or 1))
    try:
        t_mark = time.perf_counter()
        while tr.step < config.steps:
            loss = tr.one_step()
            if callback is not None:
                callback(tr.step, float(loss))
            if tr.step % refresh == 0 or tr.step == config.steps:
                values = loss.double().cpu().numpy()  # the one host read every `refresh` steps
                bar.update(tr.step - bar.n)
                if not np.all(np.isfinite(values)):
                    tr.all_losses()  # raises, naming the step (and the member)
                if progress:
                    bar.set_postfix(loss=f"{float(values.mean()):.4g}", refresh=False)
            if ck_path is not None and (
                tr.step % config.checkpoint_every == 0 or tr.step == config.steps
            ):
                now = time.perf_counter()
                tr.seconds += now - t_mark
                t_mark = now
                _atomic_save(tr.state(), ck_path)
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        tr.seconds += time.perf_counter() - t_mark
    finally:
        bar.close()


def train(
    denoiser: Denoiser,
    data: np.ndarray | Ensemble,
    config: TrainConfig,
    *,
    labels: np.ndarray | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``denoiser`` by denoising score matching (module docstring) for ``config.steps``.

    ``data``: an array ``(n, d)`` (minibatches drawn with replacement) or a physdiff
    :class:`~physdiff.ensembles.Ensemble` (``ensemble.sample(batch, rng)`` each step; a
    class-conditional network takes labels from ``ensemble.sample_with_labels``).
    ``labels``: integer classes ``(n,)`` of the rows of ``data`` for a class-conditional
    network; a conditional network without labels trains on the null label only.

    ``checkpoint_dir``: if it holds ``checkpoint.pt``, training resumes from it (its
    trajectory settings must equal ``config``'s; a finished run is returned without
    training); a checkpoint is written there every ``config.checkpoint_every`` steps and at
    the end. ``callback(step, loss)`` runs after every step (raising from it stops the run,
    as an interruption would); on a GPU, handing it the loss as a float waits for the GPU
    every step, so leave it out where speed matters (without it the loss is read from the
    device once every ``max(1, min(50, steps // 100))`` steps). The ``denoiser`` passed in is
    trained in place and returned as ``TrainResult.raw``; ``TrainResult.denoiser`` is a copy
    holding the EMA weights.
    """
    tr = _Trainer(denoiser, data, config, labels)
    ck_path = None
    if checkpoint_dir is not None:
        ck_path = writable_folder(checkpoint_dir, "checkpoint_dir") / CHECKPOINT_NAME
        if ck_path.exists():
            tr.restore(_read_checkpoint(ck_path, tr.device), repr(str(ck_path)))

    drive(tr, config, ck_path, progress=progress, desc="train", callback=callback)
    losses = tr.all_losses()
    if ck_path is not None and not ck_path.exists():  # steps == 0
        _atomic_save(tr.state(), ck_path)
    ema = tr.ema
    raw = tr.model.eval()
    sps = tr.step * config.batch_size / tr.seconds if tr.seconds > 0 else float("nan")
    return TrainResult(
        denoiser=ema,
        raw=raw,
        losses=losses,
        steps=tr.step,
        seconds=tr.seconds,
        samples_per_second=sps,
        config=config,
        checkpoint=ck_path,
    )
