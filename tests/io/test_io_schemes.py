"""The io consumers of label schemes: dataset_summary / format_summary (brainseg info) and
validate_dataset per scheme, with hand-computed volumes; the default scheme's output unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import make_case

from brainseg_tf import io

AFFINE = np.diag([-2.0, -2.0, 2.5, 1.0])  # 10 mm^3 = 0.01 ml per voxel


def _label(blocks: dict[int, int]) -> np.ndarray:
    """A (12, 10, 8) mask holding ``value`` in ``n`` voxels (whole rows of 8) for each item."""
    label = np.zeros((12, 10, 8), np.uint8)
    flat = label.reshape(-1, 8)
    row = 0
    for value, n in blocks.items():
        assert n % 8 == 0
        flat[row : row + n // 8] = value
        row += n // 8
    return label


def _write(root: Path, case_id: str, file_values: dict[int, int], layout: str = "brats2023") -> None:
    """One case whose mask holds ``file_values`` (source value -> voxels) exactly as given; its own images."""
    images, _ = make_case(sum(map(ord, case_id)))
    sep = "-" if layout == "brats2023" else "_"
    tokens = ("t2f", "t1n", "t1c", "t2w") if layout == "brats2023" else ("flair", "t1", "t1ce", "t2")
    for modality, token in zip(io.MODALITIES, tokens):
        io.save_nifti(images[modality], root / case_id / f"{case_id}{sep}{token}.nii.gz", affine=AFFINE)
    io.save_nifti(_label(file_values), root / case_id / f"{case_id}{sep}seg.nii.gz", affine=AFFINE)


def test_default_scheme_summary_text_is_unchanged(tmp_path):
    # brats2021 files: 1 NCR, 2 ED, 4 ET
    _write(tmp_path, "BraTS2021_00000", {1: 8, 2: 32, 4: 16}, layout="brats2021")
    _write(tmp_path, "BraTS2021_00001", {2: 48, 4: 40}, layout="brats2021")
    summary = io.dataset_summary(tmp_path)
    assert summary["scheme"] == "brats2021" and summary["schemes"] == {"brats2021": 2}
    assert list(summary["volumes_ml"]) == ["NCR", "ED", "ET"]
    assert io.format_summary(summary) == "\n".join(
        [
            f"dataset    {tmp_path}",
            "layout     brats2021 (labels: brats)",
            "cases      2 (2 with masks)",
            "shapes     12x10x8 (2)",
            "spacing    2.0x2.0x2.5 mm (2)",
            "volumes ml  mean     median   min      max      cases-present",
            "  NCR          0.04     0.04     0.00     0.08 1/2",
            "  ED           0.40     0.40     0.32     0.48 2/2",
            "  ET           0.28     0.28     0.16     0.40 2/2",
        ]
    )


def test_ped2024_summary_uses_its_class_names(tmp_path):
    # file values 1 ET, 2 NET, 3 CC, 4 ED -> internal 1 NET, 2 ED, 3 ET, 4 CC
    _write(tmp_path, "BraTS-PED-00001-000", {1: 8, 2: 16, 3: 24, 4: 40})
    summary = io.dataset_summary(tmp_path)
    assert summary["scheme"] == "ped2024"
    volumes = {k: [round(v, 6) for v in vals] for k, vals in summary["volumes_ml"].items()}
    assert volumes == {"NET": [0.16], "ED": [0.4], "ET": [0.08], "CC": [0.24]}
    text = io.format_summary(summary)
    assert "layout     brats2023 (labels: scheme ped2024: 1 ET, 2 NET, 3 CC, 4 ED)" in text
    assert "  NET          0.16     0.16     0.16     0.16 1/1" in text
    assert "  CC           0.24     0.24     0.24     0.24 1/1" in text


def test_gli2024_summary_lists_the_resection_cavity(tmp_path):
    _write(tmp_path, "BraTS-GLI-00001-100", {1: 8, 2: 16, 3: 24, 4: 32})
    _write(tmp_path, "BraTS-GLI-00002-100", {2: 8})
    summary = io.dataset_summary(tmp_path)
    assert summary["scheme"] == "gli2024"
    volumes = {k: [round(v, 6) for v in vals] for k, vals in summary["volumes_ml"].items()}
    assert volumes == {"NETC": [0.08, 0.0], "SNFH": [0.16, 0.08], "ET": [0.24, 0.0], "RC": [0.32, 0.0]}
    assert "  RC           0.16     0.16     0.00     0.32 1/2" in io.format_summary(summary)


def test_a_dataset_mixing_schemes_is_reported_per_scheme(tmp_path):
    _write(tmp_path, "BraTS-GLI-00001-100", {1: 8, 4: 16})
    _write(tmp_path, "BraTS-PED-00001-000", {1: 8, 4: 16})  # the same values mean ET and ED here
    _write(tmp_path, "BraTS-PED-00002-000", {3: 24})
    summary = io.dataset_summary(tmp_path)
    assert summary["scheme"] is None and summary["volumes_ml"] is None
    assert summary["schemes"] == {"gli2024": 1, "ped2024": 2}
    by = {
        s: {k: [round(v, 6) for v in vals] for k, vals in t.items()} for s, t in summary["volumes_ml_by_scheme"].items()
    }
    assert by == {
        "gli2024": {"NETC": [0.08], "SNFH": [0.0], "ET": [0.0], "RC": [0.16]},
        "ped2024": {"NET": [0.0, 0.0], "ED": [0.16, 0.0], "ET": [0.08, 0.0], "CC": [0.0, 0.24]},
    }
    text = io.format_summary(summary)
    assert "layout     brats2023 (labels: several schemes, see below)" in text
    assert "schemes    gli2024 (1), ped2024 (2): label classes differ, volumes per scheme" in text
    assert "[gli2024: 1 NETC, 2 SNFH, 3 ET, 4 RC]" in text and "[ped2024: 1 ET, 2 NET, 3 CC, 4 ED]" in text
    lines = text.splitlines()
    assert lines.index("[ped2024: 1 ET, 2 NET, 3 CC, 4 ED]") > lines.index(
        "  RC           0.16     0.16     0.16     0.16 1/1"
    )
    # validate: the cases read, and the mix is a warning naming both schemes and their ids
    problems = io.validate_dataset(tmp_path)
    (mixed,) = [p for p in problems if "several label schemes" in p]
    assert mixed.startswith(f"warning: {tmp_path}: cases of several label schemes whose labels differ")
    assert (
        "gli2024 (1: BraTS-GLI-00001-100" in mixed and "ped2024 (2: BraTS-PED-00001-000, BraTS-PED-00002-000" in mixed
    )
    assert not [p for p in problems if not p.startswith("warning:")]


def test_canonical_schemes_side_by_side_are_not_a_mix_warning(tmp_path):
    _write(tmp_path, "BraTS-MEN-00001-000", {1: 8, 2: 8, 3: 8})
    _write(tmp_path, "BraTS-SSA-00001-000", {1: 8, 2: 8, 3: 8})
    assert io.validate_dataset(tmp_path) == []
    summary = io.dataset_summary(tmp_path)
    assert summary["schemes"] == {"men": 1, "ssa": 1}  # still one table per scheme
    assert set(summary["volumes_ml_by_scheme"]) == {"men", "ssa"}


def test_validate_notes_a_mask_holding_only_a_cavity(tmp_path):
    _write(tmp_path, "BraTS-GLI-00001-100", {4: 16})
    seg = tmp_path / "BraTS-GLI-00001-100" / "BraTS-GLI-00001-100-seg.nii.gz"
    assert io.validate_dataset(tmp_path) == [f"warning: {seg}: mask holds no tumour voxels (WT empty), only 4 RC"]
    _write(tmp_path / "b", "BraTS-GLI-00001-100", {})
    seg = tmp_path / "b" / "BraTS-GLI-00001-100" / "BraTS-GLI-00001-100-seg.nii.gz"
    assert io.validate_dataset(tmp_path / "b") == [f"warning: {seg}: mask is empty (no tumour voxels)"]


def test_write_case_with_a_scheme_writes_its_source_values(tmp_path):
    images, _ = make_case(0)
    internal = _label({1: 8, 2: 16, 3: 24, 4: 32})  # PED internal: 1 NET, 2 ED, 3 ET, 4 CC
    ref = io.write_case(tmp_path, "brats2023", "BraTS-PED-00001-000", images, internal, AFFINE, scheme="ped2024")
    assert ref.scheme == "ped2024" and ref.convention == "brats2023"
    raw = np.asarray(io.load_nifti(ref.label).data)
    np.testing.assert_array_equal(raw, _label({2: 8, 4: 16, 1: 24, 3: 32}))  # NET 2, ED 4, ET 1, CC 3
    assert io.stamped_convention(io.load_nifti(ref.label).header) == "ped2024"
    np.testing.assert_array_equal(io.read_case(tmp_path / "BraTS-PED-00001-000").label, internal)
