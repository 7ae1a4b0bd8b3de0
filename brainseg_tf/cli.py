"""The ``brainseg`` command line: a thin wrapper over the Python API of each stage.

Heavy modules (TensorFlow) are imported inside the commands that need them, so ``brainseg info``
and ``brainseg validate`` start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cmd_info(args: argparse.Namespace) -> int:
    from brainseg_tf import io

    print(io.format_summary(io.dataset_summary(args.dir, layout=args.layout, progress=not args.quiet)))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from brainseg_tf import io

    problems = io.validate_dataset(args.dir, layout=args.layout, progress=not args.quiet)
    errors = [p for p in problems if not p.startswith("warning:")]
    for p in problems:
        print(p)
    if errors:
        print(f"{len(errors)} problem(s) in {args.dir}", file=sys.stderr)
        return 1
    print(f"{args.dir}: OK ({len(problems)} warning(s))")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from brainseg_tf import synthetic

    out = synthetic.make_dataset(
        args.out, layout=args.layout, n_cases=args.cases, seed=args.seed, shape=tuple(args.shape),
        with_labels=not args.no_labels, progress=not args.quiet,
    )
    print(f"wrote {args.cases} synthetic {args.layout} case(s) to {out}")
    return 0


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from brainseg_tf.data.cache import build_cache

    out = build_cache(
        args.src, args.out, max_cases=args.max_cases, margin=args.margin, reorient=args.reorient,
        spacing=args.spacing, dtype=args.dtype, overwrite=args.overwrite, progress=not args.quiet,
    )
    print(f"cache ready: {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from brainseg_tf.evaluation import evaluate_folders, format_summary

    result = evaluate_folders(
        args.pred, args.ref, ref_convention=args.ref_convention, pred_convention=args.pred_convention,
        out_csv=args.out, progress=not args.quiet, lesion_wise=not args.no_lesion_wise,
        dilation=args.dilation, min_lesion_volume=args.min_lesion_volume,
    )
    print(format_summary(result))
    if args.out is not None:
        print(f"per-case metrics: {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from brainseg_tf import demo

    report = demo.run_demo(args.out, quick=args.quick)
    print(f"demo finished: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brainseg", description="Brain tumour segmentation toolkit (BraTS).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="print a dataset summary (layout, cases, shapes, spacing, label volumes)")
    p.add_argument("dir", type=Path)
    p.add_argument("--layout", default=None, help="force a layout instead of detecting it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("validate", help="read every case and report all problems; exit 1 if any")
    p.add_argument("dir", type=Path)
    p.add_argument("--layout", default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("synth", help="write a synthetic BraTS-like dataset")
    p.add_argument("--layout", default="brats2021", choices=["brats2018", "brats2020", "brats2021", "brats2023", "msd"])
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155), metavar=("X", "Y", "Z"))
    p.add_argument("--no-labels", action="store_true", help="validation-style cases without masks")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("preprocess", help="crop, normalise and cache a dataset into HDF5 (resumable)")
    p.add_argument("src", type=Path, help="dataset folder (any layout)")
    p.add_argument("--out", type=Path, required=True, help="cache file, e.g. cache.h5")
    p.add_argument("--max-cases", type=int, default=None)
    p.add_argument("--margin", type=int, default=0, help="voxels kept around the brain box")
    p.add_argument("--reorient", action="store_true", help="reorient to RAS (recorded; undone on paste-back)")
    p.add_argument("--spacing", type=float, nargs="+", default=None, help="resample to this spacing in mm (e.g. 1)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--overwrite", action="store_true", help="rebuild from scratch instead of resuming")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_preprocess)

    p = sub.add_parser("evaluate", help="score predictions against references (Dice, HD95, lesion-wise)")
    p.add_argument("--pred", type=Path, required=True, help="folder of predicted masks (<case_id>.nii.gz)")
    p.add_argument("--ref", type=Path, required=True, help="reference dataset folder (any layout) or folder of masks")
    p.add_argument("--ref-convention", default=None, help="label convention of the references (default: detected)")
    p.add_argument("--pred-convention", default=None, help="label convention of the predictions (default: detected)")
    p.add_argument("--out", type=Path, default=None, help="CSV, one row per case x region")
    p.add_argument("--no-lesion-wise", action="store_true", help="skip BraTS 2023 lesion-wise scores")
    p.add_argument("--dilation", type=int, default=3, help="lesion-wise GT dilation iterations")
    p.add_argument("--min-lesion-volume", type=float, default=50.0, help="lesion-wise size threshold (mm^3)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="the main job on synthetic data; writes a report under --out")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.set_defaults(func=_cmd_demo)
    return parser


def _version() -> str:
    from brainseg_tf import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``brainseg`` console script."""
    args = build_parser().parse_args(argv)
    from brainseg_tf.io.errors import DataError

    try:
        return int(args.func(args) or 0)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
