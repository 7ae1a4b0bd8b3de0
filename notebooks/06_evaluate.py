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
# # 06 · Evaluate a trained model
# Segment the validation cases of a run with the sliding window (optional mirror TTA), write the
# masks in the source's label convention and geometry, and score them per region (WT, TC, ET):
# Dice, HD95 (mm), sensitivity, specificity, volumes and BraTS 2023 lesion-wise scores.

# %% tags=["parameters"]
DATA_DIR = None  # the dataset the run was trained on; None uses the synthetic dataset
WORK_DIR = "runs/notebooks"
SYNTHETIC_CASES = 6
SYNTHETIC_SHAPE = (240, 240, 155)
RUN_DIR = None  # a run directory; None uses notebook 04's run
TTA = False
OVERLAP = 0.5
UNCERTAINTY = "auto"  # per-voxel maps beside the labels: "entropy", "variance" (TTA/ensembles), "auto" or None

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

from brainseg_tf import evaluation, inference, training, viz

DATA_DIR = runtime.dataset_or_synthetic(DATA_DIR, WORK_DIR, n_cases=SYNTHETIC_CASES, shape=tuple(SYNTHETIC_SHAPE))
RUN_DIR = Path(RUN_DIR or Path(WORK_DIR) / "runs" / "unet3d_seed")
PRED_DIR = Path(WORK_DIR) / "predictions" / RUN_DIR.name
split = training.load_split(RUN_DIR)
print("validation cases:", split.val_ids)

# %% [markdown]
# ## Predict the validation cases

# %%
records = inference.predict_folder(
    RUN_DIR,
    DATA_DIR,
    PRED_DIR,
    case_ids=split.val_ids,
    tta=TTA,
    overlap=OVERLAP,
    overwrite=True,
    uncertainty=UNCERTAINTY,
)
for r in records:
    print(r["case_id"], r["status"], f"{r['seconds']:.1f} s", f"uncertainty {r.get('uncertainty')}")

# %% [markdown]
# ## Which cases to review first
# Each case's uncertainty score (mean voxel uncertainty over the predicted tumour and its border;
# `docs/postprocessing.md`) ranks likely failures; the map of the most uncertain case is shown.

# %%
import nibabel as nib
import numpy as np

from brainseg_tf import io as bio

scored = sorted((r for r in records if r.get("uncertainty") is not None), key=lambda r: -r["uncertainty"])
for r in scored:
    print(f"{r['case_id']}: {r['uncertainty']:.3f}")
if scored:
    worst = scored[0]["case_id"]
    labels, _, _ = evaluation.load_labels(PRED_DIR / f"{worst}.nii.gz", None)  # convention from the header stamp
    uncertainty = np.asarray(nib.load(PRED_DIR / f"{worst}_uncertainty.nii.gz").dataobj)
    fig = viz.uncertainty_overlay(
        bio.open_dataset(DATA_DIR)[worst].image,
        uncertainty,
        labels,
        title=f"most uncertain validation case {worst}",
        save=Path(WORK_DIR) / "figures" / "06_uncertainty.png",
    )

# %% [markdown]
# ## Score them
# Legacy BraTS empty-mask rules for Dice/HD95 (both empty: 1 and 0; one empty: 0 and 373.13 mm);
# lesion-wise scores as BraTS 2023. See `docs/evaluation.md`.

# %%
result = evaluation.evaluate_folders(PRED_DIR, DATA_DIR, out_csv=PRED_DIR / "metrics.csv", case_ids=split.val_ids)
print(evaluation.format_summary(result))
fig = viz.metric_boxplot(
    PRED_DIR / "metrics.csv", metric="dice", save=Path(WORK_DIR) / "figures" / "06_dice_boxplot.png"
)
