"""BraTS datasets shipped as a tar archive: unpacked safely, or read in place case by case.

The Kaggle copy of BraTS 2021 (``dschettler8845/brats-2021-task1``) is one uncompressed tar,
``BraTS2021_Training_Data.tar``, of 1,251 case folders ``BraTS2021_XXXXX/BraTS2021_XXXXX_{flair,t1,
t1ce,t2,seg}.nii.gz`` (about 12-13 GB; ``shared/reference/brats-editions.md`` section 3).

* :func:`unpack` extracts a tar into a folder: every member path is checked first (no absolute
  path, no ``..``, no link or existing symlink leading outside the folder, no device file), each
  file is written under a temporary hidden name and renamed when complete (a kill never leaves a
  half-written ``.nii.gz`` under a case's name), and a rerun skips the files already there with
  the member's size, so an interrupted unpack resumes.
* :class:`TarDataset` reads the cases in place: a :class:`~brainseg_tf.io.Dataset` whose case
  list comes from the member names (the same layout and label-scheme detection as the unpacked
  folder) and whose reads copy one case's members (a few MB) into a private temporary folder,
  read them with :func:`~brainseg_tf.io.read_case` (every check of a folder read applies) and
  remove them. Errors name the tar and the member (``BraTS2021_Training_Data.tar:BraTS2021_00000/
  BraTS2021_00000_seg.nii.gz: ...``).

No TensorFlow is imported here.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from brainseg_tf.atomic import atomic_path
from brainseg_tf.io import Case, Dataset, read_case
from brainseg_tf.io.errors import DataError, MissingFileError
from brainseg_tf.io.layouts import CaseRef, scan_dataset
from brainseg_tf.io.nifti import is_nifti_name, read_header
from brainseg_tf.progress import progress as show_progress

__all__ = ["TAR_SUFFIXES", "UnpackSummary", "TarDataset", "is_tar_path", "list_members", "unpack"]

#: File names taken for a tar archive (``open_dataset`` dispatch, ``brainseg unpack``).
TAR_SUFFIXES: tuple[str, ...] = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_COPY_CHUNK = 1 << 20
# Errors of a damaged archive or compressed stream (disk-full and permission errors are not these).
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
_COMPRESSED_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class UnpackSummary:
    """What :func:`unpack` did: ``extracted`` file and link members written now, ``skipped`` ones
    already in place (folders are not counted)."""

    out_dir: Path
    extracted: int
    skipped: int

    @property
    def members(self) -> int:
        return self.extracted + self.skipped


def is_tar_path(path: str | Path) -> bool:
    """Whether ``path`` is an existing file named like a tar archive (:data:`TAR_SUFFIXES`)."""
    path = Path(path)
    return path.is_file() and path.name.lower().endswith(TAR_SUFFIXES)


def _compression(path: Path) -> str | None:
    """``"gzip"``, ``"bzip2"``, ``"xz"`` from the file's first bytes, or ``None`` (a plain tar)."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    return next((name for magic, name in _COMPRESSED_MAGIC if head.startswith(magic)), None)


def _where(tar: Path, name: str | None) -> str:
    return f"{tar}: member {name}" if name else str(tar)


def _check_end(tf: tarfile.TarFile, tar: Path, last: str | None) -> None:
    """Refuse an archive whose member list stopped without the end-of-archive block.

    ``tarfile`` ends its member list silently at a truncated or invalid header after the first
    member; a complete archive has a zero block there.
    """
    after = f"after member {last}" if last else "at its start"
    try:
        tf.fileobj.seek(tf.offset)
        block = tf.fileobj.read(tarfile.BLOCKSIZE)
    except _ARCHIVE_ERRORS as exc:
        raise DataError(tar, f"{tar}: truncated or corrupt {after} ({type(exc).__name__}: {exc})") from None
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
        raise DataError(
            tar,
            f"{tar}: truncated or corrupt {after} (byte {tf.offset:,}: no valid member header and no "
            f"end-of-archive block); download it again",
        )


