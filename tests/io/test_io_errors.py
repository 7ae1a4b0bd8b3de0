"""Every kind of bad input gets an error that names the file and the problem."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
from helpers import LPS, make_case

from brainseg_tf import io


@pytest.fixture
def case_dir(tmp_path):
    images, label = make_case(0)
    io.write_case(tmp_path, "brats2020", "BraTS20_Training_001", images, label, LPS)
    return tmp_path / "BraTS20_Training_001"


def _file(case_dir, token):
    return case_dir / f"BraTS20_Training_001_{token}.nii.gz"


def test_missing_modality(case_dir):
    _file(case_dir, "t1ce").unlink()
    with pytest.raises(io.DataError, match=r"missing modality t1ce") as err:
        io.read_case(case_dir)
    assert str(case_dir) in str(err.value)


def test_truncated_gzip(case_dir):
    f = _file(case_dir, "flair")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(io.DataError, match=r"(truncated|corrupt)") as err:
        io.read_case(case_dir)
    assert str(f) in str(err.value)


def test_corrupt_gzip(case_dir):
    f = _file(case_dir, "t2")
    data = bytearray(f.read_bytes())
    data[40:400] = bytes(360)  # destroy the deflate stream
    f.write_bytes(bytes(data))
    with pytest.raises(io.DataError) as err:
        io.read_case(case_dir)
    assert str(f) in str(err.value)


def test_not_a_nifti(case_dir):
    f = _file(case_dir, "t1")
    f.write_bytes(gzip.compress(b"this is a text file, not an image" * 20))
    with pytest.raises(io.DataError, match="NIfTI") as err:
        io.read_case(case_dir)
    assert str(f) in str(err.value)


def test_empty_file(case_dir):
    f = _file(case_dir, "t1")
    f.write_bytes(b"")
    with pytest.raises(io.DataError, match="empty") as err:
        io.read_case(case_dir)
    assert str(f) in str(err.value)


def test_shape_mismatch_between_modalities(case_dir):
    f = _file(case_dir, "t2")
    io.save_nifti(np.ones((5, 5, 5), np.int16), f, affine=LPS)
    with pytest.raises(io.DataError, match=r"shape \(5, 5, 5\) differs from .*flair") as err:
        io.read_case(case_dir)
    assert str(f) in str(err.value)


def test_affine_mismatch_between_modalities(case_dir):
    f = _file(case_dir, "t1")
    shifted = LPS.copy()
    shifted[0, 3] += 2.0
    io.save_nifti(io.load_nifti(f).data, f, affine=shifted)
    with pytest.raises(io.DataError, match="affine differs") as err:
        io.read_case(case_dir)
    assert str(f) in str(err.value)


def test_mask_affine_mismatch(case_dir):
    f = _file(case_dir, "seg")
    shifted = LPS.copy()
    shifted[2, 3] = 5.0
    io.save_nifti(io.load_nifti(f).data, f, affine=shifted)
    with pytest.raises(io.DataError, match="affine differs") as err:
        io.read_case(case_dir)
    assert str(f) in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_voxels(case_dir, bad):
    f = _file(case_dir, "flair")
    data = io.load_nifti(f).data.astype(np.float32)
    data[1, 2, 3] = bad
    io.save_nifti(data, f, affine=LPS)
    with pytest.raises(io.DataError, match="NaN or Inf") as err:
        io.read_case(case_dir)
    assert str(f) in str(err.value)


def test_label_value_outside_convention(case_dir):
    f = _file(case_dir, "seg")
    seg = io.load_nifti(f).data.copy()
    seg[0, 0, :3] = 3  # label 3 is unused in BraTS 2017-2021
    io.save_nifti(seg, f, affine=LPS)
    with pytest.raises(io.DataError, match=r"label values 3 \(3 voxels\) are not in the 'brats' convention") as err:
        io.read_case(case_dir)
    assert str(f) in str(err.value)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(io.DataError, match="empty folder") as err:
        io.open_dataset(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value)


def test_unknown_layout(tmp_path):
    folder = tmp_path / "weird" / "case1"
    io.save_nifti(np.ones((4, 4, 4), np.int16), folder / "scan_a.nii.gz")
    io.save_nifti(np.ones((4, 4, 4), np.int16), folder / "scan_b.nii.gz")
    with pytest.raises(io.DataError, match="unknown layout") as err:
        io.open_dataset(tmp_path / "weird")
    assert str(folder) in str(err.value)


def test_folder_without_images(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    with pytest.raises(io.DataError, match="unknown layout"):
        io.open_dataset(tmp_path)


def test_wrong_path(tmp_path):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        io.open_dataset(missing)
    with pytest.raises(io.MissingFileError, match=re.escape(str(missing))):
        io.read_case(missing)
    with pytest.raises(io.DataError, match="file not found"):
        io.load_nifti(missing / "x.nii.gz")


def test_validate_reports_all_problems_at_once(tmp_path):
    for i in range(3):
        images, label = make_case(i)
        io.write_case(tmp_path, "brats2021", io.case_id_for("brats2021", i), images, label, LPS)
    assert io.validate_dataset(tmp_path) == []
    bad1 = tmp_path / "BraTS2021_00000" / "BraTS2021_00000_flair.nii.gz"
    bad1.write_bytes(bad1.read_bytes()[:100])
    seg = tmp_path / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz"
    arr = io.load_nifti(seg).data.copy()
    arr[0, 0, 0] = 7
    io.save_nifti(arr, seg, affine=LPS)
    problems = io.validate_dataset(tmp_path)
    assert len(problems) == 2
    assert str(bad1) in problems[0] and str(seg) in problems[1] and "7 (1 voxels)" in problems[1]


def test_a_case_built_in_memory_without_a_modality_is_refused_naming_it():
    case = io.Case(
        image=np.zeros((4, 4, 4, 4), np.float32),
        label=None,
        affine=np.eye(4),
        header=None,
        spacing=(1.0, 1.0, 1.0),
        case_id="mine",
        convention="brats",
        layout="memory",
        shape=(4, 4, 4),
        available_modalities=("t1ce", "t2"),
    )
    io.require_modalities(case, ("t1ce",))  # has it: no error
    with pytest.raises(io.DataError) as err:
        io.require_modalities(case, ("flair", "t1ce", "t2"), what="the survival model")
    assert str(err.value) == (
        "case 'mine' has no flair image: the survival model uses flair, t1ce, t2, this case has t1ce, t2"
    )
