"""The Python workers on the real C core, without root: examine, answer, hand over.

The C reader reads synthetic events from a socketpair (tests/fanrig.py);
real Workers take the jobs, examine the files with a real snapshot of the
shipped rules, answer, and hand over to a real Reporter. What is asserted
is what an opener and an admin would see: the response, and the alert.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fanrig import Rig
from support import REPO, eicar
from vigild import native, snapshot
from vigild.alert import Alert, Alerts, Kind
from vigild.config import Config, EventKind, Fallback, Oversize, PerKind, RulesConfig
from vigild.fields import Field
from vigild.onaccess import Workers
from vigild.quarantine import Store
from vigild.report import Reporter
from vigild.snapshot import Snapshot

pytestmark = pytest.mark.usefixtures("fd_room")


class Setup:
    def __init__(self, tmp_path: Path, cfg: Config) -> None:
        self.tmp = tmp_path
        self.snap = snapshot.build(cfg, native.Cache(1024))
        self.got: list[Alert] = []
        self.alerts = Alerts(sink=self.got.append)
        self.alerts.start()
        self.store = Store(str(tmp_path / "quarantine"))
        self.store.prepare()
        self.reporter = Reporter(self.alerts, self.store)
        settings = self.snap.reader_settings((str(tmp_path),))
        self.rig = Rig(tmp_path / "rig-file", queue_size=16, settings=settings)
        self.workers = Workers(lambda: self.snap, self.reporter)
        self.workers.start_fanotify(self.rig.fan, 2)

    def open_event(self, name: str, data: bytes) -> int:
        """An open of a new file ``name`` holding ``data``; the event's fd number."""
        path = self.tmp / name
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            return self.rig.send(file=fd)
        finally:
            os.close(fd)

    def answer(self, event: int) -> int:
        """The one response the opener of ``event`` got (waits for it)."""
        while not (got := self.rig.answers_for(event)):
            self.rig.wait(len(self.rig.responses) + 1, timeout=5)
        assert len(got) == 1, got
        return got[0]

    def alerts_written(self) -> list[Alert]:
        self.close()
        return self.got

    def close(self) -> None:
        """Stop the handle (workers see Shutdown), join them, then free it (a
        worker still in next() would use a freed handle), flush the alerts."""
        if self.rig.fan._fan is not None:
            self.rig.fan.stop()
            self.workers.stop(5)
            assert self.workers.alive() == 0, "a worker did not see the stop"
            self.rig.close()
        self.alerts.stop()


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    rules = RulesConfig(
        dirs=(str(REPO / "rules"),), local_dirs=(), compiled_dir=str(tmp_path / "compiled")
    )
    return replace(Config(), rules=rules)


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[Setup]]:
    """Setups a test made; each closed in teardown, also when the test failed."""
    out: list[Setup] = []
    yield out
    for s in out:
        s.close()


@pytest.fixture
def setup(tmp_path: Path, cfg: Config, made: list[Setup]) -> Setup:
    made.append(Setup(tmp_path, cfg))
    return made[-1]


def test_a_detection_is_denied_then_alerted_and_a_clean_file_allowed(setup: Setup) -> None:
    bad = setup.open_event("eicar.com", eicar())
    good = setup.open_event("notes.txt", b"nothing to see\n")
    assert setup.answer(bad) == native.DENY
    assert setup.answer(good) == native.ALLOW
    detections = [a for a in setup.alerts_written() if a.kind is Kind.DETECTED_DENIED]
    (alert,) = detections
    assert alert.fields[Field.PATH] == str(setup.tmp / "eicar.com")
    assert alert.fields[Field.DETECTION] == "EICAR_Test_File"


def test_an_exception_after_the_answer_costs_neither_the_alert_nor_the_worker(
    tmp_path: Path, cfg: Config, made: list[Setup], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = replace(cfg, onaccess=replace(cfg.onaccess, quarantine_on=(EventKind.OPEN,)))
    made.append(s := Setup(tmp_path, cfg))

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("injected after the answer")

    monkeypatch.setattr(s.store, "add", broken)
    first = s.open_event("eicar.com", eicar())
    assert s.answer(first) == native.DENY
    later = [s.open_event(f"clean{i}.txt", b"clean %d\n" % i) for i in range(4)]
    assert [s.answer(e) for e in later] == [native.ALLOW] * 4  # both workers still serve
    assert s.workers.alive() == 2
    alerts = s.alerts_written()
    kinds = [a.kind for a in alerts]
    assert kinds.count(Kind.DETECTED_DENIED) == 1, kinds
    assert any("injected after the answer" in a.message for a in alerts)


def test_an_exception_while_examining_is_answered_by_on_error_and_the_worker_lives(
    tmp_path: Path, cfg: Config, made: list[Setup], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = replace(cfg, policy=replace(cfg.policy, on_error=PerKind(Fallback.DENY, Fallback.DENY)))
    made.append(s := Setup(tmp_path, cfg))
    real = s.snap.detector.examine

    def flaky(fd: int, path: str, *a: object, **k: object) -> object:
        if path.endswith("boom.txt"):
            raise RuntimeError("injected while examining")
        return real(fd, path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(s.snap.detector, "examine", flaky)
    assert s.answer(s.open_event("boom.txt", b"x")) == native.DENY
    assert s.answer(s.open_event("fine.txt", b"y")) == native.ALLOW
    assert s.workers.counters.internal_errors == 1
    alerts = s.alerts_written()
    assert any(a.kind is Kind.SCAN_ERROR and "internal error" in a.message for a in alerts)


def test_a_hand_over_that_raises_still_releases_the_job(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: object) -> None:
        raise RuntimeError("injected in the hand-over")

    monkeypatch.setattr(setup.reporter, "hand_over", broken)
    assert setup.answer(setup.open_event("a.txt", b"a")) == native.ALLOW
    assert setup.answer(setup.open_event("b.txt", b"b")) == native.ALLOW
    # the answer comes before the hand-over that raises: wait for the count
    end = time.monotonic() + 5
    while setup.workers.counters.internal_errors < 2 and time.monotonic() < end:
        time.sleep(0.01)
    assert setup.workers.counters.internal_errors == 2
    assert setup.workers.alive() == 2


def test_a_swapped_snapshot_decides_the_next_job(setup: Setup, cfg: Config) -> None:
    assert setup.answer(setup.open_event("big.bin", bytes(4096))) == native.ALLOW
    strict = replace(
        cfg,
        scan=replace(cfg.scan, max_file_size=1024, oversize=Oversize.SKIP),
        policy=replace(cfg.policy, on_oversize=Fallback.DENY),
    )
    new: Snapshot = snapshot.build(strict, None)
    setup.rig.fan.configure(new.reader_settings((str(setup.tmp),)))
    setup.snap = new
    assert setup.answer(setup.open_event("big2.bin", bytes(4096))) == native.DENY
