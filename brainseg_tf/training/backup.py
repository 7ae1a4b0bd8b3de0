"""The resume backup (``RUN_DIR/backup/``): everything a killed run needs to continue exactly.

One folder, written whole to a temporary name and swapped in by
:func:`brainseg_tf.atomic.atomic_dir`, at every epoch end and (``training.checkpoint_every_steps``)
every N optimizer steps within an epoch:

- ``state.json``: format, the position (``epoch`` in progress = epochs completed, ``step`` =
  steps done within it, ``global_step`` = optimizer steps), the data stream (``data_seed`` of the
  epoch's stream and ``data_position`` = batches of it consumed), the numpy and Python global
  RNG states, the callback states (``ReduceLROnPlateau`` counters, the best monitored value)
  and the names of the arrays in ``extra.npz``;
- ``model.weights.h5``: ``model.save_weights`` (weights, BatchNorm statistics, optimizer
  variables: iterations, moments, learning rate);
- ``extra.npz``: what ``save_weights`` leaves out: Keras seed-generator states (dropout masks)
  and, mid-epoch, the running epoch metrics (loss and metric totals and counts).

A kill while a backup is written leaves the previous one (under ``backup/`` or, during the swap,
under a hidden ``.backup.*.old`` name that :func:`repair` moves back). Older run directories
hold a ``keras.callbacks.BackupAndRestore`` backup (``training_metadata.json`` +
``latest.weights.h5``); :func:`read_state` reads it as an epoch-boundary state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from brainseg_tf import atomic
from brainseg_tf.training import compat

__all__ = ["BackupState", "ResumeBackup", "read_state", "repair", "restore"]

FORMAT = 1
STATE, WEIGHTS, EXTRA = "state.json", "model.weights.h5", "extra.npz"
LEGACY_META, LEGACY_WEIGHTS = "training_metadata.json", "latest.weights.h5"


@dataclass
class BackupState:
    """Where a run stands (``state.json``). ``epoch`` is the epoch in progress (the number of
    completed epochs), ``step`` the optimizer steps done within it (0 at an epoch boundary)."""

    epoch: int
    step: int
    global_step: int
    steps_per_epoch: int
    data_seed: int | None = None
    data_position: int = 0
    rng: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    format: int = FORMAT
    weights: str = WEIGHTS


class BackupError(ValueError):
    """A backup folder that cannot be read (names the file and the problem)."""


# ------------------------------------------------------------------------------- files
def repair(backup_dir: Path) -> None:
    """Undo what a kill during a backup swap left: a missing ``backup/`` comes back from the
    newest hidden ``.backup.*.old`` (the complete previous backup); half-written ``.tmp``
    folders and superseded ``.old`` ones are removed. Call it only while holding the run lock."""
    backup_dir = Path(backup_dir)
    parent, name = backup_dir.parent, backup_dir.name
    if not parent.exists():
        return
    for tmp in parent.glob(f".{name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    olds = sorted(parent.glob(f".{name}.*.old"), key=lambda p: p.stat().st_mtime)
    if not backup_dir.exists() and olds:
        os.replace(olds.pop(), backup_dir)
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


def read_state(backup_dir: Path) -> BackupState | None:
    """The backup's :class:`BackupState`, ``None`` when there is none.

    Raises:
        BackupError: ``state.json`` is unreadable or of an unknown format.
    """
    backup_dir = Path(backup_dir)
    path = backup_dir / STATE
    if not path.exists():
        return _legacy_state(backup_dir)
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise BackupError(f"{path}: backup format {data.get('format')!r} unknown (expected {FORMAT})")
        return BackupState(**data)
    except (OSError, ValueError, TypeError) as exc:
        if isinstance(exc, BackupError):
            raise
        raise BackupError(
            f"{path}: unreadable resume backup ({exc}); move {backup_dir} away to restart "
            "from the last saved model instead"
        ) from None


def _legacy_state(backup_dir: Path) -> BackupState | None:
    """A ``keras.callbacks.BackupAndRestore`` backup (run directories written before format 1)."""
    for meta in (backup_dir / LEGACY_META, backup_dir / (LEGACY_META + ".bkp")):
        try:
            epoch = int(json.loads(meta.read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if (backup_dir / LEGACY_WEIGHTS).exists():
            return BackupState(
                epoch=epoch, step=0, global_step=-1, steps_per_epoch=-1, format=0, weights=LEGACY_WEIGHTS
            )
    return None


def _extra_variables(model: keras.Model) -> list[Any]:
    """Variables ``save_weights`` does not hold: seed-generator states (dropout), in model order,
    then the global Keras seed generator's, where one exists."""
    weights = {id(v) for v in model.weights}
    out = [v for v in model.variables if id(v) not in weights]
    global_state = compat.global_seed_state()
    return out + ([global_state] if global_state is not None else [])


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    if "numpy" in states:
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, np.uint32), pos, has_gauss, gauss))
    if "python" in states:
        version, internal, gauss_next = states["python"]
        random.setstate((version, tuple(internal), gauss_next))


