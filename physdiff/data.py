"""Image data sets as flat ``(n, d)`` float64 arrays: the 8x8 digits and a user's ``.npz``.

Images are flattened at the boundary (docs/design.md "Conventions"): an image of shape
``(C, H, W)`` becomes a row of length ``d = C * H * W`` in C order, and
:meth:`ImageData.to_images` undoes it. Every data set is split once into a training and
a held-out part and standardised with statistics of the **training part only**:

    x_std = (x - mean) / std,          x = x_std * std + mean   (:meth:`ImageData.unstandardise`)

``mode="global"`` uses one scalar mean and standard deviation over all pixels (the image
structure, and exactly-zero border pixels, are kept; this is the default);
``mode="pixel"`` uses one per pixel, with pixels of zero spread left unscaled (std set to 1);
``mode="none"`` leaves the values as they are (mean 0, std 1). ``mean`` and ``std`` are
always stored as ``(d,)`` arrays so that generated samples map back with one formula.

The split is stratified by label when there are labels: from each class, a fraction
``held_out`` (rounded to the nearest integer, at least one point when the class has two or
more) is drawn without replacement with ``numpy.random.default_rng(seed)``; the indices are
returned sorted. It is computed with numpy only, so it does not change with the version of
scikit-learn.

Digits: scikit-learn's bundled copy of the UCI "Optical Recognition of Handwritten
Digits" test set (Alpaydin & Kaynak 1998; 1797 images of 8x8 pixels, values 0..16,
10 classes), loaded by ``sklearn.datasets.load_digits`` without any download. scikit-learn
is imported only when the digits are asked for.

``.npz`` files (:func:`load_npz`) hold

* ``images``: the images, ``(n, H, W)`` (one channel), ``(n, C, H, W)`` (channels first;
  ``channels_last=True`` reads ``(n, H, W, C)``), or already flat ``(n, d)``;
* ``labels`` (optional): integer class labels ``(n,)``, used for the stratified split and
  for class-conditional models.

Other key names are passed as ``images_key`` and ``labels_key``. Non-finite values are
refused with :class:`physdiff.errors.InputError` naming the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ._validate import integer
from .errors import InputError, ShapeError

__all__ = [
    "ImageData",
    "DIGITS_SEED",
    "DIGITS_HELD_OUT",
    "load_digits",
    "load_npz",
    "stratified_split",
    "standardisation",
]

Mode = Literal["global", "pixel", "none"]

DIGITS_SEED: int = 0
"""Seed of the fixed digits split (``numpy.random.default_rng(DIGITS_SEED)``)."""

DIGITS_HELD_OUT: float = 0.2
"""Fraction of each digit class held out (36 of about 180 images per class; 359 in all)."""


@dataclass(frozen=True, eq=False)
class ImageData:
    """A standardised, flattened image data set with its fixed train/held-out split.

    Attributes
    ----------
    name:
        Where it came from (``"digits"`` or the ``.npz`` path).
    train, held_out:
        Standardised images, ``(n_train, d)`` and ``(n_held_out, d)``, float64, read-only.
    train_labels, held_out_labels:
        Integer labels ``(n,)`` or ``None`` when the data set has none.
    train_index, held_out_index:
        Rows of the original array that went into each part (sorted).
    image_shape:
        ``(C, H, W)`` of one image, or ``None`` when the data were given flat.
    mean, std:
        ``(d,)`` arrays of the standardisation, ``x_std = (x - mean) / std``.
    mode:
        ``"global"``, ``"pixel"`` or ``"none"`` (module docstring).
    seed, held_out_fraction:
        The split's seed and fraction.
    """

    name: str
    train: np.ndarray
    held_out: np.ndarray
    train_labels: np.ndarray | None
    held_out_labels: np.ndarray | None
    train_index: np.ndarray
    held_out_index: np.ndarray
    image_shape: tuple[int, int, int] | None
    mean: np.ndarray
    std: np.ndarray
    mode: str
    seed: int
    held_out_fraction: float
    n_classes: int | None = field(default=None)

    @property
    def dim(self) -> int:
        """Number of values per image, ``d = C * H * W``."""
        return int(self.train.shape[1])

    def standardise(self, x) -> np.ndarray:
        """``(x - mean) / std`` for raw images ``(n, d)`` (or ``(n, C, H, W)``, flattened)."""
        x = np.asarray(x, dtype=np.float64).reshape(np.shape(x)[0], -1)
        if x.shape[1] != self.dim:
            raise ShapeError(f"x must have {self.dim} values per image; got shape {x.shape}")
        return (x - self.mean) / self.std

    def unstandardise(self, x) -> np.ndarray:
        """``x * std + mean``: map standardised points (e.g. generated samples) back to pixels."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"x must have shape (n, {self.dim}); got shape {x.shape}")
        return x * self.std + self.mean

    def to_images(self, x, *, raw: bool = True) -> np.ndarray:
        """Standardised rows ``(n, d)`` as images ``(n, C, H, W)``, in pixel units if ``raw``."""
        if self.image_shape is None:
            raise InputError(f"{self.name} was given flat; it has no image shape")
        x = self.unstandardise(x) if raw else np.asarray(x, dtype=np.float64)
        return x.reshape((x.shape[0], *self.image_shape))

    def __repr__(self) -> str:
        return (
            f"ImageData({self.name!r}, train={self.train.shape}, "
            f"held_out={self.held_out.shape}, image_shape={self.image_shape}, "
            f"mode={self.mode!r})"
        )


