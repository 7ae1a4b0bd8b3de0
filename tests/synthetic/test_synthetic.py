"""Synthetic BraTS-like generator: determinism, file-like dtypes, anatomy and tumour plausibility,
contrast orderings of real scans, survival CSV, and datasets written in every layout."""

from __future__ import annotations

import csv
import re
import time

import numpy as np
import pytest
from scipy import ndimage

from brainseg_tf.synthetic import (
    MODALITIES,
    SURVIVAL_COLUMNS,
    SyntheticCase,
    case_seed,
    make_dataset,
    survival_record,
    synthesize_case,
)

SMALL = (64, 64, 48)
POOL_SHAPE = (96, 96, 64)  # fine enough for partial volume to resemble full-size cases
N_POOL = 12
CSF, GM, WM, DGM = 1, 2, 3, 4


@pytest.fixture(scope="module")
def pool() -> list[SyntheticCase]:
    """A handful of small cases shared by the statistical tests."""
    return [synthesize_case(case_seed(123, i), POOL_SHAPE) for i in range(N_POOL)]


@pytest.fixture(scope="module")
def mid_case() -> SyntheticCase:
    """A half-size case: fine enough for a cortical ribbon, cheap enough for a unit test."""
    return synthesize_case(5, (120, 120, 78))


def test_determinism_per_seed():
    a, b, c = synthesize_case(7, SMALL), synthesize_case(7, SMALL), synthesize_case(8, SMALL)
    for m in MODALITIES:
        np.testing.assert_array_equal(a.images[m], b.images[m])
    np.testing.assert_array_equal(a.label, b.label)
    assert a.volumes_ml == b.volumes_ml and a.age == b.age
    assert not np.array_equal(a.images["t1"], c.images["t1"])
    assert not np.array_equal(a.label, c.label)


def test_dtypes_shapes_and_brats_affine():
    case = synthesize_case(1, (48, 40, 32), spacing=(1.0, 1.2, 2.0))
    assert set(case.images) == set(MODALITIES)
    for m in MODALITIES:
        assert case.images[m].dtype == np.int16 and case.images[m].shape == (48, 40, 32)
    assert case.label.dtype == np.uint8 and case.label.shape == (48, 40, 32)
    assert case.brain_mask.dtype == bool
    expected = np.diag([-1.0, -1.2, 2.0, 1.0])
    expected[1, 3] = 39 * 1.2  # (Y - 1) * sy, like (0, 239, 0) on a real 240-grid
    np.testing.assert_allclose(case.affine, expected)
    assert case.image_stack().shape == (48, 40, 32, 4)
    np.testing.assert_array_equal(case.image_stack()[..., 2], case.images["t1ce"])
    # Volumes use the spacing: 2.4 mm^3 voxels.
    assert case.volumes_ml["brain"] == pytest.approx(case.brain_mask.sum() * 2.4 / 1000.0)


def test_full_size_smoke():
    t0 = time.perf_counter()
    case = synthesize_case(0)
    seconds = time.perf_counter() - t0
    assert case.label.shape == (240, 240, 155)
    np.testing.assert_allclose(case.affine[:3, 3], [0.0, 239.0, 0.0])
    assert 1000.0 < case.volumes_ml["brain"] < 1900.0  # adult brains, as in the real cases
    assert 3.0 < case.volumes_ml["wt"] < 400.0
    assert seconds < 15.0  # ~1-2 s on a free core; generous for loaded CI machines


def test_labels_background_and_brain(pool):
    for case in pool:
        assert set(np.unique(case.label)) <= {0, 1, 2, 3}
        brain = case.brain_mask
        for m in MODALITIES:
            img = case.images[m]
            assert np.all(img[~brain] == 0)
            assert np.all(img[brain] > 0)  # "brain = nonzero in all modalities" holds exactly
        assert np.all(case.label[~brain] == 0)
        assert case.volumes_ml["wt"] > 0
        assert np.array_equal(case.tissue > 0, brain)


def test_tumour_nested_plausibly(pool):
    both = [c for c in pool if c.has_ncr and c.has_et]
    assert both, "no case with both NCR and ET"
    for case in both:
        # ET borders the necrosis.
        assert (ndimage.binary_dilation(case.label == 1) & (case.label == 3)).any()
    # The necrosis sits inside the tumour: few of its neighbours within the brain (away from its
    # surface) are healthy. On the 18 real BraTS 2018 cases this share has median 0.05, max 0.38.
    healthy_share = []
    for case in pool:
        ncr = case.label == 1
        if ncr.any():
            shell = ndimage.binary_dilation(ncr) & ~ncr & ndimage.binary_erosion(case.brain_mask, iterations=3)
            healthy_share.append((case.label[shell] == 0).mean())
    assert np.median(healthy_share) < 0.15 and max(healthy_share) < 0.5
    for case in pool:
        core = (case.label == 1) | (case.label == 3)
        ed = case.label == 2
        if core.any() and ed.any():
            assert (ndimage.binary_dilation(core) & ed).any()


