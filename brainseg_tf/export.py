"""Export a trained model as a TensorFlow SavedModel and a ``.keras`` file, with metadata.

:func:`export_model` writes one folder::

    OUT/
      saved_model/          TensorFlow SavedModel (no Python or brainseg_tf needed to run it)
      model.keras           native Keras file (reload with brainseg_tf imported)
      brainseg_model.json   the model card (brainseg_tf.card): modalities in channel order, label
                            scheme, head, outputs, window, preprocessing, postprocessing, provenance

Serving signature (``serving_default``, also ``serve``)
-------------------------------------------------------
* input ``image``: float32 ``[batch, X, Y, Z, C]`` (``[batch, H, W, C]`` for a 2D model),
  channels-last in NIfTI voxel order; ``C`` = the card's ``modalities`` in that order (canonical order ``flair, t1, t1ce, t2`` for 4-channel models). The spatial sizes are
  dynamic but must suit the network (divisible by ``2**depth`` for the U-Nets) -- feed the
  sliding window (the card's ``window``). The image must be preprocessed as in training: cropped to the brain box and
  z-scored per modality inside the brain mask (any modality nonzero), background 0.
* output ``probabilities``: float32 ``[batch, X, Y, Z, K]``, channels as the card's ``outputs``
  name them (its label ``scheme``'s): a softmax head gives the scheme's class probabilities
  (``K = 4`` for the glioma schemes: 0 BG, 1 NCR, 2 ED, 3 ET, canonical labels; 5 for GLI 2024
  and PED 2024); a sigmoid head its region probabilities (``K = 3``, WT, TC, ET, for the glioma
  schemes; 6 for GLI 2024 and PED 2024); a region head ``K = 1`` (the card's ``region``). Always
  probabilities, also for a model trained with logits (ZNet).

``saved_model_cli show --all --dir OUT/saved_model`` lists it. A reload with
``tf.saved_model.load`` (or :func:`brainseg_tf.inference.load_predictor` on ``OUT``) reproduces the
Keras outputs (bit-exact on CPU; tested within 1e-5 in a fresh process).

ONNX (``format="onnx"``, the ``brainseg_tf[onnx]`` extra)
-------------------------------------------------------
:func:`export_model` with ``format="onnx"`` writes ``OUT/model.onnx`` and the card beside it. The
graph has the same contract as the SavedModel signature: input ``image`` float32
``[batch, x, y, z, C]`` (``[batch, x, y, C]`` in 2D) with symbolic batch and spatial dimensions,
output ``probabilities`` ``[batch, x, y, z, K]``. It is converted with tf2onnx from a
``tf.function`` with an explicit input signature (opset :data:`ONNX_OPSET`), always at float32
compute (a mixed-precision model is rebuilt with float32 layers first: ONNX Runtime has no
bfloat16 convolutions on the CPU), and checked before it is written: ONNX Runtime and the float32
Keras model must agree within :data:`ONNX_ATOL` on a random input. Run it with
``load_predictor(OUT, backend="onnxruntime")`` or ``brainseg predict --backend onnxruntime``.
See docs/export.md (also for what TFLite can and cannot do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brainseg_tf import atomic
from brainseg_tf.card import CARD_FILE, ModelCard
from brainseg_tf.inference import ONNX_FILE, Predictor, load_keras_model, load_predictor, onnx_session
from brainseg_tf.runtime import import_optional

SIGNATURE_INPUT = "image"
SIGNATURE_OUTPUT = "probabilities"
SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"
FORMATS = ("savedmodel", "onnx")
#: ONNX opset of the exported graph (ONNX Runtime >= 1.12 runs it).
ONNX_OPSET = 17
#: Largest |ONNX Runtime - Keras| probability difference accepted by the export check.
ONNX_ATOL = 1e-4


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` holds an export written by :func:`export_model`: the card with a SavedModel
    and ``.keras`` file, or the card with ``model.onnx``."""
    path = Path(path)
    if not (path / CARD_FILE).is_file():
        return False
    saved = (path / SAVED_MODEL_DIR / "saved_model.pb").is_file() and (path / KERAS_FILE).is_file()
    return saved or (path / ONNX_FILE).is_file()


