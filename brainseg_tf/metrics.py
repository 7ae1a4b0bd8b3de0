"""Epoch-level (streaming) segmentation metrics for Keras 3: Dice, IoU, precision, sensitivity,
specificity per class or per BraTS region, for softmax-class and sigmoid-region heads.

Every metric accumulates true/false positive/negative voxel counts (TP, FP, FN, TN) in float32
variables over the whole epoch and computes the score from the totals in ``result()``. It never
averages per-batch scores: the epoch Dice equals the Dice of all the epoch's voxels pooled
(the "global" or micro Dice over the evaluated set), which is what checkpoints on ``val_dice_et``
should see. This is not the mean of per-case Dice that BraTS reports; use
:mod:`brainseg_tf.evaluation` for that.

Items and heads:

- ``target="class"``: canonical classes 0 BG, 1 NCR, 2 ED, 3 ET (``ids`` are class values).
- ``target="region"``: regions (WT, TC, ET) = ({1,2,3}, {1,3}, {3}) (``ids`` index that tuple).
  The ET region and the ET class are the same voxel set, so there is a single ``dice_et``.
- ``head="softmax"``: ``y_pred`` ``(B, *spatial, C)`` class probabilities (or logits);
  hard predictions are the argmax; soft region probabilities are sums of class probabilities.
- ``head="sigmoid"``: ``y_pred`` ``(B, *spatial, 3)`` region probabilities (WT, TC, ET) (or
  logits); hard predictions are ``p > threshold``; classes are decoded by painting ED where WT,
  NCR where TC, ET where ET (nnU-Net's region order).
- ``y_true``: canonical integer labels ``(B, *spatial)`` or ``(B, *spatial, 1)``; a one-hot
  ``(B, *spatial, C)`` for softmax heads; region masks ``(B, *spatial, 3)`` for sigmoid heads.

Choices, each an argument: ``soft`` (default `False`: hard argmax/threshold, as BraTS scores);
``threshold`` for sigmoid heads (default 0.5); ``empty_value`` when a score's denominator is 0
over the whole epoch (default 1.0: nothing to find and nothing predicted is perfect, the legacy
BraTS rule; pass ``float("nan")`` to leave such items out of the mean); no smoothing. Items are
averaged with equal weight (macro mean) over the per-item epoch scores. ``sample_weight`` is
not supported (ignored) because voxel counts, not samples, are accumulated.

Seed aliases (drop-in names from the seed notebooks, corrected definitions):
``dice_coef`` (mean Dice of NCR, ED, ET: background excluded, hard, epoch-level; the seed
included background, was soft with smoothing 1 and averaged per-batch values),
``dice_coef_necrotic``/``dice_coef_edema``/``dice_coef_enhancing`` (hard epoch Dice of one class;
the seed's were soft with squared denominators, per batch), and ``precision``/``sensitivity``/
``specificity`` (macro mean over NCR, ED, ET; the seed's pooled all four channels including
background, so they were about 0.99 whatever the tumour segmentation). They are classes, so both
``metrics=[dice_coef]`` and ``metrics=[dice_coef()]`` work.

**Label schemes.** ``scheme`` (a :mod:`brainseg_tf.schemes` name; default ``None``: the
canonical labels and regions above, as for every glioma scheme) makes the items a scheme's own:
classes are its internal labels (``ids`` in ``0 .. n_classes - 1``, named by
``scheme.class_names``: ``dice_net``, ``dice_cc`` for ``ped2024``), regions its regions in
channel order (named ``dice_<region>``: ``dice_wt`` ... ``dice_ed``); integer targets become
regions by ``scheme.region_table()`` and sigmoid masks become classes as
``scheme.decode_regions`` does (nested overwrite, or the nearest region pattern for PED's and
GLI 2024's six regions, ties to the lower label); soft class probabilities of a sigmoid head are the normalised
likelihoods of each class's region pattern.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

from brainseg_tf import conventions
from brainseg_tf.conventions import (
    FOREGROUND_CLASSES,
    OUTPUT_ACTIVATIONS,
    REGION_LABELS,
    REGIONS,
)
from brainseg_tf.losses import labels_to_regions
from brainseg_tf.schemes import LabelScheme, get_scheme, own_scheme

__all__ = [
    "confusion_counts",
    "ConfusionMetric",
    "Dice",
    "IoU",
    "Precision",
    "Sensitivity",
    "Specificity",
    "standard_metrics",
    "dice_coef",
    "dice_coef_necrotic",
    "dice_coef_edema",
    "dice_coef_enhancing",
    "precision",
    "sensitivity",
    "specificity",
    "CLASS_NAMES",
    "REGION_NAMES",
    "item_names",
]

_PACKAGE = "brainseg_tf"
# Lower-case forms used in metric names (dice_ncr, dice_wt, ...).
CLASS_NAMES = tuple(name.lower() for name in conventions.CLASS_NAMES)
REGION_NAMES = tuple(name.lower() for name in REGIONS)
_REGION_CLASSES = tuple(REGION_LABELS[r] for r in REGIONS)
_STATISTICS = ("dice", "iou", "precision", "sensitivity", "specificity")
_TARGETS = ("class", "region")
_HEADS = OUTPUT_ACTIVATIONS


def _region_adds(s: LabelScheme) -> list[tuple[int, ...]]:
    """Per region in channel order, its internal labels that no later region holds (nested decode)."""
    regions = list(s.internal_regions().values())
    return [tuple(sorted(set(r) - set().union(*regions[k + 1 :]))) for k, r in enumerate(regions)]


def _decode_hard(masks, s: LabelScheme):
    """int32 internal labels from boolean region masks, as :meth:`LabelScheme.decode_regions`."""
    adds = _region_adds(s)
    if all(len(a) == 1 for a in adds):  # nested: overwrite in channel order
        labels = ops.zeros(ops.shape(masks)[:-1], dtype="int32")
        for j, (label,) in enumerate(adds):
            labels = ops.where(masks[..., j], label, labels)
        return labels
    # the nearest region pattern, ties to the lower label: integer Hamming distances tie exactly
    table = ops.convert_to_tensor(s.region_table(), dtype="float32")
    m = ops.cast(masks, "float32")
    distance = ops.matmul(m, ops.transpose(1.0 - table)) + ops.matmul(1.0 - m, ops.transpose(table))
    return ops.cast(ops.argmin(distance, axis=-1), "int32")


def _pattern_scores(p, s: LabelScheme):
    """``(..., n_classes)`` log-likelihood of each class's region pattern under independent sigmoids ``p``."""
    table = ops.convert_to_tensor(s.region_table(), dtype="float32")
    return ops.matmul(ops.log(p), ops.transpose(table)) + ops.matmul(ops.log(1.0 - p), ops.transpose(1.0 - table))


