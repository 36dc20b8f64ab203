"""After the answer: the alert record, built in one place from one field table."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from support import REPO
from vigild.alert import Alert, Alerts, Kind
from vigild.config import EventKind
from vigild.detector import Finding
from vigild.fields import DETECTION_FIELDS, MEANING, Field
from vigild.quarantine import Store
from vigild.report import Outcome, Reporter, detection_fields
from vigild.scanner import RuleMatch
from vigild.verdict import Action, Reason, Verdict

MATCH = RuleMatch("Webshell_X", "/rules/20-webshells.yar", (), (("severity", "high"),), ("$a",))


def _outcome(path: str, action: Action = Action.DENY, late: bool = False) -> Outcome:
    verdict = Verdict(action, Reason.RULE_MATCH, "Webshell_X")
    finding = Finding(path, 5, "ab" * 32, verdict, (MATCH,), True)
    who = {Field.PID: "7", Field.EXE: "/usr/bin/php", Field.COMM: "php", Field.UID: "33"}
    return Outcome(EventKind.OPEN, path, verdict, finding, 0xFF, late, who)


class Captured:
    """A Reporter's alerts, written by the real alert thread into a list."""

    def __init__(self) -> None:
        self.got: list[Alert] = []
        self.alerts = Alerts(sink=self.got.append)
        self.alerts.start()

    def all(self) -> list[Alert]:
        self.alerts.stop()
        return self.got


@pytest.fixture
def captured() -> Captured:
    return Captured()


def _file(tmp_path: Path, data: bytes = b"<?php evil();") -> tuple[str, int]:
    path = tmp_path / "shell.php"
    path.write_bytes(data)
    return str(path), os.open(path, os.O_RDONLY)


def test_a_detection_carries_every_field_of_the_table(tmp_path: Path, captured: Captured) -> None:
    path, fd = _file(tmp_path)
    reporter = Reporter(captured.alerts, Store(str(tmp_path / "q")))
    reporter.hand_over(_outcome(path), fd)
    os.close(fd)
    (alert,) = captured.all()
    assert alert.kind is Kind.DETECTED_DENIED
    assert alert.message == f"{path}: Webshell_X (open): denied"
    missing = set(DETECTION_FIELDS) - set(alert.fields)
    # a rule match names no hash entry; a denial has no quarantine item;
    # this process sits in no unit or container
    assert missing == {Field.HASH_NAME, Field.QUARANTINE_ID, Field.UNIT, Field.CONTAINER}
    assert alert.fields[Field.SEVERITY] == "high"
    assert alert.fields[Field.ACTION] == "deny"
    assert reporter.tally.detections == 1


def test_quarantine_by_policy_names_the_item(tmp_path: Path, captured: Captured) -> None:
    path, fd = _file(tmp_path)
    store = Store(str(tmp_path / "q"))
    store.prepare()
    reporter = Reporter(captured.alerts, store)
    reporter.hand_over(_outcome(path, Action.QUARANTINE), fd)
    os.close(fd)
    (alert,) = captured.all()
    assert alert.kind is Kind.DETECTED_QUARANTINED
    item = alert.fields[Field.QUARANTINE_ID]
    assert alert.fields[Field.ACTION] == "quarantine"
    assert alert.message.endswith(f"denied and quarantined as {item}")
    assert not Path(path).exists()


def test_a_detection_the_kernel_allowed_at_stop_is_said_allowed_and_quarantined(
    tmp_path: Path, captured: Captured
) -> None:
    """Found by review: the opener the kernel let through as vigild stopped got a
    detection worded "denied", action deny, and no quarantine."""
    path, fd = _file(tmp_path)
    store = Store(str(tmp_path / "q"))
    store.prepare()
    reporter = Reporter(captured.alerts, store)
    o = _outcome(path)
    reporter.hand_over(
        Outcome(o.kind, o.path, o.verdict, o.finding, 0xFF, allowed_at_stop=True), fd
    )
    os.close(fd)
    (alert,) = captured.all()
    assert alert.kind is Kind.DETECTED_LATE
    assert "allowed as vigild stopped, then detected" in alert.message
    assert alert.fields[Field.ACTION] == "quarantine"
    assert not Path(path).exists()


def test_an_exception_after_the_answer_never_loses_the_detection_alert(
    tmp_path: Path, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, fd = _file(tmp_path)
    store = Store(str(tmp_path / "q"))

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(store, "add", broken)
    reporter = Reporter(captured.alerts, store)
    reporter.hand_over(_outcome(path, Action.QUARANTINE), fd)  # must not raise
    os.close(fd)
    alerts = captured.all()
    kinds = [a.kind for a in alerts]
    assert Kind.DETECTED_DENIED in kinds, kinds
    detection = alerts[kinds.index(Kind.DETECTED_DENIED)]
    assert detection.fields[Field.PATH] == path
    assert detection.fields[Field.DETECTION] == "Webshell_X"
    assert any("reporting failed: RuntimeError('injected')" in a.message for a in alerts)
    assert reporter.tally.report_failures == 1


def test_a_known_bad_hash_names_the_list_entry() -> None:
    verdict = Verdict(Action.DENY, Reason.KNOWN_BAD_HASH, "Win.Trojan.X")
    finding = Finding("/x", 3, "cd" * 32, verdict)
    fields = detection_fields(Outcome(EventKind.EXEC, "/x", verdict, finding, 1))
    assert fields[Field.HASH_NAME] == "Win.Trojan.X"
    assert Field.RULE not in fields


# ---- one table: code, catalog, man page and README read the same names ----


def test_every_field_has_a_meaning() -> None:
    assert set(MEANING) == set(Field)


def test_no_module_spells_a_field_name_itself() -> None:
    spelled = re.compile(r"[\"']VIGILD_[A-Z]")
    offenders = [
        p.name
        for p in (REPO / "daemon" / "vigild").glob("*.py")
        if p.name != "fields.py" and spelled.search(p.read_text())
    ]
    assert offenders == []


def test_the_catalog_uses_only_fields_of_the_table() -> None:
    text = (REPO / "packaging" / "vigild.catalog").read_text()
    used = set(re.findall(r"@(VIGILD_[A-Z0-9_]+)@", text))
    assert used and used <= {f.value for f in Field}, used - {f.value for f in Field}


def test_the_catalog_has_an_entry_for_every_kind_with_a_message_id() -> None:
    text = (REPO / "packaging" / "vigild.catalog").read_text()
    ids = set(re.findall(r"^-- ([0-9a-f]{32})$", text, re.M))
    assert ids == {k.message_id for k in Kind if k.message_id}


def _roff(text: str) -> str:
    return text.replace("-", "\\-").replace("`", "")


def test_the_man_page_lists_the_detection_fields_as_the_table_says() -> None:
    text = (REPO / "packaging" / "man" / "vigild.8").read_text()
    block = text.split("FIELDS-BEGIN", 1)[1].split("\n", 1)[1].split('.\\" FIELDS-END', 1)[0]
    expected = "".join(f".TP\n.B {f.value}\n{_roff(MEANING[f])}.\n" for f in DETECTION_FIELDS)
    assert block == expected


def test_the_readme_names_every_detection_field() -> None:
    text = (REPO / "README.md").read_text()
    assert [f.value for f in DETECTION_FIELDS if f.value not in text] == []
