"""The model card, the registry facts, and the source-level rules of the model contract."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from brainseg_tf.card import (
    CardError,
    Inference,
    ModelCard,
    Postprocessing,
    Preprocessing,
    find_card,
    load_card,
    migrate,
)

PACKAGE = Path(__file__).resolve().parents[1] / "brainseg_tf"


def test_card_round_trips_through_json(tmp_path: Path) -> None:
    card = ModelCard(
        modalities=["flair"],
        head="region",
        region="tc",
        logits=True,
        window=[64, 64, 64],
        preprocessing=Preprocessing(reorient=True, spacing=[1.0, 1.0, 2.0], margin=3),
        postprocessing=Postprocessing(et_min_voxels=10),
        label_convention="brats",
    )
    assert card.region == "TC" and card.outputs == ["TC"] and card.num_outputs == 1
    path = card.save(tmp_path)
    assert path.name == "brainseg_model.json"
    again = ModelCard.load(tmp_path)
    assert again == card
    data = json.loads(path.read_text())
    assert data["format_version"] == 4 and data["outputs"] == ["TC"] and data["scheme"] == "brats2021"
    assert again.inference == Inference(window="patch", overlap=0.5)  # the defaults
    # A card written before the inference section loads with the defaults: roi windows at 0.5.
    del data["inference"]
    assert ModelCard.from_dict(data).inference == Inference()
    planned = card.replace(inference=Inference(window="auto", overlap=0.25, max_window_voxels=10**6, divisor=[8, 8, 8]))
    assert ModelCard.from_json(planned.to_json()).inference == planned.inference


def test_format_2_reads_into_4_and_newer_formats_are_refused():
    card = ModelCard(modalities=["flair", "t1"], head="softmax", window=[32, 32, 32])
    v2 = {k: v for k, v in card.to_dict().items() if k not in ("window", "scheme")}
    v2.update(format_version=2, roi=[32, 32, 32])
    for section in ("postprocessing",):  # version 2 had neither the TC/ET sizes nor the evidence
        v2[section] = {
            k: v
            for k, v in v2[section].items()
            if k not in ("min_component_voxels_tc", "min_component_voxels_et", "evidence")
        }
    old = ModelCard.from_dict(v2)
    assert old == card and old.format_version == 4 and old.to_dict()["window"] == [32, 32, 32]
    assert old.scheme == "brats2021"
    with pytest.raises(CardError, match=r"format 5 was written by a newer brainseg_tf.*reads formats 1, 2, 3, 4"):
        ModelCard.from_dict({**card.to_dict(), "format_version": 5})
    with pytest.raises(CardError, match="unknown model card key"):  # 'roi' is only the version-2 name
        ModelCard.from_dict({**card.to_dict(), "roi": [32, 32, 32]})


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"modalities": ["flair", "pd"], "head": "softmax"}, "modalities"),
        ({"modalities": ["flair"], "head": "argmax"}, "head"),
        ({"modalities": ["flair"], "head": "region"}, "region"),
        ({"modalities": ["flair"], "head": "sigmoid", "region": "WT"}, "region"),
        ({"modalities": ["flair"], "head": "softmax", "window": [64, 64]}, "window"),
        ({"modalities": ["flair"], "head": "softmax", "roi": [64, 64]}, "window"),  # roi=: the old name
        (
            {
                "modalities": ["flair"],
                "head": "softmax",
                "spatial_dims": 3,
                "preprocessing": Preprocessing(resize=[128, 128]),
            },
            "resize",
        ),
        (
            {"modalities": ["flair"], "head": "softmax", "preprocessing": Preprocessing(spacing=[float("nan")])},
            "spacing",
        ),
        (
            {"modalities": ["flair"], "head": "sigmoid", "postprocessing": Postprocessing(region_threshold=1.5)},
            "region_threshold",
        ),
        ({"modalities": ["flair"], "head": "sigmoid", "inference": Inference(window="whole")}, "inference.window"),
        (
            {"modalities": ["flair"], "head": "sigmoid", "spatial_dims": 2, "inference": Inference(window="auto")},
            "inference.window=.auto.* only for 3D",
        ),
        ({"modalities": ["flair"], "head": "sigmoid", "inference": Inference(overlap=1.0)}, "inference.overlap"),
        (
            {"modalities": ["flair"], "head": "sigmoid", "inference": Inference(max_window_voxels=0)},
            "inference.max_window_voxels",
        ),
        ({"modalities": ["flair"], "head": "sigmoid", "inference": Inference(divisor=[8, 8])}, "inference.divisor"),
    ],
)
def test_bad_cards_name_the_field(fields: dict, message: str) -> None:
    with pytest.raises(CardError, match=message):
        ModelCard(**fields)


def test_unknown_keys_and_missing_cards_are_errors(tmp_path: Path) -> None:
    card = ModelCard(modalities=["flair", "t1ce"], head="softmax", spatial_dims=2).to_dict()
    (tmp_path / "brainseg_model.json").write_text(json.dumps({**card, "guess": True}))
    with pytest.raises(CardError, match="guess"):
        find_card(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_card(empty) is None
    with pytest.raises(CardError, match="no model card"):
        load_card(empty)


def test_version_1_export_metadata_is_migrated() -> None:
    v1 = {
        "format_version": 1,
        "brainseg_tf_version": "0.1.0",
        "modalities": ["flair", "t1ce"],
        "head": "sigmoid",
        "spatial_dims": 3,
        "roi": [96, 96, 96],
        "preprocessing": {"margin": 2},
        "postprocess": {"et_min_voxels": 5, "min_component_voxels": 0, "region_threshold": 0.4},
    }
    card = ModelCard.from_dict(v1)  # routed through migrate()
    assert card.window == [96, 96, 96]
    assert card.head == "sigmoid" and card.preprocessing.margin == 2 and card.postprocessing.region_threshold == 0.4
    with pytest.raises(CardError, match="modalities"):
        migrate({"format_version": 1, "head": "softmax"})


def test_registry_declares_what_training_and_inference_need() -> None:
    from brainseg_tf import models

    assert models.get_spec("znet").head() == "region" and models.get_spec("znet").logits()
    assert models.get_spec("unet3d").size_divisor() == (8, 8, 8)  # 2**(depth-1)
    assert models.get_spec("unet").size_divisor({"depth": 3, "spatial_dims": 2}) == (8, 8)
    assert models.get_spec("een").required_size() == (None, None, 144)
    assert models.get_spec("een").fit_size((100, 170, 1)) == (128, 192, 144)
    assert models.get_spec("unet2d").default_modalities == ("flair", "t1ce")
    with pytest.raises(ValueError, match="unknown argument"):
        models.get_spec("unet").resolve({"depht": 3})


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_keras_internals_only_in_the_compat_module() -> None:
    private = re.compile(r"keras\.src|\._symbolic_build|\._maybe_symbolic_build|\._get_current_learning_rate")
    offenders = [
        f"{p.relative_to(PACKAGE)}:{i}"
        for p in _sources()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if private.search(line) and p.name != "compat.py"
    ]
    assert offenders == []


def test_no_signature_inspection_or_model_name_branches_outside_models() -> None:
    names = "|".join(("unet", "unet2d", "unet3d", "dresunet", "znet", "een"))
    branch = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']""")
    offenders = []
    for p in _sources():
        if "models" in p.relative_to(PACKAGE).parts:
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if "inspect.signature" in line or branch.search(line):
                offenders.append(f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize(
    "name", ["MODALITIES", "REGIONS", "REGION_LABELS", "CLASS_NAMES", "HEADS", "FOREGROUND_CLASSES"]
)
def test_each_domain_constant_is_defined_once(name: str) -> None:
    definition = re.compile(rf"^{name}\s*(:[^=]+)?=\s*[\(\[\{{\"']")
    where = [
        str(p.relative_to(PACKAGE))
        for p in _sources()
        if any(definition.match(line) for line in p.read_text().splitlines())
    ]
    assert where == ["conventions.py"], where


def test_star_import_and_lazy_package() -> None:
    code = (
        "import sys; from brainseg_tf import *; "
        "assert 'tensorflow' not in sys.modules or True; import brainseg_tf; print(sorted(brainseg_tf.__all__))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "survival" in proc.stdout and "card" in proc.stdout
