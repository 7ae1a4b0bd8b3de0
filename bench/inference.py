"""Seconds and peak memory to segment one full case end to end (read -> write), with a per-stage breakdown.

Variants: no TTA / mirror TTA (8 flips, or the subsets of ``--mirror-axes``) x float32 / ``mixed_bfloat16``. Each variant runs in its
own Python process so that its peak resident memory (``ru_maxrss``) is honest. In each process the
model is built (or loaded) and its forward pass traced on one window first; the timed part is
``read_case -> preprocess -> sliding window -> postprocess -> paste back -> write NIfTI``, run
``--repeat`` times (the fastest run is reported: the machine is shared).

    python bench/inference.py [--case CASE_DIR] [--config RECIPE.json] [--model RUN_DIR|model.keras|SAVEDMODEL_DIR]
                              [--roi 128] [--overlap 0.5] [--batch-size 1] [--variants base|all]
                              [--repeat 3] [--experiments]

Models: ``--config`` builds the recipe's model (``model.name``/``model.options``, roi =
``pipeline.patch_size``, precision = ``runtime.mixed_precision``), untrained unless ``--model``
gives its weights; without either, an untrained recommended 3D U-Net (``models.build("unet",
spatial_dims=3)``: 6 stages, 32-320 filters, instance norm, softmax head). ``mixed_bfloat16``
applies to models built here; for ``--model`` alone it needs a run dir whose model card names the
model (rebuilt under the policy, the weights loaded), otherwise that variant is skipped.
Default case: a synthetic 240 x 240 x 155 BraTS-2021-style case (``brainseg_tf.synthetic``, seed 0).

Stages are timed by wrapping the library's functions inside this process (no library change):
``load_nifti`` per file, the rest of ``read_case``, ``preprocess_case``, the forwards (the
predictor's batch callable) and the rest of ``sliding_window`` (window copies, blending),
``probabilities_to_labels``, ``postprocess``, ``paste_back``, and the write split into the label
conversion, ``nib.save`` (serialise + gzip) and the atomic rename/fsync. ``--experiments`` then
measures the alternatives of docs/speed.md on the same case (threaded reads, one forward of the
whole brain box, float32 blending, gzip levels, float32 vs bfloat16 forwards, batch size 2).

The last line is machine-readable (the base variant: no TTA, float32, or the recipe's precision
with ``--config``): ``case_seconds=<float> peak_rss_gb=<float>`` (GiB of the whole process, TF
runtime included).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = [(False, "float32"), (False, "bfloat16"), (True, "float32"), (True, "bfloat16")]
# Rows of the stage table: (key, label); "excl:" rows are a wrapped function minus its wrapped callees.
# Labels starting with two spaces lie within the row above and are not part of the sum (read_case
# gunzips the files in threads, so their times overlap).
STAGE_ROWS = [
    ("read_case", "read the images (read_case: files in threads, float32 stack)"),
    ("load:flair", "  of which flair (gunzip + decode, in a thread)"),
    ("load:t1", "  of which t1 (in a thread)"),
    ("load:t1ce", "  of which t1ce (in a thread)"),
    ("load:t2", "  of which t2 (in a thread)"),
    ("load:seg", "  of which seg (not needed to predict)"),
    ("preprocess_case", "preprocess (crop, z-score)"),
    ("forward", "forwards"),
    ("excl:sliding_window", "sliding window rest (window copies, float64 blending)"),
    ("probabilities_to_labels", "probabilities -> labels"),
    ("postprocess", "postprocess"),
    ("paste_back", "paste back to native grid"),
    ("excl:write_label", "write: label convention + header"),
    ("excl:save_nifti", "write: NIfTI image object"),
    ("nib.save", "write: nib.save (serialise + gzip)"),
    ("fsync", "write: fsync (atomic write)"),
    ("excl:predict_folder", "other (dataset scan, checks, bookkeeping)"),
]
# Wrapped callee keys of each "excl:" stage.
CALLEES = {
    "sliding_window": ["forward"],
    "save_nifti": ["nib.save", "fsync"],
    "write_label": ["save_nifti"],
    "predict_folder": [
        "read_case",
        "preprocess_case",
        "sliding_window",
        "probabilities_to_labels",
        "postprocess",
        "paste_back",
        "write_label",
    ],
}


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux


def _load_average() -> float:
    return os.getloadavg()[0]


def make_synthetic_case(root: Path) -> Path:
    """Write synthetic case 0 (240 x 240 x 155, int16, BraTS 2021 names) under ``root``."""
    from brainseg_tf import io as bio
    from brainseg_tf.synthetic import synthesize_case

    sc = synthesize_case(0)
    ref = bio.write_case(root, "brats2021", "BraTS2021_00000", sc.images, sc.label, sc.affine)
    return Path(ref.images["flair"]).parent


# ----------------------------------------------------------------------------- stage clock


def _file_key(path: Any) -> str:
    """``Brats18_x_t1ce.nii.gz`` -> ``load:t1ce`` (the modality or ``seg`` suffix of a BraTS name)."""
    name = Path(str(path)).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return "load:" + name.rsplit("_", 1)[-1].lower()


class StageClock:
    """Wall seconds, process CPU seconds (all threads) and calls of wrapped functions.

    Inclusive per function; :meth:`rows` derives the exclusive ``"excl:"`` rows.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.missing: list[str] = []
        self._undo: list[tuple[Any, str, Any]] = []

    def timed(self, fn: Callable, key: str | Callable[..., str]) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                k = key(*args, **kwargs) if callable(key) else key
                self.seconds[k] += time.perf_counter() - t
                self.cpu[k] += time.process_time() - c
                self.calls[k] += 1

        return wrapper

    def wrap(self, owner: Any, attr: str, key: str | Callable[..., str] | None = None) -> None:
        """Replace ``owner.attr`` by a timed wrapper (recorded in :attr:`missing` when absent)."""
        fn = getattr(owner, attr, None)
        if fn is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
            return
        self._undo.append((owner, attr, fn))
        setattr(owner, attr, self.timed(fn, key or attr))

    def reset(self) -> None:
        self.seconds.clear()
        self.cpu.clear()
        self.calls.clear()

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()

    def rows(self) -> list[dict[str, Any]]:
        """One row per :data:`STAGE_ROWS` entry that ran: ``{"stage", "key", "seconds", "cpu", "calls"}``."""
        out = []
        for key, label in STAGE_ROWS:
            name = key[5:] if key.startswith("excl:") else key
            if name not in self.seconds:
                continue
            callees = CALLEES[name] if key.startswith("excl:") else []
            sec = self.seconds[name] - sum(self.seconds.get(c, 0.0) for c in callees)
            cpu = self.cpu[name] - sum(self.cpu.get(c, 0.0) for c in callees)
            out.append({"stage": label, "key": key, "seconds": sec, "cpu": cpu, "calls": self.calls[name]})
        return out


