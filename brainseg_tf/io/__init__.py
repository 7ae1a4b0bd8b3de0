"""Reading and writing BraTS-style datasets with canonical channels, labels and kept geometry.

Core API::

    case = read_case("BraTS2021_00000/")        # Case: image (X, Y, Z, 4) float32, label uint8
    ds = open_dataset("/data/BraTS2021")         # layout detected; len(ds), iteration, ds["case_id"]
    write_label(pred, case, "pred.nii.gz")       # back in the source's convention and geometry

Channels are always ``(flair, t1, t1ce, t2)``; labels canonical 0 BG, 1 NCR, 2 ED, 3 ET.
No TensorFlow is imported here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

from brainseg_tf.io import labels
from brainseg_tf.io.errors import DataError, MissingFileError
from brainseg_tf.io.labels import CLASS_NAMES, MODALITIES, REGIONS, from_canonical, get_convention, to_canonical
from brainseg_tf.io.layouts import (
    LAYOUTS,
    CaseRef,
    case_id_for,
    detect_layout,
    scan_case_folder,
    scan_dataset,
    scan_msd,
    warn_notes,
    write_case,
)
from brainseg_tf.io.nifti import Volume, is_nifti_name, load_nifti, read_header, save_nifti

AFFINE_ATOL = 1e-3  # mm; co-registered BraTS modalities share one affine up to float noise


@dataclass
class Case:
    """One subject: a 4-channel image with optional canonical labels and its geometry.

    Attributes:
        image: ``(X, Y, Z, 4)`` float32 in canonical channel order ``(flair, t1, t1ce, t2)``,
            voxel order as in the files (no reorientation).
        label: ``(X, Y, Z)`` uint8 canonical labels (0 BG, 1 NCR, 2 ED, 3 ET) or ``None``.
        affine: 4x4 voxel-to-world affine of the files.
        header: NIfTI header of the mask (or of the first modality when there is none).
        spacing: voxel size in mm ``(sx, sy, sz)``.
        case_id: the case identifier.
        convention: label convention of the source (``"brats"``, ``"brats2023"``, ``"msd"``).
        layout: dataset layout the case was read from.
        shape: spatial shape ``(X, Y, Z)`` of the source files.
        ref: the files the case was read from.
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

    @property
    def modalities(self) -> tuple[str, ...]:
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


def _resolve(path: str | Path | CaseRef, layout: str | None) -> CaseRef:
    if isinstance(path, CaseRef):
        return path
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
        return ref
    return scan_case_folder(path, layout)


def read_case(
    path: str | Path | CaseRef,
    *,
    layout: str | None = None,
    convention: str | None = None,
    load_label: bool = True,
) -> Case:
    """Read one case with canonical channels and labels.

    Args:
        path: a BraTS case folder, an MSD image file (``imagesTr/BRATS_001.nii.gz``) or a
            :class:`CaseRef` from :func:`open_dataset`.
        layout: force a layout instead of detecting it from the names.
        convention: force the mask's label convention (default: the layout's).
        load_label: read the mask when there is one.

    Returns:
        A :class:`Case`; ``label`` is ``None`` when the case has no mask.

    Raises:
        MissingFileError: the path does not exist.
        DataError: a missing modality, a corrupt/truncated/non-NIfTI file, shapes or affines that
            disagree between files, NaN/Inf voxels, label values outside the convention. The
            message names the file.
    """
    ref = _resolve(path, layout)
    warn_notes(ref)
    conv = get_convention(convention or ref.convention).name
    if "4d" in ref.images:
        vol = load_nifti(ref.images["4d"], np.float32)
        if vol.data.ndim != 4 or vol.data.shape[3] != len(ref.channel_order):
            raise DataError(vol.path, f"{vol.path}: shape {vol.data.shape}, expected (X, Y, Z, 4) for a 4D MSD image")
        image = np.ascontiguousarray(vol.data[..., [ref.channel_order.index(m) for m in MODALITIES]])
        first = vol
    else:
        first = None
        for c, m in enumerate(MODALITIES):
            v = load_nifti(ref.images[m], np.float32)
            if v.data.ndim != 3:
                raise DataError(v.path, f"{v.path}: shape {v.data.shape}, expected a 3D volume for {m}")
            if first is None:
                first = v
                image = np.empty(v.shape + (len(MODALITIES),), dtype=np.float32)
            else:
                _check_geometry(v, first)
            image[..., c] = v.data
    header = first.header
    label = None
    if load_label and ref.label is not None:
        lab = load_nifti(ref.label)
        if lab.data.ndim == 4 and lab.data.shape[3] == 1:
            lab.data = lab.data[..., 0]
        if lab.data.ndim != 3:
            raise DataError(lab.path, f"{lab.path}: mask has shape {lab.data.shape}, expected (X, Y, Z)")
        _check_geometry(lab, first)
        label = np.ascontiguousarray(to_canonical(lab.data, conv, source=lab.path))
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
    )


class Dataset:
    """The cases of a dataset folder; cases are read lazily.

    ``len(ds)``, ``for case in ds``, ``ds[i]``, ``ds["BraTS2021_00000"]``, ``ds.case_ids``.
    """

    def __init__(self, root: str | Path, layout: str | None = None, convention: str | None = None):
        self.root = Path(root)
        self.layout, self.refs = scan_dataset(self.root, layout)
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
            raise KeyError(f"case {key!r} is not in {self.root} ({len(self)} cases)")
        return self._by_id[key]

    @property
    def case_ids(self) -> list[str]:
        return [r.case_id for r in self.refs]

    @property
    def labelled_ids(self) -> list[str]:
        return [r.case_id for r in self.refs if r.label is not None]

    def __repr__(self) -> str:
        return f"Dataset(root={str(self.root)!r}, layout={self.layout!r}, cases={len(self)})"


