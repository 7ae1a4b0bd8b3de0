"""Synthetic datasets: cases written in any dataset layout, with a BraTS-like survival table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from brainseg_tf.checks import check_int
from brainseg_tf.progress import progress as show_progress
from brainseg_tf.synthetic.phantom import SyntheticCase, check_case_arguments, synthesize_case

SURVIVAL_COLUMNS: tuple[str, ...] = ("Brats20ID", "Age", "Survival_days", "Extent_of_Resection")


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` of a dataset made with ``seed`` (independent streams per case)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def survival_record(case: SyntheticCase, rng: np.random.Generator) -> dict:
    """Resection status and overall survival of a synthetic patient.

    Log-survival falls with age (the dominant real predictor), whole-tumour volume, the enhancing
    fraction of the core and depth, rises for LGG-like cases and gross-total resection; residual
    spread is log-normal. About 6 % of patients are censored, written like the real BraTS 2020
    file as ``"ALIVE (N days later)"``.

    Returns:
        ``{"Age": float, "Survival_days": int | str, "Extent_of_Resection": "GTR"|"STR"|"NA",
        "days": int}`` (``days`` is the uncensored survival).
    """
    resection = str(rng.choice(["GTR", "STR", "NA"], p=[0.5, 0.15, 0.35]))
    v = case.volumes_ml
    f = case.features
    # Volumes relative to a 1400 ml brain, so small test grids behave like full-size cases.
    wt = v["wt"] / max(v["brain"], 1e-6) * 1400.0
    depth = f.get("depth_mm", 30.0)
    log_days = (
        np.log(400.0)
        - 0.03 * (case.age - 60.0)
        - 0.25 * np.log(max(wt, 1.0) / 80.0)
        - 0.4 * (f.get("et_fraction", 0.0) - 0.5)
        - 0.006 * (30.0 - min(depth, 60.0))
        + (0.7 if case.grade == "LGG" else 0.0)
        + {"GTR": 0.2, "STR": 0.0, "NA": -0.1}[resection]
        + rng.normal(0.0, 0.4)
    )
    days = int(np.clip(round(float(np.exp(log_days))), 5, 1800))
    value: int | str = days
    if rng.random() < 0.06:
        value = f"ALIVE ({int(days * rng.uniform(0.4, 0.9))} days later)"
    return {"Age": case.age, "Survival_days": value, "Extent_of_Resection": resection, "days": days}


def make_dataset(
    out: str | Path,
    *,
    layout: str = "brats2021",
    n_cases: int = 4,
    seed: int = 0,
    shape: tuple[int, int, int] = (240, 240, 155),
    with_labels: bool = True,
    progress: bool = True,
) -> Path:
    """Write a synthetic dataset in a BraTS or MSD layout, plus a BraTS-2020-style survival CSV.

    Case ``i`` is ``synthesize_case(case_seed(seed, i), shape)`` written with
    :func:`brainseg_tf.io.write_case` under the layout's ``i``-th case id (brats2018 cases go to
    ``HGG/`` or ``LGG/``). With labels, ``survival_info.csv`` holds ``Brats20ID, Age,
    Survival_days, Extent_of_Resection`` for every case (a few censored ``"ALIVE (N days later)"``
    entries, as in the real file); without labels, ``survival_evaluation.csv`` holds ``BraTS20ID,
    Age, ResectionStatus`` like the real validation file.

    Args:
        out: dataset folder (created).
        layout: ``brats2018``, ``brats2020``, ``brats2021``, ``brats2023`` or ``msd``.
        n_cases: number of cases (>= 1).
        seed: dataset seed; the same seed writes identical files.
        shape: grid of every case.
        with_labels: write segmentation masks (``False`` mimics a validation set).
        progress: show progress when writing several cases (see :mod:`brainseg_tf.progress`).

    Returns:
        The dataset folder.

    Raises:
        ValueError: unknown layout, ``n_cases`` < 1, bad seed or shape.
    """
    from brainseg_tf.io import LAYOUTS, case_id_for, write_case

    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is unknown; expected one of {list(LAYOUTS)}")
    check_int("n_cases", n_cases)
    check_case_arguments(seed, shape, (1.0, 1.0, 1.0))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    indices = range(int(n_cases))
    if progress and n_cases > 1:
        indices = show_progress(indices, desc=f"synth {layout}")
    for i in indices:
        case = synthesize_case(case_seed(seed, i), tuple(shape))
        cid = case_id_for(layout, i)
        write_case(
            out,
            layout,
            cid,
            case.images,
            case.label if with_labels else None,
            case.affine,
            grade=case.grade if layout == "brats2018" else None,
        )
        rec = survival_record(case, np.random.default_rng(np.random.SeedSequence([int(seed), i, 1])))
        rows.append((cid, rec))
    if with_labels:
        path, header = out / "survival_info.csv", list(SURVIVAL_COLUMNS)
        lines = [[cid, f"{r['Age']:.3f}", r["Survival_days"], r["Extent_of_Resection"]] for cid, r in rows]
    else:
        path, header = out / "survival_evaluation.csv", ["BraTS20ID", "Age", "ResectionStatus"]
        lines = [[cid, f"{r['Age']:.3f}", r["Extent_of_Resection"]] for cid, r in rows]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(lines)
    tmp.replace(path)
    return out


def ensure_dataset(
    out: str | Path,
    *,
    layout: str = "brats2021",
    n_cases: int = 4,
    seed: int = 0,
    shape: tuple[int, int, int] = (240, 240, 155),
) -> Path:
    """:func:`make_dataset` once: reuse ``out`` when it already holds this exact dataset.

    A marker file naming the layout, case count, shape and seed is written after a complete
    build, so an interrupted build is redone and files (and caches built from them) are not
    rewritten on every call.
    """
    from brainseg_tf.io import open_dataset

    out = Path(out)
    marker = out / f".complete_{layout}_{n_cases}x{'x'.join(map(str, shape))}_s{seed}"
    if marker.exists():
        return out
    make_dataset(out, layout=layout, n_cases=n_cases, seed=seed, shape=tuple(shape))
    if len(open_dataset(out)) != n_cases:
        raise RuntimeError(f"{out}: expected {n_cases} synthetic cases")
    marker.write_text("ok\n")
    return out
