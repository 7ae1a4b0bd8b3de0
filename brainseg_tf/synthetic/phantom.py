"""One synthetic BraTS-like case: anatomy, tumour, intensities and acquisition (see the package docstring).

Everything is computed in template millimetres on a coarse grid (half resolution for large
volumes), then brought to the full grid; two random streams per seed (healthy subject, tumour)
make ``with_tumour=False`` the same subject without its tumour.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from brainseg_tf.arrays import check_spacing
from brainseg_tf.checks import check_choice, check_int, check_int_sequence
from brainseg_tf.conventions import MODALITIES
from brainseg_tf.schemes import get_scheme

TEMPLATE_SHAPE: tuple[int, int, int] = (240, 240, 155)
TISSUE_CLASSES: dict[int, str] = {0: "background", 1: "csf", 2: "grey matter", 3: "white matter", 4: "deep grey"}

# Template landmarks (mm on the 240 x 240 x 155 grid; axis 1 runs anterior -> posterior as in
# BraTS' LPS voxel order, axis 2 inferior -> superior). Fitted to the brain extent of the real cases.
_CENTRE = np.array([119.5, 128.0, 82.0], dtype=np.float32)

# Relative intensities (healthy brain median ~ 1) per tissue/tumour class, columns = MODALITIES.
# Orderings follow the real BraTS 2018 cases: FLAIR NCR > ET > ED > brain, CSF dark;
# T1 WM > GM > CSF, ED ~ brain > ET > NCR; T1ce ET > brain > ED > NCR; T2 CSF brightest, NCR > ET > ED.
_TISSUE = {
    #          flair  t1    t1ce  t2
    "csf": (0.32, 0.35, 0.40, 2.90),
    "gm": (1.10, 0.84, 0.86, 1.12),
    "wm": (0.90, 1.12, 1.08, 0.82),
    "dgm": (1.00, 0.94, 0.95, 0.96),
}
_TUMOUR = {
    "ncr": (1.92, 0.68, 0.65, 2.30),
    "et": (1.72, 0.76, 1.32, 1.85),
    "ed": (1.50, 0.89, 0.78, 1.65),
}
# Typical intensity scale (healthy median in file units) per modality; varies per case.
_SCALE = {"flair": 230.0, "t1": 380.0, "t1ce": 420.0, "t2": 330.0}

_KINDS = ("classic", "solid", "no_et", "patchy")  # rim + necrosis, no NCR, no ET (LGG-like), gappy rim
_KIND_P = (0.55, 0.15, 0.15, 0.15)

#: The BraTS 2024/2025 tasks :func:`synthesize_case` can make (``task=``), each named by its label scheme.
TASKS: tuple[str, ...] = ("gli2024", "met2024", "ped2024")
# Task-only parts (their own random stream, so the default cases stay as they were): non-enhancing
# solid tumour (PED NET: no T1ce uptake, T2/FLAIR bright) and the fluid of a resection cavity (CSF-like).
_TASK_PARTS = {
    #        flair  t1    t1ce  t2
    "net": (1.58, 0.80, 0.78, 1.90),
    "rc": (0.36, 0.38, 0.42, 2.70),
}
_MET_KIND_P = (0.6, 0.3, 0.0, 0.1)  # metastases enhance: ring with necrosis or solid, never LGG-like


@dataclass
class SyntheticCase:
    """One synthetic subject.

    Attributes:
        images: canonical modality (``flair``, ``t1``, ``t1ce``, ``t2``) -> int16 ``(X, Y, Z)``,
            0 outside the brain.
        label: uint8 ``(X, Y, Z)`` canonical labels (0 BG, 1 NCR, 2 ED, 3 ET), or with ``scheme``
            that scheme's internal labels (``gli2024``/``met2024``: 1 NETC, 2 SNFH, 3 ET, 4 RC;
            ``ped2024``: 1 NET, 2 ED, 3 ET, 4 CC).
        affine: 4x4 BraTS-like LPS affine ``diag(-sx, -sy, sz)`` with translation ``(0, (Y-1) sy, 0)``.
        brain_mask: bool ``(X, Y, Z)``; every modality is nonzero exactly here.
        spacing: voxel size in mm.
        seed: the seed the case was made from.
        age: patient age in years (older brains get wider sulci and ventricles).
        grade: ``"HGG"`` or ``"LGG"`` (cases without enhancing tumour are LGG-like); ``"none"``
            for a tumour-free case.
        kind: tumour pattern, one of ``classic``, ``solid``, ``no_et``, ``patchy``, or ``none``.
        volumes_ml: ``ncr``, ``ed``, ``et``, ``tc``, ``wt`` and ``brain`` volumes in ml (with a
            ``scheme``: ``ncr``/``ed``/``et`` are its internal labels 1-3, ``rc`` or ``cc`` its
            label 4, ``tc``/``wt`` its TC/WT regions).
        centroid_vox: whole-tumour centroid in voxel indices (NaN without tumour).
        centroid_mm: the same in world millimetres (through ``affine``).
        features: extra tumour features for survival models (``depth_mm``: distance of the centre
            below the brain surface, ``midline_mm``: distance to the midline plane,
            ``hemisphere``: ``"left"``/``"right"``, ``et_fraction``: ET / TC volume).
        tissue: uint8 ``(X, Y, Z)`` dominant healthy tissue under every voxel (see
            :data:`TISSUE_CLASSES`; displaced by the mass effect, ignoring the tumour), 0 outside
            the brain. Not written to disk; for tests and tissue-aware examples.
        scheme: the label scheme of a BraTS 2024/2025 task case (``synthesize_case(task=...)``),
            or ``None`` for canonical labels.
    """

    images: dict[str, np.ndarray]
    label: np.ndarray
    affine: np.ndarray
    brain_mask: np.ndarray
    spacing: tuple[float, float, float]
    seed: int
    age: float
    grade: str
    kind: str
    volumes_ml: dict[str, float]
    centroid_vox: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    features: dict = field(default_factory=dict)
    tissue: np.ndarray | None = None
    scheme: str | None = None

    @property
    def has_ncr(self) -> bool:
        return bool(self.volumes_ml["ncr"] > 0)

    @property
    def has_et(self) -> bool:
        return bool(self.volumes_ml["et"] > 0)

    def image_stack(self) -> np.ndarray:
        """The images as one ``(X, Y, Z, 4)`` float32 array in canonical channel order."""
        return np.stack([self.images[m] for m in MODALITIES], axis=-1).astype(np.float32)


# ------------------------------------------------------------------------------------ helpers


def brats_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The LPS voxel-to-world affine BraTS files carry: ``diag(-sx, -sy, sz)``, origin ``(0, (Y-1) sy, 0)``."""
    sx, sy, sz = (float(s) for s in spacing)
    aff = np.diag([-sx, -sy, sz, 1.0])
    aff[1, 3] = (shape[1] - 1) * sy
    return aff


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume fraction of a voxel of ``width`` mm whose centre is ``x`` mm inside a boundary."""
    return np.clip(x * (1.0 / width) + 0.5, 0.0, 1.0, dtype=np.float32)


def _resize(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear resize of a small 3D array, corners mapped to corners (separable gathers, no BLAS)."""
    out = a.astype(np.float32, copy=False)
    for ax in range(3):
        n_in, n_out = out.shape[ax], shape[ax]
        if n_in == n_out:
            continue
        pos = np.linspace(0.0, n_in - 1.0, n_out)
        i0 = np.minimum(np.floor(pos).astype(np.intp), max(n_in - 2, 0))
        w = (pos - i0).astype(np.float32).reshape([-1 if j == ax else 1 for j in range(3)])
        lo = np.take(out, i0, axis=ax)
        hi = np.take(out, np.minimum(i0 + 1, n_in - 1), axis=ax)
        out = lo + (hi - lo) * w
    return np.ascontiguousarray(out, dtype=np.float32)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], step: tuple[float, ...]) -> np.ndarray:
    """Smooth Gaussian random field, unit variance, correlation length ~ 2 ``step`` voxels per axis."""
    # Structure finer than 1.5 voxels cannot show on the grid; a coarser lattice keeps this cheap.
    lattice = tuple(max(3, int(np.ceil((n - 1) / max(s, 1.5))) + 1) for n, s in zip(shape, step))
    z = ndimage.gaussian_filter(rng.standard_normal(lattice).astype(np.float32), 1.0, mode="wrap")
    z /= z.std() + 1e-6
    return _resize(z, shape)


