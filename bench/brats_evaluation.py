"""brainseg_tf's 2025 scoring side by side with the official ``brats-evaluation`` 0.0.10 package.

    python -m bench.brats_evaluation [--venv .venv-brats-eval] [--real 4] [--keep DIR] [--cases-only]

The official package (BraTS/BraTS_evaluation, **AGPL-3.0**) runs in its own environment, never in
the project's: on first use this script creates ``--venv`` (default ``.venv-brats-eval``,
git-ignored) with ``pip install brats-evaluation==0.0.10`` (it pulls panoptica 2.1.7) and runs its
half there as a worker process; nothing of it is imported here. ``--cases-only`` writes the cases
and scores our side alone (no peer environment).

Cases (:func:`constructed_cases`, :func:`real_cases`), GLI 2024/2025 labels (1 NETC, 2 SNFH,
3 ET, 4 RC) as NIfTI pairs:

* 24 constructed on a 48 x 56 x 40 grid at 1 mm: perfect, shifted, several lesions, misses,
  false positives, empty masks on either or both sides, touching lesions (one reference lesion
  split in two predictions, two reference lesions bridged by one prediction), small MET-like
  lesions under 20 voxels, every label, random perturbations; plus 2 anisotropic ones
  (spacing 1 x 1 x 2.5 mm, reported apart: see below);
* ``--real`` real-derived: a BraTS 2018 reference from ``../shared/data/brats2018`` (ET 4 -> 3),
  its prediction the reference eroded once, one lesion component removed, blobs added, a strip
  relabelled.

Each pair is scored by the official ``evaluate_single_exam`` with the ``gli`` config (regions wt,
tc, et, netc, snfh, rc: ``sq_dsc``, ``sq_hd95``, ``sq_nsd``, ``tp``, ``fp``, ``fn``, ``rq``,
``global_bin_dsc/hd95/nsd``) and the ``mets`` config read by the official ``parse_mets_results``
(20 mm^3, Dice 0.1: lesion-wise Dice/HD95/NSD of large lesions, small- and large-lesion F1), and
by :func:`brainseg_tf.scoring.scores_2025` / :func:`~brainseg_tf.scoring.mets_summary`. Printed:
per case and region the largest absolute difference over those values (equal infinities and
NaNs agree), and whether the counts agree. Bar: 1e-6.

The official reader is SimpleITK: its array is (z, y, x) while the spacing it pairs with it is
(x, y, z), so on anisotropic grids panoptica measures distances with the spacing reversed. The
two anisotropic cases are therefore compared twice: against ours with the header spacing (they
differ) and with the spacing reversed (they agree), which locates the difference.

The last line: ``cases=<int> comparisons=<int> max_abs_diff=<float> over_1e-6=<int>
counts_mismatch=<int> anisotropic_max_abs_diff=<float> anisotropic_reversed_max_abs_diff=<float>``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, SHARED_BRATS2018, ensure_venv, print_figures, run_worker, summary

PEER_PIN = "brats-evaluation==0.0.10"
GRID = (48, 56, 40)
GLI_REGIONS = {"wt": (1, 2, 3), "tc": (1, 3), "et": (3,), "netc": (1,), "snfh": (2,), "rc": (4,)}
METS_REGIONS = ("et", "rc", "tc", "wt")
RAW_KEYS = ("sq_dsc", "sq_hd95", "sq_nsd", "rq", "global_bin_dsc", "global_bin_hd95", "global_bin_nsd")
COUNT_KEYS = ("tp", "fp", "fn")
METS_KEYS = (
    "lesionwise_dsc_mean",
    "lesionwise_hd95_mean",
    "lesionwise_nsd_mean",
    "small_instance_f1",
    "large_instance_f1",
)
ANISOTROPIC = (1.0, 1.0, 2.5)

# ----------------------------------------------------------------------------- cases (NumPy only)


def ball(shape: Sequence[int], centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoid of ``radii`` (voxels) around ``centre`` in a grid of ``shape``."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def _tumour(shape: Sequence[int], centre: Sequence[float], size: float) -> np.ndarray:
    """A glioma-like label map: SNFH shell, ET rim, NETC core (labels 2, 3, 1)."""
    out = np.zeros(shape, np.uint8)
    out[ball(shape, centre, (size * 1.6,) * 3)] = 2
    out[ball(shape, centre, (size,) * 3)] = 3
    out[ball(shape, centre, (size * 0.55,) * 3)] = 1
    return out


def constructed_cases(seed: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]]:
    """``(name, reference, prediction, spacing)`` of the constructed cases (uint8, labels 0-4)."""
    s = GRID
    one = (1.0, 1.0, 1.0)
    t1 = _tumour(s, (16, 20, 20), 5)
    yield "perfect", t1, t1.copy(), one
    yield "shifted", t1, np.roll(t1, 2, axis=0), one
    two = t1 | _tumour(s, (34, 38, 20), 4)
    yield "two_lesions_one_missed", two, t1.copy(), one
    fp = t1.copy()
    fp[ball(s, (38, 40, 30), (3, 3, 3))] = 3
    yield "false_positive_blob", t1, fp, one
    empty = np.zeros(s, np.uint8)
    yield "empty_reference", empty, t1.copy(), one
    yield "empty_prediction", t1, empty.copy(), one
    yield "both_empty", empty, empty.copy(), one
    split = t1.copy()
    split[15:17] = 0  # one reference lesion, two predicted halves
    yield "prediction_split", t1, split, one
    a = np.zeros(s, np.uint8)
    a[ball(s, (14, 28, 20), (5, 5, 5))] = 3
    a[ball(s, (27, 28, 20), (5, 5, 5))] = 3
    bridged = a.copy()
    bridged[18:24, 26:31, 18:23] = 3  # one prediction touching both reference lesions
    yield "prediction_bridges_two", a, bridged, one
    touching = a.copy()
    touching[ball(s, (20, 28, 20), (3, 3, 3))] = 3  # reference lesions merged into one
    yield "reference_touching", touching, a.copy(), one
    mets = np.zeros(s, np.uint8)
    for k, (x, y, z) in enumerate([(8, 8, 8), (20, 10, 30), (35, 45, 12), (40, 20, 25), (12, 44, 32)]):
        mets[ball(s, (x, y, z), (1.2 + 0.4 * k,) * 3)] = 3
    mets_pred = mets.copy()
    mets_pred[ball(s, (40, 20, 25), (3, 3, 3))] = 0
    mets_pred[ball(s, (25, 30, 5), (1.5, 1.5, 1.5))] = 3
    yield "small_lesions_met", mets, mets_pred, one
    big_and_small = _tumour(s, (18, 22, 20), 6)
    big_and_small[ball(s, (40, 45, 32), (1.5, 1.5, 1.5))] = 3
    yield "large_and_small_met", big_and_small, np.roll(big_and_small, 1, axis=1), one
    rc = t1.copy()
    rc[ball(s, (34, 36, 22), (6, 5, 5))] = 4
    rc_pred = rc.copy()
    rc_pred[rc_pred == 4] = 0
    rc_pred[ball(s, (35, 36, 22), (5, 5, 4))] = 4
    yield "resection_cavity", rc, rc_pred, one
    swapped = t1.copy()
    swapped[t1 == 1] = 3
    yield "core_labelled_et", t1, swapped, one
    edema_only = np.where(t1 == 2, 2, 0).astype(np.uint8)
    yield "edema_only_prediction", t1, edema_only, one
    shrunk = np.where(ball(s, (16, 20, 20), (7, 7, 7)), t1, 0).astype(np.uint8)
    yield "shrunk_prediction", t1, shrunk, one
    rng = np.random.default_rng(seed)
    for k in range(8):
        ref = np.zeros(s, np.uint8)
        pred = np.zeros(s, np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            centre = rng.uniform(8, np.array(s) - 8)
            size = float(rng.uniform(2, 5))
            lesion = _tumour(s, centre, size)
            ref = np.where(lesion > 0, lesion, ref)
            if rng.random() < 0.8:  # found, perturbed
                shifted = np.roll(lesion, tuple(int(v) for v in rng.integers(-2, 3, 3)), axis=(0, 1, 2))
                pred = np.where(shifted > 0, shifted, pred)
        for _ in range(int(rng.integers(0, 3))):  # false positives
            pred[ball(s, rng.uniform(4, np.array(s) - 4), rng.uniform(1, 3, 3))] = int(rng.integers(1, 5))
        noise = rng.random(s) < 0.002
        pred[noise & (ref > 0)] = 0
        yield f"random_{k}", ref, pred.astype(np.uint8), one
    yield "anisotropic_shifted", t1, np.roll(t1, 2, axis=2), ANISOTROPIC
    yield "anisotropic_two_fp", two, fp, ANISOTROPIC


def perturb(reference: np.ndarray, seed: int) -> np.ndarray:
    """A prediction from a reference (labels 0-3): eroded once per label, the smallest ET component
    removed, two blobs added, a strip of NETC relabelled ET."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    pred = np.zeros_like(reference)
    for value in (2, 3, 1):
        pred[
            ndimage.binary_erosion(reference == value) | ((reference == value) & (rng.random(reference.shape) < 0.3))
        ] = value
    et, n = ndimage.label(pred == 3, structure=np.ones((3, 3, 3)))
    if n > 1:
        sizes = np.bincount(et.ravel())[1:]
        pred[et == int(np.argmin(sizes)) + 1] = 0
    box = np.argwhere(reference > 0)
    lo, hi = box.min(axis=0), box.max(axis=0)
    for value in (3, 2):
        centre = [float(rng.uniform(max(a - 20, 5), min(b + 20, n - 5))) for a, b, n in zip(lo, hi, reference.shape)]
        pred[ball(reference.shape, centre, rng.uniform(2, 4, 3))] = value
    x = int((lo[0] + hi[0]) // 2)
    strip = pred[x : x + 2] == 1
    pred[x : x + 2][strip] = 3
    return pred


def real_cases(n: int, root: Path = SHARED_BRATS2018) -> Iterator[tuple[str, np.ndarray, np.ndarray, tuple]]:
    """``n`` real-derived pairs: BraTS 2018 references (ET 4 -> 3) and :func:`perturb` predictions."""
    import nibabel as nib

    for k, case in enumerate(sorted(p for p in root.glob("Brats18_*") if p.is_dir())[:n]):
        img = nib.load(str(case / f"{case.name}_seg.nii.gz"))
        ref = np.asarray(img.dataobj).astype(np.uint8)
        ref[ref == 4] = 3
        yield f"real_{case.name}", ref, perturb(ref, k), tuple(float(z) for z in img.header.get_zooms()[:3])


def write_pair(folder: Path, ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> None:
    """``folder/ref.nii.gz`` and ``folder/pred.nii.gz`` (uint8, diagonal affine of ``spacing``)."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    for name, arr in (("ref", ref), ("pred", pred)):
        nib.save(nib.Nifti1Image(arr.astype(np.uint8), affine), str(folder / f"{name}.nii.gz"))


# ----------------------------------------------------------------------------- official side (peer venv)


def _number(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    return float(value)


def official_worker(root: str) -> dict[str, Any]:
    """Runs in the peer venv: every ``root/<case>/{ref,pred}.nii.gz`` through the official package."""
    import contextlib
    import io

    from brats_evaluation import config_path, evaluate_single_exam, parse_mets_results
    from panoptica import Panoptica_Evaluator

    out: dict[str, Any] = {}
    cases = sorted(p for p in Path(root).iterdir() if p.is_dir())
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        gli = Panoptica_Evaluator.load_from_config(str(config_path("gli")))
        mets = Panoptica_Evaluator.load_from_config(str(config_path("mets")))
        mets_results = []
        for case in cases:
            res = evaluate_single_exam(str(case / "pred.nii.gz"), str(case / "ref.nii.gz"), case.name, gli)
            out[case.name] = {
                "gli": {r: {k: v.get(k) for k in RAW_KEYS + COUNT_KEYS} for r, v in res.items() if isinstance(v, dict)},
                "error": res.get("error"),
            }
            mets_results.append(
                evaluate_single_exam(str(case / "pred.nii.gz"), str(case / "ref.nii.gz"), case.name, mets)
            )
        summary_json = Path(root) / "mets_summary.json"
        summary_json.write_text(json.dumps({"metrics": mets_results, "missings": []}))
        csv_path = Path(root) / "mets.csv"
        parse_mets_results(str(summary_json), 20.0, 0.1, str(csv_path))
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["subject_id"] in out:
                out[row["subject_id"]]["mets"] = {
                    r: {k: _number(row.get(f"{k}_{r}")) for k in METS_KEYS} for r in METS_REGIONS
                }
    return out


def ensure_peer_venv(venv: Path) -> Path:
    """The peer venv's python with :data:`PEER_PIN` (:func:`bench.common.ensure_venv`)."""
    return ensure_venv(venv, (PEER_PIN,), "about 1 GiB")


# ----------------------------------------------------------------------------- our side


def ours(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> dict[str, Any]:
    """Our 2025 scores in the official keys: ``{"gli": {region: {...}}, "mets": {region: {...}}}``."""
    from brainseg_tf.scoring import mets_summary, scores_2025

    gli, mets = {}, {}
    for region, values in GLI_REGIONS.items():
        res = scores_2025(np.isin(ref, values), np.isin(pred, values), spacing)
        gli[region] = {k: res[k.replace("global_bin_", "global_")] for k in RAW_KEYS + COUNT_KEYS}
        if region in METS_REGIONS:
            m = mets_summary(res, small_volume=20.0, min_dice=0.1)
            mets[region] = dict(
                zip(METS_KEYS, (m["lesion_dsc"], m["lesion_hd95"], m["lesion_nsd"], m["small_f1"], m["large_f1"]))
            )
    return {"gli": gli, "mets": mets}


def _diff(a: Any, b: Any) -> float:
    a, b = _number(a), _number(b)
    if (math.isnan(a) and math.isnan(b)) or (math.isinf(a) and math.isinf(b) and a == b):
        return 0.0
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return math.inf
    return abs(a - b)


def compare(official: dict[str, Any], mine: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    """Per region: (largest absolute difference over the compared values, counts agree)."""
    out = {}
    for region in GLI_REGIONS:
        o, m = official["gli"][region], mine["gli"][region]
        worst = max(_diff(o[k], m[k]) for k in RAW_KEYS)
        counts = all(int(o[k]) == int(m[k]) for k in COUNT_KEYS)
        if region in METS_REGIONS and "mets" in official:
            worst = max(worst, *(_diff(official["mets"][region][k], mine["mets"][region][k]) for k in METS_KEYS))
        out[region] = (worst, counts)
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=summary(__doc__))
    p.add_argument("--venv", default=str(REPO_ROOT / ".venv-brats-eval"), help="the peer venv (created when missing)")
    p.add_argument("--real", type=int, default=4, help="real-derived cases from ../shared/data/brats2018")
    p.add_argument("--keep", type=Path, default=None, help="write the cases here and keep them")
    p.add_argument("--cases-only", action="store_true", help="write the cases and score our side only")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.worker is not None:
        print(json.dumps(official_worker(args.worker)))
        return
    cases = list(constructed_cases())
    if args.real and SHARED_BRATS2018.is_dir():
        cases += list(real_cases(args.real))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for name, ref, pred, spacing in cases:
            write_pair(root / name, ref, pred, spacing)
        mine = {name: ours(ref, pred, spacing) for name, ref, pred, spacing in cases}
        if args.cases_only:
            print(f"{len(cases)} cases written to {root}; our side scored")
            print_figures({"cases": len(cases)})
            return
        python = ensure_peer_venv(Path(args.venv))
        official = run_worker(
            "bench.brats_evaluation", ["--worker", str(root)], "the official package", python=str(python)
        )
    print(f"{'case':<34} " + " ".join(f"{r:>9}" for r in GLI_REGIONS) + "  counts")
    worst_all, over, mismatched, compared = 0.0, 0, 0, 0
    aniso = {"header": 0.0, "reversed": 0.0}
    for name, ref, pred, spacing in cases:
        if official[name].get("error"):
            sys.exit(f"{name}: the official package failed: {official[name]['error']}")
        result = compare(official[name], mine[name])
        counts_ok = all(ok for _, ok in result.values())
        line = " ".join(f"{w:9.1e}" for w, _ in result.values())
        print(f"{name:<34} {line}  {'ok' if counts_ok else 'DIFFER'}")
        worst = max(w for w, _ in result.values())
        if spacing != ANISOTROPIC:
            worst_all = max(worst_all, worst)
            over += sum(w > 1e-6 for w, _ in result.values())
            mismatched += sum(not ok for _, ok in result.values())
            compared += len(result)
            continue
        aniso["header"] = max(aniso["header"], worst)
        flipped = compare(official[name], ours(ref, pred, tuple(reversed(spacing))))
        aniso["reversed"] = max(aniso["reversed"], max(w for w, _ in flipped.values()))
        line = " ".join(f"{w:9.1e}" for w, _ in flipped.values())
        print(f"{'  (ours with the spacing reversed)':<34} {line}")
    print_figures(
        {
            "cases": len(cases),
            "comparisons": compared,
            "max_abs_diff": worst_all,
            "over_1e-6": over,
            "counts_mismatch": mismatched,
            "anisotropic_max_abs_diff": aniso["header"],
            "anisotropic_reversed_max_abs_diff": aniso["reversed"],
        },
        fmt=".3g",
    )


if __name__ == "__main__":
    main()
