"""Charts of training logs and evaluation tables: training curves, per-region box plots, per-case bars.

Tables come as a CSV path, a DataFrame-like object, a mapping of columns or a list of row dicts;
non-numeric cells read as NaN. Every function returns its :class:`matplotlib.figure.Figure` and
writes it when given ``save=``.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from brainseg_tf.conventions import REGIONS
from brainseg_tf.viz.colors import CURVE_COLOURS, REGION_COLOURS, region_legend_handles
from brainseg_tf.viz.figures import DEFAULT_DPI, save_figure

__all__ = ["training_curves", "metric_boxplot", "metric_per_case"]

# Column suffixes that make one panel of several curves (``dice_wt``, ``dice_tc``, ...).
_SUFFIXES = ("wt", "tc", "et", "ncr", "ed", "bg", "mean")
# Metrics bounded to [0, 1]: their axes are fixed so that plots compare at a glance.
_UNIT_METRICS = ("dice", "sensitivity", "specificity", "precision", "iou", "jaccard")


def _read_table(source: Any) -> dict[str, list]:
    """Columns of a CSV path, a DataFrame-like object, a mapping of columns or a list of row dicts."""
    if isinstance(source, (str, Path)):
        with open(source, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise ValueError(f"{source}: no rows")
        return {k: [r.get(k) for r in rows] for k in rows[0]}
    if hasattr(source, "columns") and hasattr(source, "to_dict"):  # pandas without importing it
        return {str(k): list(v) for k, v in source.to_dict(orient="list").items()}
    if isinstance(source, Mapping):
        return {str(k): list(v) for k, v in source.items()}
    rows = list(source)
    if not rows or not isinstance(rows[0], Mapping):
        raise ValueError("expected a CSV path, a DataFrame, a mapping of columns or a list of row dicts")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in keys}


def _floats(values: Iterable) -> np.ndarray:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.asarray(out, dtype=float)


def _family(name: str) -> tuple[str, str]:
    """``dice_wt`` -> (``dice``, ``wt``); ``loss`` -> (``loss``, ``""``)."""
    head, _, tail = name.rpartition("_")
    if head and tail.lower() in _SUFFIXES:
        return head, tail
    return name, ""


def _curve_families(
    table: Mapping[str, list], metrics: Sequence[str] | None
) -> tuple[dict[str, list[str]], str | None]:
    """Panels of a training log: family -> its training columns, and the learning-rate column."""
    families: dict[str, list[str]] = {}
    lr_col = None
    for col in table:
        if col == "epoch" or col.startswith("val_"):
            continue
        if col in ("lr", "learning_rate"):
            lr_col = col
            continue
        if np.all(np.isnan(_floats(table[col]))):
            continue
        families.setdefault(_family(col)[0], []).append(col)
    for col in table:  # validation columns without a training partner still get drawn
        if col.startswith("val_") and col[4:] not in table:
            families.setdefault(_family(col[4:])[0], []).append(col[4:])
    if metrics is not None:
        missing = [m for m in metrics if m not in families]
        if missing:
            raise ValueError(f"metrics {missing} not in the log; available: {sorted(families)}")
        families = {m: families[m] for m in metrics}
    else:
        families = dict(sorted(families.items(), key=lambda kv: (kv[0] != "loss", kv[0])))
    if not families:
        raise ValueError(f"no loss or metric columns in the log (columns: {list(table)})")
    return families, lr_col


def _plot_learning_rate(ax: plt.Axes, y: np.ndarray, epochs: np.ndarray | None) -> None:
    x = epochs if epochs is not None else np.arange(1, len(y) + 1)
    ax.plot(x, y, color="0.3")
    shown = y[np.isfinite(y)]
    if shown.size and (shown > 0).all():  # a poly schedule ends at 0: linear then
        ax.set_yscale("log")
    ax.set_title("learning rate", fontsize=10)
    ax.set_xlabel("epoch")


def _plot_family(
    ax: plt.Axes, table: Mapping[str, list], fam: str, columns: list[str], epochs: np.ndarray | None
) -> None:
    """Training (solid) and validation (dashed) curves of one family, best validation epoch dotted."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lower_better = "loss" in fam.lower() or fam.lower().startswith(("hd", "haus"))
    for c, col in enumerate(columns):
        colour = CURVE_COLOURS.get(_family(col)[1].upper(), colours[c % len(colours)])
        for key, style in ((col, "-"), (f"val_{col}", "--")):
            if key not in table:
                continue
            y = _floats(table[key])
            x = epochs if epochs is not None else np.arange(1, len(y) + 1)
            ax.plot(x, y, style, color=colour, lw=1.4, label=key)
            if key.startswith("val_") and np.any(np.isfinite(y)):
                b = int(np.nanargmin(y) if lower_better else np.nanargmax(y))
                ax.plot(x[b], y[b], "o", color=colour, ms=5, mec="black", mew=0.6)
    ax.set_title(fam, fontsize=10)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)


