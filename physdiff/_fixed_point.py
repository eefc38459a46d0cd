"""Fixed points of the generative drift in the VE frame: the drift field, its stability
matrix and Newton's method on it (re-exported by :mod:`physdiff.symmetry`, which uses them
for symmetry breaking; Raya & Ambrogioni 2023, Biroli et al. 2024: a fixed point of
``score(y) - c y`` loses stability where the symmetry breaks)."""

from __future__ import annotations

import warnings

import numpy as np

from ._validate import as_points, integer, positive
from .ensembles.base import ScoreModel
from .errors import ConvergenceWarning

__all__ = ["drift_field", "stability_matrix", "FixedPoint", "find_fixed_point", "STEP_TOL"]

STEP_TOL = 1e-3
"""Largest relative Newton step from a converged fixed point (:func:`find_fixed_point`)."""


def drift_field(model: ScoreModel, y, delta, c=0.0) -> np.ndarray:
    """``score(y) - c y``: proportional to the generative drift in the VE frame."""
    y = np.asarray(y, dtype=float)
    return model.score(y, delta) - np.reshape(c, (-1, 1)) * y


def stability_matrix(model: ScoreModel, y, delta, c=0.0) -> np.ndarray:
    """``J(y) - c I``; a fixed point is stable when all its eigenvalues are negative."""
    J = model.score_jacobian(y, delta)
    return J - np.reshape(c, (-1, 1, 1)) * np.eye(J.shape[-1])


def _stability_eigenvalues(A: np.ndarray) -> np.ndarray:
    """Sorted real parts of the eigenvalues of a stability matrix (a network's Jacobian
    need not be symmetric, so ``eigvalsh``, which reads one triangle, would be wrong)."""
    if np.allclose(A, A.T, rtol=1e-10, atol=1e-12 * (1 + np.abs(A).max())):
        return np.linalg.eigvalsh(0.5 * (A + A.T))
    return np.sort(np.linalg.eigvals(A).real)


class FixedPoint(tuple):
    """``(y, eigenvalues)`` of :func:`find_fixed_point` (unpacks as that pair), with
    ``converged`` (see :func:`find_fixed_point`), ``residual`` (``|score(y) - c y|`` at ``y``),
    ``threshold`` (the residual it had to reach) and ``n_iter`` (Newton steps taken)."""

    y: np.ndarray
    eigenvalues: np.ndarray
    converged: bool
    residual: float
    threshold: float
    n_iter: int

    def __new__(cls, y, eigenvalues, converged, residual, threshold, n_iter):
        self = super().__new__(cls, (y, eigenvalues))
        self.y, self.eigenvalues = y, eigenvalues
        self.converged, self.residual = bool(converged), float(residual)
        self.threshold, self.n_iter = float(threshold), int(n_iter)
        return self


def find_fixed_point(
    model: ScoreModel,
    y0,
    delta: float,
    c: float = 0.0,
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
    warn: bool = True,
) -> FixedPoint:
    """Newton's method on ``score(y) - c y = 0`` from ``y0`` (shape ``(d,)``), with a
    backtracking line search on the residual norm. Returns a :class:`FixedPoint`, which
    unpacks as ``(y*, eigenvalues of J - c I)`` and says whether it ``converged``: the
    residual reached ``tol (1 + |y|) / delta`` within ``max_iter`` steps, and the search did
    not run off: an answer more than 10 times farther out than ``y0`` (``|y| > 10 (1 +
    |y0|)``) must have a next Newton step of at most ``STEP_TOL (1 + |y|)`` (``1e-3``; a
    fixed point's is ``~ tol |y|``, a branch running off to infinity, whose residual falls
    as ``|y|`` grows and so passes the relative residual test, has steps of order ``|y|``;
    near ``y0`` the step is not used, since at a bifurcation the Jacobian is singular and
    the step of a converged point is rounding divided by zero). An unconverged
    answer (the iteration ran out of steps, or the line search found no decrease: on a
    trained network far from its data it can run off to |y| ~ 1e17) warns with
    :class:`~physdiff.errors.ConvergenceWarning` unless ``warn=False``.
    """
    d = int(model.dim)
    dl = float(positive(delta, "delta"))
    tol = float(positive(tol, "tol", allow_zero=True))
    max_iter = integer(max_iter, "max_iter", 0, 10**7)
    y = as_points(np.reshape(y0, (1, -1)), d, "y0")[0].copy()
    start = float(np.linalg.norm(y))
    eye = np.eye(d)
    r = drift_field(model, y[None], dl, c)[0]
    n_iter = 0
    for _ in range(max_iter):
        nr = np.linalg.norm(r)
        if nr <= tol * (1 + np.linalg.norm(y)) / max(dl, 1e-300):
            break
        A = model.score_jacobian(y[None], dl)[0] - c * eye
        step = np.linalg.lstsq(A, -r, rcond=None)[0]
        lam = 1.0
        while lam > 1e-8:
            y_new = y + lam * step
            r_new = drift_field(model, y_new[None], dl, c)[0]
            if np.linalg.norm(r_new) < nr:
                break
            lam *= 0.5
        if lam <= 1e-8:
            break
        y, r = y_new, r_new
        n_iter += 1
    residual = float(np.linalg.norm(r))
    size = float(np.linalg.norm(y))
    threshold = tol * (1 + size) / max(dl, 1e-300)
    A = stability_matrix(model, y[None], dl, c)[0]
    # the Newton step the iteration would take next: tiny at a fixed point, of order |y|
    # on a run-off branch whose residual falls as |y| grows (where the relative residual
    # test alone would pass)
    next_step = float(np.linalg.norm(np.linalg.lstsq(A, -r, rcond=None)[0]))
    ran_off = next_step > STEP_TOL * (1 + size) and size > 10 * (1 + start)
    converged = bool(np.isfinite(size) and residual <= threshold and not ran_off)
    if warn and not converged:
        warnings.warn(
            f"find_fixed_point did not converge at delta={dl:g} after {n_iter} Newton steps "
            f"(max_iter={max_iter}): residual {residual:.3g} (needs <= {threshold:.3g}), next "
            f"Newton step {next_step:.3g}, |y| = {size:.3g}; the returned point is flagged "
            "converged=False",
            ConvergenceWarning,
            stacklevel=2,
        )
    eig = _stability_eigenvalues(A)
    return FixedPoint(y, eig, converged, residual, threshold, n_iter)
