"""Benchmark: `evaluate_folders` on N synthetic full-size (240x240x155) BraTS-like cases.

Writes N reference/prediction pairs of NIfTI label maps (BraTS 2017-2021 labels 1/2/4 for the
references, 1/2/3 for the predictions) to a temporary folder, then times the whole folder
evaluation: reading, pairing, label conversion, Dice/HD95/sensitivity/specificity/volumes and
the BraTS 2023 lesion-wise scores for WT, TC, ET. Synthesis time is not counted.

Usage: python -m bench.evaluation [--cases 20] [--keep DIR] [--shape X Y Z]
Target: < 60 s for 20 cases on the 2-core development machine.

The last line is machine-readable: ``cases=<int> evaluate_seconds=<float> seconds_per_case=<float>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bench.common import FULL_GRID, positive_int, print_figures, summary
from brainseg_tf.evaluation import evaluate_folders, format_summary


def _ellipsoid(shape, centre, radii):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def synth_case(rng: np.random.Generator, shape: Sequence[int] = FULL_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(reference in BraTS 1/2/4, prediction in 1/2/3) label maps of one synthetic case.

    Positions and sizes are laid out for the 240 x 240 x 155 grid and scaled to ``shape``.
    """
    shape = tuple(shape)
    scale = np.array(shape) / np.array(FULL_GRID)
    ref = np.zeros(shape, np.uint8)
    centre = rng.uniform([90, 90, 50], [150, 150, 100]) * scale
    radii = rng.uniform([18, 18, 14], [32, 32, 24]) * scale
    ref[_ellipsoid(shape, centre, radii)] = 2
    core = _ellipsoid(shape, centre, radii * 0.55)
    ref[core] = 4
    ref[_ellipsoid(shape, centre, radii * 0.35)] = 1
    satellite = centre + rng.choice([-1, 1], 3) * (radii + rng.uniform(8, 14, 3) * scale)
    ref[_ellipsoid(shape, satellite, rng.uniform(4, 7, 3) * scale)] = 2
    canonical = np.where(ref == 4, 3, ref).astype(np.uint8)
    pred = np.roll(canonical, tuple(int(s) for s in rng.integers(-2, 3, 3)), axis=(0, 1, 2))
    et = ndimage.binary_dilation(pred == 3, iterations=1) & (pred > 0)
    pred[et] = 3
    blob = rng.uniform([30, 30, 20], [200, 200, 130]) * scale
    pred[_ellipsoid(shape, blob, np.maximum(3 * scale, 1.5))] = 3  # a false-positive lesion
    return ref, pred


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=summary(__doc__))
    parser.add_argument("--cases", type=positive_int, default=20)
    parser.add_argument("--keep", type=Path, default=None, help="write the data here and keep it")
    parser.add_argument("--shape", type=positive_int, nargs=3, default=FULL_GRID, help="grid of every case")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        ref_dir, pred_dir = root / "ref", root / "pred"
        ref_dir.mkdir(parents=True, exist_ok=True)
        pred_dir.mkdir(parents=True, exist_ok=True)
        affine = np.diag([-1.0, -1.0, 1.0, 1.0])
        t0 = time.perf_counter()
        for i in range(args.cases):
            ref, pred = synth_case(rng, shape)
            nib.save(nib.Nifti1Image(ref, affine), str(ref_dir / f"Case{i:03d}_seg.nii.gz"))
            nib.save(nib.Nifti1Image(pred, affine), str(pred_dir / f"Case{i:03d}.nii.gz"))
        synth = time.perf_counter() - t0
        t0 = time.perf_counter()
        # References in BraTS 2017-2021 labels (1, 2, 4), predictions in 2023+ labels (1, 2, 3): said
        # explicitly, since conventions are never guessed where a value means different things.
        result = evaluate_folders(
            pred_dir,
            ref_dir,
            out_csv=root / "metrics.csv",
            progress=False,
            ref_convention="brats",
            pred_convention="brats2023",
        )
        elapsed = time.perf_counter() - t0
        print(format_summary(result))
        print(f"\nsynthesis + writing: {synth:.1f} s (not counted)")
        print(
            f"evaluate_folders: {args.cases} cases of {'x'.join(map(str, shape))} in {elapsed:.1f} s "
            f"({elapsed / args.cases:.2f} s per case)"
        )
    print_figures({"cases": args.cases, "evaluate_seconds": elapsed, "seconds_per_case": elapsed / args.cases})


if __name__ == "__main__":
    main()
