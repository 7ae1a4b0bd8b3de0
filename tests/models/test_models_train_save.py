"""Every builder trains one step, round-trips through ``.keras`` and accepts inputs larger than it
was built for (all are fully convolutional). Small sizes keep this CPU-friendly."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from brainseg_tf import models

# name, config (small), built spatial size, a larger spatial size for fully convolutional models.
SMALL = {
    "unet2d": ({"base_filters": 4, "depth": 2, "in_channels": 2}, (32, 32), (48, 64)),
    "unet2d_3d_sigmoid": (
        {"spatial_dims": 3, "base_filters": 2, "depth": 2, "head": "sigmoid"},
        (16, 16, 16),
        (24, 16, 32),
    ),
    "unet3d": ({"base_filters": 4, "depth": 3}, (16, 16, 16), (32, 24, 16)),
    "dresunet": ({"base_filters": 4, "depth": 2}, (16, 16, 16), (24, 32, 16)),
    "dresunet_published": ({"base_filters": 2, "depth": 2, "as_published": True}, (16, 16, 16), (16, 16, 24)),
    "znet": ({"base_filters": 4, "depth": 2}, (16, 16, 16), (32, 16, 16)),
    "een": (
        {"in_channels": 2, "filters": (8, 8, 8, 8), "depth_strides": (1, 2, 2), "decoder_filters": (8, 8, 8, 8)},
        (32, 32, 12),
        (64, 32, 12),
    ),
    "unet_residual_group": (
        {"base_filters": 8, "depth": 2, "residual": True, "norm": "group"},
        (16, 16, 16),
        (32, 16, 16),
    ),
    "unet_2d_ds_regions": (
        {"spatial_dims": 2, "base_filters": 4, "depth": 3, "deep_supervision": True, "head": "sigmoid", "dropout": 0.1},
        (32, 32),
        (64, 48),
    ),
}


def _build(case: str, spatial):
    config, _, _ = SMALL[case]
    name = case.split("_")[0]
    if case.startswith("unet2d"):
        name = "unet2d"
    return models.build(name, input_shape=spatial, **config)


def _random_batch(model, spatial, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *spatial, model.input_shape[-1])).astype("float32")
    ys = []
    for output in model.outputs:
        factor = spatial[0] // output.shape[1] if output.shape[1] else 1
        out_spatial = tuple(s // factor for s in spatial)
        ys.append(rng.uniform(size=(batch, *out_spatial, output.shape[-1])).astype("float32"))
    return x, ys


@pytest.mark.parametrize("case", sorted(SMALL))
def test_train_step_and_keras_round_trip(case, tmp_path):
    _, spatial, _ = SMALL[case]
    keras.utils.set_random_seed(0)
    model = _build(case, spatial)
    x, ys = _random_batch(model, spatial)
    # One eager step: tracing a graph train function costs 10-20x more than the step itself here.
    model.compile(optimizer="adam", loss=["mse"] * len(ys), jit_compile=False, run_eagerly=True)
    before = [w.numpy().copy() for w in model.trainable_weights[:3]]
    loss = model.train_on_batch(x, ys if len(ys) > 1 else ys[0])
    assert np.all(np.isfinite(loss))
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights[:3]))

    path = tmp_path / f"{case}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # no custom_objects: the package registers its layers
    expected = keras.tree.flatten(model(x, training=False))
    got = keras.tree.flatten(reloaded(x, training=False))
    for e, g in zip(expected, got):
        assert g.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(e), np.asarray(g))

    # Built (and reloaded) for a fixed patch, the same weights run on a larger input.
    _, _, larger = SMALL[case]
    bigger = models.with_input_shape(reloaded, larger)
    x_large = np.zeros((1, *larger, x.shape[-1]), "float32")
    assert tuple(keras.tree.flatten(bigger(x_large, training=False))[0].shape[1:-1]) == larger


@pytest.mark.parametrize("case", sorted(SMALL))
def test_fully_convolutional_accepts_larger_input(case):
    _, spatial, larger = SMALL[case]
    if case == "een":  # H and W are free (multiples of 32); depth is fixed by the strides.
        free = (None, None, spatial[2])
    else:
        free = (None,) * len(spatial)
    model = _build(case, free)
    for size in (spatial, larger):
        x = np.zeros((1, *size, model.input_shape[-1]), "float32")
        outputs = keras.tree.flatten(model(x, training=False))
        assert tuple(outputs[0].shape[1:-1]) == size


def test_last_activation_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.build(
            "unet", input_shape=(16, 16, 16), base_filters=4, depth=2, deep_supervision=True, deep_supervision_levels=1
        )
        assert model.get_layer("enc1_conv1_conv").compute_dtype == "bfloat16"
        outputs = model(np.zeros((1, 16, 16, 16, 4), "float32"))
        assert [o.dtype for o in outputs] == ["float32", "float32"]
        probabilities = np.asarray(outputs[0]).sum(axis=-1)
        np.testing.assert_allclose(probabilities, 1.0, atol=1e-5)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_with_input_shape_validates():
    model = models.build("unet3d", input_shape=(16, 16, 16), base_filters=2, depth=3)
    with pytest.raises(ValueError, match="input_shape"):
        models.with_input_shape(model, (32, 32))
    with pytest.raises(ValueError, match="input_shape"):
        models.with_input_shape(model, (32, 32, 10))  # not divisible by 2**(depth-1)
    relaxed = models.with_input_shape(model, None)
    assert relaxed.input_shape == (None, None, None, None, 4)
