"""Alerts: structured journal entries, written by one thread, never by an answerer.

Answer before you log: journald may be the process waiting for our answer.
Workers and the reader never write the journal or stderr; they hand an
``Alert`` to ``Alerts.emit``, which never blocks (a full queue drops the
alert and counts it), and one thread, ``vigild-alerts``, writes them.

Each kind of alert has a fixed 128-bit MESSAGE_ID (documented in
``packaging/vigild.catalog``), a syslog PRIORITY and ``VIGILD_*`` fields, so
``journalctl MESSAGE_ID=...`` and ``journalctl VIGILD_RULE=...`` find them
without vigild's own CLI. Floods are limited per kind (a burst, then one
summary entry saying how many were suppressed). With no journald the same
entries go to stderr as ``<N>``-prefixed lines, and the daemon keeps running.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import IO, ClassVar

from vigild import journal, textform
from vigild.fields import Field

SYSLOG_IDENTIFIER = "vigild"


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


def journal_sink(
    fallback: Sink, busy: Callable[[Alert], None], socket: str = journal.JOURNAL_SOCKET
) -> Sink:
    """Structured entries to journald, never blocking (see vigild.journal).

    No journald listening: the entry goes to ``fallback`` (stderr). A
    journald that is not reading: ``busy`` counts the entry as dropped
    (stderr under systemd leads to the same journald, so no fallback).
    """

    def write(alert: Alert) -> None:
        try:
            journal.send(alert.journal_fields(), socket)
        except journal.Unavailable:
            fallback(alert)
        except journal.Busy:
            busy(alert)

    return write


def default_sink(busy: Callable[[Alert], None]) -> Sink:
    """The journal, and stderr for each entry it cannot take (not running, stopped).

    Tried entry by entry, so a journald that starts or restarts later is
    used again at once.
    """
    return journal_sink(stderr_sink(), busy)


# -------------------------------------------------------------- the thread


class Alerts:
    """A bounded queue of alerts and the one thread that writes them.

    ``sink`` None means the journal (with stderr when it is not there).
    """

    BURST = 20  # per kind and window; the rest are counted
    WINDOW = 10.0  # seconds

    def __init__(
        self,
        sink: Sink | None = None,
        maxsize: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink or default_sink(self._journal_busy)
        self.journal_busy = 0  # entries journald had no room for
        self.clock = clock
        self.dropped = 0  # queue full
        self.written = 0
        self.sink_errors = 0
        self.counts: dict[Kind, int] = {}
        self._q: queue.Queue[Alert | None] = queue.Queue(maxsize=maxsize)
        self._window_start = clock()
        self._in_window: dict[Kind, int] = {}
        self._suppressed: dict[Kind, int] = {}
        self._thread = threading.Thread(target=self._run, name="vigild-alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _journal_busy(self, _alert: Alert) -> None:
        self.journal_busy += 1

    def emit(self, alert: Alert) -> bool:
        """Queue ``alert`` without ever blocking; False (counted) when full."""
        try:
            self._q.put_nowait(alert)
            return True
        except queue.Full:
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
        while True:
            try:
                alert = self._q.get(timeout=1.0)
            except queue.Empty:
                self._roll_window()
                continue
            if alert is None:
                self._roll_window(force=True)
                return
            self._roll_window()
            self._write(alert)

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
