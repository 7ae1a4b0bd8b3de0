"""Soak: resident memory over many predictions in one process (issue 11: "nothing leaks").

Two phases in one Python process, one model loaded once:

1. the same real case predicted ``--repeats`` times (default 100), read -> write each time
   (:func:`brainseg_tf.inference.predict_folder` with ``overwrite=True``);
2. a folder of ``--folder`` cases (default 20) predicted case by case: the real BraTS 2018 cases
   of ``--data`` (18 in ``../shared/data/brats2018``), cycled through under new ids
   (``<id>_soakN`` symlinks to the real case folders in a temporary folder) where more are asked for.

The resident set size (``VmRSS`` of ``/proc/self/status``) is read after every case. The model is
the recipe's (default ``configs/cpu_brats2018.json``: 3D U-Net, depth 4, 16-256 filters, sigmoid
head, 96^3 windows, ``mixed_bfloat16`` as the recipe trains) built **untrained** -- the weights do
not change the memory a prediction needs -- or a trained ``--model RUN_DIR``; ``--small`` builds
it with 8-64 filters for a quick run.

    python -m bench.soak [--data DIR] [--case CASE_ID] [--repeats 100] [--folder 20]
                         [--overlap 0.5] [--recipe configs/cpu_brats2018.json] [--model RUN_DIR]
                         [--small] [--json OUT.json]

The last line is machine-readable: ``rss_case10_mb=<f> rss_case100_mb=<f> delta_mb=<f>`` (phase 1,
after the 10th and the last repeat; the bar is ``delta_mb < 50``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    CONFIGS,
    DEFAULT_CASE_ID,
    SHARED_BRATS2018,
    positive_int,
    print_figures,
    rss_mb,
    summary,
    untrained_model,
)

LEAK_BAR_MB = 50.0
SMALL = {"model.options.base_filters": 8, "model.options.max_filters": 64}


def build_predictor(recipe: Path, model: Path | None, small: bool) -> Any:
    """The recipe's model, untrained, with the card training would write; or a trained ``model``."""
    from brainseg_tf import inference

    if model is not None:
        return inference.load_predictor(model)
    keras_model, card = untrained_model(recipe, SMALL if small else None)
    return inference.Predictor.from_keras(keras_model, card)


def soak_folder(root: Path, n: int, tmp: Path) -> Path:
    """A dataset folder of ``n`` case folders: symlinks to ``root``'s cases, cycled under new ids."""
    from brainseg_tf import io as bio

    ids = bio.open_dataset(root).case_ids
    folder = tmp / "soak_cases"
    folder.mkdir()
    for i in range(n):
        cid = ids[i % len(ids)]
        name = cid if i < len(ids) else f"{cid}_soak{i // len(ids)}"
        os.symlink(root / cid, folder / name)
    return folder


def run_cases(
    pred: Any,
    source: Path,
    out: Path,
    case_ids: list[str],
    overlap: float,
    label: str,
    curve: list[dict],
    checkpoint: Callable[[], None],
) -> list[dict]:
    """Predict ``case_ids`` of ``source`` one after the other; append RSS and seconds after each to ``curve``.

    ``checkpoint`` runs after every case (the partial curves are written, so that an interrupted
    soak still leaves its measurements).
    """
    from brainseg_tf.inference import predict_folder

    for i, cid in enumerate(case_ids, 1):
        t0 = time.perf_counter()
        rec = predict_folder(
            pred, source, out, overwrite=True, progress=False, stop_on_error=True, case_ids=[cid], overlap=overlap
        )[0]
        curve.append({"case": i, "case_id": cid, "seconds": time.perf_counter() - t0, "rss_mb": rss_mb()})
        if rec["status"] != "written":
            raise RuntimeError(f"{cid}: not written: {rec}")
        checkpoint()
        if i <= 3 or i % 10 == 0 or i == len(case_ids):
            print(
                f"{label} {i:4d}/{len(case_ids)} {cid:28s} {curve[-1]['seconds']:6.1f} s  "
                f"RSS {curve[-1]['rss_mb']:8.1f} MiB",
                flush=True,
            )
    return curve


