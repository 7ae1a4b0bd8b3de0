"""BraTS scoring by year and task: the rule sets as data, and the 2024 and 2025 lesion-wise scores.

Each BraTS year scored lesions differently (facts: ``reference/brats-editions.md`` section 4; the
table in ``docs/evaluation.md``). A :class:`RuleSet` holds one year's parameters for one task;
:data:`RULES` is the table keyed by ``(year, task)``, :data:`DEFAULT_RULES` the rule set of each
label scheme's own edition (keyed by :data:`brainseg_tf.schemes.SCHEMES` names).

- ``legacy`` (BraTS 2017-2022, CaPTk): Dice and HD95 of the whole region; one mask empty -> HD95
  the grid's diagonal in mm (373.12866 on 240x240x155 at 1 mm).
- ``2023`` (BraTS-2023-Metrics): :func:`brainseg_tf.evaluation.lesion_wise_scores`.
- ``2024`` (BraTS-2024-Metrics, one script per task): reference *and predicted* components grouped
  by dilation; predicted groups of at most ``min_volume`` voxels (MEN-RT: mm^3) removed before
  false positives are counted; per-region dilation and threshold; in GLI, MET and SSA the
  single-label lesions that touch one lesion of another label are merged (:func:`merge_touching`);
  penalty 374, 337 (GLI) or the array's diagonal in voxels (MET, MEN-RT); NSD at 0.5 and 1 mm;
  MEN-RT counts false positives but leaves them out of the scores. Checked against the official
  scripts by ``bench/brats_scoring_2024.py``.
- ``2025`` (``brats-evaluation`` 0.0.10 over ``panoptica``): 26-connected components matched
  one to one by maximum bipartite matching on Dice (threshold 1e-6, no dilation); per region the
  mean Dice, HD95 and NSD over matched lesions, tp/fp/fn and the detection F1; MET splits lesions at
  20 mm^3 (:func:`mets_summary`).

Surface distances of the 2024 NSD and of the whole 2025 family are the voxel-border ones of MedPy
(:func:`border_distances`), not the surfel-weighted ones of the 2023 HD95.
NumPy/SciPy only.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from brainseg_tf.arrays import bbox, check_spacing
from brainseg_tf.evaluation import _FULL_26, _dilate, _region_masker, hd95, lesion_wise_scores, scheme_regions
from brainseg_tf.schemes import LabelScheme, get_scheme

__all__ = [
    "YEARS",
    "RuleSet",
    "RULES",
    "DEFAULT_RULES",
    "SCHEME_TASKS",
    "get_rules",
    "default_rules",
    "resolve_rules",
    "rule_columns",
    "grid_diagonal",
    "border_distances",
    "normalized_surface_dice",
    "lesion_groups",
    "merge_touching",
    "scores_2024",
    "scores_2025",
    "mets_summary",
    "score_case",
]

YEARS = ("legacy", "2023", "2024", "2025")
_STRUCT_6 = ndimage.generate_binary_structure(3, 1)
#: Label names that play one role across schemes (a merge rule names the first).
_LABEL_ALIASES = {"NETC": ("NETC", "NCR", "NET"), "SNFH": ("SNFH", "ED"), "ET": ("ET",), "RC": ("RC",)}
PANOPTICA_MATCH_THRESHOLD = 1e-6
PANOPTICA_HD95_PENALTY = 373.0  # what brats-evaluation's parsers write for an infinite HD95


@dataclass(frozen=True)
class RuleSet:
    """One year's official scoring parameters for one task.

    Attributes:
        year: ``"legacy"``, ``"2023"``, ``"2024"`` or ``"2025"``.
        task: ``"GLI"``, ``"MET"``, ``"PED"``, ``"MEN"``, ``"MEN-RT"``, ``"SSA"``, ``"GoAT"`` (``"all"``
            for legacy).
        dilation: 18-connected dilation iterations grouping lesions and matching predictions (2023, 2024).
        region_dilation: per-region exceptions ``(region, iterations)`` (GLI 2024: NETC and RC 5).
        min_volume: reference lesions of volume <= this (mm^3) are left out; in 2024 also predicted
            groups of at most this many voxels are removed (2023/2024).
        region_min_volume: per-region exceptions ``(region, mm^3)`` (GLI 2024: ET 10).
        penalty: HD95 of a missed lesion or a false positive: a number, ``"grid"`` (the array's
            diagonal in voxels, as the 2024 MET and MEN-RT code computes it) or ``"grid_mm"`` (the
            diagonal of shape x spacing; the legacy empty-mask rule).
        pred_grouping: 2024: predicted components are grouped by dilation and small groups removed.
        removal_in_mm3: 2024 MEN-RT: the removal threshold is in mm^3 (others compare voxel counts).
        fp_in_score: 2024: false positives enter the lesion-wise means (as Dice 0, HD95 the
            penalty, NSD 0); the 2024 MEN-RT code counts them (``lesion_fp``) but leaves them out
            ("Removing FP for MEN-RT Challenge").
        merges: 2024: ``(region, (labels...))``: lesions of the region that touch one lesion of the
            labels, taken in order, are merged (:func:`merge_touching`).
        nsd_tolerances: NSD tolerances in mm (2024: 0.5 and 1.0).
        small_lesion_volume: 2025 MET: reference lesions under this volume (mm^3) get detection only.
        small_lesion_dice: 2025 MET: the Dice a small lesion's match needs to count as detected.
        source: where the numbers come from.
    """

    year: str
    task: str
    dilation: int = 0
    region_dilation: tuple[tuple[str, int], ...] = ()
    min_volume: float = 0.0
    region_min_volume: tuple[tuple[str, float], ...] = ()
    penalty: float | str = 374.0
    pred_grouping: bool = False
    removal_in_mm3: bool = False
    fp_in_score: bool = True
    merges: tuple[tuple[str, tuple[str, ...]], ...] = ()
    nsd_tolerances: tuple[float, ...] = ()
    small_lesion_volume: float | None = None
    small_lesion_dice: float = 0.1
    source: str = ""

    @property
    def name(self) -> str:
        """``"2024-gli"`` (``"legacy"`` for the legacy rules)."""
        return self.year if self.year == "legacy" else f"{self.year}-{self.task.lower()}"

    def describe(self) -> str:
        """``"the 2024 GLI rules"``."""
        return "the legacy BraTS rules" if self.year == "legacy" else f"the {self.year} {self.task} rules"

    def dilation_for(self, region: str) -> int:
        """Dilation iterations for a region (its exception, else :attr:`dilation`)."""
        return dict(self.region_dilation).get(region, self.dilation)

    def min_volume_for(self, region: str) -> float:
        """Lesion threshold for a region (its exception, else :attr:`min_volume`)."""
        return dict(self.region_min_volume).get(region, self.min_volume)

    def penalty_for(self, shape: Sequence[int], spacing: Sequence[float]) -> float:
        """The HD95 penalty in mm for an array of ``shape`` and voxel ``spacing``."""
        if self.penalty == "grid":
            return grid_diagonal(shape)
        if self.penalty == "grid_mm":
            return grid_diagonal(shape, spacing)
        return float(self.penalty)


def grid_diagonal(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Diagonal of a grid: ``sqrt(sum (n_i s_i)^2)``; unit spacing when ``spacing`` is ``None``.

    ``(240, 240, 155)`` -> 373.12866; ``(182, 218, 182)`` -> 337.0 (to 0.2).
    """
    sizes = np.asarray(shape, dtype=np.float64)
    if spacing is not None:
        sizes = sizes * np.asarray(check_spacing(spacing), dtype=np.float64)
    return float(np.sqrt(np.sum(sizes**2)))


