"""Uncertainty: entropy and member variance against hand values, K identical models == one model,
maps written beside the labels, and the cases ranked in predictions.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf import io as bio
from brainseg_tf import uncertainty as unc
from brainseg_tf.inference import (
    Ensemble,
    Predictor,
    mirror_flips,
    mirror_tta,
    predict_case,
    predict_folder,
    sliding_window,
)

SHAPE = (20, 18, 12)


# ----------------------------------------------------------------------------- maps


def test_entropy_hand_values():
    probs = np.array([[1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0]], np.float32)
    np.testing.assert_allclose(
        unc.predictive_entropy(probs, "softmax"), [0.0, 1.0, math.log(2) / math.log(4)], atol=1e-6
    )
    regions = np.array([[0, 1, 1], [0.5, 0.5, 0.5], [0.5, 0, 1]], np.float32)
    np.testing.assert_allclose(unc.predictive_entropy(regions, "sigmoid"), [0.0, 1.0, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(unc.predictive_entropy(np.array([[0.5]]), "region"), [1.0], atol=1e-6)
    with pytest.raises(ValueError, match="head"):
        unc.predictive_entropy(probs, "argmax")


def test_variance_zero_where_members_agree_and_one_where_two_split_evenly():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(5, 6)).astype(np.float32)
    assert (unc.member_variance([p, p, p]) == 0).all()  # exactly zero, not approximately
    a, b = np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32)
    a[:, 3] = 1  # member a: ET everywhere
    b[:2, 0] = 1  # member b: BG in the first two voxels, ET in the last
    b[2, 3] = 1
    np.testing.assert_array_equal(unc.member_variance([a, b]), [1.0, 1.0, 0.0])
    members = np.stack([rng.random((7, 3)) for _ in range(3)]).astype(np.float32)
    np.testing.assert_allclose(unc.member_variance(members), 4 * np.var(members, axis=0).max(-1), atol=1e-6)
    three = np.array([[[1.0]], [[1.0]], [[0.0]]], np.float32)  # a 2:1 split: 4 * 2/9
    np.testing.assert_allclose(unc.member_variance(three), [8 / 9], atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        unc.member_variance([a, a[:2]])


def test_case_score_region_and_empty_case():
    u = np.zeros((9, 9, 9), np.float32)
    labels = np.zeros((9, 9, 9), np.uint8)
    assert unc.case_score(u, labels) == 0.0
    labels[4, 4, 4] = 2
    u[4, 4, 4] = 0.2
    assert unc.case_score(u, labels, dilation=0) == pytest.approx(0.2)
    u[0, 0, 0] = 0.8  # uncertain and outside the tumour: counted
    assert unc.case_score(u, labels, dilation=0) == pytest.approx(0.5)
    assert unc.case_score(u, labels, dilation=1) == pytest.approx(1.0 / 28)  # 27 neighbourhood voxels + 1
    with pytest.raises(ValueError, match="shape"):
        unc.case_score(u, labels[:-1])


def test_case_score_leaves_out_a_resection_cavity():
    from brainseg_tf.schemes import get_scheme

    gli = get_scheme("gli2024")
    assert gli.tumour_internal == (1, 2, 3)  # internal 4 is RC
    assert get_scheme("ped2024").tumour_internal == (1, 2, 3, 4)  # PED's cystic component is tumour
    u = np.zeros((9, 9, 9), np.float32)
    labels = np.zeros((9, 9, 9), np.uint8)
    labels[4, 4, 4], u[4, 4, 4] = 3, 0.2  # ET
    labels[0, 0, 0], u[0, 0, 0] = gli.internal_value("RC"), 0.4  # a cavity, not tumour
    assert unc.case_score(u, labels, dilation=0, tumour=gli.tumour_internal) == pytest.approx(0.2)
    assert unc.case_score(u, labels, dilation=0, tumour=(1, 2, 3, 4)) == pytest.approx(0.3)


def test_resolve_kind():
    assert unc.resolve_kind("auto", members=1, flips=1) == "entropy"
    assert unc.resolve_kind(True, members=2, flips=1) == "variance"
    assert unc.resolve_kind("auto", members=1, flips=8) == "variance"
    with pytest.raises(ValueError, match="ensemble"):
        unc.resolve_kind("variance", members=1, flips=1)
    with pytest.raises(ValueError, match="unknown"):
        unc.resolve_kind("std", members=2, flips=1)


# ----------------------------------------------------------------------------- prediction


def _images(rng: np.random.Generator) -> dict[str, np.ndarray]:
    brain = np.zeros(SHAPE, bool)
    brain[3:17, 2:16, 2:10] = True
    return {
        m: np.where(brain, rng.normal(size=SHAPE) * 50 + 300 + 100 * i, 0).astype(np.int16)
        for i, m in enumerate(bio.MODALITIES)
    }


def _write_case(root: Path, case_id: str, seed: int = 0) -> Path:
    label = np.zeros(SHAPE, np.uint8)
    label[6:12, 6:12, 4:8] = 2
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    ref = bio.write_case(root, "brats2021", case_id, _images(np.random.default_rng(seed)), label, affine)
    return Path(ref.images["flair"]).parent


def _softmax_rule(batch: np.ndarray) -> np.ndarray:
    """Voxelwise softmax over (1, flair, t1ce, t2): flip-equivariant, so mirror flips agree."""
    scores = np.concatenate([np.ones_like(batch[..., :1]), batch[..., [0, 2, 3]]], axis=-1)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _constant(cls: int):
    def fn(batch: np.ndarray) -> np.ndarray:
        out = np.zeros(batch.shape[:-1] + (4,), np.float32)
        out[..., cls] = 1.0
        return out

    return fn


def test_k_identical_models_equal_one_model(tmp_path):
    case = bio.read_case(_write_case(tmp_path, "BraTS2021_00001"))
    one = Predictor(fn=_softmax_rule)
    single = predict_case(one, case, window=8, return_probabilities=True, uncertainty="auto")
    assert single.uncertainty_kind == "entropy"
    for k in (2, 3):
        ens = predict_case(
            Ensemble([Predictor(fn=_softmax_rule) for _ in range(k)]),
            case,
            window=8,
            return_probabilities=True,
            uncertainty="variance",
        )
        np.testing.assert_array_equal(ens.labels, single.labels)
        np.testing.assert_allclose(ens.probabilities, single.probabilities, rtol=0, atol=1e-7)
        assert ens.uncertainty_kind == "variance" and (ens.uncertainty == 0).all()
    expected = unc.predictive_entropy(single.probabilities, "softmax")
    np.testing.assert_allclose(single.uncertainty, expected, atol=1e-6)  # entropy of the pasted-back probs
    assert single.uncertainty_score == pytest.approx(unc.case_score(single.uncertainty, single.labels))


def test_two_members_that_split_give_one_inside_the_box(tmp_path):
    case = bio.read_case(_write_case(tmp_path, "BraTS2021_00001"))
    out = predict_case(
        Ensemble([Predictor(fn=_constant(3)), Predictor(fn=_constant(0))]), case, window=8, uncertainty="auto"
    )
    box = tuple(slice(a, b) for a, b in out.geometry.crop)
    inside = np.zeros(SHAPE, bool)
    inside[box] = True
    assert out.uncertainty.dtype == np.float32 and out.uncertainty.shape == SHAPE
    assert (out.uncertainty[inside] == 1.0).all() and (out.uncertainty[~inside] == 0.0).all()
    assert out.uncertainty_score == pytest.approx(1.0)


def test_tta_members_variance_and_mean(tmp_path):
    case = bio.read_case(_write_case(tmp_path, "BraTS2021_00001"))
    agree = predict_case(
        Predictor(fn=_softmax_rule), case, window=8, tta=True, uncertainty="auto", return_probabilities=True
    )
    assert agree.uncertainty_kind == "variance" and (agree.uncertainty == 0).all()

    def left_half_et(batch):  # not flip-equivariant: the flips disagree
        out = np.zeros(batch.shape[:-1] + (4,), np.float32)
        half = batch.shape[1] // 2
        out[:, :half, ..., 3] = 1.0
        out[:, half:, ..., 0] = 1.0
        return out

    split = predict_case(
        Predictor(fn=left_half_et),
        case,
        window=8,
        tta=True,
        mirror_axes=(0,),
        uncertainty="auto",
        return_probabilities=True,
    )
    plain = predict_case(
        Predictor(fn=left_half_et), case, window=8, tta=True, mirror_axes=(0,), return_probabilities=True
    )
    np.testing.assert_allclose(split.probabilities, plain.probabilities, atol=1e-6)  # the same TTA mean
    assert split.uncertainty.max() > 0.5
    image = np.random.default_rng(1).normal(size=(10, 8, 8, 4)).astype(np.float32)
    flips = [sliding_window(f, image, window=8) for f in mirror_flips(left_half_et, (0,))]
    np.testing.assert_allclose(
        np.mean(flips, axis=0), sliding_window(mirror_tta(left_half_et, (0,)), image, window=8), atol=1e-6
    )


def test_predict_folder_writes_maps_and_ranks_cases(tmp_path):
    from brainseg_tf.evaluation import evaluate_folders

    data = tmp_path / "data"
    for i in range(3):
        _write_case(data, f"BraTS2021_0000{i + 1}", seed=i)

    def noisy(seed: int):
        def fn(batch):
            rng = np.random.default_rng(seed + int(abs(batch).sum()) % 1000)
            return _softmax_rule(batch + rng.normal(scale=0.8, size=batch.shape).astype(np.float32))

        return fn

    model = Ensemble([Predictor(fn=_softmax_rule), Predictor(fn=noisy(0))])
    out = tmp_path / "pred"
    recs = predict_folder(model, data, out, window=(8, 8, 8), uncertainty="auto", progress=False)
    assert [r["status"] for r in recs] == ["written"] * 3
    for r in recs:
        img = nib.load(r["uncertainty_map"])
        lab = nib.load(r["path"])
        assert Path(r["uncertainty_map"]).name == f"{r['case_id']}_uncertainty.nii.gz"
        assert img.get_data_dtype() == np.float32 and img.shape == lab.shape == SHAPE
        np.testing.assert_allclose(img.affine, lab.affine)
        u = np.asarray(img.dataobj)
        assert u.min() >= 0.0 and u.max() <= 1.0
        labels = bio.to_canonical(np.asarray(lab.dataobj), "brats")
        assert r["uncertainty"] == pytest.approx(unc.case_score(u, labels), abs=1e-6)
    summary = json.loads((out / "predictions.json").read_text())
    scores = {cid: summary["cases"][cid]["uncertainty"] for cid in summary["cases"]}
    assert summary["ranking"] == sorted(scores, key=lambda c: -scores[c])
    again = predict_folder(model, data, out, window=(8, 8, 8), uncertainty="auto", progress=False)
    assert [r["status"] for r in again] == ["skipped"] * 3
    assert json.loads((out / "predictions.json").read_text())["ranking"] == summary["ranking"]
    result = evaluate_folders(out, data, progress=False, lesion_wise=False)  # the summary stays readable
    assert len({row["case"] for row in result.rows}) == 3
    with pytest.raises(ValueError, match="uncertainty"):
        predict_folder(model, data, out, uncertainty="std", progress=False)


def test_cli_predict_flags():
    from brainseg_tf.cli import build_parser

    base = ["predict", "--model", "m", "--input", "i", "--out", "o"]
    args = build_parser().parse_args(base + ["--uncertainty", "--no-postprocessing"])
    assert args.uncertainty == "auto" and args.no_postprocessing
    assert build_parser().parse_args(base + ["--uncertainty", "entropy"]).uncertainty == "entropy"
    assert build_parser().parse_args(base).uncertainty is None


def test_bad_uncertainty_and_largest_component_arguments_are_refused_up_front(tmp_path):
    case = bio.read_case(_write_case(tmp_path, "BraTS2021_00001"))
    with pytest.raises(ValueError, match="ensemble"):
        predict_case(Predictor(fn=_softmax_rule), case, window=8, uncertainty="variance")
    with pytest.raises(ValueError, match="region"):
        predict_case(Predictor(fn=_softmax_rule), case, window=8, largest_component=["XX"])
    with pytest.raises(ValueError, match="largest_component"):
        predict_folder(Predictor(fn=_softmax_rule), tmp_path, tmp_path / "out", largest_component="WT", progress=False)

    brain = case.image[..., 0] != 0
    case.image[..., 0] = np.where(brain, 100.0, 0.0)
    case.image[5:10, 5:10, 3:7, 0] = 1000.0  # a big bright blob
    case.image[13, 13, 8, 0] = 1000.0  # and a one-voxel one

    def bright_is_et(batch):
        out = np.zeros(batch.shape[:-1] + (4,), np.float32)
        bright = batch[..., 0] > 1.0
        out[..., 3], out[..., 0] = bright, ~bright
        return out

    raw = predict_case(Predictor(fn=bright_is_et), case, window=8).labels
    assert raw[13, 13, 8] == 3 and (raw == 3).sum() == 101
    expected = raw.copy()
    expected[13, 13, 8] = 0
    np.testing.assert_array_equal(
        predict_case(Predictor(fn=bright_is_et), case, window=8, largest_component=["WT"]).labels, expected
    )
