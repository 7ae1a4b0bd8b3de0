"""Every bench script runs (``python -m bench.<name>``) on a small case and prints its figures.

Each test runs one script in a fresh process with small sizes (tiny synthetic cases, a tiny
untrained recipe model, one repeat) and checks that it exits 0 and that its machine-readable
last line holds the documented figures as numbers in a sane range. What CI lacks has a small
mode: ``bench.gpu --tiny`` on CPU, ``bench.vs_monai --ours-only`` (no MONAI environment).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHAPE = (48, 48, 40)
CASE_ID = "BraTS2021_00000"
# Real cases whose ids pair with rows of the shared survival table (5 for certain, 1 by number).
SURVIVAL_CASES = (
    "Brats18_2013_11_1",
    "Brats18_CBICA_ABM_1",
    "Brats18_CBICA_ALU_1",
    "Brats18_CBICA_AME_1",
    "Brats18_CBICA_AQN_1",
    "Brats18_TCIA01_201_1",
)

pytestmark = [pytest.mark.bench, pytest.mark.slow]


def parse_figures(stdout: str) -> dict[str, float | str]:
    """The last printed line made only of ``key=value`` pairs (a ``figures:`` prefix allowed);
    numbers as floats, ``true``/``false`` and other words as strings."""
    for line in reversed(stdout.strip().splitlines()):
        tokens = line.removeprefix("figures: ").split()
        if tokens and all(t.count("=") == 1 and not t.startswith("=") for t in tokens):
            out: dict[str, float | str] = {}
            for key, value in (t.split("=") for t in tokens):
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
            return out
    raise AssertionError(f"no key=value figures line in:\n{stdout[-2000:]}")


def run_bench(name: str, *args: object, timeout: float = 500) -> tuple[dict[str, float | str], str]:
    """Run ``python -m bench.<name> args`` from the repository root; its figures and stdout."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"bench.{name} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return parse_figures(proc.stdout), proc.stdout


def check(figures: dict, key: str, low: float, high: float) -> float:
    """``figures[key]`` is a finite number in ``[low, high]``."""
    assert key in figures, f"{key} missing from {sorted(figures)}"
    value = figures[key]
    assert isinstance(value, float) and math.isfinite(value), f"{key}={value!r} is not a finite number"
    assert low <= value <= high, f"{key}={value} outside [{low}, {high}]"
    return value


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``data/`` (2 synthetic cases of 48x48x40) and ``tiny.json`` (a small recipe)."""
    from brainseg_tf.synthetic import make_dataset

    root = tmp_path_factory.mktemp("bench")
    make_dataset(root / "data", n_cases=2, shape=SHAPE, seed=0, progress=False)
    recipe = json.loads((REPO_ROOT / "configs" / "demo_synthetic.json").read_text())
    recipe["model"]["options"].update(depth=2, base_filters=4, max_filters=8)
    recipe["pipeline"]["patch_size"] = [32, 32, 32]
    recipe["validation"]["window"] = "patch"
    recipe["runtime"]["mixed_precision"] = "off"
    (root / "tiny.json").write_text(json.dumps(recipe))
    return root


def test_parse_figures_reads_the_last_key_value_line() -> None:
    out = 'a table\nx=1 y=2\nfigures: device=CPU:0 gpu=false rate=3.5e+01\n{"json": 1}\n'
    assert parse_figures(out) == {"device": "CPU:0", "gpu": "false", "rate": 35.0}


def test_evaluation(work: Path) -> None:
    figures, _ = run_bench("evaluation", "--cases", 2, "--shape", *SHAPE)
    assert check(figures, "cases", 2, 2) == 2
    check(figures, "evaluate_seconds", 0, 120)
    check(figures, "seconds_per_case", 0, 60)


def test_synthetic(work: Path) -> None:
    figures, out = run_bench(
        "synthetic", "--cases", 1, "--write", 1, "--shape", *SHAPE, "--real", work / "data", "--max-real", 1
    )
    check(figures, "synthetic_case_seconds", 0, 60)
    check(figures, "synthetic_case_cpu_seconds", 0, 60)
    check(figures, "write_case_seconds", 0, 60)
    assert figures["orderings_match"] in ("true", "false")
    assert "| flair | NCR |" in out


@pytest.mark.real_data
def test_survival(real_brats2018: Path, tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    for case_id in SURVIVAL_CASES:
        (cases / case_id).symlink_to(real_brats2018 / case_id)
    figures, _ = run_bench("survival", "--cases", cases, "--folds", 2, "--repeats", 1, "--boot", 20)
    check(figures, "patients", 100, 1000)
    for method in ("majority", "age", "ridge", "forest"):
        check(figures, f"accuracy_{method}", 0, 1)
    check(figures, "total_seconds", 0, 300)


def test_models() -> None:
    figures, out = run_bench("models", "--models", "unet2d", "--precisions", "float32", "--repeats", 1)
    check(figures, "unet2d_float32_median_s", 0, 60)
    assert check(figures, "unet2d_params", 1, 1e9) == 7_759_908  # the faithful default (docs/models.md)
    assert "| unet2d | 128×128×2 | 7,759,908 |" in out


def test_pipeline(work: Path) -> None:
    figures, _ = run_bench(
        "pipeline",
        *("--data", work / "data", "--workdir", work / "pipeline", "--cases", 1, "--patch", 32),
        *("--augments", "none", "--augment", "none", "--patches", 2, "--batch", 1, "--skip-model"),
    )
    check(figures, "cache_patches_per_s", 1e-3, 1e6)
    check(figures, "nifti_patches_per_s", 1e-3, 1e6)


def test_plan_calibration(work: Path) -> None:
    out = work / "plan_calibration.json"
    figures, _ = run_bench("plan_calibration", "--points", "tiny", "--steps", 1, "--out", out)
    assert check(figures, "points", 1, 1) == 1
    check(figures, "max_abs_error", 0, 10)
    check(figures, "factor_float32", -1e3, 1e3)
    assert json.loads(out.read_text())["rows"][0]["patch"] == [16, 16, 16]


def test_gpu_tiny_runs_without_a_gpu(work: Path) -> None:
    figures, out = run_bench("gpu", "--tiny", "--xla", "off", "--steps", 1, "--work", work / "gpu")
    check(figures, "pipeline_patches_per_s", 1e-3, 1e6)
    check(figures, "xla_off_steps_per_s", 1e-4, 1e4)
    check(figures, "xla_off_estimate_mib", 1e-3, 1e5)
    check(figures, "inference_s", 0, 300)
    assert figures["gpu"] in ("true", "false")
    if figures["gpu"] == "false":
        assert figures["device"] == "CPU:0"
        assert "no GPU present" in out


def test_inference_default_unet_with_divisor_32(work: Path) -> None:
    """The recommended U-Net (input divisor 32): the warm-up's second window must be a valid size."""
    figures, out = run_bench("inference", "--case", work / "data" / CASE_ID, "--roi", 32, "--variants", "base")
    check(figures, "case_seconds", 0, 300)
    check(figures, "peak_rss_gb", 0.05, 64)
    assert "forwards" in out and "total (read -> write)" in out


