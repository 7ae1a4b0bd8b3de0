"""Progress of loops over cases where output is not a terminal: periodic plain lines."""

from __future__ import annotations

import io
import re

from brainseg_tf.progress import progress, progress_line

LINE = re.compile(r"^predict: \d+/\d+ cases \(\d+%\) \d+\.\d\d cases/s ETA \d+:\d\d:\d\d$")


def test_progress_line_values():
    assert progress_line("predict", 12, 50, 15.0) == "predict: 12/50 cases (24%) 0.80 cases/s ETA 0:00:48"
    assert progress_line("synth", 3, None, 6.0) == "synth: 3 cases 0.50 cases/s elapsed 0:00:06"


def test_lines_every_interval_and_a_closing_line():
    now = [0.0]
    out = io.StringIO()

    def tick():
        now[0] += 7.0  # 7 s a case
        return now[0]

    items = list(progress(range(10), desc="predict", interval=20.0, stream=out, clock=lambda: now[0]))
    assert items == list(range(10)) and out.getvalue() == ""  # the fake clock never moved
    seen = []
    for item in progress(range(10), desc="predict", interval=20.0, stream=out, clock=tick):
        seen.append(item)
    lines = out.getvalue().splitlines()
    assert seen == list(range(10))
    assert all(LINE.match(ln) for ln in lines[:-1]) and len(lines) == 4, lines
    assert lines[0].startswith("predict: 3/10 cases (30%)")  # 21 s after the start
    assert re.match(r"^predict: 10 cases done in 0:01:\d\d$", lines[-1])


def test_disabled_and_short_loops_print_nothing():
    out = io.StringIO()
    assert list(progress([1, 2], desc="x", disable=True, stream=out)) == [1, 2]
    assert list(progress([1, 2], desc="x", stream=out)) == [1, 2]
    assert out.getvalue() == ""
