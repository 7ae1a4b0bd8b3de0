"""Evaluation per label scheme (issue 21): each scheme's regions, predictions that record no scheme
read in the reference's, and the refusals (values that contradict it, a scheme mismatch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import LPS, make_case

from brainseg_tf import evaluation as E
from brainseg_tf import io
from brainseg_tf.cli import main
from brainseg_tf.io import labels as L

SHAPE = (14, 12, 10)

# Hand-written from reference/brats-editions.md section 2 and peers.md: case id, file separator and
# tokens, and region -> SOURCE values, in the order the scheme scores them.
SCHEMES = {
    "ped2024": (
        "BraTS-PED-00001-000",
        "-",
        ("t2f", "t1n", "t1c", "t2w", "seg"),
        {"WT": {1, 2, 3, 4}, "TC": {1, 2, 3}, "ET": {1}, "NET": {2}, "CC": {3}, "ED": {4}},
    ),
    "gli2024": (
        "BraTS-GLI-00005-100",
        "-",
        ("t2f", "t1n", "t1c", "t2w", "seg"),
        {"WT": {1, 2, 3}, "TC": {1, 3}, "ET": {3}, "NETC": {1}, "SNFH": {2}, "RC": {4}},
    ),
    "met2024": (
        "BraTS-MET-00001-000",
        "-",
        ("t2f", "t1n", "t1c", "t2w", "seg"),
        {"WT": {1, 2, 3}, "TC": {1, 3}, "ET": {3}, "RC": {4}},
    ),
    "brats2021": (
        "BraTS2021_00001",
        "_",
        ("flair", "t1", "t1ce", "t2", "seg"),
        {"WT": {1, 2, 4}, "TC": {1, 4}, "ET": {4}},
    ),
}


def _values(scheme: str) -> list[int]:
    return sorted(set().union(*SCHEMES[scheme][3].values()))


def _source_label(values: list[int]) -> np.ndarray:
    """One 2x6x6 slab per value, slabs apart: every label present, every region non-empty."""
    label = np.zeros(SHAPE, np.uint8)
    for k, v in enumerate(values):
        label[1 + 3 * k : 3 + 3 * k, 3:9, 2:8] = v
    return label


def _reference(root: Path, scheme: str) -> tuple[str, np.ndarray]:
    """A one-case dataset in the scheme's file naming; the mask in SOURCE values, no stamp."""
    case_id, sep, tokens, _ = SCHEMES[scheme]
    images, _ = make_case(0, SHAPE)
    folder = root / case_id
    for modality, token in zip(io.MODALITIES, tokens):
        io.save_nifti(images[modality], folder / f"{case_id}{sep}{token}.nii.gz", affine=LPS)
    label = _source_label(_values(scheme))
    io.save_nifti(label, folder / f"{case_id}{sep}{tokens[-1]}.nii.gz", affine=LPS)
    return case_id, label


def _prediction(pred_dir: Path, case_id: str, label: np.ndarray) -> Path:
    """As another tool writes it: source values, no label stamp."""
    return io.save_nifti(label.astype(np.uint8), pred_dir / f"{case_id}.nii.gz", affine=LPS)


def _dice(result: E.EvaluationResult) -> dict[str, float]:
    return {row["region"]: row["dice"] for row in result.rows}


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_perfect_prediction_scores_one_and_each_removed_label_changes_exactly_its_regions(tmp_path, scheme):
    root, pred_dir = tmp_path / "ref", tmp_path / "pred"
    case_id, label = _reference(root, scheme)
    regions = SCHEMES[scheme][3]
    _prediction(pred_dir, case_id, label)
    result = E.evaluate_folders(pred_dir, root, progress=False, lesion_wise=False, out_csv=tmp_path / "m.csv")
    assert [row["region"] for row in result.rows] == list(regions)  # the scheme's regions, in its order
    assert set(_dice(result).values()) == {1.0} and {row["hd95"] for row in result.rows} == {0.0}
    assert f"predictions without a recorded label scheme read in the reference's scheme {scheme!r}" in result.notes
    # PED ids carried two schemes: the choice is said once, for every case it concerns
    assert any(note.startswith("BraTS-PED ids carried two") for note in result.notes) == (scheme == "ped2024")
    assert list(result.summary()) == list(regions)
    assert (tmp_path / "m.csv").read_text().count(f"{case_id},") == len(regions)
    for value in _values(scheme):
        _prediction(pred_dir, case_id, np.where(label == value, 0, label))
        dice = _dice(E.evaluate_folders(pred_dir, root, progress=False, lesion_wise=False))
        changed = {r for r, d in dice.items() if d < 1.0}
        assert changed == {r for r, held in regions.items() if value in held}, (scheme, value, dice)
        assert all(d == 1.0 for r, d in dice.items() if r not in changed)


