"""Display geometry: from arrays in NIfTI voxel order to slices drawn in a fixed orientation.

The orientation is decided from the affine with nibabel's ``io_orientation``, never assumed;
without an affine the BraTS LPS storage ``diag(-1, -1, 1)`` is assumed. Displayed slices:

* axial: anterior up, patient's right on the viewer's left (radiological; ``radiological=False``
  gives the neurological view with the patient's left on the left);
* coronal: superior up, right/left as in the axial view;
* sagittal: superior up, anterior on the viewer's left.

Not to be confused with :class:`brainseg_tf.data.preprocess.Geometry` (a case's crop and resampling
record): :class:`DisplayGeometry` only reorders axes for drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from brainseg_tf.arrays import check_spacing
from brainseg_tf.conventions import PLANE_AXES, PLANES

__all__ = ["PLANES", "DisplayGeometry", "default_affine", "display_slice", "edge_letters"]


_PLANE_OF_RAS_AXIS = {axis: plane for plane, axis in PLANE_AXES.items()}


def default_affine(spacing: Sequence[float] | None) -> np.ndarray:
    """The BraTS LPS storage affine ``diag(-sx, -sy, sz, 1)`` (1 mm voxels without ``spacing``)."""
    sx, sy, sz = (1.0, 1.0, 1.0) if spacing is None else (float(s) for s in spacing)
    return np.diag([-sx, -sy, sz, 1.0])


@dataclass(frozen=True)
class DisplayGeometry:
    """Maps arrays in NIfTI voxel order to RAS-ordered views (axis 0 -> R, 1 -> A, 2 -> S).

    Attributes:
        shape: spatial shape in voxel order.
        ornt: per voxel axis, ``(RAS axis, +1/-1)`` (nibabel's orientation array).
        spacing: voxel size in mm, voxel order.
    """

    shape: tuple[int, int, int]
    ornt: np.ndarray
    spacing: tuple[float, float, float]

    @classmethod
    def make(cls, shape: Sequence[int], affine: np.ndarray | None, spacing: Sequence[float] | None) -> DisplayGeometry:
        """Geometry of a volume of ``shape`` from its affine (default: BraTS LPS) and spacing
        (default: the affine's column norms).

        Raises:
            ValueError: an affine that is not 4x4, or not three positive finite voxel sizes.
        """
        aff = default_affine(spacing) if affine is None else np.asarray(affine, dtype=float)
        if aff.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {aff.shape}")
        if spacing is None:
            spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
        return cls(tuple(int(s) for s in shape[:3]), nib.orientations.io_orientation(aff), check_spacing(spacing))

    @property
    def ras_shape(self) -> tuple[int, int, int]:
        """Spatial shape of the RAS-reordered volume."""
        out = [0, 0, 0]
        for i, (ax, _) in enumerate(self.ornt):
            out[int(ax)] = self.shape[i]
        return tuple(out)

    @property
    def ras_spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along R, A, S."""
        out = [0.0, 0.0, 0.0]
        for i, (ax, _) in enumerate(self.ornt):
            out[int(ax)] = self.spacing[i]
        return tuple(out)

    def to_ras(self, arr: np.ndarray) -> np.ndarray:
        """A view of ``arr`` (spatial axes first) reordered and flipped to RAS."""
        return nib.orientations.apply_orientation(arr, self.ornt)

    def ras_index(self, ijk: Sequence[int]) -> tuple[int, int, int]:
        """Voxel index ``(i, j, k)`` -> index in the RAS-reordered volume."""
        out = [0, 0, 0]
        for i, (ax, flip) in enumerate(self.ornt):
            out[int(ax)] = int(ijk[i]) if flip > 0 else self.shape[i] - 1 - int(ijk[i])
        return tuple(out)

    def voxel_axis(self, plane: str) -> int:
        """The voxel axis normal to ``plane``."""
        return int(np.flatnonzero(self.ornt[:, 0] == PLANE_AXES[plane])[0])

    def ras_slice_index(self, plane: str, index: int) -> int:
        """Voxel index along the plane's normal -> index along the RAS axis (its own inverse)."""
        i = self.voxel_axis(plane)
        return int(index) if self.ornt[i, 1] > 0 else self.shape[i] - 1 - int(index)

    def plane_name(self, axis: int | str) -> str:
        """The plane named by ``axis``: a plane name, or the voxel axis normal to it (0-2).

        Raises:
            ValueError: anything else.
        """
        if isinstance(axis, str):
            if axis not in PLANES:
                raise ValueError(f"axis must be one of {PLANES} or a voxel axis 0-2, got {axis!r}")
            return axis
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be one of {PLANES} or a voxel axis 0-2, got {axis!r}")
        return _PLANE_OF_RAS_AXIS[int(self.ornt[int(axis), 0])]

    def display_point(self, plane: str, ras_ijk: Sequence[int], radiological: bool) -> tuple[int, int]:
        """Column and row, in a plane's :func:`display_slice` array, of a voxel given by its RAS index."""
        nx, ny, nz = self.ras_shape
        x, y, z = (int(v) for v in ras_ijk)
        col_lr = nx - 1 - x if radiological else x
        if plane == "axial":
            return col_lr, ny - 1 - y
        if plane == "coronal":
            return col_lr, nz - 1 - z
        return ny - 1 - y, nz - 1 - z

    def aspect(self, plane: str) -> float:
        """Pixel aspect ratio (row height / column width) of a displayed plane."""
        sx, sy, sz = self.ras_spacing
        return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[plane]


def display_slice(ras: np.ndarray, plane: str, k: int, radiological: bool) -> np.ndarray:
    """Slice ``k`` (RAS index) of a RAS volume as a display array ``(rows, cols, ...)``.

    Rows run anterior -> posterior (axial) or superior -> inferior (coronal, sagittal); columns
    run right -> left (radiological) or left -> right, and anterior -> posterior for sagittal.
    """
    if plane == "axial":
        sl = ras[:, :, k]  # (R, A)
        sl = sl[::-1] if radiological else sl
        return np.swapaxes(sl[:, ::-1], 0, 1)
    if plane == "coronal":
        sl = ras[:, k, :]  # (R, S)
        sl = sl[::-1] if radiological else sl
        return np.swapaxes(sl[:, ::-1], 0, 1)
    sl = ras[k, :, :]  # (A, S)
    return np.swapaxes(sl[::-1, ::-1], 0, 1)


def edge_letters(plane: str, radiological: bool) -> tuple[str, str, str, str]:
    """(left, right, top, bottom) anatomical letters of a displayed plane."""
    left, right = ("R", "L") if radiological else ("L", "R")
    if plane == "axial":
        return left, right, "A", "P"
    if plane == "coronal":
        return left, right, "S", "I"
    return "A", "P", "S", "I"
