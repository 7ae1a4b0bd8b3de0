"""Overall-survival (OS) prediction, the BraTS 2017-2020 second task (NumPy/SciPy/scikit-learn, no TensorFlow).

For each pre-operative patient, predict survival in days from tumour features of a label map
(ground truth or the output of ``brainseg predict``), age and resection status. BraTS ranks on
3-class accuracy with the classes below; MSE, median squared error and Spearman's rho are reported
beside it, and only gross-total-resection (GTR) patients are scored where the status is known.

Classes (stated once, :data:`CLASS_THRESHOLDS_DAYS`; BraTS counts a month as 30 days):

* ``short``: survival < 300 days (< 10 months);
* ``mid``: 300 <= survival <= 450 days (10-15 months);
* ``long``: survival > 450 days (> 15 months).

Example::

    model = fit("survival_info.csv", labels="data/BraTS2020", method="forest")
    model.save("os_model.json")
    days = load("os_model.json").predict_one({"age": 61.0, **case_features(label, spacing)})
    days = predict(model, label, spacing, age=61.0, resection="GTR")

Fitted models are plain JSON (coefficients, standardisation, tree structure), evaluated here
with NumPy: loading one executes no code, and predictions after a reload are bit-identical.
scikit-learn is used only to fit.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf import atomic
from brainseg_tf.conventions import REGION_LABELS
from brainseg_tf.io.errors import DataError, MissingFileError

__all__ = [
    "CLASS_THRESHOLDS_DAYS",
    "SURVIVAL_CLASSES",
    "FEATURE_NAMES",
    "IMAGING_FEATURES",
    "CLINICAL_FEATURES",
    "METHODS",
    "ClinicalRecord",
    "ClinicalTable",
    "TrainingSet",
    "SurvivalModel",
    "case_features",
    "survival_class",
    "read_clinical",
    "match_ids",
    "feature_rows",
    "write_features",
    "read_features",
    "training_set",
    "fit",
    "fit_training_set",
    "predict",
    "predict_table",
    "load",
    "cross_validate",
    "scores",
    "evaluate_predictions",
    "format_scores",
    "read_predictions",
    "write_predictions",
    "kaplan_meier",
    "wilson_interval",
    "bootstrap_ci",
]

# ----------------------------------------------------------------------------------- constants

CLASS_THRESHOLDS_DAYS: tuple[float, float] = (300.0, 450.0)  # short < 300 <= mid <= 450 < long
SURVIVAL_CLASSES: tuple[str, ...] = ("short", "mid", "long")
MIN_PREDICTED_DAYS = 1.0  # predictions are clipped below at one day (a linear fit can go negative)
MODEL_FORMAT = "brainseg_tf.survival"
MODEL_VERSION = 1
RESECTIONS: tuple[str, ...] = ("GTR", "STR", "NA")  # NA: not available (also an empty cell)
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connected components, as BraTS 2023 lesion-wise

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
CLINICAL_FEATURES: tuple[str, ...] = ("age", "resection_gtr", "resection_str")
METHODS: tuple[str, ...] = ("majority", "age", "ridge", "forest")
_RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
_FOREST = {"n_estimators": 100, "min_samples_leaf": 5, "max_features": 0.5}


def survival_class(days: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """BraTS survival class per value: 0 short (< 300 d), 1 mid (300-450 d), 2 long (> 450 d).

    Returns:
        int array of the input's shape (a 0-d array for a scalar).

    Raises:
        ValueError: a NaN or negative number of days.
    """
    d = np.asarray(days, dtype=np.float64)
    if np.any(~np.isfinite(d)) or np.any(d < 0):
        raise ValueError(f"days={days!r}: survival must be finite and >= 0")
    short_max, mid_max = CLASS_THRESHOLDS_DAYS
    return np.where(d < short_max, 0, np.where(d <= mid_max, 1, 2)).astype(np.int64)


# ----------------------------------------------------------------------------------- features


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    try:
        sp = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing={spacing!r} must be three voxel sizes in mm") from None
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing={spacing!r} must be three positive finite voxel sizes in mm")
    return sp  # type: ignore[return-value]


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    out = []
    for axis in range(mask.ndim):
        nz = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(out)


def _shape_features(mask: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Components, extent, surface area (mm^2) and sphericity of one non-empty region mask."""
    from scipy import ndimage
    from skimage import measure

    box = _bbox(mask)
    sub = mask[box]
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


