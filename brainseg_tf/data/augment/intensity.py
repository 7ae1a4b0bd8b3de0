"""Intensity augmentations (image only; labels are never touched): brightness, contrast, gamma,
Gaussian noise, Gaussian blur and simulated low resolution, as nnU-Net v2 applies them.

Each op works on one unbatched channels-last image ``(X, Y, Z, C)`` or ``(H, W, C)`` (C static),
draws per-channel parameters from a stateless ``(2,)`` seed and keeps shape and dtype.
"""

from __future__ import annotations

import math

import tensorflow as tf

from brainseg_tf.data.augment.core import (
    Pair,
    bg_sample,
    channel_map,
    channel_reduce,
    channel_shape,
    keep_shape,
    maybe,
    spatial_rank,
    split_seeds,
    uniform,
)
from brainseg_tf.data.augment.resample import resize_nd

__all__ = ["intensity_scale_shift", "contrast", "gamma", "gaussian_noise", "gaussian_blur", "low_resolution"]


def intensity_scale_shift(
    image: tf.Tensor,
    seed: tf.Tensor,
    scale_prob: float = 0.15,
    scale_range: Pair = (0.75, 1.25),
    shift_prob: float = 0.3,
    shift_std: float = 0.2,
) -> tf.Tensor:
    """Per-channel ``image * a + b``: multiplicative brightness ``a`` (BG-sampled from
    ``scale_range``) with probability ``scale_prob``, additive ``b ~ N(0, shift_std)`` with
    probability ``shift_prob``, each drawn per channel.

    Returns:
        Image of the same shape and dtype.
    """
    cshape = channel_shape(image)
    s_d1, s_d2, s_a, s_b = split_seeds(seed, 4)
    image = maybe(
        scale_prob,
        s_d1,
        lambda: channel_map(image, tf.multiply, tf.cast(bg_sample(s_a, cshape, scale_range), image.dtype)),
        lambda: image,
    )
    image = maybe(
        shift_prob,
        s_d2,
        lambda: channel_map(
            image, tf.add, tf.cast(tf.random.stateless_normal(cshape, seed=s_b) * shift_std, image.dtype)
        ),
        lambda: image,
    )
    return image


