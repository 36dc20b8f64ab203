"""A signed feed is also current: replay and freeze refused, and the admin's own lists win.

Against the real HTTPS server of test_feed_update (its fixtures are reused):
an older signed archive served again (a replay) is refused, so is a serial
reused for other content; a feed whose signed manifest has expired is
stale in the journal, in ``vigild status`` and in the age metric, however
often the mirror answers "not modified". Then two review findings: a feed's
hash entry neither hides the admin's own rules on a protected file nor
takes the name of the admin's own entry for the same digest.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest

from vigild import metrics, protect, snapshot
from vigild.alert import Kind
from vigild.detector import Finding
from vigild.fields import Field
from vigild.status import render_text
from vigild.verdict import Action, Policy, Reason

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from test_feed_update import (
    CA,
    DAY,
    V1,
    V2,
    Host,
    Keys,
    Server,
    ca,
    feed_toml,
    keys,
    publish,
    server,
    tar_gz,
)  # fmt: skip
from test_status import sample

__all__ = ["ca", "keys", "server"]  # fixtures, found by pytest in this module's namespace

OLD = "FEED-TWO-c44"  # only in V2, the newer content


@pytest.fixture
def host(tmp_path: Path, server: Server, keys: Keys, ca: CA) -> Host:
    return Host(tmp_path, feed_toml("acme", server.url("rules.tar.gz"), "yara", keys, ca))


def _failed(host: Host) -> str:
    [entry] = [a for a in host.journal if a.kind is Kind.FEED_UPDATE_FAILED]
    assert entry.fields[Field.FEED] == "acme"
    return str(entry.fields[Field.ERROR])


def test_an_older_signed_archive_served_again_is_refused(
    host: Host, server: Server, keys: Keys, tmp_path: Path
) -> None:
    publish(server.root, "rules.tar.gz", tar_gz(V1), keys.private, serial=5)
    saved = {n: (server.root / n).read_bytes() for n in os.listdir(server.root)}
    assert host.update() == 0
    publish(server.root, "rules.tar.gz", tar_gz(V2), keys.private, serial=6)
    newest = {n: (server.root / n).read_bytes() for n in os.listdir(server.root)}
    assert host.update() == 0 and host.detects(OLD.encode()) == "feed_two"
    for name, data in saved.items():  # the attacker serves the old, validly signed set
        (server.root / name).write_bytes(data)
    assert host.update() == 2
    assert "replay refused: manifest serial 5 is older than serial 6" in _failed(host)
    assert host.live() == 2 and host.detects(OLD.encode()) == "feed_two"
    # the admin's rollback is the way back, and the next update does not undo it
    assert host.rollback() == 0 and host.detects(OLD.encode()) == ""
    for name, data in newest.items():  # the mirror serves the newest set again
        (server.root / name).write_bytes(data)
    assert host.update() == 0 and host.live() == 1


def test_the_same_serial_with_other_content_is_refused(
    host: Host, server: Server, keys: Keys
) -> None:
    publish(server.root, "rules.tar.gz", tar_gz(V1), keys.private, serial=7)
    assert host.update() == 0
    publish(server.root, "rules.tar.gz", tar_gz(V2), keys.private, serial=7)
    assert host.update() == 2
    assert "manifest serial 7 was already accepted with other bytes" in _failed(host)
    assert host.live() == 1 and host.detects(OLD.encode()) == ""


def test_a_frozen_feed_is_stale_in_the_journal_status_and_age(
    host: Host, server: Server, keys: Keys
) -> None:
    signed = time.time() - 3 * DAY
    publish(server.root, "rules.tar.gz", tar_gz(V1), keys.private, signed=signed, days=3.5)
    assert host.update() == 0
    [st] = host.status()
    assert not st.stale and 3 * DAY <= st.age_seconds < 3 * DAY + 60  # from the signed time
    host.now = time.time() + DAY  # a day later the mirror still serves the same manifest
    assert host.update() == 2
    assert server.requests()[-1] == "/rules.tar.gz.manifest 304"
    assert "stale: the newest manifest (serial" in _failed(host)
    [st] = host.status()
    assert st.stale and st.age_seconds >= 4 * DAY and "stale" in st.last_error
    s = sample()
    shown = render_text(type(s)(**{**s.__dict__, "feeds": (st,)}))
    assert "serial" in shown and "STALE (its signed manifest expired)" in shown
    assert f'vigild_feed_age_seconds{{feed="acme"}} {st.age_seconds:g}' in metrics.render(
        type(s)(**{**s.__dict__, "feeds": (st,)})
    )
    assert host.live() == 1  # stale content stays live: it is not wrong, only old


def test_an_expired_manifest_is_not_taken(host: Host, server: Server, keys: Keys) -> None:
    publish(
        server.root, "rules.tar.gz", tar_gz(V1), keys.private, signed=time.time() - 2 * DAY, days=1
    )
    assert host.update() == 2
    assert "expired" in _failed(host) and host.live() is None


def test_a_newer_manifest_for_the_same_content_refreshes_the_age(
    host: Host, server: Server, keys: Keys
) -> None:
    same = tar_gz(V1)  # the very bytes: gzip stamps the time into its header
    publish(server.root, "rules.tar.gz", same, keys.private, signed=time.time() - 2 * DAY)
    assert host.update() == 0
    serial = publish(server.root, "rules.tar.gz", same, keys.private)
    assert host.update() == 0 and host.live() == 1 and host.journal == []
    assert any(f"manifest serial {serial} good until" in s for s in host.said)
    [st] = host.status()
    assert st.serial == serial and st.age_seconds < 60


def test_a_signed_feed_without_a_manifest_is_refused(
    host: Host, server: Server, keys: Keys
) -> None:
    (server.root / "rules.tar.gz").write_bytes(tar_gz(V1))
    assert host.update() == 2
    assert "rules.tar.gz.manifest: HTTP 404" in _failed(host) and host.live() is None


def test_content_other_than_the_manifest_names_is_refused(
    host: Host, server: Server, keys: Keys
) -> None:
    publish(server.root, "rules.tar.gz", tar_gz(V1), keys.private)
    (server.root / "rules.tar.gz").write_bytes(tar_gz(V2))
    assert host.update() == 2
    assert "is not the content the signed manifest names" in _failed(host)


# ------------------------------------------------------ the admin's lists win


def _answer(host: Host, p: Path) -> tuple[Action, Reason, str]:
    """What the daemon answers for ``p``: the detector, then the protected-file guard."""
    snap = snapshot.build(host.cfg(), None)

    def unlisted(fd: int, path: str, prefix: str) -> Finding:
        return snap.detector.examine_unlisted(fd, path, Policy(), prefix)

    fd = os.open(p, os.O_RDONLY)
    try:
        finding = snap.detector.examine(fd, str(p), Policy())
        finding = protect.guard(snap.protected, fd, finding, unlisted)
    finally:
        os.close(fd)
    v = finding.verdict
    return v.action, v.reason, v.detail


def _hash_feed(tmp_path: Path, line: str) -> str:
    mirror = tmp_path / "mirror"
    mirror.mkdir(exist_ok=True)
    (mirror / "list.hsb").write_text(line + "\n")
    return feed_toml("bad", f"file://{mirror}/list.hsb", "hashes", None, None)


def test_a_feed_hash_does_not_hide_the_admins_rules_on_a_protected_file(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_bytes(b"a protected tool that the admin's own rule detects: BASE-MARKER-7f3")
    digest = hashlib.sha256(tool.read_bytes()).hexdigest()
    host = Host(
        tmp_path, _hash_feed(tmp_path, f"{digest}:*:FeedSaysBad"), extra=f'protected = ["{tool}"]'
    )
    assert host.update() == 0
    assert _answer(host, tool) == (Action.DENY, Reason.RULE_MATCH, "base_marker")
    # the admin's own MD5 list is asked too
    tool.write_bytes(b"a protected tool no rule detects")
    md5 = hashlib.md5(tool.read_bytes()).hexdigest()
    (tmp_path / "mine.hsb").write_text(f"{md5}:*:AdminSaysBad\n")
    host.rules_extra = f'hashes = ["{tmp_path}/mine.hsb"]'
    (tmp_path / "mirror/list.hsb").write_text(
        f"{hashlib.sha256(tool.read_bytes()).hexdigest()}:*:FeedSaysBad\n"
    )
    assert host.update() == 0
    assert _answer(host, tool) == (Action.DENY, Reason.KNOWN_BAD_HASH, "AdminSaysBad")
    # and with nothing of the admin's matching, the feed alone cannot deny it
    (tmp_path / "mine.hsb").write_text(f"{'0' * 32}:*:Other\n")
    assert _answer(host, tool)[:2] == (Action.ALLOW, Reason.PROTECTED)


def test_the_admins_hash_entry_wins_over_a_feed_entry_for_the_same_digest(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    sample.write_bytes(b"listed by the admin and by a feed, with a size")
    data = sample.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "mine.sha256").write_text(f"{digest}  AdminName\n")
    feed = _hash_feed(tmp_path, f"{digest}:{len(data)}:FeedName")
    host = Host(tmp_path, feed, rules_extra=f'hashes = ["{tmp_path}/mine.sha256"]')
    mine = host.detects(data)
    assert mine and not mine.startswith("feed/")
    assert host.update() == 0
    assert host.detects(data) == mine
    # a protected file: the admin's entry is the admin's verdict, never turned into an allow
    host.extra = f'protected = ["{sample}"]'
    assert _answer(host, sample) == (Action.DENY, Reason.KNOWN_BAD_HASH, mine)
