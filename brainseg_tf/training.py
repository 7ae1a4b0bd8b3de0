"""Training: a JSON recipe read once into a typed, validated :class:`TrainConfig`, then ``train``.

Usage::

    from brainseg_tf.training import load_config, train
    result = train("configs/demo_synthetic.json")            # or train(load_config(path))
    result.run_dir, result.metrics["best"]

    brainseg train --config configs/cpu_brats2018.json [--run-dir runs/x]   # the CLI wrapper
    python -m brainseg_tf.training --config FILE.json [--run-dir DIR] [--no-resume]

A recipe has the sections ``data``, ``split``, ``model``, ``pipeline``, ``validation``, ``loss``,
``optimizer``, ``schedule``, ``training``, ``runtime`` (see ``docs/training.md`` for every key);
unknown keys and bad values raise ``ValueError`` naming the key path
(``optimizer.name='adamw2' unknown; expected one of [...]``).

Run directory (``RUN_DIR``, default ``runs/<config name>``)::

    config.json        resolved recipe (every default filled in) + an "inference" block
    split.json         train/validation case ids (reused on resume)
    log.csv            one row per completed epoch (appended across resumes)
    events.jsonl       one JSON line per start/resume/end, with the initial epoch
    tensorboard/       TensorBoard logs
    backup/            keras.callbacks.BackupAndRestore state (weights, optimizer, epoch)
    best.keras         best model by the monitored validation Dice (default val_mean_region_dice)
    best.json          monitor, best value and epoch (restored on resume)
    final.keras        the model after the last epoch
    metrics.json       final and best validation metrics, wall time, steps; "completed": true

Re-running the same command after a kill resumes from the last completed epoch: the
``BackupAndRestore`` state restores weights, optimizer (and so the LR schedule position) and the
epoch counter; rows of ``log.csv`` beyond that epoch are dropped; the saved split is reused; a
recipe changed in an incompatible way is refused. Re-running a completed run returns at once
(raise ``training.epochs`` to train further).

Distribution: ``runtime.strategy="auto"`` picks ``TPUStrategy`` on a TPU, ``MultiWorkerMirroredStrategy``
when ``TF_CONFIG`` names more than one task, ``MirroredStrategy`` over several visible GPUs, else the
default strategy. ``pipeline.batch_size`` is **per replica**; the global batch is
``batch_size × replicas`` (learning rates are not rescaled). Under multi-worker training only the chief
writes ``RUN_DIR``; the other workers keep their resume state in ``RUN_DIR/workers/<task>_<index>``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import importlib
import importlib.util
import inspect
import json
import math
import os
import shutil
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

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
    "resolve_mixed_precision",
    "WarmupSchedule",
    "train",
    "main",
]

MODALITIES = ("flair", "t1", "t1ce", "t2")
REGIONS = ("wt", "tc", "et")
_OPTIMIZERS = ("adam", "adamw", "nadam", "sgd")
_SCHEDULES = ("constant", "poly", "cosine", "plateau")
_LOSSES = ("auto", "dice_ce", "region_dice_bce", "dice", "ce", "bce", "focal", "tversky")
_PIPELINES = ("patch", "slice", "custom")
_STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
_PRECISIONS = ("auto", "off", "float16", "bfloat16")
_VALIDATION_MODES = ("patches", "volumes", "none")
_SPLIT_METHODS = ("kfold", "fixed", "none")

# Keys that may change between a run and its resumption; anything else changing is refused.
_RESUMABLE_CHANGES = (
    "name", "description", "data.synthetic", "data.build_cache", "data.cache_dtype", "training.epochs", "training.verbose", "training.max_minutes",
    "runtime", "validation.final_sliding_window", "validation.overlap", "data.root", "data.cache",
)


# ----------------------------------------------------------------------------------------------
# Config dataclasses
# ----------------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Where the cases come from.

    Attributes:
        root: dataset folder (any layout ``brainseg_tf.io.open_dataset`` reads), or ``None``.
        cache: preprocessed HDF5 cache (``brainseg_tf.data.build_cache``); preferred over ``root``.
        layout: dataset layout, ``None`` detects it.
        modalities: input channels in this order (canonical names ``flair, t1, t1ce, t2``).
        max_cases: use only the first N labelled cases (quick runs).
        synthetic: when set and ``root`` does not exist yet, first write a synthetic dataset
            there with :func:`brainseg_tf.synthetic.make_dataset` using these keyword arguments
            (``n_cases``, ``shape``, ``seed``, ``layout``) — the demo recipe.
        build_cache: when ``cache`` does not exist yet, first build it from ``root`` with
            :func:`brainseg_tf.data.build_cache` (resumable; patches are then cheap slices of a
            memory-mapped file instead of NIfTI decoding competing with training for the CPU).
        cache_dtype: ``"float32"`` or ``"float16"`` storage for a cache built here.

    Relative paths are resolved against the current directory, then the recipe's folder.
    """

    root: str | None = None
    cache: str | None = None
    layout: str | None = None
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    max_cases: int | None = None
    synthetic: dict[str, Any] | None = None
    build_cache: bool = False
    cache_dtype: str = "float32"


@dataclass
class SplitConfig:
    """Train/validation split, saved as ``RUN_DIR/split.json``.

    Attributes:
        method: ``"kfold"`` (``folds`` folds of the sorted labelled ids shuffled with ``seed``;
            fold ``fold`` validates), ``"fixed"`` (explicit ``val_ids``; ``train_ids`` or all the
            others train) or ``"none"`` (no case ids, e.g. a custom pipeline).
        folds, fold, seed: k-fold settings.
        val_ids, train_ids: explicit ids for ``method="fixed"``.
    """

    method: str = "kfold"
    folds: int = 5
    fold: int = 0
    seed: int = 0
    val_ids: list[str] = field(default_factory=list)
    train_ids: list[str] | None = None


@dataclass
class ModelConfig:
    """A model from :func:`brainseg_tf.models.build`.

    Attributes:
        name: registry name (``unet``, ``unet2d``, ``unet3d``, ``dresunet``, ``znet``, ``een``).
        options: builder keyword arguments. ``in_channels`` defaults to ``len(data.modalities)``,
            ``input_shape`` to ``pipeline.patch_size`` (without the channel axis).
    """

    name: str = "unet"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    """Training input pipeline.

    Attributes:
        kind: ``"patch"`` (random 2D/3D patches, ``brainseg_tf.data.patch_dataset``), ``"slice"``
            (2D slices, ``slice_dataset``) or ``"custom"`` (``builder``).
        patch_size: spatial patch size (3 values in 3D, 2 in 2D); the sliding-window roi too.
        batch_size: batch size **per replica**.
        foreground_fraction: share of patches centred on tumour (nnU-Net uses 1/3).
        augment: ``"default"`` (nnU-Net-like :class:`~brainseg_tf.data.augment.AugmentConfig`),
            ``"light"`` (flips + cheap intensity), ``"none"``/``null``, or a dict of
            ``AugmentConfig`` fields.
        region: for a 1-channel sigmoid model, the region it segments (``wt``, ``tc``, ``et``).
        builder: ``"module:function"`` or ``"path/file.py:function"`` for ``kind="custom"``:
            ``fn(config, split, *, seed, global_batch) -> (train_dataset, val_dataset_or_None)``,
            datasets of ``(image, label)`` batches of ``global_batch``; the training one repeats.
        options: extra keyword arguments passed to the data builder.
    """

    kind: str = "patch"
    patch_size: list[int] = field(default_factory=lambda: [96, 96, 96])
    batch_size: int = 2
    foreground_fraction: float = 0.33
    augment: Union[dict, str, bool, None] = "default"
    region: str | None = None
    builder: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidationConfig:
    """Validation during training and at the end.

    Attributes:
        mode: ``"patches"`` (a fixed, deterministic set of ``patches_per_case`` patches per
            validation case, evaluated every epoch — fast on CPU), ``"volumes"`` (whole cropped
            volumes, batch 1) or ``"none"``.
        patches_per_case: patches per validation case for ``mode="patches"``.
        foreground_fraction: share of tumour-centred validation patches.
        final_sliding_window: after training, evaluate ``best.keras`` on every whole validation
            case with the sliding window (Dice WT/TC/ET per case into ``metrics.json``).
        overlap: sliding-window overlap for the final evaluation.
        max_cases: validate every epoch on the first N validation cases only (the final
            sliding-window evaluation still covers all of them).

    A fixed patch set up to 2 GiB is kept in memory after the first epoch; a larger one is
    re-read each epoch (the same patches: the stream is seeded).
    """

    mode: str = "patches"
    patches_per_case: int = 4
    foreground_fraction: float = 0.5
    final_sliding_window: bool = True
    overlap: float = 0.5
    max_cases: int | None = None


