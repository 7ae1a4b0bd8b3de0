"""Runtime setup: TensorFlow starts without its C++ start-up log on stderr."""

from __future__ import annotations

import os
import subprocess
import sys

from brainseg_tf.runtime import STARTUP_LOG


def test_start_tensorflow_drops_the_start_up_log_and_keeps_stderr_working():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = (
        "import sys; from brainseg_tf import runtime; tf = runtime.start_tensorflow(); "
        "print(float(tf.reduce_sum(tf.ones(3)))); print('after', file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "3.0"
    assert done.stderr.strip() == "after", done.stderr  # no start-up log; descriptor 2 restored


def test_the_start_up_pattern_matches_what_tensorflow_prints():
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796598961.586931   27202 port.cc:153] oneDNN custom operations are on. You may see",
        "I0000 00:00:1796598961.767931   27202 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
        "E0000 00:00:1.0 1 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting to register factory",
    ]
    assert all(STARTUP_LOG.search(line) for line in lines)
    assert not STARTUP_LOG.search("ValueError: something real went wrong")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    from brainseg_tf import runtime

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\nbugs\t\t: none\n")
    assert runtime.cpu_flags(str(info)) == {"fpu", "sse2", "avx2", "fma"}
    assert runtime.cpu_flags(str(tmp_path / "missing")) is None


def test_bfloat16_on_a_cpu_without_native_bf16_warns(monkeypatch):
    import warnings

    import pytest

    from brainseg_tf import runtime

    monkeypatch.setattr(runtime, "tpu_available", lambda: False)
    monkeypatch.setattr(runtime, "cpu_flags", lambda path="/proc/cpuinfo": {"avx2", "fma"})
    with pytest.warns(RuntimeWarning, match=r"without native bfloat16 \(no avx512_bf16 / amx_bf16"):
        assert runtime.resolve_policy("bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(runtime, "cpu_flags", lambda path="/proc/cpuinfo": {"avx2", "avx512_bf16"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.resolve_policy("mixed_bfloat16") == "mixed_bfloat16"
        assert runtime.resolve_policy("off") == "float32"
