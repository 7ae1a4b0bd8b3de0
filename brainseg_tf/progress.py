"""Progress of long loops over cases: a bar in a terminal, plain periodic lines everywhere else.

A tqdm bar redraws with carriage returns, which a log file, ``nohup``, Kaggle's "Save & Run All" or
a notebook cell shows as one endless line or not at all. :func:`progress` keeps the bar for a
terminal and otherwise prints ``predict: 12/50 cases (24%) 0.80 cases/s ETA 0:00:47`` every
``interval`` seconds, plus a closing line for loops that printed any; short loops print nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["progress", "progress_line", "clock_text", "PROGRESS_SECONDS"]

T = TypeVar("T")
#: Seconds between two progress lines where output is not a terminal.
PROGRESS_SECONDS = 20.0


def clock_text(seconds: float) -> str:
    """``h:mm:ss`` of a number of seconds (negative as 0)."""
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(desc: str, done: int, total: int | None, elapsed: float, unit: str = "case") -> str:
    """``desc: done/total units (pct) rate units/s ETA h:mm:ss`` (``?`` where the total is unknown)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if total:
        eta = clock_text((total - done) / rate) if rate > 0 else "?"
        return f"{desc}: {done}/{total} {unit}s ({100 * done // total}%) {rate:.2f} {unit}s/s ETA {eta}"
    return f"{desc}: {done} {unit}s {rate:.2f} {unit}s/s elapsed {clock_text(elapsed)}"


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    unit: str = "case",
    total: int | None = None,
    disable: bool = False,
    leave: bool = True,
    interval: float = PROGRESS_SECONDS,
    stream: Any = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[T]:
    """Iterate ``iterable`` while showing progress (see the module docstring).

    Args:
        iterable: the items (cases, batches).
        desc: what is being done, first on each line (``"predict"``).
        unit: what one item is (``"case"``).
        total: the item count (default ``len(iterable)`` where it has one).
        disable: show nothing.
        leave: keep the terminal bar after the loop.
        interval: seconds between plain lines.
        stream: where to write lines (default: a tqdm bar on ``sys.stderr`` where it is a terminal,
            else plain lines on ``sys.stdout``, which a notebook shows as ordinary output, not red).
        clock: monotonic seconds (tests pass a fake one).
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if disable:
        yield from iterable
        return
    if stream is None and getattr(sys.stderr, "isatty", lambda: False)():
        from tqdm import tqdm

        yield from tqdm(iterable, desc=desc, unit=unit, total=total, leave=leave)
        return
    out = stream or sys.stdout
    start = last = clock()
    done, printed = 0, False
    for item in iterable:
        yield item
        done += 1
        now = clock()
        if now - last >= interval:
            print(progress_line(desc, done, total, now - start, unit), file=out, flush=True)
            last, printed = now, True
    if printed:
        print(f"{desc}: {done} {unit}s done in {clock_text(clock() - start)}", file=out, flush=True)
