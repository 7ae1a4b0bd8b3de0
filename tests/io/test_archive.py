"""A dataset shipped as a tar (Kaggle's BraTS 2021): unpacked safely and resumably, or read in place."""

from __future__ import annotations

import io as _bytesio
import tarfile
from pathlib import Path

import numpy as np
import pytest

from brainseg_tf import io
from brainseg_tf.cli import main
from brainseg_tf.io import archive

SHAPE = (24, 24, 16)


def make_tar(root: Path, tar: Path, mode: str = "w") -> Path:
    """A tar of the case folders of ``root`` (folder members first), as Kaggle's BraTS 2021 tar."""
    with tarfile.open(tar, mode) as tf:
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            tf.add(folder, arcname=folder.name)
    return tar


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes = b"x", **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tf.addfile(info, _bytesio.BytesIO(data) if info.isfile() else None)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    from brainseg_tf import synthetic

    root = tmp_path_factory.mktemp("archive") / "data"
    return synthetic.make_dataset(root, layout="brats2021", n_cases=3, shape=SHAPE, seed=4, progress=False)


@pytest.fixture()
def tar(cases, tmp_path):
    return make_tar(cases, tmp_path / "BraTS2021_Training_Data.tar")


def test_unpack_reproduces_every_byte_and_a_rerun_writes_nothing(cases, tar, tmp_path):
    out = tmp_path / "out"
    done = archive.unpack(tar, out, progress=False)
    expected = {k: v for k, v in files_of(cases).items() if "/" in k}  # the case folders' files
    assert len(expected) == 15
    assert files_of(out) == expected
    assert (done.extracted, done.skipped) == (15, 0)
    assert not list(out.rglob(".*"))  # no temporary leftovers
    with tarfile.open(tar) as tf:
        member = tf.getmember("BraTS2021_00001/BraTS2021_00001_seg.nii.gz")
    assert (out / member.name).stat().st_mtime == member.mtime
    again = archive.unpack(tar, out, progress=False)
    assert (again.extracted, again.skipped) == (0, 15)


