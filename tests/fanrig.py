"""A started on-access handle on a socketpair, for tests without root.

The handle adopts one end of a socketpair instead of a fanotify group: a
test writes ``struct fanotify_event_metadata`` records into the other end
and reads back the ``struct fanotify_response`` records the C side writes,
which is what an opener would get from the kernel. Every event carries an
fd number used by no other event of the process, so responses can be
counted per event. ``groups`` > 1 adopts one socketpair per group (as the
daemon has one fanotify group per marked filesystem); ``routed`` records
which group's socket each response came back on. ``start=False`` leaves
every reader unstarted: a group nobody reads. Used by tests/native (the C core) and tests/unit (the
Python workers on top of it).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import resource
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vigild import native
from vigild.native import FanConfig, Fanotify, FanSettings

FAN_OPEN_PERM = 0x10000
FAN_OPEN_EXEC_PERM = 0x40000
FAN_CLOSE_WRITE = 0x8
METADATA_VERSION = 3
OPENER = 1  # not our pid: the reader answers its own pid's events at once
_META = struct.Struct("=IBBHQii")  # struct fanotify_event_metadata, 24 bytes
_RESP = struct.Struct("=iI")  # struct fanotify_response

FIRST_FD = 256  # above what the process itself has open
_numbers = itertools.count(FIRST_FD)  # event fd numbers, never reused in this module


def room_for_fds() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FIRST_FD + 2048  # the events of this module, with room
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Rig:
    """A started handle on a socketpair, a scanned file, and the responses seen."""

    def __init__(
        self,
        path: Path,
        queue_size: int = 8,
        events: int = native.EV_OPEN | native.EV_EXEC,
        settings: FanSettings | None = None,
        groups: int = 1,
        start: bool = True,
    ) -> None:
        path.write_bytes(b"content\n")
        time.sleep(0.03)  # older than the freshness window: clean verdicts may be cached
        self.file = os.open(path, os.O_RDONLY)
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(groups)]
        self.peers = [peer for _, peer in pairs]
        self.peer = self.peers[0]
        self.fan = Fanotify(
            FanConfig(events=events, queue_size=queue_size, cache_entries=64),
            fd=pairs[0][0].detach(),
            settings=settings if settings is not None else FanSettings(),
        )
        for ours, _ in pairs[1:]:
            self.fan.adopt_group(ours.detach())
        self.responses: list[tuple[int, int]] = []  # group 0's
        self.routed: list[tuple[int, int, int]] = []  # (group, fd, response), every group
        self.eof = threading.Event()
        self._eofs = [threading.Event() for _ in self.peers]
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(groups)
        ]
        for thread in self._threads:
            thread.start()
        if start:
            self.fan.start()

    def _recv(self, group: int) -> bytes:
        """The next bytes from ``group``'s socket; b"" once closed, also when
        closed with our events unread (a group nobody read)."""
        try:
            return self.peers[group].recv(4096)
        except ConnectionResetError:
            return b""

    def _read(self, group: int) -> None:
        buf = b""
        while chunk := self._recv(group):
            buf += chunk
            whole = len(buf) - len(buf) % _RESP.size
            with self._cond:
                got = list(_RESP.iter_unpack(buf[:whole]))
                if group == 0:
                    self.responses.extend(got)
                self.routed.extend((group, fd, r) for fd, r in got)
                self._cond.notify_all()
            buf = buf[whole:]
        assert not buf, "a partial response record"
        self._eofs[group].set()
        if all(e.is_set() for e in self._eofs):
            self.eof.set()

    def send(
        self,
        mask: int = FAN_OPEN_PERM,
        pid: int = OPENER,
        file: int | None = None,
        group: int = 0,
    ) -> int:
        """One event on the scanned file (or the file open at ``file``), read by
        ``group``; returns its (unique) fd number."""
        fd = fcntl.fcntl(self.file if file is None else file, fcntl.F_DUPFD_CLOEXEC, next(_numbers))
        self.peers[group].sendall(
            _META.pack(_META.size, METADATA_VERSION, 0, _META.size, mask, fd, pid)
        )
        return fd

    def wait(self, n: int, timeout: float = 5.0) -> list[tuple[int, int]]:
        """The responses once there are at least ``n`` of them."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.responses) >= n, timeout), (
                f"{len(self.responses)} responses, expected {n}"
            )
            return list(self.responses)

    def wait_routed(self, n: int, timeout: float = 5.0) -> list[tuple[int, int, int]]:
        """(group, fd, response) of every group, once there are at least ``n``."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.routed) >= n, timeout), (
                f"{len(self.routed)} responses, expected {n}"
            )
            return list(self.routed)

    def answers_for(self, fd: int) -> list[int]:
        with self._cond:
            return [r for f, r in self.responses if f == fd]

    def settle(self, key: str, value: int, timeout: float = 5.0) -> None:
        """Wait until ``value`` is counted in stats ``key`` (counters follow the response)."""
        end = time.monotonic() + timeout
        while self.fan.stats()[key] < value:
            assert time.monotonic() < end, f"{key} = {self.fan.stats()[key]}, expected {value}"
            time.sleep(0.002)

    def job(self, timeout_ms: int = 5000) -> native.Job:
        job = self.fan.next(timeout_ms)
        assert job is not None, "no job"
        return job

    def close(self) -> None:
        self.fan.stop()
        self.fan.close()
        self.eof.wait(5)
        for peer in self.peers:
            peer.close()
        os.close(self.file)


def answering_workers(
    rig: Rig, allow: Callable[[int], bool], n: int
) -> tuple[list[threading.Thread], dict[int, int]]:
    """``n`` started worker threads that answer each job by ``allow(fd)`` until the
    handle stops; and the verdict they gave each event fd (ALLOW or DENY)."""
    verdict: dict[int, int] = {}

    def work() -> None:
        try:
            while True:
                job = rig.fan.next(200)
                if job is None:
                    continue
                ok = allow(job.fd)
                verdict[job.fd] = native.ALLOW if ok else native.DENY
                assert rig.fan.answer(job, ok, 0, 0) is native.Answered.NOW
                rig.fan.done(job)
        except native.Shutdown:
            pass

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, verdict
