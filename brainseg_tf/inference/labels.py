"""From probabilities to postprocessed canonical labels (0 BG, 1 NCR, 2 ED, 3 ET).

A softmax head gives the 4 classes ``(BG, NCR, ED, ET)``, a sigmoid head the nested regions
``(WT, TC, ET)`` (:func:`brainseg_tf.io.labels.regions_to_labels` turns them into labels), a region
head one region. The postprocessing rules are :mod:`brainseg_tf.postprocessing`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainseg_tf import postprocessing as postprocessing_rules
from brainseg_tf.card import Postprocessing
from brainseg_tf.checks import check_int
from brainseg_tf.conventions import HEADS, REGIONS, region_index
from brainseg_tf.io.labels import regions_to_labels


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


#: The keyword arguments of :func:`postprocess` (the card's postprocessing rules), in its order.
POSTPROCESSING_KEYS = (
    "et_min_voxels",
    "min_component_voxels",
    "largest_component",
    "min_component_voxels_tc",
    "min_component_voxels_et",
)


def postprocess(
    labels: np.ndarray,
    *,
    et_min_voxels: int = 0,
    min_component_voxels: int = 0,
    largest_component: Sequence[str] = (),
    min_component_voxels_tc: int = 0,
    min_component_voxels_et: int = 0,
) -> np.ndarray:
    """BraTS postprocessing of canonical labels (the model card's rules); returns a new uint8 array.

    The rules of :mod:`brainseg_tf.postprocessing`, in its fixed order:

    1. Each region in ``largest_component`` keeps only its largest 26-connected component; its
       other voxels are demoted (ET -> NCR, TC -> ED, WT -> BG).
    2. Connected components (26-connectivity) of the whole tumour (labels 1-3) with fewer than
       ``min_component_voxels`` voxels are set to background; then tumour-core components under
       ``min_component_voxels_tc`` become ED, and ET components under ``min_component_voxels_et`` NCR.
    3. When the remaining enhancing tumour (label 3) has fewer than ``et_min_voxels`` voxels in
       total, it is relabelled NCR (1): a tiny ET prediction in a case without ET costs the whole
       ET Dice, a missing one costs nothing under the legacy empty-mask rule.

    Args:
        labels: ``(X, Y, Z)`` (or 2D) canonical labels.
        et_min_voxels: ET volume threshold in voxels (0 disables; choose it on validation).
        min_component_voxels: smallest whole-tumour component kept (0 disables).
        largest_component: regions (``"WT"``, ``"TC"``, ``"ET"``) reduced to their largest component.
        min_component_voxels_tc: smallest tumour-core component kept as TC (0 disables).
        min_component_voxels_et: smallest ET component kept as ET (0 disables).
    """
    rules = Postprocessing(
        et_min_voxels=int(check_int("et_min_voxels", et_min_voxels, 0)),
        min_component_voxels=int(check_int("min_component_voxels", min_component_voxels, 0)),
        largest_component=[str(r) for r in largest_component],
        min_component_voxels_tc=int(check_int("min_component_voxels_tc", min_component_voxels_tc, 0)),
        min_component_voxels_et=int(check_int("min_component_voxels_et", min_component_voxels_et, 0)),
    )
    return postprocessing_rules.apply(labels, rules)


__all__ = ["POSTPROCESSING_KEYS", "probabilities_to_labels", "postprocess"]
