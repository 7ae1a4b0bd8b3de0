"""The Kaggle per-slice HDF5 copy of BraTS 2020 (``awsaf49/brats2020-training-data``), read in place.

The set stores every axial slice of its 369 training volumes as its own file,
``volume_<V>_slice_<S>.h5`` (``S`` = 0..154), usually under
``BraTS2020_training_data/content/data/``. Each file holds ``image`` ``(240, 240, 4)`` float and
``mask`` ``(240, 240, 3)``, one-hot over (NCR/NET, ED, ET) with background where all three are 0
(``shared/reference/brats-editions.md`` section 3). The order of the four image channels is not
documented upstream: one measurement found FLAIR, T1, T1ce, T2 (the default here), while many
notebooks assume T1, T1ce, T2, FLAIR. So it is an argument, and :func:`check_channel_order` warns
when a volume's intensities contradict it (edema is bright in FLAIR and T2 and not in T1;
enhancing tumour is brighter in T1ce than in T1).

:func:`read_volume` stacks a volume's slices into a :class:`~brainseg_tf.io.Case` in the canonical
channel order and canonical labels, on the BraTS grid (1 mm, the BraTS LPS affine, which the
slices do not record), so everything that takes a case (preprocessing, the cache, evaluation,
figures) takes a Kaggle volume. :class:`SliceDataset` is the set as a :class:`~brainseg_tf.io.Dataset`
(``io.open_dataset`` returns one for such a folder), so the training pipelines and recipes read it in
place (``data.root`` the folder, ``data.channel_order`` the reading).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from brainseg_tf.conventions import MODALITIES
from brainseg_tf.io import Dataset
from brainseg_tf.io.errors import DataError, MissingFileError

__all__ = [
    "SLICE_FILE",
    "KAGGLE_CHANNELS",
    "MASK_CHANNELS",
    "BRATS_AFFINE",
    "find_slices",
    "is_slice_folder",
    "read_volume",
    "check_channel_order",
    "SliceDataset",
]

SLICE_FILE = re.compile(r"^volume_(\d+)_slice_(\d+)\.h5$")
#: The default reading of the four image channels (the measured order, see the module docstring).
KAGGLE_CHANNELS: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
#: The one-hot mask channels -> canonical labels (1 NCR, 2 ED, 3 ET).
MASK_CHANNELS: tuple[int, ...] = (1, 2, 3)
#: The affine BraTS distributes its 240x240x155 1 mm volumes with (axis codes L, P, S).
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
_NESTED = ("BraTS2020_training_data/content/data", "content/data", "data")
_MIN_VOXELS = 50  # tumour voxels a channel-order check needs per region


def _slice_dir(root: Path) -> Path:
    for sub in ("", *_NESTED):
        folder = root / sub if sub else root
        if folder.is_dir() and any(SLICE_FILE.match(p.name) for p in folder.iterdir()):
            return folder
    return root


def find_slices(root: str | Path) -> dict[int, dict[int, Path]]:
    """Volume -> slice index -> file, for the ``volume_<V>_slice_<S>.h5`` files under ``root``
    (or its ``BraTS2020_training_data/content/data``).

    Raises:
        MissingFileError: ``root`` does not exist.
        DataError: no slice files there.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(root, f"{root}: folder not found")
    folder = _slice_dir(root)
    volumes: dict[int, dict[int, Path]] = {}
    for path in folder.iterdir():
        match = SLICE_FILE.match(path.name)
        if match:
            volumes.setdefault(int(match.group(1)), {})[int(match.group(2))] = path
    if not volumes:
        raise DataError(root, f"{root}: no Kaggle slice files (volume_<V>_slice_<S>.h5) found")
    return {v: dict(sorted(s.items())) for v, s in sorted(volumes.items())}


def is_slice_folder(root: str | Path) -> bool:
    """Whether ``root`` holds the Kaggle per-slice files (directly or in the set's nested folder)."""
    root = Path(root)
    if not root.is_dir():
        return False
    folder = _slice_dir(root)
    return any(SLICE_FILE.match(p.name) for p in folder.iterdir())


