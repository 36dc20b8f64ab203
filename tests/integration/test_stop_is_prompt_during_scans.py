"""SIGTERM during long YARA scans: openers released at once, the daemon gone in seconds.

Regression for issue 11 (7): stop took 10-20 s, waiting for worker threads
deep in scans whose openers the kernel had already released.
"""

from __future__ import annotations

import signal
import time

import pytest

from onaccess_harness import SLOW_RULES, Namespace, OnAccess, needs_fanotify
from test_onaccess import _openers, _slow_file

pytestmark = [needs_fanotify, pytest.mark.root]


def test_sigterm_while_workers_scan(ns: Namespace, daemon: OnAccess) -> None:
    slow = ns.mnt / "slow.bin"
    _slow_file(ns, slow, 30)
    daemon.start(
        [SLOW_RULES], extra='[scan]\ntimeout = 120\nworkers = 2\n[onaccess]\ndeadline = "120s"\n'
    )
    openers = _openers(ns, slow, 2)
    daemon.wait_for(lambda: daemon.events()["in_flight"] >= 2, what="both workers to be scanning")
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
