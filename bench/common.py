"""What the bench scripts share: paths, argument pieces, clocks and memory readings, the figures
line, worker processes, synthetic cases, untrained recipe models and the forward warm-up.

Only the standard library is imported at load: ``bench/vs_monai.py``'s MONAI worker imports this
module inside the peer environment, where brainseg_tf and TensorFlow are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The benches read the TensorFlow allocator's peak; on CPU it keeps statistics only as a BFC allocator
# (the default allocator of some CPU builds and machines, not of others).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
SHARED_BRATS2018 = REPO_ROOT.parent / "shared" / "data" / "brats2018"
DEFAULT_CASE_ID = "Brats18_2013_23_1"
DEFAULT_CASE = SHARED_BRATS2018 / DEFAULT_CASE_ID
FULL_GRID = (240, 240, 155)

# ----------------------------------------------------------------------------- argument pieces


def summary(doc: str | None) -> str:
    """The first paragraph of a script's docstring (its ``argparse`` description)."""
    return (doc or "").split("\n\n")[0]


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def grid(text: str) -> tuple[int, ...]:
    """``argparse`` type: ``"64x64x48"`` or ``"64"`` -> a tuple of positive ints."""
    try:
        sizes = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes such as 64x64x48")
    return sizes


# ----------------------------------------------------------------------------- clocks and memory


