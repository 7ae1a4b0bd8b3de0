"""The ``brainseg`` command line: info and validate on a small dataset."""

from __future__ import annotations

import numpy as np

from brainseg_tf import cli, io

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _dataset(root, n=2):
    rng = np.random.default_rng(0)
    for i in range(n):
        images = {m: rng.integers(1, 100, size=(8, 8, 6)).astype(np.int16) for m in io.MODALITIES}
        label = np.zeros((8, 8, 6), np.uint8)
        label[2:4, 2:4, 2:4] = 2
        label[3, 3, 3] = 3
        io.write_case(root, "brats2021", io.case_id_for("brats2021", i), images, label, LPS)


def test_info_prints_summary(tmp_path, capsys):
    _dataset(tmp_path)
    assert cli.main(["info", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "layout     brats2021" in out and "cases      2 (2 with masks)" in out
    assert "8x8x6 (2)" in out
    # ED = 8 voxels - 1 ET voxel = 7 voxels of 1 mm^3 = 0.007 ml
    assert "ED           0.01" in out


def test_validate_exit_codes(tmp_path, capsys):
    _dataset(tmp_path)
    assert cli.main(["validate", str(tmp_path), "-q"]) == 0
    bad = tmp_path / "BraTS2021_00001" / "BraTS2021_00001_t2.nii.gz"
    bad.write_bytes(b"garbage")
    assert cli.main(["validate", str(tmp_path), "-q"]) == 1
    assert str(bad) in capsys.readouterr().out


def test_bad_path_is_a_clean_error(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "nope"), "-q"]) == 2
    assert "nope: dataset folder not found" in capsys.readouterr().err
