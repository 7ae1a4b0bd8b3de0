"""Several predictors combined into one prediction: folds, architectures, one model per region."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_tf.inference.loading import load_predictor
from brainseg_tf.inference.predictor import Predictor
from brainseg_tf.schemes import LabelScheme, get_scheme


class Ensemble:
    """Several predictors combined into one prediction (folds, architectures, one model per region).

    * Members with the same head (``softmax``, ``sigmoid``, or ``region`` of one region) are
      averaged: the mean of their probabilities (folds, different architectures).
    * ``region`` members of different regions are stacked into the sigmoid regions of their
      scheme (``(WT, TC, ET)`` for the glioma schemes; members of the same region averaged; a
      region no member predicts is empty), which the scheme's decoding turns into labels: ZNet's
      one model per region.

    Each member reads the case with its own modalities and preprocessing (its card); the
    probabilities are combined on the native grid. Postprocessing defaults are the first member's.
    Every member must have learned the same label scheme (the glioma schemes, whose internal
    labels are the canonical ones, count as one).
    """

    def __init__(self, members: Sequence[Predictor | str | Path]):
        self.members = [m if isinstance(m, Predictor) else load_predictor(m) for m in members]
        if not self.members:
            raise ValueError("an ensemble needs at least one model")
        heads = {m.head for m in self.members}
        if len(heads) > 1:
            raise ValueError(
                f"models with heads {sorted(heads)} cannot be combined; use models of one head "
                "(softmax, sigmoid) or single-region models"
            )
        self.head = heads.pop()
        first = self.members[0]
        self.label_scheme: LabelScheme = first.label_scheme
        self.scheme = first.scheme
        for m in self.members[1:]:
            other = m.label_scheme
            if other.name != self.scheme and not (other.is_canonical and self.label_scheme.is_canonical):
                raise ValueError(
                    f"models of label schemes {self.scheme!r} and {other.name!r} cannot be combined: "
                    "their labels and regions differ"
                )
        names = self.label_scheme.region_names
        regions = sorted({m.region for m in self.members if m.region}, key=names.index)
        if self.head == "region" and len(regions) > 1:
            self.head, self.region = "sigmoid", None
        else:
            self.region = regions[0] if regions else None
        self.et_min_voxels, self.min_component_voxels = first.et_min_voxels, first.min_component_voxels
        self.threshold = first.threshold
        self.largest_component = first.largest_component
        self.min_component_voxels_tc = first.min_component_voxels_tc
        self.min_component_voxels_et = first.min_component_voxels_et
        self.stacks_regions = first.head == "region" and self.head == "sigmoid"

    @property
    def num_outputs(self) -> int:
        scheme = get_scheme(self.scheme)
        return {"softmax": scheme.n_classes, "sigmoid": len(scheme.regions), "region": 1}[self.head]

    def combine(self, member_probabilities: Sequence[np.ndarray]) -> np.ndarray:
        """Combine native-grid member probabilities ``(X, Y, Z, K)`` in member order."""
        if not self.stacks_regions:
            acc = np.zeros(member_probabilities[0].shape, np.float64)
            for p in member_probabilities:
                acc += p
            return (acc / len(member_probabilities)).astype(np.float32)
        shape = member_probabilities[0].shape[:-1]
        names = self.label_scheme.region_names
        out = np.zeros(shape + (len(names),), np.float32)
        for r, region in enumerate(names):
            probs = [p[..., 0] for m, p in zip(self.members, member_probabilities) if m.region == region]
            if probs:
                out[..., r] = np.mean(probs, axis=0)
        return out


def as_predictor(model: Any) -> Predictor | Ensemble:
    """``model`` as a :class:`Predictor` or :class:`Ensemble`: a path is loaded, a list of several
    is an ensemble, a Keras model or a batch callable is wrapped."""
    if isinstance(model, (Predictor, Ensemble)):
        return model
    if isinstance(model, (str, Path)):
        return load_predictor(model)
    if isinstance(model, (list, tuple)):
        return Ensemble(model) if len(model) > 1 else as_predictor(model[0])
    if hasattr(model, "inputs") and hasattr(model, "outputs"):
        return Predictor.from_keras(model)
    if callable(model):
        return Predictor(fn=model)
    raise TypeError(f"model={model!r} is not a Predictor, a path, a Keras model or a callable")


__all__ = ["Ensemble", "as_predictor"]
