"""The error type raised for bad input data."""

from __future__ import annotations

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
