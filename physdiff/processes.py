"""Forward noising processes and the conversions between them.

Every process is ``x_t = alpha(t) x0 + sigma(t) z`` with ``z ~ N(0, I)``. physdiff works in
the variance-exploding (VE) frame ``y = x_t / alpha(t) = x0 + sqrt(delta(t)) z``, with the
noise-to-signal variance ``delta = sigma^2 / alpha^2 = 1 / SNR`` (docs/theory.md section 0). A
critical point of any model is first a critical ``delta``; ``process.time_of_delta(delta)``
turns it into that process's time and :meth:`DDPM.step_of_delta` into a DDPM step.

The forward SDE of every process follows from ``alpha`` and ``delta`` alone:

    dx = f(t) x dt + g(t) dW,   f = d log(alpha)/dt,   g^2 = alpha^2 d(delta)/dt

(since ``d sigma^2/dt - 2 f sigma^2 = alpha^2 d delta/dt``; Song et al. 2021, Eq. 5/Appendix B).
Each subclass therefore supplies only ``log alpha``, ``delta``, their time derivatives and
the inverse ``time_of_delta``; everything else lives in :class:`Process`.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from . import _ddpm_tables as T
from ._validate import finite_array, integer
from .errors import DomainError, InputError

__all__ = [
    "Process",
    "OU",
    "VPLinear",
    "VPCosine",
    "VE",
    "EDM",
    "DDPM",
    "PRESETS",
    "get_process",
    "times_of_delta",
    "log_delta_grid",
    "SAMPLING_FLOOR",
]

Rounding = Literal["nearest", "floor", "ceil"]


class Process(ABC):
    """A forward noising process, parametrised by its own time ``t in [t_min, t_max]``.

    Subclasses are frozen dataclasses and implement ``_log_alpha``, ``_dlog_alpha``,
    ``_delta``, ``_ddelta`` and ``_time_of_delta`` on already validated numpy arrays.
    """

    name: str = "process"

    # -- the process's own range ------------------------------------------------------
    @property
    def t_min(self) -> float:
        """Smallest valid time (the data end): 0 unless a subclass says otherwise."""
        return 0.0

    @property
    @abstractmethod
    def t_max(self) -> float:
        """Largest valid time (the noise end, where sampling usually starts)."""

    # -- what a subclass implements --------------------------------------------------
    @abstractmethod
    def _log_alpha(self, t: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _dlog_alpha(self, t: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _delta(self, t: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _ddelta(self, t: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _time_of_delta(self, delta: np.ndarray) -> np.ndarray: ...

    # -- validation --------------------------------------------------------------------
    def check_time(self, t, name: str = "t") -> np.ndarray:
        """``t`` as a float64 array, refusing values outside ``[t_min, t_max]``."""
        arr = finite_array(t, name)
        if np.any(arr < self.t_min) or np.any(arr > self.t_max):
            raise DomainError(
                f"{name} must lie in [{self.t_min:g}, {self.t_max:g}] for {self!r}; "
                f"got values in [{arr.min():g}, {arr.max():g}]"
            )
        return arr

    @property
    def delta_min(self) -> float:
        """``delta(t_min)``."""
        return float(self._delta(np.asarray(self.t_min, dtype=float)))

    @property
    def delta_max(self) -> float:
        """``delta(t_max)``."""
        return float(self._delta(np.asarray(self.t_max, dtype=float)))

    def check_delta(self, delta, name: str = "delta") -> np.ndarray:
        """``delta`` as a float64 array inside the range this process reaches (``inf`` only
        where the process reaches it: a zero-terminal-SNR :class:`DDPM`)."""
        lo, hi = self.delta_min, self.delta_max
        arr = np.asarray(delta, dtype=np.float64)
        if not (hi == math.inf and np.all(np.isfinite(arr) | (arr == math.inf))):
            arr = finite_array(delta, name)
        if np.any(arr < lo * (1 - 1e-12)) or np.any(arr > hi * (1 + 1e-12)):
            raise DomainError(
                f"{name} must lie in [{lo:.6g}, {hi:.6g}], the range {self!r} reaches "
                f"between t_min and t_max; got values in [{arr.min():.6g}, {arr.max():.6g}]"
            )
        return np.clip(arr, lo, hi)  # only removes the 1e-12 relative slack above

    # -- the schedule ------------------------------------------------------------------
    def alpha(self, t):
        """Signal scale ``alpha(t)``."""
        return _out(np.exp(self._log_alpha(self.check_time(t))))

    def sigma(self, t):
        """Noise scale ``sigma(t) = alpha(t) sqrt(delta(t))``."""
        t = self.check_time(t)
        return _out(np.exp(self._log_alpha(t)) * np.sqrt(self._delta(t)))

    def delta(self, t):
        """Noise-to-signal variance ``delta(t) = sigma^2 / alpha^2`` (= 1/SNR)."""
        return _out(self._delta(self.check_time(t)))

    def log_snr(self, t):
        """``log SNR(t) = log(alpha^2 / sigma^2) = -log delta(t)``."""
        t = self.check_time(t)
        with np.errstate(divide="ignore"):
            return _out(-np.log(self._delta(t)))

    def time_of_delta(self, delta):
        """The time at which ``delta(t)`` equals ``delta`` (the inverse of :meth:`delta`)."""
        t = self._time_of_delta(self.check_delta(delta))
        # the inverse may land an ulp outside [t_min, t_max] at the range's ends
        return _out(np.clip(t, self.t_min, self.t_max))

    # -- the SDE -----------------------------------------------------------------------
    def drift_coefficient(self, t):
        """``f(t) = d log alpha / dt``; the forward drift is ``f(t) x``."""
        return _out(self._dlog_alpha(self.check_time(t)))

    def diffusion(self, t):
        """``g(t) = sqrt(alpha^2 d delta / dt)``, the forward SDE's diffusion coefficient."""
        t = self.check_time(t)
        return _out(np.sqrt(np.exp(2 * self._log_alpha(t)) * self._ddelta(t)))

    def drift(self, x, t):
        """Forward SDE drift ``f(t) x`` for a batch ``x`` of shape ``(n, d)`` and scalar ``t``."""
        return self.drift_coefficient(t) * np.asarray(x)

    def ddelta_dt(self, t):
        """``d delta / dt``."""
        return _out(self._ddelta(self.check_time(t)))

    # -- sampling grids ----------------------------------------------------------------
    def grid_ends(
        self, n_steps: int, t_start: float | None = None, t_end: float | None = None
    ) -> tuple[int, float, float]:
        """``(n_steps, t0, t1)`` of a grid, checked: ``n_steps`` in ``[1, 1e9]``, ``t_start``
        (default ``t_max``) above ``t_end`` (default ``t_min``), both in the range; every
        grid of the process (:meth:`time_grid`, :func:`log_delta_grid`) starts here."""
        n_steps = integer(n_steps, "n_steps", 1, 10**9)
        t0 = self.t_max if t_start is None else float(self.check_time(t_start, "t_start"))
        t1 = self.t_min if t_end is None else float(self.check_time(t_end, "t_end"))
        if not t0 > t1:
            raise InputError(f"t_start must exceed t_end; got t_start={t0:g}, t_end={t1:g}")
        return n_steps, t0, t1

    def time_grid(self, n_steps: int, t_start: float | None = None, t_end: float | None = None):
        """Decreasing grid of ``n_steps + 1`` times from ``t_start`` (default ``t_max``) to
        ``t_end`` (default ``t_min``), uniform in the process's own time."""
        n_steps, t0, t1 = self.grid_ends(n_steps, t_start, t_end)
        return np.linspace(t0, t1, n_steps + 1)

    def sampling_grid(
        self, n_steps: int, t_start: float | None = None, t_end: float | None = None
    ) -> np.ndarray:
        """The samplers' default grid (``times=None``): ``n_steps + 1`` decreasing times
        from ``t_start`` (default ``t_max``) to ``t_end`` (default ``t_min``) in the
        variable the process was designed to be sampled in. By default that is its own
        time (:meth:`time_grid`): the VP schedules were built for it, VE's time is
        ``log sigma``, EDM's grid is Karras et al.'s and DDPM's the integer steps.
        :class:`OU` overrides it (:func:`log_delta_grid`)."""
        return self.time_grid(n_steps, t_start, t_end)

    def __repr__(self) -> str:  # dataclass repr, but short
        fields = getattr(self, "__dataclass_fields__", {})
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in fields if fields[k].repr)
        return f"{type(self).__name__}({args})"


