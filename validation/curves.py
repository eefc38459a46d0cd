"""Statistics of measured curves: level crossings with their errors, maxima, peaks.

Two level crossings, for two kinds of curve:

* :func:`monotone_crossing`: where the weighted least-squares non-decreasing fit of a noisy
  curve (:func:`isotonic_increasing`, pool-adjacent-violators) first reaches a level; the
  fit makes the crossing unique on a curve that should be monotone but is noisy (a
  cloning or commitment probability against ``log delta``). Its error comes from
  resampling the curve (the caller's bootstrap).
* :func:`last_up_crossing`: the last up-crossing of a level by linear interpolation, with
  the standard error propagated from the two bracketing values (first-order error
  propagation); the last one, because a curve that settles above the level (an excess
  entropy, a denoising ratio) may dip below it earlier. :func:`censored_up_crossing` turns
  "no crossing on the grid" into a censored bound (:mod:`validation.result`).

Maxima: :func:`fit_peak` (the vertex of a least-squares parabola), :func:`bootstrap_peak`
(that vertex on the mean of independent batches, standard errors by resampling the
batches; Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 6) and
:func:`significant_maxima` (the local maxima of a Monte Carlo curve that stand out of its
noise).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "isotonic_increasing",
    "monotone_crossing",
    "last_up_crossing",
    "censored_up_crossing",
    "fit_peak",
    "bootstrap_peak",
    "significant_maxima",
]


def isotonic_increasing(y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """The weighted least-squares non-decreasing fit of ``y`` (pool-adjacent-violators)."""
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=float)
    vals: list[float] = []
    wts: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y, w, strict=True):
        vals.append(float(yi))
        wts.append(float(wi))
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum
            sz = sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
            vals[-1], wts[-1], sizes[-1] = v, wsum, sz
    return np.repeat(vals, sizes)


def monotone_crossing(
    x: np.ndarray, y: np.ndarray, level: float, w: np.ndarray | None = None
) -> float:
    """Where the monotone fit of ``y`` (non-decreasing along the given order of ``x``) first
    reaches ``level``, linearly interpolated in ``x``; NaN if it never crosses."""
    f = isotonic_increasing(y, w)
    above = np.flatnonzero(f >= level)
    if above.size == 0 or above[0] == 0:
        return math.nan
    j = int(above[0])
    return float(x[j - 1] + (level - f[j - 1]) / (f[j] - f[j - 1]) * (x[j] - x[j - 1]))


def last_up_crossing(
    x: np.ndarray, y: np.ndarray, se: np.ndarray, level: float
) -> tuple[float, float] | None:
    """Last up-crossing of ``level`` by ``y(x)`` (``x`` ascending), by linear
    interpolation, with the standard error propagated from the two bracketing values;
    ``None`` when there is none."""
    up = np.flatnonzero((y[:-1] < level) & (y[1:] >= level))
    if up.size == 0:
        return None
    k = up[-1]
    dy = y[k + 1] - y[k]
    xc = x[k] + (level - y[k]) * (x[k + 1] - x[k]) / dy
    a = (x[k + 1] - x[k]) / dy
    g0 = -a * (y[k + 1] - level) / dy
    g1 = -a * (level - y[k]) / dy
    return float(xc), float(math.hypot(g0 * se[k], g1 * se[k + 1]))


def censored_up_crossing(
    x: np.ndarray, y: np.ndarray, se: np.ndarray, level: float
) -> tuple[float, float, str]:
    """``(x, se, bound)``: :func:`last_up_crossing` with ``bound = ""``, or, where the grid
    holds none, the censored bound a row reports (never NaN): ``y`` still below ``level``
    at the last grid point puts the crossing above the grid (``x[-1]``, ``"lower"``); ``y``
    at or above it everywhere puts it below the grid (``x[0]``, ``"upper"``); se 0."""
    hit = last_up_crossing(x, y, se, level)
    if hit is not None:
        return hit[0], hit[1], ""
    if y[-1] < level:
        return float(x[-1]), 0.0, "lower"
    return float(x[0]), 0.0, "upper"


def fit_peak(x, y) -> tuple[float, float]:
    """Vertex ``(x, y)`` of the least-squares parabola through the points (``nan`` when it
    opens upward or there are fewer than three points)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < 3:
        return math.nan, math.nan
    x0, sx = float(x.mean()), float(x.std()) or 1.0
    u = (x - x0) / sx
    a, b, c = np.polyfit(u, y, 2)
    if not a < 0:
        return math.nan, math.nan
    uv = -b / (2 * a)
    return float(x0 + sx * uv), float(c - b * b / (4 * a))


def bootstrap_peak(
    x, curves, rng: np.random.Generator, n_boot: int
) -> tuple[float, float, float, float]:
    """``(x_peak, y_peak, se_x, se_y)``: the parabola vertex of the mean of ``curves``
    ``(B, L)`` (one row per independent batch), standard errors by resampling the rows."""
    curves = np.asarray(curves, dtype=float)
    xp, yp = fit_peak(x, curves.mean(axis=0))
    B = curves.shape[0]
    reps = []
    for _ in range(n_boot):
        xb, yb = fit_peak(x, curves[rng.integers(0, B, B)].mean(axis=0))
        if math.isfinite(xb):
            reps.append((xb, yb))
    if len(reps) < max(10, n_boot // 2):
        return xp, yp, math.inf, math.inf
    r = np.array(reps)
    return xp, yp, float(r[:, 0].std(ddof=1)), float(r[:, 1].std(ddof=1))


def significant_maxima(x, y, rel_height: float, rel_prominence: float = 0.05) -> list[int]:
    """Indices of the local maxima of ``y`` higher than ``rel_height`` of the largest and
    standing ``rel_prominence`` of it above the lowest point between them and the next
    higher maximum (or the ends): noise-free maxima of a Monte Carlo curve."""
    y = np.asarray(y, dtype=float)
    top = float(np.max(y))
    cand = [i for i in range(1, y.size - 1) if y[i] >= y[i - 1] and y[i] > y[i + 1]]
    out = []
    for i in cand:
        if y[i] < rel_height * top:
            continue
        left = y[: i + 1]
        higher_l = np.flatnonzero(left > y[i])
        lo_l = left[higher_l[-1] :].min() if higher_l.size else left.min()
        right = y[i:]
        higher_r = np.flatnonzero(right > y[i])
        lo_r = right[: higher_r[0] + 1].min() if higher_r.size else right.min()
        if y[i] - max(lo_l, lo_r) >= rel_prominence * top:
            out.append(i)
    return out
