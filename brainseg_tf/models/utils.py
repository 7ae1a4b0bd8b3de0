"""Model utilities that work on any built (or reloaded) functional model."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import keras

from brainseg_tf.models import blocks

__all__ = ["with_input_shape"]


def with_input_shape(model: keras.Model, input_shape: Sequence[int | None] | None) -> keras.Model:
    """Rebuild a functional model for another spatial input size, keeping its weights.

    Models built for a fixed patch (e.g. the faithful 128³ defaults, or a model reloaded from a
    ``.keras`` file) check their input shape; every model here is fully convolutional, so the same
    weights run on a larger volume or on any size (``None``) once the input is relaxed.

    Args:
        model: a single-input functional model (from :mod:`brainseg_tf.models` or reloaded).
        input_shape: new spatial sizes (channels excluded), ``None`` entries for any size;
            ``None`` alone makes every spatial size free.

    Returns:
        A new functional model sharing no state with ``model``, with a copy of its weights.

    Raises:
        ValueError: naming ``model`` when it has not exactly one input, or ``input_shape`` when the
            length is wrong or the architecture cannot take that size.
    """
    config = copy.deepcopy(model.get_config())
    input_layers = [layer for layer in config.get("layers", []) if layer["class_name"] == "InputLayer"]
    if len(input_layers) != 1:
        raise ValueError(f"model must be a functional model with one input, got {model.name!r}")
    layer_config = input_layers[0]["config"]
    batch_shape = tuple(layer_config["batch_shape"])
    spatial = blocks.check_spatial_shape(input_shape, len(batch_shape) - 2)
    layer_config["batch_shape"] = (batch_shape[0], *spatial, batch_shape[-1])
    try:
        rebuilt = keras.Model.from_config(config)
    except ValueError as error:
        raise ValueError(f"input_shape={input_shape!r} does not fit model {model.name!r}: {error}") from error
    # Symbolic shapes do not catch every misfit (a concat of 4 and 5 voxels infers one of them), but
    # a segmentation model must return its input's spatial size.
    for output in rebuilt.outputs[:1]:
        if tuple(output.shape[1:-1]) != spatial:
            raise ValueError(
                f"input_shape={input_shape!r} does not fit model {model.name!r}: the output would be "
                f"{tuple(output.shape[1:-1])} (check the size's divisibility by the model's total stride)"
            )
    rebuilt.set_weights(model.get_weights())
    return rebuilt
