"""Small pure parts: cgroup parsing, --since times."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from vigild import review
from vigild.procinfo import unit_and_container


@pytest.mark.parametrize(
    ("cgroup", "unit", "container"),
    [
        ("0::/system.slice/nginx.service\n", "nginx.service", ""),
        ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope", ""),
        ("0::/system.slice/docker-" + "ab" * 32 + ".scope\n", "", "ab" * 32),
        (
            "12:pids:/docker/" + "cd" * 32 + "\n1:name=systemd:/docker/" + "cd" * 32 + "\n",
            "",
            "cd" * 32,
        ),
        ("0::/machine.slice/libpod-" + "ef" * 32 + ".scope/container\n", "", "ef" * 32),
        ("0::/\n", "", ""),
        ("", "", ""),
    ],
)
def test_unit_and_container_from_cgroup(cgroup: str, unit: str, container: str) -> None:
    assert unit_and_container(cgroup) == (unit, container)


NOW = dt.datetime(2026, 11, 22, 15, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("today", NOW.replace(hour=0, minute=0)),
        ("yesterday", dt.datetime(2026, 11, 21, tzinfo=dt.UTC)),
        ("-1h", NOW - dt.timedelta(hours=1)),
        ("10 min ago", NOW - dt.timedelta(minutes=10)),
        ("2 days ago", NOW - dt.timedelta(days=2)),
        ("2026-11-20T08:00:00+00:00", dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)),
        ("@1795000000", dt.datetime.fromtimestamp(1795000000, dt.UTC)),
        ("tomorrow", dt.datetime(2026, 11, 23, tzinfo=dt.UTC)),
        ("TODAY", NOW.replace(hour=0, minute=0)),
        ("+1h", NOW + dt.timedelta(hours=1)),
        ("-30min", NOW - dt.timedelta(minutes=30)),
        ("-1h 30min", NOW - dt.timedelta(hours=1, minutes=30)),
        ("-2w", NOW - dt.timedelta(weeks=2)),
        ("-1M", NOW - dt.timedelta(seconds=2_629_800)),  # a month, not a minute
        ("-90s", NOW - dt.timedelta(seconds=90)),
        ("1 hour ago", NOW - dt.timedelta(hours=1)),
        ("3 weeks ago", NOW - dt.timedelta(weeks=3)),
        ("2026-11-22 10:00", dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)),
        ("2026-11-22 10:00:30", dt.datetime(2026, 11, 22, 10, 0, 30, tzinfo=dt.UTC)),
        ("2026-11-22", dt.datetime(2026, 11, 22, tzinfo=dt.UTC)),
        ("2026-11-22T10:00:00Z", dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)),
        ("10:15", dt.datetime(2026, 11, 22, 10, 15, tzinfo=dt.UTC)),
        ("@1795000000.5", dt.datetime.fromtimestamp(1795000000.5, dt.UTC)),
    ],
)
def test_parse_when(text: str, expected: dt.datetime) -> None:
    assert review.parse_when(text, NOW) == expected


def test_parse_when_refuses_garbage() -> None:
    with pytest.raises(review.WhenError, match=r"expected e\.g\."):
        review.parse_when("last tuesday-ish", NOW)
    for bad in ("-1 fortnight", "25:00", "-", "ago", "10 min"):
        with pytest.raises(review.WhenError):
            review.parse_when(bad, NOW)


def test_the_queue_leaves_a_reads_worth_of_fds_per_marked_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every queued event holds an fd, and one read() opens an fd for each event it
    returns: at the fd limit the kernel denies the open (or loses a close-write)."""
    from dataclasses import replace

    from vigild import service
    from vigild.config import Config

    monkeypatch.setattr(service.resource, "getrlimit", lambda _: (4096, 4096))
    cfg = Config()
    cfg = replace(cfg, onaccess=replace(cfg.onaccess, watch=(str(tmp_path),), queue_size=4096))
    fitted = service._fit_queue_to_fds(cfg)
    spare = 512  # our own files
    assert fitted.onaccess.queue_size == 4096 - spare - 16384 // 24  # one filesystem: one group
    two = replace(cfg, onaccess=replace(cfg.onaccess, watch=(str(tmp_path), "/proc")))
    assert service._fit_queue_to_fds(two).onaccess.queue_size == 4096 - spare - 2 * (16384 // 24)
    # the verdicts waiting to settle get what the queue leaves, up to 4096
    assert service.settle_entries(fitted) == 0
    monkeypatch.setattr(service.resource, "getrlimit", lambda _: (65536, 65536))
    assert service.settle_entries(cfg) == 4096
    monkeypatch.setattr(service.resource, "getrlimit", lambda _: (6000, 6000))
    assert service.settle_entries(cfg) == 6000 - 512 - 16384 // 24 - 4096
