"""The 3D U-Net of the MSD / Coursera "AI for Medicine" lineage (seed 003).

Reference: the ``unet_model_3d`` helper of the Coursera AI for Medicine course 1 week 3 assignment,
itself adapted from ellisdg/3DUnetCNN (``unet3d/model/unet.py``), as cited by
PopeCollins/3D-MRI-Brain-tumor-segmentation and the wiqaaas/youtube 3D U-Net notebook.
Architecture after Çiçek et al., "3D U-Net", MICCAI 2016 (doubling the filters inside each level).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from brainseg_tf.checks import check_fraction
from brainseg_tf.models import blocks

__all__ = ["build_unet3d"]


def build_unet3d(
    input_shape: Sequence[int | None] | None = (160, 160, 16),
    in_channels: int = 4,
    *,
    spatial_dims: int = 3,
    base_filters: int = 32,
    depth: int = 4,
    norm: str = "none",
    activation: str = "relu",
    dropout: float = 0.0,
    kernel_initializer: str = "glorot_uniform",
    head: str = "sigmoid",
    out_channels: int | None = None,
    logits: bool = False,
    name: str = "unet3d",
) -> keras.Model:
    """Build the Coursera/MSD 3D U-Net (faithful by default: 16,318,307 parameters).

    ``depth`` levels (the last one is the bottom, so there are ``depth - 1`` poolings). Level ``d``
    (``d = 0..depth-1``) has two 3×3×3 convs with ``base_filters * 2**d`` and
    ``base_filters * 2**(d+1)`` filters (32/64, 64/128, 128/256, 256/512). Decoder level ``d``:
    nearest ×2 upsampling (no conv) → concat with level ``d`` → two convs with that level's second
    width (256, 128, 64). Head: 1×1×1 conv to 3 channels, sigmoid (multi-label).

    The reference was trained on MSD Task01 with the channels (edema, non-enhancing, enhancing);
    in brainseg_tf a sigmoid head means the regions (WT, TC, ET), in that order.

    Args:
        input_shape: spatial size ``(X, Y, Z)``; ``None`` entries accept any size divisible by
            ``2**(depth-1)``. Defaults to ``(160, 160, 16)``.
        in_channels: Defaults to 4 — (FLAIR, T1, T1ce, T2).
        spatial_dims: 3 (reference) or 2 (the same topology in 2D, an extension).
        base_filters: Defaults to 32.
        depth: number of levels including the bottom. Defaults to 4.
        norm: ``"none"`` (reference; its batch-norm flag was ignored), ``"batch"``, ``"instance"``,
            ``"group"``.
        activation: Defaults to ``"relu"``.
        dropout: rate of a dropout after the bottom level (0 in the reference).
        kernel_initializer: Defaults to ``"glorot_uniform"`` (Keras' default, as in the reference).
        head: ``"sigmoid"`` (reference; regions WT, TC, ET) or ``"softmax"`` (classes 0..3).
        out_channels: ``None`` gives 3 for sigmoid and 4 for softmax.
        logits: return pre-activation scores. Defaults to ``False``.
        name: model name.

    Returns:
        A functional ``keras.Model``: ``(B, X, Y, Z, in_channels)`` → ``(B, X, Y, Z, out_channels)``
        float32.

    Raises:
        ValueError: for an invalid argument, named in the message.
    """
    blocks.check_common(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        base_filters=base_filters,
        depth=depth,
        norm=norm,
        activation=activation,
        min_depth=2,
    )
    check_fraction("dropout", dropout)
    n_out = blocks.resolve_head(head, out_channels)
    factor = 2 ** (depth - 1)
    shape = blocks.check_spatial_shape(input_shape, spatial_dims, factor, f"2**(depth-1) with depth={depth}")

    conv_kwargs = dict(
        spatial_dims=spatial_dims, norm=norm, activation=activation, kernel_initializer=kernel_initializer
    )
    max_pool = blocks.layer_class("max_pool", spatial_dims)
    upsampling = blocks.layer_class("upsampling", spatial_dims)

    inputs = blocks.make_input(shape, in_channels)
    x = inputs
    skips = []
    for level in range(depth):
        filters = base_filters * 2**level
        x = blocks.conv_norm_act(x, filters, name=f"enc{level + 1}_conv1", **conv_kwargs)
        x = blocks.conv_norm_act(x, filters * 2, name=f"enc{level + 1}_conv2", **conv_kwargs)
        if level < depth - 1:
            skips.append(x)
            x = max_pool(2, name=f"enc{level + 1}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="bottom_dropout")(x)

    for level in range(depth - 2, -1, -1):
        filters = base_filters * 2 ** (level + 1)
        x = upsampling(2, name=f"dec{level + 1}_upsample")(x)
        x = layers.Concatenate(name=f"dec{level + 1}_concat")([x, skips[level]])
        x = blocks.conv_norm_act(x, filters, name=f"dec{level + 1}_conv1", **conv_kwargs)
        x = blocks.conv_norm_act(x, filters, name=f"dec{level + 1}_conv2", **conv_kwargs)

    outputs = blocks.output_head(
        x, n_out, head=head, logits=logits, spatial_dims=spatial_dims, kernel_initializer=kernel_initializer
    )
    return keras.Model(inputs, outputs, name=name)
