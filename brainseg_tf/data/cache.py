"""HDF5 cache of preprocessed cases for fast random patch reads.

``build_cache(src, "cache.h5")`` reads every case of a dataset folder once, runs
:func:`~brainseg_tf.data.preprocess.preprocess_case` (crop to the brain box, z-score, optional
reorientation/resampling) and stores, per case, under ``/cases/<case_id>/``:

- ``image``: ``(X', Y', Z', 4)`` float32 (or float16), channels ``(flair, t1, t1ce, t2)``;
- ``label``: ``(X', Y', Z')`` uint8 internal labels of the cache's label scheme (absent for
  unlabelled cases): the canonical 0 BG, 1 NCR, 2 ED, 3 ET for the glioma schemes;
- ``locations``: ``(N, 3)`` int32 voxel coordinates of every tumour label 1 .. n_classes - 1
  (subsampled, at most ``max_locations`` per label), concatenated in label order; attribute
  ``location_counts`` gives N per label;
- attributes ``geometry`` (JSON, see :class:`~brainseg_tf.data.preprocess.Geometry`),
  ``provenance`` (JSON: each source file's role, path, size, mtime and content fingerprint),
  ``fingerprint`` (of the whole case: its files' fingerprints by role), ``stats`` (z-score
  mean/std), ``brain_box`` (brain bounding box inside the stored array) and ``complete``
  (written last).

The file's root attributes hold the format version, the preprocessing parameters, the source
folder, the planned case list, ``scheme`` (the label scheme every case was read in,
:mod:`brainseg_tf.schemes`; a cache written before schemes existed has none and reads as
``"brats2021"``) and ``complete`` (set only when every case is written). Every case of a cache
shares one scheme; a cache is refused where another scheme is asked for (:meth:`Cache.check_scheme`).

**Layout for reads.** Arrays are stored *contiguous and uncompressed* by default
(``chunks=None``): :class:`Cache` then reads no data through h5py at all. It looks up each
dataset's byte offset once and maps the file read-only (``mmap``); patch reads are NumPy slices
of the mapping, thread-safe, lock-free and releasing the GIL, so a parallel ``tf.data`` map
scales over cores (h5py serialises all threads behind one lock) and no h5py object stays alive
in a pipeline (the exit hang seen with h5py inside ``tf.data``). The OS page cache keeps hot
cases in RAM; a dataset larger than RAM still works, read from disk. ``chunks=(64, 64, 64)``
builds a chunked file instead (read through h5py under a lock, slower; kept for tools that want
chunking). Compression is deliberately not offered: it slows patch reads (figures in docs/data.md).

**Content fingerprints** (:func:`file_fingerprint`): BLAKE2b of the file size and its bytes --
all of them for files up to 1 MiB and for every uncompressed ``.nii`` (which has no checksum of
its own); for a larger ``.nii.gz`` the first and last 64 KiB plus 16 evenly spaced 4 KiB blocks.
The last bytes of a gzip file are the CRC-32 and length of the whole uncompressed content, so
any voxel change of a (single-member, as nibabel and gzip write) ``.nii.gz`` changes the
fingerprint; mtimes are recorded but not trusted (a copy or ``touch`` changes them, ``cp -p``
keeps them over new content). Reading ~200 KiB per file keeps checks cheap at every open.

**Resumable, crash-safe and never silently stale.** The final file is only ever a complete
cache: a build writes ``.<name>.partial`` beside it (found again by the next build, which
resumes it; HDF5's file lock keeps a second builder out) and renames it over the final name
when every case is in. Building again with the same parameters skips cases whose sources
have the same fingerprints (whatever folder they now live in: a different source folder with
the same ids and sizes but other content is rebuilt) and rewrites the others; different
parameters raise unless ``overwrite=True``. :func:`open_cache` raises
:class:`IncompleteCacheError` for an unfinished build and :class:`StaleCacheError` when a
source file's content changed, or the format version differs.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from brainseg_tf import atomic
from brainseg_tf.arrays import clip_box
from brainseg_tf.checks import check_int
from brainseg_tf.data.preprocess import (
    Box,
    Geometry,
    PreprocessedCase,
    brain_bbox,
    class_locations,
    preprocess_case,
    target_spacing,
)
from brainseg_tf.io import MODALITIES, Dataset, open_dataset, read_header
from brainseg_tf.io.errors import DataError, refuse_missing_modalities
from brainseg_tf.io.nifti import is_nifti_name
from brainseg_tf.progress import progress as show_progress
from brainseg_tf.schemes import DEFAULT_SCHEME, LabelScheme, get_scheme

FORMAT_VERSION = 2  # 2: content fingerprints in the provenance
#: The scheme of a cache that records none (built before label schemes existed).
_DTYPES = ("float32", "float16")
FULL_HASH_BYTES = 1 << 20
_EDGE_BYTES = 64 << 10
_SAMPLE_BYTES = 4 << 10
_SAMPLES = 16


class CacheError(DataError):
    """A cache file that cannot be used as it is (the message names the file and the fix)."""


class IncompleteCacheError(CacheError):
    """The cache build did not finish; run ``build_cache`` again to resume."""


class StaleCacheError(CacheError):
    """The cache no longer matches its sources (files changed) or this library's format."""


