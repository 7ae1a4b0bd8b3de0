"""Regenerate the gallery in ``docs/figures/`` from one synthetic case (never real patient data).

Usage::

    python docs/make_figures.py [--out docs/figures] [--seed 3] [--dpi 80]

The prediction, training log and metrics table are made up here from the synthetic case: a
shifted, partly relabelled copy of its ground truth, smooth loss/Dice curves with noise, and
per-case scores drawn around typical BraTS values. They exist to show the figures, not results.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script run headless; the library itself never picks a backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from brainseg_tf import synthetic, viz  # noqa: E402

HERE = Path(__file__).resolve().parent


def fake_prediction(label: np.ndarray, seed: int) -> np.ndarray:
    """A plausible imperfect prediction: shifted, ET rim partly called NCR, one false-positive blob."""
    rng = np.random.default_rng(seed)
    pred = np.roll(label, shift=(3, -2, 1), axis=(0, 1, 2))
    et = pred == 3
    pred[et & (rng.random(label.shape) < 0.25)] = 1
    pred[ndimage.binary_erosion(pred == 2, iterations=2) ^ (pred == 2)] = 0  # edema under-segmented at its rim
    centre = np.array(label.shape) // 2 + np.array([35, 20, 5])
    grid = np.ogrid[tuple(slice(0, s) for s in label.shape)]
    blob = sum(((g - c) / 5.0) ** 2 for g, c in zip(grid, centre)) <= 1
    pred[blob] = 2
    return pred.astype(np.uint8)


def fake_log(path: Path, epochs: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(epochs)
    cols = {"epoch": t}
    cols["loss"] = 0.25 + 0.9 * np.exp(-t / 8) + rng.normal(0, 0.01, epochs)
    cols["val_loss"] = 0.32 + 0.85 * np.exp(-t / 9) + 0.002 * np.maximum(t - 25, 0) + rng.normal(0, 0.02, epochs)
    for region, top in (("wt", 0.9), ("tc", 0.8), ("et", 0.74)):
        cols[f"dice_{region}"] = top * (1 - np.exp(-t / 7)) + rng.normal(0, 0.008, epochs)
        cols[f"val_dice_{region}"] = (top - 0.05) * (1 - np.exp(-t / 8)) + rng.normal(0, 0.02, epochs)
    cols["lr"] = 1e-3 * 0.5 ** (t // 10)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for i in range(epochs):
            w.writerow([cols[k][i] for k in cols])
    return path


def fake_metrics(path: Path, n_cases: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    typical = {"WT": (0.89, 0.05), "TC": (0.80, 0.12), "ET": (0.75, 0.16)}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "region", "dice", "hd95", "sensitivity", "specificity"])
        for c in range(n_cases):
            for region, (mean, sd) in typical.items():
                dice = float(np.clip(rng.normal(mean, sd), 0, 1))
                if region == "ET" and c % 11 == 5:
                    dice = 0.0  # a case where the model misses ET entirely
                w.writerow(
                    [
                        f"synth_{c:03d}",
                        region,
                        round(dice, 4),
                        round(float(rng.gamma(2, 2.5)), 2),
                        round(min(1.0, dice + 0.03), 4),
                        round(1 - float(rng.uniform(0, 1e-3)), 5),
                    ]
                )
    return path


def main(out: Path = HERE / "figures", seed: int = 3, dpi: int = 80) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    case = synthetic.synthesize_case(seed)
    image, label, affine = case.image_stack(), case.label, case.affine
    pred = fake_prediction(label, seed)
    name = f"synthetic case (seed {seed})"
    written = []

    def keep(fig_or_path, fname: str) -> None:
        written.append(out / fname)
        if not isinstance(fig_or_path, Path):
            plt.close(fig_or_path)

    keep(
        viz.show_case(
            image, label, affine=affine, title=f"{name}: modalities and labels", save=out / "show_case.png", dpi=dpi
        ),
        "show_case.png",
    )
    keep(
        viz.three_plane(
            image,
            label,
            channel="flair",
            affine=affine,
            title=f"{name}: FLAIR through the tumour centre",
            save=out / "three_plane.png",
            dpi=dpi,
        ),
        "three_plane.png",
    )
    keep(
        viz.montage(image, label, channel="t1ce", n=12, affine=affine, save=out / "montage.png", dpi=dpi), "montage.png"
    )
    keep(viz.compare(image, label, pred, affine=affine, save=out / "compare.png", dpi=dpi), "compare.png")
    keep(
        viz.training_curves(fake_log(out / ".training_log.csv"), save=out / "training_curves.png", dpi=dpi),
        "training_curves.png",
    )
    keep(
        viz.metric_boxplot(fake_metrics(out / ".metrics.csv"), "dice", save=out / "metric_boxplot.png", dpi=dpi),
        "metric_boxplot.png",
    )
    keep(
        viz.surface_3d(label, affine=affine, brain=image, step=2, save=out / "surface_3d.png", dpi=dpi),
        "surface_3d.png",
    )
    keep(viz.slices_gif(image, label, out / "slices.gif", channel="flair", affine=affine, step=3, fps=8), "slices.gif")
    for tmp in (out / ".training_log.csv", out / ".metrics.csv"):
        tmp.unlink()
    for p in written:
        print(f"{p.relative_to(out.parent) if out.parent in p.parents else p}  {p.stat().st_size / 1024:.0f} KiB")
    print(f"{len(written)} files in {time.time() - t0:.1f} s")
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "figures")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--dpi", type=int, default=80)
    args = ap.parse_args()
    main(args.out, args.seed, args.dpi)
