"""``vigild scan``'s clean cache on disk: a second scan of an unchanged tree reads nothing.

A file found clean is remembered by the state of its inode: (filesystem,
inode, ctime in ns, size), under the scan's *setting* (rules generation,
scan limits, archive settings, policy). The next scan stats each file and
answers a remembered one clean without opening it. Any write or truncate
sets a new ctime, and so does a rename, chmod or chown.

The guarantees are the daemon's (native/remember.c), no weaker:

* a verdict is remembered only when the file's size and ctime are the same
  after the scan as when it was opened;
* and only when the file last changed more than ``fresh_window_ms`` before
  its bytes were read: before kernel 6.13 a rewrite within the same clock
  tick can keep its ctime, so a file written during that tick is scanned
  again next time;
* and only when nobody holds it open for writing (a read lease is granted):
  a writer through a shared mapping changes bytes without a new ctime.

The filesystem must be named by something that survives a reboot, unlike
device numbers: on ext2/3/4 and btrfs, statfs's f_fsid, which those derive
from the filesystem's UUID (btrfs per subvolume, whose inode numbers
repeat). Elsewhere (xfs and f2fs derive it from the device number, tmpfs
forgets everything at reboot) the identity is the device number within
this boot (/proc/sys/kernel/random/boot_id): such entries expire at the
next boot.

The file lives in the scan's compiled directory (never the daemon's
state) and is trusted only when this user owns it and nobody else can
write it: whoever can write it can declare any file clean. Format:
``VIGSCANC`` magic, u32 version, u32 count, u32 JSON length, 16-byte
setting digest, u32 CRC-32 of what follows: a JSON object (``stamp``, see
vigild.scanstamp; ``limited``, below), then ``count`` 16-byte keys, each a
BLAKE2b digest of the fields above (a forged key would need a preimage).

Besides clean files, it remembers archives whose unpacking stops the same
way each time (a damaged archive, a member limit; never a timeout, nor one
whose member scan failed), under the same rules as a clean file and a key
of their own, with the line the scan printed (``LIMIT ...``): a second
scan prints it again without opening the file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigild.owned import trusted
from vigild.scanstamp import Stamp, ctime_end_ns

log = logging.getLogger(__name__)

NAME = "scan-clean.cache"
_MAGIC = b"VIGSCANC"
_HEADER = struct.Struct("<8sIII16sI")
_VERSION = 2
KEY_LEN = 16
_INODE = struct.Struct("<QQQ")
MAX_ENTRIES = 4 << 20  # 64 MiB of keys: the newest are kept
MAX_LIMITED = 1 << 16  # archives remembered with their unpack limit: the newest are kept
# appended to a key's extra: the key of an archive that unpacking ends the same
# way each time (a limit, not a timeout), remembered with what the scan said of it
LIMITED = "\0unpack-limit"
# filesystems whose f_fsid comes from their UUID (fs/ext4/super.c, fs/btrfs/super.c)
STABLE_FSID = frozenset({"ext2", "ext3", "ext4", "btrfs"})


def _boot_id() -> bytes:
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read().strip()
    except OSError:
        return os.urandom(16)  # no boot id: entries of this run are never reused


class Keys:
    """Computes the key of a file's state; one per scan (and per worker process)."""

    def __init__(self, setting: bytes, fstypes: dict[int, str], fresh_ms: int) -> None:
        self.setting = setting  # 16-byte digest of the generation and scan settings
        self.fstypes = fstypes  # device -> filesystem type (scan.read_mounts)
        self.fresh_ns = fresh_ms * 1_000_000
        self._fs: dict[int, bytes] = {}
        self._vfs: dict[int, os.statvfs_result] = {}  # statvfs, once per device
        self._base: dict[int, Any] = {}  # device -> blake2b of setting and filesystem
        self._boot = _boot_id()

    def _filesystem(self, dev: int, statvfs: os.statvfs_result) -> bytes:
        ident = self._fs.get(dev)
        if ident is None:
            if self.fstypes.get(dev) in STABLE_FSID and statvfs.f_fsid:
                ident = b"fsid:%x" % statvfs.f_fsid
            else:
                ident = b"boot:%s:%x" % (self._boot, dev)
            self._fs[dev] = ident
        return ident

    def key(self, st: os.stat_result, statvfs: os.statvfs_result, extra: str = "") -> bytes:
        """The key of the file whose stat is ``st`` (``extra``: its path, when rules read it)."""
        base = self._base.get(st.st_dev)
        if base is None:  # the keyed hash of setting and filesystem, once per device
            base = hashlib.blake2b(digest_size=KEY_LEN, key=self.setting)
            base.update(self._filesystem(st.st_dev, statvfs))
            self._base[st.st_dev] = base
        h = base.copy()
        h.update(_INODE.pack(st.st_ino, st.st_ctime_ns, st.st_size))
        if extra:
            h.update(extra.encode("utf-8", "surrogateescape"))
        return h.digest()

    def lookup(
        self, path: str, follow: bool, known: set[bytes], limited: dict[bytes, str], extra: str = ""
    ) -> tuple[int, str | None] | None:
        """(size, None) if ``known`` holds ``path`` as it is now, (size, why) if
        ``limited`` does, else None (one stat, and one statvfs per device)."""
        try:
            st = os.stat(path, follow_symlinks=follow)
            vfs = self._statvfs(st.st_dev, path)
        except OSError:
            return None
        if self.key(st, vfs, extra) in known:
            return st.st_size, None
        if limited:
            why = limited.get(self.key(st, vfs, extra + LIMITED))
            if why is not None:
                return st.st_size, why
        return None

    def _statvfs(self, dev: int, path: str) -> os.statvfs_result:
        vfs = self._vfs.get(dev)
        if vfs is None:
            vfs = self._vfs[dev] = os.statvfs(path)
        return vfs

    def after_clean(
        self,
        fd: int,
        before: os.stat_result,
        read_at_ns: int,
        writers_clear: bool,
        extra: str = "",
    ) -> bytes | None:
        """The key to remember for a clean file, or None when the daemon would not cache it.

        ``before``: its fstat when opened; ``read_at_ns``: CLOCK_REALTIME
        before its bytes were read (ctime is in the same clock);
        ``writers_clear``: no_writers(fd) said so after that time, before
        the first byte was read. A writer holding a mapping it dirtied
        before can rewrite what was read with no new ctime and close before
        this check, so only that earlier one proves the bytes: any writer
        since had to open the file again and write, which sets a new ctime.
        """
        if not writers_clear:
            return None
        try:
            now = os.fstat(fd)
            vfs = self._statvfs(now.st_dev, f"/proc/self/fd/{fd}")
        except OSError:
            return None
        from vigild import native  # the workers have it loaded already

        # found by review: on tmpfs (ramfs, hugetlbfs) a write through a mapping sets
        # no ctime, and an overlay shows such an upper file's; by f_type, not by
        # mountinfo, where an overlay's files may have a device of their own
        if native.ctime_proof(fd) != native.CTIME_PROVES:
            return None
        if (now.st_size, now.st_ctime_ns, now.st_ino) != (
            before.st_size,
            before.st_ctime_ns,
            before.st_ino,
        ):
            return None  # changed while it was read
        if read_at_ns < ctime_end_ns(now.st_ctime_ns) + self.fresh_ns or not no_writers(fd):
            return None
        return self.key(now, vfs, extra)


