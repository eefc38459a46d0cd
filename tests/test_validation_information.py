"""Validation experiments of class information and guidance (docs/theory.md sections 6-7): what
the smoke runs of ``entropy_rates``, ``class_decisions`` and ``guidance`` hold (fixture
``smoke``, tests/conftest.py; verdicts both ways for every experiment are in
tests/test_validation.py), the helpers they are built from, and the cached online
classifier as they run it (sampling :class:`physdiff.classes.MixtureClasses` /
:class:`~physdiff.classes.NetworkClasses` with the classifier reading each step's class
denoisers), checked against the library's classifier evaluating them itself."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from physdiff import information as I
from physdiff import sampling
from physdiff.classes import MixtureClasses, NetworkClasses, as_conditional
from physdiff.ensembles import GaussianMixture
from physdiff.errors import InputError
from physdiff.processes import DDPM, get_process
from validation import experiments
from validation.experiments import class_decisions, entropy_rates, guidance
from validation.models import line_mixture
from validation.runner import run_experiment
from validation.sweep import Engine

pytest.importorskip("torch")

MODULES = {
    "entropy_rates": entropy_rates,
    "class_decisions": class_decisions,
    "guidance": guidance,
}
SERIAL = Engine("serial")


def test_registered_and_runnable_by_name(tmp_path):
    for name in MODULES:
        assert name in experiments.EXPERIMENTS
        assert experiments.load(name) is MODULES[name]
    with pytest.raises(InputError, match="unknown preset"):
        run_experiment("guidance", "huge", device="cpu", out=tmp_path, engine=SERIAL)
    assert not any(tmp_path.iterdir())


def test_entropy_rates_reports_every_quadrature_maximum(smoke):
    _, results = smoke
    res = results["entropy_rates"]
    by_decision = {r.extra["decision"]: r.extra["all_quadrature_maxima"] for r in res.rows}
    steps = {d: [round(p["step"]) for p in v if p["judged"]] for d, v in by_decision.items()}
    assert steps == {"coarse": [589], "6-vs-8": [198]}
    assert {r.extra["estimator"] for r in res.rows} == set(entropy_rates.ESTIMATORS)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def test_decisions_and_checks():
    means = (-8.0, -4.0, 6.0, 8.0)
    assert entropy_rates.partition("four-way", means) is None
    assert entropy_rates.partition("coarse", means).groups == ((0, 1), (2, 3))
    assert entropy_rates.partition("6-vs-8", means).groups == ((2,), (3,))
    assert entropy_rates.partition("1-vs-rest", means).groups == ((1,), (0, 2, 3))
    bad = dataclasses.replace(entropy_rates.PRESETS["smoke"], decisions=("7-vs-rest",))
    with pytest.raises(InputError, match="7-vs-rest"):
        entropy_rates.check(bad)
    with pytest.raises(InputError, match="unknown decision"):
        entropy_rates.partition("sideways", means)
    with pytest.raises(InputError, match="critical_decisions"):
        class_decisions.check(
            dataclasses.replace(class_decisions.PRESETS["smoke"], critical_decisions=("x",))
        )
    with pytest.raises(InputError, match="removed"):
        guidance.check(dataclasses.replace(guidance.PRESETS["smoke"], removed=4))


def test_two_point_offset():
    # two point masses at +-m: dH/dlog(delta) peaks at 0.663 m^2 (criterion (a): m^2)
    assert math.exp(class_decisions.TwoPointOffset.value()) == pytest.approx(0.663, abs=1e-3)


def test_online_entropies_condition_on_the_decisions_classes():
    """The pairwise profile weights trajectories by p(U | x_0): it equals the quadrature of
    the decision conditioned on its two classes."""
    cfg = entropy_rates.PRESETS["smoke"]
    model = line_mixture(cfg.means, cfg.variance)
    proc = DDPM()
    parts = {"6-vs-8": I.pairwise(2, 3, 4), "four-way": None}
    out = entropy_rates.online_entropies(
        model, parts, proc, 2000, np.random.default_rng(3), stride=10
    )
    steps = out["steps"]
    assert steps[0] == 0 and steps[-1] == 999 and np.all(np.diff(steps) > 0)
    for name, part in parts.items():
        hq = I.conditional_entropy_quadrature(model, np.asarray(proc.delta(steps)), part)
        assert np.max(np.abs(out[name] - hq)) < 0.04, name


# ---------------------------------------------------------------------------------------
# the cached online classifier
# ---------------------------------------------------------------------------------------
MIX2 = GaussianMixture.isotropic(
    [0.2, 0.3, 0.5], [[-3.0, 0.0], [0.0, 2.0], [2.5, -1.0]], [0.3, 0.0, 0.8]
)


@pytest.mark.parametrize(
    ("process", "method"), [("ddpm", "ddpm"), ("ou", "euler-maruyama"), ("vp-linear", "heun")]
)
def test_cached_classifier_is_the_library_classifier(process, method):
    proc = get_process(process)
    t0 = 600.0 if process == "ddpm" else 0.8 * proc.t_max
    grid = (
        np.arange(600.0, 0, -10)
        if process == "ddpm"
        else proc.time_grid(60, t_start=t0, t_end=proc.time_of_delta(1e-3))
    )
    view = MIX2.in_frame(proc, t0)
    x0 = view.sample(300, np.random.default_rng(2))
    cache = MixtureClasses(MIX2)
    fast = I.OnlineClassifier(cache, proc, start=view.posterior(x0))
    ref = I.OnlineClassifier(as_conditional(MIX2).class_models(), proc, start=view.posterior(x0))
    assert fast.exact_kernel and ref.exact_kernel
    kw = {"method": method, "process": proc, "times": grid, "x_start": x0}
    a = sampling.sample(cache, 300, np.random.default_rng(5), record=fast.recorder(), **kw)
    b = sampling.sample(MIX2, 300, np.random.default_rng(5), record=ref.recorder(), **kw)
    np.testing.assert_allclose(a.x, b.x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.posterior, ref.posterior, atol=1e-12)
    np.testing.assert_allclose(np.stack(fast.history), np.stack(ref.history), atol=1e-12)
    exact = MIX2.in_frame(proc, float(a.times[-1])).posterior(a.x)
    np.testing.assert_allclose(fast.posterior, exact, atol=1e-10)
    assert fast.n_computed == 0 and fast.n_read == grid.size - 1  # every step read back
    assert ref.n_read == 0 and ref.n_computed == grid.size - 1


def test_class_values_answer_like_the_models():
    cache = MixtureClasses(MIX2)
    y = np.random.default_rng(0).standard_normal((50, 2)) * 3
    for d in (0.1, 2.0):
        den, sc = cache.denoise_all(y, d), cache.score_all(y, d)
        np.testing.assert_allclose(den.unconditional, MIX2.denoise(y, d), atol=1e-12)
        np.testing.assert_allclose(sc.unconditional, MIX2.score(y, d), atol=1e-10)
        np.testing.assert_allclose(cache.class_posterior(y, d), MIX2.posterior(y, d), atol=1e-14)
        for k, m in enumerate(cache.class_models()):
            comp = MIX2.components[k]
            np.testing.assert_allclose(den.classes[k], comp.denoise(y, d), atol=1e-12)
            np.testing.assert_allclose(sc.classes[k], comp.score(y, d), atol=1e-10)
            np.testing.assert_allclose(m.denoise(y, d), comp.denoise(y, d), atol=1e-12)
    with pytest.raises(InputError, match="label must lie in"):
        cache.class_model(3)
    with pytest.raises(InputError, match="GaussianMixture, a class-conditional"):
        as_conditional(MIX2.components[0])


def test_network_classes_on_a_conditional_network():
    torch = pytest.importorskip("torch")
    from physdiff import nn

    torch.manual_seed(0)
    den = nn.Denoiser(nn.ScoreMLP(3, hidden=16, depth=1, n_classes=2, seed=0), "edm")
    net = nn.NetworkScoreModel(den, device="cpu")
    cache = NetworkClasses(net)
    y = np.random.default_rng(1).standard_normal((20, 3))
    both = cache.denoise_all(y, 0.7)
    np.testing.assert_allclose(both.unconditional, net.denoise(y, 0.7), atol=1e-6)
    for k, m in enumerate(cache.class_models()):
        np.testing.assert_allclose(m.denoise(y, 0.7), net.conditional(k).denoise(y, 0.7), atol=1e-6)
        np.testing.assert_allclose(both.classes[k], net.conditional(k).denoise(y, 0.7), atol=1e-6)
    proc = DDPM()
    grid = np.arange(999.0, -1.0, -50.0)
    fast = I.OnlineClassifier(cache, proc)
    ref = I.OnlineClassifier(as_conditional(net).class_models(), proc)
    sampling.sample(cache, 20, np.random.default_rng(4), method="ddpm", process=proc, times=grid,
                    record=fast.recorder())  # fmt: skip
    sampling.sample(net, 20, np.random.default_rng(4), method="ddpm", process=proc, times=grid,
                    record=ref.recorder())  # fmt: skip
    assert not fast.exact_kernel
    assert fast.n_computed == 0 and fast.n_read == grid.size - 1
    np.testing.assert_allclose(fast.posterior, ref.posterior, atol=1e-6)


@pytest.mark.parametrize("dim", [1, 2])
def test_cached_classifier_without_history_tracks_the_same_posterior(dim):
    mix = (
        GaussianMixture.isotropic([0.25] * 4, [[-8.0], [-4.0], [6.0], [8.0]], [0.0, 0.25, 0.0, 0.5])
        if dim == 1
        else MIX2
    )
    proc = DDPM()
    grid = np.arange(999.0, -1.0, -7.0)
    if grid[-1] != 0:
        grid = np.append(grid, 0.0)
    runs = {}
    for keep in (True, False):
        cache = MixtureClasses(mix)
        clf = I.OnlineClassifier(cache, proc, keep_history=keep)
        res = sampling.sample(
            cache, 400, np.random.default_rng(9), method="ddpm", process=proc, times=grid,
            record=clf.recorder(),
        )  # fmt: skip
        runs[keep] = (clf, res)
        assert clf.n_computed == 0
    full, res = runs[True]
    lean, res_lean = runs[False]
    np.testing.assert_array_equal(res.x, res_lean.x)
    np.testing.assert_allclose(lean.posterior, full.posterior, atol=1e-14)
    np.testing.assert_allclose(full.history[-1], full.posterior, atol=1e-14)
    assert len(full.history) == grid.size and full.times == [float(t) for t in grid]
    assert lean.history == [] and lean.times == [] and set(res_lean.records) == {None}
    np.testing.assert_allclose(full.posterior.sum(axis=1), 1.0)


def test_cached_classifier_refuses_times_outside_the_process():
    proc = DDPM()
    clf = I.OnlineClassifier(MixtureClasses(MIX2), proc)
    x = np.zeros((3, 2))
    with pytest.raises(InputError, match="t must lie in"):
        clf.update(1200.0, x)
    clf.update(10.0, x)
    with pytest.raises(InputError, match="decrease"):
        clf.update(20.0, x)


def test_decision_entropy_batches_are_the_library_weighting():
    """class_decisions' batch means of a decision's entropy use the library's weights
    p(U | x_0): the same numbers as the hand-written weighting they replaced (NaN rows,
    with no mass on U, counted with weight 0)."""
    rng = np.random.default_rng(0)
    post = rng.dirichlet(np.full(4, 0.3), size=(6, 50))  # (S, n, K); post[0] is final
    post[:, :5] = [1.0, 0.0, 0.0, 0.0]  # no mass on {2, 3}: the pairwise decision is void
    part = I.pairwise(2, 3, 4)
    got = class_decisions._decision_entropy(post, part, 5)
    w = post[0][:, [2, 3]].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = post[..., [2, 3]] / post[..., [2, 3]].sum(axis=-1, keepdims=True)
        h = np.nan_to_num(-np.sum(np.where(g > 0, g * np.log(g), 0.0), axis=-1))
    want = class_decisions._batch_means(h, w, 5)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # the library's profile is the weighted mean of the same per-trajectory values
    hs, wn = I.decision_entropies(post[::-1], part)
    np.testing.assert_allclose(hs @ wn, (h @ w / w.sum())[::-1], rtol=1e-12)
    assert wn[:5].sum() == 0 and np.isclose(wn.sum(), 1.0)
