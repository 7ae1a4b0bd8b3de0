"""The run directory: the recipe and split as run, the model card, the epoch log, resume state."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brainseg_tf import atomic
from brainseg_tf.card import Inference, ModelCard, Preprocessing, provenance
from brainseg_tf.training.config import TrainConfig
from brainseg_tf.training.data import resolve_path
from brainseg_tf.training.split import Split, split_from_dict

# Keys that may change between a run and its resumption; anything else changing is refused.
RESUMABLE_CHANGES = (
    "name",
    "description",
    "data.synthetic",
    "data.build_cache",
    "data.cache_dtype",
    "training.epochs",
    "training.verbose",
    "training.max_minutes",
    "training.checkpoint_every_steps",
    "runtime",
    "validation.final_sliding_window",
    "validation.overlap",
    "validation.window",
    "validation.max_window_voxels",
    "validation.min_window",
    "data.root",
    "data.cache",
    "validation.select_postprocessing",
    "validation.postprocessing_records",
    "training.all_folds",
)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically (:func:`brainseg_tf.atomic.write_json`)."""
    atomic.write_json(path, obj)


def flatten_config(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A recipe dict as ``{"section.key": value}`` (``options`` and ``augment`` dicts kept whole)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and k not in ("options", "augment"):
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = v
    return out


def incompatible_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    a, b = flatten_config(old), flatten_config(new)
    changed = []
    for key in sorted(set(a) | set(b)):
        if key.split(".")[0] in ("inference", "resolved_runtime"):
            continue
        if any(key == r or key.startswith(r + ".") for r in RESUMABLE_CHANGES):
            continue
        if a.get(key) != b.get(key):
            changed.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return changed


def _preprocessing(cfg: TrainConfig, cache_params: Mapping[str, Any] | None) -> Preprocessing:
    """The preprocessing the model was trained with: the cache's build parameters when training
    from a cache, else ``pipeline.options.preprocess``; for slice pipelines plane, resize and crop."""
    from brainseg_tf.training.data import PREPROCESS_KEYS, recipe_preprocessing

    options = recipe_preprocessing(cfg) if cache_params is None else dict(cache_params)
    pre = Preprocessing(**{k: options[k] for k in PREPROCESS_KEYS if k in options})
    if cfg.pipeline.kind == "slice":
        slice_opts = cfg.pipeline.options
        pre.resize = [int(s) for s in cfg.pipeline.patch_size]
        pre.plane = str(slice_opts.get("plane", "axial"))
        pre.crop = bool(slice_opts.get("crop", True))
    return pre


def _label_convention(cfg: TrainConfig, root: Path | None) -> str | None:
    """The source label convention of the training data, where it can be read."""
    if root is None or not root.exists():
        return None
    try:
        from brainseg_tf.training.data import open_root

        refs = open_root(root, cfg).refs
        return refs[0].convention if refs else None
    except (ValueError, OSError):
        return None


def model_card(
    cfg: TrainConfig, split: Split, source: Path | None, *, epochs: int | None = None, checkpoint: str | None = None
) -> ModelCard:
    """The run's :class:`~brainseg_tf.card.ModelCard` (``RUN_DIR/brainseg_model.json``).

    Training from a cache, the preprocessing is the cache's and the data folder the one it was
    built from (the cache is opened once for both). The card records the recipe's label scheme
    (stated or detected from the data).
    """
    from brainseg_tf.data.cache import is_cache_path

    cache_params, root = None, resolve_path(cfg.data.root, cfg)
    if source is not None and is_cache_path(source):
        from brainseg_tf.data import open_cache

        with open_cache(source) as cache:
            cache_params = cache.params
            root = Path(cache.source) if cache.source else root
    head = cfg.head
    return ModelCard(
        scheme=cfg.scheme.name,
        modalities=list(cfg.data.modalities),
        head=head,
        region=cfg.pipeline.region.upper() if head == "region" else None,
        spatial_dims=cfg.spatial_dims,
        logits=cfg.logits,
        roi=[int(s) for s in cfg.pipeline.patch_size],
        model=cfg.model.name,
        options=dict(cfg.model.options),
        preprocessing=_preprocessing(cfg, cache_params),
        inference=Inference(
            window=cfg.validation.window,
            overlap=float(cfg.validation.overlap),
            max_window_voxels=int(cfg.validation.max_window_voxels),
            min_window=None if cfg.validation.min_window is None else list(cfg.validation.min_window),
            divisor=list(cfg.divisor),
        ),
        label_convention=_label_convention(cfg, root),
        provenance=provenance(
            recipe=cfg.name,
            recipe_file=cfg.source,
            data=None if source is None else str(source),
            split={
                "method": split.method,
                "fold": split.fold,
                "folds": split.folds,
                "train_cases": len(split.train_ids),
                "val_ids": list(split.val_ids),
            },
            epochs=epochs,
            checkpoint=checkpoint,
        ),
    )


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def truncate_csv(path: Path, keep_below_epoch: int) -> None:
    """Drop rows logged for epochs the restored state has not completed (killed after the row
    was written but before the epoch's backup), and a torn last line (logs written before the
    log was rewritten atomically)."""
    if not path.exists():
        return
    text = path.read_text()
    torn = bool(text) and not text.endswith("\n")
    rows = read_csv_rows(path)
    if torn and rows:
        rows = rows[:-1]
    kept = [r for r in rows if None not in r.values() and int(float(r["epoch"])) < keep_below_epoch]
    if len(kept) == len(rows) and not torn:
        return
    if not rows:
        path.unlink()
        return
    fields = list(rows[0].keys())
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(kept)
    atomic.write_text(path, buffer.getvalue())


def repair_backup(backup_dir: Path) -> None:
    """Make the resume backup readable after a kill: undo an interrupted swap of the backup folder
    (:func:`brainseg_tf.training.backup.repair`); for a legacy ``BackupAndRestore`` backup whose
    metadata file a kill truncated, fall back to the previous generation (Keras restores weights
    from ``.bkp`` on an IO error but not metadata on a JSON error)."""
    from brainseg_tf.training import backup

    backup.repair(backup_dir)
    meta = backup_dir / "training_metadata.json"
    prev_meta = meta.with_name(meta.name + ".bkp")
    weights = backup_dir / "latest.weights.h5"
    prev_weights = weights.with_name(weights.name + ".bkp")
    if not meta.exists():
        return
    try:
        json.loads(meta.read_text())["epoch"]
        return
    except (OSError, ValueError, KeyError):
        pass
    if prev_meta.exists() and prev_weights.exists():
        shutil.copyfile(prev_weights, weights)
        shutil.copyfile(prev_meta, meta)
    else:
        meta.unlink()


def backup_epoch(backup_dir: Path) -> int:
    """Epochs completed according to the resume backup (0 when there is none or it is unreadable)."""
    from brainseg_tf.training import backup

    try:
        state = backup.read_state(backup_dir)
    except ValueError:
        return 0
    return state.epoch if state is not None else 0


#: Run-directory artefacts whose hidden temporaries (``.NAME.*.tmp*``, and ``.NAME.*.old`` for
#: folders, :mod:`brainseg_tf.atomic`) a killed trainer or report writer may leave behind. The
#: backup is not listed: its ``.old`` is the previous backup, which resuming restores.
ARTEFACTS = (
    "best.keras",
    "final.keras",
    "best.json",
    "metrics.json",
    "config.json",
    "split.json",
    "log.csv",
    "brainseg_model.json",
    "report.md",
    "figures",
)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporaries a kill left in ``run_dir``: those of :data:`ARTEFACTS` (files and
    folders), and the ``tmpXXXXXXXX`` scratch file ``model.save`` puts beside its target when the
    weights do not fit in memory (Keras 3 ``saving_lib``). Returns them. Call it only while
    holding the run lock (no other writer can own them)."""
    run_dir = Path(run_dir)
    candidates = [
        p for name in ARTEFACTS for pattern in (f".{name}.*.tmp*", f".{name}.*.old") for p in run_dir.glob(pattern)
    ]
    candidates += [p for p in run_dir.glob("tmp*") if re.fullmatch(r"tmp[a-z0-9_]{8}", p.name)]
    removed = []
    for tmp in candidates:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def event(run_dir: Path | None, **fields: Any) -> None:
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
    print("[brainseg train] " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)
    if run_dir is not None:
        with (run_dir / "events.jsonl").open("a") as f:  # append-only log: a torn last line is skipped on read
            f.write(json.dumps(record, default=str) + "\n")


def history_from_csv(path: Path) -> dict[str, list[float]]:
    rows = read_csv_rows(path)
    out: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            try:
                out.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                out.setdefault(k, []).append(math.nan)
    return out


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / cfg.name


def run_recipe(run_dir: str | Path) -> TrainConfig:
    """The recipe a run directory was trained with (``RUN_DIR/config.json`` without what training
    resolved at run time).

    Raises:
        FileNotFoundError: no ``config.json`` there.
        ValueError: a damaged one, naming the file.
    """
    from brainseg_tf.training.config import as_config

    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (not a run directory)")
    try:
        saved = json.loads(path.read_text())
        return as_config({k: v for k, v in saved.items() if k not in ("inference", "resolved_runtime")})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a run's recipe ({exc})") from None


def prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool) -> tuple[dict[str, Any] | None, Split | None]:
    """Check an existing run dir against the recipe; return the saved config and split."""
    saved_cfg_path, split_path = run_dir / "config.json", run_dir / "split.json"
    if not saved_cfg_path.exists():
        return None, None
    if not resume:
        raise FileExistsError(
            f"run directory {run_dir} already holds a run; re-run with resume (the default) to continue "
            "it, or choose another run directory"
        )
    saved = json.loads(saved_cfg_path.read_text())
    changes = incompatible_changes(saved, cfg.to_dict())
    if changes:
        raise ValueError(
            f"cannot resume {run_dir}: the recipe changed incompatibly since the run started "
            f"({'; '.join(changes)}). Use another run directory for a new experiment."
        )
    split = split_from_dict(json.loads(split_path.read_text()), split_path) if split_path.exists() else None
    return saved, split


class RunLock:
    """An exclusive lock on a run directory (``RUN_DIR/.lock``) while a trainer uses it.

    A second trainer on the same directory fails at once with the holder's pid instead of
    interleaving checkpoints. The lock is an ``fcntl`` lock, released by the OS if the holder is
    killed, so a kill never leaves a stale lock behind.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fh: Any = None

    def __enter__(self) -> RunLock:
        import fcntl
        import os

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise FileExistsError(
                f"run directory {self.path.parent} is in use by a trainer (pid {holder}); "
                "wait for it to finish or use another run directory"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
