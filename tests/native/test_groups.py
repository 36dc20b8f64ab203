"""One handle, several groups (one per marked filesystem), without root.

The daemon gives each marked filesystem its own fanotify group and reader,
so that an overlay event's backing-file event (raised by the reader's own
read()) is read by another reader (native/fan.h). Here each group is a
socketpair: every answer must come back on the socket its event came from,
exactly once, and the readers' kernel-side counters must say when events
wait unread.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from fanrig import FAN_CLOSE_WRITE, Rig, answering_workers
from vigild.native import ALLOW, FanSettings

EVENT_BYTES = 24  # struct fanotify_event_metadata


def _until(what: str, predicate: object, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.002)


def test_each_answer_goes_back_to_the_group_its_event_came_from(
    tmp_path: Path, rigs: list[Rig]
) -> None:
    rig = Rig(tmp_path / "f", queue_size=256, groups=3, settings=FanSettings(deadline_ms=60_000))
    rigs.append(rig)
    sent: dict[int, int] = {}  # fd -> group
    workers, verdict = answering_workers(rig, lambda fd: fd % 2 == 1, 3)
    for i in range(150):
        group = i % 3
        sent[rig.send(group=group)] = group
        sent[rig.send(pid=os.getpid(), group=group)] = group  # answered by its reader
    routed = rig.wait_routed(len(sent))
    rig.fan.stop()
    for t in workers:
        t.join(5)
    assert Counter(fd for _, fd, _ in routed) == Counter(sent.keys()), "not exactly once"
    assert all(sent[fd] == group for group, fd, _ in routed), "an answer went to another group"
    assert all(verdict.get(fd, ALLOW) == r for _, fd, r in routed)
    stats = rig.fan.stats()
    assert stats["groups"] == 3 and stats["self_allowed"] == 150 and stats["reads"] >= 3


def test_stop_closes_every_group(tmp_path: Path, rigs: list[Rig]) -> None:
    rig = Rig(tmp_path / "f", groups=2, settings=FanSettings(deadline_ms=60_000))
    rigs.append(rig)
    rig.send(group=1)
    rig.job()  # held by a worker that never answers
    rig.fan.stop()
    assert rig.eof.wait(2), "a group was left open at stop"
    assert rig.routed == []  # the kernel answers what a closed group held


def test_a_group_nobody_reads_shows_pending_bytes_and_a_stuck_reader(
    tmp_path: Path, rigs: list[Rig]
) -> None:
    rig = Rig(tmp_path / "f", groups=2, start=False)
    rigs.append(rig)
    rig.send(group=1)
    rig.send(FAN_CLOSE_WRITE, group=1)
    _until("the reader to count as stuck", lambda: rig.fan.stats()["reader_stuck_ms"] >= 30)
    stats = rig.fan.stats()
    assert stats["kernel_pending"] == 2 * EVENT_BYTES
    assert stats["reads"] == 0 and stats["groups"] == 2


def test_readers_that_read_show_nothing_pending(tmp_path: Path, rigs: list[Rig]) -> None:
    rig = Rig(tmp_path / "f", groups=2)
    rigs.append(rig)
    for group in (0, 1, 1):
        rig.send(pid=os.getpid(), group=group)
    rig.wait_routed(3)
    stats = rig.fan.stats()
    assert stats["kernel_pending"] == 0 and stats["reader_stuck_ms"] == 0
    assert stats["reads"] >= 2
