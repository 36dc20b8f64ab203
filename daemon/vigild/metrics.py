"""vigild's counters as an OpenMetrics text file, for node_exporter's textfile collector.

Rendered from the same typed status record ``vigild status`` shows, and
written atomically (temporary file, then rename) so the collector
never reads half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vigild.status import Status

# (metric, type, help, attribute path into the status record)
_METRICS: list[tuple[str, str, str, tuple[str, ...]]] = [
    (
        "vigild_perm_events",
        "counter",
        "Opens and execs held for a verdict.",
        ("events", "perm_events"),
    ),
    (
        "vigild_close_write_events",
        "counter",
        "Close-write events read.",
        ("events", "notify_events"),
    ),
    ("vigild_scans", "counter", "Events handed to the scanner.", ("events", "queued")),
    (
        "vigild_cache_allowed",
        "counter",
        "Opens allowed from the verdict cache.",
        ("events", "cache_allow"),
    ),
    (
        "vigild_cache_denied",
        "counter",
        "Opens denied from the verdict cache.",
        ("events", "cache_deny"),
    ),
    (
        "vigild_passed",
        "counter",
        "Opens answered at once: own pid, not a file, outside the watch.",
        ("events", "filtered"),
    ),
    (
        "vigild_excluded",
        "counter",
        "Opens of excluded paths, programs or users.",
        ("events", "excluded"),
    ),
    (
        "vigild_settled_verdicts",
        "counter",
        "Clean verdicts on just-written files stored once the freshness window passed.",
        ("events", "settled"),
    ),
    (
        "vigild_empty_files",
        "counter",
        "Opens of empty files answered at once (created or truncated): nothing to scan.",
        ("events", "empty"),
    ),
    (
        "vigild_interpreter_opens",
        "counter",
        "Opens by an interpreter or the loader, or of a user-writable ELF, checked as executions.",
        ("events", "interp_opens"),
    ),
    (
        "vigild_queue_full",
        "counter",
        "Opens answered by policy because the queue was full.",
        ("events", "queue_full"),
    ),
    (
        "vigild_deadline_passed",
        "counter",
        "Opens answered by policy at the deadline.",
        ("events", "deadline_passed"),
    ),
    ("vigild_denied", "counter", "Opens and execs denied.", ("events", "answered_deny")),
    (
        "vigild_ignore_marks",
        "counter",
        "Kernel ignore marks placed on clean files.",
        ("events", "ignore_marks"),
    ),
    (
        "vigild_kernel_overflows",
        "counter",
        "Kernel event queue overflows.",
        ("events", "overflows"),
    ),
    (
        "vigild_unopened_events",
        "counter",
        "Events whose file the kernel could not open for vigild (a write lease on it).",
        ("events", "unopened"),
    ),
    ("vigild_detections", "counter", "Malicious files found.", ("workers", "detections")),
    ("vigild_quarantined", "counter", "Files moved to quarantine.", ("workers", "quarantined")),
    (
        "vigild_late_detections",
        "counter",
        "Detections after the deadline answered.",
        ("workers", "late"),
    ),
    ("vigild_scan_errors", "counter", "Scans that failed or timed out.", ("workers", "errors")),
    (
        "vigild_internal_errors",
        "counter",
        "Jobs or reports that raised (a bug); answered by policy.",
        ("workers", "internal_errors"),
    ),
    ("vigild_rule_reloads", "counter", "Successful rule reloads.", ("rules", "reloads")),
    (
        "vigild_rule_reload_failures",
        "counter",
        "Failed rule reloads.",
        ("rules", "reload_failures"),
    ),
    (
        "vigild_alerts_dropped",
        "counter",
        "Alerts dropped because their queue was full.",
        ("alerts", "dropped"),
    ),
    (
        "vigild_alerts_journal_busy",
        "counter",
        "Alerts journald had no room for.",
        ("alerts", "journal_busy"),
    ),
    ("vigild_alerts_written", "counter", "Alerts written.", ("alerts", "written")),
    (
        "vigild_alerts_spooled",
        "counter",
        "Alerts kept on disk while journald was away.",
        ("alerts", "spooled"),
    ),
    (
        "vigild_alerts_spool_delivered",
        "counter",
        "Spooled alerts journald took later.",
        ("alerts", "spool_delivered"),
    ),
    (
        "vigild_alerts_spool_lost",
        "counter",
        "Alerts the spool lost: it was full, or a crash tore one in its file.",
        ("alerts", "spool_lost"),
    ),
    (
        "vigild_detections_spool_lost",
        "counter",
        "Detection alerts the spool lost: it was full, or a crash tore one in its file.",
        ("alerts", "spool_lost_detections"),
    ),
    (
        "vigild_alerts_spool_pending",
        "gauge",
        "Alerts waiting in the spool for journald.",
        ("alerts", "spool_pending"),
    ),
    (
        "vigild_alerts_spool_bytes",
        "gauge",
        "Bytes in the alert spool.",
        ("alerts", "spool_bytes"),
    ),
    ("vigild_queue_depth", "gauge", "Events waiting for a worker.", ("events", "queue_depth")),
    ("vigild_in_flight", "gauge", "Events waiting or being scanned.", ("events", "in_flight")),
    ("vigild_kernel_reads", "counter", "Reads from the fanotify groups.", ("events", "reads")),
    (
        "vigild_kernel_pending_bytes",
        "gauge",
        "Bytes of events waiting in the kernel, not yet read.",
        ("events", "kernel_pending"),
    ),
    (
        "vigild_reader_stuck_milliseconds",
        "gauge",
        "Longest time a reader with events pending has not come back (0: none pending).",
        ("events", "reader_stuck_ms"),
    ),
    ("vigild_rules", "gauge", "Rules loaded.", ("rules", "count")),
    (
        "vigild_verdict_cache_hit_ratio",
        "gauge",
        "Verdict cache hits per look-up.",
        ("events", "cache_hit_ratio"),
    ),
    (
        "vigild_latency_p50_microseconds",
        "gauge",
        "Median time to answer (upper bound).",
        ("latency_p50_us",),
    ),
    (
        "vigild_latency_p99_microseconds",
        "gauge",
        "99th percentile time to answer (upper bound).",
        ("latency_p99_us",),
    ),
]


def _get(status: Status, path: tuple[str, ...]) -> float:
    value: object = status
    for name in path:
        value = getattr(value, name)
    assert isinstance(value, int | float)
    return float(value)


def render(status: Status) -> str:
    """The text file for one status record."""

    def lines() -> Iterator[str]:
        yield "# TYPE vigild_info gauge"
        yield "# HELP vigild_info vigild's mode and rules generation."
        yield f'vigild_info{{mode="{status.mode}",generation="{status.rules.generation}"}} 1'
        for name, kind, help_text, path in _METRICS:
            yield f"# TYPE {name} {kind}"
            yield f"# HELP {name} {help_text}"
            suffix = "_total" if kind == "counter" else ""
            value = _get(status, path)
            yield f"{name}{suffix} {value:g}"
        feeds = [f for f in status.feeds if f.age_seconds >= 0]
        if feeds:
            yield "# TYPE vigild_feed_age_seconds gauge"
            yield (
                "# HELP vigild_feed_age_seconds Seconds since the feed's live content was signed "
                "(its manifest's signed time; an insecure feed: since last fetched)."
            )
            for f in feeds:
                yield f'vigild_feed_age_seconds{{feed="{f.name}"}} {f.age_seconds:g}'
        yield "# EOF"

    return "\n".join(lines()) + "\n"


def write(path: str, status: Status) -> None:
    """Replace ``path`` with the rendering of ``status``.

    The temporary file gets an unpredictable name and O_EXCL (mkstemp):
    the textfile directory may belong to the node_exporter user, who must
    not be able to point root's write elsewhere with a symlink.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(render(status))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
