"""Inference: sliding-window prediction, mirror TTA, postprocessing and NIfTI output.

Pipeline for one case (:func:`predict_case`)::

    read_case --> preprocess_case (crop to brain box, z-score; as in training)
      --> select the model's modalities --> sliding_window (Gaussian-weighted, batched windows,
          optional mirror TTA) --> probabilities on the cropped grid
      --> labels (argmax for a softmax head; thresholded regions for a sigmoid head)
      --> postprocess (small ET -> NCR, small components removed)
      --> paste_back onto the native grid --> write_label (source affine/header, chosen convention)

:func:`sliding_window` is a pure function over any predictor callable mapping a batch
``(B, *roi, C)`` to ``(B, *roi, K)`` (a Keras model, a reloaded SavedModel, a lambda); it imports
no TensorFlow. TensorFlow and Keras are only imported by :func:`load_predictor`.

Conventions: image ``(X, Y, Z, C)`` float32 channels-last in NIfTI voxel order, channels a subset of
``(flair, t1, t1ce, t2)`` in the model's order; labels ``(X, Y, Z)`` uint8 canonical (0 BG, 1 NCR,
2 ED, 3 ET); a softmax head outputs the 4 classes in that order, a sigmoid head the regions
``(WT, TC, ET)``.

Model sources accepted by :func:`load_predictor`
--------------------------------------------------
* **A run directory** (written by training) holding ``config.json`` and ``best.keras`` (preferred)
  or ``final.keras``. The keys read from ``config.json`` -- each looked up at the top level first,
  then inside any nested section (``"model"``, ``"data"``, ``"training"``, ...), all optional::

      {
        "model": {"name": "unet", "options": {...}},      # informational (weights come from .keras)
        "modalities": ["flair", "t1", "t1ce", "t2"],       # canonical names, in input-channel order
        "head": "softmax",                                  # or "sigmoid"; alias key "output"
        "logits": false,                                    # true: the model returns pre-activation scores
        "patch_size": [128, 128, 128],                      # sliding-window roi; alias key "roi"
        "preprocessing": {"margin": 0, "reorient": false, "spacing": null},  # preprocess_case kwargs
        "postprocess": {"et_min_voxels": 0, "min_component_voxels": 0, "region_threshold": 0.5}
      }

  ``et_min_voxels`` (the ET-to-NCR threshold chosen on validation), ``min_component_voxels`` and
  ``region_threshold`` (sigmoid heads) may also sit at the top level or in another section.
  Values of the wrong type are ignored (a training ``"output": "runs/x"`` is not a head). The
  number of spatial dimensions always comes from the model's input rank.
* **A ``.keras`` file.** Metadata come from ``brainseg_model.json`` (written by
  :func:`brainseg_tf.export.export_model`) or ``config.json`` in the same folder; without either
  they are inferred from the model: ``C`` input channels give the modalities (4: all, 2: flair +
  t1ce, 1: flair), 4 outputs a softmax head, 3 outputs a sigmoid head, the roi is the model's fixed
  input size or 128 per axis.
* **An export directory** (``brainseg_model.json`` + ``model.keras`` + ``saved_model/``) or a
  **SavedModel directory** (``saved_model.pb``): the ``serving_default`` signature is called;
  metadata from ``brainseg_model.json`` next to it or one level up, else inferred as above.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage

from brainseg_tf import io as bio
from brainseg_tf.data.preprocess import Geometry, paste_back, preprocess_case
from brainseg_tf.io.labels import MODALITIES, get_convention, regions_to_labels

HEADS = ("softmax", "sigmoid")
DEFAULT_ROI = 128
METADATA_FILE = "brainseg_model.json"
RUN_CONFIG_FILE = "config.json"
RUN_CHECKPOINTS = ("best.keras", "final.keras")
_MODALITIES_BY_CHANNELS = {4: MODALITIES, 2: ("flair", "t1ce"), 1: ("flair",)}

BatchPredictor = Callable[[np.ndarray], Any]


# ----------------------------------------------------------------------------- sliding window


def _as_numpy(output: Any) -> np.ndarray:
    """A predictor's output as a float32 numpy array (tensor, dict, or list/tuple of outputs)."""
    if isinstance(output, dict):
        if "probabilities" in output:
            output = output["probabilities"]
        elif len(output) == 1:
            output = next(iter(output.values()))
        else:
            raise ValueError(f"predictor returned a dict with keys {sorted(output)}; expected 'probabilities'")
    if isinstance(output, (list, tuple)):  # deep supervision: the full-resolution output comes first
        output = output[0]
    if hasattr(output, "numpy"):
        output = output.numpy()
    return np.asarray(output, dtype=np.float32)


