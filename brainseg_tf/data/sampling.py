"""Where 3D training patches come from: the seeded sampler and the zero-padded patch copy (NumPy).

**Definitions.** Draw ``i`` is *foreground-centred* when
``floor((i + 1) * f + u) - floor(i * f + u) == 1`` (``f = foreground_fraction``, ``u`` a
seed-dependent offset): exactly ``f`` of the draws in the long run and within one draw of
``n * f`` over any ``n`` consecutive draws (with batch 3 and f = 1/3 every batch has exactly one,
as nnU-Net forces its last third of each batch). A foreground-centred draw picks a class
uniformly among the tumour labels present in the case (every non-zero internal label of its
scheme: 1, 2, 3 for the glioma schemes, also 4 RC / CC where the scheme has it), then a voxel of that label
uniformly (from up to 10 000 stored coordinates), and centres the patch on it (voxel at index
``size // 2``); the patch may cross the volume edge and is zero-padded. Other draws (and
foreground draws on a tumour-free case) are *uniform*: the patch's lower corner is uniform
over the positions that keep it inside the brain box, or, where the patch is larger than the
box, that keep the box inside the patch.

Every random choice of draw ``i`` comes from ``(seed, i)`` only. No TensorFlow here: the
sampler is unit-tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from brainseg_tf.arrays import clip_box

__all__ = [
    "PatchDraw",
    "PatchSampler",
    "check_patch_size",
    "aligned_zeros",
    "extract_patch",
    "mirror_axes",
    "info_vector",
    "INFO_SIZE",
]

#: Length of :func:`info_vector`: case, class, centre (3), start (3).
INFO_SIZE = 8


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


def check_patch_size(patch_size: Any, src: Any) -> tuple[int, int, int]:
    """``patch_size`` as three positive ints, no larger than the scan grid of ``src``'s cases.

    Patches may exceed the brain box (they are zero-padded), not the whole scan; the grid is
    taken over the first 32 selected cases (header reads for a dataset folder).

    Raises:
        ValueError: naming ``patch_size``.
    """
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


def aligned_zeros(shape: Sequence[int], dtype: Any, align: int = 64) -> np.ndarray:
    """``np.zeros`` whose data starts on an ``align``-byte boundary. TensorFlow adopts a
    ``numpy_function`` result without copying only when it is 64-byte aligned (NumPy's own
    allocations are 16-byte aligned), which saves one whole copy of every patch."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(nbytes + align, np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off : off + nbytes].view(dtype).reshape(tuple(shape))


def extract_patch(
    image: np.ndarray,
    label: np.ndarray | None,
    start: Sequence[int],
    size: Sequence[int],
    channels: list[int],
    flips: Sequence[int] = (),
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Copy a zero-padded box out of a volume, mirrored along ``flips`` in the same single pass.

    Args:
        image: ``(X, Y, Z, C)`` volume (any float dtype; may be a read-only mapping).
        label: ``(X, Y, Z)`` uint8 labels or ``None`` (the label patch stays 0).
        start: lower corner of the box (may be negative: the box may cross every edge).
        size: ``(px, py, pz)``.
        channels: indices into ``C``, in output order.
        flips: spatial axes to mirror (image and label together).
        out: zero-filled ``(image, label)`` buffers to write into (default: new 64-byte-aligned ones).

    Returns:
        ``(image (px, py, pz, len(channels)) float32, label (px, py, pz) uint8)``, 0 outside the volume.
    """
    src, dst = clip_box(start, size, image.shape[:3])
    if out is None:
        img = aligned_zeros(tuple(size) + (len(channels),), np.float32)
        lab = aligned_zeros(tuple(size), np.uint8)
    else:
        img, lab = out
    mirror = tuple(slice(None, None, -1) if a in flips else slice(None) for a in range(3))
    img_w, lab_w = img[mirror], lab[mirror]  # views: writing into them writes the mirrored patch
    if all(s.stop > s.start for s in src):
        if channels == list(range(image.shape[3])):
            whole = _voxel_view(image) if 2 in flips and image.dtype == img.dtype else None
            if whole is not None:
                # mirrored along the innermost spatial axis: copy whole voxels (all channels as one
                # 8/16-byte item), which avoids NumPy's slow strided 4-byte copy; the same bytes
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


def mirror_axes(seed: int, draw: int, prob: float, axes: Sequence[int]) -> tuple[int, ...]:
    """The axes (of ``axes``) draw ``draw`` mirrors, each with probability ``prob``, from ``(seed, draw)``."""
    if prob <= 0:
        return ()
    u = np.random.default_rng([seed, 5, draw]).random(3)
    return tuple(a for a in axes if u[a] < prob)


def info_vector(d: PatchDraw) -> np.ndarray:
    """``d`` as int32 ``(case, fg_class, centre x, y, z, start x, y, z)``; length :data:`INFO_SIZE`."""
    return np.asarray([d.case_index, d.fg_class, *d.centre, *d.start], dtype=np.int32)
