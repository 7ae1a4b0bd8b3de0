"""The prediction folder, owned here: its file names, its ``predictions.json`` and its pairing with references.

``brainseg predict`` writes into one folder::

    OUT/<case_id>.nii.gz               uint8 labels (the source's convention unless asked otherwise)
    OUT/<case_id>_prob.nii.gz          float32 (X, Y, Z, K) probabilities (optional)
    OUT/<case_id>_uncertainty.nii.gz   float32 (X, Y, Z) uncertainty map (optional)
    OUT/predictions.json               label convention, per-case records, uncertainty ranking

``evaluate``, ``select-postprocessing`` and the prediction report read such a folder (or any folder
of label maps: ``<id>.nii.gz``, ``<id>_seg.nii.gz``, ``<id>/<one file>.nii.gz``) against references
through :func:`paired_cases`: the same pairing by exact case id, the same label conventions or
schemes (flags, then the dataset layout, ``predictions.json`` or the header stamp; a prediction that
records none is read in its reference's scheme; never guessed from values where it matters,
:func:`brainseg_tf.io.labels.resolve_convention`), the same shape, affine and scheme checks.
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
from brainseg_tf.io.labels import LabelFile, LabelReading, get_reading, read_label_file
from brainseg_tf.io.layouts import case_id_problem, check_scheme_readable, has_scan_files
from brainseg_tf.io.nifti import AFFINE_ATOL, is_nifti_name, strip_nifti_suffix
from brainseg_tf.schemes import detect_scheme, get_scheme

PREDICTIONS_META = "predictions.json"
LABEL_SUFFIX = ".nii.gz"
PROBABILITIES = "_prob"
UNCERTAINTY = "_uncertainty"
#: Stems of the files ``predict`` writes beside the labels that are not label maps.
COMPANIONS: tuple[str, ...] = (PROBABILITIES, UNCERTAINTY)
#: The same as file endings.
COMPANION_SUFFIXES: tuple[str, ...] = tuple(c + LABEL_SUFFIX for c in COMPANIONS)
# One role suffix a label file name may carry after its case id (``_seg``, ``-pred``, ...).
_ROLE = re.compile(r"([_\-.](seg|pred|prediction|label|labels|mask|gtv))$", re.IGNORECASE)


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
            get_reading(conv)
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


@dataclass(frozen=True)
class ReferenceSource:
    """Where a reference case's labels are and what tells their scheme.

    Attributes:
        path: the label file.
        recorded: the convention or scheme its dataset's layout records (a scheme the canonical
            labels cannot hold is named by the scheme, e.g. ``"ped2024"``), or ``None`` (a folder
            of label files: the header stamp, else ``fallback``).
        scheme: the case's scheme name where the layout or the case id tells it, else ``None``.
        fallback: for a folder of label files, the reading the case id's task prefix implies
            (used when the file has no stamp), else ``None``.
        note: where the id has carried two schemes (PED), which one was chosen.
    """

    path: Path
    recorded: str | None = None
    scheme: str | None = None
    fallback: str | None = None
    note: str | None = None


def recorded_reading(ref: Any) -> str | None:
    """How a dataset case's mask reads (:func:`~brainseg_tf.io.labels.get_reading`): its scheme where the
    canonical labels cannot hold it (``"ped2024"``), else its layout's convention."""
    scheme = None if ref.scheme is None else get_scheme(ref.scheme)
    return scheme.name if scheme is not None and not scheme.is_canonical else ref.convention


def reference_sources(ref_dir: str | Path) -> dict[str, ReferenceSource]:
    """Case id -> :class:`ReferenceSource` from a dataset folder or a folder of label files.

    A folder holding scans named like a dataset is read as one (its problems are raised), and each
    case's scheme comes from its layout. A folder without scans is read as label files: a file's
    header stamp says its labels, else its case id's task prefix (``BraTS-PED-`` -> ``ped2024``,
    :func:`brainseg_tf.schemes.detect_scheme`), else only values every convention reads alike.
    """
    from brainseg_tf.io import open_dataset

    if has_scan_files(ref_dir):
        dataset = open_dataset(ref_dir)
        out: dict[str, ReferenceSource] = {}
        for cid in dataset.labelled_ids:
            ref = dataset.ref(cid)
            check_scheme_readable(ref)
            out[cid] = ReferenceSource(ref.label, recorded_reading(ref), ref.scheme, None, ref.scheme_note)
        return out
    out = {}
    for cid, path in scan_label_files(ref_dir).items():
        try:
            found = detect_scheme(cid)
        except ValueError:  # an id without a task prefix: the stamp or the values decide, as before
            out[cid] = ReferenceSource(path)
            continue
        out[cid] = ReferenceSource(path, None, found.scheme.name, found.scheme.name, found.note)
    return out


