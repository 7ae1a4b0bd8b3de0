"""The prediction folder, owned here: its file names, its ``predictions.json`` and its pairing with references.

``brainseg predict`` writes into one folder::

    OUT/<case_id>.nii.gz               uint8 labels (the source's convention unless asked otherwise)
    OUT/<case_id>_prob.nii.gz          float32 (X, Y, Z, K) probabilities (optional)
    OUT/<case_id>_uncertainty.nii.gz   float32 (X, Y, Z) uncertainty map (optional)
    OUT/predictions.json               label convention, per-case records, uncertainty ranking

``evaluate``, ``select-postprocessing`` and the prediction report read such a folder (or any folder
of label maps: ``<id>.nii.gz``, ``<id>_seg.nii.gz``, ``<id>/<one file>.nii.gz``) against references
through :func:`paired_cases`: the same pairing by exact case id, the same label conventions (flags,
then the dataset layout, ``predictions.json`` or the header stamp; never guessed where it matters,
:func:`brainseg_tf.io.labels.resolve_convention`), the same shape and affine checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf import atomic
from brainseg_tf.io.errors import DataError
from brainseg_tf.io.jsonfile import read_json
from brainseg_tf.io.labels import get_convention, load_labels
from brainseg_tf.io.layouts import case_id_problem, check_scheme_readable, has_scan_files
from brainseg_tf.io.nifti import AFFINE_ATOL, is_nifti_name, strip_nifti_suffix

PREDICTIONS_META = "predictions.json"
LABEL_SUFFIX = ".nii.gz"
PROBABILITIES = "_prob"
UNCERTAINTY = "_uncertainty"
#: Stems of the files ``predict`` writes beside the labels that are not label maps.
COMPANIONS: tuple[str, ...] = (PROBABILITIES, UNCERTAINTY)
#: The same as file endings.
COMPANION_SUFFIXES: tuple[str, ...] = tuple(c + LABEL_SUFFIX for c in COMPANIONS)
# One role suffix a label file name may carry after its case id (``_seg``, ``-pred``, ...).
_ROLE = re.compile(r"([_\-.](seg|pred|prediction|label|labels|mask))$", re.IGNORECASE)


# ----------------------------------------------------------------------------- file names


def label_path(out_dir: str | Path, case_id: str) -> Path:
    """``out_dir/<case_id>.nii.gz``: a case's label map."""
    return Path(out_dir) / f"{case_id}{LABEL_SUFFIX}"


def probabilities_path(out_dir: str | Path, case_id: str) -> Path:
    """``out_dir/<case_id>_prob.nii.gz``: a case's probability maps."""
    return Path(out_dir) / f"{case_id}{PROBABILITIES}{LABEL_SUFFIX}"


def uncertainty_path(out_dir: str | Path, case_id: str) -> Path:
    """``out_dir/<case_id>_uncertainty.nii.gz``: a case's uncertainty map."""
    return Path(out_dir) / f"{case_id}{UNCERTAINTY}{LABEL_SUFFIX}"


# ----------------------------------------------------------------------------- predictions.json


def read_summary(pred_dir: str | Path) -> dict[str, Any] | list | None:
    """``pred_dir/predictions.json`` (strict JSON, an object or a list of records), or ``None``."""
    path = Path(pred_dir) / PREDICTIONS_META
    return read_json(path, expect=(dict, list)) if path.is_file() else None


def _summary_cases(pred_dir: str | Path) -> dict[str, Any]:
    summary = read_summary(pred_dir)
    return summary.get("cases", {}) if isinstance(summary, dict) else {}


def scored_cases(pred_dir: str | Path) -> set[str]:
    """Case ids with an uncertainty score in ``pred_dir/predictions.json`` (empty when there is none)."""
    return {
        cid for cid, e in _summary_cases(pred_dir).items() if isinstance(e, dict) and e.get("uncertainty") is not None
    }


