"""GroupNorm: Keras GroupNormalization's maths and weights, with exact window statistics."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from brainseg_tf.models.blocks import GroupNorm, norm_layer


def _pair(groups: int, shape: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    ours, ref = GroupNorm(groups=groups, epsilon=1e-3), keras.layers.GroupNormalization(groups=groups, epsilon=1e-3)
    ours.build(shape)
    ref.build(shape)
    weights = [rng.normal(size=shape[-1]).astype(np.float32), rng.normal(size=shape[-1]).astype(np.float32)]
    ours.set_weights(weights)
    ref.set_weights(weights)
    return ours, ref, weights


def _float64_reference(x: np.ndarray, groups: int, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    channels = x.shape[-1]
    g = channels if groups == -1 else groups
    grouped = x.astype(np.float64).reshape(x.shape[:-1] + (g, channels // g))
    axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
    mean = grouped.mean(axis=axes, keepdims=True)
    var = ((grouped - mean) ** 2).mean(axis=axes, keepdims=True)
    return ((grouped - mean) / np.sqrt(var + 1e-3)).reshape(x.shape) * gamma + beta


@pytest.mark.parametrize(
    "groups,shape", [(-1, (2, 10, 9, 8, 8)), (4, (2, 10, 9, 8, 8)), (-1, (3, 12, 10, 6)), (2, (1, 7, 5, 4))]
)
def test_values_and_gradients_equal_keras_group_normalization(groups, shape):
    ours, ref, (gamma, beta) = _pair(groups, shape)
    rng = np.random.default_rng(1)
    x = tf.constant((rng.normal(size=shape) * 2 + 1).astype(np.float32))
    w = tf.constant(rng.normal(size=shape).astype(np.float32))
    exact = _float64_reference(x.numpy(), groups, gamma, beta)
    grads = []
    for layer in (ours, ref):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * w)
        np.testing.assert_allclose(y.numpy(), exact, atol=1e-5, rtol=0)
        grads.append(tape.gradient(loss, [x, *layer.trainable_weights]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, rtol=1e-5)


def test_window_statistics_stay_exact_on_a_96_cube():
    """A near-constant 96^3 window (a background-heavy patch): float32 rounding, not drift."""
    shape = (1, 96, 96, 96, 4)
    ours, _, (gamma, beta) = _pair(-1, shape)
    x = (np.random.default_rng(2).normal(size=shape) * 0.01 + 3).astype(np.float32)
    err = np.abs(np.asarray(ours(x)) - _float64_reference(x, -1, gamma, beta)).max()
    assert err < 1e-4, err


def test_unknown_sizes_mixed_precision_and_reload(tmp_path):
    model = keras.Sequential([keras.Input((None, None, None, 6)), GroupNorm(groups=3, name="norm")])
    x = np.random.default_rng(3).normal(size=(2, 9, 7, 5, 6)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(again.get_layer("norm"), GroupNorm) and again.get_layer("norm").groups == 3
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(model(x)))
    half = GroupNorm(dtype="mixed_bfloat16")
    out = half(x)
    assert out.dtype == "bfloat16" and out.shape == x.shape
    assert isinstance(norm_layer("instance", "n"), GroupNorm) and norm_layer("group", "g", groups=2).groups == 2
    with pytest.raises(ValueError, match="6 channels cannot be split into 4 groups"):
        GroupNorm(groups=4)(x)
    with pytest.raises(ValueError, match="groups=0"):
        GroupNorm(groups=0)


def test_bfloat16_single_window_inference_takes_the_fused_path_within_bfloat16_rounding():
    """Instance norm, bfloat16, batch 1, inference: one fused batch-norm op (CPU sliding-window
    inference); float32, training, batch 2, group norm and an unknown batch keep the reductions."""
    shape = (1, 24, 20, 16, 8)
    rng = np.random.default_rng(4)
    layer = GroupNorm(groups=-1, epsilon=1e-3, dtype="mixed_bfloat16")
    layer.build(shape)
    gamma, beta = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    layer.set_weights([gamma, beta])
    x = tf.cast(tf.constant((rng.normal(size=shape) * 2 + 1).astype(np.float32)), tf.bfloat16)
    assert layer._fused_inference(x, training=False) == (not tf.config.list_physical_devices("GPU"))
    assert not layer._fused_inference(x, training=True)
    assert not layer._fused_inference(tf.concat([x, x], axis=0), training=False)
    assert not layer._fused_inference(keras.KerasTensor((None, *shape[1:]), dtype="bfloat16"), training=False)
    float32 = GroupNorm(groups=-1)
    float32.build(shape)
    assert not float32._fused_inference(tf.cast(x, tf.float32), training=False)
    grouped = GroupNorm(groups=4, dtype="mixed_bfloat16")
    grouped.build(shape)
    assert not grouped._fused_inference(x, training=False)
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the fused path is CPU-only: with a GPU visible both calls below take the reductions")

    # Under mixed precision the layer reads gamma and beta as bfloat16 (Keras autocasting).
    g16, b16 = (tf.cast(tf.cast(v, tf.bfloat16), tf.float32).numpy() for v in (gamma, beta))
    exact = _float64_reference(tf.cast(x, tf.float32).numpy(), -1, g16, b16)
    fused, reductions = (layer(x, training=t) for t in (False, True))
    assert fused.dtype == reductions.dtype == "bfloat16" and fused.shape == shape
    fused, reductions = (tf.cast(y, tf.float32).numpy() for y in (fused, reductions))
    for y in (fused, reductions):  # the output's bfloat16 rounding (8 significant bits) plus the drift
        np.testing.assert_allclose(y, exact, rtol=2.0**-8, atol=3e-3)
    assert 0 < np.abs(fused - reductions).max() < 0.05
    # A 2D window (1, H, W, C) goes the same way.
    flat = tf.reshape(x, (1, 24, 320, 8))
    np.testing.assert_array_equal(
        layer._fused_instance_norm(flat).numpy().reshape(shape), layer._fused_instance_norm(x).numpy()
    )
