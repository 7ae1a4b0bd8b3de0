"""ONNX export (``format="onnx"``) and the ONNX Runtime backend.

Every check compares against an independent reference: the Keras model's own output (or its
logits through a NumPy sigmoid, or a float32 rebuild from the registry), never a stored number.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx", reason="the brainseg_tf[onnx] extra is not installed")
pytest.importorskip("onnxruntime", reason="the brainseg_tf[onnx] extra is not installed")
onnx = pytest.importorskip("onnx", reason="the brainseg_tf[onnx] extra is not installed")

from brainseg_tf import io as bio  # noqa: E402
from brainseg_tf import models  # noqa: E402
from brainseg_tf.card import ModelCard, Postprocessing  # noqa: E402
from brainseg_tf.cli import main  # noqa: E402
from brainseg_tf.export import ONNX_OPSET, export_model, is_export_dir  # noqa: E402
from brainseg_tf.inference import OptionalDependencyError, load_predictor, predict_case  # noqa: E402

ATOL = 1e-4  # the bar: ONNX Runtime probabilities within 1e-4 of Keras


def _jitter(model, seed: int = 0):
    """Move the weights off their initialisation (zero biases, unit norms) so outputs are not ties."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run dir (tiny 3D U-Net, softmax, card) and its ONNX export (``brainseg export --format onnx``)."""
    root = tmp_path_factory.mktemp("onnx")
    run = root / "run"
    run.mkdir()
    model = _jitter(models.build("unet", spatial_dims=3, in_channels=4, depth=2, base_filters=4, max_filters=8))
    model.save(run / "best.keras")
    ModelCard(
        modalities=["flair", "t1", "t1ce", "t2"],
        head="softmax",
        window=[16, 16, 16],
        model="unet",
        options={"spatial_dims": 3, "depth": 2, "base_filters": 4, "max_filters": 8},
        postprocessing=Postprocessing(et_min_voxels=5),
    ).save(run)
    out = root / "onnx"
    assert main(["export", "--model", str(run), "--out", str(out), "--format", "onnx"]) == 0
    paths = {"out_dir": out, "onnx": out / "model.onnx", "metadata": out / "brainseg_model.json"}
    return {"root": root, "run": run, "model": model, "paths": paths}


def test_onnx_export_writes_model_and_card(exported):
    paths = exported["paths"]
    out = paths["out_dir"]
    assert sorted(p.name for p in out.iterdir()) == ["brainseg_model.json", "model.onnx"]
    assert is_export_dir(out)
    card = ModelCard.load(paths["metadata"])
    assert card.logits is False and card.head == "softmax" and card.window == [16, 16, 16]
    assert card.postprocessing.et_min_voxels == 5
    proto = onnx.load(str(paths["onnx"]))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["probabilities"]
    assert _dims(proto.graph.input[0]) == ["batch", "x", "y", "z", 4]
    assert _dims(proto.graph.output[0]) == ["batch", "x", "y", "z", 4]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == ONNX_OPSET
    # instance norm's window means are taken one axis at a time (short float32 sums, see to_onnx)
    means = [n for n in proto.graph.node if n.op_type == "ReduceMean"]
    assert means and all(len(a.ints) == 1 for n in means for a in n.attribute if a.name == "axes")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".onnx.")]  # no temporary left


@pytest.mark.parametrize("shape", [(2, 16, 24, 8), (1, 32, 16, 16)])
def test_onnxruntime_matches_keras_on_dynamic_shapes(exported, shape):
    pred = load_predictor(exported["paths"]["out_dir"], backend="onnxruntime")
    assert type(pred.model).__name__ == "InferenceSession"
    assert pred.head == "softmax" and pred.window == (16, 16, 16) and pred.et_min_voxels == 5
    x = np.random.default_rng(1).normal(size=(*shape, 4)).astype(np.float32)
    expected = np.asarray(exported["model"].predict(x, verbose=0))
    got = pred(x)
    assert got.shape == expected.shape == (*shape, 4)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


