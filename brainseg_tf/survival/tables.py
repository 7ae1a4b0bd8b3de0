"""CSV tables of the survival task read strictly: every error names the file, the line and the column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from brainseg_tf.io.errors import DataError, MissingFileError

__all__ = ["MISSING", "read_rows", "cell_error", "parse_number"]

#: Cell texts that mean "no value" (compared lower-case, after stripping).
MISSING = frozenset({"", "na", "n/a", "nan", "none", "unknown"})


def read_rows(path: str | Path) -> tuple[Path, list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line, cells)`` rows of a CSV file; blank lines skipped, cells stripped.

    Raises:
        MissingFileError: no such file.
        DataError: not UTF-8, no header, or a row with another number of fields than the header.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"{path}: not UTF-8 text ({exc})") from exc
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        cells = [c.strip() for c in cells]
        if header is None:
            header = cells
            continue
        if len(cells) != len(header):
            raise DataError(
                path,
                f"{path}: line {reader.line_num} has {len(cells)} fields, the header "
                f"{len(header)} ({', '.join(header)})",
            )
        rows.append((reader.line_num, cells))
    if header is None:
        raise DataError(path, f"{path}: empty table (no header line)")
    return path, header, rows


def cell_error(path: Path | None, line: int, case_id: str | None, column: str, problem: str) -> DataError:
    """A :class:`DataError` for one cell: ``<path>: line N (case 'x'), column 'c': problem``."""
    who = f" (case {case_id!r})" if case_id else ""
    return DataError(path, f"{path}: line {line}{who}, column {column!r}: {problem}")


def parse_number(text: str, path: Path, line: int, case_id: str, column: str, *, upper: float) -> float:
    """A number in ``[0, upper]`` from a cell; NaN for an empty or "NA"-like cell (:data:`MISSING`).

    Raises:
        DataError: not a number, or outside ``[0, upper]`` (see :func:`cell_error`).
    """
    if text.strip().lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise cell_error(path, line, case_id, column, f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or value > upper:
        raise cell_error(path, line, case_id, column, f"{text!r} is outside 0..{upper:g}")
    return value
