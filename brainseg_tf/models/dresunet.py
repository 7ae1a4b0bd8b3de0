"""dResU-Net: deep residual U-Net for brain tumour segmentation (seed 002).

Reference: Raza, R., Ijaz Bajwa, U., Mehmood, Y., Waqas Anwar, M., Hassan Jamal, M. "dResU-Net:
3D deep residual U-Net based brain tumor segmentation from multimodal MRI", Biomedical Signal
Processing and Control 79 (2023) 103861. Code: rehanrazaa/dResU-Net_Deep_Residual_U-Net_Brain_Tumor_Segmentation
(``models/3d__dresu_net_model.py``).

The published code calls its residual-block function with two arguments swapped (filters and
kernel size), so its encoder has 3 channels with 16³…128³ kernels. The default here is the wiring
the paper describes; ``as_published=True`` reproduces the published code.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from brainseg_tf.checks import check_bool, check_fraction
from brainseg_tf.models import blocks

__all__ = ["build_dresunet"]


def build_dresunet(
    input_shape: Sequence[int | None] | None = (128, 128, 128),
    in_channels: int = 4,
    *,
    spatial_dims: int = 3,
    base_filters: int = 16,
    depth: int = 4,
    norm: str = "batch",
    activation: str = "relu",
    block_dropout: float = 0.2,
    dropout: float = 0.1,
    head: str = "softmax",
    out_channels: int | None = None,
    logits: bool = False,
    as_published: bool = False,
    name: str = "dresunet",
) -> keras.Model:
    """Build dResU-Net (faithful to the paper by default: 6,491,044 parameters).

    Encoder level ``k`` (``k = 1..depth``): residual block with ``base_filters * 2**(k-1)`` filters
    (conv-BN-ReLU-conv-BN-Dropout(``block_dropout``) + 1×1 conv-BN shortcut, add, ReLU), then
    max-pool 2 and Dropout(``dropout``). Bottleneck: two conv-BN-ReLU with ``base_filters * 2**depth``.
    Decoder level: 3×3×3 transposed conv stride 2 (linear) → concat with the encoder level →
    two conv-BN-ReLU → Dropout(``dropout``) (not after the last level). Head: 1×1×1 conv, softmax 4.

    Args:
        input_shape: spatial size; ``None`` entries accept any size divisible by ``2**depth``.
            Defaults to ``(128, 128, 128)``.
        in_channels: Defaults to 4. The reference stacks (FLAIR, T1ce, T2, T1) in that order.
        spatial_dims: 3 (reference) or 2 (an extension).
        base_filters: Defaults to 16 (16 → 128, bottleneck 256).
        depth: number of poolings. Defaults to 4.
        norm: Defaults to ``"batch"`` (reference); ``"instance"``, ``"group"``, ``"none"`` allowed.
        activation: Defaults to ``"relu"``.
        block_dropout: dropout inside each residual block. Defaults to 0.2.
        dropout: dropout after each pooling and decoder level. Defaults to 0.1.
        head: ``"softmax"`` (classes 0 BG, 1 NCR, 2 ED, 3 ET) or ``"sigmoid"`` (WT, TC, ET).
        out_channels: ``None`` gives 4 for softmax, 3 for sigmoid.
        logits: return pre-activation scores. Defaults to ``False``.
        as_published: reproduce the published code's swapped arguments: encoder blocks with 3
            filters and kernel size ``base_filters * 2**(k-1)`` (16³ … 128³). 47,308,383
            parameters at the defaults. Only for reproducing published checkpoints.
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
    )
    check_fraction("block_dropout", block_dropout)
    check_fraction("dropout", dropout)
    check_bool("as_published", as_published)
    n_out = blocks.resolve_head(head, out_channels)
    shape = blocks.check_spatial_shape(input_shape, spatial_dims, 2**depth, f"2**depth with depth={depth}")

    norm_kwargs = dict(norm=norm, activation=activation, spatial_dims=spatial_dims)
    max_pool = blocks.layer_class("max_pool", spatial_dims)
    conv_transpose = blocks.layer_class("conv_transpose", spatial_dims)

    inputs = blocks.make_input(shape, in_channels)
    x = inputs
    skips = []
    for level in range(1, depth + 1):
        width = base_filters * 2 ** (level - 1)
        # The published code passes (filters, 3) into a (kernel_size, filters) signature.
        filters, kernel = (3, width) if as_published else (width, 3)
        x = blocks.residual_block(
            x,
            filters,
            kernel_size=kernel,
            dropout=block_dropout,
            shortcut="conv",
            name=f"enc{level}",
            **norm_kwargs,
        )
        skips.append(x)
        x = max_pool(2, name=f"enc{level}_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"enc{level}_pool_dropout")(x)

    width = base_filters * 2**depth
    x = blocks.conv_norm_act(x, width, name="bottleneck_conv1", **norm_kwargs)
    x = blocks.conv_norm_act(x, width, name="bottleneck_conv2", **norm_kwargs)

    for level in range(depth, 0, -1):
        width = base_filters * 2 ** (level - 1)
        x = conv_transpose(width, 3, strides=2, padding="same", name=f"dec{level}_upconv")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level - 1]])
        x = blocks.conv_norm_act(x, width, name=f"dec{level}_conv1", **norm_kwargs)
        x = blocks.conv_norm_act(x, width, name=f"dec{level}_conv2", **norm_kwargs)
        if dropout and level > 1:
            x = layers.Dropout(dropout, name=f"dec{level}_dropout")(x)

    outputs = blocks.output_head(x, n_out, head=head, logits=logits, spatial_dims=spatial_dims)
    return keras.Model(inputs, outputs, name=name)
