"""Quarantine: keep a detected file's bytes and metadata, and restore them exactly.

The store (root only, 0700) holds one directory per item::

    DIR/<id>/data        the bytes, 0600
    DIR/<id>/meta.json   path, owner, group, mode, times (ns), xattrs, hashes, why

Moving a file in: its bytes are copied through the fd the detection came
with (the bytes that were scanned, never a re-opened path) into
``DIR/.<id>.tmp``, fsynced with the metadata, renamed to ``DIR/<id>`` and
the store fsynced; only then is the original unlinked, and only if its
path still names the same inode. A crash at any step leaves the original,
or the original and the item: nothing is lost. Leftover ``.tmp``
directories are removed at start-up (their originals were never touched).

Restoring follows no symbolic link anywhere on the way (safepath), to the
original path as to ``--to``: it writes a new file beside the target
(O_EXCL|O_NOFOLLOW in the directory's fd), sets owner, group, mode, xattrs
and then atime/mtime (the kernel sets ctime; nobody can), fsyncs, and links
or renames it into place within that directory, refusing to replace an
existing file unless told, and a link at the target ever. ``--to`` into a
directory other users can write takes ``--force``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vigild import safepath

_ID = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$")
_CHUNK = 1 << 20
_ZEROS = memoryview(bytes(_CHUNK))


class QuarantineError(Exception):
    """A quarantine operation could not be done; the message says why."""


def make_private_dirs(path: str | Path) -> None:
    """Create ``path`` and its missing parents, each 0700 whatever the umask.

    (``Path.mkdir(mode=0o700, parents=True)`` gives the parents the default
    mode and the leaf 0700 less the umask.) Directories that exist keep theirs.
    """
    missing = []
    p = Path(os.path.abspath(path))
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile, by someone else: not ours to change
        d.chmod(0o700)


@dataclass(frozen=True)
class Item:
    id: str
    path: str
    uid: int
    gid: int
    mode: int
    atime_ns: int
    mtime_ns: int
    size: int
    sha256: str
    reason: str
    detail: str
    rules: tuple[str, ...]
    quarantined_at: float
    xattrs: dict[str, str] = field(default_factory=dict)  # name -> hex value
    original_removed: bool = True
    parent: str = ""  # "dev:ino:uid" of the directory it was in
    links: int = 0  # other names the file had (hard links), still there after the move


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _data_extents(fd: int) -> Iterator[tuple[int, int | None]]:
    """(start, end) of each stretch of data in ``fd``, holes skipped; end None: until EOF.

    Read lazily, so data written while we copy is still found. A filesystem
    without SEEK_DATA gives one stretch: the whole file.
    """
    off = 0
    while True:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return  # nothing but a hole (or nothing) from off to EOF
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP) and off == 0:
                yield 0, None
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        off = end


def _hash_zeros(h: Any, n: int) -> None:
    while n > 0:
        step = min(n, _CHUNK)
        h.update(_ZEROS[:step])
        n -= step


def _copy_range(src_fd: int, dst_fd: int, start: int, end: int | None, h: Any) -> int:
    """Copy src[start:end] to the same offsets of dst; returns where it stopped (EOF)."""
    off = start
    while end is None or off < end:
        chunk = os.pread(src_fd, _CHUNK if end is None else min(_CHUNK, end - off), off)
        if not chunk:
            break
        h.update(chunk)
        view = memoryview(chunk)
        while view:
            n = os.pwrite(dst_fd, view, off)
            view, off = view[n:], off + n
    return off


def _copy(src_fd: int, dst_fd: int) -> tuple[int, str]:
    """Copy all of src to the empty dst, keeping holes; returns (bytes, sha256 of them).

    SEEK_DATA moves src's offset: it is put back (the fd may be an opener's event fd).
    """
    h = hashlib.sha256()
    saved = os.lseek(src_fd, 0, os.SEEK_CUR)
    off = 0
    try:
        for start, end in _data_extents(src_fd):
            _hash_zeros(h, start - off)
            off = _copy_range(src_fd, dst_fd, start, end, h)
            if end is None or off < end:
                break  # at EOF
        size = os.fstat(src_fd).st_size
        if size > off:  # a hole at the end
            _hash_zeros(h, size - off)
            off = size
        os.ftruncate(dst_fd, off)
    finally:
        os.lseek(src_fd, saved, os.SEEK_SET)
    return off, h.hexdigest()


def _lstat(name: str, dfd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _refuse_shared_dir(dfd: int, shown: str) -> None:
    """Refuse a directory that users other than root (and us) can write.

    Its owner, or anyone it lets write, could replace or hard-link the
    restored file (owner, mode and set-id bits as quarantined) at will.
    """
    st = os.fstat(dfd)
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in (0, os.geteuid()) or mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise QuarantineError(
            f"{shown}: other users can write there (owner uid {st.st_uid}, mode {mode:04o}); "
            "restore with --force to do it anyway"
        )


def _identity(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_uid}"


def _xattrs(fd: int) -> dict[str, str]:
    try:
        names = os.listxattr(fd)
    except OSError:
        return {}
    out = {}
    for name in names:
        try:
            out[name] = os.getxattr(fd, name).hex()
        except OSError:
            continue
    return out


class Store:
    """The quarantine directory. Every method raises QuarantineError on failure."""

    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)
        self._lock = threading.Lock()  # one move at a time: two detections of one file

    def prepare(self) -> None:
        """Create the store 0700 (or tighten it) and drop half-written items."""
        make_private_dirs(self.dir)
        st = self.dir.stat()
        if st.st_uid != os.geteuid():
            raise QuarantineError(f"{self.dir}: owned by uid {st.st_uid}, not by us")
        if stat.S_IMODE(st.st_mode) != 0o700:
            self.dir.chmod(0o700)
        for tmp in self.dir.glob(".*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------ moving in

    def add(
        self, fd: int, path: str, reason: str, detail: str, rules: tuple[str, ...] = ()
    ) -> Item | None:
        """Quarantine the file open at ``fd`` (shown as ``path``).

        None when ``path`` no longer names that file: another worker moved
        it in already (two events for one write), or it was moved away.
        """
        with self._lock:
            st = os.fstat(fd)
            try:
                dfd, name = safepath.open_parent(path)
            except OSError:
                return None  # gone, or a symlink now stands in its path
            try:
                now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    return None
                return self._add(fd, st, dfd, name, path, reason, detail, rules)
            except OSError:
                return None
            finally:
                os.close(dfd)

    def _add(
        self,
        fd: int,
        st: os.stat_result,
        dfd: int,
        name: str,
        path: str,
        reason: str,
        detail: str,
        rules: tuple[str, ...],
    ) -> Item:
        item_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        tmp = self.dir / f".{item_id}.tmp"
        try:
            tmp.mkdir(mode=0o700)
            size, sha = self._write_data(fd, tmp / "data")
            item = Item(
                id=item_id,
                path=path,
                uid=st.st_uid,
                gid=st.st_gid,
                mode=stat.S_IMODE(st.st_mode),
                atime_ns=st.st_atime_ns,
                mtime_ns=st.st_mtime_ns,
                size=size,
                sha256=sha,
                reason=reason,
                detail=detail,
                rules=tuple(rules),
                quarantined_at=time.time(),
                xattrs=_xattrs(fd),
                parent=_identity(os.fstat(dfd)),
                links=max(st.st_nlink - 1, 0),
            )
            self._write_meta(tmp / "meta.json", item)
            _fsync_dir(tmp)
            os.rename(tmp, self.dir / item_id)
            _fsync_dir(self.dir)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise QuarantineError(f"{path}: cannot quarantine: {e.strerror or e}") from e
        if not self._remove_original(dfd, name, st):
            item = Item(**{**asdict(item), "original_removed": False})
            self._write_meta(self.dir / item_id / "meta.json", item)
        return item

    @staticmethod
    def _write_data(src_fd: int, dst: Path) -> tuple[int, str]:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            result = _copy(src_fd, fd)
            os.fsync(fd)
            return result
        finally:
            os.close(fd)

    @staticmethod
    def _write_meta(dst: Path, item: Item) -> None:
        tmp = dst.with_suffix(".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(asdict(item), indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dst)

    @staticmethod
    def _remove_original(dfd: int, name: str, st: os.stat_result) -> bool:
        """Unlink ``name`` in ``dfd`` if it still names the quarantined inode; fsync the directory."""
        try:
            now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return False  # replaced since: not ours to remove
            os.unlink(name, dir_fd=dfd)
            os.fsync(dfd)
            return True
        except OSError:
            return False

    # -------------------------------------------------------------- reading

    def _item_dir(self, item_id: str) -> Path:
        if not _ID.match(item_id):
            raise QuarantineError(
                f"{item_id!r} is not a quarantine id (see `vigild quarantine list`)"
            )
        d = self.dir / item_id
        if not (d / "meta.json").is_file():
            raise QuarantineError(f"no quarantined item {item_id} in {self.dir}")
        return d

    def get(self, item_id: str) -> Item:
        meta = self._item_dir(item_id) / "meta.json"
        try:
            data = json.loads(meta.read_text())
            data["rules"] = tuple(data.get("rules", ()))
            return Item(**data)
        except (OSError, ValueError, TypeError) as e:
            raise QuarantineError(f"{meta}: unreadable: {e}") from e

    def state(self, item: Item) -> str:
        """The item's bytes: ok, missing (gone), or damaged (not the size quarantined)."""
        try:
            st = os.stat(self.dir / item.id / "data", follow_symlinks=False)
        except FileNotFoundError:
            return "missing"
        if not stat.S_ISREG(st.st_mode) or st.st_size != item.size:
            return "damaged"
        return "ok"

    def items(self) -> Iterator[Item]:
        """Every item, oldest first."""
        if not self.dir.is_dir():
            return
        for d in sorted(self.dir.iterdir()):
            if _ID.match(d.name):
                yield self.get(d.name)

    # ------------------------------------------------------------ restoring

    def restore(self, item_id: str, force: bool = False, to: str | None = None) -> str:
        """Put item ``item_id`` back (at ``to`` if given); returns the path written.

        No symbolic link is followed anywhere on the way, to the original
        path as to ``to``: a user who owns a directory on the way could
        otherwise choose where root writes. The file is created beside
        the target (O_EXCL|O_NOFOLLOW in the directory's fd) and renamed
        or linked into place within that directory. To the original path,
        the directory must be the very one the file was taken from. ``to``
        in a directory other users can write is refused unless ``force``.
        """
        item = self.get(item_id)
        self._check_data(item)
        target = os.path.abspath(to) if to else item.path
        dfd, name = self._restore_dir(item, target, explicit=to is not None, force=force)
        try:
            self._restore_into(item, dfd, name, target, force)
        finally:
            os.close(dfd)
        self.delete(item_id)
        return target

    def _check_data(self, item: Item) -> None:
        state = self.state(item)
        data = self.dir / item.id / "data"
        if state == "missing":
            raise QuarantineError(
                f"quarantine item {item.id} cannot be restored: its bytes are gone ({data} "
                f"is missing); `vigild quarantine delete {item.id}` removes the entry"
            )
        if state == "damaged":
            raise QuarantineError(
                f"quarantine item {item.id} is damaged ({data} is not the {item.size} bytes "
                "quarantined); nothing restored"
            )

    @staticmethod
    def _restore_dir(item: Item, target: str, explicit: bool, force: bool) -> tuple[int, str]:
        try:
            dfd, name = safepath.open_parent(target)
        except safepath.SymlinkInPath as e:
            raise QuarantineError(
                f"{e.filename} is a symbolic link: restore never follows one "
                "(give a path without links with --to PATH)"
            ) from e
        except OSError as e:
            raise QuarantineError(f"{e.filename}: cannot restore there: {e.strerror}") from e
        try:
            if not explicit and item.parent and _identity(os.fstat(dfd)) != item.parent:
                raise QuarantineError(
                    f"{os.path.dirname(target)} is not the directory the file was taken from "
                    "(replaced since?); use --to PATH"
                )
            if explicit and not force:
                _refuse_shared_dir(dfd, os.path.dirname(target))
        except BaseException:
            os.close(dfd)
            raise
        return dfd, name

    def _restore_into(self, item: Item, dfd: int, name: str, target: str, force: bool) -> None:
        now = _lstat(name, dfd)
        if now is not None and stat.S_ISLNK(now.st_mode):
            raise QuarantineError(
                f"{target} is a symbolic link: restore never follows nor replaces one "
                "(remove it, or --to PATH elsewhere)"
            )
        if now is not None and not force:
            raise QuarantineError(
                f"{target} exists; restore with --force to replace it, or --to PATH elsewhere"
            )
        tmp = f".vigild-restore-{secrets.token_hex(6)}"
        try:
            self._write_restored(item, dfd, tmp)
            if force:  # rename replaces a link put there since, never writes through it
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            else:  # fails if the target appeared meanwhile
                os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
                os.unlink(tmp, dir_fd=dfd)
            os.fsync(dfd)
        except OSError as e:
            if _lstat(tmp, dfd) is not None:
                os.unlink(tmp, dir_fd=dfd)
            raise QuarantineError(f"{target}: cannot restore: {e.strerror or e}") from e

    def _write_restored(self, item: Item, dfd: int, dst: str) -> None:
        src = os.open(self._item_dir(item.id) / "data", os.O_RDONLY | os.O_CLOEXEC)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(dst, flags, 0o600, dir_fd=dfd)
        try:
            size, sha = _copy(src, fd)
            if (size, sha) != (item.size, item.sha256):
                raise QuarantineError(f"quarantine item {item.id} is damaged (hash mismatch)")
            os.fchown(fd, item.uid, item.gid)
            os.fchmod(fd, item.mode)  # after chown, which clears set-id bits
            for name, value in item.xattrs.items():
                # best effort: e.g. security.* labels this kernel does not take
                with contextlib.suppress(OSError):
                    os.setxattr(fd, name, bytes.fromhex(value))
            os.utime(fd, ns=(item.atime_ns, item.mtime_ns))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(dst, dir_fd=dfd)
            raise
        finally:
            os.close(src)
        os.close(fd)

    def delete(self, item_id: str) -> None:
        d = self._item_dir(item_id)
        shutil.rmtree(d)
        _fsync_dir(self.dir)
