"""BraTS-standard evaluation in NumPy/SciPy (no TensorFlow): Dice, HD95, sensitivity,
specificity, volumes and BraTS 2023 lesion-wise scores, per case and region.

Definitions (full text in ``docs/evaluation.md``):

- Regions from canonical labels (0 BG, 1 NCR, 2 ED, 3 ET): WT = {1,2,3}, TC = {1,3}, ET = {3}.
  A case in a label scheme the canonical labels cannot hold is scored on that scheme's regions,
  from its internal labels (:meth:`brainseg_tf.schemes.LabelScheme.region_internal`): PED 2024 on
  WT, TC, ET, NET, CC, ED; GLI 2024 on WT, TC, ET, NETC, SNFH, RC; MET 2024 on WT, TC, ET, RC.
- **Legacy rules** (BraTS 2017-2022, CaPTk): reference and prediction both empty -> Dice 1,
  HD95 0; exactly one empty -> Dice 0, HD95 373.12866 mm (the 240x240x155 diagonal).
- **HD95** as the BraTS 2023 official code computes it with DeepMind's ``surface-distance``:
  surfaces are the corner points of the voxel grid whose 2x2x2 neighbourhood is mixed; each
  carries the area of its marching-cubes surface element for the voxel spacing; the directed
  95th percentile is taken over the surfel-area weighted distances (to the nearest surface point
  of the other mask, Euclidean in mm); HD95 is the larger of the two directed values.
- **Lesion-wise** (BraTS 2023, GLI defaults): 26-connected components; reference components
  merged when they fall in one component of the reference dilated 3 times with the 18-connected
  3x3x3 structure; each reference lesion is matched to every predicted component touching its
  own dilation; per-lesion Dice and HD95 (no match: Dice 0, HD95 374); lesions of volume
  <= 50 mm^3 are left out; each unmatched predicted component is a false positive (Dice 0,
  HD95 374). Score = sum over kept lesions / (kept lesions + FPs); nothing to score -> Dice 1,
  HD95 0.

Everything is restricted to bounding boxes (padded), so a full 240x240x155 case takes well under
a second per region.
"""

from __future__ import annotations

import csv
import functools
import io as _stringio
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from brainseg_tf import atomic
from brainseg_tf.arrays import bbox, check_spacing, region_mask
from brainseg_tf.checks import check_choice, check_int, check_number
from brainseg_tf.conventions import REGIONS
from brainseg_tf.io.labels import load_labels, resolve_convention
from brainseg_tf.io.predictions import (
    COMPANIONS,
    PREDICTIONS_META,
    paired_cases,
    recorded_conventions,
    reference_files,
    scan_label_files,
)
from brainseg_tf.progress import progress as show_progress
from brainseg_tf.schemes import LabelScheme, get_scheme

if TYPE_CHECKING:
    from brainseg_tf.scoring import RuleSet

__all__ = [
    "PREDICTIONS_META",
    "resolve_convention",
    "LEGACY_EMPTY_HD95",
    "LESION_FP_HD95",
    "CSV_COLUMNS",
    "region_mask",
    "scheme_regions",
    "dice_score",
    "region_dice",
    "surface_distances",
    "hd95",
    "lesion_wise_scores",
    "evaluate_case",
    "EvaluationResult",
    "csv_columns",
    "evaluate_folders",
    "scan_label_files",
    "reference_files",
    "recorded_conventions",
    "load_labels",
    "summarize",
    "bootstrap_ci",
    "format_summary",
]

# Files ``predict`` writes beside the labels that are not label maps (their stems).
AUXILIARY_SUFFIXES = COMPANIONS
LEGACY_EMPTY_HD95 = float(np.sqrt(240.0**2 + 240.0**2 + 155.0**2))  # 373.12866 mm
LESION_FP_HD95 = 374.0
CSV_COLUMNS = (
    "case",
    "region",
    "dice",
    "hd95",
    "sensitivity",
    "specificity",
    "volume_ref_ml",
    "volume_pred_ml",
    "lesion_dice",
    "lesion_hd95",
    "lesion_tp",
    "lesion_fn",
    "lesion_fp",
    "missing_prediction",
)
_FULL_26 = np.ones((3, 3, 3), dtype=bool)
_DILATION_18 = ndimage.generate_binary_structure(3, 2)


# --------------------------------------------------------------------------------------------
# Regions and overlap scores
# --------------------------------------------------------------------------------------------


