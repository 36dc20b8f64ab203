"""Known-bad hash lists: parse them and compile them into one database.

Accepted input, one entry a line, ``#`` starts a comment:

* plain lists: ``SHA256 [name]`` (also ``sha256sum`` output, where the name
  is the file name, and ``MD5 size [name]`` is not accepted: MD5 needs its
  size, as in ClamAV);
* ClamAV ``.hsb``/``.hdb``: ``HASH:SIZE:NAME[:FLEVEL]`` where HASH is a
  SHA-256 or an MD5 and SIZE may be ``*`` (any size);
* a compiled database (``.vhdb``, recognised by its magic), used as is.

Lines are recognised by shape, not by file extension, so a ``.txt`` of
ClamAV lines works too. A bad line is an error naming file and line;
SHA-1 entries (ClamAV allows them) are skipped with a warning, since the
prefilter computes SHA-256 and, where listed, MD5.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vigild import native

DB_MAGIC = b"VIGHASH\0"
DB_SUFFIX = ".vhdb"
LIST_SUFFIXES = (".sha256", ".txt", ".lst", ".hsb", ".hdb", ".hashes")

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
        (self.sha if len(digest) == native.SHA256_LEN else self.md5).extend(rec)

    @property
    def count(self) -> int:
        return len(self.sha) // native.SHA256_REC_LEN + len(self.md5) // native.MD5_REC_LEN


def is_compiled(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` starts with the compiled database's magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(DB_MAGIC)) == DB_MAGIC
    except OSError:
        return False


def _hexdigest(text: str, path: str, lineno: int) -> bytes | None:
    """Bytes of a SHA-256 or MD5 hex string; None for SHA-1 (skipped)."""
    if not _HEX.fullmatch(text):
        raise HashListError(path, lineno, f"not a hexadecimal hash: {text[:80]!r}")
    if len(text) == 40:
        return None
    if len(text) not in (32, 64):
        raise HashListError(path, lineno, f"hash of {len(text)} hex digits (want 64 or 32)")
    return bytes.fromhex(text)


def _parse_colon(line: str, path: str, lineno: int) -> tuple[bytes | None, int, str]:
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


def _parse_plain(line: str, path: str, lineno: int) -> tuple[bytes | None, int, str]:
    head, _, rest = line.partition(" ")
    digest = _hexdigest(head, path, lineno)
    if digest is not None and len(digest) == native.MD5_LEN:
        raise HashListError(path, lineno, "an MD5 needs its size: use HASH:SIZE:NAME")
    name = rest.strip().lstrip("*") or Path(path).stem
    return digest, native.SIZE_ANY, name


def parse_lines(lines: Iterable[str], path: str, into: Entries) -> None:
    """Add every entry of one list to ``into``; raise on the first bad line."""
    skipped = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip().replace("\t", " ")
        if not line:
            continue
        head = line.split(" ", 1)[0]
        parse = _parse_colon if ":" in head else _parse_plain
        digest, size, name = parse(line, path, lineno)
        if digest is None:
            skipped += 1
            continue
        into.add(digest, size, name)
    if skipped:
        into.warnings.append(
            f"{path}: {skipped} SHA-1 entries skipped (vigild matches SHA-256 and MD5)"
        )


def list_files(sources: Iterable[str]) -> Iterator[Path]:
    """Each source file, or the list files inside a source directory."""
    for src in sources:
        p = Path(src)
        if p.is_dir():
            yield from sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix in (*LIST_SUFFIXES, DB_SUFFIX)
            )
        else:
            yield p


def parse_files(files: Iterable[Path]) -> Entries:
    entries = Entries()
    for f in files:
        try:
            with f.open(encoding="utf-8", errors="replace") as fh:
                parse_lines(fh, str(f), entries)
        except OSError as e:
            raise HashListError(str(f), 0, e.strerror or str(e)) from e
    return entries


def fingerprint(files: Iterable[Path]) -> str:
    """SHA-256 over the names and contents of ``files``."""
    h = hashlib.sha256()
    for f in files:
        h.update(str(f).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def compile_lists(files: list[Path], out: str) -> Entries:
    """Parse ``files`` and write the database to ``out`` (atomically)."""
    entries = parse_files(files)
    native.write_hashdb(out, bytes(entries.sha), bytes(entries.md5), bytes(entries.names))
    return entries
