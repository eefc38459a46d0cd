"""A trained network behind the same interface as an exact ensemble.

:class:`NetworkScoreModel` wraps a :class:`physdiff.nn.Denoiser` (or any module with the
same call convention) and offers ``dim``, ``denoise``, ``score``, ``score_jacobian``,
``conditional``, the batched ``denoise_labels`` and ``score_labels`` (every label of a
class-conditional network in one pass) and ``in_frame`` on numpy arrays, in the VE frame of
:mod:`physdiff.ensembles.base`. It satisfies :class:`physdiff.ensembles.ScoreModel`, so every
sampler and estimator of physdiff runs on it unchanged. Results are float64 numpy arrays;
the network itself runs in its own dtype (float32 for a trained network, float64 for a
module converted with ``.double()`` or one without weights).

The denoiser-like module must provide ``dim``, ``forward(y (B, d), delta (B,), labels) ->
E[x0 | y]`` and, optionally, ``score(y, delta, labels)`` (otherwise the score is taken as
``(D - y)/delta``); ``n_classes`` if it is class-conditional.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._validate import as_points, delta_for_batch, integer
from ..ensembles.base import FrameView
from ..errors import InputError, NotSupportedError
from ..processes import Process, get_process
from ._device import default_device, module_dtype
from .denoiser import Denoiser

__all__ = ["NetworkScoreModel"]


class NetworkScoreModel:
    """A score network seen as a :class:`physdiff.ensembles.ScoreModel`.

    ``denoiser``: a :class:`physdiff.nn.Denoiser` (moved to ``device`` and put in eval
    mode). ``batch_size``: points per network call (memory bound; the score Jacobian uses
    ``batch_size`` network rows, i.e. ``batch_size // d`` points, per call). ``label``: the
    class every call conditions on (``None``: the unconditional, null-label model).
    ``process``: the process the network was trained for, kept as ``.process`` (``None``
    when unknown); samplers take it as ``process=model.process``.

        denoise(y, delta)        = D(y, delta) ~ E[x0 | y]
        score(y, delta)          = (D(y, delta) - y) / delta   (no cancellation: Denoiser.score)
        score_jacobian(y, delta) = d score / dy                by autograd, (n, d, d)
    """

    def __init__(
        self,
        denoiser: nn.Module,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 4096,
        label: int | None = None,
        process: Process | str | None = None,
    ):
        if not isinstance(denoiser, nn.Module):
            raise InputError(
                f"denoiser must be a torch.nn.Module (a physdiff.nn.Denoiser); "
                f"got {type(denoiser).__name__}"
            )
        try:
            dim = int(denoiser.dim)
        except AttributeError:
            raise InputError("denoiser must have a 'dim' attribute (the data dimension)") from None
        self.device = default_device(device)
        self.denoiser = denoiser.to(self.device).eval()
        self.dtype = module_dtype(self.denoiser)
        self.batch_size = integer(batch_size, "batch_size", 1, 1 << 30)
        self._dim = dim
        self._n_classes: int | None = getattr(denoiser, "n_classes", None)
        self._label = self._check_label(label)
        self.process: Process | None = None if process is None else get_process(process)

    def _check_label(self, label, name: str = "label") -> int | None:
        if label is None:
            return None
        if self._n_classes is None:
            raise InputError(f"{name} was given but the network is unconditional (no n_classes)")
        return integer(label, name, 0, self._n_classes - 1)

    # -- interface ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Dimension d of the (flattened) data."""
        return self._dim

    @property
    def n_classes(self) -> int | None:
        """Number of classes of a conditional network (``None``: unconditional)."""
        return self._n_classes

    @property
    def label(self) -> int | None:
        """The class this view conditions on (``None``: unconditional)."""
        return self._label

    def conditional(self, label: int | None) -> NetworkScoreModel:
        """The same network conditioned on class ``label`` (``None``: unconditional); the
        weights are shared, not copied."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._label = self._check_label(label)
        return other

    def unconditional(self) -> NetworkScoreModel:
        """The null-label (unconditional) model of a classifier-free-guidance network."""
        return self.conditional(None)

    def in_frame(self, process: Process | str, t: float) -> FrameView:
        """This model in ``process``'s own frame at time ``t`` (``x_t = alpha y``)."""
        return FrameView(self, get_process(process), t)

    def denoise(self, y, delta) -> np.ndarray:
        """``D(y, delta) ~ E[x0 | y]``, float64 ``(n, d)``."""
        return self._map(self._denoise_fn, y, delta)

    def score(self, y, delta) -> np.ndarray:
        """``grad log p_delta(y) ~ (D - y)/delta``, float64 ``(n, d)``."""
        return self._map(self._score_fn, y, delta)

    def denoise_labels(
        self, y, delta, labels: Sequence[int | None], *, batch_size: int | None = None
    ) -> np.ndarray:
        """``D(y, delta, c) ~ E[x0 | y, c]`` for every label ``c`` of ``labels`` (class indices,
        ``None`` for the null label) at once: float64 ``(L, n, d)``, row ``j`` the value of
        ``conditional(labels[j]).denoise(y, delta)``.

        The batch is repeated once per label and the ``L n`` rows go through the network in
        calls of at most ``batch_size`` rows (default :attr:`batch_size`), so the memory
        stays bounded whatever ``L``: one pass for all the labels, as
        :meth:`physdiff.classes.NetworkClasses.denoise_all` asks of a network. A
        :class:`~physdiff.nn.Denoiser` takes the null label in the same pass (label index
        ``n_classes``, the convention of :mod:`physdiff.nn.networks`); for another module the
        null rows are one call with ``labels=None``. The values differ from the one-label
        calls only by the rounding of the network's dtype over other batch compositions.
        """
        return self._map_labels(self._denoise_fn, y, delta, labels, batch_size)

    def score_labels(
        self, y, delta, labels: Sequence[int | None], *, batch_size: int | None = None
    ) -> np.ndarray:
        """``grad log p_delta(y | c)`` for every label of ``labels`` at once, float64
        ``(L, n, d)``: :meth:`denoise_labels` for :meth:`score`."""
        return self._map_labels(self._score_fn, y, delta, labels, batch_size)

    def score_jacobian(self, y, delta) -> np.ndarray:
        """``J[n, i, j] = d score_i / d y_j`` by autograd, float64 ``(n, d, d)``.

        Each point is replicated d times and row ``i`` of copy ``i`` is back-propagated in one
        pass (the copies are independent, so one backward gives all d rows); valid for any
        network that treats batch elements independently (no batch norm in eval mode).
        """
        y, dl = self._prep(y, delta)
        n, d = y.shape
        out = np.empty((n, d, d))
        per = max(1, self.batch_size // d)
        for s in range(0, n, per):
            yt, dt, lab = self._tensors(y[s : s + per], dl[s : s + per], rep=d)
            m = yt.shape[0] // d
            with torch.enable_grad():
                yt.requires_grad_(True)
                sc = self._score_fn(yt, dt, lab).reshape(m, d, d)
                sel = torch.diagonal(sc, dim1=1, dim2=2).sum()
                (g,) = torch.autograd.grad(sel, yt)
            out[s : s + m] = g.reshape(m, d, d).double().cpu().numpy()
        return out

    def log_density(self, y, delta) -> np.ndarray:
        """Not available: a score network gives no normalised density."""
        raise NotSupportedError("a score network has no normalised log density")

    def posterior(self, y, delta) -> np.ndarray:
        """Not available: a score network has no mixture components."""
        raise NotSupportedError("a score network has no component posteriors")

    def __repr__(self) -> str:
        lab = "" if self._label is None else f", label={self._label}"
        return (
            f"NetworkScoreModel({type(self.denoiser).__name__}, dim={self._dim}, "
            f"device={self.device}{lab})"
        )

    # -- internals ---------------------------------------------------------------------------
    def _denoise_fn(self, yt: torch.Tensor, dt: torch.Tensor, lab) -> torch.Tensor:
        return self.denoiser(yt, dt, lab)

    def _score_fn(self, yt: torch.Tensor, dt: torch.Tensor, lab) -> torch.Tensor:
        fn = getattr(self.denoiser, "score", None)
        if callable(fn):
            return fn(yt, dt, lab)
        return (self.denoiser(yt, dt, lab) - yt) / dt[:, None]

    def _prep(self, y, delta) -> tuple[np.ndarray, np.ndarray]:
        y = as_points(y, self._dim, "y", dtype=np.float64)
        return y, delta_for_batch(delta, y.shape[0])[:, 0]

    def _tensors(self, y: np.ndarray, dl: np.ndarray, rep: int = 1):
        yt = torch.as_tensor(y, dtype=self.dtype, device=self.device)
        dt = torch.as_tensor(dl, dtype=self.dtype, device=self.device)
        if rep > 1:
            yt = yt.repeat_interleave(rep, dim=0)
            dt = dt.repeat_interleave(rep, dim=0)
        lab = None
        if self._label is not None:
            lab = torch.full((yt.shape[0],), self._label, dtype=torch.long, device=self.device)
        return yt, dt, lab

    def _map(self, fn: Callable, y, delta) -> np.ndarray:
        y, dl = self._prep(y, delta)
        codes = None if self._label is None else np.array([self._label])
        return self._rows(fn, y, dl, codes, self.batch_size)[0]

    def _map_labels(self, fn: Callable, y, delta, labels, batch_size) -> np.ndarray:
        y, dl = self._prep(y, delta)
        if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
            raise InputError(
                f"labels must be a sequence of class indices or None; got {type(labels).__name__}"
            )
        labs = [None if c is None else self._check_label(c, "labels") for c in labels]
        per = self.batch_size
        if batch_size is not None:
            per = integer(batch_size, "batch_size", 1, 1 << 30)
        # a Denoiser's network takes the null label as index n_classes (physdiff.nn.networks)
        null = self._n_classes if isinstance(self.denoiser, Denoiser) else None
        codes = [null if c is None else c for c in labs]
        out = np.empty((len(codes), *y.shape), dtype=np.float64)
        coded = [j for j, c in enumerate(codes) if c is not None]
        if coded:
            out[coded] = self._rows(fn, y, dl, np.array([codes[j] for j in coded]), per)
        plain = [j for j, c in enumerate(codes) if c is None]
        if plain:  # one labels=None pass, shared by every null entry
            out[plain] = self._rows(fn, y, dl, None, per)
        return out

    def _rows(self, fn: Callable, y, dl, codes: np.ndarray | None, per: int) -> np.ndarray:
        """``fn`` on the rows (label ``codes[j]``, point ``y[i]``) in label-major order,
        ``per`` rows a call: ``(L, n, d)``; ``codes=None``: ``labels=None``, ``(1, n, d)``."""
        n, d = y.shape
        n_labels = 1 if codes is None else codes.shape[0]
        size = n * n_labels
        flat = np.empty((size, d), dtype=np.float64)
        with torch.no_grad():
            for s in range(0, size, per):
                rows = np.arange(s, min(s + per, size))
                yt = torch.as_tensor(y[rows % n], dtype=self.dtype, device=self.device)
                dt = torch.as_tensor(dl[rows % n], dtype=self.dtype, device=self.device)
                lab = None
                if codes is not None:
                    lab = torch.as_tensor(codes[rows // n], dtype=torch.long, device=self.device)
                flat[s : s + rows.size] = fn(yt, dt, lab).double().cpu().numpy()
        return flat.reshape(n_labels, n, d)
