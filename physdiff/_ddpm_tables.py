"""Tables of the discrete DDPM process (:class:`physdiff.processes.DDPM`): named beta
schedules, the zero-terminal-SNR rescaling, the continuation of ``log abar`` between steps
and diffusers' inference timestep spacings. Plain numpy, array in, array out."""

from __future__ import annotations

import numpy as np

from ._validate import finite_array, integer
from .errors import InputError, ShapeError

DIFFUSERS_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled-linear",
                       "squaredcos_cap_v2": "cosine"}  # fmt: skip
"""diffusers' ``beta_schedule`` names and physdiff's."""

SPACINGS = ("leading", "trailing", "linspace")


def cosine_betas(n_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal 2021, Eq. 17: ``abar(u) = cos((u + s)/(1 + s) pi/2)^2`` at
    ``u = k / T`` and ``beta_k = min(1 - abar((k+1)/T) / abar(k/T), max_beta)`` (their cap
    0.999 keeps the last step from reaching ``abar = 0``; diffusers' ``squaredcos_cap_v2``)."""
    u = np.arange(n_steps + 1) / n_steps
    log_f = 2 * np.log(np.cos((u + s) / (1 + s) * (np.pi / 2)))
    return np.minimum(-np.expm1(np.diff(log_f)), max_beta)


def rescale_zero_snr(log_abar: np.ndarray) -> np.ndarray:
    """Lin et al. 2024 ("Common diffusion noise schedules and sample steps are flawed"),
    Algorithm 1: ``sqrt(abar)`` shifted so its last value is 0 and scaled so its first
    is unchanged, ``r_k = (a_k - a_{T-1}) a_0 / (a_0 - a_{T-1})`` with ``a = sqrt(abar)``;
    returns ``log abar`` of the new table (``-inf`` at the last step)."""
    a = np.exp(0.5 * log_abar)
    a0, a_end = a[0], a[-1]
    r = (a - a_end) * (a0 / (a0 - a_end))
    r[0], r[-1] = a0, 0.0
    with np.errstate(divide="ignore"):
        return 2 * np.log(r)


def as_table(x, name: str) -> np.ndarray:
    """A 1-D float64 copy of a table (a numpy array, a list or a torch tensor of any float
    dtype, widened exactly), refusing NaN and inf."""
    if hasattr(x, "detach") and hasattr(x, "double"):  # a torch tensor, torch not imported
        x = x.detach().cpu().double().numpy()
    arr = finite_array(x, name)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be a 1-D table; got shape {arr.shape}")
    return arr.copy()


def log_abar_at(la: np.ndarray, t) -> np.ndarray:
    """``log abar(t)`` at real steps ``t``: linear between steps; on a last interval that
    ends at ``abar = 0`` (``la[-1] = -inf``), linear in ``abar`` itself,
    ``log abar = la[-2] + log(1 - (t - (T-2)))``."""
    t = np.asarray(t, dtype=float)
    n = la.shape[0]
    if np.isfinite(la[-1]):
        return np.interp(t, np.arange(n, dtype=float), la)
    out = np.interp(np.minimum(t, n - 2), np.arange(n - 1, dtype=float), la[:-1])
    frac = np.clip(t - (n - 2), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return np.where(frac > 0, la[-2] + np.log1p(-frac), out)


def dlog_abar_at(la: np.ndarray, t) -> np.ndarray:
    """``d log abar / dt`` of :func:`log_abar_at` (the right-hand derivative at a step)."""
    t = np.asarray(t, dtype=float)
    n = la.shape[0]
    k = np.clip(np.floor(t).astype(int), 0, n - 2)
    if np.isfinite(la[-1]):
        return la[k + 1] - la[k]
    last = k == n - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = -1.0 / (1.0 - np.clip(t - (n - 2), 0.0, 1.0))
        return np.where(last, slope, la[np.minimum(k + 1, n - 2)] - la[k])


def step_of_log_abar(la: np.ndarray, v) -> np.ndarray:
    """The real step ``t`` with ``log abar(t) = v`` (the inverse of :func:`log_abar_at`)."""
    v = np.asarray(v, dtype=float)
    n = la.shape[0]
    if np.isfinite(la[-1]):
        return np.interp(v, la[::-1], np.arange(n, dtype=float)[::-1])
    t = np.interp(v, la[-2::-1], np.arange(n - 1, dtype=float)[::-1])
    with np.errstate(invalid="ignore"):
        frac = -np.expm1(v - la[-2])  # abar(t) = abar_{T-2} (1 - frac) on the last interval
    return np.where(v < la[-2], (n - 2) + frac, t)


def spaced_steps(
    n_train: int, n_inference: int, spacing: str = "leading", steps_offset: int = 0
) -> np.ndarray:
    """Decreasing integer inference steps of diffusers' ``timestep_spacing`` (the
    annotations of Lin et al. 2024, Table 2), ``T = n_train``, ``n = n_inference``:

    * ``"leading"``: ``k * (T // n) + steps_offset`` for k = n-1..0;
    * ``"trailing"``: ``round(T - k T/n) - 1`` for k = 0..n-1 (starts at ``T - 1``);
    * ``"linspace"``: ``round(linspace(0, T-1, n))`` reversed.
    """
    n_train = integer(n_train, "n_train", 2, 10**7)
    n = integer(n_inference, "num_inference_steps", 1, n_train)
    steps_offset = integer(steps_offset, "steps_offset", 0, n_train - 1)
    if spacing == "leading":
        steps = np.arange(n)[::-1] * (n_train // n) + steps_offset
    elif spacing == "trailing":
        steps = np.round(np.arange(n_train, 0, -n_train / n)).astype(np.int64) - 1
    elif spacing == "linspace":
        steps = np.linspace(0, n_train - 1, n).round()[::-1].astype(np.int64)
    else:
        raise InputError(f"timestep_spacing must be one of {SPACINGS}; got {spacing!r}")
    if steps.max() > n_train - 1:
        raise InputError(
            f"steps_offset={steps_offset} puts the first step at {int(steps.max())}, past the "
            f"table's last step {n_train - 1}"
        )
    return steps.astype(np.int64)
