"""Runtime setup for notebooks and scripts: devices, mixed precision, seeds, quiet logs.

``setup()`` is what the first cell of every notebook calls after installing the package; it
works the same on Colab, Kaggle and a local CPU machine.
"""

from __future__ import annotations

import os
import platform


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
    return POLICIES[setting]


def setup(*, mixed_precision: str = "auto", seed: int | None = 0, verbose: bool = True) -> dict:
    """Detect accelerators, pick the dtype policy and seed everything.

    Args:
        mixed_precision: ``"auto"`` or a policy name (see :func:`resolve_policy`).
        seed: seed for Python, NumPy and TensorFlow (``None`` leaves them alone).
        verbose: print one line per fact.

    Returns:
        ``{"platform", "tensorflow", "keras", "gpus", "policy"}``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:  # do not grab all GPU memory up front (shared Colab/Kaggle sessions)
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass
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
