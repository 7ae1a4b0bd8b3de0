"""The ``brainseg`` command line, through the installed console script.

Every command answers ``--help`` (exit 0) and refuses one bad argument with its exit code and a
message naming the problem, without a traceback. One module-scoped tiny pipeline (synth -> info ->
validate -> preprocess -> train -> predict --ref -> evaluate -> export -> survival features, fit,
predict, evaluate) runs through the script once and the tests below read what it wrote. The demo's
end-to-end run through the script is in tests/test_demo.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_report_files, brainseg, linked_figures, ok

from brainseg_tf import cli, io

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SUBCOMMANDS = [
    "synth",
    "info",
    "validate",
    "preprocess",
    "train",
    "cv",
    "cv-compare",
    "unpack",
    "predict",
    "evaluate",
    "select-postprocessing",
    "export",
    "plan",
    "demo",
    "view",
    "survival",
    "survival features",
    "survival fit",
    "survival predict",
    "survival evaluate",
]


# ------------------------------------------------------------------------- --help, bad arguments


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_command_has_help(command: str) -> None:
    proc = ok(brainseg(*command.split(), "--help"))
    assert proc.stdout.startswith(f"usage: brainseg {command}")
    assert "-h, --help" in proc.stdout


def test_top_level_help_lists_every_command() -> None:
    proc = ok(brainseg("--help"))
    for command in {c.split()[0] for c in SUBCOMMANDS}:
        assert f"\n    {command}" in proc.stdout, command
    assert brainseg().returncode == 2  # a command is required


MISSING = "nope"  # a path that does not exist, relative to tmp_path

BAD_ARGUMENTS = {
    "synth": (["synth", "--cases", "two", "--out", "x"], "argument --cases: invalid int value: 'two'"),
    "info": (["info", MISSING], "nope: dataset folder not found"),
    "validate": (["validate", MISSING, "-q"], "nope: dataset folder not found"),  # exit 1: problems found
    "preprocess": (["preprocess", MISSING, "--out", "c.h5", "-q"], "nope"),
    "train": (["train", "--config", MISSING], "nope: recipe not found"),
    "cv": (["cv", "--config", MISSING, "--folds", "5"], "nope: recipe not found"),
    "cv-compare": (["cv-compare", "--records", MISSING, "--against", "."], "nope: no such folder of fold records"),
    "cv --futile-after": (
        [
            "cv",
            "--config",
            str(Path(__file__).resolve().parents[1] / "configs" / "cpu_brats2018.json"),
            "--futile-after",
            "2",
        ],
        "--stop-if-futile and --futile-after judge against a baseline",
    ),
    "unpack": (["unpack", MISSING, "--out", "out"], "nope: archive not found"),
    "predict": (["predict", "--model", MISSING, "--input", ".", "--out", "p"], "nope: not found"),
    "evaluate": (["evaluate", "--pred", MISSING, "--ref", "."], "prediction folder not found: nope"),
    "select-postprocessing": (
        ["select-postprocessing", "--pred", MISSING, "--ref", "."],
        "prediction folder not found: nope",
    ),
    "export": (["export", "--model", "run"], "the following arguments are required: --out"),
    "plan": (["plan"], "the following arguments are required: --config"),
    "demo": (["demo", "--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
    "view": (["view", "--case", MISSING, "--out", "v.html"], "nope: case not found"),
    "survival features": (["survival", "features", "--labels", MISSING, "--out", "f.csv"], "nope"),
    "survival fit": (["survival", "fit", "--clinical", MISSING, "--features", "f.csv", "--out", "m.json"], "nope"),
    "survival predict": (["survival", "predict", "--model", MISSING, "--features", "f.csv", "--out", "p.csv"], "nope"),
    "survival evaluate": (
        ["survival", "evaluate", "--predictions", MISSING, "--clinical", MISSING],
        "nope: file not found",
    ),
}


@pytest.mark.parametrize("command", list(BAD_ARGUMENTS))
def test_bad_argument_exit_code_and_message(command: str, tmp_path: Path) -> None:
    argv, message = BAD_ARGUMENTS[command]
    proc = brainseg(*argv, cwd=tmp_path)
    assert proc.returncode == (1 if command == "validate" else 2), (proc.returncode, proc.stderr[-2000:])
    assert message in (proc.stdout if command == "validate" else proc.stderr), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir()), "nothing written by a refused command"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--roi", "96", "auto"], "--roi 96 auto: 'auto' stands alone"),
        (["--roi", "big"], "'big' is not a window size, 'auto' or 'patch'"),
        (["--mirror-axes", "0", "0"], "must be distinct spatial axes"),
        (["--mirror-axes", "3"], "invalid choice: 3"),
    ],
)
def test_predict_window_arguments(extra: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    proc = brainseg("predict", "--model", "run", "--input", ".", "--out", "p", *extra, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "p").exists()


def test_every_command_is_covered() -> None:
    parser = cli.build_parser()
    top = next(a for a in parser._actions if a.dest == "command")
    survival = next(a for a in top.choices["survival"]._actions if a.dest == "survival_command")
    commands = set(top.choices) | {f"survival {s}" for s in survival.choices}
    assert commands <= set(SUBCOMMANDS)
    assert commands - {"survival"} <= set(BAD_ARGUMENTS)


# ------------------------------------------------------------------------------ in-process tests


def _dataset(root, n=2):
    rng = np.random.default_rng(0)
    for i in range(n):
        images = {m: rng.integers(1, 100, size=(8, 8, 6)).astype(np.int16) for m in io.MODALITIES}
        label = np.zeros((8, 8, 6), np.uint8)
        label[2:4, 2:4, 2:4] = 2
        label[3, 3, 3] = 3
        io.write_case(root, "brats2021", io.case_id_for("brats2021", i), images, label, LPS)


def test_info_prints_summary(tmp_path, capsys):
    _dataset(tmp_path)
    assert cli.main(["info", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "layout     brats2021" in out and "cases      2 (2 with masks)" in out
    assert "8x8x6 (2)" in out
    # ED = 8 voxels - 1 ET voxel = 7 voxels of 1 mm^3 = 0.007 ml
    assert "ED           0.01" in out


def test_validate_exit_codes(tmp_path, capsys):
    _dataset(tmp_path)
    assert cli.main(["validate", str(tmp_path), "-q"]) == 0
    bad = tmp_path / "BraTS2021_00001" / "BraTS2021_00001_t2.nii.gz"
    bad.write_bytes(b"garbage")
    assert cli.main(["validate", str(tmp_path), "-q"]) == 1
    assert str(bad) in capsys.readouterr().out


# --------------------------------------------------------------------------- the tiny pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    """synth 4 cases (32x32x24) -> preprocess -> train 2x1 steps -> predict --ref -> evaluate -> export -> survival."""
    root = tmp_path_factory.mktemp("pipeline")
    synth, cache, run, pred, exp = (root / n for n in ("synth", "cache.h5", "run", "pred", "export"))
    out: dict = {"root": root, "synth": synth, "run": run, "pred": pred, "export": exp}
    out["synth_proc"] = ok(brainseg("synth", "--out", synth, "--cases", 4, "--shape", 32, 32, 24, "-q"))
    out["info"] = ok(brainseg("info", synth, "-q"))
    out["validate"] = ok(brainseg("validate", synth, "-q"))
    out["preprocess"] = ok(brainseg("preprocess", synth, "--out", cache, "-q"))
    recipe = {
        "name": "tiny",
        "data": {"root": str(synth), "cache": str(cache)},
        "split": {"method": "kfold", "folds": 2, "fold": 0, "seed": 0},
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "instance", "head": "sigmoid"}},
        "pipeline": {"kind": "patch", "patch_size": [16, 16, 16], "batch_size": 2},
        # Planned windows: the card records them and predict repeats them (the scores below agree).
        "validation": {
            "mode": "patches",
            "patches_per_case": 1,
            "final_sliding_window": True,
            "overlap": 0.25,
            "window": "auto",
            "max_window_voxels": 24 * 24 * 16,
        },
        "schedule": {"name": "poly", "warmup_steps": 1},
        "training": {"epochs": 2, "steps_per_epoch": 1, "verbose": 0, "seed": 0},
    }
    (root / "recipe.json").write_text(json.dumps(recipe))
    out["train"] = ok(brainseg("train", "--config", root / "recipe.json", "--run-dir", run))
    out["val_ids"] = json.loads((run / "split.json").read_text())["val_ids"]
    out["predict"] = ok(
        brainseg(
            "predict", "--model", run, "--input", synth, "--out", pred, "--cases", *out["val_ids"], "--ref", synth, "-q"
        )
    )
    out["evaluate"] = ok(
        brainseg(
            "evaluate", "--pred", pred, "--ref", synth, "--cases", *out["val_ids"], "--out", root / "evaluate.csv", "-q"
        )
    )
    out["export_proc"] = ok(brainseg("export", "--model", run, "--out", exp))
    clinical = synth / "survival_info.csv"
    feats, model, days = root / "features.csv", root / "survival.json", root / "days.csv"
    out["survival"] = [
        ok(
            brainseg(
                "survival",
                "features",
                "--labels",
                pred,
                "--images",
                synth,
                "--clinical",
                clinical,
                "--out",
                feats,
                "-q",
            )
        ),
        ok(
            brainseg(
                "survival", "fit", "--clinical", clinical, "--features", feats, "--method", "age", "--out", model, "-q"
            )
        ),
        ok(brainseg("survival", "predict", "--model", model, "--features", feats, "--out", days)),
        ok(brainseg("survival", "evaluate", "--predictions", days, "--clinical", clinical, "--all-patients")),
    ]
    out.update(features=feats, days=days)
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_synth_info_validate_preprocess(pipeline) -> None:
    assert sorted(p.name for p in pipeline["synth"].iterdir() if p.is_dir()) == [
        io.case_id_for("brats2021", i) for i in range(4)
    ]
    assert "cases      4 (4 with masks)" in pipeline["info"].stdout and "32x32x24 (4)" in pipeline["info"].stdout
    assert pipeline["validate"].stdout.strip().endswith("OK (0 warning(s))")
    assert "cache ready" in pipeline["preprocess"].stdout and (pipeline["root"] / "cache.h5").stat().st_size > 10_000


@pytest.mark.slow
def test_train_writes_the_run_and_its_report(pipeline) -> None:
    run = pipeline["run"]
    assert f"report: {run / 'report.md'}" in pipeline["train"].stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] and metrics["optimizer_steps"] == 2
    text = assert_report_files(run)
    assert "## Training" in text and "## Validation" in text and "2 epochs, 2 optimizer steps" in text
    assert {"training_curves.png", "dice_per_case.png", "dice_boxplot.png", "best_case.png", "worst_case.png"} <= set(
        linked_figures(text)
    )
    for cid, scores in metrics["sliding_window"]["per_case"].items():  # the report's table is the run's scores
        line = next(line for line in text.splitlines() if line.startswith(f"| {cid} |"))
        assert line.split("|")[2].strip() == f"{scores['dice_wt']:.3f}"


@pytest.mark.slow
def test_predict_with_references_writes_metrics_and_report(pipeline) -> None:
    pred, val_ids = pipeline["pred"], pipeline["val_ids"]
    assert sorted(p.name for p in pred.glob("*.nii.gz")) == sorted(f"{c}.nii.gz" for c in val_ids)
    assert f"report: {pred / 'report.md'}" in pipeline["predict"].stdout
    text = assert_report_files(pred)
    assert "## Scores" in text and {"best_case.png", "worst_case.png"} <= set(linked_figures(text))
    # predict --ref scores exactly as brainseg evaluate does
    ours, theirs = _csv(pred / "metrics.csv"), _csv(pipeline["root"] / "evaluate.csv")
    assert len(ours) == 3 * len(val_ids) and {r["case"] for r in ours} == set(val_ids)
    assert ours == theirs
    # and the run's own sliding-window scores are the same model on the same cases
    per_case = json.loads((pipeline["run"] / "metrics.json").read_text())["sliding_window"]["per_case"]
    for row in ours:
        assert float(row["dice"]) == pytest.approx(per_case[row["case"]][f"dice_{row['region'].lower()}"], abs=1e-6)


@pytest.mark.slow
def test_export_writes_saved_model_keras_and_card(pipeline) -> None:
    exp = pipeline["export"]
    assert (exp / "saved_model" / "saved_model.pb").is_file() and (exp / "model.keras").stat().st_size > 1_000
    card = json.loads((exp / "brainseg_model.json").read_text())
    assert card["window"] == [16, 16, 16] and card["head"] == "sigmoid"
    assert card["inference"] == {
        "window": "auto",
        "overlap": 0.25,
        "max_window_voxels": 24 * 24 * 16,
        "min_window": None,
        "divisor": [4, 4, 4],
    }
    assert f"saved_model  {exp / 'saved_model'}" in pipeline["export_proc"].stdout


@pytest.mark.slow
def test_survival_steps_on_the_predicted_masks(pipeline) -> None:
    features = _csv(pipeline["features"])
    assert sorted(r[next(iter(r))] for r in features) == sorted(pipeline["val_ids"])
    with open(pipeline["days"]) as fh:
        days = list(csv.reader(fh))[1:]
    assert sorted(r[0] for r in days) == sorted(pipeline["val_ids"]) and all(int(float(r[1])) > 0 for r in days)
    assert f"patients    {len(pipeline['val_ids'])}" in pipeline["survival"][3].stdout