def write(backup_dir: Path, model: keras.Model, state: BackupState, *, with_metrics: bool) -> None:
    """Write the backup folder atomically (the previous one stays until the new one is complete)."""
    arrays = {f"var_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(_extra_variables(model))}
    names = [v.path for v in _extra_variables(model)]
    if with_metrics:
        for i, v in enumerate(model.metrics_variables):
            arrays[f"metric_{i}"] = keras.ops.convert_to_numpy(v)
            names.append("metric:" + v.path)
    state.extra, state.rng = names, _rng_states()
    with atomic.atomic_dir(backup_dir) as tmp:
        model.save_weights(tmp / WEIGHTS)
        with open(tmp / EXTRA, "wb") as fh:
            np.savez(fh, **arrays)
        (tmp / STATE).write_text(json.dumps(asdict(state)) + "\n")


def restore(backup_dir: Path, model: keras.Model, state: BackupState) -> list[np.ndarray]:
    """Load the weights, optimizer, seed-generator and RNG states into ``model`` (compiled, in
    its strategy scope); return the saved running epoch metrics (empty at an epoch boundary),
    added to the metrics of the first resumed step (:class:`ResumeBackup`)."""
    backup_dir = Path(backup_dir)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(backup_dir / state.weights)
    if state.format == 0:
        return []
    with np.load(backup_dir / EXTRA) as npz:
        arrays = {k: npz[k] for k in npz.files}
    variables = _extra_variables(model)
    saved_vars = [n for n in state.extra if not n.startswith("metric:")]
    if len(saved_vars) != len(variables):
        raise BackupError(
            f"{backup_dir / EXTRA}: {len(saved_vars)} seed states saved, the model has "
            f"{len(variables)}; the backup belongs to another model"
        )
    for i, v in enumerate(variables):
        v.assign(arrays[f"var_{i}"])
    _set_rng_states(state.rng)
    return [arrays[k] for k in sorted((k for k in arrays if k.startswith("metric_")), key=lambda k: int(k[7:]))]


# ------------------------------------------------------------------------------- callback
class ResumeBackup(keras.callbacks.Callback):
    """Write the backup at every epoch end and every ``every_steps`` steps within an epoch.

    Put it last in the callback list, so an epoch counts as completed only once its log row,
    best model and learning rate are written. The fit loop calls ``fit`` once per epoch and
    tells it where each call starts (:meth:`start_epoch`). ``states`` returns the callback
    states to save; ``restore_states`` puts them back at every ``on_train_begin`` (after the
    other callbacks reset themselves).

    Args:
        backup_dir: ``RUN_DIR/backup``.
        steps_per_epoch: optimizer steps per epoch.
        every_steps: mid-epoch period in steps (0: epoch ends only).
        states: ``() -> dict`` of callback states.
        restore_states: ``dict -> None``.
    """

    def __init__(
        self,
        backup_dir: Path,
        steps_per_epoch: int,
        every_steps: int,
        states: Callable[[], dict[str, Any]],
        restore_states: Callable[[dict[str, Any]], None],
    ):
        super().__init__()
        self.backup_dir, self.steps_per_epoch, self.every = Path(backup_dir), steps_per_epoch, every_steps
        self.states, self.restore_states = states, restore_states
        self.epoch, self.offset, self.data_seed = 0, 0, None
        self.carried: dict[str, Any] | None = None
        self._metrics: list[np.ndarray] = []

    def start_epoch(self, epoch: int, step: int, data_seed: int, metrics: list[np.ndarray] | None = None) -> None:
        """The next ``fit`` call runs epoch ``epoch`` from step ``step`` on the stream ``data_seed``;
        ``metrics``: running metrics to continue from (a mid-epoch resume)."""
        self.epoch, self.offset, self.data_seed = epoch, step, data_seed
        self._metrics = list(metrics or [])

    def on_train_begin(self, logs=None):
        if self.carried is not None:
            self.restore_states(self.carried)

    def on_train_end(self, logs=None):
        self.carried = self.states()

    def _continue_metrics(self) -> None:
        """Add the saved running metrics to those of the first resumed step. Keras builds the
        compiled metrics only while tracing that step, and every metric state here is a sum
        (``Mean`` total/count, confusion counts), so ``saved + step`` is the uninterrupted
        run's ``(… + step_k) + step_{k+1}`` to the bit (one addition, commutative)."""
        variables = self.model.metrics_variables
        if len(variables) != len(self._metrics):
            warnings.warn(
                f"{self.backup_dir}: {len(self._metrics)} saved metric states, the model has "
                f"{len(variables)}; this epoch's training metrics restart at the resume step",
                stacklevel=2,
            )
        else:
            for v, value in zip(variables, self._metrics):
                v.assign_add(value)
        self._metrics = []

    def on_train_batch_end(self, batch, logs=None):
        if self._metrics:
            self._continue_metrics()
        done = self.offset + int(batch) + 1
        if self.every and done % self.every == 0 and done < self.steps_per_epoch:
            self._save(self.epoch, done)

    def on_epoch_end(self, epoch, logs=None):
        self._save(epoch + 1, 0)

    def _save(self, epoch: int, step: int) -> None:
        global_step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        state = BackupState(
            epoch=epoch,
            step=step,
            global_step=global_step,
            steps_per_epoch=self.steps_per_epoch,
            data_seed=self.data_seed if step else None,
            data_position=step,
            callbacks=self.states(),
        )
        write(self.backup_dir, self.model, state, with_metrics=step > 0)
