"""The model registry: every builder with the facts training and inference need about it.

Training and inference never inspect a builder or branch on a model name: they ask the
:class:`ModelSpec` of the model, whose functions take the *resolved* options (the builder's
defaults updated with the recipe's ``model.options``, see :meth:`ModelSpec.resolve`). The head's
channels follow the label scheme (:mod:`brainseg_tf.schemes`) where ``out_channels`` is not stated:
a sigmoid head has one channel per region of the scheme, a softmax head one per class.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras

from brainseg_tf.conventions import MODALITIES
from brainseg_tf.schemes import DEFAULT_SCHEME, LabelScheme, get_scheme

__all__ = ["ModelSpec", "register", "get_spec", "available", "build", "SPECS"]

Options = Mapping[str, Any]
Scheme = str | LabelScheme | None
#: The label scheme of a model that states none: canonical 4 classes, 3 regions (WT, TC, ET).


def _pool_divisor(opts: Options) -> tuple[int, ...]:
    return (2 ** int(opts["depth"]),) * int(opts["spatial_dims"])


def _default_head(opts: Options, scheme: Scheme = None) -> str:
    """``softmax``, ``sigmoid`` (the scheme's regions) or ``region`` (a single sigmoid channel)."""
    if opts.get("head", "softmax") == "sigmoid" and _out_channels(opts, scheme) == 1:
        return "region"
    return str(opts.get("head", "softmax"))


def _out_channels(opts: Options, scheme: Scheme = None) -> int:
    """The stated ``out_channels``, else the scheme's classes (softmax) or regions (sigmoid): 4 or 3 by default."""
    n = opts.get("out_channels")
    if n is None:
        s = get_scheme(DEFAULT_SCHEME if scheme is None else scheme)
        return s.n_classes if opts.get("head", "softmax") == "softmax" else len(s.regions)
    return int(n)


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model declares.

    Attributes:
        name: registry name.
        builder: the plain function returning a ``keras.Model``.
        divisor: resolved options -> per-axis divisor of the spatial input size (the total stride).
        fixed_size: resolved options -> per-axis size the model requires (``None`` where free).
        spatial_dims: resolved options -> 2 or 3.
        default_modalities: the input channels the faithful default expects, in order.
        description: one line for listings.
    """

    name: str
    builder: Callable[..., keras.Model]
    divisor: Callable[[Options], tuple[int, ...]] = _pool_divisor
    fixed_size: Callable[[Options], tuple[int | None, ...]] = field(
        default=lambda opts: (None,) * int(opts["spatial_dims"])
    )
    spatial_dims: Callable[[Options], int] = field(default=lambda opts: int(opts["spatial_dims"]))
    default_modalities: tuple[str, ...] = MODALITIES
    description: str = ""

    # -- options --------------------------------------------------------------------------
    @functools.cached_property
    def defaults(self) -> dict[str, Any]:
        """The builder's keyword arguments and their defaults (the faithful configuration; read once)."""
        return {
            name: p.default
            for name, p in inspect.signature(self.builder).parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    def check_options(self, options: Options) -> None:
        """Raise ``ValueError`` naming unknown option keys."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"config has unknown argument(s) {unknown} for {self.name!r}; accepted: {sorted(self.defaults)}"
            )

    def resolve(self, options: Options | None = None) -> dict[str, Any]:
        """The builder's defaults updated with ``options`` (unknown keys are a ``ValueError``)."""
        options = dict(options or {})
        self.check_options(options)
        return {**self.defaults, **options}

    # -- facts ----------------------------------------------------------------------------
    def head(self, options: Options | None = None, scheme: Scheme = None) -> str:
        """``"softmax"`` (the scheme's classes; 4 by default), ``"sigmoid"`` (its regions; WT, TC, ET by
        default) or ``"region"`` (1 region)."""
        return _default_head(self.resolve(options), scheme)

    def out_channels(self, options: Options | None = None, scheme: Scheme = None) -> int:
        """Output channels of the full-resolution head (unstated: from ``scheme``, default ``brats2021``)."""
        return _out_channels(self.resolve(options), scheme)

    def logits(self, options: Options | None = None) -> bool:
        """Whether the model's last layer returns pre-activation scores."""
        return bool(self.resolve(options).get("logits", False))

    def deep_supervision(self, options: Options | None = None) -> bool:
        """Whether the model has extra lower-resolution outputs."""
        return bool(self.resolve(options).get("deep_supervision", False))

    def dims(self, options: Options | None = None) -> int:
        """Spatial dimensionality (2 or 3)."""
        return self.spatial_dims(self.resolve(options))

    def size_divisor(self, options: Options | None = None) -> tuple[int, ...]:
        """Per-axis divisor of a valid input size."""
        return tuple(int(d) for d in self.divisor(self.resolve(options)))

    def required_size(self, options: Options | None = None) -> tuple[int | None, ...]:
        """Per-axis size the model requires, ``None`` where any multiple of the divisor works."""
        return tuple(self.fixed_size(self.resolve(options)))

    def fit_size(self, size: tuple[int, ...], options: Options | None = None) -> tuple[int, ...]:
        """The smallest valid input size >= ``size`` per axis (the fixed size where there is one)."""
        divs, fixed = self.size_divisor(options), self.required_size(options)
        return tuple(f if f is not None else int(math.ceil(s / d) * d) for s, d, f in zip(size, divs, fixed))


SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry (a name may be registered once)."""
    if spec.name in SPECS:
        raise ValueError(f"model {spec.name!r} is already registered")
    SPECS[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``; ``ValueError`` listing the names otherwise."""
    if name not in SPECS:
        raise ValueError(f"name must be one of {available()}, got {name!r}")
    return SPECS[name]


def available() -> list[str]:
    """Registry names accepted by :func:`build`, sorted."""
    return sorted(SPECS)


def build(name: str, **config: Any) -> keras.Model:
    """Build the model registered as ``name`` with keyword ``config`` passed to its builder.

    Raises:
        ValueError: for an unknown ``name`` or an invalid configuration (the argument is named).
    """
    spec = get_spec(name)
    spec.check_options(config)
    return spec.builder(**config)
