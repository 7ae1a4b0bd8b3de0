"""Dice and seconds of sliding-window settings side by side, with one trained model on real cases.

Answers: do planned windows (``roi="auto"``: few large windows, :func:`brainseg_tf.inference.plan_window`)
or a lower overlap change the segmentation of a model trained on smaller patches? Every case is
predicted with each setting (the model card's preprocessing and postprocessing; no TTA unless the
setting names mirror axes) and scored
per region (WT, TC, ET; the legacy empty-mask rule, as the volume validation scores); the table
gives the mean Dice, the largest per-case change against the first setting, and the seconds per
case (predict_case: preprocessing, forwards, blending, postprocessing; the images are read once
per case, outside the timing).

    python bench/windows.py --model runs/cpu_brats2018 --data ../shared/data/brats2018 \
        [--cases ID ...] [--settings patch:0.5 auto:0.25 auto:0.5:012 ...] [--max-window-voxels N]

A setting is ``WINDOW:OVERLAP`` with WINDOW ``patch`` (the card's roi), ``auto`` or an edge such
as ``128``. The last line is machine-readable: for each setting after the first,
``<setting>_max_abs_delta_<region>=<float>`` and ``<setting>_mean_delta_<region>=<float>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REGIONS = ("WT", "TC", "ET")


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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="RUN_DIR or export folder (with its model card)")
    p.add_argument("--data", required=True, help="dataset folder with reference masks")
    p.add_argument("--cases", nargs="+", default=None, help="case ids (default: every case with a mask)")
    p.add_argument(
        "--settings",
        nargs="+",
        type=parse_setting,
        default=None,
        help="WINDOW:OVERLAP[:AXES] settings (AXES: mirror TTA, e.g. 012); the first is the reference (default: patch:0.5 patch:0.25 auto:0.25)",
    )
    p.add_argument("--max-window-voxels", type=int, default=None, help="the auto window budget (default: the card's)")
    p.add_argument(
        "--min-window", type=int, nargs=3, default=None, help="the smallest auto window (default: the card's)"
    )
    args = p.parse_args(argv)
    settings = args.settings or [("patch", 0.5, None), ("patch", 0.25, None), ("auto", 0.25, None)]

    import numpy as np

    from brainseg_tf import inference, io
    from brainseg_tf.training.validation import region_dice

    pred = inference.load_predictor(args.model, max_window_voxels=args.max_window_voxels, min_window=args.min_window)
    dataset = io.open_dataset(args.data)
    case_ids = args.cases or [r.case_id for r in dataset.refs if r.label is not None]
    names = [f"{w}:{o:g}" + ("" if a is None else ":" + "".join(map(str, a))) for w, o, a in settings]
    print(
        f"model {pred.source} (card window {pred.inference.window}, overlap {pred.inference.overlap:g}, "
        f"max window voxels {pred.inference.max_window_voxels}); {len(case_ids)} cases",
        flush=True,
    )
    # Trace the forward for a relaxed shape first, as after two cases of different windows.
    roi = tuple(pred.roi)
    for extra in (0, 16):
        pred(np.zeros((1, *(r + extra for r in roi), len(pred.modalities)), np.float32))

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

    base = names[0]
    print(f"\n{'setting':<12} {'WT':>7} {'TC':>7} {'ET':>7} {'mean':>7}   max |dDice| WT/TC/ET vs {base}   s/case")
    summary = []
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
                summary += [
                    f"{name}_max_abs_delta_{r.lower()}={w:.4f}",
                    f"{name}_mean_delta_{r.lower()}={np.mean(d):.4f}",
                ]
    print(" ".join(summary))


if __name__ == "__main__":
    main()
