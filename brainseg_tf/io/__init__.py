"""Reading and writing BraTS-style datasets with canonical channels, labels and kept geometry.

Core API::

    case = read_case("BraTS2021_00000/")        # Case: image (X, Y, Z, 4) float32, label uint8
    ds = open_dataset("/data/BraTS2021")         # layout detected; len(ds), iteration, ds["case_id"]
    write_label(pred, case, "pred.nii.gz")       # back in the source's convention and geometry

Channels are always ``(flair, t1, t1ce, t2)``; a case of a scheme that ships fewer modalities
(MEN-RT: T1c alone) has zero channels for the others and says which it has
(:attr:`Case.available_modalities`; :func:`require_modalities` refuses a model asking for another).
Labels are the internal labels of the case's label scheme: the canonical 0 BG, 1 NCR, 2 ED, 3 ET for
the glioma schemes, 1 core, 2 edema, 3 ET, 4 RC or CC for GLI/MET 2024 and PED 2024, 1 GTV for
MEN-RT (:attr:`brainseg_tf.schemes.LabelScheme.internal`). Each case's label scheme comes from its
id's task prefix, its layout (MEN-RT's ``_gtv`` mask) or ``scheme=`` (:mod:`brainseg_tf.schemes`).
No TensorFlow is imported here.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from brainseg_tf.io import labels, layouts, predictions
from brainseg_tf.io.errors import DataError, MissingFileError, UnknownCaseError, refuse_missing_modalities
from brainseg_tf.io.jsonfile import read_json
from brainseg_tf.io.labels import (
    CLASS_NAMES,
    MODALITIES,
    REGIONS,
    from_canonical,
    get_convention,
    to_canonical,
)
from brainseg_tf.io.layouts import (
    FILE_LAYOUTS,
    LAYOUTS,
    MENRT_LAYOUT,
    CaseRef,
    case_id_for,
    case_id_problem,
    check_case_id,
    check_scheme_readable,
    detect_layout,
    labels_to_canonical,
    scan_case_folder,
    scan_dataset,
    scan_msd,
    scheme_modalities,
    warn_notes,
    with_scheme,
    write_case,
)
from brainseg_tf.io.nifti import (
    AFFINE_ATOL,
    MAX_VOXELS,
    MAX_VOXELS_ENV,
    Volume,
    is_nifti_name,
    load_nifti,
    max_voxels,
    read_header,
    save_nifti,
    stamped_convention,
)
from brainseg_tf.progress import progress as show_progress
from brainseg_tf.schemes import SCHEMES, LabelScheme, detect_scheme, get_scheme

SPACING_RTOL = 1e-3  # header pixdim vs affine column norms


@dataclass
class Case:
    """One subject: a 4-channel image with optional canonical labels and its geometry.

    Attributes:
        image: ``(X, Y, Z, 4)`` float32 in canonical channel order ``(flair, t1, t1ce, t2)``,
            voxel order as in the files (no reorientation); a modality the case has no file for
            (see ``available_modalities``) is a channel of zeros.
        label: ``(X, Y, Z)`` uint8 internal labels of ``scheme`` (canonical 0 BG, 1 NCR, 2 ED, 3 ET
            for the glioma schemes; PED 2024: 1 NET, 2 ED, 3 ET, 4 CC; GLI/MET 2024: 1 NETC,
            2 SNFH, 3 ET, 4 RC; MEN-RT: 1 GTV) or ``None``.
        affine: 4x4 voxel-to-world affine of the files.
        header: NIfTI header of the mask (or of the first modality when there is none).
        spacing: voxel size in mm ``(sx, sy, sz)``.
        case_id: the case identifier.
        convention: label convention of the source (``"brats"``, ``"brats2023"``, ``"msd"``).
        layout: dataset layout the case was read from.
        shape: spatial shape ``(X, Y, Z)`` of the source files.
        ref: the files the case was read from.
        scheme: the label scheme of the source (:mod:`brainseg_tf.schemes`), or ``None``.
        available_modalities: the modalities read from files, in canonical order (MEN-RT:
            ``("t1ce",)``); the image's other channels are zeros.
    """

    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    header: nib.Nifti1Header
    spacing: tuple[float, float, float]
    case_id: str
    convention: str
    layout: str
    shape: tuple[int, int, int]
    ref: CaseRef | None = None
    meta: dict = field(default_factory=dict)
    scheme: str | None = None
    available_modalities: tuple[str, ...] = MODALITIES

    @property
    def modalities(self) -> tuple[str, ...]:
        """The names of the image's channels: always the canonical four."""
        return MODALITIES


