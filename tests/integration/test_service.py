"""The service as systemd and an admin see it: notify protocol, journal, alerts, reload, status."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from onaccess_harness import (
    DEFAULT_RULES,
    PYTHON,
    SLOW_RULES,
    TEST_RULES,
    Namespace,
    NotifySocket,
    OnAccess,
    needs_fanotify,
)
from support import MARKER, VIGILD, eicar
from test_onaccess import _put, _slow_file

pytestmark = [needs_fanotify, pytest.mark.root]

DETECTED_DENIED = "0781ca6752fe444584f53ea7cd5bf82c"
RELOAD_FAILED = "4c7668ffeb544715b369a0282943b70b"


def _notify_env(sock: NotifySocket) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(sock.path)}


def test_ready_comes_after_the_marks(
    ns: Namespace, daemon: OnAccess, notify_socket: NotifySocket
) -> None:
    target = ns.mnt / "eicar.com"
    _put(ns, target, eicar())
    daemon.start([DEFAULT_RULES], env=_notify_env(notify_socket), wait=False)
    end = time.monotonic() + 30
    while not notify_socket.times("READY=1") and time.monotonic() < end:
        time.sleep(0.005)
    assert notify_socket.times("READY=1"), daemon.log()
    assert daemon.read(target) == "EPERM"  # the first open after READY is already held
    status = notify_socket.values("STATUS")
    assert status and status[0].startswith("block mode, 1 paths"), status


def test_status_follows_the_events(
    ns: Namespace, daemon: OnAccess, notify_socket: NotifySocket
) -> None:
    _put(ns, ns.mnt / "eicar.com", eicar())
    for i in range(5):
        _put(ns, ns.mnt / f"clean{i}.txt", b"clean %d\n" % i)
    daemon.start([DEFAULT_RULES], env=_notify_env(notify_socket))
    first = notify_socket.values("STATUS")[-1]
    for i in range(5):
        assert daemon.read(ns.mnt / f"clean{i}.txt").startswith("ok")
    assert daemon.read(ns.mnt / "eicar.com") == "EPERM"
    daemon.wait_for(
        lambda: "1 blocked" in notify_socket.values("STATUS")[-1], what="STATUS to count the block"
    )
    last = notify_socket.values("STATUS")[-1]
    assert last != first
    assert "6 opens checked, 1 blocked" in last, last


def test_a_broken_lease_cannot_kill_the_daemon(ns: Namespace, daemon: OnAccess) -> None:
    """vigild holds a read lease for a moment on every clean file it remembers; a
    writer's open then makes the kernel send SIGIO, which by default ends the
    holder. The daemon must ignore it (the window is microseconds wide, so the
    disposition is what can be checked every time)."""
    _put(ns, ns.mnt / "clean.txt", b"clean\n")
    daemon.start([DEFAULT_RULES])
    assert daemon.proc is not None
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines()
    )
    ignored = int(fields["SigIgn"].strip(), 16)
    assert ignored & (1 << (signal.SIGIO - 1)), fields["SigIgn"]
    os.kill(daemon.proc.pid, signal.SIGIO)
    time.sleep(0.2)
    assert daemon.proc.poll() is None  # still running
    assert daemon.read(ns.mnt / "clean.txt") == "ok 6"  # and still answering


def test_watchdog_stops_while_workers_are_wedged_and_resumes(
    ns: Namespace, daemon: OnAccess, notify_socket: NotifySocket
) -> None:
    slow = ns.mnt / "slow.bin"
    _slow_file(ns, slow, 6)
    _put(ns, ns.mnt / "waiting.txt", b"waits behind the slow scan\n")
    daemon.start(
        [SLOW_RULES],
        extra='[scan]\ntimeout = 120\nworkers = 1\n[onaccess]\ndeadline = "120s"\nevents = ["open"]\n'
        '[daemon]\nstall_timeout = "2s"\n',
        env=_notify_env(notify_socket),
    )
    daemon.wait_for(
        lambda: len(notify_socket.times("WATCHDOG=1")) >= 2, what="watchdog pings while idle"
    )
    t0 = time.monotonic()
    slow_reader = ns.popen("cat", str(slow), stdout=subprocess.DEVNULL)
    waiting = ns.popen("cat", str(ns.mnt / "waiting.txt"), stdout=subprocess.DEVNULL)
    assert slow_reader.wait(60) == 0 and waiting.wait(60) == 0
    t1 = time.monotonic()
    daemon.wait_for(
        lambda: any(t > t1 for t in notify_socket.times("WATCHDOG=1")), what="pings to resume"
    )
    during = [t for t in notify_socket.times("WATCHDOG=1") if t0 + 2.5 < t < t1 - 0.5]
    assert t1 - t0 > 4, "the scan was too quick to wedge the worker"
    assert during == [], "no ping while a job waited behind a wedged worker"


def test_detection_lands_in_the_journal_with_every_field(ns: Namespace, daemon: OnAccess) -> None:
    ns.start_journald()
    target = ns.mnt / "eicar.com"
    _put(ns, target, eicar())
    daemon.start([DEFAULT_RULES])
    assert daemon.read(target) == "EPERM"
    entries: list[dict[str, object]] = []

    def found() -> bool:
        entries[:] = ns.journal(f"MESSAGE_ID={DETECTED_DENIED}")
        return bool(entries)

    daemon.wait_for(found, what="the journal entry")
    (e,) = entries
    assert e["SYSLOG_IDENTIFIER"] == "vigild"
    assert e["PRIORITY"] == "2"
    assert e["VIGILD_PATH"] == str(target)
    assert e["VIGILD_RULE"] == e["VIGILD_DETECTION"] == "EICAR_Test_File"
    assert e["VIGILD_RULE_FILE"] == str(DEFAULT_RULES / "10-eicar.yar")
    assert e["VIGILD_SEVERITY"] == "critical"
    assert e["VIGILD_ACTION"] == "deny"
    assert e["VIGILD_EVENT"] == "open"
    assert e["VIGILD_REASON"] == "rule-match"
    assert e["VIGILD_SHA256"] == "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
    assert e["VIGILD_EXE"] == os.path.realpath(PYTHON)
    assert e["VIGILD_COMM"].startswith("python")  # type: ignore[union-attr]
    assert e["VIGILD_UID"] == "0"
    assert int(e["VIGILD_PID"]) > 1  # type: ignore[arg-type]
    assert len(str(e["VIGILD_GENERATION"])) == 16
    assert str(target) in str(e["MESSAGE"])
    # plain journalctl filters work without vigild's CLI
    assert ns.journal("VIGILD_RULE=EICAR_Test_File")
    assert ns.journal("SYSLOG_IDENTIFIER=vigild", f"VIGILD_PATH={target}")


def test_journalctl_x_explains_the_alert(ns: Namespace, daemon: OnAccess) -> None:
    ns.start_journald()
    ns.sh("journalctl --update-catalog")
    _put(ns, ns.mnt / "eicar.com", eicar())
    daemon.start([DEFAULT_RULES])
    assert daemon.read(ns.mnt / "eicar.com") == "EPERM"
    daemon.wait_for(lambda: ns.journal(f"MESSAGE_ID={DETECTED_DENIED}"), what="the journal entry")
    out = ns.sh(f"journalctl --no-pager -x MESSAGE_ID={DETECTED_DENIED}").stdout
    assert "Subject: vigild denied access to a malicious file" in out
    assert "found it malicious (EICAR_Test_File, by rule-match) and denied" in out
    assert str(ns.mnt / "eicar.com") in out  # @VIGILD_PATH@ filled in


def test_vigild_alerts_returns_exactly_this_tests_detections(
    ns: Namespace, daemon: OnAccess
) -> None:
    ns.start_journald()
    for name in ("a.com", "b.com"):
        _put(ns, ns.mnt / name, eicar())
    _put(ns, ns.mnt / "sub.sh", b"#!/bin/sh\n# " + MARKER + b"\n", 0o755)
    daemon.start([DEFAULT_RULES, TEST_RULES])
    since = (dt.datetime.now().astimezone() - dt.timedelta(seconds=1)).isoformat(timespec="seconds")
    assert daemon.read(ns.mnt / "a.com") == "EPERM"
    assert daemon.read(ns.mnt / "b.com") == "EPERM"
    assert ns.sh(str(ns.mnt / "sub.sh"), check=False).returncode == 126

    def alerts(*args: str) -> list[dict[str, object]]:
        r = ns.sh(f"{VIGILD} alerts --json --since {since} " + " ".join(args))
        return [json.loads(line) for line in r.stdout.splitlines()]

    daemon.wait_for(lambda: len(alerts()) >= 3, what="three alerts")
    got = alerts()
    assert sorted(a["path"] for a in got) == sorted(
        str(ns.mnt / n) for n in ("a.com", "b.com", "sub.sh")
    )
    assert {a["kind"] for a in got} == {"detected_denied"}
    assert [a["path"] for a in alerts("--rule", "Vigild_Test_Marker")] == [str(ns.mnt / "sub.sh")]
    assert [a["path"] for a in alerts("--path", str(ns.mnt / "b.com"))] == [str(ns.mnt / "b.com")]
    later = (dt.datetime.now().astimezone() + dt.timedelta(seconds=2)).isoformat(timespec="seconds")
    assert ns.sh(f"{VIGILD} alerts --json --since {later}").stdout == ""
    table = ns.sh(f"{VIGILD} alerts --since {since}").stdout.splitlines()
    assert table[0].split()[:3] == ["TIME", "ACTION", "DETECTION"]
    assert len(table) == 4


def test_reload_under_a_stream_of_opens_loses_no_answer(ns: Namespace, daemon: OnAccess) -> None:
    ns.sh(f"mkdir {ns.mnt}/t && for i in $(seq 0 99); do echo clean $i > {ns.mnt}/t/f$i; done")
    _put(ns, ns.mnt / "eicar.com", eicar())
    daemon.start(
        [DEFAULT_RULES], extra="[onaccess]\nignore_marks = false\n"
    )  # every open is an event
    loop = (
        "import sys, os, time\n"
        "end = time.monotonic() + 8; n = 0; bad = 0\n"
        "while time.monotonic() < end:\n"
        "    for i in range(100):\n"
        "        try:\n"
        "            with open(f'{sys.argv[1]}/f{i}') as f: ok = f.read() == f'clean {i}\\n'\n"
        "        except OSError: ok = False\n"
        "        n += 1; bad += not ok\n"
        "print(n, bad)\n"
    )
    readers = [
        ns.popen(PYTHON, "-c", loop, str(ns.mnt / "t"), stdout=subprocess.PIPE) for _ in range(4)
    ]
    assert daemon.proc is not None
    for _ in range(6):
        time.sleep(1)
        daemon.proc.send_signal(signal.SIGHUP)
    totals = []
    for p in readers:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        n, bad = map(int, out.split())
        assert bad == 0, "a clean file was denied or unreadable during reload"
        totals.append(n)
    assert min(totals) > 100
    daemon.wait_for(lambda: daemon.status()["rules"]["reloads"] >= 1, what="the reloads")
    assert daemon.read(ns.mnt / "eicar.com") == "EPERM"


def test_broken_rule_at_reload_keeps_the_old_rules(
    ns: Namespace, daemon: OnAccess, tmp_path: Path
) -> None:
    ns.start_journald()
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "marker.yar").write_text((TEST_RULES / "marker.yar").read_text())
    _put(ns, ns.mnt / "bad.txt", MARKER)
    daemon.start([rules])
    before = daemon.status()["rules"]["generation"]
    (rules / "zz-broken.yar").write_text('rule Broken {\n  strings: $a = "x"\n  condition: $b }\n')
    r = subprocess.run(
        [VIGILD, "rules", "reload", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "reload failed, the previous rules stay live" in r.stderr
    s = daemon.status()
    assert (s["rules"]["generation"], s["rules"]["reload_failures"]) == (before, 1)
    assert daemon.read(ns.mnt / "bad.txt") == "EPERM"  # old rules still enforced
    (entry,) = ns.journal(f"MESSAGE_ID={RELOAD_FAILED}")
    assert f"{rules / 'zz-broken.yar'}:3: undefined string" in str(entry["MESSAGE"])
    assert entry["PRIORITY"] == "3"


def test_status_refuses_other_users(ns: Namespace, daemon: OnAccess) -> None:
    # as installed: a config anyone can read, runtime directory 0755, socket 0600
    shared = Path(tempfile.mkdtemp(prefix="vigild-test-"))
    try:
        shared.chmod(0o755)
        runtime = shared / "run"
        daemon.start([TEST_RULES], extra=f'[daemon]\nruntime_dir = "{runtime}"\n')
        public = shared / "vigild.toml"
        public.write_text(f'[daemon]\nruntime_dir = "{runtime}"\n')
        public.chmod(0o644)
        _refused_then_peer_checked(daemon, runtime, public)
    finally:
        shutil.rmtree(shared)


def _refused_then_peer_checked(daemon: OnAccess, runtime: Path, public: Path) -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o755
    sock = runtime / "control.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    r = subprocess.run([*nobody, VIGILD, "status", "--config", str(public)], capture_output=True,
                       text=True, timeout=30)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip() == f"vigild: permission denied: only root may talk to vigild ({sock})"
    # even with the socket's mode opened up, the daemon checks the peer's credentials
    sock.chmod(0o666)
    r = subprocess.run([*nobody, VIGILD, "status", "--config", str(public)], capture_output=True,
                       text=True, timeout=30)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip() == "vigild: permission denied: only root may talk to vigild"
    assert daemon.status()["mode"] == "block"  # root still can


def test_keeps_running_when_journald_stops_and_delivers_later(
    ns: Namespace, daemon: OnAccess
) -> None:
    ns.start_journald()
    _put(ns, ns.mnt / "one.com", eicar())
    _put(ns, ns.mnt / "two.com", eicar())
    daemon.start([DEFAULT_RULES])
    assert daemon.read(ns.mnt / "one.com") == "EPERM"
    daemon.wait_for(lambda: ns.journal(f"MESSAGE_ID={DETECTED_DENIED}"), what="the first entry")
    ns.stop_journald()
    assert daemon.read(ns.mnt / "two.com") == "EPERM"
    daemon.wait_for(lambda: daemon.status()["alerts"]["spool_pending"] >= 1, what="the spool")
    assert daemon.status()["workers"]["detections"] == 2
    assert daemon.proc is not None and daemon.proc.poll() is None
    ns.run_journald()
    daemon.wait_for(
        lambda: len(ns.journal(f"MESSAGE_ID={DETECTED_DENIED}")) == 2, what="the spooled entry"
    )
    late = ns.journal(f"MESSAGE_ID={DETECTED_DENIED}", f"VIGILD_PATH={ns.mnt / 'two.com'}")
    assert late and "VIGILD_RAISED_AT" in late[0]


def test_metrics_file(ns: Namespace, daemon: OnAccess, tmp_path: Path) -> None:
    metrics = tmp_path / "vigild.prom"
    _put(ns, ns.mnt / "eicar.com", eicar())
    daemon.start([DEFAULT_RULES], extra=f'[daemon]\nmetrics_file = "{metrics}"\n')
    assert daemon.read(ns.mnt / "eicar.com") == "EPERM"
    daemon.wait_for(lambda: metrics.exists() and "vigild_denied_total 1" in metrics.read_text(), timeout=20,
                    what="the metrics file")  # fmt: skip
    text = metrics.read_text()
    assert 'vigild_info{mode="block",generation="' in text
    assert "vigild_detections_total 1" in text
    assert text.endswith("# EOF\n")


def test_a_journald_that_stops_reading_never_stalls_answers(
    ns: Namespace, daemon: OnAccess
) -> None:
    """journald alive but not reading (restarting, disk full): opens are still answered."""
    ns.sh("mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal")
    mute = ns.popen(
        PYTHON, "-c",
        "import socket, time; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);"
        "s.bind('/run/systemd/journal/socket'); print('bound', flush=True); time.sleep(600)",
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert mute.stdout is not None and mute.stdout.readline().strip() == "bound"
        for i in range(60):
            _put(ns, ns.mnt / f"e{i}.com", eicar())
        daemon.start([DEFAULT_RULES])
        t = time.monotonic()
        results = [daemon.read(ns.mnt / f"e{i}.com", timeout=10) for i in range(60)]
        assert results == ["EPERM"] * 60
        assert time.monotonic() - t < 30
        s = daemon.status()  # the control socket still answers
        assert s["workers"]["detections"] == 60
        assert s["alerts"]["journal_busy"] > 0  # entries journald had no room for: counted
    finally:
        mute.kill()
        mute.wait(10)


def test_a_bad_hash_list_at_reload_keeps_the_daemon_and_the_old_set(
    ns: Namespace, daemon: OnAccess, tmp_path: Path
) -> None:
    hashes = tmp_path / "hashes"
    hashes.mkdir()
    (hashes / "a.hdb").write_text("")
    _put(ns, ns.mnt / "bad.txt", MARKER)
    daemon.start([TEST_RULES], extra=f'[rules]\nhashes = ["{hashes}"]\n')
    before = daemon.status()["rules"]["generation"]
    (hashes / "a.hdb").write_text(
        "d41d8cd98f00b204e9800998ecf8427e:\u00b2:Weird.Size\n"
    )  # a superscript two
    r = subprocess.run([VIGILD, "rules", "reload", "--config", str(daemon.config)], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2
    assert daemon.proc is not None and daemon.proc.poll() is None
    s = daemon.status()
    assert (s["rules"]["generation"], s["rules"]["reload_failures"]) == (before, 1)
    assert f"{hashes / 'a.hdb'}:1: size must be a number" in daemon.log()
    assert daemon.read(ns.mnt / "bad.txt") == "EPERM"
