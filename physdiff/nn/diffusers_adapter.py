"""Measure an existing diffusers DDPM: a ``UNet2DModel`` + ``DDPMScheduler`` as a score model.

The scheduler's ``alphas_cumprod`` ``abar_k`` (k = 0..T-1) fixes the schedule. A VE-frame
query ``(y, delta)`` is served by the step ``t`` with ``delta(t) = 1/abar(t) - 1``, where
``log abar`` is interpolated linearly between integer steps (the same continuation as
:class:`physdiff.processes.DDPM`), so integer steps are exact and ``t`` is fractional in
between; diffusers' sinusoidal time embedding accepts real timesteps. Then
(docs/theory.md section 0, docs/design.md "One convention for noise"):

    alpha = 1/sqrt(1 + delta),  sigma_t = alpha sqrt(delta),  x_t = alpha y,
    eps   = unet(x_t as an image, t).sample,
    score_VE(y) = alpha score_t(alpha y) = -alpha eps / sigma_t = -eps / sqrt(delta),
    D(y)  = y + delta score_VE(y) = y - sqrt(delta) eps.

``prediction_type`` "sample" (``x0`` directly) and "v_prediction" (``v = alpha eps -
sigma_t x0``, so ``eps = sigma_t x_t + alpha v``; Salimans & Ho 2022) are converted too; a
UNet with a learned variance (``2 C`` output channels) contributes its first ``C``.

diffusers itself is never imported: any objects with the same attributes work
(``unet.config.sample_size``, ``unet.config.in_channels``, ``unet(x, t).sample``,
``scheduler.alphas_cumprod``, optionally ``scheduler.config.prediction_type``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import DomainError, InputError
from .adapter import NetworkScoreModel

__all__ = ["DiffusersDenoiser", "load_diffusers"]

_PREDICTIONS = ("epsilon", "sample", "v_prediction")


class DiffusersDenoiser(nn.Module):
    """A diffusers eps-UNet and its scheduler as a VE-frame denoiser ``D(y, delta, labels)``."""

    def __init__(self, unet, scheduler):
        super().__init__()
        cfg = getattr(unet, "config", None)
        if cfg is None or not hasattr(cfg, "sample_size") or not hasattr(cfg, "in_channels"):
            raise InputError(
                "unet must have .config.sample_size and .config.in_channels "
                "(a diffusers UNet2DModel)"
            )
        size = cfg.sample_size
        h, w = (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))
        c = int(cfg.in_channels)
        self.image_shape = (c, h, w)
        self.dim = c * h * w
        self.n_classes: int | None = getattr(cfg, "num_class_embeds", None)
        abar = getattr(scheduler, "alphas_cumprod", None)
        if abar is None:
            raise InputError("scheduler must have .alphas_cumprod (a diffusers DDPMScheduler)")
        abar = np.asarray(
            torch.as_tensor(abar).detach().cpu().double().numpy(), dtype=np.float64
        ).reshape(-1)
        if (
            abar.size < 2
            or not np.all(np.isfinite(abar))
            or np.any(abar <= 0)
            or np.any(abar >= 1)
            or np.any(np.diff(abar) >= 0)
        ):
            raise InputError("scheduler.alphas_cumprod must be strictly decreasing in (0, 1)")
        pred = getattr(getattr(scheduler, "config", None), "prediction_type", "epsilon")
        if pred not in _PREDICTIONS:
            raise InputError(f"prediction_type must be one of {_PREDICTIONS}; got {pred!r}")
        self.prediction_type = pred
        if isinstance(unet, nn.Module):
            self.unet = unet  # registered: moves with .to(device)
        else:
            object.__setattr__(self, "unet", unet)
        # -log abar_k = log(1 + delta_k), increasing in k
        self._neg_log_abar = torch.from_numpy(-np.log(abar))
        self.delta_min = float(np.expm1(-np.log(abar[0])))
        self.delta_max = float(np.expm1(-np.log(abar[-1])))

    @property
    def n_steps(self) -> int:
        """Number T of scheduler steps."""
        return int(self._neg_log_abar.shape[0])

    def timestep(self, delta: torch.Tensor) -> torch.Tensor:
        """Fractional step ``t`` with ``-log abar(t) = log(1 + delta)`` (float64, on
        ``delta``'s device); ``delta`` outside ``[delta_0, delta_{T-1}]`` raises DomainError."""
        d = delta.detach().double().reshape(-1)
        lo, hi = self.delta_min, self.delta_max
        if bool(torch.any(d < lo * (1 - 1e-9))) or bool(torch.any(d > hi * (1 + 1e-9))):
            raise DomainError(
                f"delta must lie in [{lo:.6g}, {hi:.6g}], the range of the scheduler's "
                f"alphas_cumprod (steps 0..{self.n_steps - 1}); got values in "
                f"[{float(d.min()):.6g}, {float(d.max()):.6g}]"
            )
        table = self._neg_log_abar.to(d.device)
        v = torch.log1p(d)
        k = torch.searchsorted(table, v).clamp(1, self.n_steps - 1)
        left, right = table[k - 1], table[k]
        t = (k - 1).double() + (v - left) / (right - left)
        return t.clamp(0, self.n_steps - 1)

    def _eps_or_x0(self, y: torch.Tensor, delta: torch.Tensor, labels):
        delta = torch.as_tensor(delta, dtype=y.dtype, device=y.device).reshape(-1)
        if delta.numel() == 1:
            delta = delta.expand(y.shape[0])
        t = self.timestep(delta)
        alpha = torch.rsqrt(1 + delta)[:, None]
        b = y.shape[0]
        x_t = (alpha * y).reshape(b, *self.image_shape)
        kwargs = {} if labels is None else {"class_labels": labels}
        out = self.unet(x_t, t.to(y.dtype), **kwargs)
        out = getattr(out, "sample", out)
        c = self.image_shape[0]
        if out.shape[1] == 2 * c:  # learned variance: first half is the prediction
            out = out[:, :c]
        out = out.reshape(b, self.dim).to(y.dtype)
        if self.prediction_type == "v_prediction":
            sigma_t = alpha * torch.sqrt(delta)[:, None]
            out = sigma_t * alpha * y + alpha * out  # eps = sigma_t x_t + alpha v
        return out, delta

    def forward(self, y: torch.Tensor, delta, labels=None) -> torch.Tensor:
        """``D(y, delta) = y - sqrt(delta) eps`` (or the predicted sample)."""
        out, delta = self._eps_or_x0(y, delta, labels)
        if self.prediction_type == "sample":
            return out
        return y - torch.sqrt(delta)[:, None] * out

    def score(self, y: torch.Tensor, delta, labels=None) -> torch.Tensor:
        """``score_VE(y) = -eps / sqrt(delta)`` (or ``(x0 - y)/delta``)."""
        out, delta = self._eps_or_x0(y, delta, labels)
        if self.prediction_type == "sample":
            return (out - y) / delta[:, None]
        return -out / torch.sqrt(delta)[:, None]


def load_diffusers(
    unet,
    scheduler,
    *,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    label: int | None = None,
) -> NetworkScoreModel:
    """A diffusers ``UNet2DModel`` + ``DDPMScheduler`` as a :class:`NetworkScoreModel`.

    Queries are in physdiff's VE frame on flattened images ``(n, C*H*W)``; see the module
    docstring for the conversion. ``label`` passes ``class_labels`` to a class-conditional
    UNet. Nothing is downloaded: build or load the UNet yourself.
    """
    return NetworkScoreModel(
        DiffusersDenoiser(unet, scheduler), device=device, batch_size=batch_size, label=label
    )
