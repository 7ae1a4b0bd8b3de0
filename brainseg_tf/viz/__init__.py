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

Modules: :mod:`~brainseg_tf.viz.colors` (label, region and error colours, legends),
:mod:`~brainseg_tf.viz.geometry` (voxel order to display orientation),
:mod:`~brainseg_tf.viz.panels` (one drawn slice and its inputs), :mod:`~brainseg_tf.viz.slices`
(case figures), :mod:`~brainseg_tf.viz.charts` (training curves, metric plots),
:mod:`~brainseg_tf.viz.surfaces` (3D), :mod:`~brainseg_tf.viz.animation` (GIFs),
:mod:`~brainseg_tf.viz.widgets` (the Jupyter slider), :mod:`~brainseg_tf.viz.figures` (saving),
:mod:`~brainseg_tf.viz.view` (the interactive HTML viewer: three planes and 3D, offline).
"""

from __future__ import annotations

from brainseg_tf.conventions import CLASS_NAMES
from brainseg_tf.viz.animation import slices_gif
from brainseg_tf.viz.charts import metric_boxplot, metric_per_case, training_curves
from brainseg_tf.viz.colors import (
    ERROR_COLOURS,
    ERROR_NAMES,
    LABEL_COLOURS,
    LABEL_NAMES,
    REGION_COLOURS,
    REGION_NAMES,
    REGION_OPACITY,
    error_legend_handles,
    label_cmap,
    label_rgba,
    legend_handles,
    region_legend_handles,
)
from brainseg_tf.viz.figures import save_figure
from brainseg_tf.viz.geometry import PLANES, DisplayGeometry
from brainseg_tf.viz.panels import tumour_centre
from brainseg_tf.viz.slices import compare, montage, show_case, three_plane, uncertainty_overlay
from brainseg_tf.viz.surfaces import region_meshes, surface_3d
from brainseg_tf.viz.view import Viewer, view, view_html
from brainseg_tf.viz.widgets import slice_slider

__all__ = [
    "LABEL_COLOURS",
    "LABEL_NAMES",
    "REGION_COLOURS",
    "REGION_NAMES",
    "REGION_OPACITY",
    "ERROR_COLOURS",
    "ERROR_NAMES",
    "CLASS_NAMES",
    "PLANES",
    "DisplayGeometry",
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
    "Viewer",
    "view",
    "view_html",
]
