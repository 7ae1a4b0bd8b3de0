"""The ``brainseg`` command line: a thin wrapper over the Python API of each stage.

Heavy modules (TensorFlow) are imported inside the commands that need them, so ``brainseg info``
and ``brainseg validate`` start fast.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cmd_info(args: argparse.Namespace) -> int:
    from brainseg_tf import io

    summary = io.dataset_summary(args.dir, layout=args.layout, progress=not args.quiet, scheme=args.scheme)
    print(io.format_summary(summary))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from brainseg_tf import io

    problems = io.validate_dataset(
        args.dir, layout=args.layout, progress=not args.quiet, max_voxels=args.max_voxels, scheme=args.scheme
    )
    errors = [p for p in problems if not p.startswith("warning:")]
    for p in problems:
        print(p)
    if errors:
        print(f"{len(errors)} problem(s), {len(problems) - len(errors)} warning(s) in {args.dir}", file=sys.stderr)
        return 1
    print(f"{args.dir}: OK ({len(problems)} warning(s))")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from brainseg_tf import synthetic

    out = synthetic.make_dataset(
        args.out,
        layout=args.layout,
        n_cases=args.cases,
        seed=args.seed,
        shape=None if args.shape is None else tuple(args.shape),
        spacing=None if args.spacing is None else tuple(args.spacing),
        with_labels=not args.no_labels,
        progress=not args.quiet,
    )
    print(f"wrote {args.cases} synthetic {args.layout} case(s) to {out}")
    return 0


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from brainseg_tf.data.cache import build_cache

    out = build_cache(
        args.src,
        args.out,
        max_cases=args.max_cases,
        margin=args.margin,
        reorient=args.reorient,
        spacing=args.spacing,
        dtype=args.dtype,
        overwrite=args.overwrite,
        progress=not args.quiet,
        scheme=args.scheme,
    )
    print(f"cache ready: {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from brainseg_tf.evaluation import evaluate_folders, format_summary

    result = evaluate_folders(
        args.pred,
        args.ref,
        ref_convention=args.ref_convention,
        pred_convention=args.pred_convention,
        out_csv=args.out,
        progress=not args.quiet,
        lesion_wise=not args.no_lesion_wise,
        dilation=args.dilation,
        min_lesion_volume=args.min_lesion_volume,
        case_ids=args.cases,
        rules=None if args.no_lesion_wise else args.rules,
    )
    print(format_summary(result))
    if args.out is not None:
        print(f"per-case metrics: {args.out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if not args.config.is_file():  # before importing TensorFlow
        raise FileNotFoundError(f"{args.config}: recipe not found")
    from brainseg_tf import plan, report
    from brainseg_tf.training import load_config, train, train_folds

    overrides = _overrides(args.set)
    if args.scheme is not None:
        overrides["data.scheme"] = args.scheme
    cfg = load_config(args.config, overrides)  # read once: the GPU check, the folds switch and training share it
    warning = plan.check_fits(cfg)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)
    if args.folds is not None or cfg.training.all_folds:
        folds = train_folds(cfg, run_dir=args.run_dir, folds=args.folds, resume=not args.no_resume)
        for fold_dir in folds.fold_dirs:
            if (fold_dir / "metrics.json").exists():
                print(f"report: {report.train_report(fold_dir)}")
        print(
            f"run directory: {folds.run_dir} (folds.json; {'all folds complete' if folds.summary['completed'] else 'incomplete: re-run to continue'})"
        )
        return 0
    result = train(cfg, run_dir=args.run_dir, resume=not args.no_resume)
    print(f"run directory: {result.run_dir}")
    if result.is_chief:
        print(f"report: {report.train_report(result.run_dir)}")
    return 0


def _overrides(items: list[str] | None) -> dict[str, object]:
    """``--set KEY=VALUE`` items as recipe overrides: VALUE is JSON (``5``, ``true``, ``[96,96,96]``), else a string."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with a dotted recipe key, e.g. training.epochs=5")
        try:
            out[key.strip()] = json.loads(text)
        except ValueError:
            out[key.strip()] = text
    return out


def _add_set_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a recipe value by its dotted key (repeatable; VALUE is JSON or a string), "
        "e.g. --set data.root=data/real --set training.epochs=5",
    )