def dice_score(ref: np.ndarray, pred: np.ndarray, *, empty: float = 1.0) -> float:
    """Dice ``2|R∩P| / (|R| + |P|)`` of two boolean masks; ``empty`` when both are empty."""
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    total = int(np.count_nonzero(ref)) + int(np.count_nonzero(pred))
    if total == 0:
        return float(empty)
    return 2.0 * int(np.count_nonzero(ref & pred)) / total


def _region_masker(scheme: str | LabelScheme | None):
    """``mask(labels, region)``: canonical regions (``scheme`` ``None``), else the scheme's from its
    internal labels (a lookup table per region; unknown regions raise ``ValueError``)."""
    if scheme is None:
        return region_mask
    scheme = get_scheme(scheme)
    tables: dict[str, np.ndarray] = {}

    def mask(labels: np.ndarray, region: str) -> np.ndarray:
        if region not in tables:
            table = np.zeros(256, dtype=bool)
            table[list(scheme.region_internal(region))] = True
            tables[region] = table
        arr = np.asarray(labels)
        if arr.dtype == np.uint8:
            return tables[region][arr]
        return np.isin(arr, scheme.region_internal(region))

    return mask


def scheme_regions(scheme: str | LabelScheme | None = None) -> tuple[str, ...]:
    """The regions scored for a scheme, in channel order: ``("WT", "TC", "ET")`` for ``None``."""
    return REGIONS if scheme is None else get_scheme(scheme).region_names


def _check_internal(labels: np.ndarray, scheme: str | LabelScheme | None, what: str) -> None:
    if scheme is None or labels.size == 0:
        return
    scheme = get_scheme(scheme)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= scheme.n_classes:
        raise ValueError(
            f"{what} holds labels outside the {scheme.name!r} scheme's internal labels (0 BG, "
            + ", ".join(f"{i} {n}" for i, n in enumerate(scheme.internal, 1))
            + f"): min {lo}, max {hi}"
        )


def region_dice(
    pred: np.ndarray,
    ref: np.ndarray,
    regions: Sequence[str] | None = None,
    *,
    scheme: str | LabelScheme | None = None,
) -> dict[str, float]:
    """Dice per region of two label maps ``(X, Y, Z)`` (legacy rule: both empty -> 1).

    Args:
        pred, ref: canonical labels (0 BG, 1 NCR, 2 ED, 3 ET), or ``scheme``'s internal labels.
        regions: the regions scored (default: :func:`scheme_regions`).
        scheme: the label scheme (:func:`brainseg_tf.schemes.get_scheme`); ``None``: canonical.
    """
    mask = _region_masker(scheme)
    regions = scheme_regions(scheme) if regions is None else regions
    return {r: dice_score(mask(ref, r), mask(pred, r)) for r in regions}


