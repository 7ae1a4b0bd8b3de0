"""Loading a ZNet PyTorch state dict: key mapping, shapes and the (C, Z, Y, X) → (X, Y, Z, C) axes,
checked against NumPy re-implementations of PyTorch's Conv3d and ConvTranspose3d."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy import ndimage

from brainseg_tf.models import build_znet, load_znet_torch_state_dict

BASE, DEPTH = 2, 1


def _torch_state_dict(rng) -> dict[str, np.ndarray]:
    """Random arrays shaped like ``znet3d(in_channels=1, n_classes=1, n_channels=2)`` with depth 1."""
    sd: dict[str, np.ndarray] = {}

    def conv_bn(prefix, index, cin, cout):
        sd[f"{prefix}.{index}.weight"] = rng.normal(size=(cout, cin, 3, 3, 3)).astype("float32")
        sd[f"{prefix}.{index}.bias"] = rng.normal(size=cout).astype("float32")
        bn = f"{prefix}.{index + 1}"
        sd[f"{bn}.weight"] = rng.uniform(0.5, 1.5, cout).astype("float32")
        sd[f"{bn}.bias"] = rng.normal(size=cout).astype("float32")
        sd[f"{bn}.running_mean"] = rng.normal(size=cout).astype("float32")
        sd[f"{bn}.running_var"] = rng.uniform(0.5, 1.5, cout).astype("float32")
        sd[f"{bn}.num_batches_tracked"] = np.array(7)

    f = BASE
    conv_bn("conv.double_conv", 0, 1, f)
    conv_bn("conv.double_conv", 3, f, f)
    conv_bn("oneConv0.single_conv", 0, 1 + f, f)
    conv_bn("enc1.encoder.1.double_conv", 0, f, 2 * f)
    conv_bn("enc1.encoder.1.double_conv", 3, 2 * f, 2 * f)
    conv_bn("oneConv1.single_conv", 0, 3 * f, 2 * f)
    sd["dec1.up.weight"] = rng.normal(size=(2 * f, 2 * f, 2, 2, 2)).astype("float32")
    sd["dec1.up.bias"] = rng.normal(size=2 * f).astype("float32")
    conv_bn("dec1.conv.double_conv", 0, 2 * f, f)
    conv_bn("dec1.conv.double_conv", 3, f, f)
    conv_bn("oneConvDEC1.single_conv", 0, 3 * f, f)
    sd["out.conv.weight"] = rng.normal(size=(1, f, 1, 1, 1)).astype("float32")
    sd["out.conv.bias"] = rng.normal(size=1).astype("float32")
    return {f"module.{k}": v for k, v in sd.items()}  # nn.DataParallel prefix


def test_state_dict_axes_match_pytorch_semantics():
    rng = np.random.default_rng(0)
    sd = _torch_state_dict(rng)
    model = load_znet_torch_state_dict(build_znet((4, 6, 8), base_filters=BASE, depth=DEPTH), sd)
    probe = keras.Model(
        model.input,
        [
            model.get_layer("stem_conv1_conv").output,
            model.get_layer("enc1_merge_act").output,
            model.get_layer("dec1_upconv").output,
        ],
    )
    x = rng.normal(size=(1, 4, 6, 8, 1)).astype("float32")  # (X, Y, Z, C), anisotropic on purpose
    stem, merged, up = (np.asarray(t)[0] for t in probe(x, training=False))

    # PyTorch Conv3d on the reversed-axes input (C, Z, Y, X), zero padding 1.
    x_t = x[0].transpose(3, 2, 1, 0)
    w, b = sd["module.conv.double_conv.0.weight"], sd["module.conv.double_conv.0.bias"]
    expected = np.stack(
        [
            sum(ndimage.correlate(x_t[i], w[o, i], mode="constant") for i in range(w.shape[1])) + b[o]
            for o in range(w.shape[0])
        ]
    )
    np.testing.assert_allclose(stem, expected.transpose(3, 2, 1, 0), rtol=1e-4, atol=1e-4)

    # PyTorch ConvTranspose3d(kernel 2, stride 2): out[o, 2z+a, 2y+b, 2x+c] += in[i, z, y, x] w[i, o, a, b, c].
    m_t = merged.transpose(3, 2, 1, 0)
    w_up, b_up = sd["module.dec1.up.weight"], sd["module.dec1.up.bias"]
    c, z, y, xx = m_t.shape
    up_t = np.einsum("izyx,ioabc->ozaybxc", m_t, w_up).reshape(w_up.shape[1], 2 * z, 2 * y, 2 * xx)
    up_t += b_up[:, None, None, None]
    np.testing.assert_allclose(up, up_t.transpose(3, 2, 1, 0), rtol=1e-4, atol=1e-4)

    bn = model.get_layer("stem_merge_norm")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), sd["module.oneConv0.single_conv.1.running_var"])


def test_state_dict_problems_raise():
    rng = np.random.default_rng(1)
    model = build_znet((4, 4, 4), base_filters=BASE, depth=DEPTH)
    sd = _torch_state_dict(rng)
    with pytest.raises(ValueError, match="missing"):
        load_znet_torch_state_dict(model, {k: v for k, v in sd.items() if "out.conv.bias" not in k})
    with pytest.raises(ValueError, match="unexpected"):
        load_znet_torch_state_dict(model, {**sd, "extra.weight": np.zeros(1)})
    with pytest.raises(ValueError, match="shapes"):
        load_znet_torch_state_dict(build_znet((4, 4, 4), base_filters=4, depth=DEPTH), sd)
