"""``engine = "auto"``: the fastest engine that agrees with yara-python, per rule set (issue 12).

yara-python is the reference; boreal and YARA-X are tried where installed.
An engine is eligible for a set only when it compiles the same files,
reads the same externals and finds the same rules and strings on the
evidence; the decision and its reasons are saved beside the compiled
rules and shown by the start-up line, ``rules compile`` and ``rules check``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from support import vigild
from vigild import enginepick, ruleset
from vigild.config import Engine, RulesConfig
from vigild.scanner import available, backend

SAMPLES = Path(__file__).resolve().parents[1] / "rules" / "samples"
needs_boreal = pytest.mark.skipif(not available(Engine.BOREAL), reason="boreal not installed")

RULE = """rule Marker_Text {
    strings: $a = "vigild-engine-pick-marker" $b = { 7F 45 4C 46 02 }
    condition: any of them
}
"""
# A module yara-python has (its self-test module) and boreal and YARA-X do not.
TESTS_MODULE = 'import "tests"\nrule Uses_Tests { condition: tests.constants.one == 1 }\n'


def _cfg(tmp_path: Path, rules: Path, *evidence: Path) -> RulesConfig:
    return RulesConfig(
        dirs=(str(rules),),
        local_dirs=(),
        engine=Engine.AUTO,
        compiled_dir=str(tmp_path / "compiled"),
        engine_evidence=tuple(str(e) for e in evidence),
    )


def _rules(tmp_path: Path, *texts: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    for i, text in enumerate(texts):
        (d / f"r{i}.yar").write_text(text)
    return d


def _evidence(tmp_path: Path) -> Path:
    d = tmp_path / "evidence"
    d.mkdir()
    (d / "marker.txt").write_text("xx vigild-engine-pick-marker xx\n")
    (d / "plain.txt").write_text("nothing to see\n")
    return d


def _half_the_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate measured at half yara-python's time: which engine is faster
    on three tiny files is noise, and timing belongs in the benchmarks; what is
    tested here is what auto does with the measurement."""
    real = enginepick.compare

    def compare(*args: Any) -> tuple[str | None, float, float, int]:
        bad, t_ref, _, n = real(*args)
        return bad, t_ref, t_ref / 2, n

    monkeypatch.setattr(enginepick, "compare", compare)


@needs_boreal
def test_auto_picks_a_faster_engine_that_agrees_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _half_the_time(monkeypatch)
    rs = ruleset.load(_cfg(tmp_path, _rules(tmp_path, RULE), _evidence(tmp_path)), timeout=10)
    assert rs.engine != "yara", rs.engine_why
    assert rs.engine_why.startswith(f"engine auto: {rs.engine}; "), rs.engine_why
    assert "boreal: same matches on 3 files, 0.50x" in rs.engine_why  # rule file + 2 evidence
    saved = list((tmp_path / "compiled").glob("auto-*.json"))
    assert len(saved) == 1 and b'"trials"' in saved[0].read_bytes()


@needs_boreal
def test_the_decision_is_reused_until_the_evidence_changes(tmp_path: Path) -> None:
    evidence = _evidence(tmp_path)
    cfg = _cfg(tmp_path, _rules(tmp_path, RULE), evidence)
    first = ruleset.load(cfg, timeout=10)
    again = ruleset.load(cfg, timeout=10)
    assert again.engine == first.engine and again.engine_why.endswith("(decided before)")
    (evidence / "new.bin").write_bytes(b"\x7fELF\x02" + bytes(64))
    third = ruleset.load(cfg, timeout=10)
    assert "(decided before)" not in third.engine_why and "on 4 files" in third.engine_why


def test_a_set_an_engine_cannot_compile_stays_with_yara_and_names_the_file(
    tmp_path: Path,
) -> None:
    rules = _rules(tmp_path, RULE, TESTS_MODULE)
    rs = ruleset.load(_cfg(tmp_path, rules, _evidence(tmp_path)), timeout=10)
    assert rs.engine == "yara"
    assert rs.engine_why.startswith("engine auto: yara (the reference); ")
    for engine in enginepick.CANDIDATES:
        if available(engine):
            assert f"{engine.value}: does not compile {rules / 'r1.yar'}" in rs.engine_why
            assert "module 'tests' is not available" in rs.engine_why


def test_a_missing_engine_is_named_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = enginepick.available
    monkeypatch.setattr(enginepick, "available", lambda e: e is not Engine.BOREAL and real(e))
    rs = ruleset.load(_cfg(tmp_path, _rules(tmp_path, RULE)), timeout=10)
    assert "boreal: not installed (the [boreal] extra)" in rs.engine_why


@needs_boreal
def test_an_engine_finding_other_rules_is_not_eligible(tmp_path: Path) -> None:
    rules = _rules(tmp_path, RULE)
    evidence = _evidence(tmp_path)
    files = [rules / "r0.yar"]
    ref = backend(Engine.YARA, 10).compile(files, ruleset.compile_values({}))
    other_file = tmp_path / "other.yar"
    other_file.write_text(RULE.replace('"vigild-engine-pick-marker"', '"something else"'))
    other = backend(Engine.BOREAL, 10).compile([other_file], ruleset.compile_values({}))
    bad, _, _, _ = enginepick.compare((ref, None), (other, None), sorted(evidence.iterdir()), ())
    assert bad is not None
    assert bad.startswith(f"{evidence / 'marker.txt'}: yara-python matches Marker_Text")
    assert bad.endswith("this engine matches nothing")


@needs_boreal
def test_rules_check_says_which_engine_auto_picks(tmp_path: Path) -> None:
    rules = _rules(tmp_path, RULE)
    config = tmp_path / "vigild.toml"
    config.write_text(
        f'[rules]\nengine = "auto"\ncompiled_dir = "{tmp_path / "compiled"}"\n'
        f'engine_evidence = ["{_evidence(tmp_path)}"]\n'
    )
    out = vigild("rules", "check", "--config", str(config), str(rules))
    assert out.returncode == 0, out.stderr
    # which engine wins on three tiny files is noise: the line says which and why
    picked = re.search(r"engine auto: (yara \(the reference\)|boreal|yara-x); ", out.stdout)
    assert picked, out.stdout
    assert "boreal: same matches on 3 files" in out.stdout, out.stdout
    assert os.listdir(tmp_path / "compiled")
