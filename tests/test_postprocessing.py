"""Postprocessing rules and their selection on validation cases (nnU-Net's greedy rule)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainseg_tf import postprocessing as pp
from brainseg_tf.card import CardError, ModelCard, Postprocessing
from brainseg_tf.inference import Predictor, postprocess
from brainseg_tf.postprocessing import Rule

SHAPE = (24, 24, 16)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Independent reference: Dice of two boolean masks, legacy rule (both empty -> 1)."""
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


def _tumour(with_et: bool = True) -> np.ndarray:
    """One tumour: ED shell, NCR core, optionally a 3x3x3 ET (27 voxels) inside the core."""
    lab = np.zeros(SHAPE, np.uint8)
    lab[4:14, 4:14, 3:11] = 2
    lab[6:12, 6:12, 5:9] = 1
    if with_et:
        lab[7:10, 7:10, 5:8] = 3
    return lab


# ----------------------------------------------------------------------------- label operations


def test_largest_component_demotes_to_the_outer_region():
    lab = _tumour()
    small = (slice(18, 21), slice(18, 21), slice(12, 14))
    lab[small] = 3  # a second, smaller ET (so also TC and WT) component
    for region, demoted in (("WT", 0), ("TC", 2), ("ET", 1)):  # WT -> BG, TC -> ED, ET -> NCR
        expected = lab.copy()
        expected[small] = demoted
        np.testing.assert_array_equal(pp.largest_component(lab, region), expected)
    assert lab[19, 19, 12] == 3  # input untouched
    np.testing.assert_array_equal(pp.largest_component(_tumour(), "WT"), _tumour())  # one component: no-op


def test_remove_small_and_et_to_ncr_against_hand_counts():
    lab = _tumour()
    lab[20, 20, 14] = 2  # 1 voxel
    lab[20, 2, 2:4] = 2  # 2 voxels
    out = pp.remove_small_components(lab, "WT", 2)
    assert out[20, 20, 14] == 0 and (out[20, 2, 2:4] == 2).all()
    out = pp.remove_small_components(lab, "WT", 3)
    np.testing.assert_array_equal(out, _tumour())
    np.testing.assert_array_equal(pp.remove_small_components(lab, "WT", 0), lab)
    assert (pp.et_to_ncr_below(lab, 28) == 3).sum() == 0  # 27 ET voxels < 28
    np.testing.assert_array_equal(pp.et_to_ncr_below(lab, 27), lab)  # not below
    assert (pp.et_to_ncr_below(lab, 28) == 1).sum() == (lab == 1).sum() + 27


def test_inference_postprocess_is_the_card_rule():
    lab = _tumour()
    lab[18:21, 18:21, 12:14] = 3
    lab[1, 20, 1] = 2
    post = Postprocessing(et_min_voxels=30, min_component_voxels=5, largest_component=["ET"])
    expected = pp.et_to_ncr_below(pp.remove_small_components(pp.largest_component(lab, "ET"), "WT", 5), 30)
    np.testing.assert_array_equal(pp.apply(lab, post), expected)
    np.testing.assert_array_equal(
        postprocess(lab, et_min_voxels=30, min_component_voxels=5, largest_component=("et",)), expected
    )
    # the order is fixed whatever order the rules are given in
    rules = [Rule("et_to_ncr", min_voxels=30), Rule("remove_small", min_voxels=5), Rule("largest_component", "ET")]
    np.testing.assert_array_equal(pp.apply(lab, rules), expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "biggest", "region": "WT"}, "kind"),
        ({"kind": "largest_component"}, "region"),
        ({"kind": "largest_component", "region": "XX"}, "region"),
        ({"kind": "largest_component", "region": "WT", "min_voxels": 5}, "min_voxels"),
        ({"kind": "et_to_ncr", "region": "TC", "min_voxels": 5}, "region"),
        ({"kind": "remove_small", "region": "XX", "min_voxels": 5}, "region"),
        ({"kind": "remove_small", "min_voxels": 0}, "min_voxels"),
        ({"kind": "et_to_ncr", "min_voxels": -1}, "min_voxels"),
    ],
)
def test_bad_rules_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Rule(**kwargs)


