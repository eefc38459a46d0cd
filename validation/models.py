"""The example models the experiments measure: Gaussian mixtures whose noised marginals are
exact (:class:`physdiff.ensembles.GaussianMixture`)."""

from __future__ import annotations

import math

import numpy as np

from physdiff.ensembles import GaussianMixture

__all__ = ["symmetric_pair", "line_mixture"]


def symmetric_pair(m: float, s2: float, d: int) -> GaussianMixture:
    """``1/2 N(+m e, s^2 I) + 1/2 N(-m e, s^2 I)``, ``e = (1, ..., 1)/sqrt(d)``."""
    mu = np.full(int(d), float(m) / math.sqrt(d))
    return GaussianMixture.isotropic([0.5, 0.5], np.stack([mu, -mu]), [s2, s2])


def line_mixture(means, variance: float) -> GaussianMixture:
    """Equal-weight 1-D mixture of ``means`` with variance ``variance``."""
    K = len(means)
    return GaussianMixture.isotropic(
        [1.0 / K] * K, [[float(m)] for m in means], [float(variance)] * K
    )
