"""The .deb, installed into a booted Debian and checked as an admin would.

Once for each release the package is built for (sysharness.SUITES: Debian
12 bookworm and 13 trixie), each with its own .deb (built on the host for
the host's release, inside the release's own rootfs for the other) and its
own container. Per release, the tests run in file order as one scenario:
install -> the service runs -> an open and an exec are denied -> the
journal, the catalog and ``vigild alerts`` show it -> quarantine and
restore -> reload -> restart -> the fleet parts (journal-upload to a
journal-remote, node_exporter) carry a detection and the counters ->
upgrade -> purge. The test files are made before the package is installed
and moved (renamed, no write) into the watched directory afterwards, so no
close-write scan can race the checks: each open or exec is the first event
vigild sees for its file.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sysharness import SUITES, Machine, timed

from support import REPO, eicar

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(600)]

WATCHED = "/home/vigild-test"  # /home is one of the default watched paths
SAMPLES = "/root/vigild-samples"  # same filesystem, not watched
DENIED = "0781ca6752fe444584f53ea7cd5bf82c"  # MESSAGE_ID: detected and denied
QUARANTINED = "0cc7a92c9d904f98bc95ae80c84047a1"
RELOADED = "b83f5c1ed82d403c83c1f633393b0d64"
EICAR_SHA256 = hashlib.sha256(eicar()).hexdigest()
# A reverse shell that exits before doing anything, from the rule samples
# (kept ROT13 in the checkout so other scanners leave it alone).
SCRIPT_SAMPLE = (
    REPO / "tests/rules/samples/Linux_Reverse_Shell_Bash_DevTcp/positive-bash-i.sh.rot13"
)

REMOTE_JOURNAL = "/var/log/journal/remote"
TEXTFILE = "/var/lib/prometheus/node-exporter/vigild.prom"  # Debian's textfile directory
SCRAPE = """
import urllib.request
with urllib.request.urlopen("http://127.0.0.1:9100/metrics", timeout=5) as r:
    print(r.read().decode())
"""

READ = """
import errno, sys
try:
    with open(sys.argv[1], "rb") as f:
        print("ok", len(f.read()))
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def _watched_paths_are_private(m: Machine) -> None:
    """Refuse to install if a default watched path is on a host filesystem."""
    for path in ("/", "/home", "/srv", "/var/www", "/tmp"):
        if not m.exists(path):
            continue
        fstype = m.run("findmnt", "-n", "-o", "FSTYPE", "--target", path).stdout.strip()
        assert fstype in ("overlay", "tmpfs"), f"{path} is on {fstype}: it could be the host's"


@pytest.fixture(scope="module", params=SUITES)
def suite(request: pytest.FixtureRequest) -> str:
    """The Debian release under test; the whole scenario runs once per release."""
    return str(request.param)


@pytest.fixture(scope="module")
def suite_deb(suite: str, release_deb: Callable[[str], Path]) -> Path:
    return release_deb(suite)


@pytest.fixture(scope="module")
def machine(
    suite: str,
    release_rootfs: Callable[[str], Path],
    release_deb: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Machine]:
    root = release_rootfs(suite)  # first: skips at once where nothing can boot
    suite_deb = release_deb(suite)
    pkgdir = tmp_path_factory.mktemp(f"deb-{suite}")
    shutil.copy(suite_deb, pkgdir)
    log = pkgdir.parent / f"console-{suite}.log"
    m = Machine(root, pkgdir, log=log, name=f"vigild-test-{suite}-{os.getpid()}")
    try:
        with timed(f"boot container ({suite})"):
            m.boot()
        _watched_paths_are_private(m)
        m.run("mkdir", "-p", WATCHED, SAMPLES)
        m.write(f"{SAMPLES}/eicar.com", eicar())
        for n in (2, 3, 4):
            m.write(f"{SAMPLES}/eicar-{n}.com", eicar())
        script = codecs.decode(SCRIPT_SAMPLE.read_text(), "rot13").encode()
        m.write(f"{SAMPLES}/revshell.sh", script, mode=0o755)
        with timed(f"apt-get install ./vigild.deb ({suite})"):
            m.run(
                "apt-get",
                "install",
                "-y",
                "-q",
                f"{Machine.PKG_MOUNT}/{suite_deb.name}",
                timeout=300,
            )
        with timed(f"checks inside the container ({suite})"):
            yield m
    finally:
        with timed(f"stop container ({suite})"):
            m.stop()


