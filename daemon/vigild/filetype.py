"""The ``filetype`` external variable: a file's kind from its first bytes, as LOKI names it.

signature-base rules compare ``filetype`` with LOKI's names ("EXE", "ELF",
"PHP", ...). The table below keeps the entries of LOKI's magic table
(signature-base misc/file-type-signatures.txt, Detection Rule License 1.1,
https://github.com/Neo23x0/signature-base) that some signature-base rule
tests, plus a few names those rules test that the public table lacks
("MACH-O", "Python", "PHP" for ``<?php``, "LSASS Dump File" as THOR names a
minidump). As in LOKI the longest matching prefix wins; no match is "".
Nothing here reads the corpus at run time.
"""

from __future__ import annotations

# (magic bytes, name); longer magics are tried first
_MAGIC: tuple[tuple[bytes, str], ...] = tuple(
    sorted(
        (
            (b"MZ", "EXE"),
            (b"\x7fELF", "ELF"),
            (b"\xfe\xed\xfa\xce", "MACH-O"),
            (b"\xfe\xed\xfa\xcf", "MACH-O"),
            (b"\xce\xfa\xed\xfe", "MACH-O"),
            (b"\xcf\xfa\xed\xfe", "MACH-O"),
            (b"<?php", "PHP"),
            (b"<?PHP", "PHP"),
            (b"<%@", "ASP"),
            (b"\xff\xfe<\x00%\x00@\x00", "ASP"),
            (b"\xfe\xff\x00<\x00%\x00@", "ASP"),
            (b"<%", "JSP"),
            (b"<%--", "JSP"),
            (b"\xff\xfe<\x00%\x00", "JSP"),
            (b"\xfe\xff\x00<\x00%", "JSP"),
            (b"@ech", "BATCH"),
            (b"@ECH", "BATCH"),
            (b"On Error Resume", "VBS"),
            (b"Function", "VBS"),
            (b"{\\rt", "RTF"),
            (b"MDMP", "MDMP"),
            (b"#!/usr/bin/python", "Python"),
            (b"#!/usr/bin/env python", "Python"),
            (b"#!/", "UNIX SCRIPT"),
            (b"#!", "Script"),
            (b"%PDF", "PDF"),
            (b"GIF8", "GIF"),
            (b"PK\x03\x04", "ZIP"),
            (b"\x1f\x8b\x08", "GZIP"),
            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE"),
            (b"\xca\xfe", "Java Class or DYLIB"),
        ),
        key=lambda m: -len(m[0]),
    )
)
LONGEST = max(len(m) for m, _ in _MAGIC)


def of(head: bytes | memoryview) -> str:
    """LOKI's name for a file starting with ``head``; "" when none fits."""
    start = bytes(head[:LONGEST])
    for magic, name in _MAGIC:
        if start.startswith(magic):
            return name
    return ""
