"""Alerts: journal fields, stderr fallback, never lost, floods summarised."""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path

from vigild import journal
from vigild.alert import Alert, Alerts, JournalChannel, Kind, stderr_sink
from vigild.spool import Spool


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_journal_fields_repeat_multi_valued_ones() -> None:
    a = Alert(Kind.DETECTED_DENIED, "/x: bad", {"VIGILD_PATH": "/x", "VIGILD_RULE": ("A", "B")})
    assert a.journal_fields() == [
        ("MESSAGE", "/x: bad"),
        ("PRIORITY", "2"),
        ("SYSLOG_IDENTIFIER", "vigild"),
        ("MESSAGE_ID", "0781ca6752fe444584f53ea7cd5bf82c"),
        ("VIGILD_PATH", "/x"),
        ("VIGILD_RULE", "A"),
        ("VIGILD_RULE", "B"),
    ]


def test_native_protocol_encoding() -> None:
    data = journal.encode(
        [("MESSAGE", "two\nlines"), ("VIGILD_PATH", "/tmp/\udcff.php"), ("X", "y")]
    )
    assert (
        data
        == (
            b"MESSAGE\n" + struct.pack("<Q", 9) + b"two\nlines\n"
            b"VIGILD_PATH=/tmp/\xff.php\n"  # a file name that is not UTF-8 travels as it is
            b"X=y\n"
        )
    )


def test_every_kind_has_its_own_message_id() -> None:
    ids = [k.message_id for k in Kind if k is not Kind.LOG]
    assert len(set(ids)) == len(ids) == len(Kind) - 1
    assert all(len(i) == 32 and int(i, 16) for i in ids)


def test_stderr_lines_carry_the_priority_prefix() -> None:
    out = io.StringIO()
    stderr_sink(out)(Alert(Kind.SCAN_ERROR, "/y: timed out", {"VIGILD_PATH": "/y"}))
    assert out.getvalue() == "<4>vigild: /y: timed out [path=/y]\n"


def _channel(path: Path, spool: Spool, fell: list[Alert], journal: bool = False) -> JournalChannel:
    return JournalChannel(spool, str(path), fell.append, stderr_is_journal=journal)


def test_with_no_journald_and_our_own_stderr_alerts_go_to_stderr(tmp_path: Path) -> None:
    fell: list[Alert] = []
    channel = _channel(tmp_path / "socket", Spool(None, 1 << 20), fell)
    a = Alert(Kind.STARTED, "hello", {"VIGILD_MODE": "block"})
    channel(a)  # no socket at all (libsystemd would have dropped it silently)
    assert fell == [a] and channel.spool.pending == 0


def test_under_systemd_a_missing_journald_spools_instead_of_printing(tmp_path: Path) -> None:
    fell: list[Alert] = []
    channel = _channel(tmp_path / "socket", Spool(None, 1 << 20), fell, journal=True)
    channel(Alert(Kind.DETECTED_DENIED, "/x: bad"))
    assert fell == [] and channel.spool.pending == 1


def test_a_journald_that_does_not_read_gets_everything_later_in_order(tmp_path: Path) -> None:
    path = tmp_path / "socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    fell: list[Alert] = []
    channel = _channel(path, Spool(str(tmp_path / "spool"), 64 << 20), fell)
    try:
        start = time.monotonic()
        for i in range(3000):  # the socket buffer fills: sends fail at once
            channel(Alert(Kind.DETECTED_DENIED, f"det {i}", {"VIGILD_PATH": f"/f{i}"}))
        assert time.monotonic() - start < 10
        assert channel.busy > 0 and channel.spool.pending > 0 and fell == []
        got: list[bytes] = []
        server.settimeout(0.5)

        def journald() -> None:  # reads again, at its own pace
            with contextlib.suppress(OSError):
                while True:
                    got.append(server.recv(1 << 20))

        reader = threading.Thread(target=journald)
        reader.start()
        while channel.spool.pending:
            channel.tick()
        reader.join()
        messages = [m for d in got for m in re.findall(rb"MESSAGE=(det \d+)\n", d)]
        assert messages == [b"det %d" % i for i in range(3000)]  # all, in order
        late = [d for d in got if b"VIGILD_RAISED_AT=" in d]
        assert len(late) == channel.spool.counters.spooled > 0
    finally:
        server.close()


