"""The ``VIGILD_*`` journal fields: one table, read by every writer and reader.

Alerts are built with these names (``vigild.report``), ``vigild alerts``
reads them back (``vigild.review``), the man page lists them and the
message catalog substitutes them (``@VIGILD_PATH@``); tests fail when
either document drifts from this table. A name never changes once released:
admins have ``journalctl VIGILD_RULE=...`` in their scripts.
"""

from __future__ import annotations

from enum import StrEnum


class Field(StrEnum):
    """A journal field vigild writes; the value is the field's name."""

    PATH = "VIGILD_PATH"
    DETECTION = "VIGILD_DETECTION"
    RULE = "VIGILD_RULE"
    RULE_FILE = "VIGILD_RULE_FILE"
    SEVERITY = "VIGILD_SEVERITY"
    HASH_NAME = "VIGILD_HASH_NAME"
    SHA256 = "VIGILD_SHA256"
    SIZE = "VIGILD_SIZE"
    ACTION = "VIGILD_ACTION"
    EVENT = "VIGILD_EVENT"
    REASON = "VIGILD_REASON"
    PID = "VIGILD_PID"
    EXE = "VIGILD_EXE"
    COMM = "VIGILD_COMM"
    UID = "VIGILD_UID"
    UNIT = "VIGILD_UNIT"
    CONTAINER = "VIGILD_CONTAINER"
    GENERATION = "VIGILD_GENERATION"
    QUARANTINE_ID = "VIGILD_QUARANTINE_ID"
    RULES = "VIGILD_RULES"
    MODE = "VIGILD_MODE"
    MODE_REASON = "VIGILD_MODE_REASON"
    WATCH = "VIGILD_WATCH"
    ERROR = "VIGILD_ERROR"
    OVERFLOW = "VIGILD_OVERFLOW"
    COUNT = "VIGILD_COUNT"
    SUPPRESSED = "VIGILD_SUPPRESSED"
    SUPPRESSED_KIND = "VIGILD_SUPPRESSED_KIND"
    RAISED_AT = "VIGILD_RAISED_AT"
    DETECTIONS_LOST = "VIGILD_DETECTIONS_LOST"
    FEED = "VIGILD_FEED"
    FEED_URL = "VIGILD_FEED_URL"
    FEED_KEY = "VIGILD_FEED_KEY"
    FEED_INSECURE = "VIGILD_FEED_INSECURE"
    OLD_CONTENT = "VIGILD_OLD_CONTENT"
    NEW_CONTENT = "VIGILD_NEW_CONTENT"
    FEED_GENERATION = "VIGILD_FEED_GENERATION"
    FEED_SERIAL = "VIGILD_FEED_SERIAL"
    FEED_EXPIRES = "VIGILD_FEED_EXPIRES"
    HASH_ENTRIES = "VIGILD_HASH_ENTRIES"
    CHANGES = "VIGILD_CHANGES"


# What each field holds, as the man page and README say it.
MEANING: dict[Field, str] = {
    Field.PATH: "the file, as the kernel named it when the event arrived",
    Field.DETECTION: "what was found: the rule names, or the hash list's entry name",
    Field.RULE: "a matching rule (repeated when several rules match)",
    Field.RULE_FILE: "the rule file of a matching rule (repeated)",
    Field.SEVERITY: "the severity meta value of the first matching rule that has one",
    Field.HASH_NAME: "the hash list entry's name, for a known-bad hash",
    Field.SHA256: "the file's SHA-256",
    Field.SIZE: "the file's size in bytes",
    Field.ACTION: "what vigild did: deny, quarantine or allow",
    Field.EVENT: "the access: open, exec or close-write",
    Field.REASON: "why: rule-match, known-bad-hash, scan-error, scan-timeout, too-large",
    Field.PID: "the process that opened or wrote the file",
    Field.EXE: "that process's executable",
    Field.COMM: "that process's command name",
    Field.UID: "that process's real user id",
    Field.UNIT: "the systemd unit of that process, from its cgroup",
    Field.CONTAINER: "the container of that process, from its cgroup",
    Field.GENERATION: "the rules generation that decided",
    Field.QUARANTINE_ID: "the quarantine item, for `vigild quarantine restore`",
    Field.RULES: "how many rules are loaded",
    Field.MODE: "block or detect",
    Field.MODE_REASON: "why the daemon runs in detect mode",
    Field.WATCH: "a watched path (repeated)",
    Field.ERROR: "what failed, one line naming the file",
    Field.OVERFLOW: "what lost work: queue_full, notify_dropped, overflows, dropped, unopened",
    Field.COUNT: "how many events that overflow, or a stop, left without a verdict",
    Field.SUPPRESSED: "how many alerts of one kind the flood limit held back",
    Field.SUPPRESSED_KIND: "the kind of those alerts",
    Field.RAISED_AT: "when an alert delivered late from the spool was raised (journald stamps the delivery)",
    Field.DETECTIONS_LOST: "how many of the alerts the spool lost were detections",
    Field.FEED: "the [[update.feed]] name an update entry is about (repeated for a rollback)",
    Field.FEED_URL: "that feed's URL",
    Field.FEED_KEY: 'the fingerprint of the key that signed the feed, or "insecure"',
    Field.FEED_INSECURE: '"yes" when the feed is configured insecure = true (no signature)',
    Field.OLD_CONTENT: "SHA-256 of the feed's download that was live before (empty: none)",
    Field.NEW_CONTENT: "SHA-256 of the feed's download that is live now",
    Field.FEED_GENERATION: "the feed generation (update/generations/N) live after the entry",
    Field.FEED_SERIAL: "the serial of the feed's signed manifest that went live",
    Field.FEED_EXPIRES: "when that manifest expires (UTC): after it the feed is stale",
    Field.HASH_ENTRIES: "how many hash entries the feed's content holds",
    Field.CHANGES: "what an update changed: rule files added, changed, removed; counts before and after",
}

# The fields of a detection, in the order the README and man page list them.
DETECTION_FIELDS: tuple[Field, ...] = (
    Field.PATH,
    Field.DETECTION,
    Field.RULE,
    Field.RULE_FILE,
    Field.SEVERITY,
    Field.HASH_NAME,
    Field.SHA256,
    Field.SIZE,
    Field.ACTION,
    Field.EVENT,
    Field.REASON,
    Field.PID,
    Field.EXE,
    Field.COMM,
    Field.UID,
    Field.UNIT,
    Field.CONTAINER,
    Field.GENERATION,
    Field.QUARANTINE_ID,
)
