"""Figures: information dynamics of class decisions and dynamic negative guidance
(docs/theory.md sections 6-7; :mod:`physdiff.information`, :mod:`physdiff.guidance`,
:mod:`physdiff.negative_guidance`, :mod:`physdiff.metrics`).

Every number drawn comes from the exact models: the Gauss-Hermite quadratures of
:mod:`physdiff.information`, the exact online classifier along trajectories generated
with the exact score (:mod:`physdiff.sampling`), and the guidance transforms of
:mod:`physdiff.guidance` and :mod:`physdiff.negative_guidance` on the exact mixture.
Time is the DDPM step ``k`` of the linear
schedule (Ho et al. 2020; :class:`physdiff.processes.DDPM`); randomness comes from fixed
seeds.
"""

from __future__ import annotations

import numpy as np

from .. import information as I
from .. import plot
from ..ensembles import GaussianMixture
from ..examples import FOUR_MEANS_1D, four_classes_1d
from ..processes import DDPM
from . import register

_MEANS = FOUR_MEANS_1D
_CLASS_COLORS = (
    plot.OKABE_ITO["blue"],
    plot.OKABE_ITO["sky"],
    plot.OKABE_ITO["vermillion"],
    plot.OKABE_ITO["orange"],
)
_GRID = {"linewidth": 0.4, "alpha": 0.4}


def _four(variance: float = 0.0) -> GaussianMixture:
    """The four classes: equal weights at -8, -4, 6, 8 (point masses by default)."""
    return four_classes_1d(variance)


def _half_steps(proc: DDPM, stride: int = 1) -> np.ndarray:
    return np.arange(0, proc.n_steps - 1, stride, dtype=float) + 0.5


_ORDER = 120  # Gauss-Hermite order: ample for a figure (the library default is 200)


def _rate_per_step(model, part, proc: DDPM, kh: np.ndarray) -> np.ndarray:
    dl = np.asarray(proc.delta(kh))
    rate = I.entropy_rate_quadrature(model, dl, part, order=_ORDER)
    return np.asarray(I.rate_in_time(rate, dl, proc))


def _maxima(x, y, rel: float = 1e-3):
    """Every local maximum above ``rel`` of the largest value (the quadrature's rounding
    noise where the rate is ~0 makes spurious maxima at tiny noise levels)."""
    return I.local_maxima(x, y, rel_height=rel)


def _decisions() -> dict[str, I.Partition | None]:
    return {
        "four-way": None,
        "coarse {-8,-4} vs {6,8}": I.coarse([[0, 1], [2, 3]], 4),
        "pairwise 6 vs 8": I.pairwise(2, 3, 4),
        "pairwise -8 vs -4": I.pairwise(0, 1, 4),
    }


# ---------------------------------------------------------------------------------------
# (i) posterior trajectories
# ---------------------------------------------------------------------------------------
@register(
    "information-posterior-trajectories",
    "Class posteriors tracked along generated trajectories",
    "Equal point masses at -8, -4, 6, 8, DDPM linear schedule (1000 steps), DDPM ancestral "
    "sampling with the exact score from the exact marginal at step 999. (a) 30 trajectories "
    "x_k (process frame), coloured by the class they end in. (b) The online Bayes classifier "
    "(physdiff.information.OnlineClassifier, exact for point masses) gives p(c | x_k) along "
    "each trajectory: the posterior of its final class, against the step. (c) The same "
    "posteriors for three trajectories, one panel row per class, stacked: the four-way "
    "decision is taken in two stages, first the side ({-8,-4} or {6,8}), then the member. "
    "Dotted: the local maxima of the four-way entropy rate dH/dk (quadrature).",
    figsize=(9.6, 3.2),
)
def posterior_trajectories(fig):
    from .. import sampling
    from ..classes import MixtureClasses

    model = _four()
    proc = DDPM()
    rng = np.random.default_rng(7)
    n = 30
    view = model.in_frame(proc, 999.0)
    x0 = view.sample(n, rng)
    # the library's exact update, reading the class denoisers the sampler evaluated
    classes = MixtureClasses(model)
    clf = I.OnlineClassifier(classes, proc, start=view.posterior(x0))
    grid = np.arange(999.0, -1.0, -1.0)
    res = sampling.sample(
        classes,
        n,
        rng,
        method="ddpm",
        process=proc,
        times=grid,
        x_start=x0,
        record=clf.recorder(),
        return_trajectory=True,
    )
    post = np.stack(clf.history)  # (steps, n, K)
    final = np.argmax(post[-1], axis=1)
    kh = _half_steps(proc, 2)
    peaks, _ = _maxima(kh, _rate_per_step(model, None, proc, kh))
    ax0, ax1, ax2 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 1.1, 1.0]})
    for i in range(n):
        col = _CLASS_COLORS[final[i]]
        ax0.plot(grid, res.trajectory[:, i, 0], color=col, lw=0.6, alpha=0.8)
        ax1.plot(grid, post[:, i, final[i]], color=col, lw=0.6, alpha=0.8)
    for m, col in zip(_MEANS, _CLASS_COLORS, strict=True):
        ax0.plot([0], [m], "o", color=col, ms=4, zorder=4)
    ax0.set_ylabel(r"$x_k$ (process frame)")
    ax1.set_ylabel(r"$p(c_{\mathrm{final}} \mid x_k)$")
    ax1.set_ylim(0, 1.02)
    ax1.axhline(0.25, color="0.6", lw=0.5, ls="--")
    # (c) three trajectories, one per final side/member, stacked posteriors
    picks = []
    for c in (0, 2, 3):
        idx = np.flatnonzero(final == c)
        if idx.size:
            picks.append(int(idx[0]))
    offsets = np.arange(len(picks))[::-1] * 1.15
    for off, i in zip(offsets, picks, strict=True):
        lower = np.cumsum(np.c_[np.zeros(grid.size), post[:, i, :-1]], axis=1)
        for c in range(4):
            ax2.fill_between(
                grid,
                off + lower[:, c],
                off + lower[:, c] + post[:, i, c],
                color=_CLASS_COLORS[c],
                lw=0,
                label=f"class {c} (at {_MEANS[c]:g})" if off == offsets[0] else None,
            )
    ax2.set_yticks([])
    ax2.set_ylabel("p(c | x_k), three trajectories")
    ax2.legend(frameon=False, fontsize=6, loc="upper left", ncol=2)
    ax2.set_ylim(0, offsets[0] + 1.45)
    for ax, letter in zip((ax0, ax1, ax2), "abc", strict=True):
        for p in peaks:
            ax.axvline(p, color="0.45", ls=":", lw=0.8)
        ax.set_xlim(999, 0)
        ax.set_xlabel("DDPM step k (generation runs right)")
        plot.panel_label(ax, letter)


