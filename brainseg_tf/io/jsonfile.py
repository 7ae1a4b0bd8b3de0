"""Strict JSON reading for the files the toolkit takes from users (``dataset.json``, metadata)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from brainseg_tf.io.errors import DataError, MissingFileError


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in strict JSON")


def read_json(path: str | Path, *, expect: type = dict) -> Any:
    """Read a JSON file strictly: ``NaN``/``Infinity`` refused, the top level of type ``expect``.

    Args:
        path: the file.
        expect: type the top-level value must have (``dict`` for an object, ``list``, ...).

    Raises:
        MissingFileError: the file does not exist.
        DataError: not UTF-8, not valid JSON, a ``NaN``/``Infinity`` constant, or a top level of
            another type; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{path}: file not found")
    try:
        value = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise DataError(path, f"{path}: not UTF-8 text ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(path, f"{path}: not valid JSON ({exc})") from exc
    except ValueError as exc:  # from _refuse_constant
        raise DataError(path, f"{path}: {exc}") from exc
    if not isinstance(value, expect):
        names = {dict: "an object {...}", list: "a list [...]"}
        raise DataError(path, f"{path}: the top level is {names.get(type(value), type(value).__name__)}, "
                              f"expected {names.get(expect, expect.__name__)}")
    return value
