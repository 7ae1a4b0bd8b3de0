"""tf.data pipelines: sampling rates, static shapes, reproducibility, determinism, errors.

What "fraction of patches containing tumour" means here: the share of *foreground-centred
draws* (reported by the sampler / ``with_info``), whose centre voxel carries the chosen tumour
class. Uniform draws can also contain tumour by chance; they are not counted.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import tensorflow as tf
from helpers import write_toy_dataset

from brainseg_tf.data.cache import build_cache, open_cache
from brainseg_tf.data.pipeline import PatchSampler, patch_dataset, slice_dataset, volume_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = write_toy_dataset(tmp_path_factory.mktemp("toyp"), n=3, shape=(48, 44, 36))
    h5 = build_cache(root, tmp_path_factory.mktemp("cache") / "toy.h5", progress=False)
    return root, h5


def take(ds, n):
    it = iter(ds)
    out = [next(it) for _ in range(n)]
    del it
    gc.collect()
    return out


def fully_static(spec) -> bool:
    return all(s.shape.is_fully_defined() for s in tf.nest.flatten(spec))


@pytest.mark.parametrize("fraction", [1 / 3, 0.5, 0.0, 1.0])
def test_sampler_foreground_rate_is_exact(fraction):
    s = PatchSampler(5, (16, 16, 16), fraction, seed=3)
    flags = np.array([s.foreground_requested(i) for i in range(600)])
    assert abs(flags.mean() - fraction) <= 0.05
    # within one draw of n*f over any window
    for start in (0, 17, 101):
        assert abs(flags[start : start + 30].sum() - 30 * fraction) <= 1


def test_sampler_class_share_uniform_among_present_classes():
    s = PatchSampler(1, (16, 16, 16), 1 / 3, seed=0)
    locs = {1: np.array([[5, 5, 5]]), 2: np.array([[9, 9, 9], [10, 10, 10]]), 3: np.array([[20, 20, 20]])}
    box = ((0, 40), (0, 40), (0, 40))
    draws = [s.draw(i, 0, (40, 40, 40), box, locs) for i in range(3000)]
    fg = [d for d in draws if d.fg_class >= 0]
    assert abs(len(fg) / 3000 - 1 / 3) <= 0.01
    et = np.mean([d.fg_class == 3 for d in fg])
    assert abs(et - 1 / 3) <= 0.05  # ET (1 voxel) is drawn as often as ED (2 voxels)
    for d in fg[:50]:
        assert any((np.asarray(d.centre) == p).all() for p in locs[d.fg_class])
    # uniform draws stay inside the brain box when the patch fits
    for d in draws:
        if d.fg_class < 0:
            assert all(a >= 0 and a + 16 <= 40 for a in d.start)
    # a case without tumour falls back to uniform draws
    assert all(s.draw(i, 0, (40, 40, 40), box, {}).fg_class == -1 for i in range(10))


def test_patch_stream_foreground_rate_and_centre_class(toy):
    _, h5 = toy
    ds = patch_dataset(
        h5,
        patch_size=(16, 16, 16),
        global_batch_size=10,
        target="labels",
        augment=None,
        with_info=True,
        case_ids=["BraTS2021_00000", "BraTS2021_00001"],
        seed=5,
    )
    fg, et, total = 0, 0, 0
    for _, lab, info in take(ds, 30):
        lab, cls = lab.numpy(), info["fg_class"].numpy()
        for k in range(len(cls)):
            total += 1
            if cls[k] >= 0:
                fg += 1
                et += cls[k] == 3
                assert lab[k, 8, 8, 8] == cls[k]  # centre voxel carries the chosen class
    assert total == 300
    assert abs(fg / total - 1 / 3) <= 0.05
    assert abs(et / fg - 1 / 3) <= 0.12  # 100 foreground draws; the exact share is tested on the sampler
    del ds
    gc.collect()


def test_static_shapes_targets_and_weights(toy):
    root, h5 = toy
    for src in (h5, root):
        ds = patch_dataset(
            src,
            patch_size=(24, 20, 16),
            global_batch_size=2,
            modalities=("t1ce", "flair"),
            target="regions",
            sample_weights=[0.5, 1, 1, 2],
            augment="light",
            patches_per_case=2,
        )
        assert fully_static(ds.element_spec)
        x, y, w = take(ds, 1)[0]
        assert x.shape == (2, 24, 20, 16, 2) and y.shape == (2, 24, 20, 16, 3) and w.shape == (2, 24, 20, 16)
        lab_bg = y.numpy()[..., 0] == 0
        np.testing.assert_array_equal(w.numpy()[lab_bg], 0.5)
        del ds
    ds = patch_dataset(h5, patch_size=(16, 16, 16), global_batch_size=2, target="classes", augment=None)
    x, y = take(ds, 1)[0]
    np.testing.assert_allclose(y.numpy().sum(-1), 1.0)
    # the volume of a cropped case is smaller than 60 voxels: the patch is zero-padded
    ds = patch_dataset(h5, patch_size=(44, 44, 36), global_batch_size=1, augment=None)
    assert take(ds, 1)[0][0].shape == (1, 44, 44, 36, 4)
    del ds
    gc.collect()


def test_cache_patch_matches_source_arrays(toy):
    _, h5 = toy
    cache = open_cache(h5)
    ds = patch_dataset(
        cache,
        patch_size=(16, 16, 16),
        global_batch_size=1,
        target="labels",
        augment=None,
        with_info=True,
        modalities=("t2", "flair"),
    )
    for img, lab, info in take(ds, 4):
        cid = cache.case_ids[int(info["case"][0])]
        a, b = cache.read_patch(cid, info["start"][0].numpy(), (16, 16, 16), channels=[3, 0])
        np.testing.assert_array_equal(img[0].numpy(), a)
        np.testing.assert_array_equal(lab[0].numpy(), b)


def test_same_seed_same_stream_with_augmentation(toy):
    root, h5 = toy

    def stream(src, seed, augment=True):
        ds = patch_dataset(
            src, patch_size=(16, 16, 16), global_batch_size=2, seed=seed, augment=augment, patches_per_case=2
        )
        out = [(x.numpy(), y.numpy()) for x, y in take(ds, 3)]
        del ds
        return out

    a, b, c = stream(h5, 1), stream(h5, 1), stream(h5, 2)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    n1, n2 = stream(root, 1, None), stream(root, 1, None)
    for (xa, _), (xb, _) in zip(n1, n2):
        np.testing.assert_array_equal(xa, xb)
    gc.collect()


def test_flips_folded_into_the_read_keep_alignment(toy):
    import dataclasses

    from brainseg_tf.data.augment import AugmentConfig

    _, h5 = toy
    flip_all = dataclasses.replace(AugmentConfig.none(), flip_prob=1.0)
    kw = dict(patch_size=(16, 12, 10), global_batch_size=2, target="labels", seed=4)
    ((x0, y0),) = take(patch_dataset(h5, augment=None, **kw), 1)
    ((x1, y1),) = take(patch_dataset(h5, augment=flip_all, **kw), 1)
    np.testing.assert_array_equal(x1.numpy(), x0.numpy()[:, ::-1, ::-1, ::-1])
    np.testing.assert_array_equal(y1.numpy(), y0.numpy()[:, ::-1, ::-1, ::-1])
    gc.collect()


def test_volume_dataset_is_deterministic_and_padded(toy):
    _, h5 = toy
    ds = volume_dataset(h5, divisor=8, target="classes", with_info=True, sample_weights=[1, 1, 1, 1])
    assert fully_static(ds.element_spec)
    e1 = [tuple(t.numpy() if hasattr(t, "numpy") else t for t in (x, y, w)) for x, y, w, _ in ds]
    e2 = [tuple(t.numpy() for t in (x, y, w)) for x, y, w, _ in ds]
    assert len(e1) == 3
    for a, b in zip(e1, e2):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    cache = open_cache(h5)
    for (x, _y, w), (_, _, _, info) in zip(e1, ds):
        shp = tuple(info["shape"][0].numpy())
        assert all(s % 8 == 0 for s in x.shape[1:4])
        cid = info["case_id"][0].numpy().decode()
        np.testing.assert_array_equal(x[0][: shp[0], : shp[1], : shp[2]], cache.image(cid))
        assert w[0].sum() == np.prod(shp)
    with pytest.raises(ValueError, match="shape"):
        volume_dataset(h5, shape=(8, 8, 8))
    del ds
    gc.collect()


def test_slice_dataset_planes_ranges_and_determinism(toy):
    root, h5 = toy
    for plane, hw in (("axial", (48, 44)), ("coronal", (48, 36)), ("sagittal", (44, 36))):
        ds = slice_dataset(
            root, plane=plane, crop=False, size=None, global_batch_size=4, repeat=False, shuffle=False, max_cases=1
        )
        assert ds.element_spec[0].shape == (4,) + hw + (4,)
        del ds
    ds = slice_dataset(
        h5,
        crop=False,
        slices=(5, 25),
        size=(32, 32),
        global_batch_size=5,
        repeat=False,
        shuffle=False,
        modalities=("flair", "t1ce"),
    )
    a = [x.numpy() for x, _ in ds]
    b = [x.numpy() for x, _ in ds]
    assert len(a) == 12 and a[0].shape == (5, 32, 32, 2)  # 3 cases x 20 slices / 5
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    ds = slice_dataset(
        h5,
        slices="tumour",
        size=(32, 32),
        global_batch_size=1,
        repeat=False,
        shuffle=False,
        target="labels",
        case_ids=["BraTS2021_00002"],
    )
    assert sum(1 for _ in ds) == 0  # the tumour-free case has no tumour slices
    ds = slice_dataset(
        h5,
        slices="tumour",
        size=(32, 32),
        global_batch_size=1,
        repeat=False,
        shuffle=False,
        target="labels",
        max_cases=1,
    )
    assert all(lab.numpy().any() for _, lab in ds)
    del ds
    gc.collect()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"patch_size": (300, 16, 16)}, "patch_size"),
        ({"patch_size": (0, 16, 16)}, "patch_size"),
        ({"patch_size": (16, 16)}, "patch_size"),
        ({"modalities": ("flair", "dwi")}, "modalities"),
        ({"case_ids": []}, "case_ids"),
        ({"case_ids": ["nope"]}, "case_ids"),
        ({"target": "onehot"}, "target"),
        ({"global_batch_size": 0}, "global_batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"foreground_fraction": 1.5}, "foreground_fraction"),
        ({"max_cases": 0}, "max_cases"),
        ({"sample_weights": [1, 2]}, "sample_weights"),
    ],
)
def test_bad_configuration_names_the_argument(toy, kwargs, name):
    _, h5 = toy
    with pytest.raises(ValueError, match=name):
        patch_dataset(h5, **{"patch_size": (16, 16, 16), **kwargs})


def test_batch_size_is_a_deprecated_alias_of_global_batch_size(toy):
    _, h5 = toy
    with pytest.warns(DeprecationWarning, match="global_batch_size"):
        ds = patch_dataset(h5, patch_size=(16, 16, 16), batch_size=3, augment=None)
    assert ds.element_spec[0].shape[0] == 3
    with pytest.warns(DeprecationWarning):
        assert volume_dataset(h5, batch_size=3).element_spec[0].shape[0] == 3
    with pytest.warns(DeprecationWarning):
        assert slice_dataset(h5, batch_size=5).element_spec[0].shape[0] == 5
    for both in (4, 2):  # both given is refused, even with the default value
        with pytest.raises(ValueError, match="global_batch_size"):
            patch_dataset(h5, patch_size=(16, 16, 16), global_batch_size=both, batch_size=3)
    assert patch_dataset(h5, patch_size=(16, 16, 16), augment=None).element_spec[0].shape[0] == 2  # the default


def test_region_targets_follow_the_region_conventions():
    from brainseg_tf.conventions import REGION_LABELS, REGIONS
    from brainseg_tf.data.targets import REGION_TABLE

    for label in range(4):
        expected = [float(label in REGION_LABELS[r]) for r in REGIONS]
        assert REGION_TABLE[label].tolist() == expected
    np.testing.assert_array_equal(REGION_TABLE, [[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]])


def test_bad_sources_and_slice_arguments(toy, tmp_path):
    root, h5 = toy
    with pytest.raises(ValueError, match="source"):
        patch_dataset(tmp_path / "nothing_here")
    with pytest.raises(ValueError):  # empty dataset folder (DataError is a ValueError)
        patch_dataset(tmp_path)
    with pytest.raises(ValueError, match="plane"):
        slice_dataset(h5, plane="oblique")
    with pytest.raises(ValueError, match="slices"):
        slice_dataset(h5, slices=(30, 10))
    with pytest.raises(ValueError, match="size"):
        slice_dataset(root, size=None)  # cropped slice shapes are unknown before reading


def test_fit_and_distribute(toy):
    import keras

    _, h5 = toy
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        inp = keras.Input((16, 16, 16, 2))
        out = keras.layers.Conv3D(4, 1, activation="softmax")(inp)
        model = keras.Model(inp, out)
        model.compile("adam", "categorical_crossentropy")
    ds = patch_dataset(h5, patch_size=(16, 16, 16), global_batch_size=4, modalities=("flair", "t1ce"), augment=None)
    val = volume_dataset(h5, modalities=("flair", "t1ce"), divisor=16, max_cases=2)
    hist = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    del ds, val, model
    gc.collect()


@pytest.mark.real_data
def test_real_cases_patches_and_seed_slices(real_brats2018):
    ds = patch_dataset(
        real_brats2018,
        patch_size=(128, 128, 128),
        global_batch_size=2,
        max_cases=1,
        patches_per_case=2,
        target="labels",
        augment=None,
        with_info=True,
        foreground_fraction=1.0,
    )
    x, lab, info = take(ds, 1)[0]
    assert x.shape == (2, 128, 128, 128, 4)
    for k in range(2):
        assert lab[k, 64, 64, 64].numpy() == info["fg_class"][k].numpy() > 0
    del ds
    ds = slice_dataset(
        real_brats2018,
        crop=False,
        slices=(22, 122),
        size=(128, 128),
        modalities=("flair", "t1ce"),
        global_batch_size=20,
        repeat=False,
        shuffle=False,
        max_cases=1,
    )
    batches = [x.shape for x, _ in ds]
    assert batches == [(20, 128, 128, 2)] * 5
    del ds
    gc.collect()


def test_label_targets_static_and_equal_to_one_hot_argmax(toy):
    root, h5 = toy
    for src in (h5, root):
        kw = dict(patch_size=(16, 12, 10), global_batch_size=2, seed=3, augment="light", patches_per_case=2)
        ds = patch_dataset(src, target="labels", **kw)
        assert fully_static(ds.element_spec)
        assert ds.element_spec[1].shape == (2, 16, 12, 10) and ds.element_spec[1].dtype == tf.uint8
        ((x0, y0),) = take(ds, 1)
        ((x1, y1),) = take(patch_dataset(src, target="classes", **kw), 1)
        np.testing.assert_array_equal(x0.numpy(), x1.numpy())
        np.testing.assert_array_equal(y0.numpy(), np.argmax(y1.numpy(), -1))
        assert set(np.unique(y0.numpy())) <= {0, 1, 2, 3}
        del ds
    gc.collect()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_extract_mirrored_voxel_copy_matches_flip(dtype):
    from brainseg_tf.data.sampling import aligned_zeros, extract_patch

    rng = np.random.default_rng(0)
    image = rng.standard_normal((20, 18, 15, 4)).astype(dtype)
    label = rng.integers(0, 4, (20, 18, 15)).astype(np.uint8)
    for flips in [(2,), (0, 2), (0, 1, 2), (1,)]:
        for start in [(0, 0, 0), (-3, 2, -4), (10, 9, 8)]:
            for channels in ([0, 1, 2, 3], [2, 0]):
                a, b = extract_patch(image, label, start, (12, 10, 9), channels, flips)
                r, rl = extract_patch(image, label, start, (12, 10, 9), channels, ())
                assert a.dtype == np.float32 and a.ctypes.data % 64 == 0
                np.testing.assert_array_equal(a, np.flip(r, flips))
                np.testing.assert_array_equal(b, np.flip(rl, flips))
    z = aligned_zeros((3, 5, 7), np.float32)
    assert z.shape == (3, 5, 7) and z.ctypes.data % 64 == 0 and not z.any()


def test_flip_along_z_only_with_channel_subset(toy):
    import dataclasses

    from brainseg_tf.data.augment import AugmentConfig

    _, h5 = toy
    flip_z = dataclasses.replace(AugmentConfig.none(), flip_prob=1.0, flip_axes=(2,))
    for modalities in (("flair", "t1", "t1ce", "t2"), ("t2", "flair")):
        kw = dict(patch_size=(16, 12, 10), global_batch_size=2, target="labels", seed=5, modalities=modalities)
        ((x0, y0),) = take(patch_dataset(h5, augment=None, **kw), 1)
        ((x1, y1),) = take(patch_dataset(h5, augment=flip_z, **kw), 1)
        np.testing.assert_array_equal(x1.numpy(), x0.numpy()[:, :, :, ::-1])
        np.testing.assert_array_equal(y1.numpy(), y0.numpy()[:, :, :, ::-1])
    gc.collect()


def test_channel_map_equals_broadcasting():
    from brainseg_tf.data.augment.core import channel_map

    x = tf.constant(np.random.default_rng(1).standard_normal((16, 8, 6, 4)).astype(np.float32))
    a = tf.constant([[[[1.1, 0.9, 1.2, 0.8]]]])
    b = tf.constant([[[[0.1, -0.2, 0.3, 0.0]]]])

    def fn(v, a_, b_):
        return tf.maximum(tf.minimum(v * a_ + b_, 1.0), -1.0)

    out = channel_map(x, fn, a, b)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out.numpy(), fn(x, a, b).numpy())
