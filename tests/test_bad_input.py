"""Bad input to the public functions: every case is a clear error that names the argument
by its public name (and, for numbers, the valid range), or a finite answer checked against
a reference. The command's own cases are in ``tests/test_cli_bad_input.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest

import physdiff as pd
from physdiff import association, information, memorization, symmetry
from physdiff._validate import covariance_spectrum
from physdiff.errors import InputError, NoSymmetryBreaking

GM = pd.GaussianMixture


def _two():
    return GM.two_deltas(m=1.0)


# (label, call, error type, regex the message must match: the argument's public name and,
# where there is one, the valid range)
ERRORS = [
    ("two_deltas d=0", lambda: GM.two_deltas(d=0), InputError, r"d must lie in \[1, "),
    ("two_deltas d=1.5", lambda: GM.two_deltas(d=1.5), InputError, r"d must be an integer"),
    ("component(5)", lambda: _two().component(5), InputError, r"k must lie in \[0, 1\]"),
    ("component(-1)", lambda: _two().component(-1), InputError, r"k must lie in \[0, 1\]"),
    (
        "critical_two_deltas m=1e300",
        lambda: symmetry.critical_two_deltas(1e300),
        InputError,
        r"m must satisfy .* <= \|m\| <= .*got m = 1e\+300",
    ),
    (
        "critical_two_deltas m=1e-300",
        lambda: symmetry.critical_two_deltas(1e-300),
        InputError,
        r"m must satisfy .*got m = 1e-300",
    ),
    (
        "critical_two_deltas m=nan",
        lambda: symmetry.critical_two_deltas(float("nan")),
        InputError,
        r"m must be finite",
    ),
    (
        "critical_point window above m^2",
        lambda: symmetry.critical_point(GM.two_deltas(m=1e-4)),
        InputError,
        r"widen delta_range",
    ),
    (
        "critical_point n_grid=0",
        lambda: symmetry.critical_point(_two(), n_grid=0),
        InputError,
        r"n_grid must lie in \[2, ",
    ),
    (
        "critical_point a name",
        lambda: symmetry.critical_point("two-deltas"),
        InputError,
        r"model must be a score model",
    ),
    (
        "critical_point delta_range reversed",
        lambda: symmetry.critical_point(_two(), delta_range=(10.0, 1.0)),
        InputError,
        r"delta_range must satisfy 0 < lo < hi",
    ),
    (
        "critical_point delta_range not a pair",
        lambda: symmetry.critical_point(_two(), delta_range="wide"),
        InputError,
        r"delta_range must be a pair",
    ),
    (
        "bifurcation_diagram no deltas",
        lambda: symmetry.bifurcation_diagram(_two(), []),
        InputError,
        r"deltas must hold at least one value",
    ),
    (
        "conditional_entropy_quadrature no deltas",
        lambda: information.conditional_entropy_quadrature(_two(), []),
        InputError,
        r"deltas must hold at least one value",
    ),
    (
        "entropy negative",
        lambda: information.entropy(np.array([-0.5, 1.5])),
        InputError,
        r"p must be non-negative",
    ),
    (
        "entropy unnormalised",
        lambda: information.entropy(np.array([0.2, 0.2])),
        InputError,
        r"p must sum to 1",
    ),
    ("entropy NaN", lambda: information.entropy(np.array([np.nan, 1.0])), InputError, r"p must"),
    ("entropy empty", lambda: information.entropy(np.array([])), InputError, r"p must hold"),
    (
        "Empirical of points at 1e300",
        lambda: pd.Empirical(np.ones((4, 2)) * 1e300),
        InputError,
        r"points: coordinates must lie in \[-1e\+150, 1e\+150\]",
    ),
    (
        "Empirical queried at 1e200",
        lambda: pd.Empirical(np.eye(3)).score(np.full((1, 3), 1e200), 1.0),
        InputError,
        r"y: coordinates must lie in \[-1e\+150, 1e\+150\]",
    ),
    (
        "Empirical posterior at 1e200",
        lambda: pd.Empirical(np.eye(3)).posterior(np.full((1, 3), 1e200), 1.0),
        InputError,
        r"y: coordinates must lie in",
    ),
    (
        "spectrum as a matrix",
        lambda: covariance_spectrum(np.eye(3), "spectrum"),
        InputError,
        r"spectrum must be a number or a 1-D array",
    ),
    (
        "collapse spectrum as a matrix",
        lambda: memorization.collapse_delta(100, np.eye(3)),
        InputError,
        r"must be a number or a 1-D array",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "pattern"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_clear_error(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_no_symmetry_breaking_stays_for_a_point_mass():
    # a single point has nothing to break: that is a result, not a bad window
    with pytest.raises(NoSymmetryBreaking):
        symmetry.critical_two_deltas(0.0)


def test_widened_window_finds_the_small_critical_point():
    # the error's advice works: delta_c = m^2 = 1e-8 once the window reaches below it
    cp = symmetry.critical_point(GM.two_deltas(m=1e-4), delta_range=(1e-10, 1e6))
    assert cp.delta == pytest.approx(1e-8, rel=1e-6)


@pytest.mark.parametrize("m", [1.5e-154, 1e-100, 1e100, 1.3e154])
def test_critical_two_deltas_at_the_extremes_of_its_range(m):
    assert symmetry.critical_two_deltas(m).delta == pytest.approx(m * m, rel=1e-15)


def test_entropy_of_distributions():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(information.entropy(p), [math.log(2), 0.0], atol=1e-15)


def test_ve_end_point_up_to_rounding_is_accepted():
    # VE's delta_min is 1.0000000000000009e-4 (sigma_min = 0.01 through exp/log): 1e-4 names it
    ve = pd.get_process("ve")
    assert ve.delta_min != 1e-4
    assert association.end_delta(ve, 1e-4, 1.0) == ve.delta_min
    with pytest.raises(InputError, match=r"delta_end must lie in \["):
        association.end_delta(ve, 0.5e-4, 1.0)


def test_train_refuses_an_unwritable_folder_and_an_overflowing_lr(tmp_path):
    nn = pytest.importorskip("physdiff.nn")
    with pytest.raises(InputError, match=r"lr must lie in \(0, 3\.40282e\+38\]"):
        nn.TrainConfig(lr=1e300)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    net = nn.Denoiser(nn.ScoreMLP(2, hidden=8, depth=1))
    data = np.zeros((8, 2))
    cfg = nn.TrainConfig(steps=1, batch_size=4)
    with pytest.raises(InputError, match=r"checkpoint_dir .* cannot be created"):
        nn.train(net, data, cfg, checkpoint_dir=blocker / "sub", progress=False)
    with pytest.raises(InputError, match=r"checkpoint_dir .* exists and is not a folder"):
        nn.train(net, data, cfg, checkpoint_dir=blocker, progress=False)


def _two_delta_score(m, y, delta):
    return (m * np.tanh(m * y / delta) - y) / delta


@pytest.mark.parametrize(
    ("m", "y", "delta"),
    [
        (1.0, 1e200, 1.0),
        (1e200, 1.0, 1.0),
        (1.0, -1e300, 1e-3),
        (1e200, -3.0, 1e10),
        (1e250, 1e250, 1.0),
    ],
)
def test_two_delta_score_far_out_is_the_closed_form(m, y, delta):
    # every log N(y; +-m, delta) overflows here; the posterior comes from log-odds
    model = GM.two_deltas(m=m)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no warning either
        s = model.score(np.array([[y]]), delta)[0, 0]
        jac = model.score_jacobian(np.array([[y]]), delta)[0, 0, 0]
    assert s == pytest.approx(_two_delta_score(m, y, delta), rel=1e-12)
    assert jac == pytest.approx(-1.0 / delta, rel=1e-12)  # sech^2 = 0 that far out


def test_mixture_far_out_goes_to_the_broadest_component():
    # unequal variances: as |y| -> inf the broadest component along y takes all the mass
    means = np.array([[1.0, 0.0], [-1.0, 0.0]])
    model = GM.isotropic([0.3, 0.7], means, [0.5, 2.0])
    y = np.array([[1e200, 0.0], [0.0, -1e200]])
    np.testing.assert_array_equal(model.posterior(y, 1.0), [[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(model.score(y, 1.0), (means[1] - y) / 3.0, rtol=1e-14)
    # equal variances: the nearer mean wins, whatever the weights
    model = GM.isotropic([0.3, 0.7], means, [0.5, 0.5])
    y = np.array([[1e200, 0.0], [-1e200, 5.0]])
    np.testing.assert_array_equal(model.posterior(y, 1.0), [[1.0, 0.0], [0.0, 1.0]])
    assert np.all(np.isfinite(model.score(y, 1.0)))