class _UnitTime(Process):
    """A process whose time runs over ``[0, 1]``."""

    @property
    def t_max(self) -> float:
        return 1.0


def _check_increasing(process: Process, lo: str, hi: str) -> None:
    """Refuse a range ``(lo, hi)`` of a process's parameters unless ``0 < lo < hi < inf``."""
    a, b = getattr(process, lo), getattr(process, hi)
    if not (0 < a < b and math.isfinite(b)):
        raise DomainError(f"need 0 < {lo} < {hi} < inf; got {a!r}, {b!r}")


def _out(arr: np.ndarray):
    """A 0-d result becomes a Python float; arrays stay arrays."""
    arr = np.asarray(arr, dtype=float)
    return float(arr) if arr.ndim == 0 else arr


@dataclass(frozen=True, repr=False)
class OU(Process):
    """Ornstein-Uhlenbeck / variance-preserving process in Biroli et al.'s time.

    ``alpha = e^{-t}``, ``sigma^2 = 1 - e^{-2t}``, ``delta = e^{2t} - 1``,
    ``t = log(1 + delta) / 2`` (docs/theory.md section 0; Biroli et al. 2024, Eq. 1).
    ``horizon`` is where sampling starts by default.
    """

    horizon: float = 10.0
    name = "ou"

    def __post_init__(self):
        if not (math.isfinite(self.horizon) and self.horizon > 0):
            raise DomainError(f"horizon must lie in (0, inf); got {self.horizon!r}")

    @property
    def t_max(self) -> float:
        return float(self.horizon)

    def _log_alpha(self, t):
        return -t

    def _dlog_alpha(self, t):
        return -np.ones_like(t)

    def _delta(self, t):
        return np.expm1(2 * t)

    def _ddelta(self, t):
        return 2 * np.exp(2 * t)

    def _time_of_delta(self, delta):
        return 0.5 * np.log1p(delta)

    def sampling_grid(self, n_steps: int, t_start: float | None = None, t_end: float | None = None):
        """Uniform in ``log delta`` (:func:`log_delta_grid`), not in ``t``: OU's time has no
        schedule designed into it, and a grid uniform in ``t in [0, 10]`` puts half its
        steps above ``delta = 2e4``, where nothing happens, and almost none near
        ``delta = 0``. Measured with Heun at 200 steps: on two point masses at +-1 the end
        points move from 0.55 off to 4e-5; on a two-Gaussian mixture from 3.9e-2 to
        1.1e-3 (the error of EDM's own grid there is 1.3e-3); tests/test_sampling_grids.py.
        """
        return log_delta_grid(self, n_steps, t_start, t_end)


