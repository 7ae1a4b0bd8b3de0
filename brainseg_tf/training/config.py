"""The recipe schema: a JSON recipe read once into a typed, validated :class:`TrainConfig`.

A recipe has the sections ``data``, ``split``, ``model``, ``pipeline``, ``validation``, ``loss``,
``optimizer``, ``schedule``, ``training``, ``runtime`` (see ``docs/training.md`` for every key);
unknown keys and bad values (NaN and infinities included) raise ``ValueError`` naming the key path
(``optimizer.name='adamw2' unknown; expected one of [...]``). Facts about the model (head,
outputs, logits, dimensionality, input divisor) come from the model registry.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from brainseg_tf.conventions import MODALITIES, REGIONS

OPTIMIZERS = ("adam", "adamw", "nadam", "sgd")
SCHEDULES = ("constant", "poly", "cosine", "plateau")
LOSSES = ("auto", "dice_ce", "region_dice_bce", "dice", "ce", "bce", "focal", "tversky")
PIPELINES = ("patch", "slice", "custom")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "off", "float16", "bfloat16")
VALIDATION_MODES = ("patches", "volumes", "none")
SPLIT_METHODS = ("kfold", "fixed", "none")


@dataclass
class DataConfig:
    """Where the cases come from.

    Attributes:
        root: dataset folder (any layout ``brainseg_tf.io.open_dataset`` reads), or ``None``.
        cache: preprocessed HDF5 cache (``brainseg_tf.data.build_cache``); preferred over ``root``.
        layout: dataset layout, ``None`` detects it.
        modalities: input channels in this order (canonical names ``flair, t1, t1ce, t2``);
            ``None`` takes the model's default (the registry's ``default_modalities``).
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
    modalities: list[str] | None = None
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
    augment: dict | str | bool | None = "default"
    region: str | None = None
    builder: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidationConfig:
    """Validation during training and at the end.

    Attributes:
        mode: ``"patches"`` (a fixed, deterministic set of ``patches_per_case`` patches per
            validation case, evaluated every epoch — fast on CPU), ``"volumes"`` (every
            ``every_epochs`` epochs, and at the last one, the whole validation cases predicted
            as ``brainseg predict`` does: sliding window at ``overlap``, card preprocessing and
            postprocessing, legacy empty-mask Dice; logs ``val_volume_dice_<region>`` and
            ``val_volume_mean_dice``, which ``best.keras`` is then chosen on; needs
            ``data.root``) or ``"none"``.
        every_epochs: validation period in epochs for ``mode="volumes"``.
        select_postprocessing: after training, choose the postprocessing on the whole
            validation cases with ``best.keras`` (:func:`brainseg_tf.postprocessing.select`) and
            record it in the model card (``predict`` applies it) and ``postprocessing.json``;
            ``null`` (default): on wherever the run has raw validation cases (``data.root``).
        patches_per_case: patches per validation case for ``mode="patches"``.
        foreground_fraction: share of tumour-centred validation patches.
        final_sliding_window: after training, evaluate ``best.keras`` on every whole validation
            case with the sliding window (Dice WT/TC/ET per case into ``metrics.json``).
        overlap: sliding-window overlap of the volume validation, the final evaluation and the
            postprocessing selection; ``null`` (default): 0.25 for ``mode="volumes"`` (cheap
            enough to validate every few epochs on CPU), else 0.5.
        max_cases: validate every epoch on the first N validation cases only (the final
            sliding-window evaluation still covers all of them).
        window: the sliding window of the volume validation and the final evaluation, recorded
            in the model card for ``predict``: ``"patch"`` (default: windows of
            ``pipeline.patch_size``) or ``"auto"`` (per case the largest windows of at most
            ``max_window_voxels`` voxels, never smaller than the patch:
            :func:`brainseg_tf.inference.plan_window`; 3D models).
        max_window_voxels: the ``"auto"`` window budget (memory grows with it).
        min_window: the smallest ``"auto"`` window per axis; ``null`` (default): the patch.

    A fixed patch set up to 2 GiB is kept in memory after the first epoch; a larger one is
    re-read each epoch (the same patches: the stream is seeded).
    """

    mode: str = "patches"
    patches_per_case: int = 4
    foreground_fraction: float = 0.5
    final_sliding_window: bool = True
    overlap: float | None = None
    max_cases: int | None = None
    every_epochs: int = 1
    select_postprocessing: bool | None = None
    window: str = "patch"
    max_window_voxels: int = 1_500_000
    min_window: list[int] | None = None


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
        checkpoint_every_steps: also write the resume backup every this many optimizer steps
            within an epoch (weights, optimizer, counters, data position, random states), so a
            kill loses at most this many steps; ``0``: only at epoch ends.
        all_folds: ``brainseg train`` trains every fold of the k-fold split (``split.folds``),
            fold ``k`` into ``RUN_DIR/fold_<k>`` (:func:`brainseg_tf.training.folds.train_folds`;
            also ``brainseg train --folds K``).
    """

    epochs: int = 10
    steps_per_epoch: int = 100
    seed: int = 0
    monitor: str = "auto"
    verbose: str | int = "auto"
    max_minutes: float | None = None
    save_final: bool = True
    checkpoint_every_steps: int = 0
    all_folds: bool = False


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
    xla: str | bool = "auto"
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
    def from_dict(cls, data: Mapping[str, Any], *, source: str | os.PathLike | None = None) -> TrainConfig:
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
        if (
            not isinstance(self.name, str)
            or not self.name
            or "/" in self.name
            or "\\" in self.name
            or self.name.startswith(".")
        ):
            _bad(
                "name",
                self.name,
                "must be a plain name (no path separators, not starting with '.'): the "
                "default run directory is runs/<name>",
            )
        from brainseg_tf import models as _models  # light: models import keras only

        _choice("model.name", m.name, _models.available())
        spec = _models.get_spec(m.name)
        unknown = sorted(set(m.options) - set(spec.defaults))
        if unknown:
            _bad("model.options", unknown, f"unknown option(s) for {m.name!r}; accepted: {sorted(spec.defaults)}")
        if d.modalities is None:
            d.modalities = list(spec.default_modalities)
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
                _bad(
                    "data.synthetic", sorted(set(d.synthetic) - allowed), f"unknown key(s); expected {sorted(allowed)}"
                )
        _choice("split.method", s.method, SPLIT_METHODS)
        if s.method == "kfold":
            if s.folds < 2:
                _bad("split.folds", s.folds, "must be >= 2")
            if not 0 <= s.fold < s.folds:
                _bad("split.fold", s.fold, f"must be in [0, {s.folds})")
        if s.method == "fixed" and not s.val_ids:
            _bad("split.val_ids", s.val_ids, "must list validation case ids for split.method='fixed'")
        if s.method == "fixed" and s.train_ids is not None and set(s.train_ids) & set(s.val_ids):
            _bad("split.train_ids", sorted(set(s.train_ids) & set(s.val_ids)), "overlap split.val_ids")
        _choice("pipeline.kind", p.kind, PIPELINES)
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
            _choice("pipeline.region", str(p.region).upper(), REGIONS)
            p.region = p.region.lower()
        if head == "region" and p.region is None:
            _bad("pipeline.region", None, "must name the region (wt, tc, et) of a 1-channel sigmoid model")
        if p.region is not None and head != "region":
            _bad("pipeline.region", p.region, "is only for 1-channel sigmoid models")
        if head == "sigmoid" and out_channels != 3:
            _bad(
                "model.options.out_channels",
                out_channels,
                "a sigmoid head needs 3 (WT, TC, ET) or 1 channel (one region)",
            )
        if head == "softmax" and out_channels != 4:
            _bad("model.options.out_channels", out_channels, "a softmax head needs the 4 canonical classes")
        if m.options.get("in_channels", len(d.modalities)) != len(d.modalities):
            _bad(
                "model.options.in_channels",
                m.options["in_channels"],
                f"must equal len(data.modalities)={len(d.modalities)}",
            )
        _choice("validation.mode", v.mode, VALIDATION_MODES)
        if v.patches_per_case < 1:
            _bad("validation.patches_per_case", v.patches_per_case, "must be >= 1")
        _fraction("validation.foreground_fraction", v.foreground_fraction)
        if v.overlap is None:
            v.overlap = 0.25 if v.mode == "volumes" else 0.5
        if not 0 <= v.overlap < 1:
            _bad("validation.overlap", v.overlap, "must be in [0, 1)")
        if v.every_epochs < 1:
            _bad("validation.every_epochs", v.every_epochs, "must be >= 1")
        _choice("validation.window", v.window, ("patch", "auto"))
        if v.window == "auto" and self.spatial_dims != 3:
            _bad("validation.window", v.window, "plans 3D windows; a 2D model slides its patch")
        if v.window == "auto" and any(s is not None for s in self.model_spec.required_size(m.options)):
            _bad("validation.window", v.window, f"plans window sizes; {m.name!r} needs a fixed input size")
        if isinstance(v.max_window_voxels, bool) or not isinstance(v.max_window_voxels, int) or v.max_window_voxels < 1:
            _bad("validation.max_window_voxels", v.max_window_voxels, "must be a positive integer")
        if v.min_window is not None and (
            len(v.min_window) != self.spatial_dims
            or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in v.min_window)
        ):
            _bad("validation.min_window", v.min_window, f"must be {self.spatial_dims} positive integers")
        if v.mode == "volumes" and (p.kind == "custom" or d.root is None):
            _bad(
                "validation.mode",
                v.mode,
                "needs the raw cases (data.root) and a built-in pipeline "
                "(whole cases are predicted as brainseg predict does)",
            )
        _choice("loss.name", self.loss.name, LOSSES)
        if self.loss.name in ("dice_ce", "ce") and head != "softmax":
            _bad("loss.name", self.loss.name, "needs a softmax head")
        if self.loss.name in ("region_dice_bce", "bce") and self.activation != "sigmoid":
            _bad("loss.name", self.loss.name, "needs a sigmoid head")
        if not 0 < self.loss.deep_supervision_decay <= 1:
            _bad("loss.deep_supervision_decay", self.loss.deep_supervision_decay, "must be in (0, 1]")
        o = self.optimizer
        _choice("optimizer.name", o.name, OPTIMIZERS)
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
        if t.all_folds and s.method != "kfold":
            _bad("training.all_folds", True, f"needs split.method='kfold' (got {s.method!r})")
        if t.checkpoint_every_steps < 0:
            _bad("training.checkpoint_every_steps", t.checkpoint_every_steps, "must be >= 0 (0: only at epoch ends)")
        if t.verbose not in ("auto", 0, 1, 2):
            _bad("training.verbose", t.verbose, "must be 'auto', 0, 1 or 2")
        if t.max_minutes is not None and not t.max_minutes > 0:
            _bad("training.max_minutes", t.max_minutes, "must be > 0 or null")
        sc = self.schedule
        _choice("schedule.name", sc.name, SCHEDULES)
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
        _choice("runtime.strategy", r.strategy, STRATEGIES)
        _choice("runtime.mixed_precision", r.mixed_precision, PRECISIONS)
        if r.xla not in ("auto", True, False):
            _bad("runtime.xla", r.xla, "must be 'auto', true or false")
        _choice("runtime.communication", r.communication, ("auto", "ring", "nccl"))

    # -- derived properties (asked of the model registry) ----------------------------------
    @property
    def model_spec(self):
        """The :class:`~brainseg_tf.models.ModelSpec` of ``model.name``."""
        from brainseg_tf import models as _models

        return _models.get_spec(self.model.name)

    @property
    def head(self) -> str:
        """``"softmax"`` (classes 0-3), ``"sigmoid"`` (3 regions) or ``"region"`` (one region)."""
        return self.model_spec.head(self.model.options)

    @property
    def activation(self) -> str:
        """The output activation the losses and metrics apply: ``"softmax"`` or ``"sigmoid"``."""
        return "softmax" if self.head == "softmax" else "sigmoid"

    @property
    def out_channels(self) -> int:
        """Output channels of the model (4 softmax classes, 3 regions, or 1 region)."""
        return self.model_spec.out_channels(self.model.options)

    @property
    def logits(self) -> bool:
        """Whether the model returns logits (losses/metrics then apply softmax/sigmoid)."""
        return self.model_spec.logits(self.model.options)

    @property
    def spatial_dims(self) -> int:
        """2 or 3: the model's spatial dimensionality."""
        return self.model_spec.dims(self.model.options)

    @property
    def deep_supervision(self) -> bool:
        """Whether the model has deep-supervision outputs."""
        return self.model_spec.deep_supervision(self.model.options)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Per-axis divisor of a valid model input size."""
        return self.model_spec.size_divisor(self.model.options)


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
        if not math.isfinite(value):
            _bad(path, value, "must be a finite number")
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


def as_config(config_or_path: TrainConfig | str | os.PathLike | Mapping[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from itself, a recipe mapping or a recipe file."""
    if isinstance(config_or_path, TrainConfig):
        return config_or_path
    if isinstance(config_or_path, Mapping):
        return TrainConfig.from_dict(config_or_path)
    return load_config(config_or_path)


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
        data = json.loads(path.read_text(), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if isinstance(data, Mapping) and "name" not in data:
        data = {**data, "name": path.stem}
    for key, value in (overrides or {}).items():
        data = _set_dotted(data, key, value)
    try:
        return TrainConfig.from_dict(data, source=path)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value (recipes take finite numbers only)")


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
    folders.append(Path(__file__).resolve().parents[2] / "configs")
    for folder in folders:
        if (folder / file).is_file():
            return folder / file
    raise FileNotFoundError(f"recipe {file!r} not found in {[str(f) for f in folders]}")
