"""Score networks: a time-conditioned residual MLP for R^d and a small U-Net for images.

Both are the raw network ``F(x_in, c_noise, labels)`` of EDM's preconditioning (Karras et
al. 2022, Eq. 7): :class:`physdiff.nn.Denoiser` feeds them ``x_in = c_in y`` and
``c_noise = log(sigma) / 4`` and turns their output into ``E[x0 | y]``. Arrays are flat,
``(B, d)``; the U-Net reshapes to ``(B, C, H, W)`` inside, so nothing outside it is tied to
image rank (docs/design.md "Conventions").

Conditioning on the noise level goes through fixed sinusoidal features of ``c_noise``
(:class:`NoiseEmbedding`, the positional/Fourier embedding of Vaswani et al. 2017 and
Tancik et al. 2020 on a continuous input), followed by a small MLP. Class conditioning adds
a learned embedding of the label; label index ``n_classes`` is the *null* label, the
unconditional model of classifier-free guidance (Ho & Salimans 2022), and ``labels=None``
means null for the whole batch.

Output layers start at zero, so an untrained network gives ``F = 0`` and the denoiser
starts from its skip connection (for EDM: ``D = c_skip y``, the optimum for
``N(0, sigma_data^2 I)`` data).

``seed``: an integer makes the initial weights a function of it alone (initialisation runs
inside :func:`torch.random.fork_rng`, so torch's global random state is left as it was);
``None`` draws them from torch's global generator like any torch module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F_
from torch import nn

from .._validate import integer
from ..errors import InputError, ShapeError

__all__ = ["NoiseEmbedding", "ScoreMLP", "ScoreUNet"]


@contextmanager
def _seeded(seed: int | None):
    """Run module initialisation from ``seed`` without touching torch's global RNG state."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of the scalar noise conditioning ``c``.

    ``phi(c) = [cos(2 pi f_k c), sin(2 pi f_k c)]_{k=1..dim/2}`` with frequencies ``f_k``
    geometric between ``f_min`` and ``f_max``. With ``c = log(sigma)/4`` the default range
    resolves ``sigma`` from about ``e^-8`` to ``e^8`` (lowest frequency: one half-period over
    that range) down to a few percent (highest frequency).
    """

    freqs: torch.Tensor

    def __init__(self, dim: int, f_min: float = 1.0 / 16, f_max: float = 8.0):
        super().__init__()
        dim = integer(dim, "embed_dim", 2, 1 << 16)
        if dim % 2:
            raise InputError(f"embed_dim must be even; got {dim}")
        k = torch.arange(dim // 2, dtype=torch.float64) / max(dim // 2 - 1, 1)
        freqs = 2 * math.pi * f_min * (f_max / f_min) ** k
        self.register_buffer("freqs", freqs.float(), persistent=False)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        arg = c.reshape(-1, 1).to(self.freqs.dtype) * self.freqs
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


def _labels_or_null(
    labels: torch.Tensor | None, n_classes: int | None, batch: int, device: torch.device
) -> torch.Tensor | None:
    """Class indices ``(B,)`` with ``n_classes`` standing for the null label."""
    if n_classes is None:
        if labels is not None:
            raise InputError(
                "labels were given to a network built without n_classes (an unconditional network)"
            )
        return None
    if labels is None:
        return torch.full((batch,), n_classes, dtype=torch.long, device=device)
    labels = torch.as_tensor(labels, device=device).long().reshape(-1)
    if labels.shape[0] != batch:
        raise ShapeError(f"labels must have shape ({batch},); got {tuple(labels.shape)}")
    return labels


class _Conditioning(nn.Module):
    """``emb = SiLU(MLP(phi(c_noise)) + E[label])``: the vector every block is conditioned on."""

    def __init__(self, embed_dim: int, width: int, n_classes: int | None):
        super().__init__()
        self.n_classes = n_classes
        self.noise = NoiseEmbedding(embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.classes = nn.Embedding(n_classes + 1, width) if n_classes is not None else None

    def forward(
        self, c_noise: torch.Tensor, labels: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        emb = self.mlp(self.noise(c_noise).to(self.mlp[0].weight.dtype))
        if emb.shape[0] == 1 and batch != 1:
            emb = emb.expand(batch, -1)
        lab = _labels_or_null(labels, self.n_classes, batch, emb.device)
        if self.classes is not None:
            emb = emb + self.classes(lab)
        return F_.silu(emb)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _check_classes(n_classes: int | None) -> int | None:
    return None if n_classes is None else integer(n_classes, "n_classes", 1, 1 << 24)


class _MLPBlock(nn.Module):
    """Pre-norm residual block ``h + W2 SiLU(W1 SiLU(LN h) + V emb)`` (W2 starts at zero)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.lin1 = nn.Linear(width, width)
        self.emb = nn.Linear(width, width)
        self.lin2 = _zero(nn.Linear(width, width))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        a = self.lin1(F_.silu(self.norm(h))) + self.emb(emb)
        return h + self.lin2(F_.silu(a))


