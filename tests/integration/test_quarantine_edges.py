"""Quarantine edges as an admin meets them: hard links, sparse files, items whose bytes are gone.

Each test moves a file of its own tmp directory in with the Store (as the
daemon does) and then uses ``vigild quarantine list|restore`` (root only).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from support import vigild
from vigild.quarantine import Store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the quarantine is root's: needs root")

MIB = 1 << 20


class Quarantine:
    def __init__(self, tmp: Path) -> None:
        self.config = tmp / "vigild.toml"
        self.config.write_text(f'[daemon]\nquarantine_dir = "{tmp / "q"}"\n')
        self.store = Store(str(tmp / "q"))
        self.store.prepare()

    def add(self, path: Path) -> str:
        fd = os.open(path, os.O_RDONLY)
        try:
            item = self.store.add(fd, str(path), "rule-match", "Evil_Rule", ("Evil_Rule",))
        finally:
            os.close(fd)
        assert item is not None
        return item.id

    def cli(self, *args: str) -> tuple[int, str, str]:
        r = vigild("quarantine", *args, "--config", str(self.config))
        return r.returncode, r.stdout, r.stderr

    def listed(self) -> list[dict[str, Any]]:
        code, out, err = self.cli("list", "--json")
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def q(tmp_path: Path) -> Quarantine:
    return Quarantine(tmp_path)


def test_other_hard_links_are_recorded_and_listed(q: Quarantine, tmp_path: Path) -> None:
    """Only the detected name is moved: the list says the file is still there under others."""
    (tmp_path / "www").mkdir()
    bad = tmp_path / "www" / "shell.php"
    bad.write_bytes(b"<?php evil();\n")
    os.link(bad, tmp_path / "www" / "copy.php")
    os.link(bad, tmp_path / "hidden.php")
    item_id = q.add(bad)
    assert not bad.exists() and (tmp_path / "hidden.php").exists()
    (item,) = q.listed()
    assert item["links"] == 2
    code, out, _ = q.cli("list")
    assert code == 0
    assert out.splitlines()[1].startswith(item_id)
    assert out.splitlines()[1].endswith(f"{bad}  (Evil_Rule; 2 other hard links not moved)")


def _sparse(path: Path) -> bytes:
    """4 KiB of data, a 100 MiB hole, 4 KiB of data, a 20 MiB hole at the end."""
    head, tail = b"H" * 4096, b"T" * 4096
    with path.open("wb") as f:
        f.write(head)
        f.seek(4096 + 100 * MIB)
        f.write(tail)
        f.truncate(8192 + 120 * MIB)
    return head + bytes(100 * MIB) + tail + bytes(20 * MIB)


def test_sparse_files_keep_their_holes_in_quarantine_and_back(
    q: Quarantine, tmp_path: Path
) -> None:
    victim = tmp_path / "disk.img"
    content = _sparse(victim)
    before = victim.stat()
    assert before.st_blocks * 512 < MIB, "this filesystem does not keep holes"
    item_id = q.add(victim)
    (item,) = q.listed()
    assert (item["size"], item["sha256"]) == (len(content), hashlib.sha256(content).hexdigest())
    stored = q.store.dir / item_id / "data"
    assert stored.stat().st_blocks <= before.st_blocks + 16  # 8 KiB of slack, not 120 MiB
    code, _, err = q.cli("restore", item_id)
    assert code == 0, err
    after = victim.stat()
    assert after.st_size == before.st_size
    assert after.st_blocks <= before.st_blocks + 16
    assert hashlib.sha256(victim.read_bytes()).digest() == hashlib.sha256(content).digest()


def test_an_item_whose_bytes_are_gone_is_listed_as_such_and_not_restored(
    q: Quarantine, tmp_path: Path
) -> None:
    victim = tmp_path / "gone.sh"
    victim.write_bytes(b"#!/bin/sh\n")
    gone = q.add(victim)
    victim.write_bytes(b"#!/bin/sh\necho 2\n")
    short = q.add(victim)
    (q.store.dir / gone / "data").unlink()
    (q.store.dir / short / "data").write_bytes(b"#!")  # cut short
    states = {i["id"]: (i["state"], i["restorable"]) for i in q.listed()}
    assert states == {gone: ("missing", False), short: ("damaged", False)}
    code, out, _ = q.cli("list")
    rows = {line.split()[0]: line.split()[4] for line in out.splitlines()[1:]}
    assert rows == {gone: "MISSING", short: "DAMAGED"}
    code, _, err = q.cli("restore", gone)
    assert code == 2
    assert err.splitlines() == [
        f"vigild: quarantine item {gone} cannot be restored: its bytes are gone "
        f"({q.store.dir / gone / 'data'} is missing); "
        f"`vigild quarantine delete {gone}` removes the entry"
    ]
    assert not victim.exists()
    code, _, err = q.cli("restore", short)
    assert code == 2
    assert "is damaged" in err and "nothing restored" in err
