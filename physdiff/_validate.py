"""Small argument checks shared by every public function.

They return the validated value as an array of the right dtype so that callers write
``y = as_points(y, d, "y")`` once at their boundary and work on clean arrays after it.
"""

from __future__ import annotations

import numpy as np

from .errors import DomainError, InputError, ShapeError

FloatArray = np.ndarray


def finite_array(x, name: str, dtype=np.float64) -> np.ndarray:
    """``x`` as an array of ``dtype``, refusing NaN and inf."""
    arr = np.asarray(x, dtype=dtype)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must be finite (no NaN or inf); got {_summary(arr)}")
    return arr


def as_points(x, d: int, name: str = "y", dtype=None) -> np.ndarray:
    """A batch of points of shape ``(n, d)``; a single point of shape ``(d,)`` is refused.

    The dtype is kept when it is float32 or float64 (float32 runs the fast kernels in
    single precision); anything else becomes float64.
    """
    arr = np.asarray(x)
    if dtype is None:
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    arr = finite_array(arr, name, dtype)
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ShapeError(
            f"{name} must have shape (n, {d}) (a batch of points in R^{d}); got shape {arr.shape}"
        )
    return arr


def positive(x, name: str, *, allow_zero: bool = False) -> np.ndarray:
    """A finite positive number or array (``> 0``, or ``>= 0`` with ``allow_zero``)."""
    arr = finite_array(x, name)
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        rng = "[0, inf)" if allow_zero else "(0, inf)"
        raise DomainError(f"{name} must lie in {rng}; got {_summary(arr)}")
    return arr


def delta_for_batch(delta, n: int, name: str = "delta") -> np.ndarray:
    """The noise-to-signal variance as a column ``(n, 1)`` (a scalar or one per point)."""
    arr = positive(delta, name)
    if arr.ndim == 0:
        return np.full((n, 1), float(arr))
    if arr.ndim == 1 and arr.shape[0] == n:
        return arr.reshape(n, 1)
    raise ShapeError(f"{name} must be a scalar or have shape ({n},); got shape {arr.shape}")


def integer(x, name: str, lo: int, hi: int) -> int:
    """An integer in ``[lo, hi]``."""
    if isinstance(x, bool) or not float(x).is_integer():
        raise InputError(f"{name} must be an integer; got {x!r}")
    v = int(x)
    if not lo <= v <= hi:
        raise DomainError(f"{name} must lie in [{lo}, {hi}]; got {v}")
    return v


def _summary(arr: np.ndarray) -> str:
    if arr.ndim == 0 or arr.size == 1:
        return repr(arr.reshape(-1)[0].item()) if arr.size else "an empty array"
    bad = ~np.isfinite(arr)
    if bad.any():
        return f"{int(bad.sum())} non-finite value(s) in an array of shape {arr.shape}"
    return f"values in [{arr.min():.6g}, {arr.max():.6g}] (shape {arr.shape})"
