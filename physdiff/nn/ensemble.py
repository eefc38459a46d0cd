"""Train K networks of one architecture at once, as one batched model.

A sweep (one network per training-set size, seed or width) is K independent trainings
that each do too little arithmetic per step to use a processor well: on a GPU a small MLP
is bound by per-step launch overhead, on the CPU by operator dispatch. Stacking the K
members' parameters along a leading axis turns K small steps into one step of K-batched
matrix products, with the Python and dispatch cost paid once.

How a step is built (one mechanism for every architecture):

* the members' parameters and buffers are stacked, ``(K, *shape)`` each
  (:func:`torch.func.stack_module_state`), and the loss of member k is
  ``functional_call(template, params[k], batch[k])`` vectorised over k with
  :func:`torch.func.vmap` (the same :meth:`physdiff.nn.Denoiser.loss` that :func:`train`
  minimises, for an MLP, a U-Net or any network of the same convention);
* the members are independent, so the gradient of ``sum_k L_k`` with respect to the
  stacked parameters holds every member's own gradient: one backward pass;
* gradient clipping (each member's own global norm), AdamW (Loshchilov & Hutter 2019, as
  ``torch.optim.AdamW``'s multi-tensor form computes it) and the EMA update run once over
  the stacked tensors, with per-member learning rates, weight decays, clipping norms and
  EMA decays as ``(K, 1, ...)`` columns.

Each member keeps its own random stream, exactly the one :func:`train` would draw (the
same :class:`physdiff.nn.training._Draws`, seeded with its ``config.seed``: minibatches of
its own training set, of any size n, its noise levels and noise), so member k retraces
``train(denoisers[k], data[k], configs[k])``: the same draws, the same arithmetic up to the
order of floating-point operations inside the batched products (a test compares weights
and losses). On the CPU the per-member draws are a Python loop; their cost is a few
microseconds a member.

Which settings may differ between members: ``seed``, ``lr``, ``weight_decay``,
``ema_decay``, ``grad_clip``, ``process``, ``p_uncond``, ``p_mean``, ``p_std`` and ``t_eps``
(:data:`MEMBER_FIELDS`), besides the data, labels and initial weights. The rest
(``steps``, ``batch_size``, ``device``, ``amp``, ``compile``, ``checkpoint_every``) is
shared: a step
is one batched operation (:data:`SHARED_FIELDS`).

Checkpoints: ``checkpoint_dir/ensemble.pt`` holds the stacked weights, EMA weights and
optimiser moments, the step, every member's generator states and losses, and is written
atomically every ``checkpoint_every`` steps; a run restarted on the same folder resumes
bit for bit (on the CPU), a finished one returns at once, and a member whose trajectory
settings changed is refused by name. ``member_dirs`` additionally writes each member's
final state in :func:`train`'s own checkpoint format, so ``train`` (or
:func:`physdiff.nn.load_checkpoint`) on that folder finds a finished run.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, PhysdiffError
from ._device import default_device
from .denoiser import Denoiser
from .training import (
    CHECKPOINT_NAME,
    TrainConfig,
    TrainResult,
    _atomic_save,
    _Batches,
    _Draws,
    _read_checkpoint,
    _to_device,
    _Trainer,
    drive,
    ema_decay_at,
    trajectory_mismatch,
    writable_folder,
)

__all__ = ["train_ensemble", "MEMBER_FIELDS", "SHARED_FIELDS", "ENSEMBLE_CHECKPOINT"]

ENSEMBLE_CHECKPOINT = "ensemble.pt"
_FORMAT = "physdiff.nn.ensemble/1"
_BETAS = (0.9, 0.999)
_EPS = 1e-8

MEMBER_FIELDS: tuple[str, ...] = (
    "seed",
    "lr",
    "weight_decay",
    "ema_decay",
    "grad_clip",
    "process",
    "p_uncond",
    "p_mean",
    "p_std",
    "t_eps",
)
""":class:`TrainConfig` fields that may differ between the members of one ensemble."""

SHARED_FIELDS: tuple[str, ...] = (
    "steps",
    "batch_size",
    "device",
    "amp",
    "compile",
    "checkpoint_every",
)
""":class:`TrainConfig` fields every member must share (one batched step for all)."""


class _LossOf(nn.Module):
    """``forward = denoiser.loss``: what ``functional_call`` runs for one member."""

    def __init__(self, denoiser: Denoiser):
        super().__init__()
        self.den = denoiser

    def forward(self, x0, noise, delta, labels):
        return self.den.loss(x0, noise, delta, labels)


def _signature(den: Denoiser) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(k, tuple(v.shape), v.dtype) for k, v in den.state_dict().items()]


def _check_members(denoisers, data, configs, labels):
    """Lists of equal length K >= 1, one architecture, shared fields equal; errors name the
    member."""
    if isinstance(denoisers, Denoiser) or not isinstance(denoisers, Sequence):
        raise InputError(
            "denoisers must be a list of physdiff.nn.Denoiser (one per member); got "
            f"{type(denoisers).__name__}"
        )
    k = len(denoisers)
    if k == 0:
        raise InputError("denoisers is empty: an ensemble needs at least one member")
    for i, d in enumerate(denoisers):
        if not isinstance(d, Denoiser):
            raise InputError(
                f"denoisers[{i}] must be a physdiff.nn.Denoiser; got {type(d).__name__}"
            )
    if len({id(d) for d in denoisers}) != k:
        raise InputError("denoisers holds the same Denoiser object twice; give each member its own")
    if isinstance(data, np.ndarray) or not isinstance(data, Sequence):
        raise InputError(
            "data must be a list with one (n, d) array or ensemble per member; got "
            f"{type(data).__name__}"
        )
    if len(data) != k:
        raise InputError(f"data has {len(data)} entries for {k} denoisers; give one per member")
    if isinstance(configs, TrainConfig):
        configs = [configs] * k
    if not isinstance(configs, Sequence) or len(configs) != k:
        raise InputError(f"configs must be one TrainConfig or a list of {k} (one per member)")
    for i, c in enumerate(configs):
        if not isinstance(c, TrainConfig):
            raise InputError(f"configs[{i}] must be a TrainConfig; got {type(c).__name__}")
    if labels is None:
        labels = [None] * k
    elif not isinstance(labels, Sequence) or isinstance(labels, np.ndarray) or len(labels) != k:
        raise InputError(f"labels must be None or a list of {k} entries (None or (n,) arrays)")
    ref, sig0 = denoisers[0], _signature(denoisers[0])
    for i, d in enumerate(denoisers[1:], 1):
        if type(d.net) is not type(ref.net):
            raise InputError(
                f"denoisers[{i}] wraps a {type(d.net).__name__} but denoisers[0] a "
                f"{type(ref.net).__name__}: an ensemble trains one architecture"
            )
        if d.dim != ref.dim:
            raise InputError(
                f"denoisers[{i}] works in R^{d.dim} but denoisers[0] in R^{ref.dim}: "
                "an ensemble trains one architecture"
            )
        if _signature(d) != sig0:
            raise InputError(
                f"denoisers[{i}] has other parameter shapes than denoisers[0] (a different "
                "width, depth or class count): an ensemble trains one architecture"
            )
        if d.n_classes != ref.n_classes:
            raise InputError(
                f"denoisers[{i}] has n_classes={d.n_classes}, denoisers[0] {ref.n_classes}"
            )
        if d.parametrisation != ref.parametrisation or not math.isclose(
            d.sigma_data, ref.sigma_data, rel_tol=1e-12
        ):
            raise InputError(
                f"denoisers[{i}] is a {d.parametrisation!r} denoiser with sigma_data="
                f"{d.sigma_data:g}, denoisers[0] a {ref.parametrisation!r} one with "
                f"sigma_data={ref.sigma_data:g}: members must share both"
            )
    c0 = configs[0]
    for i, c in enumerate(configs[1:], 1):
        for f in SHARED_FIELDS:
            if getattr(c, f) != getattr(c0, f):
                raise InputError(
                    f"configs[{i}].{f} = {getattr(c, f)!r} differs from configs[0].{f} = "
                    f"{getattr(c0, f)!r}; the members of an ensemble share "
                    f"{', '.join(SHARED_FIELDS)}"
                )
    return list(denoisers), list(data), list(configs), list(labels)


def _column(values, like: torch.Tensor) -> torch.Tensor:
    """Per-member scalars as a ``(K, 1, ..., 1)`` column broadcasting against ``like``."""
    col = torch.tensor(values, dtype=torch.float64).to(like.dtype).to(like.device)
    return col.reshape(-1, *([1] * (like.ndim - 1)))


def _update(params, exp_avg, exp_avg_sq, ema, decay, clip, scalars, bc2_sqrt) -> None:
    """One optimiser step of every member, in place.

    ``clip_grad_norm_`` per member (the global norm over that member's tensors, coefficient
    ``min(1, c / (norm + 1e-6))``, skipped where ``c = 0``), then AdamW as
    ``torch.optim.AdamW(foreach=True)`` computes it (Loshchilov & Hutter 2019, Algorithm 2:
    decoupled decay ``p <- (1 - lr wd) p``, moments ``m, v``, bias corrections, ``eps``
    added to ``sqrt(v_hat)``), then ``ema <- lerp(ema, p, 1 - decay_k)``. ``scalars`` holds
    per member ``-lr / (1 - beta1^t)`` (row 0) and the EMA weight (row 1); ``decay`` per
    tensor the column ``1 - lr wd``."""
    b1, b2 = _BETAS
    n_members = clip.shape[0]
    grads = [p.grad for p in params]
    norms = torch.stack([g.reshape(n_members, -1).norm(dim=1) for g in grads])
    total = torch.linalg.vector_norm(norms, dim=0)
    coef = torch.where(clip > 0, torch.clamp(clip / (total + 1e-6), max=1.0), 1.0)
    for p, g, m, v, e, dec in zip(params, grads, exp_avg, exp_avg_sq, ema, decay, strict=True):
        shape = (n_members,) + (1,) * (p.ndim - 1)
        g.mul_(coef.to(g.dtype).reshape(shape))
        p.mul_(dec)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v.sqrt() / bc2_sqrt).add_(_EPS)
        p.add_(m / denom * scalars[0].reshape(shape))
        e.lerp_(p, scalars[1].reshape(shape))


class _Ensemble:
    """The stacked training state of K members and one batched step."""

    def __init__(self, denoisers, data, configs, labels):
        self.configs = configs
        self.k = len(denoisers)
        c0 = configs[0]
        self.steps, self.batch_size = c0.steps, c0.batch_size
        self.checkpoint_every = c0.checkpoint_every
        self.device = default_device(c0.device)
        self.use_amp = bool(c0.amp) and self.device.type == "cuda"
        self.denoisers = [d.to(self.device).train() for d in denoisers]
        self.n_classes = self.denoisers[0].n_classes
        self.draws = []
        for i, (d, x, lab, cfg) in enumerate(
            zip(self.denoisers, data, labels, configs, strict=True)
        ):
            try:
                batches = _Batches(x, lab, d.dim, self.n_classes, self.device)
            except PhysdiffError as err:
                raise type(err)(f"member {i}: {err}") from None
            self.draws.append(_Draws(batches, cfg, self.n_classes, self.device))
        self.template = _LossOf(copy.deepcopy(self.denoisers[0])).to("meta")
        params, buffers = torch.func.stack_module_state([_LossOf(d) for d in self.denoisers])
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.ema = {k: v.detach().clone() for k, v in self.params.items()}
        self.exp_avg = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.step = 0
        self.losses: list[torch.Tensor] = []  # (K,) device tensors, synced lazily
        self.past_losses = np.zeros((self.k, 0))
        self.seconds = 0.0
        # the same tensors as the dicts' values (restore copies into them in place)
        self._lists = tuple(
            list(d.values()) for d in (self.params, self.exp_avg, self.exp_avg_sq, self.ema)
        )
        plist = self._lists[0]
        self._decay = [_column([1.0 - c.lr * c.weight_decay for c in configs], p) for p in plist]
        self._clip = torch.tensor([c.grad_clip for c in configs], device=self.device)
        self._ema_decay = [c.ema_decay for c in configs]
        dims = (0, 0, 0, 0, 0, 0 if self.n_classes is not None else None)
        self._loss = torch.func.vmap(self._member_loss, in_dims=dims, randomness="error")
        self._update = _update
        if c0.compile:
            # the loss only: inductor 2.13 fails to compile the in-place update on the CPU
            # ("KeyError: 'buf54'" in its loop fusion), and that part is a small share
            self._loss = torch.compile(self._loss)

    def _member_loss(self, params, buffers, x0, noise, delta, labels):
        return torch.func.functional_call(
            self.template, (params, buffers), (x0, noise, delta, labels)
        ).mean()

    def one_step(self) -> torch.Tensor:
        drawn = [draw() for draw in self.draws]
        x0, noise, delta, lab = (
            torch.stack([d[j] for d in drawn]) if drawn[0][j] is not None else None
            for j in range(4)
        )
        with torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp
        ):
            loss = self._loss(self.params, self.buffers, x0, noise, delta, lab)
        for p in self.params.values():
            p.grad = None
        loss.sum().backward()
        with torch.no_grad():
            self._clip_and_step()
        self.step += 1
        loss = loss.detach()
        self.losses.append(loss)
        return loss

    def _clip_and_step(self) -> None:
        """Per-member gradient clipping, AdamW and EMA over the stacked tensors."""
        b1, b2 = _BETAS
        step = self.step + 1
        k = self.step  # the EMA decay is warmed up by the step count before this update
        w = [1.0 - ema_decay_at(d, k) for d in self._ema_decay]
        lr = [-c.lr / (1 - b1**step) for c in self.configs]
        scalars = torch.tensor([lr, w], dtype=torch.float64).to(torch.float32)
        self._update(
            *self._lists,
            self._decay,
            self._clip,
            _to_device(scalars, self.device),
            _to_device(torch.tensor((1 - b2**step) ** 0.5, dtype=torch.float32), self.device),
        )

    def all_losses(self) -> np.ndarray:
        if self.losses:
            new = torch.stack(self.losses, dim=1).double().cpu().numpy()
            bad = ~np.isfinite(new)
            if bad.any():
                member, at = np.argwhere(bad)[np.argmin(np.argwhere(bad)[:, 1])]
                step = self.step - new.shape[1] + int(at)
                raise PhysdiffError(
                    f"member {int(member)}: the training loss became non-finite at step "
                    f"{step + 1}; lower its lr or check its data scaling"
                )
            self.past_losses = np.concatenate([self.past_losses, new], axis=1)
            self.losses = []
        return self.past_losses

    # -- members as ordinary modules ---------------------------------------------------------
    def member_state(self, i: int, which: dict) -> dict[str, torch.Tensor]:
        """Member ``i``'s state dict (as :meth:`Denoiser.state_dict` names it) from the
        stacked ``which`` (``self.params`` or ``self.ema``) and the buffers."""
        sd = self.denoisers[i].state_dict()
        out = {}
        for name in sd:
            full = f"den.{name}"
            src = which.get(full, self.buffers.get(full))
            out[name] = src[i].detach().clone()
        return out

    def export_member(self, i: int, data, labels) -> _Trainer:
        """A :class:`_Trainer` holding member ``i``'s exact state (weights, EMA, AdamW
        moments, generators, losses): what :func:`train` would hold at this step."""
        cfg = self.configs[i]
        tr = _Trainer(copy.deepcopy(self.denoisers[i]), data, cfg, labels)
        tr.model.load_state_dict(self.member_state(i, self.params))
        tr.ema.load_state_dict(self.member_state(i, self.ema))
        by_name = dict(tr.model.named_parameters())
        for name, p in by_name.items():
            full = f"den.{name}"
            tr.opt.state[p] = {
                "step": torch.tensor(float(self.step)),
                "exp_avg": self.exp_avg[full][i].detach().clone(),
                "exp_avg_sq": self.exp_avg_sq[full][i].detach().clone(),
            }
        tr.draws.rng.bit_generator.state = self.draws[i].rng.bit_generator.state
        tr.draws.gen.set_state(self.draws[i].gen.get_state())
        tr.step = self.step
        tr.past_losses = self.all_losses()[i].copy()
        tr.seconds = self.seconds
        return tr

    # -- checkpoint state --------------------------------------------------------------------
    def state(self) -> dict:
        ref = self.denoisers[0]
        return {
            "format": _FORMAT,
            "k": self.k,
            "step": self.step,
            "params": {k: v.detach() for k, v in self.params.items()},
            "ema": self.ema,
            "exp_avg": self.exp_avg,
            "exp_avg_sq": self.exp_avg_sq,
            "members": [
                {**dr.state(), "trajectory": c.trajectory_key(), "config": c.as_dict()}
                for dr, c in zip(self.draws, self.configs, strict=True)
            ],
            "losses": torch.from_numpy(self.all_losses().copy()),
            "seconds": float(self.seconds),
            "architecture": [(k, list(s), str(t)) for k, s, t in _signature(ref)],
            "network": type(ref.net).__name__,
            "parametrisation": ref.parametrisation,
            "sigma_data": ref.sigma_data,
            "torch_version": str(torch.__version__),
        }

    def restore(self, ck: dict, where: str) -> None:
        if int(ck["k"]) != self.k:
            raise InputError(
                f"checkpoint {where} holds an ensemble of {int(ck['k'])} members; "
                f"{self.k} were given"
            )
        ref = self.denoisers[0]
        mine = [(k, list(s), str(t)) for k, s, t in _signature(ref)]
        if [tuple(a) for a in ck["architecture"]] != [tuple(a) for a in mine] or ck[
            "parametrisation"
        ] != ref.parametrisation:
            raise InputError(
                f"checkpoint {where} was written for another architecture "
                f"({ck['network']}, {ck['parametrisation']!r}); use a fresh checkpoint_dir"
            )
        for i, (m, c) in enumerate(zip(ck["members"], self.configs, strict=True)):
            text = trajectory_mismatch(m["trajectory"], c)
            if text:
                raise InputError(
                    f"checkpoint {where}: member {i} was trained with other settings ({text}); "
                    "use a fresh checkpoint_dir or the same configs"
                )
        if int(ck["step"]) > self.steps:
            raise InputError(
                f"checkpoint {where} is at step {int(ck['step'])}, beyond steps = {self.steps}"
            )
        for store, key in (
            (self.params, "params"),
            (self.ema, "ema"),
            (self.exp_avg, "exp_avg"),
            (self.exp_avg_sq, "exp_avg_sq"),
        ):
            with torch.no_grad():
                for name, t in store.items():
                    t.copy_(ck[key][name].to(self.device))
        for dr, m in zip(self.draws, ck["members"], strict=True):
            dr.restore(m, where)
        self.step = int(ck["step"])
        self.past_losses = ck["losses"].double().cpu().numpy().reshape(self.k, -1)
        self.losses = []
        self.seconds = float(ck["seconds"])


def train_ensemble(
    denoisers: Sequence[Denoiser],
    data: Sequence[Any],
    configs: TrainConfig | Sequence[TrainConfig],
    *,
    labels: Sequence[np.ndarray | None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    member_dirs: Sequence[str | os.PathLike] | None = None,
    progress: bool = True,
) -> list[TrainResult]:
    """Train ``K = len(denoisers)`` networks of one architecture as one batched model.

    Member k trains ``denoisers[k]`` on ``data[k]`` (an ``(n_k, d)`` array, sizes may
    differ, or an ensemble sampled every step) with ``configs[k]`` (or one config for all)
    and ``labels[k]`` for a class-conditional network, exactly as
    ``train(denoisers[k], data[k], configs[k], labels=labels[k])`` would, up to
    floating-point rounding in the batched products (module docstring; which config fields
    may differ: :data:`MEMBER_FIELDS`, which must agree: :data:`SHARED_FIELDS`).

    ``checkpoint_dir``: whole-ensemble checkpoints (``ensemble.pt``), atomic, every
    ``checkpoint_every`` steps and at the end; an existing one is resumed (bit for bit on
    the CPU) or, if finished, returned at once. ``member_dirs`` (K folders): each member's
    final state written there in :func:`train`'s format, so that ``train`` or
    :func:`physdiff.nn.load_checkpoint` on it finds the finished run. ``progress``: one
    tqdm bar for the ensemble (the postfix shows the members' mean loss).

    Returns one :class:`TrainResult` per member, in order: ``denoiser`` its EMA weights (a
    copy), ``raw`` the trained ``denoisers[k]`` itself (trained in place, as ``train``
    does), its losses, and the ensemble's wall time (``samples_per_second`` is that
    member's share, ``steps * batch_size / seconds``; the ensemble's aggregate is K times
    it). Bad input raises :class:`physdiff.errors.InputError` (or ``ShapeError``) naming
    the member.
    """
    denoisers, data, configs, labels = _check_members(denoisers, data, configs, labels)
    if member_dirs is not None:
        if isinstance(member_dirs, (str, os.PathLike)) or len(member_dirs) != len(denoisers):
            raise InputError(
                f"member_dirs must be a list of {len(denoisers)} folders, one per member"
            )
        member_dirs = [writable_folder(p, f"member_dirs[{i}]") for i, p in enumerate(member_dirs)]
        seen: dict[Path, int] = {}
        for i, folder in enumerate(member_dirs):
            j = seen.setdefault(folder.resolve(), i)
            if j != i:
                raise InputError(
                    f"member_dirs[{i}] and member_dirs[{j}] are the same folder "
                    f"{str(folder)!r}; each member needs its own"
                )
    ens = _Ensemble(denoisers, data, configs, labels)
    ck_path = None
    if checkpoint_dir is not None:
        ck_path = writable_folder(checkpoint_dir, "checkpoint_dir") / ENSEMBLE_CHECKPOINT
        if ck_path.exists():
            ck = _read_checkpoint(
                ck_path, ens.device, fmt=_FORMAT, what="physdiff.nn ensemble checkpoint"
            )
            ens.restore(ck, repr(str(ck_path)))

    drive(ens, configs[0], ck_path, progress=progress, desc=f"train {ens.k} members")
    losses = ens.all_losses()
    if ck_path is not None and not ck_path.exists():  # steps == 0
        _atomic_save(ens.state(), ck_path)
    results = []
    for i, den in enumerate(ens.denoisers):
        with torch.no_grad():
            den.load_state_dict(ens.member_state(i, ens.params))
        ema = copy.deepcopy(den)
        with torch.no_grad():
            ema.load_state_dict(ens.member_state(i, ens.ema))
        ema.eval().requires_grad_(False)
        member_ck = None
        if member_dirs is not None:
            member_ck = member_dirs[i] / CHECKPOINT_NAME
            _atomic_save(ens.export_member(i, data[i], labels[i]).state(), member_ck)
        sps = ens.step * ens.batch_size / ens.seconds if ens.seconds > 0 else float("nan")
        results.append(
            TrainResult(
                denoiser=ema,
                raw=den.eval(),
                losses=losses[i].copy(),
                steps=ens.step,
                seconds=ens.seconds,
                samples_per_second=sps,
                config=configs[i],
                checkpoint=member_ck if member_ck is not None else ck_path,
            )
        )
    return results
