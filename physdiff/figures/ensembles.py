"""Figures: exact score fields of the ensembles (docs/theory.md section 1).

Each 2-D figure shows one model at three noise-to-signal variances: grey filled contours
of ``log p_delta(y)`` (relative to its maximum, in nats) and the direction of the exact
score ``grad log p_delta(y)``, coloured by ``log10 |score|`` on one scale per figure.
"""

from __future__ import annotations

import numpy as np

from .. import plot
from ..ensembles import Empirical, Gaussian, GaussianMixture, LinearManifold
from ..examples import three_blobs_2d
from . import register

DELTAS = (0.01, 0.3, 3.0)
EXTENT = (-2.5, 2.5, -2.5, 2.5)
_N_ARROWS = 21
_DEPTH = 12.0
_CMAP = plot.truncated_cmap("plasma", 0.0, 0.85)  # no pale yellow end on a light ground


def _gaussian() -> Gaussian:
    return Gaussian([0.0, 0.0], [[1.0, 0.6], [0.6, 0.6]])


def _mixture() -> GaussianMixture:
    return three_blobs_2d()


def _empirical(seed: int = 7, n: int = 20) -> Empirical:
    rng = np.random.default_rng(seed)
    return Empirical(rng.standard_normal((n, 2)) * np.array([0.85, 0.65]))


def _manifold(angle_deg: float = 30.0) -> LinearManifold:
    a = np.deg2rad(angle_deg)
    return LinearManifold(np.array([[np.cos(a)], [np.sin(a)]]), [1.0])


def _score_field_panels(fig, model, decorate=None) -> None:
    """One row of panels, one per delta in DELTAS, with a shared colour bar."""
    from matplotlib.colors import Normalize

    _, _, pts = plot.grid(EXTENT, _N_ARROWS)
    logs = [
        np.log10(np.maximum(np.linalg.norm(model.score(pts, d), axis=1), 1e-300)) for d in DELTAS
    ]
    lo = float(np.floor(min(np.percentile(v, 1) for v in logs) * 2) / 2)
    hi = float(np.ceil(max(np.percentile(v, 99) for v in logs) * 2) / 2)
    norm = Normalize(vmin=lo, vmax=hi)

    axes = fig.subplots(1, len(DELTAS), sharex=True, sharey=True)
    for i, (ax, delta) in enumerate(zip(axes, DELTAS, strict=True)):
        cs = plot.density_contours(model, delta, EXTENT, ax=ax, depth=_DEPTH)
        plot.density_contours(
            model, delta, EXTENT, ax=ax, depth=_DEPTH, filled=False, colors="0.35", linewidths=0.4
        )
        q = plot.score_field(model, delta, EXTENT, ax=ax, n=_N_ARROWS, cmap=_CMAP, norm=norm)
        if decorate is not None:
            decorate(ax)
        ax.set_title(rf"$\Delta = {delta:g}$")
        ax.set_aspect("equal")
        ax.set_xlim(EXTENT[0], EXTENT[1])
        ax.set_ylim(EXTENT[2], EXTENT[3])
        ax.set_xlabel("$y_1$")
        if i == 0:
            ax.set_ylabel("$y_2$")
        plot.panel_label(ax, "abcdefgh"[i])
    cb = fig.colorbar(q, ax=list(axes), shrink=0.8, pad=0.02)
    cb.set_label(r"$\log_{10} |\nabla \log p_\Delta(y)|$")
    cb2 = fig.colorbar(cs, ax=list(axes), shrink=0.8, pad=0.01, ticks=np.arange(-12, 1, 3))
    cb2.set_label(r"$\log p_\Delta - \max \log p_\Delta$ (nats)")


_CAPTION_TAIL = (
    " Grey: log-density log p_Delta(y) relative to its maximum (contours every "
    f"{_DEPTH / 12:g} nat, {_DEPTH:g} nats deep); arrows: direction of the exact score "
    "grad log p_Delta(y), coloured by log10 of its magnitude. VE frame y = x0 + sqrt(Delta) z."
)

_FIGSIZE = (8.6, 2.9)


@register(
    "score-field-gaussian",
    "Score field of a Gaussian",
    "Correlated Gaussian N(0, C), C = [[1, 0.6], [0.6, 0.6]], at Delta = 0.01, 0.3, 3. "
    "Its noised marginal is N(0, C + Delta I): the score is linear, -(C + Delta I)^-1 y, "
    "and the field rounds off as Delta grows." + _CAPTION_TAIL,
    figsize=_FIGSIZE,
)
def score_field_gaussian(fig):
    _score_field_panels(fig, _gaussian())


@register(
    "score-field-mixture",
    "Score field of a three-component Gaussian mixture",
    "Mixture of three anisotropic Gaussians (weights 0.45, 0.35, 0.2; means marked x) at "
    "Delta = 0.01, 0.3, 3. At small Delta each basin points to its own component; at "
    "large Delta the field is that of one broad Gaussian." + _CAPTION_TAIL,
    figsize=_FIGSIZE,
)
def score_field_mixture(fig):
    model = _mixture()

    def decorate(ax):
        plot.data_points(model.means, ax=ax, marker="X", s=36)

    _score_field_panels(fig, model, decorate)


