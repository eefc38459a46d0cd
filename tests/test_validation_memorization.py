"""The memorisation experiments of ``validation`` (collapse_exact, collapse_networks,
lost_dimensions): what their smoke rows hold, and their own estimators. The smoke runs
(fixture ``smoke``, tests/conftest.py) and the checks every experiment gets (smoke agrees,
a shifted prediction disagrees in every row, trainings are reused) are in
tests/test_validation.py.

The cpu and gpu presets run through ``python -m validation run NAME --preset cpu``
(docs/validation.md); their results are committed under ``validation/results/``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("torch")

from physdiff import geometry as G  # noqa: E402
from physdiff import memorization as M  # noqa: E402
from physdiff.ensembles import Empirical, Gaussian, LinearManifold  # noqa: E402
from physdiff.errors import InputError  # noqa: E402
from validation import experiments  # noqa: E402
from validation.experiments import collapse_exact as CE  # noqa: E402
from validation.experiments import collapse_networks as CN  # noqa: E402
from validation.experiments import lost_dimensions as LD  # noqa: E402
from validation.sweep import Engine  # noqa: E402

SERIAL = Engine("serial")
MODULES = {"collapse_exact": CE, "collapse_networks": CN, "lost_dimensions": LD}


def test_registered():
    for name in MODULES:
        assert name in experiments.EXPERIMENTS
        assert experiments.load(name) is MODULES[name]
        assert set(MODULES[name].PRESETS) == {"smoke", "cpu", "gpu"}


def test_collapse_exact_rows(smoke):
    _, results = smoke
    rows = results["collapse_exact"].rows
    cases = CE.PRESETS["smoke"].cases
    assert len(rows) == 4 * len(cases)
    fe = [r for r in rows if "from f^e" in r.quantity]
    assert len(fe) == len(cases)
    for r in fe:  # judged against the finite-size theory, with the grid quantisation only
        assert "OU / DDPM step: theory" in r.condition and r.judged
        fs = r.extra["finite_size"]
        assert r.predicted == pytest.approx(fs["log_delta"])
        assert r.tolerance == pytest.approx(fs["grid_error"])
        assert 0 <= r.tolerance < 0.05
        assert "grid quantisation" in r.slack_reason
        # the finite-d deviation: both sit below delta_C at these d
        assert r.extra["log_offset_finite_size"] < 0 and r.extra["log_offset_measured"] < 0
    f_rows = [r for r in rows if r.quantity.startswith("f^e at delta_C")]
    assert all(r.tolerance == 0 and r.judged for r in f_rows)
    refs = [r for r in rows if not r.judged]
    assert refs and all(r.quantity.startswith("reference") for r in refs)


def test_collapse_exact_grid_crossing_is_censored_outside_the_grid():
    dls = np.geomspace(0.5, 2.0, 5)
    x, b = CE.grid_crossing(dls, np.array([0.1, 0.3, 0.6, 0.9, 1.2]))
    assert b == "" and math.log(dls[2]) < x < math.log(dls[3])
    assert CE.grid_crossing(dls, np.full(5, 0.1)) == (math.log(2.0), "lower")
    assert CE.grid_crossing(dls, np.full(5, 1.0)) == (math.log(0.5), "upper")


@pytest.mark.slow
def test_collapse_exact_finite_size_rule_catches_the_large_d_prediction():
    """The rule that can fail: the f^e crossing of a few training sets agrees with the
    finite-size prediction and disagrees with the large-d delta_C (0.23 away in log delta,
    many standard errors), which the old fixed tolerance of 0.4 let pass."""
    cfg = dataclasses.replace(CE.PRESETS["smoke"], cases=((16, 100),), training_sets=4)
    dls = CE._grid(16, 100, cfg)
    c = CE._case(16, 100, 0, dataclasses.replace(cfg, traj_max_n=0), seed=3)
    th = CE.finite_size_prediction(100, 16, 1.0, dls)
    x, se, bound = c["fe"]
    assert bound == "" and 0 < se < 0.06
    rule = cfg.verdict.rule(th["grid_error"], reason="grid")
    assert rule.agrees(th["log_delta"], x, se)
    assert not rule.agrees(math.log(c["delta_C"]), x, se)


def test_collapse_networks_rows(smoke):
    _, results = smoke
    rows = results["collapse_networks"].rows
    assert len(rows) == 3 * len(CN.PRESETS["smoke"].ns)
    for r in rows:
        assert 0.0 <= r.extra["empirical_fraction"] <= 1.0
        assert len(r.extra["r_curve"]["network"]) == CN.PRESETS["smoke"].deltas[2]


def test_lost_dimensions_rows(smoke):
    _, results = smoke
    cfg = LD.PRESETS["smoke"]
    rows = results["lost_dimensions"].rows
    n_manifold = len(cfg.kinds) * len(cfg.ns_exact) * 2 * 2  # kinds, n, criteria, 2 groups
    n_digits = len(cfg.digits_subsets) * len(cfg.digits_deltas)
    assert len(rows) == n_manifold + n_digits
    assert sum(r.quantity.startswith("digits") for r in rows) == n_digits


# ---------------------------------------------------------------------------------------
# the experiments' own estimators
# ---------------------------------------------------------------------------------------
def test_surprisal_samples_are_the_library_estimator():
    # the experiment's per-sample values are the library's: same draws, same mean
    rng = np.random.default_rng(0)
    d, n = 48, 300
    emp = Empirical(rng.standard_normal((n, d)))
    dc = M.collapse_delta_isotropic(n, d)
    for dl in (0.5 * dc, dc, 2 * dc):
        g, pr = CE.surprisal_samples(emp, dl, 3000, np.random.default_rng(7))
        assert np.all(g >= 0) and np.all(pr >= 1)
        lib = M.excess_entropy_empirical(emp, [dl], 3000, np.random.default_rng(7))
        assert g.mean() / d == pytest.approx(lib.f[0], rel=1e-12, abs=1e-15)
        assert g.std(ddof=1) / d / math.sqrt(g.size) == pytest.approx(lib.stderr[0], rel=1e-9)


def test_collapse_index():
    assert CE.collapse_index(np.array([False, True, False, True, True])) == 3
    assert CE.collapse_index(np.array([True, True])) == 0
    assert CE.collapse_index(np.array([True, False])) == -1


def test_denoising_ratio_is_one_for_the_linear_denoiser_and_zero_when_collapsed():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 5)) * [2.0, 1.0, 1.0, 0.5, 0.5]
    cen = x - x.mean(0)
    lin = Gaussian(x.mean(0), cen.T @ cen / x.shape[0])  # the training set's linear denoiser
    deltas = np.array([1e-3, 0.3, 3.0])
    out = CN.denoising_ratio({"lin": lin, "emp": Empirical(x)}, x, deltas, 4000, rng)
    r, se = out["lin"]
    assert np.all(np.abs(r - 1) < 5 * se)
    assert out["emp"][0][0] < 1e-6 and out["emp"][0][-1] > 0.5


def test_thresholds_fall_back_to_nan_per_direction():
    deltas = np.geomspace(0.01, 10, 13)
    ref = np.ones((deltas.size, 2))
    ratio = np.stack([np.clip(np.log10(deltas) + 1.5, 0, 1), np.ones(deltas.size)], axis=1)
    ratio[0, 1] = 0.2  # never lost on the grid's upper part: only the lower end dips
    rv = G.RetainedVariance(
        deltas, ratio * ref, np.full_like(ref, 1e-3), ref, np.zeros_like(ref), None, 100
    )
    th = LD.thresholds(rv, np.array([2.0, 1.0]), 100, False, "retained")
    assert math.isfinite(th.deltas[0]) and th.deltas[0] == pytest.approx(10**-1, rel=0.05)
    # direction 1 crosses 1/2 only between the first two grid points: still a threshold
    assert math.isfinite(th.deltas[1])
    rv2 = dataclasses.replace(rv, variance=np.stack([ratio[:, 0], np.ones(13)], axis=1))
    th2 = LD.thresholds(rv2, np.array([2.0, 1.0]), 100, False, "retained")
    assert math.isfinite(th2.deltas[0]) and math.isnan(th2.deltas[1])


def test_lost_dimensions_rows_for_never_resolved_groups_and_model_a():
    cfg = dataclasses.replace(LD.PRESETS["smoke"], judge_gated_rem=True)
    inf = math.inf
    grid = (math.log(1e-3), math.log(10.0))
    th = G.DirectionThresholds(
        "measured", "jacobian", 0.5, np.array([2.0, 2.0, 1.0, 1.0]),
        np.array([0.2, 0.3, inf, inf]), np.array([0.01, 0.01, 0.0, 0.0]), 200.0, False,
    )  # fmt: skip
    g = LD._groups(th, ["", "", "lower", "lower"], grid)
    # never resolved: lost at every noise level, a lower bound at the grid's top
    assert g["lo"] == (grid[1], 0.0, LD.NEVER, "lower") and g["hi"][2:] == ("ok", "")
    assert g["hi"][0] == pytest.approx(0.5 * (math.log(0.2) + math.log(0.3)))
    order = LD._order(g)  # only the low group censored: lost first, a lower bound
    assert order[2] == "lower" and order[0] == pytest.approx(grid[1] - g["hi"][0])
    th_nan = dataclasses.replace(th, deltas=np.array([0.2, np.nan, inf, inf]))
    g_nan = LD._groups(th_nan, ["", "upper", "lower", "lower"], grid)
    assert g_nan["hi"][2:] == (LD.OUTSIDE, "upper")
    assert g_nan["hi"][0] == pytest.approx(0.5 * (math.log(0.2) + grid[0]))
    both = LD._groups(th, ["", "", "lower", "lower"], grid)
    both["hi"] = (grid[1], 0.0, LD.NEVER, "lower")
    assert LD._order(both) is None  # both lost above the grid: the ordering is undefined
    meas = {
        "source": "exact score",
        "groups": g,
        "peak": {"hi": (0.8, 0.01), "lo": (0.4, 0.01)},
        "condition": "synthetic",
        "per_direction": th.deltas.tolist(),
        "censoring": ["", "", "lower", "lower"],
    }
    a = {"hi": math.log(0.25), "lo": math.log(0.1)}
    b = {"hi": math.log(0.24), "lo": inf}  # model (b): the low group is never resolved
    rows = LD._manifold_rows(cfg, meas, a, b, {"hi": 0.9, "lo": 0.42})
    assert [r.verdict for r in rows] == ["agree", "agree", "reported", "reported"]
    assert "peak V/delta" in rows[1].quantity and rows[1].predicted == 0.42
    # model (a) is a reference: its factor is reported, and (a) orders the groups the
    # other way, which the lower bound refutes
    assert rows[2].extra["factor_measured_over_model_a"] == pytest.approx(
        math.exp(g["hi"][0] - a["hi"])
    )
    assert rows[3].bound == "lower" and rows[3].extra["rule_holds"] is False
    # a group model (b) resolves but the measurement never does: a bound that disagrees
    b2 = {"hi": math.log(0.24), "lo": math.log(0.05)}
    rows2 = LD._manifold_rows(cfg, meas, a, b2, {"hi": 0.9, "lo": 0.42})
    assert rows2[1].bound == "lower" and rows2[1].verdict == "disagree"


def test_censoring_sides_from_the_curve():
    deltas = np.geomspace(0.01, 10, 5)
    vis = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.3, 0.2], [0.1, 0.1]])
    rv = G.RetainedVariance(
        deltas, vis * deltas[:, None], np.full_like(vis, 1e-3), np.ones_like(vis),
        np.zeros_like(vis), None, 100,
    )  # fmt: skip
    th = G.DirectionThresholds(
        "measured", "jacobian", 0.5, np.array([2.0, 1.0]), np.array([np.nan, np.inf]),
        np.array([np.nan, np.inf]), 100.0, False,
    )  # fmt: skip
    assert LD.censoring(rv, th, "jacobian") == ["upper", "lower"]


def test_model_b_visible_is_the_gaussian_formula():
    stds = np.array([2.0, 1.0])
    pop = G.manifold_population(LinearManifold.axis_aligned(4, stds), np.geomspace(0.01, 5, 9))
    vis = LD.model_b_visible(pop, 50)
    ref = (
        stds**2
        / (stds**2 + pop.deltas[:, None])
        * G.ess_retained_fraction(pop.deltas, 50, stds)[:, None]
    )
    assert np.allclose(vis, ref, rtol=1e-12)


def test_bad_configs_are_refused():
    with pytest.raises(InputError, match="n >= 2"):
        CE.check(dataclasses.replace(CE.PRESETS["smoke"], cases=((4, 1),)))
    with pytest.raises(InputError, match="traj_batches"):
        CE.check(dataclasses.replace(CE.PRESETS["smoke"], traj_batches=1))
    with pytest.raises(InputError, match="n >= 2"):
        CN.check(dataclasses.replace(CN.PRESETS["smoke"], ns=(1,)))
    with pytest.raises(InputError, match="kinds"):
        LD.check(dataclasses.replace(LD.PRESETS["smoke"], kinds=("curved",)))
    with pytest.raises(InputError, match="two distinct"):
        LD.check(dataclasses.replace(LD.PRESETS["smoke"], stds=(1.0, 1.0)))
    with pytest.raises(InputError, match="1438"):
        LD.check(dataclasses.replace(LD.PRESETS["smoke"], digits_subsets=(2000,)))


def test_collapse_exact_more_training_sets_for_small_n():
    cpu = CE.PRESETS["cpu"]
    # small training sets are cheap and scatter most: at least training_points / n sets
    assert CE.n_sets(100, cpu) == math.ceil(cpu.training_points / 100)
    assert CE.n_sets(25, cpu) == 64  # capped
    assert CE.n_sets(10_000, cpu) == cpu.training_sets
    assert CE.n_sets(100, dataclasses.replace(cpu, training_points=0)) == cpu.training_sets
    with pytest.raises(InputError, match="training_points"):
        CE.check(dataclasses.replace(cpu, training_points=-1))
