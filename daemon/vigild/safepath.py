"""Reach a file's directory without following symlinks on the way.

Paths that vigild acts on as root (the original of a quarantined file, a
restore target, a file seen in detect mode) can lie under directories a
user controls. A user who swaps a directory for a symlink between our
steps could steer root's unlink or write anywhere. Walking the path one
component at a time with O_NOFOLLOW|O_DIRECTORY from "/" makes any
symlink in the directory part fail (ELOOP or ENOTDIR); the last step is
then done relative to the directory fd, with O_NOFOLLOW or
follow_symlinks=False.
"""

from __future__ import annotations

import errno
import os

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_parent(path: str) -> tuple[int, str]:
    """(fd of the directory holding ``path``, final name); raises OSError.

    ``path`` must be absolute and canonical (as event paths are); "." and
    ".." components are refused. The caller closes the fd.
    """
    parts = path.split("/")
    if not path.startswith("/") or not parts[-1] or any(p in (".", "..") for p in parts):
        raise OSError(errno.EINVAL, "not an absolute, canonical path", path)
    fd = os.open("/", _DIR_FLAGS)
    try:
        for name in parts[1:-1]:
            if not name:
                continue
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise
    return fd, parts[-1]


def open_file(path: str, flags: int) -> int:
    """Open ``path`` with ``flags``, following no symlink anywhere; raises OSError."""
    dfd, name = open_parent(path)
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    finally:
        os.close(dfd)
