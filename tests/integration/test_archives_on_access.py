"""EICAR inside a deflated zip, a tar.gz or a gz is denied on access and quarantined after a write.

Regression for issue 9: only stored zips and plain tars were caught (the
bytes appear as they are); compressed members passed.
"""

from __future__ import annotations

import pytest

from archives import compressed, tar_of, zip_first_member_damaged, zip_of, zip_with_stub
from onaccess_harness import DEFAULT_RULES, Namespace, OnAccess, needs_fanotify
from support import eicar
from test_onaccess import _put

pytestmark = [needs_fanotify, pytest.mark.root]

PADDED = b"#!/bin/sh\n" + b"echo hello\n" * 400 + eicar()  # compressible: no raw copy inside
FORMS = {
    "upload.zip": zip_of({"dir/shell.php": PADDED}),
    "release.tar.gz": tar_of({"pkg/run.sh": PADDED}, "gz"),
    "drop.sh.gz": compressed(PADDED, "gz"),
    "drop.sh.xz": compressed(PADDED, "xz"),
    "nested.zip": zip_of({"inner.jar": zip_of({"a/b.class": PADDED})}),
}


@pytest.mark.parametrize("name", sorted(FORMS))
def test_an_archive_holding_eicar_is_denied_on_open(
    ns: Namespace, daemon: OnAccess, name: str
) -> None:
    target = ns.mnt / name
    _put(ns, target, FORMS[name])
    daemon.start([DEFAULT_RULES], extra='[onaccess]\nevents = ["open", "exec"]\n')
    assert daemon.read(target) == "EPERM", daemon.log()
    line = f"{target}: EICAR_Test_String_Embedded in "
    daemon.wait_for(lambda: line in daemon.log(), what="the alert naming the member")


def test_an_archive_written_to_a_watched_path_is_quarantined(
    ns: Namespace, daemon: OnAccess
) -> None:
    daemon.start([DEFAULT_RULES])
    target = ns.mnt / "upload.zip"
    _put(ns, target, FORMS["upload.zip"])
    daemon.wait_for(lambda: daemon.quarantine(), what="the quarantined archive")
    (item,) = daemon.quarantine()
    assert item["path"] == str(target)
    assert "dir/shell.php" in item["detail"]


def test_a_clean_archive_opens(ns: Namespace, daemon: OnAccess) -> None:
    target = ns.mnt / "docs.zip"
    _put(ns, target, zip_of({"readme.txt": b"nothing here\n" * 100}))
    daemon.start([DEFAULT_RULES])
    assert daemon.read(target).startswith("ok")


def test_a_damaged_first_member_hides_nothing_and_a_limit_is_never_remembered(
    ns: Namespace, daemon: OnAccess
) -> None:
    """Review findings: these were allowed, and given an ignore mark."""
    payload = {"a.txt": b"first\n" * 50, "dir/shell.php": PADDED}
    _put(ns, ns.mnt / "crc.zip", zip_first_member_damaged(payload, "crc"))
    _put(ns, ns.mnt / "stub.jar", zip_with_stub(payload))
    long_member = b"log line\n" * 150_000  # over 1M unpacked: a limit stops it
    _put(ns, ns.mnt / "big.log.gz", compressed(long_member, "gz"))
    daemon.start(
        [DEFAULT_RULES], extra='[scan]\nmax_file_size = "1M"\n[onaccess]\nevents = ["open"]\n'
    )
    assert daemon.read(ns.mnt / "crc.zip") == "EPERM"
    assert daemon.read(ns.mnt / "stub.jar") == "EPERM"
    before = daemon.events()["queued"]
    assert daemon.read(ns.mnt / "big.log.gz").startswith("ok")  # open: allowed by policy...
    assert daemon.read(ns.mnt / "big.log.gz").startswith("ok")
    assert daemon.events()["queued"] == before + 2  # ...but never remembered: scanned again
