"""Once a second: collect the status, alert on overflows, tell systemd, write metrics.

The main thread calls ``tick``; everything here reads counters that other
threads update without locks (plain ints, or C counters read atomically),
and nothing here blocks: sd_notify and journal writes never wait.

The watchdog (``WATCHDOG=1``) is sent only while work is being completed
or none waits, while every worker thread lives, and while no reader has
left events pending in the kernel unread for ``stall_timeout``: a wedged
worker or a reader blocked in read() stops the pings and systemd restarts
the daemon (fapolicyd does the same for its workers).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vigild import generations, journal, metrics
from vigild.alert import Alert, Kind
from vigild.fields import Field
from vigild.spool import SpoolCounters
from vigild.status import (
    OVERFLOWS,
    AlertStatus,
    CacheStatus,
    EventCounters,
    RulesStatus,
    Status,
    WorkerStatus,
    percentile_us,
    status_line,
)

if TYPE_CHECKING:
    from vigild.service import Daemon

log = logging.getLogger(__name__)

METRICS_EVERY = 5.0  # seconds between OpenMetrics file writes


@dataclass
class _Progress:
    completed: int = 0
    at: float = 0.0


class Monitor:
    def __init__(self, daemon: Daemon, clock: Callable[[], float]) -> None:
        self.d = daemon
        self.clock = clock
        self._last = EventCounters()
        self._progress = _Progress(at=clock())
        self._metrics_at = -METRICS_EVERY

    def status(self) -> Status:
        """Everything ``vigild status`` shows, read now."""
        d = self.d
        raw = d.source.counters() if d.source else {}
        snap, w, tally = d.snap, d.workers, d.reporter.tally
        clean = d.clean.stats()
        lat = raw.get("latency_us", [])
        rs = snap.rules if snap else None
        return Status(
            pid=os.getpid(),
            mode=d.mode,
            mode_reason=d.mode_reason,
            watching=d.watch.paths,
            missing=d.watch.missing,
            started_at=d.started_at,
            rules=RulesStatus(
                engine=rs.engine if rs else "",
                count=rs.count if rs else 0,
                files=len(rs.files) if rs else 0,
                generation=f"{rs.generation:016x}" if rs else "",
                hash_entries=rs.hash_entries if rs else 0,
                reloads=d.reloads,
                reload_failures=d.reload_failures,
                skipped=tuple(str(e) for e in rs.skipped) if rs else (),
                engine_why=rs.engine_why if rs else "",
            ),
            events=EventCounters.of(raw),
            clean_cache=CacheStatus(clean.entries, clean.hits, clean.misses),
            latency_p50_us=percentile_us(lat, 0.5),
            latency_p99_us=percentile_us(lat, 0.99),
            workers=WorkerStatus(
                threads=w.threads if w else 0,
                alive=w.alive() if w else 0,
                scanned=w.counters.scanned if w else 0,
                detections=tally.detections,
                quarantined=tally.quarantined,
                late=tally.late,
                errors=tally.errors,
                internal_errors=(w.counters.internal_errors if w else 0) + tally.report_failures,
            ),
            alerts=self._alerts(),
            settings=d.source.settings() if d.source else {},
            feeds=generations.status(snap.config) if snap else (),
        )

    def _alerts(self) -> AlertStatus:
        a = self.d.alerts
        sp = a.spool
        c = sp.counters if sp else SpoolCounters()
        return AlertStatus(
            written=a.written,
            dropped=a.dropped,
            journal_busy=a.journal_busy,
            spooled=c.spooled,
            spool_pending=sp.pending if sp else 0,
            spool_bytes=sp.size if sp else 0,
            spool_delivered=c.delivered,
            spool_lost=c.lost,
            spool_lost_detections=c.lost_detections,
        )

    def tick(self) -> None:
        """Overflow alerts, STATUS=, the watchdog, and the metrics file when due."""
        s = self.status()
        self._alert_overflows(s.events)
        journal.notify("STATUS=" + status_line(s))
        if self.healthy(s):
            journal.notify("WATCHDOG=1")
        self.write_metrics(s)

    def _alert_overflows(self, now: EventCounters) -> None:
        for key, what in OVERFLOWS.items():
            delta = getattr(now, key) - getattr(self._last, key)
            if delta > 0:
                fields: dict[str, str] = {Field.OVERFLOW: key, Field.COUNT: str(delta)}
                self.d.alerts.emit(Alert(Kind.QUEUE_OVERFLOW, f"{delta} {what}", fields))
        self._last = now

    def healthy(self, s: Status) -> bool:
        """Jobs are being completed, or none is waiting; every worker thread lives;
        no reader has left events pending in the kernel unread for ``stall_timeout``.

        The reader's side is measured in C (``reader_stuck_ms``, per group): a
        reader idle in poll() comes back twice a second, one blocked in read()
        does not, and openers wait behind the events it has not read.
        """
        w = s.workers
        stall_ms = self.d.stall_timeout_ms()
        if self.d.workers is None or w.alive < w.threads:
            return False
        if s.events.kernel_pending and s.events.reader_stuck_ms >= stall_ms:
            return False
        now = self.clock()
        if w.scanned != self._progress.completed:
            self._progress = _Progress(w.scanned, now)
            return True
        if not self.d.source or not self.d.source.waiting():
            self._progress.at = now
            return True
        return now - self._progress.at < stall_ms / 1000

    def write_metrics(self, s: Status | None = None, force: bool = False) -> None:
        path = self.d.metrics_file()
        now = self.clock()
        if not path or (not force and now - self._metrics_at < METRICS_EVERY):
            return
        self._metrics_at = now
        try:
            metrics.write(path, s or self.status())
        except OSError as e:
            log.warning("%s: metrics not written: %s", path, e.strerror)
