"""Inference: sliding-window prediction, mirror TTA, postprocessing and NIfTI output.

The package's parts:

* :mod:`~brainseg_tf.inference.window` -- the TensorFlow-free sliding-window engine (window
  placement and planning, Gaussian blending, mirror flips / TTA, argument checks);
* :mod:`~brainseg_tf.inference.predictor` -- :class:`Predictor`: a batch function and its model card;
* :mod:`~brainseg_tf.inference.loading` -- :func:`load_predictor` for Keras files, run and export
  folders, SavedModels and ONNX models;
* :mod:`~brainseg_tf.inference.ensemble` -- :class:`Ensemble` of predictors;
* :mod:`~brainseg_tf.inference.labels` -- probabilities to postprocessed labels of the card's
  label scheme (canonical 0-3 for the glioma schemes);
* :mod:`~brainseg_tf.inference.case` -- :func:`predict_case`, one case on its native grid, written
  in the source's values; :func:`check_scheme` refuses a model on data of another label scheme;
* :mod:`~brainseg_tf.inference.folder` -- :func:`predict_folder` into a prediction folder
  (whose files and ``predictions.json`` :mod:`brainseg_tf.io.predictions` owns).

Every name is importable from ``brainseg_tf.inference``. TensorFlow and Keras are imported only
when a Keras model or SavedModel is loaded or wrapped.
"""

from __future__ import annotations

from brainseg_tf.card import CARD_FILE
from brainseg_tf.conventions import HEADS
from brainseg_tf.inference.case import Prediction, check_scheme, predict_case
from brainseg_tf.inference.ensemble import Ensemble
from brainseg_tf.inference.folder import predict_folder
from brainseg_tf.inference.labels import postprocess, probabilities_to_labels, region_label
from brainseg_tf.inference.loading import (
    BACKENDS,
    ONNX_FILE,
    RUN_CHECKPOINTS,
    load_keras_model,
    load_predictor,
    onnx_session,
)
from brainseg_tf.inference.predictor import Predictor
from brainseg_tf.inference.window import (
    DEFAULT_MAX_WINDOW_VOXELS,
    DEFAULT_ROI,
    DEFAULT_WINDOW,
    BatchPredictor,
    check_mirror_axes,
    check_window_arguments,
    importance_map,
    mirror_flips,
    mirror_tta,
    plan_window,
    sliding_window,
    window_starts,
)
from brainseg_tf.io.predictions import write_prediction_summary
from brainseg_tf.runtime import OptionalDependencyError, import_optional

METADATA_FILE = CARD_FILE

__all__ = [
    "HEADS",
    "Predictor",
    "Ensemble",
    "Prediction",
    "BatchPredictor",
    "sliding_window",
    "window_starts",
    "plan_window",
    "importance_map",
    "DEFAULT_MAX_WINDOW_VOXELS",
    "DEFAULT_ROI",
    "DEFAULT_WINDOW",
    "mirror_tta",
    "mirror_flips",
    "check_mirror_axes",
    "probabilities_to_labels",
    "region_label",
    "check_scheme",
    "postprocess",
    "load_predictor",
    "load_keras_model",
    "onnx_session",
    "BACKENDS",
    "ONNX_FILE",
    "RUN_CHECKPOINTS",
    "METADATA_FILE",
    "OptionalDependencyError",
    "import_optional",
    "predict_case",
    "predict_folder",
    "check_window_arguments",
    "write_prediction_summary",
]