def _true_items(y_true, y_pred, head: str, target: str, ids: Sequence[int], scheme: LabelScheme | None = None):
    """float32 ``(B, *spatial, K)`` memberships of the reference in the K selected items."""
    rank_pred = len(y_pred.shape)
    channels = y_pred.shape[-1]
    dense = len(y_true.shape) == rank_pred and y_true.shape[-1] != 1
    if head == "sigmoid" and dense:
        regions = ops.cast(y_true, "float32")
        if target == "region":
            return ops.stack([regions[..., i] for i in ids], axis=-1)
        return _regions_to_classes_hard(regions > 0.5, ids, scheme)
    if dense:  # one-hot softmax target
        if y_true.shape[-1] != channels:
            raise ValueError(f"one-hot y_true has {y_true.shape[-1]} channels but y_pred has {channels}")
        labels = ops.argmax(y_true, axis=-1)
    else:
        labels = y_true[..., 0] if len(y_true.shape) == rank_pred else y_true
    return _label_items(ops.cast(labels, "int32"), target, ids, scheme)


def _label_items(labels, target: str, ids: Sequence[int], scheme: LabelScheme | None = None):
    if target == "class":
        return ops.cast(ops.stack([ops.equal(labels, c) for c in ids], axis=-1), "float32")
    regions = labels_to_regions(labels, scheme)
    return ops.stack([regions[..., i] for i in ids], axis=-1)


