"""The alert spool: bounded, ordered, detections first, persistent, the gap on the record."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigild.spool import Spool


class Journal:
    """A stand-in journald that takes entries until told to refuse."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.refuse_after: int | None = None

    def __call__(self, payload: bytes) -> None:
        if self.refuse_after is not None and len(self.got) >= self.refuse_after:
            raise OSError("busy")
        self.got.append(payload)


def _entry(n: int, size: int = 100) -> bytes:
    return f"MESSAGE=e{n}\n".encode().ljust(size, b"x")


def test_delivers_in_order_and_keeps_what_was_refused(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"), 1 << 20)
    for i in range(10):
        assert spool.add(_entry(i), i, critical=i % 2 == 0)
    j = Journal()
    j.refuse_after = 4
    assert not spool.deliver(j)
    assert spool.pending == 6
    j.refuse_after = None
    assert spool.deliver(j)
    assert j.got == [_entry(i) for i in range(10)]
    assert spool.counters.delivered == 10 and spool.size == 0
    assert not (tmp_path / "s").exists()


def test_a_full_spool_keeps_detections_over_everything_else(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"), 10 * (100 + 21))  # room for ten records
    for i in range(8):
        spool.add(_entry(i), i, critical=False)
    assert spool.add(_entry(100), 100, critical=True)
    assert spool.add(_entry(101), 101, critical=True)
    assert spool.add(_entry(102), 102, critical=True)  # evicts the oldest informational one
    assert not spool.add(_entry(9), 9, critical=False)  # an informational one does not fit
    for n in range(103, 115):
        spool.add(_entry(n), n, critical=True)  # detections evict every informational one
    assert spool.counters.lost_detections > 0  # ...and then the newest detections go
    j = Journal()
    assert spool.deliver(j)
    assert j.got == [_entry(n) for n in range(100, 110)]  # the oldest detections, in order
    lost, lost_detections = spool.take_gap()
    assert (lost, lost_detections) == (spool.counters.lost, spool.counters.lost_detections)
    assert lost == 8 + 1 + 5 and lost_detections == 5
    assert spool.take_gap() == (0, 0)  # reported once


def test_a_restart_takes_over_what_was_left_torn_tail_included(tmp_path: Path) -> None:
    path = tmp_path / "s"
    first = Spool(str(path), 1 << 20)
    for i in range(5):
        first.add(_entry(i), i, critical=True)
    with path.open("ab") as f:
        f.write(b"\x07\x00\x00")  # a crash in the middle of an append
    second = Spool(str(path), 1 << 20)
    assert second.load() == 5
    second.add(_entry(5), 5, critical=True)
    j = Journal()
    assert second.deliver(j)
    assert j.got == [_entry(i) for i in range(6)]


@pytest.mark.parametrize("critical", [True, False])
def test_an_entry_larger_than_the_spool_is_counted_lost(tmp_path: Path, critical: bool) -> None:
    spool = Spool(None, 50)
    assert not spool.add(_entry(1, 200), 1, critical=critical)
    assert spool.take_gap() == (1, int(critical))
