"""A write through a shared mapping on tmpfs sets no ctime (found by review).

tmpfs (also ramfs, hugetlbfs) maps a page writable at its first fault, a
read too, and never marks it again; and a page a user pinned for io_uring
(a fixed buffer) is written later by the kernel with no file open at all.
Either changes the bytes under the ctime that keys a cached verdict. So
there only a file that only root can write is remembered clean, only while
nobody has it open for writing (checked at each hit), and not at all with a
mount mark, which does not see other mounts' writers close
(native/remember.c remember_clean_value).
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


def _file(ns: Namespace, owner: str) -> Path:
    path = ns.mnt / "f.txt"
    _put(ns, path, b"." * 4096)
    ns.sh(f"chown {owner} {path}")
    _age(ns, path)
    return path


def _read_twice(daemon: OnAccess, path: Path) -> dict[str, int]:
    """The counters' change over the second of two reads of ``path``."""
    assert daemon.read(path) == "ok 4096"
    before = daemon.events()
    assert daemon.read(path) == "ok 4096"
    after = daemon.events()
    return {k: after[k] - before[k] for k in ("cache_allow", "queued")}


def test_a_users_file_on_tmpfs_is_never_answered_from_the_cache(
    ns: Namespace, daemon: OnAccess
) -> None:
    """Found by review: a user could pin a page of their own file for io_uring,
    close it, and write it after its verdict was cached: no writer, no ctime."""
    path = _file(ns, "1000:1000")
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE)
    assert _read_twice(daemon, path) == {"cache_allow": 0, "queued": 1}


def test_a_cached_verdict_does_not_answer_while_a_mapping_rewrites_the_file(
    ns: Namespace, daemon: OnAccess
) -> None:
    path = _file(ns, "0:0")  # only root can write it: remembered, no ignore mark below
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE + "ignore_marks = false\n")
    assert _read_twice(daemon, path) == {"cache_allow": 1, "queued": 0}
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
    path = _file(ns, "0:0")
    extra = NO_CLOSE_WRITE + 'mark = "mount"\nignore_marks = false\n'
    daemon.start([TEST_RULES], extra=extra)
    assert _read_twice(daemon, path) == {"cache_allow": 0, "queued": 1}


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
    path = top / "merged" / "f.txt"
    _put(ns, path, b"." * 4096)
    _age(ns, path)
    extra = NO_CLOSE_WRITE + "ignore_marks = false\n"
    daemon.start([TEST_RULES], extra=extra, watch=[top / "merged"])
    assert _read_twice(daemon, path) == {"cache_allow": 0, "queued": 1}
