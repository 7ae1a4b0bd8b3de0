"""Memory planning: the patch and batch size of a recipe that fit an accelerator's memory.

nnU-Net's experiment planner picks the largest patch that keeps the batch at 2 or more within a
GPU memory budget; :func:`propose` does the same for a recipe's model and dtype policy, using an
estimate of the training step's peak memory that is calibrated against measured peaks
(``bench/plan_calibration.py``; method and figures in ``docs/planning.md``)::

    peak ≈ params × 4 B × (1 weights + 1 gradients + optimizer slots)
         + params × compute bytes                         (mixed precision: cast weight copies)
         + ACTIVATION_FACTORS[policy] × Σ_layers output bytes  (batch × patch, compute dtype per layer)
         + input batch (image float32 + uint8 labels and their deep-supervision copies)
         + WORKSPACE_BYTES

The layer sum is read once from the recipe's model built at its smallest valid input size:
every registered model is same-padded, so each layer's output scales exactly with the patch's
voxel count. Sizes are spatial, channels-last, in the order of ``pipeline.patch_size``.

Usage::

    from brainseg_tf import plan
    cfg = training.load_config("configs/gpu_recommended.json")
    p = plan.propose(cfg, plan.parse_memory("16GB"))
    p.patch, p.batch, p.estimate.total, p.margin

    brainseg plan --config configs/gpu_recommended.json --memory 16GB
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from brainseg_tf.checks import check_fraction, check_int, check_int_sequence, is_number
from brainseg_tf.runtime import POLICIES

__all__ = [
    "ACTIVATION_FACTORS",
    "WORKSPACE_BYTES",
    "Footprint",
    "Estimate",
    "Proposal",
    "parse_memory",
    "format_bytes",
    "footprint",
    "estimate",
    "propose",
    "format_proposal",
    "visible_gpu_memory",
    "plan_recipe",
    "check_fits",
    "measure_step_peak",
]

# Fitted by bench/plan_calibration.py to the TensorFlow allocator's measured training peaks (the
# points, the held-out errors and the open GPU check: docs/planning.md). Mixed policies need more
# per output byte because normalisation and the loss run in float32; a free constant term fitted
# negative, so WORKSPACE_BYTES is 0.
ACTIVATION_FACTORS = {"float32": 1.1817, "mixed": 1.7522}
WORKSPACE_BYTES = 0

#: Fraction of the accelerator memory the planner leaves free by default (CUDA context, cuDNN
#: workspaces and allocator fragmentation are outside the estimate).
DEFAULT_RESERVE = 0.1

_SLOTS = {"adam": 2, "adamw": 2, "nadam": 2}
_UNITS = {
    "": 1,
    "B": 1,
    "K": 10**3,
    "KB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "T": 10**12,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_memory(text: str | int) -> int:
    """Bytes in a memory size: ``"16GB"`` (10^9), ``"16GiB"`` (2^30), ``"512MB"``, ``"1.5 TiB"``, or a number of bytes.

    Units are case-insensitive: K/KB/M/MB/G/GB/T/TB are decimal, KiB/MiB/GiB/TiB binary; a bare
    number is bytes. A card sold as "16GB" has about 16 GiB; ``nvidia-smi`` reports MiB.

    Raises:
        ValueError: not a positive size with a known unit (the text is quoted).
    """
    if is_number(text):
        value, unit = float(text), ""
    else:
        match = _MEMORY.match(str(text))
        if match is None or match.group(2).upper() not in _UNITS:
            raise ValueError(
                f"memory={text!r} is not a size; expected a number and a unit such as 16GB, 16GiB, 512MB or 24000MiB"
            )
        value, unit = float(match.group(1)), match.group(2).upper()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"memory={text!r} must be > 0")
    return size


def format_bytes(n: float) -> str:
    """``n`` bytes as GiB/MiB with one decimal (``"14.3 GiB"``)."""
    return f"{n / 2**30:.1f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"


@dataclass(frozen=True)
class Footprint:
    """What the estimate needs to know of a recipe's model under one dtype policy.

    Attributes:
        model: registry name.
        policy: Keras dtype policy (``float32``, ``mixed_float16``, ``mixed_bfloat16``).
        parameters: all weights (trainable and not), in float32.
        optimizer_slots: per-parameter optimizer state (Adam 2, SGD with momentum 1).
        activation_bytes_per_voxel: Σ over layers of output bytes per input voxel per sample.
        in_channels, out_channels, outputs: model input channels, head channels, number of outputs
            (deep supervision adds lower-resolution ones).
        divisor, fixed: per-axis input divisor and required size (``None`` where free).
    """

    model: str
    policy: str
    parameters: int
    optimizer_slots: int
    activation_bytes_per_voxel: float
    in_channels: int
    out_channels: int
    outputs: int
    divisor: tuple[int, ...]
    fixed: tuple[int | None, ...]


@dataclass(frozen=True)
class Estimate:
    """Estimated peak memory of one training step, in bytes, by part."""

    patch: tuple[int, ...]
    batch: int
    policy: str
    weights: int
    activations: int
    inputs: int
    workspace: int

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.inputs + self.workspace


@dataclass(frozen=True)
class Proposal:
    """A patch and batch that fit ``memory`` bytes, with the alternatives considered.

    ``margin`` is the share of ``memory`` left free by the estimate (``1 - total / memory``);
    ``alternatives`` are the largest fitting patches at batch 2 (or 1), best first.
    """

    model: str
    policy: str
    memory: int
    reserve: float
    patch: tuple[int, ...]
    batch: int
    estimate: Estimate
    alternatives: tuple[Estimate, ...]

    @property
    def margin(self) -> float:
        return 1.0 - self.estimate.total / self.memory


def _policy(cfg: Any, precision: str | None) -> str:
    """The Keras policy planned for: ``precision`` or the recipe's; ``auto`` means a GPU's ``mixed_float16``."""
    setting = cfg.runtime.mixed_precision if precision is None else precision
    if setting == "auto":
        return "mixed_float16"
    if setting not in POLICIES:
        raise ValueError(f"precision={setting!r} is unknown; expected 'auto' or one of {sorted(POLICIES)}")
    return POLICIES[setting]


def _slots(cfg: Any) -> int:
    o = cfg.optimizer
    if o.name == "sgd":
        return 1 if o.momentum > 0 else 0
    return _SLOTS[o.name]


def _model_options(cfg: Any, size: Sequence[int]) -> dict[str, Any]:
    spec = cfg.model_spec
    opts = dict(cfg.model.options)
    if "in_channels" in spec.defaults:
        opts.setdefault("in_channels", len(cfg.data.modalities))
    if "input_shape" in spec.defaults:
        opts["input_shape"] = list(size)
    return opts


def _layer_output_bytes(model: Any) -> int:
    """Σ over the model's layers (nested models' layers included) of output bytes for the built input."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model) and all(d is not None for t in layer.outputs for d in t.shape[1:]):
            total += _layer_output_bytes(layer)
            continue
        for t in keras.tree.flatten(layer.output):
            if any(d is None for d in t.shape[1:]):
                # e.g. een's EfficientNet encoder, built for any size and called on a sized tensor
                raise ValueError(
                    f"layer {layer.name!r} of model {model.name!r} has outputs of undefined size "
                    f"{tuple(t.shape)} at a fixed input size: the planner cannot estimate this model"
                )
            total += math.prod(int(d) for d in t.shape[1:]) * _dtype_bytes(t.dtype)
    return total


