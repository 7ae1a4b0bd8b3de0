"""Training callbacks: the best checkpoint, a wall-time limit, the learning-rate column, the epoch
log (``log.csv``, rewritten atomically), a progress bar that counts epochs over all ``fit`` calls, and
plain progress lines within an epoch where output is not a terminal."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras

from brainseg_tf import atomic
from brainseg_tf.progress import clock_text
from brainseg_tf.training import compat

__all__ = [
    "BestCheckpoint",
    "EpochLog",
    "EpochProgbar",
    "StepProgress",
    "TimeLimit",
    "LearningRateLogger",
    "save_model",
    "format_progress",
]


def save_model(model: keras.Model, path: Path) -> Path:
    """``model.save`` to a temporary name beside ``path``, renamed into place once complete."""
    with atomic.atomic_path(path, suffix=".keras") as tmp:
        tmp.unlink()  # Keras refuses to overwrite without asking
        model.save(tmp)
    return path


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model when ``monitor`` (mode max) improves; the best value survives resumes.

    ``skip_missing``: epochs whose logs lack ``monitor`` are not compared (volume validation runs
    every few epochs only); otherwise a missing monitor is an error.
    """

    def __init__(self, path: Path, state_path: Path, monitor: str, *, skip_missing: bool = False):
        super().__init__()
        self.path, self.state_path, self.monitor = path, state_path, monitor
        self.skip_missing = skip_missing
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
        hits = [
            k
            for k in logs
            if k.endswith("_" + self.monitor.removeprefix("val_"))
            and k.startswith("val_") == self.monitor.startswith("val_")
        ]
        return float(logs[hits[0]]) if hits else None

    def on_epoch_end(self, epoch: int, logs=None):
        value = self._value(logs or {})
        if value is None and self.skip_missing:
            return
        if value is None:
            raise KeyError(f"training.monitor={self.monitor!r} is not among the logged metrics {sorted(logs or {})}")
        if math.isfinite(value) and value > self.best:
            self.best, self.best_epoch = value, epoch
            save_model(self.model, self.path)
            atomic.write_json(self.state_path, {"monitor": self.monitor, "value": value, "epoch": epoch})


class TimeLimit(keras.callbacks.Callback):
    """Stop after the epoch in which the next epoch would overrun ``minutes``.

    The next epoch is estimated by the longest epoch so far measured from one epoch's start to
    the next's, so the work done at epoch ends by later callbacks (volume validation, checkpoints)
    counts too, and by the current epoch's own length.
    """

    def __init__(self, minutes: float):
        super().__init__()
        self.limit = minutes * 60.0
        self.start = time.monotonic()
        self.epoch_start: float | None = None
        self.longest = 0.0
        self.stopped_at: int | None = None

    def on_epoch_begin(self, epoch: int, logs=None):
        now = time.monotonic()
        if self.epoch_start is not None:
            self.longest = max(self.longest, now - self.epoch_start)
        self.epoch_start = now

    def on_epoch_end(self, epoch: int, logs=None):
        now = time.monotonic()
        if now - self.start + max(self.longest, now - self.epoch_start) > self.limit:
            self.stopped_at = epoch
            self.model.stop_training = True


class LearningRateLogger(keras.callbacks.Callback):
    """Add the current learning rate to the epoch logs (``lr`` column of ``log.csv``)."""

    def on_epoch_end(self, epoch: int, logs=None):
        if logs is not None:
            logs["lr"] = compat.current_learning_rate(self.model.optimizer)


def _csv_value(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


class EpochLog(keras.callbacks.Callback):
    """One row per completed epoch in ``path`` (``epoch`` then the sorted log keys, as
    ``keras.callbacks.CSVLogger``), the whole file rewritten atomically at each epoch end so a
    kill never leaves a torn row under the final name."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch: int, logs=None):
        rows: list[dict[str, Any]] = []
        fields: list[str] = []
        if self.path.exists():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                fields = list(reader.fieldnames or [])
                rows = list(reader)
        row = {"epoch": epoch, **{k: _csv_value(v) for k, v in sorted((logs or {}).items())}}
        fields += [k for k in row if k not in fields]
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=fields, restval="NA")
        writer.writeheader()
        writer.writerows(rows + [row])
        atomic.write_text(self.path, buffer.getvalue())


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """``ProgbarLogger`` that shows ``Epoch e/epochs`` of the whole run when ``fit`` is called once
    per epoch (each call's own ``epochs`` is just ``e``)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.total_epochs = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs


def format_progress(epoch: int, epochs: int, step: int, steps: int | None, loss: float | None, rate: float) -> str:
    """One progress line: ``epoch 3/15 step 40/100 loss 0.4321 1.23 steps/s ETA 0:00:48`` (1-based
    epoch and step; ``ETA`` is the rest of this epoch, ``?`` when the step count is unknown)."""
    total = "?" if not steps else str(steps)
    eta = clock_text((steps - step) / rate) if steps and rate > 0 else "?"
    loss_text = "nan" if loss is None or not math.isfinite(loss) else f"{loss:.4f}"
    return f"epoch {epoch}/{epochs} step {step}/{total} loss {loss_text} {rate:.2f} steps/s ETA {eta}"


class StepProgress(keras.callbacks.Callback):
    """Progress within an epoch as a plain line every ``interval`` seconds (:func:`format_progress`).

    For output that is not a terminal (Kaggle "Save & Run All", Colab background runs, ``nohup``),
    where Keras prints one line per epoch and a slow run looks like a hung one. Lines go to
    ``stream`` (default ``sys.stdout``), flushed; nothing is printed in epochs shorter than
    ``interval``.
    """

    def __init__(
        self,
        epochs: int,
        interval: float = 20.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        stream: Any = None,
    ):
        super().__init__()
        self.epochs, self.interval, self.clock, self.stream = epochs, float(interval), clock, stream
        self._epoch, self._start, self._last = 0, 0.0, 0.0

    def on_epoch_begin(self, epoch: int, logs=None):
        self._epoch = epoch
        self._start = self._last = self.clock()

    def on_train_batch_end(self, batch: int, logs=None):
        now = self.clock()
        if now - self._last < self.interval:
            return
        self._last = now
        step = batch + 1
        rate = step / max(now - self._start, 1e-9)
        loss = (logs or {}).get("loss")
        line = format_progress(
            self._epoch + 1, self.epochs, step, self.params.get("steps"), None if loss is None else float(loss), rate
        )
        print(line, file=self.stream or sys.stdout, flush=True)