@dataclass
class LossConfig:
    """Loss from :mod:`brainseg_tf.losses`.

    Attributes:
        name: ``"auto"`` (``dice_ce`` for softmax heads, ``region_dice_bce`` for sigmoid heads),
            ``dice_ce``, ``region_dice_bce``, ``dice``, ``ce`` (weighted categorical CE), ``bce``,
            ``focal``, ``tversky``. ``head`` and ``from_logits`` follow the model.
        options: loss keyword arguments (``lambda_dice``, ``batch``, ``class_weights`` …).
        deep_supervision_decay: loss-weight decay over deep-supervision outputs.
    """

    name: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    deep_supervision_decay: float = 0.5


@dataclass
class OptimizerConfig:
    """Optimizer.

    Attributes:
        name: ``adam``, ``adamw``, ``nadam``, ``sgd`` (``momentum``, ``nesterov``).
        learning_rate: peak learning rate (after warm-up).
        weight_decay: decoupled weight decay (``adamw``; also passed to the others when > 0).
        momentum, nesterov: SGD settings (nnU-Net: 0.99, Nesterov).
        clipnorm: gradient-norm clipping (nnU-Net clips at 12), or ``None``.
        beta_1, beta_2, epsilon: Adam-family settings.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.99
    nesterov: bool = True
    clipnorm: float | None = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7


@dataclass
class ScheduleConfig:
    """Learning-rate schedule.

    Attributes:
        name: ``constant``, ``poly`` (``lr·(1 - t/T)**power``, nnU-Net), ``cosine`` (to
            ``min_lr``) or ``plateau`` (constant, ×``factor`` after ``patience`` epochs without
            improvement of ``monitor``; Keras ``ReduceLROnPlateau``).
        warmup_steps: linear warm-up from ``warmup_start`` × lr (not for ``plateau``).
        warmup_start: starting fraction of the learning rate during warm-up.
        power: poly exponent.
        min_lr: floor for ``cosine``, ``poly`` and ``plateau``.
        factor, patience, monitor: plateau settings (``monitor`` ``"auto"`` = ``val_loss``, or
            ``loss`` when there is no validation).
    """

    name: str = "poly"
    warmup_steps: int = 0
    warmup_start: float = 0.0
    power: float = 0.9
    min_lr: float = 0.0
    factor: float = 0.2
    patience: int = 2
    monitor: str = "auto"


@dataclass
class TrainingConfig:
    """Epoch loop.

    Attributes:
        epochs: number of epochs.
        steps_per_epoch: optimizer steps per epoch.
        seed: global seed (``keras.utils.set_random_seed``) and data seed.
        monitor: metric selecting ``best.keras`` (mode max); ``"auto"`` =
            ``val_mean_region_dice`` (mean Dice of WT, TC, ET), or ``val_dice_<region>`` for a
            1-channel model; the training metric when there is no validation.
        verbose: ``"auto"`` (a progress bar on a terminal, one line per epoch otherwise), 0, 1, 2.
        max_minutes: stop (cleanly, after an epoch) when the next epoch would end past this
            many minutes of this session; ``None`` for no limit.
        save_final: write ``final.keras``.
    """

    epochs: int = 10
    steps_per_epoch: int = 100
    seed: int = 0
    monitor: str = "auto"
    verbose: Union[str, int] = "auto"
    max_minutes: float | None = None
    save_final: bool = True


@dataclass
class RuntimeConfig:
    """Devices and numerics.

    Attributes:
        strategy: ``auto``, ``default``, ``one_device``, ``mirrored``, ``multi_worker``, ``tpu``.
        mixed_precision: ``auto`` (``mixed_float16`` on GPU, off on CPU), ``off``, ``float16``,
            ``bfloat16`` (``mixed_bfloat16``: about 1.3× faster for Conv3D on AVX-512-BF16 CPUs).
        xla: ``"auto"`` (off on CPU, where XLA makes Conv3D 10-15× slower; off on GPU unless set),
            ``true`` or ``false``.
        deterministic: ``tf.config.experimental.enable_op_determinism()`` (slower).
        communication: collective implementation for multi-worker: ``auto``, ``ring``, ``nccl``.
    """

    strategy: str = "auto"
    mixed_precision: str = "auto"
    xla: Union[str, bool] = "auto"
    deterministic: bool = False
    communication: str = "auto"


@dataclass
class TrainConfig:
    """A whole training recipe. Build it with :meth:`from_dict` or :func:`load_config`."""

    name: str = "run"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    source: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | os.PathLike | None = None) -> "TrainConfig":
        """Build and validate a recipe from a JSON-like dict.

        Args:
            data: the recipe; omitted keys take the defaults; ``"$comment"``/``"_comment"`` keys
                are ignored anywhere.
            source: path of the recipe file (relative data paths and custom builders are also
                looked up next to it).

        Raises:
            ValueError: an unknown key or a bad value, naming the key path.
        """
        cfg = _from_dict(cls, data, "")
        cfg.source = None if source is None else str(source)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as a JSON-serialisable dict (every default filled in)."""
        out = dataclasses.asdict(self)
        out.pop("source", None)
        return out

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """Check values across sections.

        Raises:
            ValueError: naming the key path and the value.
        """
        d, s, m, p, v = self.data, self.split, self.model, self.pipeline, self.validation
        if not d.modalities:
            _bad("data.modalities", d.modalities, "must name at least one modality")
        for i, mod in enumerate(d.modalities):
            if mod not in MODALITIES:
                _bad(f"data.modalities[{i}]", mod, f"unknown; expected one of {list(MODALITIES)}")
        if len(set(d.modalities)) != len(d.modalities):
            _bad("data.modalities", d.modalities, "has duplicates")
        _positive_or_none("data.max_cases", d.max_cases)
        _choice("data.cache_dtype", d.cache_dtype, ("float32", "float16"))
        if d.build_cache and (d.cache is None or d.root is None):
            _bad("data.build_cache", True, "needs both data.cache and data.root")
        if d.synthetic is not None:
            if d.root is None:
                _bad("data.synthetic", d.synthetic, "needs data.root (where the synthetic cases are written)")
            allowed = {"n_cases", "shape", "seed", "layout"}
            if set(d.synthetic) - allowed:
                _bad("data.synthetic", sorted(set(d.synthetic) - allowed), f"unknown key(s); expected {sorted(allowed)}")
        _choice("split.method", s.method, _SPLIT_METHODS)
        if s.method == "kfold":
            if s.folds < 2:
                _bad("split.folds", s.folds, "must be >= 2")
            if not 0 <= s.fold < s.folds:
                _bad("split.fold", s.fold, f"must be in [0, {s.folds})")
        if s.method == "fixed" and not s.val_ids:
            _bad("split.val_ids", s.val_ids, "must list validation case ids for split.method='fixed'")
        if s.method == "fixed" and s.train_ids is not None and set(s.train_ids) & set(s.val_ids):
            _bad("split.train_ids", sorted(set(s.train_ids) & set(s.val_ids)), "overlap split.val_ids")
        from brainseg_tf import models as _models  # light: models import keras only

        _choice("model.name", m.name, _models.available())
        params = inspect.signature(_models.REGISTRY[m.name]).parameters
        unknown = sorted(set(m.options) - set(params))
        if unknown:
            _bad("model.options", unknown, f"unknown option(s) for {m.name!r}; accepted: {sorted(params)}")
        _choice("pipeline.kind", p.kind, _PIPELINES)
        if p.kind == "custom" and not p.builder:
            _bad("pipeline.builder", p.builder, "is required for pipeline.kind='custom' ('module:function')")
        if p.builder is not None and ":" not in p.builder:
            _bad("pipeline.builder", p.builder, "must look like 'module:function' or 'file.py:function'")
        dims = self.spatial_dims
        if len(p.patch_size) != dims or any(not isinstance(n, int) or n < 1 for n in p.patch_size):
            _bad("pipeline.patch_size", p.patch_size, f"must be {dims} positive integers for a {dims}D model")
        if p.batch_size < 1:
            _bad("pipeline.batch_size", p.batch_size, "must be >= 1")
        _fraction("pipeline.foreground_fraction", p.foreground_fraction)
        if isinstance(p.augment, str) and p.augment not in ("default", "light", "none"):
            _bad("pipeline.augment", p.augment, "unknown; expected 'default', 'light', 'none', null or an object")
        head, out_channels = self.head, self.out_channels
        if p.region is not None:
            _choice("pipeline.region", p.region, REGIONS)
        if head == "sigmoid" and out_channels == 1 and p.region is None:
            _bad("pipeline.region", None, "must name the region (wt, tc, et) of a 1-channel sigmoid model")
        if p.region is not None and not (head == "sigmoid" and out_channels == 1):
            _bad("pipeline.region", p.region, "is only for 1-channel sigmoid models")
        if head == "sigmoid" and out_channels not in (1, 3):
            _bad("model.options.out_channels", out_channels, "a sigmoid head needs 3 (WT, TC, ET) or 1 channel")
        if head == "softmax" and out_channels != 4:
            _bad("model.options.out_channels", out_channels, "a softmax head needs the 4 canonical classes")
        if m.options.get("in_channels", len(d.modalities)) != len(d.modalities):
            _bad("model.options.in_channels", m.options["in_channels"],
                 f"must equal len(data.modalities)={len(d.modalities)}")
        _choice("validation.mode", v.mode, _VALIDATION_MODES)
        if v.patches_per_case < 1:
            _bad("validation.patches_per_case", v.patches_per_case, "must be >= 1")
        _fraction("validation.foreground_fraction", v.foreground_fraction)
        if not 0 <= v.overlap < 1:
            _bad("validation.overlap", v.overlap, "must be in [0, 1)")
        _choice("loss.name", self.loss.name, _LOSSES)
        if self.loss.name in ("dice_ce", "ce") and head != "softmax":
            _bad("loss.name", self.loss.name, "needs a softmax head")
        if self.loss.name in ("region_dice_bce", "bce") and head != "sigmoid":
            _bad("loss.name", self.loss.name, "needs a sigmoid head")
        if not 0 < self.loss.deep_supervision_decay <= 1:
            _bad("loss.deep_supervision_decay", self.loss.deep_supervision_decay, "must be in (0, 1]")
        o = self.optimizer
        _choice("optimizer.name", o.name, _OPTIMIZERS)
        for key in ("learning_rate", "epsilon"):
            if not getattr(o, key) > 0:
                _bad(f"optimizer.{key}", getattr(o, key), "must be > 0")
        for key in ("weight_decay", "momentum"):
            if getattr(o, key) < 0:
                _bad(f"optimizer.{key}", getattr(o, key), "must be >= 0")
        if o.clipnorm is not None and not o.clipnorm > 0:
            _bad("optimizer.clipnorm", o.clipnorm, "must be > 0 or null")
        t = self.training
        if t.epochs < 1:
            _bad("training.epochs", t.epochs, "must be >= 1")
        if t.steps_per_epoch < 1:
            _bad("training.steps_per_epoch", t.steps_per_epoch, "must be >= 1")
        if t.verbose not in ("auto", 0, 1, 2):
            _bad("training.verbose", t.verbose, "must be 'auto', 0, 1 or 2")
        if t.max_minutes is not None and not t.max_minutes > 0:
            _bad("training.max_minutes", t.max_minutes, "must be > 0 or null")
        sc = self.schedule
        _choice("schedule.name", sc.name, _SCHEDULES)
        if sc.warmup_steps < 0:
            _bad("schedule.warmup_steps", sc.warmup_steps, "must be >= 0")
        if sc.name == "plateau" and sc.warmup_steps:
            _bad("schedule.warmup_steps", sc.warmup_steps, "is not supported with schedule.name='plateau'")
        if sc.warmup_steps >= self.training.epochs * self.training.steps_per_epoch and sc.warmup_steps:
            _bad("schedule.warmup_steps", sc.warmup_steps, "must be below epochs × steps_per_epoch")
        _fraction("schedule.warmup_start", sc.warmup_start)
        if sc.power <= 0:
            _bad("schedule.power", sc.power, "must be > 0")
        if sc.min_lr < 0 or sc.min_lr > o.learning_rate:
            _bad("schedule.min_lr", sc.min_lr, "must be in [0, optimizer.learning_rate]")
        if not 0 < sc.factor < 1:
            _bad("schedule.factor", sc.factor, "must be in (0, 1)")
        if sc.patience < 0:
            _bad("schedule.patience", sc.patience, "must be >= 0")
        r = self.runtime
        _choice("runtime.strategy", r.strategy, _STRATEGIES)
        _choice("runtime.mixed_precision", r.mixed_precision, _PRECISIONS)
        if r.xla not in ("auto", True, False):
            _bad("runtime.xla", r.xla, "must be 'auto', true or false")
        _choice("runtime.communication", r.communication, ("auto", "ring", "nccl"))

    # -- derived properties ----------------------------------------------------------------
    def _builder_default(self, key: str) -> Any:
        from brainseg_tf import models as _models

        params = inspect.signature(_models.REGISTRY[self.model.name]).parameters
        if key in self.model.options:
            return self.model.options[key]
        return params[key].default if key in params else None

    @property
    def head(self) -> str:
        """``"softmax"`` (classes 0-3) or ``"sigmoid"`` (regions) — the model's head."""
        return self._builder_default("head") or "softmax"

    @property
    def out_channels(self) -> int:
        """Output channels of the model (4 softmax classes, 3 regions, or 1 region)."""
        n = self._builder_default("out_channels")
        if n is None:
            return 4 if self.head == "softmax" else 3
        return int(n)

    @property
    def logits(self) -> bool:
        """Whether the model returns logits (losses/metrics then apply softmax/sigmoid)."""
        return bool(self._builder_default("logits"))

    @property
    def spatial_dims(self) -> int:
        """2 or 3: the model's spatial dimensionality."""
        if self.model.name == "een":
            return 3
        return int(self._builder_default("spatial_dims") or 3)

    @property
    def deep_supervision(self) -> bool:
        """Whether the model has deep-supervision outputs."""
        return bool(self._builder_default("deep_supervision"))


