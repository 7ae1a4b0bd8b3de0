"""The model card: everything prediction must repeat of training, written once, read everywhere.

Training writes ``RUN_DIR/brainseg_model.json`` and :func:`brainseg_tf.export.export_model` writes
one beside every export; :mod:`brainseg_tf.inference` reads it and nothing else. A card records:

* ``model``/``options``: the registry name and builder options (informational: weights and
  architecture come from the ``.keras`` file);
* ``modalities``: canonical names in input-channel order; ``spatial_dims``: 2 or 3;
* ``scheme``: the label scheme the model learned (:mod:`brainseg_tf.schemes`; default
  ``"brats2021"``, the canonical 0 BG, 1 NCR, 2 ED, 3 ET with regions WT, TC, ET); its classes and
  regions are derived from it, never stored twice;
* ``head``: ``"softmax"`` (the scheme's classes, :attr:`ModelCard.class_names`: 4 for the glioma
  schemes), ``"sigmoid"`` (its regions in channel order, :attr:`ModelCard.region_names`: WT, TC,
  ET for the glioma schemes, 6 for PED 2024) or ``"region"`` (one of its regions, named by
  ``region``); ``logits``: whether the model's output is pre-activation (an export always outputs
  probabilities, so its card says ``false``);
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
* ``label_convention``: the training data's source convention (``"brats"``, ``"msd"``, ...;
  informational since format 4, which names the ``scheme``);
* ``provenance``: recipe, data, split, epochs, package and library versions, time.

Cards of formats 1-3, older run directories (``config.json`` with an ``"inference"`` block) and
version-1 export metadata are read by :func:`migrate`, the one explicit migration (format 3 has no
``scheme``: it is read from ``label_convention``). A card of a newer format is refused, naming its
version and the ones this toolkit reads. The card is input too: every size and count it holds is
checked against the bounds of :data:`BOUNDS` before anything is allocated, and every error names
the key. No field is ever guessed from a model's shapes: a model without a card needs explicit
arguments (:func:`from_arguments`). No TensorFlow is imported here.
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
from brainseg_tf.conventions import HEADS, MODALITIES, PLANES, REGIONS
from brainseg_tf.schemes import DEFAULT_SCHEME, SCHEMES, LabelScheme, get_scheme

__all__ = [
    "CARD_FILE",
    "CARD_VERSION",
    "READABLE_VERSIONS",
    "DEFAULT_SCHEME",
    "BOUNDS",
    "CardError",
    "ModelCard",
    "Preprocessing",
    "Postprocessing",
    "Inference",
    "Provenance",
    "find_card",
    "load_card",
    "migrate",
    "from_arguments",
    "scheme_of_convention",
]

CARD_FILE = "brainseg_model.json"
CARD_VERSION = 4
#: Card formats this version reads: 4 as is; 3 (no ``scheme``: read from ``label_convention``),
#: 2 (also ``roi`` for ``window``, no TC/ET component sizes or selection evidence), 1 and legacy run
#: records through :func:`migrate`.
READABLE_VERSIONS = (1, 2, 3, 4)
#: The scheme of a card that names none (formats 1-3 without a label convention).

WINDOWS = ("patch", "auto")

#: Sane bounds of every size and count a card holds, checked before anything is allocated:
#: ``(low, high)`` inclusive. Sizes per axis are voxels; ``window_voxels`` bounds the product of a
#: window (and ``inference.max_window_voxels``): 2**28 float32 voxels are 1 GiB per channel.
BOUNDS: dict[str, tuple[float, float]] = {
    "size": (1, 4096),  # window, inference.min_window, inference.divisor, preprocessing.resize (per axis)
    "window_voxels": (1, 2**28),
    "margin": (0, 1024),
    "spacing": (0.1, 50.0),  # mm per axis
    "component_voxels": (0, 2**31 - 1),  # postprocessing sizes
    "epochs": (0, 10**7),
    "option_int": (-(2**16), 2**16),  # integers in the builder options (depth, filters, ...)
}

#: Pre-format-4 ``label_convention`` -> the scheme the model learned. ``brats2024_post`` read the
#: resection cavity as background, so such a model knows the 3 GLI labels: ``gli2023``.
_CONVENTION_SCHEMES = {
    "canonical": "brats2021",
    "brats": "brats2021",
    "brats2017": "brats2021",
    "brats2018": "brats2021",
    "brats2019": "brats2021",
    "brats2020": "brats2021",
    "brats2021": "brats2021",
    "brats2023": "gli2023",
    "gli": "gli2023",
    "brats2024": "gli2023",
    "brats2024_post": "gli2023",
    "msd": "msd",
    "msd_task01": "msd",
}


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
    validation data; ``docs/postprocessing.md`` defines each. The rules act on the regions WT, TC
    and ET; a scheme with further labels keeps them through the rules
    (:func:`brainseg_tf.postprocessing.apply` with the scheme: GLI 2024's RC, PED 2024's CC), and
    a card may hold a rule only on a region its scheme has (MEN-RT: none).

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
    scheme: str = DEFAULT_SCHEME
    provenance: Provenance = field(default_factory=Provenance)
    format_version: int = CARD_VERSION

    def __post_init__(self) -> None:
        self.validate()

    # -- derived ---------------------------------------------------------------------------
    @property
    def label_scheme(self) -> LabelScheme:
        """The :class:`~brainseg_tf.schemes.LabelScheme` named by :attr:`scheme`."""
        return get_scheme(self.scheme)

    @property
    def class_names(self) -> list[str]:
        """The scheme's classes in internal order, background first (a softmax head's channels)."""
        return list(self.label_scheme.class_names)

    @property
    def region_names(self) -> list[str]:
        """The scheme's regions in channel order (a sigmoid head's channels)."""
        return list(self.label_scheme.region_names)

    @property
    def outputs(self) -> list[str]:
        """Names of the output channels: the scheme's classes, its regions, or the one region."""
        if self.head == "softmax":
            return self.class_names
        if self.head == "sigmoid":
            return self.region_names
        return [str(self.region)]

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`CardError` naming the field for any inconsistent or out-of-bounds value (and
        normalise sequences to lists, regions to upper case, the scheme to its registry name; a
        section given as a mapping becomes its dataclass)."""
        for name, cls in (*_SECTIONS.items(), ("provenance", Provenance)):
            value = getattr(self, name)
            if not isinstance(value, cls):
                setattr(self, name, _section(name, value))
        self._check_model()
        self.window = self._sizes("window", self.window, voxels=True)
        self._check_preprocessing()
        self._check_inference()
        self._check_postprocessing()
        self._check_provenance()

    @staticmethod
    def _bad(name: str, value: Any, why: str) -> None:
        raise CardError(f"model card field {name}={value!r} {why}")

    @classmethod
    def _bounded(cls, name: str, value: Any, bound: str) -> None:
        """Refuse ``value`` outside :data:`BOUNDS` ``[bound]`` (``window[0]=100000 is outside 1..4096``)."""
        low, high = BOUNDS[bound]
        if not low <= value <= high:
            cls._bad(name, value, f"is outside {low}..{high}")

    def _sizes(self, name: str, value: Any, *, voxels: bool = False) -> list[int] | None:
        """``None``, or one integer per spatial axis within :data:`BOUNDS` (as a list); with
        ``voxels`` their product is bounded too."""
        if value is None:
            return None
        if (
            not isinstance(value, (list, tuple))
            or len(value) != self.spatial_dims
            or not all(is_int(v) and v >= 1 for v in value)
        ):
            self._bad(name, value, f"must be {self.spatial_dims} positive integers")
        for i, v in enumerate(value):
            self._bounded(f"{name}[{i}]", v, "size")
        sizes = [int(v) for v in value]
        if voxels and math.prod(sizes) > BOUNDS["window_voxels"][1]:
            self._bad(name, sizes, f"holds {math.prod(sizes)} voxels, more than {BOUNDS['window_voxels'][1]}")
        return sizes

    def _check_model(self) -> None:
        if not isinstance(self.scheme, str):
            self._bad_scheme()
        try:
            self.scheme = get_scheme(self.scheme).name
        except ValueError:
            self._bad_scheme()
        if not isinstance(self.modalities, (list, tuple)) or not self.modalities:
            self._bad("modalities", self.modalities, "must list the input channels")
        if not all(isinstance(m, str) for m in self.modalities):
            self._bad("modalities", self.modalities, f"must be distinct names from {list(MODALITIES)}")
        self.modalities = list(self.modalities)
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or len(set(self.modalities)) != len(self.modalities):
            self._bad("modalities", self.modalities, f"must be distinct names from {list(MODALITIES)}")
        if not isinstance(self.head, str) or self.head not in HEADS:
            self._bad("head", self.head, f"is unknown; expected one of {list(HEADS)}")
        regions = self.region_names
        if self.head == "region":
            if not isinstance(self.region, str) or self.region.upper() not in regions:
                self._bad(
                    "region", self.region, f"must be one of the {self.scheme!r} scheme's {regions} for a region head"
                )
            self.region = self.region.upper()
        elif self.region is not None:
            self._bad("region", self.region, "is only for head='region'")
        if not is_int(self.spatial_dims) or self.spatial_dims not in (2, 3):
            self._bad("spatial_dims", self.spatial_dims, "must be 2 or 3")
        if not isinstance(self.logits, bool):
            self._bad("logits", self.logits, "must be true or false")
        for key in ("model", "label_convention"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                self._bad(key, getattr(self, key), "must be a string or null")
        if self.options is None:
            self.options = {}
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            self._bad("options", self.options, "must be a JSON object")
        self.options = dict(self.options)
        for key, value in self.options.items():
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if is_int(v):
                    self._bounded(f"options.{key}", v, "option_int")

    def _bad_scheme(self) -> None:
        self._bad("scheme", self.scheme, f"is unknown; expected one of {list(SCHEMES)}")

    def _check_preprocessing(self) -> None:
        pre = self.preprocessing
        for key in ("crop", "normalize", "reorient"):
            if not isinstance(getattr(pre, key), bool):
                self._bad(f"preprocessing.{key}", getattr(pre, key), "must be true or false")
        if not isinstance(pre.plane, str) or pre.plane not in PLANES:
            self._bad("preprocessing.plane", pre.plane, f"must be one of {list(PLANES)}")
        if pre.resize is not None:
            if self.spatial_dims != 2:
                self._bad("preprocessing.resize", pre.resize, "is only for 2D models")
            if (
                not isinstance(pre.resize, (list, tuple))
                or len(pre.resize) != 2
                or not all(is_int(r) and r >= 1 for r in pre.resize)
            ):
                self._bad("preprocessing.resize", pre.resize, "must be two positive integers")
            for i, r in enumerate(pre.resize):
                self._bounded(f"preprocessing.resize[{i}]", r, "size")
            pre.resize = [int(r) for r in pre.resize]
        if not (is_int(pre.margin) and pre.margin >= 0):
            self._bad("preprocessing.margin", pre.margin, "must be a non-negative integer")
        self._bounded("preprocessing.margin", pre.margin, "margin")
        if pre.spacing is not None:
            sp = [pre.spacing] if is_number(pre.spacing) else pre.spacing
            if (
                not isinstance(sp, (list, tuple))
                or len(sp) not in (1, 3)
                or not all(is_number(s) and math.isfinite(s) and s > 0 for s in sp)
            ):
                self._bad("preprocessing.spacing", pre.spacing, "must be one or three positive numbers")
            for i, s in enumerate(sp):
                self._bounded(f"preprocessing.spacing[{i}]", s, "spacing")
            pre.spacing = [float(s) for s in sp]

    def _check_inference(self) -> None:
        inf = self.inference
        if not isinstance(inf.window, str) or inf.window not in WINDOWS:
            self._bad("inference.window", inf.window, f"must be one of {list(WINDOWS)}")
        if inf.window == "auto" and self.spatial_dims != 3:
            self._bad("inference.window", inf.window, "is only for 3D models")
        if not (is_number(inf.overlap) and 0 <= inf.overlap < 1):
            self._bad("inference.overlap", inf.overlap, "must be in [0, 1)")
        inf.overlap = float(inf.overlap)
        if not (is_int(inf.max_window_voxels) and inf.max_window_voxels >= 1):
            self._bad("inference.max_window_voxels", inf.max_window_voxels, "must be a positive integer")
        self._bounded("inference.max_window_voxels", inf.max_window_voxels, "window_voxels")
        inf.min_window = self._sizes("inference.min_window", inf.min_window, voxels=True)
        inf.divisor = self._sizes("inference.divisor", inf.divisor)

    def _check_postprocessing(self) -> None:
        post = self.postprocessing
        for key in ("et_min_voxels", "min_component_voxels", "min_component_voxels_tc", "min_component_voxels_et"):
            v = getattr(post, key)
            if not (is_int(v) and v >= 0):
                self._bad(f"postprocessing.{key}", v, "must be a non-negative integer")
            self._bounded(f"postprocessing.{key}", v, "component_voxels")
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
        regions = self.region_names  # a rule acts on WT, TC or ET: only where the scheme has it
        used = [(f"postprocessing.{k}", getattr(post, k), r) for k, r in _RULE_REGIONS.items() if getattr(post, k)]
        used += [("postprocessing.largest_component", post.largest_component, r) for r in post.largest_component]
        for name, value, region in used:
            if region not in regions:
                self._bad(
                    name,
                    value,
                    f"is a rule on {region}, which the {self.scheme!r} scheme's regions {regions} do not hold "
                    "(set it to 0 / [])",
                )

    def _check_provenance(self) -> None:
        epochs = self.provenance.epochs
        if epochs is not None:
            if not is_int(epochs):
                self._bad("provenance.epochs", epochs, "must be an integer or null")
            self._bounded("provenance.epochs", epochs, "epochs")

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["outputs"] = self.outputs
        return {"format_version": out.pop("format_version"), **out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | os.PathLike | None = None) -> ModelCard:
        """A card from its JSON dict: format 4 as is, older formats through :func:`migrate`.

        A card of a newer format than this toolkit reads is refused, naming its format and the
        ones this version reads.

        Raises:
            CardError: naming ``source`` and the key: unknown keys, a section that is no object,
                values of the wrong type or outside :data:`BOUNDS`.
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
        if version != CARD_VERSION or isinstance(version, bool):
            return migrate(data, source)
        return cls._from_current(data, where)

    @classmethod
    def _from_current(cls, data: Mapping[str, Any], where: str) -> ModelCard:
        """A card from a format-4 dict (``where``: the source prefix of messages)."""
        data = {**data, "format_version": CARD_VERSION}
        known = {f.name for f in dataclasses.fields(cls)} | {"outputs"}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            raise CardError(f"{where}unknown model card key(s) {unknown}")
        kwargs: dict[str, Any] = {}
        try:
            for key, value in data.items():
                if key == "outputs":
                    continue
                if key in _SECTIONS or key == "provenance":
                    value = _section(key, value)
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


