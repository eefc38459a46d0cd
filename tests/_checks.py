"""Checks shared by several test files (imported as ``tests._checks``)."""

from __future__ import annotations

import numpy as np


def fd_gradient(f, y: np.ndarray, h: float) -> np.ndarray:
    """Central differences of ``f`` (``(n, d) -> (n, ...)``) at the rows of ``y`` with step
    ``h``; the derivative axis is last: ``(n, ..., d)``."""
    return np.stack([(f(y + h * e) - f(y - h * e)) / (2 * h) for e in np.eye(y.shape[1])], -1)


def assert_is_gradient(value: np.ndarray, f, y: np.ndarray, h: float, rtol: float = 1e-5) -> None:
    """``value`` equals the central-difference gradient of ``f`` at ``y``: within ``rtol``
    relative, and ``rtol (1 + max |value|)`` absolute (the differences' truncation and
    rounding error scale with the largest entry)."""
    fd = fd_gradient(f, y, h)
    np.testing.assert_allclose(value, fd, rtol=rtol, atol=rtol * (1 + np.abs(value).max()))
