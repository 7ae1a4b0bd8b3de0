"""The main job (``make demo``): synthesize, train, predict, evaluate, draw, report.

Everything goes under one folder (default ``runs/demo``)::

    data/            synthetic BraTS 2021-style cases (NIfTI, labels 1/2/4)
    run/             training run directory (config, split, log, best/final model, metrics)
    predictions/     predicted masks of the held-out cases, in the source's geometry and labels
    metrics.csv      per case x region: Dice, HD95, sensitivity, specificity, volumes, lesion-wise
    figures/         PNG figures (data, training curves, Dice per case, box plots, best/worst case, 3D)
    report.md        the report, linking the figures (written by :func:`brainseg_tf.report.demo_report`)

Re-running resumes: the dataset is kept, training resumes from its last completed epoch (or
returns at once when complete), predictions are redone.
"""

from __future__ import annotations

import time
from pathlib import Path

DEMO_RECIPE = "demo_synthetic"
#: Held-out mean Dice the full demo reaches on its synthetic cases (issue bar; see docs/report_example).
TARGETS = {"WT": 0.85, "TC": 0.80, "ET": 0.75}


def default_settings(quick: bool = False) -> dict:
    """The demo's settings: recipe, cases, grid, epochs, steps per epoch, seed (what ``make demo`` runs)."""
    return {
        "recipe": DEMO_RECIPE,
        "cases": 4 if quick else 10,
        "shape": [64, 64, 48] if quick else [96, 96, 72],
        "epochs": 2 if quick else 15,
        "steps_per_epoch": 3 if quick else 40,
        "seed": 0,
        "quick": quick,
    }


def run_demo(
    out: str | Path = "runs/demo",
    *,
    quick: bool = False,
    seed: int = 0,
    n_cases: int | None = None,
    shape: tuple[int, int, int] | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> Path:
    """Run the main job into ``out`` and return the path of its Markdown report.

    Args:
        out: demo folder (created).
        quick: tiny sizes for tests (4 cases of 64x64x48, 2 epochs of 3 steps).
        seed: seed of the synthetic dataset and of training.
        n_cases, shape, epochs, steps_per_epoch: override the defaults (10 cases of 96x96x72,
            15 epochs of 40 steps of the ``demo_synthetic`` recipe).
    """
    from brainseg_tf import evaluation, inference, io, report, synthetic, training

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    timings: dict[str, float] = {}
    settings = default_settings(quick)
    settings.update(
        {
            "cases": n_cases or settings["cases"],
            "shape": list(shape or settings["shape"]),
            "epochs": epochs or settings["epochs"],
            "steps_per_epoch": steps_per_epoch or settings["steps_per_epoch"],
            "seed": seed,
        }
    )
    n_cases, shape = settings["cases"], tuple(settings["shape"])

    t = time.time()
    data_dir = synthetic.ensure_dataset(out / "data", layout="brats2021", n_cases=n_cases, seed=seed, shape=shape)
    print(io.format_summary(io.dataset_summary(data_dir)))
    timings["synthesize"] = time.time() - t

    t = time.time()
    overrides = {"data.root": str(data_dir), "data.synthetic": None, "training.seed": seed}
    # a few minutes of training on 2 CPU cores: 15 x 40 steps of the demo recipe's small U-Net
    overrides.update({"training.epochs": settings["epochs"], "training.steps_per_epoch": settings["steps_per_epoch"]})
    if quick:
        overrides.update({"pipeline.patch_size": [32, 32, 32], "validation.patches_per_case": 1})
        overrides["schedule.warmup_steps"] = 2
    config = training.load_config(training.find_recipe(DEMO_RECIPE), overrides=overrides)
    run_dir = out / "run"
    training.train(config, run_dir=run_dir)
    timings["train"] = time.time() - t

    t = time.time()
    split = training.load_split(run_dir)
    pred_dir = out / "predictions"
    records = inference.predict_folder(
        run_dir, data_dir, pred_dir, case_ids=split.val_ids, overwrite=True, progress=True
    )
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"prediction failed for {[(r['case_id'], r['error']) for r in failed]}")
    timings["predict"] = time.time() - t

    t = time.time()
    result = evaluation.evaluate_folders(
        pred_dir, data_dir, out_csv=out / report.METRICS_FILE, case_ids=split.val_ids, progress=False
    )
    print(evaluation.format_summary(result))
    timings["evaluate"] = time.time() - t
    path = report.demo_report(
        out,
        data_dir=data_dir,
        run_dir=run_dir,
        pred_dir=pred_dir,
        result=result,
        timings=timings,
        settings=settings,
        targets=TARGETS,
    )
    summary = result.summary()
    means = {r: summary[r]["dice"]["mean"] for r in TARGETS}
    print(f"brainseg demo: {report.demo_summary(means, time.time() - started, TARGETS)}")
    return path
