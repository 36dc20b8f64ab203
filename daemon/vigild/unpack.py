"""Archives and compressed files, unpacked in memory within explicit limits.

``members(data, limits)`` yields every member of the archive in ``data``
(the bytes the prefilter read from the event's fd: nothing is re-opened
and nothing is written to disk), recursing into members that are archives
themselves: zip (and jar, war, apk, docx, xlsx, which are zips), tar, and
gzip, bzip2 and xz alone or around a tar. Only the standard library is
used: zipfile, tarfile, zlib, bz2 and lzma are the reference readers of
these formats, and a hand-written parser would be the riskiest code in
the scanner. The one exception reads no member: ``zipdir`` reads a zip's
end records first, because ZipFile holds its whole directory before a
member can be counted.

Every limit is explicit, and hitting one ends the walk with a ``Stop``
saying which (the caller applies the policy for it): depth, member
count (directories and links count too), total unpacked bytes,
compression ratio (bombs), encrypted members, time. A member larger
than ``member_size`` is scanned by its head. A malformed archive is not
an error of the scan: the walk just ends with ``Stop("could not
unpack", ...)`` and the container has been scanned as bytes already.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import lzma
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, NoReturn

from vigild import zipdir

_CHUNK = 1 << 20
Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Limits:
    depth: int = 5  # archives inside archives, the outer one counting 1
    members: int = 10000  # files looked at, over all levels
    unpacked: int = 1 << 30  # bytes unpacked, over all levels
    ratio: int = 250  # unpacked / packed size of one member: more is a bomb
    seconds: float = 10.0  # for the whole walk
    member_size: int = 64 << 20  # bytes of one member scanned (its head)
    held: int = 256 << 20  # bytes of members held at once, over the nesting levels


@dataclass(frozen=True)
class Member:
    path: str  # "dir/shell.php", or "inner.zip!dir/shell.php" when nested
    data: Buffer
    truncated: bool = False  # only its head (member_size bytes) is here


@dataclass(frozen=True)
class Stop:
    """Why the walk ended early: ``limit`` is one of LIMITS, or "could not unpack"."""

    limit: str
    detail: str


LIMITS = (
    "depth",
    "members",
    "unpacked",
    "ratio",
    "encrypted",
    "time",
    "member_size",
    "damaged",
    "oversize",
)
MALFORMED = "could not unpack"  # the archive as a whole: scanned as bytes only
# errors of one damaged member or stream: noted, and the walk goes on
_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, lzma.LZMAError, OSError, NotImplementedError)
# errors that mean a container is not the archive it looked like
_MALFORMED = (*_DAMAGE, tarfile.TarError, ValueError, RuntimeError)
_EOCD = b"PK\x05\x06"  # a zip's end of central directory record
_EOCD_REACH = 22 + 65535  # it sits this close to the end (the comment is at most 64K)


class Halt(Exception):
    def __init__(self, stop: Stop) -> None:
        super().__init__(stop.detail)
        self.stop = stop


def kind(data: Buffer) -> str | None:
    """The archive or compression format of ``data``, by its magic bytes.

    A zip is found by its end record too, not only by a header at offset 0:
    a self-extracting archive or an executable jar has a stub in front of it,
    and zip readers (unzip, java, python -m zipapp) still run it.
    """
    head = bytes(data[:6])
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bzip2"
    if head == b"\xfd7zXZ\x00":
        return "xz"
    if len(data) >= 262 and bytes(data[257:262]) == b"ustar":
        return "tar"
    if _EOCD in bytes(data[-_EOCD_REACH:]):
        return "zip"
    return None


class _View(io.RawIOBase):
    """A read-only, seekable file over a buffer, without copying it."""

    def __init__(self, data: Buffer) -> None:
        self._v = memoryview(data)
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), len(self._v) - self._at)
        b[:n] = self._v[self._at : self._at + n]
        self._at += n
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._at, len(self._v))[whence]
        self._at = max(0, base + offset)
        return self._at

    def tell(self) -> int:
        return self._at


class _Walk:
    """One walk's budget: members, bytes, time."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.problems: list[Stop] = []  # members not scanned whole; the walk went on
        self.members = 0
        self.unpacked = 0
        self.held = 0  # bytes of the enclosing members, kept while their insides are read
        self.deadline = time.monotonic() + limits.seconds

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise Halt(Stop("time", f"unpacking took over {self.limits.seconds:g} s"))

    def count(self, name: str) -> None:
        self.members += 1
        if self.members > self.limits.members:
            self.too_many(name)

    def room(self) -> int:
        """Members that may still be looked at."""
        return self.limits.members - self.members

    def too_many(self, what: str) -> NoReturn:
        raise Halt(Stop("members", f"more than {self.limits.members} members ({what})"))

    def take(self, n: int) -> None:
        self.unpacked += n
        if self.unpacked > self.limits.unpacked:
            raise Halt(Stop("unpacked", f"more than {self.limits.unpacked} bytes unpacked"))


def _read(
    stream: IO[bytes],
    walk: _Walk,
    name: str,
    packed: int | Callable[[], int],
    whole: bool = False,
) -> tuple[bytearray, bool]:
    """Up to member_size bytes of a member stream; checks ratio, budget and time.
    ``packed``: the member's compressed size, or how many compressed bytes were
    read so far. ``whole``: the stream is the whole container (a .gz), so one
    that yields nothing is not that format at all."""
    size = packed if callable(packed) else lambda: packed
    out = bytearray()
    # one member's worth, and no more than what the nesting levels leave over
    limit = max(0, min(walk.limits.member_size, walk.limits.held - walk.held))
    try:
        while len(out) < limit:
            chunk = stream.read(min(_CHUNK, limit - len(out)))
            if not chunk:
                return out, False
            out += chunk
            walk.take(len(chunk))
            walk.check()
            if len(out) > _CHUNK and len(out) > max(size(), 1) * walk.limits.ratio:
                raise Halt(Stop("ratio", f"{name} unpacks to over {walk.limits.ratio}x its size"))
        cut = bool(stream.read(1))
    except _DAMAGE as e:  # a cut stream: what was read is still scanned
        if not out and whole:
            raise  # nothing came out of it: not the compressed file it looked like
        walk.problems.append(Stop("damaged", f"{name}: {type(e).__name__}: {e}"))
        return out, True
    if cut:
        walk.problems.append(Stop("member_size", f"{name}: only its first {limit} bytes scanned"))
    return out, cut  # no copy: scanned as it is, never written to