def peak_rss_gib() -> float:
    """Peak resident memory of this process in GiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def rss_mb() -> float:
    """Current resident set size of this process in MiB (``VmRSS`` of ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status (Linux only)")


def load_average() -> float:
    """The 1-minute load average (the machine is shared: printed beside wall times)."""
    return os.getloadavg()[0]


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Fastest wall time and smallest process CPU time (all threads) of ``repeat`` calls of ``fn``."""
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


# ----------------------------------------------------------------------------- figures


def figures_line(figures: Mapping[str, Any], fmt: str = ".3f", prefix: str = "") -> str:
    """The machine-readable last line: ``key=value`` pairs (floats as ``fmt``, booleans ``true``/``false``)."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return format(value, fmt) if isinstance(value, float) else str(value)

    return prefix + " ".join(f"{key}={text(value)}" for key, value in figures.items())


def print_figures(figures: Mapping[str, Any], fmt: str = ".3f", prefix: str = "") -> None:
    """Print :func:`figures_line` (flushed: a caller may be reading the pipe)."""
    print(figures_line(figures, fmt, prefix), flush=True)


# ----------------------------------------------------------------------------- worker processes


def ensure_venv(venv: Path, pins: Sequence[str], note: str = "") -> Path:
    """The python of a peer's own venv, created with ``pins`` (``name==version``) when missing or
    when its installed versions differ (a local suffix such as torch's ``+cpu`` is ignored); the
    peer never enters the project's environment. Exits naming the venv when pip fails."""
    python = venv / "bin" / "python"
    want = dict(p.split("==") for p in pins)
    check = f"import importlib.metadata as m, json; print(json.dumps({{k: m.version(k) for k in {sorted(want)!r}}}))"
    if python.exists():
        got = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
        if got.returncode == 0 and {k: v.split("+")[0] for k, v in json.loads(got.stdout).items()} == want:
            return python
    print(f"creating {venv} with {' '.join(pins)} (once{', ' + note if note else ''}) ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"{venv}: pip install {' '.join(pins)} failed:\n{proc.stderr[-2000:]}")
    return python


def run_module(module: str, args: Sequence[str], *, python: str | None = None, timeout: float | None = None):
    """Run ``python -m module args`` from the repository root; the completed process (output captured).

    A measurement in its own process keeps its peak memory and traced functions its own.

    Raises:
        subprocess.TimeoutExpired: past ``timeout`` seconds.
    """
    command = [python or sys.executable, "-m", module, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout, check=False)


def last_json(stdout: str) -> dict[str, Any]:
    """The last line of ``stdout`` that is a JSON object (a worker's result)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError("the worker printed no JSON result")
    return json.loads(lines[-1])


def run_worker(module: str, args: Sequence[str], what: str, **kwargs: Any) -> dict[str, Any]:
    """:func:`run_module` and its JSON result; exits with the worker's stderr tail when it fails."""
    proc = run_module(module, args, **kwargs)
    if proc.returncode != 0:
        sys.exit(f"{what} failed:\n{proc.stderr[-3000:]}")
    return last_json(proc.stdout)


# ----------------------------------------------------------------------------- cases


def synthetic_case(root: Path, seed: int = 0, shape: Sequence[int] = FULL_GRID) -> Path:
    """Write synthetic case ``seed`` (int16, BraTS 2021 names) under ``root``; its case folder."""
    from brainseg_tf import io as bio
    from brainseg_tf.synthetic import synthesize_case

    sc = synthesize_case(seed, tuple(shape))
    ref = bio.write_case(root, "brats2021", f"BraTS2021_{seed:05d}", sc.images, sc.label, sc.affine)
    return Path(ref.images["flair"]).parent


def synthetic_dataset(root: Path, n_cases: int, shape: Sequence[int] = FULL_GRID, seed: int = 0) -> Path:
    """A BraTS-2021-style synthetic dataset folder (reused when ``root`` already holds one)."""
    from brainseg_tf.synthetic import make_dataset

    if root.is_dir() and any(root.iterdir()):
        return root
    return Path(make_dataset(root, n_cases=n_cases, shape=tuple(shape), seed=seed, progress=False))


# ----------------------------------------------------------------------------- models


def untrained_model(
    recipe: str | os.PathLike, overrides: Mapping[str, Any] | None = None, *, recipe_precision: bool = True
) -> tuple[Any, Any]:
    """``(keras model, model card)`` of a recipe's model, untrained (seeded), with the card training writes.

    Args:
        recipe: JSON recipe.
        overrides: dotted recipe overrides (``{"model.options.base_filters": 8}``).
        recipe_precision: build under the recipe's ``runtime.mixed_precision`` (else float32).
    """
    import keras

    from brainseg_tf.training.config import load_config
    from brainseg_tf.training.distribute import resolve_mixed_precision
    from brainseg_tf.training.factories import build_model
    from brainseg_tf.training.rundir import model_card
    from brainseg_tf.training.split import Split

    cfg = load_config(recipe, dict(overrides or {}))
    if recipe_precision:
        keras.config.set_dtype_policy(resolve_mixed_precision(cfg.runtime.mixed_precision))
    keras.utils.set_random_seed(cfg.training.seed)
    card = model_card(cfg, Split(train_ids=[], val_ids=list(cfg.split.val_ids or []), method="fixed"), None)
    return build_model(cfg), card


def untrained_run_dir(recipe: str | os.PathLike, out: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """Write a recipe's untrained float32 model (``best.keras``) and its card into ``out``."""
    model, card = untrained_model(recipe, overrides, recipe_precision=False)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "best.keras")
    card.save(out)
    return out


def size_divisor(pred: Any) -> tuple[int, ...] | None:
    """A predictor's per-axis input-size divisor: its card's ``inference.divisor``, else the model
    registry's for the card's model; ``None`` when neither says."""
    if pred.inference.divisor is not None:
        return tuple(pred.inference.divisor)
    if pred.card is None or pred.card.model is None:
        return None
    from brainseg_tf.models import get_spec

    return get_spec(pred.card.model).size_divisor(pred.card.options)


def warm_up(pred: Any, roi: Sequence[int], batch_size: int = 1) -> None:
    """Trace the predictor's forward at ``roi`` and at ``roi`` one divisor step longer on the last axis.

    After two shapes ``tf.function`` serves any window from one relaxed trace, as in a folder of
    cases whose planned windows differ (predict_folder's steady state); one step on one axis uses
    no more memory than a planned window. Without a known divisor only ``roi`` is traced.
    """
    import numpy as np

    shapes = [tuple(roi)]
    divisor = size_divisor(pred)
    if divisor is not None:
        shapes.append((*roi[:-1], roi[-1] + divisor[-1]))
    for shape in shapes:
        pred(np.zeros((batch_size, *shape, len(pred.modalities)), np.float32))
