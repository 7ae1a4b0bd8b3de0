"""Domain constants, defined once: canonical labels, regions, modalities and model heads.

Canonical labels (used everywhere inside the library; file conventions are converted on read, see
:mod:`brainseg_tf.io.labels`): 0 BG, 1 NCR (necrotic / non-enhancing core), 2 ED (edema),
3 ET (enhancing tumour). Nested regions: WT = {1, 2, 3}, TC = {1, 3}, ET = {3}, always in the
channel order ``(WT, TC, ET)``. Image channels: ``flair, t1, t1ce, t2``.

Model heads (what the last layer of a segmentation model predicts):

* ``"softmax"`` -- 4 mutually exclusive canonical classes ``(BG, NCR, ED, ET)``.
* ``"sigmoid"`` -- 3 independent nested regions ``(WT, TC, ET)``.
* ``"region"`` -- one sigmoid channel for a single region (``WT``, ``TC`` or ``ET``), as in ZNet's
  one-model-per-region use; several such models combine into a label map.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("BG", "NCR", "ED", "ET")
FOREGROUND_CLASSES: tuple[int, ...] = (1, 2, 3)
REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
REGION_LABELS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
HEADS: tuple[str, ...] = ("softmax", "sigmoid", "region")
#: Output activations of a model's last layer (a region head is a one-channel sigmoid).
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("softmax", "sigmoid")
#: Anatomical planes and the RAS axis normal to each (arrays are RAS-oriented, see CONVENTIONS.md).
PLANE_AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
#: The planes in the order figures, cards and menus list them.
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")


def region_index(region: str) -> int:
    """Position of ``region`` (any case) in :data:`REGIONS`; ``ValueError`` for an unknown one."""
    key = str(region).upper()
    if key not in REGIONS:
        raise ValueError(f"region={region!r} is unknown; expected one of {list(REGIONS)}")
    return REGIONS.index(key)
