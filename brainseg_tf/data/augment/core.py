"""Building blocks shared by the augmentation ops: stateless seeds and draws, probability gates,
shape restoring and per-channel reductions/maps on channels-last tensors ``(*spatial, C)``.

Every random value comes from a ``(2,)`` stateless seed (``tf.random.stateless_*``), so the same
seed always gives the same output, in eager mode, ``tf.function`` and ``Dataset.map`` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

__all__ = [
    "Pair",
    "split_seeds",
    "uniform",
    "bg_sample",
    "maybe",
    "spatial_rank",
    "keep_shape",
    "channel_shape",
    "channel_reduce",
    "channel_map",
]

#: A ``(low, high)`` range.
Pair = tuple[float, float]


def split_seeds(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
    """``num`` independent stateless seeds of shape (2,) from one."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    split = tf.random.experimental.stateless_split(seed, num=num)
    return [split[i] for i in range(num)]


def uniform(seed: tf.Tensor, shape: Sequence[int] | tf.Tensor = (), lo: float = 0.0, hi: float = 1.0) -> tf.Tensor:
    """Stateless uniform draws in ``[lo, hi)`` of ``shape`` (float32)."""
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi)


def bg_sample(seed: tf.Tensor, shape: Sequence[int], rng: Pair) -> tf.Tensor:
    """nnU-Net ``BGContrast``: half the draws from (low, 1), half from (max(low, 1), high)."""
    lo, hi = float(rng[0]), float(rng[1])
    s_pick, s_val = split_seeds(seed, 2)
    u = uniform(s_val, shape)
    below = min(lo, 1.0) + u * (min(hi, 1.0) - min(lo, 1.0))
    above = max(lo, 1.0) + u * (hi - max(lo, 1.0))
    if lo >= 1.0 or hi <= 1.0:
        return above if lo >= 1.0 else below
    return tf.where(uniform(s_pick, shape) < 0.5, below, above)


def maybe(prob: float, seed: tf.Tensor, fn: Callable[[], Any], identity: Callable[[], Any]):
    """Run ``fn`` with probability ``prob`` (graph-friendly; the skipped branch never runs)."""
    if prob <= 0.0:
        return identity()
    if prob >= 1.0:
        return fn()
    return tf.cond(uniform(seed) < prob, fn, identity)


def spatial_rank(image: tf.Tensor) -> int:
    """2 for an ``(H, W, C)`` image, 3 for ``(X, Y, Z, C)``; ``ValueError`` for any other rank."""
    rank = image.shape.rank
    if rank not in (3, 4):
        raise ValueError(f"image must be (H, W, C) or (X, Y, Z, C), got shape {image.shape}")
    return rank - 1


def keep_shape(out: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """``out`` reshaped to ``like``'s dynamic shape with ``like``'s static shape restored."""
    out = tf.reshape(out, tf.shape(like))
    out.set_shape(like.shape)
    return out


def channel_reduce(x: tf.Tensor, reducer: Callable[..., tf.Tensor]) -> tf.Tensor:
    """Per-channel reduction over all spatial axes, shaped ``[1, ..., 1, C]``.

    Reducing ``(N, C)`` over N directly is a slow strided reduction on CPU, so N is folded into
    ``(N / k, k * C)`` first and reduced twice (figures in docs/benchmarks.md).
    """
    c = x.shape[-1]
    n = x.shape[:-1].num_elements()
    k = 1 if n is None else _fold_factor(n)
    if k > 1:
        partial = reducer(tf.reshape(x, [-1, k * c]), axis=0)
        out = reducer(tf.reshape(partial, [k, c]), axis=0)
    else:
        out = reducer(tf.reshape(x, [-1, c]), axis=0)
    return tf.reshape(out, [1] * (x.shape.rank - 1) + [c])


def channel_map(x: tf.Tensor, fn: Callable[..., tf.Tensor], *params: tf.Tensor) -> tf.Tensor:
    """``fn(x, *params)`` for an elementwise ``fn`` and per-channel ``params`` shaped
    ``[1, ..., 1, C]``, computed on ``x`` folded to ``(N / k, k * C)`` with each parameter tiled
    ``k`` times: the same values, but Eigen broadcasts a long row faster than a length-C one
    (figures in docs/benchmarks.md)."""
    c = x.shape[-1]
    n = x.shape[:-1].num_elements()
    if c is None or n is None:
        return fn(x, *params)
    k = _fold_factor(n)
    if k == 1:
        return fn(x, *params)
    wide = [tf.tile(tf.reshape(p, [1, c]), [1, k]) for p in params]
    out = tf.reshape(fn(tf.reshape(x, [-1, k * c]), *wide), tf.shape(x))
    out.set_shape(x.shape)
    return out


def channel_shape(image: tf.Tensor) -> list[int]:
    """``[1, ..., 1, C]`` for per-channel parameters (C must be static)."""
    c = image.shape[-1]
    if c is None:
        raise ValueError("the channel axis of image must have a static size")
    return [1] * (image.shape.rank - 1) + [c]


def _fold_factor(n: int) -> int:
    """The largest of 256, 128, ..., 1 that divides ``n`` (the row width multiplier of a fold)."""
    return next(d for d in (256, 128, 64, 32, 16, 8, 4, 2, 1) if n % d == 0)