# ---------------------------------------------------------------------------------------
# (ii) entropy and entropy-rate profiles per decision
# ---------------------------------------------------------------------------------------
@register(
    "information-entropy-profiles",
    "Entropy and entropy rate of each class decision against the DDPM step",
    "Equal point masses at -8, -4, 6, 8, DDPM linear schedule. (a) Conditional entropy "
    "H(C | x_k) (nats) of the four-way decision and of binary decisions: coarse (which side, "
    "posteriors summed within {-8,-4} and {6,8}) and pairwise (6 vs 8, -8 vs -4; "
    "renormalised over the two, i.e. conditioned on C being one of them), by Gauss-Hermite "
    "quadrature (physdiff.information.conditional_entropy_quadrature). (b) The entropy rate "
    "per step dH/dk = dH/dDelta * dDelta/dk, from the score-gap identity dH/dDelta = 1/2 "
    "E|s(y|c) - s(y)|^2 (entropy_rate_quadrature, rate_in_time) at half-integer steps; "
    "circles: every local maximum (local_maxima; above 1e-3 of the largest, below which the "
    "quadrature's rounding makes spurious ones). The four-way rate has two peaks: the "
    "side decision (step about 572, with the coarse one) and the member decisions (about "
    "304, where -8 vs -4 is decided; 6 vs 8, two units apart, is decided last, near 198). "
    "(c) The same rates per unit log Delta, schedule free: the two-point decision between "
    "means 2m apart peaks at Delta = 0.66 m^2.",
    figsize=(9.6, 3.1),
)
def entropy_profiles(fig):
    model = _four()
    proc = DDPM()
    k = np.arange(0, proc.n_steps, 2, dtype=float)
    kh = _half_steps(proc, 2)
    ax0, ax1, ax2 = fig.subplots(1, 3)
    dl_grid = np.geomspace(1e-2, 1e3, 400)
    for (name, part), col in zip(
        _decisions().items(),
        ("k", plot.OKABE_ITO["green"], plot.OKABE_ITO["vermillion"], plot.OKABE_ITO["blue"]),
        strict=True,
    ):
        H = I.conditional_entropy_quadrature(model, np.asarray(proc.delta(k)), part, order=_ORDER)
        ax0.plot(k, H, color=col, label=name)
        rk = _rate_per_step(model, part, proc, kh)
        ax1.plot(kh, 1e3 * rk, color=col)
        xs, ys = _maxima(kh, rk)
        ax1.plot(xs, 1e3 * ys, "o", color=col, ms=4, mfc="white")
        rl = I.entropy_rate_quadrature(model, dl_grid, part, order=_ORDER) * dl_grid
        ax2.plot(dl_grid, rl, color=col)
        xs, ys = _maxima(np.log(dl_grid), rl)
        ax2.plot(np.exp(xs), ys, "o", color=col, ms=4, mfc="white")
    ax0.set_ylabel("H (nats)")
    ax0.legend(frameon=False, fontsize=7)
    ax1.set_ylabel(r"$dH/dk$ (millinats per step)")
    for ax in (ax0, ax1):
        ax.set_xlabel("DDPM step k")
        ax.set_xlim(0, 999)
        ax.grid(True, **_GRID)
    ax2.set_xscale("log")
    ax2.set_xlabel(r"$\Delta = \sigma^2/\alpha^2$")
    ax2.set_ylabel(r"$dH/d\log\Delta$ (nats)")
    ax2.grid(True, which="major", **_GRID)
    for ax, letter in zip((ax0, ax1, ax2), "abc", strict=True):
        plot.panel_label(ax, letter)


