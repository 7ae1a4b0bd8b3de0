"""Markdown reports with figures, one writer for ``brainseg train``, ``brainseg predict --ref`` and the demo.

Entry points: :func:`train_report` (a run directory: training curves, validation Dice per region
and case from the run's final sliding-window evaluation, box plots, overlays of the best and the
worst validation case), :func:`predict_report` (a prediction folder scored against references with
:func:`brainseg_tf.evaluation.evaluate_folders`: the same tables and figures, plus uncertainty
maps where ``<case_id>_uncertainty.nii.gz`` lies beside the labels) and :func:`demo_report` (the
demo's data, training, held-out and timing sections). Each writes ``report.md`` and
``figures/*.png`` into one folder: the figures folder is written whole as a temporary folder
renamed into place, then the Markdown (:mod:`brainseg_tf.atomic`), so a report never links a
figure of another run.

Figures are drawn by :mod:`brainseg_tf.viz` and rendered by Agg whatever the session's backend, at
a fixed size and dpi with no software stamp, so the same inputs give the same PNG bytes. Labels are
canonical (0 BG, 1 NCR, 2 ED, 3 ET); scores are per case and region (WT, TC, ET) with the legacy
BraTS empty-mask rules (both empty: Dice 1 / HD95 0; one empty: Dice 0 / HD95 373.13 mm).
No TensorFlow import, except in :func:`train_report` where the overlays need the run's model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf import atomic
from brainseg_tf.conventions import REGIONS
from brainseg_tf.io.predictions import COMPANION_SUFFIXES, LABEL_SUFFIX, UNCERTAINTY, uncertainty_path
from brainseg_tf.progress import progress as show_progress

REPORT_FILE = "report.md"
FIGURE_DIR = "figures"
VIEWER_DIR = "viewers"  # one self-contained interactive page per case (brainseg_tf.viz.view)
SETTINGS_FILE = "settings.json"  # the demo's settings and results, what docs/report_example records
METRICS_FILE = "metrics.csv"
UNCERTAINTY_SUFFIX = UNCERTAINTY + LABEL_SUFFIX  # the prediction folder's names: brainseg_tf.io.predictions
DPI = 72  # small PNGs: a report is read on screen, not printed
SUMMARY_METRICS: tuple[str, ...] = ("dice", "hd95", "sensitivity", "lesion_dice")


@dataclass
class CaseView:
    """What an overlay needs: ``image (X, Y, Z, C)``, canonical ``truth``/``pred (X, Y, Z)`` uint8,
    the affine, and an optional ``(X, Y, Z)`` float ``uncertainty`` map."""

    case_id: str
    image: np.ndarray
    truth: np.ndarray
    pred: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    uncertainty: np.ndarray | None = None


CaseLoader = Callable[[str], CaseView]


def _case_viewer(view: CaseView) -> Any:
    from brainseg_tf.conventions import MODALITIES
    from brainseg_tf.viz import view_html

    channels = view.image.shape[-1]
    names = MODALITIES if channels == len(MODALITIES) else tuple(f"channel {c}" for c in range(channels))
    return view_html(
        view.image,
        view.affine,
        reference=view.truth,
        prediction=view.pred,
        uncertainty=view.uncertainty,
        modalities=names,
        title=view.case_id,
    )


@dataclass
class Report:
    """A Markdown report being assembled: lines plus named figures, written by :meth:`write`."""

    title: str
    lines: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    viewers: dict[str, Callable[[], Any]] = field(default_factory=dict)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def section(self, heading: str) -> None:
        self.lines.extend(["", f"## {heading}", ""])

    def figure(self, name: str, fig: Any, caption: str) -> None:
        """Keep ``fig`` to be written as ``figures/<name>.png`` and link it here."""
        import matplotlib.pyplot as plt

        if name in self.figures:
            raise ValueError(f"figure name {name!r} used twice in one report")
        plt.close(fig)  # detached from pyplot; still drawable by Agg below
        self.figures[name] = fig
        self.lines.extend(["", f"![{caption}]({FIGURE_DIR}/{name}.png)", ""])

    def viewer_links(self, load: CaseLoader, case_ids: Sequence[str]) -> None:
        """Link ``viewers/<case>.html`` for each case: scans, reference and prediction in three planes
        and 3D (:func:`brainseg_tf.viz.view_html`), built when the report is written."""
        if not case_ids:
            return
        self.section("Interactive viewers")
        self.add(
            "One self-contained page per case (three planes, overlay toggles, 3D surfaces of reference and "
            "prediction); opens offline in any browser.",
            "",
        )
        for case_id in case_ids:
            self.viewers[case_id] = lambda case_id=case_id: _case_viewer(load(case_id))
            self.add(f"- [{case_id}]({VIEWER_DIR}/{case_id}.html)")

    def write(self, out_dir: str | Path) -> Path:
        """Write ``out_dir/figures/*.png`` and ``out_dir/viewers/*.html`` (each folder renamed into
        place whole) then ``out_dir/report.md``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        out_dir = Path(out_dir)
        with atomic.atomic_dir(out_dir / FIGURE_DIR) as tmp:
            for name, fig in self.figures.items():
                FigureCanvasAgg(fig)
                fig.savefig(tmp / f"{name}.png", format="png", dpi=DPI, metadata={"Software": None})
        if self.viewers:
            with atomic.atomic_dir(out_dir / VIEWER_DIR) as tmp:
                for case_id, make in show_progress(self.viewers.items(), desc="viewers"):
                    make().save(tmp / f"{case_id}.html")
        text = "\n".join([f"# {self.title}", *self.lines]).rstrip() + "\n"
        while "\n\n\n" in text:
            text = text.replace("\n\n\n", "\n\n")
        return atomic.write_text(out_dir / REPORT_FILE, text)


# ------------------------------------------------------------------------------------ tables


def _fmt(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def summary_table(rows: Sequence[Mapping], metrics: Sequence[str] = SUMMARY_METRICS) -> list[str]:
    """Markdown table, per region: mean ± sd over cases of each metric (``–`` where none is numeric)."""
    present = [m for m in metrics if any(m in r for r in rows)]
    lines = [
        "| region | n | " + " | ".join(f"{m} (mean ± sd)" for m in present) + " |",
        "|---|---|" + "---|" * len(present),
    ]
    for region in dict.fromkeys(str(r["region"]) for r in rows):
        cells = []
        n = 0
        for m in present:
            v = np.array([float(r.get(m, math.nan)) for r in rows if str(r["region"]) == region], dtype=float)
            v = v[np.isfinite(v)]
            n = max(n, v.size)
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if v.size else "–")
        lines.append(f"| {region} | {n} | " + " | ".join(cells) + " |")
    return lines


def _per_case(rows: Sequence[Mapping], metric: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(str(r["case"]), {})[str(r["region"])] = float(r.get(metric, math.nan))
    return out


def case_ranking(rows: Sequence[Mapping], metric: str = "dice", regions: Sequence[str] = REGIONS) -> list[str]:
    """Case ids by their mean ``metric`` over ``regions``, best first (ties by case id)."""
    scores = _per_case(rows, metric)

    def mean(cid: str) -> float:
        v = [scores[cid].get(r, math.nan) for r in regions]
        v = [x for x in v if math.isfinite(x)]
        return sum(v) / len(v) if v else -math.inf

    return sorted(scores, key=lambda cid: (-mean(cid), cid))


def per_case_table(rows: Sequence[Mapping], regions: Sequence[str] = REGIONS) -> list[str]:
    """Markdown table, one line per case (best first): Dice and HD95 (mm) of each region."""
    dice, hd = _per_case(rows, "dice"), _per_case(rows, "hd95")
    head = " | ".join([f"Dice {r}" for r in regions] + [f"HD95 {r} (mm)" for r in regions])
    lines = [f"| case | {head} |", "|---|" + "---|" * (2 * len(regions))]
    for cid in case_ranking(rows, regions=regions):
        cells = [_fmt(dice[cid].get(r)) for r in regions] + [_fmt(hd.get(cid, {}).get(r), 1) for r in regions]
        lines.append(f"| {cid} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------- sections


def scores_section(report: Report, rows: Sequence[Mapping], load: CaseLoader | None, *, what: str) -> None:
    """Summary and per-case tables, per-case bars, box plots, best/worst overlays, uncertainty.

    Args:
        report: the report to extend.
        rows: one dict per case x region with at least ``case, region, dice`` (``hd95`` and the
            other :func:`brainseg_tf.evaluation.evaluate_case` keys where available).
        load: gives a :class:`CaseView` for a case id, for the overlays (``None``: no overlays).
        what: names the cases in captions ("validation", "held-out", ...).
    """
    from brainseg_tf import viz

    rows = [dict(r) for r in rows]
    report.add(*summary_table(rows), "", f"Per {what} case, best first:", "", *per_case_table(rows))
    report.figure("dice_per_case", viz.metric_per_case(rows, "dice"), f"Dice per {what} case and region")
    report.figure("dice_boxplot", viz.metric_boxplot(rows, "dice"), "Dice per region")
    if any(math.isfinite(float(r.get("hd95", math.nan))) for r in rows):
        report.figure("hd95_boxplot", viz.metric_boxplot(rows, "hd95"), "HD95 (mm) per region")
    if load is None:
        return
    ranked = case_ranking(rows)
    picks = {"best": ranked[0], "worst": ranked[-1]} if len(ranked) > 1 else {"only": ranked[0]}
    for role, cid in picks.items():
        view = load(cid)
        title = f"{role} {what} case {cid}: reference vs prediction"
        report.figure(
            f"{role}_case",
            viz.compare(view.image, view.truth, view.pred, affine=view.affine, spacing=view.spacing, title=title),
            title,
        )
        if view.uncertainty is not None:
            title = f"{role} {what} case {cid}: uncertainty"
            report.figure(
                f"{role}_case_uncertainty",
                viz.uncertainty_overlay(
                    view.image, view.uncertainty, view.pred, affine=view.affine, spacing=view.spacing, title=title
                ),
                title,
            )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def training_section(report: Report, run_dir: str | Path) -> list[dict[str, Any]]:
    """Recipe, split, epochs and best score of a run, and its training curves.

    Returns:
        The run's validation scores (``metrics.json`` ``sliding_window.per_case``) as rows
        ``{case, region, dice, hd95}``; empty when the run made no final sliding-window evaluation.
    """
    from brainseg_tf import viz

    run_dir = Path(run_dir)
    config, metrics, split = (_read_json(run_dir / n) for n in ("config.json", "metrics.json", "split.json"))
    model = config.get("model", {})
    best = metrics.get("best") or {}
    report.add(
        f"- recipe `{config.get('name', '?')}`: {model.get('name', '?')} {model.get('options', {})}, "
        f"patch {config.get('pipeline', {}).get('patch_size', '?')}",
        f"- {len(split.get('train_ids', []))} training / {len(split.get('val_ids', []))} validation cases; "
        f"{metrics.get('epochs_completed', '?')} epochs, {metrics.get('optimizer_steps', '?')} optimizer steps, "
        f"{_fmt(float(metrics.get('wall_time_s_total', math.nan)) / 60, 1)} min",
        f"- best `{metrics.get('monitor', '?')}` = {_fmt(best.get('value'))} at epoch {best.get('epoch', '?')}",
        f"- run directory: `{run_dir}`",
    )
    log = run_dir / "log.csv"
    if log.is_file() and len(log.read_text().strip().splitlines()) > 1:
        report.figure("training_curves", viz.training_curves(log), "training curves")
    else:
        report.add("", f"No epoch log ({log} is missing or empty).")
    per_case = (metrics.get("sliding_window") or {}).get("per_case") or {}
    rows = []
    for cid, scores in per_case.items():
        for region in REGIONS:
            key = region.lower()
            if f"dice_{key}" in scores:
                rows.append(
                    {
                        "case": cid,
                        "region": region,
                        "dice": scores[f"dice_{key}"],
                        "hd95": scores.get(f"hd95_{key}", math.nan),
                    }
                )
    return rows


def data_section(report: Report, data_dir: str | Path, *, note: str = "") -> None:
    """The dataset summary and one case with its labels."""
    from brainseg_tf import io, viz

    summary = io.format_summary(io.dataset_summary(data_dir, progress=False))
    report.add(*([note, ""] if note else []), "```", summary, "```")
    first = io.open_dataset(data_dir)[0]
    report.figure(
        "data_case",
        viz.show_case(first.image, first.label, affine=first.affine, title=first.case_id),
        f"case {first.case_id}",
    )


# ---------------------------------------------------------------------------------- loaders


def _load_uncertainty(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """An ``(X, Y, Z)`` uncertainty map (a 4D map is reduced by its maximum over the last axis)."""
    from brainseg_tf import io

    if not path.is_file():
        return None
    data = np.asarray(io.load_nifti(path).data, dtype=np.float32)
    if data.ndim == 4:
        data = data.max(axis=-1)
    if data.shape != tuple(shape[:3]):
        raise ValueError(f"{path}: uncertainty map has shape {data.shape}, the labels {tuple(shape[:3])}")
    return data


def folder_loader(
    pred_dir: str | Path,
    ref_dir: str | Path,
    images: str | Path,
    *,
    ref_convention: str | None = None,
    pred_convention: str | None = None,
) -> CaseLoader:
    """Cases of a prediction folder with their references and images, read as ``brainseg evaluate`` reads them.

    Pairing, label conventions (the flags, else the records: dataset layout, ``predictions.json``,
    header stamp; never guessed) and checks are :func:`brainseg_tf.io.predictions.paired_cases`'.
    """
    from brainseg_tf import io

    pred_dir = Path(pred_dir)
    dataset = io.open_dataset(images)
    pairs = io.predictions.paired_cases(
        pred_dir, ref_dir, ref_convention=ref_convention, pred_convention=pred_convention
    )

    def load(case_id: str) -> CaseView:
        case = dataset[case_id]
        pair = pairs.load(case_id)
        return CaseView(
            case_id,
            case.image,
            pair.ref,
            pair.pred,
            case.affine,
            pair.spacing,
            _load_uncertainty(uncertainty_path(pred_dir, case_id), pair.ref.shape),
        )

    return load


def run_loader(run_dir: str | Path) -> CaseLoader | None:
    """Validation cases of a run predicted by its best model, as the run's final evaluation did.

    ``None`` when the run's ``data.root`` (raw cases) cannot be found.
    """
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json")
    root = config.get("data", {}).get("root")
    if root is None or not Path(root).expanduser().is_dir():
        return None
    from brainseg_tf import inference, io

    dataset = io.open_dataset(Path(root).expanduser(), layout=config["data"].get("layout"))
    predictor = inference.load_predictor(run_dir)
    overlap = float(config.get("validation", {}).get("overlap", 0.5))

    def load(case_id: str) -> CaseView:
        case = dataset[case_id]
        pred = inference.predict_case(predictor, case, overlap=overlap)
        return CaseView(case_id, case.image, case.label, pred.labels, case.affine, case.spacing)

    return load


# ------------------------------------------------------------------------------ entry points


_RULES = (
    "Legacy BraTS empty-mask rules (both empty: Dice 1, HD95 0 mm; one empty: Dice 0, HD95 373.13 mm); "
    "HD95 in mm from the header spacing."
)


def train_report(run_dir: str | Path, *, overlays: bool = True) -> Path:
    """Write ``RUN_DIR/report.md`` and ``RUN_DIR/figures/`` for a finished (or interrupted) run.

    Args:
        run_dir: a run directory (``config.json``, ``split.json``, ``log.csv``, ``metrics.json``).
        overlays: predict the best and the worst validation case with the run's best model for
            overlays (needs the run's ``data.root``; skipped with a note otherwise).

    Returns:
        The report's path.

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``config.json``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.json)")
    report = Report(f"Training report: {run_dir.name}")
    report.section("Training")
    rows = training_section(report, run_dir)
    report.section("Validation (whole cases, sliding window)")
    if not rows:
        report.add(
            "No per-case validation scores: the run made no final sliding-window evaluation "
            "(`validation.final_sliding_window` off, no validation cases, or no `data.root`)."
        )
        return report.write(run_dir)
    load = run_loader(run_dir) if overlays else None
    report.add(f"`best.keras` on each whole validation case. {_RULES}", "")
    if overlays and load is None:
        report.add("Overlays skipped: the run's `data.root` was not found.", "")
    scores_section(report, rows, load, what="validation")
    return report.write(run_dir)


def predict_report(
    pred_dir: str | Path,
    ref_dir: str | Path,
    *,
    images: str | Path | None = None,
    result: Any = None,
    ref_convention: str | None = None,
    pred_convention: str | None = None,
    case_ids: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    viewers: bool = True,
) -> Path:
    """Score a prediction folder against references and write ``report.md`` + ``figures/`` + ``metrics.csv``
    (+ ``viewers/<case>.html``, one interactive page per scored case).

    Args:
        pred_dir: folder of predicted label maps (``brainseg predict`` output).
        ref_dir: reference dataset folder or folder of label files.
        images: dataset or case folder of the scans, for overlays (default: ``ref_dir``).
        result: an :class:`~brainseg_tf.evaluation.EvaluationResult` already computed (else
            :func:`~brainseg_tf.evaluation.evaluate_folders` runs here, writing ``metrics.csv``).
        ref_convention, pred_convention: label conventions, as ``brainseg evaluate`` takes them.
        case_ids: score only these reference cases.
        out_dir: where the report goes (default: ``pred_dir``).
        viewers: also write one viewer page per scored case (a few MB each).

    Returns:
        The report's path.

    Raises:
        FileNotFoundError, ValueError, DataError: as :func:`~brainseg_tf.evaluation.evaluate_folders`.
    """
    from brainseg_tf import evaluation

    pred_dir = Path(pred_dir)
    out_dir = Path(out_dir) if out_dir is not None else pred_dir
    if result is None:
        result = evaluation.evaluate_folders(
            pred_dir,
            ref_dir,
            ref_convention=ref_convention,
            pred_convention=pred_convention,
            out_csv=out_dir / METRICS_FILE,
            progress=False,
            case_ids=case_ids,
        )
    report = Report(f"Prediction report: {pred_dir.name}")
    report.add("", f"Predictions `{pred_dir}` scored against `{ref_dir}`. {_RULES}")
    if result.missing:
        report.add("", f"Missing predictions (scored as empty): {', '.join(result.missing)}")
    unmatched = [p.name for p in result.unmatched if not p.name.endswith(COMPANION_SUFFIXES)]
    if unmatched:
        report.add("", f"Predictions without a reference (not scored): {', '.join(unmatched)}")
    report.section("Scores")
    load = folder_loader(
        pred_dir,
        ref_dir,
        images if images is not None else ref_dir,
        ref_convention=ref_convention,
        pred_convention=pred_convention,
    )
    scores_section(report, result.rows, load, what="predicted")
    if viewers:
        report.viewer_links(load, sorted({r["case"] for r in result.rows} - set(result.missing)))
    return report.write(out_dir)


def demo_report(
    out: str | Path,
    *,
    data_dir: str | Path,
    run_dir: str | Path,
    pred_dir: str | Path,
    result: Any,
    timings: Mapping[str, float],
    settings: Mapping[str, Any] | None = None,
    targets: Mapping[str, float] | None = None,
) -> Path:
    """The demo's report in ``out``: data, training, held-out scores with overlays, 3D and one viewer
    per case, timings; and ``settings.json`` (the settings, mean Dice per region, minutes).

    Args:
        out: the demo folder (report and figures go there).
        data_dir: the synthetic dataset; run_dir: the training run; pred_dir: the held-out predictions.
        result: the :class:`~brainseg_tf.evaluation.EvaluationResult` of ``pred_dir`` against ``data_dir``.
        timings: seconds per stage, listed at the end.
        settings: the demo's settings (cases, grid, epochs, steps, seed), listed and recorded.
        targets: mean Dice per region the demo should reach, compared in the report.

    Returns:
        The report's path.
    """
    from brainseg_tf import viz

    report = Report("brainseg_tf demo report")
    report.add(
        "",
        "Synthetic BraTS-like data (no real patient data), so the numbers prove the pipeline, not clinical accuracy.",
    )
    report.section("Data")
    data_section(report, data_dir)
    report.section("Training")
    training_section(report, run_dir)
    report.section("Held-out cases")
    report.add(
        "Sliding-window prediction over the brain box, pasted back to the native grid and written as NIfTI "
        f"with the source's affine and label convention. {_RULES} Lesion-wise scores: BraTS 2023 rules.",
        "",
    )
    load = folder_loader(pred_dir, data_dir, data_dir)
    scores_section(report, result.rows, load, what="held-out")
    ranked = case_ranking(result.rows)
    best = load(ranked[0])
    report.figure(
        "prediction_three_plane",
        viz.three_plane(best.image, best.pred, affine=best.affine, title=f"{best.case_id}: prediction"),
        "best case's prediction, three planes",
    )
    report.figure(
        "prediction_3d",
        viz.surface_3d(best.pred, spacing=best.spacing, affine=best.affine),
        "best case's prediction in 3D",
    )
    report.viewer_links(load, ranked)
    summary = result.summary()
    means = {r: summary[r]["dice"]["mean"] for r in REGIONS}
    report.section("Result")
    report.add(demo_summary(means, sum(timings.values()), targets or {}))
    if settings:
        report.add("", *[f"- {key}: {value}" for key, value in settings.items()])
    report.section("Timings")
    report.add(
        *[f"- {name}: {seconds:.1f} s" for name, seconds in timings.items()],
        f"- total: {sum(timings.values()) / 60:.1f} min",
    )
    record = {
        "settings": dict(settings or {}),
        "mean_dice": {r: round(v, 4) for r, v in means.items()},
        "targets": dict(targets or {}),
        "minutes": round(sum(timings.values()) / 60, 2),
    }
    atomic.write_text(Path(out) / SETTINGS_FILE, json.dumps(record, indent=2) + "\n")
    return report.write(out)


def demo_summary(means: Mapping[str, float], seconds: float, targets: Mapping[str, float]) -> str:
    """``held-out mean Dice WT 0.938, TC 0.886, ET 0.860 in 3.0 min (targets WT >= 0.85, ...: met)``."""
    dice = ", ".join(f"{r} {means[r]:.3f}" for r in REGIONS)
    text = f"held-out mean Dice {dice} in {seconds / 60:.1f} min"
    if targets:
        missed = [r for r, t in targets.items() if not means.get(r, math.nan) >= t]
        goal = ", ".join(f"{r} >= {t:.2f}" for r, t in targets.items())
        text += f" (targets {goal}: {'met' if not missed else 'missed in ' + ', '.join(missed)})"
    return text


def publish_example(demo_dir: str | Path, dest: str | Path) -> Path:
    """Copy a full demo's report, figures and ``settings.json`` into ``dest`` (``docs/report_example``).

    The viewers (megabytes each) are not copied: their links are rewritten to the demo folder
    relative to ``dest``, so they open once ``make demo`` has run on the reader's machine.

    Raises:
        ValueError: the demo folder holds no complete report, or a ``--quick`` run.
    """
    import os
    import re
    import shutil

    demo_dir, dest = Path(demo_dir), Path(dest)
    if not (demo_dir / SETTINGS_FILE).is_file() or not (demo_dir / REPORT_FILE).is_file():
        raise ValueError(f"{demo_dir}: no demo report with {SETTINGS_FILE} (run `brainseg demo` first)")
    record = json.loads((demo_dir / SETTINGS_FILE).read_text())
    if record.get("settings", {}).get("quick"):
        raise ValueError(f"{demo_dir}: a --quick demo is not the example of the demo")
    viewers = os.path.relpath(demo_dir / VIEWER_DIR, dest)
    text = re.sub(rf"\]\({VIEWER_DIR}/", f"]({viewers}/", (demo_dir / REPORT_FILE).read_text())
    text = text.replace(
        "## Interactive viewers\n",
        f"## Interactive viewers\n\n(Not committed, megabytes each: these links open `{demo_dir}/{VIEWER_DIR}` "
        "once `make demo` has run.)\n",
    )
    with atomic.atomic_dir(dest) as tmp:
        shutil.copytree(demo_dir / FIGURE_DIR, tmp / FIGURE_DIR)
        shutil.copy2(demo_dir / SETTINGS_FILE, tmp / SETTINGS_FILE)
        (tmp / REPORT_FILE).write_text(text)
    return dest / REPORT_FILE


__all__ = [
    "REPORT_FILE",
    "FIGURE_DIR",
    "VIEWER_DIR",
    "SETTINGS_FILE",
    "demo_summary",
    "publish_example",
    "UNCERTAINTY_SUFFIX",
    "CaseView",
    "Report",
    "summary_table",
    "per_case_table",
    "case_ranking",
    "scores_section",
    "training_section",
    "data_section",
    "folder_loader",
    "run_loader",
    "train_report",
    "predict_report",
    "demo_report",
]
