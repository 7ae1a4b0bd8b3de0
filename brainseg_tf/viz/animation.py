"""Animated GIFs walking through a case's slices, composited with NumPy and written with Pillow."""

from __future__ import annotations

import io as _io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from brainseg_tf.atomic import atomic_path
from brainseg_tf.checks import check_int, check_number
from brainseg_tf.conventions import CLASS_NAMES, FOREGROUND_CLASSES, PLANE_AXES
from brainseg_tf.viz.colors import LABEL_COLOURS, label_rgba
from brainseg_tf.viz.geometry import DisplayGeometry, display_slice, edge_letters
from brainseg_tf.viz.panels import brain_box, case_view

__all__ = ["slices_gif"]


def _composite(gray: np.ndarray, win: tuple[float, float], lab2d: np.ndarray | None, alpha: float) -> np.ndarray:
    """uint8 RGB image of a windowed slice with the label blended in the fixed colours."""
    lo, hi = win
    g = np.clip((gray.astype(np.float32) - lo) / (hi - lo), 0, 1)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    if lab2d is not None:
        over = label_rgba(lab2d, alpha)
        rgb = rgb * (1 - over[..., 3:]) + over[..., :3] * over[..., 3:]
    return (rgb * 255 + 0.5).astype(np.uint8)


def _legend_strip(width: int, height: int, edges: tuple[str, str], legend: bool) -> np.ndarray:
    """A small RGB strip, drawn once with matplotlib: the frame's left/right letters and the legend."""
    from PIL import Image

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
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB").resize((width, height)))


def _display_crop(
    geom: DisplayGeometry, plane: str, vol_ras: np.ndarray, radiological: bool, crop: bool
) -> tuple[slice, slice]:
    """Rows and columns of the display slices to keep: the brain's box (plus 4 voxels) or all."""
    rows, cols = display_slice(vol_ras, plane, 0, radiological).shape
    box = brain_box(vol_ras) if crop else None
    if box is None:
        return slice(0, rows), slice(0, cols)
    (ca, ra), (cb, rb) = (geom.display_point(plane, corner, radiological) for corner in box)
    return slice(min(ra, rb), max(ra, rb) + 1), slice(min(ca, cb), max(ca, cb) + 1)


def _write_gif(frames: list, path: Path, key_frame: int | None, fps: float, loop: int) -> None:
    """Write RGB frames (PIL images) as one GIF with one shared palette, atomically."""
    from PIL import Image

    # One shared palette from a sample of frames: per-frame palettes would make the overlay flicker.
    sample = frames[:: max(1, len(frames) // 8)]
    if key_frame is not None:
        sample.append(frames[key_frame])
    mosaic = Image.fromarray(np.concatenate([np.asarray(f) for f in sample], axis=0))
    palette_src = mosaic.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    pal = [f.quantize(palette=palette_src, dither=Image.Dither.NONE) for f in frames]
    with atomic_path(path) as tmp:
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
        affine, spacing, radiological: as in :func:`~brainseg_tf.viz.show_case` (anisotropic
            voxels are resampled nearest-neighbour to square pixels).
        scale: integer upscaling of each frame.
        loop: GIF loop count (0 = forever).
        crop: cut every frame to the brain's bounding box (nonzero voxels) plus 4 voxels.

    Returns:
        The path of the GIF; it has ``len(range(0, n_slices, step))`` frames.

    Raises:
        ValueError: bad shapes, ``step < 1``, ``fps <= 0`` or ``scale < 1``.
    """
    from PIL import Image

    check_int("step", step)
    check_int("scale", scale)
    check_number("fps", fps, 0, min_inclusive=False)
    case = case_view(image, label, channel, affine, spacing)
    geom, vol_ras, lab_ras = case.geom, case.vol_ras, case.label_ras
    plane = geom.plane_name(axis)
    n = geom.ras_shape[PLANE_AXES[plane]]
    ks = list(range(0, n, step))
    rows, cols = _display_crop(geom, plane, vol_ras, radiological, crop)
    height = int(round((rows.stop - rows.start) * geom.aspect(plane))) * scale
    width = (cols.stop - cols.start) * scale
    left, right, _, _ = edge_letters(plane, radiological)
    legend = _legend_strip(width, 22, (left, right), lab_ras is not None)

    frames = []
    for k in ks:
        lab2d = None if lab_ras is None else display_slice(lab_ras, plane, k, radiological)[rows, cols]
        rgb = _composite(display_slice(vol_ras, plane, k, radiological)[rows, cols], case.window, lab2d, alpha)
        frame = Image.fromarray(rgb).resize((width, height), Image.NEAREST)
        bar = np.zeros((4, width, 3), dtype=np.uint8)
        bar[:, : max(1, round(width * (k + 1) / n))] = 200  # position in the stack
        frames.append(Image.fromarray(np.concatenate([np.asarray(frame), bar, legend], axis=0)))
    key_frame = None
    if lab_ras is not None:  # the slice with the most tumour keeps its colours in the palette
        areas = [int(np.count_nonzero(display_slice(lab_ras, plane, k, radiological))) for k in ks]
        key_frame = int(np.argmax(areas))
    path = Path(path)
    _write_gif(frames, path, key_frame, fps, loop)
    return path
