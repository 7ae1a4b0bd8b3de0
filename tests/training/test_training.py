"""Training API: recipe validation, splits, schedules, runtime selection, run directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT

from brainseg_tf.training import (
    SplitConfig,
    TrainConfig,
    load_config,
    make_split,
    resolve_mixed_precision,
    select_strategy,
    task_identity,
    train,
)

REPO = REPO_ROOT
TOY = REPO / "tests" / "scripts" / "toy_pipeline.py"
CONFIGS = sorted((REPO / "configs").glob("*.json"))


def toy_recipe(**overrides) -> dict:
    recipe = {
        "name": "toy",
        "split": {"method": "none"},
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "batch", "head": "sigmoid"}},
        "pipeline": {"kind": "custom", "builder": f"{TOY}:build", "patch_size": [16, 16, 16], "batch_size": 2},
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "schedule": {"name": "poly", "warmup_steps": 1},
        "training": {"epochs": 2, "steps_per_epoch": 2, "verbose": 0, "seed": 0},
    }
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = recipe
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return recipe


# ---------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_recipe_is_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.to_dict()["model"]["name"] == cfg.model.name
    # Round trip: the resolved recipe (written as RUN_DIR/config.json) reads back identically.
    assert TrainConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_recipe_folder_has_the_documented_recipes() -> None:
    names = {p.stem for p in CONFIGS}
    assert {
        "unet2d_seed",
        "unet3d_seed",
        "dresunet_seed",
        "znet_seed",
        "een_seed",
        "cpu_brats2018",
        "gpu_recommended",
        "demo_synthetic",
    } <= names
    table = (REPO / "configs" / "README.md").read_text()
    for name in names:
        assert f"{name}.json" in table


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optimizer.name": "adamw2"}, r"optimizer\.name must be one of .*, got 'adamw2'"),
        ({"optimizer.lr": 0.1}, r"optimizer\.lr is an unknown key"),
        ({"training.epochs": "3"}, r"training\.epochs must be an integer, got '3'"),
        ({"training.epochs": 0}, r"training\.epochs must be an integer >= 1, got 0"),
        ({"schedule.name": "exp"}, r"schedule\.name must be one of .*, got 'exp'"),
        ({"runtime.strategy": "horovod"}, r"runtime\.strategy must be one of .*, got 'horovod'"),
        ({"runtime.mixed_precision": "fp8"}, r"runtime\.mixed_precision must be one of .*, got 'fp8'"),
        ({"pipeline.patch_size": [16, 16]}, r"pipeline\.patch_size must be 3 integers >= 1, got \[16, 16\]"),
        ({"pipeline.augment": "heavy"}, r"pipeline\.augment must be one of .*, got 'heavy'"),
        ({"model.name": "resnet"}, r"model\.name must be one of .*, got 'resnet'"),
        ({"model.options": {"depth": 2, "filters": 3}}, r"model\.options=\['filters'\] unknown option"),
        ({"model.options": {"head": "sigmoid", "out_channels": 1}}, r"pipeline\.region=None must name the region"),
        ({"loss.name": "dice_ce"}, r"loss\.name='dice_ce' needs a softmax head"),
        ({"data.modalities": ["flair", "pd"]}, r"data\.modalities\[1\] must be one of .*, got 'pd'"),
        ({"split.method": "fixed"}, r"split\.val_ids=\[\] must list validation case ids"),
        ({"split.method": "kfold", "split.fold": 5}, r"split\.fold must be an integer in \[0, 4\], got 5"),
        ({"validation.overlap": 1.0}, r"validation\.overlap must be a finite number in \[0, 1\), got 1\.0"),
        ({"data.synthetic": {"n_cases": 2}}, r"data\.synthetic=.* needs data\.root"),
    ],
)
def test_bad_recipes_name_the_key_path(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(toy_recipe(**overrides))


def test_load_config_names_the_file_and_defaults_the_name(tmp_path: Path) -> None:
    path = tmp_path / "my_run.json"
    path.write_text(json.dumps({k: v for k, v in toy_recipe().items() if k != "name"}))
    assert load_config(path).name == "my_run"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="my_run.json: invalid JSON"):
        load_config(path)
    path.write_text(json.dumps({"optimizer": {"name": "rmsprop"}}))
    with pytest.raises(ValueError, match=r"my_run\.json: optimizer\.name must be one of .*, got 'rmsprop'"):
        load_config(path)


def test_comment_keys_are_ignored() -> None:
    cfg = TrainConfig.from_dict({**toy_recipe(), "$comment": "why", "optimizer": {"_comment": "x", "name": "nadam"}})
    assert cfg.optimizer.name == "nadam"


# ---------------------------------------------------------------------------- splits
def test_kfold_split_is_deterministic_disjoint_and_covering() -> None:
    ids = [f"case_{i:02d}" for i in range(18)]
    folds = [make_split(ids, SplitConfig(method="kfold", folds=5, fold=k, seed=3)) for k in range(5)]
    seen = []
    for s in folds:
        assert not set(s.train_ids) & set(s.val_ids)
        assert sorted(s.train_ids + s.val_ids) == ids
        seen += s.val_ids
    assert sorted(seen) == ids  # every case validates exactly once over the folds
    assert [len(s.val_ids) for s in folds] == [4, 4, 4, 3, 3]
    again = make_split(list(reversed(ids)), SplitConfig(method="kfold", folds=5, fold=2, seed=3))
    assert again.val_ids == folds[2].val_ids  # independent of the input order
    other_seed = make_split(ids, SplitConfig(method="kfold", folds=5, fold=2, seed=4))
    assert other_seed.val_ids != folds[2].val_ids


def test_fixed_split_and_unknown_ids() -> None:
    ids = ["a", "b", "c", "d"]
    s = make_split(ids, SplitConfig(method="fixed", val_ids=["c"]))
    assert (s.train_ids, s.val_ids) == (["a", "b", "d"], ["c"])
    with pytest.raises(ValueError, match=r"split\.val_ids=\['x'\] not among"):
        make_split(ids, SplitConfig(method="fixed", val_ids=["x"]))
    with pytest.raises(ValueError, match=r"split\.folds=5 exceeds"):
        make_split(ids, SplitConfig(method="kfold", folds=5))


# ---------------------------------------------------------------------------- schedule / runtime
def test_warmup_poly_and_cosine_schedules() -> None:
    from brainseg_tf.training import WarmupSchedule

    poly = WarmupSchedule(peak=1e-2, total_steps=110, warmup_steps=10, warmup_start=0.0, decay="poly", power=0.9)
    values = [float(poly(t)) for t in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.0, 5e-3, 1e-2, 1e-2 * 0.5**0.9, 0.0, 0.0], rtol=1e-5, atol=1e-9)
    cosine = WarmupSchedule(peak=1e-3, total_steps=100, decay="cosine", min_lr=1e-5)
    np.testing.assert_allclose(
        [float(cosine(t)) for t in (0, 50, 100)], [1e-3, 1e-5 + (1e-3 - 1e-5) / 2, 1e-5], rtol=1e-5
    )
    # Registered: survives a get_config round trip (so .keras files reload it).
    import keras

    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(poly))
    assert float(again(60)) == pytest.approx(values[3])


def test_runtime_selection_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert select_strategy("auto").num_replicas_in_sync == 1
    assert resolve_mixed_precision("auto") == "float32"  # no GPU here
    assert resolve_mixed_precision("bfloat16") == "mixed_bfloat16"
    assert resolve_mixed_precision("off") == "float32"
    assert task_identity() == ("chief", 0, True)
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert task_identity() == ("worker", 1, False)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert task_identity() == ("worker", 0, True)
    del tf


# ---------------------------------------------------------------------------- runs
@pytest.mark.compat
def test_tiny_run_dir_contract_resume_and_refusals(tmp_path: Path) -> None:
    import keras

    from brainseg_tf import inference

    run_dir = tmp_path / "run"
    result = train(toy_recipe(), run_dir=run_dir)
    for name in (
        "config.json",
        "split.json",
        "log.csv",
        "events.jsonl",
        "best.keras",
        "best.json",
        "final.keras",
        "metrics.json",
        "backup",
    ):
        assert (run_dir / name).exists(), name
    assert result.initial_epoch == 0 and result.epochs_completed == 2
    assert result.history["epoch"] == [0.0, 1.0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["completed"] and metrics["optimizer_steps"] == 4 and metrics["monitor"] == "val_mean_region_dice"
    saved = json.loads((run_dir / "config.json").read_text())
    card = json.loads((run_dir / "brainseg_model.json").read_text())
    assert card["head"] == "sigmoid" and card["window"] == [16, 16, 16] and card["format_version"] == 4
    assert card["modalities"] == ["flair", "t1", "t1ce", "t2"] and card["provenance"]["epochs"] == 2
    assert saved["training"]["steps_per_epoch"] == 2 and saved["optimizer"]["beta_1"] == 0.9  # defaults filled

    # The run directory is what inference loads.
    predictor = inference.load_predictor(run_dir)
    assert predictor.head == "sigmoid" and tuple(predictor.roi) == (16, 16, 16)
    out = predictor(np.zeros((1, 16, 16, 16, 4), np.float32))
    assert out.shape == (1, 16, 16, 16, 3)
    model = keras.saving.load_model(run_dir / "best.keras")
    np.testing.assert_allclose(model.predict(np.zeros((1, 16, 16, 16, 4), np.float32), verbose=0), out, atol=1e-5)

    # A fresh process: `import brainseg_tf` then Keras' own loader, compiled, resumes training.
    code = textwrap.dedent(f"""
        import numpy as np
        import brainseg_tf
        from brainseg_tf import *  # noqa: F403
        import keras
        model = keras.saving.load_model({str(run_dir / "best.keras")!r})  # compile=True: optimizer, schedule, loss
        assert model.optimizer.get_config()["learning_rate"]["class_name"] == "WarmupSchedule"
        steps = int(model.optimizer.iterations.numpy())
        x = np.random.default_rng(0).normal(size=(2, 16, 16, 16, 4)).astype("float32")
        y = (x[..., 0] > 0.5).astype("uint8") * 2
        model.fit(x, y, epochs=1, verbose=0)
        print("resumed", steps, int(model.optimizer.iterations.numpy()))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, before, after = proc.stdout.split()[-3:]
    assert int(after) == int(before) + 1 and int(before) > 0

    # Same call again: already complete, nothing retrained; the temporaries of a report write
    # killed after the run finished are swept (the start-up sweep is not reached then).
    (run_dir / ".figures.ab12cd34.tmp").mkdir()
    (run_dir / ".report.md.k9l8m7n6.tmp.md").write_text("half")
    again = train(toy_recipe(), run_dir=run_dir)
    assert again.model is None and again.epochs_completed == 2
    assert not list(run_dir.glob(".figures.*")) and not list(run_dir.glob(".report.md.*"))
    # More epochs: continues from epoch 2 with the optimizer state restored.
    more = train(toy_recipe(**{"training.epochs": 3}), run_dir=run_dir)
    assert more.initial_epoch == 2 and more.epochs_completed == 3
    assert json.loads((run_dir / "metrics.json").read_text())["optimizer_steps"] == 6
    assert more.history["epoch"] == [0.0, 1.0, 2.0]
    # An incompatible change is refused; so is reusing the directory without resume.
    with pytest.raises(ValueError, match=r"changed incompatibly.*optimizer\.learning_rate"):
        train(toy_recipe(**{"training.epochs": 4, "optimizer.learning_rate": 0.1}), run_dir=run_dir)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(toy_recipe(), run_dir=run_dir, resume=False)
    # Two trainers on one run directory: the second is refused at once.
    from brainseg_tf.training.rundir import RunLock

    with RunLock(run_dir):
        with pytest.raises(FileExistsError, match="in use by a trainer"):
            train(toy_recipe(**{"training.epochs": 4}), run_dir=run_dir)
    # A damaged best.keras is never trusted: prediction warns and falls back to final.keras.
    (run_dir / "best.keras").write_bytes((run_dir / "best.keras").read_bytes()[:1000])
    with pytest.warns(UserWarning, match="best.keras"):
        fallback = inference.load_predictor(run_dir)
    assert fallback.source.endswith("final.keras")


