"""The Kaggle per-slice HDF5 copy of BraTS 2020, written the way the set stores it and read back."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from brainseg_tf import io
from brainseg_tf.io import kaggle
from brainseg_tf.synthetic.phantom import synthesize_case

SHAPE = (64, 64, 24)


def write_kaggle_volume(folder: Path, volume: int, seed: int, order=kaggle.KAGGLE_CHANNELS) -> object:
    """Write a synthetic case as ``volume_<V>_slice_<S>.h5`` files (image channels in ``order``,
    mask one-hot NCR, ED, ET), as the Kaggle set does; returns the case."""
    case = synthesize_case(seed, SHAPE)
    folder.mkdir(parents=True, exist_ok=True)
    image = np.stack([case.images[m] for m in order], axis=-1).astype(np.float32)
    onehot = np.stack([case.label == k for k in (1, 2, 3)], axis=-1).astype(np.uint8)
    for s in range(SHAPE[2]):
        with h5py.File(folder / f"volume_{volume}_slice_{s}.h5", "w") as fh:
            fh["image"] = image[:, :, s]
            fh["mask"] = onehot[:, :, s]
    return case


def test_a_volume_reads_back_in_canonical_channels_and_labels(tmp_path):
    root = tmp_path / "BraTS2020_training_data" / "content" / "data"
    case = write_kaggle_volume(root, 7, seed=1, order=("t1", "t1ce", "t2", "flair"))
    write_kaggle_volume(root, 8, seed=2, order=("t1", "t1ce", "t2", "flair"))
    assert kaggle.is_slice_folder(tmp_path) and not kaggle.is_slice_folder(tmp_path / "nope")
    assert list(kaggle.find_slices(tmp_path)) == [7, 8]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = kaggle.read_volume(tmp_path, 7, channel_order=("t1", "t1ce", "t2", "flair"))
    assert read.case_id == "volume_7" and read.shape == SHAPE and read.scheme == "brats2021"
    for c, m in enumerate(io.MODALITIES):
        np.testing.assert_array_equal(read.image[..., c], case.images[m].astype(np.float32))
    np.testing.assert_array_equal(read.label, case.label)
    assert set(np.unique(read.label)) == {0, 1, 2, 3}


def test_a_wrong_channel_order_is_flagged_by_the_intensities(tmp_path):
    write_kaggle_volume(tmp_path, 1, seed=3, order=("t1", "t1ce", "t2", "flair"))
    with pytest.warns(
        UserWarning, match=r"volume_1: (edema|enhancing tumour) is not brighter in the channel read as"
    ) as got:
        kaggle.read_volume(tmp_path, 1)  # read with the default (flair, t1, t1ce, t2): wrong here
    assert "pass channel_order=" in str(got[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kaggle.read_volume(tmp_path, 1, check_order=False)


def test_bad_slices_are_named(tmp_path):
    write_kaggle_volume(tmp_path, 1, seed=0)
    (tmp_path / "volume_1_slice_5.h5").unlink()
    with pytest.raises(io.DataError, match=r"volume 1 lacks slices 5 of 0\.\.23"):
        kaggle.read_volume(tmp_path, 1)
    write_kaggle_volume(tmp_path, 2, seed=0)
    broken = tmp_path / "volume_2_slice_3.h5"
    broken.write_bytes(broken.read_bytes()[:100])
    with pytest.raises(io.DataError, match=rf"{broken}: cannot read as HDF5"):
        kaggle.read_volume(tmp_path, 2)
    write_kaggle_volume(tmp_path, 3, seed=0)
    with h5py.File(tmp_path / "volume_3_slice_4.h5", "r+") as fh:
        mask = fh["mask"][...]
        mask[0, 0] = (1, 1, 0)
        fh["mask"][...] = mask
    with pytest.raises(io.DataError, match=r"volume_3_slice_4.h5: mask is not one-hot: 1 voxels"):
        kaggle.read_volume(tmp_path, 3)
    with pytest.raises(ValueError, match=r"channel_order=\('t1', 't1'"):
        kaggle.read_volume(tmp_path, 1, channel_order=("t1", "t1", "t2", "flair"))
    with pytest.raises(io.DataError, match="no Kaggle slice files"):
        (tmp_path / "empty").mkdir()
        kaggle.find_slices(tmp_path / "empty")
