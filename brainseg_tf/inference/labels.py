"""From probabilities to postprocessed labels in a scheme's internal labels.

Labels here are a label scheme's internal labels (:mod:`brainseg_tf.schemes`): 0 background, then
the scheme's labels in internal order -- for the glioma schemes (the default ``brats2021``, GLI 2023,
MSD, ...) the canonical 1 NCR, 2 ED, 3 ET. A softmax head gives the scheme's classes
(``scheme.class_names``: ``BG, NCR, ED, ET`` by default), a sigmoid head its regions in channel
order (``scheme.region_names``: ``WT, TC, ET`` by default; 6 for PED 2024 and GLI 2024), a region
head one region. The postprocessing rules are :mod:`brainseg_tf.postprocessing`'s, applied in the
scheme's internal labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainseg_tf import postprocessing as postprocessing_rules
from brainseg_tf.card import DEFAULT_SCHEME, Postprocessing
from brainseg_tf.checks import check_int
from brainseg_tf.conventions import HEADS
from brainseg_tf.schemes import LabelScheme, get_scheme


def region_label(region: str, scheme: LabelScheme | str = DEFAULT_SCHEME) -> int:
    """The internal label a region head's region is labelled with: of the labels the region holds,
    the one the fewest regions hold (ties: the lower label).

    For the nested glioma regions this is the label each region adds: WT -> 2 ED, TC -> 1 NCR,
    ET -> 3 ET; for PED 2024's WT -> 2 ED, CC -> 4 CC.

    Raises:
        ValueError: ``region`` is not one of the scheme's regions.
    """
    scheme = get_scheme(scheme)
    regions = scheme.internal_regions()
    held = scheme.region_internal(str(region).upper())
    return min(held, key=lambda label: (sum(label in r for r in regions.values()), label))


def probabilities_to_labels(
    probabilities: np.ndarray,
    head: str = "softmax",
    threshold: float = 0.5,
    region: str | None = None,
    scheme: LabelScheme | str = DEFAULT_SCHEME,
) -> np.ndarray:
    """Internal labels ``(...)`` uint8 of ``scheme`` from probabilities ``(..., K)``.

    Args:
        probabilities: softmax class probabilities ``(..., scheme.n_classes)`` (default: BG, NCR,
            ED, ET), sigmoid region probabilities ``(..., len(scheme.regions))`` (default: WT, TC,
            ET), or one region's ``(..., 1)``.
        head: ``"softmax"`` (argmax), ``"sigmoid"`` (:meth:`~brainseg_tf.schemes.LabelScheme.decode_regions`:
            for the nested regions each region ``> threshold``, then ET -> 3, TC without ET -> 1,
            WT without TC -> 2; for PED 2024's six regions the most likely label) or ``"region"``
            (the one region ``> threshold``, labelled :func:`region_label`: WT -> 2 ED, TC -> 1 NCR,
            ET -> 3 ET).
        threshold: region threshold for sigmoid and region heads.
        region: the region of a ``"region"`` head.
        scheme: the model's label scheme (default ``"brats2021"``: canonical labels 0-3).

    Raises:
        ValueError: an unknown head, or channels that do not fit the head and scheme.
    """
    scheme = get_scheme(scheme)
    probabilities = np.asarray(probabilities)
    if head == "softmax":
        if probabilities.shape[-1] != scheme.n_classes:
            raise ValueError(
                f"softmax probabilities have {probabilities.shape[-1]} channels; the {scheme.name!r} scheme has "
                f"{scheme.n_classes} classes {list(scheme.class_names)}"
            )
        return np.argmax(probabilities, axis=-1).astype(np.uint8)
    if head == "sigmoid":
        return scheme.decode_regions(probabilities, threshold)
    if head == "region":
        label = region_label(region or "", scheme)
        if probabilities.shape[-1] != 1:
            raise ValueError(f"a region head has 1 channel; probabilities have {probabilities.shape[-1]}")
        return np.where(probabilities[..., 0] > threshold, label, 0).astype(np.uint8)
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
    scheme: LabelScheme | str = DEFAULT_SCHEME,
) -> np.ndarray:
    """BraTS postprocessing of internal labels (the model card's rules); returns a new uint8 array.

    The rules of :mod:`brainseg_tf.postprocessing`, in its fixed order:

    1. Each region in ``largest_component`` keeps only its largest 26-connected component; its
       other voxels are demoted (ET -> NCR, TC -> ED, WT -> BG).
    2. Connected components (26-connectivity) of the whole tumour (labels 1-3) with fewer than
       ``min_component_voxels`` voxels are set to background; then tumour-core components under
       ``min_component_voxels_tc`` become ED, and ET components under ``min_component_voxels_et`` NCR.
    3. When the remaining enhancing tumour (label 3) has fewer than ``et_min_voxels`` voxels in
       total, it is relabelled NCR (1): a tiny ET prediction in a case without ET costs the whole
       ET Dice, a missing one costs nothing under the legacy empty-mask rule.

    Schemes other than the canonical ones (:func:`brainseg_tf.postprocessing.apply` with the
    scheme): the rules act on the scheme's WT, TC and ET in its internal labels, a voxel leaving a
    region taking the label of the enclosing one (PED 2024: ET -> NET, TC -> ED, the cystic
    component moving with the core; GLI/MET 2024: the resection cavity, in no tumour region, is
    never touched). A rule on a region the scheme lacks (MEN-RT's one GTV) is refused.

    Args:
        labels: ``(X, Y, Z)`` (or 2D) internal labels of ``scheme`` (canonical 0-3 by default).
        et_min_voxels: ET volume threshold in voxels (0 disables; choose it on validation).
        min_component_voxels: smallest whole-tumour component kept (0 disables).
        largest_component: regions (``"WT"``, ``"TC"``, ``"ET"``) reduced to their largest component.
        min_component_voxels_tc: smallest tumour-core component kept as TC (0 disables).
        min_component_voxels_et: smallest ET component kept as ET (0 disables).
        scheme: the labels' scheme (default ``"brats2021"``).

    Raises:
        ValueError: a negative size, an unknown region, or a rule on a region the scheme lacks.
    """
    rules = Postprocessing(
        et_min_voxels=int(check_int("et_min_voxels", et_min_voxels, 0)),
        min_component_voxels=int(check_int("min_component_voxels", min_component_voxels, 0)),
        largest_component=[str(r) for r in largest_component],
        min_component_voxels_tc=int(check_int("min_component_voxels_tc", min_component_voxels_tc, 0)),
        min_component_voxels_et=int(check_int("min_component_voxels_et", min_component_voxels_et, 0)),
    )
    return postprocessing_rules.apply(labels, rules, scheme=get_scheme(scheme))


__all__ = ["POSTPROCESSING_KEYS", "probabilities_to_labels", "postprocess", "region_label"]