_Y23 = "BraTS-2023-Metrics eval.py (reference/brats-editions.md section 4)"
_Y24 = "BraTS-2024-Metrics metrics_<task>.py (reference/brats-editions.md section 4)"
_Y25 = "brats-evaluation 0.0.10 config_<task>.yaml + panoptica 2.1.7"
_NSD = (0.5, 1.0)
_GLI24_MERGES = (
    ("NETC", ("ET", "RC")),
    ("ET", ("NETC", "RC")),
    ("RC", ("ET", "NETC")),
    ("SNFH", ("ET", "RC", "NETC")),
)


def _rules_2023(task: str, dilation: int, min_volume: float) -> RuleSet:
    return RuleSet("2023", task, dilation=dilation, min_volume=min_volume, penalty=374.0, source=_Y23)


def _rules_2024(task: str, dilation: int, min_volume: float, penalty: float | str, **kw) -> RuleSet:
    return RuleSet(
        "2024",
        task,
        dilation=dilation,
        min_volume=min_volume,
        penalty=penalty,
        pred_grouping=kw.pop("pred_grouping", True),
        nsd_tolerances=_NSD,
        source=_Y24,
        **kw,
    )


def _rules_2025(task: str, **kw) -> RuleSet:
    return RuleSet("2025", task, penalty=PANOPTICA_HD95_PENALTY, source=_Y25, **kw)


#: Every rule set, keyed by ``(year, task)``.
RULES: dict[tuple[str, str], RuleSet] = {
    ("legacy", "all"): RuleSet("legacy", "all", penalty="grid_mm", source="CaPTk / BraTS 2017-2022"),
    ("2023", "GLI"): _rules_2023("GLI", 3, 50.0),
    ("2023", "SSA"): _rules_2023("SSA", 3, 50.0),
    ("2023", "MEN"): _rules_2023("MEN", 1, 50.0),
    ("2023", "PED"): _rules_2023("PED", 3, 50.0),
    ("2023", "MET"): _rules_2023("MET", 1, 2.0),
    ("2023", "GoAT"): _rules_2023("GoAT", 3, 50.0),
    ("2024", "GLI"): _rules_2024(
        "GLI",
        3,
        20.0,
        337.0,
        # the official code tests the misspelt "SFNH", so SNFH keeps dilation 3
        region_dilation=(("NETC", 5), ("RC", 5)),
        region_min_volume=(("ET", 10.0),),
        merges=_GLI24_MERGES,
    ),
    ("2024", "MET"): _rules_2024("MET", 1, 2.0, "grid", merges=(("ET", ("NETC",)),)),
    ("2024", "MEN-RT"): _rules_2024("MEN-RT", 1, 50.0, "grid", removal_in_mm3=True, fp_in_score=False),
    ("2024", "MEN"): _rules_2024("MEN", 1, 50.0, 374.0, pred_grouping=False),
    ("2024", "PED"): _rules_2024("PED", 5, 10.0, 374.0),
    ("2024", "SSA"): _rules_2024("SSA", 3, 50.0, 374.0, merges=(("ET", ("NETC",)),)),
    **{
        ("2025", task): _rules_2025(task, small_lesion_volume=20.0 if task == "MET" else None)
        for task in ("GLI", "MET", "PED", "MEN", "MEN-RT", "SSA", "GoAT")
    },
}

