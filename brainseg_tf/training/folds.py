"""All the folds of a k-fold split in one resumable command (``brainseg train --folds K``).

Fold ``k`` trains into ``RUN_DIR/fold_<k>/``, an ordinary run directory (its own lock, backup,
``split.json`` with fold ``k`` validating, card, ``best.keras``): re-running the command returns
at once for completed folds (their files are not touched) and resumes the interrupted one at its
backup's exact step. ``RUN_DIR/folds.json`` (written atomically after every fold) lists each
fold's state, best score and checkpoint paths; ``brainseg predict --model RUN_DIR/fold_0
RUN_DIR/fold_1 ...`` averages the folds.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainseg_tf.training.config import TrainConfig, as_config
from brainseg_tf.training.rundir import RunLock, default_run_dir, write_json

__all__ = ["FOLDS_FILE", "FoldsResult", "fold_config", "fold_dir", "train_folds"]

FOLDS_FILE = "folds.json"


@dataclass
class FoldsResult:
    """What :func:`train_folds` returns: the parent run directory and the ``folds.json`` content."""

    run_dir: Path
    summary: dict[str, Any]

    @property
    def fold_dirs(self) -> list[Path]:
        return [self.run_dir / f["run_dir"] for f in self.summary["per_fold"]]


def fold_dir(run_dir: str | os.PathLike, fold: int) -> Path:
    """``RUN_DIR/fold_<fold>``."""
    return Path(run_dir) / f"fold_{int(fold)}"


def fold_config(cfg: TrainConfig, fold: int, folds: int | None = None) -> TrainConfig:
    """The recipe of one fold: ``split.method="kfold"``, ``split.fold=fold`` (``split.folds=folds`` when given)."""
    split = dataclasses.replace(
        cfg.split, method="kfold", fold=int(fold), folds=int(folds) if folds is not None else cfg.split.folds
    )
    out = dataclasses.replace(cfg, split=split, training=dataclasses.replace(cfg.training, all_folds=False))
    out.validate()
    return out


def _fold_entry(run_dir: Path, fold: int) -> dict[str, Any]:
    folder = fold_dir(run_dir, fold)
    entry: dict[str, Any] = {"fold": fold, "run_dir": folder.name, "completed": False}
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return entry
    try:
        split = json.loads((folder / "split.json").read_text())
    except (OSError, ValueError):
        split = {}
    entry.update(
        completed=bool(metrics.get("completed")),
        epochs_completed=metrics.get("epochs_completed"),
        monitor=metrics.get("monitor"),
        best=metrics.get("best"),
        best_path=f"{folder.name}/best.keras" if (folder / "best.keras").exists() else None,
        final_path=f"{folder.name}/final.keras" if (folder / "final.keras").exists() else None,
        val_ids=split.get("val_ids"),
    )
    if "sliding_window" in metrics and isinstance(metrics["sliding_window"], Mapping):
        entry["sliding_window_mean"] = metrics["sliding_window"].get("mean")
    if "postprocessing" in metrics:
        entry["postprocessing"] = metrics["postprocessing"].get("chosen")
    return entry


def _summary(cfg: TrainConfig, run_dir: Path, folds: int) -> dict[str, Any]:
    per_fold = [_fold_entry(run_dir, k) for k in range(folds)]
    return {
        "recipe": cfg.name,
        "folds": folds,
        "split_seed": cfg.split.seed,
        "completed": all(f["completed"] for f in per_fold),
        "per_fold": per_fold,
        "predict": "brainseg predict --model " + " ".join(f["run_dir"] for f in per_fold) + " ...",
    }


def train_folds(
    config_or_path: TrainConfig | str | os.PathLike | Mapping[str, Any],
    *,
    run_dir: str | os.PathLike | None = None,
    folds: int | None = None,
    resume: bool = True,
    only: Sequence[int] | None = None,
) -> FoldsResult:
    """Train folds ``0..K-1`` of the recipe's seeded k-fold split, one after the other.

    Args:
        config_or_path: a :class:`TrainConfig`, a dict or a recipe path.
        run_dir: parent run directory (default ``runs/<config name>``); fold ``k`` goes to
            ``run_dir/fold_<k>``.
        folds: K; ``None`` takes ``split.folds`` (and the split becomes k-fold either way).
        resume: as :func:`brainseg_tf.training.train`, per fold.
        only: train just these folds (e.g. the ones whose out-of-fold record is missing).

    Returns:
        A :class:`FoldsResult`; ``run_dir/folds.json`` holds the same summary.

    Raises:
        ValueError: K < 2 or more folds than labelled cases (from the split), a bad recipe.
    """
    from brainseg_tf.training.loop import train

    cfg = as_config(config_or_path)
    k = int(folds) if folds is not None else cfg.split.folds
    if k < 2:
        raise ValueError(f"--folds/split.folds={k!r} must be >= 2")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):  # one fold driver per parent directory; each fold has its own lock too
        for fold in range(k) if only is None else sorted(set(only)):
            if not 0 <= fold < k:
                raise ValueError(f"fold {fold!r} is not one of the {k} folds 0..{k - 1}")
            fold_cfg = fold_config(cfg, fold, k)
            print(f"[brainseg train] fold {fold}/{k}: {fold_dir(run_dir, fold)}", flush=True)
            result = train(fold_cfg, run_dir=fold_dir(run_dir, fold), resume=resume)
            completed = bool(result.metrics.get("completed")) if result.is_chief else True
            del result
            gc.collect()
            write_json(run_dir / FOLDS_FILE, _summary(cfg, run_dir, k))
            if not completed:  # stopped by training.max_minutes: the next call resumes this fold
                print(f"[brainseg train] fold {fold} stopped before its last epoch; re-run to continue", flush=True)
                break
        summary = _summary(cfg, run_dir, k)
        write_json(run_dir / FOLDS_FILE, summary)
    return FoldsResult(run_dir, summary)