# --------------------------------------------------------------------------------------------
# Surface distances (DeepMind surface-distance / BraTS 2023 definition)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _surfel_area_vectors() -> tuple[np.ndarray, ...]:
    """Per 2x2x2 neighbourhood code, the area vectors of its marching-cubes triangles.

    Bit ``7 - (4a + 2b + c)`` of a code is the voxel at offset ``(a, b, c)`` of the
    neighbourhood. Triangles come from the classic (Lorensen) marching cubes at level 0.5 with
    vertices on edge midpoints; configurations with more than 4 voxels set use the triangles of
    their complement (same surface), which makes the areas symmetric under complement. This
    reproduces, for every code and any spacing, the surfel areas of DeepMind's surface-distance
    lookup table that the BraTS 2023 evaluation uses.
    """
    from skimage import (
        measure,  # scikit-image is a core dependency; imported once, lazily
    )

    vectors = []
    for code in range(256):
        inside = bin(code).count("1")
        if inside in (0, 8):
            vectors.append(np.zeros((0, 3)))
            continue
        use = 255 - code if inside > 4 else code
        cube = np.zeros((2, 2, 2), dtype=np.float64)
        for a, b, c in itertools.product((0, 1), repeat=3):
            if use >> (7 - (4 * a + 2 * b + c)) & 1:
                cube[a, b, c] = 1.0
        verts, faces, _, _ = measure.marching_cubes(cube, 0.5, method="lorensen", allow_degenerate=True)
        tri = verts[faces]
        vectors.append(0.5 * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    return tuple(vectors)


@functools.lru_cache(maxsize=32)
def _surfel_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    """``(256,)`` surfel area in mm^2 of each neighbourhood code for a voxel spacing."""
    sx, sy, sz = spacing
    scale = np.array([sy * sz, sx * sz, sx * sy])
    return np.array([float(np.linalg.norm(v * scale, axis=1).sum()) for v in _surfel_area_vectors()])


def _neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """uint8 neighbourhood code at each voxel corner of a mask padded with one empty voxel."""
    padded = np.pad(mask.astype(np.uint8), 1)
    out_shape = tuple(s - 1 for s in padded.shape)
    codes = np.zeros(out_shape, dtype=np.uint8)
    for a, b, c in itertools.product((0, 1), repeat=3):
        part = padded[a : a + out_shape[0], b : b + out_shape[1], c : c + out_shape[2]]
        codes |= part << np.uint8(7 - (4 * a + 2 * b + c))
    return codes


def surface_distances(
    ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> dict[str, np.ndarray]:
    """Distances from each surface element of one mask to the other surface, with surfel areas.

    Args:
        ref: ``(X, Y, Z)`` boolean reference mask.
        pred: ``(X, Y, Z)`` boolean predicted mask.
        spacing: voxel size in mm along the array axes (the NIfTI header's zooms).

    Returns:
        dict of 1D float arrays: ``ref_to_pred`` / ``ref_areas`` (one entry per reference surfel)
        and ``pred_to_ref`` / ``pred_areas``, sorted by (distance, area). Distances are ``inf``
        when the other mask is empty; all empty when both are.

    Raises:
        ValueError: masks of different or non-3D shapes, bad spacing.
    """
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if ref.shape != pred.shape or ref.ndim != 3:
        raise ValueError(f"ref and pred must be 3D masks of one shape, got {ref.shape} and {pred.shape}")
    spacing = check_spacing(spacing)
    empty = np.zeros(0)
    box = bbox(ref | pred)
    if box is None:
        return {"ref_to_pred": empty, "ref_areas": empty, "pred_to_ref": empty, "pred_areas": empty}
    areas = _surfel_area_table(spacing)
    codes_ref = _neighbour_codes(ref[box])
    codes_pred = _neighbour_codes(pred[box])
    border_ref = (codes_ref != 0) & (codes_ref != 255)
    border_pred = (codes_pred != 0) & (codes_pred != 255)

    def directed(src_border, src_codes, dst_border):
        if not src_border.any():
            return empty, empty
        if dst_border.any():
            dist = ndimage.distance_transform_edt(~dst_border, sampling=spacing)[src_border]
        else:
            dist = np.full(int(np.count_nonzero(src_border)), np.inf)
        area = areas[src_codes[src_border]]
        order = np.lexsort((area, dist))
        return dist[order], area[order]

    ref_to_pred, ref_areas = directed(border_ref, codes_ref, border_pred)
    pred_to_ref, pred_areas = directed(border_pred, codes_pred, border_ref)
    return {"ref_to_pred": ref_to_pred, "ref_areas": ref_areas, "pred_to_ref": pred_to_ref, "pred_areas": pred_areas}


def _directed_percentile(distances: np.ndarray, areas: np.ndarray, percentile: float) -> float:
    if distances.size == 0:
        return math.inf
    cumulative = np.cumsum(areas) / np.sum(areas)
    index = int(np.searchsorted(cumulative, percentile / 100.0))
    return float(distances[min(index, distances.size - 1)])


def hd95(
    ref: np.ndarray,
    pred: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    percentile: float = 95.0,
) -> float:
    """Robust Hausdorff distance in mm (DeepMind / BraTS 2023 definition).

    The larger of the two directed, surfel-area weighted ``percentile``-th distances. No empty
    rule is applied here: ``inf`` when exactly one mask is empty, ``nan`` when both are (use
    :func:`evaluate_case` for the BraTS rules).

    Args:
        ref: ``(X, Y, Z)`` boolean reference mask.
        pred: ``(X, Y, Z)`` boolean prediction.
        spacing: voxel size in mm along the array axes.
        percentile: in [0, 100]. Defaults to 95.
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got percentile={percentile!r}")
    sd = surface_distances(ref, pred, spacing)
    if sd["ref_to_pred"].size == 0 and sd["pred_to_ref"].size == 0:
        return math.nan
    return max(
        _directed_percentile(sd["ref_to_pred"], sd["ref_areas"], percentile),
        _directed_percentile(sd["pred_to_ref"], sd["pred_areas"], percentile),
    )


# --------------------------------------------------------------------------------------------
# BraTS 2023 lesion-wise scores
# --------------------------------------------------------------------------------------------


def _padded_box(box: tuple[slice, ...], pad: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, shape))


def _union_box(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    if iterations == 0:
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=_DILATION_18, iterations=iterations)


def lesion_wise_scores(
    ref: np.ndarray,
    pred: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    dilation: int = 3,
    min_volume: float = 50.0,
    fp_hd95: float = LESION_FP_HD95,
    full_hd95: float | None = None,
) -> dict:
    """BraTS 2023 lesion-wise Dice and HD95 of one region (GLI defaults).

    Args:
        ref: ``(X, Y, Z)`` boolean reference mask of the region.
        pred: ``(X, Y, Z)`` boolean predicted mask.
        spacing: voxel size in mm.
        dilation: iterations of the 18-connected 3x3x3 dilation used to group reference
            components and to match predictions (GLI/SSA/PED 3, MEN/MET 1). Defaults to 3.
        min_volume: reference lesions with volume <= this (mm^3, as the official code; equal to
            voxels at 1 mm isotropic) are left out of the score and the TP/FN counts. Defaults to 50.
        fp_hd95: HD95 of a false positive or missed lesion. Defaults to 374.
        full_hd95: :func:`hd95` of the whole masks when already known; reused when the region is
            one lesion matched by every predicted component (the same two masks).

    Returns:
        dict with ``lesion_dice``, ``lesion_hd95``, ``tp`` (kept reference lesions with a match),
        ``fn`` (kept lesions without), ``fp`` (unmatched predicted components, any size) and
        ``lesions``: per reference lesion ``(volume_mm3, dice, hd95, matched_component_count)``.
    """
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if ref.shape != pred.shape or ref.ndim != 3:
        raise ValueError(f"ref and pred must be 3D masks of one shape, got {ref.shape} and {pred.shape}")
    check_int("dilation", dilation, 0)
    spacing = check_spacing(spacing)
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
    shape = ref.shape

    pred_cc, n_pred = ndimage.label(pred, structure=_FULL_26)
    pred_boxes = ndimage.find_objects(pred_cc)
    pred_sizes = np.bincount(pred_cc.ravel(), minlength=n_pred + 1)

    lesions: list[tuple[float, float, float, int]] = []
    matched: set[int] = set()
    outer = bbox(ref, pad=dilation + 1)
    if outer is not None:
        # group reference components that fall in one component of the dilated reference
        dilated_cc, n_groups = ndimage.label(_dilate(ref[outer], dilation), structure=_FULL_26)
        groups = np.zeros(shape, dtype=np.int32)
        groups[outer] = np.where(ref[outer], dilated_cc, 0)
        for gid, box in enumerate(ndimage.find_objects(groups), start=1):
            if box is None:
                continue
            roi = _padded_box(box, dilation + 1, shape)
            lesion_local = groups[roi] == gid
            reach = _dilate(lesion_local, dilation)
            ids = np.unique(pred_cc[roi][reach])
            ids = ids[ids != 0]
            matched.update(int(i) for i in ids)
            lesion_voxels = int(np.count_nonzero(lesion_local))
            volume = lesion_voxels * voxel_mm3
            if ids.size == 0:
                lesions.append((volume, 0.0, fp_hd95, 0))
                continue
            box_all = roi
            for i in ids:
                box_all = _union_box(box_all, pred_boxes[i - 1])
            lesion_full = np.zeros(tuple(s.stop - s.start for s in box_all), dtype=bool)
            offset = tuple(slice(r.start - b.start, r.stop - b.start) for r, b in zip(roi, box_all))
            lesion_full[offset] = lesion_local
            pred_full = np.isin(pred_cc[box_all], ids)
            overlap = int(np.count_nonzero(lesion_full & pred_full))
            dice = 2.0 * overlap / (lesion_voxels + int(pred_sizes[ids].sum()))
            if full_hd95 is not None and n_groups == 1 and ids.size == n_pred:
                dist = full_hd95
            else:
                dist = hd95(lesion_full, pred_full, spacing)
            lesions.append((volume, dice, dist if math.isfinite(dist) else fp_hd95, int(ids.size)))

    kept = [les for les in lesions if les[0] > min_volume]
    fp = n_pred - len(matched)
    denominator = len(kept) + fp
    if denominator == 0:
        lesion_dice, lesion_hd95 = 1.0, 0.0
    else:
        lesion_dice = sum(les[1] for les in kept) / denominator
        lesion_hd95 = (sum(les[2] for les in kept) + fp * fp_hd95) / denominator
    return {
        "lesion_dice": float(lesion_dice),
        "lesion_hd95": float(lesion_hd95),
        "tp": sum(1 for les in kept if les[3] > 0),
        "fn": sum(1 for les in kept if les[3] == 0),
        "fp": int(fp),
        "lesions": lesions,
    }


# --------------------------------------------------------------------------------------------
# Per case
# --------------------------------------------------------------------------------------------


def evaluate_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    case: str = "",
    regions: Iterable[str] | None = None,
    scheme: str | LabelScheme | None = None,
    lesion_wise: bool = True,
    dilation: int = 3,
    min_lesion_volume: float = 50.0,
    empty_hd95: float = LEGACY_EMPTY_HD95,
    lesion_fp_hd95: float = LESION_FP_HD95,
    rules: str | RuleSet | None = None,
) -> list[dict]:
    """Evaluate one case: one row per region.

    Args:
        pred: ``(X, Y, Z)`` canonical integer labels (0 BG, 1 NCR, 2 ED, 3 ET) predicted, or the
            internal labels of ``scheme``.
        ref: ``(X, Y, Z)`` reference labels in the same labels, same shape.
        spacing: voxel size in mm (from the reference header).
        case: case id written in each row.
        regions: the regions scored, a subset of the scheme's (default: all of them in channel
            order, :func:`scheme_regions`: ``("WT", "TC", "ET")`` for canonical labels).
        scheme: the label scheme of both maps (:func:`brainseg_tf.schemes.get_scheme`); its regions
            are built from its internal labels (:meth:`~brainseg_tf.schemes.LabelScheme.region_internal`).
            ``None``: canonical labels (a canonical scheme, e.g. ``brats2021``, scores the same).
        lesion_wise: also compute the BraTS 2023 lesion-wise scores (else NaN).
        dilation, min_lesion_volume, lesion_fp_hd95: lesion-wise parameters
            (see :func:`lesion_wise_scores`).
        empty_hd95: legacy HD95 when exactly one mask is empty. Defaults to 373.12866.
        rules: score by a year's official rules (:mod:`brainseg_tf.scoring`): ``"legacy"``,
            ``"2023"``, ``"2024"``, ``"2025"`` (the scheme's task), ``"auto"`` (the scheme's
            edition, :data:`~brainseg_tf.scoring.DEFAULT_RULES`) or a
            :class:`~brainseg_tf.scoring.RuleSet`. The rows then hold the legacy columns, with the
            empty-mask HD95 the grid's diagonal (shape x spacing; 373.12866 on 240x240x155 at 1 mm),
            and the rule set's columns (:func:`~brainseg_tf.scoring.rule_columns`) instead of the
            ``lesion_*`` ones; ``lesion_wise``, ``dilation``, ``min_lesion_volume``, ``empty_hd95``
            and ``lesion_fp_hd95`` are not used. ``None`` (default): the columns described here.

    Returns:
        list of dicts with the keys of :data:`CSV_COLUMNS` (``missing_prediction`` False).
        Legacy rules: both empty -> Dice 1, HD95 0, sensitivity 1; one empty -> Dice 0, HD95
        ``empty_hd95``. Sensitivity ``TP/(TP+FN)``, specificity ``TN/(TN+FP)`` over all voxels.
        Volumes in millilitres (voxels x voxel volume / 1000).

    Raises:
        ValueError: shapes differ, bad spacing, unknown region, labels outside ``scheme``.
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref shapes differ: {pred.shape} vs {ref.shape}")
    _check_internal(pred, scheme, "pred")
    _check_internal(ref, scheme, "ref")
    mask = _region_masker(scheme)
    regions = scheme_regions(scheme) if regions is None else tuple(regions)
    spacing = check_spacing(spacing)
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    n_voxels = ref.size
    full_shape = ref.shape
    rule_set = None
    if rules is not None:
        from brainseg_tf import scoring

        rule_set = scoring.resolve_rules(rules, scheme)
        empty_hd95 = scoring.RULES[("legacy", "all")].penalty_for(full_shape, spacing)
        dilation = max([rule_set.dilation, *(d for _, d in rule_set.region_dilation)])
    # every score is unchanged by cropping to the (padded) box of all foreground: work there
    box = bbox((ref > 0) | (pred > 0), pad=max(dilation, 0) + 2)
    if box is not None:
        ref, pred = ref[box], pred[box]
    rows = []
    for region in regions:
        r = mask(ref, region)
        p = mask(pred, region)
        n_ref, n_pred = int(np.count_nonzero(r)), int(np.count_nonzero(p))
        tp = int(np.count_nonzero(r & p))
        fp, fn = n_pred - tp, n_ref - tp
        tn = n_voxels - tp - fp - fn
        if n_ref == 0 and n_pred == 0:
            dice, dist = 1.0, 0.0
        elif n_ref == 0 or n_pred == 0:
            dice, dist = 0.0, float(empty_hd95)
        else:
            dice, dist = 2.0 * tp / (n_ref + n_pred), hd95(r, p, spacing)
        row = {
            "case": case,
            "region": region,
            "dice": dice,
            "hd95": dist,
            "sensitivity": 1.0 if n_ref == 0 and n_pred == 0 else (tp / n_ref if n_ref else 0.0),
            "specificity": tn / (tn + fp) if tn + fp else 1.0,
            "volume_ref_ml": n_ref * voxel_ml,
            "volume_pred_ml": n_pred * voxel_ml,
            "lesion_dice": math.nan,
            "lesion_hd95": math.nan,
            "lesion_tp": 0,
            "lesion_fn": 0,
            "lesion_fp": 0,
            "missing_prediction": False,
        }
        if rule_set is not None:
            for key in ("lesion_dice", "lesion_hd95", "lesion_tp", "lesion_fn", "lesion_fp"):
                del row[key]
        elif lesion_wise:
            lw = lesion_wise_scores(
                r,
                p,
                spacing,
                dilation=dilation,
                min_volume=min_lesion_volume,
                fp_hd95=lesion_fp_hd95,
                full_hd95=dist if n_ref and n_pred else None,
            )
            row.update(
                lesion_dice=lw["lesion_dice"],
                lesion_hd95=lw["lesion_hd95"],
                lesion_tp=lw["tp"],
                lesion_fn=lw["fn"],
                lesion_fp=lw["fp"],
            )
        rows.append(row)
    if rule_set is not None:
        from brainseg_tf import scoring

        extra = scoring.score_case(ref, pred, spacing, rule_set, scheme=scheme, regions=regions, shape=full_shape)
        for row in rows:
            row.update(extra[row["region"]])
    return rows


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """Rows of a folder evaluation plus what could not be paired.

    Attributes:
        rows: one dict per case x region, keys :data:`CSV_COLUMNS`; the regions are each case's
            scheme's (``region`` column).
        missing: reference case ids without a prediction (scored as an empty prediction).
        unmatched: prediction files that matched no reference case (not scored).
        notes: what reading the files decided (:attr:`brainseg_tf.io.predictions.CasePairs.notes`),
            e.g. predictions read in the reference's scheme.
    """

    rows: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def columns(self) -> tuple[str, ...]:
        """The CSV columns: :data:`CSV_COLUMNS` for the default and the 2023 rules; with other rules
        the legacy columns, then each rule set's columns (:func:`brainseg_tf.scoring.rule_columns`)
        in order of appearance, then ``missing_prediction``."""
        return csv_columns(self.rows)

    def to_csv(self, path: str | Path) -> Path:
        """Write the rows to a CSV file (columns :attr:`columns`) atomically; returns the path."""
        columns = self.columns
        buffer = _stringio.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: row[k] for k in columns if k in row})
        return atomic.write_text(path, buffer.getvalue())

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """See :func:`summarize`."""
        return summarize(self.rows)


