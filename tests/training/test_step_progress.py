"""Progress lines within an epoch for output that is not a terminal."""

from __future__ import annotations

import io
import re

import pytest

from brainseg_tf.training.callbacks import StepProgress, format_progress

LINE = re.compile(r"^epoch \d+/\d+ step \d+/(\d+|\?) loss (\d+\.\d{4}|nan) \d+\.\d\d steps/s ETA (\d+:\d\d:\d\d|\?)$")


def test_format_progress_values():
    assert (
        format_progress(3, 15, 40, 100, 0.43216, 1.25) == "epoch 3/15 step 40/100 loss 0.4322 1.25 steps/s ETA 0:00:48"
    )
    assert format_progress(1, 2, 5, None, None, 0.5) == "epoch 1/2 step 5/? loss nan 0.50 steps/s ETA ?"
    assert format_progress(1, 1, 1, 7201, 1.0, 1.0).endswith("ETA 2:00:00")


def test_step_progress_prints_at_the_interval_with_a_fake_clock():
    now = [100.0]
    out = io.StringIO()
    cb = StepProgress(epochs=4, interval=20.0, clock=lambda: now[0], stream=out)
    cb.set_params({"steps": 50, "epochs": 1})
    cb.on_epoch_begin(2)
    for batch in range(50):  # 2.5 s a step: a line every 8 steps (20 s)
        now[0] += 2.5
        cb.on_train_batch_end(batch, {"loss": 0.5 - batch / 1000})
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and all(LINE.match(ln) for ln in lines), lines
    assert lines[0] == "epoch 3/4 step 8/50 loss 0.4930 0.40 steps/s ETA 0:01:45"
    gaps = [int(LINE.match(ln).group(0).split()[3].split("/")[0]) for ln in lines]
    assert gaps == [8, 16, 24, 32, 40, 48]  # steps at 20 s, 40 s, ... (never more than 30 s apart)


@pytest.mark.parametrize("interval", [0.0, 30.0])
def test_short_epochs_print_nothing_and_every_step_at_zero_interval(interval):
    now = [0.0]
    out = io.StringIO()
    cb = StepProgress(epochs=1, interval=interval, clock=lambda: now[0], stream=out)
    cb.set_params({"steps": 3})
    cb.on_epoch_begin(0)
    for batch in range(3):
        now[0] += 1.0
        cb.on_train_batch_end(batch, {"loss": 1.0})
    assert len(out.getvalue().splitlines()) == (3 if interval == 0 else 0)
