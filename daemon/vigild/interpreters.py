"""Interpreters and the dynamic loader, found as files and hashed for the C reader.

An open made by one of these programs is checked like an execution: the
file it opens is code it is about to run (``sh x``, ``python3 x``,
``ld-linux-x86-64.so.2 ./x``). The C reader knows them by file, never by
name: ``resolve`` looks each configured name or glob up in the usual
directories, follows links, keeps ELF files only, and returns each one's
(dev, ino) (the reader's fast path: one stat of /proc/PID/exe) and the
SHA-256 of its contents (a renamed or copied interpreter is recognised by
it, once a worker has hashed that program). Built with the snapshot, at
start and at every reload; nothing else keeps a copy.
"""

from __future__ import annotations

import glob
import logging
import os
import stat
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass

from vigild import native

log = logging.getLogger(__name__)

SEARCH_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin", "/lib64", "/lib")
ELF_MAGIC = b"\x7fELF"


def search_dirs() -> tuple[str, ...]:
    """The directories names are looked up in, the multiarch library ones included."""
    triplet = sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu"
    return (*SEARCH_DIRS, f"/usr/lib/{triplet}", f"/lib/{triplet}")


@dataclass(frozen=True)
class Interpreter:
    path: str  # resolved
    dev: int
    ino: int
    size: int
    sha256: bytes


@dataclass(frozen=True)
class Interpreters:
    """The interpreter files found for a config's ``interpreters`` list."""

    found: tuple[Interpreter, ...] = ()

    @property
    def ids(self) -> tuple[tuple[int, int], ...]:
        return tuple((i.dev, i.ino) for i in self.found)

    @property
    def digests(self) -> tuple[bytes, ...]:
        return tuple(dict.fromkeys(i.sha256 for i in self.found))

    def could_be(self, size: int) -> bool:
        """Whether a program of ``size`` bytes may hash like one of these: else
        there is no need to read it (a 200 MB program costs nothing)."""
        return any(i.size == size for i in self.found)


def _candidates(pattern: str, dirs: Iterable[str]) -> list[str]:
    """Paths matching ``pattern``: an absolute path (or glob) as is, else in each of ``dirs``."""
    if pattern.startswith("/"):
        return sorted(glob.glob(pattern))
    return [p for d in dirs for p in sorted(glob.glob(os.path.join(glob.escape(d), pattern)))]


def _examine(path: str) -> Interpreter | None:
    """The ELF file at resolved ``path`` with its identity and hash, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or os.pread(fd, 4, 0) != ELF_MAGIC:
            return None  # python3-config, phpize: scripts, never a process's program
        sha, _, _ = native.hash_fd(fd)
        return Interpreter(path, st.st_dev, st.st_ino, st.st_size, sha)
    except OSError as e:
        log.warning("%s: cannot read this interpreter: %s", path, e.strerror)
        return None
    finally:
        os.close(fd)


def resolve(patterns: Iterable[str], dirs: Iterable[str] | None = None) -> Interpreters:
    """The files ``patterns`` (names, globs or absolute paths) name, resolved and hashed."""
    where = tuple(dirs) if dirs is not None else search_dirs()
    seen: dict[str, Interpreter | None] = {}
    for pattern in patterns:
        for path in _candidates(pattern, where):
            real = os.path.realpath(path)
            if real not in seen:
                seen[real] = _examine(real)
    return Interpreters(tuple(i for i in seen.values() if i is not None))
