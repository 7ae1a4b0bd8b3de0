"""GPU check of the recommended recipe: training speed, pipeline feed, peak memory vs the planner, inference.

Trains the recommended 3D U-Net (``configs/gpu_recommended.json``: 6 stages 32-320, instance norm,
deep supervision, sigmoid WT/TC/ET, SGD) on patches drawn by the training pipeline
(``training.data.build_datasets``: foreground oversampling, the recipe's augmentation) from an
HDF5 cache of synthetic BraTS-like cases, once with XLA off and once on, and prints per variant:

- ``steps_per_s``: training steps per second after the first (tracing) step;
- ``pipeline_patches_per_s``: patches per second the input pipeline alone delivers;
- ``peak_mib`` against ``estimate_mib`` (``brainseg_tf.plan``): the TensorFlow allocator's peak
  (``get_memory_info("GPU:0")``, reset before each variant) and the planner's estimate, with the
  relative error;
- ``inference_s``: one full synthetic case end to end (read, preprocess, sliding window at the
  patch size, postprocess, paste back) with the trained model.

    python -m bench.gpu                       # GPU: 128^3 patches, batch 2, mixed_float16, 300 steps
    python -m bench.gpu --tiny                # any machine: 16^3 patches, a 3-level small U-Net, 3 steps

Without a GPU it runs on ``CPU:0`` and says so (``gpu=false`` on the last line).

Every size is an option (``--patch``, ``--batch``, ``--steps``, ``--cases``, ``--shape``,
``--precision``, ``--xla off on``). The last line is machine-readable:
``figures: device=... gpu=... policy=... pipeline_patches_per_s=... xla_off_steps_per_s=... xla_off_peak_mib=...
xla_off_estimate_mib=... xla_off_error=... [xla_on_...] inference_s=...``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CONFIGS, positive_int, print_figures, summary, synthetic_dataset

RECIPE = CONFIGS / "gpu_recommended.json"
#: --tiny: the same recipe with a small network, sizes that run in seconds on a CPU.
TINY = {
    "patch": 16,
    "batch": 2,
    "steps": 3,
    "cases": 2,
    "shape": (32, 32, 24),
    "pipeline_batches": 4,
    "model": {"depth": 3, "base_filters": 4, "max_filters": 8, "deep_supervision_levels": 2},
}
FULL = {
    "patch": 128,
    "batch": 2,
    "steps": 300,
    "cases": 4,
    "shape": (240, 240, 155),
    "pipeline_batches": 50,
    "model": {},
}


def _config(work: Path, patch: int, batch: int, precision: str, model_overrides: dict):
    from brainseg_tf.training import load_config

    overrides = {
        "data.root": str(work / "synthetic"),
        "data.cache": str(work / "synthetic.h5"),
        "data.build_cache": True,
        "data.cache_dtype": "float16",
        "data.synthetic": None,
        "pipeline.patch_size": [patch] * 3,
        "pipeline.batch_size": batch,
        "runtime.mixed_precision": precision,
        "split.method": "none",
    }
    overrides.update({f"model.options.{k}": v for k, v in model_overrides.items()})
    return load_config(RECIPE, overrides=overrides)


def _train_dataset(cfg, cases: int, shape: tuple[int, int, int]):
    """The recipe's training pipeline over a synthetic cache (written on first use)."""
    from brainseg_tf import io
    from brainseg_tf.data import build_cache
    from brainseg_tf.training.data import build_datasets
    from brainseg_tf.training.split import Split

    root, cache = Path(cfg.data.root), Path(cfg.data.cache)
    synthetic_dataset(root, cases, shape)
    if not cache.exists():
        build_cache(root, cache, dtype=cfg.data.cache_dtype, progress=False)
    ids = io.open_dataset(root).case_ids
    train_ds, _ = build_datasets(
        cfg, Split(train_ids=list(ids), val_ids=[]), seed=0, global_batch=cfg.pipeline.batch_size
    )
    return train_ds, root / ids[0]


def pipeline_rate(train_ds, batches: int) -> float:
    """Patches per second the pipeline delivers (after one warm-up batch)."""
    it = iter(train_ds)
    first = next(it)
    per_batch = int(first[0].shape[0])
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * per_batch / (time.perf_counter() - start)