def _regions_to_classes_hard(masks, ids: Sequence[int], scheme: LabelScheme | None = None):
    if scheme is not None:
        return _label_items(_decode_hard(masks, scheme), "class", ids)
    wt, tc, et = masks[..., 0], masks[..., 1], masks[..., 2]
    labels = ops.where(et, 3, ops.where(tc, 1, ops.where(wt, 2, 0)))
    return _label_items(labels, "class", ids)


def _pred_items(
    y_pred,
    head: str,
    target: str,
    ids: Sequence[int],
    *,
    from_logits: bool,
    threshold: float,
    soft: bool,
    scheme: LabelScheme | None = None,
):
    """float32 ``(B, *spatial, K)`` predicted memberships (0/1, or probabilities when soft)."""
    y_pred = ops.cast(y_pred, "float32")
    if head == "softmax":
        if not soft:
            return _label_items(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), target, ids, scheme)
        prob = ops.softmax(y_pred, axis=-1) if from_logits else y_pred
        if target == "class":
            return ops.stack([prob[..., c] for c in ids], axis=-1)
        region_classes = _REGION_CLASSES if scheme is None else tuple(scheme.internal_regions().values())
        return ops.stack([sum(prob[..., c] for c in region_classes[i]) for i in ids], axis=-1)
    prob = ops.sigmoid(y_pred) if from_logits else y_pred
    if not soft:
        masks = prob > threshold
        if target == "region":
            return ops.cast(ops.stack([masks[..., i] for i in ids], axis=-1), "float32")
        return _regions_to_classes_hard(masks, ids, scheme)
    if target == "region":
        return ops.stack([prob[..., i] for i in ids], axis=-1)
    if scheme is not None:
        likelihood = ops.softmax(_pattern_scores(ops.clip(prob, 1e-6, 1.0 - 1e-6), scheme), axis=-1)
        return ops.stack([likelihood[..., c] for c in ids], axis=-1)
    p_wt, p_tc, p_et = prob[..., 0], prob[..., 1], prob[..., 2]
    soft_classes = (1.0 - p_wt, p_tc * (1.0 - p_et), p_wt * (1.0 - p_tc), p_et)
    return ops.stack([soft_classes[c] for c in ids], axis=-1)


def confusion_counts(
    y_true,
    y_pred,
    *,
    ids: Sequence[int] = FOREGROUND_CLASSES,
    target: str = "class",
    head: str = "softmax",
    from_logits: bool = False,
    threshold: float = 0.5,
    soft: bool = False,
    scheme: str | LabelScheme | None = None,
):
    """TP, FP, FN, TN voxel counts per item, summed over batch and space in float32.

    Args: see :class:`ConfusionMetric`.

    Returns:
        Four float32 tensors of shape ``(K,)``, ``K = len(ids)``.
    """
    s = own_scheme(scheme)
    t = _true_items(y_true, y_pred, head, target, ids, s)
    p = _pred_items(y_pred, head, target, ids, from_logits=from_logits, threshold=threshold, soft=soft, scheme=s)
    axes = list(range(len(p.shape) - 1))
    tp = ops.sum(t * p, axis=axes)
    fp = ops.sum((1.0 - t) * p, axis=axes)
    fn = ops.sum(t * (1.0 - p), axis=axes)
    tn = ops.sum((1.0 - t) * (1.0 - p), axis=axes)
    return tp, fp, fn, tn


