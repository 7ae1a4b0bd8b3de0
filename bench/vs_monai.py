"""brainseg_tf vs MONAI on the same case in one run: MONAI's ``sliding_window_inference`` with the tutorial's SegResNet.

    python -m bench.vs_monai [--case CASE_DIR] [--config configs/cpu_brats2018.json] [--model RUN_DIR]
                             [--repeat 3] [--venv .venv-monai] [--ours-only]

The peer runs in its own environment, never in the project's: on first use this script creates
``--venv`` (default ``.venv-monai``, git-ignored) with ``pip install torch==2.13.0 monai==1.6.1``
(the CPU torch build; about 1 GiB) and re-executes itself there for the MONAI timings. It is not
part of the test suite, except ``--ours-only``: our side alone, no peer environment (a quick check
of the script). Run it with the project's interpreter (``.venv/bin/python``).

Both sides get the same input: this process reads the case and preprocesses it as brainseg_tf
does (crop to the brain box, z-score inside the brain, background 0); the array is handed to the
MONAI process as ``.npy`` (channels first there), so the comparison is the inference itself.

* brainseg_tf: ``bench.inference`` on the case (``--config``'s model, precision and window plan; its
  per-stage table), end to end (read -> write) and its sliding-window stage alone.
* MONAI 1.6.1 / torch 2.13.0 CPU, 2 threads, ``torch.inference_mode``: the BraTS tutorial's
  ``SegResNet(blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], init_filters=16, in_channels=4,
  out_channels=3, dropout_prob=0.2)`` (Project-MONAI/tutorials 3d_segmentation/
  brats_segmentation_3d.ipynb), untrained (``torch.manual_seed(0)``: speed does not depend on the
  weights), timed (a) as the tutorial infers: the whole 240 x 240 x 155 volume,
  ``sliding_window_inference(roi_size=(240, 240, 160), sw_batch_size=1, overlap=0.5)`` (one
  padded window, constant blending); (b) like for like with our recipe: the brain box, the recipe's
  patch as roi (96^3), overlap 0.5, Gaussian blending (sigma 0.125 roi, as ours); (c) the window machinery alone
  with a free "model" (returns its first 3 input channels), against ours with a free model.

Every timing is the fastest of ``--repeat`` runs, wall and process CPU time (all threads; the
machine is shared, so CPU time is the steadier figure); the load average is printed beside them.
Ratios are MONAI seconds / brainseg_tf seconds (above 1: brainseg_tf is faster).
The last line is ``monai_tutorial_seconds=<float> brainseg_case_seconds=<float> ratio=<float>``;
with ``--ours-only``, ``brainseg_case_seconds=<float> brainseg_window_seconds=<float>
brainseg_free_window_seconds=<float>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import inference as bench_inference
from bench.common import (
    CONFIGS,
    DEFAULT_CASE,
    REPO_ROOT,
    best_of,
    ensure_venv,
    load_average,
    peak_rss_gib,
    positive_int,
    print_figures,
    run_worker,
    summary,
)

PEER_PINS = ("torch==2.13.0", "monai==1.6.1")
TUTORIAL_ROI = (240, 240, 160)
SEGRESNET = dict(
    blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], init_filters=16, in_channels=4, out_channels=3, dropout_prob=0.2
)


# ----------------------------------------------------------------------------- MONAI side (peer venv)


def monai_worker(box_path: str, native_path: str, repeat: int, threads: int, roi: tuple[int, ...]) -> dict[str, Any]:
    """The MONAI timings (runs inside the peer venv); inputs are ``(X, Y, Z, C)`` float32 ``.npy``."""
    import monai
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import SegResNet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = SegResNet(**SEGRESNET).eval()
    calls = [0]

    def model(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return net(x)

    def free(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return x[:, :3]

    def chw(path: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.load(path), -1, 0)))[None]

    box, native = chw(box_path), chw(native_path)
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "monai": monai.__version__,
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in net.parameters()),
        "box": list(box.shape[2:]),
        "native": list(native.shape[2:]),
        "load_average_start": load_average(),
    }

    def timed(name: str, predictor: Callable, image: torch.Tensor, **kw: Any) -> None:
        with torch.inference_mode():
            predictor(torch.zeros((1, 4, *kw["roi_size"])))  # warm-up at the window size
            calls[0] = 0
            out[f"{name}_s"], out[f"{name}_cpu_s"] = best_of(
                lambda: sliding_window_inference(image, predictor=predictor, **kw), repeat
            )
            out[f"{name}_forwards"] = calls[0] // repeat
        out[f"{name}_peak_rss_gb"] = peak_rss_gib()

    like = dict(roi_size=tuple(roi), sw_batch_size=1, overlap=0.5, mode="gaussian", sigma_scale=0.125)
    timed("free_96", free, box, **like)
    with torch.inference_mode():
        window = torch.zeros((1, 4, *roi))
        net(window)
        out["forward_96_s"], out["forward_96_cpu_s"] = best_of(lambda: net(window), repeat)
    timed("segresnet_96", model, box, **like)
    timed("tutorial", model, native, roi_size=TUTORIAL_ROI, sw_batch_size=1, overlap=0.5)
    out["load_average_end"] = load_average()
    return out


# ----------------------------------------------------------------------------- peer environment


def ensure_peer_venv(venv: Path) -> Path:
    """The peer venv's python with :data:`PEER_PINS` (:func:`bench.common.ensure_venv`)."""
    return ensure_venv(venv, PEER_PINS, "CPU torch, about 1 GiB")


