"""HDF5 cache: contents, memory-mapped reads, resume, incomplete and stale detection."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import write_toy_dataset

from brainseg_tf.data.cache import (
    CacheError,
    IncompleteCacheError,
    StaleCacheError,
    build_cache,
    open_cache,
)
from brainseg_tf.data.preprocess import paste_back, preprocess_case
from brainseg_tf.io import open_dataset, read_case


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy"))


def test_cache_matches_preprocess_and_reads_without_h5py(toy_root, tmp_path):
    out = build_cache(toy_root, tmp_path / "c.h5", progress=False)
    cache = open_cache(out)
    assert cache.contiguous and len(cache) == 3
    ds = open_dataset(toy_root)
    for cid in cache.case_ids:
        case = read_case(ds.ref(cid))
        pre = preprocess_case(case)
        np.testing.assert_array_equal(cache.image(cid), pre.image)
        np.testing.assert_array_equal(cache.label(cid), pre.label)
        assert cache.geometry(cid).crop == pre.geometry.crop
        np.testing.assert_array_equal(paste_back(np.asarray(cache.label(cid)), cache.geometry(cid)), case.label)
        locs = cache.locations(cid)
        for c, xyz in locs.items():
            assert np.all(pre.label[tuple(xyz.T)] == c)
        assert (set(locs) == {1, 2, 3}) == (cid != "BraTS2021_00002")
        prov = cache.provenance(cid)["files"]
        assert len(prov) == 5 and all("mtime_ns" in r for r in prov)


def test_read_patch_padding_and_channels(toy_root, tmp_path):
    cache = open_cache(build_cache(toy_root, tmp_path / "c.h5", progress=False, max_cases=1))
    cid = cache.case_ids[0]
    img, lab = np.asarray(cache.image(cid)), np.asarray(cache.label(cid))
    p, pl = cache.read_patch(cid, (-5, 2, 3), (16, 8, 500), channels=[2, 0])
    assert p.shape == (16, 8, 500, 2) and p.dtype == np.float32 and pl.shape == (16, 8, 500)
    np.testing.assert_array_equal(p[5:, :, : img.shape[2] - 3, 0], img[:11, 2:10, 3:, 2])
    np.testing.assert_array_equal(p[5:, :, : img.shape[2] - 3, 1], img[:11, 2:10, 3:, 0])
    assert np.all(p[:5] == 0) and np.all(pl[:5] == 0) and np.all(p[:, :, img.shape[2] - 3 :] == 0)
    np.testing.assert_array_equal(pl[5:, :, : img.shape[2] - 3], lab[:11, 2:10, 3:])
    # entirely outside: all zeros
    q, ql = cache.read_patch(cid, (1000, 0, 0), (4, 4, 4))
    assert not q.any() and not ql.any()


def test_chunked_cache_and_float16(toy_root, tmp_path):
    c32 = open_cache(build_cache(toy_root, tmp_path / "a.h5", progress=False, max_cases=1))
    ch = open_cache(
        build_cache(toy_root, tmp_path / "b.h5", progress=False, max_cases=1, chunks=(16, 16, 16), dtype="float16")
    )
    assert not ch.contiguous
    cid = c32.case_ids[0]
    a, _ = c32.read_patch(cid, (3, 4, 5), (20, 20, 20))
    b, _ = ch.read_patch(cid, (3, 4, 5), (20, 20, 20))
    np.testing.assert_allclose(a, b, atol=5e-3)
    ch.close()


def test_threads_read_same_values(toy_root, tmp_path):
    cache = open_cache(build_cache(toy_root, tmp_path / "c.h5", progress=False))
    ref = {cid: cache.read_patch(cid, (2, 2, 2), (24, 24, 24))[0] for cid in cache.case_ids}
    errors = []

    def work():
        for _ in range(10):
            for cid in cache.case_ids:
                if not np.array_equal(cache.read_patch(cid, (2, 2, 2), (24, 24, 24))[0], ref[cid]):
                    errors.append(cid)

    ts = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors


def test_resume_skips_done_cases_and_incomplete_is_refused(toy_root, tmp_path):
    out = tmp_path / "c.h5"
    build_cache(toy_root, out, progress=False)
    # simulate an interrupted build: unmark the root and drop one case
    with h5py.File(out, "a") as f:
        f.attrs["complete"] = False
        del f["cases/BraTS2021_00001"]
        before = f["cases/BraTS2021_00000"].attrs["provenance"]
    with pytest.raises(IncompleteCacheError, match="incomplete cache .*2/3"):
        open_cache(out)
    build_cache(toy_root, out, progress=False)
    cache = open_cache(out)
    assert len(cache) == 3
    with h5py.File(out, "r") as f:
        assert f["cases/BraTS2021_00000"].attrs["provenance"] == before
    with pytest.raises(ValueError, match="other parameters"):
        build_cache(toy_root, out, progress=False, margin=2)


def _rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_touched_source_is_not_stale_changed_content_is(toy_root, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(toy_root, root)
    out = build_cache(root, tmp_path / "c.h5", progress=False)
    flair = next((root / "BraTS2021_00000").glob("*flair*"))
    st = flair.stat()
    os.utime(flair, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # mtime only: same content
    open_cache(out)
    # same size, same mtime, other content (the gzip trailer's CRC changes with any voxel)
    other = next((root / "BraTS2021_00001").glob("*flair*")).read_bytes()
    data = flair.read_bytes()
    _rewrite_keeping_size_and_mtime(flair, (other + data)[: len(data)])
    with pytest.raises(StaleCacheError, match=r"stale cache, the content of 1 source file.*flair"):
        open_cache(out)
    mtime = out.stat().st_mtime_ns
    build_cache(root, out, progress=False)  # redoes the changed case only
    assert out.stat().st_mtime_ns != mtime
    open_cache(out)


def test_other_source_folder_with_same_ids_rebuilds(toy_root, tmp_path):
    out = build_cache(toy_root, tmp_path / "c.h5", progress=False)
    other = write_toy_dataset(tmp_path / "other", seed=1)
    for a, b in zip(sorted(toy_root.rglob("*.nii.gz")), sorted(other.rglob("*.nii.gz"))):
        assert a.name == b.name
    build_cache(other, out, progress=False)
    cache = open_cache(out)
    for cid in cache.case_ids:
        fresh = preprocess_case(read_case(open_dataset(other).ref(cid)))
        np.testing.assert_array_equal(cache.image(cid), fresh.image)
        assert all(str(other) in r["path"] for r in cache.provenance(cid)["files"])


def test_unchanged_cache_is_not_rewritten(toy_root, tmp_path):
    out = build_cache(toy_root, tmp_path / "c.h5", progress=False)
    before = (out.stat().st_ino, out.stat().st_mtime_ns)
    build_cache(toy_root, out, progress=False)
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"]


def test_bad_files_and_arguments(toy_root, tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(CacheError, match="junk.h5"):
        open_cache(junk)
    with pytest.raises(CacheError, match="not found"):
        open_cache(tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="dtype"):
        build_cache(toy_root, tmp_path / "x.h5", dtype="int8", progress=False)
    with pytest.raises(ValueError, match="case_ids"):
        build_cache(toy_root, tmp_path / "x.h5", case_ids=["nope"], progress=False)


@pytest.mark.real_data
def test_real_cases_cache(real_brats2018, tmp_path):
    out = build_cache(real_brats2018, tmp_path / "real.h5", max_cases=2, progress=False)
    cache = open_cache(out)
    cid = cache.case_ids[0]
    case = read_case(open_dataset(real_brats2018).ref(cid))
    np.testing.assert_array_equal(paste_back(np.asarray(cache.label(cid)), cache.geometry(cid)), case.label)
    assert set(cache.locations(cid)) <= {1, 2, 3} and len(cache.locations(cid)) >= 2
