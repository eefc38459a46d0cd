"""k-diffusion both ways: a k-diffusion denoiser as a physdiff score model, and any physdiff
score model as a k-diffusion denoiser.

k-diffusion (Crowson, https://github.com/crowsonkb/k-diffusion) writes every model as a
denoiser ``D(x, sigma)`` on ``x = x0 + sigma z``: the variance-exploding frame of
Karras et al. 2022 (their Eq. 1 with ``s(t) = 1``), which is physdiff's frame with

    sigma = sqrt(delta),      D_k(x, sigma) = E[x0 | x] = model.denoise(x, sigma^2).

Its samplers (``sample_euler``, ``sample_heun``, ...) integrate ``dx/dsigma = (x - D)/sigma``
(Karras et al. 2022, Algorithm 1 with ``sigma(t) = t``), which is physdiff's probability-
flow ODE on the :class:`physdiff.processes.EDM` process, whose time is ``sigma``; a last
step to ``sigma = 0`` is physdiff's ``final_denoise``. k-diffusion itself is never imported
(version 0.1.1 pulls torchvision and many more packages): the bridge is the formula above,
and the tests check it against an exact mixture and a loop written from Karras et al.'s
algorithm.

* :func:`from_k_diffusion` ``(denoiser, shape)``: a callable ``denoiser(x (B, *shape),
  sigma (B,), **extra_args) -> D`` as a :class:`physdiff.nn.NetworkScoreModel` on flattened
  ``(n, prod(shape))`` points. A k-diffusion discrete wrapper (with ``.sigmas``, e.g.
  ``DiscreteEpsDDPMDenoiser``) gets ``.process`` = the DDPM process of
  ``abar = 1/(1 + sigma^2)``; one with only ``sigma_min``/``sigma_max`` gets :class:`EDM`.
* :func:`to_k_diffusion` ``(model)``: a torch module ``(x, sigma) -> D`` for k-diffusion's
  samplers, with ``sigma_min``, ``sigma_max`` (and ``sigmas`` for a DDPM process) from
  ``process`` (default ``model.process``). A :class:`NetworkScoreModel` is called in torch
  (on its device, differentiable); any other score model through numpy in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validate import integer
from ..errors import InputError, ShapeError
from ..processes import DDPM, EDM, Process, get_process
from .adapter import NetworkScoreModel

__all__ = ["KDiffusionDenoiser", "from_k_diffusion", "to_k_diffusion"]


def _shape(shape) -> tuple[int, ...]:
    try:
        out = tuple(integer(s, "shape", 1, 1 << 30) for s in shape)
    except TypeError:
        raise InputError(f"shape must be a sequence of positive integers; got {shape!r}") from None
    if not out:
        raise InputError("shape must hold at least one dimension")
    return out


class _KDenoiserModule(nn.Module):
    """``D(y (B, d), delta (B,)) = denoiser(y as (B, *shape), sqrt(delta))`` flattened."""

    def __init__(self, denoiser, shape: tuple[int, ...], extra_args: Mapping[str, Any]):
        super().__init__()
        if isinstance(denoiser, nn.Module):
            self.inner = denoiser
        else:
            object.__setattr__(self, "inner", denoiser)
        self.shape = shape
        self.dim = math.prod(shape)
        self.extra_args = dict(extra_args)

    def forward(self, y: torch.Tensor, delta: torch.Tensor, labels=None) -> torch.Tensor:
        if labels is not None:
            raise InputError("a k-diffusion denoiser takes no physdiff labels (use extra_args)")
        b = y.shape[0]
        sigma = torch.sqrt(torch.as_tensor(delta, dtype=y.dtype, device=y.device).reshape(-1))
        out = self.inner(y.reshape(b, *self.shape), sigma.expand(b), **self.extra_args)
        out = torch.as_tensor(out)
        if tuple(out.shape) != (b, *self.shape):
            raise ShapeError(
                f"denoiser must return shape {(b, *self.shape)}; got {tuple(out.shape)}"
            )
        return out.reshape(b, self.dim).to(y.dtype)


def _process_of(denoiser) -> Process | None:
    sigmas = getattr(denoiser, "sigmas", None)
    if sigmas is not None:
        s = torch.as_tensor(sigmas).detach().double().cpu().numpy()
        return DDPM.from_alphas_cumprod(1.0 / (1.0 + s * s))
    lo, hi = getattr(denoiser, "sigma_min", None), getattr(denoiser, "sigma_max", None)
    if lo is not None and hi is not None:
        return EDM(float(lo), float(hi))
    return None


def from_k_diffusion(
    denoiser,
    shape: Sequence[int],
    *,
    process: Process | str | None = None,
    extra_args: Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 256,
) -> NetworkScoreModel:
    """A k-diffusion denoiser ``D(x, sigma, **extra_args)`` on data of ``shape`` as a physdiff
    score model: ``denoise(y, delta) = D(y, sqrt(delta))``, ``score = (D - y)/delta``.

    ``process``: the process kept as ``.process`` (default: from the denoiser's ``sigmas``
    or ``sigma_min``/``sigma_max``, see the module docstring, else ``None``).
    """
    if not callable(denoiser):
        raise InputError(
            f"denoiser must be callable as denoiser(x, sigma); got {type(denoiser).__name__}"
        )
    module = _KDenoiserModule(denoiser, _shape(shape), extra_args or {})
    proc = _process_of(denoiser) if process is None else get_process(process)
    return NetworkScoreModel(module, device=device, batch_size=batch_size, process=proc)


class KDiffusionDenoiser(nn.Module):
    """A physdiff score model as a k-diffusion denoiser ``forward(x, sigma) -> E[x0 | x]``.

    ``x``: ``(B, ...)`` with ``prod(...) = model.dim``; ``sigma``: a scalar or ``(B,)``, > 0.
    ``sigma_min``/``sigma_max``: ``sqrt`` of the process's ``delta`` range (``None`` without
    a process); ``sigmas``: ``sqrt(delta_k)`` of a DDPM process, increasing.
    """

    def __init__(self, model, process: Process | str | None = None):
        super().__init__()
        if not (hasattr(model, "dim") and callable(getattr(model, "denoise", None))):
            raise InputError(
                f"model must be a physdiff score model (dim, denoise); got {type(model).__name__}"
            )
        object.__setattr__(self, "model", model)
        proc = getattr(model, "process", None) if process is None else get_process(process)
        self.process: Process | None = proc
        self.sigma_min = None if proc is None else math.sqrt(proc.delta_min)
        self.sigma_max = None if proc is None else math.sqrt(proc.delta_max)
        self.sigmas = None
        if isinstance(proc, DDPM):
            self.sigmas = torch.from_numpy(np.sqrt(np.asarray(proc.deltas)))

    def forward(self, x: torch.Tensor, sigma, **extra_args) -> torch.Tensor:
        if extra_args:
            raise InputError(
                f"extra_args are not used by a physdiff model; got {sorted(extra_args)}"
            )
        b = x.shape[0]
        if math.prod(x.shape[1:]) != int(self.model.dim):
            raise ShapeError(
                f"x must have shape (B, ...) with {int(self.model.dim)} values a row; got "
                f"{tuple(x.shape)}"
            )
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(b)
        if bool(torch.any(~(sigma > 0))):
            raise InputError("sigma must be > 0 (k-diffusion calls the denoiser at sigma > 0)")
        flat, delta = x.reshape(b, -1), sigma * sigma
        m = self.model
        if isinstance(m, NetworkScoreModel):
            lab = None
            if m.label is not None:
                lab = torch.full((b,), m.label, dtype=torch.long, device=m.device)
            out = m.denoiser(flat.to(m.device, m.dtype), delta.to(m.device, m.dtype), lab)
        else:
            y = flat.detach().cpu().double().numpy()
            out = torch.from_numpy(np.asarray(m.denoise(y, delta.detach().cpu().double().numpy())))
        return out.to(x.device, x.dtype).reshape(x.shape)


def to_k_diffusion(model, process: Process | str | None = None) -> KDiffusionDenoiser:
    """``model`` (any physdiff score model) as a k-diffusion denoiser; see
    :class:`KDiffusionDenoiser`."""
    return KDiffusionDenoiser(model, process)
