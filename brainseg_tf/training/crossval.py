"""The out-of-fold measure: train K folds, measure each on the cases it held out, score them all.

``brainseg cv --config RECIPE --run-dir RUN_DIR --folds K`` (:func:`cross_validate`) goes fold by fold:

1. A fold whose record ``RECORDS/fold_<k>.json`` (:func:`records_dir`: ``results/cv/<run dir
   name>``, meant to be committed) measured the same recipe (:func:`recipe_digest`), folds,
   checkpoint and held-out cases is skipped: the measure resumes from the records alone, on any
   machine, in any later session.
2. Otherwise :func:`~brainseg_tf.training.folds.train_folds` trains fold ``k`` into
   ``RUN_DIR/fold_<k>`` with ``training.max_minutes`` switched off, so every fold runs its fixed
   ``epochs x steps_per_epoch`` optimizer steps (a busy machine changes how long the measure
   takes, never its result), and :func:`measure_fold` predicts each held-out case with the fold's
   model (postprocessing off) and scores it into the record.
3. With every record in, :func:`summarize_records`: per-region mean Dice with a case-level
   bootstrap 95 % interval (:func:`brainseg_tf.evaluation.bootstrap_ci`), the per-case table, the
   worst cases, the volume agreement (:func:`volume_errors`) and the postprocessing chosen on all
   out-of-fold cases, into ``RECORDS/summary.json`` and ``RECORDS/report.md``.
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
from typing import TYPE_CHECKING, Any

import numpy as np

from brainseg_tf import atomic
from brainseg_tf.checks import check_choice, check_int
from brainseg_tf.training.config import TrainConfig, as_config
from brainseg_tf.training.data import resolve_path
from brainseg_tf.training.folds import fold_dir, train_folds
from brainseg_tf.training.rundir import default_run_dir, flatten_config
from brainseg_tf.training.split import load_split

if TYPE_CHECKING:
    from brainseg_tf.postprocessing import Selection

__all__ = [
    "CHECKPOINTS",
    "OOF_DIR",
    "CrossValResult",
    "cv_config",
    "fold_assignment",
    "cross_validate",
    "compare_records",
    "format_comparison",
]

CHECKPOINTS = ("best", "final")
OOF_DIR = "oof"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
COMPARISON_FILE = "comparison.json"
COMPARISON_REPORT = "comparison.md"
WORST_CASES = 5


@dataclass
class CrossValResult:
    """What :func:`cross_validate` returns.

    Attributes:
        run_dir: the parent run directory (folds in ``fold_<k>``, raw predictions in ``oof/predictions``).
        records: the folder of the fold records, ``summary.json`` and ``report.md``.
        completed: every fold measured and the summary written.
        summary: the content of ``RECORDS/summary.json`` (empty when not every fold is measured).
        predicted: the cases this call predicted (folds it measured); ``skipped``: folds whose record was kept.
        stopped: why the measure stopped before its last fold other than an interrupted fold
            (``"futile"``: ``stop_if_futile``), else ``None``.
    """

    run_dir: Path
    records: Path
    completed: bool
    summary: dict[str, Any]
    predicted: list[str]
    skipped: list[int]
    stopped: str | None = None


def cv_config(cfg: TrainConfig) -> TrainConfig:
    """The recipe as cross-validation trains it: ``training.max_minutes`` off (fixed steps only), and
    no ``validation.postprocessing_records`` (the folds make those records)."""
    return dataclasses.replace(
        cfg,
        training=dataclasses.replace(cfg.training, max_minutes=None),
        validation=dataclasses.replace(cfg.validation, postprocessing_records=None),
    )


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


def _read_json(path: Path) -> dict[str, Any]:
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


# -- fold records: the measure, fold by fold, in a folder that is committed ----------------------
RECORD_FORMAT = 1
RECORDS_ROOT = Path("results") / "cv"


def recipe_digest(cfg: TrainConfig) -> str:
    """SHA-256 (16 hex digits) of what decides a fold's result, the key its record is kept under: the
    resolved recipe without its name, description, data paths (the record lists its cases, so a
    moved dataset keeps its records) and ``validation.postprocessing_records``."""
    data = cfg.to_dict()
    for key in ("name", "description"):
        data.pop(key, None)
    data["data"] = {k: v for k, v in data["data"].items() if k not in ("root", "cache", "build_cache")}
    data["validation"].pop("postprocessing_records", None)  # where a model's card takes its choice from
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def records_dir(run_dir: str | os.PathLike, records: str | os.PathLike | None = None) -> Path:
    """Where the fold records go: ``records``, else ``results/cv/<run directory name>``."""
    return Path(records) if records is not None else RECORDS_ROOT / Path(run_dir).name


def fold_val_ids(cfg: TrainConfig, fold: int, folds: int, case_ids: Sequence[str]) -> list[str]:
    """The cases fold ``fold`` of ``folds`` holds out: the recipe's seeded k-fold split of ``case_ids``
    (its labelled cases, :func:`brainseg_tf.training.data.labelled_ids`)."""
    from brainseg_tf.training.folds import fold_config
    from brainseg_tf.training.split import make_split

    return sorted(make_split(case_ids, fold_config(cfg, fold, folds).split).val_ids)


def read_record(path: Path) -> dict[str, Any] | None:
    """A fold record, or ``None`` when there is none; a damaged one is an error naming the file."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: damaged fold record ({exc}); delete it to measure the fold again") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), dict):
        raise ValueError(f"{path}: not a fold record (no 'cases'); delete it to measure the fold again")
    if data.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path}: fold record format {data.get('format')!r}; this toolkit reads {RECORD_FORMAT}")
    return data


