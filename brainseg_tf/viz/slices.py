"""Slice figures of one case: multi-modal view, three planes, montage, prediction errors, uncertainty.

Each panel carries orientation letters at its edges and is drawn with the voxel aspect ratio from
the spacing (display convention in :mod:`brainseg_tf.viz.geometry`). Slice indices in arguments
and titles are voxel indices of the arrays as given (NIfTI voxel order). Every function returns
its :class:`matplotlib.figure.Figure` and writes it when given ``save=``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from brainseg_tf.checks import check_choice, check_int
from brainseg_tf.conventions import CLASS_NAMES, FOREGROUND_CLASSES, MODALITIES, PLANE_AXES, REGION_LABELS
from brainseg_tf.evaluation import dice_score
from brainseg_tf.viz.colors import error_legend_handles, error_rgba, legend_handles, scheme_labels
from brainseg_tf.viz.figures import DEFAULT_DPI, save_figure
from brainseg_tf.viz.geometry import PLANES, DisplayGeometry, display_slice
from brainseg_tf.viz.panels import (
    as_volume,
    blank_axes,
    brain_box,
    case_view,
    channel_name,
    check_label,
    draw_slice,
    mark_orientation,
    slices_through,
    tumour_centre,
    window,
)

__all__ = ["show_case", "three_plane", "montage", "compare", "uncertainty_overlay"]


def _axial_index(geom: DisplayGeometry, z: int) -> int:
    """RAS index of axial voxel slice ``z``; ``ValueError`` when ``z`` is outside the volume."""
    n = geom.shape[geom.voxel_axis("axial")]
    if not 0 <= int(z) < n:
        raise ValueError(f"z={z} out of range for {n} axial slices")
    return geom.ras_slice_index("axial", int(z))


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
    dpi: int = DEFAULT_DPI,
    scheme: str | None = None,
) -> Figure:
    """Multi-modal axial view: every modality plain and with the label overlay, plus a legend.

    With a label the figure has two rows (top: the modalities as they are; bottom: the same with
    NCR red, ED green, ET yellow blended at ``alpha``, and a label-only panel); without, one row.

    Args:
        image: ``(X, Y, Z, C)`` in voxel order, channels named by ``modalities``.
        label: ``(X, Y, Z)`` canonical labels 0-3 (with ``scheme``: that scheme's internal labels), or ``None``.
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
        scheme: the label scheme of ``label`` (:mod:`brainseg_tf.schemes`, e.g. ``"ped2024"``): its
            labels' colours and names in the overlay and legend (default: canonical NCR, ED, ET).

    Returns:
        The figure.

    Raises:
        ValueError: image not 4D or not matching ``modalities``; label of another shape or with
            values above the scheme's labels; ``z`` out of range.
    """
    image = np.asarray(image)
    if image.ndim != 4 or image.shape[-1] != len(modalities):
        raise ValueError(f"image shape {image.shape} does not match modalities {modalities}")
    label = check_label(label, image.shape, scheme=scheme)
    named = scheme_labels(scheme)
    geom = DisplayGeometry.make(image.shape, affine, spacing)
    axis = geom.voxel_axis("axial")
    if z is None:
        z = tumour_centre(label, image.shape)[axis]
    k = _axial_index(geom, z)
    img_ras = geom.to_ras(image)
    lab_ras = None if label is None else geom.to_ras(label)
    box = brain_box(np.any(img_ras != 0, axis=-1)) if crop else None

    nmod = len(modalities)
    rows, cols = (2, nmod + 1) if label is not None else (1, nmod)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.7 * rows + 0.7), squeeze=False)
    for c, name in enumerate(modalities):
        win = window(image[..., c])
        draw_slice(axes[0, c], geom, "axial", k, img_ras[..., c], win, None, alpha, radiological, box)
        axes[0, c].set_title(name.upper(), fontsize=10)
        if label is not None:
            draw_slice(axes[1, c], geom, "axial", k, img_ras[..., c], win, lab_ras, alpha, radiological, box, scheme)
            axes[1, c].set_title(f"{name.upper()} + labels", fontsize=10)
    if label is not None:
        draw_slice(axes[1, -1], geom, "axial", k, None, None, lab_ras, 1.0, radiological, box, scheme)
        axes[1, -1].set_title("labels", fontsize=10)
        counts = np.bincount(label[(slice(None),) * axis + (int(z),)].ravel(), minlength=len(named) + 1)
        axes[0, -1].axis("off")
        axes[0, -1].text(
            0.05,
            0.5,
            "voxels in slice\n" + "\n".join(f"{text.split()[0]}: {counts[c]}" for c, (text, _) in named.items()),
            transform=axes[0, -1].transAxes,
            va="center",
            fontsize=9,
        )
        fig.legend(handles=legend_handles(scheme), loc="lower center", ncol=min(len(named), 4), frameon=False)
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
    dpi: int = DEFAULT_DPI,
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
    case = case_view(image, label, channel, affine, spacing)
    geom, vol_ras, lab_ras, win = case.geom, case.vol_ras, case.label_ras, case.window
    if centre is None:
        centre = tumour_centre(case.label, geom.shape)
    centre = tuple(int(c) for c in centre)
    if len(centre) != 3 or any(not 0 <= c < s for c, s in zip(centre, geom.shape)):
        raise ValueError(f"centre {centre} is outside the volume of shape {geom.shape}")
    c_ras = geom.ras_index(centre)
    box = brain_box(vol_ras) if crop else None
    lo, hi = (np.zeros(3), np.array(geom.ras_shape) - 1) if box is None else box
    ext = (np.asarray(hi) - np.asarray(lo) + 1) * np.array(geom.ras_spacing)
    widths = [ext[0], ext[0], ext[1]]  # physical width of each panel in mm
    fig, axes = plt.subplots(1, 3, figsize=(10, 4.2), gridspec_kw={"width_ratios": widths})
    for ax, plane in zip(axes, PLANES):
        k = c_ras[PLANE_AXES[plane]]
        draw_slice(ax, geom, plane, k, vol_ras, win, lab_ras, alpha, radiological, box)
        if crosshair:
            col, row = geom.display_point(plane, c_ras, radiological)
            ax.axvline(col, color="cyan", lw=0.7, alpha=0.8, gid="crosshair")
            ax.axhline(row, color="cyan", lw=0.7, alpha=0.8, gid="crosshair")
        vaxis = geom.voxel_axis(plane)
        ax.set_title(f"{plane} ({'ijk'[vaxis]}={centre[vaxis]})", fontsize=10)
    if lab_ras is not None:
        fig.legend(handles=legend_handles(), loc="lower center", ncol=3, frameon=False)
    name = channel_name(channel) if np.ndim(image) == 4 else "image"
    fig.suptitle(title or f"{name.upper()} through voxel {centre}")
    fig.tight_layout(rect=(0, 0.08 if lab_ras is not None else 0, 1, 0.94))
    save_figure(fig, save, dpi)
    return fig


def _montage_slices(
    geom: DisplayGeometry,
    plane: str,
    mask_ras: np.ndarray,
    n: int,
    slices: Sequence[int] | None,
) -> tuple[list[int], list[int]]:
    """Voxel and RAS indices of a montage's slices: ``slices`` as given, else ``n`` over the mask."""
    if slices is None:
        ras_ks = slices_through(mask_ras, plane, n)
        return [geom.ras_slice_index(plane, k) for k in ras_ks], ras_ks  # the map is its own inverse
    n_slices = geom.shape[geom.voxel_axis(plane)]
    vox_ks = [int(s) for s in slices]
    if not vox_ks or any(not 0 <= s < n_slices for s in vox_ks):
        raise ValueError(f"slices {vox_ks} must be non-empty and within 0..{n_slices - 1}")
    return vox_ks, [geom.ras_slice_index(plane, s) for s in vox_ks]


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
    dpi: int = DEFAULT_DPI,
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
    check_int("n", n)
    case = case_view(image, label, channel, affine, spacing)
    geom, vol_ras, lab_ras, win = case.geom, case.vol_ras, case.label_ras, case.window
    plane = geom.plane_name(axis)
    vaxis = geom.voxel_axis(plane)
    mask = lab_ras > 0 if lab_ras is not None and np.any(case.label) else vol_ras != 0
    vox_ks, ras_ks = _montage_slices(geom, plane, mask, n, slices)
    count = len(vox_ks)
    ncols = int(ncols) if ncols else min(6, math.ceil(math.sqrt(count)))
    nrows = math.ceil(count / ncols)
    box = brain_box(vol_ras) if crop else None
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.0 * nrows + 0.8), squeeze=False)
    for a, ax in enumerate(axes.flat):
        if a >= count:
            ax.axis("off")
            continue
        draw_slice(ax, geom, plane, ras_ks[a], vol_ras, win, lab_ras, alpha, radiological, box)
        ax.set_title(f"{'ijk'[vaxis]}={vox_ks[a]}", fontsize=8)
    if lab_ras is not None:
        fig.legend(handles=legend_handles(), loc="lower center", ncol=3, frameon=False, fontsize=8)
    name = channel_name(channel) if image.ndim == 4 else "image"
    fig.suptitle(title or f"{name.upper()} {plane} montage", fontsize=11)
    fig.tight_layout(rect=(0, 0.45 / (2.0 * nrows + 0.8) if lab_ras is not None else 0, 1, 0.95), h_pad=1.6, w_pad=0.3)
    save_figure(fig, save, dpi)
    return fig


