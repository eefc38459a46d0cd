"""Samples of a score model and what they are compared by against its training set.

:func:`heun_samples` draws with the EDM probability-flow sampler (Heun's second-order
method on the EDM time grid, Karras et al. 2022, Algorithm 1, with a final denoising
step), the same way for an exact model and a trained network; :func:`fraction_on_points`
counts the samples that reproduce a training point (within a radius, usually a fraction of
the training set's nearest-neighbour spacing,
:func:`physdiff.association.nearest_neighbour_spacing`), the count whose binomial fraction
(:func:`validation.stats.binomial_fraction`) the memorisation experiments judge.
"""

from __future__ import annotations

import numpy as np

from physdiff.ensembles import Empirical

__all__ = ["heun_samples", "fraction_on_points"]


def heun_samples(model, n: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, d)`` samples of ``model`` by :func:`physdiff.sampling.heun` on the EDM process
    with ``steps`` steps and a final denoising step."""
    from physdiff import sampling

    return sampling.heun(model, n, rng, process="edm", n_steps=steps, final_denoise=True).samples


def fraction_on_points(samples: np.ndarray, train: Empirical, r: float) -> tuple[int, int]:
    """``(k, m)``: how many of ``m`` samples lie within ``r`` of a training point."""
    _, dist = train.nearest(samples)
    return int(np.sum(dist <= r)), int(dist.shape[0])
