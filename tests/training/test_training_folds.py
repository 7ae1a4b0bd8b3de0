"""``brainseg train --folds K``: all folds in one resumable command.

The command runs in a subprocess on tiny synthetic cases; it is SIGKILLed during fold 1, after
fold 0 completed and fold 1 wrote a mid-epoch backup. Re-running the same command leaves fold 0
alone (its checkpoints byte-identical, same mtimes), resumes fold 1 at its backup, and writes a
``folds.json`` listing both folds complete; the ensemble loader accepts the fold run directories.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO_ROOT, trainer_env

REPO = REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]


def test_folds_resume_after_sigkill(tmp_path: Path, synthetic_dataset) -> None:
    root = synthetic_dataset(n_cases=4, seed=1, shape=(40, 40, 32))
    recipe = {
        "name": "folds",
        "data": {"root": str(root)},
        "split": {"method": "fixed", "val_ids": ["BraTS2021_00000"]},  # --folds makes it a seeded k-fold split
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "instance", "head": "sigmoid"}},
        "pipeline": {"kind": "patch", "patch_size": [16, 16, 16], "batch_size": 2, "augment": "none"},
        "validation": {"mode": "volumes", "final_sliding_window": False, "select_postprocessing": False},
        "training": {"epochs": 2, "steps_per_epoch": 6, "verbose": 2, "checkpoint_every_steps": 1},
    }
    path = tmp_path / "folds.json"
    path.write_text(json.dumps(recipe))
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "brainseg_tf.cli",
        "train",
        "--config",
        str(path),
        "--run-dir",
        str(run_dir),
        "--folds",
        "2",
    ]
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(command, env=trainer_env(), stdout=log, stderr=subprocess.STDOUT)
    state = run_dir / "fold_1" / "backup" / "state.json"
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    fold0 = run_dir / "fold_0"
    assert json.loads((fold0 / "metrics.json").read_text())["completed"]
    assert not (run_dir / "fold_1" / "metrics.json").exists()
    before = {name: _digest(fold0 / name) for name in ("final.keras", "best.keras", "metrics.json")}
    killed_at = json.loads(state.read_text())

    second = subprocess.run(command, env=trainer_env(), capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert {name: _digest(fold0 / name) for name in before} == before  # fold 0 not retrained
    assert [e["event"] for e in _events(fold0)].count("start") == 1
    resumed = [e for e in _events(run_dir / "fold_1") if e["event"] == "resume"]
    assert resumed and (resumed[0]["initial_epoch"], resumed[0]["initial_step"]) == (
        killed_at["epoch"],
        killed_at["step"],
    )

    summary = json.loads((run_dir / "folds.json").read_text())
    assert summary["completed"] and summary["folds"] == 2
    assert [f["fold"] for f in summary["per_fold"]] == [0, 1]
    val_ids = []
    for entry in summary["per_fold"]:
        fold_path = run_dir / entry["run_dir"]
        metrics = json.loads((fold_path / "metrics.json").read_text())
        assert entry["completed"] and entry["best"] == metrics["best"]
        assert entry["monitor"] == "val_volume_mean_dice" and (run_dir / entry["best_path"]).is_file()
        split = json.loads((fold_path / "split.json").read_text())
        assert split["method"] == "kfold" and split["fold"] == entry["fold"] and split["folds"] == 2
        assert entry["val_ids"] == split["val_ids"]
        val_ids += split["val_ids"]
    assert sorted(val_ids) == [f"BraTS2021_{i:05d}" for i in range(4)]  # the folds' validation sets partition the cases

    from brainseg_tf import inference

    ensemble = inference.Ensemble([run_dir / "fold_0", run_dir / "fold_1"])
    assert len(ensemble.members) == 2 and ensemble.head == "sigmoid"
    assert [Path(m.source).parent.name for m in ensemble.members] == ["fold_0", "fold_1"]
