"""Figures: diffusion as an associative memory (docs/theory.md section 5;
:mod:`physdiff.association`).

Every curve comes from the exact empirical score of a set of patterns
(:class:`physdiff.ensembles.Empirical`): its energy is the dense-associative-memory energy
``E(y) = -(1/beta) log sum_mu exp(-beta |y - xi_mu|^2)`` at ``beta = 1/(2 delta)``, its
attractors come from :func:`physdiff.association.find_attractors` and its basins from
:func:`physdiff.association.basin_size`. "The DAM at beta" is the exact score whose
generation stops at ``delta = 1/(2 beta)`` (the iterated denoiser then finds the energy's
minima): a model with a finite resolution, the simplest stand-in for a smoothed network.
Randomness comes from fixed seeds, so every figure is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from .. import association as A
from .. import plot
from ..ensembles import Empirical
from . import register

_GRID = {"linewidth": 0.4, "alpha": 0.4}
_OI = plot.OKABE_ITO
_CLASS_COLORS = {
    "memorised": _OI["blue"],
    "spurious": _OI["vermillion"],
    "generalised": _OI["green"],
}


def circle_patterns(K: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """K points on the unit circle: equally spaced, or i.i.d. uniform angles with ``rng``."""
    if rng is None:
        th = 2 * np.pi * np.arange(K) / K
    else:
        th = np.sort(rng.uniform(0.0, 2 * np.pi, K))
    return np.stack([np.cos(th), np.sin(th)], axis=1)


# ---------------------------------------------------------------------------------------
# (i) energy landscapes
# ---------------------------------------------------------------------------------------
_LAND_K = 8
_LAND_BETAS = (0.7, 1.5, 30.0)


@register(
    "association-energy",
    "Energy landscape of memories on a circle, with the attractors of generation",
    "K = 8 patterns equally spaced on the unit circle (crosses). (a-c) The dense-associative-"
    "memory energy E(y) = -(1/beta) log sum_mu exp(-beta |y - xi_mu|^2) (physdiff.association."
    "dam_energy; -2 delta log p_delta up to a constant at beta = 1/(2 delta)) at beta = 0.7, "
    "1.5 and 30; dots: the attractors found by 300 probability-flow (Heun) trajectories run "
    "down to delta = 1/(2 beta) and refined by the iterated denoiser (physdiff.association."
    "find_attractors; filled: stable, all score-Jacobian eigenvalues < 0; open: not). For "
    "beta < 1 one minimum at the centre (the continuum energy's curvature there is "
    "2 (1 - beta)); at beta = 1.5 a ring of radius 0.72 whose eight wells are too shallow "
    "to resolve (tangential curvature 0.0035 against 2 for an isolated memory; the end "
    "points spread along the ring, circle_merge_count(1.5) = 7 < 8); at beta = 30 one "
    "minimum per memory, close to it. (d) The "
    "energy along the ray through a pattern (solid) and through the midpoint between two "
    "(dashed), against the continuum energy of patterns spread uniformly on the circle, "
    "E(R) = R^2 + 1 - (1/beta) log I0(2 beta R) (dotted; shifted by log K / beta).",
    figsize=(9.6, 2.9),
)
def association_energy(fig):
    pats = circle_patterns(_LAND_K)
    emp = Empirical(pats)
    s = A.nearest_neighbour_spacing(pats)
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 1, 1.25]})
    g = np.linspace(-1.6, 1.6, 161)
    X, Y = np.meshgrid(g, g)
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    cmap = plot.truncated_cmap("viridis", 0.0, 0.95)
    for ax, beta, letter in zip(axes[:3], _LAND_BETAS, "abc", strict=True):
        E = A.dam_energy(pts, pats, beta).reshape(X.shape)
        E = E - E.min()
        levels = np.quantile(E, np.linspace(0, 1, 16) ** 2)
        ax.contourf(X, Y, E, levels=np.unique(levels), cmap=cmap)
        ax.contour(X, Y, E, levels=np.unique(levels), colors="white", linewidths=0.3)
        att = A.find_attractors(
            emp, 300, np.random.default_rng(0), delta_end=1.0 / (2 * beta), n_steps=40, scale=s
        )
        for stable in (True, False):
            sel = att.stable == stable
            ax.plot(
                att.points[sel, 0],
                att.points[sel, 1],
                "o",
                ms=3.2,
                mfc=_OI["orange"] if stable else "white",
                mec="black",
                mew=0.5,
                linestyle="none",
                zorder=4,
            )
        ax.plot(pats[:, 0], pats[:, 1], "x", color="white", ms=7, mew=1.2, zorder=3)
        ax.set_aspect("equal")
        ax.set_xticks([-1, 0, 1])
        ax.set_yticks([-1, 0, 1])
        n_st = int(att.stable.sum())
        ax.set_title(
            rf"$\beta = {beta:g}$: {att.points.shape[0]} attractor(s), {n_st} stable",
            fontsize="small",
            loc="right",
        )
        plot.panel_label(ax, letter)
    ax = axes[3]
    R = np.linspace(0.0, 1.5, 301)
    th_mid = math.pi / _LAND_K
    for beta, color in zip(_LAND_BETAS, (_OI["sky"], _OI["blue"], _OI["black"]), strict=True):
        ray = np.stack([R, np.zeros_like(R)], axis=1)
        mid = np.stack([R * math.cos(th_mid), R * math.sin(th_mid)], axis=1)
        e0 = A.dam_energy(ray, pats, beta)
        ref = float(np.min(e0))
        ax.plot(R, e0 - ref, color=color, label=rf"$\beta = {beta:g}$")
        ax.plot(R, A.dam_energy(mid, pats, beta) - ref, "--", color=color, lw=1)
        cont = A.circle_energy(R, beta) - math.log(_LAND_K) / beta
        ax.plot(R, cont - ref, ":", color=color, lw=1.2)
    ax.set_xlim(0, 1.5)
    ax.set_ylim(-0.05, 1.2)
    ax.set_xlabel("distance from the centre $R$")
    ax.set_ylabel(r"$E - \min E$ (through a pattern)")
    ax.legend(frameon=False, fontsize="small", loc="upper center")
    ax.grid(True, **_GRID)
    plot.panel_label(ax, "d")


# ---------------------------------------------------------------------------------------
# (ii) memorised / spurious / generalised against K
# ---------------------------------------------------------------------------------------
_FRAC_BETA = 20.0
_FRAC_K = (2, 4, 8, 16, 24, 32, 64, 128)
_FRAC_N = 200


def poisson_threshold(lam: float, p: float = 0.01) -> int:
    """The smallest count ``m`` with ``P(X >= m) < p`` for ``X ~ Poisson(lam)`` (at least 2):
    more neighbours than chance gives (scipy.special.pdtrc, without scipy.stats)."""
    from scipy.special import pdtrc

    ks = np.arange(int(lam + 10 * math.sqrt(lam) + 30))
    sf = pdtrc(ks, lam)  # P(X > k)
    return max(2, int(ks[np.argmax(sf < p)]) + 1)


def _fractions(pats: np.ndarray, delta_end: float | None, seed: int) -> dict:
    emp = Empirical(pats)
    if delta_end is None:  # the exact score: (0.05 s)^2, at least edm's smallest noise
        s = A.nearest_neighbour_spacing(pats)
        delta_end = max((0.05 * s) ** 2, 4e-6 * 1.0001)
    att = A.find_attractors(
        emp,
        _FRAC_N,
        np.random.default_rng(seed),
        process="edm",
        delta_end=delta_end,
        n_steps=30,
        check_stability=False,
    )
    # chance neighbours of N end points spread uniformly on the ring (1-D): Poisson tail
    s = A.nearest_neighbour_spacing(pats)
    lam = (_FRAC_N - 1) * 2 * math.asin(min(1.0, 0.125 * s)) / math.pi
    cl = A.classify_samples(att.samples, pats, min_neighbours=poisson_threshold(lam))
    return {"fractions": cl.fractions, "stderr": cl.stderr, "n_attractors": att.points.shape[0]}


@register(
    "association-fractions",
    "Memorised, spurious and generalised end points against the number of patterns",
    "End points of 200 deterministic trajectories of the exact empirical score of K patterns "
    "on the unit circle, classified by physdiff.association.classify_samples (memorised: a "
    "pattern within s/4, s the median nearest-neighbour spacing; spurious: not memorised, "
    "with more other end points within s/4 than chance gives for points spread uniformly "
    "on the ring, the Poisson tail at 1%; generalised: neither). Dashed: generation down to "
    "the default small noise, max((s/20)^2, 0.002^2) on the EDM process: the exact score "
    "memorises every K (with random angles the closest pairs at K = 128 lie within that "
    "noise's resolution). Solid: the DAM at "
    "beta = 20, generation stopped at delta = 1/40 and refined there (a model of finite "
    "resolution). (a) Equally spaced patterns: all memories merge at once into a ring "
    "(end points spread on it: memorised only by chance, about half, and generalised), "
    "between K = 16 and 32; vertical lines: circle_merge_count(20) = 26 (rule: tangential "
    "curvature below 1% of an isolated memory's, dotted) and the pairwise rule beta (2 "
    "sin(pi/K))^2 = 2, K = 19.8 (dash-dot). (b) Patterns at random angles (seed 0): close "
    "pairs merge first, into attractors between them: spurious states appear at the "
    "transition. (c) The merge count against beta: the rule and the pairwise approximation "
    "(physdiff.association.circle_merge_count, circle_merge_count_pairwise); the bar marks "
    "the bracket of K in (a) where the number of attractors first differs from K. Error "
    "bars: binomial standard errors.",
    figsize=(9.6, 3.0),
)
def association_fractions(fig):
    ax1, ax2, ax3 = fig.subplots(1, 3)
    Ks = np.array(_FRAC_K)
    bracket = None
    for ax, random_angles, letter in ((ax1, False, "a"), (ax2, True, "b")):
        res_dam, res_exact = [], []
        for K in _FRAC_K:
            rng = np.random.default_rng(0) if random_angles else None
            pats = circle_patterns(K, rng)
            res_dam.append(_fractions(pats, 1.0 / (2 * _FRAC_BETA), K))
            res_exact.append(_fractions(pats, None, K))
            if not random_angles and bracket is None and res_dam[-1]["n_attractors"] != K:
                bracket = (_FRAC_K[_FRAC_K.index(K) - 1], K)
        for lab, color in _CLASS_COLORS.items():
            f = np.array([r["fractions"][lab] for r in res_dam])
            se = np.array([r["stderr"][lab] for r in res_dam])
            ax.errorbar(Ks, f, se, color=color, marker="o", ms=3, capsize=1.5, label=lab)
            fe = np.array([r["fractions"][lab] for r in res_exact])
            ax.plot(Ks, fe, "--", color=color, lw=1)
        ax.axvline(A.circle_merge_count(_FRAC_BETA), color="0.3", lw=0.8, ls=":")
        ax.axvline(A.circle_merge_count_pairwise(_FRAC_BETA), color="0.3", lw=0.8, ls="-.")
        ax.set_xscale("log", base=2)
        ax.set_xticks(Ks, [str(k) for k in Ks])
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel("number of patterns K")
        ax.set_ylabel("fraction of end points")
        ax.set_title(
            ("random angles" if random_angles else "equally spaced")
            + rf"; DAM at $\beta = {_FRAC_BETA:g}$",
            fontsize="small",
        )
        ax.grid(True, **_GRID)
        plot.panel_label(ax, letter)
    ax1.legend(frameon=False, fontsize="small", loc="center left")
    betas = np.geomspace(1.0, 2000.0, 40)
    rule = [
        A.circle_merge_count(b, K_max=int(4 * A.circle_merge_count_pairwise(b)) + 16) for b in betas
    ]
    ax3.plot(betas, rule, color=_OI["black"], label="rule (1% curvature)")
    ax3.plot(
        betas,
        [A.circle_merge_count_pairwise(b) for b in betas],
        "-.",
        color=_OI["purple"],
        label=r"pairwise: $\beta\,(2\sin(\pi/K))^2 = 2$",
    )
    if bracket is not None:
        lo, hi = bracket
        ax3.errorbar(
            [_FRAC_BETA],
            [math.sqrt(lo * hi)],
            yerr=[[math.sqrt(lo * hi) - lo], [hi - math.sqrt(lo * hi)]],
            fmt="o",
            color=_OI["vermillion"],
            ms=4,
            capsize=2,
            label="measured bracket (a)",
        )
    ax3.set_xscale("log")
    ax3.set_yscale("log")
    ax3.set_xlabel(r"$\beta = 1/(2\Delta)$")
    ax3.set_ylabel("K at which the memories merge")
    ax3.legend(frameon=False, fontsize="small")
    ax3.grid(True, which="major", **_GRID)
    plot.panel_label(ax3, "c")


# ---------------------------------------------------------------------------------------
# (iii) basins
# ---------------------------------------------------------------------------------------
_BASIN_K = (2, 4, 8, 16)
_BASIN_COLORS = (_OI["orange"], _OI["sky"], _OI["blue"], _OI["black"])


def voronoi_recovery(delta, D, K: int):
    """Recovery probability if the probability-flow ODE returned every noised start to the
    nearest pattern (Voronoi cells; exact for two patterns by symmetry): ``Phi(D/(2 sqrt
    delta))`` for K = 2 (one neighbour), ``2 Phi(D/(2 sqrt delta)) - 1`` on the circle with
    K >= 3 (two neighbours, small noise)."""
    u = ndtr(D / (2 * np.sqrt(np.asarray(delta, dtype=float))))
    return u if K == 2 else 2 * u - 1


@register(
    "association-basins",
    "Basins of memories: recovery probability against the noise level",
    "The basin of pattern 0 among K equally spaced patterns on the unit circle (neighbour "
    "distance D = 2 sin(pi/K); K = 2, 4, 8, 16), exact empirical score: the pattern is "
    "noised to delta (y = xi + sqrt(delta) z), generated back by the probability-flow ODE "
    "(Heun, 40 steps) and the iterated denoiser, and counted as recovered within D/4; 64 "
    "trials per level (physdiff.association.basin_size; error bars: binomial standard "
    "errors). (a) Against delta/D^2 the curves collapse: the basin scales with the "
    "spacing. Dotted: recovery if every start returned to its nearest pattern, "
    "Phi(D/(2 sqrt delta)) for K = 2 and 2 Phi(D/(2 sqrt delta)) - 1 for K >= 3 (Voronoi "
    "cells). Grey line: level 0.9. (b) The basin delta_basin (largest level with recovery "
    ">= 0.9 on the grid of (a), 13 levels per case; the bar reaches the next level, where "
    "the true crossing lies) against K, with the Voronoi prediction "
    "D^2/(4 z^2), z = Phi^-1(0.95) (K >= 3) or Phi^-1(0.9) (K = 2), and the merge noise "
    "of the DAM, delta = D^2/4 (beta D^2 = 2): the basin is a fixed fraction of the "
    "merge scale.",
    figsize=(8.4, 3.1),
)
def association_basins(fig):
    ax1, ax2 = fig.subplots(1, 2)
    rel = np.geomspace(0.01, 3.0, 13)
    rng = np.random.default_rng(0)
    dense = np.geomspace(rel[0], rel[-1], 200)
    measured = []
    for K, color in zip(_BASIN_K, _BASIN_COLORS, strict=True):
        pats = circle_patterns(K)
        D = 2 * math.sin(math.pi / K)
        b = A.basin_size(
            Empirical(pats), pats[0], rel * D * D, rng, n_trials=64, tolerance=0.25 * D
        )
        i = int(np.searchsorted(b.deltas, b.delta_basin))
        upper = b.deltas[min(i + 1, b.deltas.size - 1)]
        measured.append((b.delta_basin, upper))
        ax1.errorbar(
            rel,
            b.probability,
            b.stderr,
            fmt="o",
            ms=3,
            color=color,
            capsize=1.5,
            label=f"K = {K}",
        )
        ax1.plot(dense, voronoi_recovery(dense * D * D, D, K), ":", color=color, lw=1.1)
    ax1.axhline(0.9, color="0.6", lw=0.7)
    ax1.set_xscale("log")
    ax1.set_ylim(0.3, 1.03)
    ax1.set_xlabel(r"noise level $\Delta / D^2$")
    ax1.set_ylabel("probability of returning to the pattern")
    ax1.legend(frameon=False, fontsize="small", loc="lower left")
    ax1.grid(True, **_GRID)
    plot.panel_label(ax1, "a")
    Ks = np.array(_BASIN_K, dtype=float)
    kk = np.geomspace(2, 16, 100)
    D = 2 * np.sin(np.pi / kk)
    z = np.where(kk < 2.5, 1.2815515655446004, 1.6448536269514722)
    lo = np.array([m[0] for m in measured])
    hi = np.array([m[1] for m in measured])
    ax2.errorbar(
        Ks,
        lo,
        yerr=[np.zeros_like(lo), hi - lo],
        fmt="o",
        color=_OI["blue"],
        ms=4.5,
        capsize=2,
        label="measured (exact score): grid level, bar to the next",
    )
    ax2.plot(
        kk[kk > 2.5],
        (D * D / (4 * z * z))[kk > 2.5],
        ":",
        color="0.3",
        label=r"Voronoi: $D^2/(4 z^2)$",
    )
    ax2.plot([2.0], [4.0 / (4 * 1.2815515655446004**2)], "D", color="0.3", ms=3.5)
    ax2.plot(
        kk, D * D / 4, "--", color=_OI["vermillion"], lw=1, label=r"DAM merge: $\Delta = D^2/4$"
    )
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xticks(Ks, [str(int(k)) for k in Ks])
    ax2.set_xlabel("number of patterns K")
    ax2.set_ylabel(r"basin $\Delta_{basin}$ (recovery $\geq$ 0.9)")
    ax2.legend(frameon=False, fontsize="small")
    ax2.grid(True, which="major", **_GRID)
    plot.panel_label(ax2, "b")
