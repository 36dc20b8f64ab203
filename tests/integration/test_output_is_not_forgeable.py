"""A file's name cannot forge output: lines stay lines, terminals get no escapes, JSON keeps the bytes.

One hostile set of names, through every place vigild shows a name: ``vigild
scan`` (text and --json), ``vigild quarantine list`` (text and --json) and
``vigild alerts`` (table and --json, read back from a private journald).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from onaccess_harness import Namespace
from support import DATA, MARKER, VIGILD, vigild
from vigild.quarantine import Store

# raw bytes of the names, and how a terminal line must show them
NAMES = {
    b"esc\x1b]0;owned\x07\x1b[2J.php": "esc\\x1b]0;owned\\x07\\x1b[2J.php",
    b"x\nMESSAGE_ID=1\nVIGILD_ACTION=allow": "x\\nMESSAGE_ID=1\\nVIGILD_ACTION=allow",
    b"latin1-\xff\xfe.php": "latin1-\\xff\\xfe.php",
}
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _hostile_tree(root: Path) -> dict[bytes, str]:
    """Each name holding the test marker; returns full raw path -> full escaped path."""
    root.mkdir()
    out = {}
    for raw, shown in NAMES.items():
        path = os.path.join(bytes(root), raw)
        with open(path, "wb") as f:
            f.write(b"<?php // " + MARKER + b"\n")
        out[path] = f"{root}/{shown}"
    return out


def _scan(tmp_path: Path, *args: str) -> tuple[int, str]:
    cfg = tmp_path / "vigild.toml"
    cfg.write_text(f'[rules]\ncompiled_dir = "{tmp_path / "compiled"}"\nlocal_dirs = []\n')
    r = vigild("scan", "--config", str(cfg), "--rules", str(DATA / "rules"), "--no-progress",
               "--compiled-dir", str(tmp_path / "scan-compiled"), "--workers", "1", *args)  # fmt: skip
    return r.returncode, r.stdout


def test_scan_text_shows_each_name_escaped_on_one_line(tmp_path: Path) -> None:
    paths = _hostile_tree(tmp_path / "up")
    code, out = _scan(tmp_path, str(tmp_path / "up"))
    assert code == 1
    found = [line for line in out.splitlines() if ": FOUND " in line]
    assert sorted(found) == sorted(
        f"{shown}: FOUND Vigild_Test_Marker (rule-match)" for shown in paths.values()
    )
    assert "\x1b" not in out and "\x07" not in out
    assert "MESSAGE_ID=1" not in [line.strip() for line in out.splitlines()]


def test_scan_json_gives_back_the_exact_bytes(tmp_path: Path) -> None:
    paths = _hostile_tree(tmp_path / "up")
    code, out = _scan(tmp_path, "--json", str(tmp_path / "up"))
    assert code == 1
    findings = [json.loads(line) for line in out.splitlines()][:-1]
    got = {
        base64.b64decode(f["path_b64"]) if "path_b64" in f else os.fsencode(f["path"])
        for f in findings
    }
    assert got == set(paths)
    latin1 = next(f for f in findings if "path_b64" in f)
    assert latin1["path"] == f"{tmp_path}/up/latin1-\ufffd\ufffd.php"  # readable text
    assert "\\udc" not in out  # no lone surrogates for a JSON reader to choke on
    assert sum("path_b64" in f for f in findings) == 1  # only the name that is not UTF-8


@root_only
def test_quarantine_list_shows_names_escaped_and_json_keeps_the_bytes(tmp_path: Path) -> None:
    paths = _hostile_tree(tmp_path / "up")
    cfg = tmp_path / "vigild.toml"
    cfg.write_text(f'[daemon]\nquarantine_dir = "{tmp_path / "q"}"\n')
    store = Store(str(tmp_path / "q"))
    store.prepare()
    for raw in paths:
        fd = os.open(raw, os.O_RDONLY)
        try:
            assert store.add(fd, os.fsdecode(raw), "rule-match", "Vigild_Test_Marker")
        finally:
            os.close(fd)
    r = vigild("quarantine", "list", "--config", str(cfg))
    rows = r.stdout.splitlines()[1:]
    assert sorted(row.split("  ok       ")[1] for row in rows) == sorted(
        f"{shown}  (Vigild_Test_Marker)" for shown in paths.values()
    )
    r = vigild("quarantine", "list", "--json", "--config", str(cfg))
    items = [json.loads(line) for line in r.stdout.splitlines()]
    got = {
        base64.b64decode(i["path_b64"]) if "path_b64" in i else os.fsencode(i["path"])
        for i in items
    }
    assert got == set(paths)


SEND = """
import os, sys
from vigild import journal
from vigild.alert import Alert, Kind
path = os.fsdecode(bytes.fromhex(sys.argv[1]))
comm = os.fsdecode(b"\\x1b[31mcomm\\xff")
a = Alert(Kind.DETECTED_DENIED, f"{path}: malicious, denied",
          {"VIGILD_PATH": path, "VIGILD_ACTION": "deny", "VIGILD_RULE": "Vigild_Test_Marker",
           "VIGILD_PID": "4242", "VIGILD_COMM": comm})
journal.send(a.journal_fields())
"""


@root_only
def test_alerts_from_the_journal_show_names_escaped_and_json_keeps_the_bytes(
    ns: Namespace,
) -> None:
    ns.start_journald()
    raw = b"/srv/up/" + b"x\x1b[2J\n\xff.php"
    r = ns.py(SEND, raw.hex())
    assert r.returncode == 0, r.stderr
    ns.sh("journalctl --sync")  # hand the entry to readers before asking
    out = ns.sh(f"{VIGILD} alerts --json").stdout.splitlines()
    (alert,) = [json.loads(line) for line in out]
    assert base64.b64decode(alert["path_b64"]) == raw
    assert alert["path"] == "/srv/up/x\x1b[2J\n\ufffd.php"
    assert base64.b64decode(alert["comm_b64"]) == b"\x1b[31mcomm\xff"
    assert base64.b64decode(alert["message_b64"]) == raw + b": malicious, denied"
    table = ns.sh(f"{VIGILD} alerts").stdout
    assert "\x1b" not in table
    (row,) = table.splitlines()[1:]
    assert row.split()[1:3] == ["deny", "Vigild_Test_Marker"]
    assert "\\x1b[31mcomm\\xff[4242]" in row
    assert row.endswith(" /srv/up/x\\x1b[2J\\n\\xff.php")
