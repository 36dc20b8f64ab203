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
