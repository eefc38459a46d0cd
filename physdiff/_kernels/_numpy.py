"""The numpy twins of the kernels (the references the tests compare with) and the input
normalisation the kernels share.
"""

from __future__ import annotations

import numpy as np


def _common(y, points, delta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C-contiguous ``y``, ``points`` of one float dtype and ``delta`` as ``(m,)`` float64."""
    y = np.asarray(y)
    points = np.asarray(points)
    dt = np.result_type(y.dtype, points.dtype)
    if dt != np.float32:
        dt = np.dtype(np.float64)
    y = np.ascontiguousarray(y, dtype=dt)
    points = np.ascontiguousarray(points, dtype=dt)
    if y.ndim != 2 or points.ndim != 2 or y.shape[1] != points.shape[1]:
        raise ValueError(f"y must be (m, d) and points (n, d); got {y.shape} and {points.shape}")
    if points.shape[0] == 0:
        raise ValueError("points must hold at least one training point; got n = 0")
    delta = np.ascontiguousarray(
        np.broadcast_to(np.asarray(delta, dtype=np.float64), (y.shape[0],))
    )
    return y, points, delta


def _sqdist_numpy(y64: np.ndarray, a64: np.ndarray, out: np.ndarray, max_elems: int) -> None:
    """``out[i, mu] = |y_i - a_mu|^2`` from the differences, ``max_elems`` at a time."""
    m, d = y64.shape
    n = a64.shape[0]
    pc = max(1, max_elems // max(1, m * d))
    for p0 in range(0, n, pc):
        diff = y64[:, None, :] - a64[None, p0 : p0 + pc, :]
        out[:, p0 : p0 + pc] = np.einsum("ijk,ijk->ij", diff, diff)


def empirical_stats_numpy(
    y: np.ndarray, points: np.ndarray, delta: np.ndarray, *, max_elems: int = 2**22
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The numpy twin of :func:`empirical_stats` (the reference the tests compare with).

    Same formulas (docs/theory.md section 1, empirical score), computed in float64 from the
    direct differences ``y_i - a_mu`` and a max-shifted softmax, in chunks of queries so
    that a chunk's ``(c, n)`` logits and a ``(c, p, d)`` difference block hold at most
    ``max_elems`` numbers (one query at a time if ``n`` alone exceeds it).
    """
    y, points, delta = _common(y, points, delta)
    m, d = y.shape
    n = points.shape[0]
    a64 = points.astype(np.float64, copy=False)
    den = np.empty((m, d))
    lse = np.empty(m)
    pr = np.empty(m)
    qc = max(1, min(m, max_elems // n))
    for q0 in range(0, m, qc):
        yq = y[q0 : q0 + qc].astype(np.float64, copy=False)
        dist = np.empty((yq.shape[0], n))
        _sqdist_numpy(yq, a64, dist, max_elems)
        logits = -dist / (2.0 * delta[q0 : q0 + qc, None])
        lmax = logits.max(axis=1, keepdims=True)
        w = np.exp(logits - lmax)
        s = w.sum(axis=1)
        den[q0 : q0 + qc] = (w @ a64) / s[:, None]
        lse[q0 : q0 + qc] = lmax[:, 0] + np.log(s)
        pr[q0 : q0 + qc] = s**2 / np.einsum("ij,ij->i", w, w)
    return den.astype(y.dtype, copy=False), lse, pr


def empirical_weights(y: np.ndarray, points: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The posterior weights ``w_{i,mu} = softmax_mu(-|y_i - a_mu|^2 / (2 delta_i))`` as an
    ``(m, n)`` float64 array (numpy; for small problems, tests and Jacobians).

    docs/theory.md section 1, empirical score. Direct differences in float64, max-shifted
    softmax, so rows sum to 1 even for queries far from every point.
    """
    y, points, delta = _common(y, points, delta)
    y64 = y.astype(np.float64, copy=False)
    a64 = points.astype(np.float64, copy=False)
    dist = np.empty((y.shape[0], points.shape[0]))
    _sqdist_numpy(y64, a64, dist, 2**22)
    logits = -dist / (2.0 * delta[:, None])
    logits -= logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(axis=1, keepdims=True)
    return w
