"""The out-of-fold measure: train K folds, predict every case with the fold that held it out, score.

``brainseg cv --config RECIPE --run-dir RUN_DIR --folds K`` (:func:`cross_validate`) is one
resumable command:

1. :func:`~brainseg_tf.training.folds.train_folds` trains folds ``0..K-1`` into
   ``RUN_DIR/fold_<k>`` with the recipe's ``training.max_minutes`` switched off, so every fold runs
   its fixed ``epochs x steps_per_epoch`` optimizer steps: a busy machine changes how long the
   measure takes, never its result.
2. :func:`predict_out_of_fold`: each case is predicted by the one fold whose ``split.json`` holds
   it in ``val_ids`` (and not in ``train_ids``), with postprocessing off, into
   ``RUN_DIR/oof/predictions/<case>.nii.gz``; ``RUN_DIR/oof/oof.json`` records case -> fold, model
   file and its SHA-256. A re-run skips every case already predicted by the same fold model.
3. :func:`score_out_of_fold`: Dice/HD95 per case and region
   (:func:`brainseg_tf.evaluation.evaluate_folders`, legacy empty-mask rule) into
   ``RUN_DIR/oof/metrics.csv``; per-region mean Dice with a case-level bootstrap 95 % interval
   (:func:`brainseg_tf.evaluation.bootstrap_ci`), the per-case table and the worst cases into
   ``RUN_DIR/oof/summary.json`` and ``RUN_DIR/oof/report.md``; the postprocessing that
   :func:`brainseg_tf.postprocessing.select` chooses on all out-of-fold predictions into
   ``RUN_DIR/oof/postprocessing.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf import atomic
from brainseg_tf.checks import check_choice, check_int
from brainseg_tf.training.config import TrainConfig, as_config
from brainseg_tf.training.data import resolve_path
from brainseg_tf.training.folds import fold_dir, train_folds
from brainseg_tf.training.rundir import RunLock, default_run_dir
from brainseg_tf.training.split import load_split

__all__ = [
    "CHECKPOINTS",
    "OOF_DIR",
    "OOF_FILE",
    "CrossValResult",
    "cv_config",
    "fold_assignment",
    "predict_out_of_fold",
    "score_out_of_fold",
    "cross_validate",
]

CHECKPOINTS = ("best", "final")
OOF_DIR = "oof"
OOF_FILE = "oof.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
REPORT_FILE = "report.md"
WORST_CASES = 5


@dataclass
class CrossValResult:
    """What :func:`cross_validate` returns.

    Attributes:
        run_dir: the parent run directory (folds in ``fold_<k>``, the measure in ``oof/``).
        completed: every fold trained to its last step and every case predicted and scored.
        oof: the content of ``oof/oof.json`` (empty when the folds are not complete).
        summary: the content of ``oof/summary.json`` (empty when not scored).
        predicted: cases predicted by this call; ``skipped``: cases already predicted by the same model.
    """

    run_dir: Path
    completed: bool
    oof: dict[str, Any]
    summary: dict[str, Any]
    predicted: list[str]
    skipped: list[str]

    @property
    def out_dir(self) -> Path:
        return self.run_dir / OOF_DIR


def cv_config(cfg: TrainConfig) -> TrainConfig:
    """The recipe as cross-validation trains it: ``training.max_minutes`` off (fixed steps only)."""
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, max_minutes=None))


def fold_assignment(run_dir: str | os.PathLike, folds: int) -> dict[str, int]:
    """Case id -> the fold that held it out, read from each ``RUN_DIR/fold_<k>/split.json``.

    Raises:
        FileNotFoundError: a fold without ``split.json``.
        ValueError: a case validated by two folds, a fold that also trains on a case it validates,
            or folds that do not cover the same cases exactly once.
    """
    check_int("folds", folds, 2)
    out: dict[str, int] = {}
    everyone: set[str] | None = None
    for k in range(folds):
        split = load_split(fold_dir(run_dir, k))
        where = fold_dir(run_dir, k) / "split.json"
        leaked = sorted(set(split.val_ids) & set(split.train_ids))
        if leaked:
            raise ValueError(f"{where}: fold {k} trains on cases it validates: {leaked[:5]}")
        twice = sorted(c for c in split.val_ids if c in out)
        if twice:
            raise ValueError(f"{where}: cases {twice[:5]} are also validated by fold {out[twice[0]]}")
        out.update(dict.fromkeys(split.val_ids, k))
        cases = set(split.val_ids) | set(split.train_ids)
        if everyone is not None and cases != everyone:
            raise ValueError(f"{where}: fold {k} splits other cases than fold 0 ({len(cases)} vs {len(everyone)})")
        everyone = cases
    uncovered = sorted((everyone or set()) - set(out))
    if uncovered:
        raise ValueError(f"{run_dir}: cases {uncovered[:5]} are validated by no fold of {folds}")
    return dict(sorted(out.items()))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_file(run_dir: Path, fold: int, checkpoint: str) -> Path:
    path = fold_dir(run_dir, fold) / f"{checkpoint}.keras"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: fold {fold} has no {checkpoint} checkpoint (try --checkpoint final)")
    return path


def _read_oof(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dataset_root(cfg: TrainConfig) -> Path:
    root = resolve_path(cfg.data.root, cfg)
    if root is None or not root.exists():
        raise FileNotFoundError(f"data.root={cfg.data.root!r}: out-of-fold prediction needs the raw cases")
    return root


def _oof_header(cfg: TrainConfig, original: TrainConfig, folds: int, checkpoint: str, root: Path) -> dict[str, Any]:
    steps = cfg.training.epochs * cfg.training.steps_per_epoch
    return {
        "recipe": cfg.name,
        "data_root": str(root),
        "folds": folds,
        "split_seed": cfg.split.seed,
        "checkpoint": checkpoint,
        "fixed_steps": {
            "epochs": cfg.training.epochs,
            "steps_per_epoch": cfg.training.steps_per_epoch,
            "optimizer_steps": steps,
            "recipe_max_minutes": original.training.max_minutes,
            "max_minutes": None,
        },
        "postprocessing": "off: raw labels (the selection in postprocessing.json is chosen on them)",
    }


def predict_out_of_fold(
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    folds: int,
    *,
    checkpoint: str = "best",
    overwrite: bool = False,
    progress: bool = True,
    header: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Predict every case with the fold that held it out; write the labels and ``oof/oof.json``.

    Postprocessing is off (the raw labels are what a postprocessing selection starts from).
    ``oof.json`` is rewritten atomically after every case, so a kill loses at most the case in
    progress; a case whose entry names the same fold, model file and SHA-256 and whose file
    exists is skipped (``overwrite``: predict every case again).

    Args:
        cfg: the recipe (``data.root``: the raw cases).
        run_dir: the parent run directory of the folds.
        folds: K.
        checkpoint: ``"best"`` (``fold_<k>/best.keras``) or ``"final"``.
        overwrite: re-predict cases already predicted.
        progress: show progress over the cases.
        header: extra keys for ``oof.json`` (what :func:`cross_validate` records).

    Returns:
        ``(oof.json content, cases predicted, cases skipped)``.

    Raises:
        FileNotFoundError: no raw cases, a fold without its split or checkpoint.
        ValueError: folds that do not cover each case exactly once.
    """
    from brainseg_tf import inference
    from brainseg_tf.io.predictions import label_path
    from brainseg_tf.progress import progress as show_progress
    from brainseg_tf.training.data import open_root
    from brainseg_tf.training.validation import RAW

    check_choice("checkpoint", checkpoint, CHECKPOINTS)
    run_dir = Path(run_dir)
    out_dir = run_dir / OOF_DIR
    pred_dir = out_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    assignment = fold_assignment(run_dir, folds)
    dataset = open_root(_dataset_root(cfg), cfg)
    models = {k: _model_file(run_dir, k, checkpoint) for k in sorted(set(assignment.values()))}
    digests = {k: _sha256(path) for k, path in models.items()}
    earlier = _read_oof(out_dir / OOF_FILE).get("cases", {})
    cases: dict[str, Any] = {}
    todo: list[str] = []

    def entry_of(cid: str) -> dict[str, Any]:
        k = assignment[cid]
        return {
            "fold": k,
            "model": models[k].relative_to(run_dir).as_posix(),
            "model_sha256": digests[k],
            "file": label_path(pred_dir, cid).relative_to(out_dir).as_posix(),
        }

    for cid in assignment:
        entry = entry_of(cid)
        if not overwrite and earlier.get(cid) == entry and (out_dir / entry["file"]).is_file():
            cases[cid] = entry
        else:
            todo.append(cid)
    skipped = sorted(cases)
    oof = {**dict(header or {}), "cases": cases}
    predictors: dict[int, Any] = {}
    todo.sort(key=lambda c: (assignment[c], c))  # one fold's model loaded at a time
    for cid in show_progress(todo, desc="out-of-fold predict", disable=not progress):
        k = assignment[cid]
        if k not in predictors:
            predictors.clear()
            predictors[k] = inference.load_predictor(models[k])
        prediction = inference.predict_case(predictors[k], dataset.ref(cid), **RAW)
        prediction.write(label_path(pred_dir, cid))
        cases[cid] = entry_of(cid)
        oof["cases"] = dict(sorted(cases.items()))
        atomic.write_json(out_dir / OOF_FILE, oof)
    oof["cases"] = dict(sorted(cases.items()))
    atomic.write_json(out_dir / OOF_FILE, oof)
    return oof, sorted(todo), skipped


