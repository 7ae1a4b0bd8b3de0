"""Dataset layouts: BraTS 2018/2019, 2020, 2021, 2023+ GLI, MEN-RT and MSD Task01, detected from a folder.

Every layout is reduced to a list of :class:`CaseRef` (which files make up one case, which label
scheme and convention they use); :func:`brainseg_tf.io.read_case` turns a reference into a
:class:`Case` with canonical channels ``(flair, t1, t1ce, t2)`` and its scheme's internal labels
(the canonical 1 NCR, 2 ED, 3 ET for the glioma schemes).

The label scheme of a case comes from the task prefix of its id
(:func:`brainseg_tf.schemes.detect_scheme`) or is stated (``scheme=``); ids without a task prefix
take their layout's scheme. GLI/MET 2024 (with 4 RC) and PED 2024 read into their own internal
labels. A case holds the modalities its scheme ships (:func:`scheme_modalities`): the four for
every glioma scheme, T1c alone for MEN-RT (``<case>_t1c.nii.gz`` and a ``<case>_gtv.nii.gz`` mask,
layout :data:`MENRT_LAYOUT`); :attr:`CaseRef.modalities` says which a case has.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from brainseg_tf import atomic
from brainseg_tf.io.errors import DataError, MissingFileError, refuse_missing_modalities
from brainseg_tf.io.jsonfile import read_json
from brainseg_tf.io.labels import (
    MODALITIES,
    from_canonical,
    label_values,
    scheme_for_convention,
    to_canonical,
)
from brainseg_tf.io.nifti import is_nifti_name, save_nifti, strip_nifti_suffix
from brainseg_tf.schemes import LabelScheme, detect_scheme, get_scheme

#: The four-modality layouts: any glioma case can be written in each (canonical labels through the
#: layout's convention, or a 2024 scheme's source values).
LAYOUTS: tuple[str, ...] = ("brats2018", "brats2020", "brats2021", "brats2023", "msd")
#: MEN-RT's own layout: ``<case>_t1c.nii.gz`` and ``<case>_gtv.nii.gz`` (underscore, T1c only); it
#: holds the ``men_rt`` scheme only (1 GTV).
MENRT_LAYOUT = "men_rt"
#: Every layout read and written: :data:`LAYOUTS` and :data:`MENRT_LAYOUT`.
FILE_LAYOUTS: tuple[str, ...] = (*LAYOUTS, MENRT_LAYOUT)

# File-name token (after the case id) -> canonical modality, or "seg".
_TOKENS: dict[str, str] = {
    "flair": "flair",
    "t2f": "flair",
    "t2flair": "flair",
    "t1": "t1",
    "t1n": "t1",
    "t1w": "t1",
    "t1ce": "t1ce",
    "t1c": "t1ce",
    "t1gd": "t1ce",
    "t2": "t2",
    "t2w": "t2",
    "seg": "seg",
    "segm": "seg",
    "label": "seg",
    "mask": "seg",
    "gtv": "seg",  # MEN-RT's gross tumour volume
}
# Per layout: canonical modality -> file token, and the label convention of its masks.
_LAYOUT_TOKENS: dict[str, dict[str, str]] = {
    "brats2018": {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2", "seg": "seg"},
    "brats2020": {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2", "seg": "seg"},
    "brats2021": {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2", "seg": "seg"},
    "brats2023": {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w", "seg": "seg"},
    MENRT_LAYOUT: {"t1ce": "t1c", "seg": "gtv"},
}
LAYOUT_CONVENTION: dict[str, str] = {
    "brats2018": "brats",
    "brats2020": "brats",
    "brats2021": "brats",
    "brats2023": "brats2023",
    "msd": "msd",
    # 0/1 read alike in it; the men_rt scheme, not this convention, reads the GTV masks
    MENRT_LAYOUT: "brats2023",
}
#: A layout that holds one scheme: the scheme of its cases whose ids carry no task prefix.
LAYOUT_SCHEME: dict[str, str] = {MENRT_LAYOUT: "men_rt"}
_PREFIX_LAYOUT = (
    (re.compile(r"^BraTS-MEN-RT-", re.I), MENRT_LAYOUT),
    (re.compile(r"^BraTS-(GLI|MEN|MET|PED|SSA)-", re.I), "brats2023"),
    (re.compile(r"^BraTS2021_", re.I), "brats2021"),
    (re.compile(r"^BraTS20_", re.I), "brats2020"),
    (re.compile(r"^Brats1[789]_", re.I), "brats2018"),
)
# The canonical MSD Task01 dataset.json label names -> canonical label.
_MSD_NAME_TO_CANONICAL = {
    "background": 0,
    "edema": 2,
    "non-enhancing tumor": 1,
    "enhancing tumour": 3,
    "enhancing tumor": 3,
    "non-enhancing tumour": 1,
}
_MSD_MODALITY_NAMES = {
    "flair": "flair",
    "t1w": "t1",
    "t1": "t1",
    "t1gd": "t1ce",
    "t1ce": "t1ce",
    "t2w": "t2",
    "t2": "t2",
}


@dataclass
class CaseRef:
    """Where one case's files are.

    Attributes:
        case_id: the case identifier (folder name for BraTS, file stem for MSD).
        layout: one of :data:`LAYOUTS`.
        convention: label convention of the mask file.
        images: canonical modality -> file (BraTS), or ``{"4d": file}`` for MSD.
        label: mask file, or ``None`` (validation/test cases).
        channel_order: for a 4D image, the canonical modality of each channel.
        grade: ``"HGG"``/``"LGG"`` where the folder says so.
        warnings: notes about odd file names, shown when the case is read.
        scheme: name of the label scheme (:mod:`brainseg_tf.schemes`), or ``None`` for a reference
            built by hand (read with ``convention`` alone, as before schemes existed).
        scheme_note: where the layout has carried two schemes, which one was chosen (PED).
    """

    case_id: str
    layout: str
    convention: str
    images: dict[str, Path]
    label: Path | None = None
    channel_order: tuple[str, ...] = MODALITIES
    grade: str | None = None
    warnings: list[str] = field(default_factory=list)
    scheme: str | None = None
    scheme_note: str | None = None

    @property
    def files(self) -> list[Path]:
        return list(self.images.values()) + ([self.label] if self.label is not None else [])

    @property
    def modalities(self) -> tuple[str, ...]:
        """The canonical modalities this case has images of, in canonical order: its modality files,
        or the channels of a multi-channel file (MSD's ``"4d"``, the Kaggle ``"slices"``)."""
        if set(self.images) - set(MODALITIES):
            return tuple(m for m in MODALITIES if m in self.channel_order)
        return tuple(m for m in MODALITIES if m in self.images)


def case_id_problem(case_id: object) -> str | None:
    """Why ``case_id`` cannot name a case (it becomes a file name), or ``None`` when it can.

    A case id is a non-empty string without path separators, ``..``, control characters or a
    leading ``.`` (hidden files such as ``.nii.gz`` or macOS ``._x.nii.gz`` are never cases).
    """
    if not isinstance(case_id, str):
        return f"is a {type(case_id).__name__}, not a string"
    if not case_id.strip():
        return "is empty"
    if "/" in case_id or "\\" in case_id or (os.altsep and os.altsep in case_id):
        return "contains a path separator"
    if ".." in case_id:
        return "contains '..'"
    if case_id.startswith("."):
        return "starts with '.' (a hidden name)"
    if any(ord(c) < 32 for c in case_id):
        return "contains control characters"
    return None


def check_case_id(case_id: object, source: str | Path | None = None) -> str:
    """Return ``case_id`` if it can name a case (see :func:`case_id_problem`).

    Raises:
        DataError: naming ``source`` when the id comes from a file or folder name;
            ``ValueError`` naming the argument when there is no source.
    """
    problem = case_id_problem(case_id)
    if problem is None:
        return case_id  # type: ignore[return-value]
    if source is None:
        raise ValueError(f"case_id={case_id!r} {problem}; a case id becomes a file name")
    raise DataError(source, f"{source}: case id {case_id!r} {problem}; a case id becomes a file name")


def _is_case_file(path: Path) -> bool:
    return path.is_file() and is_nifti_name(path.name) and not path.name.startswith(".")


def _token(name: str, case_id: str | None) -> str | None:
    stem = strip_nifti_suffix(name)
    if case_id and stem.lower().startswith(case_id.lower()):
        rest = stem[len(case_id) :].lstrip("_-.").lower()
        if rest in _TOKENS:
            return _TOKENS[rest]
    last = re.split(r"[_\-.]", stem)[-1].lower()
    return _TOKENS.get(last)


def _layout_of_files(files: list[Path]) -> str | None:
    """The layout the file names alone imply: a ``_gtv`` mask is MEN-RT's, a 2023+ token
    (``-t1n``...) the 2023 naming; ``None`` otherwise."""
    stems = [strip_nifti_suffix(f.name).lower() for f in files]
    if any(s.endswith("_gtv") for s in stems):
        return MENRT_LAYOUT
    if {s.rsplit("-", 1)[-1] for s in stems} & {"t1n", "t1c", "t2f", "t2w"}:
        return "brats2023"
    return None


def layout_of_case_id(case_id: str) -> str | None:
    """The layout implied by a case id's prefix (``BraTS20_Training_001`` -> ``brats2020``)."""
    for pattern, layout in _PREFIX_LAYOUT:
        if pattern.match(case_id):
            return layout
    return None


def case_scheme(case_id: str, layout: str, scheme: str | None = None) -> tuple[LabelScheme, str | None]:
    """The label scheme of a case and the note of its detection: ``scheme`` where stated, else the one
    the id's task prefix implies, else (an id without a task prefix) the layout's."""
    if scheme is not None:
        return get_scheme(scheme), None
    try:
        found = detect_scheme(case_id)
    except ValueError:
        if layout in LAYOUT_SCHEME:
            return get_scheme(LAYOUT_SCHEME[layout]), None
        return scheme_for_convention(LAYOUT_CONVENTION.get(layout, "brats")), None
    return found.scheme, found.note


def scheme_modalities(scheme: str | LabelScheme) -> tuple[str, ...]:
    """The canonical modalities a scheme's cases ship, in canonical order (``men_rt``: ``("t1ce",)``;
    every other scheme the four)."""
    tokens = {_TOKENS[t.lower()] for t in get_scheme(scheme).modalities}
    return tuple(m for m in MODALITIES if m in tokens)


def _missing_text(case_id: str, layout: str, missing: list[str], scheme: LabelScheme) -> str:
    """``missing modality t1ce (expected a file named like <id>_t1c.nii.gz)`` plus what the scheme ships."""
    expected = _LAYOUT_TOKENS.get(layout, _LAYOUT_TOKENS["brats2021"])
    sep = "-" if layout == "brats2023" else "_"
    token = expected.get(missing[0], missing[0])
    shipped = ", ".join(scheme_modalities(scheme))
    return (
        f"missing modality {', '.join(missing)} (expected a file named like {case_id}{sep}{token}.nii.gz; "
        f"the {scheme.name!r} scheme's cases hold {shipped})"
    )


def _location(ref: CaseRef) -> Path | str:
    """Where a case is, for messages: its folder, its multi-channel file (MSD), or its id."""
    if not ref.files:
        return ref.case_id
    return ref.files[0] if set(ref.images) - set(MODALITIES) else ref.files[0].parent


def check_scheme_readable(ref: CaseRef, source: str | Path | None = None) -> None:
    """Refuse a case that lacks an image its label scheme ships (a hand-built :class:`CaseRef`).

    A scanned case always has them (:func:`scan_case_folder` refuses it otherwise); a reference
    without a scheme is read as before schemes existed.

    Raises:
        DataError: naming ``source`` (default: the case's folder), the case and the missing modality.
    """
    if ref.scheme is None:
        return
    scheme = get_scheme(ref.scheme)
    missing = [m for m in scheme_modalities(scheme) if m not in ref.modalities]
    if missing:
        where = source or _location(ref)
        raise DataError(
            where, f"{where}: case {ref.case_id!r}: {_missing_text(ref.case_id, ref.layout, missing, scheme)}"
        )


def require_modalities(ref: CaseRef, modalities: Sequence[str], what: str = "the model") -> None:
    """Refuse a case that has no image of one of ``modalities`` (the canonical names a model reads).

    Raises:
        DataError: naming the case's folder (or file), the modalities asked for and the ones it has.
    """
    if all(m in ref.modalities for m in modalities):
        return
    shipped = (
        f" (the {ref.scheme!r} scheme's cases hold {', '.join(scheme_modalities(ref.scheme))})" if ref.scheme else ""
    )
    refuse_missing_modalities(_location(ref), ref.case_id, ref.modalities, modalities, what, note=shipped)


def labels_to_canonical(data: np.ndarray, ref: CaseRef, source: str | Path | None = None) -> np.ndarray:
    """The internal uint8 labels of a case's mask, read in the case's scheme.

    The internal labels of a glioma scheme are the canonical ones (1 NCR, 2 ED, 3 ET, read through
    the case's convention); a scheme with other labels (GLI/MET 2024 with 4 RC, PED 2024 with
    1 ET, 2 NET, 3 CC, 4 ED) is read into its own internal labels
    (:attr:`brainseg_tf.schemes.LabelScheme.internal`: 1 core, 2 edema, 3 ET, then RC or CC as 4;
    MEN-RT's one label 1 GTV stays 1).

    Raises:
        DataError: the mask holds values outside its scheme or convention. The message names ``source``.
    """
    if ref.scheme is not None and not get_scheme(ref.scheme).is_canonical:
        scheme = get_scheme(ref.scheme)
        counts = label_values(data, source)
        unknown = {v: n for v, n in counts.items() if v not in scheme.values}
        if unknown:
            listed = ", ".join(f"{v} ({n} voxels)" for v, n in sorted(unknown.items()))
            raise DataError(
                source,
                f"{source}: case {ref.case_id!r}: label values {listed} are not in the {scheme.name!r} scheme "
                f"(allowed {list(scheme.values)}: {scheme.description})"
                + (f". {ref.scheme_note}" if ref.scheme_note else ""),
            )
        return scheme.to_internal(np.asarray(data).astype(np.int64, copy=False))
    return to_canonical(data, ref.convention, source=source)


def with_scheme(ref: CaseRef, scheme: str | None) -> CaseRef:
    """``ref`` in a stated scheme (its convention follows where the scheme has one)."""
    if scheme is None:
        return ref
    chosen = get_scheme(scheme)
    return replace(ref, scheme=chosen.name, scheme_note=None, convention=chosen.convention or ref.convention)


def scan_case_folder(folder: Path, layout: str | None = None, *, scheme: str | None = None) -> CaseRef:
    """Identify the modality and mask files of one BraTS-style case folder.

    Args:
        folder: the case folder.
        layout: force a file naming layout instead of detecting it.
        scheme: state the label scheme (default: from the case id, see :func:`case_scheme`).

    A case must have every modality its scheme ships (:func:`scheme_modalities`: the four, or
    MEN-RT's T1c); other modality files present are listed too.

    Raises:
        MissingFileError: the folder does not exist.
        DataError: a modality its scheme ships is missing, a modality appears twice, or the files
            are not named like any known layout.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(folder, f"{folder}: case folder not found")
    # abspath, not resolve: "." names the folder it stands for, and a symlinked case keeps its own id
    case_id = check_case_id(Path(os.path.abspath(folder)).name, folder)
    files = sorted(p for p in folder.iterdir() if _is_case_file(p))
    if not files:
        raise DataError(folder, f"{folder}: no NIfTI files (.nii/.nii.gz) in this case folder")
    found: dict[str, Path] = {}
    unknown: list[str] = []
    notes: list[str] = []
    for f in files:
        kind = _token(f.name, case_id)
        if kind is None:
            unknown.append(f.name)
            continue
        if kind in found:
            raise DataError(f, f"{f}: a second {kind!r} file in {folder} (the other is {found[kind].name})")
        found[kind] = f
        if not strip_nifti_suffix(f.name).lower().startswith(case_id.lower()):
            # BraTS 2020 training case 355 ships its mask as W39_1998.09.19_Segm.nii.
            notes.append(f"{f}: mask/image file not named after its case {case_id!r}; used as {kind!r}")
    if layout is None:
        layout = layout_of_case_id(case_id) or _layout_of_files(files)
        if layout is None:
            if not set(found) & set(MODALITIES):
                raise DataError(
                    folder,
                    f"{folder}: unknown layout: files {[f.name for f in files][:6]} match no BraTS naming "
                    f"(<case>_flair/_t1/_t1ce/_t2/_seg, BraTS 2023 -t1n/-t1c/-t2w/-t2f/-seg or MEN-RT "
                    f"_t1c/_gtv)",
                )
            layout = "brats2021"  # generic 2017-2021 naming with an unrecognised prefix
    chosen, note = case_scheme(case_id, layout, scheme)
    missing = [m for m in scheme_modalities(chosen) if m not in found]
    if missing:
        text = f"{folder}: {_missing_text(case_id, layout, missing, chosen)}; found {[f.name for f in files]}"
        raise DataError(folder, f"{text}. {note}" if note else text)
    if unknown:
        notes.append(f"{folder}: ignored files not named like a modality or mask: {unknown}")
    grade = folder.parent.name.upper() if folder.parent.name.upper() in ("HGG", "LGG") else None
    return CaseRef(
        case_id=case_id,
        layout=layout,
        convention=chosen.convention or LAYOUT_CONVENTION[layout],
        images={m: found[m] for m in MODALITIES if m in found},
        label=found.get("seg"),
        grade=grade,
        warnings=notes,
        scheme=chosen.name,
        scheme_note=note,
    )


def _read_msd_json(root: Path) -> dict:
    return read_json(root / "dataset.json", expect=dict)


def _int_keys(mapping: object, field_name: str, source: Path) -> dict[int, object]:
    """``{"0": x, "1": y}`` -> ``{0: x, 1: y}``; DataError naming the file for anything else."""
    if not isinstance(mapping, dict):
        raise DataError(
            source,
            f'{source}: {field_name!r} is a {type(mapping).__name__}, expected an object like {{"0": ..., "1": ...}}',
        )
    out: dict[int, object] = {}
    for key, value in mapping.items():
        text = str(key).strip()
        if not (text.isdigit() and text.isascii()):
            raise DataError(
                source, f'{source}: {field_name!r} has key {key!r}; keys must be non-negative integers such as "0"'
            )
        if int(text) in out:
            raise DataError(source, f"{source}: {field_name!r} has key {int(text)} twice")
        out[int(text)] = value
    return out


def msd_channel_order(meta: dict, source: Path) -> tuple[str, ...]:
    """Canonical modality of each channel of the 4D MSD image, from ``dataset.json['modality']``.

    Raises:
        DataError: a ``modality`` that is not an object with integer keys 0-3 naming flair,
            t1, t1gd and t2 once each (the message names ``source``).
    """
    modality = meta.get("modality") or meta.get("channel_names")
    if not modality:
        return MODALITIES
    modality = _int_keys(modality, "modality", source)
    if sorted(modality) != list(range(len(modality))):
        raise DataError(source, f"{source}: 'modality' keys {sorted(modality)} must be 0, 1, 2, 3 (channel indices)")
    order = []
    for key in sorted(modality):
        name = str(modality[key]).lower().replace("-", "").replace(" ", "")
        if name not in _MSD_MODALITY_NAMES:
            raise DataError(source, f"{source}: unknown modality name {modality[key]!r} in 'modality'")
        order.append(_MSD_MODALITY_NAMES[name])
    if sorted(order) != sorted(MODALITIES):
        raise DataError(source, f"{source}: 'modality' must name flair, t1, t1gd and t2 once each, got {order}")
    return tuple(order)


def check_msd_labels(meta: dict, source: Path) -> None:
    """Refuse an MSD ``dataset.json`` whose label names differ from Task01's 1 edema/2 NET/3 ET."""
    labels = meta.get("labels")
    if not labels:
        return
    for value, name in _int_keys(labels, "labels", source).items():
        key = str(name).strip().lower()
        expected = {0: 0, 1: 2, 2: 1, 3: 3}.get(value)
        if _MSD_NAME_TO_CANONICAL.get(key, -1) != expected:
            raise DataError(
                source,
                f"{source}: label {value} is {name!r}; the 'msd' convention expects 1 edema, "
                f"2 non-enhancing tumor, 3 enhancing tumour (Task01)",
            )


def _report(problems: list[str] | None, exc: DataError) -> None:
    """Collect ``exc`` when collecting problems, else raise it."""
    if problems is None:
        raise exc
    problems.append(str(exc))


def scan_msd(root: Path, *, problems: list[str] | None = None) -> list[CaseRef]:
    """Cases of an MSD Task01 folder (``dataset.json``, ``imagesTr``/``labelsTr``, ``imagesTs``).

    With a ``problems`` list, per-file problems (a bad id, an id in both ``imagesTr`` and
    ``imagesTs``, a training image without its label, a label without its image) are appended
    there and the scan goes on; without one, the first bad id or duplicate raises.
    """
    meta = _read_msd_json(root)
    order = msd_channel_order(meta, root / "dataset.json")
    check_msd_labels(meta, root / "dataset.json")
    refs: list[CaseRef] = []
    seen: dict[str, Path] = {}
    for images_dir, labels_dir in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        idir, ldir = root / images_dir, root / labels_dir
        images = sorted(p for p in idir.iterdir() if _is_case_file(p)) if idir.is_dir() else []
        for f in images:
            try:
                case_id = check_case_id(strip_nifti_suffix(f.name), f)
                if case_id in seen:
                    raise DataError(f, f"{f}: duplicate case id {case_id!r} (also {seen[case_id]})")
            except DataError as exc:
                _report(problems, exc)
                continue
            seen[case_id] = f
            lab = ldir / f.name
            if problems is not None and images_dir == "imagesTr" and not lab.exists():
                problems.append(f"{f}: training image without its label {lab}")
            label = lab if lab.exists() else None
            refs.append(CaseRef(case_id, "msd", "msd", {"4d": f}, label, order, scheme="msd"))
        if problems is not None and ldir.is_dir():
            names = {f.name for f in images}
            problems.extend(
                f"{lab}: label without an image {idir / lab.name}"
                for lab in sorted(ldir.iterdir())
                if _is_case_file(lab) and lab.name not in names
            )
    return refs


def find_case_folders(root: Path, max_depth: int = 3) -> list[Path]:
    """Folders holding NIfTI files under ``root`` (the root itself counts), breadth-first to ``max_depth``."""
    found: list[Path] = []
    level = [root]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for d in level:
            try:
                entries = sorted(d.iterdir())
            except PermissionError:
                continue
            if any(_is_case_file(e) for e in entries):
                found.append(d)
            else:
                nxt.extend(e for e in entries if e.is_dir() and not e.name.startswith("."))
        if found or not nxt:
            break
        level = nxt
    return found


def has_scan_files(root: str | Path) -> bool:
    """True when ``root`` looks like a dataset: a ``dataset.json``, or a case folder holding files
    named like a modality (``*_flair``, ``*-t1n``...), not only masks."""
    root = Path(root)
    if (root / "dataset.json").is_file():
        return True
    for folder in find_case_folders(root):
        if any(_token(f.name, folder.name) in MODALITIES for f in folder.iterdir() if _is_case_file(f)):
            return True
    return False


def detect_layout(root: str | Path) -> str:
    """Name of the layout of a dataset folder (or of a single case folder)."""
    root = Path(root)
    if (root / "dataset.json").is_file():
        return "msd"
    folders = find_case_folders(root)
    if not folders:
        raise DataError(root, f"{root}: no NIfTI files found (empty folder or unknown layout)")
    return scan_case_folder(folders[0]).layout


def scan_dataset(
    root: str | Path, layout: str | None = None, *, problems: list[str] | None = None, scheme: str | None = None
) -> tuple[str, list[CaseRef]]:
    """Detect the layout of ``root`` and list its cases.

    Args:
        root: dataset folder (or one case folder).
        layout: force a layout instead of detecting it.
        scheme: state the label scheme of every case (default: each case id's, see :func:`case_scheme`).
        problems: collect case-level problems here (a case folder whose files cannot be matched,
            duplicate ids, mixed layouts) and go on with the other cases; default: raise on the
            first. Folder-level problems (missing, empty, unreadable ``dataset.json``) always raise.

    Raises:
        MissingFileError: ``root`` does not exist.
        DataError: empty folder, unknown layout, or a case folder with a missing modality.
    """
    root = Path(root)
    if not root.exists():
        raise MissingFileError(root, f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DataError(root, f"{root}: is a file, expected a dataset folder")
    if layout is not None and layout not in FILE_LAYOUTS:
        raise ValueError(f"layout={layout!r} is unknown; expected one of {list(FILE_LAYOUTS)}")
    if scheme is not None:
        get_scheme(scheme)
    if layout == "msd" or (layout is None and (root / "dataset.json").is_file()):
        refs = [with_scheme(r, scheme) for r in scan_msd(root, problems=problems)]
        if not refs and not problems:
            raise DataError(root, f"{root}: MSD dataset.json found but no images in imagesTr/ or imagesTs/")
        return "msd", refs
    folders = find_case_folders(root)
    if not folders:
        if not any(root.iterdir()):
            raise DataError(root, f"{root}: empty folder")
        raise DataError(root, f"{root}: unknown layout: no case folders with NIfTI files found")
    refs = []
    for folder in folders:
        try:
            refs.append(scan_case_folder(folder, layout, scheme=scheme))
        except DataError as exc:
            _report(problems, exc)
    layouts = Counter(r.layout for r in refs)
    if len(layouts) > 1:
        _report(
            problems,
            DataError(root, f"{root}: case folders of several layouts {sorted(layouts)}; pass layout= explicitly"),
        )
    ids = Counter(r.case_id for r in refs)
    dupes = sorted(i for i, n in ids.items() if n > 1)
    if dupes:
        where = {i: [str(r.files[0].parent) for r in refs if r.case_id == i] for i in dupes[:5]}
        _report(problems, DataError(root, f"{root}: duplicate case ids {dupes[:5]} (folders {where})"))
    if not refs:  # only reached when collecting: every case folder had a problem
        return layout or "unknown", []
    return layouts.most_common(1)[0][0], refs


# ----------------------------------------------------------------------------------- writing


def case_id_for(layout: str, index: int) -> str:
    """The ``index``-th (0-based) case id in a layout's naming, e.g. ``BraTS2021_00000``."""
    if layout == "brats2018":
        return f"Brats18_SYN_{index + 1:03d}_1"
    if layout == "brats2020":
        return f"BraTS20_Training_{index + 1:03d}"
    if layout == "brats2021":
        return f"BraTS2021_{index:05d}"
    if layout == "brats2023":
        return f"BraTS-GLI-{index:05d}-000"
    if layout == "msd":
        return f"BRATS_{index + 1:03d}"
    if layout == MENRT_LAYOUT:
        return f"BraTS-MEN-RT-{index:04d}-1"
    raise ValueError(f"layout={layout!r} is unknown; expected one of {list(FILE_LAYOUTS)}")


def _msd_dataset_json(root: Path) -> None:
    path = root / "dataset.json"
    if path.exists():
        return
    meta = {
        "name": "BRATS",
        "description": "Synthetic brain tumour data in the MSD Task01 layout (brainseg_tf)",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "training": [],
        "test": [],
    }
    atomic.write_json(path, meta)


def _update_msd_index(root: Path, case_id: str, has_label: bool) -> None:
    path = root / "dataset.json"
    meta = read_json(path)
    if has_label:
        entry = {"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"}
        if entry not in meta["training"]:
            meta["training"].append(entry)
    elif f"./imagesTs/{case_id}.nii.gz" not in meta["test"]:
        meta["test"].append(f"./imagesTs/{case_id}.nii.gz")
    meta["numTraining"], meta["numTest"] = len(meta["training"]), len(meta["test"])
    atomic.write_json(path, meta)


def write_case(
    root: str | Path,
    layout: str,
    case_id: str,
    images: dict[str, np.ndarray],
    label: np.ndarray | None,
    affine: np.ndarray,
    *,
    grade: str | None = None,
    header=None,
    suffix: str = ".nii.gz",
    scheme: str | None = None,
) -> CaseRef:
    """Write one case in a layout's file naming, converting its labels to the files' values.

    Args:
        root: dataset folder.
        layout: one of :data:`FILE_LAYOUTS`.
        case_id: the case id (see :func:`case_id_for`).
        images: canonical modality (``flair``, ``t1``, ``t1ce``, ``t2``) -> ``(X, Y, Z)`` array,
            written with its own dtype (int16 like real BraTS files). Every layout writes the four,
            except ``men_rt``: ``t1ce`` alone (as ``<case>_t1c``; other modalities given are not written).
        label: ``(X, Y, Z)`` canonical labels (0-3), or with ``scheme`` that scheme's internal
            labels; ``None`` for an unlabelled case.
        affine: 4x4 voxel-to-world affine shared by all files.
        grade: for ``brats2018``, put the case under ``HGG/`` or ``LGG/``.
        suffix: ``.nii.gz`` or ``.nii``.
        scheme: the case's label scheme (:mod:`brainseg_tf.schemes`) where its labels are not the
            canonical ones (``gli2024``/``met2024`` with 4 RC, ``ped2024``): the mask is written in
            the scheme's SOURCE values (PED internal 1 NET, 2 ED, 3 ET, 4 CC -> file 2, 4, 1, 3) and
            its header records the scheme's name. A canonical scheme writes through the layout's
            convention, as without it. The ``men_rt`` layout holds the ``men_rt`` scheme (the
            default there; internal 1 GTV -> ``<case>_gtv`` value 1).

    Returns:
        The :class:`CaseRef` of the written files.

    Raises:
        ValueError: unknown layout or scheme, missing modalities, a bad case id, labels outside
            the scheme's internal labels (or outside 0-3), a scheme other than ``men_rt`` in the
            ``men_rt`` layout.
    """
    if layout not in FILE_LAYOUTS:
        raise ValueError(f"layout={layout!r} is unknown; expected one of {list(FILE_LAYOUTS)}")
    check_case_id(case_id)
    if layout in LAYOUT_SCHEME:
        scheme = scheme or LAYOUT_SCHEME[layout]
        if get_scheme(scheme).name != LAYOUT_SCHEME[layout]:
            raise ValueError(
                f"scheme={scheme!r}: the {layout!r} layout holds the {LAYOUT_SCHEME[layout]!r} scheme only"
            )
    written = MODALITIES if layout == "msd" else tuple(m for m in MODALITIES if m in _LAYOUT_TOKENS[layout])
    missing = [m for m in written if m not in images]
    if missing:
        raise ValueError(f"images is missing modalities {missing}")
    root = Path(root)
    chosen = None if scheme is None else get_scheme(scheme)
    convention = LAYOUT_CONVENTION[layout]
    stamp = convention
    if chosen is not None and not chosen.is_canonical:
        file_label = None if label is None else chosen.from_internal(label)
        stamp = chosen.name
    else:
        file_label = None if label is None else from_canonical(label, convention)
    name = None if chosen is None else chosen.name
    if layout == "msd":
        _msd_dataset_json(root)
        stack = np.stack([images[m] for m in MODALITIES], axis=-1)
        img_dir, lab_dir = ("imagesTr", "labelsTr") if label is not None else ("imagesTs", "labelsTs")
        img_path = save_nifti(stack, root / img_dir / f"{case_id}{suffix}", affine=affine, header=header)
        lab_path = None
        if file_label is not None:
            lab_path = save_nifti(
                file_label,
                root / lab_dir / f"{case_id}{suffix}",
                affine=affine,
                header=header,
                label_convention=stamp,
            )
        _update_msd_index(root, case_id, label is not None)
        return CaseRef(case_id, "msd", "msd", {"4d": img_path}, lab_path, MODALITIES, scheme=name)
    folder = root / grade / case_id if (grade and layout == "brats2018") else root / case_id
    sep = "-" if layout == "brats2023" else "_"
    tokens = _LAYOUT_TOKENS[layout]
    paths = {
        m: save_nifti(images[m], folder / f"{case_id}{sep}{tokens[m]}{suffix}", affine=affine, header=header)
        for m in written
    }
    lab_path = None
    if file_label is not None:
        lab_path = save_nifti(
            file_label,
            folder / f"{case_id}{sep}{tokens['seg']}{suffix}",
            affine=affine,
            header=header,
            label_convention=stamp,
        )
    return CaseRef(case_id, layout, convention, paths, lab_path, grade=grade, scheme=name)


def warn_notes(ref: CaseRef) -> None:
    for note in ref.warnings:
        warnings.warn(note, stacklevel=3)