def install_stage_clock(clock: StageClock) -> None:
    """Wrap the functions predict_folder goes through (looked up where the library calls them)."""
    import nibabel as nib

    from brainseg_tf import atomic, inference
    from brainseg_tf import io as bio

    clock.wrap(bio, "load_nifti", lambda path, *a, **k: _file_key(path))
    clock.wrap(bio, "read_case")
    clock.wrap(bio, "write_label")
    clock.wrap(bio, "save_nifti")
    clock.wrap(nib, "save", "nib.save")
    clock.wrap(atomic.os, "fsync", "fsync")
    for name in (
        "preprocess_case",
        "sliding_window",
        "probabilities_to_labels",
        "postprocess",
        "paste_back",
        "predict_folder",
    ):
        clock.wrap(inference, name)


# ----------------------------------------------------------------------------- predictors


def _recipe(config: str | None) -> dict[str, Any] | None:
    if config is None:
        return None
    from brainseg_tf.training.config import load_config

    cfg = load_config(config)
    precision = {"bfloat16": "bfloat16", "float16": "float32"}.get(cfg.runtime.mixed_precision, "float32")
    return {
        "name": cfg.model.name,
        "options": dict(cfg.model.options),
        "roi": list(cfg.pipeline.patch_size),
        "modalities": list(cfg.data.modalities),
        "precision": precision,
        "overlap": cfg.validation.overlap,
        "window": cfg.validation.window,
        "max_window_voxels": cfg.validation.max_window_voxels,
        "divisor": list(cfg.divisor),
    }


