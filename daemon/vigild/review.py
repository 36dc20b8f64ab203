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
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from vigild import textform
from vigild.alert import DETECTIONS, Kind
from vigild.fields import Field

_BY_ID = {k.message_id: k for k in Kind if k.message_id}

# systemd.time(7) time span units; "M" is a month, "m" a minute
_MONTH, _YEAR = 2_629_800.0, 31_557_600.0
_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
    "M": _MONTH, "month": _MONTH, "months": _MONTH,
    "y": _YEAR, "year": _YEAR, "years": _YEAR, "": 1.0,
}  # fmt: skip
_SPAN_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_EXAMPLES = "e.g. 2026-11-22, '2026-11-22 10:30', 10:30, today, yesterday, -1h, +1h, '10 min ago'"


class WhenError(ValueError):
    """A --since/--until value vigild cannot read."""


def _span(text: str) -> dt.timedelta | None:
    """A systemd time span ("1h", "1h 30min", "2 days", "90"): None if it is not one."""
    pos, seconds = 0, 0.0
    text = text.strip()
    while pos < len(text):
        m = _SPAN_PART.match(text, pos)
        if not m:
            return None
        unit = m.group(2)
        factor = _UNITS.get(unit, _UNITS.get(unit.lower()))
        if factor is None:
            return None
        seconds += float(m.group(1)) * factor
        pos = m.end()
    return dt.timedelta(seconds=seconds) if text else None


def parse_when(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """A point in time, in journalctl's forms (systemd.time(7)): "now", "today",
    "yesterday", "tomorrow", "-1h", "+1h", "10 min ago", "10:30", "@EPOCH",
    "2026-11-22", "2026-11-22 10:00[:00]" and ISO 8601 with an offset."""
    local = now is None  # a naive date and time is local time, its own offset (DST)
    now = now or dt.datetime.now().astimezone()
    t = text.strip()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    named = {"now": now, "today": midnight, "yesterday": midnight - dt.timedelta(days=1),
             "tomorrow": midnight + dt.timedelta(days=1)}  # fmt: skip
    if t.lower() in named:
        return named[t.lower()]
    if t.startswith("@") and t[1:].replace(".", "", 1).isdigit():
        return dt.datetime.fromtimestamp(float(t[1:]), dt.UTC).astimezone(now.tzinfo)
    span = None
    if t[:1] in "-+" and t:
        span = _span(t[1:])
        if span is not None:
            return now - span if t[0] == "-" else now + span
    if t.lower().endswith(" ago"):
        span = _span(t[:-4])
        if span is not None:
            return now - span
    clock = _CLOCK.match(t)
    if clock:
        h, m, sec = (int(g or 0) for g in clock.groups())
        if h < 24 and m < 60 and sec < 60:
            return midnight.replace(hour=h, minute=m, second=sec)
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        raise WhenError(f"{text!r}: expected {_EXAMPLES}") from None
    if when.tzinfo:
        return when
    return when.astimezone() if local else when.replace(tzinfo=now.tzinfo)


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


# ------------------------------------------------------------ journal access

JOURNAL_DIRS = ("/var/log/journal", "/run/log/journal")
_JOIN = "join the systemd-journal group (adm on Debian and Ubuntu), or run as root"


def _system_journals(dirs: tuple[str, ...]) -> tuple[list[str], str]:
    """The system journal files under ``dirs``, and a directory we may not list, if any."""
    found: list[str] = []
    denied = ""
    for top in dirs:
        try:
            machines = [os.path.join(top, m) for m in os.listdir(top)]
        except PermissionError:
            denied = denied or top
            continue
        except OSError:
            continue
        for d in machines:
            try:
                names = os.listdir(d)
            except PermissionError:
                denied = denied or d
                continue
            except OSError:
                continue
            found += [os.path.join(d, n) for n in names if n.startswith("system")]
    return found, denied


def journal_problem(dirs: tuple[str, ...] = JOURNAL_DIRS) -> str | None:
    """Why the system journal cannot be read (one line), or None when it can.

    journald hands a reader without the right only that user's own
    journal, with no error: "no alerts" would then be a lie.
    """
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        return "cannot read the journal: python3-systemd is not installed"
    files, denied = _system_journals(dirs)
    if any(os.access(f, os.R_OK) for f in files):
        return None
    if files or denied:
        where = files[0] if files else denied
        return f"cannot read the system journal ({where}): permission denied; {_JOIN}"
    return f"no system journal in {' or '.join(dirs)} (is systemd-journald running?)"


# ------------------------------------------------------------------- summary


@dataclass
class Summary:
    """Counts over a period: the view an admin wants on Monday."""

    alerts: int = 0
    first: str = ""
    last: str = ""
    rules: Counter[str] = field(default_factory=Counter)
    directories: Counter[str] = field(default_factory=Counter)
    origins: Counter[str] = field(default_factory=Counter)


OUTSIDE = "(outside the watched paths)"
UNKNOWN = "(unknown)"


def top_directory(path: str, watch: tuple[str, ...]) -> str:
    """The directory right under the (deepest) watched path holding ``path``:
    /home/alice for /home/alice/www/x.php under /home; the watched path for a
    file directly in it."""
    holding = [w.rstrip("/") or "/" for w in watch if _under(path, w)]
    if not holding:
        return OUTSIDE
    w = max(holding, key=len)
    rest = path[len(w) :].lstrip("/")
    if "/" not in rest:
        return w
    return (w if w != "/" else "") + "/" + rest.split("/", 1)[0]


def summarize(alerts: Iterable[AlertEntry], watch: tuple[str, ...]) -> Summary:
    s = Summary()
    for a in alerts:
        s.alerts += 1
        s.first = s.first or a.time
        s.last = a.time
        s.rules.update(a.rules or [a.hash_name or a.kind])
        s.directories[top_directory(a.path, watch) if a.path else UNKNOWN] += 1
        origin = (a.container and f"container {a.container[:12]}") or a.unit or UNKNOWN
        s.origins[origin] += 1
    return s


def _ranked(c: Counter[str]) -> list[tuple[str, int]]:
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))


def print_summary(s: Summary, out: IO[str] = sys.stdout) -> None:
    """The counts as a few short tables, every name escaped."""
    if not s.alerts:
        print("no alerts", file=out)
        return
    lines = [f"{s.alerts} alerts from {s.first} to {s.last}"]
    for title, counter in (
        ("By rule", s.rules),
        ("By directory", s.directories),
        ("By unit or container", s.origins),
    ):
        lines += ["", f"{title}:"]
        lines += [f"{n:>8}  {textform.escape(name)}" for name, n in _ranked(counter)]
    print("\n".join(lines), file=out, flush=True)


def print_summary_json(s: Summary, out: IO[str] = sys.stdout) -> None:
    def table(c: Counter[str]) -> list[dict[str, Any]]:
        return [textform.json_record({"name": k, "count": n}) for k, n in _ranked(c)]

    record = {
        "alerts": s.alerts,
        "first": s.first,
        "last": s.last,
        "rules": table(s.rules),
        "directories": table(s.directories),
        "origins": table(s.origins),
    }
    print(json.dumps(record), file=out, flush=True)
