"""Label schemes through training: recipe -> cache -> pipeline targets -> model head -> metrics.

Tiny synthetic cases in the BraTS 2023+ naming with SOURCE label values (PED 2024: 1 ET, 2 NET,
3 CC, 4 ED; GLI 2024: 1 NETC, 2 SNFH, 3 ET, 4 RC), read into each scheme's internal labels
(PED: 1 NET, 2 ED, 3 ET, 4 CC; GLI 2024: 1 NETC, 2 SNFH, 3 ET, 4 RC).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import LPS

from brainseg_tf import io
from brainseg_tf.data.cache import CacheError, build_cache, open_cache
from brainseg_tf.data.preprocess import paste_back
from brainseg_tf.schemes import get_scheme

SHAPE = (24, 24, 24)
#: PED 2024 regions (WT, TC, ET, NET, CC, ED) of each internal label 0 BG, 1 NET, 2 ED, 3 ET, 4 CC.
PED_TABLE = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [1, 1, 0, 1, 0, 0],
        [1, 0, 0, 0, 0, 1],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 0],
    ],
    np.float32,
)
#: GLI 2024 regions (WT, TC, ET, NETC, SNFH, RC) of internal labels 0 BG, 1 NETC, 2 SNFH, 3 ET, 4 RC.
GLI_TABLE = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [1, 1, 0, 1, 0, 0],
        [1, 0, 0, 0, 1, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 1],
    ],
    np.float32,
)
PED_ID, GLI_ID = "BraTS-PED-{:05d}-000", "BraTS-GLI-{:05d}-100"


def source_label(values: tuple[int, ...]) -> np.ndarray:
    """Blocks of the given SOURCE values inside the brain, one x-slab each."""
    label = np.zeros(SHAPE, np.uint8)
    for k, v in enumerate(values):
        label[6 + 3 * k : 9 + 3 * k, 8:16, 8:16] = v
    return label


def write_case(root: Path, case_id: str, label: np.ndarray, seed: int = 0) -> Path:
    """One case ``root/<id>/<id>-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (ellipsoid brain, int16 images)."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(s) - (s - 1) / 2 for s in SHAPE], indexing="ij"), -1)
    brain = ((g / 10.0) ** 2).sum(-1) < 1
    folder = root / case_id
    for k, token in enumerate(("t2f", "t1n", "t1c", "t2w")):
        image = np.where(brain, rng.normal(300 + 100 * k, 30, SHAPE) + 200 * (label > 0), 0).astype(np.int16)
        io.save_nifti(image, folder / f"{case_id}-{token}.nii.gz", affine=LPS)
    io.save_nifti(label.astype(np.uint8), folder / f"{case_id}-seg.nii.gz", affine=LPS)
    return folder


def write_dataset(root: Path, id_format: str, values: tuple[int, ...] = (1, 2, 3, 4), n: int = 3) -> Path:
    for i in range(n):
        write_case(root, id_format.format(i + 1), source_label(values), seed=i)
    return root


def recipe(root: Path, head: str, **data) -> dict:
    return {
        "name": "schemes",
        "data": {"root": str(root), **data},
        "split": {"method": "kfold", "folds": 3, "fold": 0, "seed": 0},
        "model": {"name": "unet", "options": {"depth": 2, "base_filters": 4, "norm": "instance", "head": head}},
        "pipeline": {"kind": "patch", "patch_size": [16, 16, 16], "batch_size": 1, "augment": "none"},
        "validation": {
            "mode": "patches",
            "patches_per_case": 1,
            "final_sliding_window": False,
            "select_postprocessing": False,
        },
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "schedule": {"name": "constant"},
        "training": {"epochs": 1, "steps_per_epoch": 2, "verbose": 0, "seed": 0},
    }


# ------------------------------------------------------------------------------ targets and cache


