"""Training targets and voxel weights from canonical labels, as TensorFlow ops on whole batches.

Targets (canonical labels 0 BG, 1 NCR, 2 ED, 3 ET; see :mod:`brainseg_tf.conventions`):

- ``"classes"``: one-hot float32 ``(..., 4)`` over (BG, NCR, ED, ET);
- ``"regions"``: float32 ``(..., 3)`` = (WT, TC, ET) with WT = {1, 2, 3}, TC = {1, 3}, ET = {3};
- ``"labels"``: the uint8 labels ``(...)`` themselves (for sparse losses; the cheapest).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from brainseg_tf.arrays import region_lookup
from brainseg_tf.conventions import CLASS_NAMES, REGIONS

__all__ = ["TARGETS", "NUM_CLASSES", "REGION_TABLE", "check_target", "check_sample_weights", "make_targets", "finish"]

TARGETS = ("classes", "regions", "labels")
NUM_CLASSES = len(CLASS_NAMES)
#: ``REGION_TABLE[label]`` is the ``(WT, TC, ET)`` target of a canonical label (rows 0-3), built
#: from :data:`brainseg_tf.conventions.REGION_LABELS`.
REGION_TABLE = np.stack([region_lookup(r)[:NUM_CLASSES] for r in REGIONS], axis=-1).astype(np.float32)


def check_target(target: str | None, allow_none: bool = False) -> None:
    """``ValueError`` naming ``target`` unless it is one of :data:`TARGETS` (or ``None`` if allowed)."""
    if target is None and allow_none:
        return
    if target not in TARGETS:
        raise ValueError(f"target={target!r} must be one of {TARGETS}" + (" or None" if allow_none else ""))


def check_sample_weights(sample_weights: Any) -> np.ndarray | None:
    """``sample_weights`` as float32 ``(4,)`` non-negative per-class weights, or ``None``.

    Raises:
        ValueError: naming ``sample_weights``.
    """
    if sample_weights is None:
        return None
    w = np.asarray(sample_weights, dtype=np.float32)
    if w.shape != (NUM_CLASSES,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(
            f"sample_weights={sample_weights!r} must be {NUM_CLASSES} non-negative per-class weights "
            f"(BG, NCR, ED, ET) or None"
        )
    return w


def make_targets(label: tf.Tensor, target: str) -> tf.Tensor:
    """The ``target`` tensor (see the module docstring) of canonical ``label`` (any shape)."""
    if target == "classes":
        return tf.one_hot(tf.cast(label, tf.uint8), NUM_CLASSES, dtype=tf.float32)
    if target == "regions":  # one table gather: cheaper than comparing and stacking three masks
        return tf.gather(tf.constant(REGION_TABLE), tf.cast(label, tf.int32))
    return tf.cast(label, tf.uint8)


def finish(
    image: tf.Tensor,
    label: tf.Tensor,
    target: str | None,
    weights: np.ndarray | None,
    valid: tf.Tensor | None = None,
) -> tuple:
    """The element ``(image, target[, weight])`` (``(image,)`` when ``target`` is ``None``).

    The weight is ``weights[label]`` (times ``valid``, a boolean mask of the real voxels, when given).
    """
    if target is None:
        return (image,)
    out: tuple = (image, make_targets(label, target))
    if weights is not None:
        w = tf.gather(tf.constant(weights), tf.cast(label, tf.int32))
        if valid is not None:
            w = w * tf.cast(valid, tf.float32)
        out = out + (w,)
    return out