def test_backend_choice_and_its_errors(exported):
    out, run = exported["paths"]["out_dir"], exported["run"]
    for path in (out, out / "model.onnx"):  # a folder with only model.onnx, or the file: ONNX Runtime
        assert type(load_predictor(path).model).__name__ == "InferenceSession"
    with pytest.raises(FileNotFoundError, match="brainseg export --format onnx"):
        load_predictor(run, backend="onnxruntime")
    with pytest.raises(ValueError, match="is an ONNX model; run it with backend='onnxruntime'"):
        load_predictor(out / "model.onnx", backend="keras")
    with pytest.raises(ValueError, match="backend='tensorrt' is unknown"):
        load_predictor(out, backend="tensorrt")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_model(run, out, format="onnx")


def _region_znet():
    model = models.build("znet", input_shape=(None, None, None), depth=2, base_filters=4)
    return model, {"modalities": ["flair"], "head": "region", "region": "WT"}


def _unet2d():
    model = models.build("unet", spatial_dims=2, in_channels=2, depth=2, base_filters=4, max_filters=8)
    return model, {"modalities": ["flair", "t1ce"], "head": "softmax"}


def _bf16_unet():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = models.build(
            "unet", spatial_dims=3, depth=2, base_filters=4, max_filters=8, norm="instance", head="sigmoid"
        )
    finally:
        keras.config.set_dtype_policy(previous)
    return model, {"modalities": list(bio.MODALITIES), "head": "sigmoid"}


def _reference(kind: str, model, x: np.ndarray) -> np.ndarray:
    """Probabilities computed without the export code: a NumPy sigmoid on ZNet's logits, a float32
    rebuild from the registry for the bfloat16 model, the model itself otherwise."""
    if kind == "znet_region_logits":
        logits = np.asarray(model(x, training=False), dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-logits))
    if kind == "unet3d_bfloat16":
        twin = models.build(
            "unet", spatial_dims=3, depth=2, base_filters=4, max_filters=8, norm="instance", head="sigmoid"
        )
        twin.set_weights(model.get_weights())
        return np.asarray(twin(x, training=False))
    return np.asarray(model(x, training=False))


