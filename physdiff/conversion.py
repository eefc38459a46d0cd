"""One point of the noise schedule in every process: ``physdiff convert``.

Every process is compared through the noise-to-signal variance ``delta = sigma^2/alpha^2 =
1/SNR`` (the VE frame, docs/theory.md section 1): a ``delta``, a time of one process or a
DDPM step becomes the time, ``alpha``, ``sigma`` and log-SNR of each other process (and the
integer DDPM steps around it). :func:`physdiff.processes.times_of_delta` is the short form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import DomainError, InputError
from .processes import DDPM, PRESETS, Process

__all__ = ["Conversion", "convert"]


@dataclass(frozen=True)
class Conversion:
    """A noise level ``delta`` and where it falls in each target process.

    ``source`` says how it was given (``{"delta": d}``, ``{"t": t, "from": name}`` or
    ``{"step": k, "from": "ddpm"}``); ``targets`` maps each process name to a JSON-ready
    dict: its ``spec``, ``t_range``, ``delta_range`` and, where its range reaches
    ``delta``, ``time``, ``delta``, ``alpha``, ``sigma``, ``log_snr`` (and for DDPM the
    OU time and the floor, nearest and ceil integer steps); otherwise ``None`` with a
    ``note``. ``log_snr = -log delta`` is ``None`` (with a ``note``) at ``delta = 0``."""

    source: dict
    delta: float
    targets: dict
    note: str = ""

    @property
    def log_snr(self) -> float | None:
        return -math.log(self.delta) + 0.0 if self.delta > 0 else None

    @property
    def ou_time(self) -> float:
        """``t = log(1 + delta)/2``."""
        return 0.5 * math.log1p(self.delta)

    def to_dict(self) -> dict:
        out = {
            "source": dict(self.source),
            "delta": self.delta,
            "log_snr": self.log_snr,
            "ou_time": self.ou_time,
            "targets": {k: dict(v) for k, v in self.targets.items()},
        }
        if self.note:
            out["note"] = self.note
        return out


def convert(
    *,
    delta: float | None = None,
    t: float | None = None,
    from_: str | None = None,
    step: float | None = None,
    to=("all",),
) -> Conversion:
    """One point of the noise schedule, ``delta = sigma^2/alpha^2 = 1/SNR``, in every
    process of ``to`` (names of :data:`PRESETS`, or ``"all"``).

    Exactly one source: ``delta`` (> 0); a time ``t`` of the process ``from_``; or an
    integer DDPM ``step``. A target whose range does not reach ``delta`` gets
    ``time = None`` and a note. Raises :class:`~physdiff.errors.InputError` naming the
    argument on bad input.
    """
    if sum(v is not None for v in (delta, t, step)) != 1:
        raise InputError("delta: give exactly one of delta, t (with from_) or step")
    if t is None and from_ is not None:
        raise InputError("from_: goes with t (it names the process t belongs to)")
    if delta is not None:
        d = float(delta)
        if not (math.isfinite(d) and d > 0):
            raise DomainError(f"delta: must lie in (0, inf); got {delta!r}")
        source: dict = {"delta": d}
    elif step is not None:
        ddpm = PRESETS["ddpm"]
        assert isinstance(ddpm, DDPM)
        k = float(step)
        if not k.is_integer():
            raise InputError(
                f"step: must be an integer DDPM step; got {step!r} (an interpolated step is "
                "the time t of from_ ddpm)"
            )
        if not 0 <= k <= ddpm.n_steps - 1:
            raise DomainError(f"step: must lie in [0, {ddpm.n_steps - 1}]; got {int(k)}")
        d = float(ddpm.delta_of_step(int(k)))
        source = {"step": int(k), "from": "ddpm"}
    else:
        if from_ is None:
            raise InputError("t: needs from_, the process the time belongs to")
        if from_ not in PRESETS:
            raise InputError(f"from_: unknown process {from_!r}; choose from {', '.join(PRESETS)}")
        proc = PRESETS[from_]
        try:
            d = float(proc.delta(t))
        except DomainError:
            raise DomainError(
                f"t: must lie in [{proc.t_min:g}, {proc.t_max:g}] for {from_}; got {t!r}"
            ) from None
        if d == math.inf:
            raise DomainError(
                f"t: delta({t!r}) = inf in {from_} (zero terminal SNR); no process has a time "
                "there: pick an earlier t"
            )
        source = {"t": float(t), "from": from_}
    names = list(PRESETS) if "all" in to else list(dict.fromkeys(to))
    for n in names:
        if n not in PRESETS:
            raise InputError(f"to: unknown process {n!r}; choose from all, {', '.join(PRESETS)}")
    note = "delta = 0 (the data end): log-SNR is +inf, given as null" if d == 0 else ""
    return Conversion(source, d, {n: _conversion_target(n, PRESETS[n], d) for n in names}, note)


def _conversion_target(name: str, proc: Process, d: float) -> dict:
    """Where ``d`` falls in ``proc`` (a :class:`Conversion` target)."""
    entry: dict = {
        "process": name,
        "spec": repr(proc),
        "t_range": [proc.t_min, proc.t_max],
        "delta_range": [proc.delta_min, proc.delta_max],
    }
    try:
        # time_of_delta can land a rounding error outside [t_min, t_max] (VPCosine at
        # delta = 0 gives -2e-15); clip so that the schedule functions accept it
        t = min(max(float(proc.time_of_delta(d)), proc.t_min), proc.t_max)
    except DomainError:
        entry.update(
            dict.fromkeys(("time", "delta", "alpha", "sigma", "log_snr")),
            note=f"delta = {d:.6g} is outside the range [{proc.delta_min:.6g}, "
            f"{proc.delta_max:.6g}] that {name} reaches for t in [{proc.t_min:g}, {proc.t_max:g}]",
        )
        if isinstance(proc, DDPM):
            entry["steps"] = None
        return entry
    ls = float(proc.log_snr(t)) + 0.0  # + 0.0: no "-0.0"
    entry.update(
        time=t,
        delta=float(proc.delta(t)),
        alpha=float(proc.alpha(t)),
        sigma=float(proc.sigma(t)),
        log_snr=ls if math.isfinite(ls) else None,
    )
    if not math.isfinite(ls):
        entry["note"] = "log-SNR is +inf at delta = 0 (given as null)"
    if isinstance(proc, DDPM):
        entry["ou_time"] = 0.5 * math.log1p(d)
        steps = {}
        for rounding in ("nearest", "floor", "ceil"):
            k = int(proc.step_of_delta(d, rounding))
            steps[rounding] = {
                "step": k,
                "delta": float(proc.deltas[k]),
                "ou_time": float(proc.ou_times[k]),
                "alpha_bar": float(proc.alpha_bars[k]),
            }
        entry["steps"] = steps
    return entry