def _upsample2(a: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Linear x2 upsampling (coarse voxel i sits on fine voxel 2i), cropped to ``shape``."""
    for ax in (2, 1, 0):  # the largest pass last, along the outermost axis
        n = a.shape[ax]
        m = min(2 * n - 1, shape[ax])
        out_shape = list(a.shape)
        out_shape[ax] = m
        out = np.empty(out_shape, dtype=np.float32)
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        n_even, n_odd = (m + 1) // 2, m // 2
        even[ax] = slice(0, m, 2)
        odd[ax] = slice(1, m, 2)
        lo[ax] = slice(0, n_odd)
        hi[ax] = slice(1, n_odd + 1)
        src = [slice(None)] * 3
        src[ax] = slice(0, n_even)
        out[tuple(even)] = a[tuple(src)]
        o = out[tuple(odd)]
        np.add(a[tuple(lo)], a[tuple(hi)], out=o)
        o *= 0.5
        a = out
    return a


def _ellipsoid_sdf(p: tuple, c, a) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) to an axis-aligned ellipsoid."""
    q = [(p[i] - c[i]) for i in range(3)]
    k0 = np.sqrt((q[0] / a[0]) ** 2 + (q[1] / a[1]) ** 2 + (q[2] / a[2]) ** 2)
    k1 = np.sqrt((q[0] / a[0] ** 2) ** 2 + (q[1] / a[1] ** 2) ** 2 + (q[2] / a[2] ** 2) ** 2)
    return (k0 * (k0 - 1.0) / (k1 + 1e-6)).astype(np.float32)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two signed distances (blend radius ``k`` mm)."""
    h = np.clip(k - np.abs(a - b), 0.0, None) / k
    return np.minimum(a, b) - h * h * (k * 0.25)


@dataclass
class _Grid:
    shape: tuple[int, int, int]
    factor: int
    coarse: tuple[int, int, int]
    mm: np.ndarray  # template mm per coarse voxel, per axis
    axes: tuple  # template-mm coordinate vectors, broadcastable

    @classmethod
    def make(cls, shape: tuple[int, int, int]) -> _Grid:
        factor = 2 if int(np.prod(shape)) > 1_500_000 else 1
        coarse = tuple(s // 2 + 1 for s in shape) if factor == 2 else tuple(shape)
        mm = np.array([factor * t / s for t, s in zip(TEMPLATE_SHAPE, shape)], dtype=np.float32)
        axes = tuple(
            (np.arange(n, dtype=np.float32) * mm[i]).reshape([-1 if j == i else 1 for j in range(3)])
            for i, n in enumerate(coarse)
        )
        return cls(tuple(shape), factor, coarse, mm, axes)

    def up(self, a: np.ndarray) -> np.ndarray:
        return _upsample2(a, self.shape) if self.factor == 2 else a


# ------------------------------------------------------------------------------------ anatomy


@dataclass
class _Anatomy:
    """Random anatomy parameters of one subject."""

    scale: np.ndarray
    atrophy: float
    cortex: float
    sulcus_depth: float
    csf_width: float
    vent_scale: float


def _brain_sdf(grid: _Grid, an: _Anatomy, wobble: np.ndarray) -> np.ndarray:
    x, y, z = grid.axes
    c = _CENTRE
    s = an.scale
    px, py, pz = x - c[0], y - c[1], z - c[2]
    # Cerebrum: narrower frontally, flatter below; temporal lobes hang lower laterally.
    ant = np.clip(-py / 84.0, 0.0, 1.0)
    ax_ = 68.0 * s[0] * (1.0 - 0.13 * ant * ant)
    lateral = np.clip((np.abs(px) - 25.0) / 35.0, 0.0, 1.0) * np.clip(1.0 - np.abs(py + 15.0) / 55.0, 0.0, 1.0)
    az = np.where(pz > 0, 60.0 * s[2], (38.0 + 12.0 * lateral) * s[2])
    cere = _ellipsoid_sdf((px, py, pz), (0, 0, 0), (ax_, 84.0 * s[1], az))
    cbl = _ellipsoid_sdf((px, py, pz), (0.0, 40.0 * s[1], -42.0 * s[2]), (50.0 * s[0], 30.0 * s[1], 23.0 * s[2]))
    stem = _ellipsoid_sdf((px, py, pz), (0.0, 14.0 * s[1], -48.0 * s[2]), (13.0, 15.0, 34.0 * s[2]))
    d = _smin(_smin(cere, cbl, 8.0), stem, 10.0)
    return d + 3.0 * wobble


def _anatomy_fractions(
    p: tuple, d: np.ndarray, g: np.ndarray, gnorm: np.ndarray, thick: np.ndarray, an: _Anatomy, vox: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partial-volume fractions (csf, grey matter, deep grey nuclei) at template points ``p``.

    ``d`` is the depth below the brain surface (mm), ``g``/``gnorm`` the sulcal random field and
    its gradient norm (its zero set is the sulcal fundus sheet), ``thick`` the cortex thickness.
    """
    x, y, z = p
    c = _CENTRE
    # Distance to the nearest sulcal sheet, only down to the sulcal depth.
    dist_sheet = np.abs(g) / (gnorm + 1e-3)
    below = np.clip(d - an.sulcus_depth, 0.0, None)
    to_sulcus = np.sqrt(dist_sheet * dist_sheet + below * below)
    # Interhemispheric fissure: above the corpus callosum and at the frontal/occipital poles.
    mid = np.abs(x - c[0] - 1.5 * np.tanh((y - c[1]) / 60.0))
    fissure_on = ((z - c[2]) > 14.0) | (np.abs(y - c[1]) > 58.0)
    mid = np.where(fissure_on & ((z - c[2]) > -30.0), mid * 0.8, np.float32(1e3))
    cdist = np.minimum(np.minimum(d, to_sulcus), mid)
    w = an.csf_width
    f_csf = _ramp(w - cdist, vox)
    f_gm = _ramp(w + thick - cdist, vox) - f_csf
    # Lateral ventricles: curved tubes either side of the midline, arching down at both ends.
    vs = an.vent_scale
    t = np.clip((y - (c[1] - 2.0)) / 36.0, -1.0, 1.0)
    tp = np.clip(t, 0.0, None)
    tn = np.clip(-t, 0.0, None)
    zc = c[2] + 8.0 - 16.0 * tp * tp - 6.0 * tn * tn
    rx = (3.2 + 2.6 * tn + 1.6 * (1 - t * t)) * vs
    rz = (5.0 + 2.0 * tn - 1.5 * tp) * vs
    ends = np.clip(np.abs(y - (c[1] - 2.0)) - 36.0, 0.0, None) / 5.0
    f_vent = np.zeros_like(f_csf)
    for side in (-1.0, 1.0):
        xc = c[0] + side * (4.0 * vs + 13.0 * tp * tp + 2.0 * (1 - t * t))
        q = np.sqrt(((x - xc) / rx) ** 2 + ((z - zc) / rz) ** 2 + ends * ends)
        f_vent = np.maximum(f_vent, _ramp((1.0 - q) * np.minimum(rx, rz), vox))
    # Deep grey nuclei (thalamus, lentiform) below and lateral to the ventricles.
    dgm = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape), 1e3, dtype=np.float32)
    for side in (-1.0, 1.0):
        th = _ellipsoid_sdf(p, (c[0] + side * 11.0, c[1] + 14.0, c[2] - 6.0), (8.0, 12.0, 8.0))
        le = _ellipsoid_sdf(p, (c[0] + side * 24.0, c[1] - 4.0, c[2] - 4.0), (6.0, 15.0, 9.0))
        dgm = np.minimum(dgm, np.minimum(th, le))
    f_dgm = _ramp(-dgm, vox) * (1.0 - f_vent)
    f_csf = np.maximum(f_csf, f_vent)
    f_gm = np.clip(f_gm - f_vent - f_dgm, 0.0, None)
    return f_csf, f_gm, f_dgm


