"""One daemon per runtime directory: a second one says who runs and leaves it alone.

Regression for issue 11 (4): the second daemon took over the control socket
and deleted it when it exited; both acted on the same events.
"""

from __future__ import annotations

import subprocess

import pytest

from onaccess_harness import TEST_RULES, Namespace, OnAccess, needs_fanotify

pytestmark = [needs_fanotify, pytest.mark.root]


def test_a_second_daemon_exits_2_naming_the_first_and_the_first_keeps_its_socket(
    ns: Namespace, daemon: OnAccess
) -> None:
    daemon.start([TEST_RULES])
    assert daemon.proc is not None
    first = daemon.proc.pid
    second = subprocess.run(
        ns.cmd(*daemon.command([TEST_RULES])), capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 2, second.stderr
    assert f"another vigild (pid {first}) is running" in second.stderr
    assert (daemon.runtime / "control.sock").exists()
    assert daemon.status()["pid"] == first  # the first still answers, on its own socket
