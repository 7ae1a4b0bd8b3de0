"""Label conventions: canonical labels, source conventions, conversions and region masks.

Canonical labels (used everywhere inside the library, see ``docs/conventions.md``):

====  =====  ============================================
0     BG     background and healthy tissue
1     NCR    necrotic / non-enhancing tumour core
2     ED     peritumoral edema (SNFH)
3     ET     enhancing tumour
====  =====  ============================================

Regions: WT = {1, 2, 3}, TC = {1, 3}, ET = {3}, channel order ``(WT, TC, ET)``.

Source conventions (value in the file for NCR, ED, ET):

* ``"brats"`` -- BraTS 2017-2021 (1, 2, 4); label 3 is unused and is an error.
* ``"brats2023"`` -- BraTS 2023+ GLI (1, 2, 3).
* ``"brats2024_post"`` -- post-treatment GLI (1, 2, 3) plus 4 = resection cavity, which is not
  tumour (not in WT/TC) and reads as canonical background.
* ``"msd"`` -- Medical Segmentation Decathlon Task01 (2, 1, 3): 1 edema, 2 non-enhancing,
  3 enhancing. Not the same as BraTS 2023's 1/2/3.
* ``"canonical"`` -- this library's own (1, 2, 3).

Each task's full label scheme (its own labels and regions) is data in :mod:`brainseg_tf.schemes`;
:func:`scheme_for_convention` names the scheme a convention reads. A label file may record a scheme
instead of a convention (header stamp ``brainseg_tf labels=ped2024``, written by
:func:`brainseg_tf.io.write_label`): a scheme whose labels the canonical ones hold reads through its
convention, any other (GLI/MET 2024 with RC, PED 2024) into that scheme's internal labels
(:func:`get_reading`, :func:`read_label_file`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainseg_tf.arrays import region_mask
from brainseg_tf.conventions import (
    CLASS_NAMES,
    FOREGROUND_CLASSES,
    MODALITIES,
    REGION_LABELS,
    REGIONS,
)
from brainseg_tf.io.errors import DataError
from brainseg_tf.io.nifti import load_nifti, stamped_convention
from brainseg_tf.schemes import LabelScheme, get_scheme

__all__ = [
    "CLASS_NAMES",
    "FOREGROUND_CLASSES",
    "MODALITIES",
    "REGION_LABELS",
    "REGIONS",
    "CONVENTIONS",
    "Convention",
    "get_convention",
    "scheme_for_convention",
    "label_values",
    "to_canonical",
    "from_canonical",
    "region_masks",
    "regions_to_labels",
    "resolve_convention",
    "LabelReading",
    "get_reading",
    "ORIGINS",
    "LabelFile",
    "read_label_file",
    "load_labels",
]


@dataclass(frozen=True)
class Convention:
    """A source label convention: ``to_canonical[v]`` is the canonical label of file value ``v``."""

    name: str
    to_canonical: dict[int, int]
    description: str

    @property
    def allowed(self) -> tuple[int, ...]:
        return tuple(sorted(self.to_canonical))

    @property
    def from_canonical(self) -> dict[int, int]:
        """Canonical label -> file value (the first source value mapping to each canonical one)."""
        inverse: dict[int, int] = {}
        for src, canon in sorted(self.to_canonical.items()):
            inverse.setdefault(canon, src)
        return inverse


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention("canonical", {0: 0, 1: 1, 2: 2, 3: 3}, "brainseg_tf canonical: 1 NCR, 2 ED, 3 ET"),
        Convention("brats", {0: 0, 1: 1, 2: 2, 4: 3}, "BraTS 2017-2021: 1 NCR/NET, 2 ED, 4 ET (3 unused)"),
        Convention("brats2023", {0: 0, 1: 1, 2: 2, 3: 3}, "BraTS 2023+ GLI: 1 NCR, 2 ED, 3 ET"),
        Convention(
            "brats2024_post",
            {0: 0, 1: 1, 2: 2, 3: 3, 4: 0},
            "BraTS 2024+ post-treatment GLI: 1 NETC, 2 SNFH, 3 ET, 4 RC (read as background)",
        ),
        Convention("msd", {0: 0, 1: 2, 2: 1, 3: 3}, "MSD Task01: 1 edema, 2 non-enhancing, 3 enhancing"),
    )
}

_ALIASES = {
    "brats2017": "brats",
    "brats2018": "brats",
    "brats2019": "brats",
    "brats2020": "brats",
    "brats2021": "brats",
    "gli": "brats2023",
    "brats2024": "brats2023",
    "msd_task01": "msd",
}


def get_convention(name: str) -> Convention:
    """Return a :class:`Convention` by name or alias (``brats2020`` -> ``brats``).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in CONVENTIONS:
        known = sorted(set(CONVENTIONS) | set(_ALIASES))
        raise ValueError(f"convention={name!r} is unknown; expected one of {known}")
    return CONVENTIONS[key]


