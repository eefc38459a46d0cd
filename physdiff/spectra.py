"""Covariance spectra as the models of the memorisation formulas (docs/theory.md section 3):
built from a dimension and a variance (isotropic, spiked or on a linear manifold) or given
as eigenvalues, and summarised (:class:`SpectrumSummary`).

Every formula of :mod:`physdiff.memorization` that takes a ``spectrum`` drops its zero
eigenvalues (normal directions); rounding negatives of ``eigvalsh`` count as zero
(:func:`physdiff._validate.covariance_spectrum`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import covariance_spectrum
from .errors import DomainError, InputError

__all__ = ["SpectrumSummary", "spectrum_summary", "model_spectrum"]


@dataclass(frozen=True)
class SpectrumSummary:
    """A covariance spectrum in numbers: ``d`` eigenvalues, ``intrinsic_dim`` of them
    positive, their ``trace``, ``sum_of_squares``, largest, smallest positive and geometric
    mean, and whether the positive ones are all equal (``isotropic``)."""

    d: int
    intrinsic_dim: int
    trace: float
    sum_of_squares: float
    top_eigenvalue: float
    smallest_positive: float
    geometric_mean_positive: float
    isotropic: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def spectrum_summary(spectrum) -> SpectrumSummary:
    """The :class:`SpectrumSummary` of a covariance spectrum (rounding negatives are 0)."""
    spec = covariance_spectrum(spectrum, "spectrum")
    pos = spec[spec > 0]
    if pos.size == 0:
        raise DomainError("spectrum: no positive eigenvalue (the data are one point)")
    with np.errstate(over="ignore"):  # a sum of squares beyond a float is inf, said as such
        s2 = float(np.sum(pos * pos))
    return SpectrumSummary(
        int(spec.size),
        int(pos.size),
        float(pos.sum()),
        s2,
        float(pos.max()),
        float(pos.min()),
        float(np.exp(np.mean(np.log(pos)))),
        bool(pos.max() == pos.min()),
    )


def model_spectrum(
    *,
    d: int | None = None,
    variance: float | None = None,
    top_eigenvalue: float | None = None,
    intrinsic_dim: int | None = None,
    spectrum=None,
) -> tuple[np.ndarray, dict]:
    """A covariance spectrum ``(D,)`` and its description (a JSON-ready dict).

    Either ``spectrum`` (eigenvalues, at least one positive), or ``d`` directions of
    ``variance`` (default 1) of which only the first ``intrinsic_dim`` (default ``d``) are
    non-zero, the first one with ``top_eigenvalue`` where given (a spiked direction).
    Raises :class:`~physdiff.errors.InputError` naming the argument.
    """
    if spectrum is not None:
        spec = covariance_spectrum(spectrum, "spectrum")  # checked first, then the others
        for name, v in (
            ("d", d),
            ("variance", variance),
            ("top_eigenvalue", top_eigenvalue),
            ("intrinsic_dim", intrinsic_dim),
        ):
            if v is not None:
                raise InputError(
                    f"{name}: goes without spectrum (the spectrum is the whole model, its "
                    "length is d)"
                )
        if not np.any(spec > 0):
            raise DomainError("spectrum: no positive eigenvalue (the data are one point)")
        return spec, {"spectrum_size": int(spec.size)}
    if d is None:
        raise InputError("d: required (the ambient dimension), or give spectrum")
    if isinstance(d, bool) or not float(d).is_integer() or not 1 <= d <= 10**7:
        raise DomainError(f"d: must be an integer in [1, 10^7]; got {d!r}")
    d = int(d)
    s2 = 1.0 if variance is None else float(variance)
    if not (math.isfinite(s2) and s2 > 0):
        raise DomainError(f"variance: must lie in (0, inf); got {variance!r}")
    m = d if intrinsic_dim is None else intrinsic_dim
    if isinstance(m, bool) or not float(m).is_integer() or not 1 <= m <= d:
        raise DomainError(f"intrinsic_dim: must be an integer in [1, d = {d}]; got {m!r}")
    if top_eigenvalue is not None and not (math.isfinite(top_eigenvalue) and top_eigenvalue >= 0):
        raise DomainError(f"top_eigenvalue: must lie in [0, inf); got {top_eigenvalue!r}")
    spec = np.zeros(d)
    spec[: int(m)] = s2
    source: dict = {"d": d, "variance": s2}
    if intrinsic_dim is not None:
        source["intrinsic_dim"] = int(m)
    if top_eigenvalue is not None:
        spec[0] = float(top_eigenvalue)
        source["top_eigenvalue"] = float(top_eigenvalue)
        if not np.any(spec > 0):
            raise DomainError(
                "top_eigenvalue: 0 on the only data direction leaves no variance at all"
            )
    return spec, source
