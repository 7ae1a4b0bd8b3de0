"""The 2D U-Net of the Kaggle BraTS 2020 notebook (seed 001).

Reference: Rastislav Kopál, "3D MRI brain tumor segmentation U-Net" (Kaggle notebook, BraTS 2020),
repository rastislavkopal/3D_BRAIN_TUMOR_SEGMENTATION (file 3d-mri-brain-tumor-segmentation-u-net.ipynb,
function ``build_unet``). Architecture after Ronneberger et al., "U-Net", MICCAI 2015.
Despite the repository's name it is a slice (2D) model.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from brainseg_tf.checks import check_fraction
from brainseg_tf.models import blocks

__all__ = ["build_unet2d"]


def build_unet2d(
    input_shape: Sequence[int | None] | None = (128, 128),
    in_channels: int = 2,
    *,
    spatial_dims: int = 2,
    base_filters: int = 32,
    depth: int = 4,
    dropout: float = 0.2,
    norm: str = "none",
    activation: str = "relu",
    kernel_initializer: str = "he_normal",
    head: str = "softmax",
    out_channels: int | None = None,
    logits: bool = False,
    name: str = "unet2d",
) -> keras.Model:
    """Build the Kaggle BraTS 2020 U-Net (faithful by default: 7,759,908 parameters).

    Encoder level ``k`` (``k = 1..depth``): two 3×3 convs with ``base_filters * 2**(k-1)`` filters,
    then 2×2 max-pooling. Bottleneck: two convs with ``base_filters * 2**depth`` filters, then
    ``Dropout(dropout)``. Decoder level: nearest ×2 upsampling → 2×2 conv → concat with the encoder
    level → two 3×3 convs. Head: 1×1 conv, softmax over 4 classes. No normalisation by default.

    Args:
        input_shape: spatial size ``(H, W)`` (channels excluded); ``None`` entries accept any size
            divisible by ``2**depth``. Defaults to ``(128, 128)``.
        in_channels: input channels. Defaults to 2 — (FLAIR, T1ce) in that order.
        spatial_dims: 2 (the reference) or 3 (the same topology with 3D layers, an extension).
        base_filters: filters of the first level. Defaults to 32 (32 → 512).
        depth: number of poolings. Defaults to 4.
        dropout: dropout rate after the bottleneck. Defaults to 0.2.
        norm: ``"none"`` (reference), ``"batch"``, ``"instance"`` or ``"group"`` after each conv.
        activation: conv activation. Defaults to ``"relu"``.
        kernel_initializer: Defaults to ``"he_normal"``.
        head: ``"softmax"`` (classes 0 BG, 1 NCR, 2 ED, 3 ET) or ``"sigmoid"`` (regions WT, TC, ET).
        out_channels: output channels; ``None`` gives 4 for softmax and 3 for sigmoid.
        logits: return pre-activation scores instead of probabilities. Defaults to ``False``.
        name: model name.

    Returns:
        A functional ``keras.Model`` mapping ``(B, H, W, in_channels)`` float32 to
        ``(B, H, W, out_channels)`` float32.

    Raises:
        ValueError: for an invalid argument (named in the message), e.g. a size not divisible by
            ``2**depth``.
    """
    blocks.check_common(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        base_filters=base_filters,
        depth=depth,
        norm=norm,
        activation=activation,
    )
    check_fraction("dropout", dropout)
    n_out = blocks.resolve_head(head, out_channels)
    shape = blocks.check_spatial_shape(input_shape, spatial_dims, 2**depth, f"2**depth with depth={depth}")

    conv_kwargs = dict(
        spatial_dims=spatial_dims, norm=norm, activation=activation, kernel_initializer=kernel_initializer
    )
    max_pool = blocks.layer_class("max_pool", spatial_dims)
    upsampling = blocks.layer_class("upsampling", spatial_dims)

    inputs = blocks.make_input(shape, in_channels)
    x = inputs
    skips = []
    for level in range(1, depth + 1):
        filters = base_filters * 2 ** (level - 1)
        x = blocks.conv_norm_act(x, filters, name=f"enc{level}_conv1", **conv_kwargs)
        x = blocks.conv_norm_act(x, filters, name=f"enc{level}_conv2", **conv_kwargs)
        skips.append(x)
        x = max_pool(2, name=f"enc{level}_pool")(x)

    filters = base_filters * 2**depth
    x = blocks.conv_norm_act(x, filters, name="bottleneck_conv1", **conv_kwargs)
    x = blocks.conv_norm_act(x, filters, name="bottleneck_conv2", **conv_kwargs)
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)

    for level in range(depth, 0, -1):
        filters = base_filters * 2 ** (level - 1)
        x = upsampling(2, name=f"dec{level}_upsample")(x)
        x = blocks.conv_norm_act(x, filters, kernel_size=2, name=f"dec{level}_upconv", **conv_kwargs)
        x = layers.Concatenate(name=f"dec{level}_concat")([skips[level - 1], x])
        x = blocks.conv_norm_act(x, filters, name=f"dec{level}_conv1", **conv_kwargs)
        x = blocks.conv_norm_act(x, filters, name=f"dec{level}_conv2", **conv_kwargs)

    outputs = blocks.output_head(
        x, n_out, head=head, logits=logits, spatial_dims=spatial_dims, kernel_initializer=kernel_initializer
    )
    return keras.Model(inputs, outputs, name=name)