def test_removed_label_scores_the_hand_computed_dice(tmp_path):
    # PED: removing CC (3) from a perfect prediction leaves TC = ET + NET (72 + 72 voxels of 216),
    # Dice 2 * 144 / (216 + 144) = 0.8; WT 2 * 216 / (288 + 216) = 6 / 7; CC empty in the prediction: 0.
    root, pred_dir = tmp_path / "ref", tmp_path / "pred"
    case_id, label = _reference(root, "ped2024")
    _prediction(pred_dir, case_id, np.where(label == 3, 0, label))
    result = E.evaluate_folders(pred_dir, root, progress=False)
    dice = _dice(result)
    assert dice["TC"] == pytest.approx(0.8) and dice["WT"] == pytest.approx(6 / 7) and dice["CC"] == 0.0
    cc = next(row for row in result.rows if row["region"] == "CC")
    assert cc["hd95"] == pytest.approx(E.LEGACY_EMPTY_HD95) and cc["volume_ref_ml"] == pytest.approx(0.072)


@pytest.mark.parametrize("scheme, bad", [("ped2024", 5), ("gli2024", 7), ("brats2021", 3)])
def test_values_that_contradict_the_reference_scheme_are_refused_naming_the_file(tmp_path, scheme, bad):
    root, pred_dir = tmp_path / "ref", tmp_path / "pred"
    case_id, label = _reference(root, scheme)
    wrong = label.copy()
    wrong[0, 0, 0] = bad
    path = _prediction(pred_dir, case_id, wrong)
    with pytest.raises(io.DataError) as err:
        E.evaluate_folders(pred_dir, root, progress=False)
    message = str(err.value)
    assert message.startswith(f"{path}: records no label scheme")
    assert f"reference's scheme {scheme!r}" in message and f"label values {bad} (1 voxels)" in message
    assert "pass --pred-convention" in message and err.value.path == path