def _build_predictor(model_path: str | None, precision: str, roi: int, recipe: dict[str, Any] | None = None):
    """``(predictor, parameter count, weights)``; ``weights`` says "untrained" or where they came from."""
    import keras

    from brainseg_tf import inference, models

    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if recipe is not None:
        opts = {**recipe["options"], "in_channels": len(recipe["modalities"])}
        model = models.build(recipe["name"], **opts)
        weights = "untrained"
        if model_path is not None:
            path = Path(model_path)
            file = (
                path
                if path.suffix == ".keras"
                else next(path / n for n in ("final.keras", "best.keras") if (path / n).exists())
            )
            model.load_weights(file)
            weights = str(file)
        # The card training writes: the recipe's validation window plan and overlap (predict's defaults).
        pred = inference.Predictor.from_keras(
            model,
            None,
            modalities=recipe["modalities"],
            head=opts.get("head", "softmax"),
            roi=recipe["roi"],
            window=recipe["window"],
            overlap=recipe["overlap"],
            max_window_voxels=recipe["max_window_voxels"],
            divisor=recipe["divisor"],
        )
        return pred, model.count_params(), weights
    if model_path is None:
        model = models.build("unet", spatial_dims=3)
        return (
            inference.Predictor.from_keras(
                model, None, modalities=["flair", "t1", "t1ce", "t2"], head="softmax", roi=[roi] * 3
            ),
            model.count_params(),
            "untrained",
        )
    if precision == "float32":
        pred = inference.load_predictor(model_path)
        return pred, (pred.model.count_params() if hasattr(pred.model, "count_params") else None), model_path
    from brainseg_tf.card import find_card

    path = Path(model_path)
    card = find_card(path if path.is_dir() else path.parent)
    if card is None or card.model is None:
        return None, None, None
    options = {**card.options, "in_channels": len(card.modalities)}
    model = models.build(card.model, **options)
    weights = (
        path
        if path.suffix == ".keras"
        else next(path / n for n in ("best.keras", "final.keras") if (path / n).exists())
    )
    model.load_weights(weights)
    return inference.Predictor.from_keras(model, card), model.count_params(), str(weights)


# ----------------------------------------------------------------------------- experiments


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Fastest wall time and smallest process CPU time (all threads) of ``repeat`` calls of ``fn``.

    Also used by ``bench/vs_monai.py`` (this module imports only the standard library at load).
    """
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def _blend(windows: list[tuple[slice, ...]], shape: tuple[int, ...], y: Any, weight: Any, dtype: Any) -> Any:
    """The library's accumulation loop (``sum(w*y)/sum(w)``) with accumulators of ``dtype``."""
    import numpy as np

    total = np.zeros(shape + (y.shape[-1],), dtype=dtype)
    norm = np.zeros(shape, dtype=dtype)
    w = weight.astype(dtype)
    wy = w[..., None]
    for sl in windows:
        total[sl] += y * wy
        norm[sl] += w
    total /= norm[..., None]
    return total.astype(np.float32)


