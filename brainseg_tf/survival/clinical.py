"""BraTS clinical tables (age, survival, resection status) and pairing their ids with case ids."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from brainseg_tf.io.errors import DataError
from brainseg_tf.survival.tables import MISSING, cell_error, parse_number, read_rows

__all__ = [
    "RESECTIONS",
    "CLINICAL_FEATURES",
    "ClinicalRecord",
    "ClinicalTable",
    "read_clinical",
    "as_table",
    "match_ids",
    "clinical_values",
]

RESECTIONS: tuple[str, ...] = ("GTR", "STR", "NA")  # NA: not available (also an empty cell)
#: Model inputs from the clinical table: age in years and one-hot resection (NA is neither).
CLINICAL_FEATURES: tuple[str, ...] = ("age", "resection_gtr", "resection_str")

_ID_COLUMNS = re.compile(r"^(brats\d{2,4}_?id|case_?id|subject_?id|id)$", re.IGNORECASE)
_SURVIVAL_COLUMNS = ("survival_days", "survival")
_RESECTION_COLUMNS = ("extent_of_resection", "resectionstatus", "resection_status", "resection")
_ALIVE = re.compile(r"^alive(?:\s*\(\s*(\d+(?:\.\d*)?)\s*days?\s*later\s*\))?$", re.IGNORECASE)
_YEAR_PREFIX = re.compile(r"^brats\d{2}_", re.IGNORECASE)
_TCIA_2018 = re.compile(r"^tcia\d{2}_(\d+_\d+)$")


@dataclass(frozen=True)
class ClinicalRecord:
    """One patient of a clinical table.

    Attributes:
        case_id: the table's identifier (e.g. ``Brats17_CBICA_ABM_1``).
        age: years; NaN when the cell is empty.
        survival_days: overall survival in days; NaN when missing or censored.
        alive_days: for a censored patient (``ALIVE (361 days later)``), the follow-up in days
            (NaN when not given); NaN otherwise.
        resection: ``"GTR"``, ``"STR"`` or ``"NA"`` (not available, also an empty cell).
        line: line of the file (the header is line 1).
        censored: the survival cell says ``ALIVE``.
    """

    case_id: str
    age: float
    survival_days: float
    alive_days: float
    resection: str
    line: int
    censored: bool = False


@dataclass
class ClinicalTable:
    """The records of a clinical table plus where they came from.

    ``format`` is ``"brats2020"`` (``Brats20ID, Age, Survival_days, Extent_of_Resection``),
    ``"brats2018"`` (2018/2019: ``BraTS18ID, Age, Survival, ResectionStatus``), ``"brats2017"``
    (``Brats17ID, Age, Survival``) or ``"validation"`` (no survival column).
    """

    path: Path | None
    format: str
    records: list[ClinicalRecord]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        """The table's case ids, in table order."""
        return [r.case_id for r in self.records]

    def by_id(self) -> dict[str, ClinicalRecord]:
        """Table id -> record."""
        return {r.case_id: r for r in self.records}

    @property
    def has_resection(self) -> bool:
        """Whether any patient has a known resection status."""
        return any(r.resection != "NA" for r in self.records)


def _find_column(header: list[str], names: Iterable[str]) -> int | None:
    lower = [h.lower() for h in header]
    for name in names:
        if name in lower:
            return lower.index(name)
    return None


@dataclass(frozen=True)
class _Columns:
    """Where a clinical table keeps each field (``None``: no such column) and its format."""

    format: str
    case_id: int
    age: int
    survival: int | None
    resection: int | None


def _columns(path: Path, header: list[str]) -> _Columns:
    id_col = next((i for i, h in enumerate(header) if _ID_COLUMNS.match(h)), None)
    age_col = _find_column(header, ("age",))
    for col, what in ((id_col, "case id column (e.g. Brats20ID, BraTS18ID, Brats17ID)"), (age_col, "'Age' column")):
        if col is None:
            raise DataError(path, f"{path}: header {header} has no {what}")
    surv_col = _find_column(header, _SURVIVAL_COLUMNS)
    res_col = _find_column(header, _RESECTION_COLUMNS)
    if surv_col is None:
        fmt = "validation"
    elif header[surv_col].lower() == "survival_days":
        fmt = "brats2020"
    else:
        fmt = "brats2018" if res_col is not None else "brats2017"
    return _Columns(fmt, id_col, age_col, surv_col, res_col)


