"""Data distributions whose noised marginals are exact (docs/theory.md section 1).

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
    "UniformSphere",
]


def __getattr__(name: str):
    # UniformSphere's module imports scipy.special: loaded on first use, so that
    # ``import physdiff`` stays light (docs/design.md, "Imports").
    if name == "UniformSphere":
        from .sphere import UniformSphere

        return UniformSphere
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