def test_unpack_resumes_after_an_interruption(tar, tmp_path, monkeypatch):
    out = tmp_path / "out"
    archive.unpack(tar, out, progress=False)
    expected = files_of(out)
    t2 = out / "BraTS2021_00002" / "BraTS2021_00002_t2.nii.gz"
    flair = out / "BraTS2021_00001" / "BraTS2021_00001_flair.nii.gz"
    kept = out / "BraTS2021_00000" / "BraTS2021_00000_t1.nii.gz"
    inode = kept.stat().st_ino
    t2.unlink()
    flair.write_bytes(flair.read_bytes()[:100])  # a size that differs: written again
    stale = t2.with_name(f".{t2.name}.ab12cd34.tmp.nii.gz")  # what a kill during atomic_path leaves
    stale.write_bytes(b"half")

    # A kill in the middle of a member: nothing under its real name, no temporary file left.
    real = tarfile.TarFile.extractfile

    def interrupted(self, member):
        if str(member.name).endswith("_t2.nii.gz"):
            raise KeyboardInterrupt
        return real(self, member)

    monkeypatch.setattr(tarfile.TarFile, "extractfile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        archive.unpack(tar, out, progress=False)
    assert not t2.exists() and not stale.exists()
    assert [p.name for p in t2.parent.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()

    done = archive.unpack(tar, out, progress=False)
    assert (done.extracted, done.skipped) == (1, 14)  # the flair was rewritten by the interrupted run
    assert files_of(out) == expected
    assert kept.stat().st_ino == inode  # skipped, not rewritten


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("../evil.nii.gz", {}, r"member \.\./evil\.nii\.gz: path holds '\.\.'"),
        ("a/../../evil.nii.gz", {}, r"member a/\.\./\.\./evil\.nii\.gz: path holds '\.\.'"),
        ("/tmp/evil.nii.gz", {}, r"member /tmp/evil\.nii\.gz: absolute path"),
        ("up", {"type": tarfile.SYMTYPE, "linkname": "../outside"}, r"member up: symlink to '\.\./outside' leads"),
        ("etc", {"type": tarfile.SYMTYPE, "linkname": "/etc"}, r"member etc: symlink to '/etc' leads outside"),
        ("hard", {"type": tarfile.LNKTYPE, "linkname": "../x"}, r"member \.\./x: path holds '\.\.'"),
        ("fifo", {"type": tarfile.FIFOTYPE}, r"member fifo: a device, FIFO or sparse member"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(tmp_path, name, fields, message):
    tar = tmp_path / "bad.tar"
    with tarfile.open(tar, "w") as tf:
        add_bytes(tf, "BraTS2021_00000/ok.txt", b"fine")
        add_bytes(tf, name, **fields)
    out = tmp_path / "out"
    with pytest.raises(io.DataError, match=rf"bad\.tar: {message}"):
        archive.unpack(tar, out, progress=False)
    assert list(out.iterdir()) == []


def test_links_inside_the_folder_are_kept_and_a_path_through_an_outside_symlink_is_refused(tmp_path):
    tar = tmp_path / "links.tar"
    with tarfile.open(tar, "w") as tf:
        add_bytes(tf, "a/data.bin", b"12345")
        add_bytes(tf, "a/alias", type=tarfile.SYMTYPE, linkname="data.bin")
        add_bytes(tf, "a/copy", type=tarfile.LNKTYPE, linkname="a/data.bin")
    out = tmp_path / "out"
    done = archive.unpack(tar, out, progress=False)
    assert (done.extracted, done.skipped) == (3, 0)
    assert (out / "a" / "alias").is_symlink() and (out / "a" / "alias").read_bytes() == b"12345"
    assert (out / "a" / "copy").read_bytes() == b"12345"
    assert archive.unpack(tar, out, progress=False).skipped == 3

    chained = tmp_path / "chained.tar"  # each link looks inside alone; "e" leads out once "d" exists
    with tarfile.open(chained, "w") as tf:
        add_bytes(tf, "d", type=tarfile.SYMTYPE, linkname=".")
        add_bytes(tf, "e", type=tarfile.SYMTYPE, linkname="d/..")
    with pytest.raises(io.DataError, match=r"chained\.tar: member e: symlink to 'd/\.\.' leads outside"):
        archive.unpack(chained, tmp_path / "chain", progress=False)
    assert not (tmp_path / "chain" / "e").exists()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "a").symlink_to(elsewhere)  # an output folder holding a symlink that leads out
    with pytest.raises(io.DataError, match=r"member a/data\.bin: would be written through a symlink outside"):
        archive.unpack(tar, other, progress=False)
    assert list(elsewhere.iterdir()) == []


def test_a_truncated_or_corrupt_tar_is_named(tar, tmp_path):
    data = tar.read_bytes()
    with tarfile.open(tar) as tf:
        last = [m for m in tf.getmembers() if m.isfile()][-1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: last.offset_data + last.size // 2])  # in the middle of the last file's data
    # tarfile itself may notice first (seeking to the next header); either way the member is named
    named = rf"cut\.tar: (member {last.name}: truncated: its {last.size:,} bytes|truncated or corrupt after member {last.name} )"
    with pytest.raises(io.DataError, match=named):
        archive.list_members(cut)
    with pytest.raises(io.DataError, match=named):
        archive.unpack(cut, tmp_path / "out", progress=False)
    with pytest.raises(io.DataError, match=named):
        archive.TarDataset(cut)
    cut.write_bytes(data[: last.offset - 100])  # in the middle of the last file's header
    with pytest.raises(io.DataError, match=r"cut\.tar: truncated or corrupt after member BraTS2021_00002/"):
        archive.list_members(cut)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(io.DataError, match=r"garbage\.tar: not a tar archive \(ReadError: method tar"):
        archive.unpack(garbage, tmp_path / "out", progress=False)
    with pytest.raises(io.MissingFileError, match=r"nope\.tar: archive not found"):
        archive.TarDataset(tmp_path / "nope.tar")


def test_a_truncated_compressed_tar_is_named(cases, tmp_path):
    tgz = make_tar(cases, tmp_path / "cases.tar.gz", "w:gz")
    done = archive.unpack(tgz, tmp_path / "out", progress=False)
    assert done.extracted == 15
    assert files_of(tmp_path / "out") == {k: v for k, v in files_of(cases).items() if "/" in k}
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
    with pytest.raises(io.DataError, match=r"cut\.tar\.gz: (truncated or corrupt after member|member) BraTS2021_0000"):
        archive.unpack(cut, tmp_path / "out2", progress=False)
    with pytest.raises(
        io.DataError, match=r"cases\.tar\.gz: a gzip-compressed tar cannot be read in place.*brainseg unpack"
    ):
        archive.TarDataset(tgz)


def test_in_place_reads_equal_unpacked_reads(cases, tar, tmp_path):
    archive.unpack(tar, tmp_path / "out", progress=False)
    unpacked = io.open_dataset(tmp_path / "out")
    ds = io.open_dataset(tar)  # a .tar path opens in place
    assert isinstance(ds, archive.TarDataset) and isinstance(ds, io.Dataset)
    assert (ds.layout, ds.case_ids, ds.labelled_ids) == (unpacked.layout, unpacked.case_ids, unpacked.labelled_ids)
    assert [r.scheme for r in ds.refs] == [r.scheme for r in unpacked.refs] == ["brats2021"] * 3
    assert ds.ref(1).label == tar / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz"
    for got, want in zip(ds, unpacked):
        assert got.case_id == want.case_id and got.shape == want.shape == SHAPE
        np.testing.assert_array_equal(got.image, want.image)
        np.testing.assert_array_equal(got.label, want.label)
        np.testing.assert_array_equal(got.affine, want.affine)
        assert got.spacing == want.spacing and got.convention == want.convention and got.scheme == want.scheme
        assert got.ref == ds.ref(got.case_id)
    assert set(np.unique(ds["BraTS2021_00000"].label)) == set(np.unique(unpacked[0].label))
    assert ds.grid(2) == unpacked.grid(2) == (SHAPE, (1.0, 1.0, 1.0))
    assert ds.read(0, load_label=False).label is None
    with pytest.raises(io.UnknownCaseError, match="BraTS2021_09999"):
        ds["BraTS2021_09999"]


def test_a_tar_dataset_is_a_training_source(cases, tar):
    from brainseg_tf.data.preprocess import preprocess_case
    from brainseg_tf.data.sources import open_source

    ds = archive.TarDataset(tar)
    src = open_source(ds, ["BraTS2021_00002"], None, {}, need_labels=True)
    assert type(src).__name__ == "NiftiSource" and src.scheme.name == "brats2021"
    assert src.grid_shape("BraTS2021_00002") == SHAPE
    loaded = src.load("BraTS2021_00002")
    folder = preprocess_case(io.read_case(cases / "BraTS2021_00002"))
    np.testing.assert_array_equal(loaded.label, folder.label)
    np.testing.assert_array_equal(loaded.image, folder.image)
    assert loaded.label.sum() > 0 and loaded.image.shape[:3] == loaded.label.shape


def test_no_cases_a_missing_modality_and_a_corrupt_member_are_named(cases, tmp_path):
    empty = tmp_path / "notes.tar"
    with tarfile.open(empty, "w") as tf:
        add_bytes(tf, "docs/README.txt", b"hello")
    with pytest.raises(
        io.DataError, match=r"notes\.tar: no BraTS cases: no NIfTI files .* 1 members \(first: docs/README"
    ):
        archive.TarDataset(empty)

    case = cases / "BraTS2021_00000"
    partial = tmp_path / "partial.tar"
    with tarfile.open(partial, "w") as tf:
        for path in sorted(case.iterdir()):
            if not path.name.endswith("_t2.nii.gz"):
                tf.add(path, arcname=f"{case.name}/{path.name}")
    with pytest.raises(io.DataError, match=rf"{partial}:BraTS2021_00000: missing modality t2 \(expected a file named"):
        archive.TarDataset(partial)

    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tf:
        for path in sorted(case.iterdir()):
            data = path.read_bytes()
            add_bytes(tf, f"{case.name}/{path.name}", data[: len(data) // 2] if "_seg" in path.name else data)
    ds = archive.TarDataset(broken)  # the names are fine: the damage shows when the case is read
    with pytest.raises(io.DataError, match=rf"{broken}:BraTS2021_00000/BraTS2021_00000_seg\.nii\.gz: ") as got:
        ds[0]
    assert got.value.path == broken


def test_brainseg_unpack_command(tar, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["unpack", str(tar), "--out", str(out), "--quiet"]) == 0
    assert "15 file(s) written, 0 already there" in capsys.readouterr().out
    assert len(io.open_dataset(out)) == 3
    assert main(["unpack", str(tar), "--out", str(out), "-q"]) == 0
    assert "0 file(s) written, 15 already there" in capsys.readouterr().out
    (tmp_path / "bad.tar").write_bytes(b"\0" * 10)
    assert main(["unpack", str(tmp_path / "bad.tar"), "--out", str(out)]) == 2
    assert "bad.tar: not a tar archive" in capsys.readouterr().err


REAL_2021 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "brats2021"


def test_a_real_brats2021_case_reads_the_same_from_its_tar(tmp_path):
    if not (REAL_2021 / "BraTS2021_00006").is_dir():
        pytest.skip(f"the real BraTS 2021 case is not at {REAL_2021} (present in CI as ../shared)")
    tar = make_tar(REAL_2021, tmp_path / "BraTS2021_Training_Data.tar")
    ds = archive.TarDataset(tar)
    got, want = ds["BraTS2021_00006"], io.read_case(REAL_2021 / "BraTS2021_00006")
    np.testing.assert_array_equal(got.image, want.image)
    np.testing.assert_array_equal(got.label, want.label)
    assert got.shape == (240, 240, 155) and ds.grid(0) == ((240, 240, 155), (1.0, 1.0, 1.0))
    assert [int((got.label == k).sum()) for k in (1, 2, 3)] == [25506, 85957, 26448]  # SOURCE.md's counts
