"""The internal labels of a scheme: conversions, region tables and decoding, against hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from brainseg_tf.io.labels import regions_to_labels
from brainseg_tf.schemes import SCHEMES, get_scheme


@pytest.mark.parametrize("name", ["brats2021", "gli2023", "ped2023", "men", "ssa", "goat", "msd"])
def test_glioma_schemes_have_the_canonical_internal_labels(name):
    scheme = get_scheme(name)
    assert scheme.is_canonical and scheme.nested() and scheme.n_classes == 4
    assert scheme.internal_regions() == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


def test_internal_orders_by_role_then_file_order():
    assert get_scheme("ped2024").internal == ("NET", "ED", "ET", "CC")
    assert get_scheme("gli2024").internal == ("NETC", "SNFH", "ET", "RC")
    assert get_scheme("msd").internal == ("NET", "ED", "ET")
    assert get_scheme("men_rt").internal == ("GTV",)
    assert not any(get_scheme(n).is_canonical for n in ("ped2024", "gli2024", "met2024", "men_rt"))


def test_ped_source_values_round_trip_through_internal_labels():
    ped = get_scheme("ped2024")
    source = np.array([[0, 1, 2], [3, 4, 0]])  # 1 ET, 2 NET, 3 CC, 4 ED
    internal = ped.to_internal(source)
    assert internal.dtype == np.uint8 and internal.tolist() == [[0, 3, 1], [4, 2, 0]]
    np.testing.assert_array_equal(ped.from_internal(internal), source)
    with pytest.raises(ValueError, match=r"label values \[5\] are not in the 'ped2024' scheme"):
        ped.to_internal(np.array([0, 5]))
    with pytest.raises(ValueError, match=r"internal label map holds \[5\]; the 'ped2024' scheme has 0 BG, 1 NET"):
        ped.from_internal(np.array([0, 5]))


def test_region_table_rows_are_the_regions_of_each_label():
    ped = get_scheme("ped2024")  # regions WT, TC, ET, NET, CC, ED
    table = ped.region_table()
    assert table.shape == (5, 6) and table.dtype == np.float32
    assert table[4].tolist() == [1, 1, 0, 0, 1, 0]  # CC: in WT and TC, its own region
    assert table[2].tolist() == [1, 0, 0, 0, 0, 1]  # ED: WT only, and ED
    assert table[0].tolist() == [0] * 6
    gli = get_scheme("gli2024")  # WT, TC, ET, NETC, SNFH, RC: the cavity is in no tumour region
    assert gli.region_table()[4].tolist() == [0, 0, 0, 0, 0, 1]


def test_nested_decode_is_the_canonical_rule():
    masks = np.random.default_rng(0).random((6, 7, 5, 3)) > 0.5
    np.testing.assert_array_equal(get_scheme("brats2021").decode_regions(masks), regions_to_labels(masks))
    probs = np.random.default_rng(1).random((4, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(get_scheme("gli2023").decode_regions(probs, 0.5), regions_to_labels(probs > 0.5))


@pytest.mark.parametrize("name", ["ped2024", "gli2024", "met2024"])
def test_every_label_decodes_from_its_own_region_pattern(name):
    scheme = get_scheme(name)
    labels = np.arange(scheme.n_classes, dtype=np.uint8)
    patterns = scheme.region_table()[labels]
    np.testing.assert_array_equal(scheme.decode_regions(patterns > 0.5), labels)
    np.testing.assert_array_equal(scheme.decode_regions(0.1 + 0.8 * patterns), labels)


def test_pattern_decode_weighs_probabilities():
    ped = get_scheme("ped2024")  # WT, TC, ET, NET, CC, ED
    # confident WT and TC, unsure between NET (0.45) and CC (0.4): NET wins although no leaf passes 0.5
    p = np.array([[0.95, 0.9, 0.05, 0.45, 0.4, 0.05]], np.float32)
    assert ped.decode_regions(p).tolist() == [1]
    with pytest.raises(ValueError, match=r"regions have 3 channels; the 'ped2024' scheme has 6"):
        ped.decode_regions(np.zeros((2, 3)))


def test_every_scheme_is_consistent():
    for scheme in SCHEMES.values():
        table = scheme.region_table()
        assert table.shape == (scheme.n_classes, len(scheme.regions))
        values = np.array(scheme.values)
        np.testing.assert_array_equal(scheme.from_internal(scheme.to_internal(values)), values)


def test_boolean_pattern_ties_go_to_the_lower_label():
    ped = get_scheme("ped2024")  # WT, TC, ET, NET, CC, ED
    # CC and ED on alone: BG (2 mismatches) and ED (2: WT off, CC on) tie -> BG, the lower label
    assert ped.decode_regions(np.array([[0, 0, 0, 0, 1, 1]], bool)).tolist() == [0]
    # WT and ED on: exactly ED's pattern
    assert ped.decode_regions(np.array([[1, 0, 0, 0, 0, 1]], bool)).tolist() == [2]
