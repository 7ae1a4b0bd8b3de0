"""brainseg_tf's 2024 scoring side by side with the official BraTS 2024 lesion-wise scripts.

    python -m bench.brats_scoring_2024 --peer-src DIR [--venv .venv-brats-2024] [--real 2]
        [--crop 12] [--tasks GLI,MET,PED,SSA,MEN,MEN-RT] [--jobs 1] [--keep DIR] [--cases-only]

The official 2024 scoring is the repository rachitsaluja/BraTS-2024-Metrics (Apache-2.0), one
script per task (``metrics_GLI.py``, ``metrics_MET.py``, ``metrics_PED.py``, ``metrics_SSA.py``,
``metrics_MEN.py``, ``metrics_MEN_RT.py``, each with ``get_LesionWiseResults(pred, gt,
challenge_name)``) plus a vendored ``surface_distance``. It is not on PyPI and this script downloads
nothing from GitHub: ``--peer-src`` names a local copy of it, either a checkout (a plain folder of
its files) or a bare git directory (then ``HEAD``, or ``--peer-rev``, is extracted with ``git
archive`` into a temporary folder). Its code is never copied into this repository nor imported by
the library or its tests: it runs in its own environment, ``--venv`` (default
``.venv-brats-2024``, git-ignored), which this script creates on first use with the peer's
``requirements.txt`` pins (:data:`PEER_PINS`, from PyPI), as a worker process with the peer folder
on its ``sys.path``; each case runs in a fresh working folder (the scripts write ``./tmp_gt`` and
``./tmp_pred``); ``--jobs`` runs that many workers at once, one task each. The official scripts
dilate and compare whole arrays once per lesion and per pair of touching lesions, so a
240 x 240 x 155 case costs minutes of CPU per task: ``--crop`` (default 12) cuts each real-derived
pair to the bounding box of its foreground widened by that many voxels (0: the whole grid; both
sides score the same cropped files, so only the MET and MEN-RT grid-diagonal penalty depends on
it). The figures were measured at commit f1131e3 (2025-07-15).

Cases: those of ``bench/brats_evaluation.py`` (:func:`~bench.brats_evaluation.constructed_cases`,
26 on a 48 x 56 x 40 grid, 2 of them at 1 x 1 x 2.5 mm; ``--real`` BraTS 2018-derived pairs from
:func:`~bench.brats_evaluation.real_cases`, cropped by ``--crop``) plus :func:`merge_cases`, 4
where single-label lesions touch several lesions of another label (the cross-label merge). Labels are
GLI's (1 NETC, 2 SNFH, 3 ET, 4 RC); for each task the maps are read in that task's source values
(values the task does not have set to 0, so both sides see the same files: PED reads 1 ET, 2 NET,
3 CC, 4 ED; MEN-RT reads 1 as GTV).

Each pair is scored per task by the official script and by
:func:`brainseg_tf.scoring.score_case` with ``get_rules("2024", task)``. Compared per region:
``LesionWise_Score_Dice``, ``_HD95``, ``_NSD @ 0.5``, ``_NSD @ 1.0`` against ``lesion_dice_2024``,
``lesion_hd95_2024``, ``lesion_nsd05_2024``, ``lesion_nsd10_2024``; ``Num_TP/FP/FN`` against
``lesion_tp/fp/fn_2024``. Printed: per task, case and region the largest absolute difference of
those four values, and whether the counts agree. Bar: 1e-6.

The last line: ``cases=<int> tasks=<int> comparisons=<int> max_abs_diff=<float>
max_abs_diff_dice=<float> max_abs_diff_hd95=<float> max_abs_diff_nsd=<float> over_1e-6=<int>
counts_mismatch=<int> peer=<commit>``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.brats_evaluation import _diff, ball, constructed_cases, real_cases, write_pair
from bench.common import REPO_ROOT, SHARED_BRATS2018, ensure_venv, print_figures, run_worker, summary

#: The peer's ``requirements.txt`` (commit f1131e3), installed into its own environment.
PEER_PINS = (
    "connected_components_3d==3.12.1",
    "MedPy==0.5.2",
    "nibabel==5.0.1",
    "numpy==1.26.4",
    "pandas==2.2.3",
    "scipy==1.10.1",
)
#: task -> (official module, its challenge name, our scheme)
TASKS = {
    "GLI": ("metrics_GLI", "BraTS-GLI", "gli2024"),
    "MET": ("metrics_MET", "BraTS-MET", "met2024"),
    "PED": ("metrics_PED", "BraTS-PED", "ped2024"),
    "SSA": ("metrics_SSA", "BraTS-SSA", "ssa"),
    "MEN": ("metrics_MEN", "BraTS-MEN", "men"),
    "MEN-RT": ("metrics_MEN_RT", "BraTS-MEN-RT", "men_rt"),
}
#: official region name -> ours, where they differ (PED's label 2 is "NETC" there, "NET" here)
REGION_NAMES = {"PED": {"NETC": "NET"}}
#: official column -> our column
VALUE_KEYS = {
    "LesionWise_Score_Dice": "lesion_dice_2024",
    "LesionWise_Score_HD95": "lesion_hd95_2024",
    "LesionWise_Score_NSD @ 0.5": "lesion_nsd05_2024",
    "LesionWise_Score_NSD @ 1.0": "lesion_nsd10_2024",
}
COUNT_KEYS = {"Num_TP": "lesion_tp_2024", "Num_FP": "lesion_fp_2024", "Num_FN": "lesion_fn_2024"}

# ----------------------------------------------------------------------------- cases (NumPy only)


def _box(shape, lo, hi) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[tuple(slice(a, b + 1) for a, b in zip(lo, hi))] = True
    return out


def merge_cases() -> Iterator[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]]:
    """Cases of the 2024 cross-label merge, on the grid of the constructed cases.

    An L-shaped ET lesion A touches two NETC lesions, O1 (low x, high y) and O2 (high x, low y,
    starting lower in z); a second ET lesion B touches O2 only. A is grouped with the
    lower-numbered NETC lesion it touches, so the result depends on how lesions are numbered:
    scanning the last axis fastest (C order, the official code's) numbers O1 first and keeps A
    and B apart; the first axis fastest numbers O2 first and merges them. The predictions miss B,
    miss A, stand alone (empty reference) or are the whole structure in edema shifted by a voxel,
    so a different grouping changes the scores.
    """
    from bench.brats_evaluation import GRID

    s, one = GRID, (1.0, 1.0, 1.0)
    ref = np.zeros(s, np.uint8)
    ref[_box(s, (4, 38, 17), (10, 46, 23))] = 1  # O1
    ref[_box(s, (30, 6, 15), (39, 15, 24))] = 1  # O2
    ref[_box(s, (11, 41, 19), (29, 43, 21)) | _box(s, (27, 8, 19), (29, 43, 21))] = 3  # A
    ref[_box(s, (40, 6, 17), (43, 15, 22))] = 3  # B
    missed_b = np.where(_box(s, (40, 6, 17), (43, 15, 22)), 0, ref).astype(np.uint8)
    yield "merge_order_b_missed", ref, missed_b, one
    missed_a = np.where(ref == 3, 0, ref).astype(np.uint8)
    missed_a[_box(s, (40, 6, 17), (43, 15, 22))] = 3
    yield "merge_order_a_missed", ref, missed_a, one
    yield "merge_order_pred_only", np.zeros(s, np.uint8), ref.copy(), one
    edema = ref.copy()
    edema[(ref == 0) & ball(s, (24, 26, 20), (21, 23, 10))] = 2
    shifted = np.roll(edema, 1, axis=1)
    yield "merge_order_with_edema", edema, shifted, one


def crop_pair(ref: np.ndarray, pred: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """``ref`` and ``pred`` cut to the bounding box of their foreground widened by ``margin`` voxels
    (``margin`` 0 or no foreground: unchanged)."""
    from brainseg_tf.arrays import bbox

    box = bbox((ref > 0) | (pred > 0), pad=margin) if margin > 0 else None
    if box is None:
        return ref, pred
    return np.ascontiguousarray(ref[box]), np.ascontiguousarray(pred[box])


def task_labels(label_map: np.ndarray, task: str) -> np.ndarray:
    """``label_map`` read in ``task``'s source values: values the task does not have set to 0."""
    from brainseg_tf.schemes import get_scheme

    values = get_scheme(TASKS[task][2]).values
    return np.where(np.isin(label_map, values), label_map, 0).astype(np.uint8)


# ----------------------------------------------------------------------------- the peer's source


def peer_source(src: Path, rev: str | None, workdir: Path) -> tuple[Path, str]:
    """``(folder holding metrics_GLI.py, commit or content digest)`` of ``--peer-src``."""
    src = src.resolve()
    bare = (src / "HEAD").is_file() and (src / "objects").is_dir()
    if bare:
        commit = subprocess.run(
            ["git", "--git-dir", str(src), "rev-parse", rev or "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        out = workdir / "peer"
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "--git-dir", str(src), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
        src = out
    elif (src / ".git").exists():
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", rev or "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    else:
        commit = ""
    missing = [m for m, _, _ in TASKS.values() if not (src / f"{m}.py").is_file()]
    if missing or not (src / "surface_distance").is_dir():
        sys.exit(f"{src}: not a BraTS-2024-Metrics copy (missing {missing or ['surface_distance/']})")
    if not commit:  # a plain copy: name it by its content
        digest = hashlib.sha256()
        for m, _, _ in TASKS.values():
            digest.update((src / f"{m}.py").read_bytes())
        commit = "sha256:" + digest.hexdigest()[:16]
    return src, commit


def ensure_peer_venv(venv: Path) -> Path:
    """The peer venv's python with :data:`PEER_PINS` (:func:`bench.common.ensure_venv`)."""
    return ensure_venv(venv, PEER_PINS)


# ----------------------------------------------------------------------------- official side (peer venv)


def official_worker(root: str, peer: str, tasks: list[str]) -> dict[str, Any]:
    """Runs in the peer venv: every ``root/<task>/<case>/{ref,pred}.nii.gz`` through the official
    script of its task, each case in a fresh working folder."""
    sys.path.insert(0, peer)
    out: dict[str, Any] = {}
    for task in tasks:
        module_name, challenge, _ = TASKS[task]
        module = importlib.import_module(module_name)
        out[task] = {}
        for case in sorted(p for p in (Path(root) / task).iterdir() if p.is_dir()):
            printed = io.StringIO()
            with tempfile.TemporaryDirectory() as work, contextlib.chdir(work), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                    frame, _ = module.get_LesionWiseResults(
                        str(case / "pred.nii.gz"), str(case / "ref.nii.gz"), challenge
                    )
            rows = {}
            for row in frame.to_dict("records"):
                rows[str(row["Labels"])] = {k: float(row[k]) for k in (*VALUE_KEYS, *COUNT_KEYS)}
            errors = [line for line in printed.getvalue().splitlines() if "Error" in line]
            out[task][case.name] = {"regions": rows, "errors": errors}
    return out


# ----------------------------------------------------------------------------- our side


def ours(ref: np.ndarray, pred: np.ndarray, spacing, task: str) -> dict[str, dict[str, float]]:
    """Our 2024 columns per region (our region names) of a pair in ``task``'s source values."""
    from brainseg_tf.schemes import get_scheme
    from brainseg_tf.scoring import get_rules, score_case

    scheme = get_scheme(TASKS[task][2])
    return score_case(
        scheme.to_internal(ref), scheme.to_internal(pred), spacing, get_rules("2024", task), scheme=scheme
    )


def compare(official: dict[str, dict], mine: dict[str, dict], task: str) -> dict[str, tuple[dict[str, float], bool]]:
    """Per official region: ({value key: absolute difference}, counts agree)."""
    names = REGION_NAMES.get(task, {})
    out = {}
    for region, o in official.items():
        m = mine[names.get(region, region)]
        diffs = {k: _diff(o[k], m[ours_key]) for k, ours_key in VALUE_KEYS.items()}
        counts = all(int(o[k]) == int(m[ours_key]) for k, ours_key in COUNT_KEYS.items())
        out[region] = (diffs, counts)
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=summary(__doc__))
    p.add_argument(
        "--peer-src", type=Path, default=None, help="a local BraTS-2024-Metrics checkout or bare git directory"
    )
    p.add_argument("--peer-rev", default=None, help="the revision to extract from a git --peer-src (default HEAD)")
    p.add_argument("--venv", default=str(REPO_ROOT / ".venv-brats-2024"), help="the peer venv (created when missing)")
    p.add_argument("--real", type=int, default=2, help="real-derived cases from ../shared/data/brats2018")
    p.add_argument("--crop", type=int, default=12, help="real-derived cases: foreground box + this margin (0: all)")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks among " + ", ".join(TASKS))
    p.add_argument("--jobs", type=int, default=1, help="official workers run at once (one task each)")
    p.add_argument("--keep", type=Path, default=None, help="write the cases here and keep them")
    p.add_argument("--cases-only", action="store_true", help="write the cases and score our side only")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    tasks = [t.strip().upper() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        sys.exit(f"--tasks: unknown {unknown}; expected some of {list(TASKS)}")
    if args.worker is not None:
        print(json.dumps(official_worker(args.worker, str(args.peer_src), tasks)))
        return
    if args.peer_src is None and not args.cases_only:
        sys.exit("--peer-src is required (a local copy of rachitsaluja/BraTS-2024-Metrics), or pass --cases-only")
    cases = list(constructed_cases()) + list(merge_cases())
    if args.real and SHARED_BRATS2018.is_dir():
        cases += [(name, *crop_pair(ref, pred, args.crop), sp) for name, ref, pred, sp in real_cases(args.real)]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "cases"
        mine: dict[str, dict[str, Any]] = {task: {} for task in tasks}
        for name, ref, pred, spacing in cases:
            for task in tasks:
                r, p = task_labels(ref, task), task_labels(pred, task)
                write_pair(root / task / name, r, p, spacing)
                mine[task][name] = ours(r, p, spacing, task)
        if args.cases_only:
            print(f"{len(cases)} cases x {len(tasks)} tasks written to {root}; our side scored")
            print_figures({"cases": len(cases), "tasks": len(tasks)})
            return
        peer, commit = peer_source(args.peer_src, args.peer_rev, Path(tmp))
        python = ensure_peer_venv(Path(args.venv))
        print(f"official: BraTS-2024-Metrics {commit} ({peer}), {' '.join(PEER_PINS)}", flush=True)

        def one(task: str) -> dict[str, Any]:
            worker = ["--worker", str(root), "--peer-src", str(peer), "--tasks", task]
            return run_worker("bench.brats_scoring_2024", worker, f"the official {task} script", python=str(python))

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            official = {task: got[task] for task, got in zip(tasks, pool.map(one, tasks))}
    worst = {"dice": 0.0, "hd95": 0.0, "nsd": 0.0}
    over = mismatched = compared = 0
    for task in tasks:
        regions = list(next(iter(official[task].values()))["regions"])
        print(f"\n{task:<34} " + " ".join(f"{r:>9}" for r in regions) + "  counts")
        for name, *_ in cases:
            got = official[task][name]
            if got["errors"]:
                sys.exit(f"{task} {name}: the official script reported: {got['errors'][:3]}")
            result = compare(got["regions"], mine[task][name], task)
            line = " ".join(f"{max(d.values()):9.1e}" for d, _ in result.values())
            counts_ok = all(ok for _, ok in result.values())
            print(f"{name:<34} {line}  {'ok' if counts_ok else 'DIFFER'}")
            for diffs, ok in result.values():
                worst["dice"] = max(worst["dice"], diffs["LesionWise_Score_Dice"])
                worst["hd95"] = max(worst["hd95"], diffs["LesionWise_Score_HD95"])
                worst["nsd"] = max(
                    worst["nsd"], diffs["LesionWise_Score_NSD @ 0.5"], diffs["LesionWise_Score_NSD @ 1.0"]
                )
                over += max(diffs.values()) > 1e-6
                mismatched += not ok
                compared += 1
    print_figures(
        {
            "cases": len(cases),
            "tasks": len(tasks),
            "comparisons": compared,
            "max_abs_diff": max(worst.values()),
            "max_abs_diff_dice": worst["dice"],
            "max_abs_diff_hd95": worst["hd95"],
            "max_abs_diff_nsd": worst["nsd"],
            "over_1e-6": over,
            "counts_mismatch": mismatched,
            "peer": commit[:12],
        },
        fmt=".3g",
    )


if __name__ == "__main__":
    main()
