"""The example models the experiments measure: Gaussian mixtures whose noised marginals are
exact (:class:`physdiff.ensembles.GaussianMixture`). They live in :mod:`physdiff.examples`,
the one home of the named models (the command, the figures and the tests use them too)."""

from __future__ import annotations

from physdiff.examples import line_mixture, symmetric_pair

__all__ = ["symmetric_pair", "line_mixture"]
