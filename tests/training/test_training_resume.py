"""Exact resume and kill safety of ``brainseg train``.

1. SIGKILL a training process mid-epoch (after a mid-epoch backup, ``training.checkpoint_every_steps``),
   re-run the same command: it continues from that step and ends with the weights, log rows and
   best value of an uninterrupted run of the same recipe; resuming without the data-position
   restore does not (the comparison can fail).
2. SIGKILL it again and again at seeded random times while it writes checkpoints (a backup every
   step, ``best.keras``, ``final.keras``): after every kill each file under its final name is
   complete and valid, and re-running the same command finishes the job, again with the
   uninterrupted run's weights.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT, trainer_env

REPO = REPO_ROOT
TOY = REPO / "tests" / "scripts" / "toy_pipeline.py"
KILLS = int(os.environ.get("BRAINSEG_TEST_KILLS", "3"))
ATOL = 1e-5

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _recipe(tmp_path: Path, *, every: int) -> Path:
    recipe = {
        "name": "resume_toy",
        "split": {"method": "none"},
        # bottom spatial dropout: its seed-generator state is part of what a resume restores
        "model": {
            "name": "unet",
            "options": {"depth": 2, "base_filters": 4, "norm": "batch", "head": "sigmoid", "dropout": 0.3},
        },
        "pipeline": {"kind": "custom", "builder": f"{TOY}:build", "patch_size": [16, 16, 16], "batch_size": 2},
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "schedule": {"name": "poly", "warmup_steps": 2},
        "training": {
            "epochs": EPOCHS,
            "steps_per_epoch": STEPS,
            "verbose": 2,
            "seed": 3,
            "checkpoint_every_steps": every,
        },
        "runtime": {"deterministic": True},
    }
    path = tmp_path / "resume_toy.json"
    path.write_text(json.dumps(recipe))
    return path


def _command(recipe: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "brainseg_tf.cli", "train", "--config", str(recipe), "--run-dir", str(run_dir)]


def _state(run_dir: Path) -> dict | None:
    """The backup's ``state.json`` as the trainer left it (``None`` while there is none)."""
    try:
        return json.loads((run_dir / "backup" / "state.json").read_text())
    except (OSError, ValueError):
        return None


def _events(run_dir: Path) -> list[dict]:
    out = []
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a kill may tear the last line of this append-only log
            continue
    return out


