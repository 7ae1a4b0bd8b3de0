"""Small pure NumPy helpers used across stages, defined once.

Region masks from canonical labels (0 BG, 1 NCR, 2 ED, 3 ET; regions WT = {1, 2, 3},
TC = {1, 3}, ET = {3}, see :mod:`brainseg_tf.conventions`), bounding boxes and voxel-spacing checks.
No TensorFlow here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from brainseg_tf.conventions import REGION_LABELS

__all__ = ["region_mask", "region_lookup", "bbox", "check_spacing", "clip_box"]


def region_lookup(region: str) -> np.ndarray:
    """A 256-entry boolean table: ``table[label]`` is True when ``label`` belongs to ``region``."""
    if region not in REGION_LABELS:
        raise ValueError(f"region must be one of {tuple(REGION_LABELS)}, got region={region!r}")
    table = np.zeros(256, dtype=bool)
    table[list(REGION_LABELS[region])] = True
    return table


def region_mask(labels: np.ndarray, region: str) -> np.ndarray:
    """Boolean mask of a region (``"WT"``, ``"TC"``, ``"ET"``) from canonical labels (any shape)."""
    table = region_lookup(region)
    labels = np.asarray(labels)
    if labels.dtype == np.uint8:  # a lookup table is several times faster than np.isin
        return table[labels]
    return np.isin(labels, REGION_LABELS[region])


def bbox(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...] | None:
    """Tight bounding box of a boolean mask as slices, widened by ``pad`` voxels and clipped to the
    array; ``None`` when the mask is empty."""
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        if nz.size == 0:
            return None
        slices.append(slice(max(int(nz[0]) - pad, 0), min(int(nz[-1]) + 1 + pad, mask.shape[axis])))
    return tuple(slices)


def check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """Return ``spacing`` as three positive finite voxel sizes in mm; ``ValueError`` otherwise."""
    try:
        sp = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be 3 positive finite voxel sizes (mm), got spacing={spacing!r}") from None
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be 3 positive finite voxel sizes (mm), got spacing={spacing!r}")
    return sp  # type: ignore[return-value]


def clip_box(
    start: Sequence[int], size: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Overlap of a box with an array, for copying a zero-padded patch that may cross the edges.

    Args:
        start: lower corner of the box in array coordinates (may be negative).
        size: extent of the box per axis.
        shape: the array's shape (as many axes as ``start``).

    Returns:
        ``(src, dst)``: slices of the part inside ``shape``, in array coordinates (``src``) and
        in box coordinates (``dst``); empty slices on an axis where the box misses the array.
    """
    src, dst = [], []
    for s, n, dim in zip(start, size, shape):
        s, n = int(s), int(n)
        a, b = max(s, 0), min(s + n, dim)
        b = max(b, a)
        src.append(slice(a, b))
        dst.append(slice(a - s, a - s + (b - a)))
    return tuple(src), tuple(dst)
