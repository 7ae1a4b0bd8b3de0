"""Runtime setup for notebooks and scripts: devices, mixed precision, seeds, quiet logs, extras.

``setup()`` is what the first cell of every notebook calls after installing the package; it
works the same on Colab, Kaggle and a local CPU machine. :func:`import_optional` imports a module
of an optional extra (``brainseg_tf[onnx]``, ...) and names the ``pip install`` when it is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any


class OptionalDependencyError(ImportError):
    """An optional extra is not installed; the message names the ``pip install`` that adds it."""


def import_optional(module: str, extra: str) -> Any:
    """Import ``module`` of the optional extra ``brainseg_tf[extra]``.

    Raises:
        OptionalDependencyError: the module cannot be imported (the message names the extra).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OptionalDependencyError(
            f"{module} is not installed ({exc}); install brainseg_tf[{extra}]: pip install 'brainseg_tf[{extra}]'"
        ) from None


def in_colab() -> bool:
    return "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ


def in_kaggle() -> bool:
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ or os.path.isdir("/kaggle/input")


#: Every accepted name of a dtype policy -> the Keras policy (recipes say ``off``/``float16``/``bfloat16``).
POLICIES = {
    "float32": "float32",
    "off": "float32",
    "mixed_float16": "mixed_float16",
    "float16": "mixed_float16",
    "mixed_bfloat16": "mixed_bfloat16",
    "bfloat16": "mixed_bfloat16",
}


def tpu_available() -> bool:
    """Whether a TPU runtime announces itself (probing a resolver without a hint costs seconds)."""
    hints = ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE", "TPU_WORKER_ID")
    return any(os.environ.get(h) for h in hints) or os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")


def resolve_policy(setting: str = "auto") -> str:
    """The one owner of the dtype policy: the Keras policy name for a setting.

    ``auto`` is ``mixed_bfloat16`` on a TPU, ``mixed_float16`` on a GPU and ``float32`` on CPU;
    otherwise any key of :data:`POLICIES` (``float32``/``off``, ``mixed_float16``/``float16``,
    ``mixed_bfloat16``/``bfloat16``).

    Raises:
        ValueError: an unknown setting (the accepted ones are listed).
    """
    if setting == "auto":
        if tpu_available():
            return "mixed_bfloat16"
        import tensorflow as tf

        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    if setting not in POLICIES:
        raise ValueError(f"mixed_precision={setting!r} is unknown; expected 'auto' or one of {sorted(POLICIES)}")
    policy = POLICIES[setting]
    if policy == "mixed_bfloat16" and not tpu_available():
        _warn_emulated_bfloat16()
    return policy


#: CPU flags of native bfloat16 arithmetic (Linux ``/proc/cpuinfo``); without one, TensorFlow emulates it.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU feature flags the kernel reports, or ``None`` where they cannot be read (not Linux)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def _warn_emulated_bfloat16() -> None:
    """Warn when ``mixed_bfloat16`` would run on a CPU without native bfloat16 (and no GPU)."""
    flags = cpu_flags()
    if flags is None or flags & set(BF16_CPU_FLAGS):
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    import warnings

    warnings.warn(
        "mixed_precision='bfloat16' on a CPU without native bfloat16 (no "
        f"{' / '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo): TensorFlow emulates it, several times slower "
        "than float32 (docs/benchmarks.md, 'Mixed precision on CPUs'); set runtime.mixed_precision to 'off' "
        "or 'auto' on this machine",
        RuntimeWarning,
        stacklevel=3,
    )


#: What TensorFlow's C++ side prints on import and on its first op (absl, oneDNN, CPU features,
#: CUDA plugin registration): harmless, but red in a notebook, where students take it for an error.
STARTUP_LOG = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|TensorFlow binary is optimized"
    r"|To enable the following instructions|rebuild TensorFlow with the appropriate compiler flags"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|Attempting to register factory|computation_placer"
    r"|TF-TRT Warning|^\s*$"
)