def test_repeated_rules_and_non_canonical_labels_are_refused():
    with pytest.raises(ValueError, match="at most once"):
        pp.apply(_tumour(), [Rule("remove_small", min_voxels=5), Rule("remove_small", min_voxels=9)])
    with pytest.raises(ValueError, match="canonical"):
        pp.apply(np.full(SHAPE, 4, np.uint8), [])


def test_size_grid_scales_with_voxel_volume():
    assert pp.size_grid() == [10, 50, 100, 250, 500, 1000]
    assert pp.size_grid(2.0) == [5, 25, 50, 125, 250, 500]
    assert pp.size_grid(100.0) == [1, 3, 5, 10]  # 10, 50, 100 mm^3 -> 1 voxel (at least 1, deduplicated); 2.5 -> 3
    with pytest.raises(ValueError, match="voxel_volume"):
        pp.size_grid(0.0)


# ----------------------------------------------------------------------------- selection


def _spurious_specks_cases() -> tuple[dict, dict]:
    """Reference: a tumour and a genuine 5x5x5 second WT component; prediction adds 3-voxel specks."""
    refs, preds = {}, {}
    for i in range(3):
        ref = _tumour()
        ref[17:22, 17:22, 10:15] = 2  # 125 voxels: genuine, so "largest WT component" would hurt
        pred = ref.copy()
        for x in range(0, 20, 6):
            pred[x, 22, 1 + i : 4 + i] = 2  # 3-voxel specks far from the tumour
        refs[f"case{i}"], preds[f"case{i}"] = ref, pred
    return preds, refs


def _et_specks_cases() -> tuple[dict, dict]:
    """Cases without ET whose prediction has a 4-voxel ET speck inside NCR, plus one case with real ET."""
    refs, preds = {}, {}
    for i in range(3):
        ref = _tumour(with_et=False)
        pred = ref.copy()
        pred[8:10, 8:10, 6] = 3  # 4 ET voxels where the reference says NCR
        refs[f"noet{i}"], preds[f"noet{i}"] = ref, pred
    refs["et"] = _tumour()
    pred = _tumour()
    pred[6, 6, 5] = 2  # an error no rule fixes
    preds["et"] = pred
    return preds, refs


def test_selection_picks_drop_small_for_spurious_components():
    preds, refs = _spurious_specks_cases()
    sel = pp.select(preds, refs)
    assert sel.rules == [Rule("remove_small", "WT", 10)]  # smallest size that helps (ties -> smallest)
    expected_wt = np.mean([_dice(refs[c] > 0, preds[c] > 0) for c in refs])
    assert sel.baseline["WT"] == pytest.approx(expected_wt) and sel.baseline["TC"] == 1.0
    assert sel.final == {"WT": 1.0, "TC": 1.0, "ET": 1.0, "mean": 1.0}
    steps = {s["description"]: s for s in sel.steps}
    assert steps["largest WT component only"]["change"] < 0 and not steps["largest WT component only"]["kept"]
    assert [s["kept"] for s in sel.steps] == [False, False, False, True, False, False, False]
    assert steps["drop WT components < 10 voxels"]["cases"] == {"improved": 3, "worsened": 0, "unchanged": 0}
    assert sel.postprocessing() == Postprocessing(min_component_voxels=10)
    text = sel.format()
    assert "chosen: drop WT components < 10 voxels" in text and "WT +" in text


def test_selection_picks_et_to_ncr_for_et_specks():
    preds, refs = _et_specks_cases()
    sel = pp.select(preds, refs)
    assert sel.rules == [Rule("et_to_ncr", "ET", 10)]
    assert sel.baseline["ET"] == pytest.approx(0.25)  # three cases 0 (one empty), one case 1
    assert sel.final["ET"] == 1.0 and sel.final["TC"] == sel.baseline["TC"]
    tried = sel.steps[-1]["tried"]
    assert [t["min_voxels"] for t in tried] == [10, 50, 100, 250, 500, 1000]
    assert tried[0]["mean"] > tried[-1]["mean"]  # 27 real ET voxels are lost from 50 up


