"""Spatial augmentations: flips, 90-degree rotations, and rotation, zoom and elastic deformation
combined into ONE resampling (:func:`random_spatial`).

Image and label move together: the same coordinate map drives both, the image sampled
(bi/tri)linearly and the label nearest-neighbour, so they stay aligned. :func:`random_spatial`
takes the cheapest exact route for what was drawn: zoom alone by ``crop_and_resize``, rotation
(+ zoom) by three fused 2-D affine passes, elastic (+ affine) by one gather-based sampling of the
full coordinate map, whose affine part is a broadcast sum of 1-D ramps and whose displacement is
drawn on a coarse grid and upsampled (engines in :mod:`brainseg_tf.data.augment.resample`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import tensorflow as tf

from brainseg_tf.data.augment.core import Pair, keep_shape, maybe, spatial_rank, split_seeds, uniform
from brainseg_tf.data.augment.resample import (
    affine_blocks,
    affine_by_planes,
    resize_nd,
    sample_at,
    zoom_by_resize,
)

__all__ = ["random_flip", "random_rot90", "random_spatial", "random_affine", "elastic"]


def random_flip(
    image: tf.Tensor, label: tf.Tensor | None, seed: tf.Tensor, prob: float = 0.5, axes: Sequence[int] = (0, 1, 2)
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Mirror along each axis in ``axes`` independently with probability ``prob``.

    All chosen axes are reversed in one ``tf.reverse`` (one pass over the data).

    Args:
        image: ``(X, Y, Z, C)`` or ``(H, W, C)``.
        label: ``(X, Y, Z)``/``(H, W)`` integer or with a trailing channel axis; or None.
        seed: int32/int64 ``(2,)`` stateless seed.
        prob: per-axis probability.
        axes: spatial axes that may flip; those >= the image's spatial rank are ignored.

    Returns:
        ``(image, label)`` with unchanged shapes and dtypes.
    """
    ndim = spatial_rank(image)
    axes = [a for a in axes if a < ndim]
    if prob <= 0.0 or not axes:
        return image, label
    draws = uniform(seed, [len(axes)]) < prob
    chosen = tf.boolean_mask(tf.constant(axes, tf.int32), draws)

    def flip():
        out_img = tf.reverse(image, chosen)
        out_lab = None if label is None else tf.reverse(label, chosen)
        return out_img, out_lab

    if label is None:
        return tf.cond(tf.reduce_any(draws), lambda: flip()[0], lambda: image), None
    return tf.cond(tf.reduce_any(draws), flip, lambda: (image, label))


