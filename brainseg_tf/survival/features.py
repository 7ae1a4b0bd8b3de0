"""Tumour features of label maps (volumes, ratios, shape, position) and feature tables.

Features are defined on the glioma tissues: the non-enhancing core (``ncr``), edema (``ed``) and
enhancing tumour (``et``), with ``tc`` and ``wt`` their nested regions. A label scheme with other
labels is reduced to these through its own WT, TC and ET regions (:func:`tissue_labels`): PED's
cystic component counts in the core like its NET, a resection cavity (GLI/MET 2024) is not tumour.
A scheme without those three regions (MEN-RT's GTV) has no such features and is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf import atomic
from brainseg_tf.arrays import bbox, check_spacing, region_mask
from brainseg_tf.conventions import CLASS_NAMES, FOREGROUND_CLASSES, REGION_LABELS, REGIONS
from brainseg_tf.io.errors import DataError, MissingFileError
from brainseg_tf.progress import progress as show_progress
from brainseg_tf.schemes import LabelScheme, own_scheme
from brainseg_tf.survival.clinical import RESECTIONS, ClinicalTable, as_table, match_ids
from brainseg_tf.survival.tables import cell_error, read_rows

__all__ = [
    "VOLUME_FEATURES",
    "RATIO_FEATURES",
    "BRAIN_FEATURES",
    "SHAPE_FEATURES",
    "CENTROID_FEATURES",
    "FEATURE_NAMES",
    "IMAGING_FEATURES",
    "tissue_labels",
    "case_features",
    "feature_rows",
    "write_features",
    "read_features",
]

VOLUME_FEATURES = ("ncr_ml", "ed_ml", "et_ml", "tc_ml", "wt_ml")
RATIO_FEATURES = ("et_over_tc", "ncr_over_tc", "tc_over_wt", "ed_over_wt", "et_over_wt")
BRAIN_FEATURES = ("brain_ml", "wt_brain_fraction", "tc_brain_fraction", "et_brain_fraction")
SHAPE_FEATURES = (
    "wt_components",
    "tc_components",
    "wt_extent",
    "tc_extent",
    "wt_surface_mm2",
    "tc_surface_mm2",
    "wt_sphericity",
    "tc_sphericity",
)
CENTROID_FEATURES = ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm")
FEATURE_NAMES: tuple[str, ...] = VOLUME_FEATURES + RATIO_FEATURES + BRAIN_FEATURES + SHAPE_FEATURES + CENTROID_FEATURES
# What the feature models use by default: everything computable from a label map and its spacing
# alone, so predict(model, label, spacing, age) works. Brain fractions (need a brain mask) and the
# world centroid (needs the affine) are opt-in through ``feature_names``.
IMAGING_FEATURES: tuple[str, ...] = VOLUME_FEATURES + RATIO_FEATURES + SHAPE_FEATURES

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connected components, as BraTS 2023 lesion-wise
_SHAPE_KEYS = ("components", "extent", "surface_mm2", "sphericity")
_TEXT_COLUMNS = ("case_id", "clinical_id", "resection")


def _shape_features(mask: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Components, extent, surface area (mm^2) and sphericity of one non-empty region mask."""
    from scipy import ndimage
    from skimage import measure

    sub = mask[bbox(mask)]
    _, n_components = ndimage.label(sub, structure=_CONNECTIVITY)
    # Marching cubes at 0.5 on the zero-padded mask: a closed mesh whose area is the surface and
    # whose enclosed volume goes with it into sphericity (pyradiomics' mesh definitions).
    verts, faces, _, _ = measure.marching_cubes(np.pad(sub, 1).astype(np.float32), 0.5, spacing=spacing)
    area = float(measure.mesh_surface_area(verts, faces))
    tri = verts[faces].astype(np.float64)
    volume = abs(float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum())) / 6.0
    sphericity = math.pi ** (1.0 / 3.0) * (6.0 * volume) ** (2.0 / 3.0) / area if area > 0 else 0.0
    return {
        "components": float(n_components),
        "extent": float(np.count_nonzero(sub)) / float(sub.size),
        "surface_mm2": area,
        "sphericity": sphericity,
    }


def _canonical_label(label: np.ndarray) -> np.ndarray:
    lab = np.asarray(label)
    if lab.ndim != 3:
        raise ValueError(f"label has shape {lab.shape}; expected (X, Y, Z) canonical labels")
    if lab.size and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() > 3):
        raise ValueError(
            f"label values must be canonical integers 0-3 (got dtype {lab.dtype}, "
            f"range {lab.min()}..{lab.max()}); convert with brainseg_tf.io.to_canonical"
        )
    return lab


