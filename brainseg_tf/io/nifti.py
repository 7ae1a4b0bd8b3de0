"""NIfTI reading and writing that keeps geometry, with atomic writes and clear errors."""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brainseg_tf.atomic import atomic_path
from brainseg_tf.checks import check_int
from brainseg_tf.io.errors import DataError, MissingFileError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
AFFINE_ATOL = 1e-3  # mm; affines closer than this are one grid (co-registered scans, a prediction and its source)
MAX_VOXELS = 1 << 29  # 537M voxels (2 GiB as float32): 15x a 4-channel 240x240x155 BraTS case
MAX_VOXELS_ENV = "BRAINSEG_MAX_VOXELS"
# Deflate cannot expand data more than 1032:1, so a .nii.gz of n bytes holds at most this much.
_DEFLATE_MAX_RATIO = 1032
_SUPPORTED_KINDS = "iuf"  # integer and floating scalars; RGB (structured) and complex are refused
_CONVENTION_STAMP = re.compile(rb"brainseg_tf labels=([A-Za-z0-9_]+)")


def is_nifti_name(path: str | Path) -> bool:
    """True for names ending in ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    """``'a_seg.nii.gz'`` -> ``'a_seg'``."""
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class Volume:
    """A NIfTI volume with its geometry.

    Attributes:
        data: voxel array in file voxel order (no reorientation), ``(X, Y, Z)`` or ``(X, Y, Z, C)``.
        affine: 4x4 voxel-to-world affine (the header's best affine).
        header: the file's NIfTI header (kept so writes restore it).
        spacing: voxel size in mm along X, Y, Z.
        shape: spatial shape ``(X, Y, Z)`` as stored.
        path: the file read.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    path: Path | None = None


def max_voxels(value: int | None = None) -> int:
    """The voxel cap in force: ``value`` if given, else ``$BRAINSEG_MAX_VOXELS``, else :data:`MAX_VOXELS`.

    Raises:
        ValueError: a cap (argument or environment variable) that is not a positive integer.
    """
    if value is None:
        env = os.environ.get(MAX_VOXELS_ENV, "").strip()
        if not env:
            return MAX_VOXELS
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"{MAX_VOXELS_ENV}={env!r} must be a positive integer (a voxel count)") from None
        if value < 1:
            raise ValueError(f"{MAX_VOXELS_ENV}={env!r} must be a positive integer (a voxel count)")
        return value
    return int(check_int("max_voxels", value, 1))


def _dtype_name(img: nib.Nifti1Image) -> str:
    code = int(img.header["datatype"])
    name = {128: "RGB24", 2304: "RGBA32"}.get(code) or str(img.get_data_dtype())
    return f"{name} (NIfTI datatype {code})"


