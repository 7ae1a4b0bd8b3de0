"""Readers for every layout, write -> read round trips, label conventions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import LPS, make_case

from brainseg_tf import io
from brainseg_tf.io import labels

SHAPE = (12, 10, 8)


def write_dataset(root: Path, layout: str, n: int = 2, **kw) -> list[tuple[str, dict, np.ndarray]]:
    cases = []
    for i in range(n):
        images, label = make_case(i)
        cid = io.case_id_for(layout, i)
        io.write_case(root, layout, cid, images, label, LPS, **kw)
        cases.append((cid, images, label))
    return cases


@pytest.mark.parametrize("layout", io.LAYOUTS)
def test_every_layout_detected_and_read_canonically(tmp_path, layout):
    written = write_dataset(tmp_path, layout)
    ds = io.open_dataset(tmp_path)
    assert ds.layout == layout
    assert len(ds) == 2 and ds.case_ids == [c[0] for c in written]
    for cid, images, label in written:
        case = ds[cid]
        assert case.image.shape == SHAPE + (4,) and case.image.dtype == np.float32
        for k, m in enumerate(io.MODALITIES):  # canonical channel order, whatever the file names
            np.testing.assert_array_equal(case.image[..., k], images[m].astype(np.float32))
        np.testing.assert_array_equal(case.label, label)
        assert case.label.dtype == np.uint8
        np.testing.assert_allclose(case.affine, LPS)
        assert case.spacing == (1.0, 1.0, 1.0)
        assert case.convention == io.layouts.LAYOUT_CONVENTION[layout]


@pytest.mark.parametrize(
    "layout,file_values",
    [("brats2021", {1: 1, 2: 2, 3: 4}), ("brats2023", {1: 1, 2: 2, 3: 3}), ("msd", {1: 2, 2: 1, 3: 3})],
)
def test_files_hold_the_source_convention(tmp_path, layout, file_values):
    ((cid, _, label),) = write_dataset(tmp_path, layout, n=1)
    ref = io.open_dataset(tmp_path).ref(cid)
    on_disk = np.asanyarray(nib.load(str(ref.label)).dataobj)
    for canonical, stored in file_values.items():
        np.testing.assert_array_equal(on_disk == stored, label == canonical)


def test_msd_label_order_and_channel_order_from_dataset_json(tmp_path):
    ((cid, images, label),) = write_dataset(tmp_path, "msd", n=1)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["labels"]["1"] == "edema" and meta["numTraining"] == 1
    # A dataset.json listing the channels in another order is honoured.
    path = tmp_path / "imagesTr" / f"{cid}.nii.gz"
    stack = np.stack([images[m] for m in ("t2", "flair", "t1ce", "t1")], axis=-1)
    io.save_nifti(stack, path, affine=LPS)
    meta["modality"] = {"0": "T2w", "1": "FLAIR", "2": "t1gd", "3": "T1w"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    case = io.read_case(path)
    for k, m in enumerate(io.MODALITIES):
        np.testing.assert_array_equal(case.image[..., k], images[m])
    np.testing.assert_array_equal(case.label, label)
    assert case.convention == "msd" and case.case_id == cid


def test_brats2018_hgg_lgg_and_flat(tmp_path):
    images, label = make_case(0)
    io.write_case(tmp_path / "nested", "brats2018", "Brats18_CBICA_AAA_1", images, label, LPS, grade="HGG")
    io.write_case(tmp_path / "nested", "brats2018", "Brats18_TCIA10_BBB_1", images, label, LPS, grade="LGG")
    ds = io.open_dataset(tmp_path / "nested")
    assert ds.layout == "brats2018" and len(ds) == 2
    assert {r.grade for r in ds.refs} == {"HGG", "LGG"}
    flat = tmp_path / "flat"
    io.write_case(flat, "brats2018", "Brats18_2013_2_1", images, label, LPS)
    assert io.open_dataset(flat).layout == "brats2018"


def test_brats2020_case_355_uncompressed_with_odd_mask_name(tmp_path):
    images, label = make_case(3)
    ref = io.write_case(tmp_path, "brats2020", "BraTS20_Training_355", images, label, LPS, suffix=".nii")
    assert ref.label.name == "BraTS20_Training_355_seg.nii"
    ref.label.rename(ref.label.parent / "W39_1998.09.19_Segm.nii")
    with pytest.warns(UserWarning, match="W39_1998.09.19_Segm.nii"):
        case = io.read_case(tmp_path / "BraTS20_Training_355")
    np.testing.assert_array_equal(case.label, label)
    assert case.layout == "brats2020" and case.convention == "brats"


def test_kaggle_nesting_and_unlabelled_validation_cases(tmp_path):
    root = tmp_path / "BraTS2020_ValidationData" / "MICCAI_BraTS2020_ValidationData"
    images, _ = make_case(1)
    io.write_case(root, "brats2020", "BraTS20_Validation_001", images, None, LPS)
    (root / "name_mapping_validation_data.csv").write_text("x\n")
    ds = io.open_dataset(tmp_path)
    assert len(ds) == 1 and ds.labelled_ids == []
    case = ds[0]
    assert case.label is None and case.image.shape == SHAPE + (4,)


def test_dataset_lookup_and_iteration(tmp_path):
    written = write_dataset(tmp_path, "brats2023", n=3)
    ds = io.open_dataset(tmp_path)
    assert [c.case_id for c in ds] == [w[0] for w in written]
    assert written[1][0] in ds and "nope" not in ds
    with pytest.raises(KeyError, match="nope"):
        ds["nope"]


@pytest.mark.parametrize("layout", io.LAYOUTS)
@pytest.mark.parametrize("convention", [None, "brats", "brats2023", "msd"])
def test_write_label_round_trip_exact_in_voxels_and_geometry(tmp_path, layout, convention):
    ((cid, _, label),) = write_dataset(tmp_path / "ds", layout, n=1)
    case = io.open_dataset(tmp_path / "ds")[cid]
    out = io.write_label(label, case, tmp_path / "pred" / f"{cid}.nii.gz", convention=convention)
    vol = io.load_nifti(out)
    np.testing.assert_array_equal(vol.affine, case.affine)
    assert vol.spacing == case.spacing and vol.shape == case.shape and vol.data.dtype == np.uint8
    target = convention or case.convention
    np.testing.assert_array_equal(labels.to_canonical(vol.data, target), label)
    assert int(vol.header["sform_code"]) == int(case.header["sform_code"])


def test_write_label_rejects_wrong_shape(tmp_path):
    ((cid, _, label),) = write_dataset(tmp_path, "brats2021", n=1)
    case = io.read_case(tmp_path / cid)
    with pytest.raises(ValueError, match="native space"):
        io.write_label(label[1:], case, tmp_path / "x.nii.gz")


def test_nifti_round_trip_keeps_anisotropic_geometry(tmp_path):
    affine = np.array([[0.9, 0.05, 0, -90.0], [0, 1.1, 0, 120.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).normal(size=(7, 9, 5)).astype(np.float32)
    path = io.save_nifti(data, tmp_path / "a.nii.gz", affine=affine)
    vol = io.load_nifti(path)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-6)
    np.testing.assert_allclose(vol.spacing, np.sqrt((affine[:3, :3] ** 2).sum(0)), rtol=1e-6)
    again = io.load_nifti(io.save_nifti(vol.data, tmp_path / "b.nii", header=vol.header))
    np.testing.assert_array_equal(again.data, data)
    np.testing.assert_allclose(again.affine, affine, atol=1e-6)


def test_written_files_honour_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = io.save_nifti(np.ones((2, 2, 2), np.uint8), tmp_path / "m.nii.gz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "mask.nii.gz"
    io.save_nifti(np.ones((4, 4, 4), np.uint8), target)
    before = target.read_bytes()

    def broken_save(img, filename):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt("interrupted mid-write")

    monkeypatch.setattr(io.nifti.nib, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_nifti(np.zeros((4, 4, 4), np.uint8), target)
    assert target.read_bytes() == before  # old content intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz"]  # no temporary left behind


def test_label_conventions_table():
    canon = np.array([0, 1, 2, 3], np.uint8)
    assert labels.from_canonical(canon, "brats2020").tolist() == [0, 1, 2, 4]
    assert labels.from_canonical(canon, "brats2023").tolist() == [0, 1, 2, 3]
    assert labels.from_canonical(canon, "msd").tolist() == [0, 2, 1, 3]
    assert labels.to_canonical(np.array([0, 1, 2, 3, 4]), "brats2024_post").tolist() == [0, 1, 2, 3, 0]
    regions = labels.region_masks(canon)
    assert regions.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]]
    np.testing.assert_array_equal(labels.regions_to_labels(regions), canon)
    with pytest.raises(ValueError, match="convention='nope'"):
        labels.get_convention("nope")


def test_float_masks_with_integral_values_are_accepted():
    out = labels.to_canonical(np.array([0.0, 1.0, 2.0, 4.0], np.float32), "brats")
    assert out.tolist() == [0, 1, 2, 3]
    with pytest.raises(io.DataError, match="non-integer"):
        labels.to_canonical(np.array([0.5]), "brats")


# ----------------------------------------------------------------------------- real data


@pytest.mark.real_data
def test_real_brats2018_cases(real_brats2018):
    ds = io.open_dataset(real_brats2018)
    # every case folder with a _seg file, counted from the folder itself (the shared set grows)
    on_disk = sorted(p.name for p in real_brats2018.glob("Brats18_*") if (p / f"{p.name}_seg.nii.gz").is_file())
    assert len(on_disk) >= 18
    assert ds.layout == "brats2018" and sorted(ds.case_ids) == on_disk and sorted(ds.labelled_ids) == on_disk
    for ref in ds.refs:
        case = io.read_case(ref)
        seg = nib.load(str(ref.label))
        raw = np.asanyarray(seg.dataobj)
        assert set(np.unique(raw).tolist()) <= {0, 1, 2, 4}
        got = labels.label_values(case.label)
        for file_value, canonical in ((1, 1), (2, 2), (4, 3)):
            assert got.get(canonical, 0) == int((raw == file_value).sum()), (ref.case_id, file_value)
        np.testing.assert_array_equal(case.affine, seg.affine)
        assert case.shape == (240, 240, 155) and case.spacing == (1.0, 1.0, 1.0)
        assert case.convention == "brats"
        for k, m in enumerate(io.MODALITIES):
            # spot-check the documented channel order against the file of that modality
            expected = np.asanyarray(nib.load(str(ref.images[m])).dataobj)[:, :, 77]
            np.testing.assert_array_equal(case.image[:, :, 77, k], expected.astype(np.float32))


@pytest.mark.real_data
def test_real_case_write_read_round_trip(real_brats2018, tmp_path):
    case = io.read_case(real_brats2018 / "Brats18_CBICA_AQN_1")
    out = io.write_label(case.label, case, tmp_path / "Brats18_CBICA_AQN_1.nii.gz")
    again = nib.load(str(out))
    src = nib.load(str(case.ref.label))
    np.testing.assert_array_equal(np.asanyarray(again.dataobj), np.asanyarray(src.dataobj))
    np.testing.assert_array_equal(again.affine, src.affine)
    assert again.header.get_zooms() == src.header.get_zooms()
    assert again.header.get_data_shape() == src.header.get_data_shape()


def test_copy_of_dataset_with_other_layout_refused(tmp_path):
    write_dataset(tmp_path, "brats2021", n=1)
    write_dataset(tmp_path, "brats2023", n=1)
    with pytest.raises(io.DataError, match="several layouts"):
        io.open_dataset(tmp_path)
    shutil.rmtree(tmp_path / io.case_id_for("brats2023", 0))
    assert io.open_dataset(tmp_path).layout == "brats2021"
