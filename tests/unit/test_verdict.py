"""The verdict, from one table that covers every (prefilter, scan) combination.

Each row says what the answer must be; ``DETECT`` rows block (and
quarantine when the policy says so), fallback rows follow the policy knob
they name. Every row runs under all 16 policies.
"""

from __future__ import annotations

import itertools

import pytest

from vigild.config import Fallback
from vigild.native import PrefilterResult, PreVerdict
from vigild.scanner import RuleMatch
from vigild.verdict import Action, Policy, Reason, ScanResult, ScanStatus, decide

MATCH = RuleMatch("Evil_Rule", "/rules/x.yar", (), (), ("$a",))


def _pre(kind: PreVerdict | None) -> PrefilterResult | None:
    if kind is None:
        return None  # hashing failed
    name = "Listed.Bad" if kind is PreVerdict.KNOWN_BAD else None
    return PrefilterResult(kind, 10, b"\0" * 32, None, name)


SCANS: dict[str, ScanResult | None] = {
    "none": None,
    "clean": ScanResult(ScanStatus.CLEAN),
    "clean-truncated": ScanResult(ScanStatus.CLEAN, truncated=True),
    "match": ScanResult(ScanStatus.MATCH, (MATCH,)),
    "match-truncated": ScanResult(ScanStatus.MATCH, (MATCH,), truncated=True),
    "timeout": ScanResult(ScanStatus.TIMEOUT, error="timed out"),
    "error": ScanResult(ScanStatus.ERROR, error="boom"),
    "skipped": ScanResult(ScanStatus.SKIPPED, error="too large"),
}

DETECT, ALLOW = "detect", "allow"
U, B, C, F = PreVerdict.UNKNOWN, PreVerdict.KNOWN_BAD, PreVerdict.CLEAN_CACHED, None

# (prefilter, scan) -> (reason, what decides the action, detail)
TABLE: dict[tuple[PreVerdict | None, str], tuple[Reason, str, str]] = {
    # a listed hash decides alone, whatever a scan said
    **{(B, s): (Reason.KNOWN_BAD_HASH, DETECT, "Listed.Bad") for s in SCANS},
    # the same bytes were scanned clean by these rules; a scan that comes
    # along is the rules on the name, path or owner, and counts as a scan
    (C, "none"): (Reason.CACHED_CLEAN, ALLOW, ""),
    (C, "clean"): (Reason.CACHED_CLEAN, ALLOW, ""),
    (C, "clean-truncated"): (Reason.CACHED_CLEAN, ALLOW, ""),
    (C, "match"): (Reason.RULE_MATCH, DETECT, "Evil_Rule"),
    (C, "match-truncated"): (Reason.RULE_MATCH, DETECT, "Evil_Rule"),
    (C, "timeout"): (Reason.SCAN_TIMEOUT, "on_timeout", "timed out"),
    (C, "error"): (Reason.SCAN_ERROR, "on_error", "boom"),
    (C, "skipped"): (Reason.TOO_LARGE, "on_oversize", "too large"),
    (U, "none"): (Reason.SCAN_ERROR, "on_error", "file could not be read"),
    (U, "clean"): (Reason.CLEAN, ALLOW, ""),
    (U, "clean-truncated"): (Reason.CLEAN_TRUNCATED, ALLOW, ""),
    (U, "match"): (Reason.RULE_MATCH, DETECT, "Evil_Rule"),
    (U, "match-truncated"): (Reason.RULE_MATCH, DETECT, "Evil_Rule"),
    (U, "timeout"): (Reason.SCAN_TIMEOUT, "on_timeout", "timed out"),
    (U, "error"): (Reason.SCAN_ERROR, "on_error", "boom"),
    (U, "skipped"): (Reason.TOO_LARGE, "on_oversize", "too large"),
    # hashing failed: whatever scan result came along is used the same way
    (F, "none"): (Reason.SCAN_ERROR, "on_error", "file could not be read"),
    (F, "clean"): (Reason.CLEAN, ALLOW, ""),
    (F, "clean-truncated"): (Reason.CLEAN_TRUNCATED, ALLOW, ""),
    (F, "match"): (Reason.RULE_MATCH, DETECT, "Evil_Rule"),
    (F, "match-truncated"): (Reason.RULE_MATCH, DETECT, "Evil_Rule"),
    (F, "timeout"): (Reason.SCAN_TIMEOUT, "on_timeout", "timed out"),
    (F, "error"): (Reason.SCAN_ERROR, "on_error", "boom"),
    (F, "skipped"): (Reason.TOO_LARGE, "on_oversize", "too large"),
}

POLICIES = [
    Policy(e, t, o, q)
    for e, t, o in itertools.product(list(Fallback), repeat=3)
    for q in (False, True)
]


def test_table_covers_every_combination() -> None:
    assert set(TABLE) == set(itertools.product([U, B, C, F], SCANS))


def _expected_action(how: str, policy: Policy) -> Action:
    if how == DETECT:
        return Action.QUARANTINE if policy.quarantine else Action.DENY
    if how == ALLOW:
        return Action.ALLOW
    return Action.DENY if getattr(policy, how) is Fallback.DENY else Action.ALLOW


@pytest.mark.parametrize(("pre", "scan"), list(TABLE), ids=lambda x: str(getattr(x, "name", x)))
def test_verdict(pre: PreVerdict | None, scan: str) -> None:
    reason, how, detail = TABLE[(pre, scan)]
    for policy in POLICIES:
        v = decide(_pre(pre), SCANS[scan], policy)
        assert (v.reason, v.detail) == (reason, detail)
        assert v.action is _expected_action(how, policy), policy
        assert v.malicious == (how == DETECT)
        assert v.cacheable_clean == (reason is Reason.CLEAN)