@contextlib.contextmanager
def _stderr_fd_captured(lines: list[str]) -> Iterator[None]:
    """Send file descriptor 2 (where C++ logs go) to a temporary file for the block; its lines
    are appended to ``lines`` afterwards."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (an embedded interpreter): nothing to capture
        yield
        return
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                tmp.seek(0)
                lines.extend(tmp.read().decode(errors="replace").splitlines())
    finally:
        os.close(saved)


def _grow_gpu_memory(tf: Any) -> None:
    """Shared Colab/Kaggle GPUs: let memory grow instead of grabbing it all (a no-op once the GPU
    is initialised, which raises RuntimeError)."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass


def _first_tensorflow_op() -> Any:
    import tensorflow as tf

    _grow_gpu_memory(tf)
    (tf.constant(1) + 1).numpy()  # the first op prints the rest of the start-up log
    return tf


def start_tensorflow() -> Any:
    """Import TensorFlow, let GPUs grow their memory, and run a first op, without the start-up log.

    The C++ start-up lines (:data:`STARTUP_LOG`) are dropped; anything else TensorFlow printed
    meanwhile is passed on to ``sys.stderr``. Where TensorFlow was imported before, this only sets
    the memory growth (a no-op once a GPU is initialised) and returns the module.

    Returns:
        The ``tensorflow`` module.
    """
    if "tensorflow" in sys.modules:  # imported before: only the memory growth is still to set
        tf = sys.modules["tensorflow"]
        _grow_gpu_memory(tf)
        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    lines: list[str] = []
    try:
        with _stderr_fd_captured(lines):
            tf = _first_tensorflow_op()
    finally:
        kept = [ln for ln in lines if not STARTUP_LOG.search(ln)]
        if kept:
            print("\n".join(kept), file=sys.stderr)
    return tf


def setup(*, mixed_precision: str = "auto", seed: int | None = 0, verbose: bool = True) -> dict:
    """Detect accelerators, pick the dtype policy and seed everything.

    Args:
        mixed_precision: ``"auto"`` or a policy name (see :func:`resolve_policy`).
        seed: seed for Python, NumPy and TensorFlow (``None`` leaves them alone).
        verbose: print one line per fact.

    Returns:
        ``{"platform", "tensorflow", "keras", "gpus", "policy"}``.
    """
    tf = start_tensorflow()
    import keras

    gpus = tf.config.list_physical_devices("GPU")
    policy = resolve_policy(mixed_precision)
    keras.config.set_dtype_policy(policy)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    where = "Colab" if in_colab() else "Kaggle" if in_kaggle() else platform.node() or "local"
    info = {
        "platform": where,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "gpus": [g.name for g in gpus],
        "policy": policy,
    }
    if verbose:
        print(f"running on {where}: TensorFlow {tf.__version__}, Keras {keras.__version__}")
        print(f"GPUs: {info['gpus'] or 'none (CPU only)'}; dtype policy: {policy}")
    return info


def dataset_or_synthetic(
    data_dir: str | os.PathLike | None,
    work_dir: str | os.PathLike = "runs/notebooks",
    *,
    n_cases: int = 6,
    shape: tuple[int, int, int] = (240, 240, 155),
    layout: str = "brats2021",
    seed: int = 0,
) -> str:
    """The dataset folder to use: ``data_dir`` when given, else a synthetic one under ``work_dir``.

    The synthetic dataset is generated once and reused while it holds ``n_cases`` cases of
    ``shape`` (so a cache built from it stays valid across notebooks).
    """
    from pathlib import Path

    if data_dir is not None:
        path = Path(data_dir)
        if not path.exists():
            raise FileNotFoundError(f"DATA_DIR={str(path)!r} does not exist")
        return str(path)
    from brainseg_tf import synthetic

    out = Path(work_dir) / f"synthetic_{layout}_{n_cases}x{'x'.join(map(str, shape))}_s{seed}"
    return str(synthetic.ensure_dataset(out, layout=layout, n_cases=n_cases, seed=seed, shape=tuple(shape)))
