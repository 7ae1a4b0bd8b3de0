"""Label schemes through the model card (format 4) and prediction in the source's values (issue 21)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import LPS, make_case

from brainseg_tf import io as bio
from brainseg_tf.card import (
    BOUNDS,
    CardError,
    ModelCard,
    Postprocessing,
    Preprocessing,
    find_card,
)
from brainseg_tf.inference import (
    Predictor,
    check_scheme,
    postprocess,
    predict_case,
    predict_folder,
    probabilities_to_labels,
    region_label,
)
from brainseg_tf.io.labels import regions_to_labels
from brainseg_tf.io.nifti import stamped_convention
from brainseg_tf.schemes import get_scheme

PED = get_scheme("ped2024")


def _case(root: Path, case_id: str, file_label: np.ndarray | None = None, *, shape=(12, 10, 8)) -> Path:
    """A case in the 2023+ naming (``<case>-t2f.nii.gz`` ...); ``file_label`` in SOURCE values."""
    images, _ = make_case(0, shape)
    folder = root / case_id
    for modality, token in zip(bio.MODALITIES, ("t2f", "t1n", "t1c", "t2w")):
        bio.save_nifti(images[modality], folder / f"{case_id}-{token}.nii.gz", affine=LPS)
    if file_label is not None:
        bio.save_nifti(file_label.astype(np.uint8), folder / f"{case_id}-seg.nii.gz", affine=LPS)
    return folder


# ----------------------------------------------------------------------------- the card, format 4

#: A card as toolkit version 0.x wrote it (format 3: no scheme), key for key.
V3_CARD = {
    "format_version": 3,
    "modalities": ["flair", "t1", "t1ce", "t2"],
    "head": "sigmoid",
    "spatial_dims": 3,
    "region": None,
    "logits": False,
    "window": [128, 128, 128],
    "model": "unet3d",
    "options": {"depth": 4, "base_filters": 16},
    "preprocessing": {
        "crop": True,
        "margin": 0,
        "normalize": True,
        "reorient": False,
        "spacing": None,
        "resize": None,
        "plane": "axial",
    },
    "postprocessing": {
        "et_min_voxels": 50,
        "min_component_voxels": 0,
        "region_threshold": 0.5,
        "largest_component": ["WT"],
        "min_component_voxels_tc": 0,
        "min_component_voxels_et": 0,
        "evidence": {},
    },
    "inference": {"window": "patch", "overlap": 0.5, "max_window_voxels": 1500000, "min_window": None, "divisor": None},
    "label_convention": "brats",
    "provenance": {"recipe": "unet3d", "epochs": 300, "package_version": "0.3.0"},
    "outputs": ["WT", "TC", "ET"],
}


@pytest.mark.parametrize(
    "convention, scheme",
    [
        ("brats", "brats2021"),
        (None, "brats2021"),
        ("canonical", "brats2021"),
        ("brats2023", "gli2023"),
        ("msd", "msd"),
        ("brats2024_post", "gli2023"),  # the cavity was read as background: the model knows 3 labels
    ],
)
def test_format_3_card_migrates_to_4_with_the_scheme_of_its_convention(tmp_path, convention, scheme):
    (tmp_path / "brainseg_model.json").write_text(json.dumps({**V3_CARD, "label_convention": convention}))
    card = find_card(tmp_path)
    assert card.format_version == 4 and card.scheme == scheme
    assert card.outputs == ["WT", "TC", "ET"] and card.window == [128, 128, 128]
    assert card.postprocessing.et_min_voxels == 50 and card.postprocessing.largest_component == ["WT"]
    again = ModelCard.from_json(card.to_json())  # written as format 4, read back as it is
    assert again == card and json.loads(card.to_json())["scheme"] == scheme


def test_unknown_convention_scheme_and_newer_formats_are_refused():
    with pytest.raises(CardError, match=r"label_convention='brats1999' is unknown"):
        ModelCard.from_dict({**V3_CARD, "label_convention": "brats1999"})
    v4 = ModelCard.from_dict(V3_CARD).to_dict()
    with pytest.raises(CardError, match=r"model card field scheme='ped2099' is unknown; expected one of \[.*'ped2024'"):
        ModelCard.from_dict({**v4, "scheme": "ped2099"})
    with pytest.raises(CardError, match=r"scheme=4 is unknown"):
        ModelCard.from_dict({**v4, "scheme": 4})
    with pytest.raises(CardError) as err:
        ModelCard.from_dict({**v4, "format_version": 7}, source="run/brainseg_model.json")
    message = str(err.value)
    assert message.startswith("run/brainseg_model.json: model card format 7 was written by a newer brainseg_tf")
    assert "reads formats 1, 2, 3, 4" in message
    assert ModelCard.from_dict({**v4, "scheme": "PED2025"}).scheme == "ped2024"  # aliases normalised


def test_the_card_derives_classes_and_regions_from_its_scheme():
    sig = ModelCard(modalities=["flair"], head="sigmoid", scheme="ped2024")
    assert sig.outputs == ["WT", "TC", "ET", "NET", "CC", "ED"] and sig.num_outputs == 6
    soft = sig.replace(head="softmax")
    assert soft.outputs == ["BG", "NET", "ED", "ET", "CC"] and soft.class_names == soft.outputs
    assert ModelCard(modalities=["flair"], head="softmax").outputs == ["BG", "NCR", "ED", "ET"]
    assert ModelCard(modalities=["flair"], head="region", region="cc", scheme="ped2024").outputs == ["CC"]
    with pytest.raises(CardError, match=r"region='CC' must be one of the 'brats2021' scheme's \['WT', 'TC', 'ET'\]"):
        ModelCard(modalities=["flair"], head="region", region="CC")
    # MEN-RT has no WT/TC/ET: a WT/TC/ET postprocessing rule cannot be in its card
    with pytest.raises(CardError, match=r"postprocessing.et_min_voxels=5 is a rule on ET, which the 'men_rt' scheme"):
        ModelCard(modalities=["t1ce"], head="sigmoid", scheme="men_rt", postprocessing=Postprocessing(et_min_voxels=5))


def _damaged(**changes) -> dict:
    card = ModelCard.from_dict(V3_CARD).to_dict()
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            card[section] = {**card[section], field: value}
        else:
            card[section] = value
    return card


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"window": [100000, 128, 128]}, r"window\[0\]=100000 is outside 1\.\.4096"),
        ({"window": [128, -3, 128]}, r"window=\[128, -3, 128\] must be 3 positive integers"),
        ({"window": [4096, 4096, 4096]}, r"window=\[4096, 4096, 4096\] holds 68719476736 voxels, more than"),
        ({"window": "big"}, r"window='big' must be 3 positive integers"),
        ({"window": [128.0, 128, 128]}, r"window=\[128\.0, 128, 128\]"),
        ({"spatial_dims": "3"}, r"spatial_dims='3' must be 2 or 3"),
        ({"spatial_dims": 4}, r"spatial_dims=4 must be 2 or 3"),
        ({"modalities": "flair"}, r"modalities='flair' must list"),
        ({"modalities": ["flair", 7]}, r"modalities=\['flair', 7\] must be distinct names"),
        ({"head": 3}, r"head=3 is unknown"),
        ({"logits": "false"}, r"logits='false' must be true or false"),
        ({"options": {"depth": 10**9}}, r"options\.depth=1000000000 is outside"),
        ({"options": {"filters": [16, 32, 10**7]}}, r"options\.filters=10000000 is outside"),
        ({"options": ["depth", 4]}, r"options=\['depth', 4\] must be a JSON object"),
        ({"preprocessing__spacing": [1.0, float("nan"), 1.0]}, r"preprocessing\.spacing=.* positive numbers"),
        ({"preprocessing__spacing": [1e-6, 1.0, 1.0]}, r"preprocessing\.spacing\[0\]=1e-06 is outside 0\.1\.\.50"),
        ({"preprocessing__spacing": "1mm"}, r"preprocessing\.spacing='1mm'"),
        ({"preprocessing__margin": 10**8}, r"preprocessing\.margin=100000000 is outside 0\.\.1024"),
        ({"preprocessing__margin": -1}, r"preprocessing\.margin=-1 must be a non-negative integer"),
        ({"preprocessing__crop": "yes"}, r"preprocessing\.crop='yes' must be true or false"),
        ({"preprocessing__colour": 1}, r"unknown model card key\(s\) \['preprocessing\.colour'\]"),
        ({"preprocessing": [1, 2]}, r"preprocessing=\[1, 2\] must be a JSON object"),
        ({"inference__max_window_voxels": 10**12}, r"inference\.max_window_voxels=1000000000000 is outside"),
        ({"inference__min_window": [64, 64, 10**5]}, r"inference\.min_window\[2\]=100000 is outside 1\.\.4096"),
        ({"inference__divisor": [0, 8, 8]}, r"inference\.divisor=\[0, 8, 8\] must be 3 positive integers"),
        ({"inference__overlap": float("nan")}, r"inference\.overlap=nan must be in \[0, 1\)"),
        ({"postprocessing__et_min_voxels": 10**12}, r"postprocessing\.et_min_voxels=1000000000000 is outside"),
        ({"postprocessing__min_component_voxels": 2.5}, r"postprocessing\.min_component_voxels=2\.5 must be"),
        ({"postprocessing__region_threshold": float("nan")}, r"postprocessing\.region_threshold=nan"),
        ({"provenance__epochs": -4}, r"provenance\.epochs=-4 is outside 0\.\.10000000"),
        ({"provenance__epochs": "300"}, r"provenance\.epochs='300' must be an integer"),
    ],
)
def test_damaged_cards_are_refused_naming_the_key(changes, message):
    with pytest.raises(CardError, match=message) as err:
        ModelCard.from_dict(_damaged(**changes), source="run/brainseg_model.json")
    assert str(err.value).startswith("run/brainseg_model.json: ")


def test_a_2d_card_bounds_its_resize():
    card = ModelCard(
        modalities=["flair", "t1ce"], head="softmax", spatial_dims=2, preprocessing=Preprocessing(resize=[128, 128])
    )
    bad = {**card.to_dict(), "preprocessing": {**card.to_dict()["preprocessing"], "resize": [128, 50000]}}
    with pytest.raises(CardError, match=r"preprocessing\.resize\[1\]=50000 is outside 1\.\.4096"):
        ModelCard.from_dict(bad)
    assert BOUNDS["window_voxels"][1] == 2**28 and math.prod([512, 512, 512]) <= 2**28


# ----------------------------------------------------------------------------- labels per scheme


def test_default_scheme_decoding_is_regions_to_labels():
    rng = np.random.default_rng(0)
    masks = rng.random((9, 8, 7, 3)) < 0.5
    probs = rng.random((9, 8, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(probabilities_to_labels(masks, "sigmoid"), regions_to_labels(masks))
    for threshold in (0.3, 0.5, 0.8):
        np.testing.assert_array_equal(
            probabilities_to_labels(probs, "sigmoid", threshold), regions_to_labels(probs > threshold)
        )
    # a region head: the label its region adds in the nested rule
    assert [region_label(r) for r in ("WT", "TC", "ET")] == [2, 1, 3]
    one = probs[..., :1]
    for r, label in (("WT", 2), ("TC", 1), ("ET", 3)):
        np.testing.assert_array_equal(
            probabilities_to_labels(one, "region", 0.5, region=r), np.where(one[..., 0] > 0.5, label, 0)
        )


def test_ped_decoding_softmax_and_regions():
    table = PED.region_table()  # (5, 6): row i = the region pattern of internal label i
    labels = np.array([[0, 1, 2], [3, 4, 0]], np.uint8)
    probs = np.where(table[labels] > 0, 0.9, 0.1).astype(np.float32)
    np.testing.assert_array_equal(probabilities_to_labels(probs, "sigmoid", scheme="ped2024"), labels)
    np.testing.assert_array_equal(probabilities_to_labels(np.eye(5)[labels], "softmax", scheme="ped2024"), labels)
    with pytest.raises(ValueError, match=r"4 channels; the 'ped2024' scheme has 5 classes"):
        probabilities_to_labels(np.eye(4)[labels % 4], "softmax", scheme="ped2024")
    assert {r: region_label(r, PED) for r in PED.region_names} == {
        "WT": 2,
        "TC": 1,
        "ET": 3,
        "NET": 1,
        "CC": 4,
        "ED": 2,
    }


def test_postprocessing_rules_in_ped_and_gli2024_internal_labels():
    # PED internal: 1 NET, 2 ED, 3 ET, 4 CC. A big tumour and a small one of CC + ET.
    labels = np.zeros((12, 6, 6), np.uint8)
    labels[0:5, 1:5, 1:5] = 2
    labels[1:4, 2:4, 2:4] = 4
    labels[2, 2, 2] = 3
    labels[9:11, 2:4, 2:4] = 4
    labels[9, 2, 2] = 3
    # largest TC component: the small core is demoted to ED (CC included), the big one keeps CC
    out = postprocess(labels, largest_component=["TC"], scheme="ped2024")
    expected = labels.copy()
    expected[9:11, 2:4, 2:4] = 2
    np.testing.assert_array_equal(out, expected)
    # small WT components removed with their CC; ET under 2 voxels becomes the core label NET, CC stays
    out = postprocess(labels, min_component_voxels=20, et_min_voxels=3, scheme="ped2024")
    expected = labels.copy()
    expected[9:11] = 0
    expected[2, 2, 2] = 1
    np.testing.assert_array_equal(out, expected)
    # GLI 2024: RC (4) is in no tumour region; a cavity between two tumours does not join them
    gli = np.zeros((11, 4, 4), np.uint8)
    gli[0:3, 1:3, 1:3] = 2
    gli[3:8, :, :] = 4
    gli[8:10, 1:3, 1:3] = 1
    out = postprocess(gli, largest_component=["WT"], scheme="gli2024")
    expected = gli.copy()
    expected[8:10] = 0  # the smaller tumour (8 voxels against 12), not joined to the other through RC
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match=r"not a region of the 'men_rt' scheme \['GTV'\]"):
        postprocess(np.zeros((3, 3, 3), np.uint8), et_min_voxels=5, scheme="men_rt")
    np.testing.assert_array_equal(postprocess(np.ones((2, 2), np.uint8), scheme="men_rt"), np.ones((2, 2)))


# ----------------------------------------------------------------------------- prediction per scheme


def _ped_keras_model():
    """A tiny 'PED model': 6 sigmoid region channels from bins of the flair z-score (internal label
    ``k`` for the k-th bin), as probabilities 0.95 / 0.05 of the label's region pattern."""
    import keras

    table = PED.region_table()

    def regions(x):
        flair = x[..., 0]
        k = sum(keras.ops.cast(flair > t, "int32") for t in (-0.8, -0.25, 0.25, 0.8))
        pattern = keras.ops.take(keras.ops.convert_to_tensor(table), k, axis=0)
        return 0.05 + 0.9 * pattern

    inputs = keras.Input((None, None, None, 4))
    return keras.Model(inputs, keras.layers.Lambda(regions, output_shape=(None, None, None, 6))(inputs))


