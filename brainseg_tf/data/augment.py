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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

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
]

Pair = tuple[float, float]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of every augmentation; defaults close to nnU-Net v2.

    All ``*_prob`` fields are per-example probabilities in [0, 1]; ranges are ``(low, high)``
    sampled uniformly unless stated. "BG" marks nnU-Net's ``BGContrast`` sampling: with
    probability 1/2 a value below 1 from ``(low, 1)``, else above 1 from ``(1, high)``.

    Attributes:
        flip_prob: probability of mirroring, drawn independently for each axis in
            ``flip_axes`` (nnU-Net ``MirrorTransform``: every axis, 0.5).
        flip_axes: spatial axes that may be mirrored; axes >= ``spatial_dims`` are ignored.
        rot90_prob: probability of an in-plane rotation by k*90 deg, k uniform in {1, 2, 3}, in
            the axial X-Y plane (axes 0, 1). When X != Y only k = 2 (180 deg) is used so the
            shape is kept. Default 0: not part of nnU-Net's defaults (it would swap the
            left-right and anterior-posterior anatomy).
        rotation_prob: probability of a small-angle rotation (nnU-Net ``p_rotation`` 0.2).
        rotation_max_deg: angles uniform in [-max, max] about every axis (nnU-Net 3D: 30 deg;
            in 2D the single in-plane angle uses the same range; nnU-Net 2D uses 180).
        scaling_prob: probability of isotropic zoom (nnU-Net ``p_scaling`` 0.2).
        scaling_range: zoom factor range; > 1 magnifies the content (nnU-Net (0.7, 1.4)).
        elastic_prob: probability of elastic deformation (nnU-Net v2 default 0, i.e. off;
            its BraTS 2020 DA4 trainer used 0.2).
        elastic_magnitude: range of the displacement standard deviation, in voxels.
        elastic_grid_spacing: control-point spacing in voxels of the random displacement grid
            (the smoothness scale; nnU-Net v1 smooths with sigma 9-13 voxels).
        noise_prob: probability of additive Gaussian noise (nnU-Net 0.1).
        noise_std_range: noise standard deviation range, one value for all channels
            (nnU-Net ``noise_variance=(0, 0.1)``, which it uses as the standard deviation).
        blur_prob: probability of Gaussian blur (nnU-Net 0.2).
        blur_sigma_range: sigma in voxels, drawn per channel and per axis (nnU-Net (0.5, 1)).
        blur_channel_prob: probability that each channel is blurred once blur applies
            (nnU-Net ``p_per_channel`` 0.5).
        intensity_scale_prob: probability of multiplicative brightness (nnU-Net 0.15).
        intensity_scale_range: per-channel multiplier, BG-sampled (nnU-Net (0.75, 1.25)).
        intensity_shift_prob: probability of an additive per-channel shift. Not in plain
            nnU-Net v2; value from nnU-Net's BraTS 2020 DA3 trainer (additive brightness,
            p 0.3, N(0, 0.2)), applied per channel as its DA4 trainer does.
        intensity_shift_std: standard deviation of the shift (inputs are z-scored).
        contrast_prob: probability of contrast change (nnU-Net 0.15).
        contrast_range: per-channel factor around the channel mean, BG-sampled, result
            clipped to the channel's original range (nnU-Net (0.75, 1.25), preserve_range).
        low_res_prob: probability of simulated low resolution (nnU-Net 0.25).
        low_res_zoom_range: downsampling factor, same for all axes (nnU-Net (0.5, 1)).
        low_res_channel_prob: probability per channel once low resolution applies (nnU-Net 0.5).
        gamma_prob: probability of gamma (nnU-Net 0.3).
        gamma_inverted_prob: probability of gamma on the negated image (nnU-Net 0.1).
        gamma_range: per-channel gamma, BG-sampled (nnU-Net (0.7, 1.5)).
        gamma_retain_stats: restore each channel's mean and std afterwards (nnU-Net: yes).
    """

    flip_prob: float = 0.5
    flip_axes: tuple[int, ...] = (0, 1, 2)
    rot90_prob: float = 0.0
    rotation_prob: float = 0.2
    rotation_max_deg: float = 30.0
    scaling_prob: float = 0.2
    scaling_range: Pair = (0.7, 1.4)
    elastic_prob: float = 0.0
    elastic_magnitude: Pair = (0.0, 3.0)
    elastic_grid_spacing: int = 16
    noise_prob: float = 0.1
    noise_std_range: Pair = (0.0, 0.1)
    blur_prob: float = 0.2
    blur_sigma_range: Pair = (0.5, 1.0)
    blur_channel_prob: float = 0.5
    intensity_scale_prob: float = 0.15
    intensity_scale_range: Pair = (0.75, 1.25)
    intensity_shift_prob: float = 0.3
    intensity_shift_std: float = 0.2
    contrast_prob: float = 0.15
    contrast_range: Pair = (0.75, 1.25)
    low_res_prob: float = 0.25
    low_res_zoom_range: Pair = (0.5, 1.0)
    low_res_channel_prob: float = 0.5
    gamma_prob: float = 0.3
    gamma_inverted_prob: float = 0.1
    gamma_range: Pair = (0.7, 1.5)
    gamma_retain_stats: bool = True

    @classmethod
    def light(cls) -> AugmentConfig:
        """Flips and cheap per-channel intensity changes only (no resampling, noise or blur)."""
        return cls(
            rotation_prob=0.0,
            scaling_prob=0.0,
            elastic_prob=0.0,
            rot90_prob=0.0,
            noise_prob=0.0,
            blur_prob=0.0,
            low_res_prob=0.0,
            gamma_prob=0.0,
            gamma_inverted_prob=0.0,
        )

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation: every probability 0, ``augment_fn`` returns its inputs."""
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls) if f.name.endswith("_prob")})

    def validate(self) -> AugmentConfig:
        """Check every field; returns ``self`` so calls can be chained.

        Raises:
            ValueError: naming the first invalid field and the value received.
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob"):
                _check(
                    isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0,
                    f.name,
                    value,
                    "a probability in [0, 1]",
                )
        _check(
            isinstance(self.flip_axes, (tuple, list))
            and all(isinstance(a, int) and 0 <= a <= 2 for a in self.flip_axes)
            and len(set(self.flip_axes)) == len(self.flip_axes),
            "flip_axes",
            self.flip_axes,
            "distinct spatial axes in {0, 1, 2}",
        )
        _check(0.0 <= self.rotation_max_deg <= 180.0, "rotation_max_deg", self.rotation_max_deg, "in [0, 180]")
        _check_range(self, "scaling_range", lo_min=0.0, lo_strict=True)
        _check_range(self, "elastic_magnitude", lo_min=0.0)
        _check(
            isinstance(self.elastic_grid_spacing, int) and self.elastic_grid_spacing >= 2,
            "elastic_grid_spacing",
            self.elastic_grid_spacing,
            "an integer >= 2",
        )
        _check_range(self, "noise_std_range", lo_min=0.0)
        _check_range(self, "blur_sigma_range", lo_min=0.0, hi_max=4.0)
        _check_range(self, "intensity_scale_range", lo_min=0.0, lo_strict=True)
        _check(self.intensity_shift_std >= 0.0, "intensity_shift_std", self.intensity_shift_std, ">= 0")
        _check_range(self, "contrast_range", lo_min=0.0, lo_strict=True)
        _check_range(self, "low_res_zoom_range", lo_min=0.0, lo_strict=True, hi_max=1.0)
        _check_range(self, "gamma_range", lo_min=0.0, lo_strict=True)
        _check(isinstance(self.gamma_retain_stats, bool), "gamma_retain_stats", self.gamma_retain_stats, "a bool")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Build and validate a config from :meth:`to_dict` output; missing keys take defaults.

        Raises:
            ValueError: for an unknown key or an invalid value, naming the field.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"AugmentConfig: unknown field(s) {unknown}; known: {sorted(names)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs).validate()


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"AugmentConfig.{name} must be {expected}, got {value!r}")


def _check_range(
    cfg: AugmentConfig, name: str, lo_min: float, lo_strict: bool = False, hi_max: float = math.inf
) -> None:
    value = getattr(cfg, name)
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    if ok:
        lo, hi = value
        ok = (lo > lo_min if lo_strict else lo >= lo_min) and lo <= hi <= hi_max
    bound = f"> {lo_min}" if lo_strict else f">= {lo_min}"
    _check(ok, name, value, f"a (low, high) pair with low {bound}, low <= high <= {hi_max}")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _seeds(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
    """``num`` independent stateless seeds of shape (2,) from one."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    split = tf.random.experimental.stateless_split(seed, num=num)
    return [split[i] for i in range(num)]


