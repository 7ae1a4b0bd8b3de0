"""The fit loop: ``train(recipe)`` builds everything, fits, checkpoints, evaluates, and resumes."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainseg_tf.card import CARD_FILE
from brainseg_tf.training import backup, compat
from brainseg_tf.training import data as training_data
from brainseg_tf.training.callbacks import (
    BestCheckpoint,
    EpochLog,
    EpochProgbar,
    LearningRateLogger,
    TimeLimit,
    save_model,
)
from brainseg_tf.training.config import SplitConfig, TrainConfig, as_config
from brainseg_tf.training.data import (
    build_datasets,
    data_source,
    epoch_seed,
    finish_dataset,
    labelled_ids,
    resolve_path,
)
from brainseg_tf.training.distribute import (
    resolve_mixed_precision,
    resolve_xla,
    select_strategy,
    strategy_name,
    task_identity,
)
from brainseg_tf.training.evaluate import final_evaluation
from brainseg_tf.training.factories import build_model, compile_model, monitor_name
from brainseg_tf.training.rundir import (
    RunLock,
    default_run_dir,
    event,
    history_from_csv,
    model_card,
    prepare_run_dir,
    remove_stale_temporaries,
    repair_backup,
    truncate_csv,
    write_json,
)
from brainseg_tf.training.split import Split, make_split
from brainseg_tf.training.validation import VolumeValidation, select_postprocessing


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the run directory (the chief's).
        model: the trained model (``None`` when the run had already completed).
        history: per-epoch logs of the whole run (read back from ``log.csv``).
        metrics: the content of ``metrics.json``.
        initial_epoch: epoch this session started from (> 0 after a resume).
        epochs_completed: epochs completed over all sessions.
        is_chief: whether this process wrote the run directory.
    """

    run_dir: Path
    model: Any
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    initial_epoch: int
    epochs_completed: int
    is_chief: bool = True

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.keras"

    @property
    def final_path(self) -> Path:
        return self.run_dir / "final.keras"


