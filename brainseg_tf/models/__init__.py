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

import inspect
from collections.abc import Callable
from typing import Any

import keras

from brainseg_tf.models import blocks
from brainseg_tf.models.dresunet import build_dresunet
from brainseg_tf.models.een import build_een
from brainseg_tf.models.unet import build_unet
from brainseg_tf.models.unet2d import build_unet2d
from brainseg_tf.models.unet3d import build_unet3d
from brainseg_tf.models.utils import with_input_shape
from brainseg_tf.models.znet import build_znet, load_znet_torch_state_dict

__all__ = [
    "REGISTRY",
    "available",
    "build",
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

REGISTRY: dict[str, Callable[..., keras.Model]] = {
    "unet2d": build_unet2d,
    "unet3d": build_unet3d,
    "dresunet": build_dresunet,
    "znet": build_znet,
    "een": build_een,
    "unet": build_unet,
}


def available() -> list[str]:
    """Registry names accepted by :func:`build`, sorted."""
    return sorted(REGISTRY)


def build(name: str, **config: Any) -> keras.Model:
    """Build the model registered as ``name`` with keyword ``config`` passed to its builder.

    Args:
        name: one of :func:`available` (``"unet2d"``, ``"unet3d"``, ``"dresunet"``, ``"znet"``,
            ``"een"``, ``"unet"``).
        **config: keyword arguments of the builder; omitted ones take the faithful defaults.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: for an unknown ``name`` or an invalid configuration (the argument is named).
    """
    if name not in REGISTRY:
        raise ValueError(f"name must be one of {available()}, got {name!r}")
    builder = REGISTRY[name]
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise ValueError(f"config has unknown argument(s) {unknown} for {name!r}; accepted: {sorted(accepted)}")
    return builder(**config)