def _validate(
    ids, target: str, statistic: str, head: str, threshold: float, scheme: str | LabelScheme | None = None
) -> tuple[int, ...]:
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {_TARGETS}, got target={target!r}")
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {_STATISTICS}, got statistic={statistic!r}")
    if head not in _HEADS:
        raise ValueError(f"head must be one of {_HEADS}, got head={head!r}")
    ids = tuple(int(i) for i in ids)
    s = own_scheme(scheme)
    if s is None:
        limit = 4 if target == "class" else 3
    else:
        limit = s.n_classes if target == "class" else len(s.regions)
    if not ids or any(i < 0 or i >= limit for i in ids):
        raise ValueError(f"ids must be a non-empty subset of range({limit}) for target={target!r}, got ids={ids}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got threshold={threshold!r}")
    return ids


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConfusionMetric(keras.metrics.Metric):
    """Streaming confusion-count metric: one statistic, macro-averaged over the selected items.

    Args:
        ids: class values (``target="class"``) or region indices into (WT, TC, ET)
            (``target="region"``). Defaults to `(1, 2, 3)`.
        target: ``"class"`` or ``"region"``. Defaults to `"class"`.
        statistic: ``"dice"`` ``2TP/(2TP+FP+FN)``, ``"iou"`` ``TP/(TP+FP+FN)``, ``"precision"``
            ``TP/(TP+FP)``, ``"sensitivity"`` ``TP/(TP+FN)``, ``"specificity"`` ``TN/(TN+FP)``.
        head: ``"softmax"`` or ``"sigmoid"``. Defaults to `"softmax"`.
        from_logits: ``y_pred`` are logits. Defaults to `False`.
        threshold: sigmoid probability threshold for hard predictions. Defaults to 0.5.
        soft: use probabilities instead of hard predictions. Defaults to `False`.
        empty_value: score of an item whose denominator is 0 over the epoch; NaN drops the item
            from the mean (all NaN gives NaN). Defaults to 1.0.
        name: metric name (``val_`` is prefixed by Keras on validation data).
        scheme: label scheme of the classes and regions (module docstring); `None`: canonical.

    Raises:
        ValueError: unknown ``target``/``statistic``/``head``/``scheme``, ids out of range, empty
            ids, threshold outside (0, 1).
    """

    def __init__(
        self,
        ids: Sequence[int] = FOREGROUND_CLASSES,
        target: str = "class",
        statistic: str = "dice",
        head: str = "softmax",
        from_logits: bool = False,
        threshold: float = 0.5,
        soft: bool = False,
        empty_value: float = 1.0,
        name: str | None = None,
        dtype=None,
        scheme: str | None = None,
    ):
        ids = _validate(ids, target, statistic, head, threshold, scheme)
        super().__init__(name=name or f"{statistic}_{target}", dtype=dtype)
        self.scheme = None if scheme is None else get_scheme(scheme).name
        self.ids = ids
        self.target = target
        self.statistic = statistic
        self.head = head
        self.from_logits = bool(from_logits)
        self.threshold = float(threshold)
        self.soft = bool(soft)
        self.empty_value = float(empty_value)
        k = len(ids)
        self.tp = self.add_variable(shape=(k,), initializer="zeros", name="tp", dtype="float32")
        self.fp = self.add_variable(shape=(k,), initializer="zeros", name="fp", dtype="float32")
        self.fn = self.add_variable(shape=(k,), initializer="zeros", name="fn", dtype="float32")
        self.tn = self.add_variable(shape=(k,), initializer="zeros", name="tn", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, fn, tn = confusion_counts(
            y_true,
            y_pred,
            ids=self.ids,
            target=self.target,
            head=self.head,
            from_logits=self.from_logits,
            threshold=self.threshold,
            soft=self.soft,
            scheme=self.scheme,
        )
        self.tp.assign_add(tp)
        self.fp.assign_add(fp)
        self.fn.assign_add(fn)
        self.tn.assign_add(tn)

    def per_item(self):
        """float32 ``(K,)`` epoch score of each item (``empty_value`` where undefined)."""
        tp, fp, fn, tn = (ops.convert_to_tensor(v) for v in (self.tp, self.fp, self.fn, self.tn))
        if self.statistic == "dice":
            num, den = 2.0 * tp, 2.0 * tp + fp + fn
        elif self.statistic == "iou":
            num, den = tp, tp + fp + fn
        elif self.statistic == "precision":
            num, den = tp, tp + fp
        elif self.statistic == "sensitivity":
            num, den = tp, tp + fn
        else:
            num, den = tn, tn + fp
        safe = ops.where(den > 0, den, ops.ones_like(den))
        return ops.where(den > 0, num / safe, self.empty_value * ops.ones_like(den))

    def result(self):
        scores = self.per_item()
        if math.isnan(self.empty_value):
            valid = ops.logical_not(ops.isnan(scores))
            count = ops.sum(ops.cast(valid, "float32"))
            total = ops.sum(ops.where(valid, scores, ops.zeros_like(scores)))
            return ops.where(count > 0, total / ops.maximum(count, 1.0), float("nan"))
        return ops.mean(scores)

    def reset_state(self):
        for v in (self.tp, self.fp, self.fn, self.tn):
            v.assign(ops.zeros(v.shape, dtype=v.dtype))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "ids": list(self.ids),
                "target": self.target,
                "statistic": self.statistic,
                "head": self.head,
                "from_logits": self.from_logits,
                "threshold": self.threshold,
                "soft": self.soft,
                "empty_value": self.empty_value,
            }
        )
        if self.scheme is not None:  # only where stated: older configs stay as they were
            config["scheme"] = self.scheme
        return config


