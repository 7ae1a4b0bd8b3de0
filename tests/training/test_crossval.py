"""``brainseg cv``: the out-of-fold measure on tiny synthetic cases.

One module-scoped run trains 3 folds over 5 cases (a depth-2 U-Net with 4 base filters, 2 epochs of
2 steps) with a recipe time limit so short that ``brainseg train`` would stop each fold after its
first epoch; the tests read what it wrote: every case validated by exactly one fold, each
out-of-fold prediction made by that fold's model (never one that trained on the case), the time
limit switched off, a re-run that predicts nothing again, and the scores with their intervals.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from brainseg_tf.training import load_split
from brainseg_tf.training.crossval import OOF_DIR, cross_validate, fold_assignment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FOLDS = 3
EPOCHS = 2


def _recipe(root: Path) -> dict:
    return {
        "name": "cv_tiny",
        "data": {"root": str(root)},
        "split": {"method": "fixed", "val_ids": ["BraTS2021_00000"]},  # cv makes it the seeded k-fold split
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "instance", "head": "sigmoid"}},
        "pipeline": {"kind": "patch", "patch_size": [16, 16, 16], "batch_size": 2, "augment": "none"},
        "validation": {
            "mode": "patches",
            "patches_per_case": 1,
            "final_sliding_window": False,
            "select_postprocessing": False,
        },
        "training": {"epochs": EPOCHS, "steps_per_epoch": 2, "verbose": 2, "max_minutes": 1e-4},
    }


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, synthetic_dataset) -> dict:
    root = synthetic_dataset(n_cases=5, seed=3, shape=(32, 32, 24))
    run_dir = tmp_path_factory.mktemp("cv") / "run"
    result = cross_validate(_recipe(root), run_dir=run_dir, folds=FOLDS, progress=False)
    return {"root": root, "run_dir": run_dir, "result": result}


def _oof(run_dir: Path) -> dict:
    return json.loads((run_dir / OOF_DIR / "oof.json").read_text())


def test_folds_cover_every_case_exactly_once(cv_run: dict) -> None:
    run_dir = cv_run["run_dir"]
    everyone = sorted(p.name for p in cv_run["root"].iterdir() if p.is_dir())
    assert len(everyone) == 5
    validated = [c for k in range(FOLDS) for c in load_split(run_dir / f"fold_{k}").val_ids]
    assert sorted(validated) == everyone  # each case once, none left out
    assert sorted(len(load_split(run_dir / f"fold_{k}").val_ids) for k in range(FOLDS)) == [1, 2, 2]
    assignment = fold_assignment(run_dir, FOLDS)
    assert sorted(assignment) == everyone and set(assignment.values()) == set(range(FOLDS))


def test_out_of_fold_predictions_come_from_the_fold_that_held_the_case_out(cv_run: dict) -> None:
    run_dir = cv_run["run_dir"]
    oof = _oof(run_dir)
    assert cv_run["result"].completed and len(oof["cases"]) == 5
    for case, entry in oof["cases"].items():
        split = load_split(run_dir / f"fold_{entry['fold']}")
        assert case in split.val_ids and case not in split.train_ids
        model = run_dir / entry["model"]
        assert model == run_dir / f"fold_{entry['fold']}" / "best.keras"
        assert entry["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
        assert (run_dir / OOF_DIR / entry["file"]).is_file()
    assert oof["checkpoint"] == "best" and oof["postprocessing"].startswith("off")


def test_time_limit_is_switched_off_and_recorded(cv_run: dict) -> None:
    run_dir = cv_run["run_dir"]
    for k in range(FOLDS):  # a 0.006 s limit would have stopped `brainseg train` after epoch 1
        metrics = json.loads((run_dir / f"fold_{k}" / "metrics.json").read_text())
        assert metrics["completed"] and metrics["epochs_completed"] == EPOCHS
    steps = _oof(run_dir)["fixed_steps"]
    assert steps == {
        "epochs": EPOCHS,
        "steps_per_epoch": 2,
        "optimizer_steps": 2 * EPOCHS,
        "recipe_max_minutes": 1e-4,
        "max_minutes": None,
    }


def test_scores_intervals_and_report(cv_run: dict) -> None:
    out = cv_run["run_dir"] / OOF_DIR
    summary = json.loads((out / "summary.json").read_text())
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert summary["n_cases"] == 5 and summary["regions"] == ["WT", "TC", "ET"]
    for region in ("WT", "TC", "ET"):
        dice = [float(r["dice"]) for r in rows if r["region"] == region]
        stats = summary["dice"][region]
        assert len(dice) == 5 and stats["mean"] == pytest.approx(np.mean(dice))
        assert stats["ci95"][0] <= stats["mean"] <= stats["ci95"][1]
    per_case_means = [c["mean"] for c in summary["per_case"].values()]
    assert summary["dice"]["mean"]["mean"] == pytest.approx(np.mean(per_case_means))
    worst = [w["mean"] for w in summary["worst_cases"]]
    assert worst == sorted(per_case_means)[: len(worst)]
    assert summary["postprocessing"]["evidence"]["n_cases"] == 5 and (out / "postprocessing.json").is_file()
    report = (out / "report.md").read_text()
    assert (
        report.startswith("## Out-of-fold results: cv_tiny") and "95 % interval" in report and "Worst cases" in report
    )


def test_rerun_resumes_without_predicting_again(cv_run: dict) -> None:
    run_dir, recipe = cv_run["run_dir"], _recipe(cv_run["root"])
    files = sorted((run_dir / OOF_DIR / "predictions").glob("*.nii.gz"))
    stamps = {p.name: p.stat().st_mtime_ns for p in files}
    fold0 = (run_dir / "fold_0" / "final.keras").stat().st_mtime_ns
    again = cross_validate(recipe, run_dir=run_dir, folds=FOLDS, progress=False)
    assert again.predicted == [] and len(again.skipped) == 5
    assert {p.name: p.stat().st_mtime_ns for p in files} == stamps
    assert (run_dir / "fold_0" / "final.keras").stat().st_mtime_ns == fold0  # folds not retrained
    assert again.summary["dice"] == cv_run["result"].summary["dice"]
    files[0].unlink()  # a case whose prediction is lost (e.g. a kill before its write) is predicted again
    partial = cross_validate(recipe, run_dir=run_dir, folds=FOLDS, progress=False)
    assert partial.predicted == [files[0].name.removesuffix(".nii.gz")] and len(partial.skipped) == 4


def test_fold_assignment_refuses_leaks_and_gaps(tmp_path: Path) -> None:
    def write(k: int, train: list[str], val: list[str]) -> None:
        (tmp_path / f"fold_{k}").mkdir(exist_ok=True)
        (tmp_path / f"fold_{k}" / "split.json").write_text(json.dumps({"train_ids": train, "val_ids": val}))

    write(0, ["b", "c"], ["a"])
    write(1, ["a", "c"], ["b"])
    with pytest.raises(ValueError, match="validated by no fold"):
        fold_assignment(tmp_path, 2)
    write(1, ["c"], ["a", "b"])
    with pytest.raises(ValueError, match="also validated by fold 0"):
        fold_assignment(tmp_path, 2)
    write(1, ["a"], ["b", "c"])
    assert fold_assignment(tmp_path, 2) == {"a": 0, "b": 1, "c": 1}
    with pytest.raises(FileNotFoundError, match="fold_2"):
        fold_assignment(tmp_path, 3)
    with pytest.raises(ValueError, match="folds"):
        fold_assignment(tmp_path, 1)