def _check_spatial(name: str, value: Any, ndim: int, shape: Sequence[int] | None = None) -> tuple[int, ...]:
    """A per-axis positive int tuple; a scalar or 1-entry sequence is broadcast; ``None`` entries take ``shape``."""
    vals = [value] * ndim if np.isscalar(value) or value is None else list(value)
    if len(vals) == 1:  # one entry (e.g. ``--roi 128`` on the command line) applies to every axis
        vals = vals * ndim
    if len(vals) != ndim:
        raise ValueError(f"{name}={value!r} must have {ndim} entries (one per spatial axis)")
    out = []
    for axis, v in enumerate(vals):
        if v is None and shape is not None:
            v = shape[axis]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}={value!r} must hold positive integers (or None for the full extent)")
        out.append(int(v))
    return tuple(out)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start indices of windows of length ``roi`` covering ``[0, size)`` with at least ``overlap``.

    Windows are spread evenly (first at 0, last ending at ``size``) with a step of at most
    ``roi * (1 - overlap)`` voxels (and at least 1), so every voxel is covered and no two windows
    coincide. ``size <= roi`` gives one window (the caller pads).
    """
    if size <= roi:
        return [0]
    target = max(roi * (1.0 - overlap), 1.0)
    n = math.ceil((size - roi) / target) + 1
    step = (size - roi) / (n - 1)
    return [int(math.floor(i * step + 0.5)) for i in range(n)]


def importance_map(
    roi: Sequence[int],
    mode: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    min_weight: float = 1e-3,
) -> np.ndarray:
    """Per-voxel blending weight of one window, float32 of shape ``roi``.

    ``"gaussian"``: a separable Gaussian centred on the window with ``sigma = sigma_scale * roi``
    per axis, scaled to a maximum of 1 and clipped below at ``min_weight`` so that no voxel (not
    even a window corner) gets zero weight. ``"constant"``: all ones.

    Raises:
        ValueError: unknown ``mode``, ``min_weight`` outside (0, 1], non-positive ``sigma_scale``.
    """
    roi = tuple(int(r) for r in roi)
    if mode == "constant":
        return np.ones(roi, dtype=np.float32)
    if mode != "gaussian":
        raise ValueError(f"mode={mode!r} is unknown; expected 'gaussian' or 'constant'")
    if not 0.0 < min_weight <= 1.0:
        raise ValueError(f"min_weight={min_weight!r} must be in (0, 1]")
    scales = np.broadcast_to(np.asarray(sigma_scale, dtype=np.float64), (len(roi),))
    if np.any(scales <= 0):
        raise ValueError(f"sigma_scale={sigma_scale!r} must be positive")
    weight = np.ones((), dtype=np.float64)
    for r, s in zip(roi, scales):
        coords = np.arange(r, dtype=np.float64) - (r - 1) / 2.0
        g = np.exp(-0.5 * (coords / (s * r)) ** 2)
        weight = np.multiply.outer(weight, g)
    weight = weight / weight.max()
    return np.maximum(weight, min_weight).astype(np.float32)


def sliding_window(
    predictor: BatchPredictor,
    image: np.ndarray,
    *,
    roi: int | Sequence[int | None],
    overlap: float = 0.5,
    batch_size: int = 1,
    mode: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    min_weight: float = 1e-3,
    pad_mode: str = "constant",
    cval: float = 0.0,
    progress: bool = False,
) -> np.ndarray:
    """Predict a whole image window by window and blend the windows with importance weights.

    The image is padded (``pad_mode``, centred) wherever it is smaller than ``roi``; windows are
    spread evenly so that every voxel is covered (:func:`window_starts`); ``batch_size`` windows go
    through ``predictor`` at a time; the outputs are accumulated as ``sum(w * y) / sum(w)`` with
    the :func:`importance_map` ``w`` and cropped back to the input's extent.

    The accumulation is in float64: the weights are float32, so each product is exact and the
    float32 result of the division is exactly the input wherever all windows agree -- an
    identity predictor returns its input bit for bit, in ``"gaussian"`` and ``"constant"`` mode.

    Args:
        predictor: callable mapping a float32 batch ``(B, *roi, C)`` to ``(B, *roi, K)`` (numpy or
            a tensor; a dict is read at ``"probabilities"`` or its single value; a list/tuple at
            its first element).
        image: ``(X, Y, Z, C)`` (or ``(H, W, C)`` with a 2D roi), channels last.
        roi: window size per spatial axis; a scalar applies to every axis; ``None`` entries take
            the image's extent.
        overlap: fraction of a window shared with its neighbour, in [0, 1). Defaults to 0.5.
        batch_size: windows per predictor call. Defaults to 1.
        mode: ``"gaussian"`` (default) or ``"constant"`` blending.
        sigma_scale: Gaussian sigma as a fraction of the roi (scalar or per axis). Defaults to 0.125.
        min_weight: smallest blending weight (relative to the centre), > 0. Defaults to 1e-3.
        pad_mode: ``numpy.pad`` mode used where the image is smaller than the roi.
        cval: padding value for ``pad_mode="constant"`` (0 = z-scored background).
        progress: show a progress bar over window batches.

    Returns:
        ``(X, Y, Z, K)`` float32 (``(H, W, K)`` in 2D).

    Raises:
        ValueError: a bad ``roi``/``overlap``/``batch_size``/``mode``, an image that is not
            channels-last 2D/3D, or a predictor output of the wrong batch/spatial shape.
    """
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"image has shape {image.shape}; expected (X, Y, Z, C) or (H, W, C)")
    ndim = image.ndim - 1
    spatial = image.shape[:ndim]
    roi_t = _check_spatial("roi", roi, ndim, spatial)
    if not (isinstance(overlap, (int, float, np.floating)) and 0.0 <= float(overlap) < 1.0):
        raise ValueError(f"overlap={overlap!r} must be in [0, 1)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    weight = importance_map(roi_t, mode, sigma_scale, min_weight).astype(np.float64)

    pads = [((max(r - s, 0)) // 2, max(r - s, 0) - (max(r - s, 0)) // 2) for s, r in zip(spatial, roi_t)]
    if any(p != (0, 0) for p in pads):
        kwargs = {"constant_values": cval} if pad_mode == "constant" else {}
        padded = np.pad(image, pads + [(0, 0)], mode=pad_mode, **kwargs)
    else:
        padded = image
    padded_spatial = padded.shape[:ndim]
    starts = [window_starts(s, r, float(overlap)) for s, r in zip(padded_spatial, roi_t)]
    windows = [tuple(slice(a, a + r) for a, r in zip(corner, roi_t)) for corner in itertools.product(*starts)]

    total: np.ndarray | None = None
    norm = np.zeros(padded_spatial, dtype=np.float64)
    batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="windows", unit="batch", leave=False)
    for chunk in batches:
        x = np.stack([padded[sl] for sl in chunk]).astype(np.float32, copy=False)
        y = _as_numpy(predictor(x))
        if y.ndim != ndim + 2 or y.shape[: ndim + 1] != (len(chunk),) + roi_t:
            raise ValueError(
                f"predictor returned shape {y.shape} for a batch of shape {x.shape}; "
                f"expected ({len(chunk)}, {', '.join(map(str, roi_t))}, K)"
            )
        if total is None:
            total = np.zeros(padded_spatial + (y.shape[-1],), dtype=np.float64)
        for i, sl in enumerate(chunk):
            total[sl] += y[i] * weight[..., None]
            norm[sl] += weight
    total /= norm[..., None]  # every voxel lies in at least one window, so norm >= min_weight
    crop = tuple(slice(before, before + s) for (before, _), s in zip(pads, spatial))
    return total[crop].astype(np.float32)


def mirror_tta(predictor: BatchPredictor, axes: Sequence[int] = (0, 1, 2)) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a batch predictor with test-time mirroring: average over every subset of flipped axes.

    Args:
        predictor: batch callable ``(B, *roi, C) -> (B, *roi, K)``.
        axes: spatial axes (0-based, excluding batch and channel) to mirror; ``(0, 1, 2)`` gives
            the 8 flips of nnU-Net, ``()`` no mirroring.

    Returns:
        A batch callable returning the float32 mean of the ``2**len(axes)`` back-flipped outputs.
    """
    axes = tuple(int(a) for a in axes)
    if len(set(axes)) != len(axes) or any(a < 0 for a in axes):
        raise ValueError(f"mirror_axes={axes!r} must be distinct non-negative spatial axes")
    combos = [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]

    def tta(batch: np.ndarray) -> np.ndarray:
        acc: np.ndarray | None = None
        for combo in combos:
            flip = tuple(a + 1 for a in combo)
            x = np.ascontiguousarray(np.flip(batch, flip)) if flip else batch
            y = _as_numpy(predictor(x))
            y = np.flip(y, flip) if flip else y
            acc = y.astype(np.float64) if acc is None else acc + y
        return (acc / len(combos)).astype(np.float32)

    return tta


