"""`vigild update` against a real HTTPS server on 127.0.0.1 and a file:// mirror (issue 13).

Keys (ssh-keygen) and the test CA (openssl) are made per test session; the
server is tests/feedserver.py in a subprocess, stopped by its pid. Every
refusal is checked the way an admin would notice it: the error names the
feed and the reason, the live generation is the one before, and a file the
new content would detect still scans as before.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vigild import config, feedmanifest, generations, metrics, protect, snapshot, update
from vigild.alert import Alert, Kind
from vigild.fields import Field
from vigild.status import FeedStatus
from vigild.verdict import Action, Policy, Reason

TESTS = Path(__file__).resolve().parents[1]

BASE_RULE = 'rule base_marker { strings: $a = "BASE-MARKER-7f3" condition: $a }\n'


def _rule(name: str, marker: str) -> bytes:
    return f'rule {name} {{ strings: $a = "{marker}" condition: $a }}\n'.encode()


def _run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60, **kw)  # type: ignore[call-overload]


@dataclass
class Keys:
    private: Path
    public: str
    other_private: Path
    fingerprint: str


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    for name in ("signer", "stranger"):
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(d / name)])
    fp = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(d / "signer.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    return Keys(d / "signer", (d / "signer.pub").read_text().strip(), d / "stranger", fp)


@dataclass
class CA:
    cert: Path
    server_cert: Path
    server_key: Path


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    d = tmp_path_factory.mktemp("ca")
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
          "-subj", "/CN=vigild test CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")])  # fmt: skip
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
          "-keyout", str(d / "server.key"), "-out", str(d / "server.csr")])  # fmt: skip
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _run(["openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
          "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext"),
          "-out", str(d / "server.pem")])  # fmt: skip
    return CA(d / "ca.pem", d / "server.pem", d / "server.key")


@dataclass
class Server:
    root: Path
    port: int
    log: Path

    def url(self, name: str, prefix: str = "") -> str:
        return f"https://127.0.0.1:{self.port}/{prefix}{name}"

    def requests(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def server(tmp_path: Path, ca: CA) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    log = tmp_path / "requests.log"
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "feedserver.py"), str(root), str(ca.server_cert),
         str(ca.server_key), str(log)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield Server(root, port, log)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


_SERIALS = itertools.count(1)
DAY = 86400


def manifest_text(data: bytes, serial: int, signed: float, expires: float) -> bytes:
    """The manifest a publisher writes for content ``data`` (README: publishing a feed)."""
    stamp = feedmanifest.stamp
    return (
        f"vigild-feed-manifest 1\nserial {serial}\nsigned {stamp(signed)}\n"
        f"expires {stamp(expires)}\nsha256 {hashlib.sha256(data).hexdigest()}\n"
    ).encode()


def sign(path: Path, signer: Path) -> None:
    path.with_name(path.name + ".sig").unlink(missing_ok=True)
    _run(["ssh-keygen", "-Y", "sign", "-n", "vigild-feed", "-f", str(signer), str(path)])


def publish(
    where: Path, name: str, data: bytes, signer: Path | None,
    serial: int | None = None, signed: float | None = None, days: float = 7,
) -> int:  # fmt: skip
    """Write ``data`` as ``where/name`` and, with a key, its signed manifest
    ``name.manifest`` (+ ``.sig``) with the next serial; the serial."""
    (where / name).write_bytes(data)
    serial = next(_SERIALS) if serial is None else serial
    if signer is not None:
        signed = time.time() if signed is None else signed
        manifest = where / f"{name}.manifest"
        manifest.write_bytes(manifest_text(data, serial, signed, signed + days * DAY))
        sign(manifest, signer)
    return serial


@dataclass
class Host:
    """A config with its own state dir, base rules and feeds; runs updates in process."""

    tmp: Path
    feeds: str
    extra: str = ""
    rules_extra: str = ""
    journal: list[Alert] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    now: float | None = None  # the wall clock updates and status read (None: the real one)

    def cfg(self) -> config.Config:
        rules = self.tmp / "base-rules"
        rules.mkdir(exist_ok=True)
        (rules / "base.yar").write_text(BASE_RULE)
        text = f"""