def case_features(
    label: np.ndarray,
    spacing: Sequence[float],
    affine: np.ndarray | None = None,
    brain_mask: np.ndarray | None = None,
) -> dict[str, float]:
    """Tumour features of one canonical label map, in :data:`FEATURE_NAMES` order.

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
        label: ``(X, Y, Z)`` integer canonical labels (0 BG, 1 NCR, 2 ED, 3 ET).
        spacing: voxel size in mm ``(sx, sy, sz)``.
        affine: 4x4 voxel-to-world affine of the scan (optional).
        brain_mask: ``(X, Y, Z)`` bool brain (nonzero scan voxels; optional).

    Returns:
        ``{feature name: float}``.

    Raises:
        ValueError: label not 3D or with values outside 0-3, bad spacing, affine or mask shape.
    """
    lab = np.asarray(label)
    if lab.ndim != 3:
        raise ValueError(f"label has shape {lab.shape}; expected (X, Y, Z) canonical labels")
    if lab.size and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() > 3):
        raise ValueError(
            f"label values must be canonical integers 0-3 (got dtype {lab.dtype}, "
            f"range {lab.min()}..{lab.max()}); convert with brainseg_tf.io.to_canonical"
        )
    sp = _check_spacing(spacing)
    voxel_ml = sp[0] * sp[1] * sp[2] / 1000.0
    counts = np.bincount(lab.ravel().astype(np.intp), minlength=4)
    vol = {"ncr_ml": counts[1] * voxel_ml, "ed_ml": counts[2] * voxel_ml, "et_ml": counts[3] * voxel_ml}
    vol["tc_ml"] = float(counts[list(REGION_LABELS["TC"])].sum()) * voxel_ml
    vol["wt_ml"] = float(counts[list(REGION_LABELS["WT"])].sum()) * voxel_ml
    n = {"ncr": counts[1], "ed": counts[2], "et": counts[3], "tc": counts[[1, 3]].sum(), "wt": counts[1:].sum()}

    def ratio(a: str, b: str) -> float:
        return float(n[a]) / float(n[b]) if n[b] else 0.0

    out: dict[str, float] = {k: float(v) for k, v in vol.items()}
    for name in RATIO_FEATURES:
        a, b = name.split("_over_")
        out[name] = ratio(a, b)
    if brain_mask is not None:
        brain = np.asarray(brain_mask, dtype=bool)
        if brain.shape != lab.shape:
            raise ValueError(f"brain_mask has shape {brain.shape}, label {lab.shape}")
        n_brain = int(np.count_nonzero(brain | (lab > 0)))  # tumour counts as brain
        out["brain_ml"] = n_brain * voxel_ml
        for region in ("wt", "tc", "et"):
            out[f"{region}_brain_fraction"] = float(n[region]) / n_brain if n_brain else 0.0
    else:
        out.update(dict.fromkeys(BRAIN_FEATURES, math.nan))
    for region in ("wt", "tc"):
        mask = np.isin(lab, REGION_LABELS[region.upper()])
        shape = (
            _shape_features(mask, sp)
            if n[region]
            else dict.fromkeys(("components", "extent", "surface_mm2", "sphericity"), 0.0)
        )
        for key, value in shape.items():
            out[f"{region}_{key}"] = value
    centroid = [math.nan] * 3
    if affine is not None:
        aff = np.asarray(affine, dtype=np.float64)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise ValueError(f"affine must be a finite 4x4 matrix, got shape {aff.shape}")
        if n["wt"]:
            idx = np.nonzero(lab > 0)
            vox = np.array([i.mean(dtype=np.float64) for i in idx])
            centroid = [float(v) for v in aff[:3, :3] @ vox + aff[:3, 3]]
    out.update(zip(CENTROID_FEATURES, centroid))
    return {k: out[k] for k in FEATURE_NAMES}


# ----------------------------------------------------------------------------------- clinical tables

_ID_COLUMNS = re.compile(r"^(brats\d{2,4}_?id|case_?id|subject_?id|id)$", re.IGNORECASE)
_SURVIVAL_COLUMNS = ("survival_days", "survival")
_RESECTION_COLUMNS = ("extent_of_resection", "resectionstatus", "resection_status", "resection")
_ALIVE = re.compile(r"^alive(?:\s*\(\s*(\d+(?:\.\d*)?)\s*days?\s*later\s*\))?$", re.IGNORECASE)
_MISSING = {"", "na", "n/a", "nan", "none", "unknown"}


@dataclass(frozen=True)
class ClinicalRecord:
    """One patient of a clinical table.

    Attributes:
        case_id: the table's identifier (e.g. ``Brats17_CBICA_ABM_1``).
        age: years; NaN when the cell is empty.
        survival_days: overall survival in days; NaN when missing or censored.
        alive_days: for a censored patient (``ALIVE (361 days later)``), the follow-up in days
            (NaN when not given); NaN otherwise.
        resection: ``"GTR"``, ``"STR"`` or ``"NA"`` (not available, also an empty cell).
        line: line of the file (the header is line 1).
        censored: the survival cell says ``ALIVE``.
    """

    case_id: str
    age: float
    survival_days: float
    alive_days: float
    resection: str
    line: int
    censored: bool = False


@dataclass
class ClinicalTable:
    """The records of a clinical table plus where they came from.

    ``format`` is ``"brats2020"`` (``Brats20ID, Age, Survival_days, Extent_of_Resection``),
    ``"brats2018"`` (2018/2019: ``BraTS18ID, Age, Survival, ResectionStatus``), ``"brats2017"``
    (``Brats17ID, Age, Survival``) or ``"validation"`` (no survival column).
    """

    path: Path | None
    format: str
    records: list[ClinicalRecord]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [r.case_id for r in self.records]

    def by_id(self) -> dict[str, ClinicalRecord]:
        return {r.case_id: r for r in self.records}

    @property
    def has_resection(self) -> bool:
        return any(r.resection != "NA" for r in self.records)


def _cell_error(path: Path, line: int, case_id: str | None, column: str, problem: str) -> DataError:
    who = f" (case {case_id!r})" if case_id else ""
    return DataError(path, f"{path}: line {line}{who}, column {column!r}: {problem}")


