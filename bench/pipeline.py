"""Input-pipeline throughput: 128^3 x 4 training patches per second from NIfTI and from the cache.

Usage::

    python -m bench.pipeline                  # synthetic 4-case BraTS-2021-style data (generated)
    python -m bench.pipeline --data /path/to/BraTS --cases 8
    python -m bench.pipeline --skip-model --augment default --target classes
    python -m bench.pipeline --skip-model --shape 64 64 48 --patch 32 --augments none light   # a quick check

Prints, for each source (HDF5 cache, NIfTI folder) and augmentation level (none, ``light``,
default ``AugmentConfig()``), the wall-clock patch rate and the process CPU time per patch with
integer label-map targets (``target="labels"``, what ``brainseg train`` feeds its losses), then
the same with one-hot float32 targets (``target="classes"``) for the ``--augment`` level, then
the CPU training-step rate of the 3D U-Net at 128^3 batch 1. On a shared machine the CPU figure
says what two idle cores could do: about ``2000 / cpu_ms`` patches/s. The last line is
machine-readable, for ``--augment`` (default ``light``, the CPU recipe's augmentation) and
``--target`` (default ``labels``)::

    cache_patches_per_s=<float> nifti_patches_per_s=<float>
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import FULL_GRID, load_average, positive_int, print_figures, summary, synthetic_dataset

AUGMENTS = {"default": True, "light": "light", "none": None}


def measure(ds, n_patches: int, warmup_batches: int = 2) -> tuple[float, float]:
    """(patches per second wall, CPU milliseconds per patch) over ``n_patches`` after warm-up."""
    it = iter(ds)
    for _ in range(warmup_batches):
        next(it)
    t0, c0, k = time.perf_counter(), time.process_time(), 0
    while k < n_patches:
        k += int(next(it)[0].shape[0])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    del it
    gc.collect()
    return k / wall, 1000.0 * cpu / k


def unet_step_rate(batch: int = 1, steps: int = 2) -> float:
    """Patches per second of a CPU training step of the 3D U-Net at 128^3 x 4 (softmax, 4 classes)."""
    import keras
    import numpy as np

    from brainseg_tf.models import build_unet3d

    model = build_unet3d((128, 128, 128), 4, head="softmax", out_channels=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy", jit_compile=False)
    x = np.random.default_rng(0).standard_normal((batch, 128, 128, 128, 4)).astype("float32")
    y = np.zeros((batch, 128, 128, 128, 4), "float32")
    y[..., 0] = 1
    model.train_on_batch(x, y)  # trace
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    rate = batch * steps / (time.perf_counter() - t0)
    del model
    gc.collect()
    return rate


def parser() -> argparse.ArgumentParser:
    """The command line."""
    ap = argparse.ArgumentParser(description=summary(__doc__))
    ap.add_argument("--data", type=Path, help="dataset folder (default: generate synthetic cases)")
    ap.add_argument("--cases", type=positive_int, default=4, help="cases used (default 4)")
    ap.add_argument("--shape", type=positive_int, nargs=3, default=FULL_GRID, help="grid of the synthetic cases")
    ap.add_argument("--patch", type=positive_int, default=128, help="cubic patch edge (default 128)")
    ap.add_argument("--workdir", type=Path, help="where the synthetic data and cache go (default: a temp dir)")
    ap.add_argument("--patches", type=positive_int, default=40, help="patches timed per cheap configuration")
    ap.add_argument("--batch", type=positive_int, default=2, help="batch size")
    ap.add_argument(
        "--augment",
        choices=tuple(AUGMENTS),
        default="light",
        help="augmentation reported on the last line (default: light, flips + intensity)",
    )
    ap.add_argument(
        "--augments",
        nargs="+",
        choices=tuple(AUGMENTS),
        default=("none", "light", "default"),
        help="augmentation levels timed with label-map targets (default: all three)",
    )
    ap.add_argument(
        "--target",
        choices=("labels", "classes", "regions"),
        default="labels",
        help="target format reported on the last line (default: labels, as brainseg train)",
    )
    ap.add_argument(
        "--patches-per-case",
        type=int,
        default=None,
        help="NIfTI patches cut per loaded case (default: patch_dataset's, 8)",
    )
    ap.add_argument("--skip-model", action="store_true", help="skip the 3D U-Net step timing")
    return ap


def time_configs(args: argparse.Namespace, sources: dict[str, Path]) -> dict[tuple[str, str, str], tuple]:
    """``(patches/s, CPU ms per patch)`` of every (source, augmentation, target), one printed row each."""
    from brainseg_tf.data import patch_dataset

    results: dict[tuple[str, str, str], tuple[float, float]] = {}
    print(f"{'source':<7} {'augment':<8} {'target':<8} {'patches/s':>10} {'CPU ms/patch':>13} {'2-core bound/s':>15}")
    configs = [(aug, "labels") for aug in args.augments]
    configs += [(args.augment, t) for t in ("classes", args.target) if (args.augment, t) not in configs]
    for source_name, source in sources.items():
        for aug_name, target in configs:
            n = args.patches if aug_name != "default" else max(args.patches // 3, 8)
            extra = (
                {}
                if source_name == "cache" or args.patches_per_case is None
                else {"patches_per_case": args.patches_per_case}
            )
            try:
                ds = patch_dataset(
                    source,
                    patch_size=(args.patch,) * 3,
                    global_batch_size=args.batch,
                    augment=AUGMENTS[aug_name],
                    max_cases=args.cases,
                    seed=0,
                    target=target,
                    **extra,
                )
                rate, cpu_ms = measure(ds, n)
                del ds
            except Exception as exc:  # report and go on: one broken configuration must not hide the others
                print(
                    f"{source_name:<7} {aug_name:<8} {target:<8} failed: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[-1]}"
                )
                rate, cpu_ms = float("nan"), float("nan")
            gc.collect()
            results[(source_name, aug_name, target)] = (rate, cpu_ms)
            print(
                f"{source_name:<7} {aug_name:<8} {target:<8} {rate:>10.1f} {cpu_ms:>13.0f} {2000 / cpu_ms if cpu_ms else float('inf'):>15.1f}",
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from brainseg_tf.data import build_cache

    with tempfile.TemporaryDirectory(prefix="brainseg_bench_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        data = args.data
        if data is None:
            print(f"generating {args.cases} synthetic {'x'.join(map(str, args.shape))} cases ...", flush=True)
            data = synthetic_dataset(workdir / "synthetic", args.cases, args.shape)
        t0 = time.perf_counter()
        h5 = build_cache(data, workdir / "bench_cache.h5", max_cases=args.cases, progress=False)
        print(f"cache: {h5} ({h5.stat().st_size / 2**20:.0f} MiB, ready in {time.perf_counter() - t0:.1f} s)")
        print(f"cores: {os.cpu_count()}, load average {load_average():.1f} (a shared machine lowers wall rates)")
        results = time_configs(args, {"cache": h5, "nifti": data})
    if not args.skip_model:
        step = unet_step_rate()
        print(f"3D U-Net (faithful, 16.3 M params) CPU training step, 128^3 x 4 batch 1: {step:.2f} patches/s")
    cache_rate = results[("cache", args.augment, args.target)][0]
    nifti_rate = results[("nifti", args.augment, args.target)][0]
    print(f"last line: augment={args.augment}, target={args.target}, batch {args.batch}")
    print_figures({"cache_patches_per_s": cache_rate, "nifti_patches_per_s": nifti_rate}, ".2f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