[rules]
dirs = ["{rules}"]
local_dirs = []
compiled_dir = "{self.tmp}/compiled"
{self.rules_extra}
[daemon]
state_dir = "{self.tmp}/state"
runtime_dir = "{self.tmp}/run"
[update]
timeout = "2s"
{self.extra}
{self.feeds}
"""
        (self.tmp / "vigild.toml").write_text(text)
        return config.load(self.tmp / "vigild.toml")

    def update(self, check: bool = False) -> int:
        self.journal.clear()
        self.said.clear()
        return self._updater().run(check)

    def _updater(self) -> update.Updater:
        clock = time.time if self.now is None else lambda: float(self.now or 0)
        return update.Updater(self.cfg(), self.journal.append, self.said.append, clock)

    def status(self) -> tuple[FeedStatus, ...]:
        return generations.status(self.cfg(), now=self.now)

    def rollback(self) -> int:
        self.journal.clear()
        return self._updater().rollback()

    def live(self) -> int | None:
        return generations.live(self.cfg())

    def detects(self, data: bytes) -> str:
        """What the rules the daemon would load now say about ``data``: the detail or ""."""
        cfg = self.cfg()
        snap = snapshot.build(cfg, None)
        f = self.tmp / "sample.bin"
        f.write_bytes(data)
        fd = os.open(f, os.O_RDONLY)
        try:
            finding = snap.detector.examine(fd, str(f), Policy())
        finally:
            os.close(fd)
        return finding.verdict.detail if finding.verdict.malicious else ""


def feed_toml(
    name: str, url: str, kind: str, keys: Keys | None, ca: CA | None, more: str = ""
) -> str:
    lines = [f'[[update.feed]]\nname = "{name}"\nurl = "{url}"\nkind = "{kind}"']
    lines.append(f'keys = ["{keys.public}"]' if keys else "insecure = true")
    if ca:
        lines.append(f'ca_file = "{ca.cert}"')
    return "\n".join(lines) + "\n" + more + "\n"


V1 = {"feed-rules/one.yar": _rule("feed_one", "FEED-ONE-91a")}
V2 = {**V1, "feed-rules/two.yar": _rule("feed_two", "FEED-TWO-c44")}


@pytest.fixture
def https_host(tmp_path: Path, server: Server, keys: Keys, ca: CA) -> Host:
    publish(server.root, "rules.tar.gz", tar_gz(V1), keys.private)
    return Host(tmp_path, feed_toml("acme", server.url("rules.tar.gz"), "yara", keys, ca))


def test_a_first_update_makes_the_feed_rules_live_and_says_so(
    https_host: Host, server: Server, keys: Keys
) -> None:
    assert https_host.detects(b"xx FEED-ONE-91a xx") == ""
    assert https_host.update() == 0
    assert https_host.live() == 1
    assert https_host.detects(b"xx FEED-ONE-91a xx") == "feed_one"
    assert https_host.detects(b"BASE-MARKER-7f3") == "base_marker"  # beside, not instead
    [entry] = https_host.journal
    assert entry.kind is Kind.FEED_UPDATED
    f = entry.fields
    data = (server.root / "rules.tar.gz").read_bytes()
    assert f[Field.FEED] == "acme" and f[Field.FEED_URL] == server.url("rules.tar.gz")
    assert f[Field.FEED_KEY] == keys.fingerprint
    assert f[Field.OLD_CONTENT] == "" and f[Field.NEW_CONTENT] == hashlib.sha256(data).hexdigest()
    assert f[Field.RULES] == "1" and f[Field.FEED_INSECURE] == "no"
    assert "1 added" in str(f[Field.CHANGES])
    # the config file is never written
    assert "generations" not in (https_host.tmp / "vigild.toml").read_text()


def test_an_unchanged_feed_is_answered_304_and_nothing_is_swapped(
    https_host: Host, server: Server
) -> None:
    assert https_host.update() == 0
    assert https_host.update() == 0
    assert https_host.live() == 1 and generations.numbers(https_host.cfg()) == [1]
    assert https_host.journal == [] and "acme: unchanged" in https_host.said
    assert server.requests()[-1] == "/rules.tar.gz.manifest 304"
    assert server.requests().count("/rules.tar.gz 200") == 1  # the content is not fetched again


def test_check_says_what_would_change_and_swaps_nothing(
    https_host: Host, server: Server, keys: Keys
) -> None:
    assert https_host.update() == 0
    publish(server.root, "rules.tar.gz", tar_gz(V2), keys.private)
    assert https_host.update(check=True) == 0
    assert any("would update" in s and "1 added" in s for s in https_host.said)
    assert https_host.live() == 1 and generations.numbers(https_host.cfg()) == [1]
    assert https_host.detects(b"FEED-TWO-c44") == ""
    assert https_host.update() == 0  # --check left no ETag behind: the real run applies
    assert https_host.live() == 2 and https_host.detects(b"FEED-TWO-c44") == "feed_two"


def test_rollback_brings_the_previous_generation_back_and_it_stays(
    https_host: Host, server: Server, keys: Keys
) -> None:
    assert https_host.update() == 0
    publish(server.root, "rules.tar.gz", tar_gz(V2), keys.private)
    assert https_host.update() == 0 and https_host.live() == 2
    assert https_host.rollback() == 0
    assert https_host.live() == 1
    assert https_host.detects(b"FEED-TWO-c44") == ""
    [entry] = https_host.journal
    assert entry.kind is Kind.FEED_ROLLED_BACK and entry.fields[Field.FEED_GENERATION] == "1"
    assert https_host.update() == 0 and https_host.live() == 1  # same content: not re-applied
    with pytest.raises(update.UpdateError, match="no earlier"):
        https_host.rollback()


def test_only_the_last_n_generations_are_kept(https_host: Host, server: Server, keys: Keys) -> None:
    https_host.extra = "keep = 2"
    for i in range(4):
        extra = {f"feed-rules/v{i}.yar": _rule(f"v{i}", f"VERSION-{i}-MARK")}
        publish(server.root, "rules.tar.gz", tar_gz({**V1, **extra}), keys.private)
        assert https_host.update() == 0
    assert generations.numbers(https_host.cfg()) == [3, 4] and https_host.live() == 4


def test_an_insecure_file_feed_works_and_says_so_everywhere(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    publish(mirror, "bad.sha256", b"# MalwareBazaar export\n", None)
    sample = b"a sample listed by hash"
    digest = hashlib.sha256(sample).hexdigest()
    (mirror / "bad.sha256").write_text(f"# header\n{digest}\n")
    host = Host(tmp_path, feed_toml("bazaar", f"file://{mirror}/bad.sha256", "hashes", None, None))
    assert host.update() == 0
    assert host.detects(sample) == "feed/bazaar/bad"
    [entry] = host.journal
    assert entry.fields[Field.FEED_INSECURE] == "yes" and "INSECURE" in entry.message
    [st] = generations.status(host.cfg())
    assert st.insecure and st.generation == 1


def test_status_and_metrics_show_each_feed(https_host: Host, server: Server, keys: Keys) -> None:
    assert https_host.update() == 0
    [st] = generations.status(https_host.cfg(), now=time.time() + 60)
    assert st.name == "acme" and st.generation == 1 and 59 <= st.age_seconds <= 70
    assert st.last_error == ""
    publish(server.root, "rules.tar.gz", tar_gz(V2), keys.private)
    (server.root / "rules.tar.gz.manifest.sig").write_bytes(b"garbage")
    assert https_host.update() == 2
    [st] = generations.status(https_host.cfg())
    assert "signature" in st.last_error and st.generation == 1


def test_the_metrics_file_has_a_feed_age_per_feed() -> None:
    sys.path.insert(0, str(TESTS / "unit"))
    from test_status import sample

    from vigild.status import Status

    s: Status = sample()
    s = type(s)(**{**s.__dict__, "feeds": (FeedStatus("acme", "https://x", False, 3, 12.5, ""),)})
    assert 'vigild_feed_age_seconds{feed="acme"} 12.5' in metrics.render(s)
    assert Status.from_dict(json.loads(json.dumps(s.to_dict()))) == s


# ------------------------------------------------------------------ bad input


def _refused(host: Host, why: str) -> None:
    before = host.live()
    assert host.update() == 2
    assert host.live() == before
    [entry] = [a for a in host.journal if a.kind is Kind.FEED_UPDATE_FAILED]
    assert why in str(entry.fields[Field.ERROR]), entry.fields[Field.ERROR]
    assert any(why in s and "live content untouched" in s for s in host.said)
    assert host.detects(b"FEED-EVIL-000") == ""


@pytest.fixture
def live_host(https_host: Host) -> Host:
    assert https_host.update() == 0 and https_host.live() == 1
    return https_host


EVIL = {"feed-rules/evil.yar": _rule("evil", "FEED-EVIL-000")}


def test_a_truncated_download_is_refused(live_host: Host, server: Server, keys: Keys) -> None:
    publish(server.root, "rules.tar.gz", tar_gz({**V1, **EVIL}), keys.private)
    live_host.feeds = live_host.feeds.replace("/rules.tar.gz", "/truncated/rules.tar.gz")
    live_host.feeds += f'manifest = "{server.url("rules.tar.gz.manifest")}"\n'
    _refused(live_host, "truncated download")


def test_a_wrong_signature_is_refused(live_host: Host, server: Server, keys: Keys) -> None:
    evil = tar_gz({**V1, **EVIL})
    publish(server.root, "rules.tar.gz", evil, None)
    # a new manifest for the evil content, under the old signature
    (server.root / "rules.tar.gz.manifest").write_bytes(
        manifest_text(evil, 99, time.time(), time.time() + DAY)
    )
    _refused(live_host, "bad signature")


def test_a_signature_by_an_unlisted_key_is_refused(
    live_host: Host, server: Server, keys: Keys
) -> None:
    publish(server.root, "rules.tar.gz", tar_gz({**V1, **EVIL}), keys.other_private)
    _refused(live_host, "signed by a key the feed does not list")


def test_an_untrusted_tls_server_is_refused(live_host: Host, server: Server, keys: Keys) -> None:
    publish(server.root, "rules.tar.gz", tar_gz({**V1, **EVIL}), keys.private)
    live_host.feeds = "\n".join(x for x in live_host.feeds.splitlines() if "ca_file" not in x)
    _refused(live_host, "certificate")


def _tar_with(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.addfile(tarfile.TarInfo("ok.yar"), io.BytesIO(b""))
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("archive", "why"),
    [
        (lambda: tar_gz({"../../escape.yar": b"rule x { condition: true }"}), "points outside"),
        (lambda: tar_gz({"/etc/evil.yar": b"rule x { condition: true }"}), "points outside"),
        (lambda: _tar_with(_special("link.yar", tarfile.SYMTYPE, "/etc/passwd")), "is a link"),
        (lambda: _tar_with(_special("hard.yar", tarfile.LNKTYPE, "ok.yar")), "is a link"),
        (lambda: _tar_with(_special("dev.yar", tarfile.CHRTYPE)), "device or special"),
        (lambda: _tar_with(_special("fifo.yar", tarfile.FIFOTYPE)), "device or special"),
        (
            lambda: tar_gz({**V1, "feed-rules/broken.yar": b"rule broken { condition: nope }"}),
            "broken.yar",
        ),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "device", "fifo", "does-not-compile"],
)
def test_a_bad_archive_is_refused(
    live_host: Host, server: Server, keys: Keys, archive: object, why: str
) -> None:
    assert callable(archive)
    publish(server.root, "rules.tar.gz", archive(), keys.private)
    _refused(live_host, why)
    assert not (live_host.tmp / "escape.yar").exists()


def test_a_zip_bomb_is_refused(live_host: Host, server: Server, keys: Keys) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("feed-rules/one.yar", V1["feed-rules/one.yar"])
        zf.writestr("feed-rules/padding.yar", b"\0" * (8 << 20))
    assert len(buf.getvalue()) < 100_000
    publish(server.root, "rules.tar.gz", buf.getvalue(), keys.private)
    live_host.extra = 'max_unpacked = "1M"'
    _refused(live_host, "more than update.max_unpacked")


def test_a_server_that_hangs_times_out(live_host: Host, server: Server, keys: Keys) -> None:
    live_host.feeds = live_host.feeds.replace("/rules.tar.gz", "/hang/rules.tar.gz")
    started = time.monotonic()
    _refused(live_host, "timed out")
    assert time.monotonic() - started < 15


def test_a_failed_feed_keeps_its_content_while_another_updates(
    live_host: Host, server: Server, keys: Keys, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    publish(
        mirror, "more.tar.gz", tar_gz({"r/more.yar": _rule("more", "MORE-MARK-55")}), keys.private
    )
    live_host.feeds += feed_toml("mirror", f"file://{mirror}/more.tar.gz", "yara", keys, None)
    publish(server.root, "rules.tar.gz", tar_gz({**V1, **EVIL}), keys.other_private)
    assert live_host.update() == 2
    assert live_host.live() == 2
    assert live_host.detects(b"MORE-MARK-55") == "more"
    assert live_host.detects(b"FEED-ONE-91a") == "feed_one"  # acme's old content kept
    assert live_host.detects(b"FEED-EVIL-000") == ""


# ------------------------------------------------------------------ protected


def test_feed_content_cannot_deny_a_protected_file_but_local_lists_can(tmp_path: Path) -> None:
    tool = tmp_path / "usr-sbin-sshd"
    tool.write_bytes(b"pretend this is sshd, which a bad feed lists")
    other = tmp_path / "other"
    other.write_bytes(b"an ordinary file the feed also lists")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.name}" for p in (tool, other)]
    (mirror / "list.txt").write_text("\n".join(lines) + "\n")
    feeds = feed_toml("bad", f"file://{mirror}/list.txt", "hashes", None, None)
    host = Host(tmp_path, feeds, extra=f'protected = ["{tool}"]')
    assert host.update() == 0
    snap = snapshot.build(host.cfg(), None)

    def answer(p: Path) -> tuple[Action, Reason]:
        fd = os.open(p, os.O_RDONLY)
        try:
            finding = protect.guard(snap.protected, fd, snap.detector.examine(fd, str(p), Policy()))
        finally:
            os.close(fd)
        return finding.verdict.action, finding.verdict.reason

    assert answer(tool) == (Action.ALLOW, Reason.PROTECTED)
    assert answer(other) == (Action.DENY, Reason.KNOWN_BAD_HASH)
    os.link(tool, tmp_path / "another-name")  # protected by inode, under any name
    assert answer(tmp_path / "another-name") == (Action.ALLOW, Reason.PROTECTED)
    # the admin opts in: feed content may deny it
    host.extra += "\nblock_protected = true"
    snap = snapshot.build(host.cfg(), None)
    assert answer(tool) == (Action.DENY, Reason.KNOWN_BAD_HASH)
    # the admin's own list is never overridden
    local = tmp_path / "local.sha256"
    local.write_text(lines[0].split()[0] + " local-entry\n")
    host.extra = f'protected = ["{tool}"]'
    host.rules_extra = f'hashes = ["{local}"]'
    (mirror / "list.txt").write_text(lines[1] + "\n")
    assert host.update() == 0
    snap = snapshot.build(host.cfg(), None)
    assert answer(tool) == (Action.DENY, Reason.KNOWN_BAD_HASH)
