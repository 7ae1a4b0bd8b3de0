"""The main job end to end on tiny synthetic data through the console script (what `make demo` runs at full size)."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import REPO_ROOT, assert_report_files, brainseg, linked_figures, ok

from brainseg_tf import demo, io
from brainseg_tf.report import demo_summary, publish_example

EXAMPLE = REPO_ROOT / "docs" / "report_example"


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

    assert "## Interactive viewers" in report and (out / "viewers").is_dir()
    record = json.loads((out / "settings.json").read_text())
    assert record["settings"] == {**demo.default_settings(quick=True), "epochs": 1}
    assert set(record["mean_dice"]) == {"WT", "TC", "ET"} and record["targets"] == demo.TARGETS
    assert "brainseg demo: held-out mean Dice WT" in proc.stdout and " min (targets WT >= 0.85" in proc.stdout
    with pytest.raises(ValueError, match="--quick"):
        publish_example(out, tmp_path / "example")


def test_committed_example_is_the_full_demo_and_meets_its_targets():
    """docs/report_example is what `make docs-example` published from a full `brainseg demo`."""
    record = json.loads((EXAMPLE / "settings.json").read_text())
    assert record["settings"] == demo.default_settings(), "regenerate it: make docs-example"
    assert record["targets"] == demo.TARGETS
    assert all(record["mean_dice"][r] >= t for r, t in demo.TARGETS.items()), record["mean_dice"]
    assert record["minutes"] <= 5.0
    text = (EXAMPLE / "report.md").read_text()
    assert demo_summary(record["mean_dice"], record["minutes"] * 60, demo.TARGETS).split(" in ")[0] in text
    assert sorted(linked_figures(text)) == sorted(p.name for p in (EXAMPLE / "figures").iterdir())
