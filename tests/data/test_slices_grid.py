"""The 2D pipeline's slice range on any grid: 240x240x155 (BraTS, SRI24) and 182-deep (MNI152, 2025)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainseg_tf import io
from brainseg_tf.data.pipeline import slice_dataset, slice_indices

REPO = Path(__file__).resolve().parents[2]
SEED_SLICES = json.loads((REPO / "configs" / "unet2d_seed.json").read_text())["pipeline"]["options"]["slices"]


def test_the_seed_recipe_keeps_slices_22_to_121_on_a_155_deep_grid_and_scales_to_182():
    assert SEED_SLICES == {"range": [22, 122], "of": 155}
    np.testing.assert_array_equal(slice_indices(SEED_SLICES, 155), np.arange(22, 122))
    np.testing.assert_array_equal(slice_indices([22, 122], 155), np.arange(22, 122))  # old recipes: unchanged
    # 22 * 182 / 155 = 25.83 -> 26; 122 * 182 / 155 = 143.25 -> 143 (stop, exclusive)
    np.testing.assert_array_equal(slice_indices(SEED_SLICES, 182), np.arange(26, 143))
    assert len(slice_indices([22, 122], 182)) == 100  # plain indices stay indices on any grid


@pytest.mark.parametrize(
    ("slices", "n", "start", "stop"),
    [
        ((0.5, 1.0), 155, 78, 155),  # 77.5 rounds half up
        ((0.5, 1.0), 182, 91, 182),
        ([0, 0.25], 182, 0, 46),  # 45.5 -> 46; an int beside a float is a fraction too
        ((0.0, 0.001), 155, 0, 1),  # at least one slice
        ({"range": [0, 155], "of": 155}, 182, 0, 182),
        ({"range": [77, 78], "of": 155}, 182, 90, 92),  # 90.4 -> 90, 91.6 -> 92
        ((150, 400), 155, 150, 155),  # an index range is clipped to the grid
    ],
)
def test_fractions_and_scaled_ranges_by_hand(slices, n, start, stop):
    np.testing.assert_array_equal(slice_indices(slices, n), np.arange(start, stop))


@pytest.mark.parametrize("n", [155, 182])
def test_brain_mode_takes_the_slices_holding_brain(n):
    image = np.zeros((6, 5, n, 2), np.float32)
    image[2:4, 1:3, 9 : n - 20, 0] = 1.0  # brain in channel 0 only, slices 9 .. n-21
    image[3, 2, 40, :] = 0.0  # one zero voxel inside does not drop its slice
    np.testing.assert_array_equal(slice_indices("brain", n, image=image), np.arange(9, n - 20))
    np.testing.assert_array_equal(slice_indices("brain", 6, image=image, axis=0), [2, 3])
    assert slice_indices("brain", n, image=np.zeros((6, 5, n))).size == 0
    assert slice_indices("brain", n).size == 0  # no image, no slices
    label = np.zeros((6, 5, n), np.uint8)
    label[2, 2, [11, 30]] = 3
    np.testing.assert_array_equal(slice_indices("tumor", n, label=label), [11, 30])


@pytest.mark.parametrize(
    "slices",
    [
        (30, 10),
        (0.6, 0.2),
        (0.5, 1.5),
        (22.0, 122.0),
        "auto",
        {"range": [22, 122]},
        {"range": [22, 160], "of": 155},
        {"range": [22, 122], "of": 155, "extra": 1},
        (True, 5),
        [1, 2, 3],
    ],
)
def test_bad_slices_name_the_argument_and_the_forms(slices):
    with pytest.raises(ValueError, match=r"slices=.*(must be 'all', 'tumour', 'brain'|a scaled range is)"):
        slice_indices(slices, 155)


def _write_grid_case(root: Path, depth: int) -> np.ndarray:
    """A 16x16xdepth case (BraTS 2021 naming): brain in slices 5 .. depth-11, a tumour inside."""
    shape = (16, 16, depth)
    brain = np.zeros(shape, bool)
    brain[3:13, 3:13, 5 : depth - 10] = True
    rng = np.random.default_rng(depth)
    images = {m: np.where(brain, rng.integers(100, 900, shape), 0).astype(np.int16) for m in io.MODALITIES}
    label = np.zeros(shape, np.uint8)
    label[6:9, 6:9, depth // 2 : depth // 2 + 4] = 2
    io.write_case(root, "brats2021", f"BraTS2021_{depth:05d}", images, label, np.diag([-1.0, -1.0, 1.0, 1.0]))
    return brain


@pytest.mark.parametrize(("depth", "start", "stop"), [(155, 22, 122), (182, 26, 143)])
def test_the_seed_slices_through_the_pipeline_on_each_grid(tmp_path, depth, start, stop):
    _write_grid_case(tmp_path, depth)

    def stream(slices):
        ds = slice_dataset(
            tmp_path,
            crop=False,
            slices=slices,
            size=None,
            global_batch_size=1,
            modalities=("flair", "t1ce"),
            target="labels",
            shuffle=False,
            repeat=False,
        )
        return [(x.numpy()[0], y.numpy()[0]) for x, y in ds]

    got = stream(SEED_SLICES)
    assert len(got) == stop - start
    assert got[0][0].shape == (16, 16, 2)
    tumour = [k for k, (_, lab) in enumerate(got) if lab.any()]
    assert [start + k for k in tumour] == list(range(depth // 2, depth // 2 + 4))  # slices in grid order
    brain = stream("brain")
    assert len(brain) == depth - 15  # slices 5 .. depth-11
    assert all(x.any() for x, _ in brain)