def _moments(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-channel mean and standard deviation, each shaped ``[1, ..., 1, C]``."""
    mean = channel_reduce(x, tf.reduce_mean)
    var = channel_reduce(tf.square(x - mean), tf.reduce_mean)
    return mean, tf.sqrt(var)


def contrast(image: tf.Tensor, seed: tf.Tensor, prob: float = 0.15, factor_range: Pair = (0.75, 1.25)) -> tf.Tensor:
    """Per-channel contrast ``(x - mean) * f + mean``, clipped to the channel's original
    [min, max] (nnU-Net ``ContrastTransform`` with ``preserve_range``)."""
    cshape = channel_shape(image)
    s_do, s_f = split_seeds(seed, 2)

    def run():
        x = tf.cast(image, tf.float32)
        # The mean is estimated on every 2nd voxel per axis; min/max are exact.
        mean = channel_reduce(x[(slice(None, None, 2),) * (x.shape.rank - 1)], tf.reduce_mean)
        lo = channel_reduce(x, tf.reduce_min)
        hi = channel_reduce(x, tf.reduce_max)
        f = bg_sample(s_f, cshape, factor_range)
        # clip_by_value's own order (minimum, then maximum), without its checks, which cost time
        out = channel_map(
            x, lambda v, f_, m_, lo_, hi_: tf.maximum(tf.minimum(v * f_ + m_, hi_), lo_), f, mean * (1.0 - f), lo, hi
        )
        return tf.cast(out, image.dtype)

    return maybe(prob, s_do, run, lambda: image)


def _gamma_core(image: tf.Tensor, seed: tf.Tensor, gamma_range: Pair, invert: bool, retain_stats: bool) -> tf.Tensor:
    """nnU-Net's gamma, algebraically folded to about half the passes over the data.

    With ``d = x - min`` (``max - x`` when inverted) and ``y = (d / range) ** g``, nnU-Net's
    rescale-back and mean/std restoration reduce to ``out = sign * |A| * y + B`` per channel,
    computed as ``exp(g * log d + c)``; ``log 0 = -inf`` gives 0 as wanted. The mean/std used
    for ``retain_stats`` are estimated on every 2nd voxel per axis (1/8 or 1/4 of the data).
    """
    cshape = channel_shape(image)
    ndim = image.shape.rank - 1
    x = tf.cast(image, tf.float32)
    mn = channel_reduce(x, tf.reduce_min)
    mx = channel_reduce(x, tf.reduce_max)
    rng = tf.maximum(mx - mn, 1e-7)
    g = bg_sample(seed, cshape, gamma_range)
    sign = -1.0 if invert else 1.0

    def dist(v: tf.Tensor) -> tf.Tensor:
        return mx - v if invert else v - mn

    if retain_stats:
        sub = x[(slice(None, None, 2),) * ndim]
        mean_x, std_x = _moments(sub)
        y_sub = tf.exp(g * tf.math.log(dist(sub) / rng))
        mean_y, std_y = _moments(y_sub)
        scale = std_x / (std_y + 1e-8)  # |A|
        offset = mean_x - sign * mean_y * scale  # B
    else:
        scale = rng
        offset = mx if invert else mn
    log_c = g * tf.math.log(1.0 / rng) + tf.math.log(scale)
    y = tf.exp(g * tf.math.log(dist(x)) + log_c)
    out = offset - y if invert else y + offset
    return tf.cast(out, image.dtype)


def gamma(
    image: tf.Tensor,
    seed: tf.Tensor,
    prob: float = 0.3,
    gamma_range: Pair = (0.7, 1.5),
    invert: bool = False,
    retain_stats: bool = True,
) -> tf.Tensor:
    """Per-channel gamma ``x -> x**g`` after rescaling each channel to [0, 1] (and back).

    Args:
        image: float image, any sign (z-scored is fine).
        seed: ``(2,)`` stateless seed.
        prob: probability of applying.
        gamma_range: per-channel gamma, BG-sampled (half below 1, half above).
        invert: apply to ``-image`` and negate back (nnU-Net's inverted gamma).
        retain_stats: restore each channel's mean and standard deviation afterwards.

    Returns:
        Image of the same shape and dtype.
    """
    s_do, s_g = split_seeds(seed, 2)
    return maybe(prob, s_do, lambda: _gamma_core(image, s_g, gamma_range, invert, retain_stats), lambda: image)


def gaussian_noise(image: tf.Tensor, seed: tf.Tensor, prob: float = 0.1, std_range: Pair = (0.0, 0.1)) -> tf.Tensor:
    """Additive zero-mean Gaussian noise; one standard deviation per example from
    ``std_range`` shared by all channels (nnU-Net ``GaussianNoiseTransform``)."""
    s_do, s_std, s_n = split_seeds(seed, 3)

    def run():
        std = uniform(s_std, [], *std_range)
        noise = tf.random.stateless_normal(tf.shape(image), seed=s_n) * std
        return image + tf.cast(noise, image.dtype)

    return maybe(prob, s_do, run, lambda: image)


def _gaussian_kernels(sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Normalised 1-D Gaussian kernels ``(2*radius+1, C)`` for per-channel ``sigma (C,)``."""
    x = tf.range(-radius, radius + 1, dtype=tf.float32)[:, None]
    k = tf.exp(-0.5 * tf.square(x / tf.maximum(sigma[None, :], 1e-3)))
    return k / tf.reduce_sum(k, axis=0, keepdims=True)


def _blur(image: tf.Tensor, sigmas: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable per-channel Gaussian blur with ``sigmas (ndim, C)``, zero padding.

    Each 1-D pass is a ``depthwise_conv2d`` on a reshaped view (no transposes).
    """
    ndim = image.shape.rank - 1
    c = image.shape[-1]
    shape = tf.shape(image)
    x = tf.cast(image, tf.float32)
    for axis in range(ndim):
        k = _gaussian_kernels(sigmas[axis], radius)
        if ndim == 3:
            if axis == 0:
                view = tf.reshape(x, [1, shape[0], shape[1] * shape[2], c])
                filt = k[:, None, :, None]
            else:  # batch = X, image = (Y, Z)
                view = x
                filt = k[:, None, :, None] if axis == 1 else k[None, :, :, None]
        else:
            view = x[None]
            filt = k[:, None, :, None] if axis == 0 else k[None, :, :, None]
        x = tf.reshape(tf.nn.depthwise_conv2d(view, filt, [1, 1, 1, 1], "SAME"), shape)
    return keep_shape(tf.cast(x, image.dtype), image)


def gaussian_blur(
    image: tf.Tensor, seed: tf.Tensor, prob: float = 0.2, sigma_range: Pair = (0.5, 1.0), channel_prob: float = 0.5
) -> tf.Tensor:
    """Gaussian blur; sigma (voxels) drawn per channel and per axis from ``sigma_range``, each
    channel blurred with probability ``channel_prob`` (nnU-Net ``GaussianBlurTransform``).

    The kernel is truncated at ``ceil(3 * max sigma)`` voxels; borders are zero-padded.
    """
    ndim = spatial_rank(image)
    cshape = channel_shape(image)
    c = cshape[-1]
    radius = max(1, math.ceil(3.0 * sigma_range[1]))
    s_do, s_ch, s_sig = split_seeds(seed, 3)

    def run():
        sigmas = uniform(s_sig, [ndim, c], *sigma_range)
        chosen = uniform(s_ch, [1, c]) < channel_prob
        # An unchosen channel gets sigma ~0, i.e. a delta kernel: one conv serves all channels.
        sigmas = tf.where(chosen, sigmas, 0.0)
        return _blur(image, sigmas, radius)

    return maybe(prob, s_do, run, lambda: image)


def low_resolution(
    image: tf.Tensor, seed: tf.Tensor, prob: float = 0.25, zoom_range: Pair = (0.5, 1.0), channel_prob: float = 0.5
) -> tf.Tensor:
    """Simulated low resolution: downsample by ``zoom`` (nearest), upsample back (linear).

    One zoom for all axes and all chosen channels (nnU-Net draws it per channel); each channel
    is chosen with probability ``channel_prob``.
    """
    ndim = spatial_rank(image)
    cshape = channel_shape(image)
    s_do, s_ch, s_z = split_seeds(seed, 3)

    def run():
        zoom = uniform(s_z, [], *zoom_range)
        shape = tf.shape(image)
        sizes = [shape[i] for i in range(ndim)]
        small = [tf.maximum(1, tf.cast(tf.round(tf.cast(n, tf.float32) * zoom), tf.int32)) for n in sizes]
        x = tf.cast(image, tf.float32)
        low = resize_nd(resize_nd(x, small, "nearest"), sizes, "bilinear")
        chosen = uniform(s_ch, cshape) < channel_prob
        return keep_shape(tf.cast(tf.where(chosen, low, x), image.dtype), image)

    return maybe(prob, s_do, run, lambda: image)