def log_delta_grid(
    process: Process, n_steps: int, t_start: float | None = None, t_end: float | None = None
) -> np.ndarray:
    """``n_steps + 1`` decreasing times of ``process`` from ``t_start`` (default ``t_max``)
    to ``t_end`` (default ``t_min``), uniform in ``log delta`` (the log-SNR; the grid of
    DPM-Solver, Lu et al. 2022) down to :data:`SAMPLING_FLOOR`, then one last step to
    ``t_end`` when ``delta(t_end)`` lies below the floor (``delta = 0`` at the data end of a
    VP process: the samplers take that step as the final denoise).

    The floor matters: a grid that stays geometric (or Karras' ``rho = 7`` grid in sigma)
    all the way to ``delta = 0`` takes steps at ``delta ~ 1e-15`` where the reverse
    dynamics' rate ``~ 1/delta`` turns rounding into errors of order 1 (Heun on OU off by
    10 at 50 steps on two point masses)."""
    n_steps, t0, t1 = process.grid_ends(n_steps, t_start, t_end)
    d0, d1 = float(process.delta(t0)), float(process.delta(t1))
    last_step = d1 < SAMPLING_FLOOR < d0 and n_steps > 1
    lo = SAMPLING_FLOOR if last_step else d1
    if not lo > 0:  # a single step into delta = 0
        return np.array([t0, t1])
    k = n_steps - 1 if last_step else n_steps
    deltas = np.exp(np.linspace(math.log(d0), math.log(lo), k + 1))
    grid = np.asarray(process.time_of_delta(deltas), dtype=float)
    if last_step:
        grid = np.append(grid, t1)
    grid[0], grid[-1] = t0, t1
    return grid


