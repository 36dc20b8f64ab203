"""With ``mark = "mount"`` every watched mount is marked (found by review).

Watched paths were marked once per filesystem (st_dev), right for filesystem
marks; but a mount mark covers one mount, so a second watched path on the
same filesystem through another mount (a bind mount) was not watched at all.
"""

from __future__ import annotations

import pytest

from onaccess_harness import TEST_RULES, Namespace, OnAccess, needs_fanotify
from support import MARKER
from test_onaccess import _age, _put

pytestmark = [needs_fanotify, pytest.mark.root]


def test_a_bind_mount_of_the_same_filesystem_is_watched_too(
    ns: Namespace, daemon: OnAccess
) -> None:
    top = ns.mnt
    ns.sh(f"mkdir {top}/a {top}/b {top}/c && mount --bind {top}/b {top}/c")
    _put(ns, top / "a" / "evil.txt", MARKER)
    _put(ns, top / "b" / "evil.txt", MARKER)
    _age(ns)
    daemon.start([TEST_RULES], watch=[top / "a", top / "c"], extra='[onaccess]\nmark = "mount"\n')
    assert daemon.read(top / "a" / "evil.txt") == "EPERM"
    assert daemon.read(top / "c" / "evil.txt") == "EPERM"  # through the bind mount
