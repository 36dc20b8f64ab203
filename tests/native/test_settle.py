"""A clean verdict on a file written just before its scan is stored once the
freshness window has passed, and only for the bytes the rules saw (native/settle.c).

Driven through a socketpair (tests/fanrig.py) on files in pytest's tmp_path,
which must be on a filesystem type listed for ignore marks (ext4, xfs, btrfs,
tmpfs, f2fs), as settle.c requires. The kernels these tests run on may have
multigrain timestamps (6.13+), where a rewrite always gets a new ctime; what
must hold on older kernels, a rewrite that keeps the ctime, is reproduced by
handing C a SHA-256 other than the file's: the bytes read again do not match.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fanrig import Rig
from vigild import native
from vigild.native import ALLOW, FanSettings

Make = Callable[..., Rig]
WINDOW = 0.02  # FanSettings' default freshness window
LOCAL = {"ext2/ext3", "xfs", "btrfs", "tmpfs", "f2fs"}  # stat -f names of FanSettings.mark_fs


@pytest.fixture
def make(tmp_path: Path, rigs: list[Rig]) -> Make:
    fstype = os.popen(f"stat -f -c %T {tmp_path}").read().strip()
    if fstype not in LOCAL:
        pytest.skip(f"{tmp_path} is on {fstype}: settle.c keeps only local filesystems' verdicts")

    def _make(**kw: object) -> Rig:
        rig = Rig(tmp_path / f"file{len(rigs)}", **kw)  # type: ignore[arg-type]
        rigs.append(rig)
        return rig

    return _make


def _fresh_scan(rig: Rig, path: Path, content: bytes, digest: bytes) -> None:
    """Write ``content`` and at once have a worker find it clean, handing ``digest``."""
    path.write_bytes(content)
    rig.send()
    job = rig.job()
    assert job.size == len(content)
    assert rig.fan.answer(job, True, native.CACHE_VERDICT, 0, digest) is native.Answered.NOW
    rig.fan.done(job)


def test_a_fresh_clean_verdict_answers_the_next_open_once_its_window_passed(
    make: Make, tmp_path: Path
) -> None:
    rig = make()
    path = tmp_path / "file0"
    content = b"written and scanned at once\n"
    _fresh_scan(rig, path, content, hashlib.sha256(content).digest())
    rig.settle("settled", 1)
    hit = rig.send()
    assert rig.wait(2)[-1] == (hit, ALLOW)
    rig.settle("cache_allow", 1)  # answered by the reader: no job
    assert rig.fan.next(50) is None


def test_a_file_renamed_after_its_scan_settles_under_its_new_ctime(
    make: Make, tmp_path: Path
) -> None:
    """git writes index.lock, closes it and renames it to index: the rename sets
    a new ctime after the scan. The bytes are compared, so the verdict holds for
    the file as it is now, and the next open is answered without a scan."""
    rig = make()
    path = tmp_path / "file0"
    content = b"written, scanned, then renamed\n"
    _fresh_scan(rig, path, content, hashlib.sha256(content).digest())
    scanned_ctime = os.stat(path).st_ctime_ns
    os.rename(path, tmp_path / "renamed")
    assert os.stat(tmp_path / "renamed").st_ctime_ns != scanned_ctime
    rig.settle("settled", 1)
    hit = rig.send()
    assert rig.wait(2)[-1] == (hit, ALLOW)
    rig.settle("cache_allow", 1)
    assert rig.fan.next(50) is None


def test_bytes_other_than_those_scanned_are_never_stored(make: Make, tmp_path: Path) -> None:
    """What a same-tick rewrite leaves on a kernel before 6.13: the ctime and
    size the scan saw, other bytes. The file is read again and hashed."""
    rig = make()
    path = tmp_path / "file0"
    content = b"written and scanned at once\n"
    _fresh_scan(rig, path, content, hashlib.sha256(b"other bytes, same size...\n").digest())
    time.sleep(WINDOW * 10)
    assert rig.fan.stats()["settled"] == 0
    rig.send()
    assert rig.job().size == len(content), "the next open was not scanned"


def test_no_digest_no_settling(make: Make, tmp_path: Path) -> None:
    """A clean verdict on part of a file (an over-size head and tail) comes
    without a digest: it is never stored later."""
    rig = make()
    path = tmp_path / "file0"
    _fresh_scan(rig, path, b"head and tail only\n", b"")
    time.sleep(WINDOW * 10)
    assert rig.fan.stats()["settled"] == 0
    rig.send()
    assert rig.job() is not None


def test_a_writer_that_opened_meanwhile_keeps_it_from_settling(make: Make, tmp_path: Path) -> None:
    """A writer that opens after the scan and still holds the file when its
    window has passed: nothing is stored (it could write without a new ctime
    through a mapping it dirtied already)."""
    rig = make(settings=FanSettings(fresh_ms=300))
    path = tmp_path / "file0"
    content = b"written and scanned at once\n"
    _fresh_scan(rig, path, content, hashlib.sha256(content).digest())
    writer = os.open(path, os.O_WRONLY)
    try:
        time.sleep(0.6)
        assert rig.fan.stats()["settled"] == 0
    finally:
        os.close(writer)


# A filesystem that keeps whole seconds only -------------------------------


def _early_in_a_second() -> None:
    """Wait for the first half of a wall-clock second: what follows stays in it."""
    while time.time() % 1 > 0.4:
        time.sleep(0.01)


def test_whole_second_ctimes_are_not_remembered_within_their_second(
    whole_seconds: Path, rigs: list[Rig]
) -> None:
    """Such a file keeps its ctime for the rest of the second, on every kernel:
    a clean verdict 50 ms after the write, cached, would answer for a rewrite
    a few hundred ms later (same ctime, same size, other bytes)."""
    path = whole_seconds / "file"
    rig = Rig(path)
    rigs.append(rig)
    _early_in_a_second()
    path.write_bytes(b"clean bytes, seconds-only ctime\n")
    assert os.stat(path).st_ctime_ns % 1_000_000_000 == 0, "not a whole-seconds ctime"
    time.sleep(WINDOW * 2.5)  # past the freshness window
    rig.send()
    job = rig.job()
    assert rig.fan.answer(job, True, native.CACHE_VERDICT, 0) is native.Answered.NOW
    rig.fan.done(job)
    rig.send()
    assert rig.job(timeout_ms=1000) is not None, "the verdict was cached within its second"


def test_whole_second_ctimes_settle_only_after_their_second(
    whole_seconds: Path, rigs: list[Rig]
) -> None:
    """The reviewer's interleaving: clean bytes scanned at once, a same-size
    rewrite later in the same second by a writer that stays open."""
    path = whole_seconds / "file"
    rig = Rig(path)
    rigs.append(rig)
    _early_in_a_second()
    content = b"clean bytes, seconds-only ctime\n"
    _fresh_scan(rig, path, content, hashlib.sha256(content).digest())
    time.sleep(WINDOW * 5)
    writer = os.open(path, os.O_WRONLY)
    try:
        os.write(writer, b"X" * len(content))
        assert os.stat(path).st_ctime_ns == os.fstat(rig.file).st_ctime_ns
        rig.send()
        assert rig.job(timeout_ms=1000) is not None, "a settled verdict answered the rewrite"
    finally:
        os.close(writer)
    assert rig.fan.stats()["settled"] == 0