def training_curves(
    log: Any,
    *,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """Training curves from a Keras ``CSVLogger`` file: one panel per loss/metric family.

    Every column ``x`` is paired with ``val_x`` (solid training, dashed validation, same colour).
    Columns ``name_wt``, ``name_tc``, ``name_et`` (and ``_ncr``, ``_ed``, ``_mean``) share one panel
    ``name``. The best validation epoch of each curve is marked (minimum for losses, maximum
    otherwise). A learning-rate column (``lr``/``learning_rate``) gets its own panel (log scale unless it reaches 0).

    Args:
        log: CSV path, DataFrame, mapping of columns, or a list of row dicts. An ``epoch``
            column is used as x when present (shown 1-based), else the row number.
        metrics: families to show (default: all, loss first).
        title, save, dpi: figure title, output path, resolution.

    Returns:
        The figure.

    Raises:
        ValueError: no numeric loss/metric columns, or a requested family that is absent.
    """
    table = _read_table(log)
    epochs = _floats(table["epoch"]) + 1 if "epoch" in table else None
    families, lr_col = _curve_families(table, metrics)
    panels = list(families) + ([lr_col] if lr_col else [])
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, fam in zip(axes.flat, panels):
        if fam == lr_col:
            _plot_learning_rate(ax, _floats(table[lr_col]), epochs)
        else:
            _plot_family(ax, table, fam, families[fam], epochs)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title or "training curves (solid: training, dashed: validation, dot: best validation)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, save, dpi)
    return fig


def _region_values(table: Mapping[str, list], metric: str, regions: Sequence[str]) -> dict[str, np.ndarray]:
    """Finite values of ``metric`` per region, from a long (``region`` column) or wide table."""
    values: dict[str, np.ndarray] = {}
    if "region" in table:
        if metric not in table:
            raise ValueError(f"metric {metric!r} not in the table; columns: {list(table)}")
        reg = [str(r).upper() for r in table["region"]]
        vals = _floats(table[metric])
        for r in regions:
            v = vals[[i for i, x in enumerate(reg) if x == r.upper()]]
            values[r] = v[np.isfinite(v)]
    else:
        for r in regions:
            col = next((c for c in table if c.lower() == f"{metric}_{r}".lower()), None)
            if col is not None:
                v = _floats(table[col])
                values[r] = v[np.isfinite(v)]
        if not values:
            raise ValueError(f"metric {metric!r}: no 'region' column and no {metric}_<region> columns in {list(table)}")
    if not any(v.size for v in values.values()):
        raise ValueError(f"metric {metric!r} has no numeric values for regions {tuple(regions)}")
    return values


def metric_boxplot(
    metrics: Any,
    metric: str = "dice",
    *,
    regions: Sequence[str] = REGIONS,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """Per-case box plots of one metric for each region, every case drawn as a point.

    Accepts the long evaluation table (columns ``case, region, <metric>, ...``, one row per case
    and region) or a wide one (``<metric>_wt``, ``<metric>_tc``, ... per case). Non-numeric and
    NaN values are left out and the count of cases kept is printed under each box; the median is
    written above it.

    Args:
        metrics: CSV path, DataFrame, mapping of columns, or a list of row dicts.
        metric: column to plot (``dice``, ``hd95``, ``sensitivity``, ...).
        regions: regions in plotting order.
        title, save, dpi: figure title, output path, resolution.

    Returns:
        The figure.

    Raises:
        ValueError: the metric is not in the table, or no region has a value.
    """
    values = _region_values(_read_table(metrics), metric, regions)
    names = list(values)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.4, 4.0))
    data = [values[r] if values[r].size else np.array([np.nan]) for r in names]
    box = ax.boxplot(data, patch_artist=True, widths=0.55, showfliers=False, medianprops={"color": "black"})
    rng = np.random.default_rng(0)  # fixed jitter: the same table gives the same picture
    for i, (r, patch) in enumerate(zip(names, box["boxes"]), start=1):
        patch.set_facecolor((*REGION_COLOURS.get(r.upper(), (0.6, 0.6, 0.6)), 0.55))
        v = values[r]
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=12, color="black", alpha=0.6, zorder=3)
        if v.size:
            ax.annotate(
                f"{np.median(v):.3g}",
                (i, np.max(v)),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    ax.set_xticks(range(1, len(names) + 1), [f"{r}\nn={values[r].size}" for r in names])
    ax.set_ylabel(metric)
    if metric.lower() in _UNIT_METRICS:
        ax.set_ylim(-0.02, 1.08)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        handles=region_legend_handles([r for r in names if r.upper() in REGION_COLOURS]),
        fontsize=7,
        frameon=False,
        loc="best",
    )
    ax.set_title(title or f"per-case {metric} by region (median above each box)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save, dpi)
    return fig


def _case_grid(table: Mapping[str, list], metric: str, regions: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Case ids (table order) and the ``(cases, regions)`` grid of ``metric``, NaN where absent."""
    missing = [c for c in ("case", "region", metric) if c not in table]
    if missing:
        raise ValueError(f"columns {missing} not in the table; columns: {list(table)}")
    vals = _floats(table[metric])
    if not np.any(np.isfinite(vals)):
        raise ValueError(f"metric {metric!r} has no numeric values")
    cases = list(dict.fromkeys(str(c) for c in table["case"]))
    grid = np.full((len(cases), len(regions)), np.nan)
    index = {r.upper(): j for j, r in enumerate(regions)}
    for c, r, v in zip(table["case"], table["region"], vals):
        if str(r).upper() in index:
            grid[cases.index(str(c)), index[str(r).upper()]] = v
    return cases, grid


def metric_per_case(
    metrics: Any,
    metric: str = "dice",
    *,
    regions: Sequence[str] = REGIONS,
    title: str | None = None,
    save: str | Path | None = None,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """Grouped bars of one metric per case and region: one group per case, one bar per region.

    Cases are ordered by their mean over ``regions`` (best first), so the best and the worst case
    sit at the two ends; NaN values leave a gap.

    Args:
        metrics: the long evaluation table (columns ``case, region, <metric>``; one row per case
            and region) as a CSV path, DataFrame, mapping of columns or list of row dicts.
        metric: column to plot.
        regions: regions in bar order, drawn in the region colours.
        title, save, dpi: figure title, output path, resolution.

    Returns:
        The figure.

    Raises:
        ValueError: no ``case``/``region``/``metric`` column, or no numeric value.
    """
    cases, grid = _case_grid(_read_table(metrics), metric, regions)
    with warnings.catch_warnings():  # an all-NaN case sorts last
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(grid, axis=1)
    order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")
    width = 0.8 / len(regions)
    fig, ax = plt.subplots(figsize=(min(12.0, 2.4 + 0.45 * len(cases) * len(regions) ** 0.5), 3.6))
    x = np.arange(len(cases))
    for j, r in enumerate(regions):
        colour = CURVE_COLOURS.get(r.upper(), (0.6, 0.6, 0.6))
        ax.bar(x + (j - (len(regions) - 1) / 2) * width, grid[order, j], width, color=colour, label=r)
    ax.set_xticks(
        x,
        [cases[i] for i in order],
        rotation=60 if len(cases) > 4 else 0,
        ha="right" if len(cases) > 4 else "center",
        fontsize=7,
    )
    ax.set_ylabel(metric)
    if metric.lower() in _UNIT_METRICS:
        ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, frameon=False, ncol=len(regions), loc="upper right")
    ax.set_title(title or f"{metric} per case and region (best case first)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save, dpi)
    return fig