def train(
    config_or_path: TrainConfig | str | os.PathLike | Mapping[str, Any],
    *,
    run_dir: str | os.PathLike | None = None,
    resume: bool = True,
) -> RunResult:
    """Train a recipe; re-running the same call after an interruption resumes it.

    Args:
        config_or_path: a :class:`TrainConfig`, a dict, or the path of a JSON recipe.
        run_dir: run directory; defaults to ``runs/<config name>`` (relative to the current directory).
        resume: continue the run in ``run_dir`` from its last completed epoch (default). With
            ``False`` an existing run directory is an error.

    Returns:
        A :class:`RunResult`.

    Raises:
        ValueError: an invalid recipe, or a resumed run whose recipe changed incompatibly.
        FileExistsError: ``resume=False`` and ``run_dir`` already holds a run.
        FileNotFoundError: the dataset, cache or custom builder is missing.
    """
    cfg = as_config(config_or_path)
    cfg.validate()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)

    import keras
    import tensorflow as tf

    strategy = select_strategy(cfg.runtime.strategy, cfg.runtime.communication)
    task_type, task_index, is_chief = task_identity()
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if not multi_worker:
        is_chief = True
    chief_dir = run_dir
    work_dir = run_dir if is_chief else run_dir / "workers" / f"{task_type}_{task_index}"

    saved_cfg, saved_split = prepare_run_dir(cfg, chief_dir, resume) if is_chief else (None, None)
    work_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = work_dir / "metrics.json"
    if is_chief and metrics_path.exists():
        done = json.loads(metrics_path.read_text())
        if done.get("completed") and done.get("epochs_completed", 0) >= cfg.training.epochs:
            with RunLock(work_dir):  # a kill may have hit the finished run's report write
                remove_stale_temporaries(work_dir)
            event(work_dir, event="already_complete", epochs=done["epochs_completed"])
            return RunResult(
                chief_dir,
                None,
                history_from_csv(chief_dir / "log.csv"),
                done,
                done["epochs_completed"],
                done["epochs_completed"],
                True,
            )

    if cfg.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.training.seed)
    policy = resolve_mixed_precision(cfg.runtime.mixed_precision)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with RunLock(work_dir):
            return _train(
                cfg, strategy, chief_dir, work_dir, is_chief, saved_split, policy, multi_worker, task_type, task_index
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _train(
    cfg: TrainConfig,
    strategy: Any,
    chief_dir: Path,
    work_dir: Path,
    is_chief: bool,
    saved_split: Split | None,
    policy: str,
    multi_worker: bool,
    task_type: str,
    task_index: int,
) -> RunResult:
    import keras

    t0 = time.monotonic()
    t = cfg.training
    # Split: reuse the saved one; otherwise compute from the dataset's labelled ids.
    if saved_split is not None:
        split = saved_split
    elif (
        cfg.split.method == "none" or cfg.pipeline.kind == "custom" and cfg.data.root is None and cfg.data.cache is None
    ):
        split = make_split([], SplitConfig(method="none"))
    else:
        split = make_split(labelled_ids(data_source(cfg), cfg), cfg.split)
    source = _card_source(cfg)
    backup_dir = work_dir / "backup"
    repair_backup(backup_dir)
    remove_stale_temporaries(work_dir)
    resume = backup.read_state(backup_dir)
    initial_epoch, initial_step = (resume.epoch, resume.step) if resume is not None else (0, 0)
    if initial_step >= t.steps_per_epoch:  # steps_per_epoch cannot change on resume; be safe anyway
        initial_epoch, initial_step = initial_epoch + 1, 0
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.pipeline.batch_size * replicas
    if is_chief:
        resolved = cfg.to_dict()
        resolved["resolved_runtime"] = {
            "dtype_policy": policy,
            "xla": resolve_xla(cfg.runtime.xla),
            "strategy": strategy_name(strategy),
            "replicas": replicas,
            "global_batch_size": global_batch,
        }
        write_json(work_dir / "config.json", resolved)
        write_json(work_dir / "split.json", split.to_dict())
        card = model_card(cfg, split, source, epochs=initial_epoch)
        card.save(work_dir / CARD_FILE)
        truncate_csv(work_dir / "log.csv", initial_epoch)
    event(
        work_dir if is_chief else None,
        event="resume" if initial_epoch or initial_step else "start",
        initial_epoch=initial_epoch,
        initial_step=initial_step,
        epochs=t.epochs,
        steps_per_epoch=t.steps_per_epoch,
        strategy=strategy_name(strategy),
        replicas=replicas,
        global_batch=global_batch,
        policy=policy,
        train_cases=len(split.train_ids),
        val_cases=len(split.val_ids),
    )

    # The training stream is rebuilt for every epoch from (seed, epoch) (data.train_stream), so a
    # resume at (epoch, step) replays nothing and skips only within the epoch.
    _, val_ds = build_datasets(cfg, split, seed=t.seed, global_batch=global_batch)

    with strategy.scope():
        model = build_model(cfg)
        n_outputs = len(model.outputs)
        compile_model(model, cfg, xla=resolve_xla(cfg.runtime.xla))
        val_ds = finish_dataset(val_ds, cfg, n_outputs, multi_worker)
        if multi_worker:
            compat.prebuild_for_multi_worker(
                model, _epoch_stream(cfg, split, initial_epoch, initial_step, global_batch, n_outputs, multi_worker)
            )
        resumed_metrics = backup.restore(backup_dir, model, resume) if resume is not None else []
    has_val = val_ds is not None
    volume_ids = _volume_ids(cfg, split)
    monitor = monitor_name(cfg, has_val or bool(volume_ids))

    callbacks: list[Any] = [LearningRateLogger()]
    plateau = None
    if cfg.schedule.name == "plateau":
        plateau_monitor = (
            cfg.schedule.monitor if cfg.schedule.monitor != "auto" else ("val_loss" if has_val else "loss")
        )
        plateau = keras.callbacks.ReduceLROnPlateau(
            monitor=plateau_monitor,
            factor=cfg.schedule.factor,
            patience=cfg.schedule.patience,
            min_lr=cfg.schedule.min_lr,
            verbose=1,
        )
        callbacks.append(plateau)
    time_limit = TimeLimit(t.max_minutes) if t.max_minutes else None
    if time_limit is not None:
        callbacks.append(time_limit)
    best_cb = None
    if is_chief:
        if volume_ids:  # after TimeLimit (it validates an epoch that stops the run), before the checkpoint
            callbacks.append(VolumeValidation(cfg, card, volume_ids, cfg.validation.every_epochs, t.epochs))
        best_cb = BestCheckpoint(
            work_dir / "best.keras", work_dir / "best.json", monitor, skip_missing=bool(volume_ids)
        )
        callbacks += [best_cb, EpochLog(work_dir / "log.csv")]
        if tensorboard_available():
            callbacks.append(
                keras.callbacks.TensorBoard(
                    log_dir=str(work_dir / "tensorboard"), write_graph=False, update_freq="epoch", profile_batch=0
                )
            )
        elif initial_epoch == 0 and initial_step == 0:
            event(work_dir, event="note", tensorboard="not installed; pip install tensorboard for RUN_DIR/tensorboard")
    verbose = t.verbose
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    if verbose:
        callbacks.append(EpochProgbar(t.epochs))
    # Last, so an epoch counts as completed only once its row, best model and LR are written.
    resume_cb = backup.ResumeBackup(
        backup_dir,
        t.steps_per_epoch,
        t.checkpoint_every_steps,
        states=lambda: _callback_states(plateau, best_cb),
        restore_states=lambda s: _restore_callback_states(s, plateau, best_cb),
    )
    if resume is not None and resume.format:
        resume_cb.carried = resume.callbacks
    callbacks.append(resume_cb)

    fit_kwargs: dict[str, Any] = dict(callbacks=callbacks, verbose=verbose, shuffle=False)
    if has_val:
        fit_kwargs["validation_data"] = val_ds
    epoch, step = initial_epoch, initial_step
    while epoch < t.epochs:
        # One fit call per epoch, on that epoch's stream (the first may start mid-epoch).
        train_ds = _epoch_stream(cfg, split, epoch, step, global_batch, n_outputs, multi_worker)
        resume_cb.start_epoch(epoch, step, epoch_seed(t.seed, epoch), resumed_metrics if step else None)
        with compat.multi_worker_log_reduction() if multi_worker else contextlib.nullcontext():
            model.fit(
                train_ds, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=t.steps_per_epoch - step, **fit_kwargs
            )
        # Release each input pipeline at once: an HDF5-backed tf.data iterator left alive can
        # hang the interpreter at exit (docs: feasibility notes).
        del train_ds
        gc.collect()
        epoch, step = epoch + 1, 0
        if model.stop_training:
            break
    del val_ds, fit_kwargs
    gc.collect()
    state = backup.read_state(backup_dir)
    epochs_completed = state.epoch if state is not None else 0
    stopped_early = epochs_completed < t.epochs
    wall = time.monotonic() - t0

    if not is_chief:
        return RunResult(chief_dir, model, {}, {}, initial_epoch, epochs_completed, False)

    if cfg.training.save_final:
        save_model(model, work_dir / "final.keras")
    history = history_from_csv(work_dir / "log.csv")
    last = {k: v[-1] for k, v in history.items() if v} if history else {}
    previous = json.loads((work_dir / "metrics.json").read_text()) if (work_dir / "metrics.json").exists() else {}
    metrics: dict[str, Any] = {
        "completed": not stopped_early,
        "stopped_by_time_limit": bool(time_limit and time_limit.stopped_at is not None),
        "epochs_completed": epochs_completed,
        "epochs": t.epochs,
        "steps_per_epoch": t.steps_per_epoch,
        "optimizer_steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "global_batch_size": global_batch,
        "replicas": replicas,
        "dtype_policy": policy,
        "initial_epoch_this_session": initial_epoch,
        "wall_time_s_this_session": round(wall, 2),
        "wall_time_s_total": round(wall + float(previous.get("wall_time_s_total", 0.0)), 2),
        "monitor": monitor,
        "best": {
            "value": best_cb.best if best_cb and math.isfinite(best_cb.best) else None,
            "epoch": best_cb.best_epoch if best_cb else None,
        },
        "last_epoch": last,
    }
    # The card first: the postprocessing selection then records its rules in it.
    card.replace(provenance=dataclasses.replace(card.provenance, epochs=epochs_completed)).save(work_dir / CARD_FILE)
    if _selects_postprocessing(cfg, split):
        metrics["postprocessing"] = select_postprocessing(cfg, split, work_dir)
    if cfg.validation.final_sliding_window and split.val_ids and cfg.pipeline.kind != "custom":
        metrics["sliding_window"] = final_evaluation(cfg, split, work_dir)
    write_json(work_dir / "metrics.json", metrics)
    event(
        work_dir,
        event="end",
        epochs_completed=epochs_completed,
        completed=metrics["completed"],
        wall_s=round(wall, 1),
        best=metrics["best"],
    )
    return RunResult(chief_dir, model, history, metrics, initial_epoch, epochs_completed, True)


def _volume_ids(cfg: TrainConfig, split: Split) -> list[str]:
    """Validation cases scored on whole volumes during training (``validation.mode="volumes"``)."""
    if cfg.validation.mode != "volumes":
        return []
    ids = list(split.val_ids)
    return ids[: cfg.validation.max_cases] if cfg.validation.max_cases else ids


def _selects_postprocessing(cfg: TrainConfig, split: Split) -> bool:
    """``validation.select_postprocessing``, by default on where raw validation cases exist."""
    choice = cfg.validation.select_postprocessing
    possible = bool(split.val_ids) and cfg.pipeline.kind != "custom" and cfg.data.root is not None
    if choice is None:
        root = resolve_path(cfg.data.root, cfg)
        return possible and root is not None and root.exists()
    return bool(choice) and possible


def _epoch_stream(
    cfg: TrainConfig, split: Split, epoch: int, step: int, global_batch: int, n_outputs: int, shard: bool
) -> Any:
    """Epoch ``epoch``'s training stream from step ``step``, with the model's targets."""
    ds = training_data.train_stream(cfg, split, epoch=epoch, step=step, global_batch=global_batch)
    return finish_dataset(ds, cfg, n_outputs, shard)


_PLATEAU_STATE = ("wait", "cooldown_counter", "best")


def _callback_states(plateau: Any, best_cb: BestCheckpoint | None) -> dict[str, Any]:
    """What the resume backup keeps of the callbacks: ``ReduceLROnPlateau``'s counters and the
    best monitored value so far (the learning rate itself is an optimizer variable)."""
    out: dict[str, Any] = {}
    if plateau is not None:
        out["plateau"] = {k: float(getattr(plateau, k)) for k in _PLATEAU_STATE}
    if best_cb is not None:
        out["best"] = {"value": best_cb.best if math.isfinite(best_cb.best) else None, "epoch": best_cb.best_epoch}
    return out


def _restore_callback_states(states: Mapping[str, Any], plateau: Any, best_cb: BestCheckpoint | None) -> None:
    if plateau is not None and "plateau" in states:
        for k in _PLATEAU_STATE:
            value = states["plateau"][k]
            setattr(plateau, k, int(value) if k != "best" else float(value))
    if best_cb is not None and "best" in states:
        value = states["best"]["value"]
        best_cb.best = -math.inf if value is None else float(value)
        best_cb.best_epoch = states["best"]["epoch"]


def _card_source(cfg: TrainConfig) -> Path | None:
    """The data the card names (the cache or dataset folder), ``None`` for builder-only pipelines."""
    if cfg.pipeline.kind == "custom":
        try:
            return data_source(cfg)
        except FileNotFoundError:
            return None
    return data_source(cfg)


def tensorboard_available() -> bool:
    """TensorFlow >= 2.21 no longer depends on the tensorboard package that tf.summary needs."""
    return importlib.util.find_spec("tensorboard") is not None