def _parse_number(text: str, path: Path, line: int, case_id: str, column: str, *, upper: float) -> float:
    if text.strip().lower() in _MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise _cell_error(path, line, case_id, column, f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or value > upper:
        raise _cell_error(path, line, case_id, column, f"{text!r} is outside 0..{upper:g}")
    return value


def _read_csv(path: str | Path) -> tuple[Path, list[str], list[tuple[int, list[str]]]]:
    """Header and (line, cells) rows of a CSV file; blank lines skipped, ragged rows refused."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"{path}: not UTF-8 text ({exc})") from exc
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        cells = [c.strip() for c in cells]
        if header is None:
            header = cells
            continue
        if len(cells) != len(header):
            raise DataError(
                path,
                f"{path}: line {reader.line_num} has {len(cells)} fields, the header "
                f"{len(header)} ({', '.join(header)})",
            )
        rows.append((reader.line_num, cells))
    if header is None:
        raise DataError(path, f"{path}: empty table (no header line)")
    return path, header, rows


def _find_column(header: list[str], names: Iterable[str]) -> int | None:
    lower = [h.lower() for h in header]
    for name in names:
        if name in lower:
            return lower.index(name)
    return None


def read_clinical(path: str | Path) -> ClinicalTable:
    """Read a BraTS clinical table: 2020 ``survival_info.csv``, 2018/2019 ``survival_data.csv``,
    the 2017 table, or a validation table without survival (format detected from the header).

    Cells: ``Age`` in years; survival in days, ``ALIVE (N days later)`` (censored) or empty;
    resection ``GTR``, ``STR``, ``NA`` or empty (unknown). Column names are matched
    case-insensitively.

    Raises:
        MissingFileError: no such file.
        DataError: a missing id or age column, an empty or duplicate case id, a non-numeric or
            out-of-range age or survival, an unknown resection status, a ragged row. The
            message names the file, the line and the column.
    """
    path, header, rows = _read_csv(path)
    id_col = next((i for i, h in enumerate(header) if _ID_COLUMNS.match(h)), None)
    age_col = _find_column(header, ("age",))
    for col, what in ((id_col, "case id column (e.g. Brats20ID, BraTS18ID, Brats17ID)"), (age_col, "'Age' column")):
        if col is None:
            raise DataError(path, f"{path}: header {header} has no {what}")
    surv_col = _find_column(header, _SURVIVAL_COLUMNS)
    res_col = _find_column(header, _RESECTION_COLUMNS)
    if surv_col is None:
        fmt = "validation"
    elif header[surv_col].lower() == "survival_days":
        fmt = "brats2020"
    else:
        fmt = "brats2018" if res_col is not None else "brats2017"
    records: list[ClinicalRecord] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        cid = cells[id_col]
        if not cid or any(ch.isspace() for ch in cid):
            raise _cell_error(path, line, None, header[id_col], f"{cid!r} is not a case id")
        if cid in seen:
            raise _cell_error(path, line, cid, header[id_col], f"duplicate of line {seen[cid]}")
        seen[cid] = line
        age = _parse_number(cells[age_col], path, line, cid, header[age_col], upper=130.0)
        days = alive = math.nan
        censored = False
        if surv_col is not None:
            text = cells[surv_col]
            alive_match = _ALIVE.match(text)
            if alive_match:
                censored = True
                alive = float(alive_match.group(1)) if alive_match.group(1) else math.nan
            else:
                days = _parse_number(text, path, line, cid, header[surv_col], upper=36500.0)
        resection = "NA"
        if res_col is not None:
            value = cells[res_col].upper()
            if value.lower() in _MISSING:
                value = "NA"
            if value not in RESECTIONS:
                raise _cell_error(
                    path,
                    line,
                    cid,
                    header[res_col],
                    f"{cells[res_col]!r} is not a resection status (GTR, STR, NA or empty)",
                )
            resection = value
        records.append(ClinicalRecord(cid, age, days, alive, resection, line, censored))
    return ClinicalTable(path, fmt, records)


def _as_table(clinical: str | Path | ClinicalTable) -> ClinicalTable:
    return clinical if isinstance(clinical, ClinicalTable) else read_clinical(clinical)


_YEAR_PREFIX = re.compile(r"^brats\d{2}_", re.IGNORECASE)
_TCIA_2018 = re.compile(r"^tcia\d{2}_(\d+_\d+)$")


def _id_core(case_id: str) -> str:
    return _YEAR_PREFIX.sub("", case_id).lower()


def match_ids(table_ids: Iterable[str], case_ids: Iterable[str], *, tcia_by_number: bool = False) -> dict[str, str]:
    """Pair case ids (folders, label files) with clinical-table ids.

    Exact ids pair first; then ids equal after dropping the edition prefix (``Brats17_``,
    ``Brats18_``, ``BraTS19_``, case-insensitive): ``Brats17_CBICA_ABM_1`` is the case folder
    ``Brats18_CBICA_ABM_1``, ``Brats17_2013_11_1`` is ``Brats18_2013_11_1``. The 2017 TCIA ids
    (``Brats17_TCIA_201_1``) drop the institution number of the 2018 ids
    (``Brats18_TCIA01_201_1``); with ``tcia_by_number`` they pair by the trailing number when
    exactly one case has it (plausible but unverified, hence opt-in).

    Returns:
        ``{case_id: table_id}`` for the cases that pair; the others are left out.
    """
    table_ids = list(table_ids)
    exact = set(table_ids)
    by_core: dict[str, str] = {}
    for tid in table_ids:
        by_core.setdefault(_id_core(tid), tid)
    out: dict[str, str] = {}
    tcia: dict[str, list[str]] = {}
    for cid in case_ids:
        if cid in exact:
            out[cid] = cid
        elif _id_core(cid) in by_core:
            out[cid] = by_core[_id_core(cid)]
        elif tcia_by_number and (m := _TCIA_2018.match(_id_core(cid))):
            tcia.setdefault(f"tcia_{m.group(1)}", []).append(cid)
    for core, cids in tcia.items():
        if len(cids) == 1 and core in by_core:
            out[cids[0]] = by_core[core]
    used: dict[str, str] = {}
    for cid, tid in sorted(out.items()):
        if tid in used:
            raise ValueError(f"cases {used[tid]!r} and {cid!r} both pair with the table id {tid!r}")
        used[tid] = cid
    return out


# ----------------------------------------------------------------------------------- feature tables


def _label_sources(labels: str | Path) -> dict[str, tuple[Path, str | None, dict[str, Path] | None]]:
    """Case id -> (label file, convention or None, image files or None) of a folder."""
    from brainseg_tf.evaluation import scan_label_files
    from brainseg_tf.io import open_dataset

    labels = Path(labels)
    if not labels.is_dir():
        raise MissingFileError(labels, f"{labels}: label folder not found")
    try:
        ds = open_dataset(labels)
        found = {r.case_id: (r.label, r.convention, r.images) for r in ds.refs if r.label is not None}
        if found:
            return found
    except DataError:
        pass  # not a dataset layout: a folder of label maps such as `brainseg predict` writes
    return {cid: (path, None, None) for cid, path in scan_label_files(labels).items()}


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
            the cases that pair (see :func:`match_ids`).
        convention: label convention of the label maps (``"brats"``, ``"brats2023"``, ``"msd"``,
            ``"canonical"``); default: the dataset's or the file's header stamp, else decided by
            :func:`brainseg_tf.evaluation.resolve_convention` (never guessed where it matters).
        tcia_by_number: see :func:`match_ids`.
        progress: progress bar over cases.

    Returns:
        Rows ``{"case_id", **features[, "clinical_id", "age", "resection"]}`` sorted by case id.

    Raises:
        MissingFileError, DataError: missing folders, unreadable label maps, a label map whose
            case is not in ``images``.
    """
    from tqdm.auto import tqdm

    from brainseg_tf.evaluation import load_labels
    from brainseg_tf.io import open_dataset

    sources = _label_sources(labels)
    if not sources:
        raise DataError(labels, f"{labels}: no label maps found")
    image_refs = None
    if images is not None:
        image_refs = {r.case_id: r.images for r in open_dataset(images).refs}
    table = _as_table(clinical) if clinical is not None else None
    pairs = match_ids(table.ids, sources, tcia_by_number=tcia_by_number) if table is not None else {}
    records = table.by_id() if table is not None else {}
    rows = []
    for cid in tqdm(sorted(sources), desc="features", unit="case", disable=not progress):
        path, recorded, own_images = sources[cid]
        label, affine, spacing = load_labels(path, recorded, explicit=convention, flag="--convention")
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


_TEXT_COLUMNS = ("case_id", "clinical_id", "resection")


def read_features(path: str | Path) -> list[dict[str, Any]]:
    """Read a :func:`write_features` table back; empty cells become NaN (``""`` for text columns).

    Raises:
        DataError: no ``case_id`` column, a duplicate case id, a non-numeric feature value or an
            unknown resection status; the message names the file, line and column.
    """
    path, header, rows = _read_csv(path)
    if "case_id" not in header:
        raise DataError(path, f"{path}: header {header} has no 'case_id' column")
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        row: dict[str, Any] = {}
        cid = cells[header.index("case_id")]
        if not cid:
            raise _cell_error(path, line, None, "case_id", "empty case id")
        if cid in seen:
            raise _cell_error(path, line, cid, "case_id", f"duplicate of line {seen[cid]}")
        seen[cid] = line
        for name, text in zip(header, cells):
            if name in _TEXT_COLUMNS:
                row[name] = text
            elif text == "":
                row[name] = math.nan
            else:
                try:
                    row[name] = float(text)
                except ValueError:
                    raise _cell_error(path, line, cid, name, f"{text!r} is not a number") from None
                if not math.isfinite(row[name]):
                    raise _cell_error(path, line, cid, name, f"{text!r} is not finite")
        if row.get("resection", "NA") not in RESECTIONS + ("",):
            raise _cell_error(path, line, cid, "resection", f"{row['resection']!r} is not GTR, STR or NA")
        out.append(row)
    return out


def _clinical_values(age: float, resection: str | None) -> dict[str, float]:
    res = (resection or "NA").upper()
    if res not in RESECTIONS:
        raise ValueError(f"resection={resection!r}; expected one of {list(RESECTIONS)} or None")
    return {"age": float(age), "resection_gtr": float(res == "GTR"), "resection_str": float(res == "STR")}


# ----------------------------------------------------------------------------------- training sets


@dataclass
class TrainingSet:
    """Patients with known survival, their feature columns, and who was left out and why.

    Attributes:
        case_ids: the clinical table's ids of the patients, in table order.
        columns: feature name -> ``(n,)`` float64 (``age``, ``resection_gtr``, ``resection_str``,
            plus :data:`FEATURE_NAMES` when label maps or a feature table were given).
        days: ``(n,)`` float64 overall survival in days.
        resection: ``(n,)`` resection status per patient.
        excluded: reason -> ids left out (table ids: censored, no survival, no age, no label map;
            case ids: a case without a clinical row).
        case_for: table id -> case id (label folder or feature table) for imaging patients.
    """

    case_ids: list[str]
    columns: dict[str, np.ndarray]
    days: np.ndarray
    resection: list[str]
    excluded: dict[str, list[str]] = field(default_factory=dict)
    case_for: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def has_imaging(self) -> bool:
        return "wt_ml" in self.columns

    def subset(self, index: Sequence[int] | np.ndarray) -> TrainingSet:
        idx = np.asarray(index, dtype=np.intp)
        return TrainingSet(
            [self.case_ids[i] for i in idx],
            {k: v[idx] for k, v in self.columns.items()},
            self.days[idx],
            [self.resection[i] for i in idx],
            {},
            self.case_for,
        )


def training_set(
    clinical: str | Path | ClinicalTable,
    labels: str | Path | None = None,
    features: str | Path | Sequence[Mapping[str, Any]] | None = None,
    *,
    images: str | Path | None = None,
    convention: str | None = None,
    tcia_by_number: bool = False,
    progress: bool = False,
) -> TrainingSet:
    """Join a clinical table with per-case features (from label maps or a feature table).

    Without ``labels`` and ``features`` every patient with age and survival is kept (clinical
    columns only). With them, only the patients whose case pairs (:func:`match_ids`) are kept.
    Censored patients (``ALIVE``) are left out: their survival is unknown. ``images`` and
    ``convention`` go to :func:`feature_rows`.

    Raises:
        DataError: bad tables (see :func:`read_clinical`, :func:`read_features`), or no patient left.
    """
    table = _as_table(clinical)
    rows: list[Mapping[str, Any]] | None = None
    if labels is not None and features is not None:
        raise ValueError("give labels= or features=, not both")
    if labels is not None:
        rows = feature_rows(labels, images=images, convention=convention, progress=progress)
    elif features is not None:
        rows = read_features(features) if isinstance(features, (str, Path)) else list(features)
    excluded: dict[str, list[str]] = {}
    by_table: dict[str, Mapping[str, Any]] = {}
    case_for: dict[str, str] = {}
    if rows is not None:
        row_by_case = {str(r["case_id"]): r for r in rows}
        pairs = match_ids(table.ids, row_by_case, tcia_by_number=tcia_by_number)
        case_for = {tid: cid for cid, tid in pairs.items()}
        by_table = {tid: row_by_case[cid] for tid, cid in case_for.items()}
        unpaired = sorted(set(row_by_case) - set(pairs))
        if unpaired:
            excluded["case without a clinical row"] = unpaired
    keep: list[ClinicalRecord] = []
    for rec in table.records:
        reason = None
        if rows is not None and rec.case_id not in by_table:
            reason = "no label map"
        elif rec.censored:
            reason = "censored (ALIVE)"
        elif math.isnan(rec.survival_days):
            reason = "no survival"
        elif math.isnan(rec.age):
            reason = "no age"
        if reason:
            excluded.setdefault(reason, []).append(rec.case_id)
        else:
            keep.append(rec)
    if not keep:
        raise DataError(
            table.path,
            f"{table.path}: no patient with age and survival"
            + (" pairs with a case of the label maps/feature table" if rows is not None else ""),
        )
    clin = [_clinical_values(r.age, r.resection) for r in keep]
    columns = {k: np.array([c[k] for c in clin], dtype=np.float64) for k in CLINICAL_FEATURES}
    if rows is not None:
        names = [k for k in FEATURE_NAMES if all(k in by_table[r.case_id] for r in keep)]
        for name in names:
            columns[name] = np.array([float(by_table[r.case_id][name]) for r in keep], dtype=np.float64)
    kept_ids = [r.case_id for r in keep]
    return TrainingSet(
        kept_ids,
        columns,
        np.array([r.survival_days for r in keep]),
        [r.resection for r in keep],
        excluded,
        {t: case_for[t] for t in kept_ids if t in case_for},
    )


# ----------------------------------------------------------------------------------- models


def _tree_to_json(tree: Any) -> dict[str, list]:
    t = tree.tree_
    return {
        "left": [int(v) for v in t.children_left],
        "right": [int(v) for v in t.children_right],
        "feature": [int(v) for v in t.feature],
        "threshold": [float(v) for v in t.threshold],
        "value": [float(v) for v in t.value[:, 0, 0]],
    }


def _tree_predict(tree: Mapping[str, list], x32: np.ndarray) -> float:
    """Leaf value of one JSON tree for one sample (features compared as float32, as scikit-learn does)."""
    node = 0
    left, right, feature, threshold = tree["left"], tree["right"], tree["feature"], tree["threshold"]
    while left[node] != -1:
        node = left[node] if x32[feature[node]] <= threshold[node] else right[node]
    return tree["value"][node]


@dataclass
class SurvivalModel:
    """A fitted overall-survival model: plain data, evaluated with NumPy.

    Attributes:
        method: one of :data:`METHODS`.
        features: the feature names the model reads, in order.
        params: the fitted numbers (JSON types only).
        meta: training facts (patients, excluded, dropped features, seed, source files).
    """

    method: str
    features: tuple[str, ...]
    params: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def _vector(self, row: Mapping[str, Any]) -> np.ndarray:
        bad = [f for f in self.features if not math.isfinite(float(row.get(f, math.nan)))]
        if bad:
            raise ValueError(
                f"the {self.method} model needs features {bad}, missing or NaN here "
                "(centroids need affine=, brain fractions brain_mask=)"
            )
        return np.array([float(row[f]) for f in self.features], dtype=np.float64)

    def predict_one(self, row: Mapping[str, Any]) -> float:
        """Predicted survival in days (>= :data:`MIN_PREDICTED_DAYS`) for one feature row."""
        x = self._vector(row)
        p = self.params
        if self.method == "majority":
            days = p["days"]
        elif self.method in ("age", "ridge"):
            terms = [c * ((v - m) / s) for c, v, m, s in zip(p["coef"], x, p["mean"], p["scale"])]
            days = p["intercept"] + math.fsum(terms)  # exactly rounded: no BLAS-order dependence
        elif self.method == "forest":
            x32 = x.astype(np.float32)
            days = math.fsum(_tree_predict(t, x32) for t in p["trees"]) / len(p["trees"])
        else:
            raise ValueError(f"unknown method {self.method!r}")
        return max(float(days), MIN_PREDICTED_DAYS)

    def predict_rows(self, rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`predict_one` over rows -> ``(n,)`` float64 days."""
        return np.array([self.predict_one(r) for r in rows], dtype=np.float64)

    def predict_set(self, data: TrainingSet) -> np.ndarray:
        """Predictions for every patient of a :class:`TrainingSet`."""
        n = len(data)
        return self.predict_rows({k: v[i] for k, v in data.columns.items()} for i in range(n))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "method": self.method,
            "features": list(self.features),
            "class_thresholds_days": list(CLASS_THRESHOLDS_DAYS),
            "params": self.params,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (atomic); :func:`load` reads it back bit-identically."""
        return atomic.write_json(path, self.to_dict(), indent=1)


def load(path: str | Path) -> SurvivalModel:
    """Read a model written by :meth:`SurvivalModel.save` (plain JSON; no code is executed).

    Raises:
        MissingFileError: no such file.
        DataError: not a survival model file, another format version, or missing fields.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{path}: model file not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"{path}: not a JSON survival model ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise DataError(path, f"{path}: not a {MODEL_FORMAT} model file")
    if obj.get("version") != MODEL_VERSION:
        raise DataError(
            path, f"{path}: model format version {obj.get('version')!r}, this version reads {MODEL_VERSION}"
        )
    if obj.get("method") not in METHODS or not isinstance(obj.get("params"), dict):
        raise DataError(path, f"{path}: unknown method {obj.get('method')!r} or no params")
    if tuple(obj.get("class_thresholds_days", ())) != CLASS_THRESHOLDS_DAYS:
        raise DataError(
            path, f"{path}: class thresholds {obj.get('class_thresholds_days')} differ from {CLASS_THRESHOLDS_DAYS}"
        )
    return SurvivalModel(obj["method"], tuple(obj.get("features", ())), obj["params"], obj.get("meta", {}))


def _default_features(method: str, data: TrainingSet) -> tuple[str, ...]:
    if method == "majority":
        return ()
    if method == "age":
        return ("age",)
    return CLINICAL_FEATURES + (IMAGING_FEATURES if data.has_imaging else ())


def _fit_arrays(method: str, x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    if method == "majority":
        cls = survival_class(y)
        counts = np.bincount(cls, minlength=3)
        top = int(np.argmax(counts))  # ties go to the shorter class
        return {"days": float(np.median(y[cls == top])), "class": SURVIVAL_CLASSES[top]}
    if method in ("age", "ridge"):
        from sklearn.linear_model import LinearRegression, RidgeCV

        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        if method == "age":  # the published baseline: ordinary least squares on raw age
            mean, scale = np.zeros_like(mean), np.ones_like(scale)
        z = (x - mean) / scale
        est = LinearRegression() if method == "age" else RidgeCV(alphas=_RIDGE_ALPHAS)
        est.fit(z, y)
        out = {
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "coef": [float(c) for c in est.coef_],
            "intercept": float(est.intercept_),
        }
        if method == "ridge":
            out["alpha"] = float(est.alpha_)
        return out
    if method == "forest":
        from sklearn.ensemble import RandomForestRegressor

        est = RandomForestRegressor(random_state=seed, n_jobs=1, **_FOREST).fit(x, y)
        return {"trees": [_tree_to_json(t) for t in est.estimators_], "settings": dict(_FOREST)}
    raise ValueError(f"method={method!r} is unknown; expected one of {list(METHODS)}")


def fit_training_set(
    data: TrainingSet,
    method: str = "ridge",
    *,
    feature_names: Sequence[str] | None = None,
    seed: int = 0,
) -> SurvivalModel:
    """Fit a model on a :class:`TrainingSet` (see :func:`fit` for methods and features)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; expected one of {list(METHODS)}")
    names = tuple(feature_names) if feature_names is not None else _default_features(method, data)
    unknown = [n for n in names if n not in data.columns]
    if unknown:
        raise ValueError(f"feature_names {unknown} are not in the training data (have {sorted(data.columns)})")
    x = np.stack([data.columns[n] for n in names], axis=1) if names else np.zeros((len(data), 0))
    bad = [n for j, n in enumerate(names) if not np.all(np.isfinite(x[:, j]))]
    if bad:
        raise ValueError(
            f"features {bad} have missing (NaN) values; brain fractions need the scans "
            "(images=) and centroids an affine"
        )
    dropped: list[str] = []
    if method in ("ridge", "forest"):  # a constant column carries nothing (and breaks standardising)
        dropped = [n for j, n in enumerate(names) if np.ptp(x[:, j]) == 0]
        kept = [j for j, n in enumerate(names) if n not in dropped]
        names, x = tuple(names[j] for j in kept), x[:, kept]
    if method != "majority" and not names:
        raise ValueError(f"no varying feature left to fit a {method} model (dropped {dropped})")
    params = _fit_arrays(method, x, data.days, int(seed))
    meta = {
        "patients": len(data),
        "seed": int(seed),
        "dropped_constant": dropped,
        "excluded": {k: len(v) for k, v in data.excluded.items()},
    }
    return SurvivalModel(method, names, params, meta)


def fit(
    clinical: str | Path | ClinicalTable,
    labels: str | Path | None = None,
    features: str | Path | Sequence[Mapping[str, Any]] | None = None,
    method: str = "ridge",
    *,
    feature_names: Sequence[str] | None = None,
    images: str | Path | None = None,
    convention: str | None = None,
    tcia_by_number: bool = False,
    seed: int = 0,
) -> SurvivalModel:
    """Fit an overall-survival model (target: survival in days).

    Methods: ``"majority"`` (predicts the median survival of the most frequent class: the
    reporting baseline), ``"age"`` (ordinary least squares on age, the BraTS 2018 baseline that
    placed 3rd of 26), ``"ridge"`` (standardised features, ridge penalty chosen by efficient
    leave-one-out over ``1e-2..1e4``), ``"forest"`` (random forest, 100 trees, 5 patients per leaf
    at least, half the features per split, ``seed``). Constant features are dropped.

    Args:
        clinical: a clinical table path (any format :func:`read_clinical` reads) or table.
        labels: a dataset folder or a folder of label maps whose cases pair with the table's ids
            (2017 ids included, see :func:`match_ids`).
        features: a feature table (:func:`write_features` CSV or rows) instead of ``labels``.
        method: see above.
        feature_names: features to use (default: ``age``, resection indicators and, with label
            maps, :data:`IMAGING_FEATURES`).
        images, convention, tcia_by_number: see :func:`feature_rows` / :func:`match_ids`.
        seed: random seed of the forest.

    Returns:
        A :class:`SurvivalModel`.

    Raises:
        DataError: bad tables or no usable patient. ValueError: bad method or feature names.
    """
    data = training_set(clinical, labels, features, images=images, convention=convention, tcia_by_number=tcia_by_number)
    model = fit_training_set(data, method, feature_names=feature_names, seed=seed)
    model.meta["clinical"] = str(clinical.path if isinstance(clinical, ClinicalTable) else clinical)
    return model


def predict(
    model: SurvivalModel | str | Path,
    label: np.ndarray,
    spacing: Sequence[float],
    age: float,
    resection: str | None = None,
    *,
    affine: np.ndarray | None = None,
    brain_mask: np.ndarray | None = None,
) -> float:
    """Predicted overall survival in days of one patient from a canonical label map.

    Args:
        model: a :class:`SurvivalModel` or a saved model path.
        label: ``(X, Y, Z)`` canonical labels (ground truth or a ``brainseg predict`` output).
        spacing: voxel size in mm.
        age: years.
        resection: ``"GTR"``, ``"STR"``, ``"NA"`` or ``None`` (unknown).
        affine, brain_mask: needed only by models that use centroid or brain-fraction features.

    Raises:
        ValueError: the model needs a feature these inputs cannot give.
    """
    model = load(model) if isinstance(model, (str, Path)) else model
    row = {**case_features(label, spacing, affine, brain_mask), **_clinical_values(age, resection)}
    return model.predict_one(row)


def predict_table(
    model: SurvivalModel | str | Path,
    features: str | Path | Sequence[Mapping[str, Any]],
    *,
    clinical: str | Path | ClinicalTable | None = None,
    tcia_by_number: bool = False,
) -> list[tuple[str, float]]:
    """Predicted survival (days) for every row of a feature table.

    Age and resection come from ``clinical`` for the cases that pair with it (e.g. a BraTS
    validation ``survival_evaluation.csv``), else from the table's own ``age``/``resection``
    columns (``brainseg survival features --clinical``).

    Returns:
        ``[(case_id, days)]`` in table order.

    Raises:
        DataError: bad tables, or a case without a value the model needs (age, a feature).
    """
    model = load(model) if isinstance(model, (str, Path)) else model
    source = Path(features) if isinstance(features, (str, Path)) else None
    rows = read_features(features) if source is not None else list(features)
    pairs: dict[str, str] = {}
    records: dict[str, ClinicalRecord] = {}
    if clinical is not None:
        table = _as_table(clinical)
        pairs = match_ids(table.ids, [str(r["case_id"]) for r in rows], tcia_by_number=tcia_by_number)
        records = table.by_id()
    out = []
    for row in rows:
        cid = str(row["case_id"])
        rec = records.get(pairs.get(cid, ""))
        age, resection = (rec.age, rec.resection) if rec else (row.get("age", math.nan), row.get("resection") or None)
        try:
            days = model.predict_one({**row, **_clinical_values(age, resection)})
        except ValueError as exc:
            where = source if source is not None else "features"
            raise DataError(source, f"{where}: case {cid!r}: {exc}") from None
        out.append((cid, days))
    return out


# ----------------------------------------------------------------------------------- scoring


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval (95 % by default) of a proportion ``successes / n``."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan  # undefined for a constant prediction (the majority baseline)
    return float(stats.spearmanr(a, b).statistic)


def scores(true_days: Sequence[float] | np.ndarray, pred_days: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """BraTS survival scores of predictions against true survival (both in days).

    Returns:
        ``n``, ``accuracy`` (3-class, :data:`CLASS_THRESHOLDS_DAYS`) with its 95 % Wilson
        interval ``accuracy_ci``, ``mse`` and ``median_se`` (days^2), ``spearman`` (NaN for a
        constant prediction), ``confusion`` (3x3, rows true class, columns predicted, order
        :data:`SURVIVAL_CLASSES`).
    """
    t = np.asarray(true_days, dtype=np.float64)
    p = np.asarray(pred_days, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"true and predicted days must be 1-D of one length, got {t.shape} and {p.shape}")
    if not len(t):
        raise ValueError("no patients to score")
    ct, cp = survival_class(t), survival_class(p)
    confusion = np.zeros((3, 3), dtype=np.int64)
    np.add.at(confusion, (ct, cp), 1)
    correct = int(np.trace(confusion))
    se = (t - p) ** 2
    return {
        "n": int(len(t)),
        "accuracy": correct / len(t),
        "accuracy_ci": list(wilson_interval(correct, len(t))),
        "mse": float(se.mean()),
        "median_se": float(np.median(se)),
        "spearman": _spearman(t, p),
        "confusion": confusion.tolist(),
    }


def bootstrap_ci(
    true_days: np.ndarray,
    pred_days: np.ndarray,
    metric: str,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a :func:`scores` metric (``accuracy``, ``mse``,
    ``median_se`` or ``spearman``) over patients resampled with replacement."""
    t, p = np.asarray(true_days, dtype=np.float64), np.asarray(pred_days, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        i = rng.integers(0, len(t), len(t))
        if metric == "accuracy":
            values.append(float(np.mean(survival_class(t[i]) == survival_class(p[i]))))
        elif metric == "mse":
            values.append(float(np.mean((t[i] - p[i]) ** 2)))
        elif metric == "median_se":
            values.append(float(np.median((t[i] - p[i]) ** 2)))
        elif metric == "spearman":
            values.append(_spearman(t[i], p[i]))
        else:
            raise ValueError(f"metric={metric!r}; expected accuracy, mse, median_se or spearman")
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    if not len(v):
        return (math.nan, math.nan)
    lo = (1.0 - level) / 2.0
    return (float(np.quantile(v, lo)), float(np.quantile(v, 1.0 - lo)))


def cross_validate(
    data: TrainingSet,
    method: str = "ridge",
    *,
    folds: int = 5,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """K-fold cross-validation with a fixed seed; scores of the pooled out-of-fold predictions.

    Folds are stratified by survival class (scikit-learn ``StratifiedKFold``, shuffled with
    ``seed``) when every class has at least ``folds`` patients, else plain shuffled ``KFold``.

    Returns:
        ``{"method", "folds", "splitter", "predictions" (n,), "scores"` (:func:`scores`),
        "fold_accuracy" (per fold)}``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(data)
    if folds < 2 or folds > n:
        raise ValueError(f"folds={folds} must be between 2 and the number of patients ({n})")
    cls = survival_class(data.days)
    stratify = np.bincount(cls, minlength=3).min() >= folds
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    oof = np.empty(n, dtype=np.float64)
    fold_acc = []
    for train, test in splitter.split(np.zeros(n), cls):
        model = fit_training_set(data.subset(train), method, feature_names=feature_names, seed=seed)
        oof[test] = model.predict_set(data.subset(test))
        fold_acc.append(float(np.mean(survival_class(oof[test]) == cls[test])))
    return {
        "method": method,
        "folds": folds,
        "splitter": "stratified" if stratify else "kfold",
        "predictions": oof,
        "scores": scores(data.days, oof),
        "fold_accuracy": fold_acc,
    }


def write_predictions(case_ids: Sequence[str], days: Sequence[float], path: str | Path, *, header: bool = True) -> Path:
    """Write a BraTS-style submission: ``case_id, survival_days`` per line (header optional)."""
    lines = (["case_id,survival_days"] if header else []) + [f"{c},{float(d)!r}" for c, d in zip(case_ids, days)]
    return atomic.write_text(path, "\n".join(lines) + "\n")


def read_predictions(path: str | Path) -> list[tuple[str, float, int]]:
    """``(case_id, days, line)`` rows of a predictions CSV (two columns, header optional).

    Raises:
        DataError: not two columns, an empty id, a duplicate, or days that are not a number >= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{path}: predictions file not found")
    reader = csv.reader(path.read_text(encoding="utf-8-sig").splitlines())
    out: list[tuple[str, float, int]] = []
    seen: dict[str, int] = {}
    columns = ("case_id", "survival_days")
    for i, cells in enumerate(reader):
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if len(cells) != 2:
            raise DataError(path, f"{path}: line {reader.line_num} has {len(cells)} fields, expected 2 (case id, days)")
        if i == 0 and not _is_number(cells[1]):
            columns = (cells[0], cells[1])
            continue
        cid, text = cells
        if not cid:
            raise _cell_error(path, reader.line_num, None, columns[0], "empty case id")
        if cid in seen:
            raise _cell_error(path, reader.line_num, cid, columns[0], f"duplicate of line {seen[cid]}")
        seen[cid] = reader.line_num
        days = _parse_number(text, path, reader.line_num, cid, columns[1], upper=36500.0)
        if math.isnan(days):
            raise _cell_error(path, reader.line_num, cid, columns[1], "missing prediction")
        out.append((cid, days, reader.line_num))
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def evaluate_predictions(
    predictions: str | Path,
    clinical: str | Path | ClinicalTable,
    *,
    gtr_only: bool | None = None,
    tcia_by_number: bool = False,
) -> dict[str, Any]:
    """Score a predictions CSV against a clinical table, BraTS-style.

    Censored (``ALIVE``) and survival-less patients are not scored. ``gtr_only=None`` scores
    only GTR patients when the table records resection status (the BraTS rule), else all;
    the scores over all patients are reported beside it either way.

    Returns:
        ``{"scored": scores used for ranking, "all": scores over all patients, "gtr_only": bool,
        "not_scored": {reason: [ids]}, "missing": table ids with survival but no prediction}``.

    Raises:
        DataError: a prediction for a case id the table does not have (file, line and column
            named), or nothing to score.
    """
    table = _as_table(clinical)
    preds = read_predictions(predictions)
    pairs = match_ids(table.ids, [c for c, _, _ in preds], tcia_by_number=tcia_by_number)
    records = table.by_id()
    path = Path(predictions)
    true, pred, resection = [], [], []
    not_scored: dict[str, list[str]] = {}
    for cid, days, line in preds:
        if cid not in pairs:
            raise _cell_error(path, line, cid, "case_id", f"unknown case id: not in {table.path}")
        rec = records[pairs[cid]]
        if math.isnan(rec.survival_days):
            not_scored.setdefault("censored or no survival", []).append(cid)
            continue
        true.append(rec.survival_days)
        pred.append(days)
        resection.append(rec.resection)
    if not true:
        raise DataError(path, f"{path}: no prediction pairs with a patient of known survival in {table.path}")
    predicted = set(pairs.values())
    missing = [r.case_id for r in table.records if r.case_id not in predicted and not math.isnan(r.survival_days)]
    use_gtr = table.has_resection if gtr_only is None else bool(gtr_only)
    all_scores = scores(true, pred)
    scored = all_scores
    if use_gtr:
        keep = [i for i, r in enumerate(resection) if r == "GTR"]
        if not keep:
            raise DataError(path, f"{path}: no GTR patient to score (pass gtr_only=False to score all)")
        scored = scores([true[i] for i in keep], [pred[i] for i in keep])
    return {"scored": scored, "all": all_scores, "gtr_only": use_gtr, "not_scored": not_scored, "missing": missing}


def format_scores(result: Mapping[str, Any], title: str = "") -> str:
    """Readable text of :func:`scores` (or of an :func:`evaluate_predictions` result)."""
    if "scored" in result:
        head = f"{title}scored on {'GTR patients only' if result['gtr_only'] else 'all patients'}"
        text = head + "\n" + format_scores(result["scored"])
        if result["gtr_only"]:
            text += "\nall patients:\n" + format_scores(result["all"])
        if result.get("missing"):
            text += f"\n{len(result['missing'])} patient(s) of the table have no prediction"
        return text
    lo, hi = result["accuracy_ci"]
    lines = [
        f"{title}patients    {result['n']}",
        f"accuracy    {result['accuracy']:.3f}  (95% Wilson {lo:.3f}-{hi:.3f})",
        f"MSE         {result['mse']:.0f} days^2",
        f"median SE   {result['median_se']:.0f} days^2",
        f"Spearman    {result['spearman']:.3f}",
        "confusion   rows true, columns predicted (" + ", ".join(SURVIVAL_CLASSES) + ")",
    ]
    lines += ["            " + " ".join(f"{v:5d}" for v in row) for row in result["confusion"]]
    return "\n".join(lines)


def kaplan_meier(
    days: Sequence[float] | np.ndarray, observed: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival curve.

    Args:
        days: time of death or of the last follow-up (censored), in days.
        observed: ``True`` for a death, ``False`` for a censored patient.

    Returns:
        ``(times, survival)``: the step function, starting at ``(0, 1)``, with one step per
        distinct death time (``plt.step(times, survival, where="post")``).
    """
    t = np.asarray(days, dtype=np.float64)
    e = np.asarray(observed, dtype=bool)
    if t.shape != e.shape or t.ndim != 1:
        raise ValueError("days and observed must be 1-D of one length")
    times, surv = [0.0], [1.0]
    s = 1.0
    for time in np.unique(t[e]):
        at_risk = int(np.count_nonzero(t >= time))
        deaths = int(np.count_nonzero((t == time) & e))
        s *= 1.0 - deaths / at_risk
        times.append(float(time))
        surv.append(s)
    return np.asarray(times), np.asarray(surv)
