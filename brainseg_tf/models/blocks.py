"""Shared building blocks for the model builders: layer lookup by dimension, blocks, validation.

Every block is a tensor-in/tensor-out function that names its layers from a ``name`` prefix
(``enc2_conv1``, ``enc2_norm1`` …), so summaries and weight files are readable. Layer classes are
looked up by ``spatial_dims`` (2 or 3), never copied per dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from brainseg_tf.checks import check_choice, check_int, is_int
from brainseg_tf.conventions import OUTPUT_ACTIVATIONS

__all__ = [
    "NORMS",
    "ACTIVATIONS",
    "SqueezeAxis",
    "GroupNorm",
    "ExpandAxis",
    "layer_class",
    "check_common",
    "check_spatial_shape",
    "resolve_head",
    "norm_layer",
    "activation_layer",
    "conv_norm_act",
    "residual_block",
    "output_head",
    "make_input",
]

NORMS = ("batch", "instance", "group", "none")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu")

_LAYERS: dict[str, dict[int, type]] = {
    "conv": {2: layers.Conv2D, 3: layers.Conv3D},
    "conv_transpose": {2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose},
    "max_pool": {2: layers.MaxPooling2D, 3: layers.MaxPooling3D},
    "upsampling": {2: layers.UpSampling2D, 3: layers.UpSampling3D},
    "spatial_dropout": {2: layers.SpatialDropout2D, 3: layers.SpatialDropout3D},
}


def layer_class(kind: str, spatial_dims: int) -> type:
    """The Keras layer class of ``kind`` (``conv``, ``conv_transpose``, ``max_pool``,
    ``upsampling``, ``spatial_dropout``) for 2 or 3 spatial dimensions."""
    check_choice("spatial_dims", spatial_dims, (2, 3))
    return _LAYERS[kind][spatial_dims]


# --------------------------------------------------------------------------------------------
# Argument checks the builders share (the single ones live in brainseg_tf.checks).
# --------------------------------------------------------------------------------------------
def check_common(
    *,
    spatial_dims: Any,
    in_channels: Any,
    base_filters: Any,
    depth: Any,
    norm: Any,
    activation: Any,
    min_depth: int = 1,
) -> None:
    """The checks every encoder-decoder builder shares (dimension, channels, width, depth, norm, activation)."""
    check_choice("spatial_dims", spatial_dims, (2, 3))
    check_int("in_channels", in_channels)
    check_int("base_filters", base_filters)
    check_int("depth", depth, min_depth)
    check_choice("norm", norm, NORMS)
    check_choice("activation", activation, ACTIVATIONS)


def check_spatial_shape(
    input_shape: Any, spatial_dims: int, divisors: int | Sequence[int] = 1, why: str = ""
) -> tuple[int | None, ...]:
    """Validate a spatial input shape (channels excluded) and return it as a tuple.

    Args:
        input_shape: spatial sizes, one per spatial axis; ``None`` entries mean "any size".
        spatial_dims: 2 or 3.
        divisors: each known size must be divisible by this (one int, or one per axis).
        why: short reason appended to the divisibility error (e.g. ``"2**depth with depth=4"``).

    Raises:
        ValueError: naming ``input_shape`` when the length, a size or the divisibility is wrong.
    """
    if input_shape is None:
        return (None,) * spatial_dims
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a tuple of {spatial_dims} sizes, got {input_shape!r}") from None
    if len(shape) != spatial_dims:
        raise ValueError(
            f"input_shape must hold {spatial_dims} spatial sizes (channels go in in_channels), got {input_shape!r}"
        )
    divs = (divisors,) * spatial_dims if isinstance(divisors, int) else tuple(divisors)
    for axis, (size, div) in enumerate(zip(shape, divs)):
        if size is None:
            continue
        if not is_int(size) or size < 1:
            raise ValueError(f"input_shape[{axis}] must be a positive int or None, got {size!r}")
        if size % div:
            reason = f" ({why})" if why else ""
            raise ValueError(f"input_shape[{axis}]={size} is not divisible by {div}{reason}; got {input_shape!r}")
    return shape


def resolve_head(head: str, out_channels: int | None) -> int:
    """Validate the output head and return its channel count.

    ``softmax`` defaults to 4 classes (0 BG, 1 NCR, 2 ED, 3 ET); ``sigmoid`` defaults to 3 regions
    in the order (WT, TC, ET).
    """
    check_choice("head", head, OUTPUT_ACTIVATIONS)
    if out_channels is None:
        return 4 if head == "softmax" else 3
    check_int("out_channels", out_channels)
    if head == "softmax" and out_channels < 2:
        raise ValueError(f"out_channels must be >= 2 for a softmax head, got {out_channels!r}")
    return out_channels


# --------------------------------------------------------------------------------------------
# Small registered layers (only where no built-in layer does the job with unknown sizes).
# --------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="brainseg_tf")
class SqueezeAxis(layers.Layer):
    """Drop a size-1 axis: ``(B, H, W, D, 1) -> (B, H, W, D)`` for ``axis=-1``.

    ``keras.layers.Reshape`` needs all but one size to be known; this works with ``None`` sizes.
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, inputs: Any) -> Any:
        return keras.ops.squeeze(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        shape = list(input_shape)
        del shape[self.axis]
        return tuple(shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


@keras.saving.register_keras_serializable(package="brainseg_tf")
class ExpandAxis(layers.Layer):
    """Insert a size-1 axis: ``(B, H, W, D) -> (B, H, W, D, 1)`` for ``axis=-1``."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, inputs: Any) -> Any:
        return keras.ops.expand_dims(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        shape = list(input_shape)
        position = self.axis if self.axis >= 0 else len(shape) + 1 + self.axis
        shape.insert(position, 1)
        return tuple(shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


@keras.saving.register_keras_serializable(package="brainseg_tf")
class GroupNorm(layers.Layer):
    """Group normalisation (``groups=-1``: instance normalisation), channels-last, affine.

    The maths and the weights (``gamma``, ``beta``: one per channel) of
    ``keras.layers.GroupNormalization``, but the mean and the variance are reduced one axis at a
    time, in float32 (also under mixed precision). One float32 reduction over a whole window (a
    96^3 window is ~10^6 voxels) drifts by up to ~1e-3 in TensorFlow on CPU, which a deep network
    amplifies; a reduction over one axis (at most a few hundred terms) stays at float32 rounding.
    The exported ONNX graph then holds the same one-axis reductions.

    Fast path (instance norm, inference, bfloat16, one window, no GPU visible): sliding-window
    inference on CPU calls the layer with batch 1, where per-sample statistics are per-channel
    statistics, so TensorFlow's fused batch-norm kernel normalises the bfloat16 window in one
    op: 3.5x faster than the float32 reductions (10 vs 35 ms for a 144x96x96x16 window) and 40 %
    of a U-Net forward. Its single reduction drifts by up to ~1.5e-3 of the standard deviation,
    below the bfloat16 output's own rounding (2^-8 relative); float32, training, batches of more
    than one and exports (unknown batch size) keep the one-axis reductions.

    Shapes: ``(B, *spatial, C)`` in and out; ``C`` must be divisible by ``groups``.
    """

    def __init__(self, groups: int = -1, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if groups == 0 or groups < -1:
            raise ValueError(f"groups={groups!r}: expected a positive number of groups or -1 (one per channel)")
        self.groups = groups
        self.epsilon = epsilon

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        groups = channels if self.groups == -1 else self.groups
        if channels is None or channels % groups:
            raise ValueError(f"{self.name}: {channels} channels cannot be split into {groups} groups")
        self._group_size = channels // groups
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if self._fused_inference(inputs, training):
            return self._fused_instance_norm(inputs)
        ops = keras.ops
        x = ops.cast(inputs, "float32")
        ndim = len(inputs.shape)
        shape = ops.shape(x)
        channels = inputs.shape[-1]
        grouped_shape = [-1] + [shape[i] for i in range(1, ndim - 1)] + [channels // self._group_size, self._group_size]
        grouped = ops.reshape(x, grouped_shape)  # (B, *spatial, G, C/G)
        # The channels within a group, then the spatial axes innermost first: the fastest order
        # on CPU (docs/benchmarks.md), and exact where one fused reduction drifts.
        axes = [ndim] + list(range(ndim - 2, 0, -1))
        groups = channels // self._group_size
        mean = grouped
        for axis in axes:
            mean = ops.mean(mean, axis=axis, keepdims=True)
        variance = ops.square(grouped - mean)
        for axis in axes:
            variance = ops.mean(variance, axis=axis, keepdims=True)
        # y = (x - mean) / sqrt(var + eps) * gamma + beta as x * scale + shift: two passes over x.
        gamma = ops.reshape(ops.cast(self.gamma, "float32"), (groups, self._group_size))
        beta = ops.reshape(ops.cast(self.beta, "float32"), (groups, self._group_size))
        scale = ops.rsqrt(variance + self.epsilon) * gamma
        out = ops.reshape(grouped * scale + (beta - mean * scale), shape)
        return ops.cast(out, self.compute_dtype)

    def _fused_inference(self, inputs: Any, training: bool | None) -> bool:
        """Whether the fast path applies (see the class docstring); decided when tracing."""
        if (
            training
            or self._group_size != 1
            or self.compute_dtype != "bfloat16"
            or inputs.shape[0] != 1
            or len(inputs.shape) not in (4, 5)
            or keras.backend.backend() != "tensorflow"
        ):
            return False
        import tensorflow as tf

        return not tf.config.list_physical_devices("GPU")

    def _fused_instance_norm(self, inputs: Any) -> Any:
        """``(1, *spatial, C)`` bfloat16 normalised by one fused batch-norm op over the spatial axes."""
        import tensorflow as tf

        shape = tf.shape(inputs)
        empty = tf.constant([], tf.float32)
        flat = tf.reshape(inputs, tf.stack([1, shape[1], -1, shape[-1]]))  # (1, X, Y*Z, C): free
        out = tf.raw_ops.FusedBatchNormV3(
            x=flat,
            scale=tf.cast(self.gamma, tf.float32),
            offset=tf.cast(self.beta, tf.float32),
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,
            is_training=True,
            data_format="NHWC",
        )[0]
        return tf.reshape(out, shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------
def make_input(spatial_shape: Sequence[int | None], in_channels: int, name: str = "image") -> Any:
    """A channels-last ``keras.Input`` of shape ``(*spatial_shape, in_channels)``."""
    return keras.Input(shape=(*spatial_shape, in_channels), name=name)


def norm_layer(
    norm: str, name: str, *, groups: int = 8, epsilon: float = 1e-3, momentum: float = 0.99
) -> layers.Layer | None:
    """A normalisation layer, or ``None`` for ``norm="none"``.

    ``instance`` is :class:`GroupNorm` with ``groups=-1`` (one group per channel, affine), ``group``
    uses ``groups`` groups, ``batch`` is ``BatchNormalization`` with the given momentum/epsilon.
    """
    check_choice("norm", norm, NORMS)
    if norm == "batch":
        return layers.BatchNormalization(epsilon=epsilon, momentum=momentum, name=name)
    if norm == "instance":
        return GroupNorm(groups=-1, epsilon=epsilon, name=name)
    if norm == "group":
        return GroupNorm(groups=groups, epsilon=epsilon, name=name)
    return None


def activation_layer(activation: str, name: str, *, negative_slope: float = 0.01) -> layers.Layer:
    """An activation layer by name; ``leaky_relu`` uses ``negative_slope``."""
    check_choice("activation", activation, ACTIVATIONS)
    if activation == "leaky_relu":
        return layers.LeakyReLU(negative_slope=negative_slope, name=name)
    if activation == "relu":
        return layers.ReLU(name=name)
    return layers.Activation(activation, name=name)


def conv_norm_act(
    x: Any,
    filters: int,
    *,
    name: str,
    spatial_dims: int = 3,
    kernel_size: int | Sequence[int] = 3,
    strides: int | Sequence[int] = 1,
    norm: str = "none",
    activation: str | None = "relu",
    negative_slope: float = 0.01,
    norm_groups: int = 8,
    norm_epsilon: float = 1e-3,
    norm_momentum: float = 0.99,
    use_bias: bool = True,
    kernel_initializer: str = "glorot_uniform",
) -> Any:
    """Convolution (``same`` padding) → optional norm → optional activation.

    Layers are named ``{name}_conv``, ``{name}_norm`` and ``{name}_act``.
    """
    conv = layer_class("conv", spatial_dims)
    x = conv(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=kernel_initializer,
        name=f"{name}_conv",
    )(x)
    normalization = norm_layer(norm, f"{name}_norm", groups=norm_groups, epsilon=norm_epsilon, momentum=norm_momentum)
    if normalization is not None:
        x = normalization(x)
    if activation is not None:
        x = activation_layer(activation, f"{name}_act", negative_slope=negative_slope)(x)
    return x


def residual_block(
    x: Any,
    filters: int,
    *,
    name: str,
    spatial_dims: int = 3,
    kernel_size: int | Sequence[int] = 3,
    strides: int | Sequence[int] = 1,
    norm: str = "batch",
    activation: str = "relu",
    negative_slope: float = 0.01,
    norm_groups: int = 8,
    norm_epsilon: float = 1e-3,
    norm_momentum: float = 0.99,
    preactivation: bool = False,
    dropout: float = 0.0,
    shortcut: str = "auto",
    shortcut_norm: bool = True,
    kernel_initializer: str = "glorot_uniform",
) -> Any:
    """A two-convolution residual block, post- or pre-activation.

    Post-activation (ResNet v1; ``preactivation=False``, used by dResU-Net and :func:`unet`):
    ``conv → norm → act → conv → norm → [dropout]``, plus a shortcut, then ``add → act``.
    Pre-activation (ResNet v2; ``preactivation=True``, used by the EEN):
    ``norm → act → conv → norm → act → conv``, plus a shortcut, then ``add`` (nothing after it).

    Args:
        x: input tensor ``(B, *spatial, C)``.
        filters: output channels.
        name: layer-name prefix (``{name}_conv1``, ``{name}_norm1``, ``{name}_skip_conv`` …).
        strides: stride of the first convolution (and of the projection shortcut).
        shortcut: ``"conv"`` always projects with a 1×1 convolution; ``"auto"`` projects only
            when channels or stride change, else uses the identity.
        shortcut_norm: normalise the projection (post-activation blocks only).
        dropout: rate of a plain ``Dropout`` after the second norm (post-activation only).

    Returns:
        Tensor ``(B, *spatial / strides, filters)``.
    """
    check_choice("shortcut", shortcut, ("conv", "auto"))
    conv = layer_class("conv", spatial_dims)
    norm_kwargs = dict(groups=norm_groups, epsilon=norm_epsilon, momentum=norm_momentum)

    def _conv(tensor: Any, index: int, stride: int | Sequence[int]) -> Any:
        return conv(
            filters,
            kernel_size,
            strides=stride,
            padding="same",
            kernel_initializer=kernel_initializer,
            name=f"{name}_conv{index}",
        )(tensor)

    def _norm_act(tensor: Any, index: int, act: bool = True) -> Any:
        normalization = norm_layer(norm, f"{name}_norm{index}", **norm_kwargs)
        if normalization is not None:
            tensor = normalization(tensor)
        if act:
            tensor = activation_layer(activation, f"{name}_act{index}", negative_slope=negative_slope)(tensor)
        return tensor

    unit_stride = all(s == 1 for s in (strides if isinstance(strides, Sequence) else (strides,)))
    project = shortcut == "conv" or x.shape[-1] != filters or not unit_stride
    skip = x
    if project:
        skip = conv(
            filters,
            1,
            strides=strides,
            padding="same",
            kernel_initializer=kernel_initializer,
            name=f"{name}_skip_conv",
        )(x)
        if shortcut_norm and not preactivation:
            normalization = norm_layer(norm, f"{name}_skip_norm", **norm_kwargs)
            if normalization is not None:
                skip = normalization(skip)

    if preactivation:
        y = _norm_act(x, 1)
        y = _conv(y, 1, strides)
        y = _norm_act(y, 2)
        y = _conv(y, 2, 1)
        return layers.Add(name=f"{name}_add")([y, skip])

    y = _conv(x, 1, strides)
    y = _norm_act(y, 1)
    y = _conv(y, 2, 1)
    y = _norm_act(y, 2, act=False)
    if dropout:
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = layers.Add(name=f"{name}_add")([y, skip])
    return activation_layer(activation, f"{name}_out_act", negative_slope=negative_slope)(y)


def output_head(
    x: Any,
    out_channels: int,
    *,
    head: str,
    logits: bool,
    spatial_dims: int = 3,
    name: str = "head",
    kernel_initializer: str = "glorot_uniform",
) -> Any:
    """1×1 convolution to ``out_channels`` and the final activation, computed in float32.

    The activation layer carries ``dtype="float32"`` so the output is float32 (and numerically
    safe) under a ``mixed_float16``/``mixed_bfloat16`` policy. ``logits=True`` returns the
    pre-activation scores (still float32).
    """
    conv = layer_class("conv", spatial_dims)
    x = conv(out_channels, 1, kernel_initializer=kernel_initializer, name=f"{name}_conv")(x)
    activation = "linear" if logits else head
    return layers.Activation(activation, dtype="float32", name=f"{name}_{'logits' if logits else head}")(x)
