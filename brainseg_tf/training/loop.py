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

from brainseg_tf.card import CARD_FILE, ModelCard
from brainseg_tf.training import backup, compat
from brainseg_tf.training import data as training_data
from brainseg_tf.training.callbacks import (
    BestCheckpoint,
    EpochLog,
    EpochProgbar,
    LearningRateLogger,
    StepProgress,
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
from brainseg_tf.training.validation import (
    VolumeValidation,
    postprocessing_from_records,
    postprocessing_records,
    select_postprocessing,
)


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
        ValueError: an invalid recipe, a resumed run whose recipe changed incompatibly, training
            cases of different label schemes (two named), or a head that does not fit the scheme.
        CacheError: ``data.cache`` was built in another label scheme than ``data.scheme``.
        FileExistsError: ``resume=False`` and ``run_dir`` already holds a run.
        FileNotFoundError: the dataset, cache or custom builder is missing.
    """
    cfg = as_config(config_or_path)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    if cfg.validation.postprocessing_records is not None:
        postprocessing_records(cfg)  # refused now, not after training

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
    done = _completed_run(cfg, chief_dir) if is_chief else None
    if done is not None:
        return done
    # The label scheme settles the head's channels, the losses and the metrics: from the data where
    # the recipe states none (its cases must share one), checked against the cache where it does.
    cfg = training_data.with_data_scheme(cfg)

    if cfg.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.training.seed)
    policy = resolve_mixed_precision(cfg.runtime.mixed_precision)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    session = _Session(cfg, strategy, chief_dir, work_dir, is_chief, policy, multi_worker)
    try:
        with RunLock(work_dir):
            return _train(session, saved_split)
    finally:
        keras.config.set_dtype_policy(previous_policy)


@dataclass
class _Session:
    """Where and how this process trains, fixed before the first epoch.

    Attributes:
        cfg: the resolved recipe.
        strategy: the ``tf.distribute`` strategy.
        chief_dir: the run directory.
        work_dir: where this process writes (``chief_dir``, or a worker's folder under it).
        is_chief: whether this process writes the run directory.
        policy: the Keras dtype policy in force.
        multi_worker: whether the strategy spans several workers (the data is then sharded).
    """

    cfg: TrainConfig
    strategy: Any
    chief_dir: Path
    work_dir: Path
    is_chief: bool
    policy: str
    multi_worker: bool

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def global_batch(self) -> int:
        return self.cfg.pipeline.batch_size * self.replicas

    @property
    def backup_dir(self) -> Path:
        return self.work_dir / "backup"


@dataclass
class _Callbacks:
    """A session's callbacks in fit order, those the loop and the report read back, and the
    metric that selects ``best.keras``."""

    all: list[Any]
    resume: backup.ResumeBackup
    verbose: int
    monitor: str
    plateau: Any = None
    time_limit: TimeLimit | None = None
    best: BestCheckpoint | None = None


def _completed_run(cfg: TrainConfig, run_dir: Path) -> RunResult | None:
    """The result of a run that already completed its epochs, ``None`` otherwise."""
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        return None
    done = json.loads(metrics_path.read_text())
    if not (done.get("completed") and done.get("epochs_completed", 0) >= cfg.training.epochs):
        return None
    with RunLock(run_dir):  # a kill may have hit the finished run's report write
        remove_stale_temporaries(run_dir)
        records = cfg.validation.postprocessing_records
        if records is not None and (done.get("postprocessing") or {}).get("records") != records:
            # the recipe now takes its postprocessing from out-of-fold records: the finished run's card too
            done["postprocessing"] = postprocessing_from_records(cfg, run_dir)
            write_json(metrics_path, done)
    event(run_dir, event="already_complete", epochs=done["epochs_completed"])
    epochs = done["epochs_completed"]
    return RunResult(run_dir, None, history_from_csv(run_dir / "log.csv"), done, epochs, epochs, True)


def _train(session: _Session, saved_split: Split | None) -> RunResult:
    """Split, restore, fit epoch by epoch, then write the report (chief only)."""
    t0 = time.monotonic()
    cfg = session.cfg
    split = saved_split if saved_split is not None else _make_split(cfg)
    repair_backup(session.backup_dir)
    remove_stale_temporaries(session.work_dir)
    resume = backup.read_state(session.backup_dir)
    initial_epoch, initial_step = (resume.epoch, resume.step) if resume is not None else (0, 0)
    if initial_step >= cfg.training.steps_per_epoch:  # steps_per_epoch cannot change on resume; be safe anyway
        initial_epoch, initial_step = initial_epoch + 1, 0
    card = _write_run_files(session, split, initial_epoch) if session.is_chief else None
    event(
        session.work_dir if session.is_chief else None,
        event="resume" if initial_epoch or initial_step else "start",
        initial_epoch=initial_epoch,
        initial_step=initial_step,
        epochs=cfg.training.epochs,
        steps_per_epoch=cfg.training.steps_per_epoch,
        strategy=strategy_name(session.strategy),
        replicas=session.replicas,
        global_batch=session.global_batch,
        policy=session.policy,
        train_cases=len(split.train_ids),
        val_cases=len(split.val_ids),
    )
    # The training stream is rebuilt for every epoch from (seed, epoch) (data.train_stream), so a
    # resume at (epoch, step) replays nothing and skips only within the epoch.
    _, val_ds = build_datasets(cfg, split, seed=cfg.training.seed, global_batch=session.global_batch)
    with session.strategy.scope():
        model = build_model(cfg)
        compile_model(model, cfg, xla=resolve_xla(cfg.runtime.xla))
        val_ds = finish_dataset(val_ds, cfg, len(model.outputs), session.multi_worker)
        if session.multi_worker:
            compat.prebuild_for_multi_worker(
                model, _epoch_stream(session, split, initial_epoch, initial_step, len(model.outputs))
            )
        resumed_metrics = backup.restore(session.backup_dir, model, resume) if resume is not None else []
    callbacks = _make_callbacks(
        session, card, _volume_ids(cfg, split), val_ds is not None, fresh=(initial_epoch, initial_step) == (0, 0)
    )
    if resume is not None and resume.format:
        callbacks.resume.carried = resume.callbacks
    _fit_epochs(session, model, split, val_ds, callbacks, (initial_epoch, initial_step), resumed_metrics)
    del val_ds
    gc.collect()
    state = backup.read_state(session.backup_dir)
    epochs_completed = state.epoch if state is not None else 0
    wall = time.monotonic() - t0
    if not session.is_chief:
        return RunResult(session.chief_dir, model, {}, {}, initial_epoch, epochs_completed, False)
    metrics, history = _report(session, model, split, card, callbacks, (initial_epoch, epochs_completed), wall)
    return RunResult(session.chief_dir, model, history, metrics, initial_epoch, epochs_completed, True)


def _make_split(cfg: TrainConfig) -> Split:
    """The split of a new run, from the dataset's labelled ids (none for builder-only pipelines)."""
    no_cases = cfg.pipeline.kind == "custom" and cfg.data.root is None and cfg.data.cache is None
    if cfg.split.method == "none" or no_cases:
        return make_split([], SplitConfig(method="none"))
    return make_split(labelled_ids(data_source(cfg), cfg), cfg.split)


def _write_run_files(session: _Session, split: Split, initial_epoch: int) -> ModelCard:
    """Write ``config.json`` (with the resolved runtime), ``split.json`` and the model card; trim ``log.csv``."""
    cfg, work_dir = session.cfg, session.work_dir
    resolved = cfg.to_dict()
    resolved["resolved_runtime"] = {
        "dtype_policy": session.policy,
        "xla": resolve_xla(cfg.runtime.xla),
        "strategy": strategy_name(session.strategy),
        "replicas": session.replicas,
        "global_batch_size": session.global_batch,
    }
    write_json(work_dir / "config.json", resolved)
    write_json(work_dir / "split.json", split.to_dict())
    card = model_card(cfg, split, _card_source(cfg), epochs=initial_epoch)
    card.save(work_dir / CARD_FILE)
    truncate_csv(work_dir / "log.csv", initial_epoch)
    return card


def _make_callbacks(
    session: _Session, card: ModelCard | None, volume_ids: list[str], has_val: bool, *, fresh: bool
) -> _Callbacks:
    """The fit callbacks in their order; ``fresh``: the run starts here (not a resume)."""
    import keras

    cfg, t, work_dir = session.cfg, session.cfg.training, session.work_dir
    monitor = monitor_name(cfg, has_val or bool(volume_ids))
    out: list[Any] = [LearningRateLogger()]
    plateau = _plateau(cfg, has_val)
    if plateau is not None:
        out.append(plateau)
    time_limit = TimeLimit(t.max_minutes) if t.max_minutes else None
    if time_limit is not None:
        out.append(time_limit)
    best = None
    if session.is_chief:
        if volume_ids:  # after TimeLimit (it validates an epoch that stops the run), before the checkpoint
            out.append(VolumeValidation(cfg, card, volume_ids, cfg.validation.every_epochs, t.epochs))
        best = BestCheckpoint(work_dir / "best.keras", work_dir / "best.json", monitor, skip_missing=bool(volume_ids))
        out += [best, EpochLog(work_dir / "log.csv")]
        if tensorboard_available():
            out.append(
                keras.callbacks.TensorBoard(
                    log_dir=str(work_dir / "tensorboard"), write_graph=False, update_freq="epoch", profile_batch=0
                )
            )
        elif fresh:
            event(work_dir, event="note", tensorboard="not installed; pip install tensorboard for RUN_DIR/tensorboard")
    verbose = t.verbose if t.verbose != "auto" else (1 if sys.stdout.isatty() else 2)
    if verbose:
        out.append(EpochProgbar(t.epochs))
    if verbose == 2:  # not a terminal: the epoch line alone can be minutes apart
        out.append(StepProgress(t.epochs))
    # Last, so an epoch counts as completed only once its row, best model and LR are written.
    resume = backup.ResumeBackup(
        session.backup_dir,
        t.steps_per_epoch,
        t.checkpoint_every_steps,
        states=lambda: _callback_states(plateau, best),
        restore_states=lambda s: _restore_callback_states(s, plateau, best),
    )
    out.append(resume)
    return _Callbacks(out, resume, verbose, monitor, plateau, time_limit, best)


def _plateau(cfg: TrainConfig, has_val: bool) -> Any:
    """Keras ``ReduceLROnPlateau`` for ``schedule.name="plateau"``, else ``None``."""
    import keras

    sc = cfg.schedule
    if sc.name != "plateau":
        return None
    monitor = sc.monitor if sc.monitor != "auto" else ("val_loss" if has_val else "loss")
    return keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, factor=sc.factor, patience=sc.patience, min_lr=sc.min_lr, verbose=1
    )


def _fit_epochs(
    session: _Session,
    model: Any,
    split: Split,
    val_ds: Any,
    callbacks: _Callbacks,
    start: tuple[int, int],
    resumed_metrics: Any,
) -> None:
    """One ``fit`` call per epoch from ``start`` ``(epoch, step)``, until the last epoch or a stop."""
    t = session.cfg.training
    fit_kwargs: dict[str, Any] = dict(callbacks=callbacks.all, verbose=callbacks.verbose, shuffle=False)
    if val_ds is not None:
        fit_kwargs["validation_data"] = val_ds
    epoch, step = start
    while epoch < t.epochs:
        # Each epoch on its own stream (the first may start mid-epoch).
        train_ds = _epoch_stream(session, split, epoch, step, len(model.outputs))
        callbacks.resume.start_epoch(epoch, step, epoch_seed(t.seed, epoch), resumed_metrics if step else None)
        with compat.multi_worker_log_reduction() if session.multi_worker else contextlib.nullcontext():
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


def _report(
    session: _Session,
    model: Any,
    split: Split,
    card: ModelCard,
    callbacks: _Callbacks,
    epochs: tuple[int, int],
    wall: float,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Write ``final.keras``, the card's epochs, the postprocessing choice, the final evaluation
    and ``metrics.json``; return the metrics and the run's history.

    ``epochs``: ``(initial_epoch, epochs_completed)`` of this session.
    """
    import keras

    initial_epoch, epochs_completed = epochs

    cfg, t, work_dir = session.cfg, session.cfg.training, session.work_dir
    if t.save_final:
        save_model(model, work_dir / "final.keras")
    history = history_from_csv(work_dir / "log.csv")
    previous = json.loads((work_dir / "metrics.json").read_text()) if (work_dir / "metrics.json").exists() else {}
    best, time_limit = callbacks.best, callbacks.time_limit
    metrics: dict[str, Any] = {
        "completed": epochs_completed >= t.epochs,
        "stopped_by_time_limit": bool(time_limit and time_limit.stopped_at is not None),
        "epochs_completed": epochs_completed,
        "epochs": t.epochs,
        "steps_per_epoch": t.steps_per_epoch,
        "optimizer_steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "global_batch_size": session.global_batch,
        "replicas": session.replicas,
        "dtype_policy": session.policy,
        "initial_epoch_this_session": initial_epoch,
        "wall_time_s_this_session": round(wall, 2),
        "wall_time_s_total": round(wall + float(previous.get("wall_time_s_total", 0.0)), 2),
        "monitor": callbacks.monitor,
        "best": {
            "value": best.best if best and math.isfinite(best.best) else None,
            "epoch": best.best_epoch if best else None,
        },
        "last_epoch": {k: v[-1] for k, v in history.items() if v} if history else {},
    }
    # The card first: the postprocessing selection then records its rules in it.
    card.replace(provenance=dataclasses.replace(card.provenance, epochs=epochs_completed)).save(work_dir / CARD_FILE)
    if cfg.validation.postprocessing_records is not None:
        metrics["postprocessing"] = postprocessing_from_records(cfg, work_dir)
    elif _selects_postprocessing(cfg, split):
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
    return metrics, history


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


def _epoch_stream(session: _Session, split: Split, epoch: int, step: int, n_outputs: int) -> Any:
    """Epoch ``epoch``'s training stream from step ``step``, with the model's targets."""
    cfg = session.cfg
    ds = training_data.train_stream(cfg, split, epoch=epoch, step=step, global_batch=session.global_batch)
    return finish_dataset(ds, cfg, n_outputs, session.multi_worker)


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
