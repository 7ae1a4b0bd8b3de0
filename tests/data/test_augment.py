"""Tests for brainseg_tf.data.augment: alignment, determinism, identity, shapes, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

tf = pytest.importorskip("tensorflow")

from brainseg_tf.data import augment as A  # noqa: E402
from brainseg_tf.data.augment import AugmentConfig, augment_fn  # noqa: E402
from brainseg_tf.data.augment.core import bg_sample, split_seeds  # noqa: E402
from brainseg_tf.data.augment.resample import affine_blocks, affine_by_planes, zoom_by_resize  # noqa: E402

SEED = tf.constant([7, 11], tf.int32)


def _label(shape=(24, 24, 16)) -> np.ndarray:
    """Nested blobs with classes 0-3 (ED around NCR around ET, as in a glioma)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    centre = (np.array(shape) - 1) / 2.0 + np.array([1.5, -2.0, 1.0][: len(shape)])
    r = np.sqrt((((grid - centre) / (np.array(shape) / 2.0)) ** 2).sum(-1))
    lab = np.zeros(shape, np.uint8)
    lab[r < 0.8] = 2
    lab[r < 0.5] = 1
    lab[r < 0.3] = 3
    return lab


def _pair(shape=(24, 24, 16), channels=3):
    """Image whose channel 0 = label * 10 + 0.5 (so the label can be read back from it)."""
    lab = _label(shape)
    rng = np.random.default_rng(0)
    img = rng.normal(size=shape + (channels,)).astype(np.float32)
    img[..., 0] = lab * 10.0 + 0.5
    return tf.constant(img), tf.constant(lab)


def _read_label(img: tf.Tensor) -> np.ndarray:
    return np.clip(np.round((img.numpy()[..., 0] - 0.5) / 10.0), 0, 3).astype(np.uint8)


ALL_ON = dict(
    rotation_prob=1.0,
    scaling_prob=1.0,
    elastic_prob=1.0,
    rot90_prob=1.0,
    flip_prob=1.0,
    noise_prob=1.0,
    blur_prob=1.0,
    intensity_scale_prob=1.0,
    intensity_shift_prob=1.0,
    contrast_prob=1.0,
    low_res_prob=1.0,
    gamma_prob=1.0,
    gamma_inverted_prob=1.0,
)


# ------------------------------------------------------------------------------ alignment


@pytest.mark.parametrize(
    "op",
    [
        lambda i, lab, s: A.random_flip(i, lab, s, 1.0),
        lambda i, lab, s: A.random_rot90(i, lab, s, 1.0),
        lambda i, lab, s: A.random_affine(i, lab, s, 1.0, 30.0, 1.0, (0.7, 1.4), image_interpolation="nearest"),
        lambda i, lab, s: A.elastic(i, lab, s, 1.0, (2.0, 3.0), 8, image_interpolation="nearest"),
        lambda i, lab, s: A.random_spatial(
            i, lab, s, 1.0, 30.0, 1.0, (0.7, 1.4), 1.0, (2.0, 3.0), 8, image_interpolation="nearest"
        ),
        lambda i, lab, s: A.random_affine(i, lab, s, 0.0, 30.0, 1.0, (0.7, 1.4), image_interpolation="nearest"),
    ],
    ids=["flip", "rot90", "affine", "elastic", "affine+elastic", "zoom"],
)
@pytest.mark.parametrize("shape", [(24, 24, 16), (20, 20)], ids=["3d", "2d"])
def test_spatial_ops_keep_label_exactly_aligned_with_nearest_image(op, shape):
    img, lab = _pair(shape)
    for k in range(3):
        out_img, out_lab = op(img, lab, tf.constant([k, 5]))
        np.testing.assert_array_equal(_read_label(out_img), out_lab.numpy())
    # The transform really moved something (the test is not vacuous).
    assert not np.array_equal(out_lab.numpy(), lab.numpy())


def test_rot90_square_plane_and_180_for_rectangular():
    img, lab = _pair((24, 24, 16))
    ks = set()
    for k in range(12):
        _, out = A.random_rot90(img, lab, tf.constant([k, 1]), 1.0)
        match = [j for j in (1, 2, 3) if np.array_equal(out.numpy(), np.rot90(lab.numpy(), j))]
        assert len(match) == 1
        ks.add(match[0])
    assert ks == {1, 2, 3}
    img, lab = _pair((24, 20, 16))
    out_img, out_lab = A.random_rot90(img, lab, tf.constant([3, 1]), 1.0)
    np.testing.assert_array_equal(out_lab.numpy(), np.rot90(lab.numpy(), 2))
    assert out_img.shape == img.shape