def test_region_tables_by_hand() -> None:
    from brainseg_tf.data import targets

    np.testing.assert_array_equal(targets.region_table("ped2024"), PED_TABLE)
    np.testing.assert_array_equal(targets.region_table("gli2024"), GLI_TABLE)
    # the default constants are the functions applied to the default scheme
    np.testing.assert_array_equal(targets.REGION_TABLE, [[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    assert targets.NUM_CLASSES == 4 and targets.num_classes("ped2024") == 5
    assert targets.foreground_classes("gli2024") == (1, 2, 3, 4)
    with pytest.raises(ValueError, match=r"must be 5 non-negative per-class weights \(BG, NET, ED, ET, CC\)"):
        targets.check_sample_weights([1, 1, 1, 1], "ped2024")


def test_ped_cache_holds_internal_labels_and_the_scheme(tmp_path: Path) -> None:
    import tensorflow as tf

    from brainseg_tf.data import volume_dataset

    root = write_dataset(tmp_path / "ped", PED_ID, n=1)
    source = source_label((1, 2, 3, 4))
    cache_path = build_cache(root, tmp_path / "ped.h5", progress=False)
    with open_cache(cache_path) as cache:
        assert cache.scheme == "ped2024"
        (cid,) = cache.case_ids
        native = paste_back(np.asarray(cache.label(cid)), cache.geometry(cid), fill=0)
        # source 1 ET -> 3, 2 NET -> 1, 3 CC -> 4, 4 ED -> 2
        np.testing.assert_array_equal(native, np.array([0, 3, 1, 4, 2], np.uint8)[source])
        assert sorted(cache.locations(cid)) == [1, 2, 3, 4]  # CC (4) is foreground too
        with h5py.File(cache_path, "r") as f:
            assert f.attrs["scheme"] == "ped2024"
    (image, regions), *_ = list(volume_dataset(cache_path, target="regions"))
    labels = np.asarray(open_cache(cache_path).label(cid))
    x, y, z = labels.shape
    assert regions.shape[-1] == 6
    got = regions.numpy()[0, :x, :y, :z]
    np.testing.assert_array_equal(got, PED_TABLE[labels])
    cc = labels == 4  # a voxel of source value 3 (CC): WT, TC, CC on; ET, NET, ED off
    assert cc.any() and np.all(got[cc] == [1, 1, 0, 0, 1, 0])
    (_, classes), *_ = list(volume_dataset(cache_path, target="classes"))
    assert classes.shape[-1] == 5
    np.testing.assert_array_equal(tf.argmax(classes, -1).numpy()[0, :x, :y, :z], labels)


@pytest.mark.parametrize("from_cache", [False, True], ids=["nifti", "cache"])
def test_foreground_patches_centre_on_a_cc_only_tumour(tmp_path: Path, from_cache: bool) -> None:
    from brainseg_tf.data import patch_dataset

    root = tmp_path / "ped"
    write_case(root, PED_ID.format(1), source_label((3,)))  # CC only: internal label 4
    source = build_cache(root, tmp_path / "c.h5", progress=False) if from_cache else root
    ds = patch_dataset(
        source,
        patch_size=(8, 8, 8),
        global_batch_size=2,
        target="regions",
        foreground_fraction=1.0,
        augment=None,
        with_info=True,
        repeat=False,
        patches_per_case=4,
    )
    batches = list(ds)
    assert batches
    for _, regions, info in batches:
        assert regions.shape == (2, 8, 8, 8, 6)
        assert np.all(info["fg_class"].numpy() == 4)
        centre = regions.numpy()[:, 4, 4, 4]
        np.testing.assert_array_equal(centre, np.tile(PED_TABLE[4], (2, 1)))


def test_gli2024_targets_through_the_nifti_pipeline(tmp_path: Path) -> None:
    from brainseg_tf.data import volume_dataset

    root = write_dataset(tmp_path / "gli", GLI_ID, n=1)
    ds = volume_dataset(root, target="regions", with_info=True)
    (_, regions, info), *_ = list(ds)
    shape = tuple(info["shape"].numpy()[0])
    got = regions.numpy()[0][tuple(slice(0, s) for s in shape)]
    labels = next(iter(volume_dataset(root, target="labels")))[1].numpy()[0][tuple(slice(0, s) for s in shape)]
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}  # GLI source values are its internal labels
    np.testing.assert_array_equal(got, GLI_TABLE[labels])
    rc = got[labels == 4]
    assert np.all(rc == [0, 0, 0, 0, 0, 1])  # the resection cavity is in no tumour region


def test_old_cache_without_scheme_reads_as_default_and_scheme_mismatch_is_refused(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ped", PED_ID, n=1)
    path = build_cache(root, tmp_path / "ped.h5", progress=False)
    with pytest.raises(CacheError) as err:
        open_cache(path, scheme="ped2023")
    assert str(path) in str(err.value) and "'ped2024'" in str(err.value) and "'ped2023'" in str(err.value)
    with pytest.raises(ValueError, match="built for the label scheme 'ped2024', asked for 'ped2023'"):
        build_cache(root, path, scheme="ped2023", progress=False)
    with h5py.File(path, "a") as f:  # a cache written before schemes existed
        del f.attrs["scheme"]
    assert open_cache(path).scheme == "brats2021"


def test_mixed_schemes_are_refused(tmp_path: Path) -> None:
    from brainseg_tf.training import train

    root = tmp_path / "mixed"
    write_case(root, PED_ID.format(1), source_label((1, 2)))
    write_case(root, GLI_ID.format(2), source_label((1, 2)))
    with pytest.raises(ValueError) as err:
        build_cache(root, tmp_path / "mixed.h5", progress=False)
    message = str(err.value)
    assert "'BraTS-GLI-00002-100' is 'gli2024'" in message and "'BraTS-PED-00001-000' is 'ped2024'" in message
    with pytest.raises(ValueError) as err:
        train(recipe(root, "sigmoid"), run_dir=tmp_path / "run")
    message = str(err.value)
    assert "'BraTS-GLI-00002-100' is 'gli2024'" in message and "'BraTS-PED-00001-000' is 'ped2024'" in message
    assert not (tmp_path / "run" / "best.keras").exists()


def test_stale_cache_scheme_is_refused_by_training(tmp_path: Path) -> None:
    from brainseg_tf.training import train

    root = write_dataset(tmp_path / "ped", PED_ID)
    cache = build_cache(root, tmp_path / "ped.h5", progress=False)
    with pytest.raises(CacheError) as err:
        train(recipe(root, "sigmoid", cache=str(cache), scheme="ped2023"), run_dir=tmp_path / "run")
    message = str(err.value)
    assert str(cache) in message and "'ped2024'" in message and "data.scheme is 'ped2023'" in message


# ------------------------------------------------------------------------------ recipe, losses, metrics


def test_recipe_scheme_sets_the_head_and_is_checked() -> None:
    from brainseg_tf.training import TrainConfig

    cfg = TrainConfig.from_dict({"data": {"scheme": "PED2025"}, "model": {"options": {"head": "sigmoid"}}})
    assert cfg.data.scheme == "ped2024" and cfg.out_channels == 6 and cfg.head == "sigmoid"
    assert TrainConfig.from_dict({"data": {"scheme": "gli2024"}}).out_channels == 5
    assert TrainConfig.from_dict({}).out_channels == 4  # the default scheme
    with pytest.raises(ValueError, match=r"data.scheme='ped2099' is unknown"):
        TrainConfig.from_dict({"data": {"scheme": "ped2099"}})
    with pytest.raises(ValueError, match=r"out_channels=3 a sigmoid head needs 6 \(WT, TC, ET, NET, CC, ED\)"):
        TrainConfig.from_dict(
            {"data": {"scheme": "ped2024"}, "model": {"options": {"head": "sigmoid", "out_channels": 3}}}
        )
    cfg = TrainConfig.from_dict(
        {
            "data": {"scheme": "ped2024"},
            "pipeline": {"region": "CC"},
            "model": {"options": {"head": "sigmoid", "out_channels": 1}},
        }
    )
    assert cfg.head == "region" and cfg.pipeline.region == "cc"


def test_metric_names_and_values_follow_the_scheme() -> None:
    from brainseg_tf import losses, metrics

    names = [m.name for m in metrics.standard_metrics("sigmoid", scheme="ped2024") if m.statistic == "dice"]
    assert names == ["dice_wt", "dice_tc", "dice_et", "dice_net", "dice_cc", "dice_ed", "mean_region_dice"]
    names = [m.name for m in metrics.standard_metrics("softmax", scheme="gli2024") if m.statistic == "dice"]
    assert names == [
        "dice_netc",
        "dice_snfh",
        "dice_et",
        "dice_rc",
        "dice_wt",
        "dice_tc",
        "mean_dice",
        "mean_region_dice",
    ]
    default = [m.name for m in metrics.standard_metrics("sigmoid") if m.statistic == "dice"]
    assert default == ["dice_wt", "dice_tc", "dice_et", "mean_region_dice"]

    labels = np.array([[0, 1, 2, 3, 4, 4]], np.int32)
    regions = losses.labels_to_regions(labels, "ped2024")
    np.testing.assert_array_equal(np.asarray(regions), PED_TABLE[labels])
    # a perfect sigmoid prediction: every region Dice 1; the decoded classes are the labels
    for m in metrics.standard_metrics("sigmoid", scheme="ped2024"):
        m.update_state(labels, np.asarray(regions))
        assert float(m.result()) == pytest.approx(1.0), m.name
    cls = metrics.Dice(ids=(4,), scheme="ped2024", head="sigmoid")
    assert cls.name == "dice_cc"
    wrong = np.asarray(regions).copy()
    wrong[0, 5] = PED_TABLE[1]  # one CC voxel predicted as NET
    cls.update_state(labels, wrong)
    assert float(cls.result()) == pytest.approx(2 / 3)  # 2 * 1 / (2 + 1)
    # masks matching no label's pattern decode to the nearest one, ties to the lower label:
    # (CC, ED) on alone is 2 away from BG and from ED -> BG, so an ED voxel is missed
    tie = metrics.Dice(ids=(2,), scheme="ped2024", head="sigmoid")
    tie.update_state(np.array([[2, 2]]), np.array([[[0, 0, 0, 0, 1, 1], PED_TABLE[2]]], np.float32))
    assert tie.name == "dice_ed" and float(tie.result()) == pytest.approx(2 / 3)
    loss = losses.RegionDiceBCELoss(from_logits=False, scheme="ped2024")
    assert loss.get_config()["scheme"] == "ped2024"
    assert "scheme" not in losses.RegionDiceBCELoss().get_config()  # default configs unchanged
    value = float(np.mean(loss(labels, np.clip(np.asarray(regions), 0.01, 0.99))))
    assert np.isfinite(value) and value < 0.1


# ------------------------------------------------------------------------------ tiny training runs


@pytest.mark.parametrize(
    ("scheme_ids", "head", "channels", "cached"),
    [(PED_ID, "sigmoid", 6, False), (GLI_ID, "sigmoid", 6, True), (PED_ID, "softmax", 5, False)],
    ids=["ped-sigmoid", "gli2024-sigmoid-cache", "ped-softmax"],
)
def test_tiny_training_on_each_scheme(tmp_path: Path, scheme_ids: str, head: str, channels: int, cached: bool) -> None:
    from brainseg_tf.card import ModelCard
    from brainseg_tf.training import train

    root = write_dataset(tmp_path / "data", scheme_ids)
    data = {"cache": str(tmp_path / "c.h5"), "build_cache": True} if cached else {}
    result = train(recipe(root, head, **data), run_dir=tmp_path / "run")
    assert result.model.output_shape[-1] == channels
    assert result.metrics["completed"] and np.isfinite(result.metrics["last_epoch"]["loss"])
    scheme = get_scheme("ped2024" if scheme_ids == PED_ID else "gli2024")
    logged = set(result.history)
    if head == "sigmoid":
        assert {f"val_dice_{r.lower()}" for r in scheme.region_names} <= logged
    else:
        assert {f"val_dice_{c.lower()}" for c in scheme.internal} | {"val_dice_wt", "val_dice_tc"} <= logged
    assert result.metrics["monitor"] == "val_mean_region_dice"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["scheme"] is None  # the recipe as stated; the scheme came from the data
    card = ModelCard.load(tmp_path / "run" / "brainseg_model.json")
    assert card.scheme == scheme.name and card.head == head


def test_ped_run_scores_whole_volumes_in_its_regions(tmp_path: Path) -> None:
    """Volume validation, postprocessing selection and the final evaluation through the predict path."""
    from brainseg_tf.training import train

    root = write_dataset(tmp_path / "data", PED_ID)
    rec = recipe(root, "sigmoid")
    rec["validation"] = {"mode": "volumes", "final_sliding_window": True, "select_postprocessing": True}
    result = train(rec, run_dir=tmp_path / "run")
    regions = get_scheme("ped2024").region_names
    assert result.metrics["monitor"] == "val_volume_mean_dice"
    logged = {k: v[-1] for k, v in result.history.items()}
    assert {f"val_volume_dice_{r.lower()}" for r in regions} <= set(logged)
    means = [logged[f"val_volume_dice_{r.lower()}"] for r in regions]
    assert logged["val_volume_mean_dice"] == pytest.approx(np.mean(means), abs=1e-6)
    final = result.metrics["sliding_window"]["mean"]
    assert {f"dice_{r.lower()}" for r in regions} <= set(final)
    assert all(0.0 <= final[f"dice_{r.lower()}"] <= 1.0 for r in regions)