def test_windows(work: Path) -> None:
    figures, _ = run_bench(
        "windows", "--recipe", work / "tiny.json", "--data", work / "data", "--settings", "patch:0.5", "auto:0.25"
    )
    for region in ("wt", "tc", "et"):
        check(figures, f"auto:0.25_max_abs_delta_{region}", 0, 1)
        check(figures, f"auto:0.25_mean_delta_{region}", -1, 1)


def test_soak(work: Path) -> None:
    figures, _ = run_bench(
        "soak",
        *("--data", work / "data", "--case", CASE_ID, "--recipe", work / "tiny.json"),
        *("--repeats", 2, "--folder", 1),
    )
    check(figures, "rss_case10_mb", 10, 65536)
    check(figures, "rss_case2_mb", 10, 65536)
    check(figures, "delta_mb", -65536, 65536)


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnxruntime", "tf2onnx")),
    reason="the onnx extra (tf2onnx, onnxruntime) is not installed",
)
def test_onnx(work: Path) -> None:
    figures, out = run_bench("onnx", "--case", work / "data" / CASE_ID, "--config", work / "tiny.json", "--repeats", 1)
    check(figures, "max_abs_prob_diff", 0, 1e-3)
    check(figures, "label_agreement_pct", 99, 100)
    check(figures, "keras_median_s", 0, 300)
    check(figures, "onnxruntime_median_s", 0, 300)
    check(figures, "onnx_over_keras", 0, 1e3)
    assert json.loads(out.strip().splitlines()[-1])["case"] == CASE_ID


def test_vs_monai_ours_only_needs_no_peer_environment(work: Path) -> None:
    venv = work / "no-monai-venv"
    figures, _ = run_bench(
        "vs_monai",
        *("--ours-only", "--case", work / "data" / CASE_ID, "--config", work / "tiny.json"),
        *("--repeat", 1, "--venv", venv),
    )
    check(figures, "brainseg_case_seconds", 0, 300)
    check(figures, "brainseg_window_seconds", 0, 300)
    check(figures, "brainseg_free_window_seconds", 0, 300)
    assert not venv.exists()


def test_vs_monai_rejects_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.vs_monai", "--repeat", "0", "--ours-only"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "--repeat" in proc.stderr
