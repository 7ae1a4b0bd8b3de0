"""The model card: everything prediction must repeat of training, written once, read everywhere.

Training writes ``RUN_DIR/brainseg_model.json`` and :func:`brainseg_tf.export.export_model` writes
one beside every export; :mod:`brainseg_tf.inference` reads it and nothing else. A card records:

* ``model``/``options``: the registry name and builder options (informational: weights and
  architecture come from the ``.keras`` file);
* ``modalities``: canonical names in input-channel order; ``spatial_dims``: 2 or 3;
* ``head``: ``"softmax"`` (4 classes BG, NCR, ED, ET), ``"sigmoid"`` (3 regions WT, TC, ET) or
  ``"region"`` (one region, named by ``region``); ``logits``: whether the model's output is
  pre-activation (an export always outputs probabilities, so its card says ``false``);
* ``window``: the sliding-window size (the training patch); for a 2D model with
  ``preprocessing.resize`` the size each slice is resized to (cards written before the name
  ``window`` say ``roi``, read as ``window``);
* ``preprocessing``: exactly as trained (brain crop, margin, z-score, RAS reorientation,
  resampling spacing, 2D resize and plane);
* ``postprocessing``: ET-to-NCR volume, smallest kept component of WT, TC and ET, regions kept to
  their largest component (chosen on validation by :mod:`brainseg_tf.postprocessing`, with the
  evidence), region threshold;
* ``inference``: how ``predict`` slides its window, as validation ran it: windows of ``window`` or
  planned ones (``"auto"``: the largest windows within a voxel budget), and the overlap;
* ``label_convention``: the training data's source convention (``"brats"``, ``"msd"``, ...);
* ``provenance``: recipe, data, split, epochs, package and library versions, time.

Older run directories (``config.json`` with an ``"inference"`` block) and version-1 export
metadata are read by :func:`migrate`, the one explicit migration. No field is ever guessed from
a model's shapes: a model without a card needs explicit arguments (:func:`from_arguments`).
No TensorFlow is imported here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainseg_tf import atomic
from brainseg_tf.checks import is_int, is_number
from brainseg_tf.conventions import CLASS_NAMES, HEADS, MODALITIES, PLANES, REGIONS

__all__ = [
    "CARD_FILE",
    "CARD_VERSION",
    "READABLE_VERSIONS",
    "ModelCard",
    "Preprocessing",
    "Postprocessing",
    "Inference",
    "Provenance",
    "find_card",
    "load_card",
    "migrate",
    "from_arguments",
]

CARD_FILE = "brainseg_model.json"
CARD_VERSION = 3
#: Card formats this version reads: 3 as is; 2 (``roi`` for ``window``, no TC/ET component sizes or
#: selection evidence) read into 3; 1 and legacy run records through :func:`migrate`.
READABLE_VERSIONS = (1, 2, 3)

WINDOWS = ("patch", "auto")


class CardError(ValueError):
    """A missing, malformed or inconsistent model card (the message names the file)."""


@dataclass
class Preprocessing:
    """How an image was prepared for the network (:func:`brainseg_tf.data.preprocess.preprocess_case`).

    Attributes:
        crop: cropped to the brain bounding box (any modality nonzero).
        margin: voxels kept around the brain box.
        normalize: z-score per modality inside the brain, background 0.
        reorient: reoriented to RAS voxel order.
        spacing: resampled to this voxel size in mm, or ``None``.
        resize: 2D models: each slice resized (bilinear) to this in-plane size, or ``None``.
        plane: 2D models: the slicing plane (``axial`` slices along Z).
    """

    crop: bool = True
    margin: int = 0
    normalize: bool = True
    reorient: bool = False
    spacing: list[float] | None = None
    resize: list[int] | None = None
    plane: str = "axial"

    def case_options(self) -> dict[str, Any]:
        """Keyword arguments of ``preprocess_case``."""
        return {
            "crop": self.crop,
            "margin": self.margin,
            "normalize": self.normalize,
            "reorient": self.reorient,
            "spacing": self.spacing,
        }


@dataclass
class Postprocessing:
    """Label postprocessing applied by ``predict`` (:func:`brainseg_tf.inference.postprocess`).

    The rules are applied in a fixed order (:data:`brainseg_tf.postprocessing.ORDER`): the
    largest component of each region in ``largest_component`` (WT, TC, ET), then small WT
    components, then small ET, then small TC and ET components. :func:`brainseg_tf.postprocessing.select` chooses them on
    validation data; ``docs/postprocessing.md`` defines each.

    Attributes:
        et_min_voxels: enhancing tumour smaller than this (voxels) is relabelled NCR (0: off).
        min_component_voxels: tumour components smaller than this are removed (0: off).
        region_threshold: probability threshold of sigmoid / region heads.
        largest_component: regions (``"WT"``, ``"TC"``, ``"ET"``) reduced to their largest
            connected component (empty: off). Cards written before this field load with it empty.
        min_component_voxels_tc: tumour-core components smaller than this become ED (0: off).
        min_component_voxels_et: ET components smaller than this become NCR (0: off). Cards
            written before these two fields load with them off.
        evidence: what the selection measured (the rule, cases, and per kept rule its mean gain and
            the cases improved / worsened / unchanged); informational, ignored when comparing
            sections and by ``predict``; empty for hand-set rules and older cards.
    """

    et_min_voxels: int = 0
    min_component_voxels: int = 0
    region_threshold: float = 0.5
    largest_component: list[str] = field(default_factory=list)
    min_component_voxels_tc: int = 0
    min_component_voxels_et: int = 0
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class Inference:
    """How ``predict`` slides its window (:func:`brainseg_tf.inference.predict_case`); training
    records what its volume validation used, so that ``predict`` repeats what was measured.

    Attributes:
        window: ``"patch"``: windows of the card's ``window`` (the training patch); ``"auto"``: per case, the
            largest windows of at most ``max_window_voxels`` voxels, no smaller than ``min_window``
            (:func:`brainseg_tf.inference.plan_window`; 3D models only).
        overlap: overlap of neighbouring windows, a fraction of the window, in [0, 1).
        max_window_voxels: the ``"auto"`` window budget (memory grows with it).
        min_window: the smallest ``"auto"`` window per axis; ``None``: the card's ``window``.
        divisor: the model's per-axis input-size divisor (``"auto"`` windows are multiples of
            it), or ``None`` when unknown (then read from the model registry).

    Cards written before this section load with the defaults: patch windows at overlap 0.5.
    """

    window: str = "patch"
    overlap: float = 0.5
    max_window_voxels: int = 1_500_000
    min_window: list[int] | None = None
    divisor: list[int] | None = None


@dataclass
class Provenance:
    """Where the model came from (informational)."""

    recipe: str | None = None
    recipe_file: str | None = None
    data: str | None = None
    split: dict[str, Any] | None = None
    epochs: int | None = None
    checkpoint: str | None = None
    package_version: str | None = None
    keras_version: str | None = None
    tensorflow_version: str | None = None
    created: str | None = None


@dataclass
class ModelCard:
    """A typed, versioned model card (``brainseg_model.json``). See the module docstring.

    ``roi=`` (constructor) and :attr:`roi` are the old name of ``window``, still accepted.
    """

    modalities: list[str]
    head: str
    spatial_dims: int = 3
    region: str | None = None
    logits: bool = False
    window: list[int] | None = None
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    inference: Inference = field(default_factory=Inference)
    label_convention: str | None = None
    provenance: Provenance = field(default_factory=Provenance)
    format_version: int = CARD_VERSION

    def __post_init__(self) -> None:
        self.validate()

    # -- derived ---------------------------------------------------------------------------
    @property
    def outputs(self) -> list[str]:
        """Names of the output channels: classes, regions, or the one region."""
        if self.head == "softmax":
            return list(CLASS_NAMES)
        if self.head == "sigmoid":
            return list(REGIONS)
        return [str(self.region)]

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`CardError` naming the field for any inconsistent value (and normalise
        sequences to lists, regions to upper case)."""
        self._check_model()
        self.window = self._sizes("window", self.window)
        self._check_preprocessing()
        self._check_inference()
        self._check_postprocessing()

    @staticmethod
    def _bad(name: str, value: Any, why: str) -> None:
        raise CardError(f"model card field {name}={value!r} {why}")

    def _sizes(self, name: str, value: Any) -> list[int] | None:
        """``None``, or one positive integer per spatial axis (as a list)."""
        if value is None:
            return None
        if (
            not isinstance(value, (list, tuple))
            or len(value) != self.spatial_dims
            or not all(is_int(v) and v >= 1 for v in value)
        ):
            self._bad(name, value, f"must be {self.spatial_dims} positive integers")
        return [int(v) for v in value]

    def _check_model(self) -> None:
        if not isinstance(self.modalities, (list, tuple)) or not self.modalities:
            self._bad("modalities", self.modalities, "must list the input channels")
        self.modalities = [str(m) for m in self.modalities]
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or len(set(self.modalities)) != len(self.modalities):
            self._bad("modalities", self.modalities, f"must be distinct names from {list(MODALITIES)}")
        if self.head not in HEADS:
            self._bad("head", self.head, f"is unknown; expected one of {list(HEADS)}")
        if self.head == "region":
            if self.region is None or str(self.region).upper() not in REGIONS:
                self._bad("region", self.region, f"must be one of {list(REGIONS)} for a region head")
            self.region = str(self.region).upper()
        elif self.region is not None:
            self._bad("region", self.region, "is only for head='region'")
        if self.spatial_dims not in (2, 3):
            self._bad("spatial_dims", self.spatial_dims, "must be 2 or 3")
        if not isinstance(self.logits, bool):
            self._bad("logits", self.logits, "must be true or false")

    def _check_preprocessing(self) -> None:
        pre = self.preprocessing
        if pre.plane not in PLANES:
            self._bad("preprocessing.plane", pre.plane, f"must be one of {list(PLANES)}")
        if pre.resize is not None:
            if self.spatial_dims != 2:
                self._bad("preprocessing.resize", pre.resize, "is only for 2D models")
            if len(pre.resize) != 2 or not all(is_int(r) and r >= 1 for r in pre.resize):
                self._bad("preprocessing.resize", pre.resize, "must be two positive integers")
            pre.resize = [int(r) for r in pre.resize]
        if not (is_int(pre.margin) and pre.margin >= 0):
            self._bad("preprocessing.margin", pre.margin, "must be a non-negative integer")
        if pre.spacing is not None:
            sp = [pre.spacing] if is_number(pre.spacing) else list(pre.spacing)
            if len(sp) not in (1, 3) or not all(is_number(s) and math.isfinite(s) and s > 0 for s in sp):
                self._bad("preprocessing.spacing", pre.spacing, "must be one or three positive numbers")
            pre.spacing = [float(s) for s in sp]

    def _check_inference(self) -> None:
        inf = self.inference
        if inf.window not in WINDOWS:
            self._bad("inference.window", inf.window, f"must be one of {list(WINDOWS)}")
        if inf.window == "auto" and self.spatial_dims != 3:
            self._bad("inference.window", inf.window, "is only for 3D models")
        if not (is_number(inf.overlap) and 0 <= inf.overlap < 1):
            self._bad("inference.overlap", inf.overlap, "must be in [0, 1)")
        inf.overlap = float(inf.overlap)
        if not (is_int(inf.max_window_voxels) and inf.max_window_voxels >= 1):
            self._bad("inference.max_window_voxels", inf.max_window_voxels, "must be a positive integer")
        inf.min_window = self._sizes("inference.min_window", inf.min_window)
        inf.divisor = self._sizes("inference.divisor", inf.divisor)

    def _check_postprocessing(self) -> None:
        post = self.postprocessing
        for key in ("et_min_voxels", "min_component_voxels", "min_component_voxels_tc", "min_component_voxels_et"):
            v = getattr(post, key)
            if not (is_int(v) and v >= 0):
                self._bad(f"postprocessing.{key}", v, "must be a non-negative integer")
            setattr(post, key, int(v))
        if not (is_number(post.region_threshold) and 0 < post.region_threshold < 1):
            self._bad("postprocessing.region_threshold", post.region_threshold, "must be in (0, 1)")
        regions = post.largest_component
        if (
            isinstance(regions, str)
            or not isinstance(regions, (list, tuple))
            or any(str(r).upper() not in REGIONS for r in regions)
            or len({str(r).upper() for r in regions}) != len(regions)
        ):
            self._bad("postprocessing.largest_component", regions, f"must list distinct regions from {list(REGIONS)}")
        post.largest_component = sorted((str(r).upper() for r in regions), key=REGIONS.index)
        if not isinstance(post.evidence, Mapping):
            self._bad("postprocessing.evidence", post.evidence, "must be a JSON object")
        post.evidence = dict(post.evidence)

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["outputs"] = self.outputs
        return {"format_version": out.pop("format_version"), **out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | os.PathLike | None = None) -> ModelCard:
        """A card from its JSON dict (version 3; version 2 read into 3; older go through :func:`migrate`).

        A version-2 card says ``roi`` for ``window`` and has no TC/ET component sizes or evidence
        (their defaults: off, none). A card of a newer format than this toolkit reads is refused.
        """
        where = f"{source}: " if source is not None else ""
        if not isinstance(data, Mapping):
            raise CardError(f"{where}a model card must be a JSON object")
        version = data.get("format_version")
        if is_int(version) and version > CARD_VERSION:
            raise CardError(
                f"{where}model card format {version} was written by a newer brainseg_tf; this version "
                f"({_package_version()}) reads formats {', '.join(map(str, READABLE_VERSIONS))}: upgrade brainseg_tf"
            )
        if version not in (2, CARD_VERSION):
            return migrate(data, source)
        data = dict(data)
        if version == 2 and "roi" in data:
            if "window" in data:
                raise CardError(f"{where}the model card has both 'window' and its old name 'roi'")
            data["window"] = data.pop("roi")
        data["format_version"] = CARD_VERSION
        known = {f.name for f in dataclasses.fields(cls)} | {"outputs"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CardError(f"{where}unknown model card key(s) {unknown}")
        kwargs: dict[str, Any] = {}
        try:
            for key, value in data.items():
                if key == "outputs":
                    continue
                if key in _SECTIONS or key == "provenance":
                    value = (Provenance if key == "provenance" else _SECTIONS[key])(**dict(value or {}))
                kwargs[key] = value
            return cls(**kwargs)
        except CardError as exc:
            raise CardError(f"{where}{exc}") from None
        except TypeError as exc:
            raise CardError(f"{where}malformed model card: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str | os.PathLike | None = None) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CardError(f"{source or 'model card'}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the card atomically (``path`` a file, or a folder to hold ``brainseg_model.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILE
        return atomic.write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelCard:
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no model card")
        return cls.from_json(path.read_text(), source=path)

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with ``changes``, checked once by :meth:`validate`.

        Keys are card fields (``head=``, ``postprocessing=``, ...) or the fields of its
        preprocessing, postprocessing and inference sections by their own names
        (``et_min_voxels=``, ``overlap=``, ``margin=``, ...); a section given as a mapping changes
        only the keys it names. ``window=`` takes the sliding window as ``predict`` does: sizes set
        the card's ``window``, ``"patch"``/``"auto"`` its ``inference.window``; ``roi=`` is its old name.

        Raises:
            CardError: a key that is no card setting, or a value the card's rules refuse.
        """
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            key = "window" if key == "roi" else key
            if key == "window" and isinstance(value, str):
                sections.setdefault("inference", {})["window"] = value
            elif key in _SECTIONS and isinstance(value, Mapping):
                sections.setdefault(key, {}).update(value)
            elif key in _CARD_FIELDS:
                top[key] = list(value) if isinstance(value, tuple) else value
            elif key in _SECTION_OF:
                sections.setdefault(_SECTION_OF[key], {})[key] = list(value) if isinstance(value, tuple) else value
            else:
                raise CardError(f"{key}= is not a model card setting; expected one of {sorted(_SETTINGS)}")
        for name, values in sections.items():
            top[name] = dataclasses.replace(top.get(name, getattr(self, name)), **values)
        return dataclasses.replace(self, **top)


def _init_with_roi(init: Any) -> Any:
    """The dataclass ``__init__`` also taking ``roi=``, the old name of ``window=``."""

    @functools.wraps(init)
    def __init__(self: ModelCard, *args: Any, roi: Any = None, **kwargs: Any) -> None:
        if roi is not None:
            if kwargs.get("window") is not None:
                raise CardError(
                    f"window={kwargs['window']!r} and roi={roi!r}: give window= only (roi= is its old name)"
                )
            kwargs["window"] = roi
        init(self, *args, **kwargs)

    return __init__


ModelCard.__init__ = _init_with_roi(ModelCard.__init__)  # type: ignore[method-assign]
ModelCard.roi = property(lambda self: self.window, doc="The old name of :attr:`ModelCard.window`.")  # type: ignore[attr-defined]

_SECTIONS: dict[str, type] = {"preprocessing": Preprocessing, "postprocessing": Postprocessing, "inference": Inference}
_CARD_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelCard))
#: Section field name -> its section (``window`` is the card's own field; ``inference.window`` is set by name).
_SECTION_OF = {f.name: name for name, cls in _SECTIONS.items() for f in dataclasses.fields(cls) if f.name != "window"}
_SETTINGS = _CARD_FIELDS | set(_SECTION_OF) | {"roi"}


def provenance(**fields: Any) -> Provenance:
    """A :class:`Provenance` with the package and library versions and the time filled in."""
    from brainseg_tf import __version__

    versions: dict[str, Any] = {"package_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        import keras

        versions["keras_version"] = keras.__version__
    except ImportError:
        pass
    try:
        import tensorflow as tf

        versions["tensorflow_version"] = tf.__version__
    except ImportError:
        pass
    return Provenance(**{**versions, **fields})


# ----------------------------------------------------------------------------- migration
def _legacy_head(block: Mapping[str, Any]) -> tuple[str, str | None]:
    head = block.get("head")
    if head == "sigmoid" and int(block.get("out_channels") or 3) == 1:
        region = block.get("region")
        return "region", None if region is None else str(region).upper()
    return str(head), None


def _legacy_postprocessing(post: Mapping[str, Any]) -> Postprocessing:
    """The ``postprocess`` section both legacy records wrote."""
    return Postprocessing(
        et_min_voxels=int(post.get("et_min_voxels", 0)),
        min_component_voxels=int(post.get("min_component_voxels", 0)),
        region_threshold=float(post.get("region_threshold", 0.5)),
    )


def _package_version() -> str:
    from brainseg_tf import __version__

    return __version__


def migrate(data: Mapping[str, Any], source: str | os.PathLike | None = None) -> ModelCard:
    """The one explicit migration: a current card from an older record.

    Reads (a) a run directory's ``config.json`` of versions <= 0.1 (the resolved recipe with an
    ``"inference"`` block) and (b) version-1 export metadata (``brainseg_model.json`` with
    ``"format_version": 1``). Only keys those versions wrote are read; a missing modalities or
    head is a :class:`CardError`, never guessed.
    """
    where = f"{source}: " if source is not None else ""
    if not isinstance(data, Mapping):
        raise CardError(f"{where}a model card must be a JSON object")
    if "inference" in data and isinstance(data["inference"], Mapping):  # (a) legacy run config
        block = data["inference"]
        head, region = _legacy_head(block)
        pre = dict(block.get("preprocessing") or {})
        recipe_pre = dict(((data.get("pipeline") or {}).get("options") or {}).get("preprocess") or {})
        pipeline = data.get("pipeline") or {}
        options = pipeline.get("options") or {}
        dims = int(block.get("spatial_dims") or 3)
        resize = None
        crop = bool(recipe_pre.get("crop", True))
        if pipeline.get("kind") == "slice":
            resize = [int(s) for s in block.get("patch_size") or pipeline.get("patch_size")]
            crop = bool(options.get("crop", True))
        post = dict(block.get("postprocess") or {})
        fields = dict(
            modalities=block.get("modalities"),
            head=head,
            region=region,
            spatial_dims=dims,
            logits=bool(block.get("logits", False)),
            window=block.get("roi") or block.get("patch_size"),
            model=(block.get("model") or {}).get("name"),
            options=dict((block.get("model") or {}).get("options") or {}),
            preprocessing=Preprocessing(
                crop=crop,
                margin=int(pre.get("margin", recipe_pre.get("margin", 0))),
                normalize=bool(recipe_pre.get("normalize", True)),
                reorient=bool(pre.get("reorient", recipe_pre.get("reorient", False))),
                spacing=pre.get("spacing", recipe_pre.get("spacing")),
                resize=resize,
            ),
            postprocessing=_legacy_postprocessing(post),
            provenance=Provenance(
                recipe=data.get("name"),
                data=(data.get("data") or {}).get("root"),
                epochs=(data.get("training") or {}).get("epochs"),
                package_version="0.1.0 (migrated)",
            ),
        )
    elif data.get("format_version") == 1:  # (b) version-1 export metadata
        pre = dict(data.get("preprocessing") or {})
        post = dict(data.get("postprocess") or {})
        head = data.get("head")
        fields = dict(
            modalities=data.get("modalities"),
            head=head,
            spatial_dims=int(data.get("spatial_dims") or 3),
            # Version 1 exported the Keras output unchanged and did not record logits: only
            # probability models can be migrated faithfully, which is what v1 assumed.
            logits=False,
            window=data.get("roi"),
            preprocessing=Preprocessing(
                crop=bool(pre.get("crop", True)),
                margin=int(pre.get("margin", 0)),
                normalize=bool(pre.get("normalize", True)),
                reorient=bool(pre.get("reorient", False)),
                spacing=pre.get("spacing"),
            ),
            postprocessing=_legacy_postprocessing(post),
            provenance=Provenance(package_version=str(data.get("brainseg_tf_version")) + " (migrated)"),
        )
    else:
        raise CardError(
            f"{where}not a model card (format_version {data.get('format_version')!r}; this version reads "
            f"{', '.join(map(str, READABLE_VERSIONS))} and legacy run records with an 'inference' block)"
        )
    for key in ("modalities", "head"):
        if fields.get(key) in (None, "None"):
            raise CardError(f"{where}the legacy record has no {key!r}; pass it explicitly")
    try:
        return ModelCard(**fields)
    except CardError as exc:
        raise CardError(f"{where}{exc}") from None


def find_card(folder: str | os.PathLike) -> ModelCard | None:
    """The card of a run or export folder (``brainseg_model.json``, else a legacy ``config.json``)."""
    folder = Path(folder)
    card_path = folder / CARD_FILE
    if card_path.is_file():
        return ModelCard.load(card_path)
    legacy = folder / "config.json"
    if legacy.is_file():
        try:
            data = json.loads(legacy.read_text())
        except json.JSONDecodeError as exc:
            raise CardError(f"{legacy}: not valid JSON ({exc})") from None
        if isinstance(data, Mapping) and "inference" in data:
            return migrate(data, legacy)
    return None


def load_card(folder: str | os.PathLike) -> ModelCard:
    """Like :func:`find_card`, but a folder without a card is a :class:`CardError`."""
    card = find_card(folder)
    if card is None:
        raise CardError(f"{folder}: no model card ({CARD_FILE}); pass modalities= and head= explicitly")
    return card


def from_arguments(
    *,
    modalities: Any = None,
    head: Any = None,
    region: Any = None,
    logits: Any = None,
    spatial_dims: int,
    window: Any = None,
    roi: Any = None,
    **extra: Any,
) -> ModelCard:
    """A card for a model that has none, from explicit arguments (``modalities`` and ``head`` required;
    ``roi=`` is the old name of ``window=``)."""
    missing = [k for k, v in (("modalities", modalities), ("head", head)) if v is None]
    if missing:
        raise CardError(
            f"the model has no model card ({CARD_FILE}) and {missing} were not given; "
            f"pass them explicitly (e.g. modalities=['flair', 't1', 't1ce', 't2'], head='sigmoid')"
        )
    if logits is None:
        raise CardError(
            "the model has no model card and its last layer does not show whether it returns "
            "logits; pass logits=True or logits=False"
        )
    pre = extra.pop("preprocessing", None)
    post = extra.pop("postprocessing", None)
    return ModelCard(
        modalities=list(modalities),
        head=str(head),
        region=region,
        logits=bool(logits),
        spatial_dims=int(spatial_dims),
        window=window,
        roi=roi,
        preprocessing=pre if isinstance(pre, Preprocessing) else Preprocessing(**dict(pre or {})),
        postprocessing=post if isinstance(post, Postprocessing) else Postprocessing(**dict(post or {})),
        **extra,
    )
