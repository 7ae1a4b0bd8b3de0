"""Where pipeline cases come from: an HDF5 cache or a dataset folder, behind one interface.

:func:`open_source` turns a builder's ``source`` (a dataset folder, a
:class:`~brainseg_tf.io.Dataset`, an HDF5 cache path or an open :class:`~brainseg_tf.data.cache.Cache`)
and its case selection (``case_ids``, ``max_cases``) into a :class:`CacheSource` (reads are NumPy
slices of the memory-mapped cache) or a :class:`NiftiSource` (each load reads and preprocesses
the case). Both hand out :class:`LoadedCase` records in the cropped grid, and both have one label
scheme (:attr:`CacheSource.scheme`, :attr:`NiftiSource.scheme`): labels are its internal labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf.checks import check_int
from brainseg_tf.data.cache import Cache, common_scheme, is_cache_path, location_classes, open_cache
from brainseg_tf.data.preprocess import (
    Geometry,
    PreprocessedCase,
    brain_bbox,
    class_locations,
    preprocess_case,
    target_spacing,
)
from brainseg_tf.io import Dataset, archive, open_dataset
from brainseg_tf.schemes import LabelScheme, get_scheme

__all__ = ["MAX_LOCATIONS", "LoadedCase", "CacheSource", "NiftiSource", "open_source"]

#: Tumour voxel coordinates kept per class for foreground-centred draws (as the cache stores).
MAX_LOCATIONS = 10000
_PREPROCESS_KEYS = frozenset({"crop", "margin", "normalize", "reorient", "spacing"})


@dataclass
class LoadedCase:
    """One case as the samplers see it (cropped grid, canonical channel order).

    Attributes:
        image: ``(X, Y, Z, 4)`` float32 (float16 from a float16 cache); may be a read-only mapping.
        label: ``(X, Y, Z)`` uint8 internal labels of the source's scheme, or ``None``.
        locations: non-zero internal label (1, 2, 3 for the glioma schemes) -> ``(N, 3)`` voxel
            coordinates (subsampled).
        brain_box: ``((x0, x1), (y0, y1), (z0, z1))`` brain bounding box inside ``image``.
    """

    image: np.ndarray
    label: np.ndarray | None
    locations: dict[int, np.ndarray]
    brain_box: tuple


class CacheSource:
    """Cases of an HDF5 cache; reads are NumPy slices of the memory-mapped file."""

    kind = "cache"

    def __init__(self, cache: Cache, case_ids: list[str]):
        self.cache = cache
        self.case_ids = case_ids
        self.scheme: LabelScheme = get_scheme(cache.scheme)

    def has_label(self, cid: str) -> bool:
        """Whether case ``cid`` has a label."""
        return self.cache.has_label(cid)

    def grid_shape(self, cid: str) -> tuple[int, int, int]:
        """Shape of the (resampled) scan grid of case ``cid``, before cropping."""
        return tuple(self.cache.geometry(cid).grid_shape)

    def stored_shape(self, cid: str) -> tuple[int, int, int]:
        """Shape of the stored (cropped) arrays of case ``cid``."""
        return self.cache.shape(cid)

    def load(self, cid: str) -> LoadedCase:
        """Case ``cid`` as views of the cache (no copy)."""
        return LoadedCase(
            self.cache.image(cid), self.cache.label(cid), self.cache.locations(cid), self.cache.brain_box(cid)
        )

    def geometry(self, cid: str) -> Geometry:
        """How case ``cid``'s arrays map back to its native grid."""
        return self.cache.geometry(cid)


class NiftiSource:
    """Cases of a dataset folder, read and preprocessed on each load (several patches per load)."""

    kind = "nifti"

    def __init__(
        self, dataset: Dataset, case_ids: list[str], preprocess: dict[str, Any], scheme: str | LabelScheme | None = None
    ):
        self.dataset = dataset
        self.case_ids = case_ids
        self.preprocess = dict(preprocess)
        bad = set(self.preprocess) - _PREPROCESS_KEYS
        if bad:
            raise ValueError(f"preprocess has unknown keys {sorted(bad)}")
        self._geometry: dict[str, Geometry] = {}
        #: The one label scheme of the selected cases (``ValueError`` when they differ).
        self.scheme: LabelScheme = common_scheme([dataset.ref(c) for c in case_ids], scheme, dataset.root)

    def has_label(self, cid: str) -> bool:
        """Whether case ``cid`` has a label file."""
        return self.dataset.ref(cid).label is not None

    def grid_shape(self, cid: str) -> tuple[int, int, int]:
        """Shape of the (resampled) scan grid of case ``cid`` from its header (an upper bound
        under reorientation, whose axis order depends on the affine)."""
        shape, spacing = self.dataset.grid(cid)
        shape = np.asarray(shape[:3])
        if self.preprocess.get("spacing") is not None:
            target = np.asarray(target_spacing(self.preprocess["spacing"]))
            shape = np.maximum(np.round(shape * np.asarray(spacing) / target), 1).astype(int)
        if self.preprocess.get("reorient"):
            return (int(shape.max()),) * 3
        return tuple(int(s) for s in shape)

    def preprocessed(self, cid: str) -> PreprocessedCase:
        """Read and preprocess case ``cid`` (its geometry is remembered)."""
        pre = preprocess_case(self.dataset[cid], **self.preprocess)
        self._geometry[cid] = pre.geometry
        return pre

    def load(self, cid: str) -> LoadedCase:
        """Read, preprocess and index case ``cid`` (tumour locations seeded by its position)."""
        pre = self.preprocessed(cid)
        seed = self.case_ids.index(cid)
        return LoadedCase(
            pre.image,
            pre.label,
            class_locations(pre.label, location_classes(self.scheme), MAX_LOCATIONS, seed),
            brain_bbox(pre.brain_mask),
        )

    def geometry(self, cid: str) -> Geometry:
        """How case ``cid``'s arrays map back to its native grid (reads the case once if needed)."""
        if cid not in self._geometry:
            self.preprocessed(cid)
        return self._geometry[cid]


