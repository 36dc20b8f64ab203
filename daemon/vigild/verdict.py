"""Verdict: a pure function from (prefilter, scan, policy) to action and reason.

No I/O and no state: the on-access workers and ``vigild scan`` both call
``decide`` and act on what it returns. Detections always block; what an
inconclusive result (error, timeout, file too large) does is policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from vigild.config import EventKind, Fallback, PolicyConfig
from vigild.native import PrefilterResult, PreVerdict
from vigild.reasons import Action as Action  # re-exported, as is Reason
from vigild.reasons import Reason as Reason
from vigild.scanner import RuleMatch


class ScanStatus(StrEnum):
    CLEAN = "clean"
    MATCH = "match"
    TIMEOUT = "timeout"
    ERROR = "error"
    SKIPPED = "skipped"  # over max_file_size with oversize = "skip"


@dataclass(frozen=True)
class ScanResult:
    status: ScanStatus
    matches: tuple[RuleMatch, ...] = ()
    truncated: bool = False
    error: str = ""
    member: str = ""  # the archive member that matched ("dir/shell.php")
    member_hash: str = ""  # the hash list entry a member is listed as
    unpack_limit: str = ""  # the archive limit that stopped unpacking (unpack.LIMITS)
    member_failed: bool = False  # a member's scan failed or timed out too (beside the limit)
    # every match came from a rule reading the file's name, path or owner
    path_dependent: bool = False
    failed_rules: tuple[str, ...] = ()  # rules whose engine error isolation worked around


@dataclass(frozen=True)
class Policy:
    on_error: Fallback = Fallback.ALLOW
    on_timeout: Fallback = Fallback.ALLOW
    on_oversize: Fallback = Fallback.ALLOW
    quarantine: bool = False  # detections are quarantined, not only denied
    on_unpack_limit: Fallback = Fallback.ALLOW
    on_encrypted: Fallback = Fallback.ALLOW

    @classmethod
    def from_config(
        cls, cfg: PolicyConfig, quarantine: bool = False, kind: EventKind = EventKind.OPEN
    ) -> Policy:
        """The policy of events of ``kind`` (``vigild scan`` and detect mode: open's)."""
        return cls(
            cfg.on_error.of(kind),
            cfg.on_timeout,
            cfg.on_oversize,
            quarantine,
            cfg.on_unpack_limit.of(kind),
            cfg.on_encrypted.of(kind),
        )


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: Reason
    detail: str = ""
    path_dependent: bool = False  # a rule on the name, path or owner decided it

    @property
    def malicious(self) -> bool:
        return self.reason in (Reason.KNOWN_BAD_HASH, Reason.RULE_MATCH)

    @property
    def cacheable_clean(self) -> bool:
        """Whether these bytes may be remembered as clean for this rule set."""
        return self.reason is Reason.CLEAN


def _detected(policy: Policy, reason: Reason, detail: str) -> Verdict:
    return Verdict(Action.QUARANTINE if policy.quarantine else Action.DENY, reason, detail)


def _fallback(choice: Fallback, reason: Reason, detail: str) -> Verdict:
    return Verdict(Action.DENY if choice is Fallback.DENY else Action.ALLOW, reason, detail)


def decide(pre: PrefilterResult | None, scan: ScanResult | None, policy: Policy) -> Verdict:
    """The action for one file. ``pre`` is None when hashing failed."""
    if pre is not None and pre.verdict is PreVerdict.KNOWN_BAD:
        return _detected(policy, Reason.KNOWN_BAD_HASH, pre.name or "")
    # known clean bytes: ``scan``, if any, is then the path-dependent rules alone
    cached = pre is not None and pre.verdict is PreVerdict.CLEAN_CACHED
    if cached and (scan is None or scan.status is ScanStatus.CLEAN):
        return Verdict(Action.ALLOW, Reason.CACHED_CLEAN)
    if scan is None:
        return _fallback(policy.on_error, Reason.SCAN_ERROR, "file could not be read")
    inside = f" in {scan.member}" if scan.member else ""
    if scan.status is ScanStatus.MATCH and scan.member_hash:
        return _detected(policy, Reason.KNOWN_BAD_HASH, scan.member_hash + inside)
    if scan.status is ScanStatus.MATCH:
        found = _detected(
            policy, Reason.RULE_MATCH, ", ".join(m.rule for m in scan.matches) + inside
        )
        return replace(found, path_dependent=scan.path_dependent)
    if scan.status is ScanStatus.CLEAN and scan.unpack_limit == "could not unpack":
        return Verdict(Action.ALLOW, Reason.UNPACK_LIMIT, scan.error)  # scanned as bytes
    if scan.status is ScanStatus.CLEAN and scan.unpack_limit:
        choice = policy.on_encrypted if scan.unpack_limit == "encrypted" else policy.on_unpack_limit
        return _fallback(choice, Reason.UNPACK_LIMIT, scan.error)
    if scan.status is ScanStatus.CLEAN:
        return Verdict(Action.ALLOW, Reason.CLEAN_TRUNCATED if scan.truncated else Reason.CLEAN)
    if scan.status is ScanStatus.TIMEOUT:
        return _fallback(policy.on_timeout, Reason.SCAN_TIMEOUT, scan.error)
    if scan.status is ScanStatus.SKIPPED:
        return _fallback(policy.on_oversize, Reason.TOO_LARGE, scan.error)
    return _fallback(policy.on_error, Reason.SCAN_ERROR, scan.error)