def list_members(tar_path: str | Path) -> list[tarfile.TarInfo]:
    """Every member of a tar archive (plain, gzip, bzip2 or xz), after checking it is complete.

    Raises:
        MissingFileError: the file does not exist.
        DataError: not a tar archive, a corrupt or truncated archive (a member header that cannot
            be read, a member whose data runs past the end of the file, no end-of-archive block);
            the message names the archive and the last member read.
    """
    tar = Path(tar_path)
    if not tar.is_file():
        raise MissingFileError(tar, f"{tar}: archive not found")
    members: list[tarfile.TarInfo] = []
    try:
        with tarfile.open(tar, "r:*") as tf:
            while (member := tf.next()) is not None:
                members.append(member)
            _check_end(tf, tar, members[-1].name if members else None)
    except DataError:
        raise
    except _ARCHIVE_ERRORS as exc:
        # tarfile.open lists one line per compression it tried; the last one is the plain tar's.
        detail = (str(exc).strip().splitlines() or [""])[-1].lstrip("- ")
        what = f"truncated or corrupt after member {members[-1].name}" if members else "not a tar archive"
        raise DataError(tar, f"{tar}: {what} ({type(exc).__name__}: {detail})") from None
    if _compression(tar) is None:
        size = tar.stat().st_size
        for member in members:
            if member.isfile() and member.offset_data + member.size > size:
                raise DataError(
                    tar,
                    f"{_where(tar, member.name)}: truncated: its {member.size:,} bytes at byte "
                    f"{member.offset_data:,} run past the end of the file ({size:,} bytes); download it again",
                )
    return members


# ----------------------------------------------------------------------------------- unpacking


def _member_parts(tar: Path, member: tarfile.TarInfo) -> PurePosixPath:
    """The member's path inside the archive, refused when absolute or holding ``..``."""
    name = member.name
    path = PurePosixPath(name)
    if not name or path.is_absolute() or _DRIVE.match(name) or name.startswith("\\"):
        raise DataError(tar, f"{_where(tar, name)}: absolute path; refusing to unpack outside the output folder")
    if ".." in path.parts:
        raise DataError(tar, f"{_where(tar, name)}: path holds '..'; refusing to unpack outside the output folder")
    return path


def _inside(root: Path, path: Path | str) -> bool:
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


def _target(tar: Path, root: Path, member: tarfile.TarInfo) -> Path:
    """Where ``member`` goes under the resolved output folder ``root``.

    Raises:
        DataError: an absolute path or ``..``, a path through an existing symlink leading outside
            ``root``, a symlink or hard link pointing outside ``root``, a device or FIFO member.
    """
    target = root / _member_parts(tar, member)
    if not _inside(root, target.parent):
        raise DataError(tar, f"{_where(tar, member.name)}: would be written through a symlink outside {root}")
    if member.issym():
        link = member.linkname
        if not link or link.startswith("/") or _DRIVE.match(link) or not _inside(root, target.parent / link):
            raise DataError(tar, f"{_where(tar, member.name)}: symlink to {link!r} leads outside {root}; refusing it")
    elif member.islnk():
        _member_parts(tar, tarfile.TarInfo(member.linkname))
    elif not (member.isfile() or member.isdir()) or member.issparse():
        raise DataError(tar, f"{_where(tar, member.name)}: a device, FIFO or sparse member; refusing to unpack it")
    return target


def _remove_stale_temps(target: Path) -> None:
    """Remove temporary files an interrupted unpack left beside ``target`` (``atomic_path``'s names)."""
    if target.parent.is_dir():
        for stale in target.parent.glob(f".{_glob_escape(target.name)}.*.tmp*"):
            stale.unlink(missing_ok=True)


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _copy_member(tf: tarfile.TarFile, tar: Path, member: tarfile.TarInfo, size: int, target: Path) -> None:
    """Write a file member to ``target`` atomically, checking its byte count."""
    _remove_stale_temps(target)
    with atomic_path(target) as tmp:
        written = 0
        try:
            src = tf.extractfile(member)
            with src, open(tmp, "wb") as dst:
                while chunk := src.read(_COPY_CHUNK):
                    dst.write(chunk)
                    written += len(chunk)
        except _ARCHIVE_ERRORS as exc:
            raise DataError(
                tar, f"{_where(tar, member.name)}: truncated or corrupt data ({type(exc).__name__}: {exc})"
            ) from None
        if written != size:
            raise DataError(
                tar, f"{_where(tar, member.name)}: truncated: {written:,} of its {size:,} bytes could be read"
            )
        os.utime(tmp, (member.mtime, member.mtime))


