"""Segmentation losses for softmax-class and sigmoid-region heads (Keras 3).

Every loss is a pure ``keras.ops`` function plus a thin class registered under the package name
``brainseg_tf``, so a ``.keras`` file compiled with any of them reloads without ``custom_objects``
once ``brainseg_tf.losses`` has been imported.

Tensor conventions (channels-last, any number of spatial axes, 2D or 3D):

- ``y_pred``: ``(B, *spatial, C)`` probabilities, or logits when ``from_logits=True``.
- ``y_true`` for a **softmax** head (``C`` classes, canonical labels 0 BG, 1 NCR, 2 ED, 3 ET):
  integer labels ``(B, *spatial)`` or ``(B, *spatial, 1)``, or a one-hot ``(B, *spatial, C)``.
- ``y_true`` for a **sigmoid** head: binary masks ``(B, *spatial, C)``; or integer labels
  ``(B, *spatial)`` / ``(B, *spatial, 1)`` converted to the region channels of the label scheme
  (``scheme``, :mod:`brainseg_tf.schemes`; ``C`` must be its number of regions): by default
  canonical labels to (WT, TC, ET) = ({1,2,3}, {1,3}, {3}); e.g. ``scheme="ped2024"`` turns its
  internal labels (1 NET, 2 ED, 3 ET, 4 CC) into its 6 regions (WT, TC, ET, NET, CC, ED).
  Softmax heads need no scheme: ``C`` is the number of classes (``scheme.n_classes``).

All sums run in float32, whatever the compute dtype (float16/bfloat16 under mixed precision).

Dice choices (see ``docs/evaluation.md``): ``include_background`` (softmax only), ``batch``
(pool the batch before dividing, nnU-Net's ``batch_dice``) vs per-sample Dice, smoothing in the
numerator ``smooth_nr`` and denominator ``smooth_dr`` (defaults 1e-5 each, as MONAI: a class
empty in both truth and prediction has Dice 1, loss 0), plain or squared denominators.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from brainseg_tf.conventions import OUTPUT_ACTIVATIONS
from brainseg_tf.schemes import LabelScheme, get_scheme, own_scheme

__all__ = [
    "prepare_targets",
    "labels_to_regions",
    "weighted_categorical_crossentropy",
    "soft_dice",
    "soft_dice_loss",
    "tversky_loss",
    "focal_loss",
    "binary_crossentropy",
    "WeightedCategoricalCrossentropy",
    "DiceLoss",
    "DiceCELoss",
    "RegionDiceBCELoss",
    "FocalLoss",
    "TverskyLoss",
    "deep_supervision_weights",
]

_PACKAGE = "brainseg_tf"
_HEADS = OUTPUT_ACTIVATIONS
_EPS = 1e-7


def _check_head(head: str) -> str:
    if head not in _HEADS:
        raise ValueError(f"head must be one of {_HEADS}, got head={head!r}")
    return head


def labels_to_regions(labels, scheme: str | LabelScheme | None = None):
    """Integer labels -> float32 region masks in the scheme's channel order.

    Args:
        labels: integer tensor ``(B, *spatial)``: canonical labels 0 BG, 1 NCR, 2 ED, 3 ET, or the
            internal labels of ``scheme``.
        scheme: a label scheme (name or :class:`~brainseg_tf.schemes.LabelScheme`); ``None``
            (default) or any glioma scheme: the canonical regions.

    Returns:
        float32 tensor ``(B, *spatial, R)``: by default ``R = 3``, WT = {1,2,3}, TC = {1,3}, ET = {3};
        else row ``label`` of ``scheme.region_table()``.
    """
    labels = ops.cast(labels, "int32")
    s = own_scheme(scheme)
    if s is not None:
        return ops.take(ops.convert_to_tensor(s.region_table(), dtype="float32"), labels, axis=0)
    wt = ops.logical_and(labels >= 1, labels <= 3)
    tc = ops.logical_or(ops.equal(labels, 1), ops.equal(labels, 3))
    et = ops.equal(labels, 3)
    return ops.cast(ops.stack([wt, tc, et], axis=-1), "float32")


def prepare_targets(
    y_true, y_pred, head: str = "softmax", from_logits: bool = False, scheme: str | LabelScheme | None = None
):
    """Bring ``y_true`` and ``y_pred`` to float32 tensors of the same shape ``(B, *spatial, C)``.

    Args:
        y_true: labels or one-hot / binary masks, see the module docstring.
        y_pred: ``(B, *spatial, C)`` probabilities or logits.
        head: ``"softmax"`` (mutually exclusive classes) or ``"sigmoid"`` (independent channels,
            e.g. the regions WT, TC, ET).
        from_logits: apply softmax / sigmoid to ``y_pred`` first.
        scheme: label scheme of integer ``y_true`` for a sigmoid head (default: canonical, WT/TC/ET).

    Returns:
        ``(target, probability)``, both float32 ``(B, *spatial, C)``.

    Raises:
        ValueError: unknown head, or a sparse target for a sigmoid head whose ``C`` is not the
            scheme's number of regions (3 by default).
    """
    _check_head(head)
    y_pred = ops.cast(y_pred, "float32")
    if from_logits:
        y_pred = ops.softmax(y_pred, axis=-1) if head == "softmax" else ops.sigmoid(y_pred)
    channels = y_pred.shape[-1]
    rank_pred = len(y_pred.shape)
    rank_true = len(y_true.shape)
    dense = rank_true == rank_pred and y_true.shape[-1] == channels and channels != 1
    if channels == 1 and rank_true == rank_pred:
        dense = True
    if dense:
        return ops.cast(y_true, "float32"), y_pred
    if rank_true == rank_pred:  # sparse labels with a trailing channel of 1
        y_true = ops.squeeze(y_true, axis=-1)
    if head == "softmax":
        target = ops.one_hot(ops.cast(y_true, "int32"), channels, dtype="float32")
    else:
        s = own_scheme(scheme)
        names = ("WT", "TC", "ET") if s is None else s.region_names
        if channels != len(names):
            raise ValueError(
                f"a sigmoid head given integer labels must have {len(names)} region channels ({', '.join(names)}); "
                f"got y_pred with {channels} channels"
            )
        target = labels_to_regions(y_true, s)
    return target, y_pred


def _reduce_axes(rank: int, batch: bool) -> list[int]:
    first = 0 if batch else 1
    return list(range(first, rank - 1))


def _select_channels(x, include_background: bool, head: str):
    if head == "softmax" and not include_background:
        return x[..., 1:]
    return x


def weighted_categorical_crossentropy(
    y_true, y_pred, class_weights: Sequence[float] | None = None, from_logits: bool = False
):
    """Voxel-wise categorical cross-entropy with optional per-class weights.

    ``loss = mean_voxels( -sum_c w_c * t_c * log p_c )``: each voxel is weighted by the weight of
    its true class; the mean is over voxels (not normalised by the sum of weights).

    Args:
        y_true: integer labels ``(B, *spatial)`` / ``(B, *spatial, 1)`` or one-hot ``(B, *spatial, C)``.
        y_pred: ``(B, *spatial, C)`` probabilities or logits.
        class_weights: ``C`` weights, or ``None`` for 1 each.
        from_logits: ``y_pred`` are logits (uses a stable log-softmax).

    Returns:
        float32 ``(B,)`` per-sample losses.
    """
    target, _ = prepare_targets(y_true, y_pred, "softmax", from_logits=False)
    logits_or_probs = ops.cast(y_pred, "float32")
    if from_logits:
        log_p = ops.log_softmax(logits_or_probs, axis=-1)
    else:
        log_p = ops.log(ops.clip(logits_or_probs, _EPS, 1.0))
    per_class = -target * log_p
    if class_weights is not None:
        weights = ops.convert_to_tensor(list(class_weights), dtype="float32")
        per_class = per_class * weights
    voxel = ops.sum(per_class, axis=-1)
    return ops.mean(voxel, axis=list(range(1, len(voxel.shape))))


def binary_crossentropy(y_true, y_pred, from_logits: bool = False, scheme: str | LabelScheme | None = None):
    """Voxel- and channel-wise binary cross-entropy for sigmoid heads.

    Args:
        y_true: binary masks ``(B, *spatial, C)`` or integer labels of ``scheme`` (``C`` = its regions).
        y_pred: ``(B, *spatial, C)`` probabilities or logits.
        from_logits: ``y_pred`` are logits (uses the stable ``max(x,0) - x t + log1p(exp(-|x|))``).
        scheme: label scheme of integer ``y_true`` (default: canonical labels, WT/TC/ET).

    Returns:
        float32 ``(B,)``: mean over voxels and channels.
    """
    target, prob = prepare_targets(y_true, y_pred, "sigmoid", from_logits=False, scheme=scheme)
    if from_logits:
        x = prob  # still the logits: prepare_targets was told not to activate
        bce = ops.relu(x) - x * target + ops.log1p(ops.exp(-ops.abs(x)))
    else:
        p = ops.clip(prob, _EPS, 1.0 - _EPS)
        bce = -(target * ops.log(p) + (1.0 - target) * ops.log(1.0 - p))
    return ops.mean(bce, axis=list(range(1, len(bce.shape))))


def soft_dice(
    target,
    prob,
    *,
    batch: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    squared: bool = False,
):
    """Soft Dice per class from prepared float32 tensors.

    ``dice_c = (2 * sum(t * p) + smooth_nr) / (sum(t) + sum(p) + smooth_dr)`` (``t**2``, ``p**2``
    in the denominator when ``squared``), sums over the spatial axes (and the batch when ``batch``).

    Args:
        target: float32 ``(B, *spatial, C)``.
        prob: float32 ``(B, *spatial, C)``.
        batch: pool the batch before dividing; otherwise one Dice per sample.
        smooth_nr: numerator smoothing. Defaults to 1e-5.
        smooth_dr: denominator smoothing. Defaults to 1e-5.
        squared: squared terms in the denominator (V-Net / seed dResU-Net style).

    Returns:
        ``(B, C)`` per-sample Dice, or ``(C,)`` when ``batch``.
    """
    axes = _reduce_axes(len(prob.shape), batch)
    intersection = ops.sum(target * prob, axis=axes)
    if squared:
        denominator = ops.sum(target * target, axis=axes) + ops.sum(prob * prob, axis=axes)
    else:
        denominator = ops.sum(target, axis=axes) + ops.sum(prob, axis=axes)
    return (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)


def soft_dice_loss(
    y_true,
    y_pred,
    *,
    head: str = "softmax",
    from_logits: bool = False,
    include_background: bool = False,
    batch: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    squared: bool = False,
    scheme: str | LabelScheme | None = None,
):
    """``1 - mean_c soft Dice``; see :func:`soft_dice` for the choices (``scheme``: see :func:`prepare_targets`).

    Returns:
        float32 ``(B,)`` per-sample losses (the batch-pooled value repeated when ``batch``).
    """
    target, prob = prepare_targets(y_true, y_pred, head, from_logits, scheme)
    target = _select_channels(target, include_background, head)
    prob = _select_channels(prob, include_background, head)
    dice = soft_dice(target, prob, batch=batch, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared)
    loss = 1.0 - ops.mean(dice, axis=-1)
    if batch:
        return loss * ops.ones((ops.shape(prob)[0],), dtype="float32")
    return loss


def tversky_loss(
    y_true,
    y_pred,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    head: str = "softmax",
    from_logits: bool = False,
    include_background: bool = False,
    batch: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    scheme: str | LabelScheme | None = None,
):
    """``1 - mean_c TI_c`` with the Tversky index ``TI = TP / (TP + alpha FP + beta FN)`` (soft).

    ``alpha = beta = 0.5`` gives the soft Dice loss. Defaults (0.3, 0.7) favour recall
    (Salehi et al., MLMI 2017). ``scheme``: see :func:`prepare_targets`.

    Returns:
        float32 ``(B,)`` per-sample losses.
    """
    target, prob = prepare_targets(y_true, y_pred, head, from_logits, scheme)
    target = _select_channels(target, include_background, head)
    prob = _select_channels(prob, include_background, head)
    axes = _reduce_axes(len(prob.shape), batch)
    tp = ops.sum(target * prob, axis=axes)
    fp = ops.sum((1.0 - target) * prob, axis=axes)
    fn = ops.sum(target * (1.0 - prob), axis=axes)
    index = (tp + smooth_nr) / (tp + alpha * fp + beta * fn + smooth_dr)
    loss = 1.0 - ops.mean(index, axis=-1)
    if batch:
        return loss * ops.ones((ops.shape(prob)[0],), dtype="float32")
    return loss


def focal_loss(
    y_true,
    y_pred,
    *,
    gamma: float = 2.0,
    alpha: Sequence[float] | float | None = None,
    head: str = "softmax",
    from_logits: bool = False,
    scheme: str | LabelScheme | None = None,
):
    """Focal loss (Lin et al., ICCV 2017), mean over voxels (and channels for sigmoid heads).

    Softmax: ``-sum_c alpha_c t_c (1 - p_c)^gamma log p_c``. Sigmoid (per channel):
    ``-alpha_t (1 - p_t)^gamma log p_t`` with ``p_t = p`` where ``t = 1`` else ``1 - p`` and
    ``alpha_t = alpha`` / ``1 - alpha``. ``gamma = 0`` and ``alpha = None`` give plain CE / BCE.

    Args:
        alpha: softmax: per-class weights (sequence of ``C``) or ``None``; sigmoid: a float in
            [0, 1] or ``None``.
        scheme: label scheme of integer ``y_true`` for a sigmoid head (see :func:`prepare_targets`).

    Returns:
        float32 ``(B,)`` per-sample losses.
    """
    target, prob = prepare_targets(y_true, y_pred, head, from_logits, scheme)
    if head == "softmax":
        if from_logits:
            log_p = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        else:
            log_p = ops.log(ops.clip(prob, _EPS, 1.0))
        term = -target * ops.power(1.0 - prob, gamma) * log_p
        if alpha is not None:
            term = term * ops.convert_to_tensor(list(alpha), dtype="float32")
        voxel = ops.sum(term, axis=-1)
    else:
        p_t = ops.clip(target * prob + (1.0 - target) * (1.0 - prob), _EPS, 1.0)
        voxel = -ops.power(1.0 - p_t, gamma) * ops.log(p_t)
        if alpha is not None:
            voxel = voxel * (target * alpha + (1.0 - target) * (1.0 - alpha))
    return ops.mean(voxel, axis=list(range(1, len(voxel.shape))))


# --------------------------------------------------------------------------------------------
# Registered classes
# --------------------------------------------------------------------------------------------


class _BrainsegLoss(keras.losses.Loss):
    """Base: stores options, validates ``head``, returns them from ``get_config``."""

    def __init__(self, name: str, reduction: str = "sum_over_batch_size", dtype=None, **options):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if "head" in options:
            _check_head(options["head"])
        for key in ("smooth_nr", "smooth_dr"):
            if key in options and options[key] < 0:
                raise ValueError(f"{key} must be >= 0, got {key}={options[key]!r}")
        if "scheme" in options:  # kept (and serialised) only where stated: older configs stay as they were
            if options["scheme"] is None:
                del options["scheme"]
            else:
                options["scheme"] = get_scheme(options["scheme"]).name
        self._options = options

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in self._options.items()})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedCategoricalCrossentropy(_BrainsegLoss):
    """Categorical cross-entropy with optional per-class weights (softmax heads).

    Args:
        class_weights: one weight per class, e.g. ``(0.1, 1.0, 1.0, 1.0)``; ``None`` for none.
        from_logits: ``y_pred`` are logits. Defaults to `False`.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        from_logits: bool = False,
        name: str = "weighted_categorical_crossentropy",
        **kwargs,
    ):
        class_weights = None if class_weights is None else [float(w) for w in class_weights]
        super().__init__(name=name, class_weights=class_weights, from_logits=from_logits, **kwargs)

    def call(self, y_true, y_pred):
        return weighted_categorical_crossentropy(y_true, y_pred, **self._options)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceLoss(_BrainsegLoss):
    """Soft Dice loss ``1 - mean_c Dice_c``.

    Args:
        head: ``"softmax"`` or ``"sigmoid"``. Defaults to `"softmax"`.
        from_logits: apply softmax/sigmoid first. Defaults to `False`.
        include_background: keep channel 0 of a softmax head. Defaults to `False`.
        batch: one Dice over the whole batch (nnU-Net ``batch_dice``) instead of per sample.
            Defaults to `False`.
        smooth_nr: numerator smoothing. Defaults to 1e-5.
        smooth_dr: denominator smoothing. Defaults to 1e-5 (both empty -> Dice 1, loss 0).
        squared: squared denominator terms. Defaults to `False`.
        scheme: label scheme of integer targets for a sigmoid head (its regions are the
            channels); `None`: canonical labels, (WT, TC, ET).
    """

    def __init__(
        self,
        head: str = "softmax",
        from_logits: bool = False,
        include_background: bool = False,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        squared: bool = False,
        name: str = "dice_loss",
        scheme: str | None = None,
        **kwargs,
    ):
        super().__init__(
            name=name,
            head=head,
            from_logits=from_logits,
            include_background=include_background,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            squared=squared,
            scheme=scheme,
            **kwargs,
        )

    def call(self, y_true, y_pred):
        return soft_dice_loss(y_true, y_pred, **self._options)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceCELoss(_BrainsegLoss):
    """``lambda_dice * DiceLoss + lambda_ce * (weighted) categorical CE`` for softmax heads.

    Args:
        lambda_dice: weight of the Dice term. Defaults to 1.
        lambda_ce: weight of the cross-entropy term. Defaults to 1.
        class_weights: per-class CE weights or ``None``.
        Other arguments as :class:`DiceLoss` (``head`` is always softmax).
    """

    def __init__(
        self,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        class_weights: Sequence[float] | None = None,
        from_logits: bool = False,
        include_background: bool = False,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        squared: bool = False,
        name: str = "dice_ce_loss",
        **kwargs,
    ):
        class_weights = None if class_weights is None else [float(w) for w in class_weights]
        super().__init__(
            name=name,
            lambda_dice=lambda_dice,
            lambda_ce=lambda_ce,
            class_weights=class_weights,
            from_logits=from_logits,
            include_background=include_background,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            squared=squared,
            **kwargs,
        )

    def call(self, y_true, y_pred):
        o = self._options
        dice = soft_dice_loss(
            y_true,
            y_pred,
            head="softmax",
            from_logits=o["from_logits"],
            include_background=o["include_background"],
            batch=o["batch"],
            smooth_nr=o["smooth_nr"],
            smooth_dr=o["smooth_dr"],
            squared=o["squared"],
        )
        ce = weighted_categorical_crossentropy(y_true, y_pred, o["class_weights"], o["from_logits"])
        return o["lambda_dice"] * dice + o["lambda_ce"] * ce


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RegionDiceBCELoss(_BrainsegLoss):
    """``lambda_dice * soft Dice + lambda_bce * BCE`` over sigmoid region channels (WT, TC, ET by default).

    ``y_true`` may be the region masks ``(B, *spatial, R)`` or integer labels (converted to the
    regions of ``scheme``: R = 3 canonical regions by default, 6 for ``ped2024``/``gli2024``).
    This is nnU-Net's region-based ``DC_and_BCE_loss`` (Isensee et al., BraTS 2020).

    Args:
        lambda_dice: weight of the Dice term. Defaults to 1.
        lambda_bce: weight of the BCE term. Defaults to 1.
        from_logits: ``y_pred`` are logits. Defaults to `True` (region heads usually end linear).
        batch, smooth_nr, smooth_dr, squared, scheme: as :class:`DiceLoss`.
    """

    def __init__(
        self,
        lambda_dice: float = 1.0,
        lambda_bce: float = 1.0,
        from_logits: bool = True,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        squared: bool = False,
        name: str = "region_dice_bce_loss",
        scheme: str | None = None,
        **kwargs,
    ):
        super().__init__(
            name=name,
            lambda_dice=lambda_dice,
            lambda_bce=lambda_bce,
            from_logits=from_logits,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            squared=squared,
            scheme=scheme,
            **kwargs,
        )

    def call(self, y_true, y_pred):
        o = self._options
        dice = soft_dice_loss(
            y_true,
            y_pred,
            head="sigmoid",
            from_logits=o["from_logits"],
            include_background=True,
            batch=o["batch"],
            smooth_nr=o["smooth_nr"],
            smooth_dr=o["smooth_dr"],
            squared=o["squared"],
            scheme=o.get("scheme"),
        )
        bce = binary_crossentropy(y_true, y_pred, from_logits=o["from_logits"], scheme=o.get("scheme"))
        return o["lambda_dice"] * dice + o["lambda_bce"] * bce


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FocalLoss(_BrainsegLoss):
    """Focal loss for softmax or sigmoid heads; see :func:`focal_loss`.

    Args:
        gamma: focusing parameter. Defaults to 2.
        alpha: class weights (softmax, sequence) or positive weight (sigmoid, float); `None`.
        head: ``"softmax"`` or ``"sigmoid"``. Defaults to `"softmax"`.
        from_logits: Defaults to `False`.
        scheme: as :class:`DiceLoss`.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Sequence[float] | float | None = None,
        head: str = "softmax",
        from_logits: bool = False,
        name: str = "focal_loss",
        scheme: str | None = None,
        **kwargs,
    ):
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got gamma={gamma!r}")
        if alpha is not None and not isinstance(alpha, (int, float)):
            alpha = [float(a) for a in alpha]
        if head == "sigmoid" and isinstance(alpha, list):
            raise ValueError(f"alpha must be a float for a sigmoid head, got alpha={alpha!r}")
        super().__init__(
            name=name, gamma=gamma, alpha=alpha, head=head, from_logits=from_logits, scheme=scheme, **kwargs
        )

    def call(self, y_true, y_pred):
        return focal_loss(y_true, y_pred, **self._options)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TverskyLoss(_BrainsegLoss):
    """Tversky loss; see :func:`tversky_loss`.

    Args:
        alpha: false-positive weight. Defaults to 0.3.
        beta: false-negative weight. Defaults to 0.7.
        head, from_logits, include_background, batch, smooth_nr, smooth_dr, scheme: as :class:`DiceLoss`.
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        head: str = "softmax",
        from_logits: bool = False,
        include_background: bool = False,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        name: str = "tversky_loss",
        scheme: str | None = None,
        **kwargs,
    ):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha!r}, beta={beta!r}")
        super().__init__(
            name=name,
            alpha=alpha,
            beta=beta,
            head=head,
            from_logits=from_logits,
            include_background=include_background,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            scheme=scheme,
            **kwargs,
        )

    def call(self, y_true, y_pred):
        return tversky_loss(y_true, y_pred, **self._options)


def deep_supervision_weights(num_outputs: int, *, decay: float = 0.5, drop_lowest: bool = True) -> list[float]:
    """Loss weights for deep-supervision outputs, highest resolution first (nnU-Net style).

    Weight ``i`` is ``decay**i``; with ``drop_lowest`` the lowest-resolution output gets 0 (when
    there are at least 2 outputs); the weights are normalised to sum to 1. Pass the list to
    ``model.compile(loss=[loss] * n, loss_weights=weights)``.

    Args:
        num_outputs: number of outputs, >= 1.
        decay: ratio between successive weights, in (0, 1]. Defaults to 0.5.
        drop_lowest: zero the last (coarsest) output. Defaults to `True`.

    Returns:
        ``num_outputs`` floats summing to 1, e.g. ``n=4`` -> ``[0.5714, 0.2857, 0.1429, 0.0]``.

    Raises:
        ValueError: ``num_outputs < 1`` or ``decay`` outside (0, 1].
    """
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got num_outputs={num_outputs!r}")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got decay={decay!r}")
    weights = [decay**i for i in range(num_outputs)]
    if drop_lowest and num_outputs > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]
