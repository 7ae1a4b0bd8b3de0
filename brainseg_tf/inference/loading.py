"""Loading a model for inference: Keras files, run and export folders, SavedModels and ONNX.

Model sources accepted by :func:`load_predictor`: a run directory (``brainseg_model.json`` +
``best.keras``/``final.keras``), a ``.keras`` file (the card in its folder), an export directory
(card + ``model.keras`` + ``saved_model/``), a SavedModel directory (card beside it or one level
up), or an ONNX model (``model.onnx`` with its card; ONNX Runtime, the ``brainseg_tf[onnx]``
extra). A legacy run directory's card is read through :func:`brainseg_tf.card.migrate`.
TensorFlow and Keras are imported only when a Keras or SavedModel backend is loaded.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf.card import CARD_FILE, CardError, ModelCard, find_card
from brainseg_tf.inference.predictor import Predictor, resolve_card, with_activation
from brainseg_tf.runtime import import_optional

RUN_CHECKPOINTS = ("best.keras", "final.keras")
BACKENDS = ("keras", "onnxruntime")
ONNX_FILE = "model.onnx"
# Modules that register custom layers, losses, metrics and schedules for deserialization.
_REGISTRIES = ("brainseg_tf.models", "brainseg_tf.losses", "brainseg_tf.metrics", "brainseg_tf.training.schedules")


def load_keras_model(path: str | Path, *, compile: bool = False, safe_mode: bool = True) -> Any:
    """Load a ``.keras`` file (uncompiled by default, in Keras safe mode) with brainseg_tf's objects.

    Raises:
        ValueError: the file is not a complete ``.keras`` archive (e.g. truncated by a kill).
    """
    import keras

    try:  # Keras reports a damaged archive as "File not found"; say what is wrong with it
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path}: not a complete .keras file ({exc}); it may have been cut short by a kill") from None
    if "config.json" not in names:
        raise ValueError(f"{path}: not a .keras file (the archive holds no config.json)")
    for module in _REGISTRIES:
        importlib.import_module(module)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        if not _drop_unknown_initializer_args(config, keras):
            return keras.saving.load_model(str(path), compile=compile, safe_mode=safe_mode)
        with tempfile.TemporaryDirectory(prefix="brainseg_load_") as tmp:  # a copy with the config this Keras reads
            copy = Path(tmp) / Path(path).name
            with zipfile.ZipFile(copy, "w") as out:
                for item in archive.infolist():
                    data = json.dumps(config).encode() if item.filename == "config.json" else archive.read(item)
                    out.writestr(item, data)
            return keras.saving.load_model(str(copy), compile=compile, safe_mode=safe_mode)


def _drop_unknown_initializer_args(config: Any, keras: Any) -> bool:
    """Remove, in place, initializer arguments the installed Keras does not take; whether any were.

    Keras 3.15 writes ``input_axes``/``output_axes`` for variance-scaling initializers, which 3.13
    (Colab's) refuses. Initializers only shape new weights: a loaded model's come from the file.
    """
    changed = False
    if isinstance(config, dict):
        cls = getattr(keras.initializers, str(config.get("class_name")), None)
        if (
            config.get("module") == "keras.initializers"
            and isinstance(cls, type)
            and isinstance(config.get("config"), dict)
        ):
            try:  # the arguments this Keras writes for the class are the ones it reads back
                known = set(cls().get_config())
            except TypeError:  # no default instance (required arguments): left as it is
                known = set(config["config"])
            for key in [k for k in config["config"] if k not in known]:
                del config["config"][key]
                changed = True
        for value in config.values():
            changed |= _drop_unknown_initializer_args(value, keras)
    elif isinstance(config, list):
        for value in config:
            changed |= _drop_unknown_initializer_args(value, keras)
    return changed


def _from_keras_file(path: Path, card: ModelCard | None, overrides: dict[str, Any]) -> Predictor:
    pred = Predictor.from_keras(load_keras_model(path), card, **overrides)
    pred.source = str(path)
    return pred


def _from_saved_model(folder: Path, card: ModelCard | None, overrides: dict[str, Any]) -> Predictor:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"{folder}: SavedModel has no 'serving_default' signature ({list(loaded.signatures)})")
    sig = loaded.signatures["serving_default"]
    inputs = sig.structured_input_signature[1]
    if len(inputs) != 1:
        raise ValueError(f"{folder}: serving signature takes {sorted(inputs)}; expected one image input")
    in_name, in_spec = next(iter(inputs.items()))
    outputs = sig.structured_outputs
    out_key = "probabilities" if "probabilities" in outputs else next(iter(outputs))
    facts: dict[str, Any] = {"spatial_dims": len(in_spec.shape) - 2}
    channels = outputs[out_key].shape[-1] if outputs[out_key].shape.rank else None
    if isinstance(channels, int):
        facts["out_channels"] = channels
    card = resolve_card(card, overrides, facts)

    def call(batch: np.ndarray) -> np.ndarray:
        return sig(**{in_name: tf.constant(batch, dtype=tf.float32)})[out_key].numpy()

    return Predictor(with_activation(call, card), card, model=loaded, source=str(folder))


def onnx_session(model: str | Path | bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU execution provider.

    Args:
        model: a ``.onnx`` file or the serialized model.
        threads: intra-op threads (default: the CPUs this process may run on); one inter-op thread,
            since the U-Nets are one chain of large ops.

    Raises:
        OptionalDependencyError: onnxruntime is not installed.
        ValueError: the file is not a loadable ONNX model.
    """
    ort = import_optional("onnxruntime", "onnx")
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 — onnxruntime raises its own exception classes
        where = "the ONNX model" if isinstance(model, bytes) else str(model)
        raise ValueError(f"{where}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from None


def _from_onnx(path: Path, card: ModelCard | None, overrides: dict[str, Any]) -> Predictor:
    session = onnx_session(path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ValueError(f"{path}: the ONNX model takes {[i.name for i in inputs]}; expected one image input")
    in_name = inputs[0].name
    names = [o.name for o in outputs]
    out_name = "probabilities" if "probabilities" in names else names[0]
    facts: dict[str, Any] = {"spatial_dims": len(inputs[0].shape) - 2}
    out_shape = next(o.shape for o in outputs if o.name == out_name)
    channels = out_shape[-1] if out_shape else None
    if isinstance(channels, int):
        facts["out_channels"] = channels
    card = resolve_card(card, overrides, facts)

    def call(batch: np.ndarray) -> np.ndarray:
        return session.run([out_name], {in_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return Predictor(with_activation(call, card), card, model=session, source=str(path))


def _onnx_file(path: Path, backend: str | None) -> Path | None:
    """The ONNX file ``backend`` runs for ``path``, or ``None`` for the Keras/TensorFlow backend.

    Without a backend: an ``.onnx`` file, or a folder whose only model is ``model.onnx``.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; expected one of {BACKENDS}")
    candidate = path if path.is_file() else path / ONNX_FILE
    is_onnx = candidate.suffix == ".onnx" and candidate.is_file()
    if backend == "onnxruntime":
        if not is_onnx:
            raise FileNotFoundError(
                f"{path}: no ONNX model ({ONNX_FILE}); write one with `brainseg export --format onnx`"
            )
        return candidate
    if path.is_file():
        if is_onnx and backend == "keras":
            raise ValueError(f"{path} is an ONNX model; run it with backend='onnxruntime' (--backend onnxruntime)")
        return candidate if is_onnx else None
    tf_models = RUN_CHECKPOINTS + ("model.keras", "saved_model.pb", "saved_model/saved_model.pb")
    return candidate if backend is None and is_onnx and not any((path / n).is_file() for n in tf_models) else None


def _from_folder(path: Path, overrides: dict[str, Any]) -> Predictor:
    """A run or export directory: the first loadable checkpoint, else its SavedModel."""
    card = find_card(path)
    failures = []
    for name in RUN_CHECKPOINTS + ("model.keras",):
        if (path / name).is_file():
            try:
                pred = _from_keras_file(path / name, card, overrides)
            except CardError:
                raise
            except Exception as exc:  # noqa: BLE001 — a damaged checkpoint: try the next one
                failures.append(f"{path / name}: {type(exc).__name__}: {exc}")
                continue
            if failures:
                warnings.warn(f"{failures[0]}; using {path / name} instead", stacklevel=3)
            return pred
    if failures:
        raise ValueError("no loadable checkpoint: " + "; ".join(failures))
    if (path / "saved_model" / "saved_model.pb").is_file():
        return _from_saved_model(path / "saved_model", card, overrides)
    if card is not None:
        raise FileNotFoundError(
            f"{path}: no model found (looked for {', '.join(RUN_CHECKPOINTS)}, model.keras, saved_model/)"
        )
    raise ValueError(f"{path}: not a run directory, an export directory ({CARD_FILE}) or a SavedModel")


def load_predictor(path: str | Path, *, backend: str | None = None, **overrides: Any) -> Predictor:
    """Load a model for inference from a run directory, a ``.keras`` file, a SavedModel/export dir or ONNX.

    The model card (``brainseg_model.json``; a legacy run's ``config.json`` through
    :func:`brainseg_tf.card.migrate`) is read from the folder of the model (for a SavedModel, its
    folder or the one above). Both backends run the same preprocessing, sliding window and
    postprocessing; only the forward pass differs.

    Args:
        path: ``RUN_DIR`` (card + ``best.keras``/``final.keras``), ``model.keras``, an export
            directory, a SavedModel directory, or (ONNX Runtime) a ``model.onnx`` file or a folder
            holding one with its card (``brainseg export --format onnx``).
        backend: ``"keras"`` (Keras / TensorFlow), ``"onnxruntime"`` (ONNX Runtime on the CPU; the
            ``brainseg_tf[onnx]`` extra), or ``None``: ONNX Runtime for an ``.onnx`` file or a
            folder with only ``model.onnx``, Keras otherwise.
        **overrides: card settings that replace the card's (``modalities``, ``head``, ``region``,
            ``window``, ``logits``, ``et_min_voxels``, ``min_component_voxels``,
            ``region_threshold``, ``max_window_voxels``, ...: any
            :meth:`~brainseg_tf.card.ModelCard.replace` key; ``roi`` is the old name of
            ``window``). A model without a card needs at least ``modalities`` and ``head``.

    Raises:
        FileNotFoundError: the path does not exist, a run dir has no checkpoint, or ONNX Runtime
            was asked for and there is no ``.onnx`` model.
        ValueError: the path is not a model, an unknown ``backend``, or the card does not fit the
            model (:class:`brainseg_tf.card.CardError`, a ``ValueError``, for a missing card).
        OptionalDependencyError: ``backend="onnxruntime"`` without onnxruntime installed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path {path} does not exist")
    onnx_file = _onnx_file(path, backend)
    if onnx_file is not None:
        return _from_onnx(onnx_file, find_card(onnx_file.parent), overrides)
    if path.is_file():
        if path.suffix != ".keras":
            raise ValueError(f"{path}: expected a .keras or .onnx file, a run directory or a SavedModel directory")
        return _from_keras_file(path, find_card(path.parent), overrides)
    if (path / "saved_model.pb").is_file():
        return _from_saved_model(path, find_card(path) or find_card(path.parent), overrides)
    return _from_folder(path, overrides)


__all__ = ["BACKENDS", "ONNX_FILE", "RUN_CHECKPOINTS", "load_keras_model", "load_predictor", "onnx_session"]
