"""A trained network as a score model, its architecture read from the checkpoint.

:func:`network_from_checkpoint` builds the :class:`~physdiff.nn.ScoreMLP` or
:class:`~physdiff.nn.ScoreUNet` that a checkpoint of :func:`physdiff.nn.train` holds (the
MLP's hidden width, depth, noise embedding and classes; the U-Net's base channels,
embedding, attention and classes, all from the shapes of the saved weights), loads its EMA
weights (:func:`physdiff.nn.load_checkpoint`) and wraps it as a
:class:`~physdiff.nn.NetworkScoreModel` (``physdiff attractors --checkpoint``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import InputError
from .adapter import NetworkScoreModel
from .denoiser import Denoiser
from .networks import ScoreMLP, ScoreUNet
from .training import load_checkpoint

__all__ = ["network_from_checkpoint"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _image_shape(dim: int, image_shape) -> tuple[int, int, int]:
    if image_shape is None:
        side = math.isqrt(dim)
        if side * side != dim:
            raise InputError(f"image_shape: required when dim ({dim}) is not a square")
        return (1, side, side)
    shape = tuple(int(v) for v in image_shape)
    if len(shape) != 3 or min(shape) < 1 or math.prod(shape) != dim:
        raise InputError(
            f"image_shape: expected (C, H, W) with C*H*W = dim ({dim}); got {tuple(image_shape)}"
        )
    return shape  # type: ignore[return-value]


def _mlp(state: dict, file: Path, dim: int) -> ScoreMLP:
    try:
        hidden, d = state["net.inp.weight"].shape
        embed = state["net.cond.mlp.0.weight"].shape[1]
        depth = len({k.split(".")[2] for k in state if k.startswith("net.blocks.")})
        emb = state.get("net.cond.classes.weight")
    except (KeyError, IndexError, AttributeError):
        raise InputError(f"arch: {str(file)!r} does not hold a ScoreMLP (try 'unet')") from None
    if d != dim:
        raise InputError(f"dim: the checkpoint's network has d = {d}; got {dim}")
    n_classes = None if emb is None else int(emb.shape[0]) - 1
    return ScoreMLP(dim, hidden=int(hidden), depth=depth, n_classes=n_classes, embed_dim=int(embed))


def _unet(state: dict | None, file: Path, shape, base_channels: int | None) -> ScoreUNet:
    try:
        base = int(state["net.conv_in.weight"].shape[0]) if state is not None else None
        embed = int(state["net.cond.mlp.0.weight"].shape[1]) if state is not None else None
        attention = state is None or any(".qkv." in k for k in state)
        emb = None if state is None else state.get("net.cond.classes.weight")
    except (KeyError, IndexError, AttributeError):
        raise InputError(f"arch: {str(file)!r} does not hold a ScoreUNet (try 'mlp')") from None
    n_classes = None if emb is None else int(emb.shape[0]) - 1
    return ScoreUNet(
        shape,
        base_channels=base_channels or base or 32,
        n_classes=n_classes,
        embed_dim=embed,
        attention=attention,
    )


def network_from_checkpoint(
    checkpoint,
    arch: str,
    dim: int,
    *,
    image_shape=None,
    base_channels: int | None = None,
    parametrisation: str = "edm",
    sigma_data: float = 1.0,
    device: str = "cpu",
) -> NetworkScoreModel:
    """The network of ``checkpoint`` (a ``checkpoint.pt`` file or its folder) as a score
    model on ``device``.

    ``arch`` is ``"mlp"`` or ``"unet"``; ``dim`` the data dimension (a U-Net's
    ``image_shape`` defaults to ``(1, H, W)`` with ``H W = dim``, ``base_channels`` to what
    the weights say); ``parametrisation`` and ``sigma_data`` are the denoiser's, as
    trained. Raises :class:`~physdiff.errors.InputError` naming the argument at fault
    (``checkpoint``, ``arch``, ``dim``, ``image_shape``, ``device``).
    """
    p = Path(checkpoint)
    if not (p.is_file() or (p.is_dir() and (p / "checkpoint.pt").is_file())):
        raise InputError(f"checkpoint: no checkpoint at {str(p)!r}")
    if arch not in ("mlp", "unet"):
        raise InputError(f"arch: must be 'mlp' or 'unet'; got {arch!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise InputError(f"dim: the data dimension must be an integer >= 1; got {dim!r}")
    file = p if p.is_file() else p / "checkpoint.pt"
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)["ema"]
    except Exception as exc:  # unreadable or not ours: load_checkpoint says which below
        state, err = None, exc
    if arch == "mlp":
        if state is None:
            raise InputError(f"checkpoint: cannot read {str(file)!r}: {_first_line(err)}")
        net = _mlp(state, file, dim)
    else:
        net = _unet(state, file, _image_shape(dim, image_shape), base_channels)
    try:
        den = Denoiser(net, parametrisation=parametrisation, sigma_data=sigma_data)
        load_checkpoint(file, den)
        return NetworkScoreModel(den, device=device)
    except InputError as exc:  # torch's mismatch report spans lines: keep the first
        raise InputError(f"checkpoint: {_first_line(exc)}") from None
    except RuntimeError as exc:  # e.g. an unavailable device
        raise InputError(f"device: {_first_line(exc)}") from None
