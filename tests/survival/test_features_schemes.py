"""Survival features of the 2024 schemes (issue 21): each scheme's labels reduced to the glioma
tissues through its own WT/TC/ET regions, checked against voxel counts of the source values; a
scheme without those regions (MEN-RT) refused naming the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf import io
from brainseg_tf.schemes import get_scheme
from brainseg_tf.survival.features import case_features, feature_rows, tissue_labels
from brainseg_tf.synthetic import make_dataset

# source values of each tissue: (NCR/core, ED, ET), and what is not tumour
SOURCE_TISSUES = {
    "gli2024": {"ncr": (1,), "ed": (2,), "et": (3,), "none": (4,)},  # 4 RC: a cavity
    "ped2024": {"ncr": (2, 3), "ed": (4,), "et": (1,), "none": ()},  # NET and CC are core
}


def _expected_ml(raw: np.ndarray, tissues: dict, voxel_ml: float) -> dict[str, float]:
    n = {t: int(np.isin(raw, v).sum()) for t, v in tissues.items() if t != "none"}
    n["tc"], n["wt"] = n["ncr"] + n["et"], n["ncr"] + n["et"] + n["ed"]
    return {f"{t}_ml": c * voxel_ml for t, c in n.items()}


@pytest.mark.parametrize("scheme", sorted(SOURCE_TISSUES))
def test_case_features_of_a_scheme_count_its_tissues(scheme: str) -> None:
    s = get_scheme(scheme)
    rng = np.random.default_rng(0)
    raw = rng.choice(np.asarray(s.values), size=(12, 10, 8)).astype(np.uint8)
    feats = case_features(s.to_internal(raw), (1.0, 1.0, 2.0), scheme=s)
    for key, value in _expected_ml(raw, SOURCE_TISSUES[scheme], 0.002).items():
        assert feats[key] == pytest.approx(value), key
    assert np.array_equal(tissue_labels(raw, None), raw)  # canonical labels pass through


def test_a_scheme_without_glioma_regions_has_no_survival_features() -> None:
    with pytest.raises(ValueError, match=r"need the WT, TC and ET regions; the 'men_rt' scheme scores GTV"):
        tissue_labels(np.zeros((2, 2, 2), np.uint8), "men_rt")
    with pytest.raises(ValueError, match="not internal labels of the 'gli2024' scheme"):
        tissue_labels(np.full((2, 2, 2), 5, np.uint8), "gli2024")


@pytest.mark.parametrize("layout", ["gli2024", "ped2024"])
def test_feature_rows_read_each_dataset_in_its_scheme(tmp_path: Path, layout: str) -> None:
    root = make_dataset(tmp_path / layout, layout=layout, n_cases=1, shape=(32, 32, 24), progress=False)
    ds = io.open_dataset(root)
    (row,) = feature_rows(root)
    raw = np.asarray(nib.load(str(ds.ref(row["case_id"]).label)).dataobj)
    assert set(SOURCE_TISSUES[layout]["none"]) <= set(np.unique(raw).tolist()) or layout == "ped2024"
    for key, value in _expected_ml(raw, SOURCE_TISSUES[layout], 0.001).items():
        assert row[key] == pytest.approx(value), key


def test_feature_rows_refuse_men_rt_naming_the_mask(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "menrt", layout="men_rt", n_cases=1, shape=(32, 32, 24), progress=False)
    with pytest.raises(io.DataError, match=r"_gtv\.nii\.gz: survival features .* 'men_rt' scheme scores GTV"):
        feature_rows(root)