#: The task each scheme's data belongs to (selects the row of :data:`RULES` for a year).
SCHEME_TASKS: dict[str, str] = {
    "brats2021": "GLI",
    "gli2023": "GLI",
    "gli2024": "GLI",
    "met2024": "MET",
    "ped2023": "PED",
    "ped2024": "PED",
    "men": "MEN",
    "ssa": "SSA",
    "goat": "GoAT",
    "men_rt": "MEN-RT",
    "msd": "GLI",
}

#: The year whose rules score each scheme's data by default (its edition's official scoring).
#: BraTS 2017-2021 and MSD data had no lesion-wise rules: their default is the 2023 GLI rule set,
#: whose rows hold the legacy Dice/HD95 their editions used plus the 2023 lesion-wise scores (the
#: columns this toolkit has always written). ``gli2024`` holds the 2024 and the 2025 GLI releases
#: alike (the layout cannot tell them apart): the 2024 rules are its default, and ``--rules 2025``
#: scores a 2025 release as that year did.
DEFAULT_RULES: dict[str, str] = {
    "brats2021": "2023",
    "msd": "2023",
    "gli2023": "2023",
    "ped2023": "2023",
    "gli2024": "2024",
    "met2024": "2024",
    "ped2024": "2024",
    "men": "2024",
    "ssa": "2024",
    "men_rt": "2024",
    "goat": "2025",
}


def get_rules(year: str, task: str = "GLI") -> RuleSet:
    """The rule set of a year for a task (``legacy`` ignores the task).

    Raises:
        ValueError: unknown year, or a task the year did not score (the message lists its tasks).
    """
    year = str(year).lower()
    if year not in YEARS:
        raise ValueError(f"rules={year!r} is unknown; expected one of {list(YEARS) + ['auto']}")
    if year == "legacy":
        return RULES[("legacy", "all")]
    key = next((k for k in RULES if k[0] == year and k[1].lower() == str(task).lower()), None)
    if key is None:
        tasks = [t for y, t in RULES if y == year]
        raise ValueError(f"the {year} rules have no task {task!r}; tasks: {tasks}")
    return RULES[key]


def default_rules(scheme: str | LabelScheme | None) -> RuleSet:
    """The rule set of a scheme's own edition (``None``: the canonical glioma labels, legacy)."""
    name = "brats2021" if scheme is None else get_scheme(scheme).name
    return get_rules(DEFAULT_RULES[name], SCHEME_TASKS[name])


def resolve_rules(rules: str | RuleSet, scheme: str | LabelScheme | None) -> RuleSet:
    """A :class:`RuleSet` from ``"auto"``, a year (the scheme's task) or a rule set itself."""
    if isinstance(rules, RuleSet):
        return rules
    if str(rules).lower() == "auto":
        return default_rules(scheme)
    name = "brats2021" if scheme is None else get_scheme(scheme).name
    return get_rules(str(rules), SCHEME_TASKS[name])


_COLUMNS = {
    "legacy": (),
    "2023": ("lesion_dice", "lesion_hd95", "lesion_tp", "lesion_fn", "lesion_fp"),
    "2024": (
        "lesion_dice",
        "lesion_hd95",
        "lesion_nsd05",
        "lesion_nsd10",
        "lesion_tp",
        "lesion_fn",
        "lesion_fp",
    ),
    "2025": (
        "lesion_dice",
        "lesion_hd95",
        "lesion_nsd",
        "lesion_tp",
        "lesion_fn",
        "lesion_fp",
        "lesion_f1",
        "global_dice",
        "global_hd95",
        "global_nsd",
        "small_f1",
    ),
}


def rule_columns(rules: RuleSet | str) -> tuple[str, ...]:
    """The per-region columns a rule set adds, named ``<metric>_<year>`` (``lesion_dice_2024``); the
    2023 rules keep the historical names (``lesion_dice``, ...: :data:`brainseg_tf.evaluation.CSV_COLUMNS`)."""
    year = rules.year if isinstance(rules, RuleSet) else str(rules)
    if year == "2023":
        return _COLUMNS[year]
    return tuple(f"{c}_{year}" for c in _COLUMNS[year])


