"""`vigild update` in the booted Debian: a local signed feed, the timer's service, a rollback.

One container for the module; the tests run in file order as one scenario,
the way an admin would meet the feature: install the .deb, name a local
mirror (``file://``) and its public key in /etc/vigild/conf.d, publish a
first signed set and start ``vigild-update.service``; a sample opens
fine; publish a set with a new rule (a higher manifest serial) and start
the service again: the same sample is now denied (EPERM), the journal has
the update and the detection; ``vigild update rollback`` and it opens
again. The signing key is made on the host at test time with ssh-keygen
and the mirror is published there with the commands the README gives
(``sha256sum``, ``date``, ``ssh-keygen -Y sign``); the container sees it
read-only at /mnt/vigild-pkg/feed.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sysharness import Machine, timed

from support import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(600)]

WATCHED = "/home/vigild-feed-test"  # /home is one of the default watched paths
SAMPLES = "/root/vigild-feed-samples"  # same filesystem, not watched
SAMPLE = f"{WATCHED}/report.txt"
MIRROR = f"{Machine.PKG_MOUNT}/feed"
UPDATED = "6719fdc919594c61b7218d13d986ea6b"  # MESSAGE_ID: feed updated
ROLLED_BACK = "e2e2ff6dba8f47d287a59d1e45a9c6ea"
DENIED = "0781ca6752fe444584f53ea7cd5bf82c"
MARKER = "VIGILD-FEED-SYSTEM-TEST-5d1"  # in the sample; only the second set detects it
FIRST = {
    "local/first.yar": b'rule Feed_First { strings: $a = "NOT-IN-THE-SAMPLE-93b" condition: $a }\n'
}
SECOND = {
    **FIRST,
    "local/second.yar": f'rule Feed_Blocks_Sample {{ strings: $a = "{MARKER}" condition: $a }}\n'.encode(),
}


@dataclass
class Publisher:
    """The feed's publisher on the host: a key and the mirror directory."""

    key: Path
    public: str
    fingerprint: str
    mirror: Path
    serial: int = 0

    def publish(self, members: dict[str, bytes]) -> None:
        """The archive, then the README's publisher commands run as written (the
        serial set by the test: two runs within a second would share a date)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        (self.mirror / "rules.tar.gz").write_bytes(buf.getvalue())
        self.serial += 1
        script = readme_publish_commands().replace("feed-signer", str(self.key))
        script = re.sub(r"^serial=.*$", f"serial={self.serial}", script, count=1, flags=re.M)
        subprocess.run(
            ["bash", "-euc", script], cwd=self.mirror, check=True, capture_output=True, timeout=60
        )


def readme_publish_commands() -> str:
    """The shell block under "Publishing a feed" in the README."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Publishing a feed") :]
    m = re.search(r"```sh\n(.*?)```", section, re.S)
    assert m, "README: no sh block under Publishing a feed"
    return m.group(1)


