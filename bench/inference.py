"""Seconds and peak memory to segment one full case end to end (read -> write), four variants.

Variants: no TTA / mirror TTA (8 flips) x float32 / ``mixed_bfloat16``. Each variant runs in its
own Python process so that its peak resident memory (``ru_maxrss``) is honest. In each process the
model is built (or loaded) and its forward pass traced on one window first; the timed part is
``read_case -> preprocess -> sliding window -> postprocess -> paste back -> write NIfTI``.

    python bench/inference.py [--case CASE_DIR] [--model RUN_DIR|model.keras|SAVEDMODEL_DIR]
                              [--roi 128] [--overlap 0.5] [--batch-size 1] [--variants base|all]

Defaults: a synthetic 240 x 240 x 155 BraTS-2021-style case (``brainseg_tf.synthetic``, seed 0)
and an untrained recommended 3D U-Net (``models.build("unet", spatial_dims=3)``: 6 stages,
32-320 filters, instance norm, softmax head). ``mixed_bfloat16`` applies to models built here; for
``--model`` it needs a run dir whose model card names the model (rebuilt under the policy, the
weights loaded), otherwise that variant is skipped.

The last line is machine-readable (no TTA, float32):
``case_seconds=<float> peak_rss_gb=<float>`` (GiB of the whole process, TF runtime included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = [(False, "float32"), (False, "bfloat16"), (True, "float32"), (True, "bfloat16")]


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux


def make_synthetic_case(root: Path) -> Path:
    """Write synthetic case 0 (240 x 240 x 155, int16, BraTS 2021 names) under ``root``."""
    from brainseg_tf import io as bio
    from brainseg_tf.synthetic import synthesize_case

    sc = synthesize_case(0)
    ref = bio.write_case(root, "brats2021", "BraTS2021_00000", sc.images, sc.label, sc.affine)
    return Path(ref.images["flair"]).parent


def _build_predictor(model_path: str | None, precision: str, roi: int):
    import keras

    from brainseg_tf import inference, models

    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if model_path is None:
        model = models.build("unet", spatial_dims=3)
        return (inference.Predictor.from_keras(model, None, modalities=["flair", "t1", "t1ce", "t2"], head="softmax",
                                               roi=[roi] * 3), model.count_params())
    if precision == "float32":
        pred = inference.load_predictor(model_path)
        return pred, (pred.model.count_params() if hasattr(pred.model, "count_params") else None)
    from brainseg_tf.card import find_card

    path = Path(model_path)
    card = find_card(path if path.is_dir() else path.parent)
    if card is None or card.model is None:
        return None, None
    options = {**card.options, "in_channels": len(card.modalities)}
    model = models.build(card.model, **options)
    weights = path if path.suffix == ".keras" else next(path / n for n in ("best.keras", "final.keras") if (path / n).exists())
    model.load_weights(weights)
    return inference.Predictor.from_keras(model, card), model.count_params()


def worker(args: argparse.Namespace) -> None:
    """One variant in this process; prints one JSON line."""
    import numpy as np

    from brainseg_tf import inference

    t0 = time.perf_counter()
    pred, params = _build_predictor(args.model, args.precision, args.roi)
    if pred is None:
        print(json.dumps({"skipped": "bf16 needs a run dir whose model card names the model"}))
        return
    roi = tuple(pred.roi or (args.roi,) * 3) if args.model else (args.roi,) * 3
    pred(np.zeros((args.batch_size, *roi, len(pred.modalities)), np.float32))  # trace once
    setup = time.perf_counter() - t0
    forwards = []
    inner = pred.fn
    pred.fn = lambda batch: forwards.append(len(batch)) or inner(batch)
    out_dir = Path(args.out)
    t1, c1 = time.perf_counter(), time.process_time()
    recs = inference.predict_folder(
        pred, args.case, out_dir, overwrite=True, progress=False, stop_on_error=True, roi=roi,
        overlap=args.overlap, batch_size=args.batch_size, tta=args.tta,
    )
    seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
    print(json.dumps({
        "tta": args.tta, "precision": args.precision, "case_seconds": seconds, "cpu_seconds": cpu,
        "window_forwards": sum(forwards), "setup_seconds": setup,
        "peak_rss_gb": _peak_rss_gib(), "params": params, "roi": list(roi), "case_id": recs[0]["case_id"],
    }))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", help="case folder (default: a synthetic 240x240x155 case)")
    p.add_argument("--model", help="RUN_DIR, model.keras or SavedModel dir (default: untrained 3D U-Net)")
    p.add_argument("--roi", type=int, default=128, help="window edge when the model has none (default 128)")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--variants", choices=["base", "all"], default="all",
                   help="base: only no-TTA float32; all: +bf16, +TTA (default)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tta", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        tmp = Path(tmp)
        case = args.case
        if case is None:
            t = time.perf_counter()
            case = str(make_synthetic_case(tmp / "data"))
            print(f"synthetic case written in {time.perf_counter() - t:.1f} s: {case}", flush=True)
        results = []
        for tta, precision in VARIANTS if args.variants == "all" else VARIANTS[:1]:
            cmd = [sys.executable, __file__, "--worker", "--case", case, "--precision", precision,
                   "--roi", str(args.roi), "--overlap", str(args.overlap), "--batch-size", str(args.batch_size),
                   "--out", str(tmp / f"pred_{precision}_{int(tta)}")]
            cmd += ["--model", args.model] if args.model else []
            cmd += ["--tta"] if tta else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"variant tta={tta} {precision} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res.setdefault("tta", tta)
            res.setdefault("precision", precision)
            results.append(res)
            if "skipped" in res:
                print(f"tta={str(tta):<5} {precision:<8}  skipped: {res['skipped']}", flush=True)
            else:
                print(f"tta={str(tta):<5} {precision:<8}  case {res['case_seconds']:7.1f} s wall "
                      f"({res['cpu_seconds']:.1f} s CPU, {res['window_forwards']} window forwards; "
                      f"+ build/trace {res['setup_seconds']:.1f} s)  peak RSS {res['peak_rss_gb']:.2f} GiB  "
                      f"roi {res['roi']}  params {res['params']}", flush=True)
    base = results[0]
    print(f"case_seconds={base['case_seconds']:.3f} peak_rss_gb={base['peak_rss_gb']:.3f}")


if __name__ == "__main__":
    main()
