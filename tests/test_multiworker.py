"""Two training processes on localhost with ``TF_CONFIG`` (CPU, MultiWorkerMirroredStrategy, ring
collectives) train a few steps and end with identical weights; only the chief writes the run dir.

Instance norm on purpose: Keras 3 batch-norm moving statistics are per-replica variables (not
all-reduced), so with ``norm="batch"`` only the trainable weights would agree across workers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT

REPO = REPO_ROOT
TOY = REPO / "tests" / "scripts" / "toy_pipeline.py"
WORKER = REPO / "tests" / "scripts" / "multiworker_worker.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("localhost", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_end_with_identical_weights(tmp_path: Path) -> None:
    recipe = {
        "name": "mwms_toy",
        "split": {"method": "none"},
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "instance", "head": "softmax"}},
        "pipeline": {"kind": "custom", "builder": f"{TOY}:build", "patch_size": [16, 16, 16], "batch_size": 1},
        "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True},
        "schedule": {"name": "poly"},
        "validation": {"mode": "none"},
        "training": {"epochs": 2, "steps_per_epoch": 3, "verbose": 2, "seed": 1},
        "runtime": {"strategy": "multi_worker", "communication": "ring"},
    }
    path = tmp_path / "mwms.json"
    path.write_text(json.dumps(recipe))
    run_dir = tmp_path / "run"
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs, logs = [], []
    for index in range(2):
        env = dict(os.environ)
        env.update(
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
            CUDA_VISIBLE_DEVICES="",
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        log = (tmp_path / f"worker{index}.log").open("w")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(path), str(run_dir), str(tmp_path / f"w{index}.npz")],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        for p in procs:
            p.wait(timeout=200)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    for i, p in enumerate(procs):
        assert p.returncode == 0, (tmp_path / f"worker{i}.log").read_text()[-4000:]

    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert bool(w0["is_chief"]) and not bool(w1["is_chief"])
    assert int(w0["epochs"]) == int(w1["epochs"]) == 2
    keys = [k for k in w0.files if k.startswith("w")]
    assert keys and sorted(keys) == sorted(k for k in w1.files if k.startswith("w"))
    for k in keys:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
    # Training moved the weights (the test would be vacuous otherwise): the chief's run dir
    # recorded 2 × 3 optimizer steps on a global batch of 2 (1 per worker).
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["optimizer_steps"] == 6 and metrics["replicas"] == 2 and metrics["global_batch_size"] == 2
    resolved = json.loads((run_dir / "config.json").read_text())["resolved_runtime"]
    assert resolved["strategy"] == "MultiWorkerMirroredStrategy"
    # Only the chief writes the run directory; the other worker keeps its resume state apart.
    assert (run_dir / "final.keras").exists()
    assert (run_dir / "workers" / "worker_1" / "backup").is_dir()
    assert not (run_dir / "workers" / "worker_1" / "final.keras").exists()