def record_matches(
    record: Mapping[str, Any], *, digest: str, folds: int, fold: int, checkpoint: str, val_ids: Sequence[str]
) -> str | None:
    """``None`` when ``record`` measured this fold of this recipe, else why not (a sentence)."""
    wanted = {"recipe_digest": digest, "folds": folds, "fold": fold, "checkpoint": checkpoint}
    for key, value in wanted.items():
        if record.get(key) != value:
            return f"its {key} is {record.get(key)!r}, not {value!r}"
    if sorted(record["cases"]) != sorted(val_ids):
        return "it holds out other cases than the split does now"
    return None


def _machine() -> dict[str, Any]:
    import platform

    from brainseg_tf.runtime import cpu_flags

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = sorted(f for f in (cpu_flags() or ()) if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2")))
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "flags": flags}


def measure_fold(
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    fold: int,
    folds: int,
    *,
    checkpoint: str = "final",
    progress: bool = True,
) -> dict[str, Any]:
    """Predict the cases fold ``fold`` held out with its model and score them: the fold record.

    Each case is predicted with postprocessing off (written to ``RUN_DIR/oof/predictions``) and
    scored per region (Dice and HD95, legacy empty-mask rule); every postprocessing candidate
    (:func:`brainseg_tf.postprocessing.default_candidates`) is applied alone to the raw labels and
    its Dice per region recorded, so a selection can be made from the records of every fold
    without the label maps (:func:`select_from_records`).

    Returns:
        The record (JSON-serialisable): recipe, recipe digest, fold, checkpoint, model SHA-256,
        steps, machine, and per case ``dice``/``hd95`` per region, ``ref_ml``/``pred_ml``
        per region, ``seconds`` and ``rules`` (rule description -> Dice per region).
    """
    import time

    from brainseg_tf import inference, postprocessing
    from brainseg_tf.evaluation import evaluate_case, region_dice
    from brainseg_tf.io.predictions import label_path
    from brainseg_tf.progress import progress as show_progress
    from brainseg_tf.training.data import open_root
    from brainseg_tf.training.validation import RAW, case_regions

    run_dir = Path(run_dir)
    split = load_split(fold_dir(run_dir, fold))
    model = _model_file(run_dir, fold, checkpoint)
    predictor = inference.load_predictor(model)
    dataset = open_root(_dataset_root(cfg), cfg)
    regions = case_regions(cfg)
    scheme = cfg.scheme.name
    pred_dir = run_dir / OOF_DIR / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Any] = {}
    volumes: list[float] = []
    start = time.perf_counter()
    for cid in show_progress(sorted(split.val_ids), desc=f"fold {fold} held-out cases", disable=not progress):
        case = dataset[cid]  # once, in the dataset's reading: the image to predict, the mask to score
        ref = case.label
        if ref is None:
            raise ValueError(f"{cid}: a held-out case without a reference label cannot be scored")
        prediction = inference.predict_case(predictor, case, release_image=True, **RAW)
        prediction.write(label_path(pred_dir, cid))
        spacing = tuple(float(v) for v in prediction.reference.spacing)
        voxel_volume = float(np.prod(spacing))
        volumes.append(voxel_volume)
        rows = evaluate_case(
            prediction.labels, ref, spacing, case=cid, regions=regions, scheme=scheme, lesion_wise=False
        )
        rules = {}
        for group in postprocessing.default_candidates(voxel_volume, scheme):
            for rule in group:
                rules[json.dumps(rule.to_dict(), sort_keys=True)] = region_dice(
                    rule(prediction.labels, scheme=scheme), ref, regions, scheme=scheme
                )
        cases[cid] = {
            "dice": {r["region"]: float(r["dice"]) for r in rows},
            "hd95": {r["region"]: float(r["hd95"]) for r in rows},
            "ref_ml": {r["region"]: float(r["volume_ref_ml"]) for r in rows},
            "pred_ml": {r["region"]: float(r["volume_pred_ml"]) for r in rows},
            "seconds": float(prediction.seconds),
            "rules": rules,
        }
    steps = cfg.training.epochs * cfg.training.steps_per_epoch
    metrics = _read_json(fold_dir(run_dir, fold) / "metrics.json")
    return {
        "format": RECORD_FORMAT,
        "recipe": cfg.name,
        "recipe_digest": recipe_digest(cfg),
        "recipe_resolved": cfg.to_dict(),
        "folds": folds,
        "fold": fold,
        "split_seed": cfg.split.seed,
        "train_ids": sorted(split.train_ids),
        "checkpoint": checkpoint,
        "model_sha256": _sha256(model),
        "optimizer_steps": steps,
        "train_minutes": round(metrics["wall_time_s_total"] / 60, 1) if "wall_time_s_total" in metrics else None,
        "predict_seconds": time.perf_counter() - start,
        "machine": _machine(),
        "regions": list(regions),
        "scheme": scheme,
        "voxel_volume": float(np.median(volumes)) if volumes else 1.0,
        "dice_rule": "legacy BraTS empty-mask rule (both empty: Dice 1; one empty: Dice 0)",
        "cases": cases,
    }