# --------------------------------------------------------------------------------------------
# Voxel-border surface distances (MedPy; the 2024 NSD and every 2025 distance)
# --------------------------------------------------------------------------------------------


def border_distances(
    ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Distances between the voxel borders of two non-empty masks (MedPy's definition).

    A border voxel is a mask voxel outside the mask's 6-connected erosion (outside the array
    counts as background). Each border voxel's distance, in mm, is the Euclidean distance to the
    nearest border voxel of the other mask.

    Args:
        ref, pred: ``(X, Y, Z)`` boolean masks, both non-empty.
        spacing: voxel size in mm.

    Returns:
        ``(ref_to_pred, pred_to_ref)``: one distance per border voxel of ``ref`` / ``pred``.

    Raises:
        ValueError: shapes differ or a mask is empty.
    """
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if ref.shape != pred.shape or ref.ndim != 3:
        raise ValueError(f"ref and pred must be 3D masks of one shape, got {ref.shape} and {pred.shape}")
    if not ref.any() or not pred.any():
        raise ValueError("border_distances needs two non-empty masks")
    spacing = check_spacing(spacing)
    box = bbox(ref | pred, pad=1)
    ref, pred = ref[box], pred[box]
    ref_border = ref & ~ndimage.binary_erosion(ref, structure=_STRUCT_6)
    pred_border = pred & ~ndimage.binary_erosion(pred, structure=_STRUCT_6)
    to_pred = ndimage.distance_transform_edt(~pred_border, sampling=spacing)[ref_border]
    to_ref = ndimage.distance_transform_edt(~ref_border, sampling=spacing)[pred_border]
    return to_pred, to_ref


def normalized_surface_dice(
    ref_to_pred: np.ndarray, pred_to_ref: np.ndarray, tolerance: float, *, eps: float = 1e-8
) -> float:
    """NSD of :func:`border_distances`: ``(a + b) / (2 + eps)`` where ``a`` and ``b`` are the
    fractions of each border within ``tolerance`` mm (nnU-Net's formula, as the 2024 code uses it
    with ``eps`` 1e-8; panoptica with ``sys.float_info.min``)."""
    a = float(np.count_nonzero(ref_to_pred <= tolerance)) / ref_to_pred.size
    b = float(np.count_nonzero(pred_to_ref <= tolerance)) / pred_to_ref.size
    fa, fb = 1.0 - a, 1.0 - b
    return (a + b) / (a + b + fa + fb + eps)


# --------------------------------------------------------------------------------------------
# 2024: lesions grouped by dilation, touching lesions merged across labels
# --------------------------------------------------------------------------------------------


def _label_scan_order(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components numbered in order of first voxel with the first axis fastest: the
    order ``cc3d`` gives an F-ordered array (a NIfTI read by nibabel; SimpleITK's ``(z, y, x)``
    array, seen as ``(x, y, z)``)."""
    labels, n = ndimage.label(np.asarray(mask).T, structure=structure)
    return np.ascontiguousarray(labels.T), int(n)


def lesion_groups(mask: np.ndarray, dilation: int) -> np.ndarray:
    """Lesion map ``(X, Y, Z)`` int32: the mask's voxels labelled by the 26-connected component of
    the mask dilated ``dilation`` times (18-connected structure) that holds them; 0 background.

    Components closer than the dilation reach form one lesion. Labels are numbered from 1 in scan
    order with the *last* axis fastest: the official 2024 code labels (``cc3d``) the dilated mask
    that ``scipy.ndimage.binary_dilation`` returns, a C-ordered array, and ``cc3d`` numbers in
    memory order. The numbering decides the cross-label merge (:func:`merge_touching` groups a
    lesion with the lowest-numbered lesion it touches), so it is part of the rule.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=np.int32)
    box = bbox(mask, pad=dilation + 1)
    if box is None:
        return out
    local = mask[box]
    grown = _dilate(local, dilation)
    labels, _ = ndimage.label(grown, structure=_FULL_26)
    out[box] = np.where(local, labels, 0)
    return _renumber(out)


def _renumber(lesions: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n in ascending order of their values (gaps closed)."""
    values = np.unique(lesions)
    values = values[values != 0]
    table = np.zeros(int(lesions.max()) + 1 if lesions.size else 1, dtype=np.int32)
    table[values] = np.arange(1, values.size + 1, dtype=np.int32)
    return table[lesions]


def _remove_small(lesions: np.ndarray, max_voxels: float) -> np.ndarray:
    """Lesions of at most ``max_voxels`` voxels set to 0 (others keep their labels)."""
    counts = np.bincount(lesions.ravel())
    small = np.flatnonzero(counts <= max_voxels)
    small = small[small != 0]
    if small.size == 0:
        return lesions
    return np.where(np.isin(lesions, small), 0, lesions).astype(np.int32)


def _touching(lesions: np.ndarray, other: np.ndarray) -> set[tuple[int, int]]:
    """Pairs ``(lesion, other lesion)`` whose masks touch: one dilated once (18-connected) meets the other."""
    pairs: set[tuple[int, int]] = set()
    if not other.any():
        return pairs
    for lid, box in enumerate(ndimage.find_objects(lesions), start=1):
        if box is None:
            continue
        roi = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, lesions.shape))
        grown = _dilate(lesions[roi] == lid, 1)
        pairs.update((lid, int(o)) for o in np.unique(other[roi][grown]) if o != 0)
    return pairs


