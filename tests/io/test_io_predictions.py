"""The prediction folder: file names, predictions.json, and the one pairing of predictions with references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainseg_tf import io
from brainseg_tf.io import predictions as P


def _label(folder: Path, name: str, labels: np.ndarray, *, affine=None, convention: str | None = "canonical") -> Path:
    return io.save_nifti(
        labels,
        folder / name,
        affine=np.eye(4) if affine is None else affine,
        dtype=np.uint8,
        label_convention=convention,
    )


def _cases() -> dict[str, np.ndarray]:
    a = np.zeros((6, 5, 4), np.uint8)
    a[1:3, 1:3, 1:3] = 2
    b = a.copy()
    b[2, 2, 2] = 3
    return {"c1": a, "c2": b, "c3": a}


def test_file_names_of_a_prediction_folder(tmp_path: Path) -> None:
    assert P.label_path(tmp_path, "c1") == tmp_path / "c1.nii.gz"
    assert P.probabilities_path(tmp_path, "c1") == tmp_path / "c1_prob.nii.gz"
    assert P.uncertainty_path(tmp_path, "c1") == tmp_path / "c1_uncertainty.nii.gz"
    assert P.COMPANION_SUFFIXES == ("_prob.nii.gz", "_uncertainty.nii.gz")


def test_paired_cases_pairs_by_id_and_reports_missing_and_unmatched(tmp_path: Path) -> None:
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(), pred.mkdir()
    for cid, lab in _cases().items():
        _label(ref, f"{cid}_seg.nii.gz", lab)
    _label(pred, "c1.nii.gz", _cases()["c1"])
    _label(pred, "c2.nii.gz", _cases()["c2"])
    _label(pred, "c2_uncertainty.nii.gz", np.zeros((6, 5, 4), np.uint8), convention=None)  # a companion, no case
    _label(pred, "stray.nii.gz", _cases()["c1"])
    pairs = P.paired_cases(pred, ref)
    assert pairs.case_ids == ["c1", "c2", "c3"] and pairs.missing == ["c3"]
    assert [p.name for p in pairs.unmatched] == ["stray.nii.gz"]
    loaded = {c.case_id: c for c in pairs}
    np.testing.assert_array_equal(loaded["c2"].pred, _cases()["c2"])
    assert loaded["c3"].missing and not loaded["c3"].pred.any() and loaded["c1"].spacing == (1.0, 1.0, 1.0)
    only = P.paired_cases(pred, ref, case_ids=["c2"])
    assert only.case_ids == ["c2"] and only.missing == [] and len(only.unmatched) == 2
    with pytest.raises(ValueError, match="case_ids"):
        P.paired_cases(pred, ref, case_ids="c2")
    with pytest.raises(ValueError, match=r"case_ids \['c9'\] have no reference"):
        P.paired_cases(pred, ref, case_ids=["c9"])
    with pytest.raises(ValueError, match="convention='nope'"):
        P.paired_cases(pred, ref, pred_convention="nope")
    with pytest.raises(FileNotFoundError, match="prediction folder not found"):
        P.paired_cases(tmp_path / "none", ref)


def test_paired_cases_checks_shape_and_affine_naming_both_files(tmp_path: Path) -> None:
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(), pred.mkdir()
    lab = _cases()["c1"]
    _label(ref, "c1.nii.gz", lab)
    _label(pred, "c1.nii.gz", lab, affine=np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"(?s)pred/c1\.nii\.gz.*ref/c1\.nii\.gz.*different affines"):
        P.paired_cases(pred, ref).load("c1")
    _label(pred, "c1.nii.gz", lab[:5])
    with pytest.raises(ValueError, match=r"pred/c1\.nii\.gz has shape \(5, 5, 4\) but reference .*ref/c1\.nii\.gz"):
        P.paired_cases(pred, ref).load("c1")


def test_predictions_json_records_the_convention_and_the_ranking(tmp_path: Path) -> None:
    records = [
        {"case_id": "a", "status": "written", "uncertainty": 0.1},
        {"case_id": "b", "status": "written", "uncertainty": 0.3},
        {"case_id": "c", "status": "failed", "uncertainty": None},
    ]
    P.write_prediction_summary(tmp_path, records, convention="msd")
    summary = json.loads((tmp_path / P.PREDICTIONS_META).read_text())
    assert summary["ranking"] == ["b", "a"] and summary["convention"] == "msd"
    assert P.scored_cases(tmp_path) == {"a", "b"}
    assert P.recorded_conventions(tmp_path) == {"*": "msd"}
    # A case skipped later keeps the score the earlier run recorded.
    P.write_prediction_summary(tmp_path, [{"case_id": "b", "status": "skipped"}], convention="msd")
    assert P.read_summary(tmp_path)["cases"]["b"]["uncertainty"] == 0.3
    (tmp_path / P.PREDICTIONS_META).write_text(json.dumps({"cases": {"a": "brats2099"}}))
    with pytest.raises(io.DataError, match="case 'a'"):
        P.recorded_conventions(tmp_path)
