"""bench/brats_scoring_2024.py without the official scripts: its cases, label reading and our side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import brats_scoring_2024 as B

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_merge_cases_put_one_et_lesion_against_two_netc_lesions():
    from scipy import ndimage

    cases = {name: (ref, pred) for name, ref, pred, _ in B.merge_cases()}
    assert len(cases) == 4
    ref, pred = cases["merge_order_b_missed"]
    # two ET and two NETC lesions, far apart within each label (none grouped by GLI's dilations)
    assert ndimage.label(ref == 3, structure=np.ones((3, 3, 3)))[1] == 2
    assert ndimage.label(ref == 1, structure=np.ones((3, 3, 3)))[1] == 2
    assert np.count_nonzero(pred == 3) < np.count_nonzero(ref == 3)


def test_task_labels_and_crop():
    label = np.arange(5, dtype=np.uint8).reshape(5, 1, 1) * np.ones((5, 4, 3), np.uint8)
    assert set(np.unique(B.task_labels(label, "GLI"))) == {0, 1, 2, 3, 4}
    assert set(np.unique(B.task_labels(label, "SSA"))) == {0, 1, 2, 3}  # no RC: 4 read as background
    assert set(np.unique(B.task_labels(label, "MEN-RT"))) == {0, 1}
    ref = np.zeros((30, 30, 30), np.uint8)
    ref[10:12, 10:12, 10:12] = 1
    pred = np.zeros_like(ref)
    pred[15, 15, 15] = 2
    r, p = B.crop_pair(ref, pred, 2)
    assert r.shape == p.shape == (10, 10, 10) and r.sum() == 8 and p.sum() == 2
    assert B.crop_pair(ref, pred, 0)[0].shape == ref.shape


def test_ours_and_compare_on_one_case():
    name, ref, pred, spacing = next(c for c in B.merge_cases() if c[0] == "merge_order_b_missed")
    mine = B.ours(B.task_labels(ref, "GLI"), B.task_labels(pred, "GLI"), spacing, "GLI")
    # A and B stay two ET lesions (the official numbering): A found, B missed
    et = mine["ET"]
    assert et["lesion_dice_2024"] == 0.5 and (et["lesion_tp_2024"], et["lesion_fn_2024"]) == (1, 1)
    official = {
        "ET": {
            "LesionWise_Score_Dice": 0.5,
            "LesionWise_Score_HD95": et["lesion_hd95_2024"],
            "LesionWise_Score_NSD @ 0.5": et["lesion_nsd05_2024"],
            "LesionWise_Score_NSD @ 1.0": et["lesion_nsd10_2024"],
            "Num_TP": 1.0,
            "Num_FP": 0.0,
            "Num_FN": 1.0,
        }
    }
    diffs, counts = B.compare(official, mine, "GLI")["ET"]
    assert counts and max(diffs.values()) == 0.0
    ped = B.ours(B.task_labels(ref, "PED"), B.task_labels(pred, "PED"), spacing, "PED")
    assert "NET" in ped and B.REGION_NAMES["PED"]["NETC"] == "NET"


def test_peer_source_refuses_a_folder_without_the_scripts(tmp_path):
    with pytest.raises(SystemExit, match="not a BraTS-2024-Metrics copy"):
        B.peer_source(tmp_path, None, tmp_path)


def test_cases_only_mode_runs_without_the_official_scripts(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.brats_scoring_2024", "--cases-only", "--real", "0", "--tasks", "MEN-RT"]
        + ["--keep", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "cases=30 tasks=1"
    assert (tmp_path / "MEN-RT" / "merge_order_b_missed" / "ref.nii.gz").is_file()