@pytest.mark.parametrize(
    "variant",
    [
        {
            "model.options": {"depth": 2, "base_filters": 4, "head": "sigmoid", "out_channels": 1},
            "pipeline.region": "et",
            "loss.name": "bce",
        },
        {
            "model.options": {
                "depth": 2,
                "base_filters": 4,
                "head": "softmax",
                "deep_supervision": True,
                "deep_supervision_levels": 1,
            },
            "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.99, "nesterov": True, "clipnorm": 12.0},
            "schedule": {"name": "plateau", "patience": 0},
        },
        {
            "model.options": {"depth": 2, "base_filters": 4, "head": "softmax", "logits": True},
            "optimizer": {"name": "nadam"},
            "schedule": {"name": "cosine", "warmup_steps": 1},
            "runtime.mixed_precision": "bfloat16",
        },
    ],
    ids=["single-region-bce", "softmax-deep-supervision-sgd-plateau", "softmax-logits-nadam-cosine-bf16"],
)
def test_recipe_variants_train(tmp_path: Path, variant: dict) -> None:
    import keras

    recipe = toy_recipe(**{"training.epochs": 1})
    for key, value in variant.items():
        if "." in key:
            recipe = {**recipe, **{}}
            *parents, leaf = key.split(".")
            node = recipe
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        else:
            recipe[key] = value
    result = train(recipe, run_dir=tmp_path / "run")
    metrics = result.metrics
    assert metrics["completed"] and np.isfinite(metrics["last_epoch"]["loss"])
    expected = "val_dice_et" if variant.get("pipeline.region") == "et" else "val_mean_region_dice"
    assert metrics["monitor"] == expected and metrics["best"]["value"] is not None
    assert keras.config.dtype_policy().name == "float32"  # restored after a bf16 run
    assert (tmp_path / "run" / "best.keras").exists()


