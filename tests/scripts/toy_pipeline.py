"""A tiny deterministic in-memory pipeline for the training tests (``pipeline.kind="custom"``).

Images are Gaussian noise; labels are thresholds of the first channels, so a small network can
learn them in a few steps: ED where channel 0 > 0.5, NCR where channel 1 > 1.0, ET where channel
2 > 1.5 (canonical labels 0 BG, 1 NCR, 2 ED, 3 ET).
"""

from __future__ import annotations

import numpy as np


def _arrays(n: int, shape: tuple[int, ...], channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape, channels)).astype("float32")
    y = np.zeros((n, *shape), dtype="uint8")
    y[x[..., 0] > 0.5] = 2
    y[x[..., min(1, channels - 1)] > 1.0] = 1
    y[x[..., min(2, channels - 1)] > 1.5] = 3
    return x, y


def build(config, split, *, seed: int, global_batch: int):
    """``(train, validation)``: 8 training samples repeated forever, 4 fixed validation samples."""
    import tensorflow as tf

    shape = tuple(config.pipeline.patch_size)
    channels = len(config.data.modalities)
    x, y = _arrays(8, shape, channels, seed=0)
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(8, seed=seed).repeat().batch(global_batch)
    xv, yv = _arrays(4, shape, channels, seed=1)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(global_batch)
    return train, val