def _check_geometry(vol: Volume, first: Volume) -> None:
    if vol.shape != first.shape:
        raise DataError(
            vol.path,
            f"{vol.path}: shape {vol.shape} differs from {first.path.name} {first.shape} (modalities must share one grid)",
        )
    if not np.allclose(vol.affine, first.affine, atol=AFFINE_ATOL):
        raise DataError(
            vol.path,
            f"{vol.path}: affine differs from {first.path.name} (max difference "
            f"{np.abs(vol.affine - first.affine).max():.4g} mm); the modalities are not co-registered",
        )


def _image_keys(ref: CaseRef) -> tuple[str, ...]:
    """The image files of a case: ``("4d",)`` for an MSD image, else its modalities (canonical order)."""
    return ("4d",) if "4d" in ref.images else ref.modalities


def _load_image(ref: CaseRef, key: str, cap: int | None) -> Volume:
    """One image file of a case (``key`` from :func:`_image_keys`), native dtype, shape-checked."""
    vol = load_nifti(ref.images[key], max_voxels=cap)
    if key == "4d" and (vol.data.ndim != 4 or vol.data.shape[3] != len(ref.channel_order)):
        raise DataError(vol.path, f"{vol.path}: shape {vol.data.shape}, expected (X, Y, Z, 4) for a 4D MSD image")
    if key != "4d" and vol.data.ndim != 3:
        raise DataError(vol.path, f"{vol.path}: shape {vol.data.shape}, expected a 3D volume for {key}")
    return vol


def _label_volume(ref: CaseRef, cap: int | None) -> Volume:
    lab = load_nifti(ref.label, max_voxels=cap)
    if lab.data.ndim == 4 and lab.data.shape[3] == 1:
        lab.data = lab.data[..., 0]
    if lab.data.ndim != 3:
        raise DataError(lab.path, f"{lab.path}: mask has shape {lab.data.shape}, expected (X, Y, Z)")
    return lab


def _resolve(path: str | Path | CaseRef, layout: str | None, scheme: str | None) -> CaseRef:
    if isinstance(path, CaseRef):
        return with_scheme(path, scheme)
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, f"{path}: case not found")
    if path.is_file():
        if not is_nifti_name(path.name):
            raise DataError(path, f"{path}: not a NIfTI file or case folder")
        root = path.parent.parent
        if not (root / "dataset.json").is_file():
            raise DataError(path, f"{path}: a single file is only a case in an MSD folder (no {root / 'dataset.json'})")
        ref = next((r for r in scan_msd(root) if r.images["4d"] == path), None)
        if ref is None:
            raise DataError(path, f"{path}: not listed under imagesTr/ or imagesTs/ of {root}")
        return with_scheme(ref, scheme)
    return scan_case_folder(path, layout, scheme=scheme)