def _draw_error_panel(
    ax: plt.Axes,
    img2d: np.ndarray,
    win: tuple[float, float],
    aspect: float,
    truth2d: np.ndarray,
    pred2d: np.ndarray,
    case_dice: float,
    name: str,
    radiological: bool,
) -> None:
    """One error map (TP, FP, FN of boolean slices) over the dimmed image, titled with the Dice."""
    ax.imshow(img2d, cmap="gray", vmin=win[0], vmax=win[1], alpha=0.5, aspect=aspect, interpolation="nearest")
    ax.imshow(error_rgba(truth2d, pred2d), aspect=aspect, interpolation="nearest")
    ax.set_title(f"{name} errors\nDice slice {dice_score(truth2d, pred2d):.2f} / case {case_dice:.2f}", fontsize=9)
    ax.set_facecolor("black")
    blank_axes(ax)
    mark_orientation(ax, "axial", radiological)


def _compare_legends(fig: Figure, by: str) -> None:
    """The label legend bottom left, the error legend bottom right."""
    common = dict(ncol=3, frameon=False, fontsize=8, title_fontsize=8)
    fig.legend(handles=legend_handles(), loc="lower left", title="labels", bbox_to_anchor=(0.01, 0.0), **common)
    fig.legend(
        handles=error_legend_handles(),
        loc="lower right",
        title=f"errors per {by}",
        bbox_to_anchor=(0.99, 0.0),
        **common,
    )


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
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """Prediction against ground truth on one axial slice, with per-region or per-class error maps.

    Panels: the ground-truth overlay, the prediction overlay, then one error map per region (WT,
    TC, ET; ``by="region"``) or per class (NCR, ED, ET; ``by="class"``) with true positives
    teal, false positives orange and false negatives blue over the dimmed image. Error-panel
    titles give the slice's Dice and the volume Dice of that region or class (1 when both empty).

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
    check_choice("by", by, ("region", "class"))
    vol = as_volume(image, channel)
    truth = check_label(truth, vol.shape, "truth")
    pred = check_label(pred, vol.shape, "pred")
    geom = DisplayGeometry.make(vol.shape, affine, spacing)
    if z is None:
        z = tumour_centre(truth if np.any(truth) else pred, vol.shape)[geom.voxel_axis("axial")]
    k = _axial_index(geom, z)
    vol_ras, t_ras, p_ras = geom.to_ras(vol), geom.to_ras(truth), geom.to_ras(pred)
    win = window(vol)
    box = brain_box(vol_ras) if crop else None
    groups = REGION_LABELS if by == "region" else {CLASS_NAMES[c]: (c,) for c in FOREGROUND_CLASSES}

    fig, axes = plt.subplots(1, 2 + len(groups), figsize=(2.6 * (2 + len(groups)), 3.6))
    draw_slice(axes[0], geom, "axial", k, vol_ras, win, t_ras, alpha, radiological, box)
    axes[0].set_title("ground truth", fontsize=10)
    draw_slice(axes[1], geom, "axial", k, vol_ras, win, p_ras, alpha, radiological, box)
    axes[1].set_title("prediction", fontsize=10)
    img2d = display_slice(vol_ras, "axial", k, radiological)
    t2d = display_slice(t_ras, "axial", k, radiological)
    p2d = display_slice(p_ras, "axial", k, radiological)
    for ax, (name, labels) in zip(axes[2:], groups.items()):
        case_dice = dice_score(np.isin(truth, labels), np.isin(pred, labels))
        _draw_error_panel(
            ax,
            img2d,
            win,
            geom.aspect("axial"),
            np.isin(t2d, labels),
            np.isin(p2d, labels),
            case_dice,
            name,
            radiological,
        )
        if box is not None:
            ax.set_xlim(axes[0].get_xlim())
            ax.set_ylim(axes[0].get_ylim())
    _compare_legends(fig, by)
    fig.suptitle(title or f"prediction vs ground truth, axial z={z}", fontsize=11)
    fig.tight_layout(rect=(0, 0.13, 1, 0.92))
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
    dpi: int = DEFAULT_DPI,
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
    case = case_view(image, label, channel, affine, spacing)
    label, geom, vol_ras, lab_ras, win = case.label, case.geom, case.vol_ras, case.label_ras, case.window
    unc = np.asarray(uncertainty, dtype=np.float32)
    if unc.shape != geom.shape:
        raise ValueError(f"uncertainty shape {unc.shape} does not match image spatial shape {geom.shape}")
    if z is None:
        has_label = label is not None and np.any(label)
        centre = tumour_centre(label, geom.shape) if has_label else np.unravel_index(np.argmax(unc), unc.shape)
        z = int(centre[geom.voxel_axis("axial")])
    k = _axial_index(geom, z)
    unc_ras = geom.to_ras(unc)
    box = brain_box(vol_ras) if crop else None
    top = float(np.nanmax(unc)) if np.any(np.isfinite(unc)) else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.6))
    draw_slice(axes[0], geom, "axial", k, vol_ras, win, lab_ras, alpha, radiological, box)
    axes[0].set_title("labels" if label is not None else channel_name(channel), fontsize=10)
    draw_slice(axes[1], geom, "axial", k, vol_ras, win, None, alpha, radiological, box)
    heat = axes[1].imshow(
        display_slice(unc_ras, "axial", k, radiological),
        cmap="magma",
        vmin=0.0,
        vmax=top if top > 0 else 1.0,
        alpha=0.75,
        aspect=geom.aspect("axial"),
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