_LEGACY_COLUMNS = tuple(c for c in CSV_COLUMNS if not c.startswith("lesion_") and c != "missing_prediction")


def csv_columns(rows: Sequence[dict]) -> tuple[str, ...]:
    """The CSV columns of evaluation rows: :data:`CSV_COLUMNS` when every row has them, else the legacy
    columns, every other column in order of appearance, then ``missing_prediction``."""
    if all(all(k in row for k in CSV_COLUMNS) for row in rows):
        return CSV_COLUMNS
    extra = dict.fromkeys(k for row in rows for k in row if k not in CSV_COLUMNS)
    return _LEGACY_COLUMNS + tuple(extra) + ("missing_prediction",)


def evaluate_folders(
    pred_dir: str | Path,
    ref_dir: str | Path,
    *,
    ref_convention: str | None = None,
    pred_convention: str | None = None,
    out_csv: str | Path | None = None,
    progress: bool = True,
    lesion_wise: bool = True,
    dilation: int | None = None,
    min_lesion_volume: float | None = None,
    case_ids: Sequence[str] | None = None,
    rules: str | RuleSet | None = None,
) -> EvaluationResult:
    """Evaluate a folder of predicted label maps against references, pairing by exact case id
    (:func:`brainseg_tf.io.predictions.paired_cases`, as ``select-postprocessing`` and the report pair).

    Predictions: ``<case_id>.nii.gz``, ``<case_id>_seg.nii.gz`` (also ``_pred``, ``-seg``…) or
    ``<case_id>/<one file>.nii.gz``; the id so named must equal a reference id exactly (hidden
    files are ignored). References: any dataset folder :func:`brainseg_tf.io.open_dataset` reads
    (its cases' label files and conventions), or a folder of label files named as the predictions.

    Label conventions and schemes are never guessed from values where a value means different
    things in two of them (MSD's 1/2 are BraTS 2023's 2/1; PED 2024's 1 is ET): the references'
    come from ``ref_convention``, else the dataset's layout, else the file's header stamp, else
    the case id's task prefix; the predictions' from ``pred_convention``, else
    ``predictions.json`` beside them, else the header stamp that
    :func:`brainseg_tf.io.write_label` (so ``brainseg predict``) writes, else the reference's
    (another tool's output: :attr:`EvaluationResult.notes` says so; values outside it are
    refused, naming the file). A reference with none of these is read only when its values mean
    the same in every convention; otherwise a :class:`~brainseg_tf.io.DataError` says which flag
    to pass. Each case is scored on its scheme's regions (PED 2024: WT, TC, ET, NET, CC, ED;
    GLI 2024: WT, TC, ET, NETC, SNFH, RC; MET 2024: WT, TC, ET, RC; the glioma schemes: WT, TC,
    ET); a prediction in another scheme than its reference is refused, naming both.

    Args:
        pred_dir: folder of predictions.
        ref_dir: dataset folder or folder of reference label files.
        ref_convention: label convention of the references (``"brats"``, ``"brats2023"``,
            ``"msd"``, ``"canonical"``, ``"brats2024_post"``) or scheme (``"ped2024"``...);
            overrides the recorded one.
        pred_convention: same for predictions.
        out_csv: write the rows there when given (atomically, after every case is scored).
        progress: show a progress bar.
        lesion_wise, dilation, min_lesion_volume: see :func:`evaluate_case` (defaults 3 and 50);
            with ``rules`` they may only change the 2023 rules' dilation and threshold.
        case_ids: score only these reference cases (e.g. a run's validation split).
        rules: a year's official rules for every case (see :func:`evaluate_case`); ``"auto"``:
            each case's scheme's edition. :attr:`EvaluationResult.rules` says which were used.

    Returns:
        :class:`EvaluationResult`; missing predictions are scored as empty and listed.

    Raises:
        ValueError: bad arguments (checked before reading any file), a prediction's shape or
            affine differs from its reference (both files named), no reference cases found.
        DataError: an unreadable file, a convention that cannot be told (names the flag), a
            prediction whose values contradict the reference's scheme, a scheme mismatch.
    """

    if dilation is not None:
        check_int("dilation", dilation, 0)
    if min_lesion_volume is not None:
        check_number("min_lesion_volume", min_lesion_volume, 0)
    choose = _rules_chooser(rules, dilation, min_lesion_volume)
    pairs = paired_cases(
        pred_dir, ref_dir, ref_convention=ref_convention, pred_convention=pred_convention, case_ids=case_ids
    )
    result = EvaluationResult(missing=list(pairs.missing), unmatched=list(pairs.unmatched))
    for case in show_progress(pairs, total=len(pairs), desc="evaluate", disable=not progress):
        rule_set, said = choose(case.scheme)
        if said not in result.rules and said:
            result.rules.append(said)
        rows = evaluate_case(
            case.pred,
            case.ref,
            case.spacing,
            case=case.case_id,
            scheme=case.scheme,
            lesion_wise=lesion_wise,
            dilation=3 if dilation is None else dilation,
            min_lesion_volume=50.0 if min_lesion_volume is None else min_lesion_volume,
            rules=rule_set,
        )
        for row in rows:
            row["missing_prediction"] = case.missing
        result.rows.extend(rows)
    result.notes = list(pairs.notes)
    if out_csv is not None:
        result.to_csv(out_csv)
    return result


