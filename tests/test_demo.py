"""The main job end to end on tiny synthetic data (what `make demo` runs at full size)."""

from __future__ import annotations

import csv

import pytest

from brainseg_tf import cli


@pytest.mark.slow
def test_demo_quick_writes_report_metrics_and_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quick"]) == 0
    report = (out / "report.md").read_text()
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    val_cases = {r["case"] for r in rows}
    assert len(val_cases) >= 1 and len(rows) == 3 * len(val_cases)
    assert {r["region"] for r in rows} == {"WT", "TC", "ET"}
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    for case in val_cases:  # predictions in the source's geometry and label convention (BraTS 2021: 1/2/4)
        from brainseg_tf import io

        pred = io.load_nifti(out / "predictions" / f"{case}.nii.gz")
        ref = io.read_case(out / "data" / case)
        assert pred.shape == ref.shape and (pred.affine == ref.affine).all()
        assert set(io.labels.label_values(pred.data)) <= {0, 1, 2, 4}
    for fig in ("data_case", "training_curves", "dice_boxplot", "prediction_vs_truth", "prediction_three_plane",
                "prediction_3d"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5_000
        assert f"figures/{fig}.png" in report
    assert "| WT |" in report and "optimizer steps" in report
