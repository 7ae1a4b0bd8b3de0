"""Shared fixtures. TensorFlow logging is quietened before any test imports it."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_BRATS2018 = Path(os.environ.get("BRAINSEG_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "brats2018"))


@pytest.fixture(scope="session")
def real_brats2018() -> Path:
    """The 18 shared real BraTS 2018 cases; skips when the folder is absent (a user's fresh clone)."""
    if not REAL_BRATS2018.is_dir():
        pytest.skip(f"real BraTS 2018 cases not found at {REAL_BRATS2018} (present in CI as ../shared)")
    return REAL_BRATS2018
