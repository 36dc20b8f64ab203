"""One rule that makes the engine fail never costs the other rules' matches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import DATA, MARKER, vigild

TRIGGER = b"x" + b"ab" * 2000  # libyara: "too many regex fibers" for the rule in engine_error/


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    shutil.copy(DATA / "engine_error" / "fibers.yar", d)
    shutil.copy(DATA / "rules" / "marker.yar", d)
    return d


def _scan(tmp_path: Path, rules: Path, target: Path, *extra: str) -> tuple[int, str, str]:
    cfg = tmp_path / "vigild.toml"
    cfg.write_text(f'[rules]\ncompiled_dir = "{tmp_path / "compiled"}"\nlocal_dirs = []\n')
    compiled = str(tmp_path / "scan-compiled")  # root's default is shared
    r = vigild(
        "scan", "--config", str(cfg), "--compiled-dir", compiled, "--rules", str(rules),
        "--no-progress", *extra, str(target),
    )  # fmt: skip
    return r.returncode, r.stdout, r.stderr


def test_the_other_rules_still_detect(tmp_path: Path, rules: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    (target / "both.bin").write_bytes(TRIGGER + b"\n" + MARKER + b"\n")
    code, out, err = _scan(tmp_path, rules, target)
    assert f"{target / 'both.bin'}: FOUND Vigild_Test_Marker (rule-match)" in out, out + err
    assert code == 1


def test_a_file_only_the_failing_rule_could_judge_is_an_error_naming_the_rule(
    tmp_path: Path, rules: Path
) -> None:
    target = tmp_path / "t"
    target.mkdir()
    (target / "only.bin").write_bytes(TRIGGER)
    code, out, _ = _scan(tmp_path, rules, target)
    assert code == 2
    assert "ERROR scan failed: rule Vigild_Test_Engine_Error in " in out
    assert "fibers.yar: internal error: 46" in out


def test_rules_check_warns_about_the_risky_regex(tmp_path: Path, rules: Path) -> None:
    r = vigild("rules", "check", str(rules))
    assert r.returncode == 0
    assert "fibers.yar:7: warning: repeated groups of alternatives" in r.stderr
