"""Synthetic BraTS 2024/2025 task layouts (gli2024, met2024, ped2024): ids, layout and scheme detection,
the SOURCE values in the mask files, read -> write round trips, and the task phantoms' labels against
the default phantom they are built from."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brainseg_tf import cli, io
from brainseg_tf.schemes import get_scheme
from brainseg_tf.synthetic import (
    SYNTH_LAYOUTS,
    TASK_LAYOUTS,
    case_seed,
    has_resection,
    make_dataset,
    synthesize_case,
)

TINY = (32, 32, 24)
# Hand-written from reference/brats-editions.md: the values each task's masks may hold.
FILE_VALUES = {"gli2024": {0, 1, 2, 3, 4}, "met2024": {0, 1, 2, 3, 4}, "ped2024": {0, 1, 2, 3, 4}}
ID_PATTERN = {
    "gli2024": r"BraTS-GLI-\d{5}-1\d\d",  # post-treatment time points
    "met2024": r"BraTS-MET-\d{5}-\d{3}",
    "ped2024": r"BraTS-PED-\d{5}-\d{3}",
}
# PED internal (1 NET, 2 ED, 3 ET, 4 CC) -> file value (1 ET, 2 NET, 3 CC, 4 ED), by hand.
PED_INTERNAL_TO_FILE = {0: 0, 1: 2, 2: 4, 3: 1, 4: 3}


def _raw(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module", params=sorted(TASK_LAYOUTS))
def task_dataset(request, tmp_path_factory):
    layout = request.param
    root = make_dataset(tmp_path_factory.mktemp(layout), layout=layout, n_cases=2, shape=TINY, seed=0, progress=False)
    return layout, root


def test_task_layouts_are_synth_layouts():
    assert SYNTH_LAYOUTS[-3:] == ("gli2024", "met2024", "ped2024")
    assert [has_resection("gli2024", i) for i in range(6)] == [True, True, False, True, True, False]
    assert [has_resection("met2024", i) for i in range(4)] == [True, False, True, False]
    assert not any(has_resection(layout, i) for layout in ("ped2024", "brats2023") for i in range(3))


def test_open_dataset_detects_layout_and_scheme(task_dataset):
    layout, root = task_dataset
    ds = io.open_dataset(root)
    assert ds.layout == "brats2023" and len(ds) == 2
    for ref in ds.refs:
        assert re.fullmatch(ID_PATTERN[layout], ref.case_id) and ref.scheme == layout
        assert sorted(p.name for p in ref.files) == sorted(
            f"{ref.case_id}-{t}.nii.gz" for t in ("t2f", "t1n", "t1c", "t2w", "seg")
        )
    assert io.validate_dataset(root) == []


def test_files_hold_the_schemes_source_values(task_dataset):
    layout, root = task_dataset
    ds = io.open_dataset(root)
    seen: set[int] = set()
    for i, ref in enumerate(ds.refs):
        raw = _raw(ref.label)
        assert raw.dtype == np.uint8
        values = set(np.unique(raw).tolist())
        assert values <= FILE_VALUES[layout], (ref.case_id, values)
        seen |= values
        assert io.stamped_convention(nib.load(str(ref.label)).header) == layout
        synth = synthesize_case(case_seed(0, i), TINY, task=layout, resection=has_resection(layout, i))
        if layout == "ped2024":
            expected = np.vectorize(PED_INTERNAL_TO_FILE.get)(synth.label)
        else:  # GLI/MET: file values are the internal labels
            expected = synth.label
        np.testing.assert_array_equal(raw, expected)
        if layout != "ped2024":  # RC exactly in the cases that have a cavity
            assert (4 in values) == has_resection(layout, i), (ref.case_id, values)
    assert seen == FILE_VALUES[layout]  # every label at least once across the cases


def test_read_write_round_trip_reproduces_the_file(task_dataset, tmp_path):
    layout, root = task_dataset
    for ref in io.open_dataset(root).refs:
        case = io.read_case(ref)
        assert case.scheme == layout and case.label.max() <= 4
        out = io.write_label(case.label, case, tmp_path / f"{case.case_id}.nii.gz")
        np.testing.assert_array_equal(_raw(out), _raw(ref.label))
        assert io.stamped_convention(nib.load(str(out)).header) == layout


def test_gli2024_is_the_default_glioma_plus_a_cavity():
    seed = case_seed(0, 0)
    plain = synthesize_case(seed, TINY)
    same = synthesize_case(seed, TINY, task="gli2024")
    np.testing.assert_array_equal(same.label, plain.label)  # the task stream leaves the glioma alone
    for m in plain.images:
        np.testing.assert_array_equal(same.images[m], plain.images[m])
    post = synthesize_case(seed, TINY, task="gli2024", resection=True)
    rc = post.label == 4
    assert rc.any() and post.scheme == "gli2024"
    np.testing.assert_array_equal(post.label[~rc], plain.label[~rc])
    assert plain.label[rc].any()  # the cavity is cut into the tumour, not somewhere else
    assert post.volumes_ml["rc"] == pytest.approx(rc.sum() / 1000.0 * np.prod(post.spacing))
    assert post.volumes_ml["wt"] == pytest.approx(np.isin(post.label, (1, 2, 3)).sum() / 1000.0)
    # fluid: the cavity is darker than the brain on FLAIR and brighter on T2 (medians)
    brain = post.brain_mask & (post.label == 0)
    assert np.median(post.images["t2"][rc]) > np.median(post.images["t2"][brain])
    assert np.median(post.images["flair"][rc]) < np.median(post.images["flair"][brain])


def test_ped2024_maps_the_phantoms_parts():
    for i in range(4):
        seed = case_seed(3, i)
        plain = synthesize_case(seed, TINY)
        ped = synthesize_case(seed, TINY, task="ped2024")
        assert ped.scheme == "ped2024"
        np.testing.assert_array_equal(ped.label == 0, plain.label == 0)  # the same tumour
        np.testing.assert_array_equal(ped.label == 2, plain.label == 2)  # edema stays edema (internal 2)
        if plain.kind == "no_et":  # LGG-like: all non-enhancing tumour
            assert set(np.unique(ped.label[plain.label > 0])) <= {1, 2}
            continue
        assert set(np.unique(ped.label[plain.label == 1])) <= {4}  # necrotic centre -> cyst (CC)
        assert set(np.unique(ped.label[plain.label == 3])) <= {1, 3}  # rim -> ET or NET
        wt = np.isin(ped.label, (1, 2, 3, 4)).sum() / 1000.0
        assert ped.volumes_ml["wt"] == pytest.approx(wt) and ped.volumes_ml["cc"] == pytest.approx(
            (ped.label == 4).sum() / 1000.0
        )


def test_met2024_has_several_lesions():
    counts = []
    for i in range(3):
        case = synthesize_case(case_seed(0, i), (64, 64, 48), task="met2024")
        _, n = ndimage.label(np.isin(case.label, (1, 3)))  # tumour cores
        counts.append(n)
        assert case.grade == "HGG"  # metastases enhance
    assert max(counts) >= 2, counts


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        synthesize_case(0, TINY, task="men_rt")
    with pytest.raises(ValueError, match="resection=True needs task='gli2024' or 'met2024'"):
        synthesize_case(0, TINY, task="ped2024", resection=True)
    with pytest.raises(ValueError, match=r"layout='ped2099' is unknown; expected one of \[.*'ped2024'\]"):
        make_dataset("unused", layout="ped2099")


def test_cli_synth_and_info_for_ped2024(tmp_path, capsys):
    out = tmp_path / "ped"
    assert (
        cli.main(["synth", "--layout", "ped2024", "--cases", "2", "--shape", *map(str, TINY), "--out", str(out), "-q"])
        == 0
    )
    assert "wrote 2 synthetic ped2024 case(s)" in capsys.readouterr().out
    assert cli.main(["info", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "layout     brats2023 (labels: scheme ped2024: 1 ET, 2 NET, 3 CC, 4 ED)" in text
    assert [line.split()[0] for line in text.splitlines() if line.startswith("  ")] == ["NET", "ED", "ET", "CC"]
    assert get_scheme("ped2024").class_names[1:] == ("NET", "ED", "ET", "CC")
