"""Speed and realism of the synthetic BraTS-like generator, next to the shared real BraTS 2018 cases.

Prints seconds per full-size synthetic case (generation, and writing its 5 gzipped NIfTI files),
then per modality the median and interquartile range (over cases) of the per-case median NCR, ED
and ET intensity relative to the case's healthy-brain median (brain = nonzero in all four
modalities; healthy = brain with label 0), and the tumour volumes in ml. The real part is skipped
with a message when the folder is absent.

    python -m bench.synthetic [--cases 8] [--seed 0] [--real ../shared/data/brats2018] [--max-real N]
                              [--write 2] [--shape X Y Z]

The last line is machine-readable:
``synthetic_case_seconds=<float> synthetic_case_cpu_seconds=<float> write_case_seconds=<float>
orderings_match=<true|false>`` (wall-clock and CPU seconds per generated case).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import FULL_GRID, SHARED_BRATS2018, positive_int, print_figures, summary
from brainseg_tf.synthetic import MODALITIES, synthesize_case

CLASSES = (("NCR", 1), ("ED", 2), ("ET", 3))


def case_stats(images: dict[str, np.ndarray], label: np.ndarray, voxel_ml: float) -> dict:
    """Per-modality median intensity of each tumour class relative to the healthy-brain median.

    Args:
        images: modality -> ``(X, Y, Z)`` array.
        label: canonical labels (0 BG, 1 NCR, 2 ED, 3 ET).
        voxel_ml: voxel volume in ml.

    Returns:
        ``{"rel": {modality: {class: ratio or nan}}, "vol": {class: ml}}``.
    """
    brain = np.ones(label.shape, dtype=bool)
    for m in MODALITIES:
        brain &= images[m] > 0
    healthy = brain & (label == 0)
    masks = {name: label == value for name, value in CLASSES}
    rel = {}
    for m in MODALITIES:
        img = images[m]
        ref = float(np.median(img[healthy]))
        rel[m] = {name: (float(np.median(img[mask])) / ref if mask.any() else np.nan) for name, mask in masks.items()}
    vol = {name: float(mask.sum()) * voxel_ml for name, mask in masks.items()}
    vol["WT"] = sum(vol.values())
    return {"rel": rel, "vol": vol}


def real_cases(root: Path, limit: int | None = None):
    """Yield (case_id, images, canonical label, voxel ml) for the labelled cases of the dataset at ``root``."""
    from brainseg_tf import io as bio

    refs = [r for r in bio.open_dataset(root).refs if r.label is not None][:limit]
    for ref in refs:
        case = bio.read_case(ref)
        images = {m: case.image[..., i] for i, m in enumerate(MODALITIES)}
        yield case.case_id, images, case.label, float(np.prod(case.spacing)) / 1000.0


def summarise(stats: list[dict]) -> dict:
    """Median and quartiles over cases (cases lacking a class are left out for that class)."""
    out = {"rel": {}, "vol": {}, "n": len(stats)}
    for m in MODALITIES:
        out["rel"][m] = {}
        for name, _ in CLASSES:
            v = np.array([s["rel"][m][name] for s in stats], dtype=float)
            v = v[np.isfinite(v)]
            out["rel"][m][name] = (np.median(v), np.percentile(v, 25), np.percentile(v, 75), v.size) if v.size else None
    for name in ("NCR", "ED", "ET", "WT"):
        v = np.array([s["vol"][name] for s in stats], dtype=float)
        out["vol"][name] = (np.median(v), v.min(), v.max(), int((v > 0).sum()))
    return out


def ordering(summary: dict, modality: str) -> str:
    """Classes and healthy brain (``brain`` = 1.0) sorted by median relative intensity, brightest first."""
    items = [("brain", 1.0)] + [(n, summary["rel"][modality][n][0]) for n, _ in CLASSES if summary["rel"][modality][n]]
    return " > ".join(n for n, _ in sorted(items, key=lambda t: -t[1]))


def table(syn: dict, real: dict | None) -> str:
    """Markdown table of relative intensities and volumes."""

    def cell(t):
        return "–" if t is None else f"{t[0]:.2f} [{t[1]:.2f}–{t[2]:.2f}]"

    head = "| modality | class | synthetic (n={}) | real BraTS 2018 (n={}) |".format(syn["n"], real["n"] if real else 0)
    lines = [head, "|---|---|---|---|"]
    for m in MODALITIES:
        for name, _ in CLASSES:
            r = cell(real["rel"][m][name]) if real else "–"
            lines.append(f"| {m} | {name} | {cell(syn['rel'][m][name])} | {r} |")
        r = ordering(real, m) if real else "–"
        lines.append(f"| {m} | **ordering** | {ordering(syn, m)} | {r} |")
    lines += [
        "",
        "| volume (ml) | synthetic median [min–max] (cases with class) | real median [min–max] (cases with class) |",
        "|---|---|---|",
    ]
    for name in ("NCR", "ED", "ET", "WT"):

        def vcell(t):
            return f"{t[0]:.1f} [{t[1]:.1f}–{t[2]:.1f}] ({t[3]})"

        r = vcell(real["vol"][name]) if real else "–"
        lines.append(f"| {name} | {vcell(syn['vol'][name])} | {r} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=summary(__doc__))
    ap.add_argument("--cases", type=positive_int, default=8, help="synthetic full-size cases (default 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", type=Path, default=SHARED_BRATS2018)
    ap.add_argument("--max-real", type=positive_int, default=None, help="real cases read (default: all)")
    ap.add_argument("--write", type=int, default=2, help="cases to time writing for (default 2)")
    ap.add_argument("--shape", type=positive_int, nargs=3, default=FULL_GRID, help="synthetic grid")
    args = ap.parse_args(argv)
    shape = tuple(args.shape)

    from brainseg_tf.io import write_case

    gen_times, cpu_times, write_times, write_cpu, syn_stats = [], [], [], [], []
    synthesize_case(10_000, (64, 64, 48))  # warm-up: imports and first-call allocations
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.cases):
            t0, c0 = time.perf_counter(), time.process_time()
            case = synthesize_case(args.seed + i, shape)
            gen_times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
            if i < args.write:
                t0, c0 = time.perf_counter(), time.process_time()
                write_case(tmp, "brats2021", f"BraTS2021_{i:05d}", case.images, case.label, case.affine)
                write_times.append(time.perf_counter() - t0)
                write_cpu.append(time.process_time() - c0)
            syn_stats.append(case_stats(case.images, case.label, float(np.prod(case.spacing)) / 1000.0))
            print(
                f"synthetic seed {args.seed + i}: {gen_times[-1]:.2f} s ({cpu_times[-1]:.2f} s CPU)  kind={case.kind:<8} "
                + " ".join(f"{k}={v:.1f}" for k, v in case.volumes_ml.items() if k != "brain"),
                flush=True,
            )
    gen_s = float(np.mean(gen_times))
    write_s = float(np.mean(write_times)) if write_times else float("nan")
    cpu_s = float(np.mean(cpu_times))
    print(
        f"\ngeneration: {gen_s:.2f} s wall per {'x'.join(map(str, shape))} case (min {min(gen_times):.2f}, "
        f"max {max(gen_times):.2f}), {cpu_s:.2f} s CPU (max {max(cpu_times):.2f}; wall exceeds CPU when other "
        f"jobs share the cores); writing 5 gzipped NIfTI files: {write_s:.2f} s wall "
        f"({np.mean(write_cpu) if write_cpu else float('nan'):.2f} s CPU) per case"
    )
    syn = summarise(syn_stats)

    real = None
    if args.real.is_dir():
        cases = real_cases(args.real, args.max_real)
        real = summarise([case_stats(images, label, vml) for _cid, images, label, vml in cases])
    else:
        print(f"real cases not found at {args.real}: showing synthetic statistics only")

    print("\nMedian [IQR over cases] of the per-case median intensity relative to the healthy-brain median\n")
    print(table(syn, real))
    match = real is not None and all(ordering(syn, m) == ordering(real, m) for m in MODALITIES)
    print()
    print_figures(
        {
            "synthetic_case_seconds": gen_s,
            "synthetic_case_cpu_seconds": cpu_s,
            "write_case_seconds": write_s,
            "orderings_match": match,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
