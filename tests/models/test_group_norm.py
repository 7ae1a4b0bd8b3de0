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


@pytest.mark.parametrize("groups,shape", [(-1, (2, 10, 9, 8, 8)), (4, (2, 10, 9, 8, 8)), (-1, (3, 12, 10, 6)),
                                          (2, (1, 7, 5, 4))])
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
