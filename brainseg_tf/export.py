"""Export a trained model as a TensorFlow SavedModel and a ``.keras`` file, with metadata.

:func:`export_model` writes one folder::

    OUT/
      saved_model/          TensorFlow SavedModel (no Python or brainseg_tf needed to run it)
      model.keras           native Keras file (reload with brainseg_tf imported)
      brainseg_model.json   modalities, channel order, head, labels, preprocessing, roi, signature

Serving signature (``serving_default``, also ``serve``)
-------------------------------------------------------
* input ``image``: float32 ``[batch, X, Y, Z, C]`` (``[batch, H, W, C]`` for a 2D model),
  channels-last in NIfTI voxel order; ``C`` = the modalities listed in ``brainseg_model.json`` in
  that order (canonical order ``flair, t1, t1ce, t2`` for 4-channel models). The spatial sizes are
  dynamic but must suit the network (divisible by ``2**depth`` for the U-Nets) -- feed the
  sliding-window roi. The image must be preprocessed as in training: cropped to the brain box and
  z-scored per modality inside the brain mask (any modality nonzero), background 0.
* output ``probabilities``: float32 ``[batch, X, Y, Z, K]``: a softmax head gives ``K = 4`` class
  probabilities (0 BG, 1 NCR, 2 ED, 3 ET, canonical labels); a sigmoid head ``K = 3`` region
  probabilities (WT, TC, ET).

``saved_model_cli show --all --dir OUT/saved_model`` lists it. A reload with
``tf.saved_model.load`` (or :func:`brainseg_tf.inference.load_predictor` on ``OUT``) reproduces the
Keras outputs (bit-exact on CPU; tested within 1e-5 in a fresh process).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from brainseg_tf.inference import METADATA_FILE, Predictor, load_predictor

SIGNATURE_INPUT = "image"
SIGNATURE_OUTPUT = "probabilities"
SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"


def _export_metadata(pred: Predictor, channels: int) -> dict[str, Any]:
    spatial = ["X", "Y", "Z"] if pred.spatial_dims == 3 else ["H", "W"]
    outputs = ["BG", "NCR", "ED", "ET"] if pred.head == "softmax" else ["WT", "TC", "ET"]
    from brainseg_tf import __version__

    return {
        "format_version": 1,
        "brainseg_tf_version": __version__,
        "modalities": list(pred.modalities),
        "channel_order": "channels_last; input channels are the 'modalities' in this order",
        "head": pred.head,
        "outputs": outputs,
        "label_convention": "canonical (0 BG, 1 NCR, 2 ED, 3 ET); regions WT={1,2,3}, TC={1,3}, ET={3}",
        "spatial_dims": pred.spatial_dims,
        "roi": None if pred.roi is None else list(pred.roi),
        "preprocessing": {
            "description": "crop to the brain bounding box (any modality nonzero), z-score each modality "
            "inside the brain mask, background 0 (brainseg_tf.data.preprocess.preprocess_case)",
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in pred.preprocessing.items()},
        },
        "postprocess": {
            "et_min_voxels": pred.et_min_voxels,
            "min_component_voxels": pred.min_component_voxels,
            "region_threshold": pred.threshold,
        },
        "signature": {
            "name": "serving_default",
            "inputs": {SIGNATURE_INPUT: {"dtype": "float32", "shape": ["batch", *spatial, channels]}},
            "outputs": {SIGNATURE_OUTPUT: {"dtype": "float32", "shape": ["batch", *spatial, len(outputs)]}},
        },
    }


def export_model(
    model: Any,
    out_dir: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a SavedModel with a documented serving signature, a ``.keras`` file and metadata.

    Args:
        model: a ``keras.Model``, a :class:`~brainseg_tf.inference.Predictor` wrapping one, or a
            path accepted by :func:`~brainseg_tf.inference.load_predictor` (``RUN_DIR`` -- its
            ``best.keras`` --, a ``.keras`` file).
        out_dir: destination folder; written to a temporary sibling first and renamed, so an
            interrupted export leaves no half-written folder.
        metadata: run-config style metadata for a bare ``keras.Model`` (``modalities``, ``head``,
            ``patch_size``, ``postprocess``, ``preprocessing``); inferred from shapes when absent.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        ``{"saved_model": Path, "keras": Path, "metadata": Path, "out_dir": Path}``.

    Raises:
        FileExistsError: ``out_dir`` exists, is not empty and ``overwrite`` is false.
        ValueError: the model is not a Keras model (e.g. an already exported SavedModel), or its
            metadata do not fit it.
    """
    import keras
    import tensorflow as tf

    if isinstance(model, (str, Path)):
        pred = load_predictor(model)
    elif isinstance(model, Predictor):
        pred = model
    else:
        pred = Predictor.from_keras(model, metadata)
    keras_model = pred.model
    if not isinstance(keras_model, keras.Model):
        raise ValueError(f"model={model!r} is not backed by a Keras model (got {type(keras_model).__name__})")

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    in_shape = tuple(keras_model.inputs[0].shape)
    channels = int(in_shape[-1])
    spec = tf.TensorSpec([None] * (len(in_shape) - 1) + [channels], tf.float32, name=SIGNATURE_INPUT)

    def serve(image):
        out = keras_model(image, training=False)
        if isinstance(out, (list, tuple)):  # deep supervision: the full-resolution head
            out = out[0]
        return {SIGNATURE_OUTPUT: tf.cast(out, tf.float32)}

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        archive = keras.export.ExportArchive()
        archive.track(keras_model)
        archive.add_endpoint(name="serve", fn=serve, input_signature=[spec])
        archive.write_out(str(tmp / SAVED_MODEL_DIR), verbose=False)
        keras_model.save(tmp / KERAS_FILE)
        meta = _export_metadata(pred, channels)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "out_dir": out_dir,
        "saved_model": out_dir / SAVED_MODEL_DIR,
        "keras": out_dir / KERAS_FILE,
        "metadata": out_dir / METADATA_FILE,
    }


