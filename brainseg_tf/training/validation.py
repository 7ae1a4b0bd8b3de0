"""Whole-volume validation: the run's model predicts whole validation cases as ``brainseg predict``
does, scored with the legacy BraTS empty-mask rule (``validation.mode="volumes"``), and the
postprocessing chosen on those cases after training (``validation.select_postprocessing``), or
taken from the recipe's out-of-fold records (``validation.postprocessing_records``).

Prediction is :func:`brainseg_tf.inference.predict_case` with a :class:`~brainseg_tf.inference.Predictor`
built from the in-memory model and the run's model card: the same crop, z-score, Gaussian sliding
window (roi = ``pipeline.patch_size``, overlap ``validation.overlap``), label conversion, card
postprocessing and paste-back to the native grid as ``brainseg predict RUN_DIR``. Labels are the
internal labels of the recipe's label scheme (``cfg.scheme``; canonical 0 BG, 1 NCR, 2 ED, 3 ET
for the glioma schemes): the predictor decodes a softmax head by argmax and a sigmoid head with
:meth:`~brainseg_tf.schemes.LabelScheme.decode_regions`. Dice per region of the scheme (WT, TC, ET
by default; ``ped2024``: WT, TC, ET, NET, CC, ED) is :func:`brainseg_tf.evaluation.dice_score`
of the region's internal labels (both empty: 1, one empty: 0), :func:`scheme_region_dice`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from brainseg_tf.evaluation import dice_score, region_dice
from brainseg_tf.schemes import LabelScheme
from brainseg_tf.training.config import TrainConfig
from brainseg_tf.training.data import resolve_path

__all__ = [
    "RAW",
    "VolumeValidation",
    "case_regions",
    "predict_cases",
    "region_dice",
    "scheme_region_dice",
    "select_postprocessing",
    "postprocessing_records",
    "postprocessing_from_records",
]

# Postprocessing off: what the selection starts from.
RAW: dict[str, Any] = {
    "et_min_voxels": 0,
    "min_component_voxels": 0,
    "largest_component": (),
    "min_component_voxels_tc": 0,
    "min_component_voxels_et": 0,
}


def case_regions(cfg: TrainConfig) -> tuple[str, ...]:
    """The regions a recipe's model is scored on: its own for a single-region head, else its scheme's
    (WT, TC, ET by default)."""
    return (cfg.pipeline.region.upper(),) if cfg.head == "region" else cfg.scheme.region_names


def scheme_region_dice(
    pred: np.ndarray, ref: np.ndarray, scheme: LabelScheme, regions: Sequence[str] | None = None
) -> dict[str, float]:
    """Dice per region of two internal label maps ``(X, Y, Z)`` of ``scheme`` (legacy rule: both empty -> 1).

    Args:
        pred, ref: internal labels of ``scheme`` (canonical 0-3 for the glioma schemes).
        scheme: the label scheme; a region is the set of its internal labels.
        regions: region names (default: all of the scheme's, in channel order).
    """
    out = {}
    for r in scheme.region_names if regions is None else regions:
        labels = scheme.region_internal(r)
        out[r] = dice_score(np.isin(ref, labels), np.isin(pred, labels))
    return out


def _dataset(cfg: TrainConfig) -> Any:
    from brainseg_tf.training.data import open_root

    root = resolve_path(cfg.data.root, cfg)
    if root is None or not root.exists():
        raise FileNotFoundError(f"validation on whole volumes needs data.root (raw cases); {cfg.data.root!r} not found")
    return open_root(root, cfg)


def predict_cases(
    predictor: Any, cfg: TrainConfig, case_ids: Sequence[str], *, overlap: float, **postprocessing: Any
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """Predict whole cases: ``(predictions, references, median voxel volume mm^3)``, label maps by
    case id on the native grid. ``postprocessing`` overrides the card's (e.g. :data:`RAW`)."""
    from brainseg_tf import inference

    dataset = _dataset(cfg)
    preds, refs, volumes = {}, {}, []
    for case_id in case_ids:
        case = dataset[case_id]
        refs[case_id] = np.asarray(case.label)
        volumes.append(float(np.prod(case.spacing)))
        preds[case_id] = inference.predict_case(predictor, case, overlap=overlap, **postprocessing).labels
        del case
    return preds, refs, float(np.median(volumes)) if volumes else 1.0


class VolumeValidation(keras.callbacks.Callback):
    """Score whole validation cases every ``every`` epochs, at the last epoch and at an epoch that
    stops the run early; add ``val_volume_dice_<region>`` and ``val_volume_mean_dice`` (mean over
    the regions of the per-case mean Dice) to that epoch's logs. Epochs without validation get no
    such keys (``log.csv`` leaves them empty, ``NA``; :class:`BestCheckpoint` skips them).

    Put it after :class:`TimeLimit` (to see its stop) and before the checkpoint and log callbacks.

    Args:
        cfg: the recipe (data root, layout, label scheme and its regions, overlap).
        card: the run's :class:`~brainseg_tf.card.ModelCard` (what ``predict`` reads from RUN_DIR).
        case_ids: validation case ids.
        every: validation period in epochs.
        epochs: total epochs of the run.
    """

    def __init__(self, cfg: TrainConfig, card: Any, case_ids: Sequence[str], every: int, epochs: int):
        super().__init__()
        self.cfg, self.card, self.case_ids = cfg, card, list(case_ids)
        self.every, self.epochs = int(every), int(epochs)
        self.regions = case_regions(cfg)
        self._predictor: Any = None
        self.seconds: list[float] = []

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) is validated."""
        done = epoch + 1
        return done % self.every == 0 or done >= self.epochs or bool(getattr(self.model, "stop_training", False))

    def predictor(self) -> Any:
        if self._predictor is None or self._predictor.model is not self.model:
            from brainseg_tf.inference import Predictor

            self._predictor = Predictor.from_keras(self.model, self.card)
        return self._predictor

    def scores(self) -> dict[str, float]:
        """The log entries for the model as it is now."""
        t0 = time.monotonic()
        preds, refs, _ = predict_cases(self.predictor(), self.cfg, self.case_ids, overlap=self.cfg.validation.overlap)
        per_case = [scheme_region_dice(preds[c], refs[c], self.cfg.scheme, self.regions) for c in self.case_ids]
        means = {r: float(np.mean([s[r] for s in per_case])) for r in self.regions}
        out = {f"val_volume_dice_{r.lower()}": v for r, v in means.items()}
        out["val_volume_mean_dice"] = float(np.mean(list(means.values())))
        self.seconds.append(time.monotonic() - t0)
        if not all(math.isfinite(v) for v in out.values()):  # cannot happen with the empty-mask rule
            raise FloatingPointError(f"volume validation gave non-finite scores {out}")
        print(
            f"[brainseg train] volume validation ({len(self.case_ids)} cases, overlap "
            f"{self.cfg.validation.overlap:g}, {self.seconds[-1]:.1f} s): "
            + " ".join(f"{k.removeprefix('val_volume_')}={v:.4f}" for k, v in out.items()),
            flush=True,
        )
        return out

    def on_epoch_end(self, epoch: int, logs=None):
        if logs is not None and self.case_ids and self.due(epoch):
            logs.update(self.scores())


def select_postprocessing(cfg: TrainConfig, split: Any, run_dir: Path) -> dict[str, Any]:
    """Choose postprocessing on the validation cases with the run's best checkpoint, record it.

    The checkpoint :func:`brainseg_tf.inference.load_predictor` picks from ``run_dir`` (``best.keras``
    first) predicts every validation case with postprocessing off (:data:`RAW`);
    :func:`brainseg_tf.postprocessing.select` chooses the rules (regions: the model's own for a
    single-region head, else its scheme's; size grid converted with the cases' median voxel volume);
    the table is printed and :func:`brainseg_tf.postprocessing.record` writes the card's
    postprocessing and ``run_dir/postprocessing.json``. Returns a summary for ``metrics.json``.
    """
    from brainseg_tf import inference, postprocessing

    t0 = time.monotonic()
    predictor = inference.load_predictor(run_dir)
    preds, refs, voxel_volume = predict_cases(predictor, cfg, split.val_ids, overlap=cfg.validation.overlap, **RAW)
    selection = postprocessing.select(
        preds, refs, voxel_volume=voxel_volume, regions=case_regions(cfg), scheme=cfg.scheme.name
    )
    return _record_selection(selection, run_dir, t0, model=Path(predictor.source or "").name)


def postprocessing_records(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The fold records ``validation.postprocessing_records`` names, checked to be of recipe ``cfg``
    (:func:`brainseg_tf.training.crossval.recipe_records`: refused naming the folder otherwise)."""
    from brainseg_tf.training.crossval import recipe_records

    return recipe_records(cfg, resolve_path(cfg.validation.postprocessing_records, cfg))


