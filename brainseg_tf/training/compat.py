"""Every workaround that touches Keras internals, quarantined here with its version guard.

Nothing else in brainseg_tf imports ``keras.src`` or reads a private Keras attribute. Each
workaround says which Keras versions need it and checks that the internals it relies on exist,
failing with a clear message (instead of an ``AttributeError`` deep in ``fit``) on a Keras that
changed them. Tested on Keras 3.13.2 (the Colab/Kaggle version) and 3.15.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras

__all__ = [
    "KERAS_VERSION",
    "current_learning_rate",
    "global_seed_state",
    "prebuild_for_multi_worker",
    "multi_worker_log_reduction",
]


def _version(text: str) -> tuple[int, int]:
    major, minor = (text.split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


KERAS_VERSION = _version(keras.__version__)
#: Keras versions the workarounds below were written and tested for (inclusive).
TESTED = ((3, 13), (3, 15))


def _require(obj: Any, attr: str, why: str) -> None:
    if not hasattr(obj, attr):
        raise RuntimeError(
            f"Keras {keras.__version__} has no {type(obj).__name__}.{attr}, which brainseg_tf needs to {why} "
            f"(tested on Keras {TESTED[0][0]}.{TESTED[0][1]}-{TESTED[1][0]}.{TESTED[1][1]}); "
            "please report this with your Keras version"
        )


def current_learning_rate(optimizer: Any) -> float:
    """The optimizer's learning rate now, also when it is a schedule.

    All Keras 3 versions: ``optimizer.learning_rate`` is a variable for a constant rate but a
    schedule object otherwise; the schedule's value at the current step is the public
    ``schedule(optimizer.iterations)``. Only an unknown object falls back to the private
    ``_get_current_learning_rate`` (Keras 3.0-3.15).
    """
    lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(keras.ops.convert_to_numpy(lr(optimizer.iterations)))
    try:
        return float(keras.ops.convert_to_numpy(lr))
    except (TypeError, ValueError):
        _require(optimizer, "_get_current_learning_rate", "log the learning rate")
        return float(keras.ops.convert_to_numpy(optimizer._get_current_learning_rate()))


def global_seed_state() -> Any:
    """The state variable of Keras' global seed generator (created if missing), or ``None``.

    Keras 3.0-3.15: unseeded ``keras.random`` ops draw from a global ``SeedGenerator`` that has
    no public accessor (``keras.src.random.seed_generator.global_seed_generator``). The resume
    backup saves and restores its state; on a Keras without it there is nothing to save.
    """
    try:
        from keras.src.random import seed_generator
    except ImportError:
        return None
    getter = getattr(seed_generator, "global_seed_generator", None)
    gen = getter() if getter is not None else None
    return getattr(gen, "state", None)


def prebuild_for_multi_worker(model: Any, train_ds: Any) -> None:
    """Build metrics, losses and optimizer from one local batch, then skip Keras' own pre-build.

    Needed by Keras 3.13-3.15 under ``MultiWorkerMirroredStrategy``: ``fit`` pre-builds by
    ``strategy.reduce("MEAN", (x, y))`` over the first distributed batch, which the strategy
    rejects for a nested structure ("Attempt to convert a value (PerReplica...) to a Tensor").
    Building from an undistributed batch inside the strategy scope creates the same (mirrored)
    variables.
    """
    _require(model, "_symbolic_build", "build a multi-worker model before fit")
    _require(model, "_maybe_symbolic_build", "build a multi-worker model before fit")
    sample = next(iter(train_ds.take(1)))
    model._symbolic_build(data_batch=sample)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


@contextlib.contextmanager
def multi_worker_log_reduction() -> Iterator[None]:
    """Average scalar step logs across workers with ``axis=None`` while ``fit`` runs.

    Needed by Keras 3.13-3.15 under ``MultiWorkerMirroredStrategy``: every per-replica output of
    a train step is reduced with ``strategy.reduce("MEAN", v, axis=0)``, which fails for the
    scalar loss and metric values ("Invalid reduction dimension 0 for input with 0
    dimensions"). Within this context scalars are mean-reduced over all replicas of all workers
    instead; everything else is unchanged. Gradients are not affected: the optimizer all-reduces
    them through the strategy.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    _require(tf_trainer, "reduce_per_replica", "reduce multi-worker step logs")
    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return original(values, strategy, reduction)

        def reduce_one(v):
            local = strategy.experimental_local_results(v)
            rank = tf.nest.flatten(local)[0].shape.rank
            return strategy.reduce("MEAN", v, axis=0 if rank else None)

        return tf.nest.map_structure(reduce_one, values)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original
