"""Preprocessing: brain box, z-score inside the brain, reorientation/resampling and paste_back."""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf.data.preprocess import Geometry, brain_bbox, class_locations, paste_back, preprocess_case


def toy_case(shape=(40, 36, 30), seed=0, affine=None, spacing=(1.0, 1.0, 1.0)):
    """An ellipsoid 'brain' with 4 positive modalities and a nested tumour (1 core, 2 edema, 3 ET)."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"), -1)
    brain = (((g - [0.05, -0.1, 0.0]) / [0.7, 0.8, 0.75]) ** 2).sum(-1) < 1
    image = np.zeros(shape + (4,), np.float32)
    for c in range(4):
        image[..., c] = np.where(brain, 100 * (c + 1) + 10 * rng.standard_normal(shape), 0)
    d = np.sqrt(((g - [0.2, 0.1, 0.0]) ** 2).sum(-1))
    label = np.zeros(shape, np.uint8)
    label[(d < 0.35) & brain] = 2
    label[(d < 0.2) & brain] = 3
    label[(d < 0.1) & brain] = 1
    aff = np.diag(list(spacing) + [1.0]) if affine is None else affine
    return SimpleNamespace(image=image, label=label, affine=aff, spacing=spacing, case_id=f"toy{seed}")


def test_brain_bbox_hand_made():
    img = np.zeros((10, 12, 8, 2), np.float32)
    img[2:5, 3, 1:7, 1] = 1.0
    assert brain_bbox(img) == ((2, 5), (3, 4), (1, 7))
    assert brain_bbox(img, margin=2) == ((0, 7), (1, 6), (0, 8))
    assert brain_bbox(np.zeros((4, 5, 6))) == ((0, 4), (0, 5), (0, 6))
    with pytest.raises(ValueError, match="margin"):
        brain_bbox(img, margin=-1)


def test_crop_and_zscore_inside_brain():
    case = toy_case()
    pre = preprocess_case(case)
    mask = (case.image != 0).any(-1)
    box = brain_bbox(case.image)
    assert pre.geometry.crop == box and pre.geometry.is_native_grid
    assert pre.image.shape == tuple(b - a for a, b in box) + (4,) and pre.image.dtype == np.float32
    assert pre.label.dtype == np.uint8 and pre.label.shape == pre.image.shape[:3]
    m = pre.brain_mask
    assert m.sum() == mask.sum()
    for c in range(4):
        vals = pre.image[..., c][m]
        assert abs(vals.mean()) < 1e-4 and abs(vals.std() - 1) < 1e-3
    assert np.all(pre.image[~m] == 0)
    # labels are cropped, not changed
    assert (pre.label > 0).sum() == (case.label > 0).sum()


def test_paste_back_is_inverse_of_crop():
    case = toy_case()
    pre = preprocess_case(case, margin=3)
    back = paste_back(pre.label, pre.geometry)
    np.testing.assert_array_equal(back, case.label)
    probs = np.random.default_rng(0).random(pre.label.shape + (4,)).astype(np.float32)
    full = paste_back(probs, pre.geometry, fill=0)
    assert full.shape == case.label.shape + (4,)
    (x0, x1), (y0, y1), (z0, z1) = pre.geometry.crop
    np.testing.assert_array_equal(full[x0:x1, y0:y1, z0:z1], probs)
    with pytest.raises(ValueError, match="cropped grid"):
        paste_back(np.zeros((3, 3, 3)), pre.geometry)


def test_reorient_round_trip_and_affine():
    # LPS-like BraTS affine: diag(-1, -1, 1)
    aff = np.array([[-1.0, 0, 0, 39], [0, -1, 0, 35], [0, 0, 1, 0], [0, 0, 0, 1]])
    case = toy_case(affine=aff)
    pre = preprocess_case(case, reorient=True)
    assert pre.geometry.reorient is not None
    assert nib.aff2axcodes(pre.geometry.grid_affine) == ("R", "A", "S")
    # world coordinate of the first cropped voxel is the same as in the native grid
    (x0, _), (y0, _), (z0, _) = pre.geometry.crop
    world = pre.geometry.cropped_affine @ [0, 0, 0, 1]
    native_idx = np.linalg.solve(aff, world)[:3].round().astype(int)
    assert pre.label[0, 0, 0] == case.label[tuple(native_idx)]
    np.testing.assert_array_equal(paste_back(pre.label, pre.geometry), case.label)


def test_resample_and_paste_back_nearest_and_linear():
    case = toy_case(shape=(40, 36, 30), spacing=(1.0, 1.0, 2.0))
    pre = preprocess_case(case, spacing=1.0, crop=True)
    assert pre.geometry.target_spacing == (1.0, 1.0, 1.0)
    assert pre.geometry.grid_shape == (40, 36, 60)
    back = paste_back(pre.label, pre.geometry)
    assert back.shape == case.label.shape and back.dtype == np.uint8
    assert (back == case.label).mean() > 0.99
    prob = paste_back((pre.label == 3).astype(np.float32), pre.geometry)
    assert prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1
    with pytest.raises(ValueError, match="spacing"):
        preprocess_case(case, spacing=0)


def test_geometry_json_round_trip():
    pre = preprocess_case(toy_case(), reorient=True, spacing=(1.0, 1.0, 1.0))
    g2 = Geometry.from_dict(pre.geometry.to_json())
    assert g2.crop == pre.geometry.crop and g2.shape == pre.geometry.shape
    np.testing.assert_allclose(g2.cropped_affine, pre.geometry.cropped_affine)


def test_class_locations_subsample():
    label = toy_case().label
    locs = class_locations(label, max_per_class=50, seed=1)
    assert set(locs) == {1, 2, 3}
    for c, xyz in locs.items():
        assert xyz.shape[1] == 3 and len(xyz) <= 50
        assert np.all(label[tuple(xyz.T)] == c)
    assert class_locations(np.zeros((4, 4, 4), np.uint8)) == {}


def test_real_case_preprocess(real_brats2018):
    from brainseg_tf.io import open_dataset

    ds = open_dataset(real_brats2018)
    case = ds[0]
    pre = preprocess_case(case)
    assert pre.image.shape[-1] == 4 and all(s < 240 for s in pre.image.shape[:2])
    np.testing.assert_array_equal(paste_back(pre.label, pre.geometry), case.label)