def _place_symlink(member: tarfile.TarInfo, target: Path) -> bool:
    """Create (or keep) a symlink member; True when it was already in place."""
    if target.is_symlink() and os.readlink(target) == member.linkname:
        return True
    tmp = target.with_name(f".{target.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(member.linkname, tmp)
    os.replace(tmp, target)
    return False


def unpack(tar_path: str | Path, out_dir: str | Path, *, progress: bool = True) -> UnpackSummary:
    """Extract a tar archive (plain, gzip, bzip2 or xz) into ``out_dir``, safely and resumably.

    Every member is checked before anything is written: absolute paths, ``..``, symlinks or hard
    links leading outside ``out_dir`` and device files are refused, naming the member. Files are
    written under a hidden temporary name and renamed once complete (with the member's mtime), so
    an interrupted unpack never leaves a partial file under a real name; a rerun skips the files
    already there with the member's size and removes the temporary leftovers.

    Args:
        tar_path: the archive (e.g. Kaggle's ``BraTS2021_Training_Data.tar``).
        out_dir: the folder to unpack into (created).
        progress: show progress over the members.

    Returns:
        An :class:`UnpackSummary` (members extracted now and skipped as already in place).

    Raises:
        MissingFileError: the archive does not exist.
        DataError: not a tar, a corrupt or truncated archive, or an unsafe member; the message
            names the archive and the member.
    """
    tar = Path(tar_path)
    members = list_members(tar)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(out))
    for member in members:  # a bad member refuses the archive before anything is written
        _target(tar, root, member)
    by_name = {PurePosixPath(m.name): m for m in members}
    extracted = skipped = 0
    with tarfile.open(tar, "r:*") as tf:
        for member in show_progress(members, desc="unpack", unit="member", disable=not progress):
            # Checked again against what is on disk now: links placed by earlier members can make a
            # path that looked inside lead out (a link "d" -> "." and then a link "e" -> "d/..").
            target = _target(tar, root, member)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.issym():
                done = _place_symlink(member, target)
            else:
                data = by_name.get(PurePosixPath(member.linkname), member) if member.islnk() else member
                done = target.is_file() and not target.is_symlink() and target.stat().st_size == data.size
                if not done:
                    _copy_member(tf, tar, member, data.size, target)
            skipped += done
            extracted += not done
    return UnpackSummary(out, extracted, skipped)


# ----------------------------------------------------------------------------------- reading in place


def _archive_stem(tar: Path) -> str:
    name = tar.name
    for suffix in TAR_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "archive"
    return name


def _rewrite(text: str, scratch: Path, tar: Path) -> str:
    """``text`` with the scratch folder standing for the archive: ``<tar>:<member path>``."""
    return text.replace(str(scratch) + os.sep, f"{tar}:").replace(str(scratch), str(tar))


def _in_tar(exc: DataError, scratch: Path, tar: Path) -> DataError:
    """``exc`` (same type) naming the archive and member instead of the scratch copy."""
    out = type(exc)(tar, _rewrite(str(exc), scratch, tar))
    out.__cause__ = exc.__cause__
    return out


@contextmanager
def _scratch(tar: Path) -> Iterator[Path]:
    """A private temporary folder named like the archive (its cases keep their folder names)."""
    with tempfile.TemporaryDirectory(prefix="brainseg-tar-") as tmp:
        folder = Path(tmp) / _archive_stem(tar)
        folder.mkdir()
        yield folder


