"""The snapshot: one function builds what decides an answer, from config and rules."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from support import REPO
from vigild import native, snapshot
from vigild.config import Config, EventKind, Fallback, PerKind, RulesConfig
from vigild.ruleset import RuleSet
from vigild.verdict import Action, Reason, Verdict


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    rules = RulesConfig(
        dirs=(str(REPO / "rules"),), local_dirs=(), compiled_dir=str(tmp_path / "compiled")
    )
    return replace(Config(), rules=rules)


def _with(cfg: Config, **onaccess: object) -> Config:
    return replace(cfg, onaccess=replace(cfg.onaccess, **onaccess))


def test_policies_follow_the_config_per_event_kind(cfg: Config) -> None:
    cfg = replace(cfg, policy=replace(cfg.policy, on_timeout=Fallback.DENY))
    snap = snapshot.build(_with(cfg, quarantine_on=(EventKind.EXEC,)), native.Cache(1024))
    assert snap.policies[EventKind.EXEC].quarantine
    assert not snap.policies[EventKind.OPEN].quarantine
    assert all(p.on_timeout is Fallback.DENY for p in snap.policies.values())
    assert snap.detect_policy.quarantine and not snap.scan_policy.quarantine


def test_every_key_that_decides_an_answer_changes_the_generation(cfg: Config) -> None:
    base = snapshot.build(cfg, None).generation
    changed = [
        replace(cfg, policy=replace(cfg.policy, on_error=PerKind(Fallback.ALLOW, Fallback.DENY))),
        replace(cfg, policy=replace(cfg.policy, on_oversize=Fallback.DENY)),
        replace(cfg, scan=replace(cfg.scan, max_file_size=1 << 20)),
        _with(cfg, quarantine_on=(EventKind.OPEN,)),
    ]
    gens = {snapshot.build(c, None).generation for c in changed}
    assert base not in gens and len(gens) == len(changed)
    assert snapshot.build(cfg, None).generation == base  # and only those


def test_the_reader_settings_come_from_the_snapshot(cfg: Config, tmp_path: Path) -> None:
    cfg = _with(
        cfg,
        deadline_ms=700,
        on_deadline=PerKind(Fallback.DENY, Fallback.DENY),
        exclude_paths=(str(tmp_path / "skip"),),
        ignore_mark_filesystems=("xfs",),
        fresh_window_ms=0,
        close_write_share=30,
        exec_anywhere=False,
    )
    snap = snapshot.build(cfg, None)
    s = snap.reader_settings(("/srv",))
    assert s.generation == snap.generation
    assert (s.deadline_ms, s.on_deadline_open, s.on_deadline_exec) == (
        700,
        native.DENY,
        native.DENY,
    )
    assert s.on_queue_full_open == native.ALLOW
    assert s.mark_fs == (native.FS_MAGIC["xfs"],)
    assert (s.fresh_ms, s.close_write_share, s.exec_anywhere) == (0, 30, False)
    assert s.watch == ("/srv",)
    assert str(tmp_path / "skip") in s.exclude
    assert cfg.daemon.state_dir in s.exclude  # vigild's own directories, always


def _verdict(reason: Reason, action: Action = Action.ALLOW) -> Verdict:
    return Verdict(action, reason)


@pytest.mark.parametrize(
    ("verdict", "remembered"),
    [
        (_verdict(Reason.CLEAN), True),
        (_verdict(Reason.CACHED_CLEAN), True),
        (_verdict(Reason.RULE_MATCH, Action.DENY), True),
        (_verdict(Reason.KNOWN_BAD_HASH, Action.QUARANTINE), True),
        (_verdict(Reason.TOO_LARGE), True),  # allowed by policy: the same next time
        (_verdict(Reason.TOO_LARGE, Action.DENY), False),
        (_verdict(Reason.CLEAN_TRUNCATED), True),  # head and tail repeat for the same inode
        (_verdict(Reason.SCAN_ERROR), False),
        (_verdict(Reason.SCAN_TIMEOUT, Action.DENY), False),
    ],
)
def test_what_may_be_remembered(cfg: Config, verdict: Verdict, remembered: bool) -> None:
    snap = snapshot.build(cfg, None)
    bits = snap.cache_bits(verdict)
    assert bits == ((native.CACHE_VERDICT | native.CACHE_MARK) if remembered else 0)


def test_rules_reading_the_name_keep_the_content_cache_and_remember_no_match(
    cfg: Config, tmp_path: Path
) -> None:
    rule = tmp_path / "byname.yar"
    rule.write_text('rule ByName { condition: filename == "evil.php" }\n')
    cfg = replace(cfg, rules=replace(cfg.rules, dirs=(str(REPO / "rules"), str(rule))))
    snap = snapshot.build(cfg, native.Cache(1024))
    assert snap.rules.path_files == (str(rule),)
    assert snap.detector.clean is not None  # the content rules are remembered by content
    assert not snap.remember_verdicts
    # clean: the verdict cache (keyed by ctime, which a rename changes), no ignore mark
    assert snap.cache_bits(_verdict(Reason.CLEAN)) == native.CACHE_VERDICT
    by_name = Verdict(Action.DENY, Reason.RULE_MATCH, "ByName", path_dependent=True)
    assert snap.cache_bits(by_name) == 0
    by_bytes = Verdict(Action.DENY, Reason.RULE_MATCH, "EICAR")
    assert snap.cache_bits(by_bytes) == native.CACHE_VERDICT | native.CACHE_MARK


def test_a_reload_keeps_restart_only_keys_and_names_them(cfg: Config) -> None:
    new = _with(cfg, watch=("/elsewhere",), queue_size=9, deadline_ms=100)
    new = replace(new, daemon=replace(new.daemon, metrics_file="/x.prom"))
    kept, waiting = snapshot.restart_only_changes(cfg, new)
    assert kept.onaccess.watch == cfg.onaccess.watch
    assert kept.onaccess.queue_size == cfg.onaccess.queue_size
    assert kept.onaccess.deadline_ms == 100  # reloadable now
    assert kept.daemon == cfg.daemon
    assert waiting == ["onaccess.watch", "onaccess.queue_size", "daemon"]


def test_the_loader_is_given_the_salt(cfg: Config) -> None:
    seen: list[tuple[str, RuleSet]] = []
    real = snapshot._load_rules

    def load(rules: RulesConfig, timeout: int, salt: str) -> RuleSet:
        seen.append((salt, real(rules, timeout, salt)))
        return seen[-1][1]

    snap = snapshot.build(cfg, None, load=load)
    assert [s for s, _ in seen] == [snapshot.salt(cfg)]
    assert snap.rules is seen[0][1] and snap.detector.ruleset is snap.rules


def test_a_reload_can_tell_a_newly_broken_rule_file(cfg: Config, tmp_path: Path) -> None:
    rules = tmp_path / "r"
    rules.mkdir()
    (rules / "old.yar").write_text('import "androguard"\nrule Apk { condition: true }\n')
    (rules / "ok.yar").write_text("rule Ok { condition: true }\n")
    cfg = replace(cfg, rules=replace(cfg.rules, dirs=(str(rules),)))
    running = snapshot.build(cfg, None)
    assert snapshot.newly_skipped(running, snapshot.build(cfg, None)) == []
    (rules / "zz.yar").write_text("rule Typo {\n condition: $b }\n")
    [new] = snapshot.newly_skipped(running, snapshot.build(cfg, None))
    assert (new.path, new.line) == (str(rules / "zz.yar"), 2)


@pytest.mark.parametrize(
    ("rule", "hash_line", "clean"),
    [
        ('rule Marker { strings: $a = "VIGILD" condition: $a }', "", True),
        ("rule Empty { condition: filesize == 0 }", "", False),
        ('rule Named { condition: filename == "x.php" }', "", False),
        ('rule Owned { condition: owner == "nobody" }', "", False),
        ('rule Md5 { condition: md5 == "d41d8cd98f00b204e9800998ecf8427e" }', "", False),
        (
            'rule Marker { strings: $a = "VIGILD" condition: $a }',
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 Empty.Listed",
            False,
        ),
    ],
    ids=["content-rule", "filesize-0", "by-name", "by-owner", "md5-of-nothing", "listed-hash"],
)
def test_empty_files_are_answered_in_c_only_when_nothing_can_match_them(
    tmp_path: Path, rule: str, hash_line: str, clean: bool
) -> None:
    """An empty file (created, or truncated by O_TRUNC) skips the scan only when
    scanning zero bytes finds nothing and no rule reads the name, path or owner."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yar").write_text(rule + "\n")
    hashes = tmp_path / "list.txt"
    hashes.write_text(hash_line + "\n" if hash_line else "")
    c = RulesConfig(
        dirs=(str(rules),),
        local_dirs=(),
        compiled_dir=str(tmp_path / "compiled"),
        hashes=(str(hashes),),
    )
    snap = snapshot.build(replace(Config(), rules=c), None)
    assert snap.empty_clean is clean
    assert snap.reader_settings(()).empty_clean is clean


def test_the_shipped_rules_let_empty_files_through_without_a_scan(cfg: Config) -> None:
    assert snapshot.build(cfg, None).empty_clean
