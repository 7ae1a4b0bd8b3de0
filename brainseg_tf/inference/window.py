"""The sliding-window engine: window placement and planning, Gaussian blending, mirror TTA.

A pure function over any predictor callable mapping a float32 batch ``(B, *window, C)`` to
``(B, *window, K)`` (a Keras model, a reloaded SavedModel, an ONNX session, a lambda); no
TensorFlow is imported here. Images are channels-last ``(X, Y, Z, C)`` (or ``(H, W, C)`` with a
2D window). ``window`` is the sliding-window size everywhere; ``roi=`` is its old name, still
accepted where a function took it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from brainseg_tf.card import WINDOWS
from brainseg_tf.checks import check_fraction, check_int, is_int
from brainseg_tf.conventions import region_index
from brainseg_tf.progress import progress as show_progress

#: Window edge when neither the call nor the model card gives one.
DEFAULT_WINDOW = 128
DEFAULT_ROI = DEFAULT_WINDOW  # the old name

#: Largest window (voxels) :func:`plan_window` proposes by default: memory grows with the window's
#: voxels while the forward cost per voxel does not, so the largest windows that fit forward the
#: fewest voxels (the peak memory of this budget is measured in docs/speed.md).
DEFAULT_MAX_WINDOW_VOXELS = 1_500_000

BatchPredictor = Callable[[np.ndarray], Any]


def as_numpy(output: Any) -> np.ndarray:
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


def window_alias(window: Any, roi: Any) -> Any:
    """``window``, or ``roi`` (its old name) when only that is given; ``ValueError`` for both."""
    if roi is None:
        return window
    if window is not None:
        raise ValueError(f"window={window!r} and roi={roi!r}: give window= only (roi= is its old name)")
    return roi


def check_window(name: str, value: Any, ndim: int, shape: Sequence[int] | None = None) -> tuple[int, ...]:
    """A per-axis positive int tuple; a scalar or 1-entry sequence is broadcast; ``None`` entries take ``shape``."""
    vals = [value] * ndim if np.isscalar(value) or value is None else list(value)
    if len(vals) == 1:  # one entry (e.g. ``--window 128`` on the command line) applies to every axis
        vals = vals * ndim
    if len(vals) != ndim:
        raise ValueError(f"{name}={value!r} must have {ndim} entries (one per spatial axis)")
    out = []
    for axis, v in enumerate(vals):
        if v is None and shape is not None:
            v = shape[axis]
        if not (is_int(v) and v >= 1):
            raise ValueError(f"{name}={value!r} must hold positive integers (or None for the full extent)")
        out.append(int(v))
    return tuple(out)


def window_starts(
    size: int, window: int | None = None, overlap: float | None = None, *, roi: int | None = None
) -> list[int]:
    """Start indices of windows of length ``window`` covering ``[0, size)`` with at least ``overlap``.

    Windows are spread evenly (first at 0, last ending at ``size``) with a step of at most
    ``window * (1 - overlap)`` voxels (and at least 1), so every voxel is covered and no two
    windows coincide. ``size <= window`` gives one window (the caller pads). ``roi=`` is the old
    name of ``window=``.
    """
    window = window_alias(window, roi)
    if window is None or overlap is None:
        raise TypeError("window_starts needs window= and overlap=")
    if size <= window:
        return [0]
    target = max(window * (1.0 - overlap), 1.0)
    n = math.ceil((size - window) / target) + 1
    step = (size - window) / (n - 1)
    return [int(math.floor(i * step + 0.5)) for i in range(n)]


def _per_axis(value: Any, ndim: int) -> tuple[int, ...]:
    return (int(value),) * ndim if np.isscalar(value) else tuple(int(v) for v in value)


def _window_options(size: int, divisor: int, low: int, overlap: float, most: int) -> list[tuple[int, int]]:
    """``(windows, window)`` pairs along one axis: per window count, the smallest fitting multiple of ``divisor``."""
    out, seen = [], set()
    for n in range(1, most + 1):
        span = size if n == 1 else size / (n - (n - 1) * overlap)
        w = max(low, int(math.ceil(span / divisor)) * divisor)
        if w not in seen and len(window_starts(size, w, overlap)) <= n:
            seen.add(w)
            out.append((len(window_starts(size, w, overlap)), w))
        if w == low:
            break
    return out


def plan_window(
    shape: Sequence[int],
    *,
    overlap: float = 0.25,
    divisor: int | Sequence[int] = 16,
    max_voxels: int = DEFAULT_MAX_WINDOW_VOXELS,
    min_size: int | Sequence[int] | None = None,
    max_windows_per_axis: int = 8,
) -> tuple[int, ...]:
    """The window size that covers ``shape`` forwarding the fewest voxels (``window="auto"``).

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
    check_fraction("overlap", overlap)
    divs = _per_axis(divisor, ndim)
    mins = tuple(4 * d for d in divs) if min_size is None else _per_axis(min_size, ndim)
    if len(divs) != ndim or len(mins) != ndim or min(divs) < 1 or min(mins) < 1:
        raise ValueError(f"divisor={divisor!r} / min_size={min_size!r} must be positive, one per axis of {shape}")
    mins = tuple(-(-m // d) * d for m, d in zip(mins, divs))
    if isinstance(max_voxels, bool) or int(max_voxels) < math.prod(mins):
        raise ValueError(
            f"max_voxels={max_voxels!r} is smaller than the smallest window {mins} ({math.prod(mins)} voxels)"
        )
    per_axis = [_window_options(s, d, m, overlap, max_windows_per_axis) for s, d, m in zip(shape, divs, mins)]
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
    window: Sequence[int] | None = None,
    mode: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    min_weight: float = 1e-3,
    *,
    roi: Sequence[int] | None = None,
) -> np.ndarray:
    """Per-voxel blending weight of one window, float32 of shape ``window``.

    ``"gaussian"``: a separable Gaussian centred on the window with ``sigma = sigma_scale * window``
    per axis, scaled to a maximum of 1 and clipped below at ``min_weight`` so that no voxel (not
    even a window corner) gets zero weight. ``"constant"``: all ones.

    Raises:
        ValueError: unknown ``mode``, ``min_weight`` outside (0, 1], non-positive ``sigma_scale``.
    """
    window = window_alias(window, roi)  # roi= is the old name
    if window is None:
        raise TypeError("importance_map needs window=")
    window = tuple(int(r) for r in window)
    if mode == "constant":
        return np.ones(window, dtype=np.float32)
    if mode != "gaussian":
        raise ValueError(f"mode={mode!r} is unknown; expected 'gaussian' or 'constant'")
    if not 0.0 < min_weight <= 1.0:
        raise ValueError(f"min_weight={min_weight!r} must be in (0, 1]")
    scales = np.broadcast_to(np.asarray(sigma_scale, dtype=np.float64), (len(window),))
    if np.any(scales <= 0):
        raise ValueError(f"sigma_scale={sigma_scale!r} must be positive")
    weight = np.ones((), dtype=np.float64)
    for r, s in zip(window, scales):
        coords = np.arange(r, dtype=np.float64) - (r - 1) / 2.0
        g = np.exp(-0.5 * (coords / (s * r)) ** 2)
        weight = np.multiply.outer(weight, g)
    weight = weight / weight.max()
    return np.maximum(weight, min_weight).astype(np.float32)


class _Windows:
    """The windows of one image: padding (per window for ``"constant"``), corners and extraction."""

    def __init__(self, image: np.ndarray, window: tuple[int, ...], overlap: float, pad_mode: str, cval: float):
        ndim = len(window)
        spatial = image.shape[:ndim]
        self.window, self.cval, self.ndim = window, cval, ndim
        self.pads = [(max(r - s, 0) // 2, max(r - s, 0) - max(r - s, 0) // 2) for s, r in zip(spatial, window)]
        self.padded_shape = tuple(s + a + b for s, (a, b) in zip(spatial, self.pads))
        if any(p != (0, 0) for p in self.pads) and pad_mode != "constant":
            self.padded, self.pads_done = np.pad(image, self.pads + [(0, 0)], mode=pad_mode), [(0, 0)] * ndim
        else:  # constant padding is applied per window: no padded copy of the whole image
            self.padded, self.pads_done = image, self.pads
        starts = [window_starts(s, r, float(overlap)) for s, r in zip(self.padded_shape, window)]
        self.slices = [tuple(slice(a, a + r) for a, r in zip(c, window)) for c in itertools.product(*starts)]
        self.crop = tuple(slice(before, before + s) for (before, _), s in zip(self.pads, spatial))

    def take(self, sl: tuple[slice, ...]) -> np.ndarray:
        """The window ``sl`` (padded coordinates), ``cval`` outside the image."""
        padded, ndim = self.padded, self.ndim
        src = tuple(
            slice(max(w.start - a, 0), min(w.stop - a, n))
            for w, (a, _), n in zip(sl, self.pads_done, padded.shape[:ndim])
        )
        if all(s.stop - s.start == r for s, r in zip(src, self.window)):
            return padded[src]
        out = np.full(self.window + padded.shape[ndim:], self.cval, dtype=padded.dtype)
        dst = tuple(slice(s.start + a - w.start, s.stop + a - w.start) for s, w, (a, _) in zip(src, sl, self.pads_done))
        out[dst] = padded[src]
        return out


def sliding_window(
    predictor: BatchPredictor,
    image: np.ndarray,
    *,
    window: int | Sequence[int | None] | None = None,
    overlap: float = 0.5,
    batch_size: int = 1,
    mode: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    min_weight: float = 1e-3,
    pad_mode: str = "constant",
    cval: float = 0.0,
    progress: bool = False,
    roi: int | Sequence[int | None] | None = None,
) -> np.ndarray:
    """Predict a whole image window by window and blend the windows with importance weights.

    The image is padded (``pad_mode``, centred) wherever it is smaller than ``window``; windows are
    spread evenly so that every voxel is covered (:func:`window_starts`); ``batch_size`` windows go
    through ``predictor`` at a time; the outputs are accumulated as ``sum(w * y) / sum(w)`` with
    the :func:`importance_map` ``w`` and cropped back to the input's extent.

    The accumulation is in float64: the weights are float32, so each product is exact and the
    float32 result of the division is exactly the input wherever all windows agree -- an
    identity predictor returns its input bit for bit, in ``"gaussian"`` and ``"constant"`` mode.

    Args:
        predictor: callable mapping a float32 batch ``(B, *window, C)`` to ``(B, *window, K)``
            (numpy or a tensor; a dict is read at ``"probabilities"`` or its single value; a
            list/tuple at its first element).
        image: ``(X, Y, Z, C)`` (or ``(H, W, C)`` with a 2D window), channels last.
        window: window size per spatial axis; a scalar applies to every axis; ``None`` entries
            take the image's extent. Required (``roi=`` is its old name).
        overlap: fraction of a window shared with its neighbour, in [0, 1). Defaults to 0.5.
        batch_size: windows per predictor call. Defaults to 1.
        mode: ``"gaussian"`` (default) or ``"constant"`` blending.
        sigma_scale: Gaussian sigma as a fraction of the window (scalar or per axis). Defaults to 0.125.
        min_weight: smallest blending weight (relative to the centre), > 0. Defaults to 1e-3.
        pad_mode: ``numpy.pad`` mode used where the image is smaller than the window.
        cval: padding value for ``pad_mode="constant"`` (0 = z-scored background).
        progress: show a progress bar over window batches.

    Returns:
        ``(X, Y, Z, K)`` float32 (``(H, W, K)`` in 2D).

    Raises:
        ValueError: a bad ``window``/``overlap``/``batch_size``/``mode``, an image that is not
            channels-last 2D/3D, or a predictor output of the wrong batch/spatial shape.
    """
    window = window_alias(window, roi)
    if window is None:
        raise ValueError("sliding_window needs window= (the window size per spatial axis)")
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"image has shape {image.shape}; expected (X, Y, Z, C) or (H, W, C)")
    ndim = image.ndim - 1
    size = check_window("window", window, ndim, image.shape[:ndim])
    check_fraction("overlap", overlap)
    check_int("batch_size", batch_size, 1)
    weight = importance_map(size, mode, sigma_scale, min_weight).astype(np.float64)
    windows = _Windows(image, size, overlap, pad_mode, cval)
    total: np.ndarray | None = None
    norm = np.zeros(windows.padded_shape, dtype=np.float64)
    batches = [windows.slices[i : i + batch_size] for i in range(0, len(windows.slices), batch_size)]
    if progress:
        batches = show_progress(batches, desc="windows", unit="batch", leave=False)
    for chunk in batches:
        x = np.stack([windows.take(sl) for sl in chunk]).astype(np.float32, copy=False)
        y = as_numpy(predictor(x))
        if y.ndim != ndim + 2 or y.shape[: ndim + 1] != (len(chunk),) + size:
            raise ValueError(
                f"predictor returned shape {y.shape} for a batch of shape {x.shape}; "
                f"expected ({len(chunk)}, {', '.join(map(str, size))}, K)"
            )
        if total is None:
            total = np.zeros(windows.padded_shape + (y.shape[-1],), dtype=np.float64)
        for i, sl in enumerate(chunk):
            total[sl] += y[i] * weight[..., None]
            norm[sl] += weight
    total /= norm[..., None]  # every voxel lies in at least one window, so norm >= min_weight
    return total[windows.crop].astype(np.float32)


def check_mirror_axes(axes: Any) -> tuple[int, ...]:
    """``axes`` as a tuple of distinct spatial axes among 0, 1, 2; ``ValueError`` otherwise."""
    vals = [axes] if np.isscalar(axes) else list(axes)
    if len(set(vals)) != len(vals) or not all(is_int(a) and 0 <= a <= 2 for a in vals):
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
            y = as_numpy(predictor(x))
            return np.flip(y, flip) if flip else y

        return fn

    return [member(c) for c in combos]


def mirror_tta(predictor: BatchPredictor, axes: Sequence[int] = (0, 1, 2)) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a batch predictor with test-time mirroring: average over every subset of flipped axes.

    Args:
        predictor: batch callable ``(B, *window, C) -> (B, *window, K)``.
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


def check_window_arguments(
    *,
    window: Any = None,
    overlap: float | None = None,
    batch_size: int = 1,
    et_min_voxels: Any = None,
    min_component_voxels: Any = None,
    largest_component: Any = None,
    mirror_axes: Any = None,
    roi: Any = None,
    min_component_voxels_tc: Any = None,
    min_component_voxels_et: Any = None,
    **_: Any,
) -> None:
    """Raise ``ValueError`` for bad sliding-window / postprocessing arguments, before any case is read.

    ``window``: sizes (``None`` entries: the full extent), ``"patch"`` or ``"auto"``; ``roi`` is its old name.
    """
    window = window_alias(window, roi)
    if mirror_axes is not None:
        check_mirror_axes(mirror_axes)
    if largest_component is not None:
        if isinstance(largest_component, str):
            raise ValueError(f"largest_component={largest_component!r} must be a list of regions, e.g. ['WT']")
        for region in largest_component:
            region_index(region)
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ValueError(f"window={window!r} must be {' or '.join(map(repr, WINDOWS))} or window sizes")
    elif window is not None:
        vals = [window] if np.isscalar(window) else list(window)
        if not vals or not all(v is None or (is_int(v) and v >= 1) for v in vals):
            raise ValueError(f"window={window!r} must hold positive integers (or None for the full extent)")
    if overlap is not None:
        check_fraction("overlap", overlap)
    check_int("batch_size", batch_size, 1)
    sizes = {
        "et_min_voxels": et_min_voxels,
        "min_component_voxels": min_component_voxels,
        "min_component_voxels_tc": min_component_voxels_tc,
        "min_component_voxels_et": min_component_voxels_et,
    }
    for name, value in sizes.items():
        if value is not None:
            check_int(name, value, 0)


__all__ = [
    "BatchPredictor",
    "DEFAULT_WINDOW",
    "DEFAULT_ROI",
    "DEFAULT_MAX_WINDOW_VOXELS",
    "as_numpy",
    "check_window",
    "check_window_arguments",
    "window_alias",
    "window_starts",
    "plan_window",
    "importance_map",
    "sliding_window",
    "check_mirror_axes",
    "mirror_flips",
    "mirror_tta",
]
