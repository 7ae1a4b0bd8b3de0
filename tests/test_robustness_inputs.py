"""Every bad input class: the exact exit code, the file named, no traceback, nothing written changed.

Each test builds its inputs under ``tmp_path`` (small synthetic cases, or copies of the shared real
BraTS 2018 cases), runs the ``brainseg`` CLI in-process and checks the outcome.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf import io, synthetic
from brainseg_tf.cli import main

SHAPE = (32, 32, 24)
FLAIR = "BraTS2021_00000/BraTS2021_00000_flair.nii.gz"


# ----------------------------------------------------------------------------------- helpers


def _dataset(root: Path, n: int = 3, layout: str = "brats2021") -> Path:
    return synthetic.make_dataset(root, layout=layout, n_cases=n, shape=SHAPE, progress=False)


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content hash of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _cli(capsys, *args: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def _raw(path: Path) -> bytearray:
    data = path.read_bytes()
    return bytearray(gzip.decompress(data) if path.name.endswith(".gz") else data)


def _put(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(bytes(data)) if path.name.endswith(".gz") else bytes(data))


def patch_header(path: Path, *, dims=None, datatype=None, pixdim=None) -> None:
    """Rewrite NIfTI-1 header fields in place (byte offsets of the NIfTI-1 standard)."""
    raw = _raw(path)
    if dims is not None:
        struct.pack_into("<8h", raw, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    if datatype is not None:
        code, bitpix = datatype
        struct.pack_into("<hh", raw, 70, code, bitpix)
    if pixdim is not None:
        struct.pack_into("<3f", raw, 80, *pixdim)
    _put(path, raw)


def _uncompressed(path: Path) -> Path:
    """Replace ``x.nii.gz`` by ``x.nii`` (same voxels) and return the new path."""
    target = path.with_name(path.name[:-3])
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header), str(target))
    path.unlink()
    return target


def _truncated_nii(path: Path) -> Path:
    nii = _uncompressed(path)
    nii.write_bytes(nii.read_bytes()[:-100])
    return nii


# ----------------------------------------------------------------------- header-level classes

HEADER_CASES = {
    "huge_dims": (
        lambda p: patch_header(p, dims=(32767, 32767, 32767)),
        r"header declares 35,181,150,961,663 voxels \(32767, 32767, 32767\), more than the cap",
    ),
    "more_than_gzip_can_hold": (lambda p: patch_header(p, dims=(700, 700, 700)), r"cannot hold more than"),
    "truncated_nii": (_truncated_nii, r"truncated: header declares 24,576 voxels"),
    "rgb24": (lambda p: patch_header(p, datatype=(128, 24)), r"unsupported data type RGB24 \(NIfTI datatype 128\)"),
    "complex64": (
        lambda p: patch_header(p, datatype=(32, 64)),
        r"unsupported data type complex64 \(NIfTI datatype 32\)",
    ),
    "zero_axis": (lambda p: patch_header(p, dims=(32, 0, 24)), r"zero-length axis, shape \(32, 0, 24\)"),
    "nan_pixdim": (lambda p: patch_header(p, pixdim=(1.0, float("nan"), 1.0)), r"voxel sizes \(pixdim\)"),
}


@pytest.mark.parametrize("kind", sorted(HEADER_CASES))
def test_header_classes_validate_info_preprocess(tmp_path, capsys, kind):
    root = _dataset(tmp_path / "data")
    damage, message = HEADER_CASES[kind]
    flair = root / FLAIR
    damage(flair)
    bad = next((root / "BraTS2021_00000").glob("*flair*"))  # .nii after _uncompressed
    before = _snapshot(tmp_path)

    rc, out, err = _cli(capsys, "validate", root, "-q")
    assert rc == 1
    line = next(p for p in out.splitlines() if str(bad) in p)
    assert re.search(message, line), line
    assert "1 problem(s)" in err

    rc, _, err = _cli(capsys, "info", root, "-q")
    assert rc == 2 and err.startswith("error: ") and str(bad) in err

    rc, _, err = _cli(capsys, "preprocess", root, "--out", tmp_path / "cache.h5", "-q")
    assert rc == 2 and str(bad) in err
    assert _snapshot(tmp_path) == before  # no cache, no partial build, sources untouched


def test_voxel_cap_from_argument_and_environment(tmp_path, capsys, monkeypatch):
    root = _dataset(tmp_path / "data", n=1)
    rc, out, _ = _cli(capsys, "validate", root, "-q", "--max-voxels", 1000)
    assert rc == 1 and "more than the cap of 1,000" in out and out.count("\n") >= 5  # every file, one pass
    monkeypatch.setenv(io.MAX_VOXELS_ENV, "1000")
    rc, _, err = _cli(capsys, "info", root, "-q")
    assert rc == 2 and "more than the cap of 1,000" in err and str(root / FLAIR) in err
    monkeypatch.setenv(io.MAX_VOXELS_ENV, "lots")
    rc, _, err = _cli(capsys, "info", root, "-q")
    assert rc == 2 and "BRAINSEG_MAX_VOXELS='lots' must be a positive integer" in err


def test_huge_header_in_a_prediction_is_a_data_error(tmp_path, capsys):
    root = _dataset(tmp_path / "data", n=1)
    pred = tmp_path / "pred"
    case = io.read_case(root / "BraTS2021_00000")
    target = io.write_label(case.label, case, pred / "BraTS2021_00000.nii.gz")
    patch_header(target, dims=(32767, 32767, 32767))
    rc, _, err = _cli(capsys, "evaluate", "--pred", pred, "--ref", root, "--out", tmp_path / "m.csv", "-q")
    assert rc == 2 and str(target) in err and "more than the cap" in err
    assert not (tmp_path / "m.csv").exists()


# ------------------------------------------------------------------------------ dataset.json


def _msd(tmp_path: Path) -> Path:
    return _dataset(tmp_path / "msd", n=2, layout="msd")


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2, 3]", "the top level is a list [...], expected an object {...}"),
        (
            '{"modality": {"zero": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}',
            "'modality' has key 'zero'; keys must be non-negative integers",
        ),
        ('{"modality": ["FLAIR", "T1w", "t1gd", "T2w"]}', "'modality' is a list, expected an object"),
        ('{"labels": {"0": "background", "one": "edema"}}', "'labels' has key 'one'"),
        ('{"numTraining": NaN}', "NaN is not a number in strict JSON"),
        ('{"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "5": "T2w"}}', "keys [0, 1, 2, 5] must be 0, 1, 2, 3"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_dataset_json(tmp_path, capsys, content, message):
    root = _msd(tmp_path)
    path = root / "dataset.json"
    path.write_text(content)
    before = _snapshot(tmp_path)
    rc, out, _ = _cli(capsys, "validate", root, "-q")
    assert rc == 1 and out.startswith(f"{path}: ") and message in out
    rc, _, err = _cli(capsys, "info", root, "-q")
    assert rc == 2 and f"error: {path}: " in err and message in err
    rc, _, err = _cli(capsys, "preprocess", root, "--out", tmp_path / "c.h5", "-q")
    assert rc == 2 and str(path) in err
    assert _snapshot(tmp_path) == before


def test_msd_orphans_and_duplicate_ids_reported(tmp_path, capsys):
    root = _msd(tmp_path)
    (root / "imagesTs").mkdir(exist_ok=True)
    shutil.copy(root / "imagesTr" / "BRATS_001.nii.gz", root / "imagesTs" / "BRATS_001.nii.gz")
    (root / "labelsTr" / "BRATS_002.nii.gz").rename(root / "labelsTr" / "BRATS_009.nii.gz")
    rc, out, _ = _cli(capsys, "validate", root, "-q")
    assert rc == 1
    assert f"{root / 'imagesTs' / 'BRATS_001.nii.gz'}: duplicate case id 'BRATS_001'" in out
    assert f"{root / 'imagesTr' / 'BRATS_002.nii.gz'}: training image without its label" in out
    assert f"{root / 'labelsTr' / 'BRATS_009.nii.gz'}: label without an image" in out


# ------------------------------------------------------------------- every problem in one pass


def test_validate_reports_every_problem_of_every_case(tmp_path, capsys):
    root = _dataset(tmp_path / "data", n=5)
    (root / "BraTS2021_00001" / "BraTS2021_00001_t1ce.nii.gz").unlink()  # unmatched
    dup_folder = root / "BraTS2021_00002"
    shutil.copy(dup_folder / "BraTS2021_00002_flair.nii.gz", dup_folder / "BraTS2021_00002_flair.nii")
    patch_header(root / FLAIR, datatype=(128, 24))
    patch_header(root / "BraTS2021_00000" / "BraTS2021_00000_t2.nii.gz", dims=(0, 32, 24))
    seg = root / "BraTS2021_00004" / "BraTS2021_00004_seg.nii.gz"
    data = np.asanyarray(nib.load(str(seg)).dataobj).copy()
    data[0, 0, 0] = 3  # not a BraTS 2017-2021 label
    nib.save(nib.Nifti1Image(data, nib.load(str(seg)).affine), str(seg))
    before = _snapshot(tmp_path)
    rc, out, err = _cli(capsys, "validate", root, "-q")
    assert rc == 1 and "5 problem(s)" in err
    lines = out.splitlines()
    expected = [
        (root / "BraTS2021_00001", "missing modality t1ce"),
        (dup_folder / "BraTS2021_00002_flair.nii.gz", f"a second 'flair' file in {dup_folder}"),
        (root / FLAIR, "RGB24"),
        (root / "BraTS2021_00000" / "BraTS2021_00000_t2.nii.gz", "zero-length axis"),
        (seg, "label values 3 (1 voxels) are not in the 'brats' convention"),
    ]
    for path, text in expected:
        assert any(line.startswith(f"{path}: ") and text in line for line in lines), (path, text, out)
    assert _snapshot(tmp_path) == before


def test_warnings_zero_modality_empty_mask_spacing(tmp_path, capsys):
    root = _dataset(tmp_path / "data", n=3)
    t1 = root / "BraTS2021_00000" / "BraTS2021_00000_t1.nii.gz"
    img = nib.load(str(t1))
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.int16), img.affine, img.header), str(t1))
    seg = root / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz"
    img = nib.load(str(seg))
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine, img.header), str(seg))
    t2 = root / "BraTS2021_00002" / "BraTS2021_00002_t2.nii.gz"
    patch_header(t2, pixdim=(1.0, 1.0, 3.0))  # the sform still says 1 mm
    rc, out, _ = _cli(capsys, "validate", root, "-q")
    assert rc == 0 and "OK (3 warning(s))" in out
    assert f"warning: {t1}: t1 is all zeros" in out
    assert f"warning: {seg}: mask is empty (no tumour voxels)" in out
    assert (
        f"warning: {t2}: header voxel sizes (pixdim) (1.0, 1.0, 3.0) disagree with the affine's (1.0, 1.0, 1.0)" in out
    )


@pytest.mark.real_data
def test_same_real_case_under_two_ids_is_reported(real_brats2018, tmp_path, capsys):
    root = tmp_path / "data"
    for cid in ("Brats18_2013_11_1", "Brats18_CBICA_AQN_1"):
        shutil.copytree(real_brats2018 / cid, root / cid)
    os.symlink(root / "Brats18_2013_11_1", root / "Brats18_2013_99_1")  # a symlink under another id
    copy = root / "Brats18_TCIA01_999_1"
    copy.mkdir()
    for f in (root / "Brats18_CBICA_AQN_1").iterdir():  # a copy, recompressed, files renamed
        img = nib.load(str(f))
        nib.save(img, str(copy / f.name.replace("Brats18_CBICA_AQN_1", copy.name)))
    rc, out, _ = _cli(capsys, "validate", root, "-q")
    assert rc == 0
    assert "warning: cases Brats18_2013_11_1, Brats18_2013_99_1 hold identical voxels" in out
    assert "warning: cases Brats18_CBICA_AQN_1, Brats18_TCIA01_999_1 hold identical voxels" in out
    assert "leaks between training and validation" in out


# ------------------------------------------------------------------------------------ case ids


def test_case_ids_checked_where_made(tmp_path, monkeypatch):
    root = _dataset(tmp_path / "data", n=1)
    monkeypatch.chdir(root / "BraTS2021_00000")
    assert io.read_case(".").case_id == "BraTS2021_00000"  # `predict --input .` inside a case folder
    assert io.open_dataset(".").case_ids == ["BraTS2021_00000"]
    images = {m: np.ones((4, 4, 4), np.int16) for m in io.MODALITIES}
    for bad, problem in (
        ("", "is empty"),
        ("../x", "contains a path separator"),
        ("a..b", "contains '..'"),
        (".hidden", "starts with '.'"),
    ):
        with pytest.raises(ValueError, match=f"case_id={bad!r} {problem}"):
            io.write_case(tmp_path / "w", "brats2021", bad, images, None, np.eye(4))
    assert not (tmp_path / "w").exists()


def test_hidden_and_suffix_named_predictions_do_not_pair(tmp_path, capsys):
    root = _dataset(tmp_path / "data", n=2)
    pred = tmp_path / "pred"
    case = io.read_case(root / "BraTS2021_00000")
    written = io.write_label(case.label, case, pred / "xBraTS2021_00000.nii.gz")  # no suffix matching
    shutil.copy(written, pred / ".nii.gz")  # what `predict --input .` once wrote
    shutil.copy(written, pred / "._BraTS2021_00000.nii.gz")  # a macOS resource-fork name
    out_csv = tmp_path / "m.csv"
    rc, out, _ = _cli(capsys, "evaluate", "--pred", pred, "--ref", root, "--out", out_csv, "-q")
    assert rc == 0
    assert "missing predictions (scored as empty): BraTS2021_00000, BraTS2021_00001" in out
    assert "predictions without a reference (not scored): xBraTS2021_00000.nii.gz" in out
    rows = list(csv.DictReader(out_csv.open()))
    assert {r["missing_prediction"] for r in rows} == {"True"}


# ------------------------------------------------------------------------------ label conventions


def _perfect_predictions(root: Path, pred: Path) -> None:
    for ref in io.open_dataset(root).refs:
        case = io.read_case(ref)
        io.write_label(case.label, case, pred / f"{case.case_id}.nii.gz")


def _dice(path: Path) -> dict[tuple[str, str], float]:
    return {(r["case"], r["region"]): float(r["dice"]) for r in csv.DictReader(path.open())}


def test_perfect_msd_prediction_scores_one(tmp_path, capsys):
    root = _msd(tmp_path)
    pred = tmp_path / "pred"
    _perfect_predictions(root, pred)  # written in MSD labels, the convention recorded in the header
    rc, _, _ = _cli(capsys, "evaluate", "--pred", pred, "--ref", root, "--out", tmp_path / "m.csv", "-q")
    assert rc == 0
    dice = _dice(tmp_path / "m.csv")
    assert len(dice) == 6 and set(dice.values()) == {1.0}


def test_unrecorded_msd_prediction_reads_in_the_reference_scheme(tmp_path, capsys):
    root = _msd(tmp_path)
    pred = tmp_path / "pred"
    for lab in sorted((root / "labelsTr").iterdir()):  # MSD 1/2/3 written by another tool: no record
        img = nib.load(str(lab))
        pred.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine), str(pred / lab.name))
    out_csv = tmp_path / "m.csv"
    rc, out, _ = _cli(capsys, "evaluate", "--pred", pred, "--ref", root, "--out", out_csv)
    # the reference's layout settles the scheme: read as MSD, and the output says so
    assert rc == 0 and set(_dice(out_csv).values()) == {1.0}
    assert "predictions without a recorded label scheme read in the reference's scheme 'msd'" in out
    rc, _, _ = _cli(
        capsys, "evaluate", "--pred", pred, "--ref", root, "--out", out_csv, "-q", "--pred-convention", "brats2023"
    )  # the trap the flag must not hide: read as 2023
    assert rc == 0 and min(v for (c, r), v in _dice(out_csv).items() if r == "TC") < 0.9
    # values that contradict the reference's scheme are refused, naming the file; nothing is written
    bad = pred / "BRATS_001.nii.gz"
    img = nib.load(str(bad))
    data = np.asanyarray(img.dataobj).copy()
    data[0, 0, 0] = 4
    nib.save(nib.Nifti1Image(data, img.affine), str(bad))
    out_csv.write_text("an older result\n")
    before = _snapshot(tmp_path)
    rc, _, err = _cli(capsys, "evaluate", "--pred", pred, "--ref", root, "--out", out_csv, "-q")
    assert rc == 2 and str(bad) in err and "4" in err
    assert _snapshot(tmp_path) == before


def test_predictions_json_records_the_convention(tmp_path, capsys):
    root = _msd(tmp_path)
    pred = tmp_path / "pred"
    pred.mkdir()
    for lab in sorted((root / "labelsTr").iterdir()):
        img = nib.load(str(lab))
        nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine), str(pred / lab.name))
    (pred / "predictions.json").write_text(json.dumps({"convention": "msd"}))
    rc, _, _ = _cli(capsys, "evaluate", "--pred", pred, "--ref", root, "--out", tmp_path / "m.csv", "-q")
    assert rc == 0 and set(_dice(tmp_path / "m.csv").values()) == {1.0}
    (pred / "predictions.json").write_text('{"convention": NaN}')
    rc, _, err = _cli(capsys, "evaluate", "--pred", pred, "--ref", root, "-q")
    assert rc == 2 and f"{pred / 'predictions.json'}: NaN is not a number in strict JSON" in err


def test_reference_folder_of_unrecorded_masks_needs_the_flag(tmp_path, capsys):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    seg = np.zeros((8, 8, 8), np.uint8)
    seg[1:6, 1:6, 1:6] = 2
    seg[2:4, 2:4, 2:4] = 4
    nib.save(nib.Nifti1Image(seg, np.eye(4)), str(ref / "c1_seg.nii.gz"))
    shutil.copytree(ref, pred)
    rc, _, err = _cli(capsys, "evaluate", "--pred", pred, "--ref", ref, "-q")
    assert rc == 2 and str(ref / "c1_seg.nii.gz") in err and "pass --ref-convention" in err
    assert "brats: 2=ED 4=ET; brats2024_post: 2=ED 4=BG" in err
    rc, _, _ = _cli(
        capsys,
        "evaluate",
        "--pred",
        pred,
        "--ref",
        ref,
        "-q",
        "--ref-convention",
        "brats",
        "--pred-convention",
        "brats",
    )
    assert rc == 0


# --------------------------------------------------------------------------- argument ranges


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-lesion-volume", "nan"], "min_lesion_volume must be a finite number >= 0, got nan"),
        (["--min-lesion-volume", "-1"], "min_lesion_volume must be a finite number >= 0, got -1.0"),
        (["--dilation", "-1"], "dilation must be an integer >= 0, got -1"),
        (["--pred-convention", "brats2099"], "convention='brats2099' is unknown"),
    ],
)
def test_bad_evaluate_arguments_fail_before_reading(tmp_path, capsys, args, message):
    root = _dataset(tmp_path / "data", n=1)
    (tmp_path / "pred").mkdir()
    before = _snapshot(tmp_path)
    rc, _, err = _cli(
        capsys, "evaluate", "--pred", tmp_path / "pred", "--ref", root, "--out", tmp_path / "m.csv", "-q", *args
    )
    assert rc == 2 and message in err
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--spacing", "nan"], "must be finite and positive"),
        (["--spacing", "1", "0", "1"], "must be finite and positive"),
        (["--margin", "-1"], "margin must be an integer >= 0, got -1"),
        (["--max-cases", "0"], "max_cases must be an integer >= 1 or None, got 0"),
    ],
)
def test_bad_preprocess_arguments(tmp_path, capsys, args, message):
    root = _dataset(tmp_path / "data", n=1)
    before = _snapshot(tmp_path)
    rc, _, err = _cli(capsys, "preprocess", root, "--out", tmp_path / "c.h5", "-q", *args)
    assert rc == 2 and message in err
    assert _snapshot(tmp_path) == before


def test_cache_from_another_folder_with_the_same_ids_is_rebuilt(tmp_path, capsys):
    first = synthetic.make_dataset(tmp_path / "a", n_cases=2, shape=SHAPE, seed=0, progress=False)
    second = synthetic.make_dataset(tmp_path / "b", n_cases=2, shape=SHAPE, seed=1, progress=False)
    out = tmp_path / "c.h5"
    assert _cli(capsys, "preprocess", first, "--out", out, "-q")[0] == 0
    assert _cli(capsys, "preprocess", second, "--out", out, "-q")[0] == 0
    from brainseg_tf.data.cache import open_cache
    from brainseg_tf.data.preprocess import preprocess_case

    cache = open_cache(out)
    for cid in cache.case_ids:
        np.testing.assert_array_equal(cache.image(cid), preprocess_case(io.read_case(second / cid)).image)


def test_unknown_case_id_is_a_data_error_and_a_key_error(tmp_path):
    root = _dataset(tmp_path / "data", n=1)
    ds = io.open_dataset(root)
    with pytest.raises(io.UnknownCaseError, match=rf"{re.escape(str(root))}: case 'NOPE' is not in this dataset"):
        ds["NOPE"]
    with pytest.raises(KeyError):
        ds.ref("NOPE")


# ------------------------------------------------------------------ files where folders belong


def test_a_file_where_a_folder_belongs_is_named(tmp_path, capsys):
    from brainseg_tf.inference import Predictor, predict_folder

    root = _dataset(tmp_path / "data", n=1)
    flair = root / FLAIR
    rc, _, err = _cli(capsys, "evaluate", "--pred", flair, "--ref", root, "-q")
    assert rc == 2 and err.strip() == f"error: {flair}: is a file, expected a prediction folder"
    rc, _, err = _cli(capsys, "evaluate", "--pred", root, "--ref", flair, "-q")
    assert rc == 2 and err.strip() == f"error: {flair}: is a file, expected a reference folder"
    out = tmp_path / "out"
    out.write_text("notes")
    with pytest.raises(FileExistsError, match=f"^{re.escape(str(out))}: is a file, expected an output folder$"):
        predict_folder(Predictor(fn=lambda b: np.ones(b.shape[:-1] + (4,), np.float32)), root, out, progress=False)
    assert out.read_text() == "notes"


# ------------------------------------------------------- the committed table of input classes


@pytest.mark.slow
def test_input_class_table_matches_what_the_toolkit_prints():
    """docs/robustness.md lists every input class with its message: re-run the probes without TensorFlow."""
    import importlib.util

    script = Path(__file__).parent / "scripts" / "input_classes.py"
    spec = importlib.util.spec_from_file_location("input_classes", script)
    probes = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = probes  # dataclasses look their module up
    spec.loader.exec_module(probes)
    table = probes.parse_table((Path(__file__).parents[1] / "docs" / "robustness.md").read_text())
    assert set(table) == {p.name for p in probes.PROBES}  # every probe is in the table, and nothing else
    rows = probes.run_probes(tf=False)
    assert len(rows) >= 60
    for row in rows:
        assert row.exit != "TRACEBACK", (row.name, row.message)
        assert table[row.name] == (row.exit, probes.cell(row.message)), row.name