# ------------------------------------------------------------------------------------ tumour


@dataclass
class _Tumour:
    kind: str
    centre: np.ndarray  # template mm
    rot: np.ndarray
    core_axes: np.ndarray
    ed_axes: np.ndarray
    ed_shift: np.ndarray
    rim: float
    mass: float
    wm_pref: float
    box: tuple  # coarse-grid slices


def _draw_tumour(
    rng: np.random.Generator, grid: _Grid, d_brain: np.ndarray, size: float = 1.0, kind_p: tuple = _KIND_P
) -> _Tumour:
    """A tumour's random parameters; ``size`` scales its core, rim and edema margin (small metastases)."""
    kind = _KINDS[int(rng.choice(len(_KINDS), p=kind_p))]
    r_core = float(np.clip(rng.lognormal(np.log(19.0), 0.28), 7.0, 30.0)) * size
    if kind == "solid":
        r_core = float(np.clip(r_core * 0.75, 6.0, 16.0))
    elif kind == "no_et":
        r_core = float(np.clip(r_core * 1.25, 9.0, 32.0))
    margin = float(rng.uniform(2.0, 14.0)) * (0.7 if kind == "no_et" else 1.0) * max(size, 0.5)
    core_axes = r_core * rng.uniform(0.75, 1.25, 3)
    ed_axes = (r_core + margin) * rng.uniform(0.8, 1.25, 3)
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    rot = (q * np.sign(np.diag(r))).astype(np.float32)
    ed_shift = rng.normal(0.0, 0.25 * margin, 3)
    rim = float(rng.uniform(4.0, 9.0)) * size
    c = _CENTRE
    need = max(8.0, 0.55 * r_core)
    centre = None
    for _ in range(200):
        side = rng.choice([-1.0, 1.0])
        cand = np.array(
            [
                c[0] + side * rng.uniform(10.0, 48.0),
                c[1] + rng.uniform(-62.0, 52.0),
                c[2] + rng.uniform(-22.0, 40.0),
            ],
            dtype=np.float32,
        )
        idx = tuple(int(np.clip(round(cand[i] / grid.mm[i]), 0, grid.coarse[i] - 1)) for i in range(3))
        if -d_brain[idx] > need:
            centre = cand
            break
    if centre is None:  # tiny or odd grids: fall back to the deepest cerebral point
        centre = c + np.array([20.0, 0.0, 15.0], dtype=np.float32)
    reach = 1.6 * float(ed_axes.max()) + float(np.abs(ed_shift).max()) + 12.0
    box = tuple(
        slice(
            int(max(0, np.floor((centre[i] - reach) / grid.mm[i]))),
            int(min(grid.coarse[i], np.ceil((centre[i] + reach) / grid.mm[i]) + 1)),
        )
        for i in range(3)
    )
    return _Tumour(
        kind,
        centre,
        rot,
        core_axes.astype(np.float32),
        ed_axes.astype(np.float32),
        ed_shift.astype(np.float32),
        rim,
        float(rng.uniform(0.25, 0.5)),
        float(rng.uniform(0.4, 0.7)),
        box,
    )


