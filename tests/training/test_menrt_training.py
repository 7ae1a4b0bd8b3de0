"""MEN-RT through training, prediction and evaluation (issue 21): a tiny model on T1c alone in the
``men_rt`` scheme (1 GTV), on synthetic cases of MEN-RT's layout (``<case>_t1c``, ``<case>_gtv``) on
an anisotropic, non-240 grid; predictions written by ``brainseg predict`` in the source's values."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf import evaluation as E
from brainseg_tf import io
from brainseg_tf.cli import main
from brainseg_tf.io.nifti import stamped_convention
from brainseg_tf.synthetic import make_dataset

SHAPE = (40, 36, 24)
SPACING = (0.9, 0.9, 2.0)
IDS = [f"BraTS-MEN-RT-{i:04d}-1" for i in range(3)]


@pytest.fixture(scope="module")
def menrt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("menrt") / "data"
    return make_dataset(root, layout="men_rt", n_cases=3, shape=SHAPE, spacing=SPACING, progress=False)


def recipe(root: Path, head: str) -> dict:
    pipeline = {"kind": "patch", "patch_size": [16, 16, 16], "batch_size": 1, "augment": "none"}
    training = {"epochs": 1, "steps_per_epoch": 2, "verbose": 0, "seed": 0}
    if head == "sigmoid":  # the scheme's one region: a 1-channel region head
        pipeline["region"] = "gtv"
    return {
        "name": "menrt",
        "data": {"root": str(root), "modalities": ["t1ce"], "scheme": "men_rt"},
        "split": {"method": "kfold", "folds": 3, "fold": 0, "seed": 0},
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "instance", "head": head}},
        "pipeline": pipeline,
        "validation": {
            "mode": "patches",
            "patches_per_case": 1,
            "final_sliding_window": False,
            "select_postprocessing": False,
        },
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "schedule": {"name": "constant"},
        "training": training,
    }


def _raw(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.mark.parametrize(("head", "channels", "card_head"), [("sigmoid", 1, "region"), ("softmax", 2, "softmax")])
def test_a_t1c_model_trains_and_predicts_gtv_in_source_values(
    tmp_path: Path, menrt: Path, head: str, channels: int, card_head: str
) -> None:
    from brainseg_tf.card import ModelCard
    from brainseg_tf.training import train

    result = train(recipe(menrt, head), run_dir=tmp_path / "run")
    assert result.model.input_shape[-1] == 1  # T1c alone
    assert result.model.output_shape[-1] == channels  # GTV (sigmoid) or BG, GTV (softmax)
    assert result.metrics["completed"] and np.isfinite(result.metrics["last_epoch"]["loss"])
    assert "val_dice_gtv" in result.history
    card = ModelCard.load(tmp_path / "run" / "brainseg_model.json")
    assert card.scheme == "men_rt" and card.modalities == ["t1ce"] and card.head == card_head
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["modalities"] == ["t1ce"]

    pred_dir = tmp_path / "pred"
    args = ["predict", "--model", str(tmp_path / "run"), "--input", str(menrt), "--out", str(pred_dir), "-q"]
    assert main([*args, "--no-viewers"]) == 0
    ds = io.open_dataset(menrt)
    for cid in IDS:
        out = pred_dir / f"{cid}.nii.gz"
        img = nib.load(str(out))
        written = np.asarray(img.dataobj)
        # on the case's own anisotropic grid, in MEN-RT's values (0, 1 GTV), the scheme in the header
        assert written.shape == SHAPE and written.dtype == np.uint8 and set(np.unique(written)) <= {0, 1}
        assert stamped_convention(img.header) == "men_rt"
        case = ds[cid]
        np.testing.assert_allclose(img.affine, case.affine, atol=1e-5)
        np.testing.assert_allclose(img.header.get_zooms()[:3], SPACING, rtol=1e-6)
    # the predictions score in the scheme's one region
    scored = E.evaluate_folders(pred_dir, menrt, progress=False, lesion_wise=False)
    assert {row["region"] for row in scored.rows} == {"GTV"} and len(scored.rows) == len(IDS)
    assert all(0.0 <= row["dice"] <= 1.0 for row in scored.rows)


def test_perfect_prediction_scores_one_and_removing_gtv_changes_gtv(tmp_path: Path, menrt: Path, capsys) -> None:
    ds = io.open_dataset(menrt)
    perfect, empty = tmp_path / "perfect", tmp_path / "empty"
    for cid in IDS:
        case = ds[cid]
        assert case.label.any()
        io.write_label(case.label, case, perfect / f"{cid}.nii.gz")
        io.write_label(np.zeros_like(case.label), case, empty / f"{cid}.nii.gz")  # label 1 removed
    result = E.evaluate_folders(perfect, menrt, progress=False, lesion_wise=False)
    assert [row["region"] for row in result.rows] == ["GTV"] * len(IDS)
    assert {row["dice"] for row in result.rows} == {1.0} and {row["hd95"] for row in result.rows} == {0.0}
    removed = E.evaluate_folders(empty, menrt, progress=False, lesion_wise=False)
    assert {row["dice"] for row in removed.rows} == {0.0}
    # a prediction another tool wrote (source values, no stamp) reads in the reference's scheme
    other = tmp_path / "other"
    for cid in IDS:
        io.save_nifti(_raw(ds.ref(cid).label), other / f"{cid}.nii.gz", affine=ds[cid].affine)
    rc = main(["evaluate", "--pred", str(other), "--ref", str(menrt), "--no-lesion-wise", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "read in the reference's scheme 'men_rt'" in out
    dice_lines = [line.split() for line in out.splitlines() if line.split()[1:2] == ["dice"]]
    assert [line[0] for line in dice_lines] == ["GTV"]


def test_a_four_modality_model_is_refused_on_men_rt_data(tmp_path: Path, menrt: Path) -> None:
    from brainseg_tf.inference import Predictor, predict_case, predict_folder

    four = Predictor(fn=lambda b: np.full(b.shape[:-1] + (2,), 0.5, np.float32), head="softmax", scheme="men_rt")
    assert four.modalities == io.MODALITIES
    with pytest.raises(io.DataError) as err:
        predict_folder(four, menrt, tmp_path / "pred", progress=False)
    message = str(err.value)
    assert message.startswith(f"{menrt / IDS[0]}: case '{IDS[0]}' has no flair, t1, t2 image")
    assert "the model uses flair, t1, t1ce, t2, this case has t1ce" in message
    assert not (tmp_path / "pred").exists() or not list((tmp_path / "pred").iterdir())
    with pytest.raises(io.DataError, match="has no flair, t1, t2 image"):
        predict_case(four, menrt / IDS[0])


def _t1c_threshold_model():
    """A tiny 'MEN-RT model' on one input channel: GTV (softmax class 1) where the T1c z-score is
    above 0.5, background elsewhere."""
    import keras

    def classes(x):
        gtv = keras.ops.cast(x[..., 0] > 0.5, "float32")
        return keras.ops.stack([0.9 - 0.8 * gtv, 0.1 + 0.8 * gtv], axis=-1)

    inputs = keras.Input((None, None, None, 1))
    return keras.Model(inputs, keras.layers.Lambda(classes, output_shape=(None, None, None, 2))(inputs))


def test_the_t1c_channel_reaches_the_model_and_gtv_is_written_as_1(tmp_path: Path, menrt: Path) -> None:
    from brainseg_tf.card import ModelCard
    from brainseg_tf.data.preprocess import paste_back, preprocess_case
    from brainseg_tf.inference import Predictor, predict_case

    card = ModelCard(modalities=["t1ce"], head="softmax", scheme="men_rt", window=[16, 16, 16])
    pred = Predictor.from_keras(_t1c_threshold_model(), card)
    case = io.read_case(menrt / IDS[0], load_label=False)
    pre = preprocess_case(case)  # the card's default preprocessing: crop to the nonzero box, z-score
    expected = paste_back((pre.image[..., 2] > 0.5).astype(np.uint8), pre.geometry, fill=0)
    assert 0 < expected.sum() < expected.size  # the T1c channel, not a zero channel, decides
    result = predict_case(pred, case)
    assert result.scheme == "men_rt"
    np.testing.assert_array_equal(result.labels, expected)
    written = _raw(result.write(tmp_path / f"{IDS[0]}.nii.gz"))
    np.testing.assert_array_equal(written, expected)  # internal 1 GTV -> file value 1


def test_resampling_stated_in_the_recipe_is_built_into_the_cache_recorded_and_undone(
    tmp_path: Path, menrt: Path
) -> None:
    """A native anisotropic grid resampled to the recipe's spacing: the cache is built with it, the card
    records it, and brainseg predict writes each case back on its own grid; a cache built otherwise is refused."""
    from brainseg_tf.card import ModelCard
    from brainseg_tf.data import open_cache
    from brainseg_tf.training import train

    cfg = recipe(menrt, "sigmoid")
    cfg["data"].update(cache=str(tmp_path / "cache.h5"), build_cache=True)
    cfg["pipeline"]["options"] = {"preprocess": {"spacing": [1.8, 1.8, 2.0]}}
    train(cfg, run_dir=tmp_path / "run")
    with open_cache(tmp_path / "cache.h5") as cache:
        assert cache.params["spacing"] == [1.8, 1.8, 2.0]
        # 40 x 36 x 24 voxels of 0.9 x 0.9 x 2.0 mm at 1.8 x 1.8 x 2.0 mm: about half in x and y
        assert tuple(cache.geometry(IDS[0]).grid_shape) == (20, 18, 24)
    card = ModelCard.load(tmp_path / "run" / "brainseg_model.json")
    assert card.preprocessing.spacing == [1.8, 1.8, 2.0]
    pred_dir = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--model",
                str(tmp_path / "run"),
                "--input",
                str(menrt),
                "--out",
                str(pred_dir),
                "-q",
                "--no-viewers",
            ]
        )
        == 0
    )
    ds = io.open_dataset(menrt)
    for cid in IDS:
        img = nib.load(str(pred_dir / f"{cid}.nii.gz"))
        assert img.shape == SHAPE
        np.testing.assert_allclose(img.affine, ds[cid].affine, atol=1e-5)
        np.testing.assert_allclose(img.header.get_zooms()[:3], SPACING, atol=1e-6)
    # the cache knows each case's files: a recipe asking for a modality MEN-RT does not ship is refused
    with open_cache(tmp_path / "cache.h5") as cache:
        assert cache.modalities(IDS[0]) == ("t1ce",)
    wants_flair = json.loads(json.dumps(cfg))
    wants_flair["data"].update(modalities=["flair", "t1ce"], build_cache=False)
    with pytest.raises(
        io.DataError,
        match=r"cache\.h5: case 'BraTS-MEN-RT-0000-1' has no flair image: .*data\.modalities.*this case has t1ce "
        r"\(the cache stores the others as zeros\)",
    ):
        train(wants_flair, run_dir=tmp_path / "run3")
    cfg["pipeline"]["options"] = {"preprocess": {"spacing": 1.0}}
    with pytest.raises(ValueError, match=r"cache\.h5: built with spacing=\[1\.8, 1\.8, 2\.0\] but the recipe's"):
        train(cfg, run_dir=tmp_path / "run2")
