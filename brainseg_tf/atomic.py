"""One crash-safe write path for every file and folder the toolkit writes.

A write goes to a unique temporary name beside the target (so concurrent writers never share
one), is flushed and fsynced, and is renamed over the target: a kill at any point leaves either
the old file or the complete new one under the final name, never a truncated one. Files get the
permissions a plain ``open()`` would give (the umask is honoured; ``mkstemp`` alone gives 0600).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # fallback: not thread-safe, but only off Linux
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        return
    for sub in sorted(path.rglob("*")):
        if sub.is_file():
            with open(sub, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


COMPOUND_SUFFIXES = (".nii.gz", ".tar.gz")
_NAME_MAX = 255  # bytes in one path component on common file systems
_TEMP_EXTRA = 8 + len(".tmp")  # mkstemp's random part plus the ``.tmp`` marker


def full_suffix(name: str) -> str:
    """The ending a writer looks at: ``.nii.gz`` for ``x.nii.gz`` *and* for a bare ``.nii.gz``.

    Unlike ``Path.suffix`` a leading dot counts (``.keras`` -> ``.keras``), so the temporary
    name of a hidden target still ends the way its writer (nibabel, Keras) requires.
    """
    for compound in COMPOUND_SUFFIXES:
        if name.endswith(compound):
            return compound
    _, dot, ext = name.rpartition(".")
    return f".{ext}" if dot and ext else ""


def _temp_prefix(name: str, suffix_len: int) -> str:
    """``.<name>.``, cut so that the whole temporary name fits in one path component."""
    room = _NAME_MAX - suffix_len - _TEMP_EXTRA - 2
    return f".{name.encode()[: max(room, 1)].decode(errors='ignore')}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it is fsynced and renamed to ``path``.

    Use it for writers that want a file name (``model.save``, ``nib.save``, ``fig.savefig``).
    ``suffix`` is the temporary name's ending (default: ``path``'s own, e.g. ``.nii.gz`` or
    ``.keras``, which such writers look at). On an exception the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = full_suffix(path.name)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_temp_prefix(path.name, len(suffix)), suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield tmp
        _fsync_tree(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _finite(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (NaN/Inf become ``null``) to ``path`` atomically."""
    text = json.dumps(_finite(json.loads(json.dumps(obj, default=_json_default))), indent=indent, allow_nan=False)
    return write_text(path, text + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path``.

    An existing ``path`` is moved aside first and removed only after the new folder is in place,
    so a crash leaves either the old folder or the new one (plus a hidden leftover to clean up).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name, 0), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
        _fsync_tree(tmp)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name, 0), suffix=".old", dir=path.parent))
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
