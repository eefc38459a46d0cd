"""Guidance as score transforms: classifier-free guidance and negative prompting
(docs/theory.md section 7).

Every guided model here is a :class:`physdiff.ensembles.ScoreModel` (``dim``,
``score(y, delta)``, ``denoise(y, delta) = y + delta * score``, VE frame), so it runs under
every sampler of :mod:`physdiff.sampling` and every estimator, on exact mixtures and trained
conditional networks alike (any model with classes, :mod:`physdiff.classes`). Writing
``s = score(y)`` (unconditional) and ``s_c = score(y | c)`` (class ``c``), all in the VE
frame at the same ``delta``:

* classifier-free guidance (Ho & Salimans 2022, Eq. 6, with their ``w`` = our ``w - 1``)::

      s_cfg = s + w (s_c - s)                 w = 0: unconditional, w = 1: conditional;

* negative prompting (NP), a constant push away from class ``c``::

      s_np = s - lambda (s_c - s).

In the eps language of DDPM (``eps = -sigma score_t``, :class:`physdiff.ensembles.FrameView`)
each transform is the same linear combination of the eps predictions, because
``score_t(x) = score(x / alpha, delta) / alpha`` is linear in the score.

Dynamic negative guidance, which scales the push by the class posterior, is in
:mod:`physdiff.negative_guidance`; the metrics of a class removal in :mod:`physdiff.metrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validate import as_points, delta_for_batch, positive
from .classes import as_conditional
from .errors import InputError

__all__ = ["GuidedModel", "ClassifierFreeGuidance", "NegativePrompt"]


class GuidedModel:
    """Base of the guided score models: a :class:`~physdiff.classes.ClassConditional`, a
    class and a scale.

    ``score(y, delta)`` is the transform; ``denoise(y, delta) = y + delta * score(y, delta)``
    (Tweedie, docs/theory.md section 1), so the guided model is a ScoreModel.
    """

    def __init__(self, model: Any, label: int, scale: float):
        self.conditional = as_conditional(model)
        self.label = self.conditional.check_label(label)
        self.scale = float(positive(scale, "scale", allow_zero=True))
        w = self.conditional.class_weights
        if w is not None and not w[self.label] > 0:
            raise InputError(f"label {self.label} has zero probability; nothing to guide by")

    @property
    def dim(self) -> int:
        return self.conditional.dim

    def _eval(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        """The guided score on validated ``y (n, d)``, ``dl (n, 1)``."""
        raise NotImplementedError

    def _prep(self, y, delta) -> tuple[np.ndarray, np.ndarray]:
        y = as_points(y, self.dim, "y", dtype=np.float64)
        return y, delta_for_batch(delta, y.shape[0])

    def score(self, y, delta) -> np.ndarray:
        """The guided score at noise-to-signal variance ``delta``, ``(n, d)``."""
        return self._finite(self._eval(*self._prep(y, delta)))

    def denoise(self, y, delta) -> np.ndarray:
        """``y + delta * score(y, delta)``: the guided posterior mean (Tweedie)."""
        y, dl = self._prep(y, delta)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._finite(y + dl * self._eval(y, dl))

    def _finite(self, out: np.ndarray) -> np.ndarray:
        """``out``, or an error naming ``scale`` when the push ``scale * (s_c - s)`` has left
        float64 (the inputs were checked finite, so the scale is what overflowed)."""
        if not np.all(np.isfinite(out)):
            raise InputError(
                f"scale: the guided score overflows float64 at scale = {self.scale:g} "
                f"({int(np.sum(~np.isfinite(out)))} non-finite values); use a smaller scale"
            )
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.conditional!r}, label={self.label}, scale={self.scale:g})"
        )


class ClassifierFreeGuidance(GuidedModel):
    """Classifier-free guidance ``s + w (s_c - s)`` (Ho & Salimans 2022, Eq. 6).

    ``scale = w >= 0``: ``w = 0`` is the unconditional model, ``w = 1`` the conditional one,
    ``w > 1`` sharpens toward class ``label``; Ho & Salimans' guidance strength is
    ``w - 1`` (their ``eps~ = (1 + w') eps_c - w' eps``). Equivalently
    ``grad log p(y) p(c | y)^w``.
    """

    def _eval(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        s, s_c, *_ = self.conditional._parts(self.label, y, dl, False)
        with np.errstate(over="ignore", invalid="ignore"):  # _finite names the scale
            return s + self.scale * (s_c - s)


class NegativePrompt(GuidedModel):
    """Negative prompting ``s - lambda (s_c - s)`` with a constant ``lambda = scale >= 0``.

    The negative-prompt form of classifier-free guidance (a negative ``w``); it is DNG with
    the posterior held at ``p^ = 1/2`` (Koulischer et al. 2025, Sec. 3), so it pushes away
    from class ``label`` even where the sample is already far from it, which distorts the
    kept classes at large scales.
    """

    def _eval(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        s, s_c, *_ = self.conditional._parts(self.label, y, dl, False)
        with np.errstate(over="ignore", invalid="ignore"):  # _finite names the scale
            return s - self.scale * (s_c - s)
