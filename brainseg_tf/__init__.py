"""brainseg_tf: Keras 3 / TensorFlow toolkit for brain tumour segmentation in multimodal MRI (BraTS).

Submodules are imported lazily so that ``brainseg_tf.io`` and ``brainseg_tf.evaluation`` work
without importing TensorFlow.

Conventions (see ``docs/conventions.md``): canonical labels 0 BG, 1 NCR, 2 ED, 3 ET; regions
WT = {1,2,3}, TC = {1,3}, ET = {3}; channel order ``flair, t1, t1ce, t2``; arrays channels-last in
NIfTI voxel order, image ``(X, Y, Z, C)`` float32, label ``(X, Y, Z)`` uint8.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "io", "data", "models", "losses", "metrics", "evaluation", "training", "inference",
    "export", "viz", "survival", "synthetic", "cli",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_SUBMODULES) + ["__version__"]
