"""Data wiring: where a recipe's cases come from, their label scheme, and the tf.data pipelines it trains on."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brainseg_tf.training.config import TrainConfig
from brainseg_tf.training.split import Split


def resolve_path(value: str | None, cfg: TrainConfig) -> Path | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    if p.is_absolute() or p.exists() or cfg.source is None:
        return p
    beside = Path(cfg.source).parent / p
    return beside if beside.exists() else p


def data_source(cfg: TrainConfig) -> Path | None:
    """The cache path (preferred when it exists) or dataset root for the data builders, or ``None``."""
    cache = resolve_path(cfg.data.cache, cfg)
    if cache is not None and cache.exists():
        _check_cache_preprocessing(cache, cfg)
        return cache
    root = resolve_path(cfg.data.root, cfg)
    if root is not None and not root.exists() and cfg.data.synthetic is not None:
        from brainseg_tf.synthetic import make_dataset

        opts = dict(cfg.data.synthetic)
        if "shape" in opts:
            opts["shape"] = tuple(opts["shape"])
        print(f"[brainseg train] writing a synthetic dataset to {root} ({opts})", flush=True)
        make_dataset(root, progress=False, **opts)
    if cache is not None and cfg.data.build_cache and root is not None and root.exists():
        from brainseg_tf.data import build_cache

        print(f"[brainseg train] building the cache {cache} from {root}", flush=True)
        return Path(
            build_cache(
                open_root(root, cfg),  # in the recipe's layout, scheme and channel order
                cache,
                max_cases=cfg.data.max_cases,
                dtype=cfg.data.cache_dtype,
                progress=True,
                scheme=cfg.data.scheme,
                **recipe_preprocessing(cfg),  # e.g. the resampling a native-grid dataset needs
            )
        )
    if root is None:
        if cache is not None:
            raise FileNotFoundError(f"data.cache={cfg.data.cache!r} not found and no data.root given")
        return None
    if not root.exists():
        raise FileNotFoundError(f"data.root={cfg.data.root!r} not found (resolved to {root})")
    return root


PREPROCESS_KEYS = ("crop", "margin", "normalize", "reorient", "spacing")


def recipe_preprocessing(cfg: TrainConfig) -> dict[str, Any]:
    """The preprocessing a recipe states (``pipeline.options.preprocess``: crop, margin, normalize,
    reorient, spacing in mm): applied when its cache is built, recorded in the model card, undone
    by prediction (a resampled prediction goes back to each case's own grid)."""
    stated = cfg.pipeline.options.get("preprocess") or {}
    unknown = sorted(set(stated) - set(PREPROCESS_KEYS))
    if unknown:
        raise ValueError(f"pipeline.options.preprocess: unknown key(s) {unknown}; known: {list(PREPROCESS_KEYS)}")
    return dict(stated)


def _check_cache_preprocessing(cache: Path, cfg: TrainConfig) -> None:
    """Refuse a cache built with other preprocessing than the recipe states (its card would say otherwise)."""
    stated = recipe_preprocessing(cfg)
    if not stated:
        return
    from brainseg_tf.data import open_cache
    from brainseg_tf.data.preprocess import target_spacing

    with open_cache(cache) as c:
        built = dict(c.params)
    for key, value in stated.items():
        want = list(target_spacing(value)) if key == "spacing" and value is not None else value
        if built.get(key) != want:
            raise ValueError(
                f"{cache}: built with {key}={built.get(key)!r} but the recipe's pipeline.options.preprocess "
                f"states {key}={value!r}; delete the cache (or point data.cache elsewhere) to rebuild it"
            )


def open_root(source: Path, cfg: TrainConfig) -> Any:
    """The recipe's dataset folder as a dataset (``data.layout``, ``data.scheme``, ``data.channel_order``)."""
    from brainseg_tf.io import open_dataset

    return open_dataset(source, layout=cfg.data.layout, scheme=cfg.data.scheme, channel_order=cfg.data.channel_order)


def labelled_ids(source: Path | None, cfg: TrainConfig) -> list[str]:
    if source is None:
        return []
    from brainseg_tf.data.cache import is_cache_path

    if is_cache_path(source):
        from brainseg_tf.data import open_cache

        with open_cache(source) as cache:
            cache.check_scheme(cfg.data.scheme, "data.scheme")
            ids = [cid for cid in cache if cache.has_label(cid)]
            for cid in ids if cfg.data.modalities else ():  # as for a folder below
                cache.require_modalities(cid, cfg.data.modalities, "the recipe's data.modalities")
    else:
        from brainseg_tf.io import require_modalities

        ds = open_root(source, cfg)
        ids = list(ds.labelled_ids)
        if cfg.data.modalities:  # a case without one of them would train on a zero channel
            for cid in ids:
                require_modalities(ds.ref(cid), cfg.data.modalities, "the recipe's data.modalities")
    ids = sorted(ids)
    if cfg.data.max_cases is not None:
        ids = ids[: cfg.data.max_cases]
    return ids


def data_scheme(cfg: TrainConfig, source: Path | None) -> str:
    """The label scheme of a recipe's training data: ``data.scheme`` where stated (a cache built in
    another is refused), else the cache's recorded one, else the one scheme every labelled case of
    the dataset folder is in (up to ``data.max_cases``); ``brats2021`` without data.

    Raises:
        CacheError: the cache was built in another scheme than ``data.scheme`` (names both and the file).
        ValueError: labelled cases of different schemes (two of them named with their schemes).
    """
    if source is None:
        return cfg.scheme.name
    from brainseg_tf.data.cache import common_scheme, is_cache_path

    if is_cache_path(source):
        from brainseg_tf.data import open_cache

        with open_cache(source, check_sources=False) as cache:
            cache.check_scheme(cfg.data.scheme, "data.scheme")
            return cache.scheme
    ds = open_root(source, cfg)
    ids = sorted(ds.labelled_ids)
    if cfg.data.max_cases is not None:
        ids = ids[: cfg.data.max_cases]
    return common_scheme([ds.ref(c) for c in ids], cfg.data.scheme, source).name


def with_data_scheme(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its label scheme settled from the data (:func:`data_scheme`) and checked again
    against it (head channels, region): ``data.scheme`` stays as stated; where it is ``None`` the
    data's scheme is kept in :attr:`TrainConfig.detected_scheme` (not part of the recipe)."""
    no_cases = cfg.pipeline.kind == "custom" and cfg.data.root is None and cfg.data.cache is None
    name = cfg.scheme.name if no_cases else data_scheme(cfg, data_source(cfg))
    if cfg.data.scheme is not None:
        return cfg
    out = dataclasses.replace(cfg, detected_scheme=name)
    out.validate()
    return out


def _load_builder(spec: str, cfg: TrainConfig) -> Callable:
    module_part, func = spec.rsplit(":", 1)
    if module_part.endswith(".py"):
        path = resolve_path(module_part, cfg)
        if path is None or not path.exists():
            raise FileNotFoundError(f"pipeline.builder file {module_part!r} not found")
        name = f"_brainseg_builder_{path.stem}"
        module = sys.modules.get(name)
        if module is None:
            spec_obj = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[name] = module
            spec_obj.loader.exec_module(module)
    else:
        module = importlib.import_module(module_part)
    try:
        return getattr(module, func)
    except AttributeError:
        raise ValueError(f"pipeline.builder={spec!r}: {module_part} has no attribute {func!r}") from None


def _region_map(cfg: TrainConfig):
    """``(image, labels) -> (image, region mask (..., 1))`` for a single-region model (the region's
    internal labels in the recipe's scheme)."""
    import tensorflow as tf

    classes = cfg.scheme.region_internal(cfg.pipeline.region.upper())

    def to_region(x, y):
        y = tf.cast(y, tf.int32)
        if y.shape.rank == len(cfg.pipeline.patch_size) + 2:
            y = y[..., 0]
        mask = tf.reduce_any(tf.stack([tf.equal(y, c) for c in classes], axis=-1), axis=-1)
        return x, tf.cast(mask, tf.float32)[..., None]

    return to_region


def _deep_supervision_map(n_outputs: int, spatial_dims: int):
    import tensorflow as tf

    def targets(x, y):
        outs = [y]
        for i in range(1, n_outputs):
            s = 2**i
            idx = (slice(None),) + (slice(None, None, s),) * spatial_dims
            outs.append(y[idx])
        return x, tuple(outs)

    del tf
    return targets


def build_datasets(
    cfg: TrainConfig, split: Split, *, seed: int, global_batch: int, validation: bool = True
) -> tuple[Any, Any]:
    """``(train, validation_or_None)`` tf.data datasets of ``(image, labels)`` global batches.

    ``pipeline.kind="patch"``: :func:`brainseg_tf.data.patch_dataset` (3D patches, foreground
    oversampling, augmentation); ``"slice"``: :func:`brainseg_tf.data.slice_dataset` (2D slices
    resized to ``patch_size``); ``"custom"``: the recipe's builder. Targets are uint8 internal
    labels of the recipe's scheme (``data.scheme``; canonical for the glioma schemes); the losses
    and metrics derive one-hot classes or the scheme's regions from them.
    Validation: a fixed set of ``validation.patches_per_case`` un-augmented patches per case,
    cached in memory (``mode="patches"``; all the selected slices for slice pipelines); none for
    ``mode="volumes"`` (:class:`brainseg_tf.training.validation.VolumeValidation` predicts the
    whole cases outside ``fit``).
    ``validation=False`` skips building the validation set (``None``; a custom builder's is
    dropped).
    """
    p, v = cfg.pipeline, cfg.validation
    if p.kind == "custom":
        fn = _load_builder(p.builder, cfg)
        train_ds, val_ds = fn(cfg, split, seed=seed, global_batch=global_batch)
        return train_ds, (None if v.mode == "none" or not validation else val_ds)
    from brainseg_tf import data

    source: Any = data_source(cfg)
    if source is None:
        raise ValueError(f"data.root or data.cache is required for pipeline.kind={p.kind!r}")
    from brainseg_tf.data.cache import is_cache_path
    from brainseg_tf.io.archive import is_tar_path

    options = dict(p.options)
    if is_cache_path(Path(source)):  # built with the recipe's preprocessing (data_source checks it)
        options.pop("preprocess", None)
    elif Path(source).is_dir() or is_tar_path(source):  # read once, in the recipe's layout, scheme and channel order
        source = open_root(Path(source), cfg)
    common: dict[str, Any] = dict(modalities=list(cfg.data.modalities), target="labels", scheme=cfg.data.scheme)
    augment = _augment_config(p.augment)
    if p.kind == "patch":
        train_ds = data.patch_dataset(
            source,
            patch_size=tuple(p.patch_size),
            global_batch_size=global_batch,
            case_ids=split.train_ids,
            foreground_fraction=p.foreground_fraction,
            augment=augment,
            seed=seed,
            repeat=True,
            **common,
            **options,
        )
    else:
        train_ds = data.slice_dataset(
            source,
            size=tuple(p.patch_size),
            global_batch_size=global_batch,
            case_ids=split.train_ids,
            augment=augment,
            seed=seed,
            repeat=True,
            **common,
            **options,
        )
    val_ids = split.val_ids[: v.max_cases] if v.max_cases else split.val_ids
    if not val_ids or v.mode == "none" or not validation:
        return train_ds, None
    if v.mode == "volumes":  # whole cases through the predict path (training.validation), not fit
        return train_ds, None
    if p.kind == "patch":
        val_ds = data.patch_dataset(
            source,
            patch_size=tuple(p.patch_size),
            global_batch_size=1,
            case_ids=val_ids,
            foreground_fraction=v.foreground_fraction,
            patches_per_case=v.patches_per_case,
            augment=None,
            seed=cfg.training.seed + 7919,
            repeat=False,
            **common,
            **{k: val for k, val in options.items() if k in ("preprocess",)},
        )
    else:
        val_ds = data.slice_dataset(
            source,
            size=tuple(p.patch_size),
            global_batch_size=1,
            case_ids=val_ids,
            augment=None,
            shuffle=False,
            repeat=False,
            **common,
            **{k: val for k, val in options.items() if k in ("plane", "slices", "crop", "preprocess")},
        )
    n = v.patches_per_case * len(val_ids)
    val_ds = val_ds.unbatch().take(n).batch(global_batch)
    nbytes = n * math.prod(p.patch_size) * (4 * len(cfg.data.modalities) + 1)
    # Read once, then the same patches every epoch from memory (when they fit comfortably).
    return train_ds, (val_ds.cache() if nbytes <= 2 * 1024**3 else val_ds)


def epoch_seed(seed: int, epoch: int) -> int:
    """Data seed of epoch ``epoch``'s training stream (``training.seed`` for epoch 0)."""
    return int(seed) + 1009 * int(epoch)


def skip_batches(ds: Any, n: int) -> Any:
    """``ds`` without its first ``n`` batches (they are still read, not trained on)."""
    return ds.skip(n) if n else ds


def train_stream(cfg: TrainConfig, split: Split, *, epoch: int, step: int, global_batch: int) -> Any:
    """Epoch ``epoch``'s training batches from step ``step`` on: the recipe's stream seeded with
    :func:`epoch_seed`, its first ``step`` batches skipped. The stream is a function of
    ``(training.seed, epoch)`` only (every built-in pipeline draws element ``i`` from
    ``(seed, i)``), so a run resumed at ``(epoch, step)`` sees exactly the batches the
    uninterrupted run saw there; a custom builder must be as deterministic for that to hold."""
    ds, _ = build_datasets(
        cfg, split, seed=epoch_seed(cfg.training.seed, epoch), global_batch=global_batch, validation=False
    )
    return skip_batches(ds, step)


def _augment_config(augment: Any) -> Any:
    """``pipeline.augment`` → what the data builders take: ``None``, ``True``, ``"light"`` or an
    :class:`~brainseg_tf.data.augment.AugmentConfig` built from a dict of its fields."""
    if augment is None or augment is False or augment == "none":
        return None
    if augment is True or augment == "default":
        return True
    if augment == "light":
        return "light"
    from brainseg_tf.data.augment import AugmentConfig

    try:
        return AugmentConfig.from_dict(dict(augment))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pipeline.augment: {exc}") from None


def finish_dataset(ds: Any, cfg: TrainConfig, n_outputs: int, shard: bool) -> Any:
    import tensorflow as tf

    if ds is None:
        return None
    if cfg.out_channels == 1:
        ds = ds.map(_region_map(cfg), num_parallel_calls=tf.data.AUTOTUNE)
    if n_outputs > 1:
        ds = ds.map(_deep_supervision_map(n_outputs, cfg.spatial_dims), num_parallel_calls=tf.data.AUTOTUNE)
    if shard:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)
