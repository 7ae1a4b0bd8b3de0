"""Inference: sliding window (identity on odd shapes), TTA, postprocessing, predict_case/folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf import inference
from brainseg_tf import io as bio
from brainseg_tf.inference import (
    Predictor,
    importance_map,
    load_predictor,
    mirror_tta,
    plan_window,
    postprocess,
    predict_case,
    predict_folder,
    probabilities_to_labels,
    sliding_window,
    window_starts,
)


def identity(batch: np.ndarray) -> np.ndarray:
    return batch


# ----------------------------------------------------------------------------- sliding window


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize(
    "shape, window, overlap, batch_size",
    [
        ((16, 15, 7, 2), (8, 8, 4), 0.5, 1),  # MONAI's odd shape, window smaller on every axis
        ((17, 9, 5, 3), (8, 16, 8), 0.25, 3),  # window larger than the image on two axes: pad, crop back
        ((23, 31, 13, 1), (10, 7, 5), 0.7, 4),  # many overlapping windows, partial last batch
        ((11, 13, 4), (5, 6), 0.5, 2),  # 2D (H, W, C) with a 2D window
        ((9, 9, 9, 2), 9, 0.0, 1),  # exactly one window
    ],
)
def test_identity_predictor_returns_input_exactly(shape, window, overlap, batch_size, mode):
    rng = np.random.default_rng(0)
    image = rng.normal(size=shape).astype(np.float32) * 100
    out = sliding_window(identity, image, window=window, overlap=overlap, batch_size=batch_size, mode=mode)
    assert out.dtype == np.float32
    assert out.shape == image.shape
    np.testing.assert_array_equal(out, image)  # bit-exact, not approximately equal


@pytest.mark.parametrize("pad_mode, cval", [("constant", 2.5), ("constant", 0.0), ("reflect", 0.0)])
def test_padding_per_window_equals_padding_the_image(pad_mode, cval):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(11, 20, 7, 2)).astype(np.float32)
    roi = (16, 8, 12)  # larger than the image on axes 0 and 2

    def squash(batch):  # windows see the padding: a non-pointwise predictor would too
        return np.tanh(batch) + batch.mean(axis=(1, 2, 3), keepdims=True)

    out = sliding_window(squash, image, window=roi, overlap=0.5, pad_mode=pad_mode, cval=cval)
    pads = [((r - n) // 2, r - n - (r - n) // 2) if r > n else (0, 0) for n, r in zip(image.shape[:3], roi)]
    kwargs = {"constant_values": cval} if pad_mode == "constant" else {}
    padded = np.pad(image, pads + [(0, 0)], mode=pad_mode, **kwargs)
    ref = sliding_window(squash, padded, window=roi, overlap=0.5)
    crop = tuple(slice(a, a + n) for (a, _), n in zip(pads, image.shape[:3]))
    np.testing.assert_array_equal(out, ref[crop])


def test_shifted_predictor_and_channel_change():
    image = np.arange(15 * 14 * 9, dtype=np.float32).reshape(15, 14, 9, 1)
    out = sliding_window(lambda b: np.concatenate([b + 1, -b], axis=-1), image, window=(8, 8, 8), overlap=0.5)
    assert out.shape == (15, 14, 9, 2)
    np.testing.assert_array_equal(out[..., 0], image[..., 0] + 1)
    np.testing.assert_array_equal(out[..., 1], -image[..., 0])


def test_windows_are_batched_and_cover_everything():
    calls = []

    def spy(batch):
        calls.append(batch.shape)
        return np.ones(batch.shape[:-1] + (1,), np.float32)

    out = sliding_window(spy, np.zeros((20, 12, 7, 4), np.float32), window=(8, 8, 8), overlap=0.5, batch_size=4)
    n_windows = len(window_starts(20, 8, 0.5)) * len(window_starts(12, 8, 0.5)) * 1
    assert [c[0] for c in calls] == [4] * (n_windows // 4) + ([n_windows % 4] if n_windows % 4 else [])
    assert all(c[1:] == (8, 8, 8, 4) for c in calls)
    np.testing.assert_array_equal(out, 1.0)


def test_window_starts_even_and_covering():
    assert window_starts(5, 8, 0.5) == [0]
    assert window_starts(8, 8, 0.5) == [0]
    assert window_starts(16, 8, 0.5) == [0, 4, 8]
    for size, roi, overlap in [(155, 128, 0.5), (240, 128, 0.5), (37, 10, 0.0), (37, 10, 0.9), (7, 1, 0.5)]:
        starts = window_starts(size, roi, overlap)
        assert starts[0] == 0 and starts[-1] == size - roi
        steps = np.diff(starts)
        assert np.all(steps >= 1) and np.all(steps <= max(roi * (1 - overlap), 1))


def _plan_by_brute_force(shape, overlap, divisor, min_size, max_voxels):
    """Every window size (multiples of ``divisor`` from ``min_size`` to the padded extent) tried:
    the fewest forwarded voxels, then the fewest windows."""
    import itertools
    import math

    axes = [range(m, max(m, -(-s // divisor) * divisor) + 1, divisor) for s, m in zip(shape, min_size)]
    best = None
    for window in itertools.product(*axes):
        if math.prod(window) > max_voxels:
            continue
        n = [len(window_starts(s, w, overlap)) for s, w in zip(shape, window)]
        key = (math.prod(n) * math.prod(window), math.prod(n))
        best = key if best is None else min(best, key)
    return best


@pytest.mark.parametrize(
    "shape, overlap, divisor, min_size, max_voxels",
    [
        ((139, 177, 137), 0.25, 8, (96, 96, 96), 1_500_000),  # a real brain box, the recipe's patch
        ((139, 177, 137), 0.25, 16, (80, 80, 80), 1_500_000),  # the recipe's divisor, a smaller minimum
        ((139, 177, 137), 0.5, 8, (96, 96, 96), 1_500_000),
        ((139, 177, 137), 0.25, 8, (96, 96, 96), 3_000_000),  # the whole box in one window fits
        ((160, 120, 60), 0.1, 16, (64, 64, 32), 500_000),
        ((40, 200, 33), 0.5, 8, (32, 32, 32), 200_000),
    ],
)
def test_plan_window_forwards_the_fewest_voxels(shape, overlap, divisor, min_size, max_voxels):
    import math

    window = plan_window(shape, overlap=overlap, divisor=divisor, min_size=min_size, max_voxels=max_voxels)
    assert all(w % divisor == 0 and w >= m for w, m in zip(window, min_size))
    assert math.prod(window) <= max_voxels
    n = [len(window_starts(s, w, overlap)) for s, w in zip(shape, window)]
    for s, w, _k in zip(shape, window, n):  # covering, neighbours overlap by at least `overlap`
        starts = window_starts(s, w, overlap)
        assert starts[0] == 0 and starts[-1] + w >= s
        assert all(b - a <= w * (1 - overlap) for a, b in zip(starts, starts[1:]))
    assert (math.prod(n) * math.prod(window), math.prod(n)) == _plan_by_brute_force(
        shape, overlap, divisor, min_size, max_voxels
    )


def test_plan_window_examples_and_errors():
    # A real brain box: 4 windows of 144x104x96 (5.75 M voxels) instead of 12 of 96^3 (10.6 M); 2 with more memory.
    assert plan_window((139, 177, 137), overlap=0.25, divisor=8, min_size=96, max_voxels=1_500_000) == (144, 104, 96)
    assert plan_window((139, 177, 137), overlap=0.25, divisor=8, min_size=96, max_voxels=3_000_000) == (144, 104, 144)
    assert plan_window((20, 20, 20), overlap=0.5, divisor=16, min_size=32, max_voxels=10**6) == (32, 32, 32)  # padded
    with pytest.raises(ValueError, match="max_voxels=1000 is smaller than the smallest window"):
        plan_window((139, 177, 137), divisor=8, min_size=96, max_voxels=1000)
    with pytest.raises(ValueError, match="overlap"):
        plan_window((139, 177, 137), overlap=1.0)


def test_planned_windows_from_the_card_and_explicit_windows(tmp_path):
    from brainseg_tf.card import Inference, ModelCard

    case = bio.read_case(_synthetic_case(tmp_path / "data", shape=(40, 44, 30)))
    card = ModelCard(
        modalities=list(bio.MODALITIES),
        head="softmax",
        window=[16, 16, 16],
        inference=Inference(window="auto", overlap=0.25, max_window_voxels=24 * 24 * 16, divisor=[8, 8, 8]),
    )
    seen = []

    def pointwise(batch):
        seen.append(batch.shape[1:4])
        return _channel_rule(batch)

    planned = predict_case(Predictor.from_card(pointwise, card), case, return_probabilities=True)
    brain_box = (22, 20, 15)  # _synthetic_case's brain mask
    assert set(seen) == {plan_window(brain_box, overlap=0.25, divisor=8, min_size=16, max_voxels=24 * 24 * 16)}
    seen.clear()
    # A smaller minimum window lets a smaller budget plan windows below the patch.
    smaller = Predictor.from_card(
        pointwise,
        card.replace(inference=dataclasses.replace(card.inference, min_window=[8, 8, 8], max_window_voxels=2048)),
    )
    predict_case(smaller, case)
    assert set(seen) == {plan_window(brain_box, overlap=0.25, divisor=8, min_size=8, max_voxels=2048)}
    assert min(min(s) for s in seen) < 16
    seen.clear()
    patch = predict_case(
        Predictor.from_card(pointwise, card), case, window="patch", overlap=0.5, return_probabilities=True
    )
    assert set(seen) == {(16, 16, 16)}
    # A pointwise model gives the same probabilities whatever the windows (up to float rounding).
    np.testing.assert_allclose(planned.probabilities, patch.probabilities, atol=1e-6)
    np.testing.assert_array_equal(planned.labels, patch.labels)
    with pytest.raises(ValueError, match="window='whole'"):
        predict_case(Predictor.from_card(pointwise, card), case, window="whole")
    bare = Predictor(fn=pointwise)  # no card, no divisor: planning is refused with the reason
    with pytest.raises(ValueError, match="input-size divisor"):
        predict_case(bare, case, window="auto")


def test_importance_map_gaussian_never_zero():
    w = importance_map((32, 32, 32), "gaussian", sigma_scale=0.125)
    assert w.dtype == np.float32 and w.shape == (32, 32, 32)
    assert w.min() > 0 and w.min() == pytest.approx(1e-3)
    assert w.max() == pytest.approx(1.0)
    assert w[16, 16, 16] > w[8, 16, 16] > w[0, 0, 0]
    np.testing.assert_array_equal(importance_map((4, 5), "constant"), np.ones((4, 5), np.float32))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"window": (8, 8, 8), "overlap": 1.0}, "overlap"),
        ({"window": (8, 8, 8), "overlap": -0.1}, "overlap"),
        ({"window": (8, 8), "overlap": 0.5}, "window"),
        ({"window": (8, 0, 8)}, "window"),
        ({"window": 8, "batch_size": 0}, "batch_size"),
        ({"window": 8, "mode": "triangle"}, "mode"),
        ({"window": 8, "min_weight": 0.0}, "min_weight"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sliding_window(identity, np.zeros((9, 9, 9, 1), np.float32), **kwargs)


def test_predictor_with_wrong_output_shape_is_reported():
    with pytest.raises(ValueError, match="predictor returned shape"):
        sliding_window(lambda b: b[:, :4], np.zeros((9, 9, 9, 1), np.float32), window=8)


def test_mirror_tta_averages_flips():
    rng = np.random.default_rng(1)
    batch = rng.normal(size=(2, 6, 5, 4, 3)).astype(np.float32)
    # an equivariant predictor is unchanged by TTA
    np.testing.assert_allclose(mirror_tta(lambda b: 2 * b, (0, 1, 2))(batch), 2 * batch, rtol=1e-6)
    # a position-dependent predictor gets averaged over flips along axis 0 only
    ramp = np.arange(6, dtype=np.float32)[None, :, None, None, None]
    out = mirror_tta(lambda b: np.broadcast_to(ramp, b.shape[:-1] + (1,)).copy(), (0,))(batch)
    np.testing.assert_allclose(out, np.full(out.shape, 2.5), rtol=1e-6)
    calls = []
    mirror_tta(lambda b: calls.append(1) or b, (0, 1, 2))(batch)
    assert len(calls) == 8


# ----------------------------------------------------------------------------- postprocessing


def test_probabilities_to_labels_softmax_and_sigmoid():
    probs = np.zeros((2, 2, 1, 4), np.float32)
    probs[0, 0, 0] = [0.7, 0.1, 0.1, 0.1]
    probs[0, 1, 0] = [0.1, 0.6, 0.2, 0.1]
    probs[1, 0, 0] = [0.1, 0.2, 0.6, 0.1]
    probs[1, 1, 0] = [0.1, 0.1, 0.2, 0.6]
    np.testing.assert_array_equal(probabilities_to_labels(probs, "softmax")[..., 0], [[0, 1], [2, 3]])
    regions = np.zeros((2, 2, 1, 3), np.float32)
    regions[0, 1, 0] = [0.9, 0.8, 0.1]  # TC without ET -> NCR
    regions[1, 0, 0] = [0.9, 0.2, 0.1]  # WT only -> ED
    regions[1, 1, 0] = [0.9, 0.9, 0.9]  # ET
    np.testing.assert_array_equal(probabilities_to_labels(regions, "sigmoid")[..., 0], [[0, 1], [2, 3]])


def test_postprocess_small_et_becomes_ncr():
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[2:6, 2:6, 2:6] = 2
    lab[3:5, 3:5, 3] = 3  # 4 ET voxels
    out = postprocess(lab, et_min_voxels=5)
    assert (out == 3).sum() == 0 and (out == 1).sum() == 4
    np.testing.assert_array_equal(postprocess(lab, et_min_voxels=4), lab)  # not below the threshold
    np.testing.assert_array_equal(postprocess(lab), lab)  # disabled by default
    assert lab[3, 3, 3] == 3  # input untouched


def test_postprocess_removes_small_components_26_connected():
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[1:5, 1:5, 1:5] = 2  # 64 voxels
    lab[8, 8, 8] = 1
    lab[9, 9, 9] = 3  # diagonal neighbour: one 26-connected component of 2 voxels
    lab[8, 1, 10] = 2  # isolated single voxel
    out = postprocess(lab, min_component_voxels=2)
    assert out[8, 1, 10] == 0 and out[8, 8, 8] == 1 and out[9, 9, 9] == 3
    out = postprocess(lab, min_component_voxels=3)
    assert out[8, 8, 8] == 0 and out[9, 9, 9] == 0 and (out == 2).sum() == 64
    with pytest.raises(ValueError, match="min_component_voxels"):
        postprocess(lab, min_component_voxels=-1)


# ----------------------------------------------------------------------------- cases


def _synthetic_case(root: Path, case_id: str = "BraTS2021_00001", shape=(30, 26, 20)) -> Path:
    rng = np.random.default_rng(3)
    brain = np.zeros(shape, bool)
    brain[4:26, 3:23, 2:17] = True
    images = {}
    for i, m in enumerate(bio.MODALITIES):
        vol = (rng.normal(size=shape) * 50 + 300 + 100 * i).astype(np.int16)
        images[m] = np.where(brain, vol, 0).astype(np.int16)
    label = np.zeros(shape, np.uint8)
    label[10:18, 10:16, 6:12] = 2
    label[12:16, 12:15, 8:10] = 3
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = [0, shape[1] - 1, 0]
    ref = bio.write_case(root, "brats2021", case_id, images, label, affine)
    return Path(ref.images["flair"]).parent


def _channel_rule(batch: np.ndarray) -> np.ndarray:
    """A model-free 'segmenter': class = argmax over (0, flair, t1ce, t2) z-scores, as softmax-like scores."""
    scores = np.concatenate([np.zeros_like(batch[..., :1]) + 1.0, batch[..., [0, 2, 3]]], axis=-1)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_predict_case_native_grid_and_geometry(tmp_path):
    case_dir = _synthetic_case(tmp_path / "data")
    case = bio.read_case(case_dir)
    pred = predict_case(Predictor(fn=_channel_rule), case, window=16, return_probabilities=True)
    assert pred.labels.shape == case.shape and pred.labels.dtype == np.uint8
    assert set(np.unique(pred.labels)) <= {0, 1, 2, 3}
    assert pred.probabilities.shape == case.shape + (4,)
    np.testing.assert_allclose(pred.probabilities.sum(-1), 1.0, atol=1e-5)
    outside = ~(case.image != 0).any(-1)
    assert (pred.labels[outside] == 0).all()  # outside the brain box and background inside it
    out = pred.write(tmp_path / "out" / "case.nii.gz")
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, case.affine)
    assert img.shape == case.shape
    written = np.asarray(img.dataobj)
    assert set(np.unique(written)) <= {0, 1, 2, 4}  # the source's BraTS 2021 convention
    np.testing.assert_array_equal(bio.to_canonical(written, "brats"), pred.labels)


def test_predict_case_channel_subset_2d_and_tta(tmp_path):
    case = bio.read_case(_synthetic_case(tmp_path / "data"))
    seen = []

    def two_channel_2d(batch):  # (B, H, W, 2) slices of flair and t1ce
        seen.append(batch.shape)
        return _channel_rule(np.concatenate([batch[..., :1], batch[..., :1], batch[..., 1:], batch[..., 1:]], -1))

    p = Predictor(fn=two_channel_2d, modalities=("flair", "t1ce"), spatial_dims=2, window=(16, 16))
    out = predict_case(p, case, tta=True, batch_size=8)
    assert out.labels.shape == case.shape
    assert all(len(s) == 4 and s[1:] == (16, 16, 2) for s in seen)


def test_predict_folder_writes_each_case_and_skips_existing(tmp_path):
    data = tmp_path / "data"
    _synthetic_case(data, "BraTS2021_00001")
    _synthetic_case(data, "BraTS2021_00002")
    p = Predictor(fn=_channel_rule, window=(16, 16, 16))
    recs = predict_folder(p, data, tmp_path / "pred", save_probabilities=True, progress=False, convention="brats2023")
    assert [r["status"] for r in recs] == ["written", "written"]
    lab = nib.load(tmp_path / "pred" / "BraTS2021_00001.nii.gz")
    assert lab.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(lab.dataobj))) <= {0, 1, 2, 3}
    prob = nib.load(tmp_path / "pred" / "BraTS2021_00002_prob.nii.gz")
    assert prob.shape == (30, 26, 20, 4) and prob.get_data_dtype() == np.float32
    again = predict_folder(p, data, tmp_path / "pred", save_probabilities=True, progress=False)
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    only = predict_folder(p, data, tmp_path / "val", case_ids=["BraTS2021_00002"], progress=False)
    assert [r["case_id"] for r in only] == ["BraTS2021_00002"]
    assert sorted(f.name for f in (tmp_path / "val").iterdir()) == ["BraTS2021_00002.nii.gz"]
    with pytest.raises(ValueError, match="BraTS2021_00009"):  # checked before any case is read
        predict_folder(p, data, tmp_path / "val", case_ids=["BraTS2021_00009"], progress=False)


@pytest.mark.parametrize("axes", [(0, 0), (0, 3), (-1,), (True,)])
def test_bad_mirror_axes_are_refused_before_any_case_is_read(tmp_path, axes):
    data = tmp_path / "data"
    _synthetic_case(data, "BraTS2021_00001")
    p = Predictor(fn=_channel_rule, window=(16, 16, 16))
    with pytest.raises(ValueError, match=r"mirror_axes=.* must be distinct spatial axes among 0, 1, 2"):
        predict_folder(p, data, tmp_path / "pred", tta=True, mirror_axes=axes, progress=False)
    assert not (tmp_path / "pred").exists()


def test_mirror_axes_choose_the_flips(tmp_path):
    case = bio.read_case(_synthetic_case(tmp_path / "data"))
    calls = []
    p = Predictor(fn=lambda b: calls.append(1) or _channel_rule(b), window=(32, 32, 32))  # one window per flip
    plain = predict_case(p, case, tta=False)
    n_plain = len(calls)
    for axes, flips in [(None, 8), ((0, 1), 4), ((2,), 2)]:
        calls.clear()
        out = predict_case(p, case, tta=True, mirror_axes=axes)
        assert len(calls) == flips * n_plain
        np.testing.assert_array_equal(out.labels, plain.labels)  # a voxel-wise rule is flip-equivariant


def test_release_image_frees_the_native_image_and_changes_nothing_else(tmp_path):
    case = bio.read_case(_synthetic_case(tmp_path / "data"))
    p = Predictor(fn=_channel_rule, window=(16, 16, 16))
    kept = predict_case(p, case)
    assert case.image is not None  # a caller's case is left as it was
    released = predict_case(p, case, release_image=True)
    assert case.image is None
    np.testing.assert_array_equal(kept.labels, released.labels)


def test_predict_folder_reads_ahead_and_a_bad_case_fails_alone(tmp_path):
    data = tmp_path / "data"
    ids = [f"BraTS2021_0000{i}" for i in range(1, 5)]
    for cid in ids:
        _synthetic_case(data, cid)
    bad = data / ids[1] / f"{ids[1]}_t1ce.nii.gz"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    p = Predictor(fn=_channel_rule, window=(16, 16, 16))
    out = tmp_path / "pred"
    out.mkdir()
    first = predict_folder(p, data, out, case_ids=[ids[2]], progress=False)  # done before: skipped below
    recs = predict_folder(p, data, out, progress=False)
    assert [r["status"] for r in recs] == ["written", "failed", "skipped", "written"]
    assert str(bad) in recs[1]["error"]
    assert sorted(f.name for f in out.iterdir()) == sorted(f"{c}.nii.gz" for c in (ids[0], ids[2], ids[3]))
    # The cases read ahead are the same cases: labels equal a case-by-case prediction.
    alone = predict_case(p, data / ids[3])
    np.testing.assert_array_equal(
        np.asarray(nib.load(out / f"{ids[3]}.nii.gz").dataobj), bio.from_canonical(alone.labels, "brats")
    )
    assert first[0]["status"] == "written" and recs[0]["seconds"] > 0
    with pytest.raises(bio.DataError, match="t1ce"):
        predict_folder(p, data, tmp_path / "again", progress=False, stop_on_error=True)


# ----------------------------------------------------------------------------- Keras models


def _tiny_keras(channels: int = 4, head: str = "softmax"):
    import keras

    inp = keras.Input((None, None, None, channels))
    out = keras.layers.Conv3D(4 if head == "softmax" else 3, 1, activation=head, name="head")(inp)
    return keras.Model(inp, out)


def test_load_predictor_from_run_dir(tmp_path):
    from brainseg_tf.card import CardError, ModelCard, Postprocessing

    model = _tiny_keras(2, "sigmoid")
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    ModelCard(
        modalities=["flair", "t1ce"],
        head="sigmoid",
        window=[16, 16, 16],
        postprocessing=Postprocessing(et_min_voxels=7),
    ).save(run)
    p = load_predictor(run)
    assert p.modalities == ("flair", "t1ce") and p.head == "sigmoid"
    assert p.window == (16, 16, 16) and p.et_min_voxels == 7
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 16, 2)).astype(np.float32)
    np.testing.assert_allclose(p(x), model.predict(x, verbose=0), atol=1e-6)
    r = load_predictor(run, window=(8, 8, 8), et_min_voxels=0)  # overrides win over the card
    assert r.window == (8, 8, 8) and r.et_min_voxels == 0
    # A .keras file without a card: explicit arguments, never a guess from the shapes.
    bare = tmp_path / "bare"
    bare.mkdir()
    model.save(bare / "m.keras")
    with pytest.raises(CardError, match="modalities"):
        load_predictor(bare / "m.keras")
    q = load_predictor(bare / "m.keras", modalities=["flair", "t1ce"], head="sigmoid")
    assert q.modalities == ("flair", "t1ce") and q.head == "sigmoid" and q.card.logits is False


def test_legacy_run_config_is_migrated(tmp_path):
    """A run directory of version 0.1 (config.json with an "inference" block) reads through migrate()."""
    model = _tiny_keras(2, "softmax")
    run = tmp_path / "old"
    run.mkdir()
    model.save(run / "final.keras")
    legacy = {
        "name": "old",
        "pipeline": {"kind": "slice", "patch_size": [64, 64], "options": {"crop": False}},
        "inference": {
            "modalities": ["flair", "t1ce"],
            "head": "softmax",
            "out_channels": 4,
            "region": None,
            "logits": False,
            "spatial_dims": 2,
            "patch_size": [64, 64],
            "roi": [64, 64],
            "preprocessing": {},
            "postprocess": {"et_min_voxels": 3},
        },
    }
    (run / "config.json").write_text(json.dumps(legacy))
    from brainseg_tf.card import find_card

    card = find_card(run)
    assert card.preprocessing.resize == [64, 64] and card.preprocessing.crop is False
    assert card.postprocessing.et_min_voxels == 3 and card.modalities == ["flair", "t1ce"]


@pytest.mark.real_data
def test_predict_real_case_source_geometry_and_convention(real_brats2018, tmp_path):
    case_dir = real_brats2018 / "Brats18_2013_23_1"
    if not case_dir.is_dir():
        case_dir = sorted(p for p in real_brats2018.iterdir() if p.is_dir())[0]
    model = _tiny_keras(4, "softmax")
    recs = predict_folder(
        Predictor.from_keras(model, modalities=["flair", "t1", "t1ce", "t2"], head="softmax"),
        case_dir,
        tmp_path,
        window=(64, 64, 64),
        overlap=0.25,
        batch_size=2,
        progress=False,
    )
    assert recs[0]["status"] == "written", recs
    src = nib.load(sorted(case_dir.glob("*_seg.nii.gz"))[0])
    out = nib.load(recs[0]["path"])
    assert out.shape == src.shape == (240, 240, 155)
    np.testing.assert_allclose(out.affine, src.affine)
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(src.affine)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2, 4}


def test_one_entry_window_applies_to_every_axis():
    image = np.random.default_rng(2).normal(size=(13, 10, 9, 1)).astype(np.float32)
    np.testing.assert_array_equal(sliding_window(identity, image, window=[8]), image)


def test_roi_is_still_accepted_as_the_old_name_of_window(tmp_path):
    from brainseg_tf.card import ModelCard

    image = np.random.default_rng(2).normal(size=(13, 10, 9, 1)).astype(np.float32)
    np.testing.assert_array_equal(sliding_window(identity, image, roi=8), sliding_window(identity, image, window=8))
    with pytest.raises(ValueError, match="window=8 and roi=8"):
        sliding_window(identity, image, window=8, roi=8)
    p = Predictor(fn=_channel_rule, roi=16)  # one entry: every axis
    assert p.window == p.roi == (16, 16, 16) and p.card.window == [16, 16, 16]
    case = bio.read_case(_synthetic_case(tmp_path / "data"))
    np.testing.assert_array_equal(predict_case(p, case, roi=8).labels, predict_case(p, case, window=8).labels)
    card = ModelCard(modalities=["flair"], head="softmax", roi=[8, 8, 8])
    assert card.window == card.roi == [8, 8, 8]
    old = card.to_dict()
    old["roi"] = old.pop("window")  # a card written before the rename (format 2)
    old["format_version"] = 2
    assert ModelCard.from_dict(old) == card


def test_predictor_settings_replace_the_card_once():
    from brainseg_tf.card import CardError, ModelCard

    card = ModelCard(modalities=["flair", "t1ce"], head="sigmoid", window=[16, 16, 16])
    p = Predictor.from_card(identity, card, et_min_voxels=5, overlap=0.25, window="auto", region_threshold=0.4)
    assert p.card is not card and card.postprocessing.et_min_voxels == 0  # the card itself is unchanged
    assert (p.et_min_voxels, p.inference.overlap, p.inference.window, p.threshold) == (5, 0.25, "auto", 0.4)
    assert p.window == (16, 16, 16)
    with pytest.raises(CardError, match="threshold= is not a model card setting"):
        Predictor.from_card(identity, card, threshold=0.4)
    with pytest.raises(CardError, match="postprocessing.et_min_voxels"):
        Predictor.from_card(identity, card, et_min_voxels=-1)
    bare = Predictor(identity, modalities=["flair"], head="region", region="et", spatial_dims=2, window=(8, 8))
    assert (bare.head, bare.region, bare.spatial_dims, bare.window) == ("region", "ET", 2, (8, 8))


def test_a_truncated_or_foreign_keras_file_is_named_and_explained(tmp_path):
    import zipfile

    from brainseg_tf.inference import load_keras_model

    cut = tmp_path / "best.keras"
    cut.write_bytes(b"PK\x03\x04" + bytes(200))  # the first bytes of an archive, cut short
    with pytest.raises(ValueError, match=r"best\.keras: not a complete \.keras file .*cut short"):
        load_keras_model(cut)
    foreign = tmp_path / "other.keras"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    with pytest.raises(ValueError, match=r"other\.keras: not a \.keras file \(the archive holds no config\.json\)"):
        load_keras_model(foreign)


@pytest.mark.compat
def test_a_model_saved_by_a_newer_keras_loads_despite_initializer_arguments_this_one_lacks(tmp_path):
    """Keras 3.15 writes HeNormal(input_axes=..., output_axes=...), which 3.13 refuses: such
    arguments (here one no Keras has) are dropped on load, and the weights come back unchanged."""
    import zipfile

    import keras

    from brainseg_tf.inference import load_keras_model

    inputs = keras.Input((8, 8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv3D(2, 3, padding="same", kernel_initializer="he_normal")(inputs))
    saved, newer = tmp_path / "m.keras", tmp_path / "newer.keras"
    model.save(saved)
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(newer, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                head = b'"class_name": "HeNormal", "config": {'
                data = data.replace(head, head + b'"axes_of_the_future": null, ', 1)
                assert b"axes_of_the_future" in data
            dst.writestr(item, data)
    with pytest.raises(Exception, match="axes_of_the_future"):
        keras.saving.load_model(str(newer))
    loaded = load_keras_model(newer)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_old_names_still_work():
    """roi= and DEFAULT_ROI (the window's old names), the old positional modalities, to_card/metadata."""
    from brainseg_tf.card import CardError

    assert inference.DEFAULT_ROI == inference.DEFAULT_WINDOW == 128
    assert inference.window_starts(240, roi=128, overlap=0.5) == inference.window_starts(240, 128, 0.5)
    np.testing.assert_array_equal(inference.importance_map(roi=(8, 6)), inference.importance_map((8, 6)))
    with pytest.raises(ValueError, match="window= only"):
        inference.window_starts(240, window=128, roi=96, overlap=0.5)
    pred = inference.Predictor(lambda b: b, ("flair", "t1ce"), head="softmax", roi=(32, 32, 32))
    assert pred.modalities == ("flair", "t1ce") and pred.window == (32, 32, 32) and pred.plane == "axial"
    assert pred.to_card() is pred.card and pred.metadata == pred.card.to_dict() and pred.resize is None
    with pytest.raises(CardError, match="modalities="):
        inference.Predictor(lambda b: b, 3)
