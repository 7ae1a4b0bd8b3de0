"""Seconds and peak memory to segment one full case end to end (read -> write), with a per-stage breakdown.

Variants: no TTA / mirror TTA (8 flips, or the subsets of ``--mirror-axes``) x float32 / ``mixed_bfloat16``. Each variant runs in its
own Python process so that its peak resident memory (``ru_maxrss``) is honest. In each process the
model is built (or loaded) and its forward pass traced on one window first; the timed part is
``read_case -> preprocess -> sliding window -> postprocess -> paste back -> write NIfTI``, run
``--repeat`` times (the fastest run is reported: the machine is shared).

    python -m bench.inference [--case CASE_DIR] [--config RECIPE.json] [--model RUN_DIR|model.keras|SAVEDMODEL_DIR]
                              [--roi 128] [--overlap 0.5] [--batch-size 1] [--variants base|all]
                              [--repeat 3] [--experiments] [--shape X Y Z]

Models: ``--config`` builds the recipe's model (``model.name``/``model.options``, roi =
``pipeline.patch_size``, precision = ``runtime.mixed_precision``, the model card training writes),
untrained unless ``--model`` gives its weights; without either, an untrained recommended 3D U-Net
(``models.build("unet", spatial_dims=3)``: 6 stages, 32-320 filters, instance norm, softmax head;
its card names the registry model, so its input-size divisor is the registry's). ``mixed_bfloat16``
applies to models built here; for ``--model`` alone it needs a run dir whose model card names the
model (rebuilt under the policy, the weights loaded), otherwise that variant is skipped.
Default case: a synthetic 240 x 240 x 155 BraTS-2021-style case (``brainseg_tf.synthetic``, seed 0;
``--shape`` writes a smaller one).

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
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    FULL_GRID,
    best_of,
    load_average,
    peak_rss_gib,
    positive_int,
    print_figures,
    run_worker,
    size_divisor,
    summary,
    synthetic_case,
    untrained_model,
    warm_up,
)

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
RECIPE_PRECISION = {"bfloat16": "bfloat16", "float16": "float32"}  # float16 has no fast CPU kernels


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
        """Replace ``owner.attr`` by a timed wrapper, and the same function wherever a brainseg_tf
        module has bound it (the library calls it through its own module's name); recorded in
        :attr:`missing` when absent."""
        fn = getattr(owner, attr, None)
        if fn is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
            return
        wrapped = self.timed(fn, key or attr)
        holders = [owner] + [
            module
            for name, module in list(sys.modules.items())
            if name.startswith("brainseg_tf") and module is not owner and getattr(module, attr, None) is fn
        ]
        for holder in holders:
            self._undo.append((holder, attr, fn))
            setattr(holder, attr, wrapped)

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
    """Wrap the functions predict_folder goes through."""
    import nibabel as nib

    from brainseg_tf import atomic, inference
    from brainseg_tf import io as bio
    from brainseg_tf.data import preprocess

    clock.wrap(bio, "load_nifti", lambda path, *a, **k: _file_key(path))
    clock.wrap(bio, "read_case")
    clock.wrap(bio, "write_label")
    clock.wrap(bio, "save_nifti")
    clock.wrap(nib, "save", "nib.save")
    clock.wrap(atomic.os, "fsync", "fsync")
    clock.wrap(preprocess, "preprocess_case")
    clock.wrap(preprocess, "paste_back")
    for name in ("sliding_window", "probabilities_to_labels", "postprocess", "predict_folder"):
        clock.wrap(inference, name)


# ----------------------------------------------------------------------------- predictors


def recipe_precision(config: str) -> str:
    """The variant precision of a recipe's ``runtime.mixed_precision`` (float16 runs as float32 on CPU)."""
    from brainseg_tf.training.config import load_config

    return RECIPE_PRECISION.get(load_config(config).runtime.mixed_precision, "float32")


def _weights_file(path: Path, names: tuple[str, ...] = ("final.keras", "best.keras")) -> Path:
    return path if path.suffix == ".keras" else next(path / n for n in names if (path / n).exists())


def _recipe_predictor(config: str, model_path: str | None) -> tuple[Any, int, str]:
    """The recipe's model under the current policy, with the card training writes; weights loaded from ``model_path``."""
    from brainseg_tf import inference

    model, card = untrained_model(config, recipe_precision=False)
    weights = "untrained"
    if model_path is not None:
        file = _weights_file(Path(model_path))
        model.load_weights(file)
        weights = str(file)
    return inference.Predictor.from_keras(model, card), model.count_params(), weights


def _default_predictor(roi: int) -> tuple[Any, int, str]:
    """The untrained recommended 3D U-Net, with a card naming its registry model and options."""
    from brainseg_tf import inference, models
    from brainseg_tf.card import ModelCard

    spec, options = models.get_spec("unet"), {"spatial_dims": 3}
    card = ModelCard(
        modalities=list(spec.default_modalities),
        head=spec.head(options),
        logits=spec.logits(options),
        roi=[roi] * 3,
        model="unet",
        options=options,
    )
    model = models.build("unet", **options)
    return inference.Predictor.from_keras(model, card), model.count_params(), "untrained"


def _build_predictor(model_path: str | None, precision: str, roi: int, config: str | None = None):
    """``(predictor, parameter count, weights)``; ``weights`` says "untrained" or where they came from.

    ``(None, None, None)`` when bfloat16 is asked of a model whose card does not name its builder.
    """
    import keras

    from brainseg_tf import inference, models
    from brainseg_tf.card import find_card

    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if config is not None:
        return _recipe_predictor(config, model_path)
    if model_path is None:
        return _default_predictor(roi)
    if precision == "float32":
        pred = inference.load_predictor(model_path)
        return pred, (pred.model.count_params() if hasattr(pred.model, "count_params") else None), model_path
    path = Path(model_path)
    card = find_card(path if path.is_dir() else path.parent)
    if card is None or card.model is None:
        return None, None, None
    model = models.build(card.model, **{**card.options, "in_channels": len(card.modalities)})
    weights = _weights_file(path, ("best.keras", "final.keras"))
    model.load_weights(weights)
    return inference.Predictor.from_keras(model, card), model.count_params(), str(weights)


# ----------------------------------------------------------------------------- experiments


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


def _round_up(n: int, divisor: int) -> int:
    return int(-(-n // divisor) * divisor)


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


class Experiments:
    """The measured alternatives of docs/speed.md on one case: ``<name>_s`` (fastest wall) and
    ``<name>_cpu_s`` (smallest process CPU time) of ``repeat`` runs each, in :attr:`out`."""

    def __init__(self, pred: Any, roi: tuple[int, ...], overlap: float, batch_size: int, repeat: int) -> None:
        self.pred, self.roi, self.overlap, self.batch_size, self.repeat = pred, roi, overlap, batch_size, repeat
        self.out: dict[str, Any] = {"load_average_start": load_average()}

    def measure(self, name: str, fn: Callable[[], Any], times: int | None = None, per: int = 1) -> None:
        wall, cpu = best_of(fn, times or self.repeat)
        self.out[f"{name}_s"], self.out[f"{name}_cpu_s"] = wall / per, cpu / per

    def reading(self, case_dir: str) -> tuple[Any, Any]:
        """Sequential vs one thread per file (zlib releases the GIL), without the seg file, and
        read int16 -> crop -> float32 z-score of the box only. Returns ``(case, preprocessed)``."""
        from brainseg_tf import io as bio
        from brainseg_tf.data.preprocess import preprocess_case

        ref = bio.scan_case_folder(Path(case_dir))
        images = [ref.images[m] for m in ("flair", "t1", "t1ce", "t2")]
        files = images + ([ref.label] if ref.label is not None else [])
        self.measure("read_5_sequential", lambda: [bio.load_nifti(f) for f in files])
        with concurrent.futures.ThreadPoolExecutor(len(files)) as pool:
            self.measure("read_5_threaded", lambda: list(pool.map(bio.load_nifti, files)))
            self.measure("read_4_threaded", lambda: list(pool.map(bio.load_nifti, images)))
        self.measure("read_case", lambda: bio.read_case(ref))
        self.measure("read_case_no_label", lambda: bio.read_case(ref, load_label=False))
        case = bio.read_case(ref, load_label=False)
        self.measure("preprocess_case", lambda: preprocess_case(case))
        self.measure("fused_read_crop_zscore", lambda: _fused_read_crop(images))
        pre = preprocess_case(case)
        self.out["brain_box"] = list(pre.image.shape[:3])
        return case, pre

    def forwards(self, image: Any) -> None:
        """One window, batch 2, two big windows, one forward of the whole (padded) box; the big
        windows are multiples of the model's input-size divisor (skipped when it is unknown)."""
        import numpy as np

        from brainseg_tf import inference

        pred, roi, out = self.pred, self.roi, self.out

        def count(ov: float) -> int:
            return math.prod(len(inference.window_starts(max(s, r), r, ov)) for s, r in zip(image.shape[:3], roi))

        out["windows"] = count(self.overlap)
        for ov in (0.25, 0.1):
            out[f"windows_overlap_{ov}"] = count(ov)
        channels = image.shape[-1]
        window = np.zeros((1, *roi, channels), np.float32)
        self.measure("forward_1_window", lambda: pred(window))
        two = np.zeros((2, *roi, channels), np.float32)
        pred(two)  # trace batch 2
        self.measure("forward_batch2_per_window", lambda: pred(two), per=2)
        divisor = size_divisor(pred)
        if divisor is None:
            return
        axis = int(np.argmax(image.shape[:3]))
        half = [_round_up(s, d) for s, d in zip(image.shape[:3], divisor)]
        # Two windows along the longest axis, sharing at least 16 voxels.
        half[axis] = _round_up(-(-image.shape[axis] // 2) + 8, divisor[axis])
        big = np.zeros((1, *half, channels), np.float32)
        out["peak_rss_before_big_windows_gb"] = peak_rss_gib()
        pred(big)  # trace the new shape
        self.measure("forward_2_big_windows", lambda: pred(big), times=max(1, self.repeat - 1))
        out["forward_2_big_windows_s"] *= 2
        out["forward_2_big_windows_cpu_s"] *= 2
        out["big_window_shape"] = half
        out["peak_rss_after_big_windows_gb"] = peak_rss_gib()
        box = [_round_up(s, d) for s, d in zip(image.shape[:3], divisor)]
        whole = np.zeros((1, *box, channels), np.float32)
        whole[0, : image.shape[0], : image.shape[1], : image.shape[2]] = image
        pred(whole)  # trace the new shape
        self.measure("forward_whole_box", lambda: pred(whole), times=max(1, self.repeat - 1))
        out["whole_box_shape"] = box
        out["peak_rss_after_whole_box_gb"] = peak_rss_gib()

    def blending(self, image: Any) -> None:
        """The library's float64 accumulation vs float32 on the same windows (no model)."""
        import itertools

        import numpy as np

        from brainseg_tf import inference

        roi = self.roi
        starts = [inference.window_starts(max(s, r), r, self.overlap) for s, r in zip(image.shape[:3], roi)]
        shape = tuple(max(s, r) for s, r in zip(image.shape[:3], roi))
        windows = [tuple(slice(a, a + r) for a, r in zip(c, roi)) for c in itertools.product(*starts)]
        y = np.random.default_rng(0).random((*roi, self.pred.num_outputs), dtype=np.float32)
        weight = inference.importance_map(roi)
        self.measure("blend_float64", lambda: _blend(windows, shape, y, weight, np.float64))
        self.measure("blend_float32", lambda: _blend(windows, shape, y, weight, np.float32))
        const = lambda b: np.broadcast_to(y, (len(b), *y.shape))  # noqa: E731 — a free "model"
        self.measure(
            "library_sliding_window_free_model",
            lambda: inference.sliding_window(
                const, image, window=roi, overlap=self.overlap, batch_size=self.batch_size
            ),
        )

    def writing(self, case: Any) -> None:
        """Writing a uint8 label map (a tumour-like blob): nibabel's gzip level (default 1), none, fsync."""
        import nibabel as nib
        import numpy as np
        from nibabel.openers import Opener

        labels = np.zeros(case.shape, np.uint8)
        centre = [s // 2 for s in case.shape]
        grid = np.indices(case.shape, sparse=True)
        radius = min(25, *(s // 4 for s in case.shape))
        labels[sum((g - c) ** 2 for g, c in zip(grid, centre)) < radius**2] = 2
        img = nib.Nifti1Image(labels, case.affine)
        with tempfile.TemporaryDirectory(prefix="bench_write_") as tmp:
            level = Opener.default_compresslevel
            self.out["gzip_default_level"] = level
            for lv in (1, 6, 9):
                Opener.default_compresslevel = lv
                self.measure(f"write_gzip{lv}", lambda: nib.save(img, f"{tmp}/l.nii.gz"))
                self.out[f"write_gzip{lv}_bytes"] = os.path.getsize(f"{tmp}/l.nii.gz")
            Opener.default_compresslevel = level
            self.measure("write_uncompressed", lambda: nib.save(img, f"{tmp}/l.nii"))
            self.measure("write_fsync", lambda: _fsync_copy(f"{tmp}/l.nii.gz"))

    def other_precision(self, config: str) -> None:
        """float32 vs bfloat16 forward of one window (a second recipe model with the same weights)."""
        import keras
        import numpy as np

        from brainseg_tf import inference

        other = "float32" if keras.mixed_precision.global_policy().name == "mixed_bfloat16" else "mixed_bfloat16"
        keras.mixed_precision.set_global_policy(other)
        twin, card = untrained_model(config, recipe_precision=False)
        twin.set_weights(self.pred.model.get_weights())
        twin_pred = inference.Predictor.from_keras(twin, card)
        window = np.zeros((1, *self.roi, len(self.pred.modalities)), np.float32)
        twin_pred(window)
        self.measure(f"forward_1_window_{other}", lambda: twin_pred(window))


def run_experiments(
    pred: Any, case_dir: str, roi: tuple[int, ...], overlap: float, batch_size: int, config: str | None, repeat: int
) -> dict[str, Any]:
    """Every :class:`Experiments` step on ``case_dir``; the figures."""
    exp = Experiments(pred, roi, overlap, batch_size, repeat)
    case, pre = exp.reading(case_dir)
    exp.forwards(pre.image)
    exp.blending(pre.image)
    exp.writing(case)
    if config is not None and pred.model is not None:
        exp.other_precision(config)
    exp.out["load_average_end"] = load_average()
    return exp.out


def _fsync_copy(path: str) -> None:
    with open(path, "rb") as src, open(path + ".copy", "wb") as dst:
        dst.write(src.read())
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(path + ".copy", path)


# ----------------------------------------------------------------------------- worker and driver


def _timed_runs(pred: Any, args: argparse.Namespace, clock: StageClock) -> tuple[list[dict], list, list[tuple]]:
    """``--repeat`` timed predict_folder runs with the stage clock installed; ``(runs, records, window shapes)``."""
    from brainseg_tf import inference

    inner = pred.fn
    shapes: list[tuple[int, ...]] = []

    def recording(batch: Any) -> Any:
        shapes.append(tuple(int(n) for n in batch.shape[1:-1]))
        return inner(batch)

    pred.fn = clock.timed(recording, "forward")
    install_stage_clock(clock)
    runs, recs = [], []
    try:
        for i in range(args.repeat):
            clock.reset()
            load = load_average()
            t1, c1 = time.perf_counter(), time.process_time()
            recs = inference.predict_folder(
                pred,
                args.case,
                Path(args.out) / str(i),
                overwrite=True,
                progress=False,
                stop_on_error=True,
                roi=None if args.window == "card" else args.window,
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
    finally:
        clock.restore()
        pred.fn = inner
    return runs, recs, sorted(set(shapes))


def worker(args: argparse.Namespace) -> None:
    """One variant in this process; prints one JSON line."""
    t0 = time.perf_counter()
    pred, params, weights = _build_predictor(args.model, args.precision, args.roi, args.config)
    if pred is None:
        print(json.dumps({"skipped": "bf16 needs a run dir whose model card names the model"}))
        return
    roi = tuple(pred.roi or (args.roi,) * 3)
    warm_up(pred, roi, args.batch_size)
    setup = time.perf_counter() - t0
    clock = StageClock()
    runs, recs, windows = _timed_runs(pred, args, clock)
    best = min(runs, key=lambda r: r["case_seconds"])
    result = {
        "tta": args.tta,
        "precision": args.precision,
        **best,
        "all_case_seconds": [r["case_seconds"] for r in runs],
        "setup_seconds": setup,
        "peak_rss_gb": peak_rss_gib(),
        "params": params,
        "weights": weights,
        "roi": list(roi),
        "windows": windows,
        "case_id": recs[0]["case_id"],
        "not_wrapped": clock.missing,
    }
    if args.experiments:
        overlap = pred.inference.overlap if args.overlap is None else args.overlap
        result["experiments"] = run_experiments(
            pred, args.case, roi, overlap, args.batch_size, args.config, args.repeat
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
    cmd = ["--worker", "--case", case, "--precision", precision, "--roi", args.roi, "--window", args.window]
    cmd += ["--batch-size", args.batch_size, "--repeat", args.repeat, "--out", out]
    cmd += ["--model", args.model] if args.model else []
    cmd += ["--config", args.config] if args.config else []
    cmd += ["--overlap", args.overlap] if args.overlap is not None else []
    cmd += ["--tta"] if tta else []
    cmd += ["--mirror-axes", *args.mirror_axes] if args.mirror_axes is not None else []
    cmd += ["--experiments"] if experiments else []
    res = run_worker("bench.inference", cmd, f"variant tta={tta} {precision}")
    res.setdefault("tta", tta)
    res.setdefault("precision", precision)
    return res


def _print_variant(res: dict[str, Any], tta: bool, precision: str, first: bool) -> None:
    if "skipped" in res:
        print(f"tta={str(tta):<5} {precision:<8}  skipped: {res['skipped']}", flush=True)
        return
    runs = ", ".join(f"{s:.2f}" for s in res["all_case_seconds"])
    print(
        f"tta={str(tta):<5} {precision:<8}  case {res['case_seconds']:7.2f} s wall, fastest of [{runs}] "
        f"({res['cpu_seconds']:.1f} s CPU, {res['window_forwards']} window forwards; "
        f"+ build/trace {res['setup_seconds']:.1f} s)  peak RSS {res['peak_rss_gb']:.2f} GiB  "
        f"windows {res.get('windows')} x {res['window_forwards']}  params {res['params']} ({res['weights']})  "
        f"load average {res['load_average']:.1f}",
        flush=True,
    )
    if first:
        print(format_stages(res), flush=True)
        if res["not_wrapped"]:
            print(f"not found, so not timed separately: {', '.join(res['not_wrapped'])}")
    if "experiments" in res:
        print("experiments: " + json.dumps(res["experiments"]), flush=True)


def parser() -> argparse.ArgumentParser:
    """The command line (shared by the driver and its worker processes)."""
    p = argparse.ArgumentParser(description=summary(__doc__))
    p.add_argument("--case", help="case folder (default: a synthetic 240x240x155 case)")
    p.add_argument("--shape", type=int, nargs=3, default=FULL_GRID, help="grid of the synthetic default case")
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
    p.add_argument("--batch-size", type=positive_int, default=1)
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
    p.add_argument(
        "--repeat", type=positive_int, default=1, help="timed runs per variant; the fastest is reported (default 1)"
    )
    p.add_argument("--experiments", action="store_true", help="also measure the alternatives of docs/speed.md")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tta", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.worker:
        worker(args)
        return
    base_precision = recipe_precision(args.config) if args.config else "float32"
    variants = [(False, base_precision)] + [v for v in VARIANTS if v != (False, base_precision)]
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        tmp = Path(tmp)
        case = args.case
        if case is None:
            t = time.perf_counter()
            case = str(synthetic_case(tmp / "data", seed=0, shape=args.shape))
            print(f"synthetic case written in {time.perf_counter() - t:.1f} s: {case}", flush=True)
        results = []
        for i, (tta, precision) in enumerate(variants if args.variants == "all" else variants[:1]):
            out = tmp / f"pred_{precision}_{int(tta)}"
            res = run_variant(case, out, tta, precision, args, experiments=args.experiments and i == 0)
            results.append(res)
            _print_variant(res, tta, precision, first=i == 0)
    base = results[0]
    print_figures({"case_seconds": base["case_seconds"], "peak_rss_gb": base["peak_rss_gb"]})


if __name__ == "__main__":
    main()
