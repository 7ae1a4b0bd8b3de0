"""Label schemes as data: each BraTS edition's and task's labels, regions and files.

A :class:`LabelScheme` says what the values in a task's mask files mean (named labels with their
source values), which regions the task scores (each a set of labels, in channel order) and which
image files it ships. The facts come from ``reference/brats-editions.md`` (2023-2025 tasks) and
``peers.md`` (2017-2021, MSD Task01); ``docs/editions.md`` lists them.

A scheme comes from the dataset's layout -- the task prefix of the case id, see
:func:`detect_scheme` -- or is stated; it is never guessed from the label values in a file
(a 4 is ET in BraTS 2018, a resection cavity in GLI 2024 and edema in PED 2024).

Inside the library a scheme's labels are its *internal* labels (:attr:`LabelScheme.internal`):
1 the core label, 2 edema, 3 enhancing tumour where the scheme has them, then its other labels
(resection cavity, cystic component, GTV). For the glioma schemes these are the canonical labels
(0 BG, 1 NCR, 2 ED, 3 ET); readers convert source values in, writers convert them back out.
``convention`` links a scheme to the label conventions of :mod:`brainseg_tf.io.labels` that read
its values into the canonical labels with the same meaning, or is ``None`` where no convention
can. NumPy only; no TensorFlow, no file I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from brainseg_tf.checks import check_choice, check_int

__all__ = [
    "DEFAULT_SCHEME",
    "LabelScheme",
    "SchemeDetection",
    "SCHEMES",
    "SCHEME_OPTION",
    "get_scheme",
    "own_scheme",
    "detect_scheme",
]

#: The scheme of data, caches, cards and runs that record none: BraTS 2017-2021 glioma (canonical labels).
DEFAULT_SCHEME = "brats2021"

#: How a user states a scheme, quoted where the layout cannot tell it.
SCHEME_OPTION = (
    "--scheme (brainseg info / validate; Python: scheme= of read_case, open_dataset, validate_dataset, dataset_summary)"
)

_GLI_FILES = ("t2f", "t1n", "t1c", "t2w")  # in the canonical channel order flair, t1, t1ce, t2
_LEGACY_FILES = ("flair", "t1", "t1ce", "t2")
_NESTED = (("WT", ("NETC", "SNFH", "ET")), ("TC", ("NETC", "ET")), ("ET", ("ET",)))
_GLI_LABELS = (("NETC", 1), ("SNFH", 2), ("ET", 3))
_EDITIONS = "reference/brats-editions.md"
#: Label roles, in internal order: core (necrotic / non-enhancing), edema, enhancing tumour.
_ROLES = (("NCR", "NETC", "NET"), ("ED", "SNFH"), ("ET",))
_CANONICAL_REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
#: Labels that are not tumour tissue (the resection cavity of post-treatment gliomas).
_NOT_TUMOUR = ("RC",)


@dataclass(frozen=True)
class LabelScheme:
    """What the values of one task's mask files mean and which regions the task scores.

    Attributes:
        name: registry key (``"gli2024"``).
        labels: ordered ``(label name, source value)`` pairs; 0 is always background and not listed.
        regions: ordered ``(region name, label names it holds)`` pairs, in channel order.
        modalities: image file tokens the task ships, in channel order (``t1c`` for
            ``<case>-t1c.nii.gz``); for MSD the channels of its 4D image.
        mask: file token of the mask (``seg``, ``gtv``; ``label`` for MSD's ``labelsTr``).
        description: one line for messages and tables.
        source: where the facts come from.
        convention: the :mod:`brainseg_tf.io.labels` convention that reads these values into the
            canonical labels with the same meaning, or ``None`` where they cannot hold the scheme.
    """

    name: str
    labels: tuple[tuple[str, int], ...]
    regions: tuple[tuple[str, tuple[str, ...]], ...]
    modalities: tuple[str, ...]
    mask: str
    description: str
    source: str
    convention: str | None

    def __post_init__(self) -> None:
        names = self.label_names
        values = [v for _, v in self.labels]
        if len(set(names)) != len(names) or len(set(values)) != len(values) or 0 in values:
            raise ValueError(f"scheme {self.name!r}: label names and values must be unique and non-zero")
        for region, held in self.regions:
            unknown = [n for n in held if n not in names]
            if not held or unknown:
                raise ValueError(f"scheme {self.name!r}: region {region!r} holds unknown labels {unknown}")

    @property
    def label_names(self) -> tuple[str, ...]:
        """Label names in order (background excluded)."""
        return tuple(n for n, _ in self.labels)

    @property
    def values(self) -> tuple[int, ...]:
        """The source values a mask of this scheme may hold, background 0 included, ascending."""
        return (0,) + tuple(sorted(v for _, v in self.labels))

    @property
    def region_names(self) -> tuple[str, ...]:
        """Region names in channel order."""
        return tuple(r for r, _ in self.regions)

    def label_value(self, label: str) -> int:
        """Source value of a label name (``ValueError`` naming the known ones)."""
        check_choice("label", label, self.label_names)
        return dict(self.labels)[label]

    def region_values(self, region: str) -> tuple[int, ...]:
        """Source values of the labels ``region`` holds, ascending (``ValueError`` for an unknown region)."""
        check_choice("region", region, self.region_names)
        return tuple(sorted(self.label_value(n) for n in dict(self.regions)[region]))

    def region_mask(self, label_map: np.ndarray, region: str) -> np.ndarray:
        """Boolean mask of ``region`` from a label map in this scheme's SOURCE values (any shape)."""
        return np.isin(np.asarray(label_map), self.region_values(region))

    def region_masks(self, label_map: np.ndarray) -> np.ndarray:
        """Boolean masks ``(..., R)`` of every region, in the order of :attr:`region_names`."""
        arr = np.asarray(label_map)
        return np.stack([self.region_mask(arr, r) for r in self.region_names], axis=-1)

    def check_values(self, values: Iterable[int]) -> tuple[int, ...]:
        """Return the sorted distinct ``values`` if this scheme allows each of them.

        Raises:
            ValueError: naming the values the scheme does not have, and the ones it has.
        """
        present = tuple(sorted({int(v) for v in values}))
        unknown = [v for v in present if v not in self.values]
        if unknown:
            raise ValueError(
                f"label values {unknown} are not in the {self.name!r} scheme "
                f"(allowed {list(self.values)}: {self.description})"
            )
        return present

    # ------------------------------------------------------------------ internal labels
    # Inside the library a scheme's labels are the indices 1..n of :attr:`internal` (0 background).
    # The core, edema and enhancing roles come first, so the glioma schemes' internal labels are the
    # canonical ones (1 NCR, 2 ED, 3 ET); labels without a role (RC, CC, GTV) follow in file order.

    @property
    def internal(self) -> tuple[str, ...]:
        """Label names in internal order: internal label ``i`` (1-based) is ``internal[i - 1]``."""
        names = self.label_names
        ordered = [n for role in _ROLES for n in names if n in role]
        return tuple(ordered + [n for n in names if n not in ordered])

    @property
    def n_classes(self) -> int:
        """Classes of a softmax head: background plus every label."""
        return len(self.labels) + 1

    @property
    def class_names(self) -> tuple[str, ...]:
        """``("BG", *internal)``: the softmax channels."""
        return ("BG",) + self.internal

    @property
    def is_canonical(self) -> bool:
        """True when the internal labels and regions are the canonical ones (1 NCR, 2 ED, 3 ET; WT, TC, ET)."""
        return len(self.labels) == 3 and self.internal_regions() == _CANONICAL_REGIONS

    @property
    def tumour_internal(self) -> tuple[int, ...]:
        """Internal labels of tumour tissue: every label but a resection cavity (RC), ascending."""
        return tuple(i for i, n in enumerate(self.internal, 1) if n not in _NOT_TUMOUR)

    def internal_value(self, label: str) -> int:
        """Internal label (1-based) of a label name."""
        check_choice("label", label, self.label_names)
        return self.internal.index(label) + 1

    def region_internal(self, region: str) -> tuple[int, ...]:
        """Internal labels ``region`` holds, ascending."""
        check_choice("region", region, self.region_names)
        return tuple(sorted(self.internal_value(n) for n in dict(self.regions)[region]))

    def internal_regions(self) -> dict[str, tuple[int, ...]]:
        """Region name -> internal labels, in channel order."""
        return {r: self.region_internal(r) for r in self.region_names}

    def region_table(self) -> np.ndarray:
        """``(n_classes, R)`` float32: row ``i`` is the region target of internal label ``i``."""
        table = np.zeros((self.n_classes, len(self.regions)), dtype=np.float32)
        for j, r in enumerate(self.region_names):
            table[list(self.region_internal(r)), j] = 1.0
        return table

    def _lut(self, forward: bool) -> np.ndarray:
        lut = np.full(256, 255, dtype=np.uint8)
        lut[0] = 0
        for name, value in self.labels:
            src, dst = (value, self.internal_value(name)) if forward else (self.internal_value(name), value)
            lut[src] = dst
        return lut

    def to_internal(self, label_map: np.ndarray) -> np.ndarray:
        """Internal uint8 labels from a map in this scheme's source values.

        Raises:
            ValueError: values outside the scheme (see :meth:`check_values`).
        """
        arr = np.asarray(label_map)
        self.check_values(np.unique(arr))
        return self._lut(True)[arr.astype(np.int64)]

    def from_internal(self, label_map: np.ndarray) -> np.ndarray:
        """Source values (uint8) from internal labels.

        Raises:
            ValueError: internal labels outside ``0..n_classes - 1``.
        """
        arr = np.asarray(label_map)
        bad = sorted(int(v) for v in np.unique(arr) if not 0 <= int(v) < self.n_classes)
        if bad:
            raise ValueError(
                f"internal label map holds {bad}; the {self.name!r} scheme has 0 BG, "
                + ", ".join(f"{i} {n}" for i, n in enumerate(self.internal, 1))
            )
        return self._lut(False)[arr.astype(np.int64)]

    def nested(self) -> bool:
        """True when each region, in channel order, adds exactly one label to the later ones (WT, TC, ET):
        region masks then decode to labels by overwriting in channel order."""
        return all(len(a) == 1 for a in self._adds())

    def _adds(self) -> list[tuple[int, ...]]:
        regions = list(self.internal_regions().values())
        out = []
        for k, held in enumerate(regions):
            later = set().union(*regions[k + 1 :]) if k + 1 < len(regions) else set()
            out.append(tuple(sorted(set(held) - later)))
        return out

    def decode_regions(self, regions: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Internal uint8 labels ``(...)`` from region masks or probabilities ``(..., R)``.

        Nested schemes (:meth:`nested`) overwrite in channel order: each region ``> threshold``
        sets the label it adds (WT -> ED, TC -> NCR, ET -> ET: ET wins over TC, TC over WT).
        Others (PED's six regions) take, per voxel, the label whose region pattern is most likely
        under independent sigmoids (boolean masks: the nearest pattern, ties to the lower label).
        """
        arr = np.asarray(regions)
        if arr.shape[-1] != len(self.regions):
            raise ValueError(
                f"regions have {arr.shape[-1]} channels; the {self.name!r} scheme has {len(self.regions)} "
                f"{list(self.region_names)}"
            )
        on = arr if arr.dtype == bool else arr > threshold
        out = np.zeros(arr.shape[:-1], dtype=np.uint8)
        if self.nested():
            for j, (label,) in enumerate(self._adds()):
                out[on[..., j]] = label
            return out
        table = self.region_table().astype(np.int32)
        if arr.dtype == bool:  # the nearest pattern: fewest mismatching regions, the lower label on ties
            hits = on.astype(np.int32)
            mismatches = hits @ (1 - table).T + (1 - hits) @ table.T
            return np.argmin(mismatches, axis=-1).astype(np.uint8)
        eps = 1e-4
        p = np.clip(arr.astype(np.float32), eps, 1 - eps)
        score = np.log(p) @ table.T + np.log1p(-p) @ (1.0 - table).T
        return np.argmax(score, axis=-1).astype(np.uint8)

    def labels_text(self) -> str:
        """``"1 NETC, 2 SNFH, 3 ET"``."""
        return ", ".join(f"{v} {n}" for n, v in self.labels)

    def regions_text(self) -> str:
        """``"WT={1,2,3}, TC={1,3}, ET={3}"`` (source values)."""
        return ", ".join(f"{r}={{{','.join(map(str, self.region_values(r)))}}}" for r in self.region_names)


def _scheme(name, labels, regions, modalities, description, source, convention, mask="seg") -> LabelScheme:
    return LabelScheme(name, tuple(labels), tuple(regions), tuple(modalities), mask, description, source, convention)


_PED_LABELS = (("ET", 1), ("NET", 2), ("CC", 3), ("ED", 4))
_PED_REGIONS = (
    ("WT", ("ET", "NET", "CC", "ED")),
    ("TC", ("ET", "NET", "CC")),
    ("ET", ("ET",)),
    ("NET", ("NET",)),
    ("CC", ("CC",)),
    ("ED", ("ED",)),
)
_RC = (("NETC", 1), ("SNFH", 2), ("ET", 3), ("RC", 4))

SCHEMES: dict[str, LabelScheme] = {
    s.name: s
    for s in (
        _scheme(
            "brats2021",
            (("NCR", 1), ("ED", 2), ("ET", 4)),
            (("WT", ("NCR", "ED", "ET")), ("TC", ("NCR", "ET")), ("ET", ("ET",))),
            _LEGACY_FILES,
            "BraTS 2017-2021 glioma: 1 NCR/NET, 2 ED, 4 ET (3 unused)",
            "peers.md section 1; CONVENTIONS.md",
            "brats",
        ),
        _scheme(
            "gli2023",
            _GLI_LABELS,
            _NESTED,
            _GLI_FILES,
            "BraTS 2023 GLI (adult glioma, pre-treatment): 1 NETC, 2 SNFH, 3 ET",
            "peers.md section 1; CONVENTIONS.md",
            "brats2023",
        ),
        _scheme(
            "gli2024",
            _RC,
            _NESTED + (("NETC", ("NETC",)), ("SNFH", ("SNFH",)), ("RC", ("RC",))),
            _GLI_FILES,
            "BraTS 2024/2025 GLI (pre- and post-treatment glioma): 1 NETC, 2 SNFH, 3 ET, 4 RC (resection cavity)",
            f"{_EDITIONS} section 2",
            "brats2023",
        ),
        _scheme(
            "met2024",
            _RC,
            _NESTED + (("RC", ("RC",)),),
            _GLI_FILES,
            "BraTS 2024/2025 MET (metastases): 1 NETC, 2 SNFH, 3 ET, 4 RC (resection cavity)",
            f"{_EDITIONS} section 2",
            "brats2023",
        ),
        _scheme(
            "ped2023",
            _GLI_LABELS,
            _NESTED,
            _GLI_FILES,
            "BraTS 2023 PED (paediatric), GLI 2023 labels: 1 NETC, 2 SNFH, 3 ET",
            f"{_EDITIONS} section 2",
            "brats2023",
        ),
        _scheme(
            "ped2024",
            _PED_LABELS,
            _PED_REGIONS,
            _GLI_FILES,
            "BraTS 2024/2025 PED (paediatric): 1 ET, 2 NET, 3 CC (cystic component), 4 ED",
            f"{_EDITIONS} section 2",
            None,
        ),
        _scheme(
            "men",
            _GLI_LABELS,
            _NESTED,
            _GLI_FILES,
            "BraTS MEN (pre-operative meningioma): 1 NETC, 2 SNFH, 3 ET",
            f"{_EDITIONS} section 2",
            "brats2023",
        ),
        _scheme(
            "ssa",
            _GLI_LABELS,
            _NESTED,
            _GLI_FILES,
            "BraTS SSA (glioma, sub-Saharan Africa): 1 NETC, 2 SNFH, 3 ET",
            f"{_EDITIONS} section 2",
            "brats2023",
        ),
        _scheme(
            "goat",
            _GLI_LABELS,
            _NESTED,
            _GLI_FILES,
            "BraTS GoAT (generalisation across tumours): 1 NETC, 2 SNFH, 3 ET",
            f"{_EDITIONS} section 2",
            "brats2023",
        ),
        _scheme(
            "men_rt",
            (("GTV", 1),),
            (("GTV", ("GTV",)),),
            ("t1c",),
            "BraTS MEN-RT (meningioma radiotherapy planning): 1 GTV, T1c only",
            f"{_EDITIONS} sections 1-2",
            None,
            mask="gtv",
        ),
        _scheme(
            "msd",
            (("ED", 1), ("NET", 2), ("ET", 3)),
            (("WT", ("ED", "NET", "ET")), ("TC", ("NET", "ET")), ("ET", ("ET",))),
            ("FLAIR", "T1w", "t1gd", "T2w"),
            "MSD Task01 BrainTumour: 1 edema, 2 non-enhancing tumour, 3 enhancing tumour",
            "MSD Task01 dataset.json; peers.md section 1",
            "msd",
            mask="label",
        ),
    )
}

_ALIASES = {
    "brats": "brats2021",
    "brats2017": "brats2021",
    "brats2018": "brats2021",
    "brats2019": "brats2021",
    "brats2020": "brats2021",
    "gli2025": "gli2024",
    "met2025": "met2024",
    "ped2025": "ped2024",
    "menrt": "men_rt",
    "msd_task01": "msd",
}


def get_scheme(name: str | LabelScheme) -> LabelScheme:
    """A :class:`LabelScheme` by name or alias (``ped2025`` -> ``ped2024``; case and ``-`` ignored).

    Raises:
        ValueError: unknown name; the message lists the scheme names.
    """
    if isinstance(name, LabelScheme):
        return name
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in SCHEMES:
        raise ValueError(f"scheme={name!r} is unknown; expected one of {list(SCHEMES)}")
    return SCHEMES[key]


def own_scheme(scheme: str | LabelScheme | None) -> LabelScheme | None:
    """The scheme whose internal labels an array operation must convert with, or ``None`` where the
    canonical labels (0 BG, 1 NCR, 2 ED, 3 ET) and regions (WT, TC, ET) serve: ``None`` itself, or a
    scheme whose internal labels are the canonical ones (the glioma schemes).

    Raises:
        ValueError: unknown name (:func:`get_scheme`).
    """
    if scheme is None:
        return None
    s = get_scheme(scheme)
    return None if s.is_canonical else s


@dataclass(frozen=True)
class SchemeDetection:
    """A scheme detected from a case id.

    Attributes:
        scheme: the detected :class:`LabelScheme`.
        task: the task the id names (``"PED"``, ``"GLI post-treatment"``, ``"BraTS 2021"``...).
        note: where the layout has carried more than one scheme, which one was chosen and how to
            pick the other (for the CLI to print); ``None`` where the id settles it.
    """

    scheme: LabelScheme
    task: str
    note: str | None = None


_GLI_ID = re.compile(r"^BraTS-GLI-\d+-(\d+)", re.I)
_PREFIXES: tuple[tuple[re.Pattern, str, str], ...] = (
    (re.compile(r"^BraTS-MEN-RT-", re.I), "MEN-RT", "men_rt"),
    (re.compile(r"^BraTS-MEN-", re.I), "MEN", "men"),
    (re.compile(r"^BraTS-MET-", re.I), "MET", "met2024"),
    (re.compile(r"^BraTS-SSA-", re.I), "SSA", "ssa"),
    (re.compile(r"^BraTS-PED-", re.I), "PED", "ped2024"),
    (re.compile(r"^BraTS-GLI-", re.I), "GLI", "gli2024"),
    (re.compile(r"^BraTS2021_", re.I), "BraTS 2021", "brats2021"),
    (re.compile(r"^BraTS20_", re.I), "BraTS 2020", "brats2021"),
    (re.compile(r"^Brats1[789]_", re.I), "BraTS 2017-2019", "brats2021"),
    (re.compile(r"^BRATS_\d+$", re.I), "MSD Task01", "msd"),
)


def detect_scheme(case_id: str, *, edition: int | None = None) -> SchemeDetection:
    """The label scheme a case id's task prefix implies; never from label values.

    Args:
        case_id: e.g. ``BraTS-PED-00001-000``, ``BraTS-GLI-00005-100`` (time point ``1xx`` =
            post-treatment), ``BraTS-MEN-RT-0000-1``, ``BraTS2021_00000``, ``Brats18_CBICA_AAA_1``,
            ``BraTS20_Training_001``, ``BRATS_001`` (MSD).
        edition: the release year where it matters: 2023 reads BraTS-PED and BraTS-GLI ids in
            their 2023 schemes (``ped2023``, ``gli2023``); later years and ``None`` in the
            current releases' schemes.

    Returns:
        A :class:`SchemeDetection`; its ``note`` says so where a default was chosen (PED).

    Raises:
        ValueError: ``edition`` is not a year, or the id names no known task (the message names
            :data:`SCHEME_OPTION` and lists the scheme names). GoAT cases use GLI ids: state
            ``goat`` to score them as GoAT (their labels read the same as GLI's).
    """
    check_int("edition", edition, 2012, 2100, allow_none=True)
    cid = str(case_id)
    match = next(((task, name) for pattern, task, name in _PREFIXES if pattern.match(cid)), None)
    if match is None:
        raise ValueError(
            f"case id {cid!r} does not tell its label scheme (no known BraTS task prefix such as BraTS-GLI-, "
            f"BraTS-PED-, BraTS2021_, Brats18_ or MSD BRATS_); pass {SCHEME_OPTION}, one of {list(SCHEMES)}"
        )
    task, name = match
    if task == "PED":
        if edition is not None and edition <= 2023:
            return SchemeDetection(SCHEMES["ped2023"], task)
        note = (
            f"{cid}: BraTS-PED ids carried two label schemes under the same file names; read as 'ped2024' "
            f"(1 ET, 2 NET, 3 CC, 4 ED, the releases since 2024); for the 2023 release (GLI labels 1 NETC, "
            f"2 SNFH, 3 ET) state 'ped2023'"
        )
        return SchemeDetection(SCHEMES[name], task, note)
    if task == "GLI":
        time_point = _GLI_ID.match(cid)
        post = time_point is not None and len(time_point.group(1)) == 3 and time_point.group(1).startswith("1")
        if post:
            return SchemeDetection(SCHEMES["gli2024"], "GLI post-treatment")
        if edition is not None and edition <= 2023:
            return SchemeDetection(SCHEMES["gli2023"], task)
    return SchemeDetection(SCHEMES[name], task)


#: Per scheme, for the editions table: task, an example case id and the edition that detect_scheme
#: needs to pick it (None: the id alone; "stated": only when stated, the ids being GLI's).
TASKS: dict[str, tuple[str, str, int | str | None]] = {
    "brats2021": ("BraTS 2017-2021 glioma", "BraTS2021_00000, BraTS20_Training_001, Brats18_CBICA_AAA_1", None),
    "gli2023": ("GLI 2023 (pre-treatment)", "BraTS-GLI-00000-000", 2023),
    "gli2024": ("GLI 2024/2025 (pre- and post-treatment)", "BraTS-GLI-00005-100, BraTS-GLI-00000-000", None),
    "met2024": ("MET 2024/2025", "BraTS-MET-00000-000", None),
    "ped2023": ("PED 2023", "BraTS-PED-00000-000", 2023),
    "ped2024": ("PED 2024/2025 (default for BraTS-PED ids)", "BraTS-PED-00000-000", None),
    "men": ("MEN (pre-operative)", "BraTS-MEN-00000-000", None),
    "ssa": ("SSA", "BraTS-SSA-00000-000", None),
    "goat": ("GoAT", "BraTS-GLI-00000-000", "stated"),
    "men_rt": ("MEN-RT", "BraTS-MEN-RT-0000-1", None),
    "msd": ("MSD Task01 BrainTumour", "BRATS_001", None),
}


def _files_text(scheme: LabelScheme) -> str:
    if scheme.name == "msd":
        return f"`imagesTr/<case>.nii.gz` (4D: {', '.join(scheme.modalities)}), `labelsTr/<case>.nii.gz`"
    sep = "_" if scheme.modalities == _LEGACY_FILES or scheme.mask == "gtv" else "-"
    return ", ".join(f"`<case>{sep}{token}`" for token in scheme.modalities + (scheme.mask,))


def _today_text(scheme: LabelScheme) -> str:
    """What the reader does with a scheme (the editions table's last column)."""
    if scheme.is_canonical:
        return f"read (convention `{scheme.convention}`) into the canonical labels 1 NCR, 2 ED, 3 ET"
    internal = ", ".join(f"{i} {n}" for i, n in enumerate(scheme.internal, 1))
    text = (
        f"read into its internal labels {internal}; `io.write_label` writes its source values back "
        f"(header stamp `{scheme.name}`)"
    )
    if len(scheme.modalities) < len(_GLI_FILES):
        text += (
            f"; its cases hold {', '.join(scheme.modalities)} alone (`Case.available_modalities`; the other "
            f"image channels are zeros and a model that reads them is refused)"
        )
    return text


def editions_table() -> str:
    """The Markdown table of every scheme (``docs/editions.md`` holds it; a test compares)."""
    lines = [
        "| scheme | task | case id | files | labels | regions (source values) | detected | this version |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, scheme in SCHEMES.items():
        task, example, edition = TASKS[name]
        detected = {None: "from the id", "stated": "stated only"}.get(edition, f"edition={edition}")
        lines.append(
            f"| `{name}` | {task} | `{example}` | {_files_text(scheme)} | {scheme.labels_text()} | "
            f"{scheme.regions_text()} | {detected} | {_today_text(scheme)} |"
        )
    return "\n".join(lines)
