"""Label-map postprocessing rules, and their selection on validation data as nnU-Net does it.

Everything here is NumPy/SciPy on canonical label maps ``(X, Y, Z)`` (or 2D) uint8: 0 BG, 1 NCR,
2 ED, 3 ET; regions WT = {1, 2, 3}, TC = {1, 3}, ET = {3}; components are 26-connected (8 in 2D).

The rules (:class:`Rule`), in the fixed order :data:`ORDER` in which both :func:`select` tries them
and :func:`apply` applies them:

1. ``largest_component`` of WT, then TC, then ET: only the largest connected component of the
   region is kept. Voxels of the region elsewhere are *demoted* to the next outer region, so a
   rule on one region never changes an outer one: ET -> NCR (still TC), TC -> ED (still WT),
   WT -> BG.
2. ``remove_small`` (WT): whole-tumour components with fewer than ``min_voxels`` voxels -> BG.
3. ``et_to_ncr``: when a case's total ET volume is in ``(0, min_voxels)`` voxels it becomes NCR
   (a few ET voxels in a case without ET cost the whole ET Dice under the legacy empty-mask rule).
4. ``remove_small`` of TC, then ET: components of the region with fewer than ``min_voxels``
   voxels are demoted as above (TC -> ED, ET -> NCR). Unlike the largest component, these keep
   every sizeable lesion of a multifocal tumour. They come last so that a rule that already
   existed is preferred where both would do the same.

:func:`select` is nnU-Net's greedy rule with a guard against noise. Score the predictions (mean
over cases of the Dice per region, legacy BraTS empty-mask rule: both empty -> 1; then the mean
over WT, TC, ET), try each candidate on top of the rules kept so far (of a size grid, the size with
the highest mean Dice, the smallest on ties), and **keep it only when both**

* the mean Dice rises by more than :data:`EPSILON`, and
* it improves more cases than it worsens: a case improves (worsens) when its own mean Dice over
  the scored regions rises (falls) at all; cases it leaves unchanged count for neither side.

A rule that raises the mean through a large gain on one case while it hurts most cases is
refused: on few cases such a gain is as likely to be noise as signal. The rule was written before
any run that it decides (docs/postprocessing.md). Sizes come from the fixed grid
:data:`SIZE_GRID_MM3` (mm^3, converted to voxels with the voxel volume). Nothing is random, and
nothing is tuned by hand. The chosen rules, with their evidence (mean gain; cases improved,
worsened, unchanged), are recorded in the model card (:class:`brainseg_tf.card.Postprocessing`,
:func:`record`) and applied by ``brainseg predict`` (:func:`brainseg_tf.inference.postprocess`).
``docs/postprocessing.md`` has the full definitions.

**Label schemes.** Everything above is the default: canonical labels, whose WT/TC/ET nest with one
label added per region. A model of a scheme the canonical labels cannot hold (GLI/MET 2024 with a
resection cavity, PED 2024; :mod:`brainseg_tf.schemes`) works in that scheme's internal labels and
passes ``scheme=``. The rules keep their meaning there, generalised in internal labels rather than
restricted: they act on the scheme's WT, TC and ET (the regions a card records), and a voxel that
leaves region R takes the lowest internal label of the smallest region strictly enclosing R that R
lacks (BG where none encloses R; :func:`demoted_label`). For the canonical labels this is exactly
ET -> NCR, TC -> ED, WT -> BG; for GLI/MET 2024 ET -> NETC, TC -> SNFH, WT -> BG (the resection
cavity, outside WT, is never touched); for PED 2024 ET -> NET (the core label, not the cystic
component), TC -> ED, WT -> BG. ``et_to_ncr`` turns ET into the scheme's core label (NETC, NET).
A rule whose region the scheme lacks is not a candidate. Selection scores every region of the
scheme (PED 2024: six) with the same greedy rule. With ``scheme`` ``None`` or a canonical scheme,
behaviour and selection results are the default ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from brainseg_tf import atomic
from brainseg_tf.arrays import bbox, region_mask
from brainseg_tf.card import CARD_FILE, ModelCard, Postprocessing
from brainseg_tf.checks import check_int, check_number
from brainseg_tf.conventions import REGIONS, region_index
from brainseg_tf.evaluation import region_dice
from brainseg_tf.schemes import LabelScheme, own_scheme

__all__ = [
    "KINDS",
    "ORDER",
    "EPSILON",
    "SELECTION_RULE",
    "SIZE_GRID_MM3",
    "SELECTION_FILE",
    "Rule",
    "Selection",
    "largest_component",
    "remove_small_components",
    "et_to_ncr_below",
    "demoted_label",
    "apply",
    "rules_from_card",
    "to_card",
    "size_grid",
    "default_candidates",
    "mean_dice",
    "case_changes",
    "passes_guard",
    "select",
    "selection_step",
    "select_for_folders",
    "record",
]

KINDS: tuple[str, ...] = ("largest_component", "remove_small", "et_to_ncr")
#: The order rules are tried in and applied in: (kind, region).
ORDER: tuple[tuple[str, str], ...] = (
    ("largest_component", "WT"),
    ("largest_component", "TC"),
    ("largest_component", "ET"),
    ("remove_small", "WT"),
    ("et_to_ncr", "ET"),
    ("remove_small", "TC"),
    ("remove_small", "ET"),
)
#: A candidate is kept only when the mean Dice over WT/TC/ET rises by more than this (and it
#: improves more cases than it worsens: :data:`SELECTION_RULE`).
EPSILON = 1e-4
#: Sizes tried by ``remove_small`` and ``et_to_ncr``, in mm^3 (voxels at 1 mm isotropic).
SIZE_GRID_MM3: tuple[float, ...] = (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
SELECTION_FILE = "postprocessing.json"
EMPTY_RULE = "legacy BraTS empty-mask rule (both empty: Dice 1; one empty: Dice 0)"
SELECTION_RULE = (
    "a candidate is kept when the mean Dice over the regions rises by more than epsilon and it improves "
    "more cases than it worsens (per-case mean Dice over the regions)"
)
#: The card field holding the size of each region's ``remove_small`` rule.
_SMALL_FIELD = {"WT": "min_component_voxels", "TC": "min_component_voxels_tc", "ET": "min_component_voxels_et"}
# The label a voxel takes when it leaves a region but stays in the enclosing one.
_DEMOTED = {"WT": 0, "TC": 2, "ET": 1}


# ----------------------------------------------------------------------------- label operations

SchemeArg = str | LabelScheme | None


def _as_labels(labels: np.ndarray, scheme: LabelScheme | None = None) -> np.ndarray:
    out = np.array(labels, dtype=np.uint8, copy=True)
    if scheme is None:
        if out.size and int(out.max()) > 3:
            raise ValueError(
                f"labels hold value {int(out.max())}; expected canonical labels 0-3 (0 BG, 1 NCR, 2 ED, 3 ET)"
            )
    elif out.size and int(out.max()) >= scheme.n_classes:
        raise ValueError(
            f"labels hold value {int(out.max())}; expected the {scheme.name!r} scheme's internal labels (0 BG, "
            + ", ".join(f"{i} {n}" for i, n in enumerate(scheme.internal, 1))
            + ")"
        )
    return out


def _region(region: str, scheme: LabelScheme | None = None) -> str:
    """``region`` in upper case; ``ValueError`` for one that is not WT/TC/ET or not in ``scheme``."""
    name = REGIONS[region_index(region)]
    if scheme is not None and name not in scheme.region_names:
        raise ValueError(f"region={region!r} is not a region of the {scheme.name!r} scheme {list(scheme.region_names)}")
    return name


def _mask(labels: np.ndarray, region: str, scheme: LabelScheme | None) -> np.ndarray:
    if scheme is None:
        return region_mask(labels, region)
    return np.isin(labels, scheme.region_internal(region))


def demoted_label(region: str, scheme: SchemeArg = None) -> int:
    """The label a voxel takes when a rule removes it from ``region`` but not from the enclosing one.

    The lowest internal label of the smallest region of the scheme that strictly encloses
    ``region`` and that ``region`` lacks; 0 (BG) where no region encloses it. Canonical labels
    (``scheme`` ``None``): WT -> 0, TC -> 2 (ED), ET -> 1 (NCR). GLI/MET 2024: TC -> SNFH, ET ->
    NETC; PED 2024: TC -> ED, ET -> NET (the lowest of NET and CC).

    Raises:
        ValueError: ``region`` is not WT/TC/ET or not a region of ``scheme``.
    """
    own = own_scheme(scheme)
    region = _region(region, own)
    return _DEMOTED[region] if own is None else _enclosing_label(own, region)


def _enclosing_label(scheme: LabelScheme, region: str) -> int:
    """:func:`demoted_label` computed from a scheme's regions (for the canonical ones: ``_DEMOTED``)."""
    held = set(scheme.region_internal(region))
    enclosing = [set(labels) for labels in scheme.internal_regions().values() if set(labels) > held]
    if not enclosing:
        return 0
    smallest = min(enclosing, key=len)  # on a tie, the first in channel order
    return min(smallest - held)


