"""A protected directory is decided by the file, never by the path text alone.

Review finding (issue 13 work): an open made in another mount namespace reads
as that namespace's path; a user who bind-mounts their own directory over a
protected one there got feed detections on their file allowed as
"protected". Here the same shapes without namespaces: a path that names
another file, and a path through a link.
"""

from __future__ import annotations

import os
from pathlib import Path

from vigild.protect import Protected


def _open(p: Path) -> int:
    return os.open(p, os.O_RDONLY)


def test_a_file_in_a_protected_directory_is_covered(tmp_path: Path) -> None:
    (tmp_path / "prot").mkdir()
    f = tmp_path / "prot" / "tool"
    f.write_bytes(b"x")
    fd = _open(f)
    try:
        assert Protected(dirs=(str(tmp_path / "prot"),)).covers(fd, str(f))
    finally:
        os.close(fd)


def test_a_path_that_names_another_file_covers_nothing(tmp_path: Path) -> None:
    (tmp_path / "prot").mkdir()
    (tmp_path / "prot" / "evil").write_bytes(b"the real protected file")
    mine = tmp_path / "mine"
    mine.write_bytes(b"the user's file, seen under the protected path")
    fd = _open(mine)
    try:  # what an event from another mount namespace looks like: path text != fd
        assert not Protected(dirs=(str(tmp_path / "prot"),)).covers(
            fd, str(tmp_path / "prot" / "evil")
        )
    finally:
        os.close(fd)


def test_a_path_through_a_link_covers_nothing(tmp_path: Path) -> None:
    (tmp_path / "user").mkdir()
    f = tmp_path / "user" / "evil"
    f.write_bytes(b"x")
    (tmp_path / "prot").symlink_to(tmp_path / "user")
    fd = _open(f)
    try:
        assert not Protected(dirs=(str(tmp_path / "prot"),)).covers(
            fd, str(tmp_path / "prot" / "evil")
        )
    finally:
        os.close(fd)