def _read(m: Machine, path: str) -> str:
    """Open and read ``path`` in the container: "ok N" or the errno name."""
    return m.run("python3", "-c", READ, path).stdout.strip()


def _status(m: Machine) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(m.run("vigild", "status", "--json").stdout)
    return result


def _entry(m: Machine, *match: str, path: str) -> dict[str, Any]:
    """The journal entry matching ``match`` for ``path``, once the alert thread wrote it."""
    found: list[dict[str, Any]] = []

    def look() -> bool:
        found[:] = [e for e in m.journal(*match) if e.get("VIGILD_PATH") == path]
        return bool(found)

    try:
        m.wait_until(f"journal entry {match} for {path}", look)
    except AssertionError as e:
        log = m.run("journalctl", "--no-pager", "-n", "40", "-o", "short-monotonic").stdout
        raise AssertionError(f"{e}; the journal ends with:\n{log}") from None
    return found[-1]


def test_the_package_is_the_one_built_for_this_release(machine: Machine, suite: str) -> None:
    """The .deb names its release, and its C module was built against the
    release's own libraries: the package that holds the libcrypto it loads
    is the one the package depends on (libssl3 on 12, libssl3t64 on 13)."""
    release = machine.sh(". /etc/os-release && echo $VERSION_ID $VERSION_CODENAME").stdout.split()
    assert release[1] == suite
    version = machine.run("dpkg-query", "-W", "-f=${Version}", "vigild").stdout
    assert version.endswith(f"+deb{release[0]}"), version
    native = machine.run(
        "python3", "-c", "import vigild._native as n; print(n.__file__)"
    ).stdout.strip()
    libs = machine.run("ldd", native).stdout
    assert "not found" not in libs, libs
    crypto = [line.split()[2] for line in libs.splitlines() if "libcrypto" in line]
    path = machine.run("readlink", "-f", crypto[0]).stdout.strip()
    owner = machine.run("dpkg", "-S", path).stdout.split(":")[0]
    depends = machine.run("dpkg-query", "-W", "-f=${Depends}", "vigild").stdout
    assert owner in [d.split()[0] for d in depends.split(", ")], (owner, depends)


def test_service_enabled_and_active_after_install(machine: Machine) -> None:
    assert machine.run("systemctl", "is-enabled", "vigild").stdout.strip() == "enabled"
    assert machine.run("systemctl", "is-active", "vigild").stdout.strip() == "active"
    status = _status(machine)
    assert status["mode"] == "block", status["mode_reason"]
    assert "/home" in status["watching"]


def test_eicar_open_is_denied(machine: Machine) -> None:
    target = f"{WATCHED}/eicar.com"
    machine.run("mv", f"{SAMPLES}/eicar.com", target)
    assert _read(machine, target) == "EPERM"
    r = machine.run("cat", target, check=False)
    assert r.returncode == 1 and "Operation not permitted" in r.stderr
    assert machine.exists(target), "a denied open leaves the file in place"


def test_malicious_script_cannot_be_executed(machine: Machine) -> None:
    target = f"{WATCHED}/revshell.sh"
    machine.run("mv", f"{SAMPLES}/revshell.sh", target)
    r = machine.run("bash", "-c", target, check=False)
    assert r.returncode == 126, r
    assert "Operation not permitted" in r.stderr


def test_journal_of_the_unit_shows_the_alert_with_its_fields(machine: Machine) -> None:
    path = f"{WATCHED}/eicar.com"
    e = _entry(machine, "-u", "vigild", path=path)
    assert e["MESSAGE_ID"] == DENIED
    assert e["_SYSTEMD_UNIT"] == "vigild.service"
    assert e["SYSLOG_IDENTIFIER"] == "vigild"
    assert e["PRIORITY"] == "2"
    assert e["VIGILD_RULE"] == "EICAR_Test_File"
    assert e["VIGILD_SHA256"] == EICAR_SHA256
    assert e["VIGILD_ACTION"] == "deny"
    assert e["VIGILD_EVENT"] == "open"
    assert e["VIGILD_PID"].isdigit() and e["VIGILD_UID"] == "0"
    assert e["VIGILD_COMM"] == "python3"
    assert e["VIGILD_EXE"].startswith("/usr/bin/python3")
    assert len(e["VIGILD_GENERATION"]) == 16
    text = machine.run("journalctl", "--no-pager", "-u", "vigild").stdout
    assert f"{path}: EICAR_Test_File" in text


