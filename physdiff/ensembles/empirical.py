"""The empirical measure of a training set: the score a network would reach at the optimum
of denoising score matching on finitely many points, which only memorises.

With training points ``a_mu`` (mu = 1..n) and ``y = x0 + sqrt(delta) z`` (docs/theory.md
section 1; Biroli et al. 2024, Eq. 3):

    w_mu(y)   = softmax_mu(-|y - a_mu|^2 / (2 delta))
    E[x0 | y] = sum_mu w_mu a_mu,      score(y) = (E[x0 | y] - y) / delta
    log p(y)  = logsumexp_mu(-|y - a_mu|^2/(2 delta)) - log n - d/2 log(2 pi delta)
    Cov(x0|y) = sum_mu w_mu (a_mu - m)(a_mu - m)^T
    PR(y)     = 1 / sum_mu w_mu^2      (participation ratio, effective active points)

Weights, denoiser and participation ratio come from the streaming numba kernel
(:mod:`physdiff._kernels`), which never forms the m x n weight matrix.

On torch (a GPU or the CPU): given torch queries, torch points or a ``device=``, score,
denoise, log-density, participation ratio and :meth:`Empirical.stats` run the same online
log-sum-exp in torch (:mod:`physdiff._kernels._torch`), block by block (at most ``chunk``
query-point pairs at a time), with the same accuracy rule. torch is imported only then.
"""

from __future__ import annotations

import sys

import numpy as np

from .._validate import as_points, delta_for_batch, finite_array, integer
from ..errors import DomainError, InputError, ShapeError
from .base import Ensemble, extent, stored

__all__ = ["Empirical"]

_LOG_2PI = float(np.log(2 * np.pi))
_W_FLOOR = float(np.exp(-350.0))  # posterior weights below this are zero (covariance)


_SCALE_MAX = 1e150
"""Largest coordinate of a training point or a query: the kernels form squared distances
``|y - a|^2``, which overflow float64 beyond about ``1e154`` per coordinate (then every
weight is ``exp(-inf)`` and the posterior is 0/0)."""


def _check_scale(arr: np.ndarray, name: str) -> None:
    big = float(np.max(np.abs(arr))) if arr.size else 0.0
    if big > _SCALE_MAX:
        raise DomainError(
            f"{name}: coordinates must lie in [-{_SCALE_MAX:g}, {_SCALE_MAX:g}] (squared "
            f"distances must be finite in float64); got |{name}| up to {big:.3g}. The "
            "empirical score is scale-covariant: rescale the data and delta instead"
        )


def _is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


_TORCH_DTYPES = {"torch.float32": np.float32, "torch.float64": np.float64}


