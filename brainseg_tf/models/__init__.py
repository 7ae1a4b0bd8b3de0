"""Keras model builders: the seed architectures (faithful by default) and our recommended U-Net.

Each builder is a plain function returning a functional ``keras.Model``; its default arguments
reproduce the published reference exactly (see ``docs/models.md``). ``build(name, **config)``
looks a builder up by its registry name.

=============  ===========================================  ================  ==================
name           builder                                      default input     parameters
=============  ===========================================  ================  ==================
``unet2d``     :func:`~brainseg_tf.models.unet2d.build_unet2d`      128×128×2         7,759,908
``unet3d``     :func:`~brainseg_tf.models.unet3d.build_unet3d`      160×160×16×4      16,318,307
``dresunet``   :func:`~brainseg_tf.models.dresunet.build_dresunet`  128³×4            6,491,044
``znet``       :func:`~brainseg_tf.models.znet.build_znet`          128³×1            25,404,361 trainable
``een``        :func:`~brainseg_tf.models.een.build_een`            192×160×144×4     14,422,043
``unet``       :func:`~brainseg_tf.models.unet.build_unet`          any, ÷32 (128³)   see docs
=============  ===========================================  ================  ==================

Models check the input size they were built for; :func:`with_input_shape` rebuilds any of them
(or a reloaded one) for a larger or free (``None``) spatial size with the same weights.

Importing this package registers the custom layers, so ``keras.saving.load_model`` reloads every
model without ``custom_objects``.
"""

from __future__ import annotations

import math
from types import MappingProxyType

from brainseg_tf.models import blocks
from brainseg_tf.models.dresunet import build_dresunet
from brainseg_tf.models.een import build_een
from brainseg_tf.models.registry import (
    SPECS,
    ModelSpec,
    available,
    build,
    get_spec,
    register,
)
from brainseg_tf.models.unet import build_unet
from brainseg_tf.models.unet2d import build_unet2d
from brainseg_tf.models.unet3d import build_unet3d
from brainseg_tf.models.utils import with_input_shape
from brainseg_tf.models.znet import build_znet, load_znet_torch_state_dict

__all__ = [
    "REGISTRY",
    "SPECS",
    "ModelSpec",
    "available",
    "build",
    "get_spec",
    "register",
    "blocks",
    "build_dresunet",
    "build_een",
    "build_unet",
    "build_unet2d",
    "build_unet3d",
    "build_znet",
    "load_znet_torch_state_dict",
    "with_input_shape",
]

register(ModelSpec("unet", build_unet, description="recommended U-Net family (2D/3D, residual, deep supervision)"))
register(
    ModelSpec(
        "unet2d", build_unet2d, default_modalities=("flair", "t1ce"), description="seed 001: Kaggle BraTS 2020 2D U-Net"
    )
)
register(
    ModelSpec(
        "unet3d",
        build_unet3d,
        divisor=lambda o: (2 ** (int(o["depth"]) - 1),) * int(o["spatial_dims"]),
        description="Coursera AI for Medicine 3D U-Net",
    )
)
register(
    ModelSpec(
        "dresunet",
        build_dresunet,
        default_modalities=("flair", "t1ce", "t2", "t1"),
        description="dResU-Net (Raza et al. 2023)",
    )
)
register(
    ModelSpec(
        "znet",
        build_znet,
        default_modalities=("flair",),
        description="ZNet 3D (Ottom et al. 2022), one region per model",
    )
)
register(
    ModelSpec(
        "een",
        build_een,
        divisor=lambda o: (32, 32, 3 * math.prod(o["depth_strides"])),
        fixed_size=lambda o: (None, None, 3 * math.prod(o["depth_strides"])),
        spatial_dims=lambda o: 3,
        description="Efficient Embedding Network (Messaoudi et al. 2020)",
    )
)

#: name -> builder (read-only view of the registry).
REGISTRY = MappingProxyType({name: spec.builder for name, spec in SPECS.items()})
