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
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SymlinkInPath(OSError):
    """A component of the path is a symbolic link; ``filename`` is the path up to it."""


def _components(path: str) -> list[str]:
    """The names of an absolute, canonical path to a file; raises OSError(EINVAL) otherwise."""
    parts = path.split("/")
    if not path.startswith("/") or not parts[-1] or any(p in (".", "..") for p in parts):
        raise OSError(errno.EINVAL, "not an absolute, canonical path", path)
    return [p for p in parts[1:] if p]


def _step(fd: int, name: str, where: str) -> int:
    """Open directory ``name`` in ``fd`` without following a link; errors name ``where``."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as e:
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            raise SymlinkInPath(errno.ELOOP, "is a symbolic link", where) from None
        raise OSError(e.errno, e.strerror, where) from None


def _walk(names: list[str]) -> int:
    """An fd of the directory "/" + names, reached one component at a time."""
    fd = os.open("/", _DIR_FLAGS)
    where = ""
    try:
        for name in names:
            where += "/" + name
            child = _step(fd, name, where)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_parent(path: str) -> tuple[int, str]:
    """(fd of the directory holding ``path``, final name); raises OSError.

    ``path`` must be absolute and canonical (as event paths are); "." and
    ".." components are refused. A symlink on the way raises
    SymlinkInPath naming it; any other failure an OSError naming the
    component. The caller closes the fd.
    """
    names = _components(path)
    return _walk(names[:-1]), names[-1]


def open_file(path: str, flags: int) -> int:
    """Open ``path`` with ``flags``, following no symlink anywhere; raises OSError."""
    dfd, name = open_parent(path)
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    finally:
        os.close(dfd)
