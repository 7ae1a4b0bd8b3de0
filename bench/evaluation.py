"""Benchmark: `evaluate_folders` on N synthetic full-size (240x240x155) BraTS-like cases.

Writes N reference/prediction pairs of NIfTI label maps (BraTS 2017-2021 labels 1/2/4 for the
references, 1/2/3 for the predictions) to a temporary folder, then times the whole folder
evaluation: reading, pairing, label conversion, Dice/HD95/sensitivity/specificity/volumes and
the BraTS 2023 lesion-wise scores for WT, TC, ET. Synthesis time is not counted.

Usage: python bench/evaluation.py [--cases 20] [--keep DIR]
Target: < 60 s for 20 cases on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainseg_tf.evaluation import evaluate_folders, format_summary

SHAPE = (240, 240, 155)


def _ellipsoid(shape, centre, radii):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def synth_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(reference in BraTS 1/2/4, prediction in 1/2/3) label maps of one synthetic case."""
    ref = np.zeros(SHAPE, np.uint8)
    centre = rng.uniform([90, 90, 50], [150, 150, 100])
    radii = rng.uniform([18, 18, 14], [32, 32, 24])
    ref[_ellipsoid(SHAPE, centre, radii)] = 2
    core = _ellipsoid(SHAPE, centre, radii * 0.55)
    ref[core] = 4
    ref[_ellipsoid(SHAPE, centre, radii * 0.35)] = 1
    satellite = centre + rng.choice([-1, 1], 3) * (radii + rng.uniform(8, 14, 3))
    ref[_ellipsoid(SHAPE, satellite, rng.uniform(4, 7, 3))] = 2
    canonical = np.where(ref == 4, 3, ref).astype(np.uint8)
    pred = np.roll(canonical, tuple(int(s) for s in rng.integers(-2, 3, 3)), axis=(0, 1, 2))
    et = ndimage.binary_dilation(pred == 3, iterations=1) & (pred > 0)
    pred[et] = 3
    blob = rng.uniform([30, 30, 20], [200, 200, 130])
    pred[_ellipsoid(SHAPE, blob, (3, 3, 3))] = 3  # a false-positive lesion
    return ref, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--keep", type=Path, default=None, help="write the data here and keep it")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        ref_dir, pred_dir = root / "ref", root / "pred"
        ref_dir.mkdir(parents=True, exist_ok=True)
        pred_dir.mkdir(parents=True, exist_ok=True)
        affine = np.diag([-1.0, -1.0, 1.0, 1.0])
        t0 = time.perf_counter()
        for i in range(args.cases):
            ref, pred = synth_case(rng)
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
            f"evaluate_folders: {args.cases} cases of {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} in {elapsed:.1f} s "
            f"({elapsed / args.cases:.2f} s per case)"
        )


if __name__ == "__main__":
    main()