def test_selection_keeps_nothing_when_no_rule_helps():
    refs, preds = {}, {}
    for i in range(2):
        ref = _tumour()
        ref[18:20, 18:20, 12:14] = 3  # a genuine second, small (8-voxel) component with ET
        pred = ref.copy()
        pred[4, 4:14, 3:11] = 0  # boundary error: a missing face
        refs[f"c{i}"], preds[f"c{i}"] = ref, pred
    sel = pp.select(preds, refs)
    assert sel.rules == [] and sel.final == sel.baseline
    assert all(s["change"] <= 0 for s in sel.steps)
    assert sel.postprocessing() == Postprocessing()
    assert "chosen: none" in sel.format()


def test_epsilon_deterministic_and_argument_errors():
    preds, refs = _spurious_specks_cases()
    assert pp.select(preds, refs, epsilon=1.0).rules == []  # the gain is real but below epsilon
    assert pp.select(preds, refs).to_dict() == pp.select(preds, refs).to_dict()
    # positional pairing and a custom candidate list
    sel = pp.select(list(preds.values()), list(refs.values()), candidates=[[Rule("largest_component", "WT")]])
    assert sel.rules == [] and len(sel.steps) == 1
    with pytest.raises(ValueError, match="no prediction"):
        pp.select({"a": preds["case0"]}, refs)
    with pytest.raises(ValueError, match="shape"):
        pp.select([preds["case0"][:-1]], [refs["case0"]])
    with pytest.raises(ValueError, match="epsilon"):
        pp.select(preds, refs, epsilon=-1)


def test_single_region_scoring():
    preds, refs = _et_specks_cases()
    sel = pp.select(preds, refs, regions=("WT",))  # the ET specks do not change WT: nothing to gain
    assert sel.rules == [] and set(sel.final) == {"WT", "mean"} and sel.final["mean"] == sel.final["WT"]
    preds, refs = _spurious_specks_cases()
    assert pp.select(preds, refs, regions=("WT",)).rules == [Rule("remove_small", "WT", 10)]


def _multifocal(specks: bool) -> tuple[np.ndarray, np.ndarray]:
    """A tumour with a genuine second lesion (64 ET voxels); with ``specks`` the prediction adds a
    1-voxel TC speck in the edema and a 2-voxel ET speck in the necrosis (reference: the same otherwise)."""
    ref = _tumour()
    ref[17:21, 17:21, 10:14] = 3  # a real second lesion: "largest component" rules would remove it
    pred = ref.copy()
    if specks:
        pred[4, 4, 3] = 1  # TC where the reference says ED: its own TC component
        pred[11, 10:12, 8] = 3  # ET where the reference says NCR: inside the core's TC component
    return pred, ref


def test_chance_gain_on_one_case_is_refused_though_it_raises_the_mean():
    """Dropping small ET components rescues one case (a speck in a case without ET: ET Dice 0 -> 1)
    and costs three cases a genuine small ET lesion: the mean rises, most cases get worse."""
    refs, preds = {}, {}
    ref = _tumour(with_et=False)
    pred = ref.copy()
    pred[8:10, 8:10, 6] = 3  # 4 spurious ET voxels
    refs["lucky"], preds["lucky"] = ref, pred
    for i in range(3):
        ref = _tumour()
        ref[11, 11, 8] = 3  # a genuine 1-voxel ET focus, predicted
        refs[f"c{i}"], preds[f"c{i}"] = ref, ref.copy()
    rule = Rule("remove_small", "ET", 10)
    sel = pp.select(preds, refs, candidates=[[rule]])
    step = sel.steps[0]
    expected_et = np.mean([1.0] + [_dice(refs[c] == 3, rule(preds[c]) == 3) for c in ("c0", "c1", "c2")])
    assert step["after"]["ET"] == pytest.approx(expected_et) and step["change"] > 0.05  # the mean rises...
    assert step["cases"] == {"improved": 1, "worsened": 3, "unchanged": 0}  # ...on one case only
    assert not step["kept"] and sel.rules == [] and sel.final == sel.baseline
    assert sel.evidence()["kept"] == [] and sel.postprocessing().evidence["n_cases"] == 4
    assert "1/3/0" in sel.format()