@pytest.mark.parametrize("elastic_prob", [0.0, 1.0], ids=["affine_planes", "warp_gather"])
def test_linear_image_stays_aligned_with_nearest_label(elastic_prob):
    img, lab = _pair((32, 32, 24))
    out_img, out_lab = A.random_spatial(img, lab, SEED, 1.0, 30.0, 1.0, (0.7, 1.4), elastic_prob, (1.0, 2.0), 8)
    read, out = _read_label(out_img), out_lab.numpy()
    assert (read == out).mean() > 0.85
    # Mismatches only within 2 voxels of a label boundary of the output (linear interpolation
    # across a 0 -> 20 step passes through 10, and zoom stretches that band) or of the volume
    # edge (where the image blends with the zero fill outside).
    edged = np.pad(out, 2, constant_values=255)
    boundary = (ndimage.maximum_filter(edged, size=5) != ndimage.minimum_filter(edged, size=5))[2:-2, 2:-2, 2:-2]
    assert np.all(boundary[read != out])


@pytest.mark.parametrize("zoom", [0.7, 1.4])
@pytest.mark.parametrize("shape", [(24, 24, 16), (20, 20)], ids=["3d", "2d"])
def test_zoom_by_resize_matches_general_affine(zoom, shape):
    img, lab = _pair(shape)
    ndim = len(shape)
    blocks, _ = affine_blocks(tf.zeros([1 if ndim == 2 else 3]), tf.constant(zoom), ndim)
    fast_img, fast = zoom_by_resize(img, lab, tf.constant(zoom), "linear")
    ref_img, ref = affine_by_planes(img, lab, blocks, "linear")
    assert (fast.numpy() == ref.numpy()).mean() > 0.99
    # Equal wherever the sampled point lies inside the input volume (at the edge,
    # crop_and_resize does not blend with the zero fill outside; the general pass does).
    size = np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    q = (size - 1) / 2 + (grid - (size - 1) / 2) / zoom
    inside = np.all((q >= 0) & (q <= size - 1), -1)
    assert inside.mean() > 0.25
    np.testing.assert_allclose(fast_img.numpy()[inside], ref_img.numpy()[inside], atol=1e-4)


@pytest.mark.parametrize("angles,zoom", [((0.4, -0.45, 0.5), 1.3), ((-0.5, 0.3, 0.2), 0.75), ((0.35, 0.05, -0.2), 1.0)])
def test_plane_passes_realise_the_coordinate_map(angles, zoom):
    """The fast rotation route (three 2-D passes) samples at ``c + M (p - c)``, the map the
    gather route (used with elastic) samples at. An image whose channels are the x, y, z
    ramps is transformed exactly by linear interpolation, so it must read back the map; only
    voxels whose path leaves the grid in an intermediate pass may differ (a few %)."""
    shape = (40, 40, 32)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1)
    blocks, matrix = affine_blocks(tf.constant(angles), tf.constant(zoom), 3)
    out, _ = affine_by_planes(tf.constant(grid), None, blocks, "linear")
    centre = (np.array(shape) - 1) / 2.0
    q = centre + np.einsum("ji,...i->...j", matrix.numpy(), grid - centre)
    valid = np.all((q >= 1) & (q <= np.array(shape) - 2), -1)
    exact = np.abs(out.numpy() - q).max(-1) < 1e-3
    assert valid.mean() > 0.3
    assert exact[valid].mean() > 0.95


def test_one_hot_float_label_moves_with_image():
    img, lab = _pair((24, 24, 16))
    one_hot = tf.one_hot(lab, 4, dtype=tf.float32)
    out_img, out_lab = A.random_affine(img, one_hot, SEED, 1.0, 30.0, 1.0, image_interpolation="nearest")
    assert out_lab.shape == one_hot.shape and out_lab.dtype == tf.float32
    np.testing.assert_array_equal(np.argmax(out_lab.numpy(), -1), _read_label(out_img))


def test_identity_affine_is_exact():
    img, lab = _pair((24, 24, 16))
    out_img, out_lab = A.random_spatial(img, lab, SEED, 1.0, 0.0, 1.0, (1.0, 1.0), 0.0)
    np.testing.assert_allclose(out_img.numpy(), img.numpy(), atol=1e-5)
    np.testing.assert_array_equal(out_lab.numpy(), lab.numpy())