def tissue_labels(label: np.ndarray, scheme: str | LabelScheme | None) -> np.ndarray:
    """Canonical tissue labels (0 BG, 1 NCR, 2 ED, 3 ET) of a map in ``scheme``'s internal labels.

    Each label goes where the scheme's own regions put it: in ET -> 3; in TC but not ET -> 1 (core);
    in WT but not TC -> 2 (edema); in none -> 0 (a resection cavity is not tumour). ``None`` or a
    canonical scheme: ``label`` is returned as it is.

    Raises:
        ValueError: the scheme has no WT, TC and ET regions (survival features mean nothing there).
    """
    s = own_scheme(scheme)
    if s is None:
        return np.asarray(label)
    missing = [r for r in REGIONS if r not in s.region_names]
    if missing:
        raise ValueError(
            f"survival features are glioma tissue volumes and need the WT, TC and ET regions; the {s.name!r} "
            f"scheme scores {', '.join(s.region_names)} ({s.description})"
        )
    lut = np.zeros(s.n_classes, dtype=np.uint8)
    for i in range(1, s.n_classes):
        held = {r for r in REGIONS if i in s.region_internal(r)}
        lut[i] = 3 if "ET" in held else 1 if "TC" in held else 2 if "WT" in held else 0
    arr = np.asarray(label)
    if arr.size and (arr.min() < 0 or arr.max() >= s.n_classes):
        raise ValueError(f"label values {arr.min()}..{arr.max()} are not internal labels of the {s.name!r} scheme")
    return lut[arr.astype(np.intp)]


def _voxel_counts(lab: np.ndarray) -> dict[str, int]:
    """Voxels per class (``ncr``, ``ed``, ``et``) and per region (``wt``, ``tc``, ``et``)."""
    counts = np.bincount(lab.ravel().astype(np.intp), minlength=4)
    n = {CLASS_NAMES[c].lower(): int(counts[c]) for c in FOREGROUND_CLASSES}
    n.update({r.lower(): int(counts[list(REGION_LABELS[r])].sum()) for r in REGIONS})
    return n


def _brain_features(lab: np.ndarray, brain_mask: np.ndarray | None, n: Mapping[str, int], voxel_ml: float) -> dict:
    if brain_mask is None:
        return dict.fromkeys(BRAIN_FEATURES, math.nan)
    brain = np.asarray(brain_mask, dtype=bool)
    if brain.shape != lab.shape:
        raise ValueError(f"brain_mask has shape {brain.shape}, label {lab.shape}")
    n_brain = int(np.count_nonzero(brain | (lab > 0)))  # tumour counts as brain
    out = {"brain_ml": n_brain * voxel_ml}
    for region in ("wt", "tc", "et"):
        out[f"{region}_brain_fraction"] = float(n[region]) / n_brain if n_brain else 0.0
    return out


def _centroid_mm(lab: np.ndarray, affine: np.ndarray | None, has_tumour: bool) -> list[float]:
    """Whole-tumour centroid in world mm through ``affine``; NaN without affine or tumour."""
    if affine is None:
        return [math.nan] * 3
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise ValueError(f"affine must be a finite 4x4 matrix, got shape {aff.shape}")
    if not has_tumour:
        return [math.nan] * 3
    vox = np.array([i.mean(dtype=np.float64) for i in np.nonzero(lab > 0)])
    return [float(v) for v in aff[:3, :3] @ vox + aff[:3, 3]]