# Convention -> the label scheme whose files it reads. "brats2024_post" reads GLI 2024 files but
# drops the resection cavity (4 -> background), so it reads the scheme only in part.
_CONVENTION_SCHEME = {
    "canonical": "gli2023",
    "brats": "brats2021",
    "brats2023": "gli2023",
    "brats2024_post": "gli2024",
    "msd": "msd",
}


def scheme_for_convention(name: str) -> LabelScheme:
    """The :class:`~brainseg_tf.schemes.LabelScheme` whose files a convention (or alias) reads.

    ``canonical`` and ``brats2023`` -> ``gli2023``, ``brats`` -> ``brats2021``, ``msd`` -> ``msd``,
    ``brats2024_post`` -> ``gli2024`` (read with the resection cavity as background).

    Raises:
        ValueError: unknown convention (the message lists the known ones).
    """
    return get_scheme(_CONVENTION_SCHEME[get_convention(name).name])


def _lookup_table(mapping: dict[int, int], size: int = 256) -> np.ndarray:
    lut = np.full(size, 255, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


def _integer_view(label: np.ndarray, source: str | Path | None) -> np.ndarray:
    """Labels as a non-negative integer array (float files with integral values are accepted)."""
    arr = np.asarray(label)
    where = f"{source}: " if source is not None else ""
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise DataError(source, f"{where}label map contains NaN or Inf values")
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            raise DataError(source, f"{where}label map has non-integer values (is this an image, not a mask?)")
        arr = rounded.astype(np.int64)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind not in "iu":
        raise DataError(source, f"{where}label map has unsupported dtype {arr.dtype}")
    return arr


def label_values(label: np.ndarray, source: str | Path | None = None) -> dict[int, int]:
    """Voxel count of every value present in an integer label map (fast: bincount, not unique).

    ``source`` (the file) is named in the error for a map that is not integral.
    """
    arr = _integer_view(label, source)
    if arr.size == 0:
        return {}
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi < 65536:
        counts = np.bincount(arr.ravel(order="K"), minlength=hi + 1)
        return {int(v): int(c) for v, c in enumerate(counts) if c}
    values, counts = np.unique(arr, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def to_canonical(label: np.ndarray, convention: str, source: str | Path | None = None) -> np.ndarray:
    """Convert a label map from a source convention to canonical uint8 labels.

    Args:
        label: integer (or integral float) array of any shape, values in the source convention.
        convention: source convention name (see module docstring).
        source: file the labels came from, named in error messages.

    Returns:
        uint8 array of the same shape with values in {0, 1, 2, 3}.

    Raises:
        DataError: values outside the convention (e.g. a 3 in a BraTS 2020 mask), with the file
            named and the offending values and voxel counts listed.
    """
    conv = get_convention(convention)
    arr = _integer_view(label, source)
    present = label_values(arr, source)
    bad = {v: n for v, n in present.items() if v not in conv.to_canonical}
    if bad:
        where = f"{source}: " if source is not None else ""
        listed = ", ".join(f"{v} ({n} voxels)" for v, n in sorted(bad.items()))
        raise DataError(
            source,
            f"{where}label values {listed} are not in the {conv.name!r} convention "
            f"(allowed {list(conv.allowed)}: {conv.description})",
        )
    return _lookup_table(conv.to_canonical)[arr]


def from_canonical(label: np.ndarray, convention: str) -> np.ndarray:
    """Convert canonical labels (0-3) to a target convention; returns uint8.

    Raises:
        DataError: ``label`` holds values outside 0-3.
    """
    conv = get_convention(convention)
    arr = _integer_view(label, None)
    present = label_values(arr)
    bad = sorted(v for v in present if v not in (0, 1, 2, 3))
    if bad:
        raise DataError(None, f"canonical label map holds values {bad}; expected 0 BG, 1 NCR, 2 ED, 3 ET")
    return _lookup_table(conv.from_canonical)[arr]


def region_masks(label: np.ndarray) -> np.ndarray:
    """Boolean region masks ``(..., 3)`` in the order (WT, TC, ET) from canonical labels ``(...)``."""
    arr = np.asarray(label)
    return np.stack([region_mask(arr, r) for r in REGIONS], axis=-1)


def regions_to_labels(regions: np.ndarray) -> np.ndarray:
    """Canonical labels from nested region masks ``(..., 3)`` (WT, TC, ET) -> ``(...)`` uint8.

    ET wins over TC, TC over WT: ET -> 3, TC without ET -> 1 (NCR), WT without TC -> 2 (ED).
    """
    reg = np.asarray(regions).astype(bool)
    out = np.zeros(reg.shape[:-1], dtype=np.uint8)
    out[reg[..., 0]] = 2
    out[reg[..., 1]] = 1
    out[reg[..., 2]] = 3
    return out


# ----------------------------------------------------------------------------- label files


def _reading(values: Iterable[int], conv: Convention) -> str:
    return " ".join(f"{v}={CLASS_NAMES[conv.to_canonical[v]]}" for v in values if v)


def resolve_convention(
    values: Iterable[int],
    source: str | Path,
    *,
    explicit: str | None = None,
    recorded: str | None = None,
    flag: str = "--pred-convention",
) -> str:
    """The label convention of a label map, never guessed where it matters.

    In order: ``explicit`` (a flag), ``recorded`` (the dataset's layout, the file's header stamp,
    ``predictions.json``); else the values present decide only when every convention that allows
    them reads them the same way (all background, or 0/3 only, ...).

    Args:
        values: label values present in the file.
        source: the file, named in errors.
        explicit, recorded: convention names or ``None``.
        flag: what the user passes to name the convention, quoted in the error.

    Returns:
        The convention's name.

    Raises:
        DataError: the values fit no convention, or fit several that read them differently
            (e.g. 1/2 are NCR/ED in BraTS 2023 but ED/NCR in MSD Task01); names the flag.
    """
    if explicit is not None:
        name = get_convention(explicit).name
        if recorded is not None and get_convention(recorded).name != name:
            warnings.warn(f"{source}: records labels as {recorded!r}; read as {name!r} as {flag} says", stacklevel=2)
        return name
    if recorded is not None:
        try:
            return get_convention(recorded).name
        except ValueError as exc:
            raise DataError(source, f"{source}: recorded label convention: {exc}") from exc
    present = sorted({int(v) for v in values})
    readings: dict[tuple[int, ...], list[str]] = {}
    for name, conv in CONVENTIONS.items():
        if set(present) <= set(conv.to_canonical):
            readings.setdefault(tuple(conv.to_canonical[v] for v in present), []).append(name)
    if len(readings) == 1:
        return next(iter(readings.values()))[0]
    if not readings:
        raise DataError(source, f"{source}: label values {present} fit no known convention {sorted(CONVENTIONS)}")
    ways = "; ".join(f"{'/'.join(names)}: {_reading(present, CONVENTIONS[names[0]])}" for names in readings.values())
    raise DataError(
        source,
        f"{source}: label values {present} mean different things in different conventions "
        f"({ways}) and the file does not record its convention; pass {flag} "
        f"(one of {', '.join(n for n in CONVENTIONS)})",
    )


def _stated(name: str) -> str:
    return str(name).strip().lower()


@dataclass(frozen=True)
class LabelReading:
    """How the values of a label file are read: through a convention into the canonical labels, or
    through a scheme the canonical labels cannot hold (GLI/MET 2024 with RC, PED 2024) into that
    scheme's internal labels (:attr:`brainseg_tf.schemes.LabelScheme.internal`).

    Attributes:
        name: the convention (``"brats"``, ``"msd"``...) or the non-canonical scheme (``"ped2024"``).
        scheme: that non-canonical :class:`~brainseg_tf.schemes.LabelScheme`, or ``None``: canonical
            labels (0 BG, 1 NCR, 2 ED, 3 ET) through the convention ``name``.
        stated: the name as it was given (a canonical scheme such as ``"men"`` reads through its
            convention ``"brats2023"``; ``stated`` keeps ``"men"``).
    """

    name: str
    scheme: LabelScheme | None = None
    stated: str = ""

    @property
    def allowed(self) -> tuple[int, ...]:
        """The values a file read this way may hold, ascending."""
        return self.scheme.values if self.scheme is not None else CONVENTIONS[self.name].allowed

    @property
    def description(self) -> str:
        return self.scheme.description if self.scheme is not None else CONVENTIONS[self.name].description

    def read(self, label: np.ndarray, source: str | Path | None = None) -> np.ndarray:
        """uint8 labels ``(...)``: canonical (convention) or the scheme's internal labels.

        Raises:
            DataError: values outside the convention or scheme, naming ``source``, the values and
                their voxel counts.
        """
        if self.scheme is None:
            return to_canonical(label, self.name, source=source)
        arr = _integer_view(label, source)
        unknown = _outside(label_values(arr, source), self.allowed)
        if unknown:
            where = f"{source}: " if source is not None else ""
            raise DataError(
                source,
                f"{where}label values {unknown} are not in the {self.name!r} scheme "
                f"(allowed {list(self.allowed)}: {self.description})",
            )
        return self.scheme.to_internal(arr)


def _outside(counts: dict[int, int], allowed: Iterable[int]) -> str:
    """``"5 (12 voxels), 7 (1 voxels)"`` for the values of ``counts`` not in ``allowed`` ("" if none)."""
    allowed = set(allowed)
    return ", ".join(f"{v} ({n} voxels)" for v, n in sorted(counts.items()) if v not in allowed)


def get_reading(name: str | LabelScheme) -> LabelReading:
    """How a recorded or stated label name reads a file: a convention, or a scheme.

    A convention name or alias (:data:`CONVENTIONS`; ``brats2021`` and ``msd`` are both) reads into
    the canonical labels; a scheme (:func:`brainseg_tf.schemes.get_scheme`) whose internal labels are
    the canonical ones reads through its convention (``men`` -> ``brats2023``); any other scheme
    (``gli2024``, ``met2024``, ``ped2024``, ``men_rt``) reads into its own internal labels.

    Raises:
        ValueError: neither a convention nor a scheme (the message is :func:`get_convention`'s).
    """
    if isinstance(name, LabelScheme):
        scheme = name
    else:
        try:
            return LabelReading(get_convention(name).name, None, _stated(name))
        except ValueError as exc:
            unknown = exc  # the conventions' message, as before schemes could be named
        try:
            scheme = get_scheme(name)
        except ValueError:
            raise unknown from None
    if scheme.is_canonical and scheme.convention is not None:
        return LabelReading(get_convention(scheme.convention).name, None, scheme.name)
    return LabelReading(scheme.name, scheme, scheme.name)


#: Where a :class:`LabelFile`'s reading came from.
ORIGINS: tuple[str, ...] = ("explicit", "recorded", "stamp", "fallback", "values")


@dataclass
class LabelFile:
    """A label file read into library labels.

    Attributes:
        labels: ``(X, Y, Z)`` uint8: canonical labels (0 BG, 1 NCR, 2 ED, 3 ET), or the internal
            labels of ``reading.scheme`` where it is set.
        affine: ``(4, 4)`` voxel-to-world affine.
        spacing: voxel size in mm.
        reading: how the values were read (:class:`LabelReading`).
        origin: where the reading came from (:data:`ORIGINS`): a flag, the record the caller passed
            (dataset layout, ``predictions.json``), the header stamp, the caller's ``fallback`` or
            the values alone (only where every convention reads them alike).
    """

    labels: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    reading: LabelReading
    origin: str


def read_label_file(
    path: str | Path,
    recorded: str | None = None,
    *,
    explicit: str | None = None,
    fallback: str | None = None,
    fallback_text: str | None = None,
    flag: str = "--pred-convention",
    check: Callable[[LabelReading, str], None] | None = None,
) -> LabelFile:
    """Read a label file in the convention or scheme that is stated or recorded for it; never guessed.

    In order: ``explicit`` (a flag); ``recorded`` (the dataset's layout, ``predictions.json``);
    the header stamp ``brainseg_tf labels=<name>`` (a convention, or a scheme such as ``ped2024``:
    :func:`get_reading`); ``fallback`` (e.g. the reference's scheme for a prediction that records
    nothing); else the values present decide only where every convention reads them alike
    (:func:`resolve_convention`).

    Args:
        path: the NIfTI file; a ``(X, Y, Z, 1)`` volume is read as ``(X, Y, Z)``.
        recorded, explicit, fallback: convention or scheme names, or ``None``.
        fallback_text: what ``fallback`` is, for the refusal (default ``"the scheme 'x'"``).
        flag: what the user passes to state the labels, quoted in errors.
        check: called with the reading and its origin once they are known, before the values are
            read; it raises to refuse the file (e.g. a prediction in another scheme than its reference).

    Returns:
        A :class:`LabelFile`.

    Raises:
        DataError: the values are outside the reading (for a ``fallback`` reading: the file records
            no labels and its values contradict ``fallback``; names the values and ``flag``), or
            fit several conventions that read them differently (names ``flag``), or an unknown
            recorded name.
    """
    path = Path(path)
    volume = load_nifti(path)
    data = np.asarray(volume.data)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    record, origin = (recorded, "recorded") if recorded is not None else (stamped_convention(volume.header), "stamp")
    if explicit is not None:
        reading, origin = get_reading(explicit), "explicit"
        if record is not None:
            try:
                differs = get_reading(record).name != reading.name
            except ValueError:
                differs = True
            if differs:
                warnings.warn(
                    f"{path}: records labels as {record!r}; read as {reading.name!r} as {flag} says", stacklevel=2
                )
    elif record is not None:
        try:
            reading = get_reading(record)
        except ValueError as exc:
            raise DataError(path, f"{path}: recorded label convention: {exc}") from exc
    elif fallback is not None:
        reading, origin = get_reading(fallback), "fallback"
        if check is not None:
            check(reading, origin)
        unknown = _outside(label_values(data, source=path), reading.allowed)
        if unknown:
            what = fallback_text or f"the {reading.name!r} {'scheme' if reading.scheme else 'convention'}"
            raise DataError(
                path,
                f"{path}: records no label scheme, so it is read in {what}; its label values {unknown} "
                f"contradict it (allowed {list(reading.allowed)}: {reading.description}); pass {flag} "
                f"to state its labels",
            )
    else:
        name = resolve_convention(label_values(data, source=path), path, flag=flag)
        reading, origin = LabelReading(name, None, name), "values"
    if check is not None and origin != "fallback":
        check(reading, origin)
    labels = reading.read(data, path)
    return LabelFile(labels, np.asarray(volume.affine), tuple(float(s) for s in volume.spacing), reading, origin)


def load_labels(
    path: Path,
    convention: str | None,
    *,
    explicit: str | None = None,
    fallback: str | None = None,
    flag: str = "--pred-convention",
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Labels ``(X, Y, Z)`` uint8, affine and spacing of a label file (:func:`read_label_file`).

    ``convention`` is the recorded one (layout or metadata; ``None``: the header stamp, else
    ``fallback`` (e.g. the convention of the case the file belongs to), else
    :func:`resolve_convention` decides or raises naming ``flag``); ``explicit`` overrides it. Each
    may name a convention or a scheme: a file read in a scheme the canonical labels cannot hold
    (a stamp ``ped2024``) comes back in that scheme's internal labels (:func:`get_reading`).
    """
    read = read_label_file(path, convention, explicit=explicit, fallback=fallback, flag=flag)
    return read.labels, read.affine, read.spacing
