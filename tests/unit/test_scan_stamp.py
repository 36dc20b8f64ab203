"""``vigild scan`` answered from its clean cache without loading rules (issue 12).

The cache file keeps a stamp of what the rules were derived from (the
config, and the stat of every rule file, hash list, compiled file...): while
it holds, a scan whose every file the cache answers loads no rules. Any edit
of a rule file, even one that keeps its size and mtime, a hash list added,
a config change, or a rule file written too recently for its ctime to prove
anything (kernels before 6.13) loads them again. The scan that compiles
the rules stamps nothing yet (the compiled files are that fresh): the tests
warm up with two scans.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from support import DATA, MARKER, skip_where_the_scan_cache_keeps_nothing, vigild
from vigild import cli, snapshot

SHORTCUT = "rules unchanged since the last scan"
# the marker rule, with a string of the marker's length that no file holds
_UNMATCHED = (DATA / "rules" / "marker.yar").read_text().replace(MARKER.decode(), "X" * len(MARKER))


def _old(*paths: Path) -> None:
    """Back-date ``paths`` and wait out the freshness window of their new ctime."""
    old = time.time() - 60
    for p in paths:
        os.utime(p, (old, old))
    time.sleep(0.05)


def _setup(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    """(a tree of 5 plain files, a rule directory whose rule matches none of them)."""
    skip_where_the_scan_cache_keeps_nothing(tmp_path)
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(5):
        (root / f"f{i}.txt").write_bytes(b"x" * len(MARKER) + b" plain %d\n" % i)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "marker.yar").write_text(_UNMATCHED)
    (tmp_path / "vigild.toml").write_text(
        f'[rules]\ncompiled_dir = "{tmp_path / "daemon"}"\nlocal_dirs = []\n{extra}'
    )
    _old(*root.iterdir(), rules / "marker.yar", rules)
    return root, rules


def _argv(tmp_path: Path, root: Path, *more: str) -> list[str]:
    config, compiled = tmp_path / "vigild.toml", tmp_path / "scan"
    return [
        "scan", "--config", str(config), "--compiled-dir", str(compiled),
        "--rules", str(tmp_path / "rules"), "--no-progress", *more, str(root),
    ]  # fmt: skip


def _scan(tmp_path: Path, root: Path, *more: str) -> tuple[int, str]:
    r = vigild("-v", *_argv(tmp_path, root, *more))
    return r.returncode, r.stdout + r.stderr


def _answered(out: str) -> str:
    lines = [x.split("vigild: ", 1)[-1] for x in out.splitlines() if "by the scan cache" in x]
    assert len(lines) == 1, out
    return lines[0]


def test_a_second_scan_of_an_unchanged_tree_loads_no_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = _setup(tmp_path)
    (root / "bad.zip").write_bytes(b"PK\x03\x04" + b"\0" * 40)  # damaged: a LIMIT line
    _old(root / "bad.zip")
    vigild(*_argv(tmp_path, root))  # compiles the rules: too fresh yet to be stamped
    first = vigild(*_argv(tmp_path, root))
    assert first.returncode == 0, first.stderr
    assert f"{root / 'bad.zip'}: LIMIT" in first.stdout

    def no_rules(*args: object, **kw: object) -> None:
        raise AssertionError("the rules were loaded")

    monkeypatch.setattr(snapshot, "build", no_rules)
    assert cli.main(_argv(tmp_path, root)) == 0
    second = capsys.readouterr().out

    def shown(out: str) -> list[str]:
        return [x for x in out.splitlines() if not x.startswith("Time:")]

    assert shown(second) == shown(first.stdout)
    assert "Engine: yara, 1 rules, 0 known-bad hashes" in second


def test_a_rule_edited_to_the_same_size_and_mtime_is_seen(tmp_path: Path) -> None:
    root, rules = _setup(tmp_path)
    rule = rules / "marker.yar"
    assert _scan(tmp_path, root)[0] == 0
    _scan(tmp_path, root)
    code, out = _scan(tmp_path, root)
    assert code == 0 and SHORTCUT in out, out
    before = rule.stat()
    rule.write_text((DATA / "rules" / "marker.yar").read_text())  # now matches the marker
    os.utime(rule, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = rule.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    (root / "f3.txt").write_bytes(MARKER + b" plain 3\n")
    _old(root / "f3.txt")
    code, out = _scan(tmp_path, root)
    assert code == 1, out
    assert f"{root / 'f3.txt'}: FOUND Vigild_Test_Marker" in out
    assert SHORTCUT not in out


def test_a_freshly_written_rule_file_never_takes_the_shortcut(tmp_path: Path) -> None:
    root, rules = _setup(tmp_path, '[onaccess]\nfresh_window = "1s"\n')
    time.sleep(1.05)  # the tree's files out of the window: they are remembered
    (rules / "marker.yar").write_text(_UNMATCHED)  # written now: its ctime proves nothing
    code, out = _scan(tmp_path, root)
    assert code == 0 and _answered(out) == "0 files answered by the scan cache, 5 added", out
    code, out = _scan(tmp_path, root)
    assert code == 0 and _answered(out) == "5 files answered by the scan cache, 0 added", out
    assert SHORTCUT not in out


def test_a_hash_list_added_or_changed_is_seen(tmp_path: Path) -> None:
    root, _ = _setup(tmp_path)
    lists = tmp_path / "hashes"
    lists.mkdir()
    _old(lists)
    _scan(tmp_path, root, "--hashes", str(lists))
    _scan(tmp_path, root, "--hashes", str(lists))
    assert SHORTCUT in _scan(tmp_path, root, "--hashes", str(lists))[1]
    target = root / "f1.txt"
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    listed = lists / "bad.hsb"
    listed.write_text(f"{digest}:{target.stat().st_size}:Test.Listed.One\n")
    _old(listed)
    code, out = _scan(tmp_path, root, "--hashes", str(lists))
    assert code == 1 and f"{target}: FOUND Test.Listed.One" in out, out
    assert SHORTCUT not in out
    other = root / "f4.txt"
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    listed.write_text(f"{digest}:{other.stat().st_size}:Test.Listed.Two\n")
    _old(listed)
    code, out = _scan(tmp_path, root, "--hashes", str(lists))
    assert code == 1 and f"{other}: FOUND Test.Listed.Two" in out, out


def test_a_config_change_is_seen(tmp_path: Path) -> None:
    root, _ = _setup(tmp_path)
    _scan(tmp_path, root)
    _scan(tmp_path, root)
    assert SHORTCUT in _scan(tmp_path, root)[1]
    with open(tmp_path / "vigild.toml", "a") as f:
        f.write('[scan]\nmax_file_size = "1M"\n')
    code, out = _scan(tmp_path, root)
    assert code == 0 and SHORTCUT not in out, out
    assert _answered(out) == "0 files answered by the scan cache, 5 added", out


def test_an_include_reached_through_a_swapped_symlink_is_seen(tmp_path: Path) -> None:
    """Found by review: the include's resolved path alone was stamped, so pointing
    a symlink on its way elsewhere left the stamp holding and the old verdicts."""
    root, rules = _setup(tmp_path)
    shared = tmp_path / "shared"
    for name, text in (("v1", _UNMATCHED), ("v2", (DATA / "rules" / "marker.yar").read_text())):
        (shared / name).mkdir(parents=True)
        (shared / name / "common.yar").write_text(text.replace("Vigild_Test_Marker", "Shared"))
    (shared / "cur").symlink_to("v1")
    (rules / "marker.yar").write_text(f'include "{shared / "cur" / "common.yar"}"\n')
    (root / "f3.txt").write_bytes(MARKER + b" plain 3\n")
    _old(*shared.rglob("*"), rules / "marker.yar", root / "f3.txt")
    _scan(tmp_path, root)
    _scan(tmp_path, root)
    code, out = _scan(tmp_path, root)
    assert code == 0 and SHORTCUT in out, out
    (shared / "cur").unlink()
    (shared / "cur").symlink_to("v2")
    time.sleep(0.05)
    code, out = _scan(tmp_path, root)
    assert code == 1 and f"{root / 'f3.txt'}: FOUND Shared" in out, out


def test_an_auto_evidence_file_edited_in_place_is_seen(tmp_path: Path) -> None:
    """The engine auto picks rests on every sample, as the daemon's auto key does:
    a sample rewritten in place (same directory entries) ends the shortcut."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    sample = evidence / "sample.bin"
    sample.write_bytes(b"some sample\n")
    root, _ = _setup(tmp_path, f'engine = "auto"\nengine_evidence = ["{evidence}"]\n')
    _old(sample, evidence)
    _scan(tmp_path, root)
    _scan(tmp_path, root)
    assert SHORTCUT in _scan(tmp_path, root)[1]
    with open(sample, "r+b") as f:
        f.write(b"SOME")
    _old(sample)
    code, out = _scan(tmp_path, root)
    assert code == 0 and SHORTCUT not in out, out