def no_writers(fd: int) -> bool:
    """True when a read lease is granted: nobody has the file open for writing.

    Needs the file's ownership or CAP_LEASE; any failure means "not proven"."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError:
        return False
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return True


def setting_digest(generation: int, *parts: object) -> bytes:
    """The 16-byte digest of what a verdict depends on besides the file."""
    text = "|".join([f"{generation:016x}", *(repr(p) for p in parts)])
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass(frozen=True)
class Saved:
    """A cache file as read: its setting digest, stamp and keys."""

    setting: bytes
    stamp: Stamp | None
    keys: set[bytes] = field(default_factory=set)
    limited: dict[bytes, str] = field(default_factory=dict)  # key -> the limit's message


def read(path: Path) -> Saved | None:
    """The cache file at ``path``; None when absent, untrusted, of another version, or damaged."""
    if not path.exists():
        return None
    if not trusted(path):
        log.warning("%s: not trusted (owner or mode), ignored", path)
        return None
    try:
        data = path.read_bytes()
    except OSError as e:
        log.warning("%s: %s, ignored", path, e.strerror)
        return None
    if len(data) < _HEADER.size or data[:8] != _MAGIC:
        log.warning("%s: not a vigild scan cache (damaged), ignored", path)
        return None
    _, version, n, stamp_len, setting, crc = _HEADER.unpack_from(data)
    if version != _VERSION:
        log.debug("%s: made by another version of vigild, not used", path)
        return None
    body = data[_HEADER.size :]
    keys = body[stamp_len:]
    if len(keys) != n * KEY_LEN or zlib.crc32(body) != crc:
        log.warning("%s: damaged, ignored", path)
        return None
    stamp, limited = None, {}
    try:
        extra = json.loads(body[:stamp_len]) if stamp_len else {}
        limited = {bytes.fromhex(k): str(v) for k, v in extra.get("limited", {}).items()}
        stamp = Stamp.from_json(extra["stamp"]) if extra.get("stamp") else None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("%s: damaged stamp (%s), ignored", path, e)
    keyset = {keys[i : i + KEY_LEN] for i in range(0, len(keys), KEY_LEN)}
    return Saved(setting, stamp, keyset, limited)


def save(
    path: Path,
    setting: bytes,
    new: Iterable[bytes],
    old: Iterable[bytes],
    stamp: Stamp | None = None,
    limited: dict[bytes, str] | None = None,
) -> int:
    """Write ``new`` then ``old`` (up to MAX_ENTRIES), ``limited`` and ``stamp``
    atomically; returns how many keys."""
    keep = dict.fromkeys(new)
    for k in old:
        if len(keep) >= MAX_ENTRIES:
            break
        keep.setdefault(k)
    keys = b"".join(list(keep)[:MAX_ENTRIES])
    n = len(keys) // KEY_LEN
    extra = {
        "stamp": stamp.to_json() if stamp is not None else None,
        "limited": {k.hex(): v for k, v in list((limited or {}).items())[-MAX_LIMITED:]},
    }
    body = json.dumps(extra).encode()
    stamp_len = len(body)
    body += keys
    head = _HEADER.pack(_MAGIC, _VERSION, n, stamp_len, setting, zlib.crc32(body))
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(head + body)
    os.replace(tmp, path)
    return n
