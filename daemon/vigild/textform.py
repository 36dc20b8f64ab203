"""How names that users chose are shown: one escaping for lines, one lossless JSON form.

Paths, process names and the messages built from them come from whoever
named the file. Written raw to a terminal or a plain log, a newline in a
name forges a line (``x\\nMESSAGE_ID=...``) and an ESC sequence drives
the terminal; written raw to JSON, a name that is not UTF-8 comes out as a
lone surrogate nobody can map back to the file. Every line vigild prints
for a person (scan results, alerts, quarantine list, status, the stderr
log) goes through ``escape``; every JSON record with such names goes
through ``json_record``. Nothing else in vigild formats names itself.

Inside vigild a name is a ``str`` decoded from its bytes with
``surrogateescape`` (as ``os.fsdecode`` does): bytes that are not UTF-8
ride along as U+DC80..U+DCFF and ``raw`` gets the exact bytes back.
"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Mapping
from typing import Any

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
# control (C0, DEL, C1), format (bidi overrides, zero-width), lone surrogates,
# line and paragraph separators: nothing a terminal should act on
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NEEDS_QUOTES = frozenset(' ="[]')


def from_bytes(value: str | bytes | bytearray | list[int]) -> str:
    """A name as vigild holds it: bytes (or journalctl's list of byte values) decoded losslessly."""
    if isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "surrogateescape")


def raw(text: str) -> bytes:
    """The exact bytes of a name held as ``str`` (the inverse of ``from_bytes``)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name decodes to; keep it visible
        return text.encode("utf-8", "surrogatepass")


def is_utf8(text: str) -> bool:
    """True when ``text`` stands for valid UTF-8 bytes (no escaped bytes in it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _char(c: str) -> str:
    named = _NAMED.get(c)
    if named:
        return named
    if unicodedata.category(c) not in _ESCAPED_CATEGORIES:
        return c
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:  # a byte that is not UTF-8, as surrogateescape holds it
        return f"\\x{n - 0xDC00:02x}"
    if n < 0x80:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def escape(text: str) -> str:
    """``text`` safe for one line of a terminal or plain log, and unambiguous.

    Newline, tab and CR become ``\\n`` ``\\t`` ``\\r``; other C0 controls and
    DEL ``\\xNN``; a byte that is not UTF-8 ``\\xNN`` (>= 0x80); C1 controls,
    format characters (bidi overrides, zero-width) and line separators
    ``\\uNNNN``; a backslash is doubled, so each output stands for one name.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_char(c) for c in text)


def logfmt(value: str) -> str:
    """A ``key=value`` value: escaped, and quoted when it holds a space, '=', '"' or brackets."""
    out = escape(value)
    if out and not _NEEDS_QUOTES.intersection(out):
        return out
    return '"' + out.replace('"', '\\"') + '"'


def json_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with every text value that is not UTF-8 in the lossless form.

    Such a value becomes readable text (each invalid byte as U+FFFD) and a
    ``<key>_b64`` field right after it holds the exact bytes, base64. Valid
    UTF-8 values are unchanged and have no ``_b64`` twin.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, str) and not is_utf8(value):
            data = raw(value)
            out[key] = data.decode("utf-8", "replace")
            out[f"{key}_b64"] = base64.b64encode(data).decode("ascii")
        else:
            out[key] = value
    return out