def read_case(
    path: str | Path | CaseRef,
    *,
    layout: str | None = None,
    convention: str | None = None,
    load_label: bool = True,
    max_voxels: int | None = None,
    scheme: str | None = None,
) -> Case:
    """Read one case with canonical channels and labels.

    Args:
        path: a BraTS case folder, an MSD image file (``imagesTr/BRATS_001.nii.gz``) or a
            :class:`CaseRef` from :func:`open_dataset`.
        layout: force a layout instead of detecting it from the names.
        convention: force the mask's label convention (default: the scheme's); a stated
            convention reads the mask with it, whatever the scheme.
        load_label: read the mask when there is one.
        max_voxels: voxel cap per file (default: :func:`brainseg_tf.io.nifti.max_voxels`).
        scheme: state the label scheme (:data:`brainseg_tf.schemes.SCHEMES`; default: from the
            case id's task prefix, e.g. ``ped2024`` for ``BraTS-PED-*``).

    Returns:
        A :class:`Case`; ``label`` is ``None`` when the case has no mask.

    Raises:
        MissingFileError: the path does not exist.
        DataError: a modality its scheme ships is missing, a corrupt/truncated/non-NIfTI file,
            shapes or affines that disagree between files, NaN/Inf voxels, label values outside the
            scheme or convention. The message names the file.
    """
    ref = _resolve(path, layout, scheme)
    check_scheme_readable(ref)
    warn_notes(ref)
    conv = get_convention(convention or ref.convention).name
    first = None
    keys = _image_keys(ref)
    # The modality files are read (gunzip + decode) in threads: zlib releases the GIL, so a
    # free core overlaps them. Results come back in key order, so the first bad file in that
    # order is the one reported, as when reading one by one.
    with ThreadPoolExecutor(max_workers=min(4, len(keys))) as pool:
        volumes = pool.map(lambda key: _load_image(ref, key, max_voxels), keys)
        loaded = [(key, vol) for key, vol in zip(keys, volumes)]
    while loaded:  # each volume is freed once copied into the image
        key, vol = loaded.pop(0)
        if key == "4d":
            image = vol.data[..., [ref.channel_order.index(m) for m in MODALITIES]].astype(np.float32)
            first = vol
            break
        if first is None:
            first = vol
            shape = vol.shape + (len(MODALITIES),)
            # a case of fewer modalities (MEN-RT: T1c) keeps zeros in the channels it has no file for
            image = np.empty(shape, np.float32) if len(keys) == len(MODALITIES) else np.zeros(shape, np.float32)
        else:
            _check_geometry(vol, first)
        image[..., MODALITIES.index(key)] = vol.data
    header = first.header
    label = None
    if load_label and ref.label is not None:
        lab = _label_volume(ref, max_voxels)
        _check_geometry(lab, first)
        if convention is None:
            canonical = labels_to_canonical(lab.data, ref, source=lab.path)
        else:
            canonical = to_canonical(lab.data, conv, source=lab.path)
        label = np.ascontiguousarray(canonical)
        header = lab.header
    return Case(
        image=np.ascontiguousarray(image, dtype=np.float32),
        label=label,
        affine=first.affine,
        header=header,
        spacing=first.spacing,
        case_id=ref.case_id,
        convention=conv,
        layout=ref.layout,
        shape=first.shape,
        ref=ref,
        scheme=ref.scheme,
        available_modalities=ref.modalities,
    )


def require_modalities(case: Case | CaseRef, modalities: Sequence[str], what: str = "the model") -> None:
    """Refuse a case without a file for one of ``modalities`` (the canonical names a model uses).

    A case read from files knows its modalities (:attr:`Case.available_modalities`); its image
    still has four channels, zeros where it has no file, so a model must ask before it selects.

    Raises:
        DataError: naming the case's folder or file, the modalities asked for and the ones it has.
    """
    ref = case if isinstance(case, CaseRef) else case.ref
    if ref is not None:  # names the case's folder or file
        layouts.require_modalities(ref, modalities, what)
        return
    refuse_missing_modalities(None, case.case_id, case.available_modalities, modalities, what)


class Dataset:
    """The cases of a dataset folder; cases are read lazily.

    ``len(ds)``, ``for case in ds``, ``ds[i]``, ``ds["BraTS2021_00000"]``, ``ds.case_ids``.
    """

    def __init__(
        self, root: str | Path, layout: str | None = None, convention: str | None = None, scheme: str | None = None
    ):
        self.root = Path(root)
        self.layout, self.refs = scan_dataset(self.root, layout, scheme=scheme)
        self.convention = convention
        self._by_id = {r.case_id: r for r in self.refs}

    def __len__(self) -> int:
        return len(self.refs)

    def __iter__(self) -> Iterator[Case]:
        for ref in self.refs:
            yield read_case(ref, convention=self.convention)

    def __getitem__(self, key: int | str) -> Case:
        return read_case(self.ref(key), convention=self.convention)

    def __contains__(self, case_id: str) -> bool:
        return case_id in self._by_id

    def ref(self, key: int | str) -> CaseRef:
        """The :class:`CaseRef` of a case by index or case id."""
        if isinstance(key, (int, np.integer)):
            return self.refs[key]
        if key not in self._by_id:
            raise UnknownCaseError(self.root, f"{self.root}: case {key!r} is not in this dataset ({len(self)} cases)")
        return self._by_id[key]

    @property
    def case_ids(self) -> list[str]:
        return [r.case_id for r in self.refs]

    @property
    def labelled_ids(self) -> list[str]:
        return [r.case_id for r in self.refs if r.label is not None]

    def grid(self, key: int | str) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
        """``(shape, spacing)`` of a case's scan grid, from the header of its first image file."""
        shape, _, spacing = read_header(next(iter(self.ref(key).images.values())))
        return tuple(int(n) for n in shape[:3]), tuple(float(x) for x in spacing)

    def __repr__(self) -> str:
        return f"Dataset(root={str(self.root)!r}, layout={self.layout!r}, cases={len(self)})"


