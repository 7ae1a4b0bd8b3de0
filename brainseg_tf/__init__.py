"""brainseg_tf: Keras 3 / TensorFlow toolkit for brain tumour segmentation in multimodal MRI (BraTS).

Submodules are imported lazily so that ``brainseg_tf.io`` and ``brainseg_tf.evaluation`` work
without importing TensorFlow. The custom Keras objects (layers, losses, metrics, schedules) are
registered as soon as Keras is imported, before or after this package, so that
``import brainseg_tf`` then ``keras.saving.load_model("run/best.keras")`` works in a fresh process.

Conventions (see ``docs/conventions.md`` and :mod:`brainseg_tf.conventions`): canonical labels 0 BG,
1 NCR, 2 ED, 3 ET; regions WT = {1,2,3}, TC = {1,3}, ET = {3}; channel order ``flair, t1, t1ce, t2``;
arrays channels-last in NIfTI voxel order, image ``(X, Y, Z, C)`` float32, label ``(X, Y, Z)`` uint8.
"""

from __future__ import annotations

import importlib

from brainseg_tf import keras_registration

__version__ = "0.2.0"

_SUBMODULES = {
    "atomic",
    "card",
    "cli",
    "conventions",
    "data",
    "demo",
    "evaluation",
    "export",
    "inference",
    "io",
    "losses",
    "metrics",
    "models",
    "plan",
    "postprocessing",
    "report",
    "runtime",
    "survival",
    "synthetic",
    "training",
    "uncertainty",
    "viz",
}

keras_registration.install()


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_SUBMODULES) + ["__version__"]