def _rot90_plane(x: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """Rotate by k*90 deg in the plane of axes (0, 1), k in {1, 2, 3} (``np.rot90`` sense)."""
    perm = [1, 0] + list(range(2, x.shape.rank))
    return tf.switch_case(
        k - 1,
        [
            lambda: tf.transpose(tf.reverse(x, [1]), perm),
            lambda: tf.reverse(x, [0, 1]),
            lambda: tf.reverse(tf.transpose(x, perm), [1]),
        ],
    )


def random_rot90(
    image: tf.Tensor, label: tf.Tensor | None, seed: tf.Tensor, prob: float = 0.5
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Rotate by k*90 deg (k uniform in {1, 2, 3}) in the axial plane, axes (0, 1) = X-Y.

    When the two in-plane sizes differ (statically, or at run time for unknown shapes) only
    k = 2 (180 deg) is used, so the output shape always equals the input shape.

    Args:
        image: ``(X, Y, Z, C)`` or ``(H, W, C)``.
        label: matching label or None.
        seed: ``(2,)`` stateless seed.
        prob: probability of rotating at all.

    Returns:
        ``(image, label)`` with unchanged shapes and dtypes.
    """
    spatial_rank(image)
    if prob <= 0.0:
        return image, label
    s_do, s_k = split_seeds(seed, 2)
    k = tf.random.stateless_uniform([], seed=s_k, minval=1, maxval=4, dtype=tf.int32)
    nx, ny = image.shape[0], image.shape[1]
    if nx is not None and ny is not None:
        if nx != ny:
            k = tf.constant(2, tf.int32)
    else:
        shape = tf.shape(image)
        k = tf.where(tf.equal(shape[0], shape[1]), k, 2)

    def rot():
        img = keep_shape(_rot90_plane(image, k), image)
        lab = None if label is None else keep_shape(_rot90_plane(label, k), label)
        return img, lab

    if label is None:
        return maybe(prob, s_do, lambda: rot()[0], lambda: image), None
    return maybe(prob, s_do, rot, lambda: (image, label))


def _cond_pair(pred: tf.Tensor | bool, f_true: Callable, f_false: Callable, has_label: bool):
    """``tf.cond`` over ``(image, label)`` pairs whose label may be None; Python bools fold."""
    if pred is True:
        return f_true()
    if pred is False:
        return f_false()
    if not has_label:
        return tf.cond(pred, lambda: f_true()[0], lambda: f_false()[0]), None
    return tf.cond(pred, f_true, f_false)


def _spatial_transform(
    image,
    label,
    seed,
    *,
    rotate: tf.Tensor | bool,
    scale: tf.Tensor | bool,
    deform: tf.Tensor | bool,
    rotation_max_deg: float,
    scaling_range: Pair,
    elastic_magnitude: Pair,
    elastic_grid_spacing: int,
    image_interpolation: str,
):
    """One resampling combining rotation, isotropic zoom and elastic displacement.

    ``rotate``/``scale``/``deform`` are booleans (Python or scalar tensors) saying which parts
    are active; inactive parts contribute the identity.
    """
    ndim = spatial_rank(image)
    s_rot, s_scale, s_mag, s_field = split_seeds(seed, 4)
    n_angles = 1 if ndim == 2 else 3
    max_rad = math.radians(rotation_max_deg)
    angles = uniform(s_rot, [n_angles], -max_rad, max_rad) * tf.cast(rotate, tf.float32)
    zoom = uniform(s_scale, [], *scaling_range)
    zoom = tf.where(tf.cast(scale, tf.bool), zoom, 1.0)
    # Output voxel p maps to input coordinate q = centre + R (p - centre) / zoom (+ elastic).
    blocks, matrix = affine_blocks(angles, zoom, ndim)
    has_label = label is not None

    def rigid():
        # Zoom alone (no rotation drawn) is much cheaper by crop-and-resize.
        return _cond_pair(
            rotate,
            lambda: affine_by_planes(image, label, blocks, image_interpolation),
            lambda: zoom_by_resize(image, label, zoom, image_interpolation),
            has_label,
        )

    if deform is False:
        return rigid()

    def warp():
        # Affine part: broadcast sums of 1-D ramps (exact); elastic part: Gaussian noise on a
        # coarse control grid, bicubic-upsampled; one gather-based sampling of both.
        shape = tf.shape(image)
        sizes = [shape[i] for i in range(ndim)]
        ramps = []
        for i in range(ndim):
            centre = (tf.cast(sizes[i], tf.float32) - 1.0) / 2.0
            r = tf.range(tf.cast(sizes[i], tf.float32)) - centre
            ramps.append(tf.reshape(r, [-1 if j == i else 1 for j in range(ndim)]))
        grid = [tf.cast(tf.math.ceil(tf.cast(n, tf.float32) / elastic_grid_spacing), tf.int32) + 1 for n in sizes]
        magnitude = uniform(s_mag, [], *elastic_magnitude)
        noise = tf.random.stateless_normal(tf.stack(grid + [ndim]), seed=s_field) * magnitude
        field = resize_nd(noise, sizes, "bicubic")
        coords = []
        for j in range(ndim):
            centre = (tf.cast(sizes[j], tf.float32) - 1.0) / 2.0
            q = centre + matrix[j, 0] * ramps[0]
            for i in range(1, ndim):
                q = q + matrix[j, i] * ramps[i]
            coords.append(q + field[..., j])
        return sample_at(image, label, coords, image_interpolation)

    return _cond_pair(deform, warp, rigid, has_label)


def random_spatial(
    image: tf.Tensor,
    label: tf.Tensor | None,
    seed: tf.Tensor,
    rotation_prob: float = 0.2,
    rotation_max_deg: float = 30.0,
    scaling_prob: float = 0.2,
    scaling_range: Pair = (0.7, 1.4),
    elastic_prob: float = 0.0,
    elastic_magnitude: Pair = (0.0, 3.0),
    elastic_grid_spacing: int = 16,
    image_interpolation: str = "linear",
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Rotation, isotropic zoom and elastic deformation, each with its own probability,
    applied together as ONE resampling (skipped entirely when none is drawn).

    Args:
        image: ``(X, Y, Z, C)`` or ``(H, W, C)`` float.
        label: matching label (integer, or float with a trailing channel axis) or None;
            always sampled nearest-neighbour.
        seed: ``(2,)`` stateless seed.
        rotation_prob, rotation_max_deg: rotation about every axis, uniform in +-max degrees.
        scaling_prob, scaling_range: zoom factor (> 1 magnifies).
        elastic_prob, elastic_magnitude, elastic_grid_spacing: random displacement with
            standard deviation in ``elastic_magnitude`` voxels, smooth on the scale of
            ``elastic_grid_spacing`` voxels (Gaussian noise on a coarse grid, bicubic upsampling).
        image_interpolation: ``"linear"`` ((tri)linear) or ``"nearest"``.

    Returns:
        ``(image, label)``; voxels mapped from outside the input volume are 0.

    Raises:
        ValueError: for an unknown ``image_interpolation``.
    """
    if image_interpolation not in ("linear", "nearest"):
        raise ValueError(f"image_interpolation must be 'linear' or 'nearest', got {image_interpolation!r}")
    spatial_rank(image)
    probs = [rotation_prob, scaling_prob, elastic_prob]
    if all(p <= 0.0 for p in probs):
        return image, label
    s_draw, s_tf = split_seeds(seed, 2)
    draws = uniform(s_draw, [3])
    rotate, scale, deform = [False if p <= 0.0 else (True if p >= 1.0 else draws[i] < p) for i, p in enumerate(probs)]

    def run():
        return _spatial_transform(
            image,
            label,
            s_tf,
            rotate=rotate,
            scale=scale,
            deform=deform,
            rotation_max_deg=rotation_max_deg,
            scaling_range=scaling_range,
            elastic_magnitude=elastic_magnitude,
            elastic_grid_spacing=elastic_grid_spacing,
            image_interpolation=image_interpolation,
        )

    active = [d for d in (rotate, scale, deform) if d is not False]
    if any(d is True for d in active):
        return run()
    any_active = tf.reduce_any(tf.stack(active))
    if label is None:
        return tf.cond(any_active, lambda: run()[0], lambda: image), None
    return tf.cond(any_active, run, lambda: (image, label))


def random_affine(
    image: tf.Tensor,
    label: tf.Tensor | None,
    seed: tf.Tensor,
    rotation_prob: float = 0.2,
    rotation_max_deg: float = 30.0,
    scaling_prob: float = 0.2,
    scaling_range: Pair = (0.7, 1.4),
    image_interpolation: str = "linear",
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Small-angle rotation and isotropic zoom in one resampling; see :func:`random_spatial`."""
    return random_spatial(
        image,
        label,
        seed,
        rotation_prob=rotation_prob,
        rotation_max_deg=rotation_max_deg,
        scaling_prob=scaling_prob,
        scaling_range=scaling_range,
        elastic_prob=0.0,
        image_interpolation=image_interpolation,
    )


def elastic(
    image: tf.Tensor,
    label: tf.Tensor | None,
    seed: tf.Tensor,
    prob: float = 0.2,
    magnitude: Pair = (0.0, 3.0),
    grid_spacing: int = 16,
    image_interpolation: str = "linear",
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Elastic deformation alone; see :func:`random_spatial` (which combines it with the affine)."""
    return random_spatial(
        image,
        label,
        seed,
        rotation_prob=0.0,
        scaling_prob=0.0,
        elastic_prob=prob,
        elastic_magnitude=magnitude,
        elastic_grid_spacing=grid_spacing,
        image_interpolation=image_interpolation,
    )