@register(
    "score-field-two-deltas",
    "Score field of the two-delta model in two dimensions",
    "Equal point masses at (+1, 0) and (-1, 0) (GaussianMixture.two_deltas(1.0, d=2)) at "
    "Delta = 0.01, 0.3, 3. The score is ((tanh(y_1/Delta) - y_1)/Delta, -y_2/Delta) "
    "everywhere; the origin turns from a saddle into the single attractor at Delta = m^2 = 1."
    + _CAPTION_TAIL,
    figsize=_FIGSIZE,
)
def score_field_two_deltas(fig):
    model = GaussianMixture.two_deltas(1.0, d=2)

    def decorate(ax):
        plot.data_points(model.means, ax=ax)

    _score_field_panels(fig, model, decorate)


@register(
    "score-field-empirical",
    "Score field of an empirical training set (20 points)",
    "Uniform measure on 20 points drawn once (seed 7) from N(0, diag(0.72, 0.42)), the "
    "memorising optimum of denoising score matching, at Delta = 0.01, 0.3, 3. At small Delta "
    "every training point is an attractor with its own basin; at large Delta the field is "
    "that of the points' Gaussian envelope." + _CAPTION_TAIL,
    figsize=_FIGSIZE,
)
def score_field_empirical(fig):
    model = _empirical()

    def decorate(ax):
        plot.data_points(model.points, ax=ax, s=10)

    _score_field_panels(fig, model, decorate)


@register(
    "score-field-manifold",
    "Score field of data on a line (linear manifold)",
    "Gaussian data with unit standard deviation on a line through the origin at 30 degrees "
    "(LinearManifold, m = 1 in d = 2) at Delta = 0.01, 0.3, 3. Normal to the line the score "
    "is -y_perp/Delta, stiff at small Delta; along it, -y_par/(1 + Delta)." + _CAPTION_TAIL,
    figsize=_FIGSIZE,
)
def score_field_manifold(fig):
    model = _manifold()
    b = model.basis[:, 0]

    def decorate(ax):
        ax.axline(
            (0.0, 0.0),
            (float(b[0]), float(b[1])),
            color=plot.OKABE_ITO["black"],
            linewidth=1.2,
            zorder=4,
        )

    _score_field_panels(fig, model, decorate)


TWO_DELTA_DELTAS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


@register(
    "two-delta-score-1d",
    "Score and potential of the 1-D two-delta model across Delta",
    "Point masses at +-m, m = 1 (docs/theory.md section 1). (a) Exact score "
    "(m tanh(m y/Delta) - y)/Delta, computed by GaussianMixture.two_deltas(1.0) and equal to "
    "the closed form; (b) Delta times the score, E[x0 | y] - y = m tanh(m y/Delta) - y; "
    "(c) the potential -log p_Delta(y) (shifted to 0 at y = 0). The slope of the score at "
    "y = 0, (m^2/Delta - 1)/Delta, changes sign at Delta = m^2 = 1 (black dashed): below it "
    "the origin is a barrier between two wells, above it the single minimum.",
    figsize=(8.6, 2.9),
)
def two_delta_score_1d(fig):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    m = 1.0
    model = GaussianMixture.two_deltas(m, d=1)
    y = np.linspace(-2.5, 2.5, 801)
    pts = y[:, None]
    norm = LogNorm(vmin=min(TWO_DELTA_DELTAS), vmax=max(TWO_DELTA_DELTAS))
    cmap = plot.truncated_cmap("cividis", 0.0, 0.85)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for delta in TWO_DELTA_DELTAS:
        s = model.score(pts, delta)[:, 0]
        lp = model.log_density(pts, delta)
        pot = -(lp - lp[len(y) // 2])
        critical = np.isclose(delta, m * m)
        kw = (
            {"color": "k", "linestyle": "--", "linewidth": 1.6, "zorder": 3}
            if critical
            else {"color": cmap(norm(delta)), "linewidth": 1.3}
        )
        ax1.plot(y, s, **kw)
        ax2.plot(y, delta * s, **kw)
        ax3.plot(y, pot, **kw)
    for ax in (ax1, ax2, ax3):
        ax.axhline(0, color="0.6", linewidth=0.5, zorder=0)
        ax.set_xlim(y[0], y[-1])
        ax.set_xlabel("$y$")
        for x0 in (-m, m):
            ax.axvline(
                x0, color=plot.OKABE_ITO["vermillion"], linewidth=0.6, linestyle=":", zorder=0
            )
    ax1.set_ylim(-12, 12)
    ax1.set_ylabel(r"score $\partial_y \log p_\Delta(y)$")
    ax2.set_ylabel(r"$\Delta \cdot$ score $= \mathrm{E}[x_0|y] - y$")
    ax3.set_ylim(-1.5, 4)
    ax3.set_ylabel(r"$-\log p_\Delta(y) + \log p_\Delta(0)$")
    for ax, letter in zip((ax1, ax2, ax3), "abc", strict=True):
        plot.panel_label(ax, letter)
    sm = ScalarMappable(norm=norm, cmap=cmap)
    cb = fig.colorbar(sm, ax=[ax1, ax2, ax3], shrink=0.85, pad=0.02)
    cb.set_label(r"$\Delta$ (dashed: $\Delta = m^2$)")
    cb.set_ticks(TWO_DELTA_DELTAS)
    cb.set_ticklabels([f"{d:g}" for d in TWO_DELTA_DELTAS])
