"""The model contract: for every head kind, `brainseg predict` repeats training exactly.

Each test trains a tiny model with :func:`brainseg_tf.training.train`, predicts a case through the
``brainseg predict`` command line (from the run directory, then from the exported SavedModel) and
compares the written labels with labels computed here, independently of the inference module:
the case is preprocessed with the options the recipe trained with, the Keras model is applied
directly (one window covers the brain box, so no blending is involved), activations and the
nested region rule are applied by hand, and the result is put back on the native grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brainseg_tf import io as bio  # noqa: E402
from brainseg_tf.cli import main  # noqa: E402
from brainseg_tf.data.preprocess import paste_back, preprocess_case  # noqa: E402
from brainseg_tf.io.labels import to_canonical  # noqa: E402
from brainseg_tf.training import train  # noqa: E402

PATCH = [48, 48, 40]  # the whole synthetic grid: one window covers the brain box
CACHE_PATCH = [48, 48, 32]  # the grid resampled to (0.9, 0.9, 1.25) mm is 53 x 53 x 32
ALL = ["flair", "t1", "t1ce", "t2"]


@pytest.fixture(scope="module")
def dataset(synthetic_dataset) -> Path:
    return synthetic_dataset(n_cases=3, seed=5, shape=(48, 48, 40))


def _recipe(data: dict, model: dict, patch: list[int] = PATCH, **sections) -> dict:
    recipe = {
        "name": "contract",
        "data": data,
        "split": {"method": "fixed", "val_ids": ["BraTS2021_00002"]},
        "model": model,
        "pipeline": {
            "kind": "patch",
            "patch_size": patch,
            "batch_size": 1,
            "augment": "none",
            "foreground_fraction": 1.0,
        },
        # The contract is the model's own labels: no postprocessing chosen after training (that
        # selection has its own tests in test_training_selection.py).
        "validation": {
            "mode": "patches",
            "patches_per_case": 1,
            "final_sliding_window": False,
            "select_postprocessing": False,
        },
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "schedule": {"name": "constant"},
        "training": {"epochs": 1, "steps_per_epoch": 2, "verbose": 0, "seed": 0},
        "runtime": {"mixed_precision": "off"},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value}
    return recipe


def _nested(wt: np.ndarray, tc: np.ndarray, et: np.ndarray) -> np.ndarray:
    """ET -> 3, TC without ET -> 1 (NCR), WT without TC -> 2 (ED), written out by hand."""
    out = np.zeros(wt.shape, np.uint8)
    out[wt] = 2
    out[tc] = 1
    out[et] = 3
    return out


def _forward_window(model, image: np.ndarray, roi: list[int]) -> np.ndarray:
    """The model on ``image`` zero-padded (centred) to ``roi``, cropped back."""
    pads = [((r - s) // 2, r - s - (r - s) // 2) for s, r in zip(image.shape[:3], roi)]
    assert all(a >= 0 and b >= 0 for a, b in pads), "the test needs one window to cover the brain box"
    x = np.pad(image, pads + [(0, 0)])[None].astype(np.float32)
    y = model(x, training=False)
    y = np.asarray(y[0] if isinstance(y, (list, tuple)) else y, np.float32)[0]
    return y[tuple(slice(a, a + s) for (a, _), s in zip(pads, image.shape[:3]))]


def _labels_3d(model, case, *, modalities, head, logits, region=None, roi=PATCH, **preprocess) -> np.ndarray:
    pre = preprocess_case(case, **preprocess)
    image = pre.image[..., [ALL.index(m) for m in modalities]]
    y = _forward_window(model, image, roi)
    if logits:
        y = 1.0 / (1.0 + np.exp(-y)) if head != "softmax" else np.exp(y) / np.exp(y).sum(-1, keepdims=True)
    if head == "softmax":
        labels = np.argmax(y, axis=-1).astype(np.uint8)
    elif head == "sigmoid":
        labels = _nested(y[..., 0] > 0.5, y[..., 1] > 0.5, y[..., 2] > 0.5)
    else:
        mask = y[..., 0] > 0.5
        empty = np.zeros_like(mask)
        labels = _nested(*[mask if r == region else empty for r in ("WT", "TC", "ET")])
    return paste_back(labels, pre.geometry, fill=0)


def _predict_cli(model: Path | list[Path], data: Path, out: Path, case_id: str = "BraTS2021_00002") -> np.ndarray:
    models = [str(m) for m in (model if isinstance(model, list) else [model])]
    rc = main(["predict", "--model", *models, "--input", str(data), "--out", str(out), "--cases", case_id, "-q"])
    assert rc == 0
    img = nib.load(out / f"{case_id}.nii.gz")
    return to_canonical(np.asarray(img.dataobj), "brats")


def _check_run(tmp_path: Path, data: Path, run: Path, expected: np.ndarray) -> None:
    values, counts = np.unique(expected, return_counts=True)
    assert (counts > 20).sum() >= 2, f"a trivial expected map {dict(zip(values, counts))} proves nothing"
    got = _predict_cli(run, data, tmp_path / "pred_run")
    assert got.shape == expected.shape
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} voxels differ"
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "export")]) == 0
    via_saved_model = _predict_cli(tmp_path / "export" / "saved_model", data, tmp_path / "pred_export")
    assert np.array_equal(via_saved_model, expected), f"{int((via_saved_model != expected).sum())} voxels differ"


def _best(run: Path):
    import brainseg_tf  # noqa: F401  (registers the custom objects)

    return keras.saving.load_model(run / "best.keras", compile=False)


@pytest.mark.slow
@pytest.mark.compat
@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_3d_heads_predict_as_trained(dataset: Path, tmp_path: Path, head: str) -> None:
    model = {
        "name": "unet",
        "options": {
            "spatial_dims": 3,
            "depth": 2,
            "base_filters": 4,
            "max_filters": 8,
            "norm": "instance",
            "head": head,
        },
    }
    run = tmp_path / "run"
    train(_recipe({"root": str(dataset), "modalities": ALL}, model), run_dir=run)
    card = json.loads((run / "brainseg_model.json").read_text())
    assert card["head"] == head and card["modalities"] == ALL and card["window"] == PATCH
    case = bio.open_dataset(dataset)["BraTS2021_00002"]
    expected = _labels_3d(_best(run), case, modalities=ALL, head=head, logits=False)
    _check_run(tmp_path, dataset, run, expected)


@pytest.mark.slow
@pytest.mark.compat
def test_single_region_logit_model_znet(dataset: Path, tmp_path: Path) -> None:
    model = {"name": "znet", "options": {"depth": 2, "base_filters": 2}}  # logits=True, 1 channel: ZNet's default
    run = tmp_path / "run"
    recipe = _recipe(
        {"root": str(dataset), "modalities": ["flair"]}, model, loss={"name": "bce"}, pipeline={"region": "tc"}
    )
    train(recipe, run_dir=run)
    card = json.loads((run / "brainseg_model.json").read_text())
    assert card["head"] == "region" and card["region"] == "TC" and card["logits"] is True
    case = bio.open_dataset(dataset)["BraTS2021_00002"]
    expected = _labels_3d(_best(run), case, modalities=["flair"], head="region", logits=True, region="TC")
    _check_run(tmp_path, dataset, run, expected)
    exported = json.loads((tmp_path / "export" / "brainseg_model.json").read_text())
    assert exported["logits"] is False  # the SavedModel outputs probabilities


@pytest.mark.slow
def test_2d_seed_resize_on_the_native_grid(dataset: Path, tmp_path: Path) -> None:
    import tensorflow as tf

    model = {"name": "unet2d", "options": {"base_filters": 4, "depth": 2, "dropout": 0.0}}
    recipe = _recipe(
        {"root": str(dataset), "modalities": ["flair", "t1ce"]},
        model,
        loss={"name": "ce"},
        pipeline={
            "kind": "slice",
            "patch_size": [32, 32],
            "batch_size": 4,
            "options": {"plane": "axial", "slices": [5, 25], "crop": False},
        },
    )
    run = tmp_path / "run"
    train(recipe, run_dir=run)
    card = json.loads((run / "brainseg_model.json").read_text())
    assert card["preprocessing"]["resize"] == [32, 32] and card["preprocessing"]["crop"] is False
    case = bio.open_dataset(dataset)["BraTS2021_00002"]
    image = preprocess_case(case, crop=False).image[..., [0, 2]]  # native grid, z-scored
    net = _best(run)
    slices = np.moveaxis(image, 2, 0)  # (Z, X, Y, C)
    small = tf.image.resize(slices, [32, 32], method="bilinear")
    probs = tf.image.resize(net(small, training=False), list(image.shape[:2]), method="bilinear").numpy()
    expected = np.moveaxis(np.argmax(probs, axis=-1).astype(np.uint8), 0, 2)
    _check_run(tmp_path, dataset, run, expected)


@pytest.mark.slow
def test_model_from_a_reoriented_resampled_cache(dataset: Path, tmp_path: Path) -> None:
    from brainseg_tf.data import build_cache

    spacing = [0.9, 0.9, 1.25]
    cache = build_cache(dataset, tmp_path / "cache.h5", reorient=True, spacing=spacing, margin=2, progress=False)
    model = {
        "name": "unet",
        "options": {"spatial_dims": 3, "depth": 2, "base_filters": 4, "max_filters": 8, "head": "sigmoid"},
    }
    run = tmp_path / "run"
    train(_recipe({"cache": str(cache), "modalities": ALL}, model, patch=CACHE_PATCH), run_dir=run)
    pre = json.loads((run / "brainseg_model.json").read_text())["preprocessing"]
    assert pre["reorient"] is True and pre["spacing"] == spacing and pre["margin"] == 2
    case = bio.open_dataset(dataset)["BraTS2021_00002"]
    expected = _labels_3d(
        _best(run),
        case,
        modalities=ALL,
        head="sigmoid",
        logits=False,
        roi=CACHE_PATCH,
        reorient=True,
        spacing=spacing,
        margin=2,
    )
    _check_run(tmp_path, dataset, run, expected)


@pytest.mark.compat
def test_three_region_models_combine_into_their_label_map(dataset: Path, tmp_path: Path) -> None:
    from brainseg_tf.card import ModelCard

    case = bio.open_dataset(dataset)["BraTS2021_00002"]
    pre = preprocess_case(case)
    masks = {}
    runs = []
    for i, region in enumerate(("WT", "TC", "ET")):
        inp = keras.Input((None, None, None, 1))
        out = keras.layers.Conv3D(1, 1, name="logit")(inp)  # a logit: channel value minus a threshold
        net = keras.Model(inp, out)
        net.set_weights([np.ones((1, 1, 1, 1, 1), np.float32), np.array([-0.5 - 0.75 * i], np.float32)])
        run = tmp_path / region
        run.mkdir()
        net.save(run / "final.keras")
        ModelCard(modalities=["t1ce"], head="region", region=region, logits=True, roi=PATCH).save(run)
        runs.append(run)
        masks[region] = paste_back(pre.image[..., 2] - 0.5 - 0.75 * i > 0, pre.geometry, fill=False)
    got = _predict_cli(runs, dataset, tmp_path / "pred")
    expected = _nested(masks["WT"], masks["TC"], masks["ET"])
    assert {1, 2, 3} <= set(np.unique(expected).tolist()), "the constructed regions should give every label"
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} voxels differ"
    # A missing member is an error before any case is predicted.
    assert (
        main(
            [
                "predict",
                "--model",
                str(runs[0]),
                str(tmp_path / "nope"),
                "--input",
                str(dataset),
                "--out",
                str(tmp_path / "bad"),
                "-q",
            ]
        )
        == 2
    )


def test_averaging_identical_models_equals_one_model(dataset: Path, tmp_path: Path) -> None:
    from brainseg_tf.card import ModelCard
    from brainseg_tf.inference import predict_case

    inp = keras.Input((None, None, None, 4))
    net = keras.Model(inp, keras.layers.Conv3D(4, 1, activation="softmax")(inp))
    run = tmp_path / "one"
    run.mkdir()
    net.save(run / "best.keras")
    ModelCard(modalities=ALL, head="softmax", roi=PATCH).save(run)
    case = bio.open_dataset(dataset)["BraTS2021_00002"]
    single = predict_case(run, case, return_probabilities=True)
    double = predict_case([run, run], case, return_probabilities=True)
    np.testing.assert_allclose(double.probabilities, single.probabilities, atol=1e-6)
    assert np.array_equal(double.labels, single.labels)
