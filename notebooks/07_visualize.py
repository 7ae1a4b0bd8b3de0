# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Visualize cases and predictions
# Label overlays (NCR red, ED green, ET yellow), three planes through the tumour, a prediction
# against its ground truth with error maps, 3D surfaces of WT/TC/ET, a GIF through the slices and
# training curves.

# %% tags=["parameters"]
DATA_DIR = None  # a dataset folder; None uses the synthetic dataset
WORK_DIR = "runs/notebooks"
SYNTHETIC_CASES = 6
SYNTHETIC_SHAPE = (240, 240, 155)
RUN_DIR = None  # a run directory; None uses notebook 04's run
CASE_ID = None  # None: the first validation case of the run

# %% [markdown]
# ## Setup
# Works locally, on Colab and on Kaggle: installs `brainseg_tf` when it is missing (from the
# checkout this notebook sits in, or from `BRAINSEG_SOURCE`, e.g. a git URL) without replacing a
# preinstalled TensorFlow, then detects a GPU and turns on mixed precision there.

# %%
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("brainseg_tf") is None:
    source = os.environ.get("BRAINSEG_SOURCE", "..")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source])

from brainseg_tf import runtime

ENV = runtime.setup()

# %%
from pathlib import Path

from brainseg_tf import inference, io, training, viz

DATA_DIR = runtime.dataset_or_synthetic(DATA_DIR, WORK_DIR, n_cases=SYNTHETIC_CASES, shape=tuple(SYNTHETIC_SHAPE))
RUN_DIR = Path(RUN_DIR or Path(WORK_DIR) / "runs" / "unet3d_seed")
FIG_DIR = Path(WORK_DIR) / "figures"
CASE_ID = CASE_ID or training.load_split(RUN_DIR).val_ids[0]
case = io.open_dataset(DATA_DIR)[CASE_ID]

# %% [markdown]
# ## The case

# %%
fig = viz.show_case(case.image, case.label, affine=case.affine, title=CASE_ID, save=FIG_DIR / "07_case.png")
fig = viz.three_plane(case.image, case.label, affine=case.affine, save=FIG_DIR / "07_three_plane.png")

# %% [markdown]
# ## Prediction against ground truth
# Error maps per region: true positives, false positives and false negatives.

# %%
prediction = inference.predict_case(RUN_DIR, case)
fig = viz.compare(case.image, case.label, prediction.labels, affine=case.affine, save=FIG_DIR / "07_compare.png")

# %% [markdown]
# ## 3D surfaces and a slice animation

# %%
fig = viz.surface_3d(case.label, spacing=case.spacing, affine=case.affine, save=FIG_DIR / "07_surface.png")
gif = viz.slices_gif(case.image, case.label, FIG_DIR / "07_slices.gif", channel="flair", affine=case.affine)
print(gif)

# %% [markdown]
# ## Training curves of the run

# %%
fig = viz.training_curves(RUN_DIR / "log.csv", save=FIG_DIR / "07_curves.png")