def postprocessing_from_records(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Record in ``run_dir``'s card the postprocessing chosen on every out-of-fold case of the
    recipe's fold records (``validation.postprocessing_records``;
    :func:`brainseg_tf.training.crossval.select_from_records`), with its evidence, instead of a
    choice on the run's own validation cases. Returns a summary for ``metrics.json``."""
    from brainseg_tf.training.crossval import select_from_records

    t0 = time.monotonic()
    selection = select_from_records(postprocessing_records(cfg))
    return _record_selection(selection, run_dir, t0, records=str(cfg.validation.postprocessing_records))


def _record_selection(selection: Any, run_dir: Path, t0: float, **source: Any) -> dict[str, Any]:
    """Print ``selection``'s table, record it in ``run_dir``'s card; the summary for ``metrics.json``."""
    from brainseg_tf import postprocessing

    print("[brainseg train] " + selection.format().replace("\n", "\n[brainseg train] "), flush=True)
    card = postprocessing.record(selection, run_dir)
    return {
        **source,
        "chosen": [r.describe() for r in selection.rules],
        "postprocessing": dataclasses.asdict(card.postprocessing),
        "baseline": selection.baseline,
        "final": selection.final,
        "cases": len(selection.per_case),
        "file": postprocessing.SELECTION_FILE,
        "seconds": round(time.monotonic() - t0, 1),
    }
