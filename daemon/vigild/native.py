"""The only importer of the compiled ``vigild._native`` module.

Turns the C functions' ``-errno`` returns into exceptions and their handles
into Python objects that free themselves. Nothing else in the package
touches ``ffi`` or ``lib``.

Why one module of this size: it is the only importer of the C module by
design (one place turns -errno into exceptions), so every C call's wrapper
lives here.
"""

from __future__ import annotations

import errno
import mmap
import os
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from vigild._native import ffi, lib

SHA256_LEN = 32
MD5_LEN = 16
SHA1_LEN = 20
SIZE_ANY = 0xFFFFFFFFFFFFFFFF
SHA256_REC_LEN = int(lib.VG_SHA256_REC_LEN)
MD5_REC_LEN = int(lib.VG_MD5_REC_LEN)
SHA1_REC_LEN = int(lib.VG_SHA1_REC_LEN)
HASHDB_VERSION = int(lib.VG_HASHDB_VERSION)

# What the hash database loader's errno values mean for that file.
_DB_ERRORS = {
    errno.ENOEXEC: "not a vigild hash database (bad magic); compile it with 'vigild rules compile'",
    errno.EPROTONOSUPPORT: (
        "hash database format version not supported by this vigild;"
        " compile it again with 'vigild rules compile'"
    ),
    errno.ENODATA: "hash database is truncated",
    errno.EBADMSG: "hash database is corrupted (checksum or structure mismatch)",
}


class NativeError(OSError):
    """A native call failed; ``errno`` and ``filename`` are set when known."""


def _check(ret: int, what: str, filename: str | None = None) -> int:
    """Raise NativeError for a negative return, else return it."""
    if ret < 0:
        err = -ret
        raise NativeError(err, f"{what}: {os.strerror(err)}", filename)
    return ret


def _text(ptr: Any) -> str:
    """A C string (a name inside the hash database) as str."""
    return str(ffi.string(ptr).decode("utf-8", "replace"))


# How far a file's ctime proves its bytes, by its filesystem (native/remember.c)
CTIME_PROVES = lib.VG_CTIME_PROVES  # a write sets a new one, mapped writes too
CTIME_WITHOUT_WRITERS = lib.VG_CTIME_WITHOUT_WRITERS  # tmpfs: mapped writes set none
CTIME_NOTHING = lib.VG_CTIME_NOTHING  # an overlay: nothing kept


def ctime_proof(fd: int) -> int:
    """CTIME_* for the file open at ``fd`` (by fstatfs's f_type; unknown: NOTHING)."""
    ret = int(lib.vg_ctime_proof(fd))
    return CTIME_NOTHING if ret < 0 else ret


def hash_fd(fd: int, md5: bool = False) -> tuple[bytes, bytes | None, int]:
    """SHA-256 (and MD5) of the file behind ``fd`` from offset 0 to EOF.

    Reads with pread: the fd's offset is left as it was. Returns
    ``(sha256, md5 or None, number of bytes hashed)``.
    """
    sha = ffi.new("uint8_t[32]")
    md = ffi.new("uint8_t[16]") if md5 else ffi.NULL
    nbytes = ffi.new("uint64_t *")
    _check(lib.vg_hash_fd(fd, sha, md, nbytes), "hashing")
    return bytes(sha), (bytes(md) if md5 else None), int(nbytes[0])


@dataclass(frozen=True)
class HashDbInfo:
    version: int
    sha256_entries: int
    md5_entries: int
    distinct_sizes: int
    names_bytes: int
    file_bytes: int
    any_size: bool
    crc: int
    sha1_entries: int


