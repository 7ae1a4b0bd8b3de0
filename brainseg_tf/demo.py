"""The main job (``make demo``): synthesize, train, predict, evaluate, draw, report.

Everything goes under one folder (default ``runs/demo``)::

    data/            synthetic BraTS 2021-style cases (NIfTI, labels 1/2/4)
    run/             training run directory (config, split, log, best/final model, metrics)
    predictions/     predicted masks of the held-out cases, in the source's geometry and labels
    metrics.csv      per case x region: Dice, HD95, sensitivity, specificity, volumes, lesion-wise
    figures/         PNG figures (data, training curves, prediction vs truth, box plots, 3D)
    report.md        the report, linking the figures

Re-running resumes: the dataset is kept, training resumes from its last completed epoch (or
returns at once when complete), predictions are redone.
"""

from __future__ import annotations

import time
from pathlib import Path

DEMO_RECIPE = "demo_synthetic"


def _markdown_table(summary: dict, metrics: tuple[str, ...] = ("dice", "hd95", "sensitivity", "lesion_dice")) -> list[str]:
    lines = ["| region | " + " | ".join(f"{m} (mean ± sd)" for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for region, stats in summary.items():
        cells = [f"{stats[m]['mean']:.3f} ± {stats[m]['std']:.3f}" if m in stats else "–" for m in metrics]
        lines.append(f"| {region} | " + " | ".join(cells) + " |")
    return lines


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
    from brainseg_tf import evaluation, inference, io, synthetic, training, viz

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    timings: dict[str, float] = {}
    n_cases = n_cases or (4 if quick else 10)
    shape = tuple(shape or ((64, 64, 48) if quick else (96, 96, 72)))

    t = time.time()
    data_dir = synthetic.ensure_dataset(out / "data", layout="brats2021", n_cases=n_cases, seed=seed, shape=shape)
    summary_text = io.format_summary(io.dataset_summary(data_dir))
    print(summary_text)
    ds = io.open_dataset(data_dir)
    first = ds[0]
    viz.show_case(first.image, first.label, affine=first.affine, title=f"{first.case_id} (synthetic)",
                  save=fig_dir / "data_case.png")
    timings["synthesize"] = time.time() - t

    t = time.time()
    overrides = {"data.root": str(data_dir), "data.synthetic": None, "training.seed": seed}
    if quick:
        overrides.update({"training.epochs": 2, "training.steps_per_epoch": 3, "pipeline.patch_size": [32, 32, 32],
                          "validation.patches_per_case": 1, "schedule.warmup_steps": 2})
    else:  # a few minutes of training on 2 CPU cores: 15 x 40 steps of the demo recipe's small U-Net
        overrides.update({"training.epochs": 15, "training.steps_per_epoch": 40})
    if epochs is not None:
        overrides["training.epochs"] = epochs
    if steps_per_epoch is not None:
        overrides["training.steps_per_epoch"] = steps_per_epoch
    config = training.load_config(training.find_recipe(DEMO_RECIPE), overrides=overrides)
    run_dir = out / "run"
    result = training.train(config, run_dir=run_dir)
    timings["train"] = time.time() - t
    viz.training_curves(run_dir / "log.csv", save=fig_dir / "training_curves.png")

    t = time.time()
    split = training.load_split(run_dir)
    pred_dir = out / "predictions"
    records = inference.predict_folder(run_dir, data_dir, pred_dir, case_ids=split.val_ids, overwrite=True,
                                       progress=True)
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"prediction failed for {[(r['case_id'], r['error']) for r in failed]}")
    timings["predict"] = time.time() - t

    t = time.time()
    result_eval = evaluation.evaluate_folders(pred_dir, data_dir, out_csv=out / "metrics.csv",
                                              case_ids=split.val_ids, progress=False)
    summary = result_eval.summary()
    print(evaluation.format_summary(result_eval))
    viz.metric_boxplot(out / "metrics.csv", metric="dice", save=fig_dir / "dice_boxplot.png")
    held_out = ds[split.val_ids[0]]
    predicted = io.load_nifti(pred_dir / f"{held_out.case_id}.nii.gz")
    pred_labels = io.to_canonical(predicted.data, held_out.convention)
    viz.compare(held_out.image, held_out.label, pred_labels, affine=held_out.affine,
                title=f"{held_out.case_id}: prediction vs ground truth", save=fig_dir / "prediction_vs_truth.png")
    viz.three_plane(held_out.image, pred_labels, affine=held_out.affine, title=f"{held_out.case_id}: prediction",
                    save=fig_dir / "prediction_three_plane.png")
    viz.surface_3d(pred_labels, spacing=held_out.spacing, affine=held_out.affine, save=fig_dir / "prediction_3d.png")
    timings["evaluate_and_draw"] = time.time() - t

    report = out / "report.md"
    steps = result.metrics.get("optimizer_steps", "?")
    lines = [
        "# brainseg_tf demo report",
        "",
        "Synthetic BraTS-like data (no real patient data), so the numbers prove the pipeline, not clinical accuracy.",
        "",
        "## Data",
        "",
        "```",
        summary_text,
        "```",
        "",
        "![a synthetic case](figures/data_case.png)",
        "",
        "## Training",
        "",
        f"- recipe `{DEMO_RECIPE}` ({config.model.name} {config.model.options}), patch {config.pipeline.patch_size}",
        f"- {len(split.train_ids)} training / {len(split.val_ids)} held-out cases; "
        f"{result.epochs_completed} epochs, {steps} optimizer steps, {timings['train'] / 60:.1f} min",
        f"- run directory: `{run_dir}`",
        "",
        "![training curves](figures/training_curves.png)",
        "",
        "## Held-out cases",
        "",
        "Sliding-window prediction over the brain box, pasted back to the native grid and written as NIfTI "
        "with the source's affine and label convention; legacy BraTS empty-mask rules, HD95 in mm, "
        "BraTS 2023 lesion-wise scores.",
        "",
        *_markdown_table(summary),
        "",
        "![Dice per region](figures/dice_boxplot.png)",
        "",
        "![prediction vs truth](figures/prediction_vs_truth.png)",
        "",
        "![prediction, three planes](figures/prediction_three_plane.png)",
        "",
        "![prediction in 3D](figures/prediction_3d.png)",
        "",
        "## Timings",
        "",
        *[f"- {name}: {seconds:.1f} s" for name, seconds in timings.items()],
        f"- total: {sum(timings.values()) / 60:.1f} min",
        "",
    ]
    tmp = report.with_name(".report.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(report)
    return report
