"""Benchmark: cross-validated overall-survival scores on the shared real BraTS 2017/2018 table.

Part A uses every row of ``../shared/data/brats2018/survival_data.csv`` (141 patients, age and
survival; the 2017 table records no resection status, so the models see age only). Part B adds
tumour features from the ground-truth masks of the shared cases whose id pairs with a row (5
for certain; 11 when 2017 TCIA ids are paired with 2018 folders by number, which is unverified).

Every model is scored in the same run, beside the majority-class and age-only baselines:
``--folds``-fold CV (stratified by class where possible) with seed ``--seed``; 3-class accuracy
with its 95 % Wilson interval, MSE and Spearman's rho with 95 % percentile-bootstrap intervals
over the pooled out-of-fold predictions, and the range of CV accuracy over ``--repeats`` seeds.
Part B also scores the age-only model fitted on the table's other patients on the imaging cases.

Usage: python -m bench.survival [--table CSV] [--cases DIR] [--folds 5] [--seed 0] [--repeats 10] [--boot 2000]

The last line is machine-readable: ``patients=<int> accuracy_<method>=<float> ...`` (part A, CV
accuracy of every method) ``total_seconds=<float>``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import SHARED_BRATS2018, positive_int, print_figures, summary
from brainseg_tf import survival


def report(
    data: survival.TrainingSet, title: str, *, folds: int, seed: int, repeats: int, boot: int
) -> dict[str, float]:
    """Print one Markdown table: every method's CV scores on ``data``; ``{method: CV accuracy}``."""
    classes = np.bincount(survival.survival_class(data.days), minlength=3)
    print(f"\n### {title}\n")
    print(
        f"{len(data)} patients; classes short/mid/long = {classes[0]}/{classes[1]}/{classes[2]}; "
        f"{folds}-fold CV, seed {seed}\n"
    )
    print(
        "| model | features | accuracy [95% Wilson] | MSE days² [95% bootstrap] | median SE | "
        f"Spearman ρ [95% bootstrap] | accuracy over {repeats} CV seeds |"
    )
    print("|---|---|---|---|---|---|---|")
    accuracy = {}
    for method in survival.METHODS:
        cv = survival.cross_validate(data, method, folds=folds, seed=seed)
        s = cv["scores"]
        mse_ci = survival.bootstrap_ci(data.days, cv["predictions"], "mse", n_boot=boot, seed=seed)
        rho_ci = survival.bootstrap_ci(data.days, cv["predictions"], "spearman", n_boot=boot, seed=seed)
        accs = [
            survival.cross_validate(data, method, folds=folds, seed=k)["scores"]["accuracy"] for k in range(repeats)
        ]
        names = survival.fit_training_set(data, method, seed=seed).features
        shown = ", ".join(names) if len(names) <= 3 else f"{len(names)} (age + tumour features)"
        rho = "n/a" if np.isnan(s["spearman"]) else f"{s['spearman']:.2f} [{rho_ci[0]:.2f}, {rho_ci[1]:.2f}]"
        print(
            f"| {method} | {shown or '(none)'} | {s['accuracy']:.3f} [{s['accuracy_ci'][0]:.2f}, "
            f"{s['accuracy_ci'][1]:.2f}] | {s['mse']:.3g} [{mse_ci[0]:.3g}, {mse_ci[1]:.3g}] | "
            f"{s['median_se']:.3g} | {rho} | {min(accs):.3f}-{max(accs):.3f} |"
        )
        accuracy[method] = float(s["accuracy"])
    return accuracy


def held_out(full: survival.TrainingSet, test_ids: set[str]) -> None:
    """Age-only model fitted on the table's other patients, scored on the imaging cases."""
    test = [i for i, c in enumerate(full.case_ids) if c in test_ids]
    train = [i for i, c in enumerate(full.case_ids) if c not in test_ids]
    model = survival.fit_training_set(full.subset(train), "age")
    s = survival.scores(full.days[test], model.predict_set(full.subset(test)))
    print(
        f"\nage-only fitted on the other {len(train)} patients, scored on these {len(test)}: accuracy "
        f"{s['accuracy']:.3f} [{s['accuracy_ci'][0]:.2f}, {s['accuracy_ci'][1]:.2f}], MSE {s['mse']:.3g}, "
        f"Spearman {s['spearman']:.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=summary(__doc__))
    ap.add_argument("--table", type=Path, default=SHARED_BRATS2018 / "survival_data.csv")
    ap.add_argument("--cases", type=Path, default=SHARED_BRATS2018)
    ap.add_argument("--folds", type=positive_int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=positive_int, default=10)
    ap.add_argument("--boot", type=positive_int, default=2000)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    table = survival.read_clinical(args.table)
    print(f"table {args.table}: {len(table)} rows, format {table.format}, resection recorded: {table.has_resection}")
    opts = {"folds": args.folds, "seed": args.seed, "repeats": args.repeats, "boot": args.boot}
    everyone = survival.training_set(table)
    accuracy = report(everyone, "A. Age only, every patient of the table", **opts)
    rows = survival.feature_rows(args.cases)
    for by_number in (False, True):
        data = survival.training_set(table, features=rows, tcia_by_number=by_number)
        how = "TCIA ids paired by number (unverified)" if by_number else "ids that pair for certain"
        print(f"\npaired cases ({how}): {', '.join(sorted(data.case_for.values()))}")
        folds = min(args.folds, len(data))
        report(
            data,
            f"B. Age + ground-truth tumour features, {len(data)} shared cases ({how})",
            **(opts | {"folds": folds}),
        )
        held_out(survival.training_set(table), set(data.case_ids))
    total = time.perf_counter() - t0
    print(f"\ntotal {total:.0f} s")
    figures = {"patients": len(everyone), **{f"accuracy_{m}": a for m, a in accuracy.items()}}
    print_figures(figures | {"total_seconds": total})


if __name__ == "__main__":
    main()