def merge_touching(lesions: np.ndarray, others: Iterable[np.ndarray]) -> np.ndarray:
    """The 2024 cross-label merge of one label's lesions (GLI, MET, SSA).

    For each lesion map in ``others`` in turn: the pairs of touching lesions (this lesion map's
    current lesions x that map's lesions) are found; when there is more than one pair, every
    lesion that touches some lesion of the other map takes, as its group, the lowest-numbered
    lesion of the other map it touches (so the other map's numbering, :func:`lesion_groups`'s,
    matters), and lesions sharing it become one lesion. Lesions touching nothing keep their own
    label. Returns the merged map, renumbered 1..n in order of the labels.
    """
    current = np.asarray(lesions, dtype=np.int32)
    for other in others:
        pairs = _touching(current, np.asarray(other))
        if len(pairs) <= 1:
            continue
        top = int(current.max())
        first: dict[int, int] = {}
        group_of: dict[int, int] = {}
        for lid, oid in sorted(pairs):
            first.setdefault(lid, oid)
            group_of.setdefault(oid, top + 1 + len(group_of))
        table = np.concatenate([np.arange(top + 1, dtype=np.int32), np.zeros(len(group_of), dtype=np.int32)])
        for lid, oid in first.items():
            table[lid] = group_of[oid]
        current = table[current]
    return _renumber(current)


def _lesion_metrics_2024(
    ref_lesion: np.ndarray, pred_union: np.ndarray, spacing: tuple[float, float, float], tolerances: Sequence[float]
) -> tuple[float, float, list[float]]:
    """Dice, surfel HD95 (``inf`` when ``pred_union`` is empty) and NSDs of one lesion."""
    n_ref, n_pred = int(np.count_nonzero(ref_lesion)), int(np.count_nonzero(pred_union))
    if n_pred == 0:
        return 0.0, math.inf, [0.0] * len(tolerances)
    dice = 2.0 * int(np.count_nonzero(ref_lesion & pred_union)) / (n_ref + n_pred)
    dist = hd95(ref_lesion, pred_union, spacing)
    to_pred, to_ref = border_distances(ref_lesion, pred_union, spacing)
    # the 2024 code calls NSD with the prediction first; the formula is symmetric
    return dice, dist, [normalized_surface_dice(to_ref, to_pred, t) for t in tolerances]


def scores_2024(
    ref_lesions: np.ndarray,
    pred_lesions: np.ndarray,
    spacing: Sequence[float],
    *,
    dilation: int,
    min_volume: float,
    penalty: float,
    tolerances: Sequence[float] = _NSD,
    fp_in_score: bool = True,
) -> dict:
    """2024 lesion-wise scores of one region from its lesion maps.

    Args:
        ref_lesions: ``(X, Y, Z)`` int reference lesion map (:func:`lesion_groups`, merged).
        pred_lesions: predicted lesion map (grouped, small groups removed, merged).
        spacing: voxel size in mm.
        dilation: iterations each reference lesion is dilated to find its predicted lesions.
        min_volume: reference lesions of volume <= this (mm^3) are left out of the score.
        penalty: HD95 of a missed lesion and of each false positive.
        tolerances: NSD tolerances in mm.
        fp_in_score: false positives count in the scores (``False``: MEN-RT 2024, where they are
            only counted in ``fp``).

    Returns:
        dict ``lesion_dice``, ``lesion_hd95``, ``lesion_nsd`` (one per tolerance), ``tp``, ``fn``,
        ``fp`` and ``lesions`` (per reference lesion: volume, Dice, HD95, NSDs, matched count).
        Score = sum over kept lesions / (kept + FP) (``fp_in_score=False``: / kept), FP =
        predicted lesions touching no reference lesion's dilation; nothing to score -> Dice 1,
        HD95 0, NSD 1.
    """
    spacing = check_spacing(spacing)
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
    shape = ref_lesions.shape
    matched: set[int] = set()
    lesions = []
    for lid, box in enumerate(ndimage.find_objects(ref_lesions), start=1):
        if box is None:
            continue
        roi = tuple(slice(max(s.start - dilation - 1, 0), min(s.stop + dilation + 1, n)) for s, n in zip(box, shape))
        lesion = ref_lesions[roi] == lid
        reach = _dilate(lesion, dilation)
        ids = np.unique(pred_lesions[roi][reach])
        ids = ids[ids != 0]
        matched.update(int(i) for i in ids)
        full_ref = ref_lesions == lid
        full_pred = np.isin(pred_lesions, ids) if ids.size else np.zeros(shape, dtype=bool)
        box_all = bbox(full_ref | full_pred, pad=1)
        dice, dist, nsds = _lesion_metrics_2024(full_ref[box_all], full_pred[box_all], spacing, tolerances)
        volume = int(np.count_nonzero(lesion)) * voxel_mm3
        lesions.append((volume, dice, penalty if math.isinf(dist) else dist, nsds, int(ids.size)))
    fp_ids = {int(i) for i in np.unique(pred_lesions) if i != 0} - matched
    fp = len(fp_ids)
    scored_fp = fp if fp_in_score else 0
    kept = [les for les in lesions if les[0] > min_volume]
    denominator = len(kept) + scored_fp
    if denominator == 0:
        dice, dist, nsds = 1.0, 0.0, [1.0] * len(tolerances)
    else:
        dice = sum(les[1] for les in kept) / denominator
        dist = (sum(les[2] for les in kept) + scored_fp * penalty) / denominator
        nsds = [sum(les[3][k] for les in kept) / denominator for k in range(len(tolerances))]
    return {
        "lesion_dice": float(dice),
        "lesion_hd95": float(dist),
        "lesion_nsd": [float(v) for v in nsds],
        "tp": sum(1 for les in kept if les[4] > 0),
        "fn": sum(1 for les in kept if les[4] == 0),
        "fp": fp,
        "lesions": lesions,
    }