def _rules_chooser(rules, dilation: int | None, min_lesion_volume: float | None):
    """``choose(scheme) -> (RuleSet or None, sentence)`` for :func:`evaluate_folders`; checks
    ``rules`` (and that dilation/threshold overrides apply to the 2023 rules) before any file is read."""
    if rules is None:
        return lambda scheme: (None, "")
    import dataclasses

    from brainseg_tf import scoring

    if not isinstance(rules, scoring.RuleSet):
        check_choice("rules", str(rules).lower(), (*scoring.YEARS, "auto"))
    overrides = {k: v for k, v in (("dilation", dilation), ("min_volume", min_lesion_volume)) if v is not None}

    def choose(scheme):
        rule_set = scoring.resolve_rules(rules, scheme)
        if overrides:
            if rule_set.year != "2023":
                raise ValueError(
                    f"dilation and min_lesion_volume change the 2023 rules only; {rule_set.describe()} "
                    "fix their own (drop them, or pass rules='2023')"
                )
            rule_set = dataclasses.replace(rule_set, region_dilation=(), region_min_volume=(), **overrides)
        name = "canonical labels" if scheme is None else get_scheme(scheme).name
        said = f"scoring with {rule_set.describe()}"
        if str(rules).lower() == "auto":
            said += f" (default for {name})"
        return rule_set, said

    return choose


