"""Convergence of the fixed-point searches: a flag, and a warning when not converged."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from physdiff import association as A
from physdiff.ensembles import GaussianMixture
from physdiff.errors import ConvergenceWarning, InputError
from physdiff.symmetry import FixedPoint, find_fixed_point


class RunAway:
    """``score(y) = y / (1 + y^2)``: the residual falls as |y| grows, so Newton from y0 = 2
    runs off to infinity while every step lowers the residual (a stand-in for a network far
    from its data)."""

    dim = 1

    def score(self, y, delta):
        y = np.asarray(y, dtype=float)
        return y / (1 + y * y)

    def score_jacobian(self, y, delta):
        y = np.asarray(y, dtype=float)
        return ((1 - y * y) / (1 + y * y) ** 2)[:, :, None]

    def denoise(self, y, delta):
        return y + delta * self.score(y, delta)


def test_converged_fixed_point_is_flagged_and_silent():
    model = GaussianMixture.two_deltas(m=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fp = find_fixed_point(model, [0.8], 0.5)  # the stable state near +1 below delta = 1
    assert isinstance(fp, FixedPoint) and fp.converged and fp.residual <= fp.threshold
    y, eig = fp  # unpacks as before
    assert abs(float(model.score(y[None], 0.5)[0, 0])) <= 1e-10 and eig[-1] < 0
    assert fp.n_iter >= 1


def test_runaway_search_is_not_converged_and_warns():
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        fp = find_fixed_point(RunAway(), [2.0], 1.0, max_iter=60)
    assert not fp.converged
    assert abs(fp.y[0]) > 1e6  # it ran off, with a tiny relative residual
    assert fp.residual <= fp.threshold  # which the residual test alone would call converged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not find_fixed_point(RunAway(), [2.0], 1.0, max_iter=60, warn=False).converged


def test_out_of_steps_warns():
    model = GaussianMixture.two_deltas(m=1.0)
    with pytest.warns(ConvergenceWarning, match="after 1 Newton steps"):
        fp = find_fixed_point(model, [3.0], 0.2, max_iter=1)
    assert not fp.converged
    with pytest.raises(InputError, match="max_iter"):
        find_fixed_point(model, [3.0], 0.2, max_iter=-1)
    with pytest.raises(InputError, match="delta"):
        find_fixed_point(model, [3.0], -0.2)


def test_attractor_search_warns_for_unconverged_points():
    model = GaussianMixture.isotropic([0.5, 0.5], [[-1.0], [1.0]], [0.05, 0.05])
    rng = np.random.default_rng(0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        few = A.find_attractors(model, 8, rng, max_iter=1, refine_tol=1e-14)
    assert not few.converged.all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.find_attractors(model, 8, rng, max_iter=1, refine_tol=1e-14, warn=False)
        none = A.find_attractors(model, 8, rng, max_iter=0)  # no refinement asked: silent
        full = A.find_attractors(model, 8, rng)
    assert full.converged.all() and none.converged.shape == (8,)
