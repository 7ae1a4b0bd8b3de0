"""Per-voxel uncertainty of a prediction, and a per-case score that ranks likely failures.

All maps are float32 in [0, 1] on the grid of the probabilities: 0 where the prediction is
certain, 1 at the most uncertain. Probabilities are channels-last ``(..., K)``: a softmax head's
4 classes (BG, NCR, ED, ET), a sigmoid head's regions (WT, TC, ET) or a region head's one channel.

* :func:`predictive_entropy` -- one model (or the mean of several): softmax
  ``-sum_k p_k log p_k / log K``; sigmoid/region: the binary entropy ``-p log p - (1-p) log(1-p)``
  of each channel divided by ``log 2``, averaged over channels.
* :func:`member_variance` -- several outputs (ensemble members, mirror-TTA flips):
  ``4 * max_k Var_m[p_mk]``, the population variance over members ``m`` of each channel, the
  largest over channels. A number in [0, 1] has variance at most 1/4, so this is 0 where every
  member agrees and 1 where two members split evenly (one says 0, the other 1). Members need not
  be held at once: :class:`Moments` accumulates the mean and the second moment, and
  :func:`variance_from_moments` turns them into the map (mixtures of members are combined by
  averaging both moments, the law of total variance).
* :func:`case_score` -- the mean uncertainty over the predicted tumour dilated by
  ``dilation`` voxels, together with every voxel whose uncertainty is at least ``threshold``
  (so that uncertain tumour the labels missed counts too); 0 when that region is empty.

NumPy/SciPy only; no TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from brainseg_tf.checks import check_int
from brainseg_tf.conventions import HEADS

__all__ = [
    "KINDS",
    "DEFAULT_DILATION",
    "DEFAULT_THRESHOLD",
    "predictive_entropy",
    "Moments",
    "variance_from_moments",
    "member_variance",
    "case_score",
    "resolve_kind",
]

#: What ``predict --uncertainty`` accepts: ``auto`` is variance with an ensemble or TTA, else entropy.
KINDS: tuple[str, ...] = ("auto", "entropy", "variance")
DEFAULT_DILATION = 3
DEFAULT_THRESHOLD = 0.5
_EPS = 1e-12


def _probabilities(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim < 2:
        raise ValueError(f"probabilities have shape {p.shape}; expected (..., K) channels last")
    return np.clip(p, 0.0, 1.0)


def predictive_entropy(probs: np.ndarray, head: str = "softmax") -> np.ndarray:
    """Normalised predictive entropy, float32 ``(...)`` in [0, 1].

    Args:
        probs: ``(..., K)`` probabilities: softmax classes (K >= 2) or sigmoid channels.
        head: ``"softmax"`` (entropy over the K classes / log K) or ``"sigmoid"``/``"region"``
            (mean over channels of the binary entropy / log 2).

    Raises:
        ValueError: an unknown head, a softmax with fewer than 2 classes.
    """
    if head not in HEADS:
        raise ValueError(f"head={head!r} is unknown; expected one of {list(HEADS)}")
    p = _probabilities(probs)
    if head == "softmax":
        k = p.shape[-1]
        if k < 2:
            raise ValueError(f"a softmax head needs at least 2 classes; probabilities have {k}")
        h = -np.sum(p * np.log(np.maximum(p, _EPS)), axis=-1) / math.log(k)
    else:
        q = 1.0 - p
        h = np.mean(-(p * np.log(np.maximum(p, _EPS)) + q * np.log(np.maximum(q, _EPS))), axis=-1) / math.log(2.0)
    return np.clip(h, 0.0, 1.0).astype(np.float32)


class Moments:
    """Running mean and second moment of member probabilities (float64), one member at a time."""

    def __init__(self) -> None:
        self.count = 0
        self._sum: np.ndarray | None = None
        self._squares: np.ndarray | None = None

    def add(self, probs: np.ndarray) -> None:
        """Add one member's ``(..., K)`` probabilities (all members of one shape)."""
        p = np.asarray(probs, dtype=np.float64)
        if self._sum is None:
            self._sum, self._squares = p.copy(), p * p
        else:
            if p.shape != self._sum.shape:
                raise ValueError(f"member probabilities have shape {p.shape}; the first had {self._sum.shape}")
            self._sum += p
            self._squares += p * p
        self.count += 1

    def _check(self) -> None:
        if self._sum is None:
            raise ValueError("no member probabilities were added")

    @property
    def mean(self) -> np.ndarray:
        """float32 mean over members, ``(..., K)``."""
        self._check()
        return (self._sum / self.count).astype(np.float32)

    @property
    def second(self) -> np.ndarray:
        """float32 mean over members of the squared probabilities, ``(..., K)``."""
        self._check()
        return (self._squares / self.count).astype(np.float32)


