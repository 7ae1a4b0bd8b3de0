"""Registry, faithful parameter counts and argument validation of the model builders."""

from __future__ import annotations

import pytest

from brainseg_tf import models
from brainseg_tf.models import blocks


def _trainable(model) -> int:
    return sum(int(w.numpy().size) for w in model.trainable_weights)


def test_available_lists_every_builder():
    assert models.available() == ["dresunet", "een", "unet", "unet2d", "unet3d", "znet"]
    assert models.build_unet2d is models.REGISTRY["unet2d"]


# Counts from shared/reference/seed-architectures.md (total = trainable + non-trainable in Keras).
@pytest.mark.parametrize(
    ("name", "config", "total", "non_trainable", "output_shape"),
    [
        ("unet2d", {}, 7_759_908, 0, (None, 128, 128, 4)),
        ("unet3d", {}, 16_318_307, 0, (None, 160, 160, 16, 3)),
        ("dresunet", {}, 6_491_044, 3_424, (None, 128, 128, 128, 4)),
        ("dresunet", {"as_published": True}, 47_308_383, 2_056, (None, 128, 128, 128, 4)),
        ("een", {}, 14_422_043, 43_943, (None, 192, 160, 144, 4)),
    ],
)
def test_faithful_parameter_counts(name, config, total, non_trainable, output_shape):
    model = models.build(name, **config)
    assert model.count_params() == total
    assert model.count_params() - _trainable(model) == non_trainable
    assert model.output_shape == output_shape


def test_znet_trainable_count_matches_pytorch():
    # PyTorch counts 25,404,361 parameters; its BatchNorm running statistics (2 per channel over
    # 3,312 channels) are Keras non-trainable weights.
    model = models.build("znet")
    assert _trainable(model) == 25_404_361
    assert model.count_params() == 25_404_361 + 2 * 3_312
    assert model.input_shape == (None, 128, 128, 128, 1)
    assert model.output_shape == (None, 128, 128, 128, 1)
    assert model.layers[-1].get_config()["activation"] == "linear"  # one logit


def test_unet_nnunet_like_defaults():
    model = models.build("unet")
    assert model.input_shape == (None, None, None, None, 4)
    widths = [model.get_layer(f"enc{k}_conv1_conv").filters for k in range(1, 6)]
    assert widths + [model.get_layer("bottom_conv1_conv").filters] == [32, 64, 128, 256, 320, 320]
    assert model.count_params() == 31_196_708
    assert isinstance(model.get_layer("enc1_conv1_act").get_config()["negative_slope"], float)


@pytest.mark.parametrize(
    ("name", "config", "argument"),
    [
        ("unet2d", {"input_shape": (100, 128)}, "input_shape"),  # not divisible by 2**4
        ("unet2d", {"input_shape": (128, 128, 2)}, "input_shape"),  # channels belong in in_channels
        ("unet2d", {"depth": 0}, "depth"),
        ("unet2d", {"dropout": 1.5}, "dropout"),
        ("unet3d", {"input_shape": (160, 160, 12)}, "input_shape"),  # not divisible by 2**3
        ("unet3d", {"head": "tanh"}, "head"),
        ("dresunet", {"norm": "layer"}, "norm"),
        ("dresunet", {"as_published": "yes"}, "as_published"),
        ("znet", {"base_filters": 0}, "base_filters"),
        ("znet", {"head": "softmax"}, "out_channels"),
        ("een", {"input_shape": (192, 160, 108)}, "input_shape"),  # README depth; strides allow 144
        ("een", {"input_shape": (192, 150, 144)}, "input_shape"),  # not divisible by 32
        ("een", {"depth_strides": (3, 4)}, "depth_strides"),
        ("een", {"filters": (12, 32, 64, 64)}, "filters"),  # GroupNorm(8)
        ("een", {"efficientnet_weights": "imagenet"}, "efficientnet_weights"),
        ("unet", {"spatial_dims": 4}, "spatial_dims"),
        ("unet", {"activation": "tanh"}, "activation"),
        ("unet", {"input_shape": (96, 96, 90)}, "input_shape"),
        ("unet", {"deep_supervision": True, "deep_supervision_levels": 5}, "deep_supervision_levels"),
        ("unet", {"out_channels": 0}, "out_channels"),
        ("unet", {"norm": "group", "base_filters": 12}, "norm_groups"),
        ("unet", {"max_filters": 8}, "max_filters"),
    ],
)
def test_invalid_config_names_the_argument(name, config, argument):
    with pytest.raises(ValueError, match=argument):
        models.build(name, **config)


def test_build_rejects_unknown_name_and_argument():
    with pytest.raises(ValueError, match="name"):
        models.build("resnet")
    with pytest.raises(ValueError, match="filterz"):
        models.build("unet2d", filterz=8)


def test_een_depth_error_states_the_allowed_depth():
    with pytest.raises(ValueError, match="must be 144"):
        models.build("een", input_shape=(192, 160, 108))
    model = models.build_een(
        (64, 64, 12), 1, depth_strides=(1, 2, 2), filters=(8, 8, 8, 8), decoder_filters=(8, 8, 8, 8)
    )
    assert model.output_shape == (None, 64, 64, 12, 4)


def test_layer_lookup_by_spatial_dims():
    assert blocks.layer_class("conv", 2).__name__ == "Conv2D"
    assert blocks.layer_class("conv_transpose", 3).__name__ == "Conv3DTranspose"
    with pytest.raises(ValueError, match="spatial_dims"):
        blocks.layer_class("conv", 1)