def _uniform(seed: tf.Tensor, shape: Sequence[int] | tf.Tensor = (), lo: float = 0.0, hi: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi)


def _bg_sample(seed: tf.Tensor, shape: Sequence[int], rng: Pair) -> tf.Tensor:
    """nnU-Net ``BGContrast``: half the draws from (low, 1), half from (max(low, 1), high)."""
    lo, hi = float(rng[0]), float(rng[1])
    s_pick, s_val = _seeds(seed, 2)
    u = _uniform(s_val, shape)
    below = min(lo, 1.0) + u * (min(hi, 1.0) - min(lo, 1.0))
    above = max(lo, 1.0) + u * (hi - max(lo, 1.0))
    if lo >= 1.0 or hi <= 1.0:
        return above if lo >= 1.0 else below
    return tf.where(_uniform(s_pick, shape) < 0.5, below, above)


def _maybe(prob: float, seed: tf.Tensor, fn: Callable[[], Any], identity: Callable[[], Any]):
    """Run ``fn`` with probability ``prob`` (graph-friendly; the skipped branch never runs)."""
    if prob <= 0.0:
        return identity()
    if prob >= 1.0:
        return fn()
    return tf.cond(_uniform(seed) < prob, fn, identity)


def _spatial_rank(image: tf.Tensor) -> int:
    rank = image.shape.rank
    if rank not in (3, 4):
        raise ValueError(f"image must be (H, W, C) or (X, Y, Z, C), got shape {image.shape}")
    return rank - 1


