"""tf.data input pipelines: 3D patches, 2D slices and full volumes.

Every builder takes a ``source``: a dataset folder, a :class:`brainseg_tf.io.Dataset`, an HDF5
cache path (``*.h5``, see :mod:`brainseg_tf.data.cache`) or an open :class:`Cache`; plus
``case_ids`` (e.g. a k-fold split) and ``max_cases`` to select cases.

Stages (as tensorflow/models ``official/vision``): read (cache slice or NIfTI load + preprocess,
in a parallel ``numpy_function``, shapes restored with ``tf.ensure_shape``) -> sample -> augment
(TensorFlow ops from :mod:`brainseg_tf.data.augment`, keyed by a per-element seed) -> targets ->
batch -> prefetch.

Elements are ``(image, target)`` or ``(image, target, sample_weight)``:

- image: ``(B, *spatial, C)`` float32, channels = ``modalities`` in the order given, z-scored
  within the brain, background 0 (also the padding value);
- target ``"classes"``: one-hot float32 ``(B, *spatial, 4)`` over canonical classes
  (BG, NCR, ED, ET); ``"regions"``: float32 ``(B, *spatial, 3)`` = (WT, TC, ET) with
  WT = {1, 2, 3}, TC = {1, 3}, ET = {3}; ``"labels"``: uint8 ``(B, *spatial)`` canonical labels;
- sample_weight (when ``sample_weights`` is a per-class weight sequence): float32
  ``(B, *spatial)`` = ``sample_weights[label]`` (times the valid-region mask for volumes).

Shapes are fully static (batch dimension included: training streams drop the last partial
batch; volume batches are static whenever the number of cases divides by the batch size).

**Reproducibility.** Every random choice of element ``i`` (case order, patch position,
foreground class, augmentation) comes from ``(seed, i)`` only, and parallel maps keep element
order, so the same seed gives the same stream whatever the thread timing.

**Distribution.** ``batch_size`` is the *global* batch: under ``tf.distribute`` with
``model.fit`` Keras splits each batch over the replicas (global 8 on 2 replicas = 4 each). The
datasets set ``auto_shard_policy = DATA``.

**Sampling definitions (3D patches).** Draw ``i`` is *foreground-centred* when
``floor((i + 1) * f + u) - floor(i * f + u) == 1`` (``f = foreground_fraction``, ``u`` a
seed-dependent offset): exactly ``f`` of the draws in the long run and within one draw of
``n * f`` over any ``n`` consecutive draws (with batch 3 and f = 1/3 every batch has exactly one,
as nnU-Net forces its last third of each batch). A foreground-centred draw picks a class
uniformly among the tumour classes present in the case (1, 2, 3), then a voxel of that class
uniformly (from up to 10 000 stored coordinates), and centres the patch on it (voxel at index
``size // 2``); the patch may cross the volume edge and is zero-padded. Other draws (and
foreground draws on a tumour-free case) are *uniform*: the patch's lower corner is uniform
over the positions that keep it inside the brain box, or, where the patch is larger than the
box, that keep the box inside the patch. ``with_info=True`` reports, per patch, the case index,
the class it was centred on (-1 for uniform) and the centre and corner.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from brainseg_tf.conventions import FOREGROUND_CLASSES
from brainseg_tf.data.cache import Cache, _clip_box, is_cache_path, open_cache
from brainseg_tf.data.preprocess import brain_bbox, class_locations, preprocess_case
from brainseg_tf.io import MODALITIES, Dataset, open_dataset, read_case, read_header

TARGETS = ("classes", "regions", "labels")
PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}
NUM_CLASSES = 4
MAX_LOCATIONS = 10000
_AUTOTUNE = tf.data.AUTOTUNE


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------
@dataclass
class _Loaded:
    image: np.ndarray  # (X, Y, Z, 4), float32 or float16 (cache), may be a read-only mapping
    label: np.ndarray | None
    locations: dict[int, np.ndarray]
    brain_box: tuple


class _CacheSource:
    """Cases of an HDF5 cache; reads are NumPy slices of the memory-mapped file."""

    kind = "cache"

    def __init__(self, cache: Cache, case_ids: list[str]):
        self.cache = cache
        self.case_ids = case_ids

    def has_label(self, cid: str) -> bool:
        return self.cache.has_label(cid)

    def grid_shape(self, cid: str) -> tuple[int, int, int]:
        return tuple(self.cache.geometry(cid).grid_shape)

    def stored_shape(self, cid: str) -> tuple[int, int, int]:
        return self.cache.shape(cid)

    def load(self, cid: str) -> _Loaded:
        return _Loaded(
            self.cache.image(cid), self.cache.label(cid), self.cache.locations(cid), self.cache.brain_box(cid)
        )

    def geometry(self, cid: str):
        return self.cache.geometry(cid)


class _NiftiSource:
    """Cases of a dataset folder, read and preprocessed on each load (several patches per load)."""

    kind = "nifti"

    def __init__(self, dataset: Dataset, case_ids: list[str], preprocess: dict[str, Any]):
        self.dataset = dataset
        self.case_ids = case_ids
        self.preprocess = dict(preprocess)
        bad = set(self.preprocess) - {"crop", "margin", "normalize", "reorient", "spacing"}
        if bad:
            raise ValueError(f"preprocess has unknown keys {sorted(bad)}")
        self._geometry: dict[str, Any] = {}

    def has_label(self, cid: str) -> bool:
        return self.dataset.ref(cid).label is not None

    def grid_shape(self, cid: str) -> tuple[int, int, int]:
        ref = self.dataset.ref(cid)
        shape, affine, spacing = read_header(next(iter(ref.images.values())))
        shape = np.asarray(shape[:3])
        if self.preprocess.get("spacing") is not None:
            target = np.broadcast_to(np.asarray(self.preprocess["spacing"], float), (3,))
            shape = np.maximum(np.round(shape * np.asarray(spacing) / target), 1).astype(int)
        if self.preprocess.get("reorient"):
            return (int(shape.max()),) * 3  # axis order changes with the affine; an upper bound suffices
        return tuple(int(s) for s in shape)

    def preprocessed(self, cid: str):
        pre = preprocess_case(read_case(self.dataset.ref(cid)), **self.preprocess)
        self._geometry[cid] = pre.geometry
        return pre

    def load(self, cid: str) -> _Loaded:
        pre = self.preprocessed(cid)
        seed = self.case_ids.index(cid)
        return _Loaded(
            pre.image,
            pre.label,
            class_locations(pre.label, FOREGROUND_CLASSES, MAX_LOCATIONS, seed),
            brain_bbox(pre.brain_mask),
        )

    def geometry(self, cid: str):
        if cid not in self._geometry:
            self.preprocessed(cid)
        return self._geometry[cid]


def _open_source(
    source: Any,
    case_ids: Sequence[str] | None,
    max_cases: int | None,
    preprocess: dict[str, Any] | None,
    need_labels: bool,
) -> _CacheSource | _NiftiSource:
    if isinstance(source, Cache):
        store: Any = source
    elif isinstance(source, Dataset):
        store = source
    elif isinstance(source, (str, Path)):
        p = Path(source)
        if is_cache_path(p):
            store = open_cache(p)
        elif p.is_dir():
            store = open_dataset(p)
        else:
            raise ValueError(f"source={str(source)!r} is neither a dataset folder nor an HDF5 cache file")
    else:
        raise ValueError(f"source={source!r}: expected a dataset folder, a Dataset, a cache path or a Cache")
    available = list(store.case_ids)
    if case_ids is not None:
        if isinstance(case_ids, str):
            raise ValueError(f"case_ids={case_ids!r} must be a sequence of case ids, not one string")
        case_ids = list(case_ids)
        if not case_ids:
            raise ValueError("case_ids is empty: select at least one case")
        unknown = [c for c in case_ids if c not in store]
        if unknown:
            raise ValueError(f"case_ids has {len(unknown)} ids not in the source (e.g. {unknown[0]!r})")
        ids = case_ids
    else:
        ids = available
    if max_cases is not None:
        if not isinstance(max_cases, (int, np.integer)) or max_cases < 1:
            raise ValueError(f"max_cases={max_cases!r} must be a positive int")
        ids = ids[:max_cases]
    if not ids:
        raise ValueError(f"source={str(source)!r} holds no cases")
    if isinstance(store, Cache):
        if preprocess:
            raise ValueError("preprocess is only for dataset folders; a cache is already preprocessed")
        src: Any = _CacheSource(store, ids)
    else:
        src = _NiftiSource(store, ids, preprocess or {})
    if need_labels:
        missing = [c for c in ids if not src.has_label(c)]
        if missing:
            raise ValueError(
                f"case_ids: {len(missing)} selected cases have no label (e.g. {missing[0]!r}); "
                f"training data needs labels"
            )
    return src


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _channels(modalities: Sequence[str]) -> list[int]:
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


def _check_target(target: str | None, allow_none: bool = False) -> None:
    if target is None and allow_none:
        return
    if target not in TARGETS:
        raise ValueError(f"target={target!r} must be one of {TARGETS}" + (" or None" if allow_none else ""))


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum}")
    return int(value)


def _check_weights(sample_weights: Any) -> np.ndarray | None:
    if sample_weights is None:
        return None
    w = np.asarray(sample_weights, dtype=np.float32)
    if w.shape != (NUM_CLASSES,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(
            f"sample_weights={sample_weights!r} must be {NUM_CLASSES} non-negative per-class weights "
            f"(BG, NCR, ED, ET) or None"
        )
    return w


def _check_fraction(name: str, value: Any) -> float:
    if not isinstance(value, (int, float, np.floating)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}={value!r} must be in [0, 1]")
    return float(value)


def _augmenter(augment: Any, spatial_dims: int, fold_flips: bool = False) -> tuple[Callable | None, float, tuple]:
    """(augment fn, flip probability, flip axes). With ``fold_flips`` the mirroring of a known
    config is taken out of the TF function and done by the caller while copying the patch out of
    the volume (a view with negative strides: free instead of one more pass over 32 MiB)."""
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


def _with_options(ds: tf.data.Dataset) -> tf.data.Dataset:
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(opts)


# ---------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------
# rows: canonical class 0-3; columns: (WT, TC, ET)
_REGION_TABLE = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]], np.float32)


def _make_targets(label: tf.Tensor, target: str) -> tf.Tensor:
    if target == "classes":
        return tf.one_hot(tf.cast(label, tf.uint8), NUM_CLASSES, dtype=tf.float32)
    if target == "regions":  # one gather is ~2.5x faster than comparing and stacking three masks
        return tf.gather(tf.constant(_REGION_TABLE), tf.cast(label, tf.int32))
    return tf.cast(label, tf.uint8)


def _finish(
    image: tf.Tensor, label: tf.Tensor, target: str | None, weights: np.ndarray | None, valid: tf.Tensor | None = None
) -> tuple:
    if target is None:
        return (image,)
    out: tuple = (image, _make_targets(label, target))
    if weights is not None:
        w = tf.gather(tf.constant(weights), tf.cast(label, tf.int32))
        if valid is not None:
            w = w * tf.cast(valid, tf.float32)
        out = out + (w,)
    return out


# ---------------------------------------------------------------------------------------------
# patch sampling (pure NumPy; unit-tested without TensorFlow)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchDraw:
    """One sampled patch: ``start`` lower corner, ``centre`` = start + size // 2, ``fg_class``
    the tumour class it was centred on (-1 for a uniform draw)."""

    case_index: int
    start: tuple[int, int, int]
    centre: tuple[int, int, int]
    fg_class: int
    foreground_requested: bool


class PatchSampler:
    """Where patch ``i`` of a stream comes from (see the module docstring for the definitions).

    Args:
        n_cases: number of cases.
        patch_size: ``(px, py, pz)``.
        foreground_fraction: share of foreground-centred draws.
        seed: stream seed.
        patches_per_case: how many draws each case gets per epoch of ``n_cases *
            patches_per_case`` draws (cases are shuffled per epoch).
    """

    def __init__(
        self, n_cases: int, patch_size: Sequence[int], foreground_fraction: float, seed: int, patches_per_case: int = 1
    ):
        self.n_cases = n_cases
        self.patch_size = tuple(int(p) for p in patch_size)
        self.fraction = float(foreground_fraction)
        self.seed = int(seed)
        self.per_case = int(patches_per_case)
        self._offset = float(np.random.default_rng([self.seed, 7]).random())
        self._orders: dict[int, np.ndarray] = {}

    def foreground_requested(self, draw: int) -> bool:
        f, u = self.fraction, self._offset
        return math.floor((draw + 1) * f + u) - math.floor(draw * f + u) == 1

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = self._orders.get(epoch)
        if order is None:
            rng = np.random.default_rng([self.seed, 1, epoch])
            order = rng.permutation(np.tile(np.arange(self.n_cases), self.per_case))
            self._orders = {**dict(list(self._orders.items())[-7:]), epoch: order}  # the last 8 epochs
        return order

    def case_of(self, draw: int) -> int:
        """Case index of draw ``draw`` when every draw picks its case (cache streams)."""
        per_epoch = self.n_cases * self.per_case
        return int(self._epoch_order(draw // per_epoch)[draw % per_epoch])

    def case_of_load(self, load: int) -> int:
        """Case index of load ``load`` when each load gives several patches (NIfTI streams)."""
        return int(
            np.random.default_rng([self.seed, 2, load // self.n_cases]).permutation(self.n_cases)[load % self.n_cases]
        )

    def draw(
        self,
        draw: int,
        case_index: int,
        shape: Sequence[int],
        brain_box: Sequence[Sequence[int]],
        locations: dict[int, np.ndarray],
    ) -> PatchDraw:
        """Sample patch ``draw`` inside a case of spatial ``shape``."""
        rng = np.random.default_rng([self.seed, 3, draw])
        size = np.asarray(self.patch_size)
        fg = self.foreground_requested(draw)
        classes = sorted(c for c, xyz in locations.items() if len(xyz))
        if fg and classes:
            cls = int(classes[rng.integers(len(classes))])
            xyz = locations[cls]
            centre = np.asarray(xyz[rng.integers(len(xyz))], dtype=np.int64)
            start = centre - size // 2
        else:
            cls = -1
            lo = np.asarray([b[0] for b in brain_box])
            hi = np.asarray([b[1] for b in brain_box]) - size  # inclusive upper corner
            a, b = np.minimum(lo, hi), np.maximum(lo, hi)
            start = np.asarray([rng.integers(x, y + 1) for x, y in zip(a, b)], dtype=np.int64)
            centre = start + size // 2
        return PatchDraw(case_index, tuple(int(v) for v in start), tuple(int(v) for v in centre), cls, fg)


def _check_patch_size(patch_size: Any, src: Any) -> tuple[int, int, int]:
    try:
        size = tuple(int(p) for p in patch_size)
        ok = len(size) == 3 and all(float(p) == int(p) for p in patch_size)
    except (TypeError, ValueError):
        ok = False
    if not ok or min(size) < 1:
        raise ValueError(f"patch_size={patch_size!r} must be three positive ints (px, py, pz)")
    limit = np.max([src.grid_shape(c) for c in src.case_ids[:32]], axis=0)
    if np.any(np.asarray(size) > limit):
        raise ValueError(
            f"patch_size={size} is larger than the scans' grid {tuple(int(v) for v in limit)}; patches "
            f"may exceed the brain box (they are zero-padded) but not the whole scan"
        )
    return size


def _aligned_zeros(shape: Sequence[int], dtype: Any, align: int = 64) -> np.ndarray:
    """``np.zeros`` whose data starts on an ``align``-byte boundary. TensorFlow adopts a
    ``numpy_function`` result without copying only when it is 64-byte aligned (NumPy's own
    allocations are 16-byte aligned): one 32 MiB copy less per 128^3 x 4 float32 patch."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(nbytes + align, np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off : off + nbytes].view(dtype).reshape(tuple(shape))


