"""MEN-RT (issue 21): ``<case>_t1c.nii.gz`` + ``<case>_gtv.nii.gz`` (underscore, T1c alone, 1 GTV) on
native anisotropic grids: detection, reading into a case that knows its one modality, read -> write
round trips in the source's values, the synthetic layout and the refusals."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf import io
from brainseg_tf.cli import main
from brainseg_tf.io.nifti import stamped_convention
from brainseg_tf.schemes import detect_scheme, get_scheme
from brainseg_tf.synthetic import LAYOUT_GRIDS, as_men_rt, case_seed, make_dataset, synthesize_case

CID = "BraTS-MEN-RT-0000-1"
SHAPE = (20, 18, 10)
SPACING = (0.9, 0.9, 2.0)
#: An LPS affine with MEN-RT-like anisotropic voxels (0.9 x 0.9 x 2.0 mm).
AFFINE = np.array([[-0.9, 0, 0, 10.0], [0, -0.9, 0, 20.0], [0, 0, 2.0, -5.0], [0, 0, 0, 1]])
SYNTH_SHAPE = (40, 36, 24)


def _t1c(shape=SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 900, size=shape).astype(np.int16)


def _gtv(shape=SHAPE) -> np.ndarray:
    """A 5 x 4 x 3 block of 1 (GTV) = 60 voxels."""
    mask = np.zeros(shape, np.uint8)
    mask[5:10, 6:10, 3:6] = 1
    return mask


def _write(root: Path, case_id: str = CID, gtv: np.ndarray | None = None, t1c: bool = True) -> Path:
    """A MEN-RT case as the release ships it: no label stamp, source values."""
    folder = root / case_id
    if t1c:
        io.save_nifti(_t1c(), folder / f"{case_id}_t1c.nii.gz", affine=AFFINE)
    io.save_nifti(_gtv() if gtv is None else gtv, folder / f"{case_id}_gtv.nii.gz", affine=AFFINE)
    return folder


def _raw(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


# ----------------------------------------------------------------------------- detection and reading


def test_a_men_rt_case_is_detected_and_read_with_its_one_modality(tmp_path):
    folder = _write(tmp_path)
    assert detect_scheme(CID).scheme.name == "men_rt"
    assert io.detect_layout(tmp_path) == "men_rt"
    ds = io.open_dataset(tmp_path)
    (ref,) = ds.refs
    assert ds.layout == io.MENRT_LAYOUT and ref.scheme == "men_rt" and ref.modalities == ("t1ce",)
    assert ref.label.name == f"{CID}_gtv.nii.gz" and list(ref.images) == ["t1ce"]
    case = io.read_case(folder)
    assert case.scheme == "men_rt" and case.layout == "men_rt" and case.available_modalities == ("t1ce",)
    # four canonical channels, T1c in its place (2), zeros where the case has no file
    assert case.image.shape == SHAPE + (4,) and case.modalities == io.MODALITIES
    np.testing.assert_array_equal(case.image[..., 2], _t1c().astype(np.float32))
    assert not case.image[..., [0, 1, 3]].any()
    np.testing.assert_allclose(case.spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(case.affine, AFFINE, atol=1e-6)
    np.testing.assert_array_equal(case.label, _gtv())  # internal 1 GTV = source 1
    assert get_scheme("men_rt").internal == ("GTV",) and get_scheme("men_rt").region_internal("GTV") == (1,)


def test_a_folder_without_the_task_prefix_is_men_rt_by_its_gtv_mask(tmp_path):
    _write(tmp_path, "patient_07")
    (ref,) = io.open_dataset(tmp_path).refs
    assert ref.layout == "men_rt" and ref.scheme == "men_rt" and ref.modalities == ("t1ce",)


def test_read_then_write_label_gives_back_the_source_voxels(tmp_path):
    source = _gtv()
    source[0, 0, 0] = 1  # a lone voxel on the grid's corner
    folder = _write(tmp_path / "data", gtv=source)
    case = io.read_case(folder)
    out = io.write_label(case.label, case, tmp_path / "pred" / f"{CID}.nii.gz")
    written = _raw(out)
    assert written.dtype == np.uint8 and written.shape == SHAPE
    np.testing.assert_array_equal(written, source)
    img = nib.load(str(out))
    assert stamped_convention(img.header) == "men_rt"
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-6)
    np.testing.assert_allclose(img.header.get_zooms()[:3], SPACING, rtol=1e-6)
    # the written file is a mask the reader takes back as the same internal labels
    (folder / f"{CID}_gtv.nii.gz").write_bytes(out.read_bytes())
    np.testing.assert_array_equal(io.read_case(folder).label, case.label)


def test_summary_and_validation(tmp_path):
    _write(tmp_path)
    assert io.validate_dataset(tmp_path) == []
    summary = io.dataset_summary(tmp_path)
    assert summary["layout"] == "men_rt" and summary["scheme"] == "men_rt"
    assert summary["shapes"] == {SHAPE: 1} and summary["spacings"] == {SPACING: 1}
    # 60 voxels of 0.9 * 0.9 * 2.0 = 1.62 mm3: 97.2 mm3
    assert list(summary["volumes_ml"]) == ["GTV"]
    assert summary["volumes_ml"]["GTV"] == [pytest.approx(0.0972)]
    assert "layout     men_rt (labels: scheme men_rt: 1 GTV)" in io.format_summary(summary)


# ----------------------------------------------------------------------------- refusals


def test_a_case_without_its_t1c_is_refused_naming_the_file_it_needs(tmp_path):
    folder = _write(tmp_path, t1c=False)
    with pytest.raises(io.DataError) as err:
        io.read_case(folder)
    message = str(err.value)
    assert message.startswith(f"{folder}: missing modality t1ce (expected a file named like {CID}_t1c.nii.gz")
    assert "the 'men_rt' scheme's cases hold t1ce" in message and "flair" not in message


def test_gtv_values_outside_the_scheme_are_refused(tmp_path):
    gtv = _gtv()
    gtv[0, 0, 0] = 2
    folder = _write(tmp_path, gtv=gtv)
    with pytest.raises(io.DataError, match=r"label values 2 \(1 voxels\) are not in the 'men_rt' scheme") as err:
        io.read_case(folder)
    assert str(folder / f"{CID}_gtv.nii.gz") in str(err.value)


def test_a_model_asking_for_a_modality_the_case_lacks_is_refused(tmp_path):
    folder = _write(tmp_path)
    case = io.read_case(folder)
    io.require_modalities(case, ["t1ce"])  # what the case has: fine
    with pytest.raises(io.DataError) as err:
        io.require_modalities(case, ["flair", "t1ce"])
    message = str(err.value)
    assert message.startswith(f"{folder}: case '{CID}' has no flair image: the model uses flair, t1ce")
    assert "this case has t1ce" in message
    # stating a four-modality scheme for it names what is missing
    with pytest.raises(io.DataError, match=r"missing modality flair, t1, t2 .* the 'gli2024' scheme's cases hold"):
        io.read_case(folder, scheme="gli2024")


def test_write_case_holds_the_men_rt_scheme_only(tmp_path):
    with pytest.raises(ValueError, match=r"scheme='gli2024': the 'men_rt' layout holds the 'men_rt' scheme only"):
        io.write_case(tmp_path, "men_rt", CID, {"t1ce": _t1c()}, _gtv(), AFFINE, scheme="gli2024")
    with pytest.raises(ValueError, match=r"images is missing modalities \['t1ce'\]"):
        io.write_case(tmp_path, "men_rt", CID, {"flair": _t1c()}, _gtv(), AFFINE)
    with pytest.raises(ValueError, match=r"internal label map holds \[2\]"):
        io.write_case(tmp_path, "men_rt", CID, {"t1ce": _t1c()}, _gtv() * 2, AFFINE)
    ref = io.write_case(tmp_path, "men_rt", io.case_id_for("men_rt", 0), {"t1ce": _t1c()}, _gtv(), AFFINE)
    assert ref.case_id == CID and [p.name for p in ref.files] == [f"{CID}_t1c.nii.gz", f"{CID}_gtv.nii.gz"]
    assert stamped_convention(nib.load(str(ref.label)).header) == "men_rt"


# ----------------------------------------------------------------------------- synthetic MEN-RT


def test_as_men_rt_keeps_t1c_and_the_tumour_core_as_gtv():
    for i in range(3):
        case = synthesize_case(case_seed(0, i), SYNTH_SHAPE, spacing=SPACING)
        men = as_men_rt(case)
        assert list(men.images) == ["t1ce"] and men.scheme == "men_rt" and men.spacing == SPACING
        np.testing.assert_array_equal(men.images["t1ce"], case.images["t1ce"])
        np.testing.assert_array_equal(men.label, np.isin(case.label, (1, 3)))  # TC: NCR and ET
        assert men.label.any() and not men.label[case.label == 2].any()  # edema is not GTV
        assert men.volumes_ml["gtv"] == pytest.approx(men.label.sum() * 0.9 * 0.9 * 2.0 / 1000)
    with pytest.raises(ValueError, match="already a MEN-RT case"):
        as_men_rt(men)


def test_synth_men_rt_layout(tmp_path):
    assert LAYOUT_GRIDS["men_rt"] == ((512, 512, 136), (0.5, 0.5, 1.2))  # the release's native grid
    out = tmp_path / "menrt"
    rc = main(
        ["synth", "--layout", "menrt", "--cases", "2", "--out", str(out), "-q"]
        + ["--shape", *map(str, SYNTH_SHAPE), "--spacing", *map(str, SPACING)]
    )
    assert rc == 0
    ids = ["BraTS-MEN-RT-0000-1", "BraTS-MEN-RT-0001-1"]
    assert sorted(p.name for p in out.iterdir()) == ids  # no survival table: MEN-RT ships none
    for cid in ids:
        assert sorted(p.name for p in (out / cid).iterdir()) == [f"{cid}_gtv.nii.gz", f"{cid}_t1c.nii.gz"]
    ds = io.open_dataset(out)
    assert ds.layout == "men_rt" and {r.scheme for r in ds.refs} == {"men_rt"}
    for cid in ids:
        case = ds[cid]
        assert case.shape == SYNTH_SHAPE and case.available_modalities == ("t1ce",)
        np.testing.assert_allclose(case.spacing, SPACING, rtol=1e-6)
        gtv = _raw(ds.ref(cid).label)
        assert set(np.unique(gtv)) == {0, 1} and stamped_convention(nib.load(str(ds.ref(cid).label)).header) == "men_rt"
        out_path = io.write_label(case.label, case, tmp_path / "pred" / f"{cid}.nii.gz")
        np.testing.assert_array_equal(_raw(out_path), gtv)  # read -> write: the source voxels
    assert io.validate_dataset(out) == []
    # the same seed writes the same case as make_dataset
    again = make_dataset(
        tmp_path / "again", layout="men_rt", n_cases=1, shape=SYNTH_SHAPE, spacing=SPACING, progress=False
    )
    np.testing.assert_array_equal(
        _raw(again / ids[0] / f"{ids[0]}_gtv.nii.gz"), _raw(out / ids[0] / f"{ids[0]}_gtv.nii.gz")
    )


# ----------------------------------------------------------------------------- docs


def test_docs_quote_what_the_reader_says(tmp_path, monkeypatch):
    doc = Path(__file__).resolve().parents[2] / "docs" / "editions.md"
    text = doc.read_text()
    monkeypatch.chdir(tmp_path)
    folder = _write(Path("menrt"))
    with pytest.raises(io.DataError) as err:  # what a model reading the four modalities is told
        io.require_modalities(io.open_dataset("menrt").refs[0], io.MODALITIES)
    assert f"| `{err.value}` |" in text, f"{doc}: the message changed to {err.value}"
    (folder / f"{CID}_t1c.nii.gz").unlink()
    (message,) = io.validate_dataset("menrt")
    assert f"| `{message}` |" in text, f"{doc}: the message changed to {message}"