def select_from_records(records: Sequence[Mapping[str, Any]], *, epsilon: float | None = None) -> Selection:
    """Postprocessing chosen from fold records (each rule's Dice when applied alone to the raw labels).

    The same test as :func:`brainseg_tf.postprocessing.select` for the first rule: in the fixed
    candidate order, the best alternative of each candidate (highest mean Dice, the smallest size
    on ties) is kept when the mean Dice over the regions rises by more than ``epsilon`` **and** it
    improves more cases than it worsens. Records hold one rule at a time, so the trial stops at the
    first rule kept (the exact multi-rule greedy needs the label maps: :func:`cross_validate`).

    Returns:
        A :class:`brainseg_tf.postprocessing.Selection` (0 or 1 rule) that
        :func:`brainseg_tf.postprocessing.record` writes into a model card with its evidence.
    """
    from brainseg_tf import postprocessing
    from brainseg_tf.schemes import own_scheme

    eps = postprocessing.EPSILON if epsilon is None else float(epsilon)
    scheme = own_scheme(records[0].get("scheme"))
    regions = tuple(records[0]["regions"])
    baseline = {cid: c["dice"] for rec in records for cid, c in rec["cases"].items()}
    rule_keys = list(next(iter(records[0]["cases"].values()))["rules"])
    groups: dict[tuple, list[str]] = {}
    for key in rule_keys:
        rule = json.loads(key)
        groups.setdefault((rule.get("kind"), rule.get("region")), []).append(key)
    base_mean = postprocessing.mean_dice(baseline, regions)
    final, final_scores, kept = base_mean, baseline, []
    steps: list[dict[str, Any]] = []
    for keys in groups.values():
        trials = []
        for key in keys:
            trial = {cid: c["rules"][key] for rec in records for cid, c in rec["cases"].items()}
            trials.append((postprocessing.Rule(**json.loads(key)), trial, postprocessing.mean_dice(trial, regions)))
        rule, trial, mean = max(trials, key=lambda t: t[2]["mean"])  # the first (smallest) on ties
        cases = postprocessing.case_changes(baseline, trial, regions)
        keep = postprocessing.passes_guard(base_mean, mean, cases, eps)
        tried = [{"min_voxels": r.min_voxels, "mean": m["mean"]} for r, _, m in trials] if len(keys) > 1 else []
        steps.append(postprocessing.selection_step(rule, scheme, tried, base_mean, mean, cases, keep))
        if keep:
            final, final_scores, kept = mean, trial, [rule]
            break
    voxel_volume = float(np.median([rec.get("voxel_volume", 1.0) for rec in records]))
    return postprocessing.Selection(
        rules=kept,
        baseline=base_mean,
        final=final,
        steps=steps,
        per_case={cid: {"before": baseline[cid], "after": final_scores[cid]} for cid in baseline},
        regions=regions,
        epsilon=eps,
        voxel_volume=voxel_volume,
        grid_voxels=postprocessing.size_grid(voxel_volume),
        scheme=None if scheme is None else scheme.name,
    )


#: What a fold's raw out-of-fold predictions depend on (:func:`recipe_records`): the data as read
#: (not where it lies or how its folder is named), the model, the patches, the loss, the optimizer,
#: the schedule, the steps, the seeds and the arithmetic. Not the split the recipe uses outside
#: cross-validation (the folds are the records' own), logging, checkpoint frequency or what is done
#: after training. With the ``best`` checkpoint the validation that chooses it counts too.
_FOLD_RESULT = {
    "data": None,
    "model": None,
    "pipeline": None,
    "loss": None,
    "optimizer": None,
    "schedule": None,
    "training": ("epochs", "steps_per_epoch", "seed"),
    "runtime": ("mixed_precision", "xla", "deterministic"),
    "split": ("seed",),
}
_DATA_PLACE = ("root", "cache", "build_cache", "layout")
_BEST_VALIDATION = (
    "mode",
    "every_epochs",
    "overlap",
    "window",
    "max_window_voxels",
    "min_window",
    "max_cases",
    "patches_per_case",
    "foreground_fraction",
)


def _fold_result(cfg: TrainConfig, checkpoint: str) -> dict[str, Any]:
    """The parts of recipe ``cfg`` (:data:`_FOLD_RESULT`) a fold's out-of-fold predictions depend on."""
    data = cfg.to_dict()
    out = {key: data[key] if keys is None else {k: data[key][k] for k in keys} for key, keys in _FOLD_RESULT.items()}
    out["data"] = {k: v for k, v in out["data"].items() if k not in _DATA_PLACE}
    if checkpoint == "best":
        out["validation"] = {k: data["validation"][k] for k in _BEST_VALIDATION}
    return out