def open_dataset(
    root: str | Path,
    *,
    layout: str | None = None,
    convention: str | None = None,
    scheme: str | None = None,
    channel_order: Sequence[str] | None = None,
) -> Dataset:
    """Open a dataset folder, detecting its layout (see :data:`LAYOUTS`).

    ``scheme`` states every case's label scheme (default: each case id's task prefix decides).
    A folder of the Kaggle per-slice HDF5 set (``volume_<V>_slice_<S>.h5``, or ``layout=
    "kaggle_slices"``) opens as a :class:`brainseg_tf.io.kaggle.SliceDataset` of volumes whose image
    channels are read in ``channel_order`` (default :data:`brainseg_tf.io.kaggle.KAGGLE_CHANNELS`).
    An uncompressed ``.tar`` of case folders (Kaggle's BraTS 2021) opens as a
    :class:`brainseg_tf.io.archive.TarDataset`, read in place.

    Raises:
        MissingFileError: the folder does not exist.
        DataError: empty folder, unknown layout, a case with a missing modality.
    """
    from brainseg_tf.io import archive, kaggle

    if archive.is_tar_path(root):  # Kaggle's BraTS2021_Training_Data.tar, read in place
        if channel_order is not None:
            raise ValueError("channel_order is only for the Kaggle slice set, whose files do not name their channels")
        return archive.TarDataset(root, layout=layout, convention=convention, scheme=scheme)
    if layout == "kaggle_slices" or (layout is None and kaggle.is_slice_folder(root)):
        if scheme is not None and get_scheme(scheme).name != "brats2021":
            raise ValueError(f"scheme={scheme!r}: the Kaggle slice set holds BraTS 2020 labels (scheme 'brats2021')")
        return kaggle.SliceDataset(root, channel_order=channel_order)
    if channel_order is not None:
        raise ValueError("channel_order is only for the Kaggle slice set, whose files do not name their channels")
    return Dataset(root, layout=layout, convention=convention, scheme=scheme)


def write_label(
    label: np.ndarray,
    reference_case: Case,
    path: str | Path,
    convention: str | None = None,
) -> Path:
    """Write a label map aligned with its scan, in its source's values or a chosen label convention.

    Args:
        label: ``(X, Y, Z)`` internal labels of the case's scheme on the source grid
            (``reference_case.shape``): the canonical 0-3 for the glioma schemes.
        reference_case: the case the labels belong to; its affine and header are restored.
        path: destination ``.nii.gz``/``.nii`` (written atomically).
        convention: target convention (default: the source's own); recorded in the header
            description, where evaluation reads it back. A case whose scheme has labels beyond the
            canonical ones (GLI/MET 2024 with RC, PED 2024) is written in its scheme's source values
            and the header records the scheme; a stated ``convention`` needs canonical labels.

    Raises:
        ValueError: the label's shape differs from the source grid.
        DataError: labels outside the scheme's internal labels (or outside 0-3 for a convention).
    """
    label = np.asarray(label)
    if tuple(label.shape) != tuple(reference_case.shape):
        raise ValueError(
            f"label shape {tuple(label.shape)} differs from the shape {tuple(reference_case.shape)} of case "
            f"{reference_case.case_id!r}; paste predictions back into native space first"
        )
    scheme = None if reference_case.scheme is None else get_scheme(reference_case.scheme)
    if convention is None and scheme is not None and not scheme.is_canonical:
        try:
            out = scheme.from_internal(label)
        except ValueError as exc:
            raise DataError(path, f"{path}: case {reference_case.case_id!r}: {exc}") from None
        stamp = scheme.name
    else:
        stamp = get_convention(convention or reference_case.convention).name
        out = from_canonical(label, stamp)
    return save_nifti(
        out, path, affine=reference_case.affine, header=reference_case.header, dtype=np.uint8, label_convention=stamp
    )