@pytest.mark.slow  # one conversion each (a few seconds; ~30 s on a loaded 2-core machine)
@pytest.mark.parametrize(
    "kind, build, shape",
    [
        ("unet2d_softmax", _unet2d, (40, 24)),
        ("znet_region_logits", _region_znet, (16, 24, 16)),
        ("unet3d_bfloat16", _bf16_unet, (16, 16, 24)),
    ],
)
def test_other_heads_and_precisions_export(tmp_path, kind, build, shape):
    model, settings = build()
    _jitter(model)
    paths = export_model(model, tmp_path / kind, metadata=settings, format="onnx")
    card = ModelCard.load(paths["metadata"])
    assert card.logits is False and card.head == settings["head"] and card.spatial_dims == len(shape)
    pred = load_predictor(paths["onnx"])
    x = np.random.default_rng(2).normal(size=(2, *shape, len(settings["modalities"]))).astype(np.float32)
    got = pred(x)
    expected = _reference(kind, model, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    if kind == "unet3d_bfloat16":  # the bfloat16 Keras model is the float32 one up to bfloat16 rounding
        mixed = np.asarray(model(x, training=False), dtype=np.float32)
        assert 1e-4 < np.abs(mixed - got).max() < 0.1


def test_export_check_refuses_a_mismatch(exported, tmp_path, monkeypatch):
    import brainseg_tf.export as export

    monkeypatch.setattr(export, "ONNX_ATOL", -1.0)  # any difference, even 0, now fails the check
    with pytest.raises(ValueError, match="ONNX Runtime and Keras differ by .*nothing written"):
        export_model(exported["run"], tmp_path / "refused", format="onnx")
    assert not (tmp_path / "refused").exists()


def _wrong_rank_conversions(monkeypatch, bad: int) -> list:
    """Make the first ``bad`` tf2onnx conversions return the output with one axis too many, as
    tf2onnx's reshape optimizer sometimes does (the dropped Squeeze); returns the call log."""
    import tf2onnx

    real, calls = tf2onnx.convert.from_function, []

    def convert(*args, **kwargs):
        proto, storage = real(*args, **kwargs)
        calls.append(len(calls) < bad)
        if calls[-1]:
            proto.graph.output[0].type.tensor_type.shape.dim.add().dim_value = 1
        return proto, storage

    monkeypatch.setattr(tf2onnx.convert, "from_function", convert)
    return calls


def test_a_wrong_rank_conversion_is_redone(exported, tmp_path, monkeypatch):
    calls = _wrong_rank_conversions(monkeypatch, bad=2)
    paths = export_model(exported["run"], tmp_path / "redone", format="onnx")
    assert calls == [True, True, False]
    assert len(_dims(onnx.load(paths["onnx"]).graph.output[0])) == 5


def test_a_conversion_wrong_every_time_is_refused(exported, tmp_path, monkeypatch):
    import brainseg_tf.export as export

    calls = _wrong_rank_conversions(monkeypatch, bad=99)
    with pytest.raises(ValueError, match="output has rank 6, not 5, 5 times"):
        export_model(exported["run"], tmp_path / "refused", format="onnx")
    assert len(calls) == export.CONVERSION_TRIES and not (tmp_path / "refused").exists()


def _synthetic_case(root: Path, shape=(34, 30, 22)) -> Path:
    rng = np.random.default_rng(3)
    brain = np.zeros(shape, bool)
    brain[3:31, 3:27, 2:20] = True
    images = {
        m: np.where(brain, rng.normal(size=shape) * 50 + 300 + 100 * i, 0).astype(np.int16)
        for i, m in enumerate(bio.MODALITIES)
    }
    label = np.zeros(shape, np.uint8)
    label[10:20, 10:18, 6:14] = 2
    ref = bio.write_case(root, "brats2021", "BraTS2021_00001", images, label, np.eye(4))
    return Path(ref.images["flair"]).parent


def test_cli_export_onnx_then_predict_matches_keras_backend(exported, tmp_path, capsys):
    case = _synthetic_case(tmp_path / "data")
    exp = exported["paths"]["out_dir"]  # written by `brainseg export --format onnx` in the fixture
    outs = {}
    for backend, model in (("onnxruntime", exp), ("keras", exported["run"])):
        outs[backend] = tmp_path / backend
        argv = [
            "predict",
            "--model",
            str(model),
            "--backend",
            backend,
            "--input",
            str(case),
            "--out",
            str(outs[backend]),
            "--probabilities",
            "--overlap",
            "0.25",
            "-q",
        ]
        assert main(argv) == 0, capsys.readouterr().err
    labels = {b: bio.load_nifti(o / "BraTS2021_00001.nii.gz").data for b, o in outs.items()}
    probs = {b: bio.load_nifti(o / "BraTS2021_00001_prob.nii.gz").data for b, o in outs.items()}
    assert labels["keras"].shape == (34, 30, 22)
    assert np.mean(labels["onnxruntime"] == labels["keras"]) >= 0.9999
    np.testing.assert_allclose(probs["onnxruntime"], probs["keras"], atol=ATOL, rtol=0)


def test_missing_onnxruntime_is_a_one_line_error(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(OptionalDependencyError, match=r"pip install 'brainseg_tf\[onnx\]'"):
        load_predictor(exported["paths"]["out_dir"], backend="onnxruntime")
    case = _synthetic_case(tmp_path / "data")
    argv = [
        "predict",
        "--model",
        str(exported["paths"]["out_dir"]),
        "--input",
        str(case),
        "--out",
        str(tmp_path / "pred"),
        "-q",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "onnxruntime is not installed" in err and "brainseg_tf[onnx]" in err and "Traceback" not in err
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    assert main(["export", "--model", str(exported["run"]), "--out", str(tmp_path / "e"), "--format", "onnx"]) == 2
    assert "tf2onnx is not installed" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_unknown_format_is_refused(exported, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"format='tflite' is unknown; expected one of \('savedmodel', 'onnx'\)"):
        export_model(exported["run"], tmp_path / "x", format="tflite")
    assert main(["export", "--model", str(exported["run"]), "--out", str(tmp_path / "y"), "--format", "bogus"]) == 2
    assert "format='bogus' is unknown" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
@pytest.mark.real_data
def test_real_case_onnxruntime_matches_keras(tmp_path, real_brats2018):
    """A batch-norm U-Net (no window-wide reduction at inference): the whole real case agrees."""
    run = tmp_path / "run"
    run.mkdir()
    _jitter(models.build("unet", spatial_dims=3, depth=2, base_filters=4, max_filters=8, norm="batch")).save(
        run / "best.keras"
    )
    ModelCard(modalities=list(bio.MODALITIES), head="softmax", window=[48, 48, 48]).save(run)
    export = export_model(run, tmp_path / "onnx", format="onnx")
    case = bio.read_case(real_brats2018 / "Brats18_2013_23_1")
    window = {"overlap": 0.25, "return_probabilities": True}
    keras_pred = predict_case(load_predictor(run), case, **window)
    onnx_pred = predict_case(load_predictor(export["out_dir"]), case, **window)
    assert onnx_pred.labels.shape == case.image.shape[:3]
    assert np.abs(onnx_pred.probabilities - keras_pred.probabilities).max() <= ATOL
    assert np.mean(onnx_pred.labels == keras_pred.labels) >= 0.9999


@pytest.mark.slow
@pytest.mark.real_data
def test_instance_norm_onnx_is_within_float32_of_the_float64_model(exported, real_brats2018):
    """With instance norm over a real window both the ONNX graph and Keras stay within float32
    rounding of the float64 model (one float32 reduction over the window drifted ~1e-3)."""
    from brainseg_tf.data.preprocess import preprocess_case

    image = preprocess_case(bio.read_case(real_brats2018 / "Brats18_2013_23_1")).image
    x = np.ascontiguousarray(image[None, 40:88, 0:48, 0:48]).astype(np.float32)  # a background-heavy edge window
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        exact_model = models.build("unet", spatial_dims=3, in_channels=4, depth=2, base_filters=4, max_filters=8)
    finally:
        keras.config.set_dtype_policy(previous)
    exact_model.set_weights([w.astype(np.float64) for w in exported["model"].get_weights()])
    exact = np.asarray(exact_model(x.astype(np.float64), training=False))
    got = load_predictor(exported["paths"]["out_dir"])(x)
    keras_error = np.abs(np.asarray(exported["model"](x, training=False)) - exact).max()
    # Both backends at float32 rounding of the exact model (GroupNorm reduces one axis at a time).
    assert np.abs(got - exact).max() <= 2e-5
    assert keras_error <= 2e-5


def test_split_reductions_keeps_window_means_exact():
    from onnx import TensorProto, helper

    from brainseg_tf.export import split_reductions
    from brainseg_tf.inference import onnx_session

    x = (np.random.default_rng(4).normal(size=(1, 64, 64, 64, 2)) + 100.0).astype(np.float32)
    node = helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=1)
    graph = helper.make_graph(
        [node],
        "mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 1, 1, 1, 2])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], ir_version=8)
    exact = x.astype(np.float64).mean(axis=(1, 2, 3), keepdims=True)
    single = onnx_session(proto.SerializeToString()).run(None, {"x": x})[0]
    split_reductions(proto)
    assert [n.op_type for n in proto.graph.node] == ["ReduceMean"] * 3
    split = onnx_session(proto.SerializeToString()).run(None, {"x": x})[0]
    assert split.shape == exact.shape
    assert np.abs(split - exact).max() <= 1e-5 * 100  # float32 rounding of the mean itself, not of a 262144-term sum
    assert np.abs(split - exact).max() <= np.abs(single - exact).max()
