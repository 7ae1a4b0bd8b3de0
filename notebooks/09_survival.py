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
# # 09 · Overall survival from predicted masks
# The second BraTS 2017-2020 task: predict each patient's overall survival in days from the scans,
# age and resection status. Scored on 3-class accuracy, short (< 300 days, < 10 months), mid
# (300-450 days) and long (> 450 days, > 15 months), with MSE, median squared error and Spearman's
# ρ beside it, on gross-total-resection (GTR) patients where the status is known.
#
# Here: segment every case with a trained run (what `brainseg predict` does; a new patient has no
# ground truth), compute tumour features from the masks, and compare cross-validated models with
# the majority-class and age-only baselines. See `docs/survival.md` for the definitions and the
# figures on the shared real table.

# %% tags=["parameters"]
DATA_DIR = None  # a BraTS 2018-2020 training folder with its survival table; None: synthetic cases
CLINICAL = None  # the survival table; None: survival_info.csv or survival_data.csv in DATA_DIR
WORK_DIR = "runs/notebooks"
SYNTHETIC_CASES = 60
SYNTHETIC_SHAPE = (96, 96, 64)
RUN_DIR = None  # segmentation run for the masks; None: notebook 04's run, or ground truth without one
MAX_PREDICTED = None  # segment only the first N cases (the rest keep ground-truth masks); None: all
FOLDS = 5
SEED = 0

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

import matplotlib.pyplot as plt
import numpy as np

from brainseg_tf import inference, io, survival, viz

DATA_DIR = Path(runtime.dataset_or_synthetic(DATA_DIR, WORK_DIR, n_cases=SYNTHETIC_CASES, shape=tuple(SYNTHETIC_SHAPE)))
CLINICAL = (
    Path(CLINICAL)
    if CLINICAL
    else next(p for p in (DATA_DIR / "survival_info.csv", DATA_DIR / "survival_data.csv") if p.exists())
)
RUN_DIR = Path(RUN_DIR or Path(WORK_DIR) / "runs" / "unet3d_seed")
OUT = Path(WORK_DIR) / "survival"
FIG_DIR = Path(WORK_DIR) / "figures"
table = survival.read_clinical(CLINICAL)
print(f"{CLINICAL}: {len(table)} patients, {table.format} format, resection recorded: {table.has_resection}")

# %% [markdown]
# ## Masks
# The cases segmented by the run, written as `<case_id>.nii.gz` in the source's convention, as
# `brainseg predict --model RUN_DIR --input DATA_DIR --out MASKS` does. Without a run (or beyond
# `MAX_PREDICTED` cases, which keeps CPU runs short) the ground truth stands in: say so when
# reporting.

# %%
PREDICTED = RUN_DIR.exists()
MASKS = OUT / f"masks_{RUN_DIR.name}"
if PREDICTED:
    ids = io.open_dataset(DATA_DIR).case_ids[:MAX_PREDICTED]
    records = inference.predict_folder(RUN_DIR, DATA_DIR, MASKS, case_ids=ids, overwrite=True, progress=False)
    print(f"{sum(r['status'] == 'written' for r in records)} masks predicted by {RUN_DIR}")
else:
    print(f"no run at {RUN_DIR}: features from the ground-truth masks")

# %% [markdown]
# ## Features
# Volumes (ml) of NCR, ED, ET, TC and WT, their ratios and brain fractions, connected components,
# extent, surface area and sphericity of WT and TC, and the world centroid; the scans give the
# brain mask. `brainseg survival features --labels MASKS --images DATA_DIR --clinical TABLE`.

# %%
truth_rows = survival.feature_rows(DATA_DIR, clinical=table)
by_case = {r["case_id"]: r for r in truth_rows}
if PREDICTED:
    predicted_rows = survival.feature_rows(MASKS, images=DATA_DIR, clinical=table)
    by_case |= {r["case_id"]: r for r in predicted_rows if r["case_id"] in ids}
    print(f"features of {len(ids)} case(s) from predicted masks, {len(by_case) - len(ids)} from ground truth")
rows = list(by_case.values())
survival.write_features(rows, OUT / "features.csv")
data = survival.training_set(table, features=rows)
print(
    f"{len(data)} patients with age and survival;",
    ", ".join(f"{len(v)} {k}" for k, v in data.excluded.items()) or "none left out",
)

# %% [markdown]
# ## Cross-validated scores beside the baselines
# `FOLDS`-fold CV with a fixed seed (stratified by class where every class has enough patients);
# pooled out-of-fold predictions. With a few dozen patients the 95 % intervals are wide: read
# differences between models against them. A run trained for a few steps (as in the test suite)
# segments poorly; the ground-truth rows show what that costs.