def _spacing_note(vol: Volume) -> str | None:
    """A warning when the header's voxel sizes (pixdim) disagree with the affine's column norms."""
    from_affine = np.sqrt((vol.affine[:3, :3] ** 2).sum(axis=0))
    if np.allclose(vol.spacing, from_affine, rtol=SPACING_RTOL, atol=1e-4):
        return None
    return (
        f"{vol.path}: header voxel sizes (pixdim) {tuple(round(z, 4) for z in vol.spacing)} disagree with the "
        f"affine's {tuple(round(float(z), 4) for z in from_affine)} mm; spacing (HD95, volumes) is taken from "
        f"pixdim, geometry from the affine"
    )


def _content_key(data: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16).hexdigest()


def _check_case(ref: CaseRef, cap: int | None) -> tuple[list[str], list[str], dict[str, tuple[str, Path]]]:
    """Every problem of one case, file by file: (errors, warnings, content key -> (modality, file))."""
    errors: list[str] = []
    notes: list[str] = list(ref.warnings)
    keys: dict[str, tuple[str, Path]] = {}
    first: Volume | None = None
    for name in _image_keys(ref):
        try:
            vol = _load_image(ref, name, cap)
        except DataError as exc:
            errors.append(str(exc))
            continue
        if first is None:
            first = vol
        else:
            try:
                _check_geometry(vol, first)
            except DataError as exc:
                errors.append(str(exc))
        channels = (
            [(m, vol.data[..., ref.channel_order.index(m)]) for m in MODALITIES] if name == "4d" else [(name, vol.data)]
        )
        for modality, data in channels:
            if not data.any():
                notes.append(f"{vol.path}: {modality} is all zeros")
                continue
            digest = _content_key(data)
            if digest in keys:
                notes.append(f"{vol.path}: {modality} has the same voxels as {keys[digest][0]} ({keys[digest][1]})")
            keys.setdefault(digest, (modality, vol.path))
        note = _spacing_note(vol)
        if note:
            notes.append(note)
    if ref.label is not None:
        try:
            lab = _label_volume(ref, cap)
            if first is not None:
                _check_geometry(lab, first)
            internal = labels_to_canonical(lab.data, ref, source=lab.path)
            if not internal.any():
                notes.append(f"{lab.path}: mask is empty (no tumour voxels)")
            else:
                note = _no_tumour_note(internal, ref, lab.path)
                if note:
                    notes.append(note)
            note = _spacing_note(lab)
            if note:
                notes.append(note)
        except DataError as exc:
            errors.append(str(exc))
    return errors, notes, keys


def _no_tumour_note(internal: np.ndarray, ref: CaseRef, path: Path) -> str | None:
    """A note when a mask holds only labels outside the tumour (GLI/MET 2024: only 4 RC)."""
    if ref.scheme is None:
        return None
    scheme = get_scheme(ref.scheme)
    if scheme.is_canonical or "WT" not in scheme.region_names:
        return None
    wt = scheme.region_internal("WT")
    if np.isin(internal, wt).any():
        return None
    held = sorted(int(v) for v in np.unique(internal) if v)
    names = ", ".join(f"{scheme.label_value(scheme.internal[v - 1])} {scheme.internal[v - 1]}" for v in held)
    return f"{path}: mask holds no tumour voxels (WT empty), only {names}"


def _scheme_groups(refs: list[CaseRef]) -> dict[str | None, list[str]]:
    """Case ids per label scheme, in first-seen order."""
    groups: dict[str | None, list[str]] = {}
    for ref in refs:
        groups.setdefault(ref.scheme, []).append(ref.case_id)
    return groups


def _mixed_schemes_note(root: str | Path, refs: list[CaseRef]) -> str | None:
    """A note when a dataset's cases are in label schemes whose labels or regions differ (e.g. GLI
    2024 with RC and PED 2024): one model head or one evaluation cannot take them together."""
    groups = _scheme_groups(refs)
    if len(groups) < 2 or all(name is None or get_scheme(name).is_canonical for name in groups):
        return None
    listed = "; ".join(
        f"{name} ({len(ids)}: {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}"
        + (f"; labels {get_scheme(name).labels_text()})" if name else ")")
        for name, ids in groups.items()
    )
    return (
        f"{root}: cases of several label schemes whose labels differ: {listed}; train and evaluate one scheme "
        f"at a time (split the folder or state --scheme / scheme=)"
    )


