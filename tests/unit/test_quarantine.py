"""The quarantine store: moves lose nothing, restores are exact, IDs are not paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vigild.quarantine import QuarantineError, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(str(tmp_path / "q"))
    s.prepare()
    return s


def _victim(tmp_path: Path, data: bytes = b"malicious bytes\n") -> Path:
    p = tmp_path / "victim.php"
    p.write_bytes(data)
    os.chmod(p, 0o640)
    os.utime(p, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    return p


def _add(store: Store, path: Path) -> object:
    fd = os.open(path, os.O_RDONLY)
    try:
        return store.add(fd, str(path), "rule-match", "Evil_Rule", ("Evil_Rule",))
    finally:
        os.close(fd)


def test_move_and_exact_restore(store: Store, tmp_path: Path) -> None:
    path = _victim(tmp_path)
    before = path.stat()
    item = _add(store, path)
    assert item is not None and not path.exists()
    assert (store.dir / item.id / "data").read_bytes() == b"malicious bytes\n"  # type: ignore[attr-defined]
    assert oct((store.dir / item.id / "data").stat().st_mode & 0o777) == "0o600"  # type: ignore[attr-defined]
    assert [i.path for i in store.items()] == [str(path)]
    assert store.restore(item.id) == str(path)  # type: ignore[attr-defined]
    after = path.stat()
    assert path.read_bytes() == b"malicious bytes\n"
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )
    assert (after.st_atime_ns, after.st_mtime_ns) == (before.st_atime_ns, before.st_mtime_ns)
    assert list(store.items()) == []


def test_second_detection_of_the_same_file_finds_nothing_to_move(
    store: Store, tmp_path: Path
) -> None:
    path = _victim(tmp_path)
    fd1, fd2 = os.open(path, os.O_RDONLY), os.open(path, os.O_RDONLY)
    try:
        first = store.add(fd1, str(path), "rule-match", "X")
        second = store.add(fd2, str(path), "rule-match", "X")
    finally:
        os.close(fd1)
        os.close(fd2)
    assert first is not None and second is None
    assert len(list(store.items())) == 1


def test_a_replaced_path_is_not_touched(store: Store, tmp_path: Path) -> None:
    path = _victim(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    try:
        path.unlink()
        path.write_bytes(b"someone else's new file")  # same name, another inode
        assert store.add(fd, str(path), "rule-match", "X") is None
    finally:
        os.close(fd)
    assert path.read_bytes() == b"someone else's new file"


def test_restore_refuses_to_overwrite_unless_told(store: Store, tmp_path: Path) -> None:
    path = _victim(tmp_path)
    item = _add(store, path)
    path.write_bytes(b"new file in its place")
    with pytest.raises(QuarantineError, match="exists; restore with --force"):
        store.restore(item.id)  # type: ignore[attr-defined]
    assert path.read_bytes() == b"new file in its place"
    other = tmp_path / "elsewhere.bin"
    assert store.restore(item.id, to=str(other)) == str(other)  # type: ignore[attr-defined]
    assert other.read_bytes() == b"malicious bytes\n"


def test_force_replaces(store: Store, tmp_path: Path) -> None:
    path = _victim(tmp_path)
    item = _add(store, path)
    path.write_bytes(b"placeholder")
    store.restore(item.id, force=True)  # type: ignore[attr-defined]
    assert path.read_bytes() == b"malicious bytes\n"


def test_damaged_item_is_refused_and_nothing_written(store: Store, tmp_path: Path) -> None:
    path = _victim(tmp_path)
    item = _add(store, path)
    (store.dir / item.id / "data").write_bytes(b"tampered")  # type: ignore[attr-defined]
    with pytest.raises(QuarantineError, match="damaged"):
        store.restore(item.id)  # type: ignore[attr-defined]
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".vigild-restore")] == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "20261122T101500-1a2b3c4d/../x", "", "x"])
def test_ids_are_not_paths(store: Store, bad: str) -> None:
    with pytest.raises(QuarantineError, match="not a quarantine id"):
        store.get(bad)


def test_a_crash_mid_move_leaves_the_original_and_is_cleaned_up(
    store: Store, tmp_path: Path
) -> None:
    path = _victim(tmp_path)
    half = store.dir / ".20261122T101500-1a2b3c4d.tmp"  # what a crash before the rename leaves
    half.mkdir()
    (half / "data").write_bytes(b"partial")
    assert path.exists()
    store.prepare()  # next start
    assert not half.exists()
    assert list(store.items()) == []
    assert path.read_bytes() == b"malicious bytes\n"


def test_store_and_the_state_directory_it_creates_are_0700(tmp_path: Path) -> None:
    """Whatever the umask, no directory vigild creates for its state lets others look in."""
    old = os.umask(0o022)
    try:
        Store(str(tmp_path / "state" / "lib" / "quarantine")).prepare()
    finally:
        os.umask(old)
    modes = {
        p.name: oct(p.stat().st_mode & 0o777)
        for p in (tmp_path / "state", tmp_path / "state" / "lib", tmp_path / "state/lib/quarantine")
    }
    assert modes == {"state": "0o700", "lib": "0o700", "quarantine": "0o700"}


def test_existing_parent_directories_keep_their_mode(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir(mode=0o755)
    os.chmod(tmp_path / "var", 0o755)
    Store(str(tmp_path / "var" / "quarantine")).prepare()
    assert oct((tmp_path / "var").stat().st_mode & 0o777) == "0o755"
    assert oct((tmp_path / "var" / "quarantine").stat().st_mode & 0o777) == "0o700"
