"""Strict JSON reading for the files the toolkit takes from users (``dataset.json``, metadata)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from brainseg_tf.io.errors import DataError, MissingFileError


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in strict JSON")


def _describe(kind: type) -> str:
    return {dict: "an object {...}", list: "a list [...]"}.get(kind, f"a {kind.__name__}")


def read_json(path: str | Path, *, expect: type | tuple[type, ...] = dict) -> Any:
    """Read a JSON file strictly: ``NaN``/``Infinity`` refused, the top level of type ``expect``.

    Args:
        path: the file.
        expect: type(s) the top-level value must have (``dict`` for an object, ``list``, ...).

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
        expected = " or ".join(_describe(t) for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise DataError(path, f"{path}: the top level is {_describe(type(value))}, expected {expected}")
    return value
