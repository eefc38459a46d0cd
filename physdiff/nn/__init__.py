"""Torch score networks, denoising score-matching training and the adapter to physdiff's
score-model interface (docs/design.md "nn/"). Importing this package imports torch;
``import physdiff`` alone does not.

* :class:`ScoreMLP`, :class:`ScoreUNet`: raw networks ``F(x_in, c_noise, labels)``, flat
  ``(B, d)`` in and out, optionally class-conditional with a null label for guidance;
* :class:`Denoiser`: EDM preconditioning (Karras et al. 2022, Table 1) in the
  "edm", "eps", "x0" or "score" parametrisation, giving ``D(y, delta) ~ E[x0 | y]`` in the
  VE frame ``y = x0 + sqrt(delta) z``;
* :func:`train` with :class:`TrainConfig` -> :class:`TrainResult`: seeded, EMA, AdamW,
  atomic checkpoints that resume to the same weights, cuda when present, bf16 on GPU;
* :func:`train_ensemble`: K networks of one architecture trained as one batched model
  (each member retracing its own :func:`train` run), whole-ensemble checkpoints;
* :class:`NetworkScoreModel`: a trained denoiser as a :class:`physdiff.ensembles.ScoreModel`
  (numpy in, float64 out, score Jacobian by autograd, conditional scores, process frames);
* :func:`load_diffusers`: a diffusers UNet with its scheduler, a pipeline or a saved folder
  as a :class:`DiffusersModel` carrying the scheduler's own ``.process``;
* :func:`from_k_diffusion` / :func:`to_k_diffusion`: k-diffusion denoisers ``D(x, sigma)``
  both ways (``sigma = sqrt(delta)``).
"""

from __future__ import annotations

from ._device import default_device
from .adapter import NetworkScoreModel
from .denoiser import PARAMETRISATIONS, Denoiser
from .diffusers_adapter import DiffusersDenoiser, DiffusersModel, load_diffusers
from .ensemble import train_ensemble
from .k_diffusion import KDiffusionDenoiser, from_k_diffusion, to_k_diffusion
from .networks import NoiseEmbedding, ScoreMLP, ScoreUNet
from .training import TrainConfig, TrainResult, load_checkpoint, sample_delta, train

__all__ = [
    "ScoreMLP",
    "ScoreUNet",
    "NoiseEmbedding",
    "Denoiser",
    "PARAMETRISATIONS",
    "TrainConfig",
    "TrainResult",
    "train",
    "train_ensemble",
    "sample_delta",
    "NetworkScoreModel",
    "load_checkpoint",
    "load_diffusers",
    "DiffusersDenoiser",
    "DiffusersModel",
    "from_k_diffusion",
    "to_k_diffusion",
    "KDiffusionDenoiser",
    "default_device",
]