def _expected_ped_internal(case: bio.Case) -> np.ndarray:
    from brainseg_tf.data.preprocess import paste_back, preprocess_case

    pre = preprocess_case(case)  # the card's default preprocessing: brain crop, z-score
    flair = pre.image[..., 0]
    k = sum((flair > t).astype(np.uint8) for t in (-0.8, -0.25, 0.25, 0.8))
    return paste_back(k.astype(np.uint8), pre.geometry, fill=0)


def test_a_ped_model_writes_ped_source_values(tmp_path):
    folder = _case(tmp_path / "data", "BraTS-PED-00001-000", shape=(14, 12, 10))
    card = ModelCard(modalities=list(bio.MODALITIES), head="sigmoid", scheme="ped2024", window=[8, 8, 8])
    pred = Predictor.from_keras(_ped_keras_model(), card)
    case = bio.read_case(folder, load_label=False)
    assert case.scheme == "ped2024"
    expected = _expected_ped_internal(case)
    assert set(np.unique(expected)) == {0, 1, 2, 3, 4}  # every PED label is predicted somewhere
    result = predict_case(pred, case)
    assert result.scheme == "ped2024"
    np.testing.assert_array_equal(result.labels, expected)
    out = result.write(tmp_path / "BraTS-PED-00001-000.nii.gz")
    img = nib.load(out)
    written = np.asarray(img.dataobj)
    assert set(np.unique(written)) == {0, 1, 2, 3, 4} and stamped_convention(img.header) == "ped2024"
    # internal 1 NET, 2 ED, 3 ET, 4 CC are the source values 2, 4, 1, 3
    for internal, source in ((0, 0), (1, 2), (2, 4), (3, 1), (4, 3)):
        assert (written[expected == internal] == source).all()
    # read back as the case's mask: the reader gives the same internal labels
    (folder / "BraTS-PED-00001-000-seg.nii.gz").write_bytes(out.read_bytes())
    np.testing.assert_array_equal(bio.read_case(folder).label, expected)
    # the whole folder, as brainseg predict runs it
    records = predict_folder(pred, tmp_path / "data", tmp_path / "pred", progress=False)
    assert [r["status"] for r in records] == ["written"]
    again = nib.load(tmp_path / "pred" / "BraTS-PED-00001-000.nii.gz")
    np.testing.assert_array_equal(np.asarray(again.dataobj), written)
    assert stamped_convention(again.header) == "ped2024"