def stratified_split(
    n: int, labels: np.ndarray | None, held_out: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_index, held_out_index)``, sorted, with ``held_out`` of each class held out.

    Without labels the whole set is one class. ``held_out = 0`` keeps everything for
    training. Each class of size ``m >= 2`` gives ``max(1, round(held_out * m))`` points
    (at most ``m - 1``) when ``held_out > 0``; a class of one point stays in training.
    """
    n = integer(n, "n", 1, 10**12)
    held_out = float(held_out)
    if not 0.0 <= held_out < 1.0:
        raise InputError(f"held_out must lie in [0, 1); got {held_out!r}")
    seed = integer(seed, "seed", 0, 2**63 - 1)
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)]
        if labels is None
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    test: list[np.ndarray] = []
    for idx in groups:
        m = idx.shape[0]
        k = 0 if held_out == 0 or m < 2 else min(m - 1, max(1, int(round(held_out * m))))
        test.append(idx[rng.permutation(m)[:k]])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask).astype(np.int64), test_idx


def standardisation(x: np.ndarray, mode: Mode = "global") -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` as ``(d,)`` arrays for the rows of ``x`` (module docstring)."""
    d = x.shape[1]
    if mode == "global":
        mean = np.full(d, x.mean())
        s = x.std()
        std = np.full(d, s if s > 0 else 1.0)
    elif mode == "pixel":
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std[std <= 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0)))] = 1.0
    elif mode == "none":
        mean, std = np.zeros(d), np.ones(d)
    else:
        raise InputError(f"mode must be 'global', 'pixel' or 'none'; got {mode!r}")
    return mean, std


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _build(
    name: str,
    flat: np.ndarray,
    labels: np.ndarray | None,
    image_shape: tuple[int, int, int] | None,
    *,
    held_out: float,
    seed: int,
    mode: Mode,
) -> ImageData:
    tr, te = stratified_split(flat.shape[0], labels, held_out, seed)
    mean, std = standardisation(flat[tr], mode)
    lab = None if labels is None else labels.astype(np.int64)
    return ImageData(
        name=name,
        train=_readonly((flat[tr] - mean) / std),
        held_out=_readonly((flat[te] - mean) / std),
        train_labels=None if lab is None else _readonly(lab[tr]),
        held_out_labels=None if lab is None else _readonly(lab[te]),
        train_index=_readonly(tr),
        held_out_index=_readonly(te),
        image_shape=image_shape,
        mean=_readonly(mean),
        std=_readonly(std),
        mode=mode,
        seed=seed,
        held_out_fraction=float(held_out),
        n_classes=None if lab is None else int(lab.max()) + 1,
    )