def _per_case(rows: Sequence[Mapping[str, Any]], regions: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["region"] in regions:
            out.setdefault(str(row["case"]), {})[str(row["region"])] = float(row["dice"])
    return {cid: {**d, "mean": float(np.mean([d[r] for r in regions]))} for cid, d in sorted(out.items())}


def _region_stats(
    per_case: Mapping[str, Mapping[str, float]], keys: Sequence[str], resamples: int, seed: int
) -> dict[str, Any]:
    from brainseg_tf.evaluation import bootstrap_ci

    stats = {}
    for key in keys:
        values = [d[key] for d in per_case.values()]
        low, high = bootstrap_ci(values, resamples=resamples, seed=seed)
        stats[key] = {
            "mean": float(np.mean(values)),
            "ci95": [low, high],
            "half_width": (high - low) / 2,
            "n": len(values),
        }
    return stats


def _markdown(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    from brainseg_tf.report import per_case_table

    regions = summary["regions"]
    boot = summary["bootstrap"]
    lines = [
        f"## Out-of-fold results: {summary['recipe']}",
        "",
        f"{summary['n_cases']} cases, {summary['folds']} folds, checkpoint `{summary['checkpoint']}`, "
        f"{summary['fixed_steps']['optimizer_steps']} optimizer steps per fold (no time limit); each case "
        f"predicted by the fold that did not train on it, postprocessing off; {summary['dice_rule']}. "
        f"Interval: {boot['method']}, {boot['resamples']} resamples, seed {boot['seed']}.",
        "",
        "| region | mean Dice | 95 % interval | n |",
        "|---|---|---|---|",
    ]
    for key, s in summary["dice"].items():
        lines.append(f"| {key} | {s['mean']:.3f} | {s['ci95'][0]:.3f} – {s['ci95'][1]:.3f} | {s['n']} |")
    worst = summary["worst_cases"]
    lines += ["", f"Worst cases (mean Dice over {'/'.join(regions)}):", ""]
    lines += [
        f"- {w['case']} (fold {w['fold']}): " + ", ".join(f"{k} {w[k]:.3f}" for k in [*regions, "mean"]) for w in worst
    ]
    post = summary.get("postprocessing")
    if post:
        chosen = "; ".join(post["chosen"]) or "none"
        lines += [
            "",
            f"Postprocessing chosen on these out-of-fold predictions: {chosen} (mean Dice {post['baseline']['mean']:.3f}"
            f" -> {post['final']['mean']:.3f}; chosen on the same cases, so the gain is optimistic).",
        ]
    lines += ["", "Per case:", "", *per_case_table(rows, regions=regions), ""]
    return "\n".join(lines)


def score_out_of_fold(
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    oof: Mapping[str, Any],
    *,
    resamples: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Score the out-of-fold predictions; write ``metrics.csv``, ``postprocessing.json``,
    ``summary.json`` and ``report.md`` under ``RUN_DIR/oof``.

    Per region (the recipe's: its own for a single-region model, else WT, TC, ET) and for the mean
    over regions: the mean over cases of the Dice (legacy empty-mask rule) with a percentile
    bootstrap 95 % interval over cases (:func:`brainseg_tf.evaluation.bootstrap_ci`, ``resamples``,
    ``seed``); the :data:`WORST_CASES` cases with the lowest mean Dice; and the postprocessing
    selection on all these cases.

    Returns:
        The content of ``summary.json``.
    """
    from brainseg_tf import postprocessing
    from brainseg_tf.evaluation import evaluate_folders
    from brainseg_tf.training.validation import case_regions

    out_dir = Path(run_dir) / OOF_DIR
    case_ids = list(oof["cases"])
    root = _dataset_root(cfg)
    result = evaluate_folders(
        out_dir / "predictions", root, case_ids=case_ids, out_csv=out_dir / METRICS_FILE, progress=progress
    )
    regions = case_regions(cfg)
    per_case = _per_case(result.rows, regions)
    for cid, scores in per_case.items():
        scores["fold"] = oof["cases"][cid]["fold"]
    selection = postprocessing.select_for_folders(
        out_dir / "predictions", root, case_ids=case_ids, regions=regions, out=out_dir / postprocessing.SELECTION_FILE
    )
    worst = sorted(per_case, key=lambda c: (per_case[c]["mean"], c))[:WORST_CASES]
    summary = {
        **{k: oof[k] for k in ("recipe", "folds", "checkpoint", "fixed_steps") if k in oof},
        "n_cases": len(per_case),
        "regions": list(regions),
        "dice_rule": postprocessing.EMPTY_RULE,
        "dice": _region_stats(per_case, [*regions, "mean"], resamples, seed),
        "bootstrap": {"method": "percentile, cases resampled with replacement", "resamples": resamples, "seed": seed},
        "per_case": per_case,
        "worst_cases": [{"case": c, **per_case[c]} for c in worst],
        "postprocessing": {
            "chosen": [r.describe() for r in selection.rules],
            "baseline": selection.baseline,
            "final": selection.final,
            "evidence": selection.evidence(),
            "file": postprocessing.SELECTION_FILE,
        },
        "missing": result.missing,
    }
    atomic.write_json(out_dir / SUMMARY_FILE, summary)
    atomic.write_text(out_dir / REPORT_FILE, _markdown(summary, result.rows))
    return summary


def _format(summary: Mapping[str, Any]) -> str:
    parts = [
        f"{k} {s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"
        for k, s in summary["dice"].items()
        if math.isfinite(s["mean"])
    ]
    return f"out-of-fold mean Dice (95 % bootstrap interval) over {summary['n_cases']} cases: " + ", ".join(parts)


def cross_validate(
    config_or_path: TrainConfig | str | os.PathLike | Mapping[str, Any],
    *,
    run_dir: str | os.PathLike | None = None,
    folds: int | None = None,
    checkpoint: str = "best",
    overwrite: bool = False,
    resamples: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> CrossValResult:
    """Train the folds, predict every case out of fold, and score the predictions (module docstring).

    Resumable: completed folds are not retrained, an interrupted fold resumes at its backup, and
    cases already predicted by the same fold model are skipped; the scores are always recomputed.

    Args:
        config_or_path: a :class:`TrainConfig`, a dict or a recipe path.
        run_dir: parent run directory (default ``runs/<config name>``).
        folds: K (default ``split.folds``); the split becomes the seeded k-fold one.
        checkpoint: each fold's model: ``"best"`` or ``"final"``.
        overwrite: predict every case again.
        resamples, seed: of the bootstrap interval.
        progress: show progress over cases.

    Returns:
        A :class:`CrossValResult`.

    Raises:
        ValueError: bad arguments or recipe, folds that do not cover each case exactly once.
        FileNotFoundError: no raw cases (``data.root``), a fold without the checkpoint.
    """
    check_choice("checkpoint", checkpoint, CHECKPOINTS)
    check_int("resamples", resamples, 1)
    original = as_config(config_or_path)
    cfg = cv_config(original)
    k = int(folds) if folds is not None else cfg.split.folds
    check_int("folds", k, 2)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    root = _dataset_root(cfg)
    header = _oof_header(cfg, original, k, checkpoint, root)
    print(
        f"[brainseg cv] {k} folds of {header['fixed_steps']['optimizer_steps']} optimizer steps each; "
        f"training.max_minutes={original.training.max_minutes!r} switched off (fixed steps, no time limit)",
        flush=True,
    )
    trained = train_folds(cfg, run_dir=run_dir, folds=k, resume=True)
    if not trained.summary["completed"]:
        print("[brainseg cv] not every fold completed; re-run to continue", flush=True)
        return CrossValResult(run_dir, False, {}, {}, [], [])
    (run_dir / OOF_DIR).mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir / OOF_DIR):  # one out-of-fold writer at a time
        oof, predicted, skipped = predict_out_of_fold(
            cfg, run_dir, k, checkpoint=checkpoint, overwrite=overwrite, progress=progress, header=header
        )
        print(f"[brainseg cv] predicted {len(predicted)} case(s), {len(skipped)} already predicted", flush=True)
        summary = score_out_of_fold(cfg, run_dir, oof, resamples=resamples, seed=seed, progress=progress)
    print(f"[brainseg cv] {_format(summary)}", flush=True)
    print(f"[brainseg cv] {run_dir / OOF_DIR / REPORT_FILE}", flush=True)
    return CrossValResult(run_dir, True, oof, summary, predicted, skipped)