def location_classes(scheme: str | LabelScheme) -> tuple[int, ...]:
    """The internal labels whose voxels are indexed for foreground sampling: every non-zero one."""
    return tuple(range(1, get_scheme(scheme).n_classes))


def common_scheme(refs: Sequence[Any], stated: str | LabelScheme | None = None, where: Any = "") -> LabelScheme:
    """The one label scheme of a set of cases (a reference without one counts as the default).

    Args:
        refs: :class:`~brainseg_tf.io.CaseRef` objects (``case_id``, ``scheme``).
        stated: the scheme the caller asks for; every case must then be in it.
        where: the dataset, for messages.

    Raises:
        ValueError: two cases in different schemes (both named with their schemes), or a case
            whose scheme is not the stated one.
    """
    first: tuple[str, str] | None = None
    want = None if stated is None else get_scheme(stated).name
    for ref in refs:
        name = get_scheme(ref.scheme or DEFAULT_SCHEME).name
        if want is not None and name != want:
            raise ValueError(
                f"{where}: case {ref.case_id!r} is in the {name!r} label scheme, not the stated {want!r}; "
                f"open the dataset with scheme={want!r} to read every case in it"
            )
        if first is None:
            first = (ref.case_id, name)
        elif name != first[1]:
            raise ValueError(
                f"{where}: cases of one training set must share one label scheme: case {first[0]!r} is "
                f"{first[1]!r}, case {ref.case_id!r} is {name!r}; select cases of one scheme or state it "
                f"(data.scheme / --scheme) to read every case in it"
            )
    return get_scheme(want or (first[1] if first else DEFAULT_SCHEME))


def file_fingerprint(path: str | Path) -> str:
    """Content fingerprint of a source file (see the module docstring for what is hashed)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as fh:
        if size <= FULL_HASH_BYTES or not path.name.lower().endswith(".gz"):
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
            return digest.hexdigest()
        step = (size - 2 * _EDGE_BYTES) // (_SAMPLES + 1)
        offsets = [(0, _EDGE_BYTES)] + [(_EDGE_BYTES + k * step, _SAMPLE_BYTES) for k in range(1, _SAMPLES + 1)]
        for offset, length in offsets + [(size - _EDGE_BYTES, _EDGE_BYTES)]:
            fh.seek(offset)
            digest.update(fh.read(length))
    return digest.hexdigest()


def _file_record(role: str, path: Path) -> dict[str, Any]:
    st = path.stat()
    return {
        "role": role,
        "path": os.path.abspath(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "fingerprint": file_fingerprint(path),
    }


def _source_files(ref: Any) -> list[tuple[str, Path]]:
    files = [(role, Path(p)) for role, p in ref.images.items()]
    if ref.label is not None:
        files.append(("label", Path(ref.label)))
    return files


def _case_fingerprint(records: Sequence[dict[str, Any]]) -> str:
    text = json.dumps(sorted((r["role"], r["fingerprint"]) for r in records))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _stale_files(provenance: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(changed, missing) source files of a case's provenance record, by content fingerprint."""
    changed, missing = [], []
    for rec in provenance["files"]:
        try:
            now = file_fingerprint(rec["path"])
        except FileNotFoundError:
            missing.append(rec["path"])
            continue
        if now != rec.get("fingerprint"):
            changed.append(rec["path"])
    return changed, missing