def write_prediction_summary(
    out_dir: str | Path, records: Sequence[Mapping[str, Any]], *, convention: str | None = None
) -> Path:
    """Write ``out_dir/predictions.json``: per-case records and the cases ranked by uncertainty.

    Skipped cases keep the score an earlier summary recorded for them. The file stays readable by
    :func:`recorded_conventions` (``"convention"``: the written one, ``None`` for each source's own;
    case records carry no convention of their own).
    """
    from brainseg_tf.uncertainty import DEFAULT_DILATION, DEFAULT_THRESHOLD

    earlier = _summary_cases(out_dir)
    cases: dict[str, dict[str, Any]] = {}
    for rec in records:
        entry = {k: v for k, v in rec.items() if k != "case_id"}
        previous = earlier.get(rec["case_id"])
        if rec.get("status") == "skipped" and isinstance(previous, dict):
            entry |= {k: previous.get(k) for k in ("uncertainty", "uncertainty_kind", "uncertainty_map")}
        cases[rec["case_id"]] = entry
    scored = [cid for cid, e in cases.items() if e.get("uncertainty") is not None]
    ranking = sorted(scored, key=lambda cid: (-cases[cid]["uncertainty"], cid))
    return atomic.write_json(
        Path(out_dir) / PREDICTIONS_META,
        {
            "convention": convention,
            "cases": cases,
            "ranking": ranking,
            "uncertainty": "per case: mean voxel uncertainty over the predicted tumour dilated by "
            f"{DEFAULT_DILATION} voxels and every voxel >= {DEFAULT_THRESHOLD} "
            "(docs/postprocessing.md); ranking: most uncertain first",
        },
    )


def recorded_conventions(pred_dir: str | Path) -> dict[str, str]:
    """Case id -> convention from ``pred_dir/predictions.json`` (``"*"``: every case), if present.

    Accepted forms: ``{"convention": "msd"}``, ``{"cases": {"<id>": "msd" | {"convention": "msd"}}}``
    or a list of ``{"case_id": ..., "convention": ...}`` records.

    Raises:
        DataError: the file is not strict JSON, or records an unknown convention.
    """
    meta = read_summary(pred_dir)
    if meta is None:
        return {}
    records = meta if isinstance(meta, list) else meta.get("cases", {})
    out: dict[str, str] = {}
    if isinstance(meta, dict) and meta.get("convention") is not None:
        out["*"] = meta["convention"]
    if isinstance(records, dict):
        records = [{"case_id": k, **(v if isinstance(v, dict) else {"convention": v})} for k, v in records.items()]
    for rec in records:
        if isinstance(rec, dict) and rec.get("convention") is not None:
            out[str(rec.get("case_id"))] = rec["convention"]
    path = Path(pred_dir) / PREDICTIONS_META
    for cid, conv in out.items():
        try:
            get_convention(conv)
        except ValueError as exc:
            raise DataError(path, f"{path}: case {cid!r}: {exc}") from exc
    return out


# ----------------------------------------------------------------------------- label folders


def _label_file(path: Path) -> bool:
    """A visible NIfTI label file: hidden names (``.nii.gz``, ``._x.nii.gz``) and the companion
    outputs of ``predict`` (``<id>_prob``, ``<id>_uncertainty``) are never cases."""
    return (
        path.is_file()
        and not path.name.startswith(".")
        and is_nifti_name(path.name)
        and not strip_nifti_suffix(path.name).endswith(COMPANIONS)
    )


def _case_key(path: Path, root: Path) -> str:
    if path.parent != root:  # <case_id>/<anything>.nii.gz
        return path.parent.name
    return _ROLE.sub("", strip_nifti_suffix(path.name))


