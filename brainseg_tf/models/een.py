"""Efficient Embedding Network (seed 004): a 3D encoder squeezes depth into a 3-slice "RGB" image
that an EfficientNetB0 2D encoder-decoder segments; a small 3D decoder restores depth.

Reference: Messaoudi, H., Belaid, A., Allaoui, M. L., Zetout, A., Allili, M. S., Tliba, S.,
Ben Salem, D., Conze, P.-H. "Efficient embedding network for 3D brain tumor segmentation",
BrainLes 2020, LNCS 12658, pp. 252–262, doi 10.1007/978-3-030-72084-1_23, arXiv 2011.11052.
Code: Lichtvir/Efficient-embedding-network-for-3D-brain-tumor-segmentation (``model.py``).

The published ``model.py`` does not run (an indentation error, undefined loss/metric, and
tensorflow_addons GroupNorm); this builder runs, uses group normalisation (``blocks.GroupNorm``) and never
downloads weights. Depth rule: the 3D encoder divides depth by ``prod(depth_strides)`` and must
leave exactly 3 slices (EfficientNet's RGB input), so depth = ``3 * prod(depth_strides)``; the
published strides (3, 4, 4) allow only depth 144 (the README's 108 cannot work).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import keras
from keras import layers

from brainseg_tf.checks import check_choice, check_fraction, check_int, check_int_sequence
from brainseg_tf.models import blocks

__all__ = ["build_een", "EFFICIENTNET_SKIPS"]

#: EfficientNetB0 layers used as 2D skips (strides 2, 4, 8, 16) and bottom (stride 32).
EFFICIENTNET_SKIPS = (
    "block2a_expand_activation",
    "block3a_expand_activation",
    "block4a_expand_activation",
    "block6a_expand_activation",
    "top_activation",
)
_EMBED_SLICES = 3  # EfficientNet expects 3 input channels


def build_een(
    input_shape: Sequence[int | None] | None = (192, 160, 144),
    in_channels: int = 4,
    *,
    filters: Sequence[int] = (16, 32, 64, 64),
    depth_strides: Sequence[int] = (3, 4, 4),
    decoder_filters: Sequence[int] = (512, 256, 128, 64),
    norm: str = "group",
    norm_groups: int = 8,
    activation: str = "relu",
    stem_dropout: float = 0.2,
    decoder_dropout: float = 0.5,
    efficientnet_weights: str | os.PathLike | None = None,
    trainable_encoder: bool = True,
    head: str = "softmax",
    out_channels: int | None = None,
    logits: bool = False,
    name: str = "een",
) -> keras.Model:
    """Build the Efficient Embedding Network (faithful by default: 14,422,043 parameters).

    3D encoder: 3×3×3 conv ``filters[0]`` → SpatialDropout3D(``stem_dropout``) → residual block;
    then for each depth stride ``s``: 3×3×3 conv stride ``(1, 1, s)`` → residual block (pre-activation,
    GroupNorm(8) → ReLU → conv, twice, plus a 1×1×1 conv shortcut). Embedding: 1×1×1 conv to 1
    channel, ReLU, the 3 remaining slices become the channels of a 2D image. 2D: EfficientNetB0
    (its own ÷255 rescaling and normalisation layers included, as in the reference); four
    up-steps (3×3 transposed conv stride 2 → BN → SpatialDropout2D(``decoder_dropout``) → ReLU →
    concat skip), then a 3-channel transposed conv back to full size. 3D decoder: for each stride in
    reverse: 1×1×1 conv → upsample depth → add the encoder level → residual block; then a 3×3×3
    conv and the head (1×1×1 conv, softmax over 4 classes).

    Args:
        input_shape: ``(H, W, D)``; ``H`` and ``W`` divisible by 32 (``None`` allowed), ``D`` equal
            to ``3 * prod(depth_strides)``. Defaults to ``(192, 160, 144)``.
        in_channels: Defaults to 4 (flair, t1, t1ce, t2; the reference states no order).
        filters: widths of the four 3D encoder levels. Defaults to ``(16, 32, 64, 64)``; the 3D
            decoder uses ``filters[2::-1]``.
        depth_strides: depth strides of the three 3D down-steps. Defaults to ``(3, 4, 4)``
            (other values: extension).
        decoder_filters: widths of the four 2D up-steps. Defaults to ``(512, 256, 128, 64)``.
        norm: norm of the 3D residual blocks. Defaults to ``"group"`` with ``norm_groups=8``.
        norm_groups: Defaults to 8; every entry of ``filters`` must be divisible by it.
        activation: Defaults to ``"relu"``.
        stem_dropout: Defaults to 0.2.
        decoder_dropout: SpatialDropout2D rate in the 2D up-steps. Defaults to 0.5.
        efficientnet_weights: path to a local EfficientNetB0 no-top weights file (e.g.
            ``efficientnetb0_notop.h5``), or ``None`` (default) for random initialisation. Nothing
            is ever downloaded; the reference used ImageNet weights.
        trainable_encoder: train the EfficientNet encoder. Defaults to ``True``.
        head: ``"softmax"`` (classes 0 BG, 1 NCR, 2 ED, 3 ET) or ``"sigmoid"`` (WT, TC, ET).
        out_channels: ``None`` gives 4 for softmax, 3 for sigmoid.
        logits: return pre-activation scores. Defaults to ``False``.
        name: model name.

    Returns:
        A functional ``keras.Model``: ``(B, H, W, D, in_channels)`` → ``(B, H, W, D, out_channels)``
        float32.

    Raises:
        ValueError: for an invalid argument, named in the message — in particular a depth that the
            strides do not allow.
    """
    check_int("in_channels", in_channels)
    filters = check_int_sequence("filters", filters, 4)
    depth_strides = check_int_sequence("depth_strides", depth_strides, 3)
    decoder_filters = check_int_sequence("decoder_filters", decoder_filters, 4)
    check_choice("norm", norm, blocks.NORMS)
    check_int("norm_groups", norm_groups)
    if norm == "group" and any(f % norm_groups for f in filters):
        raise ValueError(f"filters must all be divisible by norm_groups={norm_groups}, got {filters!r}")
    check_choice("activation", activation, blocks.ACTIVATIONS)
    check_fraction("stem_dropout", stem_dropout)
    check_fraction("decoder_dropout", decoder_dropout)
    n_out = blocks.resolve_head(head, out_channels)
    shape = blocks.check_spatial_shape(input_shape, 3, (32, 32, 1), "EfficientNetB0 downsamples H and W by 32")
    depth = _EMBED_SLICES * math.prod(depth_strides)
    if shape[2] != depth:
        raise ValueError(
            f"input_shape[2] (depth) must be {depth} = 3 * prod(depth_strides={depth_strides}): the 3D "
            f"encoder must leave exactly 3 slices for EfficientNet's RGB input; got {input_shape!r}"
        )
    if efficientnet_weights is not None and not os.path.isfile(efficientnet_weights):
        raise ValueError(
            "efficientnet_weights must be None or the path of a local EfficientNetB0 no-top weights "
            f"file (nothing is downloaded), got {efficientnet_weights!r}"
        )

    res_kwargs = dict(
        spatial_dims=3,
        norm=norm,
        norm_groups=norm_groups,
        activation=activation,
        preactivation=True,
        shortcut="conv",
    )
    inputs = blocks.make_input(shape, in_channels)

    # 3D encoder: squeeze depth, keep H and W.
    x = layers.Conv3D(filters[0], 3, padding="same", name="stem_conv")(inputs)
    if stem_dropout:
        x = layers.SpatialDropout3D(stem_dropout, name="stem_dropout")(x)
    skips = [blocks.residual_block(x, filters[0], name="enc1", **res_kwargs)]
    x = skips[0]
    for level, (stride, width_3d) in enumerate(zip(depth_strides, filters[1:]), start=2):
        x = layers.Conv3D(width_3d, 3, strides=(1, 1, stride), padding="same", name=f"down{level - 1}_conv")(x)
        x = blocks.residual_block(x, width_3d, name=f"enc{level}", **res_kwargs)
        skips.append(x)
    x = layers.Conv3D(1, 1, activation="relu", name="embed_conv")(x)
    x = blocks.SqueezeAxis(-1, name="embed_to_2d")(x)  # (B, H, W, 3)

    # 2D encoder: EfficientNetB0 as one nested sub-model returning the skips and the bottom.
    effnet = keras.applications.EfficientNetB0(
        include_top=False,
        weights=None if efficientnet_weights is None else os.fspath(efficientnet_weights),
        # Free H and W inside, so the outer model alone fixes the size (see with_input_shape).
        input_shape=(None, None, _EMBED_SLICES),
    )
    encoder_2d = keras.Model(
        effnet.input,
        [effnet.get_layer(layer).output for layer in EFFICIENTNET_SKIPS],
        name="efficientnetb0_encoder",
    )
    encoder_2d.trainable = trainable_encoder
    *skips_2d, x = encoder_2d(x)

    # 2D decoder.
    for step, (width_2d, skip) in enumerate(zip(decoder_filters, reversed(skips_2d)), start=1):
        x = layers.Conv2DTranspose(width_2d, 3, strides=2, padding="same", use_bias=False, name=f"up{step}_conv")(x)
        x = layers.BatchNormalization(name=f"up{step}_norm")(x)
        if decoder_dropout:
            x = layers.SpatialDropout2D(decoder_dropout, name=f"up{step}_dropout")(x)
        x = layers.ReLU(name=f"up{step}_act")(x)
        x = layers.Concatenate(name=f"up{step}_concat")([x, skip])
    x = layers.Conv2DTranspose(_EMBED_SLICES, 3, strides=2, padding="same", name="up_out_conv")(x)
    x = blocks.ExpandAxis(-1, name="embed_to_3d")(x)  # (B, H, W, 3, 1)

    # 3D decoder: restore depth, adding the encoder levels.
    for level, stride in zip((3, 2, 1), reversed(depth_strides)):
        width_3d = filters[level - 1]
        x = layers.Conv3D(width_3d, 1, name=f"dec{level}_in_conv")(x)
        x = layers.UpSampling3D((1, 1, stride), name=f"dec{level}_upsample")(x)
        x = layers.Add(name=f"dec{level}_skip_add")([x, skips[level - 1]])
        x = blocks.residual_block(x, width_3d, name=f"dec{level}", **res_kwargs)
    x = layers.Conv3D(filters[0], 3, padding="same", name="dec_out_conv")(x)

    outputs = blocks.output_head(x, n_out, head=head, logits=logits, spatial_dims=3)
    return keras.Model(inputs, outputs, name=name)
