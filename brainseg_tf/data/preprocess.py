"""Deterministic preprocessing of one case: reorient, resample, crop to the brain, z-score.

The chain, in order (each step optional)::

    native grid --reorient (RAS, exact axis flips/permutes)--> --resample (spacing mm)-->
    working grid --crop to brain box (+ margin)--> cropped grid --z-score inside brain mask-->

:class:`Geometry` records every step, so :func:`paste_back` maps an array on the cropped grid (a
prediction, a probability map) back onto the native grid of the source files, ready for
:func:`brainseg_tf.io.write_label`.

Conventions: image ``(X, Y, Z, C)`` float32 channels-last in NIfTI voxel order, label ``(X, Y, Z)``
uint8 canonical (0 BG, 1 NCR, 2 ED, 3 ET). The brain is every voxel where any modality is nonzero
(BraTS scans are skull-stripped with a zero background). No TensorFlow is imported here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainseg_tf.arrays import bbox
from brainseg_tf.checks import check_int
from brainseg_tf.conventions import FOREGROUND_CLASSES

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

_IDENTITY_ORNT = np.array([[0, 1], [1, 1], [2, 1]], dtype=np.float64)


@dataclass
class Geometry:
    """Where a preprocessed array sits relative to the source files.

    Attributes:
        shape: native spatial shape ``(X, Y, Z)`` of the source files.
        affine: native 4x4 voxel-to-world affine of the source files.
        spacing: native voxel size in mm.
        crop: brain box ``((x0, x1), (y0, y1), (z0, z1))``, half-open voxel indices in the
            *working grid*. Without reorientation and resampling the working grid is the native
            grid, so ``native[x0:x1, y0:y1, z0:z1] == cropped``.
        reorient: nibabel orientation transform (3x2) applied to go from native to RAS voxel
            order, or ``None`` when the voxel order was kept.
        target_spacing: spacing in mm the volume was resampled to, or ``None``.
        grid_shape: shape of the working grid (after reorientation and resampling, before crop).
        grid_affine: affine of the working grid.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    crop: Box
    reorient: np.ndarray | None = None
    target_spacing: tuple[float, float, float] | None = None
    grid_shape: tuple[int, int, int] | None = None
    grid_affine: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.crop = tuple((int(a), int(b)) for a, b in self.crop)
        if self.reorient is not None:
            self.reorient = np.asarray(self.reorient, dtype=np.float64)
        if self.target_spacing is not None:
            self.target_spacing = tuple(float(s) for s in self.target_spacing)
        self.grid_shape = self.shape if self.grid_shape is None else tuple(int(s) for s in self.grid_shape)
        self.grid_affine = self.affine.copy() if self.grid_affine is None else np.asarray(self.grid_affine, np.float64)

    @property
    def cropped_shape(self) -> tuple[int, int, int]:
        """Spatial shape of the preprocessed array."""
        return tuple(b - a for a, b in self.crop)

    @property
    def cropped_affine(self) -> np.ndarray:
        """Voxel-to-world affine of the preprocessed (cropped) array."""
        shift = np.eye(4)
        shift[:3, 3] = [a for a, _ in self.crop]
        return self.grid_affine @ shift

    @property
    def is_native_grid(self) -> bool:
        """True when only cropping was done (crop indices are native voxel indices)."""
        return self.reorient is None and self.target_spacing is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (used by the HDF5 cache)."""
        return {
            "shape": list(self.shape),
            "affine": self.affine.tolist(),
            "spacing": list(self.spacing),
            "crop": [list(c) for c in self.crop],
            "reorient": None if self.reorient is None else self.reorient.tolist(),
            "target_spacing": None if self.target_spacing is None else list(self.target_spacing),
            "grid_shape": list(self.grid_shape),
            "grid_affine": self.grid_affine.tolist(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any] | str) -> Geometry:
        if isinstance(d, (str, bytes)):
            d = json.loads(d)
        return cls(
            shape=d["shape"],
            affine=np.asarray(d["affine"]),
            spacing=d["spacing"],
            crop=d["crop"],
            reorient=None if d.get("reorient") is None else np.asarray(d["reorient"]),
            target_spacing=d.get("target_spacing"),
            grid_shape=d.get("grid_shape"),
            grid_affine=None if d.get("grid_affine") is None else np.asarray(d["grid_affine"]),
        )


@dataclass
class PreprocessedCase:
    """One case after :func:`preprocess_case`.

    Attributes:
        image: ``(X', Y', Z', 4)`` float32, canonical channels ``(flair, t1, t1ce, t2)``; z-scored
            per modality inside the brain mask (when ``normalize``), background exactly 0.
        label: ``(X', Y', Z')`` uint8 canonical labels, or ``None``.
        geometry: how to map back to the native grid (:func:`paste_back`).
        case_id: the case identifier.
        brain_mask: ``(X', Y', Z')`` bool, any modality nonzero.
        stats: per-modality ``mean``/``std`` used for the z-score (native intensities).
    """

    image: np.ndarray
    label: np.ndarray | None
    geometry: Geometry
    case_id: str
    brain_mask: np.ndarray
    stats: dict[str, list[float]] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape[:3])


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """``(X, Y, Z)`` bool: any channel nonzero (an OR of per-channel tests, which avoids the slow
    strided reduction of ``(image != 0).any(-1)`` on channels-last arrays)."""
    image = np.asarray(image)
    if image.ndim == 3:
        return image != 0
    mask = image[..., 0] != 0
    for c in range(1, image.shape[3]):
        mask |= image[..., c] != 0
    return mask


def brain_bbox(image: np.ndarray, margin: int = 0) -> Box:
    """Bounding box of the brain (voxels where any channel is nonzero).

    Args:
        image: ``(X, Y, Z, C)`` image or ``(X, Y, Z)`` image/mask.
        margin: voxels added on every side, clipped to the volume.

    Returns:
        ``((x0, x1), (y0, y1), (z0, z1))`` half-open voxel indices. An all-zero image gives the
        whole volume (nothing to crop to).
    """
    check_int("margin", margin, 0)
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"image has shape {image.shape}; expected (X, Y, Z) or (X, Y, Z, C)")
    mask = nonzero_mask(image)
    box = bbox(mask, pad=margin)
    if box is None:
        return tuple((0, int(s)) for s in mask.shape)
    return tuple((s.start, s.stop) for s in box)


def crop_to_box(array: np.ndarray, box: Box) -> np.ndarray:
    """``array[x0:x1, y0:y1, z0:z1, ...]`` (a view)."""
    return array[tuple(slice(a, b) for a, b in box)]


def _resize(array: np.ndarray, out_shape: Sequence[int], order: int) -> np.ndarray:
    """Resample the 3 spatial axes to ``out_shape`` (voxel edges aligned, ``grid_mode``)."""
    out_shape = tuple(int(s) for s in out_shape)
    if tuple(array.shape[:3]) == out_shape:
        return array
    zoom = [o / i for o, i in zip(out_shape, array.shape[:3])]

    def one(vol: np.ndarray) -> np.ndarray:
        out = ndimage.zoom(vol, zoom, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)
        if out.shape != out_shape:  # float rounding in zoom's shape arithmetic
            raise RuntimeError(f"resampling gave shape {out.shape}, expected {out_shape}")
        return out

    if array.ndim == 3:
        return one(array)
    return np.stack([one(array[..., c]) for c in range(array.shape[3])], axis=-1)


def _order_for(array: np.ndarray, order: int | None) -> int:
    if order is not None:
        return order
    return 0 if (np.issubdtype(array.dtype, np.integer) or array.dtype == bool) else 1


def zscore(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Z-score each channel inside ``mask``; voxels outside the mask become 0.

    A channel that is constant in the brain (std 0) is only centred.
    """
    out = np.zeros(image.shape, dtype=np.float32)
    means, stds = [], []
    n = int(mask.sum())
    for c in range(image.shape[-1]):
        vals = image[..., c][mask].astype(np.float64)
        mean = float(vals.mean()) if n else 0.0
        std = float(vals.std()) if n else 1.0
        std = std if std > 1e-8 else 1.0
        out[..., c][mask] = ((vals - mean) / std).astype(np.float32)
        means.append(mean)
        stds.append(std)
    return out, {"mean": means, "std": stds}


def target_spacing(spacing: float | Sequence[float] | None) -> tuple[float, float, float] | None:
    """A resampling target (mm: one number for every axis, or three) as three floats; ``None`` stays.

    Raises:
        ValueError: not one number or three, or not finite and positive.
    """
    if spacing is None:
        return None
    try:
        target = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,)))
    except (TypeError, ValueError):
        raise ValueError(f"spacing={spacing!r} must be one number or three (mm)") from None
    if not all(np.isfinite(t) and t > 0 for t in target):
        raise ValueError(f"spacing={spacing!r} must be finite and positive (mm)")
    return target  # type: ignore[return-value]


