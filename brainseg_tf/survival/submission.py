"""BraTS-style survival submissions: writing, reading and scoring a ``case_id, survival_days`` CSV."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brainseg_tf import atomic
from brainseg_tf.io.errors import DataError, MissingFileError
from brainseg_tf.survival.clinical import ClinicalTable, as_table, match_ids
from brainseg_tf.survival.stats import scores
from brainseg_tf.survival.tables import cell_error, parse_number

__all__ = ["write_predictions", "read_predictions", "evaluate_predictions"]


def write_predictions(case_ids: Sequence[str], days: Sequence[float], path: str | Path, *, header: bool = True) -> Path:
    """Write a BraTS-style submission: ``case_id, survival_days`` per line (header optional)."""
    lines = (["case_id,survival_days"] if header else []) + [f"{c},{float(d)!r}" for c, d in zip(case_ids, days)]
    return atomic.write_text(path, "\n".join(lines) + "\n")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_predictions(path: str | Path) -> list[tuple[str, float, int]]:
    """``(case_id, days, line)`` rows of a predictions CSV (two columns, header optional).

    Raises:
        MissingFileError: no such file.
        DataError: not two columns, an empty id, a duplicate, or days that are not a number >= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{path}: predictions file not found")
    reader = csv.reader(path.read_text(encoding="utf-8-sig").splitlines())
    out: list[tuple[str, float, int]] = []
    seen: dict[str, int] = {}
    columns = ("case_id", "survival_days")
    for i, cells in enumerate(reader):
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if len(cells) != 2:
            raise DataError(path, f"{path}: line {reader.line_num} has {len(cells)} fields, expected 2 (case id, days)")
        if i == 0 and not _is_number(cells[1]):
            columns = (cells[0], cells[1])
            continue
        cid, text = cells
        if not cid:
            raise cell_error(path, reader.line_num, None, columns[0], "empty case id")
        if cid in seen:
            raise cell_error(path, reader.line_num, cid, columns[0], f"duplicate of line {seen[cid]}")
        seen[cid] = reader.line_num
        days = parse_number(text, path, reader.line_num, cid, columns[1], upper=36500.0)
        if math.isnan(days):
            raise cell_error(path, reader.line_num, cid, columns[1], "missing prediction")
        out.append((cid, days, reader.line_num))
    return out


def evaluate_predictions(
    predictions: str | Path,
    clinical: str | Path | ClinicalTable,
    *,
    gtr_only: bool | None = None,
    tcia_by_number: bool = False,
) -> dict[str, Any]:
    """Score a predictions CSV against a clinical table, BraTS-style.

    Censored (``ALIVE``) and survival-less patients are not scored. ``gtr_only=None`` scores
    only GTR patients when the table records resection status (the BraTS rule), else all;
    the scores over all patients are reported beside it either way.

    Returns:
        ``{"scored": scores used for ranking, "all": scores over all patients, "gtr_only": bool,
        "not_scored": {reason: [ids]}, "missing": table ids with survival but no prediction}``.

    Raises:
        DataError: a prediction for a case id the table does not have (file, line and column
            named), or nothing to score.
    """
    table = as_table(clinical)
    preds = read_predictions(predictions)
    pairs = match_ids(table.ids, [c for c, _, _ in preds], tcia_by_number=tcia_by_number)
    records = table.by_id()
    path = Path(predictions)
    true, pred, resection = [], [], []
    not_scored: dict[str, list[str]] = {}
    for cid, days, line in preds:
        if cid not in pairs:
            raise cell_error(path, line, cid, "case_id", f"unknown case id: not in {table.path}")
        rec = records[pairs[cid]]
        if math.isnan(rec.survival_days):
            not_scored.setdefault("censored or no survival", []).append(cid)
            continue
        true.append(rec.survival_days)
        pred.append(days)
        resection.append(rec.resection)
    if not true:
        raise DataError(path, f"{path}: no prediction pairs with a patient of known survival in {table.path}")
    predicted = set(pairs.values())
    missing = [r.case_id for r in table.records if r.case_id not in predicted and not math.isnan(r.survival_days)]
    use_gtr = table.has_resection if gtr_only is None else bool(gtr_only)
    all_scores = scores(true, pred)
    scored = all_scores
    if use_gtr:
        keep = [i for i, r in enumerate(resection) if r == "GTR"]
        if not keep:
            raise DataError(path, f"{path}: no GTR patient to score (pass gtr_only=False to score all)")
        scored = scores([true[i] for i in keep], [pred[i] for i in keep])
    return {"scored": scored, "all": all_scores, "gtr_only": use_gtr, "not_scored": not_scored, "missing": missing}
