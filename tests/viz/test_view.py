"""The HTML viewer: the data it carries, that it is self-contained, and that a browser draws it."""

from __future__ import annotations

import base64
import json
import re
import zlib

import nibabel as nib
import numpy as np
import pytest

from brainseg_tf import io, viz
from brainseg_tf.synthetic import synthesize_case


def _data(page: str) -> dict:
    found = re.search(r"const D = (\{.*?\});\n", page, re.S)
    assert found, "no data block in the page"
    return json.loads(found.group(1).replace("<\\/", "</"))


def _unpack(b64: str, shape) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(b64)), dtype=np.uint8).reshape(shape)


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    syn = synthesize_case(3, (64, 56, 40))
    return io.write_case(root, "brats2021", "BraTS2021_00003", syn.images, syn.label, syn.affine)


def test_labels_travel_exactly_in_ras_order(case_dir):
    case = io.read_case(case_dir)
    pred = case.label.copy()
    pred[pred == 3] = 1  # a prediction that misses the enhancing tumour
    page = viz.view_html(case.image, case.affine, reference=case.label, prediction=pred).html
    data = _data(page)
    ornt = nib.orientations.io_orientation(case.affine)
    ras_ref = nib.orientations.apply_orientation(case.label, ornt)
    brain = nib.orientations.apply_orientation(np.any(case.image != 0, axis=-1), ornt)
    box = tuple(slice(max(int(i.min()) - 4, 0), int(i.max()) + 5) for i in np.nonzero(brain))
    assert data["shape"] == [s.stop - s.start for s in np.index_exp[box]]
    np.testing.assert_array_equal(_unpack(data["labels"]["reference"], data["shape"]), ras_ref[box])
    assert not (_unpack(data["labels"]["prediction"], data["shape"]) == 3).any()
    assert set(data["volumes"]) == set(io.MODALITIES)
    names = [t["name"] for t in data["traces"]]
    assert "brain" in names and "ET (reference)" in names and "ET (prediction)" not in names
    assert "WT (prediction)" in names and "TC (prediction)" in names
    # surfaces in world mm: every vertex lies inside the image's world bounding box
    corners = np.array(
        [[i, j, k, 1] for i in (0, case.shape[0]) for j in (0, case.shape[1]) for k in (0, case.shape[2])]
    )
    world = corners @ case.affine.T
    for t in data["traces"]:
        for axis, key in enumerate("xyz"):
            assert world[:, axis].min() - 1 <= min(t[key]) and max(t[key]) <= world[:, axis].max() + 1, (t["name"], key)


def test_page_is_self_contained(case_dir):
    page = viz.view(case_dir).html
    assert not re.search(r"<script[^>]+src=", page), "a script is loaded from outside the page"
    assert not re.search(r"<link[^>]+href=\s*[\"']https?:", page)
    assert "Plotly" in page and "DecompressionStream" in page


def test_view_writes_files_and_checks_inputs(case_dir, tmp_path):
    case = io.read_case(case_dir)
    pred_path = io.write_label(case.label, case, tmp_path / "pred.nii.gz")
    unc = np.where(case.label > 0, np.float32(0.7), np.float32(0.1))
    unc_path = tmp_path / "unc.nii.gz"
    nib.save(nib.Nifti1Image(unc, case.affine), unc_path)
    out = tmp_path / "v" / "case.html"
    viewer = viz.view(case_dir, pred=pred_path, uncertainty=unc_path, out=out)
    assert out.read_text(encoding="utf-8") == viewer.html
    data = _data(viewer.html)
    np.testing.assert_array_equal(
        _unpack(data["labels"]["prediction"], data["shape"]), _unpack(data["labels"]["reference"], data["shape"])
    )
    assert data["uncertainty"] and data["uncertaintyMax"] == pytest.approx(0.7)
    unc8 = _unpack(data["uncertainty"], data["shape"])
    assert set(np.unique(unc8).tolist()) == {36, 255}  # 0.1 / 0.7 of 255, rounded
    assert "srcdoc=" in viewer._repr_html_()
    with pytest.raises(ValueError, match="prediction has shape"):
        viz.view_html(case.image, case.affine, prediction=case.label[:-1])
    with pytest.raises(ValueError, match="canonical labels"):
        viz.view_html(case.image, case.affine, reference=case.label * 2)
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(case.label[:-2], case.affine), bad)
    with pytest.raises(io.DataError, match="bad.nii.gz"):
        viz.view(case_dir, pred=bad)