def _box_coords(grid: _Grid, box: tuple) -> tuple:
    return tuple(grid.axes[i][tuple(box[j] if j == i else slice(None) for j in range(3))] for i in range(3))


# ------------------------------------------------------------------------------------ case


def check_case_arguments(
    seed: Any, shape: Any, spacing: Any
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """The checked ``shape`` and ``spacing`` of a case; ``seed`` must be an integer >= 0.

    Raises:
        ValueError: naming ``seed``, ``shape`` (three integers >= 16) or ``spacing``.
    """
    check_int("seed", seed, 0)
    return check_int_sequence("shape", shape, length=3, minimum=16), check_spacing(spacing)


def synthesize_case(
    seed: int,
    shape: tuple[int, int, int] = (240, 240, 155),
    *,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    with_tumour: bool = True,
    task: str | None = None,
    resection: bool = False,
) -> SyntheticCase:
    """Make one synthetic BraTS-like case, deterministic per ``seed``.

    Args:
        seed: non-negative int; the same seed (and shape) gives identical arrays.
        shape: grid ``(X, Y, Z)``; the anatomy is scaled to fill it the way a brain fills a
            240 x 240 x 155 BraTS grid (axis 0 right -> left, 1 anterior -> posterior,
            2 inferior -> superior, as in BraTS' LPS voxel order).
        spacing: voxel size in mm, used for the affine and the volumes.
        with_tumour: ``False`` gives a healthy brain with an all-zero label.
        task: ``None`` (the adult glioma above, canonical labels) or one of :data:`TASKS`, whose
            label scheme's internal labels (:attr:`brainseg_tf.schemes.LabelScheme.internal`) the
            label then holds: ``gli2024`` the same glioma (1 NETC, 2 SNFH, 3 ET) plus 4 RC with
            ``resection``; ``met2024`` 2-4 smaller ring-enhancing or solid lesions (the first the
            largest), plus 4 RC with ``resection``; ``ped2024`` the glioma with its necrotic centre
            as a cyst (4 CC), its enhancing rim partly non-enhancing (1 NET, 3 ET), LGG-like cases
            all NET, and 2 ED.
        resection: ``gli2024``/``met2024`` only: a fluid-filled resection cavity (4 RC) cut into the
            first lesion's side, over tumour and brain alike (a post-treatment time point).

    Returns:
        A :class:`SyntheticCase` with int16 images, uint8 labels (canonical, or ``task``'s internal
        labels) and tumour features. ``task=None`` gives the same case as before tasks existed: the
        tasks draw from a random stream of their own.

    Raises:
        ValueError: a negative or non-int seed, a shape that is not three ints >= 16, a
            non-positive spacing, an unknown ``task``, ``resection`` for a task without RC.
    """
    shape, spacing = check_case_arguments(seed, shape, spacing)
    if task is not None:
        check_choice("task", task, TASKS)
    if resection and task not in ("gli2024", "met2024"):
        raise ValueError(
            f"resection=True needs task='gli2024' or 'met2024' (a resection cavity label), got task={task!r}"
        )
    # Two independent streams: the healthy anatomy and acquisition of a seed are the same with
    # or without a tumour, so ``with_tumour=False`` gives the subject's tumour-free counterpart.
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0]))
    trng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    grid = _Grid.make(shape)
    brain = _healthy_brain(rng, grid)
    # The tasks' own draws (lesion count and sizes, cavity, enhancing patches) come from a third stream.
    xrng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    tumours: list[_TumourShape] = []
    if with_tumour:
        tumours = _grow_tumours(trng, xrng, grid, brain, task)
        if tumours[0].params.kind == "no_et":  # LGG-like patients are younger
            brain.age = float(np.clip(brain.age - trng.uniform(8.0, 22.0), 19.0, 86.0))
        for tumour in tumours:
            _mass_effect(grid, brain, tumour)
        for tumour in tumours:
            _tumour_fields(trng, grid, brain, tumour)
        _task_fields(xrng, grid, brain, tumours, task, resection)
    tissue_c, images_c = _tissue_intensities(rng, brain)
    for tumour in tumours:
        _paint_tumour(trng, grid, images_c, tumour, xrng if task == "ped2024" else None)
    if resection and tumours:
        _paint_cavity(xrng, grid, images_c, tumours[0])
    _acquire(rng, grid, images_c)
    mask = grid.up(brain.d_brain) < 0.0
    images = _full_resolution_images(grid, images_c, mask)
    label, fbox = _full_resolution_label(grid, mask, tumours, task)
    first = tumours[0].params if tumours else None
    case = _finish(grid, brain, first, label, fbox, images, mask, spacing, int(seed), task)
    case.tissue = _full_resolution_tissue(grid, tissue_c) * mask
    return case


