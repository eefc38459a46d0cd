"""The closed-form fast path of isotropic and shared-covariance mixtures
(physdiff.ensembles._mixture_fast) against the per-component formulas (the general path)."""

from __future__ import annotations

import numpy as np
import pytest

from physdiff.ensembles import Gaussian, GaussianMixture
from physdiff.ensembles import _mixture_fast as F

WHAT = (
    "log_joint",
    "posterior",
    "log_density",
    "denoise",
    "score",
    "posterior_covariance",
    "score_jacobian",
)


def _mixtures(rng, d, K, scale):
    w = rng.uniform(0.1, 1.0, K)
    w /= w.sum()
    means = scale * rng.standard_normal((K, d))
    s2 = rng.uniform(0.05, 2.0, K)
    s2[0] = 0.0  # a point mass among them
    iso = GaussianMixture.isotropic(w, means, s2)
    r = max(1, d - 2)  # degenerate: zero variance on a 2-d complement
    q = np.linalg.qr(rng.standard_normal((d, r)))[0]
    lam = np.exp(rng.uniform(-2, 1, r))
    shared = GaussianMixture.shared_covariance(w, means, Gaussian.from_eigen(means[0], q, lam))
    a = rng.standard_normal((d, d))
    full = GaussianMixture.shared_covariance(w, means, a @ a.T + 0.1 * np.eye(d))
    return {"isotropic": iso, "shared-degenerate": shared, "shared-full": full}


def _general(mix, what, y, delta):
    return getattr(mix, "_general_" + what)(y, delta)


def _check(got, want, what):
    if what == "log_joint":
        scale = np.max(np.abs(want), axis=1, keepdims=True)
    elif what in ("posterior_covariance", "score_jacobian"):
        scale = np.max(np.abs(want), axis=(1, 2), keepdims=True)
    elif want.ndim == 1:
        scale = np.maximum(1.0, np.abs(want))
    else:
        scale = np.max(np.abs(want), axis=1, keepdims=True)
    # rows where the posterior sits on one point mass have zero covariance: floor the scale
    scale = np.maximum(scale, 1e-12 * np.max(np.abs(want)) + 1e-300)
    err = np.max(np.abs(got - want) / scale)
    assert err < 1e-8, (what, err)  # the bound: log joints right to 1e-9 absolute


@pytest.mark.parametrize("d, K", [(3, 2), (16, 5), (40, 12)])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_fast_path_matches_general_path(d, K, scale):
    rng = np.random.default_rng(d * K)
    for name, mix in _mixtures(rng, d, K, scale).items():
        assert mix._fast is not None, name
        means = mix.means
        y = np.concatenate(
            [
                means[rng.integers(0, K, 20)] + rng.standard_normal((20, d)),
                3 * scale * rng.standard_normal((5, d)),
            ]
        )
        delta = np.exp(rng.uniform(np.log(0.05), np.log(20.0), y.shape[0]))[:, None]
        bad = mix._fast.bound(y, delta) > F._TOL
        assert scale > 1 or bad.mean() < 0.5, name  # the fast formulas really run here
        for what in WHAT:
            if not bad.all():
                fast, rest = mix._fast.evaluate(what, y[~bad], delta[~bad])
                if rest.any():  # log joints / density: a relative bound, stricter
                    assert what in ("log_joint", "log_density")
                _check(fast, _general(mix, what, y[~bad], delta[~bad]), f"{name} {what}")
            # the public path (fast rows and handed-back rows together)
            _check(getattr(mix, "_" + what)(y, delta), _general(mix, what, y, delta), what)


def test_small_delta_rows_are_handed_back():
    # point masses at tiny delta: |y|^2 + |mu|^2 - 2 y.mu cancels far beyond the logit scale;
    # those rows must come from the direct differences, and agree with them exactly
    rng = np.random.default_rng(3)
    means = 100.0 + rng.standard_normal((4, 5))
    mix = GaussianMixture.isotropic(np.full(4, 0.25), means, 0.0)
    y = means[[0, 1, 2, 3, 0]] + 1e-3 * rng.standard_normal((5, 5))
    delta = np.full((5, 1), 1e-6)
    assert mix._fast.evaluate("score", y, delta)[1].all()
    np.testing.assert_array_equal(mix._score(y, delta), mix._general_score(y, delta))
    # the bound is not vacuous: the expansion alone is visibly off there
    fast = mix._fast.prepare(y, delta)[0].T
    assert np.max(np.abs(fast - mix._general_log_joint(y, delta))) > 1e-9


