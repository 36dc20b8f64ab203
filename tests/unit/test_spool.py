"""The alert spool: bounded, ordered, detections first, persistent, the gap on the record."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import PrivateMount
from vigild.alert import Alert, JournalChannel, Kind
from vigild.spool import Gap, Record, Spool


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
    gap = spool.take_gap()
    assert (gap.lost, gap.detections) == (spool.counters.lost, spool.counters.lost_detections)
    assert gap == Gap(lost=8 + 1 + 5, detections=5)
    assert spool.take_gap() == Gap()  # reported once


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
    assert spool.take_gap() == Gap(lost=1, detections=int(critical))


# ------------------------------------------------------------ a full disk


def _no_private_tmpfs() -> str | None:
    """None when this process can mount a tmpfs in a namespace of its own, else why not."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs in a private mount namespace"
    missing = [t for t in ("unshare", "nsenter", "mount", "umount") if shutil.which(t) is None]
    return f"{', '.join(missing)} not installed (util-linux, mount)" if missing else None


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs only this test sees, reached through its namespace holder's root."""
    reason = _no_private_tmpfs()
    if reason:
        pytest.skip(reason)
    try:
        mount = PrivateMount(tmp_path, size="1m", label="vigild-spool-test")
    except RuntimeError as e:
        pytest.skip(f"no private tmpfs here: {e}")
    try:
        yield Path(f"/proc/{mount.holder.pid}/root{mount.mnt}")
    finally:
        mount.close()


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no page left."""
    with path.open("wb", buffering=0) as f, pytest.raises(OSError) as full:
        while True:
            f.write(b"f" * 65536)
    assert full.value.errno == errno.ENOSPC


@pytest.mark.root
def test_a_full_disk_loses_no_spooled_alert(small_fs: Path) -> None:
    path = str(small_fs / "alerts.spool")
    entries = [_entry(i, 3000) for i in range(3)]  # two do not fit one page: a short write
    spool = Spool(path, 1 << 20)
    assert spool.add(entries[0], 0, critical=True)
    _fill(small_fs / "filler")
    assert spool.add(entries[1], 1, critical=True)  # kept in memory only, for now
    assert spool.counters.disk_errors == 1
    (small_fs / "filler").unlink()
    assert spool.add(entries[2], 2, critical=True)
    after = Spool(path, 1 << 20)  # the next run
    assert after.load() == 3
    j = Journal()
    assert after.deliver(j)
    assert j.got == entries
    assert after.take_gap() == Gap()


def test_a_half_record_that_cannot_be_cut_off_is_rewritten_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "s")
    spool = Spool(path, 1 << 20)
    spool.add(_entry(0), 0, critical=True)
    real_write = os.write
    writes: list[int] = []

    def half_then_full(fd: int, data: bytes) -> int:
        writes.append(len(data))
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[: len(data) // 2])

    def cannot_cut(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "cannot truncate")

    with monkeypatch.context() as m:
        m.setattr(os, "write", half_then_full)
        m.setattr(os, "ftruncate", cannot_cut)
        spool.add(_entry(1), 1, critical=True)
    spool.add(_entry(2), 2, critical=True)
    after = Spool(path, 1 << 20)
    assert after.load() == 3
    j = Journal()
    assert after.deliver(j)
    assert j.got == [_entry(i) for i in range(3)]
    assert after.take_gap() == Gap()


# ------------------------------------------------------------ a torn file


def _tear(path: Path, critical: bool) -> None:
    """Leave half a record at the end of ``path``, as a daemon that died mid-append."""
    with path.open("ab") as f:
        f.write(Record(99, 99, critical, _entry(99)).encoded()[:60])


def _received(journald: socket.socket) -> list[bytes]:
    """The datagrams waiting at ``journald``."""
    got = []
    with contextlib.suppress(BlockingIOError):
        while True:
            got.append(journald.recv(1 << 16, socket.MSG_DONTWAIT))
    return got


def test_a_torn_record_is_reported_lost(tmp_path: Path) -> None:
    path = tmp_path / "s"
    first = Spool(str(path), 1 << 20)
    for i in range(3):
        first.add(_entry(i), i, critical=False)
    _tear(path, critical=True)
    journald = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journald.bind(str(tmp_path / "socket"))
    try:
        second = Spool(str(path), 1 << 20)
        assert second.load() == 3
        fell: list[Alert] = []
        channel = JournalChannel(second, str(tmp_path / "socket"), fell.append, True)
        assert channel.tick()
        got = _received(journald)
    finally:
        journald.close()
    assert len(got) == 4 and got[:3] == [_entry(i) for i in range(3)]
    assert f"MESSAGE_ID={Kind.ALERTS_LOST.message_id}\n".encode() in got[3]
    assert b"\nVIGILD_COUNT=1\n" in got[3] and b"\nVIGILD_DETECTIONS_LOST=1\n" in got[3]
    assert b"could not be read back from a spool file torn" in got[3]
    assert fell == []


def test_a_torn_record_is_counted_once(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _tear(path, critical=False)
    second = Spool(str(path), 1 << 20)
    assert second.load() == 0
    assert second.take_gap() == Gap(lost=1, unreadable=1)
    third = Spool(str(path), 1 << 20)  # restarted before anything else was spooled
    assert third.load() == 0
    assert third.take_gap() == Gap()


def test_what_is_added_behind_a_torn_record_survives_the_next_restart(tmp_path: Path) -> None:
    path = tmp_path / "s"
    first = Spool(str(path), 1 << 20)
    first.add(_entry(0), 0, critical=True)
    _tear(path, critical=False)
    second = Spool(str(path), 1 << 20)
    assert second.load() == 1
    assert second.take_gap() == Gap(lost=1, unreadable=1)
    assert second.add(_entry(1), 1, critical=True)
    third = Spool(str(path), 1 << 20)
    j = Journal()
    assert third.load() == 2 and third.deliver(j)
    assert j.got == [_entry(0), _entry(1)]
    assert third.take_gap() == Gap()