def _since(raw: _View, start: int) -> int:
    """Bytes of the archive read since offset ``start``: what a member really took."""
    return raw.tell() - start


def _zip(data: Buffer, walk: _Walk) -> Iterator[Member]:
    """Every member that can be read; one that cannot (encrypted, damaged) is
    noted and the walk goes on. Sizes in the headers are the archive's word,
    not a fact: the ratio is measured on the bytes actually read."""
    listed = zipdir.too_many(data, walk.room())
    if listed:  # ZipFile would hold every entry before one could be counted
        walk.too_many(listed)
    raw = _View(data)
    with zipfile.ZipFile(raw) as z:
        for info in z.infolist():
            walk.count(info.filename)  # a directory too: ZipFile held it all the same
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                walk.problems.append(Stop("encrypted", f"encrypted member {info.filename}"))
                continue
            start = info.header_offset
            try:
                f = z.open(info)
            except _DAMAGE as e:
                walk.problems.append(Stop("damaged", f"{info.filename}: {e}"))
                continue
            # unzip extracts a member whose CRC does not match (and warns): so is
            # it scanned, and the mismatch noted, rather than lost to the check
            if hasattr(f, "_expected_crc"):
                f._expected_crc = None
            with f:
                body, cut = _read(f, walk, info.filename, functools.partial(_since, raw, start))
            if not cut and zlib.crc32(body) != info.CRC:
                walk.problems.append(Stop("damaged", f"{info.filename}: bad CRC-32"))
            yield Member(info.filename, body, cut)


def _tar(data: Buffer, walk: _Walk) -> Iterator[Member]:
    with tarfile.open(fileobj=_View(data), mode="r:") as t:
        for info in t:
            # every kind counts: tarfile keeps each header it reads, so a tar of
            # nothing but directories would otherwise cost memory and time unbounded
            walk.count(info.name)
            if not info.isfile():
                continue
            f = t.extractfile(info)
            if f is None:
                continue
            body, cut = _read(f, walk, info.name, info.size)
            yield Member(info.name, body, cut)


_OPENERS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    "gzip": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),  # type: ignore[dict-item,return-value]
    "bzip2": lambda raw: bz2.BZ2File(raw),
    "xz": lambda raw: lzma.LZMAFile(raw),  # noqa: SIM115 (closed by _stream's with)
}


def _stream(fmt: str, data: Buffer, walk: _Walk, name: str) -> Iterator[Member]:
    """The one member of a compressed stream, decompressed a chunk at a time; the
    ratio is checked against the compressed bytes read so far."""
    walk.count(name)
    raw = _View(data)
    with _OPENERS[fmt](raw) as f:  # type: ignore[arg-type]
        body, cut = _read(f, walk, name, raw.tell, whole=True)
    yield Member(name, body, cut)


_READERS = {"zip": _zip, "tar": _tar}


def _inner_name(fmt: str, name: str) -> str:
    """The name of what a compressed stream holds: its own name less the suffix."""
    base = name.rsplit("!", 1)[-1].rsplit("/", 1)[-1]
    for suffix in {"gzip": (".gz", ".tgz"), "bzip2": (".bz2",), "xz": (".xz",)}[fmt]:
        if base.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)] + (".tar" if suffix == ".tgz" else "")
    return f"{base or 'data'}.{fmt}-content"


def _walk(data: Buffer, name: str, prefix: str, depth: int, walk: _Walk) -> Iterator[Member]:
    """Members of the container ``data`` called ``name``, whose own path is
    ``prefix`` ("" for the file scanned itself)."""
    fmt = kind(data)
    if fmt is None:
        return
    if depth > walk.limits.depth:
        raise Halt(Stop("depth", f"archives nested deeper than {walk.limits.depth}"))
    if fmt in _READERS:
        inner = _READERS[fmt](data, walk)
    else:
        inner = _stream(fmt, data, walk, _inner_name(fmt, name))
    for m in inner:
        path = f"{prefix}!{m.path}" if prefix else m.path
        yield Member(path, m.data, m.truncated)
        walk.held += len(m.data)  # kept while its own members are read
        try:
            yield from _walk(m.data, m.path, path, depth + 1, walk)
        except _MALFORMED as e:  # a damaged inner archive: its bytes were scanned above
            walk.problems.append(Stop("damaged", f"{path}: {type(e).__name__}: {e}"))
        finally:
            walk.held -= len(m.data)


def members(data: Buffer, limits: Limits, name: str = "") -> tuple[Iterator[Member], list[Stop]]:
    """The members of the archive in ``data``, depth first; ``stops`` gets the
    reason if the walk ends early (read it once the iterator is exhausted)."""
    stops: list[Stop] = []
    walk = _Walk(limits)

    def run() -> Iterator[Member]:
        try:
            yield from _walk(data, name, "", 1, walk)
        except Halt as h:
            stops.append(h.stop)
        except _MALFORMED as e:
            stops.append(Stop(MALFORMED, f"{type(e).__name__}: {e}"))
        finally:
            stops.extend(walk.problems)

    return run(), stops
