"""Every detection reaches the journal, in order: under an alert storm and across an outage.

Regression for issue 11 (2): 16 of 400 detections were lost with journald
running under an alert storm, 289 of 300 with journald stopped; they were
only counted.
"""

from __future__ import annotations

import os
import signal

import pytest

from onaccess_harness import DEFAULT_RULES, Namespace, OnAccess, needs_fanotify
from support import eicar
from test_onaccess import _put

pytestmark = [needs_fanotify, pytest.mark.root]

DETECTED_DENIED = "0781ca6752fe444584f53ea7cd5bf82c"
OPEN_ALL = """
import os, sys
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDONLY))
        print("ok", path)
    except PermissionError:
        pass
"""


def _files(ns: Namespace, n: int) -> list[str]:
    """``n`` distinct malicious files (EICAR plus a distinct tail each)."""
    ns.sh(f"mkdir -p {ns.mnt}/in")
    paths = []
    for i in range(n):
        path = ns.mnt / "in" / f"e{i:04d}.com"
        paths.append(str(path))
    script = "import sys\nfor i, p in enumerate(sys.argv[2:]):\n    open(p, 'wb').write(bytes.fromhex(sys.argv[1]) + b'\\n%d' % i)\n"
    r = ns.py(script, eicar().hex(), *paths, timeout=120)
    assert r.returncode == 0, r.stderr
    return paths


def _journaled(ns: Namespace) -> list[str]:
    """The paths of the detections in the journal, in journal order."""
    return [e["VIGILD_PATH"] for e in ns.journal(f"MESSAGE_ID={DETECTED_DENIED}")]


def _systemd_stderr(daemon: OnAccess) -> dict[str, str]:
    """$JOURNAL_STREAM naming the daemon's stderr, as systemd sets it: stderr
    then leads to journald too and is no fallback."""
    daemon.stderr_path.touch()
    st = os.stat(daemon.stderr_path)
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_an_alert_storm_while_journald_is_not_reading_loses_no_detection(
    ns: Namespace, daemon: OnAccess
) -> None:
    """journald alive but not reading (stopped: flushing, rotating, starved): its
    socket queue (net.unix.max_dgram_qlen, 512 by default) fills up."""
    ns.start_journald()
    paths = _files(ns, 700)
    daemon.start([DEFAULT_RULES], extra='[onaccess]\nevents = ["open"]\n')
    ns.journald.send_signal(signal.SIGSTOP)
    try:
        r = ns.py(OPEN_ALL, *paths, timeout=300)
        assert r.returncode == 0 and "ok" not in r.stdout, r.stderr
        daemon.wait_for(lambda: daemon.status()["alerts"]["journal_busy"] > 0, what="a full socket")
    finally:
        ns.journald.send_signal(signal.SIGCONT)
    daemon.wait_for(lambda: len(_journaled(ns)) >= 700, timeout=60, what="700 entries")
    # every one, once (two workers may raise neighbours' alerts in either order)
    assert sorted(_journaled(ns)) == paths


def test_detections_during_a_journald_outage_arrive_after_it_in_order(
    ns: Namespace, daemon: OnAccess
) -> None:
    ns.start_journald()
    paths = _files(ns, 300)
    _put(ns, ns.mnt / "first.com", eicar())
    daemon.start(
        [DEFAULT_RULES], extra='[onaccess]\nevents = ["open"]\n', env=_systemd_stderr(daemon)
    )
    assert daemon.read(ns.mnt / "first.com") == "EPERM"
    daemon.wait_for(lambda: _journaled(ns), what="the first entry")
    ns.stop_journald()
    r = ns.py(OPEN_ALL, *paths, timeout=300)
    assert r.returncode == 0 and "ok" not in r.stdout, r.stderr
    daemon.wait_for(
        lambda: daemon.status()["alerts"]["spool_pending"] >= 300, timeout=60, what="the spool"
    )
    ns.run_journald()
    daemon.wait_for(lambda: len(_journaled(ns)) >= 301, timeout=60, what="301 entries")
    got = _journaled(ns)
    assert got[0] == str(ns.mnt / "first.com") and sorted(got[1:]) == paths  # all, once
    s = daemon.status()["alerts"]
    assert s["spool_pending"] == 0 and s["spool_lost"] == 0 and s["spool_delivered"] >= 300
