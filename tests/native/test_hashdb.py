"""The memory-mapped known-bad database: answers, and refusal of bad files."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import struct
from pathlib import Path

import pytest
from crc32c_ref import crc32c

from vigild import hashes, native

HEADER = struct.Struct("<8sIIQIIIIIBBHQIB3x")  # see struct db_header in native/hashdb.c
CRC_AT = 24


def _sha(i: int) -> bytes:
    return hashlib.sha256(b"entry %d" % i).digest()


def _md5(i: int) -> bytes:
    return hashlib.md5(b"entry %d" % i).digest()


def _sha1(i: int) -> bytes:
    return hashlib.sha1(b"entry %d" % i).digest()


def _write(path: Path, e: hashes.Entries) -> None:
    native.write_hashdb(str(path), bytes(e.sha), bytes(e.md5), bytes(e.names), bytes(e.sha1))


def _build(path: Path, n_sha: int = 200, n_md5: int = 50, n_sha1: int = 30) -> hashes.Entries:
    e = hashes.Entries()
    for i in range(n_sha):
        e.add(_sha(i), 1000 + i, f"Sha.Name-{i % 7}")
    for i in range(n_md5):
        e.add(_md5(i), 5000 + i, f"Md5.Name-{i % 3}")
    for i in range(n_sha1):
        e.add(_sha1(i), 7000 + i, f"Sha1.Name-{i % 5}")
    _write(path, e)
    return e


def test_round_trip(tmp_path: Path) -> None:
    db_path = tmp_path / "db.vhdb"
    _build(db_path)
    db = native.HashDb(str(db_path))
    info = db.info()
    assert (info.sha256_entries, info.md5_entries, info.sha1_entries) == (200, 50, 30)
    assert info.version == native.HASHDB_VERSION == 2
    assert info.file_bytes == db_path.stat().st_size
    for i in range(200):
        assert db.find_sha256(_sha(i)) == f"Sha.Name-{i % 7}"
    for i in range(50):
        assert db.find_md5(_md5(i), 5000 + i) == f"Md5.Name-{i % 3}"
        assert db.find_md5(_md5(i), 5001 + i) is None  # MD5 needs its size too
    for i in range(30):
        assert db.find_sha1(_sha1(i), 7000 + i) == f"Sha1.Name-{i % 5}"
        assert db.find_sha1(_sha1(i), 7001 + i) is None  # a sized SHA-1 needs its size
        assert db.find_md5(_sha1(i)[:16], 7000 + i) is None  # tables never mix
    for i in range(200, 400):
        assert db.find_sha256(_sha(i)) is None
    assert db.size_listed(1000) and db.size_listed(5049) and db.size_listed(7029)
    assert not db.size_listed(999) and not db.size_listed(6000)


def test_each_extra_digest_is_wanted_only_for_the_sizes_its_table_names(tmp_path: Path) -> None:
    """An MD5 (SHA-1) is worth computing only for a size an MD5 (SHA-1) entry names."""
    p = tmp_path / "db.vhdb"
    _build(p)
    db = native.HashDb(str(p))
    assert (db.needs_md5(5000), db.needs_sha1(5000)) == (True, False)
    assert (db.needs_md5(7000), db.needs_sha1(7000)) == (False, True)
    assert (db.needs_md5(1000), db.needs_sha1(1000)) == (False, False)  # a SHA-256 size
    assert (db.needs_md5(6000), db.needs_sha1(6000)) == (False, False)


def test_a_size_less_sha1_entry_wants_a_sha1_of_every_size(tmp_path: Path) -> None:
    e = hashes.Entries()
    e.add(_sha1(1), native.SIZE_ANY, "Loki.Sha1")
    e.add(_md5(1), 10, "Md5.Sized")
    e.add(_sha(1), native.SIZE_ANY, "Sha.Any")  # costs nothing: SHA-256 is computed anyway
    p = tmp_path / "d.vhdb"
    _write(p, e)
    db = native.HashDb(str(p))
    assert db.find_sha1(_sha1(1), 123456) == "Loki.Sha1"
    assert all(db.needs_sha1(n) for n in (0, 10, 1 << 40))
    assert db.needs_md5(10) and not db.needs_md5(11)


def test_empty_database(tmp_path: Path) -> None:
    p = tmp_path / "empty.vhdb"
    native.write_hashdb(str(p), b"", b"", b"")
    db = native.HashDb(str(p))
    assert db.find_sha256(_sha(1)) is None
    assert db.find_md5(_md5(1), 1) is None
    assert db.find_sha1(_sha1(1), 1) is None
    assert not db.needs_md5(1) and not db.needs_sha1(1)
    assert not db.size_listed(0)


def test_duplicates_keep_the_first_name_and_any_size(tmp_path: Path) -> None:
    e = hashes.Entries()
    e.add(_sha(1), 10, "First")
    e.add(_sha(1), 10, "Second")
    e.add(_md5(1), native.SIZE_ANY, "AnySize")
    p = tmp_path / "d.vhdb"
    native.write_hashdb(str(p), bytes(e.sha), bytes(e.md5), bytes(e.names))
    db = native.HashDb(str(p))
    assert db.info().sha256_entries == 1
    assert db.find_sha256(_sha(1)) == "First"
    assert db.find_md5(_md5(1), 123456) == "AnySize"
    assert db.size_listed(777)  # an any-size entry means every size is listed


def test_many_entries_in_one_bucket(tmp_path: Path) -> None:
    """Hashes sharing a long prefix land in one bucket; binary search still finds each."""
    e = hashes.Entries()
    digests = [b"\xab\xcd\xef\x01" + os.urandom(28) for _ in range(3000)]
    for i, d in enumerate(digests):
        e.add(d, native.SIZE_ANY, f"n{i}")
    p = tmp_path / "b.vhdb"
    native.write_hashdb(str(p), bytes(e.sha), bytes(e.md5), bytes(e.names))
    db = native.HashDb(str(p))
    for i, d in enumerate(digests):
        assert db.find_sha256(d) == f"n{i}"
    assert db.find_sha256(b"\xab\xcd\xef\x01" + bytes(28)) is None


def test_writer_rejects_a_name_offset_outside_the_names(tmp_path: Path) -> None:
    rec = _sha(1) + struct.pack("<QI", 1, 99)
    with pytest.raises(OSError) as e:
        native.write_hashdb(str(tmp_path / "x"), rec, b"", b"abc\0")
    assert e.value.errno == errno.EINVAL
    assert not (tmp_path / "x").exists()


def _expect(path: Path, err: int) -> None:
    with pytest.raises(native.NativeError) as e:
        native.HashDb(str(path))
    assert e.value.errno == err, e.value
    assert e.value.filename == str(path)


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    for name, data in [
        ("text", b"# a hash list, not compiled\n" + b"a" * 64 + b"\n"),
        ("elf", Path("/bin/true").read_bytes()),
        ("short", b"VIG"),
        ("empty", b""),
    ]:
        p = tmp_path / name
        p.write_bytes(data)
        _expect(p, errno.ENOEXEC)


def test_truncated_at_every_section(tmp_path: Path) -> None:
    p = tmp_path / "db.vhdb"
    _build(p)
    whole = p.read_bytes()
    cut = tmp_path / "cut.vhdb"
    for n in sorted({8, 20, 63, 64, 65, len(whole) // 3, len(whole) // 2, len(whole) - 1}):
        cut.write_bytes(whole[:n])
        _expect(cut, errno.ENODATA)


def test_every_flipped_byte_is_caught(tmp_path: Path) -> None:
    """A single corrupted byte anywhere is refused, never answered from."""
    p = tmp_path / "db.vhdb"
    _build(p, 40, 10)
    whole = bytearray(p.read_bytes())
    bad = tmp_path / "bad.vhdb"
    for i in range(len(whole)):
        data = bytearray(whole)
        data[i] ^= 0x41
        bad.write_bytes(data)
        with pytest.raises(native.NativeError) as e:
            native.HashDb(str(bad))
        assert e.value.errno in (errno.ENOEXEC, errno.EPROTONOSUPPORT, errno.ENODATA, errno.EBADMSG)


def test_other_version_is_refused(tmp_path: Path) -> None:
    """Version 1 (no SHA-1 table) and any later version: refused, saying what to do."""
    p = tmp_path / "db.vhdb"
    _build(p)
    for version in (1, 3):
        data = bytearray(p.read_bytes())
        data[8:12] = struct.pack("<I", version)
        bad = tmp_path / f"v{version}.vhdb"
        bad.write_bytes(_forge(data))
        _expect(bad, errno.EPROTONOSUPPORT)
        with pytest.raises(native.NativeError, match="vigild rules compile"):
            native.HashDb(str(bad))


def _forge(data: bytearray) -> bytes:
    """Recompute the CRC, as a deliberate forger (or a buggy writer) would."""
    data[CRC_AT : CRC_AT + 4] = b"\0\0\0\0"
    data[CRC_AT : CRC_AT + 4] = struct.pack("<I", crc32c(bytes(data)))
    return bytes(data)


def test_crc_matches_an_independent_implementation(tmp_path: Path) -> None:
    p = tmp_path / "db.vhdb"
    _build(p)
    data = bytearray(p.read_bytes())
    stored = struct.unpack_from("<I", data, CRC_AT)[0]
    assert _forge(bytearray(data)) == bytes(data)
    assert stored == struct.unpack_from("<I", _forge(data), CRC_AT)[0]


def test_structure_is_checked_beyond_the_checksum(tmp_path: Path) -> None:
    """With a valid CRC, broken bucket starts or names are still refused."""
    p = tmp_path / "db.vhdb"
    _build(p)
    data = bytearray(p.read_bytes())
    fields = HEADER.unpack_from(data)
    n_sizes = fields[8]
    buckets_at = (64 + n_sizes * 9 + 7) & ~7
    forged = tmp_path / "forged.vhdb"
    # bucket starts that go backwards would let a search read out of bounds
    broken = bytearray(data)
    struct.pack_into("<I", broken, buckets_at + 8, 0xFFFFFF)
    forged.write_bytes(_forge(broken))
    _expect(forged, errno.EBADMSG)
    # a names blob that does not end in NUL would let a name run off the end
    broken = bytearray(data)
    broken[-1] = ord("x")
    forged.write_bytes(_forge(broken))
    _expect(forged, errno.EBADMSG)
    # counts that do not add up to the file size
    broken = bytearray(data)
    struct.pack_into("<I", broken, 32, fields[6] + 1)  # n_sha256
    forged.write_bytes(_forge(broken))
    _expect(forged, errno.EBADMSG)


def test_random_garbage_with_our_magic_never_crashes(tmp_path: Path) -> None:
    rng = random.Random(7)
    p = tmp_path / "g.vhdb"
    for _ in range(300):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 400)))
        p.write_bytes(b"VIGHASH\0" + struct.pack("<I", 1) + body)
        with pytest.raises(native.NativeError):
            native.HashDb(str(p))


def _layout_end(n_sizes: int, tables: list[tuple[int, int, int]]) -> int:
    """Where the names start, as native/hashdb.c lays the file out; ``tables``
    holds (count, bucket bits, entry length) of each table in file order."""

    def a8(x: int) -> int:
        return (x + 7) & ~7

    at = a8(64 + n_sizes * 9)  # sizes, then which tables carry each
    for count, bits, entry in tables:
        at = a8(a8(at + ((1 << bits) + 1) * 4) + count * entry)
    return at


def test_counts_that_wrap_the_layout_are_refused(tmp_path: Path) -> None:
    """A valid CRC, a huge entry count and a names length chosen to wrap the end."""
    p = tmp_path / "db.vhdb"
    _build(p, 40, 10)
    data = bytearray(p.read_bytes())
    fields = list(HEADER.unpack_from(data))
    (n_md5, n_sizes, mb, n_sha1, s1b) = (fields[7], fields[8], fields[10], fields[13], fields[14])
    n_sha, sb = 1 << 28, 24  # and 2^24 buckets: reading them would run far off the map
    names_at = _layout_end(n_sizes, [(n_sha, sb, 36), (n_md5, mb, 28), (n_sha1, s1b, 32)])
    names_len = (len(data) - names_at) % (1 << 64)  # names_at + names_len wraps to the file length
    fields[6], fields[9], fields[12] = n_sha, sb, names_len
    HEADER.pack_into(data, 0, *fields)
    forged = tmp_path / "forged.vhdb"
    forged.write_bytes(_forge(data))
    _expect(forged, errno.EBADMSG)
