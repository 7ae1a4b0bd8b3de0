"""ZNet 3D (seed 000): an encoder-decoder whose stages concatenate their own input and output.

Reference: Ottom, M. A., Rahman, H. A., Dinov, I. D. "Znet: Deep Learning Approach for 2D MRI Brain
Tumor Segmentation", IEEE J. Transl. Eng. Health Med. 10 (2022) 1800508, doi 10.1109/JTEHM.2022.3176737.
3D code: SOCR/DL_ZNet_3D_BrainSeg (``SOCR_3D_ZNET_python_code_V1/znet3d.py``, PyTorch).

The released 3D model takes FLAIR only (1 channel), base width 24, and outputs one logit; the
authors train one model per region (WT, TC, ET). There are no encoder→decoder skips: each stage
merges its input with its output (the "Z" connections). Its concatenation widths are hard-coded,
so the PyTorch class only builds with 1 input channel and width 24; here the widths are computed,
so ``in_channels``, ``base_filters``, ``depth`` and ``out_channels`` other than the defaults are a
documented extension ("generalised ZNet").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import layers

from brainseg_tf.models import blocks

__all__ = ["build_znet", "load_znet_torch_state_dict"]

# PyTorch BatchNorm3d defaults (eps 1e-5, momentum 0.1 ↔ Keras momentum 0.9).
_BN = dict(norm_epsilon=1e-5, norm_momentum=0.9)


def build_znet(
    input_shape: Sequence[int | None] | None = (128, 128, 128),
    in_channels: int = 1,
    *,
    spatial_dims: int = 3,
    base_filters: int = 24,
    depth: int = 4,
    norm: str = "batch",
    activation: str = "relu",
    head: str = "sigmoid",
    out_channels: int | None = 1,
    logits: bool = True,
    name: str = "znet",
) -> keras.Model:
    """Build ZNet 3D (faithful by default: 25,404,361 trainable parameters).

    Blocks: DoubleConv = (3×3×3 conv+bias → BN → ReLU) ×2; SingleConv = one such conv. Stem:
    DoubleConv(``in_channels`` → ``f``), concat [input, stem] → ReLU → SingleConv → ``f``.
    Encoder stage ``k``: max-pool 2 → DoubleConv(→ ``f·2**k``) → concat [pooled input, output]
    → SingleConv(→ ``f·2**k``). Decoder stage: 2×2×2 transposed conv stride 2 (same width) →
    DoubleConv(→ half) → concat [nearest ×2 of the stage input, output] → SingleConv(→ half).
    Head: 1×1×1 conv to one logit.

    The published encoder merge upsamples the stage output back to the input's size, concatenates
    and max-pools; because nearest ×2 followed by a 2× max-pool is the identity, this equals
    concatenating the pooled input with the stage output, which is what is built (same weights,
    same outputs, 8× less work). Concatenation order matches the PyTorch code, so its state dicts
    load with :func:`load_znet_torch_state_dict`.

    Args:
        input_shape: spatial size; ``None`` entries accept any size divisible by ``2**depth``.
            The reference resizes each volume to ``(128, 128, 128)``. Defaults to that.
        in_channels: Defaults to 1 (FLAIR, min-max scaled to [0, 1]). Other values: extension.
        spatial_dims: 3 (reference) or 2 (extension).
        base_filters: Defaults to 24. Other values: extension.
        depth: number of poolings. Defaults to 4.
        norm: Defaults to ``"batch"`` (PyTorch eps 1e-5, momentum 0.1).
        activation: Defaults to ``"relu"``.
        head: ``"sigmoid"`` (reference: one binary region per model) or ``"softmax"``.
        out_channels: Defaults to 1 (one region per model). With ``head="sigmoid"`` and ``None``:
            3 regions (WT, TC, ET) in one model (extension).
        logits: Defaults to ``True``: the reference outputs a logit; apply a sigmoid and a
            threshold (the reference uses 0.3) at inference.
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
    if head == "softmax" and out_channels == 1:
        raise ValueError("out_channels must be >= 2 for a softmax head, got 1")
    n_out = blocks.resolve_head(head, out_channels)
    shape = blocks.check_spatial_shape(input_shape, spatial_dims, 2**depth, f"2**depth with depth={depth}")

    conv_kwargs = dict(spatial_dims=spatial_dims, norm=norm, activation=activation, **_BN)
    max_pool = blocks.layer_class("max_pool", spatial_dims)
    upsampling = blocks.layer_class("upsampling", spatial_dims)
    conv_transpose = blocks.layer_class("conv_transpose", spatial_dims)

    def double_conv(x: Any, filters: int, prefix: str) -> Any:
        x = blocks.conv_norm_act(x, filters, name=f"{prefix}_conv1", **conv_kwargs)
        return blocks.conv_norm_act(x, filters, name=f"{prefix}_conv2", **conv_kwargs)

    inputs = blocks.make_input(shape, in_channels)
    stem = double_conv(inputs, base_filters, "stem")
    x = layers.Concatenate(name="stem_concat")([inputs, stem])
    # The only merge whose ReLU matters: the raw input may be negative. Later merges concatenate
    # post-ReLU tensors, where the published ReLU is the identity.
    x = blocks.activation_layer(activation, "stem_concat_act")(x)
    x = blocks.conv_norm_act(x, base_filters, name="stem_merge", **conv_kwargs)

    for level in range(1, depth + 1):
        filters = base_filters * 2**level
        pooled = max_pool(2, name=f"enc{level}_pool")(x)
        x = double_conv(pooled, filters, f"enc{level}")
        x = layers.Concatenate(name=f"enc{level}_concat")([pooled, x])
        x = blocks.conv_norm_act(x, filters, name=f"enc{level}_merge", **conv_kwargs)

    for level in range(1, depth + 1):
        filters = base_filters * 2 ** (depth - level)
        up = conv_transpose(x.shape[-1], 2, strides=2, padding="same", name=f"dec{level}_upconv")(x)
        up = double_conv(up, filters, f"dec{level}")
        previous = upsampling(2, name=f"dec{level}_upsample")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([previous, up])
        x = blocks.conv_norm_act(x, filters, name=f"dec{level}_merge", **conv_kwargs)

    outputs = blocks.output_head(x, n_out, head=head, logits=logits, spatial_dims=spatial_dims)
    return keras.Model(inputs, outputs, name=name)


