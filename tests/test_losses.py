"""Losses: hand-computed values (including empty masks), dtype handling, config round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainseg_tf import losses as L  # noqa: E402


def _onehot(labels, c=4):
    return np.eye(c, dtype="float32")[np.asarray(labels)]


def _val(x):
    return keras.ops.convert_to_numpy(x)


# One sample, 5 voxels (shape (1, 5, 1)), 2 classes: hard predictions so values are exact.
LABELS = np.array([[[1], [1], [1], [0], [0]]])  # truth class 1 at voxels 0,1,2
PRED_LABELS = np.array([[[0], [1], [1], [1], [0]]])  # predicted class 1 at voxels 1,2,3


def _pred(labels=PRED_LABELS, c=2):
    return _onehot(labels, c)  # (1, 5, 1, c)


def test_weighted_ce_hand_values():
    y = np.array([[0, 1]])  # (1, 2)
    p = np.array([[[0.8, 0.2], [0.4, 0.6]]], dtype="float32")
    expected = (-math.log(0.8) - math.log(0.6)) / 2
    assert _val(L.WeightedCategoricalCrossentropy()(y, p)) == pytest.approx(expected, rel=1e-5)
    weighted = (0.5 * -math.log(0.8) + 2.0 * -math.log(0.6)) / 2
    loss = L.WeightedCategoricalCrossentropy(class_weights=(0.5, 2.0))
    assert _val(loss(y, p)) == pytest.approx(weighted, rel=1e-5)
    # one-hot targets and logits give the same value
    logits = np.log(p)
    assert _val(
        L.WeightedCategoricalCrossentropy((0.5, 2.0), from_logits=True)(_onehot(y, 2), logits)
    ) == pytest.approx(weighted, rel=1e-5)


def test_dice_loss_hand_values():
    p = _pred()
    # class 1: |T|=3, |P|=3, |T∩P|=2 -> Dice 4/6; class 0: |T|=2, |P|=2, |T∩P|=1 -> Dice 2/4
    fg = 1 - 4 / 6
    both = 1 - (4 / 6 + 2 / 4) / 2
    assert _val(L.DiceLoss()(LABELS, p)) == pytest.approx(fg, abs=1e-5)
    assert _val(L.DiceLoss(include_background=True)(LABELS, p)) == pytest.approx(both, abs=1e-5)
    # squared denominator is the same for hard 0/1 predictions
    assert _val(L.DiceLoss(squared=True)(LABELS, p)) == pytest.approx(fg, abs=1e-5)
    # smoothing 1 on both sides: (4 + 1) / (6 + 1)
    assert _val(L.DiceLoss(smooth_nr=1.0, smooth_dr=1.0)(LABELS, p)) == pytest.approx(1 - 5 / 7, abs=1e-6)


def test_dice_loss_empty_masks():
    empty = np.zeros((1, 5, 1), "int64")
    # both empty: Dice 1, loss 0 (smooth_nr = smooth_dr)
    assert _val(L.DiceLoss()(empty, _pred(empty))) == pytest.approx(0.0, abs=1e-6)
    # empty reference, predicted positives: loss ~ 1
    assert _val(L.DiceLoss()(empty, _pred())) == pytest.approx(1.0, abs=1e-5)
    # empty prediction, positive reference: loss ~ 1
    assert _val(L.DiceLoss()(LABELS, _pred(empty))) == pytest.approx(1.0, abs=1e-5)
    # without numerator smoothing both-empty is Dice 0 (loss 1): the choice is explicit
    assert _val(L.DiceLoss(smooth_nr=0.0)(empty, _pred(empty))) == pytest.approx(1.0, abs=1e-6)


def test_dice_loss_batch_vs_per_sample():
    # sample 0 perfect, sample 1 empty truth with 1 FP voxel
    y = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])[..., None]
    p_labels = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])[..., None]
    p = _onehot(p_labels[..., 0], 2)
    per_sample = _val(L.DiceLoss(reduction=None)(y, p))
    np.testing.assert_allclose(per_sample, [0.0, 1.0], atol=1e-5)
    pooled = _val(L.DiceLoss(batch=True, reduction=None)(y, p))
    np.testing.assert_allclose(pooled, [1 - 4 / 5] * 2, atol=1e-5)  # 2*2 / (2 + 3)


def test_dice_ce_is_sum_of_parts():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, (2, 6, 6, 6))
    p = rng.random((2, 6, 6, 6, 4)).astype("float32")
    p /= p.sum(-1, keepdims=True)
    d = _val(L.DiceLoss()(y, p))
    ce = _val(L.WeightedCategoricalCrossentropy((1, 2, 3, 4))(y, p))
    combined = L.DiceCELoss(lambda_dice=0.5, lambda_ce=2.0, class_weights=(1, 2, 3, 4))
    assert _val(combined(y, p)) == pytest.approx(0.5 * d + 2.0 * ce, rel=1e-5)


def test_focal_hand_values():
    y = np.array([[0, 1]])
    p = np.array([[[0.8, 0.2], [0.4, 0.6]]], dtype="float32")
    expected = (-(0.2**2) * math.log(0.8) - (0.4**2) * math.log(0.6)) / 2
    assert _val(L.FocalLoss()(y, p)) == pytest.approx(expected, rel=1e-5)
    # gamma 0 is cross-entropy
    ce = _val(L.WeightedCategoricalCrossentropy()(y, p))
    assert _val(L.FocalLoss(gamma=0.0)(y, p)) == pytest.approx(ce, rel=1e-6)
    # sigmoid: t=1,p=0.9 and t=0,p=0.3 with alpha 0.25
    t = np.array([[[1.0], [0.0]]])
    ps = np.array([[[0.9], [0.3]]], dtype="float32")
    sig = (0.25 * -(0.1**2) * math.log(0.9) + 0.75 * -(0.3**2) * math.log(0.7)) / 2
    assert _val(L.FocalLoss(alpha=0.25, head="sigmoid")(t, ps)) == pytest.approx(sig, rel=1e-5)


def test_tversky_hand_values_and_dice_equivalence():
    p = _pred()
    # class 1: TP 2, FP 1, FN 1 -> TI = 2 / (2 + 0.3 + 0.7) = 2/3
    assert _val(L.TverskyLoss()(LABELS, p)) == pytest.approx(1 - 2 / 3, abs=1e-5)
    assert _val(L.TverskyLoss(alpha=0.1, beta=0.9)(LABELS, p)) == pytest.approx(1 - 2 / 3, abs=1e-5)
    assert _val(L.TverskyLoss(alpha=1.0, beta=0.0)(LABELS, p)) == pytest.approx(1 - 2 / 3, abs=1e-5)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, (2, 5, 5, 5))
    q = rng.random((2, 5, 5, 5, 4)).astype("float32")
    q /= q.sum(-1, keepdims=True)
    assert _val(L.TverskyLoss(alpha=0.5, beta=0.5)(y, q)) == pytest.approx(_val(L.DiceLoss()(y, q)), rel=1e-5)
    empty = np.zeros((1, 5, 1), "int64")
    assert _val(L.TverskyLoss()(empty, _pred(empty))) == pytest.approx(0.0, abs=1e-6)
    assert _val(L.TverskyLoss()(empty, _pred())) == pytest.approx(1.0, abs=1e-4)  # (0 + 1e-5) / (0.3 * 3 + 1e-5)


def test_region_dice_bce_from_labels_and_masks():
    labels = np.array([[0, 1, 2, 3]])  # (1, 4)
    regions = np.array([[[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]]], dtype="float32")
    np.testing.assert_array_equal(_val(L.labels_to_regions(labels)), regions)
    logits = np.array([[[-2.0, -2.0, -2.0], [2.0, 2.0, -2.0], [2.0, -2.0, -2.0], [2.0, 2.0, 2.0]]], "float32")
    loss = L.RegionDiceBCELoss()
    from_labels = _val(loss(labels, logits))
    from_masks = _val(loss(regions, logits))
    assert from_labels == pytest.approx(from_masks, rel=1e-6)
    s = 1 / (1 + math.exp(-2.0))  # confident and right everywhere
    bce = -math.log(s)
    # Dice per region: sum(t*p) = n*s, sum t = n, sum p = n*s + (4-n)*(1-s)
    dices = [(2 * n * s) / (n + n * s + (4 - n) * (1 - s)) for n in (3, 2, 1)]
    expected = (1 - np.mean(dices)) + bce
    assert from_labels == pytest.approx(expected, rel=1e-4)


def test_half_precision_inputs_sum_in_float32():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, (1, 16, 16, 16))
    p = rng.random((1, 16, 16, 16, 4)).astype("float32")
    p /= p.sum(-1, keepdims=True)
    for loss in (L.DiceLoss(), L.DiceCELoss(), L.TverskyLoss(), L.FocalLoss()):
        ref = _val(loss(y, p))
        half = loss(y, keras.ops.cast(p, "float16"))
        assert keras.backend.standardize_dtype(half.dtype) == "float32"
        assert _val(half) == pytest.approx(ref, rel=2e-3)


@pytest.mark.parametrize(
    "loss",
    [
        L.WeightedCategoricalCrossentropy(class_weights=(0.1, 1, 2, 3), from_logits=True),
        L.DiceLoss(head="sigmoid", batch=True, include_background=True, smooth_nr=0.0, squared=True),
        L.DiceCELoss(lambda_ce=0.3, class_weights=(1, 1, 1, 2)),
        L.RegionDiceBCELoss(lambda_bce=0.5, from_logits=False),
        L.FocalLoss(gamma=1.5, alpha=(0.25, 1, 1, 1)),
        L.TverskyLoss(alpha=0.2, beta=0.8),
    ],
)
def test_config_round_trip(loss):
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == config


def test_bad_arguments():
    with pytest.raises(ValueError, match="head"):
        L.DiceLoss(head="relu")
    with pytest.raises(ValueError, match="smooth_dr"):
        L.DiceLoss(smooth_dr=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        L.FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="alpha"):
        L.TverskyLoss(alpha=-0.1)
    with pytest.raises(ValueError, match="3 region channels"):
        L.DiceLoss(head="sigmoid")(np.zeros((1, 4), "int64"), np.zeros((1, 4, 2), "float32"))


def test_deep_supervision_weights():
    w = L.deep_supervision_weights(4)
    np.testing.assert_allclose(w, [4 / 7, 2 / 7, 1 / 7, 0.0])
    assert L.deep_supervision_weights(1) == [1.0]
    np.testing.assert_allclose(L.deep_supervision_weights(3, decay=1.0, drop_lowest=False), [1 / 3] * 3)
    with pytest.raises(ValueError, match="num_outputs"):
        L.deep_supervision_weights(0)
    with pytest.raises(ValueError, match="decay"):
        L.deep_supervision_weights(3, decay=0.0)