def _at(curve: list[dict], case: int) -> float:
    return curve[min(case, len(curve)) - 1]["rss_mb"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=summary(__doc__))
    p.add_argument("--data", type=Path, default=SHARED_BRATS2018, help="real BraTS dataset folder")
    p.add_argument("--case", default=DEFAULT_CASE_ID, help="case id predicted --repeats times")
    p.add_argument(
        "--repeats", type=positive_int, default=100, help="phase 1: predictions of the same case (default 100)"
    )
    p.add_argument("--folder", type=int, default=20, help="phase 2: cases in the folder (default 20; 0 skips)")
    p.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap (default 0.5)")
    p.add_argument("--recipe", type=Path, default=CONFIGS / "cpu_brats2018.json")
    p.add_argument("--model", type=Path, default=None, help="a trained RUN_DIR instead of the untrained recipe model")
    p.add_argument("--small", action="store_true", help="8-64 filters instead of the recipe's 16-256")
    p.add_argument("--json", type=Path, default=None, help="write the curves and figures here")
    args = p.parse_args(argv)
    if args.folder < 0:
        p.error("--folder must be >= 0")
    if not (args.data / args.case).is_dir():
        sys.exit(f"error: case folder {args.data / args.case} not found (--data, --case)")

    rss_start = rss_mb()
    t0 = time.perf_counter()
    pred = build_predictor(args.recipe, args.model, args.small)
    print(
        f"model ready in {time.perf_counter() - t0:.1f} s (roi {pred.roi}, head {pred.head}); "
        f"RSS {rss_start:.0f} -> {rss_mb():.0f} MiB",
        flush=True,
    )
    repeat: list[dict] = []
    folder_curve: list[dict] = []
    result: dict[str, Any] = {
        "recipe": str(args.recipe),
        "model": str(args.model) if args.model else "untrained",
        "small": args.small,
        "case": args.case,
        "overlap": args.overlap,
        "repeats": args.repeats,
        "rss_start_mb": rss_start,
        "rss_model_mb": rss_mb(),
        "repeat_curve": repeat,
        "folder_curve": folder_curve,
    }

    def checkpoint() -> None:
        if args.json is not None:
            from brainseg_tf import atomic

            atomic.write_json(args.json, result)

    with tempfile.TemporaryDirectory(prefix="bench_soak_") as tmp:
        tmp = Path(tmp)
        run_cases(
            pred, args.data, tmp / "out_repeat", [args.case] * args.repeats, args.overlap, "repeat", repeat, checkpoint
        )
        if args.folder:
            from brainseg_tf import io as bio

            folder = soak_folder(args.data, args.folder, tmp)
            run_cases(
                pred,
                folder,
                tmp / "out_folder",
                bio.open_dataset(folder).case_ids,
                args.overlap,
                "folder",
                folder_curve,
                checkpoint,
            )
    r10, rlast = _at(repeat, 10), repeat[-1]["rss_mb"]
    result.update(
        {
            "rss_case1_mb": repeat[0]["rss_mb"],
            "rss_case10_mb": r10,
            "rss_last_mb": rlast,
            "delta_mb": rlast - r10,
            "median_case_seconds": sorted(c["seconds"] for c in repeat)[len(repeat) // 2],
            "folder_cases": len(folder_curve),
            "folder_rss_first_mb": folder_curve[0]["rss_mb"] if folder_curve else None,
            "folder_rss_last_mb": folder_curve[-1]["rss_mb"] if folder_curve else None,
            "folder_rss_max_mb": max((c["rss_mb"] for c in folder_curve), default=None),
        }
    )
    checkpoint()
    marks = [m for m in (1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100) if m <= len(repeat)]
    print("repeat RSS MiB: " + " ".join(f"{m}:{_at(repeat, m):.0f}" for m in marks))
    if folder_curve:
        print("folder RSS MiB: " + " ".join(f"{c['case']}:{c['rss_mb']:.0f}" for c in folder_curve))
    verdict = "OK" if rlast - r10 < LEAK_BAR_MB else f"FAIL (>= {LEAK_BAR_MB:.0f} MB)"
    print(f"delta after case 10 -> case {len(repeat)}: {rlast - r10:+.1f} MiB {verdict}")
    print_figures({"rss_case10_mb": r10, f"rss_case{len(repeat)}_mb": rlast, "delta_mb": rlast - r10}, ".1f")
    return result


if __name__ == "__main__":
    main()