def open_dataset(root: str | Path, *, layout: str | None = None, convention: str | None = None) -> Dataset:
    """Open a dataset folder, detecting its layout (see :data:`LAYOUTS`).

    Raises:
        MissingFileError: the folder does not exist.
        DataError: empty folder, unknown layout, a case with a missing modality.
    """
    return Dataset(root, layout=layout, convention=convention)


def write_label(
    label: np.ndarray,
    reference_case: Case,
    path: str | Path,
    convention: str | None = None,
) -> Path:
    """Write a canonical label map aligned with its scan, in a chosen label convention.

    Args:
        label: ``(X, Y, Z)`` canonical labels (0-3) on the source grid (``reference_case.shape``).
        reference_case: the case the labels belong to; its affine and header are restored.
        path: destination ``.nii.gz``/``.nii`` (written atomically).
        convention: target convention (default: the source's own, ``reference_case.convention``).

    Raises:
        ValueError: the label's shape differs from the source grid.
    """
    label = np.asarray(label)
    if tuple(label.shape) != tuple(reference_case.shape):
        raise ValueError(
            f"label shape {tuple(label.shape)} differs from the shape {tuple(reference_case.shape)} of case "
            f"{reference_case.case_id!r}; paste predictions back into native space first"
        )
    out = from_canonical(label, convention or reference_case.convention)
    return save_nifti(out, path, affine=reference_case.affine, header=reference_case.header, dtype=np.uint8)


def validate_dataset(root: str | Path, *, layout: str | None = None, progress: bool = False) -> list[str]:
    """Read every case of a dataset and return every problem found (empty list: all good)."""
    try:
        ds = open_dataset(root, layout=layout)
    except DataError as exc:
        return [str(exc)]
    problems: list[str] = []
    refs = ds.refs
    if progress:
        from tqdm.auto import tqdm

        refs = tqdm(refs, desc="validate", unit="case")
    for ref in refs:
        problems.extend(f"warning: {w}" for w in ref.warnings)
        try:
            read_case(ref)
        except DataError as exc:
            problems.append(str(exc))
    return problems


def dataset_summary(root: str | Path, *, layout: str | None = None, progress: bool = False) -> dict:
    """Layout, cases, shapes, spacings and per-class label volumes (ml) of a dataset folder.

    Reads headers for shapes and spacing and the masks for volumes; images are not loaded.
    """
    ds = open_dataset(root, layout=layout)
    shapes: Counter = Counter()
    spacings: Counter = Counter()
    volumes: dict[str, list[float]] = {n: [] for n in CLASS_NAMES[1:]}
    refs = ds.refs
    if progress:
        from tqdm.auto import tqdm

        refs = tqdm(refs, desc="info", unit="case")
    for ref in refs:
        first = next(iter(ref.images.values()))
        shape, _, spacing = read_header(first)
        shapes[tuple(shape[:3])] += 1
        spacings[tuple(round(s, 3) for s in spacing)] += 1
        if ref.label is not None:
            lab = load_nifti(ref.label)
            counts = labels.label_values(to_canonical(lab.data, ref.convention, source=ref.label))
            voxel_ml = float(np.prod(lab.spacing)) / 1000.0
            for value, name in enumerate(CLASS_NAMES[1:], start=1):
                volumes[name].append(counts.get(value, 0) * voxel_ml)
    return {
        "root": str(ds.root),
        "layout": ds.layout,
        "convention": ds.refs[0].convention,
        "cases": len(ds),
        "labelled": len(ds.labelled_ids),
        "shapes": dict(shapes),
        "spacings": dict(spacings),
        "volumes_ml": volumes,
    }


def format_summary(summary: dict) -> str:
    """Human-readable text of :func:`dataset_summary`."""
    lines = [
        f"dataset    {summary['root']}",
        f"layout     {summary['layout']} (labels: {summary['convention']})",
        f"cases      {summary['cases']} ({summary['labelled']} with masks)",
        "shapes     " + ", ".join(f"{'x'.join(map(str, s))} ({n})" for s, n in summary["shapes"].items()),
        "spacing    " + ", ".join(f"{'x'.join(map(str, s))} mm ({n})" for s, n in summary["spacings"].items()),
    ]
    if summary["labelled"]:
        lines.append("volumes ml  mean     median   min      max      cases-present")
        for name, vals in summary["volumes_ml"].items():
            v = np.asarray(vals)
            lines.append(
                f"  {name:<8} {v.mean():8.2f} {np.median(v):8.2f} {v.min():8.2f} {v.max():8.2f} "
                f"{int((v > 0).sum())}/{len(v)}"
            )
    return "\n".join(lines)


__all__ = [
    "Case", "CaseRef", "Dataset", "DataError", "MissingFileError", "Volume", "LAYOUTS", "MODALITIES",
    "REGIONS", "CLASS_NAMES", "read_case", "open_dataset", "write_label", "write_case", "case_id_for",
    "detect_layout", "load_nifti", "save_nifti", "read_header", "to_canonical", "from_canonical",
    "validate_dataset", "dataset_summary", "format_summary", "labels",
]
