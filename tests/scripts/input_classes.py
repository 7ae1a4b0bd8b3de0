"""Every bad-input class the toolkit is tested on, run for real; prints the table of docs/robustness.md.

Each probe builds its input in a fresh folder (small synthetic cases, a tiny untrained model with
its card), runs the ``brainseg`` command line in-process (or, for a few, the Python API) from that
folder, and records the exit code and the exact text printed (``error:`` lines, validate's problem
and warning lines). Paths in the messages are relative to the probe's folder (``data/...``).

    python tests/scripts/input_classes.py [--only NAME ...] [--tf | --no-tf] > table.md

``tests/test_robustness_inputs.py`` runs the probes that need no TensorFlow and checks that the
committed table in ``docs/robustness.md`` still matches what the toolkit prints.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io as _io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

SHAPE = (32, 32, 24)
CASE = "BraTS2021_00000"
FLAIR = f"data/{CASE}/{CASE}_flair.nii.gz"
SEG = f"data/{CASE}/{CASE}_seg.nii.gz"
BEGIN, END = "<!-- input-classes:begin -->", "<!-- input-classes:end -->"


# ------------------------------------------------------------------------- damaging files


def _raw(path: Path) -> bytearray:
    data = path.read_bytes()
    return bytearray(gzip.decompress(data) if path.name.endswith(".gz") else data)


def _put(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(bytes(data)) if path.name.endswith(".gz") else bytes(data))


def patch_header(
    path: str | Path,
    *,
    dims: tuple[int, ...] | None = None,
    datatype: tuple[int, int] | None = None,
    pixdim: tuple[float, float, float] | None = None,
) -> None:
    """Rewrite NIfTI-1 header fields in place (byte offsets of the NIfTI-1 standard: dim 40, datatype 70, pixdim 80)."""
    path = Path(path)
    raw = _raw(path)
    if dims is not None:
        struct.pack_into("<8h", raw, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    if datatype is not None:
        struct.pack_into("<hh", raw, 70, *datatype)
    if pixdim is not None:
        struct.pack_into("<3f", raw, 80, *pixdim)
    _put(path, raw)


def uncompressed(path: str | Path) -> Path:
    """Replace ``x.nii.gz`` by ``x.nii`` holding the same voxels; returns the new path."""
    path = Path(path)
    target = path.with_name(path.name[:-3])
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header), str(target))
    path.unlink()
    return target


def rewrite(path: str | Path, fn: Callable[[np.ndarray], np.ndarray], affine: np.ndarray | None = None) -> None:
    """Replace the voxels of ``path`` by ``fn(voxels)`` (and its affine by ``affine``)."""
    path = Path(path)
    img = nib.load(str(path))
    data = fn(np.asanyarray(img.dataobj).copy())
    header = img.header.copy()
    header.set_data_dtype(data.dtype)
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine, header), str(path))


def _set(index: tuple, value: Any, dtype: Any = None) -> Callable[[np.ndarray], np.ndarray]:
    def fn(a: np.ndarray) -> np.ndarray:
        a = a.astype(dtype) if dtype is not None else a
        a[index] = value
        return a

    return fn


def shifted_affine(path: str | Path, axis: int = 0, mm: float = 2.0) -> np.ndarray:
    affine = nib.load(str(path)).affine.copy()
    affine[axis, 3] += mm
    return affine


# ------------------------------------------------------------------------------- fixtures


@dataclass
class Probe:
    """One input class: ``setup`` builds it in the cwd and returns the argv (or an API callable)."""

    name: str
    title: str
    command: str  # as shown in the table
    setup: Callable[[], list[str] | Callable[[], Any]]
    needs: tuple[str, ...] = ("data",)  # fixtures copied into the probe's folder
    tf: bool = False  # imports TensorFlow (model loading, training)
    keep: str | None = None  # regex: show only the printed lines it matches (e.g. not a metrics table)


def _fixtures(base: Path) -> dict[str, Path]:
    """Fixtures built once: synthetic BraTS 2021 and MSD datasets, predictions, a tiny model run."""
    from brainseg_tf import io, synthetic

    out = {
        "data": synthetic.make_dataset(base / "data", n_cases=3, shape=SHAPE, progress=False),
        "msd": synthetic.make_dataset(base / "msd", layout="msd", n_cases=2, shape=SHAPE, progress=False),
    }
    pred = base / "pred"
    for ref in io.open_dataset(out["data"]).refs:
        case = io.read_case(ref)
        io.write_label(case.label, case, pred / f"{case.case_id}.nii.gz")
    out["pred"] = pred
    return out


def _model_run(run: Path) -> None:
    """A run directory with an untrained 1x1x1-convolution model and its card."""
    import keras

    from brainseg_tf.card import ModelCard

    inp = keras.Input((None, None, None, 4))
    out = keras.layers.Conv3D(4, 1, activation="softmax", name="head")(inp)
    run.mkdir(parents=True, exist_ok=True)
    keras.Model(inp, out).save(run / "best.keras")
    ModelCard(modalities=["flair", "t1", "t1ce", "t2"], head="softmax", roi=[16, 16, 16]).save(run)


def _recipe(path: Path, /, **changes: Any) -> Path:
    """A small valid recipe on ``data/`` (3D U-Net, depth 2), with top-level ``changes``."""
    recipe = {
        "name": "probe",
        "data": {"root": "data", "cache": "cache.h5"},
        "split": {"method": "none"},
        "model": {"name": "unet", "options": {"spatial_dims": 3, "depth": 2, "base_filters": 4, "head": "sigmoid"}},
        "pipeline": {"kind": "patch", "patch_size": [16, 16, 16], "batch_size": 1},
        "validation": {"mode": "none"},
        "training": {"epochs": 1, "steps_per_epoch": 1, "verbose": 0},
    }
    recipe.update(changes)
    path.write_text(json.dumps(recipe))
    return path


# --------------------------------------------------------------------------------- probes

PROBES: list[Probe] = []


def probe(name: str, title: str, command: str, *, needs: tuple[str, ...] = ("data",), tf: bool = False):
    def register(fn: Callable[[], list[str] | Callable[[], Any]]):
        PROBES.append(Probe(name, title, command, fn, needs, tf))
        return fn

    return register


def _validate(*extra: str) -> list[str]:
    return ["validate", "data", "-q", *extra]


def _simple(name: str, title: str, damage: Callable[[], Any], command: str = "validate") -> None:
    """A probe that damages ``data/`` and runs ``brainseg validate data`` (or ``info``/``preprocess``)."""
    argv = {
        "validate": _validate(),
        "info": ["info", "data", "-q"],
        "preprocess": ["preprocess", "data", "--out", "cache.h5", "-q"],
    }[command]

    def setup() -> list[str]:
        damage()
        return argv

    PROBES.append(Probe(name, title, "brainseg " + " ".join(argv), setup))


# NIfTI files: header and content
_simple("missing_modality", "a modality file is missing", lambda: Path(f"data/{CASE}/{CASE}_t1ce.nii.gz").unlink())
_simple("second_modality_file", "two files for one modality (.nii and .nii.gz)", lambda: shutil.copy(FLAIR, FLAIR[:-3]))
_simple("empty_file", "empty (0-byte) NIfTI file", lambda: Path(FLAIR).write_bytes(b""))
_simple(
    "truncated_gzip",
    "truncated .nii.gz (gzip stream cut in half)",
    lambda: Path(FLAIR).write_bytes(Path(FLAIR).read_bytes()[: len(Path(FLAIR).read_bytes()) // 2]),
)
_simple(
    "corrupt_gzip",
    "corrupt .nii.gz (deflate stream overwritten)",
    lambda: Path(FLAIR).write_bytes(Path(FLAIR).read_bytes()[:40] + bytes(360) + Path(FLAIR).read_bytes()[400:]),
)
_simple(
    "truncated_nii",
    "truncated .nii (uncompressed, last 100 bytes cut)",
    lambda: (lambda p: p.write_bytes(p.read_bytes()[:-100]))(uncompressed(FLAIR)),
)
_simple(
    "not_nifti",
    "not a NIfTI file (gzipped text)",
    lambda: Path(FLAIR).write_bytes(gzip.compress(b"this is a text file, not an image\n" * 20)),
)
_simple(
    "huge_header",
    "header claims 32767^3 voxels (35 T) in a small file",
    lambda: patch_header(FLAIR, dims=(32767, 32767, 32767)),
)
_simple(
    "gzip_cannot_hold",
    "header claims 700^3 voxels, more than the .gz can expand to",
    lambda: patch_header(FLAIR, dims=(700, 700, 700)),
)
_simple(
    "voxel_cap_env",
    "huge header, read by `brainseg info`",
    lambda: patch_header(FLAIR, dims=(32767, 32767, 32767)),
    "info",
)
_simple("rgb", "RGB24 voxels", lambda: patch_header(FLAIR, datatype=(128, 24)))
_simple("complex", "complex64 voxels", lambda: patch_header(FLAIR, datatype=(32, 64)))
_simple("zero_axis", "zero-length axis", lambda: patch_header(FLAIR, dims=(32, 0, 24)))
_simple("two_dims", "a 2D image as a modality", lambda: patch_header(FLAIR, dims=(32, 768)))
_simple("four_dims", "a 4D image as a modality", lambda: rewrite(FLAIR, lambda a: np.stack([a, a], axis=-1)))
_simple("nan_pixdim", "NaN voxel size in the header", lambda: patch_header(FLAIR, pixdim=(1.0, float("nan"), 1.0)))
_simple("nan_voxels", "NaN voxels in a float image", lambda: rewrite(FLAIR, _set((1, 2, 3), np.nan, np.float32)))
_simple("inf_voxels", "Inf voxels in a float image", lambda: rewrite(FLAIR, _set((1, 2, 3), np.inf, np.float32)))
_simple(
    "shape_mismatch",
    "modalities of one case disagree in shape",
    lambda: rewrite(f"data/{CASE}/{CASE}_t2.nii.gz", lambda a: a[:30]),
)
_simple(
    "affine_mismatch",
    "modalities of one case disagree in affine",
    lambda: rewrite(f"data/{CASE}/{CASE}_t1.nii.gz", lambda a: a, shifted_affine(f"data/{CASE}/{CASE}_t1.nii.gz")),
)
_simple(
    "mask_affine_mismatch",
    "mask and scans disagree in affine",
    lambda: rewrite(SEG, lambda a: a, shifted_affine(SEG, axis=2)),
)
_simple(
    "label_3_in_brats",
    "label value 3 in a BraTS 2017-2021 mask (ET is 4 there)",
    lambda: rewrite(SEG, _set((0, 0, slice(0, 3)), 3)),
)
_simple("label_7", "unknown label value 7", lambda: rewrite(SEG, _set((0, 0, 0), 7)))
_simple(
    "label_fraction",
    "non-integer label values (float mask with 1.5)",
    lambda: rewrite(SEG, _set((0, 0, 0), 1.5, np.float32)),
)
_simple("label_negative", "negative label value", lambda: rewrite(SEG, _set((0, 0, 0), -1, np.int16)))
_simple("label_nan", "NaN in a float mask", lambda: rewrite(SEG, _set((0, 0, 0), np.nan, np.float32)))

# Warnings (validate exits 0)
_simple(
    "all_zero_modality",
    "a modality is all zeros (warning)",
    lambda: rewrite(f"data/{CASE}/{CASE}_t1.nii.gz", lambda a: np.zeros_like(a)),
)
_simple("empty_mask", "a mask without tumour (warning)", lambda: rewrite(SEG, lambda a: np.zeros_like(a)))
_simple(
    "pixdim_vs_affine",
    "header voxel sizes disagree with the affine (warning)",
    lambda: patch_header(f"data/{CASE}/{CASE}_t2.nii.gz", pixdim=(1.0, 1.0, 3.0)),
)


def _copy_case(new_id: str) -> None:
    """``data/<CASE>`` copied as ``data/<new_id>`` with its files renamed: the same voxels under another id."""
    Path(f"data/{new_id}").mkdir()
    for f in Path(f"data/{CASE}").iterdir():
        shutil.copy(f, Path(f"data/{new_id}") / f.name.replace(CASE, new_id))


_simple(
    "duplicate_content", "the same case under two ids (a renamed copy; warning)", lambda: _copy_case("BraTS2021_00099")
)
_simple(
    "duplicate_symlink",
    "a case folder symlinked under another id (warnings)",
    lambda: os.symlink(Path(f"data/{CASE}").resolve(), "data/BraTS2021_00099"),
)


@probe("voxel_cap_arg", "voxel cap lowered by --max-voxels", "brainseg validate data -q --max-voxels 10000")
def _() -> list[str]:
    for extra in sorted(p for p in Path("data").iterdir() if p.is_dir())[1:]:  # one case: 5 lines, not 15
        shutil.rmtree(extra)
    return _validate("--max-voxels", "10000")


@probe("voxel_cap_bad_env", "BRAINSEG_MAX_VOXELS is not a number", "BRAINSEG_MAX_VOXELS=lots brainseg info data -q")
def _() -> list[str]:
    os.environ["BRAINSEG_MAX_VOXELS"] = "lots"  # the runner restores the environment
    return ["info", "data", "-q"]


# Folders and layouts
@probe("wrong_path", "dataset folder does not exist", "brainseg info nope", needs=())
def _() -> list[str]:
    return ["info", "nope", "-q"]


@probe("path_is_file", "a file where a dataset folder is expected", f"brainseg info {FLAIR}")
def _() -> list[str]:
    return ["info", FLAIR, "-q"]


@probe("evaluate_pred_is_file", "evaluate --pred naming a file", f"brainseg evaluate --pred {FLAIR} --ref data -q")
def _() -> list[str]:
    return ["evaluate", "--pred", FLAIR, "--ref", "data", "-q"]


@probe("empty_folder", "empty dataset folder", "brainseg info empty", needs=())
def _() -> list[str]:
    Path("empty").mkdir()
    return ["info", "empty", "-q"]


@probe("unknown_layout", "a folder of NIfTI files in no known layout", "brainseg info weird", needs=())
def _() -> list[str]:
    from brainseg_tf import io

    for name in ("scan_a", "scan_b"):
        io.save_nifti(np.ones((4, 4, 4), np.int16), Path("weird/case1") / f"{name}.nii.gz")
    return ["info", "weird", "-q"]


@probe(
    "case_id_api", "a case id that would escape its folder (API)", 'io.write_case(..., case_id="../x", ...)', needs=()
)
def _() -> Callable[[], Any]:
    from brainseg_tf import io

    images = {m: np.ones((4, 4, 4), np.int16) for m in io.MODALITIES}
    return lambda: io.write_case("w", "brats2021", "../x", images, None, np.eye(4))


def _dataset_json(name: str, title: str, content: str) -> None:
    def setup() -> list[str]:
        Path("msd/dataset.json").write_text(content)
        return ["validate", "msd", "-q"]

    PROBES.append(Probe(name, title, f"brainseg validate msd -q  (dataset.json: `{content}`)", setup, ("msd",)))


_dataset_json("dataset_json_list", "dataset.json top level is a list", "[1, 2, 3]")
_dataset_json(
    "dataset_json_modality_key",
    "dataset.json modality key is not an integer",
    '{"modality": {"zero": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}',
)
_dataset_json("dataset_json_modality_list", "dataset.json modality is a list", '{"modality": ["FLAIR", "T1w"]}')
_dataset_json(
    "dataset_json_modality_gap",
    "dataset.json modality keys are not 0..3",
    '{"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "5": "T2w"}}',
)
_dataset_json(
    "dataset_json_label_key",
    "dataset.json label key is not an integer",
    '{"labels": {"0": "background", "one": "edema"}}',
)
_dataset_json("dataset_json_nan", "dataset.json holds NaN", '{"numTraining": NaN}')
_dataset_json("dataset_json_invalid", "dataset.json is not valid JSON", "{not json")


@probe(
    "msd_orphans",
    "MSD: duplicate id in imagesTs, image without label, label without image",
    "brainseg validate msd -q",
    needs=("msd",),
)
def _() -> list[str]:
    Path("msd/imagesTs").mkdir(exist_ok=True)
    shutil.copy("msd/imagesTr/BRATS_001.nii.gz", "msd/imagesTs/BRATS_001.nii.gz")
    Path("msd/labelsTr/BRATS_002.nii.gz").rename("msd/labelsTr/BRATS_009.nii.gz")
    return ["validate", "msd", "-q"]


# Preprocessing arguments and caches
def _preprocess_args(name: str, title: str, *extra: str) -> None:
    argv = ["preprocess", "data", "--out", "cache.h5", "-q", *extra]
    PROBES.append(Probe(name, title, "brainseg " + " ".join(argv), lambda: argv))


_preprocess_args("preprocess_spacing_nan", "preprocess --spacing nan", "--spacing", "nan")
_preprocess_args("preprocess_spacing_zero", "preprocess --spacing with a zero", "--spacing", "1", "0", "1")
_preprocess_args("preprocess_margin", "preprocess --margin -1", "--margin", "-1")
_preprocess_args("preprocess_max_cases", "preprocess --max-cases 0", "--max-cases", "0")
_simple(
    "preprocess_bad_case",
    "preprocess a dataset with a damaged file",
    lambda: patch_header(FLAIR, datatype=(128, 24)),
    "preprocess",
)


@probe("cache_interrupted", "open a cache whose build was interrupted (API)", "data.open_cache('cache.h5')", needs=())
def _() -> Callable[[], Any]:
    from brainseg_tf.data.cache import open_cache, partial_path

    partial_path("cache.h5").write_bytes(b"")
    return lambda: open_cache("cache.h5")


@probe(
    "cache_second_builder",
    "a second `preprocess` while another process builds the same cache",
    "brainseg preprocess data --out cache.h5 -q",
)
def _() -> list[str]:
    from brainseg_tf.data.cache import partial_path

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, h5py\nf = h5py.File(sys.argv[1], 'w')\nprint('ready', flush=True)\nsys.stdin.read()",
            str(partial_path("cache.h5")),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "ready"
    _CLEANUP.append(lambda: (holder.kill(), holder.wait()))
    return ["preprocess", "data", "--out", "cache.h5", "-q"]


# Evaluation
def _evaluate(name: str, title: str, damage: Callable[[], Any], *extra: str, needs=("data", "pred")) -> None:
    argv = ["evaluate", "--pred", "pred", "--ref", "data", "--out", "m.csv", "-q", "--no-lesion-wise", *extra]

    def setup() -> list[str]:
        damage()
        return argv

    PROBES.append(
        Probe(
            name,
            title,
            "brainseg " + " ".join(argv),
            setup,
            needs,
            keep=r"^(error|missing|predictions without|warning)",
        )
    )


_evaluate("evaluate_pred_missing", "prediction folder does not exist", lambda: shutil.rmtree("pred"))
_evaluate("evaluate_ref_missing", "reference folder does not exist", lambda: shutil.rmtree("data"))
_evaluate(
    "evaluate_huge_header",
    "a prediction whose header claims 32767^3 voxels",
    lambda: patch_header(f"pred/{CASE}.nii.gz", dims=(32767, 32767, 32767)),
)
_evaluate(
    "evaluate_shape",
    "a prediction of another shape than its reference",
    lambda: rewrite(f"pred/{CASE}.nii.gz", lambda a: a[:30]),
)
_evaluate(
    "evaluate_affine",
    "a prediction with another affine than its reference",
    lambda: rewrite(f"pred/{CASE}.nii.gz", lambda a: a, shifted_affine(f"pred/{CASE}.nii.gz")),
)
_evaluate(
    "evaluate_two_files",
    "two prediction files for one case",
    lambda: shutil.copy(f"pred/{CASE}.nii.gz", f"pred/{CASE}_seg.nii.gz"),
)
_evaluate(
    "evaluate_unpaired_names",
    "predictions under hidden / non-matching names (missing ones listed)",
    lambda: [
        shutil.move(f"pred/{CASE}.nii.gz", f"pred/x{CASE}.nii.gz"),
        shutil.copy(f"pred/x{CASE}.nii.gz", "pred/.nii.gz"),
        shutil.copy(f"pred/x{CASE}.nii.gz", f"pred/._{CASE}.nii.gz"),
    ],
)
_evaluate(
    "evaluate_predictions_json_nan",
    "predictions.json holds NaN",
    lambda: Path("pred/predictions.json").write_text('{"convention": NaN}'),
)
_evaluate("evaluate_cases_unknown", "evaluate --cases NOPE", lambda: None, "--cases", "NOPE")
_evaluate("evaluate_min_lesion_nan", "evaluate --min-lesion-volume nan", lambda: None, "--min-lesion-volume", "nan")
_evaluate("evaluate_dilation", "evaluate --dilation -1", lambda: None, "--dilation", "-1")
_evaluate("evaluate_convention", "evaluate --pred-convention brats2099", lambda: None, "--pred-convention", "brats2099")


@probe(
    "evaluate_unrecorded_pred",
    "predictions that record no label scheme (another tool's) with a value their reference's scheme lacks (a 4 in MSD)",
    "brainseg evaluate --pred pred --ref msd -q",
    needs=("msd",),
)
def _() -> list[str]:
    Path("pred").mkdir()
    for lab in sorted(Path("msd/labelsTr").iterdir()):
        img = nib.load(str(lab))
        data = np.asanyarray(img.dataobj).copy()
        data[0, 0, 0] = 4
        nib.save(nib.Nifti1Image(data, img.affine), str(Path("pred") / lab.name))
    return ["evaluate", "--pred", "pred", "--ref", "msd", "-q"]


@probe(
    "evaluate_unrecorded_ref",
    "a reference folder of masks whose convention is not recorded",
    "brainseg evaluate --pred pred --ref ref -q",
    needs=(),
)
def _() -> list[str]:
    Path("ref").mkdir()
    seg = np.zeros((8, 8, 8), np.uint8)
    seg[1:6, 1:6, 1:6] = 2
    seg[2:4, 2:4, 2:4] = 4
    nib.save(nib.Nifti1Image(seg, np.eye(4)), "ref/c1_seg.nii.gz")
    shutil.copytree("ref", "pred")
    return ["evaluate", "--pred", "pred", "--ref", "ref", "-q"]


# Prediction (a tiny untrained model with its card)
def _predict(name: str, title: str, damage: Callable[[], Any], *extra: str, model: str = "run") -> None:
    argv = ["predict", "--model", model, "--input", "data", "--out", "out", "-q", *extra]

    def setup() -> list[str]:
        damage()
        return argv

    PROBES.append(
        Probe(name, title, "brainseg " + " ".join(argv), setup, ("data", "run"), tf=True, keep=r"^(?!usage:|\s)")
    )  # argparse's usage lines left out, its error line kept


_predict("predict_model_missing", "predict --model that does not exist", lambda: None, model="nope")
_predict("predict_input_missing", "predict --input that does not exist", lambda: shutil.rmtree("data"))
_predict("predict_overlap", "predict --overlap 1.5", lambda: None, "--overlap", "1.5")
_predict("predict_roi", "predict --roi 0", lambda: None, "--roi", "0")
_predict("predict_sw_batch", "predict --sw-batch 0", lambda: None, "--sw-batch", "0")
_predict("predict_et_min", "predict --et-min-voxels -1", lambda: None, "--et-min-voxels", "-1")
_predict("predict_cases_unknown", "predict --cases NOPE", lambda: None, "--cases", "NOPE")
_predict("predict_convention", "predict --convention brats2099", lambda: None, "--convention", "brats2099")
_predict(
    "predict_damaged_case",
    "predict a folder where one case has a damaged file (the others are written)",
    lambda: patch_header(FLAIR, datatype=(32, 64)),
)
_predict(
    "predict_no_card",
    "predict with a .keras file that has no model card",
    lambda: [shutil.copy("run/best.keras", "bare.keras")],
    model="bare.keras",
)
_predict(
    "predict_bad_card",
    "predict with a model card holding a bad field",
    lambda: Path("run/brainseg_model.json").write_text(
        Path("run/brainseg_model.json").read_text().replace('"softmax"', '"softmaxx"')
    ),
)
_predict(
    "predict_card_nan",
    "predict with a model card holding NaN",
    lambda: Path("run/brainseg_model.json").write_text(
        Path("run/brainseg_model.json").read_text().replace('"spatial_dims": 3', '"spatial_dims": NaN')
    ),
)
_predict("predict_uncertainty_kind", "predict --uncertainty bogus", lambda: None, "--uncertainty", "bogus")
_predict(
    "predict_summary_nan",
    "predict --uncertainty into a folder whose predictions.json holds NaN",
    lambda: [Path("out").mkdir(), Path("out/predictions.json").write_text('{"cases": NaN}')],
    "--uncertainty",
)
_predict("predict_out_is_file", "predict --out naming an existing file", lambda: Path("out").write_text("notes"))
_predict(
    "predict_damaged_checkpoint",
    "predict with a truncated best.keras and no other checkpoint",
    lambda: Path("run/best.keras").write_bytes(Path("run/best.keras").read_bytes()[:1000]),
)


# Training recipes and run directories
def _train(name: str, title: str, setup_fn: Callable[[], list[str]], command: str) -> None:
    PROBES.append(Probe(name, title, command, setup_fn, ("data",), tf=True))


def _bad_recipe(name: str, title: str, text: str | None = None, /, **changes: Any) -> None:
    def setup() -> list[str]:
        path = _recipe(Path("r.json"), **changes)
        if text is not None:
            path.write_text(text)
        return ["train", "--config", "r.json"]

    shown = text if text is not None else json.dumps(changes)
    _train(name, title, setup, f"brainseg train --config r.json  (recipe: `{shown}`)")


_bad_recipe("recipe_nan", "recipe holds NaN", '{"optimizer": {"learning_rate": NaN}}')
_bad_recipe("recipe_invalid_json", "recipe is not valid JSON", "{not json")
_bad_recipe("recipe_unknown_key", "recipe has an unknown key", optimizer={"name": "adam", "lr": 0.1})
_bad_recipe("recipe_bad_value", "recipe value out of range", training={"epochs": 0})
_bad_recipe("recipe_name_escapes", "recipe name escaping runs/", name="../elsewhere")
_bad_recipe("recipe_missing_data", "recipe data root does not exist", data={"root": "nope"})


@probe("train_recipe_missing", "recipe file does not exist", "brainseg train --config nope.json", needs=(), tf=True)
def _() -> list[str]:
    return ["train", "--config", "nope.json"]


def _run_dir_with(split: dict | None = None, config_change: dict | None = None) -> list[str]:
    """A run directory that looks started (config.json, split.json) for ``r.json``."""
    from brainseg_tf.training import load_config

    cfg = load_config(_recipe(Path("r.json")))
    Path("rundir").mkdir()
    saved = cfg.to_dict()
    for key, value in (config_change or {}).items():
        saved[key] = {**saved[key], **value}
    Path("rundir/config.json").write_text(json.dumps(saved))
    Path("rundir/split.json").write_text(json.dumps(split or {"train_ids": [], "val_ids": [], "method": "none"}))
    return ["train", "--config", "r.json", "--run-dir", "rundir"]


_train(
    "split_bad_key",
    "run directory's split.json has an unknown key",
    lambda: _run_dir_with({"train_ids": [], "val_ids": [], "validation": []}),
    "brainseg train --config r.json --run-dir rundir",
)
_train(
    "split_overlap",
    "run directory's split.json has a case in both train and validation",
    lambda: _run_dir_with({"train_ids": ["a"], "val_ids": ["a"]}),
    "brainseg train --config r.json --run-dir rundir",
)
_train(
    "resume_changed",
    "resume a run with an incompatibly changed recipe",
    lambda: _run_dir_with(config_change={"optimizer": {"learning_rate": 0.5}}),
    "brainseg train --config r.json --run-dir rundir",
)
_train(
    "resume_refused",
    "--no-resume on a started run directory",
    lambda: _run_dir_with() + ["--no-resume"],
    "brainseg train --config r.json --run-dir rundir --no-resume",
)


@probe(
    "two_trainers",
    "a second trainer on a run directory in use",
    "brainseg train --config r.json --run-dir rundir",
    tf=True,
)
def _() -> list[str]:
    from brainseg_tf.training.rundir import RunLock

    argv = _run_dir_with()
    lock = RunLock(Path("rundir"))
    lock.__enter__()
    _CLEANUP.append(lambda: lock.__exit__(None, None, None))
    return argv


# Export
@probe(
    "export_exists",
    "export into a non-empty export folder without --overwrite",
    "brainseg export --model run --out exp",
    needs=("run",),
    tf=True,
)
def _() -> list[str]:
    Path("exp").mkdir()
    shutil.copy("run/brainseg_model.json", "exp/brainseg_model.json")
    return ["export", "--model", "run", "--out", "exp"]


@probe(
    "export_overwrite_non_export",
    "export --overwrite onto a folder that is not an export",
    "brainseg export --model run --out precious --overwrite",
    needs=("run",),
    tf=True,
)
def _() -> list[str]:
    Path("precious").mkdir()
    Path("precious/thesis.tex").write_text("years of work")
    return ["export", "--model", "run", "--out", "precious", "--overwrite"]


# ------------------------------------------------------------------------------- running

_CLEANUP: list[Callable[[], Any]] = []


@dataclass
class Row:
    name: str
    title: str
    command: str
    exit: str
    message: str


@contextlib.contextmanager
def _in(folder: Path) -> Iterator[None]:
    old, env = Path.cwd(), dict(os.environ)
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)
        os.environ.clear()
        os.environ.update(env)
        while _CLEANUP:
            _CLEANUP.pop()()


def _message(text: str, folder: Path) -> str:
    """The printed lines that carry the message (no blank lines), with the probe folder's path removed."""
    text = text.replace(str(folder.resolve()) + os.sep, "").replace(str(folder) + os.sep, "")
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def run_probe(p: Probe, base: Path, fixtures: dict[str, Path]) -> Row:
    """Run one probe in a fresh folder under ``base``; the exit code and the printed messages."""
    import warnings

    from brainseg_tf.cli import main

    folder = base / p.name
    folder.mkdir()
    for need in p.needs:
        if need == "run":
            _model_run(folder / "run")
        else:
            shutil.copytree(fixtures[need], folder / need, symlinks=True)
    out, err = _io.StringIO(), _io.StringIO()
    with _in(folder), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action = p.setup()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if callable(action):
                try:
                    action()
                    code = "returns"
                except Exception as exc:  # noqa: BLE001 — the API probes report what they raise
                    code = f"raises {type(exc).__name__}"
                    print(exc, file=sys.stderr)
            else:
                try:
                    code = str(main(action))
                except SystemExit as exc:  # argparse
                    code = str(exc.code)
                except BaseException:  # noqa: BLE001 — a traceback is what the table must show
                    code = "TRACEBACK"
                    traceback.print_exc()
    printed = out.getvalue() + err.getvalue()  # Python prints a warning as "<file>:<line>: UserWarning: ..."
    printed += "".join(f"UserWarning: {w.message}\n" for w in caught if w.category is UserWarning)
    message = _message(printed, folder)
    if p.keep is not None:
        message = "\n".join(line for line in message.splitlines() if re.search(p.keep, line))
    return Row(p.name, p.title, p.command, code, message)