# %%
results = {m: survival.cross_validate(data, m, folds=FOLDS, seed=SEED) for m in survival.METHODS}
print(f"{'model':9s} {'accuracy [95% Wilson]':24s} {'MSE days^2':>12s} {'Spearman':>9s}")
for method, cv in results.items():
    s = cv["scores"]
    print(
        f"{method:9s} {s['accuracy']:.3f} [{s['accuracy_ci'][0]:.2f}, {s['accuracy_ci'][1]:.2f}]"
        f"{s['mse']:>19.0f} {s['spearman']:9.2f}"
    )
if PREDICTED:  # how much segmentation errors cost, against features from the ground truth
    truth = survival.training_set(table, features=truth_rows)
    for method in ("ridge", "forest"):
        s = survival.cross_validate(truth, method, folds=FOLDS, seed=SEED)["scores"]
        print(f"{method:9s} on ground-truth features: accuracy {s['accuracy']:.3f}, Spearman {s['spearman']:.2f}")

# %% [markdown]
# ## Fit, predict, evaluate
# The final model on every patient, saved as JSON, then `brainseg survival predict` and
# `evaluate`. These scores are in-sample (the model has seen these patients): the CV table above
# is the honest estimate.

# %%
model = survival.fit_training_set(data, "ridge", seed=SEED)
model.save(OUT / "model.json")
predicted = survival.predict_table(survival.load(OUT / "model.json"), OUT / "features.csv", clinical=table)
survival.write_predictions([c for c, _ in predicted], [d for _, d in predicted], OUT / "predictions.csv")
print(survival.format_scores(survival.evaluate_predictions(OUT / "predictions.csv", table), title="in-sample, "))

# %% [markdown]
# ## Survival against age and tumour volume
# Age is the strongest single predictor in BraTS; the dashed lines are the class thresholds.

# %%
colours = np.array(["tab:red", "tab:orange", "tab:green"])
cls = survival.survival_class(data.days)
age_model = survival.fit_training_set(data, "age")
ages = np.linspace(data.columns["age"].min(), data.columns["age"].max(), 50)
fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
ax.scatter(data.columns["age"], data.days, c=colours[cls], s=18)
ax.plot(ages, age_model.predict_rows({"age": a} for a in ages), "k-", label="age-only linear fit")
for threshold in survival.CLASS_THRESHOLDS_DAYS:
    ax.axhline(threshold, color="grey", ls="--", lw=0.8)
ax.set(xlabel="age (years)", ylabel="overall survival (days)", title="Survival vs age")
ax.legend(loc="upper right")
viz.save_figure(fig, FIG_DIR / "09_survival_vs_age.png", tight=True)

# %%
fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8), dpi=100, sharey=True)
for ax, region in zip(axes, ("wt", "tc")):
    ax.scatter(data.columns[f"{region}_ml"], data.days, c=colours[cls], s=18)
    for threshold in survival.CLASS_THRESHOLDS_DAYS:
        ax.axhline(threshold, color="grey", ls="--", lw=0.8)
    ax.set(xlabel=f"{region.upper()} volume (ml, {'predicted' if PREDICTED else 'ground truth'})")
axes[0].set_ylabel("overall survival (days)")
fig.suptitle("Survival vs tumour volume (colour: true class short / mid / long)")
viz.save_figure(fig, FIG_DIR / "09_survival_vs_volume.png", tight=True)

# %% [markdown]
# ## Kaplan–Meier curves per predicted class
# Patients grouped by the class of their out-of-fold ridge prediction; censored patients
# (`ALIVE (N days later)`) join with the final model's prediction and count as alive at N days.
# Curves that separate mean the predicted classes carry survival information.

# %%
records = table.by_id()
alive = [
    r
    for r in rows
    if r.get("clinical_id") in records
    and records[r["clinical_id"]].censored
    and np.isfinite(records[r["clinical_id"]].alive_days)
]
alive_pred = np.array([d for _, d in survival.predict_table(model, alive)])
times = np.concatenate([data.days, [records[r["clinical_id"]].alive_days for r in alive]])
observed = np.concatenate([np.ones(len(data), bool), np.zeros(len(alive), bool)])
group = np.concatenate(
    [
        survival.survival_class(results["ridge"]["predictions"]),
        survival.survival_class(alive_pred) if len(alive) else np.zeros(0, int),
    ]
)
fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
for k, name in enumerate(survival.SURVIVAL_CLASSES):
    if np.any(group == k):
        t, s = survival.kaplan_meier(times[group == k], observed[group == k])
        ax.step(t, s, where="post", color=colours[k], label=f"predicted {name} (n={int(np.sum(group == k))})")
ax.set(xlabel="days", ylabel="fraction alive", ylim=(0, 1.02), title="Kaplan–Meier by predicted class")
ax.legend(loc="upper right")
viz.save_figure(fig, FIG_DIR / "09_kaplan_meier.png", tight=True)