# ------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("spatial_dims", [3, 2])
def test_same_seed_same_output_different_seed_different(spatial_dims):
    shape = (24, 24, 16) if spatial_dims == 3 else (24, 24)
    img, lab = _pair(shape)
    fn = tf.function(augment_fn(AugmentConfig(**ALL_ON), spatial_dims=spatial_dims))
    a = fn(img, lab, SEED)
    b = fn(img, lab, tf.constant([7, 11], tf.int64))
    c = fn(img, lab, tf.constant([8, 11]))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.allclose(a[0].numpy(), c[0].numpy())


def test_dataset_map_graph_mode_and_static_shapes():
    img, lab = _pair((24, 24, 16))
    fn = augment_fn(AugmentConfig(**ALL_ON))
    ds = tf.data.Dataset.from_tensors((img, lab)).repeat(2).enumerate()
    ds = ds.map(lambda i, x: fn(x[0], x[1], tf.stack([i, i + 1])), num_parallel_calls=tf.data.AUTOTUNE)
    assert ds.element_spec[0].shape == img.shape and ds.element_spec[1].shape == lab.shape
    assert ds.element_spec[1].dtype == tf.uint8
    outs = list(ds)
    assert len(outs) == 2 and not np.array_equal(outs[0][0].numpy(), outs[1][0].numpy())
    for cfg in (AugmentConfig(**ALL_ON), AugmentConfig(), AugmentConfig(elastic_prob=0.5)):
        concrete = tf.function(augment_fn(cfg)).get_concrete_function(
            tf.TensorSpec(img.shape, tf.float32), tf.TensorSpec(lab.shape, tf.uint8), tf.TensorSpec([2], tf.int32)
        )
        assert concrete.structured_outputs[0].shape == img.shape
        assert concrete.structured_outputs[1].shape == lab.shape


# ------------------------------------------------------------------------------ intensity


@pytest.mark.parametrize(
    "op",
    [
        lambda i, s: A.intensity_scale_shift(i, s, 1.0, (0.75, 1.25), 1.0, 0.2),
        lambda i, s: A.contrast(i, s, 1.0),
        lambda i, s: A.gamma(i, s, 1.0),
        lambda i, s: A.gamma(i, s, 1.0, invert=True),
        lambda i, s: A.gaussian_noise(i, s, 1.0, (0.05, 0.1)),
        lambda i, s: A.gaussian_blur(i, s, 1.0, channel_prob=1.0),
        lambda i, s: A.low_resolution(i, s, 1.0, (0.5, 0.6), channel_prob=1.0),
    ],
    ids=["scale_shift", "contrast", "gamma", "gamma_inv", "noise", "blur", "low_res"],
)
def test_intensity_ops_change_image_only(op):
    img, lab = _pair((24, 24, 16))
    fn = augment_fn(AugmentConfig.none())
    out = op(img, SEED)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert not np.allclose(out.numpy(), img.numpy())
    assert np.all(np.isfinite(out.numpy()))
    np.testing.assert_array_equal(fn(img, lab, SEED)[1].numpy(), lab.numpy())


def test_full_pipeline_intensity_only_leaves_label_untouched():
    img, lab = _pair((24, 24, 16))
    cfg = AugmentConfig(
        **{
            **ALL_ON,
            "rotation_prob": 0.0,
            "scaling_prob": 0.0,
            "elastic_prob": 0.0,
            "rot90_prob": 0.0,
            "flip_prob": 0.0,
        }
    )
    out_img, out_lab = augment_fn(cfg)(img, lab, SEED)
    np.testing.assert_array_equal(out_lab.numpy(), lab.numpy())
    assert not np.allclose(out_img.numpy(), img.numpy())


def test_gamma_on_z_scored_input_keeps_stats_and_order():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 16, 16, 2)).astype(np.float32)
    for k, invert in [(0, False), (1, False), (2, True), (3, True)]:
        y = A.gamma(tf.constant(x), tf.constant([k, 0]), 1.0, (0.5, 2.0), invert=invert).numpy()
        assert np.all(np.isfinite(y))
        # Stats are restored from a 1/8 subsample estimate: close, not exact.
        np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), x.mean(axis=(0, 1, 2)), atol=0.05)
        np.testing.assert_allclose(y.std(axis=(0, 1, 2)), x.std(axis=(0, 1, 2)), rtol=0.05)
        # Monotone per channel: the intensity order of voxels is kept.
        for c in range(2):
            order = np.argsort(x[..., c].ravel())
            assert np.all(np.diff(y[..., c].ravel()[order]) >= -1e-5)