# ----------------------------------------------------------------------------- brainseg_tf side


def recipe_roi(config: str) -> tuple[int, ...]:
    """The recipe's training patch: the like-for-like window of both sides."""
    from brainseg_tf.training.config import load_config

    return tuple(int(s) for s in load_config(config).pipeline.patch_size)


def prepare_inputs(case: str, tmp: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Preprocess the case as brainseg_tf does; write the box and its paste-back to the native grid."""
    import numpy as np

    from brainseg_tf import io as bio
    from brainseg_tf.data.preprocess import paste_back, preprocess_case

    pre = preprocess_case(bio.read_case(case, load_label=False))
    box, native = tmp / "box.npy", tmp / "native.npy"
    np.save(box, pre.image)
    np.save(native, paste_back(pre.image, pre.geometry, fill=0.0))
    return box, native, {"box": list(pre.image.shape[:3])}


def ours_free_window(box: Path, repeat: int, roi: tuple[int, ...]) -> tuple[float, float]:
    """Our ``sliding_window`` over the box with a free model (the recipe's roi, overlap 0.5, Gaussian)."""
    import numpy as np

    from brainseg_tf.inference import sliding_window

    image = np.load(box)
    return best_of(lambda: sliding_window(lambda b: b[..., :3], image, roi=roi, overlap=0.5), repeat)


def ours_case(case: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``bench.inference``'s base variant on the case: the recipe's window plan and overlap (the model card's)."""
    argv = ["--config", args.config, "--repeat", str(args.repeat)] + (["--model", args.model] if args.model else [])
    bench_args = bench_inference.parser().parse_args(argv)
    precision = bench_inference.recipe_precision(args.config)
    return bench_inference.run_variant(case, out, False, precision, bench_args)


def window_seconds(ours: dict[str, Any]) -> tuple[float, float]:
    """Wall and CPU seconds of our sliding-window stage (forwards + window copies and blending)."""
    keys = ("forward", "excl:sliding_window")
    rows = [row for row in ours["stages"] if row["key"] in keys]
    return sum(r["seconds"] for r in rows), sum(r["cpu"] for r in rows)


# ----------------------------------------------------------------------------- report


def print_sides(monai: dict[str, Any], ours: dict[str, Any], ours_free: tuple[float, float], args) -> None:
    """The side-by-side table of both sides' timings."""
    ours_window, ours_window_cpu = window_seconds(ours)
    weights = "untrained" if ours["weights"] == "untrained" else f"weights {ours['weights']}"
    print(
        f"MONAI {monai['monai']} / torch {monai['torch']} ({monai['threads']} threads), SegResNet (tutorial), "
        f"{monai['params']:,} parameters, untrained; load average {monai['load_average_start']:.1f}"
        f" -> {monai['load_average_end']:.1f}"
    )
    print(
        f"brainseg_tf: {Path(args.config).name} model, {ours['params']:,} parameters ({weights}), "
        f"{ours['precision']}, windows {ours.get('windows')} ({ours['window_forwards']} forwards); "
        f"load average {ours['load_average']:.1f}"
    )
    print(bench_inference.format_stages(ours))
    roi = "x".join(map(str, args.roi))
    rows = [
        (
            "MONAI tutorial: whole volume, roi 240x240x160, 1 window",
            *(monai["tutorial_s"], monai["tutorial_cpu_s"], monai["tutorial_forwards"]),
            "brainseg_tf end to end (read -> write)",
            *(ours["case_seconds"], ours["cpu_seconds"], ours["window_forwards"]),
        ),
        (
            f"MONAI SegResNet: brain box, roi {roi}, overlap 0.5, gaussian",
            *(monai["segresnet_96_s"], monai["segresnet_96_cpu_s"], monai["segresnet_96_forwards"]),
            "brainseg_tf sliding window (same box and windows)",
            *(ours_window, ours_window_cpu, ours["window_forwards"]),
        ),
        (
            f"MONAI window machinery, free model (box, {roi})",
            *(monai["free_96_s"], monai["free_96_cpu_s"], monai["free_96_forwards"]),
            "brainseg_tf window machinery, free model",
            *(ours_free[0], ours_free[1], monai["free_96_forwards"]),
        ),
    ]
    print(
        f"\n{'MONAI':<60} {'wall s':>7} {'CPU s':>7} {'fwd':>3} | {'brainseg_tf':<50} {'wall s':>7} "
        f"{'CPU s':>7} {'fwd':>3} | ratio wall / CPU"
    )
    for a, sa, ca, fa, b, sb, cb, fb in rows:
        print(
            f"{a:<60} {sa:>7.2f} {ca:>7.2f} {fa:>3} | {b:<50} {sb:>7.2f} {cb:>7.2f} {fb:>3} | "
            f"{sa / sb:5.2f} / {ca / cb:5.2f}"
        )
    print(
        f"one {roi} forward: MONAI SegResNet {monai['forward_96_s']:.3f} s wall, {monai['forward_96_cpu_s']:.3f} s "
        f"CPU; MONAI peak RSS {monai['tutorial_peak_rss_gb']:.2f} GiB (after the tutorial window), "
        f"brainseg_tf {ours['peak_rss_gb']:.2f} GiB"
    )


def print_ours(ours: dict[str, Any], ours_free: tuple[float, float]) -> None:
    """Our side alone (``--ours-only``)."""
    print(bench_inference.format_stages(ours))
    print(f"brainseg_tf window machinery, free model: {ours_free[0]:.2f} s wall, {ours_free[1]:.2f} s CPU")
    print_figures(
        {
            "brainseg_case_seconds": ours["case_seconds"],
            "brainseg_window_seconds": window_seconds(ours)[0],
            "brainseg_free_window_seconds": ours_free[0],
        }
    )


# ----------------------------------------------------------------------------- driver


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=summary(__doc__))
    p.add_argument("--case", default=str(DEFAULT_CASE), help=f"case folder (default {DEFAULT_CASE.name})")
    p.add_argument("--config", default=str(CONFIGS / "cpu_brats2018.json"), help="our recipe")
    p.add_argument("--model", help="weights for the recipe's model (RUN_DIR or .keras); default untrained")
    p.add_argument(
        "--repeat", type=positive_int, default=3, help="runs per timing; the fastest is reported (default 3)"
    )
    p.add_argument("--venv", default=str(REPO_ROOT / ".venv-monai"), help="the peer venv (created when missing)")
    p.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    p.add_argument("--ours-only", action="store_true", help="time our side only (no peer venv, no MONAI)")
    p.add_argument("--monai-worker", nargs=2, metavar=("BOX_NPY", "NATIVE_NPY"), help=argparse.SUPPRESS)
    p.add_argument("--roi", type=int, nargs=3, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.monai_worker:
        print(json.dumps(monai_worker(*args.monai_worker, args.repeat, args.threads, tuple(args.roi))))
        return
    if not Path(args.case).is_dir():
        sys.exit(f"{args.case}: case folder not found")
    try:
        import brainseg_tf  # noqa: F401
    except ImportError:
        sys.exit(f"brainseg_tf is not importable by {sys.executable}; run with the project's .venv/bin/python")
    args.roi = recipe_roi(args.config)

    peer = None if args.ours_only else ensure_peer_venv(Path(args.venv))
    with tempfile.TemporaryDirectory(prefix="bench_vs_monai_") as tmp:
        tmp = Path(tmp)
        box, native, facts = prepare_inputs(args.case, tmp)
        print(f"case {Path(args.case).name}: brain box {facts['box']}; load average {load_average():.1f}", flush=True)
        monai = None
        if peer is not None:
            worker = ["--monai-worker", box, native, "--repeat", args.repeat, "--threads", args.threads]
            monai = run_worker("bench.vs_monai", [*worker, "--roi", *args.roi], "MONAI worker", python=str(peer))
        ours_free = ours_free_window(box, args.repeat, args.roi)
        ours = ours_case(args.case, tmp / "pred", args)
    if monai is None:
        print_ours(ours, ours_free)
        return
    print_sides(monai, ours, ours_free, args)
    print_figures(
        {
            "monai_tutorial_seconds": monai["tutorial_s"],
            "brainseg_case_seconds": ours["case_seconds"],
            "ratio": monai["tutorial_s"] / ours["case_seconds"],
        }
    )


if __name__ == "__main__":
    main()
