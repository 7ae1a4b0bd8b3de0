"""An interactive case viewer in one self-contained HTML file: three planes and a 3D tumour view.

:func:`view` builds it from a case folder (or a :class:`brainseg_tf.io.Case`), an optional
prediction and an optional uncertainty map. The page holds three synchronised planes (axial,
coronal, sagittal) drawn on canvases, each with a slice slider, a modality menu and toggles for
every label overlay, plus a rotatable plotly 3D view of the tumour regions as surfaces in world
millimetres. Every script is inlined (plotly.js included) and the volumes travel zlib-compressed
in the page, so the file opens with no server and no network, and renders inline in Jupyter,
Colab and Kaggle (an ``iframe``, no widget extension needed).

Why plotly: it is pip-installable with its JavaScript bundled (nothing fetched at run time), its
``Mesh3d`` draws lit, rotatable surfaces with legend toggles in any WebGL browser, and one inline
bundle serves every view. nilearn's ``view_img`` and ipyniivue were compared in
docs/visualization.md.

Labels are canonical (0 BG, 1 NCR, 2 ED, 3 ET); arrays are shown RAS-reoriented from the affine,
radiological by default (the patient's right on the screen's left), as the static figures are.
"""

from __future__ import annotations

import base64
import html
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brainseg_tf.arrays import bbox
from brainseg_tf.checks import check_int
from brainseg_tf.conventions import CLASS_NAMES, FOREGROUND_CLASSES, MODALITIES
from brainseg_tf.viz.colors import LABEL_COLOURS, REGION_COLOURS, REGION_OPACITY
from brainseg_tf.viz.geometry import DisplayGeometry
from brainseg_tf.viz.surfaces import region_meshes

__all__ = ["Viewer", "view", "view_html"]