class ScoreMLP(nn.Module):
    """Time-conditioned residual MLP ``F(x, c_noise, labels)`` for points in R^dim.

    ``x -> Linear -> depth x residual block(emb) -> LayerNorm, SiLU -> Linear -> R^dim``,
    where ``emb`` embeds ``c_noise`` (and the class label when ``n_classes`` is set; label
    ``n_classes`` or ``labels=None`` is the null label).
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 4,
        n_classes: int | None = None,
        embed_dim: int = 64,
        *,
        seed: int | None = None,
    ):
        super().__init__()
        self.dim = integer(dim, "dim", 1, 1 << 24)
        self.hidden = integer(hidden, "hidden", 1, 1 << 20)
        self.depth = integer(depth, "depth", 0, 1024)
        self.n_classes = _check_classes(n_classes)
        with _seeded(seed):
            self.cond = _Conditioning(embed_dim, self.hidden, self.n_classes)
            self.inp = nn.Linear(self.dim, self.hidden)
            self.blocks = nn.ModuleList(_MLPBlock(self.hidden) for _ in range(self.depth))
            self.out_norm = nn.LayerNorm(self.hidden)
            self.out = _zero(nn.Linear(self.hidden, self.dim))

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"x must have shape (B, {self.dim}); got {tuple(x.shape)}")
        emb = self.cond(c_noise, labels, x.shape[0])
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F_.silu(self.out_norm(h)))


def _groups(channels: int, max_groups: int = 8) -> int:
    """The largest group count <= ``max_groups`` that divides ``channels`` (for GroupNorm)."""
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


class _ResBlock(nn.Module):
    """``skip(x) + conv(SiLU(GN(conv(SiLU(GN x)) + V emb)))`` (Ho et al. 2020's block, the
    second convolution starting at zero)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F_.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F_.silu(self.norm2(h)))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over pixels with a residual connection (output at zero)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F_.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class ScoreUNet(nn.Module):
    """A small U-Net ``F(x, c_noise, labels)`` for images ``image_shape = (C, H, W)``, with
    flat input and output ``(B, C*H*W)``.

    Two resolutions (H x W and H/2 x W/2, so H and W must be even), GroupNorm residual
    blocks conditioned on the noise (and class) embedding, optional self-attention at the
    low resolution, skip connections across (Ronneberger et al. 2015; Ho et al. 2020):

        conv_in -> Res(c) ---------------------------------------> cat -> Res(c)  -> out
                    \\-> down -> Res(2c) ----------> cat -> Res(2c) -> up /
                                   \\-> Res, Attn, Res (middle) /

    with ``c = base_channels``. Sized for 8x8 to 32x32 images.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        base_channels: int = 32,
        n_classes: int | None = None,
        *,
        embed_dim: int | None = None,
        attention: bool = True,
        seed: int | None = None,
    ):
        super().__init__()
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ShapeError(
                f"image_shape must be (C, H, W) with positive sizes; got {image_shape!r}"
            )
        c_img, h, w = shape
        if h % 2 or w % 2 or h < 4 or w < 4:
            raise InputError(
                f"image height and width must be even and >= 4 (the U-Net halves "
                f"them once); got {h}x{w}"
            )
        self.image_shape: tuple[int, int, int] = (c_img, h, w)
        self.dim = c_img * h * w
        self.n_classes = _check_classes(n_classes)
        c = integer(base_channels, "base_channels", 1, 1 << 14)
        emb_dim = 4 * c
        with _seeded(seed):
            self.cond = _Conditioning(
                2 * ((c + 1) // 2) if embed_dim is None else embed_dim, emb_dim, self.n_classes
            )
            self.conv_in = nn.Conv2d(c_img, c, 3, padding=1)
            self.enc0 = _ResBlock(c, c, emb_dim)
            self.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
            self.enc1 = _ResBlock(c, 2 * c, emb_dim)
            mid: list[nn.Module] = [_ResBlock(2 * c, 2 * c, emb_dim)]
            if attention:
                mid.append(_Attention(2 * c))
            mid.append(_ResBlock(2 * c, 2 * c, emb_dim))
            self.mid = nn.ModuleList(mid)
            self.dec1 = _ResBlock(4 * c, 2 * c, emb_dim)
            self.up = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
            self.dec0 = _ResBlock(2 * c + c, c, emb_dim)
            self.out_norm = nn.GroupNorm(_groups(c), c)
            self.out = _zero(nn.Conv2d(c, c_img, 3, padding=1))

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ShapeError(
                f"x must have shape (B, {self.dim}) (flattened {self.image_shape} "
                f"images); got {tuple(x.shape)}"
            )
        b = x.shape[0]
        emb = self.cond(c_noise, labels, b)
        h0 = self.enc0(self.conv_in(x.reshape(b, *self.image_shape)), emb)
        h1 = self.enc1(self.down(h0), emb)
        h = h1
        for layer in self.mid:
            h = layer(h, emb)
        h = self.dec1(torch.cat([h, h1], dim=1), emb)
        h = self.up(F_.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.dec0(torch.cat([h, h0], dim=1), emb)
        return self.out(F_.silu(self.out_norm(h))).reshape(b, self.dim)


NetFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""The network convention: ``F(x_in (B, d), c_noise (B,), labels (B,) | None) -> (B, d)``."""