def _label_mask(labels: np.ndarray, scheme: LabelScheme | None, name: str) -> np.ndarray | None:
    """Mask of the label playing ``name``'s role (:data:`_LABEL_ALIASES`) in ``scheme``; ``None``
    when the scheme has no such label."""
    aliases = _LABEL_ALIASES.get(name, (name,))
    if scheme is None:
        canonical = {"NETC": 1, "SNFH": 2, "ET": 3}
        return labels == canonical[name] if name in canonical else None
    label = next((n for n in scheme.internal if n in aliases), None)
    return None if label is None else labels == scheme.internal_value(label)


def _region_role(region: str) -> str | None:
    """The merge role a single-label region plays (``"ED"`` -> ``"SNFH"``), else ``None``."""
    return next((role for role, names in _LABEL_ALIASES.items() if region in names), None)


def _lesion_maps_2024(
    labels: np.ndarray,
    mask_of,
    regions: Sequence[str],
    rules: RuleSet,
    scheme: LabelScheme | None,
    spacing: tuple[float, float, float],
    is_pred: bool,
) -> dict[str, np.ndarray]:
    """Each region's 2024 lesion map (grouped; predictions: small groups removed; merged)."""
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]

    def grouped(mask: np.ndarray, key: str) -> np.ndarray:
        if is_pred and not rules.pred_grouping:  # 2023-style predictions (MEN 2024): plain components
            return _label_scan_order(mask, _FULL_26)[0]
        lesions = lesion_groups(mask, rules.dilation_for(key))
        if is_pred:
            limit = rules.min_volume_for(key)
            lesions = _remove_small(lesions, limit / voxel_mm3 if rules.removal_in_mm3 else limit)
        return lesions

    maps = {region: grouped(mask_of(labels, region), region) for region in regions}
    merges = dict(rules.merges)
    base: dict[str, np.ndarray | None] = {}
    for region in regions:
        role = _region_role(region)
        if role is None or role not in merges:
            continue
        others = []
        for name in merges[role]:
            if name not in base:
                mask = _label_mask(labels, scheme, name)
                base[name] = grouped(mask, name) if mask is not None else None
            if base[name] is not None:
                others.append(base[name])
        maps[region] = merge_touching(maps[region], others)
    return maps


# --------------------------------------------------------------------------------------------
# 2025: panoptica's one-to-one matching
# --------------------------------------------------------------------------------------------


def _pair_metrics_2025(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float], tolerance: float) -> tuple:
    """Dice, pooled 95th-percentile border distance and NSD of two non-empty masks (panoptica)."""
    dice = 2.0 * int(np.count_nonzero(ref & pred)) / (int(np.count_nonzero(ref)) + int(np.count_nonzero(pred)))
    to_pred, to_ref = border_distances(ref, pred, spacing)
    dist = float(np.percentile(np.hstack((to_pred, to_ref)), 95))
    nsd = normalized_surface_dice(to_pred, to_ref, tolerance, eps=sys.float_info.min)
    return dice, dist, nsd


