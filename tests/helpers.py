"""Helpers shared by several test modules (not tests themselves): the console script, report
checks, small datasets written by hand, a trainer subprocess's environment.

Test modules import from here, never from each other (``tests/`` is on ``sys.path`` through
``conftest.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from brainseg_tf import io

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BRAINSEG = shutil.which("brainseg", path=str(BIN)) or shutil.which("brainseg")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: BraTS storage: LPS, the y origin at the far edge of a 240-voxel grid.
LPS = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


# ------------------------------------------------------------------------------ console script


def brainseg(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the console script; TensorFlow kept quiet and on the CPU, figures headless."""
    assert BRAINSEG is not None, f"the brainseg console script is not installed beside {sys.executable}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [BRAINSEG, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def trainer_env() -> dict[str, str]:
    """A trainer subprocess's environment: this checkout importable, CPU only, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ------------------------------------------------------------------------------ reports


def assert_real_png(path: Path) -> None:
    """A valid PNG of a drawn figure: signature, sane size, decodable, many colours (not blank)."""
    from matplotlib import image as mpimg

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 2_000, (path, len(data))
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100, (path, width, height)
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10, f"{path} is (nearly) one colour"


def linked_figures(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(figures/([^)]+\.png)\)", text)


def assert_report_files(out: Path) -> str:
    """report.md links exactly the PNGs in figures/, each a real one; no temporary files left."""
    text = (out / "report.md").read_text()
    links = linked_figures(text)
    assert len(links) == len(set(links))
    assert sorted(links) == sorted(p.name for p in (out / "figures").iterdir())
    for name in links:
        assert_real_png(out / "figures" / name)
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name or p.name.endswith(".old")]  # atomic.py's names
    assert leftovers == []
    return text


# ------------------------------------------------------------------------------ small datasets


def make_case(seed: int, shape=(12, 10, 8)):
    """Distinct int16 modalities (value encodes the channel) and a canonical label with all classes."""
    rng = np.random.default_rng(seed)
    images = {m: (rng.integers(1, 500, size=shape) + 1000 * k).astype(np.int16) for k, m in enumerate(io.MODALITIES)}
    label = rng.integers(0, 4, size=shape).astype(np.uint8)
    return images, label


def write_toy_dataset(root: Path, n: int = 3, shape=(48, 44, 36), seed: int = 0) -> Path:
    """Small BraTS-2021-layout folder: ellipsoid brains with nested tumours (no tumour in case 2)."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"), -1)
    for i in range(n):
        brain = (((g - rng.uniform(-0.1, 0.1, 3)) / [0.75, 0.8, 0.7]) ** 2).sum(-1) < 1
        images = {
            m: np.where(brain, rng.normal(300 + 100 * k, 40, shape), 0).astype(np.int16)
            for k, m in enumerate(io.MODALITIES)
        }
        d = np.sqrt(((g - rng.uniform(-0.3, 0.3, 3)) ** 2).sum(-1))
        label = np.zeros(shape, np.uint8)
        if i != 2:
            label[(d < 0.4) & brain] = 2
            label[(d < 0.22) & brain] = 3
            label[(d < 0.1) & brain] = 1
        io.write_case(root, "brats2021", f"BraTS2021_{i:05d}", images, label, np.diag([-1.0, -1.0, 1.0, 1.0]))
    return root
