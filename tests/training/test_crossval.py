"""``brainseg cv``: the out-of-fold measure on tiny synthetic cases.

One module-scoped run trains 3 folds over 5 cases (a depth-2 U-Net with 4 base filters, 2 epochs of
2 steps) with a recipe time limit so short that ``brainseg train`` would stop each fold after its
first epoch; the tests read what it wrote: every case validated by exactly one fold, each
out-of-fold prediction made by that fold's model (never one that trained on the case), the time
limit switched off, the fold records from which a re-run on another machine resumes without
training, and the scores with their intervals.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainseg_tf.card import ModelCard
from brainseg_tf.cli import main
from brainseg_tf.postprocessing import Rule
from brainseg_tf.training import load_split, train
from brainseg_tf.training.config import as_config
from brainseg_tf.training.crossval import (
    OOF_DIR,
    cross_validate,
    fold_assignment,
    read_records,
    recipe_records,
    select_from_records,
)
from brainseg_tf.training.folds import fold_config

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
    base = tmp_path_factory.mktemp("cv")
    run_dir, records = base / "run", base / "records"
    result = cross_validate(_recipe(root), run_dir=run_dir, folds=FOLDS, records=records, progress=False)
    return {"root": root, "run_dir": run_dir, "records": records, "result": result}


def _record(cv_run: dict, k: int) -> dict:
    return json.loads((cv_run["records"] / f"fold_{k}.json").read_text())


def test_folds_cover_every_case_exactly_once(cv_run: dict) -> None:
    run_dir = cv_run["run_dir"]
    everyone = sorted(p.name for p in cv_run["root"].iterdir() if p.is_dir())
    assert len(everyone) == 5
    validated = [c for k in range(FOLDS) for c in load_split(run_dir / f"fold_{k}").val_ids]
    assert sorted(validated) == everyone  # each case once, none left out
    assert sorted(len(load_split(run_dir / f"fold_{k}").val_ids) for k in range(FOLDS)) == [1, 2, 2]
    assignment = fold_assignment(run_dir, FOLDS)
    assert sorted(assignment) == everyone and set(assignment.values()) == set(range(FOLDS))
    recorded = [c for k in range(FOLDS) for c in _record(cv_run, k)["cases"]]
    assert sorted(recorded) == everyone


def test_out_of_fold_scores_come_from_the_fold_that_held_the_case_out(cv_run: dict) -> None:
    run_dir = cv_run["run_dir"]
    assert cv_run["result"].completed
    for k in range(FOLDS):
        rec = _record(cv_run, k)
        split = load_split(run_dir / f"fold_{k}")
        assert sorted(rec["cases"]) == sorted(split.val_ids)
        assert not set(rec["cases"]) & set(rec["train_ids"]) and rec["train_ids"] == sorted(split.train_ids)
        model = run_dir / f"fold_{k}" / "final.keras"
        assert rec["checkpoint"] == "final" and rec["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
        for cid, case in rec["cases"].items():
            assert (run_dir / OOF_DIR / "predictions" / f"{cid}.nii.gz").is_file()
            assert set(case["dice"]) == {"WT", "TC", "ET"} and case["rules"]


def test_recorded_dice_matches_an_independent_evaluation(cv_run: dict) -> None:
    import nibabel as nib

    for k in range(FOLDS):
        for cid, case in _record(cv_run, k)["cases"].items():  # both files in BraTS values 0/1/2/4
            ref = np.asarray(nib.load(next((cv_run["root"] / cid).glob("*seg*"))).dataobj)
            pred = np.asarray(nib.load(cv_run["run_dir"] / OOF_DIR / "predictions" / f"{cid}.nii.gz").dataobj)
            for name, labels in {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}.items():
                a, b = np.isin(pred, labels), np.isin(ref, labels)
                expected = 1.0 if not a.any() and not b.any() else 2 * (a & b).sum() / (a.sum() + b.sum())
                assert case["dice"][name] == pytest.approx(expected)


def test_time_limit_is_switched_off_and_recorded(cv_run: dict) -> None:
    run_dir = cv_run["run_dir"]
    for k in range(FOLDS):  # a 0.006 s limit would have stopped `brainseg train` after epoch 1
        metrics = json.loads((run_dir / f"fold_{k}" / "metrics.json").read_text())
        assert metrics["completed"] and metrics["epochs_completed"] == EPOCHS
        rec = _record(cv_run, k)
        assert rec["optimizer_steps"] == 2 * EPOCHS and rec["recipe_resolved"]["training"]["max_minutes"] is None
        assert rec["train_minutes"] == round(metrics["wall_time_s_total"] / 60, 1)


def test_scores_intervals_and_report(cv_run: dict) -> None:
    summary = json.loads((cv_run["records"] / "summary.json").read_text())
    cases = {cid: c for k in range(FOLDS) for cid, c in _record(cv_run, k)["cases"].items()}
    assert summary["n_cases"] == 5 and summary["regions"] == ["WT", "TC", "ET"]
    for region in ("WT", "TC", "ET"):
        dice = [c["dice"][region] for c in cases.values()]
        stats = summary["dice"][region]
        assert stats["mean"] == pytest.approx(np.mean(dice))
        assert stats["ci95"][0] <= stats["mean"] <= stats["ci95"][1]
    per_case_means = [c["mean"] for c in summary["per_case"].values()]
    assert summary["dice"]["mean"]["mean"] == pytest.approx(np.mean(per_case_means))
    worst = [w["mean"] for w in summary["worst_cases"]]
    assert worst == sorted(per_case_means)[: len(worst)]
    assert summary["postprocessing"]["evidence"]["n_cases"] == 5  # exact selection: the label maps are here
    assert (cv_run["run_dir"] / OOF_DIR / "postprocessing.json").is_file()
    report = (cv_run["records"] / "report.md").read_text()
    assert (
        report.startswith("## Out-of-fold results: cv_tiny") and "95 % interval" in report and "Worst cases" in report
    )
    # the volume agreement, recovered from Dice and volumes, against the label files themselves
    import nibabel as nib

    for name, labels in {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}.items():
        fp = missed = over = 0.0
        for cid in cases:
            ref_img = nib.load(next((cv_run["root"] / cid).glob("*seg*")))
            ml = float(np.prod(ref_img.header.get_zooms()[:3])) / 1000
            b = np.isin(np.asarray(ref_img.dataobj), labels)
            a = np.isin(
                np.asarray(nib.load(cv_run["run_dir"] / OOF_DIR / "predictions" / f"{cid}.nii.gz").dataobj), labels
            )
            fp, missed, over = fp + (a & ~b).sum() * ml, missed + (b & ~a).sum() * ml, over + (a.sum() > b.sum())
        vol = summary["volumes"][name]
        assert vol["false_positive_ml"] == pytest.approx(fp, abs=1e-3) and vol["missed_ml"] == pytest.approx(
            missed, abs=1e-3
        )
        assert vol["over_segmented"] == over and vol["n"] == 5
        assert f"| cv_tiny | {name} | {vol['pred_ml']:.1f} |" in report


def test_rerun_resumes_from_the_records_alone(cv_run: dict, tmp_path: Path) -> None:
    recipe = _recipe(cv_run["root"])
    records = tmp_path / "records"
    shutil.copytree(cv_run["records"], records)
    # another machine: an empty run directory, only the committed records
    again = cross_validate(recipe, run_dir=tmp_path / "run", folds=FOLDS, records=records, progress=False)
    assert again.completed and again.predicted == [] and again.skipped == [0, 1, 2]
    assert not (tmp_path / "run" / "fold_0").exists()  # nothing trained
    assert again.summary["dice"] == cv_run["result"].summary["dice"]
    assert "postprocessing" not in again.summary  # no label maps here: the record-based choice only
    assert again.summary["postprocessing_from_records"]["baseline"]["mean"] == pytest.approx(
        again.summary["dice"]["mean"]["mean"]
    )


def test_a_record_of_another_measure_is_refused(cv_run: dict, tmp_path: Path) -> None:
    recipe = _recipe(cv_run["root"])
    records = tmp_path / "records"
    shutil.copytree(cv_run["records"], records)
    recipe["training"]["steps_per_epoch"] = 3  # another recipe: other digest
    with pytest.raises(ValueError, match=r"fold_0\.json: a record of another measure \(its recipe_digest"):
        cross_validate(recipe, run_dir=tmp_path / "run", folds=FOLDS, records=records, progress=False)
    (records / "fold_0.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"fold_0\.json: damaged fold record"):
        cross_validate(_recipe(cv_run["root"]), run_dir=tmp_path / "run", folds=FOLDS, records=records, progress=False)


def _fake_records(base: dict[str, float], rule: dict[str, dict[str, float]]) -> list[dict]:
    key = json.dumps({"kind": "remove_small", "min_voxels": 10, "region": "WT"}, sort_keys=True)
    cases = {cid: {"dice": dict.fromkeys(("WT", "TC", "ET"), base[cid]), "rules": {key: rule[cid]}} for cid in base}
    return [{"regions": ["WT", "TC", "ET"], "cases": cases}]


def test_record_selection_refuses_a_rule_that_helps_one_case_by_chance() -> None:
    base = {f"c{i}": 0.8 for i in range(6)}
    lucky = {cid: dict.fromkeys(("WT", "TC", "ET"), 1.0 if cid == "c0" else 0.78) for cid in base}
    out = select_from_records(_fake_records(base, lucky))
    # mean 0.8 -> (1.0 + 5 * 0.78) / 6 = 0.8167 rises, but 1 case improves and 5 worsen
    assert out.rules == [] and out.steps[0]["change"] == pytest.approx((1.0 + 5 * 0.78) / 6 - 0.8)
    assert out.steps[0]["cases"]["improved"] == 1 and out.steps[0]["cases"]["worsened"] == 5
    assert out.final == out.baseline and out.per_case["c0"]["after"] == out.per_case["c0"]["before"]
    most = {cid: dict.fromkeys(("WT", "TC", "ET"), 0.7 if cid == "c0" else 0.83) for cid in base}
    out = select_from_records(_fake_records(base, most))
    assert out.rules == [Rule("remove_small", "WT", 10)]
    assert out.final["mean"] == pytest.approx((0.7 + 5 * 0.83) / 6) and out.per_case["c1"]["after"]["ET"] == 0.83
    assert out.evidence()["n_cases"] == 6 and out.evidence()["kept"][0]["improved"] == 5


def test_the_choice_from_the_records_goes_into_a_card(cv_run: dict, tmp_path: Path, capsys) -> None:
    records = tmp_path / "records"
    shutil.copytree(cv_run["records"], records)
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(cv_run["run_dir"] / "fold_0" / "brainseg_model.json", model)
    assert main(["select-postprocessing", "--records", str(records), "--model", str(model)]) == 0
    expected = select_from_records(read_records(records))
    written = json.loads((records / "postprocessing.json").read_text())
    assert written["n_cases"] == 5 and written["steps"] == json.loads(json.dumps(expected.steps))
    card = ModelCard.load(model)
    assert card.postprocessing.evidence["n_cases"] == 5
    assert [k["rule"] for k in card.postprocessing.evidence["kept"]] == [r.describe() for r in expected.rules]
    out = capsys.readouterr().out
    assert "selection: " in out and "has no config.json (not a run directory): its recipe is not compared" in out
    # a run directory of another recipe does not take these records
    shutil.copy(cv_run["run_dir"] / "fold_0" / "config.json", model)
    other = json.loads((model / "config.json").read_text())
    other["training"]["steps_per_epoch"] = 3
    (model / "config.json").write_text(json.dumps(other))
    before = (model / "brainseg_model.json").read_text()
    assert main(["select-postprocessing", "--records", str(records), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "these fold records measured another recipe" in err and "training.steps_per_epoch: 3 here, 2 there" in err
    assert (model / "brainseg_model.json").read_text() == before  # the card untouched
    (model / "config.json").write_text("{damaged")
    assert main(["select-postprocessing", "--records", str(records), "--model", str(model)]) == 2
    assert "model/config.json: not a run's recipe" in capsys.readouterr().err
    shutil.copy(cv_run["run_dir"] / "fold_0" / "config.json", model)  # its own recipe (a fold of it): taken
    assert main(["select-postprocessing", "--records", str(records), "--model", str(model)]) == 0


def test_the_choice_from_the_records_needs_every_fold_of_one_measure(cv_run: dict, tmp_path: Path, capsys) -> None:
    records = tmp_path / "records"
    shutil.copytree(cv_run["records"], records)
    (records / "fold_1.json").unlink()
    assert main(["select-postprocessing", "--records", str(records)]) == 2
    assert "fold(s) [1] of 3 have no record yet" in capsys.readouterr().err
    other = json.loads((cv_run["records"] / "fold_1.json").read_text())
    other["recipe_digest"] = "0" * 16
    (records / "fold_1.json").write_text(json.dumps(other))
    with pytest.raises(
        ValueError, match=r"fold_1\.json: a record of another measure than fold_0\.json \(its recipe_digest"
    ):
        read_records(records)
    with pytest.raises(FileNotFoundError, match="no such folder of fold records"):
        read_records(tmp_path / "nowhere")
    assert main(["select-postprocessing", "--records", str(records), "--ref", "."]) == 2
    assert "drop --pred, --ref and --cases" in capsys.readouterr().err
    assert main(["select-postprocessing", "--pred", str(records)]) == 2
    assert "give --pred and --ref" in capsys.readouterr().err


def test_a_recipe_takes_its_postprocessing_from_its_own_records(cv_run: dict, tmp_path: Path) -> None:
    recipe = _recipe(cv_run["root"])
    recipe["validation"].update(select_postprocessing=True, postprocessing_records=str(cv_run["records"]))
    other = json.loads(json.dumps(recipe))
    other["training"]["epochs"] = EPOCHS + 1
    with pytest.raises(
        ValueError, match=r"records: these fold records measured another recipe .*training\.epochs: 3 here, 2"
    ):
        train(other, run_dir=tmp_path / "other")
    assert not (tmp_path / "other" / "brainseg_model.json").exists()  # refused before training
    elsewhere = json.loads(json.dumps(recipe))
    elsewhere["validation"]["postprocessing_records"] = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder of fold records"):
        train(elsewhere, run_dir=tmp_path / "elsewhere")

    # what does not change a fold's predictions: the recipe's own split, a fold of it, logging
    cfg = as_config(recipe)
    other_split = json.loads(json.dumps(recipe))
    other_split["split"]["val_ids"] = ["BraTS2021_00001"]
    other_split["training"]["verbose"] = 0
    for same in (as_config(other_split), fold_config(cfg, 1, FOLDS)):
        assert len(recipe_records(same, cv_run["records"])) == FOLDS

    expected = select_from_records(read_records(cv_run["records"]))

    def chosen_out_of_fold(run: Path) -> None:
        card = ModelCard.load(run)
        assert card.postprocessing.evidence["n_cases"] == 5  # every out-of-fold case, not the run's 1 validation case
        assert card.postprocessing.evidence == expected.evidence()
        assert card.postprocessing.largest_component == [
            r.region for r in expected.rules if r.kind == "largest_component"
        ]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["postprocessing"]["records"] == str(cv_run["records"])
        assert metrics["postprocessing"]["cases"] == 5

    train(recipe, run_dir=tmp_path / "run")
    chosen_out_of_fold(tmp_path / "run")
    # a run finished before the recipe named its records takes them when it is run again
    before = json.loads(json.dumps(recipe))
    del before["validation"]["postprocessing_records"]
    train(before, run_dir=tmp_path / "finished")
    assert ModelCard.load(tmp_path / "finished").postprocessing.evidence["n_cases"] == 1
    train(recipe, run_dir=tmp_path / "finished")
    chosen_out_of_fold(tmp_path / "finished")


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


def test_folds_run_in_the_order_given_and_a_futile_measure_stops(cv_run: dict, tmp_path: Path) -> None:
    records, baseline = tmp_path / "records", tmp_path / "baseline"
    shutil.copytree(cv_run["records"], records)
    shutil.copytree(cv_run["records"], baseline)
    for k in range(FOLDS):  # a baseline that scored every case 1.0: nothing can catch up with it
        rec = _record(cv_run, k)
        for case in rec["cases"].values():
            case["dice"] = dict.fromkeys(case["dice"], 1.0)
        (baseline / f"fold_{k}.json").write_text(json.dumps(rec))
    for k in range(FOLDS):  # a measure not started yet
        (records / f"fold_{k}.json").unlink()
    run = tmp_path / "run"
    measure = functools.partial(cross_validate, _recipe(cv_run["root"]), run_dir=run, folds=FOLDS, records=records)
    with pytest.raises(ValueError, match=r"order=\[2, 2\]: a fold appears twice"):
        measure(order=[2, 2])
    with pytest.raises(ValueError, match=r"order=\[3\]: fold 3 is not one of the 3 folds \(0-2\)"):
        measure(order=[3])
    with pytest.raises(ValueError, match="futile_after"):
        measure(futile_after=0)
    with pytest.raises(ValueError, match="futile_after=3 with 3 folds: the futility rule could never stop"):
        measure(against=baseline, stop_if_futile=True, futile_after=FOLDS)
    assert not run.exists()
    out = measure(progress=False, order=[2], against=baseline, stop_if_futile=True, futile_after=1)
    # fold 2 ran first, and the comparison after it stopped the measure
    assert not out.completed and out.skipped == [] and (run / "fold_2" / "final.keras").is_file()
    assert not (run / "fold_0").exists() and not (records / "fold_0.json").exists()
    assert sorted(out.predicted) == sorted(_record(cv_run, 2)["cases"])
    comparison = json.loads((records / "comparison.json").read_text())
    assert comparison["folds_compared"] == [2] and comparison["verdict"] == "stop: futile"
    assert "verdict: **stop: futile**" in (records / "comparison.md").read_text()
    assert out.stopped == "futile"
    # run again: the records already there are futile, so nothing more trains
    again = measure(against=baseline, stop_if_futile=True, futile_after=1)
    assert again.stopped == "futile" and again.predicted == [] and not (run / "fold_0").exists()
    # a baseline of another split is refused before any fold trains
    rec = json.loads((baseline / "fold_1.json").read_text())
    rec["cases"] = {"x": next(iter(rec["cases"].values()))}
    (baseline / "fold_1.json").write_text(json.dumps(rec))
    with pytest.raises(ValueError, match=r"baseline/fold_1\.json: holds out other cases than fold 1 here"):
        cross_validate(
            _recipe(cv_run["root"]), run_dir=tmp_path / "run2", folds=FOLDS, records=records, against=baseline
        )
    assert not (tmp_path / "run2").exists()
    # and so is an incomplete baseline, with a message about the baseline, not about postprocessing
    (baseline / "fold_1.json").unlink()
    with pytest.raises(ValueError, match=r"fold\(s\) \[1\] of 3 have no record yet; a complete out-of-fold"):
        cross_validate(
            _recipe(cv_run["root"]), run_dir=tmp_path / "run2", folds=FOLDS, records=records, against=baseline
        )
    assert not (tmp_path / "run2").exists()
