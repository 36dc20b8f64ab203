"""SHA-256/MD5 through an fd: equal to hashlib on every input, never moves the offset."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from vigild import native

# Around SHA-256's 64-byte block and 56-byte padding edges, and the 64 KiB read chunk.
SIZES = [0, 1, 55, 56, 63, 64, 65, 119, 120, 4095, 65535, 65536, 65537, 3 * 65536 + 7, 1 << 20]


def _file(tmp_path: Path, data: bytes) -> int:
    p = tmp_path / "f"
    p.write_bytes(data)
    return os.open(p, os.O_RDONLY)


@pytest.mark.parametrize("size", SIZES)
def test_equal_to_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    fd = _file(tmp_path, data)
    try:
        sha, md5, n = native.hash_fd(fd, md5=True)
    finally:
        os.close(fd)
    assert sha == hashlib.sha256(data).digest()
    assert md5 == hashlib.md5(data).digest()
    assert n == size


def test_reads_with_pread_and_leaves_the_offset(tmp_path: Path) -> None:
    fd = _file(tmp_path, b"0123456789" * 1000)
    try:
        os.lseek(fd, 1234, os.SEEK_SET)
        sha, _, n = native.hash_fd(fd)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 1234
    finally:
        os.close(fd)
    assert n == 10000
    assert sha == hashlib.sha256(b"0123456789" * 1000).digest()


def test_keep_buffer_holds_exactly_the_hashed_bytes(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    fd = _file(tmp_path, data)
    small, big = bytearray(70_000), bytearray(300_000)
    try:
        r_small = native.prefilter_fd(None, None, 0, fd, small)
        r_big = native.prefilter_fd(None, None, 0, fd, big)
    finally:
        os.close(fd)
    assert bytes(big[:200_000]) == data
    assert r_big.sha256 == hashlib.sha256(data).digest()
    assert (r_big.size, r_big.hashed, r_big.oversize, r_big.head_len) == (
        200_000,
        True,
        False,
        200_000,
    )
    # over the buffer's limit: the head is kept, nothing is hashed
    assert bytes(small) == data[:70_000]
    assert (r_small.size, r_small.hashed, r_small.oversize) == (200_000, False, True)
    assert r_small.head_len == 70_000


@pytest.mark.slow
def test_file_larger_than_4_gib(tmp_path: Path) -> None:
    """Offsets and counts are 64-bit: a sparse 4 GiB + 3 byte file hashes right."""
    p = tmp_path / "big"
    tail = b"end"
    with p.open("wb") as f:
        f.seek(4 << 30)
        f.write(tail)
    h = hashlib.sha256()
    zeros = bytes(1 << 24)
    for _ in range((4 << 30) // len(zeros)):
        h.update(zeros)
    h.update(tail)
    fd = os.open(p, os.O_RDONLY)
    try:
        sha, _, n = native.hash_fd(fd)
    finally:
        os.close(fd)
    assert n == (4 << 30) + 3
    assert sha == h.digest()


def test_bad_fd_is_an_oserror() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as e:
        native.hash_fd(r)
    assert e.value.errno == errno.EBADF


def test_directory_fd_is_eisdir(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as e:
            native.hash_fd(fd)
    finally:
        os.close(fd)
    assert e.value.errno == errno.EISDIR