# ----------------------------------------------------------------------------- postprocessing


def probabilities_to_labels(probabilities: np.ndarray, head: str = "softmax", threshold: float = 0.5) -> np.ndarray:
    """Canonical labels ``(...)`` uint8 from probabilities ``(..., K)``.

    Args:
        probabilities: softmax class probabilities ``(..., 4)`` (BG, NCR, ED, ET) or sigmoid region
            probabilities ``(..., 3)`` (WT, TC, ET).
        head: ``"softmax"`` (argmax) or ``"sigmoid"`` (each region ``> threshold``, then nested:
            ET -> 3, TC without ET -> 1, WT without TC -> 2).
        threshold: region threshold for a sigmoid head.
    """
    if head == "softmax":
        return np.argmax(probabilities, axis=-1).astype(np.uint8)
    if head == "sigmoid":
        return regions_to_labels(probabilities > threshold)
    raise ValueError(f"head={head!r} is unknown; expected one of {HEADS}")


def postprocess(labels: np.ndarray, *, et_min_voxels: int = 0, min_component_voxels: int = 0) -> np.ndarray:
    """BraTS postprocessing of canonical labels; returns a new uint8 array.

    1. Connected components (26-connectivity) of the whole tumour (labels 1-3) with fewer than
       ``min_component_voxels`` voxels are set to background.
    2. When the remaining enhancing tumour (label 3) has fewer than ``et_min_voxels`` voxels in
       total, it is relabelled NCR (1): a tiny ET prediction in a case without ET costs the whole
       ET Dice, a missing one costs nothing under the legacy empty-mask rule.

    Args:
        labels: ``(X, Y, Z)`` (or 2D) canonical labels.
        et_min_voxels: ET volume threshold in voxels (0 disables; choose it on validation).
        min_component_voxels: smallest whole-tumour component kept (0 disables).
    """
    for name, value in (("et_min_voxels", et_min_voxels), ("min_component_voxels", min_component_voxels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name}={value!r} must be a non-negative integer")
    out = np.array(labels, dtype=np.uint8, copy=True)
    if min_component_voxels > 0:
        structure = np.ones((3,) * out.ndim, dtype=bool)
        components, n = ndimage.label(out > 0, structure=structure)
        if n:
            sizes = np.bincount(components.ravel())
            small = sizes < min_component_voxels
            small[0] = False
            out[small[components]] = 0
    if et_min_voxels > 0:
        et = out == 3
        if 0 < int(et.sum()) < et_min_voxels:
            out[et] = 1
    return out


# ----------------------------------------------------------------------------- predictors


@dataclass
class Predictor:
    """A batch predictor plus what inference needs to know about it.

    Attributes:
        fn: callable mapping float32 ``(B, *roi, C)`` to probabilities ``(B, *roi, K)``.
        modalities: canonical modality names in input-channel order.
        head: ``"softmax"`` (K = 4 classes) or ``"sigmoid"`` (K = 3 regions WT, TC, ET).
        roi: default window size (``spatial_dims`` entries), or ``None`` for 128 per axis.
        spatial_dims: 3 for volume models; 2 for slice models (run over the axial slices).
        et_min_voxels: default ET -> NCR threshold of :func:`postprocess`.
        min_component_voxels: default smallest kept component of :func:`postprocess`.
        threshold: region threshold for a sigmoid head.
        preprocessing: keyword arguments of :func:`brainseg_tf.data.preprocess.preprocess_case`.
        model: the underlying Keras model or loaded SavedModel (kept alive), if any.
        source: where it was loaded from.
        metadata: the raw metadata read (run config or ``brainseg_model.json``).
    """

    fn: BatchPredictor
    modalities: tuple[str, ...] = MODALITIES
    head: str = "softmax"
    roi: tuple[int, ...] | None = None
    spatial_dims: int = 3
    et_min_voxels: int = 0
    min_component_voxels: int = 0
    threshold: float = 0.5
    preprocessing: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(f"modalities={self.modalities!r} must be names from {MODALITIES}")
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r} is unknown; expected one of {HEADS}")
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims={self.spatial_dims!r} must be 2 or 3")
        if self.roi is not None:
            self.roi = _check_spatial("roi", self.roi, self.spatial_dims)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return _as_numpy(self.fn(batch))

    @property
    def num_outputs(self) -> int:
        return 4 if self.head == "softmax" else 3

    @classmethod
    def from_keras(cls, model: Any, metadata: dict[str, Any] | None = None, **overrides: Any) -> "Predictor":
        """Wrap a Keras model; metadata from a run config/``brainseg_model.json`` dict or inferred."""
        import tensorflow as tf

        meta = _normalise_metadata({**(metadata or {}), **overrides}, _keras_io_shapes(model))

        @tf.function(reduce_retracing=True)
        def forward(x):
            return model(x, training=False)

        logits = meta.pop("logits")

        def fn(batch: np.ndarray) -> np.ndarray:
            y = _as_numpy(forward(tf.convert_to_tensor(batch, dtype=tf.float32)))
            return _activate(y, meta["head"]) if logits else y

        meta.update(overrides)
        return cls(fn=fn, model=model, metadata=dict(metadata or {}), **meta)


