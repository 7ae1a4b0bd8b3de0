"""Training sets: patients with known survival joined with their per-case features."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf.io.errors import DataError
from brainseg_tf.survival.clinical import (
    CLINICAL_FEATURES,
    ClinicalRecord,
    ClinicalTable,
    as_table,
    clinical_values,
    match_ids,
)
from brainseg_tf.survival.features import FEATURE_NAMES, feature_rows, read_features

__all__ = ["TrainingSet", "training_set"]


@dataclass
class TrainingSet:
    """Patients with known survival, their feature columns, and who was left out and why.

    Attributes:
        case_ids: the clinical table's ids of the patients, in table order.
        columns: feature name -> ``(n,)`` float64 (``age``, ``resection_gtr``, ``resection_str``,
            plus :data:`~brainseg_tf.survival.FEATURE_NAMES` when label maps or a feature table
            were given).
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
        """Whether the columns include tumour features (not only clinical ones)."""
        return "wt_ml" in self.columns

    def subset(self, index: Sequence[int] | np.ndarray) -> TrainingSet:
        """The patients at ``index`` (``excluded`` is not carried over)."""
        idx = np.asarray(index, dtype=np.intp)
        return TrainingSet(
            [self.case_ids[i] for i in idx],
            {k: v[idx] for k, v in self.columns.items()},
            self.days[idx],
            [self.resection[i] for i in idx],
            {},
            self.case_for,
        )


def _exclusion(rec: ClinicalRecord, has_features: bool | None) -> str | None:
    """Why a patient cannot train a model (``has_features`` None: no features asked for), or None."""
    if has_features is False:
        return "no label map"
    if rec.censored:
        return "censored (ALIVE)"
    if math.isnan(rec.survival_days):
        return "no survival"
    if math.isnan(rec.age):
        return "no age"
    return None


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
    columns only). With them, only the patients whose case pairs
    (:func:`~brainseg_tf.survival.match_ids`) are kept. Censored patients (``ALIVE``) are left
    out: their survival is unknown. ``images`` and ``convention`` go to
    :func:`~brainseg_tf.survival.feature_rows`.

    Raises:
        DataError: bad tables (see :func:`~brainseg_tf.survival.read_clinical`,
            :func:`~brainseg_tf.survival.read_features`), or no patient left.
        ValueError: both ``labels`` and ``features`` given.
    """
    table = as_table(clinical)
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
        reason = _exclusion(rec, None if rows is None else rec.case_id in by_table)
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
    clin = [clinical_values(r.age, r.resection) for r in keep]
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
