"""How many entries a zip's central directory holds, known before zipfile reads it.

zipfile.ZipFile parses the whole central directory into ZipInfo objects as it
opens an archive, before vigild counts a single member: a zip whose directory
lists a million entries (all pointing at one local header) cost a worker about
ten times the file's size in memory before the member limit stopped it (found
by review). ``too_many(data, room)`` answers from the end records and, when
they cannot settle it, a walk of at most ``room + 1`` fixed-size entry headers,
so the member limit can end the walk before ZipFile is called.

zipfile has no public reader of the end records (``_EndRecData`` is private
and changes between Pythons), so this is a small struct-based one following
PKWARE APPNOTE 4.3.14-4.3.16. It looks where ZipFile looks: the end record
found as ZipFile finds it, then a zip64 record right before its locator
(Python 3.11) or at the offset the locator gives (later Pythons); where these
disagree, every record either Python could take is checked. It only ever
says "too many": a damaged or missing record is left to ZipFile, which raises
as it always has. Nothing is copied but the 64K tail searched for the record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

Buffer = bytes | bytearray | memoryview

_END = struct.Struct("<4s4H2LH")  # 4.3.16 end of central directory record
_LOCATOR = struct.Struct("<4sLQL")  # 4.3.15 zip64 end of central directory locator
_END64 = struct.Struct("<4sQ2H2L4Q")  # 4.3.14 zip64 end of central directory record
_ENTRY = struct.Struct("<4s24x3H")  # 4.3.12 central directory header, up to its 3 lengths
_ENTRY_MIN = 46  # the fixed part of an entry: the least one can take
_MAX_COMMENT = 0xFFFF
_UNSAID = 0xFFFF  # a saturated 16-bit count: "see the zip64 record" (4.4.1.4)


def too_many(data: Buffer, room: int) -> str | None:
    """Why ZipFile, opening ``data``, would list more than ``room`` entries
    (directories too); None when it would not, or cannot open it at all."""
    end = _end(data)
    if end is None:
        return None
    for at, entries, size in _directories(data, end):
        start = at - size  # where ZipFile reads the directory from, stub or not
        if start < 0:
            continue  # ZipFile: "Bad offset for central directory"
        if entries > room:
            return f"a zip whose directory lists {entries} entries"
        if size > room * _ENTRY_MIN and _count(data, start, size, room) > room:
            return f"a zip whose directory of {size} bytes holds more than {room} entries"
    return None


def _end(data: Buffer) -> int | None:
    """Where the end record is, found as ZipFile finds it: the last 22 bytes
    when there is no comment, else the last signature within a comment's reach."""
    n = len(data)
    tail = bytes(data[max(n - _MAX_COMMENT - _END.size, 0) :])
    if n >= _END.size and tail[-_END.size :][:4] == b"PK\x05\x06" and tail[-2:] == b"\0\0":
        return n - _END.size
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END.size > len(tail):
        return None
    return n - len(tail) + at


def _directories(data: Buffer, end: int) -> Iterator[tuple[int, int, int]]:
    """(where its end record is, entries, bytes) of each directory a Python may read."""
    loc = end - _LOCATOR.size
    if loc >= 0:
        sig, _, reloff, _ = _LOCATOR.unpack_from(data, loc)
        if sig == b"PK\x06\x07":
            yield from _zip64(data, reloff, loc)  # later Pythons look here first
            before = list(_zip64(data, loc - _END64.size, loc))
            yield from before
            if before:  # every Python takes a zip64 record now
                return
    entries, size = _END.unpack_from(data, end)[4:6]
    yield end, 0 if entries == _UNSAID else entries, size  # unsaid: the walk counts them


def _zip64(data: Buffer, at: int, loc: int) -> Iterator[tuple[int, int, int]]:
    """The zip64 record at ``at``, if one is there (it lies before its locator)."""
    if 0 <= at <= loc - _END64.size:
        record = _END64.unpack_from(data, at)
        if record[0] == b"PK\x06\x06":
            yield at, record[7], record[8]


def _count(data: Buffer, start: int, size: int, room: int) -> int:
    """Entries of the directory at ``start``, stepped through as ZipFile steps
    (by each header's lengths, until ``size`` bytes or a bad header), up to room + 1."""
    end = min(start + size, len(data))
    at = start
    n = 0
    while n <= room and at + _ENTRY_MIN <= end:
        sig, name, extra, comment = _ENTRY.unpack_from(data, at)
        if sig != b"PK\x01\x02":
            break  # ZipFile raises here: "Bad magic number for central directory"
        n += 1
        at += _ENTRY_MIN + name + extra + comment
    return n
