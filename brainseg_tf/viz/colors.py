"""Fixed colours and legends: canonical labels, tumour regions and error maps.

Labels are canonical (0 BG, 1 NCR, 2 ED, 3 ET; see :mod:`brainseg_tf.conventions`) and are drawn
in the same colours in every figure: NCR red, ED green, ET yellow. A label scheme with other labels
(:mod:`brainseg_tf.schemes`: GLI/MET 2024 with a resection cavity, PED 2024 with a cystic
component, MEN-RT's GTV) draws its internal labels by role -- core red, edema green, enhancing
yellow -- and its other labels in their own colours (:data:`EXTRA_COLOURS`); pass ``scheme=``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from brainseg_tf.conventions import FOREGROUND_CLASSES, REGIONS
from brainseg_tf.schemes import LabelScheme, get_scheme

__all__ = [
    "LABEL_COLOURS",
    "LABEL_NAMES",
    "REGION_COLOURS",
    "REGION_NAMES",
    "REGION_OPACITY",
    "ERROR_COLOURS",
    "ERROR_NAMES",
    "CURVE_COLOURS",
    "EXTRA_COLOURS",
    "scheme_labels",
    "label_cmap",
    "label_rgba",
    "error_rgba",
    "legend_handles",
    "region_legend_handles",
    "error_legend_handles",
]

# NCR red, ED green, ET yellow: the colours most BraTS figures use.
LABEL_COLOURS: dict[int, tuple[float, float, float]] = {
    1: (0.90, 0.10, 0.10),
    2: (0.10, 0.75, 0.20),
    3: (1.00, 0.85, 0.00),
}
LABEL_NAMES: dict[int, str] = {1: "NCR (necrotic core)", 2: "ED (edema)", 3: "ET (enhancing)"}
# Regions take the colour of the class that dominates their outer surface.
REGION_COLOURS: dict[str, tuple[float, float, float]] = {
    "WT": LABEL_COLOURS[2],
    "TC": LABEL_COLOURS[1],
    "ET": LABEL_COLOURS[3],
}
REGION_NAMES: dict[str, str] = {"WT": "WT (whole tumour)", "TC": "TC (tumour core)", "ET": "ET (enhancing tumour)"}
#: Opacity of nested 3D region surfaces: outer ones more transparent, so the core shows through.
REGION_OPACITY: dict[str, float] = {"WT": 0.22, "TC": 0.5, "ET": 0.85}
# Error-map colours, chosen apart from the label colours so the two legends cannot be confused.
ERROR_COLOURS: dict[str, tuple[float, float, float]] = {
    "TP": (0.00, 0.80, 0.80),
    "FP": (1.00, 0.45, 0.00),
    "FN": (0.25, 0.35, 1.00),
}
ERROR_NAMES: dict[str, str] = {"TP": "TP (both)", "FP": "FP (prediction only)", "FN": "FN (missed)"}
# Region/class line and bar colours; pure yellow is unreadable as a line on white.
CURVE_COLOURS: dict[str, tuple[float, float, float]] = {
    "WT": LABEL_COLOURS[2],
    "TC": LABEL_COLOURS[1],
    "ET": (0.85, 0.65, 0.0),
    "NCR": (0.55, 0.0, 0.0),
    "ED": (0.0, 0.45, 0.1),
}


#: Colours of labels without a core / edema / enhancing role (blue cavity, cyan cyst, orange GTV).
EXTRA_COLOURS: dict[str, tuple[float, float, float]] = {
    "RC": (0.25, 0.45, 1.00),
    "CC": (0.00, 0.80, 0.85),
    "GTV": (1.00, 0.50, 0.00),
}
_OTHER_COLOUR = (0.65, 0.35, 0.85)
_ROLE_OF = {"NCR": 1, "NETC": 1, "NET": 1, "ED": 2, "SNFH": 2, "ET": 3}
_LONG_NAMES = {
    **{LABEL_NAMES[k].split()[0]: LABEL_NAMES[k] for k in FOREGROUND_CLASSES},
    "NETC": "NETC (non-enhancing tumour core)",
    "NET": "NET (non-enhancing tumour)",
    "SNFH": "SNFH (surrounding FLAIR hyperintensity)",
    "RC": "RC (resection cavity)",
    "CC": "CC (cystic component)",
    "GTV": "GTV (gross tumour volume)",
}


def scheme_labels(scheme: str | LabelScheme | None = None) -> dict[int, tuple[str, tuple[float, float, float]]]:
    """Internal label -> (legend name, colour) of a scheme (``None``: the canonical NCR, ED, ET)."""
    if scheme is None:
        return {k: (LABEL_NAMES[k], LABEL_COLOURS[k]) for k in FOREGROUND_CLASSES}
    out = {}
    for k, name in enumerate(get_scheme(scheme).internal, 1):
        role = _ROLE_OF.get(name)
        colour = LABEL_COLOURS[role] if role else EXTRA_COLOURS.get(name, _OTHER_COLOUR)
        out[k] = (_LONG_NAMES.get(name, name), colour)
    return out


def label_cmap(scheme: str | LabelScheme | None = None) -> ListedColormap:
    """Colour map for internal labels 0..n (0 transparent; canonical: NCR, ED, ET)."""
    return ListedColormap([(0, 0, 0, 0)] + [(*rgb, 1.0) for _, rgb in scheme_labels(scheme).values()])


def legend_handles(scheme: str | LabelScheme | None = None) -> list[Patch]:
    """Legend patches for the labels of a scheme in their fixed colours (default: NCR, ED, ET)."""
    return [Patch(facecolor=rgb, label=name) for name, rgb in scheme_labels(scheme).values()]


def region_legend_handles(regions: Sequence[str] = REGIONS) -> list[Patch]:
    """Legend patches for the regions WT, TC, ET."""
    return [Patch(facecolor=REGION_COLOURS[r], label=REGION_NAMES[r]) for r in regions]


def error_legend_handles() -> list[Patch]:
    """Legend patches for the error map: true positive, false positive, false negative."""
    return [Patch(facecolor=ERROR_COLOURS[k], label=ERROR_NAMES[k]) for k in ("TP", "FP", "FN")]


def label_rgba(label2d: np.ndarray, alpha: float = 1.0, scheme: str | LabelScheme | None = None) -> np.ndarray:
    """RGBA image ``(..., 4)`` float of an internal label array (canonical by default): fixed colours,
    background transparent."""
    lut = np.zeros((256, 4), dtype=np.float32)
    for k, (_, rgb) in scheme_labels(scheme).items():
        lut[k] = (*rgb, alpha)
    return lut[np.asarray(label2d, dtype=np.uint8)]


def error_rgba(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGBA error map ``(..., 4)`` of two boolean arrays: TP, FP, FN in the error colours, TN transparent."""
    out = np.zeros(truth.shape + (4,), dtype=np.float32)
    for key, sel in (("TP", truth & pred), ("FP", ~truth & pred), ("FN", truth & ~pred)):
        out[sel] = (*ERROR_COLOURS[key], 1.0)
    return out
