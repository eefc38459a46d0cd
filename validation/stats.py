"""Monte Carlo estimators with their standard errors.

* Ratio of means ``R = sum_i a_i / sum_i b_i`` (i.i.d. pairs): first-order (delta-method)
  standard error ``se(R)^2 = Var(a - R b) / (n mean(b)^2)`` (Cochran, "Sampling
  Techniques", 3rd ed. 1977, Eq. 6.9).
* Binomial fraction ``p = k / m``: the Agresti-Coull standard error,
  ``p~ = (k + z^2/2) / (m + z^2)``, ``se = sqrt(p~ (1 - p~) / (m + z^2))`` with ``z = 2``
  (Agresti & Coull 1998, "Approximate is better than 'exact' for interval estimation of
  binomial proportions"), which stays positive at ``k = 0`` and ``k = m``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ratio_of_means", "binomial_fraction", "difference"]


def ratio_of_means(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(R, se)`` for ``R = mean(a) / mean(b)`` over paired samples (module docstring)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"a and b must be paired samples of size >= 2; got {a.shape}, {b.shape}")
    mb = b.mean()
    if not mb > 0:
        raise ValueError(f"mean(b) must be positive; got {mb!r}")
    r = a.mean() / mb
    se = np.std(a - r * b, ddof=1) / (np.sqrt(a.size) * mb)
    return float(r), float(se)


def binomial_fraction(k: int, m: int, z: float = 2.0) -> tuple[float, float]:
    """``(k / m, se)`` with the Agresti-Coull standard error (module docstring)."""
    if m < 1 or not 0 <= k <= m:
        raise ValueError(f"need 0 <= k <= m and m >= 1; got k={k}, m={m}")
    mt = m + z * z
    pt = (k + z * z / 2) / mt
    return k / m, float(np.sqrt(pt * (1 - pt) / mt))


def difference(se1: float, se2: float) -> float:
    """Standard error of a difference of independent estimates, ``sqrt(se1^2 + se2^2)``."""
    return float(np.hypot(se1, se2))
