"""The BraTS overall-survival classes (BraTS counts a month as 30 days).

* ``short``: survival < 300 days (< 10 months);
* ``mid``: 300 <= survival <= 450 days (10-15 months);
* ``long``: survival > 450 days (> 15 months).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CLASS_THRESHOLDS_DAYS", "SURVIVAL_CLASSES", "survival_class"]

CLASS_THRESHOLDS_DAYS: tuple[float, float] = (300.0, 450.0)  # short < 300 <= mid <= 450 < long
SURVIVAL_CLASSES: tuple[str, ...] = ("short", "mid", "long")


def survival_class(days: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """BraTS survival class per value: 0 short (< 300 d), 1 mid (300-450 d), 2 long (> 450 d).

    Returns:
        int array of the input's shape (a 0-d array for a scalar).

    Raises:
        ValueError: a NaN or negative number of days.
    """
    d = np.asarray(days, dtype=np.float64)
    if np.any(~np.isfinite(d)) or np.any(d < 0):
        raise ValueError(f"days={days!r}: survival must be finite and >= 0")
    short_max, mid_max = CLASS_THRESHOLDS_DAYS
    return np.where(d < short_max, 0, np.where(d <= mid_max, 1, 2)).astype(np.int64)
