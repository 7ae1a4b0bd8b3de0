"""Issue 21's bar in one place: every layout ``brainseg synth`` writes goes through every stage.

For each layout: the layout and the label scheme are detected from the files; reading a case and
writing its labels back reproduces the source voxels exactly; a tiny model trains on it (on the
modalities its cases ship: MEN-RT on T1c alone) and ``brainseg predict`` writes labels in the
source's values; a perfect prediction scores Dice 1 in every region of the scheme, and removing one
label changes exactly the regions that hold it.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf import evaluation as E
from brainseg_tf import io
from brainseg_tf.cli import main
from brainseg_tf.io.layouts import scheme_modalities
from brainseg_tf.schemes import get_scheme
from brainseg_tf.synthetic import make_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SHAPE = (32, 32, 24)

#: layout written by synth -> (layout detected, scheme detected). A BraTS-GLI id is read in the current
#: releases' scheme (GLI 2024/2025, with RC) unless stated: the 2023 layout's cases too.
LAYOUTS = {
    "brats2018": ("brats2018", "brats2021"),
    "brats2021": ("brats2021", "brats2021"),
    "brats2023": ("brats2023", "gli2024"),
    "msd": ("msd", "msd"),
    "gli2024": ("brats2023", "gli2024"),
    "met2024": ("brats2023", "met2024"),
    "ped2024": ("brats2023", "ped2024"),
    "men_rt": ("men_rt", "men_rt"),
}


def _raw(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def _recipe(root: Path, scheme: str) -> dict:
    return {
        "name": f"tiny_{scheme}",
        "data": {"root": str(root), "modalities": list(scheme_modalities(scheme))},
        "split": {"method": "kfold", "folds": 3, "fold": 0, "seed": 0},
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "instance", "head": "softmax"}},
        "pipeline": {"kind": "patch", "patch_size": [16, 16, 16], "batch_size": 1, "augment": "none"},
        "validation": {"mode": "none", "final_sliding_window": False, "select_postprocessing": False},
        "schedule": {"name": "constant"},
        "training": {"epochs": 1, "steps_per_epoch": 1, "verbose": 0, "seed": 0},
    }


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_synth_layout_goes_through_every_stage(tmp_path: Path, layout: str) -> None:
    from brainseg_tf.training import train

    root = make_dataset(tmp_path / "data", layout=layout, n_cases=3, shape=SHAPE, seed=1, progress=False)
    ds = io.open_dataset(root)
    want_layout, want_scheme = LAYOUTS[layout]
    assert ds.layout == want_layout and {r.scheme for r in ds.refs} == {want_scheme}, (ds.layout, ds.refs[0].scheme)
    scheme = get_scheme(want_scheme)
    source_values = {0, *scheme.values}

    # read -> write reproduces the source voxels; the internal labels are the scheme's
    case = ds[0]
    assert set(np.unique(case.label)) <= set(range(scheme.n_classes))
    written = io.write_label(case.label, case, tmp_path / "back.nii.gz")
    source = _raw(ds.ref(0).label)
    np.testing.assert_array_equal(_raw(written), source)
    assert set(np.unique(source)) <= source_values

    # a tiny model on the modalities the cases ship; predictions in the source's values, on their grid
    run = tmp_path / "run"
    result = train(_recipe(root, scheme.name), run_dir=run)
    assert result.model.input_shape[-1] == len(scheme_modalities(scheme.name))
    assert result.model.output_shape[-1] == scheme.n_classes
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(run), "--input", str(root), "--out", str(out), "-q", "--no-viewers"]) == 0
    for ref in ds.refs:
        pred = _raw(out / f"{ref.case_id}.nii.gz")
        assert pred.shape == ds[ref.case_id].shape and set(np.unique(pred)) <= source_values

    # a perfect prediction: Dice 1 everywhere; removing one label changes exactly the regions holding it
    regions = scheme.internal_regions()
    perfect = {row["region"]: row["dice"] for row in E.evaluate_case(case.label, case.label, scheme=scheme.name)}
    assert set(perfect) == set(regions) and all(d == 1.0 for d in perfect.values())
    for label in map(int, np.unique(case.label)[1:]):
        cut = np.where(case.label == label, 0, case.label).astype(np.uint8)
        scores = {row["region"]: row["dice"] for row in E.evaluate_case(cut, case.label, scheme=scheme.name)}
        changed = {r for r, d in scores.items() if d < 1.0}
        assert changed == {r for r, held in regions.items() if label in held}, (label, scores)