def test_the_card_must_fit_the_models_channels(tmp_path):
    import keras

    inputs = keras.Input((None, None, None, 4))
    three = keras.Model(inputs, keras.layers.Conv3D(3, 1, activation="sigmoid")(inputs))
    card = ModelCard(modalities=list(bio.MODALITIES), head="sigmoid", scheme="ped2024")
    with pytest.raises(CardError, match=r"outputs 3 channels; the model card's sigmoid head of the 'ped2024' scheme"):
        Predictor.from_keras(three, card)
    Predictor.from_keras(three, card.replace(scheme="gli2023"))  # 3 regions: fits
    six = keras.Model(inputs, keras.layers.Conv3D(6, 1, activation="sigmoid")(inputs))
    six.save(tmp_path / "model.keras")
    card.save(tmp_path)
    from brainseg_tf.inference import load_predictor

    assert load_predictor(tmp_path).num_outputs == 6
    card.replace(head="softmax").save(tmp_path)  # 5 classes: not this model's 6 channels
    with pytest.raises(CardError, match=r"outputs 6 channels; the model card's softmax head of the 'ped2024' scheme"):
        load_predictor(tmp_path)


def _softmax4(batch: np.ndarray) -> np.ndarray:
    e = np.exp(batch[..., :4] - batch[..., :4].max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_a_model_is_refused_on_data_of_another_scheme(tmp_path):
    data = tmp_path / "data"
    folder = _case(data, "BraTS-PED-00001-000")
    glioma = Predictor(fn=_softmax4, window=(8, 8, 8))  # the default card: brats2021
    with pytest.raises(ValueError) as err:
        predict_case(glioma, folder)
    message = str(err.value)
    assert message.startswith("case 'BraTS-PED-00001-000' is in the 'ped2024' label scheme")
    assert "trained on the 'brats2021' scheme" in message
    assert "scheme='brats2021' (brainseg predict --scheme brats2021)" in message
    assert "--map-scheme" in message and "these differ" in message
    # a folder is refused before any case is read or written
    with pytest.raises(ValueError, match="'ped2024' label scheme"):
        predict_folder(glioma, data, tmp_path / "pred", progress=False)
    assert not (tmp_path / "pred").exists() or not list((tmp_path / "pred").iterdir())
    # stating the data's scheme: the PED 2023 release has the GLI labels, written as brats2023 values
    result = predict_case(glioma, folder, scheme="ped2023")
    assert result.reference.scheme == "ped2023"
    out = result.write(tmp_path / "ped2023.nii.gz")
    assert stamped_convention(nib.load(out).header) == "brats2023"
    records = predict_folder(glioma, data, tmp_path / "pred", progress=False, scheme="ped2023")
    assert [r["status"] for r in records] == ["written"]
    # a PED model on BraTS 2021 data and on a hand-built case without a scheme
    ped = Predictor(fn=lambda b: np.full(b.shape[:-1] + (5,), 0.2, np.float32), head="softmax", scheme="ped2024")
    case = bio.read_case(folder, load_label=False, scheme="brats2021")
    with pytest.raises(ValueError, match=r"'brats2021' label scheme .* trained on the 'ped2024' scheme"):
        predict_case(ped, case)
    bare = dataclasses.replace(case, scheme=None)
    with pytest.raises(ValueError, match=r"canonical labels \(no scheme; read by the convention 'brats'\)"):
        check_scheme("ped2024", bare)
    check_scheme("gli2023", bare)  # canonical to canonical, as always


def test_canonical_schemes_pass_and_map_scheme_maps_onto_gli2024(tmp_path):
    glioma = Predictor(fn=_softmax4, window=(8, 8, 8))  # brats2021
    gli23 = bio.read_case(_case(tmp_path, "BraTS-GLI-00002-000"), load_label=False, scheme="gli2023")
    for name in ("gli2023", "msd", "ssa", "men", "goat", "ped2023"):
        check_scheme("brats2021", bio.read_case(gli23.ref, load_label=False, scheme=name))
        check_scheme(name, gli23)
    post = _case(tmp_path, "BraTS-GLI-00001-100")  # gli2024: labels 1-3 as GLI 2023's, and 4 RC
    with pytest.raises(ValueError, match=r"'gli2024' label scheme .* or pass map_scheme=True \(--map-scheme\)"):
        predict_case(glioma, post)
    result = predict_case(glioma, post, map_scheme=True)
    out = result.write(tmp_path / "post.nii.gz")
    img = nib.load(out)
    assert stamped_convention(img.header) == "gli2024"
    np.testing.assert_array_equal(np.asarray(img.dataobj), result.labels)  # 1 NETC, 2 SNFH, 3 ET as they are
    # the other way round nothing maps: a GLI 2024 model knows RC, BraTS 2021 data has no such label
    with pytest.raises(ValueError, match="maps only onto a scheme whose internal labels and regions include"):
        check_scheme("gli2024", gli23, map_scheme=True)
    with pytest.raises(ValueError, match="these differ"):
        check_scheme(
            "brats2021", bio.read_case(_case(tmp_path, "BraTS-PED-00003-000"), load_label=False), map_scheme=True
        )


def test_brainseg_predict_states_the_scheme(tmp_path, capsys):
    import keras

    from brainseg_tf import cli

    _case(tmp_path / "data", "BraTS-PED-00001-000")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    inputs = keras.Input((None, None, None, 4))
    keras.Model(inputs, keras.layers.Conv3D(6, 1, activation="sigmoid")(inputs)).save(model_dir / "model.keras")
    ModelCard(modalities=list(bio.MODALITIES), head="sigmoid", scheme="ped2024", window=[8, 8, 8]).save(model_dir)
    args = ["predict", "--model", str(model_dir / "model.keras"), "--input", str(tmp_path / "data"), "-q"]
    assert cli.main([*args, "--out", str(tmp_path / "pred")]) == 0
    img = nib.load(tmp_path / "pred" / "BraTS-PED-00001-000.nii.gz")
    assert set(np.unique(np.asarray(img.dataobj))) <= set(PED.values) and stamped_convention(img.header) == "ped2024"
    assert cli.main([*args, "--out", str(tmp_path / "p23"), "--scheme", "ped2023"]) == 2
    err = capsys.readouterr().err
    assert "'ped2023' label scheme" in err and "trained on the 'ped2024' scheme" in err and "--scheme ped2024" in err


def test_an_ensemble_holds_one_scheme():
    from brainseg_tf.inference import Ensemble

    glioma = Predictor(fn=_softmax4)
    gli23 = Predictor(fn=_softmax4, scheme="gli2023")  # canonical internal labels: combinable
    assert Ensemble([glioma, gli23]).num_outputs == 4
    ped = Predictor(fn=_softmax4, head="sigmoid", scheme="ped2024")
    assert Ensemble([ped, ped]).num_outputs == 6 and Ensemble([ped]).scheme == "ped2024"
    with pytest.raises(ValueError, match=r"label schemes 'brats2021' and 'ped2024' cannot be combined"):
        Ensemble([glioma, Predictor(fn=_softmax4, head="softmax", scheme="ped2024")])
    cc = Predictor(fn=_softmax4, head="region", region="CC", scheme="ped2024")
    et = Predictor(fn=_softmax4, head="region", region="ET", scheme="ped2024")
    stacked = Ensemble([et, cc])  # one model per region: stacked in the scheme's channel order
    assert stacked.head == "sigmoid" and stacked.num_outputs == 6
    combined = stacked.combine([np.full((2, 1), 0.25, np.float32), np.full((2, 1), 0.75, np.float32)])
    np.testing.assert_array_equal(combined[0], [0, 0, 0.25, 0, 0.75, 0])


def test_brainseg_predict_ref_reads_the_references_in_the_stated_scheme(tmp_path, capsys):
    import keras

    from brainseg_tf import cli

    label = np.zeros((12, 10, 8), np.uint8)
    label[3:7, 3:7, 2:6] = 2
    label[4:6, 4:6, 3:5] = 3  # the PED 2023 release: GLI labels (1 NETC, 2 SNFH, 3 ET) under PED ids
    _case(tmp_path / "data", "BraTS-PED-00001-000", label)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    inputs = keras.Input((None, None, None, 4))
    keras.Model(inputs, keras.layers.Conv3D(4, 1, activation="softmax")(inputs)).save(model_dir / "model.keras")
    ModelCard(modalities=list(bio.MODALITIES), head="softmax", scheme="gli2023", window=[8, 8, 8]).save(model_dir)
    data = str(tmp_path / "data")
    args = ["predict", "--model", str(model_dir / "model.keras"), "--input", data, "--ref", data, "-q"]
    assert cli.main([*args, "--out", str(tmp_path / "p23"), "--scheme", "ped2023", "--no-viewers"]) == 0
    rows = (tmp_path / "p23" / "metrics.csv").read_text().splitlines()
    regions = {line.split(",")[1] for line in rows[1:]}
    assert regions == {"WT", "TC", "ET"}  # scored in the stated ped2023 scheme, not PED 2024's six regions
