"""A detected inode is refused under every name until its content changes.

Regression for issue 11 (8): quarantining one name of a file with two hard
links unlinks that name (which changes the inode's ctime, so its cached
verdict no longer matched), and the other name, outside the watched paths,
was then allowed without a scan: it kept serving the malicious bytes.
"""

from __future__ import annotations

import pytest

from onaccess_harness import DEFAULT_RULES, Namespace, OnAccess, needs_fanotify
from support import eicar

pytestmark = [needs_fanotify, pytest.mark.root]

WRITE = "import sys; open(sys.argv[1], 'wb').write(bytes.fromhex(sys.argv[2]))"


def test_the_other_name_of_a_quarantined_file_stays_denied(ns: Namespace, daemon: OnAccess) -> None:
    watched, elsewhere = ns.mnt / "uploads", ns.mnt / "elsewhere"
    ns.sh(f"mkdir {watched} {elsewhere}")
    daemon.start([DEFAULT_RULES], watch=[watched])  # the same tmpfs, one directory watched
    # the uploader links a second name before it closes: the scan after the write sees both
    r = ns.py(
        "import os, sys\nf = open(sys.argv[1], 'wb')\nf.write(bytes.fromhex(sys.argv[3]))\n"
        "f.flush()\nos.link(sys.argv[1], sys.argv[2])\nf.close()",
        str(watched / "up.com"), str(elsewhere / "copy.com"), eicar().hex(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    daemon.wait_for(lambda: daemon.quarantine(), what="the quarantined item")
    (item,) = daemon.quarantine()
    assert item["path"] == str(watched / "up.com")
    assert item["links"] == 1  # the entry says the inode had another name
    assert daemon.read(elsewhere / "copy.com") == "EPERM"
    # denied until its content changes (truncate(2) opens nothing, so it is not refused)
    r = ns.py("import os, sys; os.truncate(sys.argv[1], 0)", str(elsewhere / "copy.com"))
    assert r.returncode == 0, r.stderr
    assert daemon.read(elsewhere / "copy.com") == "ok 0"


def test_a_hard_link_outside_the_watch_stays_denied_when_the_verdict_cache_forgets(
    ns: Namespace, daemon: OnAccess
) -> None:
    watched, elsewhere = ns.mnt / "srv", ns.mnt / "opt"
    ns.sh(f"mkdir {watched} {elsewhere}")
    r = ns.py(WRITE, str(watched / "tool.com"), eicar().hex())
    assert r.returncode == 0, r.stderr
    ns.sh(f"ln {watched}/tool.com {elsewhere}/tool.com")
    crowd = "import os, sys\nfor i in range(3000):\n    open(os.path.join(sys.argv[1], 'f%d' % i), 'w').write(str(i))"
    assert ns.py(crowd, str(watched)).returncode == 0
    daemon.start(
        [DEFAULT_RULES], watch=[watched], extra="[onaccess]\nverdict_cache_entries = 1024\n"
    )
    assert daemon.read(watched / "tool.com") == "EPERM"
    # three times the verdict cache in clean files: the deny is evicted from it
    read_all = "import os, sys\nfor n in os.listdir(sys.argv[1]):\n    n.startswith('f') and open(os.path.join(sys.argv[1], n)).read()"
    assert ns.py(read_all, str(watched), timeout=120).returncode == 0
    assert daemon.read(elsewhere / "tool.com") == "EPERM"
