"""The recipe schema: a JSON recipe read once into a typed, validated :class:`TrainConfig`.

A recipe has the sections ``data``, ``split``, ``model``, ``pipeline``, ``validation``, ``loss``,
``optimizer``, ``schedule``, ``training``, ``runtime`` (see ``docs/training.md`` for every key);
unknown keys and bad values (NaN and infinities included) raise ``ValueError`` naming the key path
(``optimizer.name must be one of ('adam', ...), got 'adamw2'``). Reading a recipe is three visible
steps: parse and type-check (:meth:`TrainConfig.from_dict`), fill in the defaults that depend on
other keys (:meth:`TrainConfig.resolved`), check every value (:meth:`TrainConfig.validate`, which
changes nothing). Facts about the model (head, outputs, logits, dimensionality, input divisor) come
from the model registry.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from brainseg_tf.checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_int_sequence,
    check_number,
)
from brainseg_tf.conventions import MODALITIES
from brainseg_tf.schemes import DEFAULT_SCHEME, SCHEMES, LabelScheme, get_scheme

OPTIMIZERS = ("adam", "adamw", "nadam", "sgd")
SCHEDULES = ("constant", "poly", "cosine", "plateau")
LOSSES = ("auto", "dice_ce", "region_dice_bce", "dice", "ce", "bce", "focal", "tversky")
PIPELINES = ("patch", "slice", "custom")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "off", "float16", "bfloat16")
VALIDATION_MODES = ("patches", "volumes", "none")
SPLIT_METHODS = ("kfold", "fixed", "none")
COMMUNICATIONS = ("auto", "ring", "nccl")
AUGMENT_PRESETS = ("default", "light", "none")
#: ``data.synthetic`` keys (keyword arguments of :func:`brainseg_tf.synthetic.make_dataset`).
SYNTHETIC_KEYS = ("n_cases", "shape", "seed", "layout")
#: The label scheme of a recipe whose data states and shows none (BraTS 2017-2021 glioma).


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
        scheme: the label scheme (:mod:`brainseg_tf.schemes`: ``brats2021``, ``gli2024``,
            ``ped2024``...; aliases such as ``ped2025`` are resolved): every case is read in it
            and a cache built in another is refused. ``None`` (default): each case's own scheme,
            detected from its id (a cache's recorded one); the training cases must then share one.
            The scheme sets the model head (sigmoid: one channel per region; softmax: one per
            class), the losses, the metric names and the model card.
        channel_order: what the image channels are where the files do not name them: the Kaggle
            per-slice HDF5 set (:mod:`brainseg_tf.io.kaggle`; ``root`` its folder), a permutation
            of ``flair, t1, t1ce, t2``; ``None`` takes its measured order (flair, t1, t1ce, t2).

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
    scheme: str | None = None
    channel_order: list[str] | None = None


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
            Ignored where ``postprocessing_records`` is set.
        postprocessing_records: instead, the folder of this recipe's ``brainseg cv`` fold records
            (``results/cv/<run>``): after training the card records the postprocessing chosen on
            every out-of-fold case (:func:`brainseg_tf.training.crossval.select_from_records`, with
            its evidence). Checked before training starts: records of another recipe (compared
            on what a fold's predictions depend on: :func:`brainseg_tf.training.crossval.recipe_records`),
            an incomplete or damaged set are refused, naming the folder. A finished run given
            the setting takes it when run again. Relative to the current
            directory, else to the recipe's folder.
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
    postprocessing_records: str | None = None
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
            ``bfloat16`` (``mixed_bfloat16``: faster Conv3D on AVX-512-BF16 CPUs, see ``docs/training.md``).
        xla: ``"auto"`` (off: XLA slows Conv3D down on CPU, see ``docs/training.md``; a GPU
            recipe opts in), ``true`` or ``false``.
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
    #: The scheme the data showed where ``data.scheme`` is ``None`` (set by
    #: :func:`brainseg_tf.training.data.with_data_scheme`); not part of the recipe.
    detected_scheme: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | os.PathLike | None = None) -> TrainConfig:
        """Build a recipe from a JSON-like dict, fill in its defaults (:meth:`resolved`) and validate it.

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
        cfg = cfg.resolved()
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as a JSON-serialisable dict (every default filled in)."""
        out = dataclasses.asdict(self)
        out.pop("source", None)
        out.pop("detected_scheme", None)
        return out

    # -- defaults and checks ---------------------------------------------------------------
    def resolved(self) -> TrainConfig:
        """A copy with the defaults that depend on other keys filled in (the one resolution step).

        ``data.modalities`` null takes the model's default modalities, ``validation.overlap`` null
        takes 0.25 for ``validation.mode="volumes"`` (cheap enough to validate every few epochs on
        CPU), else 0.5, ``pipeline.region`` is lower-cased and ``data.scheme`` an alias becomes the
        scheme's name (``ped2025`` -> ``ped2024``). Already resolved values stay.
        """
        from brainseg_tf import models as model_registry  # light: models import keras only

        data, pipeline, validation = self.data, self.pipeline, self.validation
        if data.modalities is None and self.model.name in model_registry.available():
            data = dataclasses.replace(data, modalities=list(self.model_spec.default_modalities))
        if isinstance(pipeline.region, str):
            pipeline = dataclasses.replace(pipeline, region=pipeline.region.lower())
        if validation.overlap is None:
            validation = dataclasses.replace(validation, overlap=0.25 if validation.mode == "volumes" else 0.5)
        if isinstance(data.scheme, str) and _known_scheme(data.scheme):
            data = dataclasses.replace(data, scheme=get_scheme(data.scheme).name)
        return dataclasses.replace(self, data=data, pipeline=pipeline, validation=validation)

    def validate(self) -> None:
        """Check every value and the rules across sections of a :meth:`resolved` recipe (nothing changes).

        Raises:
            ValueError: naming the key path and the value.
        """
        for check in _CHECKS:
            check(self)

    # -- derived properties (asked of the model registry) ----------------------------------
    @property
    def model_spec(self):
        """The :class:`~brainseg_tf.models.ModelSpec` of ``model.name``."""
        from brainseg_tf import models as model_registry

        return model_registry.get_spec(self.model.name)

    @property
    def scheme_known(self) -> bool:
        """Whether the label scheme is settled: stated (``data.scheme``) or detected from the data."""
        return self.data.scheme is not None or self.detected_scheme is not None

    @property
    def scheme(self) -> LabelScheme:
        """The label scheme: ``data.scheme``, else the one detected from the data, else ``brats2021``."""
        return get_scheme(self.data.scheme or self.detected_scheme or DEFAULT_SCHEME)

    @property
    def head(self) -> str:
        """``"softmax"`` (the scheme's classes), ``"sigmoid"`` (its regions) or ``"region"`` (one region)."""
        return self.model_spec.head(self.model.options, self.scheme)

    @property
    def activation(self) -> str:
        """The output activation the losses and metrics apply: ``"softmax"`` or ``"sigmoid"``."""
        return "softmax" if self.head == "softmax" else "sigmoid"

    @property
    def out_channels(self) -> int:
        """Output channels of the model: the scheme's classes (softmax; 4 by default), its regions
        (sigmoid; 3 by default), or 1 region."""
        return self.model_spec.out_channels(self.model.options, self.scheme)

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


# -- checks, one per section, in the order :meth:`TrainConfig.validate` runs them ---------------
def _check_name(cfg: TrainConfig) -> None:
    name = cfg.name
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(
            f"name={name!r} must be a plain name (no path separators, not starting with '.'): the "
            "default run directory is runs/<name>"
        )


def _check_model(cfg: TrainConfig) -> None:
    from brainseg_tf import models as model_registry  # light: models import keras only

    m = cfg.model
    check_choice("model.name", m.name, model_registry.available())
    accepted = cfg.model_spec.defaults
    unknown = sorted(set(m.options) - set(accepted))
    if unknown:
        raise ValueError(f"model.options={unknown!r} unknown option(s) for {m.name!r}; accepted: {sorted(accepted)}")


def _check_data(cfg: TrainConfig) -> None:
    d = cfg.data
    if not d.modalities:
        raise ValueError(f"data.modalities={d.modalities!r} must name at least one modality")
    for i, modality in enumerate(d.modalities):
        check_choice(f"data.modalities[{i}]", modality, MODALITIES)
    if len(set(d.modalities)) != len(d.modalities):
        raise ValueError(f"data.modalities={d.modalities!r} has duplicates")
    check_int("data.max_cases", d.max_cases, allow_none=True)
    check_choice("data.cache_dtype", d.cache_dtype, ("float32", "float16"))
    if d.scheme is not None and not _known_scheme(d.scheme):
        raise ValueError(f"data.scheme={d.scheme!r} is unknown; expected one of {list(SCHEMES)} or null (detected)")
    if d.channel_order is not None and sorted(str(c) for c in d.channel_order) != sorted(MODALITIES):
        raise ValueError(f"data.channel_order={d.channel_order!r} must be a permutation of {list(MODALITIES)}")
    if d.build_cache and (d.cache is None or d.root is None):
        raise ValueError("data.build_cache=True needs both data.cache and data.root")
    if d.synthetic is not None and d.root is None:
        raise ValueError(f"data.synthetic={d.synthetic!r} needs data.root (where the synthetic cases are written)")
    unknown = sorted(set(d.synthetic or {}) - set(SYNTHETIC_KEYS))
    if unknown:
        raise ValueError(f"data.synthetic={unknown!r} unknown key(s); expected {sorted(SYNTHETIC_KEYS)}")


def _check_split(cfg: TrainConfig) -> None:
    s = cfg.split
    check_choice("split.method", s.method, SPLIT_METHODS)
    if s.method == "kfold":
        check_int("split.folds", s.folds, 2)
        check_int("split.fold", s.fold, 0, s.folds - 1)
    if s.method == "fixed" and not s.val_ids:
        raise ValueError(f"split.val_ids={s.val_ids!r} must list validation case ids for split.method='fixed'")
    overlap = sorted(set(s.train_ids or ()) & set(s.val_ids)) if s.method == "fixed" else []
    if overlap:
        raise ValueError(f"split.train_ids={overlap!r} overlap split.val_ids")


def _check_pipeline(cfg: TrainConfig) -> None:
    p = cfg.pipeline
    check_choice("pipeline.kind", p.kind, PIPELINES)
    if p.kind == "custom" and not p.builder:
        raise ValueError(f"pipeline.builder={p.builder!r} is required for pipeline.kind='custom' ('module:function')")
    if p.builder is not None and ":" not in p.builder:
        raise ValueError(f"pipeline.builder={p.builder!r} must look like 'module:function' or 'file.py:function'")
    check_int_sequence("pipeline.patch_size", p.patch_size, length=cfg.spatial_dims)
    check_int("pipeline.batch_size", p.batch_size)
    check_number("pipeline.foreground_fraction", p.foreground_fraction, 0, 1)
    if isinstance(p.augment, str):
        check_choice("pipeline.augment", p.augment, AUGMENT_PRESETS)
    if p.region is not None:
        if cfg.scheme_known:
            regions = cfg.scheme.region_names
        else:  # any scheme's region until the data shows its scheme (then checked again)
            regions = tuple(dict.fromkeys(r for s in SCHEMES.values() for r in s.region_names))
        check_choice("pipeline.region", p.region, tuple(r.lower() for r in regions))


def _check_head(cfg: TrainConfig) -> None:
    """The model's head, its channels, the region and the input channels agree."""
    head, out_channels, region = cfg.head, cfg.out_channels, cfg.pipeline.region
    if head == "region" and region is None:
        raise ValueError("pipeline.region=None must name the region (wt, tc, et) of a 1-channel sigmoid model")
    if region is not None and head != "region":
        raise ValueError(f"pipeline.region={region!r} is only for 1-channel sigmoid models")
    scheme = cfg.scheme
    if not cfg.scheme_known and cfg.model.options.get("out_channels") is not None:
        # a stated channel count that fits some scheme waits for the data's scheme (checked again then)
        fits = {len(s.regions) if head == "sigmoid" else s.n_classes for s in SCHEMES.values()}
        if out_channels in fits:
            return _check_in_channels(cfg)
    regions = scheme.region_names
    if head == "sigmoid" and out_channels != len(regions):
        raise ValueError(
            f"model.options.out_channels={out_channels!r} a sigmoid head needs {len(regions)} ({', '.join(regions)}) "
            f"or 1 channel (one region)" + ("" if scheme.name == DEFAULT_SCHEME else f" for the {scheme.name!r} scheme")
        )
    if head == "softmax" and out_channels != scheme.n_classes:
        if scheme.is_canonical:
            raise ValueError(
                f"model.options.out_channels={out_channels!r} a softmax head needs the 4 canonical classes"
            )
        raise ValueError(
            f"model.options.out_channels={out_channels!r} a softmax head needs the {scheme.n_classes} classes of "
            f"the {scheme.name!r} scheme ({', '.join(scheme.class_names)})"
        )
    _check_in_channels(cfg)


def _check_in_channels(cfg: TrainConfig) -> None:
    n_modalities = len(cfg.data.modalities)
    in_channels = cfg.model.options.get("in_channels", n_modalities)
    if in_channels != n_modalities:
        raise ValueError(f"model.options.in_channels={in_channels!r} must equal len(data.modalities)={n_modalities}")


def _known_scheme(name: str) -> bool:
    try:
        get_scheme(name)
    except ValueError:
        return False
    return True


def _check_validation(cfg: TrainConfig) -> None:
    v = cfg.validation
    check_choice("validation.mode", v.mode, VALIDATION_MODES)
    check_int("validation.patches_per_case", v.patches_per_case)
    check_number("validation.foreground_fraction", v.foreground_fraction, 0, 1)
    check_fraction("validation.overlap", v.overlap)
    check_int("validation.every_epochs", v.every_epochs)
    check_choice("validation.window", v.window, ("patch", "auto"))
    if v.postprocessing_records is not None and (
        not isinstance(v.postprocessing_records, str) or not v.postprocessing_records
    ):
        raise ValueError(
            f"validation.postprocessing_records={v.postprocessing_records!r} must be the folder of brainseg cv's "
            "fold records (a path string) or null"
        )
    check_int("validation.max_window_voxels", v.max_window_voxels)
    if v.min_window is not None:
        check_int_sequence("validation.min_window", v.min_window, length=cfg.spatial_dims)
    if v.window == "auto" and cfg.spatial_dims != 3:
        raise ValueError("validation.window='auto' plans 3D windows; a 2D model slides its patch")
    if v.window == "auto" and any(s is not None for s in cfg.model_spec.required_size(cfg.model.options)):
        raise ValueError(f"validation.window='auto' plans window sizes; {cfg.model.name!r} needs a fixed input size")
    if v.mode == "volumes" and (cfg.pipeline.kind == "custom" or cfg.data.root is None):
        raise ValueError(
            "validation.mode='volumes' needs the raw cases (data.root) and a built-in pipeline "
            "(whole cases are predicted as brainseg predict does)"
        )


def _check_loss(cfg: TrainConfig) -> None:
    name = cfg.loss.name
    check_choice("loss.name", name, LOSSES)
    if name in ("dice_ce", "ce") and cfg.head != "softmax":
        raise ValueError(f"loss.name={name!r} needs a softmax head")
    if name in ("region_dice_bce", "bce") and cfg.activation != "sigmoid":
        raise ValueError(f"loss.name={name!r} needs a sigmoid head")
    check_number("loss.deep_supervision_decay", cfg.loss.deep_supervision_decay, 0, 1, min_inclusive=False)


def _check_optimizer(cfg: TrainConfig) -> None:
    o = cfg.optimizer
    check_choice("optimizer.name", o.name, OPTIMIZERS)
    check_number("optimizer.learning_rate", o.learning_rate, 0, min_inclusive=False)
    check_number("optimizer.epsilon", o.epsilon, 0, min_inclusive=False)
    check_number("optimizer.weight_decay", o.weight_decay, 0)
    check_number("optimizer.momentum", o.momentum, 0)
    if o.clipnorm is not None:
        check_number("optimizer.clipnorm", o.clipnorm, 0, min_inclusive=False)


def _check_training(cfg: TrainConfig) -> None:
    t = cfg.training
    check_int("training.epochs", t.epochs)
    check_int("training.steps_per_epoch", t.steps_per_epoch)
    if t.all_folds and cfg.split.method != "kfold":
        raise ValueError(f"training.all_folds=True needs split.method='kfold' (got {cfg.split.method!r})")
    check_int("training.checkpoint_every_steps", t.checkpoint_every_steps, 0)  # 0: only at epoch ends
    check_choice("training.verbose", t.verbose, ("auto", 0, 1, 2))
    if t.max_minutes is not None:
        check_number("training.max_minutes", t.max_minutes, 0, min_inclusive=False)


def _check_schedule(cfg: TrainConfig) -> None:
    sc, t = cfg.schedule, cfg.training
    check_choice("schedule.name", sc.name, SCHEDULES)
    check_int("schedule.warmup_steps", sc.warmup_steps, 0)
    if sc.name == "plateau" and sc.warmup_steps:
        raise ValueError(f"schedule.warmup_steps={sc.warmup_steps!r} is not supported with schedule.name='plateau'")
    if sc.warmup_steps and sc.warmup_steps >= t.epochs * t.steps_per_epoch:
        raise ValueError(f"schedule.warmup_steps={sc.warmup_steps!r} must be below epochs × steps_per_epoch")
    check_number("schedule.warmup_start", sc.warmup_start, 0, 1)
    check_number("schedule.power", sc.power, 0, min_inclusive=False)
    check_number("schedule.min_lr", sc.min_lr, 0, cfg.optimizer.learning_rate)
    check_number("schedule.factor", sc.factor, 0, 1, min_inclusive=False, max_inclusive=False)
    check_int("schedule.patience", sc.patience, 0)


def _check_runtime(cfg: TrainConfig) -> None:
    r = cfg.runtime
    check_choice("runtime.strategy", r.strategy, STRATEGIES)
    check_choice("runtime.mixed_precision", r.mixed_precision, PRECISIONS)
    check_choice("runtime.xla", r.xla, ("auto", True, False))
    check_choice("runtime.communication", r.communication, COMMUNICATIONS)


_CHECKS = (
    _check_name,
    _check_model,
    _check_data,
    _check_split,
    _check_pipeline,
    _check_head,
    _check_validation,
    _check_loss,
    _check_optimizer,
    _check_training,
    _check_schedule,
    _check_runtime,
)


def _is_comment(key: str) -> bool:
    return key.startswith("$") or key.startswith("_comment") or key == "_"


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (JSON types only) and convert lists."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            fields = [f.name for f in dataclasses.fields(tp)]
            raise ValueError(f"{path}={value!r} must be an object with keys {fields}")
        return _from_dict(tp, value, path + ".")
    if origin is Union or origin is types.UnionType:
        return _coerce_union(get_args(tp), value, path)
    if origin in (list, Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}={value!r} must be a list")
        (item,) = get_args(tp) or (Any,)
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}={value!r} must be an object")
        return {k: v for k, v in value.items() if not _is_comment(k)}
    if tp is bool:
        return check_bool(path, value)
    if tp is int:
        return int(check_int(path, value, None))
    if tp is float:
        return float(check_number(path, value))
    if tp is str and not isinstance(value, str):
        raise ValueError(f"{path}={value!r} must be a string")
    return value


def _coerce_union(args: tuple[Any, ...], value: Any, path: str) -> Any:
    """The first member type of an ``X | Y | None`` annotation that accepts ``value``."""
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
    raise ValueError(f"{path}={value!r} has the wrong type (expected {names})")


def _from_dict(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{prefix.rstrip('.') or 'config'}={data!r} must be an object")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("source", "detected_scheme")}
    kwargs = {}
    for key, value in data.items():
        if _is_comment(key):
            continue
        if key not in fields:
            raise ValueError(f"{prefix}{key} is an unknown key; expected one of {sorted(fields)}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def as_config(config_or_path: TrainConfig | str | os.PathLike | Mapping[str, Any]) -> TrainConfig:
    """A resolved, validated :class:`TrainConfig` from a config, a recipe mapping or a recipe file."""
    if isinstance(config_or_path, TrainConfig):
        cfg = config_or_path.resolved()
        cfg.validate()
        return cfg
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