def probability_model(model: Any, card: ModelCard) -> Any:
    """A single-output Keras model returning probabilities: the full-resolution output of
    ``model`` (deep supervision dropped) with the card's softmax/sigmoid appended for logits."""
    import keras

    out = model.outputs[0]
    if card.logits:
        activation = "softmax" if card.head == "softmax" else "sigmoid"
        out = keras.layers.Activation(activation, dtype="float32", name="probabilities")(out)
    elif len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, out, name=f"{model.name}_probabilities")


def _float32_config(config: Any) -> Any:
    """A serialized Keras object with every mixed-precision dtype policy replaced by float32."""
    if isinstance(config, list):
        return [_float32_config(c) for c in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and str(
        config.get("config", {}).get("name", "")
    ).startswith("mixed_"):
        return "float32"
    return {k: _float32_config(v) for k, v in config.items()}


def float32_model(model: Any) -> Any:
    """``model`` itself if it computes in float32, else a twin rebuilt with float32 layers and the same
    weights (mixed-precision variables are float32 already, so the weights carry over exactly)."""
    import keras

    config = keras.saving.serialize_keras_object(model)
    float32 = _float32_config(config)
    if float32 == config:
        return model
    twin = keras.saving.deserialize_keras_object(float32)
    twin.set_weights(model.get_weights())
    return twin


def _name_dims(proto: Any, spatial_dims: int) -> None:
    """Give the image input and probability output readable symbolic dims (batch, x, y[, z])."""
    names = ["batch", "x", "y", "z"][: spatial_dims + 1]
    for value in (proto.graph.input[0], proto.graph.output[0]):
        for dim, name in zip(value.type.tensor_type.shape.dim, names):
            dim.Clear()
            dim.dim_param = name


#: Conversions tried before an output of the wrong rank is an error. tf2onnx (1.16, 1.17) sometimes
#: returns a graph whose one-channel output keeps an extra axis: its reshape optimizer can turn the
#: Reshape that replaced the last Transpose into a 6-D Reshape followed by a Squeeze, and when that
#: Reshape already is the graph output the Squeeze has no consumer and is dropped. It happens at
#: random (2 of 60 conversions of a 1-region ZNet in one process here); a fresh conversion is right.
CONVERSION_TRIES = 5


def to_onnx(model: Any, spatial_dims: int, channels: int, *, opset: int = ONNX_OPSET) -> bytes:
    """Convert a single-output probability Keras model to a serialized ONNX model.

    The graph takes ``image`` float32 ``[batch, *spatial, channels]`` with symbolic batch and
    spatial dims and returns ``probabilities`` float32; ``model`` is converted at float32 compute
    (:func:`float32_model`) through tf2onnx from a ``tf.function`` with this input signature.

    Raises:
        OptionalDependencyError: tf2onnx or onnx is not installed.
        ValueError: the converted graph needs inputs other than the image, or every one of
            :data:`CONVERSION_TRIES` conversions gave an output of the wrong rank.
    """
    import tensorflow as tf

    tf2onnx = import_optional("tf2onnx", "onnx")
    import_optional("onnx", "onnx")
    served = float32_model(model)
    spec = tf.TensorSpec([None] * (spatial_dims + 1) + [channels], tf.float32, name=SIGNATURE_INPUT)

    @tf.function(input_signature=[spec])
    def serve(image):
        return {SIGNATURE_OUTPUT: tf.cast(served(image, training=False), tf.float32)}

    function = serve.get_concrete_function()
    rank = spatial_dims + 2
    for _ in range(CONVERSION_TRIES):
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
        got = len(proto.graph.output[0].type.tensor_type.shape.dim)
        if got == rank:
            break
    else:
        raise ValueError(
            f"tf2onnx returned a graph whose output has rank {got}, not {rank}, "
            f"{CONVERSION_TRIES} times; the model cannot be exported to ONNX with this tf2onnx"
        )
    _embed_captured_constants(proto, function)
    split_reductions(proto)
    _name_dims(proto, spatial_dims)
    return proto.SerializeToString()


def split_reductions(proto: Any) -> None:
    """Replace each multi-axis ``ReduceMean`` (keepdims) by a chain of one-axis ``ReduceMean`` nodes.

    Instance/group normalisation takes the mean over a whole window at inference time. ONNX Runtime
    sums such a reduction in one float32 pass: over a 96^3 window its rounding error is about ten
    times TensorFlow's (1e-3 on the probabilities of the CPU recipe's model). The mean of means over
    one axis at a time is the same number (equal counts) from sums of at most one axis' length,
    at the same speed.
    """
    from onnx import helper

    nodes = []
    for node in proto.graph.node:
        attrs = {a.name: a for a in node.attribute}
        axes = list(attrs["axes"].ints) if "axes" in attrs else []
        keepdims = attrs["keepdims"].i if "keepdims" in attrs else 1
        if node.op_type != "ReduceMean" or len(node.input) != 1 or len(axes) < 2 or not keepdims:
            nodes.append(node)
            continue
        source = node.input[0]
        for k, axis in enumerate(sorted(axes, reverse=True)):
            target = node.output[0] if k == len(axes) - 1 else f"{node.output[0]}__mean_axis{axis}"
            nodes.append(
                helper.make_node(
                    "ReduceMean", [source], [target], axes=[axis], keepdims=1, name=f"{node.name}__axis{axis}"
                )
            )
            source = target
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


def _embed_captured_constants(proto: Any, function: Any) -> None:
    """Turn the graph inputs tf2onnx made of captured constants into initializers.

    tf2onnx lists the tensors a layer captured (not variables: e.g. EfficientNet's Normalization
    mean and variance) as graph inputs; ONNX Runtime would demand them in every feed. Their values
    are the concrete function's captured inputs.

    Raises:
        ValueError: a graph input other than the image that is not a captured constant.
    """
    from onnx import numpy_helper

    constants = {
        inner.name: outer
        for inner, outer in zip(function.graph.internal_captures, function.captured_inputs)
        if outer.dtype.name != "resource"
    }
    used = {name for node in proto.graph.node for name in node.input}
    for value in [i for i in proto.graph.input if i.name != SIGNATURE_INPUT]:
        if value.name in used and value.name not in constants:
            raise ValueError(f"the ONNX graph needs an input {value.name!r} besides {SIGNATURE_INPUT!r}")
        if value.name in used:
            proto.graph.initializer.append(numpy_helper.from_array(constants[value.name].numpy(), value.name))
        proto.graph.input.remove(value)


def compare_onnx(
    onnx_model: str | Path | bytes, keras_model: Any, spatial_shape: tuple[int, ...], *, batch: int = 1, seed: int = 0
) -> dict[str, Any]:
    """Run ONNX Runtime and the float32 Keras model on one random ``(batch, *spatial_shape, C)`` input.

    Returns:
        ``{"input_shape", "output_shape", "max_abs_diff"}`` (probabilities, float32).
    """
    import numpy as np

    channels = int(keras_model.inputs[0].shape[-1])
    x = np.random.default_rng(seed).normal(size=(batch, *spatial_shape, channels)).astype(np.float32)
    session = onnx_session(onnx_model)
    got = session.run([SIGNATURE_OUTPUT], {SIGNATURE_INPUT: x})[0]
    reference = np.asarray(float32_model(keras_model)(x, training=False), dtype=np.float32)
    if got.shape != reference.shape:
        raise ValueError(f"ONNX Runtime returned shape {got.shape}, Keras {reference.shape}")
    return {
        "input_shape": list(x.shape),
        "output_shape": list(got.shape),
        "max_abs_diff": float(np.abs(got - reference).max()),
    }


def _check_shape(card: ModelCard) -> tuple[int, ...]:
    """The export check's spatial shape: the card's window (a free axis: 32), the smallest fitting size
    for the registered model."""
    shape = tuple(card.window or [32] * card.spatial_dims)
    if card.model:
        from brainseg_tf.models import get_spec

        try:
            spec = get_spec(card.model)
            shape = spec.fit_size(tuple(shape), dict(card.options or {}))
        except ValueError:
            pass  # options of another version: the window it was trained with is valid anyway
    return shape


def export_model(
    model: Any,
    out_dir: str | Path,
    *,
    metadata: ModelCard | dict[str, Any] | None = None,
    overwrite: bool = False,
    format: str = "savedmodel",
) -> dict[str, Any]:
    """Write a SavedModel with a documented serving signature, a ``.keras`` file and the model card
    (``format="savedmodel"``), or ``model.onnx`` and the card (``format="onnx"``).

    All formats output probabilities: a model whose last layer returns logits is exported with
    its softmax/sigmoid appended (and deep-supervision outputs dropped), so the exported card says
    ``logits: false``. An ONNX export is checked against the Keras model before it is written
    (:func:`compare_onnx` on the card's window, within :data:`ONNX_ATOL`).

    Args:
        model: a ``keras.Model``, a :class:`~brainseg_tf.inference.Predictor` wrapping one, or a
            path accepted by :func:`~brainseg_tf.inference.load_predictor` (``RUN_DIR`` -- its
            ``best.keras`` and card --, a ``.keras`` file with its card).
        out_dir: destination folder; written to a temporary sibling first and renamed, so an
            interrupted export leaves no half-written folder.
        metadata: for a bare ``keras.Model``: its :class:`~brainseg_tf.card.ModelCard` (or the
            card's dict, or settings ``{"modalities": ..., "head": ...}``); required there.
        overwrite: replace an existing ``out_dir`` that is itself an export (any other non-empty
            folder is refused).
        format: ``"savedmodel"`` (default) or ``"onnx"``.

    Returns:
        ``{"saved_model": Path, "keras": Path, "metadata": Path, "out_dir": Path}``; for ONNX
        ``{"onnx": Path, "metadata": Path, "out_dir": Path, "max_abs_diff": float}``.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty, and ``overwrite`` is false or it is
            not an export.
        ValueError: an unknown ``format``; the model is not a Keras model (e.g. an already exported
            SavedModel), or it has no card and no settings; the ONNX graph differs from Keras.
        OptionalDependencyError: ``format="onnx"`` without tf2onnx/onnx/onnxruntime installed.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is unknown; expected one of {FORMATS}")
    import keras
    import tensorflow as tf

    if isinstance(model, (str, Path)):
        pred = load_predictor(model)
    elif isinstance(model, Predictor):
        pred = model
    elif isinstance(metadata, dict) and "format_version" not in metadata:
        pred = Predictor.from_keras(model, None, **metadata)
    else:
        pred = Predictor.from_keras(model, metadata)
    keras_model = pred.model
    if not isinstance(keras_model, keras.Model):
        raise ValueError(f"model={model!r} is not backed by a Keras model (got {type(keras_model).__name__})")

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True to replace an export")
        if not is_export_dir(out_dir):
            raise FileExistsError(
                f"{out_dir} is not an export folder ({CARD_FILE} with {SAVED_MODEL_DIR}/ and "
                f"{KERAS_FILE}, or with {ONNX_FILE}); refusing to replace it, even with overwrite"
            )
    card = pred.card
    served_model = probability_model(keras_model, card)
    if format == "onnx":
        return _export_onnx(served_model, card, out_dir)
    in_shape = tuple(served_model.inputs[0].shape)
    channels = int(in_shape[-1])
    spec = tf.TensorSpec([None] * (len(in_shape) - 1) + [channels], tf.float32, name=SIGNATURE_INPUT)

    def serve(image):
        return {SIGNATURE_OUTPUT: tf.cast(served_model(image, training=False), tf.float32)}

    with atomic.atomic_dir(out_dir) as tmp:
        archive = keras.export.ExportArchive()
        archive.track(served_model)
        archive.add_endpoint(name="serve", fn=serve, input_signature=[spec])
        archive.write_out(str(tmp / SAVED_MODEL_DIR), verbose=False)
        served_model.save(tmp / KERAS_FILE)
        card.replace(logits=False).save(tmp / CARD_FILE)
    return {
        "out_dir": out_dir,
        "saved_model": out_dir / SAVED_MODEL_DIR,
        "keras": out_dir / KERAS_FILE,
        "metadata": out_dir / CARD_FILE,
    }


def _export_onnx(served_model: Any, card: ModelCard, out_dir: Path) -> dict[str, Any]:
    """``out_dir/model.onnx`` + card, written only after ONNX Runtime matched Keras."""
    blob = to_onnx(served_model, card.spatial_dims, len(card.modalities))
    check = compare_onnx(blob, served_model, _check_shape(card))
    if check["max_abs_diff"] > ONNX_ATOL:
        raise ValueError(
            f"{out_dir}: ONNX Runtime and Keras differ by {check['max_abs_diff']:.3g} "
            f"(> {ONNX_ATOL}) on a random {check['input_shape']} input; nothing written"
        )
    with atomic.atomic_dir(out_dir) as tmp:
        atomic.write_bytes(tmp / ONNX_FILE, blob)
        card.replace(logits=False).save(tmp / CARD_FILE)
    return {
        "out_dir": out_dir,
        "onnx": out_dir / ONNX_FILE,
        "metadata": out_dir / CARD_FILE,
        "max_abs_diff": check["max_abs_diff"],
    }


def verify_export(
    out_dir: str | Path,
    *,
    spatial_shape: tuple[int, ...] | None = None,
    atol: float = 1e-5,
    seed: int = 0,
) -> dict[str, Any]:
    """Reload an export and check the SavedModel reproduces the ``.keras`` model.

    Runs both on one random input of ``spatial_shape`` (default: the card's window, else 32 per
    axis) with the card's channel count, through the ``serving_default`` signature.

    Returns:
        ``{"input_shape", "output_shape", "max_abs_diff", "signature_inputs", "signature_outputs"}``.

    Raises:
        ValueError: the outputs differ by more than ``atol``.
    """
    import numpy as np
    import tensorflow as tf

    out_dir = Path(out_dir)
    card = ModelCard.load(out_dir / CARD_FILE)
    channels = len(card.modalities)
    if spatial_shape is None:
        spatial_shape = tuple(card.window or [32] * card.spatial_dims)
    x = np.random.default_rng(seed).normal(size=(1, *spatial_shape, channels)).astype(np.float32)
    loaded = tf.saved_model.load(str(out_dir / SAVED_MODEL_DIR))
    serving = loaded.signatures["serving_default"]
    served = serving(**{SIGNATURE_INPUT: tf.constant(x)})[SIGNATURE_OUTPUT].numpy()
    reference = np.asarray(load_keras_model(out_dir / KERAS_FILE)(x, training=False), dtype=np.float32)
    diff = float(np.abs(served - reference).max())
    report = {
        "input_shape": list(x.shape),
        "output_shape": list(served.shape),
        "max_abs_diff": diff,
        "signature_inputs": {k: str(v) for k, v in serving.structured_input_signature[1].items()},
        "signature_outputs": {k: str(v) for k, v in serving.structured_outputs.items()},
    }
    if diff > atol:
        raise ValueError(f"{out_dir}: SavedModel and model.keras differ by {diff:.3g} (> atol={atol})")
    return report


__all__ = [
    "export_model",
    "verify_export",
    "is_export_dir",
    "probability_model",
    "float32_model",
    "to_onnx",
    "compare_onnx",
    "split_reductions",
    "FORMATS",
    "ONNX_OPSET",
    "ONNX_ATOL",
    "SIGNATURE_INPUT",
    "SIGNATURE_OUTPUT",
]
