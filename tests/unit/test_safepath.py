"""No symlink on the way: what vigild opens or unlinks as root is where the path says."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from vigild import safepath
from vigild.quarantine import QuarantineError, Store


def test_open_file_through_real_directories(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    fd = safepath.open_file(str(tmp_path / "a" / "b" / "f"), os.O_RDONLY)
    assert os.read(fd, 1) == b"x"
    os.close(fd)


@pytest.mark.parametrize("where", ["dir", "file"])
def test_a_symlink_anywhere_is_refused(tmp_path: Path, where: str) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("secret")
    if where == "dir":
        (tmp_path / "link").symlink_to(real)
        path = tmp_path / "link" / "f"
    else:
        (tmp_path / "lf").symlink_to(real / "f")
        path = tmp_path / "lf"
    with pytest.raises(OSError) as e:
        safepath.open_file(str(path), os.O_RDONLY)
    assert e.value.errno in (errno.ELOOP, errno.ENOTDIR)


@pytest.mark.parametrize("bad", ["relative/path", "/a/../b", "/a/./b", "/a/b/"])
def test_only_absolute_canonical_paths(bad: str) -> None:
    with pytest.raises(OSError) as e:
        safepath.open_parent(bad)
    assert e.value.errno == errno.EINVAL


def test_restore_does_not_follow_a_directory_swapped_for_a_link(tmp_path: Path) -> None:
    """The owner of the original directory points it at a place root writes (/etc/profile.d)."""
    store = Store(str(tmp_path / "q"))
    store.prepare()
    userdir = tmp_path / "userdir"
    userdir.mkdir()
    (userdir / "zz-evil.sh").write_text("echo pwned\n")
    fd = os.open(userdir / "zz-evil.sh", os.O_RDONLY)
    try:
        item = store.add(fd, str(userdir / "zz-evil.sh"), "rule-match", "X")
    finally:
        os.close(fd)
    assert item is not None
    profile_d = tmp_path / "profile.d"
    profile_d.mkdir()
    userdir.rename(tmp_path / "userdir.old")  # moved away, still alive (no inode reuse)
    userdir.symlink_to(profile_d)
    with pytest.raises(QuarantineError, match=r"userdir is a symbolic link: restore never follows"):
        store.restore(item.id)
    assert list(profile_d.iterdir()) == []
    # a new directory at the same path is not the one the file came from either
    userdir.unlink()
    userdir.mkdir()
    with pytest.raises(QuarantineError, match="not the directory the file was taken from"):
        store.restore(item.id)
    # the admin can still say where it goes
    assert store.restore(item.id, to=str(tmp_path / "inspect.sh")) == str(tmp_path / "inspect.sh")


def test_quarantine_does_not_unlink_through_a_swapped_directory(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "q"))
    store.prepare()
    protected = tmp_path / "protected"
    protected.mkdir()
    (protected / "rules.yar").write_text("matches its own strings")
    fd = os.open(protected / "rules.yar", os.O_RDONLY)
    link = tmp_path / "www-u1"
    link.symlink_to(protected)  # what the walk saw as www/u1 is now a link
    try:
        assert store.add(fd, str(link / "rules.yar"), "rule-match", "X") is None
    finally:
        os.close(fd)
    assert (protected / "rules.yar").exists()