def scores_2025(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> dict:
    """The 2025 (``brats-evaluation`` 0.0.10 / panoptica 2.1.7) scores of one region.

    26-connected components of each mask; pairs overlapping with Dice >= 1e-6 are matched one to
    one by :func:`scipy.optimize.linear_sum_assignment` on the cost ``1 - Dice`` (``1 + 1e-6`` for
    other pairs; a pair costing >= 1 is no match). Matched lesions get Dice, HD95 (95th percentile
    of the pooled voxel-border distances, in mm) and NSD at tolerance ``min(spacing)``.

    Args:
        ref, pred: ``(X, Y, Z)`` boolean masks of the region.
        spacing: voxel size in mm.

    Returns:
        dict: ``sq_dsc``, ``sq_hd95``, ``sq_nsd`` (means over matched lesions; no lesion on
        either side: NaN; otherwise no match: 0, ``inf``, 0), ``tp``, ``fp``, ``fn``, ``rq``
        (``tp / (tp + (fp + fn) / 2)``; NaN when both sides are empty), ``global_dsc``,
        ``global_hd95``, ``global_nsd`` (whole masks at unit spacing and tolerance 0.5 voxel, as
        panoptica calls them without spacing; both empty: NaN; no overlap: 0, ``inf``, 0) and
        ``reference_instances``: per reference lesion ``(volume_mm3, matched, dice, hd95, nsd)``.
    """
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    spacing = check_spacing(spacing)
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
    tolerance = min(spacing)
    # numbered as panoptica's cc3d numbers its SimpleITK (z, y, x) arrays: ties in the matching
    # are broken by that order
    ref_cc, n_ref = _label_scan_order(ref, _FULL_26)
    pred_cc, n_pred = _label_scan_order(pred, _FULL_26)
    ref_sizes = np.bincount(ref_cc.ravel(), minlength=n_ref + 1)
    pred_sizes = np.bincount(pred_cc.ravel(), minlength=n_pred + 1)
    out: dict = {"tp": 0, "fp": int(n_pred), "fn": int(n_ref)}
    instances: list[tuple[float, bool, float, float, float]] = []
    matches: list[tuple[int, int]] = []
    if n_ref and n_pred:
        both = ref & pred
        pairs, overlap = (
            np.unique(np.stack([ref_cc[both], pred_cc[both]]), axis=1, return_counts=True)
            if both.any()
            else (np.zeros((2, 0), int), np.zeros(0, int))
        )
        cost = np.full((n_ref, n_pred), 1.0 + PANOPTICA_MATCH_THRESHOLD)
        for (r, p), inter in zip(pairs.T, overlap):
            dice = 2.0 * inter / (ref_sizes[r] + pred_sizes[p])
            if dice >= PANOPTICA_MATCH_THRESHOLD:
                cost[r - 1, p - 1] = 1.0 - dice
        rows, cols = linear_sum_assignment(cost)
        matches = [(int(r) + 1, int(c) + 1) for r, c in zip(rows, cols) if cost[r, c] < 1.0]
    matched_ref = {r for r, _ in matches}
    values = []
    ref_boxes = ndimage.find_objects(ref_cc)
    pred_boxes = ndimage.find_objects(pred_cc)
    for r, p in matches:
        r_box, p_box = ref_boxes[r - 1], pred_boxes[p - 1]
        box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(r_box, p_box))
        metrics = _pair_metrics_2025(ref_cc[box] == r, pred_cc[box] == p, spacing, tolerance)
        values.append(metrics)
        instances.append((float(ref_sizes[r]) * voxel_mm3, True, *metrics))
    for r in range(1, n_ref + 1):
        if r not in matched_ref:
            instances.append((float(ref_sizes[r]) * voxel_mm3, False, math.nan, math.nan, math.nan))
    tp = len(matches)
    out.update(tp=tp, fp=int(n_pred) - tp, fn=int(n_ref) - tp)
    if n_ref == 0 and n_pred == 0:
        out.update(sq_dsc=math.nan, sq_hd95=math.nan, sq_nsd=math.nan, rq=math.nan)
    elif tp == 0:
        out.update(sq_dsc=0.0, sq_hd95=math.inf, sq_nsd=0.0, rq=0.0)
    else:
        arr = np.array(values, dtype=np.float64)
        out.update(
            sq_dsc=float(np.average(arr[:, 0])),
            sq_hd95=float(np.average(arr[:, 1])),
            sq_nsd=float(np.average(arr[:, 2])),
            rq=tp / (tp + 0.5 * out["fp"] + 0.5 * out["fn"]),
        )
    if not (ref & pred).any():
        empty = not ref.any() and not pred.any()
        out.update(
            global_dsc=math.nan if empty else 0.0,
            global_hd95=math.nan if empty else math.inf,
            global_nsd=math.nan if empty else 0.0,
        )
    else:
        dice, dist, nsd = _pair_metrics_2025(ref, pred, (1.0, 1.0, 1.0), 0.5)
        out.update(global_dsc=dice, global_hd95=dist, global_nsd=nsd)
    out["reference_instances"] = instances
    return out


