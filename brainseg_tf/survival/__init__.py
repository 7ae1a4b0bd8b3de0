"""Overall-survival (OS) prediction, the BraTS 2017-2020 second task (NumPy/SciPy/scikit-learn, no TensorFlow).

For each pre-operative patient, predict survival in days from tumour features of a label map
(ground truth or the output of ``brainseg predict``), age and resection status. BraTS ranks on
3-class accuracy with the classes below; MSE, median squared error and Spearman's rho are reported
beside it, and only gross-total-resection (GTR) patients are scored where the status is known.

Classes (stated once, :data:`CLASS_THRESHOLDS_DAYS`; BraTS counts a month as 30 days):

* ``short``: survival < 300 days (< 10 months);
* ``mid``: 300 <= survival <= 450 days (10-15 months);
* ``long``: survival > 450 days (> 15 months).

Example::

    model = fit("survival_info.csv", labels="data/BraTS2020", method="forest")
    model.save("os_model.json")
    days = load("os_model.json").predict_one({"age": 61.0, **case_features(label, spacing)})
    days = predict(model, label, spacing, age=61.0, resection="GTR")

Fitted models are plain JSON (coefficients, standardisation, tree structure), evaluated here
with NumPy: loading one executes no code, and predictions after a reload are bit-identical.
scikit-learn is used only to fit.

Modules: :mod:`~brainseg_tf.survival.classes` (the survival classes),
:mod:`~brainseg_tf.survival.clinical` (clinical tables, id pairing),
:mod:`~brainseg_tf.survival.features` (tumour features, feature tables),
:mod:`~brainseg_tf.survival.cohort` (training sets), :mod:`~brainseg_tf.survival.models`
(fit, JSON models, predict), :mod:`~brainseg_tf.survival.stats` (scores, intervals,
cross-validation, Kaplan-Meier), :mod:`~brainseg_tf.survival.submission` (prediction CSVs and
their scoring), :mod:`~brainseg_tf.survival.tables` (strict CSV reading).
"""

from __future__ import annotations

from brainseg_tf.survival.classes import CLASS_THRESHOLDS_DAYS, SURVIVAL_CLASSES, survival_class
from brainseg_tf.survival.clinical import (
    CLINICAL_FEATURES,
    RESECTIONS,
    ClinicalRecord,
    ClinicalTable,
    match_ids,
    read_clinical,
)
from brainseg_tf.survival.cohort import TrainingSet, training_set
from brainseg_tf.survival.features import (
    BRAIN_FEATURES,
    CENTROID_FEATURES,
    FEATURE_NAMES,
    IMAGING_FEATURES,
    RATIO_FEATURES,
    SHAPE_FEATURES,
    VOLUME_FEATURES,
    case_features,
    feature_rows,
    read_features,
    write_features,
)
from brainseg_tf.survival.models import (
    METHODS,
    MIN_PREDICTED_DAYS,
    MODEL_FORMAT,
    MODEL_VERSION,
    SurvivalModel,
    fit,
    fit_training_set,
    load,
    predict,
    predict_table,
)
from brainseg_tf.survival.stats import (
    bootstrap_ci,
    cross_validate,
    format_scores,
    kaplan_meier,
    scores,
    wilson_interval,
)
from brainseg_tf.survival.submission import evaluate_predictions, read_predictions, write_predictions

__all__ = [
    "CLASS_THRESHOLDS_DAYS",
    "SURVIVAL_CLASSES",
    "FEATURE_NAMES",
    "IMAGING_FEATURES",
    "CLINICAL_FEATURES",
    "METHODS",
    "ClinicalRecord",
    "ClinicalTable",
    "TrainingSet",
    "SurvivalModel",
    "case_features",
    "survival_class",
    "read_clinical",
    "match_ids",
    "feature_rows",
    "write_features",
    "read_features",
    "training_set",
    "fit",
    "fit_training_set",
    "predict",
    "predict_table",
    "load",
    "cross_validate",
    "scores",
    "evaluate_predictions",
    "format_scores",
    "read_predictions",
    "write_predictions",
    "kaplan_meier",
    "wilson_interval",
    "bootstrap_ci",
    "RESECTIONS",
    "MIN_PREDICTED_DAYS",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "VOLUME_FEATURES",
    "RATIO_FEATURES",
    "BRAIN_FEATURES",
    "SHAPE_FEATURES",
    "CENTROID_FEATURES",
]
