"""Random data augmentation as TensorFlow ops, for ``tf.data`` pipelines (graph mode).

Every op works on ONE unbatched example and is driven by a stateless seed, so the same seed
always gives the same output (``tf.random.stateless_*``; sub-seeds come from
``tf.random.experimental.stateless_split``). Layouts follow the project conventions
(``docs/conventions.md``): image ``(X, Y, Z, C)`` float32 (``(H, W, C)`` in 2D), label
``(X, Y, Z)`` integer canonical classes 0-3 (``(H, W)`` in 2D), or a float map with a trailing
channel axis ``(X, Y, Z, K)`` (one-hot or WT/TC/ET regions). Output shapes, static shapes and
dtypes equal the input ones.

Spatial ops move image and label together: the same coordinate map drives both, the image
sampled (bi/tri)linearly and the label nearest-neighbour, so they stay aligned. Rotation,
zoom and elastic deformation are combined into ONE resampling (:func:`random_spatial`) by the
cheapest exact route for what was drawn: zoom alone by ``crop_and_resize`` (interpolation
weights shared over channels), rotation (+ zoom) by three fused C++ 2-D affine passes on
reshaped views, and elastic (+ affine) by one gather-based trilinear sampling of the full
coordinate map, whose affine part is a broadcast sum of 1-D ramps and whose displacement is drawn
on a coarse grid and upsampled.

Each op draws its "apply?" decision first and runs under ``tf.cond``, so a skipped op costs one
random scalar. A probability of exactly 0 builds no op at all (exact identity); exactly 1 builds
no ``tf.cond``.

Defaults follow nnU-Net v2 (``nnUNetTrainer.get_training_transforms``; Isensee et al., Nature
Methods 2021) except where :class:`AugmentConfig` says otherwise.

Modules: :mod:`~brainseg_tf.data.augment.config` (:class:`AugmentConfig`),
:mod:`~brainseg_tf.data.augment.spatial` (flip, rot90, rotation/zoom/elastic),
:mod:`~brainseg_tf.data.augment.intensity` (brightness, contrast, gamma, noise, blur, low
resolution), :mod:`~brainseg_tf.data.augment.compose` (:func:`augment_fn`), on the building blocks of
:mod:`~brainseg_tf.data.augment.core` and the resampling engines of
:mod:`~brainseg_tf.data.augment.resample`. Every public op is importable from here.
"""

from __future__ import annotations

from brainseg_tf.data.augment.compose import augment_fn
from brainseg_tf.data.augment.config import AugmentConfig
from brainseg_tf.data.augment.core import Pair
from brainseg_tf.data.augment.intensity import (
    contrast,
    gamma,
    gaussian_blur,
    gaussian_noise,
    intensity_scale_shift,
    low_resolution,
)
from brainseg_tf.data.augment.spatial import elastic, random_affine, random_flip, random_rot90, random_spatial

__all__ = [
    "AugmentConfig",
    "augment_fn",
    "random_flip",
    "random_rot90",
    "random_affine",
    "elastic",
    "random_spatial",
    "intensity_scale_shift",
    "contrast",
    "gamma",
    "gaussian_noise",
    "gaussian_blur",
    "low_resolution",
    "Pair",
]
