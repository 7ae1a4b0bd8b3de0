"""bench/brats_evaluation.py without its peer environment: the case constructor and our side."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import brats_evaluation as B

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_constructed_cases_cover_what_the_bar_asks():
    cases = list(B.constructed_cases())
    names = [name for name, *_ in cases]
    assert len([c for c in cases if c[3] != B.ANISOTROPIC]) >= 20 and len(set(names)) == len(names)
    for required in ("empty_reference", "empty_prediction", "both_empty", "two_lesions_one_missed"):
        assert required in names
    for _, ref, pred, _ in cases:
        assert ref.shape == pred.shape == B.GRID and set(np.unique(ref)) | set(np.unique(pred)) <= {0, 1, 2, 3, 4}
    ref = {n: r for n, r, *_ in cases}["reference_touching"]
    from scipy import ndimage

    assert ndimage.label(ref == 3, structure=np.ones((3, 3, 3)))[1] == 1  # the two lesions touch


def test_ours_and_compare_on_one_case():
    name, ref, pred, spacing = next(c for c in B.constructed_cases() if c[0] == "false_positive_blob")
    mine = B.ours(ref, pred, spacing)
    assert (mine["gli"]["et"]["tp"], mine["gli"]["et"]["fp"]) == (1, 1)
    assert mine["gli"]["rc"]["sq_dsc"] != mine["gli"]["rc"]["sq_dsc"]  # both empty: NaN
    diffs = B.compare(mine, mine)
    assert all(w == 0.0 and ok for w, ok in diffs.values())
    assert B._diff(math.inf, math.inf) == 0.0 and B._diff(1.0, math.inf) == math.inf


def test_cases_only_mode_runs_without_the_peer_environment(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.brats_evaluation", "--cases-only", "--real", "0", "--keep", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "cases=26"
    assert (tmp_path / "perfect" / "ref.nii.gz").is_file()
