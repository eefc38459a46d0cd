"""Checks, and the small models they run on, shared by several test files (imported as
``tests._checks``)."""

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


def kernel_errors(got, ref, points, scale=None) -> tuple[float, float, float]:
    """Errors of the kernel outputs ``got = (denoised, lse, pr)`` (numpy arrays, or tensors
    with ``.cpu()``) against ``ref``: the denoiser relative to the data's scale, ``lse``
    relative to ``max(1, |lse|)``, the participation ratio relative."""
    den, lse, pr = (np.asarray(g.cpu()) if hasattr(g, "cpu") else g for g in got)
    rden, rlse, rpr = ref
    if scale is None:
        scale = float(np.max(np.abs(points)))
    e_den = float(np.max(np.abs(den.astype(np.float64) - rden))) / scale
    e_lse = float(np.max(np.abs(lse - rlse) / np.maximum(1.0, np.abs(rlse))))
    e_pr = float(np.max(np.abs(pr - rpr) / rpr))
    return e_den, e_lse, e_pr


def twin_cases(queries, deltas, d: int, n: int, m: int, dtype):
    """The kernel-against-numpy-twin cases: standard normal points ``(n, d)`` and, for each
    query kind (near, far, random; ``queries(rng, points, m, kind)``), ``m`` queries with one
    of ``deltas`` each, mixed. Yields ``(kind, points, y, delta)``; seeded by the sizes."""
    rng = np.random.default_rng(1000 * d + n + m)
    points = rng.standard_normal((n, d)).astype(dtype)
    for kind in ("near", "far", "random"):
        y = queries(rng, points, m, kind).astype(dtype)
        yield kind, points, y, deltas[rng.integers(0, len(deltas), m)]


def state_copy(module) -> dict:
    """A detached copy of a torch module's ``state_dict`` (weights to compare later)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a, b) -> None:
    """The torch modules ``a`` and ``b`` hold the same parameters, bit for bit."""
    import torch

    wa, wb = state_copy(a), state_copy(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def small_denoiser(dim: int, *, hidden: int, n_classes=None, parametrisation="edm", seed=0):
    """A :class:`physdiff.nn.Denoiser` around a two-hidden-layer
    :class:`physdiff.nn.ScoreMLP` of width ``hidden`` (torch imported on call)."""
    from physdiff.nn import Denoiser, ScoreMLP

    net = ScoreMLP(dim, hidden=hidden, depth=2, n_classes=n_classes, seed=seed)
    return Denoiser(net, parametrisation)


def adversarial_kernel_case(dtype):
    """Points 30 sd from the origin, half of them near-duplicates 1e-3 from the other half,
    48 queries near training points, delta from 0.03 to 300: the logit error bound of the
    matrix-product kernels runs from far below to far above 1. Returns ``(points, y,
    delta)`` with ``points`` and ``y`` in ``dtype``."""
    rng = np.random.default_rng(13)
    n, d, m = 3000, 64, 48
    base = 30.0 + rng.standard_normal((n // 2, d))
    points = np.concatenate([base, base + 1e-3 * rng.standard_normal((n // 2, d))])
    y = points[rng.integers(0, n, m)] + 0.7 * rng.standard_normal((m, d))
    delta = np.geomspace(0.03, 300.0, m)
    return points.astype(dtype), y.astype(dtype), delta
