"""tf.data input pipelines: 3D patches, 2D slices and full volumes.

Every builder takes a ``source``: a dataset folder, a :class:`brainseg_tf.io.Dataset`, an HDF5
cache path (``*.h5``, see :mod:`brainseg_tf.data.cache`) or an open :class:`Cache`; plus
``case_ids`` (e.g. a k-fold split) and ``max_cases`` to select cases
(:mod:`brainseg_tf.data.sources`).

Stages (as tensorflow/models ``official/vision``): read (cache slice or NIfTI load + preprocess,
in a parallel ``numpy_function``, shapes restored with ``tf.ensure_shape``) -> sample
(:mod:`brainseg_tf.data.sampling`) -> augment (TensorFlow ops from
:mod:`brainseg_tf.data.augment`, keyed by a per-element seed) -> targets
(:mod:`brainseg_tf.data.targets`) -> batch -> prefetch.

Elements are ``(image, target)`` or ``(image, target, sample_weight)``:

- image: ``(B, *spatial, C)`` float32, channels = ``modalities`` in the order given, z-scored
  within the brain, background 0 (also the padding value);
- target ``"classes"``: one-hot float32 ``(B, *spatial, n_classes)`` over the label scheme's
  classes (``(BG, *scheme.internal)``; 4 canonical classes BG, NCR, ED, ET by default);
  ``"regions"``: float32 ``(B, *spatial, R)`` over the scheme's regions in channel order
  (:meth:`~brainseg_tf.schemes.LabelScheme.region_table`; by default (WT, TC, ET) with
  WT = {1, 2, 3}, TC = {1, 3}, ET = {3}); ``"labels"``: uint8 ``(B, *spatial)`` internal labels;
- sample_weight (when ``sample_weights`` is a per-class weight sequence of ``n_classes``): float32
  ``(B, *spatial)`` = ``sample_weights[label]`` (times the valid-region mask for volumes).

**Label schemes.** ``scheme=None`` (default) reads each case in its own scheme (detected from its
id; a cache's recorded one) and refuses selected cases of different schemes; a stated ``scheme``
reads every case of a dataset folder in it and refuses a cache built in another
(:mod:`brainseg_tf.data.sources`). Foreground-centred patches centre on any non-zero internal label.

Shapes are fully static (batch dimension included: training streams drop the last partial
batch; volume batches are static whenever the number of cases divides by the batch size).

**Reproducibility.** Every random choice of element ``i`` (case order, patch position,
foreground class, augmentation) comes from ``(seed, i)`` only, and parallel maps keep element
order, so the same seed gives the same stream whatever the thread timing.

**Distribution.** ``global_batch_size`` is the batch over all replicas: under
``tf.distribute`` with ``model.fit`` Keras splits each batch over the replicas (global 8 on 2
replicas = 4 each; a recipe's ``pipeline.batch_size`` is per replica, and
:mod:`brainseg_tf.training.data` multiplies it out). ``batch_size=`` is accepted as a
deprecated alias. The datasets set ``auto_shard_policy = DATA``.

**Sampling (3D patches)**: foreground-centred and uniform draws as defined in
:mod:`brainseg_tf.data.sampling`. ``with_info=True`` reports, per patch, the case index, the
class it was centred on (-1 for uniform) and the centre and corner.

**Augmentation.** For 3D patches with an ``AugmentConfig`` (``augment=True``, ``"light"`` or a
config), mirroring is folded into the copy of the patch out of the volume (same probability
and axes, seeded by ``(seed, i)``; image and label mirrored together), which makes it free
instead of one more pass over the patch; the rest of the config runs as TensorFlow ops from
:func:`brainseg_tf.data.augment.augment_fn` with the seed ``(seed, i)``. Mirroring therefore
happens before, not after, rotation/scaling: the same distribution, as the rotation angles are
symmetric.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from brainseg_tf.checks import check_choice, check_int, check_number, is_int, is_number
from brainseg_tf.conventions import PLANE_AXES
from brainseg_tf.data.preprocess import Geometry, paste_back
from brainseg_tf.data.sampling import (
    INFO_SIZE,
    PatchDraw,
    PatchSampler,
    aligned_zeros,
    check_patch_size,
    extract_patch,
    info_vector,
    mirror_axes,
)
from brainseg_tf.data.sources import MAX_LOCATIONS, CacheSource, LoadedCase, NiftiSource, open_source
from brainseg_tf.data.targets import NUM_CLASSES, TARGETS, check_sample_weights, check_target, finish
from brainseg_tf.io import MODALITIES
from brainseg_tf.schemes import LabelScheme

#: Plane name -> the axis normal to it; an alias of :data:`brainseg_tf.conventions.PLANE_AXES`.
PLANES = PLANE_AXES
_AUTOTUNE = tf.data.AUTOTUNE


# ---------------------------------------------------------------------------------------------
# arguments shared by the builders
# ---------------------------------------------------------------------------------------------
def _global_batch(global_batch_size: Any, batch_size: Any, default: int) -> int:
    """The checked global batch size (``default`` when neither is given); ``batch_size`` is its
    deprecated alias."""
    if batch_size is not None:
        if global_batch_size is not None:
            raise ValueError(
                f"batch_size={batch_size!r} is the deprecated alias of global_batch_size="
                f"{global_batch_size!r}: pass global_batch_size only"
            )
        warnings.warn(
            "batch_size= is deprecated: pass global_batch_size= (the batch over all replicas)",
            DeprecationWarning,
            stacklevel=3,
        )
        global_batch_size = batch_size
    return int(check_int("global_batch_size", default if global_batch_size is None else global_batch_size))


def _channels(modalities: Sequence[str]) -> list[int]:
    """Channel indices (into the canonical ``MODALITIES``) of ``modalities``, in the order given."""
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = list(modalities)
    if not modalities:
        raise ValueError("modalities is empty; choose from " + str(MODALITIES))
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(
            f"modalities={tuple(modalities)!r}: unknown modality {unknown[0]!r}; expected names from {MODALITIES}"
        )
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities={tuple(modalities)!r} has duplicates")
    return [MODALITIES.index(m) for m in modalities]


def _augmenter(augment: Any, spatial_dims: int, fold_flips: bool = False) -> tuple[Callable | None, float, tuple]:
    """(augment fn, flip probability, flip axes). With ``fold_flips`` the mirroring of a known
    config is taken out of the TF function and done by the caller while copying the patch out of
    the volume (a view with negative strides: free instead of one more pass over the patch)."""
    if augment is None or augment is False:
        return None, 0.0, ()
    from brainseg_tf.data import augment as aug

    if augment is True:
        config = aug.AugmentConfig()
    elif isinstance(augment, aug.AugmentConfig):
        config = augment
    elif isinstance(augment, str) and augment in ("light", "none"):
        config = getattr(aug.AugmentConfig, augment)()
    elif callable(augment):
        return augment, 0.0, ()
    else:
        raise ValueError(
            f"augment={augment!r} must be True, False/None, 'light', an AugmentConfig or a callable "
            f"(image, label, seed) -> (image, label)"
        )
    flip_prob, flip_axes = 0.0, ()
    if fold_flips and config.flip_prob > 0:
        flip_prob = float(config.flip_prob)
        flip_axes = tuple(a for a in config.flip_axes if a < spatial_dims)
        config = dataclasses.replace(config, flip_prob=0.0)
    return aug.augment_fn(config, spatial_dims=spatial_dims), flip_prob, flip_axes


def _check_shape(name: str, value: Any, ndim: int) -> tuple[int, ...]:
    """``value`` as ``ndim`` positive ints; ``ValueError`` naming ``name`` otherwise."""
    try:
        out = tuple(int(s) for s in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != ndim or min(out) < 1:
        raise ValueError(f"{name}={value!r} must be None or {('two', 'three')[ndim - 2]} positive ints")
    return out


def _with_options(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` sharded by data under ``tf.distribute``."""
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(opts)


