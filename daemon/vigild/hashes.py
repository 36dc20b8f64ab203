"""Known-bad hash lists: parse them and compile them into one database.

Accepted input, one entry a line; a line starting with ``#`` is a comment:

* plain lists: ``SHA256 [name]`` or ``SHA1 [name]`` (also ``sha256sum`` and
  ``sha1sum`` output, where the name is the file name; `` # ...`` after the
  hash ends the line). ``MD5 [name]`` is not accepted there: an MD5 wants
  its size, as in ClamAV;
* ClamAV ``.hsb``/``.hdb``: ``HASH:SIZE:NAME[:FLEVEL]`` where HASH is a
  SHA-256, a SHA-1 or an MD5 and SIZE may be ``*`` (any size); the name is
  kept whole, ``#`` and all;
* LOKI's hash IOCs (signature-base iocs/hash-iocs.txt): ``HASH;comment``,
  an MD5, SHA-1 or SHA-256 without a size;
* a compiled database (``.vhdb``, recognised by its magic), used as is.

Lines are recognised by shape, not by file extension, so a ``.txt`` of
ClamAV lines works too. ``compile_lists`` reads lines in C
(native/hashlist.c, the same shapes); a line the C reader does not take is
judged here, so every error names file and line as below. A UTF-8 byte
order mark is ignored. A bad line is an error naming file and line. The
prefilter computes SHA-256 of every file, and an MD5 or a SHA-1 beside it
only for a size some entry of that kind names (or for every file when such
an entry has no size).

The extension does carry ClamAV's meaning where it has one: ``.fp`` and
``.sfp`` are allow-lists (a listed file is never reported), ``.hdu`` and
``.hsu`` list potentially unwanted applications, loaded only with
``[rules] pua = true``. Every file left out is warned about.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vigild import native

DB_MAGIC = b"VIGHASH\0"
DB_SUFFIX = ".vhdb"
LIST_SUFFIXES = (".sha256", ".txt", ".lst", ".hsb", ".hdb", ".hashes")
ALLOW_SUFFIXES = (".fp", ".sfp")  # ClamAV: files known to be clean
PUA_SUFFIXES = (".hdu", ".hsu")  # ClamAV: potentially unwanted applications

_HEX = re.compile(r"[0-9a-fA-F]+")
_SIZE = re.compile(r"[0-9]{1,20}")  # ASCII digits only: str.isdigit() takes "²"
_PACK = struct.Struct("<QI")


class HashListError(Exception):
    """A hash list has a line that is not an entry."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}")


@dataclass
class Entries:
    """Packed records and the names they point into (see native/vigild.h)."""

    sha: bytearray = field(default_factory=bytearray)
    md5: bytearray = field(default_factory=bytearray)
    sha1: bytearray = field(default_factory=bytearray)
    names: bytearray = field(default_factory=bytearray)
    warnings: list[str] = field(default_factory=list)
    _name_at: dict[str, int] = field(default_factory=dict)

    def name_offset(self, name: str) -> int:
        off = self._name_at.get(name)
        if off is None:
            off = self._name_at[name] = len(self.names)
            self.names += name.encode("utf-8", "replace").replace(b"\0", b"?") + b"\0"
        return off

    def add(self, digest: bytes, size: int, name: str) -> None:
        rec = digest + _PACK.pack(size, self.name_offset(name))
        self.table(len(digest)).extend(rec)

    def table(self, hash_len: int) -> bytearray:
        """The packed records of hashes ``hash_len`` bytes long."""
        by_len = {native.SHA256_LEN: self.sha, native.MD5_LEN: self.md5, native.SHA1_LEN: self.sha1}
        return by_len[hash_len]

    @property
    def count(self) -> int:
        return (
            len(self.sha) // native.SHA256_REC_LEN
            + len(self.md5) // native.MD5_REC_LEN
            + len(self.sha1) // native.SHA1_REC_LEN
        )


