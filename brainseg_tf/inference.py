"""Inference: sliding-window prediction, mirror TTA, postprocessing and NIfTI output.

Pipeline for one case (:func:`predict_case`)::

    read_case --> preprocess_case (crop to brain box, z-score; as in training)
      --> select the model's modalities --> sliding_window (Gaussian-weighted, batched windows,
          optional mirror TTA) --> probabilities on the cropped grid
      --> labels (argmax for a softmax head; thresholded regions for a sigmoid head)
      --> postprocess (the card's rules, chosen on validation: :mod:`brainseg_tf.postprocessing`)
      --> paste_back onto the native grid --> write_label (source affine/header, chosen convention)
      (optionally an uncertainty map, :mod:`brainseg_tf.uncertainty`, written beside the labels)

:func:`sliding_window` is a pure function over any predictor callable mapping a batch
``(B, *roi, C)`` to ``(B, *roi, K)`` (a Keras model, a reloaded SavedModel, a lambda); it imports
no TensorFlow. TensorFlow and Keras are only imported by :func:`load_predictor`.

Conventions: image ``(X, Y, Z, C)`` float32 channels-last in NIfTI voxel order, channels a subset of
``(flair, t1, t1ce, t2)`` in the model's order; labels ``(X, Y, Z)`` uint8 canonical (0 BG, 1 NCR,
2 ED, 3 ET); a softmax head outputs the 4 classes in that order, a sigmoid head the regions
``(WT, TC, ET)``.

Model sources accepted by :func:`load_predictor`
--------------------------------------------------
A run directory (``brainseg_model.json`` + ``best.keras``/``final.keras``), a ``.keras`` file (the
card in its folder), an export directory (card + ``model.keras`` + ``saved_model/``) or a
SavedModel directory (card beside it or one level up). Everything prediction repeats of training
comes from the model card (:mod:`brainseg_tf.card`); a legacy run directory is read through
:func:`brainseg_tf.card.migrate`. A model without a card needs explicit ``modalities=`` and
``head=``: nothing is guessed from its shapes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf import io as bio
from brainseg_tf import postprocessing as postprocessing_rules
from brainseg_tf import uncertainty as unc
from brainseg_tf.card import (
    CARD_FILE,
    WINDOWS,
    CardError,
    Inference,
    ModelCard,
    Postprocessing,
    find_card,
    from_arguments,
)
from brainseg_tf.conventions import HEADS, MODALITIES, REGIONS, region_index
from brainseg_tf.data.preprocess import Geometry, paste_back, preprocess_case
from brainseg_tf.io.labels import get_convention, regions_to_labels

DEFAULT_ROI = 128
METADATA_FILE = CARD_FILE
RUN_CHECKPOINTS = ("best.keras", "final.keras")
_PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}

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


def _check_overlap(overlap: Any) -> None:
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float, np.floating)) or not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap={overlap!r} must be in [0, 1)")


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")


def _check_voxel_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}={value!r} must be a non-negative integer")


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


#: Largest window (voxels) :func:`plan_window` proposes by default: with the recipe's model
#: (3D U-Net, 16-256 filters, ``mixed_bfloat16``) a whole case then peaks at about 1.4 GiB RSS on
#: CPU (docs/speed.md). Memory grows with the window's voxels, and the forward cost per voxel is
#: the same for any window, so the largest windows that fit forward the fewest voxels.
DEFAULT_MAX_WINDOW_VOXELS = 1_500_000


def plan_window(
    shape: Sequence[int],
    *,
    overlap: float = 0.25,
    divisor: int | Sequence[int] = 16,
    max_voxels: int = DEFAULT_MAX_WINDOW_VOXELS,
    min_size: int | Sequence[int] | None = None,
    max_windows_per_axis: int = 8,
) -> tuple[int, ...]:
    """The window size that covers ``shape`` forwarding the fewest voxels (``roi="auto"``).

    For every number of windows ``n`` per axis the window is the smallest multiple of ``divisor``
    (at least ``min_size``) that ``n`` windows overlapping by ``overlap`` of their length cover
    (:func:`window_starts` then places exactly ``n`` or fewer); among the combinations whose window
    has at most ``max_voxels`` voxels, the one with the fewest forwarded voxels
    (``prod(n_i * w_i)``) wins, then the one with fewer windows. A fully convolutional model gives
    the same prediction for any valid window up to the normalisation statistics and the blending
    seams, so this trades many small windows for few large ones (docs/speed.md measures the Dice).

    Args:
        shape: the spatial shape to cover (the cropped brain box).
        overlap: minimum overlap of neighbouring windows, a fraction of the window, in [0, 1).
        divisor: the model's input-size divisor (one int, or one per axis).
        max_voxels: largest window, in voxels (the memory budget).
        min_size: smallest window per axis; default four times the divisor.
        max_windows_per_axis: windows per axis considered.

    Raises:
        ValueError: bad arguments, or no window of at least ``min_size`` fits ``max_voxels``.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim == 0 or any(s < 1 for s in shape):
        raise ValueError(f"shape={shape!r} must be positive sizes")
    _check_overlap(overlap)
    divs = (int(divisor),) * ndim if np.isscalar(divisor) else tuple(int(d) for d in divisor)
    mins = (
        tuple(4 * d for d in divs)
        if min_size is None
        else ((int(min_size),) * ndim if np.isscalar(min_size) else tuple(int(m) for m in min_size))
    )
    if len(divs) != ndim or len(mins) != ndim or min(divs) < 1 or min(mins) < 1:
        raise ValueError(f"divisor={divisor!r} / min_size={min_size!r} must be positive, one per axis of {shape}")
    mins = tuple(-(-m // d) * d for m, d in zip(mins, divs))
    if isinstance(max_voxels, bool) or int(max_voxels) < math.prod(mins):
        raise ValueError(
            f"max_voxels={max_voxels!r} is smaller than the smallest window {mins} ({math.prod(mins)} voxels)"
        )

    def options(size: int, d: int, low: int) -> list[tuple[int, int]]:
        out, seen = [], set()
        for n in range(1, max_windows_per_axis + 1):
            span = size if n == 1 else size / (n - (n - 1) * overlap)
            w = max(low, int(math.ceil(span / d)) * d)
            if w not in seen and len(window_starts(size, w, overlap)) <= n:
                seen.add(w)
                out.append((len(window_starts(size, w, overlap)), w))
            if w == low:
                break
        return out

    per_axis = [options(s, d, m) for s, d, m in zip(shape, divs, mins)]
    best: tuple[tuple[int, int], tuple[int, ...]] | None = None
    for combo in itertools.product(*per_axis):
        window = tuple(w for _, w in combo)
        if math.prod(window) > max_voxels:
            continue
        key = (math.prod(n * w for n, w in combo), math.prod(n for n, _ in combo))
        if best is None or key < best[0]:
            best = (key, window)
    if best is None:  # unreachable: the smallest windows fit (checked above) and cover any size with enough n
        raise ValueError(
            f"no window of at most {max_voxels} voxels covers {shape} with {max_windows_per_axis} windows per axis"
        )
    return best[1]


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
    _check_overlap(overlap)
    _check_batch_size(batch_size)
    weight = importance_map(roi_t, mode, sigma_scale, min_weight).astype(np.float64)

    pads = [((max(r - s, 0)) // 2, max(r - s, 0) - (max(r - s, 0)) // 2) for s, r in zip(spatial, roi_t)]
    padded_spatial = tuple(s + a + b for s, (a, b) in zip(spatial, pads))
    if any(p != (0, 0) for p in pads) and pad_mode != "constant":
        padded = np.pad(image, pads + [(0, 0)], mode=pad_mode)
        pads_done = [(0, 0)] * ndim
    else:  # constant padding is applied per window: no padded copy of the whole image
        padded, pads_done = image, pads

    def window_of(sl: tuple[slice, ...]) -> np.ndarray:
        """The window ``sl`` (padded coordinates), ``cval`` outside the image."""
        src = tuple(
            slice(max(w.start - a, 0), min(w.stop - a, n)) for w, (a, _), n in zip(sl, pads_done, padded.shape[:ndim])
        )
        if all(s.stop - s.start == r for s, r in zip(src, roi_t)):
            return padded[src]
        out = np.full(roi_t + padded.shape[ndim:], cval, dtype=padded.dtype)
        out[tuple(slice(s.start + a - w.start, s.stop + a - w.start) for s, w, (a, _) in zip(src, sl, pads_done))] = (
            padded[src]
        )
        return out

    starts = [window_starts(s, r, float(overlap)) for s, r in zip(padded_spatial, roi_t)]
    windows = [tuple(slice(a, a + r) for a, r in zip(corner, roi_t)) for corner in itertools.product(*starts)]

    total: np.ndarray | None = None
    norm = np.zeros(padded_spatial, dtype=np.float64)
    batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="windows", unit="batch", leave=False)
    for chunk in batches:
        x = np.stack([window_of(sl) for sl in chunk]).astype(np.float32, copy=False)
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
    flips = mirror_flips(predictor, axes)

    def tta(batch: np.ndarray) -> np.ndarray:
        acc: np.ndarray | None = None
        for flipped in flips:
            y = flipped(batch)
            acc = y.astype(np.float64) if acc is None else acc + y
        return (acc / len(flips)).astype(np.float32)

    return tta


def check_mirror_axes(axes: Any) -> tuple[int, ...]:
    """``axes`` as a tuple of distinct spatial axes among 0, 1, 2; ``ValueError`` otherwise."""
    vals = [axes] if np.isscalar(axes) else list(axes)
    if len(set(vals)) != len(vals) or any(
        isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not 0 <= a <= 2 for a in vals
    ):
        raise ValueError(f"mirror_axes={axes!r} must be distinct spatial axes among 0, 1, 2")
    return tuple(int(a) for a in vals)


def mirror_flips(predictor: BatchPredictor, axes: Sequence[int] = (0, 1, 2)) -> list[BatchPredictor]:
    """The members of :func:`mirror_tta`: one batch predictor per subset of ``axes`` (the first unflipped).

    Each flips its input batch, calls ``predictor`` and flips the output back, so every member
    returns probabilities on the input's grid (for the variance across flips,
    :func:`brainseg_tf.uncertainty.member_variance`).
    """
    axes = check_mirror_axes(axes)
    combos = [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]

    def member(combo: tuple[int, ...]) -> BatchPredictor:
        flip = tuple(a + 1 for a in combo)

        def fn(batch: np.ndarray) -> np.ndarray:
            x = np.ascontiguousarray(np.flip(batch, flip)) if flip else batch
            y = _as_numpy(predictor(x))
            return np.flip(y, flip) if flip else y

        return fn

    return [member(c) for c in combos]


# ----------------------------------------------------------------------------- postprocessing


def probabilities_to_labels(
    probabilities: np.ndarray, head: str = "softmax", threshold: float = 0.5, region: str | None = None
) -> np.ndarray:
    """Canonical labels ``(...)`` uint8 from probabilities ``(..., K)``.

    Args:
        probabilities: softmax class probabilities ``(..., 4)`` (BG, NCR, ED, ET), sigmoid region
            probabilities ``(..., 3)`` (WT, TC, ET), or one region's ``(..., 1)``.
        head: ``"softmax"`` (argmax), ``"sigmoid"`` (each region ``> threshold``, then nested:
            ET -> 3, TC without ET -> 1, WT without TC -> 2) or ``"region"`` (the one region
            ``> threshold``, labelled as the nested rule labels that region alone: WT -> 2 ED,
            TC -> 1 NCR, ET -> 3 ET).
        threshold: region threshold for sigmoid and region heads.
        region: the region of a ``"region"`` head.
    """
    if head == "softmax":
        return np.argmax(probabilities, axis=-1).astype(np.uint8)
    if head == "sigmoid":
        return regions_to_labels(probabilities > threshold)
    if head == "region":
        masks = np.zeros(probabilities.shape[:-1] + (len(REGIONS),), dtype=bool)
        masks[..., region_index(region or "")] = probabilities[..., 0] > threshold
        return regions_to_labels(masks)
    raise ValueError(f"head={head!r} is unknown; expected one of {HEADS}")


def postprocess(
    labels: np.ndarray, *, et_min_voxels: int = 0, min_component_voxels: int = 0, largest_component: Sequence[str] = ()
) -> np.ndarray:
    """BraTS postprocessing of canonical labels (the model card's rules); returns a new uint8 array.

    The rules of :mod:`brainseg_tf.postprocessing`, in its fixed order:

    1. Each region in ``largest_component`` keeps only its largest 26-connected component; its
       other voxels are demoted (ET -> NCR, TC -> ED, WT -> BG).
    2. Connected components (26-connectivity) of the whole tumour (labels 1-3) with fewer than
       ``min_component_voxels`` voxels are set to background.
    3. When the remaining enhancing tumour (label 3) has fewer than ``et_min_voxels`` voxels in
       total, it is relabelled NCR (1): a tiny ET prediction in a case without ET costs the whole
       ET Dice, a missing one costs nothing under the legacy empty-mask rule.

    Args:
        labels: ``(X, Y, Z)`` (or 2D) canonical labels.
        et_min_voxels: ET volume threshold in voxels (0 disables; choose it on validation).
        min_component_voxels: smallest whole-tumour component kept (0 disables).
        largest_component: regions (``"WT"``, ``"TC"``, ``"ET"``) reduced to their largest component.
    """
    _check_voxel_count("et_min_voxels", et_min_voxels)
    _check_voxel_count("min_component_voxels", min_component_voxels)
    rules = Postprocessing(
        et_min_voxels=int(et_min_voxels),
        min_component_voxels=int(min_component_voxels),
        largest_component=[str(r) for r in largest_component],
    )
    return postprocessing_rules.apply(labels, rules)


# ----------------------------------------------------------------------------- predictors

# Predictor keyword overrides and the card fields they replace.
_OVERRIDES = {
    "modalities": "modalities",
    "head": "head",
    "region": "region",
    "roi": "roi",
    "logits": "logits",
    "et_min_voxels": "postprocessing.et_min_voxels",
    "min_component_voxels": "postprocessing.min_component_voxels",
    "threshold": "postprocessing.region_threshold",
    "region_threshold": "postprocessing.region_threshold",
    "largest_component": "postprocessing.largest_component",
    "preprocessing": "preprocessing",
    "window": "inference.window",
    "overlap": "inference.overlap",
    "max_window_voxels": "inference.max_window_voxels",
    "divisor": "inference.divisor",
    "min_window": "inference.min_window",
}


@dataclass
class Predictor:
    """A batch predictor plus what inference needs to know about it (its model card).

    Attributes:
        fn: callable mapping float32 ``(B, *roi, C)`` to **probabilities** ``(B, *roi, K)``
            (a model returning logits is wrapped so that ``fn`` applies the activation).
        modalities: canonical modality names in input-channel order.
        head: ``"softmax"`` (K = 4 classes), ``"sigmoid"`` (K = 3 regions WT, TC, ET) or
            ``"region"`` (K = 1, the region ``region``).
        region: the region of a ``"region"`` head (``"WT"``, ``"TC"`` or ``"ET"``).
        roi: default window size (``spatial_dims`` entries), or ``None`` for 128 per axis; for a
            2D model with ``resize``, the size every slice is resized to.
        spatial_dims: 3 for volume models; 2 for slice models (run over the slices of ``plane``).
        et_min_voxels, min_component_voxels, largest_component: defaults of :func:`postprocess`.
        threshold: region threshold of sigmoid / region heads.
        preprocessing: keyword arguments of :func:`brainseg_tf.data.preprocess.preprocess_case`.
        resize: 2D models: in-plane size slices are resized to (bilinear) before the model, or ``None``.
        plane: 2D models: ``"axial"`` (slices along Z), ``"coronal"`` (Y) or ``"sagittal"`` (X).
        inference: default window plan and overlap of :func:`predict_case` (the card's section).
        model: the underlying Keras model or loaded SavedModel (kept alive), if any.
        source: where it was loaded from.
        card: the model card it was built from, if any.
    """

    fn: BatchPredictor
    modalities: tuple[str, ...] = MODALITIES
    head: str = "softmax"
    region: str | None = None
    roi: tuple[int, ...] | None = None
    spatial_dims: int = 3
    et_min_voxels: int = 0
    min_component_voxels: int = 0
    threshold: float = 0.5
    preprocessing: dict[str, Any] = field(default_factory=dict)
    largest_component: tuple[str, ...] = ()
    resize: tuple[int, int] | None = None
    plane: str = "axial"
    inference: Inference = field(default_factory=Inference)
    model: Any = None
    source: str | None = None
    card: ModelCard | None = None

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(f"modalities={self.modalities!r} must be names from {MODALITIES}")
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r} is unknown; expected one of {HEADS}")
        if self.head == "region":
            if self.region is None:
                raise ValueError("head='region' needs region= ('WT', 'TC' or 'ET')")
            self.region = REGIONS[region_index(self.region)]
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims={self.spatial_dims!r} must be 2 or 3")
        if self.roi is not None:
            self.roi = _check_spatial("roi", self.roi, self.spatial_dims)
        if self.resize is not None:
            self.resize = _check_spatial("resize", self.resize, 2)
        if self.plane not in _PLANE_AXIS:
            raise ValueError(f"plane={self.plane!r} must be one of {tuple(_PLANE_AXIS)}")
        if self.inference.window not in WINDOWS or self.inference.window == "auto" and self.spatial_dims != 3:
            raise ValueError(f"inference.window={self.inference.window!r} must be one of {WINDOWS} ('auto': 3D only)")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return _as_numpy(self.fn(batch))

    @property
    def num_outputs(self) -> int:
        return {"softmax": 4, "sigmoid": 3, "region": 1}[self.head]

    @property
    def metadata(self) -> dict[str, Any]:
        """The model card as a dict (empty for a bare callable)."""
        return {} if self.card is None else self.card.to_dict()

    def to_card(self) -> ModelCard:
        """This predictor's card: the one it was loaded with, updated with its current fields."""
        base = self.card or ModelCard(
            modalities=list(self.modalities), head=self.head, region=self.region, spatial_dims=self.spatial_dims
        )
        pre = dataclasses.replace(
            base.preprocessing,
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.preprocessing.items()},
            resize=None if self.resize is None else list(self.resize),
            plane=self.plane,
        )
        post = Postprocessing(
            et_min_voxels=int(self.et_min_voxels),
            min_component_voxels=int(self.min_component_voxels),
            region_threshold=float(self.threshold),
            largest_component=list(self.largest_component),
        )
        return dataclasses.replace(
            base,
            modalities=list(self.modalities),
            head=self.head,
            region=self.region,
            roi=None if self.roi is None else list(self.roi),
            spatial_dims=self.spatial_dims,
            preprocessing=pre,
            postprocessing=post,
            inference=dataclasses.replace(self.inference),
        )

    @classmethod
    def from_card(cls, fn: BatchPredictor, card: ModelCard, **kwargs: Any) -> Predictor:
        """A predictor whose fields are the card's (``fn`` must already return probabilities)."""
        return cls(
            fn=fn,
            modalities=tuple(card.modalities),
            head=card.head,
            region=card.region,
            roi=None if card.roi is None else tuple(card.roi),
            spatial_dims=card.spatial_dims,
            et_min_voxels=card.postprocessing.et_min_voxels,
            min_component_voxels=card.postprocessing.min_component_voxels,
            threshold=card.postprocessing.region_threshold,
            preprocessing=card.preprocessing.case_options(),
            largest_component=tuple(card.postprocessing.largest_component),
            resize=None if card.preprocessing.resize is None else tuple(card.preprocessing.resize),
            plane=card.preprocessing.plane,
            inference=dataclasses.replace(card.inference),
            card=card,
            **kwargs,
        )

    @classmethod
    def from_keras(cls, model: Any, card: ModelCard | Mapping[str, Any] | None = None, **overrides: Any) -> Predictor:
        """Wrap a Keras model with its card (a :class:`ModelCard`, its dict, or explicit ``overrides``).

        Without a card, ``modalities`` and ``head`` (and ``region`` for a region head) must be
        given; ``logits`` is read from the model's last layer when not given, the roi from a
        fixed input size.

        Raises:
            brainseg_tf.card.CardError: no card and missing arguments.
        """
        import tensorflow as tf

        card = _card_for(card, overrides, _keras_facts(model))

        @tf.function(reduce_retracing=True)
        def forward(x):
            out = model(x, training=False)
            if isinstance(out, (list, tuple)):  # deep supervision: the full-resolution output first
                out = out[0]
            return tf.cast(out, tf.float32)

        fn = _with_activation(lambda b: forward(tf.convert_to_tensor(b, dtype=tf.float32)), card)
        return cls.from_card(fn, card, model=model)


def _with_activation(fn: BatchPredictor, card: ModelCard) -> BatchPredictor:
    """``fn`` returning probabilities: the card's activation applied when the model returns logits."""
    if not card.logits:
        return lambda batch: _as_numpy(fn(batch))
    return lambda batch: _activate(_as_numpy(fn(batch)), card.head)


def _activate(scores: np.ndarray, head: str) -> np.ndarray:
    if head in ("sigmoid", "region"):
        return (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _keras_facts(model: Any) -> dict[str, Any]:
    """What a Keras model shows about itself: spatial dims, a fixed roi, and whether it ends in logits."""
    shape = tuple(model.inputs[0].shape)
    spatial = shape[1:-1]
    facts: dict[str, Any] = {"spatial_dims": len(spatial)}
    if spatial and all(isinstance(s, int) for s in spatial):
        facts["roi"] = list(spatial)
    last = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if activation in ("softmax", "sigmoid"):
        facts["logits"] = False
    elif activation == "linear":
        facts["logits"] = True
    return facts


def _set_field(card: ModelCard, key: str, value: Any) -> ModelCard:
    target = _OVERRIDES.get(key)
    if target is None:
        raise ValueError(f"{key}= is not a predictor setting; expected one of {sorted(_OVERRIDES)}")
    if target == "preprocessing":
        value = dataclasses.replace(card.preprocessing, **dict(value))
    section, _, name = target.partition(".")
    if name:
        return dataclasses.replace(card, **{section: dataclasses.replace(getattr(card, section), **{name: value})})
    return dataclasses.replace(card, **{section: list(value) if isinstance(value, tuple) else value})


def _card_for(
    card: ModelCard | Mapping[str, Any] | None, overrides: Mapping[str, Any], facts: Mapping[str, Any]
) -> ModelCard:
    """The card to use: the given one (or its dict) updated with ``overrides``, else one from arguments."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(card, Mapping):
        card = ModelCard.from_dict(card)
    if card is None:
        args = {
            **facts,
            **{k: v for k, v in overrides.items() if k in ("modalities", "head", "region", "logits", "roi")},
        }
        card = from_arguments(**args)
    for key, value in overrides.items():
        card = _set_field(card, key, value)
    card.validate()
    if "spatial_dims" in facts and facts["spatial_dims"] != card.spatial_dims:
        raise CardError(
            f"the model card says spatial_dims={card.spatial_dims}; the model takes {facts['spatial_dims']}D input"
        )
    return card


def _import_registries() -> None:
    """Import the modules that register custom layers/losses/metrics/schedules."""
    import importlib

    for mod in ("brainseg_tf.models", "brainseg_tf.losses", "brainseg_tf.metrics", "brainseg_tf.training.schedules"):
        importlib.import_module(mod)


def load_keras_model(path: str | Path, *, compile: bool = False, safe_mode: bool = True) -> Any:
    """Load a ``.keras`` file (uncompiled by default, in Keras safe mode) with brainseg_tf's objects.

    Raises:
        ValueError: the file is not a complete ``.keras`` archive (e.g. truncated by a kill).
    """
    import zipfile

    import keras

    try:  # Keras reports a damaged archive as "File not found"; say what is wrong with it
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path}: not a complete .keras file ({exc}); it may have been cut short by a kill") from None
    if "config.json" not in names:
        raise ValueError(f"{path}: not a .keras file (the archive holds no config.json)")
    _import_registries()
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
    card = _card_for(card, overrides, {"spatial_dims": len(in_spec.shape) - 2})

    def call(batch: np.ndarray) -> np.ndarray:
        return sig(**{in_name: tf.constant(batch, dtype=tf.float32)})[out_key].numpy()

    return Predictor.from_card(_with_activation(call, card), card, model=loaded, source=str(folder))


# ----------------------------------------------------------------------------- backends

BACKENDS = ("keras", "onnxruntime")
ONNX_FILE = "model.onnx"


class OptionalDependencyError(ImportError):
    """An optional extra is not installed; the message names the ``pip install`` that adds it."""


def import_optional(module: str, extra: str) -> Any:
    """Import ``module`` of the optional extra ``brainseg_tf[extra]``, or raise :class:`OptionalDependencyError`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OptionalDependencyError(
            f"{module} is not installed ({exc}); install brainseg_tf[{extra}]: pip install 'brainseg_tf[{extra}]'"
        ) from None


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
    import os

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
    card = _card_for(card, overrides, {"spatial_dims": len(inputs[0].shape) - 2})

    def call(batch: np.ndarray) -> np.ndarray:
        return session.run([out_name], {in_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return Predictor.from_card(_with_activation(call, card), card, model=session, source=str(path))


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
            ``roi``, ``logits``, ``et_min_voxels``, ``min_component_voxels``, ``threshold``). A model
            without a card needs at least ``modalities`` and ``head``.

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
                warnings.warn(f"{failures[0]}; using {path / name} instead", stacklevel=2)
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


def _from_keras_file(path: Path, card: ModelCard | None, overrides: dict[str, Any]) -> Predictor:
    model = load_keras_model(path)
    pred = Predictor.from_keras(model, card, **overrides)
    pred.source = str(path)
    return pred


class Ensemble:
    """Several predictors combined into one prediction (folds, architectures, one model per region).

    * Members with the same head (``softmax``, ``sigmoid``, or ``region`` of one region) are
      averaged: the mean of their probabilities (folds, different architectures).
    * ``region`` members of different regions are stacked into sigmoid regions ``(WT, TC, ET)``
      (members of the same region averaged; a region no member predicts is empty), which the
      nested rule turns into labels: ZNet's one model per region.

    Each member reads the case with its own modalities and preprocessing (its card); the
    probabilities are combined on the native grid. Postprocessing defaults are the first member's.
    """

    def __init__(self, members: Sequence[Predictor | str | Path]):
        self.members = [m if isinstance(m, Predictor) else load_predictor(m) for m in members]
        if not self.members:
            raise ValueError("an ensemble needs at least one model")
        heads = {m.head for m in self.members}
        if len(heads) > 1:
            raise ValueError(
                f"models with heads {sorted(heads)} cannot be combined; use models of one head "
                "(softmax, sigmoid) or single-region models"
            )
        self.head = heads.pop()
        regions = sorted({m.region for m in self.members if m.region}, key=REGIONS.index)
        if self.head == "region" and len(regions) > 1:
            self.head, self.region = "sigmoid", None
        else:
            self.region = regions[0] if regions else None
        first = self.members[0]
        self.et_min_voxels, self.min_component_voxels = first.et_min_voxels, first.min_component_voxels
        self.threshold = first.threshold
        self.largest_component = first.largest_component
        self.stacks_regions = first.head == "region" and self.head == "sigmoid"

    @property
    def num_outputs(self) -> int:
        return {"softmax": 4, "sigmoid": 3, "region": 1}[self.head]

    def combine(self, member_probabilities: Sequence[np.ndarray]) -> np.ndarray:
        """Combine native-grid member probabilities ``(X, Y, Z, K)`` in member order."""
        if not self.stacks_regions:
            acc = np.zeros(member_probabilities[0].shape, np.float64)
            for p in member_probabilities:
                acc += p
            return (acc / len(member_probabilities)).astype(np.float32)
        shape = member_probabilities[0].shape[:-1]
        out = np.zeros(shape + (len(REGIONS),), np.float32)
        for r, region in enumerate(REGIONS):
            probs = [p[..., 0] for m, p in zip(self.members, member_probabilities) if m.region == region]
            if probs:
                out[..., r] = np.mean(probs, axis=0)
        return out


def _as_predictor(model: Any) -> Predictor | Ensemble:
    if isinstance(model, (Predictor, Ensemble)):
        return model
    if isinstance(model, (str, Path)):
        return load_predictor(model)
    if isinstance(model, (list, tuple)):
        return Ensemble(model) if len(model) > 1 else _as_predictor(model[0])
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
        probabilities: ``(X, Y, Z, K)`` float32 (softmax classes, sigmoid regions WT, TC, ET, or the
            one region of a region head) on the native grid, or ``None`` when not requested.
            Outside the brain box: class BG = 1, every region 0.
        head: ``"softmax"``, ``"sigmoid"`` or ``"region"``.
        reference: the source case without its image (affine, header, convention, shape, label).
        geometry: the preprocessing geometry (crop box) of the (first) model.
        seconds: wall time of the prediction (preprocessing to paste-back).
        uncertainty: ``(X, Y, Z)`` float32 in [0, 1] on the native grid (0 outside the brain box),
            or ``None`` when not requested (:mod:`brainseg_tf.uncertainty`).
        uncertainty_kind: ``"entropy"`` or ``"variance"`` (across ensemble members and TTA flips).
        uncertainty_score: :func:`brainseg_tf.uncertainty.case_score` of the map and the labels.
    """

    case_id: str
    labels: np.ndarray
    probabilities: np.ndarray | None
    head: str
    reference: bio.Case
    geometry: Geometry
    seconds: float = 0.0
    uncertainty: np.ndarray | None = None
    uncertainty_kind: str | None = None
    uncertainty_score: float | None = None

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

    def write_uncertainty(self, path: str | Path) -> Path:
        """Write the uncertainty map as a float32 3D NIfTI with the source's affine (atomically)."""
        if self.uncertainty is None:
            raise ValueError("this prediction has no uncertainty map; predict with uncertainty='auto'")
        return bio.save_nifti(
            self.uncertainty, path, affine=self.reference.affine, header=self.reference.header, dtype=np.float32
        )


def check_window_arguments(
    *,
    roi: Any = None,
    overlap: float | None = None,
    batch_size: int = 1,
    et_min_voxels: Any = None,
    min_component_voxels: Any = None,
    largest_component: Any = None,
    mirror_axes: Any = None,
    **_: Any,
) -> None:
    """Raise ``ValueError`` for bad sliding-window / postprocessing arguments, before any case is read."""
    if mirror_axes is not None:
        check_mirror_axes(mirror_axes)
    if largest_component is not None:
        if isinstance(largest_component, str):
            raise ValueError(f"largest_component={largest_component!r} must be a list of regions, e.g. ['WT']")
        for region in largest_component:
            region_index(region)
    if isinstance(roi, str):
        if roi not in WINDOWS:
            raise ValueError(f"roi={roi!r} must be {' or '.join(map(repr, WINDOWS))} or window sizes")
    elif roi is not None:
        vals = [roi] if np.isscalar(roi) else list(roi)
        if not vals or any(
            v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1) for v in vals
        ):
            raise ValueError(f"roi={roi!r} must hold positive integers (or None for the full extent)")
    if overlap is not None:
        _check_overlap(overlap)
    _check_batch_size(batch_size)
    for name, value in (("et_min_voxels", et_min_voxels), ("min_component_voxels", min_component_voxels)):
        if value is not None:
            _check_voxel_count(name, value)


def _resized_slices(pred: Predictor) -> BatchPredictor:
    """A 2D batch predictor that resizes each slice to ``pred.resize`` and the output back (bilinear)."""
    import tensorflow as tf

    size = list(pred.resize)

    def fn(batch: np.ndarray) -> np.ndarray:
        x = tf.image.resize(tf.convert_to_tensor(batch, tf.float32), size, method="bilinear")
        y = pred(x.numpy())
        return tf.image.resize(tf.convert_to_tensor(y), list(batch.shape[1:3]), method="bilinear").numpy()

    return fn


def _model_probabilities(
    pred: Predictor,
    case: bio.Case,
    *,
    roi: Any,
    overlap: float,
    batch_size: int,
    mode: str,
    sigma_scale: float,
    tta: bool,
    mirror_axes: Sequence[int] | None,
    progress: bool,
    moments: bool = False,
    release: bool = False,
) -> tuple[np.ndarray, Geometry, bool, np.ndarray | None]:
    """One model's probabilities: ``(probs, geometry, on_native_grid, second_moment)``.

    With ``moments`` and mirror TTA, each flip goes through its own sliding window (the blend is
    linear, so their mean is the TTA mean up to float rounding) and ``second_moment`` is the mean
    of the squared flip outputs (:class:`brainseg_tf.uncertainty.Moments`); with ``moments`` and
    no TTA it is ``probs ** 2``; otherwise ``None``.

    The image is preprocessed exactly as the card says training saw it: ``preprocess_case`` with
    the card's options; a 2D model trained without the brain crop sees the z-scored image pasted
    back onto the native grid (as ``slice_dataset(crop=False)`` does) and its slices resized.
    """
    overlap = pred.inference.overlap if overlap is None else overlap
    options = dict(pred.preprocessing)
    native = options.get("crop", True) is False
    pre = preprocess_case(case, **{**options, "crop": True})
    if release:  # the native image (240x240x155x4 float32: 143 MB) is not needed during the forwards
        case.image = None
    idx = [MODALITIES.index(m) for m in pred.modalities]
    image = pre.image if idx == list(range(pre.image.shape[-1])) else np.ascontiguousarray(pre.image[..., idx])
    del pre.image
    if native:
        image = paste_back(image, pre.geometry, fill=0.0)

    fn: BatchPredictor = pred
    axis = 2
    if pred.spatial_dims == 2:
        axis = _PLANE_AXIS[pred.plane]
        image = np.moveaxis(image, axis, 2)  # slices along the last spatial axis
        if isinstance(roi, str) and roi != "patch" or roi is None and pred.inference.window != "patch":
            raise ValueError(f"roi={roi or pred.inference.window!r}: planned windows are for 3D models only")
        if roi == "patch":
            roi = None
        if pred.resize is not None:
            if roi is not None:
                raise ValueError(f"roi={roi!r}: this 2D model resizes whole slices to {pred.resize}; omit roi")
            window = tuple(image.shape[:2]) + (1,)
            slice_fn = _resized_slices(pred)
        else:
            window = _check_spatial("roi", roi if roi is not None else (pred.roi or DEFAULT_ROI), 2) + (1,)
            slice_fn = pred
        axes = (0, 1) if mirror_axes is None else tuple(mirror_axes)

        def fn(batch: np.ndarray) -> np.ndarray:  # (B, rx, ry, 1, C) -> 2D model -> (B, rx, ry, 1, K)
            return _as_numpy(slice_fn(np.ascontiguousarray(batch[:, :, :, 0, :])))[:, :, :, None, :]

    else:
        window = _window_for(pred, roi, image.shape[:3], overlap)
        axes = (0, 1, 2) if mirror_axes is None else tuple(mirror_axes)
    window_kwargs = dict(
        roi=window, overlap=overlap, batch_size=batch_size, mode=mode, sigma_scale=sigma_scale, progress=progress
    )
    second = None
    if moments and tta and axes:
        acc = unc.Moments()
        for flipped in mirror_flips(fn, axes):
            acc.add(sliding_window(flipped, image, **window_kwargs))
        probs, second = acc.mean, acc.second
    else:
        if tta and axes:
            fn = mirror_tta(fn, axes)
        probs = sliding_window(fn, image, **window_kwargs)
        if moments:
            second = probs * probs
    del image
    if pred.spatial_dims == 2:
        probs = np.moveaxis(probs, 2, axis)
        second = None if second is None else np.moveaxis(second, 2, axis)
    if probs.shape[-1] != pred.num_outputs:
        raise ValueError(f"the model returned {probs.shape[-1]} channels; a {pred.head} head needs {pred.num_outputs}")
    return probs, pre.geometry, native, second


def _window_for(pred: Predictor, roi: Any, shape: Sequence[int], overlap: float) -> tuple[int, ...]:
    """A 3D model's window for an image of spatial ``shape``: ``roi`` as given, the card's patch
    (``"patch"``), or planned (``"auto"``, :func:`plan_window`: never smaller than the card's
    ``inference.min_window``, by default the patch);
    ``None`` takes the card's ``inference.window``."""
    mode = pred.inference.window if roi is None else roi if isinstance(roi, str) else None
    patch = _check_spatial("roi", pred.roi or DEFAULT_ROI, 3)
    if mode is None:
        return _check_spatial("roi", roi, 3)
    if mode == "patch":
        return patch
    divisor = pred.inference.divisor
    if divisor is None:
        if pred.card is None or pred.card.model is None:
            raise ValueError(
                "roi='auto' plans windows from the model's input-size divisor, which this model's "
                "card does not give (no inference.divisor, no registry model); pass roi sizes"
            )
        from brainseg_tf.models.registry import get_spec

        divisor = get_spec(pred.card.model).size_divisor(pred.card.options)
    smallest = _check_spatial("min_window", pred.inference.min_window or patch, 3)
    return plan_window(
        shape,
        overlap=overlap,
        divisor=divisor,
        min_size=smallest,
        max_voxels=max(pred.inference.max_window_voxels, math.prod(smallest)),
    )


def _to_native(probs: np.ndarray, geometry: Geometry, head: str) -> np.ndarray:
    """Probabilities pasted onto the native grid: BG = 1 outside the box for softmax, 0 elsewhere."""
    native = paste_back(probs, geometry, fill=0.0)
    if head == "softmax":
        native[..., 0] = paste_back(probs[..., 0], geometry, fill=1.0)
    return native


def predict_case(
    model: Predictor | Ensemble | str | Path | Sequence[str | Path] | Any,
    case: bio.Case | bio.CaseRef | str | Path,
    *,
    roi: int | Sequence[int] | str | None = None,
    overlap: float | None = None,
    batch_size: int = 1,
    mode: str = "gaussian",
    sigma_scale: float = 0.125,
    tta: bool = False,
    mirror_axes: Sequence[int] | None = None,
    et_min_voxels: int | None = None,
    min_component_voxels: int | None = None,
    largest_component: Sequence[str] | None = None,
    return_probabilities: bool = False,
    uncertainty: str | bool | None = None,
    progress: bool = False,
    release_image: bool = False,
) -> Prediction:
    """Segment one case and return labels on its native grid.

    Each model's card says how to prepare the image (:func:`_model_probabilities`): crop, margin,
    z-score, reorientation, resampling and, for 2D models, plane and slice resize; the model's
    modalities are selected by name; the prepared image goes through :func:`sliding_window`;
    probabilities become labels (argmax; thresholded nested regions), are postprocessed and
    pasted back onto the native grid. Several models (a list or an :class:`Ensemble`) are combined
    on the native grid.

    Args:
        model: a :class:`Predictor` or :class:`Ensemble`, a path for :func:`load_predictor`, a list
            of paths (an ensemble), a Keras model or a batch callable (4 canonical channels in, 4
            softmax classes out).
        case: a :class:`brainseg_tf.io.Case`, or a case path / :class:`~brainseg_tf.io.CaseRef` for
            :func:`brainseg_tf.io.read_case` (images only, not the mask; the image is freed as soon
            as it is preprocessed).
        roi: window size; ``"patch"``: the card's roi (else 128 per axis); ``"auto"``: planned per
            case (:func:`plan_window`, 3D models); ``None`` (default): the card's
            ``inference.window`` (``"patch"`` for cards that have none). For a 2D model a 2-entry roi.
        overlap: window overlap in [0, 1); ``None`` (default): the card's ``inference.overlap``
            (0.5 for cards that have none).
        batch_size: windows per forward pass. Defaults to 1.
        mode: ``"gaussian"`` (default) or ``"constant"`` blending.
        sigma_scale: Gaussian sigma as a fraction of the roi. Defaults to 0.125.
        tta: average over mirrored inputs (``mirror_axes``). Defaults to ``False``.
        mirror_axes: spatial axes mirrored with ``tta``; default all (3D: 8 flips; 2D: 4 flips).
        et_min_voxels: ET -> NCR threshold; ``None`` takes the card's value.
        min_component_voxels: component-size threshold; ``None`` takes the card's value.
        largest_component: regions kept to their largest component; ``None`` takes the card's.
        return_probabilities: also return the pasted-back probability maps.
        uncertainty: also return a per-voxel uncertainty map and its case score
            (:mod:`brainseg_tf.uncertainty`): ``"entropy"``, ``"variance"`` (across ensemble
            members and TTA flips) or ``"auto"``/``True`` (variance where there are several
            outputs, else entropy); ``None``/``False``: none.
        progress: progress bar over windows.
        release_image: free ``case.image`` as soon as it is preprocessed (a single model; the
            case cannot be predicted again). Always done for a case this function reads itself.

    Returns:
        A :class:`Prediction`.

    Raises:
        ValueError: bad window arguments, or the model's modalities/outputs do not fit.
        brainseg_tf.io.DataError: unreadable case files.
    """
    start = time.perf_counter()
    check_window_arguments(
        roi=roi,
        overlap=overlap,
        batch_size=batch_size,
        et_min_voxels=et_min_voxels,
        min_component_voxels=min_component_voxels,
        largest_component=largest_component,
        mirror_axes=mirror_axes,
    )
    pred = _as_predictor(model)
    if not isinstance(case, bio.Case):
        case = bio.read_case(case, load_label=False)  # prediction never reads the mask
        release_image = True
    reference = dataclasses.replace(case, image=None)
    window = dict(
        roi=roi,
        overlap=overlap,
        batch_size=batch_size,
        mode=mode,
        sigma_scale=sigma_scale,
        tta=tta,
        mirror_axes=mirror_axes,
        progress=progress,
    )
    members = pred.members if isinstance(pred, Ensemble) else [pred]
    kind = None
    if uncertainty not in (None, False):
        flips = 2 ** len(mirror_axes) if mirror_axes is not None else 2  # the default axes give >= 4 flips
        kind = unc.resolve_kind(uncertainty, members=len(members), flips=flips if tta else 1)
    release = release_image and len(members) == 1  # ensemble members each preprocess the image
    results = [_model_probabilities(m, case, moments=kind == "variance", release=release, **window) for m in members]
    del case  # the native image is no longer needed (freed here unless the caller holds it)
    geometry = results[0][1]
    if isinstance(pred, Ensemble):
        probs = pred.combine(
            [p if native else _to_native(p, g, m.head) for m, (p, g, native, _) in zip(members, results)]
        )
        # Averaging the second moments too gives the variance over all members' outputs.
        second = (
            None
            if kind != "variance"
            else pred.combine(
                [s if native else _to_native(s, g, m.head) for m, (_, g, native, s) in zip(members, results)]
            )
        )
        on_native = True
    else:
        probs, _, on_native, second = results[0]
    del results
    labels = probabilities_to_labels(probs, pred.head, pred.threshold, region=pred.region)
    labels = postprocess(
        labels,
        et_min_voxels=pred.et_min_voxels if et_min_voxels is None else et_min_voxels,
        min_component_voxels=pred.min_component_voxels if min_component_voxels is None else min_component_voxels,
        largest_component=pred.largest_component if largest_component is None else largest_component,
    )
    native_labels = labels if on_native else paste_back(labels, geometry, fill=0)
    native_probs = None
    if return_probabilities:
        native_probs = probs if on_native else _to_native(probs, geometry, pred.head)
    native_u = score = None
    if kind is not None:
        u = unc.variance_from_moments(probs, second) if kind == "variance" else unc.predictive_entropy(probs, pred.head)
        native_u = u if on_native else paste_back(u, geometry, fill=0.0)
        score = unc.case_score(native_u, native_labels)
    return Prediction(
        case_id=reference.case_id,
        labels=native_labels,
        probabilities=native_probs,
        head=pred.head,
        reference=reference,
        geometry=geometry,
        seconds=time.perf_counter() - start,
        uncertainty=native_u,
        uncertainty_kind=kind,
        uncertainty_score=score,
    )


def predict_folder(
    model: Predictor | Ensemble | str | Path | Sequence[str | Path] | Any,
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
    (float32 ``(X, Y, Z, K)``). With ``uncertainty=`` (passed to :func:`predict_case`) it also
    writes ``out_dir/<case_id>_uncertainty.nii.gz`` (float32 ``(X, Y, Z)``, same affine) and
    ``out_dir/predictions.json``: each case's uncertainty score and the cases ranked from the
    most to the least uncertain (for review). Arguments are checked before any case is read; a
    failing case is recorded and the next one predicted.

    Args:
        model: a :class:`Predictor`/:class:`Ensemble`, a path for :func:`load_predictor`, or a list
            of paths combined into an :class:`Ensemble` (loaded once).
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
        "probabilities", "seconds", "error"}``, plus ``"uncertainty"`` (the case score) and
        ``"uncertainty_map"`` (its file) with ``uncertainty=``.

    Raises:
        ValueError: an unknown ``convention``, bad window arguments, or case ids not in the dataset.
        brainseg_tf.io.DataError / MissingFileError: ``input`` is not a dataset or case folder.
    """
    if convention is not None:
        get_convention(convention)
    check_window_arguments(**predict_kwargs)
    want_uncertainty = predict_kwargs.get("uncertainty") not in (None, False)
    if (
        want_uncertainty
        and predict_kwargs["uncertainty"] is not True
        and predict_kwargs["uncertainty"] not in unc.KINDS
    ):
        raise ValueError(f"uncertainty={predict_kwargs['uncertainty']!r} is unknown; expected one of {list(unc.KINDS)}")
    ds = bio.open_dataset(input)
    if case_ids is not None:
        unknown = sorted(set(case_ids) - set(ds.case_ids))
        if unknown:
            raise ValueError(f"case id(s) {unknown} are not in {input} ({len(ds.case_ids)} cases)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: is a file, expected an output folder")
    pred = _as_predictor(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = list(ds.refs if case_ids is None else [ds.ref(cid) for cid in case_ids])
    refs: Iterable = todo
    if progress:
        from tqdm.auto import tqdm

        refs = tqdm(todo, desc="predict", unit="case")
    records: list[dict[str, Any]] = []
    scored = _summary_scores(out_dir) if want_uncertainty and not overwrite else set()

    def complete(ref: bio.CaseRef) -> bool:
        # A case is complete when every output is in place, its summary record included (a run
        # killed before writing the summary re-predicts that case instead of losing its score).
        return (
            out_dir.joinpath(f"{ref.case_id}.nii.gz").exists()
            and not overwrite
            and (not save_probabilities or out_dir.joinpath(f"{ref.case_id}_prob.nii.gz").exists())
            and (
                not want_uncertainty
                or (out_dir.joinpath(f"{ref.case_id}_uncertainty.nii.gz").exists() and ref.case_id in scored)
            )
        )

    skip = [complete(ref) for ref in todo]
    ahead = _ReadAhead([ref for ref, done in zip(todo, skip) if not done])
    try:
        for i, ref in enumerate(refs):
            target = out_dir / f"{ref.case_id}.nii.gz"
            prob_path = out_dir / f"{ref.case_id}_prob.nii.gz"
            unc_path = out_dir / f"{ref.case_id}_uncertainty.nii.gz"
            record: dict[str, Any] = {
                "case_id": ref.case_id,
                "path": str(target),
                "probabilities": None,
                "seconds": 0.0,
                "error": None,
            }
            if want_uncertainty:
                record |= {"uncertainty": None, "uncertainty_map": None}
            if skip[i]:
                records.append(record | {"status": "skipped"})
                continue
            try:
                # The image is passed on, not kept here: predict_case frees it once preprocessed.
                result = predict_case(
                    pred, ahead.take(ref), return_probabilities=save_probabilities, release_image=True, **predict_kwargs
                )
                result.seconds += ahead.waited
                if save_probabilities:
                    record["probabilities"] = str(result.write_probabilities(prob_path))
                if want_uncertainty:
                    record |= {
                        "uncertainty": result.uncertainty_score,
                        "uncertainty_kind": result.uncertainty_kind,
                        "uncertainty_map": str(result.write_uncertainty(unc_path)),
                    }
                result.write(target, convention=convention)
                records.append(record | {"status": "written", "seconds": result.seconds})
            except Exception as exc:  # noqa: BLE001 — one bad case must not stop the folder
                if stop_on_error:
                    raise
                records.append(record | {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
            if want_uncertainty:  # after every case (the cases still to come keep their records): a kill
                # loses at most the case being predicted
                later = [{"case_id": r.case_id, "status": "skipped"} for r in todo[i + 1 :] if r.case_id in scored]
                write_prediction_summary(out_dir, records + later, convention=convention)
    finally:
        ahead.close()
    return records


class _ReadAhead:
    """The images of ``refs``, read one case ahead in a thread (:func:`predict_folder`).

    Reading is gunzip and I/O, which release the GIL, so the next case is read while the current
    one is predicted; at most two cases' images are in memory. :meth:`take` must be called for
    the refs in order; a read error is raised there, for that case only.
    """

    def __init__(self, refs: Sequence[bio.CaseRef]):
        self._refs = iter(refs)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: tuple[str, Any] | None = None
        self.waited = 0.0
        self._read_next()

    def _read_next(self) -> None:
        ref = next(self._refs, None)
        self._pending = None if ref is None else (ref.case_id, self._pool.submit(bio.read_case, ref, load_label=False))

    def take(self, ref: bio.CaseRef) -> bio.Case:
        """``ref``'s case (:attr:`waited`: the seconds spent waiting for it); the next read starts."""
        assert self._pending is not None and self._pending[0] == ref.case_id, (ref.case_id, self._pending)
        future, start = self._pending[1], time.perf_counter()
        try:
            return future.result()
        finally:
            self.waited = time.perf_counter() - start
            self._pending = None
            self._read_next()

    def close(self) -> None:
        if self._pending is not None:
            self._pending[1].cancel()
        self._pool.shutdown(wait=True)


def _summary_scores(out_dir: Path) -> set[str]:
    """Case ids with an uncertainty score in ``out_dir/predictions.json`` (empty when there is none)."""
    from brainseg_tf.evaluation import PREDICTIONS_META

    path = out_dir / PREDICTIONS_META
    old = bio.read_json(path, expect=(dict, list)) if path.is_file() else {}
    cases = old.get("cases", {}) if isinstance(old, dict) else {}
    return {cid for cid, e in cases.items() if isinstance(e, dict) and e.get("uncertainty") is not None}


def write_prediction_summary(
    out_dir: str | Path, records: Sequence[Mapping[str, Any]], *, convention: str | None = None
) -> Path:
    """Write ``out_dir/predictions.json``: per-case records and the cases ranked by uncertainty.

    Skipped cases keep the score an earlier summary recorded for them. The file stays readable by
    :func:`brainseg_tf.evaluation.evaluate_folders` (``"convention"``: the written one, ``None``
    for each source's own; case records carry no convention of their own).
    """
    from brainseg_tf import atomic
    from brainseg_tf.evaluation import PREDICTIONS_META

    path = Path(out_dir) / PREDICTIONS_META
    earlier: dict[str, Any] = {}
    if path.is_file():
        old = bio.read_json(path, expect=(dict, list))
        earlier = old.get("cases", {}) if isinstance(old, dict) else {}
    cases: dict[str, dict[str, Any]] = {}
    for rec in records:
        entry = {k: v for k, v in rec.items() if k != "case_id"}
        previous = earlier.get(rec["case_id"])
        if rec.get("status") == "skipped" and isinstance(previous, dict):
            entry |= {k: previous.get(k) for k in ("uncertainty", "uncertainty_kind", "uncertainty_map")}
        cases[rec["case_id"]] = entry
    scored = [cid for cid, e in cases.items() if e.get("uncertainty") is not None]
    ranking = sorted(scored, key=lambda cid: (-cases[cid]["uncertainty"], cid))
    return atomic.write_json(
        path,
        {
            "convention": convention,
            "cases": cases,
            "ranking": ranking,
            "uncertainty": "per case: mean voxel uncertainty over the predicted tumour dilated by "
            f"{unc.DEFAULT_DILATION} voxels and every voxel >= {unc.DEFAULT_THRESHOLD} "
            "(docs/postprocessing.md); ranking: most uncertain first",
        },
    )


__all__ = [
    "HEADS",
    "Predictor",
    "Ensemble",
    "Prediction",
    "sliding_window",
    "window_starts",
    "plan_window",
    "importance_map",
    "DEFAULT_MAX_WINDOW_VOXELS",
    "mirror_tta",
    "mirror_flips",
    "check_mirror_axes",
    "probabilities_to_labels",
    "postprocess",
    "load_predictor",
    "load_keras_model",
    "predict_case",
    "predict_folder",
    "check_window_arguments",
    "write_prediction_summary",
]
