"""A file scanned right after it was written is remembered once the freshness
window has passed (issue 12: a close-write verdict reusable by the next open),
and never for bytes written after that scan."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from onaccess_harness import TEST_RULES, Namespace, OnAccess, needs_fanotify
from support import MARKER

pytestmark = [needs_fanotify, pytest.mark.root]

KEEP = "[onaccess]\nquarantine_on = []\n"  # detections stay in place: the open must deny
WRITE = (
    "import os, sys\n"
    "for p in sys.argv[3:]:\n"
    "    with open(p, 'wb') as f: f.write(sys.argv[1].encode())\n"
    "    if sys.argv[2]:\n"
    "        with open(p, 'r+b') as f: f.write(sys.argv[2].encode())\n"
)


def _write(ns: Namespace, paths: list[Path], first: str, then: str = "") -> None:
    r = ns.py(WRITE, first, then, *map(str, paths))
    assert r.returncode == 0, r.stderr


def test_the_open_after_a_write_is_answered_from_the_cache(ns: Namespace, daemon: OnAccess) -> None:
    daemon.start([TEST_RULES], extra=KEEP)
    files = [ns.mnt / f"w{i}" for i in range(10)]
    _write(ns, files, "written and scanned\n")
    daemon.wait_for(lambda: daemon.events()["settled"] >= 10, what="the settled verdicts")
    before = daemon.events()
    assert [daemon.read(p) for p in files] == ["ok 20"] * 10
    after = daemon.events()
    assert after["queued"] == before["queued"]  # no scan: the verdict after the write
    assert after["cache_allow"] - before["cache_allow"] == 10


def test_a_rewrite_in_the_same_tick_is_never_served_from_a_settled_verdict(
    ns: Namespace, daemon: OnAccess
) -> None:
    """Clean bytes closed, then the same number of bytes rewritten in place at
    once (the same clock tick on a kernel before 6.13 keeps the ctime): whatever
    the scan of the first write left behind must not answer for the second."""
    daemon.start([TEST_RULES], extra=KEEP)
    files = [ns.mnt / f"r{i}" for i in range(20)]
    _write(ns, files, "x" * len(MARKER), MARKER.decode())
    time.sleep(0.1)  # past the window: what settles has settled
    assert [daemon.read(p) for p in files] == ["EPERM"] * len(files)


def test_with_rules_on_names_a_written_file_never_settles(
    ns: Namespace, daemon: OnAccess, tmp_path: Path
) -> None:
    """The re-hash proves the bytes, not the name: renamed within the same clock
    tick (before Linux 6.13) a file keeps its ctime, and a verdict on its old
    name must not answer for a name a rule looks for."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yar").write_text('rule Named { condition: filename == "evil" }\n')
    daemon.start([rules], extra=KEEP)
    files = [ns.mnt / f"w{i}" for i in range(5)]
    _write(ns, files, "written and scanned\n")
    daemon.wait_for(lambda: daemon.events()["queued"] >= 5, what="the scans after the writes")
    time.sleep(0.1)  # past the window: what would settle has settled
    assert daemon.events()["settled"] == 0
    moved = ns.py("import os, sys; os.rename(sys.argv[1], sys.argv[2])", str(files[0]),
                  str(ns.mnt / "evil"))  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert daemon.read(ns.mnt / "evil") == "EPERM"
