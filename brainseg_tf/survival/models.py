"""Overall-survival models: fitted with scikit-learn, stored as plain JSON, evaluated with NumPy.

Loading a model executes no code, and predictions after a reload are bit-identical.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf import atomic
from brainseg_tf.checks import check_choice
from brainseg_tf.io.errors import DataError, MissingFileError
from brainseg_tf.survival.classes import CLASS_THRESHOLDS_DAYS, SURVIVAL_CLASSES, survival_class
from brainseg_tf.survival.clinical import (
    CLINICAL_FEATURES,
    ClinicalRecord,
    ClinicalTable,
    as_table,
    clinical_values,
    match_ids,
)
from brainseg_tf.survival.cohort import TrainingSet, training_set
from brainseg_tf.survival.features import IMAGING_FEATURES, case_features, read_features

__all__ = [
    "METHODS",
    "MIN_PREDICTED_DAYS",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "SurvivalModel",
    "load",
    "fit_training_set",
    "fit",
    "predict",
    "predict_table",
]

METHODS: tuple[str, ...] = ("majority", "age", "ridge", "forest")
MIN_PREDICTED_DAYS = 1.0  # predictions are clipped below at one day (a linear fit can go negative)
MODEL_FORMAT = "brainseg_tf.survival"
MODEL_VERSION = 1
_RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
_FOREST = {"n_estimators": 100, "min_samples_leaf": 5, "max_features": 0.5}


def _tree_to_json(tree: Any) -> dict[str, list]:
    t = tree.tree_
    return {
        "left": [int(v) for v in t.children_left],
        "right": [int(v) for v in t.children_right],
        "feature": [int(v) for v in t.feature],
        "threshold": [float(v) for v in t.threshold],
        "value": [float(v) for v in t.value[:, 0, 0]],
    }


def _tree_predict(tree: Mapping[str, list], x32: np.ndarray) -> float:
    """Leaf value of one JSON tree for one sample (features compared as float32, as scikit-learn does)."""
    node = 0
    left, right, feature, threshold = tree["left"], tree["right"], tree["feature"], tree["threshold"]
    while left[node] != -1:
        node = left[node] if x32[feature[node]] <= threshold[node] else right[node]
    return tree["value"][node]


@dataclass
class SurvivalModel:
    """A fitted overall-survival model: plain data, evaluated with NumPy.

    Attributes:
        method: one of :data:`METHODS`.
        features: the feature names the model reads, in order.
        params: the fitted numbers (JSON types only).
        meta: training facts (patients, excluded, dropped features, seed, source files).
    """

    method: str
    features: tuple[str, ...]
    params: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def _vector(self, row: Mapping[str, Any]) -> np.ndarray:
        bad = [f for f in self.features if not math.isfinite(float(row.get(f, math.nan)))]
        if bad:
            raise ValueError(
                f"the {self.method} model needs features {bad}, missing or NaN here "
                "(centroids need affine=, brain fractions brain_mask=)"
            )
        return np.array([float(row[f]) for f in self.features], dtype=np.float64)

    def predict_one(self, row: Mapping[str, Any]) -> float:
        """Predicted survival in days (>= :data:`MIN_PREDICTED_DAYS`) for one feature row."""
        x = self._vector(row)
        p = self.params
        if self.method == "majority":
            days = p["days"]
        elif self.method in ("age", "ridge"):
            terms = [c * ((v - m) / s) for c, v, m, s in zip(p["coef"], x, p["mean"], p["scale"])]
            days = p["intercept"] + math.fsum(terms)  # exactly rounded: no BLAS-order dependence
        elif self.method == "forest":
            x32 = x.astype(np.float32)
            days = math.fsum(_tree_predict(t, x32) for t in p["trees"]) / len(p["trees"])
        else:
            raise ValueError(f"unknown method {self.method!r}")
        return max(float(days), MIN_PREDICTED_DAYS)

    def predict_rows(self, rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`predict_one` over rows -> ``(n,)`` float64 days."""
        return np.array([self.predict_one(r) for r in rows], dtype=np.float64)

    def predict_set(self, data: TrainingSet) -> np.ndarray:
        """Predictions for every patient of a :class:`~brainseg_tf.survival.TrainingSet`."""
        n = len(data)
        return self.predict_rows({k: v[i] for k, v in data.columns.items()} for i in range(n))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document :meth:`save` writes."""
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "method": self.method,
            "features": list(self.features),
            "class_thresholds_days": list(CLASS_THRESHOLDS_DAYS),
            "params": self.params,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (atomic); :func:`load` reads it back bit-identically."""
        return atomic.write_json(path, self.to_dict(), indent=1)