@pytest.mark.slow
def test_patch_pipeline_on_synthetic_cases_with_final_sliding_window(tmp_path: Path, synthetic_dataset) -> None:
    root = synthetic_dataset(n_cases=4, seed=0, shape=(48, 48, 40))
    recipe = {
        "name": "synth",
        "data": {"root": str(root)},
        "split": {"method": "kfold", "folds": 4, "fold": 1, "seed": 0},
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "instance", "head": "sigmoid"}},
        "pipeline": {"kind": "patch", "patch_size": [32, 32, 32], "batch_size": 2, "augment": "light"},
        "validation": {"mode": "patches", "patches_per_case": 2, "overlap": 0.25},
        "training": {"epochs": 1, "steps_per_epoch": 2, "verbose": 0},
    }
    result = train(recipe, run_dir=tmp_path / "run")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["train_ids"]) == 3 and len(split["val_ids"]) == 1 and split["method"] == "kfold"
    sw = result.metrics["sliding_window"]
    (case_id,) = split["val_ids"]
    assert set(sw["per_case"]) == {case_id}
    assert {"dice_wt", "dice_tc", "dice_et", "hd95_wt"} <= set(sw["per_case"][case_id])
    assert all(0.0 <= sw["mean"][k] <= 1.0 for k in ("dice_wt", "dice_tc", "dice_et"))


