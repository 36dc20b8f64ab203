"""Archives built in memory for the tests: zip (stored, deflated), tar, gzip, bzip2, xz."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile


def zip_of(files: dict[str, bytes], deflate: bool = True, encrypt_flag: bool = False) -> bytes:
    b = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(b, "w", method) as z:
        for name, data in files.items():
            z.writestr(name, data)
    raw = bytearray(b.getvalue())
    if encrypt_flag:  # mark every member encrypted (flag bit 0), as a password tool would
        for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            i = raw.find(sig)
            while i >= 0:
                raw[i + at] |= 1
                i = raw.find(sig, i + 4)
    return bytes(raw)


def tar_of(files: dict[str, bytes], compress: str = "") -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode=f"w:{compress}") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return b.getvalue()


def compressed(data: bytes, fmt: str) -> bytes:
    return {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[fmt](data)


def zip_with_stub(files: dict[str, bytes], stub: bytes = b"#!/bin/sh\nexit 0\n") -> bytes:
    """A zip behind a stub, as executable jars and self-extracting archives are."""
    return stub + zip_of(files)


def zip_first_member_damaged(files: dict[str, bytes], how: str) -> bytes:
    """A zip whose first member is damaged ("crc", "encrypted" flag, or a huge
    "size" in the central directory); the members after it are intact."""
    raw = bytearray(zip_of(files))
    cd = raw.find(b"PK\x01\x02")
    if how == "crc":
        raw[cd + 16] ^= 0xFF  # CRC-32 in the central directory entry
        local = raw.find(b"PK\x03\x04")
        raw[local + 14] ^= 0xFF  # and in the local header
    elif how == "encrypted":
        raw[cd + 8] |= 1
        raw[raw.find(b"PK\x03\x04") + 6] |= 1
    elif how == "size":
        raw[cd + 24 : cd + 28] = (0x7FFFFFFF).to_bytes(4, "little")  # uncompressed size
    return bytes(raw)