def load(path: str | Path) -> SurvivalModel:
    """Read a model written by :meth:`SurvivalModel.save` (plain JSON; no code is executed).

    Raises:
        MissingFileError: no such file.
        DataError: not a survival model file, another format version, or missing fields.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{path}: model file not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"{path}: not a JSON survival model ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise DataError(path, f"{path}: not a {MODEL_FORMAT} model file")
    if obj.get("version") != MODEL_VERSION:
        raise DataError(
            path, f"{path}: model format version {obj.get('version')!r}, this version reads {MODEL_VERSION}"
        )
    if obj.get("method") not in METHODS or not isinstance(obj.get("params"), dict):
        raise DataError(path, f"{path}: unknown method {obj.get('method')!r} or no params")
    if tuple(obj.get("class_thresholds_days", ())) != CLASS_THRESHOLDS_DAYS:
        raise DataError(
            path, f"{path}: class thresholds {obj.get('class_thresholds_days')} differ from {CLASS_THRESHOLDS_DAYS}"
        )
    return SurvivalModel(obj["method"], tuple(obj.get("features", ())), obj["params"], obj.get("meta", {}))


def _default_features(method: str, data: TrainingSet) -> tuple[str, ...]:
    if method == "majority":
        return ()
    if method == "age":
        return ("age",)
    return CLINICAL_FEATURES + (IMAGING_FEATURES if data.has_imaging else ())


def _fit_linear(method: str, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """OLS on raw values (``"age"``) or ridge on standardised ones, as JSON numbers."""
    from sklearn.linear_model import LinearRegression, RidgeCV

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    if method == "age":  # the published baseline: ordinary least squares on raw age
        mean, scale = np.zeros_like(mean), np.ones_like(scale)
    z = (x - mean) / scale
    est = LinearRegression() if method == "age" else RidgeCV(alphas=_RIDGE_ALPHAS)
    est.fit(z, y)
    out = {
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": [float(c) for c in est.coef_],
        "intercept": float(est.intercept_),
    }
    if method == "ridge":
        out["alpha"] = float(est.alpha_)
    return out


def _fit_arrays(method: str, x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    if method == "majority":
        cls = survival_class(y)
        counts = np.bincount(cls, minlength=3)
        top = int(np.argmax(counts))  # ties go to the shorter class
        return {"days": float(np.median(y[cls == top])), "class": SURVIVAL_CLASSES[top]}
    if method in ("age", "ridge"):
        return _fit_linear(method, x, y)
    from sklearn.ensemble import RandomForestRegressor

    est = RandomForestRegressor(random_state=seed, n_jobs=1, **_FOREST).fit(x, y)
    return {"trees": [_tree_to_json(t) for t in est.estimators_], "settings": dict(_FOREST)}


def fit_training_set(
    data: TrainingSet,
    method: str = "ridge",
    *,
    feature_names: Sequence[str] | None = None,
    seed: int = 0,
) -> SurvivalModel:
    """Fit a model on a :class:`~brainseg_tf.survival.TrainingSet` (see :func:`fit` for methods and features).

    Raises:
        ValueError: unknown method, unknown or incomplete features, nothing left to fit.
    """
    check_choice("method", method, METHODS)
    names = tuple(feature_names) if feature_names is not None else _default_features(method, data)
    unknown = [n for n in names if n not in data.columns]
    if unknown:
        raise ValueError(f"feature_names {unknown} are not in the training data (have {sorted(data.columns)})")
    x = np.stack([data.columns[n] for n in names], axis=1) if names else np.zeros((len(data), 0))
    bad = [n for j, n in enumerate(names) if not np.all(np.isfinite(x[:, j]))]
    if bad:
        raise ValueError(
            f"features {bad} have missing (NaN) values; brain fractions need the scans "
            "(images=) and centroids an affine"
        )
    dropped: list[str] = []
    if method in ("ridge", "forest"):  # a constant column carries nothing (and breaks standardising)
        dropped = [n for j, n in enumerate(names) if np.ptp(x[:, j]) == 0]
        kept = [j for j, n in enumerate(names) if n not in dropped]
        names, x = tuple(names[j] for j in kept), x[:, kept]
    if method != "majority" and not names:
        raise ValueError(f"no varying feature left to fit a {method} model (dropped {dropped})")
    params = _fit_arrays(method, x, data.days, int(seed))
    meta = {
        "patients": len(data),
        "seed": int(seed),
        "dropped_constant": dropped,
        "excluded": {k: len(v) for k, v in data.excluded.items()},
    }
    return SurvivalModel(method, names, params, meta)


def fit(
    clinical: str | Path | ClinicalTable,
    labels: str | Path | None = None,
    features: str | Path | Sequence[Mapping[str, Any]] | None = None,
    method: str = "ridge",
    *,
    feature_names: Sequence[str] | None = None,
    images: str | Path | None = None,
    convention: str | None = None,
    tcia_by_number: bool = False,
    seed: int = 0,
) -> SurvivalModel:
    """Fit an overall-survival model (target: survival in days).

    Methods: ``"majority"`` (predicts the median survival of the most frequent class: the
    reporting baseline), ``"age"`` (ordinary least squares on age, the BraTS 2018 baseline that
    placed 3rd of 26), ``"ridge"`` (standardised features, ridge penalty chosen by efficient
    leave-one-out over ``1e-2..1e4``), ``"forest"`` (random forest, 100 trees, 5 patients per leaf
    at least, half the features per split, ``seed``). Constant features are dropped.

    Args:
        clinical: a clinical table path (any format :func:`~brainseg_tf.survival.read_clinical`
            reads) or table.
        labels: a dataset folder or a folder of label maps whose cases pair with the table's ids
            (2017 ids included, see :func:`~brainseg_tf.survival.match_ids`).
        features: a feature table (:func:`~brainseg_tf.survival.write_features` CSV or rows)
            instead of ``labels``.
        method: see above.
        feature_names: features to use (default: ``age``, resection indicators and, with label
            maps, :data:`~brainseg_tf.survival.IMAGING_FEATURES`).
        images, convention, tcia_by_number: see :func:`~brainseg_tf.survival.feature_rows` /
            :func:`~brainseg_tf.survival.match_ids`.
        seed: random seed of the forest.

    Returns:
        A :class:`SurvivalModel`.

    Raises:
        DataError: bad tables or no usable patient. ValueError: bad method or feature names.
    """
    data = training_set(clinical, labels, features, images=images, convention=convention, tcia_by_number=tcia_by_number)
    model = fit_training_set(data, method, feature_names=feature_names, seed=seed)
    model.meta["clinical"] = str(clinical.path if isinstance(clinical, ClinicalTable) else clinical)
    return model


def predict(
    model: SurvivalModel | str | Path,
    label: np.ndarray,
    spacing: Sequence[float],
    age: float,
    resection: str | None = None,
    *,
    affine: np.ndarray | None = None,
    brain_mask: np.ndarray | None = None,
) -> float:
    """Predicted overall survival in days of one patient from a canonical label map.

    Args:
        model: a :class:`SurvivalModel` or a saved model path.
        label: ``(X, Y, Z)`` canonical labels (ground truth or a ``brainseg predict`` output).
        spacing: voxel size in mm.
        age: years.
        resection: ``"GTR"``, ``"STR"``, ``"NA"`` or ``None`` (unknown).
        affine, brain_mask: needed only by models that use centroid or brain-fraction features.

    Raises:
        ValueError: the model needs a feature these inputs cannot give.
    """
    model = load(model) if isinstance(model, (str, Path)) else model
    row = {**case_features(label, spacing, affine, brain_mask), **clinical_values(age, resection)}
    return model.predict_one(row)


def predict_table(
    model: SurvivalModel | str | Path,
    features: str | Path | Sequence[Mapping[str, Any]],
    *,
    clinical: str | Path | ClinicalTable | None = None,
    tcia_by_number: bool = False,
) -> list[tuple[str, float]]:
    """Predicted survival (days) for every row of a feature table.

    Age and resection come from ``clinical`` for the cases that pair with it (e.g. a BraTS
    validation ``survival_evaluation.csv``), else from the table's own ``age``/``resection``
    columns (``brainseg survival features --clinical``).

    Returns:
        ``[(case_id, days)]`` in table order.

    Raises:
        DataError: bad tables, or a case without a value the model needs (age, a feature).
    """
    model = load(model) if isinstance(model, (str, Path)) else model
    source = Path(features) if isinstance(features, (str, Path)) else None
    rows = read_features(features) if source is not None else list(features)
    pairs: dict[str, str] = {}
    records: dict[str, ClinicalRecord] = {}
    if clinical is not None:
        table = as_table(clinical)
        pairs = match_ids(table.ids, [str(r["case_id"]) for r in rows], tcia_by_number=tcia_by_number)
        records = table.by_id()
    out = []
    for row in rows:
        cid = str(row["case_id"])
        rec = records.get(pairs.get(cid, ""))
        age, resection = (rec.age, rec.resection) if rec else (row.get("age", math.nan), row.get("resection") or None)
        try:
            days = model.predict_one({**row, **clinical_values(age, resection)})
        except ValueError as exc:
            where = source if source is not None else "features"
            raise DataError(source, f"{where}: case {cid!r}: {exc}") from None
        out.append((cid, days))
    return out