def preprocess_case(
    case: Any,
    *,
    crop: bool = True,
    margin: int = 0,
    normalize: bool = True,
    reorient: bool = False,
    spacing: Sequence[float] | float | None = None,
) -> PreprocessedCase:
    """Reorient, resample, crop and z-score one case.

    Args:
        case: a :class:`brainseg_tf.io.Case` (from ``read_case``/``open_dataset``), or any object
            with ``image (X, Y, Z, C)``, ``label``, ``affine``, ``spacing``, ``case_id``.
        crop: crop to the brain bounding box (any modality nonzero).
        margin: voxels kept around the brain box (clipped to the volume).
        normalize: z-score each modality inside the brain mask; background set to 0.
        reorient: reorder/flip voxel axes to RAS (exact, no interpolation).
        spacing: resample to this voxel size in mm (``1.0`` or ``(1, 1, 1)``); images linearly,
            labels nearest-neighbour. ``None`` keeps the native spacing.

    Returns:
        A :class:`PreprocessedCase` with float32 image and uint8 label on the cropped grid.

    Raises:
        ValueError: a negative margin, a non-positive spacing, a malformed image.
    """
    check_int("margin", margin, 0)
    image = np.asarray(case.image, dtype=np.float32)
    if image.ndim != 4:
        raise ValueError(f"case {case.case_id!r}: image has shape {image.shape}; expected (X, Y, Z, C)")
    label = None if case.label is None else np.asarray(case.label, dtype=np.uint8)
    native_shape = tuple(image.shape[:3])
    affine = np.asarray(case.affine, dtype=np.float64)
    native_spacing = tuple(float(s) for s in case.spacing)

    ornt = None
    grid_affine = affine
    if reorient:
        ornt = nib.orientations.io_orientation(affine)
        if np.array_equal(ornt, _IDENTITY_ORNT):
            ornt = None
        else:
            image = nib.orientations.apply_orientation(image, ornt)
            if label is not None:
                label = nib.orientations.apply_orientation(label, ornt)
            grid_affine = affine @ nib.orientations.inv_ornt_aff(ornt, native_shape)
    target = target_spacing(spacing)
    if target is not None:
        cur_spacing = np.sqrt((grid_affine[:3, :3] ** 2).sum(axis=0))
        cur_shape = np.asarray(image.shape[:3])
        new_shape = np.maximum(np.round(cur_shape * cur_spacing / np.asarray(target)).astype(int), 1)
        if not np.array_equal(new_shape, cur_shape):
            image = _resize(image, new_shape, order=1).astype(np.float32, copy=False)
            if label is not None:
                label = _resize(label, new_shape, order=0)
            ratio = cur_shape / new_shape
            scale = np.eye(4)
            scale[:3, :3] = np.diag(ratio)
            scale[:3, 3] = (ratio - 1) / 2  # voxel centres of the coarser/finer grid, edges aligned
            grid_affine = grid_affine @ scale
    grid_shape = tuple(image.shape[:3])
    full_mask = nonzero_mask(image)
    box = brain_bbox(full_mask, margin) if crop else tuple((0, s) for s in grid_shape)
    image = np.ascontiguousarray(crop_to_box(image, box))
    if label is not None:
        label = np.ascontiguousarray(crop_to_box(label, box))
    mask = np.ascontiguousarray(crop_to_box(full_mask, box))
    stats: dict[str, list[float]] = {}
    if normalize:
        image, stats = zscore(image, mask)
    geometry = Geometry(
        shape=native_shape,
        affine=affine,
        spacing=native_spacing,
        crop=box,
        reorient=ornt,
        target_spacing=target,
        grid_shape=grid_shape,
        grid_affine=grid_affine,
    )
    return PreprocessedCase(
        image=image, label=label, geometry=geometry, case_id=case.case_id, brain_mask=mask, stats=stats
    )


