"""The error type raised for bad input data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DataError(ValueError):
    """Bad input data: the message names the file (or folder) and the problem.

    Attributes:
        path: the offending file or folder, or ``None`` where there is none.
    """

    def __init__(self, path: str | Path | None, message: str):
        self.path = None if path is None else Path(path)
        super().__init__(message)


class MissingFileError(DataError, FileNotFoundError):
    """A file or folder that should exist does not (also a ``FileNotFoundError``)."""


class UnknownCaseError(DataError, KeyError):
    """A case id that is not in the dataset (also a ``KeyError``, for lookups by id)."""

    __str__ = DataError.__str__  # KeyError's would quote the message


def refuse_missing_modalities(
    where: str | Path | None,
    case_id: str,
    has: Sequence[str],
    modalities: Sequence[str],
    what: str = "the model",
    *,
    note: str = "",
) -> None:
    """Refuse case ``case_id`` (found at ``where``) that has no image of one of ``modalities``.

    Args:
        where: the case's folder or file, or the cache holding it (named first in the message).
        has: the modalities the case has (canonical names).
        modalities: the ones ``what`` uses.
        note: appended to the message (what the case's scheme ships, how absent channels are stored).

    Raises:
        DataError: ``<where>: case '<id>' has no <missing> image: <what> uses ..., this case has ...<note>``.
    """
    missing = [m for m in modalities if m not in has]
    if missing:
        prefix = "" if where is None else f"{where}: "
        raise DataError(
            where,
            f"{prefix}case {case_id!r} has no {', '.join(missing)} image: {what} uses {', '.join(modalities)}, "
            f"this case has {', '.join(has) or 'no image'}{note}",
        )
