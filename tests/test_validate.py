"""The shared argument checks of physdiff._validate: the covariance-spectrum rounding rule."""

from __future__ import annotations

import numpy as np
import pytest

from physdiff._validate import covariance_spectrum, spectrum_rounding_tolerance
from physdiff.errors import DomainError, InputError, ShapeError

EPS = float(np.finfo(np.float64).eps)


@pytest.mark.parametrize(("k", "rank"), [(3, 1), (50, 1), (200, 7), (400, 100)])
def test_eigvalsh_rounding_negatives_are_accepted_and_zeroed(k, rank):
    """eigvalsh of a rank-deficient covariance returns its zeros as +-1e-16-ish numbers:
    they pass, come back as exactly 0 (both signs), and the rank's eigenvalues are
    untouched."""
    x = np.random.default_rng(k + rank).standard_normal((rank, k))
    lam = np.linalg.eigvalsh(x.T @ x)
    assert lam.min() < 0  # the rounding this test is about
    out = covariance_spectrum(lam, "spectrum")
    assert out.dtype == np.float64 and out.shape == (k,)
    assert np.all(out >= 0)
    small = np.abs(lam) <= spectrum_rounding_tolerance(lam)
    assert np.all(out[small] == 0.0) and np.count_nonzero(out) == rank
    np.testing.assert_array_equal(out[~small], lam[~small])
    # the measured rounding stays well inside the bound (the docstring says 0.37 of 8)
    assert -lam.min() <= 0.5 / 8 * spectrum_rounding_tolerance(lam)


def test_the_bound_is_8_k_eps_max_abs():
    lam = np.array([3.0, 1.0, -1e-15, 0.0])
    assert spectrum_rounding_tolerance(lam) == 8 * 4 * EPS * 3.0
    tol = spectrum_rounding_tolerance(lam)
    assert covariance_spectrum(np.array([3.0, 1.0, -tol, 0.0]), "s")[2] == 0.0
    with pytest.raises(DomainError):
        covariance_spectrum(np.array([3.0, 1.0, -1.01 * tol, 0.0]), "s")


@pytest.mark.parametrize(
    "bad",
    [
        [1.0, -0.5],  # a genuine negative variance
        [2.0, 1.0, -1e-12],  # beyond 8 k eps max|lambda| = 1.1e-14
        [-1e-15],  # nothing to be rounding of: the bound scales with max|lambda|
        [-1e-15, -2e-15],
    ],
)
def test_genuine_negatives_raise_naming_the_argument_and_range(bad):
    with pytest.raises(DomainError) as exc:
        covariance_spectrum(bad, "my_spectrum")
    msg = str(exc.value)
    assert msg.startswith("my_spectrum:")
    assert "must be >= 0" in msg and "must lie in [-" in msg and "inf)" in msg
    assert f"min {min(bad):.6g}" in msg


def test_other_bad_input():
    with pytest.raises(InputError, match="spec must hold at least one eigenvalue"):
        covariance_spectrum([], "spec")
    with pytest.raises(InputError, match="spec must be finite"):
        covariance_spectrum([1.0, np.nan], "spec")
    # a scalar and a (k, 1) column are flattened; non-negative input is returned as is
    np.testing.assert_array_equal(covariance_spectrum(2.0, "s"), [2.0])
    np.testing.assert_array_equal(covariance_spectrum([[1.0], [0.0]], "s"), [1.0, 0.0])
    # a matrix is refused, not flattened into "eigenvalues"
    with pytest.raises(ShapeError, match="spec must be a number or a 1-D array"):
        covariance_spectrum(np.eye(2), "spec")


def test_positive_rounding_is_zero_too():
    # a rank-5 covariance in R^40: eigvalsh returns its 35 zero eigenvalues as +-1e-16-ish
    rng = np.random.default_rng(4)
    a = rng.standard_normal((40, 5))
    lam = np.linalg.eigvalsh(a @ a.T)
    assert np.sum(lam > 0) > 5  # the rounding the rule exists for
    out = covariance_spectrum(lam, "spectrum")
    assert np.count_nonzero(out) == 5
    np.testing.assert_array_equal(out[-5:], lam[-5:])
    # an entry just above the tolerance is a direction, kept as given
    tol = spectrum_rounding_tolerance(np.array([1.0, 0.0]))
    assert covariance_spectrum(np.array([1.0, 1.01 * tol]), "s")[1] == 1.01 * tol
    assert covariance_spectrum(np.array([1.0, tol]), "s")[1] == 0.0