def paste_back(array: np.ndarray, geometry: Geometry, fill: float = 0, order: int | None = None) -> np.ndarray:
    """Map an array on the cropped grid back onto the native grid of the source files.

    The inverse of :func:`preprocess_case`: the array is placed into the crop box of the working
    grid (``fill`` elsewhere), resampled back to the native spacing when resampling was done, and
    its voxel axes restored when reorientation was done.

    Args:
        array: ``(X', Y', Z')`` or ``(X', Y', Z', C)`` on the cropped grid
            (``geometry.cropped_shape``): labels, probabilities, or images.
        geometry: the :class:`Geometry` of the preprocessed case.
        fill: value outside the crop box (0 = background label / zero probability).
        order: interpolation order for undoing resampling. Default: 0 (nearest) for integer and
            bool arrays (labels), 1 (linear) for floating arrays (probabilities, logits).
            Unused when no resampling was done; cropping and reorientation are exact.

    Returns:
        ``(X, Y, Z[, C])`` on the native grid (``geometry.shape``), same dtype as ``array``.

    Raises:
        ValueError: the array's spatial shape differs from ``geometry.cropped_shape``.
    """
    array = np.asarray(array)
    if tuple(array.shape[:3]) != geometry.cropped_shape or array.ndim not in (3, 4):
        raise ValueError(
            f"array has shape {array.shape}; expected spatial shape {geometry.cropped_shape} "
            f"(the cropped grid), optionally with a trailing channel axis"
        )
    full = np.full(tuple(geometry.grid_shape) + array.shape[3:], fill, dtype=array.dtype)
    full[tuple(slice(a, b) for a, b in geometry.crop)] = array
    if geometry.target_spacing is not None:
        oriented_shape = tuple(geometry.shape)
        if geometry.reorient is not None:
            permuted = [0, 0, 0]
            for axis, (new_axis, _) in enumerate(geometry.reorient):
                permuted[int(new_axis)] = geometry.shape[axis]
            oriented_shape = tuple(permuted)
        if tuple(oriented_shape) != tuple(full.shape[:3]):
            full = _resize(full, oriented_shape, _order_for(array, order)).astype(array.dtype, copy=False)
    if geometry.reorient is not None:
        back = nib.orientations.ornt_transform(_IDENTITY_ORNT, geometry.reorient)
        full = nib.orientations.apply_orientation(full, back)
    return np.ascontiguousarray(full)