def _core_label(scheme: LabelScheme | None) -> int:
    """The label ``et_to_ncr`` turns ET into: the core (NCR, NETC, NET) -- internal 1 where the scheme has one."""
    if scheme is None:
        return 1
    return demoted_label("ET", scheme)


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Component ids (0 outside) and the voxel count of each id (index 0: background)."""
    components, _ = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    return components, np.bincount(components.ravel())


def largest_component(labels: np.ndarray, region: str, *, scheme: SchemeArg = None) -> np.ndarray:
    """Keep only the largest connected component of ``region``; returns a new uint8 array.

    Voxels of ``region`` outside that component are demoted (ET -> NCR, TC -> ED, WT -> BG;
    in another ``scheme``'s internal labels, :func:`demoted_label`), so outer regions are
    unchanged. On a tie the component met first in C order is kept.
    """
    own = own_scheme(scheme)
    region = _region(region, own)
    out = _as_labels(labels, own)
    components, sizes = _components(_mask(out, region, own))
    if sizes.size > 2:  # more than one component
        sizes[0] = 0
        out[(components > 0) & (components != int(np.argmax(sizes)))] = demoted_label(region, own)
    return out


def remove_small_components(
    labels: np.ndarray, region: str, min_voxels: int, *, scheme: SchemeArg = None
) -> np.ndarray:
    """Demote connected components of ``region`` with fewer than ``min_voxels`` voxels (0: off).

    For WT the voxels become BG (the card's ``min_component_voxels``); for TC they become ED and
    for ET NCR, as in :func:`largest_component` (another ``scheme``: :func:`demoted_label`).
    Returns a new uint8 array.
    """
    own = own_scheme(scheme)
    region = _region(region, own)
    min_voxels = int(check_int("min_voxels", min_voxels, 0))
    out = _as_labels(labels, own)
    if min_voxels > 0:
        components, sizes = _components(_mask(out, region, own))
        small = sizes < min_voxels
        small[0] = False
        out[small[components]] = demoted_label(region, own)
    return out


def et_to_ncr_below(labels: np.ndarray, min_voxels: int, *, scheme: SchemeArg = None) -> np.ndarray:
    """Relabel all ET as NCR when the case's ET volume is in ``(0, min_voxels)`` voxels (0: off).

    In another ``scheme``'s internal labels ET becomes its core label (NETC, NET: :func:`demoted_label` of ET).
    """
    min_voxels = int(check_int("min_voxels", min_voxels, 0))
    own = own_scheme(scheme)
    out = _as_labels(labels, own)
    et = _mask(out, _region("ET", own), own)
    if 0 < int(np.count_nonzero(et)) < min_voxels:
        out[et] = _core_label(own)
    return out


# ----------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One postprocessing step, as the model card can record it.

    Attributes:
        kind: ``"largest_component"``, ``"remove_small"`` or ``"et_to_ncr"``.
        region: ``"WT"``, ``"TC"`` or ``"ET"`` for ``largest_component`` and ``remove_small``
            (default WT); ``et_to_ncr`` acts on ET.
        min_voxels: size in voxels of ``remove_small``/``et_to_ncr`` (>= 1); 0 for
            ``largest_component``.

    Raises:
        ValueError: an unknown kind or region, a size the kind does not take.
    """

    kind: str
    region: str | None = None
    min_voxels: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is unknown; expected one of {list(KINDS)}")
        fixed = {"et_to_ncr": "ET"}.get(self.kind)
        if self.region is None and self.kind == "largest_component":
            raise ValueError(f"a {self.kind} rule needs region= (one of {list(REGIONS)})")
        region = _region(self.region if self.region is not None else (fixed or "WT"))
        if fixed is not None and region != fixed:
            raise ValueError(
                f"region={self.region!r}: a {self.kind} rule acts on {fixed} (what the model card records)"
            )
        object.__setattr__(self, "region", region)
        size = int(check_int("min_voxels", self.min_voxels, 0))
        if self.kind == "largest_component" and size:
            raise ValueError(f"min_voxels={self.min_voxels!r}: a largest_component rule takes no size")
        if self.kind != "largest_component" and size < 1:
            raise ValueError(f"min_voxels={self.min_voxels!r}: a {self.kind} rule needs a size >= 1 voxel")
        object.__setattr__(self, "min_voxels", size)

    @property
    def position(self) -> int:
        """Index of this rule's (kind, region) in :data:`ORDER`."""
        return ORDER.index((self.kind, str(self.region)))

    def __call__(self, labels: np.ndarray, *, scheme: SchemeArg = None) -> np.ndarray:
        """The rule applied to canonical labels, or to ``scheme``'s internal labels; a new uint8 array."""
        if self.kind == "largest_component":
            return largest_component(labels, str(self.region), scheme=scheme)
        if self.kind == "remove_small":
            return remove_small_components(labels, str(self.region), self.min_voxels, scheme=scheme)
        return et_to_ncr_below(labels, self.min_voxels, scheme=scheme)

    def applies_to(self, scheme: SchemeArg = None) -> bool:
        """Whether the rule means something in ``scheme``: its region is one of the scheme's."""
        own = own_scheme(scheme)
        return own is None or str(self.region) in own.region_names

    def describe(self, scheme: SchemeArg = None) -> str:
        """One line; ``et_to_ncr`` names the label ET becomes in ``scheme`` (NCR by default)."""
        if self.kind == "largest_component":
            return f"largest {self.region} component only"
        if self.kind == "remove_small":
            return f"drop {self.region} components < {self.min_voxels} voxels"
        own = own_scheme(scheme)
        core = "NCR" if own is None else own.internal[_core_label(own) - 1]
        return f"ET < {self.min_voxels} voxels -> {core}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "region": self.region, "min_voxels": self.min_voxels}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        return cls(kind=data["kind"], region=data.get("region"), min_voxels=int(data.get("min_voxels", 0)))


def _ordered(rules: Sequence[Rule]) -> list[Rule]:
    positions = [r.position for r in rules]
    if len(set(positions)) != len(positions):
        raise ValueError(f"rules {[r.describe() for r in rules]} repeat a (kind, region); give each at most once")
    return sorted(rules, key=lambda r: r.position)


def apply(labels: np.ndarray, rules: Sequence[Rule] | Postprocessing, *, scheme: SchemeArg = None) -> np.ndarray:
    """Apply rules (or a card's :class:`~brainseg_tf.card.Postprocessing`) in :data:`ORDER`.

    Args:
        labels: canonical labels ``(X, Y, Z)`` (or 2D), or ``scheme``'s internal labels.
        rules: :class:`Rule` objects (each (kind, region) at most once) or a card section.
        scheme: the label scheme of ``labels`` (the model card's); ``None``: canonical.

    Returns:
        A new uint8 array; ``labels`` is not changed.

    Raises:
        ValueError: labels outside the scheme, a rule on a region the scheme lacks.
    """
    own = own_scheme(scheme)
    out = _as_labels(labels, own)
    for rule in rules_from_card(rules) if isinstance(rules, Postprocessing) else _ordered(rules):
        out = rule(out, scheme=own)
    return out


def rules_from_card(post: Postprocessing) -> list[Rule]:
    """The rules a card's postprocessing section describes, in :data:`ORDER`."""
    rules = [Rule("largest_component", r) for r in post.largest_component]
    for region, name in _SMALL_FIELD.items():
        if getattr(post, name) > 0:
            rules.append(Rule("remove_small", region, getattr(post, name)))
    if post.et_min_voxels > 0:
        rules.append(Rule("et_to_ncr", "ET", post.et_min_voxels))
    return _ordered(rules)


def to_card(
    rules: Sequence[Rule], base: Postprocessing | None = None, evidence: Mapping[str, Any] | None = None
) -> Postprocessing:
    """A card section holding exactly ``rules`` (the region threshold is kept from ``base``) and
    the selection's ``evidence`` (informational; empty when not given)."""
    rules = _ordered(rules)
    small = {str(r.region): r.min_voxels for r in rules if r.kind == "remove_small"}
    return Postprocessing(
        et_min_voxels=next((r.min_voxels for r in rules if r.kind == "et_to_ncr"), 0),
        region_threshold=0.5 if base is None else base.region_threshold,
        largest_component=[str(r.region) for r in rules if r.kind == "largest_component"],
        evidence=dict(evidence or {}),
        **{name: small.get(region, 0) for region, name in _SMALL_FIELD.items()},
    )


def size_grid(voxel_volume: float = 1.0) -> list[int]:
    """:data:`SIZE_GRID_MM3` in voxels of ``voxel_volume`` mm^3 (rounded half up, >= 1, distinct, ascending)."""
    check_number("voxel_volume", voxel_volume, 0, min_inclusive=False)
    return sorted({max(1, int(math.floor(mm3 / voxel_volume + 0.5))) for mm3 in SIZE_GRID_MM3})


def default_candidates(voxel_volume: float = 1.0, scheme: SchemeArg = None) -> list[list[Rule]]:
    """The candidates in :data:`ORDER`; each a list of alternatives (a size grid or one rule).

    For a ``scheme`` other than the canonical labels, only the rules on regions it has
    (:meth:`Rule.applies_to`); GLI/MET/PED 2024 have WT, TC and ET, so all of them.
    """
    grid = size_grid(voxel_volume)
    own = own_scheme(scheme)
    out: list[list[Rule]] = []
    for kind, region in ORDER:
        if own is not None and region not in own.region_names:
            continue
        if kind == "largest_component":
            out.append([Rule(kind, region)])
        else:
            out.append([Rule(kind, region, n) for n in grid])
    return out


# ----------------------------------------------------------------------------- selection


def mean_dice(per_case: Mapping[str, Mapping[str, float]], regions: Sequence[str] = REGIONS) -> dict[str, float]:
    """Mean over cases per region, and ``"mean"`` over the regions (equal weight)."""
    out = {r: float(np.mean([scores[r] for scores in per_case.values()])) for r in regions}
    out["mean"] = float(np.mean([out[r] for r in regions]))
    return out


def passes_guard(
    before: Mapping[str, float], after: Mapping[str, float], cases: Mapping[str, int], epsilon: float = EPSILON
) -> bool:
    """The selection's guard against noise: the mean Dice (``before``/``after``: :func:`mean_dice`)
    rises by more than ``epsilon`` **and** more cases improve than worsen (:func:`case_changes`)."""
    return after["mean"] > before["mean"] + epsilon and cases["improved"] > cases["worsened"]


def case_changes(
    before: Mapping[str, Mapping[str, float]],
    after: Mapping[str, Mapping[str, float]],
    regions: Sequence[str] = REGIONS,
) -> dict[str, int]:
    """How many cases a rule improves, worsens and leaves unchanged.

    Each case is judged by its own mean Dice over ``regions``: ``improved`` when it rises,
    ``worsened`` when it falls, ``unchanged`` when it stays equal.

    Args:
        before: case id -> region -> Dice before the rule.
        after: the same after the rule (the same case ids).

    Returns:
        ``{"improved": n, "worsened": n, "unchanged": n}``.
    """
    counts = {"improved": 0, "worsened": 0, "unchanged": 0}
    for cid, scores in before.items():
        delta = float(np.mean([after[cid][r] for r in regions])) - float(np.mean([scores[r] for r in regions]))
        counts["improved" if delta > 0 else "worsened" if delta < 0 else "unchanged"] += 1
    return counts


@dataclass
class Selection:
    """What :func:`select` chose and why.

    Attributes:
        rules: the kept rules, in :data:`ORDER` (empty: no postprocessing helps).
        baseline: mean Dice per region and ``"mean"`` before any rule.
        final: the same after the kept rules.
        steps: one record per candidate: ``rule`` (the best alternative), ``description``,
            ``tried`` (``[{"min_voxels", "mean"}]`` for a size grid), ``before``/``after`` (mean Dice
            per region and ``"mean"``), ``change`` (after - before of the mean), ``cases``
            (:func:`case_changes`: improved / worsened / unchanged), ``kept``.
        per_case: case id -> ``{"before": {region: Dice}, "after": {region: Dice}}``.
        regions: the regions scored.
        epsilon: the improvement a candidate had to exceed.
        voxel_volume: mm^3 per voxel the size grid was converted with.
        grid_voxels: the size grid in voxels.
        scheme: the label scheme the rules act in where the canonical labels cannot hold it
            (``"ped2024"``...), else ``None``.
    """

    rules: list[Rule]
    baseline: dict[str, float]
    final: dict[str, float]
    steps: list[dict[str, Any]]
    per_case: dict[str, dict[str, dict[str, float]]]
    regions: tuple[str, ...] = REGIONS
    epsilon: float = EPSILON
    voxel_volume: float = 1.0
    grid_voxels: list[int] = field(default_factory=list)
    scheme: str | None = None

    def evidence(self) -> dict[str, Any]:
        """What the card records about the choice: the rule, the case count, and per kept rule its
        mean gain and the cases it improved, worsened and left unchanged."""
        kept = [{"rule": s["description"], "mean_gain": s["change"], **s["cases"]} for s in self.steps if s["kept"]]
        return {"selection_rule": SELECTION_RULE, "epsilon": self.epsilon, "n_cases": len(self.per_case), "kept": kept}

    def postprocessing(self, base: Postprocessing | None = None) -> Postprocessing:
        """The card section for the chosen rules (region threshold from ``base``) and :meth:`evidence`."""
        return to_card(self.rules, base, self.evidence())

    def to_dict(self) -> dict[str, Any]:
        """The selection as JSON-ready data (``"scheme"`` only where it is not the canonical labels)."""
        out = {
            "rules": [r.to_dict() for r in self.rules],
            "chosen": [r.describe(self.scheme) for r in self.rules],
            "postprocessing": dataclasses.asdict(self.postprocessing()),
            "baseline": self.baseline,
            "final": self.final,
            "steps": self.steps,
            "per_case": self.per_case,
            "regions": list(self.regions),
            "epsilon": self.epsilon,
            "selection_rule": SELECTION_RULE,
            "voxel_volume_mm3": self.voxel_volume,
            "size_grid_mm3": list(SIZE_GRID_MM3),
            "size_grid_voxels": self.grid_voxels,
            "n_cases": len(self.per_case),
            "dice_rule": EMPTY_RULE,
        }
        if self.scheme is not None:
            out["scheme"] = self.scheme
        return out

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON atomically (``path`` a file, or a folder for ``postprocessing.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / SELECTION_FILE
        return atomic.write_json(path, self.to_dict())

    def format(self) -> str:
        """A plain-text table: each candidate's mean Dice per region before/after, and the choice."""
        head = " ".join(f"{r:>7}" for r in self.regions)
        lines = [
            f"postprocessing chosen on {len(self.per_case)} case(s): mean Dice per region ({EMPTY_RULE}); "
            f"a candidate is kept when the mean over {'/'.join(self.regions)} rises by more than {self.epsilon:g} "
            "and it improves more cases than it worsens (cases: improved/worsened/unchanged)",
            f"{'candidate':<36} {head} {'mean':>7} {'change':>8} {'cases':>9}  kept",
            f"{'(none: baseline)':<36} "
            + " ".join(f"{self.baseline[r]:7.4f}" for r in self.regions)
            + f" {self.baseline['mean']:7.4f}",
        ]
        for step in self.steps:
            after = step["after"]
            lines.append(
                f"{step['description']:<36} "
                + " ".join(f"{after[r]:7.4f}" for r in self.regions)
                + f" {after['mean']:7.4f} {step['change']:+8.4f} {_counts_text(step['cases']):>9}"
                + f"  {'yes' if step['kept'] else 'no'}"
            )
        chosen = "; ".join(r.describe(self.scheme) for r in self.rules) or "none"
        effect = ", ".join(f"{r} {self.final[r] - self.baseline[r]:+.4f}" for r in self.regions)
        lines.append(
            f"chosen: {chosen} (effect on mean Dice: {effect}; mean {self.final['mean'] - self.baseline['mean']:+.4f})"
        )
        return "\n".join(lines)


def _counts_text(cases: Mapping[str, int]) -> str:
    return f"{cases['improved']}/{cases['worsened']}/{cases['unchanged']}"


def _paired(
    predictions: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    references: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    scheme: LabelScheme | None = None,
) -> tuple[list[str], list, list]:
    if isinstance(predictions, Mapping) != isinstance(references, Mapping):
        raise ValueError("predictions and references must both be mappings (case id -> labels) or both sequences")
    if isinstance(predictions, Mapping):
        missing = sorted(set(references) - set(predictions))
        extra = sorted(set(predictions) - set(references))
        if missing or extra:
            raise ValueError(
                f"predictions and references differ in cases: no prediction for {missing[:5]}, "
                f"no reference for {extra[:5]}"
            )
        ids = sorted(references)
        preds, refs = [predictions[c] for c in ids], [references[c] for c in ids]
    else:
        preds, refs = list(predictions), list(references)
        if len(preds) != len(refs):
            raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
        ids = [f"case_{i}" for i in range(len(preds))]
    if not ids:
        raise ValueError("postprocessing selection needs at least one validation case")
    for cid, p, r in zip(ids, preds, refs):
        if np.shape(p) != np.shape(r):
            raise ValueError(f"case {cid}: prediction shape {np.shape(p)} differs from reference shape {np.shape(r)}")
    cropped = [_crop_to_tumour(_as_labels(p, scheme), _as_labels(r, scheme)) for p, r in zip(preds, refs)]
    return ids, [p for p, _ in cropped], [r for _, r in cropped]


def _crop_to_tumour(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both maps cut to the box around any tumour of either, with a 1-voxel background margin.

    Exact for selection: the rules only move tumour voxels of the prediction, its components lie
    inside the box, and outside it both maps are background (no Dice term).
    """
    box = bbox((pred > 0) | (ref > 0), pad=1)
    if box is None:
        return pred[(slice(0, 1),) * pred.ndim], ref[(slice(0, 1),) * ref.ndim]
    return pred[box], ref[box]


def selection_step(
    rule: Rule,
    scheme: SchemeArg,
    tried: list[dict[str, Any]],
    before: dict[str, float],
    after: dict[str, float],
    cases: dict[str, int],
    kept: bool,
) -> dict[str, Any]:
    """One candidate's line in :attr:`Selection.steps`: the best alternative ``rule`` of its group,
    ``tried`` (each size's ``min_voxels`` and mean, empty for a rule without sizes), the mean Dice
    ``before`` and ``after`` it (:func:`mean_dice`), ``cases`` (:func:`case_changes`) and whether it was
    ``kept``."""
    return {
        "rule": rule.to_dict(),
        "description": rule.describe(own_scheme(scheme)),
        "tried": list(tried),
        "before": before,
        "after": after,
        "change": after["mean"] - before["mean"],
        "cases": cases,
        "kept": bool(kept),
    }


def select(
    predictions: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    references: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    *,
    candidates: Sequence[Sequence[Rule]] | None = None,
    voxel_volume: float = 1.0,
    epsilon: float = EPSILON,
    regions: Sequence[str] | None = None,
    scheme: SchemeArg = None,
) -> Selection:
    """Choose postprocessing on validation cases with nnU-Net's greedy rule, guarded against noise.

    Each candidate (in the given order; default :func:`default_candidates`) is tried on top of
    the rules kept so far; of its alternatives (a size grid) the one with the highest mean Dice is
    taken, the first (smallest) on ties; it is kept only when the mean Dice over ``regions``
    exceeds the current one by more than ``epsilon`` **and** it improves more cases than it
    worsens (:func:`case_changes`: each case's mean Dice over ``regions``). Deterministic.

    Args:
        predictions: canonical label maps *without* postprocessing, by case id (or a sequence);
            for another ``scheme``, its internal labels.
        references: reference label maps in the same labels, paired by case id (or position).
        candidates: candidate groups in trial order, each a list of alternative :class:`Rule`
            objects; at most one rule per (kind, region) is kept. Default:
            :func:`default_candidates` (for a scheme, the rules on regions it has).
        voxel_volume: mm^3 per voxel, converting :data:`SIZE_GRID_MM3` to voxels (default 1).
        epsilon: the improvement of the mean Dice a candidate must exceed. Defaults to 1e-4.
        regions: the regions scored (a single-region model: that region only). Default: WT, TC,
            ET; for a scheme the canonical labels cannot hold, all of its regions (PED 2024: six).
        scheme: the label scheme of the maps (``None``: canonical labels; a canonical scheme
            such as ``brats2021`` is the same). The module docstring says what the rules do there.

    Returns:
        A :class:`Selection`.

    Raises:
        ValueError: unpaired cases, different shapes, labels outside the scheme, a candidate or
            region the scheme lacks, bad arguments.
    """
    own = own_scheme(scheme)
    if regions is None:
        regions = REGIONS if own is None else own.region_names
    if own is None:
        regions = tuple(_region(r) for r in regions)
    else:
        for r in regions:
            if r not in own.region_names:
                raise ValueError(f"region={r!r} is not a region of the {own.name!r} scheme {list(own.region_names)}")
        regions = tuple(regions)
    if not regions:
        raise ValueError("regions=() must name at least one region")
    check_number("epsilon", epsilon, 0)
    grid = size_grid(voxel_volume)
    groups = default_candidates(voxel_volume, own) if candidates is None else [list(g) for g in candidates]
    if any(not g or not all(isinstance(r, Rule) for r in g) for g in groups):
        raise ValueError("candidates must be non-empty lists of Rule objects")
    lacking = [r.describe() for g in groups for r in g if not r.applies_to(own)]
    if lacking:
        raise ValueError(f"candidates {lacking} act on regions the {own.name!r} scheme lacks")  # type: ignore[union-attr]
    ids, preds, refs = _paired(predictions, references, own)

    def score(labels: Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
        return {cid: region_dice(p, r, regions, scheme=own) for cid, p, r in zip(ids, labels, refs)}

    current, current_scores = preds, score(preds)
    baseline_scores = current_scores
    current_mean = baseline = mean_dice(current_scores, regions)
    kept: list[Rule] = []
    steps: list[dict[str, Any]] = []
    for group in groups:
        best: tuple[Rule, list[np.ndarray], dict, dict] | None = None
        tried = []
        for rule in group:
            trial = [rule(p, scheme=own) for p in current]
            trial_scores = score(trial)
            trial_mean = mean_dice(trial_scores, regions)
            tried.append({"min_voxels": rule.min_voxels, "mean": trial_mean["mean"]})
            if best is None or trial_mean["mean"] > best[3]["mean"]:
                best = (rule, trial, trial_scores, trial_mean)
        rule, trial, trial_scores, trial_mean = best  # type: ignore[misc]  (groups are non-empty)
        cases = case_changes(current_scores, trial_scores, regions)
        keep = passes_guard(current_mean, trial_mean, cases, epsilon) and all(rule.position != k.position for k in kept)
        steps.append(selection_step(rule, own, tried if len(group) > 1 else [], current_mean, trial_mean, cases, keep))
        if keep:
            kept.append(rule)
            current, current_scores, current_mean = trial, trial_scores, trial_mean
    per_case = {cid: {"before": baseline_scores[cid], "after": current_scores[cid]} for cid in ids}
    return Selection(
        rules=_ordered(kept),
        baseline=baseline,
        final=current_mean,
        steps=steps,
        per_case=per_case,
        regions=regions,
        epsilon=float(epsilon),
        voxel_volume=float(voxel_volume),
        grid_voxels=grid,
        scheme=None if own is None else own.name,
    )


def select_for_folders(
    pred_dir: str | Path,
    ref_dir: str | Path,
    *,
    out: str | Path | None = None,
    ref_convention: str | None = None,
    pred_convention: str | None = None,
    case_ids: Sequence[str] | None = None,
    **select_kwargs: Any,
) -> Selection:
    """:func:`select` on a folder of predictions (made without postprocessing) and references.

    Files are paired and read as :func:`brainseg_tf.evaluation.evaluate_folders` reads them
    (:func:`brainseg_tf.io.predictions.paired_cases`: label conventions from the flags, the dataset
    layout, ``predictions.json`` or the header stamp, else the reference's scheme; never guessed;
    shapes, affines and schemes checked). The size grid is converted with the references' median
    voxel volume. The cases' label scheme is passed to :func:`select` (all cases must be in one;
    a ``scheme`` in ``select_kwargs`` must agree). The selection is written atomically to ``out``
    (default ``pred_dir/postprocessing.json``).

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: no references, a case without a prediction, shapes or affines that differ,
            cases in different schemes.
        brainseg_tf.io.DataError: an unreadable file or a convention that cannot be told.
    """
    from brainseg_tf.io.predictions import paired_cases

    pairs = paired_cases(
        pred_dir, ref_dir, ref_convention=ref_convention, pred_convention=pred_convention, case_ids=case_ids
    )
    if pairs.missing:
        raise ValueError(f"{pred_dir}: no prediction for case(s) {pairs.missing[:5]} of {ref_dir}")
    preds: dict[str, np.ndarray] = {}
    refs: dict[str, np.ndarray] = {}
    volumes = []
    found: dict[str | None, str] = {}
    for case in pairs:
        preds[case.case_id], refs[case.case_id] = case.pred, case.ref
        volumes.append(float(np.prod(case.spacing)))
        own = own_scheme(case.scheme)
        found.setdefault(None if own is None else own.name, case.case_id)
    if len(found) > 1:
        listed = ", ".join(f"{name or 'canonical labels'} (e.g. {cid})" for name, cid in found.items())
        raise ValueError(f"{ref_dir}: the cases are in different label schemes ({listed}); select on one scheme")
    scheme = next(iter(found), None)
    stated = own_scheme(select_kwargs.get("scheme"))
    if "scheme" in select_kwargs and (None if stated is None else stated.name) != scheme:
        raise ValueError(
            f"scheme={select_kwargs['scheme']!r} but the cases of {ref_dir} are in {scheme or 'canonical labels'!r}"
        )
    select_kwargs["scheme"] = scheme
    select_kwargs.setdefault("voxel_volume", float(np.median(volumes)))
    selection = select(preds, refs, **select_kwargs)
    selection.write(pred_dir / SELECTION_FILE if out is None else out)
    return selection


def record(selection: Selection, model_dir: str | Path) -> ModelCard:
    """Record the chosen rules in a run or export folder's model card and save the selection beside it.

    Writes ``model_dir/brainseg_model.json`` (postprocessing replaced; region threshold kept) and
    ``model_dir/postprocessing.json``, both atomically; returns the updated card.

    Raises:
        brainseg_tf.card.CardError: the folder has no model card.
        ValueError: the selection was made in a scheme (``selection.scheme``) other than the one the
            card's model learned.
    """
    from brainseg_tf.card import load_card

    model_dir = Path(model_dir)
    card = load_card(model_dir)
    own = own_scheme(card.scheme)
    # a selection made in canonical labels records WT/TC/ET rules that hold in every scheme having them
    # (apply(..., scheme=) generalises them); one made in another scheme belongs to that scheme only
    if selection.scheme is not None and (None if own is None else own.name) != selection.scheme:
        raise ValueError(
            f"{model_dir}: the model learned the {card.scheme!r} scheme but the selection was made in "
            f"{selection.scheme or 'canonical labels'!r}"
        )
    card = card.replace(postprocessing=selection.postprocessing(card.postprocessing))
    card.validate()
    card.save(model_dir / CARD_FILE)
    selection.write(model_dir / SELECTION_FILE)
    return card