class TarDataset(Dataset):
    """The cases of an uncompressed tar archive of BraTS case folders, read in place.

    A :class:`brainseg_tf.io.Dataset` (``len``, iteration, ``ds[i]``, ``ds["BraTS2021_00000"]``,
    ``case_ids``, ``labelled_ids``, ``ref``, ``grid``): the layout, the cases and their label
    schemes are detected from the member names exactly as in the unpacked folder, and each read
    extracts only that case's files into a temporary folder (removed after). The refs' file paths
    are ``<archive>/<member name>``: names for messages, not files to open (read through the
    dataset). Reads open the archive afresh, so threads may read cases concurrently.

    Args:
        tar_path: the archive (``.tar``; a compressed one cannot be read in place: :func:`unpack` it).
        layout, convention, scheme: as for :class:`brainseg_tf.io.Dataset`.

    Raises:
        MissingFileError: the archive does not exist.
        DataError: a compressed, corrupt or truncated archive; no NIfTI files in case folders;
            a case with a missing modality or unmatched files. The message names the archive and
            the member or case folder.
    """

    def __init__(
        self,
        tar_path: str | Path,
        layout: str | None = None,
        convention: str | None = None,
        scheme: str | None = None,
    ):
        self.root = Path(tar_path)
        self.path = self.root
        self.convention = convention
        self._layout_arg = layout
        self._scheme_arg = scheme
        members = list_members(self.root)
        kind = _compression(self.root)
        if kind is not None:
            raise DataError(
                self.root,
                f"{self.root}: a {kind}-compressed tar cannot be read in place (each read would decompress "
                f"from the start); unpack it first: brainseg unpack {self.root} --out DIR",
            )
        files = [m for m in members if m.isfile() and is_nifti_name(m.name)]
        for member in files:
            _member_parts(self.root, member)
        files = [m for m in files if not any(p.startswith(".") for p in PurePosixPath(m.name).parts)]
        if not files:
            shown = ", ".join(m.name for m in members[:5]) or "none"
            raise DataError(
                self.root,
                f"{self.root}: no BraTS cases: no NIfTI files (.nii/.nii.gz) among its {len(members)} "
                f"members (first: {shown})",
            )
        self._members = {str(PurePosixPath(m.name)): m for m in files}
        self.layout, self.refs = self._scan()
        self._by_id = {r.case_id: r for r in self.refs}

    def _scan(self) -> tuple[str, list[CaseRef]]:
        """Layout and case refs, from an empty stand-in file per member (names are all a scan reads)."""
        with _scratch(self.root) as scratch:
            for name in self._members:
                (scratch / name).parent.mkdir(parents=True, exist_ok=True)
                (scratch / name).touch()
            try:
                layout, refs = scan_dataset(scratch, self._layout_arg, scheme=self._scheme_arg)
            except DataError as exc:
                raise _in_tar(exc, scratch, self.root) from None
            return layout, [self._virtual(ref, scratch) for ref in refs]

    def _virtual(self, ref: CaseRef, scratch: Path) -> CaseRef:
        """``ref`` with its scratch paths replaced by ``<archive>/<member name>``."""

        def swap(path: Path | None) -> Path | None:
            return None if path is None else self.root / path.relative_to(scratch)

        return replace(
            ref,
            images={k: swap(p) for k, p in ref.images.items()},
            label=swap(ref.label),
            warnings=[_rewrite(w, scratch, self.root) for w in ref.warnings],
        )

    def _member(self, path: Path) -> tarfile.TarInfo:
        return self._members[path.relative_to(self.root).as_posix()]

    def _extract(self, paths: list[Path], scratch: Path) -> None:
        """Copy the members behind ``paths`` (virtual ref paths) into ``scratch``."""
        with open(self.root, "rb") as fh:
            for path in paths:
                member = self._member(path)
                fh.seek(member.offset_data)
                data = fh.read(member.size)
                if len(data) != member.size:
                    raise DataError(
                        self.root,
                        f"{_where(self.root, member.name)}: truncated: {len(data):,} of its {member.size:,} bytes",
                    )
                out = scratch / path.relative_to(self.root)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)

    def read(self, key: int | str, *, load_label: bool = True) -> Case:
        """Read one case (by index or id) from the archive; see :func:`brainseg_tf.io.read_case`.

        Raises:
            DataError: a corrupt member, shapes that disagree, labels outside the scheme...; the
                message names ``<archive>:<member>``.
        """
        ref = self.ref(key)
        with _scratch(self.root) as scratch:
            self._extract(ref.files if load_label else list(ref.images.values()), scratch)
            folder = scratch / next(iter(ref.images.values())).parent.relative_to(self.root)
            try:
                case = read_case(
                    folder,
                    layout=self._layout_arg or ref.layout,
                    convention=self.convention,
                    load_label=load_label,
                    scheme=self._scheme_arg,
                )
            except DataError as exc:
                raise _in_tar(exc, scratch, self.root) from None
        case.ref = ref
        return case

    def __getitem__(self, key: int | str) -> Case:
        return self.read(key)

    def __iter__(self) -> Iterator[Case]:
        for ref in self.refs:
            yield self.read(ref.case_id)

    def grid(self, key: int | str) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
        """``(shape, spacing)`` of a case's scan grid, from the header of its first image member."""
        first = next(iter(self.ref(key).images.values()))
        with _scratch(self.root) as scratch:
            self._extract([first], scratch)
            try:
                shape, _, spacing = read_header(scratch / first.relative_to(self.root))
            except DataError as exc:
                raise _in_tar(exc, scratch, self.root) from None
        return tuple(int(n) for n in shape[:3]), tuple(float(x) for x in spacing)

    def __repr__(self) -> str:
        return f"TarDataset(path={str(self.root)!r}, layout={self.layout!r}, cases={len(self)})"