def test_journal_by_message_id_finds_both_detections(machine: Machine) -> None:
    script = _entry(machine, f"MESSAGE_ID={DENIED}", path=f"{WATCHED}/revshell.sh")
    assert script["VIGILD_RULE"] == "Linux_Reverse_Shell_Bash_DevTcp"
    assert script["VIGILD_EVENT"] == "exec"
    assert script["VIGILD_ACTION"] == "deny"
    paths = {e.get("VIGILD_PATH") for e in machine.journal(f"MESSAGE_ID={DENIED}")}
    assert {f"{WATCHED}/eicar.com", f"{WATCHED}/revshell.sh"} <= paths


def test_journalctl_x_shows_the_catalog_text(machine: Machine) -> None:
    r = machine.run("journalctl", "--no-pager", "-x", f"MESSAGE_ID={DENIED}")
    assert "Subject: vigild denied access to a malicious file" in r.stdout
    assert f"{WATCHED}/eicar.com (event open)" in r.stdout  # @VIGILD_PATH@ filled in


def test_vigild_alerts_json_returns_the_alert(machine: Machine) -> None:
    r = machine.run("vigild", "alerts", "--json", check=False)
    assert r.returncode == 0, f"vigild alerts --json: {r.stderr}"
    alerts = [json.loads(line) for line in r.stdout.splitlines()]
    eicar_alert = [a for a in alerts if a["path"] == f"{WATCHED}/eicar.com"]
    assert eicar_alert, alerts
    assert eicar_alert[0]["rules"] == ["EICAR_Test_File"]
    assert eicar_alert[0]["action"] == "deny"
    assert eicar_alert[0]["sha256"] == EICAR_SHA256


def test_written_file_is_quarantined_and_restored_exactly(machine: Machine) -> None:
    target = f"{WATCHED}/dropped.com"
    machine.write(target, eicar(), mode=0o640)  # close-write: scanned, then quarantined
    items: list[dict[str, Any]] = []

    def quarantined() -> bool:
        out = machine.run("vigild", "quarantine", "list", "--json").stdout
        items[:] = [i for i in map(json.loads, out.splitlines()) if i["path"] == target]
        return bool(items) and not machine.exists(target)

    machine.wait_until("the written EICAR file to be quarantined", quarantined)
    e = _entry(machine, f"MESSAGE_ID={QUARANTINED}", path=target)
    assert e["VIGILD_QUARANTINE_ID"] == items[0]["id"]
    restored = "/root/restored.com"  # not watched: restoring does not re-trigger
    machine.run("vigild", "quarantine", "restore", items[0]["id"], "--to", restored)
    assert machine.run("stat", "-c", "%a", restored).stdout.strip() == "640"
    # the bytes, read with vigild stopped: the restored file is EICAR, and an open
    # of it may be scanned (and denied) even here, outside the watched paths,
    # when its inode number is one vigild found malicious before
    machine.run("systemctl", "stop", "vigild")
    try:
        got = machine.run("sha256sum", restored).stdout.split()[0]
    finally:
        machine.run("systemctl", "start", "vigild")
    assert got == EICAR_SHA256


def test_reload_keeps_it_active(machine: Machine) -> None:
    before = len(machine.journal(f"MESSAGE_ID={RELOADED}"))
    machine.run("systemctl", "reload", "vigild")
    assert machine.run("systemctl", "is-active", "vigild").stdout.strip() == "active"
    machine.wait_until(
        "the rules-reloaded journal entry",
        lambda: len(machine.journal(f"MESSAGE_ID={RELOADED}")) > before,
    )
    assert _status(machine)["rules"]["reloads"] >= 1


def test_reload_with_a_broken_rule_fails_and_keeps_the_old_rules(machine: Machine) -> None:
    generation = _status(machine)["rules"]["generation"]
    machine.run(
        "sh",
        "-c",
        "printf 'rule Broken { condition: $nothing }\\n' > /etc/vigild/rules.d/broken.yar",
    )
    try:
        r = machine.run("systemctl", "reload", "vigild", check=False)
        assert r.returncode != 0, "systemctl reload should report the failed reload"
        assert machine.run("systemctl", "is-active", "vigild").stdout.strip() == "active"
        assert _status(machine)["rules"]["generation"] == generation
        failed = machine.journal("MESSAGE_ID=4c7668ffeb544715b369a0282943b70b")
        assert any("/etc/vigild/rules.d/broken.yar:1:" in str(e.get("MESSAGE")) for e in failed), (
            failed
        )
    finally:
        machine.run("rm", "-f", "/etc/vigild/rules.d/broken.yar")


