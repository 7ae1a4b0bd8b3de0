"""The main job end to end on tiny synthetic data through the console script (what `make demo` runs at full size)."""

from __future__ import annotations

import csv

import pytest
from helpers import assert_report_files, brainseg, linked_figures, ok

from brainseg_tf import io


@pytest.mark.slow
def test_demo_quick_writes_report_metrics_and_figures(tmp_path):
    out = tmp_path / "demo"
    proc = ok(brainseg("demo", "--out", out, "--quick", "--epochs", 1))
    assert f"demo finished: {out / 'report.md'}" in proc.stdout
    report = assert_report_files(out)
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    val_cases = {r["case"] for r in rows}
    assert len(val_cases) >= 1 and len(rows) == 3 * len(val_cases)
    assert {r["region"] for r in rows} == {"WT", "TC", "ET"}
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    for case in val_cases:  # predictions in the source's geometry and label convention (BraTS 2021: 1/2/4)
        pred = io.load_nifti(out / "predictions" / f"{case}.nii.gz")
        ref = io.read_case(out / "data" / case)
        assert pred.shape == ref.shape and (pred.affine == ref.affine).all()
        assert set(io.labels.label_values(pred.data)) <= {0, 1, 2, 4}
        assert f"| {case} |" in report  # the per-case table
    overlays = {"best_case.png", "worst_case.png"} if len(val_cases) > 1 else {"only_case.png"}
    assert {
        "data_case.png",
        "training_curves.png",
        "dice_per_case.png",
        "dice_boxplot.png",
        "prediction_three_plane.png",
        "prediction_3d.png",
    } | overlays <= set(linked_figures(report))
    for heading in ("## Data", "## Training", "## Held-out cases", "## Timings"):
        assert heading in report
    assert "| WT |" in report and "optimizer steps" in report
