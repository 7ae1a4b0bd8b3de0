"""Figures: sizes of the saved files, colours at known voxels, orientation, crosshairs, GIF frames,
the slider's fallback. A small phantom with the tumour in a known place keeps this quick."""

from __future__ import annotations

import builtins
import csv
import warnings

import matplotlib

matplotlib.use("Agg")  # conftest sets MPLBACKEND too; tests must never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from PIL import Image, ImageSequence  # noqa: E402

from brainseg_tf import viz  # noqa: E402

SHAPE = (48, 56, 40)  # X, Y, Z, deliberately not cubic
CENTRE = (32, 18, 21)  # i > X/2: patient's left (LPS); j < Y/2: anterior
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
ET_VOXEL = (CENTRE[0] + 4, CENTRE[1], CENTRE[2])  # inside the ET shell (radius 3-5)
YELLOW = np.array(viz.LABEL_COLOURS[3])


def _phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Image (X, Y, Z, 4) nonzero everywhere (every slice differs); label: NCR core, ET shell, ED halo."""
    rng = np.random.default_rng(seed)
    image = (100 + 20 * rng.random(SHAPE + (4,))).astype(np.float32)
    grid = np.indices(SHAPE)
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, CENTRE)))
    label = np.zeros(SHAPE, np.uint8)
    label[dist <= 9] = 2
    label[dist <= 5] = 3
    label[dist <= 3] = 1
    image[..., 2][label == 3] += 80  # enhancing on T1ce
    return image, label


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray]:
    return _phantom()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _png_pixel(png: np.ndarray, fig, ax, col: float, row: float, dpi: int) -> np.ndarray:
    """RGB in the saved PNG at data point (col, row) of ``ax`` (saved without a tight bbox)."""
    x, y = ax.transData.transform((col, row))
    scale = dpi / fig.dpi
    return png[int(round(png.shape[0] - y * scale)), int(round(x * scale)), :3]


def _assert_size(path, fig, dpi: int) -> np.ndarray:
    assert path.stat().st_size > 1000
    png = imread(path)
    w, h = fig.get_size_inches() * dpi
    assert png.shape[:2] == (round(h), round(w))
    assert png[..., :3].std() > 0.05  # not a blank canvas
    return png


def test_show_case_colours_orientation_and_size(case, tmp_path):
    image, label = case
    out = tmp_path / "sub" / "show.png"
    fig = viz.show_case(image, label, title="phantom", save=out, dpi=60)
    png = _assert_size(out, fig, 60)
    assert fig.legends and [t.get_text() for t in fig.legends[0].get_texts()][2].startswith("ET")
    label_ax = fig.axes[-1]
    # LPS storage: display column = i, row = j (anterior up, patient's left on the viewer's right).
    assert np.allclose(_png_pixel(png, fig, label_ax, ET_VOXEL[0], ET_VOXEL[1], 60), YELLOW, atol=0.03)
    mirrored = _png_pixel(png, fig, label_ax, SHAPE[0] - 1 - ET_VOXEL[0], ET_VOXEL[1], 60)
    assert not np.allclose(mirrored, YELLOW, atol=0.1)
    # The blended overlay on a modality panel is yellowish: red and green well above blue.
    r, g, b = _png_pixel(png, fig, fig.axes[4 + 1], ET_VOXEL[0], ET_VOXEL[1], 60)  # FLAIR + labels
    assert r > b + 0.3 and g > b + 0.25
    # The tumour sits right of centre and above it on the label panel.
    lab = label_ax.images[0].get_array()
    rows, cols = np.nonzero(np.asarray(lab)[..., 3] > 0)
    assert cols.mean() > lab.shape[1] / 2 and rows.mean() < lab.shape[0] / 2


def test_show_case_rejects_bad_input(case):
    image, label = case
    with pytest.raises(ValueError, match="modalities"):
        viz.show_case(image[..., :3], label)
    with pytest.raises(ValueError, match="canonical"):
        viz.show_case(image, (label * 2).astype(np.uint8))
    with pytest.raises(ValueError, match="z=99"):
        viz.show_case(image, label, z=99)


def test_orientation_follows_the_affine(case):
    """The same anatomy stored LPS and RAS displays identically: flips come from the affine."""
    image, label = case
    ras_image, ras_label = image[::-1, ::-1], label[::-1, ::-1]
    ras_aff = np.eye(4)
    fig_a = viz.three_plane(image, label, affine=LPS, crop=False)
    fig_b = viz.three_plane(ras_image, ras_label, affine=ras_aff, crop=False)
    for ax_a, ax_b in zip(fig_a.axes[:3], fig_b.axes[:3]):
        for im_a, im_b in zip(ax_a.images, ax_b.images):
            np.testing.assert_array_equal(np.asarray(im_a.get_array()), np.asarray(im_b.get_array()))
    # Neurological view mirrors the axial panel left-right.
    fig_n = viz.three_plane(image, label, radiological=False, crop=False)
    np.testing.assert_array_equal(
        np.asarray(fig_n.axes[0].images[0].get_array()), np.asarray(fig_a.axes[0].images[0].get_array())[:, ::-1]
    )


def _crosshair(ax) -> tuple[float, float]:
    lines = [ln for ln in ax.lines if ln.get_gid() == "crosshair"]
    assert len(lines) == 2
    v = next(ln for ln in lines if ln.get_xdata()[0] == ln.get_xdata()[1])
    h = next(ln for ln in lines if ln.get_ydata()[0] == ln.get_ydata()[1])
    return float(v.get_xdata()[0]), float(h.get_ydata()[0])


def test_three_plane_crosshair_at_tumour_centre(case, tmp_path):
    image, label = case
    assert viz.tumour_centre(label, label.shape) == CENTRE
    fig = viz.three_plane(image, label, channel="t1ce", spacing=(1.0, 1.0, 2.0), save=tmp_path / "3p.png", dpi=50)
    _assert_size(tmp_path / "3p.png", fig, 50)
    axial, coronal, sagittal = fig.axes[:3]
    i, j, k = CENTRE
    nz = SHAPE[2]
    assert _crosshair(axial) == (i, j)  # LPS: column i, row j
    assert _crosshair(coronal) == (i, nz - 1 - k)  # superior up
    assert _crosshair(sagittal) == (j, nz - 1 - k)  # anterior left, superior up
    # The panels agree: the crosshair passes through tumour in every plane.
    for ax in (axial, coronal, sagittal):
        col, row = _crosshair(ax)
        assert np.asarray(ax.images[1].get_array())[int(row), int(col), 3] > 0
    assert coronal.get_aspect() == pytest.approx(2.0)  # z spacing 2 mm, x 1 mm
    with pytest.raises(ValueError, match="outside"):
        viz.three_plane(image, label, centre=(0, 0, 99))


def test_montage_slices_within_tumour(case, tmp_path):
    image, label = case
    fig = viz.montage(image, label, channel="flair", n=6, save=tmp_path / "m.png", dpi=50)
    _assert_size(tmp_path / "m.png", fig, 50)
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    ks = [int(t.split("=")[1]) for t in titled]
    assert len(ks) == 6 and ks == sorted(ks)
    assert min(ks) >= CENTRE[2] - 9 and max(ks) <= CENTRE[2] + 9
    sag = viz.montage(image, None, axis=0, slices=[5, 10], title="sagittal")
    assert [ax.get_title() for ax in sag.axes if ax.get_title()] == ["i=5", "i=10"]
    with pytest.raises(ValueError, match="axis"):
        viz.montage(image, label, axis="oblique")


def test_compare_error_map_marks_missed_voxel(case, tmp_path):
    image, label = case
    pred = label.copy()
    pred[ET_VOXEL] = 0  # one missed ET voxel
    out = tmp_path / "cmp.png"
    fig = viz.compare(image, label, pred, z=CENTRE[2], save=out, dpi=60)
    png = _assert_size(out, fig, 60)
    et_ax = fig.axes[4]
    assert et_ax.get_title().startswith("ET errors")
    fn = _png_pixel(png, fig, et_ax, ET_VOXEL[0], ET_VOXEL[1], 60)
    tp = _png_pixel(png, fig, et_ax, ET_VOXEL[0] - 8, ET_VOXEL[1], 60)  # the opposite side of the shell
    assert np.allclose(fn, viz.ERROR_COLOURS["FN"], atol=0.03)
    assert np.allclose(tp, viz.ERROR_COLOURS["TP"], atol=0.03)
    assert len(fig.legends) == 2
    perfect = viz.compare(image, label, label, by="class")
    assert all("case 1.00" in ax.get_title() for ax in perfect.axes[2:])
    with pytest.raises(ValueError, match="pred shape"):
        viz.compare(image, label, label[:-1])


def test_training_curves_pairs_columns(tmp_path):
    log = tmp_path / "log.csv"
    with open(log, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "loss", "val_loss", "dice_wt", "val_dice_wt", "dice_et", "val_dice_et", "lr"])
        for e in range(5):
            w.writerow([e, 1 / (e + 1), 1.2 / (e + 1), 0.1 * e, 0.09 * e, 0.05 * e, 0.04 * e, 1e-3])
    fig = viz.training_curves(log, save=tmp_path / "tc.png", dpi=50)
    _assert_size(tmp_path / "tc.png", fig, 50)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "dice", "learning rate"]
    assert fig.axes[2].get_yscale() == "log"
    poly = [{"epoch": e, "loss": 1.0 / (e + 1), "lr": 1e-3 * (1 - e / 4) ** 0.9} for e in range(5)]  # ends at 0
    lr_ax = viz.training_curves(poly).axes[1]
    assert lr_ax.get_yscale() == "linear" and lr_ax.lines[0].get_ydata()[-1] == 0.0
    dice_ax = fig.axes[1]
    labels = [ln.get_label() for ln in dice_ax.lines if not ln.get_label().startswith("_")]
    assert labels == ["dice_wt", "val_dice_wt", "dice_et", "val_dice_et"]
    val_loss = next(ln for ln in fig.axes[0].lines if ln.get_label() == "val_loss")
    np.testing.assert_allclose(val_loss.get_xdata(), [1, 2, 3, 4, 5])  # 1-based epochs
    rows = [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]
    assert [ax.get_title() for ax in viz.training_curves(rows).axes] == ["loss"]
    with pytest.raises(ValueError, match="iou"):
        viz.training_curves(log, metrics=["iou"])


def test_metric_boxplot_long_and_wide(tmp_path):
    rows = [
        {"case": f"c{c}", "region": r, "dice": v, "hd95": 2.0}
        for c, vals in enumerate([(0.9, 0.8, 0.7), (0.8, 0.6, "nan"), (0.95, 0.85, 0.75)])
        for r, v in zip(("WT", "TC", "ET"), vals)
    ]
    fig = viz.metric_boxplot(rows, "dice", save=tmp_path / "box.png", dpi=50)
    _assert_size(tmp_path / "box.png", fig, 50)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["WT\nn=3", "TC\nn=3", "ET\nn=2"]
    medians = [t.get_text() for t in ax.texts]
    assert medians == ["0.9", "0.8", "0.725"]
    assert ax.get_legend() is not None
    wide = {"case": ["a", "b"], "Dice_WT": [0.9, 0.7], "Dice_ET": [0.5, 0.6]}
    assert [t.get_text() for t in viz.metric_boxplot(wide, "dice").axes[0].get_xticklabels()] == ["WT\nn=2", "ET\nn=2"]
    with pytest.raises(ValueError, match="sensitivity"):
        viz.metric_boxplot(rows, "sensitivity")


def test_surface_3d_meshes_in_world_millimetres(case, tmp_path):
    image, label = case
    spacing = (1.0, 1.0, 2.0)
    fig = viz.surface_3d(label, spacing=spacing, brain=image, step=1, save=tmp_path / "s.png", dpi=50)
    _assert_size(tmp_path / "s.png", fig, 50)
    assert len(fig.axes) == 4  # nested view + WT, TC, ET
    assert len(fig.axes[1].collections) == 1  # the WT panel holds one surface
    meshes = viz.region_meshes(label, spacing=spacing, step=1)
    assert list(meshes) == ["WT", "TC", "ET"]
    # RAS millimetres: x = (X-1-i) sx for LPS storage, y = (Y-1-j) sy, z = k sz.
    expected = np.array([SHAPE[0] - 1 - CENTRE[0], SHAPE[1] - 1 - CENTRE[1], CENTRE[2] * 2.0])
    for name, radius in (("WT", 9), ("ET", 5)):
        verts, faces = meshes[name]
        np.testing.assert_allclose(verts.mean(axis=0), expected, atol=0.5)
        extent = verts.max(axis=0) - verts.min(axis=0)
        np.testing.assert_allclose(extent, 2 * radius * np.array(spacing), atol=2.5)  # mm, not voxels
    assert [t.get_text() for t in fig.legends[0].get_texts()][0].startswith("WT")
    empty = viz.surface_3d(np.zeros(SHAPE, np.uint8), separate=False)
    assert [t.get_text() for t in empty.legends[0].get_texts()] == ["no tumour"]
    with pytest.raises(ValueError, match="regions"):
        viz.surface_3d(label, regions=("XX",))


def test_slices_gif_frames(case, tmp_path):
    image, label = case
    path = viz.slices_gif(image, label, tmp_path / "a.gif", channel="flair", step=3, fps=5)
    assert path.exists() and path.stat().st_size > 1000
    with Image.open(path) as gif:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(gif)]
        assert gif.info["duration"] == 200
    assert len(frames) == len(range(0, SHAPE[2], 3))
    assert frames[0].size[0] == SHAPE[0]  # crop to the (everywhere nonzero) volume: full width
    # The frame through the tumour centre shows yellow ET right of centre and above it.
    k = CENTRE[2] // 3
    rgb = np.asarray(frames[k]).astype(float) / 255
    yellowish = (rgb[..., 0] > 0.6) & (rgb[..., 1] > 0.5) & (rgb[..., 2] < 0.35)
    rows, cols = np.nonzero(yellowish[: SHAPE[1]])
    assert rows.size and cols.mean() > SHAPE[0] / 2 and rows.mean() < SHAPE[1] / 2
    sag = viz.slices_gif(image, None, tmp_path / "s.gif", axis="sagittal", step=8)
    with Image.open(sag) as gif:
        assert gif.n_frames == len(range(0, SHAPE[0], 8))


def test_slice_slider_falls_back_without_widgets(case, monkeypatch, tmp_path):
    image, label = case
    real_import = builtins.__import__

    def no_ipywidgets(name, *args, **kwargs):
        if name == "ipywidgets" or name.startswith("ipywidgets."):
            raise ImportError("no ipywidgets here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ipywidgets)
    with pytest.warns(UserWarning, match="ipywidgets is not installed"):
        fig = viz.slice_slider(image, label, interactive=True, save=tmp_path / "static.png")
    assert isinstance(fig, plt.Figure) and "static" in fig._suptitle.get_text()
    assert (tmp_path / "static.png").stat().st_size > 1000
    monkeypatch.setattr(builtins, "__import__", real_import)
    with pytest.warns(UserWarning, match="not running inside a Jupyter kernel"):
        assert isinstance(viz.slice_slider(image, label), plt.Figure)


def test_slice_slider_widget_redraws(case):
    pytest.importorskip("ipywidgets")
    image, label = case
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the widget path itself warns about nothing
        box = viz.slice_slider(image, label, interactive=True)
    assert box.slider.value == CENTRE[2]
    first = box.image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    box.slider.value = 3
    assert box.image.value != first
    assert box.figure.axes[0].get_title().endswith("k=3")


def test_surface_3d_survives_tiny_regions():
    import matplotlib.pyplot as plt

    from brainseg_tf import viz

    for offset in range(4):  # small blobs at every parity of the coarse marching-cubes grid
        label = np.zeros((24, 24, 20), np.uint8)
        label[6:16, 6:16, 5:14] = 2
        label[8 + offset : 11 + offset, 8:11, 7:10] = 1
        label[9 + offset, 9, 8] = 3
        fig = viz.surface_3d(label, spacing=(1.0, 1.0, 1.0), step=2)
        assert fig is not None
        plt.close(fig)
