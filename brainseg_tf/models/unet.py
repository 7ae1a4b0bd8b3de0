"""Our recommended U-Net family for segmentation quality (nnU-Net-like defaults).

Design after the nnU-Net "3d_fullres" plain U-Net (Isensee et al., "nnU-Net: a self-configuring
method for deep learning-based biomedical image segmentation", Nature Methods 18, 2021; code
MIC-DKFZ/nnUNet, ``dynamic_network_architectures`` PlainConvUNet / ResidualEncoderUNet):
strided-convolution downsampling, transposed-convolution upsampling, two conv-norm-LeakyReLU per
stage, instance norm, widths doubling from 32 and capped at 320, 5 downsamplings for 128³ patches,
optional residual encoder and deep supervision.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from brainseg_tf.checks import check_bool, check_choice, check_fraction, check_int, check_number
from brainseg_tf.models import blocks

__all__ = ["build_unet"]


def build_unet(
    input_shape: Sequence[int | None] | None = None,
    in_channels: int = 4,
    *,
    spatial_dims: int = 3,
    depth: int = 5,
    base_filters: int = 32,
    max_filters: int = 320,
    residual: bool = False,
    norm: str = "instance",
    norm_groups: int = 8,
    activation: str = "leaky_relu",
    negative_slope: float = 0.01,
    dropout: float = 0.0,
    deep_supervision: bool = False,
    deep_supervision_levels: int = 2,
    head: str = "softmax",
    out_channels: int | None = None,
    logits: bool = False,
    name: str = "unet",
) -> keras.Model:
    """Build our recommended U-Net (2D or 3D).

    Stage ``k`` (``k = 0..depth``) has width ``min(base_filters * 2**k, max_filters)``. Encoder
    stage: two conv-norm-act (the first with stride 2 for ``k > 0``), or one residual block
    (conv-norm-act-conv-norm + shortcut, add, act) after a strided conv-norm-act when
    ``residual=True``. Decoder stage: 2× transposed conv (kernel 2) → concat skip → two
    conv-norm-act. Head: 1×1 conv + softmax/sigmoid computed in float32.

    With the defaults (3D, depth 5, 4 → 4 channels) there are 6 stages of widths
    32, 64, 128, 256, 320, 320 and 128³ patches reach 4³ at the bottom, as nnU-Net plans for BraTS.

    Args:
        input_shape: spatial size; ``None`` (default) accepts any size divisible by ``2**depth``.
        in_channels: Defaults to 4 (flair, t1, t1ce, t2).
        spatial_dims: 2 or 3. Defaults to 3.
        depth: number of downsamplings. Defaults to 5.
        base_filters: width of the first stage. Defaults to 32.
        max_filters: cap on the width. Defaults to 320.
        residual: residual encoder blocks. Defaults to ``False``.
        norm: ``"instance"`` (default), ``"group"``, ``"batch"`` or ``"none"``.
        norm_groups: groups for ``norm="group"``. Defaults to 8.
        activation: Defaults to ``"leaky_relu"`` with ``negative_slope=0.01``.
        negative_slope: LeakyReLU slope. Defaults to 0.01.
        dropout: spatial dropout rate at the bottom stage. Defaults to 0.
        deep_supervision: add lower-resolution heads. The model then returns a list: the
            full-resolution output first, then ``deep_supervision_levels`` outputs at 1/2, 1/4, ….
            Defaults to ``False`` (one output).
        deep_supervision_levels: number of extra heads. Defaults to 2.
        head: ``"softmax"`` (default; classes 0 BG, 1 NCR, 2 ED, 3 ET) or ``"sigmoid"`` (regions
            WT, TC, ET — nnU-Net's region-based BraTS training).
        out_channels: ``None`` gives 4 for softmax, 3 for sigmoid.
        logits: return pre-activation scores. Defaults to ``False``.
        name: model name.

    Returns:
        A functional ``keras.Model``: ``(B, *spatial, in_channels)`` → ``(B, *spatial, out_channels)``
        float32 (or a list of such outputs with deep supervision).

    Raises:
        ValueError: for an invalid argument, named in the message.
    """
    widths, n_out, shape = _check_arguments(
        input_shape,
        in_channels,
        spatial_dims,
        depth,
        base_filters,
        max_filters,
        residual,
        norm,
        norm_groups,
        activation,
        negative_slope,
        dropout,
        deep_supervision,
        deep_supervision_levels,
        head,
        out_channels,
    )
    conv_kwargs = dict(
        spatial_dims=spatial_dims,
        norm=norm,
        norm_groups=norm_groups,
        activation=activation,
        negative_slope=negative_slope,
        kernel_initializer="he_normal",
    )
    inputs = blocks.make_input(shape, in_channels)
    x, skips = _encoder(inputs, widths, residual, conv_kwargs)
    if dropout:
        x = blocks.layer_class("spatial_dropout", spatial_dims)(dropout, name="bottom_dropout")(x)
    head_kwargs = dict(head=head, logits=logits, spatial_dims=spatial_dims, kernel_initializer="he_normal")
    x, aux_outputs = _decoder(
        x, skips, widths, conv_kwargs, head_kwargs, n_out, deep_supervision_levels if deep_supervision else 0
    )
    outputs = blocks.output_head(x, n_out, **head_kwargs)
    if deep_supervision:
        return keras.Model(inputs, [outputs, *reversed(aux_outputs)], name=name)
    return keras.Model(inputs, outputs, name=name)


def _check_arguments(
    input_shape,
    in_channels,
    spatial_dims,
    depth,
    base_filters,
    max_filters,
    residual,
    norm,
    norm_groups,
    activation,
    negative_slope,
    dropout,
    deep_supervision,
    deep_supervision_levels,
    head,
    out_channels,
) -> tuple[list[int], int, tuple[int | None, ...]]:
    """Check :func:`build_unet`'s arguments; the stage widths, output channels and spatial shape."""
    check_choice("spatial_dims", spatial_dims, (2, 3))
    check_int("in_channels", in_channels)
    check_int("depth", depth)
    check_int("base_filters", base_filters)
    check_int("max_filters", max_filters)
    if max_filters < base_filters:
        raise ValueError(f"max_filters must be >= base_filters={base_filters}, got {max_filters!r}")
    check_bool("residual", residual)
    check_choice("norm", norm, blocks.NORMS)
    check_int("norm_groups", norm_groups)
    widths = [min(base_filters * 2**k, max_filters) for k in range(depth + 1)]
    if norm == "group" and any(w % norm_groups for w in widths):
        raise ValueError(f"norm_groups must divide every stage width {widths}, got {norm_groups!r}")
    check_choice("activation", activation, blocks.ACTIVATIONS)
    check_number("negative_slope", negative_slope, 0)
    check_fraction("dropout", dropout)
    check_bool("deep_supervision", deep_supervision)
    if deep_supervision:
        check_int("deep_supervision_levels", deep_supervision_levels)
        if deep_supervision_levels >= depth:
            raise ValueError(f"deep_supervision_levels must be < depth={depth}, got {deep_supervision_levels!r}")
    n_out = blocks.resolve_head(head, out_channels)
    shape = blocks.check_spatial_shape(input_shape, spatial_dims, 2**depth, f"2**depth with depth={depth}")
    return widths, n_out, shape


def _encoder(x, widths: list[int], residual: bool, conv_kwargs: dict) -> tuple:
    """The encoder stages and the bottom; returns the bottom tensor and the skips (shallow first)."""
    depth = len(widths) - 1
    skips = []
    for stage, width in enumerate(widths):
        stride = 1 if stage == 0 else 2
        prefix = "bottom" if stage == depth else f"enc{stage + 1}"
        if residual:
            x = blocks.conv_norm_act(x, width, strides=stride, name=f"{prefix}_down", **conv_kwargs)
            x = blocks.residual_block(x, width, name=prefix, shortcut="auto", **conv_kwargs)
        else:
            x = blocks.conv_norm_act(x, width, strides=stride, name=f"{prefix}_conv1", **conv_kwargs)
            x = blocks.conv_norm_act(x, width, name=f"{prefix}_conv2", **conv_kwargs)
        if stage < depth:
            skips.append(x)
    return x, skips


def _decoder(x, skips: list, widths: list[int], conv_kwargs: dict, head_kwargs: dict, n_out: int, levels: int):
    """The decoder stages; returns the last tensor and the deep-supervision heads (deep first)."""
    conv_transpose = blocks.layer_class("conv_transpose", conv_kwargs["spatial_dims"])
    aux_outputs = []
    for stage in range(len(widths) - 2, -1, -1):
        width = widths[stage]
        x = conv_transpose(width, 2, strides=2, padding="same", name=f"dec{stage + 1}_upconv")(x)
        x = layers.Concatenate(name=f"dec{stage + 1}_concat")([x, skips[stage]])
        x = blocks.conv_norm_act(x, width, name=f"dec{stage + 1}_conv1", **conv_kwargs)
        x = blocks.conv_norm_act(x, width, name=f"dec{stage + 1}_conv2", **conv_kwargs)
        if 0 < stage <= levels:
            aux_outputs.append(blocks.output_head(x, n_out, name=f"ds{stage}_head", **head_kwargs))
    return x, aux_outputs
