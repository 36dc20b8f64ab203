"""One escaping for lines a person reads, one lossless JSON form for names that are not UTF-8."""

from __future__ import annotations

import base64
import json
import os
import unicodedata

import pytest

from vigild import textform


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("/srv/www/index.php", "/srv/www/index.php"),
        ("/srv/été/ünïcode ok.txt", "/srv/été/ünïcode ok.txt"),
        ("x\nMESSAGE_ID=1\nVIGILD_ACTION=allow", "x\\nMESSAGE_ID=1\\nVIGILD_ACTION=allow"),
        ("a\tb\rc", "a\\tb\\rc"),
        ("\x1b[2J\x1b]0;owned\x07", "\\x1b[2J\\x1b]0;owned\\x07"),
        ("del\x7f", "del\\x7f"),
        ("c1\x9b31m", "c1\\u009b31m"),  # a C1 CSI, valid UTF-8
        ("rtl\u202egnp.exe", "rtl\\u202egnp.exe"),  # a bidi override
        ("line\u2028sep", "line\\u2028sep"),
        (os.fsdecode(b"/tmp/\xff\x9b.bin"), "/tmp/\\xff\\x9b.bin"),  # bytes, not UTF-8
        ("back\\slash", "back\\\\slash"),  # doubled: "\\n" literally is not a newline
    ],
)
def test_escape(name: str, shown: str) -> None:
    assert textform.escape(name) == shown


def test_escaped_text_is_one_printable_line() -> None:
    every = "".join(chr(c) for c in range(0x00, 0x3000)) + os.fsdecode(bytes(range(0x80, 0x100)))
    out = textform.escape(every)
    left = {unicodedata.category(c) for c in out}
    assert not left & {"Cc", "Cf", "Cs", "Zl", "Zp"}  # no control, format, separator, raw byte


def test_escape_is_unambiguous() -> None:
    names = ["a\nb", "a\\nb", os.fsdecode(b"\x85"), "\x85", "\\x85"]
    assert len({textform.escape(n) for n in names}) == len(names)


@pytest.mark.parametrize(
    ("value", "shown"),
    [("/y", "/y"), ("", '""'), ("/a b action=allow", '"/a b action=allow"'), ('q"]', '"q\\"]"')],
)
def test_logfmt_values_cannot_forge_a_field(value: str, shown: str) -> None:
    assert textform.logfmt(value) == shown


def test_json_record_keeps_utf8_as_is() -> None:
    rec = {"type": "finding", "path": "/srv/été.php", "size": 3}
    assert textform.json_record(rec) == rec


def test_json_record_recovers_the_exact_bytes() -> None:
    raw = b"/tmp/\xffbad\n\x1b.php"
    rec = textform.json_record({"path": os.fsdecode(raw), "size": 1})
    assert list(rec) == ["path", "path_b64", "size"]
    assert rec["path"] == "/tmp/\ufffdbad\n\x1b.php"
    assert base64.b64decode(rec["path_b64"]) == raw
    # and it survives JSON as plain ASCII: no lone surrogates for a decoder to choke on
    line = json.dumps(rec)
    assert "\\udc" not in line
    assert base64.b64decode(json.loads(line)["path_b64"]) == raw


@pytest.mark.parametrize(
    "value", [b"/tmp/\xff.php", bytearray(b"/tmp/\xff.php"), list(b"/tmp/\xff.php")]
)
def test_from_bytes_is_lossless(value: bytes | bytearray | list[int]) -> None:
    text = textform.from_bytes(value)
    assert textform.raw(text) == b"/tmp/\xff.php"
    assert not textform.is_utf8(text)
