"""Data distributions whose noised marginals are exact (THEORY.md section 1).

All work in the VE frame ``y = x0 + sqrt(delta) z``; see :mod:`physdiff.ensembles.base`.
"""

from .base import Ensemble, FrameView, ScoreModel
from .empirical import Empirical
from .gaussian import Gaussian
from .manifold import LinearManifold
from .mixture import GaussianMixture

__all__ = [
    "ScoreModel",
    "Ensemble",
    "FrameView",
    "Gaussian",
    "GaussianMixture",
    "Empirical",
    "LinearManifold",
]
