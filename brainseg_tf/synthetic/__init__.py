"""Synthetic BraTS-like multimodal MRI cases with glioma labels, written in any dataset layout.

Nobody can redistribute BraTS, so the demo, notebooks and tests run on cases made here; the same
code then runs unchanged on real data. A case is built in template millimetres (a 240 x 240 x 155
BraTS grid, scaled to fill whatever grid is asked for):

* anatomy: a skull-stripped brain (cerebrum, cerebellum, brainstem) whose outline is a deformed
  ellipsoid union, a folded cortical grey-matter ribbon around sulcal CSF sheets (zero sets of a
  band-limited random field) and an interhemispheric fissure, white matter inside, deep grey
  nuclei and two curved lateral ventricles; sulci and ventricles widen with age (atrophy);
* tumour: an irregular core (noise-perturbed, randomly rotated ellipsoid) split into a necrotic
  centre and an enhancing rim of varying thickness, surrounded by edema that spreads preferentially
  along white matter and stays out of CSF; the anatomy around it is pushed outwards (mass effect).
  About 15 % of cases have no enhancing tumour (LGG-like) and about 15 % no necrosis;
* intensities: per tissue and modality with the contrast ordering of real BraTS scans (measured on
  the shared real cases, see ``docs/synthetic.md``), partial volume, tumour texture, a smooth
  multiplicative bias field per modality, Rician noise, a per-case scale per modality; background
  exactly 0 outside the brain; int16 images, uint8 canonical labels (0 BG, 1 NCR, 2 ED, 3 ET).
* BraTS 2024/2025 tasks (``task=``, layouts ``gli2024``, ``met2024``, ``ped2024``): a resection
  cavity (4 RC) for post-treatment GLI and MET, 2-4 small metastases for MET, PED's cyst (CC),
  non-enhancing tumour (NET), ET and ED; labels in the task's scheme (:mod:`brainseg_tf.schemes`).
* MEN-RT (layout ``men_rt``, :func:`as_men_rt`): T1c alone and a GTV mask (the tumour core) in
  MEN-RT's file naming, on an anisotropic grid (:data:`LAYOUT_GRIDS`).

Geometry is computed on a half-resolution grid for large volumes and upsampled linearly, which
also provides partial-volume blurring; a full 240 x 240 x 155 case takes about a second.

Example::

    case = synthesize_case(0)                         # SyntheticCase, images int16 (240, 240, 155)
    make_dataset("data/synth", layout="brats2021", n_cases=8, seed=0)
    make_dataset("data/ped", layout="ped2024", n_cases=4, shape=(96, 96, 64))  # BraTS-PED-*, 1 ET, 2 NET, 3 CC, 4 ED
    make_dataset("data/menrt", layout="men_rt", n_cases=4, shape=(64, 64, 40), spacing=(0.9, 0.9, 2.0))  # _t1c, _gtv
"""

from brainseg_tf.conventions import MODALITIES
from brainseg_tf.synthetic.dataset import (
    LAYOUT_GRIDS,
    SURVIVAL_COLUMNS,
    SYNTH_LAYOUTS,
    TASK_LAYOUTS,
    case_seed,
    ensure_dataset,
    has_resection,
    make_dataset,
    survival_record,
)
from brainseg_tf.synthetic.phantom import (
    TASKS,
    TEMPLATE_SHAPE,
    TISSUE_CLASSES,
    SyntheticCase,
    as_men_rt,
    brats_affine,
    check_case_arguments,
    synthesize_case,
)

__all__ = [
    "LAYOUT_GRIDS",
    "MODALITIES",
    "SURVIVAL_COLUMNS",
    "SYNTH_LAYOUTS",
    "TASKS",
    "TASK_LAYOUTS",
    "TEMPLATE_SHAPE",
    "TISSUE_CLASSES",
    "SyntheticCase",
    "as_men_rt",
    "brats_affine",
    "case_seed",
    "check_case_arguments",
    "ensure_dataset",
    "has_resection",
    "make_dataset",
    "survival_record",
    "synthesize_case",
]
