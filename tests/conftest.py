"""Shared fixtures. TensorFlow logging is quietened before any test imports it."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")
# plan.measure_step_peak reads the CPU allocator's peak, which only a BFC allocator records.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_BRATS2018 = Path(os.environ.get("BRAINSEG_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "brats2018"))


@pytest.fixture(scope="session")
def real_brats2018() -> Path:
    """The 18 shared real BraTS 2018 cases; skips when the folder is absent (a user's fresh clone)."""
    if not REAL_BRATS2018.is_dir():
        pytest.skip(f"real BraTS 2018 cases not found at {REAL_BRATS2018} (present in CI as ../shared)")
    return REAL_BRATS2018


class Browser:
    """Headless Chromium (Debian's package) for checking pages as a user's browser draws them."""

    FLAGS = ("--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--mute-audio")

    def __init__(self, executable: str):
        self.executable = executable

    def _run(self, *args: str, budget_ms: int) -> str:
        import subprocess

        cmd = [self.executable, *self.FLAGS, f"--virtual-time-budget={budget_ms}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
        return done.stdout

    def dom(self, page: Path, budget_ms: int = 20_000) -> str:
        """The page's DOM after its scripts ran (``--dump-dom``)."""
        return self._run("--dump-dom", page.resolve().as_uri(), budget_ms=budget_ms)

    def screenshot(self, page: Path, out: Path, size: tuple[int, int] = (1280, 1000), budget_ms: int = 20_000):
        """A PNG screenshot of ``page``, returned as an ``(H, W, C)`` float array."""
        import matplotlib.image

        self._run(
            f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", page.resolve().as_uri(), budget_ms=budget_ms
        )
        assert out.is_file() and out.stat().st_size > 0, f"no screenshot of {page}"
        return matplotlib.image.imread(out)


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Headless Chromium; `make test` installs Debian's package where it is absent. Outside CI a
    machine without it skips the browser checks; in CI (CI set) its absence is a failure."""
    import shutil

    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium not found: `make test` installs Debian's chromium package (apt-get)")
        pytest.skip("chromium not installed (apt-get install chromium); the browser checks need it")
    return Browser(exe)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """Factory of synthetic datasets, each built once per test session and set of arguments.

    ``synthetic_dataset(n_cases=4, shape=(48, 48, 40), layout="brats2021", seed=0)`` returns the
    dataset's root. Shared between tests: read it, never write into it (copy it to change it).
    """
    from brainseg_tf import synthetic

    built: dict[tuple, Path] = {}

    def make(n_cases: int = 4, shape=(48, 48, 40), layout: str = "brats2021", seed: int = 0) -> Path:
        key = (n_cases, tuple(shape), layout, seed)
        if key not in built:
            root = tmp_path_factory.mktemp(f"synthetic_{layout}_{n_cases}_{seed}")
            built[key] = synthetic.make_dataset(
                root / "data", layout=layout, n_cases=n_cases, shape=tuple(shape), seed=seed, progress=False
            )
        return built[key]

    return make