def verify_export(
    out_dir: str | Path,
    *,
    spatial_shape: tuple[int, ...] | None = None,
    atol: float = 1e-5,
    seed: int = 0,
) -> dict[str, Any]:
    """Reload an export and check the SavedModel reproduces the ``.keras`` model.

    Runs both on one random input of ``spatial_shape`` (default: the exported roi, else 32 per
    axis) with the exported channel count, through the ``serving_default`` signature.

    Returns:
        ``{"input_shape", "output_shape", "max_abs_diff", "signature_inputs", "signature_outputs"}``.

    Raises:
        ValueError: the outputs differ by more than ``atol``.
    """
    import numpy as np
    import tensorflow as tf

    from brainseg_tf.inference import load_keras_model

    out_dir = Path(out_dir)
    meta = json.loads((out_dir / METADATA_FILE).read_text())
    channels = int(meta["signature"]["inputs"][SIGNATURE_INPUT]["shape"][-1])
    if spatial_shape is None:
        spatial_shape = tuple(meta.get("roi") or [32] * int(meta.get("spatial_dims", 3)))
    x = np.random.default_rng(seed).normal(size=(1, *spatial_shape, channels)).astype(np.float32)
    loaded = tf.saved_model.load(str(out_dir / SAVED_MODEL_DIR))
    serving = loaded.signatures["serving_default"]
    served = serving(**{SIGNATURE_INPUT: tf.constant(x)})[SIGNATURE_OUTPUT].numpy()
    reference = load_keras_model(out_dir / KERAS_FILE)(x, training=False)
    if isinstance(reference, (list, tuple)):
        reference = reference[0]
    reference = np.asarray(reference, dtype=np.float32)
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


__all__ = ["export_model", "verify_export", "SIGNATURE_INPUT", "SIGNATURE_OUTPUT"]
