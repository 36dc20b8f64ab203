"""The scan corpus: a few thousand files, a few hundred MB, built once and cached.

Owns ``$VIGILD_BENCH_CORPUS`` (default ``/var/tmp/vigild-bench-corpus``):
one ``v<version>-<key>/`` directory holding ``files/`` (what is scanned)
and ``manifest.json`` (what was put there); the key is a hash of the
selection below, so changing it builds a new corpus and drops the old
one. It never writes anywhere else and only reads the system
directories it copies from.

Contents, every file a regular file with distinct content (duplicates are
dropped by SHA-256, so vigild's per-process clean-content cache cannot
answer any file from an earlier identical one):

* ELF binaries and libraries from /usr/bin, /usr/sbin, /usr/libexec and
  /usr/lib/x86_64-linux-gnu;
* Python sources from /usr/lib/python3.11 and /usr/lib/python3/dist-packages;
* text: C headers, documentation and compressed man pages (gzip archives);
* random data of log-uniform sizes (seeded, so the same bytes every time);
* two EICAR test files, so that test-string rules have something to find.

The selection is seeded and capped per kind. The copy is built in a
temporary directory and renamed into place, so an interrupted build is
never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS_VERSION = "2"
DEFAULT_ROOT = "/var/tmp/vigild-bench-corpus"
MAX_FILE = 16 << 20  # well below vigild's default max_file_size (64 MiB)

# The standard anti-virus test file, harmless by definition. Kept reversed,
# as the Makefile does, so the checkout itself holds no EICAR string.
EICAR = rb"*H+H$!ELIF-TSET-SURIVITNA-DRADNATS-RACIE$}7)CC7)^P(45XZP\4[PA@%P!O5X"[::-1]


@dataclass(frozen=True)
class Kind:
    """One kind of file: where it comes from and how much of it to take."""

    name: str
    roots: tuple[str, ...]
    max_files: int
    max_bytes: int
    min_size: int = 1


KINDS = (
    Kind(
        "elf",
        ("/usr/bin", "/usr/sbin", "/usr/libexec", "/usr/lib/x86_64-linux-gnu"),
        max_files=1000,
        max_bytes=160_000_000,
        min_size=1024,
    ),
    Kind(
        "python",
        ("/usr/lib/python3.11", "/usr/lib/python3/dist-packages"),
        max_files=1200,
        max_bytes=20_000_000,
        min_size=64,
    ),
    Kind(
        "text",
        ("/usr/include", "/usr/share/doc", "/usr/share/man"),
        max_files=1300,
        max_bytes=20_000_000,
        min_size=64,
    ),
)
RANDOM_FILES = 60
RANDOM_SIZES = (4096, 4 << 20)  # log-uniform between these


@dataclass(frozen=True)
class Corpus:
    path: Path  # the directory to scan
    files: int
    bytes: int
    manifest: dict[str, Any]

    def describe(self) -> str:
        """e.g. "elf 160 MB, random 33 MB, ...; no duplicate content"."""
        kinds = sorted(self.manifest["kinds"].items(), key=lambda kv: -kv[1]["bytes"])
        parts = [f"{name} {k['files']:,} files {k['bytes'] / 1e6:.0f} MB" for name, k in kinds]
        dup = "duplicate content" if self.manifest["duplicate_content"] else "no duplicate content"
        return ", ".join(parts) + f"; {dup}"


def corpus_root() -> Path:
    return Path(os.environ.get("VIGILD_BENCH_CORPUS", DEFAULT_ROOT))


def _wanted(kind: str, path: str, head: bytes) -> bool:
    """Is this file (first bytes ``head``) of ``kind``?"""
    if kind == "elf":
        return head.startswith(b"\x7fELF")
    if kind == "python":
        return path.endswith(".py")
    return head[:4] != b"\x7fELF" and not path.endswith(".py")


def _candidates(kind: Kind) -> list[tuple[str, int]]:
    """(path, size) of every regular file of ``kind`` below its roots, sorted."""
    found: list[tuple[str, int]] = []
    for root in kind.roots:
        for d, _, names in os.walk(root):
            for name in names:
                p = os.path.join(d, name)
                try:
                    st = os.lstat(p)
                    if not stat.S_ISREG(st.st_mode):
                        continue  # symlinks (library aliases) and specials
                    if not kind.min_size <= st.st_size <= MAX_FILE:
                        continue
                    with open(p, "rb") as f:
                        head = f.read(4)
                except OSError:
                    continue
                if _wanted(kind.name, p, head):
                    found.append((p, st.st_size))
    return sorted(found)


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def _safe(name: str) -> str:
    """A file name with only plain characters (scanner outputs stay parseable)."""
    return _UNSAFE.sub("_", name)[:80] or "_"


def _copy_kind(kind: Kind, dest: Path, seen: set[bytes], rng: random.Random) -> dict[str, int]:
    """Copy a seeded sample of ``kind`` into ``dest``; skip content already in ``seen``."""
    dest.mkdir()
    pool = _candidates(kind)
    rng.shuffle(pool)
    files = total = dups = 0
    for src, size in pool:
        if files >= kind.max_files or total + size > kind.max_bytes:
            continue
        try:
            data = Path(src).read_bytes()
        except OSError:
            continue
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            dups += 1
            continue
        seen.add(digest)
        (dest / f"{files:05d}-{_safe(os.path.basename(src))}").write_bytes(data)
        files += 1
        total += len(data)
    return {"files": files, "bytes": total, "duplicates_dropped": dups, "candidates": len(pool)}


def _write_random(dest: Path, rng: random.Random) -> dict[str, int]:
    dest.mkdir()
    lo, hi = RANDOM_SIZES
    total = 0
    for i in range(RANDOM_FILES):
        size = int(lo * (hi / lo) ** rng.random())
        (dest / f"{i:05d}.bin").write_bytes(rng.randbytes(size))
        total += size
    return {"files": RANDOM_FILES, "bytes": total}


def _write_eicar(dest: Path) -> dict[str, int]:
    dest.mkdir()
    (dest / "eicar.com").write_bytes(EICAR)
    embedded = b"notes before the test string\n" + EICAR + b"\nand after it\n"
    (dest / "eicar-in-text.txt").write_bytes(embedded)
    return {"files": 2, "bytes": len(EICAR) + len(embedded)}


def _walk(path: Path) -> Iterator[os.stat_result]:
    for d, _, names in os.walk(path):
        for name in names:
            yield os.lstat(os.path.join(d, name))


def _build(tmp: Path) -> dict[str, Any]:
    files = tmp / "files"
    files.mkdir(parents=True)
    seen: set[bytes] = set()
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        rng = random.Random(f"vigild-bench-{CORPUS_VERSION}-{kind.name}")
        kinds[kind.name] = _copy_kind(kind, files / kind.name, seen, rng)
    kinds["random"] = _write_random(files / "random", random.Random(f"{CORPUS_VERSION}-random"))
    kinds["eicar"] = _write_eicar(files / "eicar")
    return {
        "version": corpus_key(),
        "files": sum(k["files"] for k in kinds.values()),
        "bytes": sum(k["bytes"] for k in kinds.values()),
        "kinds": kinds,
        "duplicate_content": False,
    }


def _intact(where: Path, manifest: dict[str, Any]) -> bool:
    """Does the tree still hold what the manifest says (count and bytes)?"""
    sizes = [st.st_size for st in _walk(where / "files")]
    return (len(sizes), sum(sizes)) == (manifest["files"], manifest["bytes"])


def corpus_key() -> str:
    """Version and a hash of the selection: what the cached copy is valid for."""
    spec = repr((KINDS, MAX_FILE, RANDOM_FILES, RANDOM_SIZES, EICAR))
    return f"v{CORPUS_VERSION}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


def ensure_corpus() -> Corpus:
    """The cached corpus, built first when missing or damaged."""
    root = corpus_root()
    where = root / corpus_key()
    manifest_path = where / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if _intact(where, manifest):
            return Corpus(where / "files", manifest["files"], manifest["bytes"], manifest)
        shutil.rmtree(where)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{where.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    manifest = _build(tmp)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    os.rename(tmp, where)
    for old in root.glob("v*"):
        if old != where and (old / "manifest.json").is_file():
            shutil.rmtree(old)  # an earlier corpus version: ours, and stale
    return Corpus(where / "files", manifest["files"], manifest["bytes"], manifest)


def warm(corpus: Corpus) -> int:
    """Read every file once so the timed scans find it in the page cache."""
    total = 0
    for d, _, names in os.walk(corpus.path):
        for name in names:
            with open(os.path.join(d, name), "rb") as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
    return total
