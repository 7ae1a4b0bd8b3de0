"""The composed augmentation: :func:`augment_fn` applies an :class:`AugmentConfig` to one example."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from brainseg_tf.data.augment.config import AugmentConfig
from brainseg_tf.data.augment.core import split_seeds
from brainseg_tf.data.augment.intensity import (
    contrast,
    gamma,
    gaussian_blur,
    gaussian_noise,
    intensity_scale_shift,
    low_resolution,
)
from brainseg_tf.data.augment.spatial import random_flip, random_rot90, random_spatial

__all__ = ["augment_fn"]


def augment_fn(
    config: AugmentConfig, spatial_dims: int = 3
) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Build ``fn(image, label, seed) -> (image, label)`` applying ``config`` to one example.

    Order (as nnU-Net): rotation/zoom/elastic (one resampling), 90-degree rotation, flips,
    Gaussian noise, Gaussian blur, brightness scale/shift, contrast, low resolution, inverted
    gamma, gamma.

    Args:
        config: probabilities and ranges (validated here).
        spatial_dims: 3 for ``(X, Y, Z, C)`` images, 2 for ``(H, W, C)``.

    Returns:
        A function of ``image`` (float32, ``(X, Y, Z, C)`` or ``(H, W, C)``), ``label`` (the
        spatial shape, integer classes, or with a trailing channel axis) and ``seed`` (int32 or
        int64, shape ``(2,)``); usable eagerly, in ``tf.function`` and in ``Dataset.map``.
        Same seed, same output; shapes and dtypes preserved.

    Raises:
        ValueError: for an invalid config or ``spatial_dims`` not in (2, 3); the returned
            function raises ``ValueError`` when the image rank does not match ``spatial_dims``.
    """
    config.validate()
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    cfg = config

    def fn(image: tf.Tensor, label: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.convert_to_tensor(image)
        label = tf.convert_to_tensor(label)
        if image.shape.rank != spatial_dims + 1:
            raise ValueError(
                f"spatial_dims={spatial_dims} needs an image of rank {spatial_dims + 1}, got shape {image.shape}"
            )
        s = split_seeds(seed, 12)
        image, label = random_spatial(
            image,
            label,
            s[0],
            rotation_prob=cfg.rotation_prob,
            rotation_max_deg=cfg.rotation_max_deg,
            scaling_prob=cfg.scaling_prob,
            scaling_range=cfg.scaling_range,
            elastic_prob=cfg.elastic_prob,
            elastic_magnitude=cfg.elastic_magnitude,
            elastic_grid_spacing=cfg.elastic_grid_spacing,
        )
        image, label = random_rot90(image, label, s[1], cfg.rot90_prob)
        image, label = random_flip(image, label, s[2], cfg.flip_prob, cfg.flip_axes)
        image = gaussian_noise(image, s[3], cfg.noise_prob, cfg.noise_std_range)
        image = gaussian_blur(image, s[4], cfg.blur_prob, cfg.blur_sigma_range, cfg.blur_channel_prob)
        image = intensity_scale_shift(
            image,
            s[5],
            cfg.intensity_scale_prob,
            cfg.intensity_scale_range,
            cfg.intensity_shift_prob,
            cfg.intensity_shift_std,
        )
        image = contrast(image, s[6], cfg.contrast_prob, cfg.contrast_range)
        image = low_resolution(image, s[7], cfg.low_res_prob, cfg.low_res_zoom_range, cfg.low_res_channel_prob)
        image = gamma(
            image, s[8], cfg.gamma_inverted_prob, cfg.gamma_range, invert=True, retain_stats=cfg.gamma_retain_stats
        )
        image = gamma(image, s[9], cfg.gamma_prob, cfg.gamma_range, invert=False, retain_stats=cfg.gamma_retain_stats)
        return image, label

    return fn
