"""A verified download turned into files of a new generation: rule files or one hash list.

Writes only below the directory it is given (a generation being built).
An archive member is refused, and the whole feed with it, when it would
land outside that directory (an absolute name, ``..``), is anything but a
regular file or a directory (links, devices, FIFOs), or when the members
unpack to more than ``update.max_unpacked`` bytes or ``MAX_MEMBERS``
files and directories (a zip's directory is counted before zipfile reads
it, vigild.zipdir): the bytes written are counted, not the sizes the
archive claims.

A hashes feed becomes one ClamAV-style list, ``feed.hsb``, every entry
named ``feed/<feed>/<its name>``: that prefix is how a detection is known
to come from feed content (vigild.protect). Plain SHA-256 and MD5 lines,
``sha256sum`` output, ClamAV .hsb/.hdb and MalwareBazaar's SHA-256 export
are read; a feed cannot carry an allow-list (.fp/.sfp): those are dropped.
"""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from vigild import zipdir
from vigild.generations import HASH_PREFIX

MAX_MEMBERS = 100_000
_ALLOW_SUFFIXES = (".fp", ".sfp")


class ContentError(Exception):
    """The download is not acceptable content; the message says why."""


@dataclass
class _Budget:
    left: int
    members: int = 0

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise ContentError("unpacks to more than update.max_unpacked (an archive bomb?)")

    def member(self) -> None:
        """Count one more member, a directory too: each costs an inode on disk."""
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise ContentError(f"more than {MAX_MEMBERS} archive members")


def _safe_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\0" in name:
        raise ContentError(f"archive member {name!r} points outside the feed directory")
    return p


def _copy(src: IO[bytes] | gzip.GzipFile, dst: Path, budget: _Budget) -> None:
    budget.member()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "xb") as out:
        while chunk := src.read(1 << 16):
            budget.take(len(chunk))
            out.write(chunk)
    dst.chmod(0o644)


def _tar_members(tf: tarfile.TarFile, into: Path, budget: _Budget) -> None:
    for m in tf:
        name = _safe_name(m.name)
        if m.isdir():
            budget.member()
            (into / name).mkdir(parents=True, exist_ok=True)
            continue
        if not m.isreg():
            what = "link" if m.issym() or m.islnk() else "device or special file"
            raise ContentError(f"archive member {m.name!r} is a {what}; only files are accepted")
        f = tf.extractfile(m)
        assert f is not None
        _copy(f, into / name, budget)


def _zip_members(zf: zipfile.ZipFile, into: Path, budget: _Budget) -> None:
    for info in zf.infolist():
        name = _safe_name(info.filename)
        mode = info.external_attr >> 16
        if info.is_dir():
            budget.member()
            (into / name).mkdir(parents=True, exist_ok=True)
            continue
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # no type bits: a plain file
            raise ContentError(f"archive member {info.filename!r} is not a regular file")
        with zf.open(info) as f:
            _copy(f, into / name, budget)


def unpack(data: bytes, into: Path, max_unpacked: int, single: str = "feed.txt") -> None:
    """Unpack a .tar.gz/.tar/.zip into ``into``, or write a single (possibly gzipped)
    file there as ``single``."""
    single = _safe_name(single).name
    budget = _Budget(max_unpacked)
    into.mkdir(parents=True, exist_ok=True)
    try:
        if data[:4] == b"PK\x03\x04":
            listed = zipdir.too_many(data, MAX_MEMBERS)
            if listed:  # ZipFile would hold every entry before one is counted
                raise ContentError(f"more than {MAX_MEMBERS} archive members ({listed})")
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                _zip_members(zf, into, budget)
            return
        if _is_tar(data):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
                _tar_members(tf, into, budget)
            return
        if data[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
                _copy(g, into / single.removesuffix(".gz"), budget)
            return
        _copy(io.BytesIO(data), into / single, budget)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile, OSError) as e:
        raise ContentError(f"not a readable archive: {e}") from None


def _is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            tf.next()
        return True
    except (tarfile.TarError, EOFError, OSError):
        return False


# ------------------------------------------------------------------ hash lists


def _entry(line: str, feed: str, default: str) -> str | None:
    """One list line as ``HASH:SIZE:feed/<feed>/NAME``; None for a comment."""
    line = line.strip().replace("\t", " ")
    if not line or line.startswith("#"):
        return None
    head = line.split(" ", 1)[0]
    colon, semi = head.find(":"), head.find(";")
    if semi >= 0 and (colon < 0 or semi < colon):  # LOKI: HASH;comment
        digest, _, name = line.partition(";")
        size = "*"
    elif colon >= 0:  # ClamAV: HASH:SIZE:NAME[:FLEVEL]
        parts = line.split(":")
        digest, size, name = parts[0], parts[1] if len(parts) > 1 else "", ":".join(parts[2:3])
    else:  # plain, sha256sum output, MalwareBazaar's export
        digest, _, rest = line.partition(" ")
        size, name = "*", rest.split(" #", 1)[0].strip().lstrip("*")
    name = (name.strip() or default).replace(":", "_")
    return f"{digest.strip()}:{size}:{HASH_PREFIX}{feed}/{name}"


def _list_lines(files: list[Path]) -> Iterator[tuple[Path, str]]:
    for f in files:
        with f.open(encoding="utf-8-sig", errors="replace") as fh:
            for line in fh:
                yield f, line


def normalise_hashes(raw: Path, out: Path, feed: str) -> int:
    """Write every list below ``raw`` as ``out`` (one .hsb); the entries written."""
    files = sorted(p for p in raw.rglob("*") if p.is_file() and p.suffix not in _ALLOW_SUFFIXES)
    if not files:
        raise ContentError("no hash list in the download")
    n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as dst:
        for f, line in _list_lines(files):
            entry = _entry(line, feed, f.stem)
            if entry is not None:
                dst.write(entry + "\n")
                n += 1
    if not n:
        raise ContentError("the hash lists hold no entries")
    return n
