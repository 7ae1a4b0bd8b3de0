"""The memory planner: memory sizes, the estimate's terms, the nnU-Net-like choice, GPU checks, CLI (bench/gpu.py runs in tests/bench)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from brainseg_tf import plan

REPO = REPO_ROOT
TINY = {
    "model.options.depth": 2,
    "model.options.base_filters": 4,
    "model.options.max_filters": 8,
    "pipeline.patch_size": [32, 32, 32],
}


@pytest.fixture(scope="module")
def cfg():
    from brainseg_tf.training import load_config

    return load_config(REPO / "configs" / "demo_synthetic.json", overrides=TINY)


@pytest.fixture(scope="module")
def fp(cfg):
    return plan.footprint(cfg, "off")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("16GB", 16 * 10**9),
        ("16GiB", 16 * 2**30),
        ("512MB", 512 * 10**6),
        ("24000MiB", 24000 * 2**20),
        ("1.5 gib", int(1.5 * 2**30)),
        ("4096", 4096),
        (8 * 10**9, 8 * 10**9),
        ("2T", 2 * 10**12),
    ],
)
def test_parse_memory(text, expected):
    assert plan.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["12XB", "", "GB", "-1GB", "0GB", "16 G B", "1e9"])
def test_parse_memory_rejects(text):
    with pytest.raises(ValueError, match="memory="):
        plan.parse_memory(text)


def test_footprint_matches_a_model_built_at_another_size(cfg, fp):
    """The per-voxel layer sum read at the smallest size predicts the sum of a model built elsewhere."""
    import keras

    size = (16, 24, 40)  # anisotropic, multiples of the divisor (4)
    assert fp.divisor == (4, 4, 4) and fp.optimizer_slots == 2 and fp.outputs == 1
    model = cfg.model_spec.builder(**{**cfg.model.options, "in_channels": 4, "input_shape": list(size)})
    elements = sum(
        math.prod(layer.output.shape[1:]) for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
    )
    assert fp.activation_bytes_per_voxel * math.prod(size) == pytest.approx(elements * 4)  # float32
    assert fp.parameters == model.count_params()


def test_estimate_terms_and_monotone(fp):
    base = plan.estimate(fp, (16, 16, 16), 2)
    assert base.weights == fp.parameters * 4 * (2 + 2)  # weights, gradients, Adam m and v
    assert base.inputs == 2 * 16**3 * (4 * 4 + 1)  # float32 image with 4 channels, uint8 labels
    factor = plan.ACTIVATION_FACTORS["float32"]
    assert base.activations == int(factor * fp.activation_bytes_per_voxel * 2 * 16**3)
    assert base.total == base.weights + base.activations + base.inputs + base.workspace
    for bigger in [
        plan.estimate(fp, (20, 16, 16), 2),
        plan.estimate(fp, (16, 16, 20), 2),
        plan.estimate(fp, (16, 16, 16), 3),
    ]:
        assert bigger.total > base.total
    assert plan.estimate(fp, (32, 16, 16), 2).activations == pytest.approx(2 * base.activations, abs=1)


def test_estimate_mixed_precision_counts_half_width_outputs(cfg, fp):
    mixed = plan.footprint(cfg, "bfloat16")
    assert mixed.policy == "mixed_bfloat16" and mixed.parameters == fp.parameters
    # every layer but the float32 head halves its output bytes
    assert fp.activation_bytes_per_voxel / 2 < mixed.activation_bytes_per_voxel < fp.activation_bytes_per_voxel
    e32, e16 = plan.estimate(fp, (16, 16, 16), 2), plan.estimate(mixed, (16, 16, 16), 2)
    assert e16.weights == e32.weights + fp.parameters * 2  # bfloat16 copies of the weights


def test_estimate_rejects_invalid_sizes(fp):
    with pytest.raises(ValueError, match="not a valid input size"):
        plan.estimate(fp, (18, 16, 16), 2)
    with pytest.raises(ValueError, match="batch must be an integer >= 1, got 0"):
        plan.estimate(fp, (16, 16, 16), 0)


def _budget(fp, patch, batch, reserve=0.1):
    """The memory at which ``patch`` x ``batch`` just fits."""
    return int(plan.estimate(fp, patch, batch).total / (1 - reserve)) + 1


def test_propose_prefers_the_largest_patch_with_batch_two(cfg, fp):
    p = plan.propose(cfg, _budget(fp, (32, 32, 32), 2), fp=fp, max_size=(48, 48, 48), max_batch=2)
    assert (p.patch, p.batch) == ((32, 32, 32), 2)
    assert p.margin == pytest.approx(0.1, abs=1e-6) and p.alternatives[0] == p.estimate
    # just under: a smaller patch at batch 2 is preferred to 32^3 at batch 1 (which would fit)
    memory = _budget(fp, (32, 32, 32), 2) - 2 * 10**5
    assert plan.estimate(fp, (32, 32, 32), 1).total < memory * 0.9
    p = plan.propose(cfg, memory, fp=fp, max_size=(48, 48, 48), max_batch=2)
    assert p.batch == 2 and math.prod(p.patch) < 32**3
    assert all(plan.estimate(fp, a.patch, 2).total <= memory * 0.9 for a in p.alternatives)


def test_propose_grows_the_batch_then_falls_back_to_one(cfg, fp):
    p = plan.propose(cfg, _budget(fp, (32, 32, 32), 3), fp=fp, max_size=(32, 32, 32), max_batch=8)
    assert (p.patch, p.batch) == ((32, 32, 32), 3)
    p = plan.propose(cfg, _budget(fp, (4, 4, 4), 1), fp=fp, max_size=(32, 32, 32))
    assert (p.patch, p.batch) == ((4, 4, 4), 1)
    with pytest.raises(ValueError, match="nothing fits"):
        plan.propose(cfg, "10KB", fp=fp)


def test_propose_keeps_the_shape_of_max_size(cfg, fp):
    """Among equal voxel counts the patch closest to the shape of max_size wins (anisotropic data)."""
    p = plan.propose(cfg, _budget(fp, (32, 32, 16), 2), fp=fp, max_size=(64, 64, 32), max_batch=2)
    assert p.patch == (32, 32, 16)  # not (16, 32, 32), (8, 64, 32), ... of the same voxel count


def test_visible_gpu_memory_reads_nvidia_smi(monkeypatch):
    monkeypatch.setattr(plan.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    out = "0, 16160\n1, 24576\n"
    monkeypatch.setattr(plan.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=out))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert plan.visible_gpu_memory() == 16160 * 2**20  # the smallest bounds the per-replica batch
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert plan.visible_gpu_memory() == 24576 * 2**20
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert plan.visible_gpu_memory() is None
    monkeypatch.setattr(plan.shutil, "which", lambda name: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert plan.visible_gpu_memory() is None


def test_check_fits(cfg, monkeypatch):
    monkeypatch.setattr(plan, "visible_gpu_memory", lambda: None)
    assert plan.check_fits(cfg) is None  # no GPU: nothing checked
    assert plan.check_fits("no/such/recipe.json") is None  # ... and the recipe not even read
    needed = plan.estimate(plan.footprint(cfg), cfg.pipeline.patch_size, cfg.pipeline.batch_size).total
    assert plan.check_fits(cfg, memory=needed * 2) is None
    warning = plan.check_fits(cfg, memory=needed)
    assert "patch [32, 32, 32] x batch 2 under mixed_float16" in warning and "brainseg plan" in warning


def _console_script() -> str:
    return str(Path(sys.executable).parent / "brainseg")


def test_cli_help_and_bad_memory():
    help_ = subprocess.run([_console_script(), "plan", "--help"], capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "--memory" in help_.stdout and "--max-size" in help_.stdout
    bad = subprocess.run(
        [_console_script(), "plan", "--config", "configs/demo_synthetic.json", "--memory", "12XB"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "memory='12XB' is not a size" in bad.stderr


@pytest.mark.slow
def test_cli_plan_end_to_end(tmp_path, cfg, fp):
    recipe = json.loads((REPO / "configs" / "demo_synthetic.json").read_text())
    recipe["model"]["options"].update(depth=2, base_filters=4, max_filters=8)
    recipe["pipeline"]["patch_size"] = [32, 32, 32]
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(recipe))
    memory = _budget(fp, (24, 24, 24), 2)
    proc = subprocess.run(
        [_console_script(), "plan", "--config", str(path), "--memory", str(memory), "--precision", "off"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    expected = plan.propose(cfg, memory, "off", fp=fp)
    assert f"proposed: patch {'x'.join(map(str, expected.patch))}, batch 2" in proc.stdout
    assert "alternatives" in proc.stdout
    missing = subprocess.run(
        [_console_script(), "plan", "--config", str(tmp_path / "nope.json"), "--memory", "8GB"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "nope.json" in missing.stderr


@pytest.mark.slow
def test_measured_peak_counts_the_training_step(cfg, fp):
    """A real training step peaks above its weights, optimizer state and input batch."""
    measured = plan.measure_step_peak(cfg, (16, 16, 16), 2, steps=1, precision="off")
    e = plan.estimate(fp, (16, 16, 16), 2)
    assert measured["device"] == "CPU:0" and measured["policy"] == "float32"
    assert measured["peak"] > e.weights + e.inputs
