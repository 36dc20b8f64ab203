"""``vigild scan`` and ``vigild rules`` as a user runs them: output and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import DATA, MARKER, vigild

MARKER_RULES = str(DATA / "rules")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A config whose compiled dir is private to the test."""
    p = tmp_path / "vigild.toml"
    p.write_text(f'[rules]\ncompiled_dir = "{tmp_path / "compiled"}"\nlocal_dirs = []\n')
    return p


def _scan(cfg: Path, *args: str, rules: str = MARKER_RULES) -> tuple[int, str, str]:
    compiled = str(cfg.parent / "scan-compiled")
    r = vigild(
        "scan", "--config", str(cfg), "--compiled-dir", compiled, "--rules", rules,
        "--no-progress", *args,
    )  # fmt: skip
    return r.returncode, r.stdout, r.stderr


def _tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("plain text\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(5000))
    (root / "sub" / "deeper" / "c.py").write_text("print('hello')\n")
    return root


def test_clean_tree_exits_0_with_a_summary(tmp_path: Path, cfg: Path) -> None:
    code, out, err = _scan(cfg, str(_tree(tmp_path / "t")))
    assert code == 0, err
    assert "Files scanned: 3" in out
    assert "Found: 0" in out
    assert "FOUND" not in out.replace("Found: 0", "")


def test_detection_exits_1_and_names_the_file_and_rule(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    bad = root / "sub" / "deeper" / "bad.php"
    bad.write_bytes(b"<?php // " + MARKER + b"\n")
    code, out, _ = _scan(cfg, str(root))
    assert code == 1
    assert f"{bad}: FOUND Vigild_Test_Marker (rule-match)" in out.splitlines()
    assert "Found: 1" in out


def test_json_output(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    (root / "x").write_bytes(b"head " + MARKER)
    code, out, _ = _scan(cfg, "--json", str(root))
    objs = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert [o["type"] for o in objs] == ["finding", "summary"]
    f, s = objs
    assert f["path"] == str(root / "x")
    assert f["reason"] == "rule-match"
    assert f["rules"][0]["rule"] == "Vigild_Test_Marker"
    assert f["rules"][0]["file"].endswith("marker.yar")
    assert f["rules"][0]["severity"] == "high"
    assert len(f["sha256"]) == 64 and f["size"] == len(b"head " + MARKER)
    assert (s["files"], s["found"], s["errors"], s["exit_code"]) == (4, 1, 0, 1)


def test_known_bad_hash_list(tmp_path: Path, cfg: Path) -> None:
    import hashlib

    root = _tree(tmp_path / "t")
    digest = hashlib.sha256((root / "a.txt").read_bytes()).hexdigest()
    lst = tmp_path / "bad.hsb"
    lst.write_text(f"{digest}:11:Test.Listed.Hash\n")
    code, out, _ = _scan(cfg, "--hashes", str(lst), str(root))
    assert code == 1
    assert f"{root / 'a.txt'}: FOUND Test.Listed.Hash (known-bad-hash)" in out.splitlines()


def test_a_broken_rule_file_is_skipped_with_one_line_and_the_rest_detects(
    tmp_path: Path, cfg: Path
) -> None:
    root = _tree(tmp_path / "t")
    (root / "fine.txt").write_text("this is fine\n")
    code, out, err = _scan(cfg, str(root), rules=str(DATA / "broken"))
    assert code == 1, err
    assert f"{root / 'fine.txt'}: FOUND Fine_Rule (rule-match)" in out.splitlines()
    assert err.splitlines() == [
        f'vigild: {DATA / "broken" / "bad.yar"}:6: undefined string "$b" (rule file skipped)'
    ]


def test_strict_makes_a_broken_rule_file_fatal(tmp_path: Path, cfg: Path) -> None:
    cfg.write_text(cfg.read_text() + "strict = true\n")
    code, _out, err = _scan(cfg, str(_tree(tmp_path / "t")), rules=str(DATA / "broken"))
    assert code == 2
    assert err.splitlines() == [
        f'vigild: {DATA / "broken" / "bad.yar"}:6: undefined string "$b"; rules.strict is on'
    ]


def test_broken_config_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "vigild.toml"
    bad.write_text('[scan]\noversize = "sometimes"\n')
    r = vigild("scan", "--config", str(bad), "--no-progress", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"vigild: {bad}: scan.oversize: expected one of skip, truncate, got 'sometimes'"
    ]


def test_corrupted_hash_database_is_one_line_naming_the_file(tmp_path: Path, cfg: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text("a" * 64 + " Name\n")
    db = tmp_path / "bad.vhdb"
    r = vigild(
        "rules", "compile", "--config", str(cfg), "--rules", MARKER_RULES, "--hashes", str(lst)
    )
    assert r.returncode == 0, r.stderr
    built = next((tmp_path / "compiled").glob("hashes-*.vhdb"))
    data = bytearray(built.read_bytes())
    data[100] ^= 0xFF
    db.write_bytes(data)
    code, _, err = _scan(cfg, "--hashes", str(db), str(tmp_path / "l.txt"))
    assert code == 2
    assert err.splitlines() == [
        f"vigild: {db}: hash database is corrupted (checksum or structure mismatch)"
    ]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that the user nobody can enter (tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="vigild-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a scan as another user")
def test_unreadable_files_are_reported_and_counted_not_fatal(shared_dir: Path) -> None:
    (shared_dir / "secret").write_text("root only")
    (shared_dir / "secret").chmod(0o600)
    (shared_dir / "open.txt").write_text("readable")
    (shared_dir / "closed").mkdir(mode=0o700)
    env = {"HOME": "/nonexistent", "XDG_CACHE_HOME": ""}
    args = ["scan", "--rules", MARKER_RULES, "--no-progress", "--json", str(shared_dir)]
    r = vigild(*args, user="nobody", env=env)
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    errors = {o["path"]: o["error"] for o in objs if o["type"] == "error"}
    assert errors == {
        str(shared_dir / "secret"): "Permission denied",
        str(shared_dir / "closed"): "Permission denied",
    }
    summary = objs[-1]
    assert (summary["files"], summary["errors"], summary["exit_code"]) == (1, 2, 2)
    assert r.returncode == 2
    # a detection still wins the exit code
    (shared_dir / "found").write_bytes(MARKER)
    (shared_dir / "found").chmod(0o644)
    assert vigild(*args, user="nobody", env=env).returncode == 1


def test_fifos_sockets_and_devices_are_skipped_not_opened(tmp_path: Path, cfg: Path) -> None:
    import socket

    root = _tree(tmp_path / "t")
    os.mkfifo(root / "fifo")  # opening it for reading would block forever
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(root / "sock"))
    try:
        code, out, _ = _scan(cfg, str(root), str(root / "fifo"))
    finally:
        s.close()
    assert code == 0
    assert "Files scanned: 3" in out
    assert "Skipped: 3 special files" in out


def test_symlinks_are_not_followed_unless_asked(tmp_path: Path, cfg: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "bad").write_bytes(MARKER)
    root = _tree(tmp_path / "t")
    (root / "link-to-file").symlink_to(outside / "bad")
    (root / "link-to-dir").symlink_to(outside)
    (root / "loop").symlink_to(root)  # must not hang with --follow-symlinks
    code, out, _ = _scan(cfg, str(root))
    assert code == 0
    assert "3 symlinks not followed" in out
    code, out, _ = _scan(cfg, "--follow-symlinks", str(root))
    assert code == 1
    assert out.count("FOUND") == 2  # through the file link and the directory link
    # a symlink named on the command line is followed, as find -H does
    code, _, _ = _scan(cfg, str(root / "link-to-file"))
    assert code == 1


def _oversize_cfg(tmp_path: Path, mode: str) -> Path:
    p = tmp_path / f"{mode}.toml"
    p.write_text(
        f'[rules]\ncompiled_dir = "{tmp_path / "compiled"}"\nlocal_dirs = []\n'
        f'[scan]\nmax_file_size = "1K"\noversize = "{mode}"\n'
    )
    return p


def test_oversize_skip_reports_and_truncate_scans_the_head_and_tail(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "late").write_bytes(bytes(2000) + MARKER)  # in the last 1 KiB
    (root / "middle").write_bytes(bytes(2000) + MARKER + bytes(3000))  # neither
    (root / "early").write_bytes(bytes(100) + MARKER + bytes(3000))
    code, out, _ = _scan(_oversize_cfg(tmp_path, "skip"), str(root))
    assert code == 0
    assert f"{root / 'early'}: SKIPPED {100 + len(MARKER) + 3000} bytes > max_file_size 1024" in out
    assert "Not scanned (too large or timed out): 3" in out
    # a skipped file is not a scanned one, and its bytes were not scanned
    assert "Files scanned: 0" in out.splitlines()
    assert "Data scanned: 0 B" in out.splitlines()
    code, out, _ = _scan(_oversize_cfg(tmp_path, "truncate"), str(root))
    assert code == 1
    found = sorted(line.split(":")[0] for line in out.splitlines() if "FOUND" in line)
    assert found == [str(root / "early"), str(root / "late")]
    assert "Files scanned: 3" in out.splitlines()
    # the rules ran over each file's first 1 KiB and last 1 KiB, not the middle
    assert "Data scanned: 6.1 KB" in out.splitlines()
    _, out, _ = _scan(_oversize_cfg(tmp_path, "truncate"), "--json", str(root))
    assert json.loads(out.splitlines()[-1])["bytes"] == (2000 + len(MARKER)) + 2048 + 2048


def test_scan_timeout_is_reported(tmp_path: Path) -> None:
    cfgp = tmp_path / "t.toml"
    cfgp.write_text(
        f'[rules]\ncompiled_dir = "{tmp_path / "c"}"\nlocal_dirs = []\n[scan]\ntimeout = 1\n'
    )
    target = tmp_path / "slow.bin"
    target.write_bytes(bytes(300_000))
    code, out, _ = _scan(cfgp, str(target), rules=str(DATA / "slow"))
    assert code == 0
    assert f"{target}: SKIPPED scan timed out after 1 s" in out


def test_yara_x_engine(tmp_path: Path, cfg: Path) -> None:
    pytest.importorskip("yara_x")
    root = _tree(tmp_path / "t")
    (root / "x").write_bytes(MARKER)
    code, out, _ = _scan(cfg, "--engine", "yara-x", str(root))
    assert code == 1
    assert "Engine: yara-x" in out


def test_rules_check(tmp_path: Path, cfg: Path) -> None:
    r = vigild("rules", "check", "--config", str(cfg), str(DATA / "broken"))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f'{DATA / "broken" / "bad.yar"}:6: undefined string "$b"',
        "1 of 2 rule files have errors",
    ]
    r = vigild("rules", "check", "--config", str(cfg), MARKER_RULES)
    assert (r.returncode, r.stdout.strip()) == (0, "1 rule files OK")


def test_rules_compile_saves_what_the_next_load_uses(tmp_path: Path, cfg: Path) -> None:
    from vigild import ruleset
    from vigild.config import RulesConfig

    out = tmp_path / "out"
    r = vigild(
        "rules", "compile", "--config", str(cfg), "--rules", MARKER_RULES, "--output", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert f"compiled into {out}" in r.stdout
    saved = list(out.glob("rules-yara-*.compiled"))
    assert len(saved) == 1 and (saved[0].stat().st_mode & 0o777) == 0o600
    rs = ruleset.load(RulesConfig(dirs=(MARKER_RULES,), local_dirs=(), compiled_dir=str(out)), 5)
    assert rs.from_cache
    assert rs.count == 1


def test_rules_using_external_variables_get_them(tmp_path: Path, cfg: Path) -> None:
    rules = tmp_path / "ext"
    rules.mkdir()
    (rules / "ext.yar").write_text(
        'rule By_Name { condition: filename == "dropper.php" and extension == ".php" }\n'
        "rule By_Path { condition: filepath matches /\\/incoming\\// }\n"
    )
    root = tmp_path / "t"
    (root / "incoming").mkdir(parents=True)
    (root / "dropper.php").write_text("anything")
    (root / "other.php").write_text("anything")
    (root / "incoming" / "x").write_text("anything")
    code, out, _ = _scan(cfg, str(root), rules=str(rules))
    found = sorted(line.split(": FOUND ")[0] for line in out.splitlines() if "FOUND" in line)
    assert code == 1
    assert found == [str(root / "dropper.php"), str(root / "incoming" / "x")]


def test_rules_check_prints_warnings_without_failing(tmp_path: Path, cfg: Path) -> None:
    rules = tmp_path / "slow"
    rules.mkdir()
    (rules / "w.yar").write_text("rule Slow_Regex { strings: $a = /a.*b/ condition: $a }\n")
    r = vigild("rules", "check", "--config", str(cfg), str(rules))
    assert r.returncode == 0
    assert (
        f'{rules / "w.yar"}:1: warning: string "$a" may slow down scanning' in r.stderr.splitlines()
    )


def test_a_killed_worker_ends_the_scan_with_an_error_not_a_hang(tmp_path: Path, cfg: Path) -> None:
    """A worker killed mid-scan (OOM killer): exit 2 with a message, within the timeout."""
    slow_file = tmp_path / "t" / "slow.bin"
    slow_file.parent.mkdir()
    slow_file.write_bytes(bytes(200_000))
    for i in range(8):
        (tmp_path / "t" / f"f{i}").write_text("x")
    import signal
    import subprocess
    import time

    from support import VIGILD

    p = subprocess.Popen(
        [VIGILD, "scan", "--config", str(cfg), "--compiled-dir", str(tmp_path / "c"),
         "--rules", str(DATA / "slow"), "--no-progress",
         "--workers", "2", str(tmp_path / "t")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        children: list[str] = []
        for _ in range(100):
            children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            if len(children) >= 2:
                break
            time.sleep(0.05)
        assert children, "no worker processes appeared"
        time.sleep(0.3)
        for c in children:
            os.kill(int(c), signal.SIGKILL)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait(10)
    assert p.returncode == 2
    assert "a scan worker process died" in err
