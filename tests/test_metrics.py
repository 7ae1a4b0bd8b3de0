"""Streaming metrics: hand tables, empty masks, epoch accumulation vs per-batch means, .keras round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainseg_tf import losses as L  # noqa: E402
from brainseg_tf import metrics as M  # noqa: E402


def _onehot(labels, c=4):
    return np.eye(c, dtype="float32")[np.asarray(labels)]


def _score(metric, *batches):
    metric.reset_state()
    for y, p in batches:
        metric.update_state(y, p)
    return float(keras.ops.convert_to_numpy(metric.result()))


# 1 sample, 10 voxels (1, 10); canonical labels
TRUE = np.array([[0, 1, 1, 2, 2, 2, 3, 3, 0, 0]])
PRED = np.array([[0, 1, 2, 2, 2, 0, 3, 1, 3, 0]])
# NCR: T{1,2} P{1,7} TP1 FP1 FN1 -> Dice 2/4, IoU 1/3, prec 1/2, sens 1/2
# ED:  T{3,4,5} P{2,3,4} TP2 FP1 FN1 -> Dice 4/6, IoU 2/4, prec 2/3, sens 2/3
# ET:  T{6,7} P{6,8} TP1 FP1 FN1 -> Dice 2/4
# WT:  T{1..7} P{1,2,3,4,6,7,8} TP6 FP1 FN1 -> 12/14;  TC: T{1,2,6,7} P{1,6,7,8} TP3 FP1 FN1 -> 6/8
# specificity NCR: TN = 10 - 2 - 1 - 1 = 6 (T neg 8, FP 1) -> 7/8... see below


@pytest.mark.parametrize(
    "metric, expected",
    [
        (M.Dice(ids=(1,)), 2 / 4),
        (M.Dice(ids=(2,)), 4 / 6),
        (M.Dice(ids=(3,)), 2 / 4),
        (M.Dice(ids=(0,), target="region"), 12 / 14),
        (M.Dice(ids=(1,), target="region"), 6 / 8),
        (M.Dice(ids=(2,), target="region"), 2 / 4),
        (M.Dice(), (2 / 4 + 4 / 6 + 2 / 4) / 3),
        (M.IoU(ids=(1,)), 1 / 3),
        (M.IoU(ids=(2,)), 2 / 4),
        (M.Precision(ids=(2,)), 2 / 3),
        (M.Sensitivity(ids=(1,)), 1 / 2),
        # NCR negatives in truth: 8 voxels, 1 predicted NCR among them -> 7/8
        (M.Specificity(ids=(1,)), 7 / 8),
        # ED negatives: 7, FP 1 -> 6/7
        (M.Specificity(ids=(2,)), 6 / 7),
    ],
)
def test_hand_table_softmax(metric, expected):
    assert _score(metric, (TRUE, _onehot(PRED))) == pytest.approx(expected, abs=1e-6)
    # one-hot truth and (B, X, 1) truth give the same
    assert _score(metric, (_onehot(TRUE), _onehot(PRED))) == pytest.approx(expected, abs=1e-6)
    assert _score(metric, (TRUE[..., None], _onehot(PRED))) == pytest.approx(expected, abs=1e-6)


def test_hand_table_sigmoid_regions():
    regions_true = keras.ops.convert_to_numpy(L.labels_to_regions(TRUE))
    regions_pred = keras.ops.convert_to_numpy(L.labels_to_regions(PRED))
    prob = np.where(regions_pred > 0, 0.9, 0.2).astype("float32")
    logits = np.log(prob / (1 - prob))
    for ids, expected in (((0,), 12 / 14), ((1,), 6 / 8), ((2,), 2 / 4)):
        for y in (TRUE, regions_true):
            assert _score(M.Dice(ids=ids, target="region", head="sigmoid"), (y, prob)) == pytest.approx(expected)
            metric = M.Dice(ids=ids, target="region", head="sigmoid", from_logits=True)
            assert _score(metric, (y, logits)) == pytest.approx(expected, abs=1e-6)
    # a threshold above 0.9 predicts nothing: Dice 0
    assert _score(M.Dice(ids=(0,), target="region", head="sigmoid", threshold=0.95), (TRUE, prob)) == 0.0
    # class metrics decoded from regions (ED where WT, NCR where TC, ET where ET)
    assert _score(M.Dice(ids=(2,), head="sigmoid"), (TRUE, prob)) == pytest.approx(4 / 6)


def test_soft_dice_option():
    y = np.array([[1, 0]])
    p = np.array([[[0.4, 0.6], [0.7, 0.3]]], "float32")  # 2 classes
    # class 1 soft: TP 0.6, FP 0.3, FN 0.4 -> 1.2 / 1.9
    assert _score(M.Dice(ids=(1,), soft=True), (y, p)) == pytest.approx(1.2 / 1.9, rel=1e-6)
    # hard: argmax -> voxel 0 class 1, voxel 1 class 0: perfect
    assert _score(M.Dice(ids=(1,)), (y, p)) == pytest.approx(1.0)


def test_empty_masks():
    empty = np.zeros((1, 10), "int64")
    both_empty = (empty, _onehot(empty))
    assert _score(M.Dice(ids=(3,)), both_empty) == 1.0
    assert math.isnan(_score(M.Dice(ids=(3,), empty_value=float("nan")), both_empty))
    # empty reference, predicted ET -> 0; empty prediction, reference ET -> 0
    assert _score(M.Dice(ids=(3,)), (empty, _onehot(PRED))) == 0.0
    assert _score(M.Dice(ids=(3,)), (TRUE, _onehot(empty))) == 0.0
    assert _score(M.Sensitivity(ids=(3,)), (TRUE, _onehot(empty))) == 0.0
    # nan items are left out of the mean: NCR 2/4 defined, ED/ET absent in both
    only_ncr = np.array([[0, 1, 1, 0]])
    pred = np.array([[0, 1, 0, 1]])
    metric = M.Dice(empty_value=float("nan"))
    assert _score(metric, (only_ncr, _onehot(pred))) == pytest.approx(2 / 4)
    assert _score(M.Dice(), (only_ncr, _onehot(pred))) == pytest.approx((2 / 4 + 1 + 1) / 3)


def test_epoch_accumulation_equals_pooled_numpy_dice_not_batch_mean():
    # batch 1: large ET, perfect. batch 2: tiny ET, missed. Pooled Dice is high, the batch mean is 0.5.
    y1 = np.zeros((2, 8, 8, 8), "int64")
    y1[:, 1:7, 1:7, 1:7] = 3
    y2 = np.zeros((2, 8, 8, 8), "int64")
    y2[0, 0, 0, 0] = 3
    p1, p2 = _onehot(y1), _onehot(np.zeros_like(y2))
    metric = M.Dice(ids=(3,))
    streamed = _score(metric, (y1, p1), (y2, p2))
    t = np.concatenate([y1, y2]) == 3
    p = np.concatenate([y1, np.zeros_like(y2)]) == 3
    pooled = 2 * np.sum(t & p) / (t.sum() + p.sum())
    assert streamed == pytest.approx(pooled, rel=1e-6)
    batch_mean = (_score(M.Dice(ids=(3,)), (y1, p1)) + _score(M.Dice(ids=(3,)), (y2, p2))) / 2
    assert batch_mean == pytest.approx(0.5)
    assert abs(streamed - batch_mean) > 0.4
    # random multi-batch data, several metrics, against NumPy on the concatenation
    rng = np.random.default_rng(0)
    ys = [rng.integers(0, 4, (2, 6, 6, 6)) for _ in range(3)]
    ps = [rng.random((2, 6, 6, 6, 4)).astype("float32") for _ in range(3)]
    yt, yp = np.concatenate(ys), np.concatenate(ps).argmax(-1)
    for c in (1, 2, 3):
        t, p = yt == c, yp == c
        dice = 2 * np.sum(t & p) / (t.sum() + p.sum())
        assert _score(M.Dice(ids=(c,)), *zip(ys, ps)) == pytest.approx(dice, rel=1e-6)
        spec = np.sum(~t & ~p) / np.sum(~t)
        assert _score(M.Specificity(ids=(c,)), *zip(ys, ps)) == pytest.approx(spec, rel=1e-6)


def test_standard_metrics_names_and_aliases():
    names = [m.name for m in M.standard_metrics("softmax")]
    assert names == [
        "dice_ncr",
        "dice_ed",
        "dice_et",
        "dice_wt",
        "dice_tc",
        "mean_dice",
        "mean_region_dice",
        "iou_ncr",
        "iou_ed",
        "iou_et",
        "precision",
        "sensitivity",
        "specificity",
    ]
    sig = [m.name for m in M.standard_metrics("sigmoid")]
    assert sig[:4] == ["dice_wt", "dice_tc", "dice_et", "mean_region_dice"]
    assert [
        M.dice_coef().name,
        M.dice_coef_necrotic().name,
        M.dice_coef_edema().name,
        M.dice_coef_enhancing().name,
    ] == ["dice_coef", "dice_coef_necrotic", "dice_coef_edema", "dice_coef_enhancing"]
    # dice_coef excludes background: a prediction of all background on a small tumour scores 0, not ~0.25+
    y = np.zeros((1, 20), "int64")
    y[0, :3] = [1, 2, 3]
    assert _score(M.dice_coef(), (y, _onehot(np.zeros_like(y)))) == 0.0
    assert _score(M.dice_coef_enhancing(), (TRUE, _onehot(PRED))) == pytest.approx(2 / 4)
    assert _score(M.precision(), (TRUE, _onehot(PRED))) == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert _score(M.sensitivity(), (TRUE, _onehot(PRED))) == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert _score(M.specificity(), (TRUE, _onehot(PRED))) == pytest.approx((7 / 8 + 6 / 7 + 7 / 8) / 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="target"):
        M.Dice(target="lesion")
    with pytest.raises(ValueError, match="ids"):
        M.Dice(ids=(4,))
    with pytest.raises(ValueError, match="ids"):
        M.Dice(ids=(3,), target="region")
    with pytest.raises(ValueError, match="threshold"):
        M.Dice(head="sigmoid", threshold=1.0)
    with pytest.raises(ValueError, match="statistic"):
        M.ConfusionMetric(statistic="f2")
    with pytest.raises(ValueError, match="head"):
        M.standard_metrics("linear")


def test_keras_file_round_trip_with_every_loss_and_metric(tmp_path):
    inputs = keras.Input((4, 4, 4, 2))
    heads = {
        "ce": "softmax",
        "dice": "softmax",
        "dice_ce": "softmax",
        "focal": "softmax",
        "tversky": "softmax",
        "region": None,
    }
    outputs = {}
    for name, act in heads.items():
        channels = 3 if name == "region" else 4
        outputs[name] = keras.layers.Conv3D(channels, 1, activation=act, name=name)(inputs)
    model = keras.Model(inputs, outputs)
    loss = {
        "ce": L.WeightedCategoricalCrossentropy((0.1, 1, 1, 1)),
        "dice": L.DiceLoss(batch=True),
        "dice_ce": L.DiceCELoss(),
        "focal": L.FocalLoss(),
        "tversky": L.TverskyLoss(),
        "region": L.RegionDiceBCELoss(),
    }
    aliases = [
        M.dice_coef(),
        M.dice_coef_necrotic(),
        M.dice_coef_edema(),
        M.dice_coef_enhancing(),
        M.precision(),
        M.sensitivity(),
        M.specificity(),
    ]
    metrics = {
        "ce": M.standard_metrics("softmax") + aliases,
        "region": M.standard_metrics("sigmoid", from_logits=True)
        + [M.Dice(ids=(2,), head="sigmoid", soft=True, from_logits=True)],
    }
    model.compile(optimizer="adam", loss=loss, metrics=metrics, loss_weights=L.deep_supervision_weights(6, decay=1.0))
    rng = np.random.default_rng(0)
    x = rng.random((2, 4, 4, 4, 2)).astype("float32")
    y = rng.integers(0, 4, (2, 4, 4, 4))
    targets = dict.fromkeys(heads, y)
    model.fit(x, targets, epochs=1, verbose=0)
    before = model.evaluate(x, targets, verbose=0, return_dict=True)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    after = restored.evaluate(x, targets, verbose=0, return_dict=True)
    assert set(after) == set(before)
    for key in before:
        assert after[key] == pytest.approx(before[key], rel=1e-5, abs=1e-6), key
    assert "ce_dice_et" in before and "region_dice_wt" in before and "ce_dice_coef" in before