def write_hashdb(
    path: str, sha_records: bytes, md5_records: bytes, names: bytes, sha1_records: bytes = b""
) -> None:
    """Write a database from packed records (layout in native/vigild.h)."""
    n_sha, rest_sha = divmod(len(sha_records), SHA256_REC_LEN)
    n_md5, rest_md5 = divmod(len(md5_records), MD5_REC_LEN)
    n_sha1, rest_sha1 = divmod(len(sha1_records), SHA1_REC_LEN)
    if rest_sha or rest_md5 or rest_sha1:
        raise ValueError("packed hash records have a partial record")
    ret = lib.vg_hashdb_write(
        path.encode(), sha_records, n_sha, md5_records, n_md5, sha1_records, n_sha1,
        names, len(names),
    )  # fmt: skip
    _check(ret, "writing hash database", path)


@dataclass(frozen=True)
class ListRead:
    """What one hash list gave: entries (SHA-1 ones among them), or the line it stopped at."""

    lines: int
    entries: int
    sha1: int  # of the entries, those that are SHA-1
    bad_line: int  # 0, or the line (from 1) only Python can judge
    bad_offset: int
    bad_length: int


class HashListBuilder:
    """Hash lists read in C (native/hashlist.c), then written as one database."""

    def __init__(
        self, spill_dir: str | None = None, run_bytes: int = 0, names_bytes: int = 0
    ) -> None:
        """With ``spill_dir``, memory stays bounded: entries are sorted in runs of
        ``run_bytes`` (0: 32 MiB) and names past ``names_bytes`` (0: 16 MiB) wait in
        unnamed files there."""
        out = ffi.new("struct vg_hashlist **")
        _check(lib.vg_hashlist_new(out), "starting a hash list")
        self._list: Any = ffi.gc(out[0], lib.vg_hashlist_free)
        if spill_dir is not None:
            ret = lib.vg_hashlist_spill(self._list, spill_dir.encode(), run_bytes, names_bytes)
            _check(ret, "setting where a hash list sorts", spill_dir)

    def parse(self, fd: int, stem: str) -> ListRead:
        """Read the list behind ``fd``; entries without a name take ``stem``.

        When a line is not read here, ``bad_line`` names it and nothing of
        this list is kept.
        """
        r = ffi.new("struct vg_hashlist_result *")
        name = stem.encode("utf-8", "replace").replace(b"\0", b"?")
        ret = lib.vg_hashlist_parse(self._list, fd, name, r)
        if ret != -errno.EILSEQ:
            _check(ret, "reading a hash list")
        return ListRead(
            int(r.lines), int(r.entries), int(r.sha1),
            int(r.bad_line), int(r.bad_offset), int(r.bad_length),
        )  # fmt: skip

    def add(self, digest: bytes, size: int, name: bytes) -> None:
        """Add one entry read in Python (a SHA-256, an MD5 or a SHA-1)."""
        ret = lib.vg_hashlist_add(self._list, digest, len(digest), size, name, len(name))
        _check(ret, "adding a hash entry")

    def counts(self) -> tuple[int, int, int]:
        """(SHA-256, MD5, SHA-1) entries added so far, repeats included."""
        sha, md5, sha1 = ffi.new("uint32_t *"), ffi.new("uint32_t *"), ffi.new("uint32_t *")
        lib.vg_hashlist_counts(self._list, sha, md5, sha1)
        return int(sha[0]), int(md5[0]), int(sha1[0])

    def write(self, path: str) -> None:
        """Write the database of every entry added (atomically)."""
        _check(lib.vg_hashlist_write(self._list, path.encode()), "writing hash database", path)


