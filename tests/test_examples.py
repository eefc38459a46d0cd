"""``physdiff.examples``: the named models are what their descriptions say, and the
command, the figures and validation use these very models."""

from __future__ import annotations

import numpy as np
import pytest

from physdiff import examples as E
from physdiff.errors import InputError


@pytest.mark.parametrize("name", list(E.MIXTURES))
def test_named_mixture_is_its_spec(name):
    spec = E.MIXTURES[name]
    mix = E.mixture(name)
    assert mix.n_components == spec.n_classes
    np.testing.assert_allclose(mix.weights, spec.weights, rtol=1e-15)
    # the mean of the mixture is the weighted mean of the components
    mean = np.asarray(spec.weights) @ np.asarray(spec.means)
    np.testing.assert_allclose(mix.mean, mean, rtol=1e-12, atol=1e-15)
    assert abs(sum(spec.weights) - 1.0) < 1e-12


def test_unknown_mixture_names_the_choices():
    with pytest.raises(InputError, match="four-1d"):
        E.mixture("nope")


def test_four_classes_and_its_named_forms():
    pts = E.mixture("four-points-1d")
    four = E.four_classes_1d()
    y = np.linspace(-10, 10, 11)[:, None]
    np.testing.assert_array_equal(four.score(y, 0.5), pts.score(y, 0.5))
    wide = E.four_classes_1d(0.25)
    np.testing.assert_array_equal(wide.score(y, 0.5), E.mixture("four-1d").score(y, 0.5))


def test_symmetric_pair_moments():
    m, s2, d = 2.0, 0.3, 3
    pair = E.symmetric_pair(m, s2, d)
    e = np.ones(d) / np.sqrt(d)
    # Cov = m^2 e e^T + s2 I, mean 0
    np.testing.assert_allclose(pair.mean, 0.0, atol=1e-15)
    np.testing.assert_allclose(pair.covariance, m * m * np.outer(e, e) + s2 * np.eye(d), rtol=1e-12)


def test_mixture_1d_refuses_what_it_cannot_tell_apart():
    mix = E.mixture_1d([-1.0, 1.0], [0.5], [1.0, 3.0])
    np.testing.assert_allclose(mix.weights, [0.25, 0.75])
    for args, name in (
        (([1.0], [1.0], None), "means"),
        (([1.0, 1.0], [0.5], None), "means"),
        (([1.0, 2.0], [1.0, 2.0, 3.0], None), "stds"),
        (([1.0, 2.0], [-1.0], None), "stds"),
        (([1.0, 2.0], [1.0], [1.0, 0.0]), "weights"),
    ):
        with pytest.raises(InputError, match=f"^{name}: "):
            E.mixture_1d(*args)


def test_point_sets():
    c = E.point_set("circle", 4)
    np.testing.assert_allclose(c, [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-15)
    g = E.point_set("gaussian-points", 5, d=3, seed=7)
    np.testing.assert_array_equal(g, np.random.default_rng(7).standard_normal((5, 3)))
    for kw, name in (({"k": 1}, "k"), ({"k": 4, "d": 3}, "d")):
        with pytest.raises(InputError, match=f"^{name}: "):
            E.point_set("circle", **kw)


def test_the_users_share_the_models():
    import validation.models as VM
    from physdiff.cli import attractors, guide
    from physdiff.figures import information as FI
    from physdiff.removal import METHODS

    assert VM.symmetric_pair is E.symmetric_pair and VM.line_mixture is E.line_mixture
    assert guide.MIXTURES == E.GUIDE_MIXTURES and set(E.GUIDE_MIXTURES) <= set(E.MIXTURES)
    assert guide.METHODS == METHODS
    assert attractors.POINT_SETS == E.POINT_SETS
    y = np.linspace(-9, 9, 7)[:, None]
    np.testing.assert_array_equal(FI._four().score(y, 1.0), E.four_classes_1d().score(y, 1.0))