def _extract(
    image: np.ndarray,
    label: np.ndarray | None,
    start: Sequence[int],
    size: Sequence[int],
    channels: list[int],
    flips: Sequence[int] = (),
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Copy a zero-padded box out of a volume, mirrored along ``flips`` in the same single pass
    (into ``out``, zero-filled buffers, when given)."""
    src, dst = _clip_box(start, size, image.shape[:3])
    if out is None:
        img = _aligned_zeros(tuple(size) + (len(channels),), np.float32)
        lab = _aligned_zeros(tuple(size), np.uint8)
    else:
        img, lab = out
    mirror = tuple(slice(None, None, -1) if a in flips else slice(None) for a in range(3))
    img_w, lab_w = img[mirror], lab[mirror]  # views: writing into them writes the mirrored patch
    if all(s.stop > s.start for s in src):
        if channels == list(range(image.shape[3])):
            whole = _voxel_view(image) if 2 in flips and image.dtype == img.dtype else None
            if whole is not None:
                # mirrored along the innermost spatial axis: copy whole voxels (all channels as
                # one 8/16-byte item), 3x faster than NumPy's strided 4-byte copy; same bytes
                _voxel_view(img)[mirror][dst] = whole[src]
            else:
                img_w[dst] = image[src]
        else:
            for k, c in enumerate(channels):
                img_w[dst + (k,)] = image[src + (c,)]
        if label is not None:
            lab_w[dst] = label[src]
    return img, lab


def _voxel_view(a: np.ndarray) -> np.ndarray | None:
    """``a`` (X, Y, Z, C) with each voxel's C channels viewed as one item of C * itemsize bytes
    (8 or 16), or None where that is not possible."""
    nbytes = a.shape[-1] * a.itemsize
    kind = {8: np.float64, 16: np.complex128}.get(nbytes)
    if kind is None or a.strides[-1] != a.itemsize:
        return None
    try:
        return a.view(kind)[..., 0]
    except ValueError:
        return None


def _flips(seed: int, draw: int, prob: float, axes: Sequence[int]) -> tuple[int, ...]:
    if prob <= 0:
        return ()
    u = np.random.default_rng([seed, 5, draw]).random(3)
    return tuple(a for a in axes if u[a] < prob)


def _info_vector(d: PatchDraw) -> np.ndarray:
    return np.asarray([d.case_index, d.fg_class, *d.centre, *d.start], dtype=np.int32)


def patch_dataset(
    source: Any,
    *,
    patch_size: Sequence[int] = (128, 128, 128),
    batch_size: int = 2,
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
) -> tf.data.Dataset:
    """Random 3D training patches with foreground oversampling and augmentation.

    Args:
        source: dataset folder, ``Dataset``, cache path or ``Cache``.
        patch_size: ``(px, py, pz)`` voxels, e.g. ``(128, 128, 128)`` or ``(160, 160, 16)``; may
            exceed the brain box (zero-padded) but not the scan grid.
        batch_size: global batch size (split over replicas under ``tf.distribute``).
        modalities: channel names, in the order wanted, from ``(flair, t1, t1ce, t2)``.
        target: ``"classes"`` (one-hot, 4), ``"regions"`` (WT, TC, ET) or ``"labels"`` (uint8).
        foreground_fraction: share of patches centred on a tumour voxel (default 1/3, nnU-Net).
        patches_per_case: from a cache: times each case is drawn per epoch (default 1); from
            NIfTI: patches cut from each loaded case (default 8; loading dominates).
        augment: ``True`` (default :class:`~brainseg_tf.data.augment.AugmentConfig`),
            ``"light"``, an ``AugmentConfig``, a callable ``(image, label, seed) -> (image,
            label)``, or ``None``/``False``.
        seed: stream seed (case order, positions, augmentation).
        max_cases, case_ids: case selection.
        sample_weights: per-class voxel weights ``(w_bg, w_ncr, w_ed, w_et)`` -> third element.
        repeat: infinite stream (use ``steps_per_epoch``); ``False``: one epoch of
            ``n_cases * patches_per_case`` patches.
        preprocess: ``preprocess_case`` options for dataset folders (default crop + z-score).
        shuffle_buffer: patches mixed across loaded cases (NIfTI only; default
            ``2 * patches_per_case``).
        with_info: append a dict ``{"case", "fg_class", "centre", "start"}`` (int32) per patch.
        prefetch: batches prefetched.

    Returns:
        A ``tf.data.Dataset`` of ``(image, target[, weight][, info])`` batches, image
        ``(batch_size, px, py, pz, len(modalities))`` float32.

    Raises:
        ValueError: bad ``patch_size``, ``modalities``, ``target``, ``batch_size``,
            ``foreground_fraction``, ``case_ids``/``max_cases``, an empty source or unlabelled cases.
    """
    channels = _channels(modalities)
    _check_target(target)
    batch_size = _check_int("batch_size", batch_size)
    fraction = _check_fraction("foreground_fraction", foreground_fraction)
    weights = _check_weights(sample_weights)
    src = _open_source(source, case_ids, max_cases, preprocess, need_labels=True)
    size = _check_patch_size(patch_size, src)
    n = len(src.case_ids)
    is_cache = src.kind == "cache"
    per_case = _check_int(
        "patches_per_case", patches_per_case if patches_per_case is not None else (1 if is_cache else 8)
    )
    sampler = PatchSampler(n, size, fraction, seed, per_case if is_cache else 1)
    aug, flip_prob, flip_axes = _augmenter(augment, 3, fold_flips=True)
    c = len(channels)
    ids = list(src.case_ids)

    if is_cache:
        cache = src.cache

        def read_one(draw: np.int64):
            d = int(draw)
            ci = sampler.case_of(d)
            cid = ids[ci]
            pd = sampler.draw(d, ci, cache.shape(cid), cache.brain_box(cid), cache.locations(cid))
            img, lab = _extract(
                cache.image(cid), cache.label(cid), pd.start, size, channels, _flips(seed, d, flip_prob, flip_axes)
            )
            return img, lab, _info_vector(pd)

        def read(draw):
            img, lab, info = tf.numpy_function(read_one, [draw], [tf.float32, tf.uint8, tf.int32], stateful=False)
            return (tf.ensure_shape(img, size + (c,)), tf.ensure_shape(lab, size), tf.ensure_shape(info, (8,)), draw)

        ds = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(n * per_case)
        ds = ds.map(read, num_parallel_calls=_AUTOTUNE, deterministic=True)
    else:

        def read_case_patches(load: np.int64):
            li = int(load)
            ci = sampler.case_of_load(li)
            loaded = src.load(ids[ci])
            shape = loaded.image.shape[:3]
            imgs = _aligned_zeros((per_case,) + size + (c,), np.float32)
            labs = _aligned_zeros((per_case,) + size, np.uint8)
            infos = np.zeros((per_case, 8), np.int32)
            draws = np.arange(li * per_case, (li + 1) * per_case, dtype=np.int64)
            for j, d in enumerate(draws):
                pd = sampler.draw(int(d), ci, shape, loaded.brain_box, loaded.locations)
                _extract(
                    loaded.image,
                    loaded.label,
                    pd.start,
                    size,
                    channels,
                    _flips(seed, int(d), flip_prob, flip_axes),
                    out=(imgs[j], labs[j]),
                )
                infos[j] = _info_vector(pd)
            return imgs, labs, infos, draws

        def read(load):
            img, lab, info, draws = tf.numpy_function(
                read_case_patches, [load], [tf.float32, tf.uint8, tf.int32, tf.int64], stateful=False
            )
            return (
                tf.ensure_shape(img, (per_case,) + size + (c,)),
                tf.ensure_shape(lab, (per_case,) + size),
                tf.ensure_shape(info, (per_case, 8)),
                tf.ensure_shape(draws, (per_case,)),
            )

        ds = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(n)
        ds = ds.map(read, num_parallel_calls=_AUTOTUNE, deterministic=True).unbatch()
        buf = shuffle_buffer if shuffle_buffer is not None else 2 * per_case
        if buf > 1:
            ds = ds.shuffle(buf, seed=seed, reshuffle_each_iteration=True)

    seed_t = tf.constant(int(seed), tf.int64)

    def augment_one(img, lab, info, draw):
        if aug is not None:
            img, lab = aug(img, lab, tf.stack([seed_t, tf.cast(draw, tf.int64)]))
            img = tf.ensure_shape(tf.cast(img, tf.float32), size + (c,))
            lab = tf.ensure_shape(tf.cast(lab, tf.uint8), size)
        return img, lab, info

    def targets(img, lab, info):
        # on whole batches: the one-hot/region tensors are built once, never copied by batch()
        out = _finish(img, lab, target, weights)
        if with_info:
            out = out + ({"case": info[:, 0], "fg_class": info[:, 1], "centre": info[:, 2:5], "start": info[:, 5:8]},)
        return out

    if aug is not None:
        ds = ds.map(augment_one, num_parallel_calls=_AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda img, lab, info, draw: (img, lab, info))
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(targets, num_parallel_calls=_AUTOTUNE, deterministic=True)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return _with_options(ds)


# ---------------------------------------------------------------------------------------------
# 2D slices
# ---------------------------------------------------------------------------------------------
def _slice_indices(label: np.ndarray | None, n: int, slices: Any, axis: int) -> np.ndarray:
    if isinstance(slices, str):
        if slices == "all":
            return np.arange(n)
        if label is None:
            return np.zeros(0, np.int64)
        other = tuple(a for a in range(3) if a != axis)
        return np.flatnonzero((label > 0).any(axis=other))
    lo, hi = slices
    return np.arange(max(int(lo), 0), min(int(hi), n))


def _check_slices(slices: Any) -> Any:
    if isinstance(slices, str):
        if slices in ("tumour", "tumor"):
            return "tumour"
        if slices == "all":
            return slices
    elif (
        isinstance(slices, (tuple, list))
        and len(slices) == 2
        and all(isinstance(v, (int, np.integer)) for v in slices)
        and 0 <= slices[0] < slices[1]
    ):
        return (int(slices[0]), int(slices[1]))
    raise ValueError(f"slices={slices!r} must be 'all', 'tumour' or a half-open index range (start, stop)")


def _native_view(loaded: _Loaded, geometry: Any) -> tuple[np.ndarray, np.ndarray | None]:
    from brainseg_tf.data.preprocess import paste_back

    img = paste_back(np.asarray(loaded.image, np.float32), geometry, fill=0)
    lab = None if loaded.label is None else paste_back(np.asarray(loaded.label), geometry, fill=0)
    return img, lab


def slice_dataset(
    source: Any,
    *,
    plane: str = "axial",
    slices: Any = "all",
    size: Sequence[int] | None = (128, 128),
    crop: bool = True,
    batch_size: int = 16,
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
) -> tf.data.Dataset:
    """2D slices in one plane, optionally resized.

    The seed 2D U-Net recipe: ``slice_dataset(folder, crop=False, slices=(22, 122),
    size=(128, 128), modalities=("flair", "t1ce"))`` (axial slices 22-121 of the native grid).

    Args:
        source: dataset folder, ``Dataset``, cache path or ``Cache``.
        plane: ``"axial"`` (slices along Z: ``(X, Y)`` images), ``"coronal"`` (along Y:
            ``(X, Z)``) or ``"sagittal"`` (along X: ``(Y, Z)``).
        slices: ``"all"``, ``"tumour"`` (slices with any label > 0) or ``(start, stop)``, a
            half-open index range in the grid being sliced (native if ``crop=False``).
        size: ``(H, W)`` to resize to (bilinear images, nearest labels), or ``None`` to keep
            the slice shape (then every selected case must have the same in-plane shape).
        crop: slice the brain-box crop (default) or the native grid (a cache is pasted back).
        batch_size: global batch size.
        modalities, target, sample_weights, seed, max_cases, case_ids, repeat, preprocess: as
            in :func:`patch_dataset`.
        augment: as in :func:`patch_dataset` with 2D ops; default ``None`` (off).
        shuffle: shuffle cases per epoch and slices in a buffer of ``shuffle_buffer``; ``False``
            gives a deterministic order (validation).

    Returns:
        ``(image (B, H, W, C) float32, target (B, H, W, K)[, weight (B, H, W)])``.

    Raises:
        ValueError: bad ``plane``, ``slices``, ``size``, ``modalities``, ``target``,
            ``batch_size``, case selection, or ``size=None`` with unequal slice shapes.
    """
    if plane not in PLANES:
        raise ValueError(f"plane={plane!r} must be one of {tuple(PLANES)}")
    axis = PLANES[plane]
    slices = _check_slices(slices)
    channels = _channels(modalities)
    _check_target(target)
    batch_size = _check_int("batch_size", batch_size)
    weights = _check_weights(sample_weights)
    if size is not None:
        try:
            size = tuple(int(s) for s in size)
        except (TypeError, ValueError):
            size = ()
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size={size!r} must be None or two positive ints (H, W)")
    src = _open_source(source, case_ids, max_cases, preprocess, need_labels=target is not None)
    ids = list(src.case_ids)
    n = len(ids)
    in_plane = [a for a in range(3) if a != axis]
    if size is None:
        if crop and src.kind == "cache":
            shapes = {tuple(np.asarray(src.stored_shape(c))[in_plane]) for c in ids}
        elif not crop:
            shapes = {tuple(np.asarray(src.grid_shape(c))[in_plane]) for c in ids}
            if src.kind == "cache":
                shapes = {tuple(np.asarray(src.geometry(c).shape)[in_plane]) for c in ids}
        else:
            shapes = {None, ()}  # cropped NIfTI: unknown until read
        if len(shapes) != 1:
            raise ValueError(
                "size=None needs every selected case to have the same in-plane slice shape; pass size=(H, W) to resize"
            )
        out_hw = next(iter(shapes))
    else:
        out_hw = size
    c = len(channels)
    aug = _augmenter(augment, 2)[0]

    def load_slices(epoch_pos: np.int64):
        i = int(epoch_pos)
        if shuffle:
            ci = int(np.random.default_rng([seed, 4, i // n]).permutation(n)[i % n])
        else:
            ci = i % n
        loaded = src.load(ids[ci])
        img, lab = loaded.image, loaded.label
        if not crop:
            img, lab = _native_view(loaded, src.geometry(ids[ci]))
        idx = _slice_indices(lab, img.shape[axis], slices, axis)
        im = np.moveaxis(np.asarray(img), axis, 0)[idx][..., channels].astype(np.float32)
        lb = (
            np.moveaxis(np.asarray(lab), axis, 0)[idx] if lab is not None else np.zeros(im.shape[:3], np.uint8)
        ).astype(np.uint8)
        keys = (np.int64(i) * 1000 + idx).astype(np.int64)
        return im, lb, keys

    def read(pos):
        im, lb, keys = tf.numpy_function(load_slices, [pos], [tf.float32, tf.uint8, tf.int64], stateful=False)
        im = tf.ensure_shape(im, (None, None, None, c))
        lb = tf.ensure_shape(lb, (None, None, None))
        return tf.data.Dataset.from_tensor_slices((im, lb, tf.ensure_shape(keys, (None,))))

    ds = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(n)
    ds = ds.interleave(read, cycle_length=2, block_length=1, num_parallel_calls=2, deterministic=True)
    if shuffle and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    seed_t = tf.constant(int(seed), tf.int64)

    def finish(im, lb, key):
        if size is not None:
            im = tf.image.resize(im, size, method="bilinear")
            lb = tf.cast(tf.image.resize(lb[..., None], size, method="nearest")[..., 0], tf.uint8)
        im = tf.ensure_shape(im, tuple(out_hw) + (c,))
        lb = tf.ensure_shape(lb, tuple(out_hw))
        if aug is not None:
            im, lb = aug(im, lb, tf.stack([seed_t, key]))
            im = tf.ensure_shape(tf.cast(im, tf.float32), tuple(out_hw) + (c,))
            lb = tf.ensure_shape(lb, tuple(out_hw))
        return _finish(im, lb, target, weights)

    ds = ds.map(finish, num_parallel_calls=_AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(2)
    return _with_options(ds)


# ---------------------------------------------------------------------------------------------
# full volumes
# ---------------------------------------------------------------------------------------------
def volume_dataset(
    source: Any,
    *,
    batch_size: int = 1,
    modalities: Sequence[str] = MODALITIES,
    target: str | None = "classes",
    shape: Sequence[int] | None = None,
    divisor: int = 1,
    max_cases: int | None = None,
    case_ids: Sequence[str] | None = None,
    sample_weights: Sequence[float] | None = None,
    with_info: bool = False,
    preprocess: dict[str, Any] | None = None,
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
        batch_size: volumes per batch.
        modalities: channel names.
        target: ``"classes"``, ``"regions"``, ``"labels"`` or ``None`` (images only, e.g.
            unlabelled cases).
        shape: common spatial shape; a case larger than it raises ``ValueError``.
        divisor: round the default shape up to a multiple of this.
        sample_weights: per-class weights; the weight is also 0 in the padding.
        with_info: append ``{"case_id": string, "shape": (3,) int32}`` (the valid extent).

    Returns:
        ``(image (B, *shape, C), target[, weight][, info])``.

    Raises:
        ValueError: bad arguments, a case larger than ``shape``, empty selection.
    """
    channels = _channels(modalities)
    _check_target(target, allow_none=True)
    batch_size = _check_int("batch_size", batch_size)
    divisor = _check_int("divisor", divisor)
    weights = _check_weights(sample_weights)
    src = _open_source(source, case_ids, max_cases, preprocess, need_labels=target is not None)
    ids = list(src.case_ids)
    if src.kind == "cache":
        shapes = {cid: src.stored_shape(cid) for cid in ids}
        getter = src.load
    else:
        loaded = {cid: src.load(cid) for cid in ids}
        shapes = {cid: loaded[cid].image.shape[:3] for cid in ids}
        getter = loaded.__getitem__
    biggest = np.max(list(shapes.values()), axis=0)
    if shape is None:
        out = tuple(int(math.ceil(b / divisor) * divisor) for b in biggest)
    else:
        try:
            out = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            out = ()
        if len(out) != 3 or min(out) < 1:
            raise ValueError(f"shape={shape!r} must be None or three positive ints")
        too_big = [cid for cid in ids if np.any(np.asarray(shapes[cid]) > out)]
        if too_big:
            raise ValueError(f"shape={out} is smaller than case {too_big[0]!r} {tuple(shapes[too_big[0]])}")
    c = len(channels)

    def gen():
        for cid in ids:
            ld = getter(cid)
            img, lab = _extract(ld.image, ld.label, (0, 0, 0), out, channels)
            yield img, lab, cid.encode(), np.asarray(shapes[cid], np.int32)

    sig = (
        tf.TensorSpec(out + (c,), tf.float32),
        tf.TensorSpec(out, tf.uint8),
        tf.TensorSpec((), tf.string),
        tf.TensorSpec((3,), tf.int32),
    )
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    grid = tf.stack(tf.meshgrid(*[tf.range(s) for s in out], indexing="ij"), axis=-1)

    def finish(img, lab, cid, shp):
        valid = tf.reduce_all(grid < shp, axis=-1) if weights is not None else None
        res = _finish(img, lab, target, weights, valid)
        if with_info:
            res = res + ({"case_id": cid, "shape": shp},)
        return res[0] if (len(res) == 1) else res

    ds = ds.map(finish, num_parallel_calls=1)
    ds = ds.batch(batch_size, drop_remainder=len(ids) % batch_size == 0).prefetch(1)
    return _with_options(ds)


__all__ = ["PatchDraw", "PatchSampler", "patch_dataset", "slice_dataset", "volume_dataset", "TARGETS", "PLANES"]