def _section(name: str, value: Any) -> Any:
    """A card section (``preprocessing``, ``postprocessing``, ``inference``, ``provenance``) from its
    JSON object; :class:`CardError` naming the section or its unknown keys."""
    cls = Provenance if name == "provenance" else _SECTIONS[name]
    if value is None:
        return cls()
    if not isinstance(value, Mapping):
        raise CardError(f"model card field {name}={value!r} must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(f"{name}.{k}" for k in value if k not in known)
    if unknown:
        raise CardError(f"unknown model card key(s) {unknown}")
    return cls(**dict(value))


def scheme_of_convention(convention: Any, where: str = "") -> str:
    """The scheme a pre-format-4 card's ``label_convention`` implies (``None``: ``brats2021``).

    ``brats``/``canonical`` -> ``brats2021``, ``brats2023`` -> ``gli2023``, ``msd`` -> ``msd``,
    ``brats2024_post`` -> ``gli2023`` (that convention read the resection cavity as background: the
    model learned the 3 GLI labels).

    Raises:
        CardError: a convention no version of this toolkit wrote, naming ``label_convention``.
    """
    if convention is None:
        return DEFAULT_SCHEME
    key = str(convention).lower()
    if key not in _CONVENTION_SCHEMES:
        raise CardError(
            f"{where}model card field label_convention={convention!r} is unknown; expected one of "
            f"{sorted(_CONVENTION_SCHEMES)}"
        )
    return _CONVENTION_SCHEMES[key]


#: The region each postprocessing rule field acts on (``largest_component`` names its own).
_RULE_REGIONS = {
    "et_min_voxels": "ET",
    "min_component_voxels": "WT",
    "min_component_voxels_tc": "TC",
    "min_component_voxels_et": "ET",
}


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
    """The one explicit migration: a current (format 4) card from an older record.

    Reads (a) a run directory's ``config.json`` of versions <= 0.1 (the resolved recipe with an
    ``"inference"`` block), (b) version-1 export metadata (``brainseg_model.json`` with
    ``"format_version": 1``) and (c) cards of formats 2 and 3 (format 2 says ``roi`` for
    ``window`` and has no TC/ET component sizes or evidence: off, none). Only keys those versions
    wrote are read; a missing modalities or head is a :class:`CardError`, never guessed. None of
    them names a scheme: formats 2 and 3 take it from ``label_convention``
    (:func:`scheme_of_convention`), (a) and (b) are ``brats2021`` (:data:`DEFAULT_SCHEME`).
    """
    where = f"{source}: " if source is not None else ""
    if not isinstance(data, Mapping):
        raise CardError(f"{where}a model card must be a JSON object")
    version = data.get("format_version")
    if is_int(version) and version == CARD_VERSION:
        return ModelCard.from_dict(data, source)
    if is_int(version) and version in (2, 3):  # (c) formats 2 and 3: no scheme
        old = dict(data)
        if version == 2 and "roi" in old:
            if "window" in old:
                raise CardError(f"{where}the model card has both 'window' and its old name 'roi'")
            old["window"] = old.pop("roi")
        old.setdefault("scheme", scheme_of_convention(old.get("label_convention"), where))
        return ModelCard._from_current(old, where)
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