def test_structure_detection():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((3, 4))
    assert isinstance(GaussianMixture([0.2, 0.3, 0.5], m)._fast, F.IsotropicFast)  # masses
    # isotropic through the general constructor (eigh of s^2 I): still detected
    covs = np.stack([2.0 * np.eye(4), 0.5 * np.eye(4), np.zeros((4, 4))])
    assert isinstance(GaussianMixture([0.2, 0.3, 0.5], m, covs)._fast, F.IsotropicFast)
    c = np.diag([1.0, 2.0, 3.0, 4.0])
    same = GaussianMixture([0.2, 0.3, 0.5], m, np.stack([c, c, c]))
    assert isinstance(same._fast, F.SharedFast)
    mixed = GaussianMixture([0.2, 0.3, 0.5], m, np.stack([c, 2 * c, c]))
    assert mixed._fast is None
    with pytest.raises(Exception, match="cov"):
        GaussianMixture.shared_covariance([0.5, 0.5], m[:2], np.eye(3))


def test_zero_weight_component_and_sampling_unchanged():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((3, 6))
    mix = GaussianMixture.isotropic([0.5, 0.5, 0.0], m, [0.3, 0.0, 1.0])
    y = m[:2] + 0.5 * rng.standard_normal((2, 6))
    dl = np.full((2, 1), 0.7)
    post = mix._posterior(y, dl)
    assert np.all(post[:, 2] == 0.0) and np.all(np.isfinite(post))
    _check(mix._score(y, dl), mix._general_score(y, dl), "score")


@pytest.mark.parametrize("name", ["shared-degenerate", "shared-full", "isotropic"])
def test_repeated_deltas_and_constant_delta(name):
    # the within terms are built once per distinct delta: rows sharing a delta, a constant
    # delta and one delta per row must all give the per-component formulas
    rng = np.random.default_rng(11)
    mix = _mixtures(rng, 24, 6, 1.0)[name]
    means = mix.means
    y = means[rng.integers(0, 6, 30)] + rng.standard_normal((30, 24))
    for delta in (
        np.full((30, 1), 0.4),
        rng.choice([0.2, 0.9, 3.0], size=(30, 1)),
        np.exp(rng.uniform(-1, 1, (30, 1))),
    ):
        assert not mix._fast.evaluate("score", y, delta)[1].any()  # all rows fast here
        v = mix._fast.prepare(y, delta)[1]
        v = v if name == "isotropic" else v[0]
        one = np.all(delta == delta[0])  # one delta: v broadcasts over the rows
        assert v.shape[1 if name == "isotropic" else 0] == (1 if one else 30), v.shape
        for what in ("denoise", "score", "posterior_covariance", "score_jacobian"):
            _check(getattr(mix, "_" + what)(y, delta), _general(mix, what, y, delta), what)


def test_shared_bound_counts_both_forms():
    # with a complement the log joint is two expanded forms (|y - mu|^2 / delta and the
    # tangent correction): the bound is twice the isotropic one for the same norms
    rng = np.random.default_rng(5)
    means = rng.standard_normal((3, 8))
    q = np.linalg.qr(rng.standard_normal((8, 4)))[0]
    shared = GaussianMixture.shared_covariance(
        np.full(3, 1 / 3), means, Gaussian.from_eigen(means[0], q, np.ones(4))
    )
    iso = GaussianMixture.isotropic(np.full(3, 1 / 3), means, 0.0)
    y = rng.standard_normal((4, 8))
    delta = np.full((4, 1), 0.5)
    np.testing.assert_allclose(shared._fast.bound(y, delta), 2 * iso._fast.bound(y, delta))


def test_isotropic_components_share_one_basis():
    # K isotropic components hold one d x d identity between them (d = 3072, K = 100 would
    # otherwise hold 7.5 GB), and each is the Gaussian.isotropic it stands for
    rng = np.random.default_rng(2)
    means = rng.standard_normal((5, 7))
    s2 = np.array([0.5, 0.0, 2.0, 1.5, 0.5])
    mix = GaussianMixture.isotropic(np.full(5, 0.2), means, s2)
    gauss = [c for c in mix.components if c.rank]
    assert len(gauss) == 4 and all(c._U is gauss[0]._U for c in gauss)
    y = rng.standard_normal((6, 7))
    for c, m, s in zip(mix.components, means, s2, strict=True):
        ref = Gaussian.point_mass(m) if s == 0 else Gaussian(m, s * np.eye(7))
        np.testing.assert_allclose(c.covariance, ref.covariance, atol=1e-15)
        np.testing.assert_allclose(c.score(y, 0.3), ref.score(y, 0.3), rtol=1e-13)
