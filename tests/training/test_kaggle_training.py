"""The 2D seed recipe trains from the Kaggle per-slice HDF5 set, read in place."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from test_kaggle import write_kaggle_volume  # noqa: E402

from brainseg_tf import io  # noqa: E402
from brainseg_tf.io import kaggle  # noqa: E402
from brainseg_tf.training import load_config, train  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ORDER = ["t1", "t1ce", "t2", "flair"]  # the reading many Kaggle notebooks assume


def test_open_dataset_reads_a_slice_folder_as_volumes(tmp_path):
    for v in (1, 2):
        write_kaggle_volume(tmp_path, v, seed=v, order=ORDER)
    ds = io.open_dataset(tmp_path, channel_order=ORDER)
    assert isinstance(ds, kaggle.SliceDataset) and ds.case_ids == ["volume_1", "volume_2"]
    assert ds.labelled_ids == ds.case_ids and ds.grid("volume_2") == ((64, 64, 24), (1.0, 1.0, 1.0))
    case = ds["volume_1"]
    assert case.image.shape == (64, 64, 24, 4) and set(np.unique(case.label)) <= {0, 1, 2, 3}
    with pytest.raises(io.DataError, match="is not in this dataset"):
        ds.ref("volume_9")
    with pytest.raises(ValueError, match="channel_order is only for the Kaggle slice set"):
        io.open_dataset(tmp_path / "nope", channel_order=ORDER, layout="brats2021")


@pytest.mark.slow
def test_the_2d_seed_recipe_trains_a_few_steps_from_kaggle_slices(tmp_path):
    data = tmp_path / "BraTS2020_training_data" / "content" / "data"
    for v in (1, 2, 3):
        write_kaggle_volume(data, v, seed=v, order=ORDER)
    recipe = json.loads((REPO / "configs" / "unet2d_seed.json").read_text())
    recipe["data"] = {"root": str(tmp_path), "modalities": ["flair", "t1ce"], "channel_order": ORDER}
    recipe["split"] = {"method": "kfold", "folds": 3, "fold": 0, "seed": 0}
    recipe["pipeline"]["batch_size"] = 2
    recipe["pipeline"]["options"]["slices"] = [4, 20]
    recipe["validation"]["patches_per_case"] = 2
    recipe["training"] = {"epochs": 1, "steps_per_epoch": 2, "seed": 0, "verbose": 0}
    path = tmp_path / "kaggle_seed.json"
    path.write_text(json.dumps(recipe))
    with warnings.catch_warnings():  # every reader of the set takes the recipe's channel order
        warnings.filterwarnings("error", message=".*contradict channel_order")
        result = train(load_config(path), run_dir=tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["optimizer_steps"] == 2
    history = result.history if hasattr(result, "history") else metrics.get("history", {})
    losses = [v for k, v in (history or {}).items() if k == "loss"]
    assert all(np.isfinite(np.asarray(v, dtype=float)).all() for v in losses)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert sorted(split["train_ids"] + split["val_ids"]) == ["volume_1", "volume_2", "volume_3"]


def test_a_channel_order_that_is_not_a_permutation_is_refused(tmp_path):
    recipe = json.loads((REPO / "configs" / "unet2d_seed.json").read_text())
    recipe["data"]["channel_order"] = ["t1", "t1", "t2", "flair"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(recipe))
    with pytest.raises(ValueError, match=r"data\.channel_order=\['t1', 't1', 't2', 'flair'\] must be a permutation"):
        load_config(path)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_slice_set_builds_a_cache_and_is_cross_validated(tmp_path):
    """The set as a cache source (in the recipe's channel order) and in ``brainseg cv``: each volume
    held out by exactly one fold and scored against its own mask."""
    from brainseg_tf.data import open_cache
    from brainseg_tf.training.crossval import cross_validate

    data = tmp_path / "data"
    for v in (1, 2):
        write_kaggle_volume(data, v, seed=v, order=ORDER)
    recipe = json.loads((REPO / "configs" / "unet2d_seed.json").read_text())
    recipe["data"] = {
        "root": str(data),
        "modalities": ["flair", "t1ce"],
        "channel_order": ORDER,
        "cache": str(tmp_path / "slices.h5"),
        "build_cache": True,
    }
    recipe["model"]["options"] = {"base_filters": 4}
    recipe["pipeline"].update(batch_size=2, patch_size=[64, 64])
    recipe["pipeline"]["options"]["slices"] = [4, 20]
    recipe["validation"].update(patches_per_case=2, select_postprocessing=False)
    recipe["training"] = {"epochs": 1, "steps_per_epoch": 1, "seed": 0, "verbose": 0}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*contradict channel_order")
        result = cross_validate(
            recipe, run_dir=tmp_path / "cv", folds=2, records=tmp_path / "records", progress=False, resamples=50
        )
    with open_cache(tmp_path / "slices.h5") as cache:
        assert sorted(cache) == ["volume_1", "volume_2"]
        assert cache.modalities("volume_1") == io.MODALITIES  # one file holds every channel
        assert cache.image("volume_2").shape[-1] == 4
    assert result.completed and sorted(result.summary["per_case"]) == ["volume_1", "volume_2"]
    assert "postprocessing_from_records" in result.summary  # the selection that needs no label files
    held = [json.loads((tmp_path / "records" / f"fold_{k}.json").read_text())["cases"] for k in range(2)]
    assert sorted(cid for cases in held for cid in cases) == ["volume_1", "volume_2"]
    for cases in held:
        for scores in cases.values():
            assert set(scores["dice"]) == {"WT", "TC", "ET"}
            assert all(0.0 <= d <= 1.0 for d in scores["dice"].values())
