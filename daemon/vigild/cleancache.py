"""The clean-content cache on disk, so a restart does not rescan unchanged content.

Only entries of the current rules generation are saved (the generation
is derived from the rules' fingerprint, so it survives a restart with the
same rules and changes with any rule). The file is trusted only when
root (or we) own it and nobody else can write it: whoever can write it
can declare any content clean.

Format: ``VIGCLEAN`` magic, u32 version, u32 count, u64 generation,
u32 CRC-32 of the keys, then count 48-byte keys (SHA-256 + generation).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

from vigild import native
from vigild.owned import trusted

log = logging.getLogger(__name__)

_MAGIC = b"VIGCLEAN"
_HEADER = struct.Struct("<8sIIQI")
_VERSION = 1
_KEY = native.Cache.KEY_LEN


def _of_generation(keys: bytes, generation: int) -> bytes:
    gen = generation.to_bytes(8, "little")
    return b"".join(
        keys[i : i + _KEY] for i in range(0, len(keys), _KEY) if keys[i + 32 : i + 40] == gen
    )


def save(path: Path, cache: native.Cache, generation: int) -> int:
    """Write the current generation's entries atomically; returns how many."""
    keys = _of_generation(native.cache_export(cache), generation)
    n = len(keys) // _KEY
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, _HEADER.pack(_MAGIC, _VERSION, n, generation, zlib.crc32(keys)) + keys)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return n


def load(path: Path, cache: native.Cache, generation: int) -> int:
    """Load entries saved for ``generation``; 0 when absent, foreign, stale or damaged."""
    if not trusted(path):
        return 0
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        return 0
    magic, version, n, gen, crc = _HEADER.unpack_from(data)
    n = int(n)
    keys = data[_HEADER.size :]
    if (magic, version, gen) != (_MAGIC, _VERSION, generation):
        return 0
    if len(keys) != n * _KEY or zlib.crc32(keys) != crc:
        log.warning("%s: damaged, ignored", path)
        return 0
    native.cache_import(cache, keys)
    return n
