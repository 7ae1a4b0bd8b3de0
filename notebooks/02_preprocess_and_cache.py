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
# # 02 · Preprocess and cache
# Crop every case to its brain box, z-score each modality inside the brain and store the result
# in an HDF5 cache laid out for fast random patch reads (memory-mapped). Building is resumable; a stale or
# incomplete cache is detected. Training reads patches from the cache.

# %% tags=["parameters"]
DATA_DIR = None  # a BraTS or MSD folder; None uses the synthetic dataset of notebook 01
WORK_DIR = "runs/notebooks"
SYNTHETIC_CASES = 6
SYNTHETIC_SHAPE = (240, 240, 155)
PATCH_SIZE = (128, 128, 128)
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

# %%
from pathlib import Path

from brainseg_tf import data, viz

DATA_DIR = runtime.dataset_or_synthetic(DATA_DIR, WORK_DIR, n_cases=SYNTHETIC_CASES, shape=tuple(SYNTHETIC_SHAPE))
CACHE = Path(WORK_DIR) / "cache.h5"
FIG_DIR = Path(WORK_DIR) / "figures"

# %% [markdown]
# ## Build the cache
# Re-running this cell resumes an interrupted build and skips cases already cached.

# %%
data.build_cache(DATA_DIR, CACHE, max_cases=MAX_CASES)
cache = data.open_cache(CACHE)
print(cache)

# %% [markdown]
# ## A preprocessed case
# The geometry (crop box, native shape, affine) is kept so that predictions can be pasted back.

# %%
case_id = next(iter(cache))
pre = cache.load(case_id)
print(case_id, pre.image.shape, "crop box", pre.geometry.crop, "native shape", pre.geometry.shape)
fig = viz.show_case(pre.image, pre.label, title=f"{case_id} (cropped, z-scored)", save=FIG_DIR / "02_preprocessed.png")

# %% [markdown]
# ## Training patches
# A third of the patches is centred on tumour (the tumour class drawn uniformly among the classes
# present), the rest uniformly in the brain box; augmentation runs as TensorFlow ops.

# %%
patches = data.patch_dataset(CACHE, patch_size=PATCH_SIZE, global_batch_size=2, seed=0)
images, targets = next(iter(patches))
print("images", images.shape, images.dtype, "targets", targets.shape, targets.dtype)
fig = viz.montage(images[0].numpy(), targets[0].numpy().argmax(-1), channel="flair", n=6, save=FIG_DIR / "02_patch.png")
cache.close()