def reference_files(ref_dir: str | Path) -> dict[str, tuple[Path, str | None]]:
    """Case id -> (label file, recorded convention or scheme, or None): :func:`reference_sources` in short."""
    return {cid: (src.path, src.recorded) for cid, src in reference_sources(ref_dir).items()}


def prediction_files(pred_dir: str | Path) -> dict[str, tuple[Path, str | None]]:
    """Case id -> (label file, convention recorded in ``predictions.json`` or None) of a prediction folder."""
    recorded = recorded_conventions(pred_dir)
    return {cid: (path, recorded.get(cid, recorded.get("*"))) for cid, path in scan_label_files(pred_dir).items()}


# ----------------------------------------------------------------------------- pairing


@dataclass
class PairedCase:
    """One reference case and its prediction, both ``(X, Y, Z)`` uint8 on one grid, in one scheme.

    Attributes:
        case_id: the case id.
        pred: the predicted labels; all background when there is no prediction (``missing``).
        ref: the reference labels.
        spacing: voxel size in mm from the reference header.
        affine: the reference's affine.
        ref_path, pred_path: the files (``pred_path`` ``None`` when missing).
        scheme: the label scheme both are in: for a scheme the canonical labels cannot hold
            (``gli2024``, ``met2024``, ``ped2024``) ``pred`` and ``ref`` hold its internal labels
            (:attr:`brainseg_tf.schemes.LabelScheme.internal`); otherwise they hold the canonical
            labels (0 BG, 1 NCR, 2 ED, 3 ET) and ``scheme`` names the reference's scheme where its
            layout, case id or record tells it (``brats2021``, ``msd``...), else ``None``.
    """

    case_id: str
    pred: np.ndarray
    ref: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    ref_path: Path
    pred_path: Path | None
    scheme: str | None = None

    @property
    def missing(self) -> bool:
        return self.pred_path is None


def _scheme_name(name: str) -> str | None:
    """The scheme ``name`` names (``"brats"`` -> ``"brats2021"``), or ``None`` for a convention only."""
    try:
        return get_scheme(name).name
    except ValueError:
        return None


def _reading_text(reading: LabelReading) -> str:
    if reading.scheme is not None:
        return f"the {reading.name!r} scheme ({reading.description})"
    return f"canonical labels (read with the {reading.name!r} convention)"