@dataclass(frozen=True)
class Viewer:
    """A built viewer page: ``html`` is the whole self-contained document."""

    html: str
    title: str = ""

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` (atomically: a killed write leaves no half file)."""
        from brainseg_tf.atomic import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        # An iframe keeps the page's scripts and styles apart from the notebook's, and runs
        # where widget extensions do not (Colab, Kaggle, exported HTML).
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
            'style="width:100%;height:760px;border:1px solid #ccc" title="brainseg_tf viewer"></iframe>'
        )


def _to_ras(arr: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``arr`` (spatial axes first) reordered and flipped to RAS, with the matching affine."""
    geom = DisplayGeometry.make(arr.shape[:3], affine, None)
    aff = affine @ nib.orientations.inv_ornt_aff(geom.ornt, arr.shape[:3])
    return np.ascontiguousarray(geom.to_ras(arr)), aff


def _to_uint8(vol: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Intensities scaled to 0-255 between the 0.5th and 99.5th percentile inside ``mask``."""
    vals = vol[mask] if mask.any() else vol.ravel()
    lo, hi = np.percentile(vals, (0.5, 99.5)) if vals.size else (0.0, 1.0)
    scaled = (vol.astype(np.float32) - lo) / max(float(hi - lo), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def _pack(arr: np.ndarray) -> str:
    """C-order bytes, zlib-compressed, base64: the page inflates them with DecompressionStream."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(arr).tobytes(), 6)).decode("ascii")


def _rgb(colour: Sequence[float]) -> str:
    return "rgb({},{},{})".format(*(round(255 * c) for c in colour))


def _mesh_trace(
    verts: np.ndarray,
    faces: np.ndarray,
    ras_affine: np.ndarray,
    spacing: np.ndarray,
    name: str,
    colour: str,
    opacity: float,
    group: str,
) -> dict[str, Any]:
    """A plotly Mesh3d trace; ``verts`` in mm from the RAS grid's corner voxel, drawn in world mm."""
    world = (np.c_[verts / spacing, np.ones(len(verts))] @ ras_affine.T)[:, :3]
    return {
        "type": "mesh3d",
        "name": name,
        "legendgroup": group,
        "showlegend": True,
        "opacity": opacity,
        "color": colour,
        "flatshading": False,
        "hoverinfo": "name",
        "x": np.round(world[:, 0], 1).tolist(),
        "y": np.round(world[:, 1], 1).tolist(),
        "z": np.round(world[:, 2], 1).tolist(),
        "i": faces[:, 0].tolist(),
        "j": faces[:, 1].tolist(),
        "k": faces[:, 2].tolist(),
    }


def _traces(brain: np.ndarray, masks: dict[str, np.ndarray], affine: np.ndarray, step: int) -> list[dict]:
    """The brain outline and each label map's WT, TC and ET surfaces (arrays RAS, cropped)."""
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    # The brain outline is the "whole tumour" of a map that labels every brain voxel as edema.
    outline = region_meshes(brain.astype(np.uint8) * 2, affine=affine, regions=("WT",), step=max(step, 3))
    traces = [_mesh_trace(*m, affine, spacing, "brain", "rgb(150,150,150)", 0.08, "brain") for m in outline.values()]
    for source, labels in masks.items():
        for region, (verts, faces) in region_meshes(labels, affine=affine, step=step).items():
            traces.append(
                _mesh_trace(
                    verts,
                    faces,
                    affine,
                    spacing,
                    f"{region} ({source})",
                    _rgb(REGION_COLOURS[region]),
                    REGION_OPACITY[region],
                    source,
                )
            )
    return traces


def view_html(
    image: np.ndarray,
    affine: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
    uncertainty: np.ndarray | None = None,
    modalities: Sequence[str] = MODALITIES,
    title: str = "",
    radiological: bool = True,
    mesh_step: int = 2,
    margin: int = 4,
) -> Viewer:
    """Build the viewer page from arrays.

    Args:
        image: ``(X, Y, Z, C)`` intensities (or ``(X, Y, Z)``), voxel order of ``affine``.
        affine: 4x4 voxel-to-world affine (mm).
        reference: ``(X, Y, Z)`` canonical labels (0 BG, 1 NCR, 2 ED, 3 ET), e.g. the ground truth.
        prediction: ``(X, Y, Z)`` canonical labels of a model's prediction.
        uncertainty: ``(X, Y, Z)`` non-negative map (e.g. predictive entropy) shown as a heat overlay.
        modalities: one name per image channel.
        title: shown at the top of the page.
        radiological: the patient's right on the screen's left (``False``: neurological).
        mesh_step: marching-cubes step in voxels (larger: smaller file, coarser surfaces).
        margin: voxels kept around the brain when cropping to it.

    Returns:
        A :class:`Viewer`; ``.save(path)`` writes the page, notebooks show it inline.

    Raises:
        ValueError: when a map's shape differs from the image's, the affine is not 4x4, or the
            labels hold values outside 0-3.
    """
    check_int("mesh_step", mesh_step)
    check_int("margin", margin, 0)
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., None]
    if image.ndim != 4:
        raise ValueError(f"image must be (X, Y, Z) or (X, Y, Z, C), got shape {image.shape}")
    if len(modalities) != image.shape[-1]:
        raise ValueError(f"modalities names {len(modalities)} channels, the image has {image.shape[-1]}")
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
    maps = {"reference": reference, "prediction": prediction, "uncertainty": uncertainty}
    for name, arr in maps.items():
        if arr is not None and np.shape(arr) != image.shape[:3]:
            raise ValueError(f"{name} has shape {np.shape(arr)}, the image {image.shape[:3]}")
    for name in ("reference", "prediction"):
        if maps[name] is not None and (np.min(maps[name]) < 0 or np.max(maps[name]) > 3):
            raise ValueError(f"{name} must hold canonical labels 0-3 (0 BG, 1 NCR, 2 ED, 3 ET)")

    ras, ras_affine = _to_ras(image, affine)
    brain = np.any(ras != 0, axis=-1)
    box = bbox(brain, pad=margin) or tuple(slice(0, s) for s in brain.shape)
    offset = np.array([s.start for s in box], dtype=float)
    crop_affine = ras_affine.copy()
    crop_affine[:3, 3] = ras_affine[:3, :3] @ offset + ras_affine[:3, 3]
    brain = brain[box]
    volumes = {m: _pack(_to_uint8(ras[box][..., c], brain)) for c, m in enumerate(modalities)}
    labels, masks = {}, {}
    for name in ("reference", "prediction"):
        if maps[name] is not None:
            arr = _to_ras(np.asarray(maps[name]).astype(np.uint8), affine)[0][box]
            labels[name], masks[name] = _pack(arr), arr
    unc = unc_max = None
    if uncertainty is not None:
        u = _to_ras(np.asarray(uncertainty, dtype=np.float32), affine)[0][box]
        unc_max = float(np.nanmax(u)) if np.isfinite(u).any() else 0.0
        unc = _pack((np.clip(np.nan_to_num(u) / max(unc_max, 1e-12), 0, 1) * 255).round().astype(np.uint8))
    spacing = np.sqrt((ras_affine[:3, :3] ** 2).sum(axis=0))
    tumour = masks.get("prediction", masks.get("reference"))
    start = brain.shape if tumour is None or not tumour.any() else np.argwhere(tumour > 0).mean(axis=0) * 2
    data = {
        "start": [int(round(c / 2)) for c in start],
        "shape": list(brain.shape),
        "spacing": [round(float(s), 4) for s in spacing],
        "volumes": volumes,
        "labels": labels,
        "uncertainty": unc,
        "uncertaintyMax": unc_max,
        "labelColours": {str(k): [round(255 * c) for c in LABEL_COLOURS[k]] for k in FOREGROUND_CLASSES},
        "labelNames": {str(k): CLASS_NAMES[k] for k in FOREGROUND_CLASSES},
        "radiological": bool(radiological),
        "traces": _traces(brain, masks, crop_affine, mesh_step),
    }
    return Viewer(_page(data, title or "brainseg_tf viewer"), title)


def _read_map(path: str | Path, case: Any, *, labels: bool) -> np.ndarray:
    """A prediction (source label values, converted to canonical) or an uncertainty map on the case's grid."""
    from brainseg_tf.io import DataError
    from brainseg_tf.io.labels import load_labels
    from brainseg_tf.io.nifti import load_nifti, read_header

    shape, affine, _ = read_header(path)
    if shape[:3] != tuple(case.shape):
        raise DataError(path, f"{path}: shape {shape} differs from the case's {tuple(case.shape)}")
    if not np.allclose(affine, case.affine, atol=1e-3):
        raise DataError(path, f"{path}: its affine differs from the case's (not on the case's grid)")
    if not labels:
        return np.asarray(load_nifti(path).data, dtype=np.float32)
    # the file's stamp (as `brainseg predict` writes it), else the case's own convention
    return load_labels(Path(path), None, fallback=case.convention)[0]


def view(
    case: Any,
    pred: str | Path | np.ndarray | None = None,
    uncertainty: str | Path | np.ndarray | None = None,
    *,
    out: str | Path | None = None,
    title: str | None = None,
    **options: Any,
) -> Viewer:
    """The viewer of one case, shown inline in a notebook and optionally saved.

    Args:
        case: a case folder (any supported layout), an MSD image file or a :class:`brainseg_tf.io.Case`.
        pred: a predicted label file (as ``brainseg predict`` writes it, in the source's label
            values) or canonical labels ``(X, Y, Z)``.
        uncertainty: an uncertainty map file (``<case>_uncertainty.nii.gz``) or array.
        out: also write the page here (``.html``).
        title: the page's title (default: the case id).
        **options: passed to :func:`view_html` (``radiological``, ``mesh_step``, ``margin``).

    Returns:
        The :class:`Viewer` (a notebook cell displays it).
    """
    from brainseg_tf import io

    if not isinstance(case, io.Case):
        case = io.read_case(case)
    if pred is not None and not isinstance(pred, np.ndarray):
        pred = _read_map(pred, case, labels=True)
    if uncertainty is not None and not isinstance(uncertainty, np.ndarray):
        uncertainty = _read_map(uncertainty, case, labels=False)
    viewer = view_html(
        case.image,
        case.affine,
        reference=case.label,
        prediction=pred,
        uncertainty=uncertainty,
        modalities=case.modalities,
        title=title or case.case_id,
        **options,
    )
    if out is not None:
        viewer.save(out)
    return viewer


def _page(data: dict, title: str) -> str:
    from plotly.offline import get_plotlyjs

    parts = {
        "TITLE": html.escape(title),
        "PLOTLY": get_plotlyjs(),
        "DATA": json.dumps(data, separators=(",", ":")).replace("</", "<\\/"),
    }
    # one pass, so nothing substituted is searched again (a title holding "__DATA__" stays text)
    return re.sub(r"__(TITLE|PLOTLY|DATA)__", lambda m: parts[m.group(1)], _TEMPLATE)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:10px;background:#fafafa;color:#222}
h1{font-size:18px;margin:4px 0 8px}
.bar{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin-bottom:8px;font-size:13px}
.planes{display:flex;flex-wrap:wrap;gap:10px}
.plane{background:#000;padding:4px;border-radius:4px;color:#ddd;font-size:12px}
.plane canvas{display:block;image-rendering:pixelated;cursor:crosshair}
.plane input{width:100%}
#view3d{width:100%;max-width:980px;height:420px;margin-top:10px;background:#fff}
.swatch{display:inline-block;width:10px;height:10px;margin-right:3px;border:1px solid #555}
#status{font-size:12px;color:#666}
</style></head><body>
<h1>__TITLE__</h1>
<div class="bar" id="controls"></div>
<div class="planes" id="planes"></div>
<div id="view3d"></div>
<div id="status">loading...</div>
<script type="text/javascript">__PLOTLY__</script>
<script type="text/javascript">
const D = __DATA__;
const [NX, NY, NZ] = D.shape, SP = D.spacing;
const st = {mod: Object.keys(D.volumes)[0], pos: D.start.slice(),
            show: {reference: true, prediction: true, uncertainty: false}, labels: {1: true, 2: true, 3: true},
            alpha: 0.45};
const vols = {}, labs = {};
let unc = null;
async function inflate(b64) {
  const bin = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
const idx = (x, y, z) => (x * NY + y) * NZ + z;
// Each plane: screen size, pixel aspect, and screen (c, r) -> voxel (x, y, z).
const flipX = c => D.radiological ? NX - 1 - c : c;
const PLANES = {
  axial: {w: NX, h: NY, aw: SP[0], ah: SP[1], axis: 2, vox: (c, r, k) => [flipX(c), NY - 1 - r, k]},
  coronal: {w: NX, h: NZ, aw: SP[0], ah: SP[2], axis: 1, vox: (c, r, k) => [flipX(c), k, NZ - 1 - r]},
  sagittal: {w: NY, h: NZ, aw: SP[1], ah: SP[2], axis: 0, vox: (c, r, k) => [k, NY - 1 - c, NZ - 1 - r]},
};
function el(tag, attrs, parent) {
  const e = document.createElement(tag);
  Object.assign(e, attrs || {});
  if (parent) parent.appendChild(e);
  return e;
}
function checkbox(label, on, fn, parent, colour) {
  const l = el("label", {}, parent);
  const c = el("input", {type: "checkbox", checked: on}, l);
  if (colour) el("span", {className: "swatch"}, l).style.background = colour;
  l.appendChild(document.createTextNode(label));
  c.addEventListener("change", () => { fn(c.checked); drawAll(); });
  return c;
}
function controls() {
  const bar = document.getElementById("controls");
  const sel = el("select", {}, el("label", {textContent: "modality "}, bar));
  for (const m of Object.keys(D.volumes)) el("option", {value: m, textContent: m}, sel);
  sel.addEventListener("change", () => { st.mod = sel.value; drawAll(); });
  for (const name of ["reference", "prediction"]) if (D.labels[name])
    checkbox(name + (name === "reference" && D.labels.prediction ? " (outline)" : ""), true,
             v => st.show[name] = v, bar);
  for (const k of [1, 2, 3])
    checkbox(D.labelNames[k], true, v => st.labels[k] = v, bar, "rgb(" + D.labelColours[k] + ")");
  if (D.uncertainty) checkbox("uncertainty (max " + D.uncertaintyMax.toPrecision(3) + ")", false,
                              v => st.show.uncertainty = v, bar);
  const a = el("input", {type: "range", min: 0, max: 100, value: 45}, el("label", {textContent: "opacity "}, bar));
  a.addEventListener("input", () => { st.alpha = a.value / 100; drawAll(); });
}
function planes() {
  const box = document.getElementById("planes");
  for (const [name, p] of Object.entries(PLANES)) {
    const div = el("div", {className: "plane"}, box);
    const cv = el("canvas", {width: p.w, height: p.h}, div);
    const scale = 300 / Math.max(p.w * p.aw, p.h * p.ah);
    cv.style.width = (p.w * p.aw * scale) + "px";
    cv.style.height = (p.h * p.ah * scale) + "px";
    const n = [NX, NY, NZ][p.axis];
    const s = el("input", {type: "range", min: 0, max: n - 1, value: st.pos[p.axis]}, div);
    const cap = el("div", {}, div);
    s.addEventListener("input", () => { st.pos[p.axis] = +s.value; drawAll(); });
    cv.addEventListener("click", ev => {
      const r = cv.getBoundingClientRect();
      const clamp = (v, n) => Math.min(Math.max(v, 0), n - 1);
      const c = clamp(Math.floor((ev.clientX - r.left) / r.width * p.w), p.w);
      const rr = clamp(Math.floor((ev.clientY - r.top) / r.height * p.h), p.h);
      const v = p.vox(c, rr, st.pos[p.axis]);
      for (let i = 0; i < 3; i++) if (i !== p.axis) st.pos[i] = v[i];
      drawAll();
    });
    p.canvas = cv; p.slider = s; p.caption = cap; p.name = name;
  }
}
function heat(u) { return [255, Math.min(255, 2 * u), Math.max(0, 2 * u - 255)]; }
function draw(p) {
  const k = st.pos[p.axis], img = p.canvas.getContext("2d").createImageData(p.w, p.h), px = img.data;
  const vol = vols[st.mod], pred = st.show.prediction && labs.prediction, ref = st.show.reference && labs.reference;
  const fill = pred || ref, outline = pred && ref ? ref : null, a = st.alpha;
  for (let r = 0; r < p.h; r++) for (let c = 0; c < p.w; c++) {
    const [x, y, z] = p.vox(c, r, k), i = idx(x, y, z), o = 4 * (r * p.w + c);
    let g = vol[i], rgb = [g, g, g];
    if (fill) { const l = fill[i]; if (l && st.labels[l]) { const col = D.labelColours[l];
      rgb = rgb.map((v, j) => (1 - a) * v + a * col[j]); } }
    if (outline) { const l = outline[i]; if (l && st.labels[l]) {
      const nb = [p.vox(c + 1, r, k), p.vox(c - 1, r, k), p.vox(c, r + 1, k), p.vox(c, r - 1, k)];
      if (nb.some(([u, v, w]) => u < 0 || v < 0 || w < 0 || u >= NX || v >= NY || w >= NZ || outline[idx(u, v, w)] !== l))
        rgb = D.labelColours[l]; } }
    if (st.show.uncertainty && unc) { const u = unc[i]; if (u) { const h = heat(u), b = a * u / 255;
      rgb = rgb.map((v, j) => (1 - b) * v + b * h[j]); } }
    px[o] = rgb[0]; px[o + 1] = rgb[1]; px[o + 2] = rgb[2]; px[o + 3] = 255;
  }
  const ctx = p.canvas.getContext("2d");
  ctx.putImageData(img, 0, 0);
  p.slider.value = k;
  p.caption.textContent = p.name + " " + (k + 1) + " / " + [NX, NY, NZ][p.axis];
  document.body.dataset["drawn_" + p.name] = "1";
}
function drawAll() { for (const p of Object.values(PLANES)) draw(p); }
function draw3d() {
  const layout = {margin: {l: 0, r: 0, t: 20, b: 0}, legend: {x: 0, y: 1},
    scene: {aspectmode: "data", xaxis: {title: {text: "x (mm, R)"}}, yaxis: {title: {text: "y (mm, A)"}},
            zaxis: {title: {text: "z (mm, S)"}}}};
  return Plotly.newPlot("view3d", D.traces, layout, {displaylogo: false, responsive: true}).then(() => {
    const gl = document.querySelector("#view3d canvas");
    document.body.dataset.webgl = gl ? "1" : "0";
  });
}
(async () => {
  try {
    for (const [m, b] of Object.entries(D.volumes)) vols[m] = await inflate(b);
    for (const [m, b] of Object.entries(D.labels)) labs[m] = await inflate(b);
    if (D.uncertainty) unc = await inflate(D.uncertainty);
    controls(); planes(); drawAll();
    try { await draw3d(); } catch (e) { document.body.dataset.webgl = "0"; }
    document.getElementById("status").textContent =
      "click a plane to move the other two; drag the 3D view to rotate, click a legend entry to hide a surface";
    document.body.dataset.ready = "1";
  } catch (e) {
    document.getElementById("status").textContent = "viewer error: " + e;
    document.body.dataset.error = String(e);
  }
})();
</script></body></html>
"""