def _params(
    crop: bool, margin: int, normalize: bool, reorient: bool, spacing: Any, dtype: str, max_locations: int, chunks: Any
) -> dict[str, Any]:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {_DTYPES}")
    check_int("margin", margin, 0)
    check_int("max_locations", max_locations)
    if spacing is not None:
        spacing = list(target_spacing(spacing))  # type: ignore[arg-type]
    if chunks is not None:
        chunks = [int(c) for c in chunks]
        if len(chunks) != 3 or min(chunks) < 1:
            raise ValueError(f"chunks={chunks!r} must be None or three positive ints (X, Y, Z)")
    return {
        "crop": bool(crop),
        "margin": int(margin),
        "normalize": bool(normalize),
        "reorient": bool(reorient),
        "spacing": spacing,
        "dtype": dtype,
        "max_locations": int(max_locations),
        "chunks": chunks,
    }


def build_cache(
    src: str | Path | Dataset,
    out_h5: str | Path,
    *,
    case_ids: Sequence[str] | None = None,
    max_cases: int | None = None,
    crop: bool = True,
    margin: int = 0,
    normalize: bool = True,
    reorient: bool = False,
    spacing: float | Sequence[float] | None = None,
    dtype: str = "float32",
    max_locations: int = 10000,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    scheme: str | None = None,
) -> Path:
    """Preprocess a dataset folder into an HDF5 cache (resumable).

    Args:
        src: dataset folder (any layout :func:`brainseg_tf.io.open_dataset` reads) or a ``Dataset``.
        out_h5: cache file to write (``.h5``); its folder is created.
        case_ids: only these cases (default: all).
        max_cases: only the first N cases (after ``case_ids``), for quick runs.
        crop, margin, normalize, reorient, spacing: passed to ``preprocess_case``.
        dtype: ``"float32"`` or ``"float16"`` image storage (half the IO; z-scores keep ~3
            significant digits).
        max_locations: tumour voxel coordinates kept per class for foreground sampling.
        chunks: ``None`` (contiguous, memory-mapped reads; recommended) or a chunk shape.
        overwrite: rebuild every case instead of reusing those already cached (the existing
            file is replaced only once the new one is complete).
        progress: show progress (a bar in a terminal, periodic lines elsewhere).
        scheme: read every case in this label scheme (default: each case's own, detected from its
            id; the selected cases must then share one). Recorded in the file.

    Returns:
        The path of the complete cache (written under its final name only when complete).

    Raises:
        ValueError: bad parameters, unknown case ids, an empty selection, cases of different
            label schemes, or an existing cache built with other parameters or another scheme
            (pass ``overwrite=True``).
        CacheError: an existing file that is not a readable cache (delete it or ``overwrite``),
            or another process building the same cache.
        DataError: a source case that cannot be read (names the file).
    """
    params = _params(crop, margin, normalize, reorient, spacing, dtype, max_locations, chunks)
    check_int("max_cases", max_cases, allow_none=True)
    ds = src if isinstance(src, Dataset) else open_dataset(src, scheme=scheme)
    refs = _select_refs(ds, src, case_ids, max_cases)
    name = common_scheme(refs, scheme, ds.root).name
    out = Path(out_h5)
    work = partial_path(out)
    current = {r.case_id: [_file_record(role, p) for role, p in _source_files(r)] for r in refs}
    if _prepare_work(out, work, params, current, overwrite, name):
        return out
    with _open_work(work, params, name) as f:
        _record_build(f, ds, list(current), params, name)
        cases = f.require_group("cases")
        todo = [r for r in refs if r.case_id not in cases]
        it: Iterable = todo
        if progress:
            it = show_progress(todo, desc="preprocess")
        for ref in it:
            case = ds[ref.case_id]  # in the dataset's own reading (convention, channel order)
            pre = preprocess_case(
                case, crop=crop, margin=margin, normalize=normalize, reorient=reorient, spacing=params["spacing"]
            )
            _write_case(cases, pre, current[ref.case_id], params, name)
            f.flush()
        f.attrs["complete"] = True
        f.attrs["completed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _publish(work, out)
    return out


def _select_refs(ds: Dataset, src: Any, case_ids: Sequence[str] | None, max_cases: int | None) -> list:
    """The selected cases' references, their headers checked (sizes, types, voxel cap) before
    anything is written; ``ValueError`` for unknown ids or an empty selection."""
    refs = list(ds.refs)
    if case_ids is not None:
        unknown = [c for c in case_ids if c not in ds]
        if unknown:
            raise ValueError(f"case_ids has ids not in {ds.root}: {unknown[:5]}")
        refs = [ds.ref(c) for c in case_ids]
    if max_cases is not None:
        refs = refs[:max_cases]
    if not refs:
        raise ValueError(f"src={str(src)!r}: no cases selected")
    for ref in refs:
        files = [path for _, path in _source_files(ref) if is_nifti_name(path)]
        for path in files:
            read_header(path)
        if not files:  # another format (the Kaggle slice set's HDF5): the dataset reads its grid
            ds.grid(ref.case_id)
    return refs


def _prepare_work(
    out: Path, work: Path, params: dict[str, Any], current: dict[str, list], overwrite: bool, scheme: str
) -> bool:
    """Set up the partial file ``work`` for a build of ``out``; True when ``out`` is already current.

    An existing complete cache built with the same parameters is resumed from (copied to
    ``work``; it stays valid meanwhile); a damaged leftover ``work`` is discarded with a warning.
    """
    if overwrite:
        work.unlink(missing_ok=True)
    elif out.exists():
        _check_existing(out, params, scheme)
        if not work.exists():
            if _is_current(out, current):
                return True
            with atomic.atomic_path(work) as tmp:
                shutil.copyfile(out, tmp)
    try:
        with _open_work(work, params, scheme) as f:
            _reusable_cases(f, current)
    except CacheError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError) as exc:  # h5py errors of a damaged leftover
        warnings.warn(
            f"{work}: leftover of an interrupted build is damaged ({type(exc).__name__}: {exc}); "
            f"building again from the start",
            stacklevel=3,
        )
        work.unlink(missing_ok=True)
    return False