def _cmd_cv(args: argparse.Namespace) -> int:
    if not args.config.is_file():  # before importing TensorFlow
        raise FileNotFoundError(f"{args.config}: recipe not found")
    if args.against is None and (args.stop_if_futile or args.futile_after is not None):
        raise ValueError("--stop-if-futile and --futile-after judge against a baseline: give its records in --against")
    from brainseg_tf.training import load_config
    from brainseg_tf.training.crossval import cross_validate

    result = cross_validate(
        load_config(args.config, _overrides(args.set)),
        run_dir=args.run_dir,
        folds=args.folds,
        checkpoint=args.checkpoint,
        records=args.records,
        order=args.order,
        against=args.against,
        stop_if_futile=args.stop_if_futile,
        futile_after=2 if args.futile_after is None else args.futile_after,
    )
    if result.completed:
        state = f"out-of-fold measure in {result.records}"
    elif result.stopped == "futile":
        state = f"stopped as futile against {args.against}: {result.records / 'comparison.md'}"
    else:
        state = "re-run to continue"
    print(f"run directory: {result.run_dir}; fold records: {result.records} ({state})")
    return 0


def _cmd_cv_compare(args: argparse.Namespace) -> int:
    from brainseg_tf import atomic
    from brainseg_tf.training.crossval import compare_records, format_comparison

    comparison = compare_records(args.records, args.against, futile_after=args.futile_after or 2)
    print(format_comparison(comparison), end="")
    if args.out is not None:
        atomic.write_json(args.out, comparison)
        print(f"comparison: {args.out}")
    return 0


def _fold_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give fold numbers separated by commas, e.g. 4,3") from None


def _cmd_plan(args: argparse.Namespace) -> int:
    from brainseg_tf import plan

    print(
        plan.format_proposal(
            plan.plan_recipe(
                args.config,
                args.memory,
                args.precision,
                max_size=args.max_size,
                max_batch=args.max_batch,
                reserve=args.reserve,
            )
        )
    )
    return 0


