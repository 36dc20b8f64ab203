"""Created and truncated files on a watched filesystem (issue 12: writes as cheap as reads).

An ``O_CREAT`` or ``O_TRUNC`` open meets an empty file: the reader answers
it, and skips the scan after a write that leaves the file empty, when the
snapshot found that zero bytes match nothing (``empty_clean``). Whatever
can match an empty file keeps it scanned.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from onaccess_harness import TEST_RULES, Namespace, OnAccess, needs_fanotify
from support import MARKER, VIGILD

pytestmark = [needs_fanotify, pytest.mark.root]

NO_CLOSE_WRITE = '[onaccess]\nevents = ["open", "exec"]\n'
CREATE = (
    "import os, sys\n"
    "for p in sys.argv[2:]:\n"
    "    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n"
    "    if sys.argv[1]:\n"
    "        os.write(fd, sys.argv[1].encode())\n"
    "    os.close(fd)\n"
)


def _create(ns: Namespace, paths: list[Path], data: str = "") -> None:
    r = ns.py(CREATE, data, *map(str, paths))
    assert r.returncode == 0, r.stderr


def test_creating_files_costs_one_scan_each_not_two(ns: Namespace, daemon: OnAccess) -> None:
    daemon.start([TEST_RULES])
    before = daemon.events()
    files = [ns.mnt / f"new{i}" for i in range(50)]
    _create(ns, files, "written after an empty create\n")
    daemon.wait_for(lambda: daemon.events()["queued"] >= before["queued"] + 50, what="the scans")
    after = daemon.events()
    assert after["empty"] - before["empty"] == 50  # the create opens: answered at once
    assert after["queued"] - before["queued"] == 50  # the close-writes: scanned
    status = subprocess.run(
        [VIGILD, "status", "--config", str(daemon.config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "50 empty" in status.stdout, status.stdout


def test_touch_costs_no_scan(ns: Namespace, daemon: OnAccess) -> None:
    daemon.start([TEST_RULES])
    before = daemon.events()
    _create(ns, [ns.mnt / f"t{i}" for i in range(20)])
    daemon.wait_for(
        lambda: daemon.events()["notify_events"] >= before["notify_events"] + 20,
        what="the close-writes",
    )
    after = daemon.events()
    assert after["queued"] == before["queued"]  # nothing scanned after the writes either
    assert after["empty"] - before["empty"] == 20


def test_a_file_written_after_an_empty_create_is_still_denied(
    ns: Namespace, daemon: OnAccess
) -> None:
    """The create was allowed at once; what is written next is scanned at the next
    open (no scan after the write here, so it is that open that must deny)."""
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE)
    path = ns.mnt / "dropped"
    _create(ns, [path], MARKER.decode())
    assert daemon.read(path) == "EPERM"
    assert daemon.events()["empty"] == 1


@pytest.mark.parametrize(
    "rule",
    ["rule Empty { condition: filesize == 0 }", 'rule Named { condition: filename == "e" }'],
    ids=["matches-zero-bytes", "reads-the-name"],
)
def test_rules_that_can_match_an_empty_file_keep_it_scanned(
    ns: Namespace, daemon: OnAccess, tmp_path: Path, rule: str
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yar").write_text(rule + "\n")
    daemon.start([rules], extra=NO_CLOSE_WRITE)
    r = ns.py(CREATE, "", str(ns.mnt / "e"))
    assert r.returncode != 0 and "Operation not permitted" in r.stderr  # the create itself
    assert daemon.read(ns.mnt / "e") == "EPERM"
    assert daemon.events()["empty"] == 0


def test_a_listed_empty_content_keeps_empty_files_scanned(
    ns: Namespace, daemon: OnAccess, tmp_path: Path
) -> None:
    hashes = tmp_path / "list.txt"
    hashes.write_text(f"{hashlib.sha256(b'').hexdigest()} Empty.Listed\n")
    ns.sh(f"touch {ns.mnt}/e")
    daemon.start([TEST_RULES], extra=f'[rules]\nhashes = ["{hashes}"]\n')
    assert daemon.read(ns.mnt / "e") == "EPERM"
    assert daemon.events()["empty"] == 0
