"""The class-decision entropy profile of a 1-D Gaussian mixture and every peak of its rate
(docs/theory.md section 6; Handke et al. 2025): ``physdiff entropy``.

The conditional entropy ``H(G | y)`` of a decision between the classes (components) and
its rate ``dH/d delta`` come from Gauss-Hermite quadrature
(:func:`physdiff.information.conditional_entropy_quadrature`,
:func:`~physdiff.information.entropy_rate_quadrature`) on a grid geometric in ``delta``;
the peaks are every local maximum (:func:`~physdiff.information.local_maxima`) of the rate
in a process's time, ``dH/dt``, and of the schedule-free ``dH/d log delta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import information as I
from ._validate import integer
from .errors import DomainError
from .processes import DDPM, Process, get_process

__all__ = ["EntropyProfile", "entropy_profile"]


@dataclass(frozen=True)
class EntropyProfile:
    """What :func:`entropy_profile` computed.

    ``H_prior`` is the entropy of the decision's prior, ``H_at_delta_min`` and
    ``H_at_delta_max`` the profile's ends, ``half_entropy`` where ``H = H_prior/2`` (None if
    the range does not cross it), ``largest_rate_on_grid`` the largest ``dH/dt`` on the time
    grid, ``peaks`` every local maximum of ``dH/dt`` and ``peaks_log_delta`` of ``dH/d log
    delta``, each a dict with ``delta``, ``t``, (DDPM) ``step`` and ``rate``. ``profile``
    holds the grids (JSON-ready lists): ``delta``, ``t``, ``H``, ``rate_delta``,
    ``rate_log_delta``, ``rate_time`` (DDPM: ``step``) and ``time_grid``."""

    H_prior: float
    H_at_delta_min: float
    H_at_delta_max: float
    half_entropy: dict | None
    largest_rate_on_grid: dict
    peaks: tuple
    peaks_log_delta: tuple
    profile: dict

    def to_labelled(self) -> dict:
        """The profile over the named coordinate ``delta`` (with ``t`` and, for DDPM,
        ``step`` as variables), :func:`physdiff.labelled.labelled`."""
        from .labelled import labelled

        p = self.profile
        names = ("t", "H", "rate_delta", "rate_log_delta", "rate_time", "step")
        return labelled(
            {"delta": p["delta"]},
            {k: (["delta"], p[k]) for k in names if k in p},
            {"H_prior": self.H_prior},
        )

    def to_dict(self) -> dict:
        """The summary (everything but ``profile``), JSON-ready."""
        return {
            "H_prior": self.H_prior,
            "H_at_delta_min": self.H_at_delta_min,
            "H_at_delta_max": self.H_at_delta_max,
            "half_entropy": self.half_entropy,
            "largest_rate_on_grid": dict(self.largest_rate_on_grid),
            "peaks": [dict(p) for p in self.peaks],
            "peaks_log_delta": [dict(p) for p in self.peaks_log_delta],
        }


def entropy_profile(
    model,
    process: Process | str = "ddpm",
    partition=None,
    *,
    levels: int = 1000,
    delta_min: float | None = None,
    delta_max: float | None = None,
    order: int = 200,
    rel_height: float = 1e-6,
) -> EntropyProfile:
    """The entropy profile of the decision ``partition`` (None: the K-way decision) of the
    1-D mixture ``model`` at ``levels`` noise levels.

    The grid is ``np.geomspace(delta_min, delta_max, levels)`` (defaults: the process's
    range, the lower end at least 1e-4). The rate in time lives on its own grid, uniform in
    ``t`` between the times of the two ends (``levels`` points; DDPM: the half steps
    ``k + 1/2`` in that range, where the discrete schedule's ``d delta/dt`` is defined).
    Maxima are kept when at least ``rel_height`` times the rate's range above its minimum.
    Raises :class:`~physdiff.errors.InputError` naming the argument on bad input.
    """
    proc = get_process(process)
    lo = max(proc.delta_min, 1e-4) if delta_min is None else float(delta_min)
    hi = proc.delta_max if delta_max is None else float(delta_max)
    for name, v in (("delta_min", lo), ("delta_max", hi)):
        if not v > 0:
            raise DomainError(f"{name}: must be > 0; got {v:g}")
        proc.check_delta(v, name)
    if not lo < hi:
        raise DomainError(f"delta_max: must exceed delta_min ({lo:g}); got {hi:g}")
    levels = integer(levels, "levels", 3, 10**6)
    order = integer(order, "order", 2, 300)
    if not 0 <= rel_height <= 1:
        raise DomainError(f"rel_height: must lie in [0, 1]; got {rel_height:g}")
    deltas = np.geomspace(lo, hi, levels)
    deltas[0], deltas[-1] = lo, hi
    H = I.conditional_entropy_quadrature(model, deltas, partition, order=order)
    R = I.entropy_rate_quadrature(model, deltas, partition, order=order)
    t = np.asarray(proc.time_of_delta(deltas), dtype=float)
    Rt = np.asarray(I.rate_in_time(R, deltas, proc), dtype=float)
    Rl = R * deltas
    ddpm = isinstance(proc, DDPM)
    # dH/dt on a grid uniform in the process's time; for DDPM the half steps k + 1/2, where
    # d delta/dt (constant between steps of the discrete schedule) is defined: on any
    # finer grid its jumps at the integer steps make a staircase with spurious maxima
    t_lo, t_hi = float(t[0]), float(t[-1])
    if ddpm:
        tg = np.arange(math.floor(t_lo), math.ceil(t_hi)) + 0.5
        tg = tg[(tg >= t_lo) & (tg <= t_hi)]
        if tg.size < 3:
            raise DomainError(
                "delta_max: the range spans fewer than 3 DDPM steps; widen delta_min/delta_max"
            )
    else:
        tg = np.linspace(t_lo, t_hi, levels)
    dg = np.asarray(proc.delta(tg), dtype=float)
    Rg = np.asarray(
        I.rate_in_time(I.entropy_rate_quadrature(model, dg, partition, order=order), dg, proc),
        dtype=float,
    )

    def where(delta: float, tt: float) -> dict:
        out = {"delta": float(delta), "t": float(tt)}
        if ddpm:
            out["step"] = int(np.clip(np.rint(tt), 0, proc.n_steps - 1))
        return out

    peaks = []
    for tp, rp in zip(*I.local_maxima(tg, Rg, rel_height=rel_height), strict=True):
        tp = float(np.clip(tp, proc.t_min, proc.t_max))
        peaks.append({**where(float(proc.delta(tp)), tp), "rate": float(rp)})
    peaks_ld = []
    for xp, rp in zip(*I.local_maxima(np.log(deltas), Rl, rel_height=rel_height), strict=True):
        dp = float(np.clip(np.exp(xp), lo, hi))
        peaks_ld.append({**where(dp, float(proc.time_of_delta(dp))), "rate": float(rp)})
    if partition is None:
        w = model.weights
    else:
        w = np.array([model.weights[list(g)].sum() for g in partition.groups])
    H_prior = float(I.entropy(w / w.sum()))
    half = None
    if H[0] < 0.5 * H_prior < H[-1]:
        i = int(np.flatnonzero(H >= 0.5 * H_prior)[0])  # the first crossing; i >= 1
        x0, x1 = np.log(deltas[i - 1]), np.log(deltas[i])
        f = (0.5 * H_prior - H[i - 1]) / (H[i] - H[i - 1])
        dh = float(np.exp(x0 + f * (x1 - x0)))
        half = where(dh, float(proc.time_of_delta(dh)))
    imax = int(np.argmax(Rg))
    profile = {
        "delta": deltas.tolist(),
        "t": t.tolist(),
        "H": H.tolist(),
        "rate_delta": R.tolist(),
        "rate_log_delta": Rl.tolist(),
        "rate_time": Rt.tolist(),
    }
    if ddpm:
        profile["step"] = np.clip(np.rint(t), 0, proc.n_steps - 1).astype(int).tolist()
    profile["time_grid"] = {"t": tg.tolist(), "delta": dg.tolist(), "rate_time": Rg.tolist()}
    return EntropyProfile(
        H_prior,
        float(H[0]),
        float(H[-1]),
        half,
        {**where(dg[imax], tg[imax]), "rate": float(Rg[imax])},
        tuple(peaks),
        tuple(peaks_ld),
        profile,
    )
