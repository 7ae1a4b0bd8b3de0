"""Data: preprocessing, the HDF5 cache and tf.data input pipelines.

``preprocess`` and ``cache`` import no TensorFlow; the pipeline builders are imported lazily so
``from brainseg_tf.data import preprocess_case`` stays light.
"""

from __future__ import annotations

from brainseg_tf.data.preprocess import (
    Geometry,
    PreprocessedCase,
    brain_bbox,
    paste_back,
    preprocess_case,
)

_PIPELINE_NAMES = ("patch_dataset", "slice_dataset", "volume_dataset", "PatchSampler")
_CACHE_NAMES = ("build_cache", "open_cache", "Cache", "CacheError", "IncompleteCacheError", "StaleCacheError")


def __getattr__(name: str):
    if name in _PIPELINE_NAMES:
        from brainseg_tf.data import pipeline

        return getattr(pipeline, name)
    if name in _CACHE_NAMES:
        from brainseg_tf.data import cache

        return getattr(cache, name)
    raise AttributeError(f"module 'brainseg_tf.data' has no attribute {name!r}")


__all__ = [
    "Geometry",
    "PreprocessedCase",
    "brain_bbox",
    "paste_back",
    "preprocess_case",
    *_PIPELINE_NAMES,
    *_CACHE_NAMES,
]
