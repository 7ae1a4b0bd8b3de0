"""Each BraTS year's scoring rules (brainseg_tf.scoring) on small hand-computed cases.

The numbers come from the parameters the official code states (reference/brats-editions.md
section 4): 2023 GLI dilation 3 / 50 mm^3 / 374; 2024 GLI dilation 3 (NETC, RC 5), thresholds 20
(ET 10), predicted groups of at most the threshold removed, 337; 2025 one-to-one matching, no
dilation, F1 = tp / (tp + (fp + fn) / 2), MET split at 20 mm^3.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from brainseg_tf import evaluation as E
from brainseg_tf import io
from brainseg_tf import scoring as S
from brainseg_tf.cli import main

SHAPE = (40, 40, 30)


def _cube(lo: tuple[int, int, int], size: tuple[int, int, int], shape=SHAPE) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    out[tuple(slice(a, a + s) for a, s in zip(lo, size))] = True
    return out


def _wt(mask: np.ndarray) -> np.ndarray:
    """Canonical labels: ED (2) where ``mask``, so WT is the mask and TC/ET are empty."""
    return np.where(mask, 2, 0).astype(np.uint8)


def _row(rows: list[dict], region: str) -> dict:
    return next(r for r in rows if r["region"] == region)


# ------------------------------------------------------------------------------ rule table


def test_grid_diagonals():
    assert S.grid_diagonal((240, 240, 155)) == pytest.approx(373.12866, abs=1e-5)
    # 2025 GLI's MNI grid: sqrt(182^2 + 218^2 + 182^2) = sqrt(113772)
    assert S.grid_diagonal((182, 218, 182)) == pytest.approx(math.sqrt(113772))
    assert S.grid_diagonal((91, 109, 91), (2.0, 2.0, 2.0)) == pytest.approx(math.sqrt(113772))
    met = S.get_rules("2024", "MET")  # the array's diagonal in voxels, as the 2024 MET code
    assert met.penalty_for((182, 218, 182), (0.5, 0.5, 0.5)) == pytest.approx(337.301, abs=1e-3)
    legacy = S.get_rules("legacy")  # shape x spacing
    assert legacy.penalty_for((240, 240, 155), (1, 1, 1)) == pytest.approx(E.LEGACY_EMPTY_HD95)
    assert legacy.penalty_for((182, 218, 182), (1, 1, 1)) == pytest.approx(337.301, abs=1e-3)
    assert S.get_rules("2024", "GLI").penalty_for((240, 240, 155), (1, 1, 1)) == 337.0


def test_rule_parameters_and_defaults():
    gli = S.get_rules("2024", "GLI")
    # the misspelt "SFNH" test in the official code leaves SNFH at 3
    assert (gli.dilation_for("NETC"), gli.dilation_for("RC"), gli.dilation_for("SNFH"), gli.dilation_for("WT")) == (
        5,
        5,
        3,
        3,
    )
    assert (gli.min_volume_for("ET"), gli.min_volume_for("TC")) == (10.0, 20.0)
    assert (S.get_rules("2023", "MET").dilation, S.get_rules("2023", "MET").min_volume) == (1, 2.0)
    assert S.resolve_rules("auto", "gli2024").name == "2024-gli"
    assert S.resolve_rules("auto", "brats2021").name == "2023-gli"
    assert S.resolve_rules("auto", None).name == "2023-gli"
    assert S.resolve_rules("auto", "goat").name == "2025-goat"
    assert S.resolve_rules("2025", "met2024").small_lesion_volume == 20.0
    assert S.resolve_rules("2024", "ped2024").describe() == "the 2024 PED rules"
    assert set(S.DEFAULT_RULES) == set(S.SCHEME_TASKS) == set(__import__("brainseg_tf.schemes").schemes.SCHEMES)
    with pytest.raises(ValueError, match="rules='2019' is unknown"):
        S.get_rules("2019")
    with pytest.raises(ValueError, match="the 2024 rules have no task 'GoAT'"):
        S.resolve_rules("2024", "goat")


# ------------------------------------------------------------------------------ 2023 vs 2024


def test_small_false_positive_counts_in_2023_and_is_removed_in_2024():
    ref = _wt(_cube((5, 5, 5), (5, 5, 5)))  # 125 voxels, kept by both (> 50, > 20)
    pred = _wt(_cube((5, 5, 5), (5, 5, 5)) | _cube((30, 30, 20), (2, 2, 2)))  # + 8 voxels far away
    r23 = _row(E.evaluate_case(pred, ref, rules="2023"), "WT")
    # 2023: the 8-voxel component is a false positive: (1 + 0) / 2, (0 + 374) / 2
    assert (r23["lesion_dice"], r23["lesion_hd95"], r23["lesion_fp"]) == (0.5, 187.0, 1)
    r24 = _row(E.evaluate_case(pred, ref, rules=S.get_rules("2024", "GLI")), "WT")
    # 2024: a predicted group of 8 <= 20 voxels is removed before false positives are counted
    assert (r24["lesion_dice_2024"], r24["lesion_hd95_2024"], r24["lesion_fp_2024"]) == (1.0, 0.0, 0)
    # a perfect lesion's NSD is 2 / (2 + 1e-8): the official formula's epsilon
    assert (r24["lesion_nsd05_2024"], r24["lesion_nsd10_2024"]) == (2 / (2 + 1e-8), 2 / (2 + 1e-8))
    assert r24["lesion_tp_2024"] == 1
    # a 27-voxel false positive survives (> 20): Dice 1/2, HD95 (0 + 337) / 2
    pred = _wt(_cube((5, 5, 5), (5, 5, 5)) | _cube((30, 30, 20), (3, 3, 3)))
    r24 = _row(E.evaluate_case(pred, ref, rules=S.get_rules("2024", "GLI")), "WT")
    assert (r24["lesion_dice_2024"], r24["lesion_hd95_2024"], r24["lesion_fp_2024"]) == (0.5, 168.5, 1)


def test_2024_groups_a_split_prediction_by_dilation():
    ref = _cube((5, 5, 5), (5, 5, 5))
    pred = ref.copy()
    pred[7] = False  # two halves of 50 voxels, one empty slice apart
    out = S.scores_2024(
        S.lesion_groups(ref, 3), S.lesion_groups(pred, 3), (1, 1, 1), dilation=3, min_volume=20, penalty=337
    )
    # one reference lesion, one predicted group of 100 voxels: Dice 200 / 225, no false positive
    assert out["lesion_dice"] == pytest.approx(200 / 225) and (out["tp"], out["fp"], out["fn"]) == (1, 0, 0)
    # 2025 does not dilate: one half matched (Dice 100 / 175), the other a false positive
    res = S.scores_2025(ref, pred)
    assert res["sq_dsc"] == pytest.approx(100 / 175) and (res["tp"], res["fp"], res["fn"]) == (1, 1, 0)
    assert res["rq"] == pytest.approx(1 / 1.5)


def test_lesion_groups_follow_the_dilation():
    mask = _cube((5, 5, 5), (3, 3, 3)) | _cube((16, 5, 5), (3, 3, 3))  # 8 empty slices between
    assert S.lesion_groups(mask, 3).max() == 2  # reach 3 + 3 < 9
    assert S.lesion_groups(mask, 5).max() == 1  # reach 5 + 5 >= 9: GLI 2024's NETC and RC
    assert S.lesion_groups(np.zeros(SHAPE, bool), 3).max() == 0


def test_merge_touching_joins_lesions_that_touch_one_other_lesion():
    et = np.zeros(SHAPE, np.int32)
    et[_cube((5, 5, 5), (2, 2, 2))] = 1
    et[_cube((11, 5, 5), (2, 2, 2))] = 2
    netc = np.zeros(SHAPE, np.int32)
    netc[_cube((7, 5, 5), (4, 2, 2))] = 1  # touches both ET lesions
    merged = S.merge_touching(et, [netc])
    assert merged.max() == 1 and np.array_equal(merged > 0, et > 0)
    # one touching pair is not enough to merge anything (the official "more than one pair")
    netc[:] = 0
    netc[_cube((7, 5, 5), (2, 2, 2))] = 1
    assert S.merge_touching(et, [netc]).max() == 2


def test_2024_lesions_are_numbered_with_the_last_axis_fastest():
    # the official code numbers (cc3d) the C-ordered mask scipy's dilation returns: last axis fastest
    mask = _cube((20, 2, 2), (2, 2, 2)) | _cube((2, 20, 20), (2, 2, 2))
    groups = S.lesion_groups(mask, 1)
    assert (groups[2, 20, 20], groups[20, 2, 2]) == (1, 2)


def _merge_order_case() -> np.ndarray:
    """MET labels: ET lesion A touches NETC lesions O1 (low x, high z) and O2 (high x, low z); ET
    lesion B touches O2 only. Numbered last axis fastest, O1 comes first, so A goes with O1 and B
    with O2: A and B stay two lesions (first axis fastest would number O2 first and merge them)."""
    label = np.zeros(SHAPE, np.uint8)
    label[2:6, 28:34, 12:18] = 1  # O1
    label[20:26, 4:10, 10:16] = 1  # O2
    label[6:20, 30:32, 13:15] = 3  # A: a bar from O1 ...
    label[18:20, 7:32, 13:15] = 3  # ... turning to O2
    label[26:29, 4:10, 11:15] = 3  # B
    return label


def test_2024_merge_follows_the_official_lesion_numbering():
    label = _merge_order_case()
    et = S.lesion_groups(label == 3, 1)
    netc = S.lesion_groups(label == 1, 1)
    assert S.merge_touching(et, [netc]).max() == 2  # A with O1, B with O2: not merged
    assert S.merge_touching(netc, [et]).max() == 1  # O1 and O2 both go with A (numbered first)
    pred = label.copy()
    pred[26:29, 4:10, 11:15] = 0  # B missed
    row = _row(E.evaluate_case(pred, label, scheme="met2024", rules="2024"), "ET")
    # A found (Dice 1, HD95 0), B missed (0, the grid diagonal sqrt(40^2 + 40^2 + 30^2))
    assert row["lesion_dice_2024"] == 0.5 and row["lesion_hd95_2024"] == pytest.approx(math.sqrt(4100) / 2)
    assert (row["lesion_tp_2024"], row["lesion_fn_2024"], row["lesion_fp_2024"]) == (1, 1, 0)


def test_2024_missed_lesion_and_empty_masks():
    ref = _cube((5, 5, 5), (5, 5, 5))
    empty = np.zeros(SHAPE, bool)
    kw = dict(dilation=3, min_volume=20, penalty=337.0)
    out = S.scores_2024(S.lesion_groups(ref, 3), S.lesion_groups(empty, 3), (1, 1, 1), **kw)
    assert (out["lesion_dice"], out["lesion_hd95"], out["lesion_nsd"], out["fn"]) == (0.0, 337.0, [0.0, 0.0], 1)
    out = S.scores_2024(S.lesion_groups(empty, 3), S.lesion_groups(empty, 3), (1, 1, 1), **kw)
    assert (out["lesion_dice"], out["lesion_hd95"], out["lesion_nsd"]) == (1.0, 0.0, [1.0, 1.0])


def test_2024_men_rt_counts_false_positives_without_scoring_them():
    ref = np.zeros(SHAPE, np.uint8)
    ref[5:10, 5:10, 5:10] = 1  # 125 mm^3 of GTV, found
    pred = ref.copy()
    pred[30:34, 30:34, 20:24] = 1  # a 64-voxel false positive (> 50 mm^3: not removed)
    row = _row(E.evaluate_case(pred, ref, scheme="men_rt", rules="2024"), "GTV")
    # the official MEN-RT script: "Removing FP for MEN-RT Challenge": counted, not scored
    assert (row["lesion_dice_2024"], row["lesion_hd95_2024"], row["lesion_fp_2024"]) == (1.0, 0.0, 1)
    fp_only = np.where(ref > 0, 0, pred).astype(np.uint8)
    row = _row(E.evaluate_case(fp_only, np.zeros_like(ref), scheme="men_rt", rules="2024"), "GTV")
    assert (row["lesion_dice_2024"], row["lesion_hd95_2024"], row["lesion_nsd10_2024"]) == (1.0, 0.0, 1.0)
    assert row["lesion_fp_2024"] == 1
    # every other 2024 task scores it: (1 + 0) / 2 and (0 + 374) / 2 for MEN (label 1 is in WT)
    row = _row(E.evaluate_case(pred, ref, scheme="men", rules="2024"), "WT")
    assert (row["lesion_dice_2024"], row["lesion_hd95_2024"], row["lesion_fp_2024"]) == (0.5, 187.0, 1)


def test_2024_met_penalty_is_the_grids_diagonal():
    ref = np.zeros((182, 218, 182), np.uint8)
    ref[50:54, 50:54, 50:54] = 3  # 64 voxels of ET, missed
    rows = E.evaluate_case(np.zeros_like(ref), ref, scheme="met2024", rules="2024")
    et = _row(rows, "ET")
    assert et["lesion_hd95_2024"] == pytest.approx(math.sqrt(113772)) and et["lesion_fn_2024"] == 1
    # the legacy column: the grid's diagonal too (shape x spacing, 1 mm)
    assert et["hd95"] == pytest.approx(math.sqrt(113772))


# ------------------------------------------------------------------------------ 2025


def test_2025_line_pair_hand_computed():
    ref = np.zeros(SHAPE, bool)
    pred = np.zeros(SHAPE, bool)
    ref[5, 5, 2:6] = True
    pred[5, 5, 3:7] = True
    # every voxel of a line is border; distances: ref 1,0,0,0, pred 0,0,0,1 -> 95th percentile 1
    res = S.scores_2025(ref, pred)
    assert (res["sq_dsc"], res["sq_hd95"], res["sq_nsd"]) == pytest.approx((0.75, 1.0, 1.0))
    assert (res["tp"], res["fp"], res["fn"], res["rq"]) == (1, 0, 0, 1.0)
    # 2 mm along z: the distances double, the tolerance is min(spacing) = 1 mm -> NSD (3/4 + 3/4) / 2
    res = S.scores_2025(ref, pred, (1.0, 1.0, 2.0))
    assert (res["sq_hd95"], res["sq_nsd"]) == pytest.approx((2.0, 0.75))
    # the global metrics ignore the spacing (panoptica calls them without it): 1 voxel, tolerance 0.5
    assert (res["global_dsc"], res["global_hd95"], res["global_nsd"]) == pytest.approx((0.75, 1.0, 0.75))


def test_2025_empty_masks():
    empty = np.zeros(SHAPE, bool)
    lesion = _cube((5, 5, 5), (3, 3, 3))
    res = S.scores_2025(empty, empty)
    assert all(math.isnan(res[k]) for k in ("sq_dsc", "sq_hd95", "sq_nsd", "rq", "global_dsc"))
    assert (res["tp"], res["fp"], res["fn"]) == (0, 0, 0)
    res = S.scores_2025(empty, lesion)
    assert (res["sq_dsc"], res["sq_hd95"], res["sq_nsd"], res["rq"]) == (0.0, math.inf, 0.0, 0.0)
    assert (res["tp"], res["fp"], res["fn"]) == (0, 1, 0)
    rows = E.evaluate_case(_wt(lesion), _wt(empty), rules="2025")
    wt = _row(rows, "WT")
    assert (wt["global_hd95_2025"], wt["lesion_hd95_2025"], wt["lesion_f1_2025"]) == (373.0, math.inf, 0.0)
    # not overlapping: no match, both sides counted
    res = S.scores_2025(lesion, _cube((20, 20, 20), (3, 3, 3)))
    assert (res["tp"], res["fp"], res["fn"], res["sq_dsc"], res["global_dsc"]) == (0, 1, 1, 0.0, 0.0)


def test_2025_two_lesions_one_missed_one_false_positive():
    ref = _cube((5, 5, 5), (3, 3, 3)) | _cube((20, 5, 5), (3, 3, 3))
    pred = _cube((5, 5, 5), (3, 3, 3)) | _cube((30, 30, 20), (2, 2, 2))
    res = S.scores_2025(ref, pred)
    # one perfect match: means over matched lesions only; F1 = 1 / (1 + (1 + 1) / 2)
    assert (res["sq_dsc"], res["sq_hd95"], res["sq_nsd"]) == (1.0, 0.0, 1.0)
    assert (res["tp"], res["fp"], res["fn"], res["rq"]) == (1, 1, 1, 0.5)


def test_2025_mets_split_at_20_voxels():
    ref = _cube((5, 5, 5), (3, 3, 3)) | _cube((20, 20, 20), (1, 1, 1))  # 27 voxels (large) + 1 (small)
    pred = _cube((5, 5, 5), (3, 3, 3)) | _cube((30, 5, 25), (1, 1, 1))  # large found; small missed; 1 FP
    met = S.mets_summary(S.scores_2025(ref, pred))
    # large list: the lesion (1, 0, 1) and the false positive (0, 373, 0)
    assert (met["lesion_dsc"], met["lesion_hd95"], met["lesion_nsd"]) == (0.5, 186.5, 0.5)
    assert met["large_f1"] == pytest.approx(2 / 3) and met["small_f1"] == 0.0
    rows = E.evaluate_case(np.where(pred, 3, 0), np.where(ref, 3, 0), scheme="met2024", rules="2025")
    et = _row(rows, "ET")
    assert (et["lesion_dice_2025"], et["lesion_hd95_2025"], et["small_f1_2025"]) == (0.5, 186.5, 0.0)


# ------------------------------------------------------------------------------ folders and CLI


def _gli_pair(tmp_path) -> tuple:
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    label = np.zeros(SHAPE, np.uint8)
    label[5:12, 5:12, 5:12] = 2
    label[7:10, 7:10, 7:10] = 3
    pred = label.copy()
    pred[30:32, 30:32, 20:22] = 3  # an 8-voxel ET false positive: removed by 2024 (ET threshold 10)
    case = "BraTS-GLI-00001-000"
    io.save_nifti(label, ref_dir / f"{case}.nii.gz", affine=np.eye(4))
    io.save_nifti(pred, pred_dir / f"{case}.nii.gz", affine=np.eye(4))
    return ref_dir, pred_dir


def test_evaluate_auto_rules_says_which_and_names_the_columns(tmp_path, capsys):
    ref_dir, pred_dir = _gli_pair(tmp_path)
    out_csv = tmp_path / "m.csv"
    rc = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "-q", "--out", str(out_csv)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "scoring with the 2024 GLI rules (default for gli2024)" in out
    rows = list(csv.DictReader(out_csv.open()))
    assert "lesion_dice_2024" in rows[0] and "lesion_dice" not in rows[0]
    et = next(r for r in rows if r["region"] == "ET")
    assert (float(et["lesion_dice_2024"]), int(et["lesion_fp_2024"])) == (1.0, 0)
    rc = main(
        ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "-q", "--rules", "2025", "--out", str(out_csv)]
    )
    out, _ = capsys.readouterr()
    assert rc == 0 and "scoring with the 2025 GLI rules" in out and "default" not in out.splitlines()[0]
    et = next(r for r in csv.DictReader(out_csv.open()) if r["region"] == "ET")
    assert (int(et["lesion_fp_2025"]), float(et["lesion_f1_2025"])) == (1, pytest.approx(2 / 3))


def test_2023_overrides_only_apply_to_the_2023_rules(tmp_path):
    ref_dir, pred_dir = _gli_pair(tmp_path)
    result = E.evaluate_folders(pred_dir, ref_dir, progress=False, rules="2023", dilation=1)
    assert result.columns == E.CSV_COLUMNS and result.rules == ["scoring with the 2023 GLI rules"]
    with pytest.raises(ValueError, match="change the 2023 rules only"):
        E.evaluate_folders(pred_dir, ref_dir, progress=False, rules="2024", dilation=1)
    with pytest.raises(ValueError, match="rules must be one of"):
        E.evaluate_folders(pred_dir, ref_dir, progress=False, rules="2019")