def _activate(scores: np.ndarray, head: str) -> np.ndarray:
    if head == "sigmoid":
        return (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _keras_io_shapes(model: Any) -> tuple[tuple, tuple]:
    inp = model.inputs[0].shape if getattr(model, "inputs", None) else model.input_shape
    out = model.outputs[0].shape if getattr(model, "outputs", None) else model.output_shape
    return tuple(inp), tuple(out)


def _find(cfg: dict[str, Any], *names: str, valid: Callable[[Any], bool] = lambda v: True, depth: int = 2) -> Any:
    """The first valid value of one of ``names``: top level of ``cfg`` first, then nested sections."""
    for name in names:
        if cfg.get(name) is not None and valid(cfg[name]):
            return cfg[name]
    if depth > 0:
        for value in cfg.values():
            if isinstance(value, dict):
                found = _find(value, *names, valid=valid, depth=depth - 1)
                if found is not None:
                    return found
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_size(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) in (2, 3) and all(_is_int(x) and x > 0 for x in v)


def _normalise_metadata(cfg: dict[str, Any], io_shapes: tuple[tuple, tuple] | None) -> dict[str, Any]:
    """Predictor fields from a run config / export metadata, falling back to the model's shapes."""
    in_shape, out_shape = io_shapes if io_shapes is not None else ((None,) * 5, (None,) * 5)
    spatial_dims = len(in_shape) - 2 if io_shapes is not None else _find(cfg, "spatial_dims", valid=_is_int) or 3
    channels = in_shape[-1]
    modalities = _find(cfg, "modalities", valid=lambda v: isinstance(v, (list, tuple)))
    if modalities is None:
        if channels not in _MODALITIES_BY_CHANNELS:
            raise ValueError(
                f"the model takes {channels} input channels and no 'modalities' metadata was found; "
                f"pass modalities= (names from {MODALITIES})"
            )
        modalities = _MODALITIES_BY_CHANNELS[channels]
    elif channels is not None and len(modalities) != channels:
        raise ValueError(f"modalities={list(modalities)!r} lists {len(modalities)} names; the model takes {channels}")
    head = _find(cfg, "head", "output_mode", "output", valid=lambda v: v in HEADS)
    if head is None:
        k = out_shape[-1]
        head = {4: "softmax", 3: "sigmoid"}.get(k)
        if head is None:
            raise ValueError(f"the model outputs {k} channels; expected 4 (softmax classes) or 3 (sigmoid regions)")
    roi = _find(cfg, "roi", "patch_size", valid=_is_size)
    if roi is None:
        fixed = in_shape[1:-1]
        roi = tuple(fixed) if fixed and all(_is_int(s) for s in fixed) else None
    post = _find(cfg, "postprocess", "postprocessing", valid=lambda v: isinstance(v, dict)) or {}
    pre = _find(cfg, "preprocessing", "preprocess", valid=lambda v: isinstance(v, dict)) or {}
    allowed_pre = ("crop", "margin", "normalize", "reorient", "spacing")
    et_min = post.get("et_min_voxels", _find(cfg, "et_min_voxels", valid=_is_int))
    min_comp = post.get("min_component_voxels", _find(cfg, "min_component_voxels", valid=_is_int))
    threshold = post.get("region_threshold", _find(cfg, "region_threshold"))
    return {
        "modalities": tuple(modalities),
        "head": str(head),
        "roi": None if roi is None else tuple(int(r) for r in roi),
        "spatial_dims": int(spatial_dims),
        "et_min_voxels": int(et_min or 0),
        "min_component_voxels": int(min_comp or 0),
        "threshold": float(threshold) if threshold is not None else 0.5,
        "preprocessing": {k: pre[k] for k in allowed_pre if k in pre},
        "logits": bool(_find(cfg, "logits", valid=lambda v: isinstance(v, bool)) or False),
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _metadata_near(folder: Path) -> dict[str, Any]:
    for name in (METADATA_FILE, RUN_CONFIG_FILE):
        if (folder / name).is_file():
            return _read_json(folder / name)
    return {}


def _import_registries() -> None:
    """Import the modules that register custom layers/losses/metrics, so ``.keras`` files reload."""
    import importlib

    for mod in ("brainseg_tf.models", "brainseg_tf.losses", "brainseg_tf.metrics"):
        try:
            importlib.import_module(mod)
        except ImportError:  # a module not present in this installation registers nothing
            pass


def load_keras_model(path: str | Path) -> Any:
    """Load a ``.keras`` file (uncompiled) after importing brainseg_tf's registering modules."""
    import keras

    _import_registries()
    return keras.saving.load_model(str(path), compile=False)


def _from_saved_model(folder: Path, metadata: dict[str, Any], overrides: dict[str, Any]) -> Predictor:
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
    io_shapes = (tuple(in_spec.shape), tuple(outputs[out_key].shape))
    meta = _normalise_metadata({**metadata, **overrides}, io_shapes)
    logits = meta.pop("logits")
    meta.update(overrides)

    def fn(batch: np.ndarray) -> np.ndarray:
        y = sig(**{in_name: tf.constant(batch, dtype=tf.float32)})[out_key].numpy().astype(np.float32)
        return _activate(y, meta["head"]) if logits else y

    return Predictor(fn=fn, model=loaded, source=str(folder), metadata=metadata, **meta)


def load_predictor(path: str | Path, **overrides: Any) -> Predictor:
    """Load a model for inference from a run directory, a ``.keras`` file or a SavedModel/export dir.

    See the module docstring for the files and metadata read from each.

    Args:
        path: ``RUN_DIR`` (``config.json`` + ``best.keras``/``final.keras``), ``model.keras``,
            an export directory, or a SavedModel directory.
        **overrides: :class:`Predictor` fields that replace the metadata (``modalities``, ``roi``,
            ``head``, ``et_min_voxels``, ...).

    Raises:
        FileNotFoundError: the path does not exist or a run dir has no checkpoint.
        ValueError: the path is not a model, or its metadata do not fit the model.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path {path} does not exist")
    if path.is_file():
        if path.suffix != ".keras":
            raise ValueError(f"{path}: expected a .keras file, a run directory or a SavedModel directory")
        return _from_keras_file(path, _metadata_near(path.parent), overrides)
    if (path / "saved_model.pb").is_file():
        meta = _metadata_near(path) or _metadata_near(path.parent)
        return _from_saved_model(path, meta, overrides)
    if (path / RUN_CONFIG_FILE).is_file() or (path / METADATA_FILE).is_file():
        meta = _metadata_near(path)
        for name in RUN_CHECKPOINTS + ("model.keras",):
            if (path / name).is_file():
                return _from_keras_file(path / name, meta, overrides)
        if (path / "saved_model" / "saved_model.pb").is_file():
            return _from_saved_model(path / "saved_model", meta, overrides)
        raise FileNotFoundError(f"{path}: no model found (looked for {', '.join(RUN_CHECKPOINTS)}, model.keras, saved_model/)")
    raise ValueError(f"{path}: not a run directory (config.json), an export directory ({METADATA_FILE}) or a SavedModel")


def _from_keras_file(path: Path, metadata: dict[str, Any], overrides: dict[str, Any]) -> Predictor:
    model = load_keras_model(path)
    pred = Predictor.from_keras(model, metadata, **overrides)
    pred.source = str(path)
    return pred


def _as_predictor(model: Predictor | str | Path | Any) -> Predictor:
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, Path)):
        return load_predictor(model)
    if hasattr(model, "inputs") and hasattr(model, "outputs"):
        return Predictor.from_keras(model)
    if callable(model):
        return Predictor(fn=model)
    raise TypeError(f"model={model!r} is not a Predictor, a path, a Keras model or a callable")


# ----------------------------------------------------------------------------- cases


@dataclass
class Prediction:
    """The prediction for one case on its native grid.

    Attributes:
        case_id: the case identifier.
        labels: ``(X, Y, Z)`` uint8 canonical labels (0 BG, 1 NCR, 2 ED, 3 ET), postprocessed, on
            the grid of the source files.
        probabilities: ``(X, Y, Z, K)`` float32 (softmax classes or sigmoid regions WT, TC, ET) on
            the native grid, or ``None`` when not requested. Outside the brain box: class BG = 1.
        head: ``"softmax"`` or ``"sigmoid"``.
        reference: the source case without its image (affine, header, convention, shape, label).
        geometry: the preprocessing geometry (crop box).
        seconds: wall time of the prediction (preprocessing to paste-back).
    """

    case_id: str
    labels: np.ndarray
    probabilities: np.ndarray | None
    head: str
    reference: bio.Case
    geometry: Geometry
    seconds: float = 0.0

    def write(self, path: str | Path, convention: str | None = None) -> Path:
        """Write the labels with the source's affine and header, in ``convention`` (default: the source's)."""
        return bio.write_label(self.labels, self.reference, path, convention=convention)

    def write_probabilities(self, path: str | Path) -> Path:
        """Write the probability maps as a float32 4D NIfTI with the source's affine."""
        if self.probabilities is None:
            raise ValueError("this prediction has no probabilities; predict with return_probabilities=True")
        return bio.save_nifti(
            self.probabilities, path, affine=self.reference.affine, header=self.reference.header, dtype=np.float32
        )


def predict_case(
    model: Predictor | str | Path | Any,
    case: bio.Case | bio.CaseRef | str | Path,
    *,
    roi: int | Sequence[int] | None = None,
    overlap: float = 0.5,
    batch_size: int = 1,
    mode: str = "gaussian",
    sigma_scale: float = 0.125,
    tta: bool = False,
    mirror_axes: Sequence[int] | None = None,
    et_min_voxels: int | None = None,
    min_component_voxels: int | None = None,
    return_probabilities: bool = False,
    progress: bool = False,
) -> Prediction:
    """Segment one case and return labels on its native grid.

    Preprocessing is :func:`~brainseg_tf.data.preprocess.preprocess_case` with the predictor's
    ``preprocessing`` options (as in training: crop to the brain box, z-score in the brain mask);
    the model's modalities are selected by name; the cropped box goes through
    :func:`sliding_window`; labels are postprocessed and pasted back onto the native grid.

    Args:
        model: a :class:`Predictor`, a path for :func:`load_predictor`, a Keras model or a batch
            callable (4 canonical channels in, 4 softmax classes out).
        case: a :class:`brainseg_tf.io.Case`, or a case path / :class:`~brainseg_tf.io.CaseRef` for
            :func:`brainseg_tf.io.read_case` (then the image is freed as soon as it is preprocessed).
        roi: window size (default: the predictor's, else 128 per axis). For a 2D model a 2-entry
            roi; the slices along Z are predicted as ``(rx, ry, 1)`` windows.
        overlap: window overlap in [0, 1). Defaults to 0.5.
        batch_size: windows per forward pass. Defaults to 1.
        mode: ``"gaussian"`` (default) or ``"constant"`` blending.
        sigma_scale: Gaussian sigma as a fraction of the roi. Defaults to 0.125.
        tta: average over mirrored inputs (``mirror_axes``). Defaults to ``False``.
        mirror_axes: spatial axes mirrored with ``tta``; default all (3D: 8 flips; 2D: 4 flips).
        et_min_voxels: ET -> NCR threshold; ``None`` takes the predictor's (run config) value.
        min_component_voxels: component-size threshold; ``None`` takes the predictor's value.
        return_probabilities: also return the pasted-back probability maps.
        progress: progress bar over windows.

    Returns:
        A :class:`Prediction`.

    Raises:
        ValueError: bad window arguments, or the predictor's modalities/outputs do not fit.
        brainseg_tf.io.DataError: unreadable case files.
    """
    start = time.perf_counter()
    pred = _as_predictor(model)
    if not isinstance(case, bio.Case):
        case = bio.read_case(case)
    pre = preprocess_case(case, **pred.preprocessing)
    reference = dataclasses.replace(case, image=None)
    del case  # the native image is no longer needed (freed here unless the caller holds it)
    idx = [MODALITIES.index(m) for m in pred.modalities]
    image = pre.image if idx == list(range(pre.image.shape[-1])) else np.ascontiguousarray(pre.image[..., idx])
    del pre.image

    fn: BatchPredictor = pred
    if pred.spatial_dims == 2:
        roi2 = _check_spatial("roi", roi if roi is not None else (pred.roi or DEFAULT_ROI), 2)
        window = roi2 + (1,)
        axes = (0, 1) if mirror_axes is None else tuple(mirror_axes)
        slice_fn = pred

        def fn(batch: np.ndarray) -> np.ndarray:  # (B, rx, ry, 1, C) -> 2D model -> (B, rx, ry, 1, K)
            return _as_numpy(slice_fn(np.ascontiguousarray(batch[:, :, :, 0, :])))[:, :, :, None, :]

    else:
        window = _check_spatial("roi", roi if roi is not None else (pred.roi or DEFAULT_ROI), 3)
        axes = (0, 1, 2) if mirror_axes is None else tuple(mirror_axes)
    if tta and axes:
        fn = mirror_tta(fn, axes)
    probs = sliding_window(
        fn, image, roi=window, overlap=overlap, batch_size=batch_size, mode=mode, sigma_scale=sigma_scale,
        progress=progress,
    )
    del image
    if probs.shape[-1] != pred.num_outputs:
        raise ValueError(f"the model returned {probs.shape[-1]} channels; a {pred.head} head needs {pred.num_outputs}")
    labels = probabilities_to_labels(probs, pred.head, pred.threshold)
    labels = postprocess(
        labels,
        et_min_voxels=pred.et_min_voxels if et_min_voxels is None else et_min_voxels,
        min_component_voxels=pred.min_component_voxels if min_component_voxels is None else min_component_voxels,
    )
    native_labels = paste_back(labels, pre.geometry, fill=0)
    native_probs = None
    if return_probabilities:
        native_probs = paste_back(probs, pre.geometry, fill=0.0)
        if pred.head == "softmax":
            native_probs[..., 0] = paste_back(probs[..., 0], pre.geometry, fill=1.0)
    return Prediction(
        case_id=reference.case_id,
        labels=native_labels,
        probabilities=native_probs,
        head=pred.head,
        reference=reference,
        geometry=pre.geometry,
        seconds=time.perf_counter() - start,
    )


def predict_folder(
    model: Predictor | str | Path | Any,
    input: str | Path,
    out_dir: str | Path,
    *,
    convention: str | None = None,
    save_probabilities: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_on_error: bool = False,
    case_ids: Sequence[str] | None = None,
    **predict_kwargs: Any,
) -> list[dict[str, Any]]:
    """Segment one case folder or every case of a dataset folder and write NIfTI label maps.

    Writes ``out_dir/<case_id>.nii.gz`` (uint8 labels in ``convention``, with the source's affine
    and header; atomic writes) and, with ``save_probabilities``, ``out_dir/<case_id>_prob.nii.gz``
    (float32 ``(X, Y, Z, K)``).

    Args:
        model: a :class:`Predictor` or a path for :func:`load_predictor` (loaded once).
        input: a case folder (``CASE_DIR``) or a dataset folder of any layout
            :func:`brainseg_tf.io.open_dataset` reads.
        out_dir: output folder (created).
        convention: label convention of the written files (``"brats"``, ``"brats2023"``,
            ``"msd"``, ``"canonical"``); default: each source's own.
        save_probabilities: also write the probability maps.
        overwrite: re-predict cases whose output exists (default: skip them).
        progress: progress bar over cases.
        stop_on_error: raise on the first failing case (default: record it and go on).
        case_ids: segment only these cases of the dataset (e.g. a run's validation split).
        **predict_kwargs: passed to :func:`predict_case` (``roi``, ``overlap``, ``tta``, ...).

    Returns:
        One record per case: ``{"case_id", "status": "written"|"skipped"|"failed", "path",
        "probabilities", "seconds", "error"}``.

    Raises:
        ValueError: an unknown ``convention``.
        brainseg_tf.io.DataError / MissingFileError: ``input`` is not a dataset or case folder.
    """
    if convention is not None:
        get_convention(convention)
    pred = _as_predictor(model)
    ds = bio.open_dataset(input)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    refs: Iterable = ds.refs if case_ids is None else [ds.ref(cid) for cid in case_ids]
    if progress:
        from tqdm.auto import tqdm

        refs = tqdm(refs, desc="predict", unit="case")
    records: list[dict[str, Any]] = []
    for ref in refs:
        target = out_dir / f"{ref.case_id}.nii.gz"
        prob_path = out_dir / f"{ref.case_id}_prob.nii.gz"
        record: dict[str, Any] = {"case_id": ref.case_id, "path": str(target), "probabilities": None,
                                  "seconds": 0.0, "error": None}
        if target.exists() and not overwrite and (not save_probabilities or prob_path.exists()):
            records.append(record | {"status": "skipped"})
            continue
        try:
            result = predict_case(pred, ref, return_probabilities=save_probabilities, **predict_kwargs)
            if save_probabilities:
                record["probabilities"] = str(result.write_probabilities(prob_path))
            result.write(target, convention=convention)
            records.append(record | {"status": "written", "seconds": result.seconds})
        except (bio.DataError, OSError, ValueError) as exc:
            if stop_on_error:
                raise
            records.append(record | {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
    return records


__all__ = [
    "HEADS", "Predictor", "Prediction", "sliding_window", "window_starts", "importance_map", "mirror_tta",
    "probabilities_to_labels", "postprocess", "load_predictor", "load_keras_model", "predict_case",
    "predict_folder",
]
