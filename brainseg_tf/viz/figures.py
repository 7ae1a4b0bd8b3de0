"""Writing figures: one resolution default and an atomic save."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from brainseg_tf.atomic import atomic_path

__all__ = ["DEFAULT_DPI", "save_figure"]

DEFAULT_DPI = 100


def save_figure(fig: Figure, save: str | Path | None, dpi: int = DEFAULT_DPI, tight: bool = False) -> Path | None:
    """Write ``fig`` atomically to ``save`` (format from the suffix) and return the path.

    Without ``tight`` the file is exactly ``figsize * dpi`` pixels, which the layouts here are
    made for; ``tight=True`` crops to the drawn content. Nothing is written when ``save`` is None.
    """
    if save is None:
        return None
    save = Path(save)
    with atomic_path(save) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None)
    return save
