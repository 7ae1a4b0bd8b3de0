"""Calibrate and check the memory planner (``brainseg_tf.plan``) against measured training peaks.

Each point trains a recipe's model for a few steps on a random batch in its own fresh Python
process (``plan.measure_step_peak``) and reads the TensorFlow allocator's peak
(``tf.config.experimental.get_memory_info(device)["peak"]``: ``CPU:0`` here, ``GPU:0`` on a GPU).
The planner's raw terms for the same point (weights/optimizer, layer-output sum, inputs) are then
fitted to the peaks — one ``ACTIVATION_FACTORS`` entry per policy group (float32; mixed
float16/bfloat16) minimises the squared relative error over that group's ``fit`` points — and the
relative error of the fitted estimate is reported for every point, the held-out ones included.

    python -m bench.plan_calibration [--points default|quick|tiny] [--out runs/bench/plan_calibration.json]
                                     [--reuse EARLIER.json]

The last line is machine-readable: ``max_abs_error=<float> points=<int> factor_float32=<float> factor_mixed=<float>``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from bench.common import CONFIGS, REPO_ROOT, positive_int, print_figures, run_worker, summary

# (recipe, patch, batch, precision, used for the fit)
POINTS = {
    "default": [
        ("demo_synthetic", (32, 32, 32), 2, "off", True),
        ("demo_synthetic", (48, 48, 48), 2, "off", True),
        ("demo_synthetic", (64, 64, 64), 2, "off", True),
        ("demo_synthetic", (48, 48, 48), 4, "off", False),
        ("cpu_brats2018", (32, 32, 32), 2, "off", True),
        ("cpu_brats2018", (64, 64, 64), 2, "off", True),
        ("cpu_brats2018", (64, 64, 32), 2, "off", False),
        ("gpu_recommended", (64, 64, 64), 2, "off", False),
        ("demo_synthetic", (64, 64, 64), 2, "bfloat16", True),
        ("cpu_brats2018", (64, 64, 64), 2, "bfloat16", True),
        ("cpu_brats2018", (96, 96, 96), 2, "bfloat16", False),
        ("cpu_brats2018", (64, 64, 64), 2, "float16", False),
    ],
    "quick": [
        ("demo_synthetic", (32, 32, 32), 1, "off", True),
        ("demo_synthetic", (32, 32, 32), 2, "off", True),
    ],
    # One small point: checks the script, not the planner.
    "tiny": [("demo_synthetic", (16, 16, 16), 1, "off", True)],
}


def _worker(recipe: str, patch: list[int], batch: int, precision: str, steps: int) -> dict:
    from brainseg_tf import plan
    from brainseg_tf.training import load_config

    cfg = load_config(CONFIGS / f"{recipe}.json")
    fp = plan.footprint(cfg, precision)
    raw = plan.estimate(fp, patch, batch)
    measured = plan.measure_step_peak(cfg, patch, batch, steps=steps, precision=precision)
    return {
        **measured,
        "recipe": recipe,
        "precision": precision,
        "parameters": fp.parameters,
        "weights": raw.weights,
        "inputs": raw.inputs,
        "layer_bytes": fp.activation_bytes_per_voxel * math.prod(patch) * batch,
    }


def _run_point(recipe: str, patch: tuple[int, ...], batch: int, precision: str, steps: int) -> dict:
    """One point measured in a fresh process (allocator peaks only grow within one)."""
    start = time.perf_counter()
    args = ["--worker", recipe, "x".join(map(str, patch)), batch, precision, steps]
    row = run_worker("bench.plan_calibration", args, f"{recipe} {patch} x{batch} {precision}")
    row["process_seconds"] = time.perf_counter() - start
    return row


def group(policy: str) -> str:
    """``"float32"`` or ``"mixed"``: the key of ``plan.ACTIVATION_FACTORS`` a policy uses."""
    return "float32" if policy == "float32" else "mixed"


def fit(rows: list[dict]) -> dict[str, float]:
    """Per policy group, the factor minimising Σ((W + I + factor·A − M)/M)² over ``rows``.

    A free constant term was tried first: least squares gave it a negative value on the CPU
    points, so ``plan.WORKSPACE_BYTES`` stays 0 and only the factors are fitted.
    """
    factors = {}
    for key in sorted({group(r["policy"]) for r in rows}):
        sel = [r for r in rows if group(r["policy"]) == key]
        num = sum(r["layer_bytes"] * (r["peak"] - r["weights"] - r["inputs"]) / r["peak"] ** 2 for r in sel)
        den = sum(r["layer_bytes"] ** 2 / r["peak"] ** 2 for r in sel)
        factors[key] = num / den
    return factors


def fitted_estimate(row: dict, factors: dict[str, float]) -> float:
    return row["weights"] + row["inputs"] + factors[group(row["policy"])] * row["layer_bytes"]


def table(rows: list[dict], factors: dict[str, float]) -> str:
    lines = [
        "| recipe (model) | policy | patch × batch | params | measured peak | estimate | error | fit | s/step |",
        "|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        est = fitted_estimate(r, factors)
        lines.append(
            f"| {r['recipe']} | {r['policy']} | {'×'.join(map(str, r['patch']))} × {r['batch']} | "
            f"{r['parameters'] / 1e6:.2f} M | {r['peak'] / 2**20:.0f} MiB | {est / 2**20:.0f} MiB | "
            f"{(est - r['peak']) / r['peak']:+.1%} | {'fit' if r['fit'] else 'held out'} | {r['seconds_per_step']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=summary(__doc__))
    parser.add_argument("--points", choices=sorted(POINTS), default="default")
    parser.add_argument("--steps", type=positive_int, default=2, help="timed steps after the first (tracing) one")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench" / "plan_calibration.json")
    parser.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="an earlier --out: points measured there (same recipe, patch, batch, precision) are not re-run",
    )
    parser.add_argument(
        "--worker", nargs=5, metavar=("RECIPE", "PATCH", "BATCH", "PRECISION", "STEPS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        recipe, patch, batch, precision, steps = args.worker
        print(json.dumps(_worker(recipe, [int(n) for n in patch.split("x")], int(batch), precision, int(steps))))
        return 0
    from brainseg_tf import atomic

    earlier = {}
    if args.reuse is not None:
        for r in json.loads(args.reuse.read_text())["rows"]:
            earlier[(r["recipe"], tuple(r["patch"]), r["batch"], r["precision"])] = r
    rows = []
    for recipe, patch, batch, precision, used in POINTS[args.points]:
        row = earlier.get((recipe, patch, batch, precision))
        if row is None:
            row = _run_point(recipe, patch, batch, precision, args.steps)
            print(
                f"{recipe} {row['policy']} {'x'.join(map(str, patch))} x{batch}: peak {row['peak'] / 2**20:.0f} MiB "
                f"({row['process_seconds']:.0f} s)",
                flush=True,
            )
        rows.append({**row, "fit": used})
    factors = fit([r for r in rows if r["fit"]])
    errors = [(fitted_estimate(r, factors) - r["peak"]) / r["peak"] for r in rows]
    atomic.write_json(args.out, {"factors": factors, "rows": rows, "errors": errors})
    print(table(rows, factors))
    print_figures(
        {"max_abs_error": max(map(abs, errors)), "points": len(rows), **{f"factor_{k}": v for k, v in factors.items()}},
        ".4f",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
