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


def positive_grid(x, name: str) -> np.ndarray:
    """A non-empty 1-D grid of finite positive numbers (a scalar counts as one value)."""
    arr = positive(np.atleast_1d(x), name)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be a number or a 1-D array; got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} must hold at least one value; got an empty array")
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


SPECTRUM_ROUNDING = 8.0
"""Negative eigenvalues down to ``-SPECTRUM_ROUNDING * k * eps * max|lambda|`` are rounding
(:func:`covariance_spectrum`)."""


def spectrum_rounding_tolerance(spectrum: np.ndarray) -> float:
    """``8 k eps max_i |lambda_i|``: how far below 0 an eigenvalue of a positive
    semi-definite matrix may come out of floating-point rounding (``k`` entries, ``eps`` the
    float64 machine epsilon). See :func:`covariance_spectrum`."""
    arr = np.asarray(spectrum, dtype=np.float64)
    if arr.size == 0:
        return 0.0
    eps = float(np.finfo(np.float64).eps)
    return SPECTRUM_ROUNDING * arr.size * eps * float(np.max(np.abs(arr)))


def covariance_spectrum(x, name: str) -> np.ndarray:
    """The eigenvalues of a covariance (a positive semi-definite matrix) as a 1-D float64
    array, with the entries that are zero up to rounding set to exactly 0.

    The bound. ``numpy.linalg.eigvalsh`` (LAPACK ``syevd``) is backward stable: the computed
    eigenvalues are the exact ones of ``C + E`` with ``||E||_2 <= c k eps ||C||_2`` for a
    ``k x k`` matrix and a modest constant ``c`` (Householder tridiagonalisation, then
    divide and conquer), so by Weyl's inequality each one is off by at most that much. The
    zero eigenvalues of a rank-deficient covariance therefore come out as numbers like
    ``-1e-17``, of either sign; measured on rank-one outer products and ``np.cov`` of
    ``r < k`` samples, ``k = 3..2000``: at most ``0.37 k eps max|lambda|``. Entries in
    ``[-8 k eps max|lambda|, 8 k eps max|lambda|]`` (a margin of about 20 over that) are
    taken as rounding and returned as ``0.0``: a normal direction, which every formula here
    drops. The positive side matters as much as the negative: a rank-5 covariance in R^40
    otherwise counts its rounding as 17 more directions (an intrinsic dimension of 22, and a
    wrong ``alpha_n = log(n)/d``); such a direction's variance is below what float64 resolves
    next to the largest. A more negative
    entry is no rounding of a covariance and raises :class:`~physdiff.errors.DomainError`
    naming ``name`` and the range; so does a negative entry with nothing to be rounding of
    (a spectrum of ``[-1e-15]`` alone: the bound scales with the largest ``|lambda|``).
    Empty input is an :class:`~physdiff.errors.InputError`, a matrix (more than
    one axis longer than 1) a :class:`~physdiff.errors.ShapeError` (a matrix is not its
    spectrum; a row or a column is read as one); NaN and inf are
    refused.
    """
    lam = finite_array(x, name)
    if sum(k > 1 for k in lam.shape) > 1:
        # a matrix here is almost always a covariance passed where its eigenvalues go;
        # flattening it would read its entries as eigenvalues (a row or a column is fine)
        raise ShapeError(
            f"{name} must be a number or a 1-D array of eigenvalues; got shape {lam.shape} "
            "(for a covariance matrix pass numpy.linalg.eigvalsh(cov))"
        )
    lam = lam.reshape(-1)
    if lam.size == 0:
        raise InputError(f"{name} must hold at least one eigenvalue")
    tol = spectrum_rounding_tolerance(lam)
    if np.any(lam < 0):
        bad = lam < -tol
        if np.any(bad):
            raise DomainError(
                f"{name}: a covariance spectrum must be >= 0, up to rounding: it must lie in "
                f"[-{tol:.3g}, inf) (-8 k eps max|lambda| with k = {lam.size}; entries in "
                f"that margin count as 0); {int(bad.sum())} entries are negative beyond it "
                f"(min {lam.min():.6g})"
            )
    return np.where(np.abs(lam) <= tol, 0.0, lam)


def _summary(arr: np.ndarray) -> str:
    if arr.ndim == 0 or arr.size == 1:
        return repr(arr.reshape(-1)[0].item()) if arr.size else "an empty array"
    bad = ~np.isfinite(arr)
    if bad.any():
        return f"{int(bad.sum())} non-finite value(s) in an array of shape {arr.shape}"
    return f"values in [{arr.min():.6g}, {arr.max():.6g}] (shape {arr.shape})"
