"""A write through a shared mapping on tmpfs sets no ctime (found by review).

tmpfs (also ramfs, hugetlbfs) maps a page writable at its first fault, a
read too, and never marks it again: a user who opens their own cached-clean
file for writing, maps it, reads a page and writes to it changes the bytes
under the ctime that keys the cached verdict. So there a clean verdict holds
only while nobody has the file open for writing (checked at each hit), and
with a mount mark, which does not see other mounts' writers close, it is
not kept at all (native/remember.c remember_clean_value).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from onaccess_harness import PYTHON, TEST_RULES, Namespace, OnAccess, needs_fanotify
from support import MARKER
from test_onaccess import _age, _put

pytestmark = [needs_fanotify, pytest.mark.root]

NO_CLOSE_WRITE = '[onaccess]\nevents = ["open", "exec"]\nquarantine_on = []\n'

# Map the file, read a page (the fault maps it writable on tmpfs), then write
# through it on command, and keep the file open.
READ_THEN_WRITE = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 4096)
_ = m[0]
print("mapped", os.fstat(fd).st_ctime_ns, flush=True)
sys.stdin.readline()
m[100:100 + len(sys.argv[2])] = sys.argv[2].encode()
print("written", os.fstat(fd).st_ctime_ns, flush=True)
sys.stdin.readline()
"""


def _user_file(ns: Namespace) -> Path:
    path = ns.mnt / "user.txt"
    _put(ns, path, b"." * 4096)
    ns.sh(f"chown 1000:1000 {path}")  # a user's file: no ignore mark, the verdict cache
    _age(ns, path)
    return path


def test_a_cached_verdict_does_not_answer_while_a_mapping_rewrites_the_file(
    ns: Namespace, daemon: OnAccess
) -> None:
    path = _user_file(ns)
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE)
    assert daemon.read(path) == "ok 4096"
    before = daemon.events()["cache_allow"]
    assert daemon.read(path) == "ok 4096"
    assert daemon.events()["cache_allow"] == before + 1  # cached while nobody writes
    w = ns.popen(
        PYTHON, "-c", READ_THEN_WRITE, str(path), MARKER.decode(),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert w.stdin is not None and w.stdout is not None
        mapped = w.stdout.readline().split()
        w.stdin.write("\n")
        w.stdin.flush()
        written = w.stdout.readline().split()
        assert mapped[0] == "mapped" and written[0] == "written"
        if mapped[1] != written[1]:
            pytest.skip("this kernel gave the mapped write a new ctime")
        assert daemon.read(path) == "EPERM"  # scanned as it is, not answered from the cache
    finally:
        w.kill()
        w.wait(10)


def test_with_a_mount_mark_no_clean_verdict_is_kept_on_tmpfs(
    ns: Namespace, daemon: OnAccess
) -> None:
    path = _user_file(ns)
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE + 'mark = "mount"\n')
    assert daemon.read(path) == "ok 4096"
    queued = daemon.events()["queued"]
    assert daemon.read(path) == "ok 4096"
    events = daemon.events()
    assert events["cache_allow"] == 0 and events["queued"] == queued + 1


def test_on_an_overlay_no_clean_verdict_is_kept(ns: Namespace, daemon: OnAccess) -> None:
    """Found by review: an overlay shows its upper file's ctime, a tmpfs one here, and
    that file can be mapped and rewritten through its own path unseen by a lease on
    the overlay's file. Only the overlay is watched, as on a live system."""
    top = ns.mnt
    ns.sh(f"mkdir {top}/lower {top}/upper {top}/work {top}/merged")
    ns.sh(
        f"mount -t overlay overlay -o lowerdir={top}/lower,upperdir={top}/upper,"
        f"workdir={top}/work {top}/merged"
    )
    path = top / "merged" / "user.txt"
    _put(ns, path, b"." * 4096)
    ns.sh(f"chown 1000:1000 {path}")
    _age(ns, path)
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE, watch=[top / "merged"])
    assert daemon.read(path) == "ok 4096"
    queued = daemon.events()["queued"]
    assert daemon.read(path) == "ok 4096"
    events = daemon.events()
    assert events["cache_allow"] == 0 and events["queued"] == queued + 1