def _memory_arg(text: str) -> int:
    from brainseg_tf.plan import parse_memory

    try:
        return parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _extras_required(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report a missing optional extra (e.g. brainseg_tf[onnx]) as a one-line error, exit code 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from brainseg_tf.inference import OptionalDependencyError

        try:
            return command(args)
        except OptionalDependencyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def _roi_argument(text: str) -> int | str:
    if text in ("auto", "patch"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window size, 'auto' or 'patch'") from None


@_extras_required
def _cmd_predict(args: argparse.Namespace) -> int:
    named = [r for r in args.window or () if isinstance(r, str)]
    if named and len(args.window) > 1:
        raise ValueError(f"--window/--roi {' '.join(map(str, args.window))}: {named[0]!r} stands alone")
    for path in (*args.model, args.input, *([args.ref] if args.ref is not None else [])):
        if not path.exists():  # before importing TensorFlow
            raise FileNotFoundError(f"{path}: not found")
    from brainseg_tf.inference import predict_folder

    kwargs = {"overlap": args.overlap, "tta": args.tta or args.mirror_axes is not None, "batch_size": args.sw_batch}
    if args.mirror_axes is not None:
        kwargs["mirror_axes"] = tuple(args.mirror_axes)
    if args.window is not None:
        kwargs["window"] = named[0] if named else list(args.window)
    if args.et_min_voxels is not None:
        kwargs["et_min_voxels"] = args.et_min_voxels
    if args.min_component_voxels is not None:
        kwargs["min_component_voxels"] = args.min_component_voxels
    if args.no_postprocessing:
        kwargs.update(
            et_min_voxels=0,
            min_component_voxels=0,
            largest_component=(),
            min_component_voxels_tc=0,
            min_component_voxels_et=0,
        )
    if args.uncertainty is not None:
        kwargs["uncertainty"] = args.uncertainty
    model = args.model[0] if len(args.model) == 1 else list(args.model)
    if args.backend is not None or args.max_window_voxels is not None:
        from brainseg_tf.inference import Ensemble, load_predictor

        loaded = [
            load_predictor(path, backend=args.backend, max_window_voxels=args.max_window_voxels) for path in args.model
        ]
        model = loaded[0] if len(loaded) == 1 else Ensemble(loaded)
    rows = predict_folder(
        model,
        args.input,
        args.out,
        convention=args.convention,
        save_probabilities=args.probabilities,
        overwrite=args.overwrite,
        progress=not args.quiet,
        case_ids=args.cases,
        scheme=args.scheme,
        map_scheme=args.map_scheme,
        **kwargs,
    )
    failed = [r for r in rows if r.get("error")]
    print(f"wrote {len(rows) - len(failed)} prediction(s) to {args.out}")
    for r in failed:
        print(f"failed: {r.get('case_id')}: {r['error']}", file=sys.stderr)
    if args.uncertainty is not None:
        _print_uncertainty_ranking(args.out)
    if args.ref is not None and len(failed) < len(rows):
        from brainseg_tf import evaluation, report

        ref_reading = args.ref_convention or args.scheme  # the references in the stated scheme too
        result = evaluation.evaluate_folders(
            args.out,
            args.ref,
            ref_convention=ref_reading,
            out_csv=args.out / report.METRICS_FILE,
            progress=not args.quiet,
            case_ids=[r["case_id"] for r in rows if not r.get("error")],
        )
        print(evaluation.format_summary(result))
        path = report.predict_report(
            args.out,
            args.ref,
            images=args.input,
            result=result,
            ref_convention=ref_reading,
            viewers=not args.no_viewers,
        )
        print(f"per-case metrics: {args.out / report.METRICS_FILE}\nreport: {path}")
    return 1 if failed else 0


def _print_uncertainty_ranking(out: Path) -> None:
    from brainseg_tf.io import read_json
    from brainseg_tf.io.predictions import PREDICTIONS_META

    summary = read_json(out / PREDICTIONS_META)
    print("cases by uncertainty (most uncertain first; review these):")
    for cid in summary["ranking"]:
        case = summary["cases"][cid]
        print(f"  {case['uncertainty']:.4f}  {cid}  ({case.get('uncertainty_kind') or 'earlier run'})")
    print(f"uncertainty summary: {out / PREDICTIONS_META}")


def _cmd_select_postprocessing(args: argparse.Namespace) -> int:
    from brainseg_tf import postprocessing

    if args.records is not None:
        if args.pred is not None or args.ref is not None or args.cases is not None:
            raise ValueError("--records chooses from the fold records alone; drop --pred, --ref and --cases")
        from brainseg_tf.training.crossval import read_records, recipe_records, select_from_records

        if args.model is not None and not args.model.is_dir():
            raise FileNotFoundError(f"{args.model}: no such model folder (--model)")
        if args.model is not None and (args.model / "config.json").is_file():  # a run directory
            from brainseg_tf.training.rundir import run_recipe

            records = recipe_records(run_recipe(args.model), args.records)  # its recipe must be the records'
        else:
            records = read_records(args.records)
            if args.model is not None:
                print(f"note: {args.model} has no config.json (not a run directory): its recipe is not compared")
        selection = select_from_records(records)
        out = args.out or args.records / postprocessing.SELECTION_FILE
        selection.write(out)
    elif args.pred is None or args.ref is None:
        raise ValueError("give --pred and --ref (label maps), or --records (brainseg cv's fold records)")
    else:
        out = args.out or args.pred / postprocessing.SELECTION_FILE
        selection = postprocessing.select_for_folders(
            args.pred,
            args.ref,
            out=out,
            ref_convention=args.ref_convention,
            pred_convention=args.pred_convention,
            case_ids=args.cases,
        )
    print(selection.format())
    print(f"selection: {out}")
    if args.model is not None:
        postprocessing.record(selection, args.model)
        print(f"recorded in the model card: {args.model / 'brainseg_model.json'}")
    return 0


@_extras_required
def _cmd_export(args: argparse.Namespace) -> int:
    from brainseg_tf.export import export_model

    paths = export_model(args.model, args.out, overwrite=args.overwrite, format=args.format)
    for name, path in paths.items():
        print(f"{name:12s} {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from brainseg_tf import demo

    report = demo.run_demo(args.out, quick=args.quick, seed=args.seed, n_cases=args.cases, epochs=args.epochs)
    print(f"demo finished: {report}")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from brainseg_tf.viz.view import view

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {args.out}: the viewer is an HTML page; name it .html")
    view(args.case, pred=args.pred, uncertainty=args.uncertainty, out=args.out, mesh_step=args.mesh_step)
    size = args.out.stat().st_size / 2**20
    print(f"viewer: {args.out} ({size:.1f} MiB; self-contained, opens offline in any browser)")
    return 0


# ---------------------------------------------------------------- survival (brainseg survival ...)


def _cmd_survival_features(args: argparse.Namespace) -> int:
    from brainseg_tf import survival

    rows = survival.feature_rows(
        args.labels,
        images=args.images,
        clinical=args.clinical,
        convention=args.convention,
        tcia_by_number=args.match_tcia_by_number,
        progress=not args.quiet,
    )
    survival.write_features(rows, args.out)
    paired = sum("age" in r for r in rows)
    print(
        f"wrote features of {len(rows)} case(s) to {args.out}"
        + (f" ({paired} paired with {args.clinical})" if args.clinical is not None else "")
    )
    return 0


def _cmd_survival_fit(args: argparse.Namespace) -> int:
    from brainseg_tf import survival

    data = survival.training_set(
        args.clinical,
        args.labels,
        args.features,
        images=args.images,
        convention=args.convention,
        tcia_by_number=args.match_tcia_by_number,
        progress=not args.quiet,
    )
    model = survival.fit_training_set(data, args.method, feature_names=args.feature, seed=args.seed)
    model.meta["clinical"] = str(args.clinical)
    model.save(args.out)
    print(f"{args.method} model on {len(data)} patient(s), features: {', '.join(model.features) or '(none)'}")
    for reason, ids in data.excluded.items():
        print(f"left out: {len(ids)} {reason}")
    if args.cv:
        for method in dict.fromkeys((args.method, "age", "majority")):
            names = args.feature if method == args.method else None
            cv = survival.cross_validate(data, method, folds=args.cv, seed=args.seed, feature_names=names)
            print(survival.format_scores(cv["scores"], title=f"{args.cv}-fold CV, {method}: "))
    print(f"model: {args.out}")
    return 0


def _cmd_survival_predict(args: argparse.Namespace) -> int:
    from brainseg_tf import survival

    rows = survival.predict_table(
        args.model, args.features, clinical=args.clinical, tcia_by_number=args.match_tcia_by_number
    )
    survival.write_predictions([c for c, _ in rows], [d for _, d in rows], args.out, header=not args.no_header)
    print(f"wrote {len(rows)} prediction(s) to {args.out}")
    return 0


def _cmd_survival_evaluate(args: argparse.Namespace) -> int:
    from brainseg_tf import atomic, survival

    gtr_only = False if args.all_patients else None  # None: GTR only where the table records resection
    result = survival.evaluate_predictions(
        args.predictions, args.clinical, gtr_only=gtr_only, tcia_by_number=args.match_tcia_by_number
    )
    print(survival.format_scores(result))
    if args.out is not None:
        atomic.write_json(args.out, result)
        print(f"scores: {args.out}")
    return 0


def _add_survival_parser(sub: argparse._SubParsersAction) -> None:
    survival = sub.add_parser("survival", help="overall-survival prediction: features, fit, predict, evaluate")
    ssub = survival.add_subparsers(dest="survival_command", required=True, metavar="STEP")
    tcia = {"action": "store_true", "help": "pair 2017 TCIA ids (Brats17_TCIA_201_1) with 2018 folders by number"}

    p = ssub.add_parser("features", help="tumour features of every label map in a folder -> CSV")
    p.add_argument(
        "--labels", type=Path, required=True, help="dataset folder or folder of label maps (brainseg predict)"
    )
    p.add_argument("--out", type=Path, required=True, help="features CSV")
    p.add_argument("--images", type=Path, default=None, help="dataset of the label maps' scans (brain volume)")
    p.add_argument("--clinical", type=Path, default=None, help="clinical table: adds age and resection columns")
    p.add_argument("--convention", default=None, help="label convention of the label maps (default: recorded)")
    p.add_argument("--match-tcia-by-number", **tcia)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_survival_features)

    p = ssub.add_parser("fit", help="fit a survival model (JSON) from a clinical table and features")
    p.add_argument("--clinical", type=Path, required=True, help="survival_info.csv / survival_data.csv")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--features", type=Path, default=None, help="features CSV (brainseg survival features)")
    source.add_argument("--labels", type=Path, default=None, help="dataset folder or folder of label maps")
    p.add_argument("--out", type=Path, required=True, help="model file (JSON)")
    # survival.METHODS checks the name; importing it here would slow every brainseg command
    p.add_argument("--method", default="ridge", help="majority, age, ridge (default) or forest")
    p.add_argument("--feature", nargs="+", default=None, metavar="NAME", help="features to use (default: see docs)")
    p.add_argument("--images", type=Path, default=None, help="dataset of the label maps' scans")
    p.add_argument("--convention", default=None, help="label convention of the label maps (default: recorded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cv", type=int, default=0, metavar="K", help="also print K-fold CV scores beside the baselines")
    p.add_argument("--match-tcia-by-number", **tcia)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_survival_fit)

    p = ssub.add_parser("predict", help="predicted survival days per case -> CSV (case id, days)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="predictions CSV")
    p.add_argument("--clinical", type=Path, default=None, help="table with age/resection (else the features' own)")
    p.add_argument("--no-header", action="store_true", help="bare two columns, no header line")
    p.add_argument("--match-tcia-by-number", **tcia)
    p.set_defaults(func=_cmd_survival_predict)

    p = ssub.add_parser("evaluate", help="BraTS scores: accuracy, MSE, median SE, Spearman, confusion")
    p.add_argument("--predictions", type=Path, required=True)
    p.add_argument("--clinical", type=Path, required=True)
    p.add_argument("--all-patients", action="store_true", help="score every patient, not only GTR")
    p.add_argument("--out", type=Path, default=None, help="scores as JSON")
    p.add_argument("--match-tcia-by-number", **tcia)
    p.set_defaults(func=_cmd_survival_evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The ``brainseg`` argument parser: one subcommand per stage, each added by its ``_add_*_parser``."""
    parser = argparse.ArgumentParser(prog="brainseg", description="Brain tumour segmentation toolkit (BraTS).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in _SUBCOMMANDS:
        add_parser(sub)
    return parser


def _add_info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a dataset summary (layout, cases, shapes, spacing, label volumes)")
    p.add_argument("dir", type=Path)
    p.add_argument("--layout", default=None, help="force a layout instead of detecting it")
    _add_scheme_argument(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_info)


def _add_scheme_argument(p: argparse.ArgumentParser) -> None:
    # schemes.SCHEMES checks the name; importing it here would slow every brainseg command
    p.add_argument(
        "--scheme",
        default=None,
        help="the label scheme of every case (e.g. ped2023 for BraTS 2023 PED data); default: each case id's "
        "task prefix decides (docs/editions.md)",
    )


def _add_validate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="read every case and report all problems and warnings; exit 1 on problems")
    p.add_argument("dir", type=Path)
    p.add_argument("--layout", default=None)
    p.add_argument(
        "--max-voxels",
        type=int,
        default=None,
        help="refuse files declaring more voxels (default: $BRAINSEG_MAX_VOXELS or 2^29)",
    )
    _add_scheme_argument(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_validate)


def _synth_layout(text: str) -> str:
    """``--layout``: case and ``-`` ignored, ``menrt`` is ``men_rt``."""
    key = text.strip().lower().replace("-", "_")
    return "men_rt" if key == "menrt" else key


def _add_synth_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic BraTS-like dataset")
    # synthetic.SYNTH_LAYOUTS (not imported here: it would slow every brainseg command); the last three
    # are the BraTS 2024/2025 tasks, in the 2023+ file naming with their own case ids and label schemes
    p.add_argument(
        "--layout",
        default="brats2021",
        type=_synth_layout,
        choices=["brats2018", "brats2020", "brats2021", "brats2023", "msd", "men_rt", "gli2024", "met2024", "ped2024"],
        help="file layout, or a BraTS 2024/2025 task: gli2024 (post-treatment, some with 4 RC), met2024 "
        "(multifocal, some with RC), ped2024 (1 ET, 2 NET, 3 CC, 4 ED), men_rt (alias menrt: <case>_t1c and "
        "<case>_gtv only, 1 GTV, default grid 512x512x136 at 0.5x0.5x1.2 mm)",
    )
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="grid (default: the layout's; 240 240 155)",
    )
    p.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=None,
        metavar=("SX", "SY", "SZ"),
        help="voxel size in mm (default: the layout's; 1 1 1)",
    )
    p.add_argument("--no-labels", action="store_true", help="validation-style cases without masks")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_synth)


def _add_preprocess_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preprocess", help="crop, normalise and cache a dataset into HDF5 (resumable)")
    p.add_argument("src", type=Path, help="dataset folder (any layout)")
    p.add_argument("--out", type=Path, required=True, help="cache file, e.g. cache.h5")
    p.add_argument("--max-cases", type=int, default=None)
    p.add_argument("--margin", type=int, default=0, help="voxels kept around the brain box")
    p.add_argument("--reorient", action="store_true", help="reorient to RAS (recorded; undone on paste-back)")
    p.add_argument("--spacing", type=float, nargs="+", default=None, help="resample to this spacing in mm (e.g. 1)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--overwrite", action="store_true", help="rebuild from scratch instead of resuming")
    p.add_argument(
        "--scheme",
        default=None,
        help="label scheme to read every case in (e.g. ped2023 for the 2023 PED release; default: each case "
        "id's, one for all); recorded in the cache",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_preprocess)


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score predictions against references (Dice, HD95, lesion-wise)")
    p.add_argument("--pred", type=Path, required=True, help="folder of predicted masks (<case_id>.nii.gz)")
    p.add_argument("--ref", type=Path, required=True, help="reference dataset folder (any layout) or folder of masks")
    p.add_argument(
        "--ref-convention",
        default=None,
        help="label convention or scheme of the references (default: the dataset layout's, the file's record "
        "or the case id's scheme)",
    )
    p.add_argument(
        "--pred-convention",
        default=None,
        help="label convention or scheme (e.g. ped2024) of the predictions (default: predictions.json or the "
        "header record `brainseg predict` writes, else the reference's scheme, which the output then names)",
    )
    p.add_argument("--out", type=Path, default=None, help="CSV, one row per case x region")
    p.add_argument(
        "--rules",
        choices=("legacy", "2023", "2024", "2025", "auto"),
        default="auto",
        help="official scoring of a BraTS year for the data's task (docs/evaluation.md); auto: the rules of the "
        "data's edition (printed), e.g. 2024 GLI for BraTS-GLI, 2023 GLI for BraTS 2017-2021",
    )
    p.add_argument("--no-lesion-wise", action="store_true", help="legacy Dice/HD95 only (no lesion-wise scores)")
    p.add_argument("--cases", nargs="+", default=None, metavar="CASE_ID", help="only these reference cases")
    p.add_argument("--dilation", type=int, default=None, help="2023 rules: GT dilation iterations (default 3)")
    p.add_argument(
        "--min-lesion-volume", type=float, default=None, help="2023 rules: lesion size threshold, mm^3 (default 50)"
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a JSON recipe (resumes an interrupted run)")
    p.add_argument("--config", type=Path, required=True, help="JSON recipe (see configs/)")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run directory")
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="train folds 0..K-1 of the seeded k-fold split into RUN_DIR/fold_<k> (resumable; RUN_DIR/folds.json)",
    )
    p.add_argument(
        "--scheme",
        default=None,
        help="label scheme of the training data (sets the recipe's data.scheme; default: the recipe's, else "
        "each case id's, one for all); sets the head's channels, the losses and metrics",
    )
    _add_set_argument(p)
    p.set_defaults(func=_cmd_train)


def _add_cv_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cv", help="out-of-fold measure: train K folds (fixed steps), predict each case with the fold that held it out"
    )
    p.add_argument("--config", type=Path, required=True, help="JSON recipe (see configs/)")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--folds", type=int, default=None, metavar="K", help="folds (default: the recipe's split.folds)")
    p.add_argument(
        "--checkpoint",
        choices=["best", "final"],
        default="final",
        help="each fold's model (default final: the fixed schedule; best is chosen on the held-out cases themselves)",
    )
    p.add_argument(
        "--records",
        type=Path,
        default=None,
        help="folder of the fold records, meant to be committed so the measure resumes anywhere "
        "(default results/cv/<run directory name>; delete a fold's record to measure it again)",
    )
    p.add_argument(
        "--order",
        type=_fold_list,
        default=None,
        metavar="K,K,...",
        help="folds to measure first, in this order (the others follow); scheduling only, e.g. 4,3",
    )
    p.add_argument(
        "--against",
        type=Path,
        default=None,
        metavar="RECORDS",
        help="a baseline recipe's complete fold records: judge the measure against it after each fold "
        "(brainseg cv-compare; RECORDS/comparison.md)",
    )
    p.add_argument(
        "--stop-if-futile",
        action="store_true",
        help="with --against: stop once the gain so far is below half the baseline's half-width in every region "
        "(judged from --futile-after folds on)",
    )
    _add_futile_after_argument(p)
    _add_set_argument(p)
    p.set_defaults(func=_cmd_cv)


def _add_cv_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cv-compare",
        help="judge a candidate recipe's out-of-fold measure (complete or under way) against a baseline's",
    )
    p.add_argument("--records", type=Path, required=True, help="the candidate's fold records (brainseg cv)")
    p.add_argument("--against", type=Path, required=True, help="the baseline's complete fold records")
    p.add_argument("--out", type=Path, default=None, help="also write the comparison as JSON here")
    _add_futile_after_argument(p)
    p.set_defaults(func=_cmd_cv_compare)


def _add_futile_after_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--futile-after",
        type=_positive_int,
        default=None,
        metavar="N",
        help="the futility rule judges a measure under way from N recorded folds on (default 2)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return value


def _add_plan_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="patch and batch size of a recipe that fit an accelerator's memory")
    p.add_argument("--config", required=True, help="JSON recipe (path or name in configs/)")
    p.add_argument(
        "--memory",
        type=_memory_arg,
        default=None,
        help="accelerator memory: 16GB (10^9), 16GiB (2^30), 24000MiB (default: the visible GPU's)",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=["auto", "off", "float32", "float16", "bfloat16"],
        help="dtype policy planned for (default: the recipe's; auto = mixed_float16, a GPU's)",
    )
    p.add_argument(
        "--max-size",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="largest patch per axis, e.g. the median cropped case (default: the recipe's patch)",
    )
    p.add_argument("--max-batch", type=int, default=None, help="largest batch (default: max(recipe batch, 2))")
    p.add_argument("--reserve", type=float, default=0.1, help="share of the memory left free (default 0.1)")
    p.set_defaults(func=_cmd_plan)


def _add_predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment a case or a dataset folder; writes NIfTI in native space")
    p.add_argument(
        "--model",
        type=Path,
        nargs="+",
        required=True,
        help="RUN_DIR, model.keras, SavedModel folder or ONNX export (model.onnx); several are combined "
        "(folds averaged, single-region WT/TC/ET models stacked into one label map)",
    )
    p.add_argument(
        "--backend",
        default=None,
        help="keras or onnxruntime (an ONNX export, brainseg_tf[onnx]); default: onnxruntime for "
        "model.onnx, keras otherwise",
    )
    p.add_argument("--input", type=Path, required=True, help="a case folder or a dataset folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (<case_id>.nii.gz)")
    p.add_argument("--convention", default=None, help="label convention of the written masks (default: the source's)")
    p.add_argument(
        "--window",
        "--roi",
        type=_roi_argument,
        nargs="+",
        default=None,
        help="sliding-window size: 1 or 3 integers, 'patch' (the training patch) or 'auto' (per case "
        "the largest windows within --max-window-voxels); default: the model card's inference.window "
        "(--roi: the old name)",
    )
    p.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="window overlap in [0, 1) (default: the model card's inference.overlap, 0.5 without one)",
    )
    p.add_argument(
        "--max-window-voxels",
        type=int,
        default=None,
        help="largest planned window in voxels with --window auto (default: the card's; memory grows with it)",
    )
    p.add_argument("--sw-batch", type=int, default=1, help="windows per forward pass")
    p.add_argument(
        "--tta", action="store_true", help="mirror test-time augmentation (every subset of the 3 axes: 8 flips)"
    )
    p.add_argument(
        "--mirror-axes",
        type=int,
        nargs="+",
        default=None,
        choices=[0, 1, 2],
        metavar="AXIS",
        help="TTA over the subsets of these axes only (implies --tta): e.g. '0 1' is 4 flips, half the time",
    )
    p.add_argument("--et-min-voxels", type=int, default=None, help="ET smaller than this is relabelled NCR")
    p.add_argument("--min-component-voxels", type=int, default=None, help="drop tumour components smaller than this")
    p.add_argument("--probabilities", action="store_true", help="also write <case_id>_prob.nii.gz")
    p.add_argument(
        "--no-postprocessing",
        action="store_true",
        help="raw labels, none of the card's postprocessing (for brainseg select-postprocessing)",
    )
    p.add_argument(
        "--uncertainty",
        nargs="?",
        const="auto",
        default=None,
        choices=["auto", "entropy", "variance"],
        help="also write <case_id>_uncertainty.nii.gz and rank the cases in predictions.json "
        "(auto: variance across ensemble members / TTA flips, else entropy)",
    )
    p.add_argument(
        "--ref",
        type=Path,
        default=None,
        metavar="REF_DIR",
        help="references (dataset or folder of masks): also score the predictions and write "
        "OUT/metrics.csv and OUT/report.md with figures and OUT/viewers/<case>.html",
    )
    p.add_argument(
        "--no-viewers", action="store_true", help="with --ref: leave out the interactive viewer pages (MBs each)"
    )
    p.add_argument(
        "--ref-convention",
        default=None,
        help="label convention of the references (default: the dataset layout's or the file's record)",
    )
    p.add_argument("--cases", nargs="+", default=None, metavar="CASE_ID", help="only these cases of the dataset")
    _add_scheme_argument(p)
    p.add_argument(
        "--map-scheme",
        action="store_true",
        help="predict data of another label scheme than the model's where the data's labels and regions include "
        "the model's (e.g. a BraTS 2021 model on GLI 2024 data); the glioma schemes BraTS 2021, GLI 2023, MSD, ... "
        "need no option",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_predict)


def _add_select_postprocessing_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select-postprocessing",
        help="choose postprocessing on validation predictions (nnU-Net's rule); record it in the card",
    )
    p.add_argument(
        "--pred",
        type=Path,
        default=None,
        help="predictions made without postprocessing (brainseg predict --no-postprocessing)",
    )
    p.add_argument("--ref", type=Path, default=None, help="references: dataset folder or folder of masks")
    p.add_argument(
        "--records",
        type=Path,
        default=None,
        help="instead of --pred/--ref: brainseg cv's fold records (every fold), choosing on all out-of-fold "
        "cases from each rule's recorded Dice (one rule at most)",
    )
    p.add_argument("--model", type=Path, default=None, help="RUN_DIR or export folder whose card records the rule")
    p.add_argument(
        "--out", type=Path, default=None, help="selection JSON (default PRED/ or RECORDS/postprocessing.json)"
    )
    p.add_argument("--ref-convention", default=None)
    p.add_argument("--pred-convention", default=None)
    p.add_argument("--cases", nargs="+", default=None, metavar="CASE_ID", help="only these cases")
    p.set_defaults(func=_cmd_select_postprocessing)


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a SavedModel (serving signature), a .keras file and metadata, or ONNX")
    p.add_argument("--model", type=Path, required=True, help="RUN_DIR or model.keras")
    p.add_argument("--out", type=Path, required=True)
    # export.FORMATS checks the name; importing it here would slow every brainseg command
    p.add_argument(
        "--format",
        default="savedmodel",
        help="savedmodel (default: SavedModel + .keras) or onnx (OUT/model.onnx; brainseg_tf[onnx])",
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_export)


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on synthetic data; writes a report under --out")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=None, help="synthetic cases (default 10)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo recipe's)")
    p.set_defaults(func=_cmd_demo)


def _add_view_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view", help="an interactive viewer of a case (three planes and 3D) in one self-contained HTML file"
    )
    p.add_argument("--case", type=Path, required=True, help="a case folder (any layout) or an MSD image file")
    p.add_argument("--pred", type=Path, default=None, help="predicted labels (as `brainseg predict` writes them)")
    p.add_argument("--uncertainty", type=Path, default=None, help="an uncertainty map (<case>_uncertainty.nii.gz)")
    p.add_argument("--out", type=Path, required=True, help="the page to write (VIEW.html)")
    p.add_argument("--mesh-step", type=int, default=2, help="3D surface step in voxels (larger: smaller file)")
    p.set_defaults(func=_cmd_view)


def _cmd_unpack(args: argparse.Namespace) -> int:
    from brainseg_tf.io.archive import unpack

    done = unpack(args.tar, args.out, progress=not args.quiet)
    print(f"unpacked {args.tar} into {done.out_dir}: {done.extracted} file(s) written, {done.skipped} already there")
    return 0


def _add_unpack_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unpack",
        help="extract a dataset tar (e.g. Kaggle's BraTS2021_Training_Data.tar) safely; resumes if interrupted",
    )
    p.add_argument("tar", type=Path, help="the archive (.tar, .tar.gz, .tar.bz2, .tar.xz)")
    p.add_argument("--out", type=Path, required=True, help="the folder to unpack into (created)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(func=_cmd_unpack)


#: One function per subcommand adds its parser, in the order ``brainseg --help`` lists them.
_SUBCOMMANDS = (
    _add_info_parser,
    _add_validate_parser,
    _add_synth_parser,
    _add_preprocess_parser,
    _add_evaluate_parser,
    _add_train_parser,
    _add_cv_parser,
    _add_cv_compare_parser,
    _add_plan_parser,
    _add_predict_parser,
    _add_select_postprocessing_parser,
    _add_export_parser,
    _add_demo_parser,
    _add_view_parser,
    _add_survival_parser,
    _add_unpack_parser,
)


def _version() -> str:
    from brainseg_tf import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``brainseg`` console script."""
    args = build_parser().parse_args(argv)
    from brainseg_tf.io.errors import DataError

    try:
        return int(args.func(args) or 0)
    except (DataError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