def _host(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    keys = tmp_path_factory.mktemp("feed-key")
    key = keys / "signer"
    _host("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "feed-signer", "-f", str(key))
    public = (keys / "signer.pub").read_text().strip()
    fingerprint = _host("ssh-keygen", "-l", "-f", str(keys / "signer.pub")).split()[1]
    return Publisher(key, public, fingerprint, Path())


@pytest.fixture(scope="module")
def machine(
    rootfs: Path, deb: Path, publisher: Publisher, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Machine]:
    pkgdir = tmp_path_factory.mktemp("deb-update")
    shutil.copy(deb, pkgdir)
    publisher.mirror = pkgdir / "feed"
    publisher.mirror.mkdir()
    m = Machine(rootfs, pkgdir, log=pkgdir.parent / "console-update.log")
    try:
        with timed("boot container (update)"):
            m.boot()
        for path in ("/", "/home"):  # the fanotify safety, as in test_package_deb
            fstype = m.run("findmnt", "-n", "-o", "FSTYPE", "--target", path).stdout.strip()
            assert fstype in ("overlay", "tmpfs"), f"{path} is on {fstype}: it could be the host's"
        m.run("mkdir", "-p", WATCHED, SAMPLES)
        m.write(f"{SAMPLES}/report.txt", f"quarterly report {MARKER} end\n".encode())
        with timed("apt-get install ./vigild.deb (update)"):
            m.run("apt-get", "install", "-y", "-q", f"{Machine.PKG_MOUNT}/{deb.name}", timeout=300)
        m.run("mkdir", "-p", "/etc/vigild/conf.d")
        m.write(
            "/etc/vigild/conf.d/feed.toml",
            f'[[update.feed]]\nname = "local"\nurl = "file://{MIRROR}/rules.tar.gz"\n'
            f'kind = "yara"\nkeys = ["{publisher.public}"]\n'.encode(),
        )
        m.run("systemctl", "reload", "vigild")
        m.run("mv", f"{SAMPLES}/report.txt", SAMPLE)
        with timed("update checks inside the container"):
            yield m
    finally:
        with timed("stop container (update)"):
            m.stop()


def _start_update(m: Machine) -> subprocess.CompletedProcess[str]:
    """``systemctl start vigild-update``: a oneshot, so it returns when the run ended."""
    return m.run("systemctl", "start", "vigild-update", timeout=180, check=False)


def _entries(m: Machine, message_id: str) -> list[dict[str, Any]]:
    return m.journal(f"MESSAGE_ID={message_id}")


def _cat(m: Machine) -> subprocess.CompletedProcess[str]:
    return m.run("cat", SAMPLE, check=False, timeout=30)


def test_a_first_signed_set_goes_live_and_the_sample_still_opens(
    machine: Machine, publisher: Publisher
) -> None:
    publisher.publish(FIRST)
    r = _start_update(machine)
    assert r.returncode == 0, (
        f"{r.stderr}\n{machine.run('journalctl', '-n', '30', '-u', 'vigild-update').stdout}"
    )
    [entry] = _entries(machine, UPDATED)
    assert entry["VIGILD_FEED_GENERATION"] == "1" and entry["VIGILD_FEED_SERIAL"] == "1"
    r = _cat(machine)
    assert r.returncode == 0 and MARKER in r.stdout, r.stderr


def test_a_new_rule_from_the_feed_blocks_a_file_it_did_not_block_before(
    machine: Machine, publisher: Publisher
) -> None:
    publisher.publish(SECOND)
    r = _start_update(machine)
    assert r.returncode == 0, r.stderr
    result = machine.run("systemctl", "show", "-P", "Result", "vigild-update").stdout.strip()
    assert result == "success"
    r = _cat(machine)
    assert r.returncode == 1 and "Operation not permitted" in r.stderr, (r.returncode, r.stderr)


def test_the_journal_has_the_update_with_feed_key_and_serial(
    machine: Machine, publisher: Publisher
) -> None:
    entry = _entries(machine, UPDATED)[-1]
    assert entry["_SYSTEMD_UNIT"] == "vigild-update.service"
    assert entry["VIGILD_FEED"] == "local"
    assert entry["VIGILD_FEED_URL"] == f"file://{MIRROR}/rules.tar.gz"
    assert entry["VIGILD_FEED_KEY"] == publisher.fingerprint
    assert entry["VIGILD_FEED_SERIAL"] == "2" and entry["VIGILD_FEED_GENERATION"] == "2"
    assert entry["VIGILD_FEED_INSECURE"] == "no"
    assert "1 added" in entry["VIGILD_CHANGES"] and "rules 1 -> 2" in entry["VIGILD_CHANGES"]
    text = machine.run("journalctl", "--no-pager", "-x", f"MESSAGE_ID={UPDATED}").stdout
    assert "Subject: vigild feed updated" in text or "feed local updated" in text


def test_the_detection_is_in_the_journal(machine: Machine) -> None:
    found: list[dict[str, Any]] = []

    def look() -> bool:
        found[:] = [e for e in _entries(machine, DENIED) if e.get("VIGILD_PATH") == SAMPLE]
        return bool(found)

    machine.wait_until("the detection's journal entry", look)
    e = found[-1]
    assert e["VIGILD_RULE"] == "Feed_Blocks_Sample" and e["VIGILD_ACTION"] == "deny"
    assert e["VIGILD_COMM"] == "cat"


def test_status_shows_the_feed_generation_and_serial(machine: Machine) -> None:
    status = json.loads(machine.run("vigild", "status", "--json").stdout)
    [feed] = status["feeds"]
    assert feed["name"] == "local" and feed["generation"] == 2 and feed["serial"] == 2
    assert not feed["stale"] and feed["last_error"] == "" and 0 <= feed["age_seconds"] < 600


def test_rollback_opens_the_file_again_and_says_so(machine: Machine) -> None:
    r = machine.run("vigild", "update", "rollback", check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "generation 2 -> 1" in r.stdout
    r = _cat(machine)
    assert r.returncode == 0 and MARKER in r.stdout, r.stderr
    [entry] = _entries(machine, ROLLED_BACK)
    assert entry["VIGILD_FEED"] == "local" and entry["VIGILD_FEED_GENERATION"] == "1"
    # the timer's next run does not undo the admin's rollback
    assert _start_update(machine).returncode == 0
    assert _cat(machine).returncode == 0