def _publish(work: Path, out: Path) -> None:
    """Rename the finished build over ``out`` after fsyncing it (the commit step of an atomic write;
    renaming through :func:`brainseg_tf.atomic.atomic_path` would need a second temporary name, and
    a kill between the two renames would orphan the whole build)."""
    with open(work, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(work, out)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def partial_path(out: str | Path) -> Path:
    """Where :func:`build_cache` builds ``out`` until it is complete (found again to resume)."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def _open_h5(path: Path, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        if isinstance(exc, BlockingIOError) or "unable to lock file" in str(exc).lower():
            raise CacheError(
                path, f"{path}: another process is building this cache (HDF5 file lock: {exc}); wait for it to finish"
            ) from exc
        raise


def _check_existing(out: Path, params: dict[str, Any], scheme: str) -> None:
    """Refuse to resume a finished cache that is unreadable or was built differently."""
    try:
        f = _open_h5(out, "r")
    except OSError as exc:
        raise CacheError(
            out, f"{out}: exists but is not a readable HDF5 cache ({exc}); delete it or pass overwrite=True"
        ) from exc
    with f:
        if "format_version" not in f.attrs:
            raise CacheError(out, f"{out}: exists but is not a brainseg_tf cache; delete it or pass overwrite=True")
        if int(f.attrs["format_version"]) != FORMAT_VERSION:
            raise ValueError(
                f"{out}: format version {int(f.attrs['format_version'])} != {FORMAT_VERSION}; "
                f"pass overwrite=True to rebuild"
            )
        old = json.loads(f.attrs["params"])
        if old != params:
            raise ValueError(
                f"{out} was built with other parameters {old}, asked for {params}; pass overwrite=True to rebuild"
            )
        built = _scheme_attr(f.attrs)
        if built != scheme:
            raise ValueError(
                f"{out} was built for the label scheme {built!r}, asked for {scheme!r}; pass overwrite=True to rebuild"
            )


def _scheme_attr(attrs: Any) -> str:
    """The scheme a cache file records (:data:`DEFAULT_SCHEME` for files written before schemes)."""
    return get_scheme(str(attrs.get("scheme", DEFAULT_SCHEME))).name


def _same_sources(recorded: Sequence[dict[str, Any]], current: Sequence[dict[str, Any]]) -> bool:
    """Same files by role, place, size and content (mtimes are not trusted either way)."""

    def key(records):
        return sorted((r["role"], r["path"], r["size"], r["fingerprint"]) for r in records)

    return key(recorded) == key(current)


def _is_current(out: Path, current: dict[str, list[dict[str, Any]]]) -> bool:
    """True when the finished cache holds exactly these cases, built from these very sources."""
    with _open_h5(out, "r") as f:
        if not bool(f.attrs.get("complete", False)) or json.loads(f.attrs["case_ids"]) != list(current):
            return False
        cases = f.get("cases")
        for cid, records in current.items():
            g = cases.get(cid) if cases is not None else None
            if g is None or not g.attrs.get("complete", False):
                return False
            if not _same_sources(json.loads(g.attrs["provenance"])["files"], records):
                return False
    return True


def _open_work(work: Path, params: dict[str, Any], scheme: str) -> h5py.File:
    """The partial build file: resumed when it matches ``params``, else started afresh."""
    if work.exists():
        try:
            f = _open_h5(work, "a")
        except CacheError:
            raise
        except OSError as exc:  # a kill can leave it half-written
            warnings.warn(f"{work}: unreadable leftover of an interrupted build ({exc}); starting again", stacklevel=3)
        else:
            if (
                f.attrs.get("format_version") == FORMAT_VERSION
                and "params" in f.attrs
                and json.loads(f.attrs["params"]) == params
                and _scheme_attr(f.attrs) == scheme
            ):
                return f
            f.close()
        work.unlink()
    work.parent.mkdir(parents=True, exist_ok=True)
    return _open_h5(work, "w")


def _reusable_cases(f: h5py.File, current: dict[str, list[dict[str, Any]]]) -> None:
    """Keep the complete cases whose sources have the same content; delete the others."""
    cases = f.require_group("cases")
    for cid in list(cases.keys()):
        g = cases[cid]
        records = current.get(cid)
        if (
            records is not None
            and g.attrs.get("complete", False)
            and g.attrs.get("fingerprint") == _case_fingerprint(records)
        ):
            if not _same_sources(json.loads(g.attrs["provenance"])["files"], records):
                g.attrs["provenance"] = json.dumps({"files": records})  # same content, moved or copied
        else:
            del cases[cid]
    f.flush()


def _record_build(f: h5py.File, ds: Dataset, planned: list[str], params: dict[str, Any], scheme: str) -> None:
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["params"] = json.dumps(params)
    f.attrs["scheme"] = scheme
    f.attrs["complete"] = False
    f.attrs["source"] = os.path.abspath(ds.root)
    f.attrs["layout"] = ds.layout
    f.attrs["case_ids"] = json.dumps(planned)
    try:
        from brainseg_tf import __version__ as lib_version
    except ImportError:
        lib_version = "unknown"
    f.attrs["library_version"] = str(lib_version)


def _write_case(
    cases: h5py.Group, pre: PreprocessedCase, records: list[dict[str, Any]], params: dict[str, Any], scheme: str
) -> None:
    g = cases.create_group(pre.case_id)
    kw: dict[str, Any] = {}
    if params["chunks"] is not None:
        kw["chunks"] = tuple(min(c, s) for c, s in zip(params["chunks"], pre.image.shape[:3]))
    g.create_dataset(
        "image",
        data=pre.image.astype(params["dtype"]),
        **({"chunks": kw["chunks"] + (pre.image.shape[3],)} if kw else {}),
    )
    if pre.label is not None:
        g.create_dataset("label", data=pre.label, **kw)
    classes = location_classes(scheme)
    locs = class_locations(pre.label, classes, params["max_locations"], seed=0)
    counts = [len(locs.get(c, ())) for c in classes]
    arr = np.concatenate([locs[c] for c in classes if c in locs], 0) if locs else np.zeros((0, 3), np.int32)
    g.create_dataset("locations", data=arr.astype(np.int32))
    g.attrs["location_counts"] = counts
    g.attrs["geometry"] = pre.geometry.to_json()
    g.attrs["provenance"] = json.dumps({"files": records})
    g.attrs["fingerprint"] = _case_fingerprint(records)
    g.attrs["stats"] = json.dumps(pre.stats)
    g.attrs["brain_box"] = json.dumps(brain_bbox(pre.brain_mask))
    g.attrs["has_label"] = pre.label is not None
    g.attrs["complete"] = True


class _CaseEntry:
    __slots__ = ("case_id", "geometry", "brain_box", "stats", "image", "label", "locations", "counts", "provenance")


class Cache:
    """A complete, up-to-date cache opened for reading (see :func:`open_cache`).

    Arrays are read-only NumPy views of a memory mapping of the file (contiguous caches) or read
    through h5py under a process-wide lock (chunked caches). Thread-safe; pickles by path.

    Attributes:
        path: the file.
        case_ids: cases in build order.
        params: preprocessing parameters used to build it.
        source: the dataset folder it was built from.
        scheme: name of the label scheme its labels are in (``"brats2021"`` for a cache that
            records none).
    """

    def __init__(self, path: str | Path, *, check_sources: bool = True):
        self.path = Path(path)
        self._check_sources = check_sources
        self._h5: h5py.File | None = None
        self._lock = threading.Lock()
        self._mm: mmap.mmap | None = None
        self._entries: dict[str, _CaseEntry] = {}
        self._load_index()

    # -- opening --------------------------------------------------------------------------------
    def _load_index(self) -> None:
        path = self.path
        if not path.is_file():
            if partial_path(path).is_file():
                raise IncompleteCacheError(
                    path,
                    f"{path}: not built yet; an interrupted build is in "
                    f"{partial_path(path)}: run build_cache (or `brainseg preprocess`) "
                    f"again to resume it",
                )
            raise CacheError(path, f"{path}: cache not found; build it with `brainseg preprocess SRC --out {path}`")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise CacheError(path, f"{path}: not a readable HDF5 cache ({exc}); rebuild it") from exc
        with f:
            attrs = f.attrs
            if "format_version" not in attrs:
                raise CacheError(path, f"{path}: not a brainseg_tf cache (no format_version attribute)")
            if int(attrs["format_version"]) != FORMAT_VERSION:
                raise StaleCacheError(
                    path,
                    f"{path}: cache format version {int(attrs['format_version'])}, this "
                    f"library reads {FORMAT_VERSION}; rebuild with overwrite=True",
                )
            self.params = json.loads(attrs["params"])
            self.source = str(attrs.get("source", ""))
            self.layout = str(attrs.get("layout", ""))
            self.scheme = _scheme_attr(attrs)
            planned = json.loads(attrs["case_ids"])
            cases = f.get("cases")
            done = [c for c in planned if cases is not None and c in cases and cases[c].attrs.get("complete", False)]
            if not bool(attrs.get("complete", False)) or len(done) != len(planned):
                raise IncompleteCacheError(
                    path,
                    f"{path}: incomplete cache ({len(done)}/{len(planned)} cases written); run build_cache "
                    f"(or `brainseg preprocess`) again to resume it",
                )
            self.case_ids = list(planned)
            stale, missing = [], []
            contiguous = True
            for cid in planned:
                g = cases[cid]
                e = _CaseEntry()
                e.case_id = cid
                e.geometry = Geometry.from_dict(g.attrs["geometry"])
                e.brain_box = tuple(tuple(b) for b in json.loads(g.attrs["brain_box"]))
                e.stats = json.loads(g.attrs["stats"])
                e.provenance = json.loads(g.attrs["provenance"])
                e.counts = [int(c) for c in g.attrs["location_counts"]]
                e.image = self._locate(g["image"])
                e.label = self._locate(g["label"]) if "label" in g else None
                e.locations = self._locate(g["locations"]) if sum(e.counts) else np.zeros((0, 3), np.int32)
                contiguous &= all(not isinstance(a, tuple) for a in (e.image, e.label, e.locations))
                if self._check_sources:
                    ch, mi = _stale_files(e.provenance)
                    stale += ch
                    missing += mi
                self._entries[cid] = e
        if stale:
            raise StaleCacheError(
                path,
                f"{path}: stale cache, the content of {len(stale)} source file(s) changed since "
                f"it was built "
                f"(e.g. {stale[0]}); rebuild it (build_cache resumes and redoes those cases)",
            )
        if missing:
            warnings.warn(
                f"{path}: {len(missing)} source file(s) not found (e.g. {missing[0]}); cannot check the "
                f"cache against its sources, using it as built",
                stacklevel=3,
            )
        self.contiguous = contiguous
        if contiguous:
            with open(path, "rb") as fh:
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            for e in self._entries.values():
                e.image = self._view(e.image)
                e.label = None if e.label is None else self._view(e.label)
                e.locations = self._view(e.locations) if isinstance(e.locations, list) else e.locations

    @staticmethod
    def _locate(ds: h5py.Dataset) -> list | tuple:
        """[offset, shape, dtype] for a contiguous dataset, (name,) for one h5py must read."""
        offset = ds.id.get_offset() if ds.chunks is None and ds.compression is None else None
        if offset is None:
            return (ds.name,)
        return [int(offset), tuple(ds.shape), ds.dtype]

    def _view(self, loc: list) -> np.ndarray:
        offset, shape, dtype = loc
        count = int(np.prod(shape))
        return np.frombuffer(self._mm, dtype=dtype, count=count, offset=offset).reshape(shape)

    def _h5read(self, name: str, sel: Any = ()) -> np.ndarray:
        with self._lock:
            if self._h5 is None:
                self._h5 = h5py.File(self.path, "r")
            return self._h5[name][sel]

    # -- reading --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.case_ids)

    def __contains__(self, case_id: str) -> bool:
        return case_id in self._entries

    def __iter__(self):
        return iter(self.case_ids)

    def _entry(self, case_id: str) -> _CaseEntry:
        try:
            return self._entries[case_id]
        except KeyError:
            raise KeyError(f"case {case_id!r} is not in {self.path} ({len(self)} cases)") from None

    def geometry(self, case_id: str) -> Geometry:
        """The :class:`Geometry` of a case (for ``paste_back``)."""
        return self._entry(case_id).geometry

    def shape(self, case_id: str) -> tuple[int, int, int]:
        """Spatial shape of the stored (cropped) arrays."""
        return self._entry(case_id).geometry.cropped_shape

    def brain_box(self, case_id: str) -> Box:
        """Brain bounding box inside the stored arrays."""
        return self._entry(case_id).brain_box

    def provenance(self, case_id: str) -> dict[str, Any]:
        return self._entry(case_id).provenance

    def stats(self, case_id: str) -> dict[str, list[float]]:
        return self._entry(case_id).stats

    def has_label(self, case_id: str) -> bool:
        return self._entry(case_id).label is not None

    def modalities(self, case_id: str) -> tuple[str, ...]:
        """The canonical modalities the case had files of, in canonical order (from its provenance:
        a modality without a file is stored as a zero channel); all four for a multi-channel file."""
        roles = {r["role"] for r in self.provenance(case_id)["files"]} - {"label"}
        if roles - set(MODALITIES):  # MSD's 4D image, a Kaggle slice volume: every channel
            return tuple(MODALITIES)
        return tuple(m for m in MODALITIES if m in roles)

    def require_modalities(self, case_id: str, modalities: Sequence[str], what: str = "the model") -> None:
        """Refuse a case that had no file for one of ``modalities`` (its channel holds zeros).

        Raises:
            DataError: naming the cache file, the case, the modalities asked for and the ones it has.
        """
        refuse_missing_modalities(
            self.path,
            case_id,
            self.modalities(case_id),
            modalities,
            what,
            note=" (the cache stores the others as zeros)",
        )

    def image(self, case_id: str) -> np.ndarray:
        """``(X', Y', Z', 4)`` image: a read-only view for contiguous caches (no copy)."""
        e = self._entry(case_id)
        return e.image if isinstance(e.image, np.ndarray) else self._h5read(e.image[0])

    def label(self, case_id: str) -> np.ndarray | None:
        """``(X', Y', Z')`` uint8 internal labels of :attr:`scheme` or ``None``."""
        e = self._entry(case_id)
        if e.label is None or isinstance(e.label, np.ndarray):
            return e.label
        return self._h5read(e.label[0])

    def locations(self, case_id: str) -> dict[int, np.ndarray]:
        """``{label: (N, 3) int32}`` tumour voxel coordinates for the internal labels present."""
        e = self._entry(case_id)
        arr = e.locations if isinstance(e.locations, np.ndarray) else self._h5read(e.locations[0])
        out, start = {}, 0
        for c, n in enumerate(e.counts, 1):
            if n:
                out[c] = arr[start : start + n]
            start += n
        return out

    def load(self, case_id: str) -> PreprocessedCase:
        """The whole case in RAM as a :class:`PreprocessedCase` (float32 image)."""
        img = np.asarray(self.image(case_id), dtype=np.float32)
        lab = self.label(case_id)
        return PreprocessedCase(
            image=np.array(img),
            label=None if lab is None else np.array(lab),
            geometry=self.geometry(case_id),
            case_id=case_id,
            brain_mask=(img != 0).any(-1),
            stats=self.stats(case_id),
        )

    def read_patch(
        self,
        case_id: str,
        start: Sequence[int],
        size: Sequence[int],
        channels: Sequence[int] | None = None,
        with_label: bool = True,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """A box of a case, zero-padded where it leaves the stored volume.

        Args:
            case_id: the case.
            start: lower corner (may be negative), voxel indices of the stored grid.
            size: box size ``(px, py, pz)``.
            channels: channel indices into ``(flair, t1, t1ce, t2)`` (default: all four).
            with_label: also read the label box.

        Returns:
            ``(image (px, py, pz, len(channels)) float32, label (px, py, pz) uint8 or None)``;
            padding is 0 in both (the z-scored background value and BG).
        """
        e = self._entry(case_id)
        shape = e.geometry.cropped_shape
        channels = list(range(len(MODALITIES))) if channels is None else list(channels)
        src, dst = clip_box(start, size, shape)
        img = np.zeros(tuple(size) + (len(channels),), np.float32)
        lab = np.zeros(tuple(size), np.uint8) if (with_label and e.label is not None) else None
        if all(s.stop > s.start for s in src):
            if isinstance(e.image, np.ndarray):
                if channels == list(range(e.image.shape[3])):
                    img[dst] = e.image[src]
                else:
                    for k, c in enumerate(channels):
                        img[dst + (k,)] = e.image[src + (c,)]
                if lab is not None:
                    lab[dst] = e.label[src]
            else:
                img[dst] = self._h5read(e.image[0], src)[..., channels]
                if lab is not None:
                    lab[dst] = self._h5read(e.label[0], src)
        return img, lab

    def check_scheme(self, scheme: str | LabelScheme | None, asked_by: str = "scheme=") -> None:
        """Refuse this cache where ``scheme`` (stated; ``None`` accepts any) is not the one it was built in.

        Raises:
            CacheError: naming the file, both schemes and the fix.
        """
        if scheme is None:
            return
        want = get_scheme(scheme).name
        if want != self.scheme:
            raise CacheError(
                self.path,
                f"{self.path}: cache built in the label scheme {self.scheme!r}, but {asked_by} is {want!r}; "
                f"rebuild it for {want!r} (`brainseg preprocess SRC --out {self.path} --scheme {want} --overwrite`) "
                f"or use another cache file",
            )

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Drop the h5py handle (if any); memory-mapped views stay valid until garbage-collected."""
        with self._lock:
            if self._h5 is not None:
                self._h5.close()
                self._h5 = None

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "check_sources": False}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], check_sources=state["check_sources"])

    def __repr__(self) -> str:
        mode = "mmap" if self.contiguous else "h5py"
        return f"Cache(path={str(self.path)!r}, cases={len(self)}, reads={mode})"


def open_cache(path: str | Path, *, check_sources: bool = True, scheme: str | LabelScheme | None = None) -> Cache:
    """Open a cache for reading, refusing incomplete or stale ones.

    Args:
        path: the ``.h5`` file written by :func:`build_cache`.
        check_sources: compare each source file's content fingerprint with the build record (files
            that no longer exist are only warned about: a cache may travel without its sources).
        scheme: refuse the cache unless it was built in this label scheme (``None``: any).

    Raises:
        CacheError: not a cache / unreadable, or built in another scheme than ``scheme``;
            :class:`IncompleteCacheError`: the build did not finish; :class:`StaleCacheError`:
            source files changed or another format version.
    """
    cache = Cache(path, check_sources=check_sources)
    cache.check_scheme(scheme)
    return cache


def is_cache_path(path: Any) -> bool:
    """True for an existing HDF5 file (by signature), used to tell caches from dataset folders."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


__all__ = [
    "FORMAT_VERSION",
    "Cache",
    "CacheError",
    "IncompleteCacheError",
    "StaleCacheError",
    "build_cache",
    "open_cache",
    "common_scheme",
    "location_classes",
    "is_cache_path",
    "file_fingerprint",
    "partial_path",
]
