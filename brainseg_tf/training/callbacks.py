"""Training callbacks: the best checkpoint, a wall-time limit, the learning-rate column."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from brainseg_tf import atomic
from brainseg_tf.training import compat

__all__ = ["BestCheckpoint", "TimeLimit", "LearningRateLogger", "save_model"]


def save_model(model: keras.Model, path: Path) -> Path:
    """``model.save`` to a temporary name beside ``path``, renamed into place once complete."""
    with atomic.atomic_path(path, suffix=".keras") as tmp:
        tmp.unlink()  # Keras refuses to overwrite without asking
        model.save(tmp)
    return path


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model when ``monitor`` (mode max) improves; the best value survives resumes."""

    def __init__(self, path: Path, state_path: Path, monitor: str):
        super().__init__()
        self.path, self.state_path, self.monitor = path, state_path, monitor
        self.best = -math.inf
        self.best_epoch: int | None = None
        if state_path.exists():
            state = json.loads(state_path.read_text())
            if state.get("monitor") == monitor and state.get("value") is not None:
                self.best, self.best_epoch = float(state["value"]), state.get("epoch")

    def _value(self, logs: Mapping[str, Any]) -> float | None:
        if self.monitor in logs:
            return float(logs[self.monitor])
        # Multi-output models prefix metric names with the output name.
        hits = [k for k in logs if k.endswith("_" + self.monitor.removeprefix("val_"))
                and k.startswith("val_") == self.monitor.startswith("val_")]
        return float(logs[hits[0]]) if hits else None

    def on_epoch_end(self, epoch: int, logs=None):
        value = self._value(logs or {})
        if value is None:
            raise KeyError(f"training.monitor={self.monitor!r} is not among the logged metrics {sorted(logs or {})}")
        if math.isfinite(value) and value > self.best:
            self.best, self.best_epoch = value, epoch
            save_model(self.model, self.path)
            atomic.write_json(self.state_path, {"monitor": self.monitor, "value": value, "epoch": epoch})


class TimeLimit(keras.callbacks.Callback):
    """Stop after the epoch in which the next epoch would overrun ``minutes``."""

    def __init__(self, minutes: float):
        super().__init__()
        self.limit = minutes * 60.0
        self.start = time.monotonic()
        self.epoch_start = self.start
        self.stopped_at: int | None = None

    def on_epoch_begin(self, epoch: int, logs=None):
        self.epoch_start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None):
        now = time.monotonic()
        if now - self.start + (now - self.epoch_start) > self.limit:
            self.stopped_at = epoch
            self.model.stop_training = True


class LearningRateLogger(keras.callbacks.Callback):
    """Add the current learning rate to the epoch logs (``lr`` column of ``log.csv``)."""

    def on_epoch_end(self, epoch: int, logs=None):
        if logs is not None:
            logs["lr"] = compat.current_learning_rate(self.model.optimizer)
