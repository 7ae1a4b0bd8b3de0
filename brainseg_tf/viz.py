"""Figures: multi-modal slice views with label overlays (fixed colours and a legend).

Labels are canonical (0 BG, 1 NCR, 2 ED, 3 ET). Arrays are in NIfTI voxel order ``(X, Y, Z)``;
an axial slice ``[:, :, z]`` is shown with X horizontal and Y vertical, rotated so that anterior
is up for BraTS' LPS-stored volumes. Every function returns the figure and saves it when given
``save=``. No TensorFlow import.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from brainseg_tf.io.labels import CLASS_NAMES, MODALITIES

# NCR red, ED green, ET yellow: the colours most BraTS figures use.
LABEL_COLOURS: dict[int, tuple[float, float, float]] = {1: (0.90, 0.10, 0.10), 2: (0.10, 0.75, 0.20), 3: (1.00, 0.85, 0.00)}
LABEL_NAMES: dict[int, str] = {1: "NCR (necrotic core)", 2: "ED (edema)", 3: "ET (enhancing)"}


def label_cmap() -> ListedColormap:
    """Colour map for canonical labels 0-3 (0 transparent)."""
    return ListedColormap([(0, 0, 0, 0)] + [(*LABEL_COLOURS[k], 1.0) for k in (1, 2, 3)])


def legend_handles() -> list[Patch]:
    return [Patch(facecolor=LABEL_COLOURS[k], label=LABEL_NAMES[k]) for k in (1, 2, 3)]


def _orient(slice2d: np.ndarray) -> np.ndarray:
    """Voxel-order slice ``(X, Y)`` -> display ``(rows, cols)``."""
    return np.rot90(slice2d)


def _window(img: np.ndarray) -> tuple[float, float]:
    vals = img[img != 0]
    if vals.size == 0:
        return float(img.min()), float(img.max()) + 1e-6
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return float(lo), float(hi) if hi > lo else float(lo) + 1e-6


def tumour_centre(label: np.ndarray | None, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Voxel index of the tumour's centre of mass, or the volume centre without tumour."""
    if label is not None and np.any(label > 0):
        return tuple(int(round(c)) for c in np.argwhere(label > 0).mean(axis=0))
    return tuple(s // 2 for s in shape[:3])


def save_figure(fig: plt.Figure, save: str | Path | None, dpi: int = 100) -> None:
    if save is not None:
        save = Path(save)
        save.parent.mkdir(parents=True, exist_ok=True)
        tmp = save.with_name(f".{save.stem}.tmp{save.suffix}")
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        tmp.replace(save)


def show_case(
    image: np.ndarray,
    label: np.ndarray | None = None,
    *,
    z: int | None = None,
    modalities: tuple[str, ...] = MODALITIES,
    alpha: float = 0.45,
    title: str | None = None,
    save: str | Path | None = None,
) -> plt.Figure:
    """One axial slice of every modality, with the label overlaid on each and a legend.

    Args:
        image: ``(X, Y, Z, C)`` with channels named by ``modalities``.
        label: ``(X, Y, Z)`` canonical labels or ``None``.
        z: axial slice (default: through the tumour centre).
    """
    if image.ndim != 4 or image.shape[-1] != len(modalities):
        raise ValueError(f"image shape {image.shape} does not match modalities {modalities}")
    if z is None:
        z = tumour_centre(label, image.shape)[2]
    n = len(modalities) + (label is not None)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.6))
    axes = np.atleast_1d(axes)
    for k, name in enumerate(modalities):
        sl = image[:, :, z, k]
        lo, hi = _window(sl)
        axes[k].imshow(_orient(sl), cmap="gray", vmin=lo, vmax=hi)
        if label is not None:
            axes[k].imshow(_orient(label[:, :, z]), cmap=label_cmap(), vmin=0, vmax=3, alpha=alpha, interpolation="nearest")
        axes[k].set_title(name.upper())
    if label is not None:
        axes[-1].imshow(_orient(label[:, :, z]), cmap=label_cmap(), vmin=0, vmax=3, interpolation="nearest")
        axes[-1].set_facecolor("black")
        axes[-1].set_title("labels")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=legend_handles(), loc="lower center", ncol=3, frameon=False)
    fig.suptitle(title or f"axial slice z={z}")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    save_figure(fig, save)
    return fig


__all__ = ["LABEL_COLOURS", "LABEL_NAMES", "CLASS_NAMES", "label_cmap", "legend_handles", "show_case", "tumour_centre", "save_figure"]