def scan_label_files(root: str | Path) -> dict[str, Path]:
    """Case id -> NIfTI file in a flat folder or one level of ``<case_id>/`` subfolders.

    The id is the file name without ``.nii[.gz]`` and one role suffix (``_seg``, ``-pred``,
    ``_mask``...), or the subfolder's name. Names that cannot be case ids are skipped.

    Raises:
        DataError: two files give the same case id.
    """
    root = Path(root)
    found: dict[str, Path] = {}
    candidates = [p for p in sorted(root.iterdir()) if _label_file(p)]
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [p for p in sorted(sub.iterdir()) if _label_file(p)]
        segs = [p for p in files if _ROLE.search(strip_nifti_suffix(p.name))] or files
        if len(segs) == 1:
            candidates.append(segs[0])
    for path in candidates:
        key = _case_key(path, root)
        if case_id_problem(key) is not None:
            continue
        if key in found:
            raise DataError(root, f"{root}: two files for case {key!r}: {found[key].name} and {path.name}")
        found[key] = path
    return found


def reference_files(ref_dir: str | Path) -> dict[str, tuple[Path, str | None]]:
    """Case id -> (label file, convention or None) from a dataset folder or a folder of labels.

    A folder holding scans named like a dataset is read as one, and its problems are raised;
    only a folder without scans is read as a folder of label files.
    """
    from brainseg_tf.io import open_dataset

    if has_scan_files(ref_dir):
        dataset = open_dataset(ref_dir)
        for cid in dataset.labelled_ids:  # PED 2024+ would be scored in the GLI meaning of 1/2/3
            check_scheme_readable(dataset.ref(cid))
        return {cid: (dataset.ref(cid).label, dataset.ref(cid).convention) for cid in dataset.labelled_ids}
    return {cid: (path, None) for cid, path in scan_label_files(ref_dir).items()}


def prediction_files(pred_dir: str | Path) -> dict[str, tuple[Path, str | None]]:
    """Case id -> (label file, convention recorded in ``predictions.json`` or None) of a prediction folder."""
    recorded = recorded_conventions(pred_dir)
    return {cid: (path, recorded.get(cid, recorded.get("*"))) for cid, path in scan_label_files(pred_dir).items()}


# ----------------------------------------------------------------------------- pairing


@dataclass
class PairedCase:
    """One reference case and its prediction, both canonical ``(X, Y, Z)`` uint8 on one grid.

    Attributes:
        case_id: the case id.
        pred: the predicted labels; all background when there is no prediction (``missing``).
        ref: the reference labels.
        spacing: voxel size in mm from the reference header.
        affine: the reference's affine.
        ref_path, pred_path: the files (``pred_path`` ``None`` when missing).
    """

    case_id: str
    pred: np.ndarray
    ref: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    ref_path: Path
    pred_path: Path | None

    @property
    def missing(self) -> bool:
        return self.pred_path is None


class CasePairs:
    """The reference cases of a folder pairing with the prediction files of another (:func:`paired_cases`).

    Iterating loads each case in id order (:meth:`load`); nothing is read before.

    Attributes:
        case_ids: the reference case ids scored, sorted.
        missing: those without a prediction file.
        unmatched: prediction files of no scored reference case.
    """

    def __init__(
        self,
        references: dict[str, tuple[Path, str | None]],
        predictions: dict[str, tuple[Path, str | None]],
        *,
        ref_convention: str | None,
        pred_convention: str | None,
    ):
        self.references, self.predictions = references, predictions
        self.ref_convention, self.pred_convention = ref_convention, pred_convention
        self.case_ids = sorted(references)
        self.missing = [cid for cid in self.case_ids if cid not in predictions]
        paired = {predictions[cid][0] for cid in self.case_ids if cid in predictions}
        self.unmatched = sorted(path for path, _ in predictions.values() if path not in paired)

    def __len__(self) -> int:
        return len(self.case_ids)

    def __iter__(self) -> Iterator[PairedCase]:
        return (self.load(cid) for cid in self.case_ids)

    def load(self, case_id: str) -> PairedCase:
        """Read one case's reference and prediction (canonical labels).

        Raises:
            KeyError: ``case_id`` is no reference case.
            ValueError: the prediction's shape or affine differs from its reference's (both files named).
            DataError: an unreadable file, or a convention that cannot be told (names the flag).
        """
        ref_path, dataset_convention = self.references[case_id]
        ref, affine, spacing = load_labels(
            ref_path, dataset_convention, explicit=self.ref_convention, flag="--ref-convention"
        )
        if case_id not in self.predictions:
            return PairedCase(case_id, np.zeros_like(ref), ref, spacing, affine, ref_path, None)
        pred_path, recorded = self.predictions[case_id]
        pred, pred_affine, _ = load_labels(pred_path, recorded, explicit=self.pred_convention, flag="--pred-convention")
        if pred.shape != ref.shape:
            raise ValueError(f"prediction {pred_path} has shape {pred.shape} but reference {ref_path} has {ref.shape}")
        if not np.allclose(pred_affine, affine, atol=AFFINE_ATOL):
            raise ValueError(
                f"prediction {pred_path} and reference {ref_path} have different affines:\n"
                f"{np.round(pred_affine, 4)}\nvs\n{np.round(affine, 4)}"
            )
        return PairedCase(case_id, pred, ref, spacing, affine, ref_path, pred_path)


