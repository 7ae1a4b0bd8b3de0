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
# # 01 · Explore a BraTS dataset
# Read a dataset in any BraTS layout (2018–2023, MSD Task01), check it, and look at the cases:
# modalities, labels (NCR red, ED green, ET yellow) and tumour volumes.

# %% tags=["parameters"]
DATA_DIR = None  # a BraTS or MSD folder; None generates a synthetic BraTS-like dataset
WORK_DIR = "runs/notebooks"
SYNTHETIC_CASES = 6
SYNTHETIC_SHAPE = (240, 240, 155)
CASE_INDEX = 0

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

# %% [markdown]
# ## The dataset
# The layout and label convention are detected; labels are converted to canonical
# 0 BG, 1 NCR, 2 ED, 3 ET and channels ordered flair, t1, t1ce, t2.

# %%
from pathlib import Path

from brainseg_tf import io, viz

DATA_DIR = runtime.dataset_or_synthetic(DATA_DIR, WORK_DIR, n_cases=SYNTHETIC_CASES, shape=tuple(SYNTHETIC_SHAPE))
FIG_DIR = Path(WORK_DIR) / "figures"
print(io.format_summary(io.dataset_summary(DATA_DIR)))

# %% [markdown]
# `validate` reads every case and lists every problem at once (missing modality, corrupt file,
# shapes or affines that disagree, NaNs, label values outside the convention).

# %%
problems = io.validate_dataset(DATA_DIR)
print("\n".join(problems) or "no problems found")

# %% [markdown]
# ## One case

# %%
ds = io.open_dataset(DATA_DIR)
case = ds[CASE_INDEX]
print(case.case_id, case.image.shape, case.image.dtype, "spacing", case.spacing, "source labels:", case.convention)
fig = viz.show_case(case.image, case.label, affine=case.affine, title=case.case_id, save=FIG_DIR / "01_case.png")

# %% [markdown]
# Three planes through the tumour centre, and a montage of axial slices through the tumour.

# %%
fig = viz.three_plane(case.image, case.label, affine=case.affine, save=FIG_DIR / "01_three_plane.png")
fig = viz.montage(case.image, case.label, channel="flair", n=8, affine=case.affine, save=FIG_DIR / "01_montage.png")

# %% [markdown]
# Browse the case: three synchronised planes with sliders and overlay toggles (click a plane to
# move the others), and a 3D view of the tumour regions to rotate. It is one self-contained page
# (no server, no network, no widget extension): it shows here, on Colab and Kaggle, and in the
# exported notebook; `out=` also saves it as an HTML file to open in any browser.

# %%
viz.view(case, out=Path(WORK_DIR) / "01_viewer.html")