class Empirical(Ensemble):
    """Uniform measure on the rows of ``points`` ``(n, d)``.

    ``dtype`` (float32 or float64) is the precision of the kernel; queries are cast to it.
    By default float64, or the dtype of ``points`` when they are a float32/float64 torch
    tensor. Results are float64 numpy arrays for numpy queries.

    The torch path (accuracy: :mod:`physdiff._kernels._torch`): when the queries are torch
    tensors, ``points`` is a torch tensor or ``device`` is given (``"cuda"``, ``"cpu"``, a
    ``torch.device``), :meth:`score`, :meth:`denoise`, :meth:`log_density`,
    :meth:`participation_ratio` and :meth:`stats` run in torch on ``device`` (by default
    the device of ``points``, else of the queries). Torch queries give torch results on
    their own device: score and denoiser in ``dtype``, log-density, log-sum-exp and
    participation ratio in float64; numpy queries give numpy float64 arrays. ``chunk`` (an
    integer in [1, 2^40]) bounds the query-point pairs of a block (the memory: about
    ``4 chunk`` numbers); by default 2^22 on the CPU and, on a GPU, a budget of an eighth
    of its free memory (at most 2^27).
    """

    def __init__(self, points, *, dtype=None, device=None, chunk=None):
        self._device = None
        if _is_tensor(points):
            if device is None:
                device = points.device
            if dtype is None:
                dtype = _TORCH_DTYPES.get(str(points.dtype))
            points = points.detach().cpu().numpy()
        dtype = np.dtype(np.float64 if dtype is None else dtype)
        if dtype not in (np.float32, np.float64):
            raise InputError(f"dtype must be float32 or float64; got {dtype}")
        if device is not None:
            from .._kernels._torch import torch_module

            torch = torch_module()
            try:
                self._device = torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise InputError(
                    f"device must be a torch device or its name ('cpu', 'cuda', 'cuda:0'); "
                    f"got {device!r}"
                ) from exc
            try:  # a device torch knows but cannot use here (no CUDA, meta): say so now
                float(torch.zeros(1, device=self._device).sum())
            except (AssertionError, RuntimeError, NotImplementedError) as exc:
                raise InputError(
                    f"device {str(self._device)!r} is not usable by torch here ({exc}); "
                    "torch.cuda.is_available() says whether a CUDA device is"
                ) from exc
        self._chunk = None if chunk is None else integer(chunk, "chunk", 1, 1 << 40)
        self._on_device: dict = {}
        pts = finite_array(points, "points", dtype)
        if pts.ndim != 2:
            raise ShapeError(f"points must have shape (n, d); got shape {pts.shape}")
        if pts.shape[0] == 0 or pts.shape[1] == 0:
            raise InputError(
                f"points must hold at least one point of dimension >= 1; got shape {pts.shape}"
            )
        _check_scale(pts, "points")
        # our own read-only copy: never freeze (or alias) the caller's array
        self._pts = np.array(pts, order="C", copy=True)
        self._pts.setflags(write=False)
        self._sq = np.einsum("ij,ij->i", self._pts.astype(np.float64), self._pts.astype(np.float64))

    dim = extent("_pts", 1, "Dimension d of the data.")
    n_points = extent("_pts", 0, "Number n of training points.")
    points = stored("_pts", "The training set, ``(n, d)`` (read-only view).")

    @property
    def dtype(self) -> np.dtype:
        return self._pts.dtype

    @property
    def mean(self) -> np.ndarray:
        return self._pts.mean(axis=0, dtype=np.float64)

    @property
    def covariance(self) -> np.ndarray:
        c = self._pts.astype(np.float64) - self.mean
        return c.T @ c / self.n_points

    @property
    def device(self):
        """The torch device of the torch path (``None``: numpy, unless given torch queries)."""
        return self._device

    def __repr__(self) -> str:
        dev = "" if self._device is None else f", device={self._device}"
        return f"Empirical(n={self.n_points}, d={self.dim}, dtype={self.dtype}{dev})"

    # -- the torch path ----------------------------------------------------------------------
    def _torch_stats(self, y, delta, name: str = "y"):
        """``None`` when the numpy path applies; else ``(den, lse, pr, y64, back)``: the
        torch kernel's float64 results for validated queries, the queries in float64 and
        ``back`` turning a result into what the caller gets (a tensor on the queries'
        device, or a numpy array)."""
        tensor = _is_tensor(y)
        if not tensor and self._device is None:
            return None
        from .._kernels._torch import (
            TorchPoints,
            default_chunk,
            empirical_stats_torch,
            torch_module,
        )

        torch = torch_module()
        device = self._device if self._device is not None else y.device
        wdtype = torch.float32 if self.dtype == np.float32 else torch.float64
        if tensor:
            if y.ndim != 2 or y.shape[1] != self.dim:
                raise ShapeError(
                    f"{name} must have shape (n, {self.dim}) (a batch of points in "
                    f"R^{self.dim}); got shape {tuple(y.shape)}"
                )
            if y.is_complex() or y.dtype == torch.bool:
                raise InputError(f"{name} must be real numbers; got dtype {y.dtype}")
            home = y.device
            yt = y.detach().to(device=device, dtype=wdtype)
            if not bool(torch.isfinite(yt).all()):
                raise InputError(f"{name} must be finite (no NaN or inf)")
            big = float(yt.abs().max()) if yt.numel() else 0.0
            if big > _SCALE_MAX:
                _check_scale(np.array([big]), name)

            def back(t, keep=False):
                return t.to(device=home, dtype=t.dtype if keep else wdtype)

        else:
            yn = as_points(y, self.dim, name, dtype=self.dtype)
            _check_scale(yn, name)
            yt = torch.from_numpy(np.ascontiguousarray(yn)).to(device)

            def back(t, keep=False):
                return t.to(dtype=torch.float64).cpu().numpy()

        if _is_tensor(delta):
            delta = delta.detach().cpu().numpy()
        dl = delta_for_batch(delta, yt.shape[0])
        dt = torch.from_numpy(np.ascontiguousarray(dl[:, 0])).to(device)
        tp = self._on_device.get(device)
        if tp is None:
            tp = self._on_device[device] = TorchPoints(torch.tensor(self._pts, device=device))
        chunk = self._chunk if self._chunk is not None else default_chunk(device, wdtype)
        den, lse, pr = empirical_stats_torch(yt, tp, dt, chunk=chunk)
        return den, lse, pr, yt.to(torch.float64), dt, back

    def _log_norm(self, delta):
        """``log n + d/2 log(2 pi delta)`` (numpy or torch ``delta``)."""
        log_delta = delta.log() if _is_tensor(delta) else np.log(delta)
        return np.log(self.n_points) + 0.5 * self.dim * (_LOG_2PI + log_delta)

    def _prep(self, y, delta, name: str = "y"):
        y, dl = super()._prep(y, delta, name)
        _check_scale(y, name)  # every query path (score, posterior, stats, ...) comes here
        return y, dl

    # -- the kernel --------------------------------------------------------------------------
    def stats(self, y, delta):
        """``(denoised, lse, pr)`` for a batch: the posterior mean ``(m, d)``,
        ``logsumexp_mu(-|y - a_mu|^2 / (2 delta))`` ``(m,)`` and the participation ratio
        ``(m,)``."""
        got = self._torch_stats(y, delta)
        if got is not None:
            den, lse, pr, _, _, back = got
            return back(den), back(lse, True), back(pr, True)
        y, dl = self._prep(y, delta)
        return self._stats(y, dl)

    def denoise(self, y, delta):
        """Posterior mean ``E[x0 | y] = sum_mu w_mu(y) a_mu``, ``(m, d)``."""
        got = self._torch_stats(y, delta)
        if got is None:
            return super().denoise(y, delta)
        return got[-1](got[0])

    def score(self, y, delta):
        """Score ``(E[x0 | y] - y) / delta``, ``(m, d)`` (Tweedie, in float64)."""
        got = self._torch_stats(y, delta)
        if got is None:
            return super().score(y, delta)
        den, _, _, y64, dt, back = got
        return back((den - y64) / dt.unsqueeze(1))

    def log_density(self, y, delta):
        """``log p_delta(y) = lse - log n - d/2 log(2 pi delta)``, ``(m,)``."""
        got = self._torch_stats(y, delta)
        if got is None:
            return super().log_density(y, delta)
        _, lse, _, _, dt, back = got
        return back(lse - self._log_norm(dt), True)

    def _stats(self, y, delta):
        from .._kernels import empirical_stats

        yq = np.ascontiguousarray(y, dtype=self.dtype)
        den, lse, pr = empirical_stats(
            yq, self._pts, np.ascontiguousarray(delta[:, 0]), sq_norms=self._sq
        )
        return den.astype(np.float64, copy=False), lse, pr

    def _denoise(self, y, delta):
        return self._stats(y, delta)[0]

    def _log_density(self, y, delta):
        return self._stats(y, delta)[1] - self._log_norm(delta[:, 0])

    def participation_ratio(self, y, delta) -> np.ndarray:
        """``1 / sum_mu w_mu^2`` for each query, between 1 and n."""
        return self.stats(y, delta)[2]

    def posterior(self, y, delta) -> np.ndarray:
        """The weights ``w_mu(y)`` as an ``(m, n)`` array (mind the memory for large sets;
        the denoiser and score never form it)."""
        from .._kernels import empirical_weights

        y, dl = self._prep(y, delta)
        return empirical_weights(y, self._pts.astype(np.float64, copy=False), dl[:, 0])

    def nearest(self, y) -> tuple[np.ndarray, np.ndarray]:
        """``(index, distance)`` of the nearest training point to each query.

        The candidate comes from the norm expansion ``|q|^2 + |a|^2 - 2 q.a`` (one matrix
        product per block of queries) on coordinates centred at the training mean, so that
        it does not cancel for a set far from the origin; the distance is then the direct
        ``|q - a|``."""
        y = as_points(y, self.dim, "y", dtype=np.float64)
        idx = np.empty(y.shape[0], dtype=np.int64)
        dist = np.empty(y.shape[0])
        pts = self._pts.astype(np.float64, copy=False)
        mean = pts.mean(axis=0)
        c = pts - mean
        csq = np.einsum("ij,ij->i", c, c)
        step = max(1, int(2**24 // max(self.n_points, 1)))
        for s in range(0, y.shape[0], step):
            q = y[s : s + step]
            qc = q - mean
            d2 = np.einsum("ij,ij->i", qc, qc)[:, None] - 2 * qc @ c.T + csq[None]
            k = np.argmin(d2, axis=1)
            idx[s : s + step] = k
            dist[s : s + step] = np.linalg.norm(q - pts[k], axis=1)
        return idx, dist

    def _posterior_covariance(self, y, delta):
        # sum_mu w_mu (a_mu - m)(a_mu - m)^T, centred at the posterior mean m so that no
        # cancellation occurs when the points sit far from the origin; batched over the
        # queries (one (c, n, d) block of centred points per chunk, one batched product).
        # Weights below _W_FLOOR = e^-350 are set to zero, as in the kernel behind the
        # denoiser: they would be subnormal (or give subnormal products) and slow the
        # product 10-30x (docs/design.md, performance notes). The dropped mass is below
        # n e^-350 ~ n 1e-152, so each entry changes by less than
        # n e^-350 max_mu |a_mu - m|^2: zero to double rounding for any realistic n.
        from .._kernels import empirical_weights

        n, d = y.shape
        out = np.empty((n, d, d))
        pts = self._pts.astype(np.float64, copy=False)
        step = max(1, int(2**22 // (self.n_points * d)))
        for s in range(0, n, step):
            w = empirical_weights(y[s : s + step], pts, delta[s : s + step, 0])  # (c, n)
            w[w < _W_FLOOR] = 0.0
            c = pts[None, :, :] - (w @ pts)[:, None, :]  # (c, n, d)
            out[s : s + step] = np.matmul(np.swapaxes(c * w[:, :, None], 1, 2), c)
        return out

    def _sample(self, n, rng):
        return self._pts[rng.integers(0, self.n_points, size=n)].astype(np.float64)
