"""``vigild alerts``: review vigild's alerts from the journal.

Reads the same entries ``journalctl MESSAGE_ID=...`` shows: detections by
default (denied, quarantined, detected late), every vigild alert kind
with ``--all``. Matches are done by journald (MESSAGE_ID, VIGILD_RULE);
``--path`` keeps entries at or below a path. Times are the journal's.

A field that is not UTF-8 (a file name) comes from the journal as bytes;
it is held like any other name (textform), shown escaped in the table and
in the lossless form (``path`` + ``path_b64``) in JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any

from vigild import textform
from vigild.alert import DETECTIONS, Kind
from vigild.fields import Field

_BY_ID = {k.message_id: k for k in Kind if k.message_id}
_RELATIVE = re.compile(r"^\s*-?\s*(\d+)\s*(s|sec|m|min|h|hour|hours|d|day|days)?\s*(ago)?\s*$")
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "hours": 3600,
          "d": 86400, "day": 86400, "days": 86400, None: 1}  # fmt: skip


class WhenError(ValueError):
    """A --since/--until value vigild cannot read."""


def parse_when(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """A point in time: ISO date/time, "now", "today", "yesterday", "-1h", "10 min ago", "@EPOCH"."""
    now = now or dt.datetime.now().astimezone()
    t = text.strip().lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    named = {"now": now, "today": midnight, "yesterday": midnight - dt.timedelta(days=1),
             "tomorrow": midnight + dt.timedelta(days=1)}  # fmt: skip
    if t in named:
        return named[t]
    if t.startswith("@") and t[1:].replace(".", "", 1).isdigit():
        return dt.datetime.fromtimestamp(float(t[1:])).astimezone()
    m = _RELATIVE.match(t)
    if m and (t.startswith("-") or m.group(3)):
        return now - dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise WhenError(
            f"{text!r}: expected e.g. 2026-11-22, '2026-11-22 10:30', today, yesterday, -1h, '10 min ago'"
        ) from None
    return when if when.tzinfo else when.astimezone()


@dataclass(frozen=True)
class AlertEntry:
    time: str
    kind: str
    message: str
    path: str
    rules: list[str]
    hash_name: str
    action: str
    event: str
    sha256: str
    pid: int | None
    exe: str
    comm: str
    uid: int | None
    unit: str
    container: str
    quarantine_id: str
    generation: str
    priority: int | None


def _text(value: Any) -> str:
    """A field value as text; bytes (not UTF-8) decoded losslessly, not as "b'...'"."""
    if isinstance(value, bytes | bytearray):
        return textform.from_bytes(value)
    return str(value)


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [textform.from_bytes(value)]  # journalctl -o json: one value as byte list
    return [_text(v) for v in value] if isinstance(value, list) else [_text(value)]


def _one(entry: dict[str, Any], key: str) -> str:
    values = _list(entry.get(key))
    return values[0] if values else ""


def _int(entry: dict[str, Any], key: str) -> int | None:
    v = _one(entry, key)
    return int(v) if v.isdigit() else None


def to_alert(entry: dict[str, Any]) -> AlertEntry:
    mid = entry.get("MESSAGE_ID")
    kind = _BY_ID.get(getattr(mid, "hex", str(mid or "")))
    when = entry.get("__REALTIME_TIMESTAMP")
    return AlertEntry(
        time=when.astimezone().isoformat(timespec="seconds")
        if isinstance(when, dt.datetime)
        else "",
        kind=kind.name.lower() if kind else "",
        message=_one(entry, "MESSAGE"),
        path=_one(entry, Field.PATH),
        rules=_list(entry.get(Field.RULE)),
        hash_name=_one(entry, Field.HASH_NAME),
        action=_one(entry, Field.ACTION),
        event=_one(entry, Field.EVENT),
        sha256=_one(entry, Field.SHA256),
        pid=_int(entry, Field.PID),
        exe=_one(entry, Field.EXE),
        comm=_one(entry, Field.COMM),
        uid=_int(entry, Field.UID),
        unit=_one(entry, Field.UNIT),
        container=_one(entry, Field.CONTAINER),
        quarantine_id=_one(entry, Field.QUARANTINE_ID),
        generation=_one(entry, Field.GENERATION),
        priority=_int(entry, "PRIORITY"),
    )


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/") or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Query:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    rule: str | None = None
    path: str | None = None
    all_kinds: bool = False


def _reader(q: Query) -> Any:
    from systemd import journal

    reader = journal.Reader()
    kinds = [k for k in Kind if k.message_id] if q.all_kinds else list(DETECTIONS)
    for kind in kinds:
        reader.add_match(MESSAGE_ID=kind.message_id)
    if q.rule:
        reader.add_match(**{Field.RULE: q.rule})
    if q.since:
        reader.seek_realtime(q.since)
    return reader


def entries(q: Query, follow: bool = False) -> Iterator[AlertEntry]:
    """Matching alerts in time order; with ``follow``, then new ones as they come."""
    from systemd import journal

    reader = _reader(q)
    while True:
        for entry in reader:
            when = entry.get("__REALTIME_TIMESTAMP")
            if q.until and isinstance(when, dt.datetime) and when > q.until:
                return
            a = to_alert(entry)
            if not q.path or _under(a.path, q.path):
                yield a
        if not follow:
            return
        reader.wait(1.0)
        if reader.process() == journal.INVALIDATE:
            continue


def _process(a: AlertEntry) -> str:
    who = f"{a.comm or '?'}[{a.pid}]" if a.pid else ""
    where = (a.container and f"container {a.container[:12]}") or a.unit
    return " ".join(x for x in (who, where) if x)


def print_table(alerts: Iterator[AlertEntry], out: IO[str] = sys.stdout) -> int:
    """A human table, every field escaped; returns how many alerts were printed."""
    n = 0
    header = f"{'TIME':<25} {'ACTION':<11} {'DETECTION':<32} {'PROCESS':<24} PATH"
    esc = textform.escape
    for a in alerts:
        if not n:
            print(header, file=out)
        what = esc(", ".join(a.rules) or a.hash_name or a.kind)
        action = esc(a.action or a.kind.replace("detected_", ""))
        print(
            f"{a.time:<25} {action:<11} {what[:32]:<32} {esc(_process(a))[:24]:<24} {esc(a.path)}",
            file=out,
            flush=True,
        )
        n += 1
    if not n:
        print("no alerts", file=out)
    return n


def print_json(alerts: Iterator[AlertEntry], out: IO[str] = sys.stdout) -> int:
    n = 0
    for a in alerts:
        print(json.dumps(textform.json_record(asdict(a))), file=out, flush=True)
        n += 1
    return n