def validate_dataset(
    root: str | Path,
    *,
    layout: str | None = None,
    progress: bool = False,
    max_voxels: int | None = None,
    scheme: str | None = None,
) -> list[str]:
    """Check every case and file of a dataset in one pass; return every problem found.

    Errors (one string each, naming the file): case folders whose files cannot be matched
    (missing or duplicate modality, unknown naming), duplicate case ids, bad ``dataset.json``,
    unreadable/corrupt/truncated files, headers that cannot be real (zero-length axis, more
    voxels than the cap or the file can hold, RGB/complex data), shapes or affines that differ
    within a case, NaN/Inf voxels, label values outside the case's scheme or convention
    (``scheme`` states the scheme; default: each case id's or layout's).

    Warnings (strings starting with ``"warning: "``, after the errors): the same voxels under
    two case ids (a copy or a symlink: it would leak between training and validation) or in two
    modalities of one case, an all-zero modality, an empty mask, a mask without tumour (only a
    resection cavity), header voxel sizes that disagree with the affine, files ignored or oddly
    named, cases of label schemes whose labels differ (GLI 2024 beside PED 2024). Content is compared by a hash of the decoded
    voxels, so a recompressed copy is found too.

    Files are read one at a time (never a whole 4-channel case), headers checked first.

    Returns:
        Errors then warnings; an empty list means all good.
    """
    problems: list[str] = []
    try:
        _, refs = scan_dataset(root, layout, problems=problems, scheme=scheme)
    except DataError as exc:
        return [str(exc)]
    notes: list[str] = []
    mixed = _mixed_schemes_note(root, refs)
    if mixed:
        notes.append(mixed)
    owners: dict[str, list[tuple[str, str, Path]]] = {}
    iterator = refs
    if progress:
        iterator = show_progress(refs, desc="validate")
    for ref in iterator:
        errors, case_notes, keys = _check_case(ref, max_voxels)
        problems.extend(errors)
        notes.extend(case_notes)
        for digest, (modality, path) in keys.items():
            owners.setdefault(digest, []).append((ref.case_id, modality, path))
    shared: dict[tuple[str, ...], list[str]] = {}
    for entries in owners.values():
        ids = tuple(sorted({cid for cid, _, _ in entries}))
        if len(ids) > 1:
            shared.setdefault(ids, []).extend(f"{m} ({p})" for _, m, p in entries)
    for ids, files in shared.items():
        notes.append(
            f"cases {', '.join(ids)} hold identical voxels (a copy or a symlink?): {'; '.join(files)}; "
            f"the same scan under two ids leaks between training and validation"
        )
    return problems + [f"warning: {n}" for n in notes]


def dataset_summary(
    root: str | Path, *, layout: str | None = None, progress: bool = False, scheme: str | None = None
) -> dict:
    """Layout, label scheme, cases, shapes, spacings and per-class label volumes (ml) of a dataset folder.

    Reads headers for shapes and spacing and the masks for volumes; images are not loaded. Volumes
    are per class of each case's label scheme, under the scheme's names (``brats2021``: NCR, ED,
    ET; ``ped2024``: NET, ED, ET, CC; ``gli2024``: NETC, SNFH, ET, RC), one table per scheme:
    cases of different schemes are never added up.

    Returns:
        ``root``, ``layout``, ``convention`` (of the first case), ``scheme`` (the cases' scheme, or
        ``None`` when they are in several), ``schemes`` (scheme -> number of cases), ``cases``,
        ``labelled``, ``shapes`` and ``spacings`` (value -> cases), ``volumes_ml`` (class -> ml per
        labelled case, for the one scheme; ``None`` for several) and ``volumes_ml_by_scheme``
        (scheme -> that table).
    """
    ds = open_dataset(root, layout=layout, scheme=scheme)
    shapes: Counter = Counter()
    spacings: Counter = Counter()
    groups = _scheme_groups(ds.refs)
    by_scheme: dict[str | None, dict[str, list[float]]] = {name: _volume_table(name) for name in groups}
    refs = ds.refs
    if progress:
        refs = show_progress(refs, desc="info")
    for ref in refs:
        first = next(iter(ref.images.values()))
        shape, _, spacing = read_header(first)
        shapes[tuple(shape[:3])] += 1
        spacings[tuple(round(s, 3) for s in spacing)] += 1
        if ref.label is not None:
            lab = load_nifti(ref.label)
            counts = labels.label_values(labels_to_canonical(lab.data, ref, source=ref.label))
            voxel_ml = float(np.prod(lab.spacing)) / 1000.0
            for value, vals in enumerate(by_scheme[ref.scheme].values(), start=1):
                vals.append(counts.get(value, 0) * voxel_ml)
    single = len(groups) == 1
    return {
        "root": str(ds.root),
        "layout": ds.layout,
        "convention": ds.refs[0].convention,
        "scheme": ds.refs[0].scheme if single else None,
        "schemes": {name: len(ids) for name, ids in groups.items()},
        "cases": len(ds),
        "labelled": len(ds.labelled_ids),
        "shapes": dict(shapes),
        "spacings": dict(spacings),
        "volumes_ml": next(iter(by_scheme.values())) if single else None,
        "volumes_ml_by_scheme": by_scheme,
    }