class HashDb:
    """A known-bad hash database, memory-mapped; safe to share across threads."""

    def __init__(self, path: str) -> None:
        out = ffi.new("struct vg_hashdb **")
        ret = lib.vg_hashdb_open(path.encode(), out)
        if ret < 0:
            err = -ret
            raise NativeError(err, _DB_ERRORS.get(err, os.strerror(err)), path)
        self.path = path
        self._db: Any = ffi.gc(out[0], lib.vg_hashdb_close)

    @property
    def handle(self) -> Any:
        return self._db

    def info(self) -> HashDbInfo:
        c = ffi.new("struct vg_hashdb_info *")
        lib.vg_hashdb_info(self._db, c)
        return HashDbInfo(
            version=c.version,
            sha256_entries=c.n_sha256,
            md5_entries=c.n_md5,
            distinct_sizes=c.n_sizes,
            names_bytes=c.names_len,
            file_bytes=c.file_size,
            any_size=bool(c.any_size),
            crc=c.crc,
            sha1_entries=c.n_sha1,
        )

    def size_carried(self, size: int) -> bool:
        """True when some entry carries exactly ``size`` (any-size entries aside)."""
        return bool(lib.vg_hashdb_size_carried(self._db, size))

    def size_listed(self, size: int) -> bool:
        """True when some entry could match a file of ``size`` bytes."""
        return bool(lib.vg_hashdb_size_listed(self._db, size))

    def find_sha256(self, digest: bytes) -> str | None:
        """The entry's name when ``digest`` is listed, else None."""
        name = ffi.new("const char **")
        if lib.vg_hashdb_find_sha256(self._db, digest, name):
            return _text(name[0])
        return None

    def find_md5(self, digest: bytes, size: int) -> str | None:
        """The entry's name when ``(digest, size)`` is listed, else None."""
        name = ffi.new("const char **")
        if lib.vg_hashdb_find_md5(self._db, digest, size, name):
            return _text(name[0])
        return None

    def find_sha1(self, digest: bytes, size: int) -> str | None:
        """The entry's name when the SHA-1 ``(digest, size)`` is listed, else None."""
        name = ffi.new("const char **")
        if lib.vg_hashdb_find_sha1(self._db, digest, size, name):
            return _text(name[0])
        return None

    def needs_md5(self, size: int) -> bool:
        """True when an MD5 entry could match a file of ``size`` bytes."""
        return bool(lib.vg_hashdb_digests_for(self._db, size) & lib.VG_DIGEST_MD5)

    def needs_sha1(self, size: int) -> bool:
        """True when a SHA-1 entry could match a file of ``size`` bytes."""
        return bool(lib.vg_hashdb_digests_for(self._db, size) & lib.VG_DIGEST_SHA1)


@dataclass(frozen=True)
class CacheStats:
    capacity: int
    entries: int
    hits: int
    misses: int
    inserts: int
    evictions: int


class Cache:
    """A bounded, thread-safe LRU cache of 48-byte keys (see native/lru.c)."""

    KEY_LEN = int(lib.VG_KEY_LEN)

    def __init__(self, capacity: int) -> None:
        out = ffi.new("struct vg_cache **")
        if capacity <= 0:
            raise ValueError("cache capacity must be positive")
        _check(lib.vg_cache_new(capacity, out), "creating cache")
        self._cache: Any = ffi.gc(out[0], lib.vg_cache_free)

    @property
    def handle(self) -> Any:
        return self._cache

    def get(self, key: bytes) -> int | None:
        value = ffi.new("uint8_t *")
        if lib.vg_cache_get(self._cache, key, value):
            return int(value[0])
        return None

    def put(self, key: bytes, value: int) -> None:
        lib.vg_cache_put(self._cache, key, value)

    def clear(self) -> None:
        lib.vg_cache_clear(self._cache)

    def stats(self) -> CacheStats:
        c = ffi.new("struct vg_cache_stats *")
        lib.vg_cache_stats(self._cache, c)
        return CacheStats(c.capacity, c.entries, c.hits, c.misses, c.inserts, c.evictions)


class PreVerdict(IntEnum):
    UNKNOWN = lib.VG_PRE_UNKNOWN
    KNOWN_BAD = lib.VG_PRE_KNOWN_BAD
    CLEAN_CACHED = lib.VG_PRE_CLEAN_CACHED


_PRE_VERDICTS = {int(v): v for v in PreVerdict}  # a dict look-up: PreVerdict(x) costs ~1 us