def _open_store(source: Any, scheme: str | LabelScheme | None = None) -> Cache | Dataset:
    """The cache or dataset behind ``source`` (a folder read in ``scheme`` where stated); ``ValueError``
    for anything else."""
    if isinstance(source, (Cache, Dataset)):  # a kaggle.SliceDataset is a Dataset
        return source
    if isinstance(source, (str, Path)):
        p = Path(source)
        if is_cache_path(p):
            return open_cache(p)
        if p.is_dir() or archive.is_tar_path(p):
            return open_dataset(p, scheme=None if scheme is None else get_scheme(scheme).name)
        raise ValueError(f"source={str(source)!r} is neither a dataset folder nor an HDF5 cache file")
    raise ValueError(f"source={source!r}: expected a dataset folder, a Dataset, a cache path or a Cache")


def _select_ids(store: Cache | Dataset, case_ids: Sequence[str] | None, max_cases: int | None) -> list[str]:
    """The selected case ids, in order; ``ValueError`` naming ``case_ids`` or ``max_cases``."""
    if case_ids is None:
        ids = list(store.case_ids)
    else:
        if isinstance(case_ids, str):
            raise ValueError(f"case_ids={case_ids!r} must be a sequence of case ids, not one string")
        ids = list(case_ids)
        if not ids:
            raise ValueError("case_ids is empty: select at least one case")
        unknown = [c for c in ids if c not in store]
        if unknown:
            raise ValueError(f"case_ids has {len(unknown)} ids not in the source (e.g. {unknown[0]!r})")
    if check_int("max_cases", max_cases, allow_none=True) is not None:
        ids = ids[:max_cases]
    return ids


def open_source(
    source: Any,
    case_ids: Sequence[str] | None,
    max_cases: int | None,
    preprocess: dict[str, Any] | None,
    need_labels: bool,
    scheme: str | LabelScheme | None = None,
) -> CacheSource | NiftiSource:
    """Open a builder's ``source`` with its case selection.

    Args:
        source: dataset folder, ``Dataset``, cache path (``*.h5``) or ``Cache``.
        case_ids: the cases to use, in order (default: all); ``max_cases``: keep the first ones.
        preprocess: :func:`~brainseg_tf.data.preprocess.preprocess_case` options (dataset folders only).
        need_labels: refuse selected cases without a label (training data).
        scheme: the label scheme to read in (a dataset folder reads every case in it; a cache or
            ``Dataset`` must already be in it); ``None``: each case's own, one for all.

    Raises:
        ValueError: an unknown source, a bad or empty selection, ``preprocess`` for a cache,
            unknown ``preprocess`` keys, unlabelled cases when labels are needed, or selected
            cases of different label schemes (two named) or not in the stated one.
        CacheError: a cache built in another scheme than ``scheme``.
    """
    store = _open_store(source, scheme)
    ids = _select_ids(store, case_ids, max_cases)
    if not ids:
        raise ValueError(f"source={str(source)!r} holds no cases")
    if isinstance(store, Cache):
        if preprocess:
            raise ValueError("preprocess is only for dataset folders; a cache is already preprocessed")
        store.check_scheme(scheme)
        src: CacheSource | NiftiSource = CacheSource(store, ids)
    else:
        src = NiftiSource(store, ids, preprocess or {}, scheme)
    if need_labels:
        missing = [c for c in ids if not src.has_label(c)]
        if missing:
            raise ValueError(
                f"case_ids: {len(missing)} selected cases have no label (e.g. {missing[0]!r}); "
                f"training data needs labels"
            )
    return src