def test_rules_for_multifocal_tumours_kept_when_they_help_most_cases():
    refs, preds = {}, {}
    for i in range(4):
        preds[f"c{i}"], refs[f"c{i}"] = _multifocal(specks=i < 3)
    sel = pp.select(preds, refs)
    assert sel.rules == [Rule("remove_small", "TC", 10), Rule("remove_small", "ET", 10)]
    assert sel.final == {"WT": 1.0, "TC": 1.0, "ET": 1.0, "mean": 1.0}
    steps = {s["description"]: s for s in sel.steps}
    for lost in ("largest TC component only", "largest ET component only"):  # would drop the real lesion
        assert steps[lost]["change"] < 0 and not steps[lost]["kept"]
    for kept in ("drop TC components < 10 voxels", "drop ET components < 10 voxels"):
        assert steps[kept]["cases"] == {"improved": 3, "worsened": 0, "unchanged": 1} and steps[kept]["kept"]
    post = sel.postprocessing()
    assert post == Postprocessing(min_component_voxels_tc=10, min_component_voxels_et=10)
    assert [k["rule"] for k in post.evidence["kept"]] == [
        "drop TC components < 10 voxels",
        "drop ET components < 10 voxels",
    ]
    assert post.evidence["kept"][0]["improved"] == 3 and post.evidence["kept"][0]["mean_gain"] > 0
    assert pp.rules_from_card(post) == sel.rules
    np.testing.assert_array_equal(pp.apply(preds["c0"], post), refs["c0"])


def test_tc_and_et_rules_recorded_in_the_card_with_evidence(tmp_path: Path):
    refs, preds = {}, {}
    for i in range(4):
        preds[f"c{i}"], refs[f"c{i}"] = _multifocal(specks=i < 3)
    sel = pp.select(preds, refs)
    ModelCard(modalities=["flair", "t1", "t1ce", "t2"], head="sigmoid").save(tmp_path)
    card = pp.record(sel, tmp_path)
    again = ModelCard.load(tmp_path)
    assert again.postprocessing.min_component_voxels_tc == 10 and again.postprocessing.min_component_voxels_et == 10
    assert again.postprocessing.evidence == sel.evidence() and again.postprocessing.evidence["n_cases"] == 4
    p = Predictor.from_card(lambda b: b, card)
    out = postprocess(
        preds["c1"],
        min_component_voxels_tc=p.min_component_voxels_tc,
        min_component_voxels_et=p.min_component_voxels_et,
    )
    np.testing.assert_array_equal(out, refs["c1"])
    old = card.to_dict()
    for key in ("min_component_voxels_tc", "min_component_voxels_et", "evidence"):
        del old["postprocessing"][key]  # a card written before these fields existed
    assert ModelCard.from_dict(old).postprocessing == Postprocessing()
    with pytest.raises(CardError, match="min_component_voxels_tc"):
        ModelCard(modalities=["flair"], head="sigmoid", postprocessing=Postprocessing(min_component_voxels_tc=-1))
    with pytest.raises(CardError, match="evidence"):
        ModelCard(modalities=["flair"], head="sigmoid", postprocessing=Postprocessing(evidence=[1]))


# ----------------------------------------------------------------------------- card and folders


def test_record_in_card_and_predictor_applies_it(tmp_path: Path):
    preds, refs = _spurious_specks_cases()
    sel = pp.select(preds, refs)
    ModelCard(
        modalities=["flair", "t1", "t1ce", "t2"],
        head="softmax",
        postprocessing=Postprocessing(et_min_voxels=77, region_threshold=0.4),
    ).save(tmp_path)
    card = pp.record(sel, tmp_path)
    assert card.postprocessing == Postprocessing(min_component_voxels=10, region_threshold=0.4)
    assert ModelCard.load(tmp_path) == card
    saved = json.loads((tmp_path / "postprocessing.json").read_text())
    assert saved["rules"] == [{"kind": "remove_small", "region": "WT", "min_voxels": 10}]
    assert saved["final"]["mean"] == 1.0 and saved["n_cases"] == 3
    p = Predictor.from_card(lambda b: b, card)
    out = postprocess(
        preds["case0"],
        et_min_voxels=p.et_min_voxels,
        min_component_voxels=p.min_component_voxels,
        largest_component=p.largest_component,
    )
    np.testing.assert_array_equal(out, refs["case0"])


