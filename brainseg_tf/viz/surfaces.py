"""3D views of the tumour regions: marching-cubes meshes on RAS-aligned axes in millimetres."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from brainseg_tf.arrays import bbox, region_mask
from brainseg_tf.checks import check_int
from brainseg_tf.conventions import REGIONS
from brainseg_tf.viz.colors import REGION_COLOURS, REGION_NAMES, REGION_OPACITY, region_legend_handles
from brainseg_tf.viz.figures import DEFAULT_DPI, save_figure
from brainseg_tf.viz.geometry import DisplayGeometry
from brainseg_tf.viz.panels import check_label

__all__ = ["region_meshes", "surface_3d"]

Mesh = tuple[np.ndarray, np.ndarray]  # vertices (V, 3) float mm, faces (F, 3) int
# Opacity of each region in the nested view: the outer ones faint so the inner ones show.


def _surface(mask: np.ndarray, spacing: Sequence[float], step: int, smooth: float) -> Mesh | None:
    """Marching-cubes mesh (vertices in mm from the array origin, faces) of a boolean mask."""
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    box = bbox(mask)
    if box is None:
        return None
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
) -> dict[str, Mesh]:
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
    check_label(label, label.shape)
    bad = [r for r in regions if r not in REGIONS]
    if bad:
        raise ValueError(f"regions must be among {REGIONS}, got {bad}")
    check_int("step", step)
    geom = DisplayGeometry.make(label.shape, affine, spacing)
    lab_ras = geom.to_ras(label)
    meshes = {}
    for r in REGIONS:  # outermost first, the drawing order of the nested view
        if r in regions:
            mesh = _surface(region_mask(lab_ras, r), geom.ras_spacing, int(step), smooth)
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


def _brain_mesh(brain: np.ndarray, geom: DisplayGeometry, step: int) -> Mesh | None:
    """A coarse, smooth outline of the nonzero voxels of ``brain`` (3D, or 4D with channels last)."""
    b = np.asarray(brain)
    b = (b != 0).any(axis=-1) if b.ndim == 4 else b != 0
    if b.shape != geom.shape:
        raise ValueError(f"brain shape {b.shape} does not match label shape {geom.shape}")
    return _surface(geom.to_ras(b), geom.ras_spacing, max(int(step) * 2, 4), 1.5)


def _axis_bounds(label: np.ndarray, geom: DisplayGeometry) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(zoom, whole): mm bounds of a cube around the tumour (whole volume without one), and of the volume."""
    sp = np.array(geom.ras_spacing)
    whole = (np.zeros(3), (np.array(geom.ras_shape) - 1) * sp)
    tumour = np.argwhere(geom.to_ras(label) > 0)
    if not tumour.size:
        return whole, whole
    lo_t, hi_t = tumour.min(0) * sp, tumour.max(0) * sp
    centre, half = (lo_t + hi_t) / 2, (hi_t - lo_t).max() / 2 + 3 * sp.max()
    return (centre - half, centre + half), whole


def _light(view: tuple[float, float]) -> np.ndarray:
    """Unit light direction: from the viewer, a little above."""
    elev, azim = np.radians(view[0]), np.radians(view[1])
    camera = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    light = camera + np.array([0.0, 0.0, 0.6])
    return light / np.linalg.norm(light)


def _draw_meshes(
    ax: plt.Axes,
    meshes: Sequence[tuple[Mesh, Sequence[float], float]],
    bounds: tuple[np.ndarray, np.ndarray],
    light: np.ndarray,
    view: tuple[float, float],
) -> None:
    """Shaded ``(mesh, colour, alpha)`` surfaces on equal-scale RAS axes bounded by ``bounds`` (mm)."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    for (verts, faces), colour, alpha in meshes:
        facecolors = _shaded(verts, faces, colour, alpha, light)
        ax.add_collection3d(Poly3DCollection(verts[faces], facecolors=facecolors, edgecolor="none"))
    lo, hi = bounds
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(tuple(np.maximum(hi - lo, 1e-6)))
    for setter, text in ((ax.set_xlabel, "R →"), (ax.set_ylabel, "A →"), (ax.set_zlabel, "S →")):
        setter(text, fontsize=8, labelpad=-6)
    ax.tick_params(labelsize=5, pad=-2)
    ax.view_init(elev=view[0], azim=view[1])


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
    dpi: int = DEFAULT_DPI,
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
    meshes = region_meshes(label, spacing=spacing, affine=affine, regions=regions, step=step, smooth=smooth)
    label = np.asarray(label)
    geom = DisplayGeometry.make(label.shape, affine, spacing)
    brain_mesh = None if brain is None else _brain_mesh(brain, geom, step)
    zoom, whole = _axis_bounds(label, geom)
    light = _light(view)

    panels: list[tuple[str, list[str]]] = [("all regions" + (" in the brain" if brain_mesh else ""), list(meshes))]
    if separate:
        panels += [(REGION_NAMES[r], [r]) for r in meshes]
    fig = plt.figure(figsize=(3.4 * len(panels), 3.9))
    for p, (name, members) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1, projection="3d")
        with_brain = p == 0 and brain_mesh is not None
        drawn = [(brain_mesh, (0.6, 0.6, 0.6), 0.06)] if with_brain else []
        drawn += [(meshes[r], REGION_COLOURS[r], REGION_OPACITY[r] if len(members) > 1 else 0.9) for r in members]
        _draw_meshes(ax, drawn, whole if with_brain else zoom, light, view)
        ax.set_title(name, fontsize=9)
    handles = region_legend_handles(list(meshes)) or [Patch(facecolor="white", label="no tumour")]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=8)
    fig.suptitle(title or "tumour regions, marching-cubes surfaces (axes in mm)", fontsize=11)
    fig.subplots_adjust(left=0.0, right=0.97, bottom=0.08, top=0.86, wspace=0.05)
    save_figure(fig, save, dpi)
    return fig
