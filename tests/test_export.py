"""Export: SavedModel + .keras + metadata; reload in a fresh process gives the same outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from helpers import REPO_ROOT  # noqa: E402

from brainseg_tf import models  # noqa: E402
from brainseg_tf.card import ModelCard, Postprocessing  # noqa: E402
from brainseg_tf.export import export_model  # noqa: E402
from brainseg_tf.inference import load_predictor  # noqa: E402

REPO = REPO_ROOT


def _tiny_unet(head: str = "softmax", in_channels: int = 4):
    model = models.build(
        "unet", spatial_dims=3, in_channels=in_channels, depth=2, base_filters=4, max_filters=8, head=head
    )
    rng = np.random.default_rng(0)  # move the weights away from their initialisation (biases are zero there)
    model.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = root / "run"
    run.mkdir()
    model = _tiny_unet()
    model.save(run / "best.keras")
    ModelCard(
        modalities=["flair", "t1", "t1ce", "t2"],
        head="softmax",
        window=[16, 16, 16],
        model="unet",
        options={"depth": 2, "base_filters": 4, "max_filters": 8},
        postprocessing=Postprocessing(et_min_voxels=12),
    ).save(run)
    paths = export_model(run, root / "exported")
    x = np.random.default_rng(1).normal(size=(2, 16, 24, 8, 4)).astype(np.float32)
    expected = np.asarray(model.predict(x, verbose=0))
    return {"paths": paths, "x": x, "expected": expected, "root": root, "run": run}


def test_export_writes_files_and_metadata(exported):
    paths = exported["paths"]
    assert (paths["saved_model"] / "saved_model.pb").is_file()
    assert paths["keras"].is_file()
    meta = json.loads(paths["metadata"].read_text())
    assert meta["modalities"] == ["flair", "t1", "t1ce", "t2"]
    assert meta["head"] == "softmax" and meta["outputs"] == ["BG", "NCR", "ED", "ET"]
    assert meta["window"] == [16, 16, 16] and meta["postprocessing"]["et_min_voxels"] == 12
    assert meta["logits"] is False and meta["format_version"] == 4
    assert not [p for p in paths["out_dir"].parent.iterdir() if p.name.startswith(".exported.")]  # no temp left


def test_export_refuses_to_overwrite(exported, tmp_path):
    with pytest.raises(FileExistsError, match="overwrite"):
        export_model(exported["run"], exported["paths"]["out_dir"])
    # overwrite replaces only a folder that is itself an export: never the working directory
    precious = tmp_path / "work"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an export"):
        export_model(exported["run"], precious, overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.compat
def test_reload_in_fresh_process_matches_keras(exported):
    root = exported["root"]
    np.save(root / "x.npy", exported["x"])
    script = textwrap.dedent(
        f"""
        import numpy as np, tensorflow as tf
        x = np.load({str(root / "x.npy")!r})
        sm = tf.saved_model.load({str(exported["paths"]["saved_model"])!r})
        out = sm.signatures["serving_default"](image=tf.constant(x))["probabilities"].numpy()
        np.save({str(root / "saved_model_out.npy")!r}, out)
        from brainseg_tf.inference import load_predictor
        p = load_predictor({str(exported["paths"]["out_dir"])!r})  # model.keras, registry imported by the loader
        np.save({str(root / "keras_out.npy")!r}, p(x))
        print(p.modalities, p.head, p.window, p.et_min_voxels)
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "('flair', 't1', 't1ce', 't2') softmax (16, 16, 16) 12" in proc.stdout
    expected = exported["expected"]
    for name in ("saved_model_out.npy", "keras_out.npy"):
        got = np.load(root / name)
        assert got.shape == expected.shape == (2, 16, 24, 8, 4)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_saved_model_predictor_in_process(exported):
    p = load_predictor(exported["paths"]["saved_model"])  # metadata read from the folder above
    assert p.head == "softmax" and p.window == (16, 16, 16)
    np.testing.assert_allclose(p(exported["x"]), exported["expected"], atol=1e-5, rtol=0)


def test_saved_model_cli_lists_signature(exported):
    cli = shutil.which("saved_model_cli") or str(Path(sys.executable).parent / "saved_model_cli")
    if not Path(cli).exists():
        pytest.skip("saved_model_cli is not installed next to this Python")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [cli, "show", "--all", "--dir", str(exported["paths"]["saved_model"])],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert "signature_def['serving_default']" in text
    assert "inputs['image']" in text and "outputs['probabilities']" in text
    assert "shape: (-1, -1, -1, -1, 4)" in text and "DT_FLOAT" in text


def test_export_bare_sigmoid_model_needs_explicit_settings(tmp_path):
    from brainseg_tf.card import CardError

    model = _tiny_unet(head="sigmoid", in_channels=2)
    with pytest.raises(CardError, match="head"):
        export_model(model, tmp_path / "none", metadata={"modalities": ["flair", "t1ce"]})
    paths = export_model(model, tmp_path / "exp", metadata={"modalities": ["flair", "t1ce"], "head": "sigmoid"})
    meta = json.loads(paths["metadata"].read_text())
    assert meta["head"] == "sigmoid" and meta["outputs"] == ["WT", "TC", "ET"]
    assert meta["modalities"] == ["flair", "t1ce"]


def test_verify_export_reports_the_signature_and_catches_a_mismatch(exported, tmp_path):
    import shutil

    from brainseg_tf.export import verify_export

    out_dir = exported["paths"]["out_dir"]
    report = verify_export(out_dir, spatial_shape=(16, 16, 16))
    assert report["max_abs_diff"] <= 1e-5
    assert report["input_shape"][1:4] == [16, 16, 16] and report["output_shape"][-1] in (3, 4)
    assert "image" in report["signature_inputs"] and "probabilities" in report["signature_outputs"]
    # Replace model.keras by a re-initialised twin: the check must fail.
    import keras

    from brainseg_tf.inference import load_keras_model

    copy = tmp_path / "copy"
    shutil.copytree(out_dir, copy)
    model = load_keras_model(copy / "model.keras")
    twin = keras.models.clone_model(model)
    (copy / "model.keras").unlink()
    twin.save(copy / "model.keras")
    with pytest.raises(ValueError, match="differ by"):
        verify_export(copy, spatial_shape=(16, 16, 16))
