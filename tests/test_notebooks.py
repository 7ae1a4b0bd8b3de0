"""Notebooks: committed without outputs, identical to their paired .py, and executed headless.

The notebooks run in order with small parameters and a shared work folder, so 06-08 use the run
that 04 trained (as a user would).
"""

from __future__ import annotations

import base64
import io
import os
import re
import struct
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
SMALL = {"SYNTHETIC_CASES": 6, "SYNTHETIC_SHAPE": [64, 64, 48]}
PARAMETERS = {
    "01_explore_data": {},
    "02_preprocess_and_cache": {"PATCH_SIZE": [48, 48, 32]},
    # The seed recipes' batches (100 slices of 128x128; 3 patches of 160x160x16) take minutes per
    # step on 2 cores: the suite shrinks batch and validation, not the models.
    "03_train_unet2d": {"EPOCHS": 1, "STEPS_PER_EPOCH": 2, "BATCH_SIZE": 8, "VALIDATION_PATCHES": 8},
    "04_train_unet3d": {
        "EPOCHS": 2,
        "STEPS_PER_EPOCH": 1,
        "PATCH_SIZE": [32, 32, 16],
        "BATCH_SIZE": 2,
        "VALIDATION_PATCHES": 1,
    },
    "05_train_dresunet": {"EPOCHS": 1, "STEPS_PER_EPOCH": 1, "PATCH_SIZE": [32, 32, 32], "BATCH_SIZE": 1},
    "06_evaluate": {},
    "07_visualize": {},
    "08_export_savedmodel": {},
    "09_survival": {"SYNTHETIC_CASES": 20, "MAX_PREDICTED": 3},
}
EXPECTED_FIGURES = {
    "01_explore_data": ["01_case.png", "01_three_plane.png", "01_montage.png"],
    "02_preprocess_and_cache": ["02_preprocessed.png", "02_patch.png"],
    "03_train_unet2d": ["unet2d_seed_curves.png"],
    "04_train_unet3d": ["unet3d_seed_curves.png"],
    "05_train_dresunet": ["dresunet_seed_curves.png"],
    "06_evaluate": ["06_dice_boxplot.png", "06_uncertainty.png"],
    "07_visualize": ["07_case.png", "07_three_plane.png", "07_compare.png", "07_surface.png", "07_curves.png"],
    "08_export_savedmodel": [],
    "09_survival": ["09_survival_vs_age.png", "09_survival_vs_volume.png", "09_kaplan_meier.png"],
}


def png_size(path: Path) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_every_notebook_has_parameters_and_a_paired_py():
    assert [p.stem for p in NOTEBOOKS] == list(PARAMETERS), "notebooks and the test's table disagree"
    import jupytext

    for ipynb in NOTEBOOKS:
        nb = jupytext.read(ipynb)
        py = ipynb.with_suffix(".py")
        assert py.exists(), f"{ipynb.name} has no paired .py"
        paired = jupytext.read(py)
        assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in paired.cells], (
            f"{ipynb.name} differs from {py.name}; run `make notebooks` (jupytext --sync)"
        )
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), f"{ipynb.name}: no parameters cell"


