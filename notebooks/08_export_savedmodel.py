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
# # 08 · Export a SavedModel
# Write a TensorFlow SavedModel with a documented serving signature (input `image`: float32
# `[batch, X, Y, Z, C]`, z-scored channels in the run's modality order; output
# `probabilities`), a `.keras` file and a JSON file with the preprocessing metadata. Then
# reload the SavedModel and check it matches the Keras model.

# %% tags=["parameters"]
WORK_DIR = "runs/notebooks"
RUN_DIR = None  # a run directory; None uses notebook 04's run
EXPORT_DIR = None  # None: WORK_DIR/export/<run name>

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

from brainseg_tf import export

RUN_DIR = Path(RUN_DIR or Path(WORK_DIR) / "runs" / "unet3d_seed")
EXPORT_DIR = Path(EXPORT_DIR or Path(WORK_DIR) / "export" / RUN_DIR.name)
paths = export.export_model(RUN_DIR, EXPORT_DIR, overwrite=True)
for name, path in paths.items():
    print(f"{name:12s} {path}")

# %% [markdown]
# ## Reload and compare
# The reloaded SavedModel needs neither this package nor Keras, only TensorFlow.

# %%
report = export.verify_export(EXPORT_DIR)
print(report)