def as_men_rt(case: SyntheticCase) -> SyntheticCase:
    """The MEN-RT view of a synthetic case: its T1c alone and a GTV mask (the ``men_rt`` scheme).

    The GTV is the case's tumour core (its scheme's TC region: the enhancing tumour and what it
    encloses, as a radiotherapy planner contours a contrast-enhancing meningioma); edema is left out.
    The anatomy stays the phantom's skull-stripped brain (real MEN-RT scans are defaced, not
    skull-stripped).

    Returns:
        A :class:`SyntheticCase` with ``images == {"t1ce": ...}``, ``label`` uint8 internal labels
        of ``men_rt`` (0 background, 1 GTV), ``scheme="men_rt"`` and ``volumes_ml`` holding
        ``gtv`` and ``brain``; the other fields as in ``case``.

    Raises:
        ValueError: ``case`` is already a MEN-RT case.
    """
    if case.scheme == "men_rt":
        raise ValueError("case is already a MEN-RT case (scheme 'men_rt')")
    core = get_scheme(case.scheme or "brats2021").region_internal("TC")
    gtv = np.isin(case.label, core).astype(np.uint8)
    ml = float(np.prod(case.spacing)) / 1000.0
    volumes = {"gtv": float(np.count_nonzero(gtv)) * ml, "brain": case.volumes_ml["brain"]}
    return replace(case, images={"t1ce": case.images["t1ce"]}, label=gtv, volumes_ml=volumes, scheme="men_rt")


@dataclass
class _Brain:
    """The healthy anatomy of one subject on the coarse grid (template mm).

    ``f_csf``, ``f_gm``, ``f_dgm``: tissue fractions (white matter is the rest); ``d_brain``: signed
    distance to the brain outline (negative inside), ``depth = -d_brain``; ``g`` and ``thick``: the
    sulcal field and the cortical thickness the fractions were made from.
    """

    age: float
    anatomy: _Anatomy
    g: np.ndarray
    thick: np.ndarray
    d_brain: np.ndarray
    depth: np.ndarray
    f_csf: np.ndarray
    f_gm: np.ndarray
    f_dgm: np.ndarray
    vox: float  # coarse voxel size in template mm (partial-volume width)


@dataclass
class _TumourShape:
    """A drawn tumour and, on its coarse box, the signed level sets of core, necrosis and edema."""

    params: _Tumour
    rel: list  # box coordinates relative to the tumour centre (template mm)
    r: np.ndarray  # distance to the centre
    core: np.ndarray | None = None
    ncr: np.ndarray | None = None
    edema: np.ndarray | None = None
    enhancing: np.ndarray | None = None  # ped2024: the rim enhances where this is negative (else NET)
    cavity: np.ndarray | None = None  # a resection cavity's level set, negative inside
    net_core: bool = False  # ped2024 LGG-like: the whole core is non-enhancing tumour


def _step_mm(grid: _Grid, mm: float) -> tuple[float, ...]:
    """A noise correlation length of ``mm`` template millimetres in coarse voxels per axis."""
    return tuple(mm / float(grid.mm[i]) for i in range(3))


def _healthy_brain(rng: np.random.Generator, grid: _Grid) -> _Brain:
    """Age, anatomy parameters, brain outline and tissue fractions of a healthy subject."""
    age = float(np.clip(rng.normal(60.0, 12.0), 19.0, 86.0))
    atrophy = float(np.clip((age - 35.0) / 50.0 + rng.normal(0.0, 0.1), 0.0, 1.0))
    an = _Anatomy(
        scale=rng.uniform(0.92, 1.04, 3).astype(np.float32) * np.float32(rng.uniform(0.95, 1.03)),
        atrophy=atrophy,
        cortex=float(rng.uniform(2.6, 3.4)),
        sulcus_depth=float(rng.uniform(18.0, 26.0)),
        csf_width=0.35 + 0.9 * atrophy,
        vent_scale=0.8 + 0.6 * atrophy + float(rng.uniform(-0.05, 0.1)),
    )
    vox = float(grid.mm.mean())
    cshape = grid.coarse
    wobble = _noise(rng, cshape, _step_mm(grid, 20.0))
    g = _noise(rng, cshape, _step_mm(grid, 4.0))
    thick = an.cortex * (1.0 + 0.25 * _noise(rng, cshape, _step_mm(grid, 15.0)))
    d_brain = _brain_sdf(grid, an, wobble)
    depth = -d_brain
    gr = np.gradient(g, *[float(m) for m in grid.mm])
    gnorm = np.sqrt(gr[0] ** 2 + gr[1] ** 2 + gr[2] ** 2)
    del gr
    f_csf, f_gm, f_dgm = _anatomy_fractions(grid.axes, depth, g, gnorm, thick, an, vox)
    return _Brain(age, an, g, thick, d_brain, depth, f_csf, f_gm, f_dgm, vox)


