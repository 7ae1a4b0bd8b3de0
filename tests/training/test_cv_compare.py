"""Judging a candidate recipe's out-of-fold measure against a baseline's (``compare_records``,
``brainseg cv-compare``) on constructed fold records: the gains against hand-computed means, the
verdicts at their margins, the refusals of measures that are not comparable, and the volume
agreement (false-positive and missed millilitres) read off the records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainseg_tf.cli import main
from brainseg_tf.evaluation import bootstrap_ci
from brainseg_tf.training.crossval import compare_records, format_comparison, volume_errors

REGIONS = ("WT", "TC", "ET")
#: Two folds of three held-out cases each (not in case order: the interval is over the cases sorted, as the measure's).
FOLD_CASES = {0: ["b", "d", "f"], 1: ["a", "c", "e"]}
BASE = {"a": 0.80, "b": 0.70, "c": 0.90, "d": 0.60, "e": 0.85, "f": 0.50}


def _write(
    folder: Path, dice: dict[str, dict[str, float]], folds=(0, 1), *, recipe="r", n_folds=2, fold_cases=None
) -> Path:
    fold_cases = fold_cases or FOLD_CASES
    folder.mkdir(parents=True, exist_ok=True)
    for k in folds:
        rec = {
            "format": 1,
            "recipe": recipe,
            "recipe_digest": f"digest-{recipe}",
            "folds": n_folds,
            "fold": k,
            "checkpoint": "final",
            "regions": list(REGIONS),
            "dice_rule": "legacy",
            "optimizer_steps": 10,
            "cases": {cid: {"dice": dice[cid]} for cid in fold_cases[k]},
        }
        (folder / f"fold_{k}.json").write_text(json.dumps(rec))
    return folder


def _same(values: dict[str, float], shift: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    shift = shift or {}
    return {cid: {r: v + shift.get(r, 0.0) for r in REGIONS} for cid, v in values.items()}


def _half_width(values: dict[str, float]) -> float:
    low, high = bootstrap_ci([values[c] for c in sorted(values)], resamples=2000, seed=0)
    return (high - low) / 2


def test_gains_and_margins_against_hand_computed_means(tmp_path: Path) -> None:
    base = _write(tmp_path / "base", _same(BASE))
    hw = _half_width(BASE)
    assert hw > 0.05  # six spread cases: a wide interval
    # WT clears the half-width, TC gains a little, ET is unchanged: replaces
    cand = _write(tmp_path / "cand", _same(BASE, {"WT": hw + 0.01, "TC": 0.004}), recipe="c")
    out = compare_records(cand, base)
    assert out["complete"] and out["n_cases"] == 6 and out["folds_compared"] == [0, 1]
    wt = out["per_region"]["WT"]
    assert wt["baseline"] == pytest.approx(0.725) and wt["candidate"] == pytest.approx(0.725 + hw + 0.01)
    assert wt["gain"] == pytest.approx(hw + 0.01) and wt["half_width"] == pytest.approx(hw)
    assert wt["gain_ci95"] == pytest.approx([hw + 0.01, hw + 0.01])  # the same gain on every case
    assert out["per_region"]["ET"]["gain"] == 0.0
    assert out["verdict"] == "replaces" and "above the baseline's half-width in WT" in out["why"]
    # the same WT gain, but ET lower by 0.004 on one case: lower in one region, does not replace
    worse = _same(BASE, {"WT": hw + 0.01})
    worse["d"]["ET"] -= 0.004
    out = compare_records(_write(tmp_path / "worse", worse, recipe="w"), base)
    assert out["per_region"]["ET"]["gain"] == pytest.approx(-0.004 / 6)
    assert out["verdict"] == "does not replace" and out["why"].endswith("lower in ET")
    # a gain just under the half-width everywhere does not replace either
    under = _same(BASE, dict.fromkeys(REGIONS, hw - 0.005))
    assert compare_records(_write(tmp_path / "under", under, recipe="u"), base)["verdict"] == "does not replace"


def test_a_measure_under_way_continues_or_stops_as_futile(tmp_path: Path) -> None:
    base = _write(tmp_path / "base", _same(BASE))
    hw = _half_width(BASE)
    # only fold 0 measured: compared on its three cases
    half = _write(tmp_path / "half", _same(BASE, {"ET": hw / 2 + 0.001}), folds=(0,), recipe="h")
    out = compare_records(half, base, futile_after=1)
    assert not out["complete"] and out["n_cases"] == 3 and out["folds_compared"] == [0]
    assert out["per_region"]["ET"]["baseline"] == pytest.approx(0.60)  # b, d and f
    assert out["verdict"] == "continue" and out["why"].endswith("below half the half-width in WT, TC")
    flat = _write(tmp_path / "flat", _same(BASE, dict.fromkeys(REGIONS, hw / 2 - 0.001)), folds=(1,), recipe="f")
    # one fold is below the rule everywhere, but the rule judges from two folds on by default
    out = compare_records(flat, base)
    assert out["verdict"] == "continue" and out["why"].endswith("(the futility rule judges from 2 folds on)")
    out = compare_records(flat, base, futile_after=1)
    assert out["folds_compared"] == [1] and out["per_region"]["WT"]["baseline"] == pytest.approx(0.85)  # a, c and e
    assert out["verdict"] == "stop: futile"
    text = format_comparison(out)
    assert "| WT | " in text and "verdict: **stop: futile**" in text
    with pytest.raises(ValueError, match="futile_after"):
        compare_records(flat, base, futile_after=0)


def test_measures_that_are_not_comparable_are_refused(tmp_path: Path) -> None:
    base = _write(tmp_path / "base", _same(BASE))
    partial = _write(tmp_path / "partial", _same(BASE), folds=(0,), recipe="p")
    with pytest.raises(ValueError, match=r"partial: the baseline's measure must be complete; fold\(s\) \[1\]"):
        compare_records(base, partial)
    other = _write(tmp_path / "other", _same(BASE), folds=(0,), recipe="o")
    rec = json.loads((other / "fold_0.json").read_text())
    rec["cases"] = {"b": rec["cases"]["b"], "a": {"dice": dict.fromkeys(REGIONS, 0.5)}}
    (other / "fold_0.json").write_text(json.dumps(rec))
    with pytest.raises(ValueError, match=r"other: fold 0 holds out other cases than .*base's fold 0"):
        compare_records(other, base)
    three = _write(tmp_path / "three", _same(BASE), folds=(0,), recipe="t", n_folds=3)
    with pytest.raises(ValueError, match=r"not comparable measures: folds 3 against 2"):
        compare_records(three, base)
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder of fold records"):
        compare_records(tmp_path / "nowhere", base)
    with pytest.raises(ValueError, match="base: a measure compared with itself"):
        compare_records(base, base)


def test_damaged_records_are_refused_naming_the_file(tmp_path: Path) -> None:
    base = _write(tmp_path / "base", _same(BASE))
    twice = _write(tmp_path / "twice", _same(BASE), recipe="t")
    (twice / "fold_0 copy.json").write_text((twice / "fold_0.json").read_text())
    with pytest.raises(
        ValueError, match=r"twice/fold_0 copy\.json: holds fold 0 of 2; a record is fold_<its fold>\.json"
    ):
        compare_records(twice, base)
    misnamed = _write(tmp_path / "misnamed", _same(BASE), recipe="m")
    (misnamed / "fold_1.json").write_text((misnamed / "fold_0.json").read_text())
    with pytest.raises(
        ValueError, match=r"misnamed/fold_1\.json: holds fold 0 of 2; a record is fold_<its fold>\.json"
    ):
        compare_records(misnamed, base)
    nan = _same(BASE)
    nan["c"]["TC"] = float("nan")
    with pytest.raises(ValueError, match=r"nan/fold_1\.json: case c has no finite TC Dice"):
        compare_records(_write(tmp_path / "nan", nan, recipe="n"), base)


def test_cli_prints_the_verdict_and_writes_the_comparison(tmp_path: Path, capsys) -> None:
    base = _write(tmp_path / "base", _same(BASE))
    cand = _write(tmp_path / "cand", _same(BASE, {"TC": -0.01}), recipe="c")
    out = tmp_path / "cmp.json"
    assert main(["cv-compare", "--records", str(cand), "--against", str(base), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verdict: **does not replace**" in printed and "| TC | 0.715 | 0.725 | -0.010 |" in printed
    saved = json.loads(out.read_text())
    assert saved["verdict"] == "does not replace"
    assert np.isclose(saved["per_region"]["TC"]["gain"], -0.01)
    assert main(["cv-compare", "--records", str(base), "--against", str(tmp_path / "missing")]) == 2
    assert "missing: no such folder of fold records" in capsys.readouterr().err


def test_volume_errors_against_hand_computed_overlaps(tmp_path: Path) -> None:
    # p: 10 ml predicted inside 30 ml of tumour (overlap 10, Dice 0.5); q: 25 ml predicted, 15 ml of
    # tumour, 12 ml overlap (Dice 24 / 40 = 0.6); ET: an empty reference predicted empty (Dice 1)
    cases = {
        "p": {"dice": {"WT": 0.5, "ET": 1.0}, "pred_ml": {"WT": 10.0, "ET": 0.0}, "ref_ml": {"WT": 30.0, "ET": 0.0}},
        "q": {"dice": {"WT": 0.6, "ET": 0.0}, "pred_ml": {"WT": 25.0, "ET": 2.0}, "ref_ml": {"WT": 15.0, "ET": 0.0}},
    }
    out = volume_errors(cases, ["WT", "ET"])
    assert out["WT"] == pytest.approx(
        {"pred_ml": 35.0, "ref_ml": 45.0, "false_positive_ml": 13.0, "missed_ml": 23.0, "over_segmented": 1, "n": 2}
    )
    assert out["ET"] == pytest.approx(
        {"pred_ml": 2.0, "ref_ml": 0.0, "false_positive_ml": 2.0, "missed_ml": 0.0, "over_segmented": 1, "n": 2}
    )
    assert volume_errors({"p": {"dice": {"WT": 0.5}}}, ["WT"]) is None  # a record without volumes
    assert volume_errors({"q": {**cases["q"], "dice": {"WT": float("nan")}}}, ["WT"]) is None
    assert volume_errors(cases, ["WT", "TC"]) is None  # no TC volume
    # both empty: no overlap whatever the empty-mask rule says (NaN under the 2024 rule)
    empty = {"e": {"dice": {"ET": float("nan")}, "pred_ml": {"ET": 0.0}, "ref_ml": {"ET": 0.0}}}
    assert volume_errors(empty, ["ET"])["ET"]["false_positive_ml"] == 0.0
    # through the summary and the comparison: each measure's errors on the compared cases
    dice = _same(BASE)
    base = _write(tmp_path / "base", dice)
    cand = _write(tmp_path / "cand", _same(BASE, {"WT": 0.01}), folds=(0,), recipe="c")
    for folder, shift in ((base, 0.0), (cand, -5.0)):
        for path in folder.glob("fold_*.json"):
            rec = json.loads(path.read_text())
            for c in rec["cases"].values():
                c["pred_ml"] = dict.fromkeys(REGIONS, 20.0 + shift)
                c["ref_ml"] = dict.fromkeys(REGIONS, 20.0)
            path.write_text(json.dumps(rec))
    out = compare_records(cand, base)
    wt_b, wt_c = out["volumes"]["baseline"]["WT"], out["volumes"]["candidate"]["WT"]
    assert wt_b["n"] == wt_c["n"] == 3 and wt_b["pred_ml"] == 60.0 and wt_c["pred_ml"] == 45.0
    overlap = sum(dice[c]["WT"] for c in FOLD_CASES[0]) * 40 / 2  # b, d, f: Dice x (20 + 20) / 2
    assert wt_b["false_positive_ml"] == pytest.approx(60.0 - overlap) == wt_b["missed_ml"]
    assert wt_c["over_segmented"] == 0 and wt_b["over_segmented"] == 0
    assert "| baseline | WT | 60.0 | 60.0 |" in format_comparison(out)


def test_the_futility_rule_judges_from_futile_after_folds_on(tmp_path: Path, capsys) -> None:
    three = {0: ["b", "d"], 1: ["a", "c"], 2: ["e", "f"]}
    base = _write(tmp_path / "base", _same(BASE), folds=(0, 1, 2), n_folds=3, fold_cases=three)
    hw = _half_width(BASE)
    flat = _same(BASE, dict.fromkeys(REGIONS, hw / 2 - 0.001))  # below half the half-width everywhere
    one = _write(tmp_path / "one", flat, folds=(2,), recipe="f", n_folds=3, fold_cases=three)
    two = _write(tmp_path / "two", flat, folds=(2, 0), recipe="f", n_folds=3, fold_cases=three)
    assert compare_records(one, base)["verdict"] == "continue"  # default: from 2 folds on
    assert compare_records(two, base)["verdict"] == "stop: futile"
    assert compare_records(two, base, futile_after=1)["verdict"] == "stop: futile"
    assert compare_records(two, base, futile_after=3)["verdict"] == "continue"  # never judged: 3 folds is complete
    # through the command line: the default, and --futile-after forwarded
    assert main(["cv-compare", "--records", str(one), "--against", str(base)]) == 0
    assert "verdict: **continue**" in capsys.readouterr().out
    assert main(["cv-compare", "--records", str(one), "--against", str(base), "--futile-after", "1"]) == 0
    out = capsys.readouterr().out
    assert "verdict: **stop: futile**" in out and "(no volumes in the candidate and baseline records" in out
    with pytest.raises(SystemExit):
        main(["cv-compare", "--records", str(one), "--against", str(base), "--futile-after", "0"])
    assert "'0': expected a whole number of at least 1" in capsys.readouterr().err