def test_variety_of_tumours(pool):
    kinds = {c.kind for c in pool}
    assert len(kinds) >= 3
    assert any(not c.has_et for c in pool), "no case without ET"
    assert any(not c.has_ncr for c in pool), "no case without NCR"
    assert {c.features["hemisphere"] for c in pool} == {"left", "right"}
    wt = np.array([c.volumes_ml["wt"] / c.volumes_ml["brain"] for c in pool])
    assert wt.max() > 3 * wt.min()
    centroids = np.array([c.centroid_vox for c in pool])
    assert centroids.std(axis=0).min() > 2.0  # positions vary along every axis
    assert all(c.grade == ("LGG" if c.kind == "no_et" else "HGG") for c in pool)


def test_healthy_tissue_contrasts(mid_case):
    case = mid_case
    healthy = case.brain_mask & (case.label == 0)

    def med(m, cls):
        return float(np.median(case.images[m][healthy & (case.tissue == cls)]))

    assert med("t1", WM) > med("t1", GM) > med("t1", CSF)
    assert med("t1ce", WM) > med("t1ce", GM) > med("t1ce", CSF)
    assert med("t2", CSF) > med("t2", GM) > med("t2", WM)
    assert med("flair", GM) > med("flair", WM) > med("flair", CSF)
    # Pure CSF (inside the ventricles, away from partial volume) is the brightest thing in T2,
    # lesions included.
    t2 = case.images["t2"]
    pure_csf = ndimage.binary_erosion(case.tissue == CSF) & healthy
    assert pure_csf.sum() > 20
    assert np.median(t2[pure_csf]) > max(np.median(t2[case.label == k]) for k in (1, 2, 3) if (case.label == k).any())
    # A cortical ribbon: grey matter makes up a sizeable share of the brain, not a thin shell.
    frac_gm = (case.tissue == GM).sum() / case.brain_mask.sum()
    assert 0.2 < frac_gm < 0.65


def _relative_medians(cases):
    """Median over cases of each class's median intensity / healthy-brain median, per modality."""
    out = {}
    for m in MODALITIES:
        rel = {k: [] for k in (1, 2, 3)}
        for c in cases:
            ref = np.median(c.images[m][c.brain_mask & (c.label == 0)])
            for k in rel:
                if (c.label == k).any():
                    rel[k].append(np.median(c.images[m][c.label == k]) / ref)
        out[m] = {k: float(np.median(v)) for k, v in rel.items()}
    return out


def test_lesion_contrast_orderings_match_real_scans(pool):
    # Orderings of the medians measured on the 18 real BraTS 2018 cases (bench/synthetic.py,
    # docs/synthetic.md); healthy brain = 1.0.
    rel = _relative_medians(pool)
    ncr, ed, et = 1, 2, 3
    assert rel["flair"][ncr] > rel["flair"][et] > rel["flair"][ed] > 1.0
    assert rel["t1"][ed] > 1.0 > rel["t1"][et] > rel["t1"][ncr]
    assert rel["t1ce"][et] > 1.0 > rel["t1ce"][ed] > rel["t1ce"][ncr]
    assert rel["t2"][ncr] > rel["t2"][et] > rel["t2"][ed] > 1.0


def test_edema_prefers_white_matter(pool):
    # Among voxels at the same distance from the core, edema is likelier over white matter.
    in_wm, in_gm = [0, 0], [0, 0]
    for c in pool:
        core = (c.label == 1) | (c.label == 3)
        if not core.any():
            continue
        dist = ndimage.distance_transform_edt(~core)
        band = (dist > 1) & (dist < 6) & c.brain_mask
        for cls, acc in ((WM, in_wm), (GM, in_gm)):
            sel = band & (c.tissue == cls)
            acc[0] += int((c.label[sel] == 2).sum())
            acc[1] += int(sel.sum())
    assert in_wm[0] / in_wm[1] > in_gm[0] / in_gm[1]


def test_tumour_free_counterpart_and_mass_effect():
    seed = 11
    tum = synthesize_case(seed, (96, 96, 64))
    free = synthesize_case(seed, (96, 96, 64), with_tumour=False)
    assert free.kind == "none" and not free.label.any() and free.volumes_ml["wt"] == 0
    np.testing.assert_array_equal(tum.brain_mask, free.brain_mask)
    wt = tum.label > 0
    near = tum.brain_mask & ~wt & (ndimage.distance_transform_edt(~wt) < 6)
    same = np.all([tum.images[m] == free.images[m] for m in MODALITIES], axis=0)
    # Away from the tumour the scan is the healthy subject's, voxel for voxel ...
    assert same[tum.brain_mask].mean() > 0.2
    assert not same[wt].any()
    # ... next to it the anatomy has been pushed aside.
    assert (tum.tissue[near] != free.tissue[near]).mean() > 0.02


