"""Reports: sections, scores against an independent Dice, every linked PNG real, atomic and deterministic writes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import assert_report_files, linked_figures

from brainseg_tf import io, report

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SHAPE = (16, 16, 12)


def _truth() -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[4:11, 4:11, 3:9] = 2  # ED
    label[6:9, 6:9, 4:7] = 3  # ET
    label[7, 7, 5] = 1  # NCR
    return label


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 if a.sum() + b.sum() == 0 else 2.0 * np.sum(a & b) / (a.sum() + b.sum())


@pytest.fixture()
def scored_folder(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """3 BraTS 2021 cases and predictions: exact, shifted by 2 voxels, and edema only."""
    rng = np.random.default_rng(0)
    data, pred_dir = tmp_path / "data", tmp_path / "pred"
    truth = _truth()
    preds = {}
    for i in range(3):
        cid = io.case_id_for("brats2021", i)
        images = {m: rng.integers(50, 200, size=SHAPE).astype(np.int16) for m in io.MODALITIES}
        io.write_case(data, "brats2021", cid, images, truth, LPS)
        preds[cid] = [truth, np.roll(truth, 2, axis=0), np.where(truth > 0, 2, 0).astype(np.uint8)][i]
    dataset = io.open_dataset(data)
    for cid, pred in preds.items():
        io.write_label(pred, dataset[cid], pred_dir / f"{cid}.nii.gz")
    return data, pred_dir, preds


def _table_rows(text: str, first: str) -> dict[str, list[str]]:
    """Rows of the Markdown table whose header starts with ``| first |``, keyed by their first cell."""
    block = text[text.index(f"| {first} |") :].split("\n\n")[0].splitlines()[2:]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in block)}


def test_predict_report_scores_figures_and_uncertainty(scored_folder) -> None:
    data, pred_dir, preds = scored_folder
    truth = _truth()
    best = io.case_id_for("brats2021", 0)
    unc = np.linspace(0, 1, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    nib.save(nib.Nifti1Image(unc, LPS), pred_dir / f"{best}{report.UNCERTAINTY_SUFFIX}")

    path = report.predict_report(pred_dir, data)
    assert path == pred_dir / "report.md"
    text = assert_report_files(pred_dir)
    for heading in ("# Prediction report", "## Scores", "Per predicted case, best first", "Legacy BraTS empty-mask"):
        assert heading in text
    figures = set(linked_figures(text))
    assert {
        "dice_per_case.png",
        "dice_boxplot.png",
        "hd95_boxplot.png",
        "best_case.png",
        "worst_case.png",
        "best_case_uncertainty.png",
    } <= figures
    assert "worst_case_uncertainty.png" not in figures  # no map beside the worst case's labels

    # Per-case Dice in the report against an independent computation from the arrays.
    per_case = _table_rows(text, "case")
    regions = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    for cid, pred in preds.items():
        expected = [_dice(np.isin(truth, v), np.isin(pred, v)) for v in regions.values()]
        assert [float(x) for x in per_case[cid][:3]] == pytest.approx(expected, abs=5e-4)
    assert list(per_case) == [io.case_id_for("brats2021", i) for i in (0, 1, 2)]  # best first
    assert f"best predicted case {best}" in text and f"worst predicted case {io.case_id_for('brats2021', 2)}" in text
    with open(pred_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 and {r["region"] for r in rows} == set(regions)
    # one viewer page per scored case, linked, carrying that case's prediction
    links = re.findall(r"\]\((viewers/[^)]+\.html)\)", text)
    assert sorted(links) == sorted(f"viewers/{cid}.html" for cid in preds)
    assert sorted(p.name for p in (pred_dir / "viewers").iterdir()) == sorted(f"{cid}.html" for cid in preds)
    page = (pred_dir / "viewers" / f"{best}.html").read_text()
    assert f"<title>{best}</title>" in page and '"prediction"' in page and '"reference"' in page


def test_predict_report_without_viewers(scored_folder, tmp_path: Path) -> None:
    data, pred_dir, _ = scored_folder
    text = report.predict_report(pred_dir, data, out_dir=tmp_path / "r", viewers=False).read_text()
    assert "viewers/" not in text and not (tmp_path / "r" / "viewers").exists()


def test_report_rewrite_is_deterministic_and_drops_stale_figures(scored_folder) -> None:
    data, pred_dir, _ = scored_folder
    best = io.case_id_for("brats2021", 0)
    unc_path = pred_dir / f"{best}{report.UNCERTAINTY_SUFFIX}"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), LPS), unc_path)
    report.predict_report(pred_dir, data)
    first = {p.name: p.read_bytes() for p in (pred_dir / "figures").iterdir()}
    assert "best_case_uncertainty.png" in first
    unc_path.unlink()
    report.predict_report(pred_dir, data)
    second = {p.name: p.read_bytes() for p in (pred_dir / "figures").iterdir()}
    assert set(second) == set(first) - {"best_case_uncertainty.png"}  # the old figure went with the old folder
    assert all(second[n] == first[n] for n in second)  # same inputs, same bytes
    assert_report_files(pred_dir)


def test_predict_report_with_values_its_reference_scheme_lacks_names_the_flag(tmp_path: Path, scored_folder) -> None:
    data, pred_dir, preds = scored_folder
    bare = tmp_path / "bare"
    bare.mkdir()
    # canonical 1/2/3 without a stamp: read in the BraTS 2021 reference's scheme, where 3 is no label
    for cid, pred in preds.items():
        nib.save(nib.Nifti1Image(pred.astype(np.uint8), LPS), bare / f"{cid}.nii.gz")
    with pytest.raises(io.DataError, match="--pred-convention"):
        report.predict_report(bare, data)
    assert not (bare / "report.md").exists() and not (bare / "figures").exists()


def _fake_run(run_dir: Path, per_case: dict | None) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "name": "toy",
                "model": {"name": "unet", "options": {"depth": 2}},
                "pipeline": {"patch_size": [16, 16, 16]},
            }
        )
    )
    (run_dir / "split.json").write_text(json.dumps({"train_ids": ["a", "b"], "val_ids": list(per_case or [])}))
    metrics = {
        "epochs_completed": 3,
        "optimizer_steps": 12,
        "monitor": "val_mean_region_dice",
        "best": {"value": 0.5, "epoch": 2},
        "wall_time_s_total": 30.0,
    }
    if per_case is not None:
        metrics["sliding_window"] = {"per_case": per_case}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with open(run_dir / "log.csv", "w") as fh:
        fh.write("epoch,learning_rate,loss,mean_region_dice,val_loss,val_mean_region_dice\n")
        for e, (loss, dice) in enumerate([(0.9, 0.1), (0.7, 0.3), (0.6, 0.5)]):
            fh.write(f"{e},0.001,{loss},{dice},{loss + 0.1},{dice - 0.05}\n")


def test_train_report_sections_from_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    per_case = {
        "c1": {"dice_wt": 0.9, "dice_tc": 0.8, "dice_et": 0.7, "hd95_wt": 2.0, "hd95_tc": 3.0, "hd95_et": 4.0},
        "c2": {"dice_wt": 0.5, "dice_tc": 0.4, "dice_et": 0.0, "hd95_wt": 9.0, "hd95_tc": 8.0, "hd95_et": 373.13},
    }
    _fake_run(run_dir, per_case)
    text = (report.train_report(run_dir, overlays=False)).read_text()
    assert_report_files(run_dir)
    assert "## Training" in text and "## Validation" in text
    assert "3 epochs, 12 optimizer steps" in text and "best `val_mean_region_dice` = 0.500 at epoch 2" in text
    assert {"training_curves.png", "dice_per_case.png", "dice_boxplot.png", "hd95_boxplot.png"} == set(
        linked_figures(text)
    )
    rows = _table_rows(text, "case")
    assert list(rows) == ["c1", "c2"] and rows["c2"][:3] == ["0.500", "0.400", "0.000"]
    summary = _table_rows(text, "region")
    assert summary["WT"][0] == "2" and summary["WT"][1].startswith("0.700 ± 0.200")


def test_train_report_without_validation_scores_and_on_a_non_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _fake_run(run_dir, None)
    text = report.train_report(run_dir).read_text()
    assert "No per-case validation scores" in text and linked_figures(text) == ["training_curves.png"]
    assert_report_files(run_dir)
    with pytest.raises(FileNotFoundError, match=r"nothing: not a run directory \(no config.json\)"):
        report.train_report(tmp_path / "nothing")
