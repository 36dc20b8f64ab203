"""Alerts: journal fields, stderr fallback, never lost, floods summarised."""

from __future__ import annotations

import io
import socket
import struct
import time
from pathlib import Path

from vigild import journal
from vigild.alert import Alert, Alerts, Kind, journal_sink, stderr_sink


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


def test_journal_sink_sends_falls_back_and_never_blocks(tmp_path: Path) -> None:
    fell: list[Alert] = []
    busy: list[Alert] = []
    path = tmp_path / "socket"
    sink = journal_sink(fell.append, busy.append, socket=str(path))
    a = Alert(Kind.STARTED, "hello", {"VIGILD_MODE": "block"})
    sink(a)  # no socket at all (libsystemd would have dropped it silently)
    assert fell == [a]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    try:
        sink(a)
        got = server.recv(4096)
        assert b"MESSAGE=hello\n" in got and b"VIGILD_MODE=block\n" in got
        assert b"MESSAGE_ID=2c0d2ccae55e41e2aa27c75d6ed363eb\n" in got
        # a journald that does not read: the buffer fills, the send fails at once
        start = time.monotonic()
        for _ in range(5000):
            sink(Alert(Kind.LOG, "x" * 1000))
        assert time.monotonic() - start < 5
        assert busy, "a full socket must be reported, not waited on"
    finally:
        server.close()
    sink(a)  # bound but closed: refused, so stderr
    assert fell == [a, a]


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


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    alerts = Alerts(lambda a: None, maxsize=2)  # not started: nothing drains
    assert [alerts.emit(Alert(Kind.LOG, str(i))) for i in range(4)] == [True, True, False, False]
    assert alerts.dropped == 2


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
