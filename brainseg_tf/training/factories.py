"""Factories: the optimizer, loss, metrics, monitored metric and model of a recipe, and its compile."""

from __future__ import annotations

from typing import Any

from brainseg_tf.schemes import own_scheme
from brainseg_tf.training.config import TrainConfig


def build_optimizer(cfg: TrainConfig):
    """The Keras optimizer (with its learning-rate schedule) for a recipe."""
    import keras

    from brainseg_tf.training.schedules import WarmupSchedule

    o, s, t = cfg.optimizer, cfg.schedule, cfg.training
    if s.name == "plateau":
        lr: Any = o.learning_rate
    else:
        decay = "constant" if s.name == "constant" else s.name
        lr = WarmupSchedule(
            peak=o.learning_rate,
            total_steps=t.epochs * t.steps_per_epoch,
            warmup_steps=s.warmup_steps,
            warmup_start=s.warmup_start,
            decay=decay,
            power=s.power,
            min_lr=s.min_lr,
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
    return "dice_ce" if cfg.activation == "softmax" else "region_dice_bce"


def scheme_option(cfg: TrainConfig) -> str | None:
    """The ``scheme=`` the losses and metrics get: the recipe's scheme name, or ``None`` for a glioma
    scheme (their canonical labels and regions are the losses' and metrics' defaults)."""
    scheme = own_scheme(cfg.scheme)
    return None if scheme is None else scheme.name


def build_loss(cfg: TrainConfig):
    """The registered :mod:`brainseg_tf.losses` loss for a recipe (``head``/``from_logits`` from the
    model; a sigmoid head's integer targets become the regions of the recipe's scheme)."""
    import keras

    from brainseg_tf import losses

    name, opts, head, logits = resolved_loss_name(cfg), dict(cfg.loss.options), cfg.activation, cfg.logits
    scheme = scheme_option(cfg)
    regions = {"scheme": scheme} if scheme is not None else {}
    try:
        if name == "dice_ce":
            return losses.DiceCELoss(from_logits=logits, **opts)
        if name == "region_dice_bce":
            return losses.RegionDiceBCELoss(from_logits=logits, **regions, **opts)
        if name == "dice":
            return losses.DiceLoss(head=head, from_logits=logits, **regions, **opts)
        if name == "ce":
            return losses.WeightedCategoricalCrossentropy(from_logits=logits, **opts)
        if name == "bce":
            return keras.losses.BinaryCrossentropy(from_logits=logits, **opts)
        if name == "focal":
            return losses.FocalLoss(head=head, from_logits=logits, **regions, **opts)
        return losses.TverskyLoss(head=head, from_logits=logits, **regions, **opts)
    except TypeError as exc:
        raise ValueError(f"loss.options={opts!r} not accepted by loss {name!r}: {exc}") from None


def build_metrics(cfg: TrainConfig) -> list:
    """Epoch Dice metrics: per class/region of the recipe's scheme plus ``mean_region_dice`` (or
    ``dice_<region>``); names from the scheme's classes and regions (``dice_wt``, ``dice_cc``...)."""
    from brainseg_tf import metrics

    if cfg.out_channels == 1:
        return [
            metrics.Dice(
                ids=(0,), target="region", head="sigmoid", from_logits=cfg.logits, name=f"dice_{cfg.pipeline.region}"
            )
        ]
    standard = metrics.standard_metrics(cfg.activation, from_logits=cfg.logits, scheme=scheme_option(cfg))
    return [m for m in standard if m.statistic == "dice"]


def compile_model(model: Any, cfg: TrainConfig, *, xla: bool = False) -> None:
    """Compile ``model`` with the recipe's optimizer, loss and metrics (training and the planner).

    A deep-supervision model (several outputs, full resolution first) gets one loss per output,
    weighted by :func:`~brainseg_tf.losses.deep_supervision_weights`, and the metrics on its first
    output only.
    """
    n_outputs = len(model.outputs)
    if n_outputs > 1:
        from brainseg_tf.losses import deep_supervision_weights

        kwargs: dict[str, Any] = dict(
            loss=[build_loss(cfg) for _ in range(n_outputs)],
            loss_weights=deep_supervision_weights(n_outputs, decay=cfg.loss.deep_supervision_decay),
            metrics=[build_metrics(cfg)] + [[] for _ in range(n_outputs - 1)],
        )
    else:
        kwargs = dict(loss=build_loss(cfg), metrics=build_metrics(cfg))
    model.compile(optimizer=build_optimizer(cfg), jit_compile=xla, **kwargs)


def monitor_name(cfg: TrainConfig, has_validation: bool) -> str:
    """The metric ``best.keras`` is selected on (mode max)."""
    if cfg.training.monitor != "auto":
        return cfg.training.monitor
    if cfg.validation.mode == "volumes" and has_validation:
        return "val_volume_mean_dice"
    base = f"dice_{cfg.pipeline.region}" if cfg.out_channels == 1 else "mean_region_dice"
    return f"val_{base}" if has_validation else base


def build_model(cfg: TrainConfig):
    """Build the recipe's model (``in_channels`` and ``input_shape`` filled from the recipe).

    A model with an ``input_shape`` option is built for the training patch (the sliding window's
    roi), or for any size (``None`` per axis) when the volume validation plans its windows
    (``validation.window: "auto"``). An unstated ``out_channels`` follows the recipe's label
    scheme (:attr:`TrainConfig.out_channels`: its regions for a sigmoid head, its classes for softmax).
    """
    spec = cfg.model_spec
    opts = dict(cfg.model.options)
    defaults = spec.defaults
    if "out_channels" in defaults and cfg.out_channels != spec.out_channels(opts):
        opts.setdefault("out_channels", cfg.out_channels)
    if "in_channels" in defaults:
        opts.setdefault("in_channels", len(cfg.data.modalities))
    if "input_shape" in defaults:  # validation windows are patch-sized too, unless planned
        free = cfg.validation.window == "auto"
        opts.setdefault("input_shape", [None] * cfg.spatial_dims if free else list(cfg.pipeline.patch_size))
    return spec.builder(**opts)