def _bad(path: str, value: Any, why: str) -> None:
    raise ValueError(f"{path}={value!r} {why}")


def _choice(path: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        _bad(path, value, f"unknown; expected one of {list(choices)}")


def _fraction(path: str, value: float) -> None:
    if not 0 <= value <= 1:
        _bad(path, value, "must be in [0, 1]")


def _positive_or_none(path: str, value: int | None) -> None:
    if value is not None and value < 1:
        _bad(path, value, "must be >= 1 or null")


def _is_comment(key: str) -> bool:
    return key.startswith("$") or key.startswith("_comment") or key == "_"


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (JSON types only) and convert lists."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            _bad(path, value, f"must be an object with keys {[f.name for f in dataclasses.fields(tp)]}")
        return _from_dict(tp, value, path + ".")
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ValueError:
                continue
        names = " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
        _bad(path, value, f"has the wrong type (expected {names})")
    if tp is Any:
        return value
    if origin in (list, Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            _bad(path, value, "must be a list")
        (item,) = get_args(tp) or (Any,)
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            _bad(path, value, "must be an object")
        return {k: v for k, v in value.items() if not _is_comment(k)}
    if tp is bool:
        if not isinstance(value, bool):
            _bad(path, value, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _bad(path, value, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _bad(path, value, "must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _bad(path, value, "must be a string")
        return value
    return value


def _from_dict(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        _bad(prefix.rstrip(".") or "config", data, "must be an object")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs = {}
    for key, value in data.items():
        if _is_comment(key):
            continue
        if key not in fields:
            raise ValueError(f"{prefix}{key} is an unknown key; expected one of {sorted(fields)}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def load_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a JSON recipe into a validated :class:`TrainConfig`.

    ``name`` defaults to the file stem.

    Args:
        path: the recipe file.
        overrides: dotted key paths replacing values of the recipe before validation, e.g.
            ``{"training.epochs": 1, "data.root": "data/BraTS2021", "model.options.base_filters": 8}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON, or an unknown key / bad value (the key path is named).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from None
    if isinstance(data, Mapping) and "name" not in data:
        data = {**data, "name": path.stem}
    for key, value in (overrides or {}).items():
        data = _set_dotted(data, key, value)
    try:
        return TrainConfig.from_dict(data, source=path)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _set_dotted(data: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``a.b.c`` set to ``value`` (intermediate sections created)."""
    head, _, rest = key.partition(".")
    if not head:
        raise ValueError(f"override key {key!r} is empty")
    out = dict(data)
    if rest:
        section = out.get(head, {})
        if not isinstance(section, Mapping):
            raise ValueError(f"override {key!r}: {head!r} is not a section")
        out[head] = _set_dotted(section, rest, value)
    else:
        out[head] = value
    return out


def find_recipe(name: str | os.PathLike) -> Path:
    """Path of a recipe given by path or by name (``"cpu_brats2018"`` -> ``configs/cpu_brats2018.json``).

    Looks in the current folder, its ``configs/``, ``../configs/`` (notebooks), ``$BRAINSEG_CONFIGS``
    and the ``configs/`` of the checkout this package was installed from.

    Raises:
        FileNotFoundError: listing the folders searched.
    """
    candidate = Path(name)
    if candidate.suffix == ".json" and candidate.exists():
        return candidate
    file = candidate.name if candidate.suffix == ".json" else f"{candidate.name}.json"
    folders = [Path.cwd(), Path.cwd() / "configs", Path.cwd().parent / "configs"]
    if os.environ.get("BRAINSEG_CONFIGS"):
        folders.insert(0, Path(os.environ["BRAINSEG_CONFIGS"]))
    folders.append(Path(__file__).resolve().parents[1] / "configs")
    for folder in folders:
        if (folder / file).is_file():
            return folder / file
    raise FileNotFoundError(f"recipe {file!r} not found in {[str(f) for f in folders]}")


def load_split(run_dir: str | os.PathLike) -> "Split":
    """The train/validation split saved in ``RUN_DIR/split.json``."""
    path = Path(run_dir) / "split.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no split saved (is {run_dir} a run directory?)")
    return Split(**json.loads(path.read_text()))


# ----------------------------------------------------------------------------------------------
# Split
# ----------------------------------------------------------------------------------------------
@dataclass
class Split:
    """Train and validation case ids (``RUN_DIR/split.json``)."""

    train_ids: list[str]
    val_ids: list[str]
    method: str = "none"
    folds: int | None = None
    fold: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_split(case_ids: Sequence[str], config: SplitConfig) -> Split:
    """Split labelled case ids into training and validation.

    k-fold: the ids are sorted, shuffled with ``numpy.random.default_rng(seed)`` and cut into
    ``folds`` near-equal folds; fold ``fold`` validates. Fixed: ``val_ids`` validate, ``train_ids``
    (or every other id) train.

    Raises:
        ValueError: ids not in the dataset, or too few cases for the folds.
    """
    import numpy as np

    ids = sorted(set(case_ids))
    if config.method == "none":
        return Split(train_ids=ids, val_ids=[], method="none")
    if config.method == "fixed":
        missing = sorted(set(config.val_ids) - set(ids))
        if missing:
            _bad("split.val_ids", missing, "not among the dataset's labelled cases")
        train = list(config.train_ids) if config.train_ids is not None else [i for i in ids if i not in config.val_ids]
        missing = sorted(set(train) - set(ids))
        if missing:
            _bad("split.train_ids", missing, "not among the dataset's labelled cases")
        return Split(train_ids=sorted(train), val_ids=sorted(config.val_ids), method="fixed")
    if len(ids) < config.folds:
        _bad("split.folds", config.folds, f"exceeds the number of labelled cases ({len(ids)})")
    order = np.random.default_rng(config.seed).permutation(len(ids))
    folds = np.array_split(order, config.folds)
    val = sorted(ids[i] for i in folds[config.fold])
    train = sorted(i for i in ids if i not in set(val))
    return Split(train_ids=train, val_ids=val, method="kfold", folds=config.folds, fold=config.fold, seed=config.seed)


# ----------------------------------------------------------------------------------------------
# Runtime: strategy, precision, XLA
# ----------------------------------------------------------------------------------------------
def _tf_config() -> dict[str, Any]:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(f"TF_CONFIG is not valid JSON: {raw[:200]!r}") from None


def _cluster_size(tf_config: Mapping[str, Any]) -> int:
    cluster = tf_config.get("cluster", {})
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))


def task_identity() -> tuple[str, int, bool]:
    """``(task_type, task_index, is_chief)`` from ``TF_CONFIG`` (``("chief", 0, True)`` without one).

    The chief is the ``chief`` task, or worker 0 when the cluster has no ``chief``.
    """
    tf_config = _tf_config()
    task = tf_config.get("task", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    has_chief = "chief" in tf_config.get("cluster", {})
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
    return kind, index, is_chief


def _tpu_available() -> bool:
    # Probing a TPU resolver without any hint costs seconds (metadata-server timeouts): only try
    # where a TPU runtime announces itself (Colab/Kaggle/GCE TPU VMs).
    hints = ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE", "TPU_WORKER_ID")
    return any(os.environ.get(h) for h in hints) or Path("/dev/accel0").exists() or Path("/dev/vfio/0").exists()


def select_strategy(name: str = "auto", communication: str = "auto"):
    """Return the ``tf.distribute.Strategy`` for ``runtime.strategy``.

    ``auto``: ``TPUStrategy`` when a TPU is found, ``MultiWorkerMirroredStrategy`` when
    ``TF_CONFIG`` names more than one chief/worker task, ``MirroredStrategy`` over all visible
    GPUs when there are several, else the default strategy (one device).

    Must run before other TensorFlow work in the process for the multi-worker and TPU cases.

    Raises:
        ValueError: an unknown name, or ``tpu`` without a reachable TPU.
    """
    import tensorflow as tf

    _choice("runtime.strategy", name, _STRATEGIES)
    if name == "auto":
        if _tpu_available():
            try:
                return select_strategy("tpu")
            except ValueError:
                pass
        if _cluster_size(_tf_config()) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        impl = {
            "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
            "ring": tf.distribute.experimental.CommunicationImplementation.RING,
            "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
        }[communication]
        options = tf.distribute.experimental.CommunicationOptions(implementation=impl)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise ValueError(f"runtime.strategy='tpu' but no TPU could be initialised: {exc}") from None
    return tf.distribute.TPUStrategy(resolver)


def _strategy_name(strategy: Any) -> str:
    import tensorflow as tf

    named = (("MultiWorkerMirroredStrategy", tf.distribute.MultiWorkerMirroredStrategy),
             ("MirroredStrategy", tf.distribute.MirroredStrategy), ("TPUStrategy", tf.distribute.TPUStrategy),
             ("OneDeviceStrategy", tf.distribute.OneDeviceStrategy))
    for name, cls in named:
        if isinstance(strategy, cls):
            return name
    return "default"


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_mixed_precision(setting: str) -> str:
    """The Keras dtype policy for ``runtime.mixed_precision``: ``auto`` → ``mixed_float16`` on a
    GPU, ``mixed_bfloat16`` on a TPU, ``float32`` on CPU; ``off`` → ``float32``."""
    _choice("runtime.mixed_precision", setting, _PRECISIONS)
    if setting == "auto":
        if _tpu_available():
            return "mixed_bfloat16"
        return "mixed_float16" if _has_gpu() else "float32"
    return {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[setting]


def _resolve_xla(setting: str | bool) -> bool:
    if setting == "auto":
        return False  # CPU: Conv3D 10-15× slower under XLA; GPU: opt in per recipe.
    return bool(setting)


# ----------------------------------------------------------------------------------------------
# Schedules, optimizers, losses, metrics
# ----------------------------------------------------------------------------------------------
_SCHEDULE_CLASS: type | None = None


def WarmupSchedule(**kwargs):  # noqa: N802 — a factory so importing this module needs no Keras
    """Linear warm-up then constant / poly / cosine decay (a registered Keras schedule).

    ``lr(t) = peak · (start + (1 - start)·t/W)`` for ``t < W``; after warm-up, with
    ``u = (t - W)/(T - W)`` clipped to [0, 1]: constant ``peak``; poly
    ``min + (peak - min)·(1 - u)**power``; cosine ``min + (peak - min)·(1 + cos(πu))/2``.

    Args:
        peak: learning rate after warm-up.
        total_steps: ``T``, the number of optimizer steps of the whole run.
        warmup_steps: ``W``. Defaults to 0.
        warmup_start: fraction of ``peak`` at step 0. Defaults to 0.
        decay: ``"constant"``, ``"poly"`` or ``"cosine"``.
        power: poly exponent. Defaults to 0.9 (nnU-Net).
        min_lr: floor. Defaults to 0.
    """
    return _schedule_class()(**kwargs)


def _schedule_class() -> type:
    global _SCHEDULE_CLASS
    if _SCHEDULE_CLASS is not None:
        return _SCHEDULE_CLASS
    import keras
    from keras import ops

    class _WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0,
                     decay: str = "poly", power: float = 0.9, min_lr: float = 0.0):
            self.peak = float(peak)
            self.total_steps = int(total_steps)
            self.warmup_steps = int(warmup_steps)
            self.warmup_start = float(warmup_start)
            self.decay = decay
            self.power = float(power)
            self.min_lr = float(min_lr)

        def __call__(self, step):
            t = ops.cast(step, "float32")
            w = float(self.warmup_steps)
            span = float(max(self.total_steps - self.warmup_steps, 1))
            u = ops.clip((t - w) / span, 0.0, 1.0)
            if self.decay == "poly":
                lr = self.min_lr + (self.peak - self.min_lr) * ops.power(1.0 - u, self.power)
            elif self.decay == "cosine":
                lr = self.min_lr + (self.peak - self.min_lr) * 0.5 * (1.0 + ops.cos(math.pi * u))
            else:
                lr = ops.convert_to_tensor(self.peak, "float32") + 0.0 * t
            if self.warmup_steps > 0:
                frac = self.warmup_start + (1.0 - self.warmup_start) * t / w
                lr = ops.where(t < w, self.peak * frac, lr)
            return lr

        def get_config(self) -> dict[str, Any]:
            return {
                "peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "warmup_start": self.warmup_start, "decay": self.decay, "power": self.power,
                "min_lr": self.min_lr,
            }

    _WarmupSchedule.__name__ = _WarmupSchedule.__qualname__ = "WarmupSchedule"
    _SCHEDULE_CLASS = keras.saving.register_keras_serializable(package="brainseg_tf")(_WarmupSchedule)
    return _SCHEDULE_CLASS


def build_optimizer(cfg: TrainConfig):
    """The Keras optimizer (with its learning-rate schedule) for a recipe."""
    import keras

    o, s, t = cfg.optimizer, cfg.schedule, cfg.training
    if s.name == "plateau":
        lr: Any = o.learning_rate
    else:
        decay = "constant" if s.name == "constant" else s.name
        lr = WarmupSchedule(
            peak=o.learning_rate, total_steps=t.epochs * t.steps_per_epoch, warmup_steps=s.warmup_steps,
            warmup_start=s.warmup_start, decay=decay, power=s.power, min_lr=s.min_lr,
        )
    common: dict[str, Any] = {"learning_rate": lr}
    if o.clipnorm is not None:
        common["clipnorm"] = o.clipnorm
    if o.weight_decay > 0:
        common["weight_decay"] = o.weight_decay
    if o.name == "sgd":
        return keras.optimizers.SGD(momentum=o.momentum, nesterov=o.nesterov, **common)
    adam_like = dict(beta_1=o.beta_1, beta_2=o.beta_2, epsilon=o.epsilon, **common)
    if o.name == "adamw":
        adam_like.setdefault("weight_decay", 0.0)
        return keras.optimizers.AdamW(**adam_like)
    if o.name == "nadam":
        return keras.optimizers.Nadam(**adam_like)
    return keras.optimizers.Adam(**adam_like)


def resolved_loss_name(cfg: TrainConfig) -> str:
    """The loss used: ``auto`` resolves to ``dice_ce`` (softmax) or ``region_dice_bce`` (sigmoid)."""
    if cfg.loss.name != "auto":
        return cfg.loss.name
    return "dice_ce" if cfg.head == "softmax" else "region_dice_bce"


def build_loss(cfg: TrainConfig):
    """The registered :mod:`brainseg_tf.losses` loss for a recipe (``head``/``from_logits`` from the model)."""
    import keras

    from brainseg_tf import losses

    name, opts, head, logits = resolved_loss_name(cfg), dict(cfg.loss.options), cfg.head, cfg.logits
    try:
        if name == "dice_ce":
            return losses.DiceCELoss(from_logits=logits, **opts)
        if name == "region_dice_bce":
            return losses.RegionDiceBCELoss(from_logits=logits, **opts)
        if name == "dice":
            return losses.DiceLoss(head=head, from_logits=logits, **opts)
        if name == "ce":
            return losses.WeightedCategoricalCrossentropy(from_logits=logits, **opts)
        if name == "bce":
            return keras.losses.BinaryCrossentropy(from_logits=logits, **opts)
        if name == "focal":
            return losses.FocalLoss(head=head, from_logits=logits, **opts)
        return losses.TverskyLoss(head=head, from_logits=logits, **opts)
    except TypeError as exc:
        raise ValueError(f"loss.options={opts!r} not accepted by loss {name!r}: {exc}") from None


def build_metrics(cfg: TrainConfig) -> list:
    """Epoch Dice metrics: per class/region plus ``mean_region_dice`` (or ``dice_<region>``)."""
    from brainseg_tf import metrics

    if cfg.out_channels == 1:
        return [metrics.Dice(ids=(0,), target="region", head="sigmoid", from_logits=cfg.logits,
                             name=f"dice_{cfg.pipeline.region}")]
    return [m for m in metrics.standard_metrics(cfg.head, from_logits=cfg.logits) if m.statistic == "dice"]


def monitor_name(cfg: TrainConfig, has_validation: bool) -> str:
    """The metric ``best.keras`` is selected on (mode max)."""
    if cfg.training.monitor != "auto":
        return cfg.training.monitor
    base = f"dice_{cfg.pipeline.region}" if cfg.out_channels == 1 else "mean_region_dice"
    return f"val_{base}" if has_validation else base


def build_model(cfg: TrainConfig):
    """Build the recipe's model (``in_channels`` and ``input_shape`` filled from the recipe)."""
    from brainseg_tf import models

    opts = dict(cfg.model.options)
    params = inspect.signature(models.REGISTRY[cfg.model.name]).parameters
    if "in_channels" in params:
        opts.setdefault("in_channels", len(cfg.data.modalities))
    if "input_shape" in params:
        # Whole-volume validation needs a size-agnostic network; otherwise fix the patch size.
        any_size = cfg.validation.mode == "volumes" and cfg.model.name != "een"
        opts.setdefault("input_shape", [None] * cfg.spatial_dims if any_size else list(cfg.pipeline.patch_size))
    return models.build(cfg.model.name, **opts)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def _resolve_path(value: str | None, cfg: TrainConfig) -> Path | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    if p.is_absolute() or p.exists() or cfg.source is None:
        return p
    beside = Path(cfg.source).parent / p
    return beside if beside.exists() else p


def _data_source(cfg: TrainConfig) -> Path | None:
    """The cache path (preferred when it exists) or dataset root for the data builders, or ``None``."""
    cache = _resolve_path(cfg.data.cache, cfg)
    if cache is not None and cache.exists():
        return cache
    root = _resolve_path(cfg.data.root, cfg)
    if root is not None and not root.exists() and cfg.data.synthetic is not None:
        from brainseg_tf.synthetic import make_dataset

        opts = dict(cfg.data.synthetic)
        if "shape" in opts:
            opts["shape"] = tuple(opts["shape"])
        print(f"[brainseg train] writing a synthetic dataset to {root} ({opts})", flush=True)
        make_dataset(root, progress=False, **opts)
    if cache is not None and cfg.data.build_cache and root is not None and root.exists():
        from brainseg_tf.data import build_cache

        print(f"[brainseg train] building the cache {cache} from {root}", flush=True)
        return Path(build_cache(root, cache, max_cases=cfg.data.max_cases, dtype=cfg.data.cache_dtype,
                                progress=sys.stderr.isatty()))
    if root is None:
        if cache is not None:
            raise FileNotFoundError(f"data.cache={cfg.data.cache!r} not found and no data.root given")
        return None
    if not root.exists():
        raise FileNotFoundError(f"data.root={cfg.data.root!r} not found (resolved to {root})")
    return root


def _labelled_ids(source: Path | None, cfg: TrainConfig) -> list[str]:
    if source is None:
        return []
    from brainseg_tf.data.cache import is_cache_path

    if is_cache_path(source):
        from brainseg_tf.data import open_cache

        with open_cache(source) as cache:
            ids = [cid for cid in cache if cache.has_label(cid)]
    else:
        from brainseg_tf.io import open_dataset

        ids = list(open_dataset(source, layout=cfg.data.layout).labelled_ids)
    ids = sorted(ids)
    if cfg.data.max_cases is not None:
        ids = ids[: cfg.data.max_cases]
    return ids


def _load_builder(spec: str, cfg: TrainConfig) -> Callable:
    module_part, func = spec.rsplit(":", 1)
    if module_part.endswith(".py"):
        path = _resolve_path(module_part, cfg)
        if path is None or not path.exists():
            raise FileNotFoundError(f"pipeline.builder file {module_part!r} not found")
        name = f"_brainseg_builder_{path.stem}"
        module = sys.modules.get(name)
        if module is None:
            spec_obj = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[name] = module
            spec_obj.loader.exec_module(module)
    else:
        module = importlib.import_module(module_part)
    try:
        return getattr(module, func)
    except AttributeError:
        raise ValueError(f"pipeline.builder={spec!r}: {module_part} has no attribute {func!r}") from None


def _region_map(cfg: TrainConfig):
    import tensorflow as tf

    region = REGIONS.index(cfg.pipeline.region)
    classes = {0: (1, 2, 3), 1: (1, 3), 2: (3,)}[region]

    def to_region(x, y):
        y = tf.cast(y, tf.int32)
        if y.shape.rank == len(cfg.pipeline.patch_size) + 2:
            y = y[..., 0]
        mask = tf.reduce_any(tf.stack([tf.equal(y, c) for c in classes], axis=-1), axis=-1)
        return x, tf.cast(mask, tf.float32)[..., None]

    return to_region


def _deep_supervision_map(n_outputs: int, spatial_dims: int):
    import tensorflow as tf

    def targets(x, y):
        outs = [y]
        for i in range(1, n_outputs):
            s = 2**i
            idx = (slice(None),) + (slice(None, None, s),) * spatial_dims
            outs.append(y[idx])
        return x, tuple(outs)

    del tf
    return targets


def build_datasets(cfg: TrainConfig, split: Split, *, seed: int, global_batch: int) -> tuple[Any, Any]:
    """``(train, validation_or_None)`` tf.data datasets of ``(image, labels)`` global batches.

    ``pipeline.kind="patch"``: :func:`brainseg_tf.data.patch_dataset` (3D patches, foreground
    oversampling, augmentation); ``"slice"``: :func:`brainseg_tf.data.slice_dataset` (2D slices
    resized to ``patch_size``); ``"custom"``: the recipe's builder. Targets are canonical uint8
    labels (the losses and metrics derive one-hot classes or WT/TC/ET regions from them).
    Validation: a fixed set of ``validation.patches_per_case`` un-augmented patches per case,
    cached in memory (``mode="patches"``; all the selected slices for slice pipelines), or whole
    cropped volumes zero-padded to a multiple of the network's divisor (``mode="volumes"``).
    """
    p, v = cfg.pipeline, cfg.validation
    if p.kind == "custom":
        fn = _load_builder(p.builder, cfg)
        train_ds, val_ds = fn(cfg, split, seed=seed, global_batch=global_batch)
        return train_ds, (None if v.mode == "none" else val_ds)
    from brainseg_tf import data

    source = _data_source(cfg)
    if source is None:
        raise ValueError(f"data.root or data.cache is required for pipeline.kind={p.kind!r}")
    common: dict[str, Any] = dict(modalities=list(cfg.data.modalities), target="labels")
    augment = _augment_config(p.augment)
    if p.kind == "patch":
        train_ds = data.patch_dataset(
            source, patch_size=tuple(p.patch_size), batch_size=global_batch, case_ids=split.train_ids,
            foreground_fraction=p.foreground_fraction, augment=augment, seed=seed, repeat=True,
            **common, **p.options,
        )
    else:
        train_ds = data.slice_dataset(
            source, size=tuple(p.patch_size), batch_size=global_batch, case_ids=split.train_ids,
            augment=augment, seed=seed, repeat=True, **common, **p.options,
        )
    val_ids = split.val_ids[: v.max_cases] if v.max_cases else split.val_ids
    if not val_ids or v.mode == "none":
        return train_ds, None
    if v.mode == "volumes":
        val_ds = data.volume_dataset(source, batch_size=1, case_ids=val_ids, divisor=_divisor(cfg), **common)
        return train_ds, val_ds
    if p.kind == "patch":
        val_ds = data.patch_dataset(
            source, patch_size=tuple(p.patch_size), batch_size=1, case_ids=val_ids,
            foreground_fraction=v.foreground_fraction, patches_per_case=v.patches_per_case, augment=None,
            seed=cfg.training.seed + 7919, repeat=False, **common,
            **{k: val for k, val in p.options.items() if k in ("preprocess",)},
        )
    else:
        val_ds = data.slice_dataset(
            source, size=tuple(p.patch_size), batch_size=1, case_ids=val_ids, augment=None,
            shuffle=False, repeat=False, **common,
            **{k: val for k, val in p.options.items() if k in ("plane", "slices", "crop", "preprocess")},
        )
    n = v.patches_per_case * len(val_ids)
    val_ds = val_ds.unbatch().take(n).batch(global_batch)
    nbytes = n * math.prod(p.patch_size) * (4 * len(cfg.data.modalities) + 1)
    # Read once, then the same patches every epoch from memory (when they fit comfortably).
    return train_ds, (val_ds.cache() if nbytes <= 2 * 1024**3 else val_ds)


def _divisor(cfg: TrainConfig) -> int:
    """Spatial divisor of the model's input (2**poolings)."""
    if cfg.model.name == "een":
        return 16
    depth = int(cfg._builder_default("depth") or 4)
    return 2 ** (depth - 1) if cfg.model.name == "unet3d" else 2**depth


def _augment_config(augment: Any) -> Any:
    """``pipeline.augment`` → what the data builders take: ``None``, ``True``, ``"light"`` or an
    :class:`~brainseg_tf.data.augment.AugmentConfig` built from a dict of its fields."""
    if augment is None or augment is False or augment == "none":
        return None
    if augment is True or augment == "default":
        return True
    if augment == "light":
        return "light"
    from brainseg_tf.data.augment import AugmentConfig

    try:
        return AugmentConfig.from_dict(dict(augment))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pipeline.augment: {exc}") from None


def _finish_dataset(ds: Any, cfg: TrainConfig, n_outputs: int, shard: bool) -> Any:
    import tensorflow as tf

    if ds is None:
        return None
    if cfg.out_channels == 1:
        ds = ds.map(_region_map(cfg), num_parallel_calls=tf.data.AUTOTUNE)
    if n_outputs > 1:
        ds = ds.map(_deep_supervision_map(n_outputs, cfg.spatial_dims), num_parallel_calls=tf.data.AUTOTUNE)
    if shard:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------
# Run directory helpers
# ----------------------------------------------------------------------------------------------
def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and k not in ("options", "augment"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _incompatible_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    changed = []
    for key in sorted(set(a) | set(b)):
        if key.split(".")[0] in ("inference", "resolved_runtime"):
            continue
        if any(key == r or key.startswith(r + ".") for r in _RESUMABLE_CHANGES):
            continue
        if a.get(key) != b.get(key):
            changed.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return changed


def _inference_block(cfg: TrainConfig) -> dict[str, Any]:
    """What :func:`brainseg_tf.inference.load_predictor` reads from ``RUN_DIR/config.json``."""
    preprocess = dict(cfg.pipeline.options.get("preprocess") or {})
    return {
        "model": {"name": cfg.model.name, "options": dict(cfg.model.options)},
        "modalities": list(cfg.data.modalities),
        "head": cfg.head,
        "out_channels": cfg.out_channels,
        "region": cfg.pipeline.region,
        "logits": cfg.logits,
        "spatial_dims": cfg.spatial_dims,
        "patch_size": list(cfg.pipeline.patch_size),
        "roi": list(cfg.pipeline.patch_size),
        "overlap": cfg.validation.overlap,
        "preprocessing": {k: preprocess[k] for k in ("margin", "reorient", "spacing") if k in preprocess},
        "postprocess": {"et_min_voxels": 0, "min_component_voxels": 0, "region_threshold": 0.5},
        "checkpoints": ["best.keras", "final.keras"],
    }


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _truncate_csv(path: Path, keep_below_epoch: int) -> None:
    """Drop rows logged for epochs the restored state has not completed (killed mid-save)."""
    rows = _read_csv_rows(path)
    if not rows:
        return
    kept = [r for r in rows if int(float(r["epoch"])) < keep_below_epoch]
    if len(kept) == len(rows):
        return
    fields = list(rows[0].keys())
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)


def _repair_backup(backup_dir: Path) -> None:
    """If a kill truncated the backup's metadata file, fall back to the previous generation
    (Keras restores weights from ``.bkp`` on an IO error but not metadata on a JSON error)."""
    meta = backup_dir / "training_metadata.json"
    prev_meta = meta.with_name(meta.name + ".bkp")
    weights = backup_dir / "latest.weights.h5"
    prev_weights = weights.with_name(weights.name + ".bkp")
    if not meta.exists():
        return
    try:
        json.loads(meta.read_text())["epoch"]
        return
    except (OSError, ValueError, KeyError):
        pass
    if prev_meta.exists() and prev_weights.exists():
        shutil.copyfile(prev_weights, weights)
        shutil.copyfile(prev_meta, meta)
    else:
        meta.unlink()


def _backup_epoch(backup_dir: Path) -> int:
    meta = backup_dir / "training_metadata.json"
    for candidate in (meta, meta.with_name(meta.name + ".bkp")):
        try:
            return int(json.loads(candidate.read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            continue
    return 0


def _event(run_dir: Path | None, **fields: Any) -> None:
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
    print("[brainseg train] " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)
    if run_dir is not None:
        with (run_dir / "events.jsonl").open("a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")


# ----------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------
def _callbacks_module():
    import keras

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
                raise KeyError(
                    f"training.monitor={self.monitor!r} is not among the logged metrics {sorted(logs or {})}"
                )
            if math.isfinite(value) and value > self.best:
                self.best, self.best_epoch = value, epoch
                self.model.save(self.path)
                _write_json(self.state_path, {"monitor": self.monitor, "value": value, "epoch": epoch})

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
            if logs is None:
                return
            opt = self.model.optimizer
            lr = opt.learning_rate
            try:
                logs["lr"] = float(keras.ops.convert_to_numpy(lr))
            except (TypeError, ValueError):
                logs["lr"] = float(keras.ops.convert_to_numpy(opt._get_current_learning_rate()))

    return BestCheckpoint, TimeLimit, LearningRateLogger


# ----------------------------------------------------------------------------------------------
# Train
# ----------------------------------------------------------------------------------------------
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


def _prebuild_for_multi_worker(model: Any, train_ds: Any) -> None:
    """Build metrics, losses and optimizer from one local batch, then skip Keras' own pre-build.

    Keras 3.15's ``fit`` pre-builds by ``strategy.reduce("MEAN", (x, y))`` over the first
    distributed batch, which ``MultiWorkerMirroredStrategy`` rejects for a nested structure
    ("Attempt to convert a value (PerReplica...) to a Tensor"). Building from an undistributed
    batch inside the strategy scope creates the same (mirrored) variables.
    """
    sample = next(iter(train_ds.take(1)))
    model._symbolic_build(data_batch=sample)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


class _multi_worker_log_reduction:  # noqa: N801 — used as a context manager
    """Average scalar step logs across workers with ``axis=None`` while ``fit`` runs.

    Keras 3.15 reduces every per-replica output of a multi-worker train step with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for the scalar loss and metric values
    ("Invalid reduction dimension 0 for input with 0 dimensions"). Within this context scalars
    are mean-reduced over all replicas of all workers instead; everything else is unchanged.
    Gradients are not affected: the optimizer all-reduces them through the strategy.
    """

    def __enter__(self):
        import tensorflow as tf
        from keras.src.backend.tensorflow import trainer as tf_trainer

        self._module = tf_trainer
        self._original = original = tf_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            if reduction not in ("auto", "mean") or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
                return original(values, strategy, reduction)

            def reduce_one(v):
                local = strategy.experimental_local_results(v)
                rank = tf.nest.flatten(local)[0].shape.rank
                return strategy.reduce("MEAN", v, axis=0 if rank else None)

            return tf.nest.map_structure(reduce_one, values)

        tf_trainer.reduce_per_replica = reduce_per_replica
        return self

    def __exit__(self, *exc: Any) -> None:
        self._module.reduce_per_replica = self._original


def _history_from_csv(path: Path) -> dict[str, list[float]]:
    rows = _read_csv_rows(path)
    out: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            try:
                out.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                out.setdefault(k, []).append(math.nan)
    return out


def _default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / cfg.name


def _prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool) -> tuple[dict[str, Any] | None, Split | None]:
    """Check an existing run dir against the recipe; return the saved config and split."""
    saved_cfg_path, split_path = run_dir / "config.json", run_dir / "split.json"
    if not saved_cfg_path.exists():
        return None, None
    if not resume:
        raise FileExistsError(
            f"run directory {run_dir} already holds a run; re-run with resume (the default) to continue "
            "it, or choose another run directory"
        )
    saved = json.loads(saved_cfg_path.read_text())
    changes = _incompatible_changes(saved, cfg.to_dict())
    if changes:
        raise ValueError(
            f"cannot resume {run_dir}: the recipe changed incompatibly since the run started "
            f"({'; '.join(changes)}). Use another run directory for a new experiment."
        )
    split = Split(**json.loads(split_path.read_text())) if split_path.exists() else None
    return saved, split


def train(config_or_path: TrainConfig | str | os.PathLike | Mapping[str, Any], *,
          run_dir: str | os.PathLike | None = None, resume: bool = True) -> RunResult:
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
    if isinstance(config_or_path, TrainConfig):
        cfg = config_or_path
    elif isinstance(config_or_path, Mapping):
        cfg = TrainConfig.from_dict(config_or_path)
    else:
        cfg = load_config(config_or_path)
    cfg.validate()
    run_dir = Path(run_dir) if run_dir is not None else _default_run_dir(cfg)

    import keras
    import tensorflow as tf

    strategy = select_strategy(cfg.runtime.strategy, cfg.runtime.communication)
    task_type, task_index, is_chief = task_identity()
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if not multi_worker:
        is_chief = True
    chief_dir = run_dir
    work_dir = run_dir if is_chief else run_dir / "workers" / f"{task_type}_{task_index}"

    saved_cfg, saved_split = _prepare_run_dir(cfg, chief_dir, resume) if is_chief else (None, None)
    work_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = work_dir / "metrics.json"
    if is_chief and metrics_path.exists():
        done = json.loads(metrics_path.read_text())
        if done.get("completed") and done.get("epochs_completed", 0) >= cfg.training.epochs:
            _event(work_dir, event="already_complete", epochs=done["epochs_completed"])
            return RunResult(chief_dir, None, _history_from_csv(chief_dir / "log.csv"), done,
                             done["epochs_completed"], done["epochs_completed"], True)

    if cfg.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.training.seed)
    policy = resolve_mixed_precision(cfg.runtime.mixed_precision)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return _train(cfg, strategy, chief_dir, work_dir, is_chief, saved_split, policy,
                      multi_worker, task_type, task_index)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _train(cfg: TrainConfig, strategy: Any, chief_dir: Path, work_dir: Path, is_chief: bool,
           saved_split: Split | None, policy: str, multi_worker: bool, task_type: str,
           task_index: int) -> RunResult:
    import keras

    t0 = time.monotonic()
    t = cfg.training
    # Split: reuse the saved one; otherwise compute from the dataset's labelled ids.
    if saved_split is not None:
        split = saved_split
    elif cfg.split.method == "none" or cfg.pipeline.kind == "custom" and cfg.data.root is None and cfg.data.cache is None:
        split = make_split([], SplitConfig(method="none"))
    else:
        split = make_split(_labelled_ids(_data_source(cfg), cfg), cfg.split)
    backup_dir = work_dir / "backup"
    _repair_backup(backup_dir)
    initial_epoch = _backup_epoch(backup_dir)
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.pipeline.batch_size * replicas
    if is_chief:
        resolved = cfg.to_dict()
        resolved["inference"] = _inference_block(cfg)
        resolved["resolved_runtime"] = {"dtype_policy": policy, "xla": _resolve_xla(cfg.runtime.xla),
                                        "strategy": _strategy_name(strategy), "replicas": replicas,
                                        "global_batch_size": global_batch}
        _write_json(work_dir / "config.json", resolved)
        _write_json(work_dir / "split.json", split.to_dict())
        _truncate_csv(work_dir / "log.csv", initial_epoch)
    _event(work_dir if is_chief else None, event="resume" if initial_epoch else "start",
           initial_epoch=initial_epoch, epochs=t.epochs, steps_per_epoch=t.steps_per_epoch,
           strategy=_strategy_name(strategy), replicas=replicas, global_batch=global_batch,
           policy=policy, train_cases=len(split.train_ids), val_cases=len(split.val_ids))

    # A different data seed per resumed session, so a resume does not replay epoch 0's patches.
    data_seed = t.seed + 1009 * initial_epoch
    train_ds, val_ds = build_datasets(cfg, split, seed=data_seed, global_batch=global_batch)

    with strategy.scope():
        model = build_model(cfg)
        n_outputs = len(model.outputs)
        loss = build_loss(cfg)
        metric_list = build_metrics(cfg)
        compile_kwargs: dict[str, Any] = {}
        if n_outputs > 1:
            from brainseg_tf.losses import deep_supervision_weights

            compile_kwargs["loss"] = [loss] + [build_loss(cfg) for _ in range(n_outputs - 1)]
            compile_kwargs["loss_weights"] = deep_supervision_weights(n_outputs, decay=cfg.loss.deep_supervision_decay)
            compile_kwargs["metrics"] = [metric_list] + [[] for _ in range(n_outputs - 1)]
        else:
            compile_kwargs["loss"] = loss
            compile_kwargs["metrics"] = metric_list
        model.compile(optimizer=build_optimizer(cfg), jit_compile=_resolve_xla(cfg.runtime.xla), **compile_kwargs)
        train_ds = _finish_dataset(train_ds, cfg, n_outputs, multi_worker)
        val_ds = _finish_dataset(val_ds, cfg, n_outputs, multi_worker)
        if multi_worker:
            _prebuild_for_multi_worker(model, train_ds)
    has_val = val_ds is not None
    monitor = monitor_name(cfg, has_val)

    BestCheckpoint, TimeLimit, LearningRateLogger = _callbacks_module()
    callbacks: list[Any] = [LearningRateLogger()]
    if cfg.schedule.name == "plateau":
        plateau_monitor = cfg.schedule.monitor if cfg.schedule.monitor != "auto" else ("val_loss" if has_val else "loss")
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=plateau_monitor, factor=cfg.schedule.factor, patience=cfg.schedule.patience,
            min_lr=cfg.schedule.min_lr, verbose=1))
    time_limit = TimeLimit(t.max_minutes) if t.max_minutes else None
    if time_limit is not None:
        callbacks.append(time_limit)
    best_cb = None
    if is_chief:
        best_cb = BestCheckpoint(work_dir / "best.keras", work_dir / "best.json", monitor)
        callbacks += [best_cb, keras.callbacks.CSVLogger(str(work_dir / "log.csv"), append=True)]
        if _tensorboard_available():
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(work_dir / "tensorboard"), write_graph=False,
                                                         update_freq="epoch", profile_batch=0))
        elif initial_epoch == 0:
            _event(work_dir, event="note", tensorboard="not installed; pip install tensorboard for RUN_DIR/tensorboard")
    # Last, so an epoch counts as completed only once its row, best model and LR are written.
    callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True,
                                                      delete_checkpoint=False))
    verbose = t.verbose
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2

    fit_kwargs: dict[str, Any] = dict(
        epochs=t.epochs, steps_per_epoch=t.steps_per_epoch, callbacks=callbacks, verbose=verbose, shuffle=False,
    )
    if has_val:
        fit_kwargs["validation_data"] = val_ds
    if multi_worker:
        with _multi_worker_log_reduction():
            model.fit(train_ds, **fit_kwargs)
    else:
        model.fit(train_ds, **fit_kwargs)
    # Release the input pipelines before anything else: an HDF5-backed tf.data iterator left
    # alive can hang the interpreter at exit (docs: feasibility notes).
    del train_ds, val_ds, fit_kwargs
    gc.collect()
    epochs_completed = _backup_epoch(backup_dir)
    stopped_early = epochs_completed < t.epochs
    wall = time.monotonic() - t0

    if not is_chief:
        return RunResult(chief_dir, model, {}, {}, initial_epoch, epochs_completed, False)

    if cfg.training.save_final:
        model.save(work_dir / "final.keras")
    history = _history_from_csv(work_dir / "log.csv")
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
        "best": {"value": best_cb.best if best_cb and math.isfinite(best_cb.best) else None,
                 "epoch": best_cb.best_epoch if best_cb else None},
        "last_epoch": last,
    }
    if cfg.validation.final_sliding_window and split.val_ids and cfg.pipeline.kind != "custom":
        metrics["sliding_window"] = _final_evaluation(cfg, split, work_dir)
    _write_json(work_dir / "metrics.json", metrics)
    _event(work_dir, event="end", epochs_completed=epochs_completed, completed=metrics["completed"],
           wall_s=round(wall, 1), best=metrics["best"])
    return RunResult(chief_dir, model, history, metrics, initial_epoch, epochs_completed, True)


def _tensorboard_available() -> bool:
    # TensorFlow >= 2.21 no longer depends on the tensorboard package that tf.summary needs.
    return importlib.util.find_spec("tensorboard") is not None


def _final_evaluation(cfg: TrainConfig, split: Split, run_dir: Path) -> dict[str, Any]:
    """Per-case Dice/HD95 (WT, TC, ET) of ``best.keras`` on each whole validation case.

    Prediction is :func:`brainseg_tf.inference.predict_case` on the run directory (crop, z-score,
    Gaussian sliding window with ``validation.overlap``, no TTA, no postprocessing, paste-back to
    the native grid); scores are :func:`brainseg_tf.evaluation.evaluate_case` (legacy BraTS
    empty-mask rule, no lesion-wise scores).
    """
    import numpy as np

    if cfg.out_channels == 1:
        return {"skipped": "single-region models are scored by their validation Dice only"}
    root = _resolve_path(cfg.data.root, cfg)
    if root is None or not root.exists():
        return {"skipped": "the final sliding-window evaluation needs data.root (raw cases)"}
    from brainseg_tf import evaluation, inference
    from brainseg_tf.io import open_dataset

    predictor = inference.load_predictor(run_dir)
    dataset = open_dataset(root, layout=cfg.data.layout)
    per_case: dict[str, dict[str, float]] = {}
    t0 = time.monotonic()
    for case_id in split.val_ids:
        case = dataset[case_id]
        pred = inference.predict_case(predictor, case, roi=tuple(cfg.pipeline.patch_size),
                                      overlap=cfg.validation.overlap)
        rows = evaluation.evaluate_case(pred.labels, case.label, case.spacing, case=case_id, lesion_wise=False)
        scores = {}
        for row in rows:
            region = str(row.get("region", "")).lower()
            scores[f"dice_{region}"] = float(row["dice"])
            scores[f"hd95_{region}"] = float(row["hd95"])
        per_case[case_id] = scores
        print(f"[brainseg train] sliding window {case_id}: "
              + " ".join(f"{k}={v:.3f}" for k, v in scores.items() if k.startswith("dice")), flush=True)
    keys = sorted({k for c in per_case.values() for k in c})
    mean = {k: float(np.mean([c[k] for c in per_case.values() if k in c])) for k in keys}
    print("[brainseg train] sliding window mean: "
          + " ".join(f"{k}={v:.3f}" for k, v in mean.items() if k.startswith("dice")), flush=True)
    return {"model": Path(predictor.source or "").name, "overlap": cfg.validation.overlap,
            "rule": "legacy BraTS empty-mask rule (both empty: Dice 1, HD95 0)",
            "seconds": round(time.monotonic() - t0, 1), "per_case": per_case, "mean": mean}


# ----------------------------------------------------------------------------------------------
# Command line (the ``brainseg train`` subcommand wraps the same arguments)
# ----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``, ``--run-dir`` and ``--no-resume`` to a parser."""
    parser.add_argument("--config", required=True, help="JSON recipe (see configs/)")
    parser.add_argument("--run-dir", default=None, help="run directory (default runs/<config name>)")
    parser.add_argument("--no-resume", action="store_true",
                        help="refuse to continue an existing run directory instead of resuming it")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m brainseg_tf.training --config FILE.json [--run-dir DIR] [--no-resume]``."""
    parser = argparse.ArgumentParser(prog="brainseg train", description="train a segmentation model from a JSON recipe")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        result = train(args.config, run_dir=args.run_dir, resume=not args.no_resume)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"brainseg train: error: {exc}", file=sys.stderr)
        return 2
    print(f"[brainseg train] run directory: {result.run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
