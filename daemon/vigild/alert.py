"""Alerts: structured journal entries, written by one thread, never by an answerer.

Answer before you log: journald may be the process waiting for our answer.
Workers and the reader never write the journal or stderr; they hand an
``Alert`` to ``Alerts.emit``, which never blocks (a full queue drops an
informational alert and counts it; a detection waits in an overflow list),
and one thread, ``vigild-alerts``, writes them.

Each kind of alert has a fixed 128-bit MESSAGE_ID (documented in
``packaging/vigild.catalog``), a syslog PRIORITY and ``VIGILD_*`` fields, so
``journalctl MESSAGE_ID=...`` and ``journalctl VIGILD_RULE=...`` find them
without vigild's own CLI. Floods are limited per kind (a burst, then one
summary entry saying how many were suppressed; detections never are). What
journald cannot take now is spooled on disk and delivered in order later
(``JournalChannel``, vigild.spool). With no journald at all and a stderr of
our own, the same entries go to stderr as ``<N>``-prefixed lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import IO, ClassVar

from vigild import journal, textform
from vigild.fields import Field
from vigild.spool import Gap, Spool

SYSLOG_IDENTIFIER = "vigild"
DEFAULT_SPOOL = 16 << 20  # bytes; the daemon's comes from daemon.alert_spool_size
MAX_OVERFLOW = 65536  # detections waiting beyond a full alert queue
TICK_BUDGET = 0.2  # seconds the alert thread spends delivering the spool per tick
SEND_WAIT = 0.05  # seconds one spooled entry may wait for room in journald's queue
TICK_EVERY = 0.1  # seconds between deliveries while the spool holds entries


class Kind(Enum):
    """Kinds of alert: (MESSAGE_ID, PRIORITY). IDs never change once released."""

    DETECTED_DENIED = ("0781ca6752fe444584f53ea7cd5bf82c", 2)
    DETECTED_QUARANTINED = ("0cc7a92c9d904f98bc95ae80c84047a1", 2)
    DETECTED_LATE = ("76e77e4cb382429b851bbe52c66523f0", 2)
    SCAN_ERROR = ("0d33f668e3994010bfa5379425c650b7", 4)
    QUEUE_OVERFLOW = ("2b433d669aee4272b2f0ace018ff2dda", 4)
    DEADLINE_PASSED = ("e982d88628b04596b3cec23e09a36768", 4)
    RULES_RELOADED = ("b83f5c1ed82d403c83c1f633393b0d64", 5)
    RELOAD_FAILED = ("4c7668ffeb544715b369a0282943b70b", 3)
    STARTED = ("2c0d2ccae55e41e2aa27c75d6ed363eb", 5)
    DETECT_MODE = ("a46902054ec446b48a1bb5207fda23df", 4)
    SUPPRESSED = ("28144f5d272f4cc8b9d30f54e15e7bdc", 4)
    QUARANTINE_FAILED = ("b0dd2a529eec449d8f6526fb2dcda5e9", 3)
    ALERTS_LOST = ("3669b6f3ed7543888a9a06a95e58d939", 2)
    FEED_UPDATED = ("6719fdc919594c61b7218d13d986ea6b", 5)
    FEED_UPDATE_FAILED = ("b8c0cca1c5db4a21a5766bb0af25ebfd", 3)
    FEED_ROLLED_BACK = ("e2e2ff6dba8f47d287a59d1e45a9c6ea", 4)
    PROTECTED_ALLOWED = ("3b9b610e106d480e8c8a346c7f137bc7", 2)
    SCAN_INTERRUPTED = ("89a158961b52414f8ab58ba5e53a0026", 4)
    LOG = ("", 6)  # ordinary log lines: no MESSAGE_ID

    @property
    def message_id(self) -> str:
        return self.value[0]

    @property
    def priority(self) -> int:
        return self.value[1]


DETECTIONS = (Kind.DETECTED_DENIED, Kind.DETECTED_QUARANTINED, Kind.DETECTED_LATE)


@dataclass(frozen=True)
class Alert:
    kind: Kind
    message: str
    fields: Mapping[str, str | Iterable[str]] = field(default_factory=dict)  # VIGILD_* names
    priority: int | None = None  # overrides the kind's

    def journal_fields(self) -> list[tuple[str, str]]:
        """The entry as journal (FIELD, value) pairs (repeated fields repeat)."""
        out = [
            ("MESSAGE", self.message),
            ("PRIORITY", str(self.priority if self.priority is not None else self.kind.priority)),
            ("SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER),
        ]
        if self.kind.message_id:
            out.append(("MESSAGE_ID", self.kind.message_id))
        for name, value in self.fields.items():
            values = [value] if isinstance(value, str) else list(value)
            out.extend((name, v) for v in values)
        return out


# ------------------------------------------------------------------- sinks

Sink = Callable[[Alert], None]


def stderr_sink(stream: IO[str] | None = None) -> Sink:
    """One line per alert, with a ``<N>`` priority prefix (systemd reads it from stderr too).

    The message and the values are escaped (textform): a file name holding
    a newline cannot start a line of its own, nor a value forge a field.
    """

    def write(alert: Alert) -> None:
        out = stream or sys.stderr
        prio = alert.priority if alert.priority is not None else alert.kind.priority
        extra = " ".join(
            f"{k.removeprefix('VIGILD_').lower()}="
            + textform.logfmt(v if isinstance(v, str) else ",".join(v))
            for k, v in alert.fields.items()
        )
        line = f"<{prio}>vigild: {textform.escape(alert.message)}"
        out.write(line + (f" [{extra}]" if extra else "") + "\n")
        out.flush()

    return write


class JournalChannel:
    """Alerts to journald; what it cannot take now waits in the spool, in order.

    journald stopped or not reading: the entry is spooled (vigild.spool) and
    delivered, behind everything spooled before it, once journald takes
    entries again. No journald at all while stderr is our own (not a stream
    into journald, e.g. ``vigild run`` in a terminal): stderr is the channel
    and nothing is spooled. Never blocks.
    """

    def __init__(
        self,
        spool: Spool,
        socket: str = journal.JOURNAL_SOCKET,
        fallback: Sink | None = None,
        stderr_is_journal: bool | None = None,
    ) -> None:
        self.spool = spool
        self.socket = socket
        self.fallback = fallback or stderr_sink()
        self.stderr_is_journal = (
            journal.stderr_is_journal() if stderr_is_journal is None else stderr_is_journal
        )
        self.busy = 0  # sends journald had no room for (then spooled)

    def __call__(self, alert: Alert) -> None:
        if self.spool.pending:
            self._keep(alert)  # behind what waits (tick delivers): the journal keeps the order
            return
        try:
            journal.send(alert.journal_fields(), self.socket)
        except journal.Busy:
            self.busy += 1
            self._keep(alert)
        except journal.Unavailable:
            if self.stderr_is_journal or self._socket_exists():
                self._keep(alert)
            else:
                self.fallback(alert)

    def _socket_exists(self) -> bool:
        """A socket file without a reader is journald restarting: spool, do not print."""
        return self.socket.startswith("@") or os.path.exists(self.socket)

    def _keep(self, alert: Alert) -> None:
        fields = [*alert.journal_fields(), (Field.RAISED_AT, _now_iso())]
        self.spool.add(journal.encode(fields), time.time_ns() // 1000, alert.kind in DETECTIONS)

    def tick(self, budget: float = TICK_BUDGET) -> bool:
        """Deliver what the spool holds, for at most ``budget`` seconds, waiting a
        little for room in journald's queue; report a gap once all is out.
        True when the spool is empty."""
        end = time.monotonic() + budget

        def send(payload: bytes) -> None:
            if time.monotonic() > end:
                raise journal.Busy("tick budget spent")
            journal.send_payload(payload, self.socket, wait=SEND_WAIT)

        if self.spool.pending and not self.spool.deliver(send):
            return False
        gap = self.spool.take_gap()
        if gap.lost:
            fields: dict[str, str] = {
                Field.COUNT: str(gap.lost),
                Field.DETECTIONS_LOST: str(gap.detections),
            }
            self(Alert(Kind.ALERTS_LOST, self._gap_message(gap), fields))
        return True

    def _gap_message(self, gap: Gap) -> str:
        """Why the alerts were lost: no room (raise the size) or a torn file (a crash)."""
        why: list[str] = []
        if gap.lost > gap.unreadable:
            why.append(f"the alert spool ({self.spool.max_bytes} bytes) was full")
        if gap.unreadable:
            why.append(
                f"{gap.unreadable} could not be read back from a spool file torn "
                "by an earlier run that ended in the middle of writing it"
            )
        return (
            f"{gap.lost} alerts ({gap.detections} detections) were not kept while journald "
            f"was unavailable: {'; '.join(why)}"
        )


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# -------------------------------------------------------------- the thread


class Alerts:
    """A bounded queue of alerts and the one thread that writes them.

    ``sink`` None means the journal through a ``JournalChannel`` over
    ``spool`` (in memory only when None). A detection is never dropped at a
    full queue: it waits in an overflow list the thread drains next.
    """

    BURST = 20  # per kind and window; the rest are counted
    WINDOW = 10.0  # seconds

    def __init__(
        self,
        sink: Sink | None = None,
        maxsize: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        spool: Spool | None = None,
    ) -> None:
        self.channel = JournalChannel(spool or Spool(None, DEFAULT_SPOOL)) if sink is None else None
        self.sink: Sink = sink or self.channel  # type: ignore[assignment]
        self.clock = clock
        self.dropped = 0  # queue full
        self.written = 0
        self.sink_errors = 0
        self.counts: dict[Kind, int] = {}
        self._q: queue.Queue[Alert | None] = queue.Queue(maxsize=maxsize)
        self._overflow: deque[Alert] = deque()  # detections that found the queue full
        self._window_start = clock()
        self._in_window: dict[Kind, int] = {}
        self._suppressed: dict[Kind, int] = {}
        self._thread = threading.Thread(target=self._run, name="vigild-alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def journal_busy(self) -> int:
        return self.channel.busy if self.channel else 0

    @property
    def spool(self) -> Spool | None:
        return self.channel.spool if self.channel else None

    def emit(self, alert: Alert) -> bool:
        """Queue ``alert`` without ever blocking; False (counted) when full.

        A detection is kept whatever the queue holds (up to MAX_OVERFLOW
        waiting; a detection is raised at most once per scan, so reaching
        that takes a storm the scans themselves would throttle).
        """
        try:
            self._q.put_nowait(alert)
            return True
        except queue.Full:
            if alert.kind in DETECTIONS and len(self._overflow) < MAX_OVERFLOW:
                self._overflow.append(alert)  # deque.append: thread-safe
                return True
            self.dropped += 1
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._q.put(None, timeout=timeout)
            self._thread.join(timeout)

    def _run(self) -> None:
        from vigild.native import name_thread

        name_thread("vigild-alerts")
        last_tick = 0.0
        while True:
            spooled = self.channel is not None and self.channel.spool.pending > 0
            try:
                alert = self._q.get(timeout=TICK_EVERY if spooled else 1.0)
            except queue.Empty:
                alert = None
            else:
                if alert is None:  # stop: what is queued is written, the spool tried once more
                    self._drain_overflow()
                    self._roll_window(force=True)
                    self._tick()
                    return
                self._write(alert)
                self._drain_overflow()
            self._roll_window()
            if time.monotonic() - last_tick >= TICK_EVERY:
                self._tick()
                last_tick = time.monotonic()

    def _drain_overflow(self) -> None:
        while self._overflow:
            self._write(self._overflow.popleft())

    def _tick(self) -> None:
        """Idle: deliver what the spool holds (journald may be back)."""
        if self.channel is not None:
            try:
                self.channel.tick()
            except Exception as e:  # never end the thread
                self.sink_errors += 1
                with contextlib.suppress(Exception):
                    stderr_sink()(Alert(Kind.LOG, f"alert spool failed: {e!r}", priority=3))

    def _write(self, alert: Alert) -> None:
        n = self._in_window.get(alert.kind, 0)
        self.counts[alert.kind] = self.counts.get(alert.kind, 0) + 1
        if alert.kind not in (Kind.LOG, *DETECTIONS) and n >= self.BURST:
            self._suppressed[alert.kind] = self._suppressed.get(alert.kind, 0) + 1
            return
        self._in_window[alert.kind] = n + 1
        try:
            self.sink(alert)
            self.written += 1
        except Exception as e:  # a sink must never end the thread, nor lose the alert
            self.sink_errors += 1
            with contextlib.suppress(Exception):
                stderr_sink()(alert)
                stderr_sink()(Alert(Kind.LOG, f"alert sink failed: {e!r}", priority=3))

    def _roll_window(self, force: bool = False) -> None:
        if not force and self.clock() - self._window_start < self.WINDOW:
            return
        for kind, n in self._suppressed.items():
            summary = Alert(
                Kind.SUPPRESSED,
                f"{n} more {kind.name.lower().replace('_', ' ')} alerts suppressed "
                f"in the last {self.WINDOW:.0f} s",
                {Field.SUPPRESSED_KIND: kind.name, Field.SUPPRESSED: str(n)},
            )
            with contextlib.suppress(Exception):  # a sink must never end the thread
                self.sink(summary)
        self._suppressed.clear()
        self._in_window.clear()
        self._window_start = self.clock()


class AlertLogHandler(logging.Handler):
    """Routes the daemon's ordinary log records through the alert thread."""

    _PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def __init__(self, alerts: Alerts) -> None:
        super().__init__()
        self.alerts = alerts

    def emit(self, record: logging.LogRecord) -> None:
        prio = self._PRIORITY.get(record.levelno, 6)
        self.alerts.emit(Alert(Kind.LOG, self.format(record), priority=prio))