def test_committed_notebooks_have_no_outputs():
    import nbformat

    for ipynb in NOTEBOOKS:
        nb = nbformat.read(ipynb, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{ipynb.name} holds outputs"


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


# What Colab/Kaggle users run first; `make test` also executes these under their pinned versions.
COMPAT = ("01_explore_data", "04_train_unet3d", "06_evaluate", "08_export_savedmodel")


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.compat) if n in COMPAT else n for n in PARAMETERS])
def test_notebook_executes(name, work_dir):
    import papermill

    if (
        name in ("06_evaluate", "07_visualize", "08_export_savedmodel")
        and not (work_dir / "runs" / "unet3d_seed" / "best.keras").exists()
    ):
        pytest.fail("04_train_unet3d did not leave a run for the later notebooks")
    params = {"WORK_DIR": str(work_dir), **SMALL, **PARAMETERS[name]}
    if name == "08_export_savedmodel":
        params = {k: v for k, v in params.items() if not k.startswith("SYNTHETIC")}
    env_before = dict(os.environ)
    os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as on Colab: the notebook itself keeps the log quiet
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend, so figures appear as cell outputs
    try:
        papermill.execute_notebook(
            str(NB_DIR / f"{name}.ipynb"),
            str(work_dir / f"{name}.out.ipynb"),
            parameters=params,
            cwd=str(NB_DIR),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            execution_timeout=420,
        )
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    import nbformat

    executed = nbformat.read(work_dir / f"{name}.out.ipynb", as_version=4)
    shown = sum("image/png" in out.get("data", {}) for cell in executed.cells for out in cell.get("outputs", []))
    assert shown >= len(EXPECTED_FIGURES[name]), f"{name}: {shown} inline figures"
    for fig in EXPECTED_FIGURES[name]:
        path = work_dir / "figures" / fig
        assert path.exists() and path.stat().st_size > 5_000, f"{name} did not save {fig}"
        width, height = png_size(path)
        assert 300 <= width <= 4000 and 150 <= height <= 4000, f"{fig}: unexpected size {width}x{height}"


# TensorFlow's C++ start-up lines (absl, oneDNN, CPU features, CUDA factories, glog-style prefixes).
TF_STARTUP = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|TensorFlow binary is optimized"
    r"|Unable to register cu(DNN|FFT|BLAS)|^[IWEF]\d{4} \d\d:\d\d:\d\d",
    re.M,
)
WIDGET = "application/vnd.jupyter.widget-view+json"


def _check_outputs(name: str, nb) -> int:
    """Every output of an executed notebook as a reader sees it; returns the number of images."""
    import matplotlib.image

    images = 0
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            where = f"{name}, cell {i}"
            assert out.output_type != "error", f"{where}: {out.get('ename')}: {out.get('evalue')}"
            text = out.get("text", "") if out.output_type == "stream" else ""
            assert "Traceback" not in text, f"{where} prints a traceback: {text[-500:]}"
            assert not TF_STARTUP.search(text), f"{where} shows TensorFlow's start-up log: {text[:300]}"
            data = out.get("data", {})
            if "image/png" in data:
                pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(data["image/png"])))
                assert min(pixels.shape[:2]) >= 50 and pixels[..., :3].std() > 0.01, f"{where}: a blank figure"
                images += 1
            if WIDGET in data:  # where widgets are not live, only a static view shows
                assert "image/png" in data or "text/html" in data, f"{where}: a widget with no static view"
    return images


@pytest.mark.slow
@pytest.mark.compat
def test_executed_notebooks_read_well_as_pages(work_dir, browser, tmp_path):
    """Each executed notebook exported to HTML and opened in headless Chromium: figures drawn, no
    tracebacks or start-up log, every interactive output visible without live widgets."""
    import nbformat
    from nbconvert import HTMLExporter

    # the notebooks this session executed (all of them; the compat subset under the Colab pins)
    executed = {
        name: work_dir / f"{name}.out.ipynb" for name in PARAMETERS if (work_dir / f"{name}.out.ipynb").exists()
    }
    if "01_explore_data" not in executed:
        pytest.fail("run test_notebook_executes first (same module): no executed notebook found")
    exporter = HTMLExporter()
    for name, path in executed.items():
        nb = nbformat.read(path, as_version=4)
        images = _check_outputs(name, nb)
        page = tmp_path / f"{name}.html"
        page.write_text(exporter.from_notebook_node(nb)[0], encoding="utf-8")
        dom = browser.dom(page, budget_ms=5_000)
        drawn = len(re.findall(r"<img[^>]+src=\"data:image/png", dom))
        assert drawn >= images, f"{name}: {drawn} of {images} figures in the page"
        assert "Traceback" not in dom and not TF_STARTUP.search(dom), f"{name}: the page shows an error or log"
        if name == "01_explore_data":
            assert dom.count("<iframe") >= 1, "01: the viewer is not in the page"
            shot = browser.screenshot(page, tmp_path / f"{name}.png", size=(1200, 2400), budget_ms=10_000)
            assert shot[..., :3].std() > 0.05, "01: the page renders blank"