def train_variant(cfg, train_ds, *, steps: int, xla: bool, estimate: int, policy: str) -> tuple[dict, object]:
    """Steps/s and allocator peak of ``steps`` training steps under ``policy`` (against ``estimate``
    bytes, the planner's for the same policy); the trained model."""
    import keras
    import tensorflow as tf

    from brainseg_tf.training import factories
    from brainseg_tf.training.data import finish_dataset

    keras.backend.clear_session()
    device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
    keras.config.set_dtype_policy(policy)
    model = factories.build_model(cfg)
    n_outputs = len(model.outputs)
    factories.compile_model(model, cfg, xla=xla)
    ds = finish_dataset(train_ds, cfg, n_outputs, False)
    tf.config.experimental.reset_memory_stats(device)
    model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    peak = tf.config.experimental.get_memory_info(device)["peak"]
    return {
        "steps_per_s": steps / seconds,
        "peak_mib": peak / 2**20,
        "estimate_mib": estimate / 2**20,
        "error": (estimate - peak) / peak if peak else float("nan"),
        "device": device,
    }, model


def inference_seconds(cfg, model, case_dir: Path) -> float:
    """Seconds to segment one case end to end with the trained model (forward traced first)."""
    import numpy as np

    from brainseg_tf import inference

    pred = inference.Predictor.from_keras(model, modalities=list(cfg.data.modalities), head=cfg.head)
    pred(np.zeros((1, *cfg.pipeline.patch_size, len(cfg.data.modalities)), np.float32))
    start = time.perf_counter()
    inference.predict_case(pred, case_dir, roi=tuple(cfg.pipeline.patch_size), overlap=0.5)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=summary(__doc__))
    parser.add_argument("--tiny", action="store_true", help="small network and sizes (CPU, tests)")
    parser.add_argument("--patch", type=positive_int, default=None, help="cubic patch edge (default 128; tiny 16)")
    parser.add_argument("--batch", type=positive_int, default=None)
    parser.add_argument(
        "--steps", type=positive_int, default=None, help="timed training steps per variant (default 300)"
    )
    parser.add_argument("--cases", type=positive_int, default=None, help="synthetic cases in the cache")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="synthetic case grid")
    parser.add_argument("--precision", default="float16", help="recipe runtime.mixed_precision (default float16)")
    parser.add_argument("--xla", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--work", type=Path, default=None, help="where the synthetic data goes (default: a temp dir)")
    args = parser.parse_args(argv)
    from brainseg_tf import plan

    base = TINY if args.tiny else FULL
    patch = args.patch or base["patch"]
    batch = args.batch or base["batch"]
    steps = args.steps or base["steps"]
    cases = args.cases or base["cases"]
    shape = tuple(args.shape or base["shape"])
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        cfg = _config(work, patch, batch, args.precision, base["model"])
        train_ds, case_dir = _train_dataset(cfg, cases, shape)
        figures = {"pipeline_patches_per_s": pipeline_rate(train_ds, base["pipeline_batches"])}
        print(
            f"pipeline: {figures['pipeline_patches_per_s']:.1f} patches/s ({patch}^3 x {len(cfg.data.modalities)})",
            flush=True,
        )
        fp = plan.footprint(cfg)
        est = plan.estimate(fp, cfg.pipeline.patch_size, cfg.pipeline.batch_size).total
        figures["policy"] = fp.policy
        model = None
        for xla in args.xla:
            row, model = train_variant(cfg, train_ds, steps=steps, xla=xla == "on", estimate=est, policy=fp.policy)
            figures["device"] = row.pop("device")
            figures["gpu"] = figures["device"].startswith("GPU")
            print(
                f"xla {xla}: {row['steps_per_s']:.2f} steps/s ({row['steps_per_s'] * batch:.1f} patches/s), "
                f"peak {row['peak_mib']:.0f} MiB vs planner {row['estimate_mib']:.0f} MiB ({row['error']:+.1%})",
                flush=True,
            )
            figures.update({f"xla_{xla}_{k}": v for k, v in row.items()})
        figures["inference_s"] = inference_seconds(cfg, model, case_dir)
        print(f"inference: {figures['inference_s']:.1f} s for one {'x'.join(map(str, shape))} case", flush=True)
    if not figures["gpu"]:
        print("no GPU present: every figure above was measured on CPU:0", flush=True)
    first = {k: figures.pop(k) for k in ("device", "gpu", "policy")}
    print_figures(first | figures, ".4g", prefix="figures: ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
