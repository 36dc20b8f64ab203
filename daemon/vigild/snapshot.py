"""What decides an answer, in one frozen snapshot built by one function.

``build`` turns a config, the clean-content cache and the rules it names
into a ``Snapshot``: the detector, the policy of each event kind, the
rules generation, the exclusions and the rule for which verdicts may be
remembered. The daemon builds one at start and one at each reload and
swaps it whole; workers read the current one once per job, so a job never
mixes two. ``vigild scan`` builds its own the same way. Nothing else keeps
a copy of config-derived state: the one exception, the C reader's own
settings, is derived from the snapshot (``reader_settings``) and pushed
through a single setter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from vigild import generations, interpreters, native, protect, ruleset
from vigild.config import Config, EventKind, Fallback, RulesConfig, never_scanned
from vigild.detector import Detector
from vigild.scanner import RuleError
from vigild.verdict import Action, Policy, Reason, Verdict

# What a reload cannot change: they shape the fanotify group, its queue and
# caches, or the process itself. A changed value waits for the next restart.
RESTART_ONLY = {
    "onaccess": ("watch", "events", "mark", "queue_size", "verdict_cache_entries"),
    "scan": ("workers", "cache_entries"),
}

Loader = Callable[[RulesConfig, int, str], ruleset.RuleSet]


def _load_rules(rules: RulesConfig, timeout: int, salt: str) -> ruleset.RuleSet:
    return ruleset.load(rules, timeout, salt=salt)


def salt(cfg: Config) -> str:
    """What besides the rules decides an answer: it goes into the generation, so a
    reload changing it retires every cached verdict (a cached deny would otherwise
    answer the next open of a file that ``quarantine_on`` now says to move)."""
    quarantine = ",".join(k.value for k in cfg.onaccess.quarantine_on)
    scan = cfg.scan
    limits = f"{scan.max_file_size}|{scan.oversize.value}|{scan.oversize_tail}|{cfg.archive}"
    return f"|{limits}|{cfg.policy}|{quarantine}"


def worker_count(cfg: Config) -> int:
    """Worker threads: scan.workers (0: one per CPU), and never fewer than two, so
    that one is always left for small files while big ones hold the others."""
    return max(2, cfg.scan.workers or os.cpu_count() or 1)


@dataclass(frozen=True)
class Snapshot:
    config: Config
    rules: ruleset.RuleSet
    detector: Detector
    policies: Mapping[EventKind, Policy]  # on-access, per event kind
    detect_policy: Policy  # detect mode blocks nothing: every detection is quarantined
    scan_policy: Policy  # `vigild scan`: report, never quarantine
    exclude_paths: tuple[str, ...]  # resolved; vigild's own directories included
    exclude_executables: tuple[str, ...]
    # clean verdicts may become kernel ignore marks: False while rules on the
    # file's name, path or owner are loaded (vigild.ruleset.RuleSet.path_rules)
    remember_verdicts: bool
    # files feed content may not deny (vigild.protect), resolved at build
    protected: protect.Protected = field(default_factory=protect.Protected)

    @cached_property
    def interpreters(self) -> interpreters.Interpreters:
        """The ``[onaccess] interpreters`` files, resolved and hashed: once per snapshot,
        when the daemon first pushes its settings (``vigild scan`` never needs them,
        and hashing them costs ~80 ms, most of it node's 99 MB)."""
        return interpreters.resolve(self.config.onaccess.interpreters)

    @cached_property
    def empty_clean(self) -> bool:
        """Whether the C reader may allow an empty file without a scan (a file
        just created, or truncated by O_TRUNC, and its close-write): the
        content rules and the hash lists find nothing in zero bytes, and no
        rule reads the name, path or owner. Asked of the rules once per snapshot."""
        return self.detector.empty_is_clean()

    @property
    def generation(self) -> int:
        return self.rules.generation

    def cache_bits(self, verdict: Verdict) -> int:
        """How the C side may remember ``verdict`` (native.CACHE_* bits; 0: not at all).

        A detection, a clean scan (of the whole file, or of an over-size
        file's head and tail) and an allowed over-size file repeat for
        the unchanged file under these rules and policy (the generation
        carries both). A detection by a rule on the name, path or owner is
        not remembered: a hard link or a renamed twin may be clean. With
        such rules loaded a clean verdict goes into the verdict cache only:
        its key carries the ctime, which a rename, a link or a chown
        changes, whereas an ignore mark outlives a rename and would let a
        file renamed to a name those rules look for pass unseen.
        """
        if verdict.path_dependent:
            return 0
        clean = (Reason.CLEAN, Reason.CACHED_CLEAN, Reason.CLEAN_TRUNCATED)
        repeats = verdict.reason in clean or (
            verdict.reason is Reason.TOO_LARGE and verdict.action is Action.ALLOW
        )
        if verdict.malicious:
            return native.CACHE_VERDICT | native.CACHE_MARK
        if repeats:
            mark = native.CACHE_MARK if self.remember_verdicts else 0
            return native.CACHE_VERDICT | mark
        return 0

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (resolved) lies under an excluded prefix."""
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.exclude_paths)

    def reader_settings(self, watch: tuple[str, ...]) -> native.FanSettings:
        """The C reader's settings for this snapshot, with the live ``watch``."""
        oa = self.config.onaccess
        allow = {Fallback.ALLOW: native.ALLOW, Fallback.DENY: native.DENY}
        return native.FanSettings(
            generation=self.generation,
            deadline_ms=oa.deadline_ms,
            on_queue_full_open=allow[oa.on_queue_full.open],
            on_queue_full_exec=allow[oa.on_queue_full.exec],
            on_deadline_open=allow[oa.on_deadline.open],
            on_deadline_exec=allow[oa.on_deadline.exec],
            large_bytes=oa.large_file_size,
            large_lanes=worker_count(self.config) - 1,
            ignore_marks=oa.ignore_marks,
            mark_fs=tuple(dict.fromkeys(native.FS_MAGIC[n] for n in oa.ignore_mark_filesystems)),
            fresh_ms=oa.fresh_window_ms,
            close_write_share=oa.close_write_share,
            exec_anywhere=oa.exec_anywhere,
            empty_clean=self.empty_clean,
            watch=watch,
            exclude=self.exclude_paths,
            exes=self.exclude_executables,
            uids=oa.exclude_users,
            interp_ids=self.interpreters.ids,
            interp_sha256=self.interpreters.digests,
        )


def build(cfg: Config, clean: native.Cache | None, load: Loader = _load_rules) -> Snapshot:
    """The snapshot for ``cfg``; raises what loading the rules raises."""
    # the live feed generation's content, beside the configured rules (vigild.generations)
    rs = load(generations.with_feeds(cfg), cfg.scan.timeout, salt(cfg))
    # the clean-content cache only ever answers for the content rules; the
    # detector runs the path-dependent ones on every scan
    remember = rs.path_rules is None
    detector = Detector(rs, cfg.scan, clean, cfg.archive)
    base = Policy.from_config(cfg.policy)
    oa = cfg.onaccess
    return Snapshot(
        config=cfg,
        rules=rs,
        detector=detector,
        policies={k: Policy.from_config(cfg.policy, k in oa.quarantine_on, k) for k in EventKind},
        detect_policy=replace(base, quarantine=True),
        scan_policy=base,
        exclude_paths=never_scanned(cfg),
        exclude_executables=tuple(os.path.realpath(p) for p in oa.exclude_executables),
        remember_verdicts=remember,
        protected=protect.resolve(
            cfg.update.protected,
            generations.feed_root(cfg),
            enabled=bool(cfg.update.feeds) and not cfg.update.block_protected,
        ),
    )


def newly_skipped(running: Snapshot, new: Snapshot) -> list[RuleError]:
    """Rule files ``new`` skipped that ``running`` loaded or did not have.

    At start a bad file is skipped; at reload a file that newly fails must
    keep the running rules (invariant 5), or one typo would silently drop
    the rules it held. Files that failed already (a module this build lacks)
    do not block a reload.
    """
    before = {e.path for e in running.rules.skipped}
    return [e for e in new.rules.skipped if e.path not in before]


def restart_only_changes(running: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the keys a reload cannot change kept as ``running`` has them,
    and the names of those that differ (the admin is told they wait for a restart)."""
    changed = []
    sections = {}
    for section, keys in RESTART_ONLY.items():
        old_s, new_s = getattr(running, section), getattr(new, section)
        kept = {k: getattr(old_s, k) for k in keys}
        changed += [f"{section}.{k}" for k in keys if getattr(new_s, k) != kept[k]]
        sections[section] = replace(new_s, **kept)
    if new.daemon != running.daemon:
        changed.append("daemon")
    return replace(new, daemon=running.daemon, **sections), changed