def _keep_shape(out: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    out = tf.reshape(out, tf.shape(like))
    out.set_shape(like.shape)
    return out


def _channel_reduce(x: tf.Tensor, reducer: Callable[..., tf.Tensor]) -> tf.Tensor:
    """Per-channel reduction over all spatial axes, shaped ``[1, ..., 1, C]``.

    Reducing ``(N, C)`` over N directly is a slow strided reduction on CPU; folding N into
    ``(N / k, k * C)`` first and reducing twice is 2-3x faster at 128^3 x 4.
    """
    c = x.shape[-1]
    n = x.shape[:-1].num_elements()
    k = 1
    if n is not None:
        k = next(d for d in (256, 128, 64, 32, 16, 8, 4, 2, 1) if n % d == 0)
    if k > 1:
        partial = reducer(tf.reshape(x, [-1, k * c]), axis=0)
        out = reducer(tf.reshape(partial, [k, c]), axis=0)
    else:
        out = reducer(tf.reshape(x, [-1, c]), axis=0)
    return tf.reshape(out, [1] * (x.shape.rank - 1) + [c])


def _channel_map(x: tf.Tensor, fn: Callable[..., tf.Tensor], *params: tf.Tensor) -> tf.Tensor:
    """``fn(x, *params)`` for an elementwise ``fn`` and per-channel ``params`` shaped
    ``[1, ..., 1, C]``, computed on ``x`` folded to ``(N / k, k * C)`` with each parameter tiled
    ``k`` times: the same values, but Eigen broadcasts a long row 1.5-2.5x faster than a
    length-C one at 128^3 x 4."""
    c = x.shape[-1]
    n = x.shape[:-1].num_elements()
    if c is None or n is None:
        return fn(x, *params)
    k = next(d for d in (256, 128, 64, 32, 16, 8, 4, 2, 1) if n % d == 0)
    if k == 1:
        return fn(x, *params)
    wide = [tf.tile(tf.reshape(p, [1, c]), [1, k]) for p in params]
    out = tf.reshape(fn(tf.reshape(x, [-1, k * c]), *wide), tf.shape(x))
    out.set_shape(x.shape)
    return out


# --------------------------------------------------------------------------------------------
# Spatial ops (image and label together)
# --------------------------------------------------------------------------------------------


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
    ndim = _spatial_rank(image)
    axes = [a for a in axes if a < ndim]
    if prob <= 0.0 or not axes:
        return image, label
    draws = _uniform(seed, [len(axes)]) < prob
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
    _spatial_rank(image)
    if prob <= 0.0:
        return image, label
    s_do, s_k = _seeds(seed, 2)
    k = tf.random.stateless_uniform([], seed=s_k, minval=1, maxval=4, dtype=tf.int32)
    nx, ny = image.shape[0], image.shape[1]
    if nx is not None and ny is not None:
        if nx != ny:
            k = tf.constant(2, tf.int32)
    else:
        shape = tf.shape(image)
        k = tf.where(tf.equal(shape[0], shape[1]), k, 2)

    def rot():
        img = _keep_shape(_rot90_plane(image, k), image)
        lab = None if label is None else _keep_shape(_rot90_plane(label, k), label)
        return img, lab

    if label is None:
        return _maybe(prob, s_do, lambda: rot()[0], lambda: image), None
    return _maybe(prob, s_do, rot, lambda: (image, label))


def _rot2(angle: tf.Tensor) -> tf.Tensor:
    c, s = tf.cos(angle), tf.sin(angle)
    return tf.stack([tf.stack([c, -s]), tf.stack([s, c])])


def _affine_blocks(angles: tf.Tensor, zoom: tf.Tensor, ndim: int) -> tuple[list[tf.Tensor], tf.Tensor]:
    """Plane blocks and full matrix of the map output -> input (centred coordinates).

    3-D: ``M = Rx Rz Ry / zoom`` as P1 (on (y, z)) P2 (on (x, y)) P3 (on (x, z)). The isotropic
    zoom commutes, so it can sit in any pass; the passes run P1 first, and each one crops to the
    grid, so the zoom goes where it loses least: when magnifying (zoom > 1, coordinates shrink)
    into the passes that see the output coordinates first, P3 = Ry/zoom and P2 = Rz with its
    y column divided by zoom; when shrinking, into the passes nearest the input, P1 = Rx/zoom
    and P2 = Rz with its x row divided by zoom.
    """
    if ndim == 2:
        block = _rot2(angles[0]) / zoom
        return [block], block
    inv = 1.0 / zoom
    magnify = zoom >= 1.0
    rx, rz, ry = _rot2(angles[0]), _rot2(angles[2]), _rot2(angles[1])
    b1 = tf.where(magnify, rx, rx * inv)
    b2 = tf.where(magnify, rz * tf.stack([1.0, inv])[None, :], rz * tf.stack([inv, 1.0])[:, None])
    b3 = tf.where(magnify, ry * inv, ry)

    def embed(b: tf.Tensor, i: int, j: int) -> tf.Tensor:
        idx = [[i, i], [i, j], [j, i], [j, j]]
        return tf.tensor_scatter_nd_update(tf.eye(3), idx, tf.reshape(b, [4]))

    full = embed(b1, 1, 2) @ embed(b2, 0, 1) @ embed(b3, 0, 2)
    return [b1, b2, b3], full


def _resize_nd(x: tf.Tensor, size: Sequence[tf.Tensor], method: str) -> tf.Tensor:
    """Resize the leading 2 or 3 spatial axes of ``(*S, C)`` (3D as two separable 2D resizes)."""
    ndim = x.shape.rank - 1
    if ndim == 2:
        return tf.image.resize(x, tf.stack(size), method=method)
    shape = tf.shape(x)
    c = shape[3]
    xy = tf.reshape(x, [shape[0], shape[1], shape[2] * c])
    xy = tf.image.resize(xy, tf.stack([size[0], size[1]]), method=method)
    z = tf.reshape(xy, [size[0] * size[1], shape[2], 1, c])
    z = tf.image.resize(z, tf.stack([size[2], 1]), method=method)
    return tf.reshape(z, [size[0], size[1], size[2], c])


def _sample(
    image: tf.Tensor, label: tf.Tensor | None, coords: list[tf.Tensor], image_interpolation: str
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Sample image and label at input-voxel coordinates ``coords`` (one tensor per axis).

    Outside the volume the value is 0. The image is padded by one zero voxel per side and
    flattened so every corner is one ``tf.gather`` of whole channel rows; the label is sampled
    nearest-neighbour at the same coordinates (one gather).
    """
    ndim = len(coords)
    shape = tf.shape(image)
    sizes = [shape[i] for i in range(ndim)]
    padded = [n + 2 for n in sizes]
    strides = [None] * ndim
    strides[-1] = tf.constant(1, tf.int32)
    for i in range(ndim - 2, -1, -1):
        strides[i] = strides[i + 1] * padded[i + 1]
    pad = [[1, 1]] * ndim

    def flat(x: tf.Tensor) -> tf.Tensor:
        xp = tf.pad(x, pad + [[0, 0]] * (x.shape.rank - ndim))
        return tf.reshape(xp, tf.concat([[-1], tf.shape(x)[ndim:]], 0))

    clipped = []
    for i in range(ndim):
        hi = tf.cast(sizes[i], tf.float32)
        clipped.append(tf.clip_by_value(coords[i], -1.0, hi))

    def nearest_index() -> tf.Tensor:
        idx = None
        for i in range(ndim):
            hi = tf.cast(sizes[i], tf.float32)
            r = tf.cast(tf.clip_by_value(tf.floor(clipped[i] + 0.5), -1.0, hi), tf.int32) + 1
            idx = r * strides[i] if idx is None else idx + r * strides[i]
        return idx

    out_label = None
    near = None
    if label is not None or image_interpolation == "nearest":
        near = nearest_index()
    if label is not None:
        out_label = _keep_shape(tf.gather(flat(label), near), label)

    img_flat = flat(tf.cast(image, tf.float32))
    if image_interpolation == "nearest":
        out_img = tf.gather(img_flat, near)
    else:
        base, weights = None, []
        for i in range(ndim):
            hi = tf.cast(sizes[i], tf.float32)
            f = tf.minimum(tf.floor(clipped[i]), hi - 1.0)
            weights.append((clipped[i] - f)[..., None])
            b = (tf.cast(f, tf.int32) + 1) * strides[i]
            base = b if base is None else base + b

        def interp(axis: int, offset: tf.Tensor | None) -> tf.Tensor:
            if axis == ndim:
                return tf.gather(img_flat, base if offset is None else base + offset)
            a = interp(axis + 1, offset)
            b = interp(axis + 1, strides[axis] if offset is None else offset + strides[axis])
            return a + (b - a) * weights[axis]

        out_img = interp(0, None)
    return _keep_shape(tf.cast(out_img, image.dtype), image), out_label


def _plane_pass(view: tf.Tensor, t: tf.Tensor, out_hw: Sequence[tf.Tensor], interpolation: str) -> tf.Tensor:
    """One C++ 2-D affine resampling of ``view (B, H, W, C)``.

    ``t (2, 3)`` maps an output (row, col, 1) to the input (row, col); outside is 0.
    """
    flat = tf.stack([t[1, 1], t[1, 0], t[1, 2], t[0, 1], t[0, 0], t[0, 2], 0.0, 0.0])[None]
    dtype = view.dtype
    if dtype.is_integer and dtype not in (tf.uint8, tf.int32, tf.int64):
        view = tf.cast(view, tf.int32)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=view,
        transforms=flat,
        output_shape=tf.stack(out_hw),
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )
    return tf.cast(out, dtype)


def _pass_matrix(
    block: tf.Tensor, c_in: Sequence[tf.Tensor], c_out: Sequence[tf.Tensor], swap: bool = False
) -> tf.Tensor:
    """``(2, 3)`` row/col map of ``in = c_in + block (out - c_out)``; ``swap`` when the output
    plane is stored transposed (output row = 2nd coordinate, col = 1st)."""
    b = block if not swap else tf.reverse(block, [1])
    co = c_out if not swap else [c_out[1], c_out[0]]
    shift = tf.stack(c_in) - tf.linalg.matvec(b, tf.stack(co))
    return tf.concat([b, shift[:, None]], 1)


def _affine_by_planes(
    image: tf.Tensor, label: tf.Tensor | None, blocks: list[tf.Tensor], image_interpolation: str
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Affine resampling with the fused C++ 2-D kernel (``ImageProjectiveTransformV3``).

    ``blocks``: 2-D, one 2x2 matrix; 3-D, the 2x2 blocks of P1 (acting on (y, z)), P2 (on
    (x, y)) and P3 (on (x, z)) of the coordinate map P1 P2 P3. Each pass is done on a
    reshaped view without copies; the (x, y) pass also swaps x and y so the (x, z) pass can use
    y as batch, and one transpose restores the layout. About 2-3x faster than the 8-gather
    trilinear sampler at 128^3 x 4, at the price of three 1-D-plane interpolations.
    """
    ndim = image.shape.rank - 1
    shape = tf.shape(image)
    n = [shape[i] for i in range(ndim)]
    cen = [(tf.cast(k, tf.float32) - 1.0) / 2.0 for k in n]
    img_mode = "BILINEAR" if image_interpolation == "linear" else "NEAREST"

    def run(x: tf.Tensor, mode: str, passes) -> tf.Tensor:
        extra = x.shape.rank > ndim
        y = x if extra else x[..., None]
        ys = tf.shape(y)
        c = ys[ndim]
        if ndim == 2:
            out = _plane_pass(y[None], passes[0], [n[0], n[1]], mode)[0]
        else:
            out = _plane_pass(y, passes[0], [n[1], n[2]], mode)  # (X, Y, Z, C)
            out = _plane_pass(
                tf.reshape(out, [1, n[0], n[1], n[2] * c]), passes[1], [n[1], n[0]], mode
            )  # (1, Y, X, Z*C)
            out = _plane_pass(tf.reshape(out, [n[1], n[0], n[2], c]), passes[2], [n[0], n[2]], mode)  # (Y, X, Z, C)
            out = tf.transpose(out, [1, 0, 2, 3])
        out = out if extra else out[..., 0]
        return _keep_shape(out, x)

    if ndim == 2:
        passes = [_pass_matrix(blocks[0], cen, cen)]
    else:
        p1, p2, p3 = blocks
        passes = [
            _pass_matrix(p1, [cen[1], cen[2]], [cen[1], cen[2]]),
            _pass_matrix(p2, [cen[0], cen[1]], [cen[0], cen[1]], swap=True),
            _pass_matrix(p3, [cen[0], cen[2]], [cen[0], cen[2]]),
        ]
    out_img = run(image, img_mode, passes)
    out_lab = None if label is None else run(label, "NEAREST", passes)
    return out_img, out_lab


def _zoom_by_resize(
    image: tf.Tensor, label: tf.Tensor | None, zoom: tf.Tensor, image_interpolation: str
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Isotropic zoom about the centre, ``in = c + (out - c) / zoom``, with
    ``tf.image.crop_and_resize`` (interpolation weights shared by all channels: about 6x cheaper
    than a general affine pass). Outside the volume is 0."""
    ndim = image.shape.rank - 1
    lo_n, hi_n = 0.5 - 0.5 / zoom, 0.5 + 0.5 / zoom
    shape = tf.shape(image)
    n = [shape[i] for i in range(ndim)]

    def run(x: tf.Tensor, method: str) -> tf.Tensor:
        extra = x.shape.rank > ndim
        y = x if extra else x[..., None]
        c = tf.shape(y)[ndim]
        if ndim == 2:
            out = tf.image.crop_and_resize(
                y[None], tf.stack([lo_n, lo_n, hi_n, hi_n])[None], [0], tf.stack([n[0], n[1]]), method=method
            )
        else:
            v = tf.reshape(y, [1, n[0], n[1], n[2] * c])
            v = tf.image.crop_and_resize(
                v, tf.stack([lo_n, lo_n, hi_n, hi_n])[None], [0], tf.stack([n[0], n[1]]), method=method
            )
            v = tf.reshape(v, [1, n[0] * n[1], n[2], c])
            out = tf.image.crop_and_resize(
                v, tf.stack([0.0, lo_n, 1.0, hi_n])[None], [0], tf.stack([n[0] * n[1], n[2]]), method=method
            )
        out = tf.cast(out, x.dtype)
        return _keep_shape(out if extra else out[..., 0], x)

    img_method = "bilinear" if image_interpolation == "linear" else "nearest"
    return run(image, img_method), (None if label is None else run(label, "nearest"))


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
    ndim = _spatial_rank(image)
    s_rot, s_scale, s_mag, s_field = _seeds(seed, 4)
    n_angles = 1 if ndim == 2 else 3
    max_rad = math.radians(rotation_max_deg)
    angles = _uniform(s_rot, [n_angles], -max_rad, max_rad) * tf.cast(rotate, tf.float32)
    zoom = _uniform(s_scale, [], *scaling_range)
    zoom = tf.where(tf.cast(scale, tf.bool), zoom, 1.0)
    # Output voxel p maps to input coordinate q = centre + R (p - centre) / zoom (+ elastic).
    blocks, matrix = _affine_blocks(angles, zoom, ndim)
    has_label = label is not None

    def rigid():
        # Zoom alone (no rotation drawn) is much cheaper by crop-and-resize.
        return _cond_pair(
            rotate,
            lambda: _affine_by_planes(image, label, blocks, image_interpolation),
            lambda: _zoom_by_resize(image, label, zoom, image_interpolation),
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
        magnitude = _uniform(s_mag, [], *elastic_magnitude)
        noise = tf.random.stateless_normal(tf.stack(grid + [ndim]), seed=s_field) * magnitude
        field = _resize_nd(noise, sizes, "bicubic")
        coords = []
        for j in range(ndim):
            centre = (tf.cast(sizes[j], tf.float32) - 1.0) / 2.0
            q = centre + matrix[j, 0] * ramps[0]
            for i in range(1, ndim):
                q = q + matrix[j, i] * ramps[i]
            coords.append(q + field[..., j])
        return _sample(image, label, coords, image_interpolation)

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
    _spatial_rank(image)
    probs = [rotation_prob, scaling_prob, elastic_prob]
    if all(p <= 0.0 for p in probs):
        return image, label
    s_draw, s_tf = _seeds(seed, 2)
    draws = _uniform(s_draw, [3])
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


# --------------------------------------------------------------------------------------------
# Intensity ops (image only; labels are never touched)
# --------------------------------------------------------------------------------------------


def _channel_shape(image: tf.Tensor) -> list[int]:
    """``[1, ..., 1, C]`` for per-channel parameters (C must be static)."""
    c = image.shape[-1]
    if c is None:
        raise ValueError("the channel axis of image must have a static size")
    return [1] * (image.shape.rank - 1) + [c]


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
    cshape = _channel_shape(image)
    s_d1, s_d2, s_a, s_b = _seeds(seed, 4)
    image = _maybe(
        scale_prob,
        s_d1,
        lambda: _channel_map(image, tf.multiply, tf.cast(_bg_sample(s_a, cshape, scale_range), image.dtype)),
        lambda: image,
    )
    image = _maybe(
        shift_prob,
        s_d2,
        lambda: _channel_map(
            image, tf.add, tf.cast(tf.random.stateless_normal(cshape, seed=s_b) * shift_std, image.dtype)
        ),
        lambda: image,
    )
    return image


def _moments(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    mean = _channel_reduce(x, tf.reduce_mean)
    var = _channel_reduce(tf.square(x - mean), tf.reduce_mean)
    return mean, tf.sqrt(var)


def contrast(image: tf.Tensor, seed: tf.Tensor, prob: float = 0.15, factor_range: Pair = (0.75, 1.25)) -> tf.Tensor:
    """Per-channel contrast ``(x - mean) * f + mean``, clipped to the channel's original
    [min, max] (nnU-Net ``ContrastTransform`` with ``preserve_range``)."""
    cshape = _channel_shape(image)
    s_do, s_f = _seeds(seed, 2)

    def run():
        x = tf.cast(image, tf.float32)
        # The mean is estimated on every 2nd voxel per axis; min/max are exact.
        mean = _channel_reduce(x[(slice(None, None, 2),) * (x.shape.rank - 1)], tf.reduce_mean)
        lo = _channel_reduce(x, tf.reduce_min)
        hi = _channel_reduce(x, tf.reduce_max)
        f = _bg_sample(s_f, cshape, factor_range)
        # clip_by_value's own order (minimum, then maximum), without its checks: 1.4x faster
        out = _channel_map(
            x, lambda v, f_, m_, lo_, hi_: tf.maximum(tf.minimum(v * f_ + m_, hi_), lo_), f, mean * (1.0 - f), lo, hi
        )
        return tf.cast(out, image.dtype)

    return _maybe(prob, s_do, run, lambda: image)


def _gamma_core(image: tf.Tensor, seed: tf.Tensor, gamma_range: Pair, invert: bool, retain_stats: bool) -> tf.Tensor:
    """nnU-Net's gamma, algebraically folded to ~8 passes over the data (from ~15).

    With ``d = x - min`` (``max - x`` when inverted) and ``y = (d / range) ** g``, nnU-Net's
    rescale-back and mean/std restoration reduce to ``out = sign * |A| * y + B`` per channel,
    computed as ``exp(g * log d + c)``; ``log 0 = -inf`` gives 0 as wanted. The mean/std used
    for ``retain_stats`` are estimated on every 2nd voxel per axis (1/8 or 1/4 of the data).
    """
    cshape = _channel_shape(image)
    ndim = image.shape.rank - 1
    x = tf.cast(image, tf.float32)
    mn = _channel_reduce(x, tf.reduce_min)
    mx = _channel_reduce(x, tf.reduce_max)
    rng = tf.maximum(mx - mn, 1e-7)
    g = _bg_sample(seed, cshape, gamma_range)
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
    s_do, s_g = _seeds(seed, 2)
    return _maybe(prob, s_do, lambda: _gamma_core(image, s_g, gamma_range, invert, retain_stats), lambda: image)


def gaussian_noise(image: tf.Tensor, seed: tf.Tensor, prob: float = 0.1, std_range: Pair = (0.0, 0.1)) -> tf.Tensor:
    """Additive zero-mean Gaussian noise; one standard deviation per example from
    ``std_range`` shared by all channels (nnU-Net ``GaussianNoiseTransform``)."""
    s_do, s_std, s_n = _seeds(seed, 3)

    def run():
        std = _uniform(s_std, [], *std_range)
        noise = tf.random.stateless_normal(tf.shape(image), seed=s_n) * std
        return image + tf.cast(noise, image.dtype)

    return _maybe(prob, s_do, run, lambda: image)


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
    return _keep_shape(tf.cast(x, image.dtype), image)


def gaussian_blur(
    image: tf.Tensor, seed: tf.Tensor, prob: float = 0.2, sigma_range: Pair = (0.5, 1.0), channel_prob: float = 0.5
) -> tf.Tensor:
    """Gaussian blur; sigma (voxels) drawn per channel and per axis from ``sigma_range``, each
    channel blurred with probability ``channel_prob`` (nnU-Net ``GaussianBlurTransform``).

    The kernel is truncated at ``ceil(3 * max sigma)`` voxels; borders are zero-padded.
    """
    ndim = _spatial_rank(image)
    cshape = _channel_shape(image)
    c = cshape[-1]
    radius = max(1, math.ceil(3.0 * sigma_range[1]))
    s_do, s_ch, s_sig = _seeds(seed, 3)

    def run():
        sigmas = _uniform(s_sig, [ndim, c], *sigma_range)
        chosen = _uniform(s_ch, [1, c]) < channel_prob
        # An unchosen channel gets sigma ~0, i.e. a delta kernel: one conv serves all channels.
        sigmas = tf.where(chosen, sigmas, 0.0)
        return _blur(image, sigmas, radius)

    return _maybe(prob, s_do, run, lambda: image)


def low_resolution(
    image: tf.Tensor, seed: tf.Tensor, prob: float = 0.25, zoom_range: Pair = (0.5, 1.0), channel_prob: float = 0.5
) -> tf.Tensor:
    """Simulated low resolution: downsample by ``zoom`` (nearest), upsample back (linear).

    One zoom for all axes and all chosen channels (nnU-Net draws it per channel); each channel
    is chosen with probability ``channel_prob``.
    """
    ndim = _spatial_rank(image)
    cshape = _channel_shape(image)
    s_do, s_ch, s_z = _seeds(seed, 3)

    def run():
        zoom = _uniform(s_z, [], *zoom_range)
        shape = tf.shape(image)
        sizes = [shape[i] for i in range(ndim)]
        small = [tf.maximum(1, tf.cast(tf.round(tf.cast(n, tf.float32) * zoom), tf.int32)) for n in sizes]
        x = tf.cast(image, tf.float32)
        low = _resize_nd(_resize_nd(x, small, "nearest"), sizes, "bilinear")
        chosen = _uniform(s_ch, cshape) < channel_prob
        return _keep_shape(tf.cast(tf.where(chosen, low, x), image.dtype), image)

    return _maybe(prob, s_do, run, lambda: image)


# --------------------------------------------------------------------------------------------
# The composed augmentation
# --------------------------------------------------------------------------------------------


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
        s = _seeds(seed, 12)
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