@pytest.mark.slow
def test_a_browser_draws_the_planes_and_the_3d_view(case_dir, tmp_path, browser):
    case = io.read_case(case_dir)
    page = viz.view(case_dir, pred=case.label, out=tmp_path / "view.html")
    assert page
    dom = browser.dom(tmp_path / "view.html")
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-ready="1"' in body, body
    for plane in ("axial", "coronal", "sagittal"):
        assert f'data-drawn_{plane}="1"' in body
    assert 'data-webgl="1"' in body and "<canvas" in dom
    shot = browser.screenshot(tmp_path / "view.html", tmp_path / "view.png")
    planes = shot[60:420, :900, :3]
    assert planes.std() > 0.05, "the slice panels look blank"
    view3d = shot[440:850, 200:700, :3]
    assert view3d.std() > 0.01, "the 3D view looks blank"


@pytest.mark.real_data
def test_cli_view_of_a_real_case_is_offline_and_small(real_brats2018, tmp_path, capsys):
    from brainseg_tf import cli

    case_dir = real_brats2018 / "Brats18_CBICA_AQN_1"
    case = io.read_case(case_dir)
    pred = case.label.copy()
    pred[pred == 1] = 3  # a prediction that calls the necrosis enhancing
    pred_path = io.write_label(pred, case, tmp_path / "Brats18_CBICA_AQN_1.nii.gz")
    out = tmp_path / "view.html"
    assert cli.main(["view", "--case", str(case_dir), "--pred", str(pred_path), "--out", str(out)]) == 0
    assert "viewer:" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert case.shape == (240, 240, 155) and out.stat().st_size < 15 * 2**20
    assert not re.search(r"<script[^>]+src=", page)
    data = _data(page)
    got = _unpack(data["labels"]["prediction"], data["shape"])
    assert int((got == 3).sum()) == int(((case.label == 1) | (case.label == 3)).sum())
    assert cli.main(["view", "--case", str(case_dir), "--out", str(tmp_path / "view.png")]) == 2


def test_a_title_is_text_whatever_it_holds(case_dir):
    case = io.read_case(case_dir)
    page = viz.view_html(case.image, case.affine, title="__DATA__ </script><b>x").html
    assert page.count("const D = {") == 1 and "<title>__DATA__ &lt;/script&gt;&lt;b&gt;x</title>" in page
    assert _data(page)["shape"]


def test_an_unstamped_prediction_is_read_in_the_cases_convention(case_dir, tmp_path):
    from brainseg_tf.io.labels import from_canonical, load_labels

    case = io.read_case(case_dir)
    raw = tmp_path / "other_tool.nii.gz"  # another tool's output: BraTS values 1/2/4, no stamp
    nib.save(nib.Nifti1Image(from_canonical(case.label, "brats").astype(np.uint8), case.affine), raw)
    assert set(np.unique(nib.load(raw).get_fdata()).astype(int)) == {0, 1, 2, 4}
    data = _data(viz.view(case_dir, pred=raw).html)
    np.testing.assert_array_equal(
        _unpack(data["labels"]["prediction"], data["shape"]), _unpack(data["labels"]["reference"], data["shape"])
    )
    np.testing.assert_array_equal(load_labels(raw, None, fallback="brats")[0], case.label)
    np.testing.assert_array_equal(load_labels(raw, "brats", fallback="msd")[0], case.label)  # recorded first