@dataclass(frozen=True, repr=False)
class VPLinear(_UnitTime):
    """Continuous variance-preserving SDE with linear ``beta(s) = b0 + s (b1 - b0)``, s in [0, 1].

    ``log alpha(s) = -s^2 (b1 - b0)/4 - s b0/2`` and ``delta = expm1(s^2 (b1 - b0)/2 + s b0)``
    (Song et al. 2021, Eq. 11 and Appendix C; docs/theory.md section 0). Inverting the
    quadratic: ``s = 2 L / (b0 + sqrt(b0^2 + 2 (b1 - b0) L))`` with ``L = log(1 + delta)``.
    The generative time of Raya & Ambrogioni is ``1 - s``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    name = "vp-linear"

    def __post_init__(self):
        _check_increasing(self, "beta_min", "beta_max")

    def _half_integral(self, s):  # int_0^s beta = s b0 + s^2 (b1 - b0) / 2
        return s * self.beta_min + 0.5 * s * s * (self.beta_max - self.beta_min)

    def _log_alpha(self, t):
        return -0.5 * self._half_integral(t)

    def _dlog_alpha(self, t):
        return -0.5 * (self.beta_min + t * (self.beta_max - self.beta_min))

    def _delta(self, t):
        return np.expm1(self._half_integral(t))

    def _ddelta(self, t):
        return (self.beta_min + t * (self.beta_max - self.beta_min)) * np.exp(
            self._half_integral(t)
        )

    def _time_of_delta(self, delta):
        L = np.log1p(delta)
        b0, db = self.beta_min, self.beta_max - self.beta_min
        return 2 * L / (b0 + np.sqrt(b0 * b0 + 2 * db * L))


@dataclass(frozen=True, repr=False)
class VPCosine(Process):
    """Cosine schedule of Nichol & Dhariwal 2021 (Eq. 17), in continuous time t in [0, t_max].

    ``alpha(t) = cos(phi(t)) / cos(phi(0))`` with ``phi(t) = (t + s) / (1 + s) * pi / 2``, so
    ``abar = alpha^2`` is their ``f(t) / f(0)``. ``alpha(1) = 0`` (infinite delta), hence
    the default ``t_max = 0.999``. ``delta = (cos(phi0)/cos(phi))^2 - 1``.
    """

    s: float = 0.008
    t_end: float = 0.999
    name = "vp-cosine"

    def __post_init__(self):
        if not (0 <= self.s < 1):
            raise DomainError(f"s must lie in [0, 1); got {self.s!r}")
        if not (0 < self.t_end < 1):
            raise DomainError(f"t_end must lie in (0, 1); got {self.t_end!r}")

    @property
    def t_max(self) -> float:
        return float(self.t_end)

    def _phi(self, t):
        return (t + self.s) / (1 + self.s) * (np.pi / 2)

    @cached_property
    def _phi0(self) -> float:
        return self.s / (1 + self.s) * (np.pi / 2)

    def _log_alpha(self, t):
        return np.log(np.cos(self._phi(t)) / math.cos(self._phi0))

    def _dlog_alpha(self, t):
        return -np.tan(self._phi(t)) * (np.pi / 2) / (1 + self.s)

    def _delta(self, t):
        # (cos phi0 / cos phi)^2 - 1 = (cos phi0 - cos phi)(cos phi0 + cos phi) / cos^2 phi,
        # with cos phi0 - cos phi = 2 sin((phi + phi0)/2) sin((phi - phi0)/2): no cancellation.
        phi = self._phi(t)
        c, c0 = np.cos(phi), math.cos(self._phi0)
        diff = 2 * np.sin(0.5 * (phi + self._phi0)) * np.sin(0.5 * (phi - self._phi0))
        return diff * (c0 + c) / (c * c)

    def _ddelta(self, t):
        phi = self._phi(t)
        c0 = math.cos(self._phi0)
        return 2 * c0**2 * np.tan(phi) / np.cos(phi) ** 2 * (np.pi / 2) / (1 + self.s)

    def _time_of_delta(self, delta):
        # cos phi = c0 / sqrt(1 + delta)  <=>  tan^2 phi = (1 + delta)/c0^2 - 1; arctan keeps
        # the digits that arccos loses near phi0 at tiny delta.
        c0 = math.cos(self._phi0)
        tan2 = (delta + 1.0 - c0 * c0) / (c0 * c0)
        phi = np.arctan(np.sqrt(tan2))
        return phi * (1 + self.s) / (np.pi / 2) - self.s


@dataclass(frozen=True, repr=False)
class VE(_UnitTime):
    """Variance-exploding process with geometric noise ``sigma(t) = s_min (s_max / s_min)^t``.

    ``alpha = 1``, ``delta = sigma^2``, t in [0, 1] (Song et al. 2021, Eq. 9; docs/theory.md
    section 0 for Achilli et al.'s synthetic runs).
    ``t = log(sqrt(delta)/s_min) / log(s_max/s_min)``.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    name = "ve"

    def __post_init__(self):
        _check_increasing(self, "sigma_min", "sigma_max")

    @cached_property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def _log_alpha(self, t):
        return np.zeros_like(t)

    def _dlog_alpha(self, t):
        return np.zeros_like(t)

    def _delta(self, t):
        return np.exp(2 * (math.log(self.sigma_min) + t * self._log_ratio))

    def _ddelta(self, t):
        return 2 * self._log_ratio * self._delta(t)

    def _time_of_delta(self, delta):
        return (0.5 * np.log(delta) - math.log(self.sigma_min)) / self._log_ratio


@dataclass(frozen=True, repr=False)
class EDM(Process):
    """EDM process of Karras et al. 2022: ``alpha = 1``, ``sigma(t) = t``,
    t in [sigma_min, sigma_max].

    ``delta = t^2``, ``t = sqrt(delta)``. Its sampling grid is :meth:`time_grid` with the
    ``rho = 7`` spacing of Karras et al. 2022, Eq. 5.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    name = "edm"

    def __post_init__(self):
        _check_increasing(self, "sigma_min", "sigma_max")
        if not self.rho > 0:
            raise DomainError(f"rho must lie in (0, inf); got {self.rho!r}")

    @property
    def t_min(self) -> float:
        return float(self.sigma_min)

    @property
    def t_max(self) -> float:
        return float(self.sigma_max)

    def _log_alpha(self, t):
        return np.zeros_like(t)

    def _dlog_alpha(self, t):
        return np.zeros_like(t)

    def _delta(self, t):
        return t * t

    def _ddelta(self, t):
        return 2 * t

    def _time_of_delta(self, delta):
        return np.sqrt(delta)

    def time_grid(self, n_steps: int, t_start: float | None = None, t_end: float | None = None):
        """Karras et al. 2022, Eq. 5: ``t_i = (t0^(1/rho) + i/N (t1^(1/rho) - t0^(1/rho)))^rho``."""
        n_steps, t0, t1 = self.grid_ends(n_steps, t_start, t_end)
        r = 1.0 / self.rho
        u = np.linspace(0.0, 1.0, n_steps + 1)
        grid = (t0**r + u * (t1**r - t0**r)) ** self.rho
        grid[0], grid[-1] = t0, t1
        return grid


@dataclass(frozen=True, repr=False, eq=False, init=False)
class DDPM(Process):
    """Discrete DDPM (Ho et al. 2020) on any table of ``T`` steps, k = 0..T-1.

    ``abar_k = prod_{i<=k} (1 - beta_i)``, ``alpha_k = sqrt(abar_k)``, ``delta_k = 1/abar_k - 1``
    (computed as ``expm1(-log abar_k)``) and the OU time of step k is ``t_k = -log(abar_k)/2``
    (docs/theory.md section 0). The table comes from

    * ``DDPM(beta_start, beta_end, n_steps)``: Ho et al.'s linear ``beta_k`` (the default,
      1e-4 to 0.02 over 1000 steps); ``schedule="scaled-linear"``: ``beta_k`` linear in
      ``sqrt(beta)`` (Rombach et al. 2022, Stable Diffusion: 0.00085 to 0.012);
      ``schedule="cosine"``: Nichol & Dhariwal 2021, Eq. 17, ``beta`` capped at 0.999
      (diffusers' ``squaredcos_cap_v2``; ``beta_start``/``beta_end`` unused);
    * ``DDPM(betas=table)``: any ``beta_k`` in (0, 1] (1 only at the last step);
    * :meth:`from_alphas_cumprod`: any ``abar_k``, strictly decreasing in (0, 1) (0 allowed at
      the last step), taken exactly as given (a float32 table of diffusers keeps its values:
      every ``delta_k`` is that of the table, not of a float64 recomputation);
    * ``zero_terminal_snr=True``: the table rescaled to ``abar_{T-1} = 0`` (Lin et al. 2024,
      Algorithm 1), so ``delta_{T-1} = inf``.

    The process time is the step index, continued to real ``t in [0, T-1]`` by linear
    interpolation of ``log abar`` between steps (monotone, hence invertible): integer
    times give the discrete schedule exactly. On a table whose last ``abar`` is 0 the last
    interval interpolates ``abar`` itself linearly (``log abar`` would be ``-inf``
    throughout), so ``delta`` grows continuously to ``inf`` at ``T-1``; ``sigma`` and the
    diffusion coefficient stay finite there (``sigma_{T-1} = 1``). A VE-frame model cannot
    be queried at ``delta = inf``: the default sampling grid of such a table starts at
    step ``T-2``. :meth:`step_of_delta` and :meth:`step_of_ou_time` return integer steps
    with an explicit rounding rule.
    """

    beta_start: float
    beta_end: float
    n_steps: int
    schedule: str
    zero_terminal_snr: bool
    name = "ddpm"

    def __init__(
        self,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        n_steps: int = 1000,
        *,
        schedule: str = "linear",
        betas=None,
        zero_terminal_snr: bool = False,
        name: str | None = None,
    ):
        if not isinstance(zero_terminal_snr, bool):
            raise InputError(f"zero_terminal_snr must be True or False; got {zero_terminal_snr!r}")
        if betas is not None:
            if schedule not in ("linear", "betas") or (beta_start, beta_end, n_steps) != (
                1e-4,
                0.02,
                1000,
            ):
                raise InputError(
                    "betas is a whole table: give it alone (no schedule, beta_start, beta_end "
                    "or n_steps)"
                )
            log_abar, schedule = self._log_abar_of_betas(betas), "betas"
            n_steps = log_abar.shape[0]
        elif schedule == "alphas_cumprod":
            raise InputError("schedule='alphas_cumprod' is built by DDPM.from_alphas_cumprod")
        else:
            schedule = T.DIFFUSERS_SCHEDULES.get(schedule, schedule)
            n_steps = integer(n_steps, "n_steps", 2, 10**7)
            if schedule == "cosine":
                b = T.cosine_betas(n_steps)
            elif schedule in ("linear", "scaled-linear"):
                if not (0 < beta_start <= beta_end < 1):
                    raise DomainError(
                        f"need 0 < beta_start <= beta_end < 1; got {beta_start!r}, {beta_end!r}"
                    )
                if schedule == "linear":
                    b = np.linspace(beta_start, beta_end, n_steps)
                else:
                    b = np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), n_steps) ** 2
            else:
                raise InputError(
                    f"schedule must be one of 'linear', 'scaled-linear', 'cosine' (or diffusers' "
                    f"{', '.join(map(repr, T.DIFFUSERS_SCHEDULES))}); got {schedule!r}"
                )
            log_abar = np.cumsum(np.log1p(-b))
        if zero_terminal_snr:
            if not np.isfinite(log_abar[-1]):
                raise InputError("zero_terminal_snr: the table already ends at abar = 0")
            log_abar = T.rescale_zero_snr(log_abar)
        self._init(float(beta_start), float(beta_end), schedule, zero_terminal_snr, log_abar, name)

    def _init(self, b0, b1, schedule, zsnr, log_abar, name, abar=None) -> None:
        log_abar = np.array(log_abar, dtype=np.float64)
        log_abar.setflags(write=False)
        if abar is None:
            abar = np.exp(log_abar)
        abar = np.array(abar, dtype=np.float64)
        abar.setflags(write=False)
        for k, v in (("beta_start", b0), ("beta_end", b1), ("n_steps", int(log_abar.shape[0])),
                     ("schedule", schedule), ("zero_terminal_snr", zsnr),
                     ("log_alpha_bars", log_abar), ("alpha_bars", abar)):  # fmt: skip
            object.__setattr__(self, k, v)
        if name is None:
            name = "ddpm" + ("" if schedule == "linear" else f"-{schedule}")
            name += "-zero-snr" if zsnr else ""
        object.__setattr__(self, "name", str(name))

    @staticmethod
    def _log_abar_of_betas(betas) -> np.ndarray:
        b = finite_array(betas, "betas").reshape(-1) if np.ndim(betas) <= 1 else None
        if b is None or b.shape[0] < 2:
            raise InputError(f"betas must be a 1-D table of at least 2 steps; got {betas!r}")
        if np.any(b <= 0) or np.any(b[:-1] >= 1) or b[-1] > 1:
            raise DomainError(
                "betas must lie in (0, 1) (1 is allowed at the last step only: zero terminal "
                f"SNR); got values in [{b.min():.6g}, {b.max():.6g}]"
            )
        with np.errstate(divide="ignore"):
            return np.cumsum(np.log1p(-b))

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod, *, name: str | None = None) -> DDPM:
        """The DDPM process of a table ``abar_k`` (k = 0..T-1), taken as it is.

        ``alphas_cumprod``: any array-like (a torch tensor, float32 or float64) strictly
        decreasing in (0, 1); the last entry may be 0 (zero terminal SNR, ``delta = inf``).
        Its float32 values are widened to float64 exactly, so ``delta_of_step(k)`` is
        ``1/abar_k - 1`` of the table itself (to float64 rounding).
        """
        a = T.as_table(alphas_cumprod, "alphas_cumprod")
        if a.shape[0] < 2:
            raise InputError(f"alphas_cumprod must hold at least 2 steps; got {a.shape[0]}")
        if np.any(a[:-1] <= 0) or a[-1] < 0 or np.any(a >= 1) or np.any(np.diff(a) >= 0):
            raise DomainError(
                "alphas_cumprod must be strictly decreasing in (0, 1) (0 is allowed at the last "
                f"step only); got values in [{a.min():.6g}, {a.max():.6g}]"
            )
        self = object.__new__(cls)
        with np.errstate(divide="ignore"):
            log_abar = np.log(a)
        self._init(math.nan, math.nan, "alphas_cumprod", False, log_abar, name, abar=a)
        return self

    @classmethod
    def from_diffusers(cls, scheduler) -> DDPM:
        """The discrete process of a diffusers scheduler: its own ``alphas_cumprod`` table
        (:meth:`from_alphas_cumprod`), whatever its ``beta_schedule``."""
        abar = getattr(scheduler, "alphas_cumprod", None)
        if abar is None:
            raise InputError(
                f"scheduler must have .alphas_cumprod (a diffusers DDPM-family scheduler); got "
                f"{type(scheduler).__name__}"
            )
        return cls.from_alphas_cumprod(abar)

    # -- equality, hashing, repr (tables compare by value) -----------------------------
    def _key(self) -> bytes:  # the table decides the process; its name does not
        return self.log_alpha_bars.tobytes()

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        if self.schedule in ("betas", "alphas_cumprod"):
            digest = hashlib.sha256(self.log_alpha_bars.tobytes()).hexdigest()[:12]
            return f"DDPM({self.schedule}=<{self.n_steps} steps, sha256 {digest}>)"
        if self.schedule == "cosine":
            args = f"n_steps={self.n_steps}, schedule='cosine'"
        else:
            args = f"beta_start={self.beta_start!r}, beta_end={self.beta_end!r}, "
            args += f"n_steps={self.n_steps}"
            if self.schedule != "linear":
                args += f", schedule={self.schedule!r}"
        return f"DDPM({args}{', zero_terminal_snr=True' if self.zero_terminal_snr else ''})"

    # -- the discrete schedule ----------------------------------------------------------
    @cached_property
    def betas(self) -> np.ndarray:
        """``beta_k = 1 - abar_k / abar_{k-1}`` (``abar_{-1} = 1``), k = 0..T-1."""
        la = np.concatenate([[0.0], self.log_alpha_bars])
        b = -np.expm1(np.diff(la))
        b.setflags(write=False)
        return b

    @cached_property
    def deltas(self) -> np.ndarray:
        """``delta_k = 1/abar_k - 1``: ``(1 - abar_k)/abar_k`` of a given ``abar`` table (2 ulps),
        else ``expm1(-log abar_k)``."""
        if self.schedule == "alphas_cumprod":
            a = self.alpha_bars
            with np.errstate(divide="ignore"):
                d = (1.0 - a) / a
        else:
            d = np.expm1(-self.log_alpha_bars)
        d.setflags(write=False)
        return d

    @cached_property
    def ou_times(self) -> np.ndarray:
        """``t_k = -log(abar_k)/2``, the OU time of each step (horizon about 5.06 by default)."""
        t = -0.5 * self.log_alpha_bars
        t.setflags(write=False)
        return t

    @property
    def delta_min(self) -> float:
        """``delta_0`` of the table."""
        return float(self.deltas[0])

    @property
    def delta_max(self) -> float:
        """``delta_{T-1}`` of the table (``inf`` at zero terminal SNR)."""
        return float(self.deltas[-1])

    @property
    def last_finite_step(self) -> int:
        """The last step with a finite ``delta`` (``T-2`` on a zero-terminal-SNR table)."""
        return self.n_steps - 1 if np.isfinite(self.log_alpha_bars[-1]) else self.n_steps - 2

    def beta_tilde(self, k):
        """Posterior variance ``beta~_k = (1 - abar_{k-1}) beta_k / (1 - abar_k)``
        (Ho et al. Eq. 7), with ``abar_{-1} = 1`` so ``beta~_0 = 0``."""
        k = np.asarray(self._check_step(k, "k"))
        prev = np.where(k > 0, self.alpha_bars[np.maximum(k - 1, 0)], 1.0)
        return _out((1 - prev) * self.betas[k] / -np.expm1(self.log_alpha_bars[k]))

    # -- Process interface (continuous step index) --------------------------------------
    @property
    def t_max(self) -> float:
        return float(self.n_steps - 1)

    def _la(self, t):
        return T.log_abar_at(self.log_alpha_bars, t)

    def _dla(self, t):
        return T.dlog_abar_at(self.log_alpha_bars, t)

    def _log_alpha(self, t):
        return 0.5 * self._la(t)

    def _dlog_alpha(self, t):
        return 0.5 * self._dla(t)

    def _delta(self, t):
        return np.expm1(-self._la(t))

    def _ddelta(self, t):
        with np.errstate(over="ignore"):
            return -self._dla(t) * np.exp(-self._la(t))

    def _time_of_delta(self, delta):
        return T.step_of_log_abar(self.log_alpha_bars, -np.log1p(delta))

    def sigma(self, t):
        """Noise scale ``sigma(t) = sqrt(1 - abar(t))`` (finite at ``abar = 0``)."""
        return _out(np.sqrt(-np.expm1(self._la(self.check_time(t)))))

    def diffusion(self, t):
        """``g(t) = sqrt(-d log abar / dt)`` (``= alpha^2 d delta/dt``, finite at ``abar = 0``)."""
        return _out(np.sqrt(-self._dla(self.check_time(t))))

    # -- integer steps ------------------------------------------------------------------
    def _check_step(self, k, name: str):
        arr = np.asarray(k)
        if arr.dtype.kind not in "iu":
            f = finite_array(arr, name)
            if np.any(f != np.round(f)):
                raise InputError(f"{name} must be an integer step; got {k!r}")
            arr = f.astype(int)
        if np.any(arr < 0) or np.any(arr > self.n_steps - 1):
            raise DomainError(f"{name} must lie in [0, {self.n_steps - 1}]; got {k!r}")
        return arr

    def step_of_delta(self, delta, rounding: Rounding = "nearest"):
        """The DDPM step whose ``delta_k`` matches ``delta``.

        ``rounding='floor'``: the last step with ``delta_k <= delta`` (the less noisy side);
        ``'ceil'``: the first step with ``delta_k >= delta``; ``'nearest'``: the nearest
        step in the interpolated step index. Floor and ceil search the table itself, so the
        bracket ``deltas[floor] <= delta <= deltas[ceil]`` holds exactly.
        """
        d = self.check_delta(delta)
        if rounding == "floor":
            k = np.searchsorted(self.deltas, d, side="right") - 1
        elif rounding == "ceil":
            k = np.searchsorted(self.deltas, d, side="left")
        elif rounding == "nearest":
            k = np.rint(self._time_of_delta(d))
        else:
            raise InputError(f"rounding must be 'nearest', 'floor' or 'ceil'; got {rounding!r}")
        k = np.clip(k, 0, self.n_steps - 1).astype(int)
        return int(k) if k.ndim == 0 else k

    def step_of_ou_time(self, t_ou, rounding: Rounding = "nearest"):
        """The DDPM step at OU time ``t_ou`` (``delta = e^{2 t} - 1``), rounded as in
        :meth:`step_of_delta`."""
        t = finite_array(t_ou, "t_ou")
        if np.any(t < 0):
            raise DomainError(f"t_ou must lie in [0, inf); got {t_ou!r}")
        return self.step_of_delta(np.expm1(2 * t), rounding)

    def ou_time_of_step(self, k):
        """OU time ``-log(abar_k)/2`` of integer step ``k``."""
        return _out(self.ou_times[self._check_step(k, "k")])

    def delta_of_step(self, k):
        """``delta_k = 1/abar_k - 1`` of integer step ``k``."""
        return _out(self.deltas[self._check_step(k, "k")])

    def time_grid(self, n_steps: int, t_start: float | None = None, t_end: float | None = None):
        """Decreasing integer-step grid (``np.linspace`` rounded, duplicates removed), e.g.
        the strided DDIM schedule. ``n_steps = T - 1`` gives every step."""
        if t_start is None and self.last_finite_step < self.t_max:
            t_start = float(self.last_finite_step)  # delta = inf at T-1: no model there
        grid = super().time_grid(n_steps, t_start, t_end)
        steps = np.unique(np.rint(grid).astype(int))[::-1]
        return steps.astype(float)


SAMPLING_FLOOR = 4e-6
"""Smallest ``delta`` of the log-spaced part of :meth:`Process.sampling_grid`: EDM's
``sigma_min = 0.002`` squared (Karras et al. 2022, Sec. 5)."""

PRESETS: dict[str, Process] = {
    "ou": OU(),
    "vp-linear": VPLinear(),
    "vp-cosine": VPCosine(),
    "ve": VE(),
    "edm": EDM(),
    "ddpm": DDPM(),
    "ddpm-scaled-linear": DDPM(0.00085, 0.012, 1000, schedule="scaled-linear"),
    "ddpm-cosine": DDPM(n_steps=1000, schedule="cosine"),
    "ddpm-zero-snr": DDPM(
        0.00085, 0.012, 1000, schedule="scaled-linear", zero_terminal_snr=True, name="ddpm-zero-snr"
    ),
}
"""The named processes with their default parameters: the one registry of process names
(``physdiff convert``, every ``--process`` of the CLI). The DDPM tables: ``ddpm`` (Ho et
al. 2020, linear 1e-4..0.02), ``ddpm-scaled-linear`` (Stable Diffusion's 0.00085..0.012,
linear in ``sqrt(beta)``), ``ddpm-cosine`` (Nichol & Dhariwal 2021, diffusers'
``squaredcos_cap_v2``) and ``ddpm-zero-snr`` (the scaled-linear table rescaled to zero
terminal SNR, Lin et al. 2024; ``delta = inf`` at its last step), 1000 steps each."""


def get_process(process: str | Process) -> Process:
    """A :class:`Process` from an instance or one of the names in :data:`PRESETS`."""
    if isinstance(process, Process):
        return process
    try:
        return PRESETS[str(process).lower()]
    except KeyError:
        raise InputError(
            f"process must be a Process or one of {sorted(PRESETS)}; got {process!r}"
        ) from None


@dataclass(frozen=True)
class ProcessTime:
    """Where a noise-to-signal variance falls in one process."""

    process: str
    time: float | None
    step: int | None = None
    ou_time: float | None = None
    note: str = field(default="")


def times_of_delta(delta: float, processes=None) -> dict[str, ProcessTime]:
    """The time at which each process reaches ``delta`` (and the DDPM step, nearest).

    One call for every named process; a process whose range does not reach ``delta``
    gets ``time=None`` and a note saying its range.
    """
    d = float(finite_array(delta, "delta"))
    if not d > 0:
        raise DomainError(f"delta must lie in (0, inf); got {d!r}")
    out: dict[str, ProcessTime] = {}
    for name, proc in (processes or PRESETS).items():
        proc = get_process(proc)
        try:
            t = proc.time_of_delta(d)
        except DomainError:
            out[name] = ProcessTime(
                name,
                None,
                note=f"outside the range [{proc.delta_min:.4g}, {proc.delta_max:.4g}]",
            )
            continue
        step = proc.step_of_delta(d, "nearest") if isinstance(proc, DDPM) else None
        out[name] = ProcessTime(name, float(t), step, ou_time=float(0.5 * math.log1p(d)))
    return out
