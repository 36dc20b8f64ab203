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
partial delivery or an eviction. A half record would hide every record
behind it, so a failed or short append (a full disk) is cut back off, and
what did not reach the disk is appended by the next add or delivery; when
the cut fails too, or a rewrite does, nothing is appended to the file
until one of them has rewritten it whole. A torn last record is then left
only by a daemon that died mid-append: load counts it lost (``ALERTS_LOST``
reports it with the rest) and rewrites the file without it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_HEAD = struct.Struct("<QQBI")
_CRITICAL_AT = struct.calcsize("<QQ")  # offset of the critical byte in a header


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
    lost: int = 0  # dropped because the spool was full, or torn in the file at load
    lost_detections: int = 0
    disk_errors: int = 0  # writes of the spool file that failed (entries kept in memory)


@dataclass(frozen=True)
class Gap:
    """Entries dropped and not yet reported."""

    lost: int = 0
    detections: int = 0  # of them, detections
    unreadable: int = 0  # of them, torn in the file an earlier run left (the rest: no room)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _records(data: bytes) -> tuple[list[Record], int]:
    """The whole records ``data`` starts with, and the offset where they end."""
    out: list[Record] = []
    at = 0
    while at + _HEAD.size <= len(data):
        seq, raised, critical, n = _HEAD.unpack_from(data, at)
        start = at + _HEAD.size
        if start + n > len(data):
            break
        out.append(Record(seq, raised, bool(critical), data[start : start + n]))
        at = start + n
    return out, at


def _torn_was_detection(tail: bytes) -> bool:
    """Whether the torn record ``tail`` starts was a detection; yes when its header is
    torn too: better a search for nothing than a detection nobody looks for."""
    return len(tail) <= _CRITICAL_AT or tail[_CRITICAL_AT] != 0


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
        self._unreported = Gap()
        self._on_disk: int | None = 0  # head of _pending the file holds; None: rewrite it

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
        records, end = _records(data)
        with self._lock:
            for r in records:
                self._pending.append(r)
                self._bytes += r.size
                self._seq = max(self._seq, r.seq + 1)
            self._on_disk = len(self._pending)
            if end < len(data):
                self._note_lost(1, int(_torn_was_detection(data[end:])), unreadable=1)
                self._rewrite()  # nothing may land behind it, nor the next run count it again
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
            self._sync()
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
        self._note_lost(len(records), sum(r.critical for r in records))

    def _note_lost(self, n: int, detections: int, unreadable: int = 0) -> None:
        self.counters.lost += n
        self.counters.lost_detections += detections
        g = self._unreported
        self._unreported = Gap(g.lost + n, g.detections + detections, g.unreadable + unreadable)

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
            else:
                self._sync()  # what a full disk refused may fit now
            return not self._pending

    def take_gap(self) -> Gap:
        """Entries dropped and not yet reported; resets them."""
        with self._lock:
            gap, self._unreported = self._unreported, Gap()
            return gap

    # -------------------------------------------------------------- disk

    def _sync(self) -> None:
        """Bring the file level with ``_pending``: append what it lacks, or rewrite it."""
        if self.path is None or self._on_disk == len(self._pending):
            return
        if self._on_disk is None:
            self._rewrite()
            return
        missing = itertools.islice(self._pending, self._on_disk, None)
        if self._append(self.path, b"".join(r.encoded() for r in missing)):
            self._on_disk = len(self._pending)

    def _append(self, path: Path, data: bytes) -> bool:
        """Append ``data``; True when all of it went. What a failed or short write
        left is cut back off: a half record would hide every record behind it."""
        end = None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            try:
                end = os.lseek(fd, 0, os.SEEK_END)
                _write_all(fd, data)
                return True
            except OSError:
                self._cut(fd, end)
                raise
            finally:
                os.close(fd)
        except OSError:  # kept in memory; no log line: it would come back here
            self.counters.disk_errors += 1
            return False

    def _cut(self, fd: int, end: int | None) -> None:
        """Truncate the file back to ``end``; if that fails too, rewrite it next time."""
        if end is None:
            return
        try:
            os.ftruncate(fd, end)
        except OSError:
            self._on_disk = None

    def _rewrite(self) -> None:
        """Replace the file with ``_pending`` (remove it when empty); on failure the
        file is stale and the next add or delivery rewrites it again."""
        if self.path is None:
            return
        try:
            if self._pending:
                self._replace(self.path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            self._on_disk = len(self._pending)
        except OSError:
            self.counters.disk_errors += 1
            self._on_disk = None

    def _replace(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".new")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, b"".join(r.encoded() for r in self._pending))
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # on a full disk it holds what little room is left
            raise