def mets_summary(result: Mapping, *, small_volume: float = 20.0, min_dice: float = 0.1) -> dict:
    """The MET reading of :func:`scores_2025` (``brats-evaluation``'s ``parse_mets_results``).

    Reference lesions of volume >= ``small_volume`` mm^3 are *large*: lesion-wise Dice, HD95 and
    NSD are their means, a missed large lesion and each false positive counting 0, 373 and 0
    (NaN when there is no large lesion); a large lesion is detected when matched with Dice >=
    ``min_dice``. Small lesions are only detected or not (same Dice rule).

    Returns:
        dict ``lesion_dsc``, ``lesion_hd95``, ``lesion_nsd``, ``large_f1`` and ``small_f1``
        (``2 tp / (2 tp + fp + fn)``, every false positive counted in each; NaN without such lesions).
    """
    dsc, dist, nsd = [], [], []
    large_tp = large_fn = small_tp = small_fn = 0
    has_large = has_small = False
    for volume, is_matched, d, h, n in result["reference_instances"]:
        large = volume >= small_volume
        has_large |= large
        has_small |= not large
        hit = is_matched and d >= min_dice
        if large:
            large_tp, large_fn = large_tp + hit, large_fn + (not hit)
            dsc.append(d if is_matched else 0.0)
            dist.append(h if is_matched else PANOPTICA_HD95_PENALTY)
            nsd.append(n if is_matched else 0.0)
        else:
            small_tp, small_fn = small_tp + hit, small_fn + (not hit)
    fp = int(result["fp"])
    dsc += [0.0] * fp
    dist += [PANOPTICA_HD95_PENALTY] * fp
    nsd += [0.0] * fp

    def f1(tp: int, fn: int) -> float:
        return 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0

    finite = [h for h in dist if math.isfinite(h)]
    return {
        "lesion_dsc": float(np.mean(dsc)) if has_large else math.nan,
        "lesion_hd95": (float(np.mean(finite)) if finite else PANOPTICA_HD95_PENALTY) if has_large else math.nan,
        "lesion_nsd": float(np.mean(nsd)) if has_large else math.nan,
        "large_f1": f1(large_tp, large_fn) if has_large else math.nan,
        "small_f1": f1(small_tp, small_fn) if has_small else math.nan,
    }


# --------------------------------------------------------------------------------------------
# Per case
# --------------------------------------------------------------------------------------------


def score_case(
    ref: np.ndarray,
    pred: np.ndarray,
    spacing: Sequence[float],
    rules: RuleSet,
    *,
    scheme: str | LabelScheme | None = None,
    regions: Sequence[str] | None = None,
    shape: Sequence[int] | None = None,
) -> dict[str, dict[str, float]]:
    """A rule set's lesion-wise columns (:func:`rule_columns`) for each region of one case.

    Args:
        ref, pred: ``(X, Y, Z)`` label maps in ``scheme``'s internal labels (``None``: canonical).
        spacing: voxel size in mm.
        rules: the :class:`RuleSet`.
        scheme: the label scheme of both maps.
        regions: the regions scored (default: the scheme's).
        shape: the full grid's shape when ``ref``/``pred`` are a crop of it (for grid penalties).

    Returns:
        region -> ``{column: value}``; empty dicts for the legacy rules.
    """
    spacing = check_spacing(spacing)
    scheme_obj = None if scheme is None else get_scheme(scheme)
    regions = tuple(scheme_regions(scheme_obj) if regions is None else regions)
    if rules.year == "legacy":
        return {r: {} for r in regions}
    mask = _region_masker(scheme_obj)
    penalty = rules.penalty_for(ref.shape if shape is None else shape, spacing)
    out: dict[str, dict[str, float]] = {}
    if rules.year == "2023":
        for region in regions:
            lw = lesion_wise_scores(
                mask(ref, region),
                mask(pred, region),
                spacing,
                dilation=rules.dilation_for(region),
                min_volume=rules.min_volume_for(region),
                fp_hd95=penalty,
            )
            values = (lw["lesion_dice"], lw["lesion_hd95"], lw["tp"], lw["fn"], lw["fp"])
            out[region] = dict(zip(rule_columns(rules), values))
        return out
    if rules.year == "2024":
        ref_maps = _lesion_maps_2024(ref, mask, regions, rules, scheme_obj, spacing, is_pred=False)
        pred_maps = _lesion_maps_2024(pred, mask, regions, rules, scheme_obj, spacing, is_pred=True)
        for region in regions:
            lw = scores_2024(
                ref_maps[region],
                pred_maps[region],
                spacing,
                dilation=rules.dilation_for(region),
                min_volume=rules.min_volume_for(region),
                penalty=penalty,
                tolerances=rules.nsd_tolerances,
                fp_in_score=rules.fp_in_score,
            )
            values = (lw["lesion_dice"], lw["lesion_hd95"], *lw["lesion_nsd"], lw["tp"], lw["fn"], lw["fp"])
            out[region] = dict(zip(rule_columns(rules), values))
        return out
    for region in regions:
        res = scores_2025(mask(ref, region), mask(pred, region), spacing)
        lesion = (res["sq_dsc"], res["sq_hd95"], res["sq_nsd"])
        small_f1 = math.nan
        if rules.small_lesion_volume is not None:
            met = mets_summary(res, small_volume=rules.small_lesion_volume, min_dice=rules.small_lesion_dice)
            lesion = (met["lesion_dsc"], met["lesion_hd95"], met["lesion_nsd"])
            small_f1 = met["small_f1"]
        global_hd95 = res["global_hd95"]
        values = (
            *lesion,
            res["tp"],
            res["fn"],
            res["fp"],
            res["rq"],
            res["global_dsc"],
            PANOPTICA_HD95_PENALTY if math.isinf(global_hd95) else global_hd95,
            res["global_nsd"],
            small_f1,
        )
        out[region] = dict(zip(rule_columns(rules), values))
    return out