def test_survival_model_depends_on_age_and_tumour(pool):
    base = pool[0]

    def days(age, wt_scale, n=400):
        case = SyntheticCase(
            **{**base.__dict__, "age": age, "volumes_ml": {**base.volumes_ml, "wt": base.volumes_ml["wt"] * wt_scale}}
        )
        rng = np.random.default_rng(0)
        return np.median([survival_record(case, rng)["days"] for _ in range(n)])

    assert days(75.0, 1.0) < days(45.0, 1.0)
    assert days(60.0, 4.0) < days(60.0, 0.25)
    recs = [survival_record(base, np.random.default_rng(i)) for i in range(300)]
    assert {r["Extent_of_Resection"] for r in recs} == {"GTR", "STR", "NA"}
    censored = [r for r in recs if isinstance(r["Survival_days"], str)]
    assert 0 < len(censored) < 60
    assert all(re.fullmatch(r"ALIVE \(\d+ days later\)", r["Survival_days"]) for r in censored)


@pytest.mark.parametrize("layout", ["brats2018", "brats2020", "brats2021", "brats2023", "msd"])
def test_make_dataset_reads_back_canonical(tmp_path, layout):
    from brainseg_tf.io import case_id_for, open_dataset

    shape = (48, 48, 32)
    root = make_dataset(tmp_path / layout, layout=layout, n_cases=2, seed=3, shape=shape, progress=False)
    ds = open_dataset(root)
    assert ds.layout == layout
    assert ds.case_ids == [case_id_for(layout, i) for i in range(2)]
    for i in range(2):
        expected = synthesize_case(case_seed(3, i), shape)
        got = ds[case_id_for(layout, i)]
        np.testing.assert_array_equal(got.label, expected.label)
        np.testing.assert_array_equal(got.image, expected.image_stack())
        np.testing.assert_allclose(got.affine, expected.affine)
        if layout == "brats2018":
            assert got.ref.images["flair"].parent.parent.name == expected.grade
    with open(root / "survival_info.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == SURVIVAL_COLUMNS
    assert [r[0] for r in rows[1:]] == ds.case_ids


def test_survival_csv_deterministic_and_well_formed(tmp_path):
    a = make_dataset(tmp_path / "a", layout="brats2020", n_cases=5, seed=9, shape=(32, 32, 24), progress=False)
    b = make_dataset(tmp_path / "b", layout="brats2020", n_cases=5, seed=9, shape=(32, 32, 24), progress=False)
    c = make_dataset(tmp_path / "c", layout="brats2020", n_cases=5, seed=10, shape=(32, 32, 24), progress=False)
    text = (a / "survival_info.csv").read_text()
    assert text == (b / "survival_info.csv").read_text()
    assert text != (c / "survival_info.csv").read_text()
    with open(a / "survival_info.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    for r in rows:
        assert 18.0 <= float(r["Age"]) <= 90.0
        assert r["Extent_of_Resection"] in {"GTR", "STR", "NA"}
        assert r["Survival_days"].isdigit() or r["Survival_days"].startswith("ALIVE (")


def test_make_dataset_without_labels(tmp_path):
    root = make_dataset(
        tmp_path, layout="brats2021", n_cases=2, seed=0, shape=(32, 32, 24), with_labels=False, progress=False
    )
    assert not list(root.rglob("*_seg.nii.gz"))
    with open(root / "survival_evaluation.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["BraTS20ID", "Age", "ResectionStatus"] and len(rows) == 3


@pytest.mark.parametrize(
    "kwargs, name",
    [({"seed": -1}, "seed"), ({"shape": (8, 64, 64)}, "shape"), ({"spacing": (1.0, 0.0, 1.0)}, "spacing")],
)
def test_bad_arguments(kwargs, name):
    args = {"seed": 0, "shape": SMALL, **kwargs}
    with pytest.raises(ValueError, match=name):
        synthesize_case(args.pop("seed"), **args)


@pytest.mark.parametrize("kwargs, name", [({"layout": "brats2019"}, "layout"), ({"n_cases": 0}, "n_cases")])
def test_make_dataset_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_dataset(tmp_path, **{"shape": SMALL, **kwargs})


def test_ensure_dataset_builds_once_and_rebuilds_for_other_parameters(tmp_path):
    from brainseg_tf.synthetic import ensure_dataset

    out = ensure_dataset(tmp_path / "d", n_cases=2, shape=(32, 32, 24), seed=1)
    flair = next(out.glob("*/*_flair.nii.gz"))
    first = flair.stat().st_mtime_ns
    assert ensure_dataset(tmp_path / "d", n_cases=2, shape=(32, 32, 24), seed=1) == out
    assert flair.stat().st_mtime_ns == first  # reused, not rewritten
    ensure_dataset(tmp_path / "d", n_cases=3, shape=(32, 32, 24), seed=1)
    assert len(list(out.glob("*/*_flair.nii.gz"))) == 3
