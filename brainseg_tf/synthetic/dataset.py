"""Synthetic datasets: cases written in any dataset layout, with a BraTS-like survival table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from brainseg_tf.checks import check_int
from brainseg_tf.progress import progress as show_progress
from brainseg_tf.synthetic.phantom import SyntheticCase, as_men_rt, check_case_arguments, synthesize_case

SURVIVAL_COLUMNS: tuple[str, ...] = ("Brats20ID", "Age", "Survival_days", "Extent_of_Resection")

#: The BraTS 2024/2025 task layouts of :func:`make_dataset`: case id pattern per task. Their files
#: use the 2023+ naming (io layout ``brats2023``: ``<case>-t2f/-t1n/-t1c/-t2w/-seg.nii.gz``) and
#: their masks hold the task's label scheme's SOURCE values (``synthesize_case(task=...)``).
TASK_LAYOUTS: dict[str, str] = {
    "gli2024": "BraTS-GLI-{:05d}-100",  # post-treatment time points (1xx)
    "met2024": "BraTS-MET-{:05d}-000",
    "ped2024": "BraTS-PED-{:05d}-000",
}
#: Every layout :func:`make_dataset` writes: the io file layouts (``men_rt``: MEN-RT's own naming
#: ``<case>_t1c/_gtv.nii.gz``, T1c alone, 1 GTV), then the task layouts.
SYNTH_LAYOUTS: tuple[str, ...] = ("brats2018", "brats2020", "brats2021", "brats2023", "msd", "men_rt", *TASK_LAYOUTS)
#: ``(shape, spacing in mm)`` of a layout's cases unless stated: MEN-RT's native anisotropic grid
#: (reference/brats-editions.md: e.g. 512 x 512 x 136), the BraTS 1 mm 240 x 240 x 155 grid otherwise.
LAYOUT_GRIDS: dict[str, tuple[tuple[int, int, int], tuple[float, float, float]]] = {
    "men_rt": ((512, 512, 136), (0.5, 0.5, 1.2)),
}
_BRATS_GRID = ((240, 240, 155), (1.0, 1.0, 1.0))


def has_resection(layout: str, index: int) -> bool:
    """Whether case ``index`` of a task layout has a resection cavity (4 RC): two GLI cases in three
    (all but ``index % 3 == 2``), every other MET case (even ``index``); never elsewhere."""
    if layout == "gli2024":
        return index % 3 != 2
    return layout == "met2024" and index % 2 == 0


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
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
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

    Task layouts (:data:`TASK_LAYOUTS`) write BraTS 2024/2025 cases in the 2023+ file naming:
    ``gli2024`` (``BraTS-GLI-xxxxx-100`` post-treatment time points, a resection cavity 4 RC
    beside the tumour in two cases in three), ``met2024`` (``BraTS-MET-*``: 2-4 small lesions,
    every other case with RC), ``ped2024`` (``BraTS-PED-*``: 1 ET, 2 NET, 3 CC, 4 ED in the files).
    See :func:`has_resection` and :func:`brainseg_tf.synthetic.synthesize_case` (``task=``).
    ``men_rt`` writes ``BraTS-MEN-RT-xxxx-1/<case>_t1c.nii.gz`` and ``<case>_gtv.nii.gz`` (1 GTV:
    :func:`brainseg_tf.synthetic.as_men_rt`) on an anisotropic grid, and no survival table.

    Args:
        out: dataset folder (created).
        layout: one of :data:`SYNTH_LAYOUTS`: ``brats2018``, ``brats2020``, ``brats2021``,
            ``brats2023``, ``msd``, ``men_rt``, ``gli2024``, ``met2024`` or ``ped2024``.
        n_cases: number of cases (>= 1).
        seed: dataset seed; the same seed writes identical files.
        shape: grid of every case (default: the layout's, :data:`LAYOUT_GRIDS`; 240 x 240 x 155).
        spacing: voxel size in mm, in the affine and header (default: the layout's; 1 mm).
        with_labels: write segmentation masks (``False`` mimics a validation set).
        progress: show progress when writing several cases (see :mod:`brainseg_tf.progress`).

    Returns:
        The dataset folder.

    Raises:
        ValueError: unknown layout, ``n_cases`` < 1, bad seed or shape.
    """
    from brainseg_tf.io import case_id_for, write_case

    if layout not in SYNTH_LAYOUTS:
        raise ValueError(f"layout={layout!r} is unknown; expected one of {list(SYNTH_LAYOUTS)}")
    task = layout if layout in TASK_LAYOUTS else None
    check_int("n_cases", n_cases)
    grid_shape, grid_spacing = LAYOUT_GRIDS.get(layout, _BRATS_GRID)
    shape, spacing = check_case_arguments(
        seed, grid_shape if shape is None else shape, grid_spacing if spacing is None else spacing
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    indices = range(int(n_cases))
    if progress and n_cases > 1:
        indices = show_progress(indices, desc=f"synth {layout}")
    for i in indices:
        case = synthesize_case(
            case_seed(seed, i), shape, spacing=spacing, task=task, resection=has_resection(layout, i)
        )
        if layout == "men_rt":
            case = as_men_rt(case)
        cid = TASK_LAYOUTS[task].format(i) if task else case_id_for(layout, i)
        write_case(
            out,
            "brats2023" if task else layout,
            cid,
            case.images,
            case.label if with_labels else None,
            case.affine,
            grade=case.grade if layout == "brats2018" else None,
            scheme=case.scheme,
        )
        if layout != "men_rt":  # MEN-RT ships no survival data
            rec = survival_record(case, np.random.default_rng(np.random.SeedSequence([int(seed), i, 1])))
            rows.append((cid, rec))
    if rows:
        _write_survival(out, rows, with_labels)
    return out


def _write_survival(out: Path, rows: list[tuple[str, dict]], with_labels: bool) -> None:
    """``survival_info.csv`` (training style) or, without labels, ``survival_evaluation.csv``."""
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
