"""SIGKILL a training process mid-epoch, re-run the same command: it continues from the last
completed epoch (asserted from ``events.jsonl``, ``log.csv`` and the optimizer step count)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "scripts" / "toy_pipeline.py"
EPOCHS, STEPS = 4, 12

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _recipe(tmp_path: Path) -> Path:
    recipe = {
        "name": "resume_toy",
        "split": {"method": "none"},
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "batch", "head": "sigmoid"}},
        "pipeline": {"kind": "custom", "builder": f"{TOY}:build", "patch_size": [16, 16, 16], "batch_size": 2},
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "schedule": {"name": "poly"},
        "training": {"epochs": EPOCHS, "steps_per_epoch": STEPS, "verbose": 2, "seed": 3},
    }
    path = tmp_path / "resume_toy.json"
    path.write_text(json.dumps(recipe))
    return path


def _command(recipe: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "brainseg_tf.cli", "train", "--config", str(recipe), "--run-dir", str(run_dir)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _backup_epoch(run_dir: Path) -> int:
    meta = run_dir / "backup" / "training_metadata.json"
    for path in (meta, meta.with_name(meta.name + ".bkp")):  # a kill may truncate the newest
        try:
            return int(json.loads(path.read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            continue
    return 0


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]


def _csv_epochs(run_dir: Path) -> list[int]:
    with (run_dir / "log.csv").open(newline="") as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f)]


def test_sigkill_mid_epoch_then_rerun_resumes(tmp_path: Path) -> None:
    recipe, run_dir = _recipe(tmp_path), tmp_path / "run"
    log1 = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(_command(recipe, run_dir), cwd=tmp_path, env=_env(), stdout=log1, stderr=subprocess.STDOUT)
    try:
        # Wait for the first completed epoch (its backup written), then kill during the next epoch.
        deadline = time.monotonic() + 150
        while _backup_epoch(run_dir) < 1:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no epoch completed in time"
            time.sleep(0.05)
        t_epoch = time.monotonic()
        time.sleep(0.3)
        assert proc.poll() is None, "the run finished before it could be killed; make the toy epochs longer"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log1.close()
    assert proc.returncode == -signal.SIGKILL
    completed_before = _backup_epoch(run_dir)
    assert 1 <= completed_before < EPOCHS, f"killed at epoch {completed_before} ({time.monotonic() - t_epoch:.2f}s)"
    assert not (run_dir / "metrics.json").exists()

    second = subprocess.run(_command(recipe, run_dir), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                            timeout=180)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]

    starts = [e for e in _events(run_dir) if e["event"] in ("start", "resume")]
    assert [e["initial_epoch"] for e in starts] == [0, completed_before]
    assert starts[1]["event"] == "resume"
    # Each epoch logged exactly once, in order, and the total is the configured number.
    assert _csv_epochs(run_dir) == list(range(EPOCHS))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["completed"] is True
    assert metrics["epochs_completed"] == EPOCHS
    assert metrics["initial_epoch_this_session"] == completed_before
    # The optimizer state (and with it the poly schedule position) was restored, not restarted.
    assert metrics["optimizer_steps"] == EPOCHS * STEPS
    assert "Epoch 1/" not in second.stdout
    assert f"Epoch {completed_before + 1}/{EPOCHS}" in second.stdout
    assert (run_dir / "best.keras").exists() and (run_dir / "final.keras").exists()
