"""Figures for BraTS cases, predictions, training logs and evaluation tables.

Labels are canonical (0 BG, 1 NCR, 2 ED, 3 ET; regions WT = {1, 2, 3}, TC = {1, 3}, ET = {3}) and
are drawn in fixed colours everywhere: NCR red, ED green, ET yellow, with a legend on every
overlay. Arrays are in NIfTI voxel order, image ``(X, Y, Z, C)`` with channels ``(flair, t1, t1ce,
t2)`` and label ``(X, Y, Z)``; slice indices in arguments and titles are voxel indices of those
arrays.

Display convention (decided from the affine with nibabel's ``io_orientation``, never assumed;
without an affine the BraTS LPS storage ``diag(-1, -1, 1)`` is assumed):

* axial: anterior up, patient's right on the viewer's left (radiological; ``radiological=False``
  gives the neurological view with the patient's left on the left);
* coronal: superior up, right/left as in the axial view;
* sagittal: superior up, anterior on the viewer's left.

Each slice panel carries orientation letters at its edges and is drawn with the voxel aspect
ratio from the spacing. Intensities are windowed at the 0.5-99.5 percentiles of the nonzero
(brain) voxels of the whole volume, so every slice of a case shares one window.

Every figure function returns its :class:`matplotlib.figure.Figure` and writes it when given
``save=`` (atomically: a temporary file renamed into place). :func:`slices_gif` returns the GIF's
path; :func:`slice_slider` returns an ipywidgets box inside Jupyter and a static montage figure
elsewhere. No TensorFlow import; no backend is chosen here (set ``MPLBACKEND=Agg`` when headless).
"""

from __future__ import annotations

import csv
import io as _io
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from brainseg_tf.io.labels import (
    CLASS_NAMES,
    FOREGROUND_CLASSES,
    MODALITIES,
    REGION_LABELS,
    REGIONS,
)

# NCR red, ED green, ET yellow: the colours most BraTS figures use.
LABEL_COLOURS: dict[int, tuple[float, float, float]] = {
    1: (0.90, 0.10, 0.10),
    2: (0.10, 0.75, 0.20),
    3: (1.00, 0.85, 0.00),
}
LABEL_NAMES: dict[int, str] = {1: "NCR (necrotic core)", 2: "ED (edema)", 3: "ET (enhancing)"}
# Regions take the colour of the class that dominates their outer surface.
REGION_COLOURS: dict[str, tuple[float, float, float]] = {
    "WT": LABEL_COLOURS[2],
    "TC": LABEL_COLOURS[1],
    "ET": LABEL_COLOURS[3],
}
REGION_NAMES: dict[str, str] = {"WT": "WT (whole tumour)", "TC": "TC (tumour core)", "ET": "ET (enhancing tumour)"}
# Error-map colours, chosen apart from the label colours so the two legends cannot be confused.
ERROR_COLOURS: dict[str, tuple[float, float, float]] = {
    "TP": (0.00, 0.80, 0.80),
    "FP": (1.00, 0.45, 0.00),
    "FN": (0.25, 0.35, 1.00),
}
ERROR_NAMES: dict[str, str] = {"TP": "TP (both)", "FP": "FP (prediction only)", "FN": "FN (missed)"}

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
_PLANE_RAS_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # RAS axis normal to each plane
_DEFAULT_DPI = 100


# ------------------------------------------------------------------------------ colours, legends


def label_cmap() -> ListedColormap:
    """Colour map for canonical labels 0-3 (0 transparent, then NCR, ED, ET)."""
    return ListedColormap([(0, 0, 0, 0)] + [(*LABEL_COLOURS[k], 1.0) for k in FOREGROUND_CLASSES])


def legend_handles() -> list[Patch]:
    """Legend patches for NCR, ED and ET in their fixed colours."""
    return [Patch(facecolor=LABEL_COLOURS[k], label=LABEL_NAMES[k]) for k in FOREGROUND_CLASSES]


def region_legend_handles(regions: Sequence[str] = REGIONS) -> list[Patch]:
    """Legend patches for the regions WT, TC, ET."""
    return [Patch(facecolor=REGION_COLOURS[r], label=REGION_NAMES[r]) for r in regions]


def error_legend_handles() -> list[Patch]:
    """Legend patches for the error map: true positive, false positive, false negative."""
    return [Patch(facecolor=ERROR_COLOURS[k], label=ERROR_NAMES[k]) for k in ("TP", "FP", "FN")]