def _record(path: Path, header: list[str], cols: _Columns, line: int, cells: list[str]) -> ClinicalRecord:
    """One row of a clinical table (its case id already checked)."""
    cid = cells[cols.case_id]
    age = parse_number(cells[cols.age], path, line, cid, header[cols.age], upper=130.0)
    days = alive = math.nan
    censored = False
    if cols.survival is not None:
        text = cells[cols.survival]
        alive_match = _ALIVE.match(text)
        if alive_match:
            censored = True
            alive = float(alive_match.group(1)) if alive_match.group(1) else math.nan
        else:
            days = parse_number(text, path, line, cid, header[cols.survival], upper=36500.0)
    resection = "NA"
    if cols.resection is not None:
        value = cells[cols.resection].upper()
        if value.lower() in MISSING:
            value = "NA"
        if value not in RESECTIONS:
            problem = f"{cells[cols.resection]!r} is not a resection status (GTR, STR, NA or empty)"
            raise cell_error(path, line, cid, header[cols.resection], problem)
        resection = value
    return ClinicalRecord(cid, age, days, alive, resection, line, censored)


def read_clinical(path: str | Path) -> ClinicalTable:
    """Read a BraTS clinical table: 2020 ``survival_info.csv``, 2018/2019 ``survival_data.csv``,
    the 2017 table, or a validation table without survival (format detected from the header).

    Cells: ``Age`` in years; survival in days, ``ALIVE (N days later)`` (censored) or empty;
    resection ``GTR``, ``STR``, ``NA`` or empty (unknown). Column names are matched
    case-insensitively.

    Raises:
        MissingFileError: no such file.
        DataError: a missing id or age column, an empty or duplicate case id, a non-numeric or
            out-of-range age or survival, an unknown resection status, a ragged row. The
            message names the file, the line and the column.
    """
    path, header, rows = read_rows(path)
    cols = _columns(path, header)
    records: list[ClinicalRecord] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        cid = cells[cols.case_id]
        if not cid or any(ch.isspace() for ch in cid):
            raise cell_error(path, line, None, header[cols.case_id], f"{cid!r} is not a case id")
        if cid in seen:
            raise cell_error(path, line, cid, header[cols.case_id], f"duplicate of line {seen[cid]}")
        seen[cid] = line
        records.append(_record(path, header, cols, line, cells))
    return ClinicalTable(path, cols.format, records)


def as_table(clinical: str | Path | ClinicalTable) -> ClinicalTable:
    """``clinical`` itself when it is a table, else :func:`read_clinical` of the path."""
    return clinical if isinstance(clinical, ClinicalTable) else read_clinical(clinical)


def _id_core(case_id: str) -> str:
    return _YEAR_PREFIX.sub("", case_id).lower()


def match_ids(table_ids: Iterable[str], case_ids: Iterable[str], *, tcia_by_number: bool = False) -> dict[str, str]:
    """Pair case ids (folders, label files) with clinical-table ids.

    Exact ids pair first; then ids equal after dropping the edition prefix (``Brats17_``,
    ``Brats18_``, ``BraTS19_``, case-insensitive): ``Brats17_CBICA_ABM_1`` is the case folder
    ``Brats18_CBICA_ABM_1``, ``Brats17_2013_11_1`` is ``Brats18_2013_11_1``. The 2017 TCIA ids
    (``Brats17_TCIA_201_1``) drop the institution number of the 2018 ids
    (``Brats18_TCIA01_201_1``); with ``tcia_by_number`` they pair by the trailing number when
    exactly one case has it (plausible but unverified, hence opt-in).

    Returns:
        ``{case_id: table_id}`` for the cases that pair; the others are left out.

    Raises:
        ValueError: two cases pair with one table id.
    """
    table_ids = list(table_ids)
    exact = set(table_ids)
    by_core: dict[str, str] = {}
    for tid in table_ids:
        by_core.setdefault(_id_core(tid), tid)
    out: dict[str, str] = {}
    tcia: dict[str, list[str]] = {}
    for cid in case_ids:
        if cid in exact:
            out[cid] = cid
        elif _id_core(cid) in by_core:
            out[cid] = by_core[_id_core(cid)]
        elif tcia_by_number and (m := _TCIA_2018.match(_id_core(cid))):
            tcia.setdefault(f"tcia_{m.group(1)}", []).append(cid)
    for core, cids in tcia.items():
        if len(cids) == 1 and core in by_core:
            out[cids[0]] = by_core[core]
    used: dict[str, str] = {}
    for cid, tid in sorted(out.items()):
        if tid in used:
            raise ValueError(f"cases {used[tid]!r} and {cid!r} both pair with the table id {tid!r}")
        used[tid] = cid
    return out


def clinical_values(age: float, resection: str | None) -> dict[str, float]:
    """The :data:`CLINICAL_FEATURES` of one patient (``resection`` None means unknown, as ``"NA"``).

    Raises:
        ValueError: an unknown resection status.
    """
    res = (resection or "NA").upper()
    if res not in RESECTIONS:
        raise ValueError(f"resection={resection!r}; expected one of {list(RESECTIONS)} or None")
    return {"age": float(age), "resection_gtr": float(res == "GTR"), "resection_str": float(res == "STR")}