def case_features(
    label: np.ndarray,
    spacing: Sequence[float],
    affine: np.ndarray | None = None,
    brain_mask: np.ndarray | None = None,
    scheme: str | LabelScheme | None = None,
) -> dict[str, float]:
    """Tumour features of one label map, in :data:`FEATURE_NAMES` order.

    * ``ncr_ml, ed_ml, et_ml, tc_ml, wt_ml``: volumes in ml (voxel count x voxel volume).
    * ``et_over_tc, ncr_over_tc, tc_over_wt, ed_over_wt, et_over_wt``: volume ratios; 0 where the
      denominator is empty.
    * ``brain_ml`` and ``{wt,tc,et}_brain_fraction``: need ``brain_mask`` (NaN without it).
    * ``{wt,tc}_components``: 26-connected components; ``{wt,tc}_extent``: voxels / bounding-box
      voxels; ``{wt,tc}_surface_mm2``: marching-cubes (level 0.5) surface area in mm^2;
      ``{wt,tc}_sphericity``: ``pi^(1/3) (6 V)^(2/3) / A`` with the mesh volume ``V`` and area
      ``A`` (1 for a ball, less otherwise). All 0 for an empty region.
    * ``centroid_{x,y,z}_mm``: whole-tumour centroid in world millimetres through ``affine``
      (BraTS scans share the SRI24 atlas space); NaN without ``affine`` or without tumour.

    Args:
        label: ``(X, Y, Z)`` integer canonical labels (0 BG, 1 NCR, 2 ED, 3 ET), or the internal
            labels of ``scheme``.
        spacing: voxel size in mm ``(sx, sy, sz)``.
        affine: 4x4 voxel-to-world affine of the scan (optional).
        brain_mask: ``(X, Y, Z)`` bool brain (nonzero scan voxels; optional).
        scheme: the label scheme of ``label`` (default: canonical labels); reduced to the glioma
            tissues by :func:`tissue_labels`.

    Returns:
        ``{feature name: float}``.

    Raises:
        ValueError: label not 3D or with values outside 0-3 (outside the scheme), bad spacing,
            affine or mask shape, a scheme without WT, TC and ET.
    """
    lab = _canonical_label(tissue_labels(label, scheme))
    sp = check_spacing(spacing)
    voxel_ml = sp[0] * sp[1] * sp[2] / 1000.0
    n = _voxel_counts(lab)
    out: dict[str, float] = {name: float(n[name.removesuffix("_ml")]) * voxel_ml for name in VOLUME_FEATURES}
    for name in RATIO_FEATURES:
        a, b = name.split("_over_")
        out[name] = float(n[a]) / float(n[b]) if n[b] else 0.0
    out.update(_brain_features(lab, brain_mask, n, voxel_ml))
    for region in ("wt", "tc"):
        shape = _shape_features(region_mask(lab, region.upper()), sp) if n[region] else dict.fromkeys(_SHAPE_KEYS, 0.0)
        for key, value in shape.items():
            out[f"{region}_{key}"] = value
    out.update(zip(CENTROID_FEATURES, _centroid_mm(lab, affine, n["wt"] > 0)))
    return {k: out[k] for k in FEATURE_NAMES}


def _label_sources(labels: str | Path) -> dict[str, tuple[Path, str | None, dict[str, Path] | None]]:
    """Case id -> (label file, convention or scheme or None, image files or None) of a folder."""
    from brainseg_tf.io import open_dataset
    from brainseg_tf.io.predictions import prediction_files, recorded_reading

    labels = Path(labels)
    if not labels.is_dir():
        raise MissingFileError(labels, f"{labels}: label folder not found")
    try:
        ds = open_dataset(labels)
        found = {r.case_id: (r.label, recorded_reading(r), r.images) for r in ds.refs if r.label is not None}
        if found:
            return found
    except DataError:
        pass  # not a dataset layout: a folder of label maps such as `brainseg predict` writes
    # the convention predictions.json records, where `brainseg predict` wrote one
    return {cid: (path, conv, None) for cid, (path, conv) in prediction_files(labels).items()}


def _brain_mask(images: Mapping[str, Path]) -> np.ndarray:
    """Nonzero voxels of any modality (BraTS scans are skull-stripped, 0 outside the brain)."""
    from brainseg_tf.io import load_nifti

    mask = None
    for path in images.values():
        data = np.asarray(load_nifti(path).data)
        nz = data != 0 if data.ndim == 3 else np.any(data != 0, axis=-1)
        mask = nz if mask is None else mask | nz
    return mask


