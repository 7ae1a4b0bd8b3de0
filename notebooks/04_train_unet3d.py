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
# # 04 · Train a 3D U-Net
# The 3D U-Net of the MSD/Coursera lineage (seed 003): 160×160×16 patches of the 4 modalities, three sigmoid region outputs (WT, TC, ET).

# %% tags=["parameters"]
DATA_DIR = None  # a BraTS or MSD folder; None uses a synthetic dataset
WORK_DIR = "runs/notebooks"
SYNTHETIC_CASES = 6
SYNTHETIC_SHAPE = (240, 240, 155)

EPOCHS = None  # None keeps the recipe's value
STEPS_PER_EPOCH = None
PATCH_SIZE = None  # None keeps the recipe's value
BATCH_SIZE = None
VALIDATION_PATCHES = None  # patches (or slices) per validation case
MAX_CASES = None

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
# ## The recipe
# Recipes are JSON files in `configs/` (`training.find_recipe` finds them by name); parameters above override a few keys. Every key is
# validated, and the resolved recipe is saved in the run directory.

# %%
from pathlib import Path

from brainseg_tf import training, viz

DATA_DIR = runtime.dataset_or_synthetic(DATA_DIR, WORK_DIR, n_cases=SYNTHETIC_CASES, shape=tuple(SYNTHETIC_SHAPE))
RECIPE = training.find_recipe("unet3d_seed")
RUN_DIR = Path(WORK_DIR) / "runs" / RECIPE.stem
overrides = {
    "data.root": DATA_DIR,
    "data.cache": None,
    "data.max_cases": MAX_CASES,
    "training.epochs": EPOCHS,
    "training.steps_per_epoch": STEPS_PER_EPOCH,
    "pipeline.patch_size": PATCH_SIZE,
    "pipeline.batch_size": BATCH_SIZE,
    "validation.patches_per_case": VALIDATION_PATCHES,
}
config = training.load_config(
    RECIPE, overrides={k: v for k, v in overrides.items() if v is not None or k == "data.cache"}
)
print(
    config.model.name, config.model.options, "| patch", config.pipeline.patch_size, "| epochs", config.training.epochs
)

# %% [markdown]
# ## Train
# Re-running this cell after an interruption (a Colab/Kaggle time limit) resumes exactly where the
# last backup left off: an epoch end, or every `training.checkpoint_every_steps` steps within one.

# %%
result = training.train(config, run_dir=RUN_DIR)
print(result.run_dir, result.metrics.get("best"))

# %% [markdown]
# ## Training curves

# %%
fig = viz.training_curves(RUN_DIR / "log.csv", save=Path(WORK_DIR) / "figures" / f"{RECIPE.stem}_curves.png")