def _dtype_bytes(dtype: Any) -> int:
    import numpy as np

    name = str(getattr(dtype, "name", dtype))
    return 2 if name == "bfloat16" else int(np.dtype(name).itemsize)


def footprint(cfg: Any, precision: str | None = None) -> Footprint:
    """Build the recipe's model once, at its smallest valid size, and read what the estimate needs.

    Args:
        cfg: a :class:`~brainseg_tf.training.TrainConfig`.
        precision: ``None`` (the recipe's ``runtime.mixed_precision``), ``auto`` (a GPU's
            ``mixed_float16``) or a policy name (``off``/``float32``, ``float16``, ``bfloat16``).
    """
    import keras

    policy = _policy(cfg, precision)
    spec = cfg.model_spec
    opts = _model_options(cfg, cfg.pipeline.patch_size)
    divisor, fixed = spec.size_divisor(opts), spec.required_size(opts)
    size = spec.fit_size(divisor, opts)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = spec.builder(**_model_options(cfg, size))
        act = _layer_output_bytes(model)
        params = int(sum(math.prod(v.shape) for v in model.weights))
        outputs = len(model.outputs)
    finally:
        keras.config.set_dtype_policy(previous)
    fp = Footprint(
        model=cfg.model.name,
        policy=policy,
        parameters=params,
        optimizer_slots=_slots(cfg),
        activation_bytes_per_voxel=act / math.prod(size),
        in_channels=len(cfg.data.modalities),
        out_channels=cfg.out_channels,
        outputs=outputs,
        divisor=divisor,
        fixed=fixed,
    )
    del model
    keras.backend.clear_session()
    return fp


