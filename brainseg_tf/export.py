"""Export a trained model as a TensorFlow SavedModel and a ``.keras`` file, with metadata.

:func:`export_model` writes one folder::

    OUT/
      saved_model/          TensorFlow SavedModel (no Python or brainseg_tf needed to run it)
      model.keras           native Keras file (reload with brainseg_tf imported)
      brainseg_model.json   the model card (brainseg_tf.card): modalities in channel order, head,
                            outputs, roi, preprocessing, postprocessing, provenance

Serving signature (``serving_default``, also ``serve``)
-------------------------------------------------------
* input ``image``: float32 ``[batch, X, Y, Z, C]`` (``[batch, H, W, C]`` for a 2D model),
  channels-last in NIfTI voxel order; ``C`` = the card's ``modalities`` in that order (canonical order ``flair, t1, t1ce, t2`` for 4-channel models). The spatial sizes are
  dynamic but must suit the network (divisible by ``2**depth`` for the U-Nets) -- feed the
  sliding-window roi. The image must be preprocessed as in training: cropped to the brain box and
  z-scored per modality inside the brain mask (any modality nonzero), background 0.
* output ``probabilities``: float32 ``[batch, X, Y, Z, K]``: a softmax head gives ``K = 4`` class
  probabilities (0 BG, 1 NCR, 2 ED, 3 ET, canonical labels); a sigmoid head ``K = 3`` region
  probabilities (WT, TC, ET); a region head ``K = 1`` (the card's ``region``). Always
  probabilities, also for a model trained with logits (ZNet).

``saved_model_cli show --all --dir OUT/saved_model`` lists it. A reload with
``tf.saved_model.load`` (or :func:`brainseg_tf.inference.load_predictor` on ``OUT``) reproduces the
Keras outputs (bit-exact on CPU; tested within 1e-5 in a fresh process).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from brainseg_tf import atomic
from brainseg_tf.card import CARD_FILE, ModelCard
from brainseg_tf.inference import Predictor, load_keras_model, load_predictor

SIGNATURE_INPUT = "image"
SIGNATURE_OUTPUT = "probabilities"
SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"
METADATA_FILE = CARD_FILE


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` holds an export written by :func:`export_model` (card + SavedModel + .keras)."""
    path = Path(path)
    return ((path / CARD_FILE).is_file() and (path / SAVED_MODEL_DIR / "saved_model.pb").is_file()
            and (path / KERAS_FILE).is_file())


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


def export_model(
    model: Any,
    out_dir: str | Path,
    *,
    metadata: ModelCard | dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a SavedModel with a documented serving signature, a ``.keras`` file and the model card.

    Both always output probabilities: a model whose last layer returns logits is exported with
    its softmax/sigmoid appended (and deep-supervision outputs dropped), so the exported card says
    ``logits: false`` for both files.

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

    Returns:
        ``{"saved_model": Path, "keras": Path, "metadata": Path, "out_dir": Path}``.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty, and ``overwrite`` is false or it is
            not an export.
        ValueError: the model is not a Keras model (e.g. an already exported SavedModel), or it
            has no card and no settings.
    """
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
            raise FileExistsError(f"{out_dir} is not an export folder ({CARD_FILE}, {SAVED_MODEL_DIR}/, {KERAS_FILE}); "
                                  "refusing to replace it, even with overwrite")
    card = pred.to_card()
    served_model = probability_model(keras_model, card)
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


def verify_export(
    out_dir: str | Path,
    *,
    spatial_shape: tuple[int, ...] | None = None,
    atol: float = 1e-5,
    seed: int = 0,
) -> dict[str, Any]:
    """Reload an export and check the SavedModel reproduces the ``.keras`` model.

    Runs both on one random input of ``spatial_shape`` (default: the card's roi, else 32 per
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
        spatial_shape = tuple(card.roi or [32] * card.spatial_dims)
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


__all__ = ["export_model", "verify_export", "is_export_dir", "probability_model", "SIGNATURE_INPUT",
           "SIGNATURE_OUTPUT"]