def _grow_tumour(
    trng: np.random.Generator, grid: _Grid, brain: _Brain, size: float = 1.0, kind_p: tuple = _KIND_P
) -> _TumourShape:
    """Draw a tumour inside the brain and its box coordinates around the centre."""
    tum = _draw_tumour(trng, grid, brain.d_brain, size, kind_p)
    bp = _box_coords(grid, tum.box)
    rel = [bp[i] - tum.centre[i] for i in range(3)]
    return _TumourShape(tum, rel, np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2))


def _grow_tumours(
    trng: np.random.Generator, xrng: np.random.Generator, grid: _Grid, brain: _Brain, task: str | None
) -> list[_TumourShape]:
    """One glioma, or for ``met2024`` 2-4 metastases: a larger first one and smaller satellites."""
    if task != "met2024":
        return [_grow_tumour(trng, grid, brain)]
    n = 2 + int(xrng.integers(0, 3))
    sizes = [float(xrng.uniform(0.55, 0.85))] + [float(xrng.uniform(0.3, 0.55)) for _ in range(n - 1)]
    return [_grow_tumour(trng, grid, brain, size, _MET_KIND_P) for size in sizes]


def _task_fields(
    xrng: np.random.Generator,
    grid: _Grid,
    brain: _Brain,
    tumours: list[_TumourShape],
    task: str | None,
    resection: bool,
) -> None:
    """The task-only level sets, in place: PED's enhancing patches, a resection cavity."""
    if task == "ped2024":
        for tumour in tumours:
            if tumour.params.kind == "no_et":
                tumour.net_core = True
                continue
            # About half of the rim enhances, in patches; the rest is solid non-enhancing tumour.
            patches = _noise(xrng, tumour.r.shape, _step_mm(grid, 8.0))
            tumour.enhancing = (float(xrng.uniform(-0.3, 0.3)) - patches) * 5.0
    if resection and tumours:
        tumour = tumours[0]
        tum, rel = tumour.params, tumour.rel
        r_core = float(tum.core_axes.mean())
        direction = xrng.standard_normal(3)
        direction /= np.linalg.norm(direction) + 1e-6
        shift = direction * 0.6 * r_core
        axes = r_core * xrng.uniform(0.45, 0.7, 3)
        k = np.sqrt(sum(((rel[i] - shift[i]) / axes[i]) ** 2 for i in range(3)))
        wobble = _noise(xrng, tumour.r.shape, _step_mm(grid, 6.0))
        cavity = ((k - 1.0) * float(axes.mean()) + 0.12 * float(axes.mean()) * wobble).astype(np.float32)
        cavity[brain.d_brain[tum.box] > -1.0] = 1e3
        tumour.cavity = cavity


def _mass_effect(grid: _Grid, brain: _Brain, tumour: _TumourShape) -> None:
    """Push the tissue fractions around the tumour outwards, in place.

    Each point shows the anatomy from nearer the centre, so structures around the tumour appear
    pushed away (compressed ventricles, effaced sulci).
    """
    tum, rel, box = tumour.params, tumour.rel, tumour.params.box
    rm = float(np.mean(tum.core_axes)) * 1.3 + 4.0
    shrink = 1.0 - tum.mass * np.exp(-((tumour.r / rm) ** 2))
    src = [tum.centre[i] + rel[i] * shrink for i in range(3)]
    coords = np.stack([s / grid.mm[i] for i, s in enumerate(src)])
    g_box = ndimage.map_coordinates(brain.g, coords, order=1, mode="nearest")
    del coords
    gr = np.gradient(g_box, *[float(m) for m in grid.mm])
    gnorm = np.sqrt(gr[0] ** 2 + gr[1] ** 2 + gr[2] ** 2)
    fb = _anatomy_fractions(tuple(src), brain.depth[box], g_box, gnorm, brain.thick[box], brain.anatomy, brain.vox)
    # The brain outline stays put (the skull holds it); only inner structures move.
    inner = np.clip(brain.depth[box] / 6.0, 0.0, 1.0)
    for full, new in zip((brain.f_csf, brain.f_gm, brain.f_dgm), fb):
        full[box] = inner * new + (1.0 - inner) * full[box]


def _tumour_fields(trng: np.random.Generator, grid: _Grid, brain: _Brain, tumour: _TumourShape) -> None:
    """Fill ``tumour.core``, ``ncr`` and ``edema``: noisy level sets, negative inside."""
    tum, rel, r, box, vox = tumour.params, tumour.rel, tumour.r, tumour.params.box, brain.vox
    rel_rot = [sum(tum.rot[j, i] * rel[j] for j in range(3)) for i in range(3)]
    n_core = 0.8 * _noise(trng, r.shape, _step_mm(grid, 5.0)) + 0.6 * _noise(trng, r.shape, _step_mm(grid, 10.0))
    n_rim = _noise(trng, r.shape, _step_mm(grid, 7.0))
    n_ed = _noise(trng, r.shape, _step_mm(grid, 8.0))
    kc = np.sqrt(sum((rel_rot[i] / tum.core_axes[i]) ** 2 for i in range(3)))
    core = (kc - 1.0) * float(tum.core_axes.mean()) + 0.22 * float(tum.core_axes.mean()) * n_core
    rim = tum.rim * (1.0 + 0.35 * n_rim)
    if tum.kind == "patchy":  # enhancing rim with gaps: necrosis touches edema
        rim = np.where(n_rim < -0.3, 0.0, rim * 1.3)
    if tum.kind == "solid":
        ncr = np.full_like(core, 1e3)
    elif tum.kind == "no_et":
        ncr = core
    else:
        ncr = core + np.clip(rim, 0.0, None)
    # Edema: a noisy ellipsoid that reaches further in white matter and avoids CSF.
    ke = np.sqrt(sum(((rel_rot[i] - tum.ed_shift[i]) / tum.ed_axes[i]) ** 2 for i in range(3)))
    f_csf = brain.f_csf[box]
    f_w_box = np.clip(1.0 - f_csf - brain.f_gm[box] - brain.f_dgm[box], 0.0, 1.0)
    wm_s = ndimage.gaussian_filter(f_w_box, 3.0 / vox, mode="nearest")
    re = float(tum.ed_axes.mean())
    edema = (ke - 1.0) * re + 0.25 * re * n_ed - tum.wm_pref * re * (wm_s - 0.5) + 25.0 * f_csf
    # A thin edema seam around the core, except where the core abuts CSF.
    edema = np.minimum(edema, core - 1.5 + 25.0 * f_csf)
    edema = np.minimum(edema, core)
    outside = brain.d_brain[box] > -1.0
    for a in (core, ncr, edema):
        a[outside] = 1e3
    tumour.core, tumour.ncr, tumour.edema = core, ncr, edema