def _read_slice(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            if "image" not in fh:
                raise DataError(path, f"{path}: no 'image' dataset (keys {sorted(fh.keys())})")
            image = np.asarray(fh["image"], dtype=np.float32)
            mask = np.asarray(fh["mask"]) if "mask" in fh else None
    except DataError:
        raise
    except Exception as exc:  # truncated or not HDF5
        raise DataError(path, f"{path}: cannot read as HDF5 ({type(exc).__name__}: {exc})") from None
    if image.ndim != 3 or image.shape[-1] != len(MODALITIES):
        raise DataError(path, f"{path}: image has shape {image.shape}, expected (H, W, 4)")
    if not np.all(np.isfinite(image)):
        raise DataError(path, f"{path}: image contains NaN or Inf values")
    if mask is not None and mask.shape != image.shape[:2] + (len(MASK_CHANNELS),):
        raise DataError(path, f"{path}: mask has shape {mask.shape}, expected {image.shape[:2] + (3,)}")
    return image, mask


def _decode_mask(mask: np.ndarray, path: Path) -> np.ndarray:
    """Canonical labels ``(H, W)`` from a one-hot ``(H, W, 3)`` mask (all zero = background)."""
    if not np.all(np.isin(mask, (0, 1))):
        raise DataError(path, f"{path}: mask holds values other than 0 and 1 (expected one-hot NCR, ED, ET)")
    hot = mask.astype(bool)
    overlap = int(np.count_nonzero(hot.sum(axis=-1) > 1))
    if overlap:
        raise DataError(path, f"{path}: mask is not one-hot: {overlap} voxels are in more than one channel")
    out = np.zeros(mask.shape[:2], dtype=np.uint8)
    for channel, label in enumerate(MASK_CHANNELS):
        out[hot[..., channel]] = label
    return out


def read_volume(
    root: str | Path,
    volume: int,
    *,
    channel_order: Sequence[str] = KAGGLE_CHANNELS,
    check_order: bool = True,
    slices: dict[int, Path] | None = None,
):
    """One Kaggle volume as a :class:`~brainseg_tf.io.Case` (canonical channels and labels).

    Args:
        root: the set's folder (see :func:`find_slices`).
        volume: the volume number ``V`` of ``volume_<V>_slice_<S>.h5``.
        channel_order: what the four image channels are, a permutation of
            ``("flair", "t1", "t1ce", "t2")`` (default :data:`KAGGLE_CHANNELS`).
        check_order: warn (:func:`check_channel_order`) when the intensities contradict it.
        slices: the volume's slice files (default: from :func:`find_slices`).

    Returns:
        A case ``volume_<V>`` of shape ``(240, 240, n_slices)``: image ``(..., 4)`` float32 in
        ``(flair, t1, t1ce, t2)``, label uint8 (0 BG, 1 NCR, 2 ED, 3 ET), the BraTS affine, 1 mm.

    Raises:
        ValueError: ``channel_order`` is not a permutation of the four modalities.
        DataError: an unknown volume, missing slices (named), a slice that is not HDF5, of another
            shape, with NaN/Inf or a mask that is not one-hot; the message names the file.
    """
    from brainseg_tf.io import Case

    order = tuple(str(c).lower() for c in channel_order)
    if sorted(order) != sorted(MODALITIES):
        raise ValueError(f"channel_order={tuple(channel_order)!r} must be a permutation of {MODALITIES}")
    root = Path(root)
    files = slices if slices is not None else find_slices(root).get(int(volume))
    if not files:
        raise DataError(root, f"{root}: no slices of volume {volume}")
    indices = sorted(files)
    missing = sorted(set(range(indices[-1] + 1)) - set(indices))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DataError(root, f"{root}: volume {volume} lacks slices {shown} of 0..{indices[-1]}")
    images, labels = [], []
    for s in indices:
        image, mask = _read_slice(files[s])
        if images and image.shape != images[0].shape:
            raise DataError(files[s], f"{files[s]}: image shape {image.shape} differs from {images[0].shape}")
        images.append(image[..., [order.index(m) for m in MODALITIES]])
        labels.append(None if mask is None else _decode_mask(mask, files[s]))
    image = np.stack(images, axis=2)
    label = None if any(lab is None for lab in labels) else np.stack(labels, axis=2)
    cid = f"volume_{int(volume)}"
    if check_order and label is not None:
        for problem in check_channel_order(image, label, order):
            warnings.warn(f"{root}: {cid}: {problem}", UserWarning, stacklevel=2)
    header = nib.Nifti1Header()
    header.set_data_shape(image.shape[:3])
    header.set_zooms((1.0, 1.0, 1.0))
    return Case(
        image=np.ascontiguousarray(image),
        label=label,
        affine=BRATS_AFFINE.copy(),
        header=header,
        spacing=(1.0, 1.0, 1.0),
        case_id=cid,
        convention="canonical",
        layout="kaggle_slices",
        shape=tuple(image.shape[:3]),
        scheme="brats2021",
    )


def _rank(values: np.ndarray, reference: np.ndarray) -> float:
    """Where the median of ``values`` falls in ``reference`` (0 = darkest, 1 = brightest)."""
    return float(np.searchsorted(np.sort(reference), np.median(values)) / max(reference.size, 1))


def check_channel_order(image: np.ndarray, label: np.ndarray, order: Sequence[str] = MODALITIES) -> list[str]:
    """What in a volume's intensities contradicts a channel reading (empty: nothing).

    ``image`` ``(..., 4)`` is in canonical order ``(flair, t1, t1ce, t2)`` as read with ``order``;
    ``label`` canonical. Scale-free: each check compares where a region's median falls among the
    brain's voxels (nonzero in any channel) of each channel. Checked where the region has at
    least 50 voxels: edema (2) ranks higher in FLAIR and in T2 than in T1; enhancing tumour (3)
    ranks higher in T1ce than in T1.
    """
    brain = np.any(image != 0, axis=-1)
    ranks: dict[tuple[int, str], float] = {}
    for label_value in (2, 3):
        region = (label == label_value) & brain
        if np.count_nonzero(region) < _MIN_VOXELS:
            continue
        for c, name in enumerate(MODALITIES):
            ranks[(label_value, name)] = _rank(image[..., c][region], image[..., c][brain])
    problems = []
    reading = ", ".join(order)
    for bright in ("flair", "t2"):
        if (2, bright) in ranks and ranks[(2, bright)] <= ranks[(2, "t1")]:
            problems.append(
                f"edema is not brighter in the channel read as {bright!r} (rank {ranks[(2, bright)]:.2f}) than "
                f"in 't1' ({ranks[(2, 't1')]:.2f})"
            )
    if (3, "t1ce") in ranks and ranks[(3, "t1ce")] <= ranks[(3, "t1")]:
        problems.append(
            f"enhancing tumour is not brighter in the channel read as 't1ce' (rank {ranks[(3, 't1ce')]:.2f}) than "
            f"in 't1' ({ranks[(3, 't1')]:.2f})"
        )
    if problems:
        problems = [
            f"{p}: the intensities contradict channel_order=({reading}); the Kaggle set does not document its "
            f"channel order: pass channel_order= (e.g. ('t1', 't1ce', 't2', 'flair'))"
            for p in problems
        ]
    return problems


def _has_mask(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            return "mask" in fh
    except Exception as exc:
        raise DataError(path, f"{path}: cannot read as HDF5 ({type(exc).__name__}: {exc})") from None


class SliceDataset(Dataset):
    """The Kaggle per-slice set as a dataset of volumes ``volume_<V>`` (read lazily, in place).

    A :class:`brainseg_tf.io.Dataset` (``len``, iteration, ``ds[i]``, ``ds["volume_7"]``,
    ``case_ids``, ``labelled_ids``, ``ref``, ``grid``) whose refs name each volume's first slice file.
    """

    def __init__(self, root: str | Path, channel_order: Sequence[str] | None = None, check_order: bool = True):
        from brainseg_tf.io.layouts import CaseRef

        self.root = Path(root)
        self.layout = "kaggle_slices"
        self.convention = None
        self.channel_order = tuple(channel_order or KAGGLE_CHANNELS)
        if sorted(c.lower() for c in self.channel_order) != sorted(MODALITIES):
            raise ValueError(f"channel_order={self.channel_order!r} must be a permutation of {MODALITIES}")
        self.check_order = check_order
        self._slices = find_slices(self.root)
        self.refs = []
        for volume, files in self._slices.items():
            first = next(iter(files.values()))
            self.refs.append(
                CaseRef(
                    case_id=f"volume_{volume}",
                    layout=self.layout,
                    convention="canonical",
                    images={"slices": first},
                    label=first if _has_mask(first) else None,
                    scheme="brats2021",
                )
            )
        self._by_id = {r.case_id: r for r in self.refs}

    def _volume(self, key: int | str) -> int:
        """The volume number ``V`` of a case by index or id (``volume_<V>``)."""
        return int(self.ref(key).case_id.split("_", 1)[1])

    def __getitem__(self, key: int | str):
        volume = self._volume(key)
        return read_volume(
            self.root,
            volume,
            channel_order=self.channel_order,
            check_order=self.check_order,
            slices=self._slices[volume],
        )

    def __iter__(self):
        for ref in self.refs:
            yield self[ref.case_id]

    def grid(self, key: int | str) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
        """``(shape, spacing)`` of a volume's grid, from its first slice and slice count."""
        import h5py

        with h5py.File(self.ref(key).images["slices"], "r") as fh:
            height, width = fh["image"].shape[:2]
        return (int(height), int(width), len(self._slices[self._volume(key)])), (1.0, 1.0, 1.0)

    def __repr__(self) -> str:
        return f"SliceDataset(root={str(self.root)!r}, volumes={len(self)}, channel_order={self.channel_order})"
