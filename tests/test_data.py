"""physdiff.data: the fixed, stratified digits split and the .npz loader."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from physdiff import data
from physdiff.errors import InputError, ShapeError

# sha256 of the held-out indices (int64, sorted) of the default digits split: the split is
# part of the project's record and must never change silently (numpy-only, seed 0).
DIGITS_HELD_OUT_SHA256 = "f71c9ddf317ebe278f01acb013a7eed702a00236a3733c9eefc19ea0e7aefeee"


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return data.load_digits()


def test_digits_shapes_and_standardisation(digits):
    assert digits.train.shape == (1438, 64) and digits.held_out.shape == (359, 64)
    assert digits.train.dtype == np.float64 and digits.image_shape == (1, 8, 8)
    assert digits.n_classes == 10
    assert abs(digits.train.mean()) < 1e-12 and abs(digits.train.std() - 1) < 1e-12
    assert not digits.train.flags.writeable


def test_digits_split_is_fixed(digits):
    again = data.load_digits()
    np.testing.assert_array_equal(digits.held_out_index, again.held_out_index)
    np.testing.assert_array_equal(digits.train, again.train)
    sha = hashlib.sha256(digits.held_out_index.astype(np.int64).tobytes()).hexdigest()
    assert sha == DIGITS_HELD_OUT_SHA256
    # a different seed gives a different split
    other = data.load_digits(seed=1)
    assert not np.array_equal(other.held_out_index, digits.held_out_index)


def test_digits_split_is_stratified_and_disjoint(digits):
    from sklearn.datasets import load_digits

    y = load_digits().target
    counts = np.bincount(y)
    held = np.bincount(digits.held_out_labels, minlength=10)
    np.testing.assert_array_equal(held, np.round(0.2 * counts).astype(int))
    assert np.intersect1d(digits.train_index, digits.held_out_index).size == 0
    assert digits.train_index.size + digits.held_out_index.size == 1797
    np.testing.assert_array_equal(digits.train_labels, y[digits.train_index])


def test_digits_map_back_to_pixels(digits):
    from sklearn.datasets import load_digits

    raw = load_digits().data
    imgs = digits.to_images(digits.train[:5])
    assert imgs.shape == (5, 1, 8, 8)
    np.testing.assert_allclose(imgs.reshape(5, -1), raw[digits.train_index[:5]], atol=1e-12)
    np.testing.assert_allclose(
        digits.standardise(raw[digits.held_out_index]), digits.held_out, atol=1e-12
    )


def test_pixel_mode_leaves_constant_pixels_unscaled(digits):
    px = data.load_digits(mode="pixel")
    assert np.all(np.isfinite(px.train)) and np.all(px.std > 0)
    assert np.allclose(px.train.mean(axis=0), 0, atol=1e-12)


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.uniform(0, 1, size=(20, 3, 4, 5))
    labels = np.repeat(np.arange(4), 5)
    f = tmp_path / "mine.npz"
    np.savez(f, images=imgs, labels=labels)
    ds = data.load_npz(f, held_out=0.2, seed=3)
    assert ds.image_shape == (3, 4, 5) and ds.dim == 60
    assert ds.train.shape == (16, 60) and ds.held_out.shape == (4, 60)
    np.testing.assert_array_equal(np.bincount(ds.held_out_labels), [1, 1, 1, 1])
    back = ds.to_images(ds.held_out)
    np.testing.assert_allclose(back, imgs[ds.held_out_index], atol=1e-12)


def test_npz_channels_last_and_flat(tmp_path):
    imgs = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    f = tmp_path / "hwc.npz"
    np.savez(f, pics=imgs)
    ds = data.load_npz(f, images_key="pics", channels_last=True, mode="none")
    assert ds.image_shape == (3, 4, 4)
    np.testing.assert_array_equal(ds.to_images(ds.train), np.moveaxis(imgs, -1, 1))
    np.savez(f, images=np.ones((3, 7)))
    assert data.load_npz(f).image_shape is None


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_npz_rejects_non_finite(tmp_path, bad):
    imgs = np.zeros((4, 8, 8))
    imgs[2, 3, 1] = bad
    f = tmp_path / "bad.npz"
    np.savez(f, images=imgs)
    with pytest.raises(InputError, match=r"bad\.npz.*'images'.*non-finite.*\(2, 3, 1\)"):
        data.load_npz(f)


def test_npz_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        data.load_npz(tmp_path / "missing.npz")
    f = tmp_path / "x.npz"
    np.savez(f, other=np.zeros((2, 3)))
    with pytest.raises(InputError, match="no key 'images'.*other"):
        data.load_npz(f)
    np.savez(f, images=np.zeros((2, 2, 2, 2, 2)))
    with pytest.raises(ShapeError, match="images must have shape"):
        data.load_npz(f)
    np.savez(f, images=np.zeros((3, 4)), labels=np.array([0.5, 1, 2]))
    with pytest.raises(InputError, match="labels must be integers"):
        data.load_npz(f)
    g = tmp_path / "junk.npz"
    g.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="not a readable"):
        data.load_npz(g)


def test_split_rules():
    tr, te = data.stratified_split(10, None, 0.0, 0)
    assert te.size == 0 and tr.size == 10
    labels = np.array([0, 0, 0, 1])  # a class of one stays in training
    tr, te = data.stratified_split(4, labels, 0.5, 0)
    assert set(labels[te]) == {0} and te.size == 2
    with pytest.raises(InputError):
        data.stratified_split(4, labels, 1.0, 0)


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, physdiff.data; "
        "print(','.join(m for m in ('sklearn', 'torch', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"import physdiff.data also imported: {out}"