def variance_from_moments(mean: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``4 * max_k (E[p_k^2] - E[p_k]^2)``, float32 ``(...)`` in [0, 1] (see :func:`member_variance`)."""
    # float32 on purpose: where every member gives p, the float32 second moment is p*p rounded
    # once, exactly what mean*mean gives here, so agreement yields an exact 0.
    mean = np.asarray(mean, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    if mean.shape != second.shape or mean.ndim < 2:
        raise ValueError(f"mean {mean.shape} and second moment {second.shape} must be one (..., K) shape")
    var = np.clip(second - mean * mean, 0.0, 0.25)
    return (4.0 * var.max(axis=-1)).astype(np.float32)


def member_variance(member_probs: Sequence[np.ndarray] | Iterable[np.ndarray] | np.ndarray) -> np.ndarray:
    """Disagreement of members (ensemble models, TTA flips), float32 ``(...)`` in [0, 1].

    Args:
        member_probs: ``M`` arrays ``(..., K)`` (or one array ``(M, ..., K)``), probabilities in [0, 1].

    Returns:
        ``4 * max_k Var_m[p_mk]``: 0 where all members agree, 1 where two members split evenly.
    """
    moments = Moments()
    for p in member_probs:
        moments.add(p)
    return variance_from_moments(moments.mean, moments.second)


def case_score(
    uncertainty: np.ndarray,
    labels: np.ndarray,
    *,
    dilation: int = DEFAULT_DILATION,
    threshold: float = DEFAULT_THRESHOLD,
    tumour: Sequence[int] = (1, 2, 3),
) -> float:
    """One number per case for ranking: mean uncertainty over the tumour's neighbourhood.

    Args:
        uncertainty: ``(X, Y, Z)`` map in [0, 1] (:func:`predictive_entropy`, :func:`member_variance`).
        labels: ``(X, Y, Z)`` internal predicted labels.
        dilation: voxels the predicted tumour is grown by (26-connected steps) so that its border
            counts. Defaults to 3.
        threshold: voxels at least this uncertain count wherever they are. Defaults to 0.5.
        tumour: the internal labels that are tumour (default the canonical 1-3; a scheme's
            :attr:`~brainseg_tf.schemes.LabelScheme.tumour_internal`, which leaves out a resection cavity).

    Returns:
        The mean of ``uncertainty`` over ``dilate(tumour) | (uncertainty >= threshold)``; 0.0 when
        that region is empty (no tumour predicted and nothing uncertain).

    Raises:
        ValueError: shapes differ, bad ``dilation`` or ``threshold``.
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    labels = np.asarray(labels)
    if u.shape != labels.shape:
        raise ValueError(f"uncertainty shape {u.shape} differs from labels shape {labels.shape}")
    check_int("dilation", dilation, 0)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r} must be in (0, 1]")
    region = np.isin(labels, np.asarray(tuple(tumour), dtype=np.int64))
    if dilation and region.any():
        region = ndimage.binary_dilation(region, structure=np.ones((3,) * region.ndim, bool), iterations=int(dilation))
    region |= u >= threshold
    return float(u[region].mean()) if region.any() else 0.0


def resolve_kind(kind: str | bool, *, members: int, flips: int) -> str:
    """``"entropy"`` or ``"variance"`` for a request (``"auto"``/``True`` picks by the member count).

    Args:
        kind: ``"auto"`` (or ``True``), ``"entropy"`` or ``"variance"``.
        members: models in the ensemble (1 for one model).
        flips: mirror-TTA flips per model (1 without TTA).

    Raises:
        ValueError: an unknown kind, or ``"variance"`` with a single output (one model, no TTA).
    """
    kind = "auto" if kind is True else kind
    if kind not in KINDS:
        raise ValueError(f"uncertainty={kind!r} is unknown; expected one of {list(KINDS)}")
    several = members > 1 or flips > 1
    if kind == "auto":
        return "variance" if several else "entropy"
    if kind == "variance" and not several:
        raise ValueError("uncertainty='variance' needs several outputs: an ensemble of models or mirror TTA (tta=True)")
    return kind
