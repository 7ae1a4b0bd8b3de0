"""Argument checks, defined once: each raises ``ValueError`` naming the argument and the value.

Every public function, recipe and card field checks its user input with these, so the messages
read the same everywhere (``overlap must be a number in [0, 1), got 1.5``). Booleans are never
accepted as numbers (``True`` is an ``int`` in Python, never a size in this toolkit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "is_int",
    "is_number",
    "check_choice",
    "check_int",
    "check_number",
    "check_fraction",
    "check_int_sequence",
    "check_bool",
]


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers, False for booleans and everything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """True for finite-or-not real numbers (Python or NumPy), False for booleans."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_choice(arg: str, value: Any, choices: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``; ``ValueError`` otherwise."""
    if value not in tuple(choices):
        raise ValueError(f"{arg} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_int(
    arg: str, value: Any, minimum: int | None = 1, maximum: int | None = None, *, allow_none: bool = False
) -> Any:
    """Return ``value`` if it is an integer in ``[minimum, maximum]`` (either bound may be None).

    ``allow_none`` also accepts ``None`` (an optional size or count).
    """
    if value is None and allow_none:
        return None
    ok = is_int(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        raise ValueError(
            f"{arg} must be an integer{_range(minimum, maximum)}{' or None' if allow_none else ''}, got {value!r}"
        )
    return value


def check_number(
    arg: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    finite: bool = True,
) -> Any:
    """Return ``value`` if it is a (finite, unless ``finite=False``) number within the bounds."""
    ok = is_number(value) and not (finite and not math.isfinite(float(value)))
    if ok and minimum is not None:
        ok = value >= minimum if min_inclusive else value > minimum
    if ok and maximum is not None:
        ok = value <= maximum if max_inclusive else value < maximum
    if not ok:
        lo = "" if minimum is None else ("[" if min_inclusive else "(") + f"{minimum}"
        hi = "" if maximum is None else f"{maximum}" + ("]" if max_inclusive else ")")
        if lo and hi:
            where = f" in {lo}, {hi}"
        elif lo:
            where = f" {'>=' if min_inclusive else '>'} {minimum}"
        elif hi:
            where = f" {'<=' if max_inclusive else '<'} {maximum}"
        else:
            where = ""
        raise ValueError(f"{arg} must be a {'finite ' if finite else ''}number{where}, got {value!r}")
    return value


def check_fraction(arg: str, value: Any) -> Any:
    """Return ``value`` if ``0 <= value < 1`` (an overlap, a dropout rate)."""
    return check_number(arg, value, 0, 1, max_inclusive=False)


def check_int_sequence(
    arg: str, value: Any, length: int | None = None, minimum: int | None = 1, maximum: int | None = None
) -> tuple[int, ...]:
    """Return ``value`` as a tuple of integers in ``[minimum, maximum]`` (of ``length`` if given)."""
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if (
        items is None
        or isinstance(value, (str, bytes))
        or (length is not None and len(items) != length)
        or not all(is_int(v) and (minimum is None or v >= minimum) and (maximum is None or v <= maximum) for v in items)
    ):
        n = f"{length} " if length is not None else ""
        raise ValueError(f"{arg} must be {n}integers{_range(minimum, maximum)}, got {value!r}")
    return tuple(int(v) for v in items)


def check_bool(arg: str, value: Any) -> bool:
    """Return ``value`` if it is a boolean (``0``/``1`` are not accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{arg} must be true or false, got {value!r}")
    return bool(value)


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
