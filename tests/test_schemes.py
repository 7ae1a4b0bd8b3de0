"""Label schemes as data (issue 21): regions, detection from case ids, masks, the reader of every scheme
(PED 2024, GLI/MET with RC read into internal labels and written back in source values, MEN-RT's T1c and GTV)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import LPS, make_case

from brainseg_tf import io, schemes
from brainseg_tf.io import labels
from brainseg_tf.schemes import SCHEMES, detect_scheme, get_scheme, own_scheme

DOC = Path(__file__).resolve().parents[1] / "docs" / "editions.md"

# Hand-written from reference/brats-editions.md section 2 (2023+) and peers.md (2017-2021, MSD): region
# -> source values, in channel order.
NESTED_123 = {"WT": {1, 2, 3}, "TC": {1, 3}, "ET": {3}}
EXPECTED_REGIONS = {
    "brats2021": {"WT": {1, 2, 4}, "TC": {1, 4}, "ET": {4}},
    "gli2023": NESTED_123,
    "gli2024": {**NESTED_123, "NETC": {1}, "SNFH": {2}, "RC": {4}},
    "met2024": {**NESTED_123, "RC": {4}},
    "ped2023": NESTED_123,
    "ped2024": {"WT": {1, 2, 3, 4}, "TC": {1, 2, 3}, "ET": {1}, "NET": {2}, "CC": {3}, "ED": {4}},
    "men": NESTED_123,
    "ssa": NESTED_123,
    "goat": NESTED_123,
    "men_rt": {"GTV": {1}},
    "msd": {"WT": {1, 2, 3}, "TC": {2, 3}, "ET": {3}},
}
EXPECTED_VALUES = {
    "brats2021": (0, 1, 2, 4),
    "gli2024": (0, 1, 2, 3, 4),
    "met2024": (0, 1, 2, 3, 4),
    "ped2024": (0, 1, 2, 3, 4),
    "men_rt": (0, 1),
}


def test_every_scheme_regions_match_the_editions_notes():
    assert set(SCHEMES) == set(EXPECTED_REGIONS)
    for name, expected in EXPECTED_REGIONS.items():
        scheme = SCHEMES[name]
        assert list(scheme.region_names) == list(expected), name  # channel order
        for region, values in expected.items():
            assert set(scheme.region_values(region)) == values, (name, region)
        assert scheme.values == EXPECTED_VALUES.get(name, (0, 1, 2, 3)), name


def test_ped2024_and_gli2024_labels_by_name():
    ped = get_scheme("ped2025")  # alias of the 2024 scheme
    assert ped.name == "ped2024"
    assert [(n, ped.label_value(n)) for n in ("ET", "NET", "CC", "ED")] == [("ET", 1), ("NET", 2), ("CC", 3), ("ED", 4)]
    assert get_scheme("GLI2024").label_value("RC") == 4
    assert get_scheme("men-rt").modalities == ("t1c",) and get_scheme("men_rt").mask == "gtv"


def test_schemes_with_a_convention_read_into_the_same_canonical_regions():
    """Where a convention reads a scheme, its WT/TC/ET from source values equal the canonical regions."""
    source = np.arange(5).reshape(5, 1, 1)
    for scheme in SCHEMES.values():
        if scheme.convention is None:
            continue
        conv = labels.get_convention(scheme.convention)
        values = np.array([v for v in scheme.values if v in conv.to_canonical]).reshape(-1, 1, 1)
        canonical = labels.to_canonical(values, scheme.convention)
        for region in ("WT", "TC", "ET"):
            np.testing.assert_array_equal(
                scheme.region_mask(values, region), np.isin(canonical, labels.REGION_LABELS[region]), scheme.name
            )
        assert scheme.region_mask(source, "WT").shape == source.shape


def test_scheme_for_convention_relates_the_old_names():
    assert labels.scheme_for_convention("brats").name == "brats2021"
    assert labels.scheme_for_convention("brats2020").name == "brats2021"  # an alias of 'brats'
    assert labels.scheme_for_convention("brats2023").name == "gli2023"
    assert labels.scheme_for_convention("canonical").name == "gli2023"
    assert labels.scheme_for_convention("brats2024_post").name == "gli2024"
    assert labels.scheme_for_convention("msd").name == "msd"
    with pytest.raises(ValueError, match="convention='nope'"):
        labels.scheme_for_convention("nope")


def test_unknown_scheme_lists_the_names():
    with pytest.raises(ValueError, match=r"scheme='ped1999' is unknown; expected one of \['brats2021', 'gli2023'"):
        get_scheme("ped1999")


def test_own_scheme_is_none_exactly_where_the_canonical_labels_serve():
    # three tissue labels, nested WT/TC/ET: the canonical labels serve; RC, CC, GTV or extra regions do not
    canonical = {"brats2021", "gli2023", "ped2023", "men", "ssa", "goat", "msd"}
    assert own_scheme(None) is None
    for name, s in SCHEMES.items():
        got = own_scheme(name)
        assert (got is None) == (name in canonical), name
        assert got is None or got is s
    assert own_scheme(SCHEMES["ped2024"]) is SCHEMES["ped2024"]
    with pytest.raises(ValueError, match="unknown"):
        own_scheme("brats1999")


@pytest.mark.parametrize(
    "case_id,edition,expected,task",
    [
        ("BraTS-GLI-00000-000", None, "gli2024", "GLI"),
        ("BraTS-GLI-00000-000", 2023, "gli2023", "GLI"),
        ("BraTS-GLI-00005-100", None, "gli2024", "GLI post-treatment"),
        ("BraTS-GLI-00005-101", 2023, "gli2024", "GLI post-treatment"),  # no post-treatment data before 2024
        ("BraTS-MET-00001-000", None, "met2024", "MET"),
        ("BraTS-MEN-00001-000", None, "men", "MEN"),
        ("BraTS-MEN-RT-0000-1", None, "men_rt", "MEN-RT"),
        ("BraTS-SSA-00001-000", None, "ssa", "SSA"),
        ("BraTS-PED-00001-000", 2023, "ped2023", "PED"),
        ("BraTS2021_00000", None, "brats2021", "BraTS 2021"),
        ("BraTS20_Training_001", None, "brats2021", "BraTS 2020"),
        ("BraTS20_Validation_001", None, "brats2021", "BraTS 2020"),
        ("Brats18_CBICA_AAA_1", None, "brats2021", "BraTS 2017-2019"),
        ("Brats17_TCIA_201_1", None, "brats2021", "BraTS 2017-2019"),
        ("BRATS_001", None, "msd", "MSD Task01"),
    ],
)
def test_detect_scheme_from_the_case_id(case_id, edition, expected, task):
    found = detect_scheme(case_id, edition=edition)
    assert (found.scheme.name, found.task, found.note) == (expected, task, None)


@pytest.mark.parametrize("edition", [None, 2024, 2025])
def test_ped_defaults_to_the_current_scheme_and_says_so(edition):
    found = detect_scheme("BraTS-PED-00001-000", edition=edition)
    assert found.scheme.name == "ped2024" and found.task == "PED"
    assert "BraTS-PED-00001-000" in found.note and "'ped2024'" in found.note and "'ped2023'" in found.note


@pytest.mark.parametrize("case_id", ["case_001", "patient7", "BraTS-XYZ-00001-000", "brats_x"])
def test_an_undecidable_id_is_refused_naming_the_option(case_id):
    with pytest.raises(ValueError, match="--scheme") as err:
        detect_scheme(case_id)
    assert repr(case_id) in str(err.value) and "scheme=" in str(err.value) and "'ped2024'" in str(err.value)


def test_detect_scheme_checks_edition():
    with pytest.raises(ValueError, match="edition must be an integer"):
        detect_scheme("BraTS-PED-00001-000", edition="2023")


def test_ped_region_masks_from_source_values():
    ped = get_scheme("ped2024")
    label = np.array([[0, 1, 2], [3, 4, 3]])  # ET, NET, CC, ED, CC
    masks = {r: ped.region_mask(label, r) for r in ped.region_names}
    assert masks["WT"].tolist() == [[False, True, True], [True, True, True]]
    assert masks["TC"].tolist() == [[False, True, True], [True, False, True]]
    assert masks["ET"].tolist() == [[False, True, False], [False, False, False]]
    assert masks["ED"].tolist() == [[False, False, False], [False, True, False]]
    # Removing label 3 (CC) changes exactly the regions that hold CC.
    without_cc = np.where(label == 3, 0, label)
    changed = {r for r in ped.region_names if not np.array_equal(ped.region_mask(without_cc, r), masks[r])}
    assert changed == {"WT", "TC", "CC"}
    stacked = ped.region_masks(label)
    assert stacked.shape == (2, 3, 6) and stacked[..., 4].tolist() == masks["CC"].tolist()


def test_gli2024_rc_is_in_no_tumour_region():
    gli = get_scheme("gli2024")
    label = np.array([0, 1, 2, 3, 4])
    changed = {
        r
        for r in gli.region_names
        if not np.array_equal(gli.region_mask(np.where(label == 4, 0, label), r), gli.region_mask(label, r))
    }
    assert changed == {"RC"}


def test_check_values_names_unknown_values():
    assert get_scheme("brats2021").check_values([4, 0, 2, 2]) == (0, 2, 4)
    with pytest.raises(ValueError, match=r"label values \[3\] are not in the 'brats2021' scheme"):
        get_scheme("brats2021").check_values([0, 3, 4])
    with pytest.raises(ValueError, match="region must be one of"):
        get_scheme("men_rt").region_values("WT")


# ----------------------------------------------------------------------------- the reader


def _case(root: Path, case_id: str, file_label: np.ndarray | None, *, sep: str = "-") -> Path:
    """A case in the 2023+ naming; ``file_label`` holds SOURCE values (written as they are)."""
    images, _ = make_case(0)
    folder = root / case_id
    for modality, token in zip(io.MODALITIES, ("t2f", "t1n", "t1c", "t2w")):
        io.save_nifti(images[modality], folder / f"{case_id}{sep}{token}.nii.gz", affine=LPS)
    if file_label is not None:
        io.save_nifti(file_label.astype(np.uint8), folder / f"{case_id}{sep}seg.nii.gz", affine=LPS)
    return folder


def _source_label(values: tuple[int, ...]) -> np.ndarray:
    label = np.zeros((12, 10, 8), np.uint8)
    for k, v in enumerate(values):
        label[2 + k, 2:5, 2:5] = v
    return label


def _raw_mask(path: Path) -> np.ndarray:
    """The voxels of a mask file exactly as stored (no conversion)."""
    return np.asarray(nib.load(str(path)).dataobj)


# Hand-computed from the PED 2024 labels (1 ET, 2 NET, 3 CC, 4 ED) and the internal order
# (core NET = 1, edema ED = 2, ET = 3, then CC = 4): source value -> internal label.
PED_SOURCE_TO_INTERNAL = {0: 0, 1: 3, 2: 1, 3: 4, 4: 2}


def test_a_ped2024_case_reads_into_its_internal_labels_and_writes_back(tmp_path):
    cid = "BraTS-PED-00001-000"
    source = _source_label((1, 2, 3, 4))  # ET, NET, CC, ED: 9 voxels each
    folder = _case(tmp_path / "data", cid, source)
    ds = io.open_dataset(tmp_path / "data")
    assert ds.layout == "brats2023" and ds.refs[0].scheme == "ped2024"
    assert "'ped2023'" in ds.refs[0].scheme_note  # how to pick the 2023 scheme
    case = io.read_case(folder)
    assert case.scheme == "ped2024" and case.layout == "brats2023"
    expected = np.vectorize(PED_SOURCE_TO_INTERNAL.get)(source).astype(np.uint8)
    assert [int(expected[2 + k, 3, 3]) for k in range(4)] == [3, 1, 4, 2]
    np.testing.assert_array_equal(case.label, expected)
    assert case.label.dtype == np.uint8
    # read -> write -> the file's raw voxels are the SOURCE values again, and the header names the scheme
    out = io.write_label(case.label, case, tmp_path / "pred.nii.gz")
    np.testing.assert_array_equal(_raw_mask(out), source)
    assert io.stamped_convention(nib.load(str(out)).header) == "ped2024"
    np.testing.assert_array_equal(io.read_case(folder).label, case.label)  # reading is repeatable
    assert io.validate_dataset(tmp_path / "data") == []
    # a stated convention still writes canonical labels in it, as before
    canon = io.write_label(np.where(case.label == 4, 0, case.label), case, tmp_path / "c.nii.gz", convention="brats")
    assert set(np.unique(_raw_mask(canon))) <= {0, 1, 2, 4}


def test_write_label_refuses_labels_outside_the_scheme(tmp_path):
    folder = _case(tmp_path, "BraTS-PED-00001-000", _source_label((1, 2)))
    case = io.read_case(folder)
    bad = case.label.copy()
    bad[0, 0, 0] = 5
    with pytest.raises(io.DataError, match=r"case 'BraTS-PED-00001-000': internal label map holds \[5\]") as err:
        io.write_label(bad, case, tmp_path / "bad.nii.gz")
    assert str(tmp_path / "bad.nii.gz") in str(err.value) and "4 CC" in str(err.value)
    assert not (tmp_path / "bad.nii.gz").exists()


def test_a_mask_value_outside_the_scheme_is_refused_naming_the_file(tmp_path):
    folder = _case(tmp_path, "BraTS-PED-00001-000", _source_label((1, 5)))
    seg = folder / "BraTS-PED-00001-000-seg.nii.gz"
    with pytest.raises(io.DataError) as err:
        io.read_case(folder)
    assert str(err.value).startswith(f"{seg}: case 'BraTS-PED-00001-000': label values 5 (9 voxels)")
    assert "'ped2024' scheme" in str(err.value) and err.value.path == seg


def test_a_ped2023_case_reads_when_stated(tmp_path):
    label = _source_label((1, 2, 3))
    folder = _case(tmp_path, "BraTS-PED-00001-000", label)
    for case in (io.read_case(folder, scheme="ped2023"), io.open_dataset(tmp_path, scheme="ped2023")[0]):
        assert case.scheme == "ped2023" and case.convention == "brats2023"
        np.testing.assert_array_equal(case.label, label)  # 1 NETC, 2 SNFH, 3 ET = canonical 1, 2, 3
    assert io.validate_dataset(tmp_path, scheme="ped2023") == []
    # a stated convention reads as it always did
    np.testing.assert_array_equal(io.read_case(folder, convention="brats2023").label, label)
    # the same file read as PED 2024+ means other things: 1 ET -> 3, 2 NET -> 1, 3 CC -> 4
    np.testing.assert_array_equal(io.read_case(folder).label, np.vectorize(PED_SOURCE_TO_INTERNAL.get)(label))


@pytest.mark.parametrize("task", ["GLI", "MET"])
def test_gli_and_met_read_the_resection_cavity(tmp_path, task):
    cid = f"BraTS-{task}-00001-100"
    name = f"{task.lower()}2024"
    source = _source_label((1, 2, 3, 4))
    folder = _case(tmp_path / "data", cid, source)
    ds = io.open_dataset(tmp_path / "data")
    assert ds.layout == "brats2023" and ds.refs[0].scheme == name
    case = io.read_case(folder)
    assert case.scheme == name and case.convention == "brats2023"
    # internal labels 1 NETC, 2 SNFH, 3 ET, 4 RC: the GLI/MET file values themselves
    np.testing.assert_array_equal(case.label, source)
    assert int((case.label == 4).sum()) == 9
    out = io.write_label(case.label, case, tmp_path / "pred.nii.gz")
    np.testing.assert_array_equal(_raw_mask(out), source)
    assert io.stamped_convention(nib.load(str(out)).header) == name
    assert io.validate_dataset(tmp_path / "data") == []
    # the explicit post-treatment convention keeps the old reading (the cavity as background)
    post = io.read_case(folder, convention="brats2024_post").label
    assert post.max() == 3 and not post[source == 4].any()
    np.testing.assert_array_equal(post[source != 4], source[source != 4])


@pytest.mark.parametrize("task", ["MEN", "SSA", "GLI"])
def test_three_label_tasks_read_as_before(tmp_path, task):
    cid = f"BraTS-{task}-00001-000"
    label = _source_label((1, 2, 3))
    case = io.read_case(_case(tmp_path, cid, label))
    np.testing.assert_array_equal(case.label, label)
    assert case.layout == "brats2023" and case.convention == "brats2023"


def _men_rt_case(root: Path) -> Path:
    cid = "BraTS-MEN-RT-0000-1"
    folder = root / cid
    images, _ = make_case(0)
    io.save_nifti(images["t1ce"], folder / f"{cid}_t1c.nii.gz", affine=LPS)
    io.save_nifti(_source_label((1,)), folder / f"{cid}_gtv.nii.gz", affine=LPS)
    return folder


def test_men_rt_case_is_read_not_refused(tmp_path):
    """MEN-RT reads (tests/io/test_menrt.py has the rest): T1c alone, 1 GTV as internal 1."""
    folder = _men_rt_case(tmp_path)
    case = io.read_case(folder)
    assert case.scheme == "men_rt" and case.layout == "men_rt" and case.available_modalities == ("t1ce",)
    np.testing.assert_array_equal(case.label, _source_label((1,)))
    assert io.validate_dataset(tmp_path) == []
    assert io.dataset_summary(tmp_path)["scheme"] == "men_rt"


def test_refs_carry_their_scheme(tmp_path):
    images, label = make_case(0)
    for layout in io.LAYOUTS:
        io.write_case(tmp_path / layout, layout, io.case_id_for(layout, 0), images, label, LPS)
        ref = io.open_dataset(tmp_path / layout).refs[0]
        assert ref.scheme == {"brats2023": "gli2024", "msd": "msd"}.get(layout, "brats2021"), layout
        assert ref.convention == io.layouts.LAYOUT_CONVENTION[layout]
    # an id without a task prefix takes its layout's scheme, as before
    io.write_case(tmp_path / "plain", "brats2021", "case_7", images, label, LPS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        case = io.read_case(tmp_path / "plain" / "case_7")
    assert case.scheme == "brats2021" and case.convention == "brats"
    np.testing.assert_array_equal(case.label, label)


# ----------------------------------------------------------------------------- docs


def test_docs_editions_table_is_the_scheme_data():
    text = DOC.read_text()
    block = re.search(r"<!-- editions:begin -->\n(.*?)\n<!-- editions:end -->", text, re.S)
    assert block is not None, f"{DOC}: no editions table markers"
    assert block.group(1) == schemes.editions_table(), (
        f"{DOC} is out of date: regenerate it with python -c 'from brainseg_tf import schemes; "
        f"print(schemes.editions_table())'"
    )


def test_docs_examples_detect_their_scheme():
    for name, (_, examples, edition) in schemes.TASKS.items():
        if edition == "stated":
            continue
        for example in examples.split(", "):
            assert detect_scheme(example, edition=edition).scheme.name == name, example


def test_docs_readable_schemes_read(tmp_path, monkeypatch):
    """What the docs call readable reads (the MEN-RT messages the docs quote: tests/io/test_menrt.py)."""
    monkeypatch.chdir(tmp_path)
    for name, scheme in SCHEMES.items():
        assert not schemes._today_text(scheme).startswith("refused"), name
    _men_rt_case(Path("menrt"))
    assert io.validate_dataset("menrt") == []
    _case(Path("ped"), "BraTS-PED-00001-000", _source_label((1, 2, 3, 4)))
    _case(Path("gli"), "BraTS-GLI-00001-100", _source_label((1, 2, 3, 4)))
    for folder in ("ped", "gli"):
        assert io.validate_dataset(folder) == [], folder


def test_cli_scheme_option(tmp_path, capsys):
    from brainseg_tf import cli

    _case(tmp_path, "BraTS-PED-00001-000", _source_label((1, 2, 3)))
    assert cli.main(["info", str(tmp_path), "-q"]) == 0  # read as PED 2024+: 1 ET, 2 NET, 3 CC
    out = capsys.readouterr().out
    assert "labels: scheme ped2024: 1 ET, 2 NET, 3 CC, 4 ED" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  ")] == ["NET", "ED", "ET", "CC"]
    assert re.search(r"^  ED +0\.00 .* 0/1$", out, re.M)  # no 4 in the file: no edema
    assert cli.main(["info", str(tmp_path), "-q", "--scheme", "ped2023"]) == 0
    out = capsys.readouterr().out
    assert "(labels: brats2023)" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  ")] == ["NETC", "SNFH", "ET"]
    assert cli.main(["validate", str(tmp_path), "-q", "--scheme", "ped2023"]) == 0
    assert cli.main(["validate", str(tmp_path), "-q"]) == 0
    capsys.readouterr()
    assert cli.main(["info", str(tmp_path), "-q", "--scheme", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "ped2023" in err  # the names it knows