def recipe_records(cfg: TrainConfig, records: str | os.PathLike) -> list[dict[str, Any]]:
    """The fold records in ``records`` (:func:`read_records`) when they measured recipe ``cfg``.

    Compared key by key on what a fold's predictions depend on (:data:`_FOLD_RESULT`), the records'
    recipe read through today's defaults: a recipe that differs only in its own validation split,
    logging or data folder (a fold of ``brainseg train --folds``, ``--set training.verbose=2``)
    takes them.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_records`; ``ValueError`` also for records of
            another recipe, naming the folder and the keys that differ.
    """
    found = read_records(records)
    checkpoint = found[0].get("checkpoint", "final")
    mine = flatten_config(_fold_result(cfg, checkpoint))
    theirs = flatten_config(_fold_result(as_config(found[0]["recipe_resolved"]), checkpoint))
    differ = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {mine.get(k)!r} here, {theirs.get(k)!r} there" for k in differ[:4])
        raise ValueError(
            f"{records}: these fold records measured another recipe ({found[0].get('recipe')!r}; {shown}): a "
            "changed recipe needs its own out-of-fold measure (brainseg cv), or drop validation.postprocessing_records"
        )
    return found


def _missing_folds(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """The folds of one measure's ``records`` (all of the same fold count) that have no record."""
    return sorted(set(range(int(records[0]["folds"]))) - {int(rec["fold"]) for rec in records})


def read_records(records: str | os.PathLike, *, complete: bool = True) -> list[dict[str, Any]]:
    """Every fold record of one measure in folder ``records`` (``fold_<k>.json``), by fold.

    ``complete=False`` also takes a measure still under way (some folds without a record).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no record, a damaged one, records of different measures (recipe digest, fold
            count or checkpoint) or (``complete``) a fold without a record, each naming the file or folds.
    """
    folder = Path(records)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of fold records (brainseg cv --records)")
    found = {p: rec for p in sorted(folder.glob("fold_*.json")) if (rec := read_record(p)) is not None}
    if not found:
        raise ValueError(f"{folder}: no fold record (fold_<k>.json); run brainseg cv first")
    (first_path, first), *others = found.items()
    for path, rec in found.items():  # one file per fold, named after it: no copy counted twice
        fold = rec.get("fold")
        if not isinstance(fold, int) or not 0 <= fold < int(first.get("folds", 0)) or path.name != f"fold_{fold}.json":
            raise ValueError(f"{path}: holds fold {fold!r} of {first.get('folds')!r}; a record is fold_<its fold>.json")
    for path, rec in others:
        differ = [k for k in ("recipe_digest", "folds", "checkpoint") if rec.get(k) != first.get(k)]
        if differ:
            raise ValueError(
                f"{path}: a record of another measure than {first_path.name} (its {', '.join(differ)} differ)"
            )
    missing = _missing_folds(list(found.values()))
    if missing and complete:
        raise ValueError(
            f"{folder}: fold(s) {missing} of {first['folds']} have no record yet; "
            "a complete out-of-fold measure is needed here (brainseg cv resumes it)"
        )
    return sorted(found.values(), key=lambda rec: int(rec["fold"]))


def volume_errors(cases: Mapping[str, Mapping[str, Any]], regions: Sequence[str]) -> dict[str, Any] | None:
    """Summed volume agreement of fold-record ``cases`` per region: predicted, reference, false-positive
    and missed millilitres, and how many cases are predicted larger than their reference. The overlap
    is recovered from each case's Dice and volumes (``Dice * (pred + ref) / 2``; 0 when both are
    empty, whatever the empty-mask rule), so a measure's bias (over- or under-segmentation) reads off
    its records. ``None`` when a case lacks a region's volume or a finite Dice (older records)."""

    def value(c: Mapping[str, Any], key: str, r: str) -> float:
        v = c.get(key, {}).get(r) if isinstance(c.get(key), Mapping) else None
        return float(v) if isinstance(v, (int, float)) else math.nan

    if not cases:
        return None
    out: dict[str, Any] = {}
    for r in regions:
        pred = np.array([value(c, "pred_ml", r) for c in cases.values()])
        ref = np.array([value(c, "ref_ml", r) for c in cases.values()])
        dice = np.array([value(c, "dice", r) for c in cases.values()])
        both = pred + ref
        if not np.all(np.isfinite(pred) & np.isfinite(ref) & (np.isfinite(dice) | (both == 0))):
            return None
        overlap = np.where(both > 0, np.nan_to_num(dice) * both / 2, 0.0)
        overlap = np.clip(overlap, 0.0, np.minimum(pred, ref))  # volumes are rounded in the record
        out[r] = {
            "pred_ml": float(pred.sum()),
            "ref_ml": float(ref.sum()),
            "false_positive_ml": float((pred - overlap).sum()),
            "missed_ml": float((ref - overlap).sum()),
            "over_segmented": int((pred > ref).sum()),
            "n": len(pred),
        }
    return out


def _volume_lines(named: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """Markdown rows of :func:`volume_errors` results, one block per named measure."""
    lines = [
        "| measure | region | predicted ml | reference ml | false positive ml | missed ml | cases over-segmented |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, vols in named.items():
        for r, v in (vols or {}).items():
            lines.append(
                f"| {name} | {r} | {v['pred_ml']:.1f} | {v['ref_ml']:.1f} | {v['false_positive_ml']:.1f} "
                f"| {v['missed_ml']:.1f} | {v['over_segmented']} of {v['n']} |"
            )
    return lines


# -- judging a candidate recipe against a baseline's measure (the rule of docs/benchmarks.md) ------
VERDICTS = ("replaces", "does not replace", "continue", "stop: futile")


def compare_records(
    candidate: str | os.PathLike,
    baseline: str | os.PathLike,
    *,
    resamples: int = 2000,
    seed: int = 0,
    futile_after: int = 2,
) -> dict[str, Any]:
    """Judge a candidate recipe's out-of-fold measure against a baseline's, case for case.

    The baseline's measure must be complete: its half-widths (case bootstrap 95 % interval over all
    its cases, :func:`summarize_records`) are the margins. The candidate's may be under way; it is
    compared on the cases its recorded folds held out, which must be the baseline's same folds
    (same fold count, checkpoint, held-out cases, regions and Dice rule). Per region: both means
    over those cases, the gain, and a paired bootstrap 95 % interval of the per-case gain (shown,
    not used by the verdict). The verdict (:data:`VERDICTS`):

    - complete: ``"replaces"`` when the gain is larger than the baseline's half-width in at least
      one region and negative in none, else ``"does not replace"``;
    - under way: ``"stop: futile"`` when at least ``futile_after`` folds are in (default 2: one
      fold of a few cases decides nothing) and the gain so far is below half the half-width in
      every region, else ``"continue"``.

    Returns:
        ``{"candidate", "baseline", "complete", "n_cases", "folds_compared", "regions", "per_region":
        {region: {"candidate", "baseline", "gain", "gain_ci95", "half_width"}}, "volumes":
        {"candidate", "baseline"} (:func:`volume_errors` on the compared cases), "verdict", "why"}``.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_records`; ``ValueError`` also when the two
            measures are not comparable, naming what differs.
    """
    from brainseg_tf.evaluation import bootstrap_ci

    check_int("futile_after", futile_after, 1)
    if Path(candidate).resolve() == Path(baseline).resolve():
        raise ValueError(f"{candidate}: a measure compared with itself; give the baseline's records in --against")
    cand = read_records(candidate, complete=False)
    base = read_records(baseline, complete=False)
    if missing := _missing_folds(base):
        raise ValueError(f"{baseline}: the baseline's measure must be complete; fold(s) {missing} have no record")
    head = cand[0]
    for key in ("folds", "checkpoint", "dice_rule", "regions"):
        if head.get(key) != base[0].get(key):
            raise ValueError(
                f"{candidate} and {baseline} are not comparable measures: {key} {head.get(key)!r} "
                f"against {base[0].get(key)!r}"
            )
    by_fold = {int(rec["fold"]): rec for rec in base}
    for rec in cand:
        if sorted(rec["cases"]) != sorted(by_fold[int(rec["fold"])]["cases"]):
            raise ValueError(
                f"{candidate}: fold {rec['fold']} holds out other cases than {baseline}'s fold {rec['fold']}"
            )
    regions = list(head["regions"])
    for folder, recs in ((candidate, cand), (baseline, base)):
        for rec in recs:
            for cid, c in rec["cases"].items():
                bad = [r for r in regions if not math.isfinite(float(c.get("dice", {}).get(r, math.nan)))]
                if bad:
                    raise ValueError(
                        f"{folder}/fold_{rec['fold']}.json: case {cid} has no finite {', '.join(bad)} Dice"
                    )
    base_cases = dict(sorted((cid, c["dice"]) for rec in base for cid, c in rec["cases"].items()))
    whole = _region_stats(base_cases, regions, resamples, seed)  # the measure's own intervals: cases sorted as there
    cases = [(rec, cid) for rec in cand for cid in sorted(rec["cases"])]
    per_region = {}
    for r in regions:
        mine = np.asarray([rec["cases"][cid]["dice"][r] for rec, cid in cases], dtype=float)
        theirs = np.asarray([by_fold[int(rec["fold"])]["cases"][cid]["dice"][r] for rec, cid in cases], dtype=float)
        gain = float(mine.mean() - theirs.mean())
        per_region[r] = {
            "candidate": float(mine.mean()),
            "baseline": float(theirs.mean()),
            "gain": gain,
            "gain_ci95": list(bootstrap_ci(mine - theirs, resamples=resamples, seed=seed)),
            "half_width": float(whole[r]["half_width"]),
        }
    complete = not _missing_folds(cand)
    if complete:
        above = [r for r in regions if per_region[r]["gain"] > per_region[r]["half_width"]]
        below = [r for r in regions if per_region[r]["gain"] < 0]
        verdict = "replaces" if above and not below else "does not replace"
        why = (
            f"gain above the baseline's half-width in {', '.join(above) or 'no region'}; "
            f"lower in {', '.join(below) or 'no region'}"
        )
    else:
        short = [r for r in regions if per_region[r]["gain"] < per_region[r]["half_width"] / 2]
        judged = len(cand) >= futile_after
        verdict = "stop: futile" if judged and len(short) == len(regions) else "continue"
        why = (
            f"after {len(cand)} of {head['folds']} folds the gain is below half the half-width in "
            f"{', '.join(short) or 'no region'}"
        )
        if not judged:
            why += f" (the futility rule judges from {futile_after} folds on)"
    return {
        "candidate": {"records": str(candidate), "recipe": head["recipe"], "recipe_digest": head["recipe_digest"]},
        "baseline": {"records": str(baseline), "recipe": base[0]["recipe"], "recipe_digest": base[0]["recipe_digest"]},
        "complete": complete,
        "n_cases": len(cases),
        "folds_compared": [int(rec["fold"]) for rec in cand],
        "regions": regions,
        "per_region": per_region,
        "volumes": {  # on the compared cases: which way each measure errs
            "candidate": volume_errors({cid: rec["cases"][cid] for rec, cid in cases}, regions),
            "baseline": volume_errors({cid: by_fold[int(rec["fold"])]["cases"][cid] for rec, cid in cases}, regions),
        },
        "verdict": verdict,
        "why": why,
    }


def format_comparison(comparison: Mapping[str, Any]) -> str:
    """:func:`compare_records`' result as a Markdown table and its verdict."""
    c = comparison
    lines = [
        f"{c['candidate']['recipe']} ({c['candidate']['records']}) against {c['baseline']['recipe']} "
        f"({c['baseline']['records']}) on the {c['n_cases']} cases of fold(s) "
        f"{', '.join(map(str, c['folds_compared']))}:",
        "",
        "| region | candidate | baseline | gain | paired 95 % interval of the gain | baseline half-width |",
        "|---|---|---|---|---|---|",
    ]
    for r, d in c["per_region"].items():
        lo, hi = d["gain_ci95"]
        lines.append(
            f"| {r} | {d['candidate']:.3f} | {d['baseline']:.3f} | {d['gain']:+.3f} | {lo:+.3f} – {hi:+.3f} "
            f"| {d['half_width']:.3f} |"
        )
    lines += ["", f"verdict: **{c['verdict']}** ({c['why']})"]
    volumes = c.get("volumes") or {}
    shown = {k: v for k, v in volumes.items() if v}
    if shown:
        lines += ["", "Volumes on the same cases (overlap from Dice and volumes):", ""]
        lines += _volume_lines(shown)
    missing = [k for k in ("candidate", "baseline") if not volumes.get(k)]
    if missing:
        lines += ["", f"(no volumes in the {' and '.join(missing)} records: older records)"]
    return "\n".join(lines) + "\n"


def summarize_records(records: Sequence[Mapping[str, Any]], *, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The out-of-fold measure from every fold's record: per-region mean Dice with a case-level
    bootstrap 95 % interval, the per-case table, the worst cases, the volume agreement
    (:func:`volume_errors`) and the record-based postprocessing selection (:func:`select_from_records`)."""
    first = records[0]
    regions = list(first["regions"])
    per_case: dict[str, dict[str, float]] = {}
    for rec in records:
        for cid, c in rec["cases"].items():
            if cid in per_case:
                raise ValueError(f"case {cid} is held out by two fold records")
            per_case[cid] = {
                **{r: c["dice"][r] for r in regions},
                "mean": float(np.mean([c["dice"][r] for r in regions])),
                "fold": rec["fold"],
            }
    per_case = dict(sorted(per_case.items()))
    worst = sorted(per_case, key=lambda c: (per_case[c]["mean"], c))[:WORST_CASES]
    return {
        "recipe": first["recipe"],
        "recipe_digest": first["recipe_digest"],
        "folds": first["folds"],
        "checkpoint": first["checkpoint"],
        "fixed_steps": {"optimizer_steps": first["optimizer_steps"]},
        "n_cases": len(per_case),
        "regions": regions,
        "dice_rule": first["dice_rule"],
        "dice": _region_stats(per_case, [*regions, "mean"], resamples, seed),
        "bootstrap": {"method": "percentile, cases resampled with replacement", "resamples": resamples, "seed": seed},
        "per_case": per_case,
        "worst_cases": [{"case": c, **per_case[c]} for c in worst],
        "volumes": volume_errors({cid: c for rec in records for cid, c in rec["cases"].items()}, regions),
        "postprocessing_from_records": select_from_records(records).to_dict(),
        "machines": sorted({json.dumps(r.get("machine", {}), sort_keys=True) for r in records}),
    }


def _format(summary: Mapping[str, Any]) -> str:
    parts = [
        f"{k} {s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"
        for k, s in summary["dice"].items()
        if math.isfinite(s["mean"])
    ]
    return f"out-of-fold mean Dice (95 % bootstrap interval) over {summary['n_cases']} cases: " + ", ".join(parts)


def _records_markdown(summary: Mapping[str, Any]) -> str:
    regions = summary["regions"]
    boot = summary["bootstrap"]
    lines = [
        f"## Out-of-fold results: {summary['recipe']} (recipe digest {summary['recipe_digest']})",
        "",
        f"{summary['n_cases']} cases, {summary['folds']} folds, checkpoint `{summary['checkpoint']}`, "
        f"{summary['fixed_steps']['optimizer_steps']} optimizer steps per fold (no time limit); each case "
        f"predicted by the fold that did not train on it, postprocessing off; {summary['dice_rule']}. "
        f"Interval: {boot['method']}, {boot['resamples']} resamples, seed {boot['seed']}.",
        "",
        "| region | mean Dice | 95 % interval | half-width | n |",
        "|---|---|---|---|---|",
    ]
    for key, st in summary["dice"].items():
        lines.append(
            f"| {key} | {st['mean']:.3f} | {st['ci95'][0]:.3f} – {st['ci95'][1]:.3f} | {st['half_width']:.3f} | {st['n']} |"
        )
    lines += ["", f"Worst cases (mean Dice over {'/'.join(regions)}):", ""]
    lines += [
        f"- {w['case']} (fold {w['fold']}): " + ", ".join(f"{k} {w[k]:.3f}" for k in [*regions, "mean"])
        for w in summary["worst_cases"]
    ]
    if summary.get("volumes"):
        lines += ["", "Volumes summed over the cases (overlap from Dice and volumes; which way the measure errs):", ""]
        lines += _volume_lines({summary["recipe"]: summary["volumes"]})
    post = summary["postprocessing_from_records"]
    chosen = "; ".join(post["chosen"]) or "none"
    lines += [
        "",
        f"Postprocessing chosen from the fold records (one rule at most): {chosen} "
        f"(mean Dice {post['baseline']['mean']:.3f} -> {post['final']['mean']:.3f}).",
        "",
        "| case | fold | " + " | ".join(regions) + " | mean |",
        "|---|---|" + "---|" * (len(regions) + 1),
    ]
    for cid, d in summary["per_case"].items():
        lines.append(f"| {cid} | {d['fold']} | " + " | ".join(f"{d[r]:.3f}" for r in [*regions, "mean"]) + " |")
    return "\n".join(lines) + "\n"


def _judge(rec_dir: Path, against: str | os.PathLike, resamples: int, seed: int, futile_after: int) -> dict[str, Any]:
    """:func:`compare_records` of the records so far, printed and written beside them."""
    comparison = compare_records(rec_dir, against, resamples=resamples, seed=seed, futile_after=futile_after)
    atomic.write_json(rec_dir / COMPARISON_FILE, comparison)
    atomic.write_text(rec_dir / COMPARISON_REPORT, format_comparison(comparison))
    print(f"[brainseg cv] against {against}: {comparison['verdict']} ({comparison['why']})", flush=True)
    return comparison


def cross_validate(
    config_or_path: TrainConfig | str | os.PathLike | Mapping[str, Any],
    *,
    run_dir: str | os.PathLike | None = None,
    folds: int | None = None,
    checkpoint: str = "final",
    records: str | os.PathLike | None = None,
    resamples: int = 2000,
    seed: int = 0,
    progress: bool = True,
    order: Sequence[int] | None = None,
    against: str | os.PathLike | None = None,
    stop_if_futile: bool = False,
    futile_after: int = 2,
) -> CrossValResult:
    """Train each fold, measure it on the cases it held out, and score all folds together.

    Fold by fold: a fold whose record (``RECORDS/fold_<k>.json``, :func:`records_dir`; default
    ``results/cv/<run directory name>``, a folder meant to be committed) measured the same recipe
    (:func:`recipe_digest`), folds, checkpoint and held-out cases is skipped, so the measure
    resumes across machines and sessions from the records alone; otherwise the fold trains (an
    interrupted fold resumes at its backup in ``RUN_DIR/fold_<k>``) and :func:`measure_fold`
    writes its record. With every record present, :func:`summarize_records` writes
    ``RECORDS/summary.json`` and ``RECORDS/report.md``; when every case's raw prediction is also
    in ``RUN_DIR/oof/predictions`` (all folds measured on this machine) and the references are
    label files (a dataset folder; not a tar or the Kaggle slice set, whose cases the records'
    per-rule selection covers), the exact multi-rule postprocessing selection runs on them too
    (``RUN_DIR/oof/postprocessing.json``).

    Args:
        config_or_path: a :class:`TrainConfig`, a dict or a recipe path.
        run_dir: parent run directory (default ``runs/<config name>``).
        folds: K (default ``split.folds``); the split becomes the seeded k-fold one.
        checkpoint: each fold's model: ``"final"`` (default: the fixed schedule's last step) or
            ``"best"`` (chosen on the held-out cases themselves, so its out-of-fold score is optimistic).
        records: the records folder (see above).
        resamples, seed: of the bootstrap interval.
        progress: show progress over cases.
        order: folds to measure first, in this order (the others follow in increasing order).
            Scheduling only: a fold's record does not depend on when it ran.
        against: a baseline's complete records folder of the same split (checked before any
            fold trains): after each fold this call measures, or once when every fold was
            already recorded, the measure so far is judged against it (:func:`compare_records`;
            printed, and written to ``RECORDS/comparison.json`` and ``comparison.md``).
        stop_if_futile: with ``against``, stop (``completed`` False, ``stopped="futile"``) when
            the verdict is ``"stop: futile"``: after a fold, or before training the first missing
            fold when the records already there are futile (a re-run trains nothing more).
        futile_after: the futility rule judges once this many folds are recorded (default 2).

    Raises:
        ValueError: bad arguments or recipe, a record of another measure in the records folder.
        FileNotFoundError: no raw cases (``data.root``), a fold without the checkpoint.
    """
    check_choice("checkpoint", checkpoint, CHECKPOINTS)
    check_int("resamples", resamples, 1)
    check_int("futile_after", futile_after, 1)
    original = as_config(config_or_path)
    cfg = cv_config(original)
    k = int(folds) if folds is not None else cfg.split.folds
    check_int("folds", k, 2)
    if stop_if_futile and futile_after >= k:
        raise ValueError(f"futile_after={futile_after} with {k} folds: the futility rule could never stop the measure")
    first = list(order or ())
    for f in first:
        if not isinstance(f, int) or isinstance(f, bool) or not 0 <= f < k:
            raise ValueError(f"order={first}: fold {f!r} is not one of the {k} folds (0-{k - 1})")
    if len(set(first)) != len(first):
        raise ValueError(f"order={first}: a fold appears twice")
    if stop_if_futile and against is None:
        raise ValueError("stop_if_futile needs against= (the baseline's records)")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    from brainseg_tf.io.predictions import label_path
    from brainseg_tf.training.data import data_source, labelled_ids

    root = _dataset_root(cfg)
    case_ids = labelled_ids(data_source(cfg), cfg)  # what the folds split, as train_folds sees them
    rec_dir = records_dir(run_dir, records)
    digest = recipe_digest(cfg)
    if against is not None:  # a complete baseline of this same split, before any fold trains
        base = read_records(against)
        for key, mine in (("folds", k), ("checkpoint", checkpoint)):
            if base[0].get(key) != mine:
                raise ValueError(f"against={against}: its {key} is {base[0].get(key)!r}, this measure's {mine!r}")
        for rec in base:
            if sorted(rec["cases"]) != fold_val_ids(cfg, int(rec["fold"]), k, case_ids):
                raise ValueError(
                    f"{against}/fold_{rec['fold']}.json: holds out other cases than fold {rec['fold']} here"
                )
    steps = cfg.training.epochs * cfg.training.steps_per_epoch
    print(
        f"[brainseg cv] {k} folds of {steps} optimizer steps each (recipe digest {digest}); "
        f"training.max_minutes={original.training.max_minutes!r} switched off (fixed steps, no time limit); "
        f"records in {rec_dir}",
        flush=True,
    )
    done: dict[int, dict[str, Any]] = {}
    measured: list[str] = []
    skipped: list[int] = []
    for fold in [*first, *(f for f in range(k) if f not in first)]:
        path = rec_dir / f"fold_{fold}.json"
        val_ids = fold_val_ids(cfg, fold, k, case_ids)
        rec = read_record(path)
        if rec is not None:
            why = record_matches(rec, digest=digest, folds=k, fold=fold, checkpoint=checkpoint, val_ids=val_ids)
            if why is not None:
                raise ValueError(f"{path}: a record of another measure ({why}); pass --records DIR or delete it")
            print(f"[brainseg cv] fold {fold}: already measured ({path}); skipped", flush=True)
            done[fold] = rec
            skipped.append(fold)
            continue
        # before hours of training, the records already there (of an earlier call) may be futile
        earlier = stop_if_futile and not measured and any(rec_dir.glob("fold_*.json"))
        if earlier and _judge(rec_dir, against, resamples, seed, futile_after)["verdict"] == "stop: futile":
            print("[brainseg cv] stopped before training: futile by the rule (stop_if_futile)", flush=True)
            return CrossValResult(run_dir, rec_dir, False, {}, measured, skipped, stopped="futile")
        trained = train_folds(cfg, run_dir=run_dir, folds=k, resume=True, only=[fold])
        if not trained.summary["per_fold"][fold]["completed"]:
            print(f"[brainseg cv] fold {fold} did not complete; re-run to continue", flush=True)
            return CrossValResult(run_dir, rec_dir, False, {}, measured, skipped)
        rec = measure_fold(cfg, run_dir, fold, k, checkpoint=checkpoint, progress=progress)
        rec_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, rec)
        done[fold] = rec
        measured += sorted(rec["cases"])
        means = {r: np.mean([c["dice"][r] for c in rec["cases"].values()]) for r in rec["regions"]}
        print(
            f"[brainseg cv] fold {fold}: " + ", ".join(f"{r} {v:.3f}" for r, v in means.items()) + f"; record {path}",
            flush=True,
        )
        if against is not None:
            comparison = _judge(rec_dir, against, resamples, seed, futile_after)
            if stop_if_futile and comparison["verdict"] == "stop: futile" and len(done) < k:
                print("[brainseg cv] stopped: futile by the rule (stop_if_futile)", flush=True)
                return CrossValResult(run_dir, rec_dir, False, {}, measured, skipped, stopped="futile")
    if against is not None and not measured:  # every fold was already recorded: judge once
        _judge(rec_dir, against, resamples, seed, futile_after)
    summary = summarize_records([done[f] for f in range(k)], resamples=resamples, seed=seed)
    pred_dir = run_dir / OOF_DIR / "predictions"
    from brainseg_tf.io.layouts import has_scan_files

    # references the label-file pairing reads (reference_sources): a dataset folder, not a tar or the Kaggle slices
    label_files = root.is_dir() and has_scan_files(root)
    if label_files and all(label_path(pred_dir, cid).is_file() for cid in summary["per_case"]):
        from brainseg_tf import postprocessing

        selection = postprocessing.select_for_folders(
            pred_dir,
            root,
            case_ids=list(summary["per_case"]),
            regions=summary["regions"],
            out=run_dir / OOF_DIR / postprocessing.SELECTION_FILE,
        )
        summary["postprocessing"] = {
            "chosen": [r.describe() for r in selection.rules],
            "baseline": selection.baseline,
            "final": selection.final,
            "evidence": selection.evidence(),
        }
    atomic.write_json(rec_dir / SUMMARY_FILE, summary)
    atomic.write_text(rec_dir / REPORT_FILE, _records_markdown(summary))
    print(f"[brainseg cv] {_format(summary)}", flush=True)
    print(f"[brainseg cv] {rec_dir / REPORT_FILE}", flush=True)
    return CrossValResult(run_dir, rec_dir, True, summary, measured, skipped)
