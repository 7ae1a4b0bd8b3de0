"""Model selection on whole volumes and postprocessing selection after training.

One tiny run on synthetic cases (``validation.mode="volumes"`` every 2 epochs of 3): the volume
Dice is logged on validated epochs only, ``best.keras`` is the checkpoint of the log's best
epoch (re-scored here independently through the predict path), and the postprocessing chosen
after training is the one ``postprocessing.select`` gives on raw predictions of ``best.keras``,
recorded in the model card and ``postprocessing.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEYS = ["val_volume_dice_wt", "val_volume_dice_tc", "val_volume_dice_et", "val_volume_mean_dice"]


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset) -> dict:
    from brainseg_tf.training import train

    tmp = tmp_path_factory.mktemp("volumes")
    root = synthetic_dataset(n_cases=4, seed=0, shape=(48, 48, 40))
    recipe = {
        "name": "volumes",
        "data": {"root": str(root)},
        "split": {"method": "kfold", "folds": 2, "fold": 0, "seed": 0},
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "instance", "head": "sigmoid"}},
        "pipeline": {
            "kind": "patch",
            "patch_size": [32, 32, 32],
            "batch_size": 2,
            "augment": "none",
            "foreground_fraction": 1.0,
        },
        "validation": {"mode": "volumes", "every_epochs": 2, "final_sliding_window": False},
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "training": {"epochs": 5, "steps_per_epoch": 2, "verbose": 0},
    }
    result = train(recipe, run_dir=tmp / "run")
    return {"result": result, "run_dir": tmp / "run", "recipe": recipe}


def _log(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_volume_validation_logs_and_selects_best(volume_run: dict) -> None:
    from brainseg_tf import inference
    from brainseg_tf.training import load_split
    from brainseg_tf.training.config import TrainConfig
    from brainseg_tf.training.validation import RAW, predict_cases, region_dice

    run_dir = volume_run["run_dir"]
    rows = _log(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    validated = [int(r["epoch"]) for r in rows if r.get("val_volume_mean_dice", "NA") != "NA"]
    assert validated == [1, 3, 4]  # every 2 epochs, and the last
    scores = {int(r["epoch"]): {k: float(r[k]) for k in KEYS} for r in rows if int(r["epoch"]) in validated}
    for s in scores.values():
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in s.values())
        assert s["val_volume_mean_dice"] == pytest.approx(np.mean([s[k] for k in KEYS[:3]]), abs=1e-9)
    best_epoch = max(validated, key=lambda e: (scores[e]["val_volume_mean_dice"], -e))
    best = json.loads((run_dir / "best.json").read_text())
    assert best["monitor"] == "val_volume_mean_dice"
    assert best["epoch"] == best_epoch
    assert best["value"] == pytest.approx(scores[best_epoch]["val_volume_mean_dice"], abs=1e-9)
    # best.keras, re-scored through the predict path, gives that epoch's logged Dice.
    cfg = TrainConfig.from_dict(volume_run["recipe"])
    split = load_split(run_dir)
    pred = inference.load_predictor(run_dir / "best.keras")
    preds, refs, _ = predict_cases(pred, cfg, split.val_ids, overlap=cfg.validation.overlap, **RAW)
    per_case = [region_dice(preds[c], refs[c]) for c in split.val_ids]
    for region in ("WT", "TC", "ET"):
        assert np.mean([d[region] for d in per_case]) == pytest.approx(
            scores[best_epoch][f"val_volume_dice_{region.lower()}"], abs=1e-6
        )
    assert volume_run["result"].metrics["monitor"] == "val_volume_mean_dice"


def test_postprocessing_selected_after_training_is_recorded(volume_run: dict) -> None:
    from brainseg_tf import inference, postprocessing
    from brainseg_tf.card import load_card
    from brainseg_tf.training import load_split
    from brainseg_tf.training.config import TrainConfig
    from brainseg_tf.training.validation import RAW, predict_cases

    run_dir = volume_run["run_dir"]
    saved = json.loads((run_dir / postprocessing.SELECTION_FILE).read_text())
    card = load_card(run_dir)
    assert dataclasses.asdict(card.postprocessing) == saved["postprocessing"]
    assert volume_run["result"].metrics["postprocessing"]["chosen"] == saved["chosen"]
    # Reproducible: the selection on raw predictions of best.keras, made here, is the recorded one.
    cfg = TrainConfig.from_dict(volume_run["recipe"])
    split = load_split(run_dir)
    pred = inference.load_predictor(run_dir / "best.keras")
    preds, refs, volume = predict_cases(pred, cfg, split.val_ids, overlap=cfg.validation.overlap, **RAW)
    again = postprocessing.select(preds, refs, voxel_volume=volume)
    assert [r.describe() for r in again.rules] == saved["chosen"]
    assert again.baseline == pytest.approx(saved["baseline"])
    assert dataclasses.asdict(again.postprocessing(card.postprocessing)) == saved["postprocessing"]
    # predict applies the recorded rules by default
    loaded = inference.load_predictor(run_dir)
    assert (loaded.et_min_voxels, loaded.min_component_voxels, list(loaded.largest_component)) == (
        card.postprocessing.et_min_voxels,
        card.postprocessing.min_component_voxels,
        list(card.postprocessing.largest_component),
    )


def test_volume_mode_needs_raw_cases() -> None:
    from brainseg_tf.training.config import TrainConfig

    with pytest.raises(ValueError, match=r"validation\.mode='volumes' needs the raw cases"):
        TrainConfig.from_dict({"data": {"cache": "x.h5"}, "validation": {"mode": "volumes"}})
    with pytest.raises(ValueError, match=r"validation\.every_epochs must be an integer >= 1, got 0"):
        TrainConfig.from_dict({"validation": {"every_epochs": 0}})
    cfg = TrainConfig.from_dict({"data": {"root": "x"}, "validation": {"mode": "volumes"}})
    assert cfg.validation.overlap == 0.25
    assert TrainConfig.from_dict({}).validation.overlap == 0.5
