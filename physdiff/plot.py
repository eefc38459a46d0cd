"""Matplotlib helpers for physdiff's figures.

Every helper draws on the axes it is given (``ax=None``: a new ``Figure`` with one axes,
made without pyplot) and returns the artist it made. None touches the global
``rcParams``: colours, widths and fonts are explicit keyword arguments, and
:func:`style` is a context manager (``matplotlib.rc_context``) for whole figures.

Any 2-D score model works with :func:`score_field` (it needs ``score(y, delta)``) and
:func:`density_contours` (it needs ``log_density(y, delta)``): exact ensembles,
``Empirical`` training sets and trained networks alike. Coordinates are the VE frame
``y = x0 + sqrt(delta) z`` (docs/design.md, "One convention for noise").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .atomic import atomic_write
from .errors import InputError, NotSupportedError, ShapeError
from .processes import DDPM, Process, get_process

__all__ = [
    "OKABE_ITO",
    "PROCESS_STYLES",
    "STYLE",
    "style",
    "new_axes",
    "grid",
    "score_field",
    "density_contours",
    "data_points",
    "schedule",
    "ddpm_step_map",
    "panel_label",
    "errorbars",
    "line_note",
    "save_figure",
    "truncated_cmap",
]

OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}
"""The Okabe-Ito colour-blind safe palette (Okabe & Ito 2008)."""

PROCESS_STYLES: dict[str, dict] = {
    "ou": {"color": OKABE_ITO["black"], "linestyle": "-"},
    "vp-linear": {"color": OKABE_ITO["blue"], "linestyle": "--"},
    "vp-cosine": {"color": OKABE_ITO["vermillion"], "linestyle": "-."},
    "ve": {"color": OKABE_ITO["green"], "linestyle": ":"},
    "edm": {"color": OKABE_ITO["purple"], "linestyle": (0, (5, 1.5, 1, 1.5, 1, 1.5))},
    "ddpm": {"color": OKABE_ITO["orange"], "linestyle": "-"},
}
"""One colour and line style per named process (distinct in grey scale too)."""

_SYMBOLS = {
    "delta": r"$\Delta = \sigma^2/\alpha^2$",
    "log_snr": r"$\log \mathrm{SNR} = -\log \Delta$",
    "alpha": r"$\alpha$",
    "sigma": r"$\sigma$",
    "ou_time": r"OU time $t = \frac{1}{2}\log(1+\Delta)$",
}

STYLE: dict = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(
        color=[
            OKABE_ITO[k]
            for k in ("blue", "vermillion", "green", "purple", "orange", "sky", "black")
        ]
    ),
    "image.cmap": "viridis",
    "lines.linewidth": 1.5,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,
    "mathtext.fontset": "dejavusans",
}
"""The house style, applied by :func:`style` (never written to the global rcParams)."""


@contextmanager
def style(**overrides) -> Iterator[None]:
    """Context manager applying :data:`STYLE` (plus ``overrides``) for the duration only."""
    with mpl.rc_context({**STYLE, **overrides}):
        yield


def truncated_cmap(name: str, lo: float = 0.0, hi: float = 1.0, n: int = 256):
    """The part ``[lo, hi]`` of a registered colormap (e.g. a grey ramp light enough to
    draw on, or a sequential map without its palest end)."""
    from matplotlib.colors import ListedColormap

    if not 0.0 <= lo < hi <= 1.0:
        raise InputError(f"need 0 <= lo < hi <= 1; got lo={lo!r}, hi={hi!r}")
    base = mpl.colormaps[name]
    return ListedColormap(base(np.linspace(lo, hi, int(n))), name=f"{name}[{lo:g}:{hi:g}]")


def new_axes(figsize: tuple[float, float] = (4.0, 3.2)) -> Axes:
    """One axes on a new pyplot-free ``Figure`` (Agg canvas, constrained layout)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def _ax(ax: Axes | None) -> Axes:
    return new_axes() if ax is None else ax


def _extent(extent) -> tuple[float, float, float, float]:
    e = np.asarray(extent, dtype=float).reshape(-1)
    if e.shape != (4,) or not np.all(np.isfinite(e)) or not (e[0] < e[1] and e[2] < e[3]):
        raise InputError(
            f"extent must be (xmin, xmax, ymin, ymax) with xmin < xmax and "
            f"ymin < ymax; got {extent!r}"
        )
    return tuple(float(v) for v in e)  # type: ignore[return-value]