def test_card_largest_component_round_trip_and_old_cards(tmp_path: Path):
    card = ModelCard(
        modalities=["flair"], head="sigmoid", postprocessing=Postprocessing(largest_component=["et", "WT"])
    )
    assert card.postprocessing.largest_component == ["WT", "ET"]  # canonical order, upper case
    card.save(tmp_path)
    again = ModelCard.load(tmp_path)
    assert again == card and Predictor.from_card(lambda b: b, again).largest_component == ("WT", "ET")
    assert Predictor.from_card(lambda b: b, again).card.postprocessing == card.postprocessing
    old = card.to_dict()
    del old["postprocessing"]["largest_component"]  # a card written before the field existed
    assert ModelCard.from_dict(old).postprocessing.largest_component == []
    legacy = {"inference": {"modalities": ["flair"], "head": "softmax", "postprocess": {"et_min_voxels": 3}}}
    assert ModelCard.from_dict(legacy).postprocessing == Postprocessing(et_min_voxels=3)
    for bad in (["XX"], ["WT", "wt"], "WT"):
        with pytest.raises(CardError, match="largest_component"):
            ModelCard(modalities=["flair"], head="sigmoid", postprocessing=Postprocessing(largest_component=bad))


def _write_labels(folder: Path, labels: dict[str, np.ndarray]) -> None:
    from brainseg_tf.io import save_nifti

    for cid, lab in labels.items():
        save_nifti(
            lab,
            folder / f"{cid}.nii.gz",
            affine=np.diag([2.0, 1.0, 1.0, 1.0]),
            dtype=np.uint8,
            label_convention="canonical",
        )


def test_select_for_folders_writes_the_selection(tmp_path: Path):
    preds, refs = _et_specks_cases()
    _write_labels(tmp_path / "pred", preds)
    _write_labels(tmp_path / "ref", refs)
    sel = pp.select_for_folders(tmp_path / "pred", tmp_path / "ref")
    assert sel.voxel_volume == 2.0 and sel.grid_voxels == [5, 25, 50, 125, 250, 500]
    assert sel.rules == [Rule("et_to_ncr", "ET", 5)]
    saved = json.loads((tmp_path / "pred" / "postprocessing.json").read_text())
    assert saved["rules"] == [r.to_dict() for r in sel.rules] and saved["chosen"] == ["ET < 5 voxels -> NCR"]
    (tmp_path / "pred" / "et.nii.gz").unlink()
    with pytest.raises(ValueError, match="no prediction for case"):
        pp.select_for_folders(tmp_path / "pred", tmp_path / "ref")
    with pytest.raises(FileNotFoundError, match="prediction folder"):
        pp.select_for_folders(tmp_path / "nothing", tmp_path / "ref")


def test_cli_select_postprocessing_prints_and_records(tmp_path: Path, capsys):
    from brainseg_tf.cli import main

    preds, refs = _et_specks_cases()
    _write_labels(tmp_path / "pred", preds)
    _write_labels(tmp_path / "ref", refs)
    run = tmp_path / "run"
    run.mkdir()
    ModelCard(modalities=["flair"], head="softmax").save(run)
    assert (
        main(
            [
                "select-postprocessing",
                "--pred",
                str(tmp_path / "pred"),
                "--ref",
                str(tmp_path / "ref"),
                "--model",
                str(run),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "chosen: ET < 5 voxels -> NCR" in out and "ET +0.7500" in out
    assert ModelCard.load(run).postprocessing.et_min_voxels == 5
    assert (run / "postprocessing.json").is_file() and (tmp_path / "pred" / "postprocessing.json").is_file()
    assert (
        main(
            [
                "select-postprocessing",
                "--pred",
                str(tmp_path / "pred"),
                "--ref",
                str(tmp_path / "ref"),
                "--model",
                str(tmp_path),
            ]
        )
        == 2
    )  # no model card there: an error message, no traceback
    assert "no model card" in capsys.readouterr().err
