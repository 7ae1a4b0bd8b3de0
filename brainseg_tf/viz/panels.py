"""Building blocks of slice panels: input checks, intensity window, zoom boxes, one drawn slice.

Arrays are in NIfTI voxel order, image ``(X, Y, Z, C)`` with channels ``(flair, t1, t1ce, t2)``
and label ``(X, Y, Z)`` canonical (0-3). Intensities are windowed at the 0.5-99.5 percentiles of
the nonzero (brain) voxels of the whole volume, so every slice of a case shares one window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from brainseg_tf.arrays import bbox
from brainseg_tf.conventions import MODALITIES, PLANE_AXES
from brainseg_tf.schemes import get_scheme
from brainseg_tf.viz.colors import label_rgba
from brainseg_tf.viz.geometry import DisplayGeometry, display_slice, edge_letters

__all__ = [
    "window",
    "channel_index",
    "channel_name",
    "as_volume",
    "check_label",
    "CaseView",
    "case_view",
    "tumour_centre",
    "brain_box",
    "slices_through",
    "blank_axes",
    "mark_orientation",
    "draw_slice",
]


def window(img: np.ndarray) -> tuple[float, float]:
    """0.5-99.5 percentile window of the nonzero (brain) voxels; a subsample is enough."""
    vals = np.asarray(img)[np.asarray(img) != 0]
    if vals.size == 0:
        return float(np.min(img)), float(np.max(img)) + 1e-6
    if vals.size > 400_000:
        vals = vals[:: vals.size // 200_000]
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return float(lo), (float(hi) if hi > lo else float(lo) + 1e-6)


def channel_index(channel: int | str, n_channels: int, modalities: Sequence[str] = MODALITIES) -> int:
    """Index of a channel given by modality name or index; ``ValueError`` when out of range."""
    if isinstance(channel, str):
        if channel not in modalities:
            raise ValueError(f"channel must be one of {tuple(modalities)} or an index, got {channel!r}")
        return list(modalities).index(channel)
    if not 0 <= int(channel) < n_channels:
        raise ValueError(f"channel index {channel} out of range for {n_channels} channels")
    return int(channel)


def channel_name(channel: int | str, modalities: Sequence[str] = MODALITIES) -> str:
    """Modality name of a channel (for titles)."""
    if isinstance(channel, str):
        return channel
    return modalities[channel] if channel < len(modalities) else f"channel {channel}"


def as_volume(image: np.ndarray, channel: int | str, modalities: Sequence[str] = MODALITIES) -> np.ndarray:
    """The ``(X, Y, Z)`` volume of one channel of a 4D image (3D images pass through)."""
    image = np.asarray(image)
    if image.ndim == 3:
        return image
    if image.ndim != 4:
        raise ValueError(f"image must be (X, Y, Z) or (X, Y, Z, C), got shape {image.shape}")
    return image[..., channel_index(channel, image.shape[-1], modalities)]


def check_label(
    label: np.ndarray | None, shape: tuple[int, ...], name: str = "label", scheme: str | None = None
) -> np.ndarray | None:
    """``label`` as an array of the image's spatial shape with internal labels of ``scheme``
    (default canonical 0-3; ``None`` passes).

    Raises:
        ValueError: another shape, or values above the scheme's last label (named ``name``).
    """
    if label is None:
        return None
    label = np.asarray(label)
    if label.shape != tuple(shape[:3]):
        raise ValueError(f"{name} shape {label.shape} does not match image spatial shape {tuple(shape[:3])}")
    top = 3 if scheme is None else get_scheme(scheme).n_classes - 1
    if label.size and int(label.max()) > top:
        what = "canonical labels 0-3" if scheme is None else f"the {scheme!r} scheme's internal labels 0-{top}"
        raise ValueError(
            f"{name} must hold {what}, found {int(label.max())} (convert with io.labels.to_canonical"
            + (", or pass scheme=)" if scheme is None else ")")
        )
    return label


@dataclass(frozen=True)
class CaseView:
    """One channel of a case and its label, checked and reoriented for display.

    Attributes:
        geom: the display geometry.
        vol: ``(X, Y, Z)`` channel in voxel order.
        label: ``(X, Y, Z)`` canonical labels in voxel order, or ``None``.
        vol_ras, label_ras: the same reordered to RAS.
        window: the channel's intensity window (:func:`window`).
    """

    geom: DisplayGeometry
    vol: np.ndarray
    label: np.ndarray | None
    vol_ras: np.ndarray
    label_ras: np.ndarray | None
    window: tuple[float, float]


def case_view(
    image: np.ndarray,
    label: np.ndarray | None,
    channel: int | str,
    affine: np.ndarray | None,
    spacing: Sequence[float] | None,
) -> CaseView:
    """Check ``image`` (3D, or 4D with ``channel``) and ``label`` and reorient them for display.

    Raises:
        ValueError: bad shapes, channel, label values, affine or spacing.
    """
    vol = as_volume(image, channel)
    label = check_label(label, vol.shape)
    geom = DisplayGeometry.make(vol.shape, affine, spacing)
    lab_ras = None if label is None else geom.to_ras(label)
    return CaseView(geom, vol, label, geom.to_ras(vol), lab_ras, window(vol))


def tumour_centre(label: np.ndarray | None, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Voxel index of the tumour's (label > 0) centre of mass, or the volume centre without tumour."""
    if label is not None and np.any(label > 0):
        return tuple(int(round(c)) for c in np.argwhere(label > 0).mean(axis=0))
    return tuple(s // 2 for s in shape[:3])


def brain_box(vol_ras: np.ndarray, margin: int = 4) -> tuple[np.ndarray, np.ndarray] | None:
    """RAS index corners (first, last voxel) of the nonzero (brain) voxels of a 3D volume plus a
    margin, clipped to the volume; ``None`` when it is empty."""
    box = bbox(np.asarray(vol_ras) != 0, pad=margin)
    if box is None:
        return None
    return np.array([s.start for s in box]), np.array([s.stop - 1 for s in box])


def slices_through(mask_ras: np.ndarray, plane: str, n: int) -> list[int]:
    """``n`` evenly spaced RAS slice indices over the extent of ``mask_ras`` along the plane normal."""
    ax = PLANE_AXES[plane]
    box = bbox(mask_ras)
    lo, hi = (box[ax].start, box[ax].stop - 1) if box is not None else (0, mask_ras.shape[ax] - 1)
    n = max(1, min(int(n), hi - lo + 1))
    return [int(round(v)) for v in np.linspace(lo, hi, n + 2)[1:-1]] if hi - lo + 1 > n + 1 else list(range(lo, lo + n))


def blank_axes(ax: plt.Axes) -> None:
    """Hide an image panel's ticks."""
    ax.set_xticks([])
    ax.set_yticks([])


def mark_orientation(ax: plt.Axes, plane: str, radiological: bool) -> None:
    """Anatomical letters at the four edges of a displayed plane."""
    left, right, top, bottom = edge_letters(plane, radiological)
    style = dict(color="white", fontsize=7, fontweight="bold", transform=ax.transAxes, alpha=0.85)
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def draw_slice(
    ax: plt.Axes,
    geom: DisplayGeometry,
    plane: str,
    k_ras: int,
    vol_ras: np.ndarray | None,
    win: tuple[float, float] | None,
    label_ras: np.ndarray | None,
    alpha: float,
    radiological: bool,
    box: tuple[np.ndarray, np.ndarray] | None = None,
    scheme: str | None = None,
) -> None:
    """Grayscale slice with an optional label overlay (internal labels of ``scheme``, default
    canonical), aspect from spacing, orientation letters.

    The axes keep full-slice pixel coordinates (column, row of the display array); ``box`` (RAS
    index corners) only zooms the view onto it. Without ``vol_ras`` the background is black.
    """
    aspect = geom.aspect(plane)
    if vol_ras is not None:
        lo, hi = win
        ax.imshow(
            display_slice(vol_ras, plane, k_ras, radiological),
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
            label_rgba(display_slice(label_ras, plane, k_ras, radiological), alpha, scheme),
            aspect=aspect,
            interpolation="nearest",
        )
    if box is not None:
        corners = [geom.display_point(plane, box[0], radiological), geom.display_point(plane, box[1], radiological)]
        cols, rows = zip(*corners)
        ax.set_xlim(min(cols) - 0.5, max(cols) + 0.5)
        ax.set_ylim(max(rows) + 0.5, min(rows) - 0.5)
    blank_axes(ax)
    mark_orientation(ax, plane, radiological)
