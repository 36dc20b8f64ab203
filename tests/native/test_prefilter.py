"""The prefilter: known-bad first, then the clean-content cache, in one read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vigild import hashes, native
from vigild.native import PreVerdict


def _fd(tmp_path: Path, name: str, data: bytes) -> int:
    p = tmp_path / name
    p.write_bytes(data)
    return os.open(p, os.O_RDONLY)


def _db(
    tmp_path: Path, sha: list[tuple[bytes, str]], md5: list[tuple[bytes, int, str]]
) -> native.HashDb:
    e = hashes.Entries()
    for digest, name in sha:
        e.add(digest, native.SIZE_ANY, name)
    for digest, size, name in md5:
        e.add(digest, size, name)
    p = tmp_path / "db.vhdb"
    native.write_hashdb(str(p), bytes(e.sha), bytes(e.md5), bytes(e.names))
    return native.HashDb(str(p))


def test_known_bad_by_sha256(tmp_path: Path) -> None:
    bad = b"pretend malware " * 10
    db = _db(tmp_path, [(hashlib.sha256(bad).digest(), "Test.Bad")], [])
    fd = _fd(tmp_path, "bad", bad)
    r = native.prefilter_fd(db, None, 1, fd)
    os.close(fd)
    assert (r.verdict, r.name, r.size) == (PreVerdict.KNOWN_BAD, "Test.Bad", len(bad))
    assert r.md5 is None  # no MD5 entries: MD5 is never computed


def test_known_bad_by_md5_only_with_its_size(tmp_path: Path) -> None:
    bad = b"legacy clamav signature target"
    other_size = b"x" * 7
    db = _db(tmp_path, [], [(hashlib.md5(bad).digest(), len(bad), "Old.Md5")])
    fd = _fd(tmp_path, "bad", bad)
    r = native.prefilter_fd(db, None, 1, fd)
    os.close(fd)
    assert (r.verdict, r.name) == (PreVerdict.KNOWN_BAD, "Old.Md5")
    assert r.md5 == hashlib.md5(bad).digest()
    fd = _fd(tmp_path, "other", other_size)
    r = native.prefilter_fd(db, None, 1, fd)
    os.close(fd)
    assert r.verdict is PreVerdict.UNKNOWN
    assert r.md5 is None  # size not listed: MD5 skipped


def test_clean_cache_is_keyed_by_content_and_generation(tmp_path: Path) -> None:
    data = b"some clean bytes"
    clean = native.Cache(1024)
    fd = _fd(tmp_path, "a", data)
    first = native.prefilter_fd(None, clean, 5, fd)
    assert first.verdict is PreVerdict.UNKNOWN
    native.clean_put(clean, first.sha256, 5)
    assert native.prefilter_fd(None, clean, 5, fd).verdict is PreVerdict.CLEAN_CACHED
    assert native.prefilter_fd(None, clean, 6, fd).verdict is PreVerdict.UNKNOWN
    os.close(fd)
    # the same bytes under another name hit too: the key is the content
    fd = _fd(tmp_path, "b", data)
    assert native.prefilter_fd(None, clean, 5, fd).verdict is PreVerdict.CLEAN_CACHED
    os.close(fd)
    # one changed byte misses
    fd = _fd(tmp_path, "c", data[:-1] + b"X")
    assert native.prefilter_fd(None, clean, 5, fd).verdict is PreVerdict.UNKNOWN
    os.close(fd)


def test_known_bad_wins_over_an_earlier_clean_verdict(tmp_path: Path) -> None:
    data = b"became known-bad after it was scanned clean"
    clean = native.Cache(1024)
    native.clean_put(clean, hashlib.sha256(data).digest(), 5)
    db = _db(tmp_path, [(hashlib.sha256(data).digest(), "Late.Listing")], [])
    fd = _fd(tmp_path, "x", data)
    r = native.prefilter_fd(db, clean, 5, fd)
    os.close(fd)
    assert (r.verdict, r.name) == (PreVerdict.KNOWN_BAD, "Late.Listing")


# ------------------------------------------------- files over the limit (issue 9, 2)

TIB = 1 << 40


def _sparse(tmp_path: Path, name: str, size: int, at: dict[int, bytes]) -> int:
    """A sparse file of ``size`` bytes holding ``at[offset]`` bytes at each offset."""
    p = tmp_path / name
    with p.open("wb") as f:
        f.truncate(size)
        for off, data in at.items():
            f.seek(off)
            f.write(data)
    return os.open(p, os.O_RDONLY)


def test_a_terabyte_over_the_limit_costs_its_head_and_tail_not_its_size(tmp_path: Path) -> None:
    import time

    limit, tail = 1 << 20, 4096
    fd = _sparse(tmp_path, "big", TIB, {10: b"HEAD", TIB - 100: b"TAIL", TIB // 2: b"MIDDLE"})
    keep = bytearray(limit + tail)
    try:
        t0 = time.monotonic()
        r = native.prefilter_fd(None, None, 1, fd, keep, limit=limit, tail=tail)
        took = time.monotonic() - t0
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # the offset is put back
    finally:
        os.close(fd)
    assert (r.oversize, r.hashed, r.size, r.verdict) == (True, False, TIB, PreVerdict.UNKNOWN)
    assert (r.head_len, r.tail_off, r.tail_len) == (limit, TIB - tail, tail)
    assert keep[10:14] == b"HEAD" and keep[limit + tail - 100 : limit + tail - 96] == b"TAIL"
    assert took < 0.5, took  # the holes were not read


def test_without_a_buffer_an_over_size_file_is_not_read_at_all(tmp_path: Path) -> None:
    fd = _sparse(tmp_path, "big", TIB, {0: b"x" * 4096})
    try:
        r = native.prefilter_fd(None, None, 1, fd, None, limit=1 << 20)
    finally:
        os.close(fd)
    assert (r.oversize, r.hashed, r.head_len, r.tail_len) == (True, False, 0, 0)


def test_a_hash_listed_with_its_size_is_found_over_the_limit_any_size_is_not(
    tmp_path: Path,
) -> None:
    bad = b"\0" * 5000 + b"big malware" + b"\0" * 5000  # 10,011 bytes, with holes around
    e = hashes.Entries()
    e.add(hashlib.sha256(bad).digest(), len(bad), "Sized.Bad")
    other = b"A" * 20_000
    e.add(hashlib.sha256(other).digest(), native.SIZE_ANY, "Any.Bad")
    p = tmp_path / "db.vhdb"
    native.write_hashdb(str(p), bytes(e.sha), bytes(e.md5), bytes(e.names))
    db = native.HashDb(str(p))
    assert db.size_carried(len(bad)) and not db.size_carried(len(other))
    fd = _sparse(tmp_path, "bad", len(bad), {5000: b"big malware"})
    r = native.prefilter_fd(db, None, 1, fd, bytearray(4096), limit=4096)
    os.close(fd)
    assert (r.verdict, r.name, r.oversize, r.hashed) == (
        PreVerdict.KNOWN_BAD,
        "Sized.Bad",
        True,
        True,
    )
    fd = _fd(tmp_path, "other", other)
    r = native.prefilter_fd(db, None, 1, fd, bytearray(4096), limit=4096)
    os.close(fd)
    assert (r.verdict, r.hashed) == (
        PreVerdict.UNKNOWN,
        False,
    )  # any-size: not for files over the limit
    fd = _fd(tmp_path, "other2", other)
    assert native.prefilter_fd(db, None, 1, fd).verdict is PreVerdict.KNOWN_BAD  # under no limit
    os.close(fd)


def test_holes_hash_as_zeros(tmp_path: Path) -> None:
    data = bytearray(3 << 20)
    data[(1 << 20) + 5 : (1 << 20) + 9] = b"DATA"
    fd = _sparse(tmp_path, "holey", len(data), {(1 << 20) + 5: b"DATA"})
    try:
        sha, _, n = native.hash_fd(fd)
    finally:
        os.close(fd)
    assert (sha, n) == (hashlib.sha256(bytes(data)).digest(), len(data))
