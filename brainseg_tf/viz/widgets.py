"""An interactive slice viewer for Jupyter (ipywidgets), with a static montage where it cannot run."""

from __future__ import annotations

import io as _io
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from brainseg_tf.conventions import MODALITIES
from brainseg_tf.viz.colors import legend_handles
from brainseg_tf.viz.figures import DEFAULT_DPI, save_figure
from brainseg_tf.viz.geometry import PLANES, DisplayGeometry
from brainseg_tf.viz.panels import as_volume, brain_box, channel_name, check_label, draw_slice, tumour_centre, window
from brainseg_tf.viz.slices import montage

__all__ = ["slice_slider"]


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _widgets_module(interactive: bool | None) -> tuple[ModuleType | None, str | None]:
    """``(ipywidgets, None)`` when widgets can be built, else ``(None, why not)``."""
    if interactive is False:
        return None, "interactive=False"
    if interactive is None and not _in_kernel():
        return None, "not running inside a Jupyter kernel"
    try:
        import ipywidgets
    except ImportError:
        return None, "ipywidgets is not installed (pip install ipywidgets)"
    return ipywidgets, None


def _viewer(
    widgets: ModuleType,
    image: np.ndarray,
    label: np.ndarray | None,
    channel: int | str,
    axis: int | str,
    geom: DisplayGeometry,
    alpha: float,
    radiological: bool,
    dpi: int,
) -> Any:
    """The widget box: channel, plane and opacity controls, a slice slider and the rendered PNG."""
    img_ras = geom.to_ras(image)
    lab_ras = None if label is None else geom.to_ras(label)
    chans = list(MODALITIES[: image.shape[-1]]) if image.ndim == 4 else ["image"]
    windows = [window(image[..., c]) for c in range(image.shape[-1])] if image.ndim == 4 else [window(image)]
    plane0 = geom.plane_name(axis)
    centre = tumour_centre(label, geom.shape)
    zoom = brain_box(np.any(img_ras != 0, axis=-1) if image.ndim == 4 else img_ras)

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
        draw_slice(ax, geom, plane, geom.ras_slice_index(plane, k_vox), vol, windows[c], lab_ras, a, radiological, zoom)
        ax.set_title(f"{chan.upper()} {plane} {'ijk'[geom.voxel_axis(plane)]}={k_vox}", fontsize=10)
        buf = _io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        view.value = buf.getvalue()

    v0 = geom.voxel_axis(plane0)
    slider = widgets.IntSlider(
        value=centre[v0],
        min=0,
        max=geom.shape[v0] - 1,
        description="slice",
        continuous_update=True,
        layout=widgets.Layout(width="95%"),
    )
    chan_w = widgets.Dropdown(
        options=chans, value=channel_name(channel) if image.ndim == 4 else "image", description="channel"
    )
    plane_w = widgets.Dropdown(options=list(PLANES), value=plane0, description="plane")
    alpha_w = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="overlay")

    def on_plane(change: dict) -> None:
        vax = geom.voxel_axis(change["new"])
        slider.max = geom.shape[vax] - 1
        slider.value = centre[vax]
        render(slider.value, chan_w.value, change["new"], alpha_w.value)

    def on_other(_change: dict) -> None:
        render(slider.value, chan_w.value, plane_w.value, alpha_w.value)

    plane_w.observe(on_plane, names="value")
    for w in (slider, chan_w, alpha_w):
        w.observe(on_other, names="value")
    render(slider.value, chan_w.value, plane_w.value, alpha_w.value)
    box = widgets.VBox([widgets.HBox([chan_w, plane_w, alpha_w]), slider, view])
    box.figure, box.slider, box.image = fig, slider, view
    return box


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
    dpi: int = DEFAULT_DPI,
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
        affine, spacing, alpha, radiological: as in :func:`~brainseg_tf.viz.show_case`.
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
    widgets, reason = _widgets_module(interactive)
    if widgets is None:
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
    vol0 = as_volume(image, channel)
    label = check_label(label, vol0.shape)
    geom = DisplayGeometry.make(vol0.shape, affine, spacing)
    box = _viewer(widgets, image, label, channel, axis, geom, alpha, radiological, dpi)
    save_figure(box.figure, save, dpi)
    return box
