"""What ``vigild scan`` does with a file it found: --move, --remove, --quarantine.

Owns nothing but the one action per finding; the scan's parent process
calls it as each finding comes back from a worker. It never acts on a path
as such: it re-opens the file without following a symlink anywhere on
the way (safepath), hashes what it opened, and acts only if that SHA-256
is the finding's: a file changed or swapped since it was scanned is left
where it is and reported as an error. The original is unlinked only while
its name still holds the inode that was hashed.

--quarantine writes into the daemon's quarantine store (the one
``vigild quarantine list`` shows); --move copies into a directory of the
admin's choice (0600, a new name if one is taken) and then unlinks.
"""

from __future__ import annotations

import hashlib
import os
import stat
from enum import StrEnum

from vigild import safepath
from vigild.detector import Finding
from vigild.quarantine import QuarantineError, Store
from vigild.scanout import Reporter

_CHUNK = 1 << 20
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY


class ActionKind(StrEnum):
    MOVE = "moved"
    REMOVE = "removed"
    QUARANTINE = "quarantined"


class Refused(Exception):
    """The action was not done; the message says why (one line, after the path)."""


def _sha256(fd: int) -> str:
    h = hashlib.sha256()
    off = 0
    while chunk := os.pread(fd, _CHUNK, off):
        h.update(chunk)
        off += len(chunk)
    return h.hexdigest()


def _canonical(path: str) -> str:
    """``path`` absolute, its directory resolved; the last name is kept as it is."""
    path = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _same_inode(dfd: int, name: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _unlink_if_same(real: str, st: os.stat_result) -> None:
    dfd, name = safepath.open_parent(real)
    try:
        if not _same_inode(dfd, name, st):
            raise Refused("replaced since it was scanned: not removed")
        os.unlink(name, dir_fd=dfd)
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Actor:
    """Does one action to each malicious finding, reporting each through ``reporter``."""

    def __init__(
        self, kind: ActionKind, reporter: Reporter, move_to: str = "", store: Store | None = None
    ) -> None:
        self.kind = kind
        self.reporter = reporter
        self.move_to = move_to
        self.store = store

    def __call__(self, f: Finding) -> None:
        try:
            what = self._act(f)
        except Refused as e:
            self.reporter.error(f.path, f"not {self.kind.value}: {e}")
        except (OSError, QuarantineError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self.reporter.error(f.path, f"not {self.kind.value}: {why}")
        else:
            self.reporter.acted(f.path, self.kind.value, what)

    def _act(self, f: Finding) -> str:
        real = _canonical(f.path)
        try:
            fd = safepath.open_file(real, _READ)
        except safepath.SymlinkInPath as e:
            raise Refused(f"{e.filename} is a symbolic link now") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Refused("no longer a regular file")
            if not f.sha256 or _sha256(fd) != f.sha256:
                raise Refused("changed since it was scanned")
            if self.kind is ActionKind.REMOVE:
                _unlink_if_same(real, st)
                return "removed"
            if self.kind is ActionKind.MOVE:
                return f"moved to {self._move(fd, st, real, f.sha256)}"
            return self._quarantine(fd, real, f)
        finally:
            os.close(fd)

    def _quarantine(self, fd: int, real: str, f: Finding) -> str:
        assert self.store is not None
        rules = tuple(m.rule for m in f.matches)
        item = self.store.add(fd, real, f.verdict.reason.value, f.verdict.detail, rules)
        if item is None:
            raise Refused("replaced since it was scanned")
        if not item.original_removed:
            return f"copied into quarantine as {item.id}; the original is still there"
        return f"quarantined as {item.id}"

    def _move(self, fd: int, st: os.stat_result, real: str, sha256: str) -> str:
        """Copy the hashed bytes into the --move directory, then unlink the original."""
        dfd = os.open(self.move_to, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            name, out = self._new_file(dfd, os.path.basename(real))
            try:
                copied = self._copy(fd, out)
            finally:
                os.close(out)
            if copied != sha256:
                os.unlink(name, dir_fd=dfd)
                raise Refused("changed while it was being moved")
            os.fsync(dfd)
        finally:
            os.close(dfd)
        _unlink_if_same(real, st)
        return os.path.join(self.move_to, name)

    @staticmethod
    def _new_file(dfd: int, base: str) -> tuple[str, int]:
        """A file created in ``dfd`` named ``base``, or ``base.1``, ``base.2``...; (name, fd)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for n in range(1000):
            name = base if n == 0 else f"{base}.{n}"
            try:
                return name, os.open(name, flags, 0o600, dir_fd=dfd)
            except FileExistsError:
                continue
        raise Refused(f"1000 files named {base} in the --move directory already")

    @staticmethod
    def _copy(src: int, dst: int) -> str:
        h = hashlib.sha256()
        off = 0
        while chunk := os.pread(src, _CHUNK, off):
            h.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view) :]
            off += len(chunk)
        os.fsync(dst)
        return h.hexdigest()
