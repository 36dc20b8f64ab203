"""Archives built in memory for the tests: zip (stored, deflated), tar, gzip, bzip2, xz."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import tarfile
import zipfile
import zlib


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


def tar_of(files: dict[str, bytes], compress: str = "", dirs: int = 0) -> bytes:
    """A tar of ``files``, after ``dirs`` empty directories."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode=f"w:{compress}") as t:
        for i in range(dirs):
            info = tarfile.TarInfo(f"d{i}")
            info.type = tarfile.DIRTYPE
            t.addfile(info)
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


def zip_listing(entries: int, said: int | None = None) -> bytes:
    """A zip whose central directory lists ``entries`` entries, all pointing at
    one local header (as the reviewer's crafted file did). Its end records say
    ``said`` entries (default: the truth), in a zip64 record when over 65535."""
    name, body = b"a", b"x"
    crc = zlib.crc32(body)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 1, 1, 1, 0) + name + body
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, 1, 1, 1, *[0] * 6)
    directory = (entry + name) * entries
    said = entries if said is None else said
    at = len(local)  # where the directory starts
    end64 = b""
    if said > 0xFFFF:  # the 16-bit counts say "see the zip64 record"
        end64 = struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, said, said, len(directory), at
        )
        end64 += struct.pack("<4sLQL", b"PK\x06\x07", 0, at + len(directory), 1)
    short = min(said, 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, short, short, len(directory), at, 0)
    return local + directory + end64 + end