def test_brainseg_evaluate_says_it_read_the_predictions_in_the_reference_scheme(tmp_path, capsys):
    root, pred_dir = tmp_path / "ref", tmp_path / "pred"
    case_id, label = _reference(root, "ped2024")
    _prediction(pred_dir, case_id, label)
    rc = main(["evaluate", "--pred", str(pred_dir), "--ref", str(root), "-q", "--out", str(tmp_path / "m.csv")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "predictions without a recorded label scheme read in the reference's scheme 'ped2024'" in out
    assert [line.split()[0] for line in out.splitlines() if line.split()[1:2] == ["dice"]] == list(
        SCHEMES["ped2024"][3]
    )
    # values outside the scheme: exit 2, the file named, nothing written
    wrong = label.copy()
    wrong[0, 0, 0] = 9
    path = _prediction(pred_dir, case_id, wrong)
    rc = main(["evaluate", "--pred", str(pred_dir), "--ref", str(root), "-q"])
    out, err = capsys.readouterr()
    assert rc == 2 and str(path) in err and "label values 9 (1 voxels)" in err and "Traceback" not in err


def test_pred_convention_still_overrides_and_may_name_a_scheme(tmp_path, capsys):
    # default scheme: an unrecorded 1/2/3 prediction contradicts BraTS 2021 (3 unused) ...
    root, pred_dir = tmp_path / "ref", tmp_path / "pred"
    case_id, label = _reference(root, "brats2021")
    _prediction(pred_dir, case_id, np.where(label == 4, 3, label))
    rc = main(["evaluate", "--pred", str(pred_dir), "--ref", str(root), "-q"])
    out, err = capsys.readouterr()
    assert rc == 2 and "label values 3 (72 voxels)" in err and "--pred-convention" in err
    # ... and reads as the flag says
    result = E.evaluate_folders(pred_dir, root, progress=False, pred_convention="brats2023")
    assert set(_dice(result).values()) == {1.0} and result.notes == []
    # a scheme named explicitly reads a PED file into its internal labels
    root, pred_dir = tmp_path / "ped", tmp_path / "ped_pred"
    case_id, label = _reference(root, "ped2024")
    _prediction(pred_dir, case_id, label)
    result = E.evaluate_folders(pred_dir, root, progress=False, pred_convention="ped2025")
    assert set(_dice(result).values()) == {1.0} and len(result.rows) == 6
    assert not any("without a recorded label scheme" in note for note in result.notes)


def test_a_prediction_in_another_scheme_is_refused_naming_both(tmp_path):
    root, pred_dir = tmp_path / "ref", tmp_path / "pred"
    case_id, label = _reference(root, "ped2024")
    ref_path = root / case_id / f"{case_id}-seg.nii.gz"
    path = io.save_nifti(label, pred_dir / f"{case_id}.nii.gz", affine=LPS, label_convention="brats2023")
    with pytest.raises(io.DataError) as err:
        E.evaluate_folders(pred_dir, root, progress=False)
    message = str(err.value)
    assert f"prediction {path} is in canonical labels (read with the 'brats2023' convention)" in message
    assert f"reference {ref_path} is in the 'ped2024' scheme" in message and "--pred-convention" in message
    # MET 2024 allows the same values 0-4, but they mean other labels: still two schemes
    io.save_nifti(label, path, affine=LPS, label_convention="met2024")
    with pytest.raises(io.DataError, match=r"'met2024' scheme .* 'ped2024' scheme"):
        E.evaluate_folders(pred_dir, root, progress=False)
    # the stamp brainseg writes for the scheme itself reads without a note
    io.save_nifti(label, path, affine=LPS, label_convention="ped2024")
    result = E.evaluate_folders(pred_dir, root, progress=False)
    assert set(_dice(result).values()) == {1.0}
    assert not any("without a recorded label scheme" in note for note in result.notes)


def test_label_files_read_by_their_stamp_or_case_id(tmp_path):
    ped = _source_label([1, 2, 3, 4])  # 1 ET, 2 NET, 3 CC, 4 ED
    internal = np.choose(ped, [0, 3, 1, 4, 2]).astype(np.uint8)  # internal: 1 NET, 2 ED, 3 ET, 4 CC
    stamped = io.save_nifti(ped, tmp_path / "a.nii.gz", affine=LPS, label_convention="ped2024")
    read = L.read_label_file(stamped)
    assert read.reading.name == "ped2024" and read.origin == "stamp"
    np.testing.assert_array_equal(read.labels, internal)
    np.testing.assert_array_equal(L.load_labels(stamped, None)[0], internal)
    # a stamp naming a scheme whose labels are the canonical ones reads through its convention
    men = io.save_nifti(np.where(ped == 4, 0, ped), tmp_path / "b.nii.gz", affine=LPS, label_convention="men")
    assert L.read_label_file(men).reading.name == "brats2023"
    assert L.get_reading("brats2021").name == "brats" and L.get_reading("msd").scheme is None
    with pytest.raises(ValueError, match="convention='ped2099' is unknown"):
        L.get_reading("ped2099")
    # a folder of label files (no scans): the case id's task prefix tells the scheme of an unstamped file
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    io.save_nifti(ped, ref_dir / "BraTS-PED-00002-000-seg.nii.gz", affine=LPS)
    _prediction(pred_dir, "BraTS-PED-00002-000", ped)
    result = E.evaluate_folders(pred_dir, ref_dir, progress=False, lesion_wise=False)
    assert [r["region"] for r in result.rows] == ["WT", "TC", "ET", "NET", "CC", "ED"]
    assert set(_dice(result).values()) == {1.0}
    assert "predictions without a recorded label scheme read in the reference's scheme 'ped2024'" in result.notes
    assert any("'ped2023'" in note for note in result.notes)  # PED ids carried two schemes: the choice is said


def test_evaluate_case_regions_from_internal_labels():
    # GLI 2024 internal labels: 1 NETC, 2 SNFH, 3 ET, 4 RC; RC is in no tumour region
    ref = np.zeros((8, 8, 8), np.uint8)
    ref[1:3, 1:3, 1:3], ref[4:6, 4:6, 4:6] = 3, 4
    pred = ref.copy()
    pred[4:6, 4:6, 4:6] = 0
    dice = {r["region"]: r["dice"] for r in E.evaluate_case(pred, ref, scheme="gli2024", lesion_wise=False)}
    assert dice == {"WT": 1.0, "TC": 1.0, "ET": 1.0, "NETC": 1.0, "SNFH": 1.0, "RC": 0.0}
    assert E.region_dice(pred, ref, scheme="met2024") == {"WT": 1.0, "TC": 1.0, "ET": 1.0, "RC": 0.0}
    # canonical schemes score as the canonical labels always did
    assert E.evaluate_case(pred % 4, ref % 4, scheme="brats2021") == E.evaluate_case(pred % 4, ref % 4)
    with pytest.raises(ValueError, match=r"'met2024' scheme's internal labels .* max 5"):
        E.evaluate_case(np.full((4, 4, 4), 5, np.uint8), np.zeros((4, 4, 4), np.uint8), scheme="met2024")
    with pytest.raises(ValueError, match="region"):
        E.evaluate_case(pred, ref, scheme="met2024", regions=["NETC"])
