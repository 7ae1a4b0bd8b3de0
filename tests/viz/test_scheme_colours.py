"""Labels of schemes beyond the canonical three are drawn and named, never dropped."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from brainseg_tf.viz import colors, slices


def test_default_colours_and_names_are_the_canonical_ones():
    assert colors.scheme_labels() == {k: (colors.LABEL_NAMES[k], colors.LABEL_COLOURS[k]) for k in (1, 2, 3)}
    assert [h.get_label() for h in colors.legend_handles()] == [colors.LABEL_NAMES[k] for k in (1, 2, 3)]


@pytest.mark.parametrize(
    ("scheme", "names"),
    [
        ("ped2024", ["NET", "ED", "ET", "CC"]),
        ("gli2024", ["NETC", "SNFH", "ET", "RC"]),
        ("men_rt", ["GTV"]),
    ],
)
def test_every_internal_label_of_a_scheme_has_a_distinct_colour(scheme, names):
    table = colors.scheme_labels(scheme)
    assert [text.split()[0] for text, _ in table.values()] == names
    rgbs = [rgb for _, rgb in table.values()]
    assert len(set(rgbs)) == len(rgbs)
    rgba = colors.label_rgba(np.arange(len(names) + 1, dtype=np.uint8), alpha=0.5, scheme=scheme)
    assert rgba[0, 3] == 0 and np.all(rgba[1:, 3] == 0.5)  # no label of the scheme is transparent
    np.testing.assert_allclose(rgba[1:, :3], np.array(rgbs, dtype=np.float32))


def test_role_colours_follow_the_role_not_the_value():
    ped = colors.scheme_labels("ped2024")  # internal 3 = ET (source value 1), yellow as in BraTS 2018
    assert ped[3][1] == colors.LABEL_COLOURS[3] and ped[4][1] == colors.EXTRA_COLOURS["CC"]


def test_show_case_draws_a_ped_label_with_its_legend(tmp_path):
    image = np.random.default_rng(0).random((16, 16, 8, 4)).astype(np.float32)
    label = np.zeros((16, 16, 8), np.uint8)
    label[4:8, 4:8, 4] = 4  # CC
    label[8:10, 8:10, 4] = 3  # ET
    fig = slices.show_case(image, label, z=4, scheme="ped2024", crop=False)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [colors.scheme_labels("ped2024")[k][0] for k in (1, 2, 3, 4)]
    text = next(t.get_text() for t in fig.axes[4].texts if t.get_text().startswith("voxels"))
    assert "CC: 16" in text and "ET: 4" in text
    with pytest.raises(ValueError, match=r"canonical labels 0-3, found 4 .*or pass scheme="):
        slices.show_case(image, label, z=4)
    with pytest.raises(ValueError, match=r"'men_rt' scheme's internal labels 0-1, found 4"):
        slices.show_case(image, label, z=4, scheme="men_rt")
