"""Learning-rate schedules (registered Keras objects: importing this module registers them)."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

__all__ = ["WarmupSchedule"]


@keras.saving.register_keras_serializable(package="brainseg_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then constant / poly / cosine decay.

    ``lr(t) = peak · (start + (1 - start)·t/W)`` for ``t < W``; after warm-up, with
    ``u = (t - W)/(T - W)`` clipped to [0, 1]: constant ``peak``; poly
    ``min + (peak - min)·(1 - u)**power``; cosine ``min + (peak - min)·(1 + cos(πu))/2``.

    Args:
        peak: learning rate after warm-up.
        total_steps: ``T``, the number of optimizer steps of the whole run.
        warmup_steps: ``W``. Defaults to 0.
        warmup_start: fraction of ``peak`` at step 0. Defaults to 0.
        decay: ``"constant"``, ``"poly"`` or ``"cosine"``.
        power: poly exponent. Defaults to 0.9 (nnU-Net).
        min_lr: floor. Defaults to 0.
    """

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_steps: int = 0,
        warmup_start: float = 0.0,
        decay: str = "poly",
        power: float = 0.9,
        min_lr: float = 0.0,
    ):
        if decay not in ("constant", "poly", "cosine"):
            raise ValueError(f"decay={decay!r} must be 'constant', 'poly' or 'cosine'")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.warmup_start = float(warmup_start)
        self.decay = decay
        self.power = float(power)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        t = ops.cast(step, "float32")
        w = float(self.warmup_steps)
        span = float(max(self.total_steps - self.warmup_steps, 1))
        u = ops.clip((t - w) / span, 0.0, 1.0)
        if self.decay == "poly":
            lr = self.min_lr + (self.peak - self.min_lr) * ops.power(1.0 - u, self.power)
        elif self.decay == "cosine":
            lr = self.min_lr + (self.peak - self.min_lr) * 0.5 * (1.0 + ops.cos(math.pi * u))
        else:
            lr = ops.convert_to_tensor(self.peak, "float32") + 0.0 * t
        if self.warmup_steps > 0:
            frac = self.warmup_start + (1.0 - self.warmup_start) * t / w
            lr = ops.where(t < w, self.peak * frac, lr)
        return lr

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "warmup_start": self.warmup_start,
            "decay": self.decay,
            "power": self.power,
            "min_lr": self.min_lr,
        }
