"""Training targets and voxel weights from internal labels, as TensorFlow ops on whole batches.

Labels are a label scheme's internal labels (:class:`brainseg_tf.schemes.LabelScheme`: 0 BG,
1..n-1 in :attr:`~brainseg_tf.schemes.LabelScheme.internal` order); for the default scheme
(``brats2021``) and every glioma scheme they are the canonical 0 BG, 1 NCR, 2 ED, 3 ET
(:mod:`brainseg_tf.conventions`). Targets:

- ``"classes"``: one-hot float32 ``(..., n_classes)`` (``(..., 4)`` over BG, NCR, ED, ET by default);
- ``"regions"``: float32 ``(..., R)`` over the scheme's regions in channel order, row ``label`` of
  :func:`region_table` (by default ``(WT, TC, ET)`` with WT = {1, 2, 3}, TC = {1, 3}, ET = {3});
- ``"labels"``: the uint8 labels ``(...)`` themselves (for sparse losses; the cheapest).

The module constants (:data:`NUM_CLASSES`, :data:`REGION_TABLE`) are the functions applied to the
default scheme; every function takes ``scheme`` (a name or a ``LabelScheme``; ``None`` = default).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from brainseg_tf.schemes import DEFAULT_SCHEME, LabelScheme, get_scheme

__all__ = [
    "TARGETS",
    "DEFAULT_SCHEME",
    "NUM_CLASSES",
    "REGION_TABLE",
    "resolve_scheme",
    "num_classes",
    "region_table",
    "foreground_classes",
    "check_target",
    "check_sample_weights",
    "make_targets",
    "finish",
]

TARGETS = ("classes", "regions", "labels")
#: The scheme of code that states none (old caches, hand-built references): BraTS 2017-2021 glioma.


def resolve_scheme(scheme: str | LabelScheme | None) -> LabelScheme:
    """The :class:`LabelScheme` of ``scheme`` (``None``: :data:`DEFAULT_SCHEME`)."""
    return get_scheme(DEFAULT_SCHEME if scheme is None else scheme)


def num_classes(scheme: str | LabelScheme | None = None) -> int:
    """Classes of a softmax head: background plus the scheme's labels (4 by default)."""
    return resolve_scheme(scheme).n_classes


def region_table(scheme: str | LabelScheme | None = None) -> np.ndarray:
    """``(n_classes, R)`` float32: row ``label`` is the region target of internal label ``label``."""
    return resolve_scheme(scheme).region_table()


def foreground_classes(scheme: str | LabelScheme | None = None) -> tuple[int, ...]:
    """Every non-zero internal label ``(1, ..., n_classes - 1)``: what foreground sampling centres on."""
    return tuple(range(1, num_classes(scheme)))


NUM_CLASSES = num_classes(DEFAULT_SCHEME)
#: ``REGION_TABLE[label]`` is the ``(WT, TC, ET)`` target of a canonical label (rows 0-3).
REGION_TABLE = region_table(DEFAULT_SCHEME)


def check_target(target: str | None, allow_none: bool = False) -> None:
    """``ValueError`` naming ``target`` unless it is one of :data:`TARGETS` (or ``None`` if allowed)."""
    if target is None and allow_none:
        return
    if target not in TARGETS:
        raise ValueError(f"target={target!r} must be one of {TARGETS}" + (" or None" if allow_none else ""))


def check_sample_weights(sample_weights: Any, scheme: str | LabelScheme | None = None) -> np.ndarray | None:
    """``sample_weights`` as float32 ``(n_classes,)`` non-negative per-class weights, or ``None``.

    Raises:
        ValueError: naming ``sample_weights`` and the scheme's classes.
    """
    if sample_weights is None:
        return None
    s = resolve_scheme(scheme)
    w = np.asarray(sample_weights, dtype=np.float32)
    if w.shape != (s.n_classes,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        names = ("BG", "NCR", "ED", "ET") if s.is_canonical else s.class_names
        raise ValueError(
            f"sample_weights={sample_weights!r} must be {s.n_classes} non-negative per-class weights "
            f"({', '.join(names)}) or None"
        )
    return w


def make_targets(label: tf.Tensor, target: str, scheme: str | LabelScheme | None = None) -> tf.Tensor:
    """The ``target`` tensor (see the module docstring) of internal ``label`` (any shape)."""
    if target == "classes":
        return tf.one_hot(tf.cast(label, tf.uint8), num_classes(scheme), dtype=tf.float32)
    if target == "regions":  # one table gather: cheaper than comparing and stacking the masks
        return tf.gather(tf.constant(region_table(scheme)), tf.cast(label, tf.int32))
    return tf.cast(label, tf.uint8)


def finish(
    image: tf.Tensor,
    label: tf.Tensor,
    target: str | None,
    weights: np.ndarray | None,
    valid: tf.Tensor | None = None,
    scheme: str | LabelScheme | None = None,
) -> tuple:
    """The element ``(image, target[, weight])`` (``(image,)`` when ``target`` is ``None``).

    The weight is ``weights[label]`` (times ``valid``, a boolean mask of the real voxels, when given).
    """
    if target is None:
        return (image,)
    out: tuple = (image, make_targets(label, target, scheme))
    if weights is not None:
        w = tf.gather(tf.constant(weights), tf.cast(label, tf.int32))
        if valid is not None:
            w = w * tf.cast(valid, tf.float32)
        out = out + (w,)
    return out