def paired_cases(
    pred_dir: str | Path,
    ref_dir: str | Path,
    *,
    ref_convention: str | None = None,
    pred_convention: str | None = None,
    case_ids: Sequence[str] | None = None,
) -> CasePairs:
    """Pair a folder of predicted label maps with references by exact case id.

    Predictions: ``<case_id>.nii.gz``, ``<case_id>_seg.nii.gz`` (also ``_pred``, ``-seg``...) or
    ``<case_id>/<one file>.nii.gz`` (hidden files and ``predict``'s companion files are never
    cases). References: any dataset folder :func:`brainseg_tf.io.open_dataset` reads (its cases'
    label files and conventions), or a folder of label files named as the predictions. Label
    conventions: the flags, else the references' dataset layout / the predictions'
    ``predictions.json``, else the header stamp, else only values every convention reads alike.

    Args:
        pred_dir: folder of predictions.
        ref_dir: dataset folder or folder of reference label files.
        ref_convention, pred_convention: convention names overriding the recorded ones.
        case_ids: pair only these reference cases (e.g. a run's validation split).

    Returns:
        :class:`CasePairs` (files are read as it is iterated).

    Raises:
        ValueError: an unknown convention, ``case_ids`` not a list of strings or not references,
            no reference cases (all checked before any label file is read).
        FileNotFoundError: a folder is missing (or is a file).
        DataError: a dataset folder that cannot be read, a bad ``predictions.json``.
    """
    for conv in (ref_convention, pred_convention):
        if conv is not None:
            get_convention(conv)
    if case_ids is not None and (isinstance(case_ids, str) or not all(isinstance(c, str) for c in case_ids)):
        raise ValueError(f"case_ids={case_ids!r} must be a list of case id strings")
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    for folder, what in ((pred_dir, "prediction"), (ref_dir, "reference")):
        if folder.exists() and not folder.is_dir():
            raise FileNotFoundError(f"{folder}: is a file, expected a {what} folder")
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder not found: {folder}")
    references = reference_files(ref_dir)
    if not references:
        raise ValueError(f"no reference label files found in {ref_dir}")
    if case_ids is not None:
        unknown = sorted(set(case_ids) - set(references))
        if unknown:
            raise ValueError(f"case_ids {unknown[:5]} have no reference label file in {ref_dir}")
        references = {cid: references[cid] for cid in case_ids}
    return CasePairs(
        references, prediction_files(pred_dir), ref_convention=ref_convention, pred_convention=pred_convention
    )


__all__ = [
    "PREDICTIONS_META",
    "LABEL_SUFFIX",
    "PROBABILITIES",
    "UNCERTAINTY",
    "COMPANIONS",
    "COMPANION_SUFFIXES",
    "label_path",
    "probabilities_path",
    "uncertainty_path",
    "read_summary",
    "scored_cases",
    "write_prediction_summary",
    "recorded_conventions",
    "scan_label_files",
    "reference_files",
    "prediction_files",
    "PairedCase",
    "CasePairs",
    "paired_cases",
]