def feature_rows(
    labels: str | Path,
    *,
    images: str | Path | None = None,
    clinical: str | Path | ClinicalTable | None = None,
    convention: str | None = None,
    tcia_by_number: bool = False,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """:func:`case_features` of every label map in a folder, one row per case.

    Args:
        labels: a dataset folder (its masks; brain masks from its scans) or a folder of label
            maps (``<case_id>.nii.gz`` as ``brainseg predict`` writes, any BraTS convention).
        images: the dataset the label maps belong to, for brain masks (optional for a dataset
            folder, which has its own scans).
        clinical: a clinical table; adds ``clinical_id``, ``age`` and ``resection`` columns for
            the cases that pair (see :func:`~brainseg_tf.survival.match_ids`).
        convention: label convention or scheme of the label maps (``"brats"``, ``"brats2023"``,
            ``"msd"``, ``"canonical"``, ``"ped2024"``: :func:`tissue_labels` reduces a scheme to the
            glioma tissues); default: the dataset's layout or the file's header stamp, else decided by
            :func:`brainseg_tf.evaluation.resolve_convention` (never guessed where it matters).
        tcia_by_number: see :func:`~brainseg_tf.survival.match_ids`.
        progress: progress bar over cases.

    Returns:
        Rows ``{"case_id", **features[, "clinical_id", "age", "resection"]}`` sorted by case id.

    Raises:
        MissingFileError, DataError: missing folders, unreadable label maps, a label map whose
            case is not in ``images``.
    """

    from brainseg_tf.io import open_dataset
    from brainseg_tf.io.labels import read_label_file

    sources = _label_sources(labels)
    if not sources:
        raise DataError(labels, f"{labels}: no label maps found")
    image_refs = None
    if images is not None:
        image_refs = {r.case_id: r.images for r in open_dataset(images).refs}
    table = as_table(clinical) if clinical is not None else None
    pairs = match_ids(table.ids, sources, tcia_by_number=tcia_by_number) if table is not None else {}
    records = table.by_id() if table is not None else {}
    rows = []
    for cid in show_progress(sorted(sources), desc="features", disable=not progress):
        path, recorded, own_images = sources[cid]
        read = read_label_file(path, recorded, explicit=convention, flag="--convention")
        try:
            label = tissue_labels(read.labels, read.reading.scheme)
        except ValueError as exc:
            raise DataError(path, f"{path}: {exc}") from exc
        affine, spacing = read.affine, read.spacing
        files = own_images
        if image_refs is not None:
            if cid not in image_refs:
                raise DataError(path, f"{path}: case {cid!r} is not in the image dataset {images}")
            files = image_refs[cid]
        brain = _brain_mask(files) if files else None
        if brain is not None and brain.shape != label.shape:
            raise DataError(path, f"{path}: label shape {label.shape} differs from its scans' {brain.shape}")
        row: dict[str, Any] = {"case_id": cid, **case_features(label, spacing, affine, brain)}
        if table is not None and cid in pairs:
            rec = records[pairs[cid]]
            row.update({"clinical_id": rec.case_id, "age": rec.age, "resection": rec.resection})
        rows.append(row)
    return rows


def write_features(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write feature rows as CSV (``case_id`` first; floats in full precision, NaN as empty)."""
    if not rows:
        raise ValueError("no feature rows to write")
    columns = list(rows[0])
    for row in rows[1:]:
        columns += [k for k in row if k not in columns]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else repr(value)
        return "" if value is None else str(value)

    lines = [",".join(columns)] + [",".join(cell(row.get(c)) for c in columns) for row in rows]
    return atomic.write_text(path, "\n".join(lines) + "\n")


def _feature_row(path: Path, line: int, cid: str, header: list[str], cells: list[str]) -> dict[str, Any]:
    """One row of a feature table: text columns as they are, numbers as floats, empty as NaN."""
    row: dict[str, Any] = {}
    for name, text in zip(header, cells):
        if name in _TEXT_COLUMNS:
            row[name] = text
        elif text == "":
            row[name] = math.nan
        else:
            try:
                row[name] = float(text)
            except ValueError:
                raise cell_error(path, line, cid, name, f"{text!r} is not a number") from None
            if not math.isfinite(row[name]):
                raise cell_error(path, line, cid, name, f"{text!r} is not finite")
    if row.get("resection", "NA") not in RESECTIONS + ("",):
        raise cell_error(path, line, cid, "resection", f"{row['resection']!r} is not GTR, STR or NA")
    return row


def read_features(path: str | Path) -> list[dict[str, Any]]:
    """Read a :func:`write_features` table back; empty cells become NaN (``""`` for text columns).

    Raises:
        DataError: no ``case_id`` column, a duplicate case id, a non-numeric feature value or an
            unknown resection status; the message names the file, line and column.
    """
    path, header, rows = read_rows(path)
    if "case_id" not in header:
        raise DataError(path, f"{path}: header {header} has no 'case_id' column")
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        cid = cells[header.index("case_id")]
        if not cid:
            raise cell_error(path, line, None, "case_id", "empty case id")
        if cid in seen:
            raise cell_error(path, line, cid, "case_id", f"duplicate of line {seen[cid]}")
        seen[cid] = line
        out.append(_feature_row(path, line, cid, header, cells))
    return out