# ---------------------------------------------------------------------------------------
# (iii) per-class profiles, both definitions
# ---------------------------------------------------------------------------------------
@register(
    "information-per-class",
    "Per-class entropy profiles under the two definitions",
    "Equal point masses at -8, -4, 6, 8, DDPM linear schedule, quadrature. Two per-class "
    "definitions (docs/theory.md section 6): (a, b) the one-vs-rest decision entropy "
    "H(1[C = k] | x_k) (is it class k or not, over all samples) and its rate per step; (c, "
    "d) the class-restricted entropy E[H(C | x_k) | C = k] (the four-way uncertainty left "
    "on samples of class k; physdiff.information.class_restricted_entropy_quadrature) and "
    "its rate (central differences of the quadrature). Both average back to a whole: the "
    "class-restricted entropies average (weights 1/4) to H(C | x_k). Circles: every local "
    "maximum. The profiles are two-peaked where a class is decided in two stages: class 0 "
    "(-8) first leaves {6, 8} behind, then -4; classes 2 and 3 (6, 8) are separated from "
    "{-8, -4} early and from each other late.",
    figsize=(9.6, 5.4),
)
def per_class(fig):
    model = _four()
    proc = DDPM()
    k = np.arange(proc.n_steps, dtype=float)
    kh = _half_steps(proc)
    dk = np.asarray(proc.delta(k))
    k2, kh2 = k[::2], _half_steps(proc, 2)
    axes = fig.subplots(2, 2, sharex=True)
    for c, col in enumerate(_CLASS_COLORS):
        lab = f"class {c} (at {_MEANS[c]:g})"
        ovr = I.one_vs_rest(c, 4)
        H1 = I.conditional_entropy_quadrature(model, dk[::2], ovr, order=_ORDER)
        axes[0, 0].plot(k2, H1, color=col, label=lab)
        rk = _rate_per_step(model, ovr, proc, kh2)
        axes[0, 1].plot(kh2, 1e3 * rk, color=col)
        xs, ys = _maxima(kh2, rk)
        axes[0, 1].plot(xs, 1e3 * ys, "o", color=col, ms=4, mfc="white")
        Hr = I.class_restricted_entropy_quadrature(model, dk, c, order=_ORDER)
        axes[1, 0].plot(k, Hr, color=col)
        rr = np.diff(Hr)  # dH/dk at k + 1/2
        axes[1, 1].plot(kh, 1e3 * rr, color=col)
        xs, ys = _maxima(kh, rr)
        axes[1, 1].plot(xs, 1e3 * ys, "o", color=col, ms=4, mfc="white")
    H = I.conditional_entropy_quadrature(model, dk[::2], order=_ORDER)
    axes[1, 0].plot(k2, H, color="k", ls="--", lw=1, label="H(C | x_k)")
    axes[0, 0].set_ylabel(r"$H(1[C=k] \mid x_k)$ (nats)")
    axes[0, 1].set_ylabel("its rate (millinats/step)")
    axes[1, 0].set_ylabel(r"$E[H(C \mid x_k) \mid C=k]$ (nats)")
    axes[1, 1].set_ylabel("its rate (millinats/step)")
    axes[0, 0].legend(frameon=False, fontsize=7)
    axes[1, 0].legend(frameon=False, fontsize=7)
    axes[0, 0].set_title("one-vs-rest decision entropy")
    axes[1, 0].set_title("class-restricted entropy")
    for ax, letter in zip(axes.ravel(), "abcd", strict=True):
        ax.set_xlim(0, 999)
        ax.grid(True, **_GRID)
        plot.panel_label(ax, letter)
    for ax in axes[1]:
        ax.set_xlabel("DDPM step k")


