"""SIGTERM during long YARA scans: openers released at once, the daemon gone in seconds.

Regression for issue 11 (7): stop took 10-20 s, waiting for worker threads
deep in scans whose openers the kernel had already released.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from onaccess_harness import SLOW_RULES, Namespace, OnAccess, needs_fanotify
from test_onaccess import _openers, _slow_file

pytestmark = [needs_fanotify, pytest.mark.root]


def _scanning(ns: Namespace, daemon: OnAccess, n: int) -> tuple[Path, list[subprocess.Popen[str]]]:
    """A slow file, a daemon with two workers, ``n`` openers held while it is scanned."""
    slow = ns.mnt / "slow.bin"
    _slow_file(ns, slow, 30)
    daemon.start(
        [SLOW_RULES], extra='[scan]\ntimeout = 120\nworkers = 2\n[onaccess]\ndeadline = "120s"\n'
    )
    openers = _openers(ns, slow, n)
    daemon.wait_for(lambda: daemon.events()["in_flight"] >= n, what=f"{n} scans in flight")
    assert daemon.proc is not None
    return slow, openers


def test_sigterm_while_workers_scan(ns: Namespace, daemon: OnAccess) -> None:
    _, openers = _scanning(ns, daemon, 2)
    assert daemon.proc is not None
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    for p in openers:
        assert p.wait(5) == 0  # allowed by the kernel when the group closed
    released = time.monotonic() - t0
    code = daemon.proc.wait(15)
    stopped = time.monotonic() - t0
    assert code == 0, daemon.log()
    assert released < 2, released
    assert stopped < 5, f"the daemon took {stopped:.1f} s to stop"


SCAN_INTERRUPTED = "89a158961b52414f8ab58ba5e53a0026"


def test_a_scan_the_stop_cuts_short_is_alerted(ns: Namespace, daemon: OnAccess) -> None:
    """Found by review: a stop during a scan ended it without a word, and the
    opener the kernel had allowed got no alert at all."""
    ns.start_journald()
    slow, openers = _scanning(ns, daemon, 1)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert openers[0].wait(5) == 0  # allowed by the kernel when the group closed
    assert daemon.proc.wait(15) == 0, daemon.log()
    alerts = ns.journal(f"MESSAGE_ID={SCAN_INTERRUPTED}")
    assert [(a["VIGILD_PATH"], a["VIGILD_EVENT"]) for a in alerts] == [(str(slow), "open")]
    assert "allowed unscanned" in alerts[0]["MESSAGE"]
