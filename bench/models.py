"""Parameters, GFLOPs, CPU forward seconds and peak memory of every model builder's default.

For each registry model (plus dResU-Net ``as_published``) and each precision (float32 and
``mixed_bfloat16``), a fresh Python process builds the faithful default, runs one untimed forward
pass on a batch of one default-sized random input (this traces the predict function), then times
5 more and reports the median. Peak memory is the process's ``ru_maxrss`` (GiB), so it includes
about 0.6 GiB of TensorFlow runtime. GFLOPs are counted from the layer shapes: 2 × the multiply-adds
of every convolution, transposed convolution, depthwise convolution and dense layer (norms,
activations, pooling and resampling are left out).

    python -m bench.models [--models unet2d,unet3d,...] [--precisions float32,bfloat16] [--repeats 5]
                           [--timeout 600] [--json out.json]

Prints a Markdown table (the one in ``docs/models.md``); the input sizes and channels are the
registry's builder defaults (``unet`` has a free size: 128^3 here). The last line is
machine-readable: ``<model>_<precision>_median_s=<float>`` and ``<model>_params=<int>`` per model.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import last_json, peak_rss_gib, positive_int, print_figures, run_module, summary

# bench name -> (registry name, builder options); each input size is the builder's default
# (``input_shape`` and ``in_channels`` of the registry's spec).
MODELS: dict[str, tuple[str, dict]] = {
    "unet2d": ("unet2d", {}),
    "unet3d": ("unet3d", {}),
    "dresunet": ("dresunet", {}),
    "dresunet_published": ("dresunet", {"as_published": True}),
    "znet": ("znet", {}),
    "een": ("een", {}),
    "unet": ("unet", {"input_shape": (128, 128, 128)}),
}
PRECISIONS = ("float32", "bfloat16")


def input_shape(bench_name: str) -> tuple[int, ...]:
    """The default input of a bench model, channels last (from the registry's builder defaults)."""
    from brainseg_tf import models

    registry_name, config = MODELS[bench_name]
    options = models.get_spec(registry_name).resolve(config)
    return (*options["input_shape"], int(options["in_channels"]))


def _called_shape(model, nested) -> tuple:
    """The input shape ``nested`` (a model used as a layer of ``model``) is called with."""
    entry = next(e for e in model.get_config()["layers"] if e["name"] == nested.name)
    source, _, tensor = entry["inbound_nodes"][0]["args"][0]["config"]["keras_history"]
    output = model.get_layer(source).output
    return (output[tensor] if isinstance(output, list) else output).shape


def count_flops(model) -> int:
    """2 × multiply-adds of the conv / transposed conv / depthwise conv / dense layers of ``model``
    (nested models included), from the shapes of a model built with a fixed input size."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            # A nested model (EEN's EfficientNet) is built with free H, W: count a copy built at the
            # size it is called with (`layer.input` is its own free input, the call site is not).
            called_with = _called_shape(model, layer)
            config = layer.get_config()
            for sub in config["layers"]:
                if sub["class_name"] == "InputLayer":
                    sub["config"]["batch_shape"] = (None, *called_with[1:])
            total += count_flops(keras.Model.from_config(config))
            continue
        name = type(layer).__name__
        if name in ("Conv2D", "Conv3D", "DepthwiseConv2D", "Conv2DTranspose", "Conv3DTranspose", "Dense"):
            in_shape = layer.input.shape
            out_shape = layer.output.shape
            kernel = math.prod(layer.kernel.shape[:-2]) if name != "Dense" else 1
            if name == "DepthwiseConv2D":
                macs = math.prod(out_shape[1:]) * kernel
            elif name.endswith("Transpose"):
                macs = math.prod(in_shape[1:-1]) * kernel * in_shape[-1] * out_shape[-1]
            elif name == "Dense":
                macs = math.prod(in_shape[1:]) * out_shape[-1]
            else:
                macs = math.prod(out_shape[1:-1]) * kernel * in_shape[-1] * out_shape[-1] // layer.groups
            total += 2 * macs
    return total


def run_one(bench_name: str, precision: str, repeats: int) -> dict:
    """Build, warm up and time one model in this process; return the measurements."""
    import keras
    import numpy as np

    from brainseg_tf import models

    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    registry_name, config = MODELS[bench_name]
    shape = input_shape(bench_name)
    model = models.build(registry_name, **config)
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype("float32")
    start = time.perf_counter()
    model.predict_on_batch(x)
    first = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(x)
        seconds.append(time.perf_counter() - start)
    return {
        "model": bench_name,
        "precision": precision,
        "params": model.count_params(),
        "trainable": sum(int(np.prod(w.shape)) for w in model.trainable_weights),
        "gflops": count_flops(model) / 1e9,
        "input": "×".join(map(str, shape)),
        "first_s": first,
        "median_s": statistics.median(seconds),
        "peak_rss_gib": peak_rss_gib(),
    }


def _subprocess(bench_name: str, precision: str, repeats: int, timeout: float) -> dict:
    args = ["--one", bench_name, "--precision", precision, "--repeats", repeats]
    try:
        done = run_module("bench.models", args, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": bench_name, "precision": precision, "error": f"timeout after {timeout:.0f} s"}
    try:
        if done.returncode == 0:
            return last_json(done.stdout)
    except ValueError:
        pass
    return {"model": bench_name, "precision": precision, "error": done.stderr.strip().splitlines()[-1:]}


def markdown(results: list[dict]) -> str:
    """One row per model: params, GFLOPs, float32 and bfloat16 median seconds and peak RSS."""
    rows = [
        "| model | input | parameters | GFLOPs | fp32 forward s | bf16 forward s | peak RSS fp32 / bf16 GiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["model"] for r in results):
        by_precision = {r["precision"]: r for r in results if r["model"] == name}
        ok = next((r for r in by_precision.values() if "error" not in r), None)
        if ok is None:
            rows.append(f"| {name} | – | – | – | {next(iter(by_precision.values())).get('error')} | – | – |")
            continue

        def cell(precision: str, key: str, fmt: str, by_precision: dict = by_precision) -> str:
            r = by_precision.get(precision, {})
            return format(r[key], fmt) if key in r else str(r.get("error", "–"))

        rows.append(
            f"| {name} | {ok['input']} | {ok['params']:,} | {ok['gflops']:.1f} | "
            f"{cell('float32', 'median_s', '.3f')} | {cell('bfloat16', 'median_s', '.3f')} | "
            f"{cell('float32', 'peak_rss_gib', '.2f')} / {cell('bfloat16', 'peak_rss_gib', '.2f')} |"
        )
    return "\n".join(rows)


def figures(results: list[dict]) -> dict:
    """The last line's figures: median forward seconds per model and precision, parameters per model."""
    out = {}
    for r in results:
        if "error" not in r:
            out[f"{r['model']}_{r['precision']}_median_s"] = r["median_s"]
            out[f"{r['model']}_params"] = r["params"]
    return out


def _names(text: str, known: tuple[str, ...] | dict, what: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        parser.error(f"unknown {what}(s) {unknown or text!r}; choose from {list(known)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=summary(__doc__))
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated bench names")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated: float32, bfloat16")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per model and precision")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(args.one, args.precision, args.repeats)))
        return
    names = _names(args.models, MODELS, "model", parser)
    precisions = _names(args.precisions, PRECISIONS, "precision", parser)
    results = []
    for name in names:
        for precision in precisions:
            result = _subprocess(name, precision, args.repeats, args.timeout)
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(markdown(results))
    print_figures(figures(results))


if __name__ == "__main__":
    main()