def _csv(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [w.shape for w in a] == [w.shape for w in b]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


EPOCHS, STEPS = 2, 6


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The recipe trained uninterrupted in this process: ``(run_dir, seconds of training)``, the
    latter from the first backup (first step done) to the end. Both tests compare with it (how
    often backups are written does not change training)."""
    import threading

    from brainseg_tf.training import train

    tmp = tmp_path_factory.mktemp("reference")
    run_dir, first = tmp / "ref", []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not first:
            if (run_dir / "backup" / "state.json").exists():
                first.append(time.monotonic())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = train(_recipe(tmp, every=2), run_dir=run_dir)
    finally:
        done.set()
        watcher.join()
    assert result.metrics["completed"] and first
    return run_dir, time.monotonic() - first[0]


def _assert_same_run(run_dir: Path, ref_dir: Path) -> float:
    """Same final weights, log rows and best value as the uninterrupted run; returns max |Δw|."""
    diff = _max_diff(_weights(run_dir / "final.keras"), _weights(ref_dir / "final.keras"))
    assert diff <= ATOL, f"max |Δweight| {diff:.3g} after resume"
    rows, ref_rows = _csv(run_dir), _csv(ref_dir)
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in ref_rows]
    for row, ref_row in zip(rows, ref_rows):  # the resumed epoch's means include its steps before the kill
        np.testing.assert_allclose(
            [float(row[k]) for k in ref_row], [float(ref_row[k]) for k in ref_row], rtol=1e-4, atol=1e-6
        )
    best, ref_best = (json.loads((d / "best.json").read_text()) for d in (run_dir, ref_dir))
    assert best["epoch"] == ref_best["epoch"] and best["value"] == pytest.approx(ref_best["value"], abs=1e-6)
    return diff


@pytest.mark.compat
def test_sigkill_mid_epoch_then_rerun_ends_with_the_uninterrupted_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: tuple[Path, float]
) -> None:
    epochs, steps, every = EPOCHS, STEPS, 2
    recipe = _recipe(tmp_path, every=every)
    ref_dir, run_dir, control_dir = reference[0], tmp_path / "run", tmp_path / "control"

    rng = np.random.default_rng(20261202)
    log1 = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        _command(recipe, run_dir), cwd=tmp_path, env=trainer_env(), stdout=log1, stderr=subprocess.STDOUT
    )
    try:
        # Wait for the first mid-epoch backup, then kill within the next few steps.
        deadline = time.monotonic() + 150
        while (_state(run_dir) or {}).get("step", 0) < every:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no mid-epoch backup in time"
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log1.close()
    assert proc.returncode == -signal.SIGKILL
    state = _state(run_dir)
    assert state["epoch"] == 0 and 0 < state["step"] < steps, state  # killed mid-epoch
    assert state["step"] % every == 0 and state["global_step"] == state["step"]
    assert not (run_dir / "metrics.json").exists()
    shutil.copytree(run_dir, control_dir)

    second = subprocess.run(
        _command(recipe, run_dir), cwd=tmp_path, env=trainer_env(), capture_output=True, text=True, timeout=200
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    starts = [e for e in _events(run_dir) if e["event"] in ("start", "resume")]
    assert [(e["event"], e["initial_epoch"], e["initial_step"]) for e in starts] == [
        ("start", 0, 0),
        ("resume", 0, state["step"]),
    ]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["completed"] and metrics["epochs_completed"] == epochs
    assert metrics["optimizer_steps"] == epochs * steps  # no step lost or repeated
    assert f"Epoch 1/{epochs}" in second.stdout and f"Epoch 2/{epochs}" in second.stdout
    diff = _assert_same_run(run_dir, ref_dir)
    print(f"max |Δweight| resumed vs uninterrupted: {diff:.3g}")

    # The comparison can fail: the same resume without skipping the consumed batches differs.
    from brainseg_tf.training import data as training_data
    from brainseg_tf.training import train

    monkeypatch.setattr(training_data, "skip_batches", lambda ds, n: ds)
    train(recipe, run_dir=control_dir)
    control = _max_diff(_weights(control_dir / "final.keras"), _weights(ref_dir / "final.keras"))
    print(f"max |Δweight| without the data-position restore: {control:.3g}")
    assert control > 100 * ATOL


def _check_files(run_dir: Path) -> None:
    """Every file under its final name is complete and valid (temporaries have hidden names)."""
    import h5py
    import keras

    from brainseg_tf.card import ModelCard
    from brainseg_tf.training import backup

    for name in ("best.keras", "final.keras"):
        if (run_dir / name).exists():
            keras.saving.load_model(run_dir / name, compile=False)
    if (run_dir / "brainseg_model.json").exists():
        ModelCard.load(run_dir / "brainseg_model.json")
    for name in ("config.json", "split.json", "best.json", "metrics.json"):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text())
    if (run_dir / "log.csv").exists():
        text = (run_dir / "log.csv").read_text()
        assert text.endswith("\n")
        rows = list(csv.reader(text.splitlines()))
        assert all(len(r) == len(rows[0]) for r in rows), text
    state = backup.read_state(run_dir / "backup") if (run_dir / "backup").exists() else None
    if state is not None:
        with h5py.File(run_dir / "backup" / state.weights, "r") as f:
            f.visititems(lambda _, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
        with np.load(run_dir / "backup" / backup.EXTRA) as npz:
            assert len(npz.files) == len(state.extra)
    visible = [p.name for p in run_dir.iterdir() if not p.name.startswith(".")]
    assert not [n for n in visible if ".tmp" in n or n.endswith(".old") or re.fullmatch(r"tmp[a-z0-9_]{8}", n)]


def _backup_id(run_dir: Path) -> tuple[int, int] | None:
    try:
        st = (run_dir / "backup" / "state.json").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def test_sigkill_during_checkpoint_writes_leaves_valid_files_and_a_rerun_finishes(
    tmp_path: Path, reference: tuple[Path, float]
) -> None:
    recipe = _recipe(tmp_path, every=1)  # a backup after every step, best.keras, final.keras
    (ref_dir, duration), run_dir = reference, tmp_path / "run"
    rng = np.random.default_rng(7)
    kills = 0
    for _ in range(KILLS):
        before = _backup_id(run_dir)
        proc = subprocess.Popen(
            _command(recipe, run_dir),
            cwd=tmp_path,
            env=trainer_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Kill at a seeded random point counted in the run's own progress, not in seconds (a
            # busy machine would make a time-based point fall after the end): after the n-th new
            # backup of this session (one a step), then somewhere within the next step, its
            # checkpoint write included.
            deadline = time.monotonic() + 150
            seen, target = before, int(rng.integers(1, EPOCHS * STEPS - 2))
            while target and proc.poll() is None:
                assert time.monotonic() < deadline, "no backup written in time"
                current = _backup_id(run_dir)
                if current != seen:
                    seen, target = current, target - 1
                time.sleep(0.002)
            time.sleep(float(rng.uniform(0.0, duration / (EPOCHS * STEPS))))
            proc.send_signal(signal.SIGKILL)  # no-op when the run has already exited (reaped by its poll)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # The run may end on its own between the last poll and the signal: returncode 0 then.
        assert proc.returncode in (0, -signal.SIGKILL), proc.returncode
        finished = proc.returncode == 0
        kills += not finished
        _check_files(run_dir)
        if finished:
            shutil.rmtree(run_dir)  # finished before the kill: start over, so the next kill lands in a run
    assert kills >= 1
    rerun = subprocess.run(
        _command(recipe, run_dir), cwd=tmp_path, env=trainer_env(), capture_output=True, text=True, timeout=200
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    _check_files(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["completed"] and metrics["optimizer_steps"] == EPOCHS * STEPS
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name or p.name.endswith(".old")]
    print(f"{kills} kills; max |Δweight| vs uninterrupted: {_assert_same_run(run_dir, ref_dir):.3g}")


def test_training_stream_is_a_function_of_seed_epoch_and_step(tmp_path: Path, synthetic_dataset) -> None:
    """The built-in patch stream (NIfTI source: seeded case order, shuffle buffer, augmentation)
    rebuilt at ``(epoch, step)`` continues the epoch's stream exactly; another epoch differs."""
    from brainseg_tf.training import TrainConfig, make_split
    from brainseg_tf.training.data import data_source, labelled_ids, train_stream

    root = synthetic_dataset(n_cases=3, seed=0, shape=(40, 40, 32))
    cfg = TrainConfig.from_dict(
        {
            "data": {"root": str(root)},
            "split": {"method": "kfold", "folds": 3, "fold": 0},
            "pipeline": {
                "kind": "patch",
                "patch_size": [16, 16, 16],
                "batch_size": 2,
                "augment": "light",
                "options": {"patches_per_case": 3},
            },
            "training": {"seed": 5},
        }
    )
    split = make_split(labelled_ids(data_source(cfg), cfg), cfg.split)

    def batches(epoch: int, step: int, n: int) -> list[np.ndarray]:
        ds = train_stream(cfg, split, epoch=epoch, step=step, global_batch=2).take(n)
        return [np.concatenate([x.numpy().ravel(), y.numpy().ravel().astype(np.float32)]) for x, y in ds]

    full = batches(1, 0, 5)
    np.testing.assert_array_equal(np.stack(batches(1, 3, 2)), np.stack(full[3:]))
    np.testing.assert_array_equal(np.stack(batches(1, 0, 5)), np.stack(full))  # rebuilt: the same stream
    assert not np.array_equal(np.stack(batches(0, 0, 2)), np.stack(full[:2]))  # epochs differ
