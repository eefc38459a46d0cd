"""Preconditioned denoisers: a raw network turned into ``D(y, delta) ~ E[x0 | y]``.

Everything is in physdiff's variance-exploding frame ``y = x0 + sigma z`` with
``sigma = sqrt(delta)`` (docs/theory.md section 0). A network ``F`` in any of four
parametrisations becomes a denoiser of one form (Karras et al. 2022, "Elucidating the
design space of diffusion-based generative models", Eq. 7 and Table 1):

    D(y, delta) = c_skip y + c_out F(c_in y, c_noise, labels)

with ``c_in = 1/sqrt(sigma^2 + sd^2)`` (unit-variance network input; ``sd = sigma_data``)
and ``c_noise = log(sigma)/4`` for all four, and

    ==========  =======================  ==========================  =========================
    name        c_skip                   c_out                        F estimates
    ==========  =======================  ==========================  =========================
    "edm"       sd^2/(sigma^2 + sd^2)    sigma sd/sqrt(sigma^2+sd^2)  (x0 - c_skip y)/c_out
    "eps"       1                        -sigma                       z = (y - x0)/sigma
    "x0"        0                        1                            x0
    "score"     1                        sigma                        sigma grad log p(y)
    ==========  =======================  ==========================  =========================

"eps" is the noise prediction of Ho et al. 2020 in the VE frame (``D = y - sigma F``),
"x0" the data prediction, "score" the noise-conditional score network of Song & Ermon 2020
with its output scaled by ``1/sigma`` (their technique 3: ``s = F/sigma``, so
``D = y + delta s = y + sigma F``); it is "eps" with the opposite sign. The score follows
without forming ``D - y`` (which cancels at small delta):

    score(y) = (D - y)/delta = (c_out F - (1 - c_skip) y) / sigma^2,

with ``1 - c_skip`` written in closed form (``sigma^2/(sigma^2 + sd^2)`` for "edm").

Training loss (denoising score matching, Vincent 2011; Karras et al. 2022, Eq. 2 and 8):

    L = E_{sigma, x0, z} [ lambda(sigma) |D(x0 + sigma z, sigma^2) - x0|^2 ] / d

with ``lambda = 1/c_out^2``: EDM's weight ``(sigma^2 + sd^2)/(sigma sd)^2`` for "edm", and for
the others their natural weight, the plain mean-square error of the network output
(Ho et al.'s ``|eps - F|^2``; ``1`` for "x0"; Song et al. 2021's ``sigma^2`` on the score
error for "score"). In every case ``L`` is the mean square error in ``F``'s own units, so
``L = 1`` is the scale of a network that predicts nothing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ..errors import InputError, ShapeError

__all__ = ["Denoiser", "PARAMETRISATIONS", "Coefficients"]

PARAMETRISATIONS = ("edm", "eps", "x0", "score")


class Coefficients(NamedTuple):
    """Preconditioning coefficients, each a column ``(B, 1)``."""

    c_skip: torch.Tensor
    one_minus_c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor  # (B,)


class Denoiser(nn.Module):
    """``D(y, delta, labels) = c_skip y + c_out F(c_in y, log(sigma)/4, labels)``.

    ``net`` follows the convention of :mod:`physdiff.nn.networks` (flat ``(B, d)`` in and
    out, ``c_noise (B,)``, ``labels (B,)`` or ``None`` for the null label).
    ``parametrisation`` is one of :data:`PARAMETRISATIONS`; ``sigma_data`` is the data's
    standard deviation per coordinate (1 for standardised data).
    """

    def __init__(self, net: nn.Module, parametrisation: str = "edm", sigma_data: float = 1.0):
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise InputError(
                f"parametrisation must be one of {PARAMETRISATIONS}; got {parametrisation!r}"
            )
        sd = float(sigma_data)
        if not (math.isfinite(sd) and sd > 0):
            raise InputError(f"sigma_data must lie in (0, inf); got {sigma_data!r}")
        self.net = net
        self.parametrisation = parametrisation
        self.sigma_data = sd

    @property
    def dim(self) -> int:
        """Dimension d of the (flattened) data, from the network."""
        dim = getattr(self.net, "dim", None)
        if dim is None:
            raise AttributeError("the wrapped network has no 'dim' attribute")
        return int(dim)

    @property
    def n_classes(self) -> int | None:
        """Number of classes of a class-conditional network (``None``: unconditional)."""
        return getattr(self.net, "n_classes", None)

    def extra_repr(self) -> str:
        return f"parametrisation={self.parametrisation!r}, sigma_data={self.sigma_data:g}"

    # -- the preconditioning -----------------------------------------------------------------
    def coefficients(self, delta: torch.Tensor) -> Coefficients:
        """``c_skip, 1 - c_skip, c_out, c_in`` as ``(B, 1)`` columns and ``c_noise (B,)`` for the
        noise-to-signal variances ``delta (B,)`` (Karras et al. 2022, Table 1)."""
        delta = delta.reshape(-1, 1)
        sigma = torch.sqrt(delta)
        sd2 = self.sigma_data**2
        total = delta + sd2
        c_in = torch.rsqrt(total)
        c_noise = torch.log(sigma).reshape(-1) / 4
        one, zero = torch.ones_like(delta), torch.zeros_like(delta)
        p = self.parametrisation
        if p == "edm":
            c_skip, omc, c_out = sd2 / total, delta / total, sigma * self.sigma_data * c_in
        elif p == "eps":
            c_skip, omc, c_out = one, zero, -sigma
        elif p == "score":
            c_skip, omc, c_out = one, zero, sigma
        else:  # "x0"
            c_skip, omc, c_out = zero, one, one
        return Coefficients(c_skip, omc, c_out, c_in, c_noise)

    def _delta_column(self, delta, y: torch.Tensor) -> torch.Tensor:
        delta = torch.as_tensor(delta, dtype=y.dtype, device=y.device)
        if delta.numel() == 1:
            return delta.reshape(1).expand(y.shape[0])
        if delta.numel() != y.shape[0]:
            raise ShapeError(
                f"delta must be a scalar or have shape ({y.shape[0]},); "
                f"got shape {tuple(delta.shape)}"
            )
        return delta.reshape(-1)

    def raw(
        self, y: torch.Tensor, delta, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Coefficients]:
        """The network output ``F(c_in y, c_noise, labels)`` and the coefficients."""
        delta = self._delta_column(delta, y)
        co = self.coefficients(delta)
        return self.net(co.c_in * y, co.c_noise, labels), co

    def forward(self, y: torch.Tensor, delta, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``D(y, delta) ~ E[x0 | y]``, shape ``(B, d)``."""
        f, co = self.raw(y, delta, labels)
        return co.c_skip * y + co.c_out * f.to(y.dtype)

    def score(self, y: torch.Tensor, delta, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``grad log p_delta(y) ~ (c_out F - (1 - c_skip) y)/delta`` (Tweedie, no cancellation)."""
        delta = self._delta_column(delta, y)
        f, co = self.raw(y, delta, labels)
        return (co.c_out * f.to(y.dtype) - co.one_minus_c_skip * y) / delta[:, None]

    def loss(
        self,
        x0: torch.Tensor,
        noise: torch.Tensor,
        delta: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-sample weighted denoising loss ``lambda(sigma) |D(y) - x0|^2 / d``, ``(B,)``.

        ``y = x0 + sigma noise``; the residual ``D - x0 = c_out F + c_skip sigma z
        - (1 - c_skip) x0`` is formed without subtracting ``x0`` from ``y`` again, and
        ``lambda = 1/c_out^2`` (module docstring).
        """
        delta = self._delta_column(delta, x0)
        co = self.coefficients(delta)
        sigma = torch.sqrt(delta).reshape(-1, 1)
        y = x0 + sigma * noise
        f = self.net(co.c_in * y, co.c_noise, labels).to(x0.dtype)
        resid = co.c_out * f + co.c_skip * sigma * noise - co.one_minus_c_skip * x0
        return ((resid / co.c_out) ** 2).mean(dim=1)