def _seed_pair(seed_t: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """The ``(2,)`` stateless seed of element ``key`` of a stream seeded ``seed_t``."""
    return tf.stack([seed_t, tf.cast(key, tf.int64)])


# ---------------------------------------------------------------------------------------------
# 3D patches
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PatchReader:
    """The NumPy side of a patch stream: which patches a draw (cache) or a load (NIfTI) gives."""

    src: CacheSource | NiftiSource
    sampler: PatchSampler
    size: tuple[int, int, int]
    channels: list[int]
    per_case: int
    seed: int
    flip_prob: float
    flip_axes: tuple[int, ...]

    def flips(self, draw: int) -> tuple[int, ...]:
        return mirror_axes(self.seed, draw, self.flip_prob, self.flip_axes)

    def one_draw(self, draw: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patch ``draw`` of a cache stream: each draw picks its own case."""
        d = int(draw)
        ci = self.sampler.case_of(d)
        cache, cid = self.src.cache, self.src.case_ids[ci]
        pd = self.sampler.draw(d, ci, cache.shape(cid), cache.brain_box(cid), cache.locations(cid))
        img, lab = extract_patch(cache.image(cid), cache.label(cid), pd.start, self.size, self.channels, self.flips(d))
        return img, lab, info_vector(pd)

    def one_load(self, load: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The ``per_case`` patches of load ``load`` of a NIfTI stream (one case read per load)."""
        li, n, c = int(load), self.per_case, len(self.channels)
        ci = self.sampler.case_of_load(li)
        loaded = self.src.load(self.src.case_ids[ci])
        imgs = aligned_zeros((n,) + self.size + (c,), np.float32)
        labs = aligned_zeros((n,) + self.size, np.uint8)
        infos = np.zeros((n, INFO_SIZE), np.int32)
        draws = np.arange(li * n, (li + 1) * n, dtype=np.int64)
        for j, d in enumerate(draws):
            pd = self.sampler.draw(int(d), ci, loaded.image.shape[:3], loaded.brain_box, loaded.locations)
            extract_patch(
                loaded.image, loaded.label, pd.start, self.size, self.channels, self.flips(int(d)), (imgs[j], labs[j])
            )
            infos[j] = info_vector(pd)
        return imgs, labs, infos, draws


def _cache_patches(reader: _PatchReader, repeat: bool) -> tf.data.Dataset:
    """``(image, label, info, draw)`` elements read one draw at a time from a cache."""
    image_shape = reader.size + (len(reader.channels),)

    def read(draw):
        img, lab, info = tf.numpy_function(reader.one_draw, [draw], [tf.float32, tf.uint8, tf.int32], stateful=False)
        return (
            tf.ensure_shape(img, image_shape),
            tf.ensure_shape(lab, reader.size),
            tf.ensure_shape(info, (INFO_SIZE,)),
            draw,
        )

    n = len(reader.src.case_ids) * reader.per_case
    ds = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(n)
    return ds.map(read, num_parallel_calls=_AUTOTUNE, deterministic=True)


def _nifti_patches(reader: _PatchReader, repeat: bool, shuffle_buffer: int | None) -> tf.data.Dataset:
    """``(image, label, info, draw)`` elements, ``per_case`` per case read, mixed in a buffer."""
    n = reader.per_case
    image_shape = (n,) + reader.size + (len(reader.channels),)

    def read(load):
        img, lab, info, draws = tf.numpy_function(
            reader.one_load, [load], [tf.float32, tf.uint8, tf.int32, tf.int64], stateful=False
        )
        return (
            tf.ensure_shape(img, image_shape),
            tf.ensure_shape(lab, (n,) + reader.size),
            tf.ensure_shape(info, (n, INFO_SIZE)),
            tf.ensure_shape(draws, (n,)),
        )

    ds = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(len(reader.src.case_ids))
    ds = ds.map(read, num_parallel_calls=_AUTOTUNE, deterministic=True).unbatch()
    buf = shuffle_buffer if shuffle_buffer is not None else 2 * n
    if buf > 1:
        ds = ds.shuffle(buf, seed=reader.seed, reshuffle_each_iteration=True)
    return ds


def _augment_and_batch(
    ds: tf.data.Dataset,
    reader: _PatchReader,
    aug: Callable | None,
    global_batch_size: int,
    target: str,
    weights: np.ndarray | None,
    with_info: bool,
    scheme: LabelScheme | None = None,
) -> tf.data.Dataset:
    """Augment each patch with the seed ``(seed, draw)``, batch, then build the targets."""
    image_shape = reader.size + (len(reader.channels),)
    seed_t = tf.constant(int(reader.seed), tf.int64)

    def augment_one(img, lab, info, draw):
        img, lab = aug(img, lab, _seed_pair(seed_t, draw))
        img = tf.ensure_shape(tf.cast(img, tf.float32), image_shape)
        return img, tf.ensure_shape(tf.cast(lab, tf.uint8), reader.size), info

    def targets(img, lab, info):
        # on whole batches: the one-hot/region tensors are built once, never copied by batch()
        out = finish(img, lab, target, weights, scheme=scheme)
        if with_info:
            out = out + ({"case": info[:, 0], "fg_class": info[:, 1], "centre": info[:, 2:5], "start": info[:, 5:8]},)
        return out

    if aug is not None:
        ds = ds.map(augment_one, num_parallel_calls=_AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda img, lab, info, draw: (img, lab, info))
    ds = ds.batch(global_batch_size, drop_remainder=True)
    return ds.map(targets, num_parallel_calls=_AUTOTUNE, deterministic=True)


def patch_dataset(
    source: Any,
    *,
    patch_size: Sequence[int] = (128, 128, 128),
    global_batch_size: int | None = None,
    modalities: Sequence[str] = MODALITIES,
    target: str = "classes",
    foreground_fraction: float = 1 / 3,
    patches_per_case: int | None = None,
    augment: Any = True,
    seed: int = 0,
    max_cases: int | None = None,
    case_ids: Sequence[str] | None = None,
    sample_weights: Sequence[float] | None = None,
    repeat: bool = True,
    preprocess: dict[str, Any] | None = None,
    shuffle_buffer: int | None = None,
    with_info: bool = False,
    prefetch: int = 2,
    batch_size: int | None = None,
    scheme: str | LabelScheme | None = None,
) -> tf.data.Dataset:
    """Random 3D training patches with foreground oversampling and augmentation.

    Args:
        source: dataset folder, ``Dataset``, cache path or ``Cache``.
        patch_size: ``(px, py, pz)`` voxels, e.g. ``(128, 128, 128)`` or ``(160, 160, 16)``; may
            exceed the brain box (zero-padded) but not the scan grid.
        global_batch_size: batch over all replicas (split over them under ``tf.distribute``); default 2.
        modalities: channel names, in the order wanted, from ``(flair, t1, t1ce, t2)``.
        target: ``"classes"`` (one-hot over the scheme's classes; 4 by default), ``"regions"`` (the
            scheme's regions; WT, TC, ET by default) or ``"labels"`` (uint8 internal labels).
        foreground_fraction: share of patches centred on a tumour voxel (default 1/3, nnU-Net).
        patches_per_case: from a cache: times each case is drawn per epoch (default 1); from
            NIfTI: patches cut from each loaded case (default 8; loading dominates).
        augment: ``True`` (default :class:`~brainseg_tf.data.augment.AugmentConfig`),
            ``"light"``, an ``AugmentConfig``, a callable ``(image, label, seed) -> (image,
            label)``, or ``None``/``False``.
        seed: stream seed (case order, positions, augmentation).
        max_cases, case_ids: case selection.
        sample_weights: per-class voxel weights, one per class of the scheme (``(w_bg, w_ncr,
            w_ed, w_et)`` by default) -> third element.
        repeat: infinite stream (use ``steps_per_epoch``); ``False``: one epoch of
            ``n_cases * patches_per_case`` patches.
        preprocess: ``preprocess_case`` options for dataset folders (default crop + z-score).
        shuffle_buffer: patches mixed across loaded cases (NIfTI only; default
            ``2 * patches_per_case``).
        with_info: append a dict ``{"case", "fg_class", "centre", "start"}`` (int32) per patch.
        prefetch: batches prefetched.
        batch_size: deprecated alias of ``global_batch_size``.
        scheme: the label scheme (see the module docstring); ``None``: the cases' own, one for all.

    Returns:
        A ``tf.data.Dataset`` of ``(image, target[, weight][, info])`` batches, image
        ``(global_batch_size, px, py, pz, len(modalities))`` float32.

    Raises:
        ValueError: bad ``patch_size``, ``modalities``, ``target``, ``global_batch_size``,
            ``foreground_fraction``, ``case_ids``/``max_cases``, ``sample_weights``, an empty
            source, unlabelled cases or cases of different label schemes.
        CacheError: a cache built in another scheme than ``scheme``.
    """
    global_batch_size = _global_batch(global_batch_size, batch_size, 2)
    channels = _channels(modalities)
    check_target(target)
    fraction = float(check_number("foreground_fraction", foreground_fraction, 0.0, 1.0))
    src = open_source(source, case_ids, max_cases, preprocess, need_labels=True, scheme=scheme)
    weights = check_sample_weights(sample_weights, src.scheme)
    size = check_patch_size(patch_size, src)
    is_cache = src.kind == "cache"
    default_per_case = 1 if is_cache else 8
    per_case = int(check_int("patches_per_case", default_per_case if patches_per_case is None else patches_per_case))
    aug, flip_prob, flip_axes = _augmenter(augment, 3, fold_flips=True)
    sampler = PatchSampler(len(src.case_ids), size, fraction, seed, per_case if is_cache else 1)
    reader = _PatchReader(src, sampler, size, channels, per_case, int(seed), flip_prob, flip_axes)
    ds = _cache_patches(reader, repeat) if is_cache else _nifti_patches(reader, repeat, shuffle_buffer)
    ds = _augment_and_batch(ds, reader, aug, global_batch_size, target, weights, with_info, src.scheme)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return _with_options(ds)


# ---------------------------------------------------------------------------------------------
# 2D slices
# ---------------------------------------------------------------------------------------------
#: The named slice selections of :func:`slice_dataset` (``"tumor"`` is read as ``"tumour"``).
SLICE_MODES: tuple[str, ...] = ("all", "tumour", "brain")
_SLICES_HELP = (
    "'all', 'tumour', 'brain', a half-open index range [start, stop] (integers), fractions of the grid's "
    'depth [a, b] (floats, 0 <= a < b <= 1) or {"range": [start, stop], "of": depth} (indices chosen on a '
    "depth-deep grid, scaled to each grid)"
)


def _check_slices(slices: Any) -> str | tuple:
    """The checked slice selection: a mode of :data:`SLICE_MODES`, ``("index", start, stop)`` or
    ``("fraction", a, b)`` (a ``{"range", "of"}`` dict becomes its fractions ``start/of, stop/of``).

    Raises:
        ValueError: naming ``slices`` and the accepted forms.
    """
    if isinstance(slices, str):
        mode = "tumour" if slices == "tumor" else slices
        if mode in SLICE_MODES:
            return mode
    elif isinstance(slices, dict):
        return _scaled_range(slices)
    elif isinstance(slices, (tuple, list)) and len(slices) == 2:
        lo, hi = slices
        if all(is_int(v) for v in slices) and 0 <= lo < hi:
            return ("index", int(lo), int(hi))
        floats = any(isinstance(v, (float, np.floating)) for v in slices)
        if floats and all(is_number(v) for v in slices) and 0.0 <= lo < hi <= 1.0:
            return ("fraction", float(lo), float(hi))
    raise ValueError(f"slices={slices!r} must be {_SLICES_HELP}")


def _scaled_range(spec: dict) -> tuple[str, float, float]:
    """``{"range": [start, stop], "of": depth}`` as ``("fraction", start / depth, stop / depth)``."""
    rng, depth = spec.get("range"), spec.get("of")
    ok = (
        set(spec) == {"range", "of"}
        and is_int(depth)
        and isinstance(rng, (tuple, list))
        and len(rng) == 2
        and all(is_int(v) for v in rng)
        and 0 <= rng[0] < rng[1] <= depth
    )
    if not ok:
        raise ValueError(
            f'slices={spec!r}: a scaled range is {{"range": [start, stop], "of": depth}} with integers '
            f"0 <= start < stop <= depth (e.g. the seed's 22-121 of a 155-slice grid: "
            f'{{"range": [22, 122], "of": 155}})'
        )
    return ("fraction", rng[0] / depth, rng[1] / depth)


def _half_up(x: float) -> int:
    # Half up, not to even; the 1e-9 absorbs float error (22 / 155 * 155 is 22.000000000000004,
    # a product meant to be k + 0.5 may come out just under it), so results are exact arithmetic's.
    return int(math.floor(x + 0.5 + 1e-9))


def _selected(spec: str | tuple, n: int, label: np.ndarray | None, image: np.ndarray | None, axis: int) -> np.ndarray:
    """The indices a checked selection (:func:`_check_slices`) picks; see :func:`slice_indices`."""
    if spec == "all":
        return np.arange(n)
    if spec in ("tumour", "brain"):
        source = label if spec == "tumour" else image
        if source is None:
            return np.zeros(0, np.int64)
        mask = np.asarray(source) != 0
        if mask.ndim == 4:  # an image's channels
            mask = mask.any(axis=-1)
        return np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
    kind, lo, hi = spec
    if kind == "fraction":
        lo = min(_half_up(lo * n), n - 1)
        hi = max(_half_up(hi * n), lo + 1)
    return np.arange(max(int(lo), 0), min(int(hi), n))


def slice_indices(
    slices: Any,
    n: int,
    *,
    label: np.ndarray | None = None,
    image: np.ndarray | None = None,
    axis: int = 2,
) -> np.ndarray:
    """The indices along ``axis`` of a grid ``n`` slices deep that ``slices`` selects.

    Args:
        slices: ``"all"``; ``"tumour"`` (slices where ``label > 0``); ``"brain"`` (slices where
            any channel of ``image`` is non-zero: the brain of a skull-stripped scan, whatever
            the grid); ``(start, stop)`` integers, a half-open index range clipped to the grid;
            ``(a, b)`` floats in [0, 1], fractions of the depth: ``round(a * n)`` to
            ``round(b * n)`` (half up; at least one slice); ``{"range": [start, stop], "of":
            depth}``, indices chosen on a ``depth``-deep grid scaled to this one (the seed
            recipe's ``{"range": [22, 122], "of": 155}`` is slices 22-121 of a 240x240x155 BraTS
            grid and 26-142 of a 182-deep MNI152 grid).
        n: the grid's size along ``axis``.
        label: ``(X, Y, Z)`` labels, for ``"tumour"`` (``None``: no slices).
        image: ``(X, Y, Z[, C])`` image, for ``"brain"`` (``None``: no slices).
        axis: the spatial axis being sliced.

    Returns:
        Sorted int64 indices in ``[0, n)``.

    Raises:
        ValueError: a ``slices`` of none of these forms.
    """
    return _selected(_check_slices(slices), int(n), label, image, axis)


def _native_view(loaded: LoadedCase, geometry: Geometry) -> tuple[np.ndarray, np.ndarray | None]:
    """``loaded`` pasted back onto its native grid (background 0)."""
    img = paste_back(np.asarray(loaded.image, np.float32), geometry, fill=0)
    lab = None if loaded.label is None else paste_back(np.asarray(loaded.label), geometry, fill=0)
    return img, lab


def _slice_shape(src: CacheSource | NiftiSource, axis: int, crop: bool) -> tuple[int, int]:
    """The one in-plane shape of every selected case (for ``size=None``); ``ValueError`` if they differ."""
    ids = src.case_ids
    in_plane = [a for a in range(3) if a != axis]
    if crop and src.kind == "cache":
        shapes = {tuple(np.asarray(src.stored_shape(c))[in_plane]) for c in ids}
    elif not crop and src.kind == "cache":
        shapes = {tuple(np.asarray(src.geometry(c).shape)[in_plane]) for c in ids}
    elif not crop:
        shapes = {tuple(np.asarray(src.grid_shape(c))[in_plane]) for c in ids}
    else:
        shapes = {None, ()}  # cropped NIfTI: unknown until read
    if len(shapes) != 1:
        raise ValueError(
            "size=None needs every selected case to have the same in-plane slice shape; pass size=(H, W) to resize"
        )
    return next(iter(shapes))


@dataclass(frozen=True)
class _SliceReader:
    """The NumPy side of a slice stream: the selected slices of the case at each position."""

    src: CacheSource | NiftiSource
    axis: int
    crop: bool
    slices: Any
    channels: list[int]
    shuffle: bool
    seed: int

    def case_at(self, i: int) -> int:
        """Case index at stream position ``i`` (cases shuffled per epoch from ``(seed, epoch)``)."""
        n = len(self.src.case_ids)
        if self.shuffle:
            return int(np.random.default_rng([self.seed, 4, i // n]).permutation(n)[i % n])
        return i % n

    def read(self, epoch_pos: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(images (S, H, W, C) float32, labels (S, H, W) uint8, per-slice seed keys (S,))``."""
        i = int(epoch_pos)
        cid = self.src.case_ids[self.case_at(i)]
        loaded = self.src.load(cid)
        img, lab = loaded.image, loaded.label
        if not self.crop:
            img, lab = _native_view(loaded, self.src.geometry(cid))
        idx = _selected(self.slices, img.shape[self.axis], lab, img, self.axis)
        im = np.moveaxis(np.asarray(img), self.axis, 0)[idx][..., self.channels].astype(np.float32)
        if lab is None:
            lb = np.zeros(im.shape[:3], np.uint8)
        else:
            lb = np.moveaxis(np.asarray(lab), self.axis, 0)[idx].astype(np.uint8)
        keys = (np.int64(i) * 1000 + idx).astype(np.int64)
        return im, lb, keys


def _slice_stream(reader: _SliceReader, repeat: bool, shuffle_buffer: int) -> tf.data.Dataset:
    """``(image (H, W, C), label (H, W), key)`` slices, two cases interleaved."""
    c = len(reader.channels)

    def read(pos):
        im, lb, keys = tf.numpy_function(reader.read, [pos], [tf.float32, tf.uint8, tf.int64], stateful=False)
        im = tf.ensure_shape(im, (None, None, None, c))
        lb = tf.ensure_shape(lb, (None, None, None))
        return tf.data.Dataset.from_tensor_slices((im, lb, tf.ensure_shape(keys, (None,))))

    ds = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(len(reader.src.case_ids))
    ds = ds.interleave(read, cycle_length=2, block_length=1, num_parallel_calls=2, deterministic=True)
    if reader.shuffle and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=reader.seed, reshuffle_each_iteration=True)
    return ds


def _slice_finisher(
    size: tuple[int, int] | None,
    out_hw: tuple[int, int],
    c: int,
    aug: Callable | None,
    seed: int,
    target: str,
    weights: np.ndarray | None,
    scheme: LabelScheme | None = None,
) -> Callable:
    """The per-slice map: resize to ``size``, restore static shapes, augment, build targets."""
    seed_t = tf.constant(int(seed), tf.int64)
    image_shape = tuple(out_hw) + (c,)

    def finish_slice(im, lb, key):
        if size is not None:
            im = tf.image.resize(im, size, method="bilinear")
            lb = tf.cast(tf.image.resize(lb[..., None], size, method="nearest")[..., 0], tf.uint8)
        im = tf.ensure_shape(im, image_shape)
        lb = tf.ensure_shape(lb, tuple(out_hw))
        if aug is not None:
            im, lb = aug(im, lb, _seed_pair(seed_t, key))
            im = tf.ensure_shape(tf.cast(im, tf.float32), image_shape)
            lb = tf.ensure_shape(lb, tuple(out_hw))
        return finish(im, lb, target, weights, scheme=scheme)

    return finish_slice


def slice_dataset(
    source: Any,
    *,
    plane: str = "axial",
    slices: Any = "all",
    size: Sequence[int] | None = (128, 128),
    crop: bool = True,
    global_batch_size: int | None = None,
    modalities: Sequence[str] = MODALITIES,
    target: str = "classes",
    augment: Any = None,
    shuffle: bool = True,
    shuffle_buffer: int = 256,
    seed: int = 0,
    max_cases: int | None = None,
    case_ids: Sequence[str] | None = None,
    sample_weights: Sequence[float] | None = None,
    repeat: bool = True,
    preprocess: dict[str, Any] | None = None,
    batch_size: int | None = None,
    scheme: str | LabelScheme | None = None,
) -> tf.data.Dataset:
    """2D slices in one plane, optionally resized.

    The seed 2D U-Net recipe: ``slice_dataset(folder, crop=False, slices={"range": [22, 122],
    "of": 155}, size=(128, 128), modalities=("flair", "t1ce"))`` (axial slices 22-121 of a native
    240x240x155 grid, the same part of the depth of any other grid).

    Args:
        source: dataset folder, ``Dataset``, cache path or ``Cache``.
        plane: ``"axial"`` (slices along Z: ``(X, Y)`` images), ``"coronal"`` (along Y:
            ``(X, Z)``) or ``"sagittal"`` (along X: ``(Y, Z)``).
        slices: ``"all"``, ``"tumour"`` (slices with any label > 0), ``"brain"`` (slices with
            any non-zero image voxel), ``(start, stop)`` integers (a half-open index range),
            ``(a, b)`` floats (fractions of the depth) or ``{"range": [start, stop], "of":
            depth}`` (a range chosen on a ``depth``-deep grid, scaled); each in the grid being
            sliced (native if ``crop=False``), case by case. See :func:`slice_indices`.
        size: ``(H, W)`` to resize to (bilinear images, nearest labels), or ``None`` to keep
            the slice shape (then every selected case must have the same in-plane shape).
        crop: slice the brain-box crop (default) or the native grid (a cache is pasted back).
        global_batch_size: batch over all replicas; default 16.
        modalities, target, sample_weights, seed, max_cases, case_ids, repeat, preprocess, scheme:
            as in :func:`patch_dataset`.
        augment: as in :func:`patch_dataset` with 2D ops; default ``None`` (off).
        shuffle: shuffle cases per epoch and slices in a buffer of ``shuffle_buffer``; ``False``
            gives a deterministic order (validation).
        batch_size: deprecated alias of ``global_batch_size``.

    Returns:
        ``(image (B, H, W, C) float32, target (B, H, W, K)[, weight (B, H, W)])``.

    Raises:
        ValueError: bad ``plane``, ``slices``, ``size``, ``modalities``, ``target``,
            ``global_batch_size``, case selection, or ``size=None`` with unequal slice shapes.
    """
    global_batch_size = _global_batch(global_batch_size, batch_size, 16)
    axis = PLANE_AXES[check_choice("plane", plane, tuple(PLANE_AXES))]
    slices = _check_slices(slices)
    channels = _channels(modalities)
    check_target(target)
    size = None if size is None else _check_shape("size", size, 2)
    src = open_source(source, case_ids, max_cases, preprocess, need_labels=target is not None, scheme=scheme)
    weights = check_sample_weights(sample_weights, src.scheme)
    out_hw = size if size is not None else _slice_shape(src, axis, crop)
    reader = _SliceReader(src, axis, crop, slices, channels, shuffle, int(seed))
    ds = _slice_stream(reader, repeat, shuffle_buffer)
    finish_slice = _slice_finisher(
        size, out_hw, len(channels), _augmenter(augment, 2)[0], seed, target, weights, src.scheme
    )
    ds = ds.map(finish_slice, num_parallel_calls=_AUTOTUNE, deterministic=True)
    ds = ds.batch(global_batch_size, drop_remainder=True).prefetch(2)
    return _with_options(ds)


# ---------------------------------------------------------------------------------------------
# full volumes
# ---------------------------------------------------------------------------------------------
def _volume_shape(
    shape: Sequence[int] | None, shapes: dict[str, tuple[int, int, int]], divisor: int
) -> tuple[int, int, int]:
    """The common volume shape: ``shape`` (checked to hold every case) or the largest extent per
    axis rounded up to ``divisor``."""
    if shape is None:
        biggest = np.max(list(shapes.values()), axis=0)
        return tuple(int(math.ceil(b / divisor) * divisor) for b in biggest)
    out = _check_shape("shape", shape, 3)
    too_big = [cid for cid, s in shapes.items() if np.any(np.asarray(s) > out)]
    if too_big:
        raise ValueError(f"shape={out} is smaller than case {too_big[0]!r} {tuple(shapes[too_big[0]])}")
    return out


def volume_dataset(
    source: Any,
    *,
    global_batch_size: int | None = None,
    modalities: Sequence[str] = MODALITIES,
    target: str | None = "classes",
    shape: Sequence[int] | None = None,
    divisor: int = 1,
    max_cases: int | None = None,
    case_ids: Sequence[str] | None = None,
    sample_weights: Sequence[float] | None = None,
    with_info: bool = False,
    preprocess: dict[str, Any] | None = None,
    batch_size: int | None = None,
    scheme: str | LabelScheme | None = None,
) -> tf.data.Dataset:
    """Whole brain-box volumes in a fixed order, for validation and inference.

    Each cropped case is placed at the origin of a zero volume of one common ``shape`` (default:
    the largest cropped extent per axis over the selected cases, rounded up to ``divisor``, e.g.
    16 for a U-Net with 4 poolings), so every element has the same static shape; the valid
    region of case ``k`` is ``[:X_k, :Y_k, :Z_k]``. Deterministic: no randomness, the same
    elements every epoch (no ``repeat``; Keras iterates it again per validation).

    From a dataset folder every selected case is read and preprocessed once when the dataset is
    built and kept in RAM (fine for a validation split; build a cache for more).

    Args:
        source: dataset folder, ``Dataset``, cache path or ``Cache``.
        global_batch_size: volumes per batch (over all replicas); default 1.
        modalities: channel names.
        target: ``"classes"``, ``"regions"``, ``"labels"`` or ``None`` (images only, e.g.
            unlabelled cases).
        shape: common spatial shape; a case larger than it raises ``ValueError``.
        divisor: round the default shape up to a multiple of this.
        sample_weights: per-class weights; the weight is also 0 in the padding.
        with_info: append ``{"case_id": string, "shape": (3,) int32}`` (the valid extent).
        batch_size: deprecated alias of ``global_batch_size``.
        scheme: the label scheme, as in :func:`patch_dataset`.

    Returns:
        ``(image (B, *shape, C), target[, weight][, info])``.

    Raises:
        ValueError: bad arguments, a case larger than ``shape``, empty selection.
    """
    global_batch_size = _global_batch(global_batch_size, batch_size, 1)
    channels = _channels(modalities)
    check_target(target, allow_none=True)
    divisor = int(check_int("divisor", divisor))
    src = open_source(source, case_ids, max_cases, preprocess, need_labels=target is not None, scheme=scheme)
    weights = check_sample_weights(sample_weights, src.scheme)
    ids = list(src.case_ids)
    if src.kind == "cache":
        shapes = {cid: src.stored_shape(cid) for cid in ids}
        getter = src.load
    else:
        loaded = {cid: src.load(cid) for cid in ids}
        shapes = {cid: loaded[cid].image.shape[:3] for cid in ids}
        getter = loaded.__getitem__
    out = _volume_shape(shape, shapes, divisor)

    def gen():
        for cid in ids:
            ld = getter(cid)
            img, lab = extract_patch(ld.image, ld.label, (0, 0, 0), out, channels)
            yield img, lab, cid.encode(), np.asarray(shapes[cid], np.int32)

    sig = (
        tf.TensorSpec(out + (len(channels),), tf.float32),
        tf.TensorSpec(out, tf.uint8),
        tf.TensorSpec((), tf.string),
        tf.TensorSpec((3,), tf.int32),
    )
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    grid = tf.stack(tf.meshgrid(*[tf.range(s) for s in out], indexing="ij"), axis=-1)

    def finish_volume(img, lab, cid, shp):
        valid = tf.reduce_all(grid < shp, axis=-1) if weights is not None else None
        res = finish(img, lab, target, weights, valid, src.scheme)
        if with_info:
            res = res + ({"case_id": cid, "shape": shp},)
        return res[0] if (len(res) == 1) else res

    ds = ds.map(finish_volume, num_parallel_calls=1)
    ds = ds.batch(global_batch_size, drop_remainder=len(ids) % global_batch_size == 0).prefetch(1)
    return _with_options(ds)


__all__ = [
    "PatchDraw",
    "PatchSampler",
    "patch_dataset",
    "slice_dataset",
    "slice_indices",
    "SLICE_MODES",
    "volume_dataset",
    "TARGETS",
    "PLANES",
    "NUM_CLASSES",
    "MAX_LOCATIONS",
]
