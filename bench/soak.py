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

    python bench/soak.py [--data DIR] [--case CASE_ID] [--repeats 100] [--folder 20]
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

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "brats2018"
DEFAULT_CASE = "Brats18_2013_23_1"
LEAK_BAR_MB = 50.0


def rss_mb() -> float:
    """Resident set size of this process in MiB (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status (Linux only)")


def build_predictor(recipe: Path, model: Path | None, small: bool) -> Any:
    """The recipe's model, untrained, with the card training would write; or a trained ``model``."""
    from brainseg_tf import inference

    if model is not None:
        return inference.load_predictor(model)
    import keras

    from brainseg_tf.training.config import load_config
    from brainseg_tf.training.distribute import resolve_mixed_precision
    from brainseg_tf.training.factories import build_model
    from brainseg_tf.training.rundir import model_card
    from brainseg_tf.training.split import Split

    overrides = {"model.options.base_filters": 8, "model.options.max_filters": 64} if small else None
    cfg = load_config(recipe, overrides)
    keras.config.set_dtype_policy(resolve_mixed_precision(cfg.runtime.mixed_precision))
    keras.utils.set_random_seed(cfg.training.seed)
    card = model_card(cfg, Split(train_ids=[], val_ids=list(cfg.split.val_ids), method="fixed"), None)
    return inference.Predictor.from_keras(build_model(cfg), card)


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
        assert rec["status"] == "written", rec
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="real BraTS dataset folder")
    p.add_argument("--case", default=DEFAULT_CASE, help="case id predicted --repeats times")
    p.add_argument("--repeats", type=int, default=100, help="phase 1: predictions of the same case (default 100)")
    p.add_argument("--folder", type=int, default=20, help="phase 2: cases in the folder (default 20; 0 skips)")
    p.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap (default 0.5)")
    p.add_argument("--recipe", type=Path, default=REPO_ROOT / "configs" / "cpu_brats2018.json")
    p.add_argument("--model", type=Path, default=None, help="a trained RUN_DIR instead of the untrained recipe model")
    p.add_argument("--small", action="store_true", help="8-64 filters instead of the recipe's 16-256")
    p.add_argument("--json", type=Path, default=None, help="write the curves and figures here")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.folder < 0:
        p.error("--repeats must be >= 1 and --folder >= 0")
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
    print(f"rss_case10_mb={r10:.1f} rss_case{len(repeat)}_mb={rlast:.1f} delta_mb={rlast - r10:.1f}")
    return result


if __name__ == "__main__":
    main()
