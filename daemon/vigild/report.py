"""After the answer: quarantine by policy, then one alert per outcome.

The workers hand each answered event over as an ``Outcome``; everything
said about it is worded here, and nowhere else: the journal fields
(names from ``vigild.fields``), the message, the alert kind. ``hand_over``
never raises: if building the full record or quarantining fails, a
detection is still alerted with the fields known for certain, and the
failure is alerted too. A detection's alert is never lost to a bug.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from vigild.alert import Alert, Alerts, Kind
from vigild.config import EventKind
from vigild.detector import Finding
from vigild.fields import Field
from vigild.quarantine import QuarantineError, Store
from vigild.verdict import Action, Reason, Verdict

log = logging.getLogger(__name__)

Fields = dict[str, str | tuple[str, ...]]


@dataclass(frozen=True)
class Outcome:
    """One answered event, as the worker hands it over."""

    kind: EventKind
    path: str
    verdict: Verdict
    finding: Finding | None
    generation: int
    late: bool = False  # the deadline policy answered before the verdict
    who: Mapping[str, str] = field(default_factory=dict)  # the opener, for detections
    allowed_at_stop: bool = False  # the kernel allowed the opener as the daemon stopped


@dataclass
class Tally:
    """What the hand-over did; read by status without locks (ints, GIL-atomic)."""

    detections: int = 0
    quarantined: int = 0
    late: int = 0
    errors: int = 0
    report_failures: int = 0


# ------------------------------------------------------------------ records


def _known_for_certain(o: Outcome) -> Fields:
    """The fields of a detection that come straight from the outcome."""
    return {
        Field.PATH: o.path,
        Field.DETECTION: o.verdict.detail,
        Field.EVENT: o.kind.value,
        Field.REASON: o.verdict.reason.value,
        Field.GENERATION: f"{o.generation:016x}",
    }


def detection_fields(o: Outcome) -> Fields:
    """Every field of a detection that does not depend on what was done about it."""
    fields: Fields = {**_known_for_certain(o), **o.who}
    f = o.finding
    if f is None:
        return fields
    fields[Field.SHA256] = f.sha256
    fields[Field.SIZE] = str(f.size)
    if not f.matches:
        fields[Field.HASH_NAME] = o.verdict.detail
        return fields
    fields[Field.RULE] = tuple(m.rule for m in f.matches)
    fields[Field.RULE_FILE] = tuple(dict.fromkeys(m.namespace for m in f.matches))
    severity = [str(m.get("severity")) for m in f.matches if m.get("severity")]
    if severity:
        fields[Field.SEVERITY] = severity[0]
    return fields


def detection_alert(o: Outcome, fields: Fields, quarantined: str | None) -> Alert:
    """The alert for a detection, once what was done about it is known."""
    what = o.verdict.detail or o.verdict.reason.value
    written = o.kind is EventKind.CLOSE_WRITE
    if o.late:
        kind, action = Kind.DETECTED_LATE, "allowed by the deadline policy, then detected"
    elif o.allowed_at_stop:
        kind, action = Kind.DETECTED_LATE, "allowed as vigild stopped, then detected"
    elif quarantined:
        kind, action = (
            Kind.DETECTED_QUARANTINED,
            "quarantined" if written else "denied and quarantined",
        )
    else:
        kind, action = (
            Kind.DETECTED_DENIED,
            "detected, opens will be denied" if written else "denied",
        )
    if quarantined:
        action += f" as {quarantined}"
        fields[Field.QUARANTINE_ID] = quarantined
    allowed = o.late or o.allowed_at_stop
    fields[Field.ACTION] = "quarantine" if quarantined else ("allow" if allowed else "deny")
    return Alert(kind, f"{o.path}: {what} ({o.kind.value}): {action}", fields)


def inconclusive_alerts(o: Outcome) -> list[Alert]:
    """Alerts for an answer given without a verdict (deadline, error, timeout)."""
    out = []
    base: Fields = {Field.PATH: o.path, Field.EVENT: o.kind.value}
    if o.late:
        msg = f"{o.path}: answered by the deadline policy before the scan finished ({o.kind.value})"
        out.append(Alert(Kind.DEADLINE_PASSED, msg, base))
    v = o.verdict
    if v.reason in (Reason.SCAN_ERROR, Reason.SCAN_TIMEOUT):
        msg = f"{o.path}: {v.detail} ({o.kind.value}): {v.action.value}ed by policy"
        fields = {**base, Field.REASON: v.reason.value, Field.ACTION: v.action.value}
        out.append(Alert(Kind.SCAN_ERROR, msg, fields))
    return out


def protected_alert(o: Outcome) -> Alert:
    """The critical alert for feed content that matched a protected file (allowed)."""
    fields = detection_fields(o)
    fields[Field.ACTION] = "allow"
    msg = (
        f"{o.path}: feed content detects a protected file ({o.verdict.detail}); "
        "ALLOWED: feed content may not deny the files the host needs (update.protected). "
        "Check the file and the feed"
    )
    return Alert(Kind.PROTECTED_ALLOWED, msg, fields)


# ----------------------------------------------------------------- hand-over


class Reporter:
    """Quarantine and alert for answered events; one per daemon, any thread."""

    def __init__(self, alerts: Alerts, store: Store) -> None:
        self.alerts = alerts
        self.store = store
        self.tally = Tally()
        self._failed_seen: set[tuple[int, str]] = set()  # rule failures already reported

    def hand_over(self, o: Outcome, fd: int) -> None:
        """Act on ``o`` (``fd`` still open on the file); never raises."""
        try:
            self._report(o, fd)
        except Exception as e:  # the alert of a detection must still be written
            self.tally.report_failures += 1
            with contextlib.suppress(Exception):
                self._fallback(o, e)

    def _report(self, o: Outcome, fd: int) -> None:
        if o.late:
            self.tally.late += 1
        if o.finding is not None and o.finding.failed_rules:
            self._rule_failures(o)
        if o.verdict.reason is Reason.PROTECTED:
            self._protected(o)
            return
        if not o.verdict.malicious:
            for alert in inconclusive_alerts(o):
                self.alerts.emit(alert)
            if o.verdict.reason in (Reason.SCAN_ERROR, Reason.SCAN_TIMEOUT):
                self.tally.errors += 1
            return
        self.tally.detections += 1
        fields = detection_fields(o)
        quarantined = None
        if o.verdict.action is Action.QUARANTINE or o.late or o.allowed_at_stop:
            quarantined = self._quarantine(o, fd)
        self.alerts.emit(detection_alert(o, fields, quarantined))

    def _rule_failures(self, o: Outcome) -> None:
        """A rule's engine error, said once per rule set: the other rules still ran."""
        assert o.finding is not None
        for what in o.finding.failed_rules:
            key = (o.generation, what)
            if key in self._failed_seen:
                continue
            self._failed_seen.add(key)
            msg = f"{what} (first on {o.path}); isolated: every other rule still scans"
            self.alerts.emit(Alert(Kind.SCAN_ERROR, msg, {Field.PATH: o.path, Field.ERROR: what}))

    def _protected(self, o: Outcome) -> None:
        """Feed content matched a file the host needs: allowed, said loudly, once a generation."""
        key = (o.generation, o.path)
        if key in self._failed_seen:
            return
        self._failed_seen.add(key)
        self.alerts.emit(protected_alert(o))

    def _quarantine(self, o: Outcome, fd: int) -> str | None:
        rules = tuple(m.rule for m in o.finding.matches) if o.finding else ()
        v = o.verdict
        try:
            item = self.store.add(fd, o.path, v.reason.value, v.detail, rules)
        except QuarantineError as e:
            self.alerts.emit(Alert(Kind.QUARANTINE_FAILED, str(e), {Field.PATH: o.path}))
            return None
        if item is None:
            return None  # already moved in by another event for the same write, or moved away
        self.tally.quarantined += 1
        return item.id

    def _fallback(self, o: Outcome, error: Exception) -> None:
        """The report failed: say so, and never lose a detection's alert."""
        self.alerts.emit(
            Alert(Kind.LOG, f"{o.path}: reporting failed: {error!r}", {Field.PATH: o.path}, 3)
        )
        if o.verdict.malicious:
            self.alerts.emit(detection_alert(o, _known_for_certain(o), None))
