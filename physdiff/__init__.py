"""physdiff: statistical physics of generative diffusion models.

The top-level import is light (numpy only): torch lives in :mod:`physdiff.nn`,
matplotlib in :mod:`physdiff.plot`, and numba kernels compile on first use.
"""

from . import classes, ensembles, errors, processes
from .classes import ClassConditional, MixtureClasses, NetworkClasses, as_conditional
from .ensembles import Empirical, Ensemble, Gaussian, GaussianMixture, LinearManifold, ScoreModel
from .processes import DDPM, EDM, OU, VE, Process, VPCosine, VPLinear, get_process

__version__ = "0.1.0"

__all__ = [
    "DDPM",
    "EDM",
    "OU",
    "VE",
    "ClassConditional",
    "Empirical",
    "Ensemble",
    "Gaussian",
    "GaussianMixture",
    "LinearManifold",
    "MixtureClasses",
    "NetworkClasses",
    "Process",
    "ScoreModel",
    "VPCosine",
    "VPLinear",
    "as_conditional",
    "classes",
    "ensembles",
    "errors",
    "get_process",
    "processes",
]
