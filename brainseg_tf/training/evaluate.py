"""The run's final evaluation: whole validation cases through the same path as ``brainseg predict``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from brainseg_tf.training.config import TrainConfig
from brainseg_tf.training.data import resolve_path
from brainseg_tf.training.split import Split


def final_evaluation(cfg: TrainConfig, split: Split, run_dir: Path) -> dict[str, Any]:
    """Per-case Dice/HD95 per region of the recipe's scheme (WT, TC, ET by default) of ``best.keras``
    on each whole validation case.

    Prediction is :func:`brainseg_tf.inference.predict_case` on the run directory (crop, z-score,
    Gaussian sliding window with ``validation.overlap``, no TTA, the card's postprocessing (the
    rules chosen on these cases when ``validation.select_postprocessing``), paste-back to the
    native grid); scores are :func:`brainseg_tf.evaluation.evaluate_case` (legacy BraTS
    empty-mask rule, no lesion-wise scores).
    """
    import numpy as np

    root = resolve_path(cfg.data.root, cfg)
    if root is None or not root.exists():
        return {"skipped": "the final sliding-window evaluation needs data.root (raw cases)"}
    from brainseg_tf import evaluation, inference
    from brainseg_tf.training.data import open_root

    predictor = inference.load_predictor(run_dir)
    dataset = open_root(root, cfg)
    per_case: dict[str, dict[str, float]] = {}
    t0 = time.monotonic()
    for case_id in split.val_ids:
        case = dataset[case_id]
        pred = inference.predict_case(predictor, case, overlap=cfg.validation.overlap)
        rows = evaluation.evaluate_case(
            pred.labels, case.label, case.spacing, case=case_id, scheme=cfg.scheme.name, lesion_wise=False
        )
        scores = {}
        for row in rows:
            region = str(row.get("region", "")).lower()
            scores[f"dice_{region}"] = float(row["dice"])
            scores[f"hd95_{region}"] = float(row["hd95"])
        if cfg.head == "region":  # a single-region model is scored on its region only
            region = cfg.pipeline.region.lower()
            scores = {k: v for k, v in scores.items() if k.endswith("_" + region)}
        per_case[case_id] = scores
        print(
            f"[brainseg train] sliding window {case_id}: "
            + " ".join(f"{k}={v:.3f}" for k, v in scores.items() if k.startswith("dice")),
            flush=True,
        )
    keys = sorted({k for c in per_case.values() for k in c})
    mean = {k: float(np.mean([c[k] for c in per_case.values() if k in c])) for k in keys}
    print(
        "[brainseg train] sliding window mean: "
        + " ".join(f"{k}={v:.3f}" for k, v in mean.items() if k.startswith("dice")),
        flush=True,
    )
    return {
        "model": Path(predictor.source or "").name,
        "overlap": cfg.validation.overlap,
        "rule": "legacy BraTS empty-mask rule (both empty: Dice 1, HD95 0)",
        "seconds": round(time.monotonic() - t0, 1),
        "per_case": per_case,
        "mean": mean,
    }
