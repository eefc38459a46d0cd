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
    for r in rows:
        if r.quantity.startswith("collapse"):
            assert "OU / DDPM step: theory" in r.condition
        else:  # f^e at delta_C: a tolerance that shrinks with d
            d = int(r.condition.split(",")[0].removeprefix("d="))
            assert f"+ {0.3 / math.sqrt(d):g}" in r.rule
    # the f^e crossing sits below delta_C at these d (the finite-d deviation)
    fe = [r for r in rows if "from f^e" in r.quantity]
    assert all(r.extra["log_ratio"] < 0 for r in fe)


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
    th = G.DirectionThresholds(
        "measured", "jacobian", 0.5, np.array([2.0, 2.0, 1.0, 1.0]),
        np.array([0.2, 0.3, inf, inf]), np.array([0.01, 0.01, 0.0, 0.0]), 200.0, False,
    )  # fmt: skip
    g = LD._groups(th)
    assert g["lo"] == (inf, 0.0, LD.NEVER) and g["hi"][2] == "ok"
    assert g["hi"][0] == pytest.approx(0.5 * (math.log(0.2) + math.log(0.3)))
    assert LD._order(g) == (inf, 0.0)  # only the low group never resolved: lost first
    th_nan = dataclasses.replace(th, deltas=np.array([0.2, np.nan, inf, inf]))
    assert math.isnan(LD._groups(th_nan)["hi"][0]) and LD._groups(th_nan)["hi"][2] == LD.OUTSIDE
    meas = {
        "source": "exact score",
        "groups": g,
        "peak": {"hi": (0.8, 0.01), "lo": (0.4, 0.01)},
        "condition": "synthetic",
        "per_direction": th.deltas.tolist(),
    }
    a = {"hi": math.log(0.25), "lo": math.log(0.1)}
    b = {"hi": math.log(0.24), "lo": inf}  # model (b): the low group is never resolved
    rows = LD._manifold_rows(cfg, meas, a, b, {"hi": 0.9, "lo": 0.42})
    assert [r.verdict for r in rows] == ["agree", "agree", "agree", "disagree"]
    assert "peak V/delta" in rows[1].quantity and rows[1].predicted == 0.42
    assert rows[3].measured == inf  # (a) orders the groups the other way: never agrees


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
