"""Devices and numerics: the distribution strategy, the dtype policy (owned by
:func:`brainseg_tf.runtime.resolve_policy`) and XLA."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from brainseg_tf.checks import check_choice
from brainseg_tf.runtime import resolve_policy, tpu_available
from brainseg_tf.training.config import PRECISIONS, STRATEGIES


def _tf_config() -> dict[str, Any]:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(f"TF_CONFIG is not valid JSON: {raw[:200]!r}") from None


def _cluster_size(tf_config: Mapping[str, Any]) -> int:
    cluster = tf_config.get("cluster", {})
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))


def task_identity() -> tuple[str, int, bool]:
    """``(task_type, task_index, is_chief)`` from ``TF_CONFIG`` (``("chief", 0, True)`` without one).

    The chief is the ``chief`` task, or worker 0 when the cluster has no ``chief``.
    """
    tf_config = _tf_config()
    task = tf_config.get("task", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    has_chief = "chief" in tf_config.get("cluster", {})
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
    return kind, index, is_chief


def select_strategy(name: str = "auto", communication: str = "auto"):
    """Return the ``tf.distribute.Strategy`` for ``runtime.strategy``.

    ``auto``: ``TPUStrategy`` when a TPU is found, ``MultiWorkerMirroredStrategy`` when
    ``TF_CONFIG`` names more than one chief/worker task, ``MirroredStrategy`` over all visible
    GPUs when there are several, else the default strategy (one device).

    Must run before other TensorFlow work in the process for the multi-worker and TPU cases.

    Raises:
        ValueError: an unknown name, or ``tpu`` without a reachable TPU.
    """
    import tensorflow as tf

    check_choice("runtime.strategy", name, STRATEGIES)
    if name == "auto":
        if tpu_available():
            try:
                return select_strategy("tpu")
            except ValueError:
                pass
        if _cluster_size(_tf_config()) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        impl = {
            "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
            "ring": tf.distribute.experimental.CommunicationImplementation.RING,
            "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
        }[communication]
        options = tf.distribute.experimental.CommunicationOptions(implementation=impl)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise ValueError(f"runtime.strategy='tpu' but no TPU could be initialised: {exc}") from None
    return tf.distribute.TPUStrategy(resolver)


def strategy_name(strategy: Any) -> str:
    import tensorflow as tf

    named = (
        ("MultiWorkerMirroredStrategy", tf.distribute.MultiWorkerMirroredStrategy),
        ("MirroredStrategy", tf.distribute.MirroredStrategy),
        ("TPUStrategy", tf.distribute.TPUStrategy),
        ("OneDeviceStrategy", tf.distribute.OneDeviceStrategy),
    )
    for name, cls in named:
        if isinstance(strategy, cls):
            return name
    return "default"


def resolve_mixed_precision(setting: str) -> str:
    """The Keras dtype policy for ``runtime.mixed_precision`` (:func:`brainseg_tf.runtime.resolve_policy`)."""
    check_choice("runtime.mixed_precision", setting, PRECISIONS)
    return resolve_policy(setting)


def resolve_xla(setting: str | bool) -> bool:
    if setting == "auto":
        return False  # XLA slows Conv3D down on CPU (docs/training.md); a GPU recipe opts in.
    return bool(setting)


# ----------------------------------------------------------------------------------------------
# Schedules, optimizers, losses, metrics
# ----------------------------------------------------------------------------------------------
_SCHEDULE_CLASS: type | None = None