class _FixedStatistic(ConfusionMetric):
    _statistic = "dice"

    def __init__(
        self, ids: Sequence[int] = FOREGROUND_CLASSES, target: str = "class", name: str | None = None, **kwargs
    ):
        kwargs.pop("statistic", None)
        scheme = kwargs.get("scheme")
        ids = _validate(
            ids, target, self._statistic, kwargs.get("head", "softmax"), kwargs.get("threshold", 0.5), scheme
        )
        super().__init__(
            ids=ids,
            target=target,
            statistic=self._statistic,
            name=name or _default_name(self._statistic, target, ids, scheme),
            **kwargs,
        )


def item_names(target: str, scheme: str | LabelScheme | None = None) -> tuple[str, ...]:
    """Lower-case names of the classes (``target="class"``) or regions of a scheme, by index."""
    s = own_scheme(scheme)
    if s is None:
        return CLASS_NAMES if target == "class" else REGION_NAMES
    return tuple(n.lower() for n in (s.class_names if target == "class" else s.region_names))


def _default_name(statistic: str, target: str, ids: Sequence[int], scheme: str | LabelScheme | None = None) -> str:
    names = item_names(target, scheme)
    ids = tuple(ids)
    if len(ids) == 1:
        return f"{statistic}_{names[ids[0]]}"
    if target == "class" and ids == tuple(range(1, len(names))):
        return f"mean_{statistic}"
    if target == "region" and ids == tuple(range(len(names))):
        return f"mean_region_{statistic}"
    return f"{statistic}_" + "_".join(names[i] for i in ids)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Dice(_FixedStatistic):
    """Epoch Dice ``2TP / (2TP + FP + FN)``, macro mean over ``ids``; see :class:`ConfusionMetric`.

    ``Dice(ids=(3,))`` is named ``dice_et``; ``Dice(ids=(0,), target="region")`` ``dice_wt``;
    ``Dice()`` (NCR, ED, ET) ``mean_dice``.
    """

    _statistic = "dice"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IoU(_FixedStatistic):
    """Epoch IoU (Jaccard) ``TP / (TP + FP + FN)``; see :class:`ConfusionMetric`."""

    _statistic = "iou"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Precision(_FixedStatistic):
    """Epoch precision ``TP / (TP + FP)``; see :class:`ConfusionMetric`."""

    _statistic = "precision"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Sensitivity(_FixedStatistic):
    """Epoch sensitivity (recall) ``TP / (TP + FN)``; see :class:`ConfusionMetric`."""

    _statistic = "sensitivity"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Specificity(_FixedStatistic):
    """Epoch specificity ``TN / (TN + FP)``; see :class:`ConfusionMetric`."""

    _statistic = "specificity"