def class_locations(
    label: np.ndarray | None,
    classes: Sequence[int] = FOREGROUND_CLASSES,
    max_per_class: int = 10000,
    seed: int = 0,
) -> dict[int, np.ndarray]:
    """Voxel coordinates of each tumour class, subsampled for O(1) foreground sampling.

    Args:
        label: ``(X, Y, Z)`` internal labels (canonical for the glioma schemes) or ``None``.
        classes: the labels to index (default 1, 2, 3; every non-zero internal label of a scheme
            with more, see :func:`brainseg_tf.data.cache.location_classes`).
        max_per_class: at most this many coordinates per class (uniform subsample without
            replacement, seeded).
        seed: seed of the subsample.

    Returns:
        ``{class: (N, 3) int32}`` with only the classes present (``N >= 1``).
    """
    if label is None:
        return {}
    rng = np.random.default_rng(seed)
    flat = np.asarray(label).ravel()
    out: dict[int, np.ndarray] = {}
    for c in classes:
        idx = np.flatnonzero(flat == c)
        if idx.size == 0:
            continue
        if idx.size > max_per_class:
            idx = np.sort(rng.choice(idx, size=max_per_class, replace=False))
        out[int(c)] = np.stack(np.unravel_index(idx, label.shape), axis=-1).astype(np.int32)
    return out


__all__ = [
    "Box",
    "Geometry",
    "PreprocessedCase",
    "brain_bbox",
    "crop_to_box",
    "preprocess_case",
    "paste_back",
    "target_spacing",
    "zscore",
    "class_locations",
]