def _pad16(n: int) -> int:
    return int(-(-n // 16) * 16)


def _fused_read_crop(files: list[Path]) -> Any:
    """Read int16, find the brain box, convert and z-score only the box (the proposal of docs/speed.md)."""
    import nibabel as nib
    import numpy as np

    vols = [np.asanyarray(nib.load(str(f)).dataobj) for f in files]
    mask = vols[0] != 0
    for v in vols[1:]:
        mask |= v != 0
    box = []
    for i in range(3):
        idx = np.flatnonzero(mask.any(axis=tuple(j for j in range(3) if j != i)))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    box = tuple(box)
    m = mask[box]
    image = np.zeros(m.shape + (len(vols),), np.float32)
    for i, v in enumerate(vols):
        c = v[box].astype(np.float32)
        vals = c[m]
        image[..., i][m] = (vals - vals.mean()) / max(float(vals.std()), 1e-8)
    return image


def run_experiments(
    pred: Any,
    case_dir: str,
    roi: tuple[int, ...],
    overlap: float,
    batch_size: int,
    recipe: dict[str, Any] | None,
    repeat: int,
) -> dict[str, Any]:
    """The measured alternatives of docs/speed.md on this case: ``<name>_s`` (fastest wall) and
    ``<name>_cpu_s`` (smallest process CPU time) of ``repeat`` runs each."""
    import itertools

    import nibabel as nib
    import numpy as np

    from brainseg_tf import inference
    from brainseg_tf import io as bio
    from brainseg_tf.data.preprocess import preprocess_case

    out: dict[str, Any] = {"load_average_start": _load_average()}

    def measure(name: str, fn: Callable[[], Any], times: int = repeat, per: int = 1) -> None:
        wall, cpu = best_of(fn, times)
        out[f"{name}_s"], out[f"{name}_cpu_s"] = wall / per, cpu / per

    ref = bio.scan_case_folder(Path(case_dir))
    images = [ref.images[m] for m in ("flair", "t1", "t1ce", "t2")]
    files = images + ([ref.label] if ref.label is not None else [])

    # 1. Reading: sequential vs one thread per file (zlib releases the GIL), without the seg file,
    #    and read int16 -> crop -> float32 z-score of the box only.
    measure("read_5_sequential", lambda: [bio.load_nifti(f) for f in files])
    with concurrent.futures.ThreadPoolExecutor(len(files)) as pool:
        measure("read_5_threaded", lambda: list(pool.map(bio.load_nifti, files)))
        measure("read_4_threaded", lambda: list(pool.map(bio.load_nifti, images)))
    measure("read_case", lambda: bio.read_case(ref))
    measure("read_case_no_label", lambda: bio.read_case(ref, load_label=False))
    case = bio.read_case(ref, load_label=False)
    measure("preprocess_case", lambda: preprocess_case(case))
    measure("fused_read_crop_zscore", lambda: _fused_read_crop(images))
    pre = preprocess_case(case)
    image = pre.image
    out["brain_box"] = list(image.shape[:3])

    # 2. Forwards: one window, batch 2, two big windows, one forward of the whole (padded) box.
    starts = [inference.window_starts(max(s, r), r, overlap) for s, r in zip(image.shape[:3], roi)]
    out["windows"] = int(np.prod([len(s) for s in starts]))
    for ov in (0.25, 0.1):
        out[f"windows_overlap_{ov}"] = int(
            np.prod([len(inference.window_starts(max(s, r), r, ov)) for s, r in zip(image.shape[:3], roi)])
        )
    channels = image.shape[-1]
    window = np.zeros((1, *roi, channels), np.float32)
    measure("forward_1_window", lambda: pred(window))
    two = np.zeros((2, *roi, channels), np.float32)
    pred(two)  # trace batch 2
    measure("forward_batch2_per_window", lambda: pred(two), per=2)
    axis = int(np.argmax(image.shape[:3]))
    half = [_pad16(s) for s in image.shape[:3]]
    half[axis] = _pad16(-(-image.shape[axis] // 2) + 8)  # two windows along the longest axis, >= 16 shared
    big = np.zeros((1, *half, channels), np.float32)
    rss = _peak_rss_gib()
    pred(big)  # trace the new shape
    measure("forward_2_big_windows", lambda: pred(big), times=max(1, repeat - 1))
    out["forward_2_big_windows_s"] *= 2
    out["forward_2_big_windows_cpu_s"] *= 2
    out["big_window_shape"] = half
    out["peak_rss_after_big_windows_gb"] = _peak_rss_gib()
    box = [_pad16(s) for s in image.shape[:3]]
    whole = np.zeros((1, *box, channels), np.float32)
    whole[0, : image.shape[0], : image.shape[1], : image.shape[2]] = image
    pred(whole)  # trace the new shape
    measure("forward_whole_box", lambda: pred(whole), times=max(1, repeat - 1))
    out["whole_box_shape"] = box
    out["peak_rss_before_big_windows_gb"] = rss
    out["peak_rss_after_whole_box_gb"] = _peak_rss_gib()

    # 3. Blending: the library's float64 accumulation vs float32 on the same windows (no model).
    shape = tuple(max(s, r) for s, r in zip(image.shape[:3], roi))
    windows = [tuple(slice(a, a + r) for a, r in zip(c, roi)) for c in itertools.product(*starts)]
    y = np.random.default_rng(0).random((*roi, pred.num_outputs), dtype=np.float32)
    weight = inference.importance_map(roi)
    measure("blend_float64", lambda: _blend(windows, shape, y, weight, np.float64))
    measure("blend_float32", lambda: _blend(windows, shape, y, weight, np.float32))
    const = lambda b: np.broadcast_to(y, (len(b), *y.shape))  # noqa: E731 — a free "model"
    measure(
        "library_sliding_window_free_model",
        lambda: inference.sliding_window(const, image, roi=roi, overlap=overlap, batch_size=batch_size),
    )

    # 4. Writing a uint8 label map (a tumour-like blob): nibabel's gzip level (default 1), none, fsync.
    labels = np.zeros(case.shape, np.uint8)
    grid = np.indices((60, 60, 50)).reshape(3, -1).T
    inside = ((grid - [30, 30, 25]) ** 2).sum(1) < 25**2
    labels[90:150, 90:150, 50:100].reshape(-1)[inside] = 2
    img = nib.Nifti1Image(labels, case.affine)
    with tempfile.TemporaryDirectory(prefix="bench_write_") as tmp:
        from nibabel.openers import Opener

        level = Opener.default_compresslevel
        out["gzip_default_level"] = level
        for lv in (1, 6, 9):
            Opener.default_compresslevel = lv
            measure(f"write_gzip{lv}", lambda: nib.save(img, f"{tmp}/l.nii.gz"))
            out[f"write_gzip{lv}_bytes"] = os.path.getsize(f"{tmp}/l.nii.gz")
        Opener.default_compresslevel = level
        measure("write_uncompressed", lambda: nib.save(img, f"{tmp}/l.nii"))
        measure("write_fsync", lambda: _fsync_copy(f"{tmp}/l.nii.gz"))

    # 5. float32 vs bfloat16 forward of one window (a second model with the same weights).
    if recipe is not None and pred.model is not None:
        import keras

        from brainseg_tf import models

        other = "float32" if keras.mixed_precision.global_policy().name == "mixed_bfloat16" else "mixed_bfloat16"
        keras.mixed_precision.set_global_policy(other)
        twin = models.build(recipe["name"], **{**recipe["options"], "in_channels": len(recipe["modalities"])})
        twin.set_weights(pred.model.get_weights())
        twin_pred = inference.Predictor.from_keras(
            twin,
            None,
            modalities=recipe["modalities"],
            head=recipe["options"].get("head", "softmax"),
            roi=recipe["roi"],
        )
        twin_pred(window)
        measure(f"forward_1_window_{other}", lambda: twin_pred(window))
    out["load_average_end"] = _load_average()
    return out


def _fsync_copy(path: str) -> None:
    with open(path, "rb") as src, open(path + ".copy", "wb") as dst:
        dst.write(src.read())
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(path + ".copy", path)


# ----------------------------------------------------------------------------- worker and driver


def worker(args: argparse.Namespace) -> None:
    """One variant in this process; prints one JSON line."""
    import numpy as np

    from brainseg_tf import inference

    recipe = _recipe(args.config)
    t0 = time.perf_counter()
    pred, params, weights = _build_predictor(args.model, args.precision, args.roi, recipe)
    if pred is None:
        print(json.dumps({"skipped": "bf16 needs a run dir whose model card names the model"}))
        return
    roi = tuple(pred.roi or (args.roi,) * 3) if (args.model or recipe) else (args.roi,) * 3
    # Trace the forward at two window sizes: tf.function then serves any window from one relaxed
    # trace, as in a folder of cases whose planned windows differ (predict_folder's steady state).
    for extra in (0, 16):  # the second window larger on one axis only: no more memory than the plan
        shape = (*roi[:-1], roi[-1] + extra)
        pred(np.zeros((args.batch_size, *shape, len(pred.modalities)), np.float32))
    setup = time.perf_counter() - t0
    window = None if args.window == "card" else args.window

    clock = StageClock()
    inner = pred.fn
    shapes: list[tuple[int, ...]] = []

    def recording(batch: Any) -> Any:
        shapes.append(tuple(int(n) for n in batch.shape[1:-1]))
        return inner(batch)

    pred.fn = clock.timed(recording, "forward")
    install_stage_clock(clock)
    runs = []
    for i in range(args.repeat):
        clock.reset()
        load = _load_average()
        t1, c1 = time.perf_counter(), time.process_time()
        recs = inference.predict_folder(
            pred,
            args.case,
            Path(args.out) / str(i),
            overwrite=True,
            progress=False,
            stop_on_error=True,
            roi=window,
            overlap=args.overlap,
            batch_size=args.batch_size,
            tta=args.tta,
            mirror_axes=None if args.mirror_axes is None else tuple(args.mirror_axes),
        )
        seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
        runs.append(
            {
                "case_seconds": seconds,
                "cpu_seconds": cpu,
                "load_average": load,
                "window_forwards": clock.calls["forward"] * args.batch_size,
                "stages": clock.rows(),
            }
        )
    clock.restore()
    pred.fn = inner
    best = min(runs, key=lambda r: r["case_seconds"])
    result = {
        "tta": args.tta,
        "precision": args.precision,
        **best,
        "all_case_seconds": [r["case_seconds"] for r in runs],
        "setup_seconds": setup,
        "peak_rss_gb": _peak_rss_gib(),
        "params": params,
        "weights": weights,
        "roi": list(roi),
        "windows": sorted(set(shapes)),
        "case_id": recs[0]["case_id"],
        "not_wrapped": clock.missing,
    }
    if args.experiments:
        result["experiments"] = run_experiments(
            pred, args.case, roi, args.overlap, args.batch_size, recipe, args.repeat
        )
    print(json.dumps(result))


def format_stages(res: dict[str, Any]) -> str:
    """The stage table of one variant's result (seconds of its fastest run)."""
    total = res["case_seconds"]
    lines = [f"{'stage':<58} {'calls':>5} {'wall s':>8} {'share':>6} {'CPU s':>7}"]
    for row in res["stages"]:
        lines.append(
            f"{row['stage']:<58} {row['calls']:>5} {row['seconds']:>8.3f} {row['seconds'] / total:>6.1%} "
            f"{row['cpu']:>7.3f}"
        )
    lines.append(f"{'total (read -> write)':<58} {'':>5} {total:>8.3f} {'':>6} {res['cpu_seconds']:>7.3f}")
    return "\n".join(lines)


def run_variant(
    case: str, out: Path, tta: bool, precision: str, args: argparse.Namespace, experiments: bool = False
) -> dict[str, Any]:
    """Run one variant in a fresh process; its JSON result."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--case",
        case,
        "--precision",
        precision,
        "--roi",
        str(args.roi),
        "--window",
        args.window,
        "--batch-size",
        str(args.batch_size),
        "--repeat",
        str(args.repeat),
        "--out",
        str(out),
    ]
    cmd += ["--model", args.model] if args.model else []
    cmd += ["--config", args.config] if args.config else []
    cmd += ["--overlap", str(args.overlap)] if args.overlap is not None else []
    cmd += ["--tta"] if tta else []
    cmd += ["--mirror-axes", *map(str, args.mirror_axes)] if args.mirror_axes is not None else []
    cmd += ["--experiments"] if experiments else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"variant tta={tta} {precision} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.setdefault("tta", tta)
    res.setdefault("precision", precision)
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", help="case folder (default: a synthetic 240x240x155 case)")
    p.add_argument("--config", help="recipe whose model, roi and precision to use (e.g. configs/cpu_brats2018.json)")
    p.add_argument("--model", help="RUN_DIR, model.keras or SavedModel dir (with --config: weights for its model)")
    p.add_argument("--roi", type=int, default=128, help="window edge when the model has none (default 128)")
    p.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="window overlap (default: the model card's inference.overlap; the recipe's validation.overlap)",
    )
    p.add_argument(
        "--window",
        default="card",
        choices=["card", "patch", "auto"],
        help="card: the model card's inference.window (default); patch: windows of the training patch; "
        "auto: planned windows",
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument(
        "--mirror-axes",
        type=int,
        nargs="+",
        default=None,
        choices=[0, 1, 2],
        metavar="AXIS",
        help="TTA variants flip the subsets of these axes only (default: all 3, 8 flips; '0 1': 4 flips)",
    )
    p.add_argument(
        "--variants",
        choices=["base", "all"],
        default="all",
        help="base: only the base variant (no TTA); all: both precisions, with and without TTA (default)",
    )
    p.add_argument("--repeat", type=int, default=1, help="timed runs per variant; the fastest is reported (default 1)")
    p.add_argument("--experiments", action="store_true", help="also measure the alternatives of docs/speed.md")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tta", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error(f"--repeat {args.repeat}: must be at least 1")
    if args.worker:
        worker(args)
        return

    base_precision = _recipe(args.config)["precision"] if args.config else "float32"
    variants = [(False, base_precision)] + [v for v in VARIANTS if v != (False, base_precision)]
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        tmp = Path(tmp)
        case = args.case
        if case is None:
            t = time.perf_counter()
            case = str(make_synthetic_case(tmp / "data"))
            print(f"synthetic case written in {time.perf_counter() - t:.1f} s: {case}", flush=True)
        results = []
        for i, (tta, precision) in enumerate(variants if args.variants == "all" else variants[:1]):
            res = run_variant(
                case,
                tmp / f"pred_{precision}_{int(tta)}",
                tta,
                precision,
                args,
                experiments=args.experiments and i == 0,
            )
            results.append(res)
            if "skipped" in res:
                print(f"tta={str(tta):<5} {precision:<8}  skipped: {res['skipped']}", flush=True)
                continue
            runs = ", ".join(f"{s:.2f}" for s in res["all_case_seconds"])
            print(
                f"tta={str(tta):<5} {precision:<8}  case {res['case_seconds']:7.2f} s wall, fastest of [{runs}] "
                f"({res['cpu_seconds']:.1f} s CPU, {res['window_forwards']} window forwards; "
                f"+ build/trace {res['setup_seconds']:.1f} s)  peak RSS {res['peak_rss_gb']:.2f} GiB  "
                f"windows {res.get('windows')} x {res['window_forwards']}  params {res['params']} ({res['weights']})  load average {res['load_average']:.1f}",
                flush=True,
            )
            if i == 0:
                print(format_stages(res), flush=True)
                if res["not_wrapped"]:
                    print(f"not found, so not timed separately: {', '.join(res['not_wrapped'])}")
            if "experiments" in res:
                print("experiments: " + json.dumps(res["experiments"]), flush=True)
    base = results[0]
    print(f"case_seconds={base['case_seconds']:.3f} peak_rss_gb={base['peak_rss_gb']:.3f}")


if __name__ == "__main__":
    main()