# ---------------------------------------------------------------------------------------
# (iv) guidance trade-off on the exact mixture
# ---------------------------------------------------------------------------------------
@register(
    "guidance-tradeoff",
    "Removing a class: negative prompting against dynamic negative guidance",
    "Four Gaussian classes (variance 0.25) at -8, -4, 6, 8 with equal weights; class 2 (at "
    "6) is removed. DDPM ancestral sampling with the exact scores on 100 steps of the DDPM "
    "schedule (every 10th step), 1000 samples per scale. NP: negative prompting "
    "s - lambda (s_c - s) (physdiff.guidance.NegativePrompt); DNG: dynamic negative "
    "guidance s - lambda p/(1 - p) (s_c - s) (physdiff.negative_guidance) with the exact "
    "posterior p = p(c | y) "
    "(DynamicNegativeGuidance), whose lambda = 1 is the exact score of p(x | not c). "
    "(a) Share of samples classified into the removed class; (b) KL divergence from the "
    "target class distribution over the kept classes (1/3 each) to the generated one "
    "(smoothed, physdiff.metrics.class_kl); (c) sliced W2 distance to the kept data; error "
    "bars 2 s.e. (d) Samples at lambda = 0.5 (NP) and lambda = 1 (DNG) against the target "
    "density. NP pushes every sample away from 6 with a force s_c - s that grows like "
    "(6 - y)/Delta at small noise, also on samples of the other classes: the class at 8 is "
    "dragged outward and, from lambda = 1 on, samples are thrown far out (W2 grows "
    "linearly); the kept classes are unbalanced at every scale. DNG acts only where "
    "p(c | y) is large: at lambda = 1 it samples p(x | not c) up to the sampler's "
    "discretisation (a share of about 1% on 100 steps).",
    figsize=(9.6, 5.2),
)
def guidance_tradeoff(fig):
    from .. import guidance as G
    from .. import metrics as M
    from .. import negative_guidance as NG
    from ..classes import MixtureClasses

    model = _four(0.25)
    cond = MixtureClasses(model)
    removed = 2
    kept = cond.kept_model(removed)
    rng = np.random.default_rng(11)
    reference = kept.sample(1000, rng)
    target = cond.class_weights
    times = np.arange(999.0, -1.0, -10.0)
    scales = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    kwargs = {
        "classify": cond.classify,
        "removed": removed,
        "target": target,
        "reference": reference,
        "times": times,
        "metric_options": {"n_bootstrap": 10},
    }
    curves = {
        "NP": M.tradeoff_curve(
            lambda s: G.NegativePrompt(cond, removed, s), scales, 1000, rng, **kwargs
        ),
        "DNG (exact p)": M.tradeoff_curve(
            lambda s: NG.DynamicNegativeGuidance(cond, removed, s), scales, 1000, rng, **kwargs
        ),
    }
    colors = {"NP": plot.OKABE_ITO["vermillion"], "DNG (exact p)": plot.OKABE_ITO["blue"]}
    (a, b), (c, d) = fig.subplots(2, 2)
    for name, cv in curves.items():
        col = colors[name]
        a.errorbar(scales, cv.removed_share, 2 * cv.removed_share_se, color=col, marker="o", ms=3,
                   capsize=2, label=name)  # fmt: skip
        b.plot(scales, cv.kl, color=col, marker="o", ms=3)
        c.errorbar(scales, cv.quality, 2 * cv.quality_se, color=col, marker="o", ms=3, capsize=2)
    a.axhline(target[removed], color="0.6", ls="--", lw=0.8)
    a.text(
        scales[-1], target[removed], "unguided", ha="right", va="bottom", fontsize=7, color="0.4"
    )
    a.set_ylabel("removed-class share")
    b.set_ylabel("KL(target || generated), kept classes")
    c.set_ylabel(r"sliced $W_2$ to kept data")
    for ax in (a, b, c):
        ax.set_xlabel(r"guidance scale $\lambda$")
        ax.grid(True, **_GRID)
    a.legend(frameon=False, fontsize=7)
    # (d) the samples
    y = np.linspace(-11, 11, 600)[:, None]
    dens = np.exp(kept.log_density(y, 1e-12))
    d.fill_between(y[:, 0], dens, color="0.85", lw=0, label="target p(x | not c)")
    from .. import sampling

    for name, g, col in (
        ("NP, lambda = 0.5", G.NegativePrompt(cond, removed, 0.5), colors["NP"]),
        (
            "DNG, lambda = 1",
            NG.DynamicNegativeGuidance(cond, removed, 1.0),
            colors["DNG (exact p)"],
        ),
    ):
        res = sampling.sample(g, 3000, rng, method="ddpm", process="ddpm", times=times)
        d.hist(res.y[:, 0], bins=120, range=(-11, 11), density=True, histtype="step", color=col,
               lw=1.0, label=name)  # fmt: skip
    d.axvline(_MEANS[removed], color="0.5", ls=":", lw=0.8)
    d.set_xlabel("x")
    d.set_ylabel("density")
    d.legend(frameon=False, fontsize=7)
    for ax, letter in zip((a, b, c, d), "abcd", strict=True):
        plot.panel_label(ax, letter)
