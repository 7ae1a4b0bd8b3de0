"""A predictor: a batch function returning probabilities, and the model card that says how to use it.

Everything prediction repeats of training (modalities, head, window, preprocessing,
postprocessing, window plan) is read from the card (:mod:`brainseg_tf.card`); settings given as
arguments replace the card's through :meth:`brainseg_tf.card.ModelCard.replace`, which checks
the result once. A model without a card needs explicit ``modalities=`` and ``head=``: nothing is
guessed from its shapes. TensorFlow is imported only by :meth:`Predictor.from_keras`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from brainseg_tf.card import CardError, Inference, ModelCard, from_arguments
from brainseg_tf.conventions import MODALITIES
from brainseg_tf.inference.window import BatchPredictor, as_numpy, check_window, window_alias
from brainseg_tf.schemes import LabelScheme


class Predictor:
    """A batch predictor plus its model card.

    ``Predictor(fn)`` is a bare callable taking the 4 canonical channels with a softmax head in
    3D; keyword settings (``modalities=``, ``head=``, ``region=``, ``window=``, ``spatial_dims=``,
    ``et_min_voxels=``, ``overlap=``, ... -- any :meth:`~brainseg_tf.card.ModelCard.replace` key;
    ``roi=`` is the old name of ``window=``) change the card (``card=`` or that default) once.

    Attributes:
        fn: callable mapping float32 ``(B, *window, C)`` to **probabilities** ``(B, *window, K)``
            (a model returning logits is wrapped so that ``fn`` applies the activation).
        card: the model card: modalities in input-channel order, label scheme, head
            (``"softmax"``: K = the scheme's classes, 4 for the glioma schemes; ``"sigmoid"``: K =
            its regions, 3 (WT, TC, ET) for the glioma schemes; ``"region"``: K = 1), default
            window, preprocessing, postprocessing and window plan.
        model: the underlying Keras model, loaded SavedModel or ONNX session (kept alive), if any.
        source: where it was loaded from.

    Raises:
        brainseg_tf.card.CardError: a setting that is no card field, or a card the rules refuse.
    """

    def __init__(
        self,
        fn: BatchPredictor,
        card: ModelCard | Mapping[str, Any] | None = None,
        *,
        model: Any = None,
        source: str | None = None,
        **settings: Any,
    ):
        if isinstance(card, Mapping):
            card = ModelCard.from_dict(card)
        elif isinstance(card, (list, tuple)) and all(isinstance(m, str) for m in card):
            settings = {"modalities": list(card), **settings}  # the old positional `modalities`
            card = None
        elif card is not None and not isinstance(card, ModelCard):
            raise CardError(
                f"card must be a ModelCard, its dict or None (modalities go in modalities=), got {type(card).__name__}"
            )
        base = card if card is not None else ModelCard(modalities=list(MODALITIES), head="softmax")
        self.fn, self.model, self.source = fn, model, source
        self.card = with_settings(base, settings)

    @classmethod
    def from_card(cls, fn: BatchPredictor, card: ModelCard, **kwargs: Any) -> Predictor:
        """A predictor for ``card`` (``fn`` must already return probabilities)."""
        return cls(fn, card, **kwargs)

    @classmethod
    def from_keras(cls, model: Any, card: ModelCard | Mapping[str, Any] | None = None, **overrides: Any) -> Predictor:
        """Wrap a Keras model with its card (a :class:`ModelCard`, its dict, or explicit ``overrides``).

        Without a card, ``modalities`` and ``head`` (and ``region`` for a region head) must be
        given; ``logits`` is read from the model's last layer when not given, the window from a
        fixed input size.

        Raises:
            brainseg_tf.card.CardError: no card and missing arguments.
        """
        import tensorflow as tf

        card = resolve_card(card, overrides, _keras_facts(model))

        @tf.function(reduce_retracing=True)
        def forward(x):
            out = model(x, training=False)
            if isinstance(out, (list, tuple)):  # deep supervision: the full-resolution output first
                out = out[0]
            return tf.cast(out, tf.float32)

        fn = with_activation(lambda b: forward(tf.convert_to_tensor(b, dtype=tf.float32)), card)
        return cls(fn, card, model=model)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return as_numpy(self.fn(batch))

    # Read-only views of the card, under the names the predict functions take.
    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.card.modalities)

    @property
    def head(self) -> str:
        return self.card.head

    @property
    def region(self) -> str | None:
        return self.card.region

    @property
    def scheme(self) -> str:
        """The name of the label scheme the model learned (the card's)."""
        return self.card.scheme

    @property
    def label_scheme(self) -> LabelScheme:
        return self.card.label_scheme

    @property
    def spatial_dims(self) -> int:
        return self.card.spatial_dims

    @property
    def window(self) -> tuple[int, ...] | None:
        """The card's window size (the training patch), or ``None`` (then 128 per axis)."""
        return None if self.card.window is None else tuple(self.card.window)

    @property
    def roi(self) -> tuple[int, ...] | None:
        """The old name of :attr:`window`."""
        return self.window

    @property
    def inference(self) -> Inference:
        return self.card.inference

    @property
    def et_min_voxels(self) -> int:
        return self.card.postprocessing.et_min_voxels

    @property
    def min_component_voxels(self) -> int:
        return self.card.postprocessing.min_component_voxels

    @property
    def largest_component(self) -> tuple[str, ...]:
        return tuple(self.card.postprocessing.largest_component)

    @property
    def min_component_voxels_tc(self) -> int:
        return self.card.postprocessing.min_component_voxels_tc

    @property
    def min_component_voxels_et(self) -> int:
        return self.card.postprocessing.min_component_voxels_et

    @property
    def threshold(self) -> float:
        """The region threshold of sigmoid / region heads."""
        return self.card.postprocessing.region_threshold

    @property
    def num_outputs(self) -> int:
        return self.card.num_outputs

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Keyword arguments of :func:`brainseg_tf.data.preprocess.preprocess_case` from the card."""
        return self.card.preprocessing.case_options()

    @property
    def resize(self) -> tuple[int, int] | None:
        """2D models: the in-plane size slices are resized to, or ``None``."""
        resize = self.card.preprocessing.resize
        return None if resize is None else tuple(resize)

    @property
    def plane(self) -> str:
        """2D models: the slicing plane."""
        return self.card.preprocessing.plane

    @property
    def metadata(self) -> dict[str, Any]:
        """The model card as a dict."""
        return self.card.to_dict()

    def to_card(self) -> ModelCard:
        """The predictor's card (what it holds; kept for code written before it held one)."""
        return self.card


def with_settings(card: ModelCard, settings: Mapping[str, Any]) -> ModelCard:
    """``card`` with ``settings`` (``None`` values ignored); a window size of one entry applies to every axis."""
    settings = {k: v for k, v in settings.items() if v is not None}
    window = window_alias(settings.pop("window", None), settings.pop("roi", None))
    if window is not None and not isinstance(window, str):
        window = list(check_window("window", window, settings.get("spatial_dims", card.spatial_dims)))
    if window is not None:
        settings["window"] = window
    return card.replace(**settings) if settings else card


def with_activation(fn: BatchPredictor, card: ModelCard) -> BatchPredictor:
    """``fn`` returning probabilities: the card's activation applied when the model returns logits."""
    if not card.logits:
        return lambda batch: as_numpy(fn(batch))
    return lambda batch: _activate(as_numpy(fn(batch)), card.head)


def _activate(scores: np.ndarray, head: str) -> np.ndarray:
    if head in ("sigmoid", "region"):
        return (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _keras_facts(model: Any) -> dict[str, Any]:
    """What a Keras model shows about itself: spatial dims, a fixed window, output channels and
    whether it ends in logits."""
    shape = tuple(model.inputs[0].shape)
    spatial = shape[1:-1]
    facts: dict[str, Any] = {"spatial_dims": len(spatial)}
    outputs = getattr(model, "outputs", None) or []
    if outputs and isinstance(outputs[0].shape[-1], int):  # deep supervision: the full-resolution output first
        facts["out_channels"] = int(outputs[0].shape[-1])
    if spatial and all(isinstance(s, int) for s in spatial):
        facts["window"] = list(spatial)
    last = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if activation in ("softmax", "sigmoid"):
        facts["logits"] = False
    elif activation == "linear":
        facts["logits"] = True
    return facts


_IDENTITY = ("modalities", "head", "region", "logits")


def resolve_card(
    card: ModelCard | Mapping[str, Any] | None, overrides: Mapping[str, Any], facts: Mapping[str, Any]
) -> ModelCard:
    """The card to use: the given one (or its dict) with ``overrides``, else one from arguments.

    Args:
        card: the model's card, its dict, or ``None`` (then ``overrides`` must name the model).
        overrides: card settings (``None`` values ignored).
        facts: what the model shows (``spatial_dims``; ``out_channels`` where known; for a Keras
            model its fixed window and logits).

    Raises:
        brainseg_tf.card.CardError: no card and missing arguments, a card of other spatial dims, or
            a head whose channel count the card's scheme does not give (sigmoid: its regions,
            softmax: its classes).
    """
    facts = dict(facts)
    out_channels = facts.pop("out_channels", None)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(card, Mapping):
        card = ModelCard.from_dict(card)
    if card is None:
        card = from_arguments(**{**facts, **{k: overrides.pop(k) for k in _IDENTITY if k in overrides}})
    card = with_settings(card, overrides)
    if "spatial_dims" in facts and facts["spatial_dims"] != card.spatial_dims:
        raise CardError(
            f"the model card says spatial_dims={card.spatial_dims}; the model takes {facts['spatial_dims']}D input"
        )
    if out_channels is not None and out_channels != card.num_outputs:
        raise CardError(
            f"the model outputs {out_channels} channels; the model card's {card.head} head of the "
            f"{card.scheme!r} scheme has {card.num_outputs} ({', '.join(card.outputs)}): the card does not "
            "belong to this model, or names the wrong scheme= / head="
        )
    return card


__all__ = ["Predictor", "resolve_card", "with_activation", "with_settings"]