def load_digits(
    *, held_out: float = DIGITS_HELD_OUT, seed: int = DIGITS_SEED, mode: Mode = "global"
) -> ImageData:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), split and standardised.

    With the defaults the split is the project's fixed one: 1438 training and 359 held-out
    images, stratified by digit (``stratified_split(1797, labels, 0.2, 0)``), standardised
    by the training part's global pixel mean and standard deviation. ``image_shape`` is
    ``(1, 8, 8)``. Source: Alpaydin & Kaynak (1998), UCI ML repository, as bundled in
    ``sklearn.datasets.load_digits`` (no download).

    Raises
    ------
    ImportError
        When scikit-learn is not installed (``pip install scikit-learn``).
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "physdiff.data.load_digits needs scikit-learn (its bundled 8x8 digits); "
            "install it with `pip install scikit-learn`"
        ) from err
    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)  # (1797, 64), values 0..16
    y = np.asarray(bunch.target, dtype=np.int64)
    return _build("digits", x, y, (1, 8, 8), held_out=held_out, seed=seed, mode=mode)


def load_npz(
    path: str | os.PathLike,
    *,
    images_key: str = "images",
    labels_key: str | None = "labels",
    channels_last: bool = False,
    held_out: float = 0.0,
    seed: int = 0,
    mode: Mode = "global",
) -> ImageData:
    """A user's images from an ``.npz`` archive (keys in the module docstring).

    ``labels_key`` is optional in the file: when the key is absent the data set has no
    labels (pass ``labels_key=None`` to ignore labels that are there). ``held_out`` is the
    fraction of each class (or of the whole set) kept out of training, drawn with
    ``seed``; the default keeps everything for training.

    Raises
    ------
    InputError
        Missing file, unreadable archive, missing images key, non-numeric or non-finite
        (NaN, inf) values, labels of the wrong length or not integers.
    ShapeError
        Images that are not ``(n, d)``, ``(n, H, W)`` or ``(n, C, H, W)``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"data set {str(p)!r} does not exist (expected an .npz file)")
    try:
        archive = np.load(p, allow_pickle=False)
    except Exception as err:  # zipfile/pickle/ValueError: all mean "not a readable npz"
        raise InputError(f"data set {str(p)!r} is not a readable .npz archive: {err}") from err
    with archive:
        if not hasattr(archive, "files"):
            raise InputError(f"data set {str(p)!r} is a single .npy array, not an .npz archive")
        if images_key not in archive.files:
            raise InputError(
                f"data set {str(p)!r} has no key {images_key!r}; its keys are {archive.files}"
            )
        raw = archive[images_key]
        labels = None
        if labels_key is not None and labels_key in archive.files:
            labels = archive[labels_key]
    if raw.dtype.kind not in "biuf":
        raise InputError(
            f"data set {str(p)!r}, key {images_key!r}: values must be numeric; got dtype "
            f"{raw.dtype}"
        )
    x = raw.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"data set {str(p)!r}, key {images_key!r}: {int(bad.sum())} non-finite value(s) "
            f"(NaN or inf), the first at index {first}"
        )
    if x.ndim == 2:
        image_shape = None
    elif x.ndim == 3:
        image_shape = (1, x.shape[1], x.shape[2])
    elif x.ndim == 4:
        if channels_last:
            x = np.moveaxis(x, -1, 1)
        image_shape = (x.shape[1], x.shape[2], x.shape[3])
    else:
        raise ShapeError(
            f"data set {str(p)!r}, key {images_key!r}: images must have shape (n, d), "
            f"(n, H, W) or (n, C, H, W); got {raw.shape}"
        )
    if x.shape[0] < 1 or x[0].size < 1:
        raise InputError(f"data set {str(p)!r}, key {images_key!r} is empty (shape {raw.shape})")
    flat = np.ascontiguousarray(x.reshape(x.shape[0], -1))
    if labels is not None:
        if labels.shape != (flat.shape[0],) or labels.dtype.kind not in "biu":
            raise InputError(
                f"data set {str(p)!r}, key {labels_key!r}: labels must be integers of shape "
                f"({flat.shape[0]},); got dtype {labels.dtype}, shape {labels.shape}"
            )
        if labels.min() < 0:
            raise InputError(
                f"data set {str(p)!r}, key {labels_key!r}: labels must be >= 0; got "
                f"{int(labels.min())}"
            )
    return _build(str(p), flat, labels, image_shape, held_out=held_out, seed=seed, mode=mode)