@dataclass(frozen=True, slots=True)  # slots: built for every scanned file
class PrefilterResult:
    verdict: PreVerdict
    size: int  # bytes hashed; the file's size when over the limit
    sha256: bytes  # meaningful only when ``hashed``
    md5: bytes | None
    name: str | None  # the hash database entry's name for KNOWN_BAD
    sha1: bytes | None = None  # computed only when a SHA-1 entry could match
    oversize: bool = False  # over the limit: only head (and tail) were read
    hashed: bool = True
    head_len: int = 0  # bytes of the file at keep[0:]
    tail_off: int = 0  # file offset of the bytes at keep[limit:]
    tail_len: int = 0


NO_LIMIT = 0xFFFFFFFFFFFFFFFF


def prefilter_fd(
    db: HashDb | None,
    clean: Cache | None,
    generation: int,
    fd: int,
    keep: bytearray | mmap.mmap | None = None,
    limit: int | None = None,
    tail: int = 0,
) -> PrefilterResult:
    """Hash ``fd`` once and answer from the database and the clean cache.

    A file over ``limit`` bytes (default: ``len(keep) - tail``, or no limit)
    is not hashed (unless some entry carries its exact size) and nothing
    past the limit is read but its last ``tail`` bytes. When ``keep`` is
    given, the first ``head_len`` bytes of the file are left in it (the very
    bytes that were hashed, for the scanner), and ``tail_len`` bytes from
    ``tail_off`` at ``keep[limit:]``; ``keep`` must hold ``limit + tail``.
    """
    if limit is None:
        limit = len(keep) - tail if keep is not None else NO_LIMIT
    if keep is not None and len(keep) < limit + tail:
        raise ValueError("scan buffer smaller than limit + tail")
    out = ffi.new("struct vg_prefilter_result *")
    buf = ffi.from_buffer(keep) if keep is not None else ffi.NULL
    ret = lib.vg_prefilter_fd(
        db.handle if db else ffi.NULL,
        clean.handle if clean else ffi.NULL,
        generation,
        fd,
        limit,
        buf,
        tail if keep is not None else 0,
        out,
    )
    _check(ret, "prefilter")
    verdict = _PRE_VERDICTS[out.verdict]
    name = None
    if verdict is PreVerdict.KNOWN_BAD:
        name = _text(out.name)
    return PrefilterResult(
        verdict=verdict,
        size=int(out.size),
        sha256=bytes(out.sha256),
        md5=bytes(out.md5) if out.has_md5 else None,
        sha1=bytes(out.sha1) if out.has_sha1 else None,
        name=name,
        oversize=bool(out.oversize),
        hashed=bool(out.hashed),
        head_len=int(out.head_len),
        tail_off=int(out.tail_off),
        tail_len=int(out.tail_len),
    )


def clean_put(clean: Cache, sha256: bytes, generation: int) -> None:
    """Record that content ``sha256`` scanned clean under ``generation``."""
    lib.vg_clean_put(clean.handle, sha256, generation)


# ---------------------------------------------------------------- fanotify

EV_OPEN = int(lib.VG_EV_OPEN)
EV_EXEC = int(lib.VG_EV_EXEC)
EV_CLOSE_WRITE = int(lib.VG_EV_CLOSE_WRITE)
ALLOW = int(lib.VG_ALLOW)
DENY = int(lib.VG_DENY)
MARK_FILESYSTEM = int(lib.VG_MARK_FILESYSTEM)
MARK_MOUNT = int(lib.VG_MARK_MOUNT)
CACHE_VERDICT = int(lib.VG_CACHE_VERDICT)
CACHE_MARK = int(lib.VG_CACHE_MARK)
JOB_CLASSIFY = int(lib.VG_JOB_CLASSIFY)  # learn what the opener runs first
JOB_OUTSIDE = int(lib.VG_JOB_OUTSIDE)  # outside the watch: allowed unless an interpreter


class Shutdown(Exception):
    """The on-access handle is stopping: no more jobs."""


MAX_MARK_FS = int(lib.VG_MAX_MARK_FS)

