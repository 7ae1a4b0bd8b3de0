"""Training as a package: a JSON recipe read once into a typed, validated :class:`TrainConfig`, then ``train``.

Usage::

    from brainseg_tf.training import load_config, train
    result = train("configs/demo_synthetic.json")            # or train(load_config(path))
    result.run_dir, result.metrics["best"]

    brainseg train --config configs/cpu_brats2018.json [--run-dir runs/x]   # the CLI wrapper

A recipe has the sections ``data``, ``split``, ``model``, ``pipeline``, ``validation``, ``loss``,
``optimizer``, ``schedule``, ``training``, ``runtime`` (see ``docs/training.md`` for every key);
unknown keys and bad values raise ``ValueError`` naming the key path
(``optimizer.name='adamw2' unknown; expected one of [...]``).

Run directory (``RUN_DIR``, default ``runs/<config name>``)::

    config.json        resolved recipe (every default filled in) + the resolved runtime
    brainseg_model.json  the model card (brainseg_tf.card): everything prediction repeats
    split.json         train/validation case ids (reused on resume)
    log.csv            one row per completed epoch (rewritten atomically; continued across resumes)
    events.jsonl       one JSON line per start/resume/end, with the initial epoch
    tensorboard/       TensorBoard logs
    backup/            resume backup (brainseg_tf.training.backup): weights, optimizer, counters,
                       data position, RNG/seed-generator states; every epoch and every
                       training.checkpoint_every_steps steps
    best.keras         best model by the monitored validation Dice (default val_mean_region_dice;
                       val_volume_mean_dice, whole cases, with validation.mode="volumes")
    postprocessing.json  the postprocessing chosen on the validation cases (also in the card)
    best.json          monitor, best value and epoch (restored on resume)
    final.keras        the model after the last epoch
    metrics.json       final and best validation metrics, wall time, steps; "completed": true

Re-running the same command after a kill resumes at the backup's exact step: weights, optimizer
(and so the LR schedule position), seed-generator and RNG states, the partial epoch's running
metrics and callback states are restored, and the epoch's training stream, a function of
``(training.seed, epoch)``, is rebuilt and its consumed batches skipped, so on CPU the run ends
with the uninterrupted run's weights. Rows of ``log.csv`` beyond the backup's epoch are dropped;
the saved split is reused; a recipe changed in an incompatible way is refused. Re-running a
completed run returns at once (raise ``training.epochs`` to train further).

All folds: ``train_folds(recipe, run_dir=..., folds=K)`` (``brainseg train --folds K``) trains
fold ``k`` into ``RUN_DIR/fold_<k>`` and summarises them in ``RUN_DIR/folds.json``; a re-run skips
completed folds and resumes the interrupted one.

Distribution: ``runtime.strategy="auto"`` picks ``TPUStrategy`` on a TPU, ``MultiWorkerMirroredStrategy``
when ``TF_CONFIG`` names more than one task, ``MirroredStrategy`` over several visible GPUs, else the
default strategy. ``pipeline.batch_size`` is **per replica**; the global batch is
``batch_size × replicas`` (learning rates are not rescaled). Under multi-worker training only the chief
writes ``RUN_DIR``; the other workers keep their resume state in ``RUN_DIR/workers/<task>_<index>``.

The parts: :mod:`~brainseg_tf.training.config` (recipe schema), :mod:`~.split`,
:mod:`~.schedules` (registered LR schedules), :mod:`~.factories` (optimizer, loss, metrics,
model), :mod:`~.data` (where cases come from, tf.data wiring), :mod:`~.distribute` (strategy,
precision, XLA), :mod:`~.compat` (every Keras-internal workaround, version-guarded),
:mod:`~.callbacks`, :mod:`~.rundir` (run directory, model card, resume state), :mod:`~.loop`
(the fit loop), :mod:`~.validation` (whole-volume validation, postprocessing selection),
:mod:`~.folds` (all folds in one command) and :mod:`~.evaluate` (final whole-case evaluation).
"""

from __future__ import annotations

from typing import Any

from brainseg_tf.training.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    PipelineConfig,
    RuntimeConfig,
    ScheduleConfig,
    SplitConfig,
    TrainConfig,
    TrainingConfig,
    ValidationConfig,
    find_recipe,
    load_config,
)
from brainseg_tf.training.distribute import (
    resolve_mixed_precision,
    select_strategy,
    task_identity,
)
from brainseg_tf.training.folds import FoldsResult, train_folds
from brainseg_tf.training.loop import RunResult, train
from brainseg_tf.training.split import Split, load_split, make_split

__all__ = [
    "DataConfig",
    "SplitConfig",
    "ModelConfig",
    "PipelineConfig",
    "ValidationConfig",
    "LossConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainingConfig",
    "RuntimeConfig",
    "TrainConfig",
    "RunResult",
    "Split",
    "load_config",
    "find_recipe",
    "load_split",
    "make_split",
    "select_strategy",
    "task_identity",
    "resolve_mixed_precision",
    "WarmupSchedule",
    "train",
    "train_folds",
    "FoldsResult",
]


def __getattr__(name: str) -> Any:
    if name == "WarmupSchedule":  # imported on first use: the module registers the Keras class
        from brainseg_tf.training.schedules import WarmupSchedule

        return WarmupSchedule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
