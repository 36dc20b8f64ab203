"""No name escapes a scan: decisions are made by the file, not by the text of its path.

Regression for issue 9 (6). The reader skipped the scan after a write when the
file's path ended in " (deleted)" (the kernel's mark of an unlinked name), so
a file written under such a name was never scanned nor quarantined. And an
excluded executable was recognised by the text of /proc/PID/exe, which a
process in another mount namespace reproduces by bind-mounting its own
program at that path.
"""

from __future__ import annotations

import pytest

from onaccess_harness import TEST_RULES, Namespace, OnAccess, needs_fanotify
from support import MARKER

pytestmark = [needs_fanotify, pytest.mark.root]

WRITE = "import sys; open(sys.argv[1], 'wb').write(bytes.fromhex(sys.argv[2]))"


def test_a_file_named_like_a_deleted_one_is_scanned_after_the_write(
    ns: Namespace, daemon: OnAccess
) -> None:
    daemon.start([TEST_RULES], extra='[onaccess]\nevents = ["close-write"]\n')
    path = ns.mnt / "payload (deleted)"
    r = ns.py(WRITE, str(path), (b"# " + MARKER + b"\n").hex())
    assert r.returncode == 0, r.stderr
    daemon.wait_for(lambda: daemon.quarantine(), timeout=10, what="the quarantined item")
    (item,) = daemon.quarantine()
    assert item["path"] == str(path)
    assert ns.sh(f"test -e '{path}'", check=False).returncode == 1


def test_a_temporary_name_unlinked_after_linking_leaves_no_unscanned_bytes(
    ns: Namespace, daemon: OnAccess
) -> None:
    """Written under a temporary name, linked into place, the temporary name unlinked
    before the scan: the bytes keep a name, so they are scanned (and denied there)."""
    daemon.start([TEST_RULES], extra='[onaccess]\nevents = ["open", "close-write"]\n')
    tmp, final = ns.mnt / ".tmp123", ns.mnt / "final.txt"
    r = ns.py(
        "import os, sys\nf = open(sys.argv[1], 'wb'); f.write(bytes.fromhex(sys.argv[3]))\n"
        "os.link(sys.argv[1], sys.argv[2]); os.unlink(sys.argv[1]); f.close()",
        str(tmp), str(final), MARKER.hex(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    daemon.wait_for(
        lambda: "Vigild_Test_Marker" in daemon.log(),
        timeout=10,
        what="the detection after the write",
    )
    assert daemon.read(final) == "EPERM"


def test_an_excluded_executable_cannot_be_impersonated_from_another_mount_namespace(
    ns: Namespace, daemon: OnAccess
) -> None:
    tools = ns.mnt / "tools"
    ns.sh(f"mkdir {tools} && cp /bin/cat {tools}/trusted && cp /bin/head {tools}/mine")
    evil = ns.mnt / "evil.txt"
    r = ns.py(WRITE, str(evil), MARKER.hex())
    assert r.returncode == 0, r.stderr
    daemon.start(
        [TEST_RULES],
        extra=f'[onaccess]\nevents = ["open", "exec"]\nexclude_executables = ["{tools}/trusted"]\n',
    )
    assert ns.sh(f"{tools}/trusted {evil}").stdout == MARKER.decode()  # the real one: excluded
    r = ns.sh(
        f"unshare --mount --propagation private sh -c "
        f"'mount --bind {tools}/mine {tools}/trusted && {tools}/trusted -c 100 {evil}'",
        check=False,
    )
    assert r.returncode == 1 and "Operation not permitted" in r.stderr, r