def _tissue_intensities(rng: np.random.Generator, brain: _Brain) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The dominant tissue class (1-4) and the healthy intensity of each modality, coarse grid."""
    f_csf, f_gm, f_dgm = brain.f_csf, brain.f_gm, brain.f_dgm
    f_wm = np.clip(1.0 - f_csf - f_gm - f_dgm, 0.0, 1.0)
    tissue_c = (np.argmax(np.stack([f_csf, f_gm, f_wm, f_dgm]), axis=0) + 1).astype(np.uint8)
    jitter = {k: rng.normal(1.0, 0.03, 4) for k in _TISSUE}
    images_c = {}
    for mi, m in enumerate(MODALITIES):
        images_c[m] = (
            f_csf * (_TISSUE["csf"][mi] * jitter["csf"][mi])
            + f_gm * (_TISSUE["gm"][mi] * jitter["gm"][mi])
            + f_dgm * (_TISSUE["dgm"][mi] * jitter["dgm"][mi])
            + f_wm * (_TISSUE["wm"][mi] * jitter["wm"][mi])
        )
    return tissue_c, images_c


def _paint_tumour(
    trng: np.random.Generator,
    grid: _Grid,
    images_c: dict[str, np.ndarray],
    tumour: _TumourShape,
    xrng: np.random.Generator | None = None,
) -> None:
    """Blend edema, enhancing tumour and necrosis intensities into the coarse images, in place.

    With PED's parts (``xrng`` given, :func:`_task_fields`), the rim is enhancing only where
    ``tumour.enhancing`` is negative and non-enhancing tumour elsewhere; an LGG-like core is all
    non-enhancing tumour.
    """
    box, vox = tumour.params.box, float(grid.mm.mean())
    tj = {k: trng.normal(1.0, 0.08, 4) for k in _TUMOUR}
    f_core = _ramp(-tumour.core, vox)
    f_ncr = np.minimum(_ramp(-tumour.ncr, vox), f_core)
    f_ed = np.maximum(_ramp(-tumour.edema, 2.0 * vox), f_core)
    tex = _noise(trng, tumour.core.shape, _step_mm(grid, 3.0))
    f_enh = None
    if xrng is not None:
        nj = xrng.normal(1.0, 0.08, 4)
        f_enh = np.zeros_like(f_core) if tumour.enhancing is None else _ramp(-tumour.enhancing, vox)
    for mi, m in enumerate(MODALITIES):
        base = images_c[m][box]
        ed_val = _TUMOUR["ed"][mi] * tj["ed"][mi] * (0.8 + 0.2 * base)
        et_val = _TUMOUR["et"][mi] * tj["et"][mi] * (1.0 + 0.10 * tex)
        ncr_val = _TUMOUR["ncr"][mi] * tj["ncr"][mi] * (1.0 - 0.12 * tex)
        if f_enh is not None:
            net_val = _TASK_PARTS["net"][mi] * nj[mi] * (1.0 + 0.08 * tex)
            et_val = f_enh * et_val + (1.0 - f_enh) * net_val
            if tumour.net_core:
                ncr_val = net_val
        images_c[m][box] = (1.0 - f_ed) * base + (f_ed - f_core) * ed_val + (f_core - f_ncr) * et_val + f_ncr * ncr_val


def _paint_cavity(
    xrng: np.random.Generator, grid: _Grid, images_c: dict[str, np.ndarray], tumour: _TumourShape
) -> None:
    """Fill the resection cavity with fluid (CSF-like intensities) over tumour and brain, in place."""
    box, vox = tumour.params.box, float(grid.mm.mean())
    f_rc = _ramp(-tumour.cavity, vox)
    jitter = xrng.normal(1.0, 0.05, 4)
    for mi, m in enumerate(MODALITIES):
        images_c[m][box] = (1.0 - f_rc) * images_c[m][box] + f_rc * (_TASK_PARTS["rc"][mi] * jitter[mi])


def _acquire(rng: np.random.Generator, grid: _Grid, images_c: dict[str, np.ndarray]) -> None:
    """Bias field, Rician noise and a per-case scale per modality, in place."""
    cshape = grid.coarse
    sigma = float(rng.uniform(0.025, 0.06))
    for m in MODALITIES:
        bias = np.exp(0.12 * _noise(rng, cshape, _step_mm(grid, 60.0)))
        img = images_c[m] * bias
        n1 = rng.standard_normal(cshape, dtype=np.float32)
        n2 = rng.standard_normal(cshape, dtype=np.float32)
        img = np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)
        images_c[m] = img * np.float32(_SCALE[m] * rng.lognormal(0.0, 0.3))


def _full_resolution_images(grid: _Grid, images_c: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """int16 images on the full grid, 0 outside the brain ``mask``."""
    images = {}
    for m in MODALITIES:
        full = grid.up(images_c[m])
        np.clip(full, 1.0, 32767.0, out=full)
        full += 0.5  # positive values: truncation below rounds to nearest
        full *= mask
        images[m] = full.astype(np.int16)
    return images


def _full_resolution_tissue(grid: _Grid, tissue_c: np.ndarray) -> np.ndarray:
    """The coarse tissue classes repeated onto the full grid (nearest neighbour)."""
    tissue = tissue_c
    if grid.factor == 2:
        for ax in range(3):
            tissue = np.repeat(tissue, 2, axis=ax)
        tissue = tissue[: grid.shape[0], : grid.shape[1], : grid.shape[2]]
    return tissue


def _full_resolution_label(
    grid: _Grid, mask: np.ndarray, tumours: list[_TumourShape], task: str | None = None
) -> tuple[np.ndarray, tuple]:
    """The label map on the full grid (canonical, or ``task``'s internal labels) and the box
    holding every lesion, at full resolution.

    Lesions are pasted in order; a later lesion's core overwrites only background and edema (2).
    """
    shape = grid.shape
    label = np.zeros(shape, dtype=np.uint8)
    if not tumours:
        return label, (slice(0, 0),) * 3
    boxes = []
    for tumour in tumours:
        fbox = tuple(
            slice(b.start * grid.factor, min(shape[i], (b.stop - 1) * grid.factor + 1))
            for i, b in enumerate(tumour.params.box)
        )
        lab = _lesion_label(grid, tumour, tuple(s.stop - s.start for s in fbox), task)
        lab[~mask[fbox]] = 0
        held = label[fbox]
        label[fbox] = np.where((lab > 0) & ((held == 0) | ((held == 2) & (lab != 2))), lab, held)
        boxes.append(fbox)
    union = tuple(slice(min(b[i].start for b in boxes), max(b[i].stop for b in boxes)) for i in range(3))
    return label, union


def _lesion_label(grid: _Grid, tumour: _TumourShape, fshape: tuple, task: str | None) -> np.ndarray:
    """One lesion's labels on its full-resolution box: canonical 1 NCR, 2 ED, 3 ET (GLI/MET: plus
    4 RC inside a cavity); ``ped2024``: 1 NET, 2 ED, 3 ET, 4 CC (internal labels)."""
    up = (lambda a: _upsample2(a, fshape)) if grid.factor == 2 else (lambda a: a)  # noqa: E731
    core_f, ncr_f, ed_f = up(tumour.core), up(tumour.ncr), up(tumour.edema)
    lab = np.zeros(fshape, dtype=np.uint8)
    lab[ed_f < 0] = 2
    if task == "ped2024":
        core = core_f < 0
        lab[core] = 1
        if not tumour.net_core:
            lab[core & (up(tumour.enhancing) < 0)] = 3
            lab[core & (ncr_f < 0)] = 4
    else:
        lab[core_f < 0] = 3
        lab[(ncr_f < 0) & (core_f < 0)] = 1
    if tumour.cavity is not None:
        lab[up(tumour.cavity) < 0] = 4
    return lab


def _finish(
    grid: _Grid,
    healthy: _Brain,
    tum: _Tumour | None,
    label: np.ndarray,
    fbox: tuple,
    images: dict[str, np.ndarray],
    brain: np.ndarray,
    spacing: tuple[float, float, float],
    seed: int,
    task: str | None = None,
) -> SyntheticCase:
    """The case record: volumes, centroid and tumour features measured on the full-resolution label."""
    shape, age, depth = grid.shape, healthy.age, healthy.depth
    affine = brats_affine(shape, spacing)
    vml = float(np.prod(spacing)) / 1000.0
    scheme = None if task is None else get_scheme(task)
    counts = np.bincount(label[fbox].ravel(), minlength=4 if scheme is None else scheme.n_classes)
    # the tumour lies inside its box; internal labels 1-3 are the core, edema and ET roles in every task
    vols = {"ncr": counts[1] * vml, "ed": counts[2] * vml, "et": counts[3] * vml}
    if scheme is None:
        vols["tc"] = vols["ncr"] + vols["et"]
        vols["wt"] = vols["tc"] + vols["ed"]
    else:
        for name in scheme.internal[3:]:
            vols[name.lower()] = counts[scheme.internal_value(name)] * vml
        for region in ("tc", "wt"):
            vols[region] = sum(counts[v] for v in scheme.region_internal(region.upper())) * vml
    vols["brain"] = float(np.count_nonzero(brain)) * vml
    vols = {k: float(v) for k, v in vols.items()}
    features: dict = {}
    if vols["wt"] > 0:
        idx = np.nonzero(label[fbox])
        cen = tuple(float(i.mean()) + fbox[k].start for k, i in enumerate(idx))
        cmm = tuple(float(v) for v in (affine @ np.array([*cen, 1.0]))[:3])
        ci = tuple(int(np.clip(round(cen[i] / grid.factor), 0, grid.coarse[i] - 1)) for i in range(3))
        # Template axis 0 runs right -> left (LPS voxel order).
        features = {
            "depth_mm": float(depth[ci]),
            "midline_mm": float(abs(cen[0] * TEMPLATE_SHAPE[0] / shape[0] - _CENTRE[0])),
            "hemisphere": "left" if cen[0] * TEMPLATE_SHAPE[0] / shape[0] > _CENTRE[0] else "right",
            "et_fraction": vols["et"] / vols["tc"] if vols["tc"] > 0 else 0.0,
        }
    else:
        cen = cmm = (float("nan"),) * 3
    kind = tum.kind if tum is not None else "none"
    grade = "LGG" if kind == "no_et" else ("HGG" if tum is not None else "none")
    return SyntheticCase(
        images, label, affine, brain, spacing, seed, round(age, 3), grade, kind, vols, cen, cmm, features, scheme=task
    )