def check_header(img: nib.Nifti1Image, path: Path, *, cap: int | None = None) -> None:
    """Refuse a header whose voxel data cannot be real or read, before anything is allocated.

    Checks: at least 3 dimensions and none of length 0; a scalar integer or floating data type
    (not RGB or complex); at most ``cap`` voxels (see :func:`max_voxels`); a file large enough
    for the declared data (``.nii``: offset + voxels x bytes per voxel; ``.nii.gz``: that much
    cannot come out of the compressed size at deflate's maximum ratio of 1032:1); finite,
    positive voxel sizes and a finite affine.

    Raises:
        DataError: naming the file and the problem.
    """
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3:
        raise DataError(path, f"{path}: has {len(shape)} dimensions {shape}, expected a 3D or 4D volume")
    if min(shape) < 1:
        raise DataError(path, f"{path}: header declares a zero-length axis, shape {shape}")
    dtype = img.get_data_dtype()
    if dtype.kind not in _SUPPORTED_KINDS or dtype.itemsize > 8:
        raise DataError(
            path,
            f"{path}: unsupported data type {_dtype_name(img)}; expected integer or "
            f"floating-point voxels (RGB and complex images are not scans this toolkit reads)",
        )
    n_voxels = math.prod(shape)
    limit = max_voxels(cap)
    if n_voxels > limit:
        raise DataError(
            path,
            f"{path}: header declares {n_voxels:,} voxels {shape}, more than the cap of "
            f"{limit:,} (raise it with max_voxels= or ${MAX_VOXELS_ENV} if the file is real)",
        )
    needed = int(getattr(img.dataobj, "offset", 0)) + n_voxels * dtype.itemsize
    size = path.stat().st_size
    if path.name.lower().endswith(".gz"):
        if needed > size * _DEFLATE_MAX_RATIO + 1024:
            raise DataError(
                path,
                f"{path}: header declares {n_voxels:,} voxels {shape} ({needed:,} bytes) but "
                f"{size:,} compressed bytes cannot hold more than "
                f"{size * _DEFLATE_MAX_RATIO:,}; the header is corrupt or the file truncated",
            )
    elif size < needed:
        raise DataError(
            path,
            f"{path}: truncated: header declares {n_voxels:,} voxels {shape} ({needed:,} bytes "
            f"with the header) but the file holds {size:,} bytes",
        )
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    if not all(math.isfinite(z) and z > 0 for z in zooms):
        raise DataError(path, f"{path}: voxel sizes (pixdim) {zooms} must be finite and positive")
    if not np.all(np.isfinite(img.affine)):
        raise DataError(path, f"{path}: the affine holds NaN or Inf")