def test_an_entry_too_large_for_a_datagram_travels_in_a_memfd(tmp_path: Path) -> None:
    path = tmp_path / "socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    try:
        huge = "r" * (4 << 20)
        journal.send([("MESSAGE", "big"), ("VIGILD_RULE", huge)], str(path))
        _data, anc, _flags, _addr = server.recvmsg(16, socket.CMSG_SPACE(4))
        ((level, kind, raw),) = anc
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
        fd = struct.unpack("i", raw[:4])[0]
        try:  # journald maps the memfd from offset 0
            payload = os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)
        assert payload.startswith(b"MESSAGE=big\n") and len(payload) > 4 << 20
    finally:
        server.close()


def test_a_failing_sink_loses_nothing(capsys: object) -> None:
    def broken(_: Alert) -> None:
        raise RuntimeError("bug")

    alerts = Alerts(broken)
    alerts.start()
    alerts.emit(Alert(Kind.DETECTED_DENIED, "/z: bad"))
    alerts.stop()
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "<2>vigild: /z: bad" in err
    assert "alert sink failed: RuntimeError('bug')" in err
    assert alerts.sink_errors == 1


def test_floods_are_summarised_but_detections_never_suppressed() -> None:
    got: list[Alert] = []
    clock = Clock()
    alerts = Alerts(got.append, clock=clock)
    for i in range(100):
        alerts._write(Alert(Kind.SCAN_ERROR, f"err {i}"))
        alerts._write(Alert(Kind.DETECTED_DENIED, f"det {i}"))
    assert sum(a.kind is Kind.SCAN_ERROR for a in got) == Alerts.BURST
    assert sum(a.kind is Kind.DETECTED_DENIED for a in got) == 100
    clock.t += Alerts.WINDOW
    alerts._roll_window()
    (summary,) = [a for a in got if a.kind is Kind.SUPPRESSED]
    assert summary.fields == {"VIGILD_SUPPRESSED_KIND": "SCAN_ERROR", "VIGILD_SUPPRESSED": "80"}
    assert "80 more scan error alerts suppressed" in summary.message
    alerts._write(Alert(Kind.SCAN_ERROR, "next window"))
    assert got[-1].message == "next window"


def test_a_full_queue_drops_and_counts_without_blocking_but_keeps_detections() -> None:
    got: list[Alert] = []
    alerts = Alerts(got.append, maxsize=2)  # not started: nothing drains
    assert [alerts.emit(Alert(Kind.LOG, str(i))) for i in range(4)] == [True, True, False, False]
    assert alerts.dropped == 2
    assert all(alerts.emit(Alert(Kind.DETECTED_DENIED, f"/d{i}: bad")) for i in range(50))
    assert alerts.dropped == 2
    alerts.start()
    alerts.stop()
    assert [a.message for a in got if a.kind is Kind.DETECTED_DENIED] == [
        f"/d{i}: bad" for i in range(50)
    ]


def test_stderr_sink_writes_one_line_whatever_the_file_is_called() -> None:
    """With no journald, a file name must not forge log lines or fields."""
    out = io.StringIO()
    path = "/srv/up/x\nMESSAGE_ID=0781ca6752fe444584f53ea7cd5bf82c\nVIGILD_ACTION=allow \x1b[2K"
    stderr_sink(out)(
        Alert(
            Kind.DETECTED_DENIED,
            f"{path}: malicious, denied",
            {"VIGILD_PATH": path, "VIGILD_ACTION": "deny"},
        )
    )
    lines = out.getvalue().splitlines()
    assert lines == [
        "<2>vigild: /srv/up/x\\nMESSAGE_ID=0781ca6752fe444584f53ea7cd5bf82c\\nVIGILD_ACTION=allow"
        ' \\x1b[2K: malicious, denied [path="/srv/up/x\\nMESSAGE_ID=0781ca6752fe444584f53ea7cd5bf82c'
        '\\nVIGILD_ACTION=allow \\x1b[2K" action=deny]'
    ]