class CasePairs:
    """The reference cases of a folder pairing with the prediction files of another (:func:`paired_cases`).

    Iterating loads each case in id order (:meth:`load`); nothing is read before.

    Attributes:
        case_ids: the reference case ids scored, sorted.
        missing: those without a prediction file.
        unmatched: prediction files of no scored reference case.
        notes: what the reading decided that the user should see, filled as cases load (one line
            each, no repeats): e.g. ``predictions without a recorded label scheme read in the
            reference's scheme 'ped2024'``.
    """

    def __init__(
        self,
        references: Mapping[str, ReferenceSource | tuple[Path, str | None]],
        predictions: dict[str, tuple[Path, str | None]],
        *,
        ref_convention: str | None,
        pred_convention: str | None,
    ):
        self.references = {
            cid: src if isinstance(src, ReferenceSource) else ReferenceSource(Path(src[0]), src[1])
            for cid, src in references.items()
        }
        self.predictions = predictions
        self.ref_convention, self.pred_convention = ref_convention, pred_convention
        self.case_ids = sorted(self.references)
        self.missing = [cid for cid in self.case_ids if cid not in predictions]
        paired = {predictions[cid][0] for cid in self.case_ids if cid in predictions}
        self.unmatched = sorted(path for path, _ in predictions.values() if path not in paired)
        self.notes: list[str] = []

    def __len__(self) -> int:
        return len(self.case_ids)

    def __iter__(self) -> Iterator[PairedCase]:
        return (self.load(cid) for cid in self.case_ids)

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _reference_scheme(self, src: ReferenceSource, read: LabelFile) -> str | None:
        """The scheme name of a reference as read (``None`` where only a convention is known)."""
        if read.reading.scheme is not None:
            return read.reading.scheme.name
        if read.origin in ("recorded", "fallback") and src.scheme is not None:
            return src.scheme
        return _scheme_name(read.reading.stated)

    def load(self, case_id: str) -> PairedCase:
        """Read one case's reference and prediction, in one label scheme.

        The reference reads in ``ref_convention``, else its dataset layout's scheme, else its
        header stamp, else its case id's scheme. The prediction reads in ``pred_convention``, else
        ``predictions.json``, else its header stamp; a prediction that records none of these
        (another tool's output) reads in the reference's scheme whenever the reference's was not
        guessed from its values, and :attr:`notes` says so.

        Raises:
            KeyError: ``case_id`` is no reference case.
            ValueError: the prediction's shape or affine differs from its reference's (both files named).
            DataError: an unreadable file; a convention that cannot be told (names the flag); a
                prediction that records no scheme and whose values contradict the reference's
                (names the file, the values and the flag); reference and prediction in different
                schemes (names both files and both schemes).
        """
        src = self.references[case_id]
        ref_read = read_label_file(
            src.path,
            src.recorded,
            explicit=self.ref_convention,
            fallback=src.fallback,
            fallback_text=f"the scheme its case id names ({src.fallback!r})",
            flag="--ref-convention",
        )
        ref, affine, spacing = ref_read.labels, ref_read.affine, ref_read.spacing
        scheme = self._reference_scheme(src, ref_read)
        if src.note is not None and ref_read.origin in ("recorded", "fallback"):
            self._note(src.note.removeprefix(f"{case_id}: "))  # one line for every case it concerns
        if case_id not in self.predictions:
            return PairedCase(case_id, np.zeros_like(ref), ref, spacing, affine, src.path, None, scheme)
        pred_path, recorded = self.predictions[case_id]
        settled = ref_read.origin != "values"
        ref_reading: LabelReading = ref_read.reading
        kind = "scheme" if ref_reading.scheme is not None or scheme is not None else "label convention"
        shown = ref_reading.name if ref_reading.scheme is not None or scheme is None else scheme
        ref_scheme = ref_reading.scheme

        def same_scheme(reading: LabelReading, origin: str) -> None:
            if (reading.scheme and reading.scheme.name) != (ref_scheme and ref_scheme.name):
                raise DataError(
                    pred_path,
                    f"prediction {pred_path} is in {_reading_text(reading)} but reference {src.path} is in "
                    f"{_reading_text(ref_reading)}; reference and prediction must be in one label scheme (pass "
                    f"--pred-convention <scheme> to state the prediction's labels, e.g. {ref_reading.name!r})",
                )

        pred_read = read_label_file(
            pred_path,
            recorded,
            explicit=self.pred_convention,
            fallback=ref_reading.name if settled else None,
            fallback_text=f"the reference's {kind} {shown!r}",
            flag="--pred-convention",
            check=same_scheme,
        )
        if pred_read.origin == "fallback":
            self._note(f"predictions without a recorded label scheme read in the reference's {kind} {shown!r}")
        pred = pred_read.labels
        if pred.shape != ref.shape:
            raise ValueError(f"prediction {pred_path} has shape {pred.shape} but reference {src.path} has {ref.shape}")
        if not np.allclose(pred_read.affine, affine, atol=AFFINE_ATOL):
            raise ValueError(
                f"prediction {pred_path} and reference {src.path} have different affines:\n"
                f"{np.round(pred_read.affine, 4)}\nvs\n{np.round(affine, 4)}"
            )
        return PairedCase(case_id, pred, ref, spacing, affine, src.path, pred_path, scheme)


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
    label files and schemes), or a folder of label files named as the predictions. Labels: the
    flags, else the references' dataset layout / the predictions' ``predictions.json``, else the
    header stamp (a convention, or a scheme such as ``ped2024``), else for a reference its case
    id's scheme and for a prediction the reference's (said in :attr:`CasePairs.notes`), else only
    values every convention reads alike. A scheme the canonical labels cannot hold (GLI/MET 2024
    with RC, PED 2024) is read into its internal labels; both sides must be in one scheme.

    Args:
        pred_dir: folder of predictions.
        ref_dir: dataset folder or folder of reference label files.
        ref_convention, pred_convention: convention or scheme names overriding the recorded ones
            (:func:`brainseg_tf.io.labels.get_reading`).
        case_ids: pair only these reference cases (e.g. a run's validation split).

    Returns:
        :class:`CasePairs` (files are read as it is iterated).

    Raises:
        ValueError: an unknown convention or scheme, ``case_ids`` not a list of strings or not references,
            no reference cases (all checked before any label file is read).
        FileNotFoundError: a folder is missing (or is a file).
        DataError: a dataset folder that cannot be read, a bad ``predictions.json``.
    """
    for conv in (ref_convention, pred_convention):
        if conv is not None:
            get_reading(conv)
    if case_ids is not None and (isinstance(case_ids, str) or not all(isinstance(c, str) for c in case_ids)):
        raise ValueError(f"case_ids={case_ids!r} must be a list of case id strings")
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    for folder, what in ((pred_dir, "prediction"), (ref_dir, "reference")):
        if folder.exists() and not folder.is_dir():
            raise FileNotFoundError(f"{folder}: is a file, expected a {what} folder")
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder not found: {folder}")
    references = reference_sources(ref_dir)
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
    "ReferenceSource",
    "recorded_reading",
    "reference_sources",
    "reference_files",
    "prediction_files",
    "PairedCase",
    "CasePairs",
    "paired_cases",
]
