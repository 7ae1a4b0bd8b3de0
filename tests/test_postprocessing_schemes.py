"""Postprocessing in a label scheme's internal labels (issue 21): the rules generalised, the
selection over the scheme's regions, and the default unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import LPS, make_case

from brainseg_tf import io
from brainseg_tf import postprocessing as pp
from brainseg_tf.schemes import SCHEMES, get_scheme

# Hand-written: the internal label a voxel leaving the region takes (internal labels: GLI/MET 2024
# 1 NETC, 2 SNFH, 3 ET, 4 RC; PED 2024 1 NET, 2 ED, 3 ET, 4 CC).
DEMOTED = {
    "gli2024": {"WT": 0, "TC": 2, "ET": 1},
    "met2024": {"WT": 0, "TC": 2, "ET": 1},
    "ped2024": {"WT": 0, "TC": 2, "ET": 1},
}


def test_demotion_is_the_canonical_one_for_canonical_schemes_and_hand_checked_for_the_others():
    for name, scheme in SCHEMES.items():
        if scheme.is_canonical:  # the generalisation reproduces ET -> NCR, TC -> ED, WT -> BG
            assert {r: pp._enclosing_label(scheme, r) for r in ("WT", "TC", "ET")} == {"WT": 0, "TC": 2, "ET": 1}
            assert {r: pp.demoted_label(r, name) for r in ("WT", "TC", "ET")} == {"WT": 0, "TC": 2, "ET": 1}
    for name, expected in DEMOTED.items():
        assert {r: pp.demoted_label(r, name) for r in expected} == expected
    with pytest.raises(ValueError, match="not a region of the 'men_rt' scheme"):
        pp.demoted_label("ET", "men_rt")


def _ped_case() -> np.ndarray:
    """PED internal labels: a tumour (ED shell, NET core, ET, a CC) and a stray 2-voxel ET blob."""
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[2:12, 2:12, 2:12] = 2  # ED
    lab[4:10, 4:10, 4:10] = 1  # NET
    lab[5:8, 5:8, 5:8] = 3  # ET
    lab[8:10, 8:10, 8:10] = 4  # CC
    return lab


def test_rules_act_in_internal_labels_and_never_touch_labels_outside_the_region():
    lab = _ped_case()
    lab[14, 14, 14:16] = 3  # stray ET: its own WT, TC and ET component
    out = pp.remove_small_components(lab, "ET", 5, scheme="ped2024")
    assert (out[14, 14, 14:16] == 1).all() and (out[lab != 3] == lab[lab != 3]).all()  # ET -> NET
    out = pp.remove_small_components(lab, "TC", 5, scheme="ped2024")
    assert (out[14, 14, 14:16] == 2).all()  # TC -> ED
    out = pp.largest_component(lab, "WT", scheme="ped2024")
    assert (out[14, 14, 14:16] == 0).all() and (out[4:10, 4:10, 4:10] == lab[4:10, 4:10, 4:10]).all()
    # CC (4) is kept: it is in TC and WT, and no rule on ET changes it
    assert (pp.apply(lab, [pp.Rule("largest_component", "ET")], scheme="ped2024")[8:10, 8:10, 8:10] == 4).all()
    # ET -> the scheme's core label
    small = np.zeros((6, 6, 6), np.uint8)
    small[1, 1, 1:3] = 3
    assert pp.et_to_ncr_below(small, 5, scheme="gli2024")[1, 1, 1] == 1
    assert pp.Rule("et_to_ncr", "ET", 5).describe("ped2024") == "ET < 5 voxels -> NET"
    assert pp.Rule("et_to_ncr", "ET", 5).describe() == "ET < 5 voxels -> NCR"
    # GLI 2024: the resection cavity (4) is outside WT; removing WT components leaves it
    gli = np.zeros((8, 8, 8), np.uint8)
    gli[1, 1, 1], gli[5:7, 5:7, 5:7] = 2, 4
    out = pp.remove_small_components(gli, "WT", 3, scheme="gli2024")
    assert out[1, 1, 1] == 0 and (out[5:7, 5:7, 5:7] == 4).all()
    # labels beyond the canonical ones need the scheme
    with pytest.raises(ValueError, match="expected canonical labels 0-3"):
        pp.apply(lab, [pp.Rule("largest_component", "ET")])
    with pytest.raises(ValueError, match="'met2024' scheme's internal labels"):
        pp.apply(np.full((3, 3, 3), 5, np.uint8), [], scheme="met2024")


def _canonical_cases(n: int = 5) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    refs, preds = {}, {}
    for i in range(n):
        ref = np.zeros((20, 20, 20), np.uint8)
        ref[4:14, 4:14, 4:14] = 2
        ref[6:11, 6:11, 6:11] = 1
        ref[7:10, 7:10, 7:10] = 3
        pred = ref.copy()
        noise = rng.random(ref.shape) < 0.01
        pred[noise & (ref == 0)] = rng.integers(1, 4, size=int((noise & (ref == 0)).sum()))
        refs[f"c{i}"], preds[f"c{i}"] = ref, pred
    return preds, refs


def test_default_selection_is_unchanged_by_naming_a_canonical_scheme():
    preds, refs = _canonical_cases()
    plain = pp.select(preds, refs)
    assert plain.rules  # the noise makes some rule worth keeping
    for name in ("brats2021", "gli2023", "msd"):
        named = pp.select(preds, refs, scheme=name)
        assert named.to_dict() == plain.to_dict() and named.scheme is None
    assert "scheme" not in plain.to_dict()


def test_selection_on_ped_scores_its_six_regions_and_removes_stray_et():
    refs, preds = {}, {}
    for i in range(4):
        ref = _ped_case()
        pred = ref.copy()
        pred[14, 1 + 3 * i, 14] = 3  # a false-positive ET voxel far from the tumour
        refs[f"c{i}"], preds[f"c{i}"] = ref, pred
    selection = pp.select(preds, refs, scheme="ped2024")
    assert selection.regions == ("WT", "TC", "ET", "NET", "CC", "ED") and selection.scheme == "ped2024"
    assert selection.final["mean"] == pytest.approx(1.0) and selection.baseline["mean"] < 1.0
    assert selection.rules[0] == pp.Rule("largest_component", "WT")  # the first candidate that fixes all
    assert selection.to_dict()["scheme"] == "ped2024"
    for cid in preds:
        np.testing.assert_array_equal(pp.apply(preds[cid], selection.rules, scheme="ped2024"), refs[cid])
    with pytest.raises(ValueError, match="region='GTV' is not a region of the 'ped2024' scheme"):
        pp.select(preds, refs, scheme="ped2024", regions=["GTV"])


def test_select_for_folders_takes_the_scheme_from_the_pairs(tmp_path: Path):
    scheme = get_scheme("ped2024")
    root, pred_dir = tmp_path / "ref", tmp_path / "pred"
    images, _ = make_case(0, (16, 16, 16))
    for i in range(3):
        case_id = f"BraTS-PED-0000{i}-000"
        ref = _ped_case()
        for modality, token in zip(io.MODALITIES, ("t2f", "t1n", "t1c", "t2w")):
            io.save_nifti(images[modality], root / case_id / f"{case_id}-{token}.nii.gz", affine=LPS)
        io.save_nifti(scheme.from_internal(ref), root / case_id / f"{case_id}-seg.nii.gz", affine=LPS)
        pred = ref.copy()
        pred[14, 1 + 3 * i, 14] = 3
        io.save_nifti(scheme.from_internal(pred), pred_dir / f"{case_id}.nii.gz", affine=LPS)  # no stamp
    selection = pp.select_for_folders(pred_dir, root)
    assert selection.scheme == "ped2024" and len(selection.regions) == 6 and selection.rules
    assert (pred_dir / pp.SELECTION_FILE).is_file()
    with pytest.raises(ValueError, match="scheme='brats2021' but the cases"):
        pp.select_for_folders(pred_dir, root, scheme="brats2021")


def test_record_refuses_a_selection_of_another_scheme(tmp_path: Path):
    from brainseg_tf.card import ModelCard, load_card

    refs = {"c0": _ped_case()}
    preds = {"c0": _ped_case()}
    preds["c0"][14, 1, 14] = 3
    selection = pp.select(preds, refs, scheme="ped2024")
    ModelCard(modalities=["flair", "t1", "t1ce", "t2"], head="sigmoid").save(tmp_path)  # brats2021
    with pytest.raises(ValueError, match="learned the 'brats2021' scheme but the selection was made in 'ped2024'"):
        pp.record(selection, tmp_path)
    ModelCard(modalities=["flair", "t1", "t1ce", "t2"], head="sigmoid", scheme="ped2024").save(tmp_path)
    card = pp.record(selection, tmp_path)
    assert pp.rules_from_card(card.postprocessing) == selection.rules
    assert load_card(tmp_path).postprocessing == card.postprocessing


@pytest.mark.parametrize("scheme", ["gli2024", "met2024", "ped2024"])
def test_rules_agree_with_the_predictor_postprocessing(scheme):
    # inference.postprocess runs the canonical rules on stand-in labels (card.postprocessing_stand_ins);
    # the generalised rules here must give the same labels on any map
    from scipy import ndimage

    from brainseg_tf.inference import postprocess

    rng = np.random.default_rng(1)
    n = get_scheme(scheme).n_classes
    for _ in range(3):
        blobs = ndimage.binary_dilation(rng.random((14, 12, 10)) < 0.02, iterations=1)
        lab = np.where(blobs, rng.integers(1, n, size=blobs.shape), 0).astype(np.uint8)  # many components
        post = pp.Postprocessing(
            et_min_voxels=30,
            min_component_voxels=4,
            largest_component=["TC"],
            min_component_voxels_tc=6,
            min_component_voxels_et=3,
        )
        ours = pp.apply(lab, post, scheme=scheme)
        theirs = postprocess(
            lab,
            et_min_voxels=30,
            min_component_voxels=4,
            largest_component=["TC"],
            min_component_voxels_tc=6,
            min_component_voxels_et=3,
            scheme=scheme,
        )
        np.testing.assert_array_equal(ours, theirs)
        assert not np.array_equal(ours, lab)  # the rules did something
