"""SIGKILL at seeded random points while a cache is built, while `brainseg evaluate` writes its CSV
and while `brainseg predict` segments a folder: afterwards every file under its final name is
complete and valid, and a rerun finishes the job. Also the atomic writer's temporary names."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf import io, synthetic

SHAPE = (48, 44, 36)
KILLS = int(os.environ.get("BRAINSEG_TEST_KILLS", "6"))
PREDICT_KILLS = int(os.environ.get("BRAINSEG_TEST_PREDICT_KILLS", "3"))  # each restart imports TensorFlow (~10 s)


def _start(code: str) -> subprocess.Popen:
    """Run ``code`` in a fresh interpreter; it prints ``ready`` once its imports are done."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for(proc: subprocess.Popen, started: Callable[[], bool] | None) -> None:
    """Poll until ``started()`` is true or ``proc`` has exited."""
    while started is not None and proc.poll() is None and not started():
        time.sleep(0.02)


def _run_and_kill(code: str, delay: float, started: Callable[[], bool] | None = None) -> bool:
    """Start ``code``, SIGKILL it ``delay`` s after it is ready (and ``started()``); True when it finished first."""
    proc = _start(code)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    _wait_for(proc, started)
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
    first = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(evaluate), "--cases", "BraTS2021_00000"], capture_output=True, text=True
    )
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


# ------------------------------------------------------------------------- predict a folder


def _random_model_run(run: Path) -> Path:
    """A run directory with an untrained 2-layer 3D model (seeded weights) and its model card."""
    import keras

    from brainseg_tf.card import ModelCard

    keras.utils.set_random_seed(5)
    inp = keras.Input((None, None, None, 4))
    x = keras.layers.Conv3D(8, 3, padding="same", activation="relu", name="enc1_conv1")(inp)
    out = keras.layers.Conv3D(4, 1, activation="softmax", name="head")(x)
    run.mkdir(parents=True)
    keras.Model(inp, out).save(run / "best.keras")
    ModelCard(modalities=list(io.MODALITIES), head="softmax", roi=[16, 16, 16]).save(run)
    return run