def test_command_line_reports_bad_recipes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from brainseg_tf.cli import main

    path = tmp_path / "bad.json"
    path.write_text(json.dumps(toy_recipe(**{"optimizer.name": "adamw2"})))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.json: optimizer.name must be one of" in err and "got 'adamw2'" in err


def test_truncated_backup_metadata_falls_back_to_the_previous_generation(tmp_path: Path) -> None:
    from brainseg_tf.training.rundir import backup_epoch, repair_backup

    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "latest.weights.h5").write_bytes(b"new")
    (backup / "latest.weights.h5.bkp").write_bytes(b"old")
    (backup / "training_metadata.json").write_text('{"epoch": 3, "ba')  # killed mid-write
    (backup / "training_metadata.json.bkp").write_text('{"epoch": 2, "batch": 0}')
    repair_backup(backup)
    assert backup_epoch(backup) == 2
    assert (backup / "latest.weights.h5").read_bytes() == b"old"


def test_backup_swap_killed_between_renames_is_repaired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from brainseg_tf import atomic
    from brainseg_tf.training import backup

    backup_dir = tmp_path / "backup"
    state = {"format": backup.FORMAT, "epoch": 3, "step": 2, "global_step": 14, "steps_per_epoch": 4}
    with atomic.atomic_dir(backup_dir) as tmp:
        (tmp / backup.STATE).write_text(json.dumps(state))
    real_replace, calls = os.replace, []

    def killed_after_moving_the_old_one_aside(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the two renames
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", killed_after_moving_the_old_one_aside)
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_dir(backup_dir) as tmp:
            (tmp / backup.STATE).write_text(json.dumps({**state, "step": 3}))
    monkeypatch.undo()
    assert not backup_dir.exists() and len(list(tmp_path.glob(".backup.*.old"))) == 1
    (tmp_path / ".backup.x1.tmp").mkdir()  # a half-written next backup
    backup.repair(backup_dir)
    restored = backup.read_state(backup_dir)
    assert (restored.epoch, restored.step, restored.global_step) == (3, 2, 14)  # the previous, complete one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup"]
    (backup_dir / backup.STATE).write_text('{"format": 1, "ep')
    with pytest.raises(ValueError, match=r"state\.json: unreadable resume backup"):
        backup.read_state(backup_dir)


def test_truncate_csv_drops_unfinished_epochs_and_a_torn_row(tmp_path: Path) -> None:
    from brainseg_tf.training.rundir import history_from_csv, truncate_csv

    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n0,0.5\n1,0.4\n2,0.3\n1")  # a torn last line (an older CSVLogger, killed)
    truncate_csv(log, 5)
    assert history_from_csv(log) == {"epoch": [0.0, 1.0, 2.0], "loss": [0.5, 0.4, 0.3]}
    truncate_csv(log, 2)  # the backup has completed two epochs: epoch 2's row is dropped
    assert log.read_text() == "epoch,loss\n0,0.5\n1,0.4\n"


def test_load_config_overrides_find_recipe_and_load_split(tmp_path, monkeypatch):
    from brainseg_tf import training

    recipe = training.find_recipe("demo_synthetic")
    assert recipe.name == "demo_synthetic.json" and recipe.is_file()
    cfg = training.load_config(
        recipe, overrides={"training.epochs": 1, "model.options.base_filters": 4, "data.root": str(tmp_path)}
    )
    assert cfg.training.epochs == 1 and cfg.model.options["base_filters"] == 4 and cfg.data.root == str(tmp_path)
    with pytest.raises(ValueError, match="training.epochz"):
        training.load_config(recipe, overrides={"training.epochz": 1})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no_such_recipe.json"):
        training.find_recipe("no_such_recipe")
    split = training.Split(train_ids=["a", "b"], val_ids=["c"])
    (tmp_path / "split.json").write_text(json.dumps(split.to_dict()))
    assert training.load_split(tmp_path) == split
    with pytest.raises(FileNotFoundError, match="no split saved"):
        training.load_split(tmp_path / "nope")


def test_stale_temporaries_of_the_run_and_its_report_are_removed(tmp_path: Path) -> None:
    from brainseg_tf.training.rundir import remove_stale_temporaries

    run = tmp_path / "run"
    (run / ".figures.ab12cd34.tmp").mkdir(parents=True)  # a report folder being written when killed
    (run / ".figures.ab12cd34.tmp" / "curves.png").write_bytes(b"x")
    (run / ".figures.ef56gh78.old").mkdir()  # the previous figures, moved aside during the swap
    (run / ".report.md.k9l8m7n6.tmp.md").write_text("half")
    (run / ".best.keras.zz11yy22.tmp.keras").write_bytes(b"PK")
    (run / "tmpabcd1234").write_bytes(b"scratch")
    kept = [run / "figures", run / ".backup.qq11ww22.old", run / "report.md", run / "best.keras"]
    kept[0].mkdir()
    kept[1].mkdir()  # the previous backup: resuming restores it, never swept here
    kept[2].write_text("# report")
    kept[3].write_bytes(b"PK")
    removed = remove_stale_temporaries(run)
    assert sorted(p.name for p in removed) == sorted(
        [
            ".figures.ab12cd34.tmp",
            ".figures.ef56gh78.old",
            ".report.md.k9l8m7n6.tmp.md",
            ".best.keras.zz11yy22.tmp.keras",
            "tmpabcd1234",
        ]
    )
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in kept)


def test_time_limit_counts_the_work_done_at_epoch_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Epochs of 10 s each followed by a 20 s volume validation: the limit must see 30 s epochs."""
    from types import SimpleNamespace

    from brainseg_tf.training import callbacks

    clock = [0.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])
    limit = callbacks.TimeLimit(minutes=1.5)  # 90 s
    limit.set_model(SimpleNamespace(stop_training=False))
    for epoch in range(5):
        limit.on_epoch_begin(epoch)
        clock[0] += 10.0  # the epoch's steps
        limit.on_epoch_end(epoch)
        if limit.model.stop_training:
            break
        clock[0] += 20.0  # validation and checkpoints after TimeLimit's epoch end
    # ends 10, 40, 70: at 40 the next 30 s cycle still fits (40 + 30 <= 90), at 70 it does not
    assert limit.stopped_at == 2 and clock[0] == 70.0
