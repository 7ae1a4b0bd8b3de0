"""Predicting one case: preprocessing as in training, sliding window, labels, postprocessing, paste-back.

Pipeline (:func:`predict_case`)::

    read_case --> preprocess_case (crop to brain box, z-score; as in training)
      --> select the model's modalities --> sliding_window (Gaussian-weighted, batched windows,
          optional mirror TTA) --> probabilities on the cropped grid
      --> labels of the card's scheme (argmax for a softmax head; decoded regions for a sigmoid head)
      --> postprocess (the card's rules, chosen on validation: :mod:`brainseg_tf.postprocessing`)
      --> paste_back onto the native grid (Prediction.write: source affine/header, in the source's
          values: a non-canonical scheme's case (PED 2024, GLI 2024 with RC) in its scheme's values)
      (optionally an uncertainty map, :mod:`brainseg_tf.uncertainty`, on the same grid)

Conventions: image ``(X, Y, Z, C)`` float32 channels-last in NIfTI voxel order, channels a subset
of ``(flair, t1, t1ce, t2)`` in the model's order; labels ``(X, Y, Z)`` uint8 internal labels of
the model card's label scheme (:mod:`brainseg_tf.schemes`; the default ``brats2021`` and the other
glioma schemes: canonical 0 BG, 1 NCR, 2 ED, 3 ET); a softmax head outputs the scheme's classes in
that order, a sigmoid head its regions (``(WT, TC, ET)`` for the glioma schemes).

A model is refused on a case of another label scheme (:func:`check_scheme`): its labels would mean
other things there. Schemes whose internal labels and regions are the canonical ones (BraTS 2021,
GLI 2023, MSD, ...) are one for this purpose, as they always were.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf import io as bio
from brainseg_tf import uncertainty as unc
from brainseg_tf.conventions import MODALITIES, PLANE_AXES
from brainseg_tf.data.preprocess import Geometry, paste_back, preprocess_case
from brainseg_tf.inference.ensemble import Ensemble, as_predictor
from brainseg_tf.inference.labels import POSTPROCESSING_KEYS, postprocess, probabilities_to_labels
from brainseg_tf.inference.predictor import Predictor
from brainseg_tf.inference.window import (
    DEFAULT_WINDOW,
    BatchPredictor,
    as_numpy,
    check_window,
    check_window_arguments,
    mirror_flips,
    mirror_tta,
    plan_window,
    sliding_window,
    window_alias,
)
from brainseg_tf.schemes import LabelScheme, get_scheme


@dataclass
class Prediction:
    """The prediction for one case on its native grid.

    Attributes:
        case_id: the case identifier.
        labels: ``(X, Y, Z)`` uint8 internal labels of ``scheme`` (canonical 0 BG, 1 NCR, 2 ED,
            3 ET for the glioma schemes), postprocessed, on the grid of the source files.
        probabilities: ``(X, Y, Z, K)`` float32 (the scheme's softmax classes, its sigmoid regions
            -- WT, TC, ET for the glioma schemes --, or the one region of a region head) on the
            native grid, or ``None`` when not requested.
            Outside the brain box: class BG = 1, every region 0.
        head: ``"softmax"``, ``"sigmoid"`` or ``"region"``.
        reference: the source case without its image (affine, header, convention, shape, label).
        geometry: the preprocessing geometry (crop box) of the (first) model.
        seconds: wall time of the prediction (preprocessing to paste-back).
        uncertainty: ``(X, Y, Z)`` float32 in [0, 1] on the native grid (0 outside the brain box),
            or ``None`` when not requested (:mod:`brainseg_tf.uncertainty`).
        uncertainty_kind: ``"entropy"`` or ``"variance"`` (across ensemble members and TTA flips).
        uncertainty_score: :func:`brainseg_tf.uncertainty.case_score` of the map and the labels.
        scheme: the label scheme of ``labels`` (the model card's).
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
    scheme: str = "brats2021"

    def write(self, path: str | Path, convention: str | None = None) -> Path:
        """Write the labels with the source's affine and header, in ``convention`` (default: the
        source's values; a non-canonical scheme's case in its scheme's values, the header stamped
        with the scheme: :func:`brainseg_tf.io.write_label`)."""
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


# ----------------------------------------------------------------------------- label schemes


def _data_scheme(case: bio.Case | bio.CaseRef) -> LabelScheme | None:
    """The case's scheme; ``None`` for a hand-built case without one (read by its convention into
    the canonical labels)."""
    return None if case.scheme is None else get_scheme(case.scheme)


#: Label roles shared across schemes (the order of the internal labels 1-3).
_ROLES = (("NCR", "NETC", "NET"), ("ED", "SNFH"), ("ET",))


def _role(name: str) -> str:
    return next((role[0] for role in _ROLES if name in role), name)


def _maps_onto(model: LabelScheme, data: LabelScheme) -> bool:
    """Whether the model's internal labels and regions are the data's: its labels are the data's
    first ones (by role: NCR = NETC = NET, ED = SNFH) and each of its regions holds the same internal
    labels in the data. The data may have further labels in none of those regions, which the model
    never predicts (a BraTS 2021 model on GLI 2024 data: no RC)."""
    k = len(model.internal)
    if [_role(n) for n in model.internal] != [_role(n) for n in data.internal[:k]]:
        return False
    theirs = data.internal_regions()
    return all(theirs.get(r) == held for r, held in model.internal_regions().items())


def _labels_text(scheme: LabelScheme) -> str:
    regions = ", ".join(f"{r}={{{','.join(map(str, v))}}}" for r, v in scheme.internal_regions().items())
    return f"{', '.join(f'{i} {n}' for i, n in enumerate(scheme.internal, 1))}; regions {regions}"


def check_scheme(model_scheme: LabelScheme | str, case: bio.Case | bio.CaseRef, *, map_scheme: bool = False) -> None:
    """Refuse a model of one label scheme on a case of another.

    Allowed without asking: the same scheme, or two schemes whose internal labels and regions are
    the canonical ones (a BraTS 2021 model on GLI 2023, MSD or SSA data: the labels mean the same,
    as they always did). With ``map_scheme``: a data scheme whose internal labels and regions
    include the model's unchanged (:func:`_maps_onto`; e.g. a BraTS 2021 model on GLI 2024 data,
    written in GLI 2024 values, never predicting RC). A case without a scheme (built by hand, read
    by its convention) holds canonical labels.

    Raises:
        ValueError: naming the case, both schemes, and the options (``scheme=`` / ``--scheme`` to
            state the data's scheme, ``map_scheme=True`` / ``--map-scheme`` where it applies).
    """
    model = get_scheme(model_scheme)
    data = _data_scheme(case)
    if data is None:
        if model.is_canonical:
            return
        data_text = f"canonical labels (no scheme; read by the convention {case.convention!r})"
    else:
        if model.name == data.name or (model.is_canonical and data.is_canonical):
            return
        if map_scheme and _maps_onto(model, data):
            return
        data_text = f"the {data.name!r} label scheme ({data.description})"
    maps = data is not None and _maps_onto(model, data)
    meaning = "which knows only some of the data's labels" if maps else "whose labels mean other things there"
    if maps:
        how = (
            "or pass map_scheme=True (--map-scheme) to write the model's labels in the data's scheme, whose "
            "labels and regions include the model's"
        )
    else:
        data_labels = "1 NCR, 2 ED, 3 ET" if data is None else _labels_text(data)
        how = (
            "map_scheme=True (--map-scheme) maps only onto a scheme whose internal labels and regions include the "
            f"model's; these differ (model: {_labels_text(model)}; data: {data_labels})"
        )
    raise ValueError(
        f"case {case.case_id!r} is in {data_text}; the model was trained on the {model.name!r} scheme "
        f"({model.description}), {meaning}. If the case really is in "
        f"{model.name!r}, state the data's scheme with scheme={model.name!r} (brainseg predict --scheme "
        f"{model.name}); {how}"
    )


def _stated(case: bio.Case, scheme: str | None) -> bio.Case:
    """``case`` in the stated scheme (its convention following, as :func:`brainseg_tf.io.read_case`
    would read it; the mask, read in another scheme, dropped)."""
    if scheme is None:
        return case
    chosen = get_scheme(scheme)
    if chosen.name == case.scheme:
        return case
    return dataclasses.replace(case, scheme=chosen.name, convention=chosen.convention or case.convention, label=None)


def model_modalities(pred: Predictor | Ensemble) -> tuple[str, ...]:
    """The canonical modalities a predictor reads (every member's, for an ensemble), in canonical order."""
    members = pred.members if isinstance(pred, Ensemble) else [pred]
    used = {m for member in members for m in member.modalities}
    return tuple(m for m in MODALITIES if m in used)


# ----------------------------------------------------------------------------- one model


def _resized_slices(pred: Predictor) -> BatchPredictor:
    """A 2D batch predictor that resizes each slice to the card's resize and the output back (bilinear)."""
    import tensorflow as tf

    size = list(pred.card.preprocessing.resize)

    def fn(batch: np.ndarray) -> np.ndarray:
        x = tf.image.resize(tf.convert_to_tensor(batch, tf.float32), size, method="bilinear")
        y = pred(x.numpy())
        return tf.image.resize(tf.convert_to_tensor(y), list(batch.shape[1:3]), method="bilinear").numpy()

    return fn


def _prepared_image(pred: Predictor, case: bio.Case, release: bool) -> tuple[np.ndarray, Geometry, bool]:
    """The image as the card says training saw it: ``(image, geometry, on_native_grid)``.

    ``preprocess_case`` with the card's options, the model's modalities selected by name; a 2D
    model trained without the brain crop sees the z-scored image pasted back onto the native grid
    (as ``slice_dataset(crop=False)`` does).
    """
    options = pred.card.preprocessing.case_options()
    native = options.get("crop", True) is False
    pre = preprocess_case(case, **{**options, "crop": True})
    if release:  # the native image (240x240x155x4 float32: 143 MB) is not needed during the forwards
        case.image = None
    idx = [MODALITIES.index(m) for m in pred.modalities]
    image = pre.image if idx == list(range(pre.image.shape[-1])) else np.ascontiguousarray(pre.image[..., idx])
    del pre.image
    if native:
        image = paste_back(image, pre.geometry, fill=0.0)
    return image, pre.geometry, native


def _slice_predictor(pred: Predictor, image_shape: Sequence[int], window: Any) -> tuple[BatchPredictor, tuple]:
    """A 2D model as a 3D batch predictor over windows one slice thick, and that window."""
    if isinstance(window, str) and window != "patch" or window is None and pred.inference.window != "patch":
        raise ValueError(f"window={window or pred.inference.window!r}: planned windows are for 3D models only")
    if window == "patch":
        window = None
    if pred.card.preprocessing.resize is not None:
        if window is not None:
            resize = tuple(pred.card.preprocessing.resize)
            raise ValueError(f"window={window!r}: this 2D model resizes whole slices to {resize}; omit window")
        size = tuple(image_shape[:2]) + (1,)
        slice_fn = _resized_slices(pred)
    else:
        size = check_window("window", window if window is not None else (pred.window or DEFAULT_WINDOW), 2) + (1,)
        slice_fn = pred

    def fn(batch: np.ndarray) -> np.ndarray:  # (B, rx, ry, 1, C) -> 2D model -> (B, rx, ry, 1, K)
        return as_numpy(slice_fn(np.ascontiguousarray(batch[:, :, :, 0, :])))[:, :, :, None, :]

    return fn, size


def window_for(pred: Predictor, window: Any, shape: Sequence[int], overlap: float) -> tuple[int, ...]:
    """A 3D model's window for an image of spatial ``shape``.

    ``window`` sizes as given, ``"patch"``: the card's window (128 per axis without one),
    ``"auto"``: planned (:func:`plan_window`: never smaller than the card's
    ``inference.min_window``, by default the patch); ``None`` takes the card's ``inference.window``.
    """
    mode = pred.inference.window if window is None else window if isinstance(window, str) else None
    patch = check_window("window", pred.window or DEFAULT_WINDOW, 3)
    if mode is None:
        return check_window("window", window, 3)
    if mode == "patch":
        return patch
    divisor = pred.inference.divisor
    if divisor is None:
        if pred.card.model is None:
            raise ValueError(
                "window='auto' plans windows from the model's input-size divisor, which this model's "
                "card does not give (no inference.divisor, no registry model); pass window sizes"
            )
        from brainseg_tf.models.registry import get_spec

        divisor = get_spec(pred.card.model).size_divisor(pred.card.options)
    smallest = check_window("min_window", pred.inference.min_window or patch, 3)
    return plan_window(
        shape,
        overlap=overlap,
        divisor=divisor,
        min_size=smallest,
        max_voxels=max(pred.inference.max_window_voxels, math.prod(smallest)),
    )


def _model_probabilities(
    pred: Predictor,
    case: bio.Case,
    *,
    window: Any,
    overlap: float | None,
    tta: bool,
    mirror_axes: Sequence[int] | None,
    moments: bool = False,
    release: bool = False,
    **sliding: Any,
) -> tuple[np.ndarray, Geometry, bool, np.ndarray | None]:
    """One model's probabilities: ``(probs, geometry, on_native_grid, second_moment)``.

    With ``moments`` and mirror TTA, each flip goes through its own sliding window (the blend is
    linear, so their mean is the TTA mean up to float rounding) and ``second_moment`` is the mean
    of the squared flip outputs (:class:`brainseg_tf.uncertainty.Moments`); with ``moments`` and
    no TTA it is ``probs ** 2``; otherwise ``None``. ``sliding``: :func:`sliding_window` options.
    """
    overlap = pred.inference.overlap if overlap is None else overlap
    image, geometry, native = _prepared_image(pred, case, release)
    fn: BatchPredictor = pred
    axis = 2
    if pred.spatial_dims == 2:
        axis = PLANE_AXES[pred.card.preprocessing.plane]
        image = np.moveaxis(image, axis, 2)  # slices along the last spatial axis
        fn, size = _slice_predictor(pred, image.shape, window)
        axes = (0, 1) if mirror_axes is None else tuple(mirror_axes)
    else:
        size = window_for(pred, window, image.shape[:3], overlap)
        axes = (0, 1, 2) if mirror_axes is None else tuple(mirror_axes)
    kwargs = dict(window=size, overlap=overlap, **sliding)
    second = None
    if moments and tta and axes:
        acc = unc.Moments()
        for flipped in mirror_flips(fn, axes):
            acc.add(sliding_window(flipped, image, **kwargs))
        probs, second = acc.mean, acc.second
    else:
        probs = sliding_window(mirror_tta(fn, axes) if tta and axes else fn, image, **kwargs)
        if moments:
            second = probs * probs
    del image
    if pred.spatial_dims == 2:
        probs = np.moveaxis(probs, 2, axis)
        second = None if second is None else np.moveaxis(second, 2, axis)
    if probs.shape[-1] != pred.num_outputs:
        raise ValueError(f"the model returned {probs.shape[-1]} channels; a {pred.head} head needs {pred.num_outputs}")
    return probs, geometry, native, second


def _to_native(probs: np.ndarray, geometry: Geometry, head: str) -> np.ndarray:
    """Probabilities pasted onto the native grid: BG = 1 outside the box for softmax, 0 elsewhere."""
    native = paste_back(probs, geometry, fill=0.0)
    if head == "softmax":
        native[..., 0] = paste_back(probs[..., 0], geometry, fill=1.0)
    return native


# ----------------------------------------------------------------------------- predict_case steps


def _uncertainty_kind(uncertainty: Any, members: int, tta: bool, mirror_axes: Sequence[int] | None) -> str | None:
    """``"entropy"``, ``"variance"`` or ``None`` (no map) for the request and the outputs there are."""
    if uncertainty in (None, False):
        return None
    flips = 2 ** len(mirror_axes) if mirror_axes is not None else 2  # the default axes give >= 4 flips
    return unc.resolve_kind(uncertainty, members=members, flips=flips if tta else 1)


def _combined(pred: Predictor | Ensemble, results: list, variance: bool) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """The probabilities and second moments of all members: ``(probs, second, on_native_grid)``.

    An ensemble's members are combined on the native grid; averaging the second moments too
    gives the variance over all members' outputs.
    """
    if not isinstance(pred, Ensemble):
        probs, _, on_native, second = results[0]
        return probs, second, on_native

    def native(index: int) -> list[np.ndarray]:
        return [
            r[index] if r[2] else _to_native(r[index], r[1], m.head) for m, r in zip(pred.members, results, strict=True)
        ]

    return pred.combine(native(0)), pred.combine(native(3)) if variance else None, True


def _probabilities(
    pred: Predictor | Ensemble, case: bio.Case, window: dict[str, Any], more: dict[str, Any], *, release: bool
) -> tuple[np.ndarray, np.ndarray | None, bool, Geometry]:
    """Every member's :func:`_model_probabilities` (options ``window`` and ``more``), combined:
    ``(probs, second_moment, on_native_grid, geometry of the first member)``."""
    members = pred.members if isinstance(pred, Ensemble) else [pred]
    results = [_model_probabilities(m, case, **window, **more, release=release) for m in members]
    probs, second, on_native = _combined(pred, results, bool(more["moments"]))
    return probs, second, on_native, results[0][1]


def _native_outputs(
    pred: Predictor | Ensemble,
    probs: np.ndarray,
    second: np.ndarray | None,
    geometry: Geometry | None,
    kind: str | None,
    postprocessing: dict[str, Any],
    with_probabilities: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Postprocessed labels, probabilities (if asked) and the ``kind`` uncertainty map (if any) on the
    native grid, pasted back through ``geometry`` (``None``: already native)."""
    labels = probabilities_to_labels(probs, pred.head, pred.threshold, region=pred.region, scheme=pred.scheme)
    rules = {key: getattr(pred, key) for key in POSTPROCESSING_KEYS}
    rules |= {k: v for k, v in postprocessing.items() if v is not None}
    labels = postprocess(labels, **rules, scheme=pred.scheme)
    u = None
    if kind is not None:
        u = unc.variance_from_moments(probs, second) if kind == "variance" else unc.predictive_entropy(probs, pred.head)
    if geometry is None:
        return labels, probs if with_probabilities else None, u
    return (
        paste_back(labels, geometry, fill=0),
        _to_native(probs, geometry, pred.head) if with_probabilities else None,
        None if u is None else paste_back(u, geometry, fill=0.0),
    )


def predict_case(
    model: Predictor | Ensemble | str | Path | Sequence[str | Path] | Any,
    case: bio.Case | bio.CaseRef | str | Path,
    *,
    window: int | Sequence[int] | str | None = None,
    overlap: float | None = None,
    batch_size: int = 1,
    mode: str = "gaussian",
    sigma_scale: float = 0.125,
    tta: bool = False,
    mirror_axes: Sequence[int] | None = None,
    et_min_voxels: int | None = None,
    min_component_voxels: int | None = None,
    largest_component: Sequence[str] | None = None,
    min_component_voxels_tc: int | None = None,
    min_component_voxels_et: int | None = None,
    return_probabilities: bool = False,
    uncertainty: str | bool | None = None,
    progress: bool = False,
    release_image: bool = False,
    roi: int | Sequence[int] | str | None = None,
    scheme: str | None = None,
    map_scheme: bool = False,
) -> Prediction:
    """Segment one case and return labels on its native grid (the pipeline of this module's docstring).

    Each model's card says how to prepare the image (crop, margin, z-score, reorientation,
    resampling; for 2D models plane and slice resize) and which modalities it reads. Several models
    (a list or an :class:`Ensemble`) are combined on the native grid.

    Args:
        model: a :class:`Predictor` or :class:`Ensemble`, a path for
            :func:`~brainseg_tf.inference.load_predictor`, a list of paths (an ensemble), a Keras
            model or a batch callable (4 canonical channels in, 4 softmax classes out).
        case: a :class:`brainseg_tf.io.Case`, or a case path / :class:`~brainseg_tf.io.CaseRef` for
            :func:`brainseg_tf.io.read_case` (images only, not the mask; the image is freed as soon
            as it is preprocessed).
        window: window size; ``"patch"``: the card's window (else 128 per axis); ``"auto"``:
            planned per case (:func:`~brainseg_tf.inference.plan_window`, 3D models); ``None``
            (default): the card's ``inference.window`` (``"patch"`` for cards that have none). For
            a 2D model a 2-entry window. ``roi=`` is its old name.
        overlap: window overlap in [0, 1); ``None`` (default): the card's ``inference.overlap``
            (0.5 for cards that have none).
        batch_size: windows per forward pass. Defaults to 1.
        mode: ``"gaussian"`` (default) or ``"constant"`` blending.
        sigma_scale: Gaussian sigma as a fraction of the window. Defaults to 0.125.
        tta: average over mirrored inputs (``mirror_axes``). Defaults to ``False``.
        mirror_axes: spatial axes mirrored with ``tta``; default all (3D: 8 flips; 2D: 4 flips).
        et_min_voxels, min_component_voxels, largest_component, min_component_voxels_tc,
            min_component_voxels_et: the card's postprocessing (ET -> NCR volume, smallest WT / TC /
            ET component, regions kept to their largest component); ``None`` takes the card's.
        return_probabilities: also return the pasted-back probability maps.
        uncertainty: also return a per-voxel uncertainty map and its case score
            (:mod:`brainseg_tf.uncertainty`): ``"entropy"``, ``"variance"`` (across ensemble
            members and TTA flips) or ``"auto"``/``True`` (variance where there are several
            outputs, else entropy); ``None``/``False``: none.
        progress: progress bar over windows.
        release_image: free ``case.image`` as soon as it is preprocessed (a single model; the
            case cannot be predicted again). Always done for a case this function reads itself.
        scheme: state the data's label scheme (default: the case's, from its id's task prefix);
            the labels are written in its values.
        map_scheme: predict a case whose scheme differs from the model's where the data's
            internal labels and regions include the model's (:func:`check_scheme`).

    Returns:
        A :class:`Prediction`.

    Raises:
        ValueError: bad window arguments, the model's modalities/outputs do not fit, or the case's
            label scheme is not the model's (:func:`check_scheme`, naming both and the options).
        brainseg_tf.io.DataError: unreadable case files, or the case has no file for a modality the
            model reads (MEN-RT cases have T1c alone: :func:`brainseg_tf.io.require_modalities`).
    """
    start = time.perf_counter()
    window = window_alias(window, roi)
    values = (et_min_voxels, min_component_voxels, largest_component, min_component_voxels_tc, min_component_voxels_et)
    post = dict(zip(POSTPROCESSING_KEYS, values))
    check_window_arguments(window=window, overlap=overlap, batch_size=batch_size, mirror_axes=mirror_axes, **post)
    pred = as_predictor(model)
    if not isinstance(case, bio.Case):
        case = bio.read_case(case, load_label=False, scheme=scheme)  # prediction never reads the mask
        release_image = True
    case = _stated(case, scheme)
    check_scheme(pred.scheme, case, map_scheme=map_scheme)
    bio.require_modalities(case, model_modalities(pred))
    reference = dataclasses.replace(case, image=None)
    n_members = len(pred.members) if isinstance(pred, Ensemble) else 1
    kind = _uncertainty_kind(uncertainty, n_members, tta, mirror_axes)
    probs, second, on_native, geometry = _probabilities(
        pred,
        case,
        dict(window=window, overlap=overlap, tta=tta, mirror_axes=mirror_axes, batch_size=batch_size, mode=mode),
        dict(sigma_scale=sigma_scale, progress=progress, moments=kind == "variance"),
        release=release_image and n_members == 1,  # ensemble members each preprocess the image
    )
    del case  # the native image is no longer needed (freed here unless the caller holds it)
    labels, native_probs, native_u = _native_outputs(
        pred, probs, second, None if on_native else geometry, kind, post, return_probabilities
    )
    return Prediction(
        case_id=reference.case_id,
        labels=labels,
        probabilities=native_probs,
        head=pred.head,
        reference=reference,
        geometry=geometry,
        seconds=time.perf_counter() - start,
        uncertainty=native_u,
        uncertainty_kind=kind,
        uncertainty_score=None
        if native_u is None
        else unc.case_score(native_u, labels, tumour=pred.label_scheme.tumour_internal),
        scheme=pred.scheme,
    )


__all__ = ["Prediction", "check_scheme", "model_modalities", "predict_case", "window_for"]