def run_probes(names: list[str] | None = None, *, tf: bool | None = None) -> list[Row]:
    """Run the probes (all, those named, or only those with/without TensorFlow); one row each."""
    selected = [p for p in PROBES if (names is None or p.name in names) and (tf is None or p.tf == tf)]
    with tempfile.TemporaryDirectory(prefix="input_classes_") as tmp:
        base = Path(tmp)
        fixtures = _fixtures(base / "_fixtures")
        return [run_probe(p, base, fixtures) for p in selected]


def code(text: str) -> str:
    """``text`` as a Markdown code span inside a table cell (``|`` escaped; double backticks around a backtick)."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def cell(text: str) -> str:
    """The message cell: one code span per printed line."""
    return "<br>".join(code(line) for line in text.splitlines()) or "(nothing printed)"


def markdown(rows: list[Row]) -> str:
    """The table of docs/robustness.md (between the begin/end markers)."""
    out = [
        "| # | input class | command (from the probe's folder) | exit | message, exactly as printed |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        out.append(f"| {i} | {r.title} <sub>`{r.name}`</sub> | {code(r.command)} | {r.exit} | {cell(r.message)} |")
    return "\n".join(out)


def parse_table(text: str) -> dict[str, tuple[str, str]]:
    """Probe name -> (exit, message cell) from a committed table."""
    rows = {}
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    for line in body.splitlines():
        if not line.startswith("| ") or "<sub>`" not in line:
            continue
        name = line.split("<sub>`", 1)[1].split("`", 1)[0]
        cells = [c.strip() for c in line.split(" | ")]
        rows[name] = (cells[-2], cells[-1].rstrip(" |").rstrip())
    return rows


def main_cli(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", default=None, help="probe names")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--tf", dest="tf", action="store_true", default=None, help="only probes that load TensorFlow")
    group.add_argument("--no-tf", dest="tf", action="store_false", help="only probes without TensorFlow")
    ap.add_argument("--write", type=Path, default=None, help="replace the table between the markers in this file")
    args = ap.parse_args(argv)
    rows = run_probes(args.only, tf=args.tf)
    table = markdown(rows)
    if args.write is not None:
        from brainseg_tf import atomic

        doc = args.write.read_text()
        head, rest = doc.split(BEGIN, 1)
        atomic.write_text(args.write, f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}")
    print(table)


if __name__ == "__main__":
    main_cli()
