"""Keras backend vs ONNX Runtime backend on one real case: equivalence and seconds per case.

    python -m bench.onnx [--case CASE_DIR] [--config configs/cpu_brats2018.json | --model RUN_DIR]
                         [--overlap 0.5] [--repeats 2] [--out result.json]

The model is the recipe's (``training.factories.build_model``: for ``configs/cpu_brats2018.json``
the 3D U-Net, depth 4, 16-256 filters, instance norm, sigmoid WT/TC/ET head, 96^3 roi) with its
*initial, untrained* weights (seeded) unless ``--model`` names a trained run: equivalence and
speed do not depend on training, only the Dice would. It is written as a run directory (``.keras``
+ card), exported with ``export_model(format="onnx")`` (timed), and both backends segment the
case with the same :func:`brainseg_tf.inference.predict_case` (same preprocessing, sliding
window, postprocessing); only the forward pass differs. Each backend is warmed up on one window,
then the two run alternately ``--repeats`` times (so a load change on a shared machine hits both);
the timed part is read -> preprocess -> sliding window -> postprocess -> paste back.

Reported: max |p_onnx - p_keras| over every voxel and channel of the whole case (native grid), the
share of voxels with the same label, seconds per case for each backend (median and min of the
repeats) and their ratio, threads, load average. The line before the last is machine-readable:
``max_abs_prob_diff=<float> label_agreement_pct=<float> keras_median_s=<float>
onnxruntime_median_s=<float> onnx_over_keras=<float>``; the last line is the whole result as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CONFIGS, DEFAULT_CASE, positive_int, print_figures, summary, untrained_run_dir

DEFAULT_CONFIG = CONFIGS / "cpu_brats2018.json"


def run(case_dir: Path, run_dir: Path, work: Path, *, overlap: float, repeats: int) -> dict:
    import numpy as np

    from brainseg_tf.export import export_model
    from brainseg_tf.inference import load_predictor, onnx_session, predict_case

    start = time.perf_counter()
    export = export_model(run_dir, work / "onnx", format="onnx")
    export_seconds = time.perf_counter() - start
    predictors = {"keras": load_predictor(run_dir), "onnxruntime": load_predictor(export["out_dir"])}
    roi = predictors["keras"].roi
    window = np.zeros((1, *roi, len(predictors["keras"].modalities)), np.float32)
    for pred in predictors.values():  # trace / build the session's kernels once, outside the clock
        pred(window)
    seconds: dict[str, list[float]] = {name: [] for name in predictors}
    results = {}
    for _ in range(repeats):
        for name, pred in predictors.items():
            result = predict_case(pred, case_dir, overlap=overlap, return_probabilities=True)
            seconds[name].append(result.seconds)
            results[name] = result
    keras_res, onnx_res = results["keras"], results["onnxruntime"]
    diff = np.abs(onnx_res.probabilities - keras_res.probabilities)
    same = keras_res.labels == onnx_res.labels
    summary = {name: {"median_s": statistics.median(s), "min_s": min(s), "runs": s} for name, s in seconds.items()}
    return {
        "case": case_dir.name,
        "shape": list(keras_res.labels.shape),
        "model": str(run_dir),
        "roi": list(roi),
        "overlap": overlap,
        "head": keras_res.head,
        "export_seconds": export_seconds,
        "export_check_max_abs_diff": export["max_abs_diff"],
        "max_abs_prob_diff": float(diff.max()),
        "mean_abs_prob_diff": float(diff.mean()),
        "label_agreement_pct": 100.0 * float(same.mean()),
        "differing_voxels": int((~same).sum()),
        "tumour_voxels_keras": int((keras_res.labels > 0).sum()),
        "seconds": summary,
        "onnx_over_keras": summary["onnxruntime"]["median_s"] / summary["keras"]["median_s"],
        "ort_threads": onnx_session(export["onnx"]).get_session_options().intra_op_num_threads,
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_1min_end": os.getloadavg()[0],
    }


def _float64_twin(model):
    """The Keras model rebuilt with float64 layers and the same weights: the exact reference."""
    import keras
    import numpy as np

    def f64(c):
        if isinstance(c, list):
            return [f64(v) for v in c]
        if not isinstance(c, dict):
            return c
        if c.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return "float64"
        return {k: f64(v) for k, v in c.items()}

    twin = keras.saving.deserialize_keras_object(f64(keras.saving.serialize_keras_object(model)))
    twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
    return twin


def exactness(case_dir: Path, run_dir: Path, onnx_file: Path, *, worst: int = 2) -> dict:
    """Keras vs ONNX on every window of the preprocessed case (overlap 0.5), and both against the
    float64 model on the ``worst`` windows: which backend carries the difference."""
    import itertools

    import numpy as np

    from brainseg_tf import io as bio
    from brainseg_tf.card import load_card
    from brainseg_tf.data.preprocess import preprocess_case
    from brainseg_tf.inference import load_keras_model, onnx_session, window_starts

    card = load_card(run_dir)
    model = load_keras_model(next(p for p in (run_dir / "best.keras", run_dir / "final.keras") if p.is_file()))
    session = onnx_session(onnx_file)
    roi = tuple(card.roi)
    image = preprocess_case(bio.read_case(case_dir), **card.preprocessing.case_options()).image
    pad = [max(r - d, 0) for r, d in zip(roi, image.shape[:3])]
    image = np.pad(image, [(p // 2, p - p // 2) for p in pad] + [(0, 0)])
    windows = []
    for corner in itertools.product(*[window_starts(d, r, 0.5) for d, r in zip(image.shape[:3], roi)]):
        x = image[(None, *[slice(c, c + r) for c, r in zip(corner, roi)])].astype(np.float32)
        diff = float(np.abs(session.run(None, {"image": x})[0] - np.asarray(model(x, training=False))).max())
        windows.append((diff, corner, x))
    windows.sort(key=lambda w: -w[0])
    twin = _float64_twin(model)
    rows = []
    for diff, corner, x in windows[:worst]:
        exact = np.asarray(twin(x.astype(np.float64), training=False))
        rows.append(
            {
                "window": list(corner),
                "keras_vs_onnx": diff,
                "keras_vs_float64": float(np.abs(np.asarray(model(x, training=False)) - exact).max()),
                "onnx_vs_float64": float(np.abs(session.run(None, {"image": x})[0] - exact).max()),
            }
        )
    return {"windows": len(windows), "max_keras_vs_onnx_per_window": [w[0] for w in windows], "worst": rows}


def _table(r: dict) -> str:
    k, o = r["seconds"]["keras"], r["seconds"]["onnxruntime"]
    return "\n".join(
        [
            f"case {r['case']} {r['shape']}, roi {r['roi']}, overlap {r['overlap']}, {r['head']} head",
            f"max |p_onnx - p_keras| over the case: {r['max_abs_prob_diff']:.2e} (mean {r['mean_abs_prob_diff']:.2e}); "
            f"export check {r['export_check_max_abs_diff']:.2e}",
            f"same label: {r['label_agreement_pct']:.4f} % ({r['differing_voxels']} voxels differ; "
            f"{r['tumour_voxels_keras']} tumour voxels under Keras)",
            "| backend | s/case (median) | min | runs |",
            "|---|---|---|---|",
            f"| Keras (TF) | {k['median_s']:.1f} | {k['min_s']:.1f} | {len(k['runs'])} |",
            f"| ONNX Runtime ({r['ort_threads']} threads) | {o['median_s']:.1f} | {o['min_s']:.1f} | {len(o['runs'])} |",
            f"ONNX / Keras time ratio: {r['onnx_over_keras']:.2f}; export {r['export_seconds']:.1f} s; "
            f"load average at the end {r['load_average_1min_end']:.1f} on {r['cpus']} CPUs",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=summary(__doc__))
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="recipe whose untrained model is used")
    parser.add_argument("--model", type=Path, default=None, help="a trained RUN_DIR instead of the recipe's model")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--repeats", type=positive_int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    parser.add_argument(
        "--exactness",
        action="store_true",
        help="also compare both backends with the float64 model on the worst windows",
    )
    args = parser.parse_args(argv)
    if not args.case.is_dir():
        print(f"error: {args.case}: case folder not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        work = Path(tmp)
        run_dir = args.model or untrained_run_dir(args.config, work / "run")
        result = run(args.case, run_dir, work, overlap=args.overlap, repeats=args.repeats)
        if args.exactness:
            result["exactness"] = exactness(args.case, run_dir, work / "onnx" / "model.onnx")
    result["trained"] = args.model is not None
    print(_table(result))
    print_figures(
        {
            "max_abs_prob_diff": result["max_abs_prob_diff"],
            "label_agreement_pct": result["label_agreement_pct"],
            "keras_median_s": result["seconds"]["keras"]["median_s"],
            "onnxruntime_median_s": result["seconds"]["onnxruntime"]["median_s"],
            "onnx_over_keras": result["onnx_over_keras"],
        },
        ".4g",
    )
    if args.out is not None:
        from brainseg_tf import atomic

        atomic.write_json(args.out, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
