"""Evaluation: hand values with empty masks, HD95 vs DeepMind surface-distance, BraTS 2023
lesion-wise scores on constructed cases, folder evaluation and the no-TensorFlow import rule."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import warnings

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brainseg_tf import evaluation as E

DIAGONAL = math.sqrt(240**2 + 240**2 + 155**2)


def _reference_package():
    # Test-only dependency: surface-distance 0.1 (PyPI; DeepMind's google-deepmind/surface-distance,
    # the code the BraTS 2023 evaluation vendors). Installed in CI through the dev extra.
    return pytest.importorskip(
        "surface_distance", reason="surface-distance==0.1 (dev extra) is the independent HD95 reference"
    )


def _ref_hd95(sd, a, b, spacing, percent=95):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it uses scipy's deprecated ndimage namespaces
        return sd.compute_robust_hausdorff(sd.compute_surface_distances(a, b, spacing), percent)


def test_import_does_not_pull_tensorflow():
    code = (
        "import sys, brainseg_tf.evaluation, brainseg_tf.io; "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_dice_score_hand_values():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    assert E.dice_score(a, b) == 1.0
    assert math.isnan(E.dice_score(a, b, empty=math.nan))
    a[0, 0, :3] = True
    assert E.dice_score(a, b) == 0.0 and E.dice_score(b, a) == 0.0
    b[0, 0, 1:4] = True  # |A|=3 |B|=3 overlap 2
    assert E.dice_score(a, b) == pytest.approx(4 / 6)


def test_hd95_hand_values_anisotropic():
    # two single voxels 3 apart on axis 0 with spacing 2 mm: the corner points of A lie at 4 mm
    # (near face) and 6 mm (far face) from the nearest corner of B, with equal surfel areas
    a = np.zeros((12, 6, 6), bool)
    b = np.zeros_like(a)
    a[5, 3, 3] = True
    b[8, 3, 3] = True
    assert E.hd95(a, b, (2.0, 1.0, 0.5)) == pytest.approx(6.0)
    assert E.hd95(a, b, (2.0, 1.0, 0.5), percentile=50) == pytest.approx(4.0)
    assert E.hd95(a, a, (2.0, 1.0, 0.5)) == 0.0
    assert math.isinf(E.hd95(a, np.zeros_like(a)))
    assert math.isnan(E.hd95(np.zeros_like(a), np.zeros_like(a)))
    with pytest.raises(ValueError, match="spacing"):
        E.hd95(a, b, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="percentile"):
        E.hd95(a, b, percentile=101)


def test_hd95_matches_deepmind_surface_distance_on_random_anisotropic_masks():
    sd = _reference_package()
    rng = np.random.default_rng(0)
    compared = 0
    for trial in range(24):
        shape = tuple(int(s) for s in rng.integers(10, 26, 3))
        noise = rng.random(shape)
        a = ndimage.binary_opening(noise < 0.5) if trial % 2 else noise < 0.08
        b = ndimage.binary_dilation(a, iterations=int(rng.integers(0, 3))) ^ (rng.random(shape) < 0.05)
        if trial % 3 == 0:  # touching the volume border on purpose
            a[0], b[-1] = True, True
        spacing = tuple(float(s) for s in rng.uniform(0.4, 3.0, 3))
        for percent in (95, 50, 100):
            expected = _ref_hd95(sd, a, b, spacing, percent)
            assert E.hd95(a, b, spacing, percentile=percent) == pytest.approx(expected, abs=1e-6)
        compared += 1
    assert compared == 24


def test_evaluate_case_legacy_empty_rules():
    ref = np.zeros((10, 10, 10), np.uint8)
    pred = np.zeros_like(ref)
    ref[2:5, 2:5, 2:5] = 2  # ED only: WT present, TC and ET empty in the reference
    pred[2:5, 2:5, 2:5] = 2
    rows = {r["region"]: r for r in E.evaluate_case(pred, ref, (1.0, 1.0, 2.0), case="c1")}
    tc = rows["TC"]
    # TC (and ET): both empty -> Dice 1, HD95 0, sensitivity 1, specificity 1; lesion-wise 1 / 0
    assert (tc["dice"], tc["hd95"], tc["sensitivity"], tc["specificity"]) == (1.0, 0.0, 1.0, 1.0)
    assert (tc["lesion_dice"], tc["lesion_hd95"]) == (1.0, 0.0)
    assert tc["case"] == "c1" and rows["ET"]["dice"] == 1.0
    pred[7, 7, 7] = 3  # one ET voxel predicted where the reference has none
    rows = {r["region"]: r for r in E.evaluate_case(pred, ref, (1.0, 1.0, 2.0), case="c1")}
    et, wt = rows["ET"], rows["WT"]
    # ET: empty reference, one predicted voxel -> Dice 0, HD95 373.13; lesion-wise: 1 FP -> 0 / 374
    assert et["dice"] == 0.0 and et["hd95"] == pytest.approx(DIAGONAL)
    assert et["sensitivity"] == 0.0 and et["specificity"] == pytest.approx(999 / 1000)
    assert (et["lesion_dice"], et["lesion_hd95"], et["lesion_fp"]) == (0.0, 374.0, 1)
    assert et["volume_pred_ml"] == pytest.approx(2.0 / 1000) and et["volume_ref_ml"] == 0.0
    # WT: 27 + 1 predicted, 27 reference: Dice 54/55, volumes in ml with 2 mm^3 voxels
    assert wt["dice"] == pytest.approx(54 / 55)
    assert wt["volume_ref_ml"] == pytest.approx(27 * 2 / 1000)
    assert wt["sensitivity"] == 1.0
    # empty prediction, present reference -> Dice 0, HD95 373.13, sensitivity 0
    rows = {r["region"]: r for r in E.evaluate_case(np.zeros_like(ref), ref, (1.0, 1.0, 2.0))}
    assert rows["WT"]["dice"] == 0.0 and rows["WT"]["hd95"] == pytest.approx(DIAGONAL)
    assert rows["WT"]["sensitivity"] == 0.0 and rows["WT"]["specificity"] == 1.0
    assert (rows["WT"]["lesion_dice"], rows["WT"]["lesion_hd95"], rows["WT"]["lesion_fn"]) == (0.0, 374.0, 1)
    # at 1 mm^3 the same 27-voxel lesion is <= 50 mm^3: left out, nothing to score -> 1 / 0
    rows = {r["region"]: r for r in E.evaluate_case(np.zeros_like(ref), ref)}
    assert (rows["WT"]["lesion_dice"], rows["WT"]["lesion_hd95"], rows["WT"]["dice"]) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        E.evaluate_case(pred[:5], ref)
    with pytest.raises(ValueError, match="region"):
        E.evaluate_case(pred, ref, regions=("NCR",))


def _cube(mask, lo, size):
    mask[tuple(slice(s, s + n) for s, n in zip(lo, size))] = True


def _official_lesion_wise(ref, pred, spacing, sd, dilation=3, threshold=50.0):
    """The BraTS 2023 steps done literally on the full volume (slow, for the test only)."""
    struct = ndimage.generate_binary_structure(3, 2)
    full = np.ones((3, 3, 3), bool)
    voxel = float(np.prod(spacing))
    gt_cc, _ = ndimage.label(ref, structure=full)
    pred_cc, n_pred = ndimage.label(pred, structure=full)
    dil_cc, n_dil = ndimage.label(ndimage.binary_dilation(ref, struct, iterations=dilation), structure=full)
    lesions_map = np.where(gt_cc > 0, dil_cc, 0)
    tp_ids, rows = [], []
    for comp in range(1, n_dil + 1):
        lesion = lesions_map == comp
        if not lesion.any():
            continue
        roi = ndimage.binary_dilation(lesion, struct, iterations=dilation)
        ids = np.unique(pred_cc[roi])
        ids = ids[ids != 0]
        tp_ids += ids.tolist()
        matched = np.isin(pred_cc, ids) & (pred_cc > 0)
        dice = 2 * np.sum(lesion & matched) / (lesion.sum() + matched.sum())
        hd = _ref_hd95(sd, lesion, matched, spacing) if matched.any() else math.inf
        rows.append((lesion.sum() * voxel, dice, 374.0 if math.isinf(hd) else hd))
    fp = len(set(range(1, n_pred + 1)) - set(tp_ids))
    kept = [r for r in rows if r[0] > threshold]
    if not kept and not fp:
        return 1.0, 0.0, fp
    return (sum(r[1] for r in kept) / (len(kept) + fp), (sum(r[2] for r in kept) + 374 * fp) / (len(kept) + fp), fp)


def test_lesion_wise_constructed_case_merged_missed_split_fp_small():
    shape = (48, 40, 40)
    ref = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    _cube(ref, (2, 2, 2), (5, 5, 5))  # A: found exactly
    _cube(pred, (2, 2, 2), (5, 5, 5))
    _cube(ref, (2, 20, 2), (4, 4, 4))  # B: two GT parts 2 voxels apart -> merged into one lesion
    _cube(ref, (8, 20, 2), (4, 4, 4))
    _cube(pred, (2, 20, 2), (4, 4, 4))  # ... of which only the first is predicted
    _cube(ref, (30, 30, 30), (4, 4, 4))  # C: missed
    _cube(ref, (40, 2, 30), (3, 3, 3))  # D: 27 voxels, missed, below the 50 mm^3 threshold
    _cube(ref, (20, 2, 20), (8, 4, 4))  # E: predicted as two split pieces
    _cube(pred, (20, 2, 20), (3, 4, 4))
    _cube(pred, (25, 2, 20), (3, 4, 4))
    _cube(pred, (40, 30, 5), (3, 3, 3))  # F: false positive
    out = E.lesion_wise_scores(ref, pred, (1.0, 1.0, 1.0))
    assert (out["tp"], out["fn"], out["fp"]) == (3, 1, 1)
    dices = sorted(round(les[1], 6) for les in out["lesions"])
    assert dices == sorted(round(d, 6) for d in (1.0, 2 * 64 / 192, 0.0, 0.0, 2 * 96 / 224))
    expected_dice = (1.0 + 2 * 64 / 192 + 0.0 + 2 * 96 / 224) / (4 + 1)
    assert out["lesion_dice"] == pytest.approx(expected_dice)
    merged = np.zeros(shape, bool)
    _cube(merged, (2, 20, 2), (4, 4, 4))
    _cube(merged, (8, 20, 2), (4, 4, 4))
    half = np.zeros(shape, bool)
    _cube(half, (2, 20, 2), (4, 4, 4))
    split_ref = np.zeros(shape, bool)
    _cube(split_ref, (20, 2, 20), (8, 4, 4))
    split_pred = np.zeros(shape, bool)
    _cube(split_pred, (20, 2, 20), (3, 4, 4))
    _cube(split_pred, (25, 2, 20), (3, 4, 4))
    expected_hd = (0.0 + E.hd95(merged, half) + 374.0 + E.hd95(split_ref, split_pred) + 374.0) / 5
    assert out["lesion_hd95"] == pytest.approx(expected_hd)
    sd = _reference_package()
    official = _official_lesion_wise(ref, pred, (1.0, 1.0, 1.0), sd)
    assert (out["lesion_dice"], out["lesion_hd95"], out["fp"]) == pytest.approx(official, abs=1e-6)


def test_lesion_wise_edge_cases_and_random_cases_match_the_official_steps():
    sd = _reference_package()
    empty = np.zeros((12, 12, 12), bool)
    assert E.lesion_wise_scores(empty, empty)["lesion_dice"] == 1.0
    small = empty.copy()
    small[2:4, 2:4, 2:4] = True  # 8 voxels, missed, below threshold, no FP: nothing to score
    out = E.lesion_wise_scores(small, empty)
    assert (out["lesion_dice"], out["lesion_hd95"], out["fn"]) == (1.0, 0.0, 0)
    # anisotropic spacing: the threshold is in mm^3 (8 voxels x 8 mm^3 = 64 > 50 -> counted, missed)
    out = E.lesion_wise_scores(small, empty, (2.0, 2.0, 2.0))
    assert (out["lesion_dice"], out["lesion_hd95"], out["fn"]) == (0.0, 374.0, 1)
    rng = np.random.default_rng(3)
    for _ in range(4):
        shape = (36, 32, 28)
        ref = ndimage.binary_opening(rng.random(shape) < 0.35, iterations=2)
        pred = ndimage.binary_dilation(ref, iterations=1) & (rng.random(shape) < 0.9)
        pred |= ndimage.binary_opening(rng.random(shape) < 0.3, iterations=2) & ~ndimage.binary_dilation(
            ref, iterations=4
        )
        spacing = tuple(float(s) for s in rng.uniform(0.6, 1.6, 3))
        out = E.lesion_wise_scores(ref, pred, spacing)
        official = _official_lesion_wise(ref, pred, spacing, sd)
        assert (out["lesion_dice"], out["lesion_hd95"], out["fp"]) == pytest.approx(official, abs=1e-6)


def _write(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(data, np.uint8), affine), str(path))
    return path


def test_evaluate_folders_pairs_cases_lists_missing_and_writes_csv(tmp_path):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    seg = np.zeros((16, 16, 8), np.uint8)
    seg[4:10, 4:10, 2:6] = 2
    seg[5:8, 5:8, 3:5] = 4  # BraTS 2017-2021 ET label
    _write(ref_dir / "case001_seg.nii.gz", seg)
    _write(ref_dir / "case002_seg.nii.gz", seg)
    pred = np.where(seg == 4, 3, seg)  # written in the 1/2/3 convention
    _write(pred_dir / "case001.nii.gz", pred)
    _write(pred_dir / "stray.nii.gz", pred)
    for aux in E.AUXILIARY_SUFFIXES:  # predict's probability / uncertainty maps are neither cases nor strays
        _write(pred_dir / f"case001{aux}.nii.gz", pred)
    result = E.evaluate_folders(
        pred_dir,
        ref_dir,
        out_csv=tmp_path / "m.csv",
        progress=False,
        ref_convention="brats",
        pred_convention="brats2023",
    )
    assert result.missing == ["case002"]
    assert [p.name for p in result.unmatched] == ["stray.nii.gz"]
    rows = {(r["case"], r["region"]): r for r in result.rows}
    assert len(rows) == 6
    assert rows[("case001", "ET")]["dice"] == 1.0 and rows[("case001", "WT")]["hd95"] == 0.0
    assert rows[("case002", "WT")]["dice"] == 0.0 and rows[("case002", "WT")]["missing_prediction"]
    assert rows[("case001", "WT")]["volume_ref_ml"] == pytest.approx(6 * 6 * 4 * 2 / 1000)
    with open(tmp_path / "m.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 6
    assert set(E.CSV_COLUMNS[:10]) <= set(table[0])
    text = E.format_summary(result)
    assert "WT" in text and "median" in text and "case002" in text and "stray.nii.gz" in text
    summary = result.summary()
    assert summary["ET"]["dice"]["mean"] == pytest.approx(0.5) and summary["ET"]["dice"]["n"] == 2


def test_evaluate_folders_restricted_to_case_ids(tmp_path):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    seg = np.zeros((8, 8, 4), np.uint8)
    seg[2:5, 2:5, 1:3] = 2
    for cid in ("case001", "case002", "case003"):
        _write(ref_dir / f"{cid}_seg.nii.gz", seg)
    _write(pred_dir / "case002.nii.gz", seg)
    result = E.evaluate_folders(
        pred_dir, ref_dir, case_ids=["case002"], progress=False, ref_convention="brats", pred_convention="brats"
    )
    assert {r["case"] for r in result.rows} == {"case002"} and result.missing == []
    assert all(r["dice"] == 1.0 for r in result.rows)
    with pytest.raises(ValueError, match="case999"):
        E.evaluate_folders(pred_dir, ref_dir, case_ids=["case999"], progress=False, ref_convention="brats")


def test_evaluate_folders_geometry_errors_name_both_files(tmp_path):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    seg = np.zeros((8, 8, 8), np.uint8)
    seg[2:5, 2:5, 2:5] = 1
    _write(ref_dir / "c1.nii.gz", seg)
    _write(pred_dir / "c1_seg.nii.gz", seg[:, :, :6])
    with pytest.raises(ValueError, match=r"(?s)c1_seg\.nii\.gz.*shape.*c1\.nii\.gz"):
        E.evaluate_folders(pred_dir, ref_dir, progress=False, ref_convention="brats", pred_convention="brats")
    _write(pred_dir / "c1_seg.nii.gz", seg, affine=np.diag([1.0, 1.0, 3.0, 1.0]))
    with pytest.raises(ValueError, match=r"(?s)c1_seg\.nii\.gz.*c1\.nii\.gz.*affine"):
        E.evaluate_folders(pred_dir, ref_dir, progress=False, ref_convention="brats", pred_convention="brats")


def test_evaluate_folders_on_a_case_folder_layout(tmp_path):
    # references as <case_id>/<case_id>_seg.nii.gz; an MSD-convention prediction named explicitly
    seg = np.zeros((8, 8, 8), np.uint8)
    seg[1:6, 1:6, 1:6] = 2
    seg[2:4, 2:4, 2:4] = 3
    _write(tmp_path / "ref" / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-seg.nii.gz", seg)
    msd = np.choose(seg, [0, 2, 1, 3]).astype(np.uint8)  # canonical -> MSD (ED=1, NCR=2, ET=3)
    _write(tmp_path / "pred" / "BraTS-GLI-00001-000.nii.gz", msd)
    result = E.evaluate_folders(
        tmp_path / "pred", tmp_path / "ref", pred_convention="msd", ref_convention="brats2023", progress=False
    )
    assert not result.missing
    assert all(r["dice"] == 1.0 for r in result.rows)


# ----------------------------------------------------------------------------- bootstrap interval


def test_bootstrap_ci_hand_checked_case():
    # Means of 4 draws from [0, 0, 0, 1]: 1.0 has probability 1/256 (< 2.5 %), >= 0.75 has 13/256,
    # 0 has 81/256: the 95 % interval is (0, 0.75).
    assert E.bootstrap_ci([0, 0, 0, 1]) == (0.0, 0.75)
    assert E.bootstrap_ci([0.7] * 5) == pytest.approx((0.7, 0.7))
    assert E.bootstrap_ci([0.2, 0.9, 0.4], seed=3) == E.bootstrap_ci([0.2, 0.9, 0.4], seed=3)  # deterministic


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_cases():
    rng = np.random.default_rng(0)
    widths = []
    for n in (5, 20, 80):
        values = rng.uniform(0.3, 1.0, size=n)
        low, high = E.bootstrap_ci(values)
        assert low < values.mean() < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.35)  # about 1/sqrt(n)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"values": []}, "values"),
        ({"values": [0.5, np.nan]}, "values"),
        ({"values": [1.0], "resamples": 0}, "resamples"),
        ({"values": [1.0], "confidence": 1.0}, "confidence"),
    ],
)
def test_bootstrap_ci_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        E.bootstrap_ci(**kwargs)