def estimate(fp: Footprint, patch: Sequence[int], batch: int) -> Estimate:
    """Estimated peak bytes of a training step of ``batch`` patches of ``patch`` voxels.

    Raises:
        ValueError: a patch the model does not accept (not a multiple of the divisor, or not the
            required size on a fixed axis) or a batch below 1.
    """
    patch = tuple(int(n) for n in patch)
    if len(patch) != len(fp.divisor):
        raise ValueError(f"patch={list(patch)} must have {len(fp.divisor)} sizes for {fp.model!r}")
    for n, d, f in zip(patch, fp.divisor, fp.fixed):
        if n < 1 or n % d or (f is not None and n != f):
            raise ValueError(
                f"patch={list(patch)} is not a valid input size for {fp.model!r} "
                f"(multiples of {list(fp.divisor)}, fixed {list(fp.fixed)})"
            )
    check_int("batch", batch)
    voxels = math.prod(patch) * batch
    compute = 4 if fp.policy == "float32" else 2
    weights = fp.parameters * 4 * (2 + fp.optimizer_slots) + (0 if compute == 4 else fp.parameters * compute)
    labels = sum(voxels // 2 ** (i * len(patch)) for i in range(fp.outputs))  # uint8, one per output
    inputs = voxels * fp.in_channels * 4 + labels
    factor = ACTIVATION_FACTORS["float32" if fp.policy == "float32" else "mixed"]
    activations = int(factor * fp.activation_bytes_per_voxel * voxels)
    return Estimate(
        patch=patch,
        batch=batch,
        policy=fp.policy,
        weights=weights,
        activations=activations,
        inputs=inputs,
        workspace=WORKSPACE_BYTES,
    )


def _candidates(fp: Footprint, max_size: Sequence[int]) -> list[tuple[int, ...]]:
    """Valid patches up to ``max_size``, largest first (ties: closest to the shape of ``max_size``)."""
    axes = []
    for top, d, f in zip(max_size, fp.divisor, fp.fixed):
        axes.append([f] if f is not None else list(range(d, max(d, top // d * d) + 1, d)))

    def key(p: tuple[int, ...]) -> tuple[float, float]:
        ratios = [n / m for n, m in zip(p, max_size)]
        return (-math.prod(p), max(ratios) - min(ratios))

    return sorted(itertools.product(*axes), key=key)


def propose(
    cfg: Any,
    memory: int | str,
    precision: str | None = None,
    *,
    max_size: Sequence[int] | None = None,
    max_batch: int | None = None,
    min_batch: int = 2,
    reserve: float = DEFAULT_RESERVE,
    fp: Footprint | None = None,
) -> Proposal:
    """The largest patch whose training step fits ``memory`` with a batch of at least ``min_batch``.

    As nnU-Net's planner: the patch grows first (up to ``max_size``) while ``min_batch`` patches
    fit; the batch then grows up to ``max_batch`` with that patch. Where not even ``min_batch``
    smallest patches fit, batch 1 is tried before giving up.

    Args:
        cfg: a :class:`~brainseg_tf.training.TrainConfig` (model, modalities, optimizer, precision).
        memory: accelerator memory in bytes, or a size string (:func:`parse_memory`).
        precision: see :func:`footprint` (``None``: the recipe's).
        max_size: per-axis upper bound, e.g. the median cropped case; default the recipe's
            ``pipeline.patch_size`` (the planner then only shrinks what the recipe asks).
        max_batch: default ``max(pipeline.batch_size, min_batch)``.
        reserve: share of ``memory`` kept free beyond the estimate.
        fp: a :class:`Footprint` already computed for ``cfg`` (skips the model build).

    Raises:
        ValueError: bad arguments, or nothing fits (the smallest estimate is quoted).
    """
    memory = parse_memory(memory)
    check_fraction("reserve", reserve)
    check_int("min_batch", min_batch)
    fp = fp or footprint(cfg, precision)
    max_size = check_int_sequence("max_size", max_size or cfg.pipeline.patch_size, length=len(fp.divisor))
    max_batch = max(max_batch or cfg.pipeline.batch_size, min_batch)
    budget = memory * (1 - reserve)
    candidates = _candidates(fp, max_size)
    for batch in dict.fromkeys((min_batch, 1)):
        fits = [e for e in (estimate(fp, p, batch) for p in candidates) if e.total <= budget]
        if fits:
            best = fits[0]
            while best.batch < max_batch and estimate(fp, best.patch, best.batch + 1).total <= budget:
                best = estimate(fp, best.patch, best.batch + 1)
            return Proposal(
                model=fp.model,
                policy=fp.policy,
                memory=memory,
                reserve=reserve,
                patch=best.patch,
                batch=best.batch,
                estimate=best,
                alternatives=tuple(fits[:8]),
            )
    smallest = estimate(fp, candidates[-1], 1)
    raise ValueError(
        f"nothing fits {format_bytes(memory)} (reserve {reserve:.0%}) for {fp.model!r} under "
        f"{fp.policy}: the smallest patch {list(smallest.patch)} at batch 1 needs about "
        f"{format_bytes(smallest.total)}"
    )


def format_proposal(p: Proposal) -> str:
    """The proposal and its alternatives as a plain-text table."""
    e = p.estimate
    lines = [
        f"model {p.model}, policy {p.policy}, memory {format_bytes(p.memory)} (reserve {p.reserve:.0%})",
        f"proposed: patch {'x'.join(map(str, p.patch))}, batch {p.batch}: estimated peak "
        f"{format_bytes(e.total)} ({p.margin:.0%} of memory free)",
        f"  weights+grads+optimizer {format_bytes(e.weights)}, activations {format_bytes(e.activations)}, "
        f"inputs {format_bytes(e.inputs)}, workspace {format_bytes(e.workspace)}",
        "alternatives (largest patches that fit):",
        f"  {'patch':>14s}  {'batch':>5s}  {'estimate':>10s}  {'free':>5s}",
    ]
    for a in p.alternatives:
        lines.append(
            f"  {'x'.join(map(str, a.patch)):>14s}  {a.batch:5d}  {format_bytes(a.total):>10s}  "
            f"{1 - a.total / p.memory:5.0%}"
        )
    return "\n".join(lines)


def visible_gpu_memory() -> int | None:
    """Total bytes of the smallest visible NVIDIA GPU (``nvidia-smi``), ``None`` without one.

    ``CUDA_VISIBLE_DEVICES`` (numeric indices) selects the GPUs considered; with
    ``MirroredStrategy`` each GPU holds one replica, so the smallest one bounds the per-replica batch.
    """
    exe = shutil.which("nvidia-smi")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if exe is None or visible in ("", "-1"):
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.split(",") for line in out.strip().splitlines() if line.count(",") == 1]
    keep = None if visible is None else {v.strip() for v in visible.split(",")}
    if keep is not None and not all(v.isdigit() for v in keep):
        keep = None  # GPU UUIDs: all GPUs are considered
    sizes = [int(float(m)) * 2**20 for i, m in rows if keep is None or i.strip() in keep]
    return min(sizes) if sizes else None


def _load(recipe: Any) -> Any:
    """A ``TrainConfig`` as given, or read from a recipe path or name (``configs/<name>.json``)."""
    from brainseg_tf.training.config import TrainConfig, find_recipe, load_config

    return recipe if isinstance(recipe, TrainConfig) else load_config(find_recipe(recipe))


def plan_recipe(recipe: Any, memory: int | str | None = None, precision: str | None = None, **kwargs: Any) -> Proposal:
    """:func:`propose` for a recipe path, name or ``TrainConfig``; ``memory`` ``None``: the visible GPU's.

    Raises:
        ValueError: no ``memory`` and no visible GPU, or what :func:`propose` raises.
        FileNotFoundError: no such recipe.
    """
    cfg = _load(recipe)
    if memory is None:
        memory = visible_gpu_memory()
        if memory is None:
            raise ValueError("no memory given and no GPU visible (nvidia-smi); pass e.g. --memory 16GB")
    return propose(cfg, memory, precision, **kwargs)


def check_fits(recipe: Any, memory: int | None = None, *, reserve: float = DEFAULT_RESERVE) -> str | None:
    """A warning when the recipe's patch and batch will not fit the visible GPU; ``None`` when it does.

    Without a GPU (and no ``memory`` given) nothing is checked and the recipe is not read. The
    recipe's ``runtime.mixed_precision: "auto"`` is planned as ``mixed_float16`` (what it is on a GPU).

    Args:
        recipe: a ``TrainConfig``, or a recipe path or name.
        memory: bytes per GPU (default: the smallest visible GPU's, :func:`visible_gpu_memory`).
    """
    memory = visible_gpu_memory() if memory is None else memory
    if memory is None:
        return None
    cfg = _load(recipe)
    fp = footprint(cfg)
    e = estimate(fp, cfg.pipeline.patch_size, cfg.pipeline.batch_size)
    if e.total <= memory * (1 - reserve):
        return None
    advice = ""
    try:
        p = propose(cfg, memory, reserve=reserve, fp=fp, max_batch=cfg.pipeline.batch_size)
        advice = f"; `brainseg plan` proposes patch {list(p.patch)}, batch {p.batch} ({format_bytes(p.estimate.total)})"
    except ValueError as exc:
        advice = f"; {exc}"
    return (
        f"recipe {cfg.name!r}: patch {list(cfg.pipeline.patch_size)} x batch {cfg.pipeline.batch_size} under "
        f"{fp.policy} needs about {format_bytes(e.total)} per GPU, more than {1 - reserve:.0%} of the "
        f"{format_bytes(memory)} visible{advice}"
    )


def measure_step_peak(
    cfg: Any, patch: Sequence[int], batch: int, *, steps: int = 3, precision: str | None = None, xla: bool = False
) -> dict[str, Any]:
    """Train the recipe's model for ``steps`` steps on a random batch here and read the peak memory.

    The model, loss (deep-supervision weights included), metrics and optimizer are the recipe's;
    the batch is random float32 images and uint8 labels (0-3). The peak is the TensorFlow
    allocator's (``get_memory_info(device)["peak"]``, reset after the model is built, so it counts
    weights, optimizer state, activations and temporaries); ``rss_peak`` is the process's VmHWM
    for reference. Run it in a fresh process per size: allocator peaks and RSS only grow.

    Returns:
        ``{"device", "policy", "patch", "batch", "peak", "after_build", "rss_peak", "seconds_per_step"}``.

    Raises:
        RuntimeError: the allocator keeps no statistics (a CPU without ``TF_CPU_ALLOCATOR_USE_BFC=true``).
    """
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    from brainseg_tf.training import factories
    from brainseg_tf.training.data import finish_dataset

    policy = _policy(cfg, precision)
    device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
    keras.config.set_dtype_policy(policy)
    model = cfg.model_spec.builder(**_model_options(cfg, patch))
    n_outputs = len(model.outputs)
    factories.compile_model(model, cfg, xla=xla)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *patch, len(cfg.data.modalities)), dtype=np.float32)
    y = rng.integers(0, 4, size=(batch, *patch), dtype=np.uint8)
    ds = finish_dataset(tf.data.Dataset.from_tensors((x, y)).repeat(), cfg, n_outputs, False)
    try:
        after_build = tf.config.experimental.get_memory_info(device)["current"]
    except ValueError as exc:  # the CPU allocator of this build keeps no statistics
        raise RuntimeError(
            f"{device}: TensorFlow's allocator keeps no memory statistics here ({exc}); set the environment "
            f"variable TF_CPU_ALLOCATOR_USE_BFC=true before TensorFlow starts (the bench scripts do)"
        ) from None
    tf.config.experimental.reset_memory_stats(device)
    model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)  # trace, build optimizer state
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = (time.perf_counter() - start) / steps
    peak = tf.config.experimental.get_memory_info(device)["peak"]
    return {
        "device": device,
        "policy": policy,
        "patch": list(patch),
        "batch": batch,
        "peak": int(peak),
        "after_build": int(after_build),
        "rss_peak": _vm_hwm(),
        "seconds_per_step": seconds,
    }


def _vm_hwm() -> int | None:
    """Peak resident set size of this process in bytes (Linux ``/proc/self/status``), else ``None``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
