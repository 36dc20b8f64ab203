"""The watchdog covers the readers: events pending in the kernel, none read, is a stall.

``Monitor.healthy`` decides whether WATCHDOG=1 is sent. The reader side is
measured by the C core (``reader_stuck_ms``, per group); here the group is
a socketpair (tests/fanrig.py) holding an event record nobody reads, which
is what a reader blocked inside read() leaves behind, without root.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from test_status import sample

from fanrig import Rig
from vigild.monitor import Monitor
from vigild.service import Daemon
from vigild.status import EventCounters, Status

STALL_MS = 50


@dataclass
class _Source:
    waiting_jobs: int = 0

    def waiting(self) -> int:
        return self.waiting_jobs


@dataclass
class _Daemon:
    """What ``Monitor.healthy`` asks of the daemon."""

    source: _Source
    workers: object = True

    def stall_timeout_ms(self) -> int:
        return STALL_MS


def _status(stats: dict[str, Any]) -> Status:
    """A status whose two workers live and have scanned nothing, with these counters."""
    s = sample()
    return replace(
        s, events=EventCounters.of(stats), workers=replace(s.workers, threads=2, alive=2, scanned=0)
    )


def _monitor() -> Monitor:
    return Monitor(cast(Daemon, _Daemon(_Source())), clock=time.monotonic)


def test_events_pending_in_a_group_nobody_reads_stop_the_pings(
    tmp_path: Path, rigs: list[Rig]
) -> None:
    rig = Rig(tmp_path / "f", groups=2, start=False)  # group 1: a reader that is not reading
    rigs.append(rig)
    monitor = _monitor()
    assert monitor.healthy(_status(rig.fan.stats()))  # nothing pending: idle is healthy
    rig.send(group=1)
    end = time.monotonic() + 5
    while rig.fan.stats()["reader_stuck_ms"] < STALL_MS:
        assert time.monotonic() < end, rig.fan.stats()
        time.sleep(0.005)
    stats = rig.fan.stats()
    assert stats["kernel_pending"] > 0 and stats["reads"] == 0
    assert not monitor.healthy(_status(stats))


def test_a_reader_that_reads_keeps_the_pings(tmp_path: Path, rigs: list[Rig]) -> None:
    rig = Rig(tmp_path / "f", groups=2)
    rigs.append(rig)
    rig.send(group=1)
    rig.job()  # read by its reader and queued: nothing left in the kernel
    time.sleep(STALL_MS * 2 / 1000)  # longer than the stall timeout
    stats = rig.fan.stats()
    assert stats["kernel_pending"] == 0 and stats["reads"] >= 1
    assert _monitor().healthy(_status(stats))


def test_pending_bytes_alone_are_not_a_stall() -> None:
    # a reader that came back a moment ago is reading its queue
    base = _status({"kernel_pending": 48, "reader_stuck_ms": STALL_MS - 1})
    assert _monitor().healthy(base)
    assert not _monitor().healthy(
        replace(base, events=replace(base.events, reader_stuck_ms=STALL_MS))
    )