def _torch_to_keras_names(depth: int) -> dict[str, str]:
    """Map PyTorch module prefixes of ``znet3d`` to the Keras layer-name prefixes used above."""
    names = {"conv.double_conv": "stem", "oneConv0.single_conv": "stem_merge"}
    for level in range(1, depth + 1):
        names[f"enc{level}.encoder.1.double_conv"] = f"enc{level}"
        names[f"oneConv{level}.single_conv"] = f"enc{level}_merge"
        names[f"dec{level}.conv.double_conv"] = f"dec{level}"
        names[f"oneConvDEC{level}.single_conv"] = f"dec{level}_merge"
    return names


def load_znet_torch_state_dict(model: keras.Model, state_dict: Mapping[str, Any]) -> keras.Model:
    """Load a published ZNet 3D PyTorch state dict (e.g. ``best_model_WT.pth``) into ``model``.

    Torch is not needed here: pass the tensors as NumPy arrays, e.g.
    ``{k: v.numpy() for k, v in torch.load(path, map_location="cpu").items()}``. The
    ``module.`` prefix of ``nn.DataParallel`` checkpoints is stripped.

    Axis convention: the reference feeds ``(C, Z, Y, X)`` (the NIfTI axes reversed), while
    brainseg_tf arrays are ``(X, Y, Z, C)``; kernels are therefore transposed with all spatial axes
    reversed, so the loaded model takes our channels-last ``(X, Y, Z)`` arrays directly and returns
    the same logits (up to float round-off) in ``(X, Y, Z)`` order.

    Args:
        model: a model from :func:`build_znet` with the matching configuration (3D).
        state_dict: parameter name → array.

    Returns:
        ``model``, with its weights replaced.

    Raises:
        ValueError: when a key is missing or unexpected, or a shape does not match.
    """
    params = {k.removeprefix("module."): np.asarray(v) for k, v in state_dict.items()}
    params = {k: v for k, v in params.items() if not k.endswith("num_batches_tracked")}
    depth = sum(1 for layer in model.layers if layer.name.endswith("_upconv"))
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in params:
            raise ValueError(f"state_dict is missing {key!r}")
        used.add(key)
        return params[key]

    def set_weights(layer_name: str, values: list[np.ndarray]) -> None:
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise ValueError(
                f"state_dict shapes {[v.shape for v in values]} do not fit layer {layer_name!r} {expected}"
            )
        layer.set_weights(values)

    def conv_bn(torch_prefix: str, conv_index: int, keras_prefix: str) -> None:
        kernel = take(f"{torch_prefix}.{conv_index}.weight")  # (out, in, z, y, x)
        set_weights(
            f"{keras_prefix}_conv", [kernel.transpose(4, 3, 2, 1, 0), take(f"{torch_prefix}.{conv_index}.bias")]
        )
        bn = f"{torch_prefix}.{conv_index + 1}"
        set_weights(
            f"{keras_prefix}_norm",
            [take(f"{bn}.weight"), take(f"{bn}.bias"), take(f"{bn}.running_mean"), take(f"{bn}.running_var")],
        )

    for torch_prefix, keras_prefix in _torch_to_keras_names(depth).items():
        if torch_prefix.endswith("double_conv"):
            conv_bn(torch_prefix, 0, f"{keras_prefix}_conv1")
            conv_bn(torch_prefix, 3, f"{keras_prefix}_conv2")
        else:
            conv_bn(torch_prefix, 0, keras_prefix)
    for level in range(1, depth + 1):
        kernel = take(f"dec{level}.up.weight")  # (in, out, z, y, x)
        set_weights(f"dec{level}_upconv", [kernel.transpose(4, 3, 2, 1, 0), take(f"dec{level}.up.bias")])
    set_weights("head_conv", [take("out.conv.weight").transpose(4, 3, 2, 1, 0), take("out.conv.bias")])

    unexpected = sorted(set(params) - used)
    if unexpected:
        raise ValueError(f"state_dict has unexpected keys: {unexpected[:5]}")
    return model