def _volume_table(scheme: str | None) -> dict[str, list[float]]:
    """Empty per-class volume lists, keyed by the scheme's class names in internal label order."""
    names = CLASS_NAMES[1:] if scheme is None else get_scheme(scheme).class_names[1:]
    return {name: [] for name in names}


def _labels_text(summary: dict, scheme: str | None) -> str:
    """What the layout line says about the labels: the convention for a canonical scheme (as before
    schemes existed), else the scheme with its file values."""
    if scheme is None or get_scheme(scheme).is_canonical:
        return str(summary["convention"])
    chosen = get_scheme(scheme)
    return f"scheme {chosen.name}: {chosen.labels_text()}"


def _volume_lines(table: dict[str, list[float]], title: str = "volumes ml") -> list[str]:
    lines = [f"{title}  mean     median   min      max      cases-present"]
    for name, vals in table.items():
        if not vals:
            continue
        v = np.asarray(vals)
        lines.append(
            f"  {name:<8} {v.mean():8.2f} {np.median(v):8.2f} {v.min():8.2f} {v.max():8.2f} {int((v > 0).sum())}/{len(v)}"
        )
    return lines


def format_summary(summary: dict) -> str:
    """Human-readable text of :func:`dataset_summary`; a dataset of several label schemes gets a
    ``schemes`` line and one volume table per scheme."""
    schemes = summary.get("schemes") or {summary.get("scheme"): summary["cases"]}
    mixed = len(schemes) > 1
    labels_text = "several schemes, see below" if mixed else _labels_text(summary, next(iter(schemes)))
    lines = [
        f"dataset    {summary['root']}",
        f"layout     {summary['layout']} (labels: {labels_text})",
        f"cases      {summary['cases']} ({summary['labelled']} with masks)",
        "shapes     " + ", ".join(f"{'x'.join(map(str, s))} ({n})" for s, n in summary["shapes"].items()),
        "spacing    " + ", ".join(f"{'x'.join(map(str, s))} mm ({n})" for s, n in summary["spacings"].items()),
    ]
    if mixed:
        lines.append(
            "schemes    "
            + ", ".join(f"{name} ({n})" for name, n in schemes.items())
            + ": label classes differ, volumes per scheme"
        )
        for name, table in summary["volumes_ml_by_scheme"].items():
            if any(table.values()):
                what = f"{name}: {get_scheme(name).labels_text()}" if name else "no scheme: canonical labels"
                lines.append(f"[{what}]")
                lines.extend(_volume_lines(table))
    elif summary["labelled"]:
        lines.extend(_volume_lines(summary["volumes_ml"]))
    return "\n".join(lines)


__all__ = [
    "Case",
    "CaseRef",
    "Dataset",
    "DataError",
    "MissingFileError",
    "UnknownCaseError",
    "Volume",
    "LAYOUTS",
    "FILE_LAYOUTS",
    "MENRT_LAYOUT",
    "MODALITIES",
    "REGIONS",
    "CLASS_NAMES",
    "read_case",
    "require_modalities",
    "scheme_modalities",
    "open_dataset",
    "write_label",
    "write_case",
    "case_id_for",
    "detect_layout",
    "load_nifti",
    "save_nifti",
    "read_header",
    "to_canonical",
    "from_canonical",
    "validate_dataset",
    "dataset_summary",
    "format_summary",
    "labels",
    "predictions",
    "check_case_id",
    "case_id_problem",
    "read_json",
    "max_voxels",
    "MAX_VOXELS",
    "MAX_VOXELS_ENV",
    "stamped_convention",
    "SCHEMES",
    "LabelScheme",
    "detect_scheme",
    "get_scheme",
]