def test_gamma_matches_reference_formula_without_stats():
    x = np.random.default_rng(3).normal(size=(8, 8, 8, 2)).astype(np.float32)
    seed = tf.constant([4, 4])
    for invert in (False, True):
        y = A.gamma(tf.constant(x), seed, 1.0, (0.7, 1.5), invert=invert, retain_stats=False).numpy()
        g = bg_sample(split_seeds(seed, 2)[1], [1, 1, 1, 2], (0.7, 1.5)).numpy()
        v = -x if invert else x
        lo, hi = v.min(axis=(0, 1, 2)), v.max(axis=(0, 1, 2))
        ref = ((v - lo) / (hi - lo)) ** g * (hi - lo) + lo
        np.testing.assert_allclose(y, -ref if invert else ref, atol=1e-4)


def test_contrast_preserves_channel_range():
    img, _ = _pair((16, 16, 16))
    out = A.contrast(img, SEED, 1.0, (1.5, 2.0)).numpy()
    x = img.numpy()
    assert np.all(out.min(axis=(0, 1, 2)) >= x.min(axis=(0, 1, 2)) - 1e-5)
    assert np.all(out.max(axis=(0, 1, 2)) <= x.max(axis=(0, 1, 2)) + 1e-5)


def test_blur_keeps_constant_interior_and_smooths_noise():
    x = np.random.default_rng(2).normal(size=(24, 24, 24, 2)).astype(np.float32)
    y = A.gaussian_blur(tf.constant(x), SEED, 1.0, (1.0, 1.0), channel_prob=1.0).numpy()
    assert y[4:-4, 4:-4, 4:-4].std() < 0.5 * x.std()
    ones = A.gaussian_blur(tf.ones((16, 16, 16, 1)), SEED, 1.0, channel_prob=1.0).numpy()
    np.testing.assert_allclose(ones[4:-4, 4:-4, 4:-4], 1.0, atol=1e-5)


# ------------------------------------------------------------------------------ identity / config


@pytest.mark.parametrize("spatial_dims", [3, 2])
def test_probability_zero_is_exact_identity(spatial_dims):
    shape = (24, 24, 16) if spatial_dims == 3 else (24, 24)
    img, lab = _pair(shape)
    out_img, out_lab = augment_fn(AugmentConfig.none(), spatial_dims)(img, lab, SEED)
    np.testing.assert_array_equal(out_img.numpy(), img.numpy())
    np.testing.assert_array_equal(out_lab.numpy(), lab.numpy())


def test_light_config_only_flips_and_intensity():
    img, lab = _pair((24, 24, 16))
    cfg = AugmentConfig.light()
    assert cfg.rotation_prob == cfg.scaling_prob == cfg.elastic_prob == cfg.blur_prob == 0.0
    fn = augment_fn(cfg)
    flips = [np.flip(lab.numpy(), axes) for axes in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]]
    for k in range(4):
        _, out_lab = fn(img, lab, tf.constant([k, 2]))
        assert any(np.array_equal(out_lab.numpy(), f) for f in flips)


def test_config_roundtrip_json_and_defaults():
    cfg = AugmentConfig()
    assert cfg.flip_prob == 0.5 and cfg.rotation_prob == 0.2 and cfg.scaling_range == (0.7, 1.4)
    assert cfg.gamma_prob == 0.3 and cfg.gamma_inverted_prob == 0.1 and cfg.low_res_prob == 0.25
    back = AugmentConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert AugmentConfig.from_dict({"flip_prob": 0.2}).flip_prob == 0.2


@pytest.mark.parametrize(
    "field,value",
    [
        ("flip_prob", 1.5),
        ("rotation_prob", -0.1),
        ("scaling_range", (1.4, 0.7)),
        ("scaling_range", (0.0, 1.0)),
        ("flip_axes", (0, 3)),
        ("elastic_grid_spacing", 1),
        ("low_res_zoom_range", (0.5, 1.5)),
        ("gamma_range", (0.0, 1.5)),
        ("noise_std_range", (0.1,)),
        ("rotation_max_deg", 200.0),
        ("intensity_shift_std", -1.0),
    ],
)
def test_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value}).validate()
    with pytest.raises(ValueError, match=field):
        augment_fn(AugmentConfig(**{field: value}))


def test_from_dict_rejects_unknown_key_and_bad_spatial_dims():
    with pytest.raises(ValueError, match="flip_probability"):
        AugmentConfig.from_dict({"flip_probability": 0.5})
    with pytest.raises(ValueError, match="spatial_dims"):
        augment_fn(AugmentConfig(), spatial_dims=4)
    img, lab = _pair((24, 24, 16))
    with pytest.raises(ValueError, match="spatial_dims"):
        augment_fn(AugmentConfig(), spatial_dims=2)(img, lab, SEED)