def label_rgba(label2d: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """RGBA image ``(..., 4)`` float of a canonical label array: fixed colours, background transparent."""
    lut = np.zeros((256, 4), dtype=np.float32)
    for k, rgb in LABEL_COLOURS.items():
        lut[k] = (*rgb, alpha)
    return lut[np.asarray(label2d, dtype=np.uint8)]


# ----------------------------------------------------------------------------------- geometry


def _default_affine(spacing: Sequence[float] | None) -> np.ndarray:
    sx, sy, sz = (1.0, 1.0, 1.0) if spacing is None else (float(s) for s in spacing)
    return np.diag([-sx, -sy, sz, 1.0])


@dataclass(frozen=True)
class _Geometry:
    """Maps arrays in NIfTI voxel order to RAS-ordered views (axis 0 -> R, 1 -> A, 2 -> S)."""

    shape: tuple[int, int, int]
    ornt: np.ndarray  # per voxel axis: (RAS axis, +1/-1), nibabel's orientation array
    spacing: tuple[float, float, float]  # voxel order

    @classmethod
    def make(cls, shape: Sequence[int], affine: np.ndarray | None, spacing: Sequence[float] | None) -> _Geometry:
        aff = _default_affine(spacing) if affine is None else np.asarray(affine, dtype=float)
        if aff.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {aff.shape}")
        if spacing is None:
            spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be three positive numbers, got {spacing}")
        return cls(tuple(int(s) for s in shape[:3]), nib.orientations.io_orientation(aff), spacing)

    @property
    def ras_shape(self) -> tuple[int, int, int]:
        out = [0, 0, 0]
        for i, (ax, _) in enumerate(self.ornt):
            out[int(ax)] = self.shape[i]
        return tuple(out)

    @property
    def ras_spacing(self) -> tuple[float, float, float]:
        out = [0.0, 0.0, 0.0]
        for i, (ax, _) in enumerate(self.ornt):
            out[int(ax)] = self.spacing[i]
        return tuple(out)

    def to_ras(self, arr: np.ndarray) -> np.ndarray:
        """A view of ``arr`` (spatial axes first) reordered and flipped to RAS."""
        return nib.orientations.apply_orientation(arr, self.ornt)

    def ras_index(self, ijk: Sequence[int]) -> tuple[int, int, int]:
        out = [0, 0, 0]
        for i, (ax, flip) in enumerate(self.ornt):
            out[int(ax)] = int(ijk[i]) if flip > 0 else self.shape[i] - 1 - int(ijk[i])
        return tuple(out)

    def voxel_axis(self, plane: str) -> int:
        """The voxel axis normal to ``plane``."""
        return int(np.flatnonzero(self.ornt[:, 0] == _PLANE_RAS_AXIS[plane])[0])

    def ras_slice_index(self, plane: str, index: int) -> int:
        """Voxel index along the plane's normal -> index along the RAS axis."""
        i = self.voxel_axis(plane)
        return int(index) if self.ornt[i, 1] > 0 else self.shape[i] - 1 - int(index)


def _plane_name(axis: int | str, geom: _Geometry) -> str:
    if isinstance(axis, str):
        if axis not in PLANES:
            raise ValueError(f"axis must be one of {PLANES} or a voxel axis 0-2, got {axis!r}")
        return axis
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be one of {PLANES} or a voxel axis 0-2, got {axis!r}")
    ras = int(geom.ornt[int(axis), 0])
    return {v: k for k, v in _PLANE_RAS_AXIS.items()}[ras]


def _display_slice(ras: np.ndarray, plane: str, k: int, radiological: bool) -> np.ndarray:
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


def _display_point(geom: _Geometry, plane: str, ras_ijk: Sequence[int], radiological: bool) -> tuple[int, int]:
    """Column and row, in a plane's display array, of a voxel given by its RAS index."""
    nx, ny, nz = geom.ras_shape
    x, y, z = (int(v) for v in ras_ijk)
    col_lr = nx - 1 - x if radiological else x
    if plane == "axial":
        return col_lr, ny - 1 - y
    if plane == "coronal":
        return col_lr, nz - 1 - z
    return ny - 1 - y, nz - 1 - z


def _plane_aspect(geom: _Geometry, plane: str) -> float:
    sx, sy, sz = geom.ras_spacing
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[plane]


def _edge_letters(plane: str, radiological: bool) -> tuple[str, str, str, str]:
    """(left, right, top, bottom) anatomical letters of a displayed plane."""
    left, right = ("R", "L") if radiological else ("L", "R")
    if plane == "axial":
        return left, right, "A", "P"
    if plane == "coronal":
        return left, right, "S", "I"
    return "A", "P", "S", "I"


def _mark_orientation(ax: plt.Axes, plane: str, radiological: bool) -> None:
    left, right, top, bottom = _edge_letters(plane, radiological)
    style = dict(color="white", fontsize=7, fontweight="bold", transform=ax.transAxes, alpha=0.85)
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


# --------------------------------------------------------------------------------- image helpers


def _window(img: np.ndarray) -> tuple[float, float]:
    """0.5-99.5 percentile window of the nonzero (brain) voxels; a subsample is enough."""
    vals = np.asarray(img)[np.asarray(img) != 0]
    if vals.size == 0:
        return float(np.min(img)), float(np.max(img)) + 1e-6
    if vals.size > 400_000:
        vals = vals[:: vals.size // 200_000]
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return float(lo), (float(hi) if hi > lo else float(lo) + 1e-6)


def _channel_index(channel: int | str, n_channels: int, modalities: Sequence[str] = MODALITIES) -> int:
    if isinstance(channel, str):
        if channel not in modalities:
            raise ValueError(f"channel must be one of {tuple(modalities)} or an index, got {channel!r}")
        return list(modalities).index(channel)
    if not 0 <= int(channel) < n_channels:
        raise ValueError(f"channel index {channel} out of range for {n_channels} channels")
    return int(channel)


def _channel_name(channel: int | str, modalities: Sequence[str] = MODALITIES) -> str:
    if isinstance(channel, str):
        return channel
    return modalities[channel] if channel < len(modalities) else f"channel {channel}"


def _as_volume(image: np.ndarray, channel: int | str, modalities: Sequence[str] = MODALITIES) -> np.ndarray:
    """The ``(X, Y, Z)`` volume of one channel of a 4D image (3D images pass through)."""
    image = np.asarray(image)
    if image.ndim == 3:
        return image
    if image.ndim != 4:
        raise ValueError(f"image must be (X, Y, Z) or (X, Y, Z, C), got shape {image.shape}")
    return image[..., _channel_index(channel, image.shape[-1], modalities)]


def _check_label(label: np.ndarray | None, shape: tuple[int, ...], name: str = "label") -> np.ndarray | None:
    if label is None:
        return None
    label = np.asarray(label)
    if label.shape != tuple(shape[:3]):
        raise ValueError(f"{name} shape {label.shape} does not match image spatial shape {tuple(shape[:3])}")
    if label.size and int(label.max()) > 3:
        raise ValueError(
            f"{name} must hold canonical labels 0-3, found {int(label.max())} (convert with io.labels.to_canonical)"
        )
    return label


def _blank_axes(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_slice(
    ax: plt.Axes,
    geom: _Geometry,
    plane: str,
    k_ras: int,
    vol_ras: np.ndarray | None,
    window: tuple[float, float] | None,
    label_ras: np.ndarray | None,
    alpha: float,
    radiological: bool,
    box: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Grayscale slice with an optional label overlay, aspect from spacing, orientation letters.

    The axes keep full-slice pixel coordinates (column, row of the display array); ``box`` (RAS
    index corners) only zooms the view onto it.
    """
    aspect = _plane_aspect(geom, plane)
    if vol_ras is not None:
        lo, hi = window
        ax.imshow(
            _display_slice(vol_ras, plane, k_ras, radiological),
            cmap="gray",
            vmin=lo,
            vmax=hi,
            aspect=aspect,
            interpolation="nearest",
        )
    else:
        ax.set_facecolor("black")
    if label_ras is not None:
        ax.imshow(
            label_rgba(_display_slice(label_ras, plane, k_ras, radiological), alpha),
            aspect=aspect,
            interpolation="nearest",
        )
    if box is not None:
        corners = [_display_point(geom, plane, box[0], radiological), _display_point(geom, plane, box[1], radiological)]
        cols, rows = zip(*corners)
        ax.set_xlim(min(cols) - 0.5, max(cols) + 0.5)
        ax.set_ylim(max(rows) + 0.5, min(rows) - 0.5)
    _blank_axes(ax)
    _mark_orientation(ax, plane, radiological)


def _brain_box(vol_ras: np.ndarray, margin: int = 4) -> tuple[np.ndarray, np.ndarray] | None:
    """RAS index corners of the nonzero (brain) voxels plus a margin, or ``None`` when empty."""
    nz = [np.flatnonzero(np.asarray(vol_ras != 0).any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    if any(v.size == 0 for v in nz):
        return None
    shape = np.array(vol_ras.shape[:3])
    lo = np.maximum([v[0] - margin for v in nz], 0)
    hi = np.minimum([v[-1] + margin for v in nz], shape - 1)
    return lo, hi


def tumour_centre(label: np.ndarray | None, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Voxel index of the tumour's (label > 0) centre of mass, or the volume centre without tumour."""
    if label is not None and np.any(label > 0):
        return tuple(int(round(c)) for c in np.argwhere(label > 0).mean(axis=0))
    return tuple(s // 2 for s in shape[:3])


def save_figure(fig: Figure, save: str | Path | None, dpi: int = _DEFAULT_DPI, tight: bool = False) -> Path | None:
    """Write ``fig`` atomically to ``save`` (format from the suffix) and return the path.

    Without ``tight`` the file is exactly ``figsize * dpi`` pixels, which the layouts here are
    made for; ``tight=True`` crops to the drawn content.
    """
    if save is None:
        return None
    save = Path(save)
    save.parent.mkdir(parents=True, exist_ok=True)
    tmp = save.with_name(f".{save.stem}.tmp{save.suffix}")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None)
    tmp.replace(save)
    return save


def _slices_through(mask_ras: np.ndarray, plane: str, n: int) -> list[int]:
    """``n`` evenly spaced RAS slice indices over the extent of ``mask_ras`` along the plane normal."""
    ax = _PLANE_RAS_AXIS[plane]
    other = tuple(a for a in range(3) if a != ax)
    present = np.flatnonzero(mask_ras.any(axis=other))
    lo, hi = (int(present[0]), int(present[-1])) if present.size else (0, mask_ras.shape[ax] - 1)
    n = max(1, min(int(n), hi - lo + 1))
    return [int(round(v)) for v in np.linspace(lo, hi, n + 2)[1:-1]] if hi - lo + 1 > n + 1 else list(range(lo, lo + n))


# ---------------------------------------------------------------------------------- slice views


def show_case(
    image: np.ndarray,
    label: np.ndarray | None = None,
    *,
    z: int | None = None,
    modalities: tuple[str, ...] = MODALITIES,
    alpha: float = 0.45,
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    radiological: bool = True,
    crop: bool = True,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Figure:
    """Multi-modal axial view: every modality plain and with the label overlay, plus a legend.

    With a label the figure has two rows (top: the modalities as they are; bottom: the same with
    NCR red, ED green, ET yellow blended at ``alpha``, and a label-only panel); without, one row.

    Args:
        image: ``(X, Y, Z, C)`` in voxel order, channels named by ``modalities``.
        label: ``(X, Y, Z)`` canonical labels 0-3, or ``None``.
        z: axial slice as an index along the voxel axis that runs inferior-superior (default:
            through the tumour's centre of mass, or the middle without tumour).
        modalities: channel names, for titles.
        alpha: overlay opacity.
        affine: voxel-to-world affine deciding the display orientation (default: BraTS LPS).
        spacing: voxel size in mm (default: from the affine), for the aspect ratio.
        radiological: patient's right on the viewer's left (``False``: neurological).
        crop: zoom every panel onto the brain's bounding box (nonzero voxels) plus 4 voxels.
        title: figure title (default names the slice).
        save: path to write the figure to (PNG of ``figsize * dpi`` pixels).
        dpi: resolution of the saved file.

    Returns:
        The figure.

    Raises:
        ValueError: image not 4D or not matching ``modalities``; label of another shape or with
            values above 3; ``z`` out of range.
    """
    image = np.asarray(image)
    if image.ndim != 4 or image.shape[-1] != len(modalities):
        raise ValueError(f"image shape {image.shape} does not match modalities {modalities}")
    label = _check_label(label, image.shape)
    geom = _Geometry.make(image.shape, affine, spacing)
    axis = geom.voxel_axis("axial")
    if z is None:
        z = tumour_centre(label, image.shape)[axis]
    if not 0 <= int(z) < image.shape[axis]:
        raise ValueError(f"z={z} out of range for {image.shape[axis]} axial slices")
    k = geom.ras_slice_index("axial", int(z))
    img_ras = geom.to_ras(image)
    lab_ras = None if label is None else geom.to_ras(label)
    box = _brain_box(np.any(img_ras != 0, axis=-1)) if crop else None

    nmod = len(modalities)
    rows, cols = (2, nmod + 1) if label is not None else (1, nmod)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.7 * rows + 0.7), squeeze=False)
    for c, name in enumerate(modalities):
        window = _window(image[..., c])
        _draw_slice(axes[0, c], geom, "axial", k, img_ras[..., c], window, None, alpha, radiological, box)
        axes[0, c].set_title(name.upper(), fontsize=10)
        if label is not None:
            _draw_slice(axes[1, c], geom, "axial", k, img_ras[..., c], window, lab_ras, alpha, radiological, box)
            axes[1, c].set_title(f"{name.upper()} + labels", fontsize=10)
    if label is not None:
        _draw_slice(axes[1, -1], geom, "axial", k, None, None, lab_ras, 1.0, radiological, box)
        axes[1, -1].set_title("labels", fontsize=10)
        counts = np.bincount(label[(slice(None),) * axis + (int(z),)].ravel(), minlength=4)
        axes[0, -1].axis("off")
        axes[0, -1].text(
            0.05,
            0.5,
            "voxels in slice\n" + "\n".join(f"{CLASS_NAMES[c]}: {counts[c]}" for c in FOREGROUND_CLASSES),
            transform=axes[0, -1].transAxes,
            va="center",
            fontsize=9,
        )
        fig.legend(handles=legend_handles(), loc="lower center", ncol=3, frameon=False)
    view = "radiological" if radiological else "neurological"
    fig.suptitle(title or f"axial slice z={z} ({view} view)")
    fig.tight_layout(rect=(0, 0.07 if label is not None else 0, 1, 0.95), h_pad=1.2)
    save_figure(fig, save, dpi)
    return fig


def three_plane(
    image: np.ndarray,
    label: np.ndarray | None = None,
    *,
    channel: int | str = "flair",
    centre: Sequence[int] | None = None,
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    alpha: float = 0.45,
    radiological: bool = True,
    crop: bool = True,
    crosshair: bool = True,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Figure:
    """Axial, coronal and sagittal slices through one voxel, with crosshairs and label overlay.

    The crosshair lines in each panel mark where the other two planes cut it, so the three panels
    show the same point (by default the tumour's centre of mass). Crosshair lines carry the gid
    ``"crosshair"``.

    Args:
        image: ``(X, Y, Z, C)`` or ``(X, Y, Z)`` in voxel order.
        label: ``(X, Y, Z)`` canonical labels, or ``None``.
        channel: modality name or channel index (ignored for a 3D image).
        centre: voxel index ``(i, j, k)`` the planes pass through (default: tumour centre).
        affine, spacing, radiological, alpha, crop: as in :func:`show_case`.
        crosshair: draw the crosshair lines.
        title, save, dpi: figure title, output path, resolution.

    Returns:
        The figure (axes in order axial, coronal, sagittal; legend when a label is given).

    Raises:
        ValueError: bad shapes, channel, or a centre outside the volume.
    """
    vol = _as_volume(image, channel)
    label = _check_label(label, vol.shape)
    geom = _Geometry.make(vol.shape, affine, spacing)
    if centre is None:
        centre = tumour_centre(label, vol.shape)
    centre = tuple(int(c) for c in centre)
    if len(centre) != 3 or any(not 0 <= c < s for c, s in zip(centre, vol.shape)):
        raise ValueError(f"centre {centre} is outside the volume of shape {vol.shape}")
    c_ras = geom.ras_index(centre)
    vol_ras = geom.to_ras(vol)
    lab_ras = None if label is None else geom.to_ras(label)
    window = _window(vol)
    box = _brain_box(vol_ras) if crop else None
    lo, hi = (np.zeros(3), np.array(geom.ras_shape) - 1) if box is None else box
    ext = (np.asarray(hi) - np.asarray(lo) + 1) * np.array(geom.ras_spacing)
    widths = [ext[0], ext[0], ext[1]]  # physical width of each panel in mm
    fig, axes = plt.subplots(1, 3, figsize=(10, 4.2), gridspec_kw={"width_ratios": widths})
    for ax, plane in zip(axes, PLANES):
        k = c_ras[_PLANE_RAS_AXIS[plane]]
        _draw_slice(ax, geom, plane, k, vol_ras, window, lab_ras, alpha, radiological, box)
        if crosshair:
            col, row = _display_point(geom, plane, c_ras, radiological)
            ax.axvline(col, color="cyan", lw=0.7, alpha=0.8, gid="crosshair")
            ax.axhline(row, color="cyan", lw=0.7, alpha=0.8, gid="crosshair")
        vaxis = geom.voxel_axis(plane)
        ax.set_title(f"{plane} ({'ijk'[vaxis]}={centre[vaxis]})", fontsize=10)
    if label is not None:
        fig.legend(handles=legend_handles(), loc="lower center", ncol=3, frameon=False)
    name = _channel_name(channel) if np.ndim(image) == 4 else "image"
    fig.suptitle(title or f"{name.upper()} through voxel {centre}")
    fig.tight_layout(rect=(0, 0.08 if label is not None else 0, 1, 0.94))
    save_figure(fig, save, dpi)
    return fig


def montage(
    image: np.ndarray,
    label: np.ndarray | None = None,
    *,
    channel: int | str = "flair",
    n: int = 12,
    axis: int | str = "axial",
    slices: Sequence[int] | None = None,
    ncols: int | None = None,
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    alpha: float = 0.45,
    radiological: bool = True,
    crop: bool = True,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Figure:
    """A grid of ``n`` slices evenly spread over the tumour (or the brain without one).

    Args:
        image: ``(X, Y, Z, C)`` or ``(X, Y, Z)`` in voxel order.
        label: ``(X, Y, Z)`` canonical labels, or ``None``.
        channel: modality name or index.
        n: number of slices (fewer when the extent is thinner).
        axis: ``"axial"``, ``"coronal"``, ``"sagittal"`` or a voxel axis 0-2.
        slices: explicit voxel indices along that axis (overrides ``n``).
        ncols: columns of the grid (default about the square root of ``n``, at most 6).
        affine, spacing, alpha, radiological, crop, title, save, dpi: as in :func:`show_case`.

    Returns:
        The figure; each panel is titled with its voxel index.

    Raises:
        ValueError: bad shapes, channel, axis, ``n < 1`` or slice indices out of range.
    """
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    vol = _as_volume(image, channel)
    label = _check_label(label, vol.shape)
    geom = _Geometry.make(vol.shape, affine, spacing)
    plane = _plane_name(axis, geom)
    vaxis = geom.voxel_axis(plane)
    vol_ras = geom.to_ras(vol)
    lab_ras = None if label is None else geom.to_ras(label)
    if slices is None:
        mask = lab_ras > 0 if lab_ras is not None and np.any(label) else vol_ras != 0
        ras_ks = _slices_through(mask, plane, n)
        vox_ks = [geom.ras_slice_index(plane, k) for k in ras_ks]  # the map is its own inverse
    else:
        vox_ks = [int(s) for s in slices]
        if not vox_ks or any(not 0 <= s < vol.shape[vaxis] for s in vox_ks):
            raise ValueError(f"slices {vox_ks} must be non-empty and within 0..{vol.shape[vaxis] - 1}")
        ras_ks = [geom.ras_slice_index(plane, s) for s in vox_ks]
    count = len(vox_ks)
    ncols = int(ncols) if ncols else min(6, math.ceil(math.sqrt(count)))
    nrows = math.ceil(count / ncols)
    window = _window(vol)
    box = _brain_box(vol_ras) if crop else None
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.0 * nrows + 0.8), squeeze=False)
    for a, ax in enumerate(axes.flat):
        if a >= count:
            ax.axis("off")
            continue
        _draw_slice(ax, geom, plane, ras_ks[a], vol_ras, window, lab_ras, alpha, radiological, box)
        ax.set_title(f"{'ijk'[vaxis]}={vox_ks[a]}", fontsize=8)
    if label is not None:
        fig.legend(handles=legend_handles(), loc="lower center", ncol=3, frameon=False, fontsize=8)
    name = _channel_name(channel) if image.ndim == 4 else "image"
    fig.suptitle(title or f"{name.upper()} {plane} montage", fontsize=11)
    fig.tight_layout(rect=(0, 0.45 / (2.0 * nrows + 0.8) if label is not None else 0, 1, 0.95), h_pad=1.6, w_pad=0.3)
    save_figure(fig, save, dpi)
    return fig


def _error_rgba(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGBA error map of two boolean arrays: TP, FP, FN in the error colours, TN transparent."""
    out = np.zeros(truth.shape + (4,), dtype=np.float32)
    for key, sel in (("TP", truth & pred), ("FP", ~truth & pred), ("FN", truth & ~pred)):
        out[sel] = (*ERROR_COLOURS[key], 1.0)
    return out


def _dice(t: np.ndarray, p: np.ndarray) -> float:
    denom = int(t.sum()) + int(p.sum())
    return 1.0 if denom == 0 else 2.0 * int((t & p).sum()) / denom


def compare(
    image: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    *,
    z: int | None = None,
    channel: int | str = "flair",
    by: str = "region",
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    alpha: float = 0.45,
    radiological: bool = True,
    crop: bool = True,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Figure:
    """Prediction against ground truth on one axial slice, with per-region or per-class error maps.

    Panels: the ground-truth overlay, the prediction overlay, then one error map per region (WT,
    TC, ET; ``by="region"``) or per class (NCR, ED, ET; ``by="class"``) with true positives
    teal, false positives orange and false negatives blue over the dimmed image. Error-panel
    titles give the slice's Dice and the volume Dice of that region or class.

    Args:
        image: ``(X, Y, Z, C)`` or ``(X, Y, Z)`` in voxel order.
        truth: ``(X, Y, Z)`` canonical ground-truth labels.
        pred: ``(X, Y, Z)`` canonical predicted labels.
        z: axial voxel index (default: the ground truth's tumour centre, or the prediction's
            when the truth is empty).
        channel: modality shown underneath.
        by: ``"region"`` or ``"class"``.
        affine, spacing, alpha, radiological, crop, title, save, dpi: as in :func:`show_case`.

    Returns:
        The figure, with a label legend and an error legend.

    Raises:
        ValueError: shapes that disagree, labels above 3, unknown ``by``, ``z`` out of range.
    """
    if by not in ("region", "class"):
        raise ValueError(f"by must be 'region' or 'class', got {by!r}")
    vol = _as_volume(image, channel)
    truth = _check_label(truth, vol.shape, "truth")
    pred = _check_label(pred, vol.shape, "pred")
    geom = _Geometry.make(vol.shape, affine, spacing)
    axis = geom.voxel_axis("axial")
    if z is None:
        z = tumour_centre(truth if np.any(truth) else pred, vol.shape)[axis]
    if not 0 <= int(z) < vol.shape[axis]:
        raise ValueError(f"z={z} out of range for {vol.shape[axis]} axial slices")
    k = geom.ras_slice_index("axial", int(z))
    vol_ras, t_ras, p_ras = geom.to_ras(vol), geom.to_ras(truth), geom.to_ras(pred)
    window = _window(vol)
    box = _brain_box(vol_ras) if crop else None
    groups = REGION_LABELS if by == "region" else {CLASS_NAMES[c]: (c,) for c in FOREGROUND_CLASSES}

    fig, axes = plt.subplots(1, 2 + len(groups), figsize=(2.6 * (2 + len(groups)), 3.6))
    _draw_slice(axes[0], geom, "axial", k, vol_ras, window, t_ras, alpha, radiological, box)
    axes[0].set_title("ground truth", fontsize=10)
    _draw_slice(axes[1], geom, "axial", k, vol_ras, window, p_ras, alpha, radiological, box)
    axes[1].set_title("prediction", fontsize=10)
    aspect = _plane_aspect(geom, "axial")
    img2d = _display_slice(vol_ras, "axial", k, radiological)
    t2d = _display_slice(t_ras, "axial", k, radiological)
    p2d = _display_slice(p_ras, "axial", k, radiological)
    for ax, (name, labels) in zip(axes[2:], groups.items()):
        tm, pm = np.isin(t2d, labels), np.isin(p2d, labels)
        ax.imshow(img2d, cmap="gray", vmin=window[0], vmax=window[1], alpha=0.5, aspect=aspect, interpolation="nearest")
        ax.imshow(_error_rgba(tm, pm), aspect=aspect, interpolation="nearest")
        if box is not None:
            ax.set_xlim(axes[0].get_xlim())
            ax.set_ylim(axes[0].get_ylim())
        dice_vol = _dice(np.isin(truth, labels), np.isin(pred, labels))
        ax.set_title(f"{name} errors\nDice slice {_dice(tm, pm):.2f} / case {dice_vol:.2f}", fontsize=9)
        ax.set_facecolor("black")
        _blank_axes(ax)
        _mark_orientation(ax, "axial", radiological)
    fig.legend(
        handles=legend_handles(),
        loc="lower left",
        ncol=3,
        frameon=False,
        fontsize=8,
        title="labels",
        title_fontsize=8,
        bbox_to_anchor=(0.01, 0.0),
    )
    fig.legend(
        handles=error_legend_handles(),
        loc="lower right",
        ncol=3,
        frameon=False,
        fontsize=8,
        title=f"errors per {by}",
        title_fontsize=8,
        bbox_to_anchor=(0.99, 0.0),
    )
    fig.suptitle(title or f"prediction vs ground truth, axial z={z}", fontsize=11)
    fig.tight_layout(rect=(0, 0.13, 1, 0.92))
    save_figure(fig, save, dpi)
    return fig


# ------------------------------------------------------------------------------ logs and tables


def _read_table(source: Any) -> dict[str, list]:
    """Columns of a CSV path, a DataFrame-like object, a mapping of columns or a list of row dicts."""
    if isinstance(source, (str, Path)):
        with open(source, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise ValueError(f"{source}: no rows")
        return {k: [r.get(k) for r in rows] for k in rows[0]}
    if hasattr(source, "columns") and hasattr(source, "to_dict"):  # pandas without importing it
        return {str(k): list(v) for k, v in source.to_dict(orient="list").items()}
    if isinstance(source, Mapping):
        return {str(k): list(v) for k, v in source.items()}
    rows = list(source)
    if not rows or not isinstance(rows[0], Mapping):
        raise ValueError("expected a CSV path, a DataFrame, a mapping of columns or a list of row dicts")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in keys}


def _floats(values: Iterable) -> np.ndarray:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.asarray(out, dtype=float)


_SUFFIXES = ("wt", "tc", "et", "ncr", "ed", "bg", "mean")
# Region/class curves in their usual colours; pure yellow is unreadable as a line on white.
_CURVE_COLOURS = {
    "WT": LABEL_COLOURS[2],
    "TC": LABEL_COLOURS[1],
    "ET": (0.85, 0.65, 0.0),
    "NCR": (0.55, 0.0, 0.0),
    "ED": (0.0, 0.45, 0.1),
}


def _family(name: str) -> tuple[str, str]:
    """``dice_wt`` -> (``dice``, ``wt``); ``loss`` -> (``loss``, ``""``)."""
    head, _, tail = name.rpartition("_")
    if head and tail.lower() in _SUFFIXES:
        return head, tail
    return name, ""


def training_curves(
    log: Any,
    *,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Figure:
    """Training curves from a Keras ``CSVLogger`` file: one panel per loss/metric family.

    Every column ``x`` is paired with ``val_x`` (solid training, dashed validation, same colour).
    Columns ``name_wt``, ``name_tc``, ``name_et`` (and ``_ncr``, ``_ed``, ``_mean``) share one panel
    ``name``. The best validation epoch of each curve is marked (minimum for losses, maximum
    otherwise). A learning-rate column (``lr``/``learning_rate``) gets its own panel (log scale unless it reaches 0).

    Args:
        log: CSV path, DataFrame, mapping of columns, or a list of row dicts. An ``epoch``
            column is used as x when present (shown 1-based), else the row number.
        metrics: families to show (default: all, loss first).
        title, save, dpi: figure title, output path, resolution.

    Returns:
        The figure.

    Raises:
        ValueError: no numeric loss/metric columns, or a requested family that is absent.
    """
    table = _read_table(log)
    epochs = _floats(table["epoch"]) + 1 if "epoch" in table else None
    families: dict[str, list[str]] = {}
    lr_col = None
    for col in table:
        if col == "epoch" or col.startswith("val_"):
            continue
        if col in ("lr", "learning_rate"):
            lr_col = col
            continue
        if np.all(np.isnan(_floats(table[col]))):
            continue
        families.setdefault(_family(col)[0], []).append(col)
    for col in table:  # validation columns without a training partner still get drawn
        if col.startswith("val_") and col[4:] not in table:
            families.setdefault(_family(col[4:])[0], []).append(col[4:])
    if metrics is not None:
        missing = [m for m in metrics if m not in families]
        if missing:
            raise ValueError(f"metrics {missing} not in the log; available: {sorted(families)}")
        families = {m: families[m] for m in metrics}
    else:
        families = dict(sorted(families.items(), key=lambda kv: (kv[0] != "loss", kv[0])))
    if not families:
        raise ValueError(f"no loss or metric columns in the log (columns: {list(table)})")

    panels = list(families) + ([lr_col] if lr_col else [])
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, fam in zip(axes.flat, panels):
        if fam == lr_col:
            y = _floats(table[lr_col])
            x = epochs if epochs is not None else np.arange(1, len(y) + 1)
            ax.plot(x, y, color="0.3")
            shown = y[np.isfinite(y)]
            if shown.size and (shown > 0).all():  # a poly schedule ends at 0: linear then
                ax.set_yscale("log")
            ax.set_title("learning rate", fontsize=10)
            ax.set_xlabel("epoch")
            continue
        lower_better = "loss" in fam.lower() or fam.lower().startswith(("hd", "haus"))
        for c, col in enumerate(families[fam]):
            member = _family(col)[1].upper()
            colour = _CURVE_COLOURS.get(member, colours[c % len(colours)])
            for key, style in ((col, "-"), (f"val_{col}", "--")):
                if key not in table:
                    continue
                y = _floats(table[key])
                x = epochs if epochs is not None else np.arange(1, len(y) + 1)
                ax.plot(x, y, style, color=colour, lw=1.4, label=key)
                if key.startswith("val_") and np.any(np.isfinite(y)):
                    b = int(np.nanargmin(y) if lower_better else np.nanargmax(y))
                    ax.plot(x[b], y[b], "o", color=colour, ms=5, mec="black", mew=0.6)
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title or "training curves (solid: training, dashed: validation, dot: best validation)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, save, dpi)
    return fig


def metric_boxplot(
    metrics: Any,
    metric: str = "dice",
    *,
    regions: Sequence[str] = REGIONS,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Figure:
    """Per-case box plots of one metric for each region, every case drawn as a point.

    Accepts the long evaluation table (columns ``case, region, <metric>, ...``, one row per case
    and region) or a wide one (``<metric>_wt``, ``<metric>_tc``, ... per case). Non-numeric and
    NaN values are left out and the count of cases kept is printed under each box; the median is
    written above it.

    Args:
        metrics: CSV path, DataFrame, mapping of columns, or a list of row dicts.
        metric: column to plot (``dice``, ``hd95``, ``sensitivity``, ...).
        regions: regions in plotting order.
        title, save, dpi: figure title, output path, resolution.

    Returns:
        The figure.

    Raises:
        ValueError: the metric is not in the table, or no region has a value.
    """
    table = _read_table(metrics)
    values: dict[str, np.ndarray] = {}
    if "region" in table:
        if metric not in table:
            raise ValueError(f"metric {metric!r} not in the table; columns: {list(table)}")
        reg = [str(r).upper() for r in table["region"]]
        vals = _floats(table[metric])
        for r in regions:
            v = vals[[i for i, x in enumerate(reg) if x == r.upper()]]
            values[r] = v[np.isfinite(v)]
    else:
        for r in regions:
            col = next((c for c in table if c.lower() == f"{metric}_{r}".lower()), None)
            if col is not None:
                v = _floats(table[col])
                values[r] = v[np.isfinite(v)]
        if not values:
            raise ValueError(f"metric {metric!r}: no 'region' column and no {metric}_<region> columns in {list(table)}")
    if not any(v.size for v in values.values()):
        raise ValueError(f"metric {metric!r} has no numeric values for regions {tuple(regions)}")

    names = list(values)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.4, 4.0))
    data = [values[r] if values[r].size else np.array([np.nan]) for r in names]
    box = ax.boxplot(data, patch_artist=True, widths=0.55, showfliers=False, medianprops={"color": "black"})
    rng = np.random.default_rng(0)  # fixed jitter: the same table gives the same picture
    for i, (r, patch) in enumerate(zip(names, box["boxes"]), start=1):
        patch.set_facecolor((*REGION_COLOURS.get(r.upper(), (0.6, 0.6, 0.6)), 0.55))
        v = values[r]
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=12, color="black", alpha=0.6, zorder=3)
        if v.size:
            ax.annotate(
                f"{np.median(v):.3g}",
                (i, np.max(v)),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    ax.set_xticks(range(1, len(names) + 1), [f"{r}\nn={values[r].size}" for r in names])
    ax.set_ylabel(metric)
    if metric.lower() in ("dice", "sensitivity", "specificity", "precision", "iou", "jaccard"):
        ax.set_ylim(-0.02, 1.08)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        handles=region_legend_handles([r for r in names if r.upper() in REGION_COLOURS]),
        fontsize=7,
        frameon=False,
        loc="best",
    )
    ax.set_title(title or f"per-case {metric} by region (median above each box)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save, dpi)
    return fig


def metric_per_case(
    metrics: Any,
    metric: str = "dice",
    *,
    regions: Sequence[str] = REGIONS,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Figure:
    """Grouped bars of one metric per case and region: one group per case, one bar per region.

    Cases are ordered by their mean over ``regions`` (best first), so the best and the worst case
    sit at the two ends; NaN values leave a gap.

    Args:
        metrics: the long evaluation table (columns ``case, region, <metric>``; one row per case
            and region) as a CSV path, DataFrame, mapping of columns or list of row dicts.
        metric: column to plot.
        regions: regions in bar order, drawn in the region colours.
        title, save, dpi: figure title, output path, resolution.

    Returns:
        The figure.

    Raises:
        ValueError: no ``case``/``region``/``metric`` column, or no numeric value.
    """
    table = _read_table(metrics)
    missing = [c for c in ("case", "region", metric) if c not in table]
    if missing:
        raise ValueError(f"columns {missing} not in the table; columns: {list(table)}")
    vals = _floats(table[metric])
    if not np.any(np.isfinite(vals)):
        raise ValueError(f"metric {metric!r} has no numeric values")
    cases = list(dict.fromkeys(str(c) for c in table["case"]))
    grid = np.full((len(cases), len(regions)), np.nan)
    index = {r.upper(): j for j, r in enumerate(regions)}
    for c, r, v in zip(table["case"], table["region"], vals):
        if str(r).upper() in index:
            grid[cases.index(str(c)), index[str(r).upper()]] = v
    with warnings.catch_warnings():  # an all-NaN case sorts last
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(grid, axis=1)
    order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")
    width = 0.8 / len(regions)
    fig, ax = plt.subplots(figsize=(min(12.0, 2.4 + 0.45 * len(cases) * len(regions) ** 0.5), 3.6))
    x = np.arange(len(cases))
    for j, r in enumerate(regions):
        colour = _CURVE_COLOURS.get(r.upper(), (0.6, 0.6, 0.6))
        ax.bar(x + (j - (len(regions) - 1) / 2) * width, grid[order, j], width, color=colour, label=r)
    ax.set_xticks(
        x,
        [cases[i] for i in order],
        rotation=60 if len(cases) > 4 else 0,
        ha="right" if len(cases) > 4 else "center",
        fontsize=7,
    )
    ax.set_ylabel(metric)
    if metric.lower() in ("dice", "sensitivity", "specificity", "precision", "iou", "jaccard"):
        ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, frameon=False, ncol=len(regions), loc="upper right")
    ax.set_title(title or f"{metric} per case and region (best case first)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save, dpi)
    return fig


def uncertainty_overlay(
    image: np.ndarray,
    uncertainty: np.ndarray,
    label: np.ndarray | None = None,
    *,
    z: int | None = None,
    channel: int | str = "flair",
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    alpha: float = 0.45,
    radiological: bool = True,
    crop: bool = True,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Figure:
    """A voxel-wise uncertainty map on one axial slice, beside the labels it belongs to.

    Panels: the label overlay (usually the prediction), then the uncertainty as a heat map
    (``magma``, 0 to the volume's maximum, with a colour bar) over the dimmed image.

    Args:
        image: ``(X, Y, Z, C)`` or ``(X, Y, Z)`` in voxel order.
        uncertainty: ``(X, Y, Z)`` float map (entropy, variance, ...); larger is less certain.
        label: ``(X, Y, Z)`` canonical labels, or ``None``.
        z: axial voxel index (default: the label's tumour centre, else the most uncertain voxel).
        channel, affine, spacing, alpha, radiological, crop, title, save, dpi: as in :func:`compare`.

    Returns:
        The figure.

    Raises:
        ValueError: shapes that disagree, labels above 3, ``z`` out of range.
    """
    vol = _as_volume(image, channel)
    unc = np.asarray(uncertainty, dtype=np.float32)
    if unc.shape != vol.shape:
        raise ValueError(f"uncertainty shape {unc.shape} does not match image spatial shape {vol.shape}")
    label = _check_label(label, vol.shape)
    geom = _Geometry.make(vol.shape, affine, spacing)
    axis = geom.voxel_axis("axial")
    if z is None:
        has_label = label is not None and np.any(label)
        z = (
            tumour_centre(label, vol.shape)[axis]
            if has_label
            else int(np.unravel_index(np.argmax(unc), unc.shape)[axis])
        )
    if not 0 <= int(z) < vol.shape[axis]:
        raise ValueError(f"z={z} out of range for {vol.shape[axis]} axial slices")
    k = geom.ras_slice_index("axial", int(z))
    vol_ras, unc_ras = geom.to_ras(vol), geom.to_ras(unc)
    lab_ras = None if label is None else geom.to_ras(label)
    window = _window(vol)
    box = _brain_box(vol_ras) if crop else None
    top = float(np.nanmax(unc)) if np.any(np.isfinite(unc)) else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.6))
    _draw_slice(axes[0], geom, "axial", k, vol_ras, window, lab_ras, alpha, radiological, box)
    axes[0].set_title("labels" if label is not None else _channel_name(channel), fontsize=10)
    _draw_slice(axes[1], geom, "axial", k, vol_ras, window, None, alpha, radiological, box)
    heat = axes[1].imshow(
        _display_slice(unc_ras, "axial", k, radiological),
        cmap="magma",
        vmin=0.0,
        vmax=top if top > 0 else 1.0,
        alpha=0.75,
        aspect=_plane_aspect(geom, "axial"),
        interpolation="nearest",
    )
    axes[1].set_title("uncertainty", fontsize=10)
    fig.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.02)
    if label is not None:
        fig.legend(handles=legend_handles(), loc="lower center", ncol=3, frameon=False, fontsize=8)
    fig.suptitle(title or f"uncertainty, axial z={z}", fontsize=11)
    fig.tight_layout(rect=(0, 0.1 if label is not None else 0, 1, 0.92))
    save_figure(fig, save, dpi)
    return fig


# --------------------------------------------------------------------------------------- 3D


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _surface(
    mask: np.ndarray, spacing: Sequence[float], step: int, smooth: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching-cubes mesh (vertices in mm from the array origin, faces) of a boolean mask."""
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    if not mask.any():
        return None
    box = _bbox(mask, pad=0)
    pad = int(step) + 2 + int(math.ceil(2 * smooth))
    # Zero padding closes surfaces that touch the array's edge and leaves room for the blur.
    field = np.pad(mask[box].astype(np.float32), pad)
    if smooth > 0:  # a blurred binary mask gives a smoother surface at the same level
        field = gaussian_filter(field, smooth)
    if field.max() <= 0.5:
        return None
    # A coarse step can stride over a small region's only voxels above the level: retry at step 1.
    for step_size in dict.fromkeys((int(step), 1)):
        try:
            verts, faces, _, _ = marching_cubes(
                field, level=0.5, spacing=tuple(float(s) for s in spacing), step_size=step_size
            )
            break
        except RuntimeError:
            continue
    else:
        return None
    verts += (np.array([b.start for b in box]) - pad) * np.asarray(spacing, dtype=float)
    return verts, faces


def region_meshes(
    label: np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
    regions: Sequence[str] = REGIONS,
    step: int = 2,
    smooth: float = 1.0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Marching-cubes meshes of the tumour regions, in RAS-aligned millimetres.

    Vertex ``(x, y, z)`` is measured from the corner voxel of the RAS-reordered grid: ``x`` grows
    to the patient's right, ``y`` anterior, ``z`` superior (for BraTS LPS storage
    ``x = (X - 1 - i) * sx``, ``y = (Y - 1 - j) * sy``, ``z = k * sz``).

    Args:
        label: ``(X, Y, Z)`` canonical labels.
        spacing, affine: geometry as in :func:`surface_3d`.
        regions: subset of ``("WT", "TC", "ET")``.
        step: marching-cubes step in voxels.
        smooth: Gaussian sigma in voxels before meshing (0 = none).

    Returns:
        Region -> ``(verts (V, 3) float mm, faces (F, 3) int)``; empty regions are left out.

    Raises:
        ValueError: unknown region, label not 3D or with values above 3, ``step < 1``.
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise ValueError(f"label must be (X, Y, Z), got shape {label.shape}")
    _check_label(label, label.shape)
    bad = [r for r in regions if r not in REGION_LABELS]
    if bad:
        raise ValueError(f"regions must be among {REGIONS}, got {bad}")
    if int(step) < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    geom = _Geometry.make(label.shape, affine, spacing)
    lab_ras = geom.to_ras(label)
    meshes = {}
    for r in REGIONS:  # outermost first, the drawing order of the nested view
        if r in regions:
            mesh = _surface(np.isin(lab_ras, REGION_LABELS[r]), geom.ras_spacing, int(step), smooth)
            if mesh is not None:
                meshes[r] = mesh
    return meshes


def _shaded(
    verts: np.ndarray, faces: np.ndarray, colour: Sequence[float], alpha: float, light: np.ndarray
) -> np.ndarray:
    """Per-face RGBA: the colour dimmed by a Lambert term, so a surface reads as 3D without edges."""
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    lambert = np.abs(normal @ light)  # two-sided: face winding does not matter
    rgb = np.asarray(colour, dtype=float)[None, :] * (0.35 + 0.65 * lambert)[:, None]
    return np.concatenate([rgb, np.full((len(faces), 1), alpha)], axis=1)


def surface_3d(
    label: np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
    regions: Sequence[str] = REGIONS,
    brain: np.ndarray | None = None,
    step: int = 2,
    smooth: float = 1.0,
    view: tuple[float, float] = (20.0, -60.0),
    separate: bool = True,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Figure:
    """3D surfaces of the tumour regions (marching cubes) on RAS-aligned axes in millimetres.

    The first panel nests the regions: WT semi-transparent green around TC (red) and ET (yellow),
    inside a faint grey brain outline when ``brain`` is given. Because TC and ET share most of
    their outer surface (ET is usually a rim around the necrotic core), ``separate=True`` adds
    one panel per region, all on the same axes zoomed onto the whole tumour. Surfaces come from
    ``skimage.measure.marching_cubes`` on each region's mask, cropped to its bounding box,
    Gaussian-smoothed by ``smooth`` voxels and sampled every ``step`` voxels for speed.

    Args:
        label: ``(X, Y, Z)`` canonical labels.
        spacing: voxel size in mm (default: from the affine, else 1 mm).
        affine: voxel-to-world affine (default: BraTS LPS); axes point to R, A and S.
        regions: subset of ``("WT", "TC", "ET")``.
        brain: optional ``(X, Y, Z)`` or ``(X, Y, Z, C)`` image whose nonzero voxels outline the brain.
        step: marching-cubes step in voxels (1 = full resolution).
        smooth: Gaussian sigma in voxels before meshing (0 = none).
        view: ``(elevation, azimuth)`` in degrees, shared by all panels.
        separate: add one panel per region.
        title, save, dpi: figure title, output path, resolution.

    Returns:
        The figure (one 3D axes per panel, the nested view first).

    Raises:
        ValueError: unknown region, label not 3D or with values above 3, bad step, brain of
            another shape.
    """
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    meshes = region_meshes(label, spacing=spacing, affine=affine, regions=regions, step=step, smooth=smooth)
    label = np.asarray(label)
    geom = _Geometry.make(label.shape, affine, spacing)
    sp = np.array(geom.ras_spacing)
    lab_ras = geom.to_ras(label)
    brain_mesh = None
    if brain is not None:
        b = np.asarray(brain)
        b = (b != 0).any(axis=-1) if b.ndim == 4 else b != 0
        if b.shape != label.shape:
            raise ValueError(f"brain shape {b.shape} does not match label shape {label.shape}")
        brain_mesh = _surface(geom.to_ras(b), sp, max(int(step) * 2, 4), 1.5)
    alphas = {"WT": 0.22, "TC": 0.5, "ET": 0.85}

    tumour = np.argwhere(lab_ras > 0)
    if tumour.size:
        lo_t, hi_t = tumour.min(0) * sp, tumour.max(0) * sp
        centre, half = (lo_t + hi_t) / 2, (hi_t - lo_t).max() / 2 + 3 * sp.max()
        zoom = (centre - half, centre + half)
    else:
        zoom = (np.zeros(3), (np.array(geom.ras_shape) - 1) * sp)
    whole = (np.zeros(3), (np.array(geom.ras_shape) - 1) * sp)

    panels: list[tuple[str, list[str]]] = [("all regions" + (" in the brain" if brain_mesh else ""), list(meshes))]
    if separate:
        panels += [(REGION_NAMES[r], [r]) for r in meshes]
    elev, azim = np.radians(view[0]), np.radians(view[1])
    camera = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    light = camera + np.array([0.0, 0.0, 0.6])  # from the viewer, a little above
    light /= np.linalg.norm(light)
    fig = plt.figure(figsize=(3.4 * len(panels), 3.9))
    for p, (name, members) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1, projection="3d")
        if p == 0 and brain_mesh is not None:
            verts, faces = brain_mesh
            ax.add_collection3d(
                Poly3DCollection(
                    verts[faces], facecolors=_shaded(verts, faces, (0.6, 0.6, 0.6), 0.06, light), edgecolor="none"
                )
            )
        for r in members:
            verts, faces = meshes[r]
            a = alphas[r] if len(members) > 1 else 0.9
            ax.add_collection3d(
                Poly3DCollection(
                    verts[faces], facecolors=_shaded(verts, faces, REGION_COLOURS[r], a, light), edgecolor="none"
                )
            )
        lo, hi = whole if (p == 0 and brain_mesh is not None) else zoom
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect(tuple(np.maximum(hi - lo, 1e-6)))
        for setter, text in ((ax.set_xlabel, "R →"), (ax.set_ylabel, "A →"), (ax.set_zlabel, "S →")):
            setter(text, fontsize=8, labelpad=-6)
        ax.tick_params(labelsize=5, pad=-2)
        ax.view_init(elev=view[0], azim=view[1])
        ax.set_title(name, fontsize=9)
    handles = region_legend_handles(list(meshes)) or [Patch(facecolor="white", label="no tumour")]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=8)
    fig.suptitle(title or "tumour regions, marching-cubes surfaces (axes in mm)", fontsize=11)
    fig.subplots_adjust(left=0.0, right=0.97, bottom=0.08, top=0.86, wspace=0.05)
    save_figure(fig, save, dpi)
    return fig


# ------------------------------------------------------------------------- animation and widgets


def _composite(gray: np.ndarray, window: tuple[float, float], lab2d: np.ndarray | None, alpha: float) -> np.ndarray:
    """uint8 RGB image of a windowed slice with the label blended in the fixed colours."""
    lo, hi = window
    g = np.clip((gray.astype(np.float32) - lo) / (hi - lo), 0, 1)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    if lab2d is not None:
        over = label_rgba(lab2d, alpha)
        rgb = rgb * (1 - over[..., 3:]) + over[..., :3] * over[..., 3:]
    return (rgb * 255 + 0.5).astype(np.uint8)


def _legend_strip(width: int, height: int, edges: tuple[str, str], legend: bool) -> np.ndarray:
    """A small RGB strip, drawn once with matplotlib: the frame's left/right letters and the legend."""
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    fig.patch.set_facecolor("black")
    if legend:
        fig.legend(
            handles=[Patch(facecolor=LABEL_COLOURS[k], label=CLASS_NAMES[k]) for k in FOREGROUND_CLASSES],
            loc="center",
            ncol=3,
            frameon=False,
            labelcolor="white",
            fontsize=7,
            handlelength=0.8,
            columnspacing=0.8,
            handletextpad=0.4,
        )
    for x, text, ha in ((0.02, edges[0], "left"), (0.98, edges[1], "right")):
        fig.text(x, 0.5, text, color="white", fontsize=8, fontweight="bold", ha=ha, va="center")
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="black")
    from PIL import Image

    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB").resize((width, height)))


def slices_gif(
    image: np.ndarray,
    label: np.ndarray | None,
    path: str | Path,
    *,
    channel: int | str = "flair",
    axis: int | str = "axial",
    step: int = 2,
    fps: float = 10.0,
    alpha: float = 0.45,
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    radiological: bool = True,
    scale: int = 1,
    loop: int = 0,
    crop: bool = True,
) -> Path:
    """Animated GIF walking through the slices, label overlay in the fixed colours, legend strip.

    Frames are slices ``0, step, 2*step, ...`` along the plane's normal in display order (inferior
    to superior, posterior to anterior, left to right for axial, coronal, sagittal), composited
    with NumPy and written with Pillow, so a frame costs no matplotlib draw. Each frame has a
    slice-position bar and a strip with the legend and the left/right orientation letters along
    its bottom edge.

    Args:
        image: ``(X, Y, Z, C)`` or ``(X, Y, Z)`` in voxel order.
        label: ``(X, Y, Z)`` canonical labels, or ``None``.
        path: output ``.gif`` path (written atomically).
        channel: modality name or index.
        axis: ``"axial"``, ``"coronal"``, ``"sagittal"`` or a voxel axis 0-2.
        step: slice step (>= 1).
        fps: frames per second.
        alpha: overlay opacity.
        affine, spacing, radiological: as in :func:`show_case` (anisotropic voxels are resampled
            nearest-neighbour to square pixels).
        scale: integer upscaling of each frame.
        loop: GIF loop count (0 = forever).
        crop: cut every frame to the brain's bounding box (nonzero voxels) plus 4 voxels.

    Returns:
        The path of the GIF; it has ``len(range(0, n_slices, step))`` frames.

    Raises:
        ValueError: bad shapes, ``step < 1``, ``fps <= 0`` or ``scale < 1``.
    """
    from PIL import Image

    if int(step) < 1 or fps <= 0 or int(scale) < 1:
        raise ValueError(f"step and scale must be >= 1 and fps > 0, got step={step}, scale={scale}, fps={fps}")
    vol = _as_volume(image, channel)
    label = _check_label(label, vol.shape)
    geom = _Geometry.make(vol.shape, affine, spacing)
    plane = _plane_name(axis, geom)
    vol_ras = geom.to_ras(vol)
    lab_ras = None if label is None else geom.to_ras(label)
    window = _window(vol)
    n = geom.ras_shape[_PLANE_RAS_AXIS[plane]]
    ks = list(range(0, n, int(step)))
    aspect = _plane_aspect(geom, plane)
    rows, cols = _display_slice(vol_ras, plane, 0, radiological).shape
    r0, r1, c0, c1 = 0, rows, 0, cols
    box = _brain_box(vol_ras) if crop else None
    if box is not None:
        (ca, ra), (cb, rb) = (_display_point(geom, plane, corner, radiological) for corner in box)
        r0, r1, c0, c1 = min(ra, rb), max(ra, rb) + 1, min(ca, cb), max(ca, cb) + 1
    rows, cols = r1 - r0, c1 - c0
    height, width = int(round(rows * aspect)) * int(scale), cols * int(scale)
    left, right, _, _ = _edge_letters(plane, radiological)
    legend = _legend_strip(width, 22, (left, right), label is not None)

    frames = []
    for k in ks:
        lab2d = None if lab_ras is None else _display_slice(lab_ras, plane, k, radiological)[r0:r1, c0:c1]
        rgb = _composite(_display_slice(vol_ras, plane, k, radiological)[r0:r1, c0:c1], window, lab2d, alpha)
        frame = Image.fromarray(rgb).resize((width, height), Image.NEAREST)
        parts = [np.asarray(frame)]
        bar = np.zeros((4, width, 3), dtype=np.uint8)
        bar[:, : max(1, round(width * (k + 1) / n))] = 200  # position in the stack
        parts.append(bar)
        parts.append(legend)
        frames.append(Image.fromarray(np.concatenate(parts, axis=0)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    # One shared palette from a sample of frames: per-frame palettes would make the overlay flicker.
    sample = frames[:: max(1, len(frames) // 8)]
    if lab_ras is not None:
        areas = [int(np.count_nonzero(_display_slice(lab_ras, plane, k, radiological))) for k in ks]
        sample.append(frames[int(np.argmax(areas))])
    mosaic = Image.fromarray(np.concatenate([np.asarray(f) for f in sample], axis=0))
    palette_src = mosaic.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    pal = [f.quantize(palette=palette_src, dither=Image.Dither.NONE) for f in frames]
    pal[0].save(
        tmp,
        format="GIF",
        save_all=True,
        append_images=pal[1:],
        duration=int(round(1000 / fps)),
        loop=int(loop),
        disposal=1,
        optimize=False,
    )
    tmp.replace(path)
    return path


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def slice_slider(
    image: np.ndarray,
    label: np.ndarray | None = None,
    *,
    channel: int | str = "flair",
    axis: int | str = "axial",
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    alpha: float = 0.45,
    radiological: bool = True,
    interactive: bool | None = None,
    save: str | Path | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Any:
    """Interactive slice viewer for Jupyter (ipywidgets), or a static montage where that cannot run.

    The widget has a slice slider, a channel menu (4D images), a plane menu and an overlay
    opacity slider; each change redraws one matplotlib figure to a PNG shown in an
    ``ipywidgets.Image``, so it works with any notebook backend (inline included).

    Args:
        image: ``(X, Y, Z, C)`` or ``(X, Y, Z)`` in voxel order.
        label: ``(X, Y, Z)`` canonical labels, or ``None``.
        channel: initial modality name or index.
        axis: initial plane or voxel axis.
        affine, spacing, alpha, radiological: as in :func:`show_case`.
        interactive: ``None`` builds widgets only inside a running Jupyter kernel; ``True``
            builds them anyway (for tests and custom front ends); ``False`` always gives the
            static montage.
        save: path for the figure (the montage, or the slider's first view).
        dpi: resolution of the saved file.

    Returns:
        An ``ipywidgets.VBox`` whose ``figure`` attribute is the redrawn figure and whose
        ``slider`` attribute is the slice slider; or, when widgets are unavailable, the static
        montage figure (a ``UserWarning`` says why).
    """
    reason = None
    if interactive is False:
        reason = "interactive=False"
    elif interactive is None and not _in_kernel():
        reason = "not running inside a Jupyter kernel"
    if reason is None:
        try:
            import ipywidgets as widgets
        except ImportError:
            reason = "ipywidgets is not installed (pip install ipywidgets)"
    if reason is not None:
        warnings.warn(f"slice_slider: {reason}; showing a static montage instead", UserWarning, stacklevel=2)
        return montage(
            image,
            label,
            channel=channel if np.ndim(image) == 4 else 0,
            axis=axis,
            affine=affine,
            spacing=spacing,
            alpha=alpha,
            radiological=radiological,
            title="static montage (interactive slider unavailable)",
            save=save,
            dpi=dpi,
        )

    image = np.asarray(image)
    vol0 = _as_volume(image, channel)
    label = _check_label(label, vol0.shape)
    geom = _Geometry.make(vol0.shape, affine, spacing)
    img_ras = geom.to_ras(image)
    lab_ras = None if label is None else geom.to_ras(label)
    chans = list(MODALITIES[: image.shape[-1]]) if image.ndim == 4 else ["image"]
    windows = [_window(image[..., c]) for c in range(image.shape[-1])] if image.ndim == 4 else [_window(image)]
    plane0 = _plane_name(axis, geom)
    centre = tumour_centre(label, vol0.shape)
    zoom = _brain_box(np.any(img_ras != 0, axis=-1) if image.ndim == 4 else img_ras)

    fig = Figure(figsize=(5.0, 5.4))
    ax = fig.add_subplot(1, 1, 1)
    if label is not None:
        fig.legend(handles=legend_handles(), loc="lower center", ncol=3, frameon=False, fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.93, bottom=0.1)
    view = widgets.Image(format="png")

    def render(k_vox: int, chan: str, plane: str, a: float) -> None:
        ax.clear()
        c = chans.index(chan)
        vol = img_ras[..., c] if image.ndim == 4 else img_ras
        _draw_slice(
            ax, geom, plane, geom.ras_slice_index(plane, k_vox), vol, windows[c], lab_ras, a, radiological, zoom
        )
        ax.set_title(f"{chan.upper()} {plane} {'ijk'[geom.voxel_axis(plane)]}={k_vox}", fontsize=10)
        buf = _io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        view.value = buf.getvalue()

    v0 = geom.voxel_axis(plane0)
    slider = widgets.IntSlider(
        value=centre[v0],
        min=0,
        max=vol0.shape[v0] - 1,
        description="slice",
        continuous_update=True,
        layout=widgets.Layout(width="95%"),
    )
    chan_w = widgets.Dropdown(
        options=chans, value=_channel_name(channel) if image.ndim == 4 else "image", description="channel"
    )
    plane_w = widgets.Dropdown(options=list(PLANES), value=plane0, description="plane")
    alpha_w = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="overlay")

    def on_plane(change: dict) -> None:
        vax = geom.voxel_axis(change["new"])
        slider.max = vol0.shape[vax] - 1
        slider.value = centre[vax]
        render(slider.value, chan_w.value, change["new"], alpha_w.value)

    def on_other(_change: dict) -> None:
        render(slider.value, chan_w.value, plane_w.value, alpha_w.value)

    plane_w.observe(on_plane, names="value")
    for w in (slider, chan_w, alpha_w):
        w.observe(on_other, names="value")
    render(slider.value, chan_w.value, plane_w.value, alpha_w.value)
    save_figure(fig, save, dpi)
    box = widgets.VBox([widgets.HBox([chan_w, plane_w, alpha_w]), slider, view])
    box.figure, box.slider, box.image = fig, slider, view
    return box


__all__ = [
    "LABEL_COLOURS",
    "LABEL_NAMES",
    "REGION_COLOURS",
    "ERROR_COLOURS",
    "CLASS_NAMES",
    "PLANES",
    "label_cmap",
    "label_rgba",
    "legend_handles",
    "region_legend_handles",
    "error_legend_handles",
    "tumour_centre",
    "save_figure",
    "show_case",
    "three_plane",
    "montage",
    "compare",
    "training_curves",
    "metric_boxplot",
    "metric_per_case",
    "uncertainty_overlay",
    "region_meshes",
    "surface_3d",
    "slices_gif",
    "slice_slider",
]
