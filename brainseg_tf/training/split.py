"""Train/validation splits of the labelled case ids (``RUN_DIR/split.json``)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainseg_tf.training.config import SplitConfig


def load_split(run_dir: str | os.PathLike) -> Split:
    """The train/validation split saved in ``RUN_DIR/split.json``."""
    path = Path(run_dir) / "split.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no split saved (is {run_dir} a run directory?)")
    return split_from_dict(json.loads(path.read_text()), path)


@dataclass
class Split:
    """Train and validation case ids (``RUN_DIR/split.json``)."""

    train_ids: list[str]
    val_ids: list[str]
    method: str = "none"
    folds: int | None = None
    fold: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_split(case_ids: Sequence[str], config: SplitConfig) -> Split:
    """Split labelled case ids into training and validation.

    k-fold: the ids are sorted, shuffled with ``numpy.random.default_rng(seed)`` and cut into
    ``folds`` near-equal folds; fold ``fold`` validates. Fixed: ``val_ids`` validate, ``train_ids``
    (or every other id) train.

    Raises:
        ValueError: ids not in the dataset, or too few cases for the folds.
    """
    import numpy as np

    ids = sorted(set(case_ids))
    if config.method == "none":
        return Split(train_ids=ids, val_ids=[], method="none")
    if config.method == "fixed":
        missing = sorted(set(config.val_ids) - set(ids))
        if missing:
            raise ValueError(f"split.val_ids={missing!r} not among the dataset's labelled cases")
        train = list(config.train_ids) if config.train_ids is not None else [i for i in ids if i not in config.val_ids]
        missing = sorted(set(train) - set(ids))
        if missing:
            raise ValueError(f"split.train_ids={missing!r} not among the dataset's labelled cases")
        return Split(train_ids=sorted(train), val_ids=sorted(config.val_ids), method="fixed")
    if len(ids) < config.folds:
        raise ValueError(f"split.folds={config.folds!r} exceeds the number of labelled cases ({len(ids)})")
    order = np.random.default_rng(config.seed).permutation(len(ids))
    folds = np.array_split(order, config.folds)
    val = sorted(ids[i] for i in folds[config.fold])
    train = sorted(i for i in ids if i not in set(val))
    return Split(train_ids=train, val_ids=val, method="kfold", folds=config.folds, fold=config.fold, seed=config.seed)


def split_from_dict(data: Any, source: str | os.PathLike | None = None) -> Split:
    """A :class:`Split` from its JSON dict; unknown or missing keys are a ``ValueError`` naming the file."""
    where = f"{source}: " if source is not None else ""
    if not isinstance(data, dict):
        raise ValueError(f"{where}a split must be a JSON object with train_ids and val_ids")
    known = {f.name for f in dataclasses.fields(Split)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}unknown split key(s) {unknown}; expected {sorted(known)}")
    missing = sorted({"train_ids", "val_ids"} - set(data))
    if missing:
        raise ValueError(f"{where}split is missing {missing}")
    for key in ("train_ids", "val_ids"):
        if not isinstance(data[key], list) or not all(isinstance(i, str) and i for i in data[key]):
            raise ValueError(f"{where}{key} must be a list of case ids")
    overlap = sorted(set(data["train_ids"]) & set(data["val_ids"]))
    if overlap:
        raise ValueError(f"{where}case ids {overlap} are in both train_ids and val_ids")
    return Split(**data)
