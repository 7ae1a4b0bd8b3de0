"""Dice and seconds of sliding-window settings side by side, with one trained model on real cases.

Answers: do planned windows (``roi="auto"``: few large windows, :func:`brainseg_tf.inference.plan_window`)
or a lower overlap change the segmentation of a model trained on smaller patches? Every case is
predicted with each setting (the model card's preprocessing and postprocessing; no TTA unless the
setting names mirror axes) and scored
per region (WT, TC, ET; the legacy empty-mask rule, as the volume validation scores); the table
gives the mean Dice, the largest per-case change against the first setting, and the seconds per
case (predict_case: preprocessing, forwards, blending, postprocessing; the images are read once
per case, outside the timing).

    python -m bench.windows --model runs/cpu_brats2018 --data ../shared/data/brats2018 \
        [--cases ID ...] [--settings patch:0.5 auto:0.25 auto:0.5:012 ...] [--max-window-voxels N]

``--recipe RECIPE.json`` instead of ``--model`` uses the recipe's model untrained (a quick check
of the script itself; its Dice means nothing).

A setting is ``WINDOW:OVERLAP`` with WINDOW ``patch`` (the card's roi), ``auto`` or an edge such
as ``128``. The last line is machine-readable: for each setting after the first,
``<setting>_max_abs_delta_<region>=<float>`` and ``<setting>_mean_delta_<region>=<float>``.
"""

from __future__ import annotations

import argparse
import time

from bench.common import print_figures, summary, untrained_model, warm_up
from brainseg_tf.conventions import REGIONS


def parse_setting(text: str) -> tuple[str | int, float, tuple[int, ...] | None]:
    """``WINDOW:OVERLAP[:AXES]`` -> ``(window, overlap, mirror axes or None)``; AXES ``012`` is
    mirror TTA over the 8 flips of all three axes, ``01`` the 4 flips of axes 0 and 1."""
    parts = text.split(":")
    bad_axes = len(parts) == 3 and not (parts[2] and set(parts[2]) <= set("012"))
    if len(parts) not in (2, 3) or not parts[1] or bad_axes:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WINDOW:OVERLAP[:AXES], e.g. auto:0.25 or auto:0.5:01")
    window, overlap = parts[0], float(parts[1])
    axes = tuple(int(a) for a in parts[2]) if len(parts) == 3 else None
    return (window if window in ("auto", "patch") else int(window)), overlap, axes


def _predictor(args: argparse.Namespace):
    from brainseg_tf import inference

    if args.model is not None:
        return inference.load_predictor(
            args.model, max_window_voxels=args.max_window_voxels, min_window=args.min_window
        )
    model, card = untrained_model(args.recipe)
    return inference.Predictor.from_keras(
        model, card, max_window_voxels=args.max_window_voxels, min_window=args.min_window
    )


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=summary(__doc__))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="RUN_DIR or export folder (with its model card)")
    which.add_argument("--recipe", help="a recipe whose model is used untrained (checks the script, not a model)")
    p.add_argument("--data", required=True, help="dataset folder with reference masks")
    p.add_argument("--cases", nargs="+", default=None, help="case ids (default: every case with a mask)")
    p.add_argument(
        "--settings",
        nargs="+",
        type=parse_setting,
        default=None,
        help="WINDOW:OVERLAP[:AXES] settings (AXES: mirror TTA, e.g. 012); the first is the reference "
        "(default: patch:0.5 patch:0.25 auto:0.25)",
    )
    p.add_argument("--max-window-voxels", type=int, default=None, help="the auto window budget (default: the card's)")
    p.add_argument(
        "--min-window", type=int, nargs=3, default=None, help="the smallest auto window (default: the card's)"
    )
    return p


def score_cases(pred, dataset, case_ids: list[str], names: list[str], settings: list) -> tuple[dict, dict]:
    """Per setting, ``{case: {region: Dice}}`` and the seconds per case; one printed row per case."""
    import numpy as np

    from brainseg_tf import inference
    from brainseg_tf.training.validation import region_dice

    dice = {n: {} for n in names}
    seconds = {n: [] for n in names}
    for case_id in case_ids:
        case = dataset[case_id]
        ref = np.asarray(case.label)
        row = []
        for name, (window, overlap, axes) in zip(names, settings):
            t = time.perf_counter()
            labels = inference.predict_case(
                pred, case, roi=window, overlap=overlap, tta=axes is not None, mirror_axes=axes
            ).labels
            seconds[name].append(time.perf_counter() - t)
            dice[name][case_id] = region_dice(labels, ref)
            row.append(
                f"{name} " + " ".join(f"{dice[name][case_id][r]:.4f}" for r in REGIONS) + f" {seconds[name][-1]:.1f}s"
            )
        print(f"{case_id:<24} " + " | ".join(row), flush=True)
        del case
    return dice, seconds


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = args.settings or [("patch", 0.5, None), ("patch", 0.25, None), ("auto", 0.25, None)]

    import numpy as np

    from brainseg_tf import io

    pred = _predictor(args)
    dataset = io.open_dataset(args.data)
    case_ids = args.cases or [r.case_id for r in dataset.refs if r.label is not None]
    names = [f"{w}:{o:g}" + ("" if a is None else ":" + "".join(map(str, a))) for w, o, a in settings]
    print(
        f"model {pred.source or args.recipe} (card window {pred.inference.window}, overlap "
        f"{pred.inference.overlap:g}, max window voxels {pred.inference.max_window_voxels}); {len(case_ids)} cases",
        flush=True,
    )
    # Trace the forward for a relaxed shape first, as after two cases of different windows.
    warm_up(pred, pred.roi)
    dice, seconds = score_cases(pred, dataset, case_ids, names, settings)

    base = names[0]
    print(f"\n{'setting':<12} {'WT':>7} {'TC':>7} {'ET':>7} {'mean':>7}   max |dDice| WT/TC/ET vs {base}   s/case")
    figures = {}
    for name in names:
        means = [float(np.mean([dice[name][c][r] for c in case_ids])) for r in REGIONS]
        deltas = [[dice[name][c][r] - dice[base][c][r] for c in case_ids] for r in REGIONS]
        worst = [float(np.max(np.abs(d))) for d in deltas]
        print(
            f"{name:<12} "
            + " ".join(f"{m:7.4f}" for m in means)
            + f" {np.mean(means):7.4f}   "
            + "/".join(f"{w:.4f}" for w in worst)
            + f"   {np.mean(seconds[name]):.2f}"
        )
        if name != base:
            for r, w, d in zip(REGIONS, worst, deltas):
                figures[f"{name}_max_abs_delta_{r.lower()}"] = w
                figures[f"{name}_mean_delta_{r.lower()}"] = float(np.mean(d))
    print_figures(figures, ".4f")


if __name__ == "__main__":
    main()
