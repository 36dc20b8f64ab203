"""What a verdict does and why: in a module of their own, so that ``vigild scan``
can print a cached answer without importing the engines (vigild.verdict)."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    QUARANTINE = "quarantine"  # deny, and move the file to quarantine


class Reason(StrEnum):
    CLEAN = "clean"
    CACHED_CLEAN = "cached-clean"  # same bytes scanned clean by these rules
    CLEAN_TRUNCATED = "clean-truncated"  # over max_file_size: its head and tail scanned clean
    KNOWN_BAD_HASH = "known-bad-hash"
    RULE_MATCH = "rule-match"
    SCAN_TIMEOUT = "scan-timeout"
    SCAN_ERROR = "scan-error"
    TOO_LARGE = "too-large"  # over max_file_size, not scanned
    UNPACK_LIMIT = "unpack-limit"  # an archive limit stopped unpacking (or a member is encrypted)
    PROTECTED = "protected"  # feed content matched a protected file: allowed (vigild.protect)
