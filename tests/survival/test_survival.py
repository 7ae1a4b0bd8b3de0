"""Overall-survival prediction: features, clinical tables, classes, scores, models, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brainseg_tf import cli, io, survival, synthetic
from brainseg_tf.io import DataError

SPACING = (0.8, 1.25, 2.5)  # mm, anisotropic
VOXEL_ML = 0.8 * 1.25 * 2.5 / 1000.0


def _affine() -> np.ndarray:
    """A rotation about z by 90 degrees, the spacing, and a translation."""
    aff = np.zeros((4, 4))
    aff[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.diag(SPACING)
    aff[:3, 3] = (10.0, -20.0, 5.0)
    aff[3, 3] = 1.0
    return aff


def _two_lesions() -> np.ndarray:
    """Lesion A: 4x4x2 edema with a 2x2x2 core (1 NCR voxel, 7 ET); lesion B: 3 ED voxels in a
    diagonal chain (26-connected, one component) far from A."""
    lab = np.zeros((20, 16, 10), np.uint8)
    lab[2:6, 2:6, 2:4] = 2
    lab[3:5, 3:5, 2:4] = 3
    lab[3, 3, 2] = 1
    for k in range(3):
        lab[12 + k, 10 + k, 5 + k] = 2
    return lab


# --------------------------------------------------------------------------- features


def test_volumes_ratios_components_and_world_centroid():
    lab = _two_lesions()
    brain = np.zeros(lab.shape, bool)
    brain[1:19, 1:15, 1:9] = True  # 18 * 14 * 8 = 2016 voxels, tumour inside
    f = survival.case_features(lab, SPACING, _affine(), brain)
    # voxel counts: NCR 1, ET 7, ED 32 - 8 + 3 = 27; TC 8, WT 35
    assert f["ncr_ml"] == pytest.approx(1 * VOXEL_ML, rel=1e-12)
    assert f["et_ml"] == pytest.approx(7 * VOXEL_ML, rel=1e-12)
    assert f["ed_ml"] == pytest.approx(27 * VOXEL_ML, rel=1e-12)
    assert f["tc_ml"] == pytest.approx(8 * VOXEL_ML, rel=1e-12)
    assert f["wt_ml"] == pytest.approx(35 * VOXEL_ML, rel=1e-12)
    assert f["et_over_tc"] == pytest.approx(7 / 8)
    assert f["ncr_over_tc"] == pytest.approx(1 / 8)
    assert f["tc_over_wt"] == pytest.approx(8 / 35)
    assert f["ed_over_wt"] == pytest.approx(27 / 35)
    assert f["et_over_wt"] == pytest.approx(7 / 35)
    assert f["brain_ml"] == pytest.approx(2016 * VOXEL_ML)
    assert f["wt_brain_fraction"] == pytest.approx(35 / 2016)
    assert f["tc_brain_fraction"] == pytest.approx(8 / 2016)
    assert f["et_brain_fraction"] == pytest.approx(7 / 2016)
    assert f["wt_components"] == 2 and f["tc_components"] == 1
    # TC fills its 2x2x2 box; WT's box runs 2..14 x 2..12 x 2..7 (13 * 11 * 6 voxels)
    assert f["tc_extent"] == 1.0
    assert f["wt_extent"] == pytest.approx(35 / (13 * 11 * 6))
    idx = np.argwhere(lab > 0).mean(axis=0)
    expected = _affine()[:3, :3] @ idx + _affine()[:3, 3]
    # by hand: x = 10 - 1.25 j, y = -20 + 0.8 i, z = 5 + 2.5 k
    assert expected[0] == pytest.approx(10 - 1.25 * idx[1]) and expected[1] == pytest.approx(-20 + 0.8 * idx[0])
    assert [f["centroid_x_mm"], f["centroid_y_mm"], f["centroid_z_mm"]] == pytest.approx(expected.tolist())
    assert list(f) == list(survival.FEATURE_NAMES)


def test_surface_area_of_a_cuboid_by_hand():
    a, b, c = 4, 5, 6
    lab = np.zeros((9, 10, 11), np.uint8)
    lab[2 : 2 + a, 2 : 2 + b, 2 : 2 + c] = 1
    sx, sy, sz = SPACING
    # Marching cubes at 0.5 puts the surface half a voxel out: flat faces over the centre grid,
    # chamfer strips along the 12 edges, one triangle at each of the 8 corners.
    faces = 2 * ((a - 1) * sx * (b - 1) * sy + (b - 1) * sy * (c - 1) * sz + (a - 1) * sx * (c - 1) * sz)
    edges = 4 * (
        (a - 1) * sx * math.hypot(sy / 2, sz / 2)
        + (b - 1) * sy * math.hypot(sx / 2, sz / 2)
        + (c - 1) * sz * math.hypot(sx / 2, sy / 2)
    )
    corners = 8 * 0.5 * math.sqrt((sy * sz / 4) ** 2 + (sx * sz / 4) ** 2 + (sx * sy / 4) ** 2)
    f = survival.case_features(lab, SPACING)
    assert f["tc_surface_mm2"] == pytest.approx(faces + edges + corners, rel=1e-6)
    assert f["wt_surface_mm2"] == f["tc_surface_mm2"]
    assert f["et_ml"] == 0 and f["et_over_tc"] == 0.0 and f["ncr_over_tc"] == 1.0
    assert 0.5 < f["wt_sphericity"] < 0.9


def test_sphericity_of_a_ball_in_mm_is_near_one_and_bounded():
    sp = (1.0, 1.0, 2.0)
    g = np.indices((31, 31, 16)).astype(float)
    ball = ((g[0] - 15) ** 2 + (g[1] - 15) ** 2 + ((g[2] - 7.5) * 2.0) ** 2) <= 12.0**2
    f = survival.case_features(ball.astype(np.uint8) * 2, sp)
    assert 0.85 < f["wt_sphericity"] <= 1.0
    assert f["wt_components"] == 1 and f["tc_components"] == 0 and f["tc_sphericity"] == 0.0


def test_empty_label_and_missing_geometry():
    f = survival.case_features(np.zeros((5, 5, 5), np.uint8), (1, 1, 1), np.eye(4))
    assert f["wt_ml"] == 0 and f["et_over_tc"] == 0 and f["wt_components"] == 0 and f["wt_surface_mm2"] == 0
    assert math.isnan(f["centroid_x_mm"]) and math.isnan(f["brain_ml"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"label": np.full((3, 3, 3), 4, np.uint8)}, "canonical"),
        ({"label": np.zeros((3, 3), np.uint8)}, "shape"),
        ({"spacing": (1.0, -1.0, 1.0)}, "spacing"),
        ({"affine": np.eye(3)}, "affine"),
        ({"brain_mask": np.ones((2, 2, 2), bool)}, "brain_mask"),
    ],
)
def test_bad_feature_arguments(kwargs, match):
    args = {"label": np.zeros((3, 3, 3), np.uint8), "spacing": (1.0, 1.0, 1.0)} | kwargs
    with pytest.raises(ValueError, match=match):
        survival.case_features(**args)


# --------------------------------------------------------------------------- classes and scores


@pytest.mark.parametrize(
    "days, cls",
    [
        (0, 0),
        (299, 0),
        (299.99, 0),
        (300, 1),
        (300.01, 1),
        (449.99, 1),
        (450, 1),
        (450.01, 2),
        (451, 2),
        (3000, 2),
    ],
)
def test_class_boundaries(days, cls):
    assert survival.CLASS_THRESHOLDS_DAYS == (300.0, 450.0)
    assert int(survival.survival_class(days)) == cls


def test_class_refuses_nan_and_negative():
    for bad in (float("nan"), -1.0):
        with pytest.raises(ValueError, match="days"):
            survival.survival_class([100.0, bad])


def test_scores_by_hand():
    true = [100.0, 350.0, 500.0, 600.0]
    pred = [200.0, 400.0, 300.0, 700.0]  # classes true 0,1,2,2 predicted 0,1,1,2
    s = survival.scores(true, pred)
    assert s["n"] == 4 and s["accuracy"] == 0.75
    assert s["mse"] == pytest.approx((100**2 + 50**2 + 200**2 + 100**2) / 4)
    assert s["median_se"] == pytest.approx(100.0**2)
    assert s["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert s["spearman"] == pytest.approx(0.8)
    lo, hi = s["accuracy_ci"]
    assert 0.2 < lo < 0.75 < hi <= 1.0
    assert math.isnan(survival.scores(true, [400.0] * 4)["spearman"])


def test_kaplan_meier_by_hand():
    # deaths at 100, 200 (two), 400; censored at 150 and 300
    t, s = survival.kaplan_meier([100, 150, 200, 200, 300, 400], [1, 0, 1, 1, 0, 1])
    assert t.tolist() == [0, 100, 200, 400]
    assert s == pytest.approx([1.0, 5 / 6, 5 / 6 * (1 - 2 / 4), 5 / 6 * 0.5 * 0.0])


# --------------------------------------------------------------------------- clinical tables


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_brats2020_table_with_alive_and_empty_resection(tmp_path):
    t = survival.read_clinical(
        _write(
            tmp_path / "survival_info.csv",
            (
                "Brats20ID,Age,Survival_days,Extent_of_Resection\n"
                "BraTS20_Training_001,60.463,289,GTR\n"
                "BraTS20_Training_002,52.263,ALIVE (361 days later),\n"
                "BraTS20_Training_003,,616,STR\n"
                "BraTS20_Training_004,47.1,ALIVE,NA\n"
            ),
        )
    )
    assert t.format == "brats2020" and len(t) == 4 and t.has_resection
    r = t.by_id()
    assert (r["BraTS20_Training_001"].age, r["BraTS20_Training_001"].survival_days) == (60.463, 289.0)
    assert r["BraTS20_Training_001"].resection == "GTR" and not r["BraTS20_Training_001"].censored
    alive = r["BraTS20_Training_002"]
    assert alive.censored and alive.alive_days == 361.0 and math.isnan(alive.survival_days) and alive.resection == "NA"
    assert math.isnan(r["BraTS20_Training_003"].age) and r["BraTS20_Training_003"].resection == "STR"
    assert r["BraTS20_Training_004"].censored and math.isnan(r["BraTS20_Training_004"].alive_days)
    data = survival.training_set(t)
    assert data.case_ids == ["BraTS20_Training_001"]
    assert data.excluded == {
        "censored (ALIVE)": ["BraTS20_Training_002", "BraTS20_Training_004"],
        "no age": ["BraTS20_Training_003"],
    }


def test_brats2018_2017_and_validation_tables(tmp_path):
    t18 = survival.read_clinical(
        _write(
            tmp_path / "survival_data.csv",
            (
                "BraTS18ID,Age,Survival,ResectionStatus\nBrats18_CBICA_ABM_1,69.912,503,GTR\nBrats18_2013_11_1,29.12,150,NA\n"
            ),
        )
    )
    assert t18.format == "brats2018" and [r.resection for r in t18.records] == ["GTR", "NA"]
    t17 = survival.read_clinical(
        _write(tmp_path / "s17.csv", "Brats17ID,Age,Survival\nBrats17_TCIA_167_1,74.907,153\n")
    )
    assert t17.format == "brats2017" and not t17.has_resection and t17.records[0].survival_days == 153.0
    val = survival.read_clinical(
        _write(tmp_path / "v.csv", "BraTS20ID,Age,ResectionStatus\nBraTS20_Validation_001,68.2,GTR\n")
    )
    assert val.format == "validation" and math.isnan(val.records[0].survival_days)


def test_synthetic_survival_info_is_the_embedded_default(synth):
    t = survival.read_clinical(synth / "survival_info.csv")
    assert t.format == "brats2020" and len(t) == len(io.open_dataset(synth))
    assert set(t.ids) == set(io.open_dataset(synth).case_ids)


@pytest.mark.parametrize(
    "text, line, column, problem",
    [
        ("Brats20ID,Age,Survival_days\nA_1,60,289\nA_2,sixty,300\n", 3, "Age", "not a number"),
        ("Brats20ID,Age,Survival_days\nA_1,60,289\nA_2,61,soon\n", 3, "Survival_days", "not a number"),
        ("Brats20ID,Age,Survival_days\nA_1,60,-5\n", 2, "Survival_days", "outside"),
        ("Brats20ID,Age,Survival_days\nA_1,60,289\n\nA_1,61,300\n", 4, "Brats20ID", "duplicate of line 2"),
        ("BraTS18ID,Age,Survival,ResectionStatus\nB_1,60,289,partial\n", 2, "ResectionStatus", "resection status"),
        ("Brats20ID,Age,Survival_days\n,60,289\n", 2, "Brats20ID", "not a case id"),
    ],
)
def test_bad_tables_name_file_line_and_column(tmp_path, text, line, column, problem):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as err:
        survival.read_clinical(path)
    msg = str(err.value)
    assert str(path) in msg and f"line {line}" in msg and f"column {column!r}" in msg and problem in msg
    assert err.value.path == path


def test_bad_table_structure(tmp_path):
    with pytest.raises(DataError, match="has no 'Age' column"):
        survival.read_clinical(_write(tmp_path / "a.csv", "Brats20ID,Years\nA,1\n"))
    with pytest.raises(DataError, match="case id column"):
        survival.read_clinical(_write(tmp_path / "b.csv", "Patient,Age\nA,1\n"))
    with pytest.raises(DataError, match="line 3 has 2 fields"):
        survival.read_clinical(_write(tmp_path / "c.csv", "Brats20ID,Age,Survival_days\nA,1,2\nB,1\n"))
    with pytest.raises(io.MissingFileError):
        survival.read_clinical(tmp_path / "none.csv")


def test_2017_ids_pair_with_2018_case_folders():
    table = ["Brats17_CBICA_ABM_1", "Brats17_2013_11_1", "Brats17_TCIA_201_1", "Brats17_TCIA_135_1"]
    cases = [
        "Brats18_CBICA_ABM_1",
        "Brats18_2013_11_1",
        "Brats18_TCIA01_201_1",
        "Brats18_TCIA02_135_1",
        "Brats18_TCIA03_135_1",
        "Brats18_TCIA10_628_1",
    ]
    assert survival.match_ids(table, cases) == {
        "Brats18_CBICA_ABM_1": "Brats17_CBICA_ABM_1",
        "Brats18_2013_11_1": "Brats17_2013_11_1",
    }
    by_number = survival.match_ids(table, cases, tcia_by_number=True)
    assert by_number["Brats18_TCIA01_201_1"] == "Brats17_TCIA_201_1"
    assert "Brats18_TCIA02_135_1" not in by_number  # two 2018 folders end in 135_1: ambiguous, left out
    assert survival.match_ids(["BraTS20_Training_001"], ["BraTS20_Training_001"]) == {
        "BraTS20_Training_001": "BraTS20_Training_001"
    }


def test_shared_real_table_pairs_with_the_shared_cases(real_brats2018):
    table = survival.read_clinical(real_brats2018 / "survival_data.csv")
    assert table.format == "brats2017" and len(table) == 141
    cases = sorted(p.name for p in real_brats2018.iterdir() if p.is_dir())
    assert sorted(survival.match_ids(table.ids, cases)) == [
        "Brats18_2013_11_1",
        "Brats18_CBICA_ABM_1",
        "Brats18_CBICA_ALU_1",
        "Brats18_CBICA_AME_1",
        "Brats18_CBICA_AQN_1",
    ]
    assert len(survival.training_set(table)) == 141


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def synth(synthetic_dataset):
    return synthetic_dataset(n_cases=16, seed=3, shape=(64, 64, 48), layout="brats2020")


@pytest.fixture(scope="module")
def synth_rows(synth):
    return survival.feature_rows(synth, clinical=synth / "survival_info.csv")


def test_feature_rows_match_the_generator(synth, synth_rows):
    case = synthetic.synthesize_case(synthetic.case_seed(3, 0), (64, 64, 48))
    row = synth_rows[0]
    assert row["case_id"] == io.case_id_for("brats2020", 0)
    for region in ("ncr", "ed", "et", "tc", "wt"):
        assert row[f"{region}_ml"] == pytest.approx(case.volumes_ml[region], abs=1e-9)
    assert row["brain_ml"] == pytest.approx(case.volumes_ml["brain"], abs=1e-9)
    assert [row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"]] == pytest.approx(list(case.centroid_mm))
    assert row["age"] == pytest.approx(case.age, abs=1e-3)


@pytest.mark.parametrize("method", survival.METHODS)
def test_save_load_in_a_fresh_process_is_bit_identical(tmp_path, synth, synth_rows, method):
    model = survival.fit(synth / "survival_info.csv", features=synth_rows, method=method, seed=1)
    path = model.save(tmp_path / "m.json")
    survival.write_features(synth_rows, tmp_path / "f.csv")
    here = [d.hex() for _, d in survival.predict_table(model, synth_rows)]
    code = (
        "import sys; from brainseg_tf import survival as s\n"
        "for _, d in s.predict_table(s.load(sys.argv[1]), sys.argv[2]): print(d.hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "f.csv")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == here
    assert "pickle" not in path.read_text() and json.loads(path.read_text())["method"] == method


def test_json_models_agree_with_scikit_learn(synth, synth_rows):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    data = survival.training_set(synth / "survival_info.csv", features=synth_rows)
    forest = survival.fit_training_set(data, "forest", seed=0)
    x = np.stack([data.columns[n] for n in forest.features], axis=1)
    ref = RandomForestRegressor(random_state=0, n_jobs=1, n_estimators=100, min_samples_leaf=5, max_features=0.5)
    assert forest.predict_set(data) == pytest.approx(ref.fit(x, data.days).predict(x), rel=1e-9)
    age = survival.fit_training_set(data, "age")
    ols = LinearRegression().fit(data.columns["age"][:, None], data.days)
    assert age.predict_set(data) == pytest.approx(np.maximum(ols.predict(data.columns["age"][:, None]), 1.0), rel=1e-9)
    majority = survival.fit_training_set(data, "majority")
    assert len(set(majority.predict_set(data))) == 1


def test_predict_from_a_label_map(synth, synth_rows):
    model = survival.fit(synth / "survival_info.csv", labels=synth, method="ridge")
    case = io.read_case(io.open_dataset(synth).ref(0))
    days = survival.predict(model, case.label, case.spacing, age=60.0, resection="GTR")
    row = {**survival.case_features(case.label, case.spacing), "age": 60.0, "resection_gtr": 1.0, "resection_str": 0.0}
    assert days == model.predict_one(row) and days >= 1.0
    located = survival.fit(
        synth / "survival_info.csv",
        features=synth_rows,
        method="ridge",
        feature_names=["age", "wt_ml", "centroid_z_mm"],
    )
    with pytest.raises(ValueError, match="centroid_z_mm"):
        survival.predict(located, case.label, case.spacing, age=60.0)
    assert survival.predict(located, case.label, case.spacing, age=60.0, affine=case.affine) >= 1.0


def test_cross_validation_is_seeded(synth_rows, synth):
    data = survival.training_set(synth / "survival_info.csv", features=synth_rows)
    a = survival.cross_validate(data, "forest", folds=3, seed=0)
    b = survival.cross_validate(data, "forest", folds=3, seed=0)
    assert np.array_equal(a["predictions"], b["predictions"]) and len(a["fold_accuracy"]) == 3
    with pytest.raises(ValueError, match="folds"):
        survival.cross_validate(data, "age", folds=len(data) + 1)


def test_load_refuses_what_is_not_a_model(tmp_path):
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04\x95")
    with pytest.raises(DataError, match="not a JSON survival model"):
        survival.load(tmp_path / "m.pkl")
    (tmp_path / "m.json").write_text('{"format": "other"}')
    with pytest.raises(DataError, match="not a brainseg_tf.survival model"):
        survival.load(tmp_path / "m.json")


def test_unstamped_label_maps_need_a_convention(tmp_path):
    import nibabel as nib

    lab = np.zeros((6, 6, 6), np.uint8)
    lab[1:3, 1:3, 1:3] = 2
    lab[1, 1, 1] = 1  # 1 and 2 swap meaning between BraTS 2023 and MSD: not guessed
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "Case_1.nii.gz")
    with pytest.raises(DataError, match="--convention"):
        survival.feature_rows(tmp_path)
    (row,) = survival.feature_rows(tmp_path, convention="msd")
    assert (row["case_id"], row["ncr_ml"], row["ed_ml"]) == ("Case_1", 0.007, 0.001)


# --------------------------------------------------------------------------- CLI


def test_cli_end_to_end(tmp_path, synth, capsys):
    # A folder of <case_id>.nii.gz label maps, as `brainseg predict` writes (here the ground truth).
    masks = tmp_path / "pred"
    for case in io.open_dataset(synth):
        io.write_label(case.label, case, masks / f"{case.case_id}.nii.gz")
    clinical = str(synth / "survival_info.csv")
    f, m, p = (str(tmp_path / n) for n in ("features.csv", "model.json", "predictions.csv"))
    assert (
        cli.main(
            [
                "survival",
                "features",
                "--labels",
                str(masks),
                "--images",
                str(synth),
                "--clinical",
                clinical,
                "--out",
                f,
                "-q",
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "survival",
                "fit",
                "--clinical",
                clinical,
                "--features",
                f,
                "--out",
                m,
                "--method",
                "forest",
                "--cv",
                "3",
                "-q",
            ]
        )
        == 0
    )
    assert cli.main(["survival", "predict", "--model", m, "--features", f, "--out", p]) == 0
    assert (
        cli.main(
            ["survival", "evaluate", "--predictions", p, "--clinical", clinical, "--out", str(tmp_path / "scores.json")]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3-fold CV, forest" in out and "3-fold CV, age" in out and "scored on GTR patients only" in out
    rows = survival.read_features(f)
    assert len(rows) == 16 and all(math.isfinite(r["brain_ml"]) for r in rows)
    preds = survival.read_predictions(p)
    assert [c for c, _, _ in preds] == sorted(io.open_dataset(synth).case_ids)
    scored = json.loads((tmp_path / "scores.json").read_text())
    assert scored["gtr_only"] is True and scored["scored"]["n"] <= scored["all"]["n"]
    # the console script, a prediction for a case the table lacks, and bad arguments
    exe = Path(sys.executable).with_name("brainseg")
    run = subprocess.run(
        [str(exe), "survival", "evaluate", "--predictions", p, "--clinical", clinical, "--all-patients"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "scored on all patients" in run.stdout
    Path(p).write_text(Path(p).read_text() + "Nobody_1,300\n")
    assert cli.main(["survival", "evaluate", "--predictions", p, "--clinical", clinical]) == 2
    err = capsys.readouterr().err
    assert p in err and "line 18" in err and "'case_id'" in err and "unknown case id" in err
    assert cli.main(["survival", "fit", "--clinical", clinical, "--out", m, "--method", "nope"]) == 2


def test_cli_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as ok:
        cli.main(["survival", "--help"])
    assert ok.value.code == 0 and "evaluate" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        cli.main(["survival", "fit", "--clinical", "x.csv"])
    assert bad.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        cli.main(["survival", "fit", "--clinical", "x.csv", "--out", "m.json", "--features", "f", "--labels", "l"])
    assert bad.value.code == 2