def is_compiled(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` starts with the compiled database's magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(DB_MAGIC)) == DB_MAGIC
    except OSError:
        return False


def _hexdigest(text: str, path: str, lineno: int) -> bytes:
    """Bytes of a SHA-256, SHA-1 or MD5 hex string."""
    if not _HEX.fullmatch(text):
        raise HashListError(path, lineno, f"not a hexadecimal hash: {text[:80]!r}")
    if len(text) not in (32, 40, 64):
        raise HashListError(path, lineno, f"hash of {len(text)} hex digits (want 64, 40 or 32)")
    return bytes.fromhex(text)


def _parse_colon(line: str, path: str, lineno: int) -> tuple[bytes, int, str]:
    parts = line.split(":")
    if len(parts) < 3:
        raise HashListError(path, lineno, "expected HASH:SIZE:NAME")
    digest = _hexdigest(parts[0], path, lineno)
    if parts[1] == "*":
        size = native.SIZE_ANY
    elif _SIZE.fullmatch(parts[1]) and int(parts[1]) < native.SIZE_ANY:
        size = int(parts[1])
    else:
        raise HashListError(path, lineno, f"size must be a number or '*', got {parts[1]!r}")
    name = parts[2].strip() or Path(path).stem
    return digest, size, name


def _parse_plain(line: str, path: str, lineno: int) -> tuple[bytes, int, str]:
    head, _, rest = line.partition(" ")
    digest = _hexdigest(head, path, lineno)
    if len(digest) == native.MD5_LEN:
        raise HashListError(path, lineno, "an MD5 needs its size: use HASH:SIZE:NAME")
    rest = rest.split(" #", 1)[0]
    name = rest.strip().lstrip("*") or Path(path).stem
    return digest, native.SIZE_ANY, name


def _parse_loki(line: str, path: str, lineno: int) -> tuple[bytes, int, str]:
    """LOKI's ``HASH;comment``: no size, so an MD5 matches a file of any size."""
    head, _, comment = line.partition(";")
    digest = _hexdigest(head.strip(), path, lineno)
    return digest, native.SIZE_ANY, comment.strip() or Path(path).stem


def _parser(line: str) -> Callable[[str, str, int], tuple[bytes, int, str]]:
    head = line.split(" ", 1)[0]
    colon, semi = head.find(":"), head.find(";")
    if semi >= 0 and (colon < 0 or semi < colon):
        return _parse_loki  # HASH;comment, where the comment may hold colons
    return _parse_colon if colon >= 0 else _parse_plain


def _parse_line(raw: str, path: str, lineno: int) -> tuple[bytes, int, str] | None:
    """One line's entry, None for a blank or comment line; raise on a bad line."""
    line = raw.strip().replace("\t", " ")
    if not line or line.startswith("#"):
        return None
    return _parser(line)(line, path, lineno)


def parse_lines(lines: Iterable[str], path: str, into: Entries) -> None:
    """Add every entry of one list to ``into``; raise on the first bad line."""
    for lineno, raw in enumerate(lines, 1):
        entry = _parse_line(raw, path, lineno)
        if entry is not None:
            into.add(*entry)


@dataclass(frozen=True)
class Sources:
    """The hash files named in [rules] hashes, sorted by what they mean."""

    known_bad: tuple[Path, ...]
    allow: tuple[Path, ...]
    warnings: tuple[str, ...]


def sources(names: Iterable[str], pua: bool = False) -> Sources:
    """Each named file, or the hash files in a named directory, by their ClamAV meaning."""
    bad: list[Path] = []
    allow: list[Path] = []
    warnings: list[str] = []
    for f in list_files(names, warnings):
        if f.suffix in ALLOW_SUFFIXES:
            allow.append(f)
        elif f.suffix in PUA_SUFFIXES and not pua:
            warnings.append(
                f"{f}: potentially unwanted applications, skipped (rules.pua = true loads them)"
            )
        else:
            bad.append(f)
    return Sources(tuple(bad), tuple(allow), tuple(warnings))


_KNOWN_SUFFIXES = (*LIST_SUFFIXES, *ALLOW_SUFFIXES, *PUA_SUFFIXES, DB_SUFFIX)


def list_files(names: Iterable[str], warnings: list[str] | None = None) -> Iterator[Path]:
    """Each named file, or the hash files inside a named directory (others are
    added to ``warnings``, when given, as skipped)."""
    for src in names:
        p = Path(src)
        if not p.is_dir():
            yield p
            continue
        for f in sorted(f for f in p.rglob("*") if f.is_file()):
            if f.suffix in _KNOWN_SUFFIXES:
                yield f
            elif warnings is not None:
                warnings.append(f"{f}: not a hash list ({', '.join(_KNOWN_SUFFIXES)}), skipped")


def parse_files(files: Iterable[Path]) -> Entries:
    entries = Entries()
    for f in files:
        try:
            with f.open(encoding="utf-8-sig", errors="replace") as fh:
                parse_lines(fh, str(f), entries)
        except OSError as e:
            raise HashListError(str(f), 0, e.strerror or str(e)) from e
    return entries


# Bumped when what a build keeps changes with the same format: 2, the entry
# listed first wins a repeated digest whatever its size (the admin's lists
# are read before feed content).
_BUILD = 2


def fingerprint(files: Iterable[Path]) -> str:
    """SHA-256 over the database format version, and the names and contents of
    ``files``: a database compiled by a vigild with another format is never reused."""
    h = hashlib.sha256(f"vhdb-{native.HASHDB_VERSION}-{_BUILD}\0".encode())
    for f in files:
        h.update(str(f).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Compiled:
    """What compiling gave: entries written (repeats included), and warnings."""

    count: int
    warnings: list[str]


def _read_list(builder: native.HashListBuilder, f: Path) -> list[str]:
    """Read one list into ``builder`` (in C); its warnings. A line the C reader
    leaves is judged here: an error names it, else the list is read in Python."""
    try:
        fd = os.open(f, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise HashListError(str(f), 0, e.strerror or str(e)) from e
    try:
        read = builder.parse(fd, f.stem)
        raw = os.pread(fd, read.bad_length, read.bad_offset) if read.bad_line else b""
    except native.NativeError as e:
        raise HashListError(str(f), 0, os.strerror(e.errno or 0)) from e
    finally:
        os.close(fd)
    if not read.bad_line:
        return []
    _parse_line(raw.decode("utf-8", "replace"), str(f), read.bad_line)  # raises if bad
    entries = parse_files([f])  # only Python reads it so (a Unicode space, bad UTF-8)
    for hlen in (native.SHA256_LEN, native.MD5_LEN, native.SHA1_LEN):
        table = entries.table(hlen)
        step = hlen + _PACK.size
        for i in range(0, len(table), step):
            size, off = _PACK.unpack_from(table, i + hlen)
            name = bytes(entries.names[off : entries.names.index(0, off)])
            builder.add(bytes(table[i : i + hlen]), size, name)
    return entries.warnings


def check_lists(files: Iterable[Path]) -> list[str]:
    """Read ``files`` as ``compile_lists`` does, writing nothing; their warnings."""
    builder = native.HashListBuilder()
    return [w for f in files for w in _read_list(builder, f)]


def compile_lists(files: list[Path], out: str) -> Compiled:
    """Parse ``files`` and write the database to ``out`` (atomically)."""
    builder = native.HashListBuilder()
    warnings: list[str] = []
    for f in files:
        warnings.extend(_read_list(builder, f))
    builder.write(out)
    return Compiled(sum(builder.counts()), warnings)


@dataclass(frozen=True)
class AllowList:
    """Files known to be clean (ClamAV .fp/.sfp): never reported, whatever matches."""

    sha256: frozenset[bytes] = frozenset()
    md5: frozenset[tuple[bytes, int]] = frozenset()  # (digest, size or SIZE_ANY)
    md5_sizes: frozenset[int] = frozenset()  # sizes an MD5 entry names
    fingerprint: str = ""
    warnings: tuple[str, ...] = ()
    sha1: frozenset[tuple[bytes, int]] = frozenset()  # (digest, size or SIZE_ANY)
    sha1_sizes: frozenset[int] = frozenset()  # sizes a SHA-1 entry names

    def __len__(self) -> int:
        return len(self.sha256) + len(self.md5) + len(self.sha1)

    def needs_md5(self, size: int) -> bool:
        return bool(self.md5) and (size in self.md5_sizes or native.SIZE_ANY in self.md5_sizes)

    def needs_sha1(self, size: int) -> bool:
        return bool(self.sha1) and (size in self.sha1_sizes or native.SIZE_ANY in self.sha1_sizes)

    def listed(
        self, sha256: bytes, md5: bytes | None, size: int, sha1: bytes | None = None
    ) -> bool:
        if sha256 in self.sha256:
            return True
        for digest, table in ((md5, self.md5), (sha1, self.sha1)):
            if digest is not None and (
                (digest, size) in table or (digest, native.SIZE_ANY) in table
            ):
                return True
        return False


def _sized(entries: Entries, hash_len: int) -> frozenset[tuple[bytes, int]]:
    """(digest, size) of every entry of one sized table (MD5 or SHA-1)."""
    table = entries.table(hash_len)
    step = hash_len + _PACK.size
    return frozenset(
        (bytes(table[i : i + hash_len]), _PACK.unpack_from(table, i + hash_len)[0])
        for i in range(0, len(table), step)
    )


def allow_list(files: Iterable[Path]) -> AllowList:
    """Read ClamAV .fp (MD5:SIZE:NAME) and .sfp (SHA-256 or SHA-1:SIZE:NAME) files."""
    files = list(files)
    if not files:
        return AllowList()
    entries = parse_files(files)
    sha = entries.sha
    step_s = native.SHA256_REC_LEN
    sha_set = frozenset(bytes(sha[i : i + native.SHA256_LEN]) for i in range(0, len(sha), step_s))
    md5_set, sha1_set = _sized(entries, native.MD5_LEN), _sized(entries, native.SHA1_LEN)
    return AllowList(
        sha256=sha_set,
        md5=md5_set,
        md5_sizes=frozenset(size for _, size in md5_set),
        fingerprint=fingerprint(files),
        warnings=tuple(entries.warnings),
        sha1=sha1_set,
        sha1_sizes=frozenset(size for _, size in sha1_set),
    )