# statfs f_type of the filesystems a config may name in mark_fs
FS_MAGIC: dict[str, int] = {
    "ext2": 0xEF53,
    "ext3": 0xEF53,
    "ext4": 0xEF53,
    "xfs": 0x58465342,
    "btrfs": 0x9123683E,
    "tmpfs": 0x01021994,
    "f2fs": 0xF2F52010,
}


@dataclass(frozen=True)
class FanConfig:
    """What is fixed for the life of a fanotify group."""

    events: int  # EV_* bits
    queue_size: int
    cache_entries: int
    # fresh clean verdicts that may wait out their window (native/settle.c), an fd each
    settle_entries: int = 256


@dataclass(frozen=True)
class FanSettings:
    """Everything the C reader keeps from the config; applied whole by ``configure``."""

    generation: int = 0  # rules generation of new verdicts; a change drops cached ones
    deadline_ms: int = 5000
    on_queue_full_open: int = ALLOW  # ALLOW or DENY
    on_queue_full_exec: int = ALLOW
    on_deadline_open: int = ALLOW
    on_deadline_exec: int = ALLOW
    ignore_marks: bool = True
    mark_fs: tuple[int, ...] = (0xEF53, 0x58465342, 0x9123683E, 0x01021994, 0xF2F52010)
    fresh_ms: int = 20  # a file changed this recently is not cached clean
    close_write_share: int = 50  # percent of queue slots close-write jobs may hold
    exec_anywhere: bool = True  # execs scanned anywhere on a marked fs
    empty_clean: bool = False  # an empty file is clean, whatever its name: C answers it
    large_bytes: int = 0  # a job for a file over this is large...
    large_lanes: int = 0  # ...and at most this many are scanned at once (0: no limit)
    watch: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exes: tuple[str, ...] = ()
    uids: tuple[int, ...] = ()
    # interpreters and the loader, whose opens are checked like execs: their
    # files' (dev, ino), and the SHA-256 of their contents (for copies)
    interp_ids: tuple[tuple[int, int], ...] = ()
    interp_sha256: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Job:
    """One event handed to a worker; ``fd`` stays owned by the C side."""

    id: int
    fd: int
    pid: int
    kind: int  # EV_OPEN, EV_EXEC or EV_CLOSE_WRITE
    uid: int
    dev: int
    ino: int
    size: int
    ctime_ns: int
    queued_ns: int
    generation: int
    path: str
    flags: int = 0  # JOB_* bits


def _strings(items: tuple[str, ...], keep: list[Any]) -> Any:
    """A ``const char *[]`` for C; its buffers are appended to ``keep``."""
    bufs = [ffi.new("char[]", os.fsencode(s)) for s in items]
    keep.extend(bufs)
    arr = ffi.new("const char *[]", bufs)
    keep.append(arr)
    return arr


def _c_settings(s: FanSettings, keep: list[Any]) -> Any:
    """``struct vg_fan_settings`` for ``s``; ``keep`` holds what it points to."""
    if len(s.mark_fs) > MAX_MARK_FS:
        raise NativeError(errno.EINVAL, f"mark_fs: at most {MAX_MARK_FS} filesystem types")
    c = ffi.new("struct vg_fan_settings *")
    for name in (
        "generation", "deadline_ms", "on_queue_full_open", "on_queue_full_exec",
        "on_deadline_open", "on_deadline_exec", "fresh_ms", "close_write_share",
        "large_bytes", "large_lanes",
    ):  # fmt: skip
        setattr(c, name, getattr(s, name))
    c.ignore_marks, c.exec_anywhere = int(s.ignore_marks), int(s.exec_anywhere)
    c.empty_clean = int(s.empty_clean)
    c.n_mark_fs = len(s.mark_fs)
    c.mark_fs[0 : len(s.mark_fs)] = list(s.mark_fs)
    c.watch, c.n_watch = _strings(s.watch, keep), len(s.watch)
    c.exclude, c.n_exclude = _strings(s.exclude, keep), len(s.exclude)
    c.exes, c.n_exes = _strings(s.exes, keep), len(s.exes)
    uids = ffi.new("uint32_t[]", list(s.uids))
    keep.append(uids)
    c.uids, c.n_uids = uids, len(s.uids)
    ids = ffi.new("uint64_t[]", [n for pair in s.interp_ids for n in pair])
    digests = b"".join(s.interp_sha256)
    if any(len(d) != SHA256_LEN for d in s.interp_sha256):
        raise NativeError(errno.EINVAL, "interp_sha256: digests of 32 bytes")
    sha = ffi.new("uint8_t[]", digests)
    keep += [ids, sha]
    c.interp_ids, c.n_interp_ids = ids, len(s.interp_ids)
    c.interp_sha256, c.n_interp_sha256 = sha, len(s.interp_sha256)
    return c