def _strict_json(path: Path) -> dict:
    def refuse(name: str):
        raise ValueError(f"{path}: {name} in strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _scores(summary: dict) -> dict[str, float]:
    return {cid: e["uncertainty"] for cid, e in summary["cases"].items() if e.get("uncertainty") is not None}


def _check_outputs(out: Path, expected: dict[str, Any]) -> set[str]:
    """Every visible file in ``out`` is an expected output, complete and equal to the uninterrupted run's.

    NIfTI files load fully and hold the reference's voxels; ``predictions.json`` parses and records
    (with the reference's scores) only cases whose files are in place. Hidden names may only be the
    atomic writer's leftovers (``.<name>.<random>.tmp.nii.gz`` / ``.tmp.json``). Returns the visible names.
    """
    if not out.exists():
        return set()
    names = {p.name for p in out.iterdir()}
    visible = {n for n in names if not n.startswith(".")}
    assert visible <= set(expected), visible - set(expected)
    for name in visible - {"predictions.json"}:
        data = np.asanyarray(nib.load(str(out / name)).dataobj)  # reads every voxel: a torn gzip fails here
        if data.dtype.kind == "f":
            np.testing.assert_allclose(data, expected[name], atol=1e-5)
        else:
            np.testing.assert_array_equal(data, expected[name])
    if "predictions.json" in visible:
        scores = _scores(_strict_json(out / "predictions.json"))
        assert all(f"{cid}.nii.gz" in visible for cid in scores), (sorted(scores), sorted(visible))
        reference = _scores(expected["predictions.json"])
        assert all(abs(scores[cid] - reference[cid]) < 1e-6 for cid in scores)
    leftovers = names - visible
    assert all(re.fullmatch(r"\..+\.\w+\.tmp\.(nii\.gz|json)", n) for n in leftovers), leftovers
    return visible


def _more_labels(out: Path) -> Callable[[], bool]:
    """True once ``out`` holds more label maps than it holds now."""

    def count() -> int:
        return len(list(out.glob("BraTS2021_?????.nii.gz")))

    before = count()
    return lambda: count() > before


def _write_window(code: str, out: Path, n_cases: int) -> float:
    """Seconds from the first label map of an uninterrupted run of ``code`` to its last.

    Kills are drawn in this window, counted from the first new label map of the killed run, so that
    they land while cases are predicted and written (model loading and exit are not of interest).
    """
    proc = _start(code)
    assert proc.stdout.readline().strip() == "ready"
    _wait_for(proc, _more_labels(out))
    t0 = time.perf_counter()
    _wait_for(proc, lambda: len(list(out.glob("BraTS2021_?????.nii.gz"))) >= n_cases)
    window = time.perf_counter() - t0
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return window


PREDICT = """
    import sys
    from brainseg_tf.cli import main
    import brainseg_tf.inference, keras, tensorflow
    print("ready", flush=True)
    sys.exit(main({argv!r}))
"""


@pytest.mark.slow
def test_kill_during_predict_folder(tmp_path):
    """`brainseg predict` killed at random points: what is under a final name is whole; a rerun finishes."""
    from brainseg_tf.evaluation import evaluate_folders

    src = synthetic.make_dataset(tmp_path / "src", n_cases=6, shape=SHAPE, progress=False)
    run = _random_model_run(tmp_path / "run")
    args = ["predict", "--model", str(run), "--input", str(src), "--probabilities", "--uncertainty", "-q", "--out"]
    reference = tmp_path / "reference"
    duration = _write_window(PREDICT.format(argv=args + [str(reference)]), reference, 6)
    expected: dict[str, Any] = {p.name: np.asanyarray(nib.load(str(p)).dataobj) for p in reference.glob("*.nii.gz")}
    expected["predictions.json"] = _strict_json(reference / "predictions.json")
    assert len(expected) == 19 and len(_scores(expected["predictions.json"])) == 6
    labels = [v for k, v in expected.items() if re.fullmatch(r"BraTS2021_\d+\.nii\.gz", k)]
    assert len(labels) == 6 and any(len(np.unique(v)) > 1 for v in labels)  # not a trivial all-background model

    out = tmp_path / "out"
    predict = PREDICT.format(argv=args + [str(out)])
    rng = np.random.default_rng(13)
    partial = 0
    for k in range(PREDICT_KILLS):
        delay = float((k + rng.uniform()) / PREDICT_KILLS * duration)  # stratified over the window
        finished = _run_and_kill(predict, delay, _more_labels(out))
        if finished:
            shutil.rmtree(out)  # finished before the kill: start over, so that the next kill lands in work
        visible = _check_outputs(out, expected)
        partial += 0 < len(visible) < len(expected)
        print(f"kill after {delay:.1f} s: {'finished first' if finished else f'{len(visible)} files in place'}")
    rerun = subprocess.run([sys.executable, "-c", textwrap.dedent(predict)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _check_outputs(out, expected) == set(expected)
    summary = _strict_json(out / "predictions.json")
    assert summary["ranking"] == expected["predictions.json"]["ranking"]  # every case scored, none lost
    result = evaluate_folders(out, src, progress=False, lesion_wise=False)  # leftovers never pair as cases
    assert sorted({r["case"] for r in result.rows}) == io.open_dataset(src).case_ids
    assert not result.missing and all(
        p.name.endswith(("_prob.nii.gz", "_uncertainty.nii.gz")) for p in result.unmatched
    )
    print(f"{PREDICT_KILLS} kills, {partial} left a partly written folder; cases 2-6 written in {duration:.1f} s")


# ------------------------------------------------------------------ the atomic writer's names


@pytest.mark.parametrize(
    "name, suffix",
    [
        ("case.nii.gz", ".nii.gz"),
        (".nii.gz", ".nii.gz"),
        ("..nii.gz", ".nii.gz"),
        (".x.nii.gz", ".nii.gz"),
        ("best.keras", ".keras"),
        (".keras", ".keras"),
        ("metrics.csv", ".csv"),
        ("Makefile", ""),
        ("a.tar.gz", ".tar.gz"),
    ],
)
def test_temporary_names_keep_the_full_suffix(tmp_path, name, suffix):
    from brainseg_tf import atomic

    assert atomic.full_suffix(name) == suffix
    with atomic.atomic_path(tmp_path / name) as first, atomic.atomic_path(tmp_path / name) as second:
        assert first != second and first.parent == tmp_path  # unique, beside the target
        for tmp in (first, second):
            assert tmp.name.startswith(".") and tmp.name.endswith(f".tmp{suffix}")  # hidden, the writer's suffix
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert (tmp_path / name).read_bytes() == b"1"  # the outer writer finished last
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_nifti_named_only_by_its_suffix_is_written_through_nibabel(tmp_path):
    """nibabel picks the format from the temporary name: ``.nii.gz`` must survive a bare ``.nii.gz`` target."""
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    for name in (".nii.gz", "x.nii.gz"):
        io.save_nifti(data, tmp_path / name, affine=np.eye(4))
        raw = (tmp_path / name).read_bytes()
        assert raw[:2] == b"\x1f\x8b"  # gzip, as the name says
        np.testing.assert_array_equal(np.asanyarray(nib.load(str(tmp_path / name)).dataobj), data)


def test_long_names_fit_in_one_path_component(tmp_path):
    from brainseg_tf import atomic

    name = "c" * 240 + ".nii.gz"  # 247 bytes: the temporary name must be cut, not the write refused
    with atomic.atomic_path(tmp_path / name) as tmp:
        assert len(tmp.name.encode()) <= 255 and tmp.name.endswith(".tmp.nii.gz")
        tmp.write_bytes(b"x")
    assert (tmp_path / name).read_bytes() == b"x"
    assert [p.name for p in tmp_path.iterdir()] == [name]