def test_restart_comes_back_ready(machine: Machine) -> None:
    def main_pid() -> str:
        return machine.run("systemctl", "show", "-P", "MainPID", "vigild").stdout.strip()

    before = main_pid()
    machine.run("systemctl", "restart", "vigild")  # Type=notify: returns after READY=1
    assert machine.run("systemctl", "is-active", "vigild").stdout.strip() == "active"
    assert main_pid() not in (before, "0")
    status_text = machine.run("systemctl", "show", "-P", "StatusText", "vigild").stdout
    assert status_text.startswith("block mode"), status_text
    # READY means the marks are in place: the first open after it is held.
    target = f"{WATCHED}/eicar-2.com"
    machine.run("mv", f"{SAMPLES}/eicar-2.com", target)
    assert _read(machine, target) == "EPERM"


def _remote_entry(m: Machine, path: str) -> dict[str, Any]:
    """The detection for ``path`` in the journal that journal-remote writes."""
    found: list[dict[str, Any]] = []

    def look() -> bool:
        r = m.run("journalctl", "-D", REMOTE_JOURNAL, "-o", "json", f"MESSAGE_ID={DENIED}",
                  check=False)  # fmt: skip
        lines = r.stdout.splitlines() if r.returncode == 0 else []
        found[:] = [e for e in map(json.loads, lines) if e.get("VIGILD_PATH") == path]
        return bool(found)

    m.wait_until(f"the detection of {path} at journal-remote", look, timeout=30)
    return found[-1]


def test_journal_upload_brings_the_detection_to_journal_remote(machine: Machine) -> None:
    """The README's fleet path with Debian's own units, both ends on this host:
    journal-remote on 127.0.0.1:19532 over HTTP (the packaged unit wants TLS
    certificates), journal-upload's URL= pointing there. A detection made
    afterwards arrives with its MESSAGE_ID and every VIGILD_* field."""
    for path, text in (
        ("/etc/systemd/system/systemd-journal-remote.socket.d/loopback.conf",
         "[Socket]\nListenStream=\nListenStream=127.0.0.1:19532\n"),
        ("/etc/systemd/system/systemd-journal-remote.service.d/http.conf",
         "[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-journal-remote"
         f" --listen-http=-3 --output={REMOTE_JOURNAL}/\n"),
        ("/etc/systemd/journal-upload.conf.d/central.conf",
         "[Upload]\nURL=http://127.0.0.1:19532\n"),
    ):  # fmt: skip
        machine.run("mkdir", "-p", path.rsplit("/", 1)[0])
        machine.write(path, text.encode())
    machine.run("systemctl", "daemon-reload")
    machine.run("systemctl", "restart", "systemd-journal-remote.socket")
    machine.run("systemctl", "restart", "systemd-journal-upload.service")
    target = f"{WATCHED}/eicar-3.com"
    machine.run("mv", f"{SAMPLES}/eicar-3.com", target)
    assert _read(machine, target) == "EPERM"
    local = _entry(machine, f"MESSAGE_ID={DENIED}", path=target)
    remote = _remote_entry(machine, target)
    fields = {k for k in local if k.startswith("VIGILD_")}
    assert {"VIGILD_RULE", "VIGILD_SHA256", "VIGILD_ACTION", "VIGILD_EVENT", "VIGILD_PID"} < fields
    assert {k: remote.get(k) for k in fields} == {k: local[k] for k in fields}
    assert remote["_HOSTNAME"] == local["_HOSTNAME"]
    # and the catalog text, there as here
    r = machine.run("journalctl", "--no-pager", "-x", "-D", REMOTE_JOURNAL, f"MESSAGE_ID={DENIED}")
    assert f"{target} (event open)" in r.stdout