class Answered(IntEnum):
    """Who answered a job's opener (Fanotify.answer); falsy only for this call."""

    NOW = 0  # this answer, the verdict's
    DEADLINE = 1  # the deadline watcher, by policy, before the verdict
    AT_STOP = 2  # the kernel, which allows what a group holds when it closes


class Fanotify:
    """fanotify permission groups with their reader threads, one queue and caches.

    One group (and reader) per marked filesystem: ``mark`` picks the group of
    the path's filesystem, or creates it (before ``start`` only). A stacked
    filesystem (overlayfs) and its layers thus never share a reader, which
    the backing file's own permission event would otherwise deadlock
    (native/fan.h). ``fd`` adopts an existing descriptor instead of creating
    a group (the tests hand it a socketpair carrying synthetic event
    records; ``adopt_group`` adds another). The handle starts with
    ``settings`` applied; ``configure`` replaces them whole.
    """

    def __init__(
        self, cfg: FanConfig, fd: int | None = None, settings: FanSettings | None = None
    ) -> None:
        c = ffi.new("struct vg_fan_config *")
        c.events, c.queue_size, c.cache_entries = cfg.events, cfg.queue_size, cfg.cache_entries
        c.settle_entries = cfg.settle_entries
        out = ffi.new("struct vg_fan **")
        if fd is None:
            _check(lib.vg_fan_open(c, out), "fanotify_init")
        else:
            _check(lib.vg_fan_adopt(c, fd, out), "adopting event source")
        self._fan: Any = out[0]
        self.cfg = cfg
        self.settings = FanSettings()  # replaced just below
        try:
            self.configure(settings if settings is not None else FanSettings())
        except NativeError:
            self.close()
            raise

    def configure(self, settings: FanSettings) -> None:
        """Apply ``settings`` whole (the reader sees the old or the new); raises
        NativeError (EINVAL for a value out of range). ``self.settings`` is the
        last one applied."""
        keep: list[Any] = []
        ret = lib.vg_fan_configure(self._fan, _c_settings(settings, keep))
        if ret not in (-errno.EINVAL, -errno.ENOMEM):
            self.settings = settings  # a failed mark flush still swapped them
        _check(ret, "applying on-access settings")

    def mark(self, path: str, how: int = MARK_FILESYSTEM) -> None:
        """Watch the filesystem (or mount) of ``path``, in that filesystem's group."""
        _check(lib.vg_fan_mark(self._fan, os.fsencode(path), how), "fanotify_mark", path)

    def adopt_group(self, fd: int) -> int:
        """Read events from ``fd`` too, as a group of its own (tests); its index."""
        return _check(lib.vg_fan_adopt_group(self._fan, fd), "adopting a second source")

    def start(self) -> None:
        _check(lib.vg_fan_start(self._fan), "starting the reader")

    def next(self, timeout_ms: int) -> Job | None:
        """The next job, None after ``timeout_ms``; raises Shutdown when stopping.

        Blocks in C with the GIL released; any number of threads may wait.
        """
        job = ffi.new("struct vg_job *")
        ret = lib.vg_fan_next(self._fan, job, timeout_ms)
        if ret == -errno.ESHUTDOWN:
            raise Shutdown()
        _check(ret, "waiting for events")
        if ret == 0:
            return None
        return Job(
            id=job.id,
            fd=job.fd,
            pid=job.pid,
            kind=job.kind,
            uid=job.uid,
            dev=job.dev,
            ino=job.ino,
            size=job.size,
            ctime_ns=job.ctime_sec * 1_000_000_000 + job.ctime_nsec,
            queued_ns=job.queued_ns,
            generation=job.generation,
            path=os.fsdecode(ffi.string(job.path)),
            flags=job.flags,
        )

    def answer(
        self, job: Job, allow: bool, cache: int, generation: int, sha256: bytes = b""
    ) -> Answered:
        """Answer ``job``, first caching the verdict as ``cache`` says (CACHE_* bits)
        if the rules are still ``generation``; who gave the answer the opener got
        (truthy when it was not this one: the result is late). ``sha256``: of the
        whole file, every byte scanned and found clean; a file changed too recently
        to be cached at once is then checked again and cached once its freshness
        window has passed."""
        if sha256 and len(sha256) != SHA256_LEN:
            raise ValueError("sha256 must be 32 bytes")
        digest = sha256 if sha256 else ffi.NULL
        ret = lib.vg_fan_answer(
            self._fan, job.id, ALLOW if allow else DENY, cache, generation, digest
        )
        if ret == -errno.ESHUTDOWN:
            return Answered.AT_STOP
        return Answered.DEADLINE if _check(ret, "answering") else Answered.NOW

    def classify(self, job: Job, exe_fd: int, sha256: bytes) -> bool:
        """Tell C what ``job``'s opener runs: the program open at ``exe_fd``, whose
        content hash is ``sha256``. True for an interpreter: the job is an exec now
        (its deadline answer too). Remembered for every later open by that program."""
        if len(sha256) != SHA256_LEN:
            raise ValueError("sha256 must be 32 bytes")
        return bool(_check(lib.vg_fan_classify(self._fan, job.id, exe_fd, sha256), "classifying"))

    def done(self, job: Job) -> None:
        """Release ``job``: close its fd, free its slot."""
        _check(lib.vg_fan_done(self._fan, job.id), "releasing job")

    def stats(self) -> dict[str, Any]:
        s = ffi.new("struct vg_fan_stats *")
        lib.vg_fan_stats(self._fan, s)
        out: dict[str, Any] = {
            name: int(getattr(s, name))
            for name, _ in ffi.typeof("struct vg_fan_stats").fields
            if name != "latency_us"
        }
        out["latency_us"] = [int(x) for x in s.latency_us]
        return out

    def stop(self) -> None:
        """Close every group (the kernel allows what they hold) and stop the threads."""
        lib.vg_fan_stop(self._fan)

    def close(self) -> None:
        """Free the handle; every worker must have returned from ``next``."""
        if self._fan is not None:
            lib.vg_fan_free(self._fan)
            self._fan = None


def cache_export(cache: Cache) -> bytes:
    """Every key in ``cache``, 48 bytes each."""
    cap = cache.stats().capacity
    buf = ffi.new("uint8_t[]", cap * Cache.KEY_LEN)
    n = lib.vg_cache_export(cache.handle, buf, cap)
    return bytes(ffi.buffer(buf, n * Cache.KEY_LEN))


def cache_import(cache: Cache, keys: bytes, value: int = 1) -> None:
    """Insert every 48-byte key of ``keys`` with ``value``."""
    n, rest = divmod(len(keys), Cache.KEY_LEN)
    if rest:
        raise ValueError("key blob has a partial key")
    lib.vg_cache_import(cache.handle, keys, n, value)


def name_thread(name: str) -> None:
    """Give the calling thread a name that ps and top show (15 bytes at most)."""
    lib.vg_name_thread(name.encode()[:15])
