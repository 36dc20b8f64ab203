"""The only importer of the compiled ``vigild._native`` module.

Turns the C functions' ``-errno`` returns into exceptions and their handles
into Python objects that free themselves. Nothing else in the package
touches ``ffi`` or ``lib``.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from vigild._native import ffi, lib

SHA256_LEN = 32
MD5_LEN = 16
SIZE_ANY = 0xFFFFFFFFFFFFFFFF
SHA256_REC_LEN = int(lib.VG_SHA256_REC_LEN)
MD5_REC_LEN = int(lib.VG_MD5_REC_LEN)

# What the hash database loader's errno values mean for that file.
_DB_ERRORS = {
    errno.ENOEXEC: "not a vigild hash database (bad magic); compile it with 'vigild rules compile'",
    errno.EPROTONOSUPPORT: "hash database format version not supported by this vigild",
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


def write_hashdb(path: str, sha_records: bytes, md5_records: bytes, names: bytes) -> None:
    """Write a database from packed records (layout in native/vigild.h)."""
    n_sha, rest_sha = divmod(len(sha_records), SHA256_REC_LEN)
    n_md5, rest_md5 = divmod(len(md5_records), MD5_REC_LEN)
    if rest_sha or rest_md5:
        raise ValueError("packed hash records have a partial record")
    ret = lib.vg_hashdb_write(
        path.encode(), sha_records, n_sha, md5_records, n_md5, names, len(names)
    )
    _check(ret, "writing hash database", path)


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
        )

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


@dataclass(frozen=True)
class PrefilterResult:
    verdict: PreVerdict
    size: int
    sha256: bytes
    md5: bytes | None
    name: str | None  # the hash database entry's name for KNOWN_BAD


def prefilter_fd(
    db: HashDb | None,
    clean: Cache | None,
    generation: int,
    fd: int,
    keep: bytearray | None = None,
) -> PrefilterResult:
    """Hash ``fd`` once and answer from the database and the clean cache.

    When ``keep`` is given, the first ``min(size, len(keep))`` bytes of the
    file are left in it: the very bytes that were hashed, for the scanner.
    """
    out = ffi.new("struct vg_prefilter_result *")
    buf = ffi.from_buffer(keep) if keep is not None else ffi.NULL
    ret = lib.vg_prefilter_fd(
        db.handle if db else ffi.NULL,
        clean.handle if clean else ffi.NULL,
        generation,
        fd,
        buf,
        len(keep) if keep is not None else 0,
        out,
    )
    _check(ret, "prefilter")
    verdict = PreVerdict(out.verdict)
    name = None
    if verdict is PreVerdict.KNOWN_BAD:
        name = _text(out.name)
    return PrefilterResult(
        verdict=verdict,
        size=int(out.size),
        sha256=bytes(out.sha256),
        md5=bytes(out.md5) if out.has_md5 else None,
        name=name,
    )


def clean_put(clean: Cache, sha256: bytes, generation: int) -> None:
    """Record that content ``sha256`` scanned clean under ``generation``."""
    lib.vg_clean_put(clean.handle, sha256, generation)