def standard_metrics(
    head: str = "softmax",
    *,
    from_logits: bool = False,
    soft: bool = False,
    threshold: float = 0.5,
    empty_value: float = 1.0,
    scheme: str | LabelScheme | None = None,
) -> list[ConfusionMetric]:
    """The standard named metric list for a head type, ready for ``model.compile(metrics=...)``.

    Softmax heads: ``dice_ncr, dice_ed, dice_et, dice_wt, dice_tc, mean_dice`` (NCR, ED, ET),
    ``mean_region_dice`` (WT, TC, ET), ``iou_ncr, iou_ed, iou_et``, ``precision, sensitivity,
    specificity`` (macro over NCR, ED, ET). Sigmoid heads: ``dice_wt, dice_tc, dice_et,
    mean_region_dice, iou_wt, iou_tc, iou_et, precision, sensitivity, specificity`` (macro over
    WT, TC, ET).

    With a non-canonical ``scheme`` the same lists over its items: softmax heads get one Dice
    per class, one per region that holds several classes (``dice_wt``, ``dice_tc``), ``mean_dice``
    and ``mean_region_dice`` over all its regions; sigmoid heads one Dice and IoU per region
    (``ped2024``: ``dice_wt, dice_tc, dice_et, dice_net, dice_cc, dice_ed``).

    Args:
        head: ``"softmax"`` or ``"sigmoid"``.
        from_logits, soft, threshold, empty_value, scheme: passed to every metric.

    Returns:
        A new list of metric instances.
    """
    if head not in _HEADS:
        raise ValueError(f"head must be one of {_HEADS}, got head={head!r}")
    s = own_scheme(scheme)
    common = dict(head=head, from_logits=from_logits, soft=soft, threshold=threshold, empty_value=empty_value)
    if s is not None:
        common["scheme"] = s.name
    classes = FOREGROUND_CLASSES if s is None else tuple(range(1, s.n_classes))
    all_regions = tuple(range(3 if s is None else len(s.regions)))
    if head == "softmax":
        held = (REGION_LABELS[r] for r in REGIONS) if s is None else s.internal_regions().values()
        multi = tuple(i for i, labels in enumerate(held) if len(labels) > 1)
        out: list[ConfusionMetric] = [Dice(ids=(c,), **common) for c in classes]
        out += [Dice(ids=(r,), target="region", **common) for r in multi]
        out += [  # named: with one foreground label (MEN-RT's GTV) the means would take that label's name
            Dice(ids=classes, name="mean_dice", **common),
            Dice(ids=all_regions, target="region", name="mean_region_dice", **common),
        ]
        out += [IoU(ids=(c,), **common) for c in classes]
        out += [
            Precision(ids=classes, name="precision", **common),
            Sensitivity(ids=classes, name="sensitivity", **common),
            Specificity(ids=classes, name="specificity", **common),
        ]
        return out
    region = dict(target="region", **common)
    out = [Dice(ids=(r,), **region) for r in all_regions]
    out += [Dice(ids=all_regions, name="mean_region_dice", **region)]
    out += [IoU(ids=(r,), **region) for r in all_regions]
    out += [
        Precision(ids=all_regions, name="precision", **region),
        Sensitivity(ids=all_regions, name="sensitivity", **region),
        Specificity(ids=all_regions, name="specificity", **region),
    ]
    return out


# --------------------------------------------------------------------------------------------
# Seed aliases: same names as the seed notebooks, corrected definitions (module docstring).
# Lower-case class names on purpose, so seed code `metrics=[dice_coef, ...]` keeps working.
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=_PACKAGE)
class dice_coef(Dice):  # noqa: N801
    """Seed alias: mean hard epoch Dice over NCR, ED, ET (no background)."""

    def __init__(self, name: str = "dice_coef", **kwargs):
        kwargs.setdefault("ids", FOREGROUND_CLASSES)
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class dice_coef_necrotic(Dice):  # noqa: N801
    """Seed alias: hard epoch Dice of class 1 (NCR)."""

    def __init__(self, name: str = "dice_coef_necrotic", **kwargs):
        kwargs.setdefault("ids", (1,))
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class dice_coef_edema(Dice):  # noqa: N801
    """Seed alias: hard epoch Dice of class 2 (ED)."""

    def __init__(self, name: str = "dice_coef_edema", **kwargs):
        kwargs.setdefault("ids", (2,))
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class dice_coef_enhancing(Dice):  # noqa: N801
    """Seed alias: hard epoch Dice of class 3 (ET)."""

    def __init__(self, name: str = "dice_coef_enhancing", **kwargs):
        kwargs.setdefault("ids", (3,))
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class precision(Precision):  # noqa: N801
    """Seed alias: macro precision over NCR, ED, ET (the seed pooled all channels incl. background)."""

    def __init__(self, name: str = "precision", **kwargs):
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class sensitivity(Sensitivity):  # noqa: N801
    """Seed alias: macro sensitivity over NCR, ED, ET."""

    def __init__(self, name: str = "sensitivity", **kwargs):
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class specificity(Specificity):  # noqa: N801
    """Seed alias: macro specificity over NCR, ED, ET."""

    def __init__(self, name: str = "specificity", **kwargs):
        super().__init__(name=name, **kwargs)
