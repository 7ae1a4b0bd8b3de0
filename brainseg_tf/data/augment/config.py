"""Augmentation settings: :class:`AugmentConfig`, its presets, validation and JSON form.

Defaults follow nnU-Net v2 (``nnUNetTrainer.get_training_transforms``; Isensee et al., Nature
Methods 2021) except where the attribute docs say otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from brainseg_tf.checks import check_bool, check_int, check_int_sequence, check_number, is_number
from brainseg_tf.data.augment.core import Pair

__all__ = ["AugmentConfig"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of every augmentation; defaults close to nnU-Net v2.

    All ``*_prob`` fields are per-example probabilities in [0, 1]; ranges are ``(low, high)``
    sampled uniformly unless stated. "BG" marks nnU-Net's ``BGContrast`` sampling: with
    probability 1/2 a value below 1 from ``(low, 1)``, else above 1 from ``(1, high)``.

    Attributes:
        flip_prob: probability of mirroring, drawn independently for each axis in
            ``flip_axes`` (nnU-Net ``MirrorTransform``: every axis, 0.5).
        flip_axes: spatial axes that may be mirrored; axes >= ``spatial_dims`` are ignored.
        rot90_prob: probability of an in-plane rotation by k*90 deg, k uniform in {1, 2, 3}, in
            the axial X-Y plane (axes 0, 1). When X != Y only k = 2 (180 deg) is used so the
            shape is kept. Default 0: not part of nnU-Net's defaults (it would swap the
            left-right and anterior-posterior anatomy).
        rotation_prob: probability of a small-angle rotation (nnU-Net ``p_rotation`` 0.2).
        rotation_max_deg: angles uniform in [-max, max] about every axis (nnU-Net 3D: 30 deg;
            in 2D the single in-plane angle uses the same range; nnU-Net 2D uses 180).
        scaling_prob: probability of isotropic zoom (nnU-Net ``p_scaling`` 0.2).
        scaling_range: zoom factor range; > 1 magnifies the content (nnU-Net (0.7, 1.4)).
        elastic_prob: probability of elastic deformation (nnU-Net v2 default 0, i.e. off;
            its BraTS 2020 DA4 trainer used 0.2).
        elastic_magnitude: range of the displacement standard deviation, in voxels.
        elastic_grid_spacing: control-point spacing in voxels of the random displacement grid
            (the smoothness scale; nnU-Net v1 smooths with sigma 9-13 voxels).
        noise_prob: probability of additive Gaussian noise (nnU-Net 0.1).
        noise_std_range: noise standard deviation range, one value for all channels
            (nnU-Net ``noise_variance=(0, 0.1)``, which it uses as the standard deviation).
        blur_prob: probability of Gaussian blur (nnU-Net 0.2).
        blur_sigma_range: sigma in voxels, drawn per channel and per axis (nnU-Net (0.5, 1)).
        blur_channel_prob: probability that each channel is blurred once blur applies
            (nnU-Net ``p_per_channel`` 0.5).
        intensity_scale_prob: probability of multiplicative brightness (nnU-Net 0.15).
        intensity_scale_range: per-channel multiplier, BG-sampled (nnU-Net (0.75, 1.25)).
        intensity_shift_prob: probability of an additive per-channel shift. Not in plain
            nnU-Net v2; value from nnU-Net's BraTS 2020 DA3 trainer (additive brightness,
            p 0.3, N(0, 0.2)), applied per channel as its DA4 trainer does.
        intensity_shift_std: standard deviation of the shift (inputs are z-scored).
        contrast_prob: probability of contrast change (nnU-Net 0.15).
        contrast_range: per-channel factor around the channel mean, BG-sampled, result
            clipped to the channel's original range (nnU-Net (0.75, 1.25), preserve_range).
        low_res_prob: probability of simulated low resolution (nnU-Net 0.25).
        low_res_zoom_range: downsampling factor, same for all axes (nnU-Net (0.5, 1)).
        low_res_channel_prob: probability per channel once low resolution applies (nnU-Net 0.5).
        gamma_prob: probability of gamma (nnU-Net 0.3).
        gamma_inverted_prob: probability of gamma on the negated image (nnU-Net 0.1).
        gamma_range: per-channel gamma, BG-sampled (nnU-Net (0.7, 1.5)).
        gamma_retain_stats: restore each channel's mean and std afterwards (nnU-Net: yes).
    """

    flip_prob: float = 0.5
    flip_axes: tuple[int, ...] = (0, 1, 2)
    rot90_prob: float = 0.0
    rotation_prob: float = 0.2
    rotation_max_deg: float = 30.0
    scaling_prob: float = 0.2
    scaling_range: Pair = (0.7, 1.4)
    elastic_prob: float = 0.0
    elastic_magnitude: Pair = (0.0, 3.0)
    elastic_grid_spacing: int = 16
    noise_prob: float = 0.1
    noise_std_range: Pair = (0.0, 0.1)
    blur_prob: float = 0.2
    blur_sigma_range: Pair = (0.5, 1.0)
    blur_channel_prob: float = 0.5
    intensity_scale_prob: float = 0.15
    intensity_scale_range: Pair = (0.75, 1.25)
    intensity_shift_prob: float = 0.3
    intensity_shift_std: float = 0.2
    contrast_prob: float = 0.15
    contrast_range: Pair = (0.75, 1.25)
    low_res_prob: float = 0.25
    low_res_zoom_range: Pair = (0.5, 1.0)
    low_res_channel_prob: float = 0.5
    gamma_prob: float = 0.3
    gamma_inverted_prob: float = 0.1
    gamma_range: Pair = (0.7, 1.5)
    gamma_retain_stats: bool = True

    @classmethod
    def light(cls) -> AugmentConfig:
        """Flips and cheap per-channel intensity changes only (no resampling, noise or blur)."""
        return cls(
            rotation_prob=0.0,
            scaling_prob=0.0,
            elastic_prob=0.0,
            rot90_prob=0.0,
            noise_prob=0.0,
            blur_prob=0.0,
            low_res_prob=0.0,
            gamma_prob=0.0,
            gamma_inverted_prob=0.0,
        )

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation: every probability 0, ``augment_fn`` returns its inputs."""
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls) if f.name.endswith("_prob")})

    def validate(self) -> AugmentConfig:
        """Check every field; returns ``self`` so calls can be chained.

        Raises:
            ValueError: naming the first invalid field (``AugmentConfig.<field>``) and the value.
        """
        for f in dataclasses.fields(self):
            if f.name.endswith("_prob"):
                check_number(_arg(f.name), getattr(self, f.name), 0.0, 1.0)
        axes = check_int_sequence(_arg("flip_axes"), self.flip_axes, minimum=0, maximum=2)
        if len(set(axes)) != len(axes):
            raise ValueError(
                f"{_arg('flip_axes')} must be distinct spatial axes in {{0, 1, 2}}, got {self.flip_axes!r}"
            )
        check_number(_arg("rotation_max_deg"), self.rotation_max_deg, 0.0, 180.0)
        _check_range(self, "scaling_range", lo_min=0.0, lo_strict=True)
        _check_range(self, "elastic_magnitude", lo_min=0.0)
        check_int(_arg("elastic_grid_spacing"), self.elastic_grid_spacing, 2)
        _check_range(self, "noise_std_range", lo_min=0.0)
        _check_range(self, "blur_sigma_range", lo_min=0.0, hi_max=4.0)
        _check_range(self, "intensity_scale_range", lo_min=0.0, lo_strict=True)
        check_number(_arg("intensity_shift_std"), self.intensity_shift_std, 0.0)
        _check_range(self, "contrast_range", lo_min=0.0, lo_strict=True)
        _check_range(self, "low_res_zoom_range", lo_min=0.0, lo_strict=True, hi_max=1.0)
        _check_range(self, "gamma_range", lo_min=0.0, lo_strict=True)
        check_bool(_arg("gamma_retain_stats"), self.gamma_retain_stats)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Build and validate a config from :meth:`to_dict` output; missing keys take defaults.

        Raises:
            ValueError: for an unknown key or an invalid value, naming the field.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"AugmentConfig: unknown field(s) {unknown}; known: {sorted(names)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs).validate()


def _arg(name: str) -> str:
    """How a field is named in error messages."""
    return f"AugmentConfig.{name}"


def _check_range(
    cfg: AugmentConfig, name: str, lo_min: float, lo_strict: bool = False, hi_max: float = math.inf
) -> None:
    """``ValueError`` unless field ``name`` is a ``(low, high)`` pair with ``lo_min <(=) low <= high <= hi_max``."""
    value = getattr(cfg, name)
    ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(is_number(v) for v in value)
    if ok:
        lo, hi = value
        ok = (lo > lo_min if lo_strict else lo >= lo_min) and lo <= hi <= hi_max
    if not ok:
        bound = f"> {lo_min}" if lo_strict else f">= {lo_min}"
        raise ValueError(
            f"{_arg(name)} must be a (low, high) pair with low {bound}, low <= high <= {hi_max}, got {value!r}"
        )
