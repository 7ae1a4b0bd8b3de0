"""SIGKILL at seeded random points while a cache is built and while `brainseg evaluate` writes its
CSV: afterwards every file under its final name is complete and valid, and a rerun finishes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from brainseg_tf import io, synthetic

SHAPE = (48, 44, 36)
KILLS = int(os.environ.get("BRAINSEG_TEST_KILLS", "6"))


def _start(code: str) -> subprocess.Popen:
    """Run ``code`` in a fresh interpreter; it prints ``ready`` once its imports are done."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _run_and_kill(code: str, delay: float) -> bool:
    """Start ``code``, SIGKILL it ``delay`` s after it is ready; True when it finished first."""
    proc = _start(code)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    time.sleep(delay)
    finished = proc.poll() is not None
    if not finished:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return finished and proc.returncode == 0


def _timed(code: str) -> float:
    """Seconds from ``ready`` to the end of an uninterrupted run of ``code``."""
    proc = _start(code)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return time.perf_counter() - t0


def test_kill_during_cache_build(tmp_path):
    from brainseg_tf.data.cache import open_cache, partial_path

    src = synthetic.make_dataset(tmp_path / "src", n_cases=6, shape=SHAPE, progress=False)
    out = tmp_path / "cache" / "c.h5"
    build = f"""
        from brainseg_tf.data.cache import build_cache
        print("ready", flush=True)
        build_cache({str(src)!r}, {str(out)!r}, progress=False)
    """
    reference = tmp_path / "ref.h5"
    duration = _timed(build.replace(repr(str(out)), repr(str(reference))))
    rng = np.random.default_rng(11)
    for _ in range(KILLS):
        if _run_and_kill(build, float(rng.uniform(0.0, duration))):
            out.unlink()  # finished before the kill: start over, so that the next kill lands in a build
        if out.exists():  # under its final name a cache is complete and readable
            assert len(open_cache(out)) == 6
        visible = [p.name for p in out.parent.iterdir() if not p.name.startswith(".")] if out.parent.exists() else []
        assert visible in ([], ["c.h5"])  # the partial build and temporaries are hidden names
    rerun = subprocess.run([sys.executable, "-c", textwrap.dedent(build)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    cache, expected = open_cache(out), open_cache(reference)
    assert cache.case_ids == expected.case_ids
    for cid in cache.case_ids:
        np.testing.assert_array_equal(cache.image(cid), expected.image(cid))
        np.testing.assert_array_equal(cache.label(cid), expected.label(cid))
    assert not partial_path(out).exists()


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_kill_during_evaluate(tmp_path):
    from brainseg_tf.evaluation import CSV_COLUMNS

    src = synthetic.make_dataset(tmp_path / "src", n_cases=4, shape=SHAPE, progress=False)
    pred = tmp_path / "pred"
    for ref in io.open_dataset(src).refs:
        case = io.read_case(ref)
        io.write_label(np.where(case.label == 3, 1, case.label), case, pred / f"{case.case_id}.nii.gz")
    out = tmp_path / "out" / "metrics.csv"
    evaluate = f"""
        import sys
        from brainseg_tf.cli import main
        import brainseg_tf.evaluation, scipy.ndimage, skimage.measure
        print("ready", flush=True)
        sys.exit(main(["evaluate", "--pred", {str(pred)!r}, "--ref", {str(src)!r}, "--out", {str(out)!r}, "-q"]
                      + sys.argv[1:]))
    """
    first = subprocess.run([sys.executable, "-c", textwrap.dedent(evaluate), "--cases", "BraTS2021_00000"],
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    old = out.read_bytes()
    assert len(_rows(out)) == 3
    duration = _timed(evaluate)
    complete = out.read_bytes()
    out.write_bytes(old)
    rng = np.random.default_rng(7)
    for _ in range(KILLS):
        _run_and_kill(evaluate, float(rng.uniform(0.0, duration * 1.2)))
        data = out.read_bytes()
        assert data in (old, complete)  # the old result or the new one, never a torn file
        rows = _rows(out)
        assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) in (3, 12)
        out.write_bytes(old)
    rerun = subprocess.run([sys.executable, "-c", textwrap.dedent(evaluate)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert out.read_bytes() == complete
    assert [p.name for p in out.parent.iterdir() if not p.name.startswith(".")] == ["metrics.csv"]


def test_interrupted_build_is_named_by_open_cache(tmp_path):
    from brainseg_tf.data.cache import IncompleteCacheError, open_cache, partial_path

    partial_path(tmp_path / "c.h5").write_bytes(b"")
    with pytest.raises(IncompleteCacheError, match=r"interrupted build is in .*\.c\.h5\.partial"):
        open_cache(tmp_path / "c.h5")


def test_second_builder_is_refused_while_one_writes(tmp_path):
    from brainseg_tf.data.cache import CacheError, build_cache, partial_path

    src = synthetic.make_dataset(tmp_path / "src", n_cases=1, shape=SHAPE, progress=False)
    out = tmp_path / "c.h5"
    holder = _start(f"""
        import sys, h5py
        f = h5py.File({str(partial_path(out))!r}, "w")
        print("ready", flush=True)
        sys.stdin.read()
    """)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(CacheError, match="another process is building this cache"):
            build_cache(src, out, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()