def _open(path: Path, cap: int | None = None) -> nib.Nifti1Image:
    if not path.exists():
        raise MissingFileError(path, f"{path}: file not found")
    if path.is_dir():
        raise DataError(path, f"{path}: is a folder, expected a NIfTI file")
    if path.stat().st_size == 0:
        raise DataError(path, f"{path}: file is empty (0 bytes)")
    try:
        img = nib.load(str(path))
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise DataError(path, f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    except nib.filebasedimages.ImageFileError as exc:
        raise DataError(path, f"{path}: not a NIfTI file ({exc})") from exc
    except Exception as exc:  # nibabel raises many types for garbage headers
        raise DataError(path, f"{path}: cannot be read as NIfTI ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(path, f"{path}: is a {type(img).__name__}, not a NIfTI image")
    check_header(img, path, cap=cap)
    return img


def load_nifti(
    path: str | Path,
    dtype: np.dtype | type | None = None,
    *,
    check_finite: bool = True,
    max_voxels: int | None = None,
) -> Volume:
    """Read a NIfTI file (``.nii`` or ``.nii.gz``) into a :class:`Volume`.

    Args:
        path: file to read.
        dtype: convert the voxel data to this dtype (``None``: the stored dtype, scaled if the
            header has a slope/intercept).
        check_finite: raise if float data holds NaN or Inf.
        max_voxels: refuse headers declaring more voxels than this (default: see
            :func:`max_voxels`); checked, with the file size, before any voxel is read.

    Raises:
        MissingFileError: the file does not exist.
        DataError: empty file, corrupt or truncated gzip, not a NIfTI, fewer than 3 dimensions,
            a zero-length axis, RGB/complex data, more voxels than the cap or than the file can
            hold, bad voxel sizes, NaN/Inf voxels -- the message names the file.
    """
    path = Path(path)
    img = _open(path, max_voxels)
    try:
        # Read the stored dtype and convert once: get_fdata makes a float64 copy first (docs/speed.md).
        data = np.asanyarray(img.dataobj)
        if not isinstance(data, np.ndarray):
            data = np.asarray(data)
        if dtype is not None:
            data = data.astype(dtype, copy=False)
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise DataError(path, f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    except (OSError, ValueError) as exc:
        raise DataError(path, f"{path}: truncated or unreadable voxel data ({exc})") from exc
    if data.ndim < 3:
        raise DataError(path, f"{path}: has {data.ndim} dimensions {data.shape}, expected a 3D or 4D volume")
    if data.ndim > 4:
        data = data.reshape(data.shape[:3] + (-1,))
    if check_finite and data.dtype.kind == "f" and not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise DataError(path, f"{path}: {n_bad} voxels are NaN or Inf")
    header = img.header.copy()
    zooms = header.get_zooms()[:3]
    return Volume(
        data=data,
        affine=np.asarray(img.affine, dtype=np.float64),
        header=header,
        spacing=tuple(float(z) for z in zooms),
        shape=tuple(int(s) for s in data.shape[:3]),
        path=path,
    )


def read_header(
    path: str | Path, *, max_voxels: int | None = None
) -> tuple[tuple[int, ...], np.ndarray, tuple[float, float, float]]:
    """Shape, affine and spacing of a NIfTI file without reading its voxels (header checked)."""
    path = Path(path)
    img = _open(path, max_voxels)
    return tuple(int(s) for s in img.shape), np.asarray(img.affine), tuple(float(z) for z in img.header.get_zooms()[:3])


def stamp_convention(header: nib.Nifti1Header, convention: str) -> nib.Nifti1Header:
    """A copy of ``header`` whose description records the label convention of its voxels.

    The ``descrip`` field becomes ``"brainseg_tf labels=<convention>"``, which
    :func:`stamped_convention` reads back (evaluation uses it so that a mask's 1/2/3 is never
    guessed to be BraTS 2023 or MSD).
    """
    out = header.copy()
    out["descrip"] = f"brainseg_tf labels={convention}".encode()
    return out


def stamped_convention(header: nib.Nifti1Header) -> str | None:
    """The label convention recorded by :func:`stamp_convention`, or ``None``."""
    match = _CONVENTION_STAMP.search(bytes(np.asarray(header["descrip"]).tobytes()))
    return match.group(1).decode() if match else None


def save_nifti(
    data: np.ndarray,
    path: str | Path,
    *,
    affine: np.ndarray | None = None,
    header: nib.Nifti1Header | None = None,
    dtype: np.dtype | type | None = None,
    label_convention: str | None = None,
) -> Path:
    """Write a NIfTI file atomically, restoring geometry from ``affine``/``header``.

    The data go to a temporary file in the same folder which is then renamed over ``path``: an
    interrupted write never leaves a half-written file under the final name. Compression follows
    the suffix (``.nii.gz`` or ``.nii``).

    Args:
        data: voxel array in NIfTI voxel order, ``(X, Y, Z)`` or ``(X, Y, Z, C)``.
        path: destination, ending in ``.nii`` or ``.nii.gz``.
        affine: voxel-to-world affine; defaults to the header's, else identity.
        header: header to restore (qform/sform codes, units, description); dimensions, dtype and
            scaling are set from ``data``.
        dtype: on-disk dtype (default: ``data.dtype``).
        label_convention: for a label map, the convention of its values, recorded in the header
            description (:func:`stamp_convention`).

    Returns:
        The path written.
    """
    path = Path(path)
    if not is_nifti_name(path):
        raise ValueError(f"path={str(path)!r} must end in .nii or .nii.gz")
    arr = np.asarray(data)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype == np.int64:  # NIfTI-1 readers handle int64 poorly
        arr = arr.astype(np.int32)
    hdr = header.copy() if header is not None else None
    if affine is None:
        affine = hdr.get_best_affine() if hdr is not None else np.eye(4)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64), header=hdr)
    img.set_data_dtype(arr.dtype)
    if hdr is not None:
        # Keep the source's qform/sform codes so viewers place the volume identically.
        img.set_qform(affine, code=int(hdr["qform_code"]) or 1)
        img.set_sform(affine, code=int(hdr["sform_code"]) or 1)
    img.header.set_slope_inter(1.0, 0.0) if arr.dtype.kind == "f" else img.header.set_slope_inter(np.nan, np.nan)
    if label_convention is not None:
        img.header["descrip"] = stamp_convention(img.header, label_convention)["descrip"]
    elif stamped_convention(img.header) is not None:  # a copied stamp would misdescribe these voxels
        img.header["descrip"] = b""
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path
