"""Alerts and metrics leave the host through the real parts a fleet runs.

- systemd-journal-upload forwards the host's journal to a
  systemd-journal-remote, and a detection arrives there with its
  MESSAGE_ID and every VIGILD_* field;
- Debian's prometheus-node-exporter serves vigild's metrics file through
  its textfile collector, and a scrape shows vigild's counters;
- the Prometheus alerting rules vigild ships pass `promtool test rules`
  and only use metrics vigild (or node_exporter) writes.

Everything listens on 127.0.0.1 only, inside the test's private mount
namespace, and every process is stopped by its pid in teardown.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from onaccess_harness import DEFAULT_RULES, Namespace, OnAccess, needs_fanotify
from support import REPO, eicar
from test_onaccess import _put
from vigild import metrics

pytestmark = [needs_fanotify, pytest.mark.root]

DETECTED_DENIED = "0781ca6752fe444584f53ea7cd5bf82c"
RULES = REPO / "packaging" / "prometheus"
NODE_EXPORTER = shutil.which("prometheus-node-exporter")
REMOTE = Path("/lib/systemd/systemd-journal-remote")
UPLOAD = Path("/lib/systemd/systemd-journal-upload")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """Processes a test started: stopped by pid in teardown, also on failure."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)  # fmt: skip
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        p.stop()


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.mark.skipif(
    not (REMOTE.exists() and UPLOAD.exists()), reason="systemd-journal-remote is not installed"
)
def test_a_detection_reaches_journal_remote_with_every_field(
    ns: Namespace, daemon: OnAccess, procs: Processes, tmp_path: Path
) -> None:
    ns.start_journald()
    port = _free_port()
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    remote = procs.start(ns.cmd(str(REMOTE), f"--listen-http=127.0.0.1:{port}",
                                f"--output={remote_dir}/remote.journal", "--split-mode=none"))  # fmt: skip
    _wait_port(port, remote)
    procs.start(ns.cmd(str(UPLOAD), f"--url=http://127.0.0.1:{port}", "--follow=yes",
                       f"--save-state={tmp_path}/upload.state", "-D", "/run/log/journal"))  # fmt: skip
    target = ns.mnt / "eicar.com"
    _put(ns, target, eicar())
    daemon.start([DEFAULT_RULES])
    assert daemon.read(target) == "EPERM"

    def arrived() -> list[dict[str, object]]:
        files = [str(f) for f in remote_dir.glob("*.journal")]
        if not files:
            return []
        args = " ".join(f"--file={f}" for f in files)
        return ns.journal(args, f"MESSAGE_ID={DETECTED_DENIED}")

    daemon.wait_for(arrived, timeout=30, what="the detection at journal-remote")
    (entry,) = arrived()
    local = ns.journal(f"MESSAGE_ID={DETECTED_DENIED}")[0]
    vigild_fields = {k for k in local if k.startswith("VIGILD_")}
    assert vigild_fields >= {"VIGILD_PATH", "VIGILD_DETECTION", "VIGILD_RULE", "VIGILD_SHA256",
                             "VIGILD_ACTION", "VIGILD_EVENT", "VIGILD_PID"}  # fmt: skip
    assert {k: entry[k] for k in vigild_fields} == {k: local[k] for k in vigild_fields}
    assert entry["VIGILD_PATH"] == str(target)


@pytest.mark.skipif(NODE_EXPORTER is None, reason="prometheus-node-exporter is not installed")
def test_node_exporter_serves_vigilds_counters(
    ns: Namespace, daemon: OnAccess, procs: Processes, tmp_path: Path
) -> None:
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    _put(ns, ns.mnt / "eicar.com", eicar())
    daemon.start([DEFAULT_RULES], extra=f'[daemon]\nmetrics_file = "{textfiles}/vigild.prom"\n')
    assert daemon.read(ns.mnt / "eicar.com") == "EPERM"
    port = _free_port()
    assert NODE_EXPORTER is not None
    exporter = procs.start([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                            "--collector.disable-defaults", "--collector.textfile",
                            f"--collector.textfile.directory={textfiles}"])  # fmt: skip
    _wait_port(port, exporter)

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    daemon.wait_for(lambda: "vigild_detections_total 1" in scrape(), timeout=30, what="the scrape")
    text = scrape()
    assert re.search(r'^vigild_info\{generation="[0-9a-f]{16}",mode="block"\} 1$', text, re.M), text
    assert re.search(r"^vigild_denied_total 1$", text, re.M)
    assert "node_textfile_scrape_error 0" in text


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian's prometheus) is not installed"
)
def test_the_shipped_alerting_rules_pass_promtool() -> None:
    r = subprocess.run(["promtool", "test", "rules", "vigild-alerts.test.yml"], cwd=RULES,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_the_alerting_rules_use_only_metrics_that_exist() -> None:
    text = (RULES / "vigild-alerts.yml").read_text()
    used = set(re.findall(r"\b(vigild_[a-z0-9_]+)", text))
    ours = {
        name + ("_total" if kind == "counter" else "") for name, kind, _h, _p in metrics._METRICS
    }
    ours |= {"vigild_info", "vigild_feed_age_seconds"}  # written per feed by vigild update's status
    assert used <= ours, used - ours
