"""Resampling engines behind the spatial augmentations (image and label moved together).

Three exact routes for a coordinate map ``in = centre + M (out - centre) [+ displacement]``:
:func:`zoom_by_resize` (isotropic zoom alone, ``crop_and_resize``), :func:`affine_by_planes`
(rotation and zoom as fused C++ 2-D affine passes on reshaped views, matrices from
:func:`affine_blocks`) and :func:`sample_at` (any coordinate map, gather-based (tri)linear). The
image is interpolated (bi/tri)linearly or nearest-neighbour, the label always nearest-neighbour;
voxels mapped from outside the input are 0. Layout: ``(X, Y, Z, C)`` or ``(H, W, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from brainseg_tf.data.augment.core import keep_shape

__all__ = ["affine_blocks", "affine_by_planes", "zoom_by_resize", "sample_at", "resize_nd"]


def _rot2(angle: tf.Tensor) -> tf.Tensor:
    """The 2x2 rotation matrix of ``angle`` (radians)."""
    c, s = tf.cos(angle), tf.sin(angle)
    return tf.stack([tf.stack([c, -s]), tf.stack([s, c])])


def affine_blocks(angles: tf.Tensor, zoom: tf.Tensor, ndim: int) -> tuple[list[tf.Tensor], tf.Tensor]:
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


def resize_nd(x: tf.Tensor, size: Sequence[tf.Tensor], method: str) -> tf.Tensor:
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


def sample_at(
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
        out_label = keep_shape(tf.gather(flat(label), near), label)

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
    return keep_shape(tf.cast(out_img, image.dtype), image), out_label


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


def affine_by_planes(
    image: tf.Tensor, label: tf.Tensor | None, blocks: list[tf.Tensor], image_interpolation: str
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Affine resampling with the fused C++ 2-D kernel (``ImageProjectiveTransformV3``).

    ``blocks``: 2-D, one 2x2 matrix; 3-D, the 2x2 blocks of P1 (acting on (y, z)), P2 (on
    (x, y)) and P3 (on (x, z)) of the coordinate map P1 P2 P3. Each pass is done on a
    reshaped view without copies; the (x, y) pass also swaps x and y so the (x, z) pass can use
    y as batch, and one transpose restores the layout. Faster than the 8-gather trilinear sampler
    (:func:`sample_at`; figures in docs/data.md), at the price of three 1-D-plane interpolations.
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
        return keep_shape(out, x)

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


def zoom_by_resize(
    image: tf.Tensor, label: tf.Tensor | None, zoom: tf.Tensor, image_interpolation: str
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Isotropic zoom about the centre, ``in = c + (out - c) / zoom``, with
    ``tf.image.crop_and_resize``: its interpolation weights are shared by all channels, which makes
    it far cheaper than a general affine pass (docs/data.md). Outside the volume is 0."""
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
        return keep_shape(out if extra else out[..., 0], x)

    img_method = "bilinear" if image_interpolation == "linear" else "nearest"
    return run(image, img_method), (None if label is None else run(label, "nearest"))
