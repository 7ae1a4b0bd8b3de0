"""Scores of survival predictions (BraTS accuracy, MSE, Spearman), their intervals, cross-validation,
and the Kaplan-Meier curve."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from brainseg_tf.checks import check_choice, check_int
from brainseg_tf.survival.classes import SURVIVAL_CLASSES, survival_class
from brainseg_tf.survival.cohort import TrainingSet
from brainseg_tf.survival.models import fit_training_set

__all__ = ["wilson_interval", "scores", "bootstrap_ci", "cross_validate", "format_scores", "kaplan_meier"]


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval (95 % by default) of a proportion ``successes / n``; NaNs for ``n <= 0``."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan  # undefined for a constant prediction (the majority baseline)
    return float(stats.spearmanr(a, b).statistic)


def scores(true_days: Sequence[float] | np.ndarray, pred_days: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """BraTS survival scores of predictions against true survival (both in days).

    Returns:
        ``n``, ``accuracy`` (3-class, :data:`~brainseg_tf.survival.CLASS_THRESHOLDS_DAYS`) with
        its 95 % Wilson interval ``accuracy_ci``, ``mse`` and ``median_se`` (days^2),
        ``spearman`` (NaN for a constant prediction), ``confusion`` (3x3, rows true class,
        columns predicted, order :data:`~brainseg_tf.survival.SURVIVAL_CLASSES`).

    Raises:
        ValueError: arrays not 1-D of one length, or empty.
    """
    t = np.asarray(true_days, dtype=np.float64)
    p = np.asarray(pred_days, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"true and predicted days must be 1-D of one length, got {t.shape} and {p.shape}")
    if not len(t):
        raise ValueError("no patients to score")
    ct, cp = survival_class(t), survival_class(p)
    confusion = np.zeros((3, 3), dtype=np.int64)
    np.add.at(confusion, (ct, cp), 1)
    correct = int(np.trace(confusion))
    se = (t - p) ** 2
    return {
        "n": int(len(t)),
        "accuracy": correct / len(t),
        "accuracy_ci": list(wilson_interval(correct, len(t))),
        "mse": float(se.mean()),
        "median_se": float(np.median(se)),
        "spearman": _spearman(t, p),
        "confusion": confusion.tolist(),
    }


# The metrics bootstrap_ci resamples: (true days, predicted days) -> value.
_BOOTSTRAP_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda t, p: float(np.mean(survival_class(t) == survival_class(p))),
    "mse": lambda t, p: float(np.mean((t - p) ** 2)),
    "median_se": lambda t, p: float(np.median((t - p) ** 2)),
    "spearman": _spearman,
}


def bootstrap_ci(
    true_days: np.ndarray,
    pred_days: np.ndarray,
    metric: str,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a :func:`scores` metric (``accuracy``, ``mse``,
    ``median_se`` or ``spearman``) over patients resampled with replacement.

    Raises:
        ValueError: an unknown metric.
    """
    value = _BOOTSTRAP_METRICS[check_choice("metric", metric, tuple(_BOOTSTRAP_METRICS))]
    t, p = np.asarray(true_days, dtype=np.float64), np.asarray(pred_days, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        i = rng.integers(0, len(t), len(t))
        values.append(value(t[i], p[i]))
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    if not len(v):
        return (math.nan, math.nan)
    lo = (1.0 - level) / 2.0
    return (float(np.quantile(v, lo)), float(np.quantile(v, 1.0 - lo)))


def cross_validate(
    data: TrainingSet,
    method: str = "ridge",
    *,
    folds: int = 5,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """K-fold cross-validation with a fixed seed; scores of the pooled out-of-fold predictions.

    Folds are stratified by survival class (scikit-learn ``StratifiedKFold``, shuffled with
    ``seed``) when every class has at least ``folds`` patients, else plain shuffled ``KFold``.

    Returns:
        ``{"method", "folds", "splitter", "predictions" (n,), "scores"` (:func:`scores`),
        "fold_accuracy" (per fold)}``.

    Raises:
        ValueError: ``folds`` not an integer between 2 and the number of patients.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(data)
    check_int("folds", folds, 2, n)
    cls = survival_class(data.days)
    stratify = np.bincount(cls, minlength=3).min() >= folds
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    oof = np.empty(n, dtype=np.float64)
    fold_acc = []
    for train, test in splitter.split(np.zeros(n), cls):
        model = fit_training_set(data.subset(train), method, feature_names=feature_names, seed=seed)
        oof[test] = model.predict_set(data.subset(test))
        fold_acc.append(float(np.mean(survival_class(oof[test]) == cls[test])))
    return {
        "method": method,
        "folds": folds,
        "splitter": "stratified" if stratify else "kfold",
        "predictions": oof,
        "scores": scores(data.days, oof),
        "fold_accuracy": fold_acc,
    }


def format_scores(result: Mapping[str, Any], title: str = "") -> str:
    """Readable text of :func:`scores` (or of an :func:`~brainseg_tf.survival.evaluate_predictions` result)."""
    if "scored" in result:
        head = f"{title}scored on {'GTR patients only' if result['gtr_only'] else 'all patients'}"
        text = head + "\n" + format_scores(result["scored"])
        if result["gtr_only"]:
            text += "\nall patients:\n" + format_scores(result["all"])
        if result.get("missing"):
            text += f"\n{len(result['missing'])} patient(s) of the table have no prediction"
        return text
    lo, hi = result["accuracy_ci"]
    lines = [
        f"{title}patients    {result['n']}",
        f"accuracy    {result['accuracy']:.3f}  (95% Wilson {lo:.3f}-{hi:.3f})",
        f"MSE         {result['mse']:.0f} days^2",
        f"median SE   {result['median_se']:.0f} days^2",
        f"Spearman    {result['spearman']:.3f}",
        "confusion   rows true, columns predicted (" + ", ".join(SURVIVAL_CLASSES) + ")",
    ]
    lines += ["            " + " ".join(f"{v:5d}" for v in row) for row in result["confusion"]]
    return "\n".join(lines)


def kaplan_meier(
    days: Sequence[float] | np.ndarray, observed: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival curve.

    Args:
        days: time of death or of the last follow-up (censored), in days.
        observed: ``True`` for a death, ``False`` for a censored patient.

    Returns:
        ``(times, survival)``: the step function, starting at ``(0, 1)``, with one step per
        distinct death time (``plt.step(times, survival, where="post")``).

    Raises:
        ValueError: ``days`` and ``observed`` not 1-D of one length.
    """
    t = np.asarray(days, dtype=np.float64)
    e = np.asarray(observed, dtype=bool)
    if t.shape != e.shape or t.ndim != 1:
        raise ValueError("days and observed must be 1-D of one length")
    times, surv = [0.0], [1.0]
    s = 1.0
    for time in np.unique(t[e]):
        at_risk = int(np.count_nonzero(t >= time))
        deaths = int(np.count_nonzero((t == time) & e))
        s *= 1.0 - deaths / at_risk
        times.append(float(time))
        surv.append(s)
    return np.asarray(times), np.asarray(surv)