_SUMMARY_METRICS = ("dice", "hd95", "sensitivity", "specificity", "lesion_dice", "lesion_hd95")
_COUNT_SUFFIXES = ("_tp", "_fn", "_fp")


def summarize(rows: Sequence[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per region and metric: ``mean, std, median, q1, q3, n`` over cases (NaN values skipped)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    present = dict.fromkeys(k for row in rows for k in row)
    extra = [
        k
        for k in present
        if k.rsplit("_", 1)[-1] in ("2024", "2025") and not any(k.startswith(c[1:]) for c in _COUNT_SUFFIXES)
    ]
    metrics = [m for m in _SUMMARY_METRICS if m in present] + extra
    for region in dict.fromkeys(row["region"] for row in rows):
        out[region] = {}
        for metric in metrics:
            values = np.array([row.get(metric, math.nan) for row in rows if row["region"] == region], dtype=float)
            values = values[~np.isnan(values)]
            if values.size == 0:
                stats = dict.fromkeys(("mean", "std", "median", "q1", "q3"), math.nan)
            else:
                q1, median, q3 = np.percentile(values, [25, 50, 75])
                stats = {
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                    "median": float(median),
                    "q1": float(q1),
                    "q3": float(q3),
                }
            stats["n"] = int(values.size)
            out[region][metric] = stats
    return out


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling cases with replacement.

    ``resamples`` samples of ``len(values)`` cases are drawn with replacement with
    ``numpy.random.default_rng(seed)``; the interval runs from the ``(1 - confidence) / 2`` to the
    ``(1 + confidence) / 2`` quantile of their means (NumPy's default linear interpolation).
    Deterministic for a given seed. Example: ``[0, 0, 0, 1]`` gives ``(0.0, 0.75)`` (a resample
    mean of 1 has probability 1/256, below 2.5 %; 0.75 or more has 13/256).

    Args:
        values: one number per case (e.g. the Dice of one region), all finite.
        resamples: bootstrap samples drawn. Defaults to 2000.
        confidence: coverage in (0, 1). Defaults to 0.95.
        seed: the generator's seed. Defaults to 0.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: no values, a non-finite value, or a bad ``resamples``/``confidence``.
    """
    check_int("resamples", resamples, 1)
    check_number("confidence", confidence, 0, 1, min_inclusive=False, max_inclusive=False)
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"values must be one or more finite numbers; got {x.size} value(s), some not finite")
    draws = np.random.default_rng(seed).integers(0, x.size, size=(int(resamples), x.size))
    means = x[draws].mean(axis=1)
    tail = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def format_summary(result: EvaluationResult | Sequence[dict]) -> str:
    """A plain-text table: per region and metric, mean, std, median and quartiles over cases.

    Also lists what reading the files decided (:attr:`EvaluationResult.notes`), missing
    predictions (scored as empty) and unpaired prediction files.
    """
    rows = result.rows if isinstance(result, EvaluationResult) else list(result)
    summary = summarize(rows)
    n_cases = len(dict.fromkeys(row["case"] for row in rows))
    said = result.rules if isinstance(result, EvaluationResult) else []
    if said:
        lines = [
            f"{n_cases} cases; " + "; ".join(said),
            "legacy rules for dice/hd95 (both empty: 1 / 0 mm; one empty: 0 / the grid's diagonal in mm)",
        ]
    else:
        lines = [
            f"{n_cases} cases; legacy rules for dice/hd95 (both empty: 1 / 0 mm; one empty: 0 / "
            f"{LEGACY_EMPTY_HD95:.2f} mm); lesion-wise: BraTS 2023 (FP/FN: 0 / {LESION_FP_HD95:.0f} mm)"
        ]
    lines.append(f"{'region':<6} {'metric':<18} {'mean':>9} {'std':>9} {'median':>9} {'q1':>9} {'q3':>9}")
    for region, metrics in summary.items():
        for metric, s in metrics.items():
            lines.append(
                f"{region:<6} {metric:<18} {s['mean']:>9.4f} {s['std']:>9.4f} {s['median']:>9.4f} "
                f"{s['q1']:>9.4f} {s['q3']:>9.4f}"
            )
    if isinstance(result, EvaluationResult):
        lines.extend(result.notes)
        if result.missing:
            lines.append(f"missing predictions (scored as empty): {', '.join(result.missing)}")
        if result.unmatched:
            lines.append(f"predictions without a reference (not scored): {', '.join(p.name for p in result.unmatched)}")
    return "\n".join(lines)