def test_node_exporter_serves_vigilds_counters(machine: Machine) -> None:
    """The README's metrics path: ``[daemon] metrics_file`` in Debian's
    node_exporter textfile directory, and its packaged service (listening on
    127.0.0.1 only) serves vigild's counters."""
    machine.run("mkdir", "-p", "/etc/vigild/conf.d")
    try:
        machine.write(
            "/etc/vigild/conf.d/metrics.toml", f'[daemon]\nmetrics_file = "{TEXTFILE}"\n'.encode()
        )
        machine.write(
            "/etc/default/prometheus-node-exporter",
            b'ARGS="--web.listen-address=127.0.0.1:9100"\n',
        )
        machine.run("systemctl", "restart", "prometheus-node-exporter", "vigild")
        target = f"{WATCHED}/eicar-4.com"
        machine.run("mv", f"{SAMPLES}/eicar-4.com", target)
        assert _read(machine, target) == "EPERM"
        text: list[str] = []

        def scraped() -> bool:
            r = machine.run("python3", "-c", SCRAPE, check=False)
            text[:] = [r.stdout]
            return re.search(r"^vigild_denied_total [1-9]", r.stdout, re.M) is not None

        machine.wait_until("vigild's counters in the node_exporter scrape", scraped, timeout=30)
        assert re.search(
            r'^vigild_info\{generation="[0-9a-f]{16}",mode="block"\} 1$', text[0], re.M
        )
        assert re.search(r"^vigild_detections_total [1-9]", text[0], re.M), text[0]
        assert "node_textfile_scrape_error 0" in text[0]
    finally:  # the admin's own files stay after a purge; this test leaves none
        machine.run("rm", "-rf", "/etc/vigild/conf.d")


def test_upgrade_keeps_config_and_quarantine_and_restarts(
    machine: Machine, suite_deb: Path
) -> None:
    target = f"{WATCHED}/kept.com"
    machine.write(target, eicar())
    ids: list[str] = []

    def quarantined() -> bool:
        out = machine.run("vigild", "quarantine", "list", "--json").stdout
        ids[:] = [i["id"] for i in map(json.loads, out.splitlines()) if i["path"] == target]
        return bool(ids)

    machine.wait_until("the written EICAR file to be quarantined", quarantined)
    machine.sh("printf '\\n# local edit, kept across upgrades\\n' >> /etc/vigild/vigild.toml")
    pid = machine.run("systemctl", "show", "-P", "MainPID", "vigild").stdout.strip()
    # Installing the package over itself runs the upgrade path of every
    # maintainer script (prerm upgrade, postrm upgrade, postinst configure).
    machine.run("dpkg", "-i", f"{Machine.PKG_MOUNT}/{suite_deb.name}", timeout=120)
    assert "# local edit" in machine.run("cat", "/etc/vigild/vigild.toml").stdout
    assert quarantined() and ids, "the quarantine did not survive the upgrade"
    assert machine.run("systemctl", "is-active", "vigild").stdout.strip() == "active"
    assert machine.run("systemctl", "show", "-P", "MainPID", "vigild").stdout.strip() != pid


def test_the_update_timer_is_enabled_and_its_service_waits_for_a_feed(machine: Machine) -> None:
    enabled = machine.run("systemctl", "is-enabled", "vigild-update.timer").stdout.strip()
    assert enabled == "enabled"
    machine.run("systemctl", "start", "vigild-update.service", timeout=120)
    result = machine.run("systemctl", "show", "-P", "Result", "vigild-update.service")
    assert result.stdout.strip() in ("success", "exec-condition"), result.stdout
    assert not machine.exists("/var/lib/vigild/update/generations")


def test_purge_stops_the_service_and_removes_files_and_state(machine: Machine) -> None:
    assert machine.exists("/var/lib/vigild/quarantine")
    machine.run("dpkg", "--purge", "vigild", timeout=120)
    state = machine.run("systemctl", "is-active", "vigild", check=False).stdout.strip()
    assert state not in ("active", "activating", "reloading", "deactivating"), state
    procs = machine.sh("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '").stdout
    assert "vigild run" not in procs
    for path in (
        "/usr/bin/vigild",
        "/lib/systemd/system/vigild.service",
        "/lib/systemd/system/vigild-update.timer",
        "/etc/systemd/system/multi-user.target.wants/vigild.service",
        "/usr/lib/python3/dist-packages/vigild",
        "/usr/share/vigild",
        "/usr/lib/systemd/catalog/vigild.catalog",
        "/etc/vigild",
        "/var/lib/vigild",
        "/run/vigild",
    ):
        assert not machine.exists(path), f"{path} is still there after purge"
    # Nothing holds opens any more: the file vigild denied is readable.
    assert _read(machine, f"{WATCHED}/eicar.com") == "ok 68"
