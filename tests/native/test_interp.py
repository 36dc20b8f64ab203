"""Opens by an interpreter are checked like executions: the C side, without root.

The rig's events carry the pid of a child running ``sleep``; the settings
list sleep as the "interpreter" by inode, by content hash, or not at all.
The scanned file lies outside the watched paths, so only an interpreter
(or a program still to be learned) gets it scanned.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanrig import FAN_OPEN_PERM, Rig, room_for_fds
from vigild import native
from vigild.native import ALLOW, DENY, FanSettings

OUTSIDE = FanSettings(watch=("/nonexistent-watched-dir",), on_deadline_exec=DENY)


@pytest.fixture(scope="module", autouse=True)
def _room_for_fds() -> None:
    room_for_fds()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child process whose program is sleep: the opener in every event."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    p = subprocess.Popen([sleep, "60"])
    try:
        yield p
    finally:
        p.kill()
        p.wait(10)


def _program(pid: int) -> tuple[os.stat_result, bytes]:
    st = os.stat(f"/proc/{pid}/exe")
    with open(f"/proc/{pid}/exe", "rb") as f:
        return st, hashlib.sha256(f.read()).digest()


def _rig(tmp_path: Path, settings: FanSettings) -> Rig:
    return Rig(tmp_path / "script", settings=settings)


def test_a_listed_interpreter_makes_the_open_an_exec(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    st, _ = _program(sleeper.pid)
    rig = _rig(
        tmp_path, FanSettings(**{**OUTSIDE.__dict__, "interp_ids": ((st.st_dev, st.st_ino),)})
    )
    try:
        rig.send(FAN_OPEN_PERM, pid=sleeper.pid)
        job = rig.job()
        assert (job.kind, job.flags) == (native.EV_EXEC, 0)  # exec policies from here on
        rig.fan.done(job)  # unanswered: the exec deadline answer
        assert [r for _, r in rig.wait(1)] == [DENY]
        assert rig.fan.stats()["interp_opens"] == 1
    finally:
        rig.close()


def test_a_copy_is_learned_by_its_hash_once(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    _, sha = _program(sleeper.pid)
    rig = _rig(tmp_path, FanSettings(**{**OUTSIDE.__dict__, "interp_sha256": (sha,)}))
    try:
        rig.send(FAN_OPEN_PERM, pid=sleeper.pid)
        job = rig.job()
        assert job.kind == native.EV_OPEN
        assert job.flags == native.JOB_CLASSIFY | native.JOB_OUTSIDE
        fd = os.open(f"/proc/{sleeper.pid}/exe", os.O_RDONLY)
        try:
            assert rig.fan.classify(job, fd, sha) is True
        finally:
            os.close(fd)
        rig.fan.done(job)  # now an exec job: its deadline answer is the exec one
        assert [r for _, r in rig.wait(1)] == [DENY]
        rig.send(FAN_OPEN_PERM, pid=sleeper.pid)
        again = rig.job()  # remembered: no second classification
        assert (again.kind, again.flags) == (native.EV_EXEC, 0)
        rig.fan.done(again)
        stats = rig.fan.stats()
        assert (stats["exe_unknown"], stats["exe_learned"], stats["interp_opens"]) == (1, 1, 1)
    finally:
        rig.close()


def test_another_program_is_learned_once_and_then_let_by(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    rig = _rig(tmp_path, FanSettings(**{**OUTSIDE.__dict__, "interp_sha256": (bytes(range(32)),)}))
    try:
        rig.send(FAN_OPEN_PERM, pid=sleeper.pid)
        job = rig.job()
        fd = os.open(f"/proc/{sleeper.pid}/exe", os.O_RDONLY)
        try:
            assert rig.fan.classify(job, fd, _program(sleeper.pid)[1]) is False
        finally:
            os.close(fd)
        rig.fan.answer(job, True, 0, 0)
        rig.fan.done(job)
        rig.send(FAN_OPEN_PERM, pid=sleeper.pid)  # known now: answered by the reader
        assert [r for _, r in rig.wait(2)] == [ALLOW, ALLOW]
        assert rig.fan.next(50) is None
        assert rig.fan.stats()["filtered"] == 1
    finally:
        rig.close()


def test_a_new_interpreter_list_judges_programs_again(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    _, sha = _program(sleeper.pid)
    rig = _rig(tmp_path, FanSettings(**{**OUTSIDE.__dict__, "interp_sha256": (bytes(32),)}))
    try:
        rig.send(FAN_OPEN_PERM, pid=sleeper.pid)
        job = rig.job()
        fd = os.open(f"/proc/{sleeper.pid}/exe", os.O_RDONLY)
        try:
            assert rig.fan.classify(job, fd, sha) is False
            rig.fan.done(job)
            rig.fan.configure(FanSettings(**{**OUTSIDE.__dict__, "interp_sha256": (sha,)}))
            rig.send(FAN_OPEN_PERM, pid=sleeper.pid)
            job = rig.job()  # unknown under the new list: asked again
            assert job.flags & native.JOB_CLASSIFY
            assert rig.fan.classify(job, fd, sha) is True
            rig.fan.done(job)
        finally:
            os.close(fd)
    finally:
        rig.close()


def test_no_list_or_no_exec_anywhere_leaves_opens_outside_alone(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    st, sha = _program(sleeper.pid)
    listed = {"interp_ids": ((st.st_dev, st.st_ino),), "interp_sha256": (sha,)}
    for settings in (
        OUTSIDE,
        FanSettings(**{**OUTSIDE.__dict__, **listed, "exec_anywhere": False}),
    ):
        rig = _rig(tmp_path, settings)
        try:
            rig.send(FAN_OPEN_PERM, pid=sleeper.pid)
            assert [r for _, r in rig.wait(1)] == [ALLOW]
            assert rig.fan.next(50) is None
        finally:
            rig.close()


def test_digests_must_be_32_bytes() -> None:
    ours, peer = socket.socketpair()
    with peer, pytest.raises(native.NativeError):
        cfg = native.FanConfig(events=native.EV_OPEN, queue_size=4, cache_entries=64)
        native.Fanotify(cfg, fd=ours.detach(), settings=FanSettings(interp_sha256=(b"short",)))
