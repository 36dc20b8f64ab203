"""The typed status record: one source for `vigild status`, STATUS= and the metrics file."""

from __future__ import annotations

import json

import pytest

from vigild import metrics
from vigild.status import (
    AlertStatus,
    CacheStatus,
    EventCounters,
    RulesStatus,
    Status,
    WorkerStatus,
    percentile_us,
    render_text,
    status_line,
)


def sample() -> Status:
    return Status(
        pid=42,
        mode="block",
        mode_reason="",
        watching=("/srv",),
        missing=("/var/www",),
        started_at=1.0,
        rules=RulesStatus("yara", 28, 9, "00ff", 3, 1, 0),
        events=EventCounters.of(
            {"perm_events": 10, "answered_deny": 2, "cache_allow": 3, "queued": 3, "unknown": 9}
        ),
        clean_cache=CacheStatus(5, 1, 4),
        latency_p50_us=64,
        latency_p99_us=2048,
        workers=WorkerStatus(2, 2, 3, 2, 1, 0, 0, 0),
        alerts=AlertStatus(7, 0, 1, 3, 2, 300, 1, 0, 0),
        settings={"deadline_ms": 5000},
    )


def test_percentiles_from_the_log2_histogram() -> None:
    buckets = [0] * 24
    assert percentile_us(buckets, 0.5) == 0
    buckets[5] = 90  # 32..63 us
    buckets[10] = 10  # 1024..2047 us
    assert percentile_us(buckets, 0.5) == 64
    assert percentile_us(buckets, 0.99) == 2048


def test_the_record_survives_the_control_socket_whole() -> None:
    s = sample()
    assert Status.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@pytest.mark.parametrize("section", ["events", "workers", "alerts", "rules"])
def test_a_record_missing_a_key_is_refused_not_read_as_zero(section: str) -> None:
    d = sample().to_dict()
    d[section].popitem()
    with pytest.raises((KeyError, TypeError)):
        Status.from_dict(d)


def test_status_line_and_text_agree_with_the_record() -> None:
    s = sample()
    assert (
        status_line(s)
        == "block mode, 1 paths, 28 rules; 10 opens checked, 2 blocked, cache hit 50%"
    )
    text = render_text(s)
    assert "vigild (pid 42) running in block mode" in text
    assert "(missing, skipped: /var/www)" in text
    assert "blocked:   2; detections 2 (0 late), quarantined 1" in text
    assert "7 written, 0 dropped (queue full); spool: 2 waiting for journald, 3 spooled" in text
    assert "settings:  deadline_ms=5000" in text


def test_metrics_text_comes_from_the_same_record() -> None:
    text = metrics.render(sample())
    assert 'vigild_info{mode="block",generation="00ff"} 1' in text
    assert "# TYPE vigild_perm_events counter\n" in text
    assert "vigild_perm_events_total 10\n" in text
    assert "vigild_denied_total 2\n" in text
    assert "vigild_rules 28\n" in text
    assert "vigild_verdict_cache_hit_ratio 0.5\n" in text
    assert "vigild_alerts_journal_busy_total 1\n" in text
    assert "vigild_alerts_spool_pending 2\n" in text
    assert text.endswith("# EOF\n")