def _check_2d(model) -> None:
    d = getattr(model, "dim", None)
    if d != 2:
        raise ShapeError(f"model must be 2-D for a planar plot; got dim={d!r}")


def grid(extent, n: int | tuple[int, int] = 41) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, Y, points)``: a meshgrid over ``extent = (xmin, xmax, ymin, ymax)`` with ``n``
    (or ``(nx, ny)``) nodes per side and the same nodes as an ``(ny * nx, 2)`` batch."""
    x0, x1, y0, y1 = _extent(extent)
    nx, ny = (n, n) if np.ndim(n) == 0 else n
    if int(nx) < 2 or int(ny) < 2:
        raise InputError(f"n must be at least 2 nodes per side; got {n!r}")
    X, Y = np.meshgrid(np.linspace(x0, x1, int(nx)), np.linspace(y0, y1, int(ny)))
    return X, Y, np.column_stack([X.ravel(), Y.ravel()])


def score_field(
    model,
    delta: float,
    extent=(-3.0, 3.0, -3.0, 3.0),
    ax: Axes | None = None,
    *,
    n: int = 25,
    kind: str = "quiver",
    normalize: bool = True,
    color="k",
    cmap=None,
    norm=None,
    **kwargs,
):
    """The score ``grad log p_delta(y)`` of a 2-D model over ``extent``.

    ``kind='quiver'`` draws arrows on an ``n x n`` grid (unit length with ``normalize``:
    direction only, the magnitude spans decades near the data at small delta);
    ``kind='stream'`` draws streamlines of the score flow. With ``cmap`` the arrows or
    lines are coloured by ``log10 |score|`` (``norm`` to share a scale across panels).
    Returns the ``Quiver`` or ``StreamplotSet``.
    """
    _check_2d(model)
    ax = _ax(ax)
    X, Y, pts = grid(extent, n)
    s = np.asarray(model.score(pts, delta), dtype=float)
    if s.shape != pts.shape:
        raise ShapeError(f"model.score returned shape {s.shape}; expected {pts.shape}")
    U, V = s[:, 0].reshape(X.shape), s[:, 1].reshape(X.shape)
    mag = np.hypot(U, V)
    logmag = np.log10(np.maximum(mag, np.finfo(float).tiny))
    if kind == "quiver":
        if normalize:
            safe = np.where(mag > 0, mag, 1.0)
            U, V = U / safe, V / safe
        kw = {
            "angles": "xy",
            "pivot": "mid",
            "width": 0.005,
            "headwidth": 3.5,
            "headlength": 4.0,
            "headaxislength": 3.5,
        }
        if normalize:
            kw.update(scale_units="xy", scale=1.0 / (0.7 * (X[0, 1] - X[0, 0])))
        kw.update(kwargs)
        if cmap is not None:
            return ax.quiver(X, Y, U, V, logmag, cmap=cmap, norm=norm, **kw)
        return ax.quiver(X, Y, U, V, color=color, **kw)
    if kind == "stream":
        kw = {"density": 1.0, "linewidth": 0.7, "arrowsize": 0.7, "broken_streamlines": True}
        kw.update(kwargs)
        if cmap is not None:
            return ax.streamplot(X, Y, U, V, color=logmag, cmap=cmap, norm=norm, **kw)
        return ax.streamplot(X, Y, U, V, color=color, **kw)
    raise InputError(f"kind must be 'quiver' or 'stream'; got {kind!r}")


def density_contours(
    model,
    delta: float,
    extent=(-3.0, 3.0, -3.0, 3.0),
    ax: Axes | None = None,
    *,
    n: int = 161,
    depth: float = 12.0,
    levels: int | Sequence[float] = 13,
    filled: bool = True,
    cmap=None,
    **kwargs,
):
    """Contours of ``log p_delta(y) - max log p_delta`` of a 2-D model over ``extent``.

    The range shown is ``[-depth, 0]`` nats below the maximum on the grid (``levels``
    evenly spaced levels, or explicit levels in that relative scale), so panels at
    different delta read alike. ``filled=False`` draws lines. Returns the
    ``QuadContourSet``. The default ``cmap`` is a light grey ramp (white far from the
    data, light grey at the maximum) that arrows and markers read on.
    """
    _check_2d(model)
    if cmap is None and "colors" not in kwargs:
        cmap = truncated_cmap("Greys", 0.0, 0.45)
    if not hasattr(model, "log_density"):
        raise NotSupportedError(f"{type(model).__name__} has no log_density to contour")
    if not depth > 0:
        raise InputError(f"depth must lie in (0, inf); got {depth!r}")
    ax = _ax(ax)
    X, Y, pts = grid(extent, n)
    lp = np.asarray(model.log_density(pts, delta), dtype=float).reshape(X.shape)
    rel = np.maximum(lp - lp.max(), -depth)
    lv = np.linspace(-depth, 0.0, int(levels)) if np.ndim(levels) == 0 else levels
    if filled:
        return ax.contourf(X, Y, rel, levels=lv, cmap=cmap, extend="neither", **kwargs)
    kw = {"linewidths": 0.6, "linestyles": "solid"}  # (levels are negative: no dashes)
    kw.update(kwargs)
    return ax.contour(X, Y, rel, levels=lv, cmap=cmap, **kw)


def data_points(points, ax: Axes | None = None, **kwargs):
    """The clean data points ``(n, 2)`` (training set, point masses) as markers."""
    p = np.asarray(points, dtype=float)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ShapeError(f"points must have shape (n, 2); got {p.shape}")
    ax = _ax(ax)
    kw = {"s": 14, "c": OKABE_ITO["black"], "edgecolors": "white", "linewidths": 0.6, "zorder": 5}
    kw.update(kwargs)
    return ax.scatter(p[:, 0], p[:, 1], **kw)


def _time_grid(proc: Process, n: int) -> np.ndarray:
    # uniform in normalised time, plus geometric points near t_min so that log-scale
    # quantities (delta -> 0 at the data end) are resolved
    u = np.unique(np.concatenate([np.linspace(0.0, 1.0, n), np.geomspace(1e-6, 1.0, n // 2)]))
    return proc.t_min + u * (proc.t_max - proc.t_min)


def schedule(
    process,
    quantity: str = "delta",
    ax: Axes | None = None,
    *,
    normalized_time: bool = True,
    n: int = 400,
    label: str | None = None,
    logy: bool | None = None,
    **kwargs,
):
    """One schedule quantity of a process against its own time.

    ``quantity`` is ``'delta'``, ``'log_snr'``, ``'alpha'``, ``'sigma'`` or ``'ou_time'``
    (``log(1 + delta)/2``, where the process sits on the OU clock). With
    ``normalized_time`` the abscissa is ``(t - t_min)/(t_max - t_min)``. ``logy`` (default:
    on for delta and sigma) sets a log y-axis. ``process`` is a :class:`Process` or a
    preset name; its :data:`PROCESS_STYLES` entry is the default style.
    Returns the ``Line2D``.
    """
    proc = get_process(process)
    if quantity not in _SYMBOLS:
        raise InputError(f"quantity must be one of {sorted(_SYMBOLS)}; got {quantity!r}")
    ax = _ax(ax)
    t = _time_grid(proc, int(n))
    if quantity == "ou_time":
        y = 0.5 * np.log1p(proc.delta(t))
    else:
        y = np.asarray(getattr(proc, quantity)(t), dtype=float)
    x = (t - proc.t_min) / (proc.t_max - proc.t_min) if normalized_time else t
    kw = dict(PROCESS_STYLES.get(getattr(proc, "name", ""), {}))
    kw.update(kwargs)
    (line,) = ax.plot(
        x,
        np.where(np.isfinite(y), y, np.nan),
        label=getattr(proc, "name", repr(proc)) if label is None else label,
        **kw,
    )
    if logy if logy is not None else quantity in ("delta", "sigma"):
        ax.set_yscale("log")
    ax.set_xlabel(
        r"normalised time $(t - t_{\min})/(t_{\max} - t_{\min})$" if normalized_time else "t"
    )
    ax.set_ylabel(_SYMBOLS[quantity])
    return line


def ddpm_step_map(
    process: DDPM | None = None,
    ax: Axes | None = None,
    *,
    landmarks: Sequence[float] = (0.1, 1.0, 10.0),
    annotate: bool = True,
    **kwargs,
):
    """DDPM step ``k`` against its OU time ``t_k = -log(abar_k)/2`` (docs/theory.md section 0).

    Each landmark noise-to-signal variance ``delta`` is marked at its nearest step, with
    guide lines to both axes. Returns the ``Line2D`` of the map.
    """
    proc = get_process("ddpm") if process is None else process
    if not isinstance(proc, DDPM):
        raise InputError(f"process must be a DDPM; got {type(proc).__name__}")
    ax = _ax(ax)
    k = np.arange(proc.n_steps)
    kw = {"color": OKABE_ITO["black"], "linewidth": 1.5, "label": r"$k(t_k)$"}
    kw.update(kwargs)
    (line,) = ax.plot(proc.ou_times, k, **kw)
    colors = [OKABE_ITO[c] for c in ("blue", "vermillion", "green", "purple", "orange")]
    for i, d in enumerate(landmarks):
        step = int(proc.step_of_delta(d, "nearest"))
        t = float(proc.ou_times[step])
        c = colors[i % len(colors)]
        ax.plot([t, t], [0, step], color=c, linewidth=0.8, linestyle=":")
        ax.plot([0, t], [step, step], color=c, linewidth=0.8, linestyle=":")
        ax.plot([t], [step], marker="o", markersize=4.5, color=c, linestyle="none", zorder=4)
        if annotate:
            ax.annotate(
                rf"$\Delta={d:g}$: $k={step}$, $t={t:.3g}$",
                (t, step),
                xytext=(7, 0),
                textcoords="offset points",
                color=c,
                fontsize="small",
                ha="left",
                va="center",
            )
    ax.set_xlim(0, float(proc.ou_times[-1]) * 1.02)
    ax.set_ylim(0, proc.n_steps * 1.02)
    ax.set_xlabel(r"OU time $t_k = -\frac{1}{2}\log \bar\alpha_k$")
    ax.set_ylabel("DDPM step $k$")
    return line


def panel_label(ax: Axes, text: str, **kwargs):
    """A bold panel label ('a', 'b', ...) in the top-left corner, outside the axes."""
    kw = {"fontweight": "bold", "ha": "left", "va": "bottom", "fontsize": "large"}
    kw.update(kwargs)
    return ax.text(-0.02, 1.02, text, transform=ax.transAxes, **kw)


ERRORBAR_STYLE: dict = {"markersize": 3.2, "elinewidth": 0.8, "capsize": 1.2}
"""The house style of measured points with error bars (:func:`errorbars`)."""


def errorbars(ax: Axes, x, y, yerr, *, fmt: str = "o", **kwargs):
    """Measured points ``y +- yerr`` against ``x`` in the house style (:data:`ERRORBAR_STYLE`:
    small markers, thin bars, short caps); ``kwargs`` (colour, label, line width, ...)
    override it. Returns the ``ErrorbarContainer``."""
    kw = dict(ERRORBAR_STYLE)
    kw.update(kwargs)
    return ax.errorbar(x, y, yerr=yerr, fmt=fmt, **kw)


def line_note(ax: Axes, x: float, text: str, y: float = 0.97, *, offset: float = 3, **kwargs):
    """Label a vertical line at ``x`` (data coordinates) with ``text`` at height ``y`` (axes
    fraction), ``offset`` points to its right (left when negative, right-aligned). Returns the
    ``Annotation``."""
    kw = {"ha": "left" if offset >= 0 else "right"}
    kw.update(kwargs)
    return ax.annotate(
        text,
        (x, y),
        xycoords=("data", "axes fraction"),
        xytext=(offset, 0),
        textcoords="offset points",
        **kw,
    )


# Fixed metadata, so that saving an unchanged figure again gives the same bytes (no
# matplotlib version in a PNG, no dates in a PDF or SVG).
_REPRODUCIBLE_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None},
    "svg": {"Date": None},
}


@contextmanager
def _quiet_font_subsetting() -> Iterator[None]:
    """Silence fontTools while matplotlib subsets a font for a PDF: it reads the DejaVu
    fonts' ``head`` table, whose time stamps predate 1904, and logs two warnings ("'created'
    timestamp seems very low") through logging's last-resort handler, i.e. to stderr, on
    every PDF. Nothing about the figure is wrong; other loggers are left alone."""
    log = logging.getLogger("fontTools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def save_figure(fig: Figure, path: str | os.PathLike, fmt: str, dpi: int = 150) -> Path:
    """Save ``fig`` to ``path`` as ``fmt`` (png, pdf, svg) atomically
    (:func:`physdiff.atomic.atomic_write`), with reproducible metadata and no stray lines
    on stderr; returns the path."""
    meta = _REPRODUCIBLE_METADATA.get(fmt, {})
    with _quiet_font_subsetting():
        return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi, metadata=meta))
