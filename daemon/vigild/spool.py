"""Alerts journald could not take, kept on disk, delivered in order when it can.

When journald is stopped, restarting or not reading (its socket full), the
alert thread appends each entry here instead of dropping it, and delivers
the spool, oldest first, as soon as journald takes entries again: every
new alert waits behind the spool, so the journal sees them in the order
they were raised. Each spooled entry carries ``VIGILD_RAISED_AT`` (journald
stamps the delivery, not the event).

The spool is bounded (``daemon.alert_spool_size``). When it is full,
detections are kept over everything else: an informational entry that
does not fit is dropped, and a detection that does not fit first evicts
the oldest informational entries; only when detections alone fill the
spool is the newest detection dropped (the oldest, the start of an
incident, are kept). Every entry dropped is counted, and once delivery
resumes one ``ALERTS_LOST`` entry says how many, and how many of them were
detections: the gap is on the record.

File: ``state_dir/alerts.spool``, records of ``<QQBI`` (sequence, raise
time in us, critical, payload length) + the native-protocol payload.
Appended with write(2) (no fsync: the spool is for journald outages, and
the page cache survives a crash of the daemon); rewritten whole after a
partial delivery or an eviction. A torn last record (a crash mid-append)
is ignored on load.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

_HEAD = struct.Struct("<QQBI")


@dataclass(frozen=True)
class Record:
    seq: int
    raised_us: int
    critical: bool
    payload: bytes

    def encoded(self) -> bytes:
        return _HEAD.pack(self.seq, self.raised_us, self.critical, len(self.payload)) + self.payload

    @property
    def size(self) -> int:
        return _HEAD.size + len(self.payload)


@dataclass
class SpoolCounters:
    spooled: int = 0  # entries put in the spool
    delivered: int = 0  # spooled entries journald took later
    lost: int = 0  # dropped because the spool was full
    lost_detections: int = 0
    disk_errors: int = 0  # writes of the spool file that failed (entries kept in memory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _records(data: bytes) -> Iterable[Record]:
    at = 0
    while at + _HEAD.size <= len(data):
        seq, raised, critical, n = _HEAD.unpack_from(data, at)
        if at + _HEAD.size + n > len(data):
            return  # torn by a crash mid-append
        start = at + _HEAD.size
        yield Record(seq, raised, bool(critical), data[start : start + n])
        at = start + n


class Spool:
    """The bounded, ordered, on-disk queue of undelivered journal entries; thread-safe."""

    def __init__(self, path: str | None, max_bytes: int) -> None:
        self.path = Path(path) if path else None
        self.max_bytes = max_bytes
        self.counters = SpoolCounters()
        self._pending: deque[Record] = deque()
        self._bytes = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._unreported = (0, 0)  # (lost, lost detections) not yet journaled

    # ------------------------------------------------------------ state

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def size(self) -> int:
        """Bytes the spool holds."""
        return self._bytes

    def load(self) -> int:
        """Take over what a previous run left undelivered; returns how many."""
        if self.path is None:
            return 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError:
            self.counters.disk_errors += 1
            return 0
        with self._lock:
            for r in _records(data):
                self._pending.append(r)
                self._bytes += r.size
                self._seq = max(self._seq, r.seq + 1)
        return len(self._pending)

    # ------------------------------------------------------------ adding

    def add(self, payload: bytes, raised_us: int, critical: bool) -> bool:
        """Keep one entry; False (counted) when the full rule dropped it."""
        with self._lock:
            r = Record(self._seq, raised_us, critical, payload)
            self._seq += 1
            if not self._make_room(r):
                self._count_lost([r])
                return False
            self._pending.append(r)
            self._bytes += r.size
            self.counters.spooled += 1
            self._append(r)
            return True

    def _make_room(self, r: Record) -> bool:
        """Evict informational entries for a detection; never a detection."""
        if self._bytes + r.size <= self.max_bytes:
            return True
        if not r.critical:
            return False
        info = [p for p in self._pending if not p.critical]
        evicted = []
        while info and self._bytes + r.size > self.max_bytes:
            victim = info.pop(0)
            evicted.append(victim)
            self._bytes -= victim.size
        if self._bytes + r.size > self.max_bytes:
            self._bytes += sum(v.size for v in evicted)  # nothing evicted after all
            return False
        gone = {v.seq for v in evicted}
        self._pending = deque(p for p in self._pending if p.seq not in gone)
        self._count_lost(evicted)
        self._rewrite()
        return True

    def _count_lost(self, records: list[Record]) -> None:
        crit = sum(r.critical for r in records)
        self.counters.lost += len(records)
        self.counters.lost_detections += crit
        lost, lost_crit = self._unreported
        self._unreported = (lost + len(records), lost_crit + crit)

    # ---------------------------------------------------------- delivery

    def deliver(self, send: Callable[[bytes], None]) -> bool:
        """Send entries oldest first until ``send`` raises; True when all went.

        ``send`` raises to say journald did not take the entry (it stays).
        """
        with self._lock:
            sent = 0
            try:
                for r in self._pending:
                    send(r.payload)
                    sent += 1
            except Exception:
                pass
            for _ in range(sent):
                self._bytes -= self._pending.popleft().size
            self.counters.delivered += sent
            if sent:
                self._rewrite()
            return not self._pending

    def take_gap(self) -> tuple[int, int]:
        """(entries, detections) dropped and not yet reported; resets them."""
        with self._lock:
            gap, self._unreported = self._unreported, (0, 0)
            return gap

    # -------------------------------------------------------------- disk

    def _append(self, r: Record) -> None:
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, r.encoded())
            finally:
                os.close(fd)
        except OSError:  # kept in memory; no log line: it would come back here
            self.counters.disk_errors += 1

    def _rewrite(self) -> None:
        if self.path is None:
            return
        if not self._pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        tmp = self.path.with_name(self.path.name + ".new")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, b"".join(r.encoded() for r in self._pending))
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError:
            self.counters.disk_errors += 1
