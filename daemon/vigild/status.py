"""The daemon's status as one typed record, and the three ways it is shown.

``Status`` is what ``vigild status --json`` prints (``asdict``), what the
control socket carries, what the metrics file is rendered from
(``vigild.metrics``) and what ``STATUS=`` and ``vigild status`` say. A
reader gets every field or an error, never a silent 0: ``from_dict``
refuses a record with a missing key (a CLI talking to another version).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from vigild.textform import escape

_T = TypeVar("_T")


@dataclass(frozen=True)
class EventCounters:
    """What the event source saw (names as in native/vigild.h's vg_fan_stats)."""

    events: int = 0
    perm_events: int = 0  # opens and execs held
    notify_events: int = 0  # close-writes read
    self_allowed: int = 0
    filtered: int = 0  # not a regular file, or outside the watch
    excluded: int = 0
    cache_allow: int = 0
    cache_deny: int = 0
    queued: int = 0  # handed to the workers
    queue_full: int = 0  # answered by policy: no room
    notify_dropped: int = 0  # close-write scans dropped: no room
    deadline_passed: int = 0
    answered_allow: int = 0
    answered_deny: int = 0
    late_results: int = 0
    ignore_marks: int = 0
    invalidations: int = 0
    overflows: int = 0  # the kernel's queue overflowed
    errors: int = 0
    interp_opens: int = 0  # opens by an interpreter or the loader, or of a user ELF: as execs
    exe_unknown: int = 0  # opens queued to learn what the opener runs
    exe_learned: int = 0  # programs hashed and remembered (interpreter or not)
    empty: int = 0  # empty files answered at once (just created or truncated)
    settled: int = 0  # clean verdicts on just-written files, stored once their window passed
    unopened: int = 0  # events the kernel could not open the file of (a write lease on it)
    queue_depth: int = 0  # waiting now
    in_flight: int = 0  # waiting or being scanned now
    reads: int = 0  # reads from the kernel that returned (every group)
    groups: int = 0  # fanotify groups: one per marked filesystem
    kernel_pending: int = 0  # bytes of events in the kernel not yet read, now
    reader_stuck_ms: int = 0  # longest a reader with events pending has not come back
    dropped: int = 0  # detect mode: scans dropped, the queue was full

    @classmethod
    def of(cls, stats: dict[str, Any]) -> EventCounters:
        """From a source's counter dictionary; counters it lacks are 0."""
        return cls(**{f.name: int(stats.get(f.name, 0)) for f in fields(cls)})

    @property
    def cache_hit_ratio(self) -> float:
        hits = self.cache_allow + self.cache_deny
        lookups = hits + self.queued
        return round(hits / lookups, 4) if lookups else 0.0


# Counters that mean work was lost or answered without a verdict: each
# increase is alerted (kind QUEUE_OVERFLOW) with these words.
OVERFLOWS = {
    "queue_full": "opens answered by policy: the queue was full",
    "notify_dropped": "close-write scans dropped: the queue was full",
    "overflows": "kernel event queue overflowed: caches flushed",
    "unopened": "events whose file the kernel could not open for vigild (a write lease or "
    "delegation on it; or an opener killed meanwhile): opens denied, close-write scans lost",
    "dropped": "scans dropped: the queue was full",
}


@dataclass(frozen=True)
class RulesStatus:
    engine: str
    count: int
    files: int
    generation: str
    hash_entries: int
    reloads: int
    reload_failures: int
    skipped: tuple[str, ...] = ()  # "file:line: message" of each rule file that did not compile
    engine_why: str = ""  # engine = "auto": "engine auto: <picked>; <each engine tried: why>"


@dataclass(frozen=True)
class WorkerStatus:
    threads: int
    alive: int
    scanned: int
    detections: int
    quarantined: int
    late: int
    errors: int  # scans that failed or timed out
    internal_errors: int  # a job or a report raised (a bug): answered by policy


@dataclass(frozen=True)
class AlertStatus:
    written: int
    dropped: int  # the alert queue was full (never a detection)
    journal_busy: int  # sends journald had no room for (then spooled)
    spooled: int  # entries kept on disk while journald was away
    spool_pending: int  # waiting in the spool now
    spool_bytes: int
    spool_delivered: int  # spooled entries journald took later
    spool_lost: int  # dropped because the spool was full, or torn in its file by a crash
    spool_lost_detections: int


@dataclass(frozen=True)
class CacheStatus:
    entries: int
    hits: int
    misses: int


@dataclass(frozen=True)
class FeedStatus:
    """One [[update.feed]] as ``vigild status`` shows it (vigild.generations reads it)."""

    name: str
    url: str
    insecure: bool
    generation: int  # the live feed generation holding its content; -1: none
    age_seconds: float  # since its content was signed (insecure: last fetched); -1: never
    last_error: str
    serial: int = 0  # the highest signed manifest serial accepted; 0: none
    stale: bool = False  # that manifest has expired: no current content from the feed


@dataclass(frozen=True)
class Status:
    pid: int
    mode: str  # block, detect or starting
    mode_reason: str
    watching: tuple[str, ...]
    missing: tuple[str, ...]
    started_at: float
    rules: RulesStatus
    events: EventCounters
    clean_cache: CacheStatus
    latency_p50_us: int
    latency_p99_us: int
    workers: WorkerStatus
    alerts: AlertStatus
    settings: dict[str, Any] = field(default_factory=dict)  # the live on-access settings
    feeds: tuple[FeedStatus, ...] = ()

    @property
    def blocked(self) -> int:
        return self.events.answered_deny

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Status:
        """The record a daemon sent; KeyError/TypeError when it is not complete."""
        return _strict(
            cls,
            {
                **d,
                "watching": tuple(d["watching"]),
                "missing": tuple(d["missing"]),
                "rules": _strict(
                    RulesStatus, {**d["rules"], "skipped": tuple(d["rules"]["skipped"])}
                ),
                "events": _strict(EventCounters, d["events"]),
                "clean_cache": _strict(CacheStatus, d["clean_cache"]),
                "workers": _strict(WorkerStatus, d["workers"]),
                "alerts": _strict(AlertStatus, d["alerts"]),
                "feeds": tuple(_strict(FeedStatus, f) for f in d["feeds"]),
            },
        )


def _strict(cls: type[_T], d: dict[str, Any]) -> _T:
    """``cls(**d)``, refusing a ``d`` that lacks a field even where it has a default."""
    missing = [f.name for f in fields(cls) if f.name not in d]  # type: ignore[arg-type]
    if missing:
        raise TypeError(f"{cls.__name__} lacks {', '.join(missing)}")
    return cls(**d)


def percentile_us(buckets: list[int], q: float) -> int:
    """Upper bound (us) of the latency bucket holding quantile ``q``; 0 if empty."""
    total = sum(buckets)
    if not total:
        return 0
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= q * total:
            return 2 << i
    return 2 << (len(buckets) - 1)


def status_line(s: Status) -> str:
    """The one line systemd shows (``STATUS=``)."""
    return (
        f"{s.mode} mode, {len(s.watching)} paths, {s.rules.count} rules; "
        f"{s.events.perm_events} opens checked, {s.blocked} blocked, "
        f"cache hit {s.events.cache_hit_ratio * 100:.0f}%"
    )


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _feed_line(f: FeedStatus) -> str:
    gen = f"generation {f.generation}" if f.generation >= 0 else "no content live"
    if f.insecure:
        age = f"checked {f.age_seconds:.0f}s ago" if f.age_seconds >= 0 else "never fetched"
    else:
        age = f"serial {f.serial}, signed {f.age_seconds:.0f}s ago" if f.serial else "never"
    age += " STALE (its signed manifest expired)" if f.stale else ""
    insecure = " INSECURE (unsigned)" if f.insecure else ""
    error = f"; last error: {f.last_error}" if f.last_error else ""
    return f"  feed:      {f.name}{insecure}: {gen}, {age}{error}"


def render_text(s: Status) -> str:
    """What ``vigild status`` prints."""
    ev, r, w = s.events, s.rules, s.workers
    mode = s.mode.upper() if s.mode == "detect" else s.mode
    lines = [
        f"vigild (pid {s.pid}) running in {mode} mode"
        + (f": {s.mode_reason}" if s.mode_reason else ""),
        f"  watching:  {', '.join(s.watching)}"
        + (f" (missing, skipped: {', '.join(s.missing)})" if s.missing else ""),
        f"  rules:     {r.count} rules from {r.files} files"
        + (f", {len(r.skipped)} files skipped" if r.skipped else "")
        + f" ({r.engine}), {r.hash_entries} known-bad hashes, generation {r.generation}, "
        f"{r.reloads} reloads ({r.reload_failures} failed)",
        *(f"  skipped:   {e}" for e in r.skipped),
        *([f"  engine:    {r.engine_why}"] if r.engine_why else []),
        f"  events:    {ev.perm_events} opens/execs, {ev.notify_events} close-writes; "
        f"{ev.queued} scanned, {ev.self_allowed + ev.filtered} passed at once, "
        f"{ev.empty} empty, "
        f"{ev.excluded} excluded",
        f"  caches:    verdict hit ratio {ev.cache_hit_ratio * 100:.1f}%, "
        f"{ev.ignore_marks} ignore marks, {ev.settled} settled after writes, "
        f"clean-content {s.clean_cache.entries} entries",
        f"  queue:     {ev.queue_depth} waiting, {ev.in_flight} in flight, "
        f"{ev.queue_full} answered full, {ev.deadline_passed} past deadline, {ev.dropped} dropped",
        f"  readers:   {ev.groups} groups, {ev.reads} reads, "
        f"{ev.kernel_pending} bytes pending in the kernel"
        + (f", a reader stuck for {ev.reader_stuck_ms} ms" if ev.reader_stuck_ms else ""),
        f"  latency:   p50 <= {s.latency_p50_us} us, p99 <= {s.latency_p99_us} us",
        f"  blocked:   {s.blocked}; detections {w.detections} ({w.late} late), "
        f"quarantined {w.quarantined}, scan errors {w.errors}, internal errors {w.internal_errors}",
        f"  alerts:    {s.alerts.written} written, {s.alerts.dropped} dropped (queue full); "
        f"spool: {s.alerts.spool_pending} waiting for journald, {s.alerts.spooled} spooled, "
        f"{s.alerts.spool_delivered} delivered late, {s.alerts.spool_lost} lost "
        f"({s.alerts.spool_lost_detections} detections)",
    ]
    if s.settings:
        lines.append(f"  settings:  {_settings_text(s.settings)}")
    lines.extend(_feed_line(f) for f in s.feeds)
    return "\n".join(escape(line) for line in lines)  # paths come from the config
